"""Embeddings of the engine (sov_embed, through tools/sov_embed) against the independent
NumPy reference (reference.py: Model.embedding = the final-norm hidden states, pooled, L2-
normalised).

  - stories260K (no pooling_type key: mean) and synthetic llama models whose metadata asks
    for mean, cls (first token) and last-token pooling: every vector equals the reference's.
    Error measure: max |sov - ref| over the components of the unit vectors. Bound 1e-4
    with the float16 KV cache (sov and the reference both round keys and values to half
    precision, and float32 noise now and then tips one to the neighbouring half: observed
    6e-7 here, 1.1e-5 in test_embeddings.py), 1e-6 with float32 KV
    (observed 7e-8: float32 rounding through the layers).
  - how inputs are packed never changes the result: 2 sequences in flight and 7-token
    batches (so inputs are cut into chunks that share batches) give what 16 sequences and
    512-token batches give, to float32 rounding (1e-6).
  - every KV block is free afterwards (embeddings leave nothing behind).
  - pooling types sov does not support (none, rank) fail with a clear error.
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


def gen(name, *flags):
    path = os.path.join(TMP, name)
    if not os.path.exists(path):
        subprocess.run([SOV, "gen-model", "-o", path + ".part", "--dim", "64", "--layers", "2", "--heads", "4",
                        "--kv-heads", "2", "--ffn", "128", "--vocab", "300", "--ctx", "256"] + list(flags),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.rename(path + ".part", path)
    return path


def embed(model, seqs, *flags):
    """sov's vectors [len(seqs), E] and the tool's summary line, or (None, stderr)."""
    out = os.path.join(TMP, "embed-%d.f32" % os.getpid())
    cmd = [os.path.join(TOOLS, "sov_embed"), model, "--out", out, "--threads", "2"] + list(flags)
    for s in seqs:
        cmd += ["--seq", ",".join(str(t) for t in s)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        return None, r.stderr
    v = np.fromfile(out, dtype=np.float32).reshape(len(seqs), -1)
    os.unlink(out)
    return v, r.stdout.strip()


def compare(model_path, seqs, label, kv_f32=False):
    ref = reference.Model(model_path)
    got, info = embed(model_path, seqs, *(["--kv-f32"] if kv_f32 else []))
    if not check(got is not None, "%s: sov_embed ran: %s" % (label, info)):
        return None
    want = np.array([ref.embedding(s, kv_f16=not kv_f32) for s in seqs])
    err = float(np.abs(got - want).max())
    bound = 1e-6 if kv_f32 else 1e-4
    print("  %-28s pooling %-4s kv %s: max |sov - ref| %.2e (bound %.0e), norms %.7f..%.7f" %
          (label, info.split()[1], "f32" if kv_f32 else "f16", err, bound,
           np.linalg.norm(got, axis=1).min(), np.linalg.norm(got, axis=1).max()), file=sys.stderr)
    check(err <= bound, "%s: vectors equal the reference (%.2e > %.0e)" % (label, err, bound))
    check(np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5), "%s: unit vectors" % label)
    f = info.split()
    check(f[3] == f[5], "%s: every KV block is free afterwards (%s)" % (label, info))
    # the cosine similarities the server's users compare: the same matrix
    check(np.abs(got @ got.T - want @ want.T).max() <= 2 * bound, "%s: cosine similarities" % label)
    return got


def main():
    if not SOV or not TOOLS:
        print("SKIP: SOV_BIN / SOV_TOOLS_DIR not set", file=sys.stderr)
        sys.exit(77)
    os.makedirs(TMP, exist_ok=True)
    rng = np.random.default_rng(11)
    stories = os.path.join(SHARED, "stories260K.gguf")
    if os.path.exists(stories):
        seqs = [[1], [1] + list(rng.integers(3, 512, 4)), [1] + list(rng.integers(3, 512, 16)),
                [1] + list(rng.integers(3, 512, 39))]
        compare(stories, seqs, "stories260K")
        compare(stories, seqs, "stories260K", kv_f32=True)
        a, _ = embed(stories, seqs, "--seqs", "16", "--batch", "512")
        b, info = embed(stories, seqs, "--seqs", "2", "--batch", "7")
        if check(a is not None and b is not None, "packing runs: %s" % info):
            check(np.abs(a - b).max() <= 1e-6, "packing does not change the vectors (%.2e)" % np.abs(a - b).max())
    elif os.environ.get("SOV_REQUIRE_SHARED") == "1":
        check(False, "stories260K.gguf is missing")
    seqs = [list(rng.integers(0, 300, n)) for n in (1, 3, 12, 30)]
    for pooling, name in ((1, "mean"), (2, "cls"), (3, "last")):
        compare(gen("embed-pool%d.gguf" % pooling, "--pooling", str(pooling)), seqs, "synthetic " + name,
                kv_f32=True)
    # cls and last really differ from mean (the test above would not notice otherwise)
    m, _ = embed(gen("embed-pool1.gguf", "--pooling", "1"), seqs)
    l, _ = embed(gen("embed-pool3.gguf", "--pooling", "3"), seqs)
    check(m is not None and l is not None and np.allclose(m[0], l[0], atol=1e-6) and
          np.abs(m[1:] - l[1:]).max() > 1e-2, "last differs from mean except for one-token inputs")
    for pooling, name in ((0, "none"), (4, "rank")):
        v, err = embed(gen("embed-pool%d.gguf" % pooling, "--pooling", str(pooling)), seqs[:1])
        check(v is None and "pooling_type %d (%s) is not supported" % (pooling, name) in err,
              "pooling %s refused clearly: %r" % (name, err))
    v, err = embed(gen("embed-pool1.gguf", "--pooling", "1"), [[5] * 300], "--ctx", "256")
    check(v is None and "context" in err, "an input longer than the context is refused: %r" % err)
    v, err = embed(gen("embed-pool1.gguf", "--pooling", "1"), [[300]])
    check(v is None and "vocabulary" in err, "a token outside the vocabulary is refused: %r" % err)
    print("%d failed" % len(failures), file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
