/* forward.c - the transformer forward pass of llama, mistral, qwen2, qwen3, gemma3, phi3 and
 * exaone4, and the mixture-of-experts forms (Mixtral, qwen3moe, qwen2moe, deepseek2), over a
 * batch.
 *
 * A batch holds T tokens, possibly of several sequences; each token carries its position
 * and its sequence's block table (context.h), so every op below works on (T, ...) rows
 * and only attention looks at sequences. The pass is one job on the thread pool: every
 * thread runs this function, and the ops split their work and synchronise (ops.c).
 *
 *   x = embed(tokens) * embd_scale                     (T, E)   sqrt(E) for gemma3, else 1
 *   per layer:
 *     xb = rmsnorm(x) * attn_norm                      (exaone4: no pre-norm, xb = x)
 *     q, k, v = xb Wq^T (+bq), xb Wk^T (+bk), xb Wv^T (+bv)   (phi3: views of one fused attn_qkv)
 *     q, k = rmsnorm(each head of q) * q_norm, ... * k_norm   (qwen3(moe), gemma3, exaone4)
 *     rope(q), rope(k); cache <- k, v                  (the layer's RoPE: global, local base, or none)
 *     att = softmax(q k^T * attn_scale) v              causal, grouped-query; a sliding-window
 *                                                      layer sees only the last n_swa positions
 *     x += att Wo^T                                    (gemma3, exaone4: rmsnorm(att Wo^T) * attn_post_norm)
 *       deepseek2: multi-head latent attention over a latent cache instead (mla.c)
 *     xb = rmsnorm(x) * ffn_norm                       (exaone4: xb = x)
 *     x += (act(xb Wgate^T) * (xb Wup^T)) Wdown^T      act silu, or gelu_tanh (gemma3); post-norm as above
 *       or, in a layer with experts, the weighted sum of its k experts' FFNs (moe.c),
 *       plus a shared expert where the layer has one (qwen2moe, deepseek2: moe_shared.c);
 *       A.X K1 (deepseek2 with post_ffw_norm): x += rmsnorm(routed + shared) * ffn_post_norm
 *   hidden = rmsnorm(x[rows wanted]) * out_norm        (embeddings stop here)
 *   logits = hidden Wout^T                             (only for rows asking for logits)
 *
 * deepseek2's MTP blocks (the last nextn_predict_layers) are not run here: sov_mtp_logits,
 * at the end of this file, runs one over given hidden states.
 *
 * Split across ranks (tp/tp.h), each rank computes its heads and FFN units, and the two
 * products that join the residual (att Wo^T, ... Wdown^T) are summed across the ranks
 * before they do: block_output. Split into pipeline stages (--pp), each rank runs its
 * layers over micro-batches between a receive and a send: pp_forward_thread.
 */
#include <math.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "model/context.h"
#include "model/mla.h"
#include "model/moe.h"
#include "model/moe_shared.h"
#include "model/ops.h"
#include "quant/quant.h"
#include "tp/tp.h"

typedef struct forward_job {
    sov_context *c;
    const sov_batch *b;
    int n_out;
    float *logits; /* (n_out, n_vocab) */
    int n_embd_out;
    float *embd;   /* (n_embd_out, E) final hidden states */
    float *pp_rows;/* --pp, rank 0 and the last stage: (n_out + n_embd_out, E) the rows wanting
                      outputs, as they leave the last layer */
} forward_job;

/* The cos/sin cache of a layer's RoPE, or NULL when it has none. */
static const float *layer_rope(const sov_context *c, const sov_layer *L) {
    return L->rope == SOV_LAYER_ROPE_NONE ? NULL : L->rope == SOV_LAYER_ROPE_LOCAL ? c->rope_local : c->rope;
}

/* x += post_norm ? rmsnorm(y) * post_norm : y, where y (T, E) is `out` of a block;
 * without a post-norm the product accumulates into x directly. */
