"""An expert-parallel job (--ep R) refuses what it cannot split in one line, and ends with a
clear error, never a hang, when a rank dies or falls silent.

  - a dense model: every rank says "--ep needs a mixture-of-experts model ...; use --tp";
  - experts not divisible by R (8 experts, --ep 3): the line names 8 and 3;
  - an encoder with experts (nomic-bert-moe): refused as an encoder;
  - rank 1 killed with SIGKILL while rank 0 generates: mpirun ends the job within seconds,
    exiting non-zero and naming rank 1 and the signal;
  - rank 1 stopped (SIGSTOP: alive but silent) with SOV_TP_TIMEOUT=3: rank 0 gives up in its
    next exchange (the expert outputs' all-to-all, or the command that precedes it) after
    3 s with "sov: tp rank 0 of 2: ... no answer from the other ranks", non-zero exit."""
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


def refused(cmd, n, expect, what):
    r = subprocess.run(mpilib.mpirun(n) + cmd, env=mpilib.ENV, capture_output=True, text=True, timeout=60)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("sov ")]
    check(r.returncode != 0, "%s: exit 0" % what)
    check(any(expect in ln for ln in lines), "%s: no line with %r in %s" % (what, expect, r.stderr[-1500:]))
    if lines:
        print("%s: %s" % (what, lines[0]))


def test_refusals(moe):
    dense = mpilib.synthetic_model("ep-dense.gguf", "--dim", "64", "--heads", "4", "--kv-heads", "2", "--layers", "2")
    refused([mpilib.SOV, "run", "-m", dense, "-n", "4", "--ep", "2"], 2,
            "--ep needs a mixture-of-experts model", "dense model")
    refused([mpilib.SOV, "run", "-m", moe, "-n", "4", "--ep", "3"], 3,
            "the 8 experts of each layer cannot be split evenly across 3 ranks", "8 experts over 3 ranks")
    bert = mpilib.synthetic_model("ep-bert-moe.gguf", "--arch", "nomic-bert-moe", "--dim", "64", "--heads", "4",
                                  "--layers", "2")
    refused([mpilib.SOV, "bench", "-m", bert, "-p", "8", "-n", "0", "-r", "1", "--no-bandwidth", "--ep", "2"], 2,
            "encoder", "encoder with experts")


def long_generation(model, tag, timeout_s):
    env = dict(mpilib.ENV, SOV_TEST_TAG=tag, SOV_TP_TIMEOUT=timeout_s)
    cmd = mpilib.mpirun(2, tcp=True) + ["-x", "SOV_TEST_TAG", "-x", "SOV_TP_TIMEOUT",
                                        mpilib.SOV, "run", "-m", model, "-p", "Once upon a time",
                                        "-n", "-1", "-c", "4096", "--ignore-eos", "--temp", "0", "-t", "1",
                                        "--ep", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.generated = 0

    def drain():  # counts what rank 0 prints: the prompt, then a token at a time
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):
            proc.generated += len(chunk)
    threading.Thread(target=drain, daemon=True).start()
    pid = mpilib.rank_pid(tag, 1)
    t_end = time.time() + 60
    while proc.poll() is None and time.time() < t_end and proc.generated < 40:
        time.sleep(0.05)
    started = proc.poll() is None and pid is not None and proc.generated >= 40
    if not check(started, "the job started (rank 1 pid %s)" % pid):
        proc.kill()
        proc.wait()
        return None, None
    return proc, pid


def ended(proc, sig, what):
    t0 = time.time()
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        check(False, "the job did not end within 30 s of rank 1 being %s" % what)
        return None, None
    took = time.time() - t0
    print("rank 1 %s: job ended in %.2f s, exit %d" % (what, took, proc.returncode))
    check(proc.returncode != 0, "the job exited 0 after rank 1 was %s" % what)
    return took, err.decode(errors="replace")


def test_killed_rank(model):
    proc, pid = long_generation(model, "ep-kill-%d" % os.getpid(), "60")
    if not proc:
        return
    os.kill(pid, signal.SIGKILL)
    _, err = ended(proc, signal.SIGKILL, "killed")
    if err is not None:
        check("rank 1" in err and ("signal 9" in err or "Killed" in err), "no clear message naming rank 1: %s"
              % err[-1500:])


def test_silent_rank(model):
    proc, pid = long_generation(model, "ep-stop-%d" % os.getpid(), "3")
    if not proc:
        return
    os.kill(pid, signal.SIGSTOP)
    try:
        took, err = ended(proc, signal.SIGSTOP, "stopped")
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if err is not None:
        check("sov: tp rank 0 of 2:" in err and "no answer from the other ranks for 3 s" in err,
              "rank 0 did not say why: %s" % err[-1500:])
        check(2.5 < took < 20, "rank 0 gave up after %.1f s (timeout 3 s)" % took)


def main():
    vocab = mpilib.vocab_source()
    vf = ["--vocab-from", vocab] if vocab else []
    moe = mpilib.synthetic_model("ep-qwen3moe.gguf", "--arch", "qwen3moe", "--dim", "128", "--heads", "4",
                                 "--kv-heads", "2", "--layers", "3", "--experts", "8", "--experts-used", "2", *vf)
    for t in (test_refusals, test_killed_rank, test_silent_rank):
        t0 = time.time()
        before = len(fails)
        t(moe)
        print("%s %s (%.1f s)" % ("ok  " if len(fails) == before else "FAIL", t.__name__, time.time() - t0))
    print("%d failed" % len(fails))
    sys.exit(1 if fails else 0)


main()
