"""Dequantization is bit-exact: for every tensor type sov supports, every tensor of a
synthetic model dequantized by sov (src/quant/dequant.c, through tools/sov_dequant) and by
the independent NumPy reference (reference.py, written from the formats' definitions)
gives identical float32 bit patterns."""
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

ok = True
for typ in ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]:
    path = os.path.join(TMP, "deq_%s.gguf" % typ)
    subprocess.run([SOV, "gen-model", "-o", path, "--type", typ, "--dim", "256", "--layers", "1", "--heads", "2",
                    "--kv-heads", "1", "--ffn", "512", "--vocab", "320", "--seed", "11"], check=True,
                   capture_output=True)
    g = reference.GGUF(path)
    n = 0
    for name in g.tensors:
        out = os.path.join(TMP, "deq.bin")
        subprocess.run([os.path.join(TOOLS, "sov_dequant"), path, name, out], check=True)
        got = np.fromfile(out, dtype=np.uint32)
        want = reference.dequantize_tensor(g, name).view(np.uint32)
        if got.shape != want.shape or not np.array_equal(got, want):
            bad = int(np.sum(got != want)) if got.shape == want.shape else -1
            print("FAIL %-5s %-28s %d values differ" % (typ, name, bad))
            ok = False
        n += 1
    print("ok   %-5s %d tensors bit-identical" % (typ, n) if ok else "")
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
