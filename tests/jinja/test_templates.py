#!/usr/bin/env python3
"""test_templates.py - every chat template of the corpus (tests/jinja/templates/*.jinja,
real templates of current model families, see SOURCES.md) rendered for every conversation
of conversations.py by `sov template render` and by python3-jinja2 in Hugging Face's
environment (render_ref.py): the bytes must be equal, and where Python raises (the
template rejects the conversation) sov must fail too. Prints the pass rate; any
mismatch fails the test.

SOV_JINJA_ONLY=name restricts to templates whose file name contains name; -v prints diffs."""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
try:
    import jinja2  # noqa: F401
except ImportError:
    print("python3-jinja2 is not installed (scripts/deps.sh test); skipping")
    sys.exit(77)
import render_ref  # noqa: E402
from conversations import CASES  # noqa: E402

SOV = os.environ.get("SOV_BIN", os.path.join(HERE, "../../build/sov"))
NOW = 1764763200  # 2025-12-03 12:00 UTC, for strftime_now
BOS, EOS = "<s>", "</s>"


def sov_render(tmpl, msgs, tools, gen, extra, tmp):
    mp, tp = os.path.join(tmp, "m.json"), os.path.join(tmp, "t.json")
    with open(mp, "w", encoding="utf-8") as f:
        json.dump(msgs, f, ensure_ascii=False)
    cmd = [SOV, "template", "render", "--template", tmpl, "--messages", mp, "--bos", BOS, "--eos", EOS,
           "--now", str(NOW)]
    if tools is not None:
        with open(tp, "w", encoding="utf-8") as f:
            json.dump(tools, f, ensure_ascii=False)
        cmd += ["--tools", tp]
    if not gen:
        cmd.append("--no-generation-prompt")
    for k, v in extra.items():
        cmd += ["--var", "%s=%s" % (k, json.dumps(v))]
    p = subprocess.run(cmd, capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def main():
    verbose = "-v" in sys.argv
    only = os.environ.get("SOV_JINJA_ONLY", "")
    tdir = os.path.join(HERE, "templates")
    names = sorted(n for n in os.listdir(tdir) if n.endswith(".jinja") and only in n)
    total = passed = 0
    failed_templates = {}
    py_errors = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = os.path.join(tdir, name)
            src = open(path, encoding="utf-8").read()
            for case, msgs, tools, gen, extra in CASES:
                total += 1
                try:
                    want, want_err = render_ref.render(src, msgs, tools, BOS, EOS, gen, extra, NOW), None
                except Exception as e:  # noqa: BLE001
                    want, want_err = None, "%s: %s" % (type(e).__name__, e)
                rc, got, err = sov_render(path, msgs, tools, gen, extra, tmp)
                if want_err is not None:
                    py_errors += 1
                    ok = rc != 0 and err.strip() != ""
                    why = "python raised (%s) but sov rendered" % want_err
                else:
                    ok = rc == 0 and got == want
                    why = "sov failed: %s" % err.strip() if rc else "output differs"
                if ok:
                    passed += 1
                    continue
                failed_templates.setdefault(name, []).append(case)
                print("FAIL %s / %s: %s" % (name, case, why))
                if verbose and rc == 0 and want is not None:
                    import difflib
                    for line in difflib.unified_diff(want.splitlines(True), got.splitlines(True), "python", "sov", n=1):
                        sys.stdout.write("    " + line)
    print("jinja corpus: %d templates x %d conversations: %d/%d renders identical to python3-jinja2 (%.1f%%), "
          "%d of them errors in both; %d/%d templates pass every conversation"
          % (len(names), len(CASES), passed, total, 100.0 * passed / max(total, 1), py_errors,
             len(names) - len(failed_templates), len(names)))
    return 1 if passed != total else 0


if __name__ == "__main__":
    sys.exit(main())
