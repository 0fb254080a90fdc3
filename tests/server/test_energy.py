"""test_energy.py - energy per request through `sov serve` (docs/ENERGY.md): with no readable
powercap counters (SOV_POWERCAP_ROOT at an empty folder, as on this VM) every completion's
usage carries energy_joules > 0 and energy_source "estimated" (chat and text, whole and the
streamed usage chunk); the figure follows --cpu-watts; /metrics has the total and per-tenant
joules and tokens per joule, every energy series labelled source="estimated", and the requests'
joules add up to the total; the audit record holds the same joules. With a fake powercap tree
the server says "rapl" and counts what the counters moved."""
import json
import os
import shutil
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from auditlib import records  # noqa: E402
from serverlib import TMP, Server, check, finish, run_tests, shared_model, stream_text  # noqa: E402

STORIES = shared_model("stories260K.gguf")


def folder(name):
    d = os.path.join(TMP, "energy-%d-%s" % (os.getpid(), name))
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


# no counters: the estimate, on any machine
os.environ["SOV_POWERCAP_ROOT"] = folder("no-powercap")


def chat(s, n=8, stream=False, prompt="Once upon a time"):
    body = {"model": "stories260K", "messages": [{"role": "user", "content": prompt}], "max_tokens": n, "temperature": 0}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return s.post("/v1/chat/completions", body)


def usage_ok(u, what):
    ok = check(isinstance(u, dict), "%s: no usage" % what)
    ok = ok and check(u.get("energy_source") == "estimated", "%s: energy_source %r" % (what, u.get("energy_source")))
    ok = ok and check(isinstance(u.get("energy_joules"), float) and u["energy_joules"] > 0,
                      "%s: energy_joules %r" % (what, u.get("energy_joules")))
    return ok


def test_responses_carry_estimated_joules():
    with Server(STORIES) as s:
        st, _, b = chat(s)
        check(st == 200, "chat %d" % st)
        usage_ok(json.loads(b).get("usage"), "chat")
        st, _, b = s.post("/v1/completions", {"model": "stories260K", "prompt": "Once", "max_tokens": 8, "temperature": 0})
        check(st == 200, "completions %d" % st)
        usage_ok(json.loads(b).get("usage"), "completions")
        st, _, b = chat(s, stream=True)
        _, _, usage, _ = stream_text(b)
        usage_ok(usage, "streamed chat usage chunk")
        st, _, b = s.post("/v1/completions", {"model": "stories260K", "prompt": "Once", "max_tokens": 8, "stream": True,
                                              "stream_options": {"include_usage": True}})
        _, _, usage, _ = stream_text(b)
        usage_ok(usage, "streamed completion usage chunk")
        # without include_usage the stream has no usage at all (unchanged OpenAI behaviour)
        st, _, b = s.post("/v1/chat/completions", {"model": "stories260K", "messages": [{"role": "user", "content": "a"}],
                                                   "max_tokens": 2, "stream": True})
        check(b'"energy_joules"' not in b, "energy in a stream that did not ask for usage")


def test_more_watts_more_joules():
    """The estimate is CPU time x --cpu-watts: 100x the watts gives far more joules for the
    same work (CPU time varies between runs, 100x does not drown in it)."""
    got = {}
    for w in ("1", "100"):
        with Server(STORIES, "--cpu-watts", w, "--dram-pj-per-byte", "0.001") as s:
            total = 0.0
            for _ in range(3):
                st, _, b = chat(s, n=32)
                total += json.loads(b)["usage"]["energy_joules"]
            got[w] = total
    check(got["100"] > 10 * got["1"], "joules at 1 W %g, at 100 W %g" % (got["1"], got["100"]))


def test_metrics_are_labelled_and_add_up():
    with Server(STORIES, "--parallel", "4") as s:
        results = []

        def one(i):
            st, _, b = chat(s, n=6 + i, prompt="Tell a story number %d" % i)
            results.append(json.loads(b)["usage"] if st == 200 else None)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(len(results) == 6 and all(results), "all six completed")
        st, _, body = s.get("/metrics")
        text = body.decode()
        m = s.metrics()
    series = [ln for ln in text.splitlines()
              if ln and not ln.startswith("#") and ("energy" in ln or "per_joule" in ln)]
    check(len(series) >= 4, "energy series: %r" % series)
    for ln in series:
        check('source="estimated"' in ln, "unlabelled energy series: " + ln)
    total = m.get('sov_energy_joules_total{source="estimated"}')
    check(total is not None and total > 0, "total %r" % total)
    summed = sum(u["energy_joules"] for u in results if u)
    # every step's joules go to its requests: only ours ran, so they add up to the total
    check(total is not None and abs(total - summed) <= 1e-6 * max(total, 1e-9) + 1e-9,
          "requests' joules %r vs total %r" % (summed, total))
    tokens = sum(u["prompt_tokens"] + u["completion_tokens"] for u in results if u)
    tpj = m.get('sov_tokens_per_joule{source="estimated"}')
    check(tpj is not None and total and abs(tpj - tokens / total) <= 1e-6 * tpj, "tokens/J %r" % tpj)
    tenant = [k for k in m if k.startswith("sov_tenant_energy_joules_total{")]
    check(len(tenant) == 1 and abs(m[tenant[0]] - summed) <= 1e-6 * summed + 1e-9, "tenant series %r" % tenant)
    check(any(k.startswith("sov_tenant_tokens_per_joule{") for k in m), "tenant tokens per joule")


def test_audit_record_holds_the_joules():
    d = folder("audit")
    db = os.path.join(d, "state.db")
    with Server(STORIES, "--db", db, "--state-dir", d) as s:
        st, _, b = chat(s)
        usage = json.loads(b)["usage"]
    recs = [r for r in records(db) if r["endpoint"] == "/v1/chat/completions"]
    check(len(recs) == 1, "one record: %d" % len(recs))
    if recs:
        r = recs[0]
        check(r["version"] == 2, "record version %r" % r["version"])
        check(r["energy_source"] == "estimated", "record source %r" % r["energy_source"])
        check(abs(r["energy_uj"] - usage["energy_joules"] * 1e6) <= 1, "record %r uJ vs response %r J" %
              (r["energy_uj"], usage["energy_joules"]))


def test_fake_powercap_tree_is_rapl():
    root = folder("powercap")
    z = os.path.join(root, "intel-rapl:0")
    os.makedirs(z)
    for name, v in (("name", "package-0"), ("energy_uj", "1000"), ("max_energy_range_uj", "262143328850")):
        with open(os.path.join(z, name), "w") as f:
            f.write(v + "\n")
    os.environ["SOV_POWERCAP_ROOT"] = root
    try:
        with Server(STORIES) as s:
            st, _, b = chat(s, n=4)
            u = json.loads(b)["usage"]
            check(u.get("energy_source") == "rapl", "source %r" % u.get("energy_source"))
            check(u.get("energy_joules") == 0.0, "a still counter gives 0 J, got %r" % u.get("energy_joules"))
            m = s.metrics()
            check('sov_energy_joules_total{source="rapl"}' in m, "rapl series in /metrics")
    finally:
        os.environ["SOV_POWERCAP_ROOT"] = folder("no-powercap2")


run_tests([test_responses_carry_estimated_joules, test_more_watts_more_joules, test_metrics_are_labelled_and_add_up,
           test_audit_record_holds_the_joules, test_fake_powercap_tree_is_rapl])
finish()
