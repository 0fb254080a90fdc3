"""test_embeddings.py - POST /v1/embeddings on `sov serve` with stories260K, against the
independent NumPy reference (tests/model/reference.py: final-norm hidden states, mean-pooled,
L2-normalised):

  - token-id inputs: every vector and the cosine-similarity matrix equal NumPy's. Bound 1e-4
    with the default float16 KV cache: sov and NumPy both round keys and values to half
    precision, and float32 noise now and then tips one to the neighbouring half (observed
    up to 1.1e-5 on these inputs, 1e-6 otherwise); 1e-6 with --kv-f32 (the synthetic model);
  - text inputs: the same vectors as their tokens (`sov tokenize --no-special`) sent as ids;
    usage counts the tokens;
  - base64 decodes (little-endian float32) to exactly the float response;
  - the response has OpenAI's shape; several inputs and concurrent requests share engine
    steps (fewer steps than inputs) and give what they give alone; no KV block stays in use;
  - a synthetic model whose metadata asks for last-token pooling is pooled that way, and one
    asking for rank pooling is refused;
  - the malformed-input corpus (corpus_embeddings/, also the fuzz seeds) gets the status its
    file name says; the server stays healthy;
  - under a data policy with redact_prompts the model embeds the redacted text, and token-id
    inputs are refused;
  - with API keys: authentication, a record in the audit log with endpoint /v1/embeddings
    and the prompt tokens, the tenant's usage and tokens-per-day quota counting the input
    tokens;
  - the official `openai` client (npm; skipped here when not installed): its default (it asks
    for base64 and decodes it), "float" and "base64" give the vectors.
"""
import base64
import glob
import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "model"))
import reference  # noqa: E402
from auditlib import policy_args, records  # noqa: E402
from serverlib import (SOV_BIN, TMP, Server, bearer, check, create_key, finish, run_tests, shared_model,  # noqa: E402
                       sov_keys, synthetic_model, wait_for)

STORIES = shared_model("stories260K.gguf")
REF = reference.Model(STORIES)
BOUND = 1e-4      # float16 KV cache (see above)
BOUND_F32 = 1e-6  # float32 KV cache
TEXTS = ["Once upon a time", "The little dog ran to the park.", "Lily", "Tom and Lily went to the park to play"]
srv = None


def embed(s, body, headers=None):
    st, _, b = s.post("/v1/embeddings", body, headers=headers)
    return st, json.loads(b) if b else None


def tokens(text):
    out = subprocess.run([SOV_BIN, "tokenize", "-m", STORIES, "-p", text, "--no-special"], check=True,
                         capture_output=True, text=True).stdout.split()
    return [int(t) for t in out]


def vectors(j):
    return np.array([d["embedding"] for d in sorted(j["data"], key=lambda d: d["index"])], dtype=np.float64)


def test_token_ids_equal_numpy():
    rng = np.random.default_rng(5)
    seqs = [[1] + [int(t) for t in rng.integers(3, 512, n)] for n in (0, 3, 9, 30, 70)]
    st, j = embed(srv, {"input": seqs, "model": "stories260K"})
    if not check(st == 200, "token arrays: 200 (%d %r)" % (st, j)):
        return
    got = vectors(j)
    want = np.array([REF.embedding(s, kv_f16=True) for s in seqs])
    err = np.abs(got - want).max()
    print("  token inputs: max |sov - numpy| %.2e (bound %.0e)" % (err, BOUND), file=sys.stderr)
    check(err <= BOUND, "vectors equal NumPy's: %.2e" % err)
    cos_err = np.abs(got @ got.T - want @ want.T).max()
    check(cos_err <= 2 * BOUND, "cosine similarities equal NumPy's: %.2e" % cos_err)
    check(j["object"] == "list" and j["model"] == "stories260K" and
          [d["index"] for d in j["data"]] == list(range(len(seqs))) and
          all(d["object"] == "embedding" and len(d["embedding"]) == REF.n_embd for d in j["data"]),
          "OpenAI's shape: %r" % {k: v for k, v in j.items() if k != "data"})
    n = sum(len(s) for s in seqs)
    check(j["usage"] == {"prompt_tokens": n, "total_tokens": n}, "usage counts the tokens: %r" % j["usage"])
    # one input of ids (a flat array) is the same as that input alone
    st, j1 = embed(srv, {"input": seqs[2]})
    check(st == 200 and len(j1["data"]) == 1 and np.abs(vectors(j1)[0] - got[2]).max() <= 1e-6,
          "a flat token array is one input")


