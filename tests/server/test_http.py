"""test_http.py - `sov serve` over loopback with raw HTTP: every endpoint's shape, greedy
output equal to `sov run --temp 0` alone and among many concurrent requests, streaming
(SSE, usage chunk, [DONE]), logprobs, stop strings, seeds, the prefix cache, errors with
OpenAI's JSON shape and the right status, the malformed-request corpus, huge bodies, slow
and stalled clients, disconnects (blocks freed, seen in /metrics), overload (429 with
Retry-After), deadlines and graceful SIGTERM."""
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverlib import (SOV_BIN, Server, check, finish, read_response, run_tests, shared_model, sov_run, sse_events, stream_text,
                       synthetic_model)

STORIES = shared_model("stories260K.gguf")
PROMPTS = ["Once upon a time", "The little dog", "Tom and Lily went to the park", "One day, a big bird",
           "She was very happy because", "The sun", "In the forest there lived a", "Mom said"]

srv = None  # one server for the tests that need no special flags


def slow_model():
    """A synthetic model big enough that a long generation takes seconds (stories260K makes
    ~20,000 tokens/s, so its requests end before a test can act on them while they run)."""
    return synthetic_model("srv_slow_f32.gguf", "--dim", "512", "--layers", "6", "--heads", "8", "--kv-heads", "4",
                           "--ffn", "1536", "--vocab", "4096", "--ctx", "4096")


def error_shape(body, status):
    try:
        j = json.loads(body)
    except ValueError:
        return check(False, "status %d body is not JSON: %r" % (status, body[:200]))
    e = j.get("error") if isinstance(j, dict) else None
    return check(isinstance(e, dict) and isinstance(e.get("message"), str) and e["message"] and "type" in e
                 and "param" in e and "code" in e, "error shape: %r" % body[:300])


def test_endpoints_answer():
    st, j = srv.json("/health")
    check(st == 200 and j == {"status": "ok"}, "/health: %d %r" % (st, j))
    st, j = srv.json("/ready")
    check(st == 200 and j["status"] == "ready", "/ready")
    st, j = srv.json("/v1/models")
    check(st == 200 and j["object"] == "list" and j["data"][0]["id"] == "stories260K", "/v1/models %r" % j)
    st, j = srv.json("/v1/models/stories260K")
    check(st == 200 and j["id"] == "stories260K", "/v1/models/id")
    st, _, b = srv.get("/v1/models/nope")
    check(st == 404, "/v1/models/nope is 404") and error_shape(b, st)
    st, _, b = srv.get("/nowhere")
    check(st == 404, "unknown path is 404") and error_shape(b, st)
    st, h, b = srv.get("/v1/chat/completions")
    check(st == 405 and h.get("allow") == "POST", "GET on a POST route is 405") and error_shape(b, st)
    st, h, b = srv.post("/health", {})
    check(st == 405, "POST /health is 405")
    st, h, b = srv.get("/metrics")
    check(st == 200 and h["content-type"].startswith("text/plain"), "/metrics content type")
    text = b.decode()
    for name in ["sov_requests_total", "sov_prompt_tokens_total", "sov_generated_tokens_total", "sov_queue_depth",
                 "sov_running_sequences", "sov_kv_blocks_used", "sov_kv_blocks_free", "sov_fair_preemptions_total",
                 "sov_time_to_first_token_seconds_bucket", "sov_inter_token_latency_seconds_bucket",
                 "# TYPE sov_time_to_first_token_seconds histogram"]:
        check(name in text, "/metrics has " + name)


def completion(prompt, n, stream=False, **kw):
    body = {"model": "stories260K", "prompt": prompt, "max_tokens": n, "temperature": 0, "stream": stream}
    body.update(kw)
    st, h, b = srv.post("/v1/completions", body)
    if stream:
        text, finish, usage, _ = stream_text(b)
        return st, text, finish, usage
    j = json.loads(b)
    if st != 200:
        return st, j, None, None
    return st, j["choices"][0]["text"], j["choices"][0]["finish_reason"], j["usage"]


def test_greedy_equals_sov_run():
    for p in PROMPTS[:4]:
        want = sov_run(STORIES, p, 48, "--ignore-eos")
        st, text, finish, usage = completion(p, 48, ignore_eos=True)
        check(st == 200 and text == want, "completion of %r equals sov run:\n  %r\n  %r" % (p, text, want))
        check(finish == "length" and usage["completion_tokens"] == 48, "finish length, 48 tokens: %r" % usage)
        st, text, finish, usage = completion(p, 48, stream=True, ignore_eos=True,
                                             stream_options={"include_usage": True})
        check(st == 200 and text == want, "streamed completion of %r equals sov run" % p)
        check(usage and usage["completion_tokens"] == 48, "stream usage %r" % usage)


