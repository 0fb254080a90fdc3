"""test_tools.py - tool calls and reasoning through `sov serve` with real chat templates
(tests/jinja/templates): Qwen2.5's (Hermes <tool_call> syntax) and DeepSeek R1's (<think>
opened by the generation prompt) on the tiny stories260K model.

stories260K knows nothing of tools, so what it writes freely is not a call; tool_choice
"required" or a named tool makes it write one anyway, in the template's own syntax, with
arguments generated under the tool's parameters schema - and the server takes the reply
apart as it would a real model's: message.tool_calls (ids, names, arguments as JSON text
that validates against the schema, checked with python3-jsonschema), content null,
finish_reason "tool_calls", streamed as OpenAI streams them. A conversation carrying the
calls and their results renders through the template (the prompt grows by them), and a
template that opens <think> sends the reply to reasoning_content."""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverlib import Server, check, finish, run_tests, shared_model, sse_events

try:
    import jsonschema
except ImportError:
    if os.environ.get("SOV_REQUIRE_SHARED") == "1":
        print("FAIL: python3-jsonschema is missing (scripts/deps.sh test)", file=sys.stderr)
        sys.exit(1)
    print("SKIP: python3-jsonschema is missing (scripts/deps.sh test)", file=sys.stderr)
    sys.exit(77)

STORIES = shared_model("stories260K.gguf")
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "jinja", "templates")
QWEN = os.path.join(TEMPLATES, "Qwen-Qwen2.5-7B-Instruct.jinja")
R1 = os.path.join(TEMPLATES, "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja")

WEATHER = {"type": "object",
           "properties": {"city": {"type": "string", "maxLength": 16},
                          "unit": {"enum": ["celsius", "fahrenheit"]},
                          "days": {"type": "integer", "minimum": 1, "maximum": 7}},
           "required": ["city", "unit"], "additionalProperties": False}
