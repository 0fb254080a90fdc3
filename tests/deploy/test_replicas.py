"""test_replicas.py - three `sov serve` replicas behind HAProxy (deploy/haproxy.cfg, as shipped)
sharing one PostgreSQL (SOV_NEEDS_POSTGRES: the CTest fixture store/pg_start runs a throw-away
cluster and gives its URL in $SOV_PG_URL_FILE), on loopback, on stories260K (docs/REPLICAS.md):

- affinity: the same key + the same prompt start always reach the same replica (X-Sov-Node),
  whose prefix cache then answers with cached_tokens; different prompts spread over replicas;
- quotas: a key with a tight tokens-per-minute limit hammered at once across the replicas is
  never charged more than the limit (the rate_windows rows, and the answers' usage), the rest
  is refused with 429;
- streaming: a long stream reaches the client in many pieces over its duration (unbuffered);
- failure: under concurrent load (streamed chat and plain completions) one replica is
  SIGKILLed while it is inside an audit append (a trigger stalls its INSERT with pg_sleep,
  holding the chain's lock): the only requests that fail are ones in flight on it, each with a
  clean error (a 5xx from HAProxy, or a stream cut before [DONE]); everything sent after the
  kill succeeds on the other two; HAProxy re-sent nothing that reached a replica (each
  survivor's audit records equal HAProxy's log lines for it); every completed answer has its
  record; every answer equals the greedy reference for its prompt; a reservation of the
  killed replica stays charged, never more than it reserved; the survivors exit cleanly;
- the one shared audit chain verifies with the three replicas' keys afterwards.

Without haproxy or PostgreSQL this test FAILS (it never skips); everything it starts is
stopped in a finally. It prints the figures docs/REPLICAS.md quotes."""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "server"))
from auditlib import sov_audit  # noqa: E402
from serverlib import TMP, Server, check, create_key, failures, finish, run_tests, shared_model, sse_events  # noqa: E402

SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
HAPROXY_CFG = os.path.join(SRC, "deploy", "haproxy.cfg")
STORIES = shared_model("stories260K.gguf")

TPM_B = 300          # the tight key's tokens per minute
TPD_A = 10_000_000   # the load key's tokens per day: every request reserves, none is refused
MAX_TOK = 24         # completion tokens per load request

# Distinct openings (they differ in their first 64 bytes, so each hashes on its own), long
# enough (> 2 blocks of 16 tokens) for the prefix cache to hold whole blocks of them.
PROMPTS = [
    "Once upon a time, there was a little girl named Lily. She loved to play in the park with her red ball every day.",
    "One day, a big brown dog found a shiny stick in the garden. He wanted to show it to his best friend, the cat.",
    "Tom and Sue went to the beach with their mom. They built a big sand castle and found many pretty shells there.",
    "There was a small bird who could not fly. Every morning he sat on the branch and watched the other birds go.",
    "Max had a new toy car. It was blue and fast. He raced it around the kitchen until his sister wanted a turn too.",
    "In a little house by the river lived an old man and his cat. The cat liked to sleep in the warm sun all day.",
    "Anna wanted to bake a cake for her dad. She got the flour, the eggs and the sugar, and asked her mom to help.",
    "The sun was hot and the children were thirsty. Ben found a big lemon tree and had an idea to make lemonade.",
]


# ---- the cluster ----

def fixture_url():
    path = os.environ.get("SOV_PG_URL_FILE", "")
    if not path or not os.path.exists(path):
        print("FAIL: no PostgreSQL: the fixture store/pg_start did not leave a URL in %r (is postgresql "
              "installed? make test installs it)" % path, file=sys.stderr)
        sys.exit(1)
    return open(path).read().strip()


def psql(url, sql):
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("psql %r: %s" % (sql, r.stderr.decode()))
    return r.stdout.decode().strip()


