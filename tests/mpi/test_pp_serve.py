"""`sov serve --pp 2` under mpirun answers as one process does (docs/TP.md, --pp).

One `sov serve` and one `mpirun -np 2 sov serve ... --pp 2` (TCP between the ranks, loopback
only; micro-batches of 4 tokens, SOV_PP_MICRO_BATCH, so every prompt crosses the two stages
in several pieces) get the same greedy /v1/completions requests: one alone, then three at
once (continuous batching: several sequences in one step, cut into micro-batches across
sequence boundaries), then the first prompt again (the prefix cache attaches its cached KV
blocks on both stages); and one /v1/embeddings request of two inputs (hidden states, which
the last stage computes and sends to rank 0). Every text is identical to the single
process's and every embedding value bitwise equal. (stories260K's 5 layers make stages of
2 and 3: the server's KV cache size in bytes must give both the same number of blocks, which
every rank checks when a context is made.) SIGTERM to mpirun then stops the job
cleanly: rank 0 drains and says "stopped", no rank reports a failure."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
import mpilib  # noqa: E402
import serverlib  # noqa: E402

fails = []


def check(cond, what):
    if not cond:
        fails.append(what)
        print("  CHECK failed: " + what)
    return cond


class PpServer(serverlib.Server):
    """sov serve under mpirun with --pp n (the raw HTTP helpers are serverlib's)."""

    def __init__(self, model, n, env):
        self.ready = os.path.join(mpilib.TMP, "pp-serve-ready-%d-%d" % (os.getpid(), int(time.time() * 1e6)))
        self.log_path = self.ready + ".log"
        cmd = mpilib.mpirun(n, tcp=True) + [mpilib.SOV, "serve", "-m", model, "--port", "0", "--ready-file",
                                            self.ready, "-t", "1", "--parallel", "4", "--pp", str(n)]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=dict(mpilib.ENV, **env))
        t_end = time.time() + 120
        while not os.path.exists(self.ready) or os.path.getsize(self.ready) == 0:
            if self.proc.poll() is not None or time.time() > t_end:
                raise RuntimeError("server did not start: " + open(self.log_path).read())
            time.sleep(0.02)
        host, port = open(self.ready).read().split()
        self.host, self.port = host, int(port)


PROMPTS = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine with her dog.",
    "One day, a big bear came to the forest.",
    "Tom had a red ball. He liked to throw it high in the sky and catch it with his hands.",
]


def complete(srv, prompt):
    st, body = srv.json("/v1/completions", {"prompt": prompt, "max_tokens": 32, "temperature": 0})
    check(st == 200, "status %s: %s" % (st, body))
    return body["choices"][0]["text"] if st == 200 else None


def answers(srv):
    out = {"alone": complete(srv, PROMPTS[0])}
    res = [None] * len(PROMPTS)

    def one(i):
        res[i] = complete(srv, PROMPTS[i])
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["together"] = res
    out["cached"] = complete(srv, PROMPTS[0])
    st, body = srv.json("/v1/embeddings", {"input": PROMPTS[1:]})
    check(st == 200, "embeddings status %s: %s" % (st, body))
    out["embeddings"] = [d["embedding"] for d in body["data"]] if st == 200 else None
    return out


def main():
    model = mpilib.shared_model("stories260K.gguf")
    if not model:
        model = mpilib.synthetic_model("tp-serve.gguf", "--dim", "128", "--heads", "8", "--kv-heads", "4",
                                       "--ffn", "256", "--layers", "3")
    mpilib.mpirun_path()
    with serverlib.Server(model, "--parallel", "4", threads=1) as srv:
        want = answers(srv)
    print("one process:", json.dumps(want)[:300])
    t0 = time.time()
    srv = PpServer(model, 2, {"SOV_PP_MICRO_BATCH": "4"})
    print("pp 2 server up in %.1f s" % (time.time() - t0))
    try:
        got = answers(srv)
        print("pp 2:", json.dumps(got)[:300])
        check(want["alone"] and got["alone"] == want["alone"], "pp 2 alone: %r != %r" % (got["alone"], want["alone"]))
        check(got["together"] == want["together"], "pp 2 batched: %r != %r" % (got["together"], want["together"]))
        check(got["cached"] == want["cached"], "pp 2 prefix-cached: %r != %r" % (got["cached"], want["cached"]))
        check(want["embeddings"] and len(want["embeddings"]) == 2 and len(want["embeddings"][0]) > 8,
              "one process gave two embeddings")
        check(got["embeddings"] == want["embeddings"], "pp 2 embeddings differ from one process's")
        m = srv.metrics()
        check(m.get("sov_prefix_cache_blocks", 0) > 0, "the prefix cache held no blocks: %s" % m)
    finally:
        t0 = time.time()
        rc = srv.stop(signal.SIGTERM, timeout=60)
    log = srv.output()
    took = time.time() - t0
    print("SIGTERM: job ended in %.1f s, mpirun exit %s" % (took, rc))
    check("sov serve: stopped" in log and "sov: tp rank" not in log and took < 30,
          "the pp job did not stop cleanly on SIGTERM: %s" % log[-2000:])
    print("%d failed" % len(fails))
    sys.exit(1 if fails else 0)


main()
