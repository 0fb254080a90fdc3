/* attn_tiled.c - tiled online-softmax attention over the paged KV cache (see attn_tiled.h).
 * Plain C over the kernel table: the arithmetic is in the table's kernels, so this one
 * file serves every ISA (and is compiled into the kernel-only Arm build). */
#include "kernels/attn_tiled.h"

#include <math.h>
#include <string.h>

#include "core/util.h"
#include "kernels/kv_quant_impl.h"

/* scratch: scores (rep, KV_ATTN_TILE), then dequantized keys (D, block_size: transposed)
 * and values (block_size, D) of one block; the values' room also takes the keys' rows
 * before they are transposed (scores of a tile come before its values) */
size_t kv_attn_scratch_floats(const sov_kv *kv, int rep) {
    /* + the quantized query rows of the integer scores: rep * D int8 codes, and per group
     * of 32 a scale and a code sum */
    const size_t qrows = (size_t)rep * ((size_t)kv->head_dim / 4 + 2 * ((size_t)kv->head_dim / 32 + 1));
    return (size_t)rep * KV_ATTN_TILE + 2 * (size_t)kv->block_size * (size_t)kv->head_dim + qrows;
}

/* The query rows quantized for the table's integer scores of Q8_0 / Q4_0 keys, when it
 * has them and the keys' groups are 32 (d a multiple of 32) */
typedef struct {
    const int8_t *qq;
    const float *qd;
    const int32_t *qs;
} query_q8;

void kv_attn_state_init(float *state, int rep, int head_dim) {
    const size_t od = (size_t)rep * (size_t)head_dim;
    memset(state, 0, od * sizeof(float));
    for (int h = 0; h < rep; h++) {
        state[od + (size_t)h] = -INFINITY;
        state[od + (size_t)rep + (size_t)h] = 0.0f;
    }
}

/* Dequantizes n rows of a quantized head block into dst (n, D). */
static void dequant_rows(const sov_kernels *k, sov_kv_type type, const uint8_t *src, size_t row, int n, int D,
                         int g, float *dst) {
    for (int j = 0; j < n; j++) {
        if (type == SOV_KV_Q8_0)
            k->kv_dequant_q8_0(src + (size_t)j * row, dst + (size_t)j * D, D, g);
        else
            k->kv_dequant_q4_0(src + (size_t)j * row, dst + (size_t)j * D, D, g);
    }
}

/* sc[h * KV_ATTN_TILE + j] = scale * q_h . k_j for the first n slots of one block */
static void block_scores(const sov_kernels *k, const sov_kv *kv, const void *K, int n, const float *q,
                         const query_q8 *qi, int rep, float scale, float *sc, float *kbuf, float *tmp,
                         const void *ahead) {
    const int D = kv->head_dim, bs = kv->block_size;
    if (qi->qq) {
        if (kv->type == SOV_KV_Q8_0)
            k->attn_scores_q8_0(sc, KV_ATTN_TILE, qi->qq, qi->qd, qi->qs, rep, K, kv->k_row, n, D, scale, ahead);
        else
            k->attn_scores_q4_0(sc, KV_ATTN_TILE, qi->qq, qi->qd, qi->qs, rep, K, kv->k_row, n, D, scale, ahead);
        return;
    }
    switch (kv->type) {
    case SOV_KV_DEFAULT: return; /* resolved before kv_init */
    case SOV_KV_F16: k->attn_scores_f16(sc, KV_ATTN_TILE, q, rep, K, n, bs, D, scale, ahead); return;
    case SOV_KV_F32: k->attn_scores_f32(sc, KV_ATTN_TILE, q, rep, K, n, bs, D, scale); return;
    case SOV_KV_Q8_0:
    case SOV_KV_Q4_0:
        /* rows to floats, transposed as float keys are (the slots past n, which the kernel
         * may read but not use, zero), then the multi-head kernel */
        (void)tmp;
        if (kv->type == SOV_KV_Q8_0) k->kv_dequant_t_q8_0(K, kv->k_row, n, kbuf, bs, D, kv->group);
        else k->kv_dequant_t_q4_0(K, kv->k_row, n, kbuf, bs, D, kv->group);
        k->attn_scores_f32(sc, KV_ATTN_TILE, q, rep, kbuf, n, bs, D, scale);
        return;
    }
}