static void block_output(const op_thread *t, const sov_weight *w, const float *in, int T, const float *post_norm) {
    sov_context *c = t->c;
    if (tp_splits(c->model->tp, SOV_SPLIT_TENSOR)) {
        /* split across ranks (tp/shard.c): each holds a partial y; the sum, added in rank
         * order by one thread, joins the residual once, after the post-norm if any */
        const op_matmul mm = {w, c->xb, NULL, false};
        op_matmuls(t, in, T, &mm, 1);
        if (t->ith == 0) tp_allreduce(c->model->tp, c->xb, (size_t)T * (size_t)c->model->hp.n_embd);
        sov_pool_barrier(c->pool);
        if (post_norm) op_rmsnorm(t, c->xb, c->xb, post_norm, T, c->model->hp.n_embd);
        op_add(t, c->x, c->xb, T, c->model->hp.n_embd);
        return;
    }
    if (!post_norm) {
        const op_matmul mm = {w, c->x, NULL, true};
        op_matmuls(t, in, T, &mm, 1);
        return;
    }
    /* gemma3, exaone4: normalise the block's output before it joins the residual */
    const op_matmul mm = {w, c->xb, NULL, false};
    op_matmuls(t, in, T, &mm, 1);
    op_rmsnorm(t, c->xb, c->xb, post_norm, T, c->model->hp.n_embd);
    op_add(t, c->x, c->xb, T, c->model->hp.n_embd);
}

static void attention(const op_thread *t, const sov_layer *L, int il, const float *in, int T);
static void ffn(const op_thread *t, const sov_layer *L, int il, int T);

/* y (T, n) = 0, or = x when x is not NULL. */
static void rows_set(const op_thread *t, float *y, const float *x, int T, int64_t n) {
    long b, e;
    sov_split_range(T, 1, t->ith, t->nth, &b, &e);
    for (long i = b; i < e; i++) {
        if (x) memcpy(y + i * n, x + i * n, (size_t)n * sizeof(float));
        else memset(y + i * n, 0, (size_t)n * sizeof(float));
    }
    sov_pool_barrier(t->c->pool);
}

/* One block. cached: attention over the KV cache (the forward pass); else among the
 * batch's rows (deepseek2 MTP blocks, which have no cache). */
static void layer_forward(const op_thread *t, int il, int T, bool cached) {
    sov_context *c = t->c;
    const sov_layer *L = &c->model->layers[il];
    const sov_hparams *hp = &c->model->hp;

    /* exaone4 has no pre-norms: the block reads the residual stream itself */
    const float *in = c->x;
    if (L->attn_norm) {
        op_rmsnorm(t, c->xb, c->x, L->attn_norm, T, hp->n_embd);
        in = c->xb;
    }
    if (hp->arch == SOV_ARCH_DEEPSEEK2) { /* multi-head latent attention (mla.c) */
        if (cached) op_mla_attention(t, il, in, T);
        else op_mla_attention_in_batch(t, il, in, T);
        block_output(t, &L->wo, c->mla_o, T, NULL);
    } else {
        attention(t, L, il, in, T);
    }
    ffn(t, L, il, T);
}

/* The attention block of the llama family, from the normalised input to the residual. */
static void attention(const op_thread *t, const sov_layer *L, int il, const float *in, int T) {
    sov_context *c = t->c;
    const sov_hparams *hp = &c->model->hp;
    const op_matmul qkv[3] = {
        {&L->wq, c->q, L->bq, false},
        {&L->wk, c->kx, L->bk, false},
        {&L->wv, c->vx, L->bv, false},
    };
    op_matmuls(t, in, T, qkv, 3);
    if (L->q_norm) { /* qwen3, gemma3, exaone4: every head's vector normalised on its own, before RoPE */
        op_rmsnorm(t, c->q, c->q, L->q_norm, T * hp->n_head, hp->head_dim);
        op_rmsnorm(t, c->kx, c->kx, L->k_norm, T * hp->n_head_kv, hp->head_dim);
    }
    const float *rope = layer_rope(c, L);
    if (rope) {
        op_rope_with(t, c->q, T, hp->n_head, rope);
        op_rope_with(t, c->kx, T, hp->n_head_kv, rope);
    }
    op_kv_store(t, il, c->kx, c->vx, T);
    op_attention(t, il, c->q, c->att, T);
    block_output(t, &L->wo, c->att, T, L->attn_post_norm);
}

