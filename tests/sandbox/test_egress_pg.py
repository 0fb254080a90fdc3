"""test_egress_pg.py - PostgreSQL over TCP under the lockdown (SOV_NEEDS_POSTGRES: the
fixture's cluster, reached through a TCP forwarder of this test on 127.0.0.1, since the
cluster itself listens only on a Unix socket). The server names the store by host name
(localhost: looked up in /etc/hosts, never DNS), so after the lockdown it may create TCP
sockets, and Landlock lets them reach only the store's port. The forwarder then drops
every connection and refuses new ones for a while, as a database restart would: keys with
limits get 503s, and once it is back the server reconnects — a new TCP socket after the
lockdown — and keys with limits work again. (The Unix-socket reconnect under the lockdown
is tests/server/test_tenants_pg.py's outage test, which runs with the lockdown on.)"""
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
from serverlib import Server, bearer, check, create_key, finish, run_tests, shared_model, wait_for

STORIES = shared_model("stories260K.gguf")


def fixture_url():
    path = os.environ.get("SOV_PG_URL_FILE", "")
    if not path or not os.path.exists(path):
        print("FAIL: no PostgreSQL: the fixture store/pg_start did not leave a URL in %r" % path, file=sys.stderr)
        sys.exit(1)
    return open(path).read().strip()


def fixture_socket(url):
    """The cluster's Unix socket path, from the fixture URL's host= and port=."""
    q = dict(kv.split("=", 1) for kv in url.partition("?")[2].split("&") if "=" in kv)
    return os.path.join(q["host"], ".s.PGSQL.%s" % q.get("port", "5432"))


def new_database(url, name):
    """A fresh database on the fixture's cluster; its name."""
    name = "sov_%s_%d" % (name, os.getpid())
    for sql in ("DROP DATABASE IF EXISTS %s" % name, "CREATE DATABASE %s" % name):
        r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("psql %r: %s" % (sql, r.stderr.decode()))
    return name


class Forwarder:
    """127.0.0.1:port -> the cluster's Unix socket, one pair of pump threads per connection;
    down() drops every connection and refuses new ones until up()."""

    def __init__(self, target):
        self.target = target
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.open = []
        self.accepted = 0
        self.refusing = False
        self.stopping = False
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                if self.refusing:
                    c.close()
                    continue
                self.accepted += 1
            try:
                u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                u.connect(self.target)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.open += [c, u]
            threading.Thread(target=self.pump, args=(c, u), daemon=True).start()
            threading.Thread(target=self.pump, args=(u, c), daemon=True).start()

    @staticmethod
    def pump(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def down(self):
        with self.lock:
            self.refusing = True
            for s in self.open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.open = []

    def up(self):
        with self.lock:
            self.refusing = False

    def close(self):
        self.stopping = True
        self.down()
        self.lsock.close()


def test_postgres_over_tcp_reconnects_under_the_lockdown():
    url = fixture_url()
    fwd = Forwarder(fixture_socket(url))
    try:
        name = new_database(url, "egress_tcp")
        base, _, query = url.partition("?")
        unix_url = base.rsplit("/", 1)[0] + "/" + name + "?" + query
        tcp_url = "postgresql://postgres@localhost:%d/%s" % (fwd.port, name)
        limited, _ = create_key(unix_url, "acme", "--rpm", "100000")
        with Server(STORIES, "--db", tcp_url, "--metrics-open") as s:
            log = s.output()
            check("except TCP to port %d (PostgreSQL, any host)" % fwd.port in log,
                  "start-up names the one TCP port left:\n" + log[-700:])
            m = s.metrics()
            check(m.get("sov_egress_locked") == 1 and m.get("sov_sandbox_landlock_net") == 1,
                  "/metrics: locked, TCP limited by Landlock")

            def ok():
                return s.post("/v1/completions", {"prompt": "Once", "max_tokens": 2},
                              headers=bearer(limited))[0]

            check(ok() == 200, "a key with limits works over TCP")
            before = fwd.accepted
            fwd.down()
            check(wait_for(lambda: ok() == 503, 10), "with the database gone, keys with limits get 503")
            time.sleep(0.5)
            fwd.up()
            t0 = time.time()
            back = wait_for(lambda: ok() == 200, 20)
            check(back, "after the outage the server reconnects over a new TCP socket (%.1f s)" % (time.time() - t0))
            check(fwd.accepted > before, "the reconnection came through the forwarder (%d -> %d connections)" %
                  (before, fwd.accepted))
            check(s.proc.poll() is None, "the server is alive")
        check(s.proc.returncode == 0, "clean exit (%r)" % s.proc.returncode)
    finally:
        fwd.close()


def main():
    run_tests([test_postgres_over_tcp_reconnects_under_the_lockdown])
    finish()


if __name__ == "__main__":
    main()
