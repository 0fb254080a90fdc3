"""A batch of several sequences gives exactly the logits of each sequence run alone.

Three sequences of different lengths are evaluated four ways (tools/sov_logits --mode):
alone (each in its own context, whole prompt in one call), batch (all three in one call),
steps (one token of each live sequence per call, as continuous batching decodes) and mixed
(chunks of three tokens of each per call). Rule: the logits are bitwise identical, because
every kernel computes a token's row with the same instructions whatever else shares the
batch (the gemm tiles are bitwise equal to the single dot product). Checked on the real
model and on quantized synthetic models (llama, a qwen3 with its per-head q/k norms and
head size != dim / heads, gemma3 / exaone4 with sliding windows of 8 positions, phi3 with
fused tensors), with the CPU's best kernels and with the scalar ones."""
import os
import subprocess
import sys

import numpy as np

SOV = os.environ["SOV_BIN"]
TOOLS = os.environ["SOV_TOOLS_DIR"]
TMP = os.environ.get("SOV_TEST_TMP", "/tmp")
os.makedirs(TMP, exist_ok=True)
models = []
real = os.path.join(os.environ.get("SOV_SHARED_MODELS", ""), "stories260K.gguf")
if os.path.exists(real):
    models.append(real)
elif os.environ.get("SOV_REQUIRE_SHARED") == "1":
    print("FAIL: %s is missing" % real)
    sys.exit(1)
else:
    print("(no shared model: synthetic models only)")
for arch, typ, extra in [("llama", "Q4_0", []), ("llama", "Q8_0", []), ("llama", "Q4_K", []),
                         ("qwen3", "Q8_0", ["--head-dim", "128"]),
                         # sliding windows shorter than the sequences, fused tensors, post-norms
                         ("gemma3", "Q8_0", ["--swa", "8", "--tied"]), ("phi3", "Q4_K", []),
                         ("exaone4", "Q4_0", ["--swa", "8"])]:
    p = os.path.join(TMP, "batch_%s_%s.gguf" % (arch, typ))
    subprocess.run([SOV, "gen-model", "-o", p, "--arch", arch, "--type", typ, "--dim", "256", "--layers", "2",
                    "--heads", "4", "--kv-heads", "2", "--ffn", "512", "--vocab", "400", "--seed", "5"] + extra,
                   check=True, capture_output=True)
    models.append(p)

rng = np.random.default_rng(9)
seqs = [[1] + [int(t) for t in rng.integers(3, 300, size=n)] for n in (37, 5, 20)]
ok = True
for path in models:
    for isa in ("", "scalar"):
        env = dict(os.environ, SOV_ISA=isa)
        results = {}
        for mode in ("alone", "batch", "steps", "mixed"):
            out = os.path.join(TMP, "inv_%s.bin" % mode)
            cmd = [os.path.join(TOOLS, "sov_logits"), path, "--mode", mode, "--threads", "2", "--out", out]
            for s in seqs:
                cmd += ["--seq", ",".join(map(str, s))]
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            results[mode] = np.fromfile(out, dtype=np.uint32)
        for mode in ("batch", "steps", "mixed"):
            same = np.array_equal(results[mode], results["alone"])
            print("%s %-24s isa=%-6s %-5s == alone: %s" % ("ok  " if same else "FAIL", os.path.basename(path),
                                                             isa or "best", mode, same))
            ok &= same
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
