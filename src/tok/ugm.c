/* ugm.c - SentencePiece Unigram ("t5" in GGUF: T5, XLM-RoBERTa, BGE-M3, multilingual-E5).
 *
 * Two stages, as SentencePiece and llama.cpp run them:
 *
 * 1. Normalise. At each position the longest user-defined token is kept as it is; else
 *    the longest input prefix the precompiled charsmap knows is replaced by its
 *    replacement (NFKC-style folding: "ﬁ" -> "fi", full-width -> ASCII, ...); else one
 *    UTF-8 character is copied (a malformed byte becomes U+FFFD). Spaces become "▁";
 *    add_space_prefix puts one "▁" before the text, remove_extra_whitespaces drops
 *    leading, trailing and repeated spaces (each run of non-space text then gets one
 *    "▁" before it).
 *
 *    The charsmap (tokenizer.ggml.precompiled_charsmap) is untrusted bytes: a u32 size,
 *    that many bytes of XOR-compressed compact double array (XCDA, Kanda 2018: each u32
 *    packs BASE in bits 10..30 (shifted by 8 when bit 9 is set), LEAF in bit 8 and LCHECK
 *    in bits 0..7 and 31), then NUL-terminated replacement strings the leaves index. The
 *    header is checked at load; every array index and replacement offset is checked
 *    when used, so a malformed map can stop a match early but never read outside.
 *
 * 2. Viterbi. best[i] is the highest total score of a segmentation of the first i bytes;
 *    for each character boundary i, every piece that starts there extends best[i] (piece
 *    score; user-defined pieces score 0); a character no piece covers costs the unknown
 *    score (lowest normal score - 10). Ties keep the first found, as llama.cpp does;
 *    sums are doubles of the float scores, as there. Walking back from the end gives the
 *    pieces; runs of unknown characters become one <unk>.
 *
 * Pieces that start at a position are found in a sorted index of the piece texts: the
 * candidates sharing the first k bytes with the text form one range, narrowed byte by
 * byte with two binary searches, so the walk stops as soon as no piece continues. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "tok/tok_impl.h"
#include "tok/unicode.h"

#define KEY_CHARSMAP "tokenizer.ggml.precompiled_charsmap"

struct tok_ugm {
    const uint8_t *xcda;   /* [xcda_n * 4] bytes, read with memcpy (no alignment) */
    size_t xcda_n;
    const char *repl;      /* replacement strings */
    size_t repl_n;
    int32_t *piece;        /* [n_piece] ids of normal, user-defined and unused tokens, by text */
    int32_t n_piece;
    int32_t *user;         /* [n_user] user-defined ids, by text */
    int32_t n_user;
    double unk_score;
};

/* ---- the sorted piece index ---- */

typedef struct sort_key {
    const char *text;
    uint32_t len;
    int32_t id;
} sort_key;

static int cmp_key(const void *a, const void *b) {
    const sort_key *x = a, *y = b;
    int c = memcmp(x->text, y->text, SOV_MIN(x->len, y->len));
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : 1;
}

/* Sorts ids[0..n) by text, then id. */
static bool sort_ids(const sov_vocab *v, int32_t *ids, int32_t n) {
    sort_key *k = malloc((size_t)(n ? n : 1) * sizeof *k);
    if (!k) return false;
    for (int32_t i = 0; i < n; i++) k[i] = (sort_key){v->tokens[ids[i]].text, v->tokens[ids[i]].len, ids[i]};
    qsort(k, (size_t)n, sizeof *k, cmp_key);
    for (int32_t i = 0; i < n; i++) ids[i] = k[i].id;
    free(k);
    return true;
}

/* Narrows [*lo, *hi) (entries sharing s[0..k)) to those whose byte k is s[k]; entries of
 * length k come first in the range and are dropped. */
static bool narrow(const sov_vocab *v, const int32_t *idx, size_t *lo, size_t *hi, size_t k, uint8_t b) {
    size_t l = *lo, h = *hi;
    while (l < h && v->tokens[idx[l]].len <= k) l++;
    size_t a = l, z = h; /* first with byte >= b */
    while (a < z) {
        size_t m = (a + z) / 2;
        if ((uint8_t)v->tokens[idx[m]].text[k] < b) a = m + 1;
        else z = m;
    }
    size_t e = a, y = h; /* first with byte > b */
    while (e < y) {
        size_t m = (e + y) / 2;
        if ((uint8_t)v->tokens[idx[m]].text[k] <= b) e = m + 1;
        else y = m;
    }
    *lo = a;
    *hi = e;
    return a < e;
}

/* The id whose text is exactly the k bytes shared by the range (the highest such id, as
 * a trie filled in id order keeps), or -1. */
static int32_t exact(const sov_vocab *v, const int32_t *idx, size_t lo, size_t hi, size_t k) {
    int32_t id = -1;
    for (size_t i = lo; i < hi && v->tokens[idx[i]].len == k; i++) id = idx[i];
    return id;
}

