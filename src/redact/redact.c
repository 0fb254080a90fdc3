/* redact.c - the redactor's driver (see redact.h): walks the text once, asks the
 * scanners (scan.h) for a finding at each byte where one could start, and writes the text
 * with each finding replaced by its placeholder.
 *
 * Which scanner wins: at one position RRN, card, phone, IPv4 and IPv6 are tried in that
 * order (a 13-digit run is an RRN before it is a card; the shapes otherwise exclude each
 * other). An e-mail address is found from its '@', after the scan has passed its local
 * part; so when a number is found, the bytes after it are checked for an '@' that makes
 * it the start of an address ("01012345678@example.com" is one address, not a phone
 * number and a domain). That look-ahead is at most 64 bytes, so the whole pass stays
 * linear. */
#include "redact/redact.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redact/scan.h"

static const char *const placeholders[REDACT_KIND_COUNT] = {"[EMAIL]", "[PHONE]", "[RRN]", "[CARD]", "[IP]"};
static const char *const names[REDACT_KIND_COUNT] = {"email", "phone", "rrn", "card", "ip"};

const char *redact_placeholder(redact_kind kind) {
    return (unsigned)kind < REDACT_KIND_COUNT ? placeholders[kind] : "[REDACTED]";
}

const char *redact_kind_name(redact_kind kind) {
    return (unsigned)kind < REDACT_KIND_COUNT ? names[kind] : "?";
}

size_t sc_utf8_len(const char *in, size_t len, size_t i) {
    const unsigned char *s = (const unsigned char *)in + i;
    const size_t left = len - i;
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
    if (left < n || s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < n; k++)
        if ((s[k] & 0xC0) != 0x80) return 0;
    return n;
}

typedef size_t (*scanner)(const char *in, size_t len, size_t i);

/* A finding other than an e-mail address that starts at i. */
static bool number_at(uint32_t kinds, const char *in, size_t len, size_t i, redact_span *sp) {
    static const struct {
        redact_kind kind;
        scanner scan;
    } order[] = {{REDACT_RRN, scan_rrn},
                 {REDACT_CARD, scan_card},
                 {REDACT_PHONE, scan_phone},
                 {REDACT_IP, scan_ipv4},
                 {REDACT_IP, scan_ipv6}};
    const unsigned char c = (unsigned char)in[i];
    /* which scanners can start on this byte: digits any; + and ( a phone; : and hex
     * letters an IPv6 address */
    const bool digit = sc_digit(c), v6 = digit || c == ':' || sc_hex(c),
               phone = digit || c == '+' || c == '(';
    if (!v6 && !phone) return false;
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
        if (!(kinds & (1u << order[k].kind))) continue;
        if (!digit && !(order[k].scan == scan_phone ? phone : order[k].scan == scan_ipv6 && v6)) continue;
        const size_t e = order[k].scan(in, len, i);
        if (e) {
            *sp = (redact_span){i, e, order[k].kind};
            return true;
        }
    }
    return false;
}

/* Is the number in sp the start of an e-mail address's local part? Then that address. */
static void prefer_email(const char *in, size_t len, size_t from, redact_span *sp) {
    size_t a = sp->end;
    while (a < len && a - sp->start <= 64 && in[a] != '@' && sc_local_char((unsigned char)in[a]))
        a++;
    size_t s, e;
    if (a < len && in[a] == '@' && scan_email(in, len, from, a, &s, &e) && s <= sp->start)
        *sp = (redact_span){s, e, REDACT_EMAIL};
}

bool redact_next(uint32_t kinds, const char *in, size_t len, size_t from, redact_span *out) {
    kinds &= POLICY_REDACT_ALL;
    const bool email = kinds & POLICY_REDACT_EMAIL;
    const uint32_t others = kinds & ~(uint32_t)POLICY_REDACT_EMAIL;
    if (!in || !kinds) return false;
    for (size_t i = from; i < len; i++) {
        if (in[i] == '@') {
            size_t s, e;
            if (email && scan_email(in, len, from, i, &s, &e)) {
                *out = (redact_span){s, e, REDACT_EMAIL};
                return true;
            }
            continue;
        }
        /* every scanner needs a boundary before its finding: skip the inside of words and numbers */
        if (!others || (i > 0 && sc_word((unsigned char)in[i - 1]))) continue;
        if (number_at(others, in, len, i, out)) {
            if (email) prefer_email(in, len, from, out);
            return true;
        }
    }
    return false;
}

/* An output buffer that keeps counting past its capacity (snprintf's contract). */
typedef struct writer {
    char *out;
    size_t cap, n;
} writer;

static void put(writer *w, const char *s, size_t n) {
    if (w->n + 1 < w->cap) {
        const size_t room = w->cap - 1 - w->n;
        memcpy(w->out + w->n, s, n < room ? n : room);
    }
    w->n += n;
}

size_t redact_text(uint32_t kinds, const char *in, size_t len, char *out, size_t cap, redact_counts *counts) {
    writer w = {out, out ? cap : 0, 0};
    size_t pos = 0;
    redact_span sp;
    while (redact_next(kinds, in, len, pos, &sp)) {
        put(&w, in + pos, sp.start - pos);
        put(&w, placeholders[sp.kind], strlen(placeholders[sp.kind]));
        if (counts) counts->n[sp.kind]++;
        pos = sp.end;
    }
    if (len > pos) put(&w, in + pos, len - pos);
    if (w.cap) w.out[w.n < w.cap ? w.n : w.cap - 1] = '\0';
    return w.n;
}

char *redact_dup(uint32_t kinds, const char *in, size_t len, size_t *out_len, redact_counts *counts) {
    if (len > (SIZE_MAX - 1) / 2) return NULL;
    const size_t cap = REDACT_MAX_OUT(len) + 1;
    char *out = malloc(cap);
    if (!out) return NULL;
    const size_t n = redact_text(kinds, in, len, out, cap, counts);
    if (out_len) *out_len = n;
    return out;
}
