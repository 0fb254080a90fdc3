#!/usr/bin/python3
"""Load generator for OpenAI-compatible streaming servers (sov serve, llama-server).

N concurrent clients each send R streaming requests one after another to
/v1/completions (or /v1/chat/completions) and the run reports requests
ok/refused/errors, aggregate generated tokens/s, time to first token and
inter-token latency percentiles. Standard library only (asyncio + raw sockets);
loopback only.

  bench/loadgen.py --url http://127.0.0.1:8080 --clients 16 --rounds 2 --max-tokens 64
  bench/loadgen.py --url http://127.0.0.1:8080 --clients 4 --endpoint chat --json

Exit status: 0 when every request succeeded (429 refusals are not failures),
1 when some failed or the --timeout cut the run short, 2 on bad arguments,
3 when --wait-health gave up.
"""

import argparse
import asyncio
import ipaddress
import json
import math
import os
import sys
import time
import urllib.parse

DEFAULT_PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play"

# Words for --prompt-tokens-approx: common English words are about one token each with
# Llama-style vocabularies; the real count is reported (prompt_tokens from usage).
FILLER = ("Once upon a time there was a little girl named Lily who lived in a small house "
          "near the big forest with her mother and her dog Max . Every day she went out to "
          "play in the garden and look at the flowers and the birds in the trees .").split()


def die(msg, code=2):
    print("loadgen: " + msg, file=sys.stderr)
    sys.exit(code)


