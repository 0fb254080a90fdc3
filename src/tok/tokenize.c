/* tokenize.c - sov_tokenize: text -> token ids.
 *
 * 1. Special tokens: with parse_special, text that spells a control token ("<|im_end|>")
 *    becomes that token; user-defined tokens are matched even without it. As in
 *    llama.cpp, tokens are tried longest first: every occurrence of the longest special
 *    text is cut out (leftmost first), then the next token's occurrences in what is left,
 *    and so on. Here all occurrences are found in one scan (candidates by first byte),
 *    then taken in that priority order against a byte map of what is already taken, which
 *    gives the same fragments without rescanning the text once per special token. Tokens
 *    with the RSTRIP/LSTRIP attribute also consume the white space after/before them.
 * 2. Each remaining text fragment is tokenized:
 *    SPM: " " -> "▁", a "▁" prefix at the start and after a special token
 *         (add_space_prefix), then merged; when the vocabulary allows it (see
 *         spm_runs_independent in vocab.c) run by run, each "▁word" on its own.
 *    BPE: decoded to code points, split into words by the pre-tokenizer (pretok.c),
 *         each word merged on its own (merge.c). Gemma 4: " " -> "▁" first, words are
 *         runs of "\n" and of the rest, merged on UTF-8 characters (run by run, as SPM).
 *    UGM: normalised (charsmap, "▁", prefix, extra spaces), then Viterbi (ugm.c), run by
 *         run when the vocabulary allows it.
 *    Words and runs are memoised per call in a hash table (text -> ids): natural text
 *    repeats its words, and a hit costs one hash and one memcmp.
 * 3. BOS/EOS around it all when add_special and the vocabulary asks for them. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "tok/tok_impl.h"
#include "tok/unicode.h"
#include "tok/wordpiece.h"

void tok_ids_push(tok_ids *ids, sov_token t) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 256;
        sov_token *v = realloc(ids->v, cap * sizeof *v);
        if (!v) {
            ids->oom = true;
            return;
        }
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = t;
}

/* ---- the per-call word cache ---- */

#define CACHE_MAX_KEY 64          /* longer words are not memoised */
#define CACHE_MAX_ENTRIES (1u << 20)

typedef struct cache_slot {
    uint64_t hash;   /* 0 = empty (a real hash of 0 is stored as 1) */
    uint32_t key;    /* offset of the key bytes in keys */
    uint32_t key_len;
    uint32_t ids;    /* offset of the ids in pool */
    uint32_t n_ids;
} cache_slot;

typedef struct word_cache {
    cache_slot *slot;
    uint32_t mask, used;
    uint8_t *keys;
    size_t keys_n, keys_cap;
    tok_ids pool;
} word_cache;

static bool cache_init(word_cache *c) {
    memset(c, 0, sizeof *c);
    c->mask = 1023;
    c->slot = calloc(c->mask + 1, sizeof *c->slot);
    return c->slot != NULL;
}

static void cache_free(word_cache *c) {
    free(c->slot);
    free(c->keys);
    free(c->pool.v);
}

static const cache_slot *cache_get(const word_cache *c, const uint8_t *s, size_t n, uint64_t h) {
    for (uint32_t i = (uint32_t)h & c->mask;; i = (i + 1) & c->mask) {
        const cache_slot *e = &c->slot[i];
        if (!e->hash) return NULL;
        if (e->hash == h && e->key_len == n && memcmp(c->keys + e->key, s, n) == 0) return e;
    }
}

static void cache_grow(word_cache *c) {
    uint32_t mask = c->mask * 2 + 1;
    cache_slot *slot = calloc((size_t)mask + 1, sizeof *slot);
    if (!slot) return; /* keep the old table; it just fills up */
    for (uint32_t i = 0; i <= c->mask; i++) {
        if (!c->slot[i].hash) continue;
        uint32_t k = (uint32_t)c->slot[i].hash & mask;
        while (slot[k].hash) k = (k + 1) & mask;
        slot[k] = c->slot[i];
    }
    free(c->slot);
    c->slot = slot;
    c->mask = mask;
}

