/* tok_impl.h - the inside of a sov_vocab, shared by the tokenizer module's files only.
 *
 * Token texts are (pointer, length) views into the GGUF mapping, never copied. Lookups
 * go through two open-addressing tables: token text -> id, and (left id, right id) ->
 * merge rank and result id for byte-level BPE. Token attributes follow llama.cpp's
 * llama_token_attr bits, because the special-token and piece rules are stated in them. */
#ifndef SOV_TOK_IMPL_H
#define SOV_TOK_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tok/tok.h"

/* token attributes (llama.cpp's llama_token_attr values) */
enum {
    TOK_ATTR_UNKNOWN = 1 << 0,
    TOK_ATTR_UNUSED = 1 << 1,
    TOK_ATTR_NORMAL = 1 << 2,
    TOK_ATTR_CONTROL = 1 << 3,
    TOK_ATTR_USER_DEFINED = 1 << 4,
    TOK_ATTR_BYTE = 1 << 5,
    TOK_ATTR_LSTRIP = 1 << 7,
    TOK_ATTR_RSTRIP = 1 << 8,
};
/* tokens the special-token pass matches in text */
#define TOK_ATTR_SPECIAL (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN)

#define TOK_MAX_CROSS 8 /* see spm_runs_independent (vocab.c) */

typedef enum tok_kind {
    TOK_SPM, /* "llama": SentencePiece BPE (merges by score) */
    TOK_BPE, /* "gpt2": byte-level BPE; "gemma4" (bpe_raw): BPE over UTF-8 with "▁" */
    TOK_UGM, /* "t5": SentencePiece Unigram (Viterbi), see ugm.c */
    TOK_WPM, /* "bert": WordPiece, see wordpiece.c */
} tok_kind;

/* the pre-tokenizers (tokenizer.ggml.pre families) */
typedef enum tok_pre {
    TOK_PRE_NONE,     /* SentencePiece: no pre-tokenizer */
    TOK_PRE_DEFAULT,  /* "default" (or none given): punctuation, GPT-2, digit passes */
    TOK_PRE_GPT2,     /* "gpt-2" and friends */
    TOK_PRE_LLAMA3,   /* "llama3", "llama-bpe" */
    TOK_PRE_QWEN2,    /* "qwen2" */
    TOK_PRE_SMOLLM,   /* "smollm", "starcoder", ...: digits apart, then GPT-2 */
    TOK_PRE_DEEPSEEK, /* "deepseek-llm" */
    TOK_PRE_QWEN35,   /* "qwen35": Qwen2's with combining marks inside words */
    TOK_PRE_DEEPSEEK_CODER, /* "deepseek-coder" */
    TOK_PRE_DEEPSEEK3, /* "deepseek-v3" */
    TOK_PRE_FALCON,   /* "falcon" */
    TOK_PRE_TEKKEN,   /* "tekken" (Mistral Nemo / Small): letter case splits words */
    TOK_PRE_GPT4O,    /* "gpt-4o", "llama4" (o200k) */
    TOK_PRE_KIMI_K2,  /* "kimi-k2": GPT-4o's with Han runs apart */
    TOK_PRE_BLOOM,    /* "bloom", "poro-chat", "gpt3-finnish" */
    TOK_PRE_SUPERBPE, /* "superbpe": digit runs grouped by three from the right */
    TOK_PRE_NEWLINES, /* Gemma 4: runs of "\n" apart from everything else */
} tok_pre;

typedef struct tok_token {
    const char *text; /* into the mapping; not NUL-terminated */
    uint32_t len;
    uint16_t attr;    /* TOK_ATTR_* */
    float score;      /* SentencePiece merge priority (higher first) */
} tok_token;

typedef struct tok_merge_slot {
    uint64_t key;   /* (left id << 32) | right id; UINT64_MAX = empty */
    int32_t rank;   /* position in tokenizer.ggml.merges (lower merges first) */
    int32_t result; /* id of left + right */
} tok_merge_slot;

struct sov_vocab {
    gguf_file *file;         /* the mapping the texts point into */
    bool owns_file;
    tok_kind kind;
    tok_pre pre;
    char model_name[16];     /* "llama" / "gpt2" */
    char pre_name[64];
    int32_t n_tokens;
    tok_token *tokens;       /* [n_tokens] */

    uint64_t *id_hash;       /* [id_hash_mask + 1] (hash >> 32) << 32 | (token id + 1); 0 = empty */
    uint32_t id_hash_mask;
    tok_merge_slot *merges;  /* [merge_mask + 1] */
    uint32_t merge_mask;
    uint32_t n_merges;

    int32_t byte_tok[256];   /* token of each byte: BPE its alphabet character, SPM <0xXX>
                                (or the byte itself); -1 when the vocabulary lacks it */
    uint8_t byte_enc[256][3]; /* BPE: each byte's alphabet character as UTF-8: length, bytes */
    int16_t cpt_byte[0x144]; /* BPE decoding: code point -> byte, -1 if none */

    /* special tokens, longest text first (ties by id): the order llama.cpp's
       tokenizer_st_partition tries them in */
    int32_t *special;        /* [n_special] */
    int32_t n_special;
    uint8_t special_first[32]; /* bitmap of the first bytes of special texts */

    uint8_t *eog;            /* [(n_tokens + 7) / 8] end-of-generation bitset */

