/* lex.c - the Jinja lexer: template text into tokens, with Jinja's whitespace control as
 * Hugging Face configures it (trim_blocks: the first newline after a block or comment tag
 * is removed; lstrip_blocks: spaces and tabs from the start of a line to a block or
 * comment tag are removed; `{%-`/`-%}` strip all whitespace on that side, `{%+`/`+%}`
 * turn the automatic stripping off) and keep_trailing_newline=False (one trailing newline
 * of the template is dropped). Comments vanish; {% raw %} blocks become text. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja/jinja.h"

typedef struct lexer {
    jarena *a;
    const char *src;
    size_t len, pos;
    int line;
    jtok *toks;
    size_t n, cap;
    char *err;
} lexer;

static bool is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
static bool is_name0(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static int count_lines(const char *s, size_t n) {
    int k = 0;
    for (size_t i = 0; i < n; i++)
        k += s[i] == '\n';
    return k;
}

static jtok *push(lexer *L, jtok_kind kind, const char *s, size_t len) {
    if (L->n == L->cap) { /* malloc'd, not arena: the caller frees it after parsing */
        const size_t cap = L->cap ? L->cap * 2 : 256;
        jtok *p = realloc(L->toks, cap * sizeof *p);
        if (!p) {
            snprintf(L->err, JINJA_ERR, "out of memory");
            longjmp(*L->a->fail, 1); /* L->a->scratch still holds the old array */
        }
        L->toks = p;
        L->a->scratch = p;
        L->cap = cap;
    }
    jtok *t = &L->toks[L->n++];
    *t = (jtok){.kind = kind, .line = L->line, .s = s, .len = len};
    return t;
}

static bool fail(lexer *L, const char *msg) {
    snprintf(L->err, JINJA_ERR, "line %d: %s", L->line, msg);
    free(L->toks);
    L->toks = NULL;
    L->a->scratch = NULL;
    return false;
}

/* next tag opening at or after from: returns its offset or len */
static size_t find_tag(const lexer *L, size_t from) {
    for (size_t i = from; i + 1 < L->len; i++)
        if (L->src[i] == '{' && (L->src[i + 1] == '{' || L->src[i + 1] == '%' || L->src[i + 1] == '#'))
            return i;
    return L->len;
}

static void utf8_put(char *out, size_t *n, unsigned cp) {
    if (cp < 0x80)
        out[(*n)++] = (char)cp;
    else if (cp < 0x800) {
        out[(*n)++] = (char)(0xC0 | (cp >> 6));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*n)++] = (char)(0xE0 | (cp >> 12));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*n)++] = (char)(0xF0 | (cp >> 18));
        out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A quoted string with Python's unicode-escape rules (unknown escapes stay as written). */
