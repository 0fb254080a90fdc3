#!/usr/bin/env python3
"""render_ref.py - the reference renderer: python3-jinja2 in Hugging Face's chat-template
environment, as transformers' chat_template_utils._compile_jinja_template builds it:
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
(+ HF's AssistantTracker, whose {% generation %} block renders its body)), `tojson` as
json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False),
raise_exception() and strftime_now() as globals. Render variables as HF passes them:
messages, tools (None when not given), documents=None, add_generation_prompt, then the
special tokens and extra kwargs.

Usage as a program (mirrors `sov template render`):
  render_ref.py --template FILE --messages FILE [--tools FILE] [--bos T] [--eos T]
                [--no-generation-prompt] [--var KEY=JSON]... [--now UNIXTIME]
Prints the prompt (no newline added); on a template error prints "ERROR: ..." to stderr, exit 1.
"""
import argparse
import datetime
import json
import sys

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment


class AssistantTracker(Extension):
    """HF's {% generation %} ... {% endgeneration %}: renders the body unchanged."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env(now=None):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        t = datetime.datetime.fromtimestamp(now, datetime.timezone.utc) if now else datetime.datetime.now(datetime.timezone.utc)
        return t.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def compile_template(source, now=None):
    """A compiled template (raises when Jinja cannot compile it)."""
    return make_env(now).from_string(source)


def render(source, messages, tools=None, bos=None, eos=None, add_generation_prompt=True, extra=None, now=None):
    """The prompt text; raises on template errors (compile or render). source may be a
    compiled template."""
    tmpl = compile_template(source, now) if isinstance(source, str) else source
    kw = {}
    if bos is not None:
        kw["bos_token"] = bos
    if eos is not None:
        kw["eos_token"] = eos
    kw.update(extra or {})
    return tmpl.render(messages=messages, tools=tools, documents=None,
                       add_generation_prompt=add_generation_prompt, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--template", required=True)
    ap.add_argument("--messages", required=True)
    ap.add_argument("--tools")
    ap.add_argument("--bos")
    ap.add_argument("--eos")
    ap.add_argument("--no-generation-prompt", action="store_true")
    ap.add_argument("--var", action="append", default=[])
    ap.add_argument("--now", type=int)
    a = ap.parse_args()
    src = open(a.template, encoding="utf-8").read()
    msgs = json.load(open(a.messages, encoding="utf-8"))
    tools = json.load(open(a.tools, encoding="utf-8")) if a.tools else None
    extra = {}
    for v in a.var:
        k, _, j = v.partition("=")
        extra[k] = json.loads(j)
    try:
        out = render(src, msgs, tools, a.bos, a.eos, not a.no_generation_prompt, extra, a.now)
    except Exception as e:  # noqa: BLE001 - any template failure is the answer
        print("ERROR: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 1
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
