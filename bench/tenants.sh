#!/usr/bin/env bash
# bench/tenants.sh - what tenants cost: requests/s of a 1-token completion on stories260K
# with N concurrent keep-alive clients (wrk), authentication off (no --db) against an API key
# in a SQLite store and in PostgreSQL, with a key without limits (authenticated in memory)
# and with limits (one reservation transaction per request). Runs are interleaved, R rounds
# of D seconds each, and the median of each configuration is reported with its ratio to
# "off". Then bench/fairness.py (a lone tenant's TTFT under another's flood, fair vs FIFO).
#
#   bench/tenants.sh [-n 16] [-d 10] [-r 3] [-t 1] [-m MODEL] [--max-tokens 1] [--no-fairness]
#   (wrk from Debian: apt-get install wrk)
#
# PostgreSQL: a throw-away cluster from tests/store/pgctl.sh in a temporary folder (stopped at
# the end). Loopback only.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sov=${SOV_BIN:-$here/build/sov}
model=${MODEL:-$here/../shared/models/stories260K.gguf}
n=16 d=10 r=3 t=1 max_tokens=1 fairness=1
while [ $# -gt 0 ]; do
  case $1 in
    -n) n=$2; shift 2 ;; -d) d=$2; shift 2 ;; -r) r=$2; shift 2 ;; -t) t=$2; shift 2 ;;
    -m) model=$2; shift 2 ;; --max-tokens) max_tokens=$2; shift 2 ;; --no-fairness) fairness=0; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "tenants.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "tenants.sh: wrk is missing: apt-get install wrk" >&2; exit 1; }
[ -f "$model" ] || { echo "tenants.sh: no model $model" >&2; exit 1; }

work=$(mktemp -d /tmp/sov-bench-tenants.XXXXXX)
chmod 755 "$work" # the PostgreSQL cluster inside runs as its own user
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  bash "$here/tests/store/pgctl.sh" stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== PostgreSQL: a throw-away cluster" >&2
pgurl=$(PGCTL_DURABLE=1 bash "$here/tests/store/pgctl.sh" start "$work/pg")
psql -X -q "$pgurl" -c "CREATE DATABASE sovbench" >/dev/null
pgdb=${pgurl/\/postgres\?/\/sovbench?}

newkey() { "$sov" keys create --db "$1" --tenant bench "${@:2}" 2>/dev/null | tail -n 1; }
sq=$work/state.db
declare -A key
key[sqlite]=$(newkey "$sq")
key[sqlite-limits]=$(newkey "$sq" --rpm 100000000 --tpm 1000000000 --tokens-per-day 1000000000000)
key[pg]=$(newkey "$pgdb")
key[pg-limits]=$(newkey "$pgdb" --rpm 100000000 --tpm 1000000000 --tokens-per-day 1000000000000)

cat >"$work/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"prompt": "Once upon a time", "max_tokens": $max_tokens, "temperature": 0, "ignore_eos": true}'
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("SOV_KEY")
if key and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
EOF

port_of() { # ready-file
  for _ in $(seq 600); do [ -s "$1" ] && { cut -d' ' -f2 "$1"; return; }; sleep 0.05; done
  echo "tenants.sh: the server did not start" >&2; exit 1
}

one() { # config -> requests/s
  local cfg=$1 db=() k=
  case $cfg in
    off) ;;
    sqlite*) db=(--db "$sq"); k=${key[$cfg]} ;;
    pg*) db=(--db "$pgdb"); k=${key[$cfg]} ;;
  esac
  rm -f "$work/ready"
  "$sov" serve -m "$model" --port 0 --ready-file "$work/ready" -np "$n" -t "$t" "${db[@]}" >"$work/serve.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  local port
  port=$(port_of "$work/ready")
  SOV_KEY=$k wrk -t 1 -c "$n" -d 1s -s "$work/post.lua" "http://127.0.0.1:$port/v1/completions" >/dev/null # warm
  local out
  out=$(SOV_KEY=$k wrk -t 1 -c "$n" -d "${d}s" -s "$work/post.lua" "http://127.0.0.1:$port/v1/completions")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  if echo "$out" | grep -q "Non-2xx"; then
    echo "tenants.sh: $cfg: some requests failed:" >&2; echo "$out" >&2; exit 1
  fi
  echo "$out" | awk '/Requests\/sec/ {print $2}'
}

configs=(off sqlite sqlite-limits pg pg-limits)
declare -A runs
for round in $(seq "$r"); do
  for c in "${configs[@]}"; do
    v=$(one "$c")
    runs[$c]="${runs[$c]:-} $v"
    echo "round $round: $c $v req/s" >&2
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
base=$(echo "${runs[off]}" | median)
echo
echo "$max_tokens-token completions on $(basename "$model"), $n keep-alive clients, -t $t, $r x ${d}s rounds (median):"
printf "%-14s %12s %10s   %s\n" config "requests/s" "vs off" "all rounds"
for c in "${configs[@]}"; do
  m=$(echo "${runs[$c]}" | median)
  printf "%-14s %12.1f %9.3fx  %s\n" "$c" "$m" "$(echo "$m $base" | awk '{print $1/$2}')" "${runs[$c]}"
done

fm=$here/build/bench-models/llama-134m-q8_0.gguf
if [ "$fairness" = 0 ]; then
  :
elif [ -f "$fm" ]; then
  echo
  echo "== fairness (bench/fairness.py on $(basename "$fm"))"
  /usr/bin/python3 "$here/bench/fairness.py" --model "$fm"
else
  echo "(fairness: run make bench once to generate $fm, then bench/fairness.py)" >&2
fi
