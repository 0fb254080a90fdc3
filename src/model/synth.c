/* synth.c - writing synthetic models (see synth.h).
 *
 * Values: each tensor gets its own random stream (seeded from the model seed and the
 * tensor's index), uniform with standard deviation 1/sqrt(fan_in) for matrices (so
 * activations keep their scale through the layers), 1 +- 0.1 for norm weights (1 +- 0.5 for
 * qwen3's per-head q/k norms, so that they matter), and a
 * small spread for biases. The embedding is uniform with standard deviation 1.
 *
 * The vocabulary, unless copied from another file, is a SentencePiece-style one:
 * <unk> <s> </s>, the 256 byte tokens, single characters, then common English words and
 * their prefixes, then letter pairs, with falling scores: enough that any text
 * tokenizes. */
#include "model/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

typedef enum { FILL_MATRIX, FILL_EMBD, FILL_NORM, FILL_HEAD_NORM, FILL_BIAS, FILL_FREQS } fill_kind;

typedef struct synth_tensor {
    fill_kind kind;
    uint32_t type;
    int64_t rows, cols;
} synth_tensor;

typedef struct synth_job {
    const sov_synth_params *p;
    synth_tensor *t;
    int n;
} synth_job;

sov_synth_params sov_synth_default_params(void) {
    return (sov_synth_params){
        .arch = "llama",
        .name = "synthetic",
        .n_embd = 256,
        .n_layer = 4,
        .n_head = 8,
        .n_head_kv = 4,
        .n_ff = 768,
        .n_vocab = 4096,
        .n_ctx = 2048,
        .type = SOV_TYPE_F32,
        .embd_type = SOV_TYPE_F32,
        .output_type = SOV_TYPE_F32,
        .seed = 1,
        .n_swa = -1,
    };
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [-1, 1) */
static float rnd(uint64_t *s) { return (float)((double)(splitmix64(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0); }

static bool fill_tensor(void *user, int index, void *dst, size_t nbytes) {
    const synth_job *job = user;
    const synth_tensor *t = &job->t[index];
    uint64_t s = job->p->seed * 0x100000001b3ull + (uint64_t)index * 0x9e3779b97f4a7c15ull;
    float *row = malloc((size_t)t->cols * sizeof *row);
    if (!row) return false;
    const float sqrt3 = 1.7320508f;
    const float amp = t->kind == FILL_MATRIX ? sqrt3 / sqrtf((float)t->cols)
                      : t->kind == FILL_EMBD ? sqrt3
                      : t->kind == FILL_HEAD_NORM ? 0.5f
                      : 0.1f;
    const size_t row_bytes = sov_row_size((sov_type)t->type, t->cols);
    bool ok = true;
    for (int64_t r = 0; r < t->rows && ok; r++) {
        for (int64_t j = 0; j < t->cols; j++) {
            const float u = rnd(&s);
            switch (t->kind) {
            case FILL_NORM:
            case FILL_HEAD_NORM: row[j] = 1.0f + amp * u; break;
            case FILL_FREQS: row[j] = 1.0f + 3.0f * (float)j / (float)t->cols + 0.1f * u; break;
            default: row[j] = amp * u; break;
            }
        }
        ok = sov_quantize_row((sov_type)t->type, row, (char *)dst + (size_t)r * row_bytes, t->cols);
    }
    free(row);
    (void)nbytes;
    return ok;
}

/* ---- vocabulary ---- */

static const char *const words[] = {
    "the", "and", "was", "to", "a", "he", "she", "it", "of", "in", "that", "his", "her", "they", "with", "for",
    "on", "is", "said", "you", "had", "but", "at", "one", "day", "little", "time", "upon", "once", "there",
    "were", "saw", "big", "happy", "friend", "play", "went", "very", "so", "not", "be", "have", "are", "this",
    "from", "by", "we", "all", "can", "will", "what", "about", "when", "up", "out", "do", "if", "my", "no",
    "new", "more", "some", "like", "would", "just", "how", "model", "data", "home", "sovereign", "token"};

typedef struct vocab_builder {
    char **tok;
    float *score;
    int32_t *type;
    int n, cap;
} vocab_builder;

static bool vb_has(const vocab_builder *vb, const char *s) {
    for (int i = 0; i < vb->n; i++)
        if (strcmp(vb->tok[i], s) == 0) return true;
    return false;
}

/* Adds a token unless the vocabulary is full or (when check) already holds it. */
static void vb_add_checked(vocab_builder *vb, const char *s, int32_t type, bool check) {
    if (vb->n >= vb->cap || (check && vb_has(vb, s))) return;
    vb->tok[vb->n] = strdup(s);
    if (!vb->tok[vb->n]) return;
    vb->score[vb->n] = type == 1 ? -(float)vb->n : 0.0f;
    vb->type[vb->n] = type;
    vb->n++;
}

static void vb_add(vocab_builder *vb, const char *s, int32_t type) { vb_add_checked(vb, s, type, true); }

static void synth_vocab(gguf_writer *w, int n_vocab) {
    vocab_builder vb = {calloc((size_t)n_vocab, sizeof(char *)), calloc((size_t)n_vocab, sizeof(float)),
                        calloc((size_t)n_vocab, sizeof(int32_t)), 0, n_vocab};
    if (!vb.tok || !vb.score || !vb.type) goto done;
    vb_add(&vb, "<unk>", 2);
    vb_add(&vb, "<s>", 3);
    vb_add(&vb, "</s>", 3);
    char buf[64];
    for (int b = 0; b < 256; b++) {
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        vb_add(&vb, buf, 6);
    }
    const char *space = "\xe2\x96\x81"; /* U+2581, SentencePiece's space */
    vb_add(&vb, space, 1);
    for (int ch = 33; ch < 127; ch++) {
        snprintf(buf, sizeof buf, "%c", ch);
        vb_add(&vb, buf, 1);
        snprintf(buf, sizeof buf, "%s%c", space, ch);
        vb_add(&vb, buf, 1);
    }
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        const size_t len = strlen(words[i]);
        for (size_t k = 2; k <= len; k++) {
            snprintf(buf, sizeof buf, "%s%.*s", space, (int)k, words[i]);
            vb_add(&vb, buf, 1);
            snprintf(buf, sizeof buf, "%.*s", (int)k, words[i]);
            vb_add(&vb, buf, 1);
        }
    }
    for (int a = 'a'; a <= 'z' && vb.n < n_vocab; a++)
        for (int b = 'a'; b <= 'z' && vb.n < n_vocab; b++) {
            snprintf(buf, sizeof buf, "%c%c", a, b);
            vb_add(&vb, buf, 1);
        }
    for (int i = 0; vb.n < n_vocab; i++) { /* filler until the size asked for */
        snprintf(buf, sizeof buf, "<extra_%d>", i); /* unique by construction */
        vb_add_checked(&vb, buf, 4, false);
    }
    gguf_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)vb.tok, (uint64_t)vb.n);
    gguf_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, vb.score, (uint64_t)vb.n);
    gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, vb.type, (uint64_t)vb.n);
    gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    gguf_set_bool(w, "tokenizer.ggml.add_bos_token", true);
