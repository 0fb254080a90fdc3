#!/usr/bin/env bash
# test_netns.sh - bench/netns.sh puts MPI ranks in their own network namespaces behind an
# emulated link whose delay the measured latency shows, and leaves nothing behind.
#
#   1. two ranks run in two distinct namespaces, neither the test's own
#   2. bench_allreduce across them with the slow profile (1 ms per hop): every all-reduce
#      and broadcast sums right (bench_allreduce exits 1 otherwise), a ping-pong round
#      trip takes at least 2 x 1 ms, and at least 1.5 ms more than the same ping-pong with
#      no delay (so the delay is the profile's, not the harness's)
#   3. after a normal run, a failing command and a SIGTERM mid-run: no namespace, no TUN
#      device, no netwire process of the harness is left
#   4. bad arguments: a one-line error, exit 2
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
check() { # check CONDITION-STATUS MESSAGE
    if [ "$1" -ne 0 ]; then
        echo "  CHECK failed: $2" >&2
        fail=1
    else
        echo "  ok: $2"
    fi
}
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
export LSAN_OPTIONS="suppressions=$src/tests/net/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

leftovers() { # prints what the harness left: namespaces, netwire processes
    ip netns list | grep -o '^sovnet[0-9]*-[0-9h]*' || true
    pgrep -x netwire | while read -r p; do
        [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$(readlink -f "$bench_dir/netwire")" ] && echo "netwire $p"
    done
}
[ -z "$(leftovers)" ] || die "namespaces or netwire of an earlier run are still there: $(leftovers | tr '\n' ' ')"

echo "1. ranks in their own namespaces"
"$netns" -n 2 -p none -- readlink /proc/self/ns/net >"$tmp/ns.txt" 2>"$tmp/ns.err"
check $? "netns.sh ran a 2-rank job ($(head -c 300 "$tmp/ns.err"))"
own=$(readlink /proc/self/ns/net)
distinct=$(sort -u "$tmp/ns.txt" | grep -c '^net:')
check $([ "$distinct" -eq 2 ]; echo $?) "2 ranks saw 2 distinct network namespaces (got: $(tr '\n' ' ' <"$tmp/ns.txt"))"
check $(grep -qx "$own" "$tmp/ns.txt"; [ $? -ne 0 ]; echo $?) "no rank ran in the test's own namespace"

echo "2. the measured latency reflects the configured delay"
args=(--ops pingpong,gathersum,bcast --n-embd 288,2048 --tokens 1,8 --budget-ms 60)
"$netns" -n 2 -r -p slow -- "$bench_dir/bench_allreduce" "${args[@]}" >"$tmp/slow.tsv" 2>"$tmp/slow.err"
check $? "bench_allreduce through the slow profile: right sums, exit 0 ($(grep -v '^netns.sh:' "$tmp/slow.err" | head -c 300))"
"$netns" -n 2 -r -p none -- "$bench_dir/bench_allreduce" "${args[@]}" >"$tmp/none.tsv" 2>"$tmp/none.err"
check $? "bench_allreduce through the undelayed wire: right sums, exit 0"
rtt() { awk -F'\t' -v n="$2" '$1 == "pingpong" && $3 == n && $4 == 1 { print $9 }' "$1"; }
slow=$(rtt "$tmp/slow.tsv" 288)
none=$(rtt "$tmp/none.tsv" 288)
echo "  ping-pong round trip of 1152 bytes: slow ${slow:-?} us, none ${none:-?} us (min over repetitions)"
check $(awk -v s="${slow:-0}" 'BEGIN { exit !(s >= 2000) }'; echo $?) \
    "a round trip through the 1 ms profile takes >= 2 x 1000 us (${slow:-none measured})"
check $(awk -v s="${slow:-0}" -v n="${none:-1e9}" 'BEGIN { exit !(s - n >= 1500) }'; echo $?) \
    "and >= 1500 us more than without the delay (${none:-none measured} us)"
fit=$(/usr/bin/python3 "$src/bench/netfit.py" "$tmp/slow.tsv" | head -1)
echo "  $fit"
alpha=$(sed -n 's/.*alpha \([0-9.]*\) us.*/\1/p' <<<"$fit")
check $(awk -v a="${alpha:-0}" 'BEGIN { exit !(a >= 950) }'; echo $?) "the fitted latency alpha is >= 950 us (${alpha:-?})"
gs=$(awk -F'\t' '$1 == "gathersum" && $3 == 288 && $4 == 1 { print $9 }' "$tmp/slow.tsv")
check $(awk -v g="${gs:-0}" 'BEGIN { exit !(g >= 1000) }'; echo $?) \
    "an all-reduce (gather and sum) through it takes >= one 1 ms hop (${gs:-?} us)"

echo "3. nothing left behind"
check $([ -z "$(leftovers)" ]; echo $?) "no namespace or netwire after the runs"
"$netns" -n 2 -p slow -- false >/dev/null 2>&1
check $([ $? -ne 0 ]; echo $?) "a failing command fails the harness"
check $([ -z "$(leftovers)" ]; echo $?) "no namespace or netwire after a failing command"
"$netns" -n 2 -p slow -- sleep 59.$$ >/dev/null 2>&1 &
h=$!
for _ in $(seq 100); do [ -n "$(ip netns list | grep -o '^sovnet[0-9]*-0')" ] && break; sleep 0.1; done
sleep 1
kill -TERM "$h"
wait "$h"
rc=$?
check $([ "$rc" -ne 0 ]; echo $?) "SIGTERM stops the harness (exit $rc)"
sleep 0.5
check $([ -z "$(leftovers)" ]; echo $?) "no namespace or netwire after SIGTERM ($(leftovers | tr '\n' ' '))"
check $([ -z "$(pgrep -f "^sleep 59.$$\$")" ]; echo $?) "the ranks of the stopped job are gone"

echo "4. bad arguments"
out=$("$netns" -p moon -- true 2>&1)
check $([ $? -eq 2 ] && [ "$(wc -l <<<"$out")" -eq 1 ]; echo $?) "unknown profile: exit 2, one line ($out)"
out=$("$netns" -n 0 -- true 2>&1)
check $([ $? -eq 2 ]; echo $?) "0 ranks: exit 2 ($out)"
out=$("$bench_dir/netwire" -5 x 2>&1)
check $([ $? -eq 2 ]; echo $?) "netwire with a negative delay: exit 2 ($out)"
out=$(SOV_BENCH_DIR=$bench_dir "$netns" -n 2 -p slow -- "$bench_dir/bench_allreduce" --tokens 0 2>&1)
check $([ $? -eq 2 ]; echo $?) "bench_allreduce --tokens 0: exit 2 ($(grep usage <<<"$out" | head -1 | cut -c1-60))"
check $([ -z "$(leftovers)" ]; echo $?) "and nothing left behind"

[ $fail -eq 0 ] && echo "test_netns: all checks passed"
exit $fail
