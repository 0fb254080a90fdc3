/* Tiled online-softmax attention over the paged KV cache (kernels/attn_tiled.h) and the
 * quantized KV rows, for every kernel table this CPU runs, against references written
 * out here:
 *
 *   kv_quantize_q8_0 / q4_0: each value within the group's rounding bound of the input
 *     (Q8_0 |s|/2, Q4_0 |s|, plus the f16 rounding of s: 127 |s| 2^-11) as decoded by
 *     this file's own reading of the format (kv_quant_impl.h: f16 scale, int8 codes /
 *     nibbles i and i + g/2); bytes identical to the scalar table's; kv_dequant_* equal
 *     to this file's decoding bit for bit (one float product each), and so are the
 *     transposed block decodings kv_dequant_t_* (slots past the rows zero).
 *   attn_scores_q8_0 / _q4_0 (tables with integer scores): bit for bit the reference
 *     kvq_scores_ref, which is within 1e-5 (of the products' magnitude) of the query's
 *     and keys' codes decoded here and multiplied in double.
 *   attn_scores2_f16 (tables with it): bit for bit attn_scores_f16 on each of the two
 *     blocks, with and without blocks ahead to prefetch.
 *   attn_values_q8_0 / _q4_0 (tables with fused quantized values): bit for bit the rows
 *     decoded by the table's kv_dequant_* and summed by its attn_values_f32.
 *   exp_sum: every exp(x - max) within 4e-7 relative of double, the sum within 1e-6;
 *     max_f32: the largest value at every length and position, NaN and -inf ignored.
 *   kv_attn_run with row ends (a prompt's consecutive tokens in one call): every row
 *     bit for bit what it gets alone over its own positions, for every type, GQA ratio,
 *     block size and end (the batch invariance of the forward pass rests on it).
 *   kv_attn_run + kv_attn_merge: for K/V types f16, f32, q8_0, q4_0 (and mixed),
 *     GQA ratios 1..8, head sizes 8..128, block sizes 16 and 5, lengths 1..2000 across
 *     block and tile boundaries, blocks in shuffled pool order, the range split into
 *     1..7 parts at arbitrary points (split-K) and windows starting mid-block: against
 *     softmax(q K^T / sqrt(D)) V in double over the keys and values as stored (decoded
 *     here; with integer scores, the query as quantized to codes). Bound: 2e-6 * max|v| *
 *     (1 + sqrt(n)) — float rounding of scores and sums
 *     in a different order; a position dropped or counted twice moves the output by
 *     ~max|v| / n, >= 1e-5 of that scale for n <= 2000, 5x outside (measured: ~1.4e-7).
 * No files are read, so this test runs cross-compiled under qemu-aarch64 too. */
#include "test.h"

#include "kernels/attn_tiled.h"
#include "kernels/kernels.h"
#include "kernels/kv_quant_impl.h"

static test_rng rng = {0xa77e};

static int rndi(int n) { return (int)(test_rng_next(&rng) % (uint64_t)n); }

static float f16_of_bytes(const uint8_t *p) {
    sov_half h;
    memcpy(&h, p, 2);
    return sov_half_to_f32(h);
}

/* this file's reading of one quantized row (see the top comment) */
static void decode_row(sov_kv_type t, const uint8_t *p, float *y, int d, int g) {
    for (int b = 0; b < d; b += g) {
        const float s = f16_of_bytes(p);
        if (t == SOV_KV_Q8_0) {
            for (int i = 0; i < g; i++)
                y[b + i] = s * (float)(int8_t)p[2 + i];
            p += 2 + g;
        } else {
            for (int i = 0; i < g; i++) {
                const int byte = p[2 + i % (g / 2)];
                y[b + i] = s * (float)((i < g / 2 ? byte & 15 : byte >> 4) - 8);
            }
            p += 2 + g / 2;
        }
    }
}

static size_t row_bytes(sov_kv_type t, int d, int g) {
    switch (t) {
    case SOV_KV_F16: return (size_t)d * 2;
    case SOV_KV_F32: return (size_t)d * 4;
    case SOV_KV_Q8_0: return (size_t)(d / g) * (2 + (size_t)g);
    default: return (size_t)(d / g) * (2 + (size_t)g / 2);
    }
}

static bool int_scores(const sov_kernels *k, sov_kv_type kt) {
    return (kt == SOV_KV_Q8_0 && k->attn_scores_q8_0) || (kt == SOV_KV_Q4_0 && k->attn_scores_q4_0);
}

/* attn_scores_q8_0 / _q4_0, where the table has them: bit for bit kvq_scores_ref (the
 * integer dot products are exact and the float steps the same), for 1..9 query rows,
 * 1..40 positions (several 16-position strips and partial ones), head sizes 32..256 and
 * padded rows; and the reference itself against the codes decoded here, in double */
