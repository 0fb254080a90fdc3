/* tiles_avx512.h - native 512-bit q4_0P tiles, for the avx512_vnni table only.
 *
 * Included by kernels_avx2.c when it is compiled with AVX-512 F + VNNI
 * (kernels_avx512_vnni.c); it replaces the 256-bit q4_0P vec_dot and gemm of that table.
 * The layouts are unchanged (quant.h).
 *
 * Integers: one 64-byte load of q4_0P nibbles covers blocks 4k..4k+3 (two pairs); its low
 * nibbles line up with the low 32-byte halves of the two Q8P pairs and its high nibbles
 * with the high halves, which two vshufi64x2 per activation column bring together (yl,
 * yh). Two vpdpbusd (nibbles 0..15 as the unsigned operand) then leave in 128-bit lane b
 * the 4 partial sums of block 4k+b.
 *
 * Reduction before the float work: the 256-bit tiles convert and scale every partial-sum
 * lane (cvt, scale product, fma per 8 lanes for 2 blocks of one row and column), which
 * costs more than the integer products. Here the 4 partial sums of each block are first
 * added in integers for 4 products at once (vpackssdw + vpmaddwd twice, exact: see
 * q4pz_reduce4), giving one vector whose lane 4b + c holds block 4k+b of column c (of
 * row r in the decode tile); the -8 of q4_0 (-8 s, s the block's activation sum, exact
 * in Q8P's float) is added in the same step. The float work (cvt, dw * da, fma) is then
 * done once per 16 distinct (block, column) sums: per row, 4 columns and 4 blocks,
 * 8 vpdpbusd + 6 reduction ops + 3 float ops, where the 256-bit tiles take 16 + 24.
 *
 * Every product (r, c) goes through the same per-lane operations whatever the tile (4 x 4,
 * 1 x 1, the 4-row decode tile): the integer lane values are exact, the lane's scale is
 * the same dw * da, its accumulator sees the same fma sequence, and the 4 block lanes are
 * added in one fixed order at the end, so gemm equals vec_dot bit for bit. The float
 * summation order differs from the 256-bit tiles (and so from the avx2 table). */

/* q4_0P blocks i0..nb-1 (i0 even; the 512-bit tiles' leftover after groups of 4): whole
 * pairs through one pair product, each block's exact integer sum then scaled as
 * q4_0p_block does (the same float operations: the same value), a trailing odd block by
 * q4_0p_block. Rows 18 blocks long (576 wide) left 2 of 18 blocks to the scalar loop,
 * which made them ~10x slower than in the file layout. */
static inline float q4_0p_tail(const uint8_t *w, const uint8_t *a, int64_t i0, int64_t nb) {
    const float *af = (const float *)a;
    float v = 0.0f;
    int64_t i = i0;
    for (; i + 2 <= nb; i += 2) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(w + 2 * nb + 16 * i));
        const __m256i m4 = _mm256_set1_epi8(0x0f);
        const uint8_t *aq = a + 8 * nb + 32 * i;
        const __m256i p = q4p_pair(_mm256_and_si256(q, m4), _mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                                   _mm256_loadu_si256((const __m256i *)aq),
                                   _mm256_loadu_si256((const __m256i *)(aq + 32)));
        int32_t l[8];
        _mm256_storeu_si256((__m256i *)l, p);
        for (int b = 0; b < 2; b++) {
            const int s = (l[4 * b] + l[4 * b + 1]) + (l[4 * b + 2] + l[4 * b + 3]) - 8 * (int)af[nb + i + b];
            uint16_t hd;
            memcpy(&hd, w + 2 * (i + b), 2);
            v += h2f(hd) * af[i + b] * (float)s;
        }
    }
    for (; i < nb; i++) v += q4_0p_block(w, a, i, nb);
    return v;
}

/* lane k -> 4j + k / 4: spreads the per-block value of blocks 4j..4j+3 (of a group of
 * 16) over the 4 lanes of each 128-bit lane */
static inline __m512i q4pz_idx(int j) {
    return _mm512_add_epi32(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                            _mm512_set1_epi32(4 * j));
}

/* off + [s0 s1 s2 s3] per 128-bit lane, s_c the sum of the 4 int32 lanes of that 128-bit
 * lane of p_c. Exact, no saturation: every input lane is a sum of 8 products nibble x
 * int8, at most 8 x 15 x 128 = 15360 in magnitude, so the lanes and their pair sums
 * (<= 30720) fit the int16 of the two vpackssdw stages. */
