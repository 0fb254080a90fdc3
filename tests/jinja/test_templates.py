#!/usr/bin/env python3
"""test_templates.py - every chat template of the corpus (tests/jinja/templates/*.jinja,
real templates of current model families, see SOURCES.md) rendered for every conversation
of conversations.py by sov's interpreter (tests/tools/jinja_batch.c, one process through
the public sov_chat_template_* API) and by python3-jinja2 in Hugging Face's environment
(render_ref.py): the bytes must be equal, and where Python raises (the template rejects
the conversation) sov must fail too. Prints the pass rate; any mismatch fails the test.

SOV_JINJA_ONLY=name restricts to templates whose file name contains name; -v prints diffs."""
import difflib
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
try:
    import jinja2  # noqa: F401
except ImportError:
    print("python3-jinja2 is not installed (scripts/deps.sh test); skipping")
    sys.exit(77)
import render_ref  # noqa: E402
from conversations import CASES  # noqa: E402

TOOLS_DIR = os.environ.get("SOV_TOOLS_DIR", os.path.join(HERE, "../../build/tests/tools"))
NOW = 1764763200  # 2025-12-03 12:00 UTC, for strftime_now
BOS, EOS = "<s>", "</s>"


def main():
    verbose = "-v" in sys.argv
    only = os.environ.get("SOV_JINJA_ONLY", "")
    tdir = os.path.join(HERE, "templates")
    names = sorted(n for n in os.listdir(tdir) if n.endswith(".jinja") and only in n)
    jobs, wants = [], []
    for name in names:
        path = os.path.join(tdir, name)
        src = open(path, encoding="utf-8").read()
        try:
            compiled, compile_err = render_ref.compile_template(src, NOW), None
        except Exception as e:  # noqa: BLE001
            compiled, compile_err = None, "%s: %s" % (type(e).__name__, e)
        for case, msgs, tools, gen, extra in CASES:
            jobs.append({"template": path, "messages": msgs, "tools": tools, "add_generation_prompt": gen,
                         "bos": BOS, "eos": EOS, "vars": extra, "now": NOW})
            if compile_err:
                wants.append((name, case, None, compile_err))
                continue
            try:
                wants.append((name, case, render_ref.render(compiled, msgs, tools, BOS, EOS, gen, extra, NOW), None))
            except Exception as e:  # noqa: BLE001
                wants.append((name, case, None, "%s: %s" % (type(e).__name__, e)))
    p = subprocess.run([os.path.join(TOOLS_DIR, "jinja_batch")], input=json.dumps(jobs).encode(),
                       capture_output=True, timeout=300)
    if p.returncode != 0:
        print("jinja_batch failed: %s" % p.stderr.decode(errors="replace"))
        return 1
    results = json.loads(p.stdout)
    passed = py_errors = 0
    failed_templates = {}
    for (name, case, want, want_err), got in zip(wants, results):
        if want_err is not None:
            py_errors += 1
            ok = not got["ok"] and got["error"]
            why = "python raised (%s) but sov rendered" % want_err
        else:
            ok = got["ok"] and got["out"] == want
            why = "output differs" if got["ok"] else "sov failed: %s" % got["error"]
        if ok:
            passed += 1
            continue
        failed_templates.setdefault(name, []).append(case)
        print("FAIL %s / %s: %s" % (name, case, why))
        if verbose and got["ok"] and want is not None:
            for line in difflib.unified_diff(want.splitlines(True), got["out"].splitlines(True), "python", "sov", n=1):
                sys.stdout.write("    " + line)
    total = len(jobs)
    print("jinja corpus: %d templates x %d conversations: %d/%d renders identical to python3-jinja2 (%.1f%%), "
          "%d of them errors in both; %d/%d templates pass every conversation"
          % (len(names), len(CASES), passed, total, 100.0 * passed / max(total, 1), py_errors,
             len(names) - len(failed_templates), len(names)))
    return 1 if passed != total else 0


if __name__ == "__main__":
    sys.exit(main())