def test_concurrent_greedy_equals_sov_run():
    prompts = [PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else " and" * (i // len(PROMPTS)))
               for i in range(24)]
    want = {p: sov_run(STORIES, p, 40, "--ignore-eos") for p in set(prompts)}
    got = [None] * len(prompts)

    def one(i):
        got[i] = completion(prompts[i], 40, stream=(i % 2 == 0), ignore_eos=True)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, p in enumerate(prompts):
        check(got[i][0] == 200 and got[i][1] == want[p],
              "concurrent request %d (%r) equals sov run:\n  %r\n  %r" % (i, p, got[i][1], want[p]))
    m = srv.metrics()
    check(m["sov_running_sequences"] == 0 and m["sov_queue_depth"] == 0, "idle after the burst")


def test_chat_shapes():
    body = {"model": "stories260K", "messages": [{"role": "system", "content": "Be nice."},
                                                 {"role": "user", "content": "Tell a story"}],
            "max_tokens": 12, "temperature": 0, "ignore_eos": True}
    st, j = srv.json("/v1/chat/completions", body)
    check(st == 200, "chat 200")
    check(j["object"] == "chat.completion" and j["id"].startswith("chatcmpl-") and j["model"] == "stories260K",
          "chat envelope %r" % j)
    c = j["choices"][0]
    check(c["index"] == 0 and c["message"]["role"] == "assistant" and isinstance(c["message"]["content"], str),
          "chat message")
    check(c["finish_reason"] == "length" and j["usage"]["completion_tokens"] == 12 and
          j["usage"]["total_tokens"] == j["usage"]["prompt_tokens"] + 12, "chat usage %r" % j["usage"])
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    st, h, b = srv.post("/v1/chat/completions", body)
    check(st == 200 and h["content-type"] == "text/event-stream", "stream content type")
    ev = sse_events(b)
    check(ev[-1] == "[DONE]", "stream ends with [DONE]")
    chunks = [json.loads(e) for e in ev[:-1]]
    check(all(x["object"] == "chat.completion.chunk" and x["id"] == chunks[0]["id"] for x in chunks), "chunk ids")
    check(chunks[0]["choices"][0]["delta"].get("role") == "assistant", "first chunk carries the role")
    check(chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12, "usage chunk last")
    check(all("usage" in x and x["usage"] is None for x in chunks[:-1]), "usage null before the last chunk")
    check(chunks[-2]["choices"][0]["finish_reason"] == "length", "finish chunk")
    text = "".join(x["choices"][0]["delta"].get("content") or "" for x in chunks[:-1])
    check(text == c["message"]["content"], "streamed chat text equals the whole reply")
    # without include_usage there is no usage chunk and no usage field
    body.pop("stream_options")
    st, h, b = srv.post("/v1/chat/completions", body)
    chunks = [json.loads(e) for e in sse_events(b)[:-1]]
    check(all("usage" not in x for x in chunks), "no usage without include_usage")


def test_logprobs():
    body = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 5, "temperature": 0,
            "logprobs": True, "top_logprobs": 3, "ignore_eos": True}
    st, j = srv.json("/v1/chat/completions", body)
    content = j["choices"][0]["logprobs"]["content"]
    check(st == 200 and len(content) == 5, "chat logprobs: one entry per token")
    for e in content:
        check(isinstance(e["token"], str) and e["logprob"] <= 0 and isinstance(e["bytes"], list), "entry %r" % e)
        check(len(e["top_logprobs"]) == 3, "3 alternatives")
        check(e["top_logprobs"][0]["token"] == e["token"] and abs(e["top_logprobs"][0]["logprob"] - e["logprob"]) < 1e-5,
              "greedy: the chosen token is the most likely")
    check("".join(e["token"] for e in content) == j["choices"][0]["message"]["content"], "tokens spell the text")
    st, text, finish, usage = completion("Once", 4, logprobs=2, ignore_eos=True)
    st, j = srv.json("/v1/completions", {"prompt": "Once", "max_tokens": 4, "temperature": 0, "logprobs": 2,
                                         "ignore_eos": True})
    lp = j["choices"][0]["logprobs"]
    check(len(lp["tokens"]) == 4 and len(lp["token_logprobs"]) == 4 and len(lp["top_logprobs"]) == 4 and
          lp["text_offset"][0] == 0, "completion logprobs %r" % lp)
    check("".join(lp["tokens"]) == j["choices"][0]["text"], "completion tokens spell the text")
    check(j["choices"][0]["logprobs"] is not None, "logprobs present")
    st, j = srv.json("/v1/completions", {"prompt": "Once", "max_tokens": 2})
    check(j["choices"][0]["logprobs"] is None, "no logprobs unless asked")


