/* encoder.c - BERT-family encoders: bert (BGE, E5, MiniLM; XLM-RoBERTa: BGE-M3,
 * multilingual-E5), nomic-bert and nomic-bert-moe.
 *
 * The forward pass of a batch of whole inputs (T tokens; each input a contiguous run of
 * the batch, positions 0..n-1), post-norm blocks, as HF transformers' BertModel and
 * nomic-bert compute it:
 *
 *   x = tok_embd[tokens] + token_types[0] (+ pos_embd[pos], bert)     (T, E)
 *   x = layernorm(x) * embd_norm_w + embd_norm_b
 *   per layer:
 *     q, k, v = x Wq^T + bq, x Wk^T + bk, x Wv^T + bv   (nomic-bert: one fused Wqkv, no biases;
 *                                                       nomic-bert-moe: fused, with biases)
 *     rope(q), rope(k)                                  (nomic-bert(-moe), NEOX pairs)
 *     att = softmax(q k^T / sqrt(D)) v                  per head, over the token's own
 *                                                       input, both directions
 *     x = layernorm(x + att Wo^T + bo)                  attn_output_norm
 *     h = gelu_erf(x Wup^T + bup)                       bert, nomic-bert-moe's dense layers
 *     h = silu(x Wgate^T) * (x Wup^T)                   nomic-bert (SwiGLU)
 *     x = layernorm(x + h Wdown^T + bdown)              layer_output_norm
 *   (nomic-bert-moe, layers il % moe_every_n_layers == 1: x = layernorm(x + moe(x)), the
 *    mixture of GELU experts of moe.c: softmax router, top k, unrenormalised weights)
 *   hidden = x (no final norm: the last block's output is the result)
 *
 * Pooling (mean / CLS / last) and the L2 norm happen in the caller (embed.h), as for
 * decoder embeddings. The pass runs on the context's thread pool with the decoder's ops
 * (ops.h) where they fit, and its activation buffers (context.h): x, xb, q, kx, vx, att,
 * hg, hu, scores (and moe_* for experts); the KV cache is not used. */
#include "model/encoder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "model/context.h"
#include "model/embed.h"
#include "model/moe.h"
#include "model/ops.h"
#include "quant/quant.h"

/* ---- loading ---- */

bool encoder_arch_name(const char *arch) {
    return strcmp(arch, "bert") == 0 || strcmp(arch, "nomic-bert") == 0 || strcmp(arch, "nomic-bert-moe") == 0;
}

static sov_status enc_dim(const gguf_file *f, const char *arch, const char *suffix, bool required, int32_t dflt,
                          int32_t *out) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v;
    if (!gguf_get_u32(f, key, &v)) {
        if (required || gguf_find(f, key))
            return sov_fail(SOV_ERR_FORMAT, "model: metadata key '%s' is missing or not a number", key);
        *out = dflt;
        return SOV_OK;
    }
    if (v == 0 || v > (1u << 20)) return sov_fail(SOV_ERR_FORMAT, "model: %s = %u is out of range", key, v);
    *out = (int32_t)v;
    return SOV_OK;
}

/* nomic-bert-moe: layer il is a mixture of experts when il % moe_every_n_layers == 1 (as
 * llama.cpp and nomic's NomicBertModel decide it), X experts of the dense FFN's width,
 * each up -> GELU -> down without biases (the converter drops the experts' shared output
 * bias), a softmax router, the top k, weights not renormalised. Returns the period, or 0
 * when no layer is one (no key, 0, 1, or fewer than 2 layers). */
static uint32_t enc_moe_every(const gguf_file *f, const sov_hparams *hp) {
    char key[160];
    uint32_t every = 0;
    snprintf(key, sizeof key, "%s.moe_every_n_layers", hp->arch_name);
    gguf_get_u32(f, key, &every);
    return every >= 2 && hp->n_layer >= 2 ? every : 0;
}

static bool enc_moe_layer(uint32_t every, int il) { return every > 0 && (uint32_t)il % every == 1; }

