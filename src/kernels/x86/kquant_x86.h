/* kquant_x86.h - q4_K / q5_K / q6_K against Q8K on x86: AVX2, and 512-bit vectors where
 * the table is built for AVX-512 (vpdpwssd with VNNI). Included by kernels_avx2.c (after
 * its helpers: h2f, hsum_ps, SOV_VNNI, UNROLL).
 *
 * Tiles of R weight rows x C activation columns: each weight super-block's quants and
 * its 6-bit scales/mins (q6_K: int8 scales) are unpacked once and used for all C
 * columns, each activation super-block prepared once for all R rows. Per product and
 * super-block everything stays in integers until one float step:
 *   q4_K/q5_K: S = sum_j sc_j (q_j . a_j) in int32 lanes (vpmaddubsw, then vpmaddwd by
 *              the sub-block scale; vpdpwssd with VNNI); M = sum_j m_j bsum_j, the mins
 *              through the activation block sums (vpmaddwd);
 *              acc += (S dw - M dmin) da
 *   q6_K:      S = sum_j sc_j (q_j . a_j) - 32 sum_j sc_j bsum_j (the -32 offset, exact
 *              in int32); acc += S (dw da)
 * and the float lanes of acc are added once at the end of the row (vec_dot is the 1 x 1
 * tile). In the 256-bit form (the avx2 table) q6_K keeps 8 lanes per row; q4_K/q5_K
 * take rows in pairs, 4 lanes each, so that two half sub-blocks add in int16 before the
 * scale (described at their tile). The 512-bit form (KQ_Z, both AVX-512 tables) computes
 * two 32-value groups per instruction and orders the float part differently, to take it
 * off the multiply port (described at its tiles below). In every
 * table each (r, c) gets the same int32 lanes in every tile shape and runs the same float
 * instructions on its own lanes: a product never depends on its tile (gemm == vec_dot bit
 * for bit). vpdpwssd gives exactly the lanes of vpmaddwd + vpaddd (no saturation:
 * |vpmaddubsw| <= 2 x 63 x 128, scales <= 128 in magnitude), so avx512 and avx512_vnni
 * agree bit for bit; avx2 and avx512 agree within the reference tolerance.
 * Integer bounds: q4_K/q5_K |S| <= 8 x 32 x 31 x 128 x 63 < 2^26, q6_K |S| <= 16 x 16 x
 * 63 x 128 x 128 + 32 x 16 x 128 x 2032 < 2^29.
 *
 * Measured on Zen 4 (bench_kernels, one thread, batch of 8): q4_K 53 -> 257 GFLOP/s,
 * q5_K 46 -> 222, q6_K 69 -> 264 (avx512_vnni); 53 -> 134, 47 -> 131, 64 -> 123 (avx2,
 * before the row pairs; on a Xeon they took avx2 q4_K 93 -> 128-130, q5_K 76-84 -> 98-100;
 * a lone row is paired with itself, so vec_dot, the 1 x 1 tile, is ~30% slower than
 * before: the engine multiplies through 4- to 16-row tiles and never calls it). */

#if defined(__AVX512BW__) && !defined(KQ_Z)
#define KQ_Z 1
#elif !defined(KQ_Z)
#define KQ_Z 0
#endif

/* 1-column tiles (decode, memory-bound): prefetch the same super-block of the rows two
 * tiles ahead (the matmul op walks the rows in order). Measured on the TinyLlama q4_K
 * model, one thread: 34 -> 50 tokens/s (one tile ahead: 50, four or eight: the same);
 * q6_K's super-blocks are longer than the three lines once prefetched: the TinyLlama
 * q6_K model, one thread, 23-24 -> 29-30 tokens/s with all of their lines.
 * A prefetch past the end of the matrix is harmless (no fault). */
#define KQ_PREFETCH(BT)                                                                                  \
    if (NC == 1)                                                                                         \
        UNROLL for (int r = 0; r < NR; r++) {                                                            \
            /* integer arithmetic: the address may lie outside the matrix */                             \
            const uintptr_t pf = (uintptr_t)wb + (2 * NR + r) * ldw + (uintptr_t)i * sizeof(BT);         \
            _mm_prefetch((const char *)pf, _MM_HINT_T0);                                                 \
            _mm_prefetch((const char *)(pf + 64), _MM_HINT_T0);                                          \
            _mm_prefetch((const char *)(pf + 128), _MM_HINT_T0);                                         \
            if (sizeof(BT) > 192) { /* q6_K's 210 bytes: up to 5 lines */                                \
                _mm_prefetch((const char *)(pf + 192), _MM_HINT_T0);                                     \
                _mm_prefetch((const char *)(pf + sizeof(BT) - 1), _MM_HINT_T0);                          \
            }                                                                                            \
        }

/* acc + p . s per int32 lane (p, s: 16 x int16, pairs summed) */
static inline __m256i kq_dot16(__m256i acc, __m256i p, __m256i s) {
#if SOV_VNNI
    return _mm256_dpwssd_epi32(acc, p, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, s));
#endif
}

/* int16 element k (0..7) of each 128-bit lane broadcast over that lane (pshufb index) */
static inline __m256i kq_bcast16(int k) { return _mm256_set1_epi16((short)((2 * k + 1) << 8 | 2 * k)); }

/* The 8 scales and 8 mins of a q4_K / q5_K super-block as int16: [sc0..sc7 | m0..m7]
 * (sov_k_scale_min for j = 0..7). Reads 16 bytes from the 12 scale bytes (the 4 after
 * them are quants of the same block). */
static inline __m256i kq_scales_mins(const uint8_t *s) {
    const __m128i b = _mm_loadu_si128((const __m128i *)s);
    /* low parts: sc0-3 = s0-3 & 63, sc4-7 = s8-11 & 15, m0-3 = s4-7 & 63, m4-7 = s8-11 >> 4 */
    const __m128i l = _mm_shuffle_epi8(b, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    const __m128i mlo = _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0);
    const __m128i mhi = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15);
    const __m128i lo = _mm_or_si128(_mm_and_si128(l, mlo), _mm_and_si128(_mm_srli_epi16(l, 4), mhi));
    /* high parts (bits 4-5) of sc4-7 and m4-7: the top 2 bits of s0-3 and s4-7 */
    const __m128i h = _mm_shuffle_epi8(b, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(h, 2), _mm_set1_epi8(0x30));
    return _mm256_cvtepu8_epi16(_mm_or_si128(lo, hi));
}

