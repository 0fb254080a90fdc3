#!/usr/bin/env bash
# Server load benchmark: starts `sov serve` on the model, drives it with bench/loadgen.py
# at each concurrency N (N streaming clients x ROUNDS requests of MAX_TOKENS tokens),
# prints a table with the server's peak RSS, and stops it with SIGTERM.
# With LLAMA_SERVER=/path/to/llama-server the same loads are then run against
# llama.cpp's server on the same file and both are printed side by side.
# Everything stays on 127.0.0.1.
#
#   bench/serve.sh MODEL.gguf [N ...]          (N default: 1 4 16 64)
#   LLAMA_SERVER=../ref/llama.cpp/build/bin/llama-server bench/serve.sh model.gguf 1 4 16
#
# Environment:
#   MODEL, NS          instead of the arguments
#   ROUNDS=2           requests per client, one after another
#   MAX_TOKENS=64      tokens generated per request (ignore_eos)
#   NP=16 THREADS=2    -np / -t for both servers
#   CTX                positions per sequence (default: the model's, at most 4096, as sov
#                      serve does); llama-server gets -c NP*CTX, sov gets -c CTX if set
#   LLAMA_PORT=18090   fixed port for llama-server (sov uses --port 0)
#   TIMEOUT=600        bound on each loadgen run, seconds
#   LOADGEN_ARGS       more loadgen options, e.g. "--prompt-tokens-approx 200 --endpoint chat"
#   OUT                also append the results there as JSON lines (with "server" and
#                      "peak_rss_kb")
#   SOV_BIN            the sov binary (default build/sov)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sov=${SOV_BIN:-$here/build/sov}
loadgen=$here/bench/loadgen.py
py=/usr/bin/python3
[ -x "$py" ] || py=python3

model=${1:-${MODEL:-}}
[ $# -gt 0 ] && shift
ns=${NS:-1 4 16 64}
[ $# -gt 0 ] && ns="$*"
rounds=${ROUNDS:-2}
max_tokens=${MAX_TOKENS:-64}
np=${NP:-16}
threads=${THREADS:-2}
llama_port=${LLAMA_PORT:-18090}
timeout=${TIMEOUT:-600}
read -r -a extra <<<"${LOADGEN_ARGS:-}"

if [ -z "$model" ] || [ ! -f "$model" ]; then
  echo "usage: bench/serve.sh MODEL.gguf [N ...]   (model not found: '${model}')" >&2
  exit 2
fi
[ -x "$sov" ] || { echo "serve.sh: $sov not built (cmake --build build)" >&2; exit 2; }
for n in $ns; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "serve.sh: bad N '$n'" >&2; exit 2; }
done

sov_ctx_args=()
if [ -n "${CTX:-}" ]; then
  ctx=$CTX
  sov_ctx_args=(-c "$ctx")
else
  ctx=$("$sov" inspect "$model" 2>/dev/null | awk '$1 ~ /\.context_length$/ {print $3; exit}' || true)
  [[ "$ctx" =~ ^[0-9]+$ ]] || ctx=4096
  [ "$ctx" -gt 4096 ] && ctx=4096
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sov-serve-bench.XXXXXX")
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

peak_rss_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# stop_server NAME: SIGTERM, wait (bounded), report how it ended
stop_server() {
  local name=$1 rc=0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 600); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$server_pid" 2>/dev/null; then
    echo "serve.sh: $name did not exit 60 s after SIGTERM: killing it" >&2
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" 2>/dev/null || rc=$?
  echo "$name stopped (exit status $rc)" >&2
  server_pid=
}

# run_loads NAME URL: loadgen for each N, one JSON line each into $tmp/NAME.jsonl
run_loads() {
  local name=$1 url=$2 n line
  : >"$tmp/$name.jsonl"
  for n in $ns; do
    echo "== $name: $n clients x $rounds rounds, max_tokens $max_tokens" >&2
    line=$("$py" "$loadgen" --url "$url" --clients "$n" --rounds "$rounds" --max-tokens "$max_tokens" \
             --timeout "$timeout" --json "${extra[@]}") || true
    if [ -z "$line" ]; then
      line="{\"clients\":$n,\"failed\":true}"
    fi
    echo "$line" >>"$tmp/$name.jsonl"
  done
}

server_dead() { # NAME LOG
  echo "serve.sh: $1 exited before it was ready; its log:" >&2
  tail -n 20 "$2" >&2
  server_pid=
  exit 1
}

# ---- sov serve ----
echo "== starting sov serve -m $model -np $np -t $threads ${sov_ctx_args[*]}" >&2
"$sov" serve -m "$model" --host 127.0.0.1 --port 0 --ready-file "$tmp/ready" \
  -np "$np" -t "$threads" "${sov_ctx_args[@]}" >"$tmp/sov.log" 2>&1 &
server_pid=$!
for _ in $(seq 1200); do
  [ -s "$tmp/ready" ] && break
  kill -0 "$server_pid" 2>/dev/null || server_dead "sov serve" "$tmp/sov.log"
  sleep 0.1
done
[ -s "$tmp/ready" ] || { echo "serve.sh: sov serve not ready after 120 s" >&2; exit 1; }
read -r host port <"$tmp/ready"
sov_url="http://$host:$port"
"$py" "$loadgen" --url "$sov_url" --clients 0 --wait-health 60 ||
  { echo "serve.sh: sov serve does not answer /health" >&2; exit 1; }