done:
    for (int i = 0; i < vb.n; i++) free(vb.tok[i]);
    free(vb.tok);
    free(vb.score);
    free(vb.type);
}

/* Copies tokenizer.* keys of another GGUF; returns its vocabulary size or -1. */
static int copy_vocab(gguf_writer *w, const char *path) {
    gguf_file *f;
    if (gguf_open(path, &f) != SOV_OK) return -1;
    int n = -1;
    const gguf_kv *toks = gguf_find(f, "tokenizer.ggml.tokens");
    if (toks && toks->type == GGUF_ARRAY && toks->arr_type == GGUF_STRING && toks->arr_n <= INT32_MAX) {
        n = (int)toks->arr_n;
        /* a view of the file with only its tokenizer.* keys */
        gguf_file sub = *f;
        gguf_kv *kept = malloc(f->n_kv * sizeof *kept + 1);
        if (kept) {
            uint64_t nk = 0;
            for (uint64_t i = 0; i < f->n_kv; i++)
                if (strncmp(f->kv[i].key, "tokenizer.", 10) == 0) kept[nk++] = f->kv[i];
            sub.kv = kept;
            sub.n_kv = nk;
            gguf_copy_kv(w, &sub);
            free(kept);
        } else {
            n = -1;
        }
    }
    gguf_close(f);
    return n;
}

/* ---- the model ---- */

/* general.file_type uses llama.cpp's numbering of whole-file types, not tensor types. */
static uint32_t llama_file_type(uint32_t type) {
    switch (type) {
    case SOV_TYPE_F32: return 0;
    case SOV_TYPE_F16: return 1;
    case SOV_TYPE_Q4_0: return 2;
    case SOV_TYPE_Q4_1: return 3;
    case SOV_TYPE_Q8_0: return 7;
    case SOV_TYPE_Q5_0: return 8;
    case SOV_TYPE_Q5_1: return 9;
    case SOV_TYPE_Q4_K: return 15; /* Q4_K_M */
    case SOV_TYPE_Q5_K: return 17; /* Q5_K_M */
    case SOV_TYPE_Q6_K: return 18;
    case SOV_TYPE_BF16: return 32;
    default: return 0;
    }
}

static sov_status check_rows(const char *what, uint32_t type, int64_t cols) {
    const sov_type_traits *tr = sov_type_info(type);
    if (!tr || !tr->supported)
        return sov_fail(SOV_ERR_ARG, "gen-model: type %s cannot be generated", sov_type_name(type));
    if (cols % tr->block_size != 0)
        return sov_fail(SOV_ERR_ARG, "gen-model: %s rows of %lld values are not a multiple of %s's block size %d",
                        what, (long long)cols, tr->name, tr->block_size);
    return SOV_OK;
}

/* Declares a 1-D (rows 1) or 2-D tensor (rows_, cols_) named by the printf arguments in the
 * writer and records how to fill it: the writer functions below keep their tensors in the
 * locals w, ts, n and name. */
#define ADD(kind_, type_, rows_, cols_, ...)                                                   \
    do {                                                                                     \
        snprintf(name, sizeof name, __VA_ARGS__);                                            \
        const int64_t ne_[2] = {(cols_), (rows_)};                                           \
        gguf_add_tensor(w, name, (type_), (rows_) == 1 ? 1 : 2, ne_);                        \
        ts[n++] = (synth_tensor){(kind_), (type_), (rows_), (cols_)};                        \
    } while (0)

/* X matrices of (rows, cols) in one 3-D tensor of type p->type, GGUF ne [cols, rows, X]
 * (X: a local of the writer function, as w, ts, n and name) */
#define ADD_EXPERTS(rows_, cols_, ...)                                                         \
    do {                                                                                     \
        snprintf(name, sizeof name, __VA_ARGS__);                                            \
        const int64_t ne_[3] = {(cols_), (rows_), X};                                        \
        gguf_add_tensor(w, name, p->type, 3, ne_);                                           \
        ts[n++] = (synth_tensor){FILL_MATRIX, p->type, (rows_) * X, (cols_)};                \
    } while (0)

/* Writes the file with the tensors declared in ts[0..n), then frees ts and w. */
static sov_status write_tensors(const sov_synth_params *p, gguf_writer *w, synth_tensor *ts, int n, const char *path,
                                sov_progress_fn progress, void *progress_user) {
    synth_job job = {p, ts, n};
    const sov_status st = gguf_writer_write(w, path, fill_tensor, &job, progress, progress_user);
    free(ts);
    gguf_writer_free(w);
    return st;
}

/* A new writer with the vocabulary: copied from p->vocab_from, or a synthetic one of
 * p->n_vocab tokens (encoders also get token_type_count 2, BERT's sentence A and B). */