def new_database(url, name):
    name = "sov_%s_%d" % (name, os.getpid())
    psql(url, "DROP DATABASE IF EXISTS %s" % name)
    psql(url, "CREATE DATABASE %s" % name)
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Cluster:
    """PostgreSQL database, keys, 3 replicas r1..r3 and HAProxy; stop() ends them all."""

    def __init__(self):
        self.replicas, self.haproxy, self.hlog = {}, None, None
        try:
            self.start()
        except BaseException:
            self.stop()
            raise

    def start(self):
        self.db = new_database(fixture_url(), "replicas")
        self.key_a, self.id_a = create_key(self.db, "alpha", "--tokens-per-day", TPD_A)
        self.key_b, self.id_b = create_key(self.db, "beta", "--tpm", TPM_B)
        self.dirs = {}
        for n in ("r1", "r2", "r3"):
            d = os.path.join(TMP, "replicas-%d-%s" % (os.getpid(), n))
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            self.dirs[n] = d
            self.replicas[n] = Server(STORIES, "--db", self.db, "--state-dir", d, "--node", n, "-np", "4",
                                      threads=1)
        env = dict(os.environ, SOV_HAPROXY_LOG="stdout")
        self.port = free_port()
        env["SOV_FRONT"] = "127.0.0.1:%d" % self.port
        for i, n in enumerate(("r1", "r2", "r3"), 1):
            env["SOV_REPLICA%d" % i] = "127.0.0.1:%d" % self.replicas[n].port
        self.hlog_path = os.path.join(TMP, "haproxy-%d.log" % os.getpid())
        self.hlog = open(self.hlog_path, "w")
        # one thread: HAProxy drops a log line written to a file descriptor while another
        # thread writes one (its DroppedLogs counter), and this test reads every line
        one_thread = os.path.join(TMP, "haproxy-%d-threads.cfg" % os.getpid())
        with open(one_thread, "w") as f:
            f.write("global\n    nbthread 1\n")
        self.haproxy = subprocess.Popen([HAPROXY, "-f", HAPROXY_CFG, "-f", one_thread, "-db"], env=env,
                                        stdout=self.hlog,
                                        stderr=subprocess.STDOUT)
        t_end = time.time() + 20
        while True:
            if self.haproxy.poll() is not None or time.time() > t_end:
                raise RuntimeError("haproxy did not start: " + open(self.hlog_path).read())
            try:
                if call(self.port, "GET", "/ready")["status"] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)

    def stop(self):
        """Stops everything; {replica: exit status} (0: a clean, graceful exit)."""
        rcs = {n: r.stop() for n, r in self.replicas.items()}
        if self.haproxy and self.haproxy.poll() is None:
            self.haproxy.terminate()
            try:
                self.haproxy.wait(10)
            except subprocess.TimeoutExpired:
                self.haproxy.kill()
                self.haproxy.wait()
        if self.hlog:
            self.hlog.close()
        return rcs

    def haproxy_log(self):
        """{X-Request-Id: (server, status, retries field, path)} of HAProxy's access log lines
        (requests without one under "" + the line number)."""
        out = {}
        pat = re.compile(r'^\S+ \[[^\]]*\] \S+ [\w-]+/(\S+) \S+ (-?\d+) \S+ \S+ [\d/]+/(\+?\d+) \{([^}]*)\} "\S+ (\S+)')
        for i, line in enumerate(open(self.hlog_path, errors="replace")):
            m = pat.match(line)
            if m:
                out[m.group(4) or str(i)] = (m.group(1), int(m.group(2)), m.group(3), m.group(5))
        return out


HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
C = None  # the cluster


# ---- one request through the front door, keeping what a client sees ----

CALLS = []  # every request made, for the counts at the end
_ids = iter(range(1, 1 << 62))
_ids_lock = threading.Lock()


def next_id():
    with _ids_lock:
        return "t%d-%d" % (os.getpid(), next(_ids))