def test_stop_seed_and_penalties():
    full = completion("Once upon a time", 40, ignore_eos=True)[1]
    stop = full[10:14]
    st, text, finish, _ = completion("Once upon a time", 40, stop=[stop, "zzzz"], ignore_eos=True)
    check(st == 200 and finish == "stop" and text == full[:full.index(stop)], "stop string cuts: %r" % text)
    # seeded sampling is reproducible
    a = completion("The little dog", 30, temperature=1.0, seed=1234)[1]
    b = completion("The little dog", 30, temperature=1.0, seed=1234)[1]
    check(a == b, "same seed, same text")
    outs = {completion("The little dog", 30, temperature=1.5, seed=s)[1] for s in range(5)}
    check(len(outs) > 1, "different seeds, different texts")
    # a banned token never appears; a strongly favoured one always does
    st, j = srv.json("/v1/completions", {"prompt": "Once", "max_tokens": 10, "temperature": 0,
                                         "logit_bias": {"100": 100}, "logprobs": 0, "ignore_eos": True})
    check(st == 200 and all(t == j["choices"][0]["logprobs"]["tokens"][0] for t in j["choices"][0]["logprobs"]["tokens"]),
          "logit_bias +100 forces one token")
    # (the first 20 greedy tokens repeat none, so the penalties show only over 40)
    st, text, finish, _ = completion("Once upon a time", 40, presence_penalty=2.0, frequency_penalty=2.0,
                                     ignore_eos=True)
    check(st == 200 and text != full, "penalties change greedy output")


def test_errors_have_openai_shape():
    cases = [
        ("/v1/chat/completions", b"{bad json", 400, None, "invalid_json"),
        ("/v1/chat/completions", {"messages": "hi"}, 400, "messages", None),
        ("/v1/chat/completions", {"model": "stories260K"}, 400, "messages", "missing_required_parameter"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "temperature": "1"}, 400,
         "temperature", "invalid_type"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "n": 3}, 400, "n", None),
        ("/v1/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}, 404, "model",
         "model_not_found"),
        ("/v1/completions", {"prompt": 5}, 400, "prompt", "invalid_type"),
        ("/v1/completions", {"prompt": "x", "max_tokens": -1}, 400, "max_tokens", None),
    ]
    for path, body, status, param, code in cases:
        st, h, b = srv.post(path, body)
        check(st == status, "%s %r: status %d, want %d" % (path, body, st, status))
        if error_shape(b, st):
            e = json.loads(b)["error"]
            check(param is None or e["param"] == param, "param %r for %r" % (e["param"], body))
            check(code is None or e["code"] == code, "code %r for %r" % (e["code"], body))


def test_malformed_corpus():
    """Every file in corpus/ is posted verbatim; its name says the endpoint and status."""
    files = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "*.json")))
    check(len(files) > 40, "corpus present")
    for f in files:
        name = os.path.basename(f)
        endpoint, status = name.split("-")[0], int(name.split("-")[1])
        body = open(f, "rb").read()
        path = "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
        st, h, b = srv.post(path, body)
        check(st == status, "%s: status %d, want %d (%r)" % (name, st, status, b[:200]))
        if status >= 400:
            error_shape(b, st)
    st, j = srv.json("/health")
    check(st == 200, "healthy after the corpus")


