/* context.c - sov_context: creating the KV pool, buffers and threads, managing
 * sequences, and sov_decode(), which validates a batch, reserves its KV blocks
 * (all or nothing) and runs the forward pass.
 *
 * The activation buffers of a batch live in one anonymous mapping (the arena): they hold
 * what the model computed from prompts, so the arena is kept out of core dumps and can be
 * locked in RAM as a whole (sov_context_lock_memory). Under AddressSanitizer the gaps
 * between buffers are poisoned, so an overrun is caught as it would be between heap
 * blocks. */
#include "model/context.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/status.h"
#include "core/util.h"
#include "model/encoder.h"
#include "kernels/attn_tiled.h"
#include "model/ops.h"
#include "sandbox/sandbox.h"
#include "tp/tp.h"

#if defined(__SANITIZE_ADDRESS__)
#define ARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_ASAN 1
#endif
#endif
#ifdef ARENA_ASAN
#include <sanitizer/asan_interface.h>
#endif

enum { KV_BLOCK_SIZE = 16 };

sov_context_params sov_context_default_params(void) {
    return (sov_context_params){
        .n_ctx = 0,
        .n_seq_max = 1,
        .n_batch = 512,
        .kv_cache_bytes = 0,
        .n_threads = 0,
        .kv_type = SOV_KV_DEFAULT,
        .kv_type_v = SOV_KV_DEFAULT,
    };
}

enum { ARENA_GAP = 64 }; /* bytes after each buffer: alignment, and a red zone under ASan */

/* One activation buffer to carve from the arena. */
typedef struct arena_buf {
    void **ptr;
    size_t bytes;
} arena_buf;

/* Maps one zeroed region for every buffer (each 64-byte aligned, a gap after each) and
 * points each at its place. False when the sizes overflow or the mapping fails. */
static bool arena_map(sov_context *c, const arena_buf *b, size_t n) {
    size_t total = ARENA_GAP;
    for (size_t i = 0; i < n; i++) {
        const size_t padded = (b[i].bytes + 63) & ~(size_t)63;
        if (padded < b[i].bytes || total + padded + ARENA_GAP < total) return false;
        total += padded + ARENA_GAP;
    }
    uint8_t *base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return false;
    sandbox_dontdump(base, total);
    c->arena = base;
    c->arena_bytes = total;
    size_t at = ARENA_GAP;
    for (size_t i = 0; i < n; i++) {
        const size_t padded = (b[i].bytes + 63) & ~(size_t)63;
        *b[i].ptr = base + at;
#ifdef ARENA_ASAN
        ASAN_POISON_MEMORY_REGION(base + at + b[i].bytes, padded - b[i].bytes + ARENA_GAP);
#endif
        at += padded + ARENA_GAP;
    }
#ifdef ARENA_ASAN
    ASAN_POISON_MEMORY_REGION(base, ARENA_GAP);
#endif
    return true;
}

static void arena_unmap(sov_context *c) {
    if (!c->arena) return;
#ifdef ARENA_ASAN
    ASAN_UNPOISON_MEMORY_REGION(c->arena, c->arena_bytes);
#endif
    munmap(c->arena, c->arena_bytes);
    c->arena = NULL;
}

/* YaRN's correction range: the dimensions whose wavelength crosses the original context
 * between beta_fast and beta_slow rotations. */
static float yarn_corr_dim(int n_dims, int n_ctx_orig, float n_rot, float base) {
    return (float)n_dims * logf((float)n_ctx_orig / (n_rot * 2.0f * (float)M_PI)) / (2.0f * logf(base));
}

