/* fp16.h - IEEE half and bfloat16 <-> float conversions, scalar and exact.
 *
 * half -> float is exact (every half is a float). float -> half rounds to nearest,
 * ties to even, with overflow to infinity and NaN kept NaN, as IEEE 754 and the F16C
 * instruction vcvtps2ph (imm 0) do. bf16 is the top half of a float; float -> bf16
 * rounds to nearest even and keeps NaN quiet (as PyTorch and ggml do). */
#ifndef SOV_CORE_FP16_H
#define SOV_CORE_FP16_H

#include <stdint.h>
#include <string.h>

typedef uint16_t sov_half;
typedef uint16_t sov_bf16;

static inline float sov_bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline uint32_t sov_f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float sov_half_to_f32(sov_half h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in float */
        float v = (float)man * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    if (exp == 31) return sov_bits_to_f32(sign | 0x7f800000u | (man << 13));
    return sov_bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline sov_half sov_f32_to_half(float f) {
    const uint32_t x = sov_f32_to_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) { /* inf or NaN */
        return (sov_half)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0));
    }
    if (ax >= 0x477ff000u) return (sov_half)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (ax < 0x38800000u) {
        /* result is subnormal or zero: round ax * 2^24 to an integer, ties to even */
        if (ax < 0x33000000u) return (sov_half)sign; /* below half of the smallest subnormal */
        const uint32_t e = ax >> 23;
        const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126u - e; /* 14..24 */
        uint32_t q = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1u);
        const uint32_t halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (q & 1u))) q++;
        return (sov_half)(sign | q);
    }
    /* normal: rebias exponent, round mantissa 23 -> 10 bits, ties to even */
    uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u);
    r -= 0x38000000u; /* (127 - 15) << 23 */
    return (sov_half)(sign | (r >> 13));
}

static inline float sov_bf16_to_f32(sov_bf16 b) { return sov_bits_to_f32((uint32_t)b << 16); }

static inline sov_bf16 sov_f32_to_bf16(float f) {
    uint32_t u = sov_f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (sov_bf16)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (sov_bf16)(u >> 16);
}

#endif
