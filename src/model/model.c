/* model.c - loading a model: hyperparameters from metadata, weights as views into the
 * mapped file, and the tokenizer.
 *
 * Tensor names follow the GGUF convention (token_embd.weight, blk.N.attn_q.weight, ...).
 * Every tensor the architecture needs is checked for presence, shape and a type the
 * kernels can use before the model is handed out, so the forward pass never meets a
 * surprise. Weights stay in the read-only mapping: loading a model copies nothing but a
 * few small vectors stored in half precision. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "core/status.h"
#include "core/threadpool.h"
#include "core/util.h"
#include "kernels/kernels.h"
#include "model/digest.h"
#include "model/digest_cache.h"
#include "model/encoder.h"
#include "model/model.h"
#include "quant/quant.h"
#include "tok/tok.h"
#include "tp/tp.h"

enum { MAX_LAYERS = 4096, MAX_DIM = 1 << 20 };

static sov_status meta_missing(const char *key) {
    return sov_fail(SOV_ERR_FORMAT, "model: metadata key '%s' is missing or not a number", key);
}

static sov_status get_dim(const gguf_file *f, const char *arch, const char *suffix, int32_t *out, bool required,
                          int32_t dflt) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v;
    if (!gguf_get_u32(f, key, &v)) {
        if (gguf_find(f, key) || required) return meta_missing(key);
        *out = dflt;
        return SOV_OK;
    }
    if (v == 0 || v > MAX_DIM) return sov_fail(SOV_ERR_FORMAT, "model: %s = %u is out of range (1..%d)", key, v, MAX_DIM);
    *out = (int32_t)v;
    return SOV_OK;
}

static bool get_f32(const gguf_file *f, const char *arch, const char *suffix, float *out) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return gguf_get_f32(f, key, out);
}

/* The variants of gemma3, phi3 and exaone4 (the defaults are llama's):
 *  - gemma3: embedding times sqrt(E), GELU-tanh MLP, query scale 1/sqrt(D) (1/sqrt(E/H) for
 *    the 62-layer 27B, as llama.cpp decides it), sliding window from
 *    attention.sliding_window, local layers' RoPE base rope.freq_base_swa (10000);
 *  - exaone4: sliding window from attention.sliding_window when present (its global
 *    layers then use no RoPE);
 *  - phi3: attention.sliding_window is ignored, as llama.cpp does (its note: Phi's SWA
 *    metadata is not reliable). */
static sov_status dense_variants_read(const gguf_file *f, sov_hparams *hp) {
    const char *a = hp->arch_name;
    hp->ffn_act = SOV_FFN_SILU;
    hp->embd_scale = 1.0f;
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    hp->n_swa = 0;
    hp->rope_base_swa = 10000.0f;
    if (hp->arch != SOV_ARCH_GEMMA3 && hp->arch != SOV_ARCH_EXAONE4) return SOV_OK;
    sov_status st;
    if ((st = get_dim(f, a, "attention.sliding_window", &hp->n_swa, false, 0))) return st;
    get_f32(f, a, "rope.freq_base_swa", &hp->rope_base_swa);
    if (!(hp->rope_base_swa > 1.0f) || !isfinite(hp->rope_base_swa))
        return sov_fail(SOV_ERR_FORMAT, "model: rope.freq_base_swa %g is out of range", (double)hp->rope_base_swa);
    if (hp->arch == SOV_ARCH_GEMMA3) {
        hp->ffn_act = SOV_FFN_GELU_TANH;
        hp->embd_scale = sqrtf((float)hp->n_embd);
        if (hp->n_layer == 62) hp->attn_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));
        float cap = 0.0f;
        if (get_f32(f, a, "final_logit_softcapping", &cap) && cap != 0.0f)
            return sov_fail(SOV_ERR_UNSUPPORTED,
                            "model: gemma3.final_logit_softcapping is not supported (Gemma 3 files do not set it)");
    }
    return SOV_OK;
}

/* Marks the sliding-window layers and each layer's RoPE. The pattern is
 * attention.sliding_window_pattern: an array of one bool per layer, or a number n (layer
 * il is local when il % n < n - 1), else n = 6 (gemma3) or 4 (exaone4), as llama.cpp
 * reads it. */
static sov_status swa_layers(const gguf_file *f, sov_model *m) {
    const sov_hparams *hp = &m->hp;
    char key[160];
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", hp->arch_name);
    const gguf_kv *kv = gguf_find(f, key);
    uint32_t n_pattern = hp->arch == SOV_ARCH_GEMMA3 ? 6 : 4;
    if (kv && kv->type == GGUF_ARRAY) {
        if (kv->arr_type != GGUF_BOOL || kv->arr_n != (uint64_t)hp->n_layer)
            return sov_fail(SOV_ERR_FORMAT, "model: %s must be %d bools, one per layer", key, hp->n_layer);
    } else if (kv && !gguf_get_u32(f, key, &n_pattern)) {
        return sov_fail(SOV_ERR_FORMAT, "model: %s is neither a number nor an array of bools", key);
    }
    bool hybrid = false;
    for (int il = 0; il < hp->n_layer; il++) {
        sov_layer *L = &m->layers[il];
        L->rope = SOV_LAYER_ROPE_GLOBAL;
        if (hp->n_swa <= 0) continue;
        if (kv && kv->type == GGUF_ARRAY) L->swa = kv->arr_data[il] != 0;
        else L->swa = n_pattern == 0 || (uint32_t)il % n_pattern < n_pattern - 1;
        if (hp->arch == SOV_ARCH_GEMMA3 && L->swa) L->rope = SOV_LAYER_ROPE_LOCAL;
        hybrid |= L->swa;
    }
    /* exaone4's hybrid models (the 32B: 3 local layers to 1 global) use no RoPE on their
     * global layers; a model without local layers (the 1.2B) uses RoPE everywhere */
    for (int il = 0; il < hp->n_layer && hp->arch == SOV_ARCH_EXAONE4 && hybrid; il++)
        if (!m->layers[il].swa) m->layers[il].rope = SOV_LAYER_ROPE_NONE;
    return SOV_OK;
}

/* Mixture-of-experts keys: llama (Mixtral) has experts when expert_count is present,
 * qwen3moe, qwen2moe and deepseek2 always. */
