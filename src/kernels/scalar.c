/* scalar.c - the plain C kernel table: the reference every SIMD table is tested against,
 * and the fallback on CPUs with none of them.
 *
 * The float ops are written for clarity. The quantized dot products live in
 * scalar_quant.c. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/kv_quant_impl.h"
#include "kernels/scalar_quant.h"

static void rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    const float inv = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * inv * w[i];
}

static void silu_mul(float *y, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        y[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void sov_layernorm_scalar(float *y, const float *x, const float *w, const float *b, int64_t n, float eps) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += x[i];
    const double mean = sum / (double)n;
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += ((double)x[i] - mean) * ((double)x[i] - mean);
    const double inv = 1.0 / sqrt(ss / (double)n + (double)eps);
    for (int64_t i = 0; i < n; i++) y[i] = (float)(((double)x[i] - mean) * inv) * w[i] + b[i];
}

void sov_gelu_erf_scalar(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

static void gelu_mul(float *y, const float *gate, const float *up, int64_t n) {
    const float c = 0.7978845608f; /* sqrt(2 / pi) */
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        const float z = c * (g + 0.044715f * g * g * g);
        y[i] = g / (1.0f + expf(-2.0f * z)) * up[i];
    }
}

static void add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

static void scale(float *y, float a, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] *= a;
}

