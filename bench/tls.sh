#!/usr/bin/env bash
# bench/tls.sh - what HTTPS costs: requests/s of a 1-token completion on stories260K with
# N concurrent clients (wrk), plain HTTP against TLS (sov serve --tls-cert/--tls-key with an
# EC P-256 certificate from tests/server/tls_pki.sh), on keep-alive connections (the
# handshake amortised over many requests) and with a new connection per request
# (`Connection: close`: one TCP and one TLS handshake per request; wrk does not resume TLS
# sessions, so each is a full ECDHE + ECDSA handshake). Runs are interleaved, R rounds of D
# seconds each; the median of each configuration is reported with its ratio to plain
# keep-alive, and the CPU time per request (user + system, from /proc) of the server's HTTP
# thread, where all TLS work happens (the engine thread's share depends on how requests
# batch, not on TLS): on a small machine wrk's own TLS work competes with the server for the
# cores, so requests/s mixes the client's cost in, and the HTTP thread's CPU time per request
# is the server's alone. The server's counters (sov_tls_handshakes_total) confirm what
# happened.
#
#   bench/tls.sh [-n 16] [-d 10] [-r 3] [-t 1] [-m MODEL] [--max-tokens 1]
#   (wrk from Debian: apt-get install wrk; it does not verify certificates)
#
# Loopback only. wrk cannot present a client certificate, so mTLS is not measured here
# (its extra cost is one certificate verification per handshake).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sov=${SOV_BIN:-$here/build/sov}
model=${MODEL:-$here/../shared/models/stories260K.gguf}
n=16 d=10 r=3 t=1 max_tokens=1
while [ $# -gt 0 ]; do
  case $1 in
    -n) n=$2; shift 2 ;; -d) d=$2; shift 2 ;; -r) r=$2; shift 2 ;; -t) t=$2; shift 2 ;;
    -m) model=$2; shift 2 ;; --max-tokens) max_tokens=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "tls.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "tls.sh: wrk is missing: apt-get install wrk" >&2; exit 1; }
[ -f "$model" ] || { echo "tls.sh: no model $model" >&2; exit 1; }

work=$(mktemp -d /tmp/sov-bench-tls.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
bash "$here/tests/server/tls_pki.sh" "$work/pki"

cat >"$work/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"prompt": "Once upon a time", "max_tokens": $max_tokens, "temperature": 0, "ignore_eos": true}'
wrk.headers["Content-Type"] = "application/json"
if os.getenv("SOV_CLOSE") == "1" then wrk.headers["Connection"] = "close" end
EOF

port_of() { # ready-file
  for _ in $(seq 600); do [ -s "$1" ] && { cut -d' ' -f2 "$1"; return; }; sleep 0.05; done
  echo "tls.sh: the server did not start" >&2; exit 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/task/$1/stat"; } # user + system, the HTTP (main) thread

one() { # config -> "requests/s cpu-us/request handshakes"
  local cfg=$1 tls=() scheme=http close=0
  case $cfg in
    tls*) tls=(--tls-cert "$work/pki/server.pem" --tls-key "$work/pki/server.key"); scheme=https ;;
  esac
  case $cfg in *close) close=1 ;; esac
  rm -f "$work/ready"
  "$sov" serve -m "$model" --port 0 --ready-file "$work/ready" -np "$n" -t "$t" "${tls[@]}" >"$work/serve.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  local port url
  port=$(port_of "$work/ready")
  url="$scheme://127.0.0.1:$port/v1/completions"
  SOV_CLOSE=$close wrk -t 1 -c "$n" -d 1s -s "$work/post.lua" "$url" >/dev/null # warm
  local out hs=- cpu0 cpu1
  cpu0=$(cpu_ticks "$pid")
  out=$(SOV_CLOSE=$close wrk -t 1 -c "$n" -d "${d}s" -s "$work/post.lua" "$url")
  cpu1=$(cpu_ticks "$pid")
  if [ "$scheme" = https ]; then
    hs=$(curl -sk "https://127.0.0.1:$port/metrics" | awk '/^sov_tls_handshakes_total/ {print $2}')
  fi
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  if echo "$out" | grep -q "Non-2xx\|Socket errors"; then
    echo "tls.sh: $cfg: some requests failed:" >&2; echo "$out" >&2; exit 1
  fi
  local rps
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  # HTTP thread CPU microseconds per request over the measured run
  echo "$rps $(awk -v a="$cpu0" -v b="$cpu1" -v hz="$(getconf CLK_TCK)" -v r="$rps" -v d="$d" \
    'BEGIN {printf "%.1f", (b - a) / hz * 1e6 / (r * d)}') $hs"
}

configs=(plain tls plain-close tls-close)
declare -A runs cpus
for round in $(seq "$r"); do
  for c in "${configs[@]}"; do
    read -r v cpu hs < <(one "$c")
    runs[$c]="${runs[$c]:-} $v"
    cpus[$c]="${cpus[$c]:-} $cpu"
    echo "round $round: $c $v req/s, HTTP thread $cpu us/request (TLS handshakes: $hs)" >&2
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
base=$(echo "${runs[plain]}" | median)
echo
echo "$max_tokens-token completions on $(basename "$model"), $n clients, -t $t, $r x ${d}s rounds (median):"
cbase=$(echo "${cpus[plain]}" | median)
printf "%-12s %12s %10s %15s %10s   %s\n" config "requests/s" "vs plain" "HTTP us/request" "vs plain" "all rounds (req/s)"
for c in "${configs[@]}"; do
  m=$(echo "${runs[$c]}" | median)
  cm=$(echo "${cpus[$c]}" | median)
  printf "%-12s %12.1f %9.3fx %15.1f %9.3fx  %s\n" "$c" "$m" "$(echo "$m $base" | awk '{print $1/$2}')" "$cm" \
    "$(echo "$cm $cbase" | awk '{print $1/$2}')" "${runs[$c]}"
done
