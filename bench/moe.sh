#!/usr/bin/env bash
# bench/moe.sh - mixture-of-experts speed (docs/MODELS.md, docs/PERFORMANCE.md).
#
# A Qwen3-30B-A3B-shaped synthetic model scaled for a small machine: qwen3moe, dim 2048,
# 16 layers (of 48), 32 query / 4 KV heads of 128, 64 experts (of 128), 8 used per token,
# expert FFN 768, Q4_0, Llama-2 vocabulary (32000; a synthetic one when ../shared/models is
# absent): 2.9 GB on disk, ~0.5 GB of weights read per generated token. Made once with
# `sov gen-model` into $BENCH_MODELS (default build/bench-models; takes minutes), then
# `sov bench -p 512 -n 128 -t 1,2` on it; `sov bench` prints tg as a percentage of the
# measured read bandwidth on the ACTIVE bytes per token (router + 8 of 64 experts).
# A DeepSeek-V3-shaped one scaled the same way: deepseek2, dim 2048, 12 layers (1 dense,
# FFN 6144), 16 heads with MLA (q_lora 512, kv_lora 512, nope 128, rope 64, value 128), 64
# experts (of 256) in 8 groups (4 used), 8 used per token, expert FFN 768, 1 shared expert,
# sigmoid gating with selection bias, Q4_0: ~2.2 GB, the KV cache a 576-value latent per
# position and layer.
# With llama-bench found ($LLAMA_BENCH, else ../peers/llama.cpp/build/bin/llama-bench) the
# same file is measured by llama.cpp right after, for side-by-side figures.
#
#   bench/moe.sh [-a qwen3moe|deepseek2|all] [-r REPEATS] [-p N] [-n N] [-t LIST]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sov=${SOV_BIN:-$here/build/sov}
models=${BENCH_MODELS:-$here/build/bench-models}
shared=${SOV_SHARED_MODELS:-$here/../shared/models}
llama_bench=${LLAMA_BENCH:-$here/../peers/llama.cpp/build/bin/llama-bench}
r=3 p=512 n=128 t=1,2 arch=all
while [ $# -gt 0 ]; do
  case $1 in
    -a) arch=$2; shift 2 ;; -r) r=$2; shift 2 ;; -p) p=$2; shift 2 ;; -n) n=$2; shift 2 ;; -t) t=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "moe.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$sov" ] || { echo "moe.sh: no $sov: build first (make build)" >&2; exit 1; }
mkdir -p "$models"
vocab=$shared/vocab/ggml-vocab-llama-spm.gguf
vocab_args=(--vocab 32000)
[ -f "$vocab" ] && vocab_args=(--vocab-from "$vocab")

# gen FILE ARGS...: writes the model once
gen() {
  local f=$1
  shift
  [ -f "$f" ] && return 0
  echo "== generating $f (minutes)" >&2
  "$sov" gen-model -o "$f.tmp" "$@" "${vocab_args[@]}" >&2
  mv "$f.tmp" "$f"
}

# measure FILE: sov, then llama.cpp on the same file
measure() {
  echo "== sov: $(basename "$1")"
  "$sov" bench -m "$1" -p "$p" -n "$n" -t "$t" -r "$r"
  if [ -x "$llama_bench" ]; then
    echo "-- llama.cpp (llama-bench) on the same file:"
    "$llama_bench" -m "$1" -p "$p" -n "$n" -t "$t" -r "$r" 2>/dev/null | grep -E "^\|" || true
  fi
}

if [ "$arch" = all ] || [ "$arch" = qwen3moe ]; then
  f=$models/qwen3moe-16l-64x8e-q4_0.gguf
  gen "$f" --arch qwen3moe --type Q4_0 --dim 2048 --layers 16 --heads 32 --kv-heads 4 \
    --head-dim 128 --ffn 6144 --experts 64 --experts-used 8 --expert-ffn 768 --ctx 4096 \
    --name qwen3moe-30b-a3b-shape
  measure "$f"
fi
if [ "$arch" = all ] || [ "$arch" = deepseek2 ]; then
  f=$models/deepseek2-12l-64x8e-q4_0.gguf
  gen "$f" --arch deepseek2 --type Q4_0 --dim 2048 --layers 12 --heads 16 --ffn 6144 \
    --q-lora 512 --kv-lora 512 --qk-nope 128 --rope-dims 64 --v-head 128 --experts 64 --experts-used 8 \
    --expert-groups 8 --expert-groups-used 4 --expert-ffn 768 --shared-experts 1 --dense-layers 1 \
    --ctx 4096 --name deepseek-v3-shape
  measure "$f"
fi
