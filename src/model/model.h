/* model.h - a loaded model: hyperparameters and weight views into the GGUF mapping.
 *
 * Shapes are written as (rows, columns) in the order the data is laid out: a weight of
 * shape (N, K) is N rows of K contiguous values, GGUF ne = [K, N], and multiplies an
 * activation x of K values into N outputs. Vectors are (n). */
#ifndef SOV_MODEL_H
#define SOV_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "sov.h"

typedef enum sov_arch {
    SOV_ARCH_LLAMA,
    SOV_ARCH_QWEN2,
    SOV_ARCH_MISTRAL,
    SOV_ARCH_QWEN3,
    SOV_ARCH_GEMMA3,
    SOV_ARCH_PHI3,
    SOV_ARCH_EXAONE4,
    SOV_ARCH_QWEN3MOE,
    SOV_ARCH_QWEN2MOE,  /* qwen2 attention, experts + a sigmoid-gated shared expert */
    SOV_ARCH_DEEPSEEK2, /* MLA attention (mla.c), leading dense layers, grouped routing */
    SOV_ARCH_BERT, /* encoders (encoder.h) */
    SOV_ARCH_NOMIC_BERT,
} sov_arch;

/* The gated MLP's activation: silu(gate) * up, or gelu_tanh(gate) * up (gemma3). */
typedef enum sov_ffn_act { SOV_FFN_SILU, SOV_FFN_GELU_TANH } sov_ffn_act;

/* Which RoPE a layer applies: the model's (global) one, the sliding-window layers' own
 * base (gemma3's local layers), or none (exaone4's global layers: NoPE). */
typedef enum sov_layer_rope { SOV_LAYER_ROPE_GLOBAL, SOV_LAYER_ROPE_LOCAL, SOV_LAYER_ROPE_NONE } sov_layer_rope;

/* How router logits become expert weights: softmax over all experts, or each logit's
 * sigmoid (<arch>.expert_gating_func 1 / 2). */
typedef enum sov_moe_gating { SOV_MOE_SOFTMAX = 1, SOV_MOE_SIGMOID = 2 } sov_moe_gating;

/* RoPE pairing: NORM rotates adjacent pairs (x[2i], x[2i+1]) (llama/mistral GGUFs, whose
 * q/k rows the converter permuted); NEOX rotates (x[i], x[i + n_rot/2]) (qwen2, qwen3). */
typedef enum sov_rope_order { SOV_ROPE_NORM, SOV_ROPE_NEOX } sov_rope_order;
typedef enum sov_rope_scaling { SOV_ROPE_SCALING_NONE, SOV_ROPE_SCALING_LINEAR, SOV_ROPE_SCALING_YARN } sov_rope_scaling;

typedef struct sov_hparams {
    sov_arch arch;
    const char *arch_name;   /* general.architecture */
    int32_t n_vocab;
    int32_t n_embd;          /* model width E */
    int32_t n_layer;
    int32_t n_head;          /* query heads H */
    int32_t n_head_kv;       /* key/value heads Hkv; H % Hkv == 0 */
    int32_t head_dim;        /* D */
    int32_t n_ff;            /* feed-forward width F */
    int32_t n_ctx_train;
    float rms_eps;
    /* RoPE */
    int32_t n_rot;           /* dimensions rotated per head (<= D, even) */
    float rope_base;         /* rope.freq_base */
    sov_rope_order rope_order;
    sov_rope_scaling rope_scaling;
    float rope_freq_scale;   /* 1 / rope.scaling.factor (1 when none) */
    int32_t rope_orig_ctx;   /* rope.scaling.original_context_length (yarn) */
    float yarn_ext_factor, yarn_attn_factor, yarn_beta_fast, yarn_beta_slow;
    /* per-architecture variants (defaults give llama) */
    sov_ffn_act ffn_act;     /* SILU; GELU_TANH for gemma3 */
    float embd_scale;        /* the embedding row is multiplied by it: 1; sqrt(E) for gemma3 */
    float attn_scale;        /* q.k multiplier: 1/sqrt(D); gemma3-27B 1/sqrt(E/H) */
    int32_t n_swa;           /* sliding window: a query at p sees keys p-n_swa+1..p on the
                                layers marked swa; 0 when no layer is */
    float rope_base_swa;     /* rope.freq_base_swa: the local layers' base (gemma3: 10000) */
    int32_t pooling;         /* <arch>.pooling_type (sov_pooling; MEAN when absent), kept as
                                read: an unsupported one fails only when embeddings are asked */
    /* Mixture of experts (moe.c); n_expert == 0: every layer has a dense FFN */
    int32_t n_expert;        /* routed experts per layer X (<arch>.expert_count) */
    int32_t n_expert_used;   /* experts each token is sent to, k (<arch>.expert_used_count) */
    int32_t n_ff_exp;        /* one expert's feed-forward width Fx (expert_feed_forward_length;
                                Mixtral: feed_forward_length) */
    bool expert_weights_norm;/* the k selected weights are renormalised to sum to 1 */
    sov_moe_gating expert_gating;
    float expert_weights_scale; /* the selected weights are multiplied by it (DeepSeek's
                                   routed_scaling_factor; 1 elsewhere) */
    int32_t n_expert_groups; /* grouped top-k: experts in this many groups (1: no groups) */
    int32_t n_group_used;    /* the groups a token may choose from (expert_group_used_count) */
    int32_t n_ff_shexp;      /* shared expert FFN width, 0 without one (qwen2moe:
                                expert_shared_feed_forward_length; deepseek2: Fx * shared count) */
    int32_t n_layer_dense_lead; /* deepseek2: the first layers have a dense FFN */
    /* deepseek2 multi-head latent attention (mla.c). The cache holds one "KV head" of
     * head_dim = kv_lora + rope values per position (the normalised latent and the rotated
     * shared key part), used as both key and value: attention is MQA over it */
    int32_t n_lora_q;        /* q_lora_rank; 0: a plain attn_q (DeepSeek-V2-Lite) */
    int32_t n_lora_kv;       /* kv_lora_rank */
    int32_t n_embd_head_qk;  /* nope + rope: a query head before absorption (key_length_mla) */
    int32_t n_embd_head_v;   /* a value head after decompression (value_length_mla) */
    /* deepseek2 multi-token prediction (nextn_predict_layers): the file's last n_layer_mtp
     * blocks are MTP blocks; n_layer counts the others, the ones the forward pass runs */
    int32_t n_layer_mtp;
} sov_hparams;

