/* moe.h - the mixture-of-experts feed-forward block (Mixtral, Qwen3-MoE, nomic-bert-moe);
 * see moe.c. */
#ifndef SOV_MODEL_MOE_H
#define SOV_MODEL_MOE_H

#include "model/ops.h"

/* x(T, E) += sum over the k experts each token is routed to of
 *   weight * down_e(silu(gate_e(xb)) * up_e(xb))
 * for layer il, with xb(T, E) its normalised input; a layer without gate experts
 * (gate_exps.data NULL) uses weight * down_e(gelu_erf(up_e(xb))) instead. x may be xb
 * (x = xb + moe(xb)). Run by all threads of the pool job, like the ops of ops.h. */
void op_moe(const op_thread *t, int il, float *x, const float *xb, int T);

#endif