/* The feed-forward block: dense, or experts (moe.c) with a shared expert where the layer has one. */
static void ffn(const op_thread *t, const sov_layer *L, int il, int T) {
    sov_context *c = t->c;
    const sov_hparams *hp = &c->model->hp;
    const float *in = c->x;
    if (L->ffn_norm) {
        op_rmsnorm(t, c->xb, c->x, L->ffn_norm, T, hp->n_embd);
        in = c->xb;
    }
    if (L->router.data) { /* mixture of experts (moe.c) instead of the dense FFN */
        /* A.X K1: routed + shared output normalised before the residual add, gathered in
         * c->att (free after attention; model.c checks it holds (T, E)) */
        float *out = L->ffn_post_norm ? c->att : c->x;
        if (L->ffn_post_norm) rows_set(t, out, NULL, T, hp->n_embd);
        op_moe(t, il, out, in, T);
        if (L->gate_shexp.data) op_moe_shared(t, il, out, in, T); /* qwen2moe, deepseek2 */
        if (L->ffn_post_norm) {
            op_rmsnorm(t, out, out, L->ffn_post_norm, T, hp->n_embd);
            op_add(t, c->x, out, T, hp->n_embd);
        }
        return;
    }
    const op_matmul gate_up[2] = {
        {&L->w_gate, c->hg, NULL, false},
        {&L->w_up, c->hu, NULL, false},
    };
    op_matmuls(t, in, T, gate_up, 2);
    if (hp->ffn_act == SOV_FFN_GELU_TANH) op_gelu_mul(t, c->hg, c->hu, T, hp->n_ff);
    else op_silu_mul(t, c->hg, c->hu, T, hp->n_ff);
    block_output(t, &L->w_down, c->hg, T, L->ffn_post_norm);
}

static void forward_thread(void *arg, int ith, int nth) {
    const forward_job *job = arg;
    sov_context *c = job->c;
    const sov_model *m = c->model;
    const op_thread t = {c, ith, nth};
    const int T = job->b->n_tokens;

    op_rope_cache(&t, job->b->pos, T);
    op_embed(&t, c->x, job->b->token, T);
    for (int il = 0; il < m->hp.n_layer; il++) layer_forward(&t, il, T, true); /* not the MTP blocks */
    if (job->n_embd_out > 0) {
        op_gather(&t, job->embd, c->x, c->embd_rows, job->n_embd_out, m->hp.n_embd);
        op_rmsnorm(&t, job->embd, job->embd, m->out_norm, job->n_embd_out, m->hp.n_embd);
    }
    if (job->n_out == 0) return; /* no logits wanted: the LM head, the largest product of a
                                    small model, is skipped */
    op_gather(&t, c->xb, c->x, c->out_rows, job->n_out, m->hp.n_embd);
    op_rmsnorm(&t, c->xb, c->xb, m->out_norm, job->n_out, m->hp.n_embd);
    const op_matmul head = {&m->output, job->logits, NULL, false};
    op_matmuls(&t, c->xb, job->n_out, &head, 1);
}

/* ---- pipeline parallel (--pp S, tp/pp.c) ----
 *
 * This rank is stage s of S; m->layers holds its stage's layers. The batch goes through
 * in micro-batches of contiguous tokens; micro-batch k lives in rows [t0, t0 + n) of x,
 * so its hidden states are sent from and received into place, and the ops see it as a
 * batch of n tokens through c->x, c->tok_pos and c->tok_blocks moved to row t0 (by
 * thread 0, between barriers). The last stage sends the rows wanting outputs back to
 * rank 0, out rows then hidden-state rows, into job->pp_rows (n_out + n_embd_out, E);
 * rank 0 finishes them as forward_thread does. Only thread 0 calls MPI. */
enum { PP_TAG_HIDDEN = 1, PP_TAG_OUT, PP_TAG_EMBD };

/* [*lo, *hi): the entries of rows[0..n) (ascending batch indices) within [t0, t1). */
static void rows_within(const int32_t *rows, int n, int t0, int t1, int *lo, int *hi) {
    int i = 0;
    while (i < n && rows[i] < t0) i++;
    *lo = i;
    while (i < n && rows[i] < t1) i++;
    *hi = i;
}

/* The transfers of micro-batch [t0, t1)'s output rows between the last stage and rank 0:
 * rank 0 receives them, the last stage gathers them from x and sends them. */
