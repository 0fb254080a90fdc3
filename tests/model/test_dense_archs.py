"""The gemma3, phi3 and exaone4 architectures: what sets each apart, checked one by one.

1. `sov gen-model --arch ARCH -o F` with no other option writes a small model that sov
   runs, with the tensor names and metadata keys llama.cpp's converter writes for the
   family (gemma3: pre- and post-norms, q/k norms, attention.sliding_window and
   rope.freq_base_swa; phi3: fused blk.N.attn_qkv and a (2F, E) blk.N.ffn_up,
   rope_factors_long/short with rope.scaling.attn_factor and original_context_length;
   exaone4: no attn_norm / ffn_norm, post-norms, q/k norms, a per-layer bool
   sliding_window_pattern).
2. Each distinguishing feature is really computed: sov's logits match the NumPy reference
   (reference.py) within 1e-5 (float32 KV cache, as test_forward_reference), and are far
   (> 100x that) from the reference with the feature switched off: gemma3's sliding
   window, sqrt(E) embedding scale, GELU (vs SiLU), local RoPE base and post-norms;
   phi3's LongRoPE factor choice (long vs short by the context size) and attention
   factor; exaone4's sliding window and its global layers' missing RoPE (NoPE).
3. A file missing an architecture's own tensor is refused with one line naming it, and
   an unsupported variant (gemma3 with final_logit_softcapping) with one line naming it.
4. --vocab-from copies a real model's vocabulary into a file of each architecture that
   then runs.
"""
import os
import struct
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


def tmp(name):
    return os.path.join(TMP, "dense_%s_%d.gguf" % (name, os.getpid()))


