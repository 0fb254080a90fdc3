"""`sov quantize`: a float model rewritten in each target type stays close to the
original. The original's logits come from the independent NumPy reference; the
quantized file runs in sov. Bounds (max |sov - ref| / max |ref| over 16 positions, set
about 1.3x above what today's quantizers give): the model has 8 layers of random
weights, which pass quantization noise on with more gain than trained weights do, so
the numbers are larger than on real models; what matters is that each bound holds and
that quality falls in the order of the bits: Q8_0 < Q6_K < Q5_K_M < Q4_K_M, and each
k-quant mix beats the plain type of its size (Q5_K_M < Q5_0, Q4_K_M < Q4_0). The mix
puts output.weight, and attn_v / ffn_down of the layers llama.cpp's rule picks, in Q6_K;
errors (requantizing without --allow-requantize, unknown types, a damaged input) are
one line and a non-zero exit."""
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

SOV = os.environ["SOV_BIN"]
TOOLS = os.environ["SOV_TOOLS_DIR"]
TMP = os.environ.get("SOV_TEST_TMP", "/tmp")
os.makedirs(TMP, exist_ok=True)

src = os.path.join(TMP, "qz_f32.gguf")
subprocess.run([SOV, "gen-model", "-o", src, "--type", "F32", "--dim", "256", "--layers", "8", "--heads", "4",
                "--kv-heads", "2", "--ffn", "512", "--vocab", "512", "--seed", "3"], check=True, capture_output=True)
model = reference.Model(src)
rng = np.random.default_rng(1)
tokens = [1] + [int(t) for t in rng.integers(3, 512, size=15)]
ref = model.logits(tokens, kv_f16=True)
scale = np.abs(ref).max()

BOUNDS = {"F16": 0.002, "BF16": 0.01, "Q8_0": 0.03, "Q6_K": 0.08, "Q5_K_M": 0.13, "Q5_0": 0.16, "Q5_1": 0.14,
          "Q4_K_M": 0.27, "Q4_K_S": 0.25, "Q4_0": 0.31, "Q4_1": 0.35}
ok = True
errs = {}
for typ, bound in BOUNDS.items():
    out = os.path.join(TMP, "qz_%s.gguf" % typ)
    r = subprocess.run([SOV, "quantize", src, out, typ], capture_output=True, text=True)
    if r.returncode != 0:
        print("FAIL quantize %s: %s" % (typ, r.stderr.strip()))
        ok = False
        continue
    lg = os.path.join(TMP, "qz.bin")
    subprocess.run([os.path.join(TOOLS, "sov_logits"), out, "--seq", ",".join(map(str, tokens)), "--out", lg],
                   check=True, capture_output=True)
    got = np.fromfile(lg, dtype=np.float32).reshape(len(tokens), -1)
    err = errs[typ] = float(np.abs(got - ref).max() / scale)
    agree = float(np.mean(np.argmax(got, 1) == np.argmax(ref, 1)))
    good = err <= bound
    print("%s %-7s rel err %.4f (bound %.3f), greedy agreement %.2f, %d bytes" %
          ("ok  " if good else "FAIL", typ, err, bound, agree, os.path.getsize(out)))
    ok &= good

for a, b in [("Q8_0", "Q6_K"), ("Q6_K", "Q5_K_M"), ("Q5_K_M", "Q4_K_M"), ("Q5_K_M", "Q5_0"), ("Q4_K_M", "Q4_0")]:
    if a in errs and b in errs and not errs[a] < errs[b]:
        print("FAIL quality order: %s (%.4f) should be closer than %s (%.4f)" % (a, errs[a], b, errs[b]))
        ok = False

# the mix: output.weight and the chosen layers' attn_v / ffn_down in Q6_K, the rest Q4_K.
# The rule, restated: layer i of n gets more bits when i < n/8, i >= 7n/8 or
# (i - n/8) % 3 == 2; for n = 8 that is layers 0, 3, 6 and 7.
g = reference.GGUF(os.path.join(TMP, "qz_Q4_K_M.gguf"))
types = {name: ti.type for name, ti in g.tensors.items()}
want6 = {"output.weight"} | {"blk.%d.%s.weight" % (i, w) for i in (0, 3, 6, 7) for w in ("attn_v", "ffn_down")}
for name, t in types.items():
    if name.endswith("norm.weight"):
        expect = 0
    elif name in want6:
        expect = 14
    else:
        expect = 12
    if t != expect:
        print("FAIL Q4_K_M: %s is type %d, expected %d" % (name, t, expect))
        ok = False
if g.kv.get("general.file_type") != 15:
    print("FAIL Q4_K_M: general.file_type %r" % g.kv.get("general.file_type"))
    ok = False


def fails_cleanly(args, words):
    global ok
    r = subprocess.run([SOV, "quantize"] + args, capture_output=True, text=True)
    lines = r.stderr.strip().split("\n")
    good = r.returncode != 0 and len(lines) == 1 and all(w in r.stderr for w in words)
    print("%s quantize %s -> %d: %s" % ("ok  " if good else "FAIL", " ".join(os.path.basename(a) for a in args),
                                       r.returncode, r.stderr.strip()))
    ok &= good


fails_cleanly([os.path.join(TMP, "qz_Q4_0.gguf"), os.path.join(TMP, "x.gguf"), "Q8_0"], ["--allow-requantize"])
fails_cleanly([src, os.path.join(TMP, "x.gguf"), "Q3_X"], ["Q3_X"])
bad = os.path.join(TMP, "qz_truncated.gguf")
with open(src, "rb") as f, open(bad, "wb") as o:
    o.write(f.read(5000))
fails_cleanly([bad, os.path.join(TMP, "x.gguf"), "Q8_0"], ["truncated"])
r = subprocess.run([SOV, "quantize", "--allow-requantize", os.path.join(TMP, "qz_Q8_0.gguf"),
                    os.path.join(TMP, "qz_rq.gguf"), "Q4_0"], capture_output=True, text=True)
print("%s requantize with --allow-requantize" % ("ok  " if r.returncode == 0 else "FAIL"))
ok &= r.returncode == 0
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
