// tls_client.mjs - the official OpenAI client against `sov serve` over HTTPS, for
// test_tls.py. Without CA/CERT/KEY the client uses its own fetch, so it trusts what Node
// trusts (NODE_EXTRA_CA_CERTS adds a private CA: the usual way). With them, the client's
// `fetch` option goes through a node:https agent that trusts CA and presents CERT/KEY
// (mTLS). The client always sends its API key as a bearer token: under mTLS, give the key
// bound to the certificate (sov keys create --client-cert-subject).
//
// Usage: node tls_client.mjs BASE_URL MODEL API_KEY [CA CERT KEY]
// Prints one JSON object: {ok: true, models, chat, streamed} or {ok: false, error: {name,
// status, code, message}} with the code of the TLS error the request ended on.
import https from "node:https";
import fs from "node:fs";
import { Readable } from "node:stream";
import OpenAI from "openai";

const [base, model, apiKey, ca, cert, key] = process.argv.slice(2);

// fetch over a node:https agent: enough of the Fetch API for the client (method, headers,
// string body, abort signal; a streamed response body).
function agentFetch(agent) {
  return (url, init = {}) =>
    new Promise((resolve, reject) => {
      const headers = Object.fromEntries(new Headers(init.headers ?? {}).entries());
      const req = https.request(String(url), { method: init.method ?? "GET", headers, agent, signal: init.signal },
        (res) => {
          const h = new Headers();
          for (const [k, v] of Object.entries(res.headers)) h.set(k, Array.isArray(v) ? v.join(", ") : String(v));
          resolve(new Response(Readable.toWeb(res), { status: res.statusCode, headers: h }));
        });
      req.on("error", reject);
      if (init.body) req.write(init.body);
      req.end();
    });
}

const opts = { baseURL: base, apiKey, maxRetries: 0, timeout: 60000 };
if (ca) {
  const agent = new https.Agent({ ca: fs.readFileSync(ca), cert: cert && fs.readFileSync(cert),
                                  key: key && fs.readFileSync(key), keepAlive: true });
  opts.fetch = agentFetch(agent);
}
const client = new OpenAI(opts);

// the innermost cause of a failure: TLS errors hide under APIConnectionError's cause chain
function rootCode(e) {
  let c = e, code = null;
  for (let i = 0; c && i < 8; i++, c = c.cause) code = c.code ?? code;
  return code;
}

try {
  const out = { ok: true };
  out.models = (await client.models.list()).data.map((m) => m.id);
  const messages = [{ role: "user", content: "Once upon a time" }];
  const chat = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0 });
  out.chat = { text: chat.choices[0].message.content, finish: chat.choices[0].finish_reason };
  const stream = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0,
                                                        stream: true });
  let text = "", finish = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices ?? []) {
      text += c.delta?.content ?? "";
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  out.streamed = { text, finish };
  process.stdout.write(JSON.stringify(out) + "\n");
} catch (e) {
  const error = { name: e.constructor.name, status: e.status ?? null, code: rootCode(e), message: String(e.message) };
  process.stdout.write(JSON.stringify({ ok: false, error }) + "\n");
}
