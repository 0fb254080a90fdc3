/* phone.c - telephone numbers, in three families:
 *
 * Korean domestic   AREA SEP MID SEP LAST, LAST 4 digits, MID 3-4 digits not starting with
 *                   0, SEP one of '-', ' ', '.' used twice; AREA one of
 *                     02 (Seoul), 031-033, 041-044, 051-055, 061-064 (provinces),
 *                     010 011 016-019 (mobile), 070 (internet phone), 080 (free call),
 *                     0502-0508 (personal numbers);
 *                   "(02) 123-4567" / "(031)123-4567" with the area in parentheses; mobile
 *                   numbers also as bare digits (01012345678, 0111234567).
 * International     '+', a country code, then 8-15 digits in all (E.164) in groups
 *                   separated by one ' ', '-' or '.', with "(0)" or "(415)" groups allowed:
 *                   +82 10-1234-5678, +82-2-123-4567, +821012345678, +1 (415) 555-0100,
 *                   +44 20 7946 0958, +33 1 23 45 67 89.
 * North American    (415) 555-0100, 415-555-0100, 415.555.0100: area and exchange start
 *                   with 2-9 (NANP), groups of exactly 3, 3 and 4.
 *
 * What stays: dates (2024-01-15: no area code starts with 2), versions, order and account
 * numbers that do not have these exact shapes, and any number joined to a letter or digit
 * on either side (sc_num_left/sc_num_right). Numbers without a '+' from other countries
 * cannot be told from other digit groups and are left alone. */
#include "redact/scan.h"

/* Length of the Korean area code at i (2, 3 or 4), or 0. */
static size_t kr_area(const char *in, size_t len, size_t i) {
    const unsigned char a = sc_at(in, len, i + 1), b = sc_at(in, len, i + 2), c = sc_at(in, len, i + 3);
    if (sc_at(in, len, i) != '0') return 0;
    if (a == '2') return 2;
    if (!sc_digit(b)) return 0;
    switch (a) {
    case '1': return b == '0' || b == '1' || (b >= '6' && b <= '9') ? 3 : 0;
    case '3': return b >= '1' && b <= '3' ? 3 : 0;
    case '4': return b >= '1' && b <= '4' ? 3 : 0;
    case '5':
        if (b == '0') return c >= '2' && c <= '8' ? 4 : 0;
        return b >= '1' && b <= '5' ? 3 : 0;
    case '6': return b >= '1' && b <= '4' ? 3 : 0;
    case '7':
    case '8': return b == '0' ? 3 : 0;
    default: return 0;
    }
}

static bool kr_sep(unsigned char c) { return c == '-' || c == ' ' || c == '.'; }

/* MID SEP LAST from pos (sep 0: the parenthesized form, any one separator or none). */
static size_t kr_rest(const char *in, size_t len, size_t pos, unsigned char sep) {
    const size_t mid = sc_digits(in, len, pos, 4);
    if (mid < 3 || mid > 4 || sc_at(in, len, pos) == '0') return 0;
    pos += mid;
    const unsigned char s = sc_at(in, len, pos);
    if (sep ? s != sep : !kr_sep(s)) return 0;
    pos++;
    if (sc_digits(in, len, pos, 4) != 4) return 0;
    return sc_num_right(in, len, pos + 4) ? pos + 4 : 0;
}

static size_t korean(const char *in, size_t len, size_t i) {
    const size_t area = kr_area(in, len, i);
    if (!area) return 0;
    size_t pos = i + area;
    const unsigned char s = sc_at(in, len, pos);
    if (kr_sep(s)) return kr_rest(in, len, pos + 1, s);
    /* bare digits: mobile numbers only (a bare landline number is too like other numbers) */
    if (area != 3 || in[i + 1] != '1') return 0;
    const size_t run = sc_digits(in, len, pos, 8);
    const bool ok010 = in[i + 2] == '0' ? run == 8 : run == 7 || run == 8;
    return ok010 && sc_at(in, len, pos) != '0' && sc_num_right(in, len, pos + run) ? pos + run : 0;
}

