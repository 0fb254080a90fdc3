/* kernels_avx2.c - the AVX2 + FMA + F16C kernel table (x86-64 since Haswell / Zen).
 *
 * Quantized dot products work block by block in integers: weights are unpacked to
 * unsigned bytes (nibbles, plus the fifth/sixth bit where the format has one) and
 * multiplied with the int8 activations by vpmaddubsw (u8 x s8 -> pairs summed to s16),
 * then vpmaddwd widens to s32 (times the sub-block scale for the k-quants). The offset of
 * the format (the -8 of q4_0, -16 of q5_0, -32 of q6_K) and the mins of q4_1/q5_1/q4_K/
 * q5_K are applied once per block through the activation sums (Q8A.s, Q8K.bsums), so the
 * inner loop never handles signed weights.
 *
 * Every product of a tile (gemm) is computed by the same instruction sequence as the
 * single dot product (vec_dot is the 1x1 tile), so a token's result does not depend on
 * which other tokens share its batch.
 *
 * With AVX-512 VNNI (kernels_avx512_vnni.c compiles this file with -mavx512vnni) the
 * u8 x s8 products go through vpdpbusd instead: it multiplies, sums each 4 bytes and adds
 * to an int32 accumulator in one instruction, where vpmaddubsw + vpmaddwd + vpaddd take
 * three. Each int32 lane then holds exactly the integer the AVX2 sequence gives (the sum
 * of the same 4 products; vpmaddubsw never saturates here: every operand pair is at most
 * 2 x 31 x 128 or, with the sign trick, 2 x 128 x 127 < 2^15), and the float part is
 * unchanged, so the VNNI table is bit-identical to the avx2 and avx512 tables. The
 * exceptions are the native 512-bit tiles: q4_0P in the VNNI table (tiles_avx512.h) and
 * the k-quants in both AVX-512 tables (kquant_x86.h): same integers, float sums in
 * another order. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/kv_quant_impl.h"

#ifndef SOV_AVX2_TABLE_LINKAGE
#define SOV_AVX2_TABLE_LINKAGE
#endif

/* ---- helpers ---- */

static inline float hsum_ps(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

static inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* vpdpbusd on 256-bit vectors needs AVX512_VNNI plus AVX512VL (the AVX-VNNI encoding
 * of Alder Lake would be a separate table; no table here is built for it). */
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define SOV_VNNI 1
#else
#define SOV_VNNI 0
#endif

/* 32 unsigned bytes (u8) times 32 signed bytes, summed to 8 x s32 (lane k: bytes 4k..4k+3).
 * Both versions give the same lanes as long as vpmaddubsw does not saturate
 * (|u_2k s_2k + u_2k+1 s_2k+1| < 2^15), which holds for every caller. */
static inline __m256i dot_u8s8(__m256i u, __m256i s) {
#if SOV_VNNI
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

#if SOV_VNNI
/* -k times the sum of each 4 bytes of y, as 8 x s32 (k <= 128): the start value of an
 * accumulator that adds u . y where u = w + k as unsigned bytes, so that it ends at w . y.
 * How the VNNI kernels handle signed weights (vpdpbusd wants one unsigned operand): one
 * xor/offset per weight vector plus this per activation vector, shared by all rows and
 * columns of a tile, instead of two vpsignb per product. */
static inline __m256i neg_offset_sums(__m256i y, int k) {
    return _mm256_sub_epi32(_mm256_setzero_si256(), dot_u8s8(_mm256_set1_epi8((char)k), y));
}
#endif

/* q4_0 / q4_1 nibbles of one block as 32 bytes: low nibbles first (values 0..15), then high */
static inline __m256i unpack_nibbles(const uint8_t *qs) {
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(t, 4), m4), _mm_and_si128(t, m4));
}

/* The fifth bit of the 32 values of a q5 block (bit j of qh for value j) as 0x10 bytes. */
static inline __m256i unpack_qh_bits(const uint8_t *qh) {
    uint32_t bits;
    memcpy(&bits, qh, 4);
    /* spread: byte j takes bit j */
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303ll, 0x0202020202020202ll, 0x0101010101010101ll, 0);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), shuf);
    const __m256i mask = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    b = _mm256_cmpeq_epi8(_mm256_and_si256(b, mask), mask);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x10));
}

/* ---- 32-blocks against Q8A ---- */

/* q4_0 and q8_0 tiles: R weight rows x C activation columns per call, so that each
 * activation block is loaded once for R rows and each weight block once for C columns,
 * and R independent weight streams keep the memory system busy. Every (r, c) has its
 * own accumulator and goes through exactly the instructions of the 1 x 1 tile, so a
 * product's value never depends on the tile it was computed in. */
#define UNROLL _Pragma("GCC unroll 8")

/* The offset term of a q4_0 block against activations y, once per column and block:
 * AVX2: 8 . y as int16 pairs; VNNI: -8 . y as int32 quads, the start of the accumulation. */
static inline __m256i q4_0_yoff(__m256i y) {
#if SOV_VNNI
    return neg_offset_sums(y, 8);
#else
    return _mm256_maddubs_epi16(_mm256_set1_epi8(8), y);
#endif
}

static inline __m256i q4_0_prod(__m256i q, __m256i y, __m256i y8) {
#if SOV_VNNI
    return _mm256_dpbusd_epi32(y8, q, y); /* -8 . y + q . y */
#else
    /* (q - 8) . y as pairs: q . y - 8 . y, both in int16 range */
    return _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(q, y), y8), _mm256_set1_epi16(1));
#endif
}

#define Q4_0_TILE(R, C)                                                                                     \
    static inline void tile_q4_0_##R##x##C(int64_t nb, const char *w, size_t ldw, const char *a, size_t lda, \
                                           float *y, size_t ldy) {                                           \
        __m256 acc[R][C];                                                                                    \
        UNROLL for (int r = 0; r < R; r++)                                                                   \
            UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();                                     \
        for (int64_t i = 0; i < nb; i++) {                                                                   \
            __m256i ys[C], y8[C];                                                                            \
            float da[C];                                                                                     \
            UNROLL for (int c = 0; c < C; c++) {                                                             \
                const block_q8a *b = (const block_q8a *)(a + (size_t)c * lda) + i;                           \
                ys[c] = _mm256_loadu_si256((const __m256i *)b->qs);                                          \
                y8[c] = q4_0_yoff(ys[c]);                                                                    \
                da[c] = b->d;                                                                                \
            }                                                                                                \
            UNROLL for (int r = 0; r < R; r++) {                                                             \
                const block_q4_0 *b = (const block_q4_0 *)(w + (size_t)r * ldw) + i;                         \
                const __m256i q = unpack_nibbles(b->qs);                                                     \
                const float dw = h2f(b->d);                                                                  \
                UNROLL for (int c = 0; c < C; c++)                                                           \
                    acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * da[c]),                                  \
                                                _mm256_cvtepi32_ps(q4_0_prod(q, ys[c], y8[c])), acc[r][c]);  \
            }                                                                                                \
        }                                                                                                    \
        UNROLL for (int r = 0; r < R; r++)                                                                   \
            UNROLL for (int c = 0; c < C; c++) y[(size_t)c * ldy + (size_t)r] = hsum_ps(acc[r][c]);                 \
    }

/* q8_0: both operands signed. AVX2: the sign trick, |q| . (y * sign q). VNNI: the offset
 * trick, (q + 128) . y - 128 . y (exact for every q, -128 included), with qx = q ^ 0x80
 * once per weight block and yoff = -128 . y once per activation block. */
static inline __m256i q8_0_wprep(__m256i q) {
#if SOV_VNNI
    return _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80));
#else
    return q;
#endif
}

static inline __m256i q8_0_yoff(__m256i y) {
#if SOV_VNNI
    return neg_offset_sums(y, 128);
#else
    (void)y;
    return _mm256_setzero_si256();
#endif
}

static inline __m256i q8_0_prod(__m256i q, __m256i y, __m256i yoff) {
#if SOV_VNNI
    return _mm256_dpbusd_epi32(yoff, q, y);
#else
    (void)yoff;
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q)),
                             _mm256_set1_epi16(1));
#endif
}

#define Q8_0_TILE(R, C)                                                                                     \
    static inline void tile_q8_0_##R##x##C(int64_t nb, const char *w, size_t ldw, const char *a, size_t lda, \
                                           float *y, size_t ldy) {                                           \
        __m256 acc[R][C];                                                                                    \
        UNROLL for (int r = 0; r < R; r++)                                                                   \
            UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();                                     \
        for (int64_t i = 0; i < nb; i++) {                                                                   \
            __m256i ys[C], yoff[C];                                                                          \
            float da[C];                                                                                     \
            UNROLL for (int c = 0; c < C; c++) {                                                             \
                const block_q8a *b = (const block_q8a *)(a + (size_t)c * lda) + i;                           \
                ys[c] = _mm256_loadu_si256((const __m256i *)b->qs);                                          \
                yoff[c] = q8_0_yoff(ys[c]);                                                                  \
                da[c] = b->d;                                                                                \
            }                                                                                                \
            UNROLL for (int r = 0; r < R; r++) {                                                             \
                const block_q8_0 *b = (const block_q8_0 *)(w + (size_t)r * ldw) + i;                         \
                const __m256i q = q8_0_wprep(_mm256_loadu_si256((const __m256i *)b->qs));                    \
                const float dw = h2f(b->d);                                                                  \
                UNROLL for (int c = 0; c < C; c++)                                                           \
                    acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * da[c]),                                  \
                                                _mm256_cvtepi32_ps(q8_0_prod(q, ys[c], yoff[c])), acc[r][c]); \
            }                                                                                                \
        }                                                                                                    \
        UNROLL for (int r = 0; r < R; r++)                                                                   \
            UNROLL for (int c = 0; c < C; c++) y[(size_t)c * ldy + (size_t)r] = hsum_ps(acc[r][c]);                 \
    }

Q4_0_TILE(1, 1)
Q4_0_TILE(1, 2)
Q4_0_TILE(4, 2)
Q8_0_TILE(1, 1)
Q8_0_TILE(1, 2)
Q8_0_TILE(4, 2)

/* Walks an nr x nc tile in 4 x 2 blocks, then the leftover rows, then a leftover column. */
#define TILED_GEMM(name, T, blk)                                                                             \
    static void name(int64_t n, const void *vw, size_t ldw, int nr, const void *va, size_t lda, int nc,      \
                     float *y, size_t ldy) {                                                                 \
        const int64_t nb = n / QK;                                                                           \
        const char *w = vw, *a = va;                                                                         \
        int c = 0;                                                                                           \
        for (; c + 2 <= nc; c += 2) {                                                                        \
            int r = 0;                                                                                       \
            for (; r + 4 <= nr; r += 4)                                                                      \
                tile_##T##_4x2(nb, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy); \
            for (; r < nr; r++)                                                                              \
                tile_##T##_1x2(nb, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy); \
        }                                                                                                    \
        for (; c < nc; c++) {                                                                                \
            /* one column (decode): rows one after the other, a single sequential stream, */               \
            /* which the hardware prefetcher follows best */                                                 \
            for (int r = 0; r < nr; r++)                                                                     \
                tile_##T##_1x1(nb, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy); \
        }                                                                                                    \
        (void)sizeof(blk);                                                                                   \
    }

TILED_GEMM(gemm_q4_0, q4_0, block_q4_0)
TILED_GEMM(gemm_q8_0, q8_0, block_q8_0)