typedef void (*fused_values_fn)(float *, const float *, size_t, int, const void *, size_t, int, int, const void *);

/* The table's fused kernel for this cache's quantized values where it has one and the
 * groups suit it (the same sums as dequantizing, no rows in memory), else NULL */
static fused_values_fn fused_values(const sov_kernels *k, const sov_kv *kv) {
    const fused_values_fn f = kv->v_type == SOV_KV_Q8_0   ? k->attn_values_q8_0
                              : kv->v_type == SOV_KV_Q4_0 ? k->attn_values_q4_0
                                                          : NULL;
    return f && kv->group == 32 && kv->head_dim % 32 == 0 ? f : NULL;
}

/* o_h += sum_j p[h * KV_ATTN_TILE + j] v_j over the first n slots of one block */
static void block_values(const sov_kernels *k, const sov_kv *kv, const void *V, int n, const float *p,
                         int rep, float *o, float *vbuf, const void *ahead) {
    const int D = kv->head_dim;
    switch (kv->v_type) {
    case SOV_KV_DEFAULT: return;
    case SOV_KV_F16: k->attn_values_f16(o, p, KV_ATTN_TILE, rep, V, n, D, ahead); return;
    case SOV_KV_F32: k->attn_values_f32(o, p, KV_ATTN_TILE, rep, V, n, D); return;
    case SOV_KV_Q8_0:
    case SOV_KV_Q4_0: {
        const fused_values_fn fused = fused_values(k, kv);
        if (fused) {
            fused(o, p, KV_ATTN_TILE, rep, V, kv->v_row, n, D, ahead);
            return;
        }
        dequant_rows(k, kv->v_type, V, kv->v_row, n, D, kv->group, vbuf);
        k->attn_values_f32(o, p, KV_ATTN_TILE, rep, vbuf, n, D);
        return;
    }
    }
}

/* Head g's keys (or values) in the block holding position pos of the sequence, NULL
 * when pos is past the range's end j1 */
static const char *block_at(const sov_kv *kv, int layer, int g, const int32_t *blocks, int32_t pos, int32_t j1,
                            bool keys) {
    if (pos >= j1) return NULL;
    const int32_t blk = blocks[pos / kv->block_size];
    return keys ? (const char *)kv_k(kv, layer, blk, g) : (const char *)kv_v(kv, layer, blk, g);
}

/* The tile after this one is fetched while this one is computed: block by block as the
 * kernels go, where they take the block ahead (kernels.h "ahead": f16 keys, Q8_0 / Q4_0
 * keys with integer scores, f16 values, fused Q8_0 / Q4_0 values), else in one burst here.
 * Spread, the prefetches leave the fmas room: a burst of 256 of them (a tile's keys and
 * values) waits on the core's fill buffers, and so does the compute behind it (TinyLlama
 * shape, depth 16,384, t=2: f16 cache 20.0-20.8 tokens/s with the burst, 24.5-25.5
 * spread; q8_0 23.8-23.9 against 26.8-28.9). Without any, the hardware's prefetchers follow
 * a head's ascending stream (kv.h) but restart at each 4 KiB page; where the blocks are
 * scattered (a pool after many requests) the prefetches are what keeps the reads ahead. */
static void prefetch_tile(const sov_kv *kv, int layer, int g, const int32_t *blocks, int32_t t0, int32_t j1,
                          int32_t tile, bool keys) {
    const size_t bytes = keys ? kv->head_bytes : kv->v_head_bytes;
    for (int32_t b0 = t0; b0 < SOV_MIN(t0 + tile, j1); b0 += kv->block_size) {
        const char *p = block_at(kv, layer, g, blocks, b0, j1, keys);
        for (size_t at = 0; at < bytes; at += 64) __builtin_prefetch(p + at, 0, 3);
    }
}

