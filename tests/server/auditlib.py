"""auditlib.py - helpers for the audit log tests: `sov audit`, reading the records a server
wrote, and a third party's verifier of an export written from docs/AUDIT.md alone (Python's
hashlib for the chain, the `openssl` command for the Ed25519 head signatures), which checks
that the documented format is the one sov writes. Not a test itself (no test_ prefix)."""
import hashlib
import json
import os
import sqlite3
import struct
import subprocess
import tempfile

from serverlib import SOV_BIN, TMP


def sov_audit(*args, check_rc=None):
    """`sov audit ARGS`: (exit status, stdout, stderr)."""
    r = subprocess.run([SOV_BIN, "audit"] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    out, err = r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
    if check_rc is not None and r.returncode != check_rc:
        raise RuntimeError("sov audit %s: exit %d, want %d: %s%s" % (" ".join(map(str, args)), r.returncode, check_rc,
                                                                     out, err))
    return r.returncode, out, err


COLUMNS = ("seq, time_ms, node, tenant, key_id, model, model_sha256, endpoint, status, prompt_tokens, "
           "completion_tokens, cached_tokens, latency_ms, finish_reason, client, response_id, region, retention, "
           "prompt_sha256, completion_sha256, prompt_text, completion_text, text_expires, version, energy_uj, "
           "energy_source")


def records(db):
    """Every record of a SQLite store, as dicts, in chain order."""
    c = sqlite3.connect(db, timeout=30)
    try:
        rows = c.execute("SELECT %s FROM audit_records ORDER BY seq" % COLUMNS).fetchall()
    finally:
        c.close()
    names = [n.strip() for n in COLUMNS.split(",")]
    return [dict(zip(names, r)) for r in rows]


def sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---- a third party's verifier (docs/AUDIT.md) ----

def _i64(v):
    return struct.pack(">q", v)


def _s(v):
    b = v.encode("utf-8")
    return struct.pack(">I", len(b)) + b


FIELDS = [("time_ms", _i64), ("node", _s), ("tenant", _s), ("key_id", _i64), ("model", _s), ("model_sha256", _s),
          ("model_signer", _s), ("endpoint", _s), ("status", _i64), ("prompt_tokens", _i64),
          ("completion_tokens", _i64), ("cached_tokens", _i64), ("latency_ms", _i64), ("finish_reason", _s),
          ("client", _s), ("response_id", _s), ("region", _s), ("retention", _s), ("prompt_sha256", _s),
          ("completion_sha256", _s)]


FIELDS_V2 = FIELDS + [("energy_uj", _i64), ("energy_source", _s)]  # version 2: the request's energy


def digest(rec):
    if rec.get("v", 1) >= 2:
        enc = b"sov-audit-record-v2\n" + b"".join(f(rec[k]) for k, f in FIELDS_V2)
    else:
        enc = b"sov-audit-record-v1\n" + b"".join(f(rec[k]) for k, f in FIELDS)
    return hashlib.sha256(enc).digest()


def link_hash(prev, d):
    return hashlib.sha256(b"sov-audit-link-v1\n" + prev + d).digest()


def head_message(h):
    return (b"sov-audit-head-v1\n" + _i64(h["seq"]) + bytes.fromhex(h["hash"]) + _i64(h["time_ms"]) +
            _s(h["key_id"]))


def openssl_verify(pub_pem_path, message, signature):
    """Ed25519 with the openssl command alone (pkeyutl -rawin: no pre-hash)."""
    with tempfile.TemporaryDirectory(dir=TMP) as d:
        m, s = os.path.join(d, "msg"), os.path.join(d, "sig")
        open(m, "wb").write(message)
        open(s, "wb").write(signature)
        r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub_pem_path, "-rawin", "-in", m,
                            "-sigfile", s], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return r.returncode == 0


def third_party_verify(export_path, pub_pem_path):
    """Verifies an export from the documented format alone. Returns (ok, message, records):
    every record's hash recomputed from its fields and its prev, every link's from its prev and
    digest, each link's prev equal to the hash before it, kept text equal to its hash, and every
    head signed by the key and equal to the chain's hash at its number."""
    lines = [json.loads(l) for l in open(export_path, encoding="utf-8") if l.strip()]
    if not lines or lines[0].get("type") != "header" or lines[0].get("format") != "sov-audit-export":
        return False, "no header", 0
    chain = [l for l in lines if l["type"] in ("record", "link")]
    heads = [l for l in lines if l["type"] == "head"]
    at = {}
    prev = bytes.fromhex(chain[0]["prev"]) if chain else bytes(32)
    if lines[0]["first_seq"] == 1 and prev != bytes(32):
        return False, "record 1 does not start from zeros", 0
    for l in chain:
        if bytes.fromhex(l["prev"]) != prev:
            return False, "record %d does not link to the one before" % l["seq"], 0
        d = digest(l) if l["type"] == "record" else bytes.fromhex(l["digest"])
        h = link_hash(prev, d)
        if h.hex() != l["hash"]:
            return False, "record %d does not hash to its hash" % l["seq"], 0
        for field, text in (("prompt_sha256", l.get("prompt")), ("completion_sha256", l.get("completion"))):
            if text is not None and sha256(text) != l[field]:
                return False, "record %d: kept text does not match %s" % (l["seq"], field), 0
        at[l["seq"]] = h
        prev = h
    for h in heads:
        if not openssl_verify(pub_pem_path, head_message(h), bytes.fromhex(h["signature"])):
            return False, "head at %d: bad signature" % h["seq"], 0
        if h["seq"] not in at or at[h["seq"]].hex() != h["hash"]:
            return False, "head at %d does not match the chain" % h["seq"], 0
    return True, "ok", len(chain)


def policy_args(**kv):
    """["--policy", FILE] for a data policy file with these keys (strings quoted)."""
    os.makedirs(TMP, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="policy-%d-" % os.getpid(), suffix=".toml", dir=TMP)
    with os.fdopen(fd, "w") as f:
        for k, v in kv.items():
            f.write("%s = %s\n" % (k, json.dumps(v) if isinstance(v, str) else str(v).lower()))
    return ["--policy", path]
