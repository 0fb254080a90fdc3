/* kv_quant_impl.h - the reference code of the quantized KV cache rows (kv.h) and of the
 * online softmax step, included by every kernel table's file (scalar.c, the x86 and Arm
 * files), which may replace a function with its own SIMD version (KVQ_HAVE_* below).
 *
 * A row is one position's d values in groups of g (g = 32, or d when d < 32); a group is
 * an f16 scale s and g codes:
 *   Q8_0: int8 q = round(x / s), s = max|x| / 127;           x ~ s * q
 *   Q4_0: 4-bit u = clamp(round(x / s) + 8, 0, 15), s = m / -8 with m the value of
 *         largest magnitude (sign kept); byte i holds u[i] (low nibble) and u[i + g/2]
 *         (high nibble);                                      x ~ s * (u - 8)
 * the same formulas as GGUF's Q8_0 / Q4_0, so a group of 32 is a block_q8_0 / block_q4_0. */
#ifndef SOV_KV_QUANT_IMPL_H
#define SOV_KV_QUANT_IMPL_H

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/fp16.h"

static inline void kvq_quantize_q8_0(const float *x, void *y, int d, int g) {
    uint8_t *o = y;
    for (int b = 0; b < d; b += g, o += 2 + g) {
        float amax = 0.0f;
        for (int i = 0; i < g; i++)
            amax = fmaxf(amax, fabsf(x[b + i]));
        const float s = amax / 127.0f, is = s != 0.0f ? 1.0f / s : 0.0f;
        const sov_half hs = sov_f32_to_half(s);
        memcpy(o, &hs, 2);
        for (int i = 0; i < g; i++)
            o[2 + i] = (uint8_t)(int8_t)roundf(x[b + i] * is);
    }
}

static inline void kvq_quantize_q4_0(const float *x, void *y, int d, int g) {
    uint8_t *o = y;
    for (int b = 0; b < d; b += g, o += 2 + g / 2) {
        float amax = 0.0f, m = 0.0f;
        for (int i = 0; i < g; i++)
            if (fabsf(x[b + i]) > amax) {
                amax = fabsf(x[b + i]);
                m = x[b + i];
            }
        const float s = m / -8.0f, is = s != 0.0f ? 1.0f / s : 0.0f;
        const sov_half hs = sov_f32_to_half(s);
        memcpy(o, &hs, 2);
        for (int i = 0; i < g / 2; i++) {
            const float lo = roundf(x[b + i] * is) + 8.0f, hi = roundf(x[b + i + g / 2] * is) + 8.0f;
            const int ul = (int)fminf(15.0f, fmaxf(0.0f, lo)), uh = (int)fminf(15.0f, fmaxf(0.0f, hi));
            o[2 + i] = (uint8_t)(ul | uh << 4);
        }
    }
}

static inline void kvq_dequant_q8_0_ref(const void *x, float *y, int d, int g) {
    const uint8_t *p = x;
    for (int b = 0; b < d; b += g, p += 2 + g) {
        sov_half hs;
        memcpy(&hs, p, 2);
        const float s = sov_half_to_f32(hs);
        for (int i = 0; i < g; i++)
            y[b + i] = s * (float)(int8_t)p[2 + i];
    }
}

static inline void kvq_dequant_q4_0_ref(const void *x, float *y, int d, int g) {
    const uint8_t *p = x;
    for (int b = 0; b < d; b += g, p += 2 + g / 2) {
        sov_half hs;
        memcpy(&hs, p, 2);
        const float s = sov_half_to_f32(hs);
        for (int i = 0; i < g / 2; i++) {
            y[b + i] = s * (float)((p[2 + i] & 15) - 8);
            y[b + i + g / 2] = s * (float)((p[2 + i] >> 4) - 8);
        }
    }
}

