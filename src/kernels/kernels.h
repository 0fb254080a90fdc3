/* kernels.h - the one dispatch table of compute kernels.
 *
 * Every kernel has a plain C version in scalar*.c, the reference the SIMD versions are
 * tested against. sov_kernels_select() picks the best table the CPU supports once at
 * start-up (cpuid on x86, getauxval on Arm), or the one SOV_ISA names
 * (scalar|avx2|avx512|avx512_vnni|neon|neon_dotprod); contexts keep a pointer to the
 * table they use.
 *
 * Weight rows are in their file type, or in a planar layout the model repacked them to
 * at load (Q4_0P, Q8_0P) when the table has kernels for it (sov_kernels_prefers_planar);
 * the activation row they are multiplied with is first converted to that type's
 * activation format (sov_type_traits.act_type): F32 for float weights, Q8A for the
 * 32-blocks, Q8K for the k-quants, Q8P for the planar types. */
#ifndef SOV_KERNELS_H
#define SOV_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/fp16.h"
#include "quant/quant.h"

/* sum_i w[i] * a[i] over n values; w a row of the weight type, a a row of its
 * activation format. */
typedef float (*sov_vec_dot_fn)(int64_t n, const void *w, const void *a);

/* The same for a tile: for r < nr, c < nc:
 *   y[c * ldy + r] = vec_dot(n, (char *)w + r * ldw, (char *)a + c * lda)
 * (ldw, lda in bytes; ldy in floats). */
typedef void (*sov_gemm_fn)(int64_t n, const void *w, size_t ldw, int nr, const void *a, size_t lda,
                            int nc, float *y, size_t ldy);

