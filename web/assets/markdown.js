// markdown.js - renders a model's Markdown answer as DOM nodes.
//
// Model output is untrusted: every piece of its text reaches the page through
// document.createTextNode / textContent, never parsed as markup, so "<script>" or
// "<img onerror=...>" in an answer is shown as those characters and never becomes an
// element. The subset: fenced code blocks (``` with an optional language), headings,
// bullet and numbered lists, block quotes, paragraphs, and inline `code`, **bold**,
// *italic* and [links](target) — a link only for an http(s) target, opened with
// rel=noopener noreferrer; anything else stays text.

const el = (tag, cls) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  return e;
};

// Inline spans of one line of text, appended to parent.
function inline(text, parent) {
  const re = /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)|\*\*(?=\S)([\s\S]*?\S)\*\*|\*(?=\S)([^*]*?\S)\*|\[([^\]\n]+)\]\(([^)\s]+)\)/g;
  let last = 0;
  for (let m; (m = re.exec(text)) !== null; ) {
    if (m.index > last) parent.append(document.createTextNode(text.slice(last, m.index)));
    if (m[1]) {
      const c = el("code");
      c.textContent = m[2];
      parent.append(c);
    } else if (m[3] !== undefined) {
      const b = el("strong");
      inline(m[3], b);
      parent.append(b);
    } else if (m[4] !== undefined) {
      const i = el("em");
      inline(m[4], i);
      parent.append(i);
    } else {
      const url = m[6];
      if (/^https?:\/\//i.test(url)) {
        const a = el("a");
        a.href = url;
        a.rel = "noopener noreferrer nofollow";
        a.target = "_blank";
        a.textContent = m[5];
        parent.append(a);
      } else {
        parent.append(document.createTextNode(m[0]));
      }
    }
    last = re.lastIndex;
  }
  if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
}

// Appends the lines of a paragraph, with line breaks between them.
function paragraph(lines, parent) {
  const p = el("p");
  lines.forEach((l, i) => {
    if (i) p.append(el("br"));
    inline(l, p);
  });
  parent.append(p);
}

// Renders text into container (emptied first). Returns container.
export function renderMarkdown(text, container) {
  container.replaceChildren();
  const lines = String(text).replace(/\r\n?/g, "\n").split("\n");
  let para = [];
  const flush = () => {
    if (para.length) paragraph(para, container);
    para = [];
  };
  for (let i = 0; i < lines.length; ) {
    const line = lines[i];
    const fence = /^\s*(```+|~~~+)\s*([\w.+#-]*)\s*$/.exec(line);
    if (fence) {
      flush();
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i++; // the closing fence (or the end of an answer still streaming)
      const pre = el("pre");
      const code = el("code");
      if (fence[2]) code.dataset.lang = fence[2];
      code.textContent = body.join("\n");
      pre.append(code);
      container.append(pre);
      continue;
    }
    const h = /^(#{1,6})\s+(.*)$/.exec(line);
    if (h) {
      flush();
      const e = el("h" + Math.min(6, h[1].length + 2)); // h3..h6: below the page's own
      inline(h[2], e);
      container.append(e);
      i++;
      continue;
    }
    const li = /^\s*([-*+]|\d{1,9}[.)])\s+(.*)$/.exec(line);
    if (li) {
      flush();
      const ordered = /\d/.test(li[1]);
      const list = el(ordered ? "ol" : "ul");
      while (i < lines.length) {
        const m = /^\s*([-*+]|\d{1,9}[.)])\s+(.*)$/.exec(lines[i]);
        if (!m || /\d/.test(m[1]) !== ordered) break;
        const item = el("li");
        inline(m[2], item);
        list.append(item);
        i++;
      }
      container.append(list);
      continue;
    }
    if (/^\s*>/.test(line)) {
      flush();
      const quoted = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s*>\s?/, ""));
      const q = el("blockquote");
      renderInto(quoted.join("\n"), q);
      container.append(q);
      continue;
    }
    if (line.trim() === "") {
      flush();
      i++;
      continue;
    }
    para.push(line);
    i++;
  }
  flush();
  return container;
}

function renderInto(text, parent) {
  const box = el("div");
  renderMarkdown(text, box);
  parent.append(...box.childNodes);
}
