#!/usr/bin/env bash
# Long contexts and KV cache types (docs/PERFORMANCE.md, "Long contexts"): on a
# TinyLlama-1.1B-shaped Q4_0 model trained (on paper) to 32K positions,
#   pp at depth 0 and tg at depths 0 / 4096 / 16384 with the f16 cache, and tg at
#   depth with q8_0 and q4_0 caches (sov bench -d, as llama-bench -d), t=2;
#   LLAMA_BENCH=/path/to/llama-bench adds llama.cpp's figures on the same file.
# DEPTH_QUICK=1 (what `make bench` runs): pp512, depths 0 / 4096 only, 1 repeat;
# DEPTHS="0 4096 16384" and PP=4096 for the full table (16K of context takes minutes to
# fill on 2 cores); KV_TYPES="f16 q8_0" limits the cache types, PP=0 skips the prefill.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sov=${SOV_BIN:-$here/build/sov}
models=${BENCH_MODELS:-$here/build/bench-models}
out=$here/build/bench-depth.jsonl
t=${THREADS:-2}
if [ "${DEPTH_QUICK:-0}" = 1 ]; then
  depths=${DEPTHS:-"0 4096"} pp=${PP:-512} n=16 r=1
else
  depths=${DEPTHS:-"0 4096 16384"} pp=${PP:-4096} n=32 r=2
fi
mkdir -p "$models"
: >>"$out"
m=$models/tinyllama-1.1b-q4_0-32k.gguf
if [ ! -f "$m" ]; then
  echo "== generating $m" >&2
  "$sov" gen-model -o "$m" --type Q4_0 --dim 2048 --layers 22 --heads 32 --kv-heads 4 --ffn 5632 \
    --vocab 32000 --ctx 32768 --name tinyllama-1.1b-synthetic >&2
fi

if [ "$pp" != 0 ]; then
  echo "== prefill, f16 cache"
  "$sov" bench -m "$m" -p "$pp" -n 0 -t "$t" -r 1 --json-file "$out"
  [ -n "${LLAMA_BENCH:-}" ] && { "$LLAMA_BENCH" -m "$m" -p "$pp" -n 0 -t "$t" -r 1 -fa on 2>/dev/null | grep -E "^\|" || true; }
fi
for d in $depths; do
  for kv in ${KV_TYPES:-f16 q8_0 q4_0}; do
    [ "$kv" != f16 ] && [ "$d" = 0 ] && continue
    echo "== tg$n at depth $d, $kv cache"
    "$sov" bench -m "$m" -p 0 -n "$n" -d "$d" -t "$t" -r "$r" --kv-type "$kv" --json-file "$out"
    if [ -n "${LLAMA_BENCH:-}" ]; then
      "$LLAMA_BENCH" -m "$m" -p 0 -n "$n" -d "$d" -t "$t" -r "$r" -ctk "$kv" -ctv "$kv" -fa on 2>/dev/null \
        | grep -E "^\|" || true
    fi
  done
done
echo "results: $out"
