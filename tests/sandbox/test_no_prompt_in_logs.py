"""test_no_prompt_in_logs.py - nothing of a prompt or a completion reaches sov's own logs by
default. A server with a SQLite store is sent a distinctive marker through every place a
client can put text: completion and chat prompts (plain, streamed, with logprobs), a system
message, stop strings, the user field, a prompt longer than the context, malformed JSON,
an unknown model, an unknown path, a bad Authorization header and a key with a quota it
exceeds; then its whole log (stdout and stderr, start to shutdown) must hold neither the
marker nor any completion it returned. `sov run` likewise keeps prompt and output off
stderr (stdout is the output itself)."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
from serverlib import (SOV_BIN, TMP, Server, bearer, check, create_key, finish, run_tests, shared_model,
                       stream_text)

STORIES = shared_model("stories260K.gguf")
MARK = "Zebra%dQuokka" % os.getpid()  # a string nothing else prints


def test_server_logs_hold_no_prompt_or_completion():
    d = os.path.join(TMP, "logs-%d" % os.getpid())
    os.makedirs(d, exist_ok=True)
    db = os.path.join(d, "state.db")
    key, _ = create_key(db, "acme")
    tiny, _ = create_key(db, "tiny", "--tpm", "5")
    auth = bearer(key)
    outputs = []
    with Server(STORIES, "--db", db, "--ctx", "256") as s:
        def post(path, body, headers=auth):
            st, _, b = s.post(path, body, headers=headers)
            return st, b

        st, b = post("/v1/completions", {"prompt": "Once upon a time " + MARK, "max_tokens": 24, "temperature": 0,
                                         "user": MARK, "stop": [MARK], "logprobs": 2})
        check(st == 200, "completion (%d)" % st)
        outputs.append(json.loads(b)["choices"][0]["text"])
        st, b = post("/v1/chat/completions", {"messages": [{"role": "system", "content": "Be " + MARK},
                                                           {"role": "user", "content": "Tell " + MARK}],
                                              "max_tokens": 24, "temperature": 0})
        check(st == 200, "chat (%d)" % st)
        outputs.append(json.loads(b)["choices"][0]["message"]["content"])
        st, b = post("/v1/completions", {"prompt": MARK + " once", "max_tokens": 24, "stream": True,
                                         "temperature": 0})
        outputs.append(stream_text(b)[0])
        check(st == 200, "streamed (%d)" % st)
        check(post("/v1/completions", {"prompt": (MARK + " ") * 200, "max_tokens": 4})[0] == 400,
              "a prompt over the context is refused")
        check(post("/v1/completions", '{"prompt": "' + MARK + '", "max_tokens": }')[0] == 400, "malformed JSON")
        check(post("/v1/completions", {"prompt": "x", "model": MARK})[0] == 404, "unknown model")
        check(s.get("/v1/" + MARK, headers=auth)[0] == 404, "unknown path")
        check(post("/v1/completions", {"prompt": MARK}, headers={"Authorization": "Bearer " + MARK})[0] == 401,
              "bad key")
        check(post("/v1/completions", {"prompt": MARK + " and more words", "max_tokens": 8},
                   headers=bearer(tiny))[0] == 429, "over a quota")
    log = s.output()
    check(MARK not in log, "the marker never reaches the log:\n" + log)
    for text in outputs:
        check(len(text) >= 12, "a completion long enough to look for (%r)" % text)
        check(text.strip() not in log, "a completion never reaches the log: %r" % text)


def test_sov_run_keeps_text_off_stderr():
    r = subprocess.run([SOV_BIN, "run", "-m", STORIES, "-p", "Once upon a time " + MARK, "-n", "24", "--temp", "0",
                        "-t", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    out, err = r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
    check(r.returncode == 0 and MARK in out, "the prompt is echoed on stdout, the output itself")
    generated = out.split(MARK, 1)[-1].strip()
    check(len(generated) >= 12, "something was generated (%r)" % generated)
    check(MARK not in err and generated not in err, "stderr holds timings only:\n" + err)


def main():
    run_tests([test_server_logs_hold_no_prompt_or_completion, test_sov_run_keeps_text_off_stderr])
    finish()


if __name__ == "__main__":
    main()
