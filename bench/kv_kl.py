#!/usr/bin/env python3
"""The cost of a quantized KV cache: mean KL divergence of next-token distributions.

For each model, one text (stories260K: a TinyStories-style story tokenized by sov; the
synthetic models: seeded random tokens) is evaluated in one prefill with the f16 cache
and with q8_0 and q4_0 caches (build/tests/tools/sov_logits), and over every position
    KL(p_f16 || p_T) = sum_v p_f16(v) (log p_f16(v) - log p_T(v))
is averaged; also the share of positions whose top token differs, and bytes per
position of each cache (keys and values of every layer) with the sequences of 4,096
tokens that fit in 1 GiB. Run: /usr/bin/python3 bench/kv_kl.py (needs NumPy and a
built tree); `make bench` runs it.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.environ.get("BUILD", os.path.join(ROOT, "build"))
SOV = os.path.join(BUILD, "sov")
LOGITS = os.path.join(BUILD, "tests", "tools", "sov_logits")
SHARED = os.environ.get("SOV_SHARED_MODELS", os.path.join(ROOT, "..", "shared", "models"))
TMP = tempfile.gettempdir()

STORY = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park "
         "with her friends. One day, she saw a big red ball under a tree. She ran to the ball and picked "
         "it up. It was shiny and new. Lily wanted to share the ball with her friend Tom. Tom was sad "
         "because he lost his toy car. Lily gave him the ball and said, \"Let's play together!\" Tom smiled "
         "and they played all day. When the sun went down, they went home happy. The next day, Lily and "
         "Tom went back to the park. They found the toy car in the sand. Tom was so happy that he gave "
         "Lily a big hug. They learned that sharing makes everyone happy, and they played with the ball "
         "and the car until it was time for dinner.")


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def logits(model, toks, n_vocab, kv):
    out = os.path.join(TMP, "kvkl_%d.bin" % os.getpid())
    run([LOGITS, model, "--seq", ",".join(map(str, toks)), "--kv-type", kv, "--out", out,
         "--ctx", str(max(len(toks) + 16, 256))])
    x = np.fromfile(out, dtype="<f4").reshape(len(toks), n_vocab).astype(np.float64)
    os.remove(out)
    return x


def log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def row_bytes(kind, d):
    g = 32 if d >= 32 else d
    return {"f16": 2 * d, "q8_0": (d // g) * (2 + g), "q4_0": (d // g) * (2 + g // 2)}[kind]


def report(name, model, toks, n_vocab, n_layer, n_kv, d):
    base = log_softmax(logits(model, toks, n_vocab, "f16"))
    p = np.exp(base)
    print("\n== %s: %d tokens, head size %d" % (name, len(toks), d))
    print("| KV type | bytes/position | x f16 | 4K-token sequences in 1 GiB | mean KL vs f16 | max KL | top-1 differs |")
    print("|---|---|---|---|---|---|---|")
    for kv in ("f16", "q8_0", "q4_0"):
        per_pos = n_layer * n_kv * 2 * row_bytes(kv, d)
        lq = base if kv == "f16" else log_softmax(logits(model, toks, n_vocab, kv))
        kl = (p * (base - lq)).sum(axis=1)
        top = float((base.argmax(axis=1) != lq.argmax(axis=1)).mean())
        print("| %s | %d | %.2f | %d | %.2e | %.2e | %.1f%% |" % (
            kv, per_pos, per_pos / (n_layer * n_kv * 4 * d), (1 << 30) // (per_pos * 4096), kl.mean(), kl.max(),
            100 * top))


def main():
    stories = os.path.join(SHARED, "stories260K.gguf")
    if os.path.exists(stories):
        toks = [int(t) for t in run([SOV, "tokenize", "-m", stories, "-p", STORY]).split()]
        report("stories260K", stories, toks, 512, 5, 4, 8)
    rng = np.random.default_rng(3)
    for name, flags, shape in [
            ("synthetic llama D=64 (Q8_0 weights)", ["--dim", "512", "--layers", "4", "--heads", "8", "--kv-heads", "4",
                                                     "--ffn", "1024", "--type", "Q8_0"], (4, 4, 64)),
            ("synthetic qwen3 D=128 (F16 weights)", ["--arch", "qwen3", "--dim", "512", "--layers", "4", "--heads", "8",
                                                    "--kv-heads", "2", "--head-dim", "128", "--ffn", "1024",
                                                    "--type", "F16"], (4, 2, 128))]:
        path = os.path.join(TMP, "kvkl_model_%d.gguf" % os.getpid())
        run([SOV, "gen-model", "-o", path, "--vocab", "4096", "--seed", "5"] + flags)
        try:
            report(name, path, [int(t) for t in rng.integers(0, 4096, 512)], 4096, *shape)
        finally:
            os.remove(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