static sov_status writer_with_vocab(const sov_synth_params *p, bool encoder, gguf_writer **out, int *n_vocab) {
    gguf_writer *w = gguf_writer_new();
    if (!w) return sov_fail(SOV_ERR_NOMEM, "gen-model: out of memory");
    *n_vocab = p->n_vocab;
    if (p->vocab_from) {
        *n_vocab = copy_vocab(w, p->vocab_from);
        if (*n_vocab < 0) {
            gguf_writer_free(w);
            return sov_fail(SOV_ERR_ARG, "gen-model: cannot read a vocabulary from '%s'", p->vocab_from);
        }
    } else {
        if (*n_vocab < 300) {
            gguf_writer_free(w);
            return sov_fail(SOV_ERR_ARG, "gen-model: a synthetic vocabulary needs at least 300 tokens, not %d",
                            *n_vocab);
        }
        synth_vocab(w, *n_vocab);
        if (encoder) gguf_set_u32(w, "tokenizer.ggml.token_type_count", 2);
    }
    *out = w;
    return SOV_OK;
}

/* Rows of token_types.weight: the copied vocabulary's tokenizer.ggml.token_type_count
 * (XLM-RoBERTa vocabularies have 1, and llama.cpp wants exactly that many rows), else 2. */
static int64_t vocab_type_count(const sov_synth_params *p) {
    uint32_t n = 2;
    gguf_file *f;
    if (p->vocab_from && gguf_open(p->vocab_from, &f) == SOV_OK) {
        if (!gguf_get_u32(f, "tokenizer.ggml.token_type_count", &n) || n < 1 || n > 1024) n = 2;
        gguf_close(f);
    }
    return n;
}

/* An encoder (bert, nomic-bert, nomic-bert-moe) with llama.cpp's tensor names and keys:
 * token, type (and, for bert, position) embeddings with their LayerNorm; per block q/k/v
 * (bert, with biases) or one fused qkv (nomic-bert; nomic-bert-moe with a bias), the
 * output projection (with a bias but in nomic-bert), two LayerNorms with biases, and a
 * GELU MLP with biases (bert, nomic-bert-moe) or a SwiGLU one (nomic-bert).
 * nomic-bert-moe, as nomic-embed-text-v2-moe: every second layer (il % 2 == 1) has instead
 * a router (F32, as llama.cpp keeps it) and X experts of the FFN's width, up and down
 * without biases (--experts, default 8; --experts-used, default 2). */
static sov_status synth_encoder(const sov_synth_params *p, const char *path, sov_progress_fn progress,
                                void *progress_user) {
    const bool moe = strcmp(p->arch, "nomic-bert-moe") == 0;
    const bool nomic = strcmp(p->arch, "nomic-bert") == 0, fused = nomic || moe, biases = !nomic;
    const int64_t X = moe ? (p->n_expert ? p->n_expert : 8) : 0;
    const int64_t k_used = moe ? (p->n_expert_used ? p->n_expert_used : 2) : 0;
    const uint32_t every = 2;
    if ((!moe && (p->n_expert || p->n_expert_used)) || (moe && (X < 1 || X > 4096 || k_used < 1 || k_used > X)))
        return sov_fail(SOV_ERR_ARG, "gen-model: among encoders only nomic-bert-moe has experts (1..4096, 1..experts "
                                     "of them used)");
    if (p->n_embd < 1 || p->n_layer < 1 || p->n_head < 1 || p->n_ff < 1 || p->n_ctx < 1 || p->n_embd % p->n_head ||
        (p->n_embd / p->n_head) % 2)
        return sov_fail(SOV_ERR_ARG, "gen-model: an encoder needs positive dimensions and width = heads x an even "
                                     "head size");
    const int64_t E = p->n_embd, F = p->n_ff;
    sov_status st;
    if ((st = check_rows("layer", p->type, E)) || (st = check_rows("ffn_down", p->type, F)) ||
        (st = check_rows("token_embd", p->embd_type, E)))
        return st;
    gguf_writer *w;
    int n_vocab;
    if ((st = writer_with_vocab(p, true, &w, &n_vocab))) return st;
    char key[128];
#define KEY(s) (snprintf(key, sizeof key, "%s." s, p->arch), key)
    gguf_set_str(w, "general.architecture", p->arch);
    gguf_set_str(w, "general.name", p->name ? p->name : "synthetic");
    gguf_set_str(w, "general.description", "synthetic encoder with random weights (sov gen-model)");
    gguf_set_u32(w, KEY("context_length"), (uint32_t)p->n_ctx);
    gguf_set_u32(w, KEY("embedding_length"), (uint32_t)E);
    gguf_set_u32(w, KEY("block_count"), (uint32_t)p->n_layer);
    gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)F);
    gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)p->n_head);
    gguf_set_f32(w, KEY("attention.layer_norm_epsilon"), p->rms_eps > 0 ? p->rms_eps : 1e-12f);
    gguf_set_bool(w, KEY("attention.causal"), false);
    /* BGE pools the [CLS] token, nomic-embed takes the mean */
    gguf_set_u32(w, KEY("pooling_type"), p->has_pooling ? p->pooling : fused ? SOV_POOLING_MEAN : SOV_POOLING_CLS);
    if (fused) gguf_set_f32(w, KEY("rope.freq_base"), p->rope_base > 0 ? p->rope_base : 1000.0f);
    if (moe) {
        gguf_set_u32(w, KEY("moe_every_n_layers"), every);
        gguf_set_u32(w, KEY("expert_count"), (uint32_t)X);
        gguf_set_u32(w, KEY("expert_used_count"), (uint32_t)k_used);
    }
    gguf_set_u32(w, "general.file_type", llama_file_type(p->type));