sov_status sov_context_new(const sov_model *model, const sov_context_params *params, sov_context **out) {
    *out = NULL;
    const sov_hparams *hp = &model->hp;
    sov_context_params p = params ? *params : sov_context_default_params();
    const sov_context_params given = p; /* what the other ranks of a split model are sent */
    sov_tp *tp = model->tp;
    if (p.n_ctx < 0 || p.n_seq_max < 0 || p.n_batch < 0 || p.kv_cache_bytes < 0 || p.n_threads < 0)
        return sov_fail(SOV_ERR_ARG, "context: negative parameter");
    if (p.n_ctx == 0) p.n_ctx = SOV_MIN(hp->n_ctx_train, 4096);
    if (p.n_seq_max == 0) p.n_seq_max = 1;
    if (p.n_batch == 0) p.n_batch = 512;
    if (p.n_threads == 0) p.n_threads = sov_physical_cores();
    if ((unsigned)p.kv_type > SOV_KV_Q4_0 || (unsigned)p.kv_type_v > SOV_KV_Q4_0)
        return sov_fail(SOV_ERR_ARG, "context: bad kv_type");
    if (p.kv_type == SOV_KV_DEFAULT) p.kv_type = SOV_KV_F16;
    if (p.kv_type_v == SOV_KV_DEFAULT) p.kv_type_v = p.kv_type;
    if (p.n_ctx > (1 << 24) || p.n_seq_max > (1 << 16) || p.n_batch > (1 << 16) || p.n_threads > 1024)
        return sov_fail(SOV_ERR_ARG, "context: n_ctx, n_seq_max, n_batch or n_threads is too large");

    const size_t block_bytes =
        kv_block_bytes(hp->n_layer, hp->n_head_kv, hp->head_dim, KV_BLOCK_SIZE, p.kv_type, p.kv_type_v);
    if (block_bytes == 0)
        return sov_fail(SOV_ERR_ARG, "context: KV type %s/%s cannot hold a head of %d values (quantized types need "
                        "a multiple of 32 or a divisor of 32)", kv_type_name(p.kv_type), kv_type_name(p.kv_type_v),
                        hp->head_dim);
    int64_t n_blocks;
    if (p.kv_cache_bytes > 0) {
        /* split across R ranks, the pool's bytes are the whole model's: each rank holds
         * the same blocks for its 1/R of the KV heads (--ep: all the heads, a whole cache) */
        n_blocks = p.kv_cache_bytes / (tp_splits(tp, SOV_SPLIT_EXPERT) ? 1 : sov_tp_size(tp)) / (int64_t)block_bytes;
        /* --pp: every stage holds the same blocks for its own layers, so the count is the
         * whole model's (the stages' layer counts may differ by one) */
        if (tp_splits(tp, SOV_SPLIT_PIPELINE))
            n_blocks = p.kv_cache_bytes / (int64_t)kv_block_bytes(model->pp_n_layer, hp->n_head_kv, hp->head_dim,
                                                                  KV_BLOCK_SIZE, p.kv_type, p.kv_type_v);
        if (n_blocks < 1)
            return sov_fail(SOV_ERR_ARG, "context: a KV cache of %lld bytes holds no block (one is %zu bytes)",
                            (long long)p.kv_cache_bytes, block_bytes);
    } else {
        n_blocks = (int64_t)p.n_seq_max * ((p.n_ctx + KV_BLOCK_SIZE - 1) / KV_BLOCK_SIZE);
    }
    if (n_blocks > INT32_MAX / 2) return sov_fail(SOV_ERR_ARG, "context: KV cache too large");
    p.kv_cache_bytes = n_blocks * (int64_t)block_bytes;

    if (tp_root(tp) && !tp_context_open(tp)) return SOV_ERR_UNSUPPORTED;
    sov_context *c = calloc(1, sizeof *c);
    if (!c) {
        if (tp_root(tp)) tp_context_closed(tp);
        return sov_fail(SOV_ERR_NOMEM, "context: out of memory");
    }
    c->model = model;
    c->p = p;
    c->k = sov_kernels_select();
    c->n_threads = p.n_threads;
    sov_status st = sov_pool_new(p.n_threads, &c->pool);
    if (!st)
        st = kv_init_types(&c->kv, hp->n_layer, hp->n_head_kv, hp->head_dim, KV_BLOCK_SIZE, (int32_t)n_blocks,
                           p.kv_type, p.kv_type_v);
    if (st) {
        sov_context_free(c);
        return st;
    }

    const size_t T = (size_t)p.n_batch, E = (size_t)hp->n_embd, D = (size_t)hp->head_dim;
    /* F: the widest FFN, dense or shared expert */
    const size_t HD = (size_t)hp->n_head * D, KVD = (size_t)hp->n_head_kv * D,
                 F = (size_t)SOV_MAX(hp->n_ff, hp->n_ff_shexp);
    /* deepseek2 MLA (mla.c): all 0 for other models */
    const bool mla = hp->arch == SOV_ARCH_DEEPSEEK2;
    const size_t Hs = (size_t)hp->n_head, Qa = mla ? (size_t)hp->n_lora_q : 0;
    const size_t Dq = mla ? (size_t)hp->n_embd_head_qk : 0, Dv = mla ? (size_t)hp->n_embd_head_v : 0;
    const size_t Kh = mla ? (size_t)SOV_MAX(hp->n_embd_head_qk - hp->n_rot, hp->n_lora_kv) : 0;
    const size_t Kh256 = (Kh + 255) / 256 * 256;
    const size_t mla_act_row = mla ? SOV_MAX(SOV_MAX(sov_row_size(SOV_TYPE_Q8A, (int64_t)Kh256),
                                                     sov_row_size(SOV_TYPE_Q8K, (int64_t)Kh256)),
                                             sov_row_size(SOV_TYPE_Q8P, (int64_t)Kh256))
                                   : 0;
    const size_t maxK = SOV_MAX(SOV_MAX(SOV_MAX(E, F), HD), SOV_MAX(Qa, Hs * Dv));
    const size_t fl = sizeof(float), maxK256 = (maxK + 255) / 256 * 256;
    /* encoders (encoder.c): one row of scores per thread over an input's tokens */
    c->scores_stride = c->model->enc ? (size_t)p.n_ctx : 0;
    /* mixture of experts: R = T * k sorted rows (all sizes 0 for a dense model) */
    const size_t X = (size_t)hp->n_expert, R = T * (size_t)hp->n_expert_used, Fx = (size_t)hp->n_ff_exp;
    const size_t moeK = (SOV_MAX(E, Fx) + 255) / 256 * 256;
    const size_t moe_act_row = SOV_MAX(SOV_MAX(sov_row_size(SOV_TYPE_Q8A, (int64_t)moeK),
                                               sov_row_size(SOV_TYPE_Q8K, (int64_t)moeK)),
                                       sov_row_size(SOV_TYPE_Q8P, (int64_t)moeK));
    const int rep = hp->n_head / hp->n_head_kv;
    c->attn_scratch_stride = op_attention_scratch_floats(&c->kv, rep, hp->head_dim);
    const arena_buf bufs[] = {
        {(void **)&c->x, T * E * fl},
        {(void **)&c->xb, T * E * fl},
        {(void **)&c->q, T * HD * fl},
        {(void **)&c->kx, T * KVD * fl},
        {(void **)&c->vx, T * KVD * fl},
        {(void **)&c->att, T * HD * fl},
        {(void **)&c->hg, T * F * fl},
        {(void **)&c->hu, T * F * fl},
        {(void **)&c->tmp, T * E * fl},
        {(void **)&c->rope, T * (size_t)hp->n_rot * fl},
        {(void **)&c->rope_local, T * (size_t)hp->n_rot * fl},
        {&c->act_q8a, T * sov_row_size(SOV_TYPE_Q8A, (int64_t)maxK256)},
        {&c->act_q8k, T * sov_row_size(SOV_TYPE_Q8K, (int64_t)maxK256)},
        {&c->act_q8p, T * sov_row_size(SOV_TYPE_Q8P, (int64_t)maxK256)},
        {(void **)&c->scores, (size_t)p.n_threads * c->scores_stride * fl},
        {(void **)&c->moe_logits, T * X * fl},
        {(void **)&c->moe_sel, R * sizeof(int32_t)},
        {(void **)&c->moe_w, R * fl},
        {(void **)&c->moe_row, R * sizeof(int32_t)},
        {(void **)&c->moe_tok, R * sizeof(int32_t)},
        {(void **)&c->moe_start, (X + 1) * sizeof(int32_t)},
        {(void **)&c->moe_active, (X + 1) * sizeof(int32_t)},
        {(void **)&c->moe_x, R * E * fl},
        {(void **)&c->moe_g, R * Fx * fl},
        {(void **)&c->moe_u, R * Fx * fl},
        {&c->moe_act, R * moe_act_row},
        {(void **)&c->mla_qa, T * Qa * fl},
        {(void **)&c->mla_q, T * Hs * Dq * fl},
        {(void **)&c->mla_in, (mla ? Hs : 0) * T * Kh * fl},
        {&c->mla_act, (mla ? Hs : 0) * T * mla_act_row},
        {(void **)&c->mla_o, T * Hs * Dv * fl},
        {(void **)&c->attn_scratch, (size_t)p.n_threads * c->attn_scratch_stride * fl},
        {(void **)&c->attn_partials, op_attention_partials_floats(p.n_threads, rep, hp->head_dim) * fl},
    };
    const bool oom = !arena_map(c, bufs, SOV_ARRAY_LEN(bufs));
    c->seqs = calloc((size_t)p.n_seq_max, sizeof *c->seqs);
    c->tok_pos = malloc(T * sizeof *c->tok_pos);
    c->tok_blocks = malloc(T * sizeof *c->tok_blocks);
    c->attn_grp = malloc((T + 1) * sizeof *c->attn_grp);
    c->out_rows = malloc(T * sizeof *c->out_rows);
    c->embd_rows = malloc(T * sizeof *c->embd_rows);
    c->seq_next = malloc((size_t)p.n_seq_max * sizeof *c->seq_next);
    if (oom || !c->seq_next || !c->seqs || !c->tok_pos || !c->tok_blocks || !c->attn_grp || !c->out_rows || !c->embd_rows) {
        sov_context_free(c);
        return sov_fail(SOV_ERR_NOMEM, "context: out of memory for a batch of %d tokens", p.n_batch);
    }
    if (hp->rope_scaling == SOV_ROPE_SCALING_YARN) {
        const float lo = floorf(yarn_corr_dim(hp->n_rot, hp->rope_orig_ctx, hp->yarn_beta_fast, hp->rope_base));
        const float hi = ceilf(yarn_corr_dim(hp->n_rot, hp->rope_orig_ctx, hp->yarn_beta_slow, hp->rope_base));
        c->yarn_corr[0] = SOV_MAX(0.0f, lo);
        c->yarn_corr[1] = SOV_MIN((float)(hp->n_rot - 1), hi);
    }
    if (tp_root(tp)) {
        const int64_t a[TP_ARGS] = {given.n_ctx,    given.n_seq_max, given.n_batch,  given.kv_cache_bytes,
                                    given.n_threads, given.kv_type,  given.kv_type_v};
        tp_send(tp, TP_OP_CTX_NEW, a, NULL, 0);
        c->tp_sent = true;
        tp_agree(tp, c->kv.n_blocks, "the KV blocks of a new context"); /* the ranks' tables stay alike */
    }
    *out = c;
    return SOV_OK;
}