/* bit b (0..7) of each byte of hb moved to bit 4 (others cleared): q5_K's fifth bits */
static inline __m256i kq_bit4(__m256i hb, int b) {
    const __m256i m = _mm256_set1_epi8(0x10);
    if (b < 4) return _mm256_and_si256(_mm256_slli_epi16(hb, 4 - b), m);
    if (b == 4) return _mm256_and_si256(hb, m);
    return _mm256_and_si256(_mm256_srli_epi16(hb, b - 4), m);
}

#if KQ_Z
/* ---- 512-bit tiles (the avx512 and avx512_vnni tables) ----
 *
 * Rows one after the other, each against all C columns: per row and super-block,
 * sub-blocks 2j and 2j + 1 sit in one 512-bit vector [lo nibbles | hi nibbles] (q6_K: two
 * 32-value groups), which lines up with the 64 activations of the pair; vpmaddubsw, then
 * vpdpwssd by the sub-block scales, into 16 int32 lanes per column.
 * q4_K / q5_K: the 16 lanes of each of the (up to 4) columns are summed by fours in
 * integers (kq_sum4: lane 4L + c of one vector holds column c's lanes 4L..4L+3), so one
 * float step serves the whole row:
 *   acc[r] += float(T) * (d_r da)           (lane 4L + c: da_c)
 * and the mins of all R rows against all C columns take one vpdpwssd per column (lane
 * 4r + k: m_r,2k bsum_c,2k + m_r,2k+1 bsum_c,2k+1, bsum the 32-value sums), summed by
 * fours the same way, and one float step per super-block for the whole tile:
 *   accm -= float(M) * (dmin da)            (lane 4r + c: dmin_r da_c)
 * The product (r, c) is the sum of acc[r]'s lanes c, 4 + c, 8 + c, 12 + c, plus accm's
 * lane 4r + c. Against the per-(r, c) float steps of the 256-bit form this takes 24 of
 * the ~60 conversions and multiplies per 4 x 4 super-block off the multiply port and
 * frees the registers for 8-column tiles. bench_kernels, batch of 8, on a Xeon (Sapphire
 * Rapids class): q4_K 95 -> 134 GFLOP/s with 4-column tiles, 155 with 8; pp512 of the 1.1B
 * q4_K model 37 -> 57-61 tokens/s at one thread.
 * q6_K: the -32 offset starts the integer accumulator (low 8 lanes); one float step per
 * (r, c) on 16 lanes: acc[r][c] += float(S) * (d_r da_c).
 * Each (r, c) goes through the same instructions in every tile shape (C = 1 and 2 reach
 * the same exact integer sums by shorter routes), so gemm == vec_dot bit for bit. */
#if SOV_VNNI
#define KQ_DOT16Z(acc, p, s) _mm512_dpwssd_epi32(acc, p, s)
#else
#define KQ_DOT16Z(acc, p, s) _mm512_add_epi32(acc, _mm512_madd_epi16(p, s))
#endif

/* lane 4L + c (c < C): the sum of lanes 4L..4L+3 of zc (exact int32); C = 1 and 2 take
 * shorter routes to the same sums */
static inline __m512i kq_sum4(int C, __m512i z0, __m512i z1, __m512i z2, __m512i z3) {
    if (C == 1) {
        const __m512i t = _mm512_add_epi32(z0, _mm512_shuffle_epi32(z0, _MM_PERM_BADC));
        return _mm512_add_epi32(t, _mm512_shuffle_epi32(t, _MM_PERM_CDAB));
    }
    if (C == 2) {
        const __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi32(z0, z1), _mm512_unpackhi_epi32(z0, z1));
        return _mm512_add_epi32(u, _mm512_shuffle_epi32(u, _MM_PERM_BADC));
    }
    /* per 128-bit lane: [z0_0 + z0_2, z1_0 + z1_2, z0_1 + z0_3, z1_1 + z1_3], and z2, z3 alike */
    const __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi32(z0, z1), _mm512_unpackhi_epi32(z0, z1));
    const __m512i v = _mm512_add_epi32(_mm512_unpacklo_epi32(z2, z3), _mm512_unpackhi_epi32(z2, z3));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(u, v), _mm512_unpackhi_epi64(u, v));
}

/* super-block i of the NC activation columns of a 512-bit tile: a[c], and da[g] with the
 * scale of column 4g + c in lanes 4x + c (x = 0..3) */
#define KQ_Z_COLUMNS                                                                                     \
    const block_q8k *a[NC];                                                                              \
    __m512 da[NG];                                                                                       \
    UNROLL for (int g = 0; g < NG; g++) da[g] = _mm512_setzero_ps();                                     \
    UNROLL for (int c = 0; c < NC; c++) {                                                                \
        a[c] = (const block_q8k *)(ab + (size_t)c * lda) + i;                                            \
        da[c / 4] = _mm512_mask_broadcastss_ps(da[c / 4], (__mmask16)(0x1111u << (c % 4)), _mm_set_ss(a[c]->d)); \
    }

/* The float step of row r for all C columns: zs[c], its int32 lanes for column c, summed by
 * fours (kq_sum4), times d of the row's super-block wr and the columns' scales da */
#define KQ_Z_ROW_ACC                                                                                     \
    {                                                                                                    \
        const __m512 dr = _mm512_set1_ps(h2f(wr->d));                                                    \
        UNROLL for (int g = 0; g < NG; g++)                                                              \
            acc[r][g] = _mm512_fmadd_ps(                                                                 \
                _mm512_cvtepi32_ps(kq_sum4(CG, zs[4 * g], zs[4 * g + 1], zs[4 * g + 2], zs[4 * g + 3])),  \
                _mm512_mul_ps(dr, da[g]), acc[r][g]);                                                    \
    }

#define KQ_Q5_BITSZ_0
/* q5_K's fifth bits: bit 2j (low half) / 2j + 1 (high half) of each qh byte to bit 4 of
 * the quant, by rotating each 64-bit lane left by 4 - bit (mod 64: a bit within the same
 * byte lands on bit 4, whichever way it moves), then q |= rotated & 0x10 in one vpternlog */