static bool lex_string(lexer *L) {
    const char q = L->src[L->pos];
    size_t i = L->pos + 1;
    while (i < L->len && L->src[i] != q) {
        if (L->src[i] == '\\' && i + 1 < L->len) i++;
        i++;
    }
    if (i >= L->len) return fail(L, "unterminated string");
    const char *s = L->src + L->pos + 1;
    const size_t n = i - L->pos - 1;
    char *out = ja_alloc(L->a, n + 1);
    size_t k = 0;
    for (size_t j = 0; j < n; j++) {
        if (s[j] != '\\' || j + 1 >= n) {
            if (s[j] == '\r') { /* newlines normalised to \n */
                out[k++] = '\n';
                if (j + 1 < n && s[j + 1] == '\n') j++;
            } else
                out[k++] = s[j];
            continue;
        }
        const char c = s[++j];
        int digits = 0;
        switch (c) {
        case 'n': out[k++] = '\n'; break;
        case 't': out[k++] = '\t'; break;
        case 'r': out[k++] = '\r'; break;
        case '\\': out[k++] = '\\'; break;
        case '\'': out[k++] = '\''; break;
        case '"': out[k++] = '"'; break;
        case 'a': out[k++] = '\a'; break;
        case 'b': out[k++] = '\b'; break;
        case 'f': out[k++] = '\f'; break;
        case 'v': out[k++] = '\v'; break;
        case '\n': break;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default:
            if (c >= '0' && c <= '7') {
                unsigned v = 0;
                int m = 0;
                for (; m < 3 && j < n && s[j] >= '0' && s[j] <= '7'; m++, j++)
                    v = v * 8 + (unsigned)(s[j] - '0');
                j--;
                utf8_put(out, &k, v);
            } else {
                out[k++] = '\\';
                out[k++] = c;
            }
        }
        if (digits) {
            unsigned v = 0;
            if (j + (size_t)digits >= n) return fail(L, "truncated escape in string");
            for (int m = 1; m <= digits; m++) {
                const int h = hexval(s[j + (size_t)m]);
                if (h < 0) return fail(L, "bad escape in string");
                v = v * 16 + (unsigned)h;
            }
            if (v > 0x10FFFF) return fail(L, "bad escape in string");
            j += (size_t)digits;
            utf8_put(out, &k, v);
        }
    }
    push(L, JT_STRING, out, k);
    L->line += count_lines(L->src + L->pos, i + 1 - L->pos);
    L->pos = i + 1;
    return true;
}

/* An integer or float literal (digits may be grouped with '_'), copied without the
 * underscores into an arena buffer as long as the literal, then converted. */
static bool lex_number(lexer *L) {
    size_t i = L->pos;
    bool is_float = false;
    while (i < L->len && (is_digit(L->src[i]) || L->src[i] == '_'))
        i++;
    if (i + 1 < L->len && L->src[i] == '.' && is_digit(L->src[i + 1])) {
        is_float = true;
        i++;
        while (i < L->len && (is_digit(L->src[i]) || L->src[i] == '_'))
            i++;
    }
    if (i < L->len && (L->src[i] == 'e' || L->src[i] == 'E')) {
        size_t j = i + 1;
        if (j < L->len && (L->src[j] == '+' || L->src[j] == '-')) j++;
        if (j < L->len && is_digit(L->src[j])) {
            is_float = true;
            i = j;
            while (i < L->len && is_digit(L->src[i]))
                i++;
        }
    }
    char *buf = ja_alloc_raw(L->a, i - L->pos + 1);
    size_t k = 0;
    for (size_t m = L->pos; m < i; m++)
        if (L->src[m] != '_') buf[k++] = L->src[m];
    buf[k] = '\0';
    jtok *t = push(L, is_float ? JT_FLOAT : JT_INT, L->src + L->pos, i - L->pos);
    if (is_float)
        t->f = strtod(buf, NULL);
    else {
        size_t lead = 0; /* leading zeros do not count toward the size */
        while (lead + 1 < k && buf[lead] == '0')
            lead++;
        const unsigned long long v = k - lead <= 19 ? strtoull(buf + lead, NULL, 10) : ULLONG_MAX;
        if (v > (unsigned long long)INT64_MAX) return fail(L, "integer literal too large");
        t->i = (int64_t)v;
    }
    L->pos = i;
    return true;
}

static const char *const ops3[] = {NULL};
static const char *const ops2[] = {"//", "**", "==", "!=", "<=", ">=", NULL};
static const char ops1[] = "+-*/%~<>=()[]{},.:|";

/* Tokens of one tag up to its closing; close is "}}" or "%}". Returns the strip sign
 * of the closing ('-', '+' or 0) in *sign. */
