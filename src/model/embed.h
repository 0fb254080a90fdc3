/* embed.h - pooling the final hidden states of an input's tokens into one embedding.
 *
 * The pooled vector is built as the tokens' hidden states arrive (a long input arrives in
 * several batches under chunked prefill): embed_pool_add folds in the rows the pooling
 * wants (sov_pooling_wants), embed_pool_finish L2-normalises. Mean pooling only sums:
 * dividing by the count would not change the direction, and the L2 norm removes scale.
 * Shared by sov_embed (embed.c) and the scheduler's embedding requests (sched.c). */
#ifndef SOV_MODEL_EMBED_H
#define SOV_MODEL_EMBED_H

#include <stdint.h>

#include "sov.h"

/* acc (E) += h (E) when the pooling wants position pos of an input of n tokens. */
void embed_pool_add(int32_t pooling, double *acc, const float *h, int32_t pos, int32_t n, int32_t E);

/* out (E) = acc / |acc| (zeros stay zeros). */
void embed_pool_finish(const double *acc, int32_t E, float *out);

#endif
