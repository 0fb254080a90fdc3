/* rrn.c - Korean resident registration numbers (주민등록번호) and alien registration
 * numbers (외국인등록번호), which share one layout:
 *
 *   Y Y M M D D - G P P P P S C        (or the same 13 digits without the '-')
 *   └─ birth ──┘  │ └─┬───┘ │ └ check digit
 *                 │  place  serial
 *                 └ century and sex: 1 2 5 6 born 1900-1999, 3 4 7 8 born 2000-2099
 *                   (5-8 foreigners); 9 and 0 (born 1800-1899) are not accepted: nobody
 *                   alive has them, and refusing them removes a fifth of the false positives
 *
 * Check digit C = (11 - (2Y+3Y+4M+5M+6D+7D+8G+9P+2P+3P+4P+5S) mod 11) mod 10, and the place
 * code's first two digits are at most 96 (as python-stdnum's kr.rrn checks). A random
 * digit string with a real date and gender digit passes 1 time in 10, so the check is what
 * keeps order numbers, timestamps and phone numbers from being taken for RRNs.
 *
 * Since October 2020 new numbers (births and re-issues) have six random digits after G:
 * no place code and no check digit. sov's rule:
 *   - any number whose check digit holds is an RRN (hyphenated or 13 bare digits);
 *   - a number whose birth date is 2020-10-01 or later cannot be checked, so it is an RRN
 *     when written in the RRN's own shape YYMMDD-GNNNNNN; 13 bare digits with such a date
 *     and a failing check digit are left alone (too likely an order number);
 *   - numbers re-issued since 2020 to people born earlier are found only when their
 *     random last digit happens to pass (1 in 10): a known miss (docs/POLICY.md).
 * A masked number YYMMDD-G****** (or xxxxxx) with a real date is still redacted: the birth
 * date and sex it shows are personal data. */
#include "redact/scan.h"

static int num2(const char *s) { return (s[0] - '0') * 10 + (s[1] - '0'); }

static int days_in_month(int y, int m) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* The birth date as YYYYMMDD, or 0 when the date or the gender digit g is not valid. */
static long birth_date(const char *d, char g) {
    int century;
    if (g == '1' || g == '2' || g == '5' || g == '6')
        century = 1900;
    else if (g == '3' || g == '4' || g == '7' || g == '8')
        century = 2000;
    else
        return 0;
    const int y = century + num2(d), m = num2(d + 2), day = num2(d + 4);
    if (m < 1 || m > 12 || day < 1 || day > days_in_month(y, m)) return 0;
    return (long)y * 10000 + m * 100 + day;
}

/* d: the 13 digits without the '-'. */
static bool check_digit_holds(const char *d) {
    static const int w[12] = {2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5};
    int sum = 0;
    for (int k = 0; k < 12; k++)
        sum += w[k] * (d[k] - '0');
    return num2(d + 7) <= 96 && (11 - sum % 11) % 10 == d[12] - '0';
}

static bool mask_char(unsigned char c) { return c == '*' || c == 'x' || c == 'X'; }

size_t scan_rrn(const char *in, size_t len, size_t i) {
    if (!sc_num_left(in, i)) return 0;
    char d[13];
    const size_t run = sc_digits(in, len, i, 13);
    if (run == 13) { /* 13 bare digits: the check digit must hold */
        for (int k = 0; k < 13; k++)
            d[k] = in[i + k];
        return birth_date(d, d[6]) && check_digit_holds(d) && sc_num_right(in, len, i + 13) ? i + 13 : 0;
    }
    if (run != 6 || sc_at(in, len, i + 6) != '-' || !sc_digit(sc_at(in, len, i + 7))) return 0;
    for (int k = 0; k < 6; k++)
        d[k] = in[i + k];
    d[6] = in[i + 7];
    const long born = birth_date(d, d[6]);
    if (!born) return 0;
    const size_t tail = i + 8, end = i + 14;
    size_t masked = 0;
    while (masked < 7 && mask_char(sc_at(in, len, tail + masked)))
        masked++;
    if (masked == 6) /* YYMMDD-G****** */
        return !mask_char(sc_at(in, len, end)) && sc_num_right(in, len, end) ? end : 0;
    if (sc_digits(in, len, tail, 6) != 6 || !sc_num_right(in, len, end)) return 0;
    for (int k = 0; k < 6; k++)
        d[7 + k] = in[tail + k];
    return check_digit_holds(d) || born >= 20201001 ? end : 0;
}
