#!/usr/bin/env bash
# Encoder embeddings throughput and agreement with llama.cpp (docs/EMBEDDINGS.md), on
# synthetic models with real vocabularies, F16 and Q8_0, 32 texts of exactly 128 tokens
# (with the special tokens):
#   bert:  BGE-small's shape (12 layers, dim 384, 12 heads, FFN 1536), the bert-bge
#          WordPiece vocabulary ([CLS] + 126 + [SEP]);
#   moe:   nomic-bert-moe, nomic-embed-text-v2-moe's layout at BGE-small's width (12
#          layers, dim 384, 12 heads, FFN 1536, experts in every second layer: 8, 2 used),
#          the XLM-RoBERTa Unigram vocabulary (<s> + 126 + </s>);
#   1. sov (build/bench/bench_encoder): embeddings/s with 1 input per forward batch and
#      with all 32 in one batch (best of 3);
#   2. llama.cpp's llama-embedding on the same file and texts, when LLAMA_BIN (default
#      /work/peers/llama.cpp/build/bin) has it: batch 32 (one llama-embedding run over the
#      32 texts) and batch 1 (one run per text, the first 8 texts), embeddings/s from its
#      decode time (wall time after its timestamped "batch_decode" log line: model loading
#      and its warm-up run excluded, as for sov; output and exit included), and the cosine
#      of every sov vector with llama.cpp's. (llama-embedding prints through an
#      asynchronous logger that now and then loses the end of its output at exit: a batch-32
#      run whose vectors do not parse is repeated, at most 5 times.)
# ENCODERS (default "bert moe") picks the models; THREADS (default 2) threads. The machine's
# load changes absolute numbers: compare the rows of one run.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
sov=${SOV_BIN:-$here/build/sov}
bench=$here/build/bench/bench_encoder
models=${BENCH_MODELS:-$here/build/bench-models}
shared=${SOV_SHARED_MODELS:-$here/../shared/models}
llama=${LLAMA_BIN:-/work/peers/llama.cpp/build/bin}
threads=${THREADS:-2}
encoders=${ENCODERS:-bert moe}
mkdir -p "$models"
work=$(mktemp -d /tmp/sov-embed-bert.XXXXXX)
trap 'rm -rf "$work"' EXIT

# 32 texts of 128 tokens each under VOCAB (special tokens included) into OUT; LANG en, or
# ko for Korean and English mixed
make_texts() { # VOCAB OUT LANG
/usr/bin/python3 - "$sov" "$1" "$2" "$3" <<'PY'
import subprocess, sys
sov, vocab, out, lang = sys.argv[1:5]
words = ("the network operator routes calls through a regional switch when traffic peaks in seoul and customers "
         "report dropped sessions on their mobile data plans while engineers review logs retrieval augmented "
         "generation embedding models encode documents into vectors").split()
if lang == "ko":
    words += ("서울의 통신사는 트래픽이 몰릴 때 지역 교환기로 통화를 돌립니다 고객은 모바일 데이터 요금제에서 "
              "끊긴 세션을 신고하고 엔지니어는 로그를 검토합니다 검색 증강 생성 임베딩 모델은 문서를 벡터로 "
              "바꿉니다").split()
def n_tokens(t):
    return len(subprocess.run([sov, "tokenize", "-m", vocab, "-p", t], capture_output=True, text=True).stdout.split())
lines = []
for i in range(32):
    ws = [words[(i * 7 + k * 3) % len(words)] for k in range(200)]
    lo, hi = 1, 200
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if n_tokens(" ".join(ws[:mid])) <= 128 else (lo, mid - 1)
    text = " ".join(ws[:lo])
    while n_tokens(text) < 128:  # a word may be two pieces: top up with one-piece words
        text += " a"
    assert n_tokens(text) == 128
    lines.append(text)
open(out, "w").write("\n".join(lines) + "\n")
PY
}

# llama-embedding's decode time: the process's wall time after the log line that starts the
# batch (--log-timestamps; model loading and warm-up come before it)
ll() { # MODEL OUT_JSON ERR ARGS...
  local m=$1 out=$2 err=$3; shift 3
  local t0 t1
  t0=$(date +%s.%N)
  "$llama/llama-embedding" -m "$m" -t "$threads" --log-timestamps --embd-output-format array "$@" \
    >"$out" 2>"$err"
  t1=$(date +%s.%N)
  echo "$t0 $t1" >>"$err.wall"
}

