/* moe_shared.c - shared experts and grouped routing (see moe_shared.h).
 *
 * Shared expert (Qwen1.5/Qwen2-MoE, DeepSeek-V2/V3): beside the k routed experts, every
 * token goes through one more SwiGLU FFN (DeepSeek's n shared experts are stored as one
 * FFN n times as wide). Qwen2-MoE scales its output by sigmoid(xb . w) per token
 * (transformers' Qwen2MoeSparseMoeBlock.shared_expert_gate); DeepSeek adds it as is. The
 * products are the dense ones of ops.c, so every kernel table runs them.
 *
 * Grouped routing (DeepSeek-V3's noaux_tc, as llama.cpp applies it to every deepseek2
 * file with expert groups): the X experts form G groups of X/G; a group's score is the
 * sum of its two best selection scores; the best n_group_used groups stay, the others'
 * experts cannot be chosen; then the k best experts. The bias exp_probs_b only moves the
 * choice; the weights are the unbiased gate values. */
#include "model/moe_shared.h"

#include <math.h>
#include <string.h>

#include "core/util.h"

enum { MAX_EXPERTS = 4096 }; /* model.c refuses more */

void op_moe_shared(const op_thread *t, int il, float *x, const float *xb, int T) {
    sov_context *c = t->c;
    const sov_hparams *hp = &c->model->hp;
    const sov_layer *L = &c->model->layers[il];
    const int64_t E = hp->n_embd, Fs = hp->n_ff_shexp;
    const op_matmul gate_up[2] = {
        {&L->gate_shexp, c->hg, NULL, false},
        {&L->up_shexp, c->hu, NULL, false},
    };
    op_matmuls(t, xb, T, gate_up, 2);
    op_silu_mul(t, c->hg, c->hu, T, Fs);
    const op_matmul down = {&L->down_shexp, c->tmp, NULL, false};
    op_matmuls(t, c->hg, T, &down, 1);
    long b, e;
    sov_split_range(T, 1, t->ith, t->nth, &b, &e);
    for (long i = b; i < e; i++) {
        float g = 1.0f;
        if (L->gate_inp_shexp) {
            double dot = 0.0;
            for (int64_t j = 0; j < E; j++)
                dot += (double)xb[i * E + j] * (double)L->gate_inp_shexp[j];
            g = (float)(1.0 / (1.0 + exp(-dot)));
        }
        c->k->axpy_f32(x + i * E, g, c->tmp + i * E, E);
    }
    sov_pool_barrier(c->pool);
}

/* The index of the largest s[lo..hi) not yet taken (taken[i] set), ties to the lower
 * index; -1 when every one left is -inf. */
static int best_of(const float *s, const bool *taken, int lo, int hi) {
    int best = -1;
    for (int e = lo; e < hi; e++) {
        if (taken[e] || s[e] == -INFINITY) continue;
        if (best < 0 || s[e] > s[best]) best = e;
    }
    return best;
}

void moe_route_grouped(const sov_hparams *hp, const float *bias, const float *p, int32_t *sel, float *w) {
    const int X = hp->n_expert, k = hp->n_expert_used, G = hp->n_expert_groups;
    float s[MAX_EXPERTS];
    bool taken[MAX_EXPERTS];
    for (int e = 0; e < X; e++) {
        const float v = p[e] + (bias ? bias[e] : 0.0f);
        s[e] = isnan(v) ? -INFINITY : v;
        taken[e] = false;
    }
    if (G > 1) {
        const int per = X / G;
        float gs[MAX_EXPERTS / 2];
        bool keep[MAX_EXPERTS / 2];
        for (int g = 0; g < G; g++) {
            float b1 = -INFINITY, b2 = -INFINITY;
            for (int e = g * per; e < (g + 1) * per; e++) {
                if (s[e] > b1) {
                    b2 = b1;
                    b1 = s[e];
                } else if (s[e] > b2) {
                    b2 = s[e];
                }
            }
            gs[g] = b1 + b2;
            keep[g] = false;
        }
        for (int j = 0; j < hp->n_group_used; j++) {
            int best = -1;
            for (int g = 0; g < G; g++)
                if (!keep[g] && (best < 0 || gs[g] > gs[best] || (isnan(gs[best]) && !isnan(gs[g]))))
                    best = g;
            keep[best] = true;
        }
        for (int g = 0; g < G; g++)
            if (!keep[g])
                for (int e = g * per; e < (g + 1) * per; e++)
                    s[e] = -INFINITY;
    }
    float sum = 0.0f;
    for (int j = 0; j < k; j++) {
        int best = best_of(s, taken, 0, X);
        if (best < 0) /* only -inf left (NaN scores): the lowest expert not taken */
            for (best = 0; taken[best]; best++) {
            }
        taken[best] = true;
        sel[j] = best;
        w[j] = isfinite(p[best]) ? p[best] : 0.0f;
        sum += w[j];
    }
    /* llama.cpp divides by the sum clamped to F16's smallest normal */
    if (hp->expert_weights_norm) sum = SOV_MAX(sum, 6.103515625e-5f);
    const float f = (hp->expert_weights_norm ? 1.0f / sum : 1.0f) * hp->expert_weights_scale;
    for (int j = 0; j < k; j++)
        w[j] *= f;
}
