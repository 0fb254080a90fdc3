/* policy.c - the policy file's parser (see policy.h; the format is docs/POLICY.md).
 *
 * The text is cut into lines. Each line is checked first (length, NUL bytes, UTF-8) and
 * then read by a small cursor: blanks, a bare key, '=', one value of the type the key
 * wants, then only blanks or a # comment. Values go into a local policy that reaches
 * *out only when the whole file and the rules between keys (retention and
 * retention_days) hold, so a caller never sees half a policy. Every error is one line,
 * "FILE:LINE: what is wrong; what to write", set with sov_fail(). */
#include "policy/policy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

/* ---- a cursor over one line ---- */

typedef struct cursor {
    const char *p, *end; /* the rest of the line (no line break) */
    const char *file;
    int line;
} cursor;

static sov_status fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static sov_status fail_at(const char *file, int line, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sov_fail(SOV_ERR_FORMAT, "%s:%d: %s", file, line, msg);
}

#define FAIL(c, ...) fail_at((c)->file, (c)->line, __VA_ARGS__)

static bool blank(char ch) { return ch == ' ' || ch == '\t'; }

static void skip_blanks(cursor *c) {
    while (c->p < c->end && blank(*c->p))
        c->p++;
}

/* The value ends here: end of line, blanks or a comment. */
static bool at_delim(const cursor *c) { return c->p == c->end || blank(*c->p) || *c->p == '#'; }

/* Up to 32 bytes of what the user wrote, for a message: cut at a character boundary,
 * control bytes shown as '?' (the line is valid UTF-8 by now). */
