// console-admin.js - the console's admin panels, over the admin API (/console/api/keys,
// /tenants, /audit, /audit/verify; docs/WEB.md): key management (create shows the new key
// once, with a copy button; revoke asks first), the tenants' usage this minute and today
// against their keys' quotas, and the audit log with its verification. The panels appear
// only when the server has keys in a state store and the console holds an admin key.
// Every string from the server goes in with textContent: no markup is ever built from it.
const $ = (id) => document.getElementById(id);
const REFRESH_MS = 5000;

let keyHeader = {};
let shown = false;
let lastRefresh = 0;
let refreshing = false;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function when(t) {
  if (!t) return "–";
  return new Date(t * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function num(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
}

async function call(method, path, body) {
  const opts = { method, headers: { ...keyHeader }, cache: "no-store" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let j = null;
  try {
    j = await r.json();
  } catch {
    j = null;
  }
  if (!r.ok) throw new Error((j && j.error && j.error.message) || "HTTP " + r.status);
  return j;
}

function section(id, title) {
  let p = $("panel-" + id);
  if (!p) {
    p = el("section", "panel wide admin");
    p.id = "panel-" + id;
    p.append(el("h2", null, title));
    $("panels").append(p);
  }
  return p;
}

function status(p, text, bad) {
  let s = p.querySelector(":scope > .admin-status");
  if (!s) {
    s = el("p", "admin-status");
    s.setAttribute("role", "status");
    p.append(s);
  }
  s.textContent = text || "";
  s.classList.toggle("bad", !!bad);
}

function table(headers) {
  const t = el("table");
  const tr = el("tr");
  for (const h of headers) tr.append(el("th", null, h));
  t.append(tr);
  return t;
}

// ---- keys ----

function field(label, input) {
  const l = el("label", null, label);
  l.append(input);
  return l;
}

function input(name, type, placeholder) {
  const i = el("input");
  i.name = name;
  i.type = type;
  if (placeholder) i.placeholder = placeholder;
  if (type === "number") {
    i.min = "0";
    i.step = "1";
  }
  i.autocomplete = "off";
  return i;
}

function keysPanel() {
  const p = section("keys", "API keys");
  if (p.querySelector("form")) return p;
  const f = el("form", "key-create");
  f.id = "key-create";
  const tenant = input("tenant", "text", "radiology");
  tenant.required = true;
  tenant.maxLength = 64;
  const admin = input("admin", "checkbox");
  const adminLabel = el("label", "check", "Admin key ");
  adminLabel.prepend(admin);
  f.append(
    field("Tenant", tenant),
    field("Models (comma-separated; empty: all)", input("models", "text", "*")),
    field("Requests/min", input("rpm", "number", "no limit")),
    field("Tokens/min", input("tpm", "number", "no limit")),
    field("Tokens/day", input("tpd", "number", "no limit")),
    adminLabel,
    el("button", null, "Create key"),
  );
  f.querySelector("button").type = "submit";
  f.addEventListener("submit", (e) => {
    e.preventDefault();
    createKey(f);
  });
  const secret = el("div", "new-key");
  secret.id = "new-key";
  secret.hidden = true;
  const list = el("div", "key-list");
  list.id = "key-list";
  p.append(f, secret, list);
  return p;
}

async function createKey(f) {
  const p = $("panel-keys");
  const v = (n) => f.elements[n].value.trim();
  const body = { tenant: v("tenant") };
  const models = v("models");
  if (models && models !== "*") body.models = models.split(",").map((m) => m.trim()).filter((m) => m);
  for (const [n, k] of [["rpm", "rpm"], ["tpm", "tpm"], ["tpd", "tokens_per_day"]]) if (v(n) !== "") body[k] = Number(v(n));
  if (f.elements.admin.checked) body.admin = true;
  try {
    const k = await call("POST", "/console/api/keys", body);
    showSecret(k);
    f.reset();
    status(p, "Created key " + k.id + " for tenant '" + k.tenant + "'.");
    await loadKeys();
  } catch (e) {
    status(p, "Not created: " + e.message, true);
  }
}

// The new key, once: it is in this box until "Done" (never stored by the page).
function showSecret(k) {
  const box = $("new-key");
  const code = el("code", "secret", k.key);
  code.id = "new-key-value";
  const copy = el("button", "copy", "Copy");
  copy.type = "button";
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(k.key);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Copy failed: select the key";
    }
  });
  const done = el("button", "done", "Done");
  done.type = "button";
  done.addEventListener("click", () => {
    box.replaceChildren();
    box.hidden = true;
  });
  box.replaceChildren(
    el("p", null, "New key " + k.id + " for tenant '" + k.tenant + "'. It is shown only now: the server keeps only its hash."),
    code,
    copy,
    done,
  );
  box.hidden = false;
}

