"""test_systemd.py - the hardened unit deploy/systemd/sov.service.

1. `systemd-analyze security --offline=true` scores it at most 2.0 ("OK"); the same unit
   stripped of its hardening scores above (so the check can fail).
2. The directives the issue lists are there, with the values that mean something.
3. Every system call `sov serve` makes while starting, serving a completion and shutting
   down (traced with strace) is one the unit's SystemCallFilter= allows, the filter expanded
   by systemd-analyze itself: the unit cannot break the server (nor its own seccomp/Landlock
   lockdown), and it never connect()s over IP: serving touches no network. Skipped under
   the sanitizers (their run-time makes calls of its own).
Needs systemd-analyze (exit 77 without); part 3 needs strace."""
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
from serverlib import SOV_BIN, TMP, check, finish, run_tests  # noqa: E402

SRC = os.environ.get("SOV_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
UNIT = os.path.join(SRC, "deploy", "systemd", "sov.service")
ANALYZE = shutil.which("systemd-analyze")
if not ANALYZE:
    print("SKIP: systemd-analyze is not installed", file=sys.stderr)
    sys.exit(77)
WORK = os.path.join(os.path.abspath(TMP), "systemd-%d" % os.getpid())
os.makedirs(WORK, exist_ok=True)


def directives(path):
    out = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def score(path):
    r = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", path], capture_output=True, text=True,
                       timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", r.stdout + r.stderr)
    return (float(m.group(1)), m.group(2)) if m else (None, r.stdout + r.stderr)


def test_security_score_at_most_2():
    s, word = score(UNIT)
    print("systemd-analyze security --offline=true deploy/systemd/sov.service: %s %s" % (s, word), file=sys.stderr)
    check(s is not None and s <= 2.0, "exposure %s %s must be <= 2.0" % (s, word))
    bare = os.path.join(WORK, "sov.service")
    keep = ("Description", "ExecStart", "User", "Group", "Type", "WantedBy", "EnvironmentFile")
    with open(bare, "w") as f:
        for line in open(UNIT):
            k = line.split("=", 1)[0].strip()
            if line.startswith("[") or k in keep:
                f.write(line)
    b, _ = score(bare)
    check(b is not None and b > 2.0, "the unit without its hardening scores above 2.0: %s" % b)


def test_listed_directives():
    d = directives(UNIT)
    want = {"User": "sov", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
            "PrivateDevices": "yes", "NoNewPrivileges": "yes", "MemoryDenyWriteExecute": "yes",
            "IPAddressDeny": "any", "CapabilityBoundingSet": "", "StateDirectory": "sov"}
    for k, v in want.items():
        check(d.get(k) == [v], "%s=%s (got %s)" % (k, v, d.get(k)))
    check("AF_INET" in d.get("RestrictAddressFamilies", [""])[0].split(), "RestrictAddressFamilies names AF_INET")
    check(d.get("IPAddressAllow"), "IPAddressAllow for the listening address")
    check(d.get("SystemCallFilter", [""])[0].split()[0] == "@system-service", "SystemCallFilter=@system-service")
    check("--state-dir /var/lib/sov" in d.get("ExecStart", [""])[0], "the state folder is /var/lib/sov")
    check(d.get("EnvironmentFile") == ["/etc/sov/sov.conf"], "options from /etc/sov/sov.conf")


def expand(spec):
    """The system call names a SystemCallFilter= word list stands for (groups expanded by
    systemd-analyze syscall-filter, recursively)."""
    names = set()
    for w in spec.split():
        if not w.startswith("@"):
            names.add(w)
            continue
        out = subprocess.run([ANALYZE, "syscall-filter", "--no-pager", w], capture_output=True, text=True).stdout
        for line in out.splitlines()[1:]:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            names |= expand(line) if line.startswith("@") else {line}
    return names


def test_sov_serve_stays_inside_the_filter():
    if not shutil.which("strace"):
        print("  (strace not installed: the system-call check is skipped)", file=sys.stderr)
        return
    if b"__asan_init" in open(SOV_BIN, "rb").read():
        print("  (sanitizer build: the system-call check is skipped)", file=sys.stderr)
        return
    filters = directives(UNIT)["SystemCallFilter"]
    allowed = set()
    for f in filters:
        if f.startswith("~"):
            allowed -= expand(f[1:])
        else:
            allowed |= expand(f)
    check("read" in allowed and "seccomp" in allowed and "setuid" not in allowed, "the filter expands sensibly")
    trace, ready = os.path.join(WORK, "trace"), os.path.join(WORK, "ready")
    model = os.path.join(WORK, "m.gguf")
    subprocess.run([SOV_BIN, "gen-model", "-o", model, "--dim", "64", "--layers", "1", "--vocab", "512", "--ffn",
                    "128"], check=True, capture_output=True)
    p = subprocess.Popen(["strace", "-f", "-qq", "-o", trace, SOV_BIN, "serve", "-m", model, "--port", "0",
                          "--ready-file", ready, "--state-dir", os.path.join(WORK, "state"), "-t", "1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(300):
        if os.path.exists(ready) and open(ready).read().strip():
            break
        time.sleep(0.1)
    host, port = open(ready).read().split()
    base = "http://%s:%s" % (host, port)
    check(urllib.request.urlopen(base + "/health", timeout=20).status == 200, "/health under strace")
    req = urllib.request.Request(base + "/v1/completions", data=b'{"prompt": "Once", "max_tokens": 4}',
                                 headers={"Content-Type": "application/json"})
    check(urllib.request.urlopen(req, timeout=60).status == 200, "a completion under strace")
    # SIGTERM to sov itself (strace keeps tracing through its own SIGTERM)
    kids = open("/proc/%d/task/%d/children" % (p.pid, p.pid)).read().split()
    for k in kids:
        os.kill(int(k), 15)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        for k in kids:
            os.kill(int(k), 9)
        p.wait(timeout=10)
    used = set()
    outbound = [ln.strip() for ln in open(trace) if re.search(r"\bconnect\(\d+, \{sa_family=AF_INET6?\b", ln)]
    check(not outbound, "sov serve opened no IP connection (it never touches the network): %s" % outbound[:3])
    for line in open(trace):
        m = re.match(r"\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", line)
        if m and m.group(1) not in ("exited", "killed", "resumed"):
            used.add(m.group(1))
    check("seccomp" in used or "landlock_create_ruleset" in used, "the traced run includes sov's own lockdown")
    used.discard("execve")  # systemd itself starts the binary (and execve is in @default)
    outside = sorted(used - allowed)
    print("  sov serve made %d distinct system calls; outside the unit's filter: %s" % (len(used), outside),
          file=sys.stderr)
    check(len(used) > 20 and not outside, "every system call is allowed by the unit: %s" % outside)


run_tests([test_security_score_at_most_2, test_listed_directives, test_sov_serve_stays_inside_the_filter])
shutil.rmtree(WORK, ignore_errors=True)
finish()