sov_status encoder_hparams_read(const gguf_file *f, const char *arch, sov_hparams *hp) {
    const bool bert = strcmp(arch, "bert") == 0, moe = strcmp(arch, "nomic-bert-moe") == 0;
    hp->arch = bert ? SOV_ARCH_BERT : SOV_ARCH_NOMIC_BERT;
    hp->arch_name = bert ? "bert" : moe ? "nomic-bert-moe" : "nomic-bert";
    const char *a = hp->arch_name;
    sov_status st;
    if ((st = enc_dim(f, a, "embedding_length", true, 0, &hp->n_embd))) return st;
    if ((st = enc_dim(f, a, "block_count", true, 0, &hp->n_layer))) return st;
    if ((st = enc_dim(f, a, "feed_forward_length", true, 0, &hp->n_ff))) return st;
    if ((st = enc_dim(f, a, "attention.head_count", true, 0, &hp->n_head))) return st;
    if ((st = enc_dim(f, a, "context_length", true, 0, &hp->n_ctx_train))) return st;
    if (hp->n_layer > 4096) return sov_fail(SOV_ERR_FORMAT, "model: %s.block_count = %d is too many", a, hp->n_layer);
    int32_t kv = hp->n_head;
    if ((st = enc_dim(f, a, "attention.head_count_kv", false, hp->n_head, &kv))) return st;
    if (kv != hp->n_head)
        return sov_fail(SOV_ERR_UNSUPPORTED, "model: %s with %d key/value heads for %d query heads is not supported",
                        a, kv, hp->n_head);
    hp->n_head_kv = hp->n_head;
    if (hp->n_embd % hp->n_head != 0 || (hp->n_embd / hp->n_head) % 2 != 0)
        return sov_fail(SOV_ERR_FORMAT, "model: width %d does not split into %d heads of an even size", hp->n_embd,
                        hp->n_head);
    hp->head_dim = hp->n_embd / hp->n_head;
    hp->n_rot = hp->head_dim;
    /* the decoder variants the shared ops read (op_embed's scale): plain */
    hp->ffn_act = SOV_FFN_SILU;
    hp->embd_scale = 1.0f;
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    hp->rope_base_swa = 10000.0f;
    char key[160];
    snprintf(key, sizeof key, "%s.attention.layer_norm_epsilon", a);
    hp->rms_eps = 1e-12f; /* here: the LayerNorm epsilon (BERT's default) */
    gguf_get_f32(f, key, &hp->rms_eps);
    if (!(hp->rms_eps > 0.0f && hp->rms_eps < 1.0f))
        return sov_fail(SOV_ERR_FORMAT, "model: LayerNorm epsilon %g is out of range", (double)hp->rms_eps);
    hp->rope_base = 10000.0f;
    snprintf(key, sizeof key, "%s.rope.freq_base", a);
    gguf_get_f32(f, key, &hp->rope_base);
    if (!(hp->rope_base > 1.0f) || !isfinite(hp->rope_base))
        return sov_fail(SOV_ERR_FORMAT, "model: rope.freq_base %g is out of range", (double)hp->rope_base);
    hp->rope_order = SOV_ROPE_NEOX;
    hp->rope_scaling = SOV_ROPE_SCALING_NONE;
    hp->rope_freq_scale = 1.0f;
    hp->rope_orig_ctx = hp->n_ctx_train;
    hp->yarn_attn_factor = 1.0f;
    hp->pooling = SOV_POOLING_MEAN;
    uint32_t pooling;
    snprintf(key, sizeof key, "%s.pooling_type", a);
    if (gguf_get_u32(f, key, &pooling)) hp->pooling = pooling > 1000 ? 1000 : (int32_t)pooling;
    if (moe && enc_moe_every(f, hp) > 0) {
        if ((st = enc_dim(f, a, "expert_count", true, 0, &hp->n_expert))) return st;
        if ((st = enc_dim(f, a, "expert_used_count", true, 0, &hp->n_expert_used))) return st;
        if (hp->n_expert > 4096 || hp->n_expert_used > hp->n_expert)
            return sov_fail(SOV_ERR_FORMAT, "model: %s has %d experts, %d of them used per token", a,
                            hp->n_expert, hp->n_expert_used);
        hp->n_ff_exp = hp->n_ff;
        hp->expert_gating = SOV_MOE_SOFTMAX;
        hp->expert_weights_norm = false;
        hp->expert_weights_scale = 1.0f;
    }
    return SOV_OK;
}