#undef KEY
    const int max_t = 20 * p->n_layer + 8;
    synth_tensor *ts = calloc((size_t)max_t, sizeof *ts);
    if (!ts) {
        gguf_writer_free(w);
        return sov_fail(SOV_ERR_NOMEM, "gen-model: out of memory");
    }
    int n = 0;
    char name[96];
    ADD(FILL_EMBD, p->embd_type, n_vocab, E, "token_embd.weight");
    ADD(FILL_BIAS, SOV_TYPE_F32, vocab_type_count(p), E, "token_types.weight");
    if (!fused) ADD(FILL_BIAS, SOV_TYPE_F32, p->n_ctx, E, "position_embd.weight");
    ADD(FILL_NORM, SOV_TYPE_F32, 1, E, "token_embd_norm.weight");
    ADD(FILL_BIAS, SOV_TYPE_F32, 1, E, "token_embd_norm.bias");
    for (int il = 0; il < p->n_layer; il++) {
        if (fused) {
            ADD(FILL_MATRIX, p->type, 3 * E, E, "blk.%d.attn_qkv.weight", il);
            if (moe) ADD(FILL_BIAS, SOV_TYPE_F32, 1, 3 * E, "blk.%d.attn_qkv.bias", il);
        } else {
            ADD(FILL_MATRIX, p->type, E, E, "blk.%d.attn_q.weight", il);
            ADD(FILL_BIAS, SOV_TYPE_F32, 1, E, "blk.%d.attn_q.bias", il);
            ADD(FILL_MATRIX, p->type, E, E, "blk.%d.attn_k.weight", il);
            ADD(FILL_BIAS, SOV_TYPE_F32, 1, E, "blk.%d.attn_k.bias", il);
            ADD(FILL_MATRIX, p->type, E, E, "blk.%d.attn_v.weight", il);
            ADD(FILL_BIAS, SOV_TYPE_F32, 1, E, "blk.%d.attn_v.bias", il);
        }
        ADD(FILL_MATRIX, p->type, E, E, "blk.%d.attn_output.weight", il);
        if (biases) ADD(FILL_BIAS, SOV_TYPE_F32, 1, E, "blk.%d.attn_output.bias", il);
        ADD(FILL_NORM, SOV_TYPE_F32, 1, E, "blk.%d.attn_output_norm.weight", il);
        ADD(FILL_BIAS, SOV_TYPE_F32, 1, E, "blk.%d.attn_output_norm.bias", il);
        if (moe && (uint32_t)il % every == 1) {
            ADD(FILL_MATRIX, SOV_TYPE_F32, X, E, "blk.%d.ffn_gate_inp.weight", il);
            ADD_EXPERTS(F, E, "blk.%d.ffn_up_exps.weight", il);
            ADD_EXPERTS(E, F, "blk.%d.ffn_down_exps.weight", il);
        } else {
            ADD(FILL_MATRIX, p->type, F, E, "blk.%d.ffn_up.weight", il);
            if (biases) ADD(FILL_BIAS, SOV_TYPE_F32, 1, F, "blk.%d.ffn_up.bias", il);
            if (nomic) ADD(FILL_MATRIX, p->type, F, E, "blk.%d.ffn_gate.weight", il);
            ADD(FILL_MATRIX, p->type, E, F, "blk.%d.ffn_down.weight", il);
            if (biases) ADD(FILL_BIAS, SOV_TYPE_F32, 1, E, "blk.%d.ffn_down.bias", il);
        }
        ADD(FILL_NORM, SOV_TYPE_F32, 1, E, "blk.%d.layer_output_norm.weight", il);
        ADD(FILL_BIAS, SOV_TYPE_F32, 1, E, "blk.%d.layer_output_norm.bias", il);
    }
    return write_tensors(p, w, ts, n, path, progress, progress_user);
}

/* The sizes of a synthetic deepseek2 block (synth_deepseek2 resolves the defaults). */
typedef struct ds2_shape {
    int64_t E, H, F, X, Fx, n_shared, dense, Q, Lr, R, nope, Dv;
    int gating;
} ds2_shape;

/* nm matrices of (rows, cols) in one 3-D tensor, GGUF ne [cols, rows, nm] */
#define ADD3(nm_, rows_, cols_, ...)                                                           \
    do {                                                                                     \
        snprintf(name, sizeof name, __VA_ARGS__);                                            \
        const int64_t ne_[3] = {(cols_), (rows_), (nm_)};                                    \
        gguf_add_tensor(w, name, p->type, 3, ne_);                                           \
        ts[n++] = (synth_tensor){FILL_MATRIX, p->type, (rows_) * (nm_), (cols_)};            \
    } while (0)

/* Declares deepseek2 block il's tensors after ts[0..n); returns the new count. MoE
 * blocks get A.X K1's post_ffw_norm with p->post_norm, its dense ones never. */
static int ds2_block(const sov_synth_params *p, const ds2_shape *s, gguf_writer *w, synth_tensor *ts, int n, int il) {
    const int64_t E = s->E, H = s->H, F = s->F, X = s->X, Fx = s->Fx, Q = s->Q, Lr = s->Lr, R = s->R;
    const int64_t nope = s->nope, Dv = s->Dv;
    char name[96];
    ADD(FILL_NORM, SOV_TYPE_F32, 1, E, "blk.%d.attn_norm.weight", il);
    if (Q) {
        ADD(FILL_MATRIX, p->type, Q, E, "blk.%d.attn_q_a.weight", il);
        ADD(FILL_NORM, SOV_TYPE_F32, 1, Q, "blk.%d.attn_q_a_norm.weight", il);
        ADD(FILL_MATRIX, p->type, H * (nope + R), Q, "blk.%d.attn_q_b.weight", il);
    } else {
        ADD(FILL_MATRIX, p->type, H * (nope + R), E, "blk.%d.attn_q.weight", il);
    }
    ADD(FILL_MATRIX, p->type, Lr + R, E, "blk.%d.attn_kv_a_mqa.weight", il);
    ADD(FILL_NORM, SOV_TYPE_F32, 1, Lr, "blk.%d.attn_kv_a_norm.weight", il);
    ADD3(H, Lr, nope, "blk.%d.attn_k_b.weight", il); /* per head: k_b transposed */
    ADD3(H, Dv, Lr, "blk.%d.attn_v_b.weight", il);
    ADD(FILL_MATRIX, p->type, E, H * Dv, "blk.%d.attn_output.weight", il);
    ADD(FILL_NORM, SOV_TYPE_F32, 1, E, "blk.%d.ffn_norm.weight", il);
    if (il < s->dense) {
        ADD(FILL_MATRIX, p->type, F, E, "blk.%d.ffn_gate.weight", il);
        ADD(FILL_MATRIX, p->type, E, F, "blk.%d.ffn_down.weight", il);
        ADD(FILL_MATRIX, p->type, F, E, "blk.%d.ffn_up.weight", il);
        return n;
    }
    ADD(FILL_MATRIX, SOV_TYPE_F32, X, E, "blk.%d.ffn_gate_inp.weight", il);
    if (s->gating == 2) ADD(FILL_BIAS, SOV_TYPE_F32, 1, X, "blk.%d.exp_probs_b.bias", il);
    ADD3(X, Fx, E, "blk.%d.ffn_gate_exps.weight", il);
    ADD3(X, E, Fx, "blk.%d.ffn_down_exps.weight", il);
    ADD3(X, Fx, E, "blk.%d.ffn_up_exps.weight", il);
    if (s->n_shared) {
        ADD(FILL_MATRIX, p->type, Fx * s->n_shared, E, "blk.%d.ffn_gate_shexp.weight", il);
        ADD(FILL_MATRIX, p->type, E, Fx * s->n_shared, "blk.%d.ffn_down_shexp.weight", il);
        ADD(FILL_MATRIX, p->type, Fx * s->n_shared, E, "blk.%d.ffn_up_shexp.weight", il);
    }
    if (p->post_norm) ADD(FILL_NORM, SOV_TYPE_F32, 1, E, "blk.%d.post_ffw_norm.weight", il);
    return n;
}
#undef ADD3

