#!/usr/bin/env python3
"""test_snippets.py - small templates, one language feature each (filters, tests, operators,
scoping, whitespace control, Undefined, the sandbox's refusals), rendered by sov's
interpreter and by python3-jinja2 in Hugging Face's environment: equal bytes, or an error
in both. The corpus test covers whole templates; this one pins the edge cases."""
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

TOOLS_DIR = os.environ.get("SOV_TOOLS_DIR", os.path.join(HERE, "../../build/tests/tools"))
MSGS = [{"role": "system", "content": "  Be brief.  "}, {"role": "user", "content": "Héllo, \"world\"\n<b>"},
        {"role": "assistant", "content": "Hi!", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1, "b": [1.5, None, True]}}}]}]
VARS = {"n": 7, "f": 2.5, "s": "Hello World", "l": [3, 1, 2], "d": {"b": 1, "a": 2}, "e": "", "z": 0, "none": None,
        "big": 10 ** 15, "neg": -7, "words": "the quick  brown\tfox", "u": "ünïcödé 😀"}

SNIPPETS = [
    # output and literals
    "{{ 1 }}{{ -1 }}{{ 1.0 }}{{ 1.5e3 }}{{ 0.1 + 0.2 }}{{ 1e-7 }}{{ 1e16 }}{{ 123456789.125 }}{{ True }}{{ none }}{{ None }}",
    "{{ 'a' 'b' }}{{ \"q'\" }}{{ 'x\\ny\\tz\\\\' }}{{ '\\u00e9\\x41' }}",
    "{{ [1, 'a', none, true, 2.5] }}{{ (1,) }}{{ (1, 2) }}{{ () }}{{ {'a': 1, 'b': [none]} }}{{ {} }}",
    "{{ messages[0] }}|{{ messages[2].tool_calls[0].function.arguments }}",
    "{{ \"it's\" }}{{ ['it\\'s', 'a\"b', \"both'\\\"\"] }}",
    # arithmetic
    "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7 / 2 }} {{ 6 / 2 }}",
    "{{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 1 + 2.0 }} {{ true + 1 }} {{ 'ab' * 3 }} {{ [1] * 2 }} {{ 3 * 'x' }}",
    "{{ 1 / 0 }}", "{{ 1 // 0 }}", "{{ 'a' + 1 }}", "{{ 'a' - 'b' }}", "{{ [1] + [2, 3] }}", "{{ 'a' ~ 1 ~ none ~ true ~ [1] }}",
    "{{ n > 5 and s or 'no' }}|{{ z or e or 'last' }}|{{ not n }}|{{ not e }}",
    "{{ 1 < 2 < 3 }}{{ 3 > 2 > 5 }}{{ 'a' < 'b' }}{{ [1, 2] < [1, 3] }}{{ 1 == 1.0 }}{{ true == 1 }}{{ 'a' != 'a' }}",
    "{{ 1 < 'a' }}", "{{ undefined_thing < 1 }}",
    "{{ 'ell' in s }}{{ 'x' not in s }}{{ 2 in l }}{{ 'a' in d }}{{ 'q' in undefined_thing }}",
    "{{ 1 in 'abc' }}",
    "{{ 'yes' if n else 'no' }}|{{ 'yes' if z }}|{{ ('a' if z else 'b') ~ 'c' }}",
    # undefined
    "[{{ nope }}]{{ nope is defined }}{{ nope is undefined }}{{ nope|default('dflt') }}{{ none|default('x') }}{{ e|default('y', true) }}",
    "{{ nope.attr }}", "{{ nope['x'] }}", "{{ nope() }}", "{{ nope + 1 }}", "{{ d.missing }}|{{ d.missing is defined }}",
    "{{ d.missing.deeper }}", "{{ none.attr }}|{{ (none.attr) is defined }}",
    "{% for x in nope %}{{ x }}{% else %}empty{% endfor %}{{ nope|length }}{{ nope|list }}{{ nope ~ 'x' }}{{ nope == nope }}",
    "{{ nope|tojson }}", "{{ nope is iterable }}{{ nope is sequence }}{{ nope is mapping }}{{ nope is none }}",
    "{{ messages[10] }}|{{ l[-1] }}{{ l[-4] }}|{{ s[0] }}{{ s[-1] }}{{ u[1] }}",
    # slicing
    "{{ l[1:] }}{{ l[:-1] }}{{ l[::-1] }}{{ l[::2] }}{{ s[2:5] }}{{ s[::-1] }}{{ u[:3] }}{{ u[::-1] }}{{ l[5:] }}{{ s[-3:] }}",
    "{{ l[::0] }}", "{{ 1_000_000 }}{{ 12345678901234567890123456789012345678901234567890.5e-30 }}{{ 9223372036854775807 }}", "{{ l[1::9223372036854775807] }}{{ s[2::9223372036854775807] }}{{ l[::-9223372036854775807] }}",
    "{{ range(1, 9223372036854775807, 4611686018427387904)|list }}{{ l[-9223372036854775807 - 1:] }}",
    # strings
    "{{ s.upper() }}{{ s.lower() }}{{ s.startswith('He') }}{{ s.endswith(('x', 'ld')) }}{{ s.replace('l', 'L') }}{{ s.replace('l', 'L', 2) }}",
    "{{ words.split() }}{{ words.split(' ') }}{{ s.split('o', 1) }}{{ s.rsplit('o', 1) }}{{ words.rsplit(none, 1) }}{{ 'a,b,,c'.split(',') }}",
    "[{{ '  x y  '.strip() }}][{{ 'xxhixx'.strip('x') }}][{{ '  a'.lstrip() }}][{{ 'a\\n\\n'.rstrip() }}][{{ 'ab'.rstrip('b') }}]",
    "{{ 'hello world-foo'.title() }}|{{ 'hello world-foo'|title }}|{{ 'hELLO'|capitalize }}|{{ \"they're bill's\".title() }}",
    "{{ s.find('o') }}{{ s.rfind('o') }}{{ s.find('zz') }}{{ s.count('l') }}{{ '-'.join(['a', 'b']) }}{{ u.find('c') }}",
    "{{ 'a{}b{}'.format(1, 'x') }}{{ '{0}-{0}'.format(5) }}{{ '{name}!'.format(name='n') }}",
    "{{ '%s'|format(1) }}",
    "{{ s|length }}{{ u|length }}{{ l|length }}{{ d|length }}{{ l|count }}",
    "{{ '  pad  '|trim }}|{{ 'xxpadxx'|trim('x') }}|{{ s|upper }}{{ s|lower }}{{ s|replace('o', '0') }}{{ s|string }}{{ 5|string }}",
    "{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(width=3, blank=true) }}|{{ 'x'|indent('> ', first=true) }}",
    "{{ '<a href=\"x\">&'|e }}{{ '<b>'|safe }}{{ 'x'|safe + '<y>' }}{{ '<y>' + 'x'|safe }}{{ ('a'|safe) ~ '<' }}",
    "{{ s|wordcount }}{{ 'ab'|center(6) }}|",
    # numbers
    "{{ '42'|int }}{{ ' 7 '|int }}{{ '3.9'|int }}{{ 'x'|int }}{{ 'x'|int(5) }}{{ 3.9|int }}{{ -3.9|int }}{{ true|int }}{{ none|int }}",
    "{{ '2.5'|float }}{{ 2|float }}{{ 'nan'|float }}{{ 'x'|float }}{{ -5|abs }}{{ -2.5|abs }}",
    "{{ 2.5|round }}{{ 3.5|round }}{{ 2.675|round(2) }}{{ 1.234|round(1, 'floor') }}{{ 1.21|round(1, 'ceil') }}{{ 7|round }}",
    # lists and dicts
    "{{ l|first }}{{ l|last }}{{ s|first }}{{ s|last }}{{ d|first }}{{ []|first }}{{ l|join }}{{ l|join(', ') }}{{ messages|join('|', attribute='role') }}",
    "{{ l|sort }}{{ l|sort(reverse=true) }}{{ ['b', 'A', 'c']|sort }}{{ ['b', 'A', 'c']|sort(case_sensitive=true) }}{{ messages|sort(attribute='role')|map(attribute='role')|list }}",
    "{{ [('b', 1), ('a', 2), ('b', 3), ('a', 4), ('c', 0)]|sort(attribute='0', reverse=true) }}{{ [3, 1, 2, 1, 3]|sort }}",
    "{{ 'a-b-a-b'.replace('-', '+', 2) }}{{ 'abcabc'.replace('bc', '') }}{{ 'aaaa'.count('aa') }}{{ 'aaa'.rsplit('aa') }}{{ 'aaa'.split('aa') }}{{ 'abab'.rfind('ab') }}{{ 'xyz'.find('') }}",
    "{{ d|dictsort }}{{ d|dictsort(by='value') }}{{ d|dictsort(reverse=true) }}{{ d.items()|list }}{{ d|items|list }}{{ d.keys()|list }}{{ d.values()|list }}",
    "{{ d.get('a') }}{{ d.get('zz') }}{{ d.get('zz', 9) }}{{ d['a'] }}{{ d.a }}{{ {'items': 5}['items'] }}",
    "{{ [1, 2, 1, 'a', 'A']|unique|list }}{{ l|reverse|list }}{{ s|reverse }}{{ l|list }}{{ s|list }}{{ d|list }}",
    "{{ l|max }}{{ l|min }}{{ l|sum }}{{ messages|map(attribute='role')|join(',') }}{{ ['a', 'b']|map('upper')|list }}",
    "{{ messages|selectattr('role', 'equalto', 'user')|list|length }}{{ messages|rejectattr('role', 'eq', 'user')|map(attribute='role')|list }}",
    "{{ messages|selectattr('tool_calls')|list|length }}{{ messages|selectattr('tool_calls', 'defined')|list|length }}{{ l|select('odd')|list }}{{ l|reject('even')|list }}",
    "{{ messages|selectattr('role', 'eq', 'user')|length }}", "{{ messages|selectattr('role')|last }}",
    "{% if messages|selectattr('role', 'eq', 'nobody') %}truthy-generator{% endif %}{{ none|selectattr('x')|list }}",
    "{{ messages|map(attribute='tool_calls.0.function.name')|list }}{{ messages|map(attribute='nope', default='-')|list }}",
    "{{ [1, 2, 3, 4, 5]|batch(2)|list }}{{ [1, 2, 3]|batch(2, 'x')|list }}",
    "{{ l|tojson }}{{ d|tojson }}{{ messages|tojson }}{{ u|tojson }}{{ 'a\"b\\\\c\\n\\u0001\\u007f'|tojson }}",
    "{{ d|tojson(indent=2) }}|{{ messages[2]|tojson(indent=4) }}|{{ []|tojson(indent=2) }}{{ {}|tojson(indent=2) }}",
    "{{ d|tojson(sort_keys=true) }}{{ u|tojson(ensure_ascii=true) }}{{ d|tojson(separators=(',', ':')) }}{{ (1, 2)|tojson }}",
    "{{ f|tojson }}{{ 1e100|tojson }}{{ 0.1|tojson }}{{ -0.0|tojson }}{{ big|tojson }}{{ none|tojson }}{{ true|tojson }}",
    # tests
    "{{ n is number }}{{ f is number }}{{ true is number }}{{ n is integer }}{{ true is integer }}{{ f is float }}{{ s is string }}{{ l is sequence }}{{ d is mapping }}{{ l is mapping }}",
    "{{ n is odd }}{{ n is even }}{{ n is divisibleby 7 }}{{ n is divisibleby(3) }}{{ none is none }}{{ e is none }}{{ true is true }}{{ 1 is true }}{{ false is false }}{{ true is boolean }}",
    "{{ s is lower }}{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ n is eq 7 }}{{ n is ne 7 }}{{ n is gt 3 }}{{ n is lt 3 }}{{ 2 is in l }}{{ n is not none }}{{ s is not string }}",
    "{{ range is callable }}{{ s is iterable }}{{ n is iterable }}{{ 'upper' is filter }}{{ 'odd' is test }}{{ n is sameas 7 }}",
    "{{ s.upper is callable }}",
    # control flow
    "{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem is defined }}{{ loop.nextitem.role if loop.nextitem is defined }},{% endfor %}",
    "{% for m in messages if m.role != 'system' %}{{ loop.index }}/{{ loop.length }}{{ m.role }}{{ loop.cycle('a', 'b') }} {% endfor %}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in d|dictsort %}{{ k }}{{ v }}{% endfor %}{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}",
    "{% for i in range(3) %}{% for j in range(2) %}{{ loop.depth }}{{ i }}{{ j }}{% if j == 0 %}{% continue %}{% endif %}|{% endfor %}{% if i == 1 %}{% break %}{% endif %}{% endfor %}",
    "{% for x in [] %}x{% else %}none{% endfor %}{% for c in 'ab' %}{{ c }}{% endfor %}{% for k in d %}{{ k }}{% endfor %}",
    "{% for a, b in [1, 2] %}{% endfor %}",
    "{{ range(5)|list }}{{ range(2, 5)|list }}{{ range(10, 0, -3)|list }}{{ range(0)|list }}",
    "{{ range(100001)|length }}", "{{ range(1, 2, 0) }}",
    "{% if n == 1 %}one{% elif n == 7 %}seven{% elif n == 8 %}eight{% else %}other{% endif %}",
    # scoping
    "{% set x = 0 %}{% for i in range(3) %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}",
    "{% set ns = namespace(x=0, items=[]) %}{% for i in range(4) %}{% set ns.x = ns.x + i %}{% set ns.items = ns.items + [i] %}{% endfor %}{{ ns.x }}{{ ns.items }}",
    "{% set ns = namespace() %}{% set ns.flag = true %}{{ ns.flag }}{{ ns.missing is defined }}",
    "{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}",
    "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = (3, 4) %}{% set c, e2 = t %}{{ c + e2 }}",
    "{% set x %}block {{ n }}{% endset %}[{{ x }}]{% set y | upper %}shout{% endset %}{{ y }}",
    "{% set l2 = [] %}{{ l2.append(1) }}", "{% set d2 = {} %}{{ d2.update({'a': 1}) }}", "{% set x = 1 %}{% set x.y = 2 %}",
    "{{ dict(a=1, b='x') }}{{ dict(d, c=3) }}{{ namespace(a=1).a }}",
    # macros and call
    "{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('Bob') }}{{ greet('Al', punct='?') }}{{ greet() }}",
    "{% macro outer() %}[{{ caller() }}]{% endmacro %}{% call outer() %}inside {{ n }}{% endcall %}",
    "{% macro m(x) %}{{ x }}{{ n }}{% endmacro %}{% set n = 9 %}{{ m(1) }}",
    "{% macro rec(k) %}{{ k }}{% if k > 0 %}{{ rec(k - 1) }}{% endif %}{% endmacro %}{{ rec(5) }}",
    "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}", "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(b=2) }}",
    "{% filter upper %}shout {{ s }}{% endfilter %}",
    # whitespace control
    "a\n  {% if true %}\n  b\n  {% endif %}\nc\n",
    "a  {%- if true -%}  b  {%- endif -%}  c",
    "x\n    {{ 'v' }}\n    {%+ if true %}y{% endif %}\n  {# comment #}\nz",
    "{% for i in range(2) %}\n  {{ i }}\n{% endfor %}\n",
    "{%- for m in messages -%}\n    {{- m.role -}}\n{%- endfor -%}",
    "a {# c #} b\n{#- c -#}\n c {{- ' d ' -}} e",
    "line1\r\nline2\r\n{% if true %}\r\nx\r\n{% endif %}\r\n",
    "{% raw %}{{ not evaluated }}{% endraw %}{% raw -%}  x  {%- endraw %}",
    "trailing newline kept?\n\n",
    "{{ 'no close' ", "{% if true %}unterminated", "{% endif %}", "{% for %}", "{{ a b }}", "{% include 'x' %}", "{{ x|nosuchfilter }}",
    "{% if false %}{{ x|nosuchfilter }}{% endif %}ok", "{% if true %}{{ x|nosuchfilter }}{% endif %}", "{{ x is nosuchtest }}",
    "{{ raise_exception('boom') }}", "{% if messages|length > 1 %}{{ raise_exception('Only one message allowed') }}{% endif %}",
    "{{ strftime_now('%Y-%m-%d %d %b %Y') }}", "{{ 'x' ~ }}", "{# unterminated comment", "{{ [1, 2 }}",
]