#define KQ_Q5_BITSZ_1                                                                                    \
    {                                                                                                    \
        const __m512i cnt = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi64x((4 - 2 * j) & 63)), \
                                               _mm256_set1_epi64x((3 - 2 * j) & 63), 1);                 \
        q = _mm512_ternarylogic_epi32(q, _mm512_rolv_epi64(hb, cnt), _mm512_set1_epi8(0x10), 0xF8);      \
    }
#define KQ_Q5_HB_0
#define KQ_Q5_HB_1 const __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)wr->qh));

#define KQ_TILE_Q45(T, BT, Q5, R, C)                                                                     \
    static inline void tile_##T##_##R##x##C(int64_t nb, const char *wb, size_t ldw, const char *ab,      \
                                            size_t lda, float *y, size_t ldy) {                          \
        enum { NR = R, NC = C, NG = (C + 3) / 4, CG = C < 4 ? C : 4 }; /* NG groups of CG columns */     \
        _Static_assert(R <= 4 && (C <= 4 || C % 4 == 0), "four lanes per row and column");              \
        __m512 acc[R][NG], accm[NG];                                                                     \
        UNROLL for (int g = 0; g < NG; g++) {                                                            \
            accm[g] = _mm512_setzero_ps();                                                               \
            UNROLL for (int r = 0; r < R; r++) acc[r][g] = _mm512_setzero_ps();                          \
        }                                                                                                \
        const __m512i shz = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);         \
        const __m512i m4z = _mm512_set1_epi8(0x0f);                                                      \
        for (int64_t i = 0; i < nb; i++) {                                                               \
            const BT *w[R];                                                                              \
            UNROLL for (int r = 0; r < R; r++) w[r] = (const BT *)(wb + (size_t)r * ldw) + i;            \
            KQ_PREFETCH(BT)                                                                              \
            KQ_Z_COLUMNS                                                                                 \
            __m512 dm = _mm512_setzero_ps(); /* lane 4r + x: dmin_r */                                   \
            __m512i mins = _mm512_setzero_si512();                                                       \
            UNROLL for (int r = 0; r < R; r++) {                                                         \
                const BT *wr = w[r];                                                                     \
                const __m256i sm = kq_scales_mins(wr->scales);                                           \
                const __mmask16 rl = (__mmask16)(0xFu << (4 * r));                                       \
                mins = _mm512_mask_broadcast_i32x4(mins, rl, _mm256_extracti128_si256(sm, 1));           \
                dm = _mm512_mask_broadcastss_ps(dm, rl, _mm_set_ss(h2f(wr->dmin)));                      \
                const __m512i scz = _mm512_broadcast_i32x4(_mm256_castsi256_si128(sm));                  \
                KQ_Q5_HB_##Q5                                                                            \
                /* two integer chains per column when few columns (exact sums, added at the end) */     \
                enum { NZ = C <= 2 ? 2 : 1 };                                                            \
                __m512i zs[NG * 4], zt[NZ][C];                                                           \
                UNROLL for (int c = 0; c < NG * 4; c++) zs[c] = _mm512_setzero_si512();                  \
                UNROLL for (int z = 0; z < NZ; z++) UNROLL for (int c = 0; c < C; c++) zt[z][c] = _mm512_setzero_si512(); \
                UNROLL for (int j = 0; j < 4; j++) {                                                     \
                    const __m512i idx =                                                                  \
                        _mm512_inserti64x4(_mm512_castsi256_si512(kq_bcast16(2 * j)), kq_bcast16(2 * j + 1), 1); \
                    const __m512i qz =                                                                   \
                        _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(wr->qs + 32 * j)));  \
                    __m512i q = _mm512_and_si512(_mm512_srlv_epi16(qz, shz), m4z);                       \
                    KQ_Q5_BITSZ_##Q5                                                                     \
                    const __m512i sz = _mm512_shuffle_epi8(scz, idx);                                    \
                    UNROLL for (int c = 0; c < C; c++)                                                   \
                        zt[j % NZ][c] = KQ_DOT16Z(zt[j % NZ][c],                                         \
                                                  _mm512_maddubs_epi16(q, _mm512_loadu_si512(a[c]->qs + 64 * j)), sz); \
                }                                                                                        \
                UNROLL for (int c = 0; c < C; c++)                                                       \
                    zs[c] = NZ == 2 ? _mm512_add_epi32(zt[0][c], zt[NZ - 1][c]) : zt[0][c];             \
                KQ_Z_ROW_ACC                                                                             \
            }                                                                                            \
            __m512i xm[NG * 4];                                                                          \
            UNROLL for (int c = 0; c < NG * 4; c++) xm[c] = _mm512_setzero_si512();                      \
            UNROLL for (int c = 0; c < C; c++) {                                                         \
                /* lane 4r + k: m_r,2k bsum_c,2k + m_r,2k+1 bsum_c,2k+1 */                              \
                const __m128i bs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)a[c]->bsums),         \
                                                  _mm_loadu_si128((const __m128i *)(a[c]->bsums + 8)));  \
                xm[c] = KQ_DOT16Z(_mm512_setzero_si512(), mins, _mm512_broadcast_i32x4(bs));             \
            }                                                                                            \
            UNROLL for (int g = 0; g < NG; g++)                                                          \
                accm[g] = _mm512_fnmadd_ps(                                                              \
                    _mm512_cvtepi32_ps(kq_sum4(CG, xm[4 * g], xm[4 * g + 1], xm[4 * g + 2], xm[4 * g + 3])), \
                    _mm512_mul_ps(dm, da[g]), accm[g]);                                                  \
        }                                                                                                \
        UNROLL for (int g = 0; g < NG; g++) {                                                            \
            float mv[16];                                                                                \
            _mm512_storeu_ps(mv, accm[g]);                                                               \
            UNROLL for (int r = 0; r < R; r++) {                                                         \
                float v[16];                                                                             \
                _mm512_storeu_ps(v, acc[r][g]);                                                          \
                UNROLL for (int c = 0; c < CG; c++)                                                      \
                    y[(size_t)(4 * g + c) * ldy + (size_t)r] =                                           \
                        ((v[c] + v[4 + c]) + (v[8 + c] + v[12 + c])) + mv[4 * r + c];                    \
            }                                                                                            \
        }                                                                                                \
    }

