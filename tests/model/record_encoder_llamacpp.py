#!/usr/bin/python3
"""Records llama.cpp's token ids and embeddings of synthetic encoder models with the real
XLM-RoBERTa vocabulary into expected/encoder_llamacpp.json, the expectation
test_encoder_xlmr.py holds sov to. Not run in CI (llama.cpp is not there); to re-record:

    tests/model/record_encoder_llamacpp.py [SOV_BIN] [LLAMA_BIN_DIR]
    (defaults: build/sov and /work/peers/llama.cpp/build/bin, llama.cpp commit de3ff81)

For each model: `sov gen-model` writes it (seeded, so the test regenerates the same bytes:
its sha256 is recorded and checked), llama.cpp's `llama-tokenize --ids` gives each text's
ids and `llama-embedding --embd-output-format array` the vectors (its pooling from the
file, L2-normalised). llama-embedding prints through an asynchronous logger that now and
then loses the end of its output at exit: a run whose output does not parse into the
expected shape is repeated (at most 10 times).
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
VOCAB = "ggml-vocab-nomic-bert-moe.gguf"  # XLM-RoBERTa's Unigram vocabulary (t5), 250048 tokens

TEXTS = [
    "query: 서울의 날씨는 어때요?",
    "passage: 서울은 오늘 맑고 기온은 영상 5도입니다.",
    "Hello world! Retrieval-augmented generation (RAG) needs good embeddings.",
    "한국어와 English가 섞인 문장도 잘 처리해야 합니다.",
    "  Leading spaces, ÜNICODE, Ｆｕｌｌｗｉｄｔｈ letters and the number 12345.",
    "안녕하세요",
]

# name -> gen-model arguments (besides -o and --vocab-from)
SHAPE = ["--dim", "64", "--heads", "4", "--ffn", "128", "--ctx", "512"]
MODELS = {
    # BGE-M3: XLM-R bert, CLS pooling
    "xlmr-bert-cls-f16": ["--arch", "bert", "--layers", "2", "--type", "F16", "--pooling", "2", "--seed", "3"] + SHAPE,
    # multilingual-E5: XLM-R bert, mean pooling
    "xlmr-bert-mean-q8": ["--arch", "bert", "--layers", "2", "--type", "Q8_0", "--pooling", "1", "--seed", "4"]
                         + SHAPE,
    # nomic-embed-text-v2-moe: XLM-R nomic-bert-moe, mean pooling, experts in layers 1 and 3
    "xlmr-nomic-moe-f16": ["--arch", "nomic-bert-moe", "--layers", "4", "--type", "F16", "--seed", "5"] + SHAPE,
    "xlmr-nomic-moe-q8": ["--arch", "nomic-bert-moe", "--layers", "4", "--type", "Q8_0", "--experts", "4",
                          "--experts-used", "1", "--seed", "6"] + SHAPE,
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dumps(doc):
    """JSON with one line per id list and per vector"""
    def enc(v, ind):
        pad = " " * ind
        if isinstance(v, dict):
            items = ["%s %s: %s" % (pad, json.dumps(k, ensure_ascii=False), enc(x, ind + 1)) for k, x in v.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(v, list) and v and isinstance(v[0], list):
            return "[\n" + ",\n".join(pad + " " + json.dumps(x) for x in v) + "\n" + pad + "]"
        return json.dumps(v, ensure_ascii=False)
    return enc(doc, 0) + "\n"


def main():
    sov = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "sov")
    llama = sys.argv[2] if len(sys.argv) > 2 else "/work/peers/llama.cpp/build/bin"
    vocab = os.path.join(ROOT, "..", "shared", "models", "vocab", VOCAB)
    work = tempfile.mkdtemp(prefix="sov-record-enc-")
    texts_path = os.path.join(work, "texts.txt")
    with open(texts_path, "w", encoding="utf-8") as f:
        f.write("\n".join(TEXTS) + "\n")
    doc = {"source": "llama.cpp de3ff81 (llama-tokenize --ids, llama-embedding --embd-output-format array)",
           "vocab": VOCAB, "texts": TEXTS, "models": {}}
    for name, args in MODELS.items():
        path = os.path.join(work, name + ".gguf")
        subprocess.run([sov, "gen-model", "-o", path, "--vocab-from", vocab] + args, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ids = []
        for t in TEXTS:
            out = subprocess.run([os.path.join(llama, "llama-tokenize"), "-m", path, "-p", t, "--ids", "--log-disable"],
                                 check=True, capture_output=True, text=True).stdout
            ids.append(json.loads(out.strip().splitlines()[-1]))
        vectors = None
        for _ in range(10):
            r = subprocess.run([os.path.join(llama, "llama-embedding"), "-m", path, "-f", texts_path, "-t", "2",
                                "--embd-output-format", "array"], capture_output=True, text=True)
            try:
                v = json.loads(r.stdout)
            except ValueError:
                continue
            if r.returncode == 0 and len(v) == len(TEXTS) and all(len(x) == 64 for x in v):
                vectors = v
                break
        if vectors is None:
            sys.exit("record: llama-embedding gave no complete output for %s" % name)
        doc["models"][name] = {"args": args, "sha256": sha256(path), "ids": ids, "embeddings": vectors}
        os.unlink(path)
        print("recorded %s" % name, file=sys.stderr)
    os.unlink(texts_path)
    os.rmdir(work)
    out = os.path.join(HERE, "expected", "encoder_llamacpp.json")
    with open(out, "w", encoding="utf-8") as f:
        f.write(dumps(doc))
    print("wrote %s" % out, file=sys.stderr)


if __name__ == "__main__":
    main()
