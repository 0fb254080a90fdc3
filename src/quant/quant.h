/* quant.h - tensor element types: the ggml/GGUF type ids, their block layouts, and the
 * scalar reference conversions to and from float.
 *
 * A quantized row of n values is n / block_size blocks of type_size bytes. The block
 * structs below are byte-for-byte the GGUF layouts (little-endian, no padding); the
 * static asserts pin their sizes. Dequantization here is the definition every SIMD
 * kernel is tested against. Two further formats are sov's own and never stored in a
 * file: Q8A and Q8K, the int8 forms activations are quantized to before a dot product
 * with a 32-block or a 256-block (k-quant) weight row. */
#ifndef SOV_QUANT_H
#define SOV_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/fp16.h"

typedef enum sov_type {
    SOV_TYPE_F32 = 0,
    SOV_TYPE_F16 = 1,
    SOV_TYPE_Q4_0 = 2,
    SOV_TYPE_Q4_1 = 3,
    SOV_TYPE_Q5_0 = 6,
    SOV_TYPE_Q5_1 = 7,
    SOV_TYPE_Q8_0 = 8,
    SOV_TYPE_Q8_1 = 9,
    SOV_TYPE_Q2_K = 10,
    SOV_TYPE_Q3_K = 11,
    SOV_TYPE_Q4_K = 12,
    SOV_TYPE_Q5_K = 13,
    SOV_TYPE_Q6_K = 14,
    SOV_TYPE_Q8_K = 15,
    SOV_TYPE_IQ2_XXS = 16,
    SOV_TYPE_IQ2_XS = 17,
    SOV_TYPE_IQ3_XXS = 18,
    SOV_TYPE_IQ1_S = 19,
    SOV_TYPE_IQ4_NL = 20,
    SOV_TYPE_IQ3_S = 21,
    SOV_TYPE_IQ2_S = 22,
    SOV_TYPE_IQ4_XS = 23,
    SOV_TYPE_I8 = 24,
    SOV_TYPE_I16 = 25,
    SOV_TYPE_I32 = 26,
    SOV_TYPE_I64 = 27,
    SOV_TYPE_F64 = 28,
    SOV_TYPE_IQ1_M = 29,
    SOV_TYPE_BF16 = 30,
    SOV_TYPE_TQ1_0 = 34,
    SOV_TYPE_TQ2_0 = 35,
    SOV_TYPE_MXFP4 = 39,
    SOV_TYPE_NVFP4 = 40,
    SOV_TYPE_Q1_0 = 41,
    SOV_TYPE_Q2_0 = 42,
    SOV_TYPE_COUNT = 43, /* ids below this may be valid; sov_type_traits says which */
    /* sov's own formats (never in files) */
    SOV_TYPE_Q8A = 64,   /* activations for the 32-blocks */
    SOV_TYPE_Q8K = 65,   /* activations for the k-quants */
    SOV_TYPE_Q4_0P = 66, /* q4_0 rows repacked planar (see below) */
    SOV_TYPE_Q8_0P = 67, /* q8_0 rows repacked planar */
    SOV_TYPE_Q8P = 68,   /* activations for the planar types */
    SOV_TYPE_MAX = 69,   /* bound of every type id, for tables */
} sov_type;

typedef struct sov_type_traits {
    const char *name;  /* "Q4_K" */
    int block_size;    /* values per block */
    int type_size;     /* bytes per block */
    bool supported;    /* sov can compute with it */
    sov_type act_type; /* the activation format its dot product takes */
} sov_type_traits;

/* Traits of a type id, or NULL for an id that is no ggml type at all. */
const sov_type_traits *sov_type_info(uint32_t type);
/* Name of a type id ("Q4_0", or "unknown(99)" in a static buffer for unknown ids). */
const char *sov_type_name(uint32_t type);
/* Type id for a name (case-insensitive), or -1. */
int sov_type_from_name(const char *name);
/* Bytes of a row of n values (n a multiple of the block size). */
size_t sov_row_size(sov_type type, int64_t n);

#define QK 32    /* values per block of the 32-blocks */
#define QK_K 256 /* values per super-block of the k-quants */