run_loads sov "$sov_url"
echo "$(peak_rss_kb "$server_pid")" >"$tmp/sov.rss"
stop_server "sov serve"

# ---- llama-server ----
names="sov"
if [ -n "${LLAMA_SERVER:-}" ]; then
  if [ ! -x "$LLAMA_SERVER" ]; then
    echo "serve.sh: LLAMA_SERVER=$LLAMA_SERVER is not executable; skipping llama-server" >&2
  elif "$py" "$loadgen" --url "http://127.0.0.1:$llama_port" --clients 0 --wait-health 0.3 2>/dev/null; then
    echo "serve.sh: something already answers on 127.0.0.1:$llama_port; set LLAMA_PORT" >&2
    exit 1
  else
    echo "== starting llama-server -m $model -np $np -t $threads -c $((np * ctx)) --port $llama_port" >&2
    "$LLAMA_SERVER" -m "$model" --host 127.0.0.1 --port "$llama_port" -np "$np" -t "$threads" \
      -c $((np * ctx)) >"$tmp/llama.log" 2>&1 &
    server_pid=$!
    ok=0
    for _ in $(seq 600); do  # /health answers 503 while loading, 200 once ready
      kill -0 "$server_pid" 2>/dev/null || server_dead llama-server "$tmp/llama.log"
      if "$py" "$loadgen" --url "http://127.0.0.1:$llama_port" --clients 0 --wait-health 0.5 2>/dev/null; then
        ok=1; break
      fi
    done
    [ $ok = 1 ] || { echo "serve.sh: llama-server not healthy after 300 s" >&2; exit 1; }
    run_loads llama "http://127.0.0.1:$llama_port"
    echo "$(peak_rss_kb "$server_pid")" >"$tmp/llama.rss"
    stop_server llama-server
    names="sov llama"
  fi
fi

# ---- report ----
"$py" - "$tmp" "$model" "$names" "${OUT:-}" <<'EOF'
import json, os, sys
tmp, model, names, out = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4]
label = {"sov": "sov serve", "llama": "llama-server"}
res, rss = {}, {}
for n in names:
    with open(os.path.join(tmp, n + ".jsonl")) as f:
        res[n] = [json.loads(l) for l in f if l.strip()]
    with open(os.path.join(tmp, n + ".rss")) as f:
        rss[n] = int(f.read().strip() or 0)

def v(x, f="%.1f"):
    return "-" if x is None else f % x

first = res[names[0]][0] if res[names[0]] else {}
print()
print("model %s, %s rounds x max_tokens %s per client" % (os.path.basename(model), first.get("rounds", "?"),
                                                          first.get("max_tokens", "?")))
for n in names:
    print()
    print("%s  (peak RSS %.1f MiB)" % (label[n], rss[n] / 1024.0))
    print("%6s %14s %8s %10s %10s %10s %9s %9s" % ("N", "ok/429/err", "wall s", "gen tok/s",
          "TTFT p50", "TTFT p95", "ITL p50", "ITL p95"))
    for r in res[n]:
        if r.get("failed"):
            print("%6d  loadgen failed" % r["clients"])
            continue
        print("%6d %14s %8.2f %10s %10s %10s %9s %9s" % (
            r["clients"], "%d/%d/%d" % (r["ok"], r["refused"], r["errors"] + r["not_sent"]),
            r["wall_s"], v(r["gen_tok_s"]), v(r["ttft_ms_p50"]), v(r["ttft_ms_p95"]),
            v(r["itl_ms_p50"], "%.2f"), v(r["itl_ms_p95"], "%.2f")))
    print("%6s  (TTFT and ITL in ms)" % "")

if len(names) == 2:
    a, b = res["sov"], res["llama"]
    print()
    print("side by side: sov serve | llama-server   (peak RSS %.1f | %.1f MiB)"
          % (rss["sov"] / 1024.0, rss["llama"] / 1024.0))
    print("%6s %21s %21s %21s %21s %21s" % ("N", "gen tok/s", "TTFT p50 ms", "TTFT p95 ms",
                                           "ITL p50 ms", "ITL p95 ms"))
    for ra, rb in zip(a, b):
        def pair(k, f="%.1f"):
            return "%10s|%-10s" % (v(ra.get(k), f), v(rb.get(k), f))
        bad = ""
        for tag, r in (("sov", ra), ("llama", rb)):
            if r.get("failed"):
                bad += "  %s: loadgen failed" % tag
            elif r["errors"] or r["refused"] or r["not_sent"]:
                bad += "  %s: %d refused, %d errors" % (tag, r["refused"], r["errors"] + r["not_sent"])
        print("%6d %21s %21s %21s %21s %21s%s" % (ra["clients"], pair("gen_tok_s"), pair("ttft_ms_p50"),
              pair("ttft_ms_p95"), pair("itl_ms_p50", "%.2f"), pair("itl_ms_p95", "%.2f"), bad))

if out:
    with open(out, "a") as f:
        for n in names:
            for r in res[n]:
                r = dict(r, server=label[n], model=os.path.basename(model), peak_rss_kb=rss[n])
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
    print("\nresults appended to %s" % out)
EOF
