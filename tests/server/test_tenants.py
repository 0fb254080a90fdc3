"""test_tenants.py - tenants on `sov serve --db` with a SQLite state store, over raw HTTP:
every status of the issue (401 missing / malformed / unknown / revoked, 403 model not
allowed, 429 per minute and per day, all in OpenAI's shape with x-ratelimit headers),
/v1/models and /metrics per key, keys created and revoked while the server runs (within a
second; a running stream finishes), a quota under 32 concurrent requests never
over-spent, the prefix cache scoped by tenant (hit for the same tenant, none for another),
usage per tenant in /metrics and `sov keys usage`, SQL-looking names, the `sov keys`
command line, a store that is corrupted, locked or read-only at start-up, and fair
scheduling (a lone tenant's request is not starved by another's flood; FIFO shows the
difference)."""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverlib import (SOV_BIN, TMP, Server, bearer, check, create_key, finish, wait_for, read_response, run_tests,
                       shared_model, sov_keys, sse_events, stream_text, synthetic_model)

STORIES = shared_model("stories260K.gguf")
SQLI = "x'); DROP TABLE keys; --"


def db_path(name):
    os.makedirs(TMP, exist_ok=True)
    p = os.path.join(TMP, "tenants-%d-%s.db" % (os.getpid(), name))
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(p + suffix):
            os.remove(p + suffix)
    return p


def slow_model():
    return synthetic_model("srv_slow_f32.gguf", "--dim", "512", "--layers", "6", "--heads", "8", "--kv-heads", "4",
                           "--ffn", "1536", "--vocab", "4096", "--ctx", "4096")


def error_of(body):
    try:
        e = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        check(False, "not an OpenAI error body: %r" % body[:300])
        return {}
    check(isinstance(e.get("message"), str) and e["message"] and "type" in e and "param" in e and "code" in e,
          "error shape: %r" % body[:300])
    return e


def complete(srv, key=None, prompt="Once upon a time", n=4, headers=None, **kw):
    body = {"prompt": prompt, "max_tokens": n, "temperature": 0}
    body.update(kw)
    h = dict(bearer(key)) if key else {}
    h.update(headers or {})
    return srv.post("/v1/completions", body, headers=h)


def away_from_minute_edge(need=12):
    """Per-minute windows reset at the minute: start a per-minute check with room to finish."""
    left = 60 - time.time() % 60
    if left < need:
        time.sleep(left + 0.5)


# ---- authentication ----

def test_open_without_db_says_so():
    with Server(STORIES) as s:
        st, _, _ = complete(s)
        check(st == 200, "no --db: open")
        m = s.metrics()
        check("sov_auth_required" not in m, "no store figures without a store")
    check("WITHOUT authentication" in s.output(), "start-up says the server is open:\n" + s.output()[:500])


def test_empty_store_opens_then_locks_within_a_second():
    db = db_path("empty")
    with Server(STORIES, "--db", db) as s:
        check("holds no API keys" in s.output(), "start-up says the store has no keys")
        check(complete(s)[0] == 200, "a store without keys serves without them")
        key, _ = create_key(db, "acme")
        t0 = time.time()
        locked = wait_for(lambda: complete(s)[0] == 401, 5)
        took = time.time() - t0
        check(locked and took < 1.5, "the first key turns authentication on within a second (%.2f s)" % took)
        check(complete(s, key)[0] == 200, "the new key works")


