#!/usr/bin/env bash
# bench/audit.sh - what the audit log costs (docs/AUDIT.md): at N concurrent clients,
# generated tokens/s of streamed completions (bench/loadgen.py, MAX_TOKENS each) and
# requests/s of 1-token completions (wrk, keep-alive), each with the audit log off
# (--no-audit) and on, with the state store in SQLite (the audit opens it with
# synchronous=FULL: every commit synced) and in PostgreSQL (a throw-away cluster from
# tests/store/pgctl.sh with PGCTL_DURABLE=1: fsync and synchronous_commit on). Runs are
# interleaved, R rounds of each; the median of each configuration and its ratio to the
# same store without the audit log are reported, with the records per commit (group
# commit) from the log itself.
#
#   bench/audit.sh [-n 16] [-r 3] [-d 10] [-t 1] [-m MODEL] [--max-tokens 64] [--rounds-per-client 4]
#   (wrk from Debian: apt-get install wrk)
#
# Loopback only; the folder and the cluster are removed at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sov=${SOV_BIN:-$here/build/sov}
model=${MODEL:-$here/../shared/models/stories260K.gguf}
n=16 r=3 d=10 t=1 max_tokens=64 per_client=4
while [ $# -gt 0 ]; do
  case $1 in
    -n) n=$2; shift 2 ;; -r) r=$2; shift 2 ;; -d) d=$2; shift 2 ;; -t) t=$2; shift 2 ;;
    -m) model=$2; shift 2 ;; --max-tokens) max_tokens=$2; shift 2 ;;
    --rounds-per-client) per_client=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "audit.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "audit.sh: wrk is missing: apt-get install wrk" >&2; exit 1; }
[ -f "$model" ] || { echo "audit.sh: no model $model" >&2; exit 1; }

work=$(mktemp -d /tmp/sov-bench-audit.XXXXXX)
chmod 755 "$work" # the PostgreSQL cluster inside runs as its own user
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  bash "$here/tests/store/pgctl.sh" stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== PostgreSQL: a throw-away cluster, durable" >&2
pgurl=$(PGCTL_DURABLE=1 bash "$here/tests/store/pgctl.sh" start "$work/pg")
psql -X -q "$pgurl" -c "CREATE DATABASE sovbench" >/dev/null
pgdb=${pgurl/\/postgres\?/\/sovbench?}
sq=$work/state.db

cat >"$work/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"prompt": "Once upon a time", "max_tokens": 1, "temperature": 0, "ignore_eos": true}'
wrk.headers["Content-Type"] = "application/json"
EOF

port_of() { # ready-file
  for _ in $(seq 600); do [ -s "$1" ] && { cut -d' ' -f2 "$1"; return; }; sleep 0.05; done
  echo "audit.sh: the server did not start" >&2; exit 1
}

start() { # config -> sets cfg, port, pid
  cfg=$1
  local args=()
  case $cfg in
    sqlite) args=(--db "$sq" --no-audit) ;;
    sqlite-audit) args=(--db "$sq") ;;
    pg) args=(--db "$pgdb" --no-audit) ;;
    pg-audit) args=(--db "$pgdb" --state-dir "$work/state") ;;
  esac
  rm -f "$work/ready"
  "$sov" serve -m "$model" --port 0 --ready-file "$work/ready" -np "$n" -t "$t" "${args[@]}" >"$work/serve.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  port=$(port_of "$work/ready")
}

stop() {
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  grep -h "sov serve: audit:" "$work/serve.log" | sed "s/^sov serve: audit: /$cfg: /" >>"$work/commits" || true
}

tokens() { # config -> generated tokens/s
  start "$1"
  /usr/bin/python3 "$here/bench/loadgen.py" --url "http://127.0.0.1:$port" --clients "$n" --rounds 1 \
    --max-tokens "$max_tokens" --quiet >/dev/null # warm
  local out
  out=$(/usr/bin/python3 "$here/bench/loadgen.py" --url "http://127.0.0.1:$port" --clients "$n" \
    --rounds "$per_client" --max-tokens "$max_tokens" --quiet --json)
  stop
  echo "$out" | /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["errors"]==0, j; print(j["gen_tok_s"])'
}

requests() { # config -> requests/s
  start "$1"
  wrk -t 1 -c "$n" -d 1s -s "$work/post.lua" "http://127.0.0.1:$port/v1/completions" >/dev/null # warm
  local out
  out=$(wrk -t 1 -c "$n" -d "${d}s" -s "$work/post.lua" "http://127.0.0.1:$port/v1/completions")
  stop
  if echo "$out" | grep -q "Non-2xx"; then echo "audit.sh: $1: some requests failed:" >&2; echo "$out" >&2; exit 1; fi
  echo "$out" | awk '/Requests\/sec/ {print $2}'
}

configs=(sqlite sqlite-audit pg pg-audit)
declare -A tok req
for round in $(seq "$r"); do
  for c in "${configs[@]}"; do
    v=$(tokens "$c"); tok[$c]="${tok[$c]:-} $v"
    w=$(requests "$c"); req[$c]="${req[$c]:-} $w"
    echo "round $round: $c $v tok/s, $w req/s" >&2
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { echo "$1 $2" | awk '{printf "%.3f", $1/$2}'; }
verified() { # db pub
  "$sov" audit verify --db "$1" --pub "$2" | sed -e 's/^sov audit verify: //' -e 's/, chain head.*//'
}

echo
echo "audit overhead on $(basename "$model"), N=$n clients, -t $t, $r interleaved rounds (median):"
echo "  tokens/s: streamed completions of $max_tokens tokens, $per_client per client (bench/loadgen.py)"
echo "  requests/s: 1-token completions, keep-alive, ${d}s (wrk)"
printf "%-14s %12s %9s %12s %9s   %s\n" config "tokens/s" "vs off" "requests/s" "vs off" "all rounds (tok/s | req/s)"
for c in "${configs[@]}"; do
  base=${c%-audit}
  mt=$(echo "${tok[$c]}" | median); bt=$(echo "${tok[$base]}" | median)
  mr=$(echo "${req[$c]}" | median); br=$(echo "${req[$base]}" | median)
  printf "%-14s %12.1f %8sx %12.1f %8sx   %s |%s\n" "$c" "$mt" "$(ratio "$mt" "$bt")" "$mr" "$(ratio "$mr" "$br")" \
    "${tok[$c]}" "${req[$c]}"
done
echo
echo "group commit (the last run of each, from the server's shutdown line):"
for c in sqlite-audit pg-audit; do grep "^$c:" "$work/commits" | tail -n 2 | sed 's/^/  /'; done
echo "the logs the runs wrote:"
echo "  sqlite: $(verified "$sq" "$(dirname "$sq")/audit-ed25519.pub")"
echo "  pg:     $(verified "$pgdb" "$work/state/audit-ed25519.pub")"