static void check_int_scores(const sov_kernels *k) {
    if (!k->attn_scores_q8_0 && !k->attn_scores_q4_0) return;
    static const int dims[] = {32, 64, 128, 256};
    int bad = 0, cases = 0;
    double worst = 0;
    for (size_t di = 0; di < SOV_ARRAY_LEN_T(dims); di++) {
        const int d = dims[di];
        for (int t = SOV_KV_Q8_0; t <= SOV_KV_Q4_0; t++) {
            void (*fn)(float *, size_t, const int8_t *, const float *, const int32_t *, int, const void *,
                       size_t, int, int, float, const void *) =
                t == SOV_KV_Q8_0 ? k->attn_scores_q8_0 : k->attn_scores_q4_0;
            if (!fn) continue;
            const size_t rb = row_bytes((sov_kv_type)t, d, 32) + (size_t)(t == SOV_KV_Q8_0 ? 0 : 6);
            for (int nq = 1; nq <= 9; nq += 2 + (nq == 3)) /* 1, 3, 4 (a 4-row tile), 6, 8 */
                for (int n = 1; n <= 40; n += n < 17 ? 1 : 7) {
                    uint8_t *rows = malloc((size_t)n * rb);
                    float *q = malloc((size_t)nq * d * sizeof *q),
                          *qd = malloc((size_t)nq * d / 32 * sizeof *qd);
                    int8_t *qq = malloc((size_t)nq * d);
                    int32_t *qs = malloc((size_t)nq * d / 32 * sizeof *qs);
                    float *got = malloc((size_t)nq * 48 * sizeof *got),
                          *want = malloc((size_t)nq * 48 * sizeof *want);
                    float x[256], kd[256];
                    for (int j = 0; j < n; j++) {
                        for (int i = 0; i < d; i++)
                            x[i] = test_rng_float(&rng) * (j == 1 ? 0.0f : 3.0f);
                        if (t == SOV_KV_Q8_0)
                            k->kv_quantize_q8_0(x, rows + (size_t)j * rb, d, 32);
                        else
                            k->kv_quantize_q4_0(x, rows + (size_t)j * rb, d, 32);
                    }
                    for (int i = 0; i < nq * d; i++)
                        q[i] = test_rng_float(&rng) * (i < 32 ? 0.0f : 2.0f);
                    kvq_quantize_query(q, nq, d, qq, qd, qs);
                    for (int i = 0; i < nq * 48; i++)
                        got[i] = want[i] = NAN;
                    fn(got, 48, qq, qd, qs, nq, rows, rb, n, d, 0.125f, n % 3 ? rows : NULL); /* a prefetch hint or none */
                    kvq_scores_ref(t == SOV_KV_Q4_0, want, 48, qq, qd, nq, rows, rb, n, d, 0.125f);
                    for (int h = 0; h < nq; h++)
                        for (int j = 0; j < 48; j++) {
                            const float g = got[h * 48 + j], w = want[h * 48 + j];
                            cases++;
                            if (memcmp(&g, &w, sizeof g) != 0 && bad++ < 3)
                                fprintf(stderr, "%s int scores type %d d=%d nq=%d n=%d [%d][%d]: %g != %g\n",
                                        k->isa, t, d, nq, n, h, j, g, w);
                            if (j >= n) continue;
                            decode_row((sov_kv_type)t, rows + (size_t)j * rb, kd, d, 32);
                            double ref = 0, mag = 1e-30;
                            for (int i = 0; i < d; i++) {
                                const double pr = (double)qd[h * d / 32 + i / 32] * qq[h * d + i] * kd[i];
                                ref += pr;
                                mag += fabs(pr);
                            }
                            worst = fmax(worst, fabs(0.125 * ref - w) / (0.125 * mag));
                        }
                    free(rows);
                    free(q);
                    free(qd);
                    free(qq);
                    free(qs);
                    free(got);
                    free(want);
                }
        }
    }
    /* a query row holding an inf or a NaN scores NaN everywhere (as in floats), the other
     * rows as usual: never codes made from a float-to-int conversion of a NaN */
    if (k->attn_scores_q8_0) {
        float q[2 * 64], x[64], qd[4], got[2 * 16];
        int8_t qq[2 * 64];
        int32_t qs[4];
        uint8_t rows[16 * 68];
        for (int j = 0; j < 16; j++) {
            for (int i = 0; i < 64; i++) x[i] = test_rng_float(&rng);
            k->kv_quantize_q8_0(x, rows + (size_t)j * 68, 64, 32);
        }
        for (int bad_v = 0; bad_v < 2; bad_v++) {
            for (int i = 0; i < 128; i++) q[i] = test_rng_float(&rng);
            q[5] = bad_v ? NAN : INFINITY;
            kvq_quantize_query(q, 2, 64, qq, qd, qs);
            k->attn_scores_q8_0(got, 16, qq, qd, qs, 2, rows, 68, 16, 64, 0.125f, NULL);
            int nan0 = 0, fin1 = 0;
            for (int j = 0; j < 16; j++) {
                nan0 += isnan(got[j]);
                fin1 += isfinite(got[16 + j]);
            }
            CHECK_MSG(nan0 == 16 && fin1 == 16, "%s integer scores with a %s in the query: %d NaN, %d finite of 16",
                      k->isa, bad_v ? "NaN" : "inf", nan0, fin1);
        }
    }
    CHECK_MSG(bad == 0, "%s integer scores: %d of %d differ from kvq_scores_ref", k->isa, bad, cases);
    CHECK_MSG(worst < 1e-5,
              "%s kvq_scores_ref: %.3g of the products' magnitude off the decoded codes' product", k->isa,
              worst);
    fprintf(stderr, "  %-12s integer scores: %d bit for bit, reference within %.2g\n", k->isa, cases, worst);
}