void kv_attn_run(const sov_kernels *k, const sov_kv *kv, int layer, int g, const int32_t *blocks, int32_t j0,
                 int32_t j1, const float *q, int rep, const int32_t *row_end, float scale, float *scratch,
                 float *state) {
    const int D = kv->head_dim, bs = kv->block_size;
    float *sc = scratch, *kbuf = scratch + (size_t)rep * KV_ATTN_TILE, *vbuf = kbuf + (size_t)bs * D;
    float *o = state, *m = state + (size_t)rep * D, *l = m + rep;
    const int32_t tile = SOV_MAX(1, KV_ATTN_TILE / bs) * bs; /* whole blocks */
    query_q8 qi = {0};
    const bool int_keys = kv->type == SOV_KV_Q8_0 ? k->attn_scores_q8_0 != NULL
                          : kv->type == SOV_KV_Q4_0 && k->attn_scores_q4_0 != NULL;
    if (int_keys && kv->group == 32 && D % 32 == 0) {
        float *qf = vbuf + (size_t)bs * D; /* past the values' room: kv_attn_scratch_floats */
        int8_t *qq = (int8_t *)qf;
        float *qd = qf + (size_t)rep * D / 4;
        int32_t *qs = (int32_t *)(qd + (size_t)rep * (D / 32));
        kvq_quantize_query(q, rep, D, qq, qd, qs);
        qi = (query_q8){qq, qd, qs};
    }
    /* the kernels that take the tile ahead prefetch it themselves; the other kernels' tiles
     * come in one burst (prefetch_tile) */
    const bool k_spread = kv->type == SOV_KV_F16 || qi.qq != NULL;
    const bool v_spread = kv->v_type == SOV_KV_F16 || fused_values(k, kv) != NULL;
    for (int32_t t0 = j0 / bs * bs; t0 < j1; t0 += tile) {
        const int32_t tn = SOV_MIN(tile, j1 - t0); /* positions t0..t0+tn-1 of this tile */
        /* the next tile's keys and values now: the values used to follow this tile's
         * scores, half a tile's time later; asked for together they came in time
         * (TinyLlama-shaped Q4_0 at depth 8,192, t=2, on a Xeon: tg 23.9 -> 26.1 tokens/s
         * with the f16 cache, 27.5 -> 30.2 with q8_0) */
        if (!k_spread) prefetch_tile(kv, layer, g, blocks, t0 + tile, j1, tile, true);
        if (!v_spread) prefetch_tile(kv, layer, g, blocks, t0 + tile, j1, tile, false);
        /* 1. scores of the tile */
        for (int32_t b0 = 0; b0 < tn; b0 += bs) {
            const int32_t blk = blocks[(t0 + b0) / bs];
            if (kv->type == SOV_KV_F16 && k->attn_scores2_f16 && tn - b0 > bs) { /* two blocks at once */
                /* the same two blocks of the next tile: both, or neither (kernels.h) */
                const int32_t a = t0 + tile + b0;
                const bool both = a + bs < j1;
                k->attn_scores2_f16(sc + b0, KV_ATTN_TILE, q, rep, kv_k(kv, layer, blk, g),
                                    kv_k(kv, layer, blocks[(t0 + b0) / bs + 1], g), SOV_MIN(2 * bs, tn - b0), bs, D,
                                    scale, both ? (const sov_half *)block_at(kv, layer, g, blocks, a, j1, true) : NULL,
                                    both ? (const sov_half *)block_at(kv, layer, g, blocks, a + bs, j1, true) : NULL);
                b0 += bs;
                continue;
            }
            /* with the same block of the next tile */
            block_scores(k, kv, kv_k(kv, layer, blk, g), SOV_MIN(bs, tn - b0), q, &qi, rep, scale, sc + b0,
                         kbuf, vbuf, k_spread ? block_at(kv, layer, g, blocks, t0 + tile + b0, j1, true) : NULL);
        }
        /* positions before j0 in the first block (a window's start), past a row's own end,
         * and the slots past the tile's end take no weight */
        for (int h = 0; h < rep; h++) {
            float *s = sc + (size_t)h * KV_ATTN_TILE;
            for (int32_t j = t0; j < j0; j++) s[j - t0] = -INFINITY;
            const int32_t end = row_end ? SOV_MIN(row_end[h] - t0, tn) : tn;
            for (int32_t j = SOV_MAX(end, 0); j < tile; j++) s[j] = -INFINITY;
        }
        /* 2. online softmax: rescale the state to the new maximum, weights e^(s - m') */
        for (int h = 0; h < rep; h++) {
            float *s = sc + (size_t)h * KV_ATTN_TILE;
            const float mt = k->max_f32(s, tn);
            const float mn = mt > m[h] ? mt : m[h];
            if (mn == -INFINITY) { /* every position so far masked */
                memset(s, 0, (size_t)tn * sizeof(float));
                continue;
            }
            if (m[h] != mn) {
                const float corr = m[h] == -INFINITY ? 0.0f : expf(m[h] - mn);
                l[h] *= corr;
                k->scale(o + (size_t)h * D, corr, D);
                m[h] = mn;
            }
            l[h] += k->exp_sum(s, tile, mn); /* the whole tile: see kv_attn_run in the header */
        }
        /* 3. o += weights x values */
        for (int32_t b0 = 0; b0 < tn; b0 += bs) {
            const int32_t blk = blocks[(t0 + b0) / bs];
            block_values(k, kv, kv_v(kv, layer, blk, g), SOV_MIN(bs, tn - b0), sc + b0, rep, o, vbuf,
                         v_spread ? block_at(kv, layer, g, blocks, t0 + tile + b0, j1, false) : NULL);
        }
    }
}