TIME = {"type": "object", "properties": {"zone": {"enum": ["Asia/Seoul", "UTC"]}}, "required": ["zone"],
        "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "get_time", "description": "The time", "parameters": TIME}}]
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
ASK = [{"role": "user", "content": "What is the weather in Seoul?"}]


def chat(s, body):
    st, _, b = s.post("/v1/chat/completions", body)
    return st, json.loads(b) if b else None


def valid_call(call, want_name=None):
    fn = call.get("function", {})
    name = fn.get("name")
    ok = call.get("type") == "function" and call.get("id", "").startswith("call_") and name in SCHEMAS
    if want_name:
        ok = ok and name == want_name
    try:
        args = json.loads(fn.get("arguments", ""))
        jsonschema.validate(args, SCHEMAS.get(name, {}))
    except Exception as e:  # not JSON, or not valid under the schema
        return False, "%r: %s" % (fn.get("arguments"), e)
    return ok, name


def test_required_calls_validate():
    with Server(STORIES, "--chat-template-file", QWEN) as s:
        names = set()
        for seed in range(20):
            st, j = chat(s, {"messages": ASK, "tools": TOOLS, "tool_choice": "required", "temperature": 1.0,
                             "seed": seed, "max_tokens": 200})
            choice = j["choices"][0] if st == 200 else {}
            msg = choice.get("message", {})
            calls = msg.get("tool_calls") or []
            check(st == 200 and len(calls) == 1, "seed %d: one call (%d %r)" % (seed, st, j))
            if calls:
                ok, what = valid_call(calls[0])
                check(ok, "seed %d: the call validates: %s" % (seed, what))
                names.add(calls[0]["function"]["name"])
            check(msg.get("content") is None and choice.get("finish_reason") == "tool_calls",
                  "seed %d: content null, finish_reason tool_calls: %r" % (seed, choice))
        check(names == {"get_weather", "get_time"}, "required lets the model pick either tool: %r" % names)
    check("tool calls in hermes syntax" in s.output(), "start-up names the call syntax")


def test_named_tool_and_free_choice():
    with Server(STORIES, "--chat-template-file", QWEN) as s:
        for seed in range(5):
            st, j = chat(s, {"messages": ASK, "tools": TOOLS, "seed": seed, "temperature": 1.0, "max_tokens": 200,
                             "tool_choice": {"type": "function", "function": {"name": "get_time"}}})
            calls = j["choices"][0]["message"].get("tool_calls") or [] if st == 200 else []
            ok, what = valid_call(calls[0], "get_time") if calls else (False, "no call")
            check(st == 200 and len(calls) == 1 and ok, "named tool, seed %d: %s" % (seed, what))
        # auto: the tiny model writes text, which stays content
        st, j = chat(s, {"messages": ASK, "tools": TOOLS, "temperature": 0, "max_tokens": 16})
        msg = j["choices"][0]["message"] if st == 200 else {}
        check(st == 200 and isinstance(msg.get("content"), str) and not msg.get("tool_calls"),
              "auto: text stays content: %r" % msg)
        # none: the tools are not shown to the model, so the prompt is the plain chat's
        st, j_none = chat(s, {"messages": ASK, "tools": TOOLS, "tool_choice": "none", "max_tokens": 1})
        st2, j_plain = chat(s, {"messages": ASK, "max_tokens": 1})
        st3, j_tools = chat(s, {"messages": ASK, "tools": TOOLS, "max_tokens": 1})
        p_none, p_plain, p_tools = (x["usage"]["prompt_tokens"] for x in (j_none, j_plain, j_tools))
        check(p_none == p_plain < p_tools, "tool_choice none renders no tools (%d %d %d)" % (p_none, p_plain, p_tools))
        # forcing a call and a response_format at once is refused
        st, j = chat(s, {"messages": ASK, "tools": TOOLS, "tool_choice": "required",
                         "response_format": {"type": "json_object"}})
        check(st == 400, "tool_choice required with response_format: 400 (%d)" % st)


def test_streamed_calls_match():
    with Server(STORIES, "--chat-template-file", QWEN) as s:
        body = {"messages": ASK, "tools": TOOLS, "tool_choice": "required", "temperature": 1.0, "seed": 7,
                "max_tokens": 200}
        st, whole = chat(s, body)
        st2, _, b = s.post("/v1/chat/completions", dict(body, stream=True))
        events = sse_events(b)
        check(st == 200 and st2 == 200 and events and events[-1] == "[DONE]", "both answer")
        chunks = [json.loads(e) for e in events[:-1]]
        calls, finish_reason, content = [], None, ""
        for c in chunks:
            ch = c["choices"][0]
            for tc in ch["delta"].get("tool_calls", []):
                check(tc["index"] == len(calls), "tool call index %r" % tc)
                calls.append(tc)
            content += ch["delta"].get("content") or ""
            finish_reason = ch.get("finish_reason") or finish_reason
        want = whole["choices"][0]["message"]["tool_calls"]
        check(len(calls) == 1 and calls[0]["function"] == want[0]["function"],
              "the streamed call is the whole reply's: %r vs %r" % (calls, want))
        check(finish_reason == "tool_calls" and content == "", "stream: finish tool_calls, no content (%r, %r)" %
              (finish_reason, content))


def test_round_trip_renders_calls_and_results():
    with Server(STORIES, "--chat-template-file", QWEN) as s:
        st, j = chat(s, {"messages": ASK, "tools": TOOLS, "tool_choice": "required", "seed": 3, "max_tokens": 200})
        msg = j["choices"][0]["message"]
        call = msg["tool_calls"][0]
        convo = ASK + [{"role": "assistant", "content": None, "tool_calls": [call]},
                       {"role": "tool", "tool_call_id": call["id"], "content": "{\"temp\": 3, \"sky\": \"clear\"}"}]
        st2, j2 = chat(s, {"messages": convo, "tools": TOOLS, "max_tokens": 8, "temperature": 0})
        check(st2 == 200, "a conversation with the call and its result renders (%d %r)" % (st2, j2))
        st3, j3 = chat(s, {"messages": ASK, "tools": TOOLS, "max_tokens": 8, "temperature": 0})
        if st2 == 200 and st3 == 200:
            check(j2["usage"]["prompt_tokens"] > j3["usage"]["prompt_tokens"] + 10,
                  "the call and the result are in the prompt (%d vs %d tokens)" %
                  (j2["usage"]["prompt_tokens"], j3["usage"]["prompt_tokens"]))
        bad = convo[:-1] + [{"role": "tool", "tool_call_id": "call_unknown", "content": "x"}]
        st4, j4 = chat(s, {"messages": bad, "tools": TOOLS})
        check(st4 == 400 and "tool_call_id" in json.dumps(j4), "a result for an unknown call: 400 (%d)" % st4)


def test_reasoning_content():
    """DeepSeek R1's template opens <think> in the generation prompt: the reply is reasoning
    until </think>; the tiny model never closes it, so all of it is reasoning_content."""
    with Server(STORIES, "--chat-template-file", R1) as s:
        body = {"messages": [{"role": "user", "content": "Tell me a story."}], "temperature": 0, "max_tokens": 24}
        st, j = chat(s, body)
        msg = j["choices"][0]["message"] if st == 200 else {}
        check(st == 200 and msg.get("content") == "" and len(msg.get("reasoning_content", "")) > 10,
              "the reply is reasoning: %r" % msg)
        st2, _, b = s.post("/v1/chat/completions", dict(body, stream=True))
        reasoning, content = "", ""
        for e in sse_events(b)[:-1]:
            d = json.loads(e)["choices"][0]["delta"]
            reasoning += d.get("reasoning_content") or ""
            content += d.get("content") or ""
        check(reasoning == msg.get("reasoning_content") and content == "",
              "streamed reasoning equals the whole reply's (%r vs %r)" % (reasoning, msg.get("reasoning_content")))
        # a forced call closes the reasoning first
        st, j = chat(s, {"messages": ASK, "tools": TOOLS, "tool_choice": "required", "seed": 1, "max_tokens": 200})
        msg = j["choices"][0]["message"] if st == 200 else {}
        calls = msg.get("tool_calls") or []
        ok, what = valid_call(calls[0]) if calls else (False, "no call")
        check(st == 200 and ok and not msg.get("reasoning_content"), "R1 forced call: %s %r" % (what, msg))
    check("<think> reasoning" in s.output(), "start-up says the model reasons in <think>")


def test_openai_client_round_trip():
    """The official client (npm openai): a forced call whole and streamed (the client's
    stream helper assembles delta.tool_calls), and the next turn with the call's result."""
    js = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js")
    node = shutil.which("node")
    if not node or not os.path.isdir(os.path.join(js, "node_modules", "openai")):
        msg = "node or the npm package openai is missing (scripts/deps.sh test)"
        check(os.environ.get("SOV_REQUIRE_SHARED") != "1", msg)
        print("  skipped: " + msg, file=sys.stderr)
        return
    with Server(STORIES, "--chat-template-file", QWEN) as s:
        r = subprocess.run([node, os.path.join(js, "tools_client.mjs"), "http://%s:%d/v1" % (s.host, s.port),
                            json.dumps(TOOLS)], capture_output=True, text=True, timeout=300)
    if not check(r.returncode == 0, "the client ran: %s" % r.stderr[-2000:]):
        return
    out = json.loads(r.stdout)
    for k in ("whole", "streamed"):
        msg = out[k]["message"]
        calls = msg.get("tool_calls") or []
        ok, what = valid_call(calls[0]) if calls else (False, "no call")
        check(len(calls) == 1 and ok and out[k]["finish"] == "tool_calls", "%s: %s %r" % (k, what, out[k]))
    check(out["streamed"]["message"]["tool_calls"][0]["function"] == out["whole"]["message"]["tool_calls"][0]["function"],
          "the client's streamed call equals the whole one")
    check(out["next"]["status"] == "ok" and out["next"]["prompt_tokens"] > 0, "the next turn: %r" % out["next"])
    check(out["unknown_id"] and out["unknown_id"]["status"] == 400 and out["unknown_id"]["name"] == "BadRequestError",
          "a result for no call: %r" % out["unknown_id"])


if __name__ == "__main__":
    run_tests([test_required_calls_validate, test_named_tool_and_free_choice, test_streamed_calls_match,
               test_round_trip_renders_calls_and_results, test_reasoning_content, test_openai_client_round_trip])
    finish()