def test_statuses_and_shapes():
    db = db_path("statuses")
    admin, _ = create_key(db, "ops", "--admin")
    user, _ = create_key(db, "acme")
    other, _ = create_key(db, "acme", "--models", "llama-3-8b,qwen")
    gone, gone_id = create_key(db, "acme")
    sov_keys(db, "revoke", gone_id)
    with Server(STORIES, "--db", db) as s:
        check("every /v1 request needs one" in s.output(), "start-up says keys are required")
        st, h, b = complete(s)
        check(st == 401 and error_of(b).get("code") == "missing_api_key", "no key: 401 missing_api_key (%d)" % st)
        check(h.get("www-authenticate", "").startswith("Bearer"), "401 carries WWW-Authenticate")
        # the malformed-header corpus (tests/auth/corpus, also the fuzz seeds), sent raw
        corpus = os.path.join(os.environ.get("SOV_TEST_DATA", os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), "auth", "corpus")
        body = json.dumps({"prompt": "Once", "max_tokens": 2}).encode()
        files = sorted(os.listdir(corpus))
        check(len(files) >= 20, "the auth corpus is there (%d files)" % len(files))
        for name in files:
            value = open(os.path.join(corpus, name), "rb").read()
            st, _, b = s.raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                             b"Authorization: " + value + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            check(st == 401, "corpus %s: 401 (%d)" % (name, st)) and error_of(b)
        # the real key in the wrong shape, and two Authorization headers
        for v in [user, "Bearer%s" % user, "Bearer " + user + " extra", "Token " + user]:
            st, _, b = complete(s, headers={"Authorization": v})
            check(st == 401, "Authorization %r: 401 (%d)" % (v[:40], st)) and error_of(b)
        st, _, b = s.raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer " +
                         user.encode() + b"\r\nAuthorization: Bearer " + admin.encode() +
                         b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        check(st == 401, "two Authorization headers: 401 (%d)" % st) and error_of(b)
        st, _, b = complete(s, "sov-" + "a" * 40)
        check(st == 401 and error_of(b).get("code") == "invalid_api_key", "unknown key: 401 invalid_api_key")
        st, _, b = complete(s, user[:-1] + ("a" if user[-1] != "a" else "b"))
        check(st == 401, "right prefix, wrong secret: 401")
        st, _, b = complete(s, gone)
        check(st == 401 and "revoked" in error_of(b).get("message", ""), "revoked key: 401 saying so")
        st, _, b = complete(s, other)
        e = error_of(b)
        check(st == 403 and e.get("code") == "model_not_allowed", "key for other models: 403 (%d %r)" % (st, e))
        st, j = json_get(s, "/v1/models", other)
        check(st == 200 and j["data"] == [], "/v1/models lists nothing for a key without the model: %r" % j)
        st, _, _ = s.get("/v1/models/stories260K", headers=bearer(other))
        check(st == 404, "/v1/models/ID of a model the key may not use: 404")
        st, j = json_get(s, "/v1/models", user)
        check(st == 200 and [m["id"] for m in j["data"]] == ["stories260K"], "/v1/models for an allowed key")
        st, _, _ = s.get("/v1/models")
        check(st == 401, "/v1/models needs a key")
        st, h, b = complete(s, user)
        check(st == 200 and json.loads(b)["usage"]["completion_tokens"] == 4, "a good key: 200")
        check("x-ratelimit-limit-requests" not in h, "no rate-limit headers for a key without limits")
        st, _, b = s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3},
                          headers=bearer(user))
        check(st == 200, "chat with a good key")
        for path in ["/health", "/ready"]:
            check(s.get(path)[0] == 200, path + " stays open")
        st, _, b = s.get("/metrics")
        check(st == 401, "/metrics without a key: 401")
        st, _, b = s.get("/metrics", headers=bearer(user))
        check(st == 403 and error_of(b).get("code") == "admin_key_required", "/metrics with a plain key: 403")
        st, _, b = s.get("/metrics", headers=bearer(admin))
        text = b.decode()
        check(st == 200 and 'sov_auth_failures_total{reason="missing"}' in text, "/metrics with an admin key")
        check('sov_tenant_forbidden_total{tenant="acme"} 1' in text, "the 403 is counted for the tenant")
        check("sov_auth_required 1" in text and "sov_api_keys 4" in text, "store figures in /metrics")
    with Server(STORIES, "--db", db, "--metrics-open") as s:
        check(s.get("/metrics")[0] == 200, "--metrics-open: /metrics without a key")
        check(complete(s)[0] == 401, "--metrics-open leaves /v1 closed")