static float dot_q4_0(int64_t n, const void *w, const void *a) {
    float y;
    tile_q4_0_1x1(n / QK, w, 0, a, 0, &y, 1);
    return y;
}

static float dot_q8_0(int64_t n, const void *w, const void *a) {
    float y;
    tile_q8_0_1x1(n / QK, w, 0, a, 0, &y, 1);
    return y;
}

static float dot_q4_1(int64_t n, const void *vw, const void *va) {
    const block_q4_1 *w = vw;
    const block_q8a *a = va;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        const float dw = h2f(w[i].d);
        const __m256i p = dot_u8s8(unpack_nibbles(w[i].qs), _mm256_loadu_si256((const __m256i *)a[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dw * a[i].d), _mm256_cvtepi32_ps(p), acc);
        mins += h2f(w[i].m) * a[i].s;
    }
    return hsum_ps(acc) + mins;
}

static float dot_q5_0(int64_t n, const void *vw, const void *va) {
    const block_q5_0 *w = vw;
    const block_q8a *a = va;
    __m256 acc = _mm256_setzero_ps();
    float off = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        const float dw = h2f(w[i].d);
        const __m256i q = _mm256_or_si256(unpack_nibbles(w[i].qs), unpack_qh_bits(w[i].qh));
        const __m256i p = dot_u8s8(q, _mm256_loadu_si256((const __m256i *)a[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dw * a[i].d), _mm256_cvtepi32_ps(p), acc);
        off += dw * a[i].s;
    }
    return hsum_ps(acc) - 16.0f * off;
}

static float dot_q5_1(int64_t n, const void *vw, const void *va) {
    const block_q5_1 *w = vw;
    const block_q8a *a = va;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t i = 0; i < n / QK; i++) {
        const float dw = h2f(w[i].d);
        const __m256i q = _mm256_or_si256(unpack_nibbles(w[i].qs), unpack_qh_bits(w[i].qh));
        const __m256i p = dot_u8s8(q, _mm256_loadu_si256((const __m256i *)a[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dw * a[i].d), _mm256_cvtepi32_ps(p), acc);
        mins += h2f(w[i].m) * a[i].s;
    }
    return hsum_ps(acc) + mins;
}

/* ---- planar q4_0 / q8_0 against Q8P ----
 * Layouts in quant.h. A 32-byte load of q4_0P nibbles covers blocks 2k and 2k+1; split
 * into low and high nibbles it lines up with the two 32-byte halves of the Q8P pair, so
 * one maddubs per half and one madd give both blocks' sums (lanes 0-3 and 4-7). Scales
 * are loaded 8 blocks at a time and spread to the pair's lanes with one permute. The -8
 * of q4_0 is applied once per row: sum_i dw_i da_i (8 sum_i q_a). Every (r, c) of a
 * tile runs the instructions of the 1 x 1 case on its own accumulators. */

/* (a, a, a, a, b, b, b, b): the scales of a pair of blocks, lane by lane as a pair product's */
static inline __m256 pair_scales(float a, float b) { return _mm256_setr_ps(a, a, a, a, b, b, b, b); }

static inline __m256i pair_idx(int j) {
    return _mm256_setr_epi32(2 * j, 2 * j, 2 * j, 2 * j, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1);
}

/* one leftover block (outside the groups of 8) of q4_0P x Q8P, in integers */
static inline float q4_0p_block(const uint8_t *w, const uint8_t *a, int64_t i, int64_t nb) {
    const uint8_t *qs = w + 2 * nb + 16 * i;
    const int8_t *aq = (const int8_t *)(a + 8 * nb);
    int s = 0;
    for (int j = 0; j < 16; j++) {
        s += ((qs[j] & 0xF) - 8) * aq[sov_q8p_index(i, j, nb)];
        s += ((qs[j] >> 4) - 8) * aq[sov_q8p_index(i, j + 16, nb)];
    }
    uint16_t hd;
    float da;
    memcpy(&hd, w + 2 * i, 2);
    memcpy(&da, a + 4 * i, 4);
    return h2f(hd) * da * (float)s;
}

static inline float q8_0p_block(const uint8_t *w, const uint8_t *a, int64_t i, int64_t nb) {
    const int8_t *wq = (const int8_t *)(w + 2 * nb), *aq = (const int8_t *)(a + 8 * nb);
    int s = 0;
    for (int j = 0; j < 32; j++) {
        const size_t k = sov_q8p_index(i, j, nb);
        s += wq[k] * aq[k];
    }
    uint16_t hd;
    float da;
    memcpy(&hd, w + 2 * i, 2);
    memcpy(&da, a + 4 * i, 4);
    return h2f(hd) * da * (float)s;
}

#define PLANAR_TILE(T, R, C, COL_PREP, PAIR_PRODUCT, OFFSET)                                              \
    static inline void tile_##T##_##R##x##C(int64_t nb, const char *wb, size_t ldw, const char *ab,       \
                                            size_t lda, float *y, size_t ldy) {                          \
        enum { NC = C }; /* the column count, for the product macros */                                  \
        __m256 acc[R][C];                                                                                \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps(); \
        const int64_t ng = nb / 8 * 8; /* blocks in whole groups of 8 */                                 \
        for (int64_t i = 0; i < ng; i += 8) {                                                            \
            __m256 dw[R], da[C];                                                                         \
            UNROLL for (int r = 0; r < R; r++) dw[r] = _mm256_cvtph_ps(                                  \
                _mm_loadu_si128((const __m128i *)(wb + (size_t)r * ldw + 2 * i)));                       \
            if (C == 1 && (i & 31) == 0) /* decode: the rows' scales PF_ROWS rows on (a line: 32) */      \
                UNROLL for (int r = 0; r < R; r++)                                                       \
                    _mm_prefetch((const char *)((uintptr_t)wb + (r + PF_ROWS) * ldw + 2 * (uintptr_t)i), _MM_HINT_T0); \
            UNROLL for (int c = 0; c < C; c++) da[c] = _mm256_loadu_ps((const float *)(ab + (size_t)c * lda) + i); \
            UNROLL for (int j = 0; j < 4; j++) {                                                         \
                const __m256i idx = pair_idx(j);                                                         \
                __m256i ylo[C], yhi[C], yoff[C];                                                         \
                __m256 sa[C];                                                                            \
                UNROLL for (int c = 0; c < C; c++) {                                                     \
                    const char *q8 = ab + (size_t)c * lda + 8 * nb + 32 * (i + 2 * j);                   \
                    ylo[c] = _mm256_loadu_si256((const __m256i *)q8);                                    \
                    yhi[c] = _mm256_loadu_si256((const __m256i *)(q8 + 32));                             \
                    sa[c] = _mm256_permutevar8x32_ps(da[c], idx);                                        \
                    COL_PREP                                                                             \
                }                                                                                        \
                UNROLL for (int r = 0; r < R; r++) {                                                     \
                    const __m256 sw = _mm256_permutevar8x32_ps(dw[r], idx);                              \
                    const char *wq = wb + (size_t)r * ldw + 2 * nb;                                      \
                    PAIR_PRODUCT                                                                         \
                }                                                                                        \
            }                                                                                            \
        }                                                                                                \
        /* the whole pairs after the groups (rows of 32 x 8k + 64 values: 384, 576, 896 wide), */       \
        /* their scales set one pair at a time */                                                        \
        const int64_t np = nb & ~(int64_t)1;                                                             \
        for (int64_t i = ng; i < np; i += 2) {                                                           \
            const int j = 0;                                                                             \
            __m256i ylo[C], yhi[C], yoff[C];                                                             \
            __m256 sa[C];                                                                                \
            UNROLL for (int c = 0; c < C; c++) {                                                         \
                const char *ac = ab + (size_t)c * lda, *q8 = ac + 8 * nb + 32 * i;                       \
                ylo[c] = _mm256_loadu_si256((const __m256i *)q8);                                        \
                yhi[c] = _mm256_loadu_si256((const __m256i *)(q8 + 32));                                 \
                sa[c] = pair_scales(((const float *)ac)[i], ((const float *)ac)[i + 1]);                 \
                COL_PREP                                                                                 \
            }                                                                                            \
            UNROLL for (int r = 0; r < R; r++) {                                                         \
                const uint16_t *dh = (const uint16_t *)(wb + (size_t)r * ldw);                           \
                const __m256 sw = pair_scales(h2f(dh[i]), h2f(dh[i + 1]));                               \
                const char *wq = wb + (size_t)r * ldw + 2 * nb;                                          \
                PAIR_PRODUCT                                                                             \
            }                                                                                            \
        }                                                                                                \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) {                          \
            const uint8_t *w = (const uint8_t *)(wb + (size_t)r * ldw), *a = (const uint8_t *)(ab + (size_t)c * lda); \
            float v = hsum_ps(acc[r][c]);                                                                \
            OFFSET                                                                                       \
            for (int64_t i = np; i < nb; i++) v += T##_block(w, a, i, nb); /* a trailing odd block */    \
            y[(size_t)c * ldy + (size_t)r] = v;                                                          \
        }                                                                                                \
    }

/* lo . ylo + hi . yhi per 4-byte lane. AVX2 adds the two vpmaddubsw results in int16
 * (at most 4 x 15 x 128 = 7680, no wrap) before one vpmaddwd; VNNI chains two vpdpbusd. */
static inline __m256i q4p_pair(__m256i lo, __m256i hi, __m256i ylo, __m256i yhi) {
#if SOV_VNNI
    return _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, ylo), hi, yhi);
#else
    const __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, ylo), _mm256_maddubs_epi16(hi, yhi));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
#endif
}

/* q4_0P: nibbles of blocks 2k, 2k+1 in one load */
#define Q4P_PRODUCT                                                                                      \
    const __m256i q = _mm256_loadu_si256((const __m256i *)(wq + 16 * (i + 2 * j)));                      \
    const __m256i lo = _mm256_and_si256(q, _mm256_set1_epi8(0x0f));                                      \
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), _mm256_set1_epi8(0x0f));                \
    UNROLL for (int c = 0; c < NC; c++) {                                                                \
        const __m256i p = q4p_pair(lo, hi, ylo[c], yhi[c]);                                              \
        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(sw, sa[c]), acc[r][c]);         \
    }

/* the -8 of the whole-group blocks: dw da (8 sum q_a), 8 blocks per step */
#define Q4P_OFFSET                                                                                       \
    {                                                                                                    \
        __m256 corr = _mm256_setzero_ps();                                                               \
        for (int64_t i = 0; i < ng; i += 8) {                                                            \
            const __m256 s = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 2 * i))), \
                                           _mm256_loadu_ps((const float *)a + i));                       \
            corr = _mm256_fmadd_ps(s, _mm256_loadu_ps((const float *)a + nb + i), corr);                 \
        }                                                                                                \
        float tail = 0.0f; /* the whole pairs after the groups */                                       \
        for (int64_t i = ng; i < np; i++) {                                                              \
            uint16_t hd;                                                                                 \
            memcpy(&hd, w + 2 * i, 2);                                                                   \
            tail += h2f(hd) * ((const float *)a)[i] * ((const float *)a)[nb + i];                        \
        }                                                                                                \
        v -= 8.0f * (hsum_ps(corr) + tail);                                                              \
    }

/* Decode (one column) prefetches the weights PF_ROWS rows on (two 4-row tiles, the op
 * walks rows in order). Measured on Zen 4, Qwen2.5-0.5B-shaped Q8_0 tg: one thread 45 ->
 * 60 tokens/s, two 80 -> 120 (4 rows: 106-114, 16: no better than 8). */