def test_prompt_longer_than_context():
    prompt = "Once upon a time " * 40
    n = len(subprocess.run([SOV_BIN, "tokenize", "-m", STORIES, "-p", prompt], check=True, capture_output=True,
                           text=True).stdout.split())
    with Server(STORIES, "--ctx", "64", "-np", "2") as s:
        st, h, b = s.post("/v1/completions", {"prompt": prompt, "max_tokens": 4})
        check(st == 400, "too long prompt is 400")
        if error_shape(b, st):
            e = json.loads(b)["error"]
            check(e["code"] == "context_length_exceeded" and " 64 " in e["message"] and " %d " % n in e["message"],
                  "the message gives both counts (64, %d): %r" % (n, e["message"]))
        # max_tokens beyond the context is cut at the context
        st, j = s.json("/v1/completions", {"prompt": "Once", "max_tokens": 1000, "ignore_eos": True})
        check(st == 200 and j["usage"]["prompt_tokens"] + j["usage"]["completion_tokens"] <= 64 + 1 and
              j["choices"][0]["finish_reason"] == "length", "generation stops at the context: %r" % j.get("usage"))


def test_huge_bodies_get_413():
    with Server(STORIES, "--max-body-kb", "4") as s:
        body = json.dumps({"prompt": "x" * 6000, "max_tokens": 1}).encode()
        st, h, b = s.post("/v1/completions", body)
        check(st == 413, "6 KB body over a 4 KB limit is 413 (%d)" % st) and error_shape(b, st)
        big = b"{\"prompt\":\"" + b"x" * 200000 + b"\"}"
        try:
            st, h, b = s.post("/v1/completions", big)
            check(st == 413, "200 KB body is 413 (%d)" % st)
        except (ConnectionError, EOFError, BrokenPipeError):
            check(False, "200 KB body: the connection broke instead of a 413")
    # a Content-Length far past the limit whose body never comes: libevent drains what
    # arrives (nothing is buffered) and the idle timeout closes the connection
    with Server(STORIES, "--max-body-kb", "4", "--http-timeout", "1") as s:
        c = s.connect(timeout=20)
        c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n{" + b"x" * 100000)
        t0 = time.time()
        try:
            data = c.recv(1000)
        except ConnectionResetError:
            data = b""
        check(time.time() - t0 < 10 and (data == b"" or data.startswith(b"HTTP/1.1 413")),
              "huge Content-Length: closed or 413 within the idle timeout: %r" % data[:40])
        c.close()
        st, j = s.json("/health")
        check(st == 200, "healthy after huge bodies")


def test_slow_client_is_served():
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}).encode()
    req = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body)) + body
    s = srv.connect()
    for i in range(0, len(req), 7):
        s.sendall(req[i:i + 7])
        time.sleep(0.01)
    st, h, b = read_response(s)
    s.close()
    check(st == 200 and json.loads(b)["usage"]["completion_tokens"] >= 1, "byte-dribbling client served")
    # a client that reads its stream slowly still gets all of it
    s = srv.connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    body = json.dumps({"prompt": "Once", "max_tokens": 200, "stream": True, "ignore_eos": True}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
              % len(body) + body)
    time.sleep(1.0)
    st, h, b = read_response(s)
    s.close()
    text, finish, usage, ev = stream_text(b)
    check(st == 200 and ev[-1] == "[DONE]" and finish == "length", "slow reader gets the whole stream")


def test_stalled_client_is_dropped():
    with Server(STORIES, "--http-timeout", "1") as s:
        c = s.connect(timeout=10)
        c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Len")
        t0 = time.time()
        try:
            data = c.recv(1000)
        except ConnectionResetError:
            data = b""
        check(time.time() - t0 < 8, "a stalled request is closed after the idle timeout")
        check(data == b"" or data.startswith(b"HTTP/1.1 4"), "closed or refused: %r" % data[:40])
        c.close()
        st, j = s.json("/health")
        check(st == 200, "healthy after a stalled client")


def kv_settled(m):
    """No sequence holds blocks: all used blocks belong to the prefix cache."""
    return m["sov_running_sequences"] == 0 and m["sov_kv_blocks_used"] == m["sov_prefix_cache_blocks"]


def test_disconnect_mid_stream_frees_blocks():
    # The slow model: on stories260K a 512-token stream can end before the metrics are read.
    with Server(slow_model(), "-np", "2") as srv:
        s = srv.connect()
        body = json.dumps({"prompt": "Once upon a time", "max_tokens": 3000, "stream": True,
                           "ignore_eos": True}).encode()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        data = s.recv(4096)
        check(data.startswith(b"HTTP/1.1 200"), "stream started")
        m = srv.metrics()
        check(m["sov_running_sequences"] >= 1 and m["sov_kv_blocks_used"] > m["sov_prefix_cache_blocks"],
              "the stream holds KV blocks")
        s.close()
        m = srv.wait_metric('sov_requests_finished_total{reason="cancelled"}', lambda v: v == 1)
        check(m['sov_requests_finished_total{reason="cancelled"}'] == 1, "the disconnected stream is cancelled")
        m = srv.wait_metric("sov_running_sequences", lambda v: v == 0)
        check(kv_settled(m), "its blocks are freed: used %g, cached %g" % (m["sov_kv_blocks_used"],
                                                                           m["sov_prefix_cache_blocks"]))


