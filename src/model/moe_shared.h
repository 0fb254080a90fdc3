/* moe_shared.h - the parts of DeepSeek- and Qwen2-MoE-style expert layers beyond moe.c's
 * routed experts: the shared expert, and grouped top-k routing with a selection bias. */
#ifndef SOV_MODEL_MOE_SHARED_H
#define SOV_MODEL_MOE_SHARED_H

#include "model/ops.h"

/* x(T, E) += g * down_s(silu(gate_s(xb)) * up_s(xb)) for layer il's shared expert, with
 * g = sigmoid(xb . ffn_gate_inp_shexp) per token (qwen2moe) or 1 (deepseek2). Run by all
 * threads of the pool job. */
void op_moe_shared(const op_thread *t, int il, float *x, const float *xb, int T);

/* One token's experts as llama.cpp's build_moe_ffn chooses them for deepseek2: selection
 * scores s = p + bias (bias may be NULL); with n_expert_groups > 1, only the
 * n_group_used groups of largest (sum of their two best s) compete; the k experts of
 * largest s (ties: lower index) into sel, best first; their weights are p (without the
 * bias), renormalised when hp->expert_weights_norm, times hp->expert_weights_scale. */
void moe_route_grouped(const sov_hparams *hp, const float *bias, const float *p, int32_t *sel, float *w);

#endif
