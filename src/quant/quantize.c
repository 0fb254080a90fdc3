/* quantize.c - the reference quantizers: float rows into every block format sov writes.
 *
 * F16 / BF16: round to nearest, ties to even (core/fp16.h); F16 overflows to infinity
 * beyond 65504, as IEEE conversion does.
 *
 * The 32-value formats (q4_0, q4_1, q5_0, q5_1, q8_0) use their classic definitions, the
 * ones ggml's reference quantizers use, and give the same bytes: the scale is fixed by the
 * block's extreme value (q4_0: d = max / -8 with max the value of largest magnitude, sign
 * kept, so that it lands on level -8 exactly; q4_1: d = (max - min) / 15 with m = min;
 * q8_0: d = amax / 127) and every value goes to the nearest level (truncation of x/d + 8.5
 * for the offset formats, roundf for q8_0).
 *
 * The k-quants (q4_K, q5_K, q6_K) are fitted. Each value has an importance weight
 * w = rms + |x| (rms of its sub-block): errors on large weights cost a dot product more,
 * while the rms term keeps small values from being ignored. Then, per super-block of 256:
 *
 *   1. each sub-block gets the scale (and for q4_K/q5_K the min, x ~ scale * L - min,
 *      min >= 0) that minimises the weighted squared error: a sweep of 21 candidate
 *      scales around the one mapping the sub-block's range onto the levels, each rounded
 *      to integer levels L and refitted by weighted least squares, then a few rounds of
 *      "re-round at the best fit, refit" polishing the winner;
 *   2. the sub-block scales and mins are themselves quantized (6 bits against a float16
 *      super-block d and dmin for q4_K/q5_K, int8 against a float16 d for q6_K): for each
 *      sub-block the integer codes just below and above the exact ratio (and "all zero")
 *      are tried, each with its levels recomputed from the values as dequantization will
 *      see them, and the one with least error is kept;
 *   3. the super-block d (and dmin) are refitted by least squares to the integers just
 *      chosen, rounded to half precision, and step 2 is redone; kept only if the error
 *      falls (up to three times).
 *
 * The error of every candidate is computed with the dequantizer's own float operations,
 * so the choice is made on the values the kernels will really see. Everything is plain
 * float arithmetic in a fixed order: the output is deterministic and the same on every
 * machine (ISO C mode, so the compiler fuses no multiply-adds).
 *
 * Inputs must be finite. Non-finite values give unspecified (but memory-safe, UB-free)
 * output: every float-to-integer conversion is of a value first clamped by comparisons
 * that map NaN to the lower bound, and every code has a defined value. Magnitudes: scales are half precision, so a block
 * whose scale would exceed 65504 saturates there (values beyond roughly 65504 x 8 for
 * q4_0, 65504 x 127 for q8_0, 65504 x 63 x 15 for q4_K are clipped to the largest
 * level), and values so small that their scale underflows half precision (q4_0 below
 * about 1e-7, k-quants below about 1e-6) lose precision gradually and reach zero, never
 * garbage. */
#include <math.h>
#include <string.h>

#include "kernels/scalar_quant.h"
#include "quant/quant.h"

/* ---- helpers ---- */

/* v limited to [lo, hi]; NaN gives lo (comparisons, not fminf: those are inlined). */
static inline float clampf(float v, float lo, float hi) {
    v = v > lo ? v : lo;
    return v < hi ? v : hi;
}

/* v rounded to the nearest integer in [lo, hi] (halves up); NaN gives lo. */
static inline int round_clamp(float v, int lo, int hi) {
    v = clampf(v, (float)lo, (float)hi);
    return (int)(v - (float)lo + 0.5f) + lo; /* the operand is >= 0: truncation is floor */
}

/* A scale limited to the finite half range (NaN gives -65504). */
static inline float clamp_scale(float v) { return clampf(v, -65504.0f, 65504.0f); }

/* A half-precision scale, saturated at the largest finite half instead of overflowing. */
static inline sov_half half_scale(float v) { return sov_f32_to_half(clamp_scale(v)); }

/* The value of largest magnitude, with its sign (the first one on ties). */
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

