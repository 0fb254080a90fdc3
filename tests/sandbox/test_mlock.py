"""test_mlock.py - `sov serve --mlock` keeps weights, KV cache and activations in RAM: with a
big enough RLIMIT_MEMLOCK (or CAP_IPC_LOCK) the server shows locked memory (VmLck in
/proc/PID/status) and serves; with the limit lowered by prlimit (and, when the test runs as
root, CAP_IPC_LOCK dropped with setpriv, since root's capability overrides the limit) it
refuses to start in a second with one line naming RLIMIT_MEMLOCK, the size it needs and
how to raise it."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
from serverlib import SOV_BIN, Server, check, finish, run_tests, shared_model

STORIES = shared_model("stories260K.gguf")
SMALL = ["-np", "1", "--ctx", "256"]  # a few MB to lock: under the usual 8 MB default limit


def has_ipc_lock():
    for line in open("/proc/self/status"):
        if line.startswith("CapEff:"):
            return (int(line.split()[1], 16) >> 14) & 1 == 1
    return False


def vm_locked_kb(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmLck:"):
            return int(line.split()[1])
    return -1


def test_mlock_locks_and_serves():
    with Server(STORIES, "--mlock", *SMALL) as s:
        locked = vm_locked_kb(s.proc.pid)
        check(locked > 1024, "VmLck shows the locked regions (%d kB)" % locked)
        st, _, _ = s.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 4})
        check(st == 200, "serves with locked memory")
    with Server(STORIES, *SMALL) as s:
        check(vm_locked_kb(s.proc.pid) == 0, "without --mlock nothing is locked")


def test_mlock_below_the_limit_is_one_clear_line():
    cmd = ["prlimit", "--memlock=65536:65536"]
    if has_ipc_lock():
        cmd += ["setpriv", "--bounding-set=-ipc_lock"]  # root's CAP_IPC_LOCK ignores the limit
    cmd += [SOV_BIN, "serve", "-m", STORIES, "--port", "0", "--mlock"] + SMALL
    t0 = time.time()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    err = r.stderr.decode("utf-8", "replace").strip().split("\n")
    last = err[-1] if err else ""
    check(r.returncode == 1, "refused (rc %d): %r" % (r.returncode, err[-3:]))
    check(time.time() - t0 < 15, "quickly (%.1f s)" % (time.time() - t0))
    check("RLIMIT_MEMLOCK is 64 KB" in last and "--mlock needs" in last and "ulimit -l" in last
          and "LimitMEMLOCK" in last, "one line naming the limit, the need and the fix: %r" % last)
    check(b"listening" not in r.stdout, "never listened")


def main():
    run_tests([test_mlock_locks_and_serves, test_mlock_below_the_limit_is_one_clear_line])
    finish()


if __name__ == "__main__":
    main()
