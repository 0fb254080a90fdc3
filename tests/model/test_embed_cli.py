"""`sov embed -m MODEL -f FILE`: one JSON array per input line, in order, equal to the NumPy
reference's embedding of the line's tokens (as `sov tokenize` gives them: [CLS] ... [SEP]),
cosine >= 0.9999; more lines than one group (64) keep their order; empty lines still give
a vector; a line too long for the encoder is an error naming its line number; a missing
model file is a one-line error with a non-zero exit."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference  # noqa: E402

SOV = os.environ.get("SOV_BIN")
TMP = os.environ.get("SOV_TEST_TMP") or tempfile.gettempdir()
SHARED = os.environ.get("SOV_SHARED_MODELS", os.path.join(HERE, "..", "..", "..", "shared", "models"))
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("  CHECK failed: " + what, file=sys.stderr)
    return cond


def main():
    if not SOV:
        print("SKIP: SOV_BIN not set", file=sys.stderr)
        sys.exit(77)
    bge = os.path.join(SHARED, "vocab", "ggml-vocab-bert-bge.gguf")
    if not os.path.exists(bge):
        print("SKIP: %s is missing" % bge, file=sys.stderr)
        sys.exit(1 if os.environ.get("SOV_REQUIRE_SHARED") == "1" else 77)
    os.makedirs(TMP, exist_ok=True)
    model = os.path.join(TMP, "embed-cli-bert.gguf")
    if not os.path.exists(model):
        subprocess.run([SOV, "gen-model", "--arch", "bert", "-o", model + ".part", "--dim", "64", "--layers", "2",
                        "--heads", "4", "--ffn", "128", "--ctx", "32", "--pooling", "1", "--vocab-from", bge],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.rename(model + ".part", model)
    words = ["retrieval", "augmented", "generation", "서울", "embedding", "vector", "the", "café", "東京", "rag!"]
    rng = np.random.default_rng(3)
    lines = [" ".join(rng.choice(words, int(rng.integers(1, 8)))) for _ in range(70)]
    lines[5] = ""
    path = os.path.join(TMP, "embed-cli-%d.txt" % os.getpid())
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))  # no final newline: the last line still counts
    r = subprocess.run([SOV, "embed", "-m", model, "-f", path, "--threads", "2"], capture_output=True, text=True)
    check(r.returncode == 0, "sov embed ran: %s" % r.stderr)
    got = [json.loads(l) for l in r.stdout.splitlines()]
    check(len(got) == len(lines), "one vector per line (%d for %d)" % (len(got), len(lines)))
    ref = reference.Encoder(model)
    worst = 1.0
    for i in (0, 5, 17, 63, 64, 69):
        if i >= len(got):
            break
        t = subprocess.run([SOV, "tokenize", "-m", model, "-p", lines[i]], capture_output=True, text=True)
        ids = [int(x) for x in t.stdout.split()]
        want = ref.embedding(ids)
        worst = min(worst, float(np.dot(got[i], want) / np.linalg.norm(got[i])))
    print("  sov embed vs reference: min cosine %.9f over 6 lines" % worst, file=sys.stderr)
    check(worst >= 0.9999, "vectors equal the reference's (cosine %.9f)" % worst)

    with open(path, "w", encoding="utf-8") as f:
        f.write("short\n" + "word " * 40 + "\n")
    r = subprocess.run([SOV, "embed", "-m", model, "-f", path], capture_output=True, text=True)
    check(r.returncode != 0 and "line 2" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
          "a line past the 32 positions is refused, naming line 2: %r" % r.stderr)
    r = subprocess.run([SOV, "embed", "-m", os.path.join(TMP, "no-such-model.gguf"), "-f", path],
                       capture_output=True, text=True)
    check(r.returncode != 0 and r.stderr.startswith("sov embed:"), "a missing model is a clear error: %r" % r.stderr)
    os.unlink(path)
    print("%d failed" % len(failures), file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
