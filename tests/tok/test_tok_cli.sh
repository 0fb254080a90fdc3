#!/usr/bin/env bash
# test_tok_cli.sh - `sov tokenize` and `sov detokenize` on vocabulary-only files: ids,
# --no-bos, --pieces, --no-special, -f, the round trip, --help, one-line errors.
set -u
BIN=${SOV_BIN:?SOV_BIN not set}
VOCAB=${SOV_SHARED_MODELS:-../shared/models}/vocab
if [ ! -f "$VOCAB/ggml-vocab-llama-bpe.gguf" ]; then
    if [ "${SOV_REQUIRE_SHARED:-0}" = 1 ]; then echo "FAIL: $VOCAB missing"; exit 1; fi
    echo "SKIP: shared models not found"; exit 77
fi
TMP=${SOV_TEST_TMP:-/tmp}/tok_cli
mkdir -p "$TMP"
pass=0 fail=0
check() { # name, expected, actual
    if [ "$2" = "$3" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $1: expected [$2], got [$3]"; fi
}
BPE=$VOCAB/ggml-vocab-llama-bpe.gguf
SPM=$VOCAB/ggml-vocab-llama-spm.gguf

check "bpe ids with BOS" "128000 9906 1917" "$("$BIN" tokenize -m "$BPE" -p "Hello world")"
check "bpe --no-bos" "9906 1917" "$("$BIN" tokenize -m "$BPE" -p "Hello world" --no-bos)"
check "spm ids with BOS" "1 15043 3186" "$("$BIN" tokenize -m "$SPM" -p "Hello world")"
check "pieces" "128000:'<|begin_of_text|>' 9906:'Hello' 1917:' world'" "$("$BIN" tokenize -m "$BPE" -p "Hello world" --pieces)"
check "pieces escape" "198:'\\n' 6:\"'\"" "$("$BIN" tokenize -m "$BPE" --no-bos -p "$(printf "\n'")" --pieces | sed "s/6:'\\\\''/6:\"'\"/")"
check "special parsed" "128009" "$("$BIN" tokenize -m "$BPE" --no-bos -p "<|eot_id|>")"
check "--no-special" "27 91 68 354 851 91 29" "$("$BIN" tokenize -m "$BPE" --no-bos --no-special -p "<|eot_id|>")"
printf 'line one\nline two' > "$TMP/in.txt"
check "-f file" "1074 832 198 1074 1403" "$("$BIN" tokenize -m "$BPE" --no-bos -f "$TMP/in.txt")"
check "stdin" "1074 832 198 1074 1403" "$("$BIN" tokenize -m "$BPE" --no-bos < "$TMP/in.txt")"
check "detokenize" "Hello world" "$("$BIN" detokenize -m "$BPE" 9906 1917)"
check "detokenize spm drops the prefix space" "<s>Hello world" "$("$BIN" detokenize -m "$SPM" 1 15043 3186)"
check "detokenize spm --no-special" "Hello world" "$("$BIN" detokenize -m "$SPM" --no-special 1 15043 3186)"
check "detokenize one list" "<|begin_of_text|>Hello world" "$("$BIN" detokenize -m "$BPE" "[128000, 9906, 1917]")"
check "detokenize --no-special" "Hello world" "$("$BIN" detokenize -m "$BPE" --no-special 128000 9906 1917)"
text='안녕, 世界! x = f(42);  '
ids=$("$BIN" tokenize -m "$BPE" --no-bos -p "$text")
check "round trip" "$text" "$("$BIN" detokenize -m "$BPE" $ids)"

"$BIN" tokenize --help > "$TMP/h1" 2>&1; check "tokenize --help" "0" "$?"
grep -q "usage: sov tokenize" "$TMP/h1"; check "tokenize --help text" "0" "$?"
"$BIN" detokenize --help > "$TMP/h2" 2>&1; check "detokenize --help" "0" "$?"
grep -q "usage: sov detokenize" "$TMP/h2"; check "detokenize --help text" "0" "$?"

err_case() { # name, args...
    local name=$1; shift
    "$BIN" "$@" > "$TMP/out" 2> "$TMP/err"
    local rc=$?
    check "$name fails" "1" "$([ $rc -ne 0 ] && echo 1 || echo 0)"
    check "$name says one line" "1" "$(wc -l < "$TMP/err" | tr -d ' ')"
}
err_case "no model" tokenize -p hi
err_case "missing file" tokenize -m /nonexistent.gguf -p hi
err_case "not a gguf" tokenize -m "$TMP/in.txt" -p hi
err_case "unknown option" tokenize -m "$BPE" --bogus
err_case "bad id" detokenize -m "$BPE" 12x
err_case "id out of range" detokenize -m "$BPE" 99999999
err_case "missing text file" tokenize -m "$BPE" -f /nonexistent.txt

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
