// browser.mjs - drives Debian's chromium (headless, through puppeteer-core) against a
// running `sov serve`: the chat page (streaming, stop, reload, IME, XSS) and the console
// (charts moving under load), and on a server with keys the key field, the console's admin
// key and its admin panels. Run by test_web_browser.py, which starts the servers:
//   node browser.mjs BASE_URL OUT_DIR CHROMIUM LOADGEN_PY KEYED_URL USER_KEY ADMIN_KEY
// Prints one JSON line {failures: [...], figures: {...}}; exits 1 when a check failed.
import { spawn } from "node:child_process";
import { performance } from "node:perf_hooks";
import puppeteer from "puppeteer-core";

const [base, outDir, chromium, loadgen, keyedBase, userKey, adminKey] = process.argv.slice(2);
const origin = new URL(base).origin;
const failures = [];
const figures = {};
const foreign = []; // requests to any origin but the server's
const pageErrors = [];
const check = (cond, what) => {
  if (!cond) failures.push(what);
  return cond;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function stats() {
  const r = await fetch(base + "/console/api/stats");
  return r.json();
}

async function waitFor(pred, ms, what) {
  const end = performance.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (performance.now() > end) {
      failures.push("timed out waiting for " + what);
      return v;
    }
    await sleep(50);
  }
}

// Every request the page makes goes through interception: the server's own are let
// through, anything else is logged and aborted. A test may add a stub for a path.
async function openPage(browser, stubs = {}, pageOrigin = origin) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1200, height: 900 });
  await page.setRequestInterception(true);
  page.on("request", (req) => {
    const u = req.url();
    if (!u.startsWith(pageOrigin + "/")) {
      foreign.push(u);
      return req.abort();
    }
    const stub = stubs[new URL(u).pathname];
    if (stub && req.method() === "POST") return req.respond(stub());
    return req.continue();
  });
  page.on("console", (m) => {
    if (m.type() === "error" && !/Failed to load resource|net::ERR_ABORTED/.test(m.text())) pageErrors.push(m.text());
  });
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  return page;
}

async function setField(page, sel, value) {
  await page.$eval(
    sel,
    (e, v) => {
      e.value = v;
      e.dispatchEvent(new Event("change"));
    },
    value,
  );
}

const history = (page) => page.evaluate(() => JSON.parse(localStorage.getItem("sov.chat.v1") || "{}").messages || []);
const running = (page) => page.$eval("#stop", (b) => !b.hidden);

