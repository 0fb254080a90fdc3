"""deploylib.py - what the deployment tests share: the source tree's deploy/ folder, and the
options `sov serve --help` documents (so a unit, an image or a manifest that passes an
option sov does not have fails a test instead of a start). Not a test (no test_ prefix)."""
import functools
import os
import re
import subprocess

SRC = os.path.abspath(os.environ.get("SOV_SOURCE_DIR",
                                     os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")))
DEPLOY = os.path.join(SRC, "deploy")
SOV_BIN = os.environ.get("SOV_BIN", "build/sov")


@functools.lru_cache(maxsize=None)
def serve_options():
    """Every --long option (and -m, -t, ...) `sov serve --help` names."""
    text = subprocess.run([SOV_BIN, "serve", "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-z]{1,2})\b", text))


def unknown_serve_options(args):
    """The options in an argument list (after 'serve') that sov serve does not document."""
    known = serve_options()
    return [a.split("=")[0] for a in args if a.startswith("-") and a.split("=")[0] not in known]
