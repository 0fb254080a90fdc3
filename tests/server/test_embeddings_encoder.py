"""test_embeddings_encoder.py - POST /v1/embeddings on `sov serve` with BERT-family encoders
(synthetic bert with the bert-bge WordPiece vocabulary, synthetic nomic-bert), against the
independent NumPy reference (tests/model/reference.py: Encoder):

  - text inputs (tokenized with [CLS] ... [SEP]), an array of strings and token-id arrays:
    every vector's cosine with the reference >= 0.9999 (observed ~1 - 1e-8);
  - batched: 24 inputs of one request take fewer engine steps than inputs, and concurrent
    requests give what each input gives alone (1e-6); a long input is never split across
    steps (an encoder sees its input whole: the vector equals the reference's);
  - encoding_format base64 decodes to exactly the float response;
  - an input longer than the encoder's positions: 400 context_length_exceeded; a completion
    or chat request: 400 naming /v1/embeddings; the server stays healthy.
"""
import base64
import json
import os
import subprocess
import sys
import threading

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "model"))
import reference  # noqa: E402
from serverlib import SOV_BIN, Server, check, finish, run_tests, shared_model, synthetic_model  # noqa: E402

BGE = shared_model("vocab/ggml-vocab-bert-bge.gguf")
BERT = synthetic_model("enc-srv-bert.gguf", "--arch", "bert", "--dim", "64", "--layers", "2", "--heads", "4",
                       "--ffn", "128", "--ctx", "96", "--vocab-from", BGE)
NOMIC = synthetic_model("enc-srv-nomic.gguf", "--arch", "nomic-bert", "--dim", "64", "--layers", "2", "--heads", "4",
                        "--ffn", "128", "--ctx", "512", "--vocab", "300")
TEXTS = ["Retrieval-augmented generation in Korean", "서울의 날씨는 맑습니다.", "vector search", "東京 café"]
srv = None


def embed(s, body):
    st, _, b = s.post("/v1/embeddings", body)
    return st, json.loads(b) if b else None


def vectors(j):
    return np.array([d["embedding"] for d in sorted(j["data"], key=lambda d: d["index"])], dtype=np.float64)


def tokens(text):
    return [int(t) for t in subprocess.run([SOV_BIN, "tokenize", "-m", BERT, "-p", text], check=True,
                                           capture_output=True, text=True).stdout.split()]


def min_cos(got, want):
    return float(((got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)).min())


def test_text_and_ids_equal_the_reference():
    ref = reference.Encoder(BERT)
    want = np.array([ref.embedding(tokens(t)) for t in TEXTS])
    st, j = embed(srv, {"input": TEXTS})
    if check(st == 200 and len(j["data"]) == 4, "array of strings: %d %r" % (st, j)):
        c = min_cos(vectors(j), want)
        print("  bert text inputs: min cosine %.9f" % c, file=sys.stderr)
        check(c >= 0.9999, "text inputs equal the reference (%.9f)" % c)
        check(j["usage"]["prompt_tokens"] == sum(len(tokens(t)) for t in TEXTS), "usage counts the tokens")
        check(j["object"] == "list" and j["data"][0]["object"] == "embedding", "OpenAI's shape")
    st, j1 = embed(srv, {"input": TEXTS[1]})
    check(st == 200 and min_cos(vectors(j1), want[1:2]) >= 0.9999, "one string")
    ids = [tokens(t) for t in TEXTS]
    st, j2 = embed(srv, {"input": ids})
    check(st == 200 and np.abs(vectors(j2) - vectors(j)).max() <= 1e-6, "token arrays give the text's vectors")
    st, jb = embed(srv, {"input": TEXTS, "encoding_format": "base64"})
    if check(st == 200, "base64: %d" % st):
        for df, db in zip(j["data"], jb["data"]):
            v = np.frombuffer(base64.b64decode(db["embedding"], validate=True), dtype="<f4")
            check(np.array_equal(v, np.array(df["embedding"], dtype=np.float32)), "base64 = float, bit for bit")


def test_batched_and_concurrent():
    m0 = srv.metrics()
    inputs = ["%s %d" % (TEXTS[i % 4], i) for i in range(24)]
    st, j = embed(srv, {"input": inputs})
    m1 = srv.metrics()
    steps = m1["sov_engine_steps_total"] - m0["sov_engine_steps_total"]
    check(st == 200 and len(j["data"]) == 24, "24 inputs: %d" % st)
    check(steps < 24, "the inputs of one request share engine steps: %d steps for 24 inputs" % steps)
    res = [None] * 6

    def one(i):
        res[i] = embed(srv, {"input": inputs[i * 4:(i + 1) * 4]})

    ts = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for i, (st, jj) in enumerate(res):
        check(st == 200 and np.abs(vectors(jj) - vectors(j)[i * 4:(i + 1) * 4]).max() <= 1e-6,
              "concurrent request %d equals the batched one" % i)


def test_errors():
    st, j = embed(srv, {"input": [[101] + [2000] * 200 + [102]]})
    check(st == 400 and j["error"]["code"] == "context_length_exceeded", "past 96 positions: %d %r" % (st, j))
    st, _, b = srv.post("/v1/completions", {"prompt": "hello", "max_tokens": 2})
    check(st == 400 and b"/v1/embeddings" in b, "a completion is refused: %d %r" % (st, b[:200]))
    st, _, b = srv.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
    check(st == 400 and b"/v1/embeddings" in b, "a chat is refused: %d %r" % (st, b[:200]))
    check(srv.get("/health")[0] == 200, "healthy afterwards")


def test_nomic_long_inputs_are_whole():
    ref = reference.Encoder(NOMIC)
    rng = np.random.default_rng(5)
    seqs = [list(map(int, rng.integers(0, 300, n))) for n in (300, 7, 250)]
    # batch 320: the two long inputs cannot share a step, and neither may be cut
    with Server(NOMIC, "--ctx", "512", "--batch", "320", "--parallel", "4") as s:
        st, j = embed(s, {"input": seqs})
        if check(st == 200, "nomic-bert: %d %r" % (st, j)):
            c = min_cos(vectors(j), np.array([ref.embedding(q) for q in seqs]))
            print("  nomic-bert long inputs: min cosine %.9f" % c, file=sys.stderr)
            check(c >= 0.9999, "long inputs computed whole (%.9f)" % c)
        st, j = embed(s, {"input": [list(range(1, 300)) * 2]})
        check(st == 400 and j["error"]["code"] == "context_length_exceeded", "past --batch: %d" % st)


def main():
    global srv
    with Server(BERT, "--ctx", "96", "--parallel", "8") as s:
        srv = s
        run_tests([test_text_and_ids_equal_the_reference, test_batched_and_concurrent, test_errors])
    run_tests([test_nomic_long_inputs_are_whole])
    finish()


if __name__ == "__main__":
    main()
