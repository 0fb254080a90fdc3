"""qwen2moe and deepseek2: file format, forward passes against the NumPy reference with every
kernel table, batch invariance, refused files.

1. `sov gen-model --arch qwen2moe` / `--arch deepseek2` with no other option write what
   llama.cpp's converters write: qwen2moe's expert_shared_feed_forward_length and per layer
   ffn_gate_inp_shexp (ne [E]) and ffn_{gate,up,down}_shexp; deepseek2's MLA keys (head
   count kv 1, key_length kv_lora + rope, value_length kv_lora, key_length_mla,
   value_length_mla, q_lora_rank, kv_lora_rank), the split attn_k_b (ne [nope, kv_lora, H])
   and attn_v_b (ne [kv_lora, Dv, H]), leading_dense_block_count with a dense first layer,
   16 experts in 2 groups, 4 used, exp_probs_b, a shared expert, and the bytes per token
   of the latent KV cache against full heads.
2. Forward passes against reference.py (which decompresses keys and values per head, where
   sov attends in the absorbed form over the latent cache) for F32, F16, Q8_0, Q4_0 and
   Q4_K, DeepSeek's YaRN, float16 and float32 KV caches, every kernel table this CPU runs,
   with the bounds of test_forward_reference.py.
3. Batch invariance: three sequences alone, batched, stepped and mixed give bitwise the
   same logits (best and scalar kernels, 2 threads): grouped routing, shared experts and
   the per-head absorbed products do not depend on the other tokens of a batch (the Q8_0
   deepseek2 file has A.X K1's post-norms and an MTP block).
4. Refused files, one line each: a missing attn_k_b, the older layout (no key_length_mla),
   contradicting MLA sizes, groups that cannot hold the experts used, YaRN without
   yarn_log_multiplier, linear rope scaling on deepseek2.
   Every u32 metadata value of both set to 0, 1, 3, 2^31-1, 2^32-1: loads and runs, or one
   line and exit 1, never a crash (the sanitizer build runs this too); the deepseek2 file
   has post-norms and an MTP block, so nextn_predict_layers is among the keys
   (test_deepseek_mtp.py tests both features).
5. --vocab-from works for both.
"""
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference  # noqa: E402
import test_forward_reference as fwd  # noqa: E402  (gen, sov_logits, bounds, ISAS)
from test_moe import patch_u32, vocab_from_results  # noqa: E402

SOV = os.environ.get("SOV_BIN")
TOOLS = os.environ.get("SOV_TOOLS_DIR")
TMP = fwd.TMP
SHARED = os.environ.get("SOV_SHARED_MODELS", "")

V2LITE = ["--q-lora", "-1", "--gating", "1", "--expert-groups", "-1", "--shared-experts", "2"]
K256 = ["--q-lora", "256", "--kv-lora", "256", "--qk-nope", "256", "--v-head", "256", "--expert-ffn", "256",
        "--ffn", "256", "--heads", "1"]
# (arch, type, extra flags): fwd.gen's shape is dim 256, 2 layers, 4 heads, FFN 512
CASES = [
    ("qwen2moe", "F32", []),
    ("qwen2moe", "Q8_0", ["--tied"]),
    ("qwen2moe", "Q4_K", ["--expert-ffn", "256", "--shared-ffn", "256"]),
    ("deepseek2", "F32", []),
    ("deepseek2", "F32", ["--rope-scaling", "yarn", "--rope-factor", "4"]),
    ("deepseek2", "F16", V2LITE),
    ("deepseek2", "Q8_0", ["--gating", "1", "--expert-groups", "-1"]),
    ("deepseek2", "Q4_0", []),
    ("deepseek2", "Q4_K", K256),
]

failures = []


