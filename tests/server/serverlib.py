"""serverlib.py - helpers for the server tests: start `sov serve` on a free loopback port,
talk raw HTTP/1.1 over sockets (so malformed requests, slow senders and disconnects are
exactly what the test says), read SSE streams and /metrics, and run `sov run` for reference
output. Not a test itself (no test_ prefix)."""
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

SOV_BIN = os.environ.get("SOV_BIN", "build/sov")
TMP = os.environ.get("SOV_TEST_TMP", "/tmp")
SHARED = os.environ.get("SOV_SHARED_MODELS", "../shared/models")

# `sov serve` keeps its state (the audit signing key, the model digest cache) in
# $HOME/.local/state/sov unless told otherwise: a test never writes the real one
HOME = os.path.join(os.path.abspath(TMP), "home-%d" % os.getpid())
os.environ["HOME"] = HOME
atexit.register(shutil.rmtree, HOME, True)

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("  CHECK failed: " + what, file=sys.stderr)
    return cond


def run_tests(tests):
    """Runs test functions in order (see finish() for the exit status)."""
    for t in tests:
        before = len(failures)
        t0 = time.time()
        try:
            t()
        except Exception as e:  # a crash in a test is a failure, not the end of the suite
            import traceback
            traceback.print_exc()
            failures.append("%s raised %r" % (t.__name__, e))
        print("%s %s (%.1f s)" % ("ok  " if len(failures) == before else "FAIL", t.__name__, time.time() - t0),
              file=sys.stderr)


def finish():
    print("%d failed" % len(failures), file=sys.stderr)
    sys.exit(1 if failures else 0)


def shared_model(name):
    """Path of a model in ../shared/models; exits 77 (skip) when absent, 1 under SOV_REQUIRE_SHARED=1."""
    p = os.path.join(SHARED, name)
    if os.path.exists(p):
        return p
    if os.environ.get("SOV_REQUIRE_SHARED") == "1":
        print("FAIL: required shared model %s is missing" % p, file=sys.stderr)
        sys.exit(1)
    print("SKIP: %s is missing" % p, file=sys.stderr)
    sys.exit(77)