/* keeps p (malloc'd) until the model is freed */
static sov_status own(sov_model *m, void *p) {
    void **o = realloc(m->owned, (m->n_owned + 1) * sizeof *o);
    if (!o) {
        free(p);
        return sov_fail(SOV_ERR_NOMEM, "model: out of memory");
    }
    m->owned = o;
    m->owned[m->n_owned++] = p;
    return SOV_OK;
}

/* rows [r0, r0 + n) of w as a weight of their own */
static sov_weight row_view(const sov_weight *w, int64_t r0, int64_t n) {
    sov_weight v = *w;
    v.n_rows = n;
    v.data = (const char *)w->data + (size_t)r0 * w->row_bytes;
    return v;
}

/* the dense FFN of layer il: GELU with biases (bert, nomic-bert-moe) or SwiGLU (nomic-bert) */
static sov_status map_dense_ffn(sov_model *m, int il, enc_layer *L) {
    const gguf_file *f = m->file;
    const int64_t E = m->hp.n_embd, F = m->hp.n_ff;
    char name[96];
    sov_status st;
#define NAME(fmt) (snprintf(name, sizeof name, "blk.%d." fmt, il), name)
    if ((st = model_find_weight(f, NAME("ffn_up.weight"), F, E, false, &L->w_up))) return st;
    if ((st = model_find_vector(m, NAME("ffn_up.bias"), F, true, &L->b_up))) return st;
    /* nomic-bert: SwiGLU; bert and nomic-bert-moe's dense layers: GELU */
    if (strcmp(m->hp.arch_name, "nomic-bert") == 0 &&
        (st = model_find_weight(f, NAME("ffn_gate.weight"), F, E, false, &L->w_gate)))
        return st;
    if ((st = model_find_weight(f, NAME("ffn_down.weight"), E, F, false, &L->w_down))) return st;
    if ((st = model_find_vector(m, NAME("ffn_down.bias"), E, true, &L->b_down))) return st;
#undef NAME
    return SOV_OK;
}

static sov_status map_layer(sov_model *m, int il, enc_layer *L) {
    const gguf_file *f = m->file;
    const int64_t E = m->hp.n_embd, F = m->hp.n_ff;
    char name[96];
    sov_status st;
#define NAME(fmt) (snprintf(name, sizeof name, "blk.%d." fmt, il), name)
    sov_weight qkv;
    if ((st = model_find_weight(f, NAME("attn_qkv.weight"), 3 * E, E, true, &qkv))) return st;
    if (qkv.data) {
        L->wq = row_view(&qkv, 0, E);
        L->wk = row_view(&qkv, E, E);
        L->wv = row_view(&qkv, 2 * E, E);
        const float *b = NULL;
        if ((st = model_find_vector(m, NAME("attn_qkv.bias"), 3 * E, true, &b))) return st;
        if (b) {
            L->bq = b;
            L->bk = b + E;
            L->bv = b + 2 * E;
        }
    } else {
        if ((st = model_find_weight(f, NAME("attn_q.weight"), E, E, false, &L->wq))) return st;
        if ((st = model_find_weight(f, NAME("attn_k.weight"), E, E, false, &L->wk))) return st;
        if ((st = model_find_weight(f, NAME("attn_v.weight"), E, E, false, &L->wv))) return st;
    }
    if (!L->bq) {
        if ((st = model_find_vector(m, NAME("attn_q.bias"), E, true, &L->bq))) return st;
        if ((st = model_find_vector(m, NAME("attn_k.bias"), E, true, &L->bk))) return st;
        if ((st = model_find_vector(m, NAME("attn_v.bias"), E, true, &L->bv))) return st;
    }
    if ((st = model_find_weight(f, NAME("attn_output.weight"), E, E, false, &L->wo))) return st;
    if ((st = model_find_vector(m, NAME("attn_output.bias"), E, true, &L->bo))) return st;
    if ((st = model_find_vector(m, NAME("attn_output_norm.weight"), E, false, &L->attn_norm_w))) return st;
    if ((st = model_find_vector(m, NAME("attn_output_norm.bias"), E, false, &L->attn_norm_b))) return st;
    if (enc_moe_layer(enc_moe_every(f, &m->hp), il)) { /* experts, in the decoder's layer table (moe.c) */
        sov_layer *D = &m->layers[il];
        const int64_t X = m->hp.n_expert;
        if ((st = model_find_weight(f, NAME("ffn_gate_inp.weight"), X, E, false, &D->router))) return st;
        if ((st = model_find_experts(f, NAME("ffn_up_exps.weight"), X, F, E, &D->up_exps))) return st;
        if ((st = model_find_experts(f, NAME("ffn_down_exps.weight"), X, E, F, &D->down_exps))) return st;
    } else {
        if ((st = map_dense_ffn(m, il, L))) return st;
    }
    if ((st = model_find_vector(m, NAME("layer_output_norm.weight"), E, false, &L->out_norm_w))) return st;
    if ((st = model_find_vector(m, NAME("layer_output_norm.bias"), E, false, &L->out_norm_b))) return st;
#undef NAME
    return SOV_OK;
}

