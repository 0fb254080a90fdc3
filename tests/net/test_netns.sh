#!/usr/bin/env bash
# test_netns.sh - bench/netns.sh puts MPI ranks in their own network namespaces behind an
# emulated link whose delay the measured latency shows, and leaves nothing behind.
#
#   1. two ranks run in two distinct namespaces, neither the test's own, and
#      bench_allreduce across them with the slow profile (1 ms per hop): every all-reduce
#      sums right (bench_allreduce exits 1 otherwise), a ping-pong round
#      trip takes at least 2 x 1 ms, and at least 1.5 ms more than the same ping-pong with
#      no delay (so the delay is the profile's, not the harness's)
#   2. after a normal run, a failing command and a SIGTERM mid-run: no namespace, no TUN
#      device, no netwire process of the harness is left
#   3. bad arguments: a one-line error, exit 2
# Needs root (CAP_NET_ADMIN) and mpirun: without them it FAILS, saying which is missing.
# Run alone (RUN_SERIAL, label net): its timing must not share the cores with other tests.
set -uo pipefail
src=${SOV_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
bench_dir=${SOV_BENCH_DIR:-$src/build/bench}
netns="$src/bench/netns.sh"
tmp=${SOV_TEST_TMP:-/tmp}/net-$$
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # check MESSAGE COMMAND...: the behaviour holds when COMMAND succeeds
    local what=$1
    shift
    if "$@"; then
        echo "  ok: $what"
    else
        echo "  CHECK failed: $what" >&2
        fail=1
    fi
}
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; } # ge A B: A >= B
none_left() { [ -z "$(leftovers)" ]; }
die() {
    echo "test_netns: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, TUN devices, tc): run as root"
ip netns add "sovnetprobe$$" 2>/dev/null || die "cannot create a network namespace (no CAP_NET_ADMIN?)"
ip netns del "sovnetprobe$$"
command -v mpirun >/dev/null || die "mpirun not found: apt-get install openmpi-bin libopenmpi-dev"
command -v tc >/dev/null || die "tc not found: apt-get install iproute2"
[ -x "$bench_dir/bench_allreduce" ] || die "$bench_dir/bench_allreduce not built (CMake found no MPI?)"
[ -x "$bench_dir/netwire" ] || die "$bench_dir/netwire not built"
export SOV_BENCH_DIR=$bench_dir
# OpenMPI's own allocations live until exit; sov's code is still checked for leaks
# (full unwinding: libmpi has no frame pointers, the fast unwinder would lose its frames)
export LSAN_OPTIONS="suppressions=$src/tests/net/lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

leftovers() { # prints what the harness left: namespaces, TUN devices here, netwire processes
    ip netns list | grep -o '^sovnet[0-9]*-[0-9h]*' || true
    ip -o link show 2>/dev/null | grep -o 'sovw[0-9]*' || true
    pgrep -x netwire | while read -r p; do
        [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$(readlink -f "$bench_dir/netwire")" ] && echo "netwire $p"
    done
}
[ -z "$(leftovers)" ] || die "namespaces or netwire of an earlier run are still there: $(leftovers | tr '\n' ' ')"

echo "1. ranks in their own namespaces; the measured latency reflects the configured delay"
args=(--ops "pingpong,gathersum" --n-embd "288,2048" --tokens 1 --budget-ms 60 --max-reps 5)
# each rank notes its network namespace, then runs the benchmark
"$netns" -n 2 -r -p slow -- sh -c 'readlink /proc/self/ns/net >"$0/ns.$OMPI_COMM_WORLD_RANK" && exec "$@"' \
    "$tmp" "$bench_dir/bench_allreduce" "${args[@]}" >"$tmp/slow.tsv" 2>"$tmp/slow.err"
rc=$?
check "bench_allreduce through the slow profile: right sums, exit 0 ($(grep -v '^netns.sh:' "$tmp/slow.err" | head -c 300))" [ $rc -eq 0 ]
own=$(readlink /proc/self/ns/net)
seen=$(cat "$tmp"/ns.* 2>/dev/null | sort -u | tr '\n' ' ')
check "the 2 ranks ran in 2 distinct network namespaces (got: $seen)" [ "$(cat "$tmp"/ns.* | sort -u | grep -c '^net:')" -eq 2 ]
check "no rank ran in the test's own namespace ($own)" [ -z "$(grep -xh "$own" "$tmp"/ns.*)" ]
"$netns" -n 2 -r -p none -- "$bench_dir/bench_allreduce" --ops pingpong --n-embd 288 --tokens 1 --max-reps 5 \
    >"$tmp/none.tsv" 2>"$tmp/none.err"
rc=$?
check "bench_allreduce through the undelayed wire: right sums, exit 0" [ $rc -eq 0 ]
rtt() { awk -F'\t' -v n="$2" '$1 == "pingpong" && $3 == n && $4 == 1 { print $9 }' "$1"; }
slow=$(rtt "$tmp/slow.tsv" 288)
none=$(rtt "$tmp/none.tsv" 288)
echo "  ping-pong round trip of 1152 bytes: slow ${slow:-?} us, none ${none:-?} us (min over repetitions)"
check "a round trip through the 1 ms profile takes >= 2 x 1000 us (${slow:-none measured})" ge "${slow:-0}" 2000
check "and >= 1500 us more than without the delay (${none:-none measured} us)" \
    ge "$(awk -v s="${slow:-0}" -v n="${none:-1e9}" 'BEGIN { print s - n }')" 1500
fit=$(/usr/bin/python3 "$src/bench/netfit.py" "$tmp/slow.tsv" | head -1)
echo "  $fit"
alpha=$(sed -n 's/.*alpha \([0-9.]*\) us.*/\1/p' <<<"$fit")
check "the fitted latency alpha is >= 950 us (${alpha:-?})" ge "${alpha:-0}" 950
gs=$(awk -F'\t' '$1 == "gathersum" && $3 == 288 && $4 == 1 { print $9 }' "$tmp/slow.tsv")
check "an all-reduce (gather and sum) through it takes >= one 1 ms hop (${gs:-?} us)" ge "${gs:-0}" 1000

echo "2. nothing left behind"
check "no namespace or netwire after the runs" none_left
"$netns" -n 2 -p slow -- false >/dev/null 2>&1
rc=$?
check "a failing command fails the harness (exit $rc)" [ $rc -ne 0 ]
check "no namespace or netwire after a failing command" none_left
"$netns" -n 2 -p slow -- sleep 59.$$ >/dev/null 2>&1 &
h=$!
for _ in $(seq 100); do [ -n "$(ip netns list | grep -o '^sovnet[0-9]*-0')" ] && break; sleep 0.1; done
sleep 1
kill -TERM "$h"
wait "$h"
rc=$?
check "SIGTERM stops the harness (exit $rc)" [ "$rc" -ne 0 ]
sleep 0.5
check "no namespace or netwire after SIGTERM ($(leftovers | tr '\n' ' '))" none_left
check "the ranks of the stopped job are gone" [ -z "$(pgrep -f "^sleep 59.$$\$")" ]

echo "3. bad arguments"
out=$("$netns" -p moon -- true 2>&1)
rc=$?
check "unknown profile: exit 2, one line ($out)" [ "$rc:$(wc -l <<<"$out")" = "2:1" ]
out=$("$netns" -n 0 -- true 2>&1)
rc=$?
check "0 ranks: exit 2 ($out)" [ $rc -eq 2 ]
out=$("$bench_dir/netwire" -5 x 2>&1)
rc=$?
check "netwire with a negative delay: exit 2 ($out)" [ $rc -eq 2 ]
out=$("$netns" -n 2 -p loopback -- "$bench_dir/bench_allreduce" --tokens 0 2>&1)
rc=$?
check "bench_allreduce --tokens 0: exit 2 ($(grep usage <<<"$out" | head -1 | cut -c1-60))" [ $rc -eq 2 ]
check "and nothing left behind" none_left

[ $fail -eq 0 ] && echo "test_netns: all checks passed"
exit $fail