static void min_max(const float *x, int n, float *mn, float *mx) {
    *mn = *mx = x[0];
    for (int j = 1; j < n; j++) {
        *mn = x[j] < *mn ? x[j] : *mn;
        *mx = x[j] > *mx ? x[j] : *mx;
    }
}

/* ---- the 32-value formats (ggml's reference definitions) ---- */

static void q4_0(const float *x, block_q4_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        const float d = clamp_scale(signed_max(x, QK) / -8.0f), id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = sov_f32_to_half(d);
        for (int j = 0; j < QK / 2; j++) {
            /* truncation of x/d + 8.5 (>= 0.5 for in-range values), at most 15 */
            const int a = (int)clampf(x[j] * id + 8.5f, 0.0f, 15.0f);
            const int b = (int)clampf(x[j + QK / 2] * id + 8.5f, 0.0f, 15.0f);
            y[i].qs[j] = (uint8_t)(a | (b << 4));
        }
    }
}

static void q4_1(const float *x, block_q4_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float mn, mx;
        min_max(x, QK, &mn, &mx);
        const float d = clamp_scale((mx - mn) / 15.0f), id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = sov_f32_to_half(d);
        y[i].m = half_scale(mn);
        for (int j = 0; j < QK / 2; j++) {
            const int a = (int)clampf((x[j] - mn) * id + 0.5f, 0.0f, 15.0f);
            const int b = (int)clampf((x[j + QK / 2] - mn) * id + 0.5f, 0.0f, 15.0f);
            y[i].qs[j] = (uint8_t)(a | (b << 4));
        }
    }
}

/* the fifth bits of the 32 values of a q5 block: bit j of qh is value j's */
static void put_q5(const int *q, uint8_t qs[QK / 2], uint8_t qh_out[4]) {
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; j++) {
        qs[j] = (uint8_t)((q[j] & 0xF) | ((q[j + QK / 2] & 0xF) << 4));
        qh |= (uint32_t)((q[j] >> 4) & 1) << j;
        qh |= (uint32_t)((q[j + QK / 2] >> 4) & 1) << (j + QK / 2);
    }
    memcpy(qh_out, &qh, 4);
}

static void q5_0(const float *x, block_q5_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        const float d = clamp_scale(signed_max(x, QK) / -16.0f), id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = sov_f32_to_half(d);
        int q[QK];
        for (int j = 0; j < QK; j++) q[j] = (int)clampf(x[j] * id + 16.5f, 0.0f, 31.0f);
        put_q5(q, y[i].qs, y[i].qh);
    }
}

static void q5_1(const float *x, block_q5_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float mn, mx;
        min_max(x, QK, &mn, &mx);
        const float d = clamp_scale((mx - mn) / 31.0f), id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = sov_f32_to_half(d);
        y[i].m = half_scale(mn);
        int q[QK];
        for (int j = 0; j < QK; j++) q[j] = (int)clampf((x[j] - mn) * id + 0.5f, 0.0f, 31.0f);
        put_q5(q, y[i].qs, y[i].qh);
    }
}

static void q8_0(const float *x, block_q8_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        const float d = clamp_scale(amax / 127.0f), id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = sov_f32_to_half(d);
        for (int j = 0; j < QK; j++) y[i].qs[j] = (int8_t)roundf(clampf(x[j] * id, -127.0f, 127.0f));
    }
}

/* ---- k-quants, step 1: the best scale (and min) of one sub-block ---- */

/* Importance of each value of a sub-block: the sub-block's RMS plus |x|. */
static void importance(const float *x, int n, float *w) {
    float ss = 0.0f;
    for (int j = 0; j < n; j++) ss += x[j] * x[j];
    const float rms = sqrtf(ss / (float)n);
    for (int j = 0; j < n; j++) w[j] = rms + fabsf(x[j]);
}

typedef struct fit {
    float scale; /* x ~ scale * L - min */
    float min;   /* >= 0 (subtracted); 0 for the symmetric fits */
    float err;   /* weighted squared error */
} fit;

/* Weighted sums of a sub-block that do not depend on the levels. */
typedef struct wsums {
    float sw, sx, sxx; /* sum w, sum w x, sum w x^2 */
} wsums;

