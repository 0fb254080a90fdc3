"""test_web_assets.py - the embedded pages over raw HTTP (no browser): every file under web/
is served at its URL byte for byte with its Content-Type, a strict CSP and nosniff; ETags
are the file's own SHA-256 prefix and If-None-Match gets 304; gzip when accepted (and
gunzips to the file); no asset references another host (a scan of web/ and of the served
bytes); /console/api/stats agrees with /metrics, its percentiles with an independent
histogram_quantile over /metrics' buckets, and it is closed to non-admin keys."""
import gzip
import hashlib
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "server"))
from serverlib import Server, check, create_key, finish, run_tests, shared_model, bearer

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
WEB = os.path.join(ROOT, "web")
STORIES = shared_model("stories260K.gguf")
TMP = os.environ.get("SOV_TEST_TMP", "/tmp")
CTYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
SVG_NS = "http://www.w3.org/2000/svg"  # an XML namespace name, never fetched


def web_files():
    """(url, path) of every file under web/, as cmake/web_embed.cmake maps them."""
    out = []
    for d, _, names in os.walk(WEB):
        for n in sorted(names):
            p = os.path.join(d, n)
            rel = os.path.relpath(p, WEB)
            url = {"index.html": "/", "console.html": "/console"}.get(rel, "/" + rel)
            out.append((url, p))
    return out


def external_refs(text):
    """Every reference to another host in an asset's text: scheme://, protocol-relative
    //host in attributes, CSS url() and @import, JS string literals; the SVG namespace
    name (an identifier, not a fetch) is the one exception."""
    found = []
    for m in re.finditer(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>)]*", text):
        if m.group(0) != SVG_NS:
            found.append(m.group(0))
    found += re.findall(r"(?:src|href|action|poster|data)\s*=\s*[\"']?//[^\s\"'>]+", text, re.I)
    found += re.findall(r"url\(\s*[\"']?(?!/[^/]|#|data:image/svg)[^)]*\)", text, re.I)
    found += re.findall(r"@import[^;]*", text, re.I)
    found += re.findall(r"[\"'`]//[A-Za-z0-9][^\"'`]*", text)
    return found


def test_static_scan():
    files = web_files()
    check(len(files) >= 6, "web/ holds the pages and assets (%d files)" % len(files))
    for url, p in files:
        text = open(p, encoding="utf-8").read()
        refs = external_refs(text)
        check(not refs, "%s references no other host: %r" % (p, refs))
        if p.endswith(".html"):
            check(not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), "%s has no inline script" % p)
            check(not re.search(r"<style|\sstyle\s*=", text, re.I), "%s has no inline style" % p)
            check(not re.search(r"\son[a-z]+\s*=", text, re.I), "%s has no inline event handler" % p)
        if p.endswith(".js"):
            check("innerHTML" not in text and "outerHTML" not in text and "insertAdjacentHTML" not in text
                  and "document.write" not in text and "eval(" not in text,
                  "%s builds no markup from strings" % p)
    # the scanner itself finds what it must (a scanner that finds nothing proves nothing)
    for bad in ['<img src="https://cdn.example/x.png">', '<link href="//fonts.example/css">',
                "a { background: url(https://x.example/a.png) }", "@import 'https://x/y.css';",
                'fetch("//evil.example/")', "ws://10.0.0.1/feed"]:
        check(external_refs(bad), "the scanner flags %r" % bad)
    for ok in ["// a comment", SVG_NS, 'href="/console"', "url(/assets/x.svg)", "/^https?:\\/\\//i"]:
        check(not external_refs(ok), "the scanner lets %r pass" % ok)


def test_served_assets():
    with Server(STORIES, "-np", "2") as s:
        for url, p in web_files():
            raw = open(p, "rb").read()
            ext = os.path.splitext(p)[1]
            st, h, b = s.get(url)
            check(st == 200 and b == raw, "%s: 200 and the file's bytes (%d, %d/%d bytes)" % (url, st, len(b), len(raw)))
            check(h.get("content-type") == CTYPES[ext], "%s: Content-Type %r" % (url, h.get("content-type")))
            csp = h.get("content-security-policy", "")
            check("default-src 'self'" in csp and "unsafe" not in csp and "script-src 'self'" in csp
                  and "frame-ancestors 'none'" in csp, "%s: strict CSP %r" % (url, csp))
            check(h.get("x-content-type-options") == "nosniff", "%s: nosniff" % url)
            check(not external_refs(b.decode("utf-8")), "%s: the served bytes reference no other host" % url)
            tag = '"%s"' % hashlib.sha256(raw).hexdigest()[:16]
            check(h.get("etag") == tag, "%s: ETag %r is the file's SHA-256 prefix %s" % (url, h.get("etag"), tag))
            for inm in (tag, "W/" + tag, '"nope", ' + tag, "*"):
                st2, h2, b2 = s.get(url, headers={"If-None-Match": inm})
                check(st2 == 304 and b2 == b"" and h2.get("etag") == tag, "%s: If-None-Match %s gets 304" % (url, inm))
            for inm in ('"nope"', tag[:-2] + '"', "garbage", '"' + tag):
                st2, _, b2 = s.get(url, headers={"If-None-Match": inm})
                check(st2 == 200 and b2 == raw, "%s: If-None-Match %s gets the file" % (url, inm))
            st, h, b = s.get(url, headers={"Accept-Encoding": "br, gzip;q=0.8"})
            check(st == 200 and h.get("content-encoding") == "gzip" and gzip.decompress(b) == raw
                  and "accept-encoding" in h.get("vary", "").lower(),
                  "%s: gzip when accepted, and it gunzips to the file" % url)
            for ae in ("gzip;q=0", "identity", "br", "*;q=0", "gzip;q=0.0, *"):
                st, h, b = s.get(url, headers={"Accept-Encoding": ae})
                check(st == 200 and "content-encoding" not in h and b == raw, "%s: %r gets the plain file" % (url, ae))
            st, h, b = s.request("HEAD", url)
            check(st == 200 and b == b"" and h.get("etag") == tag, "%s: HEAD" % url)
        st, h, _ = s.post("/", {"x": 1})
        check(st == 405 and h.get("allow") == "GET", "POST / is 405")
        check(s.get("/assets/none.js")[0] == 404, "an unknown asset is 404")
        check(s.get("/assets/../console.html")[0] == 404, "no path walking")
        # HEAD on the JSON and text routes: the GET answer's headers, its length, no body
        for url in ("/v1/models", "/health", "/metrics", "/console/api/stats"):
            st, h, b = s.request("HEAD", url)
            st2, _, b2 = s.get(url)
            same = url in ("/v1/models", "/health")  # the others change between two requests
            check(st == 200 and b == b"" and h.get("content-length", "").isdigit()
                  and (not same or int(h["content-length"]) == len(b2)) and st2 == 200,
                  "%s: HEAD gives Content-Length %s and no body" % (url, h.get("content-length")))
    check(s.proc.returncode == 0, "the server stopped cleanly (exit %r)" % s.proc.returncode)