void sov_context_free(sov_context *c) {
    if (!c) return;
    if (c->tp_sent) tp_send(c->model->tp, TP_OP_CTX_FREE, NULL, NULL, 0);
    if (tp_root(c->model->tp)) tp_context_closed(c->model->tp);
    sov_pool_free(c->pool);
    if (c->seqs)
        for (int i = 0; i < c->p.n_seq_max; i++) free(c->seqs[i].blocks);
    free(c->seqs);
    if (c->kv.ref) kv_destroy(&c->kv);
    arena_unmap(c);
    free(c->tok_pos);
    free(c->tok_blocks);
    free(c->attn_grp);
    free(c->out_rows);
    free(c->embd_rows);
    free(c->seq_next);
    free(c);
}

const char *sov_context_isa(const sov_context *c) { return c->k->isa; }
int32_t sov_context_threads(const sov_context *c) { return c->n_threads; }

sov_status sov_context_lock_memory(sov_context *c) {
    const sov_model *m = c->model;
    const sandbox_region r[] = {
        {"weights", m->file->mapped ? m->file->base : NULL, m->file->size},
        {"repacked weights", m->repacked, m->repacked_bytes},
        {"weights (tp shard columns)", m->tp_copy, m->tp_copy_bytes},
        {"KV cache keys", c->kv.k, c->kv.map_bytes},
        {"KV cache values", c->kv.v, c->kv.v_map_bytes},
        {"activations", c->arena, c->arena_bytes},
    };
    return sandbox_lock_memory(r, SOV_ARRAY_LEN(r));
}

