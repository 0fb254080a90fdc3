#!/usr/bin/env bash
# bench/startup.sh - what checking a model's signature costs at start-up (docs/SIGNING.md).
#
# On a ~620 MB Q4_0 model (sov gen-model, cached in build/bench-models), signed with a fresh
# key, it times in interleaved rounds:
#   load, load+hash  sov_model_load alone, without and with the file's SHA-256
#            (build/bench/bench_load: one load per process)
#   run      `sov run -n 1` wall time, no hash, no check
#   run+sig  the same with --trusted-keys: the file's SHA-256 while loading, the signature
#            checked before and after
#   serve+sig  `sov serve --trusted-keys` from exec to the ready file (listening)
#   serve      `sov serve` without --trusted-keys (it hashes all the same: /v1/models shows
#            the hash)
#   load+cache, serve+sig+cache  the same with the digest cache of a previous
#            start (the file unchanged, so no hash; docs/SIGNING.md); the rows above run
#            without it (--no-digest-cache)
# each warm (file in the page cache) and cold (its pages dropped from the page cache with
# posix_fadvise(POSIX_FADV_DONTNEED) before the run: no root needed, but on a virtual
# machine the host may still cache the disk), and prints the median and minimum of each and
# the ratio of run+sig to run (the minimum is the figure least disturbed by other work on a
# shared machine). OLD=path/to/older/sov adds "old serve" rows (e.g. a build from before
# the hash was overlapped with loading).
#
#   bench/startup.sh [-r 5] [-t THREADS] [-m MODEL]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sov=${SOV_BIN:-$here/build/sov}
bench_load=$(dirname "$sov")/bench/bench_load
old=${OLD:-}
rounds=5 threads=0 model=""
while [ $# -gt 0 ]; do
  case $1 in
    -r) rounds=$2; shift 2 ;; -t) threads=$2; shift 2 ;; -m) model=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "startup.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$sov" ] || { echo "startup.sh: no $sov: build first (make build)" >&2; exit 1; }
if [ -z "$model" ]; then
  model=$here/build/bench-models/q4_0-620mb.gguf
  vocab=$here/../shared/models/vocab/ggml-vocab-llama-spm.gguf
  if [ ! -f "$model" ]; then
    mkdir -p "$(dirname "$model")"
    echo "startup.sh: writing $model (once)" >&2
    "$sov" gen-model -o "$model.part" --dim 2048 --layers 22 --heads 32 --kv-heads 4 --ffn 5632 --type Q4_0 \
      $( [ -f "$vocab" ] && echo --vocab-from "$vocab" ) >/dev/null 2>&1
    mv "$model.part" "$model"
  fi
fi

work=$(mktemp -d /tmp/sov-bench-startup.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# the model under test is a link in the work folder, so its .sig can sit beside it
ln -s "$model" "$work/model.gguf"
"$sov" model keygen --out "$work/keys" >/dev/null
"$sov" model sign --key "$work/keys/sov-model-signing.pem" "$work/model.gguf" >/dev/null

evict() { /usr/bin/python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)' "$model"; }
now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }

time_run() { # $@: extra options; prints milliseconds
  local t0 t1
  t0=$(now)
  "$sov" run -m "$work/model.gguf" -p Hi -n 1 --temp 0 -t "$threads" "$@" >/dev/null 2>"$work/err" ||
    { cat "$work/err" >&2; exit 1; }
  t1=$(now)
  ms "$t0" "$t1"
}

time_load() { # $1: 0 or 1 (the digest), $2: the digest cache file; prints milliseconds
  "$bench_load" "$work/model.gguf" "$@" | cut -d' ' -f1
}

time_serve() { # $1: sov binary, then extra options; prints milliseconds to the ready file
  local bin=$1 t0 t1 pid
  shift
  rm -f "$work/ready"
  t0=$(now)
  "$bin" serve -m "$work/model.gguf" --port 0 --ready-file "$work/ready" -t "$threads" -np 1 --ctx 256 "$@" \
    >/dev/null 2>"$work/err" &
  pid=$!
  pids+=("$pid")
  while [ ! -s "$work/ready" ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
    sleep 0.005
  done
  t1=$(now)
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  ms "$t0" "$t1"
}

declare -A results
record() { results[$1]="${results[$1]:-} $2"; }
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
least() { tr ' ' '\n' | grep -v '^$' | sort -n | head -1; }

whats="load load+hash load+cache run run+sig serve+sig serve+sig+cache serve${old:+ old-serve}"
[ -x "$bench_load" ] || whats=${whats#load load+hash load+cache }
# the digest cache, filled once (the model file is old enough for an entry to be written)
mkdir -p "$work/state"
cache=$work/state/model-digests
if [ -x "$bench_load" ]; then
  # an entry is written only for a file whose ctime is 2 s old
  while [ $(( $(date +%s) - $(stat -L -c %Z "$model") )) -lt 3 ]; do sleep 1; done
  "$bench_load" "$work/model.gguf" 1 "$cache" >/dev/null
  "$bench_load" "$work/model.gguf" 1 "$cache" | grep -q ' cached$' ||
    { echo "startup.sh: the digest cache did not take (is the model file younger than 2 s?)" >&2; exit 1; }
fi
ratio() { # $1 state, $2 without, $3 with: the ratio of the medians and of the minima
  local a b c d
  a=$(echo "${results[$1 $2]}" | median) b=$(echo "${results[$1 $3]}" | median)
  c=$(echo "${results[$1 $2]}" | least) d=$(echo "${results[$1 $3]}" | least)
  echo "$1: $3 / $2 = $(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", b/a}') (medians)," \
    "$(awk -v a="$c" -v b="$d" 'BEGIN{printf "%.2f", b/a}') (minima)"
}

echo "model: $model ($(stat -L -c %s "$model") bytes), $rounds rounds, threads ${threads/#0/auto}" >&2
for ((i = 1; i <= rounds; i++)); do
  for state in warm cold; do
    for what in $whats; do
      [ "$state" = cold ] && evict
      [ "$state" = warm ] && cat "$model" >/dev/null
      case $what in
        load) v=$(time_load 0) ;;
        load+hash) v=$(time_load 1) ;;
        load+cache) v=$(time_load 1 "$cache") ;;
        run) v=$(time_run) ;;
        run+sig) v=$(time_run --trusted-keys "$work/keys") ;;
        serve+sig) v=$(time_serve "$sov" --trusted-keys "$work/keys" --no-digest-cache) ;;
        serve+sig+cache) v=$(time_serve "$sov" --trusted-keys "$work/keys" --state-dir "$work/state") ;;
        serve) v=$(time_serve "$sov" --no-digest-cache) ;;
        old-serve) v=$(time_serve "$old") ;;
      esac
      record "$state $what" "$v"
    done
  done
  echo "round $i done" >&2
done

printf '%-6s %-16s %9s %6s   %s\n' state what median_ms min_ms "all runs (ms)"
for state in warm cold; do
  for what in $whats; do
    printf '%-6s %-16s %9s %6s   %s\n' "$state" "$what" "$(echo "${results[$state $what]}" | median)" \
      "$(echo "${results[$state $what]}" | least)" "${results[$state $what]}"
  done
  ratio "$state" run run+sig
  if [ -x "$bench_load" ]; then ratio "$state" load load+hash; ratio "$state" load load+cache; fi
  ratio "$state" serve+sig serve+sig+cache
done