static wsums sums_of(const float *x, const float *w, int n) {
    wsums s = {0, 0, 0};
    for (int j = 0; j < n; j++) {
        s.sw += w[j];
        s.sx += w[j] * x[j];
        s.sxx += w[j] * x[j] * x[j];
    }
    return s;
}

/* Weighted least-squares scale and min for given levels L in [0, nmax] (min >= 0; when
 * the unconstrained optimum wants a negative min the constrained one has min = 0); kept
 * in *best when its error is lower. The error comes from the sums (expanded square, in
 * double): it only ranks candidates, and its rounding (~1e-7 of sum w x^2) is far below
 * the difference one level makes. Returns whether kept. */
static bool try_affine(const float *x, const float *w, int n, const uint8_t *L, wsums ws, fit *best) {
    float sl = 0, sl2 = 0, sxl = 0;
    for (int j = 0; j < n; j++) {
        const float l = (float)L[j];
        sl += w[j] * l;
        sl2 += w[j] * l * l;
        sxl += w[j] * l * x[j];
    }
    const float det = ws.sw * sl2 - sl * sl;
    if (!(det > 0.0f)) return false;
    float scale = (ws.sw * sxl - ws.sx * sl) / det, min = (sl * sxl - sl2 * ws.sx) / det;
    if (min < 0.0f) {
        min = 0.0f;
        scale = sxl / sl2;
    }
    if (!(scale > 0.0f)) return false;
    /* sum w (scale L - min - x)^2 */
    const double s = scale, m = min;
    const float err = (float)(s * s * sl2 + m * m * ws.sw + ws.sxx - 2.0 * s * m * sl - 2.0 * s * sxl + 2.0 * m * ws.sx);
    if (!(err < best->err)) return false;
    *best = (fit){scale, min, err};
    return true;
}

/* x ~ scale * L - min, L in [0, nmax], min >= 0 (q4_K, q5_K sub-blocks of 32). */
static fit fit_affine(const float *x, const float *w, int n, int nmax) {
    float mn, mx;
    min_max(x, n, &mn, &mx);
    const wsums ws = sums_of(x, w, n);
    if (mn > 0.0f) mn = 0.0f; /* the min term can only lower values */
    if (!(mx > mn)) return (fit){0.0f, -mn, 0.0f}; /* constant <= 0: the min alone is exact */
    fit best = {(mx - mn) / (float)nmax, -mn, INFINITY};
    uint8_t L[32];
    for (int k = -10; k <= 10; k++) {
        const float iscale = ((float)nmax + 0.1f * (float)k) / (mx - mn);
        for (int j = 0; j < n; j++) L[j] = (uint8_t)round_clamp(iscale * (x[j] - mn), 0, nmax);
        try_affine(x, w, n, L, ws, &best);
    }
    for (int it = 0; it < 3 && best.err < INFINITY; it++) {
        const float iscale = 1.0f / best.scale;
        for (int j = 0; j < n; j++) L[j] = (uint8_t)round_clamp((x[j] + best.min) * iscale, 0, nmax);
        if (!try_affine(x, w, n, L, ws, &best)) break;
    }
    if (best.err == INFINITY) best.err = 0.0f; /* no candidate fitted: the initial guess */
    return best;
}

/* Weighted least-squares scale for given levels (symmetric: x ~ scale * L); the error
 * sum w x^2 - (sum w x L)^2 / sum w L^2 as above. */
static bool try_linear(const float *x, const float *w, int n, const int8_t *L, float sxx, fit *best) {
    float sl2 = 0, sxl = 0;
    for (int j = 0; j < n; j++) {
        sl2 += w[j] * (float)L[j] * (float)L[j];
        sxl += w[j] * (float)L[j] * x[j];
    }
    if (!(sl2 > 0.0f)) return false;
    const float err = (float)((double)sxx - (double)sxl * sxl / sl2);
    if (!(err < best->err)) return false;
    *best = (fit){sxl / sl2, 0.0f, err};
    return true;
}

