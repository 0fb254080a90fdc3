/* Every kernel table against the scalar reference, entry by entry (the idea of ggml's
 * test-backend-ops): for each table compiled in that this CPU can run (others are
 * reported as skipped, by name), on random inputs of many sizes and magnitudes:
 *
 *   vec_dot / gemm, every weight type: relative error vs a double-precision dot of the
 *     dequantized operands <= 1e-5 of sum |w_i a_i| (float32 accumulation in a different
 *     order is the only difference; each block's integer part is exact), and gemm(r, c)
 *     bitwise equal to vec_dot of row r and column c (the engine's batch invariance);
 *   quantize_q8a / q8k and f32_to_f16: bytes identical to the scalar table;
 *   rmsnorm (also in place), silu_mul, softmax: 2e-6 relative (the vectorised exp is
 *     within 2 ulp); add, scale, axpy: 1e-6; dot_f32 / dot_f16: 1e-5 of sum |a_i b_i|.
 * No files are read, so the same test runs cross-compiled under qemu-aarch64. */
#include "test.h"

#include "kernels/kernels.h"
#include "quant/quant.h"

static const sov_type weight_types[] = {SOV_TYPE_F32,  SOV_TYPE_F16,  SOV_TYPE_BF16, SOV_TYPE_Q4_0,
                                        SOV_TYPE_Q4_1, SOV_TYPE_Q5_0, SOV_TYPE_Q5_1, SOV_TYPE_Q8_0,
                                        SOV_TYPE_Q4_K, SOV_TYPE_Q5_K, SOV_TYPE_Q6_K, SOV_TYPE_Q4_0P,
                                        SOV_TYPE_Q8_0P};

static test_rng rng = {0x5eed};

/* n random floats of magnitude ~scale, with a few outliers */
static void fill(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) {
        x[i] = test_rng_float(&rng) * scale;
        if (test_rng_next(&rng) % 61 == 0) x[i] *= 8.0f;
    }
}

static void *quantize(sov_type t, const float *x, int64_t n) {
    void *q = malloc(sov_row_size(t, n) + 64);
    CHECK(sov_quantize_row(t, x, q, n));
    return q;
}

/* activation row in the format weight type t takes */
static void *activation(const sov_kernels *k, sov_type t, const float *x, int64_t n) {
    const sov_type at = sov_type_info(t)->act_type;
    if (at == SOV_TYPE_F32) {
        float *a = malloc((size_t)n * sizeof *a);
        memcpy(a, x, (size_t)n * sizeof *a);
        return a;
    }
    void *a = malloc(sov_row_size(at, n) + 64);
    if (at == SOV_TYPE_Q8A) k->quantize_q8a(x, a, n);
    else if (at == SOV_TYPE_Q8P) k->quantize_q8p(x, a, n);
    else k->quantize_q8k(x, a, n);
    return a;
}

/* reference: double dot of the dequantized rows; *mag = sum |w_i a_i| */
static double ref_dot(sov_type t, const void *w, const void *a, int64_t n, double *mag) {
    const sov_type at = sov_type_info(t)->act_type;
    float *wf = malloc((size_t)n * sizeof *wf), *af = malloc((size_t)n * sizeof *af);
    sov_dequantize_row(t, w, wf, n);
    sov_dequantize_row(at, a, af, n);
    double s = 0.0, m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)wf[i] * af[i];
        m += fabs((double)wf[i] * af[i]);
    }
    free(wf);
    free(af);
    *mag = m;
    return s;
}

