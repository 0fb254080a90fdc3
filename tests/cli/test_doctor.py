"""test_doctor.py - `sov doctor` on this machine: --json parses, has every check with a status,
and the exit status is the worst line's (0 OK, 1 WARN, 2 FAIL), the same in text; an audit
key others may read is a FAIL naming chmod; a port something listens on is a FAIL; a fresh
SQLite store is reachable at the current schema version and a file that is not a database
FAILs; -m gives bytes per token and the model's signature state; a fake powercap tree
(SOV_POWERCAP_ROOT) makes the power line OK, no tree a WARN; bad options exit 2 with one line."""
import json
import os
import shutil
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
from serverlib import SOV_BIN, TMP, check, finish, run_tests, shared_model  # noqa: E402

STORIES = shared_model("stories260K.gguf")
LEVEL = {"OK": 0, "WARN": 1, "FAIL": 2}
CHECKS = {"cpu", "bandwidth", "model", "hugepages", "memlock", "seccomp", "landlock", "power", "state-dir",
          "audit-key", "database", "port"}


def folder(name):
    d = os.path.join(TMP, "doctor-%d-%s" % (os.getpid(), name))
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d, mode=0o700)
    os.chmod(d, 0o700)
    return d


NO_POWERCAP = folder("no-powercap")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def doctor(*args, env=None):
    e = dict(os.environ)
    e.setdefault("SOV_POWERCAP_ROOT", NO_POWERCAP)
    e.pop("SOV_DB", None)
    e.update(env or {})
    base = ["--no-bandwidth", "--port", str(free_port())]
    r = subprocess.run([SOV_BIN, "doctor"] + base + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120, env=e)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def doctor_json(*args, env=None):
    rc, out, err = doctor("--json", *args, env=env)
    try:
        j = json.loads(out)
    except ValueError:
        check(False, "not JSON (%d): %r %r" % (rc, out[:200], err[:200]))
        return rc, None
    return rc, j


def line(j, name):
    for c in j["checks"]:
        if c["check"] == name:
            return c
    check(False, "no %s line in %r" % (name, [c["check"] for c in j["checks"]]))
    return {"status": "?", "detail": "", "fix": ""}


def test_json_parses_and_exit_is_the_worst_line():
    d = folder("plain")
    rc, j = doctor_json("--state-dir", d)
    if not j:
        return
    names = {c["check"] for c in j["checks"]}
    check(CHECKS <= names, "checks missing: %r" % (CHECKS - names))
    for c in j["checks"]:
        check(c["status"] in LEVEL, "status %r" % c)
        check(bool(c["detail"]), "a line says what it found: %r" % c)
        check((c["status"] == "OK") == (c["fix"] == ""), "WARN/FAIL lines say what to do, OK lines do not: %r" % c)
    want = max(LEVEL[c["status"]] for c in j["checks"])
    check(rc == want and j["exit"] == want and LEVEL[j["status"]] == want, "exit %d, json %r, worst %d" %
          (rc, j["exit"], want))
    # no --db and no readable counters: both are warnings, never failures
    check(line(j, "database")["status"] == "WARN", "no database is a warning")
    check(line(j, "power")["status"] == "WARN" and "estimated" in line(j, "power")["detail"], "power line")
    # the text form: one line per check, same exit status
    rc2, out, _ = doctor("--state-dir", d)
    lines = out.strip().splitlines()
    check(len(lines) == len(j["checks"]), "%d text lines for %d checks" % (len(lines), len(j["checks"])))
    check(all(ln.split()[0] in LEVEL for ln in lines), "each line starts with OK/WARN/FAIL: %r" % lines)
    check(rc2 == max(LEVEL[ln.split()[0]] for ln in lines), "text exit %d" % rc2)