def main():
    now = 1764763200
    jobs, wants = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, src in enumerate(SNIPPETS):
            path = os.path.join(tmp, "s%03d.jinja" % i)
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(src)
            jobs.append({"template": path, "messages": MSGS, "tools": None, "add_generation_prompt": True,
                         "bos": "<s>", "eos": "</s>", "vars": VARS, "now": now})
            try:
                wants.append((render_ref.render(src, MSGS, None, "<s>", "</s>", True, VARS, now), None))
            except Exception as e:  # noqa: BLE001
                wants.append((None, "%s: %s" % (type(e).__name__, e)))
        p = subprocess.run([os.path.join(TOOLS_DIR, "jinja_batch")], input=json.dumps(jobs).encode(),
                           capture_output=True, timeout=120)
    if p.returncode != 0:
        print("jinja_batch failed: %s" % p.stderr.decode(errors="replace"))
        return 1
    results = json.loads(p.stdout)
    bad = 0
    for src, (want, err), got in zip(SNIPPETS, wants, results):
        if err is not None:
            ok = not got["ok"] and "line " in got["error"]
        else:
            ok = got["ok"] and got["out"] == want
        if not ok:
            bad += 1
            print("FAIL %r\n  python: %r\n  sov:    %r" % (src, want if err is None else "ERROR " + err,
                                                          got.get("out") if got["ok"] else "ERROR " + got["error"]))
    print("jinja snippets: %d/%d agree with python3-jinja2 (%d are errors in Python)"
          % (len(SNIPPETS) - bad, len(SNIPPETS), sum(1 for w in wants if w[1])))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
