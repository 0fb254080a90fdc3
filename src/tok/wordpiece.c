/* wordpiece.c - BERT WordPiece: text -> token ids for tokenizer.ggml.model "bert".
 *
 * In GGUF the WordPiece vocabulary is written the other way round from BERT's vocab.txt:
 * a token that starts a word carries a "▁" prefix ("▁play") and a continuation piece is
 * stored bare ("ing", BERT's "##ing"). So a word is looked up as "▁" + word, greedily:
 *
 * 1. Basic tokenisation (BERT's BasicTokenizer, as llama.cpp does it). Per code point:
 *      White_Space          ends the current word;
 *      U+0000, U+FFFD (also each malformed byte), Cc/Cf/Co/Cs  dropped;
 *      with strip_accents   first replaced by the first code point of its NFD, and a
 *                           mark (\p{M}) is dropped;
 *      with lowercase       lower-cased (simple mapping);
 *      punctuation (\p{P}), an ASCII symbol (\p{S} below U+007F) or a CJK ideograph
 *                           becomes a word of its own;
 *      anything else        is appended to the current word.
 *    tokenizer.ggml.normalizer.lowercase (default true, as llama.cpp) switches lower-casing;
 *    tokenizer.ggml.normalizer.strip_accents defaults to the lowercase value.
 * 2. WordPiece: in "▁" + word, from the left, the longest byte string that is a token (at
 *    most the longest token's length) is taken, repeatedly; if some position has no
 *    token, the whole word becomes [UNK] (tokenizer.ggml.unknown_token_id).
 * [CLS] before and [SEP] after the text are added by sov_tokenize (add_special). */
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "tok/tok_impl.h"
#include "tok/unicode.h"
#include "tok/wordpiece.h"

uint32_t tok_wpm_lower(uint32_t cp) {
    size_t lo = 0, hi = tok_lower_map_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (tok_lower_map[mid][0] < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < tok_lower_map_n && tok_lower_map[lo][0] == cp ? tok_lower_map[lo][1] : cp;
}

uint32_t tok_wpm_nfd_first(uint32_t cp) {
    if (cp < 0xC0) return cp; /* nothing below U+00C0 decomposes */
    size_t lo = 0, hi = tok_nfd_ranges_n; /* the last range whose first <= cp */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (tok_nfd_ranges[mid][0] <= cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && cp <= tok_nfd_ranges[lo - 1][1] ? tok_nfd_ranges[lo - 1][2] : cp;
}

/* CJK ideographs: the blocks BERT's _is_chinese_char lists (with 0x2B920 as the start of
 * the fifth, as in Hugging Face's Rust tokenizers and llama.cpp) */
static bool is_cjk(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) ||
           (cp >= 0x2B920 && cp <= 0x2CEAF) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

#define PHANTOM "\xe2\x96\x81" /* "▁" */

typedef struct wbuf {
    uint8_t *p; /* "▁" + the word being built */
    size_t n, cap;
} wbuf;

static bool wbuf_put(wbuf *w, uint32_t cp) {
    if (w->n + 4 > w->cap) {
        size_t cap = w->cap * 2;
        uint8_t *p = realloc(w->p, cap);
        if (!p) return false;
        w->p = p;
        w->cap = cap;
    }
    w->n += tok_utf8_put(cp, w->p + w->n);
    return true;
}

/* The tokens of one word ("▁" + text in w), or [UNK]. */
static void word_pieces(const sov_vocab *v, const wbuf *w, tok_ids *out) {
    const size_t before = out->n;
    for (size_t i = 0; i < w->n;) {
        size_t j = SOV_MIN(w->n, i + (size_t)v->max_token_len + 1);
        sov_token id = -1;
        for (; j > i; j--)
            if ((id = tok_find(v, (const char *)w->p + i, j - i)) >= 0) break;
        if (id < 0) {
            out->n = before;
            break;
        }
        tok_ids_push(out, id);
        i = j;
    }
    if (out->n == before) tok_ids_push(out, v->unk);
}

bool tok_wpm_fragment(const sov_vocab *v, const uint8_t *s, size_t n, tok_ids *out) {
    wbuf w = {malloc(64), 3, 64};
    if (!w.p) return false;
    memcpy(w.p, PHANTOM, 3);
    bool ok = true;
    for (size_t pos = 0; pos < n && ok;) {
        int bad = 0;
        uint32_t cp = tok_utf8_next(s, n, &pos, &bad);
        if (v->strip_accents) cp = tok_wpm_nfd_first(cp);
        const uint8_t fl = tok_cpt_flags(cp);
        if (fl & TOK_CF_SPACE) {
            if (w.n > 3) word_pieces(v, &w, out);
            w.n = 3;
            continue;
        }
        if (cp == 0 || cp == TOK_REPLACEMENT_CHAR || (fl & TOK_CF_CONTROL)) continue;
        if (v->strip_accents && (fl & TOK_CF_MARK)) continue;
        const uint32_t put = v->lowercase ? tok_wpm_lower(cp) : cp;
        if ((fl & TOK_CF_PUNCT) || (cp < 0x7F && (fl & TOK_CF_SYMBOL)) || is_cjk(cp)) {
            if (w.n > 3) word_pieces(v, &w, out);
            w.n = 3;
            ok = wbuf_put(&w, put);
            if (ok) word_pieces(v, &w, out);
            w.n = 3;
        } else {
            ok = wbuf_put(&w, put);
        }
    }
    if (ok && w.n > 3) word_pieces(v, &w, out);
    free(w.p);
    return ok && !out->oom;
}
