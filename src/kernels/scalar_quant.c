/* scalar_quant.c - the quantized dot products in plain C, in integers: the reference every
 * SIMD kernel mirrors.
 *
 * A weight block holds small integer levels q and one or two float16 scales; an
 * activation block (Q8A: 32 values, Q8K: 256) holds int8 levels qa and a float scale da.
 * Each dot product is therefore, per block, an exact integer sum of q * qa, multiplied
 * once by the product of the scales; the parts of a format that do not multiply q (the
 * offset of q4_0 / q5_0 / q6_K, the min of q4_1 / q5_1 / q4_K / q5_K) multiply the sum of
 * the activation levels instead, which Q8A.s (= da * sum qa) and Q8K.bsums (sums of 16
 * levels) carry precomputed:
 *
 *   q4_0:  w = d (q - 8)          sum w a = d da (sum q qa - 8 sum qa)
 *   q5_0:  w = d (q - 16)         sum w a = d da (sum q qa - 16 sum qa)
 *   q8_0:  w = d q                sum w a = d da sum q qa
 *   q4_1, q5_1:  w = d q + m      sum w a = d da sum q qa + m s
 *   q4_K, q5_K (8 sub-blocks j of 32):  w = d sc_j q - dmin m_j
 *          sum w a = d da sum_j sc_j (sum q qa) - dmin da sum_j m_j (bsums[2j] + bsums[2j+1])
 *   q6_K (16 sub-blocks j of 16):       w = d sc_j (q - 32)
 *          sum w a = d da sum_j sc_j (sum q qa - 32 bsums[j])
 *
 * For the 32-blocks the offsets are taken from the integer sum of qa (exact; d da s would
 * be the same up to one rounding). Every weight block is first unpacked into its levels
 * in value order (the layouts as dequant.c reads them), so each format's bit layout is
 * visible in one small function and the arithmetic in another. All integer sums fit in
 * int32 (the largest, q6_K: 16 sub-blocks x 16 values x 32 x 128 x scale 128 < 2^28).
 * Block results are added in
 * float, in block order. */
#include <math.h>
#include <string.h>

#include "kernels/scalar_quant.h"
#include "quant/quant.h"

/* ---- unpacking: the levels of one weight block in value order ---- */

/* q4_0 / q4_1: byte j holds value j (low nibble) and value j + 16 (high nibble) */
static void levels_q4(const uint8_t qs[QK / 2], uint8_t q[QK]) {
    for (int j = 0; j < QK / 2; j++) {
        q[j] = qs[j] & 0xF;
        q[j + QK / 2] = qs[j] >> 4;
    }
}

/* q5_0 / q5_1: the nibbles as q4, plus bit j of the 32-bit qh as value j's fifth bit */
static void levels_q5(const uint8_t qs[QK / 2], const uint8_t qh_bytes[4], uint8_t q[QK]) {
    uint32_t qh;
    memcpy(&qh, qh_bytes, 4);
    levels_q4(qs, q);
    for (int j = 0; j < QK; j++) q[j] |= (uint8_t)(((qh >> j) & 1) << 4);
}

/* q4_K: per 64 values, 32 bytes: low nibbles values 0..31, high nibbles 32..63 */
static void levels_q4_K(const block_q4_K *b, uint8_t q[QK_K]) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = b->qs[32 * c + l] & 0xF;
            q[64 * c + 32 + l] = b->qs[32 * c + l] >> 4;
        }
}

/* q5_K: as q4_K, plus bit s of qh[l] as the fifth bit of value l of sub-block s */
static void levels_q5_K(const block_q5_K *b, uint8_t q[QK_K]) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = (uint8_t)((b->qs[32 * c + l] & 0xF) | (((b->qh[l] >> (2 * c)) & 1) << 4));
            q[64 * c + 32 + l] = (uint8_t)((b->qs[32 * c + l] >> 4) | (((b->qh[l] >> (2 * c + 1)) & 1) << 4));
        }
}

/* q6_K, per 128 values: ql[l] low nibble value l, high nibble value l + 64; ql[l + 32]
 * values l + 32 and l + 96; qh[l] bits 0-1, 2-3, 4-5, 6-7 the top bits of values l,
 * l + 32, l + 64, l + 96. Levels 0..63 (the -32 is applied through bsums). */
