// embeddings_client.mjs - the official OpenAI client (npm `openai`) against sov's
// /v1/embeddings: client.embeddings.create without encoding_format (the client then asks
// for base64 and decodes it itself), with "float", and with "base64" (the client hands the
// base64 string back as is), and the typed error of an unsupported 'dimensions'.
// Usage: node embeddings_client.mjs BASE_URL '["text", ...]'; prints JSON.
import OpenAI from "openai";

const [baseURL, textsJson] = process.argv.slice(2);
const texts = JSON.parse(textsJson);
const client = new OpenAI({ baseURL, apiKey: "none", maxRetries: 0 });
const out = {};
for (const enc of ["default", "float", "base64"]) {
  const req = { model: "stories260K", input: texts };
  if (enc !== "default") req.encoding_format = enc;
  const r = await client.embeddings.create(req);
  out[enc] = {
    vectors: r.data.map((d) => (typeof d.embedding === "string" ? d.embedding : Array.from(d.embedding))),
    usage: r.usage,
  };
}
try {
  await client.embeddings.create({ model: "stories260K", input: "x", dimensions: 3 });
  out.dimensions_error = null;
} catch (e) {
  out.dimensions_error = { status: e.status, name: e.constructor.name };
}
console.log(JSON.stringify(out));
