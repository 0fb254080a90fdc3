/* neon_impl.h - the AArch64 NEON kernels, included by kernels_neon.c (baseline ARMv8-A)
 * and kernels_neon_dotprod.c (ARMv8.2 dot product, vdotq_s32). The two files differ
 * only in SOV_NEON_DOTPROD, which selects how 16 int8 x int8 products are summed into
 * four int32 lanes; everything else is shared.
 *
 * Weights are unpacked to signed int8 (the format's offset subtracted: q4_0 - 8, q5_0
 * - 16, q6_K - 32; the unsigned nibbles of q4_1/q4_K/q5_K fit int8 as they are) and
 * multiplied with the int8 activations; block and sub-block scales are applied in int32
 * or float as in the scalar reference. */
#ifndef SOV_KERNELS_NEON_IMPL_H
#define SOV_KERNELS_NEON_IMPL_H

#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/scalar_quant.h"
#include "kernels/kv_quant_impl.h"

/* acc + sum of products of 16 int8 pairs, as four int32 lanes */
static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if SOV_NEON_DOTPROD
    return vdotq_s32(acc, a, b);
#else
    /* |a*b| <= 128*127, so two products fit in int16 */
    int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    p = vmlal_s8(p, vget_high_s8(a), vget_high_s8(b));
    return vpadalq_s16(acc, p);
#endif
}

static inline float h2f(uint16_t h) {
    __fp16 x;
    memcpy(&x, &h, 2);
    return (float)x;
}

/* ---- 32-blocks against Q8A ---- */

static float NAME(dot_q4_0)(int64_t n, const void *vw, const void *va) {
    const block_q4_0 *w = vw;
    const block_q8a *a = va;
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    const int8x16_t s8 = vdupq_n_s8(8);
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < n / QK; i++) {
        const uint8x16_t q = vld1q_u8(w[i].qs);
        const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, m4)), s8);
        const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), s8);
        int32x4_t p = dot16(vdupq_n_s32(0), lo, vld1q_s8(a[i].qs));
        p = dot16(p, hi, vld1q_s8(a[i].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(w[i].d) * a[i].d);
    }
    return vaddvq_f32(acc);
}

static float NAME(dot_q4_1)(int64_t n, const void *vw, const void *va) {
    const block_q4_1 *w = vw;
    const block_q8a *a = va;
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    float32x4_t acc = vdupq_n_f32(0.0f);
    float mins = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        const uint8x16_t q = vld1q_u8(w[i].qs);
        int32x4_t p = dot16(vdupq_n_s32(0), vreinterpretq_s8_u8(vandq_u8(q, m4)), vld1q_s8(a[i].qs));
        p = dot16(p, vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), vld1q_s8(a[i].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(w[i].d) * a[i].d);
        mins += h2f(w[i].m) * a[i].s;
    }
    return vaddvq_f32(acc) + mins;
}

/* The fifth bit of each of the 32 values of a q5 block (bit j of qh for value j), as
 * 0x10 bytes: two vectors of 16. */
static inline void q5_high_bits(const uint8_t *qh, uint8x16_t *lo, uint8x16_t *hi) {
    uint32_t bits;
    memcpy(&bits, qh, 4);
    static const uint8_t sel[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t mask = vld1q_u8(sel);
    const uint8x8_t b0 = vdup_n_u8((uint8_t)bits), b1 = vdup_n_u8((uint8_t)(bits >> 8));
    const uint8x8_t b2 = vdup_n_u8((uint8_t)(bits >> 16)), b3 = vdup_n_u8((uint8_t)(bits >> 24));
    const uint8x16_t v01 = vcombine_u8(b0, b1), v23 = vcombine_u8(b2, b3);
    *lo = vandq_u8(vtstq_u8(v01, mask), vdupq_n_u8(0x10));
    *hi = vandq_u8(vtstq_u8(v23, mask), vdupq_n_u8(0x10));
}

static float NAME(dot_q5_0)(int64_t n, const void *vw, const void *va) {
    const block_q5_0 *w = vw;
    const block_q8a *a = va;
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    const int8x16_t s16 = vdupq_n_s8(16);
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < n / QK; i++) {
        uint8x16_t hl, hh;
        q5_high_bits(w[i].qh, &hl, &hh);
        const uint8x16_t q = vld1q_u8(w[i].qs);
        const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, m4), hl)), s16);
        const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q, 4), hh)), s16);
        int32x4_t p = dot16(vdupq_n_s32(0), lo, vld1q_s8(a[i].qs));
        p = dot16(p, hi, vld1q_s8(a[i].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(w[i].d) * a[i].d);
    }
    return vaddvq_f32(acc);
}