/* q4_K / q5_K decode (4 rows x 1 column), the rows side by side where the tiles above take
 * them one after the other: the 12 scale bytes of the 4 rows unpack in one 512-bit pass
 * (row r in 128-bit lane r: the steps of kq_scales_mins), d and dmin convert in one step,
 * and the 4 rows' integer sums are summed by fours into one vector (lane 4L + r: group L
 * of row r) for one float step, where the tiles above do one per row. Each (row, group)
 * lane sees the same integers, the same product d_r da and the same fma sequence as in
 * the other tiles (d_r da is the same float product), and the mins the same vector, so
 * the 4 x 1 tile still equals vec_dot bit for bit. Decode of q4_K runs at one thread
 * below the memory's speed (bench_kernels from cache: ~30 GB/s, ~60 instructions per
 * row and super-block); this takes ~20 of them off. */
#define KQ_TILE_Q45_ROWS4(T, BT, Q5)                                                                     \
    static inline void tile_##T##_rows4(int64_t nb, const char *wb, size_t ldw, const char *ab, size_t lda, \
                                        float *y, size_t ldy) {                                          \
        enum { NR = 4, NC = 1, NG = 1 };                                                                 \
        __m512 acc = _mm512_setzero_ps(), accm = _mm512_setzero_ps();                                    \
        const __m512i shz = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);         \
        const __m512i m4z = _mm512_set1_epi8(0x0f);                                                      \
        const __m512i il = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11)); \
        const __m512i ih = _mm512_broadcast_i32x4(_mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7)); \
        const __m512i mlo = _mm512_broadcast_i32x4(_mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0)); \
        const __m512i mhi = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15)); \
        const __m512i q_sc = _mm512_setr_epi64(0, 2, 4, 6, 0, 2, 4, 6), q_m = _mm512_setr_epi64(1, 3, 5, 7, 1, 3, 5, 7); \
        const __m512i k4 = _mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);            \
        const __m512i lane_r = _mm512_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7);         \
        for (int64_t i = 0; i < nb; i++) {                                                               \
            const BT *w[4];                                                                              \
            UNROLL for (int r = 0; r < 4; r++) w[r] = (const BT *)(wb + (size_t)r * ldw) + i;            \
            KQ_PREFETCH(BT)                                                                              \
            KQ_Z_COLUMNS                                                                                 \
            /* kq_scales_mins on 4 rows at once: lane r, bytes [sc0..7 | m0..7] of row r */             \
            __m512i sb = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)w[0]->scales));         \
            sb = _mm512_inserti32x4(sb, _mm_loadu_si128((const __m128i *)w[1]->scales), 1);              \
            sb = _mm512_inserti32x4(sb, _mm_loadu_si128((const __m128i *)w[2]->scales), 2);              \
            sb = _mm512_inserti32x4(sb, _mm_loadu_si128((const __m128i *)w[3]->scales), 3);              \
            const __m512i l = _mm512_shuffle_epi8(sb, il);                                                \
            const __m512i lo = _mm512_or_si512(_mm512_and_si512(l, mlo), _mm512_and_si512(_mm512_srli_epi16(l, 4), mhi)); \
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(_mm512_shuffle_epi8(sb, ih), 2), _mm512_set1_epi8(0x30)); \
            const __m512i sm = _mm512_or_si512(lo, hi);                                                  \
            /* lane r: row r's 8 scales (int16); its 8 mins, lane 4r + k the pair 2k, 2k + 1 */          \
            const __m512i sc16 = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(_mm512_permutexvar_epi64(q_sc, sm))); \
            const __m512i mins = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(_mm512_permutexvar_epi64(q_m, sm))); \
            /* d (lanes 0-3) and dmin (4-7) of the rows; dr lane 4L + r: d_r; dm lane 4r + x: dmin_r */ \
            const __m256 dd = _mm256_cvtph_ps(_mm_setr_epi16((short)w[0]->d, (short)w[1]->d, (short)w[2]->d, \
                                                             (short)w[3]->d, (short)w[0]->dmin, (short)w[1]->dmin, \
                                                             (short)w[2]->dmin, (short)w[3]->dmin));     \
            const __m512 dr = _mm512_broadcast_f32x4(_mm256_castps256_ps128(dd));                        \
            const __m512 dm = _mm512_permutexvar_ps(lane_r, _mm512_castps256_ps512(dd));                 \
            __m512i zs[4];                                                                               \
            UNROLL for (int r = 0; r < 4; r++) {                                                         \
                const BT *wr = w[r];                                                                     \
                const __m512i scz = _mm512_permutexvar_epi32(_mm512_add_epi32(k4, _mm512_set1_epi32(4 * r)), sc16); \
                KQ_Q5_HB_##Q5                                                                            \
                __m512i zt[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};                        \
                UNROLL for (int j = 0; j < 4; j++) {                                                     \
                    const __m512i idx =                                                                  \
                        _mm512_inserti64x4(_mm512_castsi256_si512(kq_bcast16(2 * j)), kq_bcast16(2 * j + 1), 1); \
                    const __m512i qz =                                                                   \
                        _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(wr->qs + 32 * j)));  \
                    __m512i q = _mm512_and_si512(_mm512_srlv_epi16(qz, shz), m4z);                       \
                    KQ_Q5_BITSZ_##Q5                                                                     \
                    const __m512i sz = _mm512_shuffle_epi8(scz, idx);                                    \
                    zt[j % 2] = KQ_DOT16Z(zt[j % 2], _mm512_maddubs_epi16(q, _mm512_loadu_si512(a[0]->qs + 64 * j)), sz); \
                }                                                                                        \
                zs[r] = _mm512_add_epi32(zt[0], zt[1]);                                                  \
            }                                                                                            \
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(kq_sum4(4, zs[0], zs[1], zs[2], zs[3])),             \
                                  _mm512_mul_ps(dr, _mm512_set1_ps(a[0]->d)), acc);                      \
            const __m128i bs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)a[0]->bsums),             \
                                              _mm_loadu_si128((const __m128i *)(a[0]->bsums + 8)));      \
            const __m512i xm = KQ_DOT16Z(_mm512_setzero_si512(), mins, _mm512_broadcast_i32x4(bs));      \
            accm = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(kq_sum4(1, xm, xm, xm, xm)), _mm512_mul_ps(dm, da[0]), accm); \
        }                                                                                                \
        float v[16], mv[16];                                                                             \
        _mm512_storeu_ps(v, acc);                                                                        \
        _mm512_storeu_ps(mv, accm);                                                                      \
        (void)lda;                                                                                       \
        UNROLL for (int r = 0; r < 4; r++) y[(size_t)r] = ((v[r] + v[4 + r]) + (v[8 + r] + v[12 + r])) + mv[4 * r]; \
        (void)ldy;                                                                                       \
    }

