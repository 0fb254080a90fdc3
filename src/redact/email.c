/* email.c - e-mail addresses, found from their '@'.
 *
 * The practical subset of RFC 5322 / 6531 that people write:
 *   local part  [A-Za-z0-9._%+-], 1-64 bytes, read backwards from the '@'; no leading,
 *               trailing or double dot (leading dots are left out of the finding). Quoted
 *               local parts ("john doe"@x) and non-ASCII local parts are not recognised.
 *               ASCII only on purpose: Korean text written against the address
 *               ("문의는kim@example.com") is not part of it.
 *   domain      two labels or more joined by '.', at most 253 bytes; a label is 1-63
 *               bytes of letters, digits and '-' (not first or last) or UTF-8 letters
 *               (IDN: 예시.한국, bücher.de); the last label (TLD) is 2+ ASCII letters, a
 *               punycode xn--... label, or non-ASCII letters.
 * Korean particles written against the address ("kim@example.com으로", "kim@예시.한국에")
 * must stay: an ASCII TLD ends where non-ASCII starts, and a non-ASCII TLD that starts
 * with 한국 (.한국, Korea's IDN ccTLD) ends after it. A sentence's final '.' is not part of
 * the domain. Addresses without a dot in the domain (root@localhost, user@intranet) are
 * not redacted: they name a local account, not a mailbox someone can be reached at. */
#include <string.h>

#include "redact/scan.h"

enum { LOCAL_MAX = 64, DOMAIN_MAX = 253, LABEL_MAX = 63 };

bool sc_local_char(unsigned char c) {
    return sc_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

/* The code point of a UTF-8 character of n bytes. */
static unsigned decode(const unsigned char *s, size_t n) {
    if (n == 2) return (unsigned)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
    if (n == 3) return (unsigned)(s[0] & 0x0F) << 12 | (unsigned)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    return (unsigned)(s[0] & 0x07) << 18 | (unsigned)(s[1] & 0x3F) << 12 | (unsigned)(s[2] & 0x3F) << 6 |
           (s[3] & 0x3F);
}

/* Punctuation and spaces outside ASCII end a label: Latin-1 symbols, general punctuation,
 * CJK symbols and punctuation (、。「」), full-width ASCII punctuation. */
static bool letter_cp(unsigned cp) {
    if (cp >= 0x80 && cp <= 0xBF) return false;
    if (cp == 0xD7 || cp == 0xF7) return false;
    if (cp >= 0x2000 && cp <= 0x2BFF) return false;
    if (cp >= 0x3000 && cp <= 0x303F) return false;
    if (cp >= 0xFE30 && cp <= 0xFE4F) return false;
    if ((cp >= 0xFF00 && cp <= 0xFF0F) || (cp >= 0xFF1A && cp <= 0xFF20) || (cp >= 0xFF3B && cp <= 0xFF40) ||
        (cp >= 0xFF5B && cp <= 0xFF65))
        return false;
    return true;
}

/* Bytes of the non-ASCII letter at pos, or 0. */
static size_t idn_letter(const char *in, size_t len, size_t pos) {
    const size_t n = sc_utf8_len(in, len, pos);
    return n > 1 && letter_cp(decode((const unsigned char *)in + pos, n)) ? n : 0;
}

typedef struct label {
    size_t start, end;
    size_t ascii_end; /* end of the leading ASCII part (== end when all ASCII) */
    bool any_ascii, any_other;
} label;

/* One label from pos (possibly empty). */
static label read_label(const char *in, size_t len, size_t pos, size_t limit) {
    label l = {pos, pos, pos, false, false};
    while (l.end < limit) {
        const unsigned char c = (unsigned char)in[l.end];
        size_t n;
        if (sc_alnum(c) || c == '-') {
            n = 1;
            l.any_ascii = true;
        } else if (c >= 0x80 && (n = idn_letter(in, len, l.end)) != 0) {
            l.any_other = true;
        } else {
            break;
        }
        l.end += n;
        if (!l.any_other) l.ascii_end = l.end;
    }
    return l;
}

static bool label_ok(const char *in, const label *l) {
    return l->end > l->start && l->end - l->start <= LABEL_MAX && in[l->start] != '-' &&
           in[l->end - 1] != '-';
}

/* Where the domain ends if l is its last label (the TLD), or 0 when l cannot be one. */
static size_t tld_end(const char *in, const label *l) {
    const size_t n = l->ascii_end - l->start;
    if (l->end == l->start) return 0;
    if (l->any_ascii) {
        /* ASCII letters, possibly with Korean written against them: "com으로" */
        bool letters = n >= 2;
        for (size_t k = l->start; k < l->ascii_end && letters; k++)
            letters = sc_alpha((unsigned char)in[k]);
        if (letters) return l->ascii_end;
        const bool puny = n > 4 && strncmp(in + l->start, "xn--", 4) == 0 && l->ascii_end == l->end;
        return puny && label_ok(in, l) ? l->end : 0;
    }
    if (l->end - l->start >= 6 && memcmp(in + l->start, "\xED\x95\x9C\xEA\xB5\xAD", 6) == 0) /* 한국 */
        return l->start + 6;
    return l->end - l->start <= LABEL_MAX ? l->end : 0;
}

/* The domain from pos (just after the '@'): its end, or 0. */
static size_t domain(const char *in, size_t len, size_t pos) {
    const size_t limit = len - pos > DOMAIN_MAX ? pos + DOMAIN_MAX : len;
    size_t best = 0;
    for (int k = 0; pos < limit; k++) {
        const label l = read_label(in, len, pos, limit);
        if (k > 0) {
            const size_t e = tld_end(in, &l);
            if (e) best = e;
            if (e && e < l.end) break; /* text written against the TLD ends the address */
        }
        if (!label_ok(in, &l) || sc_at(in, len, l.end) != '.') break;
        pos = l.end + 1;
    }
    return best;
}

bool scan_email(const char *in, size_t len, size_t lo, size_t at, size_t *start, size_t *end) {
    size_t s = at;
    while (s > lo && at - s <= LOCAL_MAX && sc_local_char((unsigned char)in[s - 1]))
        s--;
    if (at - s > LOCAL_MAX) return false;
    while (s < at && in[s] == '.')
        s++;
    if (s == at || in[at - 1] == '.') return false;
    for (size_t k = s; k + 1 < at; k++)
        if (in[k] == '.' && in[k + 1] == '.') return false;
    const size_t e = domain(in, len, at + 1);
    if (!e) return false;
    *start = s;
    *end = e;
    return true;
}