static sov_status read_moe(const gguf_file *f, sov_hparams *hp) {
    const char *a = hp->arch_name;
    const bool qwen2moe = hp->arch == SOV_ARCH_QWEN2MOE, ds2 = hp->arch == SOV_ARCH_DEEPSEEK2;
    const bool moe_arch = hp->arch == SOV_ARCH_QWEN3MOE || qwen2moe || ds2;
    sov_status st;
    hp->expert_weights_scale = 1.0f;
    hp->n_expert_groups = 1;
    if (hp->arch != SOV_ARCH_LLAMA && !moe_arch) return SOV_OK;
    if ((st = get_dim(f, a, "expert_count", &hp->n_expert, moe_arch, 0))) return st;
    if (hp->n_expert == 0) return SOV_OK;
    if ((st = get_dim(f, a, "expert_used_count", &hp->n_expert_used, true, 0))) return st;
    if (hp->n_expert > 4096)
        return sov_fail(SOV_ERR_FORMAT, "model: %s.expert_count = %d is more than 4096", a, hp->n_expert);
    if (hp->n_expert_used > hp->n_expert)
        return sov_fail(SOV_ERR_FORMAT, "model: %s.expert_used_count = %d is more than the %d experts", a,
                        hp->n_expert_used, hp->n_expert);
    if ((st = get_dim(f, a, "expert_feed_forward_length", &hp->n_ff_exp, moe_arch, hp->n_ff))) return st;
    char key[160];
    uint32_t v;
    if (qwen2moe) { /* one shared expert, its own width (llama.cpp: feed_forward_length when absent) */
        if ((st = get_dim(f, a, "expert_shared_feed_forward_length", &hp->n_ff_shexp, false, hp->n_ff))) return st;
    } else if (ds2) { /* expert_shared_count experts of width Fx, stored as one FFN */
        int32_t n_shared = 0;
        snprintf(key, sizeof key, "%s.expert_shared_count", a);
        if (gguf_get_u32(f, key, &v)) n_shared = (int32_t)SOV_MIN(v, 4096u);
        if ((int64_t)n_shared * hp->n_ff_exp > MAX_DIM)
            return sov_fail(SOV_ERR_FORMAT, "model: %d shared experts of width %d are too wide", n_shared,
                            hp->n_ff_exp);
        hp->n_ff_shexp = n_shared * hp->n_ff_exp;
        snprintf(key, sizeof key, "%s.leading_dense_block_count", a);
        if (gguf_get_u32(f, key, &v)) hp->n_layer_dense_lead = (int32_t)SOV_MIN(v, (uint32_t)MAX_LAYERS);
    } else {
        snprintf(key, sizeof key, "%s.expert_shared_count", a);
        if (gguf_get_u32(f, key, &v) && v != 0)
            return sov_fail(SOV_ERR_UNSUPPORTED, "model: shared experts (%s = %u) are not supported for %s", key, v,
                            a);
        snprintf(key, sizeof key, "%s.leading_dense_block_count", a);
        if (gguf_get_u32(f, key, &v) && v != 0)
            return sov_fail(SOV_ERR_UNSUPPORTED, "model: leading dense layers (%s = %u) are not supported for %s",
                            key, v, a);
    }
    hp->expert_gating = SOV_MOE_SOFTMAX;
    snprintf(key, sizeof key, "%s.expert_gating_func", a);
    if (gguf_get_u32(f, key, &v) && !qwen2moe) {
        if (v != SOV_MOE_SOFTMAX && v != SOV_MOE_SIGMOID)
            return sov_fail(SOV_ERR_UNSUPPORTED, "model: %s = %u (1 softmax and 2 sigmoid are supported)", key, v);
        hp->expert_gating = (sov_moe_gating)v;
    }
    /* llama.cpp renormalises the selected weights of Mixtral and Qwen3-MoE (a file may say
     * otherwise), never those of qwen2moe (Qwen1.5/2-MoE: norm_topk_prob false), and those
     * of deepseek2 only when expert_weights_norm says so (V3: true, V2: absent) */
    hp->expert_weights_norm = !qwen2moe && !ds2;
    snprintf(key, sizeof key, "%s.expert_weights_norm", a);
    if (!qwen2moe) gguf_get_bool(f, key, &hp->expert_weights_norm);
    float scale = 1.0f;
    if (get_f32(f, a, "expert_weights_scale", &scale) && scale != 1.0f && scale != 0.0f) {
        if (!ds2)
            return sov_fail(SOV_ERR_UNSUPPORTED, "model: %s.expert_weights_scale %g is not supported for %s", a,
                            (double)scale, a);
        if (!(scale > 0.0f && scale < 1000.0f))
            return sov_fail(SOV_ERR_FORMAT, "model: %s.expert_weights_scale %g is out of range", a, (double)scale);
        hp->expert_weights_scale = scale;
    }
    if (ds2) { /* grouped top-k (expert_group_count / expert_group_used_count) */
        int32_t groups = 1, used = 1;
        if ((st = get_dim(f, a, "expert_group_count", &groups, false, 1))) return st;
        if ((st = get_dim(f, a, "expert_group_used_count", &used, false, groups))) return st;
        if (groups > 1 && (hp->n_expert % groups != 0 || used > groups || hp->n_expert / groups < 2))
            return sov_fail(SOV_ERR_FORMAT,
                            "model: %d experts cannot form %d groups of at least 2 with %d of them used", hp->n_expert,
                            groups, used);
        if (groups > 1 && hp->n_expert_used > used * (hp->n_expert / groups))
            return sov_fail(SOV_ERR_FORMAT, "model: %d experts used do not fit in %d groups of %d", hp->n_expert_used,
                            used, hp->n_expert / groups);
        hp->n_expert_groups = groups;
        hp->n_group_used = used;
    }
    return SOV_OK;
}

/* deepseek2's multi-head latent attention sizes. llama.cpp's converter writes the cache
 * layout as the head (key_length = kv_lora_rank + rope dims, value_length = kv_lora_rank,
 * head_count_kv 1) and the per-head sizes as key_length_mla / value_length_mla; files
 * without those (the older unsplit attn_kv_b layout) are refused. */
static sov_status read_mla(const gguf_file *f, sov_hparams *hp, int32_t vlen) {
    const char *a = hp->arch_name;
    sov_status st;
    char key[160];
    uint32_t v = 0;
    snprintf(key, sizeof key, "%s.attention.q_lora_rank", a);
    if (gguf_get_u32(f, key, &v)) hp->n_lora_q = (int32_t)SOV_MIN(v, (uint32_t)MAX_DIM);
    if ((st = get_dim(f, a, "attention.kv_lora_rank", &hp->n_lora_kv, true, 0))) return st;
    snprintf(key, sizeof key, "%s.attention.key_length_mla", a);
    if (!gguf_find(f, key))
        return sov_fail(SOV_ERR_UNSUPPORTED, "model: %s is missing: deepseek2 files of the older layout (unsplit "
                        "attn_kv_b) are not supported; convert again with a recent llama.cpp", key);
    if ((st = get_dim(f, a, "attention.key_length_mla", &hp->n_embd_head_qk, true, 0))) return st;
    if ((st = get_dim(f, a, "attention.value_length_mla", &hp->n_embd_head_v, true, 0))) return st;
    if (hp->n_head_kv != 1 || hp->head_dim != hp->n_lora_kv + hp->n_rot || vlen != hp->n_lora_kv ||
        hp->n_embd_head_qk <= hp->n_rot)
        return sov_fail(SOV_ERR_FORMAT,
                        "model: deepseek2 attention sizes disagree (kv heads %d, key length %d, value length %d, "
                        "kv_lora_rank %d, rope dims %d, key_length_mla %d)",
                        hp->n_head_kv, hp->head_dim, vlen, hp->n_lora_kv, hp->n_rot, hp->n_embd_head_qk);
    if (hp->n_lora_kv % 2 != 0)
        return sov_fail(SOV_ERR_FORMAT, "model: deepseek2 kv_lora_rank %d must be even", hp->n_lora_kv);
    return SOV_OK;
}

/* deepseek2's attention scale and YaRN, as transformers' DeepseekV3 computes them and
 * llama.cpp reproduces them: the query head before absorption is nope + rope values, scale
 * 1/sqrt(that); with YaRN (factor s) the scale is multiplied by mscale^2, mscale = 1 +
 * 0.1 mscale_all_dim ln s (the file's rope.scaling.yarn_log_multiplier holds 0.1
 * mscale_all_dim), and cos/sin are not scaled (DeepSeek's mscale / mscale_all_dim, equal in
 * the published configs, as llama.cpp assumes). Files whose YaRN lacks the multiplier,
 * with an attention factor, or with linear scaling, are refused: llama.cpp's results for
 * them depart from the model definition. */
static sov_status read_mla_yarn(const gguf_file *f, sov_hparams *hp) {
    const char *a = hp->arch_name;
    hp->attn_scale = 1.0f / sqrtf((float)hp->n_embd_head_qk);
    if (hp->rope_scaling == SOV_ROPE_SCALING_NONE) return SOV_OK;
    float log_mul = 0.0f;
    if (hp->rope_scaling != SOV_ROPE_SCALING_YARN || !get_f32(f, a, "rope.scaling.yarn_log_multiplier", &log_mul) ||
        !(log_mul > 0.0f && log_mul < 10.0f) || hp->yarn_attn_factor != 1.0f)
        return sov_fail(SOV_ERR_UNSUPPORTED, "model: deepseek2 rope scaling is supported as YaRN with "
                        "%s.rope.scaling.yarn_log_multiplier (0..10) and no attn_factor only", a);
    const float ln_s = logf(1.0f / hp->rope_freq_scale);
    hp->yarn_attn_factor = 1.0f / (1.0f + 0.1f * ln_s); /* cancels the YaRN cos/sin factor (ops.c) */
    const float mscale = 1.0f + log_mul * ln_s;
    hp->attn_scale *= mscale * mscale;
    return SOV_OK;
}