static const char *snip(const char *s, size_t n, char *buf, size_t cap) {
    size_t k = n < 32 ? n : 32;
    while (k > 0 && k < n && ((unsigned char)s[k] & 0xC0) == 0x80)
        k--; /* do not split a multi-byte character */
    if (k + 4 > cap) k = cap - 4;
    for (size_t i = 0; i < k; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    strcpy(buf + k, k < n ? "..." : "");
    return buf;
}

/* The token at the cursor up to a delimiter, for "not 'X'" messages. */
static const char *token_snip(const cursor *c, char *buf, size_t cap) {
    const char *q = c->p;
    while (q < c->end && !blank(*q) && *q != '#')
        q++;
    return snip(c->p, (size_t)(q - c->p), buf, cap);
}

/* ---- values ---- */

/* A string in double quotes at the cursor; *v and *n point into the line. */
static sov_status read_string(cursor *c, const char *key, const char *example, const char **v, size_t *n) {
    if (c->p == c->end || *c->p == '#')
        return FAIL(c, "missing value for '%s' (e.g. %s = %s)", key, key, example);
    if (*c->p == '\'')
        return FAIL(c, "'%s' needs double quotes (single-quoted strings are not supported), e.g. %s = %s",
                    key, key, example);
    if (*c->p != '"') {
        char t[40];
        return FAIL(c, "'%s' must be a string in double quotes, e.g. %s = %s, not %s", key, key, example,
                    token_snip(c, t, sizeof t));
    }
    const char *s = ++c->p;
    for (; c->p < c->end && *c->p != '"'; c->p++) {
        const unsigned char ch = (unsigned char)*c->p;
        if (ch == '\\') return FAIL(c, "escape sequences (\\) are not supported in the string of '%s'", key);
        if (ch < 0x20 || ch == 0x7f)
            return FAIL(c, "control character 0x%02x in the string of '%s' (strings hold printable text)", ch,
                        key);
    }
    if (c->p == c->end) return FAIL(c, "unterminated string for '%s': the closing \" is missing", key);
    *v = s;
    *n = (size_t)(c->p - s);
    c->p++;
    return SOV_OK;
}

static sov_status read_bool(cursor *c, const char *key, bool *out) {
    static const char *const words[2] = {"false", "true"};
    for (int b = 0; b < 2; b++) {
        const size_t n = strlen(words[b]);
        if ((size_t)(c->end - c->p) >= n && memcmp(c->p, words[b], n) == 0) {
            c->p += n;
            if (at_delim(c)) {
                *out = b == 1;
                return SOV_OK;
            }
            c->p -= n;
        }
    }
    if (c->p == c->end || *c->p == '#') return FAIL(c, "missing value for '%s' (true or false)", key);
    char t[40];
    return FAIL(c, "'%s' must be true or false (lower case, no quotes), not %s", key,
                token_snip(c, t, sizeof t));
}

/* A whole number in lo..hi, decimal, an optional '-' (so that -1 is "out of range", not
 * "not a number"). */
static sov_status read_int(cursor *c, const char *key, const char *unit, long lo, long hi, long *out) {
    if (c->p == c->end || *c->p == '#')
        return FAIL(c, "missing value for '%s' (a whole number of %s, %ld..%ld)", key, unit, lo, hi);
    const char *start = c->p;
    const bool neg = *c->p == '-';
    if (neg) c->p++;
    long v = 0;
    int digits = 0;
    for (; c->p < c->end && *c->p >= '0' && *c->p <= '9'; c->p++, digits++)
        if (v < 100000000) v = v * 10 + (*c->p - '0'); /* saturates: anything this big is out of range */
    if (!digits || !at_delim(c)) {
        c->p = start;
        char t[40];
        return FAIL(c, "'%s' must be a whole number of %s (%ld..%ld), not %s", key, unit, lo, hi,
                    token_snip(c, t, sizeof t));
    }
    if (neg) v = -v;
    if (v < lo || v > hi)
        return FAIL(c, "'%s' must be from %ld to %ld (%s), not %.*s", key, lo, hi, unit, (int)(c->p - start),
                    start);
    *out = v;
    return SOV_OK;
}

/* ---- the keys ---- */

typedef struct parsed {
    sov_policy p;
    int line_of[8]; /* the line each key was set on (0: not set), by key index */
} parsed;

typedef sov_status (*key_fn)(cursor *c, const char *key, parsed *ps);

static sov_status set_retention(cursor *c, const char *key, parsed *ps) {
    static const struct {
        const char *name;
        policy_retention r;
    } names[] = {
        {"none", POLICY_RETAIN_NONE}, {"hashes", POLICY_RETAIN_HASHES}, {"full", POLICY_RETAIN_FULL}};
    const char *v;
    size_t n;
    sov_status st = read_string(c, key, "\"hashes\"", &v, &n);
    if (st) return st;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strlen(names[i].name) == n && memcmp(v, names[i].name, n) == 0) {
            ps->p.retention = names[i].r;
            return SOV_OK;
        }
    }
    char t[40];
    return FAIL(c, "retention must be \"none\", \"hashes\" or \"full\", not \"%s\"", snip(v, n, t, sizeof t));
}

static sov_status set_days(cursor *c, const char *key, parsed *ps) {
    long v = 0;
    const sov_status st = read_int(c, key, "days", 1, POLICY_DAYS_MAX, &v);
    if (!st) ps->p.retention_days = (int32_t)v;
    return st;
}

static bool region_char(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
           ch == '_' || ch == ':' || ch == '/' || ch == '-';
}

static sov_status set_region(cursor *c, const char *key, parsed *ps) {
    const char *v;
    size_t n;
    sov_status st = read_string(c, key, "\"KR-Seoul-1\"", &v, &n);
    if (st) return st;
    if (n == 0) return FAIL(c, "region must not be empty (leave the key out for no region)");
    if (n > POLICY_REGION_MAX) return FAIL(c, "region is %zu bytes; at most %d", n, POLICY_REGION_MAX);
    for (size_t i = 0; i < n; i++) {
        if (!region_char(v[i])) {
            char t[40];
            /* the label goes into HTTP replies, Prometheus labels and audit records as is */
            return FAIL(c,
                        "region may hold only letters A-Z a-z, digits and . _ : / - (e.g. \"KR-Seoul-1\"), "
                        "not \"%s\"",
                        snip(v, n, t, sizeof t));
        }
    }
    memcpy(ps->p.region, v, n);
    ps->p.region[n] = '\0';
    return SOV_OK;
}

