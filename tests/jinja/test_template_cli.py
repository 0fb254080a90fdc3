#!/usr/bin/env python3
"""test_template_cli.py - the chat template as users meet it:
`sov template render` (the model's own template from a vocabulary-only GGUF, or a file; prints
the prompt exactly, no newline added; one-line errors), `sov serve --chat-template-file`
(chat requests rendered by it: the prompt's token count is that of the rendered text; a
conversation the template rejects is a 400 carrying the template's message; a template that
does not compile stops the start) and `sov run --chat --chat-template-file`."""
import json
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "server"))
try:
    import jinja2  # noqa: F401
except ImportError:
    print("python3-jinja2 is not installed (scripts/deps.sh test); skipping")
    sys.exit(77)
import render_ref  # noqa: E402
import serverlib  # noqa: E402
from serverlib import check  # noqa: E402

SOV = serverlib.SOV_BIN
TMP = os.path.join(serverlib.TMP, "jinja_cli")
os.makedirs(TMP, exist_ok=True)
MSGS = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye ünïcödé"}]


def gguf_chat_template(path):
    """tokenizer.chat_template read straight from the GGUF header (independent of sov)."""
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    with open(path, "rb") as f:
        def rstr():
            n, = struct.unpack("<Q", f.read(8))
            return f.read(n)

        def skip(t):
            if t in sizes:
                f.read(sizes[t])
            elif t == 8:
                return rstr()
            elif t == 9:
                et, = struct.unpack("<I", f.read(4))
                n, = struct.unpack("<Q", f.read(8))
                if et in sizes:
                    f.read(sizes[et] * n)
                else:
                    for _ in range(n):
                        skip(et)
            return None
        assert f.read(4) == b"GGUF"
        f.read(4)
        _, nkv = struct.unpack("<QQ", f.read(16))
        for _ in range(nkv):
            k = rstr().decode()
            t, = struct.unpack("<I", f.read(4))
            v = skip(t)
            if k == "tokenizer.chat_template":
                return v.decode()
    return None


def write(name, obj):
    p = os.path.join(TMP, name)
    with open(p, "w", encoding="utf-8") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False))
    return p


def sov(*args, stdin=None):
    p = subprocess.run([SOV] + list(args), capture_output=True, input=stdin, timeout=120)
    return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8")


def test_render_model_template():
    vocab = serverlib.shared_model("vocab/ggml-vocab-gemma-4.gguf")
    src = gguf_chat_template(vocab)
    check(src is not None and "turn" in src, "gemma-4 vocab has a template")
    mp = write("m.json", MSGS)
    rc, out, err = sov("template", "render", "-m", vocab, "--messages", mp, "--bos", "<B>", "--eos", "<E>")
    want = render_ref.render(src, MSGS, None, "<B>", "<E>", True)
    check(rc == 0 and out == want, "render -m equals python3-jinja2 (rc %d, %r)" % (rc, err))
    check(not out.endswith("\n") or want.endswith("\n"), "no newline added")
    rc, out2, err = sov("template", "render", "-m", vocab, "--messages", mp)
    check(rc == 0 and out2.startswith("<bos>"), "BOS text from the vocabulary: %r" % out2[:20])
    rc, out3, _ = sov("template", "render", "-m", vocab, "--messages", mp, "--no-generation-prompt", "--bos", "<B>",
                      "--eos", "<E>")
    check(rc == 0 and out3 == render_ref.render(src, MSGS, None, "<B>", "<E>", False), "--no-generation-prompt")


def test_render_file_with_tools_and_vars():
    tmpl = os.path.join(HERE, "templates", "Qwen-Qwen3-0.6B.jinja")
    src = open(tmpl, encoding="utf-8").read()
    from conversations import TOOLS
    mp, tp = write("m2.json", MSGS[:2]), write("t.json", TOOLS)
    for var in ("true", "false"):
        rc, out, err = sov("template", "render", "--template", tmpl, "--messages", mp, "--tools", tp,
                           "--var", "enable_thinking=" + var)
        want = render_ref.render(src, MSGS[:2], TOOLS, None, None, True, {"enable_thinking": var == "true"})
        check(rc == 0 and out == want, "qwen3 tools + enable_thinking=%s (rc %d %s)" % (var, rc, err))
    rc, out, _ = sov("template", "render", "--template", tmpl, "--messages", "-", stdin=json.dumps(MSGS[:2]).encode())
    check(rc == 0 and out.startswith("<|im_start|>system"), "--messages - reads stdin")
    rc, out, _ = sov("template", "--help")
    check(rc == 0 and "--messages" in out, "--help")


