"""test_admin_api.py - the admin API under /console/api/ (src/server/admin.c, docs/WEB.md):
who may call it (401 without a valid key, 403 for a key that is not an admin key, also with
--metrics-open; 404 without a store), a key created over HTTP working at once and refused
on the very next request after its revoke, the key list never showing a secret and agreeing
with `sov keys list`, the tenants' minute and day windows agreeing with the usage the
clients were told, the audit list agreeing with the SQLite rows, verification agreeing with
`sov audit verify` before and after a row is changed behind the server's back, every admin
POST recorded with the admin key's id, and malformed bodies, queries, content types and
origins refused with a one-line JSON error."""
import glob
import json
import os
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverlib import SOV_BIN, TMP, Server, bearer, check, create_key, finish, run_tests, shared_model, sov_keys

STORIES = shared_model("stories260K.gguf")
HERE = os.path.dirname(os.path.abspath(__file__))


class Checked(Server):
    """A server whose exit status is checked when it stops (a sanitizer report exits non-zero)."""

    def __exit__(self, *a):
        rc = self.stop()
        check(rc == 0, "the server stopped cleanly (exit %r): %s" % (rc, self.output()[-2000:] if rc else ""))


def fresh_db(name):
    d = os.path.join(TMP, "admin-%s-%d" % (name, os.getpid()))
    os.makedirs(d, exist_ok=True)
    db = os.path.join(d, "state.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    return db


def api(s, method, path, key=None, body=None, headers=None):
    """(status, parsed JSON or None, headers) of an admin API call."""
    h = dict(bearer(key)) if key else {}
    h.update(headers or {})
    st, hd, b = s.request(method, path, body, headers=h)
    try:
        j = json.loads(b) if b else None
    except ValueError:
        j = None
    return st, j, hd


def err_line(j):
    """The error's message when it has OpenAI's shape and is one line, else None."""
    if not isinstance(j, dict) or "error" not in j:
        return None
    m = j["error"].get("message", "")
    return m if m and "\n" not in m else None


def post_v1(s, key, n=4, prompt="Once upon a time"):
    st, _, b = s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}],
                                               "max_tokens": n, "temperature": 0}, headers=bearer(key))
    return st, json.loads(b) if b else None


def audit_rows(db):
    con = sqlite3.connect(db, timeout=10)
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM audit_records ORDER BY seq")]
    con.close()
    return rows