static float NAME(dot_q5_1)(int64_t n, const void *vw, const void *va) {
    const block_q5_1 *w = vw;
    const block_q8a *a = va;
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    float32x4_t acc = vdupq_n_f32(0.0f);
    float mins = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        uint8x16_t hl, hh;
        q5_high_bits(w[i].qh, &hl, &hh);
        const uint8x16_t q = vld1q_u8(w[i].qs);
        const int8x16_t lo = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, m4), hl));
        const int8x16_t hi = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q, 4), hh));
        int32x4_t p = dot16(vdupq_n_s32(0), lo, vld1q_s8(a[i].qs));
        p = dot16(p, hi, vld1q_s8(a[i].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(w[i].d) * a[i].d);
        mins += h2f(w[i].m) * a[i].s;
    }
    return vaddvq_f32(acc) + mins;
}

static float NAME(dot_q8_0)(int64_t n, const void *vw, const void *va) {
    const block_q8_0 *w = vw;
    const block_q8a *a = va;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < n / QK; i++) {
        int32x4_t p = dot16(vdupq_n_s32(0), vld1q_s8(w[i].qs), vld1q_s8(a[i].qs));
        p = dot16(p, vld1q_s8(w[i].qs + 16), vld1q_s8(a[i].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(w[i].d) * a[i].d);
    }
    return vaddvq_f32(acc);
}

/* ---- k-quants against Q8K ---- */

/* sum over 32 values of unsigned 4/5-bit weights (as int8) times activations */
static inline int32_t dot32(int8x16_t w0, int8x16_t w1, const int8_t *a) {
    int32x4_t p = dot16(vdupq_n_s32(0), w0, vld1q_s8(a));
    p = dot16(p, w1, vld1q_s8(a + 16));
    return vaddvq_s32(p);
}

static float NAME(dot_q4_K)(int64_t n, const void *vw, const void *va) {
    const block_q4_K *w = vw;
    const block_q8k *a = va;
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(w[i].d) * a[i].d, dmin = h2f(w[i].dmin) * a[i].d;
        int32_t sumi = 0, summ = 0;
        for (int j = 0; j < 4; j++) {
            uint8_t sc0, m0, sc1, m1;
            sov_k_scale_min(2 * j, w[i].scales, &sc0, &m0);
            sov_k_scale_min(2 * j + 1, w[i].scales, &sc1, &m1);
            const uint8x16_t q0 = vld1q_u8(w[i].qs + 32 * j), q1 = vld1q_u8(w[i].qs + 32 * j + 16);
            const int32_t lo = dot32(vreinterpretq_s8_u8(vandq_u8(q0, m4)), vreinterpretq_s8_u8(vandq_u8(q1, m4)),
                                     a[i].qs + 64 * j);
            const int32_t hi = dot32(vreinterpretq_s8_u8(vshrq_n_u8(q0, 4)), vreinterpretq_s8_u8(vshrq_n_u8(q1, 4)),
                                     a[i].qs + 64 * j + 32);
            sumi += sc0 * lo + sc1 * hi;
            summ += m0 * (a[i].bsums[4 * j] + a[i].bsums[4 * j + 1]) + m1 * (a[i].bsums[4 * j + 2] + a[i].bsums[4 * j + 3]);
        }
        sum += d * (float)sumi - dmin * (float)summ;
    }
    return sum;
}