async function loadKeys() {
  const p = keysPanel();
  let j;
  try {
    j = await call("GET", "/console/api/keys");
  } catch (e) {
    status(p, "Keys: " + e.message, true);
    return;
  }
  const t = table(["Id", "Tenant", "Prefix", "Models", "Req/min", "Tok/min", "Tok/day", "Admin", "Created", "Last used", "State", ""]);
  for (const k of j.keys) {
    const tr = el("tr");
    tr.dataset.key = k.id;
    const lim = (x) => (x > 0 ? num(x) : "–");
    for (const v of [k.id, k.tenant, k.prefix + "…", k.models ? k.models.join(", ") : "all", lim(k.rpm), lim(k.tpm), lim(k.tokens_per_day), k.admin ? "admin" : "", when(k.created), when(k.last_used), k.revoked ? "revoked " + when(k.revoked) : "active"])
      tr.append(el("td", null, v));
    const td = el("td");
    if (!k.revoked) {
      const b = el("button", "revoke", "Revoke");
      b.type = "button";
      b.addEventListener("click", () => revokeKey(k));
      td.append(b);
    }
    tr.append(td);
    if (k.revoked) tr.classList.add("revoked");
    t.append(tr);
  }
  $("key-list").replaceChildren(t);
}

async function revokeKey(k) {
  const p = $("panel-keys");
  if (!confirm("Revoke key " + k.id + " (" + k.prefix + "…) of tenant '" + k.tenant + "'? Its next request will be refused; this cannot be undone.")) return;
  try {
    await call("POST", "/console/api/keys/" + k.id + "/revoke", {});
    status(p, "Revoked key " + k.id + ".");
  } catch (e) {
    status(p, "Not revoked: " + e.message, true);
  }
  await loadKeys();
}

// ---- tenants against quotas ----

function bar(label, used, limit) {
  const row = el("div", "quota");
  row.append(el("span", "what", label));
  if (limit > 0) {
    const m = el("meter");
    m.min = 0;
    m.max = limit;
    m.value = Math.min(used, limit);
    m.low = limit * 0.7;
    m.high = limit * 0.9;
    m.optimum = 0;
    m.title = num(used) + " of " + num(limit);
    row.append(m, el("span", "figure", num(used) + " / " + num(limit)));
  } else {
    row.append(el("span", "figure", num(used) + " (no limit)"));
  }
  return row;
}

async function loadTenants() {
  const p = section("quotas", "Tenants: usage against quotas");
  let j;
  try {
    j = await call("GET", "/console/api/tenants");
  } catch (e) {
    status(p, "Tenants: " + e.message, true);
    return;
  }
  const box = el("div", "quota-list");
  for (const t of j.tenants) {
    const card = el("div", "tenant");
    card.dataset.tenant = t.name;
    const d = t.today;
    card.append(el("h3", null, t.name), el("p", "today", "Today: " + num(d.requests) + " requests, " + num(d.prompt_tokens) + " prompt + " + num(d.completion_tokens) + " generated tokens (" + num(d.cached_tokens) + " cached) · weight " + t.weight));
    for (const k of t.keys) {
      const kk = el("div", "key-quota");
      kk.dataset.key = k.id;
      kk.append(el("span", "key-name", "Key " + k.id + " " + k.prefix + "…" + (k.admin ? " (admin)" : "")));
      kk.append(bar("Requests this minute", k.minute_requests, k.rpm), bar("Tokens this minute", k.minute_tokens, k.tpm), bar("Tokens today", k.day_tokens, k.tokens_per_day));
      card.append(kk);
    }
    box.append(card);
  }
  const old = p.querySelector(".quota-list");
  if (old) old.replaceWith(box);
  else p.append(box);
  status(p, "Minute window from " + when(j.minute_start) + "; day from " + when(j.day_start) + " (UTC). Token counts include reservations of requests still running.");
}