def synthetic_model(name, *args):
    """A synthetic model written by `sov gen-model` (cached in the test folder)."""
    os.makedirs(TMP, exist_ok=True)
    path = os.path.join(TMP, name)
    if not os.path.exists(path):
        subprocess.run([SOV_BIN, "gen-model", "-o", path + ".part"] + list(args), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.rename(path + ".part", path)
    return path


class Server:
    """`sov serve -m model ARGS` on a free loopback port, started and ready. launcher: a
    command to run it under (mpirun ... for a split job); env: its environment."""

    def __init__(self, model, *args, threads=2, launcher=(), env=None, tag="serve"):
        os.makedirs(TMP, exist_ok=True)
        self.ready = os.path.join(TMP, "%s-ready-%d-%d" % (tag, os.getpid(), int(time.time() * 1e6)))
        self.log_path = self.ready + ".log"
        cmd = list(launcher) + [SOV_BIN, "serve", "-m", model, "--port", "0", "--ready-file", self.ready,
                                "-t", str(threads)]
        cmd += list(args)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        t_end = time.time() + 120
        while not os.path.exists(self.ready) or os.path.getsize(self.ready) == 0:
            if self.proc.poll() is not None or time.time() > t_end:
                raise RuntimeError("server did not start: " + open(self.log_path).read())
            time.sleep(0.02)
        host, port = open(self.ready).read().split()
        self.host, self.port = host, int(port)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def output(self):
        return open(self.log_path).read()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()

    # ---- raw HTTP ----

    def connect(self, timeout=60):
        s = socket.create_connection((self.host, self.port), timeout=timeout)
        return s

    def raw(self, data, timeout=60):
        """Sends bytes, returns (status, headers dict (lower-case), body bytes)."""
        s = self.connect(timeout)
        try:
            s.sendall(data)
            return read_response(s)
        finally:
            s.close()

    def request(self, method, path, body=None, headers=None, timeout=120):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        h = {"Host": "%s:%d" % (self.host, self.port), "Connection": "close"}
        if body is not None:
            h["Content-Type"] = "application/json"
            h["Content-Length"] = str(len(body))
        h.update(headers or {})
        head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
        return self.raw(head.encode() + (body or b""), timeout)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def json(self, path, body=None):
        st, _, b = self.post(path, body) if body is not None else self.get(path)
        return st, json.loads(b) if b else None

    def metrics(self):
        st, _, b = self.get("/metrics")
        out = {}
        for line in b.decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def wait_metric(self, name, pred, timeout=20):
        t_end = time.time() + timeout
        while True:
            m = self.metrics()
            if pred(m.get(name)) or time.time() > t_end:
                return m
            time.sleep(0.05)


def recv_until(s, buf, marker):
    while marker not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def read_response(s):
    """Reads one HTTP response (Content-Length, chunked or until close)."""
    buf = recv_until(s, b"", b"\r\n\r\n")
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, v = l.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []  # joined once: bytes += would copy the whole body per chunk
        while True:
            rest = recv_until(s, rest, b"\r\n")
            size_line, rest = rest.split(b"\r\n", 1)
            n = int(size_line.split(b";")[0], 16)
            while len(rest) < n + 2:
                chunk = s.recv(65536)
                if not chunk:
                    raise EOFError("connection closed in a chunk")
                rest += chunk
            parts.append(rest[:n])
            rest = rest[n + 2:]
            if n == 0:
                break
        return status, headers, b"".join(parts)
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, headers, rest[:n]
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return status, headers, rest
        rest += chunk


def sse_events(body):
    """The data: payloads of an SSE body, in order."""
    out = []
    for block in body.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                out.append(line[6:])
    return out


def stream_text(body):
    """(text, finish_reason, usage, events) of a streamed chat or text completion."""
    text, finish, usage = "", None, None
    ev = sse_events(body)
    for e in ev:
        if e == "[DONE]":
            break
        j = json.loads(e)
        if j.get("usage"):
            usage = j["usage"]
        for c in j.get("choices", []):
            if "delta" in c:
                text += c["delta"].get("content") or ""
            else:
                text += c.get("text") or ""
            if c.get("finish_reason"):
                finish = c["finish_reason"]
    return text, finish, usage, ev


def sov_run(model, prompt, n, *extra):
    """`sov run --temp 0` output after the prompt."""
    r = subprocess.run([SOV_BIN, "run", "-m", model, "-p", prompt, "-n", str(n), "--temp", "0",
                        "--no-display-prompt", "-t", "1"] + list(extra),
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True)
    return r.stdout.decode("utf-8", "replace")


# ---- tenants ----

def sov_keys(db, *args, check_rc=True):
    """`sov keys SUB --db DB ...`: (exit status, stdout, stderr)."""
    r = subprocess.run([SOV_BIN, "keys", args[0], "--db", db] + [str(a) for a in args[1:]],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    out, err = r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
    if check_rc and r.returncode != 0:
        raise RuntimeError("sov keys %s failed (%d): %s" % (args[0], r.returncode, err))
    return r.returncode, out, err


def create_key(db, tenant, *args):
    """A new key for the tenant (the last line `sov keys create` prints) and its id."""
    _, out, _ = sov_keys(db, "create", "--tenant", tenant, *args)
    lines = out.strip().split("\n")
    key_id = int(lines[0].split()[2])
    return lines[-1], key_id


def bearer(key):
    return {"Authorization": "Bearer " + key}


def wait_for(pred, timeout):
    """Polls pred every 50 ms until it holds or timeout seconds pass; its last value."""
    t_end = time.time() + timeout
    while time.time() < t_end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()