def sov_audit_verify(db):
    r = subprocess.run([SOV_BIN, "audit", "verify", "--db", db], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout


# ---- who may call it ----

def test_who_may_call_it():
    db = fresh_db("auth")
    admin, admin_id = create_key(db, "ops", "--admin")
    user, user_id = create_key(db, "acme")
    with Checked(STORIES, "--db", db, "--metrics-open") as s:
        for path in ("/console/api/keys", "/console/api/tenants", "/console/api/audit", "/console/api/audit/verify"):
            st, j, hd = api(s, "GET", path)
            check(st == 401 and err_line(j) and j["error"]["code"] == "missing_api_key" and
                  "www-authenticate" in hd, "%s without a key: 401 (%d %r)" % (path, st, j))
            st, j, _ = api(s, "GET", path, key="sov-" + "a" * 40)
            check(st == 401 and j["error"]["code"] == "invalid_api_key", "%s with an unknown key: 401 (%d)" % (path, st))
            st, j, _ = api(s, "GET", path, key=user)
            check(st == 403 and j["error"]["code"] == "admin_key_required",
                  "%s with a tenant's key: 403 even with --metrics-open (%d %r)" % (path, st, j))
            st, j, hd = api(s, "GET", path, key=admin)
            check(st == 200 and isinstance(j, dict) and hd.get("cache-control") == "no-store" and
                  "default-src 'self'" in hd.get("content-security-policy", ""),
                  "%s with the admin key: 200, no-store, the CSP (%d)" % (path, st))
        # refused POSTs are recorded too: who tried what
        st, _, _ = api(s, "POST", "/console/api/keys", key=user, body={"tenant": "evil", "admin": True})
        check(st == 403, "a tenant's key cannot create keys (%d)" % st)
        st, _, _ = api(s, "POST", "/console/api/keys/%d/revoke" % admin_id, key="sov-" + "b" * 40)
        check(st == 401, "an unknown key cannot revoke (%d)" % st)
        st, j, _ = api(s, "GET", "/console/api/keys", key=admin)
        check(all(k["tenant"] != "evil" for k in j["keys"]), "no key was created by the refused POST")
        st, j, _ = api(s, "DELETE", "/console/api/keys", key=admin)
        check(st == 405, "DELETE on the key list: 405 (%d)" % st)
    rows = audit_rows(db)
    refused = [(r["endpoint"], r["status"], r["key_id"], r["tenant"]) for r in rows if r["endpoint"].startswith("/console")]
    check(("/console/api/keys", 403, user_id, "acme") in refused and
          ("/console/api/keys/%d/revoke" % admin_id, 401, 0, "") in refused,
          "the refused POSTs are in the audit log with who tried: %r" % refused)
    check(sov_audit_verify(db)[0] == 0, "the log verifies")
    # without a store there is no admin API; a store without keys says how to make the first
    with Checked(STORIES) as s:
        st, j, _ = api(s, "GET", "/console/api/keys")
        check(st == 404 and j["error"]["code"] == "no_state_store", "no --db: 404 (%d %r)" % (st, j))
    with Checked(STORIES, "--db", db, "--no-audit") as s:
        st, j, _ = api(s, "GET", "/console/api/audit/verify", key=admin)
        check(st == 409 and j["error"]["code"] == "no_audit_log", "--no-audit: verify says there is no key: %d %r"
              % (st, j))
        st, j, _ = api(s, "GET", "/console/api/keys", key=admin)
        check(st == 200 and len(j["keys"]) == 2, "--no-audit: the keys are still managed (%d)" % st)
    empty = fresh_db("empty")
    with Checked(STORIES, "--db", empty) as s:
        st, j, _ = api(s, "GET", "/console/api/keys")
        check(st == 401 and "sov keys create" in j["error"]["message"],
              "a store without keys: 401 saying how to create the first admin key (%d %r)" % (st, j))


# ---- keys ----

def test_create_use_revoke():
    db = fresh_db("keys")
    admin, admin_id = create_key(db, "ops", "--admin")
    with Checked(STORIES, "--db", db) as s:
        st, _, models = s.request("GET", "/v1/models", headers=bearer(admin))
        model = json.loads(models)["data"][0]["id"]
        body = {"tenant": "radiology", "models": [model], "rpm": 600, "tpm": 200000, "tokens_per_day": 5000000}
        st, made, _ = api(s, "POST", "/console/api/keys", key=admin, body=body)
        check(st == 200 and made["key"].startswith("sov-") and len(made["key"]) == 44 and
              made["key"].startswith(made["prefix"]) and made["tenant"] == "radiology" and made["rpm"] == 600 and
              made["tpm"] == 200000 and made["tokens_per_day"] == 5000000 and made["models"] == [model] and
              made["admin"] is False and made["revoked"] is None, "the new key and its settings: %r" % made)
        new, new_id = made["key"], made["id"]
        # it works at once (the reply came after the server swapped in the new key table)
        st, r = post_v1(s, new)
        check(st == 200 and r["usage"]["completion_tokens"] > 0, "the new key works on the next request (%d)" % st)
        # listed, never with the secret
        st, j, _ = api(s, "GET", "/console/api/keys", key=admin)
        raw = s.request("GET", "/console/api/keys", headers=bearer(admin))[2].decode()
        mine = [k for k in j["keys"] if k["id"] == new_id]
        check(len(mine) == 1 and "key" not in mine[0] and new not in raw and new[12:] not in raw and
              admin[12:] not in raw, "the list shows the key without its secret")
        cli = [json.loads(l) for l in sov_keys(db, "list", "--json")[1].splitlines()]
        check(sorted(k["id"] for k in cli) == sorted(k["id"] for k in j["keys"]) and
              all(c["prefix"] == k["prefix"] and c["tenant"] == k["tenant"] and c["rpm"] == k["rpm"] and
                  c["tpm"] == k["tpm"] and c["tokens_per_day"] == k["tokens_per_day"] and c["admin"] == k["admin"]
                  for c in cli for k in j["keys"] if c["id"] == k["id"]),
              "the list agrees with sov keys list --json")
        # revoke: the very next request with the key is refused
        st, j, _ = api(s, "POST", "/console/api/keys/%d/revoke" % new_id, key=admin)
        check(st == 415, "a revoke without Content-Type: application/json is refused (CSRF): %d" % st)
        st, rv, _ = api(s, "POST", "/console/api/keys/%d/revoke" % new_id, key=admin, body={})
        check(st == 200 and rv["id"] == new_id and rv["revoked"] > 0, "revoked: %d %r" % (st, rv))
        st, r = post_v1(s, new)
        check(st == 401 and "revoked" in r["error"]["message"], "the next request with the revoked key: 401 (%d %r)"
              % (st, r))
        st, j, _ = api(s, "POST", "/console/api/keys/%d/revoke" % (new_id + 1000), key=admin, body={})
        check(st == 404 and j["error"]["code"] == "key_not_found", "revoking an unknown key: 404 (%d)" % st)
        st, j, _ = api(s, "POST", "/console/api/keys/%d/revoke" % new_id, key=admin, body={})
        check(st == 200, "revoking again (with {} as body) changes nothing: 200 (%d)" % st)
    # every admin POST is in the audit log with the admin key's id, and the reply named its record
    rows = {r["seq"]: r for r in audit_rows(db)}
    c = rows.get(made["audit_seq"])
    check(c and c["endpoint"] == "/console/api/keys" and c["status"] == 200 and c["key_id"] == admin_id and
          c["tenant"] == "ops" and c["response_id"] == "key-%d" % new_id,
          "the create is audited as record %s: %r" % (made.get("audit_seq"), c))
    v = rows.get(rv["audit_seq"])
    check(v and v["endpoint"] == "/console/api/keys/%d/revoke" % new_id and v["status"] == 200 and
          v["key_id"] == admin_id and v["response_id"] == "key-%d" % new_id,
          "the revoke is audited as record %s: %r" % (rv.get("audit_seq"), v))
    nf = [r for r in rows.values() if r["endpoint"] == "/console/api/keys/%d/revoke" % (new_id + 1000)]
    check(len(nf) == 1 and nf[0]["status"] == 404, "the failed revoke is audited with its 404")
    check(sov_audit_verify(db)[0] == 0, "the log verifies")


# ---- tenants against quotas ----

def test_quotas_reflect_usage():
    db = fresh_db("quota")
    admin, _ = create_key(db, "ops", "--admin")
    with Checked(STORIES, "--db", db) as s:
        st, made, _ = api(s, "POST", "/console/api/keys", key=admin,
                          body={"tenant": "clinic", "rpm": 50, "tpm": 100000, "tokens_per_day": 1000000})
        key = made["key"]
        used = 0
        for i in range(3):
            st, r = post_v1(s, key, n=5 + i, prompt="Once upon a time %d" % i)
            check(st == 200, "request %d answered" % i)
            used += r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"]
        # settles reach the store in batches (every 200 ms): poll until they did
        t_end = time.time() + 10
        while True:
            st, j, _ = api(s, "GET", "/console/api/tenants", key=admin)
            ten = [t for t in j["tenants"] if t["name"] == "clinic"]
            k = ten[0]["keys"][0] if ten and ten[0]["keys"] else {}
            if (k.get("minute_tokens") == used and ten[0]["today"]["requests"] == 3) or time.time() > t_end:
                break
            time.sleep(0.1)
        check(k.get("rpm") == 50 and k.get("tpm") == 100000 and k.get("tokens_per_day") == 1000000,
              "the tenant's key carries its quotas: %r" % k)
        same_minute = j["minute_start"] == j["now"] - j["now"] % 60
        check(k.get("minute_requests") == 3 or not same_minute, "3 requests this minute: %r" % k)
        check(k.get("minute_tokens") == used and k.get("day_tokens") == used,
              "this minute's and today's tokens are what the clients were told (%d): %r" % (used, k))
        today = ten[0]["today"]
        check(today["requests"] == 3 and today["prompt_tokens"] + today["completion_tokens"] == used,
              "today's usage of the tenant: %r (used %d)" % (today, used))
        ops = [t for t in j["tenants"] if t["name"] == "ops"]
        check(ops and ops[0]["keys"][0]["rpm"] == 0 and ops[0]["keys"][0]["admin"] is True,
              "a tenant without limits is listed with 0 (no limit)")


# ---- the audit log ----

def test_audit_list_verify_and_tamper():
    db = fresh_db("audit")
    admin, _ = create_key(db, "ops", "--admin")
    user, _ = create_key(db, "acme")
    with Checked(STORIES, "--db", db) as s:
        for i in range(7):
            check(post_v1(s, user, n=2, prompt="Tell me %d" % i)[0] == 200, "request %d" % i)
        rows = audit_rows(db)
        st, j, _ = api(s, "GET", "/console/api/audit?limit=5", key=admin)
        check(st == 200 and j["last_seq"] == rows[-1]["seq"] and [r["seq"] for r in j["records"]] ==
              [r["seq"] for r in rows[-5:]], "the last 5 records (%d)" % st)
        by_seq = {r["seq"]: r for r in rows}
        for r in j["records"]:
            d = by_seq[r["seq"]]
            check(r["hash"] == d["hash"] and r["prev"] == d["prev_hash"] and r["tenant"] == d["tenant"] and
                  r["status"] == d["status"] and r["prompt_sha256"] == d["prompt_sha256"] and
                  r["endpoint"] == d["endpoint"] and r["text_kept"] is False and "prompt" not in r,
                  "record %d as stored, without text" % r["seq"])
        st, j2, _ = api(s, "GET", "/console/api/audit?after=2&limit=3", key=admin)
        check([r["seq"] for r in j2["records"]] == [3, 4, 5], "after=2&limit=3 pages from record 3")
        st, v, _ = api(s, "GET", "/console/api/audit/verify", key=admin)
        check(st == 200 and v["ok"] is True and v["records"] == len(rows) and v["last_seq"] == rows[-1]["seq"] and
              v["first_bad"] is None and len(v["trusted_keys"]) == 1, "verify: ok over %d records: %r" % (len(rows), v))
        rc, out = sov_audit_verify(db)
        check(rc == 0 and ("%d records" % v["records"]) in out, "sov audit verify agrees: %s" % out)
        # a row changed behind the server's back
        con = sqlite3.connect(db, timeout=10)
        con.execute("UPDATE audit_records SET status = 500 WHERE seq = 3")
        con.commit()
        con.close()
        st, v, _ = api(s, "GET", "/console/api/audit/verify", key=admin)
        check(st == 200 and v["ok"] is False and v["first_bad"]["seq"] == 3 and v["first_bad"]["kind"] == "edited",
              "verify names record 3 as edited: %r" % v)
        rc, out = sov_audit_verify(db)
        check(rc == 1 and "first bad record 3 (edited)" in out, "sov audit verify says the same: %s" % out)
        st, j, _ = api(s, "GET", "/console/api/audit?after=2&limit=1", key=admin)
        check(j["records"][0]["status"] == 500, "the list shows the row as it now is")


# ---- malformed input ----

def test_malformed_input():
    db = fresh_db("bad")
    admin, _ = create_key(db, "ops", "--admin")
    corpus = sorted(glob.glob(os.path.join(HERE, "corpus_admin", "*")))
    with Checked(STORIES, "--db", db) as s:
        for p in corpus:
            data = open(p, "rb").read()
            st, hd, b = s.request("POST", "/console/api/keys", data,
                                  headers=dict(bearer(admin), **{"Content-Type": "application/json"}))
            j = json.loads(b) if b else None
            check(st == 400 and err_line(j), "%s: 400 with a one-line error (%d %r)" % (os.path.basename(p), st, b[:200]))
        n_keys = len(api(s, "GET", "/console/api/keys", key=admin)[1]["keys"])
        check(n_keys == 1, "no corpus body created a key (%d keys)" % n_keys)
        good = {"tenant": "x"}
        cases = [
            ("text/plain", None, good, 415),
            ("application/x-www-form-urlencoded", None, good, 415),
            ("multipart/form-data; boundary=x", None, good, 415),
            ("application/json", "http://evil.example", good, 403),
            ("application/json", "null", good, 403),
            ("application/json", None, "x" * 20000, 413),
        ]
        for ctype, origin, body, want in cases:
            h = dict(bearer(admin), **{"Content-Type": ctype})
            if origin:
                h["Origin"] = origin
            raw = body if isinstance(body, str) else json.dumps(body)
            st, hd, b = s.request("POST", "/console/api/keys", raw, headers=h)
            check(st == want and err_line(json.loads(b)), "%s origin %s: %d (%d %r)" % (ctype, origin, want, st, b[:120]))
        own = "http://%s:%d" % (s.host, s.port)
        st, j, _ = api(s, "POST", "/console/api/keys", key=admin, body={"tenant": "same-origin"}, headers={"Origin": own})
        check(st == 200, "the server's own origin may POST (%d %r)" % (st, j))
        for q in ("limit=0", "limit=500", "after=-1", "after=x", "foo=1", "after=1&after=2"):
            st, j, _ = api(s, "GET", "/console/api/audit?" + q, key=admin)
            check(st == 400 and err_line(j), "audit?%s: 400 (%d)" % (q, st))
        for path in ("/console/api/keys/0/revoke", "/console/api/keys/abc/revoke", "/console/api/keys/1/delete",
                     "/console/api/nothing"):
            st, j, _ = api(s, "POST", path, key=admin, body={})
            check(st == 404 and err_line(j), "%s: 404 (%d)" % (path, st))
        st, j, _ = api(s, "POST", "/console/api/keys/1/revoke", key=admin, body={"why": "x"})
        check(st == 400 and err_line(j), "a revoke with a body: 400 (%d)" % st)
        st, j, _ = api(s, "GET", "/console/api/keys/1/revoke", key=admin)
        check(st == 405, "GET on a revoke: 405 (%d)" % st)
        st, _, _ = s.get("/health")
        check(st == 200, "the server is still healthy")
    check(sov_audit_verify(db)[0] == 0, "the log (with every refused POST) verifies")


def main():
    run_tests([test_who_may_call_it, test_create_use_revoke, test_quotas_reflect_usage,
               test_audit_list_verify_and_tamper, test_malformed_input])
    finish()


main()
