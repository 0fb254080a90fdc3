/* ops.h - the operations of a forward pass, each run by all threads of the pool job.
 *
 * Every op splits its work by (ith, nth), calls the kernel table for the arithmetic,
 * and ends with a barrier, so the forward pass reads as a straight line of ops with no
 * threading in sight. */
#ifndef SOV_MODEL_OPS_H
#define SOV_MODEL_OPS_H

#include "model/context.h"

typedef struct op_thread {
    sov_context *c;
    int ith, nth;
} op_thread;

/* y(T, n) = rmsnorm(x(T, n)) * w */
void op_rmsnorm(const op_thread *t, float *y, const float *x, const float *w, int T, int64_t n);

/* One matrix product of a batch: y(T, W.n_rows) = x(T, W.n_cols) W^T (+ bias), or
 * y += that when accumulate. */
typedef struct op_matmul {
    const sov_weight *w;
    float *y;
    const float *bias; /* (n_rows) or NULL */
    bool accumulate;
} op_matmul;

/* Runs several products that share the input x (e.g. q, k, v): x is quantized once per
 * activation format and the rows of all products are split across the threads. */
void op_matmuls(const op_thread *t, const float *x, int T, const op_matmul *mm, int n_mm);

/* RoPE on (T, n_heads*D) rows in place, with the cos/sin cache of the batch. */
void op_rope(const op_thread *t, float *x, int T, int n_heads);
/* The same with a given cos/sin cache (c->rope or c->rope_local). */
void op_rope_with(const op_thread *t, float *x, int T, int n_heads, const float *cache);
/* Fills the cos/sin cache for the batch's positions (and the local layers' cache when a
 * layer uses it). */
void op_rope_cache(const op_thread *t, const int32_t *pos, int T);

/* Writes the batch's new keys and values of a layer into the cache. */
void op_kv_store(const op_thread *t, int layer, const float *k, const float *v, int T);

/* Causal grouped-query attention of the batch's queries over each token's sequence in
 * the cache (positions 0..pos; pos-n_swa+1..pos on a sliding-window layer: the cache
 * keeps every position, the window skips the tiles before it and masks the rest), scaled
 * by hp.attn_scale, into out (T, H*D): tiled online softmax (kernels/attn_tiled.h), split
 * across threads by positions (split-K) when the batch has few (token, kv head) tasks. */
void op_attention(const op_thread *t, int layer, const float *q, float *out, int T);
/* Floats of split-K partial states op_attention needs (context.c allocates them). */
size_t op_attention_partials_floats(int n_threads, int rep, int head_dim);
/* How many consecutive tokens of one sequence (a prompt) share one pass over their keys
 * and values in op_attention: rep query heads each, up to 16 rows, by fours where that
 * costs nothing (the score and value kernels take 8, 4 and 1 rows at a time). */
int op_attention_group(int rep);
/* Floats of per-thread attention scratch (the context allocates n_threads of them). */
size_t op_attention_scratch_floats(const sov_kv *kv, int rep, int head_dim);

/* y(T, n) = silu(y) * x */
void op_silu_mul(const op_thread *t, float *y, const float *x, int T, int64_t n);
/* y(T, n) = gelu_tanh(y) * x */
void op_gelu_mul(const op_thread *t, float *y, const float *x, int T, int64_t n);
/* y(T, n) += x(T, n) */
void op_add(const op_thread *t, float *y, const float *x, int T, int64_t n);

/* Embedding rows of the tokens into x (T, E), times hp.embd_scale. */
void op_embed(const op_thread *t, float *x, const int32_t *tokens, int T);

/* Copies rows rows[0..n) of src (*, E) to dst (n, E). */
void op_gather(const op_thread *t, float *dst, const float *src, const int32_t *rows, int n, int64_t E);

#endif
