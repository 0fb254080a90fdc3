/* util.h - small helpers every module uses: overflow-checked size arithmetic, a
 * monotonic clock, min/max. Header-only; nothing here allocates. */
#ifndef SOV_CORE_UTIL_H
#define SOV_CORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SOV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SOV_MAX(a, b) ((a) > (b) ? (a) : (b))
#define SOV_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* a + b and a * b into *out; false (and *out unspecified) on overflow. */
static inline bool sov_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline bool sov_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool sov_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

/* Rounds n up to a multiple of align (a power of two); false on overflow. */
static inline bool sov_align_up_u64(uint64_t n, uint64_t align, uint64_t *out) {
    uint64_t t;
    if (!sov_add_u64(n, align - 1, &t)) return false;
    *out = t & ~(align - 1);
    return true;
}

/* Nanoseconds from a monotonic clock. */
static inline uint64_t sov_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline double sov_now_s(void) { return (double)sov_now_ns() * 1e-9; }

#endif