static inline __m512i q4pz_reduce4(__m512i p0, __m512i p1, __m512i p2, __m512i p3, __m512i off) {
    const __m512i one = _mm512_set1_epi16(1);
    const __m512i t01 = _mm512_madd_epi16(_mm512_packs_epi32(p0, p1), one);
    const __m512i t23 = _mm512_madd_epi16(_mm512_packs_epi32(p2, p3), one);
    return _mm512_dpwssd_epi32(off, _mm512_packs_epi32(t01, t23), one); /* off + the pair sums */
}

/* t[j] lane 4b + c = x_c[4j + b]: 16 per-block values of 4 columns in (block, column) order */
static inline void q4pz_bc16(__m512 x0, __m512 x1, __m512 x2, __m512 x3, __m512 t[4]) {
    const __m512 e_lo = _mm512_shuffle_f32x4(x0, x1, 0x44), e_hi = _mm512_shuffle_f32x4(x0, x1, 0xee);
    const __m512 f_lo = _mm512_shuffle_f32x4(x2, x3, 0x44), f_hi = _mm512_shuffle_f32x4(x2, x3, 0xee);
    const __m512i i0 = _mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27);
    const __m512i i1 = _mm512_add_epi32(i0, _mm512_set1_epi32(4));
    t[0] = _mm512_permutex2var_ps(e_lo, i0, f_lo);
    t[1] = _mm512_permutex2var_ps(e_lo, i1, f_lo);
    t[2] = _mm512_permutex2var_ps(e_hi, i0, f_hi);
    t[3] = _mm512_permutex2var_ps(e_hi, i1, f_hi);
}

/* the same for 4 values per column */
static inline __m512 q4pz_bc4(const float *x0, const float *x1, const float *x2, const float *x3) {
    __m512 z = _mm512_castps128_ps512(_mm_loadu_ps(x0));
    z = _mm512_insertf32x4(z, _mm_loadu_ps(x1), 1);
    z = _mm512_insertf32x4(z, _mm_loadu_ps(x2), 2);
    z = _mm512_insertf32x4(z, _mm_loadu_ps(x3), 3);
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), z);
}

/* the same for 2 values per column (a last pair), the other lanes zero */
static inline __m512 q4pz_bc2(const float *x0, const float *x1, const float *x2, const float *x3) {
    __m512 z = _mm512_castps128_ps512(_mm_maskz_loadu_ps(3, x0));
    z = _mm512_insertf32x4(z, _mm_maskz_loadu_ps(3, x1), 1);
    z = _mm512_insertf32x4(z, _mm_maskz_loadu_ps(3, x2), 2);
    z = _mm512_insertf32x4(z, _mm_maskz_loadu_ps(3, x3), 3);
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), z);
}

/* -8 s as int32 from the exact float sums */
static inline __m512i q4pz_off(__m512 s) {
    return _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(_mm512_cvtps_epi32(s), 3));
}

/* One step of 4 blocks (blk its first) of an R x C tile; SA / OFF: the step's (block,
 * column) activation scales and offsets, sw[r] the row's weight scales spread per block.
 * With C < 4 the missing columns repeat the first ones (lanes ignored at the end). */
#define Q4PZR_STEP(R, C, blk, SA, OFF, LAST)                                                             \
    {                                                                                                    \
        __m512i yl[C], yh[C];                                                                            \
        UNROLL for (int c = 0; c < C; c++) {                                                             \
            const char *q8 = ac[c] + 8 * nb + 32 * (blk);                                                \
            const __m512i a0 = _mm512_loadu_si512((const void *)q8);                                     \
            const __m512i a1 = LAST ? _mm512_setzero_si512() : _mm512_loadu_si512((const void *)(q8 + 64)); \
            yl[c] = _mm512_shuffle_i64x2(a0, a1, 0x44);                                                  \
            yh[c] = _mm512_shuffle_i64x2(a0, a1, 0xee);                                                  \
        }                                                                                                \
        UNROLL for (int r = 0; r < R; r++) {                                                             \
            const char *wq = wb + (size_t)r * ldw + 2 * nb + 16 * (blk);                                 \
            /* a few columns (batched decode) are memory-bound like decode: prefetch 4 tiles on   \
             * (measured: 16 rows ahead beats 4 and 8 by ~10% per step at 4 and 16 streams) */      \
            if (R == 4 && C <= 4) _mm_prefetch(wq + 16 * ldw, _MM_HINT_T0);                               \
            const __m512i q = LAST ? _mm512_maskz_loadu_epi8(0xffffffffu, wq) : _mm512_loadu_si512((const void *)wq); \
            const __m512i lo = _mm512_and_si512(q, m4);                                                  \
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);                            \
            __m512i p[4];                                                                                \
            UNROLL for (int c = 0; c < 4; c++) {                                                         \
                if (c < C)                                                                               \
                    p[c] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, yl[c]), hi, yh[c]); \
                else                                                                                     \
                    p[c] = p[c % C];                                                                     \
            }                                                                                            \
            const __m512i u = q4pz_reduce4(p[0], p[1], p[2], p[3], OFF);                                 \
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(u), _mm512_mul_ps(sw[r], SA), acc[r]);           \
        }                                                                                                \
    }

