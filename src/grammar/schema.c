/* schema.c - JSON schema -> grammar: the JSON texts that validate against a schema.
 *
 * Every subschema becomes one rule; the rule's strings are JSON texts the schema
 * accepts (a subset of them where noted, never a superset). What is supported, and
 * how (docs/STRUCTURED-OUTPUT.md has the user's view):
 *   type (one or an array: a union), enum, const (the values' compact JSON), anyOf and
 *   oneOf (a union: oneOf's "exactly one" is not checked), allOf with one schema,
 *   $ref to "#", "#/$defs/..." or "#/definitions/..." (recursion through the rule
 *   graph, bounded by GRAM_MAX_DEPTH open rules at generation time);
 *   objects: properties in schema order, each optional one may be skipped, required
 *   names without a property schema take any value; no other keys are generated
 *   (additionalProperties false is implied; when it is true, absent or a schema, the
 *   output is still valid because it uses only declared keys). With no properties,
 *   additionalProperties as a schema gives a map of any keys to it, and an object with
 *   no constraints at all is any JSON object;
 *   arrays: items, minItems, maxItems (prefixItems is not supported);
 *   strings: minLength/maxLength (in code points: escapes count as one; \u escapes of
 *   surrogates are never generated, so no pair can change the count), format date,
 *   time, date-time (RFC 3339; February stops at 28 so no leap-year rule is needed),
 *   uuid and email (a simple subset of addresses);
 *   integers: minimum/maximum/exclusive* as exact digit ranges; numbers with bounds are
 *   generated as the integers in range (a sound subset);
 *   numbers and integers without bounds have at most 16 integer digits, 16 fraction
 *   digits and 2 exponent digits (so a model cannot run on forever inside one).
 * Anything else is refused with SOV_ERR_UNSUPPORTED naming the keyword and where. */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "grammar/grammar.h"

enum { MAX_SCHEMA_NEST = 64, MAX_REPEAT = 4096, MAX_DIGITS = 16 };

typedef struct memo {
    const json_t *target;
    int32_t rule;
} memo;

typedef struct sc {
    gram_builder *b;
    gram_opts o;
    const json_t *root;
    sov_status st;
    char *err;
    size_t err_len;
    char path[256]; /* where we are, as a JSON pointer ("#/properties/a") */
    int nest;
    memo *memo;
    int32_t n_memo, cap_memo;
    /* shared rules, made on first use (-1 until then) */
    int32_t r_ws, r_char, r_str, r_num, r_int, r_value, r_bool, r_null, r_hex;
    gram_seq q; /* scratch sequence (alternatives are added from it) */
} sc;

gram_opts gram_default_opts(void) { return (gram_opts){.ws_max = 4, .strict = true}; }

static int32_t fail(sc *c, sov_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int32_t fail(sc *c, sov_status st, const char *fmt, ...) {
    if (c->st) return -1;
    c->st = st;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->err && c->err_len) {
        snprintf(c->err, c->err_len, "%s (at %s)", msg, c->path);
        for (char *e = c->err; *e; e++) /* one line, whatever names the schema holds */
            if ((unsigned char)*e < 0x20 || *e == 0x7f) *e = ' ';
    }
    return -1;
}

/* ---- small rule helpers ---- */

/* A fresh sequence for building one alternative (the builder copies it). */
static gram_seq *seq(sc *c) {
    c->q.n = 0;
    return &c->q;
}

static bool alt(sc *c, int32_t rule, gram_seq *q) {
    if (!gram_rule_alt(c->b, rule, q)) {
        fail(c, SOV_ERR_UNSUPPORTED, "schema too large for a grammar (over %d elements, or out of memory)", GRAM_MAX_ELEMS);
        return false;
    }
    return true;
}

static int32_t rule(sc *c) {
    const int32_t r = gram_rule_new(c->b);
    if (r < 0) fail(c, SOV_ERR_UNSUPPORTED, "schema too large for a grammar (over %d elements, or out of memory)", GRAM_MAX_ELEMS);
    return r;
}

/* A rule of one alternative: the literal text s. */
static int32_t lit_rule(sc *c, const char *s) {
    const int32_t r = rule(c);
    if (r < 0) return -1;
    gram_seq *q = seq(c);
    gram_seq_lit(q, s, strlen(s));
    return alt(c, r, q) ? r : -1;
}

/* Whitespace between JSON tokens: nothing, one space, or a newline and up to ws_max
 * spaces (pretty-printing indentation). Bounded, so a model cannot loop in it. */
static int32_t ws(sc *c) {
    if (c->r_ws >= 0) return c->r_ws;
    const int32_t w = rule(c);
    if (w < 0) return -1;
    gram_seq *q = seq(c);
    if (!alt(c, w, q)) return -1; /* empty */
    if (c->o.ws_max >= 0) {
        gram_seq_byte(q, ' ');
        if (!alt(c, w, q)) return -1;
        int32_t sp = rule(c); /* sp_k ::= "" | " " sp_{k-1} */
        if (sp < 0 || !alt(c, sp, seq(c))) return -1;
        for (int32_t k = 1; k <= c->o.ws_max; k++) {
            const int32_t n = rule(c);
            if (n < 0 || !alt(c, n, seq(c))) return -1;
            q = seq(c);
            gram_seq_byte(q, ' ');
            gram_seq_ref(q, sp);
            if (!alt(c, n, q)) return -1;
            sp = n;
        }
        q = seq(c);
        gram_seq_byte(q, '\n');
        gram_seq_ref(q, sp);
        if (!alt(c, w, q)) return -1;
    }
    return c->r_ws = w;
}

static int32_t hex(sc *c) {
    if (c->r_hex >= 0) return c->r_hex;
    const int32_t r = rule(c);
    if (r < 0) return -1;
    uint32_t set[8] = {0};
    for (const char *h = "0123456789abcdefABCDEF"; *h; h++)
        set[(uint8_t)*h / 32] |= 1u << ((uint8_t)*h % 32);
    gram_seq *q = seq(c);
    gram_seq_set(q, set);
    return alt(c, r, q) ? (c->r_hex = r) : -1;
}

/* One character of a JSON string: a UTF-8 encoded code point other than '"', '\' and
 * controls, or an escape (\u of a non-surrogate only). */
static int32_t json_char(sc *c) {
    if (c->r_char >= 0) return c->r_char;
    const int32_t r = rule(c), h = hex(c);
    if (r < 0 || h < 0) return -1;
    gram_seq *q = seq(c);
    uint32_t set[8] = {0};
    for (unsigned b = 0x20; b <= 0x7f; b++)
        if (b != '"' && b != '\\') set[b / 32] |= 1u << (b % 32);
    gram_seq_set(q, set);
    if (!alt(c, r, q)) return -1;
    static const uint8_t utf8[][4][2] = {
        /* the well-formed sequences of the Unicode standard, table 3-7 */
        {{0xC2, 0xDF}, {0x80, 0xBF}, {0, 0}, {0, 0}},
        {{0xE0, 0xE0}, {0xA0, 0xBF}, {0x80, 0xBF}, {0, 0}},
        {{0xE1, 0xEC}, {0x80, 0xBF}, {0x80, 0xBF}, {0, 0}},
        {{0xED, 0xED}, {0x80, 0x9F}, {0x80, 0xBF}, {0, 0}},
        {{0xEE, 0xEF}, {0x80, 0xBF}, {0x80, 0xBF}, {0, 0}},
        {{0xF0, 0xF0}, {0x90, 0xBF}, {0x80, 0xBF}, {0x80, 0xBF}},
        {{0xF1, 0xF3}, {0x80, 0xBF}, {0x80, 0xBF}, {0x80, 0xBF}},
        {{0xF4, 0xF4}, {0x80, 0x8F}, {0x80, 0xBF}, {0x80, 0xBF}},
    };
    for (size_t i = 0; i < sizeof utf8 / sizeof utf8[0]; i++) {
        q = seq(c);
        for (int k = 0; k < 4 && utf8[i][k][0]; k++)
            gram_seq_range(q, utf8[i][k][0], utf8[i][k][1]);
        if (!alt(c, r, q)) return -1;
    }
    q = seq(c);
    gram_seq_byte(q, '\\');
    memset(set, 0, sizeof set);
    for (const char *e = "\"\\/bfnrt"; *e; e++)
        set[(uint8_t)*e / 32] |= 1u << ((uint8_t)*e % 32);
    gram_seq_set(q, set);
    if (!alt(c, r, q)) return -1;
    /* \uXXXX outside D800-DFFF: [0-9A-Ca-c]XXX | [Dd][0-7]XX | [EFef]XXX */
    static const char *const first[] = {"0123456789ABCabc", "Dd", "EFef"};
    for (int i = 0; i < 3; i++) {
        q = seq(c);
        gram_seq_lit(q, "\\u", 2);
        memset(set, 0, sizeof set);
        for (const char *e = first[i]; *e; e++)
            set[(uint8_t)*e / 32] |= 1u << ((uint8_t)*e % 32);
        gram_seq_set(q, set);
        if (i == 1)
            gram_seq_range(q, '0', '7');
        else
            gram_seq_ref(q, h);
        gram_seq_ref(q, h);
        gram_seq_ref(q, h);
        if (!alt(c, r, q)) return -1;
    }
    return c->r_char = r;
}

