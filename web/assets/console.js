// console.js - the operator console: polls /console/api/stats once a second and draws
// the last five minutes as SVG line charts (own code, no library); panels for the model,
// the system and — with an admin key — the tenants, and (console-admin.js) key management,
// quotas and the audit log, loaded only once an admin key is in use. A panel or series
// appears only when the server reports its data. See docs/WEB.md.

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const KEY_STORE = "sov.adminkey"; // sessionStorage
const PERIOD_MS = 1000;
const KEEP = 300; // samples: five minutes
const WINDOW = 10; // samples the latency percentiles are taken over

const samples = []; // raw snapshots, oldest first
const charts = {};

// ---- helpers ----

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function human(n, unit = "") {
  if (n === null || n === undefined || !Number.isFinite(n)) return "–";
  const a = Math.abs(n);
  const [d, s] = a >= 1e9 ? [1e9, "G"] : a >= 1e6 ? [1e6, "M"] : a >= 1e3 ? [1e3, "k"] : [1, ""];
  const v = n / d;
  return (Math.abs(v) >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(v >= 10 ? 1 : 2)) + s + unit;
}

function ms(sec) {
  return sec === null || sec === undefined ? "–" : (sec * 1000).toFixed(sec < 0.01 ? 2 : 1) + " ms";
}

// The q-quantile of bucket counts (the last is +Inf), interpolated inside the bucket as the
// server's web_hist_quantile and Prometheus' histogram_quantile do; null when empty.
export function quantile(bounds, counts, q) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total <= 0) return null;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < bounds.length; i++) {
    const c = counts[i];
    if (c > 0 && below + c >= rank) {
      const lo = i === 0 ? 0 : bounds[i - 1];
      return lo + (bounds[i] - lo) * ((rank - below) / c);
    }
    below += c;
  }
  return bounds[bounds.length - 1];
}

// ---- charts ----

const N_COLORS = 5; // .s0 .. .s4 in style.css

function chart(id, title, fmt) {
  if (charts[id]) return charts[id];
  const fig = el("figure", "chart");
  fig.dataset.chart = id;
  const cap = el("figcaption");
  cap.append(el("span", "title", title));
  const legend = el("span", "legend");
  cap.append(legend);
  const box = svg("svg", { viewBox: "0 0 300 100", preserveAspectRatio: "none", role: "img", "aria-label": title });
  box.append(svg("line", { x1: 0, y1: 99.5, x2: 300, y2: 99.5, class: "axis" }));
  fig.append(cap, box);
  const max = el("span", "max");
  fig.append(max);
  $("charts").append(fig);
  return (charts[id] = { fig, box, legend, max, fmt, lines: {} });
}

// series: {name: [values (null: gap)]}, all of length <= KEEP, newest last
function draw(id, title, series, fmt) {
  const c = chart(id, title, fmt);
  let top = 0;
  for (const v of Object.values(series)) for (const x of v) if (x !== null && x > top) top = x;
  top = top > 0 ? top * 1.1 : 1;
  // the x axis covers the last minute until more is known, then up to five minutes
  const span = Math.min(KEEP, Math.max(60, ...Object.values(series).map((v) => v.length)));
  Object.keys(series).forEach((name, i) => {
    let line = c.lines[name];
    if (!line) {
      const cls = "s" + (i % N_COLORS);
      const path = svg("path", { class: "series " + cls });
      c.box.append(path);
      const item = el("span", "item");
      item.dataset.series = name;
      const val = el("output");
      item.append(el("span", "swatch " + cls), document.createTextNode(name + " "), val);
      c.legend.append(item);
      line = c.lines[name] = { path, val };
    }
    const v = series[name];
    let d = "";
    let pen = false;
    v.forEach((x, k) => {
      if (x === null) {
        pen = false;
        return;
      }
      const px = 300 - (v.length - 1 - k) * (300 / (span - 1));
      const py = 100 - (x / top) * 98;
      d += (pen ? "L" : "M") + px.toFixed(1) + " " + py.toFixed(1);
      pen = true;
    });
    line.path.setAttribute("d", d || "M0 100");
    const lastv = v.length ? v[v.length - 1] : null;
    line.val.textContent = fmt(lastv);
    line.val.dataset.value = lastv === null ? "" : String(lastv);
  });
  c.max.textContent = "max " + fmt(top / 1.1);
}