#define Q4PZR_TILE(R, C)                                                                                 \
    static inline void tile_q4_0pr_##R##x##C(int64_t nb, const char *wb, size_t ldw, const char *ab,     \
                                             size_t lda, float *y, size_t ldy) {                         \
        const __m512i m4 = _mm512_set1_epi8(0x0f);                                                       \
        const char *ac[4];                                                                               \
        UNROLL for (int c = 0; c < 4; c++) ac[c] = ab + (size_t)(c % C) * lda;                           \
        __m512 acc[R];                                                                                   \
        UNROLL for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();                                 \
        const int64_t n16 = nb / 16 * 16, n4 = nb / 4 * 4;                                               \
        int64_t i = 0;                                                                                   \
        for (; i < n16; i += 16) {                                                                       \
            __m512 dw[R], sa[4], sf[4];                                                                  \
            UNROLL for (int r = 0; r < R; r++) dw[r] = _mm512_cvtph_ps(                                  \
                _mm256_loadu_si256((const __m256i *)(wb + (size_t)r * ldw + 2 * i)));                    \
            const float *f0 = (const float *)ac[0], *f1 = (const float *)ac[1];                          \
            const float *f2 = (const float *)ac[2], *f3 = (const float *)ac[3];                          \
            q4pz_bc16(_mm512_loadu_ps(f0 + i), _mm512_loadu_ps(f1 + i), _mm512_loadu_ps(f2 + i),         \
                      _mm512_loadu_ps(f3 + i), sa);                                                      \
            q4pz_bc16(_mm512_loadu_ps(f0 + nb + i), _mm512_loadu_ps(f1 + nb + i), _mm512_loadu_ps(f2 + nb + i), \
                      _mm512_loadu_ps(f3 + nb + i), sf);                                                 \
            UNROLL for (int j = 0; j < 4; j++) {                                                         \
                const __m512i idx = q4pz_idx(j);                                                         \
                const __m512i off = q4pz_off(sf[j]);                                                     \
                __m512 sw[R];                                                                            \
                UNROLL for (int r = 0; r < R; r++) sw[r] = _mm512_permutexvar_ps(idx, dw[r]);            \
                Q4PZR_STEP(R, C, i + 4 * j, sa[j], off, 0)                                               \
            }                                                                                            \
        }                                                                                                \
        for (; i < n4; i += 4) {                                                                         \
            const __m512i idx = q4pz_idx(0);                                                             \
            __m512 sw[R];                                                                                \
            UNROLL for (int r = 0; r < R; r++) sw[r] = _mm512_permutexvar_ps(                            \
                idx, _mm512_castps128_ps512(                                                             \
                         _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(wb + (size_t)r * ldw + 2 * i))))); \
            const float *f0 = (const float *)ac[0], *f1 = (const float *)ac[1];                          \
            const float *f2 = (const float *)ac[2], *f3 = (const float *)ac[3];                          \
            const __m512 sa1 = q4pz_bc4(f0 + i, f1 + i, f2 + i, f3 + i);                                 \
            const __m512i off = q4pz_off(q4pz_bc4(f0 + nb + i, f1 + nb + i, f2 + nb + i, f3 + nb + i));  \
            Q4PZR_STEP(R, C, i, sa1, off, 0)                                                             \
        }                                                                                                \
        if (nb - i >= 2) { /* a last pair (rows of 4k + 2 blocks: 576 wide): a step of 4 blocks of */   \
            /* which the first 2 exist, the others' quants, scales and sums read as zeros */           \
            const __m512i idx = q4pz_idx(0);                                                             \
            __m512 sw[R];                                                                                \
            UNROLL for (int r = 0; r < R; r++) sw[r] = _mm512_permutexvar_ps(                            \
                idx, _mm512_castps128_ps512(_mm_cvtph_ps(_mm_maskz_loadu_epi16(3, wb + (size_t)r * ldw + 2 * i)))); \
            const float *f0 = (const float *)ac[0], *f1 = (const float *)ac[1];                          \
            const float *f2 = (const float *)ac[2], *f3 = (const float *)ac[3];                          \
            const __m512 sa1 = q4pz_bc2(f0 + i, f1 + i, f2 + i, f3 + i);                                 \
            const __m512i off = q4pz_off(q4pz_bc2(f0 + nb + i, f1 + nb + i, f2 + nb + i, f3 + nb + i));  \
            Q4PZR_STEP(R, C, i, sa1, off, 1)                                                             \
            i += 2;                                                                                      \
        }                                                                                                \
        UNROLL for (int r = 0; r < R; r++) {                                                             \
            float l[16];                                                                                 \
            _mm512_storeu_ps(l, acc[r]);                                                                 \
            UNROLL for (int c = 0; c < C; c++) {                                                         \
                const uint8_t *w = (const uint8_t *)(wb + (size_t)r * ldw), *a = (const uint8_t *)ac[c]; \
                float v = (l[c] + l[4 + c]) + (l[8 + c] + l[12 + c]);                                    \
                if (i < nb) v += q4_0p_tail(w, a, i, nb); /* a trailing odd block (an out-of-line */   \
                /* call per product cost 9% of a 576-wide model's prompt even when it had nothing to do) */ \
                y[(size_t)c * ldy + (size_t)r] = v;                                                      \
            }                                                                                            \
        }                                                                                                \
    }