/* x{min,max} followed by the rule tail (max -1: unbounded), with the tail folded into
 * the repetition so the choice "one more or stop" is made on the next byte. */
static int32_t repeat(sc *c, int32_t x, int64_t min, int64_t max, int32_t tail) {
    if (x < 0 || tail < 0) return -1;
    if (min > MAX_REPEAT || max > MAX_REPEAT)
        return fail(c, SOV_ERR_UNSUPPORTED, "a repetition bound over %d is not supported", MAX_REPEAT);
    int32_t r;
    gram_seq *q;
    if (max < 0) { /* L ::= x L | tail */
        if ((r = rule(c)) < 0) return -1;
        q = seq(c);
        gram_seq_ref(q, x);
        gram_seq_ref(q, r);
        if (!alt(c, r, q)) return -1;
        q = seq(c);
        gram_seq_ref(q, tail);
        if (!alt(c, r, q)) return -1;
    } else { /* R_0 ::= tail; R_k ::= tail | x R_{k-1} */
        r = tail;
        for (int64_t k = 1; k <= max - min; k++) {
            const int32_t n = rule(c);
            if (n < 0) return -1;
            q = seq(c);
            gram_seq_ref(q, tail);
            if (!alt(c, n, q)) return -1;
            q = seq(c);
            gram_seq_ref(q, x);
            gram_seq_ref(q, r);
            if (!alt(c, n, q)) return -1;
            r = n;
        }
    }
    for (int64_t k = 0; k < min; k++) { /* the mandatory copies in front */
        const int32_t n = rule(c);
        if (n < 0) return -1;
        q = seq(c);
        gram_seq_ref(q, x);
        gram_seq_ref(q, r);
        if (!alt(c, n, q)) return -1;
        r = n;
    }
    return r;
}

/* "..." with min..max characters. */
static int32_t string_len(sc *c, int64_t min, int64_t max) {
    const int32_t ch = json_char(c), close = lit_rule(c, "\"");
    const int32_t body = repeat(c, ch, min, max, close);
    const int32_t r = rule(c);
    if (body < 0 || r < 0) return -1;
    gram_seq *q = seq(c);
    gram_seq_byte(q, '"');
    gram_seq_ref(q, body);
    return alt(c, r, q) ? r : -1;
}

static int32_t any_string(sc *c) {
    if (c->r_str >= 0) return c->r_str;
    return c->r_str = string_len(c, 0, -1);
}

static int32_t digits(sc *c, int64_t min, int64_t max) {
    const int32_t d = rule(c), end = rule(c);
    if (d < 0 || end < 0) return -1;
    gram_seq *q = seq(c);
    gram_seq_range(q, '0', '9');
    if (!alt(c, d, q) || !alt(c, end, seq(c))) return -1;
    return repeat(c, d, min, max, end);
}

/* -?(0|[1-9][0-9]{0,15}) */
static int32_t any_integer(sc *c) {
    if (c->r_int >= 0) return c->r_int;
    const int32_t r = rule(c), more = digits(c, 0, MAX_DIGITS - 1);
    if (r < 0 || more < 0) return -1;
    for (int neg = 0; neg < 2; neg++) {
        gram_seq *q = seq(c);
        if (neg) gram_seq_byte(q, '-');
        gram_seq_byte(q, '0');
        if (!alt(c, r, q)) return -1;
        q = seq(c);
        if (neg) gram_seq_byte(q, '-');
        gram_seq_range(q, '1', '9');
        gram_seq_ref(q, more);
        if (!alt(c, r, q)) return -1;
    }
    return c->r_int = r;
}

/* integer ("." digits)? ([eE] [+-]? digits)? */
static int32_t any_number(sc *c) {
    if (c->r_num >= 0) return c->r_num;
    const int32_t i = any_integer(c), frac = rule(c), exp = rule(c), r = rule(c);
    const int32_t fd = digits(c, 1, MAX_DIGITS), ed = digits(c, 1, 2);
    if (i < 0 || frac < 0 || exp < 0 || r < 0 || fd < 0 || ed < 0) return -1;
    gram_seq *q = seq(c);
    if (!alt(c, frac, q)) return -1;
    gram_seq_byte(q, '.');
    gram_seq_ref(q, fd);
    if (!alt(c, frac, q)) return -1;
    if (!alt(c, exp, seq(c))) return -1;
    q = seq(c);
    uint32_t set[8] = {0};
    set['e' / 32] |= 1u << ('e' % 32);
    set['E' / 32] |= 1u << ('E' % 32);
    gram_seq_set(q, set);
    gram_seq_ref(q, ed);
    if (!alt(c, exp, q)) return -1;
    q = seq(c);
    gram_seq_set(q, set);
    memset(set, 0, sizeof set);
    set['+' / 32] |= 1u << ('+' % 32);
    set['-' / 32] |= 1u << ('-' % 32);
    gram_seq_set(q, set);
    gram_seq_ref(q, ed);
    if (!alt(c, exp, q)) return -1;
    q = seq(c);
    gram_seq_ref(q, i);
    gram_seq_ref(q, frac);
    gram_seq_ref(q, exp);
    return alt(c, r, q) ? (c->r_num = r) : -1;
}

/* ---- integer ranges: decimal strings of lo..hi as alternatives ---- */

/* Adds to rule r the same-length decimal strings from a to b (digit strings of length
 * n, a <= b), each after the sequence prefix[0..np). */
static bool same_len(sc *c, int32_t r, const gram_sym *prefix, int32_t np, const char *a, const char *b, int n) {
    gram_seq q = {0};
    bool ok = true;
    int lead = 0; /* the common leading digits become part of the prefix */
    while (lead < n && a[lead] == b[lead])
        lead++;
    int tail_free = n; /* a's tail all 0 and b's tail all 9 from here on */
    while (tail_free > lead && a[tail_free - 1] == '0' && b[tail_free - 1] == '9')
        tail_free--;
    for (int32_t i = 0; i < np; i++)
        if (prefix[i].is_ref) gram_seq_ref(&q, prefix[i].rule);
        else gram_seq_set(&q, prefix[i].set);
    for (int i = 0; i < lead; i++)
        gram_seq_byte(&q, (uint8_t)a[i]);
    if (lead == n || tail_free <= lead + 1) { /* one block: fixed digits, then free ones */
        if (lead < n) gram_seq_range(&q, (uint8_t)a[lead], (uint8_t)b[lead]);
        for (int i = lead + 1; i < n; i++)
            gram_seq_range(&q, '0', '9');
        ok = q.oom ? (fail(c, SOV_ERR_NOMEM, "out of memory"), false) : alt(c, r, &q);
        gram_seq_free(&q);
        return ok;
    }
    /* a[lead] < b[lead]: a[lead] then a's tail..9s; the digits between; b[lead] then 0s..b's tail */
    const int rest = n - lead - 1;
    char nines[MAX_DIGITS + 1], zeros[MAX_DIGITS + 1];
    memset(nines, '9', (size_t)rest);
    memset(zeros, '0', (size_t)rest);
    gram_seq_byte(&q, (uint8_t)a[lead]);
    ok = !q.oom && same_len(c, r, q.s, q.n, a + lead + 1, nines, rest);
    q.n--;
    if (ok && a[lead] + 1 <= b[lead] - 1) {
        const int32_t keep = q.n;
        gram_seq_range(&q, (uint8_t)(a[lead] + 1), (uint8_t)(b[lead] - 1));
        for (int i = 0; i < rest; i++)
            gram_seq_range(&q, '0', '9');
        ok = !q.oom && alt(c, r, &q);
        q.n = keep; /* alt reset q.n to 0; rebuild the prefix below */
    }
    if (ok) {
        q.n = 0;
        for (int32_t i = 0; i < np; i++)
            if (prefix[i].is_ref) gram_seq_ref(&q, prefix[i].rule);
            else gram_seq_set(&q, prefix[i].set);
        for (int i = 0; i < lead; i++)
            gram_seq_byte(&q, (uint8_t)a[i]);
        gram_seq_byte(&q, (uint8_t)b[lead]);
        ok = !q.oom && same_len(c, r, q.s, q.n, zeros, b + lead + 1, rest);
    }
    if (q.oom && !c->st) fail(c, SOV_ERR_NOMEM, "out of memory");
    gram_seq_free(&q);
    return ok && !c->st;
}