#define PF_ROWS 8
/* q8_0P: the weight pair is laid out like the activations'. AVX2: the sign trick per
 * product; VNNI: the offset trick as for q8_0 (Q8P_COL_PREP gives -128 . y of both
 * halves per column, the weights are offset once per row), two vpdpbusd per product. */
#if SOV_VNNI
#define Q8P_COL_PREP                                                                                     \
    yoff[c] = _mm256_sub_epi32(_mm256_setzero_si256(),                                                   \
                               _mm256_dpbusd_epi32(dot_u8s8(_mm256_set1_epi8((char)0x80), ylo[c]),       \
                                                   _mm256_set1_epi8((char)0x80), yhi[c]));
#define Q8P_PRODUCT                                                                                      \
    if (NC == 1) /* integer arithmetic: the address may lie past the matrix (no fault) */                 \
        _mm_prefetch((const char *)((uintptr_t)wq + 32 * (uintptr_t)(i + 2 * j) + PF_ROWS * ldw), _MM_HINT_T0); \
    const __m256i wlo = q8_0_wprep(_mm256_loadu_si256((const __m256i *)(wq + 32 * (i + 2 * j))));        \
    const __m256i whi = q8_0_wprep(_mm256_loadu_si256((const __m256i *)(wq + 32 * (i + 2 * j) + 32)));   \
    UNROLL for (int c = 0; c < NC; c++) {                                                                \
        const __m256i p = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(yoff[c], wlo, ylo[c]), whi, yhi[c]);   \
        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(sw, sa[c]), acc[r][c]);         \
    }
#else
#define Q8P_COL_PREP (void)yoff;
#define Q8P_PRODUCT                                                                                      \
    const __m256i wlo = _mm256_loadu_si256((const __m256i *)(wq + 32 * (i + 2 * j)));                     \
    const __m256i whi = _mm256_loadu_si256((const __m256i *)(wq + 32 * (i + 2 * j) + 32));                \
    const __m256i alo = _mm256_sign_epi8(wlo, wlo), ahi = _mm256_sign_epi8(whi, whi);                     \
    UNROLL for (int c = 0; c < NC; c++) {                                                                \
        const __m256i p = _mm256_add_epi32(                                                              \
            _mm256_madd_epi16(_mm256_maddubs_epi16(alo, _mm256_sign_epi8(ylo[c], wlo)), _mm256_set1_epi16(1)), \
            _mm256_madd_epi16(_mm256_maddubs_epi16(ahi, _mm256_sign_epi8(yhi[c], whi)), _mm256_set1_epi16(1))); \
        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(sw, sa[c]), acc[r][c]);         \
    }
#endif

PLANAR_TILE(q4_0p, 1, 1, (void)yoff;, Q4P_PRODUCT, Q4P_OFFSET)
PLANAR_TILE(q4_0p, 1, 2, (void)yoff;, Q4P_PRODUCT, Q4P_OFFSET)
PLANAR_TILE(q4_0p, 4, 2, (void)yoff;, Q4P_PRODUCT, Q4P_OFFSET)
PLANAR_TILE(q8_0p, 1, 1, Q8P_COL_PREP, Q8P_PRODUCT, )
PLANAR_TILE(q8_0p, 1, 2, Q8P_COL_PREP, Q8P_PRODUCT, )
PLANAR_TILE(q8_0p, 4, 2, Q8P_COL_PREP, Q8P_PRODUCT, )
PLANAR_TILE(q8_0p, 4, 1, Q8P_COL_PREP, Q8P_PRODUCT, )

/* nb counts 32-blocks for every tiled type */
#define TILED_GEMM_P(name, T, DR)                                                                        \
    static void name(int64_t n, const void *vw, size_t ldw, int nr, const void *va, size_t lda, int nc,  \
                     float *y, size_t ldy) {                                                             \
        const int64_t nb = n / QK;                                                                       \
        const char *w = vw, *a = va;                                                                     \
        int c = 0;                                                                                       \
        for (; c + 2 <= nc; c += 2) {                                                                    \
            int r = 0;                                                                                   \
            for (; r + 4 <= nr; r += 4)                                                                  \
                tile_##T##_4x2(nb, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy); \
            for (; r < nr; r++)                                                                          \
                tile_##T##_1x2(nb, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy); \
        }                                                                                                \
        for (; c < nc; c++) {                                                                            \
            /* one column (decode): DR rows at a time (DR weight streams in flight) */                   \
            int r = 0;                                                                                   \
            for (; DR == 4 && r + 4 <= nr; r += 4)                                                       \
                tile_##T##_##DR##x1(nb, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy); \
            for (; r < nr; r++)                                                                          \
                tile_##T##_1x1(nb, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy); \
        }                                                                                                \
    }

/* With AVX-512 F + VNNI (the avx512_vnni table) q4_0P has native 512-bit tiles
 * (tiles_avx512.h) instead of these. */
#if SOV_VNNI && defined(__AVX512F__)
#define SOV_Q4PZ 1
#include "tiles_avx512.h"
#define SOV_GEMM_Q4_0P gemm_q4_0pz
#define SOV_DOT_Q4_0P dot_q4_0pz
#else
#define SOV_Q4PZ 0
#define SOV_GEMM_Q4_0P gemm_q4_0p
#define SOV_DOT_Q4_0P dot_q4_0p
#endif

#if !SOV_Q4PZ
TILED_GEMM_P(gemm_q4_0p, q4_0p, 1) /* 4 rows: ~12% slower on a Xeon */

static float dot_q4_0p(int64_t n, const void *w, const void *a) {
    float y;
    tile_q4_0p_1x1(n / QK, w, 0, a, 0, &y, 1);
    return y;
}
#endif
TILED_GEMM_P(gemm_q8_0p, q8_0p, 4) /* 1 row: ~10% slower on a Xeon (avx512_vnni) */

static float dot_q8_0p(int64_t n, const void *w, const void *a) {
    float y;
    tile_q8_0p_1x1(n / QK, w, 0, a, 0, &y, 1);
    return y;
}

/* ---- k-quants against Q8K ---- */

#include "kquant_x86.h"

/* ---- float weights ---- */

static float dot_f32_avx2(const float *x, const float *y, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float s = hsum_ps(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

static float dot_f16_avx2(const sov_half *x, const float *y, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i + 8))), _mm256_loadu_ps(y + i + 8),
                             a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))), _mm256_loadu_ps(y + i), a0);
    float s = hsum_ps(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += h2f(x[i]) * y[i];
    return s;
}

static inline __m256 load_bf16(const sov_bf16 *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}


/* Float weights (F32, F16, BF16) against F32 activations, in tiles of R rows x C columns:
 * each weight vector is widened once for the C columns, and each (r, c) has one 8-lane
 * accumulator over the whole 8-value steps, summed at the end, then the values past the
 * last multiple of 8 added one by one. vec_dot is the 1 x 1 tile, so gemm equals vec_dot
 * bit for bit whatever the tile (batch invariance). Row by row through a dot product, a
 * 512-token F16 prompt ran at 0.2x llama.cpp's speed: every weight was widened and
 * loaded once per token. */
static inline __m256 load_f32w(const float *p) { return _mm256_loadu_ps(p); }
static inline __m256 load_f16w(const sov_half *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline float scalar_f32w(float x) { return x; }
static inline float scalar_f16w(sov_half x) { return h2f(x); }

/* decode (one column, 4-row tiles) prefetches the rows FPF on: without it four row streams
 * at once read F16 weights at 2/3 of the speed of one row at a time (TinyLlama-shaped F16,
 * tg 7.3 against 10.8 tokens/s, one thread); with it, the same (10.7) */
#define FPF 4
#define FLOAT_TILE(T, ET, LOAD, SCALAR, R, C)                                                           \
    static inline void tile_##T##_##R##x##C(int64_t n, const char *w, size_t ldw, const char *a, size_t lda, \
                                            float *y, size_t ldy) {                                     \
        __m256 acc[R][C];                                                                               \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps(); \
        const int64_t n8 = n & ~(int64_t)7;                                                             \
        for (int64_t i = 0; i < n8; i += 8) {                                                           \
            __m256 av[C];                                                                               \
            UNROLL for (int c = 0; c < C; c++) av[c] = _mm256_loadu_ps((const float *)(a + (size_t)c * lda) + i); \
            if (C == 1 && R == 4 && (i * (int64_t)sizeof(ET)) % 64 == 0) /* decode: FPF rows on */      \
                UNROLL for (int r = 0; r < R; r++)                                                      \
                    _mm_prefetch((const char *)((uintptr_t)w + (r + FPF) * ldw + (uintptr_t)i * sizeof(ET)), _MM_HINT_T0); \
            UNROLL for (int r = 0; r < R; r++) {                                                        \
                const __m256 wv = LOAD((const ET *)(w + (size_t)r * ldw) + i);                          \
                UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm256_fmadd_ps(wv, av[c], acc[r][c]);   \
            }                                                                                           \
        }                                                                                               \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) {                         \
            const ET *wr = (const ET *)(w + (size_t)r * ldw);                                           \
            const float *ac = (const float *)(a + (size_t)c * lda);                                     \
            float v = hsum_ps(acc[r][c]);                                                               \
            for (int64_t i = n8; i < n; i++) v += SCALAR(wr[i]) * ac[i];                                \
            y[(size_t)c * ldy + (size_t)r] = v;                                                         \
        }                                                                                               \
    }

/* columns in tiles of FLOAT_C (AVX-512 builds have 32 vector registers: 4 x 4; AVX2: 4 x 2) */
#if defined(__AVX512F__)
#define FLOAT_C 4
/* AVX-512 builds: the same tiles on 16 lanes. A 512-bit FMA issues at the rate of a 256-bit
 * one on Zen 4 (measured: 4.4 per ns either way, so twice the FLOPs), and llama.cpp's F16
 * prompts ran 1.5x faster than the 8-lane tiles for that reason. The values past the last
 * multiple of 16 are one masked step (masked-off lanes load zeros and never fault), so
 * there is no scalar tail; vec_dot is still the 1 x 1 tile (gemm == vec_dot, bit for bit). */
#undef FLOAT_TILE
static inline __m512 load16_f32w(const float *p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
static inline __m512 load16_f16w(const sov_half *p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
static inline __m512 load16_bf16(const sov_bf16 *p, __mmask16 m) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
#define LOAD16(LOAD) LOAD16_##LOAD /* the 16-lane load of an 8-lane one */
#define LOAD16_load_f32w load16_f32w
#define LOAD16_load_f16w load16_f16w
#define LOAD16_load_bf16 load16_bf16
#define FLOAT_TILE(T, ET, LOAD, SCALAR, R, C)                                                           \
    static inline void tile_##T##_##R##x##C(int64_t n, const char *w, size_t ldw, const char *a, size_t lda, \
                                            float *y, size_t ldy) {                                     \
        __m512 acc[R][C];                                                                               \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps(); \
        const int64_t n16 = n & ~(int64_t)15;                                                           \
        for (int64_t i = 0; i <= n16; i += 16) {                                                        \
            const __mmask16 m = i < n16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - n16)) - 1);      \
            if (i == n16 && m == 0) break;                                                              \
            __m512 av[C];                                                                               \
            UNROLL for (int c = 0; c < C; c++) av[c] = _mm512_maskz_loadu_ps(m, (const float *)(a + (size_t)c * lda) + i); \
            if (C == 1 && R == 4 && (i * (int64_t)sizeof(ET)) % 64 == 0) /* decode: FPF rows on */      \
                UNROLL for (int r = 0; r < R; r++)                                                      \
                    _mm_prefetch((const char *)((uintptr_t)w + (r + FPF) * ldw + (uintptr_t)i * sizeof(ET)), _MM_HINT_T0); \
            UNROLL for (int r = 0; r < R; r++) {                                                        \
                const __m512 wv = LOAD16(LOAD)((const ET *)(w + (size_t)r * ldw) + i, m);                   \
                UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm512_fmadd_ps(wv, av[c], acc[r][c]);   \
            }                                                                                           \
        }                                                                                               \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++)                           \
            y[(size_t)c * ldy + (size_t)r] = _mm512_reduce_add_ps(acc[r][c]);                           \
    }