function rate(a, b, f) {
  const dt = b.time - a.time;
  return dt > 0 ? (f(b) - f(a)) / dt : null;
}

function redraw() {
  if (samples.length < 2) return;
  const pairs = [];
  for (let i = 1; i < samples.length; i++) pairs.push([samples[i - 1], samples[i]]);
  draw("tokens", "Generated tokens/s", { "tok/s": pairs.map(([a, b]) => rate(a, b, (s) => s.engine.generated_tokens)) }, (x) => human(x));
  draw(
    "requests",
    "Requests running and queued",
    {
      running: samples.slice(1).map((s) => s.engine.running),
      queued: samples.slice(1).map((s) => s.engine.waiting),
    },
    (x) => human(x),
  );
  draw(
    "kv",
    "KV-cache blocks",
    {
      used: samples.slice(1).map((s) => s.kv.used),
      cached: samples.slice(1).map((s) => s.kv.cached),
      free: samples.slice(1).map((s) => s.kv.free),
    },
    (x) => human(x),
  );
  for (const [id, key, title] of [
    ["ttft", "ttft", "Time to first token (10 s window)"],
    ["itl", "itl", "Inter-token latency (10 s window)"],
  ]) {
    const p50 = [], p90 = [], p99 = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[Math.max(0, i - WINDOW)], b = samples[i];
      const bounds = b.latency.bounds;
      const d = b.latency[key].counts.map((c, k) => c - a.latency[key].counts[k]);
      p50.push(quantile(bounds, d, 0.5));
      p90.push(quantile(bounds, d, 0.9));
      p99.push(quantile(bounds, d, 0.99));
    }
    draw(id, title, { p50, p90, p99 }, ms);
  }
  // errors: responses per second by status >= 400 (a series appears with its first error)
  const statuses = new Set();
  for (const s of samples) for (const k of Object.keys(s.http)) if (+k >= 400) statuses.add(k);
  if (statuses.size) {
    const series = {};
    for (const st of [...statuses].sort()) series[st] = pairs.map(([a, b]) => rate(a, b, (s) => s.http[st] || 0));
    draw("errors", "Errors by status (/s)", series, (x) => human(x));
  }
  if (samples.some((s) => s.engine.energy_joules !== undefined)) {
    draw("energy", "Power (W)", { W: pairs.map(([a, b]) => (b.engine.energy_joules === undefined ? null : rate(a, b, (s) => s.engine.energy_joules))) }, (x) => human(x, " W"));
  }
}

// ---- panels ----

function panel(id, title, rows) {
  let p = $("panel-" + id);
  if (!rows) {
    if (p) p.remove();
    return;
  }
  if (!p) {
    p = el("section", "panel");
    p.id = "panel-" + id;
    $("panels").append(p);
  }
  const t = el("table");
  for (const [k, v] of rows) {
    const tr = el("tr");
    tr.append(el("th", null, k), el("td", null, String(v)));
    t.append(tr);
  }
  p.replaceChildren(el("h2", null, title), t);
}

function tenantsPanel(s) {
  let p = $("panel-tenants");
  if (!s.tenants) {
    if (p) p.remove();
    return;
  }
  if (!p) {
    p = el("section", "panel wide");
    p.id = "panel-tenants";
    $("panels").append(p);
  }
  const t = el("table");
  const head = el("tr");
  for (const h of ["Tenant", "Requests", "Prompt tok", "Generated tok", "Cached tok", "429 rpm", "429 tpm", "429 tpd", "403", "Energy J"])
    head.append(el("th", null, h));
  t.append(head);
  for (const x of s.tenants) {
    const tr = el("tr");
    for (const v of [x.name, x.requests, x.prompt_tokens, x.completion_tokens, x.cached_tokens, x.limited.requests_per_minute, x.limited.tokens_per_minute, x.limited.tokens_per_day, x.forbidden, human(x.energy_joules)])
      tr.append(el("td", null, String(v)));
    t.append(tr);
  }
  p.replaceChildren(el("h2", null, "Tenants (since start)"), t);
}