static int ndigits(int64_t v) {
    int n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* Adds the magnitudes lo..hi (0 <= lo <= hi < 10^16), with a '-' first when neg. */
static bool nonneg_range(sc *c, int32_t r, int64_t lo, int64_t hi, bool neg) {
    gram_sym minus = {0};
    minus.set['-' / 32] = 1u << ('-' % 32);
    for (int k = ndigits(lo); k <= ndigits(hi); k++) {
        int64_t p = 1;
        for (int i = 1; i < k; i++)
            p *= 10;
        const int64_t a = SOV_MAX(lo, k == 1 ? 0 : p), b = SOV_MIN(hi, p * 10 - 1);
        if (a > b) continue;
        char sa[24], sb[24];
        snprintf(sa, sizeof sa, "%lld", (long long)a);
        snprintf(sb, sizeof sb, "%lld", (long long)b);
        if (!same_len(c, r, &minus, neg ? 1 : 0, sa, sb, k)) return false;
    }
    return true;
}

static int32_t integer_range(sc *c, int64_t lo, int64_t hi) {
    const int32_t r = rule(c);
    if (r < 0) return -1;
    if (hi >= 0 && !nonneg_range(c, r, lo > 0 ? lo : 0, hi, false)) return -1;
    if (lo < 0 && !nonneg_range(c, r, hi < 0 ? -hi : 1, -lo, true)) return -1;
    return r;
}

/* ---- the schema walk ---- */

static int32_t compile(sc *c, const json_t *s);

static void path_push(sc *c, const char *seg, size_t *saved) {
    *saved = strlen(c->path);
    snprintf(c->path + *saved, sizeof c->path - *saved, "/%s", seg);
}

static int32_t compile_at(sc *c, const json_t *s, const char *seg) {
    size_t saved;
    path_push(c, seg, &saved);
    const int32_t r = compile(c, s);
    c->path[saved] = 0;
    return r;
}

/* Alternatives of one rule, each a reference. */
static bool alt_ref(sc *c, int32_t r, int32_t x) {
    if (x < 0) return false;
    gram_seq *q = seq(c);
    gram_seq_ref(q, x);
    return alt(c, r, q);
}

static int32_t literal(sc *c, const json_t *v) {
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) return fail(c, SOV_ERR_NOMEM, "out of memory");
    const int32_t r = lit_rule(c, text);
    free(text);
    return r;
}

static int32_t any_value(sc *c);

static int32_t any_object(sc *c, int32_t value) {
    /* "{" W ( "}" | K W ":" W V W M );  M ::= "}" | "," W K W ":" W V W M */
    const int32_t w = ws(c), k = any_string(c), r = rule(c), body = rule(c), m = rule(c);
    if (w < 0 || k < 0 || r < 0 || body < 0 || m < 0 || value < 0) return -1;
    gram_seq *q = seq(c);
    gram_seq_byte(q, '}');
    if (!alt(c, body, q)) return -1;
    q = seq(c);
    gram_seq_byte(q, '}');
    if (!alt(c, m, q)) return -1;
    for (int first = 0; first < 2; first++) {
        q = seq(c);
        if (!first) {
            gram_seq_byte(q, ',');
            gram_seq_ref(q, w);
        }
        gram_seq_ref(q, k);
        gram_seq_ref(q, w);
        gram_seq_byte(q, ':');
        gram_seq_ref(q, w);
        gram_seq_ref(q, value);
        gram_seq_ref(q, w);
        gram_seq_ref(q, m);
        if (!alt(c, first ? body : m, q)) return -1;
    }
    q = seq(c);
    gram_seq_byte(q, '{');
    gram_seq_ref(q, w);
    gram_seq_ref(q, body);
    return alt(c, r, q) ? r : -1;
}

static int32_t array_of(sc *c, int32_t item, int64_t min, int64_t max) {
    /* "[" W B; B ::= "]" (when min is 0) | item W REST; REST repeats "," W item W, then "]" */
    const int32_t w = ws(c), close = lit_rule(c, "]"), unit = rule(c), r = rule(c), body = rule(c);
    if (w < 0 || close < 0 || unit < 0 || r < 0 || body < 0 || item < 0) return -1;
    gram_seq *q = seq(c);
    gram_seq_byte(q, ',');
    gram_seq_ref(q, w);
    gram_seq_ref(q, item);
    gram_seq_ref(q, w);
    if (!alt(c, unit, q)) return -1;
    if (min == 0 && !alt_ref(c, body, close)) return -1;
    if (max != 0) {
        const int32_t rest = repeat(c, unit, min > 0 ? min - 1 : 0, max < 0 ? -1 : max - 1, close);
        if (rest < 0) return -1;
        q = seq(c);
        gram_seq_ref(q, item);
        gram_seq_ref(q, w);
        gram_seq_ref(q, rest);
        if (!alt(c, body, q)) return -1;
    }
    q = seq(c);
    gram_seq_byte(q, '[');
    gram_seq_ref(q, w);
    gram_seq_ref(q, body);
    return alt(c, r, q) ? r : -1;
}

static int32_t any_value(sc *c) {
    if (c->r_value >= 0) return c->r_value;
    const int32_t v = rule(c);
    if (v < 0) return -1;
    c->r_value = v; /* objects and arrays refer back to it */
    if (!alt_ref(c, v, any_object(c, v)) || !alt_ref(c, v, array_of(c, v, 0, -1)) ||
        !alt_ref(c, v, any_string(c)) || !alt_ref(c, v, any_number(c)) || !alt_ref(c, v, lit_rule(c, "true")) ||
        !alt_ref(c, v, lit_rule(c, "false")) || !alt_ref(c, v, lit_rule(c, "null")))
        return -1;
    return v;
}

/* ---- keywords ---- */

