"""test_policy_server.py - the data policy on `sov serve --policy FILE` and `sov policy`:
a malformed policy stops the server at start-up with one line naming the file and line
(before the model loads); the region label shows in /v1/models, /ready and /metrics; with
redact_prompts the model never sees the personal data: a prompt holding it gives exactly
the tokens, prefix-cache hits, greedy text and log-probabilities of the same prompt with
the placeholders already in, while a server without the policy sees different tokens;
token-id prompts are refused; only the policy's kinds are redacted; the command line
checks policies and redacts text."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "server"))
from serverlib import SOV_BIN, TMP, Server, check, finish, run_tests, shared_model, stream_text

STORIES = shared_model("stories260K.gguf")
DATA = os.environ.get("SOV_TEST_DATA", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(DATA, "policy", "corpus")

PII = "Kim's phone is 010-1234-5678, mail kim@example.com, card 4111 1111 1111 1111. Once upon a time"
CLEAN = "Kim's phone is [PHONE], mail [EMAIL], card [CARD]. Once upon a time"


def policy_file(name, text):
    os.makedirs(TMP, exist_ok=True)
    p = os.path.join(TMP, "policy-%d-%s.toml" % (os.getpid(), name))
    with open(p, "w") as f:
        f.write(text)
    return p


REDACTING = """# the node in Seoul keeps hashes and redacts prompts
region = "KR-Seoul-1"
redact_prompts = true
"""


def complete(srv, prompt, **kw):
    body = {"prompt": prompt, "max_tokens": 12, "temperature": 0, "logprobs": 3}
    body.update(kw)
    st, _, b = srv.post("/v1/completions", body)
    j = json.loads(b) if b else {}
    check(st == 200, "completion: 200 (%d %r)" % (st, b[:300]))
    return j


def seen(j):
    """What the model computed from: prompt token count, greedy text and its log-probabilities."""
    c = j.get("choices", [{}])[0]
    return j.get("usage", {}).get("prompt_tokens"), c.get("text"), c.get("logprobs")


def test_malformed_policy_stops_the_server_at_start():
    cases = [("unknown-key.toml", ":3: unknown key 'retension' (did you mean 'retention'?)"),
             ("full-without-days.toml", ":2: retention = \"full\" needs retention_days"),
             ("not-utf8.toml", ":1: byte 0xe9 at column 4 is not UTF-8")]
    for name, fragment in cases:
        path = os.path.join(CORPUS, name)
        t0 = time.time()
        r = subprocess.run([SOV_BIN, "serve", "-m", STORIES, "--port", "0", "--policy", path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        err = r.stderr.decode("utf-8", "replace")
        lines = err.strip().split("\n")
        check(r.returncode == 1, "%s: exit 1 (%d)" % (name, r.returncode))
        check(len(lines) == 1 and lines[0].startswith("sov serve: " + path + fragment),
              "%s: one line naming file and line: %r" % (name, err))
        check("loading" not in err and time.time() - t0 < 10, "%s: refused before the model loads" % name)
    r = subprocess.run([SOV_BIN, "serve", "--policy", "/nonexistent/p.toml"], stderr=subprocess.PIPE, timeout=60)
    err = r.stderr.decode()
    check(r.returncode == 1 and "/nonexistent/p.toml" in err and "No such file" in err,
          "a missing policy file: %r" % err)


def test_region_in_models_ready_and_metrics():
    path = policy_file("region", REDACTING)
    with Server(STORIES, "--policy", path) as s:
        check("data policy from %s: retention hashes, region KR-Seoul-1" % path in s.output(),
              "start-up names the policy: " + s.output()[:400])
        st, j = s.json("/v1/models")
        check(st == 200 and j["data"][0]["meta"]["region"] == "KR-Seoul-1", "/v1/models meta.region: %r" % j)
        st, j = s.json("/ready")
        check(st == 200 and j["status"] == "ready" and j["region"] == "KR-Seoul-1", "/ready: %r" % j)
        m = s.metrics()
        info = [k for k in m if k.startswith("sov_policy_info{")]
        check(len(info) == 1 and 'region="KR-Seoul-1"' in info[0] and 'retention="hashes"' in info[0] and
              'redact_prompts="true"' in info[0] and 'allow_egress="false"' in info[0] and m[info[0]] == 1,
              "sov_policy_info: %r" % info)
    with Server(STORIES) as s:
        check("data policy (default" in s.output(), "the default policy is named at start-up")
        st, j = s.json("/ready")
        check(st == 200 and j["status"] == "ready" and j["region"] is None, "/ready without a region: %r" % j)
        st, j = s.json("/v1/models")
        check(j["data"][0]["meta"]["region"] is None, "meta.region null without a region")
        m = s.metrics()
        check(any(k.startswith('sov_policy_info{region="",retention="hashes"') for k in m), "default info series")


def test_redacted_prompt_is_what_the_model_sees():
    path = policy_file("redacting", REDACTING)
    with Server(STORIES, "--policy", path) as a, Server(STORIES) as b:
        with_pii = complete(a, PII)
        placeholders = complete(a, CLEAN)
        check(seen(with_pii) == seen(placeholders),
              "redacting server: the prompt with personal data computes exactly what the placeholder prompt "
              "does:\n  %r\n  %r" % (seen(with_pii), seen(placeholders)))
        cached = placeholders.get("usage", {}).get("prompt_tokens_details", {}).get("cached_tokens", 0)
        n_prompt = seen(placeholders)[0] or 0
        check(n_prompt > 32 and cached >= n_prompt - 16,
              "the placeholder prompt finds the redacted one's blocks in the prefix cache (%d of %d)" %
              (cached, n_prompt))
        # the same prompts on a server without the policy: the raw prompt is other tokens,
        # and the placeholder prompt computes what the redacting server computed
        raw = complete(b, PII)
        check(seen(raw)[0] != seen(with_pii)[0],
              "without the policy the model sees other tokens (%r vs %r)" % (seen(raw)[0], seen(with_pii)[0]))
        check(seen(complete(b, CLEAN)) == seen(with_pii), "the redacting server's answer is the placeholder prompt's")
        check(with_pii["choices"][0]["finish_reason"] == "length" and with_pii["choices"][0]["text"],
              "the redacted request still answers")
        # chat, streamed: every message is redacted (system too)
        msgs = [{"role": "system", "content": "Support agent. Escalations: ops@example.com"},
                {"role": "user", "content": "My number is 010-9876-5432 and my IP 203.0.113.7. Tell a story."}]
        clean = [{"role": "system", "content": "Support agent. Escalations: [EMAIL]"},
                 {"role": "user", "content": "My number is [PHONE] and my IP [IP]. Tell a story."}]
        out = []
        for srv, m in [(a, msgs), (a, clean), (b, clean), (b, msgs)]:
            st, _, body = srv.post("/v1/chat/completions", {"messages": m, "max_tokens": 10, "temperature": 0,
                                                            "stream": True,
                                                            "stream_options": {"include_usage": True}})
            text, fin, usage, _ = stream_text(body)
            check(st == 200 and fin, "chat stream ends (%d)" % st)
            out.append((text, usage and usage["prompt_tokens"]))
        check(out[0] == out[1] == out[2], "chat: redacted = placeholders on both servers: %r" % out[:3])
        check(out[3][1] != out[0][1], "chat without the policy sees other tokens: %r" % out)
        # token ids cannot be read as text: refused, not passed through
        st, _, body = a.post("/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 2})
        e = json.loads(body).get("error", {})
        check(st == 400 and e.get("param") == "prompt" and "redact" in e.get("message", ""),
              "token-id prompt refused under redact_prompts: %d %r" % (st, body[:200]))
        st, _, _ = b.post("/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 2})
        check(st == 200, "token-id prompt served without the policy (%d)" % st)
        m = a.metrics()
        count = lambda k: m.get('sov_prompt_redactions_total{kind="%s"}' % k)
        check(count("phone") == 2 and count("email") == 2 and count("card") == 1 and count("ip") == 1 and
              count("rrn") == 0, "redactions counted by kind: %r" % {k: count(k) for k in
                                                                     ["email", "phone", "rrn", "card", "ip"]})
        m = b.metrics()
        check(m.get('sov_prompt_redactions_total{kind="phone"}') == 0, "no redactions without the policy")


def test_only_the_listed_kinds_are_redacted():
    path = policy_file("email-only", 'redact_prompts = true\nredact = ["email"]\n')
    partial = "Kim's phone is 010-1234-5678, mail [EMAIL], card 4111 1111 1111 1111. Once upon a time"
    with Server(STORIES, "--policy", path) as a, Server(STORIES) as b:
        check(seen(complete(a, PII)) == seen(complete(b, partial)), "only e-mail addresses are replaced")


def test_policy_command():
    ok = policy_file("ok", 'retention = "full"\nretention_days = 30\nregion = "KR-Seoul-1"\n')
    r = subprocess.run([SOV_BIN, "policy", "check", ok], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(r.returncode == 0 and r.stdout.decode().strip() ==
          ok + ": ok: retention full for 30 days, region KR-Seoul-1, redact email,phone,rrn,card,ip (stored "
          "text; prompts as sent), unsigned models allowed, egress locked", "check: %r" % r.stdout)
    bad = os.path.join(CORPUS, "duplicate-key.toml")
    r = subprocess.run([SOV_BIN, "policy", "check", bad], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(r.returncode == 1 and r.stderr.decode().strip() ==
          "sov policy: %s:3: 'region' is set twice (first on line 1)" % bad, "check a bad file: %r" % r.stderr)
    text = "문의: 010-1234-5678, hong@예시.한국으로 (IP 192.0.2.1)\n"
    r = subprocess.run([SOV_BIN, "policy", "redact", "--counts"], input=text.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    check(r.returncode == 0 and r.stdout.decode() == "문의: [PHONE], [EMAIL]으로 (IP [IP])\n",
          "redact stdin: %r" % r.stdout.decode())
    check("phone 1" in r.stderr.decode() and "email 1" in r.stderr.decode(), "--counts: %r" % r.stderr)
    r = subprocess.run([SOV_BIN, "policy", "redact", "--kinds", "ip", "-p", text], stdout=subprocess.PIPE)
    check(r.stdout.decode() == "문의: 010-1234-5678, hong@예시.한국으로 (IP [IP])\n", "--kinds ip: %r" % r.stdout)
    r = subprocess.run([SOV_BIN, "policy", "redact", "--kinds", "ssn"], stdin=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    check(r.returncode == 1 and "unknown kind 'ssn'" in r.stderr.decode(), "bad --kinds: %r" % r.stderr)
    for args in (["policy", "--help"], ["policy", "redact", "--help"], ["policy", "check", "--help"]):
        r = subprocess.run([SOV_BIN] + args, stdout=subprocess.PIPE)
        check(r.returncode == 0 and b"usage: sov policy" in r.stdout, "%s" % " ".join(args))


if __name__ == "__main__":
    run_tests([test_malformed_policy_stops_the_server_at_start, test_region_in_models_ready_and_metrics,
               test_redacted_prompt_is_what_the_model_sees, test_only_the_listed_kinds_are_redacted,
               test_policy_command])
    finish()
