#!/usr/bin/env bash
# bench/qwen3.sh - what qwen3's per-head q/k RMSNorm costs (docs/MODELS.md).
#
# Writes two Qwen3-0.6B-shaped synthetic Q8_0 models (dim 1024, 28 layers, 16 heads, 8 KV
# heads, head size 128, ffn 3072, tied embedding; vocabulary 32000 instead of 151936 to keep
# the files small), one `qwen3` (q/k norms, no biases) and one `qwen2` (q/k/v biases, no
# norms), cached in build/bench-models, and runs `sov bench` on each in interleaved rounds
# (prompt 128 tokens, 32 generated) so that other work on a shared machine hits both alike.
#
#   bench/qwen3.sh [-r ROUNDS] [-t THREADS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sov=${SOV_BIN:-$here/build/sov}
rounds=2 threads=2
while [ $# -gt 0 ]; do
  case $1 in
    -r) rounds=$2; shift 2 ;; -t) threads=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "qwen3.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$sov" ] || { echo "qwen3.sh: no $sov: build first (make build)" >&2; exit 1; }
dir=$here/build/bench-models
mkdir -p "$dir"
for arch in qwen3 qwen2; do
  f=$dir/$arch-0.6b-shape-q8_0.gguf
  [ -f "$f" ] || "$sov" gen-model -o "$f" --arch "$arch" --type Q8_0 --embd-type Q8_0 --tied --dim 1024 \
    --layers 28 --heads 16 --kv-heads 8 --head-dim 128 --ffn 3072 --vocab 32000 --ctx 4096 >/dev/null 2>&1
done
for r in $(seq "$rounds"); do
  for arch in qwen2 qwen3; do
    "$sov" bench -m "$dir/$arch-0.6b-shape-q8_0.gguf" -p 128 -n 32 -t "$threads" -r 3 --no-bandwidth 2>/dev/null |
      grep -E '^\| (pp|tg)' | sed "s/^/round $r $arch /"
  done
done