def test_disconnect_while_waiting_cancels():
    with Server(slow_model(), "-np", "1") as s:
        long = json.dumps({"prompt": "Once", "max_tokens": 3000, "ignore_eos": True}).encode()
        hold = s.connect()
        hold.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(long) + long)
        time.sleep(0.2)
        waiting = s.connect()
        waiting.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(long) + long)
        m = s.wait_metric("sov_queue_depth", lambda v: v == 1)
        check(m["sov_queue_depth"] == 1, "one request waits")
        waiting.close()  # a non-streaming client gives up while queued
        hold.close()     # and one gives up while it computes (nothing written yet)
        m = s.wait_metric('sov_requests_finished_total{reason="cancelled"}', lambda v: v == 2)
        check(m['sov_requests_finished_total{reason="cancelled"}'] == 2, "both cancelled")
        m = s.wait_metric("sov_running_sequences", lambda v: v == 0)
        check(kv_settled(m) and m["sov_queue_depth"] == 0, "nothing left running or waiting")


def test_overload_gets_429():
    with Server(slow_model(), "-np", "1", "--queue", "1") as s:
        body = json.dumps({"prompt": "Once", "max_tokens": 40, "ignore_eos": True}).encode()
        req = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        conns = [s.connect() for _ in range(6)]
        for c in conns:  # all six arrive within a millisecond: one runs, one waits, four are refused
            c.sendall(req)
        results = []
        for c in conns:
            results.append(read_response(c))
            c.close()
        statuses = sorted(r[0] for r in results)
        check(statuses.count(200) >= 2 and statuses.count(429) >= 1 and set(statuses) <= {200, 429},
              "200s and 429s only: %r" % statuses)
        for st, h, b in results:
            if st == 429:
                check(h.get("retry-after") == "1", "429 has Retry-After") and error_shape(b, st)


def test_prefix_cache_reports_cached_tokens():
    story = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. " * 6)
    a = srv.json("/v1/completions", {"prompt": story + "One day", "max_tokens": 4, "temperature": 0})[1]
    b = srv.json("/v1/completions", {"prompt": story + "The end", "max_tokens": 4, "temperature": 0})[1]
    n = b["usage"]["prompt_tokens"]
    cached = b["usage"]["prompt_tokens_details"]["cached_tokens"]
    check(n - 4 <= cached < n, "second request reuses the whole shared prefix (token granularity): %d of %d" % (cached, n))
    check(a["choices"][0]["text"] == sov_run(STORIES, story + "One day", 4), "first equals sov run")
    check(b["choices"][0]["text"] == sov_run(STORIES, story + "The end", 4), "cached second equals sov run")


def test_deadline_ends_request():
    with Server(slow_model(), "--timeout", "0.3", "-np", "1") as s:
        t0 = time.time()
        st, j = s.json("/v1/completions", {"prompt": "Once", "max_tokens": 4000, "ignore_eos": True})
        check(st == 200 and j["choices"][0]["finish_reason"] == "length" and time.time() - t0 < 5 and
              0 < j["usage"]["completion_tokens"] < 4000,
              "deadline cuts the generation: %r %r" % (j.get("choices"), j.get("usage")))


def test_sigterm_is_graceful():
    s = Server(slow_model(), "--shutdown-timeout", "60")  # generous: ASan on a loaded CI machine
    c = s.connect()
    body = json.dumps({"prompt": "Once", "max_tokens": 400, "stream": True, "ignore_eos": True}).encode()
    c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    first = c.recv(100)
    check(first.startswith(b"HTTP/1.1 200"), "stream started")
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    try:
        st, h, b = s.get("/ready", timeout=2)
        check(False, "a new connection after SIGTERM was accepted (%d)" % st)
    except (ConnectionError, OSError, EOFError):
        pass
    st, h, b = read_response_after(c, first)
    text, finish, usage, ev = stream_text(b)
    check(finish == "length" and ev[-1] == "[DONE]", "the running stream finished after SIGTERM")
    check(s.proc.wait(30) == 0, "exit status 0")
    s.log.close()
    # a stream past the grace period is cut and the server still exits
    s = Server(slow_model(), "--shutdown-timeout", "0.5", "-np", "1")
    c = s.connect()
    body = json.dumps({"prompt": "Once", "max_tokens": 4000, "stream": True, "ignore_eos": True}).encode()
    c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    first = c.recv(100)
    t0 = time.time()
    s.proc.send_signal(signal.SIGTERM)
    check(s.proc.wait(30) == 0 and time.time() - t0 < 10, "exits soon after the grace period")
    s.log.close()
    c.close()