/* deepseek2 (DeepSeek-V2/V3 shape) with llama.cpp's converter's keys and tensor names:
 * multi-head latent attention in the split layout (attn_k_b / attn_v_b), leading dense
 * layers, then MoE layers with a router, an expert selection bias (sigmoid gating),
 * grouped top-k and shared experts. */
static sov_status synth_deepseek2(const sov_synth_params *p, const char *path, sov_progress_fn progress,
                                  void *progress_user) {
    const int64_t E = p->n_embd, H = p->n_head, F = p->n_ff;
    const int64_t X = p->n_expert ? p->n_expert : 16, k_used = p->n_expert_used ? p->n_expert_used : 4;
    const int64_t Fx = p->n_ff_exp ? p->n_ff_exp : 64;
    const int64_t n_shared = p->n_expert_shared < 0 ? 0 : p->n_expert_shared ? p->n_expert_shared : 1;
    const int64_t groups = p->n_expert_groups < 0 ? 1 : p->n_expert_groups ? p->n_expert_groups : 2;
    const int64_t groups_used = p->n_group_used ? p->n_group_used : groups > 1 ? groups / 2 : 1;
    const int64_t dense = p->n_dense_lead < 0 ? 0 : p->n_dense_lead ? p->n_dense_lead : 1;
    const int64_t Q = p->n_lora_q < 0 ? 0 : p->n_lora_q ? p->n_lora_q : 128;
    const int64_t Lr = p->n_lora_kv ? p->n_lora_kv : 128, R = p->n_rot ? p->n_rot : 32;
    const int64_t nope = p->qk_nope ? p->qk_nope : 64, Dv = p->v_head ? p->v_head : 64;
    const int gating = p->expert_gating ? p->expert_gating : 2;
    const int n_mtp = p->n_mtp;
    if (E < 1 || p->n_layer < 1 || H < 1 || F < 1 || p->n_ctx < 1 || X < 2 || X > 4096 || k_used < 1 ||
        k_used > X || Fx < 1 || groups < 1 || X % groups || groups_used < 1 || groups_used > groups ||
        (groups > 1 && (X / groups < 2 || k_used > groups_used * (X / groups))) || dense > p->n_layer ||
        Lr < 2 || Lr % 2 || R < 2 || R % 2 || nope < 1 || Dv < 1 || (gating != 1 && gating != 2) || n_mtp < 0 ||
        n_mtp > 64)
        return sov_fail(SOV_ERR_ARG, "gen-model: deepseek2 needs positive sizes, 2..4096 experts in equal groups of "
                                     "at least 2 holding the experts used, even kv_lora and rope dims, 0..64 MTP "
                                     "blocks");
    sov_status st;
    if ((st = check_rows("layer", p->type, E)) || (st = check_rows("ffn_down", p->type, Fx)) ||
        (dense && (st = check_rows("ffn_down", p->type, F))) ||
        (n_shared && (st = check_rows("ffn_down_shexp", p->type, Fx * n_shared))) ||
        (Q && (st = check_rows("attn_q_b", p->type, Q))) || (st = check_rows("attn_k_b", p->type, nope)) ||
        (st = check_rows("attn_v_b", p->type, Lr)) || (st = check_rows("attn_output", p->type, H * Dv)) ||
        (st = check_rows("token_embd", p->embd_type, E)) ||
        (!p->tied && (st = check_rows("output", p->output_type, E))))
        return st;
    const ds2_shape sh = {E, H, F, X, Fx, n_shared, dense, Q, Lr, R, nope, Dv, gating};
    gguf_writer *w;
    int n_vocab;
    if ((st = writer_with_vocab(p, false, &w, &n_vocab))) return st;
    char key[128];
#define KEY(s) (snprintf(key, sizeof key, "deepseek2." s), key)
    gguf_set_str(w, "general.architecture", "deepseek2");
    gguf_set_str(w, "general.name", p->name ? p->name : "synthetic");
    gguf_set_str(w, "general.description", "synthetic model with random weights (sov gen-model)");
    gguf_set_u32(w, KEY("context_length"), (uint32_t)p->n_ctx);
    gguf_set_u32(w, KEY("embedding_length"), (uint32_t)E);
    gguf_set_u32(w, KEY("block_count"), (uint32_t)(p->n_layer + n_mtp));
    if (n_mtp) gguf_set_u32(w, KEY("nextn_predict_layers"), (uint32_t)n_mtp);
    gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)F);
    gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)H);
    gguf_set_u32(w, KEY("attention.head_count_kv"), 1); /* MLA as MQA over the latent */
    gguf_set_f32(w, KEY("rope.freq_base"), p->rope_base > 0 ? p->rope_base : 10000.0f);
    gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), p->rms_eps > 0 ? p->rms_eps : 1e-6f);
    gguf_set_u32(w, KEY("leading_dense_block_count"), (uint32_t)dense);
    gguf_set_u32(w, KEY("vocab_size"), (uint32_t)n_vocab);
    /* written as 0 too: llama.cpp needs the key unless it guesses a Lite model by its depth */
    gguf_set_u32(w, KEY("attention.q_lora_rank"), (uint32_t)Q);
    gguf_set_u32(w, KEY("attention.kv_lora_rank"), (uint32_t)Lr);
    gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)(Lr + R));
    gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)Lr);
    gguf_set_u32(w, KEY("attention.key_length_mla"), (uint32_t)(nope + R));
    gguf_set_u32(w, KEY("attention.value_length_mla"), (uint32_t)Dv);
    gguf_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)Fx);
    gguf_set_u32(w, KEY("expert_count"), (uint32_t)X);
    gguf_set_u32(w, KEY("expert_shared_count"), (uint32_t)n_shared);
    gguf_set_f32(w, KEY("expert_weights_scale"), 2.5f);
    gguf_set_bool(w, KEY("expert_weights_norm"), true);
    gguf_set_u32(w, KEY("expert_gating_func"), (uint32_t)gating);
    gguf_set_u32(w, KEY("expert_used_count"), (uint32_t)k_used);
    if (groups > 1) {
        gguf_set_u32(w, KEY("expert_group_count"), (uint32_t)groups);
        gguf_set_u32(w, KEY("expert_group_used_count"), (uint32_t)groups_used);
    }
    gguf_set_u32(w, KEY("rope.dimension_count"), (uint32_t)R);
    if (p->rope_scaling) { /* YaRN as DeepSeek-V3's: mscale_all_dim 1, written as 0.1 x it */
        gguf_set_str(w, KEY("rope.scaling.type"), p->rope_scaling);
        gguf_set_f32(w, KEY("rope.scaling.factor"), p->rope_factor);
        gguf_set_u32(w, KEY("rope.scaling.original_context_length"), (uint32_t)SOV_MAX(1, p->n_ctx / 4));
        gguf_set_f32(w, KEY("rope.scaling.yarn_log_multiplier"), 0.1f);
    }
    gguf_set_u32(w, "general.file_type", llama_file_type(p->type));