/* x ~ scale * L, L in [-nmax, nmax - 1] (q6_K sub-blocks of 16). The scale's sign is
 * chosen so that the value of largest magnitude falls on the longer side, -nmax. */
static fit fit_symmetric(const float *x, const float *w, int n, int nmax) {
    const float max = signed_max(x, n);
    if (max == 0.0f) return (fit){0.0f, 0.0f, 0.0f};
    fit best = {max / -(float)nmax, 0.0f, INFINITY};
    const float sxx = sums_of(x, w, n).sxx;
    int8_t L[16];
    for (int k = -10; k <= 10; k++) {
        const float iscale = -((float)nmax + 0.1f * (float)k) / max;
        for (int j = 0; j < n; j++) L[j] = (int8_t)round_clamp(iscale * x[j], -nmax, nmax - 1);
        try_linear(x, w, n, L, sxx, &best);
    }
    for (int it = 0; it < 3 && best.err < INFINITY; it++) {
        const float iscale = 1.0f / best.scale;
        for (int j = 0; j < n; j++) L[j] = (int8_t)round_clamp(x[j] * iscale, -nmax, nmax - 1);
        if (!try_linear(x, w, n, L, sxx, &best)) break;
    }
    if (best.err == INFINITY) best.err = 0.0f;
    return best;
}

/* ---- k-quants, steps 2 and 3: q4_K / q5_K super-blocks ---- */

/* Levels and weighted error of a sub-block dequantized as s * L - m (s = d * ls,
 * m = dmin * lm, both computed as the dequantizer does). */
static float levels_affine(const float *x, const float *w, int nmax, float s, float m, uint8_t *L) {
    float err = 0.0f;
    const float is = s > 0.0f ? 1.0f / s : 0.0f;
    for (int j = 0; j < 32; j++) {
        const int l = s > 0.0f ? round_clamp((x[j] + m) * is, 0, nmax) : 0;
        L[j] = (uint8_t)l;
        const float e = s * (float)l - m - x[j];
        err += w[j] * e * e;
    }
    return err;
}

/* one sub-block's codes against a super-block d, dmin: the integers around the exact
 * ratios (and zero), whichever gives least error */
static float pick_scale_min(const float *x, const float *w, int nmax, fit f, float d, float dmin, uint8_t *ls,
                            uint8_t *lm, uint8_t *L) {
    const float rs = d > 0.0f ? f.scale / d : 0.0f, rm = dmin > 0.0f ? f.min / dmin : 0.0f;
    /* floor of the ratios (non-negative: truncation) */
    const int s0 = (int)clampf(rs, 0.0f, 63.0f), m0 = (int)clampf(rm, 0.0f, 63.0f);
    /* zero first, always taken (so that even a NaN error leaves defined codes): never
     * worse than dropping the sub-block; then floor and ceiling of each ratio */
    *ls = *lm = 0;
    float best = levels_affine(x, w, nmax, 0.0f, 0.0f, L);
    uint8_t Lt[32];
    for (int c = 0; c < 4; c++) {
        const int a = s0 + (c & 1), b = m0 + (c >> 1);
        if (a > 63 || b > 63 || (a == 0 && b == 0)) continue;
        const float err = levels_affine(x, w, nmax, d * (float)a, dmin * (float)b, Lt);
        if (err < best) {
            best = err;
            *ls = (uint8_t)a;
            *lm = (uint8_t)b;
            memcpy(L, Lt, 32);
        }
    }
    return best;
}

/* Packs 6-bit scale ls and min lm of sub-block j into the 12-byte k-quant layout (the
 * inverse of sov_k_scale_min): j < 4 in the low 6 bits of bytes j and j+4; j >= 4 in the
 * nibbles of byte j+4, with the top 2 bits in the high bits of bytes j-4 and j. */