    int32_t bos, eos, eot, eom, unk, sep, pad, mask;
    int32_t fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;
    bool add_bos, add_eos;
    bool add_space_prefix;   /* SPM: " " before the first text (and after specials) */
    bool ignore_merges;      /* BPE: a word that is itself a token is not merged */
    int32_t cross[TOK_MAX_CROSS];      /* SPM-style: the tokens with "▁" after another character */
    int32_t n_cross;
    bool spm_split_ok;       /* SPM: no token has "▁" after another character, so text
                                can be merged in independent runs (see spm.c) */
    const char *chat_template;
    size_t chat_template_len;

    bool bpe_raw;            /* Gemma 4: BPE on UTF-8 characters, " " written "▁", byte
                                fallback to <0xXX>, no byte alphabet */
    bool remove_extra_ws;    /* UGM: tokenizer.ggml.remove_extra_whitespaces */
    struct tok_ugm *ugm;     /* UGM: normaliser and piece index (ugm.c) */
    /* WordPiece (wordpiece.c) */
    bool add_sep;            /* [SEP] after the text with add_special */
    bool lowercase;          /* tokenizer.ggml.normalizer.lowercase */
    bool strip_accents;      /* tokenizer.ggml.normalizer.strip_accents */
    uint32_t max_token_len;  /* the longest token text, in bytes */
};

/* SentencePiece-style texts: "▁" stands for " " (SPM, UGM, Gemma 4) */
static inline bool tok_escapes_space(const sov_vocab *v) { return v->kind != TOK_BPE || v->bpe_raw; }

/* ---- vocab.c ---- */
uint64_t tok_hash_bytes(const void *p, size_t n);
sov_token tok_find(const sov_vocab *v, const char *s, size_t len);
static inline sov_token tok_find_h(const sov_vocab *v, const char *s, size_t len, uint64_t h) {
    const uint32_t tag = (uint32_t)(h >> 32);
    for (uint32_t i = (uint32_t)h & v->id_hash_mask;; i = (i + 1) & v->id_hash_mask) {
        uint64_t e = v->id_hash[i];
        if (!e) return -1;
        if ((uint32_t)(e >> 32) != tag) continue;
        const tok_token *t = &v->tokens[(uint32_t)e - 1];
        if (t->len == len && memcmp(t->text, s, len) == 0) return (sov_token)((uint32_t)e - 1);
    }
}
static inline const tok_merge_slot *tok_merge_find(const sov_vocab *v, int32_t l, int32_t r) {
    if (!v->merges) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    for (uint32_t i = (uint32_t)(h >> 32) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
        const tok_merge_slot *s = &v->merges[i];
        if (s->key == key) return s;
        if (s->key == UINT64_MAX) return NULL;
    }
}

/* ---- word cache and id buffers (tokenize.c) ---- */
typedef struct tok_ids {
    sov_token *v;
    size_t n, cap;
    bool oom;
} tok_ids;
void tok_ids_push(tok_ids *ids, sov_token t);

/* ---- ugm.c ---- */
typedef struct tok_ugm_scratch {
    void *best;     /* Viterbi lattice */
    size_t best_cap;
} tok_ugm_scratch;
/* Reads tokenizer.ggml.precompiled_charsmap (checked: SOV_ERR_FORMAT naming the key when
 * malformed) and builds the piece index. */
sov_status tok_ugm_init(sov_vocab *v, const gguf_file *f);
void tok_ugm_free(sov_vocab *v);
/* SentencePiece's normaliser: the charsmap, spaces as "▁", the prefix "▁" and extra white
 * space as the metadata asks. Writes to *buf (grown as needed); false on allocation failure. */
bool tok_ugm_normalize(const sov_vocab *v, const uint8_t *s, size_t n, uint8_t **buf, size_t *cap, size_t *out_n);
/* Viterbi over piece scores of normalised text; appends the ids. */
bool tok_ugm_run(const sov_vocab *v, const uint8_t *s, size_t n, tok_ugm_scratch *sc, tok_ids *out);


/* ---- merge.c: one word (BPE) or one run of text (SPM) to tokens ---- */
typedef struct tok_merge_scratch {
    void *sym;   /* symbol array */
    size_t sym_cap;
    void *heap;
    size_t heap_cap;
    uint8_t *enc; /* BPE: the word in the byte alphabet (ignore_merges lookup) */
    size_t enc_cap;
} tok_merge_scratch;
void tok_merge_scratch_free(tok_merge_scratch *s);
/* Appends the tokens of s[0..n) to out; false on allocation failure. */
bool tok_bpe_word(const sov_vocab *v, const uint8_t *s, size_t n, tok_merge_scratch *sc, tok_ids *out);
bool tok_spm_run(const sov_vocab *v, const uint8_t *s, size_t n, tok_merge_scratch *sc, tok_ids *out);
/* Gemma 4: one word of escaped UTF-8 text, merged by rank */
bool tok_bpe_raw_word(const sov_vocab *v, const uint8_t *s, size_t n, tok_merge_scratch *sc, tok_ids *out);

/* ---- pretok.c: splits code points into words ---- */
typedef struct tok_cpts {
    uint32_t *cp;    /* [n] code points */
    uint8_t *fl;     /* [n + 1] flags (0 past the end) */
    uint32_t *off;   /* [n + 1] byte offset of each code point in the (normalised) text */
    size_t n;
} tok_cpts;
/* Word ends (exclusive code point indices, increasing, the last == n) into *ends. */
typedef struct tok_ends {
    uint32_t *v;
    size_t n, cap;
} tok_ends;
bool tok_pretokenize(tok_pre pre, const tok_cpts *c, tok_ends *ends, tok_ends *tmp);
/* The pre-tokenizer of a tokenizer.ggml.pre name (vocab.c's table); false when unknown. */
bool tok_pre_from_name(const char *name, tok_pre *out);

#endif