/* Keywords that only annotate: ignored. */
static bool is_annotation(const char *k) {
    static const char *const ann[] = {"title", "description", "$schema", "$id", "$comment", "examples", "default",
                                      "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "$anchor"};
    for (size_t i = 0; i < sizeof ann / sizeof ann[0]; i++)
        if (strcmp(k, ann[i]) == 0) return true;
    return false;
}

static bool is_supported(const char *k) {
    static const char *const sup[] = {"type",      "enum",      "const",     "anyOf",    "oneOf",
                                      "allOf",     "$ref",      "properties", "required", "additionalProperties",
                                      "items",     "minItems",  "maxItems",  "minLength", "maxLength",
                                      "format",    "minimum",   "maximum",   "exclusiveMinimum",
                                      "exclusiveMaximum",       "uniqueItems", "pattern"};
    for (size_t i = 0; i < sizeof sup / sizeof sup[0]; i++)
        if (strcmp(k, sup[i]) == 0) return true;
    return is_annotation(k);
}

/* A non-negative integer keyword (absent: dflt). */
static bool get_count(sc *c, const json_t *s, const char *k, int64_t dflt, int64_t *out) {
    const json_t *v = json_object_get(s, k);
    *out = dflt;
    if (!v) return true;
    double d = json_is_integer(v) ? (double)json_integer_value(v) : json_is_real(v) ? json_real_value(v) : -1;
    if (!(d >= 0) || d != floor(d)) {
        fail(c, SOV_ERR_ARG, "'%s' must be a non-negative integer", k);
        return false;
    }
    if (d > MAX_REPEAT) {
        fail(c, SOV_ERR_UNSUPPORTED, "'%s' over %d is not supported", k, MAX_REPEAT);
        return false;
    }
    *out = (int64_t)d;
    return true;
}

static bool get_number(sc *c, const json_t *s, const char *k, bool *has, double *out) {
    const json_t *v = json_object_get(s, k);
    *has = false;
    if (!v) return true;
    if (!json_is_number(v)) {
        fail(c, SOV_ERR_ARG, "'%s' must be a number", k);
        return false;
    }
    *has = true;
    *out = json_number_value(v);
    return true;
}

/* The integers allowed by minimum/maximum/exclusive* into [*lo, *hi] (within 16 digits).
 * False (with the error set) when the bounds are malformed or empty. */
static bool int_bounds(sc *c, const json_t *s, int64_t *lo, int64_t *hi, bool *bounded) {
    const double cap = 9999999999999999.0; /* 16 digits */
    double mn = -cap, mx = cap, v = 0;
    bool has;
    *bounded = false;
    if (!get_number(c, s, "minimum", &has, &v)) return false;
    if (has) mn = fmax(mn, ceil(v)), *bounded = true;
    if (!get_number(c, s, "maximum", &has, &v)) return false;
    if (has) mx = fmin(mx, floor(v)), *bounded = true;
    const char *ex[2] = {"exclusiveMinimum", "exclusiveMaximum"};
    for (int i = 0; i < 2; i++) {
        const json_t *e = json_object_get(s, ex[i]);
        if (!e) continue;
        if (json_is_boolean(e)) /* draft 4: a flag on minimum/maximum */
            return fail(c, SOV_ERR_UNSUPPORTED, "boolean '%s' (draft 4) is not supported", ex[i]), false;
        if (!get_number(c, s, ex[i], &has, &v)) return false;
        *bounded = true;
        if (i == 0) mn = fmax(mn, floor(v) + 1);
        else mx = fmin(mx, ceil(v) - 1);
    }
    if (mn > mx) return fail(c, SOV_ERR_ARG, "no integer satisfies the minimum/maximum bounds (within 16 digits)"), false;
    *lo = (int64_t)fmax(mn, -cap);
    *hi = (int64_t)fmin(mx, cap);
    return true;
}

static int32_t format_rule(sc *c, const char *f);

/* ---- pattern: a regular-expression subset ----
 *
 * JSON Schema patterns are ECMA-262 regexes that search (unanchored). Supported: literal
 * characters (UTF-8 passes through), escaped punctuation, \d \w \s (\s as a space only),
 * \n \t \r, "." (as printable ASCII), classes [...] of ASCII with ranges and those
 * escapes, negated classes (as printable ASCII minus the set), groups (...) and (?:...),
 * alternation, quantifiers * + ? {n} {n,} {n,m} (a lazy "?" after one changes nothing
 * here), ^ at the start and $ at the end. An unanchored side takes any string characters.
 * Characters are generated JSON-escaped where JSON needs it (" and \ and controls). Every
 * "subset" above only narrows what is generated, so output always matches. */

typedef struct rx {
    sc *c;
    const char *p, *end, *start;
} rx;

static int32_t rx_fail(rx *r, const char *what) {
    return fail(r->c, SOV_ERR_UNSUPPORTED, "'pattern': %s is not supported (at offset %d)", what,
                (int)(r->p - r->start));
}

static void set_add(uint32_t set[8], unsigned b) { set[b / 32] |= 1u << (b % 32); }
static bool set_has(const uint32_t set[8], unsigned b) { return (set[b / 32] >> (b % 32)) & 1u; }

/* A rule for one character of a 128-bit ASCII set, JSON-escaped where needed. */
static int32_t ascii_set_rule(sc *c, const uint32_t set[8]) {
    const int32_t r = rule(c);
    if (r < 0) return -1;
    uint32_t plain[8] = {0};
    bool any = false;
    for (unsigned b = 0x20; b < 0x7f; b++)
        if (set_has(set, b) && b != '"' && b != '\\') set_add(plain, b), any = true;
    gram_seq *q;
    if (any) {
        q = seq(c);
        gram_seq_set(q, plain);
        if (!alt(c, r, q)) return -1;
    }
    static const struct {
        unsigned b;
        const char *esc;
    } e[] = {{'"', "\\\""}, {'\\', "\\\\"}, {'\n', "\\n"}, {'\t', "\\t"}, {'\r', "\\r"}};
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++)
        if (set_has(set, e[i].b)) {
            q = seq(c);
            gram_seq_lit(q, e[i].esc, 2);
            if (!alt(c, r, q)) return -1;
            any = true;
        }
    if (!any) return fail(c, SOV_ERR_UNSUPPORTED, "'pattern': a character class that matches no printable character");
    return r;
}

static bool rx_escape_set(rx *r, char e, uint32_t set[8]) {
    switch (e) {
    case 'd':
        for (unsigned b = '0'; b <= '9'; b++) set_add(set, b);
        return true;
    case 'w':
        for (unsigned b = 0; b < 128; b++)
            if ((b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || b == '_') set_add(set, b);
        return true;
    case 's': set_add(set, ' '); return true;
    case 'n': set_add(set, '\n'); return true;
    case 't': set_add(set, '\t'); return true;
    case 'r': set_add(set, '\r'); return true;
    default:
        if (strchr("\\^$.|?*+()[]{}/-\"'", e) && e) {
            set_add(set, (unsigned char)e);
            return true;
        }
        char what[40];
        snprintf(what, sizeof what, "the escape \\%c", e ? e : '0');
        rx_fail(r, what);
        return false;
    }
}

static int32_t rx_class(rx *r) { /* after '[' */
    uint32_t set[8] = {0};
    bool neg = false;
    if (r->p < r->end && *r->p == '^') neg = true, r->p++;
    bool first = true;
    while (r->p < r->end && (*r->p != ']' || first)) {
        first = false;
        unsigned lo;
        uint32_t esc[8] = {0};
        if (*r->p == '\\') {
            if (++r->p >= r->end) return rx_fail(r, "a trailing backslash");
            const char e = *r->p++;
            if (!rx_escape_set(r, e, esc)) return -1;
            int cnt = 0;
            for (unsigned b = 0; b < 128; b++) cnt += set_has(esc, b);
            if (cnt != 1 || !(r->p < r->end && *r->p == '-' && r->p + 1 < r->end && r->p[1] != ']')) {
                for (int w = 0; w < 8; w++) set[w] |= esc[w];
                continue;
            }
            lo = 0;
            while (!set_has(esc, lo)) lo++;
        } else {
            lo = (unsigned char)*r->p++;
            if (lo >= 128) return rx_fail(r, "a non-ASCII character in a class");
        }
        if (r->p + 1 < r->end && *r->p == '-' && r->p[1] != ']') {
            r->p++;
            unsigned hi = (unsigned char)*r->p++;
            if (hi == '\\') {
                if (r->p >= r->end) return rx_fail(r, "a trailing backslash");
                hi = (unsigned char)*r->p++;
            }
            if (hi >= 128 || hi < lo) return rx_fail(r, "this class range");
            for (unsigned b = lo; b <= hi; b++) set_add(set, b);
        } else {
            set_add(set, lo);
        }
    }
    if (r->p >= r->end) return fail(r->c, SOV_ERR_ARG, "'pattern': an unclosed '['");
    r->p++;
    if (neg) {
        uint32_t inv[8] = {0};
        for (unsigned b = 0x20; b < 0x7f; b++)
            if (!set_has(set, b)) set_add(inv, b);
        return ascii_set_rule(r->c, inv);
    }
    return ascii_set_rule(r->c, set);
}

static int32_t rx_alt(rx *r, bool *nullable);

/* One atom; *nullable: it can match the empty string. */
static int32_t rx_atom(rx *r, bool *nullable) {
    sc *c = r->c;
    *nullable = false;
    const char ch = *r->p++;
    if (ch == '(') {
        if (r->p < r->end && *r->p == '?') {
            if (r->p + 1 < r->end && r->p[1] == ':') r->p += 2;
            else return rx_fail(r, "a group with (? other than (?:");
        }
        const int32_t x = rx_alt(r, nullable);
        if (x < 0) return -1;
        if (r->p >= r->end || *r->p != ')') return fail(c, SOV_ERR_ARG, "'pattern': an unclosed '('");
        r->p++;
        return x;
    }
    if (ch == '[') return rx_class(r);
    if (ch == '.') {
        uint32_t set[8] = {0};
        for (unsigned b = 0x20; b < 0x7f; b++) set_add(set, b);
        return ascii_set_rule(c, set);
    }
    if (ch == '\\') {
        if (r->p >= r->end) return rx_fail(r, "a trailing backslash");
        const char e = *r->p++;
        if (e == 'b' || e == 'B') return rx_fail(r, "a word boundary");
        if (e >= '1' && e <= '9') return rx_fail(r, "a back-reference");
        uint32_t set[8] = {0};
        if (!rx_escape_set(r, e, set)) return -1;
        return ascii_set_rule(c, set);
    }
    if (ch == '^' || ch == '$') return rx_fail(r, "an anchor inside the pattern");
    if (strchr("*+?{", ch)) return fail(c, SOV_ERR_ARG, "'pattern': a quantifier with nothing to repeat");
    if (ch == ')' ) return fail(c, SOV_ERR_ARG, "'pattern': an unmatched ')'");
    const unsigned char u = (unsigned char)ch;
    if (u < 0x20) return rx_fail(r, "a control character");
    if (u < 0x80) {
        uint32_t set[8] = {0};
        set_add(set, u);
        return ascii_set_rule(c, set);
    }
    /* a UTF-8 sequence, copied as it is (the schema was valid UTF-8) */
    const int32_t x = rule(c);
    if (x < 0) return -1;
    gram_seq *q = seq(c);
    gram_seq_byte(q, u);
    while (r->p < r->end && ((unsigned char)*r->p & 0xC0) == 0x80)
        gram_seq_byte(q, (uint8_t)*r->p++);
    return alt(c, x, q) ? x : -1;
}

static bool rx_number(rx *r, int64_t *out) {
    if (r->p >= r->end || *r->p < '0' || *r->p > '9') return false;
    int64_t v = 0;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        v = v * 10 + (*r->p++ - '0');
        if (v > MAX_REPEAT) v = MAX_REPEAT + 1;
    }
    *out = v;
    return true;
}