/* Length of the longest user-defined token at s[0..n), or 0. */
static size_t longest_user(const sov_vocab *v, const struct tok_ugm *u, const uint8_t *s, size_t n) {
    size_t lo = 0, hi = (size_t)u->n_user, best = 0;
    for (size_t k = 0; k < n && lo < hi; k++) {
        if (!narrow(v, u->user, &lo, &hi, k, s[k])) break;
        if (exact(v, u->user, lo, hi, k + 1) >= 0) best = k + 1;
    }
    return best;
}

/* ---- loading ---- */

static uint32_t xcda_node(const struct tok_ugm *u, size_t i) {
    uint32_t x;
    memcpy(&x, u->xcda + 4 * i, 4);
    return x;
}

static sov_status load_charsmap(struct tok_ugm *u, const gguf_file *f) {
    const gguf_kv *kv = gguf_find(f, KEY_CHARSMAP);
    if (!kv) return SOV_OK; /* no normaliser: text is only escaped */
    if (kv->type != GGUF_ARRAY || (kv->arr_type != GGUF_U8 && kv->arr_type != GGUF_I8))
        return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s must be an array of u8", KEY_CHARSMAP);
    const uint8_t *p = kv->arr_data;
    const uint64_t n = kv->arr_n;
    if (n == 0) return SOV_OK;
    if (n < 4) return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s is %llu bytes, too short for its header", KEY_CHARSMAP,
                               (unsigned long long)n);
    uint32_t blob;
    memcpy(&blob, p, 4);
    if (blob > n - 4 || blob % 4 != 0 || blob == 0)
        return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s: trie size %u does not fit its %llu bytes", KEY_CHARSMAP, blob,
                        (unsigned long long)n);
    u->xcda = p + 4;
    u->xcda_n = blob / 4;
    u->repl = (const char *)p + 4 + blob;
    u->repl_n = (size_t)(n - 4 - blob);
    if (u->repl_n && u->repl[u->repl_n - 1] != '\0')
        return sov_fail(SOV_ERR_FORMAT, "tokenizer: %s: replacement strings are not NUL-terminated", KEY_CHARSMAP);
    return SOV_OK;
}

sov_status tok_ugm_init(sov_vocab *v, const gguf_file *f) {
    struct tok_ugm *u = calloc(1, sizeof *u);
    if (!u) return sov_fail(SOV_ERR_NOMEM, "tokenizer: out of memory");
    v->ugm = u;
    sov_status st = load_charsmap(u, f);
    if (st) return st;
    u->piece = malloc((size_t)v->n_tokens * sizeof *u->piece);
    u->user = malloc((size_t)v->n_tokens * sizeof *u->user);
    if (!u->piece || !u->user) return sov_fail(SOV_ERR_NOMEM, "tokenizer: out of memory");
    float min_score = FLT_MAX;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        const tok_token *t = &v->tokens[i];
        if (t->attr & TOK_ATTR_NORMAL) min_score = SOV_MIN(min_score, t->score);
        if (!t->len) continue;
        if (t->attr & (TOK_ATTR_NORMAL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNUSED)) u->piece[u->n_piece++] = i;
        if (t->attr & TOK_ATTR_USER_DEFINED) u->user[u->n_user++] = i;
    }
    u->unk_score = (double)(min_score - 10.0f);
    if (!sort_ids(v, u->piece, u->n_piece) || !sort_ids(v, u->user, u->n_user))
        return sov_fail(SOV_ERR_NOMEM, "tokenizer: out of memory");
    return SOV_OK;
}

void tok_ugm_free(sov_vocab *v) {
    if (!v->ugm) return;
    free(v->ugm->piece);
    free(v->ugm->user);
    free(v->ugm);
    v->ugm = NULL;
}

/* ---- normalising ---- */

/* The longest charsmap match at s[0..n): its length (0 for none) and replacement. */
static size_t charsmap_match(const struct tok_ugm *u, const uint8_t *s, size_t n, const char **rep, size_t *rep_n) {
    if (!u->xcda_n) return 0;
    size_t best = 0, best_off = 0;
    uint32_t root = xcda_node(u, 0);
    size_t node = (size_t)((root >> 10) << ((root & (1u << 9)) >> 6));
    for (size_t k = 0; k < n; k++) {
        const uint8_t c = s[k];
        if (c == 0) break;
        node ^= c;
        if (node >= u->xcda_n) break;
        uint32_t x = xcda_node(u, node);
        if ((x & ((1u << 31) | 0xFF)) != c) break; /* LCHECK */
        const bool leaf = (x >> 8) & 1;
        node ^= (size_t)((x >> 10) << ((x & (1u << 9)) >> 6));
        if (leaf) {
            if (node >= u->xcda_n) break;
            best = k + 1;
            best_off = xcda_node(u, node) & ((1u << 31) - 1); /* VALUE */
        }
    }
    if (!best || best_off >= u->repl_n) return 0;
    *rep = u->repl + best_off;
    *rep_n = strlen(*rep); /* bounded: the block ends with NUL (checked at load) */
    return best;
}

