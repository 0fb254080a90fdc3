#!/usr/bin/env bash
# Encoder embeddings throughput and agreement with llama.cpp (docs/EMBEDDINGS.md):
# a synthetic bert of BGE-small's shape (12 layers, dim 384, 12 heads, FFN 1536, the
# bert-bge WordPiece vocabulary), F16 and Q8_0, 32 texts of exactly 128 tokens
# ([CLS] + 126 + [SEP]);
#   1. sov (build/bench/bench_encoder): embeddings/s with 1 input per forward batch and
#      with all 32 in one batch (best of 3);
#   2. llama.cpp's llama-embedding on the same file and texts, when LLAMA_BIN (default
#      /work/peers/llama.cpp/build/bin) has it: batch 32 (one llama-embedding run over the
#      32 texts) and batch 1 (one run per text, the first 8 texts), embeddings/s from its
#      decode time (wall time after its timestamped "batch_decode" log line: model loading
#      and its warm-up run excluded, as for sov; output and exit included), and the cosine
#      of every sov vector with llama.cpp's.
# THREADS (default 2) threads. The machine's load changes absolute numbers: compare the
# rows of one run.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sov=${SOV_BIN:-$here/build/sov}
bench=$here/build/bench/bench_encoder
models=${BENCH_MODELS:-$here/build/bench-models}
shared=${SOV_SHARED_MODELS:-$here/../shared/models}
llama=${LLAMA_BIN:-/work/peers/llama.cpp/build/bin}
threads=${THREADS:-2}
vocab=$shared/vocab/ggml-vocab-bert-bge.gguf
[ -f "$vocab" ] || { echo "embed_bert.sh: $vocab is missing" >&2; exit 1; }
mkdir -p "$models"
work=$(mktemp -d /tmp/sov-embed-bert.XXXXXX)
trap 'rm -rf "$work"' EXIT

# 32 texts of 126 WordPiece tokens each
/usr/bin/python3 - "$sov" "$vocab" "$work/texts.txt" <<'PY'
import subprocess, sys
sov, vocab, out = sys.argv[1:4]
words = ("the network operator routes calls through a regional switch when traffic peaks in seoul and customers "
         "report dropped sessions on their mobile data plans while engineers review logs retrieval augmented "
         "generation embedding models encode documents into vectors").split()
def n_tokens(t):
    return len(subprocess.run([sov, "tokenize", "-m", vocab, "-p", t], capture_output=True, text=True).stdout.split())
lines = []
for i in range(32):
    ws = [words[(i * 7 + k * 3) % len(words)] for k in range(200)]
    lo, hi = 1, 200
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if n_tokens(" ".join(ws[:mid])) <= 128 else (lo, mid - 1)
    text = " ".join(ws[:lo])
    while n_tokens(text) < 128:  # a word may be two pieces: top up with one-piece words
        text += " a"
    assert n_tokens(text) == 128
    lines.append(text)
open(out, "w").write("\n".join(lines) + "\n")
PY

for t in F16 Q8_0; do
  m=$models/bge-small-$t.gguf
  [ -f "$m" ] || "$sov" gen-model --arch bert -o "$m" --dim 384 --layers 12 --heads 12 --ffn 1536 --ctx 512 \
    --type "$t" --vocab-from "$vocab" --name bge-small-synthetic >&2
  echo "== $(basename "$m"): sov"
  "$bench" "$m" "$work/texts.txt" -b 1 -t "$threads" -r 3
  "$bench" "$m" "$work/texts.txt" -b 32 -t "$threads" -r 3 --out "$work/sov-$t.f32"
  [ -x "$llama/llama-embedding" ] || continue
  echo "== $(basename "$m"): llama.cpp llama-embedding"
  # its decode time: the process's wall time after the log line that starts the batch
  # (--log-timestamps; model loading and warm-up come before it)
  ll() { # OUT_JSON ERR ARGS...
    local out=$1 err=$2; shift 2
    local t0 t1
    t0=$(date +%s.%N)
    "$llama/llama-embedding" -m "$m" -t "$threads" --log-timestamps --embd-output-format array "$@" \
      >"$out" 2>"$err"
    t1=$(date +%s.%N)
    echo "$t0 $t1" >>"$err.wall"
  }
  ll "$work/ll-$t.json" "$work/ll-$t.err" -f "$work/texts.txt" -b 4096 -ub 4096 -c 4096 -np 32
  for i in 1 2 3 4 5 6 7 8; do
    ll /dev/null "$work/ll1-$t-$i.err" -p "$(sed -n ${i}p "$work/texts.txt")" -b 512 -ub 512 -c 512
  done
  /usr/bin/python3 - "$work" "$t" <<'PY'
import glob, json, re, sys
import numpy as np
work, t = sys.argv[1:3]
def decode_s(err):
    """wall time of the run after its 'batch_decode' log line"""
    t0, t1 = map(float, open(err + ".wall").read().split()[-2:])
    text = open(err).read()
    m = re.search(r"^(\d+)\.(\d+)\.(\d+)\.(\d+) . batch_decode", text, re.M)
    mi, sec, ms, us = map(int, m.groups())  # minutes.seconds.milliseconds.microseconds
    return (t1 - t0) - (mi * 60 + sec + ms / 1e3 + us / 1e6)
b1 = [decode_s(f) for f in sorted(glob.glob("%s/ll1-%s-*.err" % (work, t)))]
print("  %s batch 1  : %d inputs of 128 tokens: %8.1f embeddings/s (llama.cpp)" % (t, len(b1), len(b1) / sum(b1)))
print("  %s batch 32 : 32 inputs of 128 tokens: %8.1f embeddings/s (llama.cpp)" %
      (t, 32 / decode_s("%s/ll-%s.err" % (work, t))))
a = np.array(json.load(open("%s/ll-%s.json" % (work, t))), dtype=np.float64)
s = np.fromfile("%s/sov-%s.f32" % (work, t), dtype=np.float32).reshape(a.shape).astype(np.float64)
c = (a * s).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(s, axis=1)
print("  cosine sov vs llama.cpp over 32 inputs: min %.6f mean %.6f" % (c.min(), c.mean()))
PY
done