/* deepseek2's multi-token-prediction blocks (DeepSeek-V3, A.X K1; GLM-4.5's convention in
 * llama.cpp): the last nextn_predict_layers of the block_count blocks; the forward pass
 * runs the others (n_layer), the MTP ones only through sov_mtp_logits. */
static sov_status read_nextn(const gguf_file *f, sov_hparams *hp) {
    char key[160];
    snprintf(key, sizeof key, "%s.nextn_predict_layers", hp->arch_name);
    uint32_t v = 0;
    if (!gguf_get_u32(f, key, &v)) {
        if (gguf_find(f, key)) return meta_missing(key);
        return SOV_OK;
    }
    if (v >= (uint32_t)hp->n_layer)
        return sov_fail(SOV_ERR_FORMAT, "model: %s = %u leaves none of the %d blocks (block_count) to the model", key,
                        v, hp->n_layer);
    hp->n_layer_mtp = (int32_t)v;
    hp->n_layer -= (int32_t)v;
    return SOV_OK;
}

sov_status sov_hparams_read(const gguf_file *f, sov_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    char arch[32];
    if (!gguf_get_cstr(f, "general.architecture", arch, sizeof arch))
        return sov_fail(SOV_ERR_FORMAT, "model: general.architecture is missing; is this a model file?");
    if (strcmp(arch, "llama") == 0) {
        hp->arch = SOV_ARCH_LLAMA;
        hp->arch_name = "llama";
    } else if (strcmp(arch, "qwen2") == 0) {
        hp->arch = SOV_ARCH_QWEN2;
        hp->arch_name = "qwen2";
    } else if (strcmp(arch, "mistral") == 0) {
        hp->arch = SOV_ARCH_MISTRAL;
        hp->arch_name = "mistral";
    } else if (strcmp(arch, "qwen3") == 0) {
        hp->arch = SOV_ARCH_QWEN3;
        hp->arch_name = "qwen3";
    } else if (strcmp(arch, "gemma3") == 0) {
        hp->arch = SOV_ARCH_GEMMA3;
        hp->arch_name = "gemma3";
    } else if (strcmp(arch, "phi3") == 0) {
        hp->arch = SOV_ARCH_PHI3;
        hp->arch_name = "phi3";
    } else if (strcmp(arch, "exaone4") == 0) {
        hp->arch = SOV_ARCH_EXAONE4;
        hp->arch_name = "exaone4";
    } else if (strcmp(arch, "qwen3moe") == 0) {
        hp->arch = SOV_ARCH_QWEN3MOE;
        hp->arch_name = "qwen3moe";
    } else if (strcmp(arch, "qwen2moe") == 0) {
        hp->arch = SOV_ARCH_QWEN2MOE;
        hp->arch_name = "qwen2moe";
    } else if (strcmp(arch, "deepseek2") == 0) {
        hp->arch = SOV_ARCH_DEEPSEEK2;
        hp->arch_name = "deepseek2";
    } else if (encoder_arch_name(arch)) {
        return encoder_hparams_read(f, arch, hp);
    } else {
        return sov_fail(SOV_ERR_UNSUPPORTED,
                        "model: architecture '%s' is not supported (llama, qwen2, qwen3, qwen2moe, qwen3moe, "
                        "deepseek2, mistral, gemma3, phi3, exaone4, bert, nomic-bert and nomic-bert-moe are)",
                        arch);
    }
    const char *a = hp->arch_name;
    sov_status st;
    if ((st = get_dim(f, a, "embedding_length", &hp->n_embd, true, 0))) return st;
    if ((st = get_dim(f, a, "block_count", &hp->n_layer, true, 0))) return st;
    const bool ds2 = hp->arch == SOV_ARCH_DEEPSEEK2;
    const bool moe_arch = hp->arch == SOV_ARCH_QWEN3MOE || hp->arch == SOV_ARCH_QWEN2MOE; /* experts in every layer */
    if ((st = get_dim(f, a, "feed_forward_length", &hp->n_ff, !moe_arch, 1))) return st;
    if ((st = get_dim(f, a, "attention.head_count", &hp->n_head, true, 0))) return st;
    if ((st = get_dim(f, a, "attention.head_count_kv", &hp->n_head_kv, false, hp->n_head))) return st;
    if ((st = get_dim(f, a, "context_length", &hp->n_ctx_train, false, 2048))) return st;
    if (hp->n_layer > MAX_LAYERS)
        return sov_fail(SOV_ERR_FORMAT, "model: %s.block_count = %d is more than %d", a, hp->n_layer, MAX_LAYERS);
    if (ds2 && (st = read_nextn(f, hp))) return st;
    if (hp->n_head_kv > hp->n_head || hp->n_head % hp->n_head_kv != 0) {
        return sov_fail(SOV_ERR_FORMAT, "model: %d query heads cannot share %d key/value heads evenly",
                        hp->n_head, hp->n_head_kv);
    }
    int32_t dflt_hd = hp->n_embd / hp->n_head;
    if ((st = get_dim(f, a, "attention.key_length", &hp->head_dim, false, dflt_hd))) return st;
    int32_t vlen;
    if ((st = get_dim(f, a, "attention.value_length", &vlen, false, hp->head_dim))) return st;
    if (vlen != hp->head_dim && !ds2) {
        return sov_fail(SOV_ERR_UNSUPPORTED, "model: key length %d differs from value length %d", hp->head_dim,
                        vlen);
    }
    if (hp->head_dim <= 0 || hp->head_dim % 2 != 0)
        return sov_fail(SOV_ERR_FORMAT, "model: head size %d must be even and positive", hp->head_dim);
    if ((st = get_dim(f, a, "rope.dimension_count", &hp->n_rot, false, hp->head_dim))) return st;
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0)
        return sov_fail(SOV_ERR_FORMAT, "model: rope.dimension_count %d must be even and <= head size %d", hp->n_rot,
                        hp->head_dim);

    if (ds2 && (st = read_mla(f, hp, vlen))) return st;
    if ((st = read_moe(f, hp))) return st;
    if (ds2 && hp->n_expert == 0)
        return sov_fail(SOV_ERR_UNSUPPORTED, "model: deepseek2 without experts (%s.expert_count) is not supported", a);

    const bool qwen = hp->arch == SOV_ARCH_QWEN2 || hp->arch == SOV_ARCH_QWEN3 || hp->arch == SOV_ARCH_QWEN3MOE ||
                      hp->arch == SOV_ARCH_QWEN2MOE;
    hp->rms_eps = qwen || ds2 || hp->arch == SOV_ARCH_GEMMA3 ? 1e-6f : 1e-5f;
    get_f32(f, a, "attention.layer_norm_rms_epsilon", &hp->rms_eps);
    if (!(hp->rms_eps > 0.0f && hp->rms_eps < 1.0f))
        return sov_fail(SOV_ERR_FORMAT, "model: RMSNorm epsilon %g is out of range", (double)hp->rms_eps);
    hp->rope_base = 10000.0f;
    get_f32(f, a, "rope.freq_base", &hp->rope_base);
    if (!(hp->rope_base > 1.0f) || !isfinite(hp->rope_base))
        return sov_fail(SOV_ERR_FORMAT, "model: rope.freq_base %g is out of range", (double)hp->rope_base);
    const bool dense_new = hp->arch == SOV_ARCH_GEMMA3 || hp->arch == SOV_ARCH_PHI3 || hp->arch == SOV_ARCH_EXAONE4;
    hp->rope_order = qwen || dense_new ? SOV_ROPE_NEOX : SOV_ROPE_NORM;

    /* rope scaling: rope.scaling.type (linear|yarn|none), rope.scaling.factor; older files
     * give only rope.scale_linear */
    hp->rope_scaling = SOV_ROPE_SCALING_NONE;
    hp->rope_freq_scale = 1.0f;
    hp->rope_orig_ctx = hp->n_ctx_train;
    char key[160], type[32] = "";
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    gguf_get_cstr(f, key, type, sizeof type);
    float factor = 0.0f;
    bool has_factor = get_f32(f, a, "rope.scaling.factor", &factor);
    float lin = 0.0f;
    if (get_f32(f, a, "rope.scale_linear", &lin) && lin > 0.0f && !type[0]) {
        strcpy(type, "linear");
        factor = lin;
        has_factor = true;
    }
    if (strcmp(type, "linear") == 0 || strcmp(type, "yarn") == 0) {
        if (!has_factor || !(factor > 0.0f) || !isfinite(factor))
            return sov_fail(SOV_ERR_FORMAT, "model: rope scaling '%s' needs a positive rope.scaling.factor", type);
        if (factor != 1.0f) {
            hp->rope_scaling = type[0] == 'l' ? SOV_ROPE_SCALING_LINEAR : SOV_ROPE_SCALING_YARN;
            hp->rope_freq_scale = 1.0f / factor;
        }
    } else if (type[0] && strcmp(type, "none") != 0) {
        return sov_fail(SOV_ERR_UNSUPPORTED, "model: rope scaling type '%s' is not supported (linear, yarn are)",
                        type);
    }
    int32_t orig;
    if (get_dim(f, a, "rope.scaling.original_context_length", &orig, false, hp->n_ctx_train) == SOV_OK)
        hp->rope_orig_ctx = orig;
    hp->yarn_ext_factor = hp->rope_scaling == SOV_ROPE_SCALING_YARN ? 1.0f : 0.0f;
    hp->yarn_attn_factor = 1.0f;
    hp->yarn_beta_fast = 32.0f;
    hp->yarn_beta_slow = 1.0f;
    get_f32(f, a, "rope.scaling.yarn_beta_fast", &hp->yarn_beta_fast);
    get_f32(f, a, "rope.scaling.yarn_beta_slow", &hp->yarn_beta_slow);
    /* rope.scaling.attn_factor multiplies cos and sin (so q.k by its square), as llama.cpp
     * applies it: phi3's LongRoPE writes sqrt(1 + ln(ctx / orig_ctx) / ln(orig_ctx)) */
    get_f32(f, a, "rope.scaling.attn_factor", &hp->yarn_attn_factor);
    if (!(hp->yarn_attn_factor > 0.0f && hp->yarn_attn_factor < 100.0f))
        return sov_fail(SOV_ERR_FORMAT, "model: rope.scaling.attn_factor %g is out of range",
                        (double)hp->yarn_attn_factor);
    if ((st = dense_variants_read(f, hp))) return st;
    if (ds2 && (st = read_mla_yarn(f, hp))) return st;
    hp->pooling = SOV_POOLING_MEAN;
    uint32_t pooling;
    snprintf(key, sizeof key, "%s.pooling_type", a);
    if (gguf_get_u32(f, key, &pooling)) hp->pooling = pooling > 1000 ? 1000 : (int32_t)pooling;
    return SOV_OK;
}