/* n rows dequantized one by one, transposed through tmp (d floats) */
static inline void kvq_dequant_t_ref(void (*row)(const void *, float *, int, int), const void *x, size_t rb, int n,
                                     float *y, int ld, int d, int g) {
    float tmp[256];
    for (int j = 0; j < ld; j++) {
        if (j < n) row((const uint8_t *)x + (size_t)j * rb, tmp, d, g);
        for (int i = 0; i < d; i++)
            y[(size_t)i * (size_t)ld + (size_t)j] = j < n ? tmp[i] : 0.0f;
    }
}
static inline void kvq_dequant_t_q8_0_ref(const void *x, size_t rb, int n, float *y, int ld, int d, int g) {
    kvq_dequant_t_ref(kvq_dequant_q8_0_ref, x, rb, n, y, ld, d, g);
}
static inline void kvq_dequant_t_q4_0_ref(const void *x, size_t rb, int n, float *y, int ld, int d, int g) {
    kvq_dequant_t_ref(kvq_dequant_q4_0_ref, x, rb, n, y, ld, d, g);
}

/* Query rows for the integer scores of quantized keys (attn_scores_q8_0 / _q4_0 in
 * kernels.h): each of nq rows of d values (d a multiple of 32) in groups of 32 as int8
 * codes qq = round(x / s) with s = max|x| / 127 kept as a float in qd, and the codes'
 * sum per group in qs (the kernels take keys as unsigned bytes, k + 128 or u, and subtract
 * 128 or 8 times that sum). The same rounding as the Q8_0 rows. */
static inline void kvq_quantize_query(const float *q, int nq, int d, int8_t *qq, float *qd, int32_t *qs) {
    for (int h = 0; h < nq; h++)
        for (int b = 0; b < d; b += 32) {
            const float *x = q + (size_t)h * (size_t)d + b;
            float amax = 0.0f;
            bool finite = true;
            for (int i = 0; i < 32; i++) {
                amax = fmaxf(amax, fabsf(x[i]));
                finite = finite && fabsf(x[i]) <= FLT_MAX;
            }
            /* a group with an inf or NaN gets codes 0 and a NaN scale: its scores are NaN,
             * as the float path's are */
            const float s = finite ? amax / 127.0f : NAN, is = finite && s != 0.0f ? 1.0f / s : 0.0f;
            int32_t sum = 0;
            for (int i = 0; i < 32; i++) {
                const int v = finite ? (int)roundf(x[i] * is) : 0;
                qq[(size_t)h * (size_t)d + b + i] = (int8_t)v;
                sum += v;
            }
            qd[(size_t)h * (size_t)(d / 32) + b / 32] = s;
            qs[(size_t)h * (size_t)(d / 32) + b / 32] = sum;
        }
}

/* The reference of the integer scores: for row h and key j (rows rb bytes apart, groups of
 * 32), s = sum over groups b, in order, of (float)(qq_hb . k_jb) * (kd_jb * qd_hb), then
 * sc[h * ldsc + j] = scale * s. Q4_0 codes are u - 8. */
static inline void kvq_scores_ref(bool q4, float *sc, size_t ldsc, const int8_t *qq, const float *qd, int nq,
                                  const void *K, size_t rb, int n, int d, float scale) {
    const size_t gb = q4 ? 18 : 34;
    for (int h = 0; h < nq; h++)
        for (int j = 0; j < n; j++) {
            const uint8_t *row = (const uint8_t *)K + (size_t)j * rb;
            float s = 0.0f;
            for (int b = 0; b < d / 32; b++) {
                const uint8_t *p = row + (size_t)b * gb;
                const int8_t *x = qq + (size_t)h * (size_t)d + (size_t)b * 32;
                sov_half hs;
                memcpy(&hs, p, 2);
                int32_t dot = 0;
                for (int i = 0; i < 32; i++) {
                    const int k =
                        q4 ? (i < 16 ? (p[2 + i] & 15) : (p[2 + i - 16] >> 4)) - 8 : (int8_t)p[2 + i];
                    dot += k * x[i];
                }
                s += (float)dot * (sov_half_to_f32(hs) * qd[(size_t)h * (size_t)(d / 32) + b]);
            }
            sc[(size_t)h * ldsc + (size_t)j] = scale * s;
        }
}

/* x = exp(x - max) for n values; returns their sum */
static inline float kvq_max_ref(const float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}

static inline float kvq_exp_sum_ref(float *x, int64_t n, float max) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    return sum;
}

#endif