def json_get(s, path, key):
    st, _, b = s.get(path, headers=bearer(key))
    return st, json.loads(b) if b else None


def test_sql_looking_names_are_data():
    db = db_path("sqli")
    key, kid = create_key(db, SQLI, "--models", "stories260K," + SQLI)
    _, out, _ = sov_keys(db, "list")
    row = [l.split("\t") for l in out.strip().split("\n") if l.split("\t")[0] == str(kid)]
    check(row and row[0][1] == SQLI and row[0][2] == "stories260K," + SQLI, "list shows the name verbatim: %r" % out)
    with Server(STORIES, "--db", db, "--metrics-open") as s:
        check(complete(s, key)[0] == 200, "a tenant with an SQL-looking name is served")
        text = s.get("/metrics")[2].decode()
        check('sov_tenant_requests_total{tenant="x\'); DROP TABLE keys; --"} 1' in text,
              "the tenant is a metrics label, escaped: %r" % [l for l in text.split("\n") if "tenant_requests" in l])
    check(sqlite3.connect(db).execute("select count(*) from keys").fetchone()[0] == 1, "the keys table is intact")


# ---- limits ----

def test_requests_per_minute():
    db = db_path("rpm")
    key, _ = create_key(db, "acme", "--rpm", "3")
    with Server(STORIES, "--db", db) as s:
        away_from_minute_edge()
        for i in range(3):
            st, h, _ = complete(s, key)
            check(st == 200 and h.get("x-ratelimit-limit-requests") == "3" and
                  h.get("x-ratelimit-remaining-requests") == str(2 - i), "request %d: 200, %d left (%r)" %
                  (i + 1, 2 - i, {k: v for k, v in h.items() if k.startswith("x-ratelimit")}))
            check(h.get("x-ratelimit-reset-requests", "").endswith("s"), "reset header")
        st, h, b = complete(s, key)
        e = error_of(b)
        check(st == 429 and e.get("type") == "requests" and e.get("code") == "rate_limit_exceeded",
              "the 4th request in the minute: 429 (%d %r)" % (st, e))
        check(1 <= int(h.get("retry-after", "0")) <= 60 and h.get("x-ratelimit-remaining-requests") == "0",
              "429 has Retry-After and the headers: %r" % h)
        st, h, b = s.post("/v1/completions", {"prompt": "Once", "max_tokens": 2, "stream": True}, headers=bearer(key))
        check(st == 429, "a stream is refused before it starts")


def test_tokens_per_minute():
    db = db_path("tpm")
    key, _ = create_key(db, "acme", "--tpm", "60")
    with Server(STORIES, "--db", db) as s:
        away_from_minute_edge()
        st, _, b = complete(s, key, n=100)
        e = error_of(b)
        check(st == 429 and e.get("type") == "tokens" and "too large" in e.get("message", ""),
              "an estimate over the limit: 429 too large (%d %r)" % (st, e))
        st, h, b = complete(s, key, n=20, ignore_eos=True)
        used = json.loads(b)["usage"]["total_tokens"] if st == 200 else 0
        check(st == 200 and h.get("x-ratelimit-limit-tokens") == "60", "a request within the limit (%d)" % st)
        check(int(h.get("x-ratelimit-remaining-tokens", "-1")) == 60 - (used), "remaining counts prompt + max_tokens")
        st, h, b = complete(s, key, n=40)
        check(st == 429 and error_of(b).get("code") == "rate_limit_exceeded", "over what is left this minute: 429")