static void check_quantizers(const sov_kernels *k) {
    static const int64_t sizes[] = {256, 512, 4096};
    static const float scales[] = {1e-6f, 1.0f, 1e4f};
    for (size_t si = 0; si < SOV_ARRAY_LEN_T(sizes); si++)
        for (size_t sc = 0; sc < SOV_ARRAY_LEN_T(scales); sc++) {
            const int64_t n = sizes[si];
            float *x = malloc((size_t)n * sizeof *x);
            fill(x, n, scales[sc]);
            if (sc == 0) x[3] = 0.0f, x[4] = -0.0f;
            const size_t cap = SOV_MAX_T(sov_row_size(SOV_TYPE_Q8A, n), sov_row_size(SOV_TYPE_Q8K, n));
            void *a = malloc(cap), *b = malloc(cap);
            sov_kernels_scalar.quantize_q8a(x, a, n);
            k->quantize_q8a(x, b, n);
            CHECK_MSG(memcmp(a, b, sov_row_size(SOV_TYPE_Q8A, n)) == 0, "%s quantize_q8a n=%lld", k->isa, (long long)n);
            sov_kernels_scalar.quantize_q8k(x, a, n);
            k->quantize_q8k(x, b, n);
            CHECK_MSG(memcmp(a, b, sov_row_size(SOV_TYPE_Q8K, n)) == 0, "%s quantize_q8k n=%lld", k->isa, (long long)n);
            /* all-zero blocks quantize to zero, with zero scale */
            memset(x, 0, (size_t)n * sizeof *x);
            k->quantize_q8a(x, b, n);
            CHECK(((block_q8a *)b)->d == 0.0f && ((block_q8a *)b)->qs[5] == 0);
            free(x);
            free(a);
            free(b);
        }
}

static void check_dots(const sov_kernels *k) {
    static const int64_t sizes[] = {256, 512, 768, 2048, 5632};
    static const float scales[] = {1e-3f, 1.0f, 300.0f};
    for (size_t ti = 0; ti < SOV_ARRAY_LEN_T(weight_types); ti++) {
        const sov_type t = weight_types[ti];
        if (!k->vec_dot[t] || !k->gemm[t]) {
            CHECK_MSG(0, "%s has no kernel for %s", k->isa, sov_type_name(t));
            continue;
        }
        double worst = 0.0;
        for (size_t si = 0; si < SOV_ARRAY_LEN_T(sizes); si++) {
            const int64_t n = sizes[si];
            if (n % sov_type_info(t)->block_size) continue;
            for (size_t sc = 0; sc < SOV_ARRAY_LEN_T(scales); sc++) {
                float *w = malloc((size_t)n * sizeof *w), *x = malloc((size_t)n * sizeof *x);
                fill(w, n, 0.05f);
                fill(x, n, scales[sc]);
                void *wq = quantize(t, w, n), *a = activation(k, t, x, n);
                double mag;
                const double want = ref_dot(t, wq, a, n, &mag);
                const float got = k->vec_dot[t](n, wq, a), ref = sov_kernels_scalar.vec_dot[t](n, wq, a);
                const double err = fabs(got - want) / (mag > 0 ? mag : 1), err_s = fabs(ref - want) / (mag > 0 ? mag : 1);
                worst = SOV_MAX_T(worst, err);
                CHECK_MSG(err <= 1e-5, "%s vec_dot %s n=%lld scale %g: %g vs %g (rel %.2e)", k->isa, sov_type_name(t),
                          (long long)n, (double)scales[sc], (double)got, want, err);
                CHECK_MSG(err_s <= 1e-5, "scalar vec_dot %s n=%lld: rel %.2e", sov_type_name(t), (long long)n, err_s);
                free(w);
                free(x);
                free(wq);
                free(a);
            }
        }
        fprintf(stderr, "  %-7s %-5s worst rel err %.2e\n", k->isa, sov_type_name(t), worst);
    }
}

