"""Mixture of experts: Mixtral (llama with experts) and qwen3moe, checked against the NumPy
reference and for routing determinism.

1. `sov gen-model --arch qwen3moe` (no other option) and `--arch llama --experts N
   --experts-used K` write what llama.cpp's converter writes: <arch>.expert_count /
   expert_used_count (/ expert_feed_forward_length for qwen3moe), per layer an F32 router
   blk.N.ffn_gate_inp.weight (ne [E, X]) and 3-D blk.N.ffn_{gate,up}_exps.weight (ne [E, Fx,
   X]) and ffn_down_exps.weight (ne [Fx, E, X]), no dense ffn_gate/up/down.
2. Whole forward passes against reference.py (softmax routing, top-k with ties to the lower
   index, renormalised weights, each token through its k experts) with the measures and
   bounds of test_forward_reference.py, for F32 and quantized experts (Q8_0, Q4_0, Q4_K),
   both KV cache types and every kernel table this CPU runs. The routing is shown to
   matter: the reference without renormalisation, or with one expert fewer, is > 100x the
   bound away from sov.
3. Batch invariance with routing: three sequences alone, batched, stepped and mixed give
   bitwise the same logits (best kernels and scalar, 2 threads), so a token's experts and
   their sum do not depend on the other tokens sharing an expert's grouped product.
4. Decode cost counts active experts: `sov bench`'s bytes per token grows by exactly the
   router when the expert count doubles at the same k, and by k' - k experts' three
   matrices when k grows.
5. A file missing blk.1.ffn_up_exps.weight is refused with one line naming it; so are
   expert counts that contradict the tensors or are out of range.
6. --vocab-from works for both.
"""
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference  # noqa: E402
import test_forward_reference as fwd  # noqa: E402  (its cases' machinery: gen, sov_logits, bounds)

SOV = os.environ.get("SOV_BIN")
TOOLS = os.environ.get("SOV_TOOLS_DIR")
TMP = fwd.TMP
SHARED = os.environ.get("SOV_SHARED_MODELS", "")

MIXTRAL = ["--experts", "8", "--experts-used", "2", "--ffn", "64"]
# (arch, type, extra flags, tokens): gen()'s shape is dim 256, 2 layers, 4 heads, 2 KV heads
CASES = [
    ("qwen3moe", "F32", ["--head-dim", "128"], 24),
    ("qwen3moe", "Q8_0", ["--tied"], 24),
    ("qwen3moe", "Q4_K", ["--expert-ffn", "256", "--experts", "16", "--experts-used", "4"], 24),
    ("llama", "F32", MIXTRAL, 24),
    ("llama", "Q4_0", MIXTRAL, 24),
]

failures = []


