/* gbnf.c - llama.cpp's GBNF grammar notation -> grammar (the `grammar` request field).
 *
 *   root   ::= "{" ws pair ("," ws pair)* "}"      # a comment
 *   pair   ::= [a-z]+ ":" ws ( value | "null" )
 *
 * Rules `name ::= alternatives`, names [A-Za-z0-9_-]+, the start rule `root`. A rule ends
 * at the end of its line, except inside parentheses and right after `::=` or `|`.
 * Terminals: "literals" and [classes] (ranges, ^ negation) with the escapes \n \r \t \\
 * \" \[ \] \- \xHH \uHHHH \UHHHHHHHH, and `.` (any character). Operators: sequence,
 * `|`, `( )`, `* + ?`, `{m}` `{m,}` `{m,n}`. Characters are Unicode code points, turned
 * into UTF-8 byte sequences here (a class becomes alternatives of byte ranges, surrogates
 * excluded), so the grammar is over bytes like the schema's. Errors give the line and
 * column. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "grammar/grammar.h"
#include "tok/unicode.h"

enum { MAX_NEST = 64, MAX_REP = 4096, MAX_RANGES = 512 };

typedef struct gname {
    char *name;
    int32_t rule;
    bool defined;
    int line; /* first use, for "undefined" */
} gname;

typedef struct gp {
    const char *src, *p, *end;
    gram_builder *b;
    gname *names;
    int32_t n_names, cap_names;
    int nest;
    sov_status st;
    char *err;
    size_t err_len;
} gp;

typedef struct cprange {
    uint32_t lo, hi;
} cprange;

static void where(const gp *g, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (const char *q = g->src; q < g->p && q < g->end; q++) {
        if (*q == '\n') *line += 1, *col = 1;
        else *col += 1;
    }
}