typedef struct { sov_half d; uint8_t qs[QK / 2]; } block_q4_0;
typedef struct { sov_half d, m; uint8_t qs[QK / 2]; } block_q4_1;
typedef struct { sov_half d; uint8_t qh[4]; uint8_t qs[QK / 2]; } block_q5_0;
typedef struct { sov_half d, m; uint8_t qh[4]; uint8_t qs[QK / 2]; } block_q5_1;
typedef struct { sov_half d; int8_t qs[QK]; } block_q8_0;
/* k-quants: 8 sub-blocks of 32 (q4_K, q5_K) with 6-bit scales and mins packed in 12 bytes;
 * q6_K: 16 sub-blocks of 16 with int8 scales. */
typedef struct { sov_half d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } block_q4_K;
typedef struct { sov_half d, dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; sov_half d; } block_q6_K;

/* The planar layouts keep a row's bytes but regroup them so SIMD kernels read whole
 * vectors: all block scales first, then all quants, with the quants of blocks 2k and
 * 2k+1 interleaved by halves (for q8 data: 64 bytes = [2k: 0-15][2k+1: 0-15]
 * [2k: 16-31][2k+1: 16-31]; for q4 data the 16 bytes of each block stay as they are,
 * which in a 32-byte load already gives the same pairing once split into nibbles).
 * A trailing odd block keeps its natural order.
 *   Q4_0P row of nb blocks: [nb x f16 d][nb x 16 nibble bytes]         (18 nb bytes)
 *   Q8_0P row:              [nb x f16 d][nb x 32 int8, pair-interleaved] (34 nb bytes)
 *   Q8P row (activations):  [nb x f32 d][nb x f32 sum of the block's int8]
 *                           [nb x 32 int8, pair-interleaved]            (40 nb bytes) */

/* Byte offset, inside a pair-interleaved quant area, of value j (0..31) of block i. */
static inline size_t sov_q8p_index(int64_t i, int j, int64_t nb) {
    if ((i | 1) >= nb) return (size_t)(32 * i + j); /* a trailing odd block: natural order */
    const size_t base = (size_t)(64 * (i >> 1));
    return base + (size_t)((j >> 4) * 32 + (i & 1) * 16 + (j & 15));
}

/* Q8A: 32 activations as int8 with a float scale d; s = d * sum(qs) (for the offset and
 * min terms of q4_0/q4_1/q5_0/q5_1 dot products). */
typedef struct { float d; float s; int8_t qs[QK]; } block_q8a;
/* Q8K: 256 activations as int8 with a float scale; bsums[i] = sum of qs[16i..16i+15]. */
typedef struct { float d; int16_t bsums[QK_K / 16]; int8_t qs[QK_K]; } block_q8k;

_Static_assert(sizeof(block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(block_q8a) == 40, "q8a layout");
_Static_assert(sizeof(block_q8k) == 292, "q8k layout");

/* The scale and min of sub-block j (0..7) of a q4_K/q5_K block, from the 12 packed
 * bytes: j < 4: low 6 bits of scales[j] / scales[j+4]; j >= 4: 4 low bits from
 * scales[j+4] and 2 high bits from the top of scales[j-4] / scales[j]. */
static inline void sov_k_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Scalar reference: n values of a row of `type` (F32, F16, BF16, the 32-blocks, the
 * k-quants, Q8A, Q8K) to float. n must be a multiple of the block size. Bit-exact with
 * the format's definition. */
void sov_dequantize_row(sov_type type, const void *src, float *dst, int64_t n);

/* Scalar reference quantizer: n floats into a row of `type` (every supported type,
 * Q8A, Q8K and the planar types included). Returns false for a type it cannot produce. */
bool sov_quantize_row(sov_type type, const float *src, void *dst, int64_t n);

/* Dequantizes a row of a planar type (Q4_0P, Q8_0P, Q8P); sov_dequantize_row calls it. */
void sov_dequantize_planar(sov_type type, const void *row, float *y, int64_t n);
/* The reference Q8P activation quantizer. */
void sov_quantize_q8p_ref(const float *x, void *y, int64_t n);

/* The planar type a file type can be repacked to (SOV_TYPE_Q4_0P for Q4_0, ...), or -1. */
int sov_planar_type(sov_type type);
/* Rewrites one row of n values from its file layout to its planar layout, in place
 * (the row keeps its size). False only when out of memory. */
bool sov_repack_row_planar(sov_type type, void *row, int64_t n);
/* The same from a file row into a separate destination of the same size. */
void sov_repack_row_planar_to(sov_type type, const void *src_row, void *dst_row, int64_t n);

#endif
