"""conversations.py - the conversations every corpus template is rendered with (shared by
test_templates.py and the benchmark): system or not, multi-turn, tools offered, assistant
tool calls and tool results, add_generation_prompt on and off, enable_thinking."""

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search", "description": "Search the web.",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string"}, "limit": {"type": "integer", "default": 3},
            "tags": {"type": "array", "items": {"type": "string"}}},
            "required": ["query"]}}},
]

SYS = {"role": "system", "content": "You are a careful assistant. Answer briefly."}
U1 = {"role": "user", "content": "Hello! What's 2+2?"}
A1 = {"role": "assistant", "content": "2+2 = 4."}
U2 = {"role": "user", "content": "Thanks.\nNow tell me a joke about \"quotes\" & <tags>, ünïcödé 😀."}
CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"id": "call12345", "type": "function",
     "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]}
RESULT = {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "{\"temperature\": 21, \"sky\": \"clear\"}"}
UW = {"role": "user", "content": "What's the weather in Paris?"}
AW = {"role": "assistant", "content": "It is 21 °C and clear in Paris."}
THINK = {"role": "assistant", "content": "<think>\nThe user greets me.\n</think>\n\nHello there!"}

CALL2 = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "callAAAAA", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
    {"id": "callBBBBB", "type": "function", "function": {"name": "search", "arguments": {"query": "Paris events", "limit": 2}}}]}
RES_A = {"role": "tool", "tool_call_id": "callAAAAA", "name": "get_weather", "content": "21 C"}
RES_B = {"role": "tool", "tool_call_id": "callBBBBB", "name": "search", "content": "[\"Jazz festival\"]"}
CALL_STR = {"role": "assistant", "content": "Let me check.", "tool_calls": [
    {"id": "call98765", "type": "function",
     "function": {"name": "get_weather", "arguments": "{\"city\": \"Lyon\"}"}}]}
RES_STR = {"role": "tool", "tool_call_id": "call98765", "name": "get_weather", "content": "18 C"}
REASONED = {"role": "assistant", "content": "Hello there!", "reasoning_content": "The user greets me; greet back."}
TRICKY = {"role": "user", "content": "Render {{ this }} and {% that %} literally, plus \\n, tabs\tand a trailing space "}

# (name, messages, tools, add_generation_prompt, extra variables)
CASES = [
    ("user", [U1], None, True, {}),
    ("system_user", [SYS, U1], None, True, {}),
    ("multi_turn", [SYS, U1, A1, U2], None, True, {}),
    ("multi_turn_no_system", [U1, A1, U2], None, True, {}),
    ("final_assistant_no_gen", [SYS, U1, A1], None, False, {}),
    ("tools_offered", [SYS, UW], TOOLS, True, {}),
    ("tool_round_trip", [SYS, UW, CALL, RESULT], TOOLS, True, {}),
    ("tool_round_trip_answered", [UW, CALL, RESULT, AW], TOOLS, False, {}),
    ("thinking_on", [U1, THINK, U2], None, True, {"enable_thinking": True}),
    ("thinking_off", [SYS, U1], None, True, {"enable_thinking": False}),
    ("parallel_tool_calls", [SYS, UW, CALL2, RES_A, RES_B], TOOLS, True, {}),
    ("tool_call_string_arguments", [UW, CALL_STR, RES_STR], TOOLS, True, {}),
    ("reasoning_content", [SYS, U1, REASONED, U2], None, True, {"enable_thinking": True}),
    ("long_alternating", [SYS, U1, A1, U2, A1, U1, A1, TRICKY], None, True, {}),
]