static sov_status set_bool(cursor *c, const char *key, parsed *ps) {
    bool *field = strcmp(key, "require_signed_models") == 0 ? &ps->p.require_signed_models
                  : strcmp(key, "allow_egress") == 0        ? &ps->p.allow_egress
                                                            : &ps->p.redact_prompts;
    return read_bool(c, key, field);
}

static const char *const kind_names[] = {"email", "phone", "rrn", "card", "ip"};
enum { N_KINDS = sizeof kind_names / sizeof kind_names[0] };

static sov_status set_redact(cursor *c, const char *key, parsed *ps) {
    const char *example = "[\"email\", \"phone\", \"rrn\", \"card\", \"ip\"]";
    if (c->p == c->end || *c->p == '#')
        return FAIL(c, "missing value for 'redact' (e.g. redact = %s)", example);
    if (*c->p != '[') {
        char t[40];
        return FAIL(c, "'redact' must be a list of kinds in [ ], e.g. redact = %s, not %s", example,
                    token_snip(c, t, sizeof t));
    }
    c->p++;
    uint32_t kinds = 0;
    for (;;) {
        skip_blanks(c);
        if (c->p < c->end && *c->p == ']') break; /* [] or a trailing comma */
        if (c->p == c->end || *c->p == '#')
            return FAIL(c, "the list of 'redact' must end with ']' on the same line");
        if (*c->p != '"') {
            char t[40];
            return FAIL(
                c, "each kind in 'redact' goes in double quotes, e.g. redact = [\"email\", \"ip\"], not %s",
                token_snip(c, t, sizeof t));
        }
        const char *v;
        size_t n;
        sov_status st = read_string(c, key, "\"email\"", &v, &n);
        if (st) return st;
        uint32_t bit = 0;
        for (int k = 0; k < N_KINDS; k++)
            if (strlen(kind_names[k]) == n && memcmp(v, kind_names[k], n) == 0) bit = 1u << k;
        char t[40];
        if (!bit)
            return FAIL(c, "unknown redaction kind \"%s\" in 'redact' (kinds: email, phone, rrn, card, ip)",
                        snip(v, n, t, sizeof t));
        if (kinds & bit) return FAIL(c, "\"%s\" is listed twice in 'redact'", snip(v, n, t, sizeof t));
        kinds |= bit;
        skip_blanks(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end && *c->p == ']') break;
        if (c->p == c->end || *c->p == '#')
            return FAIL(c, "the list of 'redact' must end with ']' on the same line");
        return FAIL(c, "expected ',' or ']' after \"%s\" in the list of 'redact'", snip(v, n, t, sizeof t));
    }
    c->p++; /* the ']' */
    ps->p.redact = kinds;
    return SOV_OK;
}

static const struct {
    const char *name;
    key_fn set;
} keys[] = {
    {"retention", set_retention},        {"retention_days", set_days}, {"region", set_region},
    {"require_signed_models", set_bool}, {"allow_egress", set_bool},   {"redact", set_redact},
    {"redact_prompts", set_bool},
};
enum { N_KEYS = sizeof keys / sizeof keys[0], KEY_RETENTION = 0, KEY_DAYS = 1 };
static const char key_list[] =
    "retention, retention_days, region, require_signed_models, allow_egress, redact, redact_prompts";

/* Edit distance of two short strings (for "did you mean"); big for long ones. */
static size_t distance(const char *a, size_t na, const char *b) {
    const size_t nb = strlen(b);
    if (na > 40 || nb > 40) return 99;
    size_t row[41];
    for (size_t j = 0; j <= nb; j++)
        row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            const size_t up = row[j];
            const size_t sub = diag + (a[i - 1] != b[j - 1]);
            const size_t del = up + 1, ins = row[j - 1] + 1;
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            diag = up;
        }
    }
    return row[nb];
}

