/* vocab.c - building a sov_vocab from a GGUF file's tokenizer.* metadata.
 *
 * Every token text stays a view into the file mapping; what is built at load time is
 * small and flat: one tok_token per id, an open-addressing table text -> id (linear
 * probing, slots hold id + 1), for byte-level BPE a second table (left id, right id) ->
 * (merge rank, result id) built from tokenizer.ggml.merges, the 256 byte tokens, the
 * special tokens in matching order and the end-of-generation bitset.
 *
 * The rules for defaults and for the token attributes that are not in the file (which
 * tokens end a generation, which count as control) follow llama.cpp's loader, so that
 * both tokenizers split text into the same ids. Unlike llama.cpp, inconsistent metadata
 * (arrays of different lengths, merges naming unknown tokens, special ids outside the
 * vocabulary) is an error (SOV_ERR_FORMAT naming the key) rather than a warning. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "tok/tok_impl.h"
#include "tok/unicode.h"

#define KEY_MODEL "tokenizer.ggml.model"
#define KEY_PRE "tokenizer.ggml.pre"
#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_SCORES "tokenizer.ggml.scores"
#define KEY_TYPES "tokenizer.ggml.token_type"
#define KEY_MERGES "tokenizer.ggml.merges"

/* token types in tokenizer.ggml.token_type */
enum { TYPE_NORMAL = 1, TYPE_UNKNOWN = 2, TYPE_CONTROL = 3, TYPE_USER_DEFINED = 4, TYPE_UNUSED = 5, TYPE_BYTE = 6 };

uint64_t tok_hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x243F6A8885A308D3ull ^ ((uint64_t)n * 0x9E3779B97F4A7C15ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)s[i] << (8 * i);
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    h ^= h >> 32;
    return h;
}

sov_token tok_find(const sov_vocab *v, const char *s, size_t len) {
    return tok_find_h(v, s, len, tok_hash_bytes(s, len));
}

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* ---- metadata access with errors naming the key ---- */

static sov_status get_array(const gguf_file *f, const char *key, gguf_vtype want, bool required,
                            const gguf_kv **out) {
    const gguf_kv *kv = gguf_find(f, key);
    *out = NULL;
    if (!kv) return required ? sov_fail(SOV_ERR_FORMAT, "tokenizer: %s is missing", key) : SOV_OK;
    if (kv->type != GGUF_ARRAY || (want != GGUF_VTYPE_COUNT && kv->arr_type != want))
        return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s must be an array of %s, not %s%s%s", key,
                        gguf_vtype_name(want), kv->type == GGUF_ARRAY ? "an array of " : "",
                        gguf_vtype_name(kv->type == GGUF_ARRAY ? kv->arr_type : kv->type),
                        kv->type == GGUF_ARRAY ? "" : " value");
    *out = kv;
    return SOV_OK;
}

static sov_status get_string(const gguf_file *f, const char *key, bool required, gguf_str *out) {
    const gguf_kv *kv = gguf_find(f, key);
    out->ptr = NULL;
    out->len = 0;
    if (!kv) return required ? sov_fail(SOV_ERR_FORMAT, "tokenizer: %s is missing", key) : SOV_OK;
    if (kv->type != GGUF_STRING)
        return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s must be a string, not %s", key,
                        gguf_vtype_name(kv->type));
    *out = kv->v.s;
    return SOV_OK;
}

static sov_status get_bool(const gguf_file *f, const char *key, bool *val) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return SOV_OK;
    if (kv->type != GGUF_BOOL)
        return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s must be a bool, not %s", key, gguf_vtype_name(kv->type));
    *val = kv->v.u != 0;
    return SOV_OK;
}

static bool is_int_type(gguf_vtype t) {
    return t == GGUF_U8 || t == GGUF_I8 || t == GGUF_U16 || t == GGUF_I16 || t == GGUF_U32 ||
           t == GGUF_I32 || t == GGUF_U64 || t == GGUF_I64;
}

/* A special token id: absent keeps *id; present must be an integer inside the vocabulary,
 * or -1 (also written as the u32 4294967295, as llama.cpp's converters do) for "none". */
static sov_status get_token_id(const gguf_file *f, const char *key, int32_t n_tokens, int32_t *id) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return SOV_OK;
    if (!is_int_type(kv->type))
        return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s must be an integer, not %s", key,
                        gguf_vtype_name(kv->type));
    bool is_signed = kv->type == GGUF_I8 || kv->type == GGUF_I16 || kv->type == GGUF_I32 || kv->type == GGUF_I64;
    if ((is_signed && kv->v.i == -1) || (!is_signed && (kv->v.u == UINT32_MAX || kv->v.u == UINT64_MAX))) {
        *id = -1;
        return SOV_OK;
    }
    if (is_signed ? (kv->v.i < 0 || kv->v.i >= n_tokens) : kv->v.u >= (uint64_t)n_tokens)
        return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s = %lld is outside the vocabulary of %d tokens", key,
                        is_signed ? (long long)kv->v.i : (long long)kv->v.u, n_tokens);
    *id = (int32_t)(is_signed ? kv->v.i : (int64_t)kv->v.u);
    return SOV_OK;
}

