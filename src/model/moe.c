/* moe.c - the mixture-of-experts feed-forward block: routing and grouped expert products.
 *
 * An MoE layer replaces the dense SwiGLU FFN by X experts (each a SwiGLU FFN of width Fx)
 * and a router. Per token (Mixtral, Qwen3-MoE as in transformers and llama.cpp):
 *
 *   p   = softmax(xb Wr^T)                 (X) gate probabilities (or sigmoid: gating 2)
 *   S   = the k experts of largest p, best first; ties go to the lower index
 *   w_j = p[S_j] / sum_j p[S_j]            (without renormalisation: w_j = p[S_j])
 *   x  += sum_j w_j * down_Sj(silu(gate_Sj(xb)) * up_Sj(xb))
 *
 * A layer without gate experts (gate_exps.data NULL: nomic-bert-moe, llama.cpp's
 * LLM_FFN_GELU without a gate) has plain expert MLPs instead:
 *
 *   x  += sum_j w_j * down_Sj(gelu_erf(up_Sj(xb)))
 *
 * Cost follows the active parameters: the batch's T*k (token, expert) pairs are sorted
 * by expert (R rows), and each expert that has rows multiplies its weights once over all
 * of them (a grouped GEMM with the same gemm kernels as the dense products, on the
 * expert's slice of the 3-D tensor). Experts nobody chose are never read, so a decode
 * step reads k of X experts. The work is cut into items (expert, block of MOE_ROWS
 * output rows) that threads claim from an atomic counter, so a thread that drew a lightly
 * used expert takes the next item instead of waiting.
 *
 * Determinism: every output value is computed by one item with the same instructions
 * whatever else is in the batch (the gemm tiles equal single dot products, quantizing a
 * row depends only on the row, blocks sit at fixed offsets), and each token sums its k
 * expert outputs in its own order S; so a sequence's logits do not depend on which other
 * sequences share the batch, or on the number of threads.
 *
 * Experts split across ranks (--ep, tp/ep.c): every rank routes and sorts the whole
 * batch, runs steps 3-6 only for its experts [lo, hi) (whose sorted rows are the one
 * range [start[lo], start[hi]); its weight tensors hold only those experts), and
 * ep_combine exchanges the pair outputs between the ranks before (or instead of) step 7. */
#include "model/moe.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "core/util.h"
#include "model/moe_shared.h"
#include "tp/ep.h"
#include "tp/tp.h"

enum {
    MOE_ROWS = 64, /* output rows of one work item (a multiple of ROW_TILE) */
    ROW_TILE = 16, /* gemm tile: weight rows x tokens, as ops.c */
    COL_TILE = 8,
};

static void barrier(const op_thread *t) { sov_pool_barrier(t->c->pool); }

/* The k experts of largest p (ties: lower index) into sel, their weights into w. */
static void route_token(const sov_hparams *hp, float *p, int32_t *sel, float *w) {
    const int X = hp->n_expert, k = hp->n_expert_used;
    float sum = 0.0f;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < X; e++) {
            if (p[e] == -INFINITY) continue; /* taken */
            if (best < 0 || p[e] > p[best]) best = e;
        }
        if (best < 0) { /* only NaN or -inf left: the lowest expert not taken */
            for (best = 0; best < X; best++) {
                bool taken = false;
                for (int i = 0; i < j; i++) taken |= sel[i] == best;
                if (!taken) break;
            }
        }
        sel[j] = best;
        w[j] = isfinite(p[best]) ? p[best] : 0.0f;
        sum += w[j];
        p[best] = -INFINITY;
    }
    if (hp->expert_weights_norm && sum > 0.0f)
        for (int j = 0; j < k; j++) w[j] /= sum;
}

/* Quantizes (or copies) n rows of K floats into the activation format at of a weight;
 * returns the row stride in bytes of the result (which for F32 is src itself). */
static size_t act_stride(sov_type at, int64_t K) {
    return at == SOV_TYPE_F32 ? (size_t)K * sizeof(float) : sov_row_size(at, K);
}

static void quantize_rows(const sov_kernels *k, sov_type at, const float *src, void *dst, long b, long e,
                          int64_t K) {
    const size_t ld = act_stride(at, K);
    for (long r = b; r < e; r++) {
        const float *x = src + r * K;
        char *y = (char *)dst + (size_t)r * ld;
        if (at == SOV_TYPE_Q8A) k->quantize_q8a(x, y, K);
        else if (at == SOV_TYPE_Q8K) k->quantize_q8k(x, y, K);
        else if (at == SOV_TYPE_Q8P) k->quantize_q8p(x, y, K);
    }
}