sov_status encoder_map_tensors(sov_model *m) {
    const gguf_file *f = m->file;
    sov_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd;
    sov_status st;
    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    if (!emb) return sov_fail(SOV_ERR_FORMAT, "model: tensor 'token_embd.weight' is missing");
    if (emb->ne[1] <= 0 || emb->ne[1] > INT32_MAX)
        return sov_fail(SOV_ERR_FORMAT, "model: token_embd.weight has %lld rows", (long long)emb->ne[1]);
    hp->n_vocab = (int32_t)emb->ne[1];
    if ((st = model_find_weight(f, "token_embd.weight", hp->n_vocab, E, false, &m->tok_embd))) return st;

    sov_encoder *en = calloc(1, sizeof *en);
    if (!en || (st = own(m, en))) return en ? st : sov_fail(SOV_ERR_NOMEM, "model: out of memory");
    m->enc = en;
    /* the decoder's per-layer table stays empty (zero-size F32 views) so that code walking
       it (repacking, byte counts) finds nothing to do */
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    en->layers = calloc((size_t)hp->n_layer, sizeof *en->layers);
    if (!m->layers || !en->layers || (st = own(m, en->layers))) {
        if (!m->layers || !en->layers) free(en->layers);
        return sov_fail(SOV_ERR_NOMEM, "model: out of memory");
    }
    en->rope = hp->arch == SOV_ARCH_NOMIC_BERT;

    const gguf_tensor *types = gguf_find_tensor(f, "token_types.weight");
    if (types) {
        sov_weight tw;
        if (types->ne[1] < 1 || types->ne[1] > 1024)
            return sov_fail(SOV_ERR_FORMAT, "model: token_types.weight has %lld rows", (long long)types->ne[1]);
        if ((st = model_find_weight(f, "token_types.weight", types->ne[1], E, false, &tw))) return st;
        float *row0 = malloc((size_t)E * sizeof *row0);
        if (!row0 || (st = own(m, row0))) return row0 ? st : sov_fail(SOV_ERR_NOMEM, "model: out of memory");
        sov_dequantize_row((sov_type)tw.type, tw.data, row0, E);
        en->type_row0 = row0;
    }
    if (!en->rope &&
        (st = model_find_weight(f, "position_embd.weight", hp->n_ctx_train, E, false, &en->pos_embd)))
        return st;
    if ((st = model_find_vector(m, "token_embd_norm.weight", E, false, &en->embd_norm_w))) return st;
    if ((st = model_find_vector(m, "token_embd_norm.bias", E, false, &en->embd_norm_b))) return st;
    for (int il = 0; il < hp->n_layer; il++)
        if ((st = map_layer(m, il, &en->layers[il]))) return st;
    return SOV_OK;
}