static int32_t rx_empty(sc *c) {
    const int32_t e = rule(c);
    return e >= 0 && alt(c, e, seq(c)) ? e : -1;
}

static int32_t rx_seq(rx *r, bool *nullable) {
    sc *c = r->c;
    const int32_t s = rule(c);
    if (s < 0) return -1;
    gram_seq q = {0};
    *nullable = true;
    while (r->p < r->end && *r->p != '|' && *r->p != ')' && !(*r->p == '$' && r->p + 1 == r->end)) {
        bool an;
        int32_t x = rx_atom(r, &an);
        if (x < 0) break;
        if (r->p < r->end && strchr("*+?{", *r->p)) {
            int64_t mn = 0, mx = -1;
            const char qch = *r->p++;
            if (qch == '+') mn = 1;
            else if (qch == '?') mx = 1;
            else if (qch == '{') {
                if (!rx_number(r, &mn)) { fail(c, SOV_ERR_ARG, "'pattern': a malformed {n,m}"); break; }
                mx = mn;
                if (r->p < r->end && *r->p == ',') {
                    r->p++;
                    mx = -1;
                    if (r->p < r->end && *r->p != '}' && !rx_number(r, &mx)) { fail(c, SOV_ERR_ARG, "'pattern': a malformed {n,m}"); break; }
                }
                if (r->p >= r->end || *r->p != '}' || (mx >= 0 && mx < mn)) { fail(c, SOV_ERR_ARG, "'pattern': a malformed {n,m}"); break; }
                r->p++;
            }
            if (r->p < r->end && *r->p == '?') r->p++; /* lazy: the same strings */
            if (an && mx < 0) { rx_fail(r, "an unbounded repetition of something that can be empty"); break; }
            x = repeat(c, x, mn, mx, rx_empty(c));
            an = an || mn == 0;
            if (x < 0) break;
        }
        *nullable = *nullable && an;
        gram_seq_ref(&q, x);
    }
    const bool ok = !c->st && !q.oom && alt(c, s, &q);
    gram_seq_free(&q);
    return ok ? s : -1;
}

static int32_t rx_alt(rx *r, bool *nullable) {
    sc *c = r->c;
    const int32_t a = rule(c);
    if (a < 0) return -1;
    *nullable = false;
    for (;;) {
        bool n;
        if (!alt_ref(c, a, rx_seq(r, &n))) return -1;
        *nullable = *nullable || n;
        if (r->p < r->end && *r->p == '|') {
            r->p++;
            continue;
        }
        return a;
    }
}

static int32_t pattern_rule(sc *c, const char *pat) {
    rx r = {c, pat, pat + strlen(pat), pat};
    const bool start = r.p < r.end && *r.p == '^';
    if (start) r.p++;
    const bool end = r.end > r.p && r.end[-1] == '$' && !(r.end - 1 > r.p && r.end[-2] == '\\');
    bool nullable;
    const int32_t body = rx_alt(&r, &nullable);
    if (body < 0) return -1;
    if (end) r.p++; /* the final '$' */
    if (r.p != r.end) return fail(c, SOV_ERR_ARG, "'pattern': an unmatched ')'");
    const int32_t res = rule(c), any = json_char(c), close = lit_rule(c, "\"");
    if (res < 0 || any < 0 || close < 0) return -1;
    /* "  (any char)* (unless ^)  body  (any char)* (unless $)  " */
    const int32_t tail = end ? close : repeat(c, any, 0, -1, close);
    gram_seq *q = seq(c);
    gram_seq_byte(q, '"');
    if (!start) {
        const int32_t star = repeat(c, any, 0, -1, rx_empty(c));
        if (star < 0) return -1;
        q = seq(c);
        gram_seq_byte(q, '"');
        gram_seq_ref(q, star);
    }
    gram_seq_ref(q, body);
    gram_seq_ref(q, tail);
    return tail >= 0 && alt(c, res, q) ? res : -1;
}

static int32_t string_schema(sc *c, const json_t *s) {
    const json_t *pat = json_object_get(s, "pattern");
    if (pat) {
        if (!json_is_string(pat)) return fail(c, SOV_ERR_ARG, "'pattern' must be a string");
        if (json_object_get(s, "minLength") || json_object_get(s, "maxLength") || json_object_get(s, "format"))
            return fail(c, SOV_ERR_UNSUPPORTED, "'pattern' together with minLength/maxLength/format is not supported");
        return pattern_rule(c, json_string_value(pat));
    }
    const json_t *f = json_object_get(s, "format");
    if (f) {
        if (!json_is_string(f)) return fail(c, SOV_ERR_ARG, "'format' must be a string");
        if (json_object_get(s, "minLength") || json_object_get(s, "maxLength"))
            return fail(c, SOV_ERR_UNSUPPORTED, "'format' together with minLength/maxLength is not supported");
        return format_rule(c, json_string_value(f));
    }
    int64_t mn, mx;
    if (!get_count(c, s, "minLength", 0, &mn) || !get_count(c, s, "maxLength", -1, &mx)) return -1;
    if (mx >= 0 && mn > mx) return fail(c, SOV_ERR_ARG, "minLength %lld is over maxLength %lld", (long long)mn, (long long)mx);
    if (mn == 0 && mx < 0) return any_string(c);
    return string_len(c, mn, mx);
}

static int32_t array_schema(sc *c, const json_t *s) {
    int64_t mn, mx;
    if (!get_count(c, s, "minItems", 0, &mn) || !get_count(c, s, "maxItems", -1, &mx)) return -1;
    if (mx >= 0 && mn > mx) return fail(c, SOV_ERR_ARG, "minItems %lld is over maxItems %lld", (long long)mn, (long long)mx);
    const json_t *u = json_object_get(s, "uniqueItems");
    if (u && !json_is_false(u)) return fail(c, SOV_ERR_UNSUPPORTED, "unsupported keyword 'uniqueItems' (true)");
    const json_t *items = json_object_get(s, "items");
    int32_t item;
    if (!items || json_is_true(items)) {
        item = any_value(c);
    } else if (json_is_false(items)) {
        if (mn > 0) return fail(c, SOV_ERR_ARG, "'items': false with minItems %lld matches nothing", (long long)mn);
        mx = 0;
        item = any_value(c);
    } else if (json_is_array(items)) {
        return fail(c, SOV_ERR_UNSUPPORTED, "unsupported keyword 'items' as an array (tuples)");
    } else {
        item = compile_at(c, items, "items");
    }
    return array_of(c, item, mn, mx);
}