// ---- audit ----

function auditPanel() {
  const p = section("audit", "Audit log");
  if (p.querySelector("#audit-verify")) return p;
  const b = el("button", null, "Verify the chain");
  b.id = "audit-verify";
  b.type = "button";
  b.addEventListener("click", verify);
  const res = el("div", "verify-result");
  res.id = "verify-result";
  res.setAttribute("aria-live", "polite");
  const list = el("div", "audit-list");
  list.id = "audit-list";
  p.append(b, res, list);
  return p;
}

async function loadAudit() {
  const p = auditPanel();
  let j;
  try {
    j = await call("GET", "/console/api/audit?limit=20");
  } catch (e) {
    status(p, "Audit: " + e.message, true);
    return;
  }
  const t = table(["#", "Time (UTC)", "Tenant", "Key", "Endpoint", "Status", "Prompt / gen tokens", "Latency", "Finish", "Response"]);
  for (const r of j.records.slice().reverse()) {
    const tr = el("tr");
    tr.dataset.seq = r.seq;
    const time = r.time_ms ? new Date(r.time_ms).toISOString().slice(0, 19).replace("T", " ") : "–";
    for (const v of [r.seq, time, r.tenant || "–", r.key_id || "–", r.endpoint, r.status, (r.prompt_tokens ?? "–") + " / " + (r.completion_tokens ?? "–"), r.latency_ms === undefined ? "–" : r.latency_ms + " ms", r.finish_reason || "–", r.response_id || "–"])
      tr.append(el("td", null, v));
    if (r.invalid) tr.classList.add("bad");
    t.append(tr);
  }
  $("audit-list").replaceChildren(t);
  status(p, j.last_seq + " records; chain head " + j.chain_head.slice(0, 16) + "…");
}

async function verify() {
  const box = $("verify-result");
  box.replaceChildren(el("p", null, "Verifying…"));
  box.className = "verify-result";
  let v;
  try {
    v = await call("GET", "/console/api/audit/verify");
  } catch (e) {
    box.replaceChildren(el("p", "bad", "Could not verify: " + e.message));
    return;
  }
  const out = [];
  if (v.ok) {
    out.push(el("p", "verdict", "OK: " + v.records + " records (" + v.first_seq + ".." + v.last_seq + "), chain head " + v.chain_head.slice(0, 16) + "…; " + v.heads_matched + " signed heads match, signed through record " + v.signed_through + (v.unsigned_tail ? "; " + v.unsigned_tail + " records after the last signed head (signed within 10 s)" : "")));
  } else {
    const f = v.first_bad;
    out.push(el("p", "verdict", "FAILED: first bad record " + f.seq + " (" + f.kind + "): " + f.detail));
    const ul = el("ul");
    for (const x of v.problems) ul.append(el("li", null, "record " + x.seq + ": " + x.kind + ": " + x.detail));
    out.push(el("p", null, v.n_problems + " problem(s) in all:"), ul);
  }
  out.push(el("p", "note", "Trusted keys: " + (v.trusted_keys.join(", ") || "none") + " — " + v.trust + ". Took " + (v.seconds * 1000).toFixed(1) + " ms."));
  box.replaceChildren(...out);
  box.className = "verify-result " + (v.ok ? "ok" : "bad");
  box.dataset.ok = String(v.ok);
}

// ---- entry: called after every stats poll ----

export function adminPanels(stats, header) {
  keyHeader = header;
  const want = !!(stats.admin && stats.system && stats.system.auth_required);
  if (!want) {
    if (shown) for (const id of ["keys", "quotas", "audit"]) $("panel-" + id)?.remove();
    shown = false;
    return;
  }
  const now = Date.now();
  if (shown && now - lastRefresh < REFRESH_MS) return;
  if (refreshing) return;
  refreshing = true;
  lastRefresh = now;
  const first = !shown;
  shown = true;
  Promise.all([first ? loadKeys() : Promise.resolve(), loadTenants(), loadAudit()]).finally(() => (refreshing = false));
}