def parse_url(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http":
        die("only http:// URLs are supported (got %r)" % url)
    host = u.hostname
    if not host:
        die("no host in URL %r" % url)
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        die("refusing non-loopback host %r: loadgen only talks to 127.0.0.0/8, ::1 or localhost" % host)
    try:
        port = u.port or 80
    except ValueError:
        die("bad port in URL %r" % url)
    base = u.path.rstrip("/")
    if base.endswith("/v1"):
        base = base[:-3]
    return host, port, base


def approx_prompt(n):
    words = [FILLER[i % len(FILLER)] for i in range(max(1, n))]
    return " ".join(words)


def percentile(xs, p):
    """Linear interpolation between closest ranks (numpy's default)."""
    if not xs:
        return None
    s = sorted(xs)
    k = (len(s) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class Result:
    __slots__ = ("client", "round", "status", "outcome", "error", "t_start", "t_end", "ttft",
                 "gaps", "n_chunks", "completion_tokens", "prompt_tokens", "cached_tokens",
                 "finish_reason")

    def __init__(self, client, rnd):
        self.client, self.round = client, rnd
        self.status = None          # HTTP status
        self.outcome = "error"      # ok | refused | error
        self.error = None
        self.t_start = self.t_end = None
        self.ttft = None            # seconds from sending to the first content chunk
        self.gaps = []              # seconds between successive content chunks
        self.n_chunks = 0           # chunks carrying content
        self.completion_tokens = None
        self.prompt_tokens = None
        self.cached_tokens = None
        self.finish_reason = None

    def tokens(self):
        if self.completion_tokens is not None:
            return self.completion_tokens
        return self.n_chunks


class HTTPError(Exception):
    pass


async def read_headers(reader):
    line = await reader.readline()
    if not line:
        raise HTTPError("connection closed before the status line")
    parts = line.decode("latin-1").strip().split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise HTTPError("bad status line %r" % line[:80])
    status = int(parts[1])
    headers = {}
    while True:
        line = await reader.readline()
        if not line:
            raise HTTPError("connection closed in the headers")
        if line in (b"\r\n", b"\n"):
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers


async def body_pieces(reader, headers):
    """Yield the body as it arrives: chunked, Content-Length or read-to-close."""
    te = headers.get("transfer-encoding", "").lower()
    if "chunked" in te:
        while True:
            line = await reader.readline()
            if not line:
                raise HTTPError("connection closed inside a chunked body")
            size_s = line.split(b";", 1)[0].strip()
            try:
                size = int(size_s, 16)
            except ValueError:
                raise HTTPError("bad chunk size %r" % line[:40])
            if size == 0:
                while True:  # trailers up to the empty line
                    t = await reader.readline()
                    if not t or t in (b"\r\n", b"\n"):
                        return
            data = await reader.readexactly(size)
            crlf = await reader.readline()
            if crlf not in (b"\r\n", b"\n"):
                raise HTTPError("missing CRLF after a chunk")
            yield data
    elif "content-length" in headers:
        left = int(headers["content-length"])
        while left > 0:
            data = await reader.read(min(left, 65536))
            if not data:
                raise HTTPError("connection closed with %d body bytes missing" % left)
            left -= len(data)
            yield data
    else:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            yield data


def chunk_content(obj, chat):
    """The generated text in one stream chunk (sov, llama-server, OpenAI shapes)."""
    ch = obj.get("choices")
    if isinstance(ch, list) and ch:
        c0 = ch[0] if isinstance(ch[0], dict) else {}
        if c0.get("finish_reason"):
            obj["_finish"] = c0["finish_reason"]
        if chat or "delta" in c0:
            d = c0.get("delta") or {}
            t = d.get("content") or d.get("reasoning_content") or ""
        else:
            t = c0.get("text") or ""
        return t
    if isinstance(obj.get("content"), str):  # llama-server's native /completion shape
        if obj.get("stop"):
            obj["_finish"] = obj.get("stop_type") or "stop"
        return obj["content"]
    return ""


async def one_request(cfg, res, prompt):
    chat = cfg.endpoint == "chat"
    path = cfg.base + ("/v1/chat/completions" if chat else "/v1/completions")
    body = {"max_tokens": cfg.max_tokens, "stream": True, "ignore_eos": True,
            "temperature": 0, "stream_options": {"include_usage": True}}
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if cfg.model:
        body["model"] = cfg.model
    payload = json.dumps(body).encode()
    req = ("POST %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: sov-loadgen\r\n"
           "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
           "Content-Length: %d\r\nConnection: close\r\n\r\n"
           % (path, cfg.host_header, cfg.port, len(payload))).encode() + payload

    res.t_start = time.perf_counter()
    writer = None
    try:
        reader, writer = await asyncio.open_connection(cfg.host, cfg.port, limit=1 << 22)
        writer.write(req)
        await writer.drain()
        status, headers = await read_headers(reader)
        res.status = status
        if status != 200:
            raw = b""
            async for piece in body_pieces(reader, headers):
                raw += piece
                if len(raw) > 65536:
                    break
            msg = raw.decode("utf-8", "replace").strip()
            try:
                msg = json.loads(msg)["error"]["message"]
            except Exception:
                pass
            res.outcome = "refused" if status == 429 else "error"
            res.error = "HTTP %d: %s" % (status, str(msg)[:200])
            return

        buf = b""
        last = None
        done = False
        async for piece in body_pieces(reader, headers):
            now = time.perf_counter()
            buf += piece
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                line, buf = buf[:nl].rstrip(b"\r"), buf[nl + 1:]
                if not line.startswith(b"data:"):
                    continue  # event:, id:, comments, blank separators
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    continue
                if not data:
                    continue
                try:
                    obj = json.loads(data)
                except ValueError:
                    raise HTTPError("bad JSON in the stream: %r" % data[:80])
                if not isinstance(obj, dict):
                    continue
                if obj.get("error"):
                    e = obj["error"]
                    raise HTTPError("error in the stream: %s"
                                    % (e.get("message") if isinstance(e, dict) else e))
                text = chunk_content(obj, chat)
                if obj.get("_finish"):
                    res.finish_reason = obj["_finish"]
                u = obj.get("usage")
                if isinstance(u, dict) and u.get("completion_tokens") is not None:
                    res.completion_tokens = u.get("completion_tokens")
                    res.prompt_tokens = u.get("prompt_tokens")
                    det = u.get("prompt_tokens_details")
                    if isinstance(det, dict):
                        res.cached_tokens = det.get("cached_tokens")
                if text:
                    res.n_chunks += 1
                    if last is None:
                        res.ttft = now - res.t_start
                    else:
                        res.gaps.append(now - last)
                    last = now
        if not done and res.finish_reason is None:
            raise HTTPError("stream ended without [DONE] or a finish_reason")
        if res.n_chunks == 0 and not res.completion_tokens:
            raise HTTPError("stream carried no generated text")
        res.outcome = "ok"
    except asyncio.CancelledError:
        res.error = "cut short by --timeout"
        raise
    except (OSError, HTTPError, asyncio.IncompleteReadError, ValueError) as e:
        res.outcome = "error"
        res.error = "%s: %s" % (type(e).__name__, e) if not isinstance(e, HTTPError) else str(e)
    finally:
        res.t_end = time.perf_counter()
        if writer is not None:
            writer.close()


class Progress:
    def __init__(self, total, enabled):
        self.total, self.enabled = total, enabled
        self.done = self.ok = self.refused = self.errors = 0
        self.tty = sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self.last_print = 0.0
        self.last_done = -1

    def add(self, res):
        self.done += 1
        if res.outcome == "ok":
            self.ok += 1
        elif res.outcome == "refused":
            self.refused += 1
        else:
            self.errors += 1
        self.show()

    def show(self, final=False):
        if not self.enabled:
            return
        now = time.perf_counter()
        # on a terminal: redraw in place; in a log: a line per second at most
        if self.done == self.last_done and not (final and self.tty):
            return
        if not final and not self.tty and now - self.last_print < 1.0 and self.done < self.total:
            return
        self.last_print, self.last_done = now, self.done
        line = ("loadgen: %d/%d requests done (ok %d, refused %d, errors %d) %.1fs"
                % (self.done, self.total, self.ok, self.refused, self.errors, now - self.t0))
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    async def ticker(self):
        while True:
            await asyncio.sleep(1.0)
            if self.tty:
                self.last_done = -1
            self.show()


async def client_loop(cfg, c, base_prompt, results, prog):
    for r in range(cfg.rounds):
        prompt = base_prompt if cfg.same_prompt else "%s (client %d, round %d)" % (base_prompt, c, r)
        res = Result(c, r)
        results.append(res)
        await one_request(cfg, res, prompt)
        prog.add(res)


async def wait_health(cfg, seconds):
    deadline = time.perf_counter() + seconds
    req = ("GET %s/health HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n"
           % (cfg.base, cfg.host_header, cfg.port)).encode()
    while time.perf_counter() < deadline:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(cfg.host, cfg.port), 2)
            try:
                writer.write(req)
                await writer.drain()
                status, _ = await asyncio.wait_for(read_headers(reader), 5)
                if status == 200:
                    return True
            finally:
                writer.close()
        except (OSError, HTTPError, asyncio.TimeoutError, ValueError):
            pass
        await asyncio.sleep(0.2)
    return False


async def run(cfg, base_prompt):
    total = cfg.clients * cfg.rounds
    prog = Progress(total, not cfg.quiet)
    results = []
    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(client_loop(cfg, c, base_prompt, results, prog))
             for c in range(cfg.clients)]
    ticker = asyncio.ensure_future(prog.ticker()) if not cfg.quiet else None
    _, pending = await asyncio.wait(tasks, timeout=cfg.timeout)
    timed_out = bool(pending)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    wall = time.perf_counter() - t0
    if ticker:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
    prog.show(final=True)
    for t in tasks:  # a bug in a client task should not go unnoticed
        if t.done() and not t.cancelled() and t.exception():
            print("loadgen: client task failed: %r" % t.exception(), file=sys.stderr)
    return results, wall, timed_out


