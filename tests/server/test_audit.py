"""test_audit.py - the audit log end to end on `sov serve --db` with a SQLite store
(docs/AUDIT.md): a record for every kind of /v1 response (completions streamed and not,
/v1/models, 400/401/403/404/405/429, a client that leaves mid-stream) with the right fields,
none for /health, /ready, /metrics; `sov audit verify` after a normal run; an export that
verifies alone, also with a third party's verifier written from the documentation (hashlib and
the openssl command); tampering in the store named by record number through the command line;
retention hashes / none / full and the expiry of kept text; the answer's last byte held until
its record is committed, and a 503 (or a stream without [DONE]) when it cannot be; and kill -9
under load: the log verifies and every response a client saw complete has its record."""
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from auditlib import policy_args, records, sha256, sov_audit, third_party_verify  # noqa: E402
from serverlib import (TMP, Server, bearer, check, create_key, finish, read_response, run_tests, shared_model,  # noqa: E402
                       sov_keys, stream_text, wait_for)

STORIES = shared_model("stories260K.gguf")


def state(name):
    """A fresh folder for a store and its signing key; the store's path."""
    d = os.path.join(TMP, "audit-%d-%s" % (os.getpid(), name))
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return os.path.join(d, "state.db")


def pub_of(db):
    return os.path.join(os.path.dirname(db), "audit-ed25519.pub")


def complete(srv, key=None, prompt="Once upon a time", n=4, **kw):
    body = {"prompt": prompt, "max_tokens": n, "temperature": 0}
    body.update(kw)
    return srv.post("/v1/completions", body, headers=bearer(key) if key else None)


def chat_stream(srv, key=None, content="Hi", n=6):
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": n, "stream": True}
    return srv.post("/v1/chat/completions", body, headers=bearer(key) if key else None)


def verify(db, *extra):
    return sov_audit("verify", "--db", db, "--pub", pub_of(db), *extra)


# ---- what is recorded ----