typedef struct sov_kernels {
    const char *isa; /* "scalar", "avx2", "avx512", "avx512_vnni", "neon", "neon_dotprod" */

    /* dot products and tiles by weight type (NULL: type not computable) */
    sov_vec_dot_fn vec_dot[SOV_TYPE_MAX];
    sov_gemm_fn gemm[SOV_TYPE_MAX];

    /* activation quantizers: n floats (n a multiple of 32 / 256) into Q8A / Q8K.
     * d = max|x| / 127, q = round-half-even(x * (1 / d)); every ISA gives identical bytes. */
    void (*quantize_q8a)(const float *x, void *y, int64_t n);
    void (*quantize_q8k)(const float *x, void *y, int64_t n);
    /* Q8P (the planar types' activations): the same int8 values and scales as Q8A, laid
     * out planar (quant.h); byte-identical across ISAs as well */
    void (*quantize_q8p)(const float *x, void *y, int64_t n);

    /* float ops on rows of n values */
    void (*rmsnorm)(float *y, const float *x, const float *w, int64_t n, float eps); /* y = x / rms(x) * w */
    void (*silu_mul)(float *y, const float *gate, const float *up, int64_t n);       /* y = silu(gate) * up */
    /* y = gelu_tanh(gate) * up, GELU's tanh form (Gemma's MLP):
     *   gelu_tanh(g) = g/2 (1 + tanh(z)), z = sqrt(2/pi) (g + 0.044715 g^3),
     * computed as g / (1 + e^(-2z)) (the same value: (1 + tanh z)/2 = sigmoid(2z)), which
     * has no cancellation for negative g */
    void (*gelu_mul)(float *y, const float *gate, const float *up, int64_t n);
    void (*add)(float *y, const float *x, int64_t n);                                /* y += x */
    void (*scale)(float *y, float a, int64_t n);                                     /* y *= a */
    float (*dot_f32)(const float *a, const float *b, int64_t n);
    float (*dot_f16)(const sov_half *a, const float *b, int64_t n);
    void (*axpy_f32)(float *y, float a, const float *x, int64_t n);   /* y += a * x */
    void (*axpy_f16)(float *y, float a, const sov_half *x, int64_t n);
    void (*f32_to_f16)(sov_half *y, const float *x, int64_t n);
    /* in place: x = exp(x - max) / sum; returns nothing, n >= 1 */
    void (*softmax)(float *x, int64_t n);

    /* attention over one block of cached positions (n <= bs of them, head dim d) for the
     * nq query heads that share it (grouped-query attention), so each K and V value is
     * loaded and widened once for all of them. K is stored transposed in the block
     * (kv.h): K[i * bs + j] is dimension i of position j, so a vector holds one
     * dimension of consecutive positions and no horizontal sums are needed; V is stored
     * by position: V[j * d + i]. For h < nq:
     *   scores[h * ldsc + j] = scale * sum_i q[h * d + i] K[i * bs + j]     (j < n)
     *   out[h * d + i]      += sum_{j < n} p[h * ldp + j] V[j * d + i]      (i < d)
     * Kernels may read K for positions n..bs-1 of the block (always inside the block)
     * but write only scores j < n. */
    /* ahead: NULL, or a block of the same shape that a later call will read, prefetched as
     * the kernel goes (a hint, as attn_scores2_f16's; the scalar table ignores it) */
    void (*attn_scores_f16)(float *scores, size_t ldsc, const float *q, int nq, const sov_half *K, int n, int bs,
                            int d, float scale, const sov_half *ahead);
    void (*attn_scores_f32)(float *scores, size_t ldsc, const float *q, int nq, const float *K, int n, int bs,
                            int d, float scale);
    /* the scores of two blocks at once: positions 0..bs-1 from K0, bs..n-1 from K1
     * (bs < n <= 2 bs; a shorter n reads only K0), bit for bit attn_scores_f16 on each
     * block; NULL where the table has no such kernel (block by block then).
     * ahead0 and ahead1: both NULL, or two blocks of the same shape that a later call will
     * read, whose cache lines the kernel prefetches one at a time between its fmas. A
     * hint only: no result depends on it, and it is never dereferenced. */
    void (*attn_scores2_f16)(float *scores, size_t ldsc, const float *q, int nq, const sov_half *K0,
                             const sov_half *K1, int n, int bs, int d, float scale, const sov_half *ahead0,
                             const sov_half *ahead1);
    /* ahead: NULL, or n rows of d values that a later call will read, prefetched as the
     * kernel goes (row j's lines beside row j's fmas; the scalar table ignores it) */
    void (*attn_values_f16)(float *out, const float *p, size_t ldp, int nq, const sov_half *V, int n, int d,
                            const sov_half *ahead);
    void (*attn_values_f32)(float *out, const float *p, size_t ldp, int nq, const float *V, int n, int d);
    /* encoders (BERT family): LayerNorm with weight and bias,
     *   y = (x - mean(x)) / sqrt(var(x) + eps) * w + b   (var the biased variance; y may be x)
     * and the exact GELU, y = x * (1 + erf(x / sqrt 2)) / 2 (y may be x) */
    void (*layernorm)(float *y, const float *x, const float *w, const float *b, int64_t n, float eps);
    void (*gelu_erf)(float *y, const float *x, int64_t n);

    /* the online softmax step of tiled attention: x = exp(x - max) for n values (n >= 0),
     * returns their sum */
    float (*exp_sum)(float *x, int64_t n, float max);
    /* the largest of n >= 1 values, NaN ignored (-inf when there is no other) */
    float (*max_f32)(const float *x, int64_t n);
    /* quantized KV cache rows (kv.h, kv_quant_impl.h): one position's d values in groups
     * of g (g = 32, or d when d < 32) to Q8_0 / Q4_0 codes and back to floats */
    void (*kv_quantize_q8_0)(const float *x, void *y, int d, int g);
    void (*kv_quantize_q4_0)(const float *x, void *y, int d, int g);
    void (*kv_dequant_q8_0)(const void *x, float *y, int d, int g);
    void (*kv_dequant_q4_0)(const void *x, float *y, int d, int g);
    /* the keys of n positions (rows row_bytes apart) to floats transposed, as the float
     * cache keeps them: y[i * ld + j] = value i of row j for j < n, 0 for n <= j < ld */
    void (*kv_dequant_t_q8_0)(const void *x, size_t row_bytes, int n, float *y, int ld, int d, int g);
    void (*kv_dequant_t_q4_0)(const void *x, size_t row_bytes, int n, float *y, int ld, int d, int g);
    /* scores against Q8_0 / Q4_0 keys (groups of 32, d a multiple of 32) in integers: the
     * nq query rows quantized by kvq_quantize_query (codes qq, scales qd, code sums qs) dot
     * the codes of n positions (rows row_bytes apart) with int8 products, as the
     * reference kvq_scores_ref; NULL where the table has no integer dot product worth it
     * (the keys are then dequantized and the float scores kernel runs). ahead: NULL, or n
     * rows (row_bytes apart) that a later call reads, prefetched as the kernel goes (a
     * hint, as attn_scores2_f16's) */
    void (*attn_scores_q8_0)(float *scores, size_t ldsc, const int8_t *qq, const float *qd, const int32_t *qs,
                             int nq, const void *K, size_t row_bytes, int n, int d, float scale, const void *ahead);
    void (*attn_scores_q4_0)(float *scores, size_t ldsc, const int8_t *qq, const float *qd, const int32_t *qs,
                             int nq, const void *K, size_t row_bytes, int n, int d, float scale, const void *ahead);
    /* values of Q8_0 / Q4_0 rows (groups of 32, d a multiple of 32) added into out without
     * writing the rows out as floats: bit for bit kv_dequant_* of each row, then
     * attn_values_f32; NULL where the table has no such kernel (the rows are then
     * dequantized into scratch and attn_values_f32 runs). ahead: as the scores' */
    void (*attn_values_q8_0)(float *out, const float *p, size_t ldp, int nq, const void *V, size_t row_bytes, int n,
                             int d, const void *ahead);
    void (*attn_values_q4_0)(float *out, const float *p, size_t ldp, int nq, const void *V, size_t row_bytes, int n,
                             int d, const void *ahead);
} sov_kernels;

/* The table for this CPU, or the one SOV_ISA forces (falling back to the best available
 * with a warning on stderr when the CPU lacks it). Never NULL. */
const sov_kernels *sov_kernels_select(void);
/* A specific table by name, or NULL when unknown or the CPU lacks the feature. */
const sov_kernels *sov_kernels_by_name(const char *isa);
/* Names of all tables compiled in (available or not), NULL-terminated. */
const char *const *sov_kernels_names(void);

/* Whether weights of this file type should be repacked to its planar type for this
 * table (the table has native kernels for the planar type). */
bool sov_kernels_prefers_planar(const sov_kernels *k, sov_type type);

/* Whether the CPU has AVX-512 VNNI (vpdpbusd); the avx512_vnni table needs it. */
bool sov_cpu_has_avx512_vnni(void);

/* The SIMD features the kernels use that this CPU and OS provide, as " avx2 fma f16c
 * avx512f ..." (" neon" on AArch64; "" when none), into out (cap bytes). */
void sov_cpu_features(char *out, size_t cap);

/* The tables (defined per ISA file; the SIMD ones exist only on their architecture). */
extern const sov_kernels sov_kernels_scalar;

#endif
