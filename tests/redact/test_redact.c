/* test_redact.c - the redactor (src/redact): each kind's true positives and near misses,
 * the RRN check digit and the Luhn check deciding (one digit in ten passes), Korean text
 * around findings kept byte for byte, only the asked kinds, snprintf-style cutting,
 * counts, invariants on 20 000 random texts, 1 MB adversarial inputs in linear time, and
 * precision and recall on the Korean/English corpus (tests/redact/corpus.json), printed. */
#include <jansson.h>
#include <time.h>

#include "redact/redact.h"
#include "test.h"

#define ALL POLICY_REDACT_ALL

static char *red(uint32_t kinds, const char *in) {
    static char buf[4096];
    redact_text(kinds, in, strlen(in), buf, sizeof buf, NULL);
    return buf;
}

#define EXPECT(kinds, in, want) CHECK_STREQ(red(kinds, in), want)
#define STAYS(in) CHECK_STREQ(red(ALL, in), in)

static void emails(void) {
    EXPECT(ALL, "mail kim@example.com now", "mail [EMAIL] now");
    EXPECT(ALL, "a.b-c_d%e+f@sub-domain.example.co.kr", "[EMAIL]");
    EXPECT(ALL, "x@y.io.", "[EMAIL]."); /* a sentence's full stop */
    EXPECT(ALL, "<x@y.io>, (x@y.io); \"x@y.io\"", "<[EMAIL]>, ([EMAIL]); \"[EMAIL]\"");
    EXPECT(ALL, "kim@example.com으로 보내", "[EMAIL]으로 보내"); /* Korean against the TLD */
    EXPECT(ALL, "문의는kim@example.com", "문의는[EMAIL]");       /* and against the local part */
    EXPECT(ALL, "hong@예시.한국에게", "[EMAIL]에게");            /* IDN TLD 한국 + particle */
    EXPECT(ALL, "info@bücher.de", "[EMAIL]");
    EXPECT(ALL, "a@xn--9n2bp8q.xn--3e0b707e", "[EMAIL]");
    EXPECT(ALL, "..kim@example.com", "..[EMAIL]"); /* leading dots are not the address */
    EXPECT(ALL, "mailto:kim@example.com?subject=x", "mailto:[EMAIL]?subject=x");
    EXPECT(ALL, "01012345678@example.com", "[EMAIL]"); /* one address, not a phone and a domain */
    EXPECT(ALL, "850315-1234566@example.com", "[EMAIL]");
    STAYS("root@localhost user@intranet");  /* no dot: a local account */
    STAYS("@handle and foo@ and @bar.com"); /* no local part or no domain */
    STAYS("a..b@example.com");              /* double dot */
    STAYS("a.@example.com");                /* trailing dot */
    STAYS("kim@example.c kim@example.123 kim@-x.com kim@x-.com kim@.com");
    char long_local[200];
    memset(long_local, 'a', 65);
    strcpy(long_local + 65, "@example.com");
    STAYS(long_local); /* 65 bytes of local part */
    memmove(long_local, long_local + 1, strlen(long_local));
    CHECK_STREQ(red(ALL, long_local), "[EMAIL]"); /* 64 is the limit */
}