async function chat(browser) {
  const page = await openPage(browser);
  await page.goto(base + "/", { waitUntil: "load" });
  await page.waitForSelector("#model option", { timeout: 30000 });
  const model = await page.$eval("#model", (s) => s.value);
  check(model.length > 0, "the model picker lists the served model");
  const shown = (sel) => page.$eval(sel, (e) => getComputedStyle(e).display !== "none");
  check(!(await shown("#key-row")) && (await shown("#send")) && !(await shown("#stop")), "an open server: no API-key field, Send shown, Stop hidden");

  // 1. a prompt typed and sent with Enter; the answer appears delta by delta
  await setField(page, "#temperature", "0");
  await setField(page, "#max-tokens", "48");
  await page.evaluate(() => {
    window.__states = [];
    new MutationObserver(() => {
      const b = document.querySelector("#conversation .msg.assistant:last-child .body");
      if (b) window.__states.push(b.textContent.length);
    }).observe(document.getElementById("conversation"), { subtree: true, childList: true, characterData: true });
  });
  await page.type("#prompt", "Once upon a time");
  const t0 = performance.now();
  await page.keyboard.press("Enter");
  await waitFor(async () => (await history(page)).length === 2 && !(await running(page)), 20000, "the first answer");
  figures.first_answer_ms = Math.round(performance.now() - t0);
  const states = await page.evaluate(() => [...new Set(window.__states)]);
  figures.dom_update_lengths = states.length;
  check(states.length >= 5, "the answer appeared in several DOM updates (distinct lengths: " + states.length + ")");
  const h1 = await history(page);
  check(h1[0].role === "user" && h1[0].content === "Once upon a time", "the prompt is the first history entry");
  // the page's answer is the server's own greedy answer to the same messages
  const ref = await (
    await fetch(base + "/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model, messages: [{ role: "user", content: "Once upon a time" }], temperature: 0, max_tokens: 48 }),
    })
  ).json();
  check(h1[1].content === ref.choices[0].message.content, "the streamed answer equals the API's answer to the same request");
  const fig = await page.$eval("#conversation .msg.assistant:last-child .figures", (e) => e.textContent);
  check(/\d+ tokens/.test(fig) && /TTFT \d+ ms/.test(fig) && /tok\/s/.test(fig) && /cached prompt tokens/.test(fig), "per-answer figures shown: " + fig);

  // regenerate asks again (a new request) and replaces the last answer; copy copies its text
  let posts = 0;
  page.on("request", (r) => r.method() === "POST" && r.url().endsWith("/v1/chat/completions") && posts++);
  await page.click("#conversation .msg.assistant:last-child button.regenerate");
  await waitFor(async () => posts === 1 && !(await running(page)) && (await history(page)).length === 2, 20000, "the regenerated answer");
  const h1r = await history(page);
  check(posts === 1 && h1r.length === 2 && h1r[1].content === ref.choices[0].message.content, "regenerate re-asked once and replaced the answer (greedy: the same text)");
  await browser.defaultBrowserContext().overridePermissions(origin, ["clipboard-read", "clipboard-write", "clipboard-sanitized-write"]);
  await page.click("#conversation .msg.assistant:last-child button.copy");
  await sleep(200);
  const copied = await page.evaluate(() => navigator.clipboard.readText().catch((e) => "ERR " + e));
  check(copied === h1r[1].content, "copy put the answer's text on the clipboard: " + JSON.stringify(copied).slice(0, 80));

  // 2. stop mid-answer: the request is cancelled on the server
  const before = (await stats()).finished.cancelled;
  await setField(page, "#max-tokens", "3000");
  await page.type("#prompt", "Tell me a long story");
  await page.keyboard.press("Enter");
  await waitFor(async () => (await page.$eval("#conversation .msg.assistant:last-child .body", (b) => b.textContent.length)) > 30, 20000, "the long answer to start");
  check(await running(page), "the long answer is still streaming when stop is pressed");
  check((await page.$eval("#send", (e) => getComputedStyle(e).display)) === "none", "Send is hidden while an answer streams");
  await page.click("#stop");
  const after = await waitFor(async () => {
    const s = await stats();
    return s.finished.cancelled > before ? s : null;
  }, 20000, "the server to count the cancellation");
  check(after && after.finished.cancelled === before + 1, "the server's metrics show one cancelled request");
  const metrics = await (await fetch(base + "/metrics")).text();
  check(new RegExp('sov_requests_finished_total\\{reason="cancelled"\\} ' + (before + 1)).test(metrics), "/metrics counts the cancellation too");
  await waitFor(async () => !(await running(page)), 5000, "the page to leave the running state");
  const h2 = await history(page);
  check(h2.length === 4 && h2[3].stats && h2[3].stats.stopped === true, "the stopped answer is kept, marked stopped");

  // 3. reload: the history is there
  await page.reload({ waitUntil: "load" });
  await page.waitForSelector("#conversation .msg");
  const msgs = await page.$$eval("#conversation .msg", (ms) => ms.map((m) => m.className));
  check(msgs.length === 4 && msgs[0].includes("user") && msgs[3].includes("assistant"), "after a reload the 4 messages are shown: " + msgs);
  const firstUser = await page.$eval("#conversation .msg.user .body", (b) => b.textContent);
  check(firstUser === "Once upon a time", "the reloaded history shows the first prompt");

  // 4. IME: Enter during a composition commits the syllable and must not send
  const n0 = (await history(page)).length;
  const composed = await page.evaluate(async () => {
    const p = document.getElementById("prompt");
    p.focus();
    p.dispatchEvent(new CompositionEvent("compositionstart", { data: "" }));
    p.value = "안녕하";
    p.dispatchEvent(new CompositionEvent("compositionupdate", { data: "하" }));
    const ev = new KeyboardEvent("keydown", { key: "Enter", code: "Enter", keyCode: 229, isComposing: true, bubbles: true, cancelable: true });
    p.dispatchEvent(ev);
    // a browser that reports keyCode 13 but isComposing=true, and one that sends neither
    // flag while the composition is open: both still composing
    p.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", code: "Enter", keyCode: 13, isComposing: true, bubbles: true, cancelable: true }));
    p.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", code: "Enter", keyCode: 13, bubbles: true, cancelable: true }));
    await new Promise((r) => setTimeout(r, 300));
    const during = { value: p.value, n: JSON.parse(localStorage.getItem("sov.chat.v1")).messages.length };
    p.value = "안녕하세요";
    p.dispatchEvent(new CompositionEvent("compositionend", { data: "세요" }));
    return during;
  });
  check(composed.value === "안녕하" && composed.n === n0, "Enter during an IME composition does not send (" + JSON.stringify(composed) + ")");
  await setField(page, "#max-tokens", "8");
  await page.keyboard.press("Enter"); // after compositionend: sends
  await waitFor(async () => (await history(page)).length === n0 + 2 && !(await running(page)), 20000, "the Korean prompt's answer");
  const korean = await page.$$eval("#conversation .msg.user .body", (bs) => bs.map((b) => b.textContent));
  check(korean[korean.length - 1] === "안녕하세요", "the Korean prompt is shown as typed: " + korean[korean.length - 1]);
  // real keyboard input of non-Latin text (insertText, as an IME commits it)
  await page.focus("#prompt");
  await page.keyboard.sendCharacter("한국어 テスト 中文");
  check((await page.$eval("#prompt", (p) => p.value)) === "한국어 テスト 中文", "non-Latin text typed into the prompt box");
  await page.$eval("#prompt", (p) => (p.value = ""));

  // 5. XSS, straight into the renderer
  const payload = 'Hi <script>window.__pwned=1</script> and <img src="/pwned.png" onerror="window.__pwned=2"> `<b>x</b>`\n\n```html\n<script>window.__pwned=3</script>\n```\n[x](javascript:window.__pwned=4)';
  const direct = await page.evaluate(async (text) => {
    const { renderMarkdown } = await import("/assets/markdown.js");
    const d = document.createElement("div");
    document.body.append(d);
    renderMarkdown(text, d);
    await new Promise((r) => setTimeout(r, 200));
    const out = { scripts: d.querySelectorAll("script").length, imgs: d.querySelectorAll("img").length, b: d.querySelectorAll("b").length, links: d.querySelectorAll("a").length, text: d.textContent, pwned: window.__pwned || 0, pre: d.querySelectorAll("pre code").length };
    d.remove();
    return out;
  }, payload);
  check(direct.scripts === 0 && direct.imgs === 0 && direct.b === 0 && direct.links === 0 && direct.pwned === 0, "the renderer makes no element from model text: " + JSON.stringify(direct));
  check(direct.text.includes("<script>window.__pwned=1</script>") && direct.text.includes('<img src="/pwned.png"') && direct.pre === 1, "the markup is shown as text");
  // the Markdown subset, element by element
  const md = "# Title\n\nSome **bold** and *it* and `code`.\nNext line\n\n- a\n- b\n\n2. x\n3. y\n\n> quoted\n\n```js\nlet a = 1 < 2;\n```\n[site](https://example.org/p?q=1)";
  const html = await page.evaluate(async (text) => {
    const { renderMarkdown } = await import("/assets/markdown.js");
    return renderMarkdown(text, document.createElement("div")).innerHTML;
  }, md);
  const want =
    "<h3>Title</h3><p>Some <strong>bold</strong> and <em>it</em> and <code>code</code>.<br>Next line</p>" +
    "<ul><li>a</li><li>b</li></ul><ol><li>x</li><li>y</li></ol><blockquote><p>quoted</p></blockquote>" +
    '<pre><code data-lang="js">let a = 1 &lt; 2;</code></pre>' +
    '<p><a href="https://example.org/p?q=1" rel="noopener noreferrer nofollow" target="_blank">site</a></p>';
  check(html === want, "Markdown renders to the expected elements:\n  " + html + "\n  " + want);
  await page.screenshot({ path: outDir + "/web-chat.png", fullPage: true });
  await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: "dark" }]);
  await page.screenshot({ path: outDir + "/web-chat-dark.png", fullPage: true });
  await page.close();
}

