"""test_web_browser.py - the chat page and the operator console in a real browser: Debian's
chromium, headless, driven by puppeteer-core (npm, pinned in tests/web/package-lock.json)
through tests/web/browser.mjs against a `sov serve` started here. Streaming token by token,
stop cancels on the server, reload keeps the history, IME composition, XSS through the
renderer and through a stubbed stream, the console's charts moving under bench/loadgen.py,
and no request to any other origin. Screenshots go to the build folder (tests/web-*.png).

Without chromium, node or puppeteer-core this test FAILS (it never skips): install them
with scripts/deps.sh test."""
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "server"))
from serverlib import Server, check, create_key, finish, shared_model, synthetic_model

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.abspath(os.path.join(os.environ.get("SOV_TEST_TMP", "/tmp"), ".."))  # the build's tests/ folder


def need(cond, msg):
    if not cond:
        print("FAIL: " + msg + " (install with: scripts/deps.sh test)", file=sys.stderr)
        sys.exit(1)


def main():
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    node = shutil.which("node")
    need(os.access(chromium, os.X_OK), "Debian's chromium is not installed (apt-get install chromium)")
    need(node, "node is not installed")
    need(os.path.isdir(os.path.join(HERE, "node_modules", "puppeteer-core")),
         "puppeteer-core is missing (npm ci --prefix %s)" % HERE)
    # a synthetic model slow enough (~100 tokens/s on 2 threads) that an answer can be
    # watched and stopped while it streams; stories260K would end in milliseconds
    model = synthetic_model("srv_slow_f32.gguf", "--dim", "512", "--layers", "6", "--heads", "8", "--kv-heads", "4",
                            "--ffn", "1536", "--vocab", "4096", "--ctx", "4096")
    # and stories260K behind API keys: the chat's key field, the console's admin key
    db = os.path.join(os.environ.get("SOV_TEST_TMP", "/tmp"), "web-browser-%d.db" % os.getpid())
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    admin, _ = create_key(db, "ops", "--admin")
    user, _ = create_key(db, "acme")
    with Server(model, "-np", "4", "--ctx", "4096") as s, Server(shared_model("stories260K.gguf"), "--db", db) as k:
        base = "http://%s:%d" % (s.host, s.port)
        t0 = time.time()
        r = subprocess.run([node, os.path.join(HERE, "browser.mjs"), base, OUT, chromium,
                            os.path.join(ROOT, "bench", "loadgen.py"), "http://%s:%d" % (k.host, k.port), user, admin],
                           capture_output=True, text=True, timeout=300)
        took = time.time() - t0
    check(s.proc.returncode == 0 and k.proc.returncode == 0,
          "both servers stopped cleanly (exit %r, %r; a sanitizer report exits non-zero)"
          % (s.proc.returncode, k.proc.returncode))
    out = r.stdout.strip().splitlines()
    res = json.loads(out[-1]) if out and out[-1].startswith("{") else None
    if not check(res is not None, "browser.mjs printed its result (rc %d): %s %s" % (r.returncode, r.stdout[-1500:],
                                                                                    r.stderr[-3000:])):
        finish()
    for f in res["failures"]:
        check(False, f)
    check(r.returncode == (1 if res["failures"] else 0), "browser.mjs exit status %d" % r.returncode)
    print("browser figures: %s; whole run %.1f s; screenshots in %s" % (json.dumps(res["figures"]), took, OUT),
          file=sys.stderr)
    finish()


main()