def test_daily_quota_under_32_concurrent_requests():
    db = db_path("tpd")
    key, _ = create_key(db, "acme", "--tokens-per-day", "1000")
    with Server(STORIES, "--db", db, "-np", "8") as s:
        # "Once upon a time" is 5 prompt tokens with BOS on stories260K: 5 + 95 = 100 each
        res = [None] * 32

        def one(i):
            res[i] = complete(s, key, n=95, ignore_eos=True)

        ts = [threading.Thread(target=one, args=(i,)) for i in range(32)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        ok = [json.loads(r[2]) for r in res if r[0] == 200]
        refused = [r for r in res if r[0] == 429]
        spent = sum(j["usage"]["total_tokens"] for j in ok)
        check(len(ok) + len(refused) == 32, "every request answered 200 or 429: %r" % sorted(r[0] for r in res))
        check(spent <= 1000, "never over-spent: %d tokens served of 1000" % spent)
        check(len(ok) == 10 and spent == 1000, "the quota is used exactly: %d answers, %d tokens" % (len(ok), spent))
        for r in refused:
            e = error_of(r[2])
            check(e.get("code") == "insufficient_quota" and int(r[1].get("retry-after", "0")) >= 1,
                  "refusal is insufficient_quota with Retry-After: %r" % e)
        st, _, b = complete(s, key, n=1)
        check(st == 429, "the day's quota is gone")
        # usage reaches the store within half a second
        time.sleep(0.6)
        _, out, _ = sov_keys(db, "usage")
        row = out.strip().split("\t")
        check(row[0] == "acme" and row[1] == "10" and row[5] == "1000",
              "sov keys usage: 10 requests, 1000 tokens: %r" % out)


def test_implicit_max_tokens_takes_what_is_left():
    db = db_path("tpd-implicit")
    key, _ = create_key(db, "acme", "--tokens-per-day", "200")
    with Server(STORIES, "--db", db) as s:
        st, _, b = s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "Tell me a story"}],
                                                   "ignore_eos": True}, headers=bearer(key))
        j = json.loads(b)
        check(st == 200 and j["choices"][0]["finish_reason"] == "length" and j["usage"]["total_tokens"] == 200,
              "without max_tokens the answer ends where the quota does: %d %r" % (st, j.get("usage")))
        st, _, b = complete(s, key, n=1)
        check(st == 429 and error_of(b).get("code") == "insufficient_quota", "then nothing is left")


# ---- keys changing under a running server ----

def test_revocation_while_streaming():
    db = db_path("revoke")
    key, kid = create_key(db, "acme")
    with Server(slow_model(), "--db", db, "-np", "2") as s:
        sock = s.connect()
        body = json.dumps({"prompt": "Once", "max_tokens": 300, "stream": True, "ignore_eos": True}).encode()
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode() +
                     b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        first = sock.recv(4096)
        check(first.startswith(b"HTTP/1.1 200"), "the stream started")
        sov_keys(db, "revoke", kid)
        t0 = time.time()
        refused = wait_for(lambda: complete(s, key, n=1)[0] == 401, 5)
        check(refused and time.time() - t0 < 1.5, "the revoked key is refused within a second (%.2f s)" %
              (time.time() - t0))
        st, _, b = read_response_with_prefix(sock, first)
        text, finish_reason, _, ev = stream_text(b)
        check(st == 200 and finish_reason == "length" and ev[-1] == "[DONE]",
              "the running stream finished anyway (%r, %d events)" % (finish_reason, len(ev)))
        sock.close()


def read_response_with_prefix(sock, got):
    """read_response over a socket whose first bytes were already read."""
    class Replay:
        def __init__(self, s, first):
            self.s, self.first = s, first

        def recv(self, n):
            if self.first:
                b, self.first = self.first, b""
                return b
            return self.s.recv(n)
    return read_response(Replay(sock, got))


# ---- prefix cache and usage per tenant ----