// The same payload from a stubbed /v1/chat/completions (a fake upstream): the real
// streaming path, split mid-tag across SSE events.
async function xssStream(browser) {
  const chunks = ["Look: <scr", "ipt>window.__pwned=5</scr", "ipt> <img src=x onerror=", "\"window.__pwned=6\"> **bold** done"];
  const sse =
    chunks.map((c) => "data: " + JSON.stringify({ object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: c }, finish_reason: null }] }) + "\n\n").join("") +
    "data: " + JSON.stringify({ object: "chat.completion.chunk", choices: [{ index: 0, delta: {}, finish_reason: "stop" }] }) + "\n\n" +
    "data: " + JSON.stringify({ object: "chat.completion.chunk", choices: [], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7, prompt_tokens_details: { cached_tokens: 0 }, energy_joules: 1.25, energy_source: "rapl" } }) + "\n\n" +
    "data: [DONE]\n\n";
  const page = await openPage(browser, { "/v1/chat/completions": () => ({ status: 200, contentType: "text/event-stream", body: sse }) });
  await page.goto(base + "/", { waitUntil: "load" });
  await page.evaluate(() => localStorage.clear());
  await page.reload({ waitUntil: "load" });
  await page.waitForSelector("#model option");
  await page.type("#prompt", "say something nasty");
  await page.keyboard.press("Enter");
  await waitFor(async () => (await history(page)).length === 2 && !(await running(page)), 20000, "the stubbed answer");
  await sleep(200);
  const r = await page.evaluate(() => {
    const m = document.querySelector("#conversation .msg.assistant:last-child");
    return { scripts: document.querySelectorAll("#conversation script").length, imgs: m.querySelectorAll(".body img").length, strong: m.querySelectorAll("strong").length, text: m.querySelector(".body").textContent, figures: m.querySelector(".figures").textContent, pwned: window.__pwned || 0 };
  });
  check(r.scripts === 0 && r.imgs === 0 && r.pwned === 0, "a streamed answer with <script> and <img onerror> makes no element: " + JSON.stringify(r));
  check(r.text.includes("<script>window.__pwned=5</script>") && r.strong === 1, "the streamed markup is shown as text, Markdown still rendered");
  check(/1\.25 J \(rapl\)/.test(r.figures), "energy is shown when the usage carries it: " + r.figures);
  await page.evaluate(() => localStorage.clear());
  await page.close();
}

