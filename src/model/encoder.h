/* encoder.h - BERT-family encoders (bert, nomic-bert, nomic-bert-moe): weights, loading and the forward
 * pass (encoder.c). Internal to the model module.
 *
 * An encoder has no KV cache and no LM head: every token attends to every token of its
 * own input (non-causal), so an input is computed in one batch, whole. sov_decode_embd
 * runs an encoder batch here when every sequence in it starts at position 0 and its
 * tokens are contiguous in the batch; sov_embed (embed.c) packs whole inputs for it.
 *
 * Shapes as in model.h: E width, F feed-forward width, H heads of D, V vocabulary,
 * P n_ctx_train (position embeddings). */
#ifndef SOV_MODEL_ENCODER_H
#define SOV_MODEL_ENCODER_H

#include <stdbool.h>

#include "model/model.h"

typedef struct enc_layer {
    sov_weight wq, wk, wv;        /* (E, E) each; row views into attn_qkv (3E, E) when fused */
    const float *bq, *bk, *bv;    /* (E) or NULL */
    sov_weight wo;                /* (E, E) */
    const float *bo;              /* (E) or NULL */
    const float *attn_norm_w;     /* (E) attn_output_norm: LayerNorm after attention + residual */
    const float *attn_norm_b;     /* (E) */
    sov_weight w_up;              /* (F, E); data NULL in a nomic-bert-moe expert layer, whose
                                     router and experts sit in the model's sov_layer table */
    const float *b_up;            /* (F) or NULL */
    sov_weight w_gate;            /* (F, E) nomic-bert (SwiGLU); data NULL for bert (GELU) */
    sov_weight w_down;            /* (E, F) */
    const float *b_down;          /* (E) or NULL */
    const float *out_norm_w;      /* (E) layer_output_norm: LayerNorm after FFN + residual */
    const float *out_norm_b;      /* (E) */
} enc_layer;

typedef struct sov_encoder {
    bool rope;                    /* nomic-bert: RoPE on q, k; bert: absolute positions */
    const float *type_row0;       /* (E) row 0 of token_types.weight (all tokens are
                                     "sentence A", as in llama.cpp), or NULL */
    sov_weight pos_embd;          /* (P, E) bert; data NULL for nomic-bert */
    const float *embd_norm_w;     /* (E) token_embd_norm */
    const float *embd_norm_b;     /* (E) */
    enc_layer *layers;            /* [n_layer] */
} sov_encoder;

/* Whether general.architecture names an encoder sov runs ("bert", "nomic-bert",
 * "nomic-bert-moe"). */
bool encoder_arch_name(const char *arch);

/* Hyperparameters of an encoder file (sov_hparams_read calls it for encoder names). The
 * LayerNorm epsilon goes to hp->rms_eps; nomic-bert-moe's experts to hp->n_expert,
 * n_expert_used, n_ff_exp (= n_ff), softmax gating without renormalisation. */
sov_status encoder_hparams_read(const gguf_file *f, const char *arch, sov_hparams *hp);

/* Maps the encoder's tensors into m->enc (the model loader calls it for encoders). */
sov_status encoder_map_tensors(sov_model *m);

/* Checks an encoder batch beyond sov_decode_embd's checks: no logits (n_out == 0), every
 * sequence's tokens contiguous and starting at position 0, positions inside the
 * position table (bert). */
sov_status encoder_check_batch(const sov_context *c, const sov_batch *b, int n_out);

/* The forward pass of a checked batch: final hidden states of rows c->embd_rows[0..n)
 * into embd (n, E). Errors: SOV_ERR_NOMEM. */
sov_status encoder_forward(sov_context *c, const sov_batch *b, int n_embd_out, float *embd);

/* sov_embed for encoders: whole inputs packed into batches of up to n_batch tokens.
 * Errors: SOV_ERR_CONTEXT when an input is longer than a batch or the position table. */
sov_status encoder_embed(sov_context *c, const sov_token *const *inputs, const int32_t *n_tokens,
                         int32_t n_inputs, float *out);

/* ---- model.c's tensor look-ups, shared with the encoder loader ---- */
sov_status model_find_weight(const gguf_file *f, const char *name, int64_t rows, int64_t cols, bool optional,
                             sov_weight *w);
sov_status model_find_vector(sov_model *m, const char *name, int64_t n, bool optional, const float **out);
/* the n_expert matrices (rows, cols) of a 3-D expert tensor as one view of n_expert * rows rows */
sov_status model_find_experts(const gguf_file *f, const char *name, int64_t n_expert, int64_t rows,
                              int64_t cols, sov_weight *w);

#endif