def test_prefix_cache_is_scoped_by_tenant():
    db = db_path("prefix")
    a, _ = create_key(db, "alpha")
    a2, _ = create_key(db, "alpha")
    b, _ = create_key(db, "beta")
    story = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. " * 6
    with Server(STORIES, "--db", db, "--metrics-open") as s:
        def cached(key, tail):
            st, _, body = complete(s, key, prompt=story + tail, n=4)
            j = json.loads(body)
            return st, j["usage"]["prompt_tokens"], j["usage"]["prompt_tokens_details"]["cached_tokens"]
        st, n, c = cached(a, "One day")
        check(st == 200 and c == 0, "first request of tenant alpha: nothing cached (%d)" % c)
        st, n, c = cached(a2, "The end")
        check(st == 200 and n - 4 <= c < n, "alpha again (another of its keys): the prefix hits, %d of %d" % (c, n))
        st, n, c = cached(b, "The end")
        check(st == 200 and c == 0, "tenant beta, same prompt: no hit across tenants (%d cached)" % c)
        st, n, c = cached(b, "The end!")
        check(st == 200 and c > 0, "beta's own repeat hits its own cache (%d)" % c)
        text = s.get("/metrics")[2].decode()
        for want in ['sov_tenant_requests_total{tenant="alpha"} 2', 'sov_tenant_requests_total{tenant="beta"} 2',
                     'sov_tenant_completion_tokens_total{tenant="alpha"} 8']:
            check(want in text, "/metrics has " + want)


def test_usage_per_tenant_matches_what_clients_saw():
    db = db_path("usage")
    keys = {t: create_key(db, t)[0] for t in ("alpha", "beta")}
    seen = {"alpha": [0, 0, 0, 0], "beta": [0, 0, 0, 0]}
    with Server(STORIES, "--db", db, "--metrics-open") as s:
        for i in range(6):
            t = "alpha" if i % 3 else "beta"
            st, _, b = complete(s, keys[t], prompt="The little dog " * (i + 1), n=3 + i)
            u = json.loads(b)["usage"]
            seen[t] = [seen[t][0] + 1, seen[t][1] + u["prompt_tokens"], seen[t][2] + u["completion_tokens"],
                       seen[t][3] + u["prompt_tokens_details"]["cached_tokens"]]
        text = s.get("/metrics")[2].decode()
        for t, (r, p, c, cc) in seen.items():
            for name, v in [("requests", r), ("prompt_tokens", p), ("completion_tokens", c), ("cached_tokens", cc)]:
                want = 'sov_tenant_%s_total{tenant="%s"} %d' % (name, t, v)
                check(want in text, "/metrics: " + want)
    # the server wrote its usage at shutdown at the latest
    _, out, _ = sov_keys(db, "usage", "--json")
    rows = {j["tenant"]: j for j in map(json.loads, out.strip().split("\n"))}
    for t, (r, p, c, cc) in seen.items():
        j = rows.get(t, {})
        check([j.get("requests"), j.get("prompt_tokens"), j.get("completion_tokens"), j.get("cached_tokens")] ==
              [r, p, c, cc], "sov keys usage for %s: %r, clients saw %r" % (t, j, (r, p, c, cc)))
    _, out, _ = sov_keys(db, "usage", "--since", "1h", "--by-key")
    check(len(out.strip().split("\n")) == 2, "--by-key: one line per key: %r" % out)
    _, out, _ = sov_keys(db, "usage", "--since", "@%d" % (int(time.time()) + 7200))
    check(out.strip() == "", "nothing since the future")


# ---- the command line ----