static void phones(void) {
    EXPECT(ALL, "010-1234-5678", "[PHONE]");
    EXPECT(ALL, "010 1234 5678 / 010.1234.5678 / 01012345678", "[PHONE] / [PHONE] / [PHONE]");
    EXPECT(ALL, "011-234-5678 0111234567 016-9876-5432", "[PHONE] [PHONE] [PHONE]");
    EXPECT(ALL, "02-123-4567, 02-1234-5678, 031-123-4567, 064-712-3456",
           "[PHONE], [PHONE], [PHONE], [PHONE]");
    EXPECT(ALL, "070-4321-8765 080-123-4567 0505-123-4567", "[PHONE] [PHONE] [PHONE]");
    EXPECT(ALL, "(02) 123-4567 (031)123-4567", "[PHONE] [PHONE]");
    EXPECT(ALL, "연락처010-1234-5678입니다", "연락처[PHONE]입니다");
    EXPECT(ALL, "Tel:010-1234-5678.", "Tel:[PHONE].");
    EXPECT(ALL, "+82 10-1234-5678 +82-2-123-4567 +821012345678", "[PHONE] [PHONE] [PHONE]");
    EXPECT(ALL, "+82 (0)10-1234-5678", "[PHONE]");
    EXPECT(ALL, "+1 415 555 0100, +1 (415) 555-0100, +44 20 7946 0958", "[PHONE], [PHONE], [PHONE]");
    EXPECT(ALL, "+33 1 23 45 67 89 / +81-3-1234-5678", "[PHONE] / [PHONE]");
    EXPECT(ALL, "(415) 555-0100 415-555-0100 415.555.0100", "[PHONE] [PHONE] [PHONE]");
    STAYS("2024-01-15 2024.01.15 20240115");
    STAYS("010-1234-567 010-1234-56789 010-12-5678 010-0123-4567"); /* wrong group sizes, exchange 0 */
    STAYS("010-1234 5678 010.1234-5678");                           /* mixed separators */
    STAYS("A010-1234-5678 010-1234-5678X 1-010-1234-5678 010-1234-5678-9");
    STAYS("0212345678 0311234567");   /* bare landline numbers: too like other numbers */
    STAYS("010123456789 0101234567"); /* bare 010 numbers have 11 digits */
    STAYS("1588-1234 123-456-7890 011-234-567");
    STAYS("+5 points +1234567 C++20 a+1 415 555 0100"); /* too short; '+' glued to a word */
    STAYS("+12345678901234567");                        /* more than 15 digits */
    STAYS("(123) 456-7890 415-055-0100 415 555 0100");  /* NANP: N digits 2-9; no spaces */
}

/* The RRN check digit (an independent implementation for the test). */
static char rrn_check(const char *d12) {
    static const int w[12] = {2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5};
    int s = 0;
    for (int i = 0; i < 12; i++)
        s += w[i] * (d12[i] - '0');
    return (char)('0' + (11 - s % 11) % 10);
}

/* How many of the ten last digits make "PREFIX?" (13 digits, with or without the '-'
 * after 6) an RRN. */
static int rrn_passes(const char *front6, const char *mid6, bool hyphen) {
    int n = 0;
    for (char d = '0'; d <= '9'; d++) {
        char s[32];
        snprintf(s, sizeof s, "%s%s%s%c", front6, hyphen ? "-" : "", mid6, d);
        n += strcmp(red(POLICY_REDACT_RRN, s), "[RRN]") == 0;
    }
    return n;
}

static void rrns(void) {
    EXPECT(ALL, "850315-1234566 8503151234566", "[RRN] [RRN]");
    EXPECT(ALL, "주민번호:850315-1234566입니다", "주민번호:[RRN]입니다");
    EXPECT(ALL, "880808-5102348 030405-7012345", "[RRN] [RRN]"); /* foreigners */
    EXPECT(ALL, "900101-1****** 920708-2xxxxxx", "[RRN] [RRN]"); /* masked */
    STAYS("900101-1***** 900101-1******* 900101-*******");       /* not six masks after G */
    STAYS("850315-1234569 8503151234569");                       /* check digit */
    /* exactly one final digit in ten passes, before October 2020 */
    CHECK_EQ(rrn_passes("850315", "123456", true), 1);
    CHECK_EQ(rrn_passes("850315", "123456", false), 1);
    CHECK_EQ(rrn_passes("051230", "467890", true), 1);
    /* from 2020-10-01 the last digits are random: the hyphenated form is enough ... */
    CHECK_EQ(rrn_passes("201001", "384726", true), 10);
    CHECK_EQ(rrn_passes("230615", "412345", true), 10);
    /* ... 13 bare digits still need the check digit, and 2020-09-30 is still checked */
    CHECK_EQ(rrn_passes("201001", "384726", false), 1);
    CHECK_EQ(rrn_passes("200930", "384726", true), 1);
    /* gender digits 9 and 0 (born 1800s), impossible dates, place codes over 96 */
    CHECK_EQ(rrn_passes("850315", "923456", true), 0);
    CHECK_EQ(rrn_passes("850315", "023456", true), 0);
    CHECK_EQ(rrn_passes("851315", "123456", true), 0);
    CHECK_EQ(rrn_passes("850230", "123456", true), 0);
    CHECK_EQ(rrn_passes("850315", "197456", true), 0);
    CHECK_EQ(rrn_passes("850315", "196456", true), 1);
    /* 29 February only in leap years (1900 was not one, 2000 was) */
    CHECK_EQ(rrn_passes("640229", "145612", true), 1);
    CHECK_EQ(rrn_passes("650229", "145612", true), 0);
    CHECK_EQ(rrn_passes("000229", "145612", true), 0);
    CHECK_EQ(rrn_passes("000229", "345612", true), 1);
    /* every day of 1999 with a valid check digit passes, and no 32nd day does */
    int days = 0;
    for (int m = 1; m <= 12; m++) {
        for (int d = 1; d <= 32; d++) {
            char s[20];
            snprintf(s, sizeof s, "99%02d%02d212345", m, d);
            char full[24];
            snprintf(full, sizeof full, "%.6s-%s%c", s, s + 6, rrn_check(s));
            days += strcmp(red(POLICY_REDACT_RRN, full), "[RRN]") == 0;
        }
    }
    CHECK_EQ(days, 365);
    STAYS("A850315-1234566 850315-12345667 1850315-1234566 850315-1234566-1");
}