/* gemm tiles with odd shapes and strides equal vec_dot bit for bit */
static void check_gemm(const sov_kernels *k) {
    for (size_t ti = 0; ti < SOV_ARRAY_LEN_T(weight_types); ti++) {
        const sov_type t = weight_types[ti];
        const int64_t n = sov_type_info(t)->block_size == 256 ? 512 : 96;
        const int R = 9, C = 8; /* rows 1..8 and columns 1..7 are used */
        const size_t ldw = sov_row_size(t, n) + 8; /* rows not adjacent (still float aligned) */
        const sov_type at = sov_type_info(t)->act_type;
        const size_t lda = (at == SOV_TYPE_F32 ? (size_t)n * 4 : sov_row_size(at, n)) + 12;
        char *W = calloc((size_t)R, ldw), *A = calloc((size_t)C, lda);
        float *x = malloc((size_t)n * sizeof *x);
        for (int r = 0; r < R; r++) {
            fill(x, n, 0.1f);
            void *q = quantize(t, x, n);
            memcpy(W + (size_t)r * ldw, q, sov_row_size(t, n));
            free(q);
        }
        for (int c = 0; c < C; c++) {
            fill(x, n, 2.0f);
            void *a = activation(k, t, x, n);
            memcpy(A + (size_t)c * lda, a, lda - 12);
            free(a);
        }
        for (int nr = 1; nr <= 8; nr += 3)
            for (int nc = 1; nc <= 7; nc += 2) {
                const size_t ldy = (size_t)nr + 3;
                float *Y = calloc((size_t)nc * ldy, sizeof *Y);
                k->gemm[t](n, W + ldw, ldw, nr, A + lda, lda, nc, Y, ldy);
                for (int c = 0; c < nc; c++)
                    for (int r = 0; r < nr; r++) {
                        const float d = k->vec_dot[t](n, W + (size_t)(r + 1) * ldw, A + (size_t)(c + 1) * lda);
                        CHECK_MSG(memcmp(&d, &Y[(size_t)c * ldy + (size_t)r], 4) == 0,
                                  "%s gemm %s %dx%d at (%d,%d): %.9g != vec_dot %.9g", k->isa, sov_type_name(t), nr,
                                  nc, r, c, (double)Y[(size_t)c * ldy + (size_t)r], (double)d);
                    }
                free(Y);
            }
        free(W);
        free(A);
        free(x);
    }
}

static bool close_rel(float a, float b, float tol) { return fabsf(a - b) <= tol * fmaxf(fabsf(a), fabsf(b)) + 1e-30f; }

static void check_float_ops(const sov_kernels *k) {
    const sov_kernels *s = &sov_kernels_scalar;
    static const int64_t sizes[] = {1, 3, 8, 13, 64, 172, 1000, 4097};
    for (size_t si = 0; si < SOV_ARRAY_LEN_T(sizes); si++) {
        const int64_t n = sizes[si];
        float *x = malloc((size_t)n * 4), *w = malloc((size_t)n * 4), *y1 = malloc((size_t)n * 4),
              *y2 = malloc((size_t)n * 4), *z = malloc((size_t)n * 4);
        sov_half *h1 = malloc((size_t)n * 2), *h2 = malloc((size_t)n * 2);
        fill(x, n, 3.0f);
        fill(w, n, 1.0f);
        int bad = 0;
#define EACH(cond) \
    for (int64_t i = 0; i < n; i++) bad += !(cond)
        s->rmsnorm(y1, x, w, n, 1e-5f);
        k->rmsnorm(y2, x, w, n, 1e-5f);
        EACH(close_rel(y1[i], y2[i], 2e-6f));
        memcpy(z, x, (size_t)n * 4);
        k->rmsnorm(z, z, w, n, 1e-5f); /* in place */
        EACH(z[i] == y2[i]);
        s->silu_mul(y1, x, w, n);
        k->silu_mul(y2, x, w, n);
        EACH(close_rel(y1[i], y2[i], 2e-6f) || fabsf(y1[i] - y2[i]) < 1e-12f);
        memcpy(y1, x, (size_t)n * 4);
        memcpy(y2, x, (size_t)n * 4);
        s->softmax(y1, n);
        k->softmax(y2, n);
        EACH(close_rel(y1[i], y2[i], 2e-6f) || fabsf(y1[i] - y2[i]) < 1e-30f);
        memcpy(y1, x, (size_t)n * 4);
        memcpy(y2, x, (size_t)n * 4);
        s->add(y1, w, n);
        k->add(y2, w, n);
        EACH(y1[i] == y2[i]);
        s->scale(y1, 0.37f, n);
        k->scale(y2, 0.37f, n);
        EACH(y1[i] == y2[i]);
        s->axpy_f32(y1, -1.5f, w, n);
        k->axpy_f32(y2, -1.5f, w, n);
        EACH(close_rel(y1[i], y2[i], 1e-6f) || fabsf(y1[i] - y2[i]) < 1e-6f);
        s->f32_to_f16(h1, x, n);
        k->f32_to_f16(h2, x, n);
        EACH(h1[i] == h2[i]);
        s->axpy_f16(y1, 0.25f, h1, n);
        k->axpy_f16(y2, 0.25f, h1, n);
        EACH(close_rel(y1[i], y2[i], 1e-6f) || fabsf(y1[i] - y2[i]) < 1e-6f);
#undef EACH
        CHECK_MSG(bad == 0, "%s float ops n=%lld: %d values out of tolerance", k->isa, (long long)n, bad);
        double mag = 0;
        for (int64_t i = 0; i < n; i++) mag += fabs((double)x[i] * w[i]);
        const float d1 = s->dot_f32(x, w, n), d2 = k->dot_f32(x, w, n);
        CHECK_MSG(fabs((double)d1 - d2) <= 1e-5 * mag + 1e-30, "%s dot_f32 n=%lld", k->isa, (long long)n);
        const float e1 = s->dot_f16(h1, w, n), e2 = k->dot_f16(h1, w, n);
        CHECK_MSG(fabs((double)e1 - e2) <= 1e-5 * mag + 1e-30, "%s dot_f16 n=%lld", k->isa, (long long)n);
        free(x);
        free(w);
        free(y1);
        free(y2);
        free(z);
        free(h1);
        free(h2);
    }
    /* softmax with -inf (a masked entry) and one huge value */
    float v[9] = {1, 2, -INFINITY, 3, 4, 5, 80, 7, 8}, u[9];
    memcpy(u, v, sizeof v);
    k->softmax(v, 9);
    s->softmax(u, 9);
    CHECK(v[2] == 0.0f && close_rel(v[6], u[6], 1e-6f) && v[6] > 0.99f);
}