#define FLOAT_R6 6 /* 6 x 4 tiles first: 24 accumulators, fewer bytes loaded per FMA */
#else
#define FLOAT_C 2
#define FLOAT_R6 1 /* no 6-row tiles (the tile of that name is unused) */
#endif
#define FLOAT_GEMM(T, ET, LOAD, SCALAR)                                                                 \
    FLOAT_TILE(T, ET, LOAD, SCALAR, FLOAT_R6, FLOAT_C)                                                  \
    FLOAT_TILE(T, ET, LOAD, SCALAR, 4, FLOAT_C)                                                         \
    FLOAT_TILE(T, ET, LOAD, SCALAR, 1, FLOAT_C)                                                         \
    FLOAT_TILE(T, ET, LOAD, SCALAR, 4, 1)                                                               \
    FLOAT_TILE(T, ET, LOAD, SCALAR, 1, 1)                                                               \
    static void gemm_##T(int64_t n, const void *vw, size_t ldw, int nr, const void *va, size_t lda, int nc, \
                         float *y, size_t ldy) {                                                        \
        const char *w = vw, *a = va;                                                                    \
        int c = 0;                                                                                      \
        for (; c + FLOAT_C <= nc; c += FLOAT_C) {                                                       \
            int r = 0;                                                                                  \
            if (FLOAT_R6 > 4)                                                                           \
                for (; r + FLOAT_R6 <= nr; r += FLOAT_R6)                                               \
                    tile_##T##_FLOAT_R6xFLOAT_C(n, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy); \
            for (; r + 4 <= nr; r += 4)                                                                 \
                tile_##T##_4xFLOAT_C(n, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy); \
            for (; r < nr; r++)                                                                         \
                tile_##T##_1xFLOAT_C(n, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy); \
        }                                                                                               \
        for (; c < nc; c++) {                                                                           \
            int r = 0;                                                                                  \
            for (; r + 4 <= nr; r += 4)                                                                 \
                tile_##T##_4x1(n, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy); \
            for (; r < nr; r++)                                                                         \
                tile_##T##_1x1(n, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy); \
        }                                                                                               \
    }                                                                                                   \
    static float dot_##T##_w(int64_t n, const void *w, const void *a) {                                 \
        float y;                                                                                        \
        tile_##T##_1x1(n, w, 0, a, 0, &y, 1);                                                           \
        return y;                                                                                       \
    }

#define GEMM_VIA_DOT(name, dot)                                                                  \
    static void name(int64_t n, const void *w, size_t ldw, int nr, const void *a, size_t lda,     \
                     int nc, float *y, size_t ldy) {                                              \
        for (int c = 0; c < nc; c++)                                                              \
            for (int r = 0; r < nr; r++)                                                          \
                y[(size_t)c * ldy + (size_t)r] =                                                  \
                    dot(n, (const char *)w + (size_t)r * ldw, (const char *)a + (size_t)c * lda); \
    }

FLOAT_GEMM(f32, float, load_f32w, scalar_f32w)
FLOAT_GEMM(f16, sov_half, load_f16w, scalar_f16w)
FLOAT_GEMM(bf16, sov_bf16, load_bf16, sov_bf16_to_f32)
GEMM_VIA_DOT(gemm_q4_1, dot_q4_1)
GEMM_VIA_DOT(gemm_q5_0, dot_q5_0)
GEMM_VIA_DOT(gemm_q5_1, dot_q5_1)

/* ---- activation quantizers (bit-identical with the scalar ones) ---- */

static inline __m256 abs_ps(__m256 x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }

static inline float hmax_ps(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

#define ROUND_NEAREST (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

/* 32 floats times id, rounded half to even, as 32 int8 (values fit: |x * id| <= 127). */
static inline __m256i round_pack32(const float *x, __m256 id) {
    __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x), id), ROUND_NEAREST));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id), ROUND_NEAREST));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 16), id), ROUND_NEAREST));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 24), id), ROUND_NEAREST));
    /* packs interleave 128-bit lanes; the permute restores the order */
    const __m256i p01 = _mm256_packs_epi32(i0, i1), p23 = _mm256_packs_epi32(i2, i3);
    const __m256i b = _mm256_packs_epi16(p01, p23);
    return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static inline float block_amax(const float *x, int n) {
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(x + j)));
    return hmax_ps(m);
}

static void quantize_q8a(const float *x, void *vy, int64_t n) {
    block_q8a *y = vy;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        const float d = block_amax(x, QK) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const __m256i q = round_pack32(x, _mm256_set1_ps(id));
        _mm256_storeu_si256((__m256i *)y[i].qs, q);
        /* sum of the 32 int8 */
        const __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q);
        y[i].d = d;
        y[i].s = d * (float)hsum_epi32(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
    }
}

static void quantize_q8k(const float *x, void *vy, int64_t n) {
    block_q8k *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const float d = block_amax(x, QK_K) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        for (int j = 0; j < QK_K; j += 32) {
            const __m256i q = round_pack32(x + j, vid);
            _mm256_storeu_si256((__m256i *)(y[i].qs + j), q);
            /* two sums of 16: maddubs pairs, madd quads, then add within each 128-bit half */
            __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
            s = _mm256_hadd_epi32(s, s);
            s = _mm256_hadd_epi32(s, s);
            y[i].bsums[j / 16] = (int16_t)_mm256_extract_epi32(s, 0);
            y[i].bsums[j / 16 + 1] = (int16_t)_mm256_extract_epi32(s, 4);
        }
        y[i].d = d;
    }
}

static void quantize_q8p(const float *x, void *vy, int64_t n) {
    const int64_t nb = n / QK;
    uint8_t *p = vy;
    float *d = (float *)p, *sums = (float *)(p + 4 * nb);
    int8_t *qs = (int8_t *)(p + 8 * nb);
    for (int64_t i = 0; i < nb; i += 2, x += 2 * QK) {
        const int nblk = i + 1 < nb ? 2 : 1;
        __m256i q[2];
        for (int b = 0; b < nblk; b++) {
            const float dd = block_amax(x + QK * b, QK) / 127.0f;
            const float id = dd != 0.0f ? 1.0f / dd : 0.0f;
            q[b] = round_pack32(x + QK * b, _mm256_set1_ps(id));
            const __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q[b]);
            d[i + b] = dd;
            sums[i + b] = (float)hsum_epi32(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
        }
        if (nblk == 2) { /* [2k: 0-15][2k+1: 0-15][2k: 16-31][2k+1: 16-31] */
            _mm256_storeu_si256((__m256i *)(qs + 32 * i), _mm256_permute2x128_si256(q[0], q[1], 0x20));
            _mm256_storeu_si256((__m256i *)(qs + 32 * i + 32), _mm256_permute2x128_si256(q[0], q[1], 0x31));
        } else {
            _mm256_storeu_si256((__m256i *)(qs + 32 * i), q[0]);
        }
    }
}

/* ---- float ops ---- */

/* e^x for 8 floats: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-6 polynomial, 2^n through
 * the exponent bits. Relative error ~2 ulp; x < -87.3 gives 0, x > 88.7 gives +inf. */
static inline __m256 exp_ps(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.7f), lo = _mm256_set1_ps(-87.3f);
    const __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ), under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    const __m256 nf = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(0.693145752f), x);
    r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(1.42860677e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* 2^n: n in [-126, 128]; split so that each factor is a normal float */
    const __m256i n = _mm256_cvtps_epi32(nf);
    const __m256i n1 = _mm256_srai_epi32(n, 1), n2 = _mm256_sub_epi32(n, n1);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    __m256 res = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    res = _mm256_blendv_ps(res, _mm256_set1_ps(INFINITY), over);
    return _mm256_andnot_ps(under, res);
}

static void rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        acc = _mm256_fmadd_ps(v, v, acc);
    }
    double ss = hsum_ps(acc);
    for (; i < n; i++) ss += (double)x[i] * x[i];
    const float inv = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    const __m256 vi = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vi), _mm256_loadu_ps(w + i)));
    for (; i < n; i++) y[i] = x[i] * inv * w[i];
}

static void silu_mul(float *y, const float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = exp_ps(_mm256_xor_ps(g, neg));
        const __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) y[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static void layernorm(float *y, const float *x, const float *w, const float *b, int64_t n, float eps) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + i));
    double sum = hsum_ps(acc);
    for (; i < n; i++) sum += x[i];
    const float mean = (float)(sum / (double)n);
    const __m256 vm = _mm256_set1_ps(mean);
    acc = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
        acc = _mm256_fmadd_ps(d, d, acc);
    }
    double ss = hsum_ps(acc);
    for (; i < n; i++) ss += (double)(x[i] - mean) * (x[i] - mean);
    const float inv = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    const __m256 vi = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vi);
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(d, _mm256_loadu_ps(w + i), _mm256_loadu_ps(b + i)));
    }
    for (; i < n; i++) y[i] = (x[i] - mean) * inv * w[i] + b[i];
}

/* GELU with erf by Abramowitz & Stegun 7.1.26 (|error of erf| < 1.5e-7):
 *   erf(z) = 1 - (a1 t + a2 t^2 + a3 t^3 + a4 t^4 + a5 t^5) e^(-z^2), t = 1 / (1 + p z), z >= 0 */
static void gelu_erf(float *y, const float *x, int64_t n) {
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    const __m256 r2 = _mm256_set1_ps((float)M_SQRT1_2), p = _mm256_set1_ps(0.3275911f);
    const __m256 a1 = _mm256_set1_ps(0.254829592f), a2 = _mm256_set1_ps(-0.284496736f);
    const __m256 a3 = _mm256_set1_ps(1.421413741f), a4 = _mm256_set1_ps(-1.453152027f);
    const __m256 a5 = _mm256_set1_ps(1.061405429f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 zs = _mm256_mul_ps(v, r2);
        const __m256 z = _mm256_andnot_ps(sign, zs);
        const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(p, z, one));
        __m256 poly = _mm256_fmadd_ps(a5, t, a4);
        poly = _mm256_fmadd_ps(poly, t, a3);
        poly = _mm256_fmadd_ps(poly, t, a2);
        poly = _mm256_fmadd_ps(poly, t, a1);
        poly = _mm256_mul_ps(poly, t);
        const __m256 e = exp_ps(_mm256_xor_ps(_mm256_mul_ps(z, z), sign));
        const __m256 erf_abs = _mm256_fnmadd_ps(poly, e, one);
        const __m256 erf = _mm256_or_ps(erf_abs, _mm256_and_ps(zs, sign)); /* odd function */
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, erf)));
    }
    for (; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

static void gelu_mul(float *y, const float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), m2c = _mm256_set1_ps(-2.0f * 0.7978845608f);
    const __m256 k = _mm256_set1_ps(0.044715f);
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        /* -2z = -2 sqrt(2/pi) (g + 0.044715 g^3) */
        const __m256 g3 = _mm256_mul_ps(_mm256_mul_ps(g, g), g);
        const __m256 e = exp_ps(_mm256_mul_ps(m2c, _mm256_fmadd_ps(k, g3, g)));
        const __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) {
        const float g = gate[i], z = 0.7978845608f * (g + 0.044715f * g * g * g);
        y[i] = g / (1.0f + expf(-2.0f * z)) * up[i];
    }
}