/* How many of the ten last digits make the card number with '?' a card. */
static int card_passes(const char *with_q) {
    int n = 0;
    for (char d = '0'; d <= '9'; d++) {
        char s[64];
        snprintf(s, sizeof s, "%s", with_q);
        *strchr(s, '?') = d;
        n += strcmp(red(POLICY_REDACT_CARD, s), "[CARD]") == 0;
    }
    return n;
}

static void cards(void) {
    EXPECT(ALL, "4111 1111 1111 1111 / 4111-1111-1111-1111 / 4111111111111111", "[CARD] / [CARD] / [CARD]");
    EXPECT(ALL, "3782 822463 10005 3622 720627 1667", "[CARD] [CARD]"); /* Amex 4-6-5, Diners 4-6-4 */
    EXPECT(ALL, "카드4111-1111-1111-1111로", "카드[CARD]로");
    EXPECT(ALL, "4111 1111 1111 1111 2025", "[CARD] 2025"); /* the longest printed form that fits */
    CHECK_EQ(card_passes("4111 1111 1111 111?"), 1);
    CHECK_EQ(card_passes("5105 1051 0510 510?"), 1);
    CHECK_EQ(card_passes("2221 0000 0000 000?"), 1);
    CHECK_EQ(card_passes("9410 1234 5678 901?"), 1); /* Korean domestic */
    CHECK_EQ(card_passes("401288888888188?"), 1);
    CHECK_EQ(card_passes("401288888888?"), 1); /* 13-digit Visa */
    /* issuers that do not exist or lengths they do not use */
    CHECK_EQ(card_passes("1111 1111 1111 111?"), 0);
    CHECK_EQ(card_passes("7111 1111 1111 111?"), 0);
    CHECK_EQ(card_passes("3411 1111 1111 111?"), 0);  /* Amex is 15 digits */
    CHECK_EQ(card_passes("2111 1111 1111 111?"), 0);  /* 2-series is 2221-2720 */
    CHECK_EQ(card_passes("4111 1111 1111 1?"), 0);    /* 14-digit Visa */
    CHECK_EQ(card_passes("4111-1111 1111-111?"), 0);  /* mixed separators */
    CHECK_EQ(card_passes("41111 111 1111 111?"), 0);  /* not a printed grouping */
    CHECK_EQ(card_passes("4111 1111 1111 111?5"), 0); /* 17 digits run on */
    STAYS("4111 1111 1111 1112 4111-1111-1111-1111-1 x4111111111111111");
}