/* ---- sequences ---- */

/* Rank 0 of a split model: the same call goes to the other ranks (tp/tp.h). */
static void tp_mirror(const sov_context *c, tp_op op, int64_t a0, int64_t a1, const int32_t *payload, size_t n) {
    if (!c->tp_sent) return;
    const int64_t a[TP_ARGS] = {a0, a1};
    tp_send(c->model->tp, op, a, payload, n);
}

static kv_seq *live_seq(const sov_context *c, sov_seq_id id) {
    if (id < 0 || id >= c->p.n_seq_max || !c->seqs[id].live) return NULL;
    return &c->seqs[id];
}

sov_status sov_seq_new(sov_context *c, sov_seq_id *out) {
    for (int i = 0; i < c->p.n_seq_max; i++) {
        if (!c->seqs[i].live) {
            c->seqs[i].live = true;
            c->seqs[i].n_pos = 0;
            c->seqs[i].n_blocks = 0;
            tp_mirror(c, TP_OP_SEQ_NEW, i, 0, NULL, 0);
            *out = i;
            return SOV_OK;
        }
    }
    return sov_fail(SOV_ERR_KV_FULL, "context: all %d sequences are in use", c->p.n_seq_max);
}

void sov_seq_free(sov_context *c, sov_seq_id id) {
    kv_seq *s = live_seq(c, id);
    if (!s) return;
    tp_mirror(c, TP_OP_SEQ_FREE, id, 0, NULL, 0);
    kv_seq_clear(&c->kv, s);
    s->live = false;
}

