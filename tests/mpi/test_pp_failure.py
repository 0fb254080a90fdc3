"""A pipeline (--pp) whose stage dies or hangs ends with a clear message, never hangs.

  - the last stage (rank 1 of 2) killed with SIGKILL while rank 0 generates: mpirun ends
    the job within seconds, exiting non-zero and naming the rank and the signal;
  - the middle stage (rank 1 of 3) stopped (SIGSTOP: alive but silent) with
    SOV_TP_TIMEOUT=3: the stages waiting for it (rank 2 for hidden states, rank 0 for the
    last stage's outputs or its next command) give up after 3 s with "sov: tp rank R of 3:
    ... no answer from the other ranks", and the job exits non-zero;
  - `sov run --pp 2` not started by mpirun: exit 1, the mpirun command line to use."""
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpilib  # noqa: E402

fails = []


def check(cond, what):
    if not cond:
        fails.append(what)
        print("  CHECK failed: " + what)
    return cond


def long_generation(model, n, tag, timeout_s):
    env = dict(mpilib.ENV, SOV_TEST_TAG=tag, SOV_TP_TIMEOUT=str(timeout_s))
    cmd = mpilib.mpirun(n, tcp=True) + ["-x", "SOV_TEST_TAG", "-x", "SOV_TP_TIMEOUT",
                                        mpilib.SOV, "run", "-m", model, "-p", "Once upon a time",
                                        "-n", "-1", "-c", "4096", "--ignore-eos", "--temp", "0", "-t", "1",
                                        "--pp", str(n)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.generated = 0

    def drain():  # counts what rank 0 prints: the prompt, then a token at a time
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):
            proc.generated += len(chunk)
    threading.Thread(target=drain, daemon=True).start()
    return proc


def wait_started(proc, pid, timeout=60):
    t_end = time.time() + timeout
    while proc.poll() is None and time.time() < t_end and proc.generated < 40:
        time.sleep(0.05)
    return proc.poll() is None and pid is not None and proc.generated >= 40


def ended(proc, pid, sig, what):
    """sends sig to pid; the job's stderr and seconds to its end, or None when it hangs"""
    t0 = time.time()
    os.kill(pid, sig)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        check(False, "the job did not end within 30 s of %s" % what)
        return None, None
    finally:
        if sig == signal.SIGSTOP:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    took = time.time() - t0
    print("%s: job ended in %.2f s, exit %d" % (what, took, proc.returncode))
    check(proc.returncode != 0, "the job exited 0 after %s" % what)
    return err.decode(errors="replace"), took


def test_killed_last_stage(model):
    tag = "ppkill-%d" % os.getpid()
    proc = long_generation(model, 2, tag, 60)
    pid = mpilib.rank_pid(tag, 1)
    if not check(wait_started(proc, pid), "the job started (rank 1 pid %s)" % pid):
        proc.kill()
        return
    err, _ = ended(proc, pid, signal.SIGKILL, "the last stage's death")
    if err is not None:
        check("rank 1" in err and ("signal 9" in err or "Killed" in err),
              "no clear message naming rank 1: %s" % err[-1500:])


def test_silent_middle_stage(model):
    tag = "ppstop-%d" % os.getpid()
    proc = long_generation(model, 3, tag, 3)
    pid = mpilib.rank_pid(tag, 1)
    if not check(wait_started(proc, pid), "the job started (rank 1 pid %s)" % pid):
        proc.kill()
        return
    err, took = ended(proc, pid, signal.SIGSTOP, "the middle stage falling silent")
    if err is None:
        return
    lines = [ln for ln in err.splitlines() if ln.startswith("sov: tp rank ")]
    print("\n".join(lines))
    check(any("of 3:" in ln and "no answer from the other ranks for 3 s" in ln for ln in lines),
          "no rank said why: %s" % err[-1500:])
    check(2.5 < took < 20, "the job gave up after %.1f s (timeout 3 s)" % took)


def test_without_mpirun(model):
    r = subprocess.run([mpilib.SOV, "run", "-m", model, "-n", "4", "--pp", "2"], env=mpilib.ENV,
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 1, "--pp without mpirun: exit %d" % r.returncode)
    check("mpirun -np 2 sov run -m %s -n 4 --pp 2" % model in r.stderr,
          "--pp without mpirun does not give the command: %s" % r.stderr)


def main():
    vocab = mpilib.vocab_source()
    model = mpilib.synthetic_model("pp-gqa-q8.gguf", "--dim", "256", "--heads", "8", "--kv-heads", "4", "--ffn",
                                   "512", "--layers", "4", "--type", "Q8_0", *(["--vocab-from", vocab] if vocab else []))
    for t in (test_killed_last_stage, test_silent_middle_stage, test_without_mpirun):
        t0 = time.time()
        before = len(fails)
        t(model)
        print("%s %s (%.1f s)" % ("ok  " if len(fails) == before else "FAIL", t.__name__, time.time() - t0))
    print("%d failed" % len(fails))
    sys.exit(1 if fails else 0)


main()