def summarize(cfg, results, wall, timed_out, prompt):
    total = cfg.clients * cfg.rounds
    ok = [r for r in results if r.outcome == "ok"]
    refused = [r for r in results if r.outcome == "refused"]
    errors = [r for r in results if r.outcome == "error"]
    gen_tokens = sum(r.tokens() for r in results if r.outcome in ("ok", "error"))
    ok_tokens = sum(r.tokens() for r in ok)
    ttft = [r.ttft for r in ok if r.ttft is not None]
    gaps = [g for r in ok for g in r.gaps]
    # per stream decode speed: tokens after the first over the time they took
    per_stream = []
    for r in ok:
        if len(r.gaps) >= 1 and sum(r.gaps) > 0:
            per_stream.append((r.tokens() - 1) / sum(r.gaps) if r.completion_tokens else
                              len(r.gaps) / sum(r.gaps))
    lat = [r.t_end - r.t_start for r in ok]
    ms = lambda v: None if v is None else round(v * 1000.0, 2)
    err_kinds = {}
    for r in errors:
        k = (r.error or "unknown")[:120]
        err_kinds[k] = err_kinds.get(k, 0) + 1
    ptoks = [r.prompt_tokens for r in ok if r.prompt_tokens is not None]
    cached = [r.cached_tokens for r in ok if r.cached_tokens is not None]
    return {
        "url": cfg.url,
        "endpoint": cfg.endpoint,
        "clients": cfg.clients,
        "rounds": cfg.rounds,
        "max_tokens": cfg.max_tokens,
        "requests": total,
        "ok": len(ok),
        "refused": len(refused),
        "errors": len(errors),
        "not_sent": total - len(results),
        "timed_out": timed_out,
        "wall_s": round(wall, 3),
        "completion_tokens": gen_tokens,
        "completion_tokens_ok": ok_tokens,
        "gen_tok_s": round(gen_tokens / wall, 2) if wall > 0 else None,
        "req_s": round(len(ok) / wall, 3) if wall > 0 else None,
        "prompt_chars": len(prompt),
        "prompt_tokens_mean": round(sum(ptoks) / len(ptoks), 1) if ptoks else None,
        "cached_tokens_mean": round(sum(cached) / len(cached), 1) if cached else None,
        "ttft_ms_p50": ms(percentile(ttft, 50)),
        "ttft_ms_p95": ms(percentile(ttft, 95)),
        "ttft_ms_max": ms(max(ttft)) if ttft else None,
        "itl_ms_p50": ms(percentile(gaps, 50)),
        "itl_ms_p95": ms(percentile(gaps, 95)),
        "itl_ms_p99": ms(percentile(gaps, 99)),
        "itl_ms_mean": ms(sum(gaps) / len(gaps)) if gaps else None,
        "stream_tok_s_p50": round(percentile(per_stream, 50), 2) if per_stream else None,
        "latency_ms_p50": ms(percentile(lat, 50)),
        "latency_ms_p95": ms(percentile(lat, 95)),
        "error_kinds": err_kinds,
    }