#undef KEY
    const int max_t = 32 * (p->n_layer + n_mtp) + 10;
    synth_tensor *ts = calloc((size_t)max_t, sizeof *ts);
    if (!ts) {
        gguf_writer_free(w);
        return sov_fail(SOV_ERR_NOMEM, "gen-model: out of memory");
    }
    int n = 0;
    char name[96];
    ADD(FILL_EMBD, p->embd_type, n_vocab, E, "token_embd.weight");
    for (int il = 0; il < p->n_layer; il++) n = ds2_block(p, &sh, w, ts, n, il);
    ADD(FILL_NORM, SOV_TYPE_F32, 1, E, "output_norm.weight");
    if (!p->tied) ADD(FILL_MATRIX, p->output_type, n_vocab, E, "output.weight");
    /* the MTP blocks last, so that the other tensors' seeds do not depend on them: a
     * decoder block, then nextn.* with their own embedding and head, as DeepSeek-V3's
     * checkpoint holds them */
    for (int il = p->n_layer; il < p->n_layer + n_mtp; il++) {
        n = ds2_block(p, &sh, w, ts, n, il);
        ADD(FILL_MATRIX, p->type, E, 2 * E, "blk.%d.nextn.eh_proj.weight", il);
        ADD(FILL_NORM, SOV_TYPE_F32, 1, E, "blk.%d.nextn.enorm.weight", il);
        ADD(FILL_NORM, SOV_TYPE_F32, 1, E, "blk.%d.nextn.hnorm.weight", il);
        ADD(FILL_EMBD, p->embd_type, n_vocab, E, "blk.%d.nextn.embed_tokens.weight", il);
        ADD(FILL_NORM, SOV_TYPE_F32, 1, E, "blk.%d.nextn.shared_head_norm.weight", il);
        ADD(FILL_MATRIX, p->output_type, n_vocab, E, "blk.%d.nextn.shared_head_head.weight", il);
    }
    return write_tensors(p, w, ts, n, path, progress, progress_user);
}

