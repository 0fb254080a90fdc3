/* sample.h - internal sampling helpers beyond the public sampler, for the server.
 *
 * OpenAI's logprobs: for each generated token, its log-probability and the top_logprobs
 * most likely alternatives, where "probability" is the model's distribution at
 * temperature 1 after logit bias and penalties, over the whole vocabulary, before any
 * top-k/top-p/min-p truncation or temperature (those shape the draw, not what the
 * model said). sov_sampler_sample leaves exactly those adjusted logits in the array it
 * was given, so the call sequence is:
 *
 *     sov_token t = sov_sampler_sample(smp, logits);       // logits now adjusted
 *     sov_sampler_logprobs(logits, n_vocab, t, n, ids, lps, &lp);
 *     sov_sampler_accept(smp, t);
 *
 * A pure function of the row: no sampler state is read, so it also serves prompt
 * logprobs (echo) on raw logits. */
#ifndef SOV_SAMPLE_H
#define SOV_SAMPLE_H

#include "sov.h"

/* Log-softmax of logits[0..n_vocab) (NaN counts as -inf). Writes *chosen_logprob (when
 * not NULL): log p(chosen), -inf if chosen is outside the vocabulary or banned. Writes
 * the up to top_n most likely tokens to top_ids[] and their log-probabilities to
 * top_logprobs[] (when not NULL), most likely first, the lower id first among equals;
 * banned (-inf) tokens are never listed (JSON cannot carry -inf), so fewer than top_n
 * come back when fewer are possible. Returns how many were written. O(n_vocab * top_n)
 * in the worst case, O(n_vocab) in practice. */
int32_t sov_sampler_logprobs(const float *logits, int32_t n_vocab, sov_token chosen, int32_t top_n,
                             sov_token *top_ids, float *top_logprobs, float *chosen_logprob);

#endif