/* A matrix view: rows of a weight in its file type, in place in the mapping. */
typedef struct sov_weight {
    const char *name;
    uint32_t type;     /* sov_type */
    int64_t n_rows;    /* N */
    int64_t n_cols;    /* K, a multiple of the type's block size */
    size_t row_bytes;
    const void *data;
} sov_weight;

typedef struct sov_layer {
    const float *attn_norm;  /* (E), or NULL: no norm before attention (exaone4) */
    sov_weight wq;           /* (H*D, E) */
    sov_weight wk;           /* (Hkv*D, E) */
    sov_weight wv;           /* (Hkv*D, E) */
    const float *bq;         /* (H*D) or NULL (qwen2 has q/k/v biases) */
    const float *bk;         /* (Hkv*D) or NULL */
    const float *bv;         /* (Hkv*D) or NULL */
    const float *q_norm;     /* (D) RMSNorm weight of every query head, or NULL (qwen3 has it) */
    const float *k_norm;     /* (D) the same for every key head */
    sov_weight wo;           /* (E, H*D) */
    const float *attn_post_norm; /* (E) RMSNorm of the attention output before the residual
                                    add, or NULL (gemma3, exaone4 have it) */
    const float *ffn_norm;   /* (E), or NULL (exaone4) */
    sov_weight w_gate;       /* (F, E) */
    sov_weight w_up;         /* (F, E) */
    sov_weight w_down;       /* (E, F) */
    const float *ffn_post_norm; /* (E) the same for the MLP output, or NULL (deepseek2: A.X K1's
                                   post_mlp_layernorm, on the MoE output, routed + shared) */
    bool swa;                /* attends to the last hp.n_swa positions only */
    sov_layer_rope rope;     /* which RoPE (see sov_layer_rope) */
    /* MoE layers (moe.c) instead of w_gate/w_up/w_down; router.data == NULL otherwise.
     * The expert tensors are 3-D in the file (GGUF ne [E, Fx, X] and [Fx, E, X]): expert
     * e's matrix is the contiguous rows [e*Fx, (e+1)*Fx) (or [e*E, (e+1)*E) for down) of
     * the view below. */
    sov_weight router;       /* (X, E) ffn_gate_inp */
    sov_weight gate_exps;    /* (X*Fx, E) */
    sov_weight up_exps;      /* (X*Fx, E) */
    sov_weight down_exps;    /* (X*E, Fx) */
    const float *exp_probs_b;/* (X) expert selection bias (DeepSeek-V3), or NULL */
    /* shared expert (qwen2moe, deepseek2): a SwiGLU FFN of width Fs every token goes through */
    sov_weight gate_shexp;   /* (Fs, E) */
    sov_weight up_shexp;     /* (Fs, E) */
    sov_weight down_shexp;   /* (E, Fs) */
    const float *gate_inp_shexp; /* (E) qwen2moe: the shared output times sigmoid(xb . it) */
    /* deepseek2 MLA (mla.c); Dq = nope + rope, L = kv_lora, R = rope, Dv value head.
     * wq holds (H*Dq, E) when q_lora_rank is 0 */
    sov_weight wq_a;         /* (q_lora, E) */
    const float *q_a_norm;   /* (q_lora) */
    sov_weight wq_b;         /* (H*Dq, q_lora) */
    sov_weight wkv_a;        /* (L + R, E) latent, then the shared rope key part */
    const float *kv_a_norm;  /* (L) */
    sov_weight wk_b;         /* (H*L, nope) head h: rows [h*L, (h+1)*L), absorbs q_nope */
    sov_weight wv_b;         /* (H*Dv, L) head h: rows [h*Dv, (h+1)*Dv), decompresses values */
} sov_layer;