sov_status sov_synth_write(const sov_synth_params *p, const char *path, sov_progress_fn progress,
                           void *progress_user) {
    if (strcmp(p->arch, "bert") == 0 || strcmp(p->arch, "nomic-bert") == 0 || strcmp(p->arch, "nomic-bert-moe") == 0)
        return synth_encoder(p, path, progress, progress_user);
    if (strcmp(p->arch, "deepseek2") == 0) return synth_deepseek2(p, path, progress, progress_user);
    if (p->post_norm || p->n_mtp)
        return sov_fail(SOV_ERR_ARG, "gen-model: --post-norm and --mtp are written for deepseek2 only");
    const bool qwen2moe = strcmp(p->arch, "qwen2moe") == 0;
    const bool qwen2 = strcmp(p->arch, "qwen2") == 0 || qwen2moe, qwen3moe = strcmp(p->arch, "qwen3moe") == 0;
    const bool qwen3 = strcmp(p->arch, "qwen3") == 0 || qwen3moe, qwen = qwen2 || qwen3;
    const bool llama = strcmp(p->arch, "llama") == 0;
    const bool gemma3 = strcmp(p->arch, "gemma3") == 0, phi3 = strcmp(p->arch, "phi3") == 0;
    const bool exaone4 = strcmp(p->arch, "exaone4") == 0;
    if (!qwen && !llama && !gemma3 && !phi3 && !exaone4 && strcmp(p->arch, "mistral") != 0)
        return sov_fail(SOV_ERR_ARG,
                        "gen-model: architecture '%s' is not one of llama, qwen2, qwen3, qwen2moe, qwen3moe, "
                        "deepseek2, mistral, gemma3, phi3, exaone4, bert, nomic-bert, nomic-bert-moe",
                        p->arch);
    /* experts: X of them, k used, each Fx wide */
    const bool moe_arch = qwen3moe || qwen2moe;
    const int64_t X = moe_arch && !p->n_expert ? 8 : p->n_expert;
    const int64_t k_used = moe_arch && !p->n_expert_used ? 2 : p->n_expert_used;
    const int64_t Fx = moe_arch ? (p->n_ff_exp ? p->n_ff_exp : 64) : p->n_ff;
    const int64_t Fs = qwen2moe ? (p->n_ff_shexp > 0 ? p->n_ff_shexp : 128) : 0; /* shared expert */
    if (X < 0 || X > 4096 || (X > 0 && (k_used < 1 || k_used > X)) || (X == 0 && k_used != 0) || Fx < 1)
        return sov_fail(SOV_ERR_ARG, "gen-model: experts must number 1..4096 with 1..experts of them used");
    if (X > 0 && !llama && !moe_arch)
        return sov_fail(SOV_ERR_ARG, "gen-model: experts are written for llama (Mixtral), qwen3moe, qwen2moe and "
                                     "deepseek2 only");
    if (p->n_embd < 1 || p->n_layer < 1 || p->n_head < 1 || p->n_head_kv < 1 || p->n_ff < 1 || p->n_ctx < 1 ||
        p->n_head % p->n_head_kv != 0)
        return sov_fail(SOV_ERR_ARG, "gen-model: dimensions must be positive and heads a multiple of KV heads");
    const int64_t D = p->head_dim ? p->head_dim : p->n_embd / p->n_head;
    if (D < 2 || D % 2 || (!p->head_dim && p->n_embd % p->n_head))
        return sov_fail(SOV_ERR_ARG, "gen-model: head size %lld must be even (dim %d, heads %d)", (long long)D,
                        p->n_embd, p->n_head);
    const int64_t E = p->n_embd, HD = p->n_head * D, KVD = p->n_head_kv * D, F = p->n_ff;
    const int64_t n_rot = p->n_rot ? p->n_rot : D;
    if (n_rot < 2 || n_rot % 2 || n_rot > D)
        return sov_fail(SOV_ERR_ARG, "gen-model: --rope-dims %lld must be even and at most the head size %lld",
                        (long long)n_rot, (long long)D);
    const bool hybrid = gemma3 || exaone4; /* sliding-window and global layers */
    const int32_t n_swa = !hybrid ? 0 : p->n_swa < 0 ? 16 : p->n_swa;
    const int32_t pattern = p->swa_pattern > 0 ? p->swa_pattern : SOV_MIN(gemma3 ? 6 : 4, p->n_layer);
    if (p->n_swa > 0 && !hybrid)
        return sov_fail(SOV_ERR_ARG, "gen-model: --swa is for gemma3 and exaone4");
    sov_status st;
    if ((st = check_rows("layer", p->type, E)) || (st = check_rows("attn_output", p->type, HD)) ||
        (st = check_rows("ffn_down", p->type, X ? Fx : F)) || (st = check_rows("token_embd", p->embd_type, E)) ||
        (Fs && (st = check_rows("ffn_down_shexp", p->type, Fs))) ||
        (!p->tied && (st = check_rows("output", p->output_type, E))))
        return st;

    gguf_writer *w;
    int n_vocab;
    if ((st = writer_with_vocab(p, false, &w, &n_vocab))) return st;

    char key[128];
#define KEY(s) (snprintf(key, sizeof key, "%s." s, p->arch), key)
    gguf_set_str(w, "general.architecture", p->arch);
    gguf_set_str(w, "general.name", p->name ? p->name : "synthetic");
    gguf_set_str(w, "general.description", "synthetic model with random weights (sov gen-model)");
    gguf_set_u32(w, KEY("context_length"), (uint32_t)p->n_ctx);
    gguf_set_u32(w, KEY("embedding_length"), (uint32_t)E);
    gguf_set_u32(w, KEY("block_count"), (uint32_t)p->n_layer);
    gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)F);
    gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)p->n_head);
    gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)p->n_head_kv);
    if (p->head_dim) {
        gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)D);
        gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)D);
    }
    if (gemma3 && !p->head_dim) { /* the converter always writes the head size for gemma3 */
        gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)D);
        gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)D);
    }
    gguf_set_u32(w, KEY("rope.dimension_count"), (uint32_t)n_rot);
    gguf_set_f32(w, KEY("rope.freq_base"),
                 p->rope_base > 0 ? p->rope_base : (qwen || gemma3 || exaone4 ? 1000000.0f : 10000.0f));
    gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"),
                 p->rms_eps > 0 ? p->rms_eps : (qwen || gemma3 ? 1e-6f : 1e-5f));
    if (n_swa > 0) { /* as the gemma3 / exaone4 converters write them */
        gguf_set_u32(w, KEY("attention.sliding_window"), (uint32_t)n_swa);
        if (gemma3) {
            gguf_set_u32(w, KEY("attention.sliding_window_pattern"), (uint32_t)pattern);
            gguf_set_f32(w, KEY("rope.freq_base_swa"), 10000.0f);
        } else { /* exaone4: one bool per layer (true: sliding window) */
            bool *local = calloc((size_t)p->n_layer, sizeof *local);
            if (!local) {
                gguf_writer_free(w);
                return sov_fail(SOV_ERR_NOMEM, "gen-model: out of memory");
            }
            for (int il = 0; il < p->n_layer; il++) local[il] = (il + 1) % pattern != 0;
            gguf_set_arr(w, KEY("attention.sliding_window_pattern"), GGUF_BOOL, local, (uint64_t)p->n_layer);
            free(local);
        }
    }
    /* phi3: LongRoPE as Phi-3.5 / Phi-4-mini files have it (context 4x the original one) */
    const int32_t orig_ctx = SOV_MAX(1, p->n_ctx / 4);
    if (phi3) {
        gguf_set_u32(w, KEY("rope.scaling.original_context_length"), (uint32_t)orig_ctx);
        gguf_set_f32(w, KEY("rope.scaling.attn_factor"),
                     orig_ctx > 1 ? sqrtf(1.0f + logf(4.0f) / logf((float)orig_ctx)) : 1.0f);
        gguf_set_u32(w, KEY("attention.sliding_window"), 0); /* as the converter writes for Phi-4 */
    }
    if (p->rope_scaling) {
        gguf_set_str(w, KEY("rope.scaling.type"), p->rope_scaling);
        gguf_set_f32(w, KEY("rope.scaling.factor"), p->rope_factor);
        gguf_set_u32(w, KEY("rope.scaling.original_context_length"), (uint32_t)p->n_ctx);
    }
    if (p->has_pooling) gguf_set_u32(w, KEY("pooling_type"), p->pooling);
    if (X > 0) {
        gguf_set_u32(w, KEY("expert_count"), (uint32_t)X);
        gguf_set_u32(w, KEY("expert_used_count"), (uint32_t)k_used);
        if (moe_arch) gguf_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)Fx);
        if (Fs) gguf_set_u32(w, KEY("expert_shared_feed_forward_length"), (uint32_t)Fs);
    }
    gguf_set_u32(w, "general.file_type", llama_file_type(p->type));