static void ips(void) {
    EXPECT(ALL, "from 192.0.2.1 to 255.255.255.255 and 0.0.0.0", "from [IP] to [IP] and [IP]");
    EXPECT(ALL, "10.0.0.1:8080 10.0.0.0/8 10.0.0.1-10.0.0.9", "[IP]:8080 [IP]/8 [IP]-[IP]");
    EXPECT(ALL, "root@10.0.0.5 IP:10.0.0.5, 서버192.0.2.1에서", "root@[IP] IP:[IP], 서버[IP]에서");
    EXPECT(ALL, "2001:db8:85a3:0:0:8a2e:370:7334", "[IP]");
    EXPECT(ALL, "2001:DB8::1 fe80::1%eth0 [2001:db8::1]:443", "[IP] [IP]%eth0 [[IP]]:443");
    EXPECT(ALL, "::ffff:192.0.2.128 64:ff9b::192.0.2.33", "[IP] [IP]");
    EXPECT(ALL, "2001:db8:: and 2001:db8::1: up", "[IP] and [IP]: up");
    STAYS("1.2.3 1.2.3.4.5 v1.2.3.4 1.2.3.4a 256.1.1.1 01.2.3.4 1.2.3.04");
    STAYS("10:30:00 00:1a:2b:3c:4d:5e 1:2:3:4:5:6:7 1:2:3:4:5:6:7:8:9");
    STAYS("std::vector a[1::2] Foo::Bar dead::beef ::1 :: 1::");
    STAYS("2001:db8::1::2 2001:db8:12345::1 x2001:db8::1");
}

static void korean_text_survives_byte_for_byte(void) {
    const char *in = "가나다010-1234-5678라마바 홍길동(hong@example.com) 님, 카드 4111-1111-1111-1111 결제 "
                     "IP는 192.0.2.1입니다. 주민번호 850315-1234566, 😀 emoji 🇰🇷 끝";
    const char *want =
        "가나다[PHONE]라마바 홍길동([EMAIL]) 님, 카드 [CARD] 결제 IP는 [IP]입니다. 주민번호 [RRN], 😀 "
        "emoji 🇰🇷 끝";
    CHECK_STREQ(red(ALL, in), want);
    /* bytes that are not UTF-8 pass through untouched, findings beside them too */
    const char bad[] = "\xff\xfe 010-1234-5678 \xc0\xaf kim@example.com \xed\xa0\x80";
    const char bad_want[] = "\xff\xfe [PHONE] \xc0\xaf [EMAIL] \xed\xa0\x80";
    char out[128];
    const size_t n = redact_text(ALL, bad, sizeof bad - 1, out, sizeof out, NULL);
    CHECK_EQ(n, sizeof bad_want - 1);
    CHECK(memcmp(out, bad_want, sizeof bad_want) == 0);
    /* a NUL inside the text is text */
    const char nul[] = "a\0"
                       "010-1234-5678";
    CHECK_EQ(redact_text(ALL, nul, sizeof nul - 1, out, sizeof out, NULL), 9);
    CHECK(memcmp(out, "a\0[PHONE]", 9) == 0);
}

static void only_the_asked_kinds(void) {
    const char *in = "kim@example.com 010-1234-5678 850315-1234566 4111111111111111 192.0.2.1";
    EXPECT(POLICY_REDACT_EMAIL, in, "[EMAIL] 010-1234-5678 850315-1234566 4111111111111111 192.0.2.1");
    EXPECT(POLICY_REDACT_PHONE, in, "kim@example.com [PHONE] 850315-1234566 4111111111111111 192.0.2.1");
    EXPECT(POLICY_REDACT_RRN, in, "kim@example.com 010-1234-5678 [RRN] 4111111111111111 192.0.2.1");
    EXPECT(POLICY_REDACT_CARD, in, "kim@example.com 010-1234-5678 850315-1234566 [CARD] 192.0.2.1");
    EXPECT(POLICY_REDACT_IP, in, "kim@example.com 010-1234-5678 850315-1234566 4111111111111111 [IP]");
    EXPECT(0, in, in);
    EXPECT(ALL, in, "[EMAIL] [PHONE] [RRN] [CARD] [IP]");
    /* without e-mail, the digits of an address's local part are not a phone number */
    EXPECT(ALL & ~(uint32_t)POLICY_REDACT_EMAIL, "01012345678@example.com", "01012345678@example.com");
}

