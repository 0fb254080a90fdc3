/* mla.h - deepseek2's multi-head latent attention, in the absorbed form; see mla.c. */
#ifndef SOV_MODEL_MLA_H
#define SOV_MODEL_MLA_H

#include "model/ops.h"

/* The attention block of layer il over the batch's normalised input xb (T, E), up to the
 * output projection: c->mla_o (T, H*Dv) holds the heads' decompressed outputs, which the
 * caller multiplies by attn_output. Stores the batch's latent rows in the KV cache. Run
 * by all threads of the pool job. */
void op_mla_attention(const op_thread *t, int il, const float *xb, int T);

/* The same without the cache: the T rows, consecutive positions of one sequence, attend
 * causally among themselves (a deepseek2 MTP block, sov_mtp_logits). */
void op_mla_attention_in_batch(const op_thread *t, int il, const float *xb, int T);

#endif
