"""test_admin_api_pg.py - the admin API with the state store in PostgreSQL (SOV_NEEDS_POSTGRES:
the CTest fixture store/pg_start runs a throw-away cluster and gives its URL in
$SOV_PG_URL_FILE), the same behaviour as test_admin_api.py's on SQLite: a key created over
HTTP works at once and is refused on the first request after its revoke, the tenants' windows
equal what the clients were told, the create and revoke are audited with the admin key's id,
and verification says OK, then names the record changed with psql behind the server's back.
Without PostgreSQL this test fails: it never skips."""
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverlib import TMP, Server, bearer, check, create_key, finish, run_tests, shared_model  # noqa: E402

STORIES = shared_model("stories260K.gguf")


def fixture_url():
    path = os.environ.get("SOV_PG_URL_FILE", "")
    if not path or not os.path.exists(path):
        print("FAIL: no PostgreSQL: the fixture store/pg_start did not leave a URL in %r" % path, file=sys.stderr)
        sys.exit(1)
    return open(path).read().strip()


def psql(url, sql):
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("psql %r: %s" % (sql, r.stderr.decode()))
    return r.stdout.decode()


def new_database(url, name):
    name = "sov_admin_%s_%d" % (name, os.getpid())
    psql(url, "DROP DATABASE IF EXISTS %s" % name)
    psql(url, "CREATE DATABASE %s" % name)
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


def api(s, method, path, key, body=None):
    st, _, b = s.request(method, path, body, headers=bearer(key))
    return st, json.loads(b) if b else None


def test_admin_api_on_postgres():
    db = new_database(fixture_url(), "api")
    state = os.path.join(TMP, "admin-pg-%d" % os.getpid())
    shutil.rmtree(state, ignore_errors=True)
    admin, admin_id = create_key(db, "ops", "--admin")
    with Server(STORIES, "--db", db, "--state-dir", state) as s:
        st, made = api(s, "POST", "/console/api/keys", admin, {"tenant": "lab", "rpm": 20, "tokens_per_day": 50000})
        check(st == 200 and made["key"].startswith("sov-"), "created on PostgreSQL: %d %r" % (st, made))
        key = made["key"]
        used = 0
        for i in range(2):
            st, _, b = s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi %d" % i}],
                                                       "max_tokens": 4}, headers=bearer(key))
            check(st == 200, "the new key chats (%d)" % st)
            u = json.loads(b)["usage"]
            used += u["prompt_tokens"] + u["completion_tokens"]
        t_end = time.time() + 10
        while True:
            st, j = api(s, "GET", "/console/api/tenants", admin)
            k = [t for t in j["tenants"] if t["name"] == "lab"][0]["keys"][0]
            if k["day_tokens"] == used or time.time() > t_end:
                break
            time.sleep(0.1)
        check(k["day_tokens"] == used and k["tokens_per_day"] == 50000 and k["rpm"] == 20,
              "today's tokens against the quota equal what the clients were told (%d): %r" % (used, k))
        st, rv = api(s, "POST", "/console/api/keys/%d/revoke" % made["id"], admin, {})
        check(st == 200, "revoked (%d)" % st)
        st, _, b = s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
                          headers=bearer(key))
        check(st == 401, "the first request after the revoke is refused (%d)" % st)
        rows = psql(db, "SELECT seq, endpoint, status, key_id, response_id FROM audit_records "
                        "WHERE endpoint LIKE '/console/%' ORDER BY seq").split()
        want = ["%d|/console/api/keys|200|%d|key-%d" % (made["audit_seq"], admin_id, made["id"]),
                "%d|/console/api/keys/%d/revoke|200|%d|key-%d" % (rv["audit_seq"], made["id"], admin_id, made["id"])]
        check(rows == want, "the create and the revoke are audited: %r, want %r" % (rows, want))
        st, v = api(s, "GET", "/console/api/audit/verify", admin)
        check(st == 200 and v["ok"] is True and v["records"] >= 5, "verify on PostgreSQL: OK (%r)" % v)
        psql(db, "UPDATE audit_records SET completion_tokens = completion_tokens + 1 WHERE seq = 2")
        st, v = api(s, "GET", "/console/api/audit/verify", admin)
        check(st == 200 and v["ok"] is False and v["first_bad"]["seq"] == 2 and v["first_bad"]["kind"] == "edited",
              "a row changed with psql is named: %r" % v.get("first_bad"))
    check(s.proc.returncode == 0, "the server stopped cleanly (%r)" % s.proc.returncode)


def main():
    run_tests([test_admin_api_on_postgres])
    finish()


main()
