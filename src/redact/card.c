/* card.c - payment card numbers (PANs).
 *
 * A card number is 13-19 digits written either as one run or in the groups card issuers
 * print, with one kind of separator throughout (space or '-'):
 *   4-4-4-4 (16: Visa, Mastercard, JCB, UnionPay, Korean domestic cards), 4-4-4-4-3 (19),
 *   4-6-5 (15: American Express), 4-6-4 (14: Diners Club).
 * Then its issuer prefix must fit its length (a plausible IIN, below) and the Luhn check
 * must hold. The Luhn check alone passes 1 random number in 10; the prefix table removes
 * most of the rest (a 16-digit number starting with 0, 1, 7 or 8 is never a card). When
 * more groups follow than a pattern uses ("4111 1111 1111 1111 2025"), the longest
 * pattern that fits is taken. */
#include "redact/scan.h"

enum { MAX_GROUPS = 5, MAX_DIGITS = 19 };

/* Group lengths of the printed forms. */
static const unsigned char patterns[][MAX_GROUPS + 1] = {
    /* count, lengths */
    {4, 4, 4, 4, 4},
    {5, 4, 4, 4, 4, 3},
    {3, 4, 6, 5},
    {3, 4, 6, 4},
};

static bool pattern_ok(const size_t *g, int n) {
    if (n == 1) return g[0] >= 13 && g[0] <= MAX_DIGITS;
    for (size_t p = 0; p < sizeof patterns / sizeof patterns[0]; p++) {
        if (patterns[p][0] != n) continue;
        bool same = true;
        for (int k = 0; k < n; k++)
            same = same && g[k] == patterns[p][k + 1];
        if (same) return true;
    }
    return false;
}

/* Does the issuer prefix fit the length? (ISO/IEC 7812 ranges of the networks in use:
 * Visa 4 (13, 16, 19); Mastercard 51-55 and 2221-2720 (16); Maestro 50, 56-59, 6 (16-19);
 * American Express 34, 37 (15); Diners 30, 36, 38, 39 (14, 16); JCB 35 (16-19); Discover
 * and UnionPay 6 (16-19); Korean domestic cards 9 (16).) */
static bool prefix_fits(const char *d, size_t n) {
    const int two = (d[0] - '0') * 10 + (d[1] - '0');
    switch (d[0]) {
    case '4': return n == 13 || n == 16 || n == 19;
    case '5': return two >= 51 && two <= 55 ? n == 16 : n >= 16;
    case '6': return n >= 16;
    case '9': return n == 16;
    case '2': {
        const int four = two * 100 + (d[2] - '0') * 10 + (d[3] - '0');
        return four >= 2221 && four <= 2720 && n == 16;
    }
    case '3':
        if (two == 34 || two == 37) return n == 15;
        if (two == 35) return n >= 16;
        if (two == 30 || two == 36 || two == 38 || two == 39) return n == 14 || n == 16;
        return false;
    default: return false;
    }
}

static bool luhn(const char *d, size_t n) {
    int sum = 0;
    for (size_t k = 0; k < n; k++) {
        int x = d[n - 1 - k] - '0';
        if (k % 2 == 1) x = x * 2 > 9 ? x * 2 - 9 : x * 2;
        sum += x;
    }
    return sum % 10 == 0;
}

size_t scan_card(const char *in, size_t len, size_t i) {
    if (!sc_num_left(in, i)) return 0;
    size_t g[MAX_GROUPS], ends[MAX_GROUPS];
    int n = 0;
    size_t pos = i;
    char sep = 0;
    for (;;) {
        const size_t run = sc_digits(in, len, pos, MAX_DIGITS);
        if (run > MAX_DIGITS || (n == 0 && run < 4)) return 0; /* every form starts with 4 digits or more */
        g[n] = run;
        ends[n++] = pos += run;
        const unsigned char s = sc_at(in, len, pos);
        if (n == MAX_GROUPS || run > 6 || !(s == ' ' || s == '-') || (sep && s != sep) ||
            !sc_digit(sc_at(in, len, pos + 1)))
            break;
        sep = (char)s;
        pos++;
    }
    for (int k = n; k >= 1; k--) { /* the longest printed form that fits */
        if (!pattern_ok(g, k) || !sc_num_right(in, len, ends[k - 1])) continue;
        char d[MAX_DIGITS] = {0};
        size_t nd = 0;
        for (size_t p = i; p < ends[k - 1]; p++)
            if (sc_digit((unsigned char)in[p])) d[nd++] = in[p];
        if (prefix_fits(d, nd) && luhn(d, nd)) return ends[k - 1];
    }
    return 0;
}