static void add(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] += x[i];
}

static void scale(float *y, float a, int64_t n) {
    int64_t i = 0;
    const __m256 va = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), va));
    for (; i < n; i++) y[i] *= a;
}

static void axpy_f32(float *y, float a, const float *x, int64_t n) {
    int64_t i = 0;
    const __m256 va = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static void axpy_f16(float *y, float a, const sov_half *x, int64_t n) {
    int64_t i = 0;
    const __m256 va = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))),
                                                _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * h2f(x[i]);
}

static void f32_to_f16(sov_half *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = sov_f32_to_half(x[i]);
}

static void softmax(float *x, int64_t n) {
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
    float max = hmax_ps(vm);
    for (; i < n; i++) max = x[i] > max ? x[i] : max;
    const __m256 vmax = _mm256_set1_ps(max);
    __m256 vs = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
        _mm256_storeu_ps(x + i, e);
        vs = _mm256_add_ps(vs, e);
    }
    double sum = hsum_ps(vs);
    for (; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    scale(x, (float)(1.0 / sum), n);
}

/* ---- online softmax step and quantized KV rows (kv_quant_impl.h) ---- */

/* A block a later call reads (kernels.h: ahead), one cache line at a time between the
 * fmas: a burst of a tile's prefetches stalls on the core's fill buffers, and the compute
 * waits with it (TinyLlama-shaped f16 cache, one KV head of 262,144 positions, one thread:
 * 28.2-30.0 -> 22.2-23.1 ns per position, spread rather than in a burst a tile ahead) */
static inline void prefetch_line(const void *p) { _mm_prefetch((const char *)p, _MM_HINT_T0); }

/* A kernel's share of the block ahead (n rows of d values of elt bytes, or for the
 * transposed keys d rows of n positions): the strip at value (position) i0 of the first
 * row tile takes the block's bytes from i0 / d of the way on, as many as it reads (n rows
 * x its w values), row j of the strip the share's j-th w values' bytes (PREFETCH_ROW).
 * Strip after strip the whole block goes in address order, the order the hardware's
 * streamer follows (a strip's own bytes of each row would fetch every other line: slower). */
static inline const void *ahead_share(const void *ahead, int n, size_t elt, int i0) {
    return ahead ? (const char *)ahead + (size_t)i0 * (size_t)n * elt : NULL;
}
/* row j's part of a share, bpr bytes a row (a constant in each kernel): its lines, or
 * under 64 bytes a row the line starting at it */
#define PREFETCH_ROW(A, j, bpr)                                                                          \
    do {                                                                                                 \
        const char *a_ = (const char *)(A) + (size_t)(j) * (bpr);                                        \
        if ((bpr) >= 64) UNROLL for (int c_ = 0; c_ < (bpr); c_ += 64) prefetch_line(a_ + c_);           \
        else if ((j) * (bpr) % 64 == 0) prefetch_line(a_);                                               \
    } while (0)

#ifdef __AVX512F__
/* exp_ps on 16 lanes (the same steps, so the same values lane for lane) */
static inline __m512 exp16_ps(__m512 x) {
    const __m512 hi = _mm512_set1_ps(88.7f), lo = _mm512_set1_ps(-87.3f);
    const __mmask16 over = _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ), under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    const __m512 nf = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(0.693145752f), x);
    r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(1.42860677e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    /* p 2^n in one step (vscalefps): exact where the result is normal, rounded once where
     * it is subnormal, as exp_ps's two exact-then-rounded products are */
    __m512 res = _mm512_scalef_ps(p, nf);
    res = _mm512_mask_blend_ps(over, res, _mm512_set1_ps(INFINITY));
    return _mm512_maskz_mov_ps((__mmask16)~under, res);
}

/* 16 lanes at a time, the last step masked (its other lanes neither read nor written) */
static float exp_sum(float *x, int64_t n, float max) {
    const __m512 vmax = _mm512_set1_ps(max);
    __m512 vs = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 e = exp16_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vmax));
        _mm512_mask_storeu_ps(x + i, m, e);
        vs = _mm512_add_ps(vs, _mm512_maskz_mov_ps(m, e));
    }
    return _mm512_reduce_add_ps(vs);
}

static float max_f32(const float *x, int64_t n) {
    __m512 vm = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        vm = _mm512_max_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, x + i), vm); /* NaN: vm kept */
    }
    return _mm512_reduce_max_ps(vm);
}
#else
static float max_f32(const float *x, int64_t n) {
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(_mm256_loadu_ps(x + i), vm); /* NaN: vm kept */
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(vm), _mm256_extractf128_ps(vm, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    float m = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

static float exp_sum(float *x, int64_t n, float max) {
    const __m256 vmax = _mm256_set1_ps(max);
    __m256 vs = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
        _mm256_storeu_ps(x + i, e);
        vs = _mm256_add_ps(vs, e);
    }
    float sum = hsum_ps(vs);
    for (; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    return sum;
}
#endif

#ifdef __AVX512F__
/* Keys of up to 16 positions transposed (ld 16, groups of 32): one gather fetches the same
 * 4 bytes of each of the 16 rows, so a vector holds 16 positions of 4 (q8_0) or 8 (q4_0)
 * values; the scale of each row's group comes by a gather too. Rows past n are masked off
 * (never read) and give zeros. The same single product s x code as the reference. */
static inline __m512i kv_rows16(size_t rb) {
    return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                              _mm512_set1_epi32((int)rb));
}
static inline __m512 kv_scales16(const uint8_t *p, __m512i idx, __mmask16 live) {
    const __m512i w = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, p, 1);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(w)); /* the low half of each: the f16 scale */
}
static void kv_dequant_t_q8_0(const void *x, size_t rb, int n, float *y, int ld, int d, int g) {
    if (g != 32 || ld != 16 || n > 16 || rb > (1u << 26)) {
        kvq_dequant_t_q8_0_ref(x, rb, n, y, ld, d, g);
        return;
    }
    const __mmask16 live = (__mmask16)((1u << n) - 1);
    const __m512i idx = kv_rows16(rb);
    for (int b = 0; b < d; b += 32) {
        const uint8_t *p = (const uint8_t *)x + (size_t)(b / 32) * 34;
        const __m512 s = kv_scales16(p, idx, live);
        for (int m = 0; m < 32; m += 4) {
            const __m512i w = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, p + 2 + m, 1);
            UNROLL for (int k = 0; k < 4; k++) {
                const __m512i v = _mm512_srai_epi32(_mm512_slli_epi32(w, 24 - 8 * k), 24);
                _mm512_storeu_ps(y + (size_t)(b + m + k) * 16, _mm512_maskz_mul_ps(live, s, _mm512_cvtepi32_ps(v)));
            }
        }
    }
}
static void kv_dequant_t_q4_0(const void *x, size_t rb, int n, float *y, int ld, int d, int g) {
    if (g != 32 || ld != 16 || n > 16 || rb > (1u << 26)) {
        kvq_dequant_t_q4_0_ref(x, rb, n, y, ld, d, g);
        return;
    }
    const __mmask16 live = (__mmask16)((1u << n) - 1);
    const __m512i idx = kv_rows16(rb), m4 = _mm512_set1_epi32(15), eight = _mm512_set1_epi32(8);
    for (int b = 0; b < d; b += 32) {
        const uint8_t *p = (const uint8_t *)x + (size_t)(b / 32) * 18;
        const __m512 s = kv_scales16(p, idx, live);
        for (int m = 0; m < 16; m += 4) {
            const __m512i w = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, p + 2 + m, 1);
            UNROLL for (int k = 0; k < 4; k++) {
                const __m512i lo = _mm512_sub_epi32(_mm512_and_si512(_mm512_srli_epi32(w, 8 * k), m4), eight);
                const __m512i hi = _mm512_sub_epi32(_mm512_and_si512(_mm512_srli_epi32(w, 8 * k + 4), m4), eight);
                _mm512_storeu_ps(y + (size_t)(b + m + k) * 16, _mm512_maskz_mul_ps(live, s, _mm512_cvtepi32_ps(lo)));
                _mm512_storeu_ps(y + (size_t)(b + m + k + 16) * 16, _mm512_maskz_mul_ps(live, s, _mm512_cvtepi32_ps(hi)));
            }
        }
    }
}
/* Values of Q8_0 / Q4_0 rows (kernels.h attn_values_q8_0 / _q4_0), groups of 32: each
 * group's 32 codes widened and multiplied by its scale in registers, s x code as
 * kv_dequant_* computes it, then the fmas of attn_values_f32's 8 x 2 tile, so the sums are
 * bit for bit the dequantize-then-f32 path's without writing the rows to memory and
 * reading them back. NH heads x the group's 32 values: one chain per (head, value) over
 * the positions in order, as every values kernel has. */
static inline void kvq_group16x2(bool q4, const uint8_t *p, __m512 *v0, __m512 *v1) {
    const __m512 s = _mm512_set1_ps(h2f((uint16_t)(p[0] | p[1] << 8)));
    __m128i lo, hi;
    if (q4) {
        const __m128i raw = _mm_loadu_si128((const __m128i *)(p + 2)), m4 = _mm_set1_epi8(15);
        lo = _mm_sub_epi8(_mm_and_si128(raw, m4), _mm_set1_epi8(8));
        hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_set1_epi8(8));
    } else {
        lo = _mm_loadu_si128((const __m128i *)(p + 2));
        hi = _mm_loadu_si128((const __m128i *)(p + 18));
    }
    *v0 = _mm512_mul_ps(s, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo)));
    *v1 = _mm512_mul_ps(s, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi)));
}
#define KVQ_VALUES_TILE(NH)                                                                              \
    static inline void kvq_va_##NH(bool q4, float *out, const float *p, size_t ldp, const uint8_t *V, size_t rb, \
                                   int n, int d, int b, const uint8_t *A) {                              \
        __m512 acc[NH][2];                                                                               \
        UNROLL for (int h = 0; h < NH; h++) UNROLL for (int c = 0; c < 2; c++)                           \
            acc[h][c] = _mm512_loadu_ps(out + (size_t)h * d + b + 16 * c);                               \
        const size_t go = (size_t)(b / 32) * (q4 ? 18 : 34);                                            \
        for (int j = 0; j < n; j++) {                                                                    \
            __m512 v0, v1;                                                                               \
            kvq_group16x2(q4, V + (size_t)j * rb + go, &v0, &v1);                                        \
            if (A) prefetch_line(A + (size_t)j * (q4 ? 18 : 34)); /* row j's part of the share */      \
            UNROLL for (int h = 0; h < NH; h++) {                                                        \
                const __m512 pv = _mm512_set1_ps(p[(size_t)h * ldp + j]);                                \
                acc[h][0] = _mm512_fmadd_ps(pv, v0, acc[h][0]);                                          \
                acc[h][1] = _mm512_fmadd_ps(pv, v1, acc[h][1]);                                          \
            }                                                                                            \
        }                                                                                                \
        UNROLL for (int h = 0; h < NH; h++) UNROLL for (int c = 0; c < 2; c++)                           \
            _mm512_storeu_ps(out + (size_t)h * d + b + 16 * c, acc[h][c]);                               \
    }
