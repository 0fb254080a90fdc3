#!/usr/bin/python3
"""bench/web.py - what the embedded web pages cost (docs/WEB.md).

1. Page weight: the bytes a first visit to / and to /console transfers (the page and
   every asset it loads), plain and gzip'd, as the running server sends them.
2. The server cost of an open console: bench/loadgen.py at N clients (default 16)
   alternately without and with a console poller hitting /console/api/stats as the page
   does (once a second), and once more at 20 polls a second as a stress bound; aggregate
   generated tokens/s of each run, and the stats request's own latency.

  bench/web.py [MODEL.gguf]     (default ../shared/models/stories260K.gguf)
Environment: N=16 ROUNDS=4 MAX_TOKENS=64 REPEAT=3 THREADS=2 SOV_BIN=build/sov.
Loopback only. The machine may be shared: the A/B runs alternate, compare within one run.
"""
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SOV = os.environ.get("SOV_BIN", os.path.join(ROOT, "build", "sov"))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "models", "stories260K.gguf")
N = int(os.environ.get("N", "16"))
ROUNDS = int(os.environ.get("ROUNDS", "4"))
MAX_TOKENS = int(os.environ.get("MAX_TOKENS", "64"))
REPEAT = int(os.environ.get("REPEAT", "3"))
THREADS = os.environ.get("THREADS", "2")
PAGES = {"/": ["/", "/assets/style.css", "/assets/chat.js", "/assets/markdown.js", "/assets/icon.svg"],
         "/console": ["/console", "/assets/style.css", "/assets/console.css", "/assets/console.js",
                      "/assets/console-admin.js", "/assets/icon.svg"]}


def get(port, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def page_weight(port):
    out = {}
    for page, paths in PAGES.items():
        plain = sum(len(get(port, p)[1]) for p in paths)
        gz = sum(len(get(port, p, {"Accept-Encoding": "gzip"})[1]) for p in paths)
        out[page] = (plain, gz, len(paths))
    return out


def loadgen(port):
    r = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "loadgen.py"), "--url", "http://127.0.0.1:%d" % port,
                        "--clients", str(N), "--rounds", str(ROUNDS), "--max-tokens", str(MAX_TOKENS), "--json",
                        "--quiet"], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def poller(port, hz, stop, lat):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        t = time.perf_counter()
        c.request("GET", "/console/api/stats")
        c.getresponse().read()
        lat.append(time.perf_counter() - t)
        stop.wait(max(0.0, 1.0 / hz - (time.perf_counter() - t)))
    c.close()


def cpu_s(pid):
    """The process's user + system CPU seconds (all threads)."""
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def stats_cpu(port, pid, n=2000):
    """Server CPU seconds per /console/api/stats request, idle server, one connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    t0 = cpu_s(pid)
    w0 = time.perf_counter()
    for _ in range(n):
        c.request("GET", "/console/api/stats")
        c.getresponse().read()
    wall = time.perf_counter() - w0
    c.close()
    return (cpu_s(pid) - t0) / n, wall / n


def tok_s(s):
    return s["gen_tok_s"]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        ready = os.path.join(tmp, "ready")
        log = open(os.path.join(tmp, "log"), "w")
        srv = subprocess.Popen([SOV, "serve", "-m", MODEL, "--port", "0", "--ready-file", ready, "-t", THREADS,
                                "-np", str(N)], stdout=log, stderr=subprocess.STDOUT)
        try:
            while not os.path.exists(ready) or os.path.getsize(ready) == 0:
                if srv.poll() is not None:
                    sys.exit("sov serve did not start: " + open(log.name).read())
                time.sleep(0.05)
            port = int(open(ready).read().split()[1])
            for page, (plain, gz, n) in page_weight(port).items():
                print("page weight %-9s %2d files: %7d bytes plain, %6d bytes gzip" % (page, n, plain, gz))
            cpu, wall = stats_cpu(port, srv.pid)
            print("/console/api/stats, idle server: %.1f us server CPU and %.2f ms round trip per request "
                  "(a console polls once a second: %.4f%% of one core)" % (cpu * 1e6, wall * 1e3, cpu * 100))
            c0 = cpu_s(srv.pid)
            s0 = loadgen(port)  # also the warm-up
            per_tok = (cpu_s(srv.pid) - c0) / max(1, s0["completion_tokens"])
            print("generation at N=%d: %.1f us server CPU per generated token; one console poll costs as much "
                  "CPU as %.2f tokens" % (N, per_tok * 1e6, cpu / per_tok))
            runs = {"no console": [], "console 1/s": [], "console 20/s": []}
            lat = []
            for _ in range(REPEAT):
                for name, hz in (("no console", 0), ("console 1/s", 1), ("console 20/s", 20)):
                    stop = threading.Event()
                    t = threading.Thread(target=poller, args=(port, hz, stop, lat)) if hz else None
                    if t:
                        t.start()
                    runs[name].append(tok_s(loadgen(port)))
                    stop.set()
                    if t:
                        t.join()
            base = statistics.median(runs["no console"])
            for name, v in runs.items():
                m = statistics.median(v)
                print("N=%d %-13s aggregate %8.0f tok/s (median of %d: %s)  %+.1f%%" %
                      (N, name, m, len(v), " ".join("%.0f" % x for x in v), 100 * (m / base - 1)))
            lat.sort()
            print("/console/api/stats under load: %d requests, median %.2f ms, p90 %.2f ms" %
                  (len(lat), 1000 * lat[len(lat) // 2], 1000 * lat[int(len(lat) * 0.9)]))
        finally:
            srv.terminate()
            srv.wait(30)


main()