run() { # NAME VOCAB LANG GEN-MODEL-ARGS...
  local name=$1 vocab=$2 lang=$3; shift 3
  [ -f "$vocab" ] || { echo "embed_bert.sh: $vocab is missing" >&2; exit 1; }
  make_texts "$vocab" "$work/texts-$name.txt" "$lang"
  local texts=$work/texts-$name.txt
  for t in F16 Q8_0; do
    local m=$models/$name-$t.gguf tag=$name-$t
    [ -f "$m" ] || "$sov" gen-model -o "$m" --type "$t" --vocab-from "$vocab" --name "$name-synthetic" "$@" >&2
    echo "== $(basename "$m"): sov"
    "$bench" "$m" "$texts" -b 1 -t "$threads" -r 3
    "$bench" "$m" "$texts" -b 32 -t "$threads" -r 3 --out "$work/sov-$tag.f32"
    [ -x "$llama/llama-embedding" ] || continue
    echo "== $(basename "$m"): llama.cpp llama-embedding"
    for try in 1 2 3 4 5; do
      rm -f "$work/ll-$tag.err.wall"
      ll "$m" "$work/ll-$tag.json" "$work/ll-$tag.err" -f "$texts" -b 4096 -ub 4096 -c 4096 -np 32
      /usr/bin/python3 -c 'import json, sys; assert len(json.load(open(sys.argv[1]))) == 32' "$work/ll-$tag.json" \
        2>/dev/null && break
    done
    for i in 1 2 3 4 5 6 7 8; do
      ll "$m" /dev/null "$work/ll1-$tag-$i.err" -p "$(sed -n ${i}p "$texts")" -b 512 -ub 512 -c 512
    done
    /usr/bin/python3 - "$work" "$tag" "$t" <<'PY'
import glob, json, re, sys
import numpy as np
work, tag, t = sys.argv[1:4]
def decode_s(err):
    """wall time of the run after its 'batch_decode' log line"""
    t0, t1 = map(float, open(err + ".wall").read().split()[-2:])
    text = open(err).read()
    m = re.search(r"^(\d+)\.(\d+)\.(\d+)\.(\d+) . batch_decode", text, re.M)
    mi, sec, ms, us = map(int, m.groups())  # minutes.seconds.milliseconds.microseconds
    return (t1 - t0) - (mi * 60 + sec + ms / 1e3 + us / 1e6)
b1 = [decode_s(f) for f in sorted(glob.glob("%s/ll1-%s-*.err" % (work, tag)))]
print("  %s batch 1  : %d inputs of 128 tokens: %8.1f embeddings/s (llama.cpp)" % (t, len(b1), len(b1) / sum(b1)))
print("  %s batch 32 : 32 inputs of 128 tokens: %8.1f embeddings/s (llama.cpp)" %
      (t, 32 / decode_s("%s/ll-%s.err" % (work, tag))))
a = np.array(json.load(open("%s/ll-%s.json" % (work, tag))), dtype=np.float64)
s = np.fromfile("%s/sov-%s.f32" % (work, tag), dtype=np.float32).reshape(a.shape).astype(np.float64)
c = (a * s).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(s, axis=1)
print("  cosine sov vs llama.cpp over 32 inputs: min %.6f mean %.6f" % (c.min(), c.mean()))
PY
  done
}

shape=(--dim 384 --layers 12 --heads 12 --ffn 1536 --ctx 512)
for e in $encoders; do
  case $e in
    bert) run bge-small "$shared/vocab/ggml-vocab-bert-bge.gguf" en --arch bert "${shape[@]}" ;;
    moe) run nomic-moe-small "$shared/vocab/ggml-vocab-nomic-bert-moe.gguf" ko --arch nomic-bert-moe "${shape[@]}" \
           --experts 8 --experts-used 2 ;;
    *) echo "embed_bert.sh: unknown encoder '$e' (bert, moe)" >&2; exit 2 ;;
  esac
done