function panels(s) {
  const m = s.model;
  panel("model", "Model", [
    ["Id", m.id],
    ["Name", m.name || "–"],
    ["Architecture", m.arch],
    ["Weights", m.weight_type],
    ["Parameters", human(m.n_params)],
    ["File", human(m.file_bytes, "B")],
    ["Context", m.n_ctx],
    ["SHA-256", m.sha256 || "not computed"],
    ["Signature", m.signer ? "verified, signer " + m.signer : "not checked"],
  ]);
  const y = s.system;
  panel("system", "Engine and lockdown", [
    ["Kernels", y.isa],
    ["Threads", y.threads],
    ["Parallel sequences", s.engine.n_parallel],
    ["KV blocks", s.kv.total + " × " + s.kv.block_size + " positions"],
    ["Lockdown", y.sandbox + (y.egress_locked ? " (egress locked)" : y.sandbox_active ? " (egress NOT locked)" : "")],
    ["Region", y.region || "–"],
    ["API keys", y.auth_required ? "required" : "not required"],
    ["Uptime", human(s.uptime_s, " s")],
  ]);
  const f = s.finished;
  panel("totals", "Since start", [
    ["Prompt tokens", human(s.engine.prompt_tokens)],
    ["…from the prefix cache", human(s.engine.prompt_tokens_cached)],
    ["Generated tokens", human(s.engine.generated_tokens)],
    ["Finished: stop / length", f.stop + " / " + f.length],
    ["Cancelled", f.cancelled],
    ["Deadline / error", f.deadline + " / " + f.error],
    ["Preemptions", s.engine.preemptions],
    ["TTFT p50 / p99", ms(s.latency.ttft.p50) + " / " + ms(s.latency.ttft.p99)],
  ]);
  if (s.engine.energy_joules !== undefined) {
    const toks = s.engine.prompt_tokens + s.engine.generated_tokens;
    panel("energy", "Energy", [
      ["Total", human(s.engine.energy_joules, " J")],
      ["Tokens per joule", s.engine.energy_joules > 0 ? human(toks / s.engine.energy_joules) : "–"],
      ["Source", s.engine.energy_source || "–"],
    ]);
  }
  tenantsPanel(s);
}

// ---- polling ----

function headers() {
  const k = $("admin-key").value.trim();
  return k ? { Authorization: "Bearer " + k } : {};
}

async function poll() {
  let r;
  try {
    r = await fetch("/console/api/stats", { headers: headers(), cache: "no-store" });
  } catch {
    $("conn").textContent = "server unreachable";
    return;
  }
  if (r.status === 401 || r.status === 403) {
    $("conn").textContent = "This server needs an admin key for the console.";
    $("keyform").classList.add("need");
    return;
  }
  if (!r.ok) {
    $("conn").textContent = "HTTP " + r.status;
    return;
  }
  const s = await r.json();
  $("keyform").classList.remove("need");
  $("conn").textContent = "live · " + (s.admin ? "admin" : "no admin key: tenants hidden");
  const prev = samples[samples.length - 1];
  if (prev && s.time <= prev.time) return; // not newer than what is drawn
  if (prev && s.uptime_s < prev.uptime_s) samples.length = 0; // the server restarted
  samples.push(s);
  if (samples.length > KEEP) samples.shift();
  redraw();
  panels(s);
  adminPanels(s);
}

// The admin panels' module, fetched the first time the server has keys and the console
// an admin key (an open server's console never loads it); told of every snapshot after.
let adminModule = null;
function adminPanels(s) {
  if (!adminModule && !(s.admin && s.system.auth_required)) return;
  adminModule ||= import("./console-admin.js");
  adminModule.then((m) => m.adminPanels(s, headers()));
}

function init() {
  const k = sessionStorage.getItem(KEY_STORE);
  if (k) $("admin-key").value = k;
  $("keyform").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY_STORE, $("admin-key").value.trim());
    poll();
  });
  // one poll at a time: the next starts a period after the last ended, so a slow answer
  // never overlaps the next one
  const loop = async () => {
    try {
      await poll();
    } catch (e) {
      $("conn").textContent = "bad answer from the server: " + e;
    }
    setTimeout(loop, PERIOD_MS);
  };
  loop();
}

init();