static sov_status unknown_key(cursor *c, const char *k, size_t n) {
    int best = -1;
    size_t best_d = 3; /* suggest only a near miss: at most two edits */
    for (int i = 0; i < N_KEYS; i++) {
        const size_t d = distance(k, n, keys[i].name);
        if (d < best_d) best_d = d, best = i;
    }
    char t[40], hint[64] = "";
    if (best >= 0) snprintf(hint, sizeof hint, " (did you mean '%s'?)", keys[best].name);
    return FAIL(c, "unknown key '%s'%s; keys: %s", snip(k, n, t, sizeof t), hint, key_list);
}

/* ---- lines ---- */

static bool key_char(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
           ch == '-';
}

static sov_status parse_line(cursor *c, parsed *ps) {
    skip_blanks(c);
    if (c->p == c->end || *c->p == '#') return SOV_OK;
    if (*c->p == '[')
        return FAIL(c, "tables ([...]) are not supported: every key goes at the top level as key = value");
    if (*c->p == '"' || *c->p == '\'') return FAIL(c, "quoted keys are not supported: write the key bare");
    const char *k = c->p;
    while (c->p < c->end && key_char(*c->p))
        c->p++;
    const size_t n = (size_t)(c->p - k);
    char t[40];
    if (n == 0) {
        if (*c->p == '=') return FAIL(c, "a key is missing before '='");
        return FAIL(c, "expected a key (letters, digits, _ and -), not %s", token_snip(c, t, sizeof t));
    }
    if (c->p < c->end && *c->p == '.')
        return FAIL(c, "dotted keys (a.b) are not supported: every key goes at the top level (keys: %s)",
                    key_list);
    int idx = -1;
    for (int i = 0; i < N_KEYS; i++)
        if (strlen(keys[i].name) == n && memcmp(k, keys[i].name, n) == 0) idx = i;
    if (idx < 0) return unknown_key(c, k, n);
    skip_blanks(c);
    if (c->p == c->end || *c->p != '=') {
        if (c->p == c->end || *c->p == '#')
            return FAIL(c, "expected '=' after '%s' (key = value)", keys[idx].name);
        return FAIL(c, "expected '=' after '%s', not %s", keys[idx].name, token_snip(c, t, sizeof t));
    }
    c->p++;
    if (ps->line_of[idx])
        return FAIL(c, "'%s' is set twice (first on line %d)", keys[idx].name, ps->line_of[idx]);
    ps->line_of[idx] = c->line;
    skip_blanks(c);
    sov_status st = keys[idx].set(c, keys[idx].name, ps);
    if (st) return st;
    skip_blanks(c);
    if (c->p < c->end && *c->p != '#')
        return FAIL(c, "unexpected '%s' after the value of '%s' (a comment starts with #)",
                    token_snip(c, t, sizeof t), keys[idx].name);
    return SOV_OK;
}

/* Length of the well-formed UTF-8 character at s (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, const unsigned char *end) {
    const unsigned char b = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF)
        n = 2;
    else if (b >= 0xE0 && b <= 0xEF)
        n = 3, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
    else if (b >= 0xF0 && b <= 0xF4)
        n = 4, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
    else
        return 0;
    if ((size_t)(end - s) < n || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return n;
}

static sov_status check_line(const cursor *c) {
    if (c->end - c->p > POLICY_MAX_LINE)
        return FAIL(c, "the line is longer than %d bytes (a policy line is one short key = value)",
                    POLICY_MAX_LINE);
    const unsigned char *s = (const unsigned char *)c->p, *end = (const unsigned char *)c->end;
    while (s < end) {
        if (*s == 0)
            return FAIL(c, "NUL byte at column %d (a policy file is UTF-8 text)",
                        (int)(s - (const unsigned char *)c->p) + 1);
        const size_t n = utf8_len(s, end);
        if (!n)
            return FAIL(c, "byte 0x%02x at column %d is not UTF-8 (save the file as UTF-8)", *s,
                        (int)(s - (const unsigned char *)c->p) + 1);
        s += n;
    }
    return SOV_OK;
}

/* The rules between keys, once every line is read. */
static sov_status check_whole(const char *file, const parsed *ps) {
    const sov_policy *p = &ps->p;
    if (p->retention == POLICY_RETAIN_FULL && !ps->line_of[KEY_DAYS])
        return fail_at(
            file, ps->line_of[KEY_RETENTION],
            "retention = \"full\" needs retention_days = N (1..%d): how many days the text is kept "
            "before the server deletes it",
            POLICY_DAYS_MAX);
    if (p->retention != POLICY_RETAIN_FULL && ps->line_of[KEY_DAYS])
        return fail_at(file, ps->line_of[KEY_DAYS],
                       "retention_days applies only with retention = \"full\" (retention is %s\"%s\")",
                       ps->line_of[KEY_RETENTION] ? "" : "not set, so ", policy_retention_name(p->retention));
    return SOV_OK;
}