static bool lex_tag_body(lexer *L, const char *close, char *sign) {
    (void)ops3;
    int depth = 0; /* brackets: a '}' inside a dict literal is not the end */
    for (;;) {
        while (L->pos < L->len && is_ws(L->src[L->pos])) {
            if (L->src[L->pos] == '\n') L->line++;
            L->pos++;
        }
        if (L->pos >= L->len)
            return fail(L, close[0] == '}' ? "unterminated '{{' (missing '}}')"
                                           : "unterminated '{%' (missing '%}')");
        const char *p = L->src + L->pos;
        const size_t left = L->len - L->pos;
        if (depth == 0 || close[0] == '%') {
            if ((p[0] == '-' || p[0] == '+') && left >= 3 && p[1] == close[0] && p[2] == close[1]) {
                *sign = p[0];
                L->pos += 3;
                return true;
            }
            if (left >= 2 && p[0] == close[0] && p[1] == close[1] && depth == 0) {
                *sign = 0;
                L->pos += 2;
                return true;
            }
        }
        if (p[0] == '\'' || p[0] == '"') {
            if (!lex_string(L)) return false;
            continue;
        }
        if (is_digit(p[0])) {
            if (!lex_number(L)) return false;
            continue;
        }
        if (is_name0(p[0])) {
            size_t i = 1;
            while (i < left && (is_name0(p[i]) || is_digit(p[i])))
                i++;
            push(L, JT_NAME, p, i);
            L->pos += i;
            continue;
        }
        bool matched = false;
        for (size_t o = 0; ops2[o]; o++)
            if (left >= 2 && p[0] == ops2[o][0] && p[1] == ops2[o][1]) {
                push(L, JT_OP, ops2[o], 2);
                L->pos += 2;
                matched = true;
                break;
            }
        if (matched) continue;
        const char *c = strchr(ops1, p[0]);
        if (c && p[0]) {
            if (p[0] == '(' || p[0] == '[' || p[0] == '{') depth++;
            if ((p[0] == ')' || p[0] == ']' || p[0] == '}') && depth > 0) depth--;
            push(L, JT_OP, c, 1);
            L->pos++;
            continue;
        }
        char msg[64];
        snprintf(msg, sizeof msg, "unexpected character '%c' in tag",
                 p[0] >= 0x20 && p[0] < 0x7f ? p[0] : '?');
        return fail(L, msg);
    }
}

static void skip_after(lexer *L, char sign, bool trim_newline) {
    if (sign == '-') {
        while (L->pos < L->len && is_ws(L->src[L->pos])) {
            if (L->src[L->pos] == '\n') L->line++;
            L->pos++;
        }
    } else if (sign == 0 && trim_newline && L->pos < L->len && L->src[L->pos] == '\n') {
        L->line++;
        L->pos++;
    }
}

/* {% raw %} ... {% endraw %}: is the block tag at pos "raw"? Sets *body_start. */
static bool raw_open(const lexer *L, size_t tag, size_t *after) {
    size_t i = tag + 2;
    if (i < L->len && (L->src[i] == '-' || L->src[i] == '+')) i++;
    while (i < L->len && is_ws(L->src[i]))
        i++;
    if (L->len - i < 3 || memcmp(L->src + i, "raw", 3) != 0) return false;
    i += 3;
    while (i < L->len && is_ws(L->src[i]))
        i++;
    if (i < L->len && (L->src[i] == '-' || L->src[i] == '+')) i++;
    if (L->len - i < 2 || L->src[i] != '%' || L->src[i + 1] != '}') return false;
    *after = i + 2;
    return true;
}

