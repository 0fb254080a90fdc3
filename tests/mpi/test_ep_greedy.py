"""Expert parallelism (--ep R under mpirun, docs/TP.md) computes bitwise what one process computes.

tools/tp_logits runs its fixed script of context calls (a 40-token prompt in one batch, greedy
steps, a second sequence attaching the first's KV blocks and decoding in one batch with it,
truncation, a block retained and released, a second context), whole and with the routed
experts split over R = 2 and 4 ranks, on synthetic qwen3moe, qwen2moe (shared expert with a
sigmoid gate), deepseek2 (MLA, grouped sigmoid routing with a selection bias, a shared
expert, a leading dense layer; and A.X K1's post-norm) and Mixtral-shaped (llama with
experts) models, F32 and quantized (Q8_0, Q4_0: repacked planar weights), one thread per
rank and three. Rules:
  - every logit is bitwise equal to the single process's (and so every greedy token), with
    both exchanges (forced with SOV_TP_GATHER_BYTES): each expert multiplies the same sorted
    rows as in one process, and each token's k outputs are added in the token's own choice
    order, as moe.c does, by its owner rank (owner combine) or by every rank once all pair
    outputs are gathered (gather); a changed summation order alone moves the logits by
    ~4e-5: this comparison sees it;
  - `sov run --temp 0` prints the same text with --ep 2 and --ep 4 as one process;
  - `sov serve --ep 2` answers greedy requests, alone and three at once (several sequences
    in one batch, so the routed pairs of a step belong to several sequences and owners), and
    a prefix-cache hit, with the single process's text;
  - `sov bench --ep 2` runs and says it is expert-parallel, with fewer MB of weights per
    token on rank 0 than one process (its share of the experts).
R = 2 runs use TCP only (btl tcp,self), R = 4 the default transports."""
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
import mpilib  # noqa: E402
import serverlib  # noqa: E402

TOOL = os.path.join(mpilib.TOOLS, "tp_logits")
fails = []


def check(cond, what):
    if not cond:
        fails.append(what)
        print("  CHECK failed: " + what)
    return cond


def logits(model, n, tag, extra=(), gather=None):
    out = os.path.join(mpilib.TMP, "ep-%d-%s-%d.bin" % (os.getpid(), tag, n))
    cmd = ([] if n == 1 else mpilib.mpirun(n, tcp=(n == 2))) + [TOOL, model, "--out", out] + list(extra)
    if n > 1:
        cmd += ["--ep", str(n)]
    env = dict(mpilib.ENV)
    if gather is not None:
        env["SOV_TP_GATHER_BYTES"] = gather
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    if not check(r.returncode == 0, "%s ep %d exit %d: %s" % (tag, n, r.returncode, r.stderr[-2000:])):
        return None, None
    a = np.fromfile(out, np.float32)
    os.unlink(out)
    return r.stdout.split(), a


# SOV_TP_GATHER_BYTES: "0" makes every exchange the owner's combine (alltoallv + allgatherv);
# a huge value makes every one the gather of all pair outputs (one allgatherv)
OWNER, GATHER = "0", str(1 << 40)


def compare(model, tag, ranks=(2, 4), extra=(), paths=(OWNER, GATHER)):
    """extra: tp_logits options of the split runs (the single process runs one thread);
    paths: the exchanges to run each split with"""
    toks1, l1 = logits(model, 1, tag)
    if l1 is None:
        return
    check(len(toks1) > 20 and l1.size > 0 and np.isfinite(l1).all() and float(np.abs(l1).max()) > 0,
          "%s: the whole run produced tokens and finite logits" % tag)
    for n in mpilib.rank_set(ranks):
        for path in paths:
            how = "%s ep %d %s" % (tag, n, "owner-combine" if path == OWNER else "gather")
            toks, l = logits(model, n, tag, extra, path)
            if l is None:
                continue
            check(toks == toks1, "%s: greedy tokens %s differ from %s" % (how, toks, toks1))
            if not check(l.shape == l1.shape, "%s: %s logits, expected %s" % (how, l.shape, l1.shape)):
                continue
            same = np.array_equal(l.view(np.uint32), l1.view(np.uint32))
            print("%s: %d logits, %s (max |diff| %.3g)" % (how, l.size, "bitwise equal" if same else "DIFFER",
                                                           float(np.abs(l - l1).max())))
            check(same, "%s: logits not bitwise equal to one process" % how)


def run_text(model, n, prompt):
    cmd = ([] if n == 1 else mpilib.mpirun(n)) + [mpilib.SOV, "run", "-m", model, "-p", prompt, "-n", "32",
                                                   "--temp", "0", "-t", "1"]
    if n > 1:
        cmd += ["--ep", str(n)]
    r = subprocess.run(cmd, env=mpilib.ENV, capture_output=True, timeout=120)
    check(r.returncode == 0, "sov run ep %d exit %d: %s" % (n, r.returncode, r.stderr[-2000:]))
    return r.stdout  # bytes: a synthetic model's text need not be UTF-8


