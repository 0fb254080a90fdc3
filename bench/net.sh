#!/usr/bin/env bash
# net.sh - tensor parallelism's communication on each emulated link (docs/SCALE-OUT.md):
# bench_allreduce with 2 and 4 ranks over plain loopback and through bench/netns.sh's
# profiles none, dc and slow, then netfit.py's alpha/beta per profile and its measured
# against predicted table. Run as root after `cmake --build build`; takes a few minutes.
#
#   bench/net.sh [OUT_DIR]        (default build/net; one RESULTS.tsv per profile and R)
#
# PROFILES="slow dc" and RANKS="2" narrow the sweep; SIZES_EMBD and SIZES_T the sizes.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here/../build/net}
bench=${SOV_BENCH_DIR:-$here/../build/bench}/bench_allreduce
[ -x "$bench" ] || { echo "net.sh: $bench not built (needs MPI: apt-get install libopenmpi-dev)" >&2; exit 1; }
mkdir -p "$out"
embd=${SIZES_EMBD:-288,2048,8192}
toks=${SIZES_T:-1,8,64}
for profile in ${PROFILES:-loopback none dc slow}; do
    for r in ${RANKS:-2 4}; do
        f="$out/$profile-$r.tsv"
        echo "net.sh: $profile, $r ranks -> $f" >&2
        "$here/netns.sh" -n "$r" -r -p "$profile" -- "$bench" --n-embd "$embd" --tokens "$toks" \
            --budget-ms 150 --ops pingpong,gathersum,rsag,bcast,allreduce >"$f"
    done
done
for profile in ${PROFILES:-loopback none dc slow}; do
    /usr/bin/python3 "$here/netfit.py" "$out/$profile"-*.tsv
done