static void output_is_cut_like_snprintf(void) {
    const char *in = "call 010-1234-5678 now";
    const char *full = "call [PHONE] now";
    for (size_t cap = 0; cap <= strlen(full) + 2; cap++) {
        char out[64];
        memset(out, 'Z', sizeof out);
        const size_t n = redact_text(ALL, in, strlen(in), cap ? out : NULL, cap, NULL);
        CHECK_EQ(n, strlen(full));
        if (cap) {
            const size_t kept = cap - 1 < n ? cap - 1 : n;
            CHECK(strlen(out) == kept && memcmp(out, full, kept) == 0);
            CHECK(out[cap] == 'Z'); /* nothing past cap */
        }
    }
    size_t n = 0;
    char *d = redact_dup(ALL, in, strlen(in), &n, NULL);
    CHECK(d && n == strlen(full) && strcmp(d, full) == 0);
    free(d);
    d = redact_dup(ALL, "", 0, &n, NULL);
    CHECK(d && n == 0 && d[0] == '\0');
    free(d);
}

static void counts_add_up(void) {
    redact_counts c = {0};
    const char *a = "kim@example.com lee@example.org 010-1234-5678";
    const char *b = "192.0.2.1 2001:db8::1 4111111111111111 850315-1234566";
    char out[256];
    redact_text(ALL, a, strlen(a), out, sizeof out, &c);
    redact_text(ALL, b, strlen(b), out, sizeof out, &c);
    CHECK_EQ(c.n[REDACT_EMAIL], 2);
    CHECK_EQ(c.n[REDACT_PHONE], 1);
    CHECK_EQ(c.n[REDACT_IP], 2);
    CHECK_EQ(c.n[REDACT_CARD], 1);
    CHECK_EQ(c.n[REDACT_RRN], 1);
    CHECK_STREQ(redact_placeholder(REDACT_RRN), "[RRN]");
    CHECK_STREQ(redact_kind_name(REDACT_CARD), "card");
    for (int k = 0; k < REDACT_KIND_COUNT; k++) /* the names are the policy file's */
        CHECK_STREQ(redact_kind_name((redact_kind)k), policy_redact_name(1u << k));
}