/* ---- tensors ---- */

static sov_status find_weight(const gguf_file *f, const char *name, int64_t rows, int64_t cols, bool optional,
                              sov_weight *w) {
    memset(w, 0, sizeof *w);
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) {
        if (optional) return SOV_OK;
        return sov_fail(SOV_ERR_FORMAT, "model: tensor '%s' is missing", name);
    }
    if (t->n_dims > 2 || t->ne[0] != cols || t->ne[1] != rows) {
        return sov_fail(SOV_ERR_FORMAT,
                        "model: tensor '%s' has shape [%" PRId64 ", %" PRId64 "], expected [%" PRId64 ", %" PRId64
                        "]",
                        name, t->ne[0], t->ne[1], cols, rows);
    }
    const sov_type_traits *tr = sov_type_info(t->type);
    if (!tr || !tr->supported || t->type >= SOV_TYPE_COUNT) {
        return sov_fail(SOV_ERR_UNSUPPORTED,
                        "model: tensor '%s' has type %s, which sov cannot compute with yet "
                        "(supported: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K)",
                        name, sov_type_name(t->type));
    }
    w->name = t->name;
    w->type = t->type;
    w->n_rows = rows;
    w->n_cols = cols;
    w->row_bytes = sov_row_size((sov_type)t->type, cols);
    w->data = t->data;
    return SOV_OK;
}

/* The n_expert matrices of (rows, cols) of a 3-D expert tensor (GGUF ne [cols, rows,
 * n_expert]) as one view of n_expert * rows rows. */
static sov_status find_experts(const gguf_file *f, const char *name, int64_t n_expert, int64_t rows, int64_t cols,
                               sov_weight *w) {
    memset(w, 0, sizeof *w);
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) return sov_fail(SOV_ERR_FORMAT, "model: tensor '%s' is missing", name);
    if (t->n_dims != 3 || t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != n_expert) {
        return sov_fail(SOV_ERR_FORMAT,
                        "model: tensor '%s' has shape [%" PRId64 ", %" PRId64 ", %" PRId64 "], expected [%" PRId64
                        ", %" PRId64 ", %" PRId64 "]",
                        name, t->ne[0], t->ne[1], t->ne[2], cols, rows, n_expert);
    }
    const sov_type_traits *tr = sov_type_info(t->type);
    if (!tr || !tr->supported || t->type >= SOV_TYPE_COUNT) {
        return sov_fail(SOV_ERR_UNSUPPORTED, "model: tensor '%s' has type %s, which sov cannot compute with yet", name,
                        sov_type_name(t->type));
    }
    w->name = t->name;
    w->type = t->type;
    w->n_rows = rows * n_expert;
    w->n_cols = cols;
    w->row_bytes = sov_row_size((sov_type)t->type, cols);
    w->data = t->data;
    return SOV_OK;
}

/* A vector of n floats: used in place when F32, else converted into an owned copy. */
static sov_status find_vector(sov_model *m, const char *name, int64_t n, bool optional, const float **out) {
    *out = NULL;
    const gguf_tensor *t = gguf_find_tensor(m->file, name);
    if (!t) {
        if (optional) return SOV_OK;
        return sov_fail(SOV_ERR_FORMAT, "model: tensor '%s' is missing", name);
    }
    if (t->n_elements != (uint64_t)n || t->ne[0] != n) {
        return sov_fail(SOV_ERR_FORMAT, "model: tensor '%s' has %" PRIu64 " values, expected %" PRId64, name,
                        t->n_elements, n);
    }
    if (t->type == SOV_TYPE_F32) {
        *out = t->data;
        return SOV_OK;
    }
    if (t->type != SOV_TYPE_F16 && t->type != SOV_TYPE_BF16) {
        return sov_fail(SOV_ERR_UNSUPPORTED, "model: vector '%s' has type %s (F32, F16 or BF16 expected)", name,
                        sov_type_name(t->type));
    }
    float *copy = malloc((size_t)n * sizeof *copy);
    void **owned = realloc(m->owned, (m->n_owned + 1) * sizeof *owned);
    if (!copy || !owned) {
        free(copy);
        if (owned) m->owned = owned;
        return sov_fail(SOV_ERR_NOMEM, "model: out of memory");
    }
    m->owned = owned;
    m->owned[m->n_owned++] = copy;
    sov_dequantize_row((sov_type)t->type, t->data, copy, n);
    *out = copy;
    return SOV_OK;
}

/* A view of n rows of a fused weight starting at row r0 (no copy). */
static void split_rows(const sov_weight *fused, sov_weight *part, int64_t r0, int64_t n) {
    *part = *fused;
    part->n_rows = n;
    part->data = (const char *)fused->data + (size_t)r0 * fused->row_bytes;
}