def test_render_errors_are_one_line():
    tmpl = write("raise.jinja", "{% if messages|length > 1 %}{{ raise_exception('Only one message, please') }}"
                                "{% endif %}{{ messages[0].content }}")
    mp = write("m3.json", MSGS)
    cases = [
        (["--template", tmpl, "--messages", mp], "Only one message, please"),
        (["--template", tmpl, "--messages", write("bad.json", "[{\"role\": ")], "messages"),
        (["--template", write("broken.jinja", "x\n{% for m in messages %}"), "--messages", mp], "line 2"),
        (["--template", tmpl], "--messages"),
        (["--messages", mp], "exactly one"),
        (["--template", tmpl, "--messages", mp, "--var", "novalue"], "KEY=JSON"),
        (["--template", tmpl, "--messages", os.path.join(TMP, "does-not-exist.json")], "cannot read"),
        (["-m", os.path.join(TMP, "nope.gguf"), "--messages", mp], "nope.gguf"),
    ]
    for args, want in cases:
        rc, out, err = sov("template", "render", *args)
        lines = err.strip().splitlines()
        check(rc != 0 and len(lines) == 1 and want in err and out == "",
              "%s -> rc %d, one line with %r: %r" % (args, rc, want, err))


CHAT_TMPL = ("{% if messages|length > 3 %}{{ raise_exception('At most three messages') }}{% endif %}"
             "{{ bos_token }}{% for m in messages %}[{{ m.role|upper }}] {{ m.content|trim }}\n{% endfor %}"
             "{% if add_generation_prompt %}[ASSISTANT]{% endif %}")


def test_serve_uses_the_template_file():
    model = serverlib.shared_model("stories260K.gguf")
    tmpl = write("chat.jinja", CHAT_TMPL)
    msgs = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Once upon a time"}]
    with serverlib.Server(model, "--chat-template-file", tmpl) as srv:
        body = {"messages": msgs, "max_tokens": 4, "temperature": 0}
        st, j = srv.json("/v1/chat/completions", body)
        check(st == 200, "chat with the template: %d %r" % (st, j))
        prompt = render_ref.render(CHAT_TMPL, msgs, None, "", "", True)
        rc, ids, _ = sov("tokenize", "-m", model, "-p", prompt)
        n = len(ids.split())
        check(st == 200 and j["usage"]["prompt_tokens"] == n,
              "prompt tokens %s == tokens of the rendered text %d" % (j.get("usage"), n))
        body["messages"] = msgs + [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]
        st, j = srv.json("/v1/chat/completions", body)
        check(st == 400 and "At most three messages" in j["error"]["message"], "template rejection is a 400: %r" % j)
        check("chat template from" in srv.output(), "the log says which template")


def test_serve_refuses_a_broken_template_file():
    model = serverlib.shared_model("stories260K.gguf")
    bad = write("bad.jinja", "ok\n{% for m in messages %}{{ m.content }}")
    p = subprocess.run([SOV, "serve", "-m", model, "--port", "0", "--chat-template-file", bad],
                       capture_output=True, timeout=120)
    err = p.stderr.decode()
    check(p.returncode != 0 and "bad.jinja" in err and "line 2" in err and "endfor" in err,
          "broken template file stops the start: rc %d %r" % (p.returncode, err[-300:]))


