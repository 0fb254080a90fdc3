/* dispatch.c - picks the kernel table once from what the CPU reports.
 *
 * x86: cpuid leaves 1 and 7 plus xgetbv (the OS must save the wide registers). Arm: getauxval(AT_HWCAP) for asimd and asimddp. SOV_ISA
 * overrides the choice for tests and benchmarks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

#if defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

/* Tables compiled only on their architecture (strong references, so that the linker
 * takes their objects out of the static library). */
#if defined(__x86_64__)
extern const sov_kernels sov_kernels_avx2;
extern const sov_kernels sov_kernels_avx512;
extern const sov_kernels sov_kernels_avx512_vnni;
#elif defined(__aarch64__)
extern const sov_kernels sov_kernels_neon;
extern const sov_kernels sov_kernels_neon_dotprod;
#endif

static const char *const names[] = {"scalar", "avx2", "avx512", "avx512_vnni", "neon", "neon_dotprod", NULL};

const char *const *sov_kernels_names(void) { return names; }

#if defined(__x86_64__)
#include <cpuid.h>

/* Feature bits from cpuid leaves 1 and 7, and whether the OS saves the YMM (and ZMM)
 * state (xgetbv), without which the instructions fault. */
typedef struct x86_features {
    bool avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512dq, avx512vnni, avx512bf16;
} x86_features;

static x86_features x86_detect(void) {
    x86_features f = {0};
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    const bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    f.fma = (c >> 12) & 1;
    f.f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return (x86_features){0};
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    const bool ymm = (xlo & 0x6) == 0x6, zmm = (xlo & 0xe6) == 0xe6;
    if (!ymm) return (x86_features){0};
    if (__get_cpuid_max(0, NULL) < 7) return f;
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = (b >> 5) & 1;
    if (zmm) {
        f.avx512f = (b >> 16) & 1;
        f.avx512dq = (b >> 17) & 1;
        f.avx512bw = (b >> 30) & 1;
        f.avx512vl = (b >> 31) & 1;
        f.avx512vnni = (c >> 11) & 1;
        __cpuid_count(7, 1, a, b, c, d);
        f.avx512bf16 = (a >> 5) & 1;
    }
    return f;
}
#endif

static bool cpu_has(const char *isa) {
#if defined(__x86_64__)
    const x86_features f = x86_detect();
    const bool avx2 = f.avx2 && f.fma && f.f16c;
    if (strcmp(isa, "avx2") == 0) return avx2;
    const bool avx512 = avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
    if (strcmp(isa, "avx512") == 0) return avx512;
    /* vpdpbusd on ymm registers: AVX512_VNNI with AVX512VL (checked above) */
    if (strcmp(isa, "avx512_vnni") == 0) return avx512 && f.avx512vnni;
    return false;
#elif defined(__aarch64__)
    unsigned long hw = getauxval(AT_HWCAP);
    if (strcmp(isa, "neon") == 0) return true; /* baseline on AArch64 */
    if (strcmp(isa, "neon_dotprod") == 0) return (hw & HWCAP_ASIMDDP) != 0;
    return false;
#else
    (void)isa;
    return false;
#endif
}

bool sov_cpu_has_avx512_vnni(void) {
#if defined(__x86_64__)
    return x86_detect().avx512vnni;
#else
    return false;
#endif
}

void sov_cpu_features(char *out, size_t cap) {
    if (!cap) return;
    out[0] = '\0';
#if defined(__x86_64__)
    const x86_features f = x86_detect();
    const struct {
        const char *name;
        bool have;
    } list[] = {{"avx2", f.avx2},         {"fma", f.fma},           {"f16c", f.f16c},
                {"avx512f", f.avx512f},   {"avx512bw", f.avx512bw}, {"avx512vl", f.avx512vl},
                {"avx512dq", f.avx512dq}, {"avx512vnni", f.avx512vnni}, {"avx512bf16", f.avx512bf16}};
    size_t n = 0;
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        if (list[i].have && n < cap) {
            const int w = snprintf(out + n, cap - n, " %s", list[i].name);
            if (w > 0) n += (size_t)w;
        }
#elif defined(__aarch64__)
    snprintf(out, cap, " neon");
#endif
}

const sov_kernels *sov_kernels_by_name(const char *isa) {
    if (strcmp(isa, "scalar") == 0) return &sov_kernels_scalar;
    const sov_kernels *k = NULL;
#if defined(__x86_64__)
    if (strcmp(isa, "avx2") == 0) k = &sov_kernels_avx2;
    else if (strcmp(isa, "avx512") == 0) k = &sov_kernels_avx512;
    else if (strcmp(isa, "avx512_vnni") == 0) k = &sov_kernels_avx512_vnni;
#elif defined(__aarch64__)
    if (strcmp(isa, "neon") == 0) k = &sov_kernels_neon;
    else if (strcmp(isa, "neon_dotprod") == 0) k = &sov_kernels_neon_dotprod;
#endif
    if (!k || !cpu_has(isa)) return NULL;
    return k;
}

static const sov_kernels *best(void) {
    static const char *const order[] = {"avx512_vnni", "avx512", "avx2", "neon_dotprod", "neon"};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const sov_kernels *k = sov_kernels_by_name(order[i]);
        if (k) return k;
    }
    return &sov_kernels_scalar;
}

const sov_kernels *sov_kernels_select(void) {
    const char *env = getenv("SOV_ISA");
    if (env && *env) {
        const sov_kernels *k = sov_kernels_by_name(env);
        if (k) return k;
        const sov_kernels *b = best();
        fprintf(stderr, "sov: SOV_ISA=%s is not available on this CPU or build; using %s\n", env, b->isa);
        return b;
    }
    return best();
}

bool sov_kernels_prefers_planar(const sov_kernels *k, sov_type type) {
    /* the scalar table computes planar types too (as the reference), but gains nothing
     * from them; SIMD tables that have a planar kernel want the repack */
    const int p = sov_planar_type(type);
    return p >= 0 && k != &sov_kernels_scalar && k->vec_dot[p] != NULL;
}