sov_status policy_parse(const char *text, size_t len, const char *file_name, sov_policy *out) {
    const char *file = file_name && *file_name ? file_name : "policy";
    if (len > POLICY_MAX_BYTES)
        return sov_fail(SOV_ERR_FORMAT, "%s: %zu bytes; a policy file is at most %d (a few lines)", file, len,
                        POLICY_MAX_BYTES);
    parsed ps = {.p = policy_default()};
    const char *s = text ? text : "", *end = s + (text ? len : 0);
    if (end - s >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) s += 3; /* a byte order mark some editors write */
    for (int line = 1; s < end; line++) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *eol = nl ? nl : end;
        cursor c = {s, eol, file, line};
        if (c.end > c.p && c.end[-1] == '\r') c.end--; /* CRLF */
        sov_status st = check_line(&c);
        if (!st) st = parse_line(&c, &ps);
        if (st) return st;
        s = nl ? nl + 1 : end;
    }
    const sov_status st = check_whole(file, &ps);
    if (st) return st;
    *out = ps.p;
    return SOV_OK;
}

sov_status policy_load(const char *path, sov_policy *out) {
    FILE *f = fopen(path, "rb");
    if (!f) return sov_fail(SOV_ERR_IO, "cannot open the policy file %s: %s", path, strerror(errno));
    static const size_t cap = POLICY_MAX_BYTES + 1;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return sov_fail(SOV_ERR_NOMEM, "out of memory reading %s", path);
    }
    const size_t n = fread(buf, 1, cap, f);
    const int err = ferror(f) ? errno : 0;
    fclose(f);
    sov_status st;
    if (err)
        st = sov_fail(SOV_ERR_IO, "cannot read the policy file %s: %s", path, strerror(err));
    else if (n > POLICY_MAX_BYTES)
        st = sov_fail(SOV_ERR_IO, "%s is larger than %d bytes: a policy file is a few lines (docs/POLICY.md)",
                      path, POLICY_MAX_BYTES);
    else
        st = policy_parse(buf, n, path, out);
    free(buf);
    return st;
}

/* ---- names and summary ---- */

const char *policy_retention_name(policy_retention r) {
    return r == POLICY_RETAIN_NONE ? "none" : r == POLICY_RETAIN_FULL ? "full" : "hashes";
}

const char *policy_redact_name(uint32_t bit) {
    for (int k = 0; k < N_KINDS; k++)
        if (bit == 1u << k) return kind_names[k];
    return NULL;
}

char *policy_describe(const sov_policy *p, char *buf, size_t cap) {
    char kinds[64] = "";
    for (int k = 0; k < N_KINDS; k++) {
        if (!(p->redact & (1u << k))) continue;
        const size_t n = strlen(kinds);
        snprintf(kinds + n, sizeof kinds - n, "%s%s", n ? "," : "", kind_names[k]);
    }
    char days[32] = "";
    if (p->retention == POLICY_RETAIN_FULL)
        snprintf(days, sizeof days, " for %d days", (int)p->retention_days);
    snprintf(buf, cap, "retention %s%s, region %s, redact %s%s, %s, %s", policy_retention_name(p->retention),
             days, p->region[0] ? p->region : "(none)", kinds[0] ? kinds : "nothing",
             p->redact_prompts ? " (prompts too)" : " (stored text; prompts as sent)",
             p->require_signed_models ? "signed models required" : "unsigned models allowed",
             p->allow_egress ? "egress allowed" : "egress locked");
    return buf;
}
