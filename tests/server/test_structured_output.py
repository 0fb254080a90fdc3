"""test_structured_output.py - response_format through `sov serve`: with the tiny
stories260K model (it knows nothing of JSON), 100 seeded samples at temperature 1.0
under a schema with nested objects, arrays with min/max items, enums, a date format and
regex patterns are all JSON
that validates, checked by an independent validator (Debian's python3-jsonschema,
Draft 2020-12); the same seeds without response_format are almost never JSON (so the
check can fail); json_object gives JSON objects; the chat endpoint and streaming too;
llama.cpp's GBNF `grammar` field; unsupported and malformed schemas and grammars get a 400
naming the problem."""
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverlib import Server, check, finish, run_tests, shared_model, sse_events

try:
    import jsonschema
except ImportError:  # scripts/deps.sh test installs python3-jsonschema
    if os.environ.get("SOV_REQUIRE_SHARED") == "1":
        print("FAIL: python3-jsonschema is missing (scripts/deps.sh test)", file=sys.stderr)
        sys.exit(1)
    print("SKIP: python3-jsonschema is missing (scripts/deps.sh test)", file=sys.stderr)
    sys.exit(77)

STORIES = shared_model("stories260K.gguf")

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "mood": {"enum": ["happy", "sad", "angry"]},
        "pet": {
            "type": "object",
            "properties": {
                "kind": {"enum": ["cat", "dog", "bird"]},
                "age": {"type": "integer", "minimum": 0, "maximum": 20},
                "born": {"type": "string", "format": "date"},
            },
            "required": ["kind", "age"],
            "additionalProperties": False,
        },
        "friends": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 8}, "close": {"type": "boolean"}},
                "required": ["name", "close"],
                "additionalProperties": False,
            },
            "minItems": 1,
            "maxItems": 3,
        },
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 4},
        "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"},
        "motto": {"type": "string", "pattern": "(cat|dog)s?"},
        "score": {"type": ["number", "null"]},
    },
    "required": ["name", "mood", "pet", "friends", "code"],
    "additionalProperties": False,
}
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

srv = None


def rf_schema(schema=SCHEMA, strict=True):
    return {"type": "json_schema", "json_schema": {"name": "story", "schema": schema, "strict": strict}}


def complete(seed, response_format=None, max_tokens=400, endpoint="/v1/completions", stream=False):
    body = {"temperature": 1.0, "seed": seed, "max_tokens": max_tokens, "top_k": 0, "top_p": 1.0, "min_p": 0.0}
    if endpoint == "/v1/completions":
        body["prompt"] = "Once upon a time"
    else:
        body["messages"] = [{"role": "user", "content": "Tell me about a girl and her pet."}]
    if response_format is not None:
        body["response_format"] = response_format
    if stream:
        body["stream"] = True
        st, _, raw = srv.post(endpoint, body)
        text, finish_reason = "", None
        for ev in sse_events(raw):
            if ev == "[DONE]":
                continue
            ch = json.loads(ev)["choices"]
            if ch:
                d = ch[0].get("delta", {}) if endpoint != "/v1/completions" else ch[0]
                text += d.get("content") or d.get("text") or ""
                finish_reason = ch[0].get("finish_reason") or finish_reason
        return st, text, finish_reason
    st, j = srv.json(endpoint, body)
    if st != 200:
        return st, j, None
    c = j["choices"][0]
    return st, c["message"]["content"] if "message" in c else c["text"], c["finish_reason"]


