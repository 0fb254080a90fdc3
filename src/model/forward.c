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
 *       plus a shared expert where the layer has one (qwen2moe, deepseek2: moe_shared.c)
 *   hidden = rmsnorm(x[rows wanted]) * out_norm        (embeddings stop here)
 *   logits = hidden Wout^T                             (only for rows asking for logits)
 *
 * Split across ranks (tp/tp.h), each rank computes its heads and FFN units, and the two
 * products that join the residual (att Wo^T, ... Wdown^T) are summed across the ranks
 * before they do: block_output.
 */
#include <math.h>

#include "model/context.h"
#include "model/mla.h"
#include "model/moe.h"
#include "model/moe_shared.h"
#include "model/ops.h"
#include "tp/tp.h"

typedef struct forward_job {
    sov_context *c;
    const sov_batch *b;
    int n_out;
    float *logits; /* (n_out, n_vocab) */
    int n_embd_out;
    float *embd;   /* (n_embd_out, E) final hidden states */
} forward_job;

/* The cos/sin cache of a layer's RoPE, or NULL when it has none. */
static const float *layer_rope(const sov_context *c, const sov_layer *L) {
    return L->rope == SOV_LAYER_ROPE_NONE ? NULL : L->rope == SOV_LAYER_ROPE_LOCAL ? c->rope_local : c->rope;
}

/* x += post_norm ? rmsnorm(y) * post_norm : y, where y (T, E) is `out` of a block;
 * without a post-norm the product accumulates into x directly. */
static void block_output(const op_thread *t, const sov_weight *w, const float *in, int T, const float *post_norm) {
    sov_context *c = t->c;
    if (tp_active(c->model->tp)) {
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

static void layer_forward(const op_thread *t, int il, int T) {
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
        op_mla_attention(t, il, in, T);
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
        op_moe(t, il, c->x, in, T);
        if (L->gate_shexp.data) op_moe_shared(t, il, c->x, in, T); /* qwen2moe, deepseek2 */
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
    for (int il = 0; il < m->hp.n_layer; il++) layer_forward(&t, il, T);
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

void sov_forward(sov_context *c, const sov_batch *b, int n_out, float *logits, int n_embd_out, float *embd) {
    forward_job job = {c, b, n_out, logits, n_embd_out, embd};
    sov_pool_run(c->pool, forward_thread, &job, c->n_threads);
}