def gen(path, arch, *extra, small=True):
    dims = ["--dim", "256", "--layers", "3", "--heads", "4", "--kv-heads", "2", "--ffn", "512", "--vocab", "512",
            "--seed", "13"] if small else []
    r = subprocess.run([SOV, "gen-model", "-o", path, "--arch", arch] + dims + list(extra), capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError("gen-model failed: %s" % r.stderr.strip())


def sov_logits(path, tokens, n_vocab, n_ctx=None):
    out = os.path.join(TMP, "dense_logits_%d.bin" % os.getpid())
    cmd = [os.path.join(TOOLS, "sov_logits"), path, "--seq", ",".join(map(str, tokens)), "--out", out, "--kv-f32"]
    if n_ctx:
        cmd += ["--ctx", str(n_ctx)]
    subprocess.run(cmd, check=True, capture_output=True)
    got = np.fromfile(out, dtype="<f4").astype(np.float64)
    os.remove(out)
    return got.reshape(len(tokens), n_vocab)


def rel_err(a, ref):
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def run_ok(path, what):
    r = subprocess.run([SOV, "run", "-m", path, "-p", "Once upon a time", "-n", "4", "--temp", "0"],
                       capture_output=True, text=True, errors="replace", timeout=60)
    check(r.returncode == 0, "%s: sov run works (%s)" % (what, r.stderr.strip().splitlines()[-1:]))


# ---- 1. the default file of each architecture ----

LAYER_TENSORS = {
    "gemma3": ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_q_norm", "attn_k_norm", "attn_output",
               "post_attention_norm", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm"],
    "phi3": ["attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"],
    "exaone4": ["attn_q", "attn_k", "attn_v", "attn_q_norm", "attn_k_norm", "attn_output", "post_attention_norm",
                "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm"],
}
GLOBAL_TENSORS = {
    "gemma3": ["token_embd", "output_norm", "output"],
    "phi3": ["token_embd", "rope_factors_long", "rope_factors_short", "output_norm", "output"],
    "exaone4": ["token_embd", "output_norm", "output"],
}


def default_file(arch):
    path = tmp("default_" + arch)
    gen(path, arch, small=False)
    g = reference.GGUF(path)
    n_layer = g.kv.get(arch + ".block_count")
    check(g.kv.get("general.architecture") == arch and isinstance(n_layer, int) and n_layer >= 1,
          "%s: general.architecture, %d layers" % (arch, n_layer or 0))
    want = {t + ".weight" for t in GLOBAL_TENSORS[arch]}
    want |= {"blk.%d.%s.weight" % (il, t) for il in range(n_layer or 0) for t in LAYER_TENSORS[arch]}
    check(set(g.tensors) == want, "%s: llama.cpp's tensor names (extra %s, missing %s)" %
          (arch, sorted(set(g.tensors) - want)[:4], sorted(want - set(g.tensors))[:4]))
    E, F = g.kv[arch + ".embedding_length"], g.kv[arch + ".feed_forward_length"]
    H, Hkv = g.kv[arch + ".attention.head_count"], g.kv[arch + ".attention.head_count_kv"]
    D = g.kv.get(arch + ".attention.key_length", E // H)
    if arch == "phi3":
        check(list(g.tensors["blk.0.attn_qkv.weight"].ne) == [E, (H + 2 * Hkv) * D], "phi3: attn_qkv is [E, (H+2Hkv)D]")
        check(list(g.tensors["blk.0.ffn_up.weight"].ne) == [E, 2 * F], "phi3: ffn_up is [E, 2F] (gate and up)")
        n_rot = g.kv[arch + ".rope.dimension_count"]
        check(list(g.tensors["rope_factors_long.weight"].ne) == [n_rot // 2], "phi3: rope factors of n_rot/2")
        for k in ("rope.scaling.attn_factor", "rope.scaling.original_context_length", "attention.sliding_window"):
            check(arch + "." + k in g.kv, "phi3: %s.%s present" % (arch, k))
    else:
        check(g.kv.get(arch + ".attention.sliding_window", 0) > 0, "%s: attention.sliding_window set" % arch)
        pat = g.kv.get(arch + ".attention.sliding_window_pattern")
        check(pat is not None, "%s: attention.sliding_window_pattern present" % arch)
        if arch == "exaone4":
            check(isinstance(pat, np.ndarray) and pat.dtype == bool and len(pat) == n_layer and not pat[-1],
                  "exaone4: pattern is one bool per layer, the last one global (%r)" % (pat,))
        else:
            check(arch + ".rope.freq_base_swa" in g.kv and g.kv.get(arch + ".attention.key_length") == D,
                  "gemma3: rope.freq_base_swa and attention.key_length present")
        for n in ("attn_q_norm", "attn_k_norm"):
            check(list(g.tensors["blk.0.%s.weight" % n].ne) == [D], "%s: %s of the head size" % (arch, n))
    run_ok(path, "%s default file" % arch)
    os.remove(path)


# ---- 2. every feature computed ----

def features(arch):
    path = tmp("feat_" + arch)
    gen(path, arch, *(["--swa", "8"] if arch != "phi3" else []))
    model = reference.Model(path)
    rng = np.random.default_rng(5)
    tokens = [1] + [int(t) for t in rng.integers(3, model.n_vocab, size=39)]  # 40 > the window of 8
    got = sov_logits(path, tokens, model.n_vocab)
    err = rel_err(got, model.logits(tokens))
    check(err <= BOUND, "%s: sov vs reference: rel err %.2e <= %.0e" % (arch, err, BOUND))

    def differs(what, change, undo):
        change(model)
        far = rel_err(got, model.logits(tokens))
        undo(model)
        check(far > 100 * BOUND, "%s: sov vs reference WITHOUT %s: rel err %.2e > %.0e" % (arch, what, far,
                                                                                             100 * BOUND))

    def setter(attr, value):
        old = getattr(model, attr)
        return (lambda m: setattr(m, attr, value)), (lambda m: setattr(m, attr, old))

    if arch in ("gemma3", "exaone4"):
        check(any(model.swa) and not all(model.swa), "%s: local and global layers (%r)" % (arch, model.swa))
        differs("the sliding window", *setter("use_swa", False))
        differs("post-norms", *setter("post_norms", False))
    if arch == "gemma3":
        differs("the sqrt(E) embedding scale", *setter("embd_scale", 1.0))
        differs("GELU (SiLU instead)", *setter("gelu", False))
        differs("the local RoPE base", *setter("rope_base_swa", model.rope_base))
    if arch == "exaone4":
        differs("NoPE on global layers", lambda m: setattr(m, "_layer_rope", lambda il, pos: m.rope_cos_sin(pos)),
                lambda m: delattr(m, "_layer_rope"))
    if arch == "phi3":
        # the default context (2048) is longer than the original (512): long factors
        check(model.n_ctx > model.n_ctx_orig, "phi3: default context %d > original %d" % (model.n_ctx,
                                                                                          model.n_ctx_orig))
        short = reference.Model(path, n_ctx=256)
        far = rel_err(got, short.logits(tokens))
        check(far > 100 * BOUND, "phi3: sov (long factors) vs reference with short factors: %.2e" % far)
        err_short = rel_err(sov_logits(path, tokens, model.n_vocab, n_ctx=256), short.logits(tokens))
        check(err_short <= BOUND, "phi3: with a context of 256 sov takes the short factors: %.2e" % err_short)
        differs("the LongRoPE attention factor", *setter("attn_factor", 1.0))
    os.remove(path)


# ---- 3. refusals ----

def refused(path, needle, what):
    r = subprocess.run([SOV, "run", "-m", path, "-p", "hi", "-n", "1"], capture_output=True, text=True, errors="replace", timeout=60)
    lines = r.stderr.strip().splitlines()
    check(0 < r.returncode < 128, "%s: exit code %d" % (what, r.returncode))
    check(len(lines) == 1 and needle in lines[0], "%s: one line naming %s: %r" % (what, needle, r.stderr.strip()))


def missing_tensors():
    for arch, name, renamed in (("gemma3", "blk.1.post_ffw_norm.weight", "blk.1.post_ffw_nrom.weight"),
                                ("gemma3", "blk.0.attn_q_norm.weight", "blk.0.attn_q_nrom.weight"),
                                ("phi3", "blk.1.ffn_up.weight", "blk.1.ffn_uq.weight"),
                                ("phi3", "rope_factors_short.weight", "rope_factors_shrt_.weight"),
                                ("exaone4", "blk.0.post_attention_norm.weight", "blk.0.post_attention_nrom.weight"),
                                ("exaone4", "blk.2.attn_k_norm.weight", "blk.2.attn_k_nrom.weight")):
        path = tmp("miss_" + arch)
        gen(path, arch)
        data = open(path, "rb").read()
        check(data.count(name.encode()) == 1 and len(name) == len(renamed), "%s appears once in the file" % name)
        with open(path, "wb") as f:  # renamed in place (same length): the file lacks the tensor
            f.write(data.replace(name.encode(), renamed.encode()))
        refused(path, name, "%s without %s" % (arch, name))
        os.remove(path)


def with_key(path, key, f32):
    """Rewrites a GGUF with one more float32 key: the key/value section grows, the tensor
    table follows unchanged (its offsets are relative to the data section), the data
    section is re-aligned."""
    g = reference.GGUF(path)
    data = open(path, "rb").read()
    first = next(iter(g.tensors))
    at = data.index(struct.pack("<Q", len(first)) + first.encode())  # the tensor table starts here
    # each entry: name (u64 length + bytes), u32 n_dims, n_dims x i64, i32 type, u64 offset
    table = sum(8 + len(t.name.encode()) + 4 + 8 * len(t.ne) + 4 + 8 for t in g.tensors.values())
    n_kv = struct.unpack_from("<q", data, 16)[0]
    kv = struct.pack("<Q", len(key)) + key.encode() + struct.pack("<i", 6) + struct.pack("<f", f32)
    head = data[:16] + struct.pack("<q", n_kv + 1) + data[24:at] + kv + data[at:at + table]
    with open(path, "wb") as f:
        f.write(head + b"\0" * (-len(head) % g.alignment) + data[g.data_start:])


def unsupported_softcap():
    path = tmp("softcap")
    gen(path, "gemma3")
    with_key(path, "gemma3.final_logit_softcapping", 30.0)
    g = reference.GGUF(path)  # still a valid file
    check(g.kv.get("gemma3.final_logit_softcapping") == 30.0, "gemma3 file with final_logit_softcapping = 30")
    refused(path, "final_logit_softcapping", "gemma3 with logit softcapping")
    os.remove(path)


# ---- 4. --vocab-from ----

def vocab_from(arch):
    src = os.path.join(SHARED, "stories260K.gguf")
    if not os.path.exists(src):
        print("skip --vocab-from (no %s)" % src)
        return
    path = tmp("vocab_" + arch)
    gen(path, arch, "--vocab-from", src, small=False)
    n_src = len(reference.GGUF(src).kv["tokenizer.ggml.tokens"])
    check(reference.GGUF(path).tensors["token_embd.weight"].ne[1] == n_src,
          "%s --vocab-from: %d embedding rows" % (arch, n_src))
    run_ok(path, "%s --vocab-from" % arch)
    os.remove(path)


def main():
    if not SOV or not TOOLS:
        print("SOV_BIN / SOV_TOOLS_DIR not set: run through ctest")
        return 1
    os.makedirs(TMP, exist_ok=True)
    for arch in ("gemma3", "phi3", "exaone4"):
        default_file(arch)
        features(arch)
        vocab_from(arch)
    missing_tensors()
    unsupported_softcap()
    print("FAIL: %d checks" % len(failures) if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