static int32_t object_schema(sc *c, const json_t *s) {
    const json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    const json_t *addl = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props)) return fail(c, SOV_ERR_ARG, "'properties' must be an object");
    if (req && !json_is_array(req)) return fail(c, SOV_ERR_ARG, "'required' must be an array of strings");
    for (size_t i = 0; req && i < json_array_size(req); i++)
        if (!json_is_string(json_array_get(req, i))) return fail(c, SOV_ERR_ARG, "'required' must be an array of strings");
    if (addl && !json_is_boolean(addl) && !json_is_object(addl))
        return fail(c, SOV_ERR_ARG, "'additionalProperties' must be a boolean or a schema");
    const size_t np = props ? json_object_size(props) : 0, nr = req ? json_array_size(req) : 0;
    if (np == 0 && nr == 0) {
        if (addl && json_is_object(addl)) return any_object(c, compile_at(c, addl, "additionalProperties"));
        if (addl && json_is_false(addl)) return lit_rule(c, "{}");
        return any_object(c, any_value(c));
    }
    /* the members: properties in schema order, then required names without a schema */
    const size_t n = np + nr;
    const char **names = calloc(n, sizeof *names);
    int32_t *vals = calloc(n, sizeof *vals);
    bool *need = calloc(n, sizeof *need);
    int32_t r = -1;
    size_t m = 0;
    if (!names || !vals || !need) {
        fail(c, SOV_ERR_NOMEM, "out of memory");
        goto out;
    }
    const char *key;
    const json_t *ps;
    size_t saved;
    path_push(c, "properties", &saved);
    json_object_foreach((json_t *)props, key, ps) {
        names[m] = key;
        vals[m] = compile_at(c, ps, key);
        if (vals[m] < 0) break;
        m++;
    }
    c->path[saved] = 0;
    if (c->st) goto out;
    for (size_t i = 0; i < nr; i++) {
        const char *rn = json_string_value(json_array_get(req, i));
        size_t j = 0;
        while (j < m && strcmp(names[j], rn) != 0)
            j++;
        if (j == m) {
            if (addl && json_is_false(addl))
                { fail(c, SOV_ERR_ARG, "required property '%.60s' is not allowed by additionalProperties false", rn); goto out; }
            names[m] = rn;
            vals[m] = addl && json_is_object(addl) ? compile_at(c, addl, "additionalProperties") : any_value(c);
            if (vals[m] < 0) goto out;
            m++;
        }
        need[j] = true;
    }
    /* O(i, e): at member i, e: a member was written before. O(m, _) ::= "}" */
    const int32_t w = ws(c);
    int32_t next[2];
    next[0] = next[1] = lit_rule(c, "}");
    if (w < 0 || next[0] < 0) goto out;
    for (size_t i = m; i-- > 0;) {
        json_t *js = json_string(names[i]);
        char *k = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
        json_decref(js);
        int32_t cur[2];
        for (int e = 0; e < 2; e++) {
            cur[e] = rule(c);
            if (cur[e] < 0 || !k) break;
            if (!need[i] && !alt_ref(c, cur[e], next[e])) break;
            gram_seq *q = seq(c);
            if (e) {
                gram_seq_byte(q, ',');
                gram_seq_ref(q, w);
            }
            gram_seq_lit(q, k, strlen(k));
            gram_seq_ref(q, w);
            gram_seq_byte(q, ':');
            gram_seq_ref(q, w);
            gram_seq_ref(q, vals[i]);
            gram_seq_ref(q, w);
            gram_seq_ref(q, next[1]);
            if (!alt(c, cur[e], q)) break;
        }
        free(k);
        if (!k && !c->st) fail(c, SOV_ERR_NOMEM, "out of memory");
        if (c->st) goto out;
        next[0] = cur[0];
        next[1] = cur[1];
    }
    if ((r = rule(c)) < 0) goto out;
    gram_seq *q = seq(c);
    gram_seq_byte(q, '{');
    gram_seq_ref(q, w);
    gram_seq_ref(q, next[0]);
    if (!alt(c, r, q)) r = -1;
out:
    free(names);
    free(vals);
    free(need);
    return c->st ? -1 : r;
}

static int32_t type_schema(sc *c, const json_t *s, const char *t) {
    if (strcmp(t, "null") == 0) return lit_rule(c, "null");
    if (strcmp(t, "boolean") == 0) {
        const int32_t r = rule(c);
        if (r < 0 || !alt_ref(c, r, lit_rule(c, "true")) || !alt_ref(c, r, lit_rule(c, "false"))) return -1;
        return r;
    }
    if (strcmp(t, "integer") == 0 || strcmp(t, "number") == 0) {
        int64_t lo, hi;
        bool bounded;
        if (!int_bounds(c, s, &lo, &hi, &bounded)) return -1;
        if (bounded) return integer_range(c, lo, hi); /* numbers too: the integers in range */
        return t[0] == 'i' ? any_integer(c) : any_number(c);
    }
    if (strcmp(t, "string") == 0) return string_schema(c, s);
    if (strcmp(t, "array") == 0) return array_schema(c, s);
    if (strcmp(t, "object") == 0) return object_schema(c, s);
    return fail(c, SOV_ERR_ARG, "unknown type '%.40s'", t);
}

/* The type a schema without "type" means, from its keywords ("" when none says). */
static const char *implied_type(const json_t *s) {
    static const struct {
        const char *kw, *type;
    } k[] = {{"properties", "object"},  {"required", "object"},  {"additionalProperties", "object"},
             {"items", "array"},        {"minItems", "array"},   {"maxItems", "array"},
             {"minLength", "string"},   {"maxLength", "string"}, {"format", "string"}, {"pattern", "string"},
             {"minimum", "number"},     {"maximum", "number"},   {"exclusiveMinimum", "number"},
             {"exclusiveMaximum", "number"}};
    const char *t = "";
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (json_object_get(s, k[i].kw)) {
            if (*t && strcmp(t, k[i].type) != 0) return NULL; /* keywords of two types */
            t = k[i].type;
        }
    return t;
}

static bool value_has_type(const json_t *v, const char *t) {
    if (strcmp(t, "null") == 0) return json_is_null(v);
    if (strcmp(t, "boolean") == 0) return json_is_boolean(v);
    if (strcmp(t, "integer") == 0)
        return json_is_integer(v) || (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
    if (strcmp(t, "number") == 0) return json_is_number(v);
    if (strcmp(t, "string") == 0) return json_is_string(v);
    if (strcmp(t, "array") == 0) return json_is_array(v);
    if (strcmp(t, "object") == 0) return json_is_object(v);
    return false;
}

/* Only annotations and the named keywords beside kw? Else the error names the first other. */
static bool only_beside(sc *c, const json_t *s, const char *kw, const char *also) {
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)s, k, v) {
        if (strcmp(k, kw) == 0 || is_annotation(k) || (also && strcmp(k, also) == 0)) continue;
        fail(c, SOV_ERR_UNSUPPORTED, "keyword '%.60s' beside '%s' is not supported", k, kw);
        return false;
    }
    return true;
}

static const json_t *resolve(sc *c, const char *ref) {
    if (strcmp(ref, "#") == 0) return c->root;
    const char *p;
    if (strncmp(ref, "#/$defs/", 8) == 0) p = ref + 2;
    else if (strncmp(ref, "#/definitions/", 14) == 0) p = ref + 2;
    else return NULL;
    const json_t *cur = c->root;
    char seg[256];
    while (*p && cur) { /* JSON pointer segments with ~1 -> / and ~0 -> ~ */
        size_t n = 0;
        while (*p && *p != '/') {
            if (n + 1 >= sizeof seg) return NULL;
            if (p[0] == '~' && p[1] == '1') seg[n++] = '/', p += 2;
            else if (p[0] == '~' && p[1] == '0') seg[n++] = '~', p += 2;
            else seg[n++] = *p++;
        }
        seg[n] = 0;
        if (*p == '/') p++;
        cur = json_is_object(cur) ? json_object_get(cur, seg) : NULL;
    }
    return cur;
}

