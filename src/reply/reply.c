/* reply.c - taking a model's reply apart into content, reasoning and tool calls (see
 * reply.h for the formats).
 *
 * One parser serves the whole reply and the streaming case: reply_parse() with final
 * false holds back whatever a continuation could still change (a suffix that may be the
 * start of a marker, a call whose end has not been generated, trailing whitespace), so a
 * stream only ever appends. reply_stream re-parses the text so far at each piece and sends
 * the difference: linear work per piece, a few microseconds for replies of a few thousand
 * tokens, and no second parser to keep in step with the first. */
#include "reply/reply.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

#define NPOS ((size_t)-1)

static const char *const format_names[REPLY_FORMAT_COUNT] = {
    "plain", "hermes", "glm", "llama3", "mistral", "deepseek", "harmony", "functionary", "granite", "kimi", "qwen-xml"};

const char *reply_format_name(reply_format f) {
    return (unsigned)f < REPLY_FORMAT_COUNT ? format_names[f] : "unknown";
}

/* ---- text helpers ---------------------------------------------------------------- */

static size_t find(const char *t, size_t len, size_t from, const char *needle) {
    if (from > len) return NPOS;
    const char *p = memmem(t + from, len - from, needle, strlen(needle));
    return p ? (size_t)(p - t) : NPOS;
}

static bool starts(const char *t, size_t len, size_t at, const char *s) {
    const size_t n = strlen(s);
    return at <= len && len - at >= n && memcmp(t + at, s, n) == 0;
}

/* Length of the longest suffix of t[from, len) that is a proper prefix of needle: text a
 * stream must hold back, as the next piece may complete the marker. */
static size_t partial_suffix(const char *t, size_t from, size_t len, const char *needle) {
    const size_t n = strlen(needle);
    for (size_t k = n - 1; k > 0; k--)
        if (len - from >= k && memcmp(t + len - k, needle, k) == 0) return k;
    return 0;
}

static bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

static size_t skip_ws(const char *t, size_t len, size_t at) {
    while (at < len && is_ws(t[at])) at++;
    return at;
}

typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *p, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    if (n) memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

/* ---- calls ------------------------------------------------------------------------- */

typedef struct parse_state {
    const reply_params *p;
    bool final;
    sbuf content, reasoning;
    reply_call *calls;
    size_t n_calls, cap_calls;
    bool oom;
} parse_state;

typedef enum block_result { BLOCK_OK, BLOCK_INCOMPLETE, BLOCK_BAD, BLOCK_BAD_HERE } block_result;
/* BLOCK_BAD: the block up to *end is kept as content; BLOCK_BAD_HERE: its end is not
 * known, so only the marker is content and scanning goes on after it. */

static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static char *make_id(uint64_t seed, size_t index) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    char *id = malloc(5 + 24 + 1);
    if (!id) return NULL;
    memcpy(id, "call_", 5);
    uint64_t h = mix(seed ^ mix((uint64_t)index + 1));
    for (int i = 0; i < 24; i++) {
        if (i % 10 == 0) h = mix(h + (uint64_t)i);
        id[5 + i] = alphabet[h % 62];
        h /= 62;
    }
    id[29] = '\0';
    return id;
}

static bool good_name(const char *s, size_t n) {
    if (n == 0 || n > 256) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == '"' || s[i] == '<' || s[i] == '>' || s[i] == '[' || s[i] == ']' ||
            s[i] == '{' || s[i] == '}' || s[i] == ' ')
            return false;
    return true;
}

/* The arguments as JSON text: an object, or a string holding one. NULL when neither. */
static char *args_text(json_t *args) {
    json_t *owned = NULL;
    if (!args) args = owned = json_object();
    if (json_is_string(args)) {
        args = owned = json_loadb(json_string_value(args), json_string_length(args), 0, NULL);
        if (!args) return NULL;
    }
    char *s = json_is_object(args) ? json_dumps(args, 0) : NULL; /* ", " and ": " as Python's json.dumps */
    json_decref(owned);
    return s;
}

/* Adds a call (name is copied; arguments_json is taken). False on a bad name or no memory. */
static bool add_call(parse_state *st, const char *name, size_t name_len, const char *id, size_t id_len,
                     char *arguments_json) {
    if (!arguments_json || !good_name(name, name_len)) {
        free(arguments_json);
        return false;
    }
    if (st->p && st->p->max_calls && st->n_calls >= st->p->max_calls) { /* a well-formed call, not kept */
        free(arguments_json);
        return true;
    }
    if (st->n_calls == st->cap_calls) {
        const size_t cap = st->cap_calls ? 2 * st->cap_calls : 4;
        reply_call *c = realloc(st->calls, cap * sizeof *c);
        if (!c) {
            st->oom = true;
            free(arguments_json);
            return false;
        }
        st->calls = c;
        st->cap_calls = cap;
    }
    reply_call *c = &st->calls[st->n_calls];
    c->name = strndup(name, name_len);
    c->id = id && id_len ? strndup(id, id_len) : make_id(st->p->id_seed, st->n_calls);
    c->arguments = arguments_json;
    if (!c->name || !c->id) {
        free(c->name);
        free(c->id);
        free(c->arguments);
        st->oom = true;
        return false;
    }
    st->n_calls++;
    return true;
}