/* ---- pre-tokenizer names (llama.cpp's families) ---- */

typedef struct pre_name {
    const char *name;
    tok_pre pre;
    bool ignore_merges, add_bos;
} pre_name;

static const pre_name pre_names[] = {
    {"default", TOK_PRE_DEFAULT, false, false},
    {"llama3", TOK_PRE_LLAMA3, true, true},
    {"llama-v3", TOK_PRE_LLAMA3, true, true},
    {"llama-bpe", TOK_PRE_LLAMA3, true, true},
    {"falcon3", TOK_PRE_LLAMA3, true, true},
    {"falcon-h1", TOK_PRE_LLAMA3, true, true},
    {"pixtral", TOK_PRE_LLAMA3, true, true},
    {"midm-2.0", TOK_PRE_LLAMA3, true, true},
    {"lfm2", TOK_PRE_LLAMA3, true, true},
    {"dbrx", TOK_PRE_LLAMA3, false, false},
    {"smaug-bpe", TOK_PRE_LLAMA3, false, false},
    {"chatglm-bpe", TOK_PRE_LLAMA3, false, false},
    {"glm4", TOK_PRE_LLAMA3, false, false},
    {"qwen2", TOK_PRE_QWEN2, false, false},
    {"deepseek-r1-qwen", TOK_PRE_QWEN2, false, false},
    {"megrez", TOK_PRE_QWEN2, false, false},
    {"hunyuan", TOK_PRE_QWEN2, false, false},
    {"stablelm2", TOK_PRE_QWEN2, true, true},
    {"gpt-2", TOK_PRE_GPT2, false, false},
    {"phi-2", TOK_PRE_GPT2, false, false},
    {"mpt", TOK_PRE_GPT2, false, false},
    {"olmo", TOK_PRE_GPT2, false, false},
    {"jais", TOK_PRE_GPT2, false, false},
    {"gigachat", TOK_PRE_GPT2, false, false},
    {"exaone4", TOK_PRE_GPT2, false, false},
    {"trillion", TOK_PRE_GPT2, false, false},
    {"smollm", TOK_PRE_SMOLLM, false, false},
    {"starcoder", TOK_PRE_SMOLLM, false, false},
    {"refact", TOK_PRE_SMOLLM, false, false},
    {"command-r", TOK_PRE_SMOLLM, false, false},
    {"codeshell", TOK_PRE_SMOLLM, false, false},
    {"exaone", TOK_PRE_SMOLLM, false, false},
    {"minerva-7b", TOK_PRE_SMOLLM, false, false},
    {"deepseek-llm", TOK_PRE_DEEPSEEK, false, false},
    {"qwen35", TOK_PRE_QWEN35, false, false},
    {"deepseek-coder", TOK_PRE_DEEPSEEK_CODER, false, false},
    {"deepseek-v3", TOK_PRE_DEEPSEEK3, false, false},
    {"falcon", TOK_PRE_FALCON, false, false},
    {"tekken", TOK_PRE_TEKKEN, true, true},
    {"gpt-4o", TOK_PRE_GPT4O, false, false},
    {"llama4", TOK_PRE_GPT4O, false, false},
    {"minimax-m2", TOK_PRE_GPT4O, false, false},
    {"kimi-k2", TOK_PRE_KIMI_K2, false, false},
    {"bloom", TOK_PRE_BLOOM, false, false},
    {"poro-chat", TOK_PRE_BLOOM, false, false},
    {"gpt3-finnish", TOK_PRE_BLOOM, false, false},
    {"superbpe", TOK_PRE_SUPERBPE, false, false},
    /* further names llama.cpp maps to the same expressions */
    {"jina-v5-nano", TOK_PRE_LLAMA3, true, true},
    {"kormo", TOK_PRE_QWEN2, false, false},
    {"f2llmv2", TOK_PRE_QWEN2, false, false},
    {"mellum2", TOK_PRE_SMOLLM, false, false},
    {"granite-docling", TOK_PRE_GPT2, false, false},
    {"kanana2", TOK_PRE_GPT4O, false, false},
    {"talkie", TOK_PRE_GPT4O, false, false},
};

static const pre_name *find_pre(const char *name) {
    for (size_t i = 0; i < SOV_ARRAY_LEN(pre_names); i++)
        if (strcmp(pre_names[i].name, name) == 0) return &pre_names[i];
    return NULL;
}

bool tok_pre_from_name(const char *name, tok_pre *out) {
    const pre_name *p = find_pre(name);
    if (p) *out = p->pre;
    return p != NULL;
}

/* ---- building ---- */

