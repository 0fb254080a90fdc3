/* The reference quantizers: quantize -> dequantize error bounds on Gaussian-like rows
 * (RMSE / RMS, bounds set a little above what the quantizers achieve today, so a
 * regression in quality fails), exact round trips of values already on a format's grid,
 * zeros and constant rows, extreme magnitudes, determinism. */
#include "test.h"

#include "kernels/kernels.h"
#include "quant/quant.h"

static test_rng rng = {77};

static float gauss(void) {
    /* sum of uniforms: close enough to normal for quantization statistics */
    float s = 0;
    for (int i = 0; i < 6; i++) s += test_rng_float(&rng);
    return s * 0.7071f;
}

static double rel_rmse(sov_type t, const float *x, int64_t n) {
    void *q = malloc(sov_row_size(t, n));
    float *y = malloc((size_t)n * sizeof *y);
    CHECK(sov_quantize_row(t, x, q, n));
    sov_dequantize_row(t, q, y, n);
    double e = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        r += (double)x[i] * x[i];
    }
    free(q);
    free(y);
    return r > 0 ? sqrt(e / r) : sqrt(e);
}

static void error_is_within_the_bound_of_each_type(void) {
    static const struct {
        sov_type t;
        double bound; /* today: */
    } cases[] = {
        {SOV_TYPE_F16, 0.0004},  /* 0.0002 */
        {SOV_TYPE_BF16, 0.0025}, /* 0.0017 */
        {SOV_TYPE_Q8_0, 0.007},  /* 0.0054 */
        {SOV_TYPE_Q6_K, 0.022},  /* 0.0174 */
        {SOV_TYPE_Q5_K, 0.042},  /* 0.036 */
        {SOV_TYPE_Q5_1, 0.045},  /* 0.038 */
        {SOV_TYPE_Q5_0, 0.05},   /* 0.043 */
        {SOV_TYPE_Q4_K, 0.08},   /* 0.072 */
        {SOV_TYPE_Q4_1, 0.088},  /* 0.078 */
        {SOV_TYPE_Q4_0, 0.095},  /* 0.086 */
    };
    const int64_t n = 256 * 64;
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = gauss();
    for (size_t i = 0; i < SOV_ARRAY_LEN_T(cases); i++) {
        const double e = rel_rmse(cases[i].t, x, n);
        fprintf(stderr, "  %-5s rmse/rms %.5f (bound %.4f)\n", sov_type_name(cases[i].t), e, cases[i].bound);
        CHECK_MSG(e <= cases[i].bound, "%s: %g > %g", sov_type_name(cases[i].t), e, cases[i].bound);
    }
    free(x);
}

static void values_on_the_grid_round_trip_exactly(void) {
    float x[256], y[256];
    /* q8_0: integers -127..127 with scale 1 (max 127) */
    for (int i = 0; i < 256; i++) x[i] = (float)((i * 37) % 255 - 127);
    for (int b = 0; b < 8; b++) x[32 * b] = 127.0f; /* every block's max is 127: scale 1 */
    block_q8_0 q8[8];
    CHECK(sov_quantize_row(SOV_TYPE_Q8_0, x, q8, 256));
    sov_dequantize_row(SOV_TYPE_Q8_0, q8, y, 256);
    CHECK(memcmp(x, y, sizeof x) == 0);
    /* q4_0: -8..7 with the block's extreme at -8: scale exactly 1 */
    for (int i = 0; i < 256; i++) x[i] = (float)(i % 16 - 8);
    block_q4_0 q4[8];
    CHECK(sov_quantize_row(SOV_TYPE_Q4_0, x, q4, 256));
    sov_dequantize_row(SOV_TYPE_Q4_0, q4, y, 256);
    CHECK(memcmp(x, y, sizeof x) == 0);
    /* f16: halves round trip */
    for (int i = 0; i < 256; i++) x[i] = sov_half_to_f32((sov_half)(i * 211));
    sov_half hs[256];
    CHECK(sov_quantize_row(SOV_TYPE_F16, x, hs, 256));
    sov_dequantize_row(SOV_TYPE_F16, hs, y, 256);
    for (int i = 0; i < 256; i++) CHECK(x[i] == y[i] || (x[i] != x[i] && y[i] != y[i]));
}

