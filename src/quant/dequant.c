/* dequant.c - the scalar reference dequantizers, the definition of each block format.
 *
 * The arithmetic follows the formats' reference definitions operation for operation
 * (including the order of float multiplications, e.g. q6_K's (d * scale) * q), so the
 * values are bit-exact with any other faithful implementation. This file is compiled
 * in ISO C mode, where the compiler does not fuse a*b-c into an FMA. */
#include <string.h>

#include "quant/quant.h"

static void deq_q4_0(const block_q4_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK) {
        const float d = sov_half_to_f32(x[i].d);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = (float)((x[i].qs[j] & 0xF) - 8) * d;
            y[j + QK / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void deq_q4_1(const block_q4_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK) {
        const float d = sov_half_to_f32(x[i].d), m = sov_half_to_f32(x[i].m);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = (float)(x[i].qs[j] & 0xF) * d + m;
            y[j + QK / 2] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

static void deq_q5_0(const block_q5_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK) {
        const float d = sov_half_to_f32(x[i].d);
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < QK / 2; j++) {
            const uint8_t h0 = (uint8_t)(((qh >> j) << 4) & 0x10);
            const uint8_t h1 = (uint8_t)((qh >> (j + 12)) & 0x10);
            y[j] = (float)(((x[i].qs[j] & 0xF) | h0) - 16) * d;
            y[j + QK / 2] = (float)(((x[i].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

static void deq_q5_1(const block_q5_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK) {
        const float d = sov_half_to_f32(x[i].d), m = sov_half_to_f32(x[i].m);
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < QK / 2; j++) {
            const uint8_t h0 = (uint8_t)(((qh >> j) << 4) & 0x10);
            const uint8_t h1 = (uint8_t)((qh >> (j + 12)) & 0x10);
            y[j] = (float)((x[i].qs[j] & 0xF) | h0) * d + m;
            y[j + QK / 2] = (float)((x[i].qs[j] >> 4) | h1) * d + m;
        }
    }
}

static void deq_q8_0(const block_q8_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK) {
        const float d = sov_half_to_f32(x[i].d);
        for (int j = 0; j < QK; j++) y[j] = (float)x[i].qs[j] * d;
    }
}

static void deq_q4_K(const block_q4_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = sov_half_to_f32(x[i].d), min = sov_half_to_f32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32) {
            uint8_t sc, m;
            sov_k_scale_min(is, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            sov_k_scale_min(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

static void deq_q5_K(const block_q5_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = sov_half_to_f32(x[i].d), min = sov_half_to_f32(x[i].dmin);
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, ql += 32) {
            uint8_t sc, m;
            sov_k_scale_min(is, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            sov_k_scale_min(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

static void deq_q6_K(const block_q6_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = sov_half_to_f32(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * (float)sc[is + 0] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

static void deq_q8a(const block_q8a *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK)
        for (int j = 0; j < QK; j++) y[j] = (float)x[i].qs[j] * x[i].d;
}

static void deq_q8k(const block_q8k *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK_K)
        for (int j = 0; j < QK_K; j++) y[j] = (float)x[i].qs[j] * x[i].d;
}

void sov_dequantize_row(sov_type type, const void *src, float *dst, int64_t n) {
    switch (type) {
    case SOV_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case SOV_TYPE_F16: {
        const sov_half *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = sov_half_to_f32(s[i]);
        break;
    }
    case SOV_TYPE_BF16: {
        const sov_bf16 *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = sov_bf16_to_f32(s[i]);
        break;
    }
    case SOV_TYPE_Q4_0: deq_q4_0(src, dst, n / QK); break;
    case SOV_TYPE_Q4_1: deq_q4_1(src, dst, n / QK); break;
    case SOV_TYPE_Q5_0: deq_q5_0(src, dst, n / QK); break;
    case SOV_TYPE_Q5_1: deq_q5_1(src, dst, n / QK); break;
    case SOV_TYPE_Q8_0: deq_q8_0(src, dst, n / QK); break;
    case SOV_TYPE_Q4_K: deq_q4_K(src, dst, n / QK_K); break;
    case SOV_TYPE_Q5_K: deq_q5_K(src, dst, n / QK_K); break;
    case SOV_TYPE_Q6_K: deq_q6_K(src, dst, n / QK_K); break;
    case SOV_TYPE_Q8A: deq_q8a(src, dst, n / QK); break;
    case SOV_TYPE_Q8K: deq_q8k(src, dst, n / QK_K); break;
    case SOV_TYPE_Q4_0P:
    case SOV_TYPE_Q8_0P:
    case SOV_TYPE_Q8P: sov_dequantize_planar(type, src, dst, n); break;
    default: memset(dst, 0, (size_t)n * sizeof(float)); break; /* callers check supported */
    }
}
