"""hublib.py - a Hugging Face-compatible hub of the test's own, on loopback: the tree API
(/api/models/ORG/REPO/tree/main), the resolve URL (/ORG/REPO/resolve/main/PATH) answering
with a redirect carrying X-Linked-Etag / X-Linked-Size like the public hub, and a "CDN"
(/cdn/SHA256) serving the bytes with ETag and Range support. Faults a test can switch on:
drop the connection after N body bytes, ignore Range, state a wrong SHA-256, leave lfs out
of the tree, send no checksum header. Every request is logged (method, path, Range,
Authorization). Not a test itself (no test_ prefix)."""
import hashlib
import http.server
import json
import threading
import urllib.parse


class Hub:
    def __init__(self):
        self.repos = {}          # "ORG/REPO" -> {path: bytes}
        self.log = []            # (method, path, range, authorization)
        self.drop_after = None   # body bytes sent before the connection is dropped ...
        self.drops_left = 0      # ... this many times
        self.ignore_range = False
        self.wrong_sha = set()   # paths whose tree entry states a wrong sha256
        self.no_lfs = False      # tree entries without lfs (hash from the headers only)
        self.no_headers = False  # no X-Linked-Etag / ETag either
        self.tree_body = None    # raw bytes served as the tree listing instead
        self._sha = {}           # id(bytes) -> (bytes, sha256 hex): hashed once
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_HEAD(self):
                self.handle_any(head=True)

            def do_GET(self):
                self.handle_any(head=False)

            def send_bytes(self, code, body, headers=(), head=False, drop_at=None):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if head:
                    return
                if drop_at is not None:
                    self.wfile.write(body[:drop_at])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def handle_any(self, head):
                u = urllib.parse.urlsplit(self.path)
                path = urllib.parse.unquote(u.path)
                hub.log.append((self.command, path, self.headers.get("Range"), self.headers.get("Authorization")))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4:6] == ["tree", "main"]:
                    repo = "/".join(parts[2:4])
                    if repo not in hub.repos:
                        return self.send_bytes(404, b'{"error":"Repository not found"}', head=head)
                    body = hub.tree_body if hub.tree_body is not None else json.dumps(hub.tree(repo)).encode()
                    return self.send_bytes(200, body, [("Content-Type", "application/json")], head)
                if len(parts) >= 5 and parts[2:4] == ["resolve", "main"]:
                    repo, fpath = "/".join(parts[:2]), "/".join(parts[4:])
                    data = hub.repos.get(repo, {}).get(fpath)
                    if data is None:
                        return self.send_bytes(404, b"Entry not found", head=head)
                    sha = hub.sha(data)
                    hdrs = [("Location", "/cdn/" + sha), ("X-Linked-Size", str(len(data)))]
                    if not hub.no_headers:
                        hdrs.append(("X-Linked-Etag", '"%s"' % sha))
                    return self.send_bytes(302, b"", hdrs, head)
                if len(parts) == 2 and parts[0] == "cdn":
                    data = hub.blob(parts[1])
                    if data is None:
                        return self.send_bytes(404, b"no such blob", head=head)
                    hdrs = [("Accept-Ranges", "bytes")]
                    if not hub.no_headers:
                        hdrs.append(("ETag", '"%s"' % parts[1]))
                    rng = self.headers.get("Range")
                    start = 0
                    if rng and not hub.ignore_range:
                        start = int(rng.split("=")[1].split("-")[0])
                        if start >= len(data):
                            return self.send_bytes(416, b"", [("Content-Range", "bytes */%d" % len(data))], head)
                        hdrs.append(("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data))))
                    body = data[start:]
                    drop = None
                    if hub.drops_left > 0 and not head:
                        hub.drops_left -= 1
                        drop = min(hub.drop_after, len(body) - 1)
                    return self.send_bytes(206 if start else 200, body, hdrs, head, drop)
                return self.send_bytes(404, b"not found", head=head)

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that hangs up (the tests make some) is not news

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def tree(self, repo):
        out = [{"type": "directory", "oid": "0" * 40, "size": 0, "path": "sub"}]
        for path, data in sorted(self.repos[repo].items()):
            sha = self.sha(data)
            if path in self.wrong_sha:
                sha = hashlib.sha256(data + b"x").hexdigest()
            e = {"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data), "path": path}
            if not self.no_lfs:
                e["lfs"] = {"oid": sha, "size": len(data), "pointerSize": 134}
            out.append(e)
        return out

    def sha(self, data):
        hit = self._sha.get(id(data))
        if not hit or hit[0] is not data:
            hit = self._sha[id(data)] = (data, hashlib.sha256(data).hexdigest())
        return hit[1]

    def blob(self, sha):
        for files in self.repos.values():
            for data in files.values():
                if self.sha(data) == sha:
                    return data
        return None

    def ranges(self):
        """The Range headers of the requests for file bodies, in order."""
        return [r for (m, p, r, a) in self.log if m == "GET" and p.startswith("/cdn/")]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