def test_texts_equal_their_tokens():
    st, j = embed(srv, {"input": TEXTS})
    toks = [tokens(t) for t in TEXTS]
    st2, j2 = embed(srv, {"input": toks})
    if not check(st == 200 and st2 == 200, "texts and their tokens: %d %d" % (st, st2)):
        return
    check(np.abs(vectors(j) - vectors(j2)).max() <= 1e-6, "a text's vector is its tokens' vector")
    want = np.array([REF.embedding(t, kv_f16=True) for t in toks])
    err = np.abs(vectors(j) - want).max()
    check(err <= BOUND, "text vectors equal NumPy's: %.2e" % err)
    check(j["usage"]["prompt_tokens"] == sum(len(t) for t in toks), "usage: %r" % j["usage"])
    st, j3 = embed(srv, {"input": TEXTS[0]})
    check(st == 200 and np.abs(vectors(j3)[0] - vectors(j)[0]).max() <= 1e-6, "a single string")
    sims = vectors(j) @ vectors(j).T
    print("  cosine similarities of the texts:\n" + "\n".join("    " + " ".join("%.4f" % x for x in row)
                                                               for row in sims), file=sys.stderr)


def test_base64_is_the_same_float32():
    st, jf = embed(srv, {"input": TEXTS, "encoding_format": "float"})
    st2, jb = embed(srv, {"input": TEXTS, "encoding_format": "base64"})
    if not check(st == 200 and st2 == 200, "float and base64: %d %d" % (st, st2)):
        return
    for df, db in zip(jf["data"], jb["data"]):
        raw = base64.b64decode(db["embedding"], validate=True)
        v = np.frombuffer(raw, dtype="<f4")
        check(len(raw) == 4 * REF.n_embd and np.array_equal(v, np.array(df["embedding"], dtype=np.float32)),
              "base64 of input %d is the float response, bit for bit" % df["index"])