/* One multi-token-prediction module (DeepSeek-V3, A.X K1; GGUF blk.N.nextn.*, N >= n_layer):
 * from the main model's final hidden state h of token i and the embedding of token i+1,
 *   x = [rmsnorm(embed(t_{i+1})) * enorm, rmsnorm(h) * hnorm] Weh^T      (E)
 *   x = the decoder block layers[N] over x (MLA + MoE, its own attention)
 *   logits = rmsnorm(x) * head_norm Whead^T                             (n_vocab): token i+2 */
typedef struct sov_mtp {
    int layer;               /* N: its decoder block is layers[N] */
    sov_weight eh_proj_e;    /* (E, E) columns [0, E) of nextn.eh_proj (E, 2E): the embedding's */
    sov_weight eh_proj_h;    /* (E, E) columns [E, 2E): the hidden state's */
    const float *enorm;      /* (E) */
    const float *hnorm;      /* (E) */
    sov_weight embed;        /* (n_vocab, E) nextn.embed_tokens; data NULL: the model's token_embd */
    const float *head_norm;  /* (E) nextn.shared_head_norm; NULL: the model's output_norm */
    sov_weight head;         /* (n_vocab, E) nextn.shared_head_head; data NULL: the model's output */
} sov_mtp;

struct sov_model {
    gguf_file *file;
    sov_hparams hp;
    sov_weight tok_embd;       /* (n_vocab, E) */
    const float *out_norm;     /* (E) */
    sov_weight output;         /* (n_vocab, E); the embedding itself when tied */
    const float *rope_freqs;   /* (n_rot/2) frequency divisors (Llama 3.1), or NULL */
    const float *rope_long;    /* (n_rot/2) LongRoPE divisors for contexts longer than
                                  rope_orig_ctx (phi3 rope_factors_long), or NULL */
    const float *rope_short;   /* (n_rot/2) the same up to rope_orig_ctx, or NULL */
    sov_layer *layers;         /* [n_layer + n_layer_mtp]: the MTP blocks last */
    sov_mtp *mtp;              /* [n_layer_mtp] (deepseek2 nextn layers), or NULL */
    sov_vocab *vocab;
    char name[128];
    bool sha256_cached;        /* sha256 came from params.digest_cache */
    char sha256[65];           /* the file's SHA-256 (hex) when loaded with digest, else "" */
    const char *weight_type;
    uint64_t n_params, weight_bytes;
    void **owned;              /* float copies of small vectors stored as F16/BF16 */
    size_t n_owned;
    struct sov_encoder *enc;   /* encoders (bert, nomic-bert): their weights (encoder.h), else NULL */
    void *repacked;            /* anonymous mapping holding the repacked weights, or NULL */
    size_t repacked_bytes;
    sov_tp *tp;                /* split across ranks (tp/tp.h): the layers hold this rank's
                                  shard and hp its H/R, Hkv/R and F/R; NULL: whole */
    void *tp_copy;             /* anonymous mapping of the shard's column slices (Wo, Wdown) */
    size_t tp_copy_bytes;
    int32_t pp_n_layer;        /* --pp (tp/pp.c): the whole model's layers, of which layers[]
                                  holds this stage's hp.n_layer from layer pp_first on; else 0 */
    int32_t pp_first;
};

/* Bytes of weights one decode step reads (every matrix once, one embedding row; of an
 * MoE layer the router and the experts one token uses, n_expert_used of n_expert). */
uint64_t sov_model_bytes_per_token(const sov_model *m);

/* Runs multi-token-prediction module `depth` (0 .. n_layer_mtp-1) over T rows of one
 * sequence: hidden (T, E) the main model's final hidden states (after output_norm, as
 * sov_decode returns embeddings) at positions pos[0..T), next (T) the token after each;
 * row i attends to rows 0..i only (the MTP block's attention runs over this call's rows,
 * not the context's cache). Writes logits (T, n_vocab), the predictions of the token
 * after next. T <= the context's n_batch. Internal, for self-speculative decoding to
 * come. Errors: SOV_ERR_ARG (no such module, T out of range, a token out of the
 * vocabulary), SOV_ERR_UNSUPPORTED (a model split across ranks). */
sov_status sov_mtp_logits(sov_context *c, int depth, const float *hidden, const int32_t *next, const int32_t *pos,
                          int T, float *logits);

/* Reads and checks the hyperparameters of a parsed file (exposed for tests). */
sov_status sov_hparams_read(const gguf_file *f, sov_hparams *hp);

#endif
