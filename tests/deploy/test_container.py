"""test_container.py - deploy/docker/Dockerfile, checked statically (no image can be built
here: no registry). Parsed into stages and instructions (continuation lines joined), then:
both stages on debian:12-slim, a multi-stage build whose final stage only copies the
build's package; no ADD, no URL fetched into the image, no pipe into a shell; the final
stage runs as a numeric non-root user; HEALTHCHECK on /health; the default command is a
`sov serve` with options sov documents and a model under /models; the build stage installs
every package scripts/deps.sh says the build needs; the documented `docker run` has a
read-only root and a read-only model. Each check also runs on a broken copy and must fail."""
import json
import os
import re
import shlex
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploylib import DEPLOY, SRC, unknown_serve_options  # noqa: E402
from serverlib import check, finish, run_tests  # noqa: E402

DOCKERFILE = os.path.join(DEPLOY, "docker", "Dockerfile")


def parse(text):
    """[(stage_name_or_None, base, [(INSTRUCTION, args)])] and the comment lines."""
    stages, comments, cur = [], [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if s.startswith("#"):
            comments.append(s[1:].strip())
            continue
        if not s and not cur:
            continue
        cur += " " + s[:-1] if s.endswith("\\") else " " + s
        if s.endswith("\\"):
            continue
        line, cur = cur.strip(), ""
        if not line:
            continue
        ins, _, args = line.partition(" ")
        ins = ins.upper()
        if ins == "FROM":
            w = args.split()
            stages.append({"base": w[0], "name": w[2] if len(w) > 2 and w[1].upper() == "AS" else None, "ins": []})
        elif stages:
            stages[-1]["ins"].append((ins, args.strip()))
    return stages, comments


def exec_form(args):
    return json.loads(args) if args.startswith("[") else shlex.split(args)  # JSON array or shell form


def problems(text):
    """What is wrong with a Dockerfile's text (empty: nothing)."""
    out = []
    stages, comments = parse(text)
    if len(stages) < 2:
        out.append("not multi-stage")
    for st in stages:
        if st["base"] != "debian:12-slim":
            out.append("stage on %s, not debian:12-slim" % st["base"])
        for ins, args in st["ins"]:
            if ins == "ADD":
                out.append("ADD (use COPY; never fetch URLs into the image)")
            if ins == "RUN" and re.search(r"\b(curl|wget)\b[^|]*https?://", args):
                out.append("a RUN downloads from the internet: " + args[:60])
            if ins == "RUN" and re.search(r"\|\s*(sh|bash)\b", args):
                out.append("a pipe into a shell")
    if not stages:
        return out + ["no FROM"]
    final = stages[-1]
    ins = [i for i, _ in final["ins"]]
    user = [a for i, a in final["ins"] if i == "USER"]
    if not user:
        out.append("the final stage runs as root (no USER)")
    else:
        uid = user[-1].split(":")[0]
        if not uid.isdigit() or int(uid) == 0:
            out.append("USER %s is not a numeric non-root id (Kubernetes' runAsNonRoot needs one)" % user[-1])
    hc = [a for i, a in final["ins"] if i == "HEALTHCHECK"]
    if not hc or "/health" not in hc[-1] or "CMD" not in hc[-1]:
        out.append("no HEALTHCHECK on /health")
    copies = [a for i, a in final["ins"] if i == "COPY"]
    if not copies or not all(a.startswith("--from=") for a in copies):
        out.append("the final stage copies from the context, not only from the build stage")
    if "RUN" in ins and not any("rm -rf /var/lib/apt/lists" in a for i, a in final["ins"] if i == "RUN"):
        out.append("apt lists left in the image")
    ep = [exec_form(a) for i, a in final["ins"] if i == "ENTRYPOINT"]
    cmd = [exec_form(a) for i, a in final["ins"] if i == "CMD"]
    if not ep or ep[-1] != ["/usr/bin/sov"]:
        out.append("ENTRYPOINT is not /usr/bin/sov")
    elif not cmd or cmd[-1][0] != "serve":
        out.append("CMD is not a sov serve")
    else:
        bad = unknown_serve_options(cmd[-1][1:])
        if bad:
            out.append("CMD passes options sov serve does not have: %s" % bad)
        if "-m" not in cmd[-1] or not cmd[-1][cmd[-1].index("-m") + 1].startswith("/models/"):
            out.append("the model is not read from /models")
    runs = [c for c in comments if c.startswith("docker run") or c.startswith("-v") or "--read-only" in c]
    doc = " ".join(runs)
    if "--read-only" not in doc or not re.search(r":/models:ro\b", doc):
        out.append("the documented docker run lacks --read-only or a read-only /models")
    return out


def deps_build_packages():
    text = open(os.path.join(SRC, "scripts", "deps.sh")).read()
    pkgs = []
    for m in re.finditer(r"^need(\+?)=\(([^)]*)\)(.*)$", text, re.M):
        if m.group(1) == "" or "pull" in m.group(3) or "sandbox" in m.group(3):  # the build's own needs
            pkgs += m.group(2).split()
    return pkgs


def test_dockerfile_is_sealed():
    text = open(DOCKERFILE).read()
    p = problems(text)
    check(not p, "Dockerfile problems: %s" % p)
    build_stage = parse(text)[0][0]
    installed = " ".join(a for i, a in build_stage["ins"] if i == "RUN")
    missing = [p for p in deps_build_packages() if p not in installed.split()]
    check(len(deps_build_packages()) >= 10 and not missing,
          "the build stage installs what scripts/deps.sh needs: missing %s" % missing)
    check(os.path.exists(os.path.join(DEPLOY, "docker", "Dockerfile.dockerignore")), "a .dockerignore beside it")


def test_checks_catch_broken_dockerfiles():
    text = open(DOCKERFILE).read()
    broken = {
        "root user": re.sub(r"^USER .*$", "USER root", text, flags=re.M),
        "no USER": re.sub(r"^USER .*$", "", text, flags=re.M),
        "no HEALTHCHECK": re.sub(r"^HEALTHCHECK (.*\\\n)*.*$", "", text, flags=re.M),
        "ADD of a URL": text.replace("WORKDIR /src", "ADD https://example.com/x.tar.gz /x\nWORKDIR /src"),
        "curl into a shell": text.replace("WORKDIR /src", "RUN curl -fsSL https://example.com/i.sh | sh\nWORKDIR /src"),
        "other base": text.replace("FROM debian:12-slim\n", "FROM ubuntu:latest\n"),
        "single stage": text[text.index("FROM debian:12-slim\n# the user"):],
        "unknown option": text.replace('"--state-dir"', '"--state-folder"'),
        "writable model": text.replace("/models:ro", "/models"),
    }
    for what, t in broken.items():
        check(t != text and problems(t), "the check catches: %s" % what)


run_tests([test_dockerfile_is_sealed, test_checks_catch_broken_dockerfiles])
finish()
