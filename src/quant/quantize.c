/* quantize.c - the reference quantizers: float rows into every block format sov writes.
 *
 * The 32-value formats use their classic definitions (round to the nearest level of a
 * scale fixed by the block's extreme value). The k-quants search: for each sub-block a
 * few candidate scales are tried, the integer levels are chosen for each, and the scale
 * (and min) that best fit those levels are solved for by weighted least squares; the
 * weights favour values of large magnitude (|x| plus the block's RMS), which matter most
 * to a dot product. The sub-block scales and mins are then quantized to 6 bits (q4_K,
 * q5_K) or 8 bits (q6_K) against a float16 super-block scale, and the levels recomputed
 * with the scales as stored. Inputs must be finite. */
#include <math.h>
#include <string.h>

#include "kernels/scalar_quant.h"
#include "quant/quant.h"

static inline int nearest_int(float v) { return (int)lrintf(v); }

/* ---- the 32-value formats ---- */

/* the value of largest magnitude, with its sign */
static float signed_max(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void q4_0(const float *x, block_q4_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        const float d = signed_max(x, QK) / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = sov_f32_to_half(d);
        for (int j = 0; j < QK / 2; j++) {
            int a = (int)(x[j] * id + 8.5f), b = (int)(x[j + QK / 2] * id + 8.5f);
            a = a > 15 ? 15 : a < 0 ? 0 : a;
            b = b > 15 ? 15 : b < 0 ? 0 : b;
            y[i].qs[j] = (uint8_t)(a | (b << 4));
        }
    }
}

static void min_max(const float *x, int n, float *mn, float *mx) {
    *mn = *mx = x[0];
    for (int j = 1; j < n; j++) {
        *mn = x[j] < *mn ? x[j] : *mn;
        *mx = x[j] > *mx ? x[j] : *mx;
    }
}

static void q4_1(const float *x, block_q4_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float mn, mx;
        min_max(x, QK, &mn, &mx);
        const float d = (mx - mn) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = sov_f32_to_half(d);
        y[i].m = sov_f32_to_half(mn);
        for (int j = 0; j < QK / 2; j++) {
            int a = (int)((x[j] - mn) * id + 0.5f), b = (int)((x[j + QK / 2] - mn) * id + 0.5f);
            a = a > 15 ? 15 : a;
            b = b > 15 ? 15 : b;
            y[i].qs[j] = (uint8_t)(a | (b << 4));
        }
    }
}