async function consolePage(browser) {
  const page = await openPage(browser);
  await page.goto(base + "/console", { waitUntil: "load" });
  await page.waitForSelector('[data-chart="tokens"] path.series', { timeout: 30000 });
  const panels = await page.$$eval(".panel h2", (hs) => hs.map((h) => h.textContent));
  check(panels.includes("Model") && panels.includes("Engine and lockdown"), "model and engine panels shown: " + panels);
  check(panels.includes("Energy"), "the energy panel is shown (the server meters every engine step): " + panels);
  const arch = await page.$eval("#panel-model", (p) => p.textContent);
  check(arch.includes("llama") && arch.includes("F32"), "the model panel names architecture and type");
  // the load runs until the charts have moved (or 30 s), then is stopped
  const lg = spawn("/usr/bin/python3", [loadgen, "--url", base, "--clients", "4", "--rounds", "50", "--max-tokens", "64"], { stdio: "ignore" });
  const seen = new Set();
  let maxRate = 0, maxRunning = 0;
  const tEnd = performance.now() + 30000;
  while (performance.now() < tEnd && !(seen.size >= 4 && maxRate > 0 && maxRunning >= 1)) {
    await sleep(500);
    const snap = await page.evaluate(() => ({
      d: document.querySelector('[data-chart="tokens"] path.series').getAttribute("d"),
      rate: parseFloat(document.querySelector('[data-chart="tokens"] output').dataset.value || "0"),
      running: parseFloat(document.querySelector('[data-chart="requests"] output').dataset.value || "0"),
    }));
    seen.add(snap.d);
    maxRate = Math.max(maxRate, snap.rate);
    maxRunning = Math.max(maxRunning, snap.running);
  }
  figures.console_max_tok_s = Math.round(maxRate);
  figures.console_distinct_paths = seen.size;
  check(seen.size >= 4, "the tokens/s chart moved while the load ran (" + seen.size + " distinct paths)");
  check(maxRate > 0 && maxRunning >= 1, "the charts show tokens/s > 0 and running requests (" + maxRate + ", " + maxRunning + ")");
  // an error appears as its own series on the errors chart
  check((await page.$$('[data-chart="errors"]')).length === 0, "no errors chart before any error");
  await fetch(base + "/no-such-page");
  await page.waitForSelector('[data-chart="errors"] [data-series="404"]', { timeout: 30000 }).catch(() => failures.push("the errors chart shows a 404 series"));
  const lat = await page.$$eval('[data-chart="ttft"] output', (os) => os.map((o) => o.textContent));
  check(lat.some((t) => /ms$/.test(t)), "TTFT percentiles shown: " + lat);
  await page.screenshot({ path: outDir + "/web-console.png", fullPage: true });
  await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: "dark" }]);
  await page.setViewport({ width: 390, height: 844 }); // a phone
  await page.screenshot({ path: outDir + "/web-console-phone-dark.png", fullPage: true });
  lg.kill();
  await new Promise((r) => (lg.exitCode !== null || lg.signalCode !== null ? r() : lg.on("exit", r)));
  await page.close();
}

