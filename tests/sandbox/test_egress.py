"""test_egress.py - the lockdown on a real `sov serve` process (docs/SANDBOX.md): by default
/proc/PID/status shows the seccomp filter (Seccomp: 2) and no_new_privs on every thread,
/ready and /metrics say egress is locked and which Landlock ABI is in force, the start-up
log says what remains allowed, and serving (plain and streamed, with a SQLite store whose
keys change while it runs) works under it; with --allow-egress the server says loudly that
egress is allowed, in the log, /ready and /metrics (sov_egress_locked 0). The attempt to
connect out from inside a serving process is in test_sandbox.c (a thread of the real
server machinery); here the process is the shipped binary."""
import ctypes
import glob
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
from serverlib import (TMP, Server, bearer, check, create_key, finish, run_tests, shared_model, stream_text,
                       wait_for)

STORIES = shared_model("stories260K.gguf")


def landlock_abi():
    """The kernel's Landlock ABI (0: none), as sov asks for it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    nr = {"x86_64": 444, "aarch64": 444}.get(os.uname().machine, -1)
    if nr < 0:
        return 0
    abi = libc.syscall(ctypes.c_long(nr), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return abi if abi > 0 else 0


def status_of(path):
    out = {}
    for line in open(path):
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def complete(s, key=None, **kw):
    body = {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}
    body.update(kw)
    return s.post("/v1/completions", body, headers=bearer(key) if key else None)


def test_locked_by_default():
    abi = landlock_abi()
    with Server(STORIES) as s:
        pid = s.proc.pid
        st = status_of("/proc/%d/status" % pid)
        check(st.get("Seccomp") == "2", "Seccomp: 2 in /proc/PID/status (%r)" % st.get("Seccomp"))
        check(st.get("NoNewPrivs") == "1", "NoNewPrivs: 1 (%r)" % st.get("NoNewPrivs"))
        tasks = glob.glob("/proc/%d/task/*/status" % pid)
        check(len(tasks) >= 3, "the server has its threads (%d)" % len(tasks))
        for t in tasks:
            ts = status_of(t)
            check(ts.get("Seccomp") == "2" and ts.get("NoNewPrivs") == "1",
                  "thread %s is under the filter: %r" % (t.split("/")[4], (ts.get("Seccomp"), ts.get("NoNewPrivs"))))
        code, ready = s.json("/ready")
        check(code == 200 and ready.get("status") == "ready" and ready.get("egress_locked") is True,
              "/ready says egress is locked: %r" % ready)
        want = ("seccomp+landlock(net,fs) ABI %d" % abi if abi >= 4 else
                "seccomp+landlock(fs) ABI %d" % abi if abi > 0 else "seccomp only")
        check(ready.get("sandbox") == want, "/ready names what is in force: %r (want %r)" % (ready.get("sandbox"), want))
        m = s.metrics()
        check(m.get("sov_egress_locked") == 1 and m.get("sov_sandbox_seccomp") == 1, "/metrics: locked")
        check(m.get("sov_sandbox_landlock_abi") == abi and m.get("sov_sandbox_landlock_net") == (1 if abi >= 4 else 0)
              and m.get("sov_sandbox_landlock_fs") == (1 if abi > 0 else 0), "/metrics: Landlock %d" % abi)
        st_, _, b = complete(s)
        check(st_ == 200 and json.loads(b)["usage"]["completion_tokens"] == 8, "serving works under the lockdown")
        st_, _, b = complete(s, stream=True)
        text, finish_reason, _, _ = stream_text(b)
        check(st_ == 200 and finish_reason == "length" and text, "streaming works under the lockdown")
    log = s.output()
    check("sov serve: sandbox: %s: no new sockets" % want in log, "start-up says what is in force:\n" + log[-800:])
    check(s.proc.returncode == 0, "clean exit (%r)" % s.proc.returncode)


def test_allow_egress_says_so_loudly():
    with Server(STORIES, "--allow-egress") as s:
        code, ready = s.json("/ready")
        check(code == 200 and ready.get("egress_locked") is False and ready.get("sandbox", "").startswith(
            "egress ALLOWED"), "/ready says egress is allowed: %r" % ready)
        m = s.metrics()
        check(m.get("sov_egress_locked") == 0, "/metrics: sov_egress_locked 0")
        st = status_of("/proc/%d/status" % s.proc.pid)
        check(st.get("Seccomp") == "2", "the rest of the filter stays (Seccomp %r)" % st.get("Seccomp"))
        check(complete(s)[0] == 200, "serving works")
    check("WARNING: EGRESS IS ALLOWED (--allow-egress)" in s.output(), "start-up warns:\n" + s.output()[-600:])


def test_sqlite_store_and_state_folder_under_the_lockdown():
    d = os.path.join(TMP, "egress-state-%d" % os.getpid())
    os.makedirs(d, exist_ok=True)
    db = os.path.join(d, "state.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    key, _ = create_key(db, "acme", "--rpm", "1000")
    with Server(STORIES, "--db", db) as s:
        check("write only %s" % d in s.output(), "the store's folder is the state folder:\n" + s.output()[-600:])
        check(complete(s, key)[0] == 200, "a key with limits (a store transaction per request) works")
        other, _ = create_key(db, "beta")  # written by another process while the server runs
        check(wait_for(lambda: complete(s, other)[0] == 200, 5), "a key created while serving works")
    check(s.proc.returncode == 0, "clean exit (%r)" % s.proc.returncode)


def main():
    run_tests([test_locked_by_default, test_allow_egress_says_so_loudly,
               test_sqlite_store_and_state_folder_under_the_lockdown])
    finish()


if __name__ == "__main__":
    main()