static void id_hash_insert(sov_vocab *v, int32_t id) {
    const tok_token *t = &v->tokens[id];
    const uint64_t h = tok_hash_bytes(t->text, t->len);
    const uint64_t entry = (h & 0xFFFFFFFF00000000ull) | ((uint32_t)id + 1);
    for (uint32_t i = (uint32_t)h & v->id_hash_mask;; i = (i + 1) & v->id_hash_mask) {
        uint64_t e = v->id_hash[i];
        if (!e) {
            v->id_hash[i] = entry;
            return;
        }
        if ((e >> 32) != (h >> 32)) continue;
        const tok_token *o = &v->tokens[(uint32_t)e - 1];
        if (o->len == t->len && memcmp(o->text, t->text, t->len) == 0) {
            v->id_hash[i] = entry; /* a repeated text: the last id wins */
            return;
        }
    }
}

static sov_status load_tokens(sov_vocab *v, const gguf_file *f) {
    const gguf_kv *tok, *scores, *types;
    sov_status st;
    if ((st = get_array(f, KEY_TOKENS, GGUF_STRING, true, &tok))) return st;
    if ((st = get_array(f, KEY_SCORES, GGUF_VTYPE_COUNT, false, &scores))) return st;
    if ((st = get_array(f, KEY_TYPES, GGUF_VTYPE_COUNT, false, &types))) return st;
    if (tok->arr_n == 0) return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s is empty", KEY_TOKENS);
    if (tok->arr_n >= INT32_MAX / 2)
        return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s has too many tokens (%llu)", KEY_TOKENS,
                        (unsigned long long)tok->arr_n);
    if (scores && scores->arr_type != GGUF_F32 && scores->arr_type != GGUF_I32)
        return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s must be an array of f32, not of %s", KEY_SCORES,
                        gguf_vtype_name(scores->arr_type));
    if (types && types->arr_type != GGUF_I32)
        return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s must be an array of i32, not of %s", KEY_TYPES,
                        gguf_vtype_name(types->arr_type));
    const uint64_t n = tok->arr_n;
    if (scores && scores->arr_n != n)
        return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s has %llu entries but %s has %llu", KEY_SCORES,
                        (unsigned long long)scores->arr_n, KEY_TOKENS, (unsigned long long)n);
    if (types && types->arr_n != n)
        return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s has %llu entries but %s has %llu", KEY_TYPES,
                        (unsigned long long)types->arr_n, KEY_TOKENS, (unsigned long long)n);

    v->n_tokens = (int32_t)n;
    v->tokens = calloc(n, sizeof *v->tokens);
    v->id_hash_mask = pow2_at_least(n * 2) - 1;
    v->id_hash = calloc((size_t)v->id_hash_mask + 1, sizeof *v->id_hash);
    v->eog = calloc((n + 7) / 8, 1);
    if (!v->tokens || !v->id_hash || !v->eog) return sov_fail(SOV_ERR_NOMEM, "tokenizer: out of memory for %llu tokens", (unsigned long long)n);

    for (uint64_t i = 0; i < n; i++) {
        tok_token *t = &v->tokens[i];
        gguf_str s = gguf_arr_str(tok, i);
        if (s.len > UINT32_MAX / 2)
            return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s[%llu] is too long", KEY_TOKENS, (unsigned long long)i);
        t->text = s.ptr;
        t->len = (uint32_t)s.len;
        if (scores) {
            if (scores->arr_type == GGUF_F32) {
                memcpy(&t->score, scores->arr_data + i * 4, 4);
            } else {
                int32_t x;
                memcpy(&x, scores->arr_data + i * 4, 4);
                t->score = (float)x;
            }
        }
        int32_t type = TYPE_NORMAL;
        if (types) memcpy(&type, types->arr_data + i * 4, 4);
        switch (type) {
        case TYPE_NORMAL: t->attr = TOK_ATTR_NORMAL; break;
        case TYPE_UNKNOWN: t->attr = TOK_ATTR_UNKNOWN; break;
        case TYPE_CONTROL: t->attr = TOK_ATTR_CONTROL; break;
        case TYPE_USER_DEFINED: t->attr = TOK_ATTR_USER_DEFINED; break;
        case TYPE_UNUSED: t->attr = TOK_ATTR_UNUSED; break;
        case TYPE_BYTE: t->attr = TOK_ATTR_BYTE; break;
        default: t->attr = 0; break; /* undefined */
        }
        if (t->len) id_hash_insert(v, (int32_t)i);
    }
    return SOV_OK;
}

/* The first id-table candidate for a hash (or -1); used to prefetch. */
static int64_t first_candidate(const sov_vocab *v, uint64_t h) {
    for (uint32_t i = (uint32_t)h & v->id_hash_mask;; i = (i + 1) & v->id_hash_mask) {
        uint64_t e = v->id_hash[i];
        if (!e) return -1;
        if ((uint32_t)(e >> 32) == (uint32_t)(h >> 32)) return (int64_t)(uint32_t)e - 1;
    }
}

/* Merges are resolved in batches, each lookup in stages with prefetches in between: the
 * tables are larger than the caches and the pairs come in no useful order, so a plain
 * loop would wait on memory three or four times per lookup. */
#define MERGE_BATCH 32
#define MERGE_INLINE 120 /* longer merge texts get their concatenation from malloc */

