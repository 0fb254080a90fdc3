/* bench_redact.c - the redactor's speed: MB/s on realistic mixed Korean/English text
 * (support chats, logs, forms: about one finding per 60 bytes), on prose with nothing to
 * find, and on the slowest adversarial patterns of tests/redact; and 16 MB in one pass
 * against 16 passes of 1 MB, whose ratio shows the pass is linear. Best of -r runs
 * (default 5).
 *
 *   build/bench/bench_redact [-r RUNS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "redact/redact.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* size bytes of the pieces repeated. */
static char *fill(const char *const *pieces, size_t n_pieces, size_t size) {
    char *b = malloc(size);
    if (!b) return NULL;
    size_t at = 0;
    for (size_t k = 0; at < size; k = (k + 1) % n_pieces) {
        const size_t n = strlen(pieces[k]);
        const size_t take = n < size - at ? n : size - at;
        memcpy(b + at, pieces[k], take);
        at += take;
    }
    return b;
}

/* Best time of runs redactions of in[0, size). */
static double best_time(const char *in, size_t size, int runs, redact_counts *c) {
    char *out = malloc(REDACT_MAX_OUT(size) + 1);
    double best = 1e9;
    for (int r = 0; r < runs && out; r++) {
        redact_counts rc = {0};
        const double t0 = now_s();
        redact_text(POLICY_REDACT_ALL, in, size, out, REDACT_MAX_OUT(size) + 1, &rc);
        const double t = now_s() - t0;
        if (t < best) best = t, *c = rc;
    }
    free(out);
    return best;
}

static const char *const mixed[] = {
    "안녕하세요, 배송지 변경 요청드립니다. 연락처는 010-9876-1234, 이메일은 minsu.kim@example.com입니다.\n",
    "2024-01-15T10:30:00Z 203.0.113.7 GET /api/v1/orders?page=2 200 1532 \"Mozilla/5.0\"\n",
    "Hi, I'm locked out. My account email is sarah.connor@example.com and my phone is (212) 555-0173.\n",
    "성명: 김철수 / 주민번호: 770101-1102124 / 연락처: 010-8765-4321 / 주소: 서울시 강남구 테헤란로 123\n",
    "Please charge card 4012 8888 8888 1881 and send the receipt to billing@example.org. Thanks!\n",
    "The quick brown fox jumps over the lazy dog; version 2.14.1 was released on 2024-03-02.\n",
    "회의는 14:30:00에 시작합니다. 자료는 공유 폴더에 있으며, 질문은 슬랙으로 부탁드립니다.\n",
    "Firewall blocked 2001:db8:abcd:12::1 and 198.51.100.23 at 03:12:44 (rule 1042).\n",
};

static const char *const prose[] = {
    "It was a bright cold day in April, and the clocks were striking thirteen. Winston Smith, his chin "
    "nuzzled into his breast in an effort to escape the vile wind, slipped quickly through the glass doors. ",
    "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다. ",
};

int main(int argc, char **argv) {
    int runs = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-r") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_redact [-r RUNS]\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (runs < 1) runs = 1;
    static const char *const adversarial[][1] = {{"4111 "}, {"1 "}, {"a@"}, {"::"}, {"+1 "}, {"f:"}};
    printf("%-34s %8s %10s %9s\n", "input (16 MB unless said)", "ms", "MB/s", "findings");
    struct {
        const char *name;
        const char *const *pieces;
        size_t n;
    } inputs[] = {{"mixed Korean/English with PII", mixed, sizeof mixed / sizeof mixed[0]},
                  {"prose, nothing to find", prose, 2}};
    const size_t MB = 1 << 20;
    for (size_t k = 0; k < 2 + sizeof adversarial / sizeof adversarial[0]; k++) {
        const char *const *pieces = k < 2 ? inputs[k].pieces : adversarial[k - 2];
        const size_t n = k < 2 ? inputs[k].n : 1;
        char *in = fill(pieces, n, 16 * MB);
        if (!in) return 1;
        redact_counts c = {0};
        const double t = best_time(in, 16 * MB, runs, &c);
        unsigned long long found = 0;
        for (int j = 0; j < REDACT_KIND_COUNT; j++)
            found += c.n[j];
        char name[64];
        if (k < 2)
            snprintf(name, sizeof name, "%s", inputs[k].name);
        else
            snprintf(name, sizeof name, "adversarial '%s' repeated", pieces[0]);
        printf("%-34s %8.1f %10.0f %9llu\n", name, t * 1e3, 16.0 / t, found);
        free(in);
    }
    /* linearity: 16 MB in one pass against the same 16 MB as 16 passes of 1 MB (the same
     * memory either way, so caches do not decide): linear work gives a ratio near 1 */
    char *in = fill(mixed, sizeof mixed / sizeof mixed[0], 16 * MB);
    char *out = malloc(REDACT_MAX_OUT(16 * MB) + 1);
    if (!in || !out) return 1;
    double whole = 1e9, pieces = 1e9;
    for (int r = 0; r < runs; r++) {
        double t0 = now_s();
        redact_text(POLICY_REDACT_ALL, in, 16 * MB, out, REDACT_MAX_OUT(16 * MB) + 1, NULL);
        const double t_whole = now_s() - t0;
        t0 = now_s();
        for (size_t k = 0; k < 16; k++)
            redact_text(POLICY_REDACT_ALL, in + k * MB, MB, out, REDACT_MAX_OUT(MB) + 1, NULL);
        const double t_pieces = now_s() - t0;
        if (t_whole < whole) whole = t_whole;
        if (t_pieces < pieces) pieces = t_pieces;
    }
    printf("linearity (mixed): 16 MB in one pass %.1f ms, as 16 x 1 MB %.1f ms: ratio %.2f (linear: 1)\n",
           whole * 1e3, pieces * 1e3, whole / pieces);
    free(in);
    free(out);
    return 0;
}