static float NAME(dot_q5_K)(int64_t n, const void *vw, const void *va) {
    const block_q5_K *w = vw;
    const block_q8k *a = va;
    const uint8x16_t m4 = vdupq_n_u8(0x0f), one = vdupq_n_u8(1);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(w[i].d) * a[i].d, dmin = h2f(w[i].dmin) * a[i].d;
        const uint8x16_t h0 = vld1q_u8(w[i].qh), h1 = vld1q_u8(w[i].qh + 16);
        int32_t sumi = 0, summ = 0;
        for (int j = 0; j < 4; j++) {
            uint8_t sc0, m0, sc1, m1;
            sov_k_scale_min(2 * j, w[i].scales, &sc0, &m0);
            sov_k_scale_min(2 * j + 1, w[i].scales, &sc1, &m1);
            const int8x16_t shl = vdupq_n_s8((int8_t)(-2 * j)), shh = vdupq_n_s8((int8_t)(-2 * j - 1));
            /* bit 2j (low half) and 2j+1 (high half) of qh, moved to 0x10 */
            const uint8x16_t bl0 = vshlq_n_u8(vandq_u8(vshlq_u8(h0, shl), one), 4);
            const uint8x16_t bl1 = vshlq_n_u8(vandq_u8(vshlq_u8(h1, shl), one), 4);
            const uint8x16_t bh0 = vshlq_n_u8(vandq_u8(vshlq_u8(h0, shh), one), 4);
            const uint8x16_t bh1 = vshlq_n_u8(vandq_u8(vshlq_u8(h1, shh), one), 4);
            const uint8x16_t q0 = vld1q_u8(w[i].qs + 32 * j), q1 = vld1q_u8(w[i].qs + 32 * j + 16);
            const int32_t lo = dot32(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q0, m4), bl0)),
                                     vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q1, m4), bl1)), a[i].qs + 64 * j);
            const int32_t hi = dot32(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q0, 4), bh0)),
                                     vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q1, 4), bh1)), a[i].qs + 64 * j + 32);
            sumi += sc0 * lo + sc1 * hi;
            summ += m0 * (a[i].bsums[4 * j] + a[i].bsums[4 * j + 1]) + m1 * (a[i].bsums[4 * j + 2] + a[i].bsums[4 * j + 3]);
        }
        sum += d * (float)sumi - dmin * (float)summ;
    }
    return sum;
}

static float NAME(dot_q6_K)(int64_t n, const void *vw, const void *va) {
    const block_q6_K *w = vw;
    const block_q8k *a = va;
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m2 = vdupq_n_u8(3);
    const int8x16_t s32 = vdupq_n_s8(32);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(w[i].d) * a[i].d;
        const uint8_t *ql = w[i].ql, *qh = w[i].qh;
        const int8_t *sc = w[i].scales, *q8 = a[i].qs;
        int32_t sumi = 0;
        for (int c = 0; c < 2; c++, ql += 64, qh += 32, q8 += 128, sc += 8) {
            for (int h = 0; h < 2; h++) { /* the two halves of 16 of each group of 32 */
                const uint8x16_t l0 = vld1q_u8(ql + 16 * h), l1 = vld1q_u8(ql + 32 + 16 * h);
                const uint8x16_t hb = vld1q_u8(qh + 16 * h);
                const int8x16_t q1 = vsubq_s8(
                    vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8(vandq_u8(hb, m2), 4))), s32);
                const int8x16_t q2 = vsubq_s8(
                    vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l1, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 2), m2), 4))), s32);
                const int8x16_t q3 = vsubq_s8(
                    vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 4), m2), 4))), s32);
                const int8x16_t q4 = vsubq_s8(
                    vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l1, 4), vshlq_n_u8(vshrq_n_u8(hb, 6), 4))), s32);
                sumi += sc[0 + h] * vaddvq_s32(dot16(vdupq_n_s32(0), q1, vld1q_s8(q8 + 16 * h)));
                sumi += sc[2 + h] * vaddvq_s32(dot16(vdupq_n_s32(0), q2, vld1q_s8(q8 + 32 + 16 * h)));
                sumi += sc[4 + h] * vaddvq_s32(dot16(vdupq_n_s32(0), q3, vld1q_s8(q8 + 64 + 16 * h)));
                sumi += sc[6 + h] * vaddvq_s32(dot16(vdupq_n_s32(0), q4, vld1q_s8(q8 + 96 + 16 * h)));
            }
        }
        sum += d * (float)sumi;
    }
    return sum;
}