/* "(02) 123-4567", "(031)123-4567" at the '(' at i. */
static size_t korean_paren(const char *in, size_t len, size_t i) {
    const size_t area = kr_area(in, len, i + 1);
    if (!area || sc_at(in, len, i + 1 + area) != ')') return 0;
    size_t pos = i + 2 + area;
    if (sc_at(in, len, pos) == ' ') pos++;
    return kr_rest(in, len, pos, 0);
}

/* NXX: three digits, the first 2-9. */
static bool nxx(const char *in, size_t len, size_t pos) {
    const unsigned char c = sc_at(in, len, pos);
    return c >= '2' && c <= '9' && sc_digits(in, len, pos, 3) == 3;
}

/* EXCHANGE SEP LINE after the area code, from pos. */
static size_t nanp_rest(const char *in, size_t len, size_t pos, unsigned char sep) {
    if (!nxx(in, len, pos) || sc_at(in, len, pos + 3) != sep) return 0;
    pos += 4;
    if (sc_digits(in, len, pos, 4) != 4) return 0;
    return sc_num_right(in, len, pos + 4) ? pos + 4 : 0;
}

static size_t nanp(const char *in, size_t len, size_t i) {
    if (sc_at(in, len, i) == '(') {
        if (!nxx(in, len, i + 1) || sc_at(in, len, i + 4) != ')') return 0;
        const size_t pos = i + 5 + (sc_at(in, len, i + 5) == ' ');
        const size_t e = nanp_rest(in, len, pos, '-');
        return e ? e : nanp_rest(in, len, pos, '.');
    }
    if (!nxx(in, len, i)) return 0;
    const unsigned char sep = sc_at(in, len, i + 3);
    if (sep != '-' && sep != '.') return 0;
    return nanp_rest(in, len, i + 4, sep);
}

/* A group of an international number at pos: digits, or 1-4 digits in parentheses.
 * Returns its end and adds its digits to *digits; 0 when there is none. */
static size_t intl_group(const char *in, size_t len, size_t pos, size_t *digits) {
    if (sc_at(in, len, pos) == '(') {
        const size_t n = sc_digits(in, len, pos + 1, 4);
        if (n < 1 || n > 4 || sc_at(in, len, pos + 1 + n) != ')') return 0;
        *digits += n;
        return pos + 2 + n;
    }
    const size_t n = sc_digits(in, len, pos, 15);
    *digits += n;
    return n ? pos + n : 0;
}

static size_t international(const char *in, size_t len, size_t i) {
    const unsigned char c = sc_at(in, len, i + 1);
    if (c < '1' || c > '9') return 0;
    size_t digits = 0, best = 0, pos = i + 1;
    for (int groups = 0; groups < 8; groups++) {
        const size_t e = intl_group(in, len, pos, &digits);
        if (!e || digits > 15) break;
        pos = e;
        if (digits >= 8 && sc_num_right(in, len, pos)) best = pos; /* the longest that ends well */
        const unsigned char s = sc_at(in, len, pos), next = sc_at(in, len, pos + 1);
        if ((s == ' ' || s == '-' || s == '.') && (sc_digit(next) || next == '('))
            pos++;
        else if (!(s == '(' || (in[pos - 1] == ')' && sc_digit(s))))
            break;
    }
    return best;
}

size_t scan_phone(const char *in, size_t len, size_t i) {
    const unsigned char c = (unsigned char)in[i];
    if (c == '+' || c == '(') { /* not glued to a word: "C++", "f(02)" */
        const unsigned char p = sc_before(in, i, 1);
        if (sc_word(p) || p == '+' || p == '@') return 0;
        if (c == '+') return international(in, len, i);
        const size_t e = korean_paren(in, len, i);
        return e ? e : nanp(in, len, i);
    }
    if (!sc_digit(c) || !sc_num_left(in, i)) return 0;
    return c == '0' ? korean(in, len, i) : nanp(in, len, i);
}