// A server with API keys: the chat asks for one, the console for an admin key.
async function keyed(browser) {
  const kOrigin = new URL(keyedBase).origin;
  const page = await openPage(browser, {}, kOrigin);
  await page.goto(keyedBase + "/", { waitUntil: "load" });
  await waitFor(() => page.$eval("#key-row", (r) => getComputedStyle(r).display !== "none"), 20000, "the API-key field");
  const st = await page.$eval("#status", (e) => e.textContent);
  check(/needs an API key/.test(st), "the chat says the server needs a key: " + st);
  check((await page.$$("#model option")).length === 0, "no models before the key");
  await page.type("#api-key", userKey);
  await page.$eval("#api-key", (e) => e.dispatchEvent(new Event("change")));
  await page.waitForSelector("#model option", { timeout: 30000 });
  await setField(page, "#max-tokens", "6");
  await page.type("#prompt", "Hello");
  await page.keyboard.press("Enter");
  await waitFor(async () => (await history(page)).length === 2 && !(await running(page)), 20000, "the keyed answer");
  const h = await history(page);
  check(h.length === 2 && !h[1].error && h[1].content.length > 0, "with the key the chat answers: " + JSON.stringify(h[1]).slice(0, 200));
  await page.goto(keyedBase + "/console", { waitUntil: "load" });
  await waitFor(async () => /admin key/.test(await page.$eval("#conn", (e) => e.textContent)), 20000, "the console to ask for an admin key");
  check((await page.$$("#panel-model")).length === 0, "no panels without the admin key");
  await page.type("#admin-key", adminKey);
  await page.click("#keyform button");
  await page.waitForSelector("#panel-tenants", { timeout: 30000 });
  const tenants = await page.$eval("#panel-tenants", (p) => p.textContent);
  check(tenants.includes("acme"), "with the admin key the tenants panel lists the tenant that chatted: " + tenants.slice(0, 200));
  await adminPanels(page, kOrigin);
  await page.close();
}

