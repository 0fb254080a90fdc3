#!/usr/bin/env bash
# make bench: the benchmark suite of docs/PERFORMANCE.md.
#   1. synthetic TinyLlama-1.1B-shaped models (dim 2048, 22 layers, 32 heads, 4 KV heads,
#      FFN 5632, Llama-2 vocabulary) in Q4_0, Q8_0 and Q4_K, a 134M Q8_0 model and a
#      SmolLM2-135M-shaped one (576 wide) in Q8_0 and Q4_0, made once
#      with `sov gen-model` into $BENCH_MODELS (default build/bench-models);
#   2. `sov bench -p 512 -n 128 -t 1,2 -r 3` on each, and on the real models in
#      ../shared/models;
#   3. the tokenizer, kernel and structured-output (bench_grammar) micro-benchmarks.
# Results go to stdout and, as JSON lines, to build/bench-results.jsonl.
# With LLAMA_BENCH=/path/to/llama-bench (llama.cpp, built outside this project) each model
# is also measured by llama-bench right after sov, for side-by-side figures.
# BENCH_QUICK=1 runs -p 64 -n 16 -r 1 (a smoke run).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sov=${SOV_BIN:-$here/build/sov}
models=${BENCH_MODELS:-$here/build/bench-models}
shared=${SOV_SHARED_MODELS:-$here/../shared/models}
out=$here/build/bench-results.jsonl
p=512 n=128 r=3
if [ "${BENCH_QUICK:-0}" = 1 ]; then p=64 n=16 r=1; fi
mkdir -p "$models"
: >"$out"

vocab=$shared/vocab/ggml-vocab-llama-spm.gguf
gen() { # name type dims...
  local f=$models/$1.gguf; shift
  [ -f "$f" ] && return 0
  local vocab_args=(--vocab 32000)
  [ -f "$vocab" ] && vocab_args=(--vocab-from "$vocab")
  echo "== generating $f" >&2
  "$sov" gen-model -o "$f" "${vocab_args[@]}" "$@" >&2
}
gen tinyllama-1.1b-q4_0 --type Q4_0 --dim 2048 --layers 22 --heads 32 --kv-heads 4 --ffn 5632 --name tinyllama-1.1b-synthetic
gen tinyllama-1.1b-q8_0 --type Q8_0 --dim 2048 --layers 22 --heads 32 --kv-heads 4 --ffn 5632 --name tinyllama-1.1b-synthetic
# the k-quant most downloads use (layers Q4_K, output Q6_K): not in the issue's set, but
# what users run
gen tinyllama-1.1b-q4_k --type Q4_K --output-type Q6_K --dim 2048 --layers 22 --heads 32 --kv-heads 4 --ffn 5632 --name tinyllama-1.1b-synthetic
gen llama-134m-q8_0 --type Q8_0 --dim 768 --layers 12 --heads 12 --kv-heads 12 --ffn 2048 --name llama-134m-synthetic
# SmolLM2-135M's shape: rows 576 wide (18 blocks of 32, not a multiple of the planar
# kernels' groups of 8 or 4 blocks: the leftover-block path, docs/PERFORMANCE.md)
gen smollm-135m-q8_0 --type Q8_0 --dim 576 --layers 30 --heads 9 --kv-heads 3 --ffn 1536 --name smollm-135m-synthetic
gen smollm-135m-q4_0 --type Q4_0 --dim 576 --layers 30 --heads 9 --kv-heads 3 --ffn 1536 --name smollm-135m-synthetic

list=("$models/tinyllama-1.1b-q4_0.gguf" "$models/tinyllama-1.1b-q8_0.gguf" "$models/tinyllama-1.1b-q4_k.gguf"
      "$models/llama-134m-q8_0.gguf" "$models/smollm-135m-q8_0.gguf" "$models/smollm-135m-q4_0.gguf")
for f in "$shared"/*.gguf; do [ -f "$f" ] && list+=("$f"); done

for m in "${list[@]}"; do
  echo
  echo "== $(basename "$m")"
  "$sov" bench -m "$m" -p $p -n $n -t 1,2 -r $r --json-file "$out"
  if [ -n "${LLAMA_BENCH:-}" ]; then
    echo "-- llama.cpp (llama-bench) on the same file:"
    "$LLAMA_BENCH" -m "$m" -p $p -n $n -t 1,2 -r $r 2>/dev/null | grep -E "^\|" || true
  fi
done

echo
echo "== tokenizer"
"$here/build/bench/bench_tokenize" "$shared" || true
echo
echo "== chat templates (compile and render, docs/CHAT-TEMPLATES.md)"
"$here/build/bench/bench_jinja" "$here/tests/jinja/templates" || true
echo
echo "== kernels"
"$here/build/bench/bench_kernels" || true
echo
echo "== attention per cached position (decode and prompt, every KV cache type)"
"$here/build/bench/bench_attn" --time 0.2 || true
echo
echo "== structured output: grammar mask cost per token vs a decode step (docs/STRUCTURED-OUTPUT.md)"
"$here/build/bench/bench_grammar" --vocab "$vocab" -m "$models/tinyllama-1.1b-q4_0.gguf" -t 2 || true
echo
echo "== long contexts and KV cache types (bench/depth.sh quick; the full table: see the script)"
DEPTH_QUICK=1 "$here/bench/depth.sh" || true
/usr/bin/python3 "$here/bench/kv_kl.py" || true
echo
echo "results: $out"