def test_shutdown_writes_out_finished_answers():
    """An answer the engine has finished but the client has not read yet (several MB still in
    the server's buffers, beyond what the kernel socket buffers hold) is written out in full
    before the server exits on SIGTERM."""
    path = synthetic_model("srv_wide_vocab.gguf", "--dim", "64", "--layers", "1", "--heads", "4", "--kv-heads", "2",
                           "--ffn", "128", "--vocab", "8192", "--ctx", "8192")
    s = Server(path, "--shutdown-timeout", "60", "-c", "8192")
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the server must buffer
    c.settimeout(60)
    c.connect((s.host, s.port))
    body = json.dumps({"prompt": "Once", "max_tokens": 8000, "stream": True, "ignore_eos": True,
                       "logprobs": 20}).encode()  # ~1 kB per token, ~8 MB in all
    c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    t_end = time.time() + 120
    while time.time() < t_end:
        time.sleep(0.2)
        m = s.metrics()
        if m.get("sov_requests_finished_total{reason=\"length\"}", 0) >= 1:
            break
    check(time.time() < t_end, "the engine finished the request")
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # now read it quickly
    try:
        st, h, b = read_response(c)
        text, finish, usage, ev = stream_text(b)
        check(st == 200 and finish == "length" and ev[-1] == "[DONE]" and len(b) > 4 << 20,
              "the whole answer (%d bytes) reached the client after SIGTERM" % len(b))
    except (OSError, EOFError) as e:
        check(False, "the answer was cut at shutdown: %r" % e)
    check(s.proc.wait(30) == 0, "exit status 0")
    s.log.close()
    c.close()


def read_response_after(sock, already):
    """read_response over a socket of which `already` bytes were read."""
    class Pre:
        def __init__(self, s, pre):
            self.s, self.pre = s, pre

        def recv(self, n):
            if self.pre:
                p, self.pre = self.pre, b""
                return p
            return self.s.recv(n)
    return read_response(Pre(sock, already))


def test_synthetic_model_chat_without_template():
    path = synthetic_model("srv_synth_q8.gguf", "--type", "Q8_0", "--dim", "128", "--layers", "2", "--heads", "4",
                           "--kv-heads", "2", "--ffn", "256", "--vocab", "1024")
    with Server(path, "-np", "4") as s:
        st, j = s.json("/v1/chat/completions", {"messages": [{"role": "user", "content": "hello"}],
                                                "max_tokens": 6, "ignore_eos": True, "temperature": 0})
        check(st == 200 and j["usage"]["completion_tokens"] == 6, "chat on a model without a template (ChatML)")
        st, j = s.json("/v1/models")
        check(j["data"][0]["id"] == "srv_synth_q8", "id from the file name")


def main():
    global srv
    srv = Server(STORIES, "-np", "8", "--ctx", "512")
    try:
        run_tests([test_endpoints_answer, test_greedy_equals_sov_run, test_concurrent_greedy_equals_sov_run,
                   test_chat_shapes, test_logprobs, test_stop_seed_and_penalties, test_errors_have_openai_shape,
                   test_malformed_corpus, test_prefix_cache_reports_cached_tokens,
                   test_disconnect_mid_stream_frees_blocks, test_slow_client_is_served,
                   test_prompt_longer_than_context, test_huge_bodies_get_413, test_stalled_client_is_dropped,
                   test_disconnect_while_waiting_cancels, test_overload_gets_429, test_deadline_ends_request,
                   test_sigterm_is_graceful, test_shutdown_writes_out_finished_answers, test_synthetic_model_chat_without_template])
    finally:
        rc = srv.stop()
        check(rc == 0, "server exit status %s:\n%s" % (rc, srv.output()[-3000:]))
    finish()


if __name__ == "__main__":
    main()