def test_readable_key_file_fails():
    d = folder("badkey")
    key = os.path.join(d, "audit-ed25519.pem")
    with open(key, "w") as f:
        f.write("-----BEGIN PRIVATE KEY-----\n")
    os.chmod(key, 0o644)
    rc, j = doctor_json("--state-dir", d)
    if not j:
        return
    k = line(j, "audit-key")
    check(k["status"] == "FAIL" and "644" in k["detail"] and "chmod 600" in k["fix"], "key line %r" % k)
    check(rc == 2, "exit %d" % rc)
    os.chmod(key, 0o600)
    rc, j = doctor_json("--state-dir", d)
    check(j and line(j, "audit-key")["status"] == "OK", "0600 key is OK")
    # a state folder others may write is a warning
    os.chmod(d, 0o777)
    rc, j = doctor_json("--state-dir", d)
    os.chmod(d, 0o700)
    check(j and line(j, "state-dir")["status"] == "WARN" and "chmod 700" in line(j, "state-dir")["fix"],
          "world-writable state dir")


def test_busy_port_fails():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        rc, j = doctor_json("--state-dir", folder("port"), "--port", port)
    finally:
        s.close()
    if not j:
        return
    p = line(j, "port")
    check(p["status"] == "FAIL" and ("%d is in use" % port) in p["detail"], "port line %r" % p)
    check(rc == 2, "exit %d" % rc)


def test_database_reachable_with_its_schema_version():
    d = folder("db")
    db = os.path.join(d, "state.db")
    r = subprocess.run([SOV_BIN, "keys", "create", "--db", db, "--tenant", "acme"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    check(r.returncode == 0, "sov keys create: %r" % r.stderr)
    os.chmod(db, 0o600)
    rc, j = doctor_json("--db", db)
    if j:
        c = line(j, "database")
        check(c["status"] == "OK" and "schema version" in c["detail"] and "current" in c["detail"], "db %r" % c)
        check(line(j, "database-file")["status"] == "OK", "0600 db file")
    os.chmod(db, 0o644)
    rc, j = doctor_json("--db", db)
    check(j and line(j, "database-file")["status"] == "WARN", "a world-readable database file is a warning")
    bad = os.path.join(d, "not-a-db")
    with open(bad, "w") as f:
        f.write("hello, this is not SQLite\n" * 100)
    os.chmod(bad, 0o600)
    rc, j = doctor_json("--db", bad, "--state-dir", d)
    if j:
        check(line(j, "database")["status"] == "FAIL", "not a database: %r" % line(j, "database"))
        check(rc == 2, "exit %d" % rc)


def test_model_and_power_counters():
    root = folder("powercap")
    z = os.path.join(root, "intel-rapl:0")
    os.makedirs(z)
    for name, v in (("name", "package-0"), ("energy_uj", "12345"), ("max_energy_range_uj", "262143328850")):
        with open(os.path.join(z, name), "w") as f:
            f.write(v + "\n")
    rc, j = doctor_json("-m", STORIES, "--state-dir", folder("model"), env={"SOV_POWERCAP_ROOT": root})
    if not j:
        return
    m = line(j, "model")
    check(m["status"] == "OK" and "MB read per token" in m["detail"], "model %r" % m)
    check(line(j, "signature")["status"] == "WARN", "an unsigned model is a warning")
    p = line(j, "power")
    check(p["status"] == "OK" and "package-0" in p["detail"], "power %r" % p)
    rc, j = doctor_json("-m", os.path.join(root, "missing.gguf"))
    check(j and line(j, "model")["status"] == "FAIL" and rc == 2, "a missing model fails")


def test_bad_options_exit_2():
    for args in (["--bogus"], ["--port", "99999"], ["--port"]):
        r = subprocess.run([SOV_BIN, "doctor"] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        err = r.stderr.decode().strip()
        check(r.returncode == 2 and len(err.splitlines()) == 1 and "--" in err, "%r: %d %r" %
              (args, r.returncode, err))
    r = subprocess.run([SOV_BIN, "doctor", "--help"], stdout=subprocess.PIPE, timeout=30)
    check(r.returncode == 0 and b"usage: sov doctor" in r.stdout, "--help")


run_tests([test_json_parses_and_exit_is_the_worst_line, test_readable_key_file_fails, test_busy_port_fails,
           test_database_reachable_with_its_schema_version, test_model_and_power_counters, test_bad_options_exit_2])
finish()