/* attn_scores2_f16, where the table has it: bit for bit attn_scores_f16 on each of the two
 * blocks, for 1..9 query rows, 1..32 positions (one block, or a full one and part of the
 * next), head sizes 16..128; scores past n untouched */
static void check_scores2(const sov_kernels *k) {
    if (!k->attn_scores2_f16) return;
    enum { BS = 16, LD = 40 };
    int bad = 0, cases = 0;
    for (int d = 16; d <= 128; d += 16)
        for (int nq = 1; nq <= 9; nq++)
            for (int n = 1; n <= 2 * BS; n += 1 + (n > 18) * 2) {
                sov_half *K0 = malloc((size_t)d * BS * sizeof *K0), *K1 = malloc((size_t)d * BS * sizeof *K1);
                float *q = malloc((size_t)nq * d * sizeof *q);
                float *got = malloc((size_t)nq * LD * sizeof *got), *want = malloc((size_t)nq * LD * sizeof *want);
                for (int i = 0; i < d * BS; i++) {
                    K0[i] = sov_f32_to_half(test_rng_float(&rng) * 2.0f);
                    K1[i] = sov_f32_to_half(test_rng_float(&rng) * 2.0f);
                }
                for (int i = 0; i < nq * d; i++) q[i] = test_rng_float(&rng);
                for (int i = 0; i < nq * LD; i++) got[i] = want[i] = -7.0f;
                /* the prefetch hint (blocks of the same shape; here the other block, or none)
                 * leaves every score as it is */
                const int hint = (d / 16 + nq + n) % 2;
                k->attn_scores2_f16(got, LD, q, nq, K0, K1, n, BS, d, 0.125f, hint ? K1 : NULL, hint ? K0 : NULL);
                k->attn_scores_f16(want, LD, q, nq, K0, n < BS ? n : BS, BS, d, 0.125f, NULL);
                if (n > BS) k->attn_scores_f16(want + BS, LD, q, nq, K1, n - BS, BS, d, 0.125f, NULL);
                for (int i = 0; i < nq * LD; i++) {
                    cases++;
                    if (memcmp(&got[i], &want[i], sizeof got[i]) != 0 && bad++ < 3)
                        fprintf(stderr, "%s scores2 d=%d nq=%d n=%d [%d][%d]: %.9g != %.9g\n", k->isa, d, nq, n,
                                i / LD, i % LD, got[i], want[i]);
                }
                free(K0);
                free(K1);
                free(q);
                free(got);
                free(want);
            }
    CHECK_MSG(bad == 0, "%s attn_scores2_f16: %d of %d differ from attn_scores_f16 block by block", k->isa, bad,
              cases);
    fprintf(stderr, "  %-12s two-block scores: %d bit for bit\n", k->isa, cases);
}

/* attn_values_q8_0 / _q4_0, where the table has them: bit for bit the rows decoded by the
 * table's kv_dequant_* and summed by its attn_values_f32 (the same product s x code, then
 * the same fma chains), for 1..9 query rows, 1..16 positions, head sizes 32..256, padded
 * rows, weights with zeros and rows that are all zero; and out is added to, not set */
