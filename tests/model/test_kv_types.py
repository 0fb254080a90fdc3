"""Quantized KV cache types and long contexts, whole forward passes.

1. q8_0 / q4_0 KV against the NumPy reference (reference.py). Where sov's kernel table
   scores quantized keys in integers (avx512_vnni: the query per group of 32 as int8 codes,
   scale max|x|/127 in float32, as llama.cpp scores quantized keys), the reference
   quantizes the query the same way (quantize_query), and the float path is checked too
   with SOV_ISA=avx512 against the reference without. The reference is run with
   its keys and values rounded as a Q8_0 / Q4_0 cache rounds them (quantize_rows below,
   written from the format: per position and KV head, groups of 32 values (head_dim when
   smaller), scale s = max|x|/127 (Q8_0) or m/-8 with m the value of largest magnitude
   (Q4_0), stored as float16, codes round(x/s) (+8 and clamped to 0..15 for Q4_0)). sov
   with --kv-type T must match that reference within Q_BOUND (max |sov - ref| / max |ref|):
   sov and the reference quantize values that differ by float32 noise, so once in a
   while a code lands one step away (1/127 or 1/8 of a group's scale); observed ~2e-7
   (float noise), 2.9e-4 where one q8_0 code flipped. Against the reference with exact
   keys and values the error is the cost of the type, printed (observed: q8_0 3e-3..5e-3,
   q4_0 7e-2..1e-1) and bounded loosely, so that a cache that stored nothing useful
   fails (COST_BOUND).
2. Long context: a 3,000-token sequence in one prefill call (n_batch 3000, so attention
   runs over many tiles for every token) equals the same sequence decoded one token at a
   time (every step a split-K decode) within float noise (1e-5 with the f32 cache, same
   bound as test_forward_reference; observed ~3e-7), at 1 and 2 threads (t=2 equal to t=1
   bit for bit), on a model with one KV head for 4 query heads (so a decode step has one
   task, which split-K cuts into 4 parts over the 2 threads). The same with the q8_0 cache: both ways quantize the same
   values, so they agree within float noise too.
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

Q_BOUND = {"q8_0": 2e-3, "q4_0": 5e-3}
COST_BOUND = {"q8_0": 5e-2, "q4_0": 3e-1}
LONG_BOUND = 1e-5

failures = 0


def check(ok, what):
    global failures
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures += 1


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
    return r


def quantize_rows(x, kind):
    """x [S, Hkv, D] float64 -> the values a kind cache hands back."""
    S, Hkv, D = x.shape
    g = 32 if D >= 32 else D
    y = x.reshape(S, Hkv, D // g, g).astype(np.float32)
    if kind == "q8_0":
        s = np.abs(y).max(axis=-1, keepdims=True) / np.float32(127)
        inv = np.where(s != 0, np.float32(1) / np.where(s != 0, s, 1), 0).astype(np.float32)
        q = np.trunc(y * inv + np.copysign(np.float32(0.5), y * inv))  # round half away from zero
        out = s.astype(np.float16).astype(np.float64) * q
    else:
        idx = np.abs(y).argmax(axis=-1)[..., None]
        m = np.take_along_axis(y, idx, axis=-1)
        s = m / np.float32(-8)
        inv = np.where(s != 0, np.float32(1) / np.where(s != 0, s, 1), 0).astype(np.float32)
        r = y * inv
        q = np.clip(np.trunc(r + np.copysign(np.float32(0.5), r)) + 8, 0, 15)
        out = s.astype(np.float16).astype(np.float64) * (q - 8)
    return out.reshape(S, Hkv, D)


def quantize_query(q):
    """q [T, H, D] -> the query as the integer scores of quantized keys take it: per head
    row, groups of 32, scale s = max|x|/127 kept in float32 (not rounded to f16), codes
    round(x / s) (round half away from zero)."""
    T, H, D = q.shape
    y = q.reshape(T, H, D // 32, 32).astype(np.float32)
    s = np.abs(y).max(axis=-1, keepdims=True) / np.float32(127)
    inv = np.where(s != 0, np.float32(1) / np.where(s != 0, s, 1), 0).astype(np.float32)
    r = y * inv
    codes = np.trunc(r + np.copysign(np.float32(0.5), r))
    return (s.astype(np.float64) * codes).reshape(T, H, D)


def cpu_has_int_scores():
    """True when sov's default kernel table here is avx512_vnni, whose scores against
    Q8_0 / Q4_0 keys are int8 products of the keys' codes and the query quantized per
    group of 32 (kernels.h attn_scores_q8_0); other tables dequantize the keys."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        return False
    return all(x in flags for x in ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"))


class QuantKVModel(reference.Model):
    """The reference whose attention sees keys and values as a quantized cache holds them
    (all tokens are given in one forward call, so each is quantized once), and with
    q_int, the query quantized as the integer scores take it."""
    kv_kind = None
    q_int = False

    def _attention(self, q, K, V, positions, rep, window=0):
        if self.kv_kind:
            K, V = quantize_rows(K, self.kv_kind), quantize_rows(V, self.kv_kind)
            if self.q_int and q.shape[2] % 32 == 0:
                q = quantize_query(q)
        return super()._attention(q, K, V, positions, rep, window)


def sov_logits(path, seqs_args, n_tok, n_vocab, extra, env_isa=None):
    out = os.path.join(TMP, "kvt_sov_%d.bin" % os.getpid())
    env = dict(os.environ)
    env.pop("SOV_ISA", None)
    if env_isa:
        env["SOV_ISA"] = env_isa
    run([os.path.join(TOOLS, "sov_logits"), path] + seqs_args + ["--out", out] + extra, env)
    got = np.fromfile(out, dtype="<f4")
    os.remove(out)
    assert got.size == n_tok * n_vocab, (got.size, n_tok, n_vocab)
    return got.reshape(n_tok, n_vocab).astype(np.float64)


def rel_err(a, ref):
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def gen(path, extra):
    run([SOV, "gen-model", "-o", path, "--dim", "256", "--layers", "2", "--heads", "4", "--ffn", "512",
         "--vocab", "512", "--seed", "11"] + extra)


def reference_cases():
    rng = np.random.default_rng(5)
    cases = [("llama F32 D=64", ["--type", "F32", "--kv-heads", "2"]),
             ("qwen3 F32 D=128", ["--arch", "qwen3", "--type", "F32", "--kv-heads", "2", "--head-dim", "128"]),
             ("llama F32 D=8 (groups of 8)", ["--type", "F32", "--kv-heads", "2", "--head-dim", "8"])]
    for name, extra in cases:
        path = os.path.join(TMP, "kvt_%d.gguf" % os.getpid())
        gen(path, extra)
        try:
            m = QuantKVModel(path)
            toks = [int(t) for t in rng.integers(0, 512, 80)]
            exact = m.logits(toks)
            # the default table; where that one scores quantized keys in integers, the
            # float path too (the avx512 table: keys dequantized, the query as it is)
            int_here = cpu_has_int_scores() and m.head_dim % 32 == 0
            runs = [(None, int_here)] + ([("avx512", False)] if int_here else [])
            for kind in ("q8_0", "q4_0"):
                for isa, q_int in runs:
                    m.kv_kind, m.q_int = kind, q_int
                    ref = m.logits(toks)
                    m.kv_kind, m.q_int = None, False
                    got = sov_logits(path, ["--seq", ",".join(map(str, toks))], len(toks), 512,
                                     ["--kv-type", kind], env_isa=isa)
                    e, cost = rel_err(got, ref), rel_err(got, exact)
                    how = "%s kv %s%s" % (name, kind, " (SOV_ISA=%s)" % isa if isa else
                                          " (integer scores)" if q_int else "")
                    check(e <= Q_BOUND[kind], "%s: sov vs reference with %s keys/values%s: %.2e (bound %.0e)"
                          % (how, kind, " and query codes" if q_int else "", e, Q_BOUND[kind]))
                    check(cost <= COST_BOUND[kind], "%s: vs exact keys/values (the type's cost): %.2e (bound %.0e)"
                          % (how, cost, COST_BOUND[kind]))
        finally:
            os.remove(path)


def long_context():
    path = os.path.join(TMP, "kvt_long_%d.gguf" % os.getpid())
    gen(path, ["--type", "F32", "--kv-heads", "1", "--ctx", "4096", "--layers", "1"])
    try:
        rng = np.random.default_rng(9)
        n = 3000
        toks = ",".join(str(int(t)) for t in rng.integers(0, 512, n))
        for kv in ("f32", "q8_0"):
            base = None
            for threads in ("1", "2"):
                common = ["--kv-type", kv, "--ctx", "4096", "--threads", threads]
                whole = sov_logits(path, ["--seq", toks, "--batch", str(n)], n, 512, common + ["--mode", "alone"])
                steps = sov_logits(path, ["--seq", toks], n, 512, common + ["--mode", "steps"])
                e = rel_err(whole, steps)
                check(e <= LONG_BOUND, "kv %s t=%s: %d-token prefill equals token-by-token decode: %.2e (bound %.0e)"
                      % (kv, threads, n, e, LONG_BOUND))
                if base is None:
                    base = whole
                else:
                    e = rel_err(whole, base)
                    check(e <= LONG_BOUND, "kv %s: t=%s equals t=1: %.2e" % (kv, threads, e))
    finally:
        os.remove(path)


def main():
    if not SOV or not TOOLS:
        print("SOV_BIN and SOV_TOOLS_DIR are required")
        return 1
    os.makedirs(TMP, exist_ok=True)
    reference_cases()
    long_context()
    print("FAIL: %d checks" % failures if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
