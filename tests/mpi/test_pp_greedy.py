"""Pipeline parallelism (--pp S under mpirun, docs/TP.md) computes what one process computes,
bit for bit.

tools/tp_logits runs one fixed script of context calls (a 40-token prompt in one batch,
greedy steps, a second sequence attaching the first's KV blocks and decoding in one batch
of 9 tokens with it, truncation, a block retained and released, a sequence freed, a second
context), whole and split into S = 2 and 4 stages, on stories260K and synthetic llama (GQA,
Q8_0), gemma3 (sliding-window layers on either side of a stage boundary, post-norms) and
deepseek2 (MLA, a leading dense layer then MoE layers, an MTP block the split drops) models.
Rules:
  - the greedy tokens and every logit are identical: a stage runs whole layers with the
    kernels one process uses, and the kernels are batch-invariant (tests/model/
    test_batch_invariance.py), so cutting a batch into micro-batches changes no bit;
  - by default the 40-token prompt crosses the stages in micro-batches of 16, 16 and 8
    tokens; the same holds with micro-batches of 1 and 3 tokens (SOV_PP_MICRO_BATCH): the
    prompt and the two-sequence batch then cross the stages in many pieces, each stage
    computing one while the next computes the one before;
  - `sov run --temp 0` prints the same text whole and split;
  - more stages than layers and encoders are refused in one line, exit non-zero."""
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpilib  # noqa: E402

TOOL = os.path.join(mpilib.TOOLS, "tp_logits")
fails = []


def check(cond, what):
    if not cond:
        fails.append(what)
        print("  CHECK failed: " + what)
    return cond


def logits(model, n, extra, tag, env=None):
    out = os.path.join(mpilib.TMP, "pp-%d-%s-%d.bin" % (os.getpid(), tag, n))
    cmd = ([] if n == 1 else mpilib.mpirun(n, tcp=(n == 2))) + [TOOL, model, "--out", out] + extra
    if n > 1:
        cmd += ["--pp", str(n)]
    r = subprocess.run(cmd, env=dict(mpilib.ENV, **(env or {})), capture_output=True, text=True, timeout=120)
    if not check(r.returncode == 0, "%s pp %d exit %d: %s" % (tag, n, r.returncode, r.stderr[-2000:])):
        return None, None
    a = np.fromfile(out, np.float32)
    os.unlink(out)
    return r.stdout.split(), a


def compare(model, tag, extra=(), micro=(None,), ranks=(2, 4)):
    extra = list(extra)
    toks1, l1 = logits(model, 1, extra, tag)
    if l1 is None:
        return
    check(len(toks1) > 20 and l1.size > 0, "%s: the whole run produced tokens and logits" % tag)
    for mb in micro:
        env = {"SOV_PP_MICRO_BATCH": str(mb)} if mb else {}
        for n in mpilib.rank_set(ranks):
            toks, l = logits(model, n, extra, tag, env)
            if l is None:
                continue
            what = "%s pp %d (micro-batch %s)" % (tag, n, mb or "default")
            check(toks == toks1, "%s: greedy tokens %s differ from %s" % (what, toks, toks1))
            if check(l.shape == l1.shape, "%s: %s logits, expected %s" % (what, l.shape, l1.shape)):
                same = np.array_equal(l, l1)
                print("%s: tokens equal; logits %s" % (what, "bitwise equal" if same else
                                                      "differ by %.3g" % float(np.abs(l - l1).max())))
                check(same, "%s: logits not bitwise equal to one process" % what)


def run_text(model, n, prompt):
    cmd = ([] if n == 1 else mpilib.mpirun(n)) + [mpilib.SOV, "run", "-m", model, "-p", prompt, "-n", "48",
                                                   "--temp", "0", "-t", "1"]
    if n > 1:
        cmd += ["--pp", str(n)]
    r = subprocess.run(cmd, env=mpilib.ENV, capture_output=True, timeout=120)
    check(r.returncode == 0, "sov run pp %d exit %d: %s" % (n, r.returncode, r.stderr[-2000:]))
    return r.stdout  # bytes: a synthetic model's text need not be UTF-8


def refused(cmd, n, expect, what):
    r = subprocess.run(mpilib.mpirun(n) + cmd, env=mpilib.ENV, capture_output=True, text=True, timeout=60)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("sov ")]
    check(r.returncode != 0, "%s: exit 0" % what)
    check(any(expect in ln for ln in lines), "%s: no line with %r in %s" % (what, expect, r.stderr[-1500:]))
    print("refused (%s): %s" % (what, next((ln for ln in lines if expect in ln), "?")))


def main():
    vocab = mpilib.vocab_source()
    vf = ["--vocab-from", vocab] if vocab else []
    stories = mpilib.shared_model("stories260K.gguf")
    if stories:  # 5 layers: stages of 3 + 2, and 2 + 1 + 1 + 1
        compare(stories, "stories260K", micro=(None, 1, 3))
        whole = run_text(stories, 1, "Once upon a time")
        check(b"Lily" in whole or len(whole) > 60, "sov run printed a story: %r" % whole)
        for n in mpilib.rank_set((2, 4)):
            check(run_text(stories, n, "Once upon a time") == whole, "sov run --pp %d differs from one process" % n)
    else:
        print("(no shared model: synthetic models only)")
    gqa = mpilib.synthetic_model("pp-gqa-q8.gguf", "--dim", "256", "--heads", "8", "--kv-heads", "4", "--ffn",
                                 "512", "--layers", "4", "--type", "Q8_0", *vf)
    compare(gqa, "llama-gqa-q8_0", ranks=(2,))
    if vocab:
        whole = run_text(gqa, 1, "Once upon a time")
        check(run_text(gqa, 2, "Once upon a time") == whole, "sov run --pp 2 on the GQA model differs")
    # layers 0 1 local, 2 global, 3 4 local, 5 global (window 8 < the 40-token prompt):
    # stages [0 1] [2 3] [4] [5] with 4, [0 1 2] [3 4 5] with 2
    gemma3 = mpilib.synthetic_model("pp-gemma3-swa.gguf", "--arch", "gemma3", "--dim", "128", "--heads", "4",
                                    "--kv-heads", "2", "--ffn", "256", "--layers", "6", "--swa", "8",
                                    "--swa-pattern", "3", *vf)
    compare(gemma3, "gemma3-swa", ["--kv-f32"], micro=(None, 3))
    # layer 0 dense, 1..3 MoE (16 experts, 4 used, grouped), MLA; one MTP block after them
    ds2 = mpilib.synthetic_model("pp-deepseek2.gguf", "--arch", "deepseek2", "--dim", "128", "--heads", "4",
                                 "--layers", "4", "--mtp", "1", *vf)
    compare(ds2, "deepseek2-moe")
    refused([mpilib.SOV, "run", "-m", gqa, "-n", "4", "--pp", "5"], 5, "the model has 4 layers, fewer than the stages",
            "5 stages of a 4-layer model")
    bert = mpilib.synthetic_model("tp-bert.gguf", "--arch", "bert", "--dim", "64", "--heads", "4", "--layers", "2")
    refused([mpilib.SOV, "bench", "-m", bert, "-p", "8", "-n", "0", "-r", "1", "--no-bandwidth", "--pp", "2"], 2,
            "encoder", "encoder model")
    print("%d failed" % len(fails))
    sys.exit(1 if fails else 0)


main()