static void pp_out_rows(const forward_job *job, const op_thread *t, const float *x, int t0, int t1, bool send) {
    const sov_context *c = job->c;
    sov_tp *tp = c->model->tp;
    const int64_t E = c->model->hp.n_embd;
    const int peer = send ? 0 : sov_tp_size(tp) - 1;
    const int32_t *rows[2] = {c->out_rows, c->embd_rows};
    const int n[2] = {job->n_out, job->n_embd_out}, tag[2] = {PP_TAG_OUT, PP_TAG_EMBD};
    float *dst[2] = {job->pp_rows, job->pp_rows + job->n_out * E};
    for (int w = 0; w < 2; w++) {
        int lo, hi;
        rows_within(rows[w], n[w], t0, t1, &lo, &hi);
        if (hi == lo) continue;
        float *at = dst[w] + lo * E;
        const size_t len = (size_t)(hi - lo) * (size_t)E;
        if (send) op_gather(t, at, x, rows[w] + lo, hi - lo, E);
        if (t->ith == 0) (void)(send ? tp_isend(tp, at, len, peer, tag[w]) : tp_irecv(tp, at, len, peer, tag[w]));
    }
}

static void pp_forward_thread(void *arg, int ith, int nth) {
    const forward_job *job = arg;
    sov_context *c = job->c;
    const sov_model *m = c->model;
    sov_tp *tp = m->tp;
    const op_thread t = {c, ith, nth};
    const int T = job->b->n_tokens, S = sov_tp_size(tp), s = sov_tp_rank(tp), mb = pp_micro_batch(T, S);
    const int64_t E = m->hp.n_embd;
    float *const x = c->x;
    int32_t *const pos = c->tok_pos;
    const int32_t **const blocks = c->tok_blocks;
    int h0 = 0; /* stage s > 0: micro-batch k's hidden states arrive by transfer h0 + k */
    if (ith == 0) {
        for (int t0 = 0; s > 0 && t0 < T; t0 += mb) {
            const int h = tp_irecv(tp, x + t0 * E, (size_t)SOV_MIN(mb, T - t0) * (size_t)E, s - 1, PP_TAG_HIDDEN);
            if (t0 == 0) h0 = h;
        }
        for (int t0 = 0; s == 0 && t0 < T; t0 += mb) pp_out_rows(job, &t, x, t0, t0 + mb, false);
    }
    for (int k = 0, t0 = 0; t0 < T; k++, t0 += mb) {
        const int n = SOV_MIN(mb, T - t0);
        if (ith == 0) {
            if (s > 0) tp_p2p_wait(tp, h0 + k, "pipeline: the previous stage's hidden states");
            c->x = x + t0 * E;
            c->tok_pos = pos + t0;
            c->tok_blocks = blocks + t0;
        }
        sov_pool_barrier(c->pool);
        op_rope_cache(&t, job->b->pos + t0, n);
        if (s == 0) op_embed(&t, c->x, job->b->token + t0, n);
        for (int il = 0; il < m->hp.n_layer; il++) {
            layer_forward(&t, il, n, true);
            if (ith == 0) tp_p2p_poll(tp); /* the transfers under way move on */
        }
        if (s < S - 1) {
            if (ith == 0) tp_isend(tp, c->x, (size_t)n * (size_t)E, s + 1, PP_TAG_HIDDEN);
        } else {
            pp_out_rows(job, &t, x, t0, t0 + n, true);
        }
    }
    if (ith == 0) {
        c->x = x;
        c->tok_pos = pos;
        c->tok_blocks = blocks;
        tp_p2p_wait_all(tp, s == 0 ? "pipeline: the last stage's outputs" : "pipeline: sending to the next stage");
    }
    sov_pool_barrier(c->pool);
    if (s > 0) return;
    /* rank 0: the last stage's final hidden states, finished as in one process */
    if (job->n_embd_out > 0) op_rmsnorm(&t, job->embd, job->pp_rows + job->n_out * E, m->out_norm, job->n_embd_out, E);
    if (job->n_out == 0) return;
    op_rmsnorm(&t, c->xb, job->pp_rows, m->out_norm, job->n_out, E);
    const op_matmul head = {&m->output, job->logits, NULL, false};
    op_matmuls(&t, c->xb, job->n_out, &head, 1);
}

void sov_forward(sov_context *c, const sov_batch *b, int n_out, float *logits, int n_embd_out, float *embd) {
    forward_job job = {c, b, n_out, logits, n_embd_out, embd, NULL};
    sov_tp *tp = c->model->tp;
    if (!tp_splits(tp, SOV_SPLIT_PIPELINE)) {
        sov_pool_run(c->pool, forward_thread, &job, c->n_threads);
        return;
    }
    job.pp_rows = tp_p2p_room(tp, (size_t)(n_out + n_embd_out) * (size_t)c->model->hp.n_embd);
    sov_pool_run(c->pool, pp_forward_thread, &job, c->n_threads);
}