/* ---- the forward pass ---- */

typedef struct enc_job {
    sov_context *c;
    const sov_batch *b;
    const int32_t *seg;   /* (T) batch index of the first token of each token's input */
    const int32_t *len;   /* (T) length of each token's input */
    int n_embd_out;
    float *embd;          /* (n_embd_out, E) */
} enc_job;

static void barrier(const op_thread *t) { sov_pool_barrier(t->c->pool); }

static void rows_of(const op_thread *t, long n, long *b, long *e) { sov_split_range(n, 1, t->ith, t->nth, b, e); }

/* x (T, E) = token + type (+ position) embeddings, then the embedding LayerNorm */
static void enc_embed(const op_thread *t, const sov_batch *b, int T) {
    sov_context *c = t->c;
    const sov_encoder *en = c->model->enc;
    const int64_t E = c->model->hp.n_embd;
    op_embed(t, c->x, b->token, T);
    long lo, hi;
    rows_of(t, T, &lo, &hi);
    for (long i = lo; i < hi; i++) {
        float *x = c->x + i * E;
        if (en->type_row0) c->k->add(x, en->type_row0, E);
        if (en->pos_embd.data) {
            const sov_weight *p = &en->pos_embd;
            sov_dequantize_row((sov_type)p->type, (const char *)p->data + (size_t)b->pos[i] * p->row_bytes,
                               c->xb + i * E, E);
            c->k->add(x, c->xb + i * E, E);
        }
        c->k->layernorm(x, x, en->embd_norm_w, en->embd_norm_b, E, c->model->hp.rms_eps);
    }
    barrier(t);
}

/* x = layernorm(x + y) per row (y NULL: layernorm(x)) */
static void add_norm(const op_thread *t, float *x, const float *y, const float *w, const float *bias, int T) {
    const sov_context *c = t->c;
    const int64_t E = c->model->hp.n_embd;
    long lo, hi;
    rows_of(t, T, &lo, &hi);
    for (long i = lo; i < hi; i++) {
        if (y) c->k->add(x + i * E, y + i * E, E);
        c->k->layernorm(x + i * E, x + i * E, w, bias, E, c->model->hp.rms_eps);
    }
    barrier(t);
}

static void gelu_rows(const op_thread *t, float *h, int T, int64_t n) {
    long lo, hi;
    rows_of(t, T, &lo, &hi);
    for (long i = lo; i < hi; i++) t->c->k->gelu_erf(h + i * n, h + i * n, n);
    barrier(t);
}

/* att (T, E): for each token and head, softmax(q k^T / sqrt(D)) v over the tokens of the
 * token's own input (all of them: no causal mask). (token, head) tasks round-robin. */
static void enc_attention(const op_thread *t, const enc_job *j, int T) {
    const sov_context *c = t->c;
    const sov_kernels *k = c->k;
    const int H = c->model->hp.n_head, D = c->model->hp.head_dim;
    const int64_t E = c->model->hp.n_embd;
    const float scale = 1.0f / sqrtf((float)D);
    float *sc = c->scores + (size_t)t->ith * c->scores_stride; /* (input length) */
    for (long r = t->ith; r < (long)T * H; r += t->nth) {
        const int tok = (int)(r / H), h = (int)(r % H);
        const int32_t s0 = j->seg[tok], n = j->len[tok];
        const float *q = c->q + tok * E + h * D;
        for (int32_t i = 0; i < n; i++) sc[i] = k->dot_f32(q, c->kx + (s0 + i) * E + h * D, D) * scale;
        k->softmax(sc, n);
        float *out = c->att + tok * E + h * D;
        memset(out, 0, (size_t)D * sizeof *out);
        for (int32_t i = 0; i < n; i++) k->axpy_f32(out, sc[i], c->vx + (s0 + i) * E + h * D, D);
    }
    barrier(t);
}