static void drop_calls(parse_state *st, size_t keep) {
    while (st->n_calls > keep) {
        reply_call *c = &st->calls[--st->n_calls];
        free(c->id);
        free(c->name);
        free(c->arguments);
    }
}

/* A call from an object {"name": ..., "arguments"|"parameters": ..., "id"?: ...}
 * (also OpenAI's {"type": "function", "function": {...}}). */
static bool call_from_json(parse_state *st, json_t *o) {
    if (!json_is_object(o)) return false;
    json_t *fn = json_object_get(o, "function");
    if (json_is_object(fn)) o = fn;
    json_t *name = json_object_get(o, "name");
    json_t *args = json_object_get(o, "arguments");
    if (!args) args = json_object_get(o, "parameters");
    json_t *id = json_object_get(o, "id");
    if (!json_is_string(name)) return false;
    const char *ids = json_is_string(id) ? json_string_value(id) : NULL;
    return add_call(st, json_string_value(name), json_string_length(name), ids, ids ? strlen(ids) : 0,
                    args_text(args));
}

/* Parses one JSON value at the start of t[at, len) (after whitespace). BLOCK_OK with the
 * value and *end after it; BLOCK_INCOMPLETE when the text ends inside it (and more may
 * come); BLOCK_BAD otherwise. */
static block_result json_at(const parse_state *st, const char *t, size_t len, size_t at, json_t **out, size_t *end) {
    at = skip_ws(t, len, at);
    if (at == len) return st->final ? BLOCK_BAD : BLOCK_INCOMPLETE;
    json_error_t err;
    json_t *v = json_loadb(t + at, len - at, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &err);
    if (!v) {
        /* an error at the very end may be the text being cut there ("tru", "1.", "\\u00",
         * half a UTF-8 character): wait for more */
        const bool at_end = json_error_code(&err) == json_error_premature_end_of_input ||
                            (size_t)err.position + 8 >= len - at;
        return at_end && !st->final ? BLOCK_INCOMPLETE : BLOCK_BAD;
    }
    *out = v;
    *end = at + (size_t)err.position;
    return BLOCK_OK;
}

/* ---- one block per format ---------------------------------------------------------- */

/* <tool_call>{json}</tool_call> */
static block_result block_hermes(parse_state *st, const char *t, size_t len, size_t m, size_t *end) {
    const size_t b = m + strlen("<tool_call>");
    const size_t close = find(t, len, b, "</tool_call>");
    if (close == NPOS) return BLOCK_INCOMPLETE;
    *end = close + strlen("</tool_call>");
    json_t *v = NULL;
    size_t vend;
    const block_result r = json_at(&(parse_state){.final = true}, t, close, b, &v, &vend);
    const bool ok = r == BLOCK_OK && skip_ws(t, close, vend) == close && call_from_json(st, v);
    json_decref(v);
    return ok ? BLOCK_OK : BLOCK_BAD;
}

/* A parameter's value as the model wrote it: JSON when it is a number, boolean, null,
 * array or object, else the text itself (a string). */
static json_t *xml_value(const char *v, size_t n) {
    json_t *j = json_loadb(v, n, JSON_DECODE_ANY, NULL);
    if (j && !json_is_string(j)) return j;
    json_decref(j);
    return json_stringn(v, n);
}

/* <tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value>...</tool_call> */
static block_result block_glm(parse_state *st, const char *t, size_t len, size_t m, size_t *end) {
    const size_t b = m + strlen("<tool_call>");
    const size_t close = find(t, len, b, "</tool_call>");
    if (close == NPOS) return BLOCK_INCOMPLETE;
    *end = close + strlen("</tool_call>");
    size_t k = find(t, close, b, "<arg_key>");
    size_t ne = k == NPOS ? close : k;
    size_t ns = skip_ws(t, ne, b);
    while (ne > ns && is_ws(t[ne - 1])) ne--;
    json_t *args = json_object();
    bool ok = args != NULL;
    while (ok && k != NPOS) {
        const size_t ks = k + strlen("<arg_key>"), ke = find(t, close, ks, "</arg_key>");
        const size_t vs0 = ke == NPOS ? NPOS : skip_ws(t, close, ke + strlen("</arg_key>"));
        if (ke == NPOS || !starts(t, close, vs0, "<arg_value>")) {
            ok = false;
            break;
        }
        const size_t vs = vs0 + strlen("<arg_value>"), ve = find(t, close, vs, "</arg_value>");
        if (ve == NPOS) {
            ok = false;
            break;
        }
        char *key = strndup(t + ks, ke - ks);
        json_t *val = xml_value(t + vs, ve - vs);
        ok = key && val;
        if (ok) ok = json_object_set_new(args, key, val) == 0;
        else json_decref(val);
        free(key);
        const size_t next = skip_ws(t, close, ve + strlen("</arg_value>"));
        k = next == close ? NPOS : (starts(t, close, next, "<arg_key>") ? next : (ok = false, NPOS));
    }
    ok = ok && add_call(st, t + ns, ne - ns, NULL, 0, args_text(args));
    json_decref(args);
    return ok ? BLOCK_OK : BLOCK_BAD;
}