/* q6_K: half h of the super-block is values 128h + (0..127); [q1 | q2] and [q3 | q4]
 * line up with its activations 0..63 and 64..127. The -32 offset, -32 sum_j sc_j bsum_j,
 * starts the integer accumulator (low 8 lanes; |32 sc| <= 4096 fits int16). */
#define KQ_TILE_Q6(R, C)                                                                                 \
    static inline void tile_q6_K_##R##x##C(int64_t nb, const char *wb, size_t ldw, const char *ab,       \
                                           size_t lda, float *y, size_t ldy) {                           \
        enum { NR = R, NC = C, NG = (C + 3) / 4, CG = C < 4 ? C : 4 }; /* NG groups of CG columns */     \
        _Static_assert(C <= 4 || C % 4 == 0, "four lanes per column");                                  \
        __m512 acc[R][NG];                                                                               \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int g = 0; g < NG; g++) acc[r][g] = _mm512_setzero_ps(); \
        const __m512i m4z = _mm512_set1_epi8(0x0f), m30z = _mm512_set1_epi8(0x30);                       \
        const __m512i sh12 =                                                                             \
            _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(4)), _mm256_set1_epi16(2), 1);   \
        const __m512i sh34 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);        \
        /* 128-bit lane L: int16 element L (q1 | q2) or 4 + L (q3 | q4) */                               \
        const __m512i i12 = _mm512_setr_epi32(0x01000100, 0x01000100, 0x01000100, 0x01000100, 0x03020302, 0x03020302, \
                                              0x03020302, 0x03020302, 0x05040504, 0x05040504, 0x05040504, 0x05040504, \
                                              0x07060706, 0x07060706, 0x07060706, 0x07060706);           \
        const __m512i i34 = _mm512_add_epi8(i12, _mm512_set1_epi8(8));                                   \
        for (int64_t i = 0; i < nb; i++) {                                                               \
            const block_q6_K *w[R];                                                                      \
            UNROLL for (int r = 0; r < R; r++) w[r] = (const block_q6_K *)(wb + (size_t)r * ldw) + i;    \
            KQ_PREFETCH(block_q6_K)                                                                      \
            KQ_Z_COLUMNS                                                                                 \
            UNROLL for (int r = 0; r < R; r++) {                                                         \
                const block_q6_K *wr = w[r];                                                             \
                const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wr->scales));   \
                const __m256i scm = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc, 5));  \
                __m512i zs[NG * 4];                                                                      \
                UNROLL for (int c = 0; c < NG * 4; c++) zs[c] = _mm512_setzero_si512();                  \
                UNROLL for (int c = 0; c < C; c++)                                                       \
                    zs[c] = _mm512_zextsi256_si512(                                                      \
                        _mm256_madd_epi16(scm, _mm256_loadu_si256((const __m256i *)a[c]->bsums)));       \
                UNROLL for (int h = 0; h < 2; h++) {                                                     \
                    const __m512i scb = _mm512_broadcast_i32x4(                                          \
                        _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(wr->scales + 8 * h))));      \
                    const __m512i l = _mm512_loadu_si512(wr->ql + 64 * h);                               \
                    const __m512i hb =                                                                   \
                        _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(wr->qh + 32 * h)));  \
                    const __m512i q12 = _mm512_or_si512(_mm512_and_si512(l, m4z),                        \
                                                        _mm512_and_si512(_mm512_sllv_epi16(hb, sh12), m30z)); \
                    const __m512i q34 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4z),  \
                                                        _mm512_and_si512(_mm512_srlv_epi16(hb, sh34), m30z)); \
                    const __m512i s12 = _mm512_shuffle_epi8(scb, i12), s34 = _mm512_shuffle_epi8(scb, i34); \
                    UNROLL for (int c = 0; c < C; c++) {                                                 \
                        const int8_t *q8 = a[c]->qs + 128 * h;                                           \
                        zs[c] = KQ_DOT16Z(zs[c], _mm512_maddubs_epi16(q12, _mm512_loadu_si512(q8)), s12); \
                        zs[c] = KQ_DOT16Z(zs[c], _mm512_maddubs_epi16(q34, _mm512_loadu_si512(q8 + 64)), s34); \
                    }                                                                                    \
                }                                                                                        \
                KQ_Z_ROW_ACC                                                                             \
            }                                                                                            \
        }                                                                                                \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int g = 0; g < NG; g++) {                         \
            float v[16];                                                                                 \
            _mm512_storeu_ps(v, acc[r][g]);                                                              \
            UNROLL for (int c = 0; c < CG; c++)                                                          \
                y[(size_t)(4 * g + c) * ldy + (size_t)r] = (v[c] + v[4 + c]) + (v[8 + c] + v[12 + c]);  \
        }                                                                                                \
    }

#else /* 256-bit tiles (the avx2 table) */
/* q4_K and q5_K (Q5 = 0 / 1), rows in pairs: a vector holds 16 quants of row 2p in its low
 * 128 bits and the same 16 of row 2p + 1 in its high 128 bits, so one vpmaddubsw against
 * the 16 activations broadcast to both halves serves two rows; the two halves of a
 * sub-block (quants 0-15 and 16-31) add in int16 (|sum| <= 4 x 31 x 128 < 2^15) before
 * one vpmaddwd by [sc of row 2p x 8 | sc of row 2p + 1 x 8]. Per pair, column and
 * sub-block that is 2 vpmaddubsw + 1 vpmaddwd instead of 2 + 2, and the float step runs
 * once per pair: its lanes are [row 2p x 4 | row 2p + 1 x 4]. The rearrangement of the
 * quants (vperm2i128) is per pair and serves every column. A single row is paired with
 * itself, so each row gets the same lanes and float steps in every tile shape (gemm ==
 * vec_dot bit for bit). */