static bool grow(uint8_t **buf, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    uint8_t *b = realloc(*buf, c);
    if (!b) return false;
    *buf = b;
    *cap = c;
    return true;
}

bool tok_ugm_normalize(const sov_vocab *v, const uint8_t *s, size_t n, uint8_t **buf, size_t *cap, size_t *out_n) {
    const struct tok_ugm *u = v->ugm;
    const bool merge = v->remove_extra_ws;
    bool prepended = false, in_word = false;
    size_t m = 0;
    for (size_t pos = 0; pos < n;) {
        const char *r;
        size_t rn, used;
        uint8_t fffd[3] = {0xEF, 0xBF, 0xBD};
        if ((used = longest_user(v, u, s + pos, n - pos)) > 0) {
            r = (const char *)s + pos;
            rn = used;
        } else if ((used = charsmap_match(u, s + pos, n - pos, &r, &rn)) > 0) {
            /* r, rn set */
        } else {
            size_t q = pos;
            int bad = 0;
            tok_utf8_next(s, n, &q, &bad);
            if (bad) {
                r = (const char *)fffd;
                rn = 3;
                used = 1;
            } else {
                r = (const char *)s + pos;
                rn = used = q - pos;
            }
        }
        /* worst case every byte becomes "▁" + byte */
        if (!grow(buf, cap, m + 4 * rn + 4)) return false;
        uint8_t *o = *buf;
        for (size_t i = 0; i < rn; i++) {
            const uint8_t c = (uint8_t)r[i];
            if (c != ' ') {
                if (!in_word) {
                    in_word = true;
                    if ((v->add_space_prefix && !prepended) || merge) {
                        memcpy(o + m, "\xe2\x96\x81", 3);
                        m += 3;
                        prepended = true;
                    }
                }
                o[m++] = c;
            } else {
                in_word = false;
                if (!merge) {
                    memcpy(o + m, "\xe2\x96\x81", 3);
                    m += 3;
                }
            }
        }
        pos += used;
    }
    *out_n = m;
    return true;
}

/* ---- Viterbi ---- */

typedef struct best {
    double score;
    uint32_t from; /* start of the last piece */
    int32_t id;    /* the last piece (v->unk for an unknown character) */
} best;

bool tok_ugm_run(const sov_vocab *v, const uint8_t *s, size_t n, tok_ugm_scratch *sc, tok_ids *out) {
    if (n == 0) return true;
    const struct tok_ugm *u = v->ugm;
    if ((n + 1) > sc->best_cap) {
        size_t c = sc->best_cap ? sc->best_cap : 256;
        while (c < n + 1) c *= 2;
        best *b = realloc(sc->best, c * sizeof *b);
        if (!b) return false;
        sc->best = b;
        sc->best_cap = c;
    }
    best *bt = sc->best;
    for (size_t i = 0; i <= n; i++) bt[i] = (best){-DBL_MAX, 0, v->unk};
    bt[0].score = 0;
    for (size_t i = 0; i < n;) {
        const size_t clen = SOV_MIN(tok_utf8_len(s[i]), n - i);
        const double base = bt[i].score;
        bool whole_char = false;
        size_t lo = 0, hi = (size_t)u->n_piece;
        for (size_t k = 0; i + k < n; k++) {
            if (!narrow(v, u->piece, &lo, &hi, k, s[i + k])) break;
            const int32_t id = exact(v, u->piece, lo, hi, k + 1);
            if (id < 0) continue;
            if (k + 1 == clen) whole_char = true;
            const tok_token *t = &v->tokens[id];
            const double sc2 = base + ((t->attr & TOK_ATTR_USER_DEFINED) ? 0.0 : (double)t->score);
            if (sc2 > bt[i + k + 1].score) bt[i + k + 1] = (best){sc2, (uint32_t)i, id};
        }
        if (!whole_char) {
            const double sc2 = base + u->unk_score;
            if (sc2 > bt[i + clen].score) bt[i + clen] = (best){sc2, (uint32_t)i, v->unk};
        }
        i += clen;
    }
    /* back from the end; written reversed, then flipped */
    const size_t at = out->n;
    bool prev_unk = false;
    for (size_t i = n;;) {
        const best *b = &bt[i];
        const bool is_unk = b->id == v->unk;
        if (!(prev_unk && is_unk) && b->id >= 0) tok_ids_push(out, b->id);
        if (b->from == 0) break;
        prev_unk = is_unk;
        i = b->from;
    }
    if (out->oom) return false;
    for (size_t a = at, z = out->n - 1; a < z; a++, z--) {
        sov_token t = out->v[a];
        out->v[a] = out->v[z];
        out->v[z] = t;
    }
    return true;
}