/* <tool_call>\n<function=name>\n<parameter=k>\nv\n</parameter>\n</function>\n</tool_call> */
static block_result block_qwen_xml(parse_state *st, const char *t, size_t len, size_t m, size_t *end) {
    const size_t close = find(t, len, m + strlen("<tool_call>"), "</tool_call>");
    if (close == NPOS) return BLOCK_INCOMPLETE;
    *end = close + strlen("</tool_call>");
    size_t at = skip_ws(t, close, m + strlen("<tool_call>"));
    if (!starts(t, close, at, "<function=")) return BLOCK_BAD;
    const size_t ns = at + strlen("<function="), ne = find(t, close, ns, ">");
    if (ne == NPOS) return BLOCK_BAD;
    json_t *args = json_object();
    bool ok = args != NULL, done = false;
    at = ne + 1;
    while (ok && !done) {
        at = skip_ws(t, close, at);
        if (starts(t, close, at, "</function>")) {
            done = true;
            at = skip_ws(t, close, at + strlen("</function>"));
            ok = at == close;
        } else if (starts(t, close, at, "<parameter=")) {
            const size_t ks = at + strlen("<parameter="), ke = find(t, close, ks, ">");
            const size_t ve = ke == NPOS ? NPOS : find(t, close, ke + 1, "</parameter>");
            if (ve == NPOS) {
                ok = false;
                break;
            }
            size_t vs = ke + 1, vn = ve;
            if (vs < vn && t[vs] == '\n') vs++;
            if (vn > vs && t[vn - 1] == '\n') vn--;
            char *key = strndup(t + ks, ke - ks);
            json_t *val = xml_value(t + vs, vn - vs);
            ok = key && *key && val;
            if (ok) ok = json_object_set_new(args, key, val) == 0; /* takes val either way */
            else json_decref(val);
            free(key);
            at = ve + strlen("</parameter>");
        } else {
            ok = false;
        }
    }
    ok = ok && add_call(st, t + ns, ne - ns, NULL, 0, args_text(args));
    json_decref(args);
    return ok ? BLOCK_OK : BLOCK_BAD;
}

/* <function=name>{json}</function> */
static block_result block_function_tag(parse_state *st, const char *t, size_t len, size_t m, size_t *end) {
    const size_t ns = m + strlen("<function="), ne = find(t, len, ns, ">");
    if (ne == NPOS) return len - ns > 256 ? BLOCK_BAD_HERE : BLOCK_INCOMPLETE;
    const size_t close = find(t, len, ne + 1, "</function>");
    if (close == NPOS) return BLOCK_INCOMPLETE;
    *end = close + strlen("</function>");
    json_t *v = NULL;
    size_t vend;
    const block_result r = json_at(&(parse_state){.final = true}, t, close, ne + 1, &v, &vend);
    const bool ok = r == BLOCK_OK && skip_ws(t, close, vend) == close && json_is_object(v) &&
                    add_call(st, t + ns, ne - ns, NULL, 0, args_text(v));
    json_decref(v);
    return ok ? BLOCK_OK : BLOCK_BAD;
}

/* A JSON array of call objects at t[at...] (Mistral v3, Granite). */
static block_result call_array(parse_state *st, const char *t, size_t len, size_t at, size_t *end) {
    json_t *v = NULL;
    const block_result r = json_at(st, t, len, at, &v, end);
    if (r != BLOCK_OK) return r == BLOCK_BAD ? BLOCK_BAD_HERE : r;
    bool ok = json_is_array(v) && json_array_size(v) > 0;
    const size_t before = st->n_calls;
    for (size_t i = 0; ok && i < json_array_size(v); i++) ok = call_from_json(st, json_array_get(v, i));
    if (!ok) drop_calls(st, before);
    json_decref(v);
    return ok ? BLOCK_OK : BLOCK_BAD;
}

