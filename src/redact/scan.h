/* scan.h - the redactor's scanners (one file each) and the byte classes and boundary
 * rules they share. Internal to src/redact.
 *
 * A scanner is called with the position i of a byte where a finding could start and
 * returns the end of the finding that starts exactly there (> i), or 0. It reads a
 * bounded number of bytes (a few dozen; e-mail a few hundred) and never allocates.
 * Positions are byte offsets into in[0, len). */
#ifndef SOV_REDACT_SCAN_H
#define SOV_REDACT_SCAN_H

#include <stdbool.h>
#include <stddef.h>

static inline bool sc_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static inline bool sc_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static inline bool sc_alnum(unsigned char c) { return sc_digit(c) || sc_alpha(c); }
static inline bool sc_word(unsigned char c) { return sc_alnum(c) || c == '_'; }
static inline bool sc_hex(unsigned char c) { return sc_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

/* in[i], or 0 past either end (i is unsigned: "before the start" wraps past len). */
static inline unsigned char sc_at(const char *in, size_t len, size_t i) {
    return i < len ? (unsigned char)in[i] : 0;
}
/* The byte k places before i, or 0 before the start. */
static inline unsigned char sc_before(const char *in, size_t i, size_t k) {
    return i >= k ? (unsigned char)in[i - k] : 0;
}

/* May a number start at i? Not inside a word or a longer number: the byte before is not
 * a letter, digit, _ or @ (an e-mail's local part), and not a . - or / that joins it to
 * a letter or digit ("v1.2", "ORD-0101...", "2024/01..."). Bytes >= 0x80 (Korean text
 * written against the number) are a boundary. */
static inline bool sc_num_left(const char *in, size_t i) {
    const unsigned char p = sc_before(in, i, 1);
    if (sc_word(p) || p == '@' || p == '+') return false;
    if ((p == '.' || p == '-' || p == '/') && sc_alnum(sc_before(in, i, 2))) return false;
    return true;
}

/* May a number end at e? The next byte is not a letter, digit, _ or @, and not a '.'
 * before a digit (a decimal or a version) or a '-' before a letter or digit. */
static inline bool sc_num_right(const char *in, size_t len, size_t e) {
    const unsigned char n = sc_at(in, len, e), n2 = sc_at(in, len, e + 1);
    if (sc_word(n) || n == '@') return false;
    if (n == '.' && sc_digit(n2)) return false;
    if (n == '-' && sc_alnum(n2)) return false;
    return true;
}

/* Counts the digits from i (at most max + 1, so "more than max" is visible). */
static inline size_t sc_digits(const char *in, size_t len, size_t i, size_t max) {
    size_t n = 0;
    while (n <= max && sc_digit(sc_at(in, len, i + n)))
        n++;
    return n;
}

/* Length of the well-formed UTF-8 character at in[i] (RFC 3629), or 0. */
size_t sc_utf8_len(const char *in, size_t len, size_t i);

size_t scan_rrn(const char *in, size_t len, size_t i);   /* rrn.c */
size_t scan_card(const char *in, size_t len, size_t i);  /* card.c */
size_t scan_phone(const char *in, size_t len, size_t i); /* phone.c */
size_t scan_ipv4(const char *in, size_t len, size_t i);  /* ip.c */
size_t scan_ipv6(const char *in, size_t len, size_t i);  /* ip.c */

/* email.c: the address around the '@' at `at`, starting at lo or later: true and its
 * [*start, *end) when there is one. */
bool scan_email(const char *in, size_t len, size_t lo, size_t at, size_t *start, size_t *end);
/* Is c a byte of an address's local part? */
bool sc_local_char(unsigned char c);

#endif