/* ---- float rows ---- */

static float NAME(dot_f32)(const float *x, const float *y, int64_t n) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

static inline float32x4_t load_f16(const sov_half *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

static float NAME(dot_f16)(const sov_half *x, const float *y, int64_t n) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, load_f16(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, load_f16(x + i + 4), vld1q_f32(y + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++) s += h2f(x[i]) * y[i];
    return s;
}

static float NAME(dot_bf16_w)(int64_t n, const void *vw, const void *va) {
    const sov_bf16 *x = vw;
    const float *y = va;
    float32x4_t a0 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t wv = vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(x + i), 16));
        a0 = vfmaq_f32(a0, wv, vld1q_f32(y + i));
    }
    float s = vaddvq_f32(a0);
    for (; i < n; i++) s += sov_bf16_to_f32(x[i]) * y[i];
    return s;
}

static float NAME(dot_f32_w)(int64_t n, const void *w, const void *a) { return NAME(dot_f32)(w, a, n); }
static float NAME(dot_f16_w)(int64_t n, const void *w, const void *a) { return NAME(dot_f16)(w, a, n); }

#define NEON_GEMM_VIA_DOT(name, dot)                                                             \
    static void name(int64_t n, const void *w, size_t ldw, int nr, const void *a, size_t lda,     \
                     int nc, float *y, size_t ldy) {                                              \
        for (int c = 0; c < nc; c++)                                                              \
            for (int r = 0; r < nr; r++)                                                          \
                y[(size_t)c * ldy + (size_t)r] =                                                  \
                    dot(n, (const char *)w + (size_t)r * ldw, (const char *)a + (size_t)c * lda); \
    }

NEON_GEMM_VIA_DOT(NAME(gemm_f32), NAME(dot_f32_w))
NEON_GEMM_VIA_DOT(NAME(gemm_f16), NAME(dot_f16_w))
NEON_GEMM_VIA_DOT(NAME(gemm_bf16), NAME(dot_bf16_w))
NEON_GEMM_VIA_DOT(NAME(gemm_q4_0), NAME(dot_q4_0))
NEON_GEMM_VIA_DOT(NAME(gemm_q4_1), NAME(dot_q4_1))
NEON_GEMM_VIA_DOT(NAME(gemm_q5_0), NAME(dot_q5_0))
NEON_GEMM_VIA_DOT(NAME(gemm_q5_1), NAME(dot_q5_1))
NEON_GEMM_VIA_DOT(NAME(gemm_q8_0), NAME(dot_q8_0))
NEON_GEMM_VIA_DOT(NAME(gemm_q4_K), NAME(dot_q4_K))
NEON_GEMM_VIA_DOT(NAME(gemm_q5_K), NAME(dot_q5_K))
NEON_GEMM_VIA_DOT(NAME(gemm_q6_K), NAME(dot_q6_K))

/* ---- activation quantizers (bit-identical with scalar: vcvtnq rounds half to even) ---- */

static inline float amax_f32(const float *x, int n) {
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int j = 0; j < n; j += 4) m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + j)));
    return vmaxvq_f32(m);
}

/* 16 floats times id, rounded half to even, as int8 */
static inline int8x16_t round16(const float *x, float id) {
    const int32x4_t i0 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x), id));
    const int32x4_t i1 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 4), id));
    const int32x4_t i2 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 8), id));
    const int32x4_t i3 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 12), id));
    const int16x8_t a = vcombine_s16(vqmovn_s32(i0), vqmovn_s32(i1));
    const int16x8_t b = vcombine_s16(vqmovn_s32(i2), vqmovn_s32(i3));
    return vcombine_s8(vqmovn_s16(a), vqmovn_s16(b));
}

static void NAME(quantize_q8a)(const float *x, void *vy, int64_t n) {
    block_q8a *y = vy;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        const float d = amax_f32(x, QK) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const int8x16_t q0 = round16(x, id), q1 = round16(x + 16, id);
        vst1q_s8(y[i].qs, q0);
        vst1q_s8(y[i].qs + 16, q1);
        const int sum = vaddlvq_s8(q0) + vaddlvq_s8(q1);
        y[i].d = d;
        y[i].s = d * (float)sum;
    }
}

