// tools_client.mjs - the official OpenAI client (npm `openai`) calling tools on sov: a forced
// call (tool_choice "required") whole and streamed (the client's own accumulation of
// delta.tool_calls), then the round trip the client's users write: the assistant message
// with its tool_calls and a tool message answering it, sent back for the next turn.
// Usage: node tools_client.mjs BASE_URL '<tools JSON>'; prints JSON.
import OpenAI from "openai";

const [baseURL, toolsJson] = process.argv.slice(2);
const tools = JSON.parse(toolsJson);
const client = new OpenAI({ baseURL, apiKey: "none", maxRetries: 0 });
const messages = [{ role: "user", content: "What is the weather in Seoul?" }];
const base = { model: "stories260K", messages, tools, tool_choice: "required", seed: 11, max_tokens: 200 };
const out = {};

const whole = await client.chat.completions.create(base);
out.whole = { message: whole.choices[0].message, finish: whole.choices[0].finish_reason };

// streamed: the client's stream helper assembles tool calls from the deltas
const stream = client.chat.completions.stream({ ...base, stream: true });
const final = await stream.finalChatCompletion();
out.streamed = { message: final.choices[0].message, finish: final.choices[0].finish_reason };

// the next turn carries the call and its result
const call = whole.choices[0].message.tool_calls[0];
const next = await client.chat.completions.create({
  model: "stories260K",
  tools,
  max_tokens: 8,
  messages: [
    ...messages,
    whole.choices[0].message,
    { role: "tool", tool_call_id: call.id, content: JSON.stringify({ temp: 3, sky: "clear" }) },
  ],
});
out.next = { status: "ok", prompt_tokens: next.usage.prompt_tokens, finish: next.choices[0].finish_reason };
try {
  await client.chat.completions.create({
    model: "stories260K",
    tools,
    messages: [...messages, whole.choices[0].message, { role: "tool", tool_call_id: "call_nobody", content: "x" }],
  });
  out.unknown_id = null;
} catch (e) {
  out.unknown_id = { status: e.status, name: e.constructor.name };
}
console.log(JSON.stringify(out));
