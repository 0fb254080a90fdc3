"""test_kv_cache_types.py - `sov serve` with a quantized KV cache and long prompts:

  - --kv-type q8_0 (stories260K): greedy completions equal `sov run --kv-type q8_0`, also
    when the second request reuses the first one's blocks from the prefix cache (so a
    shared quantized block and its copy on write give what a fresh cache gives); no block
    stays in use by a sequence afterwards;
  - the same --kv-cache-mb holds 640/400 = 1.6x the positions with q8_0 as with f16
    (stories260K's head size 8: groups of 8, an f16 scale each), as the start-up line
    reports; -ctk q8_0 -ctv f16 lies between;
  - a bad --kv-type value, and q8_0 on a head size it cannot hold (48), exit non-zero
    with one line naming the problem;
  - a 32,760-token prompt (token ids) on a synthetic model trained to 32,768 positions,
    -c 32768: answered (usage counts it; the scheduler prefills it in chunks of the batch
    size), and the server's peak RSS stays small (< 400 MB: no buffer grows with the
    context but the KV cache, 4 MB here).
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from serverlib import (SOV_BIN, Server, check, finish, run_tests, shared_model, sov_run,  # noqa: E402
                       synthetic_model)

STORIES = shared_model("stories260K.gguf")


def positions(s):
    m = re.search(r"KV cache [0-9.]+ MB \((\d+) positions", s.output())
    return int(m.group(1)) if m else -1


def test_q8_0_completions_equal_sov_run_and_prefix_cache():
    story = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. " * 5
    with Server(STORIES, "--kv-type", "q8_0") as s:
        a = s.json("/v1/completions", {"prompt": story + "One day", "max_tokens": 8, "temperature": 0})[1]
        b = s.json("/v1/completions", {"prompt": story + "The end", "max_tokens": 8, "temperature": 0})[1]
        check(a["choices"][0]["text"] == sov_run(STORIES, story + "One day", 8, "--kv-type", "q8_0"),
              "first equals sov run --kv-type q8_0")
        check(b["usage"]["prompt_tokens_details"]["cached_tokens"] > 0, "second reuses cached blocks")
        check(b["choices"][0]["text"] == sov_run(STORIES, story + "The end", 8, "--kv-type", "q8_0"),
              "second (from the prefix cache) equals sov run --kv-type q8_0")
        m = s.wait_metric("sov_running_sequences", lambda v: v == 0)
        check(m["sov_kv_blocks_used"] == m["sov_prefix_cache_blocks"], "no sequence holds blocks afterwards")


def test_same_memory_holds_more_positions():
    got = {}
    for name, args in [("f16", []), ("q8_0", ["--kv-type", "q8_0"]), ("k8v16", ["-ctk", "q8_0", "-ctv", "f16"])]:
        with Server(STORIES, "--kv-cache-mb", "4", *args) as s:
            got[name] = positions(s)
    check(got["f16"] > 0, "start-up line reports positions: %r" % got)
    check(got["q8_0"] == (4 << 20) // (5 * 4 * 2 * 10 * 16) * 16, "q8_0: 400 bytes a position: %r" % got)
    check(got["f16"] == (4 << 20) // (5 * 4 * 2 * 16 * 16) * 16, "f16: 640 bytes a position: %r" % got)
    check(got["f16"] < got["k8v16"] < got["q8_0"], "mixed types in between: %r" % got)


def test_bad_kv_type_is_refused():
    r = subprocess.run([SOV_BIN, "serve", "-m", STORIES, "--port", "0", "--kv-type", "q5_1"],
                       capture_output=True, text=True, timeout=60)
    lines = r.stderr.strip().splitlines()
    check(r.returncode != 0 and len(lines) == 1 and "q5_1" in lines[0], "unknown type: %r" % r.stderr)
    odd = synthetic_model("srv_kv_d48.gguf", "--dim", "96", "--layers", "1", "--heads", "2", "--kv-heads", "1",
                          "--ffn", "128", "--vocab", "512")
    r = subprocess.run([SOV_BIN, "serve", "-m", odd, "--port", "0", "--kv-type", "q8_0"],
                       capture_output=True, text=True, timeout=60)
    lines = [l for l in r.stderr.strip().splitlines() if "cannot" in l]
    check(r.returncode != 0 and len(lines) == 1 and "48" in lines[0], "head size 48 with q8_0: %r" % r.stderr[-300:])


def test_32k_token_prompt():
    model = synthetic_model("srv_kv_32k1.gguf", "--dim", "32", "--layers", "1", "--heads", "1", "--kv-heads", "1",
                            "--ffn", "128", "--vocab", "512", "--ctx", "32768")
    with Server(model, "-c", "32768", "-np", "1") as s:
        n = 32760
        prompt = [(i * 7919) % 500 + 3 for i in range(n)]
        st, b = s.json("/v1/completions", {"prompt": prompt, "max_tokens": 4, "temperature": 0})
        check(st == 200, "answered: %r" % (st if st != 200 else ""))
        if st == 200:
            check(b["usage"]["prompt_tokens"] == n, "prompt tokens %d" % b["usage"]["prompt_tokens"])
            check(b["usage"]["completion_tokens"] >= 1, "generated")
        hwm = 0
        for line in open("/proc/%d/status" % s.proc.pid):
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
        check(0 < hwm < 400 << 20, "peak RSS %.1f MB" % (hwm / 2**20))
        print("  32,760-token prompt: peak RSS %.1f MB" % (hwm / 2**20), file=sys.stderr)


if __name__ == "__main__":
    run_tests([test_q8_0_completions_equal_sov_run_and_prefix_cache, test_same_memory_holds_more_positions,
               test_bad_kv_type_is_refused, test_32k_token_prompt])
    finish()