bool jinja_lex(jarena *a, const char *src, size_t len, jtok **toks, size_t *n, char *err) {
    /* newlines normalised to \n, as Jinja does before lexing */
    char *norm = ja_alloc(a, len + 1);
    size_t m = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            norm[m++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else
            norm[m++] = src[i];
    }
    if (m > 0 && norm[m - 1] == '\n') m--; /* keep_trailing_newline=False */
    lexer L = {.a = a, .src = norm, .len = m, .line = 1, .err = err};
    while (L.pos < L.len) {
        const size_t tag = find_tag(&L, L.pos);
        size_t text_end = tag;
        const char kind = tag < L.len ? L.src[tag + 1] : 0;
        const char sign = tag + 2 < L.len ? L.src[tag + 2] : 0;
        if (tag < L.len) {
            if (sign == '-') {
                while (text_end > L.pos && is_ws(L.src[text_end - 1]))
                    text_end--;
            } else if (sign != '+' && (kind == '%' || kind == '#')) {
                size_t l = text_end;
                while (l > L.pos && L.src[l - 1] != '\n')
                    l--;
                const bool line_start = l > L.pos || L.pos == 0 || L.src[L.pos - 1] == '\n';
                bool blank = l < text_end;
                for (size_t i = l; i < text_end && blank; i++)
                    blank = is_ws(L.src[i]);
                if (line_start && blank) text_end = l;
            }
        }
        if (text_end > L.pos) push(&L, JT_TEXT, L.src + L.pos, text_end - L.pos);
        L.line += count_lines(L.src + L.pos, tag - L.pos);
        if (tag >= L.len) break;
        L.pos = tag + 2 + (sign == '-' || sign == '+');
        if (kind == '#') {
            const char *e = NULL;
            for (size_t i = L.pos; i + 1 < L.len; i++)
                if (L.src[i] == '#' && L.src[i + 1] == '}') {
                    e = L.src + i;
                    break;
                }
            if (!e) return fail(&L, "unterminated comment (missing '#}')");
            const size_t end = (size_t)(e - L.src);
            const char csign =
                end > L.pos && (L.src[end - 1] == '-' || L.src[end - 1] == '+') ? L.src[end - 1] : 0;
            L.line += count_lines(L.src + L.pos, end - L.pos);
            L.pos = end + 2;
            skip_after(&L, csign, true);
            continue;
        }
        size_t raw_body;
        if (kind == '%' && raw_open(&L, tag, &raw_body)) {
            /* find {% endraw %} */
            size_t i = raw_body;
            for (;; i++) {
                if (i + 1 >= L.len) return fail(&L, "unterminated {% raw %} block");
                if (L.src[i] != '{' || L.src[i + 1] != '%') continue;
                size_t j = i + 2;
                const bool minus = j < L.len && L.src[j] == '-';
                if (j < L.len && (L.src[j] == '-' || L.src[j] == '+')) j++;
                while (j < L.len && is_ws(L.src[j]))
                    j++;
                if (L.len - j >= 6 && memcmp(L.src + j, "endraw", 6) == 0) {
                    j += 6;
                    while (j < L.len && is_ws(L.src[j]))
                        j++;
                    char esign = 0;
                    if (j < L.len && (L.src[j] == '-' || L.src[j] == '+')) esign = L.src[j++];
                    if (L.len - j >= 2 && L.src[j] == '%' && L.src[j + 1] == '}') {
                        size_t bs = raw_body, be = i;
                        if (L.src[raw_body - 3] == '-')
                            while (bs < be && is_ws(L.src[bs]))
                                bs++;
                        else if (bs < be && L.src[bs] == '\n')
                            bs++;
                        if (minus)
                            while (be > bs && is_ws(L.src[be - 1]))
                                be--;
                        if (be > bs) push(&L, JT_TEXT, L.src + bs, be - bs);
                        L.line += count_lines(L.src + L.pos, j + 2 - L.pos);
                        L.pos = j + 2;
                        skip_after(&L, esign, true);
                        break;
                    }
                }
            }
            continue;
        }
        push(&L, kind == '{' ? JT_VAR_BEGIN : JT_BLOCK_BEGIN, NULL, 0);
        char csign;
        if (!lex_tag_body(&L, kind == '{' ? "}}" : "%}", &csign)) return false;
        push(&L, kind == '{' ? JT_VAR_END : JT_BLOCK_END, NULL, 0);
        skip_after(&L, csign, kind == '%');
    }
    push(&L, JT_EOF, NULL, 0);
    *toks = L.toks;
    *n = L.n;
    return true;
}