int32_t sov_seq_length(const sov_context *c, sov_seq_id id) {
    const kv_seq *s = live_seq(c, id);
    return s ? s->n_pos : -1;
}

sov_status sov_seq_truncate(sov_context *c, sov_seq_id id, int32_t n_keep) {
    kv_seq *s = live_seq(c, id);
    if (!s) return sov_fail(SOV_ERR_ARG, "context: sequence %d does not exist", id);
    if (n_keep < 0) return sov_fail(SOV_ERR_ARG, "context: cannot keep %d positions", n_keep);
    kv_seq_truncate(&c->kv, s, n_keep);
    tp_mirror(c, TP_OP_SEQ_TRUNCATE, id, n_keep, NULL, 0);
    return SOV_OK;
}

/* ---- KV blocks ---- */

int32_t sov_kv_block_size(const sov_context *c) { return c->kv.block_size; }
int32_t sov_kv_blocks_total(const sov_context *c) { return c->kv.n_blocks; }
int32_t sov_kv_blocks_free(const sov_context *c) { return c->kv.n_free; }

int32_t sov_seq_blocks(const sov_context *c, sov_seq_id id, const int32_t **blocks) {
    const kv_seq *s = live_seq(c, id);
    if (!s) return -1;
    *blocks = s->blocks;
    return s->n_blocks;
}

static bool valid_block(const sov_context *c, int32_t b) { return b >= 0 && b < c->kv.n_blocks && c->kv.ref[b] > 0; }

sov_status sov_seq_attach_blocks(sov_context *c, sov_seq_id id, const int32_t *blocks, int32_t n) {
    kv_seq *s = live_seq(c, id);
    if (!s || s->n_pos != 0 || s->n_blocks != 0)
        return sov_fail(SOV_ERR_ARG, "context: sequence %d is unknown or not empty", id);
    if (n < 0 || (int64_t)n * c->kv.block_size > c->p.n_ctx)
        return sov_fail(SOV_ERR_ARG, "context: %d blocks do not fit the context of %d", n, c->p.n_ctx);
    for (int32_t i = 0; i < n; i++)
        if (!valid_block(c, blocks[i])) return sov_fail(SOV_ERR_ARG, "context: block %d is not allocated", blocks[i]);
    if (n > s->cap) {
        int32_t *p = realloc(s->blocks, (size_t)n * sizeof *p);
        if (!p) return sov_fail(SOV_ERR_NOMEM, "context: out of memory for a block table");
        s->blocks = p;
        s->cap = n;
    }
    for (int32_t i = 0; i < n; i++) {
        kv_retain(&c->kv, blocks[i]);
        s->blocks[i] = blocks[i];
    }
    s->n_blocks = n;
    s->n_pos = n * c->kv.block_size;
    tp_mirror(c, TP_OP_ATTACH, id, 0, blocks, (size_t)n);
    return SOV_OK;
}

void sov_kv_block_retain(sov_context *c, int32_t b) {
    if (!valid_block(c, b)) return;
    kv_retain(&c->kv, b);
    tp_mirror(c, TP_OP_RETAIN, b, 0, NULL, 0);
}

void sov_kv_block_release(sov_context *c, int32_t b) {
    if (!valid_block(c, b)) return;
    kv_release(&c->kv, b);
    tp_mirror(c, TP_OP_RELEASE, b, 0, NULL, 0);
}

int32_t sov_kv_block_refs(const sov_context *c, int32_t b) {
    return b >= 0 && b < c->kv.n_blocks ? c->kv.ref[b] : 0;
}

/* ---- decoding ---- */

sov_status sov_decode(sov_context *c, const sov_batch *b, float *logits_out) {
    return sov_decode_embd(c, b, logits_out, NULL, NULL);
}

