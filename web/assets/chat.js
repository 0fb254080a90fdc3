// chat.js - the chat page: streams answers from this server's OpenAI API
// (/v1/chat/completions, SSE), keeps the conversation in localStorage, renders answers
// with markdown.js (DOM nodes only: model text is untrusted). See docs/WEB.md.
import { renderMarkdown } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const STORE = "sov.chat.v1";
const KEY_STORE = "sov.apikey"; // sessionStorage: the key leaves with the tab

const state = load();
let running = null; // {ctrl: AbortController, msg} while an answer streams
let composing = false; // an IME composition is open in the prompt box

function load() {
  try {
    const s = JSON.parse(localStorage.getItem(STORE) || "{}");
    return {
      messages: Array.isArray(s.messages) ? s.messages.filter((m) => m && typeof m.content === "string") : [],
      settings: s.settings && typeof s.settings === "object" ? s.settings : {},
    };
  } catch {
    return { messages: [], settings: {} };
  }
}

function save() {
  try {
    localStorage.setItem(STORE, JSON.stringify(state));
  } catch {
    status("The browser refused to store the conversation (storage full or disabled).");
  }
}

function status(text) {
  $("status").textContent = text || "";
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

// ---- rendering ----

function fmt(n, digits = 0) {
  return Number.isFinite(n) ? n.toFixed(digits) : "–";
}

function figures(m) {
  const s = m.stats;
  if (!s) return "";
  const parts = [];
  if (s.completion_tokens !== undefined) parts.push(s.completion_tokens + " tokens");
  if (s.ttft_ms !== undefined) parts.push("TTFT " + fmt(s.ttft_ms) + " ms");
  if (s.tps !== undefined) parts.push(fmt(s.tps, 1) + " tok/s");
  if (s.cached_tokens !== undefined) parts.push(s.cached_tokens + " cached prompt tokens");
  if (s.energy_joules !== undefined && s.energy_joules !== null)
    parts.push(fmt(s.energy_joules, 2) + " J" + (s.energy_source ? " (" + s.energy_source + ")" : ""));
  if (s.stopped) parts.push("stopped");
  if (s.finish && s.finish !== "stop") parts.push("finish: " + s.finish);
  return parts.join(" · ");
}

function messageNode(m, index) {
  const art = document.createElement("article");
  art.className = "msg " + (m.role === "user" ? "user" : "assistant");
  art.dataset.index = String(index);
  const who = document.createElement("div");
  who.className = "who";
  who.textContent = m.role === "user" ? "You" : "Assistant";
  const body = document.createElement("div");
  body.className = "body";
  if (m.role === "user") body.textContent = m.content; // shown as typed
  else renderMarkdown(m.content, body);
  art.append(who, body);
  if (m.role !== "user") {
    const foot = document.createElement("div");
    foot.className = "foot";
    const fig = document.createElement("span");
    fig.className = "figures";
    fig.textContent = m.error ? m.error : figures(m);
    const copy = button("Copy", "copy", () => copyText(m.content));
    foot.append(fig, copy);
    if (index === state.messages.length - 1) foot.append(button("Regenerate", "regenerate", regenerate));
    art.append(foot);
  }
  return art;
}

function button(label, cls, fn) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls;
  b.textContent = label;
  b.addEventListener("click", fn);
  return b;
}

function renderAll() {
  const conv = $("conversation");
  conv.replaceChildren(...state.messages.map(messageNode));
  conv.scrollTop = conv.scrollHeight;
}

// The streaming message's body only: one DOM update per delta.
function renderStreaming(m) {
  const conv = $("conversation");
  const art = conv.lastElementChild;
  if (!art) return;
  renderMarkdown(m.content, art.querySelector(".body"));
  conv.scrollTop = conv.scrollHeight;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    status("Copied.");
  } catch {
    // plain http on another host is not a secure context: no clipboard API there
    const t = document.createElement("textarea");
    t.value = text;
    document.body.append(t);
    t.select();
    const ok = document.execCommand("copy");
    t.remove();
    status(ok ? "Copied." : "The browser refused to copy.");
  }
}

// ---- the server ----

async function loadModels() {
  const sel = $("model");
  let r;
  try {
    r = await fetch("/v1/models", { headers: headers() });
  } catch {
    status("Cannot reach the server.");
    return;
  }
  if (r.status === 401) {
    $("key-row").hidden = false;
    status("This server needs an API key: enter it under Settings.");
    return;
  }
  if (!r.ok) {
    status("Listing models failed: HTTP " + r.status);
    return;
  }
  const j = await r.json();
  const ids = (j.data || []).map((m) => String(m.id));
  sel.replaceChildren(
    ...ids.map((id) => {
      const o = document.createElement("option");
      o.value = o.textContent = id;
      return o;
    }),
  );
  if (ids.includes(state.settings.model)) sel.value = state.settings.model;
  status(ids.length ? "" : "This key may use no model.");
}

