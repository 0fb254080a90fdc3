"""test_tls.py - `sov serve --tls-cert/--tls-key [--tls-client-ca]`: HTTPS and mTLS, with a
PKI made at test time by tls_pki.sh (the openssl command line), driven by curl, Python's ssl
module and the official OpenAI npm client.

Server certificates: a bad certificate, key or client CA file refuses to start with one
line naming the file (expired, not yet valid, mismatched key, encrypted key, missing file,
not PEM). HTTPS: the good certificate serves completions and chat streams (curl, the
OpenAI client equal to `sov run`); a client trusting another CA refuses the server; plain
HTTP, garbage and a stalled handshake on the TLS port get no HTTP answer and the server
goes on; TLS 1.1 and TLS 1.2 without AEAD are refused by the server; ALPN says http/1.1.
mTLS: no client certificate, one from another CA (with the right subject), an expired one or
one for server authentication only are refused at the handshake; a good certificate bound to a key is served as that key's
tenant without any Authorization header (and after session resumption); a good
certificate bound to nothing gets 401; a bearer key bound to a certificate works only
with it; a certificate's tenant and a bearer key's tenant must agree; revoking the key
revokes the certificate within a second, and a new key for the same subject takes over.
Disconnects: a client leaving mid-stream over TLS, or sending TLS's close_notify and then
closing, has its request cancelled."""
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverlib import (SOV_BIN, TMP, Server, bearer, check, create_key, finish, read_response, run_tests,
                       shared_model, sov_keys, sov_run, stream_text, synthetic_model, wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
JS = os.path.join(HERE, "js")
STORIES = shared_model("stories260K.gguf")
PKI = os.path.join(TMP, "tls-pki-%d" % os.getpid())
RADIOLOGY = "CN=radiology,O=Hospital"  # client.pem's subject (RFC 2253)


def pki(name):
    return os.path.join(PKI, name)


def slow_model():
    """The synthetic model test_http.py uses: a long generation takes seconds."""
    return synthetic_model("srv_slow_f32.gguf", "--dim", "512", "--layers", "6", "--heads", "8", "--kv-heads", "4",
                           "--ffn", "1536", "--vocab", "4096", "--ctx", "4096")


def db_path(name):
    os.makedirs(TMP, exist_ok=True)
    p = os.path.join(TMP, "tls-%d-%s.db" % (os.getpid(), name))
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(p + suffix):
            os.remove(p + suffix)
    return p


class TlsServer(Server):
    """sov serve over HTTPS. Raw requests (Server.raw, request, metrics, ...) go through
    Python's ssl trusting the test CA and presenting the client certificate named by
    self.client (None: none)."""

    def __init__(self, model, *args, cert="server", client_ca=False, client=None, **kw):
        tls = ["--tls-cert", pki(cert + ".pem"), "--tls-key", pki(cert + ".key")]
        if client_ca:
            tls += ["--tls-client-ca", pki("client-ca.pem")]
        super().__init__(model, *(tls + list(args)), **kw)
        self.client = client

    def context(self, client=None):
        ctx = ssl.create_default_context(cafile=pki("ca.pem"))
        if client:
            ctx.load_cert_chain(pki(client + ".pem"), pki(client + ".key"))
        return ctx

    def connect(self, timeout=60, client="default", ctx=None, session=None):
        raw = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            ctx = ctx or self.context(self.client if client == "default" else client)
            return ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        except BaseException:
            raw.close()
            raise

    def __exit__(self, *a):
        rc = self.stop()
        out = self.output()
        check(rc == 0 and "Sanitizer" not in out, "the server exits cleanly (%s): %s" % (rc, out[-1500:]))

    def call(self, method, path, body=None, headers=None, client="default"):
        """A request as another client (certificate name, or None)."""
        saved = self.client
        if client != "default":
            self.client = client
        try:
            return self.request(method, path, body, headers)
        finally:
            self.client = saved


def complete(srv, n=4, headers=None, client="default", **kw):
    body = {"prompt": "Once upon a time", "max_tokens": n, "temperature": 0}
    body.update(kw)
    return srv.call("POST", "/v1/completions", body, headers, client)


def curl(srv, path, *args, body=None, host="localhost", scheme="https"):
    """curl against the server: (exit status, HTTP status or 0, body bytes, stderr)."""
    out = pki("curl-body")
    if os.path.exists(out):
        os.remove(out)
    cmd = ["curl", "-sS", "--max-time", "30", "-o", out, "-w", "%{http_code}"] + list(args)
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    cmd.append("%s://%s:%d%s" % (scheme, host, srv.port, path))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    b = open(out, "rb").read() if os.path.exists(out) else b""
    return r.returncode, int(r.stdout.strip() or 0), b, r.stderr


def refusal(srv, client=None, ctx=None):
    """Connects with a TLS client (certificate name) or context and waits for the server's
    verdict: None when it is served, else the reason of the error the client got. With TLS
    1.3 the client's handshake ends before the server has checked its certificate, so a
    refusal shows at the first read, as the server's alert; the client sends nothing until
    then (the server would close on the unread request with a reset, which can overtake the
    alert: clients like curl that send at once may see a reset instead)."""
    raw = socket.create_connection((srv.host, srv.port), timeout=10)
    try:
        s = (ctx or srv.context(client)).wrap_socket(raw, server_hostname="localhost")
        s.settimeout(1)
        try:
            data = s.recv(100)  # an alert, or nothing: accepted
            return "answered %r before any request" % data[:40]
        except socket.timeout:
            pass
        s.settimeout(10)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = s.recv(100)
        s.close()
        return None if data.startswith(b"HTTP/1.1 200") else "answered %r" % data[:40]
    except ssl.SSLError as e:
        return e.reason or str(e)
    except (ConnectionResetError, BrokenPipeError):
        return "connection reset"
    finally:
        raw.close()


def error_code(body):
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def node_client():
    """(node, True) when node and the npm openai client are there; a skip or failure note otherwise."""
    node = shutil.which("node")
    if node and os.path.isdir(os.path.join(JS, "node_modules", "openai")):
        return node
    msg = "node or the npm package openai is missing (run: scripts/deps.sh test)"
    if os.environ.get("SOV_REQUIRE_SHARED") == "1":
        check(False, msg)
    else:
        print("  SKIP (OpenAI client part): " + msg, file=sys.stderr)
    return None


def run_node(node, script, *args, env_extra=None):
    env = dict(os.environ)
    env.pop("NODE_EXTRA_CA_CERTS", None)
    env.update(env_extra or {})
    r = subprocess.run([node, os.path.join(JS, script)] + list(args), capture_output=True, text=True, timeout=300,
                       env=env)
    if r.returncode != 0:
        check(False, "%s failed: %s" % (script, r.stderr[-2000:]))
        return None
    return json.loads(r.stdout)


# ---- start-up ----

def test_bad_certificates_refuse_to_start():
    cases = [
        (["--tls-cert", pki("expired.pem"), "--tls-key", pki("expired.key")], ["expired.pem", "expired on 2021-01-01"]),
        (["--tls-cert", pki("future.pem"), "--tls-key", pki("future.key")], ["future.pem", "not valid before 2090"]),
        (["--tls-cert", pki("server.pem"), "--tls-key", pki("client.key")], ["client.key", "does not match",
                                                                             "server.pem"]),
        (["--tls-cert", pki("server.pem"), "--tls-key", pki("encrypted.key")], ["encrypted.key", "passphrase"]),
        (["--tls-cert", pki("missing.pem"), "--tls-key", pki("server.key")], ["missing.pem", "No such file"]),
        (["--tls-cert", pki("server.key"), "--tls-key", pki("server.key")], ["server.key", "not usable"]),
        (["--tls-cert", pki("server.pem"), "--tls-key", pki("server.pem")], ["server.pem", "no PEM private key"]),
        (["--tls-cert", pki("server.pem"), "--tls-key", pki("server.key"), "--tls-client-ca", pki("client.key")],
         ["client.key", "holds no PEM certificate"]),
        (["--tls-cert", pki("server.pem")], ["--tls-key"]),
        (["--tls-client-ca", pki("client-ca.pem")], ["--tls-cert"]),
    ]
    for args, words in cases:
        t0 = time.time()
        r = subprocess.run([SOV_BIN, "serve", "-m", STORIES, "--port", "0"] + args, capture_output=True, text=True,
                           timeout=60)
        lines = r.stderr.strip().split("\n")
        check(r.returncode in (1, 2) and len(lines) == 1 and all(w in r.stderr for w in words) and
              time.time() - t0 < 5,
              "%s: refused in one line naming %s (%d): %r" % (" ".join(os.path.basename(a) for a in args), words,
                                                                r.returncode, r.stderr))
        check("listening" not in r.stdout, "nothing listens")


# ---- HTTPS ----

def test_https_with_curl():
    with TlsServer(STORIES, "-np", "4") as s:
        check("listening on https://" in s.output(), "start-up says https: " + s.output()[:400])
        rc, st, b, _ = curl(s, "/health", "--cacert", pki("ca.pem"))
        check(rc == 0 and st == 200 and b"ok" in b, "good certificate: 200 (%d, %d)" % (rc, st))
        rc, st, b, _ = curl(s, "/v1/completions", "--cacert", pki("ca.pem"), host="127.0.0.1",
                            body={"prompt": "Once upon a time", "max_tokens": 16, "temperature": 0})
        plain = json.loads(b)["choices"][0]["text"] if st == 200 else None
        check(rc == 0 and st == 200 and plain, "completion by IP address (SAN 127.0.0.1): %d %r" % (st, b[:200]))
        rc, st, b, _ = curl(s, "/v1/completions", "--cacert", pki("ca.pem"),
                            body={"prompt": "Once upon a time", "max_tokens": 16, "temperature": 0, "stream": True})
        text, fin, _, ev = stream_text(b)
        check(st == 200 and text == plain and fin == "length" and ev[-1] == "[DONE]",
              "streamed completion equals the plain one: %r / %r" % (text, plain))
        rc, st, b, _ = curl(s, "/v1/chat/completions", "--cacert", pki("ca.pem"),
                            body={"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 12,
                                  "temperature": 0, "stream": True, "stream_options": {"include_usage": True}})
        text, fin, usage, ev = stream_text(b)
        check(st == 200 and fin == "length" and usage and usage["completion_tokens"] == 12 and ev[-1] == "[DONE]",
              "chat stream over HTTPS: %d %r" % (st, ev[-3:]))
        # the client refuses a server whose certificate does not chain to what it trusts
        rc, st, b, err = curl(s, "/health", "--cacert", pki("wrongca.pem"))
        check(rc == 60 and st == 0 and b == b"", "wrong CA: curl refuses the server (%d, %d): %s" % (rc, st, err))
        rc, st, _, err = curl(s, "/health")  # the system's trust store knows nothing of the test CA
        check(rc == 60 and st == 0, "no CA given: refused (%d): %s" % (rc, err))
        # plain HTTP to the TLS port: no HTTP answer
        rc, st, b, err = curl(s, "/health", scheme="http")
        check(rc != 0 and st == 0 and b == b"", "plain HTTP: no answer (%d, %d, %r)" % (rc, st, b[:80]))
        rc, st, _, _ = curl(s, "/health", "--cacert", pki("ca.pem"))
        check(st == 200, "still serving after the plain request")


def test_openai_client_over_https():
    node = node_client()
    if not node:
        return
    prompts = ["Once upon a time", "The little dog"]
    with TlsServer(STORIES, "-np", "8", "--ctx", "256") as s:
        base = "https://localhost:%d/v1" % s.port
        out = run_node(node, "openai_client.mjs", base, "stories260K", json.dumps(prompts),
                       env_extra={"NODE_EXTRA_CA_CERTS": pki("ca.pem")})
        bad = run_node(node, "tls_client.mjs", base, "stories260K", "sk-unused")
        other = run_node(node, "tls_client.mjs", base, "stories260K", "sk-unused", pki("wrongca.pem"))
    if out:
        want = [sov_run(STORIES, p, 32, "--ignore-eos") for p in prompts]
        for i, p in enumerate(prompts):
            check(out["plain"][i]["text"] == want[i] and out["streamed"][i]["text"] == want[i],
                  "over HTTPS, completion of %r equals sov run: %r / %r" % (p, out["plain"][i]["text"], want[i]))
        for i, c in enumerate(out["concurrent"]):
            check(c["text"] == want[i % len(prompts)], "concurrent request %d over HTTPS equals sov run" % i)
        check(out["chat_streamed"]["text"] == out["chat"]["text"] and out["chat_streamed"]["finish"],
              "chat streamed over HTTPS equals chat: %r / %r" % (out["chat_streamed"], out["chat"]))
    for name, r in (("no CA", bad), ("another CA", other)):
        check(r and not r["ok"] and r["error"]["name"] == "APIConnectionError" and r["error"]["status"] is None and
              r["error"]["code"] in ("UNABLE_TO_VERIFY_LEAF_SIGNATURE", "SELF_SIGNED_CERT_IN_CHAIN",
                                     "UNABLE_TO_GET_ISSUER_CERT_LOCALLY"),
              "%s: the OpenAI client refuses the server's certificate: %r" % (name, r))


def test_protocols_and_ciphers():
    with TlsServer(STORIES) as s:
        with s.connect() as c:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            read_response(c)
            check(c.version() == "TLSv1.3" and c.compression() is None and c.session.has_ticket,
                  "TLS 1.3, no compression, a resumption ticket: %s" % c.version())
        # TLS 1.1: offered by a client that allows it, refused by the server's alert (not by
        # the client's own settings: that error would be NO_PROTOCOLS_AVAILABLE)
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():  # deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version, old.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
        why = refusal(s, ctx=old)
        check(why == "TLSV1_ALERT_PROTOCOL_VERSION", "TLS 1.1 refused by the server: %s" % why)
        # TLS 1.2: ECDHE with AEAD only
        def tls12(ciphers):
            c = s.context()
            c.maximum_version = ssl.TLSVersion.TLSv1_2
            c.set_ciphers(ciphers)
            return c
        with tls12("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305").wrap_socket(
                socket.create_connection((s.host, s.port), timeout=10), server_hostname="localhost") as c:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            st, _, _ = read_response(c)
            check(c.version() == "TLSv1.2" and c.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256" and st == 200,
                  "TLS 1.2 with AES-GCM serves: %s %s" % (c.version(), c.cipher()))
            check(not c.session.has_ticket, "no session ticket under TLS 1.2 (forward secrecy)")
        for weak in ("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384", "AES128-GCM-SHA256:AES256-GCM-SHA384"):
            why = refusal(s, ctx=tls12(weak + ":@SECLEVEL=0"))
            check(why == "SSLV3_ALERT_HANDSHAKE_FAILURE", "TLS 1.2 with %s refused: %s" % (weak, why))
        alpn = s.context()
        alpn.set_alpn_protocols(["h2", "http/1.1"])
        with alpn.wrap_socket(socket.create_connection((s.host, s.port), timeout=10),
                              server_hostname="localhost") as c:
            check(c.selected_alpn_protocol() == "http/1.1", "ALPN: http/1.1 (%r)" % c.selected_alpn_protocol())
        m = s.metrics()
        check(m.get('sov_tls_alerts_sent_total{alert="protocol_version"}') == 1 and
              m.get('sov_tls_alerts_sent_total{alert="handshake_failure"}') == 2,
              "the refusals are counted by alert: %r" % {k: v for k, v in m.items() if "tls" in k})


def test_garbage_and_stalls_on_the_tls_port():
    with TlsServer(STORIES, "--http-timeout", "2") as s:
        def closed_without_http(payload):
            c = socket.create_connection((s.host, s.port), timeout=10)
            try:
                if payload:
                    c.sendall(payload)
                data = b""
                while True:
                    chunk = c.recv(4096)
                    if not chunk:
                        return not data.startswith(b"HTTP/"), data
                    data += chunk
            except ConnectionResetError:
                return True, b"(reset)"
            finally:
                c.close()
        import random
        rnd = random.Random(7)
        payloads = {
            "plain HTTP": b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
            "random bytes": bytes(rnd.randrange(256) for _ in range(10000)),
            "a TLS record header with nothing after it": b"\x16\x03\x01\x40\x00",
            "an SSLv2 hello": bytes.fromhex("802b0103010012000000100000030000060000070000080000090000040000"
                                            "0500000200000101020304050607080910111213141516"),
            "a handshake record of garbage": b"\x16\x03\x03\x00\x10" + b"\xff" * 16,
        }
        for name, p in payloads.items():
            ok, data = closed_without_http(p)
            check(ok, "%s: closed without an HTTP answer (%r)" % (name, data[:60]))
        t0 = time.time()
        ok, data = closed_without_http(b"")  # connects and sends nothing
        took = time.time() - t0
        check(ok and 1.5 < took < 6, "a stalled handshake is closed after --http-timeout (%.1f s)" % took)
        st, _, _ = s.get("/health")
        check(st == 200, "still serving after garbage and stalls")
        m = s.metrics()
        check(m["sov_tls_connections_total"] >= 8 and m["sov_tls_handshakes_total"] == 2,
              "connections and handshakes counted: %g, %g" % (m["sov_tls_connections_total"],
                                                             m["sov_tls_handshakes_total"]))


# ---- mTLS ----

def test_mtls_handshake_refusals():
    with TlsServer(STORIES, "--metrics-open", client_ca=True, client="client") as s:
        check("mTLS" in s.output(), "start-up says mTLS")
        check(refusal(s, "client") is None, "a good client certificate is served")
        why = refusal(s, None)
        check(why == "TLSV13_ALERT_CERTIFICATE_REQUIRED", "no client certificate: refused at the handshake (%s)" % why)
        why = refusal(s, "rogue")
        check(why == "TLSV1_ALERT_UNKNOWN_CA", "a certificate with the right subject from another CA: refused (%s)" % why)
        why = refusal(s, "client-expired")
        check(why == "SSLV3_ALERT_CERTIFICATE_EXPIRED", "an expired client certificate: refused (%s)" % why)
        why = refusal(s, "client-eku")
        check(why == "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
              "a client CA's certificate for server authentication only: refused (%s)" % why)
        tls12 = s.context("client2")
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.2 refuses inside the handshake itself
        check(refusal(s, ctx=tls12) is None, "TLS 1.2 with a good client certificate: served")
        tls12 = s.context(None)
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        why = refusal(s, ctx=tls12)
        check(why == "SSLV3_ALERT_HANDSHAKE_FAILURE", "TLS 1.2 without a client certificate: refused (%s)" % why)
        rc, st, _, err = curl(s, "/health", "--cacert", pki("ca.pem"))
        check(rc != 0 and st == 0, "curl without a client certificate: no answer (%d, %d)" % (rc, st))
        rc, st, _, _ = curl(s, "/health", "--cacert", pki("ca.pem"), "--cert", pki("rogue.pem"), "--key",
                            pki("rogue.key"))
        check(rc != 0 and st == 0, "curl with another CA's certificate: no answer (%d, %d)" % (rc, st))
        rc, st, _, _ = curl(s, "/health", "--cacert", pki("ca.pem"), "--cert", pki("client.pem"), "--key",
                            pki("client.key"))
        check(rc == 0 and st == 200, "curl with a good client certificate: 200 (%d, %d)" % (rc, st))
        m = s.metrics()
        check(m.get('sov_tls_alerts_sent_total{alert="certificate_required"}', 0) >= 1 and
              m.get('sov_tls_alerts_sent_total{alert="unknown_ca"}', 0) >= 1 and
              m.get('sov_tls_alerts_sent_total{alert="certificate_expired"}', 0) >= 1,
              "refusals by alert: %r" % {k: v for k, v in m.items() if "alert" in k})


def test_certificate_stands_for_a_tenant():
    db = db_path("mtls")
    bound, bound_id = create_key(db, "radiology", "--client-cert-subject", RADIOLOGY)
    ops, _ = create_key(db, "ops", "--admin")
    with TlsServer(STORIES, "--db", db, "--metrics-open", client_ca=True, client="client") as s:
        st, _, b = complete(s)
        check(st == 200, "a bound certificate without Authorization: served (%d %r)" % (st, b[:200]))
        m = s.metrics()
        check(m.get('sov_tenant_requests_total{tenant="radiology"}') == 1, "served as tenant radiology")
        st, _, b = complete(s, client="client2")
        e = json.loads(b)["error"] if st == 401 else {}
        check(st == 401 and e.get("code") == "missing_api_key" and "CN=cardiology,O=Hospital" in e.get("message", ""),
              "an unbound certificate without Authorization: 401 naming it (%d %r)" % (st, b[:300]))
        st, _, _ = complete(s, client="client2", headers=bearer(ops))
        check(st == 200, "an unbound certificate with a bearer key: the key decides (%d)" % st)
        st, _, b = complete(s, client="client", headers=bearer(ops))
        check(st == 401 and error_code(b) == "invalid_api_key",
              "a certificate of tenant radiology with a key of tenant ops: 401 (%d)" % st)
        st, _, _ = complete(s, client="client", headers=bearer(bound))
        check(st == 200, "the bound key with its certificate: 200 (%d)" % st)
        st, _, b = complete(s, client="client2", headers=bearer(bound))
        check(st == 401 and error_code(b) == "invalid_api_key", "the bound key with another certificate: 401")
        m = s.metrics()
        check(m.get('sov_tenant_requests_total{tenant="radiology"}') == 2 and
              m.get('sov_tenant_requests_total{tenant="ops"}') == 1 and
              m.get('sov_auth_failures_total{reason="unbound_certificate"}') == 1 and
              m.get('sov_auth_failures_total{reason="wrong_certificate"}') == 2,
              "tenants and refusals counted: %r" % {k: v for k, v in m.items() if "tenant_req" in k or "auth_f" in k})
        # a resumed TLS session keeps its certificate, and so its tenant
        ctx = s.context("client")
        c1 = s.connect(ctx=ctx)
        c1.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        read_response(c1)
        session = c1.session
        c1.close()
        c2 = s.connect(ctx=ctx, session=session)
        body = json.dumps({"prompt": "Once", "max_tokens": 2}).encode()
        c2.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                   % len(body) + body)
        st, _, _ = read_response(c2)
        check(c2.session_reused and st == 200, "a resumed session is served as its certificate's tenant (%s, %d)" %
              (c2.session_reused, st))
        c2.close()
        m = s.metrics()
        check(m["sov_tls_resumed_handshakes_total"] == 1, "resumption counted: %g" % m["sov_tls_resumed_handshakes_total"])
        # a new key for the same subject takes over; revoking the last one revokes the certificate
        _, new_id = create_key(db, "radiology", "--client-cert", pki("client.pem"))
        sov_keys(db, "revoke", bound_id)
        time.sleep(1.2)
        st, _, _ = complete(s)
        check(st == 200, "after rotation the certificate stands for the new key (%d)" % st)
        sov_keys(db, "revoke", new_id)
        t0 = time.time()
        refused = wait_for(lambda: complete(s)[0] == 401, 5)
        st, _, b = complete(s)
        check(refused and time.time() - t0 < 1.5 and "revoked" in json.loads(b)["error"]["message"],
              "revoking the key revokes the certificate within a second: %r" % b[:200])
        node = node_client()
        if node:  # the OpenAI client under mTLS, presenting the bound key (the client always sends one)
            key3, _ = create_key(db, "radiology", "--client-cert-subject", RADIOLOGY)
            time.sleep(1.2)
            base = "https://localhost:%d/v1" % s.port
            r = run_node(node, "tls_client.mjs", base, "stories260K", key3, pki("ca.pem"), pki("client.pem"),
                         pki("client.key"))
            check(r and r["ok"] and r["streamed"]["text"] == r["chat"]["text"] and r["chat"]["finish"] == "length",
                  "the OpenAI client with a client certificate: chat and stream (%r)" % r)
            r = run_node(node, "tls_client.mjs", base, "stories260K", key3, pki("ca.pem"), pki("client2.pem"),
                         pki("client2.key"))
            check(r and not r["ok"] and r["error"]["status"] == 401, "the bound key with another certificate: 401 "
                                                                     "(%r)" % r)
            r = run_node(node, "tls_client.mjs", base, "stories260K", key3, pki("ca.pem"))
            check(r and not r["ok"] and r["error"]["status"] is None,
                  "the OpenAI client without a client certificate: refused by TLS (%r)" % r)
    # a bound key is no bearer key on its own: not over plain HTTP, not over TLS without mTLS
    key4, _ = create_key(db, "radiology", "--client-cert-subject", RADIOLOGY)
    with Server(STORIES, "--db", db) as plain:
        st, _, b = plain.post("/v1/completions", {"prompt": "Once", "max_tokens": 2}, headers=bearer(key4))
        check(st == 401 and error_code(b) == "invalid_api_key", "a bound key over plain HTTP: 401 (%d)" % st)
        st, _, _ = plain.post("/v1/completions", {"prompt": "Once", "max_tokens": 2}, headers=bearer(ops))
        check(st == 200, "an unbound key over plain HTTP: 200")