static void cache_put(word_cache *c, const uint8_t *s, size_t n, uint64_t h, const sov_token *ids, size_t n_ids) {
    if (c->used >= CACHE_MAX_ENTRIES) return;
    if ((c->used + 1) * 2 > c->mask + 1) cache_grow(c);
    if ((c->used + 1) * 10 > (c->mask + 1) * 9) return;
    if (c->keys_n + n > c->keys_cap) {
        size_t cap = c->keys_cap ? c->keys_cap * 2 : 4096;
        while (cap < c->keys_n + n) cap *= 2;
        uint8_t *k = realloc(c->keys, cap);
        if (!k) return;
        c->keys = k;
        c->keys_cap = cap;
    }
    size_t at = c->pool.n;
    for (size_t i = 0; i < n_ids; i++) tok_ids_push(&c->pool, ids[i]);
    if (c->pool.oom || c->pool.n > UINT32_MAX || c->keys_n + n > UINT32_MAX) return;
    memcpy(c->keys + c->keys_n, s, n);
    uint32_t i = (uint32_t)h & c->mask;
    while (c->slot[i].hash) i = (i + 1) & c->mask;
    c->slot[i] = (cache_slot){h, (uint32_t)c->keys_n, (uint32_t)n, (uint32_t)at, (uint32_t)n_ids};
    c->keys_n += n;
    c->used++;
}

/* ---- a tokenization session: scratch buffers reused across fragments ---- */

typedef struct session {
    const sov_vocab *v;
    tok_ids out;
    word_cache cache;
    tok_merge_scratch ms;
    tok_cpts cp;          /* BPE: the fragment's code points */
    size_t cp_cap;
    uint8_t *norm;        /* BPE: the fragment re-encoded when it had malformed UTF-8; SPM:
                             the escaped fragment */
    size_t norm_cap;
    tok_ends ends, tmp;
    uint8_t *esc;         /* Gemma 4 / UGM: the fragment with spaces as "▁" (normalised) */
    size_t esc_cap;
    tok_ugm_scratch us;
    bool oom;
} session;