def parallel(n, fn, width=8):
    out = [None] * n
    nxt = [0]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= n:
                return
            out[i] = fn(i)

    ts = [threading.Thread(target=worker) for _ in range(width)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def validates(text):
    try:
        doc = json.loads(text)
    except ValueError as e:
        return "not JSON (%s): %r" % (e, text[:200])
    errs = sorted(VALIDATOR.iter_errors(doc), key=str)
    return "invalid: %s: %r" % (errs[0].message, text[:200]) if errs else None


def test_hundred_seeded_samples_validate():
    res = parallel(100, lambda i: complete(1000 + i, rf_schema()))
    valid, stops, problems = 0, 0, []
    for i, (st, text, fin) in enumerate(res):
        if st != 200:
            problems.append("seed %d: status %d %r" % (1000 + i, st, text))
            continue
        why = validates(text)
        if why is None and fin in ("stop", "length"):
            valid += 1
            stops += fin == "stop"
        else:
            problems.append("seed %d: finish %s, %s" % (1000 + i, fin, why))
    for p in problems[:5]:
        print("  " + p, file=sys.stderr)
    print("  %d/100 valid under the schema (%d ended by the model, the rest closed within max_tokens)"
          % (valid, stops), file=sys.stderr)
    check(valid == 100, "all 100 samples validate (%d did)" % valid)
    # the samples differ (it is sampling, not one forced document)
    distinct = len(set(r[1] for r in res if r[0] == 200))
    check(distinct >= 90, "samples differ (%d distinct)" % distinct)
    # the same seed gives the same document
    again = complete(1000, rf_schema())
    check(again[1] == res[0][1], "seeded output is reproducible")


def test_without_response_format_it_is_not_json():
    """The model alone does not write JSON: the constraint is what makes it valid."""
    res = parallel(20, lambda i: complete(1000 + i, None, max_tokens=60))
    parsed = 0
    for st, text, _ in res:
        try:
            json.loads(text)
            parsed += 1
        except ValueError:
            pass
    check(parsed == 0, "unconstrained samples that happen to parse: %d of 20" % parsed)


def test_json_object_and_chat_and_stream():
    res = parallel(20, lambda i: complete(2000 + i, {"type": "json_object"}, max_tokens=300))
    ok = 0
    for st, text, fin in res:
        try:
            ok += st == 200 and fin in ("stop", "length") and isinstance(json.loads(text), dict)
        except ValueError:
            print("  json_object: not JSON: %r" % text[:200], file=sys.stderr)
    check(ok == 20, "json_object: %d of 20 are JSON objects" % ok)
    res = parallel(10, lambda i: complete(3000 + i, rf_schema(strict=False), endpoint="/v1/chat/completions"))
    bad = [r for r in res if r[0] != 200 or validates(r[1]) is not None]
    check(not bad, "chat completions under the schema: %d bad (%r)" % (len(bad), bad[:1]))
    for endpoint in ("/v1/chat/completions", "/v1/completions"):
        st, text, fin = complete(4000, rf_schema(), endpoint=endpoint, stream=True)
        check(st == 200 and validates(text) is None,
              "%s streamed: %s %s %r" % (endpoint, st, fin, text[:200]))
        st2, text2, _ = complete(4000, rf_schema(), endpoint=endpoint)
        check(text2 == text, "%s: streamed text equals the non-streamed one" % endpoint)


GBNF = r"""# a greeting and a list of animals, all chosen by the grammar
root    ::= "Dear " name ", I saw " count " " animal "s: " list "."
name    ::= [A-Z] [a-z]{1,8}
count   ::= [2-9]
animal  ::= "cat" | "dog" | "bird"
list    ::= item (", " item){0,3}
item    ::= [a-z]{2,6}
"""
GBNF_RE = r"Dear [A-Z][a-z]{1,8}, I saw [2-9] (cat|dog|bird)s: [a-z]{2,6}(, [a-z]{2,6}){0,3}\."


def test_gbnf_grammar_field():
    """llama.cpp's `grammar` (GBNF): every sample is in the language (Python's re as the
    independent check)."""
    import re
    res = parallel(20, lambda i: complete_body(6000 + i, {"grammar": GBNF}))
    bad = [r for r in res if r[0] != 200 or not re.fullmatch(GBNF_RE, r[1].strip())]
    check(not bad, "GBNF samples outside the grammar: %d (%r)" % (len(bad), bad[:2]))


def complete_body(seed, extra, max_tokens=200):
    body = {"temperature": 1.0, "seed": seed, "max_tokens": max_tokens, "top_k": 0, "top_p": 1.0, "min_p": 0.0,
            "prompt": "Once upon a time"}
    body.update(extra)
    st, j = srv.json("/v1/completions", body)
    return (st, j["choices"][0]["text"], j["choices"][0]["finish_reason"]) if st == 200 else (st, j, None)


def test_short_max_tokens():
    """max_tokens below the shortest valid document: cut, finish_reason length (the
    text is then not valid, as with OpenAI); just enough: the shortest documents."""
    st, text, fin = complete(5, rf_schema(), max_tokens=3)
    check(st == 200 and fin == "length", "max_tokens 3: finish %r" % fin)
    shortest = len('{"name":"","mood":"sad","pet":{"kind":"cat","age":0},"friends":[{"name":"a","close":true}],'
                   '"code":"AA-000"}')
    for seed in range(5):
        st, text, fin = complete(seed, rf_schema(), max_tokens=shortest + 2)
        check(st == 200 and validates(text) is None, "max_tokens %d: %r" % (shortest + 2, text))


def error_of(body, endpoint="/v1/chat/completions"):
    base = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    base.update(body)
    st, j = srv.json(endpoint, base)
    msg = (j or {}).get("error", {}).get("message", "") if isinstance(j, dict) else ""
    return st, msg, (j or {}).get("error", {}).get("param") if isinstance(j, dict) else None


def test_bad_schemas_get_400_naming_the_problem():
    cases = [
        (rf_schema({"type": "string", "pattern": "^(?=a)"}), "'pattern'"),
        (rf_schema({"type": "object", "properties": {"a": {"not": {}}}}), "'not'"),
        (rf_schema({"type": "object", "properties": {"a": {"type": "array", "uniqueItems": True}}}), "uniqueItems"),
        (rf_schema({"type": "string", "format": "ipv4"}), "ipv4"),
        (rf_schema({"type": 5}), "'type'"),
        (rf_schema({"type": "strng"}), "strng"),
        (rf_schema({"$ref": "#/$defs/nope"}), "$ref"),
        (rf_schema({"type": "integer", "minimum": 10, "maximum": 1}), "bounds"),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "schema"),
        ({"type": "json_schema"}, "json_schema"),
        ({"type": "xml"}, "json_object"),
        ({"type": "json_schema", "json_schema": {"name": 3, "schema": {}}}, "name"),
    ]
    for rf, want in cases:
        for endpoint in ("/v1/chat/completions", "/v1/completions"):
            body = {"response_format": rf}
            if endpoint == "/v1/completions":
                body.update({"prompt": "x"})
            st, msg, param = error_of(body, endpoint)
            check(st == 400 and want in msg and "\n" not in msg and param and "response_format" in param,
                  "%s %s: %s %r (param %r)" % (endpoint, json.dumps(rf)[:80], st, msg, param))
    for g, want in (("root ::= foo", "'foo'"), ("root ::= [a-", "unclosed"), (5, "string")):
        st, msg, param = error_of({"grammar": g})
        check(st == 400 and want in msg and param == "grammar", "bad GBNF %r: %s %r" % (g, st, msg))
    st, msg, param = error_of({"grammar": 'root ::= "a"', "response_format": {"type": "json_object"}})
    check(st == 400 and "together" in msg, "grammar with response_format: %s %r" % (st, msg))
    # text is still accepted, and the server is healthy after all that
    st, _, _ = error_of({"response_format": {"type": "text"}})
    check(st == 200, "response_format text still works (%s)" % st)


def main():
    global srv
    with Server(STORIES, "--parallel", "8") as s:
        srv = s
        run_tests([
            test_hundred_seeded_samples_validate,
            test_without_response_format_it_is_not_json,
            test_json_object_and_chat_and_stream,
            test_short_max_tokens,
            test_gbnf_grammar_field,
            test_bad_schemas_get_400_naming_the_problem,
        ])
    finish()


if __name__ == "__main__":
    main()
