"""qwen2moe and deepseek2 against llama.cpp: greedy tokens and next-token log-probabilities
on the same synthetic files.

expected/moe_llamacpp.json holds, per model, the `sov gen-model` arguments (synthetic
vocabulary, fixed seed; F32 or F16 weights), 24 prompt ids, llama.cpp's 32 greedy tokens
and, at each of those steps, its 16 most likely next tokens with their log-probabilities
(recorded by record_llamacpp_moe.mjs through node-llama-cpp, llama.cpp de3ff81, KV cache
F16). The models: qwen2moe (shared expert with its sigmoid gate, no renormalisation), a
DeepSeek-V3-shaped deepseek2 (q_lora, sigmoid gating with exp_probs_b, grouped top-k,
weight scale, shared expert, a dense first layer), a DeepSeek-V2-Lite-shaped one (plain
attn_q, softmax gating, no groups, two shared experts, F16 weights) and the V3 shape with
DeepSeek's YaRN (factor 4, mscale_all_dim 1: the attention scale times mscale^2).

This test writes the identical file again, runs sov over the prompt and llama.cpp's tokens
(tools/sov_logits, KV cache F16, best and scalar kernels) and checks at every step:
- the log-probabilities of llama.cpp's 16 tokens agree with sov's log-softmax to LP_TOL
  (log-probabilities are the logits up to one constant, so this compares logits; llama.cpp
  and sov compute in float32 with different summation orders);
- sov's argmax is llama.cpp's token, unless the two best are within NEAR_TIE of each other.
LP_TOL: llama.cpp's CPU products round the activations to float16 where the other operand
is float16 (the F16 weights, the F16 KV cache: ggml's vec_dot_f16), sov keeps them in
float32, so the two differ by ~1e-3 in log-probability (0.5e-3 for F32 weights).

The NumPy reference (reference.py) is held to the same records, and is shown to be able to
fail them: with one distinguishing feature switched off (qwen2moe's shared-expert gate,
DeepSeek-V3's selection bias, expert groups and weight scale, V2-Lite's shared experts,
YaRN's attention scale) it
is more than 10 x LP_TOL away from llama.cpp.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

LP_TOL = 5e-3
NEAR_TIE = 1e-3

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import reference  # noqa: E402
sov = os.environ.get("SOV_BIN")
tools = os.environ.get("SOV_TOOLS_DIR")
tmp = os.environ.get("SOV_TEST_TMP") or tempfile.gettempdir()
if not sov or not tools:
    print("SOV_BIN / SOV_TOOLS_DIR not set: run through ctest")
    sys.exit(1)
os.makedirs(tmp, exist_ok=True)
doc = json.load(open(os.path.join(here, "expected", "moe_llamacpp.json")))

failures = []


def logprobs(logits):
    """log-softmax of each row."""
    m = logits.max(axis=1, keepdims=True)
    return logits - (np.log(np.exp(logits - m).sum(axis=1, keepdims=True)) + m)


def worst_error(logp, rec):
    """The largest difference between llama.cpp's recorded log-probabilities and logp's."""
    return max(float(np.abs(logp[s, [i for i, _ in top]] - np.array([lp for _, lp in top])).max())
               for s, top in enumerate(rec["top_logprobs"]))


# per model: a reference switched off from its distinguishing features, one at a time
FEATURES = {
    "qwen2moe": [("without the shared-expert gate", lambda m: setattr(m, "shexp_gate", False)),
                 ("with renormalised weights", lambda m: setattr(m, "expert_weights_norm", True))],
    "deepseek2-v3": [("without exp_probs_b", lambda m: setattr(m, "apply_bias", False)),
                     ("without expert groups", lambda m: setattr(m, "n_group", 1)),
                     ("without the weight scale", lambda m: setattr(m, "expert_weights_scale", 1.0))],
    "deepseek2-v2lite": [("without the shared experts", lambda m: setattr(m, "n_ff_shexp", 0))],
    "deepseek2-yarn": [("without YaRN's attention scale", lambda m: setattr(m, "kq_scale", m.qk_head ** -0.5))],
}


def check(cond, what):
    print("%s %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        failures.append(what)


for rec in doc["records"]:
    path = os.path.join(tmp, "moe_llamacpp_%s_%d.gguf" % (rec["name"], os.getpid()))
    subprocess.run([sov, "gen-model", "-o", path] + rec["gen_model_args"], check=True, capture_output=True)
    prompt, ids = rec["prompt_ids"], rec["ids"]
    seq = prompt + ids[:-1]
    for isa in ("", "scalar"):
        out = os.path.join(tmp, "moe_llamacpp_%d.bin" % os.getpid())
        env = dict(os.environ, SOV_ISA=isa)
        subprocess.run([os.path.join(tools, "sov_logits"), path, "--seq", ",".join(map(str, seq)), "--out", out],
                       check=True, capture_output=True, env=env)
        logits = np.fromfile(out, dtype="<f4").astype(np.float64).reshape(len(seq), -1)
        os.remove(out)
        steps = logits[len(prompt) - 1:]                                  # the N next-token rows
        worst = worst_error(logprobs(steps), rec)
        greedy_same, ties = 0, 0
        for s in range(len(ids)):
            best2 = np.sort(steps[s])[-2:]
            if int(np.argmax(steps[s])) == ids[s]:
                greedy_same += 1
            elif best2[1] - best2[0] <= NEAR_TIE * abs(best2[1]):
                ties += 1
        name = "%s isa %s" % (rec["name"], isa or "best")
        check(worst <= LP_TOL, "%s: log-probabilities of llama.cpp's top %d within %.0e at all %d steps (worst %.2e)"
              % (name, doc["top"], LP_TOL, len(ids), worst))
        check(greedy_same + ties == len(ids), "%s: greedy tokens agree with llama.cpp's at %d/%d steps (%d near-ties)"
              % (name, greedy_same, len(ids), ties))
    # the reference: agrees with llama.cpp, and would not without each feature
    model = reference.Model(path, n_ctx=256)
    err = worst_error(logprobs(model.logits(seq, kv_f16=True)[len(prompt) - 1:]), rec)
    check(err <= LP_TOL, "%s: the NumPy reference is within %.0e of llama.cpp (worst %.2e)" % (rec["name"], LP_TOL, err))
    for what, switch_off in FEATURES[rec["name"]]:
        off = reference.Model(path, n_ctx=256)
        switch_off(off)
        e = worst_error(logprobs(off.logits(seq, kv_f16=True)[len(prompt) - 1:]), rec)
        check(e > 10 * LP_TOL, "%s: the reference %s is %.2e away from llama.cpp (> 10 x tolerance)" %
              (rec["name"], what, e))
    os.remove(path)

print("FAIL: %d checks" % len(failures) if failures else "PASS")
sys.exit(1 if failures else 0)