static float dot_f32(const float *a, const float *b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static float dot_f16(const sov_half *a, const float *b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += sov_half_to_f32(a[i]) * b[i];
    return s;
}

static void axpy_f32(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void axpy_f16(float *y, float a, const sov_half *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * sov_half_to_f32(x[i]);
}

static void f32_to_f16(sov_half *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = sov_f32_to_half(x[i]);
}

static void softmax(float *x, int64_t n) {
    float max = x[0];
    for (int64_t i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

static void attn_scores_f16(float *sc, size_t ldsc, const float *q, int nq, const sov_half *K, int n, int bs, int d,
                            float scale, const sov_half *ahead) {
    (void)ahead; /* a prefetch hint: the reference has no use for it */
    for (int h = 0; h < nq; h++)
        for (int j = 0; j < n; j++) {
            float s = 0.0f;
            for (int i = 0; i < d; i++) s += q[(size_t)h * d + i] * sov_half_to_f32(K[(size_t)i * bs + j]);
            sc[(size_t)h * ldsc + j] = scale * s;
        }
}
static void attn_scores_f32(float *sc, size_t ldsc, const float *q, int nq, const float *K, int n, int bs, int d,
                            float scale) {
    for (int h = 0; h < nq; h++)
        for (int j = 0; j < n; j++) {
            float s = 0.0f;
            for (int i = 0; i < d; i++) s += q[(size_t)h * d + i] * K[(size_t)i * bs + j];
            sc[(size_t)h * ldsc + j] = scale * s;
        }
}
static void attn_values_f16(float *out, const float *p, size_t ldp, int nq, const sov_half *V, int n, int d,
                            const sov_half *ahead) {
    (void)ahead; /* a prefetch hint: the reference has no use for it */
    for (int h = 0; h < nq; h++)
        for (int j = 0; j < n; j++) axpy_f16(out + (size_t)h * d, p[(size_t)h * ldp + j], V + (size_t)j * d, d);
}
static void attn_values_f32(float *out, const float *p, size_t ldp, int nq, const float *V, int n, int d) {
    for (int h = 0; h < nq; h++)
        for (int j = 0; j < n; j++) axpy_f32(out + (size_t)h * d, p[(size_t)h * ldp + j], V + (size_t)j * d, d);
}

static float vec_dot_f32(int64_t n, const void *w, const void *a) { return dot_f32(w, a, n); }
static float vec_dot_f16(int64_t n, const void *w, const void *a) { return dot_f16(w, a, n); }
static float vec_dot_bf16(int64_t n, const void *w, const void *a) {
    const sov_bf16 *x = w;
    const float *y = a;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += sov_bf16_to_f32(x[i]) * y[i];
    return s;
}

#define GEMM_VIA_DOT(name, dot)                                                                  \
    static void name(int64_t n, const void *w, size_t ldw, int nr, const void *a, size_t lda,     \
                     int nc, float *y, size_t ldy) {                                              \
        for (int c = 0; c < nc; c++)                                                              \
            for (int r = 0; r < nr; r++)                                                          \
                y[(size_t)c * ldy + (size_t)r] =                                                  \
                    dot(n, (const char *)w + (size_t)r * ldw, (const char *)a + (size_t)c * lda); \
    }

GEMM_VIA_DOT(gemm_f32, vec_dot_f32)
GEMM_VIA_DOT(gemm_f16, vec_dot_f16)
GEMM_VIA_DOT(gemm_bf16, vec_dot_bf16)
GEMM_VIA_DOT(gemm_q4_0, sov_vec_dot_q4_0_scalar)
GEMM_VIA_DOT(gemm_q4_1, sov_vec_dot_q4_1_scalar)
GEMM_VIA_DOT(gemm_q5_0, sov_vec_dot_q5_0_scalar)
GEMM_VIA_DOT(gemm_q5_1, sov_vec_dot_q5_1_scalar)
GEMM_VIA_DOT(gemm_q8_0, sov_vec_dot_q8_0_scalar)
GEMM_VIA_DOT(gemm_q4_K, sov_vec_dot_q4_K_scalar)
GEMM_VIA_DOT(gemm_q5_K, sov_vec_dot_q5_K_scalar)
GEMM_VIA_DOT(gemm_q6_K, sov_vec_dot_q6_K_scalar)
GEMM_VIA_DOT(gemm_q4_0p, sov_vec_dot_q4_0p_scalar)
GEMM_VIA_DOT(gemm_q8_0p, sov_vec_dot_q8_0p_scalar)

const sov_kernels sov_kernels_scalar = {
    .isa = "scalar",
    .vec_dot =
        {
            [SOV_TYPE_F32] = vec_dot_f32,
            [SOV_TYPE_F16] = vec_dot_f16,
            [SOV_TYPE_BF16] = vec_dot_bf16,
            [SOV_TYPE_Q4_0] = sov_vec_dot_q4_0_scalar,
            [SOV_TYPE_Q4_1] = sov_vec_dot_q4_1_scalar,
            [SOV_TYPE_Q5_0] = sov_vec_dot_q5_0_scalar,
            [SOV_TYPE_Q5_1] = sov_vec_dot_q5_1_scalar,
            [SOV_TYPE_Q8_0] = sov_vec_dot_q8_0_scalar,
            [SOV_TYPE_Q4_K] = sov_vec_dot_q4_K_scalar,
            [SOV_TYPE_Q5_K] = sov_vec_dot_q5_K_scalar,
            [SOV_TYPE_Q6_K] = sov_vec_dot_q6_K_scalar,
            [SOV_TYPE_Q4_0P] = sov_vec_dot_q4_0p_scalar,
            [SOV_TYPE_Q8_0P] = sov_vec_dot_q8_0p_scalar,
        },
    .gemm =
        {
            [SOV_TYPE_F32] = gemm_f32,
            [SOV_TYPE_F16] = gemm_f16,
            [SOV_TYPE_BF16] = gemm_bf16,
            [SOV_TYPE_Q4_0] = gemm_q4_0,
            [SOV_TYPE_Q4_1] = gemm_q4_1,
            [SOV_TYPE_Q5_0] = gemm_q5_0,
            [SOV_TYPE_Q5_1] = gemm_q5_1,
            [SOV_TYPE_Q8_0] = gemm_q8_0,
            [SOV_TYPE_Q4_K] = gemm_q4_K,
            [SOV_TYPE_Q5_K] = gemm_q5_K,
            [SOV_TYPE_Q6_K] = gemm_q6_K,
            [SOV_TYPE_Q4_0P] = gemm_q4_0p,
            [SOV_TYPE_Q8_0P] = gemm_q8_0p,
        },
    .quantize_q8a = sov_quantize_q8a_scalar,
    .quantize_q8k = sov_quantize_q8k_scalar,
    .quantize_q8p = sov_quantize_q8p_scalar,
    .rmsnorm = rmsnorm,
    .silu_mul = silu_mul,
    .gelu_mul = gelu_mul,
    .add = add,
    .scale = scale,
    .dot_f32 = dot_f32,
    .dot_f16 = dot_f16,
    .axpy_f32 = axpy_f32,
    .axpy_f16 = axpy_f16,
    .f32_to_f16 = f32_to_f16,
    .softmax = softmax,
    .attn_scores_f16 = attn_scores_f16,
    .attn_scores_f32 = attn_scores_f32,
    .attn_values_f16 = attn_values_f16,
    .attn_values_f32 = attn_values_f32,
    .layernorm = sov_layernorm_scalar,
    .gelu_erf = sov_gelu_erf_scalar,
    .exp_sum = kvq_exp_sum_ref,
    .max_f32 = kvq_max_ref,
    .kv_dequant_t_q8_0 = kvq_dequant_t_q8_0_ref,
    .kv_dequant_t_q4_0 = kvq_dequant_t_q4_0_ref,
    .kv_quantize_q8_0 = kvq_quantize_q8_0,
    .kv_quantize_q4_0 = kvq_quantize_q4_0,
    .kv_dequant_q8_0 = kvq_dequant_q8_0_ref,
    .kv_dequant_q4_0 = kvq_dequant_q4_0_ref,
};