static bool grow_bytes(uint8_t **p, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    uint8_t *q = realloc(*p, c);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

typedef enum word_kind { W_BPE, W_SPM, W_RAW, W_UGM } word_kind;

/* Tokens of one word/run, through the cache. */
static void word(session *ss, const uint8_t *s, size_t n, word_kind kind) {
    if (n == 0) return;
    uint64_t h = 0;
    if (n <= CACHE_MAX_KEY) {
        h = tok_hash_bytes(s, n) | 1;
        const cache_slot *e = cache_get(&ss->cache, s, n, h);
        if (e) {
            for (uint32_t i = 0; i < e->n_ids; i++) tok_ids_push(&ss->out, ss->cache.pool.v[e->ids + i]);
            return;
        }
    }
    size_t before = ss->out.n;
    bool ok;
    switch (kind) {
    case W_BPE: ok = tok_bpe_word(ss->v, s, n, &ss->ms, &ss->out); break;
    case W_RAW: ok = tok_bpe_raw_word(ss->v, s, n, &ss->ms, &ss->out); break;
    case W_UGM: ok = tok_ugm_run(ss->v, s, n, &ss->us, &ss->out); break;
    default: ok = tok_spm_run(ss->v, s, n, &ss->ms, &ss->out); break;
    }
    if (!ok) {
        ss->oom = true;
        return;
    }
    if (n <= CACHE_MAX_KEY && !ss->out.oom) cache_put(&ss->cache, s, n, h, ss->out.v + before, ss->out.n - before);
}

/* Whether one of the vocabulary's few tokens with "▁" after another character occurs in
 * e[0..m) across position i (so that a merge could join the runs on both sides). */
static bool crossed(const sov_vocab *v, const uint8_t *e, size_t m, size_t i) {
    for (int32_t c = 0; c < v->n_cross; c++) {
        const tok_token *t = &v->tokens[v->cross[c]];
        for (uint32_t j = 1; j + 3 <= t->len; j++) {
            if (memcmp(t->text + j, "\xe2\x96\x81", 3) != 0 || j > i || i - j + t->len > m) continue;
            if (memcmp(e + i - j, t->text, t->len) == 0) return true;
        }
    }
    return false;
}

/* Escaped text e[0..m) in independent runs when the vocabulary allows it (see
 * spm_runs_independent in vocab.c), else whole. */
static void runs(session *ss, const uint8_t *e, size_t m, word_kind kind) {
    if (!ss->v->spm_split_ok) {
        word(ss, e, m, kind); /* long runs are not cached; the heap keeps it O(n log n) */
        return;
    }
    /* runs: a new one starts at each "▁" that follows a character other than "▁" */
    /* walk characters as the merge loop splits them (by lead byte, so that malformed
       input cuts the same way) */
    size_t start = 0;
    bool prev_space = false;
    for (size_t i = 0; i < m;) {
        bool is_space = i + 3 <= m && e[i] == 0xE2 && e[i + 1] == 0x96 && e[i + 2] == 0x81;
        if (is_space && !prev_space && i > start && !crossed(ss->v, e, m, i)) {
            word(ss, e + start, i - start, kind);
            start = i;
        }
        prev_space = is_space;
        i += tok_utf8_len(e[i]);
    }
    word(ss, e + start, m - start, kind);
}

/* SentencePiece Unigram: normalise, then Viterbi run by run */
static void ugm_fragment(session *ss, const uint8_t *s, size_t n) {
    size_t m;
    if (!tok_ugm_normalize(ss->v, s, n, &ss->esc, &ss->esc_cap, &m)) {
        ss->oom = true;
        return;
    }
    runs(ss, ss->esc, m, W_UGM);
}

static void spm_fragment(session *ss, const uint8_t *s, size_t n, bool prefix) {
    size_t spaces = prefix;
    for (size_t i = 0; i < n; i++) spaces += s[i] == ' ';
    if (!grow_bytes(&ss->norm, &ss->norm_cap, n + 2 * spaces + 3)) {
        ss->oom = true;
        return;
    }
    uint8_t *e = ss->norm;
    size_t m = 0;
    if (prefix) {
        memcpy(e, "\xe2\x96\x81", 3);
        m = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(e + m, "\xe2\x96\x81", 3);
            m += 3;
        } else {
            e[m++] = s[i];
        }
    }
    runs(ss, e, m, W_SPM);
}