def answers(srv):
    return mpilib.serve_answers(srv, check, max_tokens=24)


def serve(model):
    with serverlib.Server(model, "--parallel", "4", threads=1) as srv:
        want = answers(srv)
    srv = mpilib.split_server(model, "ep", 2)
    try:
        got = answers(srv)
        print("serve ep 2:", json.dumps(got)[:200])
        check(want["alone"] and got["alone"] == want["alone"], "ep 2 alone: %r != %r" % (got["alone"], want["alone"]))
        check(got["together"] == want["together"], "ep 2 batched: %r != %r" % (got["together"], want["together"]))
        check(got["cached"] == want["cached"], "ep 2 prefix-cached: %r != %r" % (got["cached"], want["cached"]))
    finally:
        srv.stop(signal.SIGTERM, timeout=60)
    log = srv.output()
    check("sov: tp rank" not in log, "the ep job reported a failure: %s" % log[-2000:])


def mb_per_token(out):
    m = re.search(r"([0-9.]+) MB of weights per token", out)
    return float(m.group(1)) if m else None


def bench(model):
    base = [mpilib.SOV, "bench", "-m", model, "-p", "16", "-n", "4", "-r", "1", "-t", "1", "--no-bandwidth"]
    one = subprocess.run(base, env=mpilib.ENV, capture_output=True, text=True, timeout=120)
    two = subprocess.run(mpilib.mpirun(2) + base + ["--ep", "2"], env=mpilib.ENV, capture_output=True, text=True,
                         timeout=120)
    if not check(one.returncode == 0 and two.returncode == 0, "sov bench exit %d / --ep 2 exit %d: %s" %
                 (one.returncode, two.returncode, two.stderr[-1500:])):
        return
    check("expert parallel: 2 ranks" in two.stdout and "| tg4" in two.stdout, "bench --ep 2 output: %s" % two.stdout)
    a, b = mb_per_token(one.stdout), mb_per_token(two.stdout)
    print("bench: %s MB of weights per token in one process, %s on rank 0 of 2" % (a, b))
    check(a is not None and b is not None and b < a, "bench --ep 2: rank 0 reads %s MB per token, one process %s"
          % (b, a))


def main():
    vocab = mpilib.vocab_source()
    vf = ["--vocab-from", vocab] if vocab else []
    small = ["--dim", "128", "--heads", "4", "--kv-heads", "2", "--layers", "3"]
    q3 = mpilib.synthetic_model("ep-qwen3moe.gguf", "--arch", "qwen3moe", *small, "--experts", "8",
                                "--experts-used", "2", *vf)
    compare(q3, "qwen3moe-f32")
    q2 = mpilib.synthetic_model("ep-qwen2moe.gguf", "--arch", "qwen2moe", *small, "--experts", "8",
                                "--experts-used", "2", *vf)
    compare(q2, "qwen2moe-f32", paths=(OWNER,))
    ds = mpilib.synthetic_model("ep-deepseek2.gguf", "--arch", "deepseek2", "--dim", "128", "--heads", "4",
                                "--layers", "3", *vf)
    compare(ds, "deepseek2-f32")
    # three threads per rank: each rank's expert rows and owned tokens split across them
    compare(ds, "deepseek2-f32-3-threads", ranks=(2,), extra=("--threads", "3"))  # both paths
    dsq = mpilib.synthetic_model("ep-deepseek2-post-q8.gguf", "--arch", "deepseek2", "--dim", "128", "--heads", "4",
                                 "--layers", "3", "--post-norm", "--type", "Q8_0", *vf)
    compare(dsq, "deepseek2-postnorm-q8_0", ranks=(2,), paths=(OWNER,))
    q3q = mpilib.synthetic_model("ep-qwen3moe-q4.gguf", "--arch", "qwen3moe", "--dim", "256", "--heads", "4",
                                 "--kv-heads", "2", "--layers", "2", "--experts", "8", "--experts-used", "2",
                                 "--expert-ffn", "256", "--type", "Q4_0", *vf)
    compare(q3q, "qwen3moe-q4_0", ranks=(4,), paths=(OWNER,))
    mx = mpilib.synthetic_model("ep-mixtral-q8.gguf", "--arch", "llama", *small, "--ffn", "128", "--experts", "4",
                                "--experts-used", "2", "--type", "Q8_0", *vf)
    compare(mx, "mixtral-q8_0", ranks=(2,), paths=(GATHER,))
    if vocab:
        whole = run_text(q3, 1, "Once upon a time")
        check(len(whole) > 20, "sov run printed text: %r" % whole)
        for n in mpilib.rank_set((2, 4)):
            split = run_text(q3, n, "Once upon a time")
            check(split == whole, "sov run --ep %d printed %r, one process %r" % (n, split, whole))
        print("sov run --ep 2, 4: the single process's text")
        serve(ds)
    bench(q3q)
    print("%d failed" % len(fails))
    sys.exit(1 if fails else 0)


main()
