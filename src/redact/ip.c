/* ip.c - IP addresses.
 *
 * IPv4: four decimal octets 0-255 joined by '.', no leading zeros ("01.02.03.04" is more
 * likely a date than an address). Not part of a longer dotted run: 1.2.3 has too few
 * parts and in 1.2.3.4.5 or v1.2.3.4 the address would be a piece of a version. A port or
 * prefix length after it stays: "10.0.0.1:8080" -> "[IP]:8080", "10.0.0.0/8" -> "[IP]/8".
 *
 * IPv6 (RFC 4291 text forms): eight groups of 1-4 hex digits joined by ':', or fewer with
 * one "::" standing for the missing ones, the last two groups optionally an IPv4 address
 * (::ffff:192.0.2.1). A zone (%eth0) stays. To keep C++ and Python out ("std::vector",
 * "a[1::2]", "Foo::Bar"), a compressed address needs three groups or more, or two when
 * one of them has 3-4 hex digits (fe80::1), and at least one decimal digit somewhere
 * ("dead::beef" stays); "::1" and "::" stay (loopback and "any" identify nobody). Times
 * (10:30:00) and MAC addresses (six groups) are not eight groups and have no "::". */
#include "redact/scan.h"

/* The IPv4 address at i without boundary checks: its end, or 0. */
static size_t ipv4_at(const char *in, size_t len, size_t i) {
    size_t pos = i;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (sc_at(in, len, pos) != '.') return 0;
            pos++;
        }
        const size_t n = sc_digits(in, len, pos, 3);
        if (n < 1 || n > 3 || (n > 1 && in[pos] == '0')) return 0;
        int v = 0;
        for (size_t k = 0; k < n; k++)
            v = v * 10 + (in[pos + k] - '0');
        if (v > 255) return 0;
        pos += n;
    }
    return pos;
}

/* The byte after an address: not a letter, digit or _, and not a '.' that goes on with a
 * letter or digit (1.2.3.4.5, 1.2.3.4.example). */
static bool ip_right(const char *in, size_t len, size_t e) {
    const unsigned char n = sc_at(in, len, e);
    return !sc_word(n) && !(n == '.' && sc_alnum(sc_at(in, len, e + 1)));
}

size_t scan_ipv4(const char *in, size_t len, size_t i) {
    const unsigned char p = sc_before(in, i, 1);
    if (sc_word(p) || (p == '.' && sc_alnum(sc_before(in, i, 2)))) return 0;
    const size_t e = ipv4_at(in, len, i);
    return e && ip_right(in, len, e) ? e : 0;
}

/* Counts the hex digits at pos (at most 5, so "more than 4" is visible). */
static size_t hex_run(const char *in, size_t len, size_t pos, bool *has_digit) {
    size_t n = 0;
    while (n < 5 && sc_hex(sc_at(in, len, pos + n))) {
        if (sc_digit((unsigned char)in[pos + n])) *has_digit = true;
        n++;
    }
    return n;
}

size_t scan_ipv6(const char *in, size_t len, size_t i) {
    const unsigned char p = sc_before(in, i, 1);
    if (sc_word(p) || p == ':' || p == '.') return 0;
    size_t pos = i, end = 0, longest = 0;
    int groups = 0;
    bool compressed = false, has_digit = false;
    if (sc_at(in, len, pos) == ':') {
        if (sc_at(in, len, pos + 1) != ':') return 0;
        compressed = true;
        pos += 2;
        end = pos;
    }
    for (;;) {
        const size_t n = hex_run(in, len, pos, &has_digit);
        if (n == 0) break; /* after "::" (1::) or a lone ':' that is not part of it */
        if (n > 4) return 0;
        if (sc_at(in, len, pos + n) == '.') { /* the IPv4 tail: the last two groups */
            const size_t e4 = ipv4_at(in, len, pos);
            if (!e4 || groups > 6) return 0;
            groups += 2;
            end = e4;
            has_digit = true;
            longest = 4;
            break;
        }
        groups++;
        longest = n > longest ? n : longest;
        pos += n;
        end = pos;
        if (groups > 8) return 0;
        if (sc_at(in, len, pos) == ':' && sc_at(in, len, pos + 1) == ':') {
            if (compressed) return 0; /* a second "::" */
            compressed = true;
            pos += 2;
            end = pos;
        } else if (sc_at(in, len, pos) == ':' && sc_hex(sc_at(in, len, pos + 1))) {
            pos++;
        } else {
            break;
        }
    }
    if (compressed ? groups > 7 || groups < 2 || (groups == 2 && longest < 3) : groups != 8) return 0;
    if (!has_digit) return 0;
    /* a ':' after the address ends a sentence or a label ("fe80::1: up"); one before a hex
     * digit would have been read as a group */
    return ip_right(in, len, end) ? end : 0;
}