/* Random texts over an alphabet rich in the characters the scanners look at. */
static void invariants_on_random_text(void) {
    static const char *const atoms[] = {
        "0",    "1",    "4", "9",  "2",   "5",    "-",  ".",   " ",  ":",         "@",    "+",     "(",
        ")",    "*",    "a", "f",  "x",   "k",    "m",  "_",   "%",  "/",         "한",   "국",    "예",
        "\xff", "\xc3", "ü", "。", "010", "1234", "::", "com", "kr", "192.0.2.1", "4111", "850315"};
    test_rng rng = {0x5eed1234abcdull};
    int findings = 0;
    for (int iter = 0; iter < 20000; iter++) {
        char in[400];
        size_t len = 0;
        const int atoms_n = (int)(test_rng_next(&rng) % 60);
        for (int a = 0; a < atoms_n; a++) {
            const char *s = atoms[test_rng_next(&rng) % SOV_ARRAY_LEN_T(atoms)];
            memcpy(in + len, s, strlen(s));
            len += strlen(s);
        }
        redact_counts c = {0};
        char out[900];
        const size_t n = redact_text(ALL, in, len, out, sizeof out, &c);
        CHECK_MSG(n <= REDACT_MAX_OUT(len), "output %zu > 2 * %zu", n, len);
        /* spans: ordered, inside the text, at least 3 bytes, as many as the counts say */
        size_t pos = 0, spans = 0, sum = 0;
        redact_span sp;
        while (redact_next(ALL, in, len, pos, &sp)) {
            CHECK(sp.start >= pos && sp.end > sp.start + 2 && sp.end <= len);
            pos = sp.end;
            spans++;
        }
        for (int k = 0; k < REDACT_KIND_COUNT; k++)
            sum += c.n[k];
        CHECK_EQ(spans, sum);
        findings += (int)spans;
        /* a cut output is a prefix of the whole */
        char small[17];
        redact_text(ALL, in, len, small, sizeof small, NULL);
        CHECK(memcmp(small, out, strlen(small)) == 0);
    }
    CHECK(findings > 1000); /* the alphabet does produce findings */
    fprintf(stderr, "  20000 random texts, %d findings\n", findings);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* 1 MB of a repeated piece (a finding that never completes, or one that always does). */
static void adversarial_megabyte_is_linear(void) {
    static const char *const pieces[] = {
        "1",
        "1 ",
        "1.",
        "1-",
        "0",
        "01",
        "1:",
        "a:",
        ":",
        "::",
        "f",
        "a@",
        "@",
        "@a.",
        "a.",
        "aaaaaaaa",
        "+1 ",
        "+",
        "(",
        "(02) ",
        "1.1.1.",
        "00:",
        "2001:db8:",
        "4111 ",
        "0101234",
        "850315-1",
        "한",
        "@한.",
        "a@b.c",
        "x@aaaa.bb",
        "010-1234-5678 ",
        "4111 1111 1111 1111 ",
        "kim@example.com ",
        "192.0.2.1 ",
        "::ffff:1.2.3.4 ",
        "+82 10 1234 ",
    };
    enum { MB = 1 << 20 };
    char *in = malloc(MB), *out = malloc(REDACT_MAX_OUT(MB) + 1);
    if (!in || !out) {
        CHECK(0);
        free(in);
        free(out);
        return;
    }
    /* a bound that catches quadratic work (hours on 1 MB), not a speed target (bench/) */
    double limit = 1.0;
#if defined(__SANITIZE_ADDRESS__)
    limit = 5.0; /* ASan + UBSan slow the scan several times */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    limit = 5.0;
#endif
#endif
    double worst = 0;
    const char *worst_piece = "";
    for (size_t p = 0; p <= SOV_ARRAY_LEN_T(pieces); p++) {
        if (p < SOV_ARRAY_LEN_T(pieces)) {
            const size_t n = strlen(pieces[p]);
            for (size_t i = 0; i < MB; i++)
                in[i] = pieces[p][i % n];
            if (pieces[p][0] == 'a' && n == 8) in[MB - 1] = '@'; /* one '@' after 1 MB of local part */
        } else {                                                 /* random bytes */
            test_rng rng = {42};
            for (size_t i = 0; i < MB; i++)
                in[i] = (char)(test_rng_next(&rng) >> 56);
        }
        const double t0 = now_s();
        redact_text(ALL, in, MB, out, REDACT_MAX_OUT(MB) + 1, NULL);
        const double t = now_s() - t0;
        const char *name = p < SOV_ARRAY_LEN_T(pieces) ? pieces[p] : "(random bytes)";
        CHECK_MSG(t < limit, "1 MB of '%s' took %.3f s", name, t);
        if (t > worst) worst = t, worst_piece = name;
    }
    fprintf(stderr, "  %zu adversarial 1 MB inputs; slowest '%s': %.1f ms (%.0f MB/s)\n",
            SOV_ARRAY_LEN_T(pieces) + 1, worst_piece, worst * 1e3, 1.0 / worst);
    free(in);
    free(out);
}

/* ---- the corpus ---- */

static int placeholders_of(const char *s, redact_kind k) {
    int n = 0;
    const char *ph = redact_placeholder(k);
    for (const char *p = s; (p = strstr(p, ph)); p += strlen(ph))
        n++;
    return n;
}

static bool valid_utf8(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        const int n = *p < 0x80             ? 1
                      : (*p & 0xE0) == 0xC0 ? 2
                      : (*p & 0xF0) == 0xE0 ? 3
                      : (*p & 0xF8) == 0xF0 ? 4
                                            : 0;
        if (!n) return false;
        for (int k = 1; k < n; k++)
            if ((p[k] & 0xC0) != 0x80) return false;
        p += n;
    }
    return true;
}