KVQ_VALUES_TILE(8)
KVQ_VALUES_TILE(4)
KVQ_VALUES_TILE(2)
KVQ_VALUES_TILE(1)
/* the block ahead (n rows of rb bytes) prefetched as the f16 values kernels do (ahead_share):
 * the group at value b of the first row tile takes the bytes from b / d of the way on, a
 * group's bytes (rb x 32 / d) a row */
static inline void kvq_values(bool q4, float *out, const float *p, size_t ldp, int nq, const void *V, size_t rb,
                              int n, int d, const void *ahead) {
    for (int b = 0; b < d; b += 32) {
        const uint8_t *A = ahead ? (const uint8_t *)ahead + (size_t)b * (size_t)n * rb / (size_t)d : NULL;
        int h = 0;
        for (; h + 8 <= nq; h += 8, A = NULL) kvq_va_8(q4, out + (size_t)h * d, p + (size_t)h * ldp, ldp, V, rb, n, d, b, A);
        for (; h + 4 <= nq; h += 4, A = NULL) kvq_va_4(q4, out + (size_t)h * d, p + (size_t)h * ldp, ldp, V, rb, n, d, b, A);
        for (; h + 2 <= nq; h += 2, A = NULL) kvq_va_2(q4, out + (size_t)h * d, p + (size_t)h * ldp, ldp, V, rb, n, d, b, A);
        for (; h < nq; h++, A = NULL) kvq_va_1(q4, out + (size_t)h * d, p + (size_t)h * ldp, ldp, V, rb, n, d, b, A);
    }
}
static void attn_values_q8_0(float *out, const float *p, size_t ldp, int nq, const void *V, size_t rb, int n,
                             int d, const void *ahead) {
    kvq_values(false, out, p, ldp, nq, V, rb, n, d, ahead);
}
static void attn_values_q4_0(float *out, const float *p, size_t ldp, int nq, const void *V, size_t rb, int n,
                             int d, const void *ahead) {
    kvq_values(true, out, p, ldp, nq, V, rb, n, d, ahead);
}
#define KV_VALUES_Q8_0 attn_values_q8_0
#define KV_VALUES_Q4_0 attn_values_q4_0
#ifdef __AVX512VNNI__
/* Scores against quantized keys in integers (kernels.h attn_scores_q8_0 / _q4_0). The
 * gathers above give, for 4 bytes of a group, 16 positions x 4 codes: the dword lanes that
 * vpdpbusd takes. The keys are its unsigned side (Q8_0 codes + 128 by flipping the sign
 * bit; Q4_0's nibbles as stored, u = k + 8), the query's 4 codes broadcast the signed side,
 * and 128 (8) x the query group's code sum comes off once per group: one vpdpbusd per 64
 * products where the float path widened every key and took 4 fmas, shared by the rep
 * heads. Per group the float steps are the reference's (a multiply, then an add: bit for
 * bit kvq_scores_ref). Masked-off positions gather zeros, whose scale is 0. */
enum { KVI_MAXD = 256 };
static inline void kv_scores_int(bool q4, float *sc, size_t ldsc, const int8_t *qq, const float *qd,
                                 const int32_t *qs, int nq, const void *K, size_t rb, int n, int d,
                                 float scale, const void *ahead) {
    /* the block ahead's lines (kernels.h ahead): one per 64 products of the first row tile,
     * in address order, the rest after the block */
    const char *pa = ahead;
    const size_t ab = ahead ? (size_t)n * rb : 0;
    int pl = 0;
#define KVI_AHEAD()                                                                                      \
    do {                                                                                                 \
        if (pa && (size_t)pl * 64 < ab) prefetch_line(pa + (size_t)64 * pl++);                          \
    } while (0)
    if (d % 32 != 0 || d > KVI_MAXD || rb > (1u << 26)) {
        kvq_scores_ref(q4, sc, ldsc, qq, qd, nq, K, rb, n, d, scale);
        return;
    }
    const int nb = d / 32;
    const size_t gb = q4 ? 18 : 34;
    const int32_t off = q4 ? 8 : 128;
    const __m512i idx = kv_rows16(rb), m4 = _mm512_set1_epi8(15), sign = _mm512_set1_epi8((char)0x80);
    __m512i w[KVI_MAXD / 4];
    __m512 ks[KVI_MAXD / 32];
    for (int j0 = 0; j0 < n; j0 += 16) {
        const int m = n - j0;
        const __mmask16 live = (__mmask16)(m >= 16 ? 0xFFFFu : (1u << m) - 1);
        const uint8_t *base = (const uint8_t *)K + (size_t)j0 * rb;
        for (int b = 0; b < nb; b++) {
            const uint8_t *p = base + (size_t)b * gb;
            ks[b] = kv_scales16(p, idx, live);
            if (q4) {
                UNROLL for (int t = 0; t < 4; t++) { /* bytes 4t.. hold codes 4t.. and 16 + 4t.. */
                    const __m512i v =
                        _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, p + 2 + 4 * t, 1);
                    w[b * 8 + t] = _mm512_and_si512(v, m4);
                    w[b * 8 + 4 + t] = _mm512_and_si512(_mm512_srli_epi32(v, 4), m4);
                }
            } else {
                UNROLL for (int t = 0; t < 8; t++) w[b * 8 + t] = _mm512_xor_si512(
                    _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, p + 2 + 4 * t, 1), sign);
            }
        }
        int h = 0;
        for (; h + 4 <= nq; h += 4) { /* 4 rows side by side: 4 independent chains */
            __m512 s[4];
            UNROLL for (int r = 0; r < 4; r++) s[r] = _mm512_setzero_ps();
            for (int b = 0; b < nb; b++) {
                __m512i acc[4];
                UNROLL for (int r = 0; r < 4; r++) acc[r] =
                    _mm512_set1_epi32(-off * qs[(size_t)(h + r) * nb + b]);
                UNROLL for (int t = 0; t < 8; t++) UNROLL for (int r = 0; r < 4; r++) {
                    if (r == 0 && h == 0) KVI_AHEAD();
                    int32_t x;
                    memcpy(&x, qq + (size_t)(h + r) * d + (size_t)b * 32 + 4 * t, 4);
                    acc[r] = _mm512_dpbusd_epi32(acc[r], w[b * 8 + t], _mm512_set1_epi32(x));
                }
                UNROLL for (int r = 0; r < 4; r++) s[r] = _mm512_add_ps(
                    s[r], _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r]),
                                        _mm512_mul_ps(ks[b], _mm512_set1_ps(qd[(size_t)(h + r) * nb + b]))));
            }
            UNROLL for (int r = 0; r < 4; r++) _mm512_mask_storeu_ps(
                sc + (size_t)(h + r) * ldsc + j0, live, _mm512_mul_ps(_mm512_set1_ps(scale), s[r]));
        }
        for (; h < nq; h++) {
            __m512 s = _mm512_setzero_ps();
            for (int b = 0; b < nb; b++) {
                __m512i acc = _mm512_set1_epi32(-off * qs[(size_t)h * nb + b]);
                UNROLL for (int t = 0; t < 8; t++) {
                    if (h == 0) KVI_AHEAD();
                    int32_t x;
                    memcpy(&x, qq + (size_t)h * d + (size_t)b * 32 + 4 * t, 4);
                    acc = _mm512_dpbusd_epi32(acc, w[b * 8 + t], _mm512_set1_epi32(x));
                }
                s = _mm512_add_ps(
                    s, _mm512_mul_ps(_mm512_cvtepi32_ps(acc),
                                     _mm512_mul_ps(ks[b], _mm512_set1_ps(qd[(size_t)h * nb + b]))));
            }
            _mm512_mask_storeu_ps(sc + (size_t)h * ldsc + j0, live, _mm512_mul_ps(_mm512_set1_ps(scale), s));
        }
    }
    while (pa && (size_t)pl * 64 < ab) KVI_AHEAD();
#undef KVI_AHEAD
}
static void attn_scores_q8_0(float *sc, size_t ldsc, const int8_t *qq, const float *qd, const int32_t *qs,
                             int nq, const void *K, size_t rb, int n, int d, float scale, const void *ahead) {
    kv_scores_int(false, sc, ldsc, qq, qd, qs, nq, K, rb, n, d, scale, ahead);
}
static void attn_scores_q4_0(float *sc, size_t ldsc, const int8_t *qq, const float *qd, const int32_t *qs,
                             int nq, const void *K, size_t rb, int n, int d, float scale, const void *ahead) {
    kv_scores_int(true, sc, ldsc, qq, qd, qs, nq, K, rb, n, d, scale, ahead);
}
#define KV_SCORES_Q8_0 attn_scores_q8_0
#define KV_SCORES_Q4_0 attn_scores_q4_0
#endif
#else
static void kv_dequant_t_q8_0(const void *x, size_t rb, int n, float *y, int ld, int d, int g) {
    kvq_dequant_t_q8_0_ref(x, rb, n, y, ld, d, g);
}
static void kv_dequant_t_q4_0(const void *x, size_t rb, int n, float *y, int ld, int d, int g) {
    kvq_dequant_t_q4_0_ref(x, rb, n, y, ld, d, g);
}
#endif

/* groups of a multiple of 16 values: 16 codes widened at a time; smaller groups by the
 * reference */
static void kv_dequant_q8_0(const void *x, float *y, int d, int g) {
    if (g % 16 != 0) {
        kvq_dequant_q8_0_ref(x, y, d, g);
        return;
    }
    const uint8_t *p = x;
    for (int b = 0; b < d; b += g, p += 2 + g) {
        sov_half hs;
        memcpy(&hs, p, 2);
        const __m256 s = _mm256_set1_ps(h2f(hs));
        for (int i = 0; i < g; i += 16) {
            const __m128i q = _mm_loadu_si128((const __m128i *)(p + 2 + i));
            const __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
            const __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
            _mm256_storeu_ps(y + b + i, _mm256_mul_ps(s, lo));
            _mm256_storeu_ps(y + b + i + 8, _mm256_mul_ps(s, hi));
        }
    }
}