def test_keys_command_line():
    db = db_path("cli")
    key, kid = create_key(db, "acme", "--rpm", "10", "--tpm", "1000", "--tokens-per-day", "50000",
                          "--models", "stories260K")
    _, out, err = sov_keys(db, "list")
    check(key not in out and key not in err, "list never shows the key")
    f = out.strip().split("\t")
    check(f[0] == str(kid) and f[1] == "acme" and f[2] == "stories260K" and f[3:6] == ["10", "1000", "50000"] and
          f[6].endswith("Z") and f[7] == "-" and f[8] == "-" and f[11] == key[:12],
          "list: id, tenant, models, limits, created, last used, revoked, ..., prefix: %r" % f)
    _, out, _ = sov_keys(db, "list", "--json")
    j = json.loads(out)
    check(j["id"] == kid and j["tenant"] == "acme" and j["tokens_per_day"] == 50000, "list --json")
    rc, _, err = sov_keys(db, "revoke", "999", check_rc=False)
    check(rc == 1 and "no key 999" in err and err.count("\n") == 1, "revoking an unknown id: one line: %r" % err)
    rc, _, err = sov_keys(db, "revoke", "abc", check_rc=False)
    check(rc != 0 and "not a key id" in err, "a bad id")
    sov_keys(db, "revoke", kid)
    _, out, _ = sov_keys(db, "list")
    check(out.strip().split("\t")[8].endswith("Z"), "list shows when it was revoked")
    rc, _, _ = sov_keys(db, "revoke", kid, check_rc=False)
    check(rc == 0, "revoking twice is fine")
    rc, _, err = sov_keys(db, "create", check_rc=False)
    check(rc != 0 and "--tenant" in err, "create needs --tenant")
    for bad in [["--tenant", "a\tb"], ["--tenant", "x" * 65], ["--tenant", "a", "--rpm", "-1"],
                ["--tenant", "a", "--weight", "0"]]:
        rc, out, err = sov_keys(db, "create", *bad, check_rc=False)
        check(rc != 0 and out == "" and err.count("\n") == 1, "create %r refused in one line: %r" % (bad, err))
    rc, _, err = sov_keys(db, "weight", "acme", "3")
    check(rc == 0, "weight")
    _, out, _ = sov_keys(db, "list")
    check(out.strip().split("\t")[10] == "3", "the tenant's weight shows: %r" % out)
    rc, _, err = sov_keys(db, "weight", "nobody", "3", check_rc=False)
    check(rc == 1 and "no tenant" in err, "weight of an unknown tenant")
    rc, out, _ = sov_keys(db, "usage", "--since", "yesterday-ish", check_rc=False)
    check(rc != 0, "a bad --since")
    r = subprocess.run([SOV_BIN, "keys", "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(r.returncode == 0 and b"create" in r.stdout, "sov keys --help")
    r = subprocess.run([SOV_BIN, "keys", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env={k: v for k, v in os.environ.items() if k != "SOV_DB"})
    check(r.returncode != 0 and b"--db" in r.stderr, "no --db: says what to give")
    r = subprocess.run([SOV_BIN, "keys", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=dict(os.environ, SOV_DB=db))
    check(r.returncode == 0 and r.stdout.startswith(str(kid).encode()), "SOV_DB stands for --db")


# ---- a store that cannot be used ----

def serve_fails(db, want, *extra, user=None):
    t0 = time.time()
    r = subprocess.run([SOV_BIN, "serve", "-m", STORIES, "--port", "0", "--db", db] + list(extra),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, user=user, group=user,
                       extra_groups=[] if user is not None else None)
    err = r.stderr.decode("utf-8", "replace")
    last = [l for l in err.strip().split("\n") if l][-1] if err.strip() else ""
    check(r.returncode != 0 and want in last and time.time() - t0 < 20,
          "serve --db %s: fails with a line saying %r (rc %d): %r" % (os.path.basename(db), want, r.returncode, err))


def test_bad_store_at_startup():
    bad = db_path("garbage")
    with open(bad, "wb") as f:
        f.write(os.urandom(8192))
    serve_fails(bad, "not")
    other = db_path("foreign")
    c = sqlite3.connect(other)
    c.execute("create table invoices (id integer primary key, amount real)")
    c.commit()
    c.close()
    serve_fails(other, "not sov")
    check(sqlite3.connect(other).execute("select name from sqlite_master").fetchall() == [("invoices",)],
          "a foreign database is left untouched")
    locked = db_path("locked")
    create_key(locked, "acme")
    holder = sqlite3.connect(locked, isolation_level=None, timeout=0)
    holder.execute("PRAGMA journal_mode=DELETE")
    holder.execute("BEGIN EXCLUSIVE")
    serve_fails(locked, "locked")
    holder.execute("ROLLBACK")
    holder.close()
    check(sov_keys(locked, "list")[0] == 0, "usable again once the lock is gone")
    serve_fails(os.path.join(TMP, "no-such-dir", "x.db"), "x.db")
    if os.getuid() == 0:  # root ignores file modes: be nobody for the read-only case
        ro_dir = os.path.join(TMP, "tenants-ro-%d" % os.getpid())
        os.makedirs(ro_dir, exist_ok=True)
        ro = os.path.join(ro_dir, "state.db")
        if os.path.exists(ro):
            os.remove(ro)
        create_key(ro, "acme")
        sqlite3.connect(ro).execute("PRAGMA journal_mode=DELETE").fetchall()
        os.chmod(ro, 0o444)
        os.chmod(ro_dir, 0o755)
        serve_fails(ro, "read-only", user=65534)


# ---- fair scheduling ----

def ttft(srv, key, n=8):
    """Seconds to the first token of a streamed completion, and when it ended."""
    s = srv.connect(timeout=600)  # FIFO under ASan on a loaded machine waits long, by design
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": n, "stream": True, "ignore_eos": True}).encode()
    t0 = time.time()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer " +
              key.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    buf, first = b"", None
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        if first is None and b'"text"' in buf:
            first = time.time() - t0
    s.close()
    return first, time.time()


FLOOD, FLOOD_TOKENS = 32, 32


def flood_then_lone(policy):
    """Tenant 'flood' sends FLOOD streams; once they fill the slots, 'lone' sends one. Returns
    (lone's idle TTFT, its TTFT under the flood, flood requests finished before lone did)."""
    db = db_path("fair-" + policy)
    flood, _ = create_key(db, "flood")
    lone, _ = create_key(db, "lone")
    with Server(slow_model(), "--db", db, "-np", "4", "--sched", policy, "--metrics-open") as s:
        idle = min(ttft(s, lone)[0] for _ in range(3))
        ends = []
        lock = threading.Lock()

        def one():
            _, end = ttft(s, flood, n=FLOOD_TOKENS)
            with lock:
                ends.append(end)

        ts = [threading.Thread(target=one) for _ in range(FLOOD)]
        for t in ts:
            t.start()
        s.wait_metric("sov_running_sequences", lambda v: v == 4)
        first, end = ttft(s, lone)
        with lock:
            before = sum(1 for e in ends if e < end)
        if policy == "fifo":  # no need to wait for the whole flood
            pass
        for t in ts:
            t.join()
        m = s.metrics()
    return idle, first, before, m


def test_fair_scheduling_protects_a_lone_tenant():
    idle, busy, before, m = flood_then_lone("fair")
    print("  fair: lone tenant TTFT idle %.1f ms, under a %d-request flood %.1f ms; %d flood requests ended "
          "before it; fair preemptions %g" % (idle * 1e3, FLOOD, busy * 1e3, before,
                                              m.get("sov_fair_preemptions_total", -1)), file=sys.stderr)
    check(before <= 4, "fair: the lone request ends before the flood's first wave does (%d ended before)" % before)
    idle_f, busy_f, before_f, _ = flood_then_lone("fifo")
    print("  fifo: lone tenant TTFT idle %.1f ms, under the flood %.1f ms; %d flood requests ended before it" %
          (idle_f * 1e3, busy_f * 1e3, before_f), file=sys.stderr)
    check(before_f >= FLOOD - 8, "fifo (the old behaviour) makes it wait for the flood (%d ended before)" % before_f)


def main():
    run_tests([test_open_without_db_says_so, test_empty_store_opens_then_locks_within_a_second,
               test_statuses_and_shapes, test_sql_looking_names_are_data, test_requests_per_minute,
               test_tokens_per_minute, test_daily_quota_under_32_concurrent_requests,
               test_implicit_max_tokens_takes_what_is_left, test_revocation_while_streaming,
               test_prefix_cache_is_scoped_by_tenant, test_usage_per_tenant_matches_what_clients_saw,
               test_keys_command_line, test_bad_store_at_startup, test_fair_scheduling_protects_a_lone_tenant])
    finish()


if __name__ == "__main__":
    main()