def test_records_for_every_kind_of_response():
    db = state("kinds")
    key, kid = create_key(db, "acme")
    admin, _ = create_key(db, "ops", "--admin")
    slow, slow_id = create_key(db, "acme", "--rpm", "1")
    other, other_id = create_key(db, "globex", "--models", "llama-3")
    gone, gone_id = create_key(db, "acme")
    sov_keys(db, "revoke", gone_id)
    sent = []  # (endpoint, status) of every /v1 response
    with Server(STORIES, "--db", db, *policy_args(region="KR-Seoul-1")) as s:
        check("audit log in the state store, chain heads signed by key" in s.output(), "start-up names the audit key")
        st, _, b = complete(s, key, n=6)
        check(st == 200, "completion: 200")
        done = json.loads(b)
        sent.append(("/v1/completions", 200))
        st, _, b = chat_stream(s, key)
        text, fin, _, ev = stream_text(b)
        check(st == 200 and ev[-1] == "[DONE]", "stream: 200 and [DONE]")
        stream_id = json.loads(ev[0])["id"]
        sent.append(("/v1/chat/completions", 200))
        check(s.get("/v1/models", headers=bearer(key))[0] == 200, "models: 200")
        sent.append(("/v1/models", 200))
        check(complete(s)[0] == 401, "no key: 401")
        sent.append(("/v1/completions", 401))
        check(complete(s, gone)[0] == 401, "revoked: 401")
        sent.append(("/v1/completions", 401))
        check(complete(s, other)[0] == 403, "other models: 403")
        sent.append(("/v1/completions", 403))
        left = 60 - time.time() % 60
        if left < 5:  # the minute window resets at the minute: both in one
            time.sleep(left + 0.5)
        check(complete(s, slow)[0] == 200 and complete(s, slow)[0] == 429, "rpm 1: 200 then 429")
        sent += [("/v1/completions", 200), ("/v1/completions", 429)]
        check(s.post("/v1/completions", "{not json", headers=bearer(key))[0] == 400, "bad JSON: 400")
        sent.append(("/v1/completions", 400))
        check(s.get("/v1/nope", headers=bearer(key))[0] == 404, "unknown path: 404")
        sent.append(("/v1/nope", 404))
        check(s.get("/v1/completions", headers=bearer(key))[0] == 405, "GET a POST path: 405")
        sent.append(("/v1/completions", 405))
        check(s.get("/health")[0] == 200 and s.get("/ready")[0] == 200, "health and ready")
        check(s.get("/metrics", headers=bearer(admin))[0] == 200, "metrics with an admin key")
        # a client that leaves in the middle of a stream
        c = s.connect()
        body = json.dumps({"prompt": "Once upon a time", "max_tokens": 1500, "ignore_eos": True,
                           "stream": True}).encode()
        c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode() +
                  b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        c.recv(4096)
        c.close()
        check(wait_for(lambda: len(records(db)) == len(sent) + 1, 10), "the stream left behind is recorded too")
    rec = records(db)
    check(len(rec) == len(sent) + 1, "one record per /v1 response, none for health, ready, metrics: %d for %d" %
          (len(rec), len(sent) + 1))
    check([r["seq"] for r in rec] == list(range(1, len(rec) + 1)), "numbered 1..n")
    by_id = {r["response_id"]: r for r in rec if r["response_id"]}
    r = by_id.get(done["id"])
    if check(r is not None, "the completion's record carries its response id"):
        u = done["usage"]
        check((r["tenant"], r["key_id"], r["endpoint"], r["status"]) == ("acme", kid, "/v1/completions", 200),
              "who, where, status: %r" % r)
        check((r["prompt_tokens"], r["completion_tokens"], r["cached_tokens"]) ==
              (u["prompt_tokens"], u["completion_tokens"], u["prompt_tokens_details"]["cached_tokens"]),
              "tokens as in the answer's usage")
        check(r["finish_reason"] == done["choices"][0]["finish_reason"], "finish reason")
        check(r["prompt_sha256"] == sha256("Once upon a time"), "prompt hash: of the prompt the model saw")
        check(r["completion_sha256"] == sha256(done["choices"][0]["text"]), "completion hash: of the text sent")
        check(r["client"] == "127.0.0.1" and r["region"] == "KR-Seoul-1" and r["retention"] == "hashes",
              "client, region, retention: %r" % r)
        check(len(r["model_sha256"]) == 64 and r["model"] == "stories260K", "the model and its file's hash")
        check(r["prompt_text"] is None and r["completion_text"] is None, "retention hashes keeps no text")
    r = by_id.get(stream_id)
    if check(r is not None, "the stream's record carries its response id"):
        check(r["completion_sha256"] == sha256(text) and r["status"] == 200 and r["finish_reason"] == fin,
              "stream: completion hash of the deltas sent, status, finish")
    statuses = sorted((x["endpoint"], x["status"]) for x in rec if x["finish_reason"] != "cancelled")
    check(statuses == sorted(sent), "every response's endpoint and status: %r vs %r" % (statuses, sorted(sent)))
    left = [x for x in rec if x["finish_reason"] == "cancelled"]
    check(len(left) == 1 and left[0]["status"] == 200 and left[0]["completion_tokens"] < 1500,
          "the client that left: status 200 (sent), finish cancelled: %r" % left)
    r401 = [x for x in rec if x["status"] == 401]
    check(sorted(x["key_id"] for x in r401) == sorted([0, gone_id]) and all(x["tenant"] == "" for x in r401),
          "401s: no tenant; the revoked key's id is known")
    check([x["key_id"] for x in rec if x["status"] == 403] == [other_id], "403: the key")
    check([x["key_id"] for x in rec if x["status"] == 429] == [slow_id], "429: the key")
    check(all(x["region"] == "KR-Seoul-1" for x in rec), "the region in every record")
    rc, out, _ = verify(db)
    check(rc == 0 and "OK" in out, "verify after a normal run: %d %s" % (rc, out))
    check("signed through record %d" % len(rec) in out, "the shutdown signed the last record: " + out)


