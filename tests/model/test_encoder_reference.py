"""Encoder embeddings (bert, nomic-bert) of the engine (sov_embed through tools/sov_embed)
against the independent NumPy reference (reference.py: Encoder, float64, written from
transformers' BertModel / nomic-bert), for every kernel table this CPU runs.

  - synthetic bert (CLS, mean and last pooling) and nomic-bert (mean) models, F32: the
    cosine of sov's vector with the reference's >= 0.9999 for every input and table
    (observed ~1 - 1e-8: float32 rounding through the layers);
  - the same bert with Q8_0 matrices: against the reference with sov's activation
    rounding (act_q8) cosine >= 0.9999, and against the float reference >= 0.999 (the
    weight rounding itself; observed ~0.9999);
  - attention looks both ways: with CLS pooling, changing the LAST token changes the
    first token's vector (a causal mask would leave it alone) — checked on sov and on the
    reference;
  - packing: one input per batch and all inputs in one batch give the same vectors
    (float32 rounding, 1e-6), and every KV block is free afterwards;
  - a model with the bert-bge WordPiece vocabulary (gen-model --vocab-from) embeds text
    tokenized by `sov tokenize`;
  - an input longer than the position table, a token outside the vocabulary: clear errors.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference  # noqa: E402

SOV = os.environ.get("SOV_BIN")
TOOLS = os.environ.get("SOV_TOOLS_DIR")
TMP = os.environ.get("SOV_TEST_TMP") or tempfile.gettempdir()
SHARED = os.environ.get("SOV_SHARED_MODELS", os.path.join(HERE, "..", "..", "..", "shared", "models"))
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("  CHECK failed: " + what, file=sys.stderr)
    return cond


def cpu_isas():
    isas = ["scalar"]
    try:
        flags = set(next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split(":")[1].split())
    except (OSError, StopIteration):
        return isas
    if {"avx2", "fma", "f16c"} <= flags:
        isas.append("avx2")
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        isas.append("avx512")
    if "avx512_vnni" in flags and "avx512" in isas:
        isas.append("avx512_vnni")
    return isas


def gen(name, *flags):
    path = os.path.join(TMP, name)
    if not os.path.exists(path):
        subprocess.run([SOV, "gen-model", "-o", path + ".part", "--dim", "64", "--layers", "2", "--heads", "4",
                        "--ffn", "128", "--vocab", "300", "--ctx", "64"] + list(flags),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.rename(path + ".part", path)
    return path


def embed(model, seqs, *flags, isa=None):
    """sov's vectors [len(seqs), E] and the tool's summary line, or (None, stderr)."""
    out = os.path.join(TMP, "enc-embed-%d.f32" % os.getpid())
    cmd = [os.path.join(TOOLS, "sov_embed"), model, "--out", out, "--threads", "2"] + list(flags)
    for s in seqs:
        cmd += ["--seq", ",".join(str(int(t)) for t in s)]
    env = dict(os.environ)
    env.pop("SOV_ISA", None)
    if isa:
        env["SOV_ISA"] = isa
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    if r.returncode != 0:
        return None, r.stderr
    v = np.fromfile(out, dtype=np.float32).reshape(len(seqs), -1)
    os.unlink(out)
    return v, r.stdout.strip()


def cosines(a, b):
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def compare(path, seqs, label, act_q8=False, bound=0.9999):
    ref = reference.Encoder(path)
    want = np.array([ref.embedding(s, act_q8=act_q8) for s in seqs])
    for isa in cpu_isas():
        got, info = embed(path, seqs, isa=isa)
        if not check(got is not None, "%s %s: sov_embed ran: %s" % (label, isa, info)):
            continue
        c = cosines(got, want)
        print("  %-26s %-11s pooling %-4s min cosine %.9f (bound %g)" % (label, isa, info.split()[1], c.min(), bound),
              file=sys.stderr)
        check(c.min() >= bound, "%s %s: cosine with the reference %.9f < %g" % (label, isa, c.min(), bound))
        check(np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5), "%s %s: unit vectors" % (label, isa))
        f = info.split()
        check(f[3] == f[5], "%s %s: every KV block is free afterwards (%s)" % (label, isa, info))
    return want


def main():
    if not SOV or not TOOLS:
        print("SKIP: SOV_BIN / SOV_TOOLS_DIR not set", file=sys.stderr)
        sys.exit(77)
    os.makedirs(TMP, exist_ok=True)
    rng = np.random.default_rng(17)
    seqs = [list(rng.integers(0, 300, n)) for n in (1, 2, 7, 19, 64)]
    for pooling, name in ((2, "cls"), (1, "mean"), (3, "last")):
        compare(gen("enc-bert-p%d.gguf" % pooling, "--arch", "bert", "--pooling", str(pooling)), seqs,
                "bert F32 " + name)
    nomic = gen("enc-nomic.gguf", "--arch", "nomic-bert", "--ctx", "256")
    compare(nomic, seqs + [list(rng.integers(0, 300, 200))], "nomic-bert F32 mean")
    q8 = gen("enc-bert-q8.gguf", "--arch", "bert", "--type", "Q8_0")
    compare(q8, seqs, "bert Q8_0 (act_q8 ref)", act_q8=True)
    compare(q8, seqs, "bert Q8_0 (float ref)", bound=0.999)

    # both directions: the first token's state depends on the last token
    cls = gen("enc-bert-p2.gguf", "--arch", "bert", "--pooling", "2")
    a, b = [5, 6, 7, 8], [5, 6, 7, 9]
    got, _ = embed(cls, [a, b])
    ref = reference.Encoder(cls)
    if check(got is not None, "bidirectional: ran"):
        check(np.abs(got[0] - got[1]).max() > 1e-3, "CLS vector changes with the last token (non-causal)")
    check(np.abs(ref.embedding(a) - ref.embedding(b)).max() > 1e-3, "reference: CLS depends on the last token")

    # packing never changes a vector; all blocks come back
    x, _ = embed(nomic, seqs, "--seqs", "1", "--batch", "64")
    y, info = embed(nomic, seqs, "--seqs", "16", "--batch", "512")
    if check(x is not None and y is not None, "packing runs: %s" % info):
        check(np.abs(x - y).max() <= 1e-6, "packing does not change the vectors (%.2e)" % np.abs(x - y).max())

    # a real WordPiece vocabulary: text -> ids (sov tokenize) -> vector
    bge = os.path.join(SHARED, "vocab", "ggml-vocab-bert-bge.gguf")
    if os.path.exists(bge):
        m = gen("enc-bert-bge.gguf", "--arch", "bert", "--vocab-from", bge)
        r = subprocess.run([SOV, "tokenize", "-m", m, "-p", "Hello world! 안녕하세요"], capture_output=True,
                           text=True)
        ids = [int(t) for t in r.stdout.split()]
        check(ids[:1] == [101] and ids[-1:] == [102], "bert-bge model tokenizes with [CLS] ... [SEP]: %r" % ids)
        compare(m, [ids], "bert-bge vocab F32")
    elif os.environ.get("SOV_REQUIRE_SHARED") == "1":
        check(False, "ggml-vocab-bert-bge.gguf is missing")

    # clear errors
    v, err = embed(cls, [[5] * 65])
    check(v is None and "64" in err and "context" in err, "an input past the 64 positions is refused: %r" % err)
    v, err = embed(cls, [[300]])
    check(v is None and "vocabulary" in err, "a token outside the vocabulary is refused: %r" % err)
    print("%d failed" % len(failures), file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