/* [TOOL_CALLS][{...}] or [TOOL_CALLS]name[CALL_ID]id[ARGS]{...} */
static block_result block_mistral(parse_state *st, const char *t, size_t len, size_t m, size_t *end) {
    const size_t b = skip_ws(t, len, m + strlen("[TOOL_CALLS]"));
    if (b == len) return st->final ? BLOCK_BAD_HERE : BLOCK_INCOMPLETE;
    if (t[b] == '[') return call_array(st, t, len, b, end);
    const size_t args = find(t, len, b, "[ARGS]");
    size_t nl = b;
    while (nl < len && good_name(t + nl, 1)) nl++;
    if (args == NPOS) { /* still writing the name, a [CALL_ID] or the [ARGS] marker? */
        if (st->final || len - b > 512) return BLOCK_BAD_HERE;
        if (nl == len || starts(t, len, nl, "[CALL_ID]")) return BLOCK_INCOMPLETE;
        const size_t rest = len - nl;
        if ((rest < 6 && !memcmp(t + nl, "[ARGS]", rest)) || (rest < 9 && !memcmp(t + nl, "[CALL_ID]", rest)))
            return BLOCK_INCOMPLETE;
        return BLOCK_BAD_HERE;
    }
    const size_t id_at = find(t, args, b, "[CALL_ID]");
    const size_t name_end = id_at == NPOS ? args : id_at;
    const size_t id_s = id_at == NPOS ? 0 : id_at + strlen("[CALL_ID]");
    json_t *v = NULL;
    const block_result r = json_at(st, t, len, args + strlen("[ARGS]"), &v, end);
    if (r != BLOCK_OK) return r == BLOCK_BAD ? BLOCK_BAD_HERE : r;
    const bool ok = json_is_object(v) && add_call(st, t + b, name_end - b, id_at == NPOS ? NULL : t + id_s,
                                                  id_at == NPOS ? 0 : args - id_s, args_text(v));
    json_decref(v);
    return ok ? BLOCK_OK : BLOCK_BAD;
}

/* <|tool_call|>[{...}] */
static block_result block_granite(parse_state *st, const char *t, size_t len, size_t m, size_t *end) {
    return call_array(st, t, len, m + strlen("<|tool_call|>"), end);
}

/* A section of calls between begin and end markers (DeepSeek, Kimi): incomplete until the
 * end marker, which a reply may also leave out at its very end. */
static block_result section(parse_state *st, const char *t, size_t len, size_t m, const char *open,
                            const char *close_marker, size_t *end,
                            bool (*one)(parse_state *, const char *, size_t, size_t, size_t *)) {
    const size_t b = m + strlen(open);
    size_t close = find(t, len, b, close_marker);
    if (close == NPOS && !st->final) return BLOCK_INCOMPLETE;
    *end = close == NPOS ? len : close + strlen(close_marker);
    if (close == NPOS) close = len;
    const size_t before = st->n_calls;
    size_t at = skip_ws(t, close, b);
    bool ok = at < close;
    while (ok && at < close) {
        size_t next;
        ok = one(st, t, close, at, &next);
        at = skip_ws(t, close, next);
    }
    if (!ok) drop_calls(st, before);
    return ok ? BLOCK_OK : BLOCK_BAD;
}

#define DS_CALL_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define DS_CALL_END "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "end\xef\xbd\x9c>"
#define DS_SEP "<\xef\xbd\x9ctool\xe2\x96\x81" "sep\xef\xbd\x9c>"
#define DS_CALLS_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define DS_CALLS_END "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "end\xef\xbd\x9c>"

/* DeepSeek: <｜tool▁call▁begin｜>function<｜tool▁sep｜>name\n```json\n{...}\n```<｜tool▁call▁end｜>
 * (V3, R1) or <｜tool▁call▁begin｜>name<｜tool▁sep｜>{...}<｜tool▁call▁end｜> (V3.1) */
static bool deepseek_one(parse_state *st, const char *t, size_t len, size_t at, size_t *next) {
    if (!starts(t, len, at, DS_CALL_BEGIN)) return false;
    const size_t b = at + strlen(DS_CALL_BEGIN), sep = find(t, len, b, DS_SEP), e = find(t, len, b, DS_CALL_END);
    if (sep == NPOS || e == NPOS || sep > e) return false;
    *next = e + strlen(DS_CALL_END);
    size_t ns = sep + strlen(DS_SEP), ne, js, je = e;
    if (sep - b == 8 && memcmp(t + b, "function", 8) == 0) { /* name\n```json\n{...}\n``` */
        const size_t fence = find(t, e, ns, "```");
        if (fence == NPOS) return false;
        ne = fence;
        js = fence + 3;
        if (starts(t, e, js, "json")) js += 4;
        const size_t close = find(t, e, js, "```");
        if (close != NPOS) je = close;
    } else {
        ne = sep;
        js = ns;
        ns = b;
    }
    while (ne > ns && is_ws(t[ne - 1])) ne--;
    json_t *v = NULL;
    size_t vend;
    const bool ok = json_at(&(parse_state){.final = true}, t, je, js, &v, &vend) == BLOCK_OK &&
                    skip_ws(t, je, vend) == je && json_is_object(v) &&
                    add_call(st, t + ns, ne - ns, NULL, 0, args_text(v));
    json_decref(v);
    return ok;
}

static block_result block_deepseek(parse_state *st, const char *t, size_t len, size_t m, size_t *end) {
    return section(st, t, len, m, DS_CALLS_BEGIN, DS_CALLS_END, end, deepseek_one);
}

