/* test.h - the few macros every C test uses.
 *
 * A test file is a main() that calls RUN(fn) for each behaviour it specifies; a failed
 * CHECK prints file:line and the condition and marks the test failed, the test goes on.
 * The process exits 0 when all passed, 1 when any failed, 77 (CTest "skipped") via
 * SKIP(). Helpers here find the shared models and a scratch folder. */
#ifndef SOV_TEST_H
#define SOV_TEST_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int test_failures_;
static int test_checks_;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        test_checks_++;                                                                \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
            test_failures_++;                                                          \
        }                                                                              \
    } while (0)

#define CHECK_MSG(cond, ...)                                                           \
    do {                                                                               \
        test_checks_++;                                                                \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
            test_failures_++;                                                          \
        }                                                                              \
    } while (0)

#define CHECK_EQ(a, b)                                                                 \
    do {                                                                               \
        long long a_ = (long long)(a), b_ = (long long)(b);                            \
        test_checks_++;                                                                \
        if (a_ != b_) {                                                                \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n",         \
                    __FILE__, __LINE__, #a, a_, #b, b_);                               \
            test_failures_++;                                                          \
        }                                                                              \
    } while (0)

#define CHECK_STREQ(a, b)                                                              \
    do {                                                                               \
        const char *a_ = (a), *b_ = (b);                                               \
        test_checks_++;                                                                \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                       \
            fprintf(stderr, "%s:%d: CHECK_STREQ failed: \"%s\" != \"%s\"\n", __FILE__, \
                    __LINE__, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                 \
            test_failures_++;                                                          \
        }                                                                              \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                          \
    do {                                                                               \
        double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);                 \
        test_checks_++;                                                                \
        if (!(fabs(a_ - b_) <= t_)) {                                                  \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.9g, %s = %.9g, tol %.3g\n", \
                    __FILE__, __LINE__, #a, a_, #b, b_, t_);                           \
            test_failures_++;                                                          \
        }                                                                              \
    } while (0)

#define RUN(fn)                                                                        \
    do {                                                                               \
        int before_ = test_failures_;                                                  \
        fn();                                                                          \
        fprintf(stderr, "%s %s\n", test_failures_ == before_ ? "ok  " : "FAIL", #fn);  \
    } while (0)

#define TEST_EXIT()                                                                    \
    do {                                                                               \
        fprintf(stderr, "%d checks, %d failed\n", test_checks_, test_failures_);       \
        return test_failures_ ? 1 : 0;                                                 \
    } while (0)

#define SKIP(...)                                                                      \
    do {                                                                               \
        fprintf(stderr, "SKIP: ");                                                     \
        fprintf(stderr, __VA_ARGS__);                                                  \
        fputc('\n', stderr);                                                           \
        exit(77);                                                                      \
    } while (0)

/* Path of a file in ../shared/models, or NULL (after a message) when that folder is
 * absent. With SOV_REQUIRE_SHARED=1 (CI) an absent file is a failure, not a skip. */
static inline const char *test_shared_model(const char *rel, char *buf, size_t cap) {
    const char *dir = getenv("SOV_SHARED_MODELS");
    struct stat st;
    snprintf(buf, cap, "%s/%s", dir ? dir : "../shared/models", rel);
    if (stat(buf, &st) == 0) return buf;
    const char *req = getenv("SOV_REQUIRE_SHARED");
    if (req && req[0] == '1') {
        fprintf(stderr, "FAIL: required shared model %s is missing\n", buf);
        exit(1);
    }
    return NULL;
}

/* A scratch folder for files a test writes (created on demand). */
static inline const char *test_tmp_path(const char *name, char *buf, size_t cap) {
    const char *dir = getenv("SOV_TEST_TMP");
    if (!dir) dir = "/tmp";
    mkdir(dir, 0755);
    snprintf(buf, cap, "%s/%s", dir, name);
    return buf;
}

#define SOV_ARRAY_LEN_T(a) (sizeof(a) / sizeof((a)[0]))
#define SOV_MAX_T(a, b) ((a) > (b) ? (a) : (b))

/* Deterministic random numbers for tests (xorshift64*). */
typedef struct { uint64_t s; } test_rng;
static inline uint64_t test_rng_next(test_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ULL;
}
static inline float test_rng_float(test_rng *r) { /* uniform in [-1, 1) */
    return (float)((test_rng_next(r) >> 40) * (1.0 / 8388608.0) - 1.0);
}

#endif