/* deepseek2's attention tensors of layer il (mla.c computes with them). */
static sov_status map_mla(sov_model *m, int il) {
    const gguf_file *f = m->file;
    const sov_hparams *hp = &m->hp;
    sov_layer *L = &m->layers[il];
    const int64_t E = hp->n_embd, H = hp->n_head, Dq = hp->n_embd_head_qk, Lr = hp->n_lora_kv, R = hp->n_rot;
    const int64_t nope = Dq - R, Dv = hp->n_embd_head_v, Q = hp->n_lora_q;
    char name[96];
    sov_status st;
#define NAME(fmt) (snprintf(name, sizeof name, "blk.%d." fmt, il), name)
    if (Q > 0) {
        if ((st = find_weight(f, NAME("attn_q_a.weight"), Q, E, false, &L->wq_a))) return st;
        if ((st = find_vector(m, NAME("attn_q_a_norm.weight"), Q, false, &L->q_a_norm))) return st;
        if ((st = find_weight(f, NAME("attn_q_b.weight"), H * Dq, Q, false, &L->wq_b))) return st;
    } else if ((st = find_weight(f, NAME("attn_q.weight"), H * Dq, E, false, &L->wq))) {
        return st;
    }
    if ((st = find_weight(f, NAME("attn_kv_a_mqa.weight"), Lr + R, E, false, &L->wkv_a))) return st;
    if ((st = find_vector(m, NAME("attn_kv_a_norm.weight"), Lr, false, &L->kv_a_norm))) return st;
    if (!gguf_find_tensor(f, NAME("attn_k_b.weight")) && gguf_find_tensor(f, NAME("attn_kv_b.weight")))
        return sov_fail(SOV_ERR_UNSUPPORTED, "model: tensor 'blk.%d.attn_k_b.weight' is missing (this file has the "
                        "older unsplit attn_kv_b; convert again with a recent llama.cpp)", il);
    /* per head: k_b (L rows of nope), v_b (Dv rows of L), as 3-D tensors of H matrices */
    if ((st = find_experts(f, NAME("attn_k_b.weight"), H, Lr, nope, &L->wk_b))) return st;
    if ((st = find_experts(f, NAME("attn_v_b.weight"), H, Dv, Lr, &L->wv_b))) return st;
    if ((st = find_weight(f, NAME("attn_output.weight"), E, H * Dv, false, &L->wo))) return st;
#undef NAME
    return SOV_OK;
}

/* The parts of an MoE layer beyond router and experts: DeepSeek-V3's selection bias, the
 * shared expert (qwen2moe: with its sigmoid gate). */
static sov_status map_moe_extras(sov_model *m, int il) {
    const gguf_file *f = m->file;
    const sov_hparams *hp = &m->hp;
    sov_layer *L = &m->layers[il];
    const int64_t E = hp->n_embd, Fs = hp->n_ff_shexp;
    char name[96];
    sov_status st;
#define NAME(fmt) (snprintf(name, sizeof name, "blk.%d." fmt, il), name)
    if (hp->arch == SOV_ARCH_DEEPSEEK2 &&
        (st = find_vector(m, NAME("exp_probs_b.bias"), hp->n_expert, true, &L->exp_probs_b)))
        return st;
    if (Fs == 0) return SOV_OK;
    if ((st = find_weight(f, NAME("ffn_gate_shexp.weight"), Fs, E, false, &L->gate_shexp))) return st;
    if ((st = find_weight(f, NAME("ffn_up_shexp.weight"), Fs, E, false, &L->up_shexp))) return st;
    if ((st = find_weight(f, NAME("ffn_down_shexp.weight"), E, Fs, false, &L->down_shexp))) return st;
    if (hp->arch == SOV_ARCH_QWEN2MOE &&
        (st = find_vector(m, NAME("ffn_gate_inp_shexp.weight"), E, false, &L->gate_inp_shexp)))
        return st;
#undef NAME
    return SOV_OK;
}

/* The nextn.* tensors of MTP module j (block n_layer + j), after the block's own. The
 * embedding, head norm and head are optional (DeepSeek-V3 shares the model's; a file may
 * hold copies), as llama.cpp reads them: left empty, sov_mtp_logits uses the model's.
 * eh_proj (E, 2E) multiplies [enorm(e), hnorm(h)]: it is kept as its two column halves,
 * each (E, E) in place (rows keep their stride, and it is not repacked), so no (T, 2E)
 * activation is needed. */
static sov_status map_mtp(sov_model *m, int j) {
    const gguf_file *f = m->file;
    const sov_hparams *hp = &m->hp;
    const int il = hp->n_layer + j;
    const int64_t E = hp->n_embd;
    sov_mtp *mt = &m->mtp[j];
    char name[96];
    sov_status st;
    mt->layer = il;
#define NAME(fmt) (snprintf(name, sizeof name, "blk.%d." fmt, il), name)
    sov_weight eh;
    if ((st = find_weight(f, NAME("nextn.eh_proj.weight"), E, 2 * E, false, &eh))) return st;
    mt->eh_proj_e = eh;
    mt->eh_proj_e.n_cols = E;
    mt->eh_proj_h = mt->eh_proj_e;
    mt->eh_proj_h.data = (const char *)eh.data + sov_row_size((sov_type)eh.type, E);
    if ((st = find_vector(m, NAME("nextn.enorm.weight"), E, false, &mt->enorm))) return st;
    if ((st = find_vector(m, NAME("nextn.hnorm.weight"), E, false, &mt->hnorm))) return st;
    if ((st = find_weight(f, NAME("nextn.embed_tokens.weight"), hp->n_vocab, E, true, &mt->embed))) return st;
    if ((st = find_vector(m, NAME("nextn.shared_head_norm.weight"), E, true, &mt->head_norm))) return st;
    if ((st = find_weight(f, NAME("nextn.shared_head_head.weight"), hp->n_vocab, E, true, &mt->head))) return st;
#undef NAME
    return SOV_OK;
}

/* deepseek2's post-MLP norm (A.X K1's post_mlp_layernorm, which its MoE layers have and
 * its dense ones not): in every MoE block or in none, MTP blocks included. Its sum of
 * routed and shared outputs is gathered in the context's attention-output buffer, (T,
 * H*(L+R)), which is wider than E in every published MLA model; a file where it is not is
 * refused. */
static sov_status check_post_norms(const sov_model *m) {
    const sov_hparams *hp = &m->hp;
    int first_with = -1, first_without = -1;
    for (int il = hp->n_layer_dense_lead; il < hp->n_layer + hp->n_layer_mtp; il++) {
        if (m->layers[il].ffn_post_norm && first_with < 0) first_with = il;
        if (!m->layers[il].ffn_post_norm && first_without < 0) first_without = il;
    }
    if (first_with < 0) return SOV_OK;
    if (first_without >= 0)
        return sov_fail(SOV_ERR_FORMAT, "model: tensor 'blk.%d.post_ffw_norm.weight' is missing (block %d has one: "
                        "the post-MLP norm must be in every MoE block)", first_without, first_with);
    if ((int64_t)hp->n_head * hp->head_dim < hp->n_embd)
        return sov_fail(SOV_ERR_UNSUPPORTED, "model: deepseek2 post-MLP norms need head_count x key_length (%d x %d) "
                        ">= embedding_length %d", hp->n_head, hp->head_dim, hp->n_embd);
    return SOV_OK;
}

