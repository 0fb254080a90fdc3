"""A split job whose rank dies or hangs ends, with a clear message, never hangs; and --tp
refuses what it cannot split, in one line.

  - rank 1 killed with SIGKILL while rank 0 generates: mpirun ends the job within seconds,
    exiting non-zero and naming the rank and the signal (rank 0 is ended with it);
  - rank 1 stopped (SIGSTOP: alive but silent) with SOV_TP_TIMEOUT=3: rank 0's all-reduce
    gives up after 3 s with "sov: tp rank 0 of 2: ... no answer from the other ranks", and
    the job exits non-zero;
  - `sov run --tp 2` not started by mpirun: exit 1, the mpirun command line to use;
  - heads or FFN width not divisible by R, a mixture-of-experts model, an encoder: each
    rank says why in one line, the job exits non-zero."""
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


def long_generation(model, tag, extra_env=None):
    env = dict(mpilib.ENV, SOV_TEST_TAG=tag, **(extra_env or {}))
    cmd = mpilib.mpirun(2, tcp=True) + ["-x", "SOV_TEST_TAG", "-x", "SOV_TP_TIMEOUT",
                                        mpilib.SOV, "run", "-m", model, "-p", "Once upon a time",
                                        "-n", "-1", "-c", "4096", "--ignore-eos", "--temp", "0", "-t", "1", "--tp", "2"]
    env.setdefault("SOV_TP_TIMEOUT", "60")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.generated = 0

    def drain():  # counts what rank 0 prints: the prompt, then a token at a time
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):
            proc.generated += len(chunk)
    threading.Thread(target=drain, daemon=True).start()
    return proc


def wait_started(proc, pid, timeout=60):
    """waits until the job generates (every rank loaded, the steps under way)"""
    t_end = time.time() + timeout
    while proc.poll() is None and time.time() < t_end and proc.generated < 40:
        time.sleep(0.05)
    return proc.poll() is None and pid is not None and proc.generated >= 40


def test_killed_rank(model):
    tag = "kill-%d" % os.getpid()
    proc = long_generation(model, tag)
    pid = mpilib.rank_pid(tag, 1)
    if not check(wait_started(proc, pid), "the job started (rank 1 pid %s)" % pid):
        proc.kill()
        return
    t0 = time.time()
    os.kill(pid, signal.SIGKILL)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        check(False, "the job did not end within 30 s of rank 1's death")
        return
    took = time.time() - t0
    err = err.decode(errors="replace")
    print("killed rank 1: job ended in %.2f s, exit %d" % (took, proc.returncode))
    check(proc.returncode != 0, "the job exited 0 after a rank died")
    check("rank 1" in err and ("signal 9" in err or "Killed" in err), "no clear message naming rank 1: %s" % err[-1500:])


def test_silent_rank(model):
    tag = "stop-%d" % os.getpid()
    proc = long_generation(model, tag, {"SOV_TP_TIMEOUT": "3"})
    pid = mpilib.rank_pid(tag, 1)
    if not check(wait_started(proc, pid), "the job started (rank 1 pid %s)" % pid):
        proc.kill()
        return
    t0 = time.time()
    os.kill(pid, signal.SIGSTOP)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        check(False, "the job did not end within 30 s of rank 1 falling silent")
        return
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    took = time.time() - t0
    err = err.decode(errors="replace")
    print("stopped rank 1: job ended in %.2f s, exit %d" % (took, proc.returncode))
    check(proc.returncode != 0, "the job exited 0 with a silent rank")
    check("sov: tp rank 0 of 2:" in err and "no answer from the other ranks for 3 s" in err,
          "rank 0 did not say why: %s" % err[-1500:])
    check(2.5 < took < 20, "rank 0 gave up after %.1f s (timeout 3 s)" % took)


def refused(cmd, n, expect, what):
    r = subprocess.run(mpilib.mpirun(n) + cmd, env=mpilib.ENV, capture_output=True, text=True, timeout=60)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("sov ")]
    check(r.returncode != 0, "%s: exit 0" % what)
    check(any(expect in ln for ln in lines), "%s: no line with %r in %s" % (what, expect, r.stderr[-1500:]))


def test_refusals(model):
    r = subprocess.run([mpilib.SOV, "run", "-m", model, "-n", "4", "--tp", "2"], env=mpilib.ENV,
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 1, "--tp without mpirun: exit %d" % r.returncode)
    check("mpirun -np 2 sov run -m %s -n 4 --tp 2" % model in r.stderr,
          "--tp without mpirun does not give the command: %s" % r.stderr)
    refused([mpilib.SOV, "run", "-m", model, "-n", "4", "--tp", "3"], 3, "cannot be split evenly across 3 ranks",
            "4 KV heads over 3 ranks")
    refused([mpilib.SOV, "run", "-m", model, "-n", "4", "--tp", "2"], 3, "mpirun started 3 processes",
            "--tp 2 under -np 3")
    moe = mpilib.synthetic_model("tp-moe.gguf", "--arch", "qwen3moe", "--dim", "64", "--heads", "4",
                                 "--kv-heads", "2", "--layers", "2")
    refused([mpilib.SOV, "run", "-m", moe, "-n", "4", "--tp", "2"], 2, "mixture-of-experts", "MoE model")
    bert = mpilib.synthetic_model("tp-bert.gguf", "--arch", "bert", "--dim", "64", "--heads", "4", "--layers", "2")
    refused([mpilib.SOV, "bench", "-m", bert, "-p", "8", "-n", "0", "-r", "1", "--no-bandwidth", "--tp", "2"], 2,
            "encoder", "encoder model")


def main():
    # its own file: test_tp_greedy writes tp-gqa-q8.gguf with a vocabulary (the one made
    # first would otherwise decide what both tests read)
    model = mpilib.synthetic_model("tp-fail-gqa-q8.gguf", "--dim", "256", "--heads", "8", "--kv-heads", "4", "--ffn",
                                   "512", "--layers", "4", "--type", "Q8_0")
    for t in (test_killed_rank, test_silent_rank, test_refusals):
        t0 = time.time()
        before = len(fails)
        t(model)
        print("%s %s (%.1f s)" % ("ok  " if len(fails) == before else "FAIL", t.__name__, time.time() - t0))
    print("%d failed" % len(fails))
    sys.exit(1 if fails else 0)


main()
