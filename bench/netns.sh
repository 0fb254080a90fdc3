#!/usr/bin/env bash
# netns.sh - run an MPI job whose rank i lives in network namespace i, joined by an emulated
# link with a fixed delay and rate: machines on a datacentre network or a slow one, on one box.
#
#   bench/netns.sh [-n RANKS] [-p dc|slow|none|loopback] [--] COMMAND [ARGS...]
#
# Profiles (one-way delay D per hop, rate B per namespace's uplink):
#   dc        B = 25 Gbit/s, D = 25 us   (a datacentre link: 10-50 us)
#   slow      B = 1 Gbit/s,  D = 1 ms    (machines in different rooms or buildings)
#   none      namespaces and the wire, no delay, no rate limit (what the emulation costs)
#   loopback  no namespaces: plain mpirun, ranks talk TCP over 127.0.0.1
# SOV_NET_DELAY_US and SOV_NET_RATE (tc syntax, e.g. 10gbit) override the profile's figures.
#
# How (docs/SCALE-OUT.md has the why):
#   - RANKS+1 namespaces sovnet<pid>-0..RANKS-1 (one per rank) and sovnet<pid>-h (the head,
#     where mpirun runs), each with its loopback and a TUN device sovw0 at 10.77.0.(i+1)/24;
#   - bench/netwire (built as build/bench/netwire; SOV_BENCH_DIR names another folder) joins the
#     TUN devices as one switch, holding every packet D microseconds: this kernel family has no
#     sch_netem, so the delay is made there; each sovw0 gets `tc qdisc ... tbf rate B` for the
#     rate (the packets a namespace sends wait in its own uplink's queue, as on a NIC);
#   - mpirun in the head namespace starts one ORTE daemon per rank "machine" through a launch
#     agent (plm_rsh_agent, this script called as `netns.sh --agent HOST CMD`) that runs the
#     daemon inside that rank's namespace (with its own UTS namespace and host name, so each
#     looks like a machine); ranks then talk to their local daemon over their namespace's
#     loopback (PMIx), to the others over TCP on 10.77.0.0/24 (btl tcp,self; oob likewise).
#     Starting ranks with `ip netns exec` under one mpirun does not work: PMIx clients reach
#     mpirun over 127.0.0.1, which is another namespace's loopback.
#   - a trap removes the namespaces and stops netwire on every exit, error or signal; the TUN
#     devices die with netwire. Nothing is added to the caller's own namespace.
#
# Exit status: the MPI job's, or 1 with a one-line message when the set-up fails (not root,
# no CAP_NET_ADMIN, no mpirun, no netwire).
set -euo pipefail

if [ "${1:-}" = "--agent" ]; then # plm_rsh_agent: --agent HOST COMMAND-STRING...
    host=$2
    shift 2
    idx=$((${host##*.} - 1))
    ns="${SOV_NETNS_PREFIX:?}-$idx"
    # -r: the ranks at real-time priority (for programs that sleep while they wait, as
    # bench_allreduce does), otherwise ahead of ordinary processes
    prio="nice -n -10"
    [ -n "${SOV_NETNS_RT:-}" ] && prio="chrt -f 30"
    exec $prio ip netns exec "$ns" unshare --uts sh -c "hostname $ns && $*"
fi

ranks=2
profile=none
while [ $# -gt 0 ]; do
    case "$1" in
    -n) ranks=$2; shift 2 ;;
    -p) profile=$2; shift 2 ;;
    -r) export SOV_NETNS_RT=1; shift ;;
    --) shift; break ;;
    -*) echo "netns.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
    esac
done
if [ $# -eq 0 ] || ! [[ "$ranks" =~ ^[0-9]+$ ]] || [ "$ranks" -lt 1 ] || [ "$ranks" -gt 32 ]; then
    echo "usage: bench/netns.sh [-n RANKS (1..32)] [-p dc|slow|none|loopback] [--] COMMAND [ARGS...]" >&2
    exit 2
fi
case "$profile" in
dc) delay_us=25 rate=25gbit ;;
slow) delay_us=1000 rate=1gbit ;;
none | loopback) delay_us=0 rate= ;;
*) echo "netns.sh: unknown profile '$profile' (dc, slow, none, loopback)" >&2; exit 2 ;;
esac
delay_us=${SOV_NET_DELAY_US:-$delay_us}
rate=${SOV_NET_RATE:-$rate}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"
bench_dir=${SOV_BENCH_DIR:-$here/../build/bench}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# No shared memory between "machines": only TCP (and self), as between real hosts. A rank
# waiting for the network yields its core instead of spinning: this box's few cores also
# run the other ranks and the wire, which a spinning rank would hold off for a scheduler
# tick (4 ms at HZ=250) each time.
mca=(--mca btl "tcp,self" --mca pml ob1 --mca mpi_yield_when_idle 1)