/* Kimi K2: <|tool_call_begin|>functions.name:0<|tool_call_argument_begin|>{...}<|tool_call_end|> */
static bool kimi_one(parse_state *st, const char *t, size_t len, size_t at, size_t *next) {
    static const char B[] = "<|tool_call_begin|>", A[] = "<|tool_call_argument_begin|>", E[] = "<|tool_call_end|>";
    if (!starts(t, len, at, B)) return false;
    const size_t ids = at + strlen(B), a = find(t, len, ids, A), e = find(t, len, ids, E);
    if (a == NPOS || e == NPOS || a > e) return false;
    *next = e + strlen(E);
    size_t ide = a;
    while (ide > ids && is_ws(t[ide - 1])) ide--;
    size_t ns = ids, ne = ide;
    if (starts(t, ide, ns, "functions.")) ns += strlen("functions.");
    for (size_t i = ne; i > ns; i--)
        if (t[i - 1] == ':') {
            ne = i - 1;
            break;
        }
    json_t *v = NULL;
    size_t vend;
    const bool ok = json_at(&(parse_state){.final = true}, t, e, a + strlen(A), &v, &vend) == BLOCK_OK &&
                    skip_ws(t, e, vend) == e && json_is_object(v) &&
                    add_call(st, t + ns, ne - ns, t + ids, ide - ids, args_text(v));
    json_decref(v);
    return ok;
}

static block_result block_kimi(parse_state *st, const char *t, size_t len, size_t m, size_t *end) {
    return section(st, t, len, m, "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", end, kimi_one);
}

typedef block_result (*block_fn)(parse_state *, const char *, size_t, size_t, size_t *);

static void marker_of(reply_format f, const char **marker, block_fn *fn) {
    *marker = NULL;
    *fn = NULL;
    switch (f) {
    case REPLY_HERMES: *marker = "<tool_call>", *fn = block_hermes; break;
    case REPLY_GLM: *marker = "<tool_call>", *fn = block_glm; break;
    case REPLY_QWEN_XML: *marker = "<tool_call>", *fn = block_qwen_xml; break;
    case REPLY_LLAMA3: *marker = "<function=", *fn = block_function_tag; break;
    case REPLY_MISTRAL: *marker = "[TOOL_CALLS]", *fn = block_mistral; break;
    case REPLY_DEEPSEEK: *marker = DS_CALLS_BEGIN, *fn = block_deepseek; break;
    case REPLY_GRANITE: *marker = "<|tool_call|>", *fn = block_granite; break;
    case REPLY_KIMI: *marker = "<|tool_calls_section_begin|>", *fn = block_kimi; break;
    default: break;
    }
}

/* ---- the reply after any reasoning --------------------------------------------------- */

/* Content from t[from, stop). (A partial parse drops the content's trailing whitespace
 * at the end, in reply_parse: it may turn out to sit before a call.) */
static void add_content(parse_state *st, const char *t, size_t from, size_t stop) {
    sb_add(&st->content, t + from, stop - from);
}

/* Llama 3.x: the whole reply one JSON object (or several joined by ';'). Returns false
 * when the reply is not that shape (it is then parsed as text). */
static bool llama3_json(parse_state *st, const char *t, size_t len, size_t pos, bool *hold) {
    *hold = false;
    size_t at = skip_ws(t, len, pos);
    if (!st->final && len - at < strlen("<|python_tag|>") && memcmp(t + at, "<|python_tag|>", len - at) == 0 &&
        at < len) {
        *hold = true;
        return true;
    }
    if (starts(t, len, at, "<|python_tag|>")) {
        at = skip_ws(t, len, at + strlen("<|python_tag|>"));
        if (at == len && !st->final) {
            *hold = true;
            return true;
        }
    }
    if (at >= len || t[at] != '{') return false;
    if (!st->final) { /* a reply that opens a JSON object is held to its end */
        *hold = true;
        return true;
    }
    const size_t before = st->n_calls;
    bool ok = true;
    while (ok && at < len) {
        json_t *v = NULL;
        size_t end;
        ok = json_at(st, t, len, at, &v, &end) == BLOCK_OK && json_is_object(v) &&
             json_object_get(v, "name") != NULL && call_from_json(st, v);
        json_decref(v);
        if (!ok) break;
        at = skip_ws(t, len, end);
        if (at < len && t[at] == ';') at = skip_ws(t, len, at + 1);
    }
    if (!ok) drop_calls(st, before);
    return ok;
}

static void parse_calls(parse_state *st, const char *t, size_t len, size_t pos) {
    const char *marker;
    block_fn fn;
    marker_of(st->p->format, &marker, &fn);
    if (st->p->format == REPLY_LLAMA3) {
        bool hold;
        if (llama3_json(st, t, len, pos, &hold)) return;
    }
    size_t at = pos;
    while (at <= len) {
        const size_t m = marker ? find(t, len, at, marker) : NPOS;
        if (m == NPOS) {
            add_content(st, t, at, st->final || !marker ? len : len - partial_suffix(t, at, len, marker));
            return;
        }
        add_content(st, t, at, m);
        size_t end = m + strlen(marker);
        const block_result r = fn(st, t, len, m, &end);
        if (r == BLOCK_INCOMPLETE) {
            if (st->final) sb_add(&st->content, t + m, len - m);
            return;
        }
        if (r == BLOCK_BAD || r == BLOCK_BAD_HERE) {
            if (r == BLOCK_BAD_HERE) end = m + strlen(marker);
            sb_add(&st->content, t + m, end - m);
        }
        at = end;
    }
}

