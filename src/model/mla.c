/* mla.c - multi-head latent attention (DeepSeek-V2/V3, A.X K1) in the absorbed form.
 *
 * Per token (Dq = nope + R query head, L = kv_lora_rank, R rotated dims, Dv value head):
 *
 *   q      = xb Wq^T, or rmsnorm(xb Wq_a^T) * q_a_norm Wq_b^T          (H, Dq)
 *   [c, r] = xb Wkv_a^T                                               (L + R) latent, shared key part
 *   c      = rmsnorm(c) * kv_a_norm;  r = rope(r);  q_pe = rope(q[:, nope:])
 *
 * DeepSeek's keys and values are decompressed per head from c: k_h = [Wk_h c, r],
 * v_h = Wv_h c. Then q_h . k_h = (Wk_h^T q_nope_h) . c + q_pe_h . r, so with the absorbed
 * query qa_h = [Wk_h^T q_nope_h, q_pe_h] (L + R) every head attends over the same cached
 * rows [c, r]: multi-query attention with one KV head of L + R values, the cache holding
 * the latent, not H full heads. attn_k_b holds Wk_h^T already (llama.cpp's converter
 * transposes it), attn_v_b Wv_h:
 *
 *   qa_h   = [k_b_h q_nope_h, q_pe_h]                                 (H, L + R)
 *   o_h    = softmax(qa_h . [c, r]_j * scale) [c, r]_j, first L values  (H, L)
 *   out_h  = v_b_h o_h                                                (H, Dv)  -> attn_output
 *
 * The cached row is stored as both key and value in the paged cache (kv.h has one K and
 * one V of the same head size), and the value's rope part is computed and dropped:
 * 2 (L + R) values per token and layer, against 2 H Dq of full heads. scale =
 * 1/sqrt(Dq) (hp.attn_scale). The per-head products (k_b, v_b) gather each head's rows
 * of the batch and run the gemm kernels of the weight's type over them, head by head.
 * Without a cache (the MTP blocks, sov_mtp_logits), step 4 attends among the batch's rows. */
#include "model/mla.h"

#include <math.h>
#include <string.h>

#include "core/util.h"

enum { HEAD_ROWS = 64, ROW_TILE = 16, COL_TILE = 8 };

static void barrier(const op_thread *t) { sov_pool_barrier(t->c->pool); }

static size_t act_stride(sov_type at, int64_t K) {
    return at == SOV_TYPE_F32 ? (size_t)K * sizeof(float) : sov_row_size(at, K);
}

/* dst rows of head h, token i: dst[h * dst_head + i * ldy + r] = sum_j w[h * rows + r][j]
 * src[i * src_tok + h * src_head + j] for r < rows, j < K = w->n_cols: per head, a batch
 * product with that head's slice of the weight. */
static void head_products(const op_thread *t, const sov_weight *w, int H, int rows, const float *src,
                          size_t src_tok, size_t src_head, float *dst, size_t dst_head, size_t ldy, int T) {
    sov_context *c = t->c;
    const sov_kernels *k = c->k;
    const int64_t K = w->n_cols;
    const sov_type at = sov_type_info(w->type)->act_type;
    const size_t lda = act_stride(at, K);
    long b, e;
    /* 1. gather each head's inputs, head-major, in the weight's activation format */
    sov_split_range((long)H * T, 1, t->ith, t->nth, &b, &e);
    for (long r = b; r < e; r++) {
        const long h = r / T, i = r % T;
        float *row = c->mla_in + r * K;
        memcpy(row, src + (size_t)i * src_tok + (size_t)h * src_head, (size_t)K * sizeof(float));
        char *y = (char *)c->mla_act + (size_t)r * lda;
        if (at == SOV_TYPE_Q8A)
            k->quantize_q8a(row, y, K);
        else if (at == SOV_TYPE_Q8K)
            k->quantize_q8k(row, y, K);
        else if (at == SOV_TYPE_Q8P)
            k->quantize_q8p(row, y, K);
    }
    barrier(t);
    /* 2. items (head, block of HEAD_ROWS output rows), split evenly */
    const void *a = at == SOV_TYPE_F32 ? (const void *)c->mla_in : c->mla_act;
    const sov_gemm_fn gemm = k->gemm[w->type];
    const int blocks = (rows + HEAD_ROWS - 1) / HEAD_ROWS;
    sov_split_range((long)H * blocks, 1, t->ith, t->nth, &b, &e);
    for (long it = b; it < e; it++) {
        const int h = (int)(it / blocks), r0 = (int)(it % blocks) * HEAD_ROWS;
        const int nr = SOV_MIN(HEAD_ROWS, rows - r0);
        for (int i0 = 0; i0 < nr; i0 += ROW_TILE) {
            const int nri = SOV_MIN(ROW_TILE, nr - i0);
            const char *wr = (const char *)w->data + (size_t)((long)h * rows + r0 + i0) * w->row_bytes;
            for (int c0 = 0; c0 < T; c0 += COL_TILE) {
                const int nc = SOV_MIN(COL_TILE, T - c0);
                gemm(K, wr, w->row_bytes, nri, (const char *)a + ((size_t)h * T + c0) * lda, lda, nc,
                     dst + (size_t)h * dst_head + (size_t)c0 * ldy + (size_t)(r0 + i0), ldy);
            }
        }
    }
    barrier(t);
}