static sov_status map_tensors(sov_model *m) {
    const gguf_file *f = m->file;
    sov_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, D = hp->head_dim, H = hp->n_head, Hkv = hp->n_head_kv, F = hp->n_ff;
    sov_status st;
    if (hp->arch == SOV_ARCH_BERT || hp->arch == SOV_ARCH_NOMIC_BERT) return encoder_map_tensors(m);

    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    if (!emb) return sov_fail(SOV_ERR_FORMAT, "model: tensor 'token_embd.weight' is missing");
    if (emb->ne[1] <= 0 || emb->ne[1] > INT32_MAX)
        return sov_fail(SOV_ERR_FORMAT, "model: token_embd.weight has %" PRId64 " rows", emb->ne[1]);
    hp->n_vocab = (int32_t)emb->ne[1];
    if ((st = find_weight(f, "token_embd.weight", hp->n_vocab, E, false, &m->tok_embd))) return st;
    if ((st = find_vector(m, "output_norm.weight", E, false, &m->out_norm))) return st;
    if ((st = find_weight(f, "output.weight", hp->n_vocab, E, true, &m->output))) return st;
    if (!m->output.data) m->output = m->tok_embd; /* tied embedding */
    if ((st = find_vector(m, "rope_freqs.weight", hp->n_rot / 2, true, &m->rope_freqs))) return st;
    if (hp->arch == SOV_ARCH_PHI3) { /* LongRoPE: both or neither */
        if ((st = find_vector(m, "rope_factors_long.weight", hp->n_rot / 2, true, &m->rope_long))) return st;
        if ((st = find_vector(m, "rope_factors_short.weight", hp->n_rot / 2, true, &m->rope_short))) return st;
        if (!m->rope_long != !m->rope_short)
            return sov_fail(SOV_ERR_FORMAT, "model: tensor '%s' is missing (LongRoPE needs both factor tensors)",
                            m->rope_long ? "rope_factors_short.weight" : "rope_factors_long.weight");
        if (m->rope_long && m->rope_freqs)
            return sov_fail(SOV_ERR_UNSUPPORTED, "model: rope_freqs.weight and LongRoPE factors together");
    }

    const int n_blocks = hp->n_layer + hp->n_layer_mtp; /* the MTP blocks (deepseek2) last */
    m->layers = calloc((size_t)n_blocks, sizeof *m->layers);
    if (!m->layers) return sov_fail(SOV_ERR_NOMEM, "model: out of memory");
    char name[96];
#define NAME(fmt) (snprintf(name, sizeof name, "blk.%d." fmt, il), name)
    /* exaone4 has no norm before attention or MLP (post-norms only); gemma3 and exaone4
     * add the post-norms; qwen3, gemma3, exaone4 the per-head q/k norms; phi3 fuses q/k/v
     * and gate/up */
    const bool pre_norms = hp->arch != SOV_ARCH_EXAONE4;
    const bool post_norms = hp->arch == SOV_ARCH_GEMMA3 || hp->arch == SOV_ARCH_EXAONE4;
    const bool qk_norm = hp->arch == SOV_ARCH_QWEN3 || hp->arch == SOV_ARCH_QWEN3MOE || post_norms;
    const bool fused_up = hp->arch == SOV_ARCH_PHI3;
    const bool ds2 = hp->arch == SOV_ARCH_DEEPSEEK2;
    for (int il = 0; il < n_blocks; il++) {
        sov_layer *L = &m->layers[il];
        if (pre_norms && (st = find_vector(m, NAME("attn_norm.weight"), E, false, &L->attn_norm))) return st;
        if (hp->arch == SOV_ARCH_DEEPSEEK2) {
            if ((st = map_mla(m, il))) return st;
        } else if (gguf_find_tensor(f, NAME("attn_qkv.weight"))) {
            /* fused: rows are q (H*D), then k, then v (Hkv*D each) */
            sov_weight qkv;
            if ((st = find_weight(f, name, (H + 2 * Hkv) * D, E, false, &qkv))) return st;
            split_rows(&qkv, &L->wq, 0, H * D);
            split_rows(&qkv, &L->wk, H * D, Hkv * D);
            split_rows(&qkv, &L->wv, (H + Hkv) * D, Hkv * D);
        } else {
            if ((st = find_weight(f, NAME("attn_q.weight"), H * D, E, false, &L->wq))) return st;
            if ((st = find_weight(f, NAME("attn_k.weight"), Hkv * D, E, false, &L->wk))) return st;
            if ((st = find_weight(f, NAME("attn_v.weight"), Hkv * D, E, false, &L->wv))) return st;
        }
        if (hp->arch == SOV_ARCH_DEEPSEEK2) goto ffn_tensors; /* its attention: map_mla above */
        if ((st = find_vector(m, NAME("attn_q.bias"), H * D, true, &L->bq))) return st;
        if ((st = find_vector(m, NAME("attn_k.bias"), Hkv * D, true, &L->bk))) return st;
        if ((st = find_vector(m, NAME("attn_v.bias"), Hkv * D, true, &L->bv))) return st;
        /* per-head RMSNorm of q and k (required where the architecture has it, ignored elsewhere) */
        if (qk_norm && (st = find_vector(m, NAME("attn_q_norm.weight"), D, false, &L->q_norm))) return st;
        if (qk_norm && (st = find_vector(m, NAME("attn_k_norm.weight"), D, false, &L->k_norm))) return st;
        if ((st = find_weight(f, NAME("attn_output.weight"), E, H * D, false, &L->wo))) return st;
        if (post_norms && (st = find_vector(m, NAME("post_attention_norm.weight"), E, false, &L->attn_post_norm)))
            return st;
    ffn_tensors:
        if (pre_norms && (st = find_vector(m, NAME("ffn_norm.weight"), E, false, &L->ffn_norm))) return st;
        if (hp->n_expert > 0 && il >= hp->n_layer_dense_lead) {
            const int64_t X = hp->n_expert, Fx = hp->n_ff_exp;
            if ((st = find_weight(f, NAME("ffn_gate_inp.weight"), X, E, false, &L->router))) return st;
            if ((st = find_experts(f, NAME("ffn_gate_exps.weight"), X, Fx, E, &L->gate_exps))) return st;
            if ((st = find_experts(f, NAME("ffn_up_exps.weight"), X, Fx, E, &L->up_exps))) return st;
            if ((st = find_experts(f, NAME("ffn_down_exps.weight"), X, E, Fx, &L->down_exps))) return st;
            if (L->gate_exps.type != L->up_exps.type)
                return sov_fail(SOV_ERR_UNSUPPORTED, "model: blk.%d: ffn_gate_exps and ffn_up_exps differ in type", il);
            if ((st = map_moe_extras(m, il))) return st;
            if (ds2 && (st = find_vector(m, NAME("post_ffw_norm.weight"), E, true, &L->ffn_post_norm))) return st;
            continue;
        }
        if (fused_up) {
            /* phi3: ffn_up holds gate (rows 0..F) then up (F..2F) */
            sov_weight gate_up;
            if ((st = find_weight(f, NAME("ffn_up.weight"), 2 * F, E, false, &gate_up))) return st;
            split_rows(&gate_up, &L->w_gate, 0, F);
            split_rows(&gate_up, &L->w_up, F, F);
        } else {
            if ((st = find_weight(f, NAME("ffn_gate.weight"), F, E, false, &L->w_gate))) return st;
            if ((st = find_weight(f, NAME("ffn_up.weight"), F, E, false, &L->w_up))) return st;
        }
        if ((st = find_weight(f, NAME("ffn_down.weight"), E, F, false, &L->w_down))) return st;
        if ((post_norms || ds2) && (st = find_vector(m, NAME("post_ffw_norm.weight"), E, ds2, &L->ffn_post_norm)))
            return st;
    }
#undef NAME
    if (ds2 && (st = check_post_norms(m))) return st;
    if (hp->n_layer_mtp > 0) {
        m->mtp = calloc((size_t)hp->n_layer_mtp, sizeof *m->mtp);
        if (!m->mtp) return sov_fail(SOV_ERR_NOMEM, "model: out of memory");
        for (int j = 0; j < hp->n_layer_mtp; j++)
            if ((st = map_mtp(m, j))) return st;
    }
    return swa_layers(f, m);
}

