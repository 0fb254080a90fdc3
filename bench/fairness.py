#!/usr/bin/python3
"""Fair scheduling across tenants: the time to first token of a lone tenant's request,
on an idle server and while another tenant floods it with 64 streaming requests, under
`--sched fair` (the default) and `--sched fifo` (arrival order, sov before tenants).

  bench/fairness.py [--model M.gguf] [-np 4] [--flood 64] [--flood-tokens 64]

Starts `sov serve` itself (loopback, a throw-away SQLite store with two keys), prints one
line per policy and, with --json, a JSON object. Standard library only."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import socket

HERE = os.path.dirname(os.path.abspath(__file__))
SOV = os.environ.get("SOV_BIN", os.path.join(HERE, "..", "build", "sov"))


def key_for(db, tenant):
    out = subprocess.run([SOV, "keys", "create", "--db", db, "--tenant", tenant], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode()
    return out.strip().split("\n")[-1]


class Serve:
    def __init__(self, model, db, *args):
        self.dir = tempfile.mkdtemp(prefix="sov-fair-")
        ready = os.path.join(self.dir, "ready")
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.p = subprocess.Popen([SOV, "serve", "-m", model, "--port", "0", "--ready-file", ready, "--db", db,
                                   "--metrics-open"] + list(args), stdout=self.log, stderr=subprocess.STDOUT)
        t_end = time.time() + 300
        while not (os.path.exists(ready) and os.path.getsize(ready)):
            if self.p.poll() is not None or time.time() > t_end:
                sys.exit("fairness: the server did not start: " + open(self.log.name).read()[-2000:])
            time.sleep(0.05)
        host, port = open(ready).read().split()
        self.addr = (host, int(port))

    def running(self):
        return self.metric("sov_running_sequences")

    def metric(self, name):
        s = socket.create_connection(self.addr)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
        s.close()
        for line in data.decode().split("\n"):
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0

    def stop(self):
        self.p.terminate()
        self.p.wait(60)
        self.log.close()


def stream(addr, key, n, prompt="Once upon a time"):
    """(seconds to the first token, end time) of one streamed completion."""
    s = socket.create_connection(addr)
    body = json.dumps({"prompt": prompt, "max_tokens": n, "stream": True, "ignore_eos": True}).encode()
    t0 = time.perf_counter()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer " +
              key.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    buf, first = b"", None
    while True:
        c = s.recv(65536)
        if not c:
            break
        buf += c
        if first is None and b'"text"' in buf:
            first = time.perf_counter() - t0
    s.close()
    if not buf.startswith(b"HTTP/1.1 200"):
        sys.exit("fairness: a request failed: %r" % buf[:300])
    return first, time.perf_counter()


def run(policy, a):
    db = os.path.join(tempfile.mkdtemp(prefix="sov-fair-db-"), "state.db")
    flood_key, lone_key = key_for(db, "flood"), key_for(db, "lone")
    srv = Serve(a.model, db, "-np", str(a.np), "-t", str(a.threads), "--sched", policy)
    try:
        stream(srv.addr, lone_key, 4)  # warm up
        idle = [stream(srv.addr, lone_key, a.lone_tokens)[0] for _ in range(5)]
        ends, lock = [], threading.Lock()

        def one():
            _, end = stream(srv.addr, flood_key, a.flood_tokens)
            with lock:
                ends.append(end)

        ts = [threading.Thread(target=one) for _ in range(a.flood)]
        t_flood = time.perf_counter()
        for t in ts:
            t.start()
        while srv.running() < a.np:
            time.sleep(0.01)
        # the flood is running and queued: how long is a step now?
        s0, t0 = srv.metric("sov_engine_steps_total"), time.perf_counter()
        time.sleep(0.5)
        step = (time.perf_counter() - t0) / max(1, srv.metric("sov_engine_steps_total") - s0)
        busy, end = stream(srv.addr, lone_key, a.lone_tokens)
        with lock:
            before = sum(1 for e in ends if e < end)
        for t in ts:
            t.join()
        flood_s = time.perf_counter() - t_flood
    finally:
        srv.stop()
    return {"policy": policy, "ttft_idle_ms": statistics.median(idle) * 1e3, "ttft_flood_ms": busy * 1e3,
            "step_ms": step * 1e3, "bound_ms": (2 * statistics.median(idle) + step) * 1e3,
            "flood_done_before_lone": before, "flood_seconds": flood_s}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(HERE, "..", "build", "bench-models", "llama-134m-q8_0.gguf"))
    ap.add_argument("-np", type=int, default=4)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--flood", type=int, default=64)
    ap.add_argument("--flood-tokens", type=int, default=64)
    ap.add_argument("--lone-tokens", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not os.path.exists(a.model):
        sys.exit("fairness: no model %s (make bench generates it, or give --model)" % a.model)
    res = []
    for policy in ("fair", "fifo"):
        print("fairness: %s ..." % policy, file=sys.stderr)
        r = run(policy, a)
        res.append(r)
        print("%-4s  lone tenant TTFT: idle %7.1f ms, under a %d-request flood %8.1f ms (%.1fx; bound 2 x idle + "
              "one step of %.1f ms = %.1f ms: %s); flood requests done before it: %d of %d" %
              (policy, r["ttft_idle_ms"], a.flood, r["ttft_flood_ms"], r["ttft_flood_ms"] / r["ttft_idle_ms"],
               r["step_ms"], r["bound_ms"], "met" if r["ttft_flood_ms"] <= r["bound_ms"] else "NOT met",
               r["flood_done_before_lone"], a.flood))
    if a.json:
        print(json.dumps({"model": os.path.basename(a.model), "np": a.np, "results": res}))


if __name__ == "__main__":
    main()