def call(port, method, path, body=None, key=None, timeout=60):
    """One request on its own connection. Returns a dict: status (0: no answer), headers,
    body, cut (the connection ended before the body did), rid (its X-Request-Id, which
    HAProxy logs), node (X-Sov-Node), t0, t1."""
    data = json.dumps(body).encode() if body is not None else b""
    head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % (method, path)
    if body is not None:
        head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
    if key:
        head += "Authorization: Bearer %s\r\n" % key
    r = {"status": 0, "headers": {}, "body": b"", "cut": False, "t0": time.time(), "rid": next_id(), "path": path}
    head += "X-Request-Id: %s\r\n" % r["rid"]
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(head.encode() + b"\r\n" + data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise EOFError
            buf += chunk
        hd, rest = buf.split(b"\r\n\r\n", 1)
        lines = hd.decode("latin-1").split("\r\n")
        r["status"] = int(lines[0].split()[1])
        r["headers"] = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
        r["body"], r["cut"] = read_body(s, r["headers"], rest)
    except (EOFError, OSError):
        r["cut"] = True
    finally:
        s.close()
        r["t1"] = time.time()
    r["node"] = r["headers"].get("x-sov-node")
    with _ids_lock:
        CALLS.append(r)
    return r


def read_body(s, headers, rest):
    """(body, cut): the whole body, or what came before the connection ended early."""
    def more():
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError
        return chunk
    chunked = headers.get("transfer-encoding", "").lower() == "chunked"
    n = int(headers.get("content-length", "-1"))
    parts = []
    try:
        while chunked:
            while b"\r\n" not in rest:
                rest += more()
            size, rest = rest.split(b"\r\n", 1)
            k = int(size.split(b";")[0], 16)
            while len(rest) < k + 2:
                rest += more()
            parts.append(rest[:k])
            rest = rest[k + 2:]
            if k == 0:
                return b"".join(parts), False
        while n >= 0 and len(rest) < n:
            rest += more()
        if n >= 0:
            return rest[:n], False
        while True:  # neither: the body ends with the connection
            rest += more()
    except (EOFError, OSError):
        return b"".join(parts) + rest, chunked or n >= 0


def completion(prompt, n, key, **kw):
    body = {"prompt": prompt, "max_tokens": n, "temperature": 0}
    body.update(kw)
    return call(C.port, "POST", "/v1/completions", body, key)


def chat_stream(content, n, key):
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": n, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    return call(C.port, "POST", "/v1/chat/completions", body, key)


def outcome(r):
    """(complete, text, usage, id) of a completion or a chat stream as the client saw it."""
    if r["status"] != 200 or r["cut"]:
        return False, None, None, None
    if r["headers"].get("content-type", "").startswith("text/event-stream"):
        ev = sse_events(r["body"])
        if not ev or ev[-1] != "[DONE]":
            return False, None, None, None
        text, usage, rid, finish = "", None, None, None
        for e in ev[:-1]:
            j = json.loads(e)
            rid = j["id"]
            usage = j.get("usage") or usage
            for c in j.get("choices", []):
                text += c["delta"].get("content") or ""
                finish = c.get("finish_reason") or finish
        return bool(usage and finish in ("stop", "length")), text, usage, rid
    j = json.loads(r["body"])
    ok = j["choices"][0].get("finish_reason") in ("stop", "length") and "usage" in j
    return ok, j["choices"][0].get("text"), j.get("usage"), j.get("id")


def cached(r):
    return (outcome(r)[2] or {}).get("prompt_tokens_details", {}).get("cached_tokens", 0)


# ---- the tests ----

AFFINITY = {}  # prompt index -> replica
ALL = []       # every request of key A: (result, victim?) for the quota accounting


def test_same_key_and_prompt_start_stay_on_one_replica():
    hits = repeats = 0
    for k, p in enumerate(PROMPTS):
        rs = [completion(p, 4, C.key_a) for _ in range(3)]
        ALL.extend(rs)
        nodes = {r["node"] for r in rs}
        check(all(outcome(r)[0] for r in rs), "prompt %d answered 3 times" % k)
        check(len(nodes) == 1 and None not in nodes, "prompt %d always on one replica: %r" % (k, nodes))
        AFFINITY[k] = rs[0]["node"]
        for r in rs[1:]:
            repeats += 1
            hits += cached(r) >= 16
    used = set(AFFINITY.values())
    check(len(used) >= 2, "different prompts spread over the replicas: %r" % AFFINITY)
    check(hits == repeats, "every repeat hit its replica's prefix cache: %d of %d" % (hits, repeats))
    # same start, different end: the hash sees only the first 64 bytes, the cache the shared blocks
    r = completion(PROMPTS[0][:80] + " Then it started to rain and everyone ran home.", 4, C.key_a)
    ALL.append(r)
    check(r["node"] == AFFINITY[0] and cached(r) >= 16,
          "a prompt sharing the start lands on the same replica, cache warm (%s, %d cached)" % (r["node"], cached(r)))
    # chat: the first message decides
    a = chat_stream(PROMPTS[1], 4, C.key_a)
    b = chat_stream(PROMPTS[1], 4, C.key_a)
    ALL.extend([a, b])
    check(outcome(a)[0] and outcome(b)[0] and a["node"] == b["node"],
          "a chat with the same first message stays on one replica (%s %s)" % (a["node"], b["node"]))
    print("affinity: %d prompts on %s; prefix cache hits on repeats %d/%d (%.0f%%); chat repeat cached %d tokens"
          % (len(PROMPTS), sorted(used), hits, repeats, 100.0 * hits / max(repeats, 1), cached(b)), file=sys.stderr)


def test_tight_quota_is_never_overspent_across_replicas():
    n = 24
    barrier = threading.Barrier(n)
    res = [None] * n

    def one(i):
        barrier.wait()
        res[i] = completion(PROMPTS[i % len(PROMPTS)] + " %d" % i, 8, C.key_b)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    ok = [r for r in res if r and r["status"] == 200]
    refused = [r for r in res if r and r["status"] == 429]
    spent = sum(outcome(r)[2]["total_tokens"] for r in ok if outcome(r)[0])
    check(len(ok) + len(refused) == n, "every request answered 200 or 429: %r" % sorted(r["status"] for r in res if r))
    check(ok and refused, "some served, some refused (%d, %d)" % (len(ok), len(refused)))
    check(all(json.loads(r["body"])["error"]["code"] == "rate_limit_exceeded" for r in refused),
          "refusals say rate_limit_exceeded")
    check(len({r["node"] for r in res if r}) >= 2, "the hammer reached several replicas")
    def windows_now():
        rows = psql(C.db, "SELECT start, tokens FROM rate_windows WHERE key_id = %d AND kind = 'm'" % C.id_b)
        return [tuple(map(int, w.split("|"))) for w in rows.split()]
    t_end = time.time() + 10  # reservations settle in 200 ms batches
    windows = windows_now()
    while sum(t for _, t in windows) != spent and time.time() < t_end:
        time.sleep(0.1)
        windows = windows_now()
    check(windows and all(t <= TPM_B for _, t in windows), "no minute window over %d: %r" % (TPM_B, windows))
    check(spent <= TPM_B * len(windows), "answers used %d tokens, limit %d per minute" % (spent, TPM_B))
    charged = sum(t for _, t in windows)
    check(charged == spent, "charged (%d) is what the answers used (%d) once settled" % (charged, spent))
    print("quota: %d concurrent requests over %s: %d served, %d refused 429; used %d, charged %d, limit %d/min "
          "(%d window(s))" % (n, sorted({r["node"] for r in res if r}), len(ok), len(refused), spent, charged, TPM_B,
                              len(windows)), file=sys.stderr)


def test_streams_pass_through_unbuffered():
    """A long stream reaches the client through HAProxy in many pieces spread over its
    duration (a buffering proxy would deliver it in one piece at the end)."""
    body = json.dumps({"messages": [{"role": "user", "content": PROMPTS[2]}], "max_tokens": 400,
                       "ignore_eos": True, "stream": True}).encode()
    s = socket.create_connection(("127.0.0.1", C.port), timeout=60)
    t0 = time.time()
    s.sendall(("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (C.key_a, len(body))).encode() + body)
    buf, reads = b"", []
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        if b'"content":"' in chunk.replace(b'"content":""', b""):
            reads.append(time.time())
    t_end = time.time()
    s.close()
    node = re.search(rb"(?im)^x-sov-node: *(\S+)", buf)
    CALLS.append({"node": node.group(1).decode() if node else None, "status": 200, "path": "/v1/chat/completions"})
    check(b"data: [DONE]" in buf, "the stream ended with [DONE]")
    spread = (reads[-1] - reads[0]) / (t_end - t0) if len(reads) > 1 else 0
    check(len(reads) > 10 and spread > 0.25, "tokens came in %d pieces over %.0f%% of the stream's %.0f ms"
          % (len(reads), 100 * spread, 1000 * (t_end - t0)))
    print("streaming: 400 tokens in %d pieces, first after %.0f ms, spread over %.0f%% of %.0f ms: not buffered"
          % (len(reads), 1000 * (reads[0] - t0) if reads else -1, 100 * spread, 1000 * (t_end - t0)), file=sys.stderr)


def audit_node_of(response_id):
    return psql(C.db, "SELECT node FROM audit_records WHERE response_id = '%s'" % response_id)


def stall_appends_of(node_key):
    """A trigger that makes the victim's next audit INSERT sleep, inside its transaction,
    while it holds the chain's lock: the SIGKILL then lands mid-append."""
    psql(C.db, "CREATE FUNCTION sov_test_stall() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
               "IF current_setting('sov.stalled', true) IS DISTINCT FROM 'y' THEN "
               "PERFORM set_config('sov.stalled', 'y', true); PERFORM pg_sleep(1.5); END IF; "
               "RETURN NEW; END $$")  # once per transaction, however many records it appends
    psql(C.db, "CREATE TRIGGER sov_test_stall BEFORE INSERT ON audit_records FOR EACH ROW "
               "WHEN (NEW.node = '%s') EXECUTE FUNCTION sov_test_stall()" % node_key)


def test_sigkill_mid_load_loses_only_what_was_on_the_victim():
    counts = {n: sum(1 for v in AFFINITY.values() if v == n) for n in ("r1", "r2", "r3")}
    victim = max(counts, key=counts.get)
    ref = {}
    for k, p in enumerate(PROMPTS):  # reference answers (greedy: the same on every replica)
        r1, r2 = completion(p, MAX_TOK, C.key_a), chat_stream(p, MAX_TOK, C.key_a)
        ALL.extend([r1, r2])
        ref[k] = (outcome(r1)[1], outcome(r2)[1])
        if r1["node"] == victim and "victim_id" not in ref:
            ref["victim_id"] = outcome(r1)[3]
    victim_key = audit_node_of(ref["victim_id"])
    check(len(victim_key) == 16, "the victim's audit node is its key id: %r" % victim_key)
    stop, done, lock = threading.Event(), [], threading.Lock()

    def client(i):
        j = 0
        while not stop.is_set():
            k = (i + 3 * j) % len(PROMPTS)
            j += 1
            try:
                r = chat_stream(PROMPTS[k], MAX_TOK, C.key_a) if i % 2 else completion(PROMPTS[k], MAX_TOK, C.key_a)
            except OSError as e:  # HAProxy refused the connection: not a clean error
                r = {"status": -1, "node": None, "rid": None, "t0": time.time(), "t1": time.time(), "cut": True,
                     "headers": {}, "body": repr(e).encode()}
            r["prompt"], r["chat"] = k, bool(i % 2)
            with lock:
                done.append(r)

    ts = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    time.sleep(1.5)
    stall_appends_of(victim_key)
    stalled = False
    t_end = time.time() + 10
    while time.time() < t_end and not stalled:
        stalled = psql(C.db, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'") != "0"
        time.sleep(0.02)
    check(stalled, "the victim got inside an audit append")
    t_sig = time.time()
    C.replicas[victim].proc.send_signal(signal.SIGKILL)
    C.replicas[victim].proc.wait()
    t_kill = time.time()
    while psql(C.db, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'") != "0":
        time.sleep(0.02)
    t_unstall = time.time()  # PostgreSQL saw the victim gone once its statement ended, and rolled back
    time.sleep(2.5)
    stop.set()
    for t in ts:
        t.join(60)
    rcs = C.stop()  # the survivors finish, sign their heads; HAProxy's log is complete
    check(all(rc == 0 for n, rc in rcs.items() if n != victim), "the survivors exit cleanly: %r" % rcs)
    log = C.haproxy_log()

    def server_of(r):
        return r["node"] or (log.get(r["rid"]) or ("?",))[0]

    ok, failed = [], []
    for r in done:
        complete, text, _, rid = outcome(r)
        (ok if complete else failed).append(r)
        r["id"] = rid
        if complete:
            want = ref[r["prompt"]][1 if r["chat"] else 0]
            check(text == want, "answer to prompt %d (%s) equals the reference: %r vs %r" %
                  (r["prompt"], "chat" if r["chat"] else "completion", text, want))
            check(r["node"] == (log.get(r["rid"]) or (None,))[0], "X-Sov-Node %s names HAProxy's choice: %r %s"
                  % (r["node"], log.get(r["rid"]), r["rid"]))
    for r in failed:
        clean = r["status"] >= 500 or (r["status"] == 200 and r["cut"])
        check(clean, "a failure is a 5xx or a cut stream, not %d (cut %s)" % (r["status"], r["cut"]))
        check(server_of(r) == victim and r["t0"] < t_kill and r["t1"] >= t_sig,
              "a failed request was in flight on the victim %s (on %s, sent %.2f s before the kill)"
              % (victim, server_of(r), t_kill - r["t0"]))
    ok_ids = {id(r) for r in ok}
    after = [r for r in done if r["t0"] > t_kill]
    check(after and all(id(r) in ok_ids and server_of(r) != victim for r in after),
          "every request sent after the kill succeeded on another replica (%d of %d)"
          % (sum(id(r) in ok_ids for r in after), len(after)))
    in_flight = [r for r in done if server_of(r) == victim and r["t0"] < t_kill and r["t1"] >= t_sig]
    redispatched = sum(1 for r in done if (log.get(r["rid"]) or ("", 0, "0", ""))[2].startswith("+"))

    # nothing ran twice: every request a survivor recorded was answered to a client by it
    # (a request HAProxy re-sent after it reached one would be recorded there and answered
    # elsewhere), and HAProxy logged every request it was sent
    for n in C.replicas:
        if n == victim:
            continue
        key = audit_node_of(next(r["id"] for r in ok if server_of(r) == n))
        recorded = int(psql(C.db, "SELECT count(*) FROM audit_records WHERE node = '%s'" % key))
        answered = sum(1 for r in CALLS if r["node"] == n and r["status"] > 0 and r["path"].startswith("/v1"))
        logged = sum(1 for s, _, _, path in log.values() if s == n and path.startswith("/v1"))
        check(recorded == answered == logged, "%s recorded %d requests, answered %d, HAProxy logged %d"
              % (n, recorded, answered, logged))
    ids = set(psql(C.db, "SELECT response_id FROM audit_records").split())
    check(all(r["id"] in ids for r in ok), "every completed answer has its audit record")

    # reservations: what completed is charged; the victim's unsettled ones stay charged
    ALL.extend(done)
    used = sum(outcome(r)[2]["total_tokens"] for r in ALL if outcome(r)[0])
    charged = int(psql(C.db, "SELECT coalesce(sum(tokens), 0) FROM rate_windows WHERE key_id = %d AND kind = 'd'"
                       % C.id_a))
    on_victim = sum(1 for r in ALL if server_of(r) == victim)
    check(used <= charged <= used + on_victim * (MAX_TOK + 128),
          "charged %d: at least the %d used, at most what the victim's %d requests reserved on top"
          % (charged, used, on_victim))

    # the one chain, after a replica died holding its lock mid-append
    n_rec = int(psql(C.db, "SELECT count(*) FROM audit_records"))
    check(psql(C.db, "SELECT min(seq) || ' ' || max(seq) FROM audit_records") == "1 %d" % n_rec,
          "the chain is numbered 1..%d without a gap" % n_rec)
    pubs = []
    for d in C.dirs.values():
        pubs += ["--pub", os.path.join(d, "audit-ed25519.pub")]
    rc, out, err = sov_audit("verify", "--db", C.db, *pubs)
    check(rc == 0 and "verify: OK" in out, "sov audit verify: %d %s %s" % (rc, out, err))
    nodes = psql(C.db, "SELECT count(DISTINCT node) FROM audit_records")
    check(nodes == "3", "all three replicas wrote into the chain (%s)" % nodes)

    def p50(rs):
        return 1000 * statistics.median([r["t1"] - r["t0"] for r in rs]) if rs else float("nan")
    before = [r for r in ok if r["t1"] < t_sig]
    spanning = [r for r in ok if r["t0"] < t_sig < r["t1"]]
    print("failure: %d requests sent by 6 clients (%d chat streams), %d completed, %d failed; in flight on %s at "
          "the kill %d (failed: %d as 5xx %s, %d cut streams); %d sent after the kill, all completed; %d redispatched "
          "after a refused connect; the victim's open append held the chain lock %.2f s after the kill; latency "
          "p50 %.0f ms before, %.0f ms after; max %.0f ms across the kill, %.0f ms after"
          % (len(done), sum(r["chat"] for r in done), len(ok), len(failed), victim, len(in_flight),
             sum(r["status"] >= 500 for r in failed), sorted({r["status"] for r in failed if r["status"] >= 500}),
             sum(r["status"] == 200 for r in failed), len(after),
             redispatched, t_unstall - t_kill, p50(before), p50(after),
             1000 * max([r["t1"] - r["t0"] for r in spanning] or [0]),
             1000 * max([r["t1"] - r["t0"] for r in after] or [0])), file=sys.stderr)
    print("quota (load key, tokens per day): used by completed answers %d, charged %d (victim's unsettled "
          "reservations stay charged)" % (used, charged), file=sys.stderr)
    print("audit: %d records in one chain from 3 replicas, verified: %s" % (n_rec, out.strip().splitlines()[0]),
          file=sys.stderr)


def test_a_bad_node_name_is_refused():
    r = subprocess.run([os.environ.get("SOV_BIN", "build/sov"), "serve", "-m", STORIES, "--node", "r1\r\nX-Evil: 1"],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode != 0 and r.stderr.strip().count("\n") == 0 and "--node must be" in r.stderr,
          "a --node that is not a header-safe token is a one-line error: %d %r" % (r.returncode, r.stderr))


def main():
    global C
    if not HAPROXY:
        print("FAIL: haproxy is not installed: apt-get install haproxy (scripts/deps.sh test installs it)",
              file=sys.stderr)
        sys.exit(1)
    try:
        C = Cluster()
        run_tests([test_a_bad_node_name_is_refused,
                   test_same_key_and_prompt_start_stay_on_one_replica,
                   test_tight_quota_is_never_overspent_across_replicas,
                   test_streams_pass_through_unbuffered,
                   test_sigkill_mid_load_loses_only_what_was_on_the_victim])
    finally:
        if C:
            C.stop()
            if not failures:  # kept for a look when something failed
                for d in C.dirs.values():
                    shutil.rmtree(d, ignore_errors=True)
                for f in (C.hlog_path, C.hlog_path[:-4] + "-threads.cfg"):
                    if os.path.exists(f):
                        os.remove(f)
    finish()


if __name__ == "__main__":
    main()