static void bpe_fragment(session *ss, const uint8_t *s, size_t n) {
    tok_cpts *c = &ss->cp;
    if (ss->v->bpe_raw) { /* Gemma 4: " " -> "▁" before anything else */
        size_t spaces = 0;
        for (size_t i = 0; i < n; i++) spaces += s[i] == ' ';
        if (!grow_bytes(&ss->esc, &ss->esc_cap, n + 2 * spaces + 1)) {
            ss->oom = true;
            return;
        }
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ') {
                memcpy(ss->esc + m, "\xe2\x96\x81", 3);
                m += 3;
            } else {
                ss->esc[m++] = s[i];
            }
        }
        s = ss->esc;
        n = m;
    }
    if (n + 1 > ss->cp_cap) {
        size_t cap = ss->cp_cap ? ss->cp_cap : 256;
        while (cap < n + 1) cap *= 2;
        uint32_t *cp = realloc(c->cp, cap * sizeof *cp);
        if (cp) c->cp = cp;
        uint32_t *off = realloc(c->off, cap * sizeof *off);
        if (off) c->off = off;
        uint8_t *fl = realloc(c->fl, cap);
        if (fl) c->fl = fl;
        if (!cp || !off || !fl) {
            ss->oom = true;
            return;
        }
        ss->cp_cap = cap;
    }
    /* decode; offsets are into s while the text is valid UTF-8 */
    size_t k = 0, pos = 0;
    int bad = 0;
    while (pos < n) {
        uint8_t b = s[pos];
        c->off[k] = (uint32_t)pos;
        if (b < 0x80) {
            c->cp[k] = b;
            c->fl[k] = tok_cpt_flags(b);
            pos++;
        } else {
            uint32_t cp = tok_utf8_next(s, n, &pos, &bad);
            c->cp[k] = cp;
            c->fl[k] = tok_cpt_flags(cp);
        }
        k++;
    }
    c->n = k;
    c->off[k] = (uint32_t)n;
    c->fl[k] = 0;
    const uint8_t *text = s;
    if (bad) {
        /* malformed input: the words are the UTF-8 of the decoded code points (each bad
           byte became U+FFFD), as llama.cpp re-encodes them */
        if (!grow_bytes(&ss->norm, &ss->norm_cap, 4 * k + 4)) {
            ss->oom = true;
            return;
        }
        size_t m = 0;
        for (size_t i = 0; i < k; i++) {
            c->off[i] = (uint32_t)m;
            m += tok_utf8_put(c->cp[i], ss->norm + m);
        }
        c->off[k] = (uint32_t)m;
        text = ss->norm;
    }
    if (!tok_pretokenize(ss->v->pre, c, &ss->ends, &ss->tmp)) {
        ss->oom = true;
        return;
    }
    uint32_t start = 0;
    for (size_t i = 0; i < ss->ends.n && !ss->oom; i++) {
        uint32_t end = ss->ends.v[i];
        if (ss->v->bpe_raw)
            runs(ss, text + c->off[start], c->off[end] - c->off[start], W_RAW);
        else
            word(ss, text + c->off[start], c->off[end] - c->off[start], W_BPE);
        start = end;
    }
}

/* ---- special tokens ---- */

typedef struct occ {
    uint32_t prio; /* index in v->special: lower is tried first */
    uint32_t pos;
} occ;