def check(cond, what):
    print("%s %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        failures.append(what)


def tmp(name):
    return os.path.join(TMP, "moe_%d_%s" % (os.getpid(), name))


def file_format():
    path = tmp("default.gguf")
    fwd.run([SOV, "gen-model", "--arch", "qwen3moe", "-o", path])
    g = reference.GGUF(path)
    kv = lambda k: g.kv.get("qwen3moe." + k)  # noqa: E731
    check(kv("expert_count") == 8 and kv("expert_used_count") == 2 and kv("expert_feed_forward_length") == 64,
          "qwen3moe defaults: 8 experts, 2 used, expert FFN 64 (%r %r %r)" %
          (kv("expert_count"), kv("expert_used_count"), kv("expert_feed_forward_length")))
    E = kv("embedding_length")
    for il in range(kv("block_count")):
        p = "blk.%d." % il
        t = g.tensors
        check(p + "ffn_gate_inp.weight" in t and list(t[p + "ffn_gate_inp.weight"].ne) == [E, 8]
              and t[p + "ffn_gate_inp.weight"].type_name == "F32", p + "ffn_gate_inp.weight F32 [E, 8]")
        for n, ne in (("gate", [E, 64, 8]), ("up", [E, 64, 8]), ("down", [64, E, 8])):
            name = p + "ffn_%s_exps.weight" % n
            check(name in t and list(t[name].ne) == ne, "%s is %r" % (name, ne))
        check(not any(p + "ffn_%s.weight" % n in t for n in ("gate", "up", "down")), p + " has no dense FFN")
        check(p + "attn_q_norm.weight" in t, p + "attn_q_norm.weight (qwen3 attention)")
    os.remove(path)
    path = tmp("mixtral.gguf")
    fwd.run([SOV, "gen-model", "-o", path, "--experts", "4", "--experts-used", "2", "--ffn", "128"])
    g = reference.GGUF(path)
    check(g.kv.get("llama.expert_count") == 4 and g.kv.get("llama.expert_used_count") == 2,
          "llama --experts 4 --experts-used 2 writes llama.expert_count / expert_used_count")
    check(list(g.tensors["blk.0.ffn_down_exps.weight"].ne) == [128, 256, 4], "Mixtral: experts are --ffn wide")
    os.remove(path)


def against_reference():
    rng = np.random.default_rng(3)
    print("%-64s %-3s %-11s %9s %9s %9s" % ("case", "kv", "isa", "rel err", "bound", "q8 noise"))
    for i, (arch, typ, extra, n_tok) in enumerate(CASES):
        path = tmp("ref%d.gguf" % i)
        fwd.gen(path, arch, typ, extra)
        model = reference.Model(path)
        tokens = [1] + [int(t) for t in rng.integers(3, model.n_vocab, size=n_tok - 1)]
        sel, _ = model.route(np.zeros((1, model.n_expert)))
        check(list(sel[0]) == list(range(model.n_expert_used)), "reference: ties go to the lower index")
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
                      (name, kv, isa or "best", err, bound, noise, differ, decisive))
                check(err <= bound and differ == 0, "%s kv %s isa %s within the bound" % (name, kv, isa or "best"))
            if kv == "f32" and i in (0, 3):  # the routing really is what is computed
                ref_unnorm = reference.Model(path)
                ref_unnorm.expert_weights_norm = False
                e1 = fwd.rel_err(got, ref_unnorm.logits(tokens))
                ref_k = reference.Model(path)
                ref_k.n_expert_used -= 1
                e2 = fwd.rel_err(got, ref_k.logits(tokens))
                check(e1 > 100 * bound and e2 > 100 * bound,
                      "%s: reference without renormalisation %.2e, with k-1 experts %.2e: both > 100x bound" %
                      (name, e1, e2))
        os.remove(path)


def batch_invariance():
    rng = np.random.default_rng(9)
    seqs = [[1] + [int(t) for t in rng.integers(3, 300, size=n)] for n in (37, 5, 20)]
    for arch, typ, extra in (("qwen3moe", "Q4_0", ["--experts", "16", "--experts-used", "4"]),
                             ("llama", "Q8_0", MIXTRAL), ("qwen3moe", "Q4_K", ["--expert-ffn", "256"])):
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


def bytes_per_token(extra):
    path = tmp("bpt.gguf")
    fwd.gen(path, "qwen3moe", "Q8_0", extra)
    r = fwd.run([SOV, "bench", "-m", path, "-p", "0", "-n", "1", "-r", "1", "-t", "1", "--json", "--no-bandwidth"])
    g = reference.GGUF(path)
    os.remove(path)
    bpt = [json.loads(line)["bytes_per_token"] for line in r.stdout.splitlines() if line.startswith("{")]
    return bpt[0], g


def active_bytes():
    b8, g = bytes_per_token(["--experts", "8", "--experts-used", "2"])
    b16, _ = bytes_per_token(["--experts", "16", "--experts-used", "2"])
    b4used, _ = bytes_per_token(["--experts", "8", "--experts-used", "4"])
    L = g.kv["qwen3moe.block_count"]
    E = g.kv["qwen3moe.embedding_length"]
    router = 4 * E  # F32 bytes per expert row of the router
    t = g.tensors
    one_expert = sum(t["blk.0.ffn_%s_exps.weight" % n].n_bytes for n in ("gate", "up", "down")) // 8
    check(b16 - b8 == L * 8 * router, "16 vs 8 experts, k=2: bytes/token grow by the router only (%d)" % (b16 - b8))
    check(b4used - b8 == L * 2 * one_expert,
          "k=4 vs k=2: bytes/token grow by 2 experts per layer (%d == %d)" % (b4used - b8, L * 2 * one_expert))