/* ---- gpt-oss (harmony) ------------------------------------------------------------- */

/* Messages: [<|start|>assistant][ to=functions.f]<|channel|>name[ to=functions.f][ <|constrain|>json]
 * <|message|>body<|end|> | <|call|> | <|return|> */
static void parse_harmony(parse_state *st, const char *t, size_t len) {
    static const char *const ends[] = {"<|end|>", "<|call|>", "<|return|>", "<|start|>"};
    static const char *const openers[] = {"<|start|>", "<|channel|>", " to=", "<|message|>"};
    size_t at = 0;
    while (at < len) {
        /* a message starts with one of the openers; text that does not is content up to
         * the next <|start|> or <|channel|> (a model that does not follow the format) */
        bool opener = false, maybe = false;
        for (size_t i = 0; i < sizeof openers / sizeof openers[0]; i++) {
            const size_t k = strlen(openers[i]);
            opener = opener || starts(t, len, at, openers[i]);
            maybe = maybe || (len - at < k && !memcmp(t + at, openers[i], len - at));
        }
        if (!opener) {
            if (maybe && !st->final) return;
            const size_t a = find(t, len, at + 1, "<|start|>"), b = find(t, len, at + 1, "<|channel|>");
            const size_t o = a < b ? a : b;
            if (o == NPOS) {
                size_t hold = 0;
                for (size_t i = 0; !st->final && i < 2; i++) {
                    const size_t k = partial_suffix(t, at, len, openers[i]);
                    if (k > hold) hold = k;
                }
                add_content(st, t, at, len - hold);
                return;
            }
            add_content(st, t, at, o);
            at = o;
            continue;
        }
        size_t h = at;
        if (starts(t, len, h, "<|start|>")) h += strlen("<|start|>");
        const size_t msg = find(t, len, h, "<|message|>");
        if (msg == NPOS) { /* a header being written (or never finished: content) */
            if (st->final) add_content(st, t, at, len);
            return;
        }
        char channel[32] = "";
        const size_t ch = find(t, msg, h, "<|channel|>");
        if (ch != NPOS) {
            size_t cs = ch + strlen("<|channel|>"), ce = cs;
            while (ce < msg && !is_ws(t[ce]) && t[ce] != '<' && ce - cs < sizeof channel - 1) ce++;
            memcpy(channel, t + cs, ce - cs);
            channel[ce - cs] = '\0';
        }
        const size_t to = find(t, msg, h, "to=");
        size_t rs = NPOS, re = NPOS;
        if (to != NPOS) {
            rs = to + 3;
            re = rs;
            while (re < msg && !is_ws(t[re]) && t[re] != '<') re++;
        }
        const size_t body = msg + strlen("<|message|>");
        size_t bend = NPOS, after = len;
        for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
            const size_t e = find(t, len, body, ends[i]);
            if (e != NPOS && e < bend) {
                bend = e;
                after = e + (i == 3 ? 0 : strlen(ends[i]));
            }
        }
        const bool closed = bend != NPOS;
        if (!closed) bend = len;
        if (rs != NPOS) { /* a call: whole or not at all */
            if (!closed && !st->final) return;
            const size_t ns = starts(t, re, rs, "functions.") ? rs + strlen("functions.") : rs;
            json_t *v = NULL;
            size_t vend;
            const bool ok = json_at(&(parse_state){.final = true}, t, bend, body, &v, &vend) == BLOCK_OK &&
                            skip_ws(t, bend, vend) == bend && json_is_object(v) &&
                            add_call(st, t + ns, re - ns, NULL, 0, args_text(v));
            json_decref(v);
            if (!ok) sb_add(&st->content, t + body, bend - body);
        } else {
            size_t stop = bend;
            if (!closed && !st->final) { /* hold back a partial end marker */
                size_t hold = 0;
                for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
                    const size_t k = partial_suffix(t, body, len, ends[i]);
                    if (k > hold) hold = k;
                }
                stop = len - hold;
            }
            sbuf *to_buf = strcmp(channel, "analysis") == 0 ? &st->reasoning : &st->content;
            if (to_buf == &st->content) add_content(st, t, body, stop);
            else sb_add(to_buf, t + body, stop - body);
            if (!closed) return;
        }
        at = after;
    }
}

/* ---- functionary v3.2 ---------------------------------------------------------------- */

/* The reply continues a ">>>" the generation prompt wrote: "all\ntext" or "f\n{...}",
 * further messages start with ">>>". */
