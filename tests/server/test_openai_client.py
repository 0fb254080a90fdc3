"""test_openai_client.py - `sov serve` driven by the official OpenAI client library (npm
`openai`, installed into tests/server/js by `make test`'s dependency step): models, plain
and streamed completions and chat, many requests at once, logprobs, seeds and the typed
errors the client raises. Greedy output must equal `sov run --temp 0` on the same prompt,
alone or among concurrent requests."""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverlib import Server, check, finish, shared_model, sov_run

HERE = os.path.dirname(os.path.abspath(__file__))
JS = os.path.join(HERE, "js")
STORIES = shared_model("stories260K.gguf")
PROMPTS = ["Once upon a time", "The little dog", "Tom and Lily went to the park", "One day, a big bird"]


def main():
    node = shutil.which("node")
    if not node or not os.path.isdir(os.path.join(JS, "node_modules", "openai")):
        msg = "node or the npm package openai is missing (run: scripts/deps.sh test, or npm ci --prefix %s)" % JS
        if os.environ.get("SOV_REQUIRE_SHARED") == "1":
            print("FAIL: " + msg, file=sys.stderr)
            sys.exit(1)
        print("SKIP: " + msg, file=sys.stderr)
        sys.exit(77)
    with Server(STORIES, "-np", "8", "--ctx", "256") as s:
        r = subprocess.run([node, os.path.join(JS, "openai_client.mjs"), "http://%s:%d/v1" % (s.host, s.port),
                            "stories260K", json.dumps(PROMPTS)], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            check(False, "the client failed: %s" % r.stderr[-2000:])
            finish()
        out = json.loads(r.stdout)
    want = [sov_run(STORIES, p, 32, "--ignore-eos") for p in PROMPTS]
    check(out["models"] == ["stories260K"] and out["model"] == "stories260K", "models: %r" % out["models"])
    for i, p in enumerate(PROMPTS):
        a, b = out["plain"][i], out["streamed"][i]
        check(a["text"] == want[i], "completion of %r equals sov run:\n  %r\n  %r" % (p, a["text"], want[i]))
        check(a["finish"] == "length" and a["usage"]["completion_tokens"] == 32 and a["object"] == "text_completion",
              "completion shape %r" % a)
        check(b["text"] == want[i] and b["finish"] == "length", "streamed completion of %r equals sov run" % p)
        check(b["usage"] and b["usage"]["completion_tokens"] == 32 and
              b["usage"]["prompt_tokens"] == a["usage"]["prompt_tokens"], "stream usage %r" % b["usage"])
    for i, c in enumerate(out["concurrent"]):
        check(c["text"] == want[i % len(PROMPTS)], "concurrent request %d equals sov run: %r" % (i, c["text"]))
    c, cs = out["chat"], out["chat_streamed"]
    check(c["role"] == "assistant" and c["object"] == "chat.completion" and c["usage"]["completion_tokens"] >= 1,
          "chat shape %r" % c)
    check(cs["text"] == c["text"] and cs["role"] == "assistant" and cs["finish"] == c["finish"],
          "streamed chat equals plain chat: %r / %r" % (cs["text"], c["text"]))
    check(len(out["logprobs"]) >= 1 and all(t["top"] == 3 and t["logprob"] <= 0 for t in out["logprobs"]),
          "logprobs with 3 alternatives: %r" % out["logprobs"])
    check(out["seeded"][0] == out["seeded"][1], "same seed, same text: %r" % out["seeded"])
    e = out["errors"]
    check(e["unknown_model"] and e["unknown_model"]["status"] == 404 and e["unknown_model"]["name"] == "NotFoundError",
          "unknown model: %r" % e["unknown_model"])
    for k in ("n_two", "no_messages", "bad_temperature"):
        check(e[k] and e[k]["status"] == 400 and e[k]["name"] == "BadRequestError", "%s: %r" % (k, e[k]))
    finish()


if __name__ == "__main__":
    main()