static void kv_dequant_q4_0(const void *x, float *y, int d, int g) {
    if (g % 32 != 0) {
        kvq_dequant_q4_0_ref(x, y, d, g);
        return;
    }
    const uint8_t *p = x;
    const __m128i m4 = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
    for (int b = 0; b < d; b += g, p += 2 + g / 2) {
        sov_half hs;
        memcpy(&hs, p, 2);
        const __m256 s = _mm256_set1_ps(h2f(hs));
        for (int i = 0; i < g / 2; i += 16) {
            const __m128i raw = _mm_loadu_si128((const __m128i *)(p + 2 + i));
            const __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, m4), eight);
            const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), eight);
            float *yl = y + b + i, *yh = y + b + i + g / 2;
            _mm256_storeu_ps(yl, _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
            _mm256_storeu_ps(yl + 8, _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
            _mm256_storeu_ps(yh, _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
            _mm256_storeu_ps(yh + 8, _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
        }
    }
}

/* ---- attention over a block of cached positions ----
 *
 * K is stored transposed in each block (K[i * bs + j]: dimension i of position j), so a
 * vector holds one dimension of 8 (16 with AVX-512) consecutive positions: the scores of
 * NH query heads for those positions are NH accumulators, each the sum over i of
 * q_h[i] x K[i][j..], with each K vector widened once for all NH heads and no horizontal
 * sums. Values: NH heads x one strip of 8 (16) output dimensions, each V vector widened
 * once for all NH heads. NH = 8, 4, 2, 1 as the group's head count decomposes. */

static inline __m256 ld8_f16(const sov_half *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline __m256 ld8_f32(const float *p) { return _mm256_loadu_ps(p); }
#ifdef __AVX512F__
static inline __m512 ld16_f16(const sov_half *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static inline __m512 ld16_f32(const float *p) { return _mm512_loadu_ps(p); }
#endif

/* the first m (<= 8) lanes of v to y */
static inline void store_first8(float *y, __m256 v, int m) {
    if (m >= 8) {
        _mm256_storeu_ps(y, v);
        return;
    }
    float t[8];
    _mm256_storeu_ps(t, v);
    memcpy(y, t, (size_t)m * sizeof(float));
}

#define ATTN_SCORES_TILE8(T, ET, NH)                                                                     \
    static inline void attn_sc8_##T##_##NH(float *sc, size_t ldsc, const float *q, const ET *K, int j, int m,   \
                                           int bs, int d, float scale, const void *A) {                  \
        __m256 acc[NH];                                                                                  \
        UNROLL for (int h = 0; h < NH; h++) acc[h] = _mm256_setzero_ps();                                \
        for (int i = 0; i < d; i++) {                                                                    \
            const __m256 kv = ld8_##T(K + (size_t)i * bs + j);                                           \
            if (A) PREFETCH_ROW(A, i, 8 * (int)sizeof(ET));                                              \
            UNROLL for (int h = 0; h < NH; h++)                                                          \
                acc[h] = _mm256_fmadd_ps(_mm256_broadcast_ss(q + (size_t)h * d + i), kv, acc[h]);        \
        }                                                                                                \
        UNROLL for (int h = 0; h < NH; h++)                                                              \
            store_first8(sc + (size_t)h * ldsc + j, _mm256_mul_ps(acc[h], _mm256_set1_ps(scale)), m);     \
    }

#ifdef __AVX512F__
#define ATTN_SCORES_TILE16(T, ET, NH)                                                                    \
    static inline void attn_sc16_##T##_##NH(float *sc, size_t ldsc, const float *q, const ET *K, int j, int m,  \
                                            int bs, int d, float scale, const void *A) {                 \
        __m512 acc[NH];                                                                                  \
        UNROLL for (int h = 0; h < NH; h++) acc[h] = _mm512_setzero_ps();                                \
        for (int i = 0; i < d; i++) {                                                                    \
            const __m512 kv = ld16_##T(K + (size_t)i * bs + j);                                          \
            if (A) PREFETCH_ROW(A, i, 16 * (int)sizeof(ET));                                             \
            UNROLL for (int h = 0; h < NH; h++)                                                          \
                acc[h] = _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)h * d + i]), kv, acc[h]);              \
        }                                                                                                \
        const __mmask16 mk = (__mmask16)(m >= 16 ? 0xFFFFu : (1u << m) - 1);                             \
        UNROLL for (int h = 0; h < NH; h++)                                                              \
            _mm512_mask_storeu_ps(sc + (size_t)h * ldsc + j, mk, _mm512_mul_ps(acc[h], _mm512_set1_ps(scale))); \
    }
/* rows by 8, 4, then 3 or 2 together: each row is one chain of fmas over the head's d
 * values (the same order in every tile shape), so a lone row waits on its own latency;
 * 3 rows (3 query heads per KV head) in one tile run 3 chains side by side */
#define ATTN_SCORES_WIDE(T)                                                                              \
    if (bs % 16 == 0) {                                                                                  \
        for (int j = 0; j < n; j += 16) {                                                                \
            const void *A = ahead_share(ahead, d, sizeof *K, j); /* the first row tile's */              \
            int h = 0;                                                                                   \
            for (; h + 8 <= nq; h += 8, A = NULL) attn_sc16_##T##_8(sc + (size_t)h * ldsc, ldsc, q + (size_t)h * d, K, j, n - j, bs, d, scale, A); \
            for (; h + 4 <= nq; h += 4, A = NULL) attn_sc16_##T##_4(sc + (size_t)h * ldsc, ldsc, q + (size_t)h * d, K, j, n - j, bs, d, scale, A); \
            if (nq - h == 3) attn_sc16_##T##_3(sc + (size_t)h * ldsc, ldsc, q + (size_t)h * d, K, j, n - j, bs, d, scale, A); \
            else if (nq - h == 2) attn_sc16_##T##_2(sc + (size_t)h * ldsc, ldsc, q + (size_t)h * d, K, j, n - j, bs, d, scale, A); \
            else if (nq - h == 1) attn_sc16_##T##_1(sc + (size_t)h * ldsc, ldsc, q + (size_t)h * d, K, j, n - j, bs, d, scale, A); \
        }                                                                                                \
        return;                                                                                          \
    }
#else
#define ATTN_SCORES_TILE16(T, ET, NH)
#define ATTN_SCORES_WIDE(T)
#endif

#define ATTN_SCORES(T, ET)                                                                               \
    ATTN_SCORES_TILE8(T, ET, 8)                                                                          \
    ATTN_SCORES_TILE8(T, ET, 4)                                                                          \
    ATTN_SCORES_TILE8(T, ET, 1)                                                                          \
    ATTN_SCORES_TILE16(T, ET, 8)                                                                         \
    ATTN_SCORES_TILE16(T, ET, 4)                                                                         \
    ATTN_SCORES_TILE16(T, ET, 3)                                                                         \
    ATTN_SCORES_TILE16(T, ET, 2)                                                                         \
    ATTN_SCORES_TILE16(T, ET, 1)                                                                         \
    static void attn_scores_##T##_ahead(float *sc, size_t ldsc, const float *q, int nq, const ET *K, int n, int bs, \
                                        int d, float scale, const ET *ahead) {                           \
        ATTN_SCORES_WIDE(T)                                                                              \
        if (bs % 8 == 0) {                                                                               \
            for (int j = 0; j < n; j += 8) {                                                             \
                const void *A = ahead_share(ahead, d, sizeof(ET), j); /* the first row tile's */         \
                int h = 0;                                                                               \
                for (; h + 8 <= nq; h += 8, A = NULL) attn_sc8_##T##_8(sc + (size_t)h * ldsc, ldsc, q + (size_t)h * d, K, j, n - j, bs, d, scale, A); \
                for (; h + 4 <= nq; h += 4, A = NULL) attn_sc8_##T##_4(sc + (size_t)h * ldsc, ldsc, q + (size_t)h * d, K, j, n - j, bs, d, scale, A); \
                for (; h < nq; h++, A = NULL) attn_sc8_##T##_1(sc + (size_t)h * ldsc, ldsc, q + (size_t)h * d, K, j, n - j, bs, d, scale, A); \
            }                                                                                            \
            return;                                                                                      \
        }                                                                                                \
        for (int h = 0; h < nq; h++) /* odd block sizes: plain loops */                                  \
            for (int j = 0; j < n; j++) {                                                                \
                float s = 0.0f;                                                                          \
                for (int i = 0; i < d; i++) s += q[(size_t)h * d + i] * ELT_##T(K[(size_t)i * bs + j]);  \
                sc[(size_t)h * ldsc + j] = scale * s;                                                    \
            }                                                                                            \
    }

#define ELT_f16(x) h2f(x)
#define ELT_f32(x) (x)
ATTN_SCORES(f16, sov_half)
ATTN_SCORES(f32, float)
static void attn_scores_f32(float *sc, size_t ldsc, const float *q, int nq, const float *K, int n, int bs, int d,
                            float scale) {
    attn_scores_f32_ahead(sc, ldsc, q, nq, K, n, bs, d, scale, NULL);
}

#ifdef __AVX512F__
/* Scores of two blocks of 16 positions in one pass (kernels.h attn_scores2_f16): NH heads
 * x the two blocks' strips, so each broadcast query value feeds two fmas where the
 * one-block kernel gave it one (and 16 accumulators hide the fmas' latency). Each score is
 * the same chain of fmas over i as in attn_sc16, then the same product by scale. */
#define ATTN_SCORES2_TILE(NH)                                                                            \
    static inline void attn_sc2_f16_##NH(float *sc, size_t ldsc, const float *q, const sov_half *K0,    \
                                         const sov_half *K1, int m1, int d, float scale, const sov_half *A0, \
                                         const sov_half *A1) {                                           \
        __m512 a0[NH], a1[NH];                                                                           \
        UNROLL for (int h = 0; h < NH; h++) a0[h] = a1[h] = _mm512_setzero_ps();                         \
        for (int i = 0; i < d; i++) {                                                                    \
            const __m512 k0 = ld16_f16(K0 + (size_t)i * 16), k1 = ld16_f16(K1 + (size_t)i * 16);         \
            /* a block is d / 2 lines: A0's in the first half of the loop, then A1's, one line \
             * per dimension in address order (the order the hardware's streamer follows) */     \
            if (A0) prefetch_line(2 * i < d ? A0 + (size_t)i * 32 : A1 + (size_t)(i - d / 2) * 32);      \
            UNROLL for (int h = 0; h < NH; h++) {                                                        \
                const __m512 qv = _mm512_set1_ps(q[(size_t)h * d + i]);                                  \
                a0[h] = _mm512_fmadd_ps(qv, k0, a0[h]);                                                  \
                a1[h] = _mm512_fmadd_ps(qv, k1, a1[h]);                                                  \
            }                                                                                            \
        }                                                                                                \
        const __mmask16 mk = (__mmask16)(m1 >= 16 ? 0xFFFFu : (1u << m1) - 1);                           \
        const __m512 sv = _mm512_set1_ps(scale);                                                         \
        UNROLL for (int h = 0; h < NH; h++) {                                                            \
            _mm512_storeu_ps(sc + (size_t)h * ldsc, _mm512_mul_ps(a0[h], sv));                           \
            _mm512_mask_storeu_ps(sc + (size_t)h * ldsc + 16, mk, _mm512_mul_ps(a1[h], sv));             \
        }                                                                                                \
    }
ATTN_SCORES2_TILE(8)
ATTN_SCORES2_TILE(4)
ATTN_SCORES2_TILE(3)
ATTN_SCORES2_TILE(2)
ATTN_SCORES2_TILE(1)
static void attn_scores2_f16(float *sc, size_t ldsc, const float *q, int nq, const sov_half *K0,
                             const sov_half *K1, int n, int bs, int d, float scale, const sov_half *ahead0,
                             const sov_half *ahead1) {
    int h = 0;
    if (bs == 16 && n > 16) {
        /* the first row tile prefetches (it reads K0 and K1 from memory; the others find
         * them in L1) */
        const sov_half *A0 = ahead0, *A1 = ahead1;
        for (; h + 8 <= nq; h += 8, A0 = A1 = NULL)
            attn_sc2_f16_8(sc + (size_t)h * ldsc, ldsc, q + (size_t)h * d, K0, K1, n - 16, d, scale, A0, A1);
        for (; h + 4 <= nq; h += 4, A0 = A1 = NULL)
            attn_sc2_f16_4(sc + (size_t)h * ldsc, ldsc, q + (size_t)h * d, K0, K1, n - 16, d, scale, A0, A1);
        float *s3 = sc + (size_t)h * ldsc;
        const float *q3 = q + (size_t)h * d;
        if (nq - h == 3) attn_sc2_f16_3(s3, ldsc, q3, K0, K1, n - 16, d, scale, A0, A1);
        else if (nq - h == 2) attn_sc2_f16_2(s3, ldsc, q3, K0, K1, n - 16, d, scale, A0, A1);
        else if (nq - h == 1) attn_sc2_f16_1(s3, ldsc, q3, K0, K1, n - 16, d, scale, A0, A1);
        return;
    }
    /* other block sizes, or one block: block by block */
    attn_scores_f16_ahead(sc + (size_t)h * ldsc, ldsc, q + (size_t)h * d, nq - h, K0, n < bs ? n : bs, bs, d, scale,
                          ahead0);
    if (n > bs)
        attn_scores_f16_ahead(sc + (size_t)h * ldsc + bs, ldsc, q + (size_t)h * d, nq - h, K1, n - bs, bs, d, scale,
                              ahead1);
}
#define KV_SCORES2_F16 attn_scores2_f16
#endif