/* y rows [s0, s0+ns) of ldy floats, columns [r0, r0+nr) = rows [s0, ...) of a times weight
 * rows [wrow0, wrow0+nr) of w, in gemm tiles. */
static void grouped_gemm(const sov_kernels *k, const sov_weight *w, long wrow0, int nr, const void *a, size_t lda,
                         int s0, int ns, float *y, size_t ldy, long r0) {
    const sov_gemm_fn gemm = k->gemm[w->type];
    for (int i0 = 0; i0 < nr; i0 += ROW_TILE) {
        const int nri = SOV_MIN(ROW_TILE, nr - i0);
        const char *wr = (const char *)w->data + (size_t)(wrow0 + i0) * w->row_bytes;
        for (int c0 = 0; c0 < ns; c0 += COL_TILE) {
            const int nc = SOV_MIN(COL_TILE, ns - c0);
            gemm(w->n_cols, wr, w->row_bytes, nri, (const char *)a + (size_t)(s0 + c0) * lda, lda, nc,
                 y + (size_t)(s0 + c0) * ldy + (size_t)(r0 + i0), ldy);
        }
    }
}

void op_moe(const op_thread *t, int il, float *x, const float *xb, int T) {
    sov_context *c = t->c;
    const sov_kernels *k = c->k;
    const sov_hparams *hp = &c->model->hp;
    const sov_layer *L = &c->model->layers[il];
    const int X = hp->n_expert, K = hp->n_expert_used, R = T * K;
    const int64_t E = hp->n_embd, Fx = hp->n_ff_exp;
    long b, e;
    int lo, hi; /* the experts this rank computes, X of them in one process (--ep: ep.c) */
    ep_experts(c->model->tp, X, &lo, &hi);

    /* 1. router logits (T, X), then each token's experts and weights */
    const op_matmul router = {&L->router, c->moe_logits, NULL, false};
    op_matmuls(t, xb, T, &router, 1);
    sov_split_range(T, 1, t->ith, t->nth, &b, &e);
    for (long i = b; i < e; i++) {
        float *p = c->moe_logits + i * X;
        if (hp->expert_gating == SOV_MOE_SIGMOID)
            for (int j = 0; j < X; j++) p[j] = 1.0f / (1.0f + expf(-p[j]));
        else
            k->softmax(p, X);
        if (L->exp_probs_b || hp->n_expert_groups > 1 || hp->expert_weights_scale != 1.0f) /* deepseek2 */
            moe_route_grouped(hp, L->exp_probs_b, p, c->moe_sel + i * K, c->moe_w + i * K);
        else
            route_token(hp, p, c->moe_sel + i * K, c->moe_w + i * K);
    }
    barrier(t);

    /* 2. sort the (token, choice) pairs by expert (counting sort, one thread: R is small) */
    if (t->ith == 0) {
        int32_t *start = c->moe_start, *active = c->moe_active;
        memset(start, 0, (size_t)(X + 1) * sizeof *start);
        for (int r = 0; r < R; r++) start[c->moe_sel[r] + 1]++;
        int n_active = 0;
        for (int x_ = 0; x_ < X; x_++) {
            if (start[x_ + 1] > 0 && x_ >= lo && x_ < hi) active[n_active++] = x_;
            start[x_ + 1] += start[x_];
        }
        active[X] = n_active;
        /* fill each expert's rows in token order (start[] is restored below) */
        for (int r = 0; r < R; r++) {
            const int32_t row = start[c->moe_sel[r]]++;
            c->moe_tok[row] = r / K;
            c->moe_row[r] = row;
        }
        for (int x_ = X; x_ > 0; x_--) start[x_] = start[x_ - 1];
        start[0] = 0;
        atomic_store_explicit(&c->moe_next[0], 0, memory_order_relaxed);
        atomic_store_explicit(&c->moe_next[1], 0, memory_order_relaxed);
    }
    barrier(t);

    /* 3. gather the inputs of the sorted rows (this rank's: [row0, row1)), in the gate/up
     *    weights' activation format */
    const bool gated = L->gate_exps.data != NULL; /* else the GELU expert: up, gelu, down */
    const sov_type at_in = sov_type_info(gated ? L->gate_exps.type : L->up_exps.type)->act_type;
    const long row0 = c->moe_start[lo], row1 = c->moe_start[hi];
    sov_split_range(row1 - row0, 1, t->ith, t->nth, &b, &e);
    b += row0, e += row0;
    for (long r = b; r < e; r++) memcpy(c->moe_x + r * E, xb + (size_t)c->moe_tok[r] * (size_t)E, (size_t)E * sizeof(float));
    quantize_rows(k, at_in, c->moe_x, c->moe_act, b, e, E);
    barrier(t);

    /* 4. gate and up products of each active expert over its rows, then silu(gate) * up
     *    (GELU expert: the up product into moe_g, then gelu); items (expert, block of
     *    MOE_ROWS of its Fx outputs) */
    const int n_active = c->moe_active[X];
    const void *a_in = at_in == SOV_TYPE_F32 ? (const void *)c->moe_x : c->moe_act;
    const size_t lda_in = act_stride(at_in, E);
    const int blocks_f = (int)((Fx + MOE_ROWS - 1) / MOE_ROWS);
    for (int it; (it = atomic_fetch_add_explicit(&c->moe_next[0], 1, memory_order_relaxed)) < n_active * blocks_f;) {
        const int ex = c->moe_active[it / blocks_f];
        const long wx = ex - lo; /* its place in this rank's weights */
        const long r0 = (long)(it % blocks_f) * MOE_ROWS;
        const int nr = (int)SOV_MIN(MOE_ROWS, Fx - r0);
        const int s0 = c->moe_start[ex], ns = c->moe_start[ex + 1] - s0;
        if (!gated) {
            grouped_gemm(k, &L->up_exps, wx * Fx + r0, nr, a_in, lda_in, s0, ns, c->moe_g, (size_t)Fx, r0);
            for (int s = s0; s < s0 + ns; s++) {
                float *g = c->moe_g + (size_t)s * (size_t)Fx + r0;
                k->gelu_erf(g, g, nr);
            }
            continue;
        }
        grouped_gemm(k, &L->gate_exps, wx * Fx + r0, nr, a_in, lda_in, s0, ns, c->moe_g, (size_t)Fx, r0);
        grouped_gemm(k, &L->up_exps, wx * Fx + r0, nr, a_in, lda_in, s0, ns, c->moe_u, (size_t)Fx, r0);
        for (int s = s0; s < s0 + ns; s++) {
            float *g = c->moe_g + (size_t)s * (size_t)Fx + r0;
            k->silu_mul(g, g, c->moe_u + (size_t)s * (size_t)Fx + r0, nr);
        }
    }
    barrier(t);

    /* 5. the hidden rows in the down weights' activation format */
    const sov_type at_h = sov_type_info(L->down_exps.type)->act_type;
    sov_split_range(row1 - row0, 1, t->ith, t->nth, &b, &e);
    quantize_rows(k, at_h, c->moe_g, c->moe_act, row0 + b, row0 + e, Fx);
    barrier(t);

    /* 6. down products into moe_x (R, E); items (expert, block of MOE_ROWS of E) */
    const void *a_h = at_h == SOV_TYPE_F32 ? (const void *)c->moe_g : c->moe_act;
    const size_t lda_h = act_stride(at_h, Fx);
    const int blocks_e = (int)((E + MOE_ROWS - 1) / MOE_ROWS);
    for (int it; (it = atomic_fetch_add_explicit(&c->moe_next[1], 1, memory_order_relaxed)) < n_active * blocks_e;) {
        const int ex = c->moe_active[it / blocks_e];
        const long r0 = (long)(it % blocks_e) * MOE_ROWS;
        const int nr = (int)SOV_MIN(MOE_ROWS, E - r0);
        const int s0 = c->moe_start[ex], ns = c->moe_start[ex + 1] - s0;
        grouped_gemm(k, &L->down_exps, (ex - lo) * E + r0, nr, a_h, lda_h, s0, ns, c->moe_x, (size_t)E, r0);
    }
    barrier(t);

    /* 7. x += the weighted sum of each token's expert outputs, in its choice order */
    if (tp_splits(c->model->tp, SOV_SPLIT_EXPERT) && ep_combine(t, x, T)) return;
    sov_split_range(T, 1, t->ith, t->nth, &b, &e);
    for (long i = b; i < e; i++) {
        float *acc = c->tmp + i * E;
        memset(acc, 0, (size_t)E * sizeof(float));
        for (int j = 0; j < K; j++)
            k->axpy_f32(acc, c->moe_w[i * K + j], c->moe_x + (size_t)c->moe_row[i * K + j] * (size_t)E, E);
        k->add(x + i * E, acc, E);
    }
    barrier(t);
}