static void check_fused_values(const sov_kernels *k) {
    if (!k->attn_values_q8_0 && !k->attn_values_q4_0) return;
    static const int dims[] = {32, 64, 128, 256};
    enum { LDP = 20 };
    int bad = 0, cases = 0;
    for (size_t di = 0; di < SOV_ARRAY_LEN_T(dims); di++) {
        const int d = dims[di];
        for (int t = SOV_KV_Q8_0; t <= SOV_KV_Q4_0; t++) {
            void (*fn)(float *, const float *, size_t, int, const void *, size_t, int, int, const void *) =
                t == SOV_KV_Q8_0 ? k->attn_values_q8_0 : k->attn_values_q4_0;
            if (!fn) continue;
            const size_t rb = row_bytes((sov_kv_type)t, d, 32) + (size_t)(t == SOV_KV_Q8_0 ? 2 : 0);
            for (int nq = 1; nq <= 9; nq++)
                for (int n = 1; n <= 16; n += 1 + (n > 4) * 4) {
                    uint8_t *rows = malloc((size_t)n * rb);
                    float *p = malloc((size_t)nq * LDP * sizeof *p), *vf = malloc((size_t)n * d * sizeof *vf);
                    float *got = malloc((size_t)nq * d * sizeof *got), *want = malloc((size_t)nq * d * sizeof *want);
                    float x[256];
                    for (int j = 0; j < n; j++) {
                        for (int i = 0; i < d; i++)
                            x[i] = test_rng_float(&rng) * (j == 1 ? 0.0f : 4.0f);
                        if (t == SOV_KV_Q8_0) {
                            k->kv_quantize_q8_0(x, rows + (size_t)j * rb, d, 32);
                            k->kv_dequant_q8_0(rows + (size_t)j * rb, vf + (size_t)j * d, d, 32);
                        } else {
                            k->kv_quantize_q4_0(x, rows + (size_t)j * rb, d, 32);
                            k->kv_dequant_q4_0(rows + (size_t)j * rb, vf + (size_t)j * d, d, 32);
                        }
                    }
                    for (int i = 0; i < nq * LDP; i++)
                        p[i] = i % 7 == 3 ? 0.0f : test_rng_float(&rng) + 0.5f;
                    for (int i = 0; i < nq * d; i++)
                        got[i] = want[i] = test_rng_float(&rng);
                    fn(got, p, LDP, nq, rows, rb, n, d, nq % 2 ? rows : NULL); /* a prefetch hint or none */
                    k->attn_values_f32(want, p, LDP, nq, vf, n, d);
                    for (int i = 0; i < nq * d; i++) {
                        cases++;
                        if (memcmp(&got[i], &want[i], sizeof got[i]) != 0 && bad++ < 3)
                            fprintf(stderr, "%s fused values type %d d=%d nq=%d n=%d [%d]: %.9g != %.9g\n",
                                    k->isa, t, d, nq, n, i, got[i], want[i]);
                    }
                    free(rows);
                    free(p);
                    free(vf);
                    free(got);
                    free(want);
                }
        }
    }
    CHECK_MSG(bad == 0, "%s fused quantized values: %d of %d differ from dequantize + attn_values_f32", k->isa,
              bad, cases);
    fprintf(stderr, "  %-12s fused quantized values: %d bit for bit\n", k->isa, cases);
}

/* kv_dequant_t_*: n rows of a block transposed, bit for bit the rows' own decoding, the
 * slots past n zero (every n, head size and both block sizes) */
static void check_dequant_t(const sov_kernels *k) {
    static const int dims[] = {8, 32, 64, 128, 256};
    int bad = 0;
    for (size_t di = 0; di < SOV_ARRAY_LEN_T(dims); di++) {
        const int d = dims[di], g = d < 32 ? d : 32;
        for (int t = SOV_KV_Q8_0; t <= SOV_KV_Q4_0; t++) {
            const size_t rb = row_bytes((sov_kv_type)t, d, g) + (size_t)(t == SOV_KV_Q8_0 ? 0 : 6); /* any stride */
            for (int ld = 5; ld <= 16; ld += 11)
                for (int n = 1; n <= ld; n++) {
                    uint8_t *rows = malloc((size_t)n * rb);
                    float *y = malloc((size_t)d * ld * sizeof *y), x[256], want[256];
                    for (int j = 0; j < n; j++) {
                        for (int i = 0; i < d; i++) x[i] = test_rng_float(&rng) * (j == 2 ? 0.0f : 3.0f);
                        if (t == SOV_KV_Q8_0) k->kv_quantize_q8_0(x, rows + (size_t)j * rb, d, g);
                        else k->kv_quantize_q4_0(x, rows + (size_t)j * rb, d, g);
                    }
                    for (size_t i = 0; i < (size_t)d * ld; i++) y[i] = NAN;
                    if (t == SOV_KV_Q8_0) k->kv_dequant_t_q8_0(rows, rb, n, y, ld, d, g);
                    else k->kv_dequant_t_q4_0(rows, rb, n, y, ld, d, g);
                    for (int j = 0; j < ld; j++) {
                        if (j < n) decode_row((sov_kv_type)t, rows + (size_t)j * rb, want, d, g);
                        for (int i = 0; i < d; i++) {
                            const float w = j < n ? want[i] : 0.0f, got = y[(size_t)i * ld + j];
                            if (memcmp(&w, &got, sizeof w) != 0 && bad++ < 3)
                                fprintf(stderr, "%s dequant_t type %d d=%d ld=%d n=%d [%d][%d]: %g != %g\n", k->isa,
                                        t, d, ld, n, i, j, got, w);
                        }
                    }
                    free(rows);
                    free(y);
                }
        }
    }
    CHECK_MSG(bad == 0, "%s kv_dequant_t: %d values differ", k->isa, bad);
}

