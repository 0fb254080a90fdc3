// openai_client.mjs - drives `sov serve` with the official OpenAI client library.
// Usage: node openai_client.mjs BASE_URL MODEL_ID PROMPTS_JSON
// Prints one JSON object: what the client received, for test_openai_client.py to check
// against `sov run`. Any exception the client throws where none is expected is a failure
// the Python side sees (exit status 1 with the message on stderr).
import OpenAI from "openai";

const [base, model, promptsJson] = process.argv.slice(2);
const prompts = JSON.parse(promptsJson);
const client = new OpenAI({ baseURL: base, apiKey: "sk-unused", maxRetries: 0, timeout: 120000 });
const out = {};

async function streamText(params) {
  const stream = await client.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  let text = "", finish = null, usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices ?? []) {
      text += c.text ?? "";
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { text, finish, usage };
}

async function streamChat(params) {
  const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  let text = "", finish = null, usage = null, role = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices ?? []) {
      if (c.delta?.role) role = c.delta.role;
      text += c.delta?.content ?? "";
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { text, finish, usage, role };
}

async function errorOf(fn) {
  try {
    await fn();
    return null;
  } catch (e) {
    return { status: e.status ?? null, name: e.constructor.name, code: e.code ?? null, message: e.message };
  }
}

const models = await client.models.list();
out.models = models.data.map((m) => m.id);
out.model = (await client.models.retrieve(model)).id;

// one request at a time: plain and streamed completions
out.plain = [];
out.streamed = [];
for (const p of prompts) {
  const r = await client.completions.create({ model, prompt: p, max_tokens: 32, temperature: 0, ignore_eos: true });
  out.plain.push({ text: r.choices[0].text, finish: r.choices[0].finish_reason, usage: r.usage, object: r.object });
  out.streamed.push(await streamText({ model, prompt: p, max_tokens: 32, temperature: 0, ignore_eos: true }));
}

// all at once, streamed and not, mixed
out.concurrent = await Promise.all(
  prompts.concat(prompts).map((p, i) =>
    i % 2
      ? streamText({ model, prompt: p, max_tokens: 32, temperature: 0, ignore_eos: true })
      : client.completions
          .create({ model, prompt: p, max_tokens: 32, temperature: 0, ignore_eos: true })
          .then((r) => ({ text: r.choices[0].text }))
  )
);

// chat, plain and streamed
const messages = [{ role: "system", content: "You tell stories." }, { role: "user", content: prompts[0] }];
const chat = await client.chat.completions.create({ model, messages, max_completion_tokens: 16, temperature: 0 });
out.chat = { text: chat.choices[0].message.content, role: chat.choices[0].message.role,
             finish: chat.choices[0].finish_reason, usage: chat.usage, object: chat.object };
out.chat_streamed = await streamChat({ model, messages, max_completion_tokens: 16, temperature: 0 });

// logprobs
const lp = await client.chat.completions.create({ model, messages, max_tokens: 4, temperature: 0, logprobs: true,
                                                  top_logprobs: 3 });
out.logprobs = lp.choices[0].logprobs.content.map((t) => ({ token: t.token, logprob: t.logprob,
                                                            top: t.top_logprobs.length }));

// seeded sampling reproduces
const seeded = async () => (await client.completions.create({ model, prompt: prompts[1], max_tokens: 24,
                                                               temperature: 1.0, seed: 42 })).choices[0].text;
out.seeded = [await seeded(), await seeded()];

// errors come back as the client's typed errors
out.errors = {
  unknown_model: await errorOf(() => client.completions.create({ model: "no-such-model", prompt: "x", max_tokens: 1 })),
  n_two: await errorOf(() => client.completions.create({ model, prompt: "x", max_tokens: 1, n: 2 })),
  no_messages: await errorOf(() => client.chat.completions.create({ model, messages: [], max_tokens: 1 })),
  bad_temperature: await errorOf(() => client.completions.create({ model, prompt: "x", temperature: "hot" })),
};

process.stdout.write(JSON.stringify(out) + "\n");