def test_batched_and_concurrent():
    m0 = srv.metrics()
    inputs = ["%s %d" % (TEXTS[i % 4], i) for i in range(24)]
    st, j = embed(srv, {"input": inputs})
    m1 = srv.metrics()
    steps = m1["sov_engine_steps_total"] - m0["sov_engine_steps_total"]
    check(st == 200 and len(j["data"]) == 24, "24 inputs: %d" % st)
    check(steps < 24, "the inputs of one request share engine steps: %d steps for 24 inputs" % steps)
    alone = [vectors(embed(srv, {"input": t})[1])[0] for t in inputs[:4]]
    check(np.abs(vectors(j)[:4] - np.array(alone)).max() <= 1e-6, "batched equals alone")
    # concurrent requests (and a completion among them) give the same vectors
    res = [None] * 8
    comp = [None]

    def one(i):
        res[i] = embed(srv, {"input": inputs[i * 3:(i + 1) * 3]})

    def completion():
        comp[0] = srv.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 20})[0]

    ts = [threading.Thread(target=one, args=(i,)) for i in range(8)] + [threading.Thread(target=completion)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(comp[0] == 200, "a completion among them: %r" % comp[0])
    for i, (st, jj) in enumerate(res):
        check(st == 200 and np.abs(vectors(jj) - vectors(j)[i * 3:(i + 1) * 3]).max() <= 1e-6,
              "concurrent request %d equals the batched one" % i)
    m = srv.wait_metric("sov_running_sequences", lambda v: v == 0)
    # the completion's full blocks may stay in the prefix cache; embeddings leave none
    used = m["sov_kv_blocks_total"] - m["sov_kv_blocks_free"] if "sov_kv_blocks_total" in m else None
    check(used is None or used <= m.get("sov_prefix_cache_blocks", 0),
          "no KV block stays with an embedding: %r used, %r cached" % (used, m.get("sov_prefix_cache_blocks")))
    check(m['sov_requests_total{route="/v1/embeddings",status="200"}'] >= 14, "metrics count /v1/embeddings")


def test_malformed_corpus():
    files = sorted(glob.glob(os.path.join(HERE, "corpus_embeddings", "*.json")))
    check(len(files) >= 40, "corpus present")
    for f in files:
        name = os.path.basename(f)
        want = int(name.split("-")[0])
        st, _, b = srv.post("/v1/embeddings", open(f, "rb").read())
        check(st == want, "%s: status %d, want %d (%r)" % (name, st, want, b[:200]))
        if st >= 400:
            try:
                e = json.loads(b)["error"]
                check(e["message"] and e["type"], "%s: an OpenAI error" % name)
            except Exception:
                check(False, "%s: an OpenAI error body: %r" % (name, b[:200]))
    check(srv.get("/health")[0] == 200, "healthy after the corpus")
    # a huge array of ids (1 MB body) is refused by the context check, not a crash
    st, j = embed(srv, {"input": [1] * 200000})
    check(st == 400 and j["error"]["code"] == "context_length_exceeded", "a huge input: 400 (%d)" % st)


def test_pooling_from_metadata():
    last = synthetic_model("embd-last.gguf", "--dim", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2",
                           "--ffn", "128", "--vocab", "300", "--pooling", "3")
    ref = reference.Model(last)
    seqs = [[5, 9, 13], [7] * 20]
    with Server(last, "--ctx", "64", "--kv-f32") as s:
        st, j = embed(s, {"input": seqs})
        if check(st == 200, "last pooling: %d" % st):
            want = np.array([ref.embedding(q) for q in seqs])
            mean = np.array([ref.embedding(q, pooling=1) for q in seqs])
            err = np.abs(vectors(j) - want).max()
            print("  last pooling, float32 KV: max |sov - numpy| %.2e (bound %.0e)" % (err, BOUND_F32), file=sys.stderr)
            check(err <= BOUND_F32, "last-token pooling as the metadata asks: %.2e" % err)
            check(np.abs(vectors(j) - mean).max() > 1e-2, "and not mean pooling")
    rank = synthetic_model("embd-rank.gguf", "--dim", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2",
                           "--ffn", "128", "--vocab", "300", "--pooling", "4")
    with Server(rank, "--ctx", "64") as s:
        st, j = embed(s, {"input": "x"})
        check(st == 400 and "pooling_type is 4 (rank)" in j["error"]["message"], "rank pooling refused: %r" % j)
        check(s.post("/v1/completions", {"prompt": "x", "max_tokens": 2})[0] == 200, "its completions still work")


def test_keys_audit_and_quota():
    d = os.path.join(TMP, "embd-%d" % os.getpid())
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    db = os.path.join(d, "state.db")
    key, kid = create_key(db, "acme")
    small, _ = create_key(db, "acme", "--tokens-per-day", "30")
    toks = [[1, 403, 407, 262], [1, 100, 200]]
    with Server(STORIES, "--db", db) as s:
        st, _ = embed(s, {"input": toks})
        check(st == 401, "no key: 401 (%d)" % st)
        st, j = embed(s, {"input": toks}, bearer(key))
        check(st == 200 and j["usage"]["prompt_tokens"] == 7, "with a key: 200, 7 tokens")
        st, j = embed(s, {"input": [[1] * 20]}, bearer(small))
        check(st == 200, "within the daily quota: 200")
        st, j = embed(s, {"input": [[1] * 20]}, bearer(small))
        check(st == 429 and j["error"]["code"] == "insufficient_quota", "over it: 429 (%d %r)" % (st, j))
        check(wait_for(lambda: len([r for r in records(db) if r["endpoint"] == "/v1/embeddings"]) == 4, 10),
              "four audit records")
    rec = [r for r in records(db) if r["endpoint"] == "/v1/embeddings"]
    check([r["status"] for r in rec] == [401, 200, 200, 429], "statuses recorded: %r" % [r["status"] for r in rec])
    ok = rec[1]
    check(ok["tenant"] == "acme" and ok["key_id"] == kid and ok["prompt_tokens"] == 7 and
          ok["completion_tokens"] == 0 and ok["finish_reason"] == "stop" and ok["prompt_sha256"],
          "the record: %r" % {k: ok[k] for k in ("tenant", "key_id", "prompt_tokens", "completion_tokens",
                                                  "finish_reason")})
    _, out, _ = sov_keys(db, "usage")
    row = out.strip().split("\t")
    check(row[0] == "acme" and row[1] == "2" and row[2] == "27", "usage: 2 requests, 27 prompt tokens: %r" % out)


def test_redact_prompts():
    with Server(STORIES, "--ctx", "128", *policy_args(redact_prompts=True)) as s:
        st, j = embed(s, {"input": ["write to kim@example.com today", "write to [EMAIL] today"]})
        if check(st == 200, "text inputs under redact_prompts: %d" % st):
            v = vectors(j)
            check(np.abs(v[0] - v[1]).max() <= 1e-6, "the model embeds the redacted text, never the address")
        st, j = embed(s, {"input": [[1, 5, 6]]})
        check(st == 400 and "redacts" in j["error"]["message"], "token ids refused under redact_prompts: %d" % st)


def test_openai_client():
    node = shutil.which("node")
    js = os.path.join(HERE, "js")
    if not node or not os.path.isdir(os.path.join(js, "node_modules", "openai")):
        msg = "node or the npm package openai is missing (scripts/deps.sh test)"
        check(os.environ.get("SOV_REQUIRE_SHARED") != "1", msg)
        print("  skipped: " + msg, file=sys.stderr)
        return
    r = subprocess.run([node, os.path.join(js, "embeddings_client.mjs"), "http://%s:%d/v1" % (srv.host, srv.port),
                        json.dumps(TEXTS)], capture_output=True, text=True, timeout=120)
    if not check(r.returncode == 0, "the client ran: %s" % r.stderr[-2000:]):
        return
    out = json.loads(r.stdout)
    want = vectors(embed(srv, {"input": TEXTS})[1])
    for enc in ("default", "float", "base64"):
        vs = out[enc]["vectors"]
        if enc == "base64":  # handed back as sent
            vs = [np.frombuffer(base64.b64decode(v), dtype="<f4") for v in vs]
        got = np.array(vs, dtype=np.float64)
        check(got.shape == want.shape and np.abs(got - want).max() <= 1e-6,
              "client.embeddings.create (%s) gives the vectors" % enc)
        check(out[enc]["usage"]["prompt_tokens"] == sum(len(tokens(t)) for t in TEXTS), "client usage (%s)" % enc)
    check(out["dimensions_error"] and out["dimensions_error"]["status"] == 400, "dimensions: %r" % out)


def main():
    global srv
    with Server(STORIES, "-np", "8", "--ctx", "256") as s:
        srv = s
        run_tests([test_token_ids_equal_numpy, test_texts_equal_their_tokens, test_base64_is_the_same_float32,
                   test_batched_and_concurrent, test_malformed_corpus, test_openai_client])
    # a clean exit (under the sanitizers: no leak, no error at shutdown)
    check(srv.proc.returncode == 0, "the server exits cleanly: %r\n%s" % (srv.proc.returncode, srv.output()[-2000:]))
    run_tests([test_pooling_from_metadata, test_keys_audit_and_quota, test_redact_prompts])
    finish()


if __name__ == "__main__":
    main()