function requestBody() {
  const msgs = [];
  const sys = $("system").value.trim();
  if (sys) msgs.push({ role: "system", content: sys });
  for (const m of state.messages) if (!m.error) msgs.push({ role: m.role, content: m.content });
  const body = { model: $("model").value, messages: msgs, stream: true, stream_options: { include_usage: true } };
  const t = parseFloat($("temperature").value);
  if (Number.isFinite(t)) body.temperature = t;
  const n = parseInt($("max-tokens").value, 10);
  if (Number.isFinite(n) && n > 0) body.max_tokens = n;
  return body;
}

// Reads an SSE body, calling onData with each data: payload.
async function readSSE(resp, onData) {
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      for (const line of block.split("\n")) if (line.startsWith("data: ")) onData(line.slice(6));
    }
  }
}

async function answer() {
  const m = { role: "assistant", content: "", stats: {} };
  const body = requestBody();
  state.messages.push(m);
  renderAll();
  const ctrl = new AbortController();
  running = { ctrl, m };
  setRunning(true);
  const t0 = performance.now();
  let tFirst = 0;
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify(body),
      signal: ctrl.signal,
    });
    if (!r.ok) {
      let msg = "HTTP " + r.status;
      try {
        msg += ": " + (await r.json()).error.message;
      } catch {}
      if (r.status === 401) $("key-row").hidden = false;
      throw new Error(msg);
    }
    await readSSE(r, (data) => {
      if (data === "[DONE]") return;
      const j = JSON.parse(data);
      if (j.error) throw new Error(j.error.message || "the server reported an error");
      for (const c of j.choices || []) {
        const piece = (c.delta && c.delta.content) || "";
        if (piece) {
          if (!tFirst) tFirst = performance.now();
          m.content += piece;
          renderStreaming(m);
        }
        if (c.finish_reason) m.stats.finish = c.finish_reason;
      }
      if (j.usage) {
        const u = j.usage;
        m.stats.completion_tokens = u.completion_tokens;
        m.stats.prompt_tokens = u.prompt_tokens;
        if (u.prompt_tokens_details) m.stats.cached_tokens = u.prompt_tokens_details.cached_tokens;
        if (u.energy_joules !== undefined) m.stats.energy_joules = u.energy_joules;
        if (u.energy_source !== undefined) m.stats.energy_source = u.energy_source;
      }
    });
  } catch (e) {
    if (e.name === "AbortError") m.stats.stopped = true;
    else m.error = String(e.message || e);
  }
  const tEnd = performance.now();
  if (tFirst) {
    m.stats.ttft_ms = tFirst - t0;
    const n = m.stats.completion_tokens;
    if (n > 1 && tEnd > tFirst) m.stats.tps = ((n - 1) * 1000) / (tEnd - tFirst);
  }
  running = null;
  setRunning(false);
  save();
  renderAll();
}

function setRunning(on) {
  $("send").hidden = on;
  $("stop").hidden = !on;
  $("prompt").disabled = false;
}

function send() {
  if (running) return;
  const text = $("prompt").value;
  if (!text.trim()) return;
  if (!$("model").value) {
    status("No model to ask: check the API key.");
    return;
  }
  state.messages.push({ role: "user", content: text });
  $("prompt").value = "";
  save();
  answer();
}

function regenerate() {
  if (running) return;
  const last = state.messages[state.messages.length - 1];
  if (!last || last.role === "user") return;
  state.messages.pop();
  answer();
}

function saveSettings() {
  state.settings = {
    model: $("model").value,
    system: $("system").value,
    temperature: $("temperature").value,
    max_tokens: $("max-tokens").value,
  };
  save();
}

// ---- wiring ----

function init() {
  const s = state.settings;
  if (typeof s.system === "string") $("system").value = s.system;
  if (s.temperature) $("temperature").value = s.temperature;
  if (s.max_tokens) $("max-tokens").value = s.max_tokens;
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) {
    $("api-key").value = key;
    $("key-row").hidden = false;
  }
  for (const id of ["model", "system", "temperature", "max-tokens"]) $(id).addEventListener("change", saveSettings);
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORE, $("api-key").value.trim());
    loadModels();
  });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  const prompt = $("prompt");
  prompt.addEventListener("compositionstart", () => (composing = true));
  prompt.addEventListener("compositionend", () => (composing = false));
  prompt.addEventListener("keydown", (e) => {
    // Enter while an IME composes (Korean, Japanese, Chinese...) commits the syllable: never send then
    if (e.key !== "Enter" || e.shiftKey || e.isComposing || composing || e.keyCode === 229) return;
    e.preventDefault();
    send();
  });
  $("stop").addEventListener("click", () => running && running.ctrl.abort());
  $("new-chat").addEventListener("click", () => {
    if (running) running.ctrl.abort();
    state.messages = [];
    save();
    renderAll();
  });
  renderAll();
  loadModels();
}

init();