def quantile(bounds, counts, q):
    """Prometheus' histogram_quantile, written from its definition (per-bucket counts)."""
    total = sum(counts)
    if total == 0:
        return None
    rank, below = q * total, 0
    for i, b in enumerate(bounds):
        if counts[i] and below + counts[i] >= rank:
            lo = bounds[i - 1] if i else 0.0
            return lo + (b - lo) * (rank - below) / counts[i]
        below += counts[i]
    return bounds[-1]


def test_console_stats_match_metrics():
    with Server(STORIES, "-np", "4") as s:
        for i in range(6):
            st, _ = s.json("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 8 + 5 * i})
            check(st == 200, "completion %d" % i)
        s.get("/nope")
        st, h, b = s.get("/console/api/stats")
        check(st == 200 and h.get("content-type") == "application/json" and h.get("cache-control") == "no-store",
              "stats: 200 JSON, not cached")
        j = json.loads(b)
        m = s.metrics()
        check(j["engine"]["generated_tokens"] == m["sov_generated_tokens_total"] == 8 * 6 + 5 * 15,
              "generated tokens agree with /metrics and the requests")
        check(j["kv"]["total"] == m["sov_kv_blocks_total"] and j["kv"]["free"] == m["sov_kv_blocks_free"],
              "KV blocks agree")
        check(j["finished"]["length"] == 6 and j["http"].get("404") == 1 and j["http"].get("200") == 6,
              "finished and responses by status: %r %r" % (j["finished"], j["http"]))
        bounds = j["latency"]["bounds"]
        for key, name in (("ttft", "sov_time_to_first_token_seconds"), ("itl", "sov_inter_token_latency_seconds")):
            cum = [m['%s_bucket{le="%g"}' % (name, b)] for b in bounds] + [m['%s_bucket{le="+Inf"}' % name]]
            counts = [int(cum[0])] + [int(cum[i] - cum[i - 1]) for i in range(1, len(cum))]
            check(j["latency"][key]["counts"] == counts, "%s buckets agree with /metrics" % key)
            for q, k in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
                want = quantile(bounds, counts, q)
                got = j["latency"][key][k]
                check(got is not None and abs(got - want) < 1e-9, "%s %s = %r, reference %r" % (key, k, got, want))
        check(j["model"]["arch"] == "llama" and j["model"]["id"] == "stories260K" and j["model"]["n_params"] > 0
              and len(j["model"]["sha256"]) == 64, "model figures %r" % j["model"])
        check(j["system"]["threads"] >= 1 and j["system"]["isa"] != "" and j["admin"] is True
              and j["tenants"][0]["name"] == "default" and j["tenants"][0]["requests"] == 6,
              "system and (open server: admin) tenants %r %r" % (j["system"], j.get("tenants")))


def test_console_stats_needs_admin_key():
    db = os.path.join(TMP, "web-keys-%d.db" % os.getpid())
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    admin, _ = create_key(db, "ops", "--admin")
    user, _ = create_key(db, "acme")
    with Server(STORIES, "--db", db) as s:
        check(s.get("/")[0] == 200, "the chat page itself needs no key (the API calls do)")
        check(s.get("/console/api/stats")[0] == 401, "stats without a key: 401")
        check(s.get("/console/api/stats", headers=bearer(user))[0] == 403, "stats with a non-admin key: 403")
        st, _, b = s.get("/console/api/stats", headers=bearer(admin))
        j = json.loads(b) if st == 200 else {}
        check(st == 200 and j.get("admin") is True and "tenants" in j and j["system"]["auth_required"] is True,
              "stats with an admin key: 200 with tenants")
    with Server(STORIES, "--db", db, "--metrics-open") as s:
        st, _, b = s.get("/console/api/stats")
        j = json.loads(b) if st == 200 else {}
        check(st == 200 and j.get("admin") is False and "tenants" not in j,
              "--metrics-open: stats without a key, tenants hidden")
        st, _, b = s.get("/console/api/stats", headers=bearer(admin))
        check(st == 200 and "tenants" in json.loads(b), "--metrics-open with the admin key: tenants shown")
        check(s.get("/console/api/stats", headers=bearer("sov-wrong"))[0] == 401, "a wrong key is still refused")


run_tests([test_static_scan, test_served_assets, test_console_stats_match_metrics, test_console_stats_needs_admin_key])
finish()