typedef struct merge_job {
    const char *l, *r;   /* the two parts */
    uint32_t ll, rl;
    char *cat;           /* l + r: buf, or malloc'd when longer */
    uint64_t h[3];       /* hashes of l, r, l + r */
    sov_token id[3];
    char buf[MERGE_INLINE];
} merge_job;

static void merge_insert(sov_vocab *v, uint64_t i, sov_token l, sov_token r, sov_token res) {
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    for (uint32_t k = (uint32_t)(h >> 32) & v->merge_mask;; k = (k + 1) & v->merge_mask) {
        tok_merge_slot *slot = &v->merges[k];
        if (slot->key == key) return; /* a repeated pair: the first rank wins */
        if (slot->key == UINT64_MAX) {
            slot->key = key;
            slot->rank = (int32_t)i;
            slot->result = res;
            v->n_merges++;
            return;
        }
    }
}

static sov_status merge_batch(sov_vocab *v, const gguf_kv *m, uint64_t base, size_t cnt, merge_job *job) {
    /* 1: split "left right" (at the first space after the first byte: a left part may
          itself be a space in vocabularies without byte-level encoding), hash, prefetch */
    for (size_t j = 0; j < cnt; j++) {
        merge_job *J = &job[j];
        const uint64_t i = base + j;
        gguf_str s = gguf_arr_str(m, i);
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        if (!sp || sp + 1 == s.ptr + s.len)
            return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s[%llu] '%.*s' is not two tokens separated by a space",
                            KEY_MERGES, (unsigned long long)i, (int)SOV_MIN(s.len, 64), s.ptr);
        if (s.len - 1 > MERGE_INLINE && !(J->cat = malloc(s.len - 1)))
            return sov_fail(SOV_ERR_NOMEM, "tokenizer: out of memory for %s", KEY_MERGES);
        J->l = s.ptr;
        J->ll = (uint32_t)(sp - s.ptr);
        J->r = sp + 1;
        J->rl = (uint32_t)(s.len - J->ll - 1);
        memcpy(J->cat, J->l, J->ll);
        memcpy(J->cat + J->ll, J->r, J->rl);
        J->h[0] = tok_hash_bytes(J->l, J->ll);
        J->h[1] = tok_hash_bytes(J->r, J->rl);
        J->h[2] = tok_hash_bytes(J->cat, (size_t)J->ll + J->rl);
        for (int q = 0; q < 3; q++) __builtin_prefetch(&v->id_hash[(uint32_t)J->h[q] & v->id_hash_mask]);
    }
    /* 2: the candidate tokens' records, then their texts */
    for (size_t j = 0; j < cnt; j++)
        for (int q = 0; q < 3; q++) {
            int64_t c = first_candidate(v, job[j].h[q]);
            job[j].id[q] = (sov_token)c;
            if (c >= 0) __builtin_prefetch(&v->tokens[c]);
        }
    for (size_t j = 0; j < cnt; j++)
        for (int q = 0; q < 3; q++)
            if (job[j].id[q] >= 0) __builtin_prefetch(v->tokens[job[j].id[q]].text);
    /* 3: resolve exactly, prefetch the merge slot */
    for (size_t j = 0; j < cnt; j++) {
        merge_job *J = &job[j];
        J->id[0] = tok_find_h(v, J->l, J->ll, J->h[0]);
        J->id[1] = tok_find_h(v, J->r, J->rl, J->h[1]);
        J->id[2] = tok_find_h(v, J->cat, (size_t)J->ll + J->rl, J->h[2]);
        uint64_t key = ((uint64_t)(uint32_t)J->id[0] << 32) | (uint32_t)J->id[1];
        __builtin_prefetch(&v->merges[(uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & v->merge_mask]);
    }
    /* 4: check and insert, in rank order */
    for (size_t j = 0; j < cnt; j++) {
        const merge_job *J = &job[j];
        const uint64_t i = base + j;
        const int len = (int)SOV_MIN((size_t)J->ll + 1 + J->rl, 64);
        if (J->id[0] < 0 || J->id[1] < 0)
            return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s[%llu] '%.*s' names a token not in %s", KEY_MERGES,
                            (unsigned long long)i, len, J->l, KEY_TOKENS);
        if (J->id[2] < 0)
            return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s[%llu] '%.*s' makes a token not in %s", KEY_MERGES,
                            (unsigned long long)i, len, J->l, KEY_TOKENS);
        merge_insert(v, i, J->id[0], J->id[1], J->id[2]);
    }
    return SOV_OK;
}

static sov_status load_merges(sov_vocab *v, const gguf_file *f) {
    const gguf_kv *m;
    sov_status st = get_array(f, KEY_MERGES, GGUF_STRING, true, &m);
    if (st) return st;
    if (m->arr_n >= INT32_MAX / 4)
        return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s has too many entries", KEY_MERGES);
    v->merge_mask = pow2_at_least(m->arr_n + m->arr_n / 2 + 16) - 1;
    v->merges = malloc(((size_t)v->merge_mask + 1) * sizeof *v->merges);
    if (!v->merges) return sov_fail(SOV_ERR_NOMEM, "tokenizer: out of memory for %s", KEY_MERGES);
    for (size_t i = 0; i <= v->merge_mask; i++) v->merges[i].key = UINT64_MAX;

    merge_job job[MERGE_BATCH];
    for (uint64_t base = 0; base < m->arr_n && !st; base += MERGE_BATCH) {
        const size_t cnt = (size_t)SOV_MIN((uint64_t)MERGE_BATCH, m->arr_n - base);
        for (size_t j = 0; j < cnt; j++) job[j].cat = job[j].buf;
        st = merge_batch(v, m, base, cnt, job);
        for (size_t j = 0; j < cnt; j++)
            if (job[j].cat != job[j].buf) free(job[j].cat);
    }
    return st;
}

