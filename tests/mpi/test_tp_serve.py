"""`sov serve --tp 2` under mpirun answers as one process does (docs/TP.md).

One `sov serve` and one `mpirun -np 2 sov serve ... --tp 2` (TCP between the ranks, loopback
only) get the same greedy /v1/completions requests: first one alone, then three at once
(continuous batching: several sequences in one step), then the first prompt again, which
the prefix cache answers by attaching the cached KV blocks (an attach and retains/releases
that rank 0 sends to rank 1). Every answer's text is identical to the single process's.
SIGTERM to mpirun then stops the job cleanly: rank 0 drains and says "stopped", rank 1 is
ended by rank 0's last command, no rank reports a failure (mpirun itself exits 1 whenever it
is sent SIGTERM, whatever its processes do, so its exit status says nothing here)."""
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
    return mpilib.serve_answers(srv, check)


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
    srv = mpilib.split_server(model, "tp", 2)
    print("tp 2 server up in %.1f s" % (time.time() - t0))
    try:
        got = answers(srv)
        print("tp 2:", json.dumps(got)[:300])
        check(want["alone"] and got["alone"] == want["alone"], "tp 2 alone: %r != %r" % (got["alone"], want["alone"]))
        check(got["together"] == want["together"], "tp 2 batched: %r != %r" % (got["together"], want["together"]))
        check(got["cached"] == want["cached"], "tp 2 prefix-cached: %r != %r" % (got["cached"], want["cached"]))
        m = srv.metrics()
        check(m.get("sov_prefix_cache_blocks", 0) > 0, "the prefix cache held no blocks: %s" % m)
        print("prefix cache metrics:", {k: v for k, v in m.items() if "prefix" in k})
    finally:
        t0 = time.time()
        rc = srv.stop(signal.SIGTERM, timeout=60)
    log = srv.output()
    took = time.time() - t0
    print("SIGTERM: job ended in %.1f s, mpirun exit %s" % (took, rc))
    check("sov serve: stopped" in log and "sov: tp rank" not in log and took < 30,
          "the tp job did not stop cleanly on SIGTERM: %s" % log[-2000:])
    print("%d failed" % len(fails))
    sys.exit(1 if fails else 0)


main()