def test_keys_command_line_subjects():
    db = db_path("cli")
    _, kid = create_key(db, "radiology", "--client-cert", pki("client.pem"))
    _, out, _ = sov_keys(db, "list")
    f = out.strip().split("\t")
    check(f[0] == str(kid) and f[-1] == RADIOLOGY, "list: the subject is the last column: %r" % f)
    _, out, _ = sov_keys(db, "list", "--json")
    check(json.loads(out)["client_cert_subject"] == RADIOLOGY, "list --json: client_cert_subject")
    for args, words in [(["--client-cert-subject", "CN=radiology, O=Hospital"], "space after a comma"),
                        (["--client-cert-subject", "/O=Hospital/CN=radiology"], "RFC 2253"),
                        (["--client-cert", pki("client.key")], "no PEM certificate"),
                        (["--client-cert", pki("client.pem"), "--client-cert-subject", RADIOLOGY], "not both")]:
        rc, _, err = sov_keys(db, "create", "--tenant", "x", *args, check_rc=False)
        check(rc == 1 and words in err and err.count("\n") == 1, "create %r: one line saying %r: %r" % (args, words, err))
    # a certificate stands for one tenant: the rogue CA's certificate has the same subject
    rc, _, err = sov_keys(db, "create", "--tenant", "intruder", "--client-cert", pki("rogue.pem"), check_rc=False)
    check(rc == 1 and "already stands for tenant 'radiology'" in err, "another tenant cannot take the subject: %r" % err)