static void set_eog(sov_vocab *v, sov_token t, bool on) {
    if (t < 0 || t >= v->n_tokens) return;
    if (on)
        v->eog[t >> 3] |= (uint8_t)(1u << (t & 7));
    else
        v->eog[t >> 3] &= (uint8_t)~(1u << (t & 7));
}
static bool get_eog(const sov_vocab *v, sov_token t) { return (v->eog[t >> 3] >> (t & 7)) & 1; }

static sov_token find_cstr(const sov_vocab *v, const char *s) { return tok_find(v, s, strlen(s)); }

/* The first of names present in the vocabulary (in list order), marked as control. */
static void detect_special(sov_vocab *v, int32_t *id, const char *const *names) {
    if (*id >= 0) return;
    for (; *names; names++) {
        sov_token t = find_cstr(v, *names);
        if (t >= 0) {
            *id = t;
            v->tokens[t].attr |= TOK_ATTR_CONTROL;
            return;
        }
    }
}

/* End-of-generation tokens and the attribute fixes llama.cpp makes by token text. */
static void detect_specials(sov_vocab *v) {
    static const char *const eot[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                      "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
                                      "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>",
                                      "<end_of_utterance>", NULL};
    static const char *const eom[] = {"<|eom_id|>", NULL};
    static const char *const fim_pre[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                                          "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>",
                                          "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL};
    static const char *const fim_suf[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                                          "<\xef\xbd\x9c" "fim\xe2\x96\x81" "hole\xef\xbd\x9c>", "<SUF>",
                                          "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL};
    static const char *const fim_mid[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                                          "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>",
                                          "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL};
    static const char *const fim_pad[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL};
    static const char *const fim_rep[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL};
    static const char *const fim_sep[] = {"<|file_sep|>", NULL};
    static const char *const eog[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
                                      "<|flush|>", "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>",
                                      "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
                                      "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
                                      "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>",
                                      "[e~[", NULL};
    static const char *const always_render[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL};

    detect_special(v, &v->eot, eot);
    detect_special(v, &v->eom, eom);
    detect_special(v, &v->fim_pre, fim_pre);
    detect_special(v, &v->fim_suf, fim_suf);
    detect_special(v, &v->fim_mid, fim_mid);
    detect_special(v, &v->fim_pad, fim_pad);
    detect_special(v, &v->fim_rep, fim_rep);
    detect_special(v, &v->fim_sep, fim_sep);

    /* control tokens named "unused" are unused */
    for (int32_t i = 0; i < v->n_tokens; i++) {
        tok_token *t = &v->tokens[i];
        if ((t->attr & TOK_ATTR_CONTROL) && t->len >= 6 && memmem(t->text, t->len, "unused", 6))
            t->attr |= TOK_ATTR_UNUSED;
    }

    set_eog(v, v->fim_pad, true);
    set_eog(v, v->fim_rep, true);
    set_eog(v, v->fim_sep, true);
    for (const char *const *s = eog; *s; s++) {
        sov_token t = find_cstr(v, *s);
        if (t < 0) continue;
        set_eog(v, t, true);
        v->tokens[t].attr |= TOK_ATTR_CONTROL;
    }
    for (const char *const *s = always_render; *s; s++) {
        sov_token t = find_cstr(v, *s);
        if (t >= 0) v->tokens[t].attr = TOK_ATTR_USER_DEFINED;
    }
    set_eog(v, v->eos, true);
    set_eog(v, v->eot, true);
    set_eog(v, v->eom, true);

    /* o200k_harmony / solar-open: "<|end|>" is not the end when "<|return|>" and
       "<|call|>" (or "<|calls|>" and "<|flush|>") are there too */
    sov_token end = find_cstr(v, "<|end|>"), ret = find_cstr(v, "<|return|>");
    sov_token call = find_cstr(v, "<|call|>"), calls = find_cstr(v, "<|calls|>"), flush = find_cstr(v, "<|flush|>");
    bool has_call = (call >= 0 && get_eog(v, call)) || (calls >= 0 && get_eog(v, calls));
    if (end >= 0 && get_eog(v, end) && has_call &&
        ((ret >= 0 && get_eog(v, ret)) || (flush >= 0 && get_eog(v, flush)))) {
        set_eog(v, end, false);
        v->tokens[end].attr = TOK_ATTR_USER_DEFINED;
    }
    /* gemma4 / paddleocr: "</s>" is not the end when "<|tool_response>" is */
    sov_token s_end = find_cstr(v, "</s>"), tool = find_cstr(v, "<|tool_response>");
    if (s_end >= 0 && tool >= 0 && get_eog(v, s_end) && get_eog(v, tool)) {
        set_eog(v, s_end, false);
        v->tokens[s_end].attr = TOK_ATTR_NORMAL;
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static sov_status build_special_list(sov_vocab *v) {
    int32_t n = 0;
    for (int32_t i = 0; i < v->n_tokens; i++)
        if ((v->tokens[i].attr & TOK_ATTR_SPECIAL) && v->tokens[i].len) n++;
    /* sort keys: (UINT32_MAX - length) << 32 | id, ascending = longest first, then by id */
    uint64_t *keys = malloc((size_t)(n ? n : 1) * sizeof *keys);
    v->special = malloc((size_t)(n ? n : 1) * sizeof *v->special);
    if (!keys || !v->special) {
        free(keys);
        return sov_fail(SOV_ERR_NOMEM, "tokenizer: out of memory");
    }
    n = 0;
    for (int32_t i = 0; i < v->n_tokens; i++)
        if ((v->tokens[i].attr & TOK_ATTR_SPECIAL) && v->tokens[i].len)
            keys[n++] = ((uint64_t)(UINT32_MAX - v->tokens[i].len) << 32) | (uint32_t)i;
    qsort(keys, (size_t)n, sizeof *keys, cmp_u64);
    for (int32_t i = 0; i < n; i++) v->special[i] = (int32_t)(keys[i] & 0xFFFFFFFFu);
    free(keys);
    v->n_special = n;
    for (int32_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)v->tokens[v->special[i]].text[0];
        v->special_first[c >> 3] |= (uint8_t)(1u << (c & 7));
    }
    return SOV_OK;
}

/* Phi-3 (by general.name, as llama.cpp decides): special tokens swallow the white
 * space after them in text. */
static void apply_name_rules(sov_vocab *v, const gguf_file *f) {
    char name[128] = "";
    if (!gguf_get_cstr(f, "general.name", name, sizeof name)) return;
    for (char *p = name; *p; p++) *p = (char)tolower((unsigned char)*p);
    if (!strstr(name, "phi-3") && !strstr(name, "phi3")) return;
    for (int32_t i = 0; i < v->n_special; i++) v->tokens[v->special[i]].attr |= TOK_ATTR_RSTRIP;
    sov_token t = find_cstr(v, "</s>");
    if (t >= 0) v->tokens[t].attr |= TOK_ATTR_RSTRIP;
    static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
    for (size_t i = 0; i < SOV_ARRAY_LEN(keep); i++)
        if ((t = find_cstr(v, keep[i])) >= 0) v->tokens[t].attr &= (uint16_t)~TOK_ATTR_RSTRIP;
}

static void build_byte_tokens(sov_vocab *v) {
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        if (v->kind != TOK_BPE || v->bpe_raw) {
            char s[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
            sov_token t = tok_find(v, s, 6);
            if (t < 0) {
                char c = (char)b;
                t = tok_find(v, &c, 1);
            }
            v->byte_tok[b] = t;
        } else {
            uint8_t u[4];
            size_t n = tok_utf8_put(tok_byte_to_cpt((uint8_t)b), u);
            v->byte_enc[b][0] = (uint8_t)n;
            memcpy(&v->byte_enc[b][1], u, n);
            v->byte_tok[b] = tok_find(v, (const char *)u, n);
        }
    }
    for (uint32_t cp = 0; cp < SOV_ARRAY_LEN(v->cpt_byte); cp++) v->cpt_byte[cp] = (int16_t)tok_cpt_to_byte(cp);
}

/* SentencePiece text can be merged run by run (split before each "▁" that follows
 * another character) when no token holds a "▁" after a character other than "▁": no
 * merge (or Viterbi piece) can then reach across such a boundary. A few tokens that do
 * (Gemma 4 has one, ">▁</") are kept in v->cross, and the text is not split where one of
 * them occurs across the boundary (tokenize.c); with more than TOK_MAX_CROSS, never. */
static bool spm_runs_independent(sov_vocab *v) {
    v->n_cross = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        const tok_token *t = &v->tokens[i];
        uint32_t k = 0;
        while (k + 3 <= t->len && memcmp(t->text + k, "\xe2\x96\x81", 3) == 0) k += 3;
        if (k < t->len && memmem(t->text + k, t->len - k, "\xe2\x96\x81", 3)) {
            if (v->n_cross == TOK_MAX_CROSS) return false;
            v->cross[v->n_cross++] = i;
        }
    }
    return true;
}

/* WordPiece (llama.cpp's defaults for "bert"): [CLS] 101 text [SEP] 102, [UNK] 100, any
 * tokenizer.ggml.pre. */
static void wpm_defaults(sov_vocab *v) {
    v->pre = TOK_PRE_NONE;
    v->bos = 101;
    v->unk = 100;
    v->sep = 102;
    v->pad = 0;
    v->mask = 103;
    v->add_bos = true;
    v->add_sep = true;
}

/* WordPiece normaliser options and the longest token. */
static sov_status wpm_options(sov_vocab *v, const gguf_file *f) {
    sov_status st;
    v->lowercase = true; /* BERT uncased, the default when the key is absent */
    if ((st = get_bool(f, "tokenizer.ggml.normalizer.lowercase", &v->lowercase))) return st;
    v->strip_accents = v->lowercase;
    if ((st = get_bool(f, "tokenizer.ggml.normalizer.strip_accents", &v->strip_accents))) return st;
    v->add_bos = v->add_sep = true; /* llama.cpp adds [CLS] and [SEP] whatever the add_* keys say */
    if (v->unk < 0) return sov_fail(SOV_ERR_FORMAT, "tokenizer: a WordPiece vocabulary needs tokenizer.ggml.unknown_token_id");
    for (int32_t i = 0; i < v->n_tokens; i++) v->max_token_len = SOV_MAX(v->max_token_len, v->tokens[i].len);
    return SOV_OK;
}

static sov_status build(sov_vocab *v, gguf_file *f) {
    sov_status st;
    gguf_str model, pre;
    if ((st = get_string(f, KEY_MODEL, true, &model))) return st;
    if ((st = get_string(f, KEY_PRE, false, &pre))) return st;
    snprintf(v->model_name, sizeof v->model_name, "%.*s", (int)SOV_MIN(model.len, 15), model.ptr);
    if (model.len == 5 && memcmp(model.ptr, "llama", 5) == 0) {
        v->kind = TOK_SPM;
    } else if (model.len == 4 && memcmp(model.ptr, "gpt2", 4) == 0) {
        v->kind = TOK_BPE;
    } else if (model.len == 6 && memcmp(model.ptr, "gemma4", 6) == 0) {
        v->kind = TOK_BPE; /* on UTF-8 with "▁" for spaces, not the byte alphabet */
        v->bpe_raw = true;
    } else if (model.len == 2 && memcmp(model.ptr, "t5", 2) == 0) {
        v->kind = TOK_UGM;
    } else if (model.len == 4 && memcmp(model.ptr, "bert", 4) == 0) {
        v->kind = TOK_WPM;
    } else {
        return sov_fail(SOV_ERR_UNSUPPORTED,
                        "tokenizer: %s '%.*s' is not supported (only 'llama', 'gpt2', 'gemma4', 't5' and 'bert')",
                        KEY_MODEL, (int)SOV_MIN(model.len, 64), model.ptr);
    }
    if (pre.ptr && pre.len >= sizeof v->pre_name)
        return sov_fail(SOV_ERR_UNSUPPORTED, "tokenizer: unknown %s '%.*s'", KEY_PRE, 64, pre.ptr);
    snprintf(v->pre_name, sizeof v->pre_name, "%.*s", pre.ptr ? (int)pre.len : 7, pre.ptr ? pre.ptr : "default");

    /* defaults by tokenizer kind (llama.cpp's) */
    v->bos = v->eos = v->eot = v->eom = v->unk = v->sep = v->pad = v->mask = -1;
    v->fim_pre = v->fim_suf = v->fim_mid = v->fim_pad = v->fim_rep = v->fim_sep = -1;
    if (v->kind == TOK_SPM) {
        v->pre = TOK_PRE_NONE;
        v->bos = 1;
        v->eos = 2;
        v->unk = 0;
        v->add_bos = true;
        v->add_space_prefix = true;
    } else if (v->kind == TOK_UGM) { /* llama.cpp's defaults for "t5" */
        v->pre = TOK_PRE_NONE;
        v->eos = 1;
        v->unk = 2;
        v->pad = 0;
        v->add_eos = true;
    } else if (v->bpe_raw) { /* Gemma 4: special ids from the file only */
        v->pre = TOK_PRE_NEWLINES;
        snprintf(v->pre_name, sizeof v->pre_name, "gemma4");
    } else if (v->kind == TOK_WPM) {
        wpm_defaults(v);
    } else {
        const pre_name *p = find_pre(v->pre_name);
        if (!p) return sov_fail(SOV_ERR_UNSUPPORTED, "tokenizer: unknown %s '%s'", KEY_PRE, v->pre_name);
        v->pre = p->pre;
        v->ignore_merges = p->ignore_merges;
        v->add_bos = p->add_bos;
        /* GLM-4 has no default BOS id */
        v->bos = strcmp(p->name, "glm4") == 0 || strcmp(p->name, "chatglm-bpe") == 0 ? -1 : 11;
        v->eos = 11;
    }

    if ((st = load_tokens(v, f))) return st;
    if (v->kind == TOK_BPE && (st = load_merges(v, f))) return st;

    if ((st = get_bool(f, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix))) return st;
    if ((st = get_bool(f, "tokenizer.ggml.remove_extra_whitespaces", &v->remove_extra_ws))) return st;
    if ((st = get_bool(f, "tokenizer.ggml.add_bos_token", &v->add_bos))) return st;
    if ((st = get_bool(f, "tokenizer.ggml.add_eos_token", &v->add_eos))) return st;
    if (v->bpe_raw) v->add_bos = true; /* as llama.cpp does for Gemma 4 */

    struct {
        const char *key;
        int32_t *id;
    } ids[] = {
        {"tokenizer.ggml.bos_token_id", &v->bos},         {"tokenizer.ggml.eos_token_id", &v->eos},
        {"tokenizer.ggml.eot_token_id", &v->eot},         {"tokenizer.ggml.eom_token_id", &v->eom},
        {"tokenizer.ggml.unknown_token_id", &v->unk},     {"tokenizer.ggml.seperator_token_id", &v->sep},
        {"tokenizer.ggml.padding_token_id", &v->pad},     {"tokenizer.ggml.mask_token_id", &v->mask},
        {"tokenizer.ggml.fim_pre_token_id", &v->fim_pre}, {"tokenizer.ggml.fim_suf_token_id", &v->fim_suf},
        {"tokenizer.ggml.fim_mid_token_id", &v->fim_mid}, {"tokenizer.ggml.fim_pad_token_id", &v->fim_pad},
        {"tokenizer.ggml.fim_rep_token_id", &v->fim_rep}, {"tokenizer.ggml.fim_sep_token_id", &v->fim_sep},
        {"tokenizer.ggml.prefix_token_id", &v->fim_pre},  {"tokenizer.ggml.suffix_token_id", &v->fim_suf},
        {"tokenizer.ggml.middle_token_id", &v->fim_mid},
    };
    for (size_t i = 0; i < SOV_ARRAY_LEN(ids); i++) {
        if (*ids[i].id >= v->n_tokens) *ids[i].id = -1; /* a default outside a small vocabulary */
        if ((st = get_token_id(f, ids[i].key, v->n_tokens, ids[i].id))) return st;
    }

    gguf_str tmpl;
    if ((st = get_string(f, "tokenizer.chat_template", false, &tmpl))) return st;
    v->chat_template = tmpl.ptr;
    v->chat_template_len = tmpl.len;

    detect_specials(v);
    if ((st = build_special_list(v))) return st;
    apply_name_rules(v, f);
    build_byte_tokens(v);
    if (v->kind == TOK_SPM || v->kind == TOK_UGM || v->bpe_raw) v->spm_split_ok = spm_runs_independent(v);
    if (v->kind == TOK_UGM && (st = tok_ugm_init(v, f))) return st;
    if (v->kind == TOK_WPM && (st = wpm_options(v, f))) return st;
    return SOV_OK;
}

sov_status tok_vocab_from_gguf(gguf_file *f, bool take_file, sov_vocab **out) {
    *out = NULL;
    sov_vocab *v = calloc(1, sizeof *v);
    if (!v) {
        if (take_file) gguf_close(f);
        return sov_fail(SOV_ERR_NOMEM, "tokenizer: out of memory");
    }
    v->file = f;
    v->owns_file = take_file;
    sov_status st = build(v, f);
    if (st) {
        sov_vocab_free(v);
        return st;
    }
    *out = v;
    return SOV_OK;
}

sov_status sov_vocab_load(const char *path, sov_vocab **out) {
    if (!path || !out) return sov_fail(SOV_ERR_ARG, "sov_vocab_load: path and out are required");
    *out = NULL;
    gguf_file *f;
    sov_status st = gguf_open(path, &f);
    if (st) return st;
    return tok_vocab_from_gguf(f, true, out);
}

void sov_vocab_free(sov_vocab *v) {
    if (!v) return;
    if (v->owns_file) gguf_close(v->file);
    free(v->tokens);
    free(v->id_hash);
    free(v->merges);
    free(v->special);
    free(v->eog);
    tok_ugm_free(v);
    free(v);
}

/* ---- accessors ---- */

int32_t sov_vocab_size(const sov_vocab *v) { return v ? v->n_tokens : 0; }
sov_token sov_vocab_bos(const sov_vocab *v) { return v ? v->bos : -1; }
sov_token sov_vocab_eos(const sov_vocab *v) { return v ? v->eos : -1; }

bool sov_vocab_is_eog(const sov_vocab *v, sov_token t) {
    return v && t >= 0 && t < v->n_tokens && get_eog(v, t);
}

bool sov_vocab_is_control(const sov_vocab *v, sov_token t) {
    return v && t >= 0 && t < v->n_tokens && (v->tokens[t].attr & TOK_ATTR_CONTROL);
}

const char *tok_vocab_chat_template(const sov_vocab *v, size_t *len) {
    if (len) *len = v->chat_template_len;
    return v->chat_template;
}

const char *tok_vocab_token_text(const sov_vocab *v, sov_token t, size_t *len) {
    if (!v || t < 0 || t >= v->n_tokens) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = v->tokens[t].len;
    return v->tokens[t].text;
}

sov_token tok_vocab_find(const sov_vocab *v, const char *s, size_t len) { return tok_find(v, s, len); }

const char *tok_vocab_model_name(const sov_vocab *v) { return v->model_name; }
const char *tok_vocab_pre_name(const sov_vocab *v) { return v->pre_name; }
