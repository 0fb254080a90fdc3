"""The qwen3 architecture: what sets it apart from qwen2, checked one by one.

1. `sov gen-model --arch qwen3` writes what llama.cpp's converter writes for Qwen3: the
   qwen3.* keys, head size as attention.key_length / value_length (128 here, while
   dim / heads = 64, as in Qwen3-0.6B: dim 1024, 16 heads, head size 128), per layer
   blk.N.attn_q_norm.weight and blk.N.attn_k_norm.weight of head-size values that are not
   all one, and no q/k/v biases.
2. The per-head q/k RMSNorm is really computed: sov's logits match the NumPy reference
   (reference.py, which normalises each head before RoPE as transformers' Qwen3Attention
   does) within the float bound of test_forward_reference (1e-5, float32 KV cache), and
   are far (> 100x that bound) from the reference with the norm skipped. So a sov that
   skipped the norm, or applied it after RoPE, fails here.
3. A file missing blk.1.attn_q_norm.weight (or the k one) is refused with one line
   naming the tensor, exit code non-zero, no crash.
4. --vocab-from copies a real model's vocabulary into a qwen3 file that then loads.
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
SHARED = os.environ.get("SOV_SHARED_MODELS", "")
BOUND = 1e-5

failures = []


def check(cond, what):
    print("%s %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        failures.append(what)


def gen(path, *extra):
    r = subprocess.run([SOV, "gen-model", "-o", path, "--arch", "qwen3", "--dim", "256", "--layers", "2",
                        "--heads", "4", "--kv-heads", "2", "--ffn", "512", "--vocab", "512", "--seed", "11"]
                       + list(extra), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("gen-model failed: %s" % r.stderr.strip())


def sov_logits(path, tokens, n_vocab):
    out = os.path.join(TMP, "qwen3_logits_%d.bin" % os.getpid())
    subprocess.run([os.path.join(TOOLS, "sov_logits"), path, "--seq", ",".join(map(str, tokens)), "--out", out,
                    "--kv-f32"], check=True, capture_output=True)
    got = np.fromfile(out, dtype="<f4").astype(np.float64)
    os.remove(out)
    return got.reshape(len(tokens), n_vocab)


def rel_err(a, ref):
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def file_format(path):
    g = reference.GGUF(path)
    check(g.kv.get("general.architecture") == "qwen3", "general.architecture is qwen3")
    for k, v in (("embedding_length", 256), ("block_count", 2), ("attention.head_count", 4),
                 ("attention.head_count_kv", 2), ("attention.key_length", 128), ("attention.value_length", 128),
                 ("feed_forward_length", 512)):
        check(g.kv.get("qwen3." + k) == v, "qwen3.%s = %r (got %r)" % (k, v, g.kv.get("qwen3." + k)))
    for k in ("rope.freq_base", "attention.layer_norm_rms_epsilon", "context_length"):
        check("qwen3." + k in g.kv, "qwen3.%s is present" % k)
    for il in range(2):
        for n in ("attn_q_norm", "attn_k_norm"):
            name = "blk.%d.%s.weight" % (il, n)
            check(name in g.tensors and list(g.tensors[name].ne[:1]) == [128], "%s has 128 values" % name)
            if name in g.tensors:
                w = reference.dequantize_tensor(g, name)
                check(float(w.std()) > 0.1, "%s is not all ones (std %.3f)" % (name, float(w.std())))
        q = g.tensors.get("blk.%d.attn_q.weight" % il)
        check(q is not None and list(q.ne[:2]) == [256, 512], "blk.%d.attn_q.weight is [256, 4*128]" % il)
        biases = [t for t in g.tensors if t.startswith("blk.%d." % il) and t.endswith(".bias")]
        check(not biases, "blk.%d has no biases (%s)" % (il, biases))


def qk_norm_computed(path):
    model = reference.Model(path)
    rng = np.random.default_rng(5)
    tokens = [1] + [int(t) for t in rng.integers(3, model.n_vocab, size=19)]
    got = sov_logits(path, tokens, model.n_vocab)
    ref = model.logits(tokens)
    err = rel_err(got, ref)
    check(err <= BOUND, "sov vs reference with q/k norm: rel err %.2e <= %.0e" % (err, BOUND))
    model.apply_qk_norm = False
    skipped = rel_err(got, model.logits(tokens))
    check(skipped > 100 * BOUND, "sov vs reference WITHOUT q/k norm: rel err %.2e > %.0e" % (skipped, 100 * BOUND))


def missing_norm(path):
    data = open(path, "rb").read()
    for n in ("attn_q_norm", "attn_k_norm"):
        name = ("blk.1.%s.weight" % n).encode()
        check(data.count(name) == 1, "%s appears once in the file" % name.decode())
        bad = os.path.join(TMP, "qwen3_no_%s_%d.gguf" % (n, os.getpid()))
        with open(bad, "wb") as f:  # renamed in place (same length): the file lacks the tensor
            f.write(data.replace(name, name.replace(b"_norm.", b"_nrom.")))
        r = subprocess.run([SOV, "run", "-m", bad, "-p", "hi", "-n", "1"], capture_output=True, text=True,
                           timeout=60)
        os.remove(bad)
        lines = r.stderr.strip().splitlines()
        check(0 < r.returncode < 128, "missing %s: exit code %d" % (n, r.returncode))
        check(len(lines) == 1 and name.decode() in lines[0] and "missing" in lines[0],
              "missing %s: one line naming it: %r" % (n, r.stderr.strip()))


def vocab_from():
    src = os.path.join(SHARED, "stories260K.gguf")
    if not os.path.exists(src):
        print("skip --vocab-from (no %s)" % src)
        return
    path = os.path.join(TMP, "qwen3_vocab_%d.gguf" % os.getpid())
    gen(path, "--vocab-from", src)
    g = reference.GGUF(path)
    n_src = len(reference.GGUF(src).kv["tokenizer.ggml.tokens"])
    check(g.tensors["token_embd.weight"].ne[1] == n_src, "--vocab-from: %d embedding rows" % n_src)
    r = subprocess.run([SOV, "run", "-m", path, "-p", "Once upon a time", "-n", "4", "--temp", "0"],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "--vocab-from: the model runs (%s)" % r.stderr.strip().splitlines()[-1:])
    os.remove(path)


def main():
    if not SOV or not TOOLS:
        print("SOV_BIN / SOV_TOOLS_DIR not set: run through ctest")
        return 1
    os.makedirs(TMP, exist_ok=True)
    path = os.path.join(TMP, "qwen3_%d.gguf" % os.getpid())
    gen(path, "--head-dim", "128")
    try:
        file_format(path)
        qk_norm_computed(path)
        missing_norm(path)
    finally:
        os.remove(path)
    vocab_from()
    print("FAIL: %d checks" % len(failures) if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