static bool gfail(gp *g, sov_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool gfail(gp *g, sov_status st, const char *fmt, ...) {
    if (g->st) return false;
    g->st = st;
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    where(g, &line, &col);
    if (g->err && g->err_len) {
        snprintf(g->err, g->err_len, "grammar line %d column %d: %s", line, col, msg);
        for (char *e = g->err; *e; e++)
            if ((unsigned char)*e < 0x20 || *e == 0x7f) *e = ' ';
    }
    return false;
}

static int32_t new_rule(gp *g) {
    const int32_t r = gram_rule_new(g->b);
    if (r < 0) gfail(g, SOV_ERR_UNSUPPORTED, "grammar too large (over %d elements, or out of memory)", GRAM_MAX_ELEMS);
    return r;
}

static bool add_alt(gp *g, int32_t r, gram_seq *q) {
    if (gram_rule_alt(g->b, r, q)) return true;
    return gfail(g, SOV_ERR_UNSUPPORTED, "grammar too large (over %d elements, or out of memory)", GRAM_MAX_ELEMS);
}

/* ---- spaces, names ---- */

/* Skips blanks and comments; newlines too when `lines`. */
static void skip(gp *g, bool lines) {
    while (g->p < g->end) {
        const char c = *g->p;
        if (c == ' ' || c == '\t' || c == '\r' || (lines && c == '\n')) {
            g->p++;
        } else if (c == '#') {
            while (g->p < g->end && *g->p != '\n')
                g->p++;
        } else {
            break;
        }
    }
}

static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* The rule of a name (made on first mention). */
static int32_t name_rule(gp *g, const char *s, size_t n, bool define) {
    for (int32_t i = 0; i < g->n_names; i++)
        if (strlen(g->names[i].name) == n && memcmp(g->names[i].name, s, n) == 0) {
            if (define && g->names[i].defined) {
                gfail(g, SOV_ERR_ARG, "rule '%.*s' is defined twice", (int)(n < 60 ? n : 60), s);
                return -1;
            }
            if (define) g->names[i].defined = true;
            return g->names[i].rule;
        }
    if (g->n_names == g->cap_names) {
        const int32_t cap = g->cap_names ? g->cap_names * 2 : 32;
        gname *p = realloc(g->names, (size_t)cap * sizeof *p);
        if (!p) return gfail(g, SOV_ERR_NOMEM, "out of memory"), -1;
        g->names = p;
        g->cap_names = cap;
    }
    char *copy = strndup(s, n);
    const int32_t r = copy ? new_rule(g) : -1;
    if (r < 0) {
        free(copy);
        if (!g->st) gfail(g, SOV_ERR_NOMEM, "out of memory");
        return -1;
    }
    int line, col;
    where(g, &line, &col);
    g->names[g->n_names++] = (gname){copy, r, define, line};
    return r;
}

/* ---- characters ---- */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes one UTF-8 character of the grammar text. */
static bool utf8_char(gp *g, uint32_t *cp) {
    const unsigned char c = (unsigned char)*g->p;
    int n = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (!n || g->p + n > g->end) return gfail(g, SOV_ERR_ARG, "invalid UTF-8 in the grammar");
    uint32_t v = n == 1 ? c : c & (0x7F >> n);
    for (int i = 1; i < n; i++) {
        const unsigned char x = (unsigned char)g->p[i];
        if ((x & 0xC0) != 0x80) return gfail(g, SOV_ERR_ARG, "invalid UTF-8 in the grammar");
        v = (v << 6) | (x & 0x3F);
    }
    g->p += n;
    *cp = v;
    return true;
}

/* One character of a literal or class: an escape or a UTF-8 character. */
static bool char_at(gp *g, uint32_t *cp) {
    if (g->p >= g->end) return gfail(g, SOV_ERR_ARG, "unexpected end of the grammar");
    if (*g->p != '\\') return utf8_char(g, cp);
    if (++g->p >= g->end) return gfail(g, SOV_ERR_ARG, "a trailing backslash");
    const char e = *g->p++;
    int digits = 0;
    switch (e) {
    case 'n': *cp = '\n'; return true;
    case 'r': *cp = '\r'; return true;
    case 't': *cp = '\t'; return true;
    case '\\': case '"': case '[': case ']': case '-': case '^': case '\'': *cp = (uint8_t)e; return true;
    case 'x': digits = 2; break;
    case 'u': digits = 4; break;
    case 'U': digits = 8; break;
    default: return gfail(g, SOV_ERR_ARG, "unknown escape '\\%c'", e >= 0x20 && e < 0x7f ? e : '?');
    }
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
        const int h = g->p < g->end ? hexval(*g->p) : -1;
        if (h < 0) return gfail(g, SOV_ERR_ARG, "'\\%c' needs %d hex digits", e, digits);
        v = v * 16 + (uint32_t)h;
        g->p++;
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return gfail(g, SOV_ERR_ARG, "escape of an invalid code point");
    *cp = v;
    return true;
}

/* Adds to rule r the UTF-8 encodings of lo..hi (same encoded length n), after the bytes
 * fixed so far: byte ranges, split where the first differing byte is not a whole span. */
static bool utf8_span(gp *g, int32_t r, const uint8_t *a, const uint8_t *z, int n, int i, gram_seq *pre) {
    if (i == n) {
        gram_seq q = {0};
        for (int32_t k = 0; k < pre->n; k++)
            gram_seq_set(&q, pre->s[k].set);
        const bool ok = !q.oom && add_alt(g, r, &q);
        gram_seq_free(&q);
        return ok;
    }
    if (a[i] == z[i]) {
        gram_seq_byte(pre, a[i]);
        const bool ok = utf8_span(g, r, a, z, n, i + 1, pre);
        pre->n--;
        return ok;
    }
    bool full = true; /* a's rest all 0x80 and z's all 0xBF: one block of ranges */
    for (int k = i + 1; k < n; k++)
        full = full && a[k] == 0x80 && z[k] == 0xBF;
    if (full) {
        const int32_t keep = pre->n;
        gram_seq_range(pre, a[i], z[i]);
        for (int k = i + 1; k < n; k++)
            gram_seq_range(pre, 0x80, 0xBF);
        const bool ok = utf8_span(g, r, a, z, n, n, pre);
        pre->n = keep;
        return ok;
    }
    uint8_t hi[4], lo[4];
    memcpy(hi, a, 4);
    memcpy(lo, z, 4);
    for (int k = i + 1; k < n; k++)
        hi[k] = 0xBF, lo[k] = 0x80;
    hi[i] = a[i];
    lo[i] = z[i];
    if (!utf8_span(g, r, a, hi, n, i, pre)) return false; /* a[i] and a's rest .. max */
    if (a[i] + 1 <= z[i] - 1) {
        uint8_t mlo[4], mhi[4];
        memcpy(mlo, a, 4);
        memcpy(mhi, a, 4);
        mlo[i] = (uint8_t)(a[i] + 1);
        mhi[i] = (uint8_t)(z[i] - 1);
        for (int k = i + 1; k < n; k++)
            mlo[k] = 0x80, mhi[k] = 0xBF;
        if (!utf8_span(g, r, mlo, mhi, n, i, pre)) return false;
    }
    return utf8_span(g, r, lo, z, n, i, pre); /* z[i] and min .. z's rest */
}

/* A rule for the code points in ranges[0..n) (sorted or not; surrogates dropped). */
static int32_t class_rule(gp *g, const cprange *ranges, int n) {
    const int32_t r = new_rule(g);
    if (r < 0) return -1;
    static const uint32_t bounds[][2] = {{0, 0x7F}, {0x80, 0x7FF}, {0x800, 0xD7FF}, {0xE000, 0xFFFF}, {0x10000, 0x10FFFF}};
    gram_seq pre = {0};
    bool any = false, ok = true;
    for (int i = 0; i < n && ok; i++)
        for (size_t k = 0; k < sizeof bounds / sizeof bounds[0] && ok; k++) {
            const uint32_t lo = ranges[i].lo > bounds[k][0] ? ranges[i].lo : bounds[k][0];
            const uint32_t hi = ranges[i].hi < bounds[k][1] ? ranges[i].hi : bounds[k][1];
            if (lo > hi) continue;
            uint8_t a[4], z[4];
            const int len = (int)tok_utf8_put(lo, a);
            tok_utf8_put(hi, z);
            ok = utf8_span(g, r, a, z, len, 0, &pre);
            any = true;
        }
    gram_seq_free(&pre);
    if (ok && !any) return gfail(g, SOV_ERR_ARG, "a character class that matches nothing"), -1;
    return ok ? r : -1;
}

static int cmp_range(const void *x, const void *y) {
    const cprange *a = x, *b = y;
    return a->lo < b->lo ? -1 : a->lo > b->lo;
}

/* [...] after the '[' */
static int32_t parse_class(gp *g) {
    cprange rs[MAX_RANGES];
    int n = 0;
    bool neg = false;
    if (g->p < g->end && *g->p == '^') neg = true, g->p++;
    while (g->p < g->end && *g->p != ']') {
        uint32_t lo, hi;
        if (!char_at(g, &lo)) return -1;
        hi = lo;
        if (g->p + 1 < g->end && *g->p == '-' && g->p[1] != ']') {
            g->p++;
            if (!char_at(g, &hi)) return -1;
            if (hi < lo) return gfail(g, SOV_ERR_ARG, "a class range that runs backwards"), -1;
        }
        if (n == MAX_RANGES) return gfail(g, SOV_ERR_UNSUPPORTED, "more than %d ranges in a class", MAX_RANGES), -1;
        rs[n++] = (cprange){lo, hi};
    }
    if (g->p >= g->end) return gfail(g, SOV_ERR_ARG, "an unclosed '['"), -1;
    g->p++;
    if (!neg) return class_rule(g, rs, n);
    qsort(rs, (size_t)n, sizeof rs[0], cmp_range);
    cprange inv[MAX_RANGES + 1];
    int m = 0;
    uint32_t next = 0;
    for (int i = 0; i < n; i++) {
        if (rs[i].lo > next) inv[m++] = (cprange){next, rs[i].lo - 1};
        if (rs[i].hi + 1 > next) next = rs[i].hi + 1;
    }
    if (next <= 0x10FFFF) inv[m++] = (cprange){next, 0x10FFFF};
    return class_rule(g, inv, m);
}

/* ---- expressions ---- */

static int32_t parse_alternates(gp *g, bool nested);

static int32_t empty_rule(gp *g) {
    const int32_t e = new_rule(g);
    gram_seq q = {0};
    return e >= 0 && add_alt(g, e, &q) ? e : -1;
}

/* x{min,max} (max -1: unbounded) as a rule. */
static int32_t repeat_rule(gp *g, int32_t x, int64_t min, int64_t max) {
    if (x < 0) return -1;
    gram_seq q = {0};
    int32_t r = empty_rule(g);
    if (r < 0) goto fail;
    if (max < 0) { /* L ::= x L | "" */
        const int32_t l = new_rule(g);
        if (l < 0) goto fail;
        gram_seq_ref(&q, x);
        gram_seq_ref(&q, l);
        if (!add_alt(g, l, &q) || !add_alt(g, l, &q)) goto fail;
        r = l;
    } else {
        for (int64_t k = 0; k < max - min; k++) { /* R_k ::= "" | x R_{k-1} */
            const int32_t n = new_rule(g);
            if (n < 0 || !add_alt(g, n, &q)) goto fail;
            gram_seq_ref(&q, x);
            gram_seq_ref(&q, r);
            if (!add_alt(g, n, &q)) goto fail;
            r = n;
        }
    }
    for (int64_t k = 0; k < min; k++) {
        const int32_t n = new_rule(g);
        if (n < 0) goto fail;
        gram_seq_ref(&q, x);
        gram_seq_ref(&q, r);
        if (!add_alt(g, n, &q)) goto fail;
        r = n;
    }
    gram_seq_free(&q);
    return r;
fail:
    gram_seq_free(&q);
    return -1;
}

static bool parse_count(gp *g, int64_t *out) {
    if (g->p >= g->end || *g->p < '0' || *g->p > '9') return false;
    int64_t v = 0;
    while (g->p < g->end && *g->p >= '0' && *g->p <= '9') {
        v = v * 10 + (*g->p++ - '0');
        if (v > MAX_REP) v = MAX_REP + 1;
    }
    *out = v;
    return true;
}

/* One sequence of items; *empty: it may match nothing (for the repetition check). */
static int32_t parse_sequence(gp *g, bool nested, bool *empty) {
    const int32_t s = new_rule(g);
    if (s < 0) return -1;
    gram_seq q = {0};
    *empty = true;
    for (;;) {
        skip(g, nested);
        if (g->p >= g->end || *g->p == '|' || *g->p == ')' || *g->p == '\n') break;
        int32_t x = -1;
        bool item_empty = false;
        const char c = *g->p;
        if (c == '"') {
            g->p++;
            x = new_rule(g);
            gram_seq lit = {0};
            while (x >= 0 && g->p < g->end && *g->p != '"') {
                uint32_t cp;
                if (!char_at(g, &cp)) break;
                uint8_t enc[4];
                const int len = (int)tok_utf8_put(cp, enc);
                for (int k = 0; k < len; k++)
                    gram_seq_byte(&lit, enc[k]);
            }
            if (!g->st && g->p >= g->end) gfail(g, SOV_ERR_ARG, "an unclosed '\"'");
            if (g->st) {
                gram_seq_free(&lit);
                break;
            }
            g->p++;
            item_empty = lit.n == 0;
            const bool ok = add_alt(g, x, &lit);
            gram_seq_free(&lit);
            if (!ok) break;
        } else if (c == '[') {
            g->p++;
            x = parse_class(g);
        } else if (c == '.') {
            g->p++;
            const cprange all = {0, 0x10FFFF};
            x = class_rule(g, &all, 1);
        } else if (c == '(') {
            g->p++;
            if (++g->nest > MAX_NEST) {
                gfail(g, SOV_ERR_UNSUPPORTED, "groups nested deeper than %d", MAX_NEST);
                break;
            }
            x = parse_alternates(g, true);
            g->nest--;
            skip(g, true);
            if (x >= 0 && (g->p >= g->end || *g->p != ')')) gfail(g, SOV_ERR_ARG, "an unclosed '('");
            if (g->st) break;
            g->p++;
            item_empty = true; /* conservatively: a group may match nothing */
        } else if (name_char(c)) {
            const char *start = g->p;
            while (g->p < g->end && name_char(*g->p))
                g->p++;
            const char *after = g->p;
            skip(g, false);
            if (g->p + 2 < g->end && memcmp(g->p, "::=", 3) == 0) { /* the next rule starts: this line ended */
                g->p = start;
                break;
            }
            g->p = after;
            x = name_rule(g, start, (size_t)(after - start), false);
            item_empty = true; /* a rule may be nullable: checked by gram_build anyway */
        } else {
            gfail(g, SOV_ERR_ARG, "unexpected '%c'", c >= 0x20 && c < 0x7f ? c : '?');
            break;
        }
        if (x < 0) break;
        /* postfix operators */
        if (g->p < g->end && (*g->p == '*' || *g->p == '+' || *g->p == '?' || *g->p == '{')) {
            int64_t mn = 0, mx = -1;
            const char op = *g->p++;
            if (op == '+') mn = 1;
            else if (op == '?') mx = 1;
            else if (op == '{') {
                skip(g, false);
                if (!parse_count(g, &mn)) {
                    gfail(g, SOV_ERR_ARG, "a malformed {m,n}");
                    break;
                }
                mx = mn;
                skip(g, false);
                if (g->p < g->end && *g->p == ',') {
                    g->p++;
                    skip(g, false);
                    mx = -1;
                    if (g->p < g->end && *g->p != '}' && !parse_count(g, &mx)) {
                        gfail(g, SOV_ERR_ARG, "a malformed {m,n}");
                        break;
                    }
                    skip(g, false);
                }
                if (g->p >= g->end || *g->p != '}' || (mx >= 0 && mx < mn)) {
                    gfail(g, SOV_ERR_ARG, "a malformed {m,n}");
                    break;
                }
                g->p++;
                if (mn > MAX_REP || mx > MAX_REP) {
                    gfail(g, SOV_ERR_UNSUPPORTED, "a repetition bound over %d", MAX_REP);
                    break;
                }
            }
            x = repeat_rule(g, x, mn, mx);
            if (x < 0) break;
            item_empty = item_empty || mn == 0;
        }
        *empty = *empty && item_empty;
        gram_seq_ref(&q, x);
    }
    const bool ok = !g->st && !q.oom && add_alt(g, s, &q);
    gram_seq_free(&q);
    return ok ? s : -1;
}

static int32_t parse_alternates(gp *g, bool nested) {
    const int32_t a = new_rule(g);
    if (a < 0) return -1;
    for (;;) {
        bool empty;
        const int32_t s = parse_sequence(g, nested, &empty);
        if (s < 0) return -1;
        gram_seq q = {0};
        gram_seq_ref(&q, s);
        const bool ok = add_alt(g, a, &q);
        gram_seq_free(&q);
        if (!ok) return -1;
        skip(g, nested);
        if (g->p < g->end && *g->p == '|') {
            g->p++;
            skip(g, true);
            continue;
        }
        return a;
    }
}

sov_status gram_from_gbnf(const char *text, size_t len, gram **out, char *err, size_t err_len) {
    *out = NULL;
    if (err && err_len) err[0] = 0;
    gp g = {.src = text, .p = text, .end = text + len, .err = err, .err_len = err_len};
    g.b = gram_builder_new();
    if (!g.b) return sov_fail(SOV_ERR_NOMEM, "grammar: out of memory");
    while (!g.st) {
        skip(&g, true);
        if (g.p >= g.end) break;
        const char *start = g.p;
        while (g.p < g.end && name_char(*g.p))
            g.p++;
        if (g.p == start) {
            gfail(&g, SOV_ERR_ARG, "expected a rule name");
            break;
        }
        const char *name_end = g.p;
        skip(&g, false);
        if (g.end - g.p < 3 || memcmp(g.p, "::=", 3) != 0) {
            gfail(&g, SOV_ERR_ARG, "expected '::=' after '%.*s'", (int)(name_end - start < 60 ? name_end - start : 60), start);
            break;
        }
        g.p += 3;
        const int32_t r = name_rule(&g, start, (size_t)(name_end - start), true);
        skip(&g, true);
        const int32_t body = r >= 0 ? parse_alternates(&g, false) : -1;
        if (body < 0) break;
        gram_seq q = {0};
        gram_seq_ref(&q, body);
        const bool ok = add_alt(&g, r, &q);
        gram_seq_free(&q);
        if (!ok) break;
        skip(&g, false);
        if (g.p < g.end && *g.p != '\n') {
            gfail(&g, SOV_ERR_ARG, "unexpected '%c'", *g.p >= 0x20 && *g.p < 0x7f ? *g.p : '?');
            break;
        }
    }
    int32_t root = -1;
    for (int32_t i = 0; !g.st && i < g.n_names; i++) {
        if (!g.names[i].defined) {
            g.p = g.end;
            gfail(&g, SOV_ERR_ARG, "rule '%.60s' is used (line %d) but not defined", g.names[i].name, g.names[i].line);
        }
        if (strcmp(g.names[i].name, "root") == 0) root = g.names[i].rule;
    }
    if (!g.st && root < 0) gfail(&g, SOV_ERR_ARG, "no 'root' rule");
    sov_status st = g.st;
    if (!st) {
        st = gram_build(g.b, root, out);
        if (st && err && err_len) snprintf(err, err_len, "%s", sov_last_error());
    } else {
        sov_fail(st, "%s", err && err_len ? err : "grammar not accepted");
    }
    for (int32_t i = 0; i < g.n_names; i++)
        free(g.names[i].name);
    free(g.names);
    gram_builder_free(g.b);
    return st;
}