void kv_attn_merge(const float *states, int n, int rep, int head_dim, float *out) {
    kv_attn_merge_rows(states, n, rep, head_dim, 0, rep, out);
}

void kv_attn_merge_rows(const float *states, int n, int rep, int head_dim, int h0, int nh, float *out) {
    const size_t sf = kv_attn_state_floats(rep, head_dim), od = (size_t)rep * (size_t)head_dim;
    out -= (size_t)h0 * (size_t)head_dim;
    for (int h = h0; h < h0 + nh; h++) {
        float M = -INFINITY;
        for (int s = 0; s < n; s++)
            M = SOV_MAX(M, states[(size_t)s * sf + od + (size_t)h]);
        float *y = out + (size_t)h * head_dim;
        memset(y, 0, (size_t)head_dim * sizeof(float));
        if (M == -INFINITY) continue;
        float L = 0.0f;
        for (int s = 0; s < n; s++) {
            const float *st = states + (size_t)s * sf;
            const float ms = st[od + (size_t)h];
            if (ms == -INFINITY) continue;
            const float w = expf(ms - M);
            L += w * st[od + (size_t)rep + (size_t)h];
            const float *o = st + (size_t)h * head_dim;
            for (int i = 0; i < head_dim; i++)
                y[i] += w * o[i];
        }
        const float inv = 1.0f / L;
        for (int i = 0; i < head_dim; i++)
            y[i] *= inv;
    }
}

void kv_attn_store(const sov_kernels *k, sov_kv *kv, int layer, int32_t blk, int j, int g, const float *key,
                   const float *value) {
    const int D = kv->head_dim, bs = kv->block_size;
    uint8_t *kb = kv_k(kv, layer, blk, g), *vb = kv_v(kv, layer, blk, g);
    /* K: float types transposed (dimension i of slot j at i * bs + j), quantized by slot */
    switch (kv->type) {
    case SOV_KV_DEFAULT: break;
    case SOV_KV_F16:
        for (int i = 0; i < D; i++)
            ((sov_half *)kb)[(size_t)i * bs + j] = sov_f32_to_half(key[i]);
        break;
    case SOV_KV_F32:
        for (int i = 0; i < D; i++)
            ((float *)kb)[(size_t)i * bs + j] = key[i];
        break;
    case SOV_KV_Q8_0: k->kv_quantize_q8_0(key, kb + (size_t)j * kv->k_row, D, kv->group); break;
    case SOV_KV_Q4_0: k->kv_quantize_q4_0(key, kb + (size_t)j * kv->k_row, D, kv->group); break;
    }
    uint8_t *vs = vb + (size_t)j * kv->v_row;
    switch (kv->v_type) {
    case SOV_KV_DEFAULT: break;
    case SOV_KV_F16: k->f32_to_f16((sov_half *)vs, value, D); break;
    case SOV_KV_F32: memcpy(vs, value, (size_t)D * sizeof(float)); break;
    case SOV_KV_Q8_0: k->kv_quantize_q8_0(value, vs, D, kv->group); break;
    case SOV_KV_Q4_0: k->kv_quantize_q4_0(value, vs, D, kv->group); break;
    }
}
