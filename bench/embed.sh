#!/usr/bin/env bash
# Embeddings throughput (docs/SERVER.md, "Embeddings"): 64 short texts embedded at once,
#   1. in the engine (build/bench/bench_embed): the LM head skipped, as /v1/embeddings
#      runs, against the head run on each input's last token and on every token;
#   2. through the server: one POST /v1/embeddings of the 64 texts, repeated, on
#      `sov serve` (best of 9 requests; inputs/s and tokens/s from the usage field);
# on stories260K (../shared/models) and a 134M-shaped synthetic model (dim 768, 12 layers,
# Llama-2 vocabulary, Q8_0, as bench/run.sh makes it). THREADS (default 2) threads.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sov=${SOV_BIN:-$here/build/sov}
models=${BENCH_MODELS:-$here/build/bench-models}
shared=${SOV_SHARED_MODELS:-$here/../shared/models}
threads=${THREADS:-2}
mkdir -p "$models"
m134=$models/llama-134m-q8_0.gguf
if [ ! -f "$m134" ]; then
  vocab_args=(--vocab 32000)
  [ -f "$shared/vocab/ggml-vocab-llama-spm.gguf" ] && vocab_args=(--vocab-from "$shared/vocab/ggml-vocab-llama-spm.gguf")
  "$sov" gen-model -o "$m134" "${vocab_args[@]}" --type Q8_0 --dim 768 --layers 12 --heads 12 --kv-heads 12 \
    --ffn 2048 --name llama-134m-synthetic >&2
fi
list=("$m134")
[ -f "$shared/stories260K.gguf" ] && list=("$shared/stories260K.gguf" "${list[@]}")

for m in "${list[@]}"; do
  echo "== engine: $(basename "$m")"
  "$here/build/bench/bench_embed" "$m" -n 64 -t "$threads" -r 9
done

for m in "${list[@]}"; do
  echo "== server: $(basename "$m")"
  ready=$(mktemp -u /tmp/sov-embed-bench.XXXXXX)
  "$sov" serve -m "$m" --port 0 --ready-file "$ready" -t "$threads" -np 64 --ctx 128 >"$ready.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do [ -s "$ready" ] && break; sleep 0.1; done
  /usr/bin/python3 - "$(cat "$ready")" <<'PY'
import json, sys, time, urllib.request
host, port = sys.argv[1].split()
words = ("the network operator routes calls through a regional switch when traffic peaks in Seoul and "
         "customers report dropped sessions on their mobile data plans").split()
texts = [" ".join(words[(i * 7 + k * 3) % len(words)] for k in range(8 + i % 8)) for i in range(64)]
body = json.dumps({"input": texts}).encode()
best, tokens = 1e9, 0
for _ in range(9):
    t0 = time.time()
    r = urllib.request.urlopen(urllib.request.Request("http://%s:%s/v1/embeddings" % (host, port), body,
                                                      {"Content-Type": "application/json"}), timeout=600)
    j = json.loads(r.read())
    best = min(best, time.time() - t0)
    tokens = j["usage"]["prompt_tokens"]
print("  one request of 64 texts (%d tokens): %.1f inputs/s, %.0f tokens/s, %.1f ms" %
      (tokens, 64 / best, tokens / best, best * 1e3))
PY
  kill "$pid"
  wait "$pid" || true
  rm -f "$ready" "$ready.log"
done