static void enc_layer_forward(const op_thread *t, const enc_job *j, int il, int T) {
    const enc_layer *L = &t->c->model->enc->layers[il];
    sov_context *c = t->c;
    const sov_hparams *hp = &c->model->hp;
    const op_matmul qkv[3] = {{&L->wq, c->q, L->bq, false}, {&L->wk, c->kx, L->bk, false}, {&L->wv, c->vx, L->bv, false}};
    op_matmuls(t, c->x, T, qkv, 3);
    if (c->model->enc->rope) {
        op_rope(t, c->q, T, hp->n_head);
        op_rope(t, c->kx, T, hp->n_head);
    }
    enc_attention(t, j, T);
    const op_matmul out = {&L->wo, c->xb, L->bo, false};
    op_matmuls(t, c->att, T, &out, 1);
    add_norm(t, c->x, c->xb, L->attn_norm_w, L->attn_norm_b, T);
    if (c->model->layers[il].router.data) { /* mixture of GELU experts (moe.c): x = LN(x + moe(x)) */
        op_moe(t, il, c->x, c->x, T);
        add_norm(t, c->x, NULL, L->out_norm_w, L->out_norm_b, T);
        return;
    }
    if (L->w_gate.data) { /* SwiGLU */
        const op_matmul gu[2] = {{&L->w_gate, c->hg, NULL, false}, {&L->w_up, c->hu, L->b_up, false}};
        op_matmuls(t, c->x, T, gu, 2);
        op_silu_mul(t, c->hg, c->hu, T, hp->n_ff);
    } else {
        const op_matmul up = {&L->w_up, c->hg, L->b_up, false};
        op_matmuls(t, c->x, T, &up, 1);
        gelu_rows(t, c->hg, T, hp->n_ff);
    }
    const op_matmul down = {&L->w_down, c->xb, L->b_down, false};
    op_matmuls(t, c->hg, T, &down, 1);
    add_norm(t, c->x, c->xb, L->out_norm_w, L->out_norm_b, T);
}

static void enc_thread(void *arg, int ith, int nth) {
    const enc_job *j = arg;
    sov_context *c = j->c;
    const sov_model *m = c->model;
    const op_thread t = {c, ith, nth};
    const int T = j->b->n_tokens;
    if (m->enc->rope) op_rope_cache(&t, j->b->pos, T);
    enc_embed(&t, j->b, T);
    for (int il = 0; il < m->hp.n_layer; il++)
        enc_layer_forward(&t, j, il, T);
    if (j->n_embd_out > 0) op_gather(&t, j->embd, c->x, c->embd_rows, j->n_embd_out, m->hp.n_embd);
}

sov_status encoder_check_batch(const sov_context *c, const sov_batch *b, int n_out) {
    const sov_hparams *hp = &c->model->hp;
    if (n_out > 0)
        return sov_fail(SOV_ERR_UNSUPPORTED, "decode: %s is an encoder: it makes embeddings, not logits",
                        hp->arch_name);
    for (int i = 0; i < b->n_tokens; i++) {
        const bool starts = b->pos[i] == 0;
        if (!starts && (i == 0 || b->seq[i] != b->seq[i - 1] || b->pos[i] != b->pos[i - 1] + 1))
            return sov_fail(SOV_ERR_ARG,
                            "decode: an encoder batch must hold whole inputs, each contiguous from position 0 "
                            "(batch index %d: sequence %d at position %d)",
                            i, b->seq[i], b->pos[i]);
        if (!c->model->enc->rope && b->pos[i] >= hp->n_ctx_train)
            return sov_fail(SOV_ERR_CONTEXT, "decode: position %d is past %s's %d position embeddings", b->pos[i],
                            hp->arch_name, hp->n_ctx_train);
    }
    return SOV_OK;
}