static void parse_functionary(parse_state *st, const char *t, size_t len) {
    size_t at = 0;
    if (starts(t, len, 0, ">>>")) at = 3;
    while (at <= len) {
        const size_t nl = find(t, len, at, "\n");
        if (nl == NPOS) {
            if (st->final) add_content(st, t, at, len);
            return;
        }
        const size_t next = find(t, len, nl + 1, ">>>");
        const size_t bend = next == NPOS ? len : next;
        if (nl - at == 3 && memcmp(t + at, "all", 3) == 0) {
            add_content(st, t, nl + 1,
                        next != NPOS || st->final ? bend : len - partial_suffix(t, nl + 1, len, ">>>"));
        } else {
            if (next == NPOS && !st->final) return; /* the call's end is not known yet */
            json_t *v = NULL;
            size_t vend;
            const bool ok = json_at(&(parse_state){.final = true}, t, bend, nl + 1, &v, &vend) == BLOCK_OK &&
                            skip_ws(t, bend, vend) == bend && json_is_object(v) &&
                            add_call(st, t + at, nl - at, NULL, 0, args_text(v));
            json_decref(v);
            if (!ok) add_content(st, t, at, bend);
        }
        if (next == NPOS) return;
        at = next + 3;
    }
}

/* ---- the whole reply --------------------------------------------------------------- */

static void add_reasoning(parse_state *st, const char *t, size_t from, size_t stop, bool closed) {
    from = skip_ws(t, stop, from);
    if (closed || !st->final) /* trailing whitespace: dropped when closed, held back while open */
        while (stop > from && is_ws(t[stop - 1])) stop--;
    sb_add(&st->reasoning, t + from, stop - from);
}

sov_status reply_parse(const reply_params *p, const char *t, size_t len, bool final, reply *out) {
    *out = (reply){0};
    parse_state st = {.p = p, .final = final};
    sb_add(&st.content, "", 0);
    sb_add(&st.reasoning, "", 0);
    size_t pos = 0;
    bool ready = true;
    if (p->format == REPLY_HARMONY) {
        parse_harmony(&st, t, len);
        ready = false;
    } else if (p->think_tags) {
        bool in = p->starts_thinking;
        const size_t w = skip_ws(t, len, 0);
        if (!in && starts(t, len, w, "<think>")) {
            in = true;
            pos = w + strlen("<think>");
        } else if (!in && !final && w < len && len - w < strlen("<think>") && !memcmp(t + w, "<think>", len - w)) {
            ready = false; /* "<thi": wait */
        }
        if (in) {
            const size_t e = find(t, len, pos, "</think>");
            if (e == NPOS) {
                add_reasoning(&st, t, pos, final ? len : len - partial_suffix(t, pos, len, "</think>"), false);
                ready = false;
            } else {
                add_reasoning(&st, t, pos, e, true);
                pos = skip_ws(t, len, e + strlen("</think>"));
            }
        }
    }
    if (ready) {
        if (p->format == REPLY_FUNCTIONARY) parse_functionary(&st, t + pos, len - pos);
        else parse_calls(&st, t, len, pos);
    }
    /* with calls, the whitespace the model put between text and calls is not content (and
     * an answer that is only calls has none: OpenAI sends null); while the reply is being
     * written, trailing whitespace is held back, as a call may follow it */
    if ((!final || st.n_calls) && !st.content.oom) {
        while (st.content.len && is_ws(st.content.s[st.content.len - 1])) st.content.len--;
        st.content.s[st.content.len] = '\0';
    }
    if (st.oom || st.content.oom || st.reasoning.oom) {
        drop_calls(&st, 0);
        free(st.calls);
        free(st.content.s);
        free(st.reasoning.s);
        return sov_fail(SOV_ERR_NOMEM, "reply: out of memory");
    }
    out->content = st.content.s;
    out->content_len = st.content.len;
    out->reasoning = st.reasoning.s;
    out->reasoning_len = st.reasoning.len;
    out->calls = st.calls;
    out->n_calls = st.n_calls;
    return SOV_OK;
}

void reply_free(reply *r) {
    for (size_t i = 0; i < r->n_calls; i++) {
        free(r->calls[i].id);
        free(r->calls[i].name);
        free(r->calls[i].arguments);
    }
    free(r->calls);
    free(r->content);
    free(r->reasoning);
    *r = (reply){0};
}

/* ---- detection --------------------------------------------------------------------- */

static bool has(const char *t, size_t len, const char *needle) { return find(t, len, 0, needle) != NPOS; }