static void summarise(sov_model *m) {
    uint64_t bytes_by_type[SOV_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < m->file->n_tensors; i++) {
        const gguf_tensor *t = &m->file->tensors[i];
        m->n_params += t->n_elements;
        m->weight_bytes += t->nbytes;
        if (t->n_dims >= 2) bytes_by_type[t->type] += t->nbytes;
    }
    int best = 0;
    for (int t = 1; t < SOV_TYPE_COUNT; t++)
        if (bytes_by_type[t] > bytes_by_type[best]) best = t;
    m->weight_type = sov_type_name((uint32_t)best);
    if (!gguf_get_cstr(m->file, "general.name", m->name, sizeof m->name)) m->name[0] = '\0';
}

sov_model_params sov_model_default_params(void) { return (sov_model_params){0}; }

/* Repacking: weights whose kernels read a planar layout faster (sov_kernels_prefers_planar)
 * are rewritten at load into one anonymous region (transparent huge pages where the
 * kernel offers them), in parallel, and the file pages they came from are released, so
 * resident memory stays about the file's size and the process pays no copy-on-write
 * fault per page. */
typedef struct repack_job {
    sov_weight **w;
    size_t n;
    uint8_t **dst; /* destination of each weight */
} repack_job;

static void repack_thread(void *arg, int ith, int nth) {
    const repack_job *j = arg;
    for (size_t i = 0; i < j->n; i++) {
        const sov_weight *w = j->w[i];
        long b, e;
        sov_split_range(w->n_rows, 1, ith, nth, &b, &e);
        for (long r = b; r < e; r++)
            sov_repack_row_planar_to((sov_type)w->type, (const char *)w->data + (size_t)r * w->row_bytes,
                                     j->dst[i] + (size_t)r * w->row_bytes, w->n_cols);
    }
}

/* Load progress: with a digest running, the hash is the slowest part and ends the load,
 * so it is what the fraction follows. */
static void report(const sov_model *m, const sov_model_params *p, model_digest *dg, float repacked) {
    if (!p->progress) return;
    const float f = dg ? (float)digest_progress(dg) / (float)m->file->size : repacked;
    p->progress(0.99f * f, p->progress_user);
}

/* Waits until the file's first `upto` bytes are hashed, showing progress meanwhile. */
static void wait_hashed(const sov_model *m, const sov_model_params *p, model_digest *dg, size_t upto) {
    const size_t step = (size_t)64 << 20;
    for (size_t done = digest_progress(dg); done < upto;) {
        const size_t got = digest_wait(dg, SOV_MIN(upto, done + step));
        if (got <= done) break; /* hashing failed: digest_finish says so */
        done = got;
        report(m, p, dg, 0);
    }
}

/* The file offset just past the last byte of weights [i, j). */
static size_t weights_end(const sov_model *m, sov_weight *const *w, size_t i, size_t j) {
    size_t end = 0;
    for (size_t q = i; q < j; q++) {
        const size_t at = (size_t)((const uint8_t *)w[q]->data - m->file->base);
        const size_t e = at + w[q]->row_bytes * (size_t)w[q]->n_rows;
        end = SOV_MAX(end, e);
    }
    return end;
}

/* dg: the file's hash running on another thread, or NULL. The file pages of a group of
 * weights are released only once the hash has passed them, so every page is read from
 * storage once, and the repacking leaves that thread a core of its own. */
static sov_status repack_weights(sov_model *m, const sov_model_params *p, model_digest *dg) {
    /* encoders keep the file's layout: their products always run over whole inputs (many
       tokens), where the planar tiles are slower (nomic-bert-moe's experts, which sit in
       m->layers: 3x, bench/embed_bert.sh) */
    if (m->enc) return SOV_OK;
    const sov_kernels *k = sov_kernels_select();
    const int n_blocks = m->hp.n_layer + m->hp.n_layer_mtp;
    const size_t n_max = (size_t)n_blocks * 19 + 1;
    sov_weight **list = calloc(n_max, sizeof *list);
    uint8_t **dst = calloc(n_max, sizeof *dst);
    if (!list || !dst) {
        free(list);
        free(dst);
        return sov_fail(SOV_ERR_NOMEM, "model: out of memory");
    }
    size_t n = 0, total = 0;
    for (int il = 0; il < n_blocks; il++) {
        sov_layer *L = &m->layers[il];
        sov_weight *ws[] = {&L->wq,         &L->wk,        &L->wv,         &L->wo,      &L->w_gate,
                            &L->w_up,       &L->w_down,    &L->router,     &L->gate_exps, &L->up_exps,
                            &L->down_exps,  &L->gate_shexp, &L->up_shexp,  &L->down_shexp, &L->wq_a,
                            &L->wq_b,       &L->wkv_a,     &L->wk_b,       &L->wv_b};
        for (size_t i = 0; i < SOV_ARRAY_LEN(ws); i++)
            if (ws[i]->data && sov_kernels_prefers_planar(k, (sov_type)ws[i]->type)) list[n++] = ws[i];
    }
    if (m->output.data && sov_kernels_prefers_planar(k, (sov_type)m->output.type)) list[n++] = &m->output;
    for (size_t i = 0; i < n; i++) total += (list[i]->row_bytes * (size_t)list[i]->n_rows + 63) & ~(size_t)63;
    sov_status st = SOV_OK;
    if (n > 0) {
        const size_t huge = (size_t)2 << 20;
        const size_t map = total + huge;
        uint8_t *raw = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (raw == MAP_FAILED) {
            st = sov_fail(SOV_ERR_NOMEM, "model: cannot map %zu bytes for repacked weights", total);
        } else {
            m->repacked = raw;
            m->repacked_bytes = map;
            uint8_t *base = (uint8_t *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
            madvise(base, total, MADV_HUGEPAGE);
            size_t at = 0;
            for (size_t i = 0; i < n; i++) {
                dst[i] = base + at;
                at += (list[i]->row_bytes * (size_t)list[i]->n_rows + 63) & ~(size_t)63;
            }
            sov_pool *pool = NULL;
            const int cores = sov_physical_cores();
            if (sov_pool_new(dg && cores > 1 ? cores - 1 : cores, &pool) != SOV_OK) pool = NULL;
            /* a layer's worth at a time, so that progress can be shown and the file pages
             * released as we go */
            for (size_t i = 0; i < n;) {
                size_t j = i + 1;
                while (j < n && j - i < 7) j++;
                repack_job job = {list + i, j - i, dst + i};
                sov_pool_run(pool, repack_thread, &job, 0);
                if (dg) wait_hashed(m, p, dg, weights_end(m, list, i, j)); /* then release the pages */
                for (size_t q = i; q < j; q++) {
                    sov_weight *w = list[q];
                    const uintptr_t pg = 4096, lo = ((uintptr_t)w->data + pg - 1) & ~(pg - 1);
                    const uintptr_t hi = ((uintptr_t)w->data + w->row_bytes * (size_t)w->n_rows) & ~(pg - 1);
                    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED); /* the file copy is not needed */
                    const bool tied = m->tok_embd.data == w->data && m->tok_embd.type == w->type;
                    w->type = (uint32_t)sov_planar_type((sov_type)w->type);
                    w->data = dst[q];
                    if (tied) m->tok_embd = *w;
                }
                i = j;
                report(m, p, dg, (float)i / (float)n);
            }
            sov_pool_free(pool);
        }
    }
    free(list);
    free(dst);
    return st;
}

/* Reads every weight page once (for steady first-token latency), reporting progress. */
static void prefault(const sov_model *m, const sov_model_params *p, model_digest *dg) {
    const uint8_t *base = m->file->base + m->file->data_offset;
    size_t n = m->file->size - m->file->data_offset;
    const size_t step = 4096, chunk = (size_t)64 << 20;
    volatile uint8_t sink = 0;
    for (size_t at = 0; at < n; at += chunk) {
        size_t end = SOV_MIN(n, at + chunk);
        for (size_t i = at; i < end; i += step) sink ^= base[i];
        report(m, p, dg, (float)end / (float)n);
    }
    (void)sink;
}