def test_no_store_no_audit_and_no_audit_flag():
    with Server(STORIES) as s:
        check(complete(s)[0] == 200, "no --db: serves")
    check("no audit log" in s.output(), "start-up says there is no audit log")
    db = state("noaudit")
    with Server(STORIES, "--db", db, "--no-audit") as s:
        check(complete(s)[0] == 200, "--no-audit: serves")
    check("NOT recorded" in s.output() and records(db) == [], "--no-audit says so and records nothing")


# ---- export and verification ----

def test_export_verifies_alone_and_by_a_third_party():
    db = state("export")
    a, _ = create_key(db, "acme")
    g, _ = create_key(db, "globex")
    with Server(STORIES, "--db", db, "--audit-sign-every", "4") as s:
        for i in range(7):
            complete(s, a if i % 2 else g, n=3)
        chat_stream(s, a)
    exp = os.path.join(os.path.dirname(db), "all.jsonl")
    rc, _, err = sov_audit("export", "--db", db, "-o", exp)
    check(rc == 0, "export: " + err)
    rc, out, _ = sov_audit("verify", "--export", exp, "--pub", pub_of(db))
    check(rc == 0 and "8 records" in out, "the export verifies alone: %d %s" % (rc, out))
    ok, why, n = third_party_verify(exp, pub_of(db))
    check(ok and n == 8, "a third party's verifier (hashlib, openssl) agrees: %s" % why)
    heads = [json.loads(l) for l in open(exp) if '"type":"head"' in l]
    check(len(heads) >= 2 and heads[-1]["seq"] == 8, "heads every 4 records and at shutdown: %r" %
          [h["seq"] for h in heads])
    # one tenant's records in full, the others as links: still a verifiable chain, nothing of globex
    mine = os.path.join(os.path.dirname(db), "acme.jsonl")
    sov_audit("export", "--db", db, "--tenant", "acme", "-o", mine, check_rc=0)
    lines = [json.loads(l) for l in open(mine)]
    check(all(l.get("tenant") != "globex" for l in lines), "no globex record in acme's export")
    check(sum(l["type"] == "link" for l in lines) == 4 and sum(l["type"] == "record" for l in lines) == 4,
          "globex's records are links")
    check(sov_audit("verify", "--export", mine, "--pub", pub_of(db))[0] == 0, "acme's export verifies")
    check(third_party_verify(mine, pub_of(db))[0], "and for the third party")
    # --since: from the 5th record on
    t5 = records(db)[4]["time_ms"]
    part = os.path.join(os.path.dirname(db), "since.jsonl")
    sov_audit("export", "--db", db, "--since", "@%d" % ((t5 + 999) // 1000 - 1), "-o", part, check_rc=0)
    first = json.loads(open(part).readline())
    check(first["first_seq"] <= 5, "--since starts at or before record 5: %r" % first)
    check(sov_audit("verify", "--export", part, "--pub", pub_of(db))[0] == 0, "a --since export verifies")
    # an edited export is named
    edited = os.path.join(os.path.dirname(db), "edited.jsonl")
    with open(exp) as f, open(edited, "w") as o:
        for l in f:
            j = json.loads(l)
            if j.get("seq") == 3 and j["type"] == "record":
                j["completion_tokens"] += 1
                l = json.dumps(j) + "\n"
            o.write(l)
    rc, out, _ = sov_audit("verify", "--export", edited, "--pub", pub_of(db))
    check(rc == 1 and "first bad record 3 (edited)" in out, "an edited export: %d %s" % (rc, out))
    check(not third_party_verify(edited, pub_of(db))[0], "the third party sees it too")
    # trust comes from --pub: another key does not verify the heads
    other = state("export-other")
    with Server(STORIES, "--db", other):
        pass
    rc, out, _ = sov_audit("verify", "--export", exp, "--pub", pub_of(other))
    check(rc == 1 and "not trusted" in out, "heads by a key not given: %d %s" % (rc, out))
    rc, out, err = sov_audit("verify", "--db", db)
    check(rc == 0 and "warning: trusting" in err, "without --pub: the state folder's keys, with a warning")


def sql(db, *statements):
    c = sqlite3.connect(db)
    for s in statements:
        c.execute(s)
    c.commit()
    c.close()


def test_tampering_in_the_store_is_named():
    db = state("tamper")
    with Server(STORIES, "--db", db, "--audit-sign-every", "5") as s:
        for i in range(12):
            complete(s, n=2, prompt="Once upon a time %d" % i)
    check(verify(db)[0] == 0, "the original verifies")
    cols = "seq, version, time_ms, node, tenant, key_id, model, model_sha256, model_signer, endpoint, status, " \
           "prompt_tokens, completion_tokens, cached_tokens, latency_ms, finish_reason, client, response_id, " \
           "region, retention, prompt_sha256, completion_sha256, prev_hash, hash, prompt_text, completion_text, " \
           "text_expires, energy_uj, energy_source"
    cases = [
        ("edited", 7, ["UPDATE audit_records SET status = 500 WHERE seq = 7"]),
        ("edited", 3, ["UPDATE audit_records SET energy_uj = energy_uj + 1 WHERE seq = 3"]),  # the energy is hashed
        ("edited", 2, ["UPDATE audit_records SET energy_source = 'rapl' WHERE seq = 2"]),
        ("deleted", 4, ["DELETE FROM audit_records WHERE seq = 4"]),
        ("inserted", 6, ["UPDATE audit_records SET seq = seq + 1000 WHERE seq >= 6",
                         "UPDATE audit_records SET seq = seq - 999 WHERE seq >= 1000",
                         "INSERT INTO audit_records (%s) SELECT 6, %s FROM audit_records WHERE seq = 5" %
                         (cols, cols.split(", ", 1)[1])]),
        ("reordered", 8, ["UPDATE audit_records SET seq = 100 WHERE seq = 8",
                          "UPDATE audit_records SET seq = 8 WHERE seq = 9",
                          "UPDATE audit_records SET seq = 9 WHERE seq = 100"]),
        ("truncated", 11, ["DELETE FROM audit_records WHERE seq >= 11",
                           "UPDATE audit_chain SET seq = 10, hash = (SELECT hash FROM audit_records WHERE seq = 10)"]),
        ("head forged", 10, ["UPDATE audit_heads SET signature = replace(signature, substr(signature, 1, 2), "
                             "CASE WHEN substr(signature, 1, 2) = 'aa' THEN 'bb' ELSE 'aa' END) WHERE seq = 10"]),
    ]
    for kind, at, statements in cases:
        copy = os.path.join(os.path.dirname(db), "copy.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(copy + suffix):
                os.remove(copy + suffix)
        shutil.copy(db, copy)
        sql(copy, *statements)
        rc, out, _ = sov_audit("verify", "--db", copy, "--pub", pub_of(db))
        check(rc == 1 and "first bad record %d (%s)" % (at, kind) in out, "%s at %d: %d %s" % (kind, at, rc, out))


# ---- retention ----

def test_retention_hashes_none_full_and_expiry():
    for retention in ("hashes", "none"):
        db = state("ret-" + retention)
        with Server(STORIES, "--db", db, *policy_args(retention=retention)) as s:
            complete(s)
        r = records(db)[0]
        want = sha256("Once upon a time") if retention == "hashes" else ""
        check(r["retention"] == retention and r["prompt_sha256"] == want and
              (r["completion_sha256"] != "") == (retention == "hashes") and r["prompt_text"] is None,
              "retention %s: %r" % (retention, r))
        check(verify(db)[0] == 0, "retention %s verifies" % retention)
    db = state("ret-full")
    t0 = time.time()
    with Server(STORIES, "--db", db, *policy_args(retention="full", retention_days=1)) as s:
        st, _, b = complete(s, n=5)
        text = json.loads(b)["choices"][0]["text"]
        st, _, b = chat_stream(s, content="Tell me a story")
        stext = stream_text(b)[0]
    full = records(db)
    r, c = full
    check(r["prompt_text"] == "Once upon a time" and r["completion_text"] == text, "full: the text kept")
    check(r["prompt_sha256"] == sha256(r["prompt_text"]) and r["completion_sha256"] == sha256(text),
          "full: hashes of the kept text")
    check("<|im_start|>user\nTell me a story" in (c["prompt_text"] or "") and c["completion_text"] == stext and
          c["prompt_sha256"] == sha256(c["prompt_text"]), "full, chat: the rendered template kept and hashed")
    check(abs(r["text_expires"] - (t0 + 86400)) < 60, "expires a day later: %r" % r["text_expires"])
    # later (the server's clock moved by the test hook): it deletes text whose time is up
    try:
        os.environ["SOV_TEST_CLOCK_OFFSET"] = "3600"
        with Server(STORIES, "--db", db):
            pass
        check(records(db)[0]["prompt_text"] == "Once upon a time", "an hour later the text is still there")
        os.environ["SOV_TEST_CLOCK_OFFSET"] = str(86400 + 120)
        with Server(STORIES, "--db", db):
            check(wait_for(lambda: records(db)[0]["prompt_text"] is None, 10), "a day later the text is gone")
    finally:
        del os.environ["SOV_TEST_CLOCK_OFFSET"]
    after = records(db)
    check(all(x["prompt_text"] is None and x["completion_text"] is None and x["text_expires"] is None
              for x in after), "all expired text deleted")
    check(after[0]["prompt_sha256"] == r["prompt_sha256"], "the hashes stay")
    check(verify(db)[0] == 0, "the chain verifies without the text")


# ---- durability ----

def hold_lock(db):
    """Another connection holds the store's write lock (as a long transaction would)."""
    c = sqlite3.connect(db, timeout=30, isolation_level=None)
    c.execute("BEGIN IMMEDIATE")
    return c


def test_personal_data_never_reaches_the_store():
    """The policy's redactor runs on what the audit keeps: with retention full the kept text
    has placeholders and the hashes are of that text; with redact = [] the text is as sent."""
    pii = "Mail kim@example.com or call 010-1234-5678 about card 4111 1111 1111 1111"
    db = state("pii")
    with Server(STORIES, "--db", db, *policy_args(retention="full", retention_days=1)) as s:
        check(complete(s, prompt=pii, n=3)[0] == 200, "a prompt with personal data is answered")
    r = records(db)[0]
    want = "Mail [EMAIL] or call [PHONE] about card [CARD]"
    check(r["prompt_text"] == want and r["prompt_sha256"] == sha256(want),
          "kept text and hash are of the redacted prompt: %r" % r["prompt_text"])
    check(verify(db)[0] == 0, "and the chain verifies")
    db = state("pii-off")
    path = policy_args(retention="full", retention_days=1)[1]
    with open(path, "a") as f:
        f.write("redact = []\n")
    with Server(STORIES, "--db", db, "--policy", path) as s:
        complete(s, prompt=pii, n=3)
    r = records(db)[0]
    check(r["prompt_text"] == pii and r["prompt_sha256"] == sha256(pii), "redact = [] keeps the text as sent")


def test_last_byte_waits_for_the_record():
    db = state("hold")
    with Server(STORIES, "--db", db) as s:
        complete(s)  # the store is created and warm
        lock = hold_lock(db)
        box = {}
        t = threading.Thread(target=lambda: box.update(r=complete(s, n=3)))
        t.start()
        time.sleep(1.5)
        check(t.is_alive(), "the answer waits while its record cannot be committed")
        lock.rollback()
        lock.close()
        t.join(30)
        check(box.get("r", (0,))[0] == 200, "then it is sent")
        check(len(records(db)) == 2, "with its record")
        # the lock held past the busy timeout (5 s): no record, no answer: 503 / no [DONE]
        lock = hold_lock(db)
        t0 = time.time()
        st, _, b = complete(s, n=3)
        check(st == 503 and json.loads(b)["error"]["code"] == "audit_unavailable",
              "a record that cannot be written: 503 audit_unavailable (%d %r)" % (st, b[:200]))
        st, _, b = chat_stream(s)
        ev = stream_text(b)[3]
        check(st == 200 and "[DONE]" not in ev and "audit_unavailable" in ev[-1],
              "a stream whose record cannot be written ends with an error, not [DONE]: %r" % ev[-2:])
        check(time.time() - t0 > 9, "each after the busy timeout")
        lock.rollback()
        lock.close()
        check(complete(s)[0] == 200, "and then the store is back")
    check(verify(db)[0] == 0, "the log verifies")


def load(srv, stop, seen, errors, i):
    """One client: requests until stop, remembering the ids of answers that completed."""
    while not stop.is_set():
        try:
            if i % 2:
                st, _, b = srv.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 6}, timeout=10)
                if st == 200:
                    seen.append(json.loads(b)["id"])
            else:
                st, _, b = chat_stream(srv, n=6)
                ev = stream_text(b)[3]
                if st == 200 and ev and ev[-1] == "[DONE]":
                    seen.append(json.loads(ev[0])["id"])
        except (OSError, EOFError, ValueError, IndexError):
            errors.append(1)  # the server died under it: that answer was not complete


def test_kill_9_under_load():
    db = state("kill")
    seen = []
    for round_ in range(2):
        s = Server(STORIES, "--db", db, "-np", "8")
        stop, errors, threads = threading.Event(), [], []
        for i in range(8):
            threads.append(threading.Thread(target=load, args=(s, stop, seen, errors, i)))
            threads[-1].start()
        time.sleep(2.5)
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        stop.set()
        for t in threads:
            t.join(30)
        s.log.close()
        rc, out, _ = verify(db)
        check(rc == 0, "round %d: after kill -9 the log verifies: %d %s" % (round_, rc, out))
    ids = set(r["response_id"] for r in records(db) if r["status"] == 200)
    missing = [x for x in seen if x not in ids]
    check(len(seen) > 50, "load ran: %d answers completed" % len(seen))
    check(not missing, "every answer a client saw complete has its record: %d of %d missing" %
          (len(missing), len(seen)))
    with Server(STORIES, "--db", db) as s:  # the restarted server signs what it found, and goes on
        complete(s)
    rc, out, _ = verify(db, "--require-signed")
    check(rc == 0, "after a clean restart everything is signed: %s" % out)


def test_tail_and_help():
    db = state("tail")
    with Server(STORIES, "--db", db) as s:
        for i in range(4):
            complete(s)
        rc, out, _ = sov_audit("tail", "--db", db, "-n", "3")
        lines = out.strip().split("\n")
        check(rc == 0 and len(lines) == 3 and lines[0].startswith("#2 ") and "/v1/completions 200" in lines[0],
              "tail -n 3: %r" % out)
        rc, out, _ = sov_audit("tail", "--db", db, "-n", "2", "--json")
        check(rc == 0 and [json.loads(l)["seq"] for l in out.strip().split("\n")] == [3, 4], "tail --json")
        p = subprocess.Popen([os.environ.get("SOV_BIN", "build/sov"), "audit", "tail", "--db", db, "-n", "1",
                              "--follow"], stdout=subprocess.PIPE)
        time.sleep(0.5)
        complete(s)
        got = []
        t = threading.Thread(target=lambda: [got.append(p.stdout.readline()) for _ in range(2)])
        t.start()
        t.join(5)
        p.kill()
        p.wait()
        check(len(got) == 2 and got[1].startswith(b"#5 "), "--follow shows the new record: %r" % got)
    rc, out, _ = sov_audit("--help")
    check(rc == 0 and "verify" in out and "export" in out and "tail" in out, "sov audit --help")
    rc, _, err = sov_audit("verify")
    check(rc == 2 and "--db" in err, "verify without a store: exit 2 saying what to give")


if __name__ == "__main__":
    run_tests([test_records_for_every_kind_of_response, test_no_store_no_audit_and_no_audit_flag,
               test_export_verifies_alone_and_by_a_third_party, test_tampering_in_the_store_is_named,
               test_retention_hashes_none_full_and_expiry, test_personal_data_never_reaches_the_store, test_last_byte_waits_for_the_record,
               test_kill_9_under_load, test_tail_and_help])
    finish()
