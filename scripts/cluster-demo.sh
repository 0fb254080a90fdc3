#!/usr/bin/env bash
# cluster-demo.sh - `make cluster-demo`: three `sov serve` replicas behind HAProxy on
# loopback, sharing keys, quotas and the audit log in a throw-away PostgreSQL
# (docs/REPLICAS.md). Stays up until Ctrl-C, then stops everything and removes its folder.
#
#   client ──> HAProxy 127.0.0.1:$PORT ──hash(key, prompt start)──> r1 | r2 | r3 ──> PostgreSQL
#
# Environment: BUILD (build), PORT (HAProxy's port, 8080), MODEL (a GGUF; default the
# built-in demo model, as `make run`), THREADS (per replica, 1).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
sov=$root/${BUILD:-build}/sov
port=${PORT:-8080}
threads=${THREADS:-1}

die() {
    echo "cluster-demo: $*" >&2
    exit 1
}
[ -x "$sov" ] || die "no $sov: build first (make build)"
command -v haproxy >/dev/null || die "haproxy is not installed: apt-get install haproxy (scripts/deps.sh cluster)"

dir=$(mktemp -d /tmp/sov-cluster.XXXXXX)
chmod 755 "$dir" # PostgreSQL's user (when run as root) must reach its folder inside
pids=()

stop_all() {
    trap - EXIT INT TERM
    echo >&2
    echo "cluster-demo: stopping" >&2
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    bash "$root/tests/store/pgctl.sh" stop "$dir/pg" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

echo "cluster-demo: PostgreSQL in $dir/pg" >&2
url=$(bash "$root/tests/store/pgctl.sh" start "$dir/pg")
"$sov" keys create --db "$url" --tenant demo --tpm 100000 >"$dir/key.txt"
key=$(tail -n 1 "$dir/key.txt")

model_args=()
[ -n "${MODEL:-}" ] && model_args=(-m "$MODEL")
for i in 1 2 3; do
    mkdir -p "$dir/r$i"
    "$sov" serve "${model_args[@]}" --port 0 --ready-file "$dir/r$i/ready" -t "$threads" --node "r$i" \
        --db "$url" --state-dir "$dir/r$i" >"$dir/r$i/log" 2>&1 &
    pids+=($!)
done
for i in 1 2 3; do
    for _ in $(seq 600); do
        [ -s "$dir/r$i/ready" ] && break
        kill -0 "${pids[$((i - 1))]}" 2>/dev/null || { cat "$dir/r$i/log" >&2; die "replica r$i did not start"; }
        sleep 0.1
    done
    [ -s "$dir/r$i/ready" ] || die "replica r$i did not start within 60 s (log: $dir/r$i/log)"
    read -r host rport <"$dir/r$i/ready"
    export "SOV_REPLICA$i=$host:$rport"
    echo "cluster-demo: replica r$i on $host:$rport" >&2
done

export SOV_FRONT=127.0.0.1:$port SOV_HAPROXY_LOG=stdout
haproxy -f "$root/deploy/haproxy.cfg" -db >"$dir/haproxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$port/ready" && break
    kill -0 "${pids[3]}" 2>/dev/null || { cat "$dir/haproxy.log" >&2; die "haproxy did not start"; }
    sleep 0.1
done

cat <<EOF

sov cluster: HAProxy on http://127.0.0.1:$port -> replicas r1 $SOV_REPLICA1, r2 $SOV_REPLICA2, r3 $SOV_REPLICA3
  state: $url
  key (tenant demo, 100000 tokens per minute): $key

  curl -i http://127.0.0.1:$port/v1/completions -H "Authorization: Bearer $key" \\
       -H 'Content-Type: application/json' -d '{"prompt": "Once upon a time", "max_tokens": 16}'

  The X-Sov-Node header names the replica; the same key and prompt go to the same one.
  Kill one (kill -9 \$(pgrep -f 'node r2')) and ask again: the others answer.
  $sov keys usage --db '$url'
  $sov audit verify --db '$url' --pub $dir/r1/audit-ed25519.pub --pub $dir/r2/audit-ed25519.pub --pub $dir/r3/audit-ed25519.pub
  Logs: $dir/r{1,2,3}/log, $dir/haproxy.log.   Ctrl-C stops everything.
EOF

# Until Ctrl-C, or until HAProxy dies; a replica's death is part of the demo.
wait "${pids[3]}" || true