#define KQ_TILE_Q45(T, BT, Q5, R, C)                                                                     \
    static inline void tile_##T##_##R##x##C(int64_t nb, const char *wb, size_t ldw, const char *ab,      \
                                            size_t lda, float *y, size_t ldy) {                          \
        enum { NR = R, NC = C, NP = (R + 1) / 2 };                                                       \
        const __m256i m4 = _mm256_set1_epi8(0x0f);                                                       \
        __m256 acc[NP][C];                                                                               \
        UNROLL for (int p = 0; p < NP; p++) UNROLL for (int c = 0; c < C; c++) acc[p][c] = _mm256_setzero_ps(); \
        for (int64_t i = 0; i < nb; i++) {                                                               \
            const BT *w[2 * NP]; /* a single row is its own partner */                                   \
            KQ_PREFETCH(BT)                                                                              \
            UNROLL for (int r = 0; r < 2 * NP; r++) w[r] = (const BT *)(wb + (size_t)(r < R ? r : R - 1) * ldw) + i; \
            const block_q8k *a[C];                                                                       \
            UNROLL for (int c = 0; c < C; c++) a[c] = (const block_q8k *)(ab + (size_t)c * lda) + i;     \
            __m256i scp[NP], mnp[NP], sumi[NP][C];                                                       \
            UNROLL for (int p = 0; p < NP; p++) {                                                        \
                const __m256i s0 = kq_scales_mins(w[2 * p]->scales), s1 = kq_scales_mins(w[2 * p + 1]->scales); \
                scp[p] = _mm256_permute2x128_si256(s0, s1, 0x20); /* [sc0..7 of 2p | of 2p + 1] */       \
                mnp[p] = _mm256_permute2x128_si256(s0, s1, 0x31); /* the mins likewise */                \
                UNROLL for (int c = 0; c < C; c++) sumi[p][c] = _mm256_setzero_si256();                  \
            }                                                                                            \
            KQ_Q5_HB_##Q5                                                                                \
            UNROLL for (int j = 0; j < 4; j++) {                                                         \
                UNROLL for (int p = 0; p < NP; p++) {                                                    \
                    const __m256i q0 = _mm256_loadu_si256((const __m256i *)(w[2 * p]->qs + 32 * j));     \
                    const __m256i q1 = _mm256_loadu_si256((const __m256i *)(w[2 * p + 1]->qs + 32 * j)); \
                    const __m256i x = _mm256_permute2x128_si256(q0, q1, 0x20); /* quants 0-15 */         \
                    const __m256i z = _mm256_permute2x128_si256(q0, q1, 0x31); /* quants 16-31 */        \
                    __m256i xl = _mm256_and_si256(x, m4), xh = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4); \
                    __m256i zl = _mm256_and_si256(z, m4), zh = _mm256_and_si256(_mm256_srli_epi16(z, 4), m4); \
                    KQ_Q5_PAIR_BITS_##Q5                                                                 \
                    const __m256i sl = _mm256_shuffle_epi8(scp[p], kq_bcast16(2 * j));                   \
                    const __m256i sh = _mm256_shuffle_epi8(scp[p], kq_bcast16(2 * j + 1));               \
                    UNROLL for (int c = 0; c < NC; c++) {                                                \
                        const __m128i *aq = (const __m128i *)(a[c]->qs + 64 * j);                        \
                        const __m256i pl = _mm256_add_epi16(                                             \
                            _mm256_maddubs_epi16(xl, _mm256_broadcastsi128_si256(_mm_loadu_si128(aq))),  \
                            _mm256_maddubs_epi16(zl, _mm256_broadcastsi128_si256(_mm_loadu_si128(aq + 1)))); \
                        const __m256i ph = _mm256_add_epi16(                                             \
                            _mm256_maddubs_epi16(xh, _mm256_broadcastsi128_si256(_mm_loadu_si128(aq + 2))), \
                            _mm256_maddubs_epi16(zh, _mm256_broadcastsi128_si256(_mm_loadu_si128(aq + 3)))); \
                        sumi[p][c] = kq_dot16(kq_dot16(sumi[p][c], pl, sl), ph, sh);                     \
                    }                                                                                    \
                }                                                                                        \
            }                                                                                            \
            __m256 d[NP], dmin[NP]; /* [row 2p x 4 | row 2p + 1 x 4] */                                   \
            UNROLL for (int p = 0; p < NP; p++) {                                                        \
                d[p] = kq_pair_ps(w[2 * p]->d, w[2 * p + 1]->d);                                         \
                dmin[p] = kq_pair_ps(w[2 * p]->dmin, w[2 * p + 1]->dmin);                                \
            }                                                                                            \
            UNROLL for (int c = 0; c < C; c++) {                                                         \
                const __m256i bs = kq_bsums32x2(a[c]);                                                   \
                const __m256 da = _mm256_set1_ps(a[c]->d);                                               \
                UNROLL for (int p = 0; p < NP; p++) {                                                    \
                    const __m256 mins = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(mnp[p], bs)), dmin[p]); \
                    const __m256 v = _mm256_fmsub_ps(_mm256_cvtepi32_ps(sumi[p][c]), d[p], mins);        \
                    acc[p][c] = _mm256_fmadd_ps(v, da, acc[p][c]);                                       \
                }                                                                                        \
            }                                                                                            \
        }                                                                                                \
        UNROLL for (int p = 0; p < NP; p++) UNROLL for (int c = 0; c < C; c++) {                         \
            y[(size_t)c * ldy + (size_t)(2 * p)] = kq_hsum4(_mm256_castps256_ps128(acc[p][c]));          \
            if (2 * p + 1 < R)                                                                           \
                y[(size_t)c * ldy + (size_t)(2 * p + 1)] = kq_hsum4(_mm256_extractf128_ps(acc[p][c], 1)); \
        }                                                                                                \
    }

/* q5_K's fifth bits of the pair: bit k of qh byte i is the fifth bit of quant i of
 * sub-block k; arranged like the quants ([row 2p | row 2p + 1], quants 0-15 / 16-31) */
#define KQ_Q5_HB_0
#define KQ_Q5_HB_1                                                                                       \
    __m256i hx[NP], hz[NP];                                                                              \
    UNROLL for (int p = 0; p < NP; p++) {                                                                \
        const __m256i h0 = _mm256_loadu_si256((const __m256i *)w[2 * p]->qh);                            \
        const __m256i h1 = _mm256_loadu_si256((const __m256i *)w[2 * p + 1]->qh);                        \
        hx[p] = _mm256_permute2x128_si256(h0, h1, 0x20);                                                 \
        hz[p] = _mm256_permute2x128_si256(h0, h1, 0x31);                                                 \
    }
