"""test_tenants_pg.py - tenants with the state store in PostgreSQL (SOV_NEEDS_POSTGRES: the
CTest fixture store/pg_start runs a throw-away cluster and gives its URL in
$SOV_PG_URL_FILE): keys and statuses on PostgreSQL; two `sov serve` processes on one
database share keys and a tokens-per-day quota that is never over-spent when requests are
spread over both, and see a revocation within a second; PostgreSQL down at start-up is a
one-line error; PostgreSQL going away under load gives 503s in OpenAI's shape for keys
with limits, keeps keys without limits working, loses no usage, and recovers when it is
back. Without PostgreSQL this test fails: it never skips."""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverlib import (SOV_BIN, TMP, Server, bearer, check, create_key, finish, wait_for, run_tests, shared_model, sov_keys)

STORIES = shared_model("stories260K.gguf")
PGCTL = os.path.join(os.environ.get("SOV_TEST_DATA", os.path.join(os.path.dirname(__file__), "..")), "store",
                     "pgctl.sh")


def fixture_url():
    path = os.environ.get("SOV_PG_URL_FILE", "")
    if not path or not os.path.exists(path):
        print("FAIL: no PostgreSQL: the fixture store/pg_start did not leave a URL in %r (is postgresql "
              "installed? make test installs it)" % path, file=sys.stderr)
        sys.exit(1)
    return open(path).read().strip()


def psql(url, sql):
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("psql %r: %s" % (sql, r.stderr.decode()))
    return r.stdout.decode()


def new_database(url, name):
    """A fresh database on the cluster of url; its URL."""
    name = "sov_%s_%d" % (name, os.getpid())
    psql(url, "DROP DATABASE IF EXISTS %s" % name)
    psql(url, "CREATE DATABASE %s" % name)
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


def complete(srv, key, n=4, **kw):
    body = {"prompt": "Once upon a time", "max_tokens": n, "temperature": 0}
    body.update(kw)
    return srv.post("/v1/completions", body, headers=bearer(key) if key else None)


URL = None


def test_keys_on_postgres():
    db = new_database(URL, "basic")
    key, kid = create_key(db, "acme", "--models", "stories260K")
    other, _ = create_key(db, "x'); DROP TABLE keys; --", "--models", "qwen")
    with Server(STORIES, "--db", db) as s:
        check("PostgreSQL" in s.output(), "start-up names the PostgreSQL store: " + s.output()[:400])
        check(complete(s, None)[0] == 401, "no key: 401")
        check(complete(s, key)[0] == 200, "a key from PostgreSQL: 200")
        check(complete(s, other)[0] == 403, "a key for other models: 403")
    time.sleep(0.1)
    _, out, _ = sov_keys(db, "usage")
    check(out.startswith("acme\t1\t"), "usage written to PostgreSQL: %r" % out)
    _, out, _ = sov_keys(db, "list")
    check("x'); DROP TABLE keys; --" in out and key not in out, "list from PostgreSQL: %r" % out)


