/* sample.h - internal sampling helpers beyond the public sampler (for the server). */
#ifndef SOV_SAMPLE_H
#define SOV_SAMPLE_H

#include "sov.h"

/* OpenAI logprobs: log-softmax at temperature 1 of logits (as sov_sampler_sample left
 * them: bias and penalties applied). Writes the chosen token's log-probability, and the
 * top_n most likely tokens with theirs, most likely first. Returns how many were written
 * (min(top_n, n_vocab)). */
int32_t sov_sampler_logprobs(const float *logits, int32_t n_vocab, sov_token chosen, int32_t top_n,
                             sov_token *top_ids, float *top_logprobs, float *chosen_logprob);

#endif
