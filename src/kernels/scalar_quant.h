/* scalar_quant.h - the scalar quantized dot products and activation quantizers (the
 * reference for every SIMD version; see kernels.h for the contracts). */
#ifndef SOV_KERNELS_SCALAR_QUANT_H
#define SOV_KERNELS_SCALAR_QUANT_H

#include <stdint.h>

float sov_vec_dot_q4_0_scalar(int64_t n, const void *w, const void *a);
float sov_vec_dot_q4_1_scalar(int64_t n, const void *w, const void *a);
float sov_vec_dot_q5_0_scalar(int64_t n, const void *w, const void *a);
float sov_vec_dot_q5_1_scalar(int64_t n, const void *w, const void *a);
float sov_vec_dot_q8_0_scalar(int64_t n, const void *w, const void *a);
float sov_vec_dot_q4_K_scalar(int64_t n, const void *w, const void *a);
float sov_vec_dot_q5_K_scalar(int64_t n, const void *w, const void *a);
float sov_vec_dot_q6_K_scalar(int64_t n, const void *w, const void *a);

float sov_vec_dot_q4_0p_scalar(int64_t n, const void *w, const void *a);
float sov_vec_dot_q8_0p_scalar(int64_t n, const void *w, const void *a);

void sov_quantize_q8a_scalar(const float *x, void *y, int64_t n);
void sov_quantize_q8p_scalar(const float *x, void *y, int64_t n);
void sov_quantize_q8k_scalar(const float *x, void *y, int64_t n);

/* the scalar encoder kernels (kernels.h's layernorm, gelu_erf), also used by tables that
 * have no SIMD version of them yet (NEON) */
void sov_layernorm_scalar(float *y, const float *x, const float *w, const float *b, int64_t n, float eps);
void sov_gelu_erf_scalar(float *y, const float *x, int64_t n);

#endif