static int32_t ref_schema(sc *c, const json_t *s) {
    const json_t *ref = json_object_get(s, "$ref");
    if (!json_is_string(ref)) return fail(c, SOV_ERR_ARG, "'$ref' must be a string");
    if (!only_beside(c, s, "$ref", NULL)) return -1;
    const json_t *t = resolve(c, json_string_value(ref));
    if (!t) return fail(c, SOV_ERR_UNSUPPORTED, "'$ref' %.80s: only \"#\", \"#/$defs/...\" and \"#/definitions/...\" "
                        "within the schema are supported (or the target is missing)", json_string_value(ref));
    for (int32_t i = 0; i < c->n_memo; i++)
        if (c->memo[i].target == t) return c->memo[i].rule;
    const int32_t r = rule(c);
    if (r < 0) return -1;
    if (c->n_memo == c->cap_memo) {
        const int32_t cap = c->cap_memo ? c->cap_memo * 2 : 16;
        memo *p = realloc(c->memo, (size_t)cap * sizeof *p);
        if (!p) return fail(c, SOV_ERR_NOMEM, "out of memory");
        c->memo = p;
        c->cap_memo = cap;
    }
    c->memo[c->n_memo++] = (memo){t, r};
    char saved[sizeof c->path];
    memcpy(saved, c->path, sizeof saved);
    snprintf(c->path, sizeof c->path, "%s", json_string_value(ref));
    const int32_t body = compile(c, t);
    memcpy(c->path, saved, sizeof saved);
    return alt_ref(c, r, body) ? r : -1;
}

static int32_t compile_inner(sc *c, const json_t *s) {
    if (json_is_true(s)) return any_value(c);
    if (json_is_false(s)) return fail(c, SOV_ERR_ARG, "schema false matches nothing");
    if (!json_is_object(s)) return fail(c, SOV_ERR_ARG, "a schema must be an object or a boolean");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)s, k, v) {
        if (!is_supported(k)) return fail(c, SOV_ERR_UNSUPPORTED, "unsupported keyword '%.60s'", k);
    }
    if (json_object_get(s, "$ref")) return ref_schema(c, s);
    const json_t *type = json_object_get(s, "type");
    if (type && !json_is_string(type) && !json_is_array(type))
        return fail(c, SOV_ERR_ARG, "'type' must be a string or an array of strings");
    for (size_t i = 0; json_is_array(type) && i < json_array_size(type); i++)
        if (!json_is_string(json_array_get(type, i)))
            return fail(c, SOV_ERR_ARG, "'type' must be a string or an array of strings");
    if (json_is_array(type) && json_array_size(type) == 0) return fail(c, SOV_ERR_ARG, "'type' is an empty array");

    const json_t *en = json_object_get(s, "enum"), *cn = json_object_get(s, "const");
    if (en || cn) { /* the listed values (of the given type, when one is given) */
        if (en && cn) return fail(c, SOV_ERR_UNSUPPORTED, "'enum' and 'const' together are not supported");
        if (en && (!json_is_array(en) || json_array_size(en) == 0)) return fail(c, SOV_ERR_ARG, "'enum' must be a non-empty array");
        if (!only_beside(c, s, en ? "enum" : "const", "type")) return -1;
        const int32_t r = rule(c);
        if (r < 0) return -1;
        int32_t n_alts = 0;
        for (size_t i = 0; i < (en ? json_array_size(en) : 1); i++) {
            const json_t *val = en ? json_array_get(en, i) : cn;
            bool ok = !type;
            for (size_t t = 0; type && !ok && t < (json_is_array(type) ? json_array_size(type) : 1); t++)
                ok = value_has_type(val, json_string_value(json_is_array(type) ? json_array_get(type, t) : type));
            if (!ok) continue;
            if (!alt_ref(c, r, literal(c, val))) return -1;
            n_alts++;
        }
        if (n_alts == 0) return fail(c, SOV_ERR_ARG, "no value of '%s' has the schema's type", en ? "enum" : "const");
        return r;
    }
    static const char *const unions[] = {"anyOf", "oneOf", "allOf"};
    for (int u = 0; u < 3; u++) {
        const json_t *list = json_object_get(s, unions[u]);
        if (!list) continue;
        if (!json_is_array(list) || json_array_size(list) == 0)
            return fail(c, SOV_ERR_ARG, "'%s' must be a non-empty array of schemas", unions[u]);
        if (!only_beside(c, s, unions[u], NULL)) return -1;
        if (u == 2 && json_array_size(list) != 1)
            return fail(c, SOV_ERR_UNSUPPORTED, "'allOf' with more than one schema is not supported");
        const int32_t r = rule(c);
        if (r < 0) return -1;
        size_t saved;
        path_push(c, unions[u], &saved);
        for (size_t i = 0; i < json_array_size(list); i++) {
            char idx[24];
            snprintf(idx, sizeof idx, "%zu", i);
            if (!alt_ref(c, r, compile_at(c, json_array_get(list, i), idx))) break;
        }
        c->path[saved] = 0;
        return c->st ? -1 : r;
    }
    if (!type) {
        const char *t = implied_type(s);
        if (!t) return fail(c, SOV_ERR_UNSUPPORTED, "keywords of several types without 'type' are not supported");
        return *t ? type_schema(c, s, t) : any_value(c);
    }
    if (json_is_string(type)) return type_schema(c, s, json_string_value(type));
    const int32_t r = rule(c);
    if (r < 0) return -1;
    for (size_t i = 0; i < json_array_size(type); i++)
        if (!alt_ref(c, r, type_schema(c, s, json_string_value(json_array_get(type, i))))) return -1;
    return r;
}

static int32_t compile(sc *c, const json_t *s) {
    if (c->st) return -1;
    if (c->nest >= MAX_SCHEMA_NEST) return fail(c, SOV_ERR_UNSUPPORTED, "schema nested deeper than %d", MAX_SCHEMA_NEST);
    c->nest++;
    const int32_t r = compile_inner(c, s);
    c->nest--;
    return c->st ? -1 : r;
}

/* ---- formats ---- */

/* Adds "a-b" two-digit alternatives: the strings from lo to hi (00..99). */
static bool two_digits(sc *c, int32_t r, int lo, int hi) {
    for (int v = lo; v <= hi; v++) { /* few enough: one alternative per tens digit block */
        const int tens = v / 10;
        int last = v % 10;
        int end_units = (tens == hi / 10) ? hi % 10 : 9;
        gram_seq *q = seq(c);
        gram_seq_byte(q, (uint8_t)('0' + tens));
        gram_seq_range(q, (uint8_t)('0' + last), (uint8_t)('0' + end_units));
        if (!alt(c, r, q)) return false;
        v = tens * 10 + end_units;
    }
    return true;
}

static int32_t two_rule(sc *c, int lo, int hi) {
    const int32_t r = rule(c);
    return r >= 0 && two_digits(c, r, lo, hi) ? r : -1;
}

static int32_t date_rule(sc *c) {
    /* YYYY-MM-DD; days by month, February 01-28 */
    const int32_t r = rule(c), d31 = two_rule(c, 1, 31), d30 = two_rule(c, 1, 30), d28 = two_rule(c, 1, 28);
    if (r < 0 || d31 < 0 || d30 < 0 || d28 < 0) return -1;
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    /* years 0001-9999 (0000 is RFC 3339 but not every checker's: Python's date has no year 0) */
    const int32_t year = rule(c);
    if (year < 0) return -1;
    for (int zeros = 0; zeros < 4; zeros++) {
        gram_seq *q = seq(c);
        for (int i = 0; i < zeros; i++)
            gram_seq_byte(q, '0');
        gram_seq_range(q, '1', '9');
        for (int i = zeros + 1; i < 4; i++)
            gram_seq_range(q, '0', '9');
        if (!alt(c, year, q)) return -1;
    }
    for (int mth = 1; mth <= 12; mth++) {
        gram_seq *q = seq(c);
        gram_seq_ref(q, year);
        char mm[8];
        snprintf(mm, sizeof mm, "-%02d-", mth);
        gram_seq_lit(q, mm, 4);
        gram_seq_ref(q, days[mth - 1] == 31 ? d31 : days[mth - 1] == 30 ? d30 : d28);
        if (!alt(c, r, q)) return -1;
    }
    return r;
}