static void levels_q6_K(const block_q6_K *b, uint8_t q[QK_K]) {
    for (int c = 0; c < 2; c++) {
        const uint8_t *ql = b->ql + 64 * c, *qh = b->qh + 32 * c;
        uint8_t *o = q + 128 * c;
        for (int l = 0; l < 32; l++) {
            o[l] = (uint8_t)((ql[l] & 0xF) | ((qh[l] & 3) << 4));
            o[l + 32] = (uint8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
            o[l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
            o[l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
        }
    }
}

/* ---- integer sums ---- */

/* sum of q[j] * qa[j] over n values */
static int dot_u8_s8(const uint8_t *q, const int8_t *qa, int n) {
    int s = 0;
    for (int j = 0; j < n; j++) s += q[j] * qa[j];
    return s;
}

static int sum_s8(const int8_t *qa, int n) {
    int s = 0;
    for (int j = 0; j < n; j++) s += qa[j];
    return s;
}

/* ---- 32-blocks against Q8A ---- */

float sov_vec_dot_q4_0_scalar(int64_t n, const void *vw, const void *va) {
    const block_q4_0 *w = vw;
    const block_q8a *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        uint8_t q[QK];
        levels_q4(w[i].qs, q);
        const int isum = dot_u8_s8(q, a[i].qs, QK) - 8 * sum_s8(a[i].qs, QK);
        sum += sov_half_to_f32(w[i].d) * a[i].d * (float)isum;
    }
    return sum;
}

float sov_vec_dot_q5_0_scalar(int64_t n, const void *vw, const void *va) {
    const block_q5_0 *w = vw;
    const block_q8a *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        uint8_t q[QK];
        levels_q5(w[i].qs, w[i].qh, q);
        const int isum = dot_u8_s8(q, a[i].qs, QK) - 16 * sum_s8(a[i].qs, QK);
        sum += sov_half_to_f32(w[i].d) * a[i].d * (float)isum;
    }
    return sum;
}

float sov_vec_dot_q4_1_scalar(int64_t n, const void *vw, const void *va) {
    const block_q4_1 *w = vw;
    const block_q8a *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        uint8_t q[QK];
        levels_q4(w[i].qs, q);
        const int isum = dot_u8_s8(q, a[i].qs, QK);
        sum += sov_half_to_f32(w[i].d) * a[i].d * (float)isum + sov_half_to_f32(w[i].m) * a[i].s;
    }
    return sum;
}

float sov_vec_dot_q5_1_scalar(int64_t n, const void *vw, const void *va) {
    const block_q5_1 *w = vw;
    const block_q8a *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        uint8_t q[QK];
        levels_q5(w[i].qs, w[i].qh, q);
        const int isum = dot_u8_s8(q, a[i].qs, QK);
        sum += sov_half_to_f32(w[i].d) * a[i].d * (float)isum + sov_half_to_f32(w[i].m) * a[i].s;
    }
    return sum;
}

float sov_vec_dot_q8_0_scalar(int64_t n, const void *vw, const void *va) {
    const block_q8_0 *w = vw;
    const block_q8a *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        int isum = 0;
        for (int j = 0; j < QK; j++) isum += w[i].qs[j] * a[i].qs[j];
        sum += sov_half_to_f32(w[i].d) * a[i].d * (float)isum;
    }
    return sum;
}

/* ---- k-quants against Q8K ---- */

/* q4_K and q5_K share everything but the unpacking: sub-block j (values 32j..32j+31)
 * has a 6-bit scale sc_j and min m_j, and its activation sum is bsums[2j] + bsums[2j+1]. */
static float dot_kquant_affine(const block_q8k *a, const uint8_t q[QK_K], const uint8_t scales[12], sov_half d,
                               sov_half dmin) {
    int isum = 0, msum = 0;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        sov_k_scale_min(j, scales, &sc, &m);
        isum += sc * dot_u8_s8(q + 32 * j, a->qs + 32 * j, 32);
        msum += m * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
    }
    return sov_half_to_f32(d) * a->d * (float)isum - sov_half_to_f32(dmin) * a->d * (float)msum;
}

float sov_vec_dot_q4_K_scalar(int64_t n, const void *vw, const void *va) {
    const block_q4_K *w = vw;
    const block_q8k *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t q[QK_K];
        levels_q4_K(&w[i], q);
        sum += dot_kquant_affine(&a[i], q, w[i].scales, w[i].d, w[i].dmin);
    }
    return sum;
}

float sov_vec_dot_q5_K_scalar(int64_t n, const void *vw, const void *va) {
    const block_q5_K *w = vw;
    const block_q8k *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t q[QK_K];
        levels_q5_K(&w[i], q);
        sum += dot_kquant_affine(&a[i], q, w[i].scales, w[i].d, w[i].dmin);
    }
    return sum;
}

float sov_vec_dot_q6_K_scalar(int64_t n, const void *vw, const void *va) {
    const block_q6_K *w = vw;
    const block_q8k *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t q[QK_K];
        levels_q6_K(&w[i], q);
        int isum = 0;
        for (int j = 0; j < 16; j++)
            isum += w[i].scales[j] * (dot_u8_s8(q + 16 * j, a[i].qs + 16 * j, 16) - 32 * a[i].bsums[j]);
        sum += sov_half_to_f32(w[i].d) * a[i].d * (float)isum;
    }
    return sum;
}

/* ---- activation quantizers ---- */

/* Q8A: per 32 values d = amax / 127, q = round-half-even(x / d) via one reciprocal (the
 * same bytes on every ISA); s = d * sum q. */
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

/* Q8K: the same per 256 values, with the sums of each 16 levels in bsums. */
void sov_quantize_q8k_scalar(const float *x, void *vy, int64_t n) {
    block_q8k *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float amax = 0.0f;
        for (int j = 0; j < QK_K; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < QK_K; j++) y[i].qs[j] = (int8_t)nearbyintf(x[j] * id);
        for (int g = 0; g < QK_K / 16; g++) y[i].bsums[g] = (int16_t)sum_s8(y[i].qs + 16 * g, 16);
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