sov_status sov_decode_embd(sov_context *c, const sov_batch *b, float *logits_out, const uint8_t *embd,
                           float *embd_out) {
    const int T = b ? b->n_tokens : 0;
    if (T < 1 || T > c->p.n_batch)
        return sov_fail(SOV_ERR_ARG, "decode: a batch must hold 1 to %d tokens, not %d", c->p.n_batch, T);
    if (!b->token || !b->seq || !b->pos)
        return sov_fail(SOV_ERR_ARG, "decode: batch token, seq and pos arrays are required");
    const int32_t n_vocab = c->model->hp.n_vocab;

    /* 1. validate: known tokens, live sequences, contiguous positions within n_ctx;
     *    seq_next[s] tracks the position sequence s continues at within this batch */
    int n_out = 0, n_embd_out = 0;
    for (int i = 0; i < T; i++)
        if (b->seq[i] >= 0 && b->seq[i] < c->p.n_seq_max) c->seq_next[b->seq[i]] = -1;
    for (int i = 0; i < T; i++) {
        if (b->token[i] < 0 || b->token[i] >= n_vocab)
            return sov_fail(SOV_ERR_ARG, "decode: token %d at batch index %d is outside the vocabulary (0..%d)",
                            b->token[i], i, n_vocab - 1);
        const kv_seq *s = live_seq(c, b->seq[i]);
        if (!s) return sov_fail(SOV_ERR_ARG, "decode: sequence %d at batch index %d does not exist", b->seq[i], i);
        const int32_t expect = c->seq_next[b->seq[i]] < 0 ? s->n_pos : c->seq_next[b->seq[i]];
        c->seq_next[b->seq[i]] = expect + 1;
        if (b->pos[i] != expect)
            return sov_fail(SOV_ERR_ARG, "decode: token at batch index %d has position %d; sequence %d continues at %d",
                            i, b->pos[i], b->seq[i], expect);
        if (b->pos[i] >= c->p.n_ctx)
            return sov_fail(SOV_ERR_CONTEXT, "decode: sequence %d would pass the context length %d", b->seq[i],
                            c->p.n_ctx);
        if (b->logits && b->logits[i]) c->out_rows[n_out++] = i;
        if (embd && embd[i]) c->embd_rows[n_embd_out++] = i;
    }
    if (n_out > 0 && !logits_out) return sov_fail(SOV_ERR_ARG, "decode: logits requested but no output buffer");
    if (c->model->enc) { /* encoders: whole inputs, no logits (encoder.h) */
        const sov_status st = encoder_check_batch(c, b, n_out);
        if (st) return st;
    }
    if (n_embd_out > 0 && !embd_out)
        return sov_fail(SOV_ERR_ARG, "decode: hidden states requested but no output buffer");

    /* 2. reserve KV blocks for every sequence, all or nothing */
    int32_t needed = 0;
    for (int i = 0; i < T; i++) {
        const sov_seq_id id = b->seq[i];
        if (c->seq_next[id] < 0) continue; /* counted already */
        needed += kv_seq_blocks_needed(&c->kv, &c->seqs[id], c->seq_next[id]);
        c->seq_next[id] = -1;
    }
    if (needed > c->kv.n_free)
        return sov_fail(SOV_ERR_KV_FULL, "decode: the batch needs %d KV blocks, %d are free", needed, c->kv.n_free);
    for (int i = 0; i < T; i++) {
        kv_seq *s = &c->seqs[b->seq[i]];
        sov_status st = kv_seq_reserve(&c->kv, s, b->pos[i] + 1);
        if (st && c->tp_sent) tp_fatal(c->model->tp, "%s (the ranks' KV tables would differ)", sov_last_error());
        if (st) return st; /* only on out-of-memory for a block table */
    }
    for (int i = 0; i < T; i++) {
        c->tok_pos[i] = b->pos[i];
        c->tok_blocks[i] = c->seqs[b->seq[i]].blocks;
    }
    if (c->tp_sent) tp_send_decode(c->model->tp, b, embd); /* the batch is valid: every rank runs it */

    /* 3. run, then the sequences hold the new positions */
    if (c->model->enc) {
        const sov_status st = encoder_forward(c, b, n_embd_out, embd_out);
        if (st) return st;
    } else {
        sov_forward(c, b, n_out, logits_out, n_embd_out, embd_out);
    }
    for (int i = 0; i < T; i++) {
        kv_seq *s = &c->seqs[b->seq[i]];
        if (b->pos[i] + 1 > s->n_pos) s->n_pos = b->pos[i] + 1;
    }
    return SOV_OK;
}
