"""XLM-RoBERTa embedding models end to end (BGE-M3 and multilingual-E5: `bert` with the
XLM-R Unigram vocabulary; nomic-embed-text-v2-moe: `nomic-bert-moe` with it), on synthetic
weights with the real vocabulary (../shared/models/vocab/ggml-vocab-nomic-bert-moe.gguf:
tokenizer.ggml.model t5, 250048 tokens, <s> ... </s> added, token_type_count 1), against
llama.cpp's recorded output (expected/encoder_llamacpp.json, record_encoder_llamacpp.py)
and the independent NumPy reference (reference.py: Encoder):

  - gen-model --vocab-from writes, byte for byte, the file llama.cpp was recorded on (its
    sha256), with one token-type row as the vocabulary says;
  - `sov tokenize`: the ids of Korean, English, mixed, full-width and space-led texts equal
    llama.cpp's, <s> first and </s> last;
  - `sov embed -f`: every vector's cosine with llama.cpp's >= 0.9999 (F16; Q8_0 >= 0.999:
    the two engines round the activations entering quantized products differently) and
    with the reference's >= 0.9999 (Q8_0: the reference with sov's activation rounding);
  - `/v1/embeddings` (`sov serve`) on the BGE-M3-shaped and the nomic-v2-moe-shaped
    models: the texts as an array of strings give `sov embed`'s vectors (1e-6), and the
    token-id arrays give the same.
"""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "server"))
import reference  # noqa: E402
from serverlib import SOV_BIN, Server, check, failures, shared_model, synthetic_model  # noqa: E402

RECORD = json.load(open(os.path.join(HERE, "expected", "encoder_llamacpp.json"), encoding="utf-8"))
TEXTS = RECORD["texts"]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cosines(a, b):
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def sov_ids(model, text):
    r = subprocess.run([SOV_BIN, "tokenize", "-m", model, "-p", text], capture_output=True, text=True)
    return [int(t) for t in r.stdout.split()] if r.returncode == 0 else None


def sov_embed(model, texts):
    path = model + ".texts"
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")
    r = subprocess.run([SOV_BIN, "embed", "-m", model, "-f", path, "--threads", "2"], capture_output=True, text=True)
    if not check(r.returncode == 0, "sov embed ran: %s" % r.stderr):
        return None
    return np.array([json.loads(line) for line in r.stdout.splitlines()], dtype=np.float64)


def check_model(name, rec, vocab):
    model = synthetic_model("enc-%s.gguf" % name, "--vocab-from", vocab, *rec["args"])
    if not check(sha256(model) == rec["sha256"],
                 "%s: gen-model writes the recorded file (sha256; else re-record)" % name):
        return None
    g = reference.GGUF(model)
    ne = g.tensors["token_types.weight"].ne
    check(tuple(ne[1:]) in ((), (1,)), "%s: one token-type row (token_type_count 1): %r" % (name, ne))
    quant = "q8" in name
    # the model tokenizes as its vocabulary does (checked text by text in main)
    check(sov_ids(model, TEXTS[0]) == rec["ids"][0], "%s: the model's tokenizer gives llama.cpp's ids" % name)
    got = sov_embed(model, TEXTS)
    if got is None:
        return None
    ll = np.array(rec["embeddings"], dtype=np.float64)
    c_ll = cosines(got, ll)
    ref = reference.Encoder(model)
    want = np.array([ref.embedding(ids, act_q8=quant) for ids in rec["ids"]])
    c_ref = cosines(got, want)
    bound_ll = 0.999 if quant else 0.9999
    print("  %-20s cosine vs llama.cpp min %.7f mean %.7f; vs reference%s min %.9f" %
          (name, c_ll.min(), c_ll.mean(), " (act_q8)" if quant else "", c_ref.min()), file=sys.stderr)
    check(c_ll.min() >= bound_ll, "%s: sov vs llama.cpp cosine %.7f < %g" % (name, c_ll.min(), bound_ll))
    check(c_ref.min() >= 0.9999, "%s: sov vs reference cosine %.9f < 0.9999" % (name, c_ref.min()))
    return model, got


def check_server(name, model, want, ids):
    with Server(model, "--ctx", "512", "--parallel", "4") as s:
        st, _, b = s.post("/v1/embeddings", {"input": TEXTS})
        if not check(st == 200, "%s: /v1/embeddings answers %d %r" % (name, st, b[:200])):
            return
        j = json.loads(b)
        got = np.array([d["embedding"] for d in sorted(j["data"], key=lambda d: d["index"])], dtype=np.float64)
        d = np.abs(got - want).max()
        print("  %-20s /v1/embeddings vs sov embed: max |diff| %.2e" % (name, d), file=sys.stderr)
        check(d <= 1e-6, "%s: /v1/embeddings gives sov embed's vectors (%.2e)" % (name, d))
        check(j["usage"]["prompt_tokens"] == sum(map(len, ids)), "%s: usage counts <s> and </s>" % name)
        st, _, b = s.post("/v1/embeddings", {"input": ids})
        if check(st == 200, "%s: token arrays: %d" % (name, st)):
            j = json.loads(b)
            got2 = np.array([d["embedding"] for d in sorted(j["data"], key=lambda d: d["index"])])
            check(np.abs(got2 - got).max() <= 1e-6, "%s: token arrays give the texts' vectors" % name)


def main():
    vocab = shared_model("vocab/" + RECORD["vocab"])
    # tokenizer: sov's ids of every text equal llama.cpp's (the same for every model)
    ok = 0
    for i, text in enumerate(TEXTS):
        got = sov_ids(vocab, text)
        ok += got == RECORD["models"]["xlmr-bert-cls-f16"]["ids"][i]
        for name, rec in RECORD["models"].items():
            want = rec["ids"][i]
            check(got == want, "%s: ids of %r: sov %r, llama.cpp %r" % (name, text, got, want))
            check(want[0] == 0 and want[-1] == 2, "%s: <s> ... </s> around %r" % (name, text))
    print("  XLM-R vocabulary: ids identical to llama.cpp: %d / %d texts" % (ok, len(TEXTS)), file=sys.stderr)
    results = {}
    for name, rec in RECORD["models"].items():
        r = check_model(name, rec, vocab)
        if r:
            results[name] = r
    for name in ("xlmr-bert-cls-f16", "xlmr-nomic-moe-f16"):
        if name in results:
            check_server(name, results[name][0], results[name][1], RECORD["models"][name]["ids"])
    print("%d failed" % len(failures), file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
