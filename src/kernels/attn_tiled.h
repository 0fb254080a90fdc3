/* attn_tiled.h - attention over the paged KV cache as one pass of online softmax.
 *
 * For the rep query heads that share KV head g (grouped-query attention) and a range of
 * cached positions [j0, j1), kv_attn_run() walks the sequence's blocks a tile of
 * KV_ATTN_TILE positions at a time: scores of the tile (rep x tile floats, never a row
 * of the whole context), then the running state of every head is updated
 *     m' = max(m, max_j s_j)            running maximum of the scores
 *     l' = l e^(m - m') + sum_j e^(s_j - m')
 *     o' = o e^(m - m') + sum_j e^(s_j - m') v_j
 * and at the end out = o / l: softmax(q K^T * scale) V without a score matrix in memory.
 * Partial states of disjoint ranges merge exactly (kv_attn_merge: rescale each by
 * e^(m_s - max m) and add), which is how one long sequence is split across threads
 * (split-K, ops.c). Keys and values are read in their cached type (kv.h): F16/F32 by
 * the attention kernels directly, Q8_0/Q4_0 dequantized block by block into scratch —
 * except Q8_0/Q4_0 keys where the table has integer scores (attn_scores_q8_0 / _q4_0:
 * AVX-512 VNNI): the query rows are then quantized once per call, as Q8_0 rows are
 * (kvq_quantize_query), and scored against the codes with int8 products, as llama.cpp
 * scores quantized keys. */
#ifndef SOV_KERNELS_ATTN_TILED_H
#define SOV_KERNELS_ATTN_TILED_H

#include "kernels/kernels.h"
#include "kv/kv.h"

enum { KV_ATTN_TILE = 64 }; /* positions per online-softmax step (a multiple of the block size 16) */

/* The running state of rep heads: o (rep, D), then m (rep), then l (rep). */
static inline size_t kv_attn_state_floats(int rep, int head_dim) {
    return (size_t)rep * ((size_t)head_dim + 2);
}

/* Floats of scratch kv_attn_run needs for rep heads of this cache. */
size_t kv_attn_scratch_floats(const sov_kv *kv, int rep);

/* Empty state: o = 0, m = -inf, l = 0. */
void kv_attn_state_init(float *state, int rep, int head_dim);

/* Adds positions [j0, j1) of a sequence (block table blocks) to the state of the rep
 * query heads q (rep, D) of KV head g in layer. scratch: kv_attn_scratch_floats.
 * row_end: NULL, or per query row the end (exclusive) of the positions it may see, which
 * may be below j1: consecutive tokens of one sequence share a call (a prompt's causal
 * mask), each row then getting exactly the state it would get alone. The weights of a
 * tile are computed over the whole tile (KV_ATTN_TILE slots or one block, those past the
 * row's end masked) whatever its length, so a row's sums never depend on where the call ends. */
void kv_attn_run(const sov_kernels *k, const sov_kv *kv, int layer, int g, const int32_t *blocks, int32_t j0,
                 int32_t j1, const float *q, int rep, const int32_t *row_end, float scale, float *scratch,
                 float *state);

/* out (rep, D) = the attention of n states of disjoint ranges (each kv_attn_state_floats
 * apart); heads that saw no position get zeros. */
void kv_attn_merge(const float *states, int n, int rep, int head_dim, float *out);
/* The same for rows h0 .. h0 + nh - 1 of the states only, into out (nh, D). */
void kv_attn_merge_rows(const float *states, int n, int rep, int head_dim, int h0, int nh, float *out);

/* Writes one position's key and value (head_dim floats each) of KV head g in layer
 * into slot j of block blk, converting to the cache's types. */
void kv_attn_store(const sov_kernels *k, sov_kv *kv, int layer, int32_t blk, int j, int g, const float *key,
                   const float *value);

#endif