static void corpus_precision_and_recall(void) {
    char path[1024];
    const char *dir = getenv("SOV_TEST_DATA");
    snprintf(path, sizeof path, "%s/redact/corpus.json", dir ? dir : "tests");
    json_error_t jerr;
    json_t *cases = json_load_file(path, 0, &jerr);
    CHECK_MSG(json_is_array(cases), "%s: %s (line %d)", path, jerr.text, jerr.line);
    if (!json_is_array(cases)) return;
    long tp[REDACT_KIND_COUNT] = {0}, fp[REDACT_KIND_COUNT] = {0}, fn[REDACT_KIND_COUNT] = {0};
    int n_cases = 0, n_exact = 0, n_limits = 0, near_misses = 0;
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *in = json_string_value(json_object_get(c, "in"));
        const char *want = json_string_value(json_object_get(c, "out"));
        const bool limitation = json_object_get(c, "limitation") != NULL;
        CHECK_MSG(in && want, "corpus case %zu needs 'in' and 'out'", i);
        if (!in || !want) continue;
        size_t n;
        char *got = redact_dup(ALL, in, strlen(in), &n, NULL);
        if (!got) continue;
        n_cases++;
        n_limits += limitation;
        near_misses += strcmp(in, want) == 0;
        if (strcmp(got, want) == 0)
            n_exact++;
        else if (!limitation)
            CHECK_MSG(0, "corpus case %zu:\n    in   %s\n    got  %s\n    want %s", i, in, got, want);
        if (limitation && strcmp(got, want) == 0)
            fprintf(stderr, "  note: limitation case %zu now passes; move it out of the limitations\n", i);
        CHECK_MSG(valid_utf8(got), "case %zu: output is not UTF-8", i);
        for (int k = 0; k < REDACT_KIND_COUNT; k++) {
            const int e = placeholders_of(want, (redact_kind)k), g = placeholders_of(got, (redact_kind)k);
            const int hit = e < g ? e : g;
            tp[k] += hit;
            fp[k] += g - hit;
            fn[k] += e - hit;
        }
        free(got);
    }
    json_decref(cases);
    long TP = 0, FP = 0, FN = 0;
    fprintf(stderr, "  corpus: %d cases (%d with nothing to find, %d known limitations), %d exact\n", n_cases,
            near_misses, n_limits, n_exact);
    fprintf(stderr, "  kind   findings  TP  FP  FN  precision  recall\n");
    for (int k = 0; k < REDACT_KIND_COUNT; k++) {
        TP += tp[k], FP += fp[k], FN += fn[k];
        fprintf(stderr, "  %-6s %8ld %3ld %3ld %3ld  %9.3f  %6.3f\n", redact_kind_name((redact_kind)k),
                tp[k] + fn[k], tp[k], fp[k], fn[k],
                tp[k] + fp[k] ? (double)tp[k] / (double)(tp[k] + fp[k]) : 1.0,
                tp[k] + fn[k] ? (double)tp[k] / (double)(tp[k] + fn[k]) : 1.0);
    }
    const double precision = (double)TP / (double)(TP + FP), recall = (double)TP / (double)(TP + FN);
    fprintf(stderr, "  all    %8ld %3ld %3ld %3ld  %9.3f  %6.3f\n", TP + FN, TP, FP, FN, precision, recall);
    CHECK(n_cases >= 100 && TP >= 120 && near_misses >= 40);
    /* floors against regressions (the exact outputs above are the real check) */
    CHECK_MSG(precision >= 0.95 && recall >= 0.93, "precision %.3f, recall %.3f", precision, recall);
}

int main(void) {
    RUN(emails);
    RUN(phones);
    RUN(rrns);
    RUN(cards);
    RUN(ips);
    RUN(korean_text_survives_byte_for_byte);
    RUN(only_the_asked_kinds);
    RUN(output_is_cut_like_snprintf);
    RUN(counts_add_up);
    RUN(invariants_on_random_text);
    RUN(adversarial_megabyte_is_linear);
    RUN(corpus_precision_and_recall);
    TEST_EXIT();
}