def check(cond, what):
    print("%s %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        failures.append(what)


def tmp(name):
    return os.path.join(TMP, "moe_ds_%d_%s" % (os.getpid(), name))


def file_format():
    path = tmp("q2.gguf")
    fwd.run([SOV, "gen-model", "--arch", "qwen2moe", "-o", path])
    g = reference.GGUF(path)
    kv = lambda k: g.kv.get("qwen2moe." + k)  # noqa: E731
    E = kv("embedding_length")
    check((kv("expert_count"), kv("expert_used_count"), kv("expert_feed_forward_length"),
           kv("expert_shared_feed_forward_length")) == (8, 2, 64, 128),
          "qwen2moe defaults: 8 experts, 2 used, expert FFN 64, shared expert 128")
    t = g.tensors
    for il in range(kv("block_count")):
        p = "blk.%d." % il
        check(list(t[p + "ffn_gate_inp_shexp.weight"].ne) == [E] and t[p + "attn_q.bias"] is not None,
              p + "ffn_gate_inp_shexp.weight is [E], q/k/v have biases")
        for n, ne in (("gate", [E, 128]), ("up", [E, 128]), ("down", [128, E])):
            check(list(t[p + "ffn_%s_shexp.weight" % n].ne) == ne, p + "ffn_%s_shexp.weight is %r" % (n, ne))
    os.remove(path)

    path = tmp("ds.gguf")
    fwd.run([SOV, "gen-model", "--arch", "deepseek2", "-o", path])
    g = reference.GGUF(path)
    kv = lambda k: g.kv.get("deepseek2." + k)  # noqa: E731
    H, E, L = kv("attention.head_count"), kv("embedding_length"), kv("block_count")
    want = {"attention.head_count_kv": 1, "attention.q_lora_rank": 128, "attention.kv_lora_rank": 128,
            "attention.key_length": 160, "attention.value_length": 128, "attention.key_length_mla": 96,
            "attention.value_length_mla": 64, "rope.dimension_count": 32, "expert_count": 16,
            "expert_used_count": 4, "expert_group_count": 2, "expert_group_used_count": 1,
            "expert_shared_count": 1, "leading_dense_block_count": 1, "expert_gating_func": 2,
            "expert_weights_norm": True}
    for k, v in want.items():
        check(kv(k) == v, "deepseek2 default %s = %r (%r)" % (k, v, kv(k)))
    check(abs(kv("expert_weights_scale") - 2.5) < 1e-6, "deepseek2 default expert_weights_scale 2.5")
    t = g.tensors
    check(list(t["blk.0.attn_k_b.weight"].ne) == [64, 128, H] and list(t["blk.0.attn_v_b.weight"].ne) == [128, 64, H],
          "attn_k_b ne [nope, kv_lora, H], attn_v_b ne [kv_lora, Dv, H]")
    check("blk.0.ffn_gate.weight" in t and "blk.0.ffn_gate_inp.weight" not in t, "layer 0 is dense")
    for il in range(1, L):
        p = "blk.%d." % il
        check(list(t[p + "exp_probs_b.bias"].ne) == [16] and list(t[p + "ffn_gate_exps.weight"].ne) == [E, 64, 16]
              and list(t[p + "ffn_gate_shexp.weight"].ne) == [E, 64] and p + "ffn_gate.weight" not in t,
              p + "MoE: exp_probs_b [16], 16 experts of 64, a shared expert of 64, no dense FFN")
    # the latent KV cache: (kv_lora + rope) values per position and layer, as key and as
    # value, against H full heads of nope + rope keys and Dv values
    r = fwd.run([SOV, "bench", "-m", path, "-p", "0", "-n", "1", "-r", "1", "-t", "1", "-d", "16", "--json",
                 "--no-bandwidth"])
    os.remove(path)
    kv_bpt = [json.loads(line)["kv_bytes_per_token"] for line in r.stdout.splitlines() if line.startswith("{")][0]
    latent, full = L * 2 * 160 * 2, L * H * (96 + 64) * 2  # f16 bytes per position: K and V rows
    check(kv_bpt == 16 * latent, "deepseek2 KV cache: %d bytes per position (latent %d values as K and V per layer), "
          "full heads would need %d (%.1fx)" % (kv_bpt // 16, 160, full, full / latent))


def against_reference():
    rng = np.random.default_rng(5)
    print("%-64s %-3s %-11s %9s %9s %9s" % ("case", "kv", "isa", "rel err", "bound", "q8 noise"))
    for i, (arch, typ, extra) in enumerate(CASES):
        path = tmp("ref%d.gguf" % i)
        fwd.gen(path, arch, typ, extra)
        model = reference.Model(path)
        tokens = [1] + [int(t) for t in rng.integers(3, model.n_vocab, size=23)]
        name = "%s %s %s" % (arch, typ, " ".join(extra))
        for kv in ("f16", "f32"):
            ref = model.logits(tokens, kv_f16=(kv == "f16"))
            noise = fwd.rel_err(model.logits(tokens, kv_f16=(kv == "f16"), act_q8=True), ref)
            bound = fwd.FLOAT_BOUND[kv] + fwd.NOISE_FACTOR * noise
            for isa in fwd.ISAS:
                got = fwd.sov_logits(path, tokens, model.n_vocab, kv == "f32", isa)
                err = fwd.rel_err(got, ref)
                decisive, differ = fwd.greedy_differences(got, ref, bound)
                print("%-64s %-3s %-11s %9.2e %9.2e %9.2e  greedy differ %d/%d" %
                      (name[:64], kv, isa or "best", err, bound, noise, differ, decisive))
                check(err <= bound and differ == 0, "%s kv %s isa %s within the bound" % (name, kv, isa or "best"))
        os.remove(path)


def batch_invariance():
    rng = np.random.default_rng(11)
    seqs = [[1] + [int(t) for t in rng.integers(3, 300, size=n)] for n in (37, 5, 20)]
    for arch, typ, extra in (("qwen2moe", "Q4_0", []), ("deepseek2", "Q8_0", ["--post-norm", "--mtp", "1"]),
                             ("deepseek2", "F32", V2LITE)):
        path = tmp("inv.gguf")
        fwd.gen(path, arch, typ, extra)
        for isa in ("", "scalar"):
            env = dict(os.environ, SOV_ISA=isa)
            results = {}
            for mode in ("alone", "batch", "steps", "mixed"):
                out = tmp("inv_%s.bin" % mode)
                cmd = [os.path.join(TOOLS, "sov_logits"), path, "--mode", mode, "--threads", "2", "--out", out]
                for s in seqs:
                    cmd += ["--seq", ",".join(map(str, s))]
                fwd.run(cmd, env)
                results[mode] = np.fromfile(out, dtype=np.uint32)
                os.remove(out)
            for mode in ("batch", "steps", "mixed"):
                check(np.array_equal(results[mode], results["alone"]),
                      "%s %s isa %s: %s == alone, bitwise" % (arch, typ, isa or "best", mode))
        os.remove(path)


def refuse(data, what, want):
    bad = tmp("bad.gguf")
    with open(bad, "wb") as f:
        f.write(data)
    r = subprocess.run([SOV, "run", "-m", bad, "-p", "hi", "-n", "1"], capture_output=True, text=True,
                       errors="replace", timeout=60)
    os.remove(bad)
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 1 and len(lines) == 1 and want in lines[0],
          "%s: exit %d, one line with %r: %r" % (what, r.returncode, want, r.stderr.strip()))


def refused():
    path = tmp("refuse.gguf")
    fwd.gen(path, "deepseek2", "F32", [])
    data = open(path, "rb").read()
    os.remove(path)
    k_b = b"blk.1.attn_k_b.weight"
    refuse(data.replace(k_b, b"blk.1.attn_k_x.weight"), "missing attn_k_b", "'blk.1.attn_k_b.weight' is missing")
    refuse(data.replace(b"deepseek2.attention.key_length_mla", b"deepseek2.attention.key_length_xyz"),
           "no key_length_mla", "older layout")
    refuse(patch_u32(data, "deepseek2.attention.key_length", 192), "key_length != kv_lora + rope", "sizes disagree")
    refuse(patch_u32(data, "deepseek2.expert_group_count", 3), "16 experts in 3 groups", "cannot form 3 groups")
    refuse(patch_u32(data, "deepseek2.expert_used_count", 9), "9 experts used in 1 group of 8", "do not fit")
    refuse(patch_u32(data, "deepseek2.expert_shared_count", 2), "shared count against the tensors",
           "ffn_gate_shexp.weight' has shape")
    path = tmp("yarn.gguf")
    fwd.gen(path, "deepseek2", "F32", ["--rope-scaling", "yarn", "--rope-factor", "4"])
    refuse(open(path, "rb").read().replace(b"yarn_log_multiplier", b"yarn_log_multiplieX"),
           "YaRN without yarn_log_multiplier", "yarn_log_multiplier")
    os.remove(path)
    path = tmp("linear.gguf")
    fwd.gen(path, "deepseek2", "F32", ["--rope-scaling", "linear", "--rope-factor", "4"])
    refuse(open(path, "rb").read(), "linear rope scaling", "supported as YaRN")
    os.remove(path)
    path = tmp("q2.gguf")
    fwd.gen(path, "qwen2moe", "F32", [])
    data = open(path, "rb").read()
    os.remove(path)
    refuse(data.replace(b"blk.1.ffn_gate_inp_shexp.weight", b"blk.1.ffn_gate_inp_shexq.weight"),
           "qwen2moe without the shared-expert gate", "'blk.1.ffn_gate_inp_shexp.weight' is missing")


def malformed_sweep():
    """Every u32 key of a qwen2moe and a deepseek2 file set to 0, 1, 3, 2^31-1 and 2^32-1 in
    turn: the model loads and runs (or stops with one line, e.g. a context of 1 too small
    for the prompt), or is refused at load with one line and exit 1; never a crash, a hang
    or (under the sanitizers) a bad access."""
    # deepseek2 with A.X K1's post-norms and an MTP block: nextn_predict_layers is swept too
    for arch, extra in (("deepseek2", ["--expert-groups", "2", "--post-norm", "--mtp", "1"]), ("qwen2moe", [])):
        path = tmp("sweep.gguf")
        fwd.run([SOV, "gen-model", "-o", path, "--arch", arch, "--dim", "64", "--layers", "2", "--heads", "2",
                 "--kv-heads", "1", "--vocab", "300", "--ffn", "64", "--q-lora", "32", "--kv-lora", "32",
                 "--qk-nope", "32", "--v-head", "32", "--rope-dims", "16"] + extra
                if arch == "deepseek2" else
                [SOV, "gen-model", "-o", path, "--arch", arch, "--dim", "64", "--layers", "2", "--heads", "2",
                 "--kv-heads", "1", "--vocab", "300", "--ffn", "64"])
        g = reference.GGUF(path)
        data = open(path, "rb").read()
        os.remove(path)
        keys = [k for k, v in g.kv.items() if k.startswith(arch + ".") and isinstance(v, int) and
                not isinstance(v, bool)]
        bad_runs, n = [], 0
        for key in keys:
            for value in (0, 1, 3, 2**31 - 1, 2**32 - 1):
                try:
                    patched = patch_u32(data, key, value)
                except AssertionError:  # not a u32
                    break
                bad = tmp("sweep_bad.gguf")
                with open(bad, "wb") as f:
                    f.write(patched)
                r = subprocess.run([SOV, "run", "-m", bad, "-p", "hi", "-n", "2"], capture_output=True, text=True,
                                   errors="replace", timeout=60)
                os.remove(bad)
                n += 1
                lines = [x for x in r.stderr.strip().splitlines() if x.startswith("sov run:")]
                loaded = "model: " in r.stderr  # refused at load: that one line is all
                sanitizer = "Sanitizer" in r.stderr or "runtime error" in r.stderr
                if sanitizer or r.returncode not in (0, 1) or (r.returncode == 1 and (len(lines) != 1 or (
                        not loaded and len(r.stderr.strip().splitlines()) != 1))):
                    bad_runs.append("%s=%d: exit %d %r" % (key, value, r.returncode, r.stderr.strip()[-300:]))
        check(not bad_runs and n > 40, "%s: %d patched metadata values load or are refused in one line%s" %
              (arch, n, (": " + "; ".join(bad_runs[:3])) if bad_runs else ""))


def vocab_from():
    for ok, what in vocab_from_results((("qwen2moe", []), ("deepseek2", []))):
        check(ok, what)


def main():
    if not SOV or not TOOLS:
        print("SOV_BIN / SOV_TOOLS_DIR not set: run through ctest")
        return 1
    os.makedirs(TMP, exist_ok=True)
    file_format()
    refused()
    malformed_sweep()
    vocab_from()
    batch_invariance()
    against_reference()
    print("FAIL: %d checks" % len(failures) if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