def test_two_servers_share_a_daily_quota():
    db = new_database(URL, "shared")
    key, kid = create_key(db, "acme", "--tokens-per-day", "1000")
    with Server(STORIES, "--db", db, "-np", "4") as a, Server(STORIES, "--db", db, "-np", "4") as b:
        # one request on each first (which one wins a concurrent race is timing), then 32 at once
        first = [complete(a, key, n=95, ignore_eos=True), complete(b, key, n=95, ignore_eos=True)]
        check([r[0] for r in first] == [200, 200], "each server serves from the shared quota")
        res = [None] * 32

        def one(i):  # 5 prompt tokens + 95 = 100 tokens each, spread over both servers
            res[i] = complete(a if i % 2 else b, key, n=95, ignore_eos=True)

        ts = [threading.Thread(target=one, args=(i,)) for i in range(32)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        ok = [json.loads(r[2]) for r in res + first if r[0] == 200]
        spent = sum(j["usage"]["total_tokens"] for j in ok)
        by_server = [sum(1 for i, r in enumerate(res) if r[0] == 200 and i % 2 == k) for k in (0, 1)]
        check(all(r[0] in (200, 429) for r in res), "200 or 429: %r" % sorted(r[0] for r in res))
        check(spent <= 1000, "two servers never over-spend one quota: %d of 1000" % spent)
        check(len(ok) == 10, "and use it exactly: %d answers (%r per server in the burst)" % (len(ok), by_server))
        check(complete(a, key, n=1)[0] == 429 and complete(b, key, n=1)[0] == 429, "the quota is gone on both")
        # a revocation reaches both within a second
        k2, id2 = create_key(db, "beta")
        check(wait_for(lambda: complete(a, k2, n=1)[0] == 200 and complete(b, k2, n=1)[0] == 200, 3),
              "a new key works on both")
        sov_keys(db, "revoke", id2)
        t0 = time.time()
        gone = wait_for(lambda: complete(a, k2, n=1)[0] == 401 and complete(b, k2, n=1)[0] == 401, 5)
        check(gone and time.time() - t0 < 1.5, "revoked on both within a second (%.2f s)" % (time.time() - t0))
    _, out, _ = sov_keys(db, "usage", "--json")
    rows = {j["tenant"]: j for j in map(json.loads, out.strip().split("\n"))}
    check(rows.get("acme", {}).get("requests") == 10 and rows["acme"]["total_tokens"] == 1000,
          "usage from both servers adds up: %r" % rows.get("acme"))


def test_postgres_down_at_startup():
    missing = "postgresql:///sov?host=/tmp/sov-no-such-pg-%d&port=5432&user=postgres" % os.getpid()
    t0 = time.time()
    r = subprocess.run([SOV_BIN, "serve", "-m", STORIES, "--port", "0", "--db", missing], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    err = r.stderr.decode("utf-8", "replace").strip().split("\n")
    check(r.returncode != 0 and time.time() - t0 < 15 and "postgresql" in err[-1].lower(),
          "serve with PostgreSQL down: a one-line error, quickly (rc %d, %.1f s): %r" %
          (r.returncode, time.time() - t0, err[-1:]))
    r = subprocess.run([SOV_BIN, "keys", "list", "--db", missing], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    check(r.returncode != 0 and r.stderr.decode().count("\n") == 1, "sov keys with PostgreSQL down: one line")


def pgctl(cmd, d):
    # durable: the outage is an immediate shutdown (a crash), which loses commits that
    # synchronous_commit=off (the fixture's setting) had not flushed yet
    r = subprocess.run(["bash", PGCTL, cmd, d], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=180,
                       env=dict(os.environ, PGCTL_DURABLE="1"))
    if r.returncode != 0:
        raise RuntimeError("pgctl %s: %s" % (cmd, r.stderr.decode()))
    return r.stdout.decode().strip()


def test_postgres_goes_away_under_load():
    d = os.path.join(TMP, "pg-away-%d" % os.getpid())
    url = pgctl("start", d)
    try:
        db = new_database(url, "away")
        limited, _ = create_key(db, "metered", "--rpm", "100000")
        free, _ = create_key(db, "open")
        # --no-audit: what the tenants layer does alone; with the audit log (the default) no
        # request is answered while its record cannot be written (test_audit_pg.py)
        with Server(STORIES, "--db", db, "-np", "4", "--metrics-open", "--no-audit") as s:
            stop = threading.Event()
            seen = {"limited": {}, "free": {}}
            free_tokens = [0, 0]  # requests and total tokens of the free key's 200s
            lock = threading.Lock()

            def load(name, key):
                while not stop.is_set():
                    st, _, b = complete(s, key, n=2)
                    with lock:
                        seen[name][st] = seen[name].get(st, 0) + 1
                        if st == 200 and name == "free":
                            free_tokens[0] += 1
                            free_tokens[1] += json.loads(b)["usage"]["total_tokens"]
                        if st == 503:
                            e = json.loads(b)["error"]
                            if e.get("code") != "store_unavailable":
                                seen[name]["bad503"] = e
            ts = [threading.Thread(target=load, args=(n, k)) for n, k in (("limited", limited), ("free", free))
                  for _ in range(2)]
            for t in ts:
                t.start()
            try:
                time.sleep(0.5)
                pgctl("pause", d)
                time.sleep(1.5)
                with lock:
                    during = {k: dict(v) for k, v in seen.items()}
                check(s.proc.poll() is None, "the server is alive with PostgreSQL gone")
                check(s.metrics().get("sov_store_up") == 0, "/metrics says the store is down")
                pgctl("resume", d)
                recovered = wait_for(lambda: complete(s, limited, n=1)[0] == 200, 15)
                time.sleep(0.5)
            finally:
                stop.set()
                for t in ts:
                    t.join()
            check(recovered, "keys with limits work again once PostgreSQL is back")
            check(during["limited"].get(503, 0) > 0 and "bad503" not in during["limited"],
                  "while it was gone, keys with limits got 503 store_unavailable: %r" % during["limited"])
            check(during["free"].get(200, 0) > 0 and set(during["free"]) <= {200},
                  "keys without limits kept working: %r" % during["free"])
            check(set(seen["free"]) == {200} and set(seen["limited"]) <= {200, 503},
                  "no other status, no crash: %r" % seen)
            check(wait_for(lambda: s.metrics().get("sov_store_usage_pending") == 0, 10), "usage written out")
        _, out, _ = sov_keys(db, "usage", "--json")
        rows = {j["tenant"]: j for j in map(json.loads, out.strip().split("\n"))}
        got = rows.get("open", {})
        check([got.get("requests"), got.get("total_tokens")] == free_tokens,
              "no usage lost across the outage: store %r, clients saw %r" % (got, free_tokens))
    finally:
        pgctl("stop", d)


def main():
    global URL
    URL = fixture_url()
    run_tests([test_keys_on_postgres, test_two_servers_share_a_daily_quota, test_postgres_down_at_startup,
               test_postgres_goes_away_under_load])
    finish()


if __name__ == "__main__":
    main()
