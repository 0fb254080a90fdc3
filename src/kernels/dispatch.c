/* dispatch.c - picks the kernel table once from what the CPU reports.
 *
 * x86: cpuid via the compiler's __builtin_cpu_supports (which also checks that the OS
 * saves the wide registers). Arm: getauxval(AT_HWCAP) for asimd and asimddp. SOV_ISA
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

/* Tables compiled only on their architecture; weak so a missing one reads as NULL. */
extern const sov_kernels sov_kernels_avx2 __attribute__((weak));
extern const sov_kernels sov_kernels_avx512 __attribute__((weak));
extern const sov_kernels sov_kernels_neon __attribute__((weak));
extern const sov_kernels sov_kernels_neon_dotprod __attribute__((weak));

static const char *const names[] = {"scalar", "avx2", "avx512", "neon", "neon_dotprod", NULL};

const char *const *sov_kernels_names(void) { return names; }

static bool cpu_has(const char *isa) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (strcmp(isa, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
    if (strcmp(isa, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
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

const sov_kernels *sov_kernels_by_name(const char *isa) {
    if (strcmp(isa, "scalar") == 0) return &sov_kernels_scalar;
    const sov_kernels *k = NULL;
    if (strcmp(isa, "avx2") == 0) k = &sov_kernels_avx2;
    else if (strcmp(isa, "avx512") == 0) k = &sov_kernels_avx512;
    else if (strcmp(isa, "neon") == 0) k = &sov_kernels_neon;
    else if (strcmp(isa, "neon_dotprod") == 0) k = &sov_kernels_neon_dotprod;
    if (!k || !cpu_has(isa)) return NULL;
    return k;
}

static const sov_kernels *best(void) {
    static const char *const order[] = {"avx512", "avx2", "neon_dotprod", "neon"};
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
