/* context.h - the state of a running model: KV cache, sequences, activation buffers,
 * worker threads. Internal to the model module (the public handle is sov_context).
 *
 * T below is the context's n_batch (most tokens per decode call); E, H, Hkv, D, F are
 * the model's width, query heads, KV heads, head size and feed-forward width. */
#ifndef SOV_MODEL_CONTEXT_H
#define SOV_MODEL_CONTEXT_H

#include "core/threadpool.h"
#include "kernels/kernels.h"
#include "kv/kv.h"
#include "model/model.h"

struct sov_context {
    const sov_model *model;
    const sov_kernels *k;
    sov_pool *pool;
    int n_threads;
    sov_context_params p;   /* resolved parameters (no zeros left) */

    sov_kv kv;
    kv_seq *seqs;           /* [n_seq_max] */

    /* activations of one batch: views into one mapping (context.c's arena) */
    uint8_t *arena;
    size_t arena_bytes;
    float *x;               /* (T, E) residual stream */
    float *xb;              /* (T, E) normalised input of a block */
    float *q;               /* (T, H*D) queries */
    float *kx;              /* (T, Hkv*D) new keys */
    float *vx;              /* (T, Hkv*D) new values */
    float *att;             /* (T, H*D) attention output */
    float *hg;              /* (T, F) gate projection, then silu(gate) * up */
    float *hu;              /* (T, F) up projection */
    float *tmp;             /* (T, E) projection result before it joins the residual */
    float *rope;            /* (T, n_rot) cos, sin pairs of each token's position */
    float *rope_local;      /* (T, n_rot) the same with rope.freq_base_swa (gemma3's local layers) */
    void *act_q8a;          /* (T, max K) activations quantized to Q8A */
    void *act_q8k;          /* (T, max K) activations quantized to Q8K */
    void *act_q8p;          /* (T, max K) activations quantized to Q8P (planar weights) */
    float *attn_scratch;    /* [n_threads] x attn_scratch_stride: tile scores, dequantized
                               K/V of a block, one running state (kernels/attn_tiled.h) */
    size_t attn_scratch_stride; /* floats per thread in attn_scratch */
    float *attn_partials;   /* split-K states (op_attention_partials_floats) */
    float *scores;          /* encoders: [n_threads] x (n_ctx) attention scores of one row */
    size_t scores_stride;   /* floats per thread in scores (0 for decoders) */
    float yarn_corr[2];     /* YaRN correction dimensions */

    /* mixture of experts (moe.c), empty for dense models. X experts, k used per token,
     * Fx an expert's FFN width; R = T * k rows, a batch's (token, expert) pairs sorted by
     * expert so that each expert multiplies all its rows at once */
    float *moe_logits;      /* (T, X) router logits, then gate probabilities */
    int32_t *moe_sel;       /* (T, k) the experts of each token, best first */
    float *moe_w;           /* (T, k) their weights */
    int32_t *moe_row;       /* (T, k) the sorted row of each (token, choice) */
    int32_t *moe_tok;       /* (R) the token of each sorted row */
    int32_t *moe_start;     /* (X + 1) first sorted row of each expert */
    int32_t *moe_active;    /* (X) experts with at least one row, then their count */
    float *moe_x;           /* (R, E) inputs of the sorted rows, later the experts' outputs */
    float *moe_g;           /* (R, Fx) gate projection, then silu(gate) * up */
    float *moe_u;           /* (R, Fx) up projection */
    void *moe_act;          /* (R, max(E, Fx)) rows in the weights' activation format */
    _Atomic int moe_next[2];/* next work item of the gate/up and of the down products */
    /* deepseek2 multi-head latent attention (mla.c), empty for other models. Dq = nope +
     * rope, L = kv_lora_rank, Dv the value head, Kh = max(nope, L) */
    float *mla_qa;          /* (T, q_lora) q_a projection, then normalised */
    float *mla_q;           /* (T, H*Dq) queries before absorption */
    float *mla_in;          /* (H*T, Kh) per-head inputs of the absorbing products, head-major */
    void *mla_act;          /* (H*T, Kh) the same in the weights' activation format */
    float *mla_o;           /* (T, H*Dv) decompressed attention output */

    /* per-token view of the batch being decoded */
    int32_t *tok_pos;       /* (T) position */
    const int32_t **tok_blocks; /* (T) block table of the token's sequence */
    int32_t *attn_grp;      /* (T + 1) op_attention: starts of runs of consecutive tokens of
                               one sequence (at most op_attention_group tokens each), then T */
    int n_attn_grp;         /* runs in attn_grp */
    int32_t *out_rows;      /* (T) batch indices of tokens whose logits are wanted */
    int32_t *embd_rows;     /* (T) batch indices of tokens whose hidden states are wanted */
    int32_t *seq_next;      /* [n_seq_max] scratch of sov_decode's validation */
    bool tp_sent;           /* rank 0 of a split model (tp/tp.h): the other ranks made this
                               context too, and are sent each change of its state */
};

/* Runs the forward pass for a validated batch whose KV blocks are reserved (forward.c):
 * n_out rows of logits (out_rows) and n_embd_out rows of final hidden states (embd_rows). */
void sov_forward(sov_context *c, const sov_batch *b, int n_out, float *logits, int n_embd_out, float *embd);

#endif