static void NAME(quantize_q8k)(const float *x, void *vy, int64_t n) {
    block_q8k *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const float d = amax_f32(x, QK_K) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < QK_K; j += 16) {
            const int8x16_t q = round16(x + j, id);
            vst1q_s8(y[i].qs + j, q);
            y[i].bsums[j / 16] = (int16_t)vaddlvq_s8(q);
        }
        y[i].d = d;
    }
}

/* ---- float ops ---- */

/* e^x, as the AVX2 version: range reduction by ln2, degree-6 polynomial, 2^n by exponent
 * bits (split in two factors so that both are normal floats). */
static inline float32x4_t exp_f32(float32x4_t x) {
    const float32x4_t hi = vdupq_n_f32(88.7f), lo = vdupq_n_f32(-87.3f);
    const uint32x4_t over = vcgtq_f32(x, hi), under = vcltq_f32(x, lo);
    x = vminq_f32(vmaxq_f32(x, lo), hi);
    const float32x4_t nf = vrndnq_f32(vmulq_n_f32(x, 1.44269504f));
    float32x4_t r = vfmsq_n_f32(x, nf, 0.693145752f);
    r = vfmsq_n_f32(r, nf, 1.42860677e-6f);
    float32x4_t p = vdupq_n_f32(1.0f / 720.0f);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    const int32x4_t ni = vcvtq_s32_f32(nf);
    const int32x4_t n1 = vshrq_n_s32(ni, 1), n2 = vsubq_s32(ni, n1);
    const float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, vdupq_n_s32(127)), 23));
    const float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, vdupq_n_s32(127)), 23));
    float32x4_t res = vmulq_f32(vmulq_f32(p, s1), s2);
    res = vbslq_f32(over, vdupq_n_f32(INFINITY), res);
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(res), under));
}

static void NAME(rmsnorm)(float *y, const float *x, const float *w, int64_t n, float eps) {
    float32x4_t acc = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(x + i);
        acc = vfmaq_f32(acc, v, v);
    }
    double ss = vaddvq_f32(acc);
    for (; i < n; i++) ss += (double)x[i] * x[i];
    const float inv = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), inv), vld1q_f32(w + i)));
    for (; i < n; i++) y[i] = x[i] * inv * w[i];
}

static void NAME(silu_mul)(float *y, const float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t g = vld1q_f32(gate + i);
        const float32x4_t s = vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0f), exp_f32(vnegq_f32(g))));
        vst1q_f32(y + i, vmulq_f32(s, vld1q_f32(up + i)));
    }
    for (; i < n; i++) y[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static void NAME(gelu_mul)(float *y, const float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t g = vld1q_f32(gate + i);
        const float32x4_t g3 = vmulq_f32(vmulq_f32(g, g), g);
        /* -2z = -2 sqrt(2/pi) (g + 0.044715 g^3) */
        const float32x4_t m2z = vmulq_n_f32(vfmaq_n_f32(g, g3, 0.044715f), -2.0f * 0.7978845608f);
        const float32x4_t s = vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0f), exp_f32(m2z)));
        vst1q_f32(y + i, vmulq_f32(s, vld1q_f32(up + i)));
    }
    for (; i < n; i++) {
        const float g = gate[i], z = 0.7978845608f * (g + 0.044715f * g * g * g);
        y[i] = g / (1.0f + expf(-2.0f * z)) * up[i];
    }
}

static void NAME(add)(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vld1q_f32(x + i)));
    for (; i < n; i++) y[i] += x[i];
}

static void NAME(scale)(float *y, float a, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_n_f32(vld1q_f32(y + i), a));
    for (; i < n; i++) y[i] *= a;
}

static void NAME(axpy_f32)(float *y, float a, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
    for (; i < n; i++) y[i] += a * x[i];
}

static void NAME(axpy_f16)(float *y, float a, const sov_half *x, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), load_f16(x + i), a));
    for (; i < n; i++) y[i] += a * h2f(x[i]);
}