#undef KEY

    /* tensors, in the order llama.cpp's converter writes them */
    const int max_t = 20 * p->n_layer + 10;
    synth_tensor *ts = calloc((size_t)max_t, sizeof *ts);
    if (!ts) {
        gguf_writer_free(w);
        return sov_fail(SOV_ERR_NOMEM, "gen-model: out of memory");
    }
    int n = 0;
    char name[96];
    ADD(FILL_EMBD, p->embd_type, n_vocab, E, "token_embd.weight");
    if (p->rope_freqs) ADD(FILL_FREQS, SOV_TYPE_F32, 1, n_rot / 2, "rope_freqs.weight");
    if (phi3) { /* long factors grow with the pair index as real ones do; short ones near 1 */
        ADD(FILL_FREQS, SOV_TYPE_F32, 1, n_rot / 2, "rope_factors_long.weight");
        ADD(FILL_NORM, SOV_TYPE_F32, 1, n_rot / 2, "rope_factors_short.weight");
    }
    for (int il = 0; il < p->n_layer; il++) {
        if (!exaone4) ADD(FILL_NORM, SOV_TYPE_F32, 1, E, "blk.%d.attn_norm.weight", il); /* exaone4: post-norms only */
        if (phi3) {
            ADD(FILL_MATRIX, p->type, HD + 2 * KVD, E, "blk.%d.attn_qkv.weight", il); /* q, k, v rows */
        } else {
            ADD(FILL_MATRIX, p->type, HD, E, "blk.%d.attn_q.weight", il);
            ADD(FILL_MATRIX, p->type, KVD, E, "blk.%d.attn_k.weight", il);
            ADD(FILL_MATRIX, p->type, KVD, E, "blk.%d.attn_v.weight", il);
        }
        if (qwen3 || gemma3 || exaone4) { /* per-head q/k RMSNorm weights, no biases */
            ADD(FILL_HEAD_NORM, SOV_TYPE_F32, 1, D, "blk.%d.attn_q_norm.weight", il);
            ADD(FILL_HEAD_NORM, SOV_TYPE_F32, 1, D, "blk.%d.attn_k_norm.weight", il);
        }
        if (qwen2) {
            ADD(FILL_BIAS, SOV_TYPE_F32, 1, HD, "blk.%d.attn_q.bias", il);
            ADD(FILL_BIAS, SOV_TYPE_F32, 1, KVD, "blk.%d.attn_k.bias", il);
            ADD(FILL_BIAS, SOV_TYPE_F32, 1, KVD, "blk.%d.attn_v.bias", il);
        }
        ADD(FILL_MATRIX, p->type, E, HD, "blk.%d.attn_output.weight", il);
        if (hybrid) ADD(FILL_NORM, SOV_TYPE_F32, 1, E, "blk.%d.post_attention_norm.weight", il);
        if (!exaone4) ADD(FILL_NORM, SOV_TYPE_F32, 1, E, "blk.%d.ffn_norm.weight", il);
        if (X > 0) { /* router in F32, as llama.cpp's converter and quantizer keep it */
            ADD(FILL_MATRIX, SOV_TYPE_F32, X, E, "blk.%d.ffn_gate_inp.weight", il);
            ADD_EXPERTS(Fx, E, "blk.%d.ffn_gate_exps.weight", il);
            ADD_EXPERTS(E, Fx, "blk.%d.ffn_down_exps.weight", il);
            ADD_EXPERTS(Fx, E, "blk.%d.ffn_up_exps.weight", il);
            if (Fs) { /* qwen2moe's shared expert and its gate vector (F32, as the router) */
                ADD(FILL_MATRIX, SOV_TYPE_F32, 1, E, "blk.%d.ffn_gate_inp_shexp.weight", il);
                ADD(FILL_MATRIX, p->type, Fs, E, "blk.%d.ffn_gate_shexp.weight", il);
                ADD(FILL_MATRIX, p->type, E, Fs, "blk.%d.ffn_down_shexp.weight", il);
                ADD(FILL_MATRIX, p->type, Fs, E, "blk.%d.ffn_up_shexp.weight", il);
            }
            continue;
        }
        if (phi3) {
            ADD(FILL_MATRIX, p->type, 2 * F, E, "blk.%d.ffn_up.weight", il); /* gate rows, then up rows */
        } else {
            ADD(FILL_MATRIX, p->type, F, E, "blk.%d.ffn_gate.weight", il);
            ADD(FILL_MATRIX, p->type, F, E, "blk.%d.ffn_up.weight", il);
        }
        ADD(FILL_MATRIX, p->type, E, F, "blk.%d.ffn_down.weight", il);
        if (hybrid) ADD(FILL_NORM, SOV_TYPE_F32, 1, E, "blk.%d.post_ffw_norm.weight", il);
    }
    ADD(FILL_NORM, SOV_TYPE_F32, 1, E, "output_norm.weight");
    if (!p->tied) ADD(FILL_MATRIX, p->output_type, n_vocab, E, "output.weight");
    return write_tensors(p, w, ts, n, path, progress, progress_user);
}