sov_status sov_model_load(const char *path, const sov_model_params *params, sov_model **out) {
    *out = NULL;
    sov_model_params dflt = sov_model_default_params();
    if (!params) params = &dflt;
    sov_model *m = calloc(1, sizeof *m);
    if (!m) return sov_fail(SOV_ERR_NOMEM, "model: out of memory");
    sov_status st = gguf_open(path, &m->file);
    if (!st) st = sov_hparams_read(m->file, &m->hp);
    if (!st) st = map_tensors(m);
    const bool split = tp_active(params->tp); /* this rank's shard only (tp/shard.c) */
    if (!st && split) {
        const int rank = sov_tp_rank(params->tp), R = sov_tp_size(params->tp);
        switch (sov_tp_split(params->tp)) {
        case SOV_SPLIT_TENSOR: st = tp_shard_model(m, rank, R); break;
        case SOV_SPLIT_EXPERT: st = ep_shard_model(m, rank, R); break;
        case SOV_SPLIT_PIPELINE: st = pp_shard_model(m, rank, R); break;
        }
    }
    if (!st) st = tok_vocab_from_gguf(m->file, false, &m->vocab);
    if (!st && sov_vocab_size(m->vocab) > m->hp.n_vocab) {
        st = sov_fail(SOV_ERR_FORMAT, "model: the tokenizer has %d tokens but token_embd.weight only %d rows",
                      sov_vocab_size(m->vocab), m->hp.n_vocab);
    }
    if (st) {
        sov_model_free(m);
        return st;
    }
    summarise(m);
    if (m->file->size > m->file->data_offset && !split) {
        /* ask the kernel to start reading the weights now */
        madvise((void *)((uintptr_t)m->file->base & ~(uintptr_t)4095), m->file->size, MADV_WILLNEED);
    }
    /* With a digest, the hash runs on its own thread from the first byte to the last while
     * this one touches every page ahead of it and then repacks: the first touch of a page
     * is the expensive part of reading it (the fault, the read from disk, and in a virtual
     * machine the nested page walk: ~1 us per 4 KiB page), so the hash, the one pass that
     * cannot be split, finds its pages ready and runs at SHA-256's own speed. */
    /* An unchanged file hashed before needs no hashing: its digest is remembered under its
     * identity and change stamps (digest_cache.h says why that is sound). */
    const bool cache = params->digest && params->digest_cache && m->file->mapped;
    const digest_key key = cache ? digest_key_of_stat(&m->file->st) : (digest_key){0};
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    const bool settled = cache && digest_key_settled(&key, (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec);
    m->sha256_cached = cache && digest_cache_lookup(params->digest_cache, &key, m->sha256);
    const bool hash = params->digest && !m->sha256_cached;
    model_digest dg = {0};
    sov_status rs = hash ? digest_start(&dg, m->file->base, m->file->size) : SOV_OK;
    if (!rs && ((params->prefault && !split) || hash)) prefault(m, params, hash ? &dg : NULL);
    if (!rs) rs = repack_weights(m, params, hash ? &dg : NULL);
    if (hash && dg.started) {
        wait_hashed(m, params, &dg, m->file->size);
        const sov_status ds = digest_finish(&dg, m->sha256);
        if (!rs) rs = ds;
        /* remembered only when the file did not change while it was hashed: same stamps
         * now as when it was opened, and those older than a clock tick */
        digest_key after;
        if (!rs && cache && settled && !digest_key_of_path(path, &after) && digest_key_equal(&key, &after) &&
            digest_cache_store(params->digest_cache, &key, m->sha256))
            sov_clear_error(); /* a cache that cannot be written costs the next start, nothing more */
    }
    if (rs) {
        sov_model_free(m);
        return rs;
    }
    if (params->progress) params->progress(1.0f, params->progress_user);
    m->tp = split ? params->tp : NULL; /* only now: a failed load sends the other ranks nothing */
    if (split) tp_loaded(m->tp);
    *out = m;
    return SOV_OK;
}

void sov_model_free(sov_model *m) {
    if (!m) return;
    if (tp_root(m->tp)) tp_send(m->tp, TP_OP_END, NULL, NULL, 0); /* the workers return */
    if (m->tp_copy) munmap(m->tp_copy, m->tp_copy_bytes);
    sov_vocab_free(m->vocab);
    if (m->repacked) munmap(m->repacked, m->repacked_bytes);
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->mtp);
    gguf_close(m->file);
    free(m);
}

void sov_model_get_info(const sov_model *m, sov_model_info *out) {
    const sov_hparams *hp = &m->hp;
    /* the whole model's shape, not this rank's tensor-parallel shard */
    const int32_t R = tp_splits(m->tp, SOV_SPLIT_TENSOR) ? sov_tp_size(m->tp) : 1;
    *out = (sov_model_info){
        .arch = hp->arch_name,
        .name = m->name,
        .weight_type = m->weight_type,
        .n_vocab = hp->n_vocab,
        .n_embd = hp->n_embd,
        .n_layer = m->pp_n_layer ? m->pp_n_layer : hp->n_layer, /* --pp: all stages' */
        .n_head = hp->n_head * R,
        .n_head_kv = hp->n_head_kv * R,
        .head_dim = hp->head_dim,
        .n_ff = hp->n_ff * R,
        .n_ctx_train = hp->n_ctx_train,
        .n_params = m->n_params,
        .weight_bytes = m->weight_bytes,
        .sha256 = m->sha256,
        .sha256_cached = m->sha256_cached,
        .file_bytes = m->file->size,
        .pooling = hp->pooling,
        .encoder = m->enc != NULL,
    };
}

const sov_vocab *sov_model_vocab(const sov_model *m) { return m->vocab; }

static uint64_t weight_bytes(const sov_weight *w) { return (uint64_t)w->row_bytes * (uint64_t)w->n_rows; }

uint64_t sov_model_bytes_per_token(const sov_model *m) {
    uint64_t n = m->tok_embd.row_bytes + weight_bytes(&m->output) + 4u * (uint64_t)m->hp.n_embd;
    for (int il = 0; il < m->hp.n_layer; il++) {
        const sov_layer *L = &m->layers[il];
        n += weight_bytes(&L->wq) + weight_bytes(&L->wk) + weight_bytes(&L->wv) + weight_bytes(&L->wo) +
             weight_bytes(&L->w_gate) + weight_bytes(&L->w_up) + weight_bytes(&L->w_down) +
             8u * (uint64_t)m->hp.n_embd; /* the two norm vectors */
        n += weight_bytes(&L->gate_shexp) + weight_bytes(&L->up_shexp) + weight_bytes(&L->down_shexp) +
             weight_bytes(&L->wq_a) + weight_bytes(&L->wq_b) + weight_bytes(&L->wkv_a) + weight_bytes(&L->wk_b) +
             weight_bytes(&L->wv_b);
        if (L->router.data) { /* MoE: the router and the k experts a token is sent to */
            const uint64_t X = (uint64_t)m->hp.n_expert, k = (uint64_t)m->hp.n_expert_used;
            n += weight_bytes(&L->router) +
                 (weight_bytes(&L->gate_exps) + weight_bytes(&L->up_exps) + weight_bytes(&L->down_exps)) / X * k;
        }
    }
    return n;
}

/* ---- the tensor look-ups, for the encoder loader (encoder.h) ---- */

sov_status model_find_weight(const gguf_file *f, const char *name, int64_t rows, int64_t cols, bool optional,
                             sov_weight *w) {
    return find_weight(f, name, rows, cols, optional, w);
}

sov_status model_find_vector(sov_model *m, const char *name, int64_t n, bool optional, const float **out) {
    return find_vector(m, name, n, optional, out);
}

sov_status model_find_experts(const gguf_file *f, const char *name, int64_t n_expert, int64_t rows,
                              int64_t cols, sov_weight *w) {
    return find_experts(f, name, n_expert, rows, cols, w);
}