static void check_quant_rows(const sov_kernels *k) {
    static const int dims[] = {2, 4, 8, 16, 32, 64, 96, 128, 256};
    int bad = 0;
    for (size_t di = 0; di < SOV_ARRAY_LEN_T(dims); di++) {
        const int d = dims[di], g = d < 32 ? d : 32;
        float x[256], y[256], ref[256];
        uint8_t q[512], qs[512];
        for (int rep = 0; rep < 20; rep++) {
            const float mag = rep % 3 == 0 ? 1e-3f : rep % 3 == 1 ? 1.0f : 300.0f;
            for (int i = 0; i < d; i++)
                x[i] = test_rng_float(&rng) * mag;
            if (rep == 5) memset(x, 0, sizeof x); /* an all-zero group: scale 0 */
            for (int t = SOV_KV_Q8_0; t <= SOV_KV_Q4_0; t++) {
                const size_t rb = row_bytes((sov_kv_type)t, d, g);
                (t == SOV_KV_Q8_0 ? k->kv_quantize_q8_0 : k->kv_quantize_q4_0)(x, q, d, g);
                (t == SOV_KV_Q8_0 ? sov_kernels_scalar.kv_quantize_q8_0
                                  : sov_kernels_scalar.kv_quantize_q4_0)(x, qs, d, g);
                if (memcmp(q, qs, rb) != 0) bad++;
                decode_row((sov_kv_type)t, q, ref, d, g);
                (t == SOV_KV_Q8_0 ? k->kv_dequant_q8_0 : k->kv_dequant_q4_0)(q, y, d, g);
                for (int b = 0; b < d; b += g) {
                    const float s = fabsf(f16_of_bytes(q + (size_t)(b / g) * (rb / (size_t)(d / g))));
                    /* the scale as f16 is off by up to 2^-11 of it, or 2^-25 when subnormal */
                    const float ds = fmaxf(s / 2048.0f, ldexpf(1.0f, -25));
                    const float bound = (t == SOV_KV_Q8_0 ? 0.5f * s + 127.0f * ds : s + 8.0f * ds) * 1.0001f;
                    for (int i = b; i < b + g; i++) {
                        if (memcmp(&y[i], &ref[i], sizeof(float)) != 0) bad++;
                        if (!(fabsf(ref[i] - x[i]) <= bound)) {
                            if (bad < 5)
                                fprintf(stderr, "%s q%d d=%d [%d]: %g decodes to %g (bound %g)\n", k->isa,
                                        t == SOV_KV_Q8_0 ? 8 : 4, d, i, x[i], ref[i], bound);
                            bad++;
                        }
                    }
                }
            }
        }
    }
    CHECK_MSG(bad == 0, "%s quantized KV rows: %d wrong", k->isa, bad);
}

static void check_exp_sum(const sov_kernels *k) {
    int bad = 0;
    for (int n = 0; n <= 70; n++) {
        float x[70] = {0}, y[70];
        double ref_sum = 0;
        float max = -INFINITY;
        for (int i = 0; i < n; i++) {
            x[i] = i == 3 ? -INFINITY : test_rng_float(&rng) * 20.0f;
            max = x[i] > max ? x[i] : max;
        }
        if (n == 0) max = 0.0f;
        memcpy(y, x, sizeof x);
        const float sum = k->exp_sum(y, n, max);
        for (int i = 0; i < n; i++) {
            const double e = exp((double)(x[i] - max)); /* the contract: float x - max, then exp */
            ref_sum += e;
            if (!(fabs(y[i] - e) <= 4e-7 * e + 1e-38)) {
                if (bad < 3)
                    fprintf(stderr, "%s exp_sum n=%d [%d]: exp(%g - %g) = %g, want %g\n", k->isa, n, i, x[i],
                            max, y[i], e);
                bad++;
            }
        }
        if (!(fabs(sum - ref_sum) <= 1e-6 * ref_sum + 1e-38)) bad++;
    }
    CHECK_MSG(bad == 0, "%s exp_sum: %d wrong", k->isa, bad);
    /* max_f32: the largest, NaN and -inf ignored, every length and position */
    int badm = 0;
    for (int n = 1; n <= 70; n++)
        for (int at = 0; at < n; at++) {
            float x[70];
            for (int i = 0; i < n; i++) x[i] = i % 5 == 1 ? NAN : i % 7 == 2 ? -INFINITY : test_rng_float(&rng) - 3.0f;
            x[at] = 2.5f; /* above every other value */
            const float m = k->max_f32(x, n);
            badm += m != 2.5f;
        }
    float none[3] = {NAN, -INFINITY, NAN};
    badm += k->max_f32(none, 3) != -INFINITY;
    CHECK_MSG(badm == 0, "%s max_f32: %d wrong", k->isa, badm);
}