static void scalar_reference_is_exact_on_known_values(void) {
    /* values on the grids exactly: weights 63.5 (scale 0.5, level 127), activations 127
     * (scale 1): 64 products of 63.5 * 127 */
    float w[64], x[64];
    for (int i = 0; i < 64; i++) w[i] = 63.5f, x[i] = 127.0f;
    void *wq = quantize(SOV_TYPE_Q8_0, w, 64), *a = activation(&sov_kernels_scalar, SOV_TYPE_Q8_0, x, 64);
    CHECK_NEAR(sov_kernels_scalar.vec_dot[SOV_TYPE_Q8_0](64, wq, a), 64 * 63.5 * 127, 0);
    free(wq);
    free(a);
    /* q4_0: levels -8..7 of scale 1 (max magnitude -8), times activations of 127 */
    for (int i = 0; i < 64; i++) w[i] = (float)(i % 16 - 8);
    wq = quantize(SOV_TYPE_Q4_0, w, 64);
    a = activation(&sov_kernels_scalar, SOV_TYPE_Q4_0, x, 64);
    double want = 0;
    for (int i = 0; i < 64; i++) want += w[i] * 127.0;
    CHECK_NEAR(sov_kernels_scalar.vec_dot[SOV_TYPE_Q4_0](64, wq, a), want, 0);
    free(wq);
    free(a);
}

int main(void) {
    RUN(scalar_reference_is_exact_on_known_values);
    int tested = 0;
    for (const char *const *name = sov_kernels_names(); *name; name++) {
        const sov_kernels *k = sov_kernels_by_name(*name);
        if (!k) {
            fprintf(stderr, "SKIP %s: not built for this architecture or this CPU lacks it\n", *name);
            continue;
        }
        fprintf(stderr, "== %s\n", k->isa);
        check_quantizers(k);
        check_dots(k);
        check_gemm(k);
        check_float_ops(k);
        tested++;
    }
    CHECK(tested >= 1);
    TEST_EXIT();
}