static int32_t time_rule(sc *c) {
    /* HH:MM:SS(.d{1,6})?(Z|[+-]HH:MM) */
    const int32_t r = rule(c), hh = two_rule(c, 0, 23), mm = two_rule(c, 0, 59), frac = rule(c), tz = rule(c);
    const int32_t fd = digits(c, 1, 6);
    if (r < 0 || hh < 0 || mm < 0 || frac < 0 || tz < 0 || fd < 0) return -1;
    gram_seq *q = seq(c);
    if (!alt(c, frac, q)) return -1;
    gram_seq_byte(q, '.');
    gram_seq_ref(q, fd);
    if (!alt(c, frac, q)) return -1;
    q = seq(c);
    gram_seq_byte(q, 'Z');
    if (!alt(c, tz, q)) return -1;
    q = seq(c);
    uint32_t pm[8] = {0};
    pm['+' / 32] |= 1u << ('+' % 32);
    pm['-' / 32] |= 1u << ('-' % 32);
    gram_seq_set(q, pm);
    gram_seq_ref(q, hh);
    gram_seq_byte(q, ':');
    gram_seq_ref(q, mm);
    if (!alt(c, tz, q)) return -1;
    q = seq(c);
    gram_seq_ref(q, hh);
    gram_seq_byte(q, ':');
    gram_seq_ref(q, mm);
    gram_seq_byte(q, ':');
    gram_seq_ref(q, mm);
    gram_seq_ref(q, frac);
    gram_seq_ref(q, tz);
    return alt(c, r, q) ? r : -1;
}

static int32_t format_rule(sc *c, const char *f) {
    int32_t body = -1;
    if (strcmp(f, "date") == 0) {
        body = date_rule(c);
    } else if (strcmp(f, "time") == 0) {
        body = time_rule(c);
    } else if (strcmp(f, "date-time") == 0) {
        const int32_t d = date_rule(c), t = time_rule(c);
        if ((body = rule(c)) < 0 || d < 0 || t < 0) return -1;
        gram_seq *q = seq(c);
        gram_seq_ref(q, d);
        gram_seq_byte(q, 'T');
        gram_seq_ref(q, t);
        if (!alt(c, body, q)) return -1;
    } else if (strcmp(f, "uuid") == 0) {
        const int32_t h = hex(c);
        if ((body = rule(c)) < 0 || h < 0) return -1;
        gram_seq *q = seq(c);
        static const int groups[5] = {8, 4, 4, 4, 12};
        for (int g = 0; g < 5; g++) {
            if (g) gram_seq_byte(q, '-');
            for (int i = 0; i < groups[g]; i++)
                gram_seq_ref(q, h);
        }
        if (!alt(c, body, q)) return -1;
    } else if (strcmp(f, "email") == 0) {
        /* [a-z0-9][a-z0-9._+-]{0,31} @ label (. label){1,3}, label [a-z0-9]{1,20}: a subset
         * that every address checker accepts */
        uint32_t an[8] = {0}, loc[8] = {0};
        for (unsigned b = 0; b < 256; b++) {
            const bool alnum = (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9');
            if (alnum) an[b / 32] |= 1u << (b % 32);
            if (alnum || b == '.' || b == '_' || b == '+' || b == '-') loc[b / 32] |= 1u << (b % 32);
        }
        const int32_t alr = rule(c), locr = rule(c), end = rule(c);
        if (alr < 0 || locr < 0 || end < 0) return -1;
        gram_seq *q = seq(c);
        gram_seq_set(q, an);
        if (!alt(c, alr, q)) return -1;
        q = seq(c);
        gram_seq_set(q, loc);
        if (!alt(c, locr, q) || !alt(c, end, seq(c))) return -1;
        const int32_t local_rest = repeat(c, locr, 0, 31, end), label = repeat(c, alr, 1, 20, end);
        const int32_t dot_label = rule(c);
        if (local_rest < 0 || label < 0 || dot_label < 0) return -1;
        q = seq(c);
        gram_seq_byte(q, '.');
        gram_seq_ref(q, label);
        if (!alt(c, dot_label, q)) return -1;
        const int32_t labels = repeat(c, dot_label, 1, 3, end);
        if (labels < 0 || (body = rule(c)) < 0) return -1;
        q = seq(c);
        gram_seq_set(q, an);
        gram_seq_ref(q, local_rest);
        gram_seq_byte(q, '@');
        gram_seq_ref(q, label);
        gram_seq_ref(q, labels);
        if (!alt(c, body, q)) return -1;
    } else {
        return fail(c, SOV_ERR_UNSUPPORTED, "unsupported 'format' \"%.40s\" (supported: date, time, date-time, uuid, email)", f);
    }
    const int32_t r = rule(c);
    if (r < 0 || body < 0) return -1;
    gram_seq *q = seq(c);
    gram_seq_byte(q, '"');
    gram_seq_ref(q, body);
    gram_seq_byte(q, '"');
    return alt(c, r, q) ? r : -1;
}

/* ---- entry points ---- */

static sov_status finish(sc *c, int32_t value, gram **out) {
    int32_t root = -1;
    if (!c->st) {
        const int32_t w = ws(c);
        root = rule(c);
        if (w >= 0 && root >= 0 && value >= 0) {
            gram_seq *q = seq(c);
            gram_seq_ref(q, w);
            gram_seq_ref(q, value);
            gram_seq_ref(q, w);
            alt(c, root, q);
        }
    }
    sov_status st = c->st;
    if (!st) {
        st = gram_build(c->b, root, out);
        if (st && c->err && c->err_len) snprintf(c->err, c->err_len, "%s", sov_last_error());
    } else {
        sov_fail(st, "%s", c->err && c->err_len ? c->err : "schema not supported");
    }
    gram_seq_free(&c->q);
    gram_builder_free(c->b);
    free(c->memo);
    return st;
}

static bool sc_init(sc *c, const gram_opts *o, char *err, size_t err_len) {
    memset(c, 0, sizeof *c);
    c->o = o ? *o : gram_default_opts();
    if (c->o.ws_max > 64) c->o.ws_max = 64;
    c->err = err;
    c->err_len = err_len;
    if (err && err_len) err[0] = 0;
    snprintf(c->path, sizeof c->path, "#");
    c->r_ws = c->r_char = c->r_str = c->r_num = c->r_int = c->r_value = c->r_bool = c->r_null = c->r_hex = -1;
    c->b = gram_builder_new();
    return c->b != NULL;
}

sov_status gram_from_schema_json(const void *schema_json, const gram_opts *o, gram **out, char *err, size_t err_len) {
    *out = NULL;
    sc c;
    if (!sc_init(&c, o, err, err_len)) return sov_fail(SOV_ERR_NOMEM, "grammar: out of memory");
    c.root = schema_json;
    const int32_t v = compile(&c, schema_json);
    return finish(&c, v, out);
}

sov_status gram_from_schema(const char *schema, size_t len, const gram_opts *o, gram **out, char *err, size_t err_len) {
    *out = NULL;
    json_error_t je;
    json_t *j = json_loadb(schema, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!j) {
        if (err && err_len) snprintf(err, err_len, "the schema is not valid JSON: %s (line %d)", je.text, je.line);
        return sov_fail(SOV_ERR_ARG, "the schema is not valid JSON: %s (line %d)", je.text, je.line);
    }
    const sov_status st = gram_from_schema_json(j, o, out, err, err_len);
    json_decref(j);
    return st;
}

sov_status gram_from_call_forms(const gram_call_form *forms, size_t n, const gram_opts *o, gram **out, char *err,
                                size_t err_len) {
    *out = NULL;
    sc c;
    if (!sc_init(&c, o, err, err_len)) return sov_fail(SOV_ERR_NOMEM, "grammar: out of memory");
    const int32_t root = n ? rule(&c) : fail(&c, SOV_ERR_ARG, "no call forms");
    for (size_t i = 0; root >= 0 && !c.st && i < n; i++) {
        c.root = forms[i].schema;
        snprintf(c.path, sizeof c.path, "#/tools/%zu/function/parameters", forms[i].tool_index);
        const int32_t v = forms[i].schema ? compile(&c, forms[i].schema) : any_object(&c, any_value(&c));
        if (v < 0) break;
        gram_seq *q = seq(&c);
        gram_seq_lit(q, forms[i].prefix, strlen(forms[i].prefix));
        gram_seq_ref(q, v);
        gram_seq_lit(q, forms[i].suffix, strlen(forms[i].suffix));
        if (!alt(&c, root, q)) break;
    }
    return finish(&c, root, out);
}

sov_status gram_any_object(const gram_opts *o, gram **out) {
    *out = NULL;
    sc c;
    if (!sc_init(&c, o, NULL, 0)) return sov_fail(SOV_ERR_NOMEM, "grammar: out of memory");
    const int32_t v = any_object(&c, any_value(&c));
    return finish(&c, v, out);
}