/* A one-layer cache of 2 KV heads (head 1 is used) with n_blocks blocks. */
static bool make_kv(sov_kv *kv, sov_kv_type kt, sov_kv_type vt, int d, int bs, int n_blocks) {
    memset(kv, 0, sizeof *kv);
    kv->n_layer = 1;
    kv->n_head_kv = 2;
    kv->head_dim = d;
    kv->block_size = bs;
    kv->n_blocks = n_blocks;
    kv->type = kt;
    kv->v_type = vt;
    kv->group = d < 32 ? d : 32;
    kv->k_transposed = kt == SOV_KV_F16 || kt == SOV_KV_F32;
    kv->k_row = row_bytes(kt, d, kv->group);
    kv->v_row = row_bytes(vt, d, kv->group);
    kv->head_bytes = (size_t)bs * kv->k_row;
    kv->v_head_bytes = (size_t)bs * kv->v_row;
    kv->block_bytes = 2 * kv->head_bytes;
    kv->v_block_bytes = 2 * kv->v_head_bytes;
    kv->map_bytes = kv->block_bytes * (size_t)n_blocks;
    kv->v_map_bytes = kv->v_block_bytes * (size_t)n_blocks;
    kv->k = calloc(1, kv->map_bytes);
    kv->v = calloc(1, kv->v_map_bytes);
    return kv->k && kv->v;
}

/* key (or value) of position j as stored, decoded by this file */
static void stored(const sov_kv *kv, bool key, const int32_t *blocks, int j, float *y) {
    const int bs = kv->block_size, d = kv->head_dim;
    const sov_kv_type t = key ? kv->type : kv->v_type;
    const uint8_t *base = key ? kv_k(kv, 0, blocks[j / bs], 1) : kv_v(kv, 0, blocks[j / bs], 1);
    const int slot = j % bs;
    if (t == SOV_KV_F16 || t == SOV_KV_F32) {
        const bool tr = key; /* float keys transposed */
        for (int i = 0; i < d; i++) {
            const size_t at = tr ? (size_t)i * bs + slot : (size_t)slot * d + i;
            y[i] =
                t == SOV_KV_F16 ? sov_half_to_f32(((const sov_half *)base)[at]) : ((const float *)base)[at];
        }
    } else {
        decode_row(t, base + (size_t)slot * (key ? kv->k_row : kv->v_row), y, d, kv->group);
    }
}

typedef struct attn_case {
    sov_kv_type kt, vt;
    int rep, d, bs, n, parts, first;
} attn_case;

