"""test_audit_pg.py - the audit log with the state store in PostgreSQL (SOV_NEEDS_POSTGRES: the
CTest fixture store/pg_start runs a throw-away cluster and gives its URL in $SOV_PG_URL_FILE):
records and `sov audit verify` on PostgreSQL; two servers on one database append to ONE chain,
each signing heads with its own key (verified with both public keys, refused with one); kill -9
under load leaves a log that verifies with a record for every answer a client saw complete; and
PostgreSQL going away means no answer without its record (503 audit_unavailable) until it is
back. Without PostgreSQL this test fails: it never skips."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from auditlib import policy_args, sov_audit, third_party_verify  # noqa: E402
from serverlib import TMP, Server, check, finish, run_tests, shared_model, stream_text, wait_for  # noqa: E402

STORIES = shared_model("stories260K.gguf")
PGCTL = os.path.join(os.environ.get("SOV_TEST_DATA", os.path.join(os.path.dirname(__file__), "..")), "store",
                     "pgctl.sh")
URL = None


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
    return r.stdout.decode()


def new_database(url, name):
    name = "sov_audit_%s_%d" % (name, os.getpid())
    psql(url, "DROP DATABASE IF EXISTS %s" % name)
    psql(url, "CREATE DATABASE %s" % name)
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


def state_dir(name):
    d = os.path.join(TMP, "audit-pg-%d-%s" % (os.getpid(), name))
    shutil.rmtree(d, ignore_errors=True)
    return d


def complete(srv, n=4):
    return srv.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": n}, timeout=15)


def load(srv, stop, seen, i):
    """A client asking until stop, keeping the ids of the answers that completed."""
    while not stop.is_set():
        try:
            if i % 2:
                st, _, b = complete(srv, n=6)
                if st == 200:
                    seen.append(json.loads(b)["id"])
            else:
                st, _, b = srv.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                                             "max_tokens": 6, "stream": True}, timeout=15)
                ev = stream_text(b)[3]
                if st == 200 and ev and ev[-1] == "[DONE]":
                    seen.append(json.loads(ev[0])["id"])
        except (OSError, EOFError, ValueError, IndexError):
            pass  # the server went away under this request: it did not complete


def run_load(servers, seconds, per_server=4):
    stop, seen, threads = threading.Event(), [], []
    for s in servers:
        for i in range(per_server):
            threads.append(threading.Thread(target=load, args=(s, stop, seen, i)))
            threads[-1].start()
    time.sleep(seconds)
    return stop, seen, threads


def recorded_ids(db):
    return set(psql(db, "SELECT response_id FROM audit_records WHERE status = 200").split())


def test_records_and_verify_on_postgres():
    db = new_database(URL, "basic")
    sd = state_dir("basic")
    with Server(STORIES, "--db", db, "--state-dir", sd, *policy_args(region="KR-Seoul-1")) as s:
        check("audit log in the state store" in s.output(), "start-up: audit log on PostgreSQL")
        check(complete(s)[0] == 200, "a completion")
        check(s.get("/v1/models")[0] == 200, "models")
        check(s.get("/v1/nope")[0] == 404, "404")
    rows = psql(db, "SELECT seq, endpoint, status, region FROM audit_records ORDER BY seq").split()
    check(rows == ["1|/v1/completions|200|KR-Seoul-1", "2|/v1/models|200|KR-Seoul-1", "3|/v1/nope|404|KR-Seoul-1"],
          "three records on PostgreSQL: %r" % rows)
    pub = os.path.join(sd, "audit-ed25519.pub")
    rc, out, _ = sov_audit("verify", "--db", db, "--pub", pub)
    check(rc == 0 and "signed through record 3" in out, "verify on PostgreSQL: %d %s" % (rc, out))
    exp = os.path.join(sd, "export.jsonl")
    sov_audit("export", "--db", db, "-o", exp, check_rc=0)
    check(third_party_verify(exp, pub)[0], "its export verifies for a third party")
    psql(db, "UPDATE audit_records SET status = 200 WHERE seq = 3")
    rc, out, _ = sov_audit("verify", "--db", db, "--pub", pub)
    check(rc == 1 and "first bad record 3 (edited)" in out, "an edit on PostgreSQL is named: %s" % out)


def test_two_servers_one_chain():
    db = new_database(URL, "shared")
    da, db_ = state_dir("a"), state_dir("b")
    with Server(STORIES, "--db", db, "--state-dir", da, "-np", "4", "--audit-sign-every", "16") as a, \
            Server(STORIES, "--db", db, "--state-dir", db_, "-np", "4", "--audit-sign-every", "16") as b:
        stop, seen, threads = run_load([a, b], 3)
        stop.set()
        for t in threads:
            t.join(30)
    n = int(psql(db, "SELECT count(*) FROM audit_records"))
    check(psql(db, "SELECT min(seq), max(seq) FROM audit_records").strip() == "1|%d" % n, "numbers 1..%d" % n)
    nodes = psql(db, "SELECT DISTINCT node FROM audit_records").split()
    signers = psql(db, "SELECT DISTINCT key_id FROM audit_heads").split()
    check(len(nodes) == 2 and sorted(nodes) == sorted(signers), "both servers wrote and signed: %r %r" %
          (nodes, signers))
    switches = int(psql(db, "SELECT count(*) FROM audit_records a JOIN audit_records b ON b.seq = a.seq + 1 "
                            "WHERE a.node <> b.node"))
    check(switches > 4, "their records interleave in one chain (%d switches)" % switches)
    check(recorded_ids(db) >= set(seen) and len(seen) > 20, "every answer has its record (%d)" % len(seen))
    pa, pb = os.path.join(da, "audit-ed25519.pub"), os.path.join(db_, "audit-ed25519.pub")
    rc, out, _ = sov_audit("verify", "--db", db, "--pub", pa, "--pub", pb)
    check(rc == 0 and "%d records" % n in out, "one chain, verified with both keys: %d %s" % (rc, out))
    rc, out, _ = sov_audit("verify", "--db", db, "--pub", pa)
    check(rc == 1 and "not trusted" in out, "with one key the other's heads are not trusted: %s" % out)


def test_kill_9_under_load_on_postgres():
    db = new_database(URL, "kill")
    sd = state_dir("kill")
    s = Server(STORIES, "--db", db, "--state-dir", sd, "-np", "8")
    stop, seen, threads = run_load([s], 2.5, per_server=8)
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait()
    stop.set()
    for t in threads:
        t.join(30)
    s.log.close()
    pub = os.path.join(sd, "audit-ed25519.pub")
    rc, out, _ = sov_audit("verify", "--db", db, "--pub", pub)
    check(rc == 0, "after kill -9 the log verifies: %s" % out)
    missing = set(seen) - recorded_ids(db)
    check(len(seen) > 50 and not missing, "every answer a client saw complete has its record: %d of %d missing" %
          (len(missing), len(seen)))


def pgctl(cmd, d):
    r = subprocess.run(["bash", PGCTL, cmd, d], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=180,
                       env=dict(os.environ, PGCTL_DURABLE="1"))
    if r.returncode != 0:
        raise RuntimeError("pgctl %s: %s" % (cmd, r.stderr.decode()))
    return r.stdout.decode().strip()


def test_postgres_away_means_no_answer():
    d = os.path.join(TMP, "pg-audit-away-%d" % os.getpid())
    url = pgctl("start", d)
    try:
        db = new_database(url, "away")
        sd = state_dir("away")
        with Server(STORIES, "--db", db, "--state-dir", sd) as s:
            check(complete(s)[0] == 200, "before: 200")
            pgctl("pause", d)
            st, _, b = complete(s)
            code = json.loads(b).get("error", {}).get("code") if b else None
            check(st == 503 and code == "audit_unavailable", "PostgreSQL gone: 503 audit_unavailable (%d %r)" %
                  (st, b[:200]))
            pgctl("resume", d)
            check(wait_for(lambda: complete(s)[0] == 200, 15), "answers again once PostgreSQL is back")
        rc, out, _ = sov_audit("verify", "--db", db, "--pub", os.path.join(sd, "audit-ed25519.pub"))
        check(rc == 0, "the log verifies across the outage: %s" % out)
        check(psql(db, "SELECT count(*) FROM audit_records WHERE status = 503").strip() == "0",
              "the 503s of the outage have no record (they could not have one)")
    finally:
        pgctl("stop", d)


def main():
    global URL
    URL = fixture_url()  # SOV_NEEDS_POSTGRES
    run_tests([test_records_and_verify_on_postgres, test_two_servers_one_chain, test_kill_9_under_load_on_postgres,
               test_postgres_away_means_no_answer])
    finish()


if __name__ == "__main__":
    main()