command -v mpirun >/dev/null || { echo "netns.sh: mpirun not found (apt-get install openmpi-bin)" >&2; exit 1; }

if [ "$profile" = loopback ]; then
    exec mpirun --oversubscribe -np "$ranks" "${mca[@]}" --mca btl_tcp_if_include lo "$@"
fi

[ "$(id -u)" -eq 0 ] || { echo "netns.sh: needs root (network namespaces, TUN devices, tc)" >&2; exit 1; }
[ -x "$bench_dir/netwire" ] || { echo "netns.sh: $bench_dir/netwire not built (cmake --build build)" >&2; exit 1; }
command -v ip >/dev/null && command -v tc >/dev/null ||
    { echo "netns.sh: ip/tc not found (apt-get install iproute2)" >&2; exit 1; }

prefix="sovnet$$"
names=()
for ((i = 0; i < ranks; i++)); do names+=("$prefix-$i"); done
names+=("$prefix-h") # the head: mpirun, address 10.77.0.(ranks+1)
wire_pid=
job_pid=
work=$(mktemp -d)

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$job_pid" ]; then # interrupted: mpirun stops its daemons and ranks
        kill -TERM "$job_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$job_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    if [ -n "$wire_pid" ]; then
        kill "$wire_pid" 2>/dev/null || true
        wait "$wire_pid" 2>/dev/null || true
        [ -s "$work/wire.err" ] && sed 's/^/netns.sh: /' "$work/wire.err" >&2
    fi
    local ns
    for ns in "${names[@]}"; do
        # any process left in the namespace (a daemon of a killed job) goes first
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for ns in "${names[@]}"; do
    ip netns add "$ns" 2>"$work/err" || {
        echo "netns.sh: cannot create network namespace $ns: $(head -1 "$work/err") (needs CAP_NET_ADMIN)" >&2
        exit 1
    }
    ip -n "$ns" link set lo up
done

# The wire must not wait for a CPU: busy-polling MPI ranks would otherwise hold it off for a
# scheduler tick (4 ms at HZ=250) per packet. Real-time FIFO priority is what a NIC has.
rt=
chrt -f 50 true 2>/dev/null && rt="chrt -f 50"
$rt "$bench_dir/netwire" "$delay_us" "${names[@]}" >"$work/wire.out" 2>"$work/wire.err" &
wire_pid=$!
for _ in $(seq 100); do
    grep -q ready "$work/wire.out" 2>/dev/null && break
    kill -0 "$wire_pid" 2>/dev/null || break
    sleep 0.05
done
grep -q ready "$work/wire.out" || { echo "netns.sh: netwire did not start: $(head -1 "$work/wire.err")" >&2; exit 1; }

# Frames of up to 64 KB: what a NIC with segmentation offload hands the stack. The tbf
# bucket holds two of them, so a burst never outruns the configured rate by more.
mtu=${SOV_NET_MTU:-65000}
for ((i = 0; i <= ranks; i++)); do
    ns=${names[$i]}
    ip -n "$ns" addr add "10.77.0.$((i + 1))/24" dev sovw0
    ip -n "$ns" link set sovw0 mtu $mtu up
    if [ -n "$rate" ]; then
        # TCP keeps at most two frames queued in front of the uplink (TCP small queues), as
        # byte queue limits keep a real NIC's ring short: otherwise a bulk send fills the tbf
        # queue and the ACKs of the other direction wait behind it
        ip netns exec "$ns" sysctl -q -w net.ipv4.tcp_limit_output_bytes=$((2 * mtu))
        tc -n "$ns" qdisc add dev sovw0 root tbf rate "$rate" burst $((2 * mtu + 2000)) latency 100ms 2>"$work/err" ||
            { echo "netns.sh: tc tbf on $ns failed: $(head -1 "$work/err")" >&2; exit 1; }
    fi
done

hosts="$work/hosts"
for ((i = 0; i < ranks; i++)); do echo "10.77.0.$((i + 1)) slots=1"; done >"$hosts"
echo "netns.sh: $ranks ranks in namespaces $prefix-*, profile $profile (delay ${delay_us} us per hop, rate ${rate:-unlimited})" >&2

export SOV_NETNS_PREFIX=$prefix
# in the background and waited for, so that a signal reaches the trap at once (bash runs
# traps only between foreground commands)
ip netns exec "$prefix-h" mpirun --hostfile "$hosts" -np "$ranks" --map-by node \
    --mca plm_rsh_agent "$self --agent" --mca plm_rsh_no_tree_spawn 1 \
    "${mca[@]}" --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
    "$@" &
job_pid=$!
set +e
wait "$job_pid"
rc=$?
job_pid=
exit $rc