/* max |got - ref| / (max|v| (1 + sqrt(n))) of one case, or -1 on a setup failure */
static double run_case(const sov_kernels *k, const attn_case *ac) {
    const int d = ac->d, bs = ac->bs, n = ac->n, rep = ac->rep;
    const int nb = (n + bs - 1) / bs, pool = nb + 3;
    sov_kv kv;
    int32_t *blocks = malloc((size_t)pool * sizeof *blocks);
    float *q = malloc((size_t)rep * d * sizeof *q), *kx = malloc((size_t)d * sizeof *kx);
    float *vx = malloc((size_t)d * sizeof *vx), *out = malloc((size_t)rep * d * sizeof *out);
    const size_t sf = kv_attn_state_floats(rep, d);
    float *states = malloc((size_t)ac->parts * sf * sizeof *states);
    double *sc = malloc((size_t)n * sizeof *sc), *ref = calloc((size_t)rep * d, sizeof *ref);
    float *kk = malloc((size_t)n * d * sizeof *kk), *vv = malloc((size_t)n * d * sizeof *vv);
    double err = -1;
    if (!make_kv(&kv, ac->kt, ac->vt, d, bs, pool) || !blocks || !q || !kx || !vx || !out || !states || !sc ||
        !ref || !kk || !vv)
        goto done;
    float *scratch = malloc(kv_attn_scratch_floats(&kv, rep) * sizeof(float));
    if (!scratch) goto done;
    /* a shuffled block table: positions live in blocks scattered over the pool */
    for (int i = 0; i < pool; i++)
        blocks[i] = i;
    for (int i = pool - 1; i > 0; i--) {
        const int j = rndi(i + 1), t = blocks[i];
        blocks[i] = blocks[j];
        blocks[j] = t;
    }
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < d; i++) {
            kx[i] = test_rng_float(&rng) * 2.0f;
            vx[i] = test_rng_float(&rng);
        }
        kv_attn_store(k, &kv, 0, blocks[j / bs], j % bs, 1, kx, vx);
    }
    for (int i = 0; i < rep * d; i++)
        q[i] = test_rng_float(&rng) * 2.0f;
    for (int j = 0; j < n; j++) {
        stored(&kv, true, blocks, j, kk + (size_t)j * d);
        stored(&kv, false, blocks, j, vv + (size_t)j * d);
    }
    float vmax = 0;
    for (int i = 0; i < n * d; i++)
        vmax = fmaxf(vmax, fabsf(vv[i]));
    /* tables with integer scores of quantized keys quantize the query too (per group of
     * 32: s = max|x| / 127, codes round(x / s)): the reference takes that query */
    float *qr = malloc((size_t)rep * d * sizeof *qr);
    if (!qr) {
        free(scratch);
        goto done;
    }
    memcpy(qr, q, (size_t)rep * d * sizeof *qr);
    if (int_scores(k, ac->kt) && d % 32 == 0)
        for (int b = 0; b < rep * d; b += 32) {
            float amax = 0;
            for (int i = 0; i < 32; i++)
                amax = fmaxf(amax, fabsf(q[b + i]));
            const float st = amax / 127.0f, is = st != 0.0f ? 1.0f / st : 0.0f; /* as Q8_0 rows */
            for (int i = 0; i < 32; i++)
                qr[b + i] = st * roundf(q[b + i] * is);
        }
    /* reference in double over positions first..n-1 */
    const double scale = 1.0 / sqrt((double)d);
    for (int h = 0; h < rep; h++) {
        double mx = -INFINITY, sum = 0;
        for (int j = ac->first; j < n; j++) {
            double s = 0;
            for (int i = 0; i < d; i++)
                s += (double)qr[h * d + i] * kk[(size_t)j * d + i];
            sc[j] = s * scale;
            mx = sc[j] > mx ? sc[j] : mx;
        }
        for (int j = ac->first; j < n; j++)
            sum += sc[j] = exp(sc[j] - mx);
        for (int j = ac->first; j < n; j++)
            for (int i = 0; i < d; i++)
                ref[h * d + i] += sc[j] / sum * vv[(size_t)j * d + i];
    }
    /* the range split at random points into parts (some may be empty) */
    int cuts[8];
    cuts[0] = ac->first;
    cuts[ac->parts] = n;
    for (int p = 1; p < ac->parts; p++)
        cuts[p] = ac->first + rndi(n - ac->first + 1);
    for (int p = 1; p < ac->parts; p++) /* sorted */
        for (int r = p; r > 1 && cuts[r] < cuts[r - 1]; r--) {
            const int t = cuts[r];
            cuts[r] = cuts[r - 1];
            cuts[r - 1] = t;
        }
    for (int p = 0; p < ac->parts; p++) {
        float *st = states + (size_t)p * sf;
        kv_attn_state_init(st, rep, d);
        if (cuts[p] < cuts[p + 1])
            kv_attn_run(k, &kv, 0, 1, blocks, cuts[p], cuts[p + 1], q, rep, NULL, (float)scale, scratch, st);
    }
    kv_attn_merge(states, ac->parts, rep, d, out);
    err = 0;
    for (int i = 0; i < rep * d; i++)
        err = fmax(err, fabs(out[i] - ref[i]));
    err /= vmax * (1.0 + sqrt((double)n));
    free(scratch);
    free(qr);
done:
    free(kv.k);
    free(kv.v);
    free(blocks);
    free(q);
    free(kx);
    free(vx);
    free(out);
    free(states);
    free(sc);
    free(ref);
    free(kk);
    free(vv);
    return err;
}

static void check_attention(const sov_kernels *k) {
    static const int lens[] = {1, 2, 15, 16, 17, 63, 64, 65, 129, 700, 2000};
    static const int reps[] = {1, 2, 3, 4, 8};
    static const int dims[] = {8, 32, 64, 128};
    static const sov_kv_type types[][2] = {{SOV_KV_F16, SOV_KV_F16},   {SOV_KV_F32, SOV_KV_F32},
                                           {SOV_KV_Q8_0, SOV_KV_Q8_0}, {SOV_KV_Q4_0, SOV_KV_Q4_0},
                                           {SOV_KV_Q8_0, SOV_KV_F16},  {SOV_KV_F16, SOV_KV_Q4_0}};
    int cases = 0, bad = 0;
    double worst = 0;
    for (size_t li = 0; li < SOV_ARRAY_LEN_T(lens); li++)
        for (size_t ti = 0; ti < SOV_ARRAY_LEN_T(types); ti++) {
            /* a few shapes per (length, types): the long ones are the costly ones */
            const int shapes = lens[li] >= 700 ? 2 : 6;
            for (int s = 0; s < shapes; s++) {
                attn_case ac = {types[ti][0],     types[ti][1], reps[rndi(5)], dims[rndi(4)],
                                rndi(4) ? 16 : 5, lens[li],     1 + rndi(7),   0};
                if (s == 0) ac.parts = 1;
                if (s == 1 && ac.n > 1) ac.first = rndi(ac.n); /* a window starting anywhere */
                const double e = run_case(k, &ac);
                cases++;
                worst = fmax(worst, e);
                if (!(e >= 0 && e <= 2e-6)) {
                    if (bad++ < 5)
                        fprintf(
                            stderr,
                            "%s attention K %d V %d rep=%d d=%d bs=%d n=%d parts=%d first=%d: error %.3g\n",
                            k->isa, ac.kt, ac.vt, ac.rep, ac.d, ac.bs, ac.n, ac.parts, ac.first, e);
                }
            }
        }
    CHECK_MSG(bad == 0, "%s tiled attention: %d of %d cases wrong", k->isa, bad, cases);
    fprintf(stderr,
            "  %-12s tiled attention: %d cases, worst error %.2e x max|v| (1 + sqrt n) (bound 2e-6)\n",
            k->isa, cases, worst);
}