#define KQ_Q5_PAIR_BITS_0
#define KQ_Q5_PAIR_BITS_1                                                                                \
    xl = _mm256_or_si256(xl, kq_bit4(hx[p], 2 * j));                                                     \
    xh = _mm256_or_si256(xh, kq_bit4(hx[p], 2 * j + 1));                                                 \
    zl = _mm256_or_si256(zl, kq_bit4(hz[p], 2 * j));                                                     \
    zh = _mm256_or_si256(zh, kq_bit4(hz[p], 2 * j + 1));

/* The 8 sub-block sums of 32 (bsums in pairs) as int16 in both 128-bit lanes: vpmaddwd
 * with a pair's mins [m of row 2p | m of row 2p + 1] gives each row's m_j bsum_j pairs
 * in its half. */
static inline __m256i kq_bsums32x2(const block_q8k *a) {
    const __m128i s = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)a->bsums),
                                     _mm_loadu_si128((const __m128i *)(a->bsums + 8)));
    return _mm256_broadcastsi128_si256(s);
}

/* [a x 4 | b x 4] from two halves */
static inline __m256 kq_pair_ps(uint16_t a, uint16_t b) {
    return _mm256_setr_m128(_mm_set1_ps(h2f(a)), _mm_set1_ps(h2f(b)));
}

/* (v0 + v2) + (v1 + v3): the same order for both rows of a pair */
static inline float kq_hsum4(__m128 v) {
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_add_ss(v, _mm_movehdup_ps(v)));
}

/* q6_K: per half h of the super-block, q1..q4 are values 128h + 32k + (0..31), sub-blocks
 * 8h + 2k (first 16) and 8h + 2k + 1 (last 16) */
static inline __m256i kq_q6_scale(__m256i scb, int k) {
    /* low lane: int16 element 2k, high lane: 2k + 1 */
    const __m256i idx = _mm256_setr_epi8(4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1,
                                         4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1,
                                         4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2,
                                         4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3,
                                         4 * k + 2, 4 * k + 3);
    return _mm256_shuffle_epi8(scb, idx);
}

/* 256-bit form: q1..q4 of half h of row r against every column: vpmaddubsw, then
 * vpmaddwd by the scale of each 16 */
#define KQ_Q6_PRODUCTS                                                                                   \
    UNROLL for (int k = 0; k < 4; k++) {                                                                 \
        const __m256i s = kq_q6_scale(scb, k);                                                           \
        UNROLL for (int c = 0; c < NC; c++) {                                                            \
            const __m256i av = _mm256_loadu_si256((const __m256i *)(a[c]->qs + 128 * h + 32 * k));       \
            sumi[r][c] = kq_dot16(sumi[r][c], _mm256_maddubs_epi16(q[k], av), s);                        \
        }                                                                                                \
    }

#define KQ_Q6_LOOP                                                                                       \
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);                             \
    UNROLL for (int h = 0; h < 2; h++) {                                                                 \
        UNROLL for (int r = 0; r < NR; r++) {                                                            \
            const uint8_t *ql = w[r]->ql + 64 * h, *qh = w[r]->qh + 32 * h;                              \
            const __m256i scb = _mm256_broadcastsi128_si256(                                             \
                _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(w[r]->scales + 8 * h))));            \
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);                                  \
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));                           \
            const __m256i hb = _mm256_loadu_si256((const __m256i *)qh);                                  \
            __m256i q[4];                                                                                \
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30)); \
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30)); \
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, m30)); \
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),                       \
                                   _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));                     \
            KQ_Q6_PRODUCTS                                                                               \
        }                                                                                                \
    }

#define KQ_TILE_Q6(R, C)                                                                                 \
    static inline void tile_q6_K_##R##x##C(int64_t nb, const char *wb, size_t ldw, const char *ab,       \
                                           size_t lda, float *y, size_t ldy) {                           \
        enum { NR = R, NC = C }; /* the tile shape, for KQ_Q6_LOOP */                                    \
        __m256 acc[R][C];                                                                                \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps(); \
        for (int64_t i = 0; i < nb; i++) {                                                               \
            const block_q6_K *w[R];                                                                      \
            KQ_PREFETCH(block_q6_K)                                                                      \
            const block_q8k *a[C];                                                                       \
            __m256i sumi[R][C];                                                                          \
            UNROLL for (int r = 0; r < R; r++) w[r] = (const block_q6_K *)(wb + (size_t)r * ldw) + i;    \
            UNROLL for (int c = 0; c < C; c++) a[c] = (const block_q8k *)(ab + (size_t)c * lda) + i;     \
            /* the -32 offset: -32 sc_j bsum_j (|32 sc| <= 4096 fits int16) */                           \
            UNROLL for (int r = 0; r < R; r++) {                                                         \
                const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w[r]->scales)); \
                const __m256i scm = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc, 5));  \
                UNROLL for (int c = 0; c < C; c++)                                                       \
                    sumi[r][c] = _mm256_madd_epi16(scm, _mm256_loadu_si256((const __m256i *)a[c]->bsums)); \
            }                                                                                            \
            KQ_Q6_LOOP                                                                                   \
            UNROLL for (int c = 0; c < C; c++) {                                                         \
                const __m256 da = _mm256_set1_ps(a[c]->d);                                               \
                UNROLL for (int r = 0; r < R; r++)                                                       \
                    acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[r][c]),                          \
                                                _mm256_mul_ps(_mm256_set1_ps(h2f(w[r]->d)), da), acc[r][c]); \
            }                                                                                            \
        }                                                                                                \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++)                            \
            y[(size_t)c * ldy + (size_t)r] = hsum_ps(acc[r][c]);                                         \
    }
#endif /* KQ_Z */