def fmt(v, unit=""):
    return "-" if v is None else ("%g%s" % (v, unit))


def print_report(s):
    print("url            %s (/v1/%s)" % (s["url"], "chat/completions" if s["endpoint"] == "chat" else "completions"))
    print("clients        %d x %d rounds, max_tokens %d" % (s["clients"], s["rounds"], s["max_tokens"]))
    print("requests       %d: ok %d, refused (429) %d, errors %d%s%s"
          % (s["requests"], s["ok"], s["refused"], s["errors"],
             ", not sent %d" % s["not_sent"] if s["not_sent"] else "",
             "  (cut short by --timeout)" if s["timed_out"] else ""))
    print("wall time      %.3f s" % s["wall_s"])
    print("generated      %d tokens, %s tok/s aggregate, %s req/s"
          % (s["completion_tokens"], fmt(s["gen_tok_s"]), fmt(s["req_s"])))
    print("prompt         %s tokens (mean), %s cached (mean)"
          % (fmt(s["prompt_tokens_mean"]), fmt(s["cached_tokens_mean"])))
    print("TTFT           p50 %s  p95 %s  max %s"
          % (fmt(s["ttft_ms_p50"], " ms"), fmt(s["ttft_ms_p95"], " ms"), fmt(s["ttft_ms_max"], " ms")))
    print("ITL            p50 %s  p95 %s  p99 %s  mean %s"
          % (fmt(s["itl_ms_p50"], " ms"), fmt(s["itl_ms_p95"], " ms"), fmt(s["itl_ms_p99"], " ms"),
             fmt(s["itl_ms_mean"], " ms")))
    print("per stream     %s tok/s (p50)   request latency p50 %s  p95 %s"
          % (fmt(s["stream_tok_s_p50"]), fmt(s["latency_ms_p50"], " ms"), fmt(s["latency_ms_p95"], " ms")))
    for k, n in s["error_kinds"].items():
        print("error x%-6d %s" % (n, k))