# ---- disconnects ----

def test_disconnects_over_tls_cancel():
    with TlsServer(slow_model(), "-np", "2") as srv:
        body = json.dumps({"prompt": "Once upon a time", "max_tokens": 3000, "stream": True,
                           "ignore_eos": True}).encode()
        c = srv.connect()
        c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        data = c.recv(4096)
        check(data.startswith(b"HTTP/1.1 200"), "stream started over TLS")
        m = srv.metrics()
        check(m["sov_running_sequences"] >= 1, "the stream runs")
        c.close()  # mid-stream, without close_notify
        m = srv.wait_metric('sov_requests_finished_total{reason="cancelled"}', lambda v: v == 1)
        check(m['sov_requests_finished_total{reason="cancelled"}'] == 1, "the stream left mid-way is cancelled")
        m = srv.wait_metric("sov_running_sequences", lambda v: v == 0)
        check(m["sov_running_sequences"] == 0 and m["sov_kv_blocks_used"] == m["sov_prefix_cache_blocks"],
              "its blocks are freed")
        # a client that sends TLS's close_notify (bytes waiting on the socket, not EOF) and then
        # closes: the watcher must not take the alert for a pipelined request and stop looking
        body = json.dumps({"prompt": "Once upon a time", "max_tokens": 3000, "ignore_eos": True}).encode()
        c = srv.connect()
        c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        srv.wait_metric("sov_running_sequences", lambda v: v == 1)
        c.settimeout(0.3)
        try:
            c.unwrap()  # sends close_notify, then waits in vain for the server's
        except (socket.timeout, ssl.SSLError, OSError):
            pass
        time.sleep(0.5)
        m = srv.metrics()
        check(m["sov_running_sequences"] == 1 and m['sov_requests_finished_total{reason="cancelled"}'] == 1,
              "close_notify alone is a half-close (TLS 1.3): the request goes on")
        c.close()
        m = srv.wait_metric('sov_requests_finished_total{reason="cancelled"}', lambda v: v == 2, timeout=5)
        check(m['sov_requests_finished_total{reason="cancelled"}'] == 2, "then closing the socket cancels it")
        m = srv.wait_metric("sov_running_sequences", lambda v: v == 0)
        check(m["sov_running_sequences"] == 0, "nothing left running")


def main():
    os.makedirs(TMP, exist_ok=True)
    r = subprocess.run(["bash", os.path.join(HERE, "tls_pki.sh"), PKI], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        print("FAIL: tls_pki.sh: " + r.stderr, file=sys.stderr)
        sys.exit(1)
    try:
        run_tests([test_bad_certificates_refuse_to_start, test_https_with_curl, test_openai_client_over_https,
                   test_protocols_and_ciphers, test_garbage_and_stalls_on_the_tls_port, test_mtls_handshake_refusals,
                   test_certificate_stands_for_a_tenant, test_keys_command_line_subjects,
                   test_disconnects_over_tls_cancel])
    finally:
        shutil.rmtree(PKI, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
