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
import sys
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


def answers(srv):
    out = mpilib.serve_answers(srv, check)
    st, body = srv.json("/v1/embeddings", {"input": mpilib.SERVE_PROMPTS[1:]})
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
    srv = mpilib.split_server(model, "pp", 2, {"SOV_PP_MICRO_BATCH": "4"})
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