static void pack_scale_min(uint8_t *q, int j, int ls, int lm) {
    if (j < 4) {
        q[j] = (uint8_t)((q[j] & 0xC0) | ls);
        q[j + 4] = (uint8_t)((q[j + 4] & 0xC0) | lm);
    } else {
        q[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        q[j - 4] = (uint8_t)((q[j - 4] & 0x3F) | ((ls >> 4) << 6));
        q[j] = (uint8_t)((q[j] & 0x3F) | ((lm >> 4) << 6));
    }
}

typedef struct kcodes {
    sov_half d, dmin;
    uint8_t ls[8], lm[8];
    uint8_t L[QK_K];
    float err;
} kcodes;

static void codes_affine(const float *x, const float *w, int nmax, const fit *f, sov_half d, sov_half dmin,
                         kcodes *k) {
    k->d = d;
    k->dmin = dmin;
    k->err = 0.0f;
    const float df = sov_half_to_f32(d), mf = sov_half_to_f32(dmin);
    for (int j = 0; j < 8; j++)
        k->err += pick_scale_min(x + 32 * j, w + 32 * j, nmax, f[j], df, mf, &k->ls[j], &k->lm[j], k->L + 32 * j);
}

/* least-squares d, dmin for the integers of k: x ~ d (ls L) - dmin lm */
static bool refit_super_affine(const float *x, const float *w, const kcodes *k, float *d, float *dmin) {
    double saa = 0, sab = 0, sbb = 0, sax = 0, sbx = 0;
    for (int i = 0; i < QK_K; i++) {
        const double a = (double)k->ls[i / 32] * k->L[i], b = (double)k->lm[i / 32];
        saa += w[i] * a * a;
        sab += w[i] * a * b;
        sbb += w[i] * b * b;
        sax += w[i] * a * x[i];
        sbx += w[i] * b * x[i];
    }
    if (!(saa > 0)) return false;
    const double det = saa * sbb - sab * sab;
    double dd = sax / saa, dm = 0.0;
    if (sbb > 0 && det > 1e-12 * saa * sbb) {
        dd = (sax * sbb - sbx * sab) / det;
        dm = (sax * sab - sbx * saa) / det;
        if (dm < 0) {
            dm = 0.0;
            dd = sax / saa;
        }
    }
    if (!(dd > 0)) return false;
    *d = (float)dd;
    *dmin = (float)dm;
    return true;
}

static void kquant_affine(const float *x, int nmax, kcodes *best) {
    float w[QK_K];
    fit f[8];
    float max_sc = 0.0f, max_mn = 0.0f;
    for (int j = 0; j < 8; j++) {
        importance(x + 32 * j, 32, w + 32 * j);
        f[j] = fit_affine(x + 32 * j, w + 32 * j, 32, nmax);
        max_sc = fmaxf(max_sc, f[j].scale);
        max_mn = fmaxf(max_mn, f[j].min);
    }
    codes_affine(x, w, nmax, f, half_scale(max_sc / 63.0f), half_scale(max_mn / 63.0f), best);
    for (int it = 0; it < 3; it++) {
        float d, dmin;
        if (!refit_super_affine(x, w, best, &d, &dmin)) break;
        kcodes trial;
        codes_affine(x, w, nmax, f, half_scale(d), half_scale(dmin), &trial);
        if (!(trial.err < best->err)) break;
        *best = trial;
    }
}

static void q4_K(const float *x, block_q4_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        kcodes k;
        kquant_affine(x, 15, &k);
        y[i].d = k.d;
        y[i].dmin = k.dmin;
        memset(y[i].scales, 0, 12);
        for (int j = 0; j < 8; j++) pack_scale_min(y[i].scales, j, k.ls[j], k.lm[j]);
        /* per 64 values, 32 bytes: low nibbles the first 32 values, high nibbles the next */
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * c + l] = (uint8_t)(k.L[64 * c + l] | (k.L[64 * c + 32 + l] << 4));
    }
}

static void q5_K(const float *x, block_q5_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        kcodes k;
        kquant_affine(x, 31, &k);
        y[i].d = k.d;
        y[i].dmin = k.dmin;
        memset(y[i].scales, 0, 12);
        for (int j = 0; j < 8; j++) pack_scale_min(y[i].scales, j, k.ls[j], k.lm[j]);
        /* low 4 bits as q4_K; the fifth bit of value l of sub-block s is bit s of qh[l] */
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int c = 0; c < 4; c++) {
            for (int l = 0; l < 32; l++) {
                const uint8_t a = k.L[64 * c + l], b = k.L[64 * c + 32 + l];
                y[i].qs[32 * c + l] = (uint8_t)((a & 0xF) | ((b & 0xF) << 4));
                y[i].qh[l] |= (uint8_t)(((a >> 4) & 1) << (2 * c));
                y[i].qh[l] |= (uint8_t)(((b >> 4) & 1) << (2 * c + 1));
            }
        }
    }
}