// The admin panels (console-admin.js) on the keyed server: create a key in the form, see
// it once, use it, revoke it (after a cancelled confirm), and verify the audit chain.
async function adminPanels(page, kOrigin) {
  const t0 = performance.now();
  await page.waitForSelector("#panel-keys #key-list tr[data-key]", { timeout: 30000 });
  await page.waitForSelector("#panel-quotas .tenant", { timeout: 30000 });
  await page.waitForSelector("#panel-audit #audit-list tr[data-seq]", { timeout: 30000 });
  const quotas = await page.$$eval("#panel-quotas .tenant", (ts) => ts.map((t) => t.dataset.tenant));
  check(quotas.includes("acme") && quotas.includes("ops"), "the quotas panel lists the tenants: " + quotas);
  await page.type("#key-create input[name=tenant]", "browser-made");
  await page.type("#key-create input[name=rpm]", "30");
  await page.type("#key-create input[name=tpd]", "100000");
  await page.click("#key-create button[type=submit]");
  await page.waitForSelector("#new-key:not([hidden]) #new-key-value", { timeout: 20000 });
  const secret = await page.$eval("#new-key-value", (e) => e.textContent);
  check(/^sov-[a-z2-7]{40}$/.test(secret), "the new key is shown: " + secret.slice(0, 12) + "…");
  const seen = await page.evaluate((k) => ({
    times: document.body.innerText.split(k).length - 1,
    stored: JSON.stringify({ ...localStorage }).includes(k) || JSON.stringify({ ...sessionStorage }).includes(k),
  }), secret);
  check(seen.times === 1 && !seen.stored, "the key is on the page exactly once and in no storage: " + JSON.stringify(seen));
  await browser.defaultBrowserContext().overridePermissions(kOrigin, ["clipboard-read", "clipboard-write", "clipboard-sanitized-write"]);
  await page.click("#new-key button.copy");
  await sleep(200);
  const copied = await page.evaluate(() => navigator.clipboard.readText().catch((e) => "ERR " + e));
  check(copied === secret, "Copy put the new key on the clipboard");
  const use = await fetch(keyedBase + "/v1/models", { headers: { Authorization: "Bearer " + secret } });
  check(use.status === 200, "the new key works at once: " + use.status);
  // a request under the new key's quota shows as a bar against its 30 requests/minute
  const chatted = await fetch(keyedBase + "/v1/chat/completions", {
    method: "POST",
    headers: { Authorization: "Bearer " + secret, "Content-Type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 4 }),
  });
  check(chatted.status === 200, "the new key chats: " + chatted.status);
  // (today's tokens: a minute window may roll over while the panel refreshes)
  const meter = await waitFor(() => page.evaluate(() => {
    const ms = [...document.querySelectorAll('#panel-quotas .tenant[data-tenant="browser-made"] .quota meter')];
    return ms.length === 2 && ms[1].value > 0 ? ms.map((m) => ({ value: m.value, max: m.max })) : null;
  }), 15000, "the new key's quota bars");
  check(meter && meter[0].max === 30 && meter[1].max === 100000 && meter[1].value > 0 && meter[1].value <= 100,
        "the quotas panel shows bars against 30 requests/minute and 100000 tokens/day: " + JSON.stringify(meter));
  await page.click("#new-key button.done");
  const gone = await page.evaluate((k) => document.body.innerText.includes(k) || !document.getElementById("new-key").hidden, secret);
  check(!gone, "after Done the key is gone from the page");
  const id = await waitFor(() => page.evaluate(() => {
    const rows = [...document.querySelectorAll("#key-list tr[data-key]")].filter((r) => r.children[1].textContent === "browser-made");
    return rows.length ? rows[0].dataset.key : null;
  }), 10000, "the new key in the list");
  const row = '#key-list tr[data-key="' + id + '"]';
  check((await page.$eval(row, (r) => r.textContent)).includes("30"), "the list shows its rpm");
  // revoke: a cancelled confirm keeps it, an accepted one revokes it
  page.once("dialog", (d) => d.dismiss());
  await page.click(row + " button.revoke");
  await sleep(300);
  check((await page.$eval(row, (r) => r.children[10].textContent)) === "active", "a cancelled confirm keeps the key");
  page.once("dialog", (d) => d.accept());
  await page.click(row + " button.revoke");
  await waitFor(() => page.$eval(row, (r) => r.children[10].textContent.startsWith("revoked")).catch(() => false), 10000, "the key shown revoked");
  const after = await fetch(keyedBase + "/v1/models", { headers: { Authorization: "Bearer " + secret } });
  check(after.status === 401, "the revoked key is refused: " + after.status);
  // the audit panel: the two admin actions are there, and the chain verifies
  await waitFor(() => page.$$eval("#audit-list tr[data-seq]", (rs) => rs.some((r) => r.textContent.includes("/revoke"))), 15000, "the revoke in the audit panel");
  await page.click("#audit-verify");
  const ok = await waitFor(() => page.$eval("#verify-result", (e) => e.dataset.ok || null), 20000, "the verify result");
  const verdict = await page.$eval("#verify-result .verdict", (e) => e.textContent).catch(() => "");
  check(ok === "true" && /^OK: \d+ records/.test(verdict), "the audit panel's verify says OK: " + verdict);
  figures.admin_panels_s = +((performance.now() - t0) / 1000).toFixed(1);
  await page.screenshot({ path: outDir + "/web-console-admin.png", fullPage: true });
}

const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-default-apps", "--disable-sync", "--disable-dev-shm-usage"],
});
const t0 = performance.now();
try {
  for (const [name, fn] of [["chat", chat], ["xss_stream", xssStream], ["console", consolePage], ["keyed", keyed]]) {
    const t = performance.now();
    try {
      await fn(browser);
    } catch (e) {
      failures.push(name + " threw: " + (e && e.stack ? e.stack : e));
    }
    figures[name + "_s"] = +((performance.now() - t) / 1000).toFixed(1);
  }
} finally {
  await browser.close();
}
figures.total_s = +((performance.now() - t0) / 1000).toFixed(1);
check(foreign.length === 0, "the pages requested only the server's origin; also: " + foreign.join(" "));
check(pageErrors.length === 0, "no page errors or CSP violations: " + pageErrors.join(" | "));
console.log(JSON.stringify({ failures, figures, foreign }));
process.exit(failures.length ? 1 : 0);