static void q5_0(const float *x, block_q5_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        const float d = signed_max(x, QK) / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = sov_f32_to_half(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            int a = (int)(x[j] * id + 16.5f), b = (int)(x[j + QK / 2] * id + 16.5f);
            a = a > 31 ? 31 : a < 0 ? 0 : a;
            b = b > 31 ? 31 : b < 0 ? 0 : b;
            y[i].qs[j] = (uint8_t)((a & 0xF) | ((b & 0xF) << 4));
            qh |= (uint32_t)((a >> 4) & 1) << j;
            qh |= (uint32_t)((b >> 4) & 1) << (j + QK / 2);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

static void q5_1(const float *x, block_q5_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float mn, mx;
        min_max(x, QK, &mn, &mx);
        const float d = (mx - mn) / 31.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = sov_f32_to_half(d);
        y[i].m = sov_f32_to_half(mn);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            int a = (int)((x[j] - mn) * id + 0.5f), b = (int)((x[j + QK / 2] - mn) * id + 0.5f);
            a = a > 31 ? 31 : a;
            b = b > 31 ? 31 : b;
            y[i].qs[j] = (uint8_t)((a & 0xF) | ((b & 0xF) << 4));
            qh |= (uint32_t)((a >> 4) & 1) << j;
            qh |= (uint32_t)((b >> 4) & 1) << (j + QK / 2);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

static void q8_0(const float *x, block_q8_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = sov_f32_to_half(d);
        for (int j = 0; j < QK; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* ---- fitting for the k-quants ---- */

/* Importance of each value of a sub-block: |x| plus the RMS of the super-block. */
static void importance(const float *x, int n, float rms, float *w) {
    for (int j = 0; j < n; j++) w[j] = rms + fabsf(x[j]);
}

/* Fits x ~= scale * L + min with L in [0, nmax] and min <= 0 (weighted least squares over
 * a sweep of candidate scales). Returns scale; *neg_min = -min >= 0. */
static float fit_asym(const float *x, const float *w, int n, int nmax, uint8_t *L, float *neg_min) {
    float mn, mx;
    min_max(x, n, &mn, &mx);
    if (mn > 0.0f) mn = 0.0f;
    if (mx <= mn) {
        memset(L, 0, (size_t)n);
        *neg_min = -mn;
        return 0.0f;
    }
    float best_err = INFINITY, best_scale = (mx - mn) / (float)nmax, best_min = mn;
    uint8_t trial[32];
    for (int step = -10; step <= 10; step++) {
        const float iscale = ((float)nmax + 0.05f * (float)step) / (mx - mn);
        float sw = 0, sx = 0, sl = 0, sl2 = 0, sxl = 0;
        for (int j = 0; j < n; j++) {
            int l = nearest_int(iscale * (x[j] - mn));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            trial[j] = (uint8_t)l;
            sw += w[j];
            sx += w[j] * x[j];
            sl += w[j] * (float)l;
            sl2 += w[j] * (float)(l * l);
            sxl += w[j] * x[j] * (float)l;
        }
        const float det = sw * sl2 - sl * sl;
        if (det <= 0.0f) continue;
        float scale = (sw * sxl - sx * sl) / det, min = (sl2 * sx - sl * sxl) / det;
        if (min > 0.0f) { /* a positive min is not representable: refit scale alone */
            min = 0.0f;
            scale = sl2 > 0 ? sxl / sl2 : 0.0f;
        }
        float err = 0.0f;
        for (int j = 0; j < n; j++) {
            const float e = scale * (float)trial[j] + min - x[j];
            err += w[j] * e * e;
        }
        if (err < best_err) {
            best_err = err;
            best_scale = scale;
            best_min = min;
        }
    }
    (void)L;
    *neg_min = -best_min;
    return best_scale;
}

/* Fits x ~= scale * L with L in [-nmax, nmax - 1]; returns scale (may be negative, the
 * sign chosen so that the largest magnitude maps to -nmax). */
static float fit_sym(const float *x, const float *w, int n, int nmax) {
    const float max = signed_max(x, n);
    if (max == 0.0f) return 0.0f;
    float best_err = INFINITY, best = -max / (float)nmax;
    for (int step = -9; step <= 9; step++) {
        const float iscale = -((float)nmax + 0.1f * (float)step) / max;
        float sxl = 0, sl2 = 0;
        int Ls[32];
        for (int j = 0; j < n; j++) {
            int l = nearest_int(iscale * x[j]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            Ls[j] = l;
            sxl += w[j] * x[j] * (float)l;
            sl2 += w[j] * (float)(l * l);
        }
        if (sl2 <= 0.0f) continue;
        const float scale = sxl / sl2;
        float err = 0.0f;
        for (int j = 0; j < n; j++) {
            const float e = scale * (float)Ls[j] - x[j];
            err += w[j] * e * e;
        }
        if (err < best_err) {
            best_err = err;
            best = scale;
        }
    }
    return best;
}

static float block_rms(const float *x, int n) {
    float s = 0.0f;
    for (int j = 0; j < n; j++) s += x[j] * x[j];
    return sqrtf(s / (float)n);
}

/* Packs 6-bit scale ls and min lm of sub-block j into the 12-byte k-quant layout (the
 * inverse of sov_k_scale_min). */
static void pack_scale_min(uint8_t *q, int j, int ls, int lm) {
    if (j < 4) {
        q[j] = (uint8_t)((q[j] & 0xC0) | ls);
        q[j + 4] = (uint8_t)((q[j + 4] & 0xC0) | lm);
    } else {
        q[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        q[j - 4] |= (uint8_t)((ls >> 4) << 6);
        q[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

/* Shared by q4_K (nmax 15) and q5_K (nmax 31): fills d, dmin, scales and the levels L. */
static void kquant_asym(const float *x, int nmax, sov_half *d_out, sov_half *dmin_out, uint8_t *scales, uint8_t *L) {
    float sc[8], mn[8], w[32];
    const float rms = block_rms(x, QK_K);
    float max_sc = 0.0f, max_mn = 0.0f;
    for (int j = 0; j < 8; j++) {
        importance(x + 32 * j, 32, rms, w);
        sc[j] = fit_asym(x + 32 * j, w, 32, nmax, L + 32 * j, &mn[j]);
        if (sc[j] < 0.0f) sc[j] = 0.0f;
        max_sc = fmaxf(max_sc, sc[j]);
        max_mn = fmaxf(max_mn, mn[j]);
    }
    const float d = max_sc / 63.0f, dmin = max_mn / 63.0f;
    *d_out = sov_f32_to_half(d);
    *dmin_out = sov_f32_to_half(dmin);
    float dq = sov_half_to_f32(*d_out), dminq = sov_half_to_f32(*dmin_out);
    if (dq == 0.0f) {
        /* the scales underflow half precision (values below ~1e-7): with no usable scale
         * the best representation is all zeros, not a bare offset */
        *d_out = *dmin_out = 0;
        dq = dminq = 0.0f;
    }
    memset(scales, 0, 12);
    for (int j = 0; j < 8; j++) {
        int ls = dq > 0.0f ? nearest_int(sc[j] / dq) : 0, lm = dminq > 0.0f ? nearest_int(mn[j] / dminq) : 0;
        ls = ls > 63 ? 63 : ls < 0 ? 0 : ls;
        lm = lm > 63 ? 63 : lm < 0 ? 0 : lm;
        pack_scale_min(scales, j, ls, lm);
        /* levels against the scale and min as stored */
        const float s = dq * (float)ls, m = dminq * (float)lm;
        for (int k = 0; k < 32; k++) {
            int l = s > 0.0f ? nearest_int((x[32 * j + k] + m) / s) : 0;
            L[32 * j + k] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        }
    }
}

static void q4_K(const float *x, block_q4_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        uint8_t L[QK_K];
        kquant_asym(x, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        /* 64 values per 32 bytes: low nibbles the first 32, high nibbles the next */
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) y[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

static void q5_K(const float *x, block_q5_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        uint8_t L[QK_K];
        kquant_asym(x, 31, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int c = 0; c < 4; c++) {
            for (int l = 0; l < 32; l++) {
                const uint8_t a = L[64 * c + l], b = L[64 * c + 32 + l];
                y[i].qs[32 * c + l] = (uint8_t)((a & 0xF) | ((b & 0xF) << 4));
                y[i].qh[l] |= (uint8_t)(((a >> 4) & 1) << (2 * c));
                y[i].qh[l] |= (uint8_t)(((b >> 4) & 1) << (2 * c + 1));
            }
        }
    }
}

static void q6_K(const float *x, block_q6_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        float sc[16], w[16];
        const float rms = block_rms(x, QK_K);
        float max_abs = 0.0f, max_sc = 0.0f;
        for (int j = 0; j < 16; j++) {
            importance(x + 16 * j, 16, rms, w);
            sc[j] = fit_sym(x + 16 * j, w, 16, 32);
            if (fabsf(sc[j]) > max_abs) {
                max_abs = fabsf(sc[j]);
                max_sc = sc[j];
            }
        }
        const float d = max_sc / -128.0f;
        y[i].d = sov_f32_to_half(d);
        const float dq = sov_half_to_f32(y[i].d);
        uint8_t L[QK_K];
        for (int j = 0; j < 16; j++) {
            int s = dq != 0.0f ? nearest_int(sc[j] / dq) : 0;
            s = s > 127 ? 127 : s < -128 ? -128 : s;
            y[i].scales[j] = (int8_t)s;
            const float ds = dq * (float)s;
            for (int k = 0; k < 16; k++) {
                int l = ds != 0.0f ? nearest_int(x[16 * j + k] / ds) : 0;
                l = l < -32 ? -32 : l > 31 ? 31 : l;
                L[16 * j + k] = (uint8_t)(l + 32);
            }
        }
        /* per 128 values: ql low nibbles (0..31, 32..63), high nibbles (64..95, 96..127),
         * qh 2 bits each of the four quarter groups */
        for (int c = 0; c < 2; c++) {
            uint8_t *ql = y[i].ql + 64 * c, *qh = y[i].qh + 32 * c;
            const uint8_t *Lc = L + 128 * c;
            for (int l = 0; l < 32; l++) {
                const uint8_t q1 = Lc[l], q2 = Lc[l + 32], q3 = Lc[l + 64], q4 = Lc[l + 96];
                ql[l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

bool sov_quantize_row(sov_type type, const float *src, void *dst, int64_t n) {
    const sov_type_traits *tr = sov_type_info(type);
    if (!tr || n % tr->block_size != 0) return false;
    switch (type) {
    case SOV_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return true;
    case SOV_TYPE_F16:
        for (int64_t i = 0; i < n; i++) ((sov_half *)dst)[i] = sov_f32_to_half(src[i]);
        return true;
    case SOV_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) ((sov_bf16 *)dst)[i] = sov_f32_to_bf16(src[i]);
        return true;
    case SOV_TYPE_Q4_0: q4_0(src, dst, n / QK); return true;
    case SOV_TYPE_Q4_1: q4_1(src, dst, n / QK); return true;
    case SOV_TYPE_Q5_0: q5_0(src, dst, n / QK); return true;
    case SOV_TYPE_Q5_1: q5_1(src, dst, n / QK); return true;
    case SOV_TYPE_Q8_0: q8_0(src, dst, n / QK); return true;
    case SOV_TYPE_Q4_K: q4_K(src, dst, n / QK_K); return true;
    case SOV_TYPE_Q5_K: q5_K(src, dst, n / QK_K); return true;
    case SOV_TYPE_Q6_K: q6_K(src, dst, n / QK_K); return true;
    case SOV_TYPE_Q8A: sov_quantize_q8a_scalar(src, dst, n); return true;
    case SOV_TYPE_Q8K: sov_quantize_q8k_scalar(src, dst, n); return true;
    case SOV_TYPE_Q8P: sov_quantize_q8p_ref(src, dst, n); return true;
    case SOV_TYPE_Q4_0P:
    case SOV_TYPE_Q8_0P: {
        const sov_type file = type == SOV_TYPE_Q4_0P ? SOV_TYPE_Q4_0 : SOV_TYPE_Q8_0;
        return sov_quantize_row(file, src, dst, n) && sov_repack_row_planar(file, dst, n);
    }
    default: return false;
    }
}