Q4PZR_TILE(1, 1)
Q4PZR_TILE(1, 2)
Q4PZR_TILE(1, 4)
Q4PZR_TILE(4, 2)
Q4PZR_TILE(4, 4)

/* 4 rows x 1 column (decode): the same per-lane float operations as the tiles above,
 * with lanes (block, row) instead of (block, column), so that the 4 reductions and the
 * float work are shared by 4 rows instead of done for one column 4 times over. */
static inline __m512 q4pz_bc4h(const char *w0, const char *w1, const char *w2, const char *w3) {
    __m512 z = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)w0)));
    z = _mm512_insertf32x4(z, _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)w1)), 1);
    z = _mm512_insertf32x4(z, _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)w2)), 2);
    z = _mm512_insertf32x4(z, _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)w3)), 3);
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), z);
}

#define Q4PZR_ROWS_STEP(blk, SW, SA, OFF, LAST)                                                          \
    {                                                                                                    \
        const char *q8 = ab + 8 * nb + 32 * (blk);                                                       \
        const __m512i a0 = _mm512_loadu_si512((const void *)q8);                                         \
        const __m512i a1 = LAST ? _mm512_setzero_si512() : _mm512_loadu_si512((const void *)(q8 + 64));  \
        const __m512i yl = _mm512_shuffle_i64x2(a0, a1, 0x44), yh = _mm512_shuffle_i64x2(a0, a1, 0xee);  \
        __m512i p[4];                                                                                    \
        UNROLL for (int r = 0; r < 4; r++) {                                                             \
            const char *wq = wb + (size_t)r * ldw + 2 * nb + 16 * (blk);                                 \
            _mm_prefetch(wq + 4 * ldw, _MM_HINT_T0); /* the same place 4 rows on: the next tile */       \
            const __m512i q = LAST ? _mm512_maskz_loadu_epi8(0xffffffffu, wq) : _mm512_loadu_si512((const void *)wq); \
            const __m512i lo = _mm512_and_si512(q, m4);                                                  \
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);                            \
            p[r] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, yl), hi, yh);     \
        }                                                                                                \
        const __m512i u = q4pz_reduce4(p[0], p[1], p[2], p[3], OFF);                                     \
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(u), _mm512_mul_ps(SW, SA), acc);                        \
    }

