/* Half and bfloat16 conversions: every half round-trips exactly, and float -> half
 * agrees with the CPU's F16C instruction (an independent implementation) on every
 * class of input: normals, subnormals, ties, overflow, infinities and NaN. */
#include "test.h"

#include "core/fp16.h"

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("f16c"))) static uint16_t hw_f32_to_half(float f) {
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
__attribute__((target("f16c"))) static float hw_half_to_f32(uint16_t h) { return _cvtsh_ss(h); }
#endif

static void half_roundtrip_is_exact_for_all_halves(void) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = sov_half_to_f32((sov_half)h);
        uint16_t back = sov_f32_to_half(f);
        bool nan = ((h & 0x7c00) == 0x7c00) && (h & 0x3ff);
        if (nan) CHECK((back & 0x7c00) == 0x7c00 && (back & 0x3ff));
        else CHECK_EQ(back, h);
    }
}

static void half_matches_f16c(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("f16c")) {
        fprintf(stderr, "  (no F16C on this CPU: comparison skipped)\n");
        return;
    }
    for (uint32_t h = 0; h < 65536; h++) {
        float a = sov_half_to_f32((sov_half)h), b = hw_half_to_f32((uint16_t)h);
        if (a == a) CHECK(memcmp(&a, &b, 4) == 0);
    }
    test_rng r = {12345};
    int bad = 0;
    for (int i = 0; i < 4000000; i++) {
        uint32_t bits = (uint32_t)test_rng_next(&r);
        /* bias toward the interesting exponent range of halves */
        if (i & 1) bits = (bits & 0x80000000u) | (0x33000000u + bits % (0x47800000u - 0x33000000u));
        float f;
        memcpy(&f, &bits, 4);
        if (f != f) continue;
        if (sov_f32_to_half(f) != hw_f32_to_half(f)) bad++;
    }
    CHECK_EQ(bad, 0);
#endif
}

static void bf16_rounds_to_nearest_even(void) {
    CHECK_EQ(sov_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ(sov_f32_to_bf16(sov_bits_to_f32(0x3f808000u)), 0x3f80); /* tie, even stays */
    CHECK_EQ(sov_f32_to_bf16(sov_bits_to_f32(0x3f818000u)), 0x3f82); /* tie, odd rounds up */
    CHECK_EQ(sov_f32_to_bf16(sov_bits_to_f32(0x3f808001u)), 0x3f81);
    CHECK(sov_bf16_to_f32(0x4049) == sov_bits_to_f32(0x40490000u));
    uint16_t nan = sov_f32_to_bf16(sov_bits_to_f32(0x7f800001u));
    CHECK((nan & 0x7f80) == 0x7f80 && (nan & 0x7f));
}

int main(void) {
    RUN(half_roundtrip_is_exact_for_all_halves);
    RUN(half_matches_f16c);
    RUN(bf16_rounds_to_nearest_even);
    TEST_EXIT();
}