sov_status encoder_forward(sov_context *c, const sov_batch *b, int n_embd_out, float *embd) {
    const int T = b->n_tokens;
    int32_t *seg = malloc((size_t)T * 2 * sizeof *seg);
    if (!seg) return sov_fail(SOV_ERR_NOMEM, "decode: out of memory");
    int32_t *len = seg + T;
    for (int i = 0; i < T;) {
        int e = i + 1;
        while (e < T && b->pos[e] != 0) e++;
        for (int q = i; q < e; q++) {
            seg[q] = i;
            len[q] = e - i;
        }
        i = e;
    }
    enc_job job = {c, b, seg, len, n_embd_out, embd};
    sov_pool_run(c->pool, enc_thread, &job, c->n_threads);
    free(seg);
    return SOV_OK;
}

/* ---- sov_embed for encoders ---- */

sov_status encoder_embed(sov_context *c, const sov_token *const *inputs, const int32_t *n_tokens, int32_t n_inputs,
                         float *out) {
    const sov_hparams *hp = &c->model->hp;
    const int32_t T = c->p.n_batch, E = hp->n_embd;
    int32_t max_len = SOV_MIN(T, c->p.n_ctx);
    if (!c->model->enc->rope) max_len = SOV_MIN(max_len, hp->n_ctx_train);
    for (int32_t i = 0; i < n_inputs; i++)
        if (n_tokens[i] > max_len)
            return sov_fail(SOV_ERR_CONTEXT, "embed: input %d has %d tokens; this encoder takes at most %d at once", i,
                            n_tokens[i], max_len);
    const int32_t slots = SOV_MIN(c->p.n_seq_max, n_inputs);
    sov_token *tok = malloc((size_t)T * sizeof *tok);
    sov_seq_id *seq = malloc((size_t)T * sizeof *seq);
    int32_t *pos = malloc((size_t)T * sizeof *pos);
    uint8_t *want = malloc((size_t)T);
    float *hidden = malloc((size_t)T * (size_t)E * sizeof *hidden);
    double *acc = malloc((size_t)E * sizeof *acc);
    sov_seq_id *ids = malloc((size_t)(slots ? slots : 1) * sizeof *ids);
    int32_t *first = malloc((size_t)(slots ? slots : 1) * sizeof *first); /* batch index of each input's start */
    sov_status st = SOV_OK;
    if (!tok || !seq || !pos || !want || !hidden || !acc || !ids || !first)
        st = sov_fail(SOV_ERR_NOMEM, "embed: out of memory");
    for (int32_t next = 0; !st && next < n_inputs;) {
        /* a batch: as many whole inputs as fit, one sequence each */
        int32_t n = 0, k = 0, from = next;
        while (next < n_inputs && k < slots && n + n_tokens[next] <= T) {
            if ((st = sov_seq_new(c, &ids[k]))) break;
            first[k] = n;
            for (int32_t p = 0; p < n_tokens[next]; p++, n++) {
                tok[n] = inputs[next][p];
                seq[n] = ids[k];
                pos[n] = p;
                want[n] = sov_pooling_wants(hp->pooling, p, n_tokens[next]);
            }
            k++;
            next++;
        }
        if (!st && k == 0) st = sov_fail(SOV_ERR_KV_FULL, "embed: no free sequence");
        if (!st) {
            const sov_batch b = {.n_tokens = n, .token = tok, .seq = seq, .pos = pos, .logits = NULL};
            st = sov_decode_embd(c, &b, NULL, want, hidden);
        }
        /* pool: the hidden rows come in batch order, only those wanted */
        int32_t row = 0;
        for (int32_t q = 0; q < k; q++) {
            const int32_t in = from + q, len = n_tokens[in];
            memset(acc, 0, (size_t)E * sizeof *acc);
            for (int32_t p = 0; !st && p < len; p++)
                if (want[first[q] + p])
                    embed_pool_add(hp->pooling, acc, hidden + (size_t)row++ * (size_t)E, p, len, E);
            if (!st) embed_pool_finish(acc, E, out + (size_t)in * (size_t)E);
            sov_seq_free(c, ids[q]);
        }
    }
    free(tok);
    free(seq);
    free(pos);
    free(want);
    free(hidden);
    free(acc);
    free(ids);
    free(first);
    return st;
}