/* RoPE of the n_rot values at v with the cos/sin pairs cs (the model's pairing). */
static void rope_part(const sov_hparams *hp, float *v, const float *cs) {
    const int half = hp->n_rot / 2;
    const bool neox = hp->rope_order == SOV_ROPE_NEOX;
    for (int j = 0; j < half; j++) {
        const int i0 = neox ? j : 2 * j, i1 = neox ? j + half : 2 * j + 1;
        const float x0 = v[i0], x1 = v[i1], cth = cs[2 * j], sth = cs[2 * j + 1];
        v[i0] = x0 * cth - x1 * sth;
        v[i1] = x0 * sth + x1 * cth;
    }
}

/* Causal attention among the batch's own latent rows (c->kx), for blocks without a
 * cache (the MTP blocks): row i, one sequence's consecutive positions, attends to rows
 * 0..i, MQA over one head of L + R as op_attention does, with an online softmax. */
static void attend_in_batch(const op_thread *t, int T) {
    sov_context *c = t->c;
    const sov_hparams *hp = &c->model->hp;
    const int H = hp->n_head, Dc = hp->n_lora_kv + hp->n_rot;
    long b, e;
    sov_split_range((long)T * H, 1, t->ith, t->nth, &b, &e);
    for (long r = b; r < e; r++) {
        const long i = r / H;
        const float *q = c->q + (size_t)r * Dc;
        float *o = c->att + (size_t)r * Dc;
        memset(o, 0, (size_t)Dc * sizeof(float));
        float mx = -INFINITY, sum = 0.0f;
        for (long j = 0; j <= i; j++) {
            const float *kv = c->kx + (size_t)j * Dc;
            const float s = c->k->dot_f32(q, kv, Dc) * hp->attn_scale;
            if (s > mx) { /* rescale what was summed so far to the new maximum */
                const float f = expf(mx - s);
                c->k->scale(o, f, Dc);
                sum *= f;
                mx = s;
            }
            const float p = expf(s - mx);
            sum += p;
            c->k->axpy_f32(o, p, kv, Dc);
        }
        c->k->scale(o, 1.0f / sum, Dc);
    }
    barrier(t);
}

static void mla_attention(const op_thread *t, int il, const float *xb, int T, bool cached);

void op_mla_attention(const op_thread *t, int il, const float *xb, int T) { mla_attention(t, il, xb, T, true); }

void op_mla_attention_in_batch(const op_thread *t, int il, const float *xb, int T) {
    mla_attention(t, il, xb, T, false);
}

static void mla_attention(const op_thread *t, int il, const float *xb, int T, bool cached) {
    sov_context *c = t->c;
    const sov_hparams *hp = &c->model->hp;
    const sov_layer *L = &c->model->layers[il];
    const int H = hp->n_head, Dq = hp->n_embd_head_qk, R = hp->n_rot, nope = Dq - R;
    const int Lr = hp->n_lora_kv, Dc = Lr + R, Dv = hp->n_embd_head_v;

    /* 1. queries (T, H*Dq) and the latent rows [c, r] (T, L + R) */
    if (L->wq_a.data) {
        const op_matmul a[2] = {{&L->wq_a, c->mla_qa, NULL, false}, {&L->wkv_a, c->kx, NULL, false}};
        op_matmuls(t, xb, T, a, 2);
        op_rmsnorm(t, c->mla_qa, c->mla_qa, L->q_a_norm, T, hp->n_lora_q);
        const op_matmul qb = {&L->wq_b, c->mla_q, NULL, false};
        op_matmuls(t, c->mla_qa, T, &qb, 1);
    } else {
        const op_matmul a[2] = {{&L->wq, c->mla_q, NULL, false}, {&L->wkv_a, c->kx, NULL, false}};
        op_matmuls(t, xb, T, a, 2);
    }

    /* 2. normalise the latent, rotate the shared key part and each head's q_pe, which
     *    goes to the tail of its absorbed query */
    long b, e;
    sov_split_range(T, 1, t->ith, t->nth, &b, &e);
    for (long i = b; i < e; i++) {
        float *kv = c->kx + i * Dc;
        const float *cs = c->rope + i * hp->n_rot;
        c->k->rmsnorm(kv, kv, L->kv_a_norm, Lr, hp->rms_eps);
        rope_part(hp, kv + Lr, cs);
        for (int h = 0; h < H; h++) {
            float *qpe = c->mla_q + ((size_t)i * H + h) * Dq + nope;
            rope_part(hp, qpe, cs);
            memcpy(c->q + ((size_t)i * H + h) * Dc + Lr, qpe, (size_t)R * sizeof(float));
        }
    }
    barrier(t);

    /* 3. absorbed queries: q[i, h, 0:L] = k_b_h q_nope[i, h] */
    head_products(t, &L->wk_b, H, Lr, c->mla_q, (size_t)H * Dq, (size_t)Dq, c->q, (size_t)Dc, (size_t)H * Dc,
                  T);

    /* 4. cache the latent rows (as key and value), attend: MQA over one head of L + R */
    if (cached) {
        op_kv_store(t, il, c->kx, c->kx, T);
        op_attention(t, il, c->q, c->att, T);
    } else {
        attend_in_batch(t, T);
    }

    /* 5. decompress each head's output: mla_o[i, h] = v_b_h att[i, h, 0:L] */
    head_products(t, &L->wv_b, H, Dv, c->att, (size_t)H * Dc, (size_t)Dc, c->mla_o, (size_t)Dv,
                  (size_t)H * Dv, T);
}