def with_chat_template(src_gguf, dst, template):
    """A copy of a vocabulary-only GGUF (no tensors) whose tokenizer.chat_template is template."""
    with open(src_gguf, "rb") as f:
        data = f.read()
    out = bytearray(data[:24])
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    assert n_tensors == 0
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    pos = 24

    def skip(t, pos):
        if t in sizes:
            return pos + sizes[t]
        if t == 8:
            n, = struct.unpack_from("<Q", data, pos)
            return pos + 8 + n
        et, = struct.unpack_from("<I", data, pos)
        n, = struct.unpack_from("<Q", data, pos + 4)
        pos += 12
        for _ in range(n):
            pos = skip(et, pos)
        return pos
    for _ in range(n_kv):
        start = pos
        kl, = struct.unpack_from("<Q", data, pos)
        key = data[pos + 8:pos + 8 + kl].decode()
        t, = struct.unpack_from("<I", data, pos + 8 + kl)
        end = skip(t, pos + 12 + kl)
        if key == "tokenizer.chat_template":
            v = template.encode()
            out += data[start:pos + 12 + kl] + struct.pack("<Q", len(v)) + v
        else:
            out += data[start:end]
        pos = end
    with open(dst, "wb") as f:
        f.write(out)
    return dst


def test_serve_uses_the_models_own_template():
    vocab = serverlib.shared_model("vocab/ggml-vocab-phi-3.gguf")
    src = gguf_chat_template(vocab)
    model = serverlib.synthetic_model("jinja-phi3.gguf", "--dim", "64", "--layers", "2", "--heads", "4",
                                      "--kv-heads", "2", "--ffn", "128", "--vocab-from", vocab)
    msgs = [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "Tell me more"}]
    with serverlib.Server(model, "--ctx", "256") as srv:
        st, j = srv.json("/v1/chat/completions", {"messages": msgs, "max_tokens": 2, "temperature": 0})
        check(st == 200, "chat with the model's template: %d %r" % (st, j))
        # the template writes {{ bos_token }} first; tokenization adds BOS, so the text is rendered
        # without it and tokenized with it: BOS once
        prompt = render_ref.render(src, msgs, None, "", "</s>", True)
        rc, ids, _ = sov("tokenize", "-m", model, "-p", prompt)
        check(st == 200 and j["usage"]["prompt_tokens"] == len(ids.split()),
              "prompt tokens %s == tokens of the phi-3 rendering %d" % (j.get("usage"), len(ids.split())))
        check("the model's own" in srv.output(), "the log says the model's own template is used")
    broken_vocab = with_chat_template(vocab, os.path.join(TMP, "phi3-broken-template.gguf"),
                                      "{% for message in messages %}<|user|>{{ message.content }}")
    broken = serverlib.synthetic_model("jinja-phi3-broken.gguf", "--dim", "64", "--layers", "2", "--heads", "4",
                                       "--kv-heads", "2", "--ffn", "128", "--vocab-from", broken_vocab)
    with serverlib.Server(broken, "--ctx", "256") as srv:
        st, j = srv.json("/v1/chat/completions", {"messages": msgs[:1], "max_tokens": 2, "temperature": 0})
        check(st == 200, "a model with a broken template still serves chats (fallback): %d" % st)
        log = srv.output()
        check("warning: the model's chat template cannot be loaded" in log and "endfor" in log and
              "built-in" in log, "the fallback is said in the log: %r" % log[-400:])


def test_run_chat_with_template_file():
    model = serverlib.shared_model("stories260K.gguf")
    tmpl = write("chat2.jinja", CHAT_TMPL)
    rc, out, err = sov("run", "-m", model, "--chat", "--chat-template-file", tmpl, "-p", "Hello", "-n", "4",
                       "--temp", "0")
    check(rc == 0 and "chat template from" in err, "sov run --chat --chat-template-file: rc %d %r" % (rc, err[-300:]))
    bad = write("raise2.jinja", "{{ raise_exception('no chatting today') }}")
    rc, out, err = sov("run", "-m", model, "--chat", "--chat-template-file", bad, "-p", "Hello", "-n", "4")
    check(rc != 0 and "no chatting today" in err, "a template error ends sov run: %r" % err[-300:])


if __name__ == "__main__":
    serverlib.run_tests([test_render_model_template, test_render_file_with_tools_and_vars,
                         test_render_errors_are_one_line, test_serve_uses_the_template_file,
                         test_serve_uses_the_models_own_template,
                         test_serve_refuses_a_broken_template_file, test_run_chat_with_template_file])
    serverlib.finish()