/* rows sharing a call with their own ends == each row alone over [first, its end) */
static void check_row_ends(const sov_kernels *k) {
    static const sov_kv_type types[][2] = {{SOV_KV_F16, SOV_KV_F16}, {SOV_KV_F32, SOV_KV_F32},
                                           {SOV_KV_Q8_0, SOV_KV_Q4_0}};
    int cases = 0, bad = 0;
    for (size_t ti = 0; ti < SOV_ARRAY_LEN_T(types); ti++)
        for (int s = 0; s < 12; s++) {
            const int d = (int[]){8, 32, 64, 128}[rndi(4)], bs = rndi(4) ? 16 : 5, n = 1 + rndi(300);
            const int rows = 1 + rndi(16), pool = (n + bs - 1) / bs;
            sov_kv kv;
            int32_t *blocks = malloc((size_t)pool * sizeof *blocks), *ends = malloc((size_t)rows * sizeof *ends);
            float *q = malloc((size_t)rows * d * sizeof *q), *x = malloc((size_t)2 * d * sizeof *x);
            float *all = malloc((size_t)rows * d * sizeof *all), *one = malloc((size_t)d * sizeof *one);
            float *st = malloc(kv_attn_state_floats(rows, d) * sizeof *st);
            float *st1 = malloc(kv_attn_state_floats(1, d) * sizeof *st1);
            if (!make_kv(&kv, types[ti][0], types[ti][1], d, bs, pool) || !blocks || !ends || !q || !x || !all ||
                !one || !st || !st1) {
                CHECK_MSG(0, "out of memory");
                return;
            }
            float *scratch = malloc(kv_attn_scratch_floats(&kv, rows) * sizeof(float));
            for (int i = 0; i < pool; i++) blocks[i] = pool - 1 - i;
            for (int j = 0; j < n; j++) {
                for (int i = 0; i < 2 * d; i++) x[i] = test_rng_float(&rng) * 2.0f;
                kv_attn_store(k, &kv, 0, blocks[j / bs], j % bs, 1, x, x + d);
            }
            for (int i = 0; i < rows * d; i++) q[i] = test_rng_float(&rng) * 2.0f;
            const int first = rndi(4) ? 0 : rndi(n);
            for (int h = 0; h < rows; h++) ends[h] = first + 1 + rndi(n - first); /* first < end <= n */
            kv_attn_state_init(st, rows, d);
            kv_attn_run(k, &kv, 0, 1, blocks, first, n, q, rows, ends, 0.125f, scratch, st);
            kv_attn_merge(st, 1, rows, d, all);
            for (int h = 0; h < rows; h++) {
                kv_attn_state_init(st1, 1, d);
                kv_attn_run(k, &kv, 0, 1, blocks, first, ends[h], q + (size_t)h * d, 1, NULL, 0.125f, scratch, st1);
                kv_attn_merge(st1, 1, 1, d, one);
                cases++;
                if (memcmp(one, all + (size_t)h * d, (size_t)d * sizeof(float)) != 0 && bad++ < 5)
                    fprintf(stderr, "%s row ends: types %d/%d d=%d bs=%d n=%d rows=%d first=%d row %d (end %d) differs\n",
                            k->isa, types[ti][0], types[ti][1], d, bs, n, rows, first, h, ends[h]);
            }
            free(scratch);
            free(kv.k);
            free(kv.v);
            free(blocks);
            free(ends);
            free(q);
            free(x);
            free(all);
            free(one);
            free(st);
            free(st1);
        }
    CHECK_MSG(bad == 0, "%s: %d of %d rows with their own ends differ from the row alone", k->isa, bad, cases);
    fprintf(stderr, "  %-12s row ends: %d rows bit for bit as alone\n", k->isa, cases);
}

int main(void) {
    int tested = 0;
    for (const char *const *name = sov_kernels_names(); *name; name++) {
        const sov_kernels *k = sov_kernels_by_name(*name);
        if (!k) {
            fprintf(stderr, "SKIP %s: this CPU lacks it (or it is not built for this architecture)\n", *name);
            continue;
        }
        check_quant_rows(k);
        check_dequant_t(k);
        check_int_scores(k);
        check_fused_values(k);
        check_scores2(k);
        check_exp_sum(k);
        check_attention(k);
        check_row_ends(k);
        tested++;
    }
    CHECK(tested >= 1);
    TEST_EXIT();
}
