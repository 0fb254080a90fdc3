"""test_bench_energy.py - `sov bench` reports joules per token for pp and tg (docs/ENERGY.md):
in its JSON lines (joules_per_token > 0, energy_source) and its table (a J/tok column with the
source beside every figure); with no readable counters (SOV_POWERCAP_ROOT at an empty folder,
as on this VM) the source is "estimated" and the table says how it was estimated."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
from serverlib import SOV_BIN, TMP, check, finish, run_tests, shared_model  # noqa: E402

STORIES = shared_model("stories260K.gguf")
EMPTY = os.path.join(TMP, "bench-energy-%d" % os.getpid())
os.makedirs(EMPTY, exist_ok=True)
ENV = dict(os.environ, SOV_POWERCAP_ROOT=EMPTY)
ARGS = [SOV_BIN, "bench", "-m", STORIES, "-p", "32", "-n", "16", "-r", "2", "-t", "1", "--no-bandwidth"]


def test_json_has_joules_per_token():
    r = subprocess.run(ARGS + ["--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300, env=ENV)
    check(r.returncode == 0, "exit %d: %s" % (r.returncode, r.stderr[-300:]))
    lines = [json.loads(ln) for ln in r.stdout.decode().splitlines() if ln.strip()]
    check([ln["test"] for ln in lines] == ["pp32", "tg16"], "tests %r" % [ln.get("test") for ln in lines])
    for ln in lines:
        check(ln.get("energy_source") == "estimated", "%s source %r" % (ln["test"], ln.get("energy_source")))
        j = ln.get("joules_per_token")
        check(isinstance(j, float) and 0 < j < 10, "%s joules_per_token %r" % (ln["test"], j))


def test_table_labels_every_figure():
    r = subprocess.run(ARGS + ["--cpu-watts", "7"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300,
                       env=ENV)
    out = r.stdout.decode()
    check(r.returncode == 0 and "J/tok" in out, "table: %s" % out)
    rows = [ln for ln in out.splitlines() if ln.startswith("| pp") or ln.startswith("| tg")]
    check(len(rows) == 2 and all("estimated" in ln for ln in rows), "rows %r" % rows)
    check("J/tok estimated" in out and "7 W per busy core" in out, "the method is stated: %s" % out)


run_tests([test_json_has_joules_per_token, test_table_labels_every_figure])
finish()
