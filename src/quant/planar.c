/* planar.c - the planar layouts of q4_0 and q8_0 rows and of their activations (Q8P):
 * repacking a file row in place, dequantizing, and quantizing activations.
 * The layouts are described in quant.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"

int sov_planar_type(sov_type type) {
    if (type == SOV_TYPE_Q4_0) return SOV_TYPE_Q4_0P;
    if (type == SOV_TYPE_Q8_0) return SOV_TYPE_Q8_0P;
    return -1;
}

bool sov_repack_row_planar(sov_type type, void *row, int64_t n) {
    const int64_t nb = n / QK;
    uint8_t *out = row;
    if (type == SOV_TYPE_Q4_0) {
        block_q4_0 *src = malloc((size_t)nb * sizeof *src);
        if (!src) return false;
        memcpy(src, row, (size_t)nb * sizeof *src);
        for (int64_t i = 0; i < nb; i++) {
            memcpy(out + 2 * i, &src[i].d, 2);
            memcpy(out + 2 * nb + 16 * i, src[i].qs, 16);
        }
        free(src);
    } else if (type == SOV_TYPE_Q8_0) {
        block_q8_0 *src = malloc((size_t)nb * sizeof *src);
        if (!src) return false;
        memcpy(src, row, (size_t)nb * sizeof *src);
        int8_t *qs = (int8_t *)(out + 2 * nb);
        for (int64_t i = 0; i < nb; i++) {
            memcpy(out + 2 * i, &src[i].d, 2);
            for (int j = 0; j < QK; j++) qs[sov_q8p_index(i, j, nb)] = src[i].qs[j];
        }
        free(src);
    }
    return true;
}

void sov_repack_row_planar_to(sov_type type, const void *src_row, void *dst_row, int64_t n) {
    const int64_t nb = n / QK;
    uint8_t *out = dst_row;
    if (type == SOV_TYPE_Q4_0) {
        const block_q4_0 *src = src_row;
        for (int64_t i = 0; i < nb; i++) {
            memcpy(out + 2 * i, &src[i].d, 2);
            memcpy(out + 2 * nb + 16 * i, src[i].qs, 16);
        }
    } else if (type == SOV_TYPE_Q8_0) {
        const block_q8_0 *src = src_row;
        int8_t *qs = (int8_t *)(out + 2 * nb);
        for (int64_t i = 0; i < nb; i++) {
            memcpy(out + 2 * i, &src[i].d, 2);
            if ((i | 1) < nb) { /* whole pair: halves interleaved */
                const int64_t base = 64 * (i >> 1) + (i & 1) * 16;
                memcpy(qs + base, src[i].qs, 16);
                memcpy(qs + base + 32, src[i].qs + 16, 16);
            } else {
                memcpy(qs + 32 * i, src[i].qs, 32);
            }
        }
    }
}

void sov_dequantize_planar(sov_type type, const void *row, float *y, int64_t n) {
    const int64_t nb = n / QK;
    const uint8_t *p = row;
    for (int64_t i = 0; i < nb; i++, y += QK) {
        if (type == SOV_TYPE_Q8P) {
            float d;
            memcpy(&d, p + 4 * i, 4);
            const int8_t *qs = (const int8_t *)(p + 8 * nb);
            for (int j = 0; j < QK; j++) y[j] = (float)qs[sov_q8p_index(i, j, nb)] * d;
            continue;
        }
        sov_half hd;
        memcpy(&hd, p + 2 * i, 2);
        const float d = sov_half_to_f32(hd);
        if (type == SOV_TYPE_Q4_0P) {
            const uint8_t *qs = p + 2 * nb + 16 * i;
            for (int j = 0; j < QK / 2; j++) {
                y[j] = (float)((qs[j] & 0xF) - 8) * d;
                y[j + QK / 2] = (float)((qs[j] >> 4) - 8) * d;
            }
        } else { /* Q8_0P */
            const int8_t *qs = (const int8_t *)(p + 2 * nb);
            for (int j = 0; j < QK; j++) y[j] = (float)qs[sov_q8p_index(i, j, nb)] * d;
        }
    }
}

void sov_quantize_q8p_ref(const float *x, void *vy, int64_t n) {
    /* the Q8A values (d = max|x| / 127, round half to even), laid out planar */
    const int64_t nb = n / QK;
    uint8_t *p = vy;
    int8_t *qs = (int8_t *)(p + 8 * nb);
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            const int q = (int)nearbyintf(x[j] * id);
            qs[sov_q8p_index(i, j, nb)] = (int8_t)q;
            sum += q;
        }
        const float s = (float)sum;
        memcpy(p + 4 * i, &d, 4);
        memcpy(p + 4 * nb + 4 * i, &s, 4);
    }
}