/* ---- k-quants, steps 2 and 3: q6_K super-blocks ---- */

/* levels (stored + 32) and weighted error of 16 values dequantized as s * (L - 32) */
static float levels_symmetric(const float *x, const float *w, float s, uint8_t *L) {
    float err = 0.0f;
    const float is = s != 0.0f ? 1.0f / s : 0.0f;
    for (int j = 0; j < 16; j++) {
        const int l = s != 0.0f ? round_clamp(x[j] * is, -32, 31) : 0;
        L[j] = (uint8_t)(l + 32);
        const float e = s * (float)l - x[j];
        err += w[j] * e * e;
    }
    return err;
}

typedef struct k6codes {
    sov_half d;
    int8_t sc[16];
    uint8_t L[QK_K]; /* 0..63 */
    float err;
} k6codes;

static void codes_symmetric(const float *x, const float *w, const fit *f, sov_half d, k6codes *k) {
    k->d = d;
    k->err = 0.0f;
    const float df = sov_half_to_f32(d);
    for (int j = 0; j < 16; j++) {
        const float r = df != 0.0f ? clampf(f[j].scale / df, -128.0f, 127.0f) : 0.0f;
        const int s0 = (int)floorf(r);
        /* zero first, always taken; then the codes below and above the ratio */
        k->sc[j] = 0;
        float best = levels_symmetric(x + 16 * j, w + 16 * j, 0.0f, k->L + 16 * j);
        uint8_t Lt[16];
        for (int c = 0; c < 2; c++) {
            const int s = s0 + c > 127 ? 127 : s0 + c;
            if (s == 0) continue;
            const float err = levels_symmetric(x + 16 * j, w + 16 * j, df * (float)s, Lt);
            if (err < best) {
                best = err;
                k->sc[j] = (int8_t)s;
                memcpy(k->L + 16 * j, Lt, 16);
            }
        }
        k->err += best;
    }
}

static void q6_K(const float *x, block_q6_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        float w[QK_K];
        fit f[16];
        float max_abs = 0.0f, max_sc = 0.0f;
        for (int j = 0; j < 16; j++) {
            importance(x + 16 * j, 16, w + 16 * j);
            f[j] = fit_symmetric(x + 16 * j, w + 16 * j, 16, 32);
            if (fabsf(f[j].scale) > max_abs) {
                max_abs = fabsf(f[j].scale);
                max_sc = f[j].scale;
            }
        }
        /* the largest scale on code -128, the long side of int8 */
        k6codes k;
        codes_symmetric(x, w, f, half_scale(max_sc / -128.0f), &k);
        for (int it = 0; it < 3; it++) {
            double saa = 0, sax = 0; /* x ~ d (sc L) */
            for (int l = 0; l < QK_K; l++) {
                const double a = (double)k.sc[l / 16] * (k.L[l] - 32);
                saa += w[l] * a * a;
                sax += w[l] * a * x[l];
            }
            if (!(saa > 0)) break;
            k6codes trial;
            codes_symmetric(x, w, f, half_scale((float)(sax / saa)), &trial);
            if (!(trial.err < k.err)) break;
            k = trial;
        }
        y[i].d = k.d;
        memcpy(y[i].scales, k.sc, 16);
        /* per 128 values: ql[l] holds values l (low nibble) and l+64 (high), ql[l+32]
         * values l+32 and l+96; qh[l] the top two bits of l, l+32, l+64, l+96 */
        for (int c = 0; c < 2; c++) {
            uint8_t *ql = y[i].ql + 64 * c, *qh = y[i].qh + 32 * c;
            const uint8_t *Lc = k.L + 128 * c;
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
    if (!tr || n < 0 || n % tr->block_size != 0) return false;
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
