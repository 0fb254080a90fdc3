/* scalar_quant.c - quantized dot products by dequantizing one block of each side and
 * multiplying in float: slow but obviously right (the first reference; integer versions
 * that mirror the SIMD kernels replace these). */
#include <math.h>
#include <string.h>

#include "kernels/scalar_quant.h"
#include "quant/quant.h"

static float dot_blocks(sov_type wt, size_t wsz, sov_type at, size_t asz, int bs, int64_t n,
                        const void *w, const void *a) {
    float wf[QK_K], af[QK_K];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / bs; i++) {
        sov_dequantize_row(wt, (const char *)w + (size_t)i * wsz, wf, bs);
        sov_dequantize_row(at, (const char *)a + (size_t)i * asz, af, bs);
        float s = 0.0f;
        for (int j = 0; j < bs; j++) s += wf[j] * af[j];
        sum += s;
    }
    return sum;
}

#define DOT32(fn, t, blk)                                                                          \
    float sov_vec_dot_##fn##_scalar(int64_t n, const void *w, const void *a) {                  \
        return dot_blocks(SOV_TYPE_##t, sizeof(blk), SOV_TYPE_Q8A, sizeof(block_q8a), QK, n, w, a); \
    }
#define DOTK(fn, t, blk)                                                                                 \
    float sov_vec_dot_##fn##_scalar(int64_t n, const void *w, const void *a) {                        \
        return dot_blocks(SOV_TYPE_##t, sizeof(blk), SOV_TYPE_Q8K, sizeof(block_q8k), QK_K, n, w, a); \
    }

DOT32(q4_0, Q4_0, block_q4_0)
DOT32(q4_1, Q4_1, block_q4_1)
DOT32(q5_0, Q5_0, block_q5_0)
DOT32(q5_1, Q5_1, block_q5_1)
DOT32(q8_0, Q8_0, block_q8_0)
DOTK(q4_K, Q4_K, block_q4_K)
DOTK(q5_K, Q5_K, block_q5_K)
DOTK(q6_K, Q6_K, block_q6_K)

void sov_quantize_q8a_scalar(const float *x, void *vy, int64_t n) {
    block_q8a *y = vy;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            const int q = (int)nearbyintf(x[j] * id);
            y[i].qs[j] = (int8_t)q;
            sum += q;
        }
        y[i].d = d;
        y[i].s = d * (float)sum;
    }
}

void sov_quantize_q8k_scalar(const float *x, void *vy, int64_t n) {
    block_q8k *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float amax = 0.0f;
        for (int j = 0; j < QK_K; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < QK_K; j++) y[i].qs[j] = (int8_t)nearbyintf(x[j] * id);
        for (int g = 0; g < QK_K / 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += y[i].qs[16 * g + j];
            y[i].bsums[g] = (int16_t)s;
        }
        y[i].d = d;
    }
}

/* ---- planar types against Q8P: per block, the integer sum of products, times both
 * scales (the same arithmetic as the file layouts, read from planar places) ---- */

static inline float half_at(const uint8_t *p) {
    sov_half h;
    memcpy(&h, p, 2);
    return sov_half_to_f32(h);
}

static inline float f32_at(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}

float sov_vec_dot_q4_0p_scalar(int64_t n, const void *vw, const void *va) {
    const int64_t nb = n / QK;
    const uint8_t *w = vw, *a = va;
    const int8_t *aq = (const int8_t *)(a + 8 * nb);
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *qs = w + 2 * nb + 16 * i;
        int s = 0;
        for (int j = 0; j < QK / 2; j++) {
            s += ((qs[j] & 0xF) - 8) * aq[sov_q8p_index(i, j, nb)];
            s += ((qs[j] >> 4) - 8) * aq[sov_q8p_index(i, j + QK / 2, nb)];
        }
        sum += half_at(w + 2 * i) * f32_at(a + 4 * i) * (float)s;
    }
    return sum;
}

float sov_vec_dot_q8_0p_scalar(int64_t n, const void *vw, const void *va) {
    const int64_t nb = n / QK;
    const uint8_t *w = vw, *a = va;
    const int8_t *wq = (const int8_t *)(w + 2 * nb), *aq = (const int8_t *)(a + 8 * nb);
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int s = 0;
        for (int j = 0; j < QK; j++) {
            const size_t k = sov_q8p_index(i, j, nb);
            s += wq[k] * aq[k];
        }
        sum += half_at(w + 2 * i) * f32_at(a + 4 * i) * (float)s;
    }
    return sum;
}

void sov_quantize_q8p_scalar(const float *x, void *y, int64_t n) { sov_quantize_q8p_ref(x, y, n); }
