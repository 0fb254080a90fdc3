"""bench/pull.py - what `sov pull`'s checks cost: a 256 MiB file from a loopback hub
(tests/pull/hublib.py) with sov pull (download to .partial, SHA-256 of the whole file, fsync,
rename) against curl writing the same bytes (no hash, no fsync). One run each, printed as
MiB/s and their ratio; on a shared machine compare ratios, not absolute figures.
Usage: /usr/bin/python3 bench/pull.py [build/sov] [MiB]"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "pull"))
from hublib import Hub  # noqa: E402

sov = sys.argv[1] if len(sys.argv) > 1 else "build/sov"
mib = int(sys.argv[2]) if len(sys.argv) > 2 else 256
hub = Hub()
data = os.urandom(mib << 20)
hub.repos["bench/big-GGUF"] = {"big-Q4_K_M.gguf": data}
work = tempfile.mkdtemp(prefix="sov-bench-pull-")
try:
    t = time.time()
    subprocess.run([sov, "pull", "bench/big-GGUF:Q4_K_M", "-o", work, "--endpoint", hub.url], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t_sov = time.time() - t
    url = hub.url + "/bench/big-GGUF/resolve/main/big-Q4_K_M.gguf"
    t = time.time()
    subprocess.run(["curl", "-sfL", "-o", os.path.join(work, "curl.gguf"), url], check=True)
    t_curl = time.time() - t
    print("%d MiB over loopback: sov pull %.0f MiB/s (%.2f s), curl %.0f MiB/s (%.2f s), sov/curl time %.2f"
          % (mib, mib / t_sov, t_sov, mib / t_curl, t_curl, t_sov / t_curl))
finally:
    shutil.rmtree(work, ignore_errors=True)
    hub.close()