static inline void tile_q4_0pr_rows4(int64_t nb, const char *wb, size_t ldw, const char *ab, float *y) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const char *wr[4];
    UNROLL for (int r = 0; r < 4; r++) wr[r] = wb + (size_t)r * ldw;
    __m512 acc = _mm512_setzero_ps();
    const int64_t n16 = nb / 16 * 16, n4 = nb / 4 * 4;
    const float *af = (const float *)ab;
    int64_t i = 0;
    for (; i < n16; i += 16) {
        __m512 sw[4];
        UNROLL for (int r = 0; r < 4; r++) _mm_prefetch(wr[r] + 2 * i + 4 * ldw, _MM_HINT_T0);
        q4pz_bc16(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(wr[0] + 2 * i))),
                  _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(wr[1] + 2 * i))),
                  _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(wr[2] + 2 * i))),
                  _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(wr[3] + 2 * i))), sw);
        const __m512 da = _mm512_loadu_ps(af + i);
        const __m512i off = q4pz_off(_mm512_loadu_ps(af + nb + i));
        UNROLL for (int j = 0; j < 4; j++) {
            const __m512i idx = q4pz_idx(j);
            Q4PZR_ROWS_STEP(i + 4 * j, sw[j], _mm512_permutexvar_ps(idx, da), _mm512_permutexvar_epi32(idx, off), 0)
        }
    }
    for (; i < n4; i += 4) {
        const __m512i idx = q4pz_idx(0);
        const __m512 sw = q4pz_bc4h(wr[0] + 2 * i, wr[1] + 2 * i, wr[2] + 2 * i, wr[3] + 2 * i);
        const __m512 sa = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_loadu_ps(af + i)));
        const __m512i off =
            _mm512_permutexvar_epi32(idx, q4pz_off(_mm512_castps128_ps512(_mm_loadu_ps(af + nb + i))));
        Q4PZR_ROWS_STEP(i, sw, sa, off, 0)
    }
    if (nb - i >= 2) { /* a last pair, as in the tiles above */
        const __m512i idx = q4pz_idx(0);
        __m128 h[4];
        UNROLL for (int r = 0; r < 4; r++) h[r] = _mm_cvtph_ps(_mm_maskz_loadu_epi16(3, wr[r] + 2 * i));
        __m512 z = _mm512_castps128_ps512(h[0]);
        z = _mm512_insertf32x4(z, h[1], 1);
        z = _mm512_insertf32x4(z, h[2], 2);
        z = _mm512_insertf32x4(z, h[3], 3);
        const __m512 sw =
            _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), z);
        const __m512 sa = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_maskz_loadu_ps(3, af + i)));
        const __m512i off =
            _mm512_permutexvar_epi32(idx, q4pz_off(_mm512_castps128_ps512(_mm_maskz_loadu_ps(3, af + nb + i))));
        Q4PZR_ROWS_STEP(i, sw, sa, off, 1)
        i += 2;
    }
    float l[16];
    _mm512_storeu_ps(l, acc);
    UNROLL for (int r = 0; r < 4; r++) {
        float v = (l[r] + l[4 + r]) + (l[8 + r] + l[12 + r]);
        if (i < nb) v += q4_0p_tail((const uint8_t *)wr[r], (const uint8_t *)ab, i, nb); /* a trailing odd block */
        y[r] = v;
    }
}

/* nr x nc in 4 x 4 tiles (the forward pass calls with up to 16 x 4), leftover rows 1 x 4;
 * leftover column pairs 4 x 2 / 1 x 2; a single column (decode) with the 4-row tile. */
static void gemm_q4_0pz(int64_t n, const void *vw, size_t ldw, int nr, const void *va, size_t lda, int nc,
                        float *y, size_t ldy) {
    const int64_t nb = n / QK;
    const char *w = vw, *a = va;
    int c = 0;
    for (; c + 4 <= nc; c += 4) {
        int r = 0;
        for (; r + 4 <= nr; r += 4)
            tile_q4_0pr_4x4(nb, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy);
        for (; r < nr; r++)
            tile_q4_0pr_1x4(nb, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy);
    }
    for (; c + 2 <= nc; c += 2) {
        int r = 0;
        for (; r + 4 <= nr; r += 4)
            tile_q4_0pr_4x2(nb, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy);
        for (; r < nr; r++)
            tile_q4_0pr_1x2(nb, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy);
    }
    for (; c < nc; c++) {
        int r = 0;
        for (; r + 4 <= nr; r += 4)
            tile_q4_0pr_rows4(nb, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, y + (size_t)c * ldy + r);
        for (; r < nr; r++)
            tile_q4_0pr_1x1(nb, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy);
    }
}

static float dot_q4_0pz(int64_t n, const void *w, const void *a) {
    float y;
    tile_q4_0pr_1x1(n / QK, w, 0, a, 0, &y, 1);
    return y;
}