def missing_expert():
    path = tmp("missing.gguf")
    fwd.gen(path, "qwen3moe", "F32", [])
    data = open(path, "rb").read()
    os.remove(path)
    name = b"blk.1.ffn_up_exps.weight"
    check(data.count(name) == 1, "%s appears once" % name.decode())
    bad = tmp("missing_bad.gguf")
    with open(bad, "wb") as f:
        f.write(data.replace(name, name.replace(b"exps", b"exqs")))
    r = subprocess.run([SOV, "run", "-m", bad, "-p", "hi", "-n", "1"], capture_output=True, text=True, errors="replace", timeout=60)
    os.remove(bad)
    lines = r.stderr.strip().splitlines()
    check(0 < r.returncode < 128, "missing expert tensor: exit code %d" % r.returncode)
    check(len(lines) == 1 and name.decode() in lines[0] and "missing" in lines[0],
          "missing expert tensor: one line naming it: %r" % r.stderr.strip())


def patch_u32(data, key, value):
    """The file with the u32 value of metadata key replaced in place."""
    k = key.encode()
    at = data.find(len(k).to_bytes(8, "little") + k)
    assert at >= 0 and data[at + 8 + len(k):at + 12 + len(k)] == (4).to_bytes(4, "little"), key
    v = at + 12 + len(k)
    return data[:v] + int(value).to_bytes(4, "little") + data[v + 4:]


def malformed():
    """Metadata that contradicts the tensors or is out of range: one line, exit 1, no crash."""
    path = tmp("malformed.gguf")
    fwd.gen(path, "qwen3moe", "F32", [])
    data = open(path, "rb").read()
    os.remove(path)
    cases = [("qwen3moe.expert_used_count", 9, "more than the 8 experts"),       # k > X
             ("qwen3moe.expert_used_count", 0, "out of range"),
             ("qwen3moe.expert_count", 7, "ffn_gate_inp.weight"),        # tensors hold 8
             ("qwen3moe.expert_count", 5000, "more than 4096"),
             ("qwen3moe.expert_feed_forward_length", 32, "ffn_gate_exps.weight' has shape")]
    for key, value, want in cases:
        bad = tmp("malformed_bad.gguf")
        with open(bad, "wb") as f:
            f.write(patch_u32(data, key, value))
        r = subprocess.run([SOV, "run", "-m", bad, "-p", "hi", "-n", "1"], capture_output=True, text=True,
                           errors="replace", timeout=60)
        os.remove(bad)
        lines = r.stderr.strip().splitlines()
        check(r.returncode == 1 and len(lines) == 1 and want in lines[0],
              "%s = %d: exit %d, %r" % (key, value, r.returncode, r.stderr.strip()))


def vocab_from_results(cases):
    """(ok, what) for each (arch, gen-model options) of `cases` written with stories260K's
    vocabulary: the embedding has its rows and the model runs; [] when the file is absent."""
    src = os.path.join(SHARED, "stories260K.gguf")
    if not os.path.exists(src):
        print("skip --vocab-from (no %s)" % src)
        return []
    n_src = len(reference.GGUF(src).kv["tokenizer.ggml.tokens"])
    results = []
    for arch, extra in cases:
        path = tmp("vocab.gguf")
        fwd.run([SOV, "gen-model", "-o", path, "--arch", arch, "--vocab-from", src] + extra)
        results.append((reference.GGUF(path).tensors["token_embd.weight"].ne[1] == n_src,
                        "%s --vocab-from: %d rows" % (arch, n_src)))
        r = subprocess.run([SOV, "run", "-m", path, "-p", "Once upon a time", "-n", "4", "--temp", "0"],
                           capture_output=True, text=True, errors="replace", timeout=60)
        results.append((r.returncode == 0,
                        "%s --vocab-from: the model runs (%s)" % (arch, r.stderr.strip().splitlines()[-1:])))
        os.remove(path)
    return results


def vocab_from():
    for ok, what in vocab_from_results((("qwen3moe", []), ("llama", ["--experts", "4", "--experts-used", "2"]))):
        check(ok, what)


def main():
    if not SOV or not TOOLS:
        print("SOV_BIN / SOV_TOOLS_DIR not set: run through ctest")
        return 1
    os.makedirs(TMP, exist_ok=True)
    file_format()
    missing_expert()
    malformed()
    active_bytes()
    vocab_from()
    batch_invariance()
    against_reference()
    print("FAIL: %d checks" % len(failures) if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