def main():
    ap = argparse.ArgumentParser(
        description="Streaming load generator for OpenAI-compatible servers (loopback only).")
    ap.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL (loopback only)")
    ap.add_argument("--clients", type=int, default=1, help="concurrent streaming clients (default 1)")
    ap.add_argument("--rounds", type=int, default=2, help="requests per client, one after another (default 2)")
    ap.add_argument("--max-tokens", type=int, default=64, help="max_tokens per request (default 64)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--prompt", help="prompt text")
    g.add_argument("--prompt-tokens-approx", type=int, metavar="N",
                   help="a generated prompt of roughly N tokens")
    ap.add_argument("--shared-prefix-file", metavar="FILE", help="text prepended to every prompt")
    ap.add_argument("--same-prompt", action="store_true",
                    help="send the identical prompt everywhere (no per-client suffix)")
    ap.add_argument("--endpoint", choices=("completions", "chat"), default="completions")
    ap.add_argument("--model", help='sent as "model"')
    ap.add_argument("--timeout", type=float, default=600, help="bound on the whole run in seconds (default 600)")
    ap.add_argument("--wait-health", type=float, metavar="S",
                    help="first wait up to S seconds for GET /health to answer 200 (exit 3 if not); "
                         "with --clients 0 only wait")
    ap.add_argument("--json", action="store_true", help="print one JSON line with the results")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    cfg = ap.parse_args()

    cfg.host, cfg.port, cfg.base = parse_url(cfg.url)
    cfg.host_header = "[%s]" % cfg.host if ":" in cfg.host else cfg.host
    if cfg.clients < 0 or cfg.clients > 4096:
        die("--clients must be 0..4096")
    if cfg.rounds < 1 or cfg.rounds > 100000:
        die("--rounds must be at least 1")
    if cfg.max_tokens < 1:
        die("--max-tokens must be at least 1")
    if not cfg.timeout > 0:
        die("--timeout must be positive")

    if cfg.wait_health is not None:
        if not asyncio.run(wait_health(cfg, cfg.wait_health)):
            die("no 200 from %s/health within %gs" % (cfg.url.rstrip("/"), cfg.wait_health), 3)
    if cfg.clients == 0:
        return 0

    if cfg.prompt is not None:
        prompt = cfg.prompt
    elif cfg.prompt_tokens_approx is not None:
        prompt = approx_prompt(cfg.prompt_tokens_approx)
    else:
        prompt = DEFAULT_PROMPT
    if cfg.shared_prefix_file:
        try:
            with open(cfg.shared_prefix_file, encoding="utf-8") as f:
                prompt = f.read() + prompt
        except OSError as e:
            die("cannot read --shared-prefix-file: %s" % e)

    # many clients: make sure the descriptors are there
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = min(hard, max(soft, cfg.clients * 2 + 64))
        if want > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass

    try:
        results, wall, timed_out = asyncio.run(run(cfg, prompt))
    except KeyboardInterrupt:
        die("interrupted", 130)
    s = summarize(cfg, results, wall, timed_out, prompt)
    if cfg.json:
        print(json.dumps(s, separators=(",", ":")))
    else:
        print_report(s)
    sys.stdout.flush()
    return 0 if (s["errors"] == 0 and s["not_sent"] == 0 and not timed_out) else 1


if __name__ == "__main__":
    sys.exit(main())
