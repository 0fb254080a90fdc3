/* synth.h - synthetic models: a GGUF file of any supported architecture, shape and
 * tensor type with seeded random weights, for tests, benchmarks and the demo model.
 * (Speed does not depend on the weights' values, and the reference forward pass checks
 * correctness on any values.) */
#ifndef SOV_MODEL_SYNTH_H
#define SOV_MODEL_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "sov.h"

typedef struct sov_synth_params {
    const char *arch;        /* "llama", "qwen2", "qwen3", "qwen3moe", "qwen2moe", "deepseek2", "mistral",
                                "gemma3", "phi3", "exaone4", "bert", "nomic-bert", "nomic-bert-moe" */
    const char *name;        /* general.name */
    int32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    int32_t head_dim;        /* 0: n_embd / n_head (else written as attention.key_length) */
    uint32_t type;           /* type of the layer matrices */
    uint32_t embd_type;      /* token_embd.weight */
    uint32_t output_type;    /* output.weight (ignored when tied) */
    bool tied;               /* no output.weight: logits use the embedding */
    bool rope_freqs;         /* write a rope_freqs.weight tensor (Llama 3.1 style) */
    const char *rope_scaling;/* NULL, "linear" or "yarn" */
    float rope_factor;
    float rope_base;         /* 0: the architecture's default */
    float rms_eps;           /* 0: the architecture's default */
    uint64_t seed;
    const char *vocab_from;  /* copy tokenizer.* from this GGUF (n_vocab follows it), or NULL */
    int32_t n_rot;           /* rope.dimension_count; 0: the head size (phi3 may rotate fewer) */
    int32_t n_swa;           /* gemma3/exaone4 sliding window; -1: the default (16), 0: none */
    int32_t swa_pattern;     /* every swa_pattern-th layer global; 0: gemma3 6, exaone4 4, both
                                at most n_layer, so that a small model has a global layer */
    bool has_pooling;        /* write <arch>.pooling_type = pooling (sov_pooling) */
    uint32_t pooling;
    /* mixture of experts: llama with n_expert > 0 is Mixtral-shaped (experts n_ff wide);
     * qwen3moe always has experts (0s: 8 experts, 2 used, n_ff_exp 64); nomic-bert-moe has
     * them in every second layer (0s: 8 experts of n_ff, 2 used) */
    int32_t n_expert, n_expert_used;
    int32_t n_ff_exp;        /* qwen3moe, qwen2moe, deepseek2: one expert's FFN width */
    /* qwen2moe (0s: 8 experts, 2 used, Fx 64, shared expert 128 wide) and deepseek2 (0s: 16
     * experts in 2 groups, 1 group used, 4 used, Fx 64, 1 shared expert, 1 dense layer,
     * sigmoid gating with selection bias, weights normalised and scaled by 2.5; MLA with
     * q_lora 128, kv_lora 128, nope 64, rope 32, value heads 64) */
    int32_t n_ff_shexp;      /* qwen2moe: the shared expert's width */
    int32_t n_expert_shared; /* deepseek2: shared experts (-1: none) */
    int32_t n_expert_groups, n_group_used; /* deepseek2: expert groups (-1: no grouping) */
    int32_t n_dense_lead;    /* deepseek2: leading dense layers (-1: none) */
    int32_t n_lora_q;        /* deepseek2: q_lora_rank (-1: a plain attn_q) */
    int32_t n_lora_kv, qk_nope, v_head; /* deepseek2: kv_lora_rank, nope and value head sizes */
    int32_t expert_gating;   /* deepseek2: 1 softmax (V2, no bias), 2 sigmoid + exp_probs_b (V3) */
    bool post_norm;          /* deepseek2: A.X K1's norm after the MoE output (post_ffw_norm) */
    int32_t n_mtp;           /* deepseek2: MTP blocks after the n_layer ones (nextn_predict_layers) */
} sov_synth_params;

/* Defaults: a small llama (dim 256, 4 layers), F32, seed 1. */
sov_synth_params sov_synth_default_params(void);

/* Writes the model to path. Errors: SOV_ERR_ARG (inconsistent shape, e.g. a row length
 * that is not a multiple of the type's block size), SOV_ERR_IO, SOV_ERR_NOMEM. */
sov_status sov_synth_write(const sov_synth_params *p, const char *path, sov_progress_fn progress,
                           void *progress_user);

#endif
