#!/usr/bin/env bash
# bench/tp.sh - tensor parallelism over MPI on this machine (docs/TP.md): `sov bench` with
# TP = 1, 2 and 4 ranks, each rank one thread, so the tokens/s show what the split and the
# two all-reduces per layer cost or gain. The model: a TinyLlama-shaped synthetic one cut to
# 8 layers (dim 2048, 32 query / 4 KV heads, FFN 5632, Q4_0, 32000-token vocabulary: 0.27 GB,
# ~235 MB of weights read per generated token), made once with `sov gen-model` into
# $BENCH_MODELS (default build/bench-models). Ranks talk over loopback TCP only
# (--mca btl tcp,self, as machines would) and then over shared memory (vader), unless
# BTLS says otherwise. More ranks than cores are oversubscribed: the figures are then the
# cost of sharing, not of the split. Ratios are meaningful within one run only on a busy
# machine.
#
#   bench/tp.sh [-r REPEATS] [-p N] [-n N] [--ranks "1 2 4"] [--split tp|pp]
#
# --split pp measures pipeline parallelism (--pp S: the layers in S stages) instead.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sov=${SOV_BIN:-$here/build/sov}
models=${BENCH_MODELS:-$here/build/bench-models}
shared=${SOV_SHARED_MODELS:-$here/../shared/models}
btls=${BTLS:-"tcp,self vader,self"}
r=3 p=64 n=32 ranks="1 2 4" split=tp
while [ $# -gt 0 ]; do
  case $1 in
    -r) r=$2; shift 2 ;; -p) p=$2; shift 2 ;; -n) n=$2; shift 2 ;; --ranks) ranks=$2; shift 2 ;; --split) split=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "tp.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case $split in tp|pp) ;; *) echo "tp.sh: --split is tp or pp, not $split" >&2; exit 2 ;; esac
[ -x "$sov" ] || { echo "tp.sh: no $sov: build first (make build)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "tp.sh: mpirun is missing: apt-get install openmpi-bin" >&2; exit 1; }
mkdir -p "$models"
f=$models/llama-8l-2048-q4_0.gguf
if [ ! -f "$f" ]; then
  vocab=$shared/vocab/ggml-vocab-llama-spm.gguf
  vocab_args=(--vocab 32000)
  [ -f "$vocab" ] && vocab_args=(--vocab-from "$vocab")
  "$sov" gen-model -o "$f.tmp" --dim 2048 --layers 8 --heads 32 --kv-heads 4 --ffn 5632 --type Q4_0 \
    "${vocab_args[@]}" >&2
  mv "$f.tmp" "$f"
fi
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
for btl in $btls; do
  for R in $ranks; do
    if [ "$R" = 1 ]; then
      echo "== ${split^^} 1 (one process)"
      "$sov" bench -m "$f" -p "$p" -n "$n" -r "$r" -t 1 --no-bandwidth 2>/dev/null | grep '^| [pt][pg]'
    else
      echo "== ${split^^} $R (btl $btl)"
      mpirun --oversubscribe -np "$R" --mca btl "$btl" --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo \
        "$sov" bench -m "$f" -p "$p" -n "$n" -r "$r" -t 1 --no-bandwidth "--$split" "$R" 2>/dev/null | grep '^| [pt][pg]'
    fi
  done
done