static void zeros_and_constants(void) {
    static const sov_type types[] = {SOV_TYPE_Q4_0, SOV_TYPE_Q4_1, SOV_TYPE_Q5_0, SOV_TYPE_Q5_1, SOV_TYPE_Q8_0,
                                     SOV_TYPE_Q4_K, SOV_TYPE_Q5_K, SOV_TYPE_Q6_K};
    float x[256], y[256];
    char q[512];
    for (size_t t = 0; t < SOV_ARRAY_LEN_T(types); t++) {
        memset(x, 0, sizeof x);
        CHECK(sov_quantize_row(types[t], x, q, 256));
        sov_dequantize_row(types[t], q, y, 256);
        for (int i = 0; i < 256; i++) CHECK_MSG(y[i] == 0.0f, "%s zero row gives %g", sov_type_name(types[t]), (double)y[i]);
        for (int i = 0; i < 256; i++) x[i] = 0.75f;
        CHECK(sov_quantize_row(types[t], x, q, 256));
        sov_dequantize_row(types[t], q, y, 256);
        for (int i = 0; i < 256; i++)
            CHECK_MSG(fabsf(y[i] - 0.75f) <= 0.75f * 0.07f, "%s constant 0.75 gives %g", sov_type_name(types[t]),
                      (double)y[i]);
    }
}

/* Block scales are half precision: from 1e-2 to 1e3 the relative error does not depend
 * on magnitude. Far below (1e-6), the scales are subnormal halves and precision drops, as
 * in every implementation of these formats (at 1e-6 the scales round to zero and so do
 * the values); the result must still be finite and no larger than the input, never
 * garbage: relative error at most 1. */
static void extreme_magnitudes_keep_relative_error(void) {
    float x[256];
    for (int s = -2; s <= 3; s += 5) {
        const float scale = powf(10.0f, (float)s);
        for (int i = 0; i < 256; i++) x[i] = gauss() * scale;
        CHECK_MSG(rel_rmse(SOV_TYPE_Q8_0, x, 256) < 0.01, "q8_0 at 1e%d", s);
        CHECK_MSG(rel_rmse(SOV_TYPE_Q4_K, x, 256) < 0.1, "q4_K at 1e%d", s);
        CHECK_MSG(rel_rmse(SOV_TYPE_Q6_K, x, 256) < 0.03, "q6_K at 1e%d", s);
    }
    for (int i = 0; i < 256; i++) x[i] = gauss() * 1e-6f;
    CHECK(rel_rmse(SOV_TYPE_Q8_0, x, 256) <= 1.0);
    CHECK(rel_rmse(SOV_TYPE_Q4_K, x, 256) <= 1.0);
    CHECK(rel_rmse(SOV_TYPE_Q6_K, x, 256) <= 1.0);
}

static void quantization_is_deterministic_and_matches_the_kernels(void) {
    float x[512];
    for (int i = 0; i < 512; i++) x[i] = gauss();
    char a[1024], b[1024];
    CHECK(sov_quantize_row(SOV_TYPE_Q5_K, x, a, 512));
    CHECK(sov_quantize_row(SOV_TYPE_Q5_K, x, b, 512));
    CHECK(memcmp(a, b, sov_row_size(SOV_TYPE_Q5_K, 512)) == 0);
    CHECK(sov_quantize_row(SOV_TYPE_Q8A, x, a, 512));
    sov_kernels_scalar.quantize_q8a(x, b, 512);
    CHECK(memcmp(a, b, sov_row_size(SOV_TYPE_Q8A, 512)) == 0);
    CHECK(sov_quantize_row(SOV_TYPE_Q8K, x, a, 512));
    sov_kernels_scalar.quantize_q8k(x, b, 512);
    CHECK(memcmp(a, b, sov_row_size(SOV_TYPE_Q8K, 512)) == 0);
    CHECK(!sov_quantize_row(SOV_TYPE_Q4_0, x, a, 31));      /* not whole blocks */
    CHECK(!sov_quantize_row(SOV_TYPE_IQ2_XXS, x, a, 256)); /* not produced */
}

int main(void) {
    RUN(error_is_within_the_bound_of_each_type);
    RUN(values_on_the_grid_round_trip_exactly);
    RUN(zeros_and_constants);
    RUN(extreme_magnitudes_keep_relative_error);
    RUN(quantization_is_deterministic_and_matches_the_kernels);
    TEST_EXIT();
}