static void NAME(f32_to_f16)(sov_half *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++) y[i] = sov_f32_to_half(x[i]);
}

static void NAME(softmax)(float *x, int64_t n) {
    float max = x[0];
    int64_t i = 0;
    if (n >= 4) {
        float32x4_t vm = vld1q_f32(x);
        for (i = 4; i + 4 <= n; i += 4) vm = vmaxq_f32(vm, vld1q_f32(x + i));
        max = vmaxvq_f32(vm);
    }
    for (; i < n; i++) max = x[i] > max ? x[i] : max;
    float32x4_t vs = vdupq_n_f32(0.0f);
    for (i = 0; i + 4 <= n; i += 4) {
        const float32x4_t e = exp_f32(vsubq_f32(vld1q_f32(x + i), vdupq_n_f32(max)));
        vst1q_f32(x + i, e);
        vs = vaddq_f32(vs, e);
    }
    double sum = vaddvq_f32(vs);
    for (; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    NAME(scale)(x, (float)(1.0 / sum), n);
}

/* scores: 4 consecutive positions per vector (K is stored transposed), one head at a time */
#define NEON_ATTN_SCORES(T, LOADK)                                                                \
    static void NAME(attn_scores_##T##_ahead)(float *sc, size_t ldsc, const float *q, int nq, const T##_elt *K, \
                                              int n, int bs, int d, float scale, const T##_elt *ahead) { \
        for (int h = 0; h < nq; h++) {                                                            \
            const float *qh = q + (size_t)h * d;                                                  \
            float *s = sc + (size_t)h * ldsc;                                                     \
            int j = 0;                                                                            \
            for (; j + 4 <= n || (j < n && bs % 4 == 0); j += 4) {                                \
                float32x4_t acc = vdupq_n_f32(0.0f);                                              \
                /* the block ahead (kernels.h) in the first strip, spread over its d steps:   \
                 * step i asks for the lines that start in its bs values' bytes */            \
                const bool pf = ahead && h == 0 && j == 0;                                        \
                for (int i = 0; i < d; i++) {                                                     \
                    if (pf)                                                                       \
                        for (size_t o = ((size_t)i * bs * sizeof *K + 63) / 64 * 64;              \
                             o < (size_t)(i + 1) * bs * sizeof *K; o += 64)                       \
                            __builtin_prefetch((const char *)ahead + o, 0, 3);                    \
                    acc = vfmaq_n_f32(acc, LOADK(K + (size_t)i * bs + j), qh[i]);                 \
                }                                                                                 \
                float r[4];                                                                       \
                vst1q_f32(r, vmulq_n_f32(acc, scale));                                            \
                for (int k = 0; k < 4 && j + k < n; k++) s[j + k] = r[k];                         \
            }                                                                                     \
            for (; j < n; j++) { /* the vector lanes' fused steps: a position's score must not */  \
                float a = 0.0f;  /* depend on whether it fell in a group of 4 (batch invariance) */ \
                for (int i = 0; i < d; i++) a = fmaf(ELT_##T(K[(size_t)i * bs + j]), qh[i], a);  \
                s[j] = scale * a;                                                                 \
            }                                                                                     \
        }                                                                                         \
    }
typedef sov_half f16_elt;
typedef float f32_elt;
#define ELT_f16(x) h2f(x)
#define ELT_f32(x) (x)
NEON_ATTN_SCORES(f16, load_f16)
NEON_ATTN_SCORES(f32, vld1q_f32)
static void NAME(attn_scores_f32)(float *sc, size_t ldsc, const float *q, int nq, const float *K, int n, int bs,
                                  int d, float scale) {
    NAME(attn_scores_f32_ahead)(sc, ldsc, q, nq, K, n, bs, d, scale, NULL);
}

static void NAME(attn_values_f16)(float *out, const float *p, size_t ldp, int nq, const sov_half *V, int n, int d,
                                  const sov_half *ahead) {
    for (int h = 0; h < nq; h++)
        for (int j = 0; j < n; j++) {
            if (ahead && h == 0) /* the block a later call reads, a row at a time (kernels.h) */
                for (int i = 0; i < d; i += 32) __builtin_prefetch(ahead + (size_t)j * d + i, 0, 3);
            NAME(axpy_f16)(out + (size_t)h * d, p[(size_t)h * ldp + j], V + (size_t)j * d, d);
        }
}
static void NAME(attn_values_f32)(float *out, const float *p, size_t ldp, int nq, const float *V, int n, int d) {
    for (int h = 0; h < nq; h++)
        for (int j = 0; j < n; j++) NAME(axpy_f32)(out + (size_t)h * d, p[(size_t)h * ldp + j], V + (size_t)j * d, d);
}

#define NEON_TABLE(isa_name)                                                                      \
    {                                                                                            \
        .isa = isa_name,                                                                         \
        .vec_dot = {[SOV_TYPE_F32] = NAME(dot_f32_w), [SOV_TYPE_F16] = NAME(dot_f16_w),          \
                    [SOV_TYPE_BF16] = NAME(dot_bf16_w), [SOV_TYPE_Q4_0] = NAME(dot_q4_0),        \
                    [SOV_TYPE_Q4_1] = NAME(dot_q4_1), [SOV_TYPE_Q5_0] = NAME(dot_q5_0),          \
                    [SOV_TYPE_Q5_1] = NAME(dot_q5_1), [SOV_TYPE_Q8_0] = NAME(dot_q8_0),          \
                    [SOV_TYPE_Q4_K] = NAME(dot_q4_K), [SOV_TYPE_Q5_K] = NAME(dot_q5_K),          \
                    [SOV_TYPE_Q6_K] = NAME(dot_q6_K)},                                           \
        .gemm = {[SOV_TYPE_F32] = NAME(gemm_f32), [SOV_TYPE_F16] = NAME(gemm_f16),               \
                 [SOV_TYPE_BF16] = NAME(gemm_bf16), [SOV_TYPE_Q4_0] = NAME(gemm_q4_0),           \
                 [SOV_TYPE_Q4_1] = NAME(gemm_q4_1), [SOV_TYPE_Q5_0] = NAME(gemm_q5_0),           \
                 [SOV_TYPE_Q5_1] = NAME(gemm_q5_1), [SOV_TYPE_Q8_0] = NAME(gemm_q8_0),           \
                 [SOV_TYPE_Q4_K] = NAME(gemm_q4_K), [SOV_TYPE_Q5_K] = NAME(gemm_q5_K),           \
                 [SOV_TYPE_Q6_K] = NAME(gemm_q6_K)},                                             \
        .quantize_q8a = NAME(quantize_q8a), .quantize_q8k = NAME(quantize_q8k),                  \
        .quantize_q8p = sov_quantize_q8p_ref,                                                    \
        .rmsnorm = NAME(rmsnorm), .silu_mul = NAME(silu_mul), .add = NAME(add),                  \
        .gelu_mul = NAME(gelu_mul),                                                              \
        .scale = NAME(scale), .dot_f32 = NAME(dot_f32), .dot_f16 = NAME(dot_f16),                \
        .axpy_f32 = NAME(axpy_f32), .axpy_f16 = NAME(axpy_f16), .f32_to_f16 = NAME(f32_to_f16),  \
        .softmax = NAME(softmax), .attn_scores_f16 = NAME(attn_scores_f16_ahead),                \
        .attn_scores_f32 = NAME(attn_scores_f32), .attn_values_f16 = NAME(attn_values_f16),      \
        .attn_values_f32 = NAME(attn_values_f32), .exp_sum = kvq_exp_sum_ref, .max_f32 = kvq_max_ref, .kv_dequant_t_q8_0 = kvq_dequant_t_q8_0_ref,                   \
        .kv_dequant_t_q4_0 = kvq_dequant_t_q4_0_ref,                    \
        .kv_quantize_q8_0 = kvq_quantize_q8_0, .kv_quantize_q4_0 = kvq_quantize_q4_0,            \
        .kv_dequant_q8_0 = kvq_dequant_q8_0_ref, .kv_dequant_q4_0 = kvq_dequant_q4_0_ref,        \
        .layernorm = sov_layernorm_scalar, .gelu_erf = sov_gelu_erf_scalar,                      \
    }

#endif