reply_style reply_detect(const char *t, size_t len) {
    reply_style s = {.format = REPLY_PLAIN, .think_tags = t && (has(t, len, "<think>") || has(t, len, "</think>"))};
    if (!t) return s;
    if (has(t, len, "<|channel|>") && has(t, len, "<|message|>")) s.format = REPLY_HARMONY;
    else if (has(t, len, "<|tool_calls_section_begin|>")) s.format = REPLY_KIMI;
    else if (has(t, len, DS_CALLS_BEGIN) || has(t, len, DS_CALL_BEGIN)) s.format = REPLY_DEEPSEEK;
    else if (has(t, len, "<tool_call>") && has(t, len, "<arg_key>")) s.format = REPLY_GLM;
    else if (has(t, len, "<tool_call>") && has(t, len, "<function=") && has(t, len, "<parameter="))
        s.format = REPLY_QWEN_XML;
    else if (has(t, len, "<tool_call>")) s.format = REPLY_HERMES;
    else if (has(t, len, "[TOOL_CALLS]")) s.format = REPLY_MISTRAL;
    else if (has(t, len, "<|tool_call|>")) s.format = REPLY_GRANITE;
    else if (has(t, len, ">>>all")) s.format = REPLY_FUNCTIONARY;
    else if (has(t, len, "<|start_header_id|>") && (has(t, len, "tools") || has(t, len, "<function=")))
        s.format = REPLY_LLAMA3;
    if (s.format == REPLY_HARMONY) s.think_tags = false;
    return s;
}

bool reply_call_form(reply_format f, const char *name, char **prefix, char **suffix) {
    const char *pre, *post;
    switch (f) {
    case REPLY_HERMES: pre = "<tool_call>\n{\"name\": \"%s\", \"arguments\": ", post = "}\n</tool_call>"; break;
    case REPLY_LLAMA3: pre = "{\"name\": \"%s\", \"parameters\": ", post = "}"; break;
    case REPLY_MISTRAL: pre = "[TOOL_CALLS][{\"name\": \"%s\", \"arguments\": ", post = "}]"; break;
    case REPLY_GRANITE: pre = "<|tool_call|>[{\"name\": \"%s\", \"arguments\": ", post = "}]"; break;
    case REPLY_DEEPSEEK:
        pre = DS_CALLS_BEGIN DS_CALL_BEGIN "function" DS_SEP "%s\n```json\n", post = "\n```" DS_CALL_END DS_CALLS_END;
        break;
    case REPLY_HARMONY: pre = "<|channel|>commentary to=functions.%s <|constrain|>json<|message|>", post = "<|call|>"; break;
    case REPLY_KIMI:
        pre = "<|tool_calls_section_begin|><|tool_call_begin|>functions.%s:0<|tool_call_argument_begin|>";
        post = "<|tool_call_end|><|tool_calls_section_end|>";
        break;
    case REPLY_FUNCTIONARY: pre = "%s\n", post = ""; break; /* after the prompt's ">>>" */
    default: return false;
    }
    const int n = snprintf(NULL, 0, pre, name);
    *prefix = n >= 0 ? malloc((size_t)n + 1) : NULL;
    *suffix = strdup(post);
    if (!*prefix || !*suffix) {
        free(*prefix);
        free(*suffix);
        *prefix = *suffix = NULL;
        return false;
    }
    snprintf(*prefix, (size_t)n + 1, pre, name);
    return true;
}

bool reply_prompt_opens_think(const char *prompt, size_t len) {
    while (len && is_ws(prompt[len - 1])) len--;
    return len >= 7 && memcmp(prompt + len - 7, "<think>", 7) == 0;
}

/* ---- streaming --------------------------------------------------------------------- */

void reply_stream_init(reply_stream *s, const reply_params *p) { *s = (reply_stream){.params = *p}; }

sov_status reply_stream_feed(reply_stream *s, const char *piece, size_t n, bool final, reply_delta *d) {
    *d = (reply_delta){0};
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n + 1) cap *= 2;
        char *t = realloc(s->text, cap);
        if (!t) return sov_fail(SOV_ERR_NOMEM, "reply: out of memory");
        s->text = t;
        s->cap = cap;
    }
    if (n) memcpy(s->text + s->len, piece, n);
    s->len += n;
    s->text[s->len] = '\0';
    reply r;
    const sov_status st = reply_parse(&s->params, s->text, s->len, final, &r);
    if (st) return st;
    reply_free(&s->last);
    s->last = r;
    /* a parse of more text only appends (reply.h); guard the counters all the same */
    if (r.content_len > s->content_sent) {
        d->content = r.content + s->content_sent;
        d->content_len = r.content_len - s->content_sent;
        s->content_sent = r.content_len;
    }
    if (r.reasoning_len > s->reasoning_sent) {
        d->reasoning = r.reasoning + s->reasoning_sent;
        d->reasoning_len = r.reasoning_len - s->reasoning_sent;
        s->reasoning_sent = r.reasoning_len;
    }
    if (r.n_calls > s->calls_sent) {
        d->calls = r.calls + s->calls_sent;
        d->n_calls = r.n_calls - s->calls_sent;
        d->first_call = s->calls_sent;
        s->calls_sent = r.n_calls;
    }
    return SOV_OK;
}

void reply_stream_free(reply_stream *s) {
    reply_free(&s->last);
    free(s->text);
    *s = (reply_stream){0};
}
