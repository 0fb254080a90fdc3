"""A.X K1's additions to deepseek2: the norm after the MoE block and the multi-token-prediction
(MTP) blocks, against the NumPy reference.

1. File format: `sov gen-model --arch deepseek2 --post-norm --mtp 1` writes
   blk.N.post_ffw_norm.weight in the MoE blocks only (A.X K1's post_mlp_layernorm: its dense
   first layer has none), block_count = layers + 1 with nextn_predict_layers 1, and the MTP
   block's decoder tensors plus nextn.{eh_proj (ne [2E, E]), enorm, hnorm, embed_tokens,
   shared_head_norm, shared_head_head}; without the options the file is what it was (no
   post_ffw_norm, no nextn key).
2. Post-MoE norm: logits against reference.py for F32, Q8_0 and Q4_K, float16 and float32
   KV caches and every kernel table this CPU runs (test_forward_reference.py's bounds);
   the reference without the norm disagrees by more than 3 times the bound (F32: 200x and
   more).
3. MTP blocks are left out of the forward pass and the KV cache: the model with an MTP
   block gives bitwise the logits of the same model without it (same seed: the other
   tensors are the same), and the same KV bytes per position.
4. sov_mtp_logits (tools/sov_mtp) over the model's own hidden states against the
   reference's mtp_logits: F32 and Q8_0, every kernel table, with A.X K1's post-norm, and
   with the optional nextn tensors removed (the model's embedding, norm and head instead).
5. llama.cpp (de3ff81) on a file with an MTP block: expected/mtp_llamacpp.json holds its
   greedy tokens and top-16 log-probabilities (record_llamacpp_mtp.mjs, as
   test_moe_llamacpp.py's records); sov (best and scalar kernels) and the reference agree
   within test_moe_llamacpp.py's tolerance, and a reference that runs the MTP block as a
   fourth layer does not. (llama.cpp refuses files with post_ffw_norm: nothing to record.)
6. Refused files, one line and exit 1: nextn_predict_layers >= block_count, a missing
   nextn tensor, an eh_proj of the wrong shape, a post_ffw_norm missing from one MoE
   block; sov_mtp on a model without MTP blocks says so.
(The metadata sweep of test_moe_deepseek.py runs over a file with an MTP block and
post-norms, nextn_predict_layers among its keys.)
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
from test_moe_deepseek import K256, refuse  # noqa: E402

SOV = os.environ.get("SOV_BIN")
TOOLS = os.environ.get("SOV_TOOLS_DIR")
TMP = fwd.TMP

failures = []


def check(cond, what):
    print("%s %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        failures.append(what)


def tmp(name):
    return os.path.join(TMP, "ds_mtp_%d_%s" % (os.getpid(), name))


def file_format():
    path = tmp("fmt.gguf")
    fwd.run([SOV, "gen-model", "--arch", "deepseek2", "--post-norm", "--mtp", "1", "-o", path])
    g = reference.GGUF(path)
    kv = lambda k: g.kv.get("deepseek2." + k)  # noqa: E731
    E, L = kv("embedding_length"), kv("block_count")
    check(L == 5 and kv("nextn_predict_layers") == 1, "block_count 4 + 1 MTP block, nextn_predict_layers 1")
    t = g.tensors
    check("blk.0.post_ffw_norm.weight" not in t, "the dense layer 0 has no post_ffw_norm")
    check(all(list(t["blk.%d.post_ffw_norm.weight" % il].ne) == [E] for il in range(1, L)),
          "every MoE block (the MTP one too) has post_ffw_norm [E]")
    p = "blk.4.nextn."
    want = {"eh_proj": [2 * E, E], "enorm": [E], "hnorm": [E], "embed_tokens": [E, 4096], "shared_head_norm": [E],
            "shared_head_head": [E, 4096]}
    check(all(list(t[p + n + ".weight"].ne) == ne for n, ne in want.items()), "nextn tensors' shapes %r" % want)
    check("blk.4.attn_k_b.weight" in t and "blk.4.ffn_gate_exps.weight" in t and "blk.3.nextn.eh_proj.weight" not in t,
          "the MTP block is a whole MoE decoder block; the others have no nextn tensors")
    os.remove(path)
    fwd.run([SOV, "gen-model", "--arch", "deepseek2", "-o", path])
    g = reference.GGUF(path)
    check("deepseek2.nextn_predict_layers" not in g.kv and g.kv["deepseek2.block_count"] == 4 and
          not any("post_ffw_norm" in n or "nextn" in n for n in g.tensors),
          "gen-model --arch deepseek2 without options: 4 blocks, no post_ffw_norm, no nextn")
    r = subprocess.run([SOV, "run", "-m", path, "-p", "hello", "-n", "4", "--temp", "0"], capture_output=True,
                       text=True, errors="replace", timeout=60)
    check(r.returncode == 0, "and it runs")
    os.remove(path)


def post_norm():
    rng = np.random.default_rng(3)
    print("%-40s %-3s %-11s %9s %9s %9s" % ("case", "kv", "isa", "rel err", "bound", "no norm"))
    for i, (typ, extra) in enumerate((("F32", []), ("Q8_0", []), ("Q4_K", K256))):
        path = tmp("post%d.gguf" % i)
        fwd.gen(path, "deepseek2", typ, ["--post-norm"] + extra)
        model = reference.Model(path)
        tokens = [1] + [int(t) for t in rng.integers(3, model.n_vocab, size=19)]
        for kv in ("f16", "f32"):
            ref = model.logits(tokens, kv_f16=(kv == "f16"))
            noise = fwd.rel_err(model.logits(tokens, kv_f16=(kv == "f16"), act_q8=True), ref)
            bound = fwd.FLOAT_BOUND[kv] + fwd.NOISE_FACTOR * noise
            model.apply_post_norm = False
            without = model.logits(tokens, kv_f16=(kv == "f16"))
            model.apply_post_norm = True
            for isa in fwd.ISAS:
                got = fwd.sov_logits(path, tokens, model.n_vocab, kv == "f32", isa)
                err, err_without = fwd.rel_err(got, ref), fwd.rel_err(got, without)
                decisive, differ = fwd.greedy_differences(got, ref, bound)
                print("%-40s %-3s %-11s %9.2e %9.2e %9.2e  greedy differ %d/%d" %
                      ("post-norm " + typ, kv, isa or "best", err, bound, err_without, differ, decisive))
                # Q4_K's activation rounding makes its bound too wide to tell (without is 2.4x)
                matters = typ == "Q4_K" or err_without > 3 * bound
                check(err <= bound and differ == 0 and matters,
                      "post-norm %s kv %s isa %s within the bound; without the norm 3x out" % (typ, kv, isa or "best"))
        os.remove(path)


def mtp_excluded():
    rng = np.random.default_rng(4)
    tokens = [1] + [int(t) for t in rng.integers(3, 512, size=15)]
    got, kv_bytes = {}, {}
    for n_mtp in ("0", "1"):
        path = tmp("excl%s.gguf" % n_mtp)
        fwd.gen(path, "deepseek2", "Q8_0", ["--post-norm", "--mtp", n_mtp])
        got[n_mtp] = fwd.sov_logits(path, tokens, 512, False, None)
        r = fwd.run([SOV, "bench", "-m", path, "-p", "0", "-n", "1", "-r", "1", "-t", "1", "-d", "16", "--json",
                     "--no-bandwidth"])
        kv_bytes[n_mtp] = [json.loads(x)["kv_bytes_per_token"] for x in r.stdout.splitlines() if x.startswith("{")][0]
        os.remove(path)
    check(np.array_equal(got["0"], got["1"]), "an MTP block in the file leaves the logits bitwise unchanged")
    check(kv_bytes["0"] == kv_bytes["1"], "and the KV cache bytes per position (%d, %d)" % (kv_bytes["0"],
                                                                                            kv_bytes["1"]))


def sov_mtp(path, tokens, isa, depth=0):
    """(logits of MTP module depth (T, n_vocab), the hidden states it was given (T, E))."""
    out, hid = tmp("mtp.bin"), tmp("hid.bin")
    env = dict(os.environ)
    env.pop("SOV_ISA", None)
    if isa:
        env["SOV_ISA"] = isa
    fwd.run([os.path.join(TOOLS, "sov_mtp"), path, "--seq", ",".join(map(str, tokens)), "--depth", str(depth),
             "--out", out, "--hidden", hid], env)
    logits, hidden = np.fromfile(out, dtype="<f4"), np.fromfile(hid, dtype="<f4")
    os.remove(out)
    os.remove(hid)
    T = len(tokens) - 1
    return logits.reshape(T, -1).astype(np.float64), hidden.reshape(T, -1).astype(np.float64)


def strip_optional(path):
    """The file with nextn.embed_tokens / shared_head_norm / shared_head_head renamed away."""
    data = open(path, "rb").read()
    for n in (b"embed_tokens", b"shared_head_norm", b"shared_head_head"):
        data = data.replace(b"nextn." + n, b"nextx." + n)
    with open(path, "wb") as f:
        f.write(data)


def mtp_against_reference():
    rng = np.random.default_rng(6)
    print("%-40s %-11s %9s %9s" % ("case", "isa", "rel err", "bound"))
    cases = [("F32", ["--mtp", "1"], False), ("F32", ["--mtp", "1", "--post-norm"], False),
             ("Q8_0", ["--mtp", "2", "--post-norm"], False), ("F32", ["--mtp", "1", "--q-lora", "-1"], True)]
    for i, (typ, extra, stripped) in enumerate(cases):
        path = tmp("mref%d.gguf" % i)
        fwd.gen(path, "deepseek2", typ, extra)
        if stripped:
            strip_optional(path)
        model = reference.Model(path)
        tokens = [1] + [int(t) for t in rng.integers(3, model.n_vocab, size=17)]
        name = "%s %s%s" % (typ, " ".join(extra), " (model's embed/head)" if stripped else "")
        h_ref = model.hidden(tokens[:-1], kv_f16=True)
        h_bound = fwd.FLOAT_BOUND["f16"] + fwd.NOISE_FACTOR * fwd.rel_err(
            model.hidden(tokens[:-1], kv_f16=True, act_q8=True), h_ref)
        for isa in fwd.ISAS:
            got, hidden = sov_mtp(path, tokens, isa)
            # the module's input: sov's hidden states (checked against the reference's
            # here), so that the comparison below is the MTP module's alone
            h_err = fwd.rel_err(hidden, h_ref)
            ref = model.mtp_logits(hidden, tokens[1:])
            noise = fwd.rel_err(model.mtp_logits(hidden, tokens[1:], act_q8=True), ref)
            bound = fwd.FLOAT_BOUND["f32"] + fwd.NOISE_FACTOR * noise
            err = fwd.rel_err(got, ref)
            decisive, differ = fwd.greedy_differences(got, ref, bound)
            print("%-40s %-11s %9.2e %9.2e  hidden %9.2e  greedy differ %d/%d" %
                  (name[:40], isa or "best", err, bound, h_err, differ, decisive))
            check(err <= bound and differ == 0 and h_err <= h_bound,
                  "MTP %s isa %s: logits within the bound (hidden states within %.2e)" % (name, isa or "best", h_bound))
        if "2" in extra:  # the second module: its own block
            got1, hidden = sov_mtp(path, tokens, None, depth=1)
            ref1 = model.mtp_logits(hidden, tokens[1:], depth=1)
            bound1 = fwd.FLOAT_BOUND["f32"] + fwd.NOISE_FACTOR * fwd.rel_err(
                model.mtp_logits(hidden, tokens[1:], depth=1, act_q8=True), ref1)
            check(fwd.rel_err(got1, ref1) <= bound1 and fwd.rel_err(got1, got) > 0.1,
                  "MTP %s: module 1 within the bound (%.2e <= %.2e), unlike module 0" %
                  (name, fwd.rel_err(got1, ref1), bound1))
        os.remove(path)


def sov_mtp_fails(path, tokens, depth):
    out = tmp("mtp_d.bin")
    r = subprocess.run([os.path.join(TOOLS, "sov_mtp"), path, "--seq", ",".join(map(str, tokens)), "--depth",
                        str(depth), "--out", out], capture_output=True, text=True, errors="replace", timeout=60)
    got = np.fromfile(out, dtype="<f4").reshape(len(tokens) - 1, -1).astype(np.float64) if r.returncode == 0 else None
    if os.path.exists(out):
        os.remove(out)
    return got, r


def refused():
    path = tmp("refuse.gguf")
    fwd.gen(path, "deepseek2", "F32", ["--mtp", "1", "--post-norm"])
    data = open(path, "rb").read()
    refuse(reference_patch(data, "deepseek2.nextn_predict_layers", 3), "nextn_predict_layers = block_count",
           "leaves none of the 3 blocks")
    refuse(data.replace(b"blk.2.nextn.eh_proj", b"blk.2.nextn.eh_proX"), "missing eh_proj",
           "'blk.2.nextn.eh_proj.weight' is missing")
    refuse(data.replace(b"blk.2.nextn.hnorm", b"blk.2.nextn.hnorX"), "missing hnorm",
           "'blk.2.nextn.hnorm.weight' is missing")
    refuse(data.replace(b"blk.2.attn_kv_a_mqa", b"blk.2.attn_kv_a_mqX"), "MTP block without its attention",
           "'blk.2.attn_kv_a_mqa.weight' is missing")
    refuse(data.replace(b"blk.1.post_ffw_norm", b"blk.1.post_ffw_norX"), "post_ffw_norm in some MoE blocks only",
           "'blk.1.post_ffw_norm.weight' is missing")
    # eh_proj declared (E, E): its ne[0] in the tensor table is 2E = 512
    g = reference.GGUF(path)
    ti = g.tensors["blk.2.nextn.eh_proj.weight"]
    name = b"blk.2.nextn.eh_proj.weight"
    at = data.find(len(name).to_bytes(8, "little") + name) + 8 + len(name) + 4
    bad = data[:at] + (256).to_bytes(8, "little") + (512).to_bytes(8, "little") + data[at + 16:]
    check(list(ti.ne) == [512, 256], "eh_proj ne [2E, E] in the table")
    refuse(bad, "eh_proj of the wrong shape", "'blk.2.nextn.eh_proj.weight' has shape")
    os.remove(path)
    path = tmp("nomtp.gguf")
    fwd.gen(path, "deepseek2", "F32", [])
    got, r = sov_mtp_fails(path, [1, 5, 9], 0)
    lines = r.stderr.strip().splitlines()
    check(got is None and r.returncode == 1 and len(lines) == 1 and "no MTP module 0" in lines[0],
          "sov_mtp on a model without MTP blocks: one line (%r)" % r.stderr.strip())
    os.remove(path)


def reference_patch(data, key, value):
    from test_moe import patch_u32
    return patch_u32(data, key, value)


def llamacpp():
    LP_TOL, NEAR_TIE = 5e-3, 1e-3  # as test_moe_llamacpp.py, which says why
    doc = json.load(open(os.path.join(HERE, "expected", "mtp_llamacpp.json")))

    def logprobs(logits):
        m = logits.max(axis=1, keepdims=True)
        return logits - (np.log(np.exp(logits - m).sum(axis=1, keepdims=True)) + m)

    def worst(logp, rec):
        return max(float(np.abs(logp[s, [i for i, _ in top]] - np.array([lp for _, lp in top])).max())
                   for s, top in enumerate(rec["top_logprobs"]))

    for rec in doc["records"]:
        path = tmp("llamacpp.gguf")
        fwd.run([SOV, "gen-model", "-o", path] + rec["gen_model_args"])
        prompt, ids = rec["prompt_ids"], rec["ids"]
        seq = prompt + ids[:-1]
        model = reference.Model(path, n_ctx=256)
        for isa in (None, "scalar"):
            steps = fwd.sov_logits(path, seq, model.n_vocab, False, isa)[len(prompt) - 1:]
            err = worst(logprobs(steps), rec)
            same = sum(int(np.argmax(steps[s])) == ids[s] or np.diff(np.sort(steps[s])[-2:])[0] <= NEAR_TIE *
                       abs(np.sort(steps[s])[-1]) for s in range(len(ids)))
            check(err <= LP_TOL and same == len(ids), "%s isa %s: llama.cpp's log-probabilities within %.0e (worst "
                  "%.2e), greedy tokens agree at %d/%d steps" % (rec["name"], isa or "best", LP_TOL, err, same,
                                                                len(ids)))
        err = worst(logprobs(model.logits(seq, kv_f16=True)[len(prompt) - 1:]), rec)
        off = reference.Model(path, n_ctx=256)
        off.n_layer, off.n_mtp = off.n_layer + off.n_mtp, 0  # the MTP block as one more layer
        err_off = worst(logprobs(off.logits(seq, kv_f16=True)[len(prompt) - 1:]), rec)
        check(err <= LP_TOL and err_off > 10 * LP_TOL, "%s: the reference within %.0e of llama.cpp (%.2e); running "
              "the MTP block as a layer, %.2e away" % (rec["name"], LP_TOL, err, err_off))
        os.remove(path)


def main():
    if not SOV or not TOOLS:
        print("SOV_BIN / SOV_TOOLS_DIR not set: run through ctest")
        return 1
    os.makedirs(TMP, exist_ok=True)
    file_format()
    refused()
    mtp_excluded()
    llamacpp()
    post_norm()
    mtp_against_reference()
    print("FAIL: %d checks" % len(failures) if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
