"""nomic-bert-moe (nomic-embed-text-v2-moe's architecture: nomic-bert with biases, GELU MLPs,
and every second layer a mixture of experts) through sov_embed against the independent
NumPy reference (reference.py: Encoder._moe), for every kernel table this CPU runs.

  - synthetic nomic-bert-moe models (gen-model --arch nomic-bert-moe: 4 layers, the experts
    in layers 1 and 3) with F32, F16 and Q8_0 matrices, 8 experts of which 2 are used:
    cosine of sov's vector with the reference's >= 0.9999 (Q8_0: against the reference
    with sov's activation rounding; >= 0.999 against the float reference), inputs of 1 to
    200 tokens, all packed in one batch;
  - 1 of 4 experts used, and all 4 of 4 (the top-k is then the whole softmax);
  - the test can tell the routing conventions apart: the reference with the k weights
    renormalised to sum to 1 (Mixtral's convention, not nomic's or llama.cpp's) is
    further from sov than the bound, and the synthetic inputs route to more than k
    distinct experts;
  - packing: one input per batch and 16 in one batch give the same vectors;
  - malformed expert metadata or tensors: one-line errors; gen-model refuses experts for
    the other encoders.
"""
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference  # noqa: E402
from test_encoder_reference import SOV, TMP, TOOLS, check, compare, cosines, embed, failures, gen  # noqa: E402


def patch_u32(b, key, value):
    """b with the u32 value of metadata key (u64 length + key + i32 type 4 + u32) replaced"""
    at = b.index(key) + len(key)
    assert int.from_bytes(b[at:at + 4], "little") == 4, "key %r is a u32" % key
    return b[:at + 4] + int(value).to_bytes(4, "little") + b[at + 8:]


def moe_model(name, *flags):
    return gen(name, "--arch", "nomic-bert-moe", "--layers", "4", "--ctx", "256", *flags)


def main():
    if not SOV or not TOOLS:
        print("SKIP: SOV_BIN / SOV_TOOLS_DIR not set", file=sys.stderr)
        sys.exit(77)
    os.makedirs(TMP, exist_ok=True)
    rng = np.random.default_rng(29)
    seqs = [list(rng.integers(0, 300, n)) for n in (1, 2, 7, 19, 64, 200)]

    f32 = moe_model("enc-moe-f32.gguf")
    ref = reference.Encoder(f32)
    check(ref.moe_every == 2 and ref.n_expert == 8 and ref.n_expert_used == 2,
          "gen-model writes moe_every_n_layers 2, 8 experts, 2 used")
    want = compare(f32, seqs, "nomic-bert-moe F32 8/2")
    compare(moe_model("enc-moe-f16.gguf", "--type", "F16"), seqs, "nomic-bert-moe F16 8/2")
    q8 = moe_model("enc-moe-q8.gguf", "--type", "Q8_0")
    compare(q8, seqs, "nomic-bert-moe Q8_0 (act_q8)", act_q8=True)
    compare(q8, seqs, "nomic-bert-moe Q8_0 (float)", bound=0.999)
    compare(moe_model("enc-moe-k1.gguf", "--experts", "4", "--experts-used", "1"), seqs, "nomic-bert-moe F32 4/1")
    compare(moe_model("enc-moe-k4.gguf", "--experts", "4", "--experts-used", "4"), seqs, "nomic-bert-moe F32 4/4")

    # the routing conventions are told apart: renormalised weights give other vectors
    got, _ = embed(f32, seqs)
    renorm = reference.Encoder(f32)
    renorm.moe_renormalise = True
    other = np.array([renorm.embedding(s) for s in seqs])
    if check(got is not None, "sov_embed ran"):
        c = cosines(got, other)
        print("  renormalised reference vs sov: min cosine %.6f" % c.min(), file=sys.stderr)
        check(c.min() < 0.9999, "the test tells renormalised weights apart (min cosine %.6f)" % c.min())
        check(cosines(got, want).min() >= 0.9999, "sov agrees with the unrenormalised reference")
    # the inputs exercise the router: more than k distinct experts chosen in layer 1
    x = reference.Encoder(f32)
    logits = x._lin("blk.1.ffn_gate_inp.weight", x._mat("token_embd.weight")[seqs[-1]], False)
    chosen = set(np.argsort(-logits, axis=1, kind="stable")[:, :2].ravel().tolist())
    check(len(chosen) > 4, "tokens route to different experts (%d of 8 chosen)" % len(chosen))

    # packing never changes a vector
    a, _ = embed(f32, seqs, "--seqs", "1", "--batch", "256")
    b, info = embed(f32, seqs, "--seqs", "16", "--batch", "512")
    if check(a is not None and b is not None, "packing runs: %s" % info):
        check(np.abs(a - b).max() <= 1e-6, "packing does not change the vectors (%.2e)" % np.abs(a - b).max())

    # malformed expert metadata and tensors: one-line errors, never a crash
    good = open(f32, "rb").read()
    bad_cases = [
        ("expert_used_count", lambda b: patch_u32(b, b"nomic-bert-moe.expert_used_count", 9), "9 of them used"),
        ("expert_count 0", lambda b: patch_u32(b, b"nomic-bert-moe.expert_count", 0), "out of range"),
        ("no up experts", lambda b: b.replace(b"blk.1.ffn_up_exps.weight", b"blk.1.ffn_up_exps.weighX"),
         "'blk.1.ffn_up_exps.weight' is missing"),
        ("expert count vs tensors", lambda b: patch_u32(b, b"nomic-bert-moe.expert_count", 4), "shape"),
    ]
    for label, fn, want in bad_cases:
        path = os.path.join(TMP, "enc-moe-bad.gguf")
        with open(path, "wb") as f:
            f.write(fn(good))
        v, err = embed(path, [[1, 2, 3]])
        check(v is None and want in err and len(err.strip().splitlines()) == 1 and "Sanitizer" not in err,
              "%s: a one-line error naming %r: %r" % (label, want, err))

    # experts only where the architecture has them
    r = subprocess.run([SOV, "gen-model", "--arch", "bert", "--experts", "4", "-o", os.path.join(TMP, "x.gguf")],
                       capture_output=True, text=True)
    check(r.returncode != 0 and "experts" in r.stderr, "gen-model --arch bert --experts is refused: %r" % r.stderr)
    print("%d failed" % len(failures), file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