static int cmp_occ(const void *a, const void *b) {
    const occ *x = a, *y = b;
    if (x->prio != y->prio) return x->prio < y->prio ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static bool c_isspace(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

enum { MAP_FREE = 0, MAP_TOKEN = 1, MAP_START = 2, MAP_STRIPPED = 3 };

/* Finds the special tokens in s[0..n). Returns false on allocation failure; *map is
 * NULL when there are none, else a byte map (MAP_*) and *starts the token at each
 * MAP_START byte. */
static bool find_specials(const sov_vocab *v, const uint8_t *s, size_t n, bool parse_special, uint8_t **map_out,
                          int32_t **tok_out) {
    *map_out = NULL;
    *tok_out = NULL;
    if (!v->n_special || n == 0) return true;
    occ *o = NULL;
    size_t no = 0, co = 0;
    for (size_t p = 0; p < n; p++) {
        uint8_t c = s[p];
        if (!((v->special_first[c >> 3] >> (c & 7)) & 1)) continue;
        for (int32_t i = 0; i < v->n_special; i++) {
            const tok_token *t = &v->tokens[v->special[i]];
            if ((uint8_t)t->text[0] != c || t->len > n - p) continue;
            if (!parse_special && (t->attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN))) continue;
            if (memcmp(t->text, s + p, t->len) != 0) continue;
            if (no == co) {
                co = co ? co * 2 : 64;
                occ *q = realloc(o, co * sizeof *o);
                if (!q) {
                    free(o);
                    return false;
                }
                o = q;
            }
            o[no++] = (occ){(uint32_t)i, (uint32_t)p};
        }
    }
    if (!no) {
        free(o);
        return true;
    }
    uint8_t *map = calloc(n, 1);
    int32_t *tok = malloc(n * sizeof *tok);
    if (!map || !tok) {
        free(o);
        free(map);
        free(tok);
        return false;
    }
    qsort(o, no, sizeof *o, cmp_occ);
    for (size_t k = 0; k < no; k++) {
        int32_t id = v->special[o[k].prio];
        const tok_token *t = &v->tokens[id];
        size_t p = o[k].pos, e = p + t->len;
        bool free_range = true;
        for (size_t q = p; q < e && free_range; q++) free_range = map[q] == MAP_FREE;
        if (!free_range) continue;
        memset(map + p, MAP_TOKEN, t->len);
        map[p] = MAP_START;
        tok[p] = id;
        if (t->attr & TOK_ATTR_LSTRIP)
            for (size_t q = p; q > 0 && map[q - 1] == MAP_FREE && c_isspace(s[q - 1]); q--) map[q - 1] = MAP_STRIPPED;
        if (t->attr & TOK_ATTR_RSTRIP)
            for (size_t q = e; q < n && map[q] == MAP_FREE && c_isspace(s[q]); q++) map[q] = MAP_STRIPPED;
    }
    free(o);
    *map_out = map;
    *tok_out = tok;
    return true;
}

static void text_fragment(session *ss, const uint8_t *s, size_t n, bool prev_special) {
    if (ss->v->kind == TOK_WPM) {
        if (!tok_wpm_fragment(ss->v, s, n, &ss->out)) ss->oom = true;
    } else if (ss->v->kind == TOK_SPM)
        spm_fragment(ss, s, n, ss->v->add_space_prefix && prev_special);
    else if (ss->v->kind == TOK_UGM)
        ugm_fragment(ss, s, n);
    else
        bpe_fragment(ss, s, n);
}

int32_t sov_tokenize(const sov_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                     sov_token *out, int32_t cap) {
    if (!v || (!text && len) || cap < 0 || (!out && cap > 0))
        return -(int32_t)sov_fail(SOV_ERR_ARG, "sov_tokenize: bad arguments");
    if (len > UINT32_MAX - 16)
        return -(int32_t)sov_fail(SOV_ERR_ARG, "sov_tokenize: text of %zu bytes is too long", len);
    session ss = {.v = v};
    if (!cache_init(&ss.cache)) return -(int32_t)sov_fail(SOV_ERR_NOMEM, "sov_tokenize: out of memory");
    const uint8_t *s = (const uint8_t *)text;

    if (add_special && v->add_bos && v->bos >= 0) tok_ids_push(&ss.out, v->bos);

    uint8_t *map;
    int32_t *tok;
    if (!find_specials(v, s, len, parse_special, &map, &tok)) {
        ss.oom = true;
    } else if (!map) {
        if (len) text_fragment(&ss, s, len, true);
    } else {
        bool prev_special = true;
        size_t p = 0;
        while (p < len && !ss.oom) {
            if (map[p] == MAP_START) {
                tok_ids_push(&ss.out, tok[p]);
                prev_special = true;
                p++;
                while (p < len && map[p] == MAP_TOKEN) p++;
            } else if (map[p] == MAP_STRIPPED) {
                p++;
            } else {
                size_t q = p;
                while (q < len && map[q] == MAP_FREE) q++;
                text_fragment(&ss, s + p, q - p, prev_special);
                prev_special = false;
                p = q;
            }
        }
    }
    free(map);
    free(tok);

    if (add_special && v->add_eos && v->eos >= 0) tok_ids_push(&ss.out, v->eos);
    if (add_special && v->add_sep && v->sep >= 0) tok_ids_push(&ss.out, v->sep);

    int32_t result;
    if (ss.oom || ss.out.oom) {
        result = -(int32_t)sov_fail(SOV_ERR_NOMEM, "sov_tokenize: out of memory");
    } else if (ss.out.n > INT32_MAX) {
        result = -(int32_t)sov_fail(SOV_ERR_ARG, "sov_tokenize: more than 2^31 tokens");
    } else {
        result = (int32_t)ss.out.n;
        if (cap > 0 && result > 0) memcpy(out, ss.out.v, (size_t)SOV_MIN(result, cap) * sizeof *out);
    }
    free(ss.out.v);
    cache_free(&ss.cache);
    tok_merge_scratch_free(&ss.ms);
    free(ss.cp.cp);
    free(ss.cp.fl);
    free(ss.cp.off);
    free(ss.norm);
    free(ss.esc);
    free(ss.us.best);
    free(ss.ends.v);
    free(ss.tmp.v);
    return result;
}