/* ---- multi-token prediction (deepseek2: DeepSeek-V3, A.X K1) ----
 *
 *   x = [rmsnorm(embed(next)) * enorm, rmsnorm(hidden) * hnorm] Weh^T    (T, E)
 *   x = the MTP decoder block over x, attending among the T rows
 *   logits = rmsnorm(x) * head_norm Whead^T                           (T, n_vocab)
 *
 * as llama.cpp's deepseek2 MTP graph and vLLM's DeepSeek MTP compute it (the hidden
 * state is the main model's after output_norm). */
typedef struct mtp_job {
    sov_context *c;
    const sov_mtp *mt;
    const float *hidden;  /* (T, E) */
    const int32_t *next;  /* (T) */
    const int32_t *pos;   /* (T) */
    int T;
    float *logits;        /* (T, n_vocab) */
} mtp_job;

static void mtp_thread(void *arg, int ith, int nth) {
    const mtp_job *job = arg;
    sov_context *c = job->c;
    const sov_model *m = c->model;
    const sov_mtp *mt = job->mt;
    const op_thread t = {c, ith, nth};
    const int T = job->T;
    const int64_t E = m->hp.n_embd;
    const sov_weight *embed = mt->embed.data ? &mt->embed : &m->tok_embd;

    op_rope_cache(&t, job->pos, T);
    long b, e;
    sov_split_range(T, 1, t.ith, t.nth, &b, &e);
    for (long i = b; i < e; i++)
        sov_dequantize_row((sov_type)embed->type, (const char *)embed->data + (size_t)job->next[i] * embed->row_bytes,
                           c->xb + i * E, E);
    sov_pool_barrier(c->pool);
    op_rmsnorm(&t, c->xb, c->xb, mt->enorm, T, E);
    op_rmsnorm(&t, c->x, job->hidden, mt->hnorm, T, E);
    /* the two column halves of eh_proj, summed (an accumulating product would use c->tmp) */
    const op_matmul from_h = {&mt->eh_proj_h, c->tmp, NULL, false}, from_e = {&mt->eh_proj_e, c->x, NULL, false};
    op_matmuls(&t, c->x, T, &from_h, 1);
    op_matmuls(&t, c->xb, T, &from_e, 1);
    op_add(&t, c->x, c->tmp, T, E);
    layer_forward(&t, mt->layer, T, false);
    op_rmsnorm(&t, c->xb, c->x, mt->head_norm ? mt->head_norm : m->out_norm, T, E);
    const op_matmul head = {mt->head.data ? &mt->head : &m->output, job->logits, NULL, false};
    op_matmuls(&t, c->xb, T, &head, 1);
}

sov_status sov_mtp_logits(sov_context *c, int depth, const float *hidden, const int32_t *next, const int32_t *pos,
                          int T, float *logits) {
    const sov_model *m = c->model;
    if (tp_active(m->tp)) return sov_fail(SOV_ERR_UNSUPPORTED, "mtp: a model split across ranks has no MTP blocks");
    if (depth < 0 || depth >= m->hp.n_layer_mtp)
        return sov_fail(SOV_ERR_ARG, "mtp: no MTP module %d (the model has %d)", depth, m->hp.n_layer_mtp);
    if (T < 1 || T > c->p.n_batch || !hidden || !next || !pos || !logits)
        return sov_fail(SOV_ERR_ARG, "mtp: %d rows (1..%d with hidden states, tokens, positions and logits)", T,
                        c->p.n_batch);
    for (int i = 0; i < T; i++) {
        if (next[i] < 0 || next[i] >= m->hp.n_vocab)
            return sov_fail(SOV_ERR_ARG, "mtp: token %d is out of the vocabulary (%d)", next[i], m->hp.n_vocab);
        if (pos[i] < 0) return sov_fail(SOV_ERR_ARG, "mtp: position %d is negative", pos[i]);
    }
    mtp_job job = {c, &m->mtp[depth], hidden, next, pos, T, logits};
    sov_pool_run(c->pool, mtp_thread, &job, c->n_threads);
    return SOV_OK;
}