#define ATTN_VALUES_TILE8(T, ET, NH)                                                                     \
    static inline void attn_va8_##T##_##NH(float *out, const float *p, size_t ldp, const ET *V, int n, int d, int i0, \
                                           const void *A) {                                              \
        __m256 acc[NH];                                                                                  \
        UNROLL for (int h = 0; h < NH; h++) acc[h] = _mm256_loadu_ps(out + (size_t)h * d + i0);          \
        for (int j = 0; j < n; j++) {                                                                    \
            const __m256 vv = ld8_##T(V + (size_t)j * d + i0);                                           \
            if (A) PREFETCH_ROW(A, j, 8 * (int)sizeof(ET));                                              \
            UNROLL for (int h = 0; h < NH; h++)                                                          \
                acc[h] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + (size_t)h * ldp + j), vv, acc[h]);      \
        }                                                                                                \
        UNROLL for (int h = 0; h < NH; h++) _mm256_storeu_ps(out + (size_t)h * d + i0, acc[h]);          \
    }

#ifdef __AVX512F__
/* NH rows x NCH chunks of 16 of the head's values: each (row, value) is one chain of fmas
 * over the positions in order, whatever the tile, so rows left over from the 8- and 4-row
 * tiles take several chunks at once instead of waiting on one chain's latency */
#define ATTN_VALUES_TILE16(T, ET, NH, NCH)                                                               \
    static inline void attn_va16_##T##_##NH##x##NCH(float *out, const float *p, size_t ldp, const ET *V, int n, int d, \
                                                    int i0, const void *A) {                             \
        __m512 acc[NH][NCH];                                                                             \
        UNROLL for (int h = 0; h < NH; h++) UNROLL for (int c = 0; c < NCH; c++)                         \
            acc[h][c] = _mm512_loadu_ps(out + (size_t)h * d + i0 + 16 * c);                              \
        for (int j = 0; j < n; j++) {                                                                    \
            __m512 vv[NCH];                                                                              \
            UNROLL for (int c = 0; c < NCH; c++) vv[c] = ld16_##T(V + (size_t)j * d + i0 + 16 * c);      \
            if (A) PREFETCH_ROW(A, j, 16 * NCH * (int)sizeof(ET));                                       \
            UNROLL for (int h = 0; h < NH; h++) {                                                        \
                const __m512 pv = _mm512_set1_ps(p[(size_t)h * ldp + j]);                                \
                UNROLL for (int c = 0; c < NCH; c++) acc[h][c] = _mm512_fmadd_ps(pv, vv[c], acc[h][c]);  \
            }                                                                                            \
        }                                                                                                \
        UNROLL for (int h = 0; h < NH; h++) UNROLL for (int c = 0; c < NCH; c++)                         \
            _mm512_storeu_ps(out + (size_t)h * d + i0 + 16 * c, acc[h][c]);                              \
    }
#define ATTN_VALUES_ROWS(T, NH, NCH, h)                                                                  \
    {                                                                                                    \
        int i0 = 0;                                                                                      \
        for (; i0 + 16 * NCH <= d; i0 += 16 * NCH)                                                       \
            attn_va16_##T##_##NH##x##NCH(out + (size_t)(h) * d, p + (size_t)(h) * ldp, ldp, V, n, d, i0, \
                                         (h) == 0 ? ahead_share(ahead, n, sizeof *V, i0) : NULL); \
        for (; i0 < d; i0 += 16) attn_va16_##T##_##NH##x1(out + (size_t)(h) * d, p + (size_t)(h) * ldp, ldp, V, n, d, i0, \
                                                          (h) == 0 ? ahead_share(ahead, n, sizeof *V, i0) : NULL); \
    }
#define ATTN_VALUES_WIDE(T)                                                                              \
    if (d % 16 == 0) {                                                                                   \
        int h = 0;                                                                                       \
        for (; h + 8 <= nq; h += 8) ATTN_VALUES_ROWS(T, 8, 2, h)                                         \
        for (; h + 4 <= nq; h += 4) ATTN_VALUES_ROWS(T, 4, 2, h)                                         \
        for (; h + 2 <= nq; h += 2) ATTN_VALUES_ROWS(T, 2, 4, h)                                         \
        for (; h < nq; h++) ATTN_VALUES_ROWS(T, 1, 4, h)                                                 \
        return;                                                                                          \
    }
#else
#define ATTN_VALUES_TILE16(T, ET, NH, NCH)
#define ATTN_VALUES_WIDE(T)
#endif

#define ATTN_VALUES(T, ET)                                                                               \
    ATTN_VALUES_TILE8(T, ET, 8)                                                                          \
    ATTN_VALUES_TILE8(T, ET, 4)                                                                          \
    ATTN_VALUES_TILE8(T, ET, 1)                                                                          \
    ATTN_VALUES_TILE16(T, ET, 8, 2)                                                                      \
    ATTN_VALUES_TILE16(T, ET, 8, 1)                                                                      \
    ATTN_VALUES_TILE16(T, ET, 4, 2)                                                                      \
    ATTN_VALUES_TILE16(T, ET, 4, 1)                                                                      \
    ATTN_VALUES_TILE16(T, ET, 2, 4)                                                                      \
    ATTN_VALUES_TILE16(T, ET, 2, 1)                                                                      \
    ATTN_VALUES_TILE16(T, ET, 1, 4)                                                                      \
    ATTN_VALUES_TILE16(T, ET, 1, 1)                                                                      \
    static void attn_values_##T##_ahead(float *out, const float *p, size_t ldp, int nq, const ET *V, int n, int d, \
                                        const ET *ahead) {                                               \
        ATTN_VALUES_WIDE(T)                                                                              \
        if (d % 8 == 0) {                                                                                \
            for (int i0 = 0; i0 < d; i0 += 8) {                                                          \
                const void *A = ahead_share(ahead, n, sizeof(ET), i0);                                   \
                int h = 0;                                                                               \
                for (; h + 8 <= nq; h += 8, A = NULL) attn_va8_##T##_8(out + (size_t)h * d, p + (size_t)h * ldp, ldp, V, n, d, i0, A); \
                for (; h + 4 <= nq; h += 4, A = NULL) attn_va8_##T##_4(out + (size_t)h * d, p + (size_t)h * ldp, ldp, V, n, d, i0, A); \
                for (; h < nq; h++, A = NULL) attn_va8_##T##_1(out + (size_t)h * d, p + (size_t)h * ldp, ldp, V, n, d, i0, A); \
            }                                                                                            \
            return;                                                                                      \
        }                                                                                                \
        for (int h = 0; h < nq; h++) /* odd head sizes: row by row */                                    \
            for (int j = 0; j < n; j++) axpy_##T(out + (size_t)h * d, p[(size_t)h * ldp + j], V + (size_t)j * d, d); \
    }


ATTN_VALUES(f16, sov_half)
ATTN_VALUES(f32, float)
static void attn_values_f32(float *out, const float *p, size_t ldp, int nq, const float *V, int n, int d) {
    attn_values_f32_ahead(out, p, ldp, nq, V, n, d, NULL);
}

/* kernels_avx512.c and kernels_avx512_vnni.c compile this file again for AVX-512
 * machines under their own table names (SOV_AVX2_TABLE); here it is the AVX2 table. */
#ifndef SOV_AVX2_TABLE
#define SOV_AVX2_TABLE sov_kernels_avx2
#define SOV_AVX2_ISA "avx2"
#endif

SOV_AVX2_TABLE_LINKAGE const sov_kernels SOV_AVX2_TABLE = {
    .isa = SOV_AVX2_ISA,
    .vec_dot =
        {
            [SOV_TYPE_F32] = dot_f32_w,
            [SOV_TYPE_F16] = dot_f16_w,
            [SOV_TYPE_BF16] = dot_bf16_w,
            [SOV_TYPE_Q4_0] = dot_q4_0,
            [SOV_TYPE_Q4_1] = dot_q4_1,
            [SOV_TYPE_Q5_0] = dot_q5_0,
            [SOV_TYPE_Q5_1] = dot_q5_1,
            [SOV_TYPE_Q8_0] = dot_q8_0,
            [SOV_TYPE_Q4_K] = dot_q4_K,
            [SOV_TYPE_Q5_K] = dot_q5_K,
            [SOV_TYPE_Q6_K] = dot_q6_K,
            [SOV_TYPE_Q4_0P] = SOV_DOT_Q4_0P,
            [SOV_TYPE_Q8_0P] = dot_q8_0p,
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
            [SOV_TYPE_Q4_0P] = SOV_GEMM_Q4_0P,
            [SOV_TYPE_Q8_0P] = gemm_q8_0p,
        },
    .quantize_q8a = quantize_q8a,
    .quantize_q8k = quantize_q8k,
    .quantize_q8p = quantize_q8p,
    .rmsnorm = rmsnorm,
    .silu_mul = silu_mul,
    .gelu_mul = gelu_mul,
    .add = add,
    .scale = scale,
    .dot_f32 = dot_f32_avx2,
    .dot_f16 = dot_f16_avx2,
    .axpy_f32 = axpy_f32,
    .axpy_f16 = axpy_f16,
    .f32_to_f16 = f32_to_f16,
    .softmax = softmax,
    .attn_scores_f16 = attn_scores_f16_ahead,
    .attn_scores_f32 = attn_scores_f32,
    .attn_values_f16 = attn_values_f16_ahead,
    .attn_values_f32 = attn_values_f32,
    .layernorm = layernorm,
    .gelu_erf = gelu_erf,
    .exp_sum = exp_sum,
    .max_f32 = max_f32,
    .kv_quantize_q8_0 = kvq_quantize_q8_0,
    .kv_quantize_q4_0 = kvq_quantize_q4_0,
    .kv_dequant_q8_0 = kv_dequant_q8_0,
    .kv_dequant_q4_0 = kv_dequant_q4_0,
    .kv_dequant_t_q8_0 = kv_dequant_t_q8_0,
    .kv_dequant_t_q4_0 = kv_dequant_t_q4_0,
#ifdef KV_SCORES_Q8_0
    .attn_scores_q8_0 = KV_SCORES_Q8_0,
    .attn_scores_q4_0 = KV_SCORES_Q4_0,
#endif
#ifdef KV_SCORES2_F16
    .attn_scores2_f16 = KV_SCORES2_F16,
#endif
#ifdef KV_VALUES_Q8_0
    .attn_values_q8_0 = KV_VALUES_Q8_0,
    .attn_values_q4_0 = KV_VALUES_Q4_0,
#endif
};