/* Tile shapes (the matmul op passes 16 rows x 8 tokens at a time). 512-bit: 4 rows x 8, 4 and
 * 2 columns for all three types (measured on a Xeon: 8 columns q4_K 134 -> 155 GFLOP/s,
 * q6_K 126 -> 153 at a batch of 8; q5_K's 4 x 4 spilled in the per-pair form but fits
 * now). AVX2: 2 x 4 (4 x 2, 4 x 4 and 2 x 2 slower on Zen 4; with row pairs 4 rows gain
 * nothing on a Xeon) and 2 x 8 for q4_K (+13%), 2- and 1-column tiles for the leftover
 * tokens. One token (decode): 4 rows x 1 column, four weight streams in
 * flight (2 x 1 was ~35% slower, 8 x 1 no faster). Leftover rows by the 1-row tiles. */
#if KQ_Z
#define KQ_RB_Q4 4 /* rows of the 2- and 4-column tiles, per type */
#define KQ_RB_Q5 4
#define KQ_RB_Q6 4
#else
#define KQ_RB_Q4 2
#define KQ_RB_Q5 2
#define KQ_RB_Q6 2
#endif
#define KQ_RB1 4 /* rows of the 1-column tile */

#define KQ_TILES(DEF, RB) KQ_TILES_(DEF, RB) /* RB expanded first */
#define KQ_TILES_(DEF, RB)                                                                               \
    DEF(1, 1)                                                                                            \
    DEF(1, 2)                                                                                            \
    DEF(1, 4)                                                                                            \
    DEF(KQ_RB1, 1)                                                                                       \
    DEF(RB, 2)                                                                                           \
    DEF(RB, 4)

#define KQ_DEF_Q4(R, C) KQ_TILE_Q45(q4_K, block_q4_K, 0, R, C)
#define KQ_DEF_Q5(R, C) KQ_TILE_Q45(q5_K, block_q5_K, 1, R, C)
#define KQ_DEF_Q6(R, C) KQ_TILE_Q6(R, C)
KQ_TILES(KQ_DEF_Q4, KQ_RB_Q4)
KQ_TILES(KQ_DEF_Q5, KQ_RB_Q5)
#if KQ_Z
KQ_TILE_Q45_ROWS4(q4_K, block_q4_K, 0)
KQ_TILE_Q45_ROWS4(q5_K, block_q5_K, 1)
#define KQ_DECODE_q4_K tile_q4_K_rows4 /* the 4 x 1 tile: rows side by side */
#define KQ_DECODE_q5_K tile_q5_K_rows4
#define KQ_DECODE_q6_K KQ_TILE_FN(q6_K, KQ_RB1, 1)
#else
#define KQ_DECODE_q4_K KQ_TILE_FN(q4_K, KQ_RB1, 1)
#define KQ_DECODE_q5_K KQ_TILE_FN(q5_K, KQ_RB1, 1)
#define KQ_DECODE_q6_K KQ_TILE_FN(q6_K, KQ_RB1, 1)
#endif
KQ_TILES(KQ_DEF_Q6, KQ_RB_Q6)
/* 8 columns: each row's unpacked quants serve twice as many products (AVX2: q4_K only;
 * q5_K's fifth bits leave no registers for them) */
KQ_DEF_Q4(1, 8)
KQ_DEF_Q4(KQ_RB_Q4, 8)
#define KQ_C8_q4_K(R) KQ_TILE_FN(q4_K, R, 8)
#define KQ_CMAX_q4_K 8
#if KQ_Z
KQ_DEF_Q5(1, 8)
KQ_DEF_Q5(KQ_RB_Q5, 8)
KQ_DEF_Q6(1, 8)
KQ_DEF_Q6(KQ_RB_Q6, 8)
#define KQ_C8_q5_K(R) KQ_TILE_FN(q5_K, R, 8)
#define KQ_C8_q6_K(R) KQ_TILE_FN(q6_K, R, 8)
#define KQ_CMAX_q5_K 8
#define KQ_CMAX_q6_K 8
#else
#define KQ_C8_q5_K(R) 0
#define KQ_C8_q6_K(R) 0
#define KQ_CMAX_q5_K 4
#define KQ_CMAX_q6_K 4
#endif


#define KQ_TILE_FN(T, R, C) KQ_TILE_FN_(T, R, C) /* R, C expanded first */
#define KQ_TILE_FN_(T, R, C) tile_##T##_##R##x##C

#define KQ_GEMM(T, RB) KQ_GEMM_(T, RB) /* RB expanded first */
#define KQ_GEMM_(T, RB)                                                                                  \
    static void gemm_##T(int64_t n, const void *vw, size_t ldw, int nr, const void *va, size_t lda, int nc, \
                         float *y, size_t ldy) {                                                         \
        typedef void (*tile_fn)(int64_t, const char *, size_t, const char *, size_t, float *, size_t);   \
        static const tile_fn tiles[2][9] = {                                                             \
            {0, KQ_DECODE_##T, KQ_TILE_FN(T, RB, 2), 0, KQ_TILE_FN(T, RB, 4), 0, 0, 0, KQ_C8_##T(RB)}, \
            {0, KQ_TILE_FN(T, 1, 1), KQ_TILE_FN(T, 1, 2), 0, KQ_TILE_FN(T, 1, 4), 0, 0, 0, KQ_C8_##T(1)}};  \
        const int64_t nb = n / QK_K;                                                                     \
        const char *w = vw, *a = va;                                                                     \
        for (int c = 0; c < nc;) {                                                                       \
            const int cb = nc - c >= 8 && KQ_CMAX_##T >= 8 ? 8 : nc - c >= 4 ? 4 : nc - c >= 2 ? 2 : 1;  \
            const int rb = cb == 1 ? KQ_RB1 : RB;                                                        \
            int r = 0;                                                                                   \
            for (; r + rb <= nr; r += rb)                                                                \
                tiles[0][cb](nb, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy); \
            for (; r < nr; r++)                                                                          \
                tiles[1][cb](nb, w + (size_t)r * ldw, ldw, a + (size_t)c * lda, lda, y + (size_t)c * ldy + r, ldy); \
            c += cb;                                                                                     \
        }                                                                                                \
    }                                                                                                    \
    static float dot_##T(int64_t n, const void *w, const void *a) {                                      \
        float y;                                                                                         \
        tile_##T##_1x1(n / QK_K, w, 0, a, 0, &y, 1);                                                     \
        return y;                                                                                        \
    }

KQ_GEMM(q4_K, KQ_RB_Q4)
KQ_GEMM(q5_K, KQ_RB_Q5)
KQ_GEMM(q6_K, KQ_RB_Q6)
