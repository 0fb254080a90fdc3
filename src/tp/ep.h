/* ep.h - expert parallelism's part of the forward pass (ep.c, docs/TP.md "--ep"). */
#ifndef SOV_TP_EP_H
#define SOV_TP_EP_H

#include "model/ops.h"

/* Step 7 of op_moe (moe.c) when the routed experts are split across ranks, where this rank
 * computed only the pairs of its own experts (in c->moe_x at their sorted rows). Needs the
 * batch's full routing (moe_sel, moe_w, moe_row, moe_tok, moe_start), the same on every
 * rank. Run by all threads of the job.
 *
 * A batch whose T*k pair outputs fit tp_gather_bytes (decode steps): one MPI_Allgatherv
 * gives every rank every pair's output in c->moe_x, and it returns false: step 7 then runs
 * as in one process. Larger batches: x(T, E) += the weighted sum of each token's k expert
 * outputs, in the token's choice order, made by the token's owner rank (the batch cut in R
 * contiguous ranges), which is sent the other ranks' outputs of its tokens
 * (MPI_Alltoallv); then every rank gets the owners' rows of x (MPI_Allgatherv); returns
 * true. */
bool ep_combine(const op_thread *t, float *x, int T);

#endif
