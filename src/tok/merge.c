/* merge.c - the merge loop shared by both tokenizers: turns one word (byte-level BPE) or
 * one run of text (SentencePiece) into tokens.
 *
 * The word starts as one symbol per character (BPE: per byte, as its byte-alphabet token;
 * SPM: per UTF-8 character). Then, repeatedly, the best adjacent pair is merged into one
 * symbol, until no pair can merge:
 *   BPE: pairs are ranked by tokenizer.ggml.merges (lowest rank first), looked up by the
 *        two symbols' token ids in the merge table;
 *   SPM: a pair can merge when its text is a token; the token's score ranks it (highest
 *        first).
 * Ties go to the leftmost pair. Symbols that end up not being tokens are written as
 * byte tokens (SPM's byte fallback).
 *
 * Short words (the common case) use a flat array: the pair priorities sit beside the
 * symbols, and a merge recomputes only the two pairs next to it. Long words use a
 * doubly-linked list of symbols and a binary heap of candidate pairs with lazy
 * deletion (an entry is stale when either symbol has changed length since it was
 * pushed), which keeps pathological inputs (a megabyte without a space) at
 * O(n log n). */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_impl.h"
#include "tok/unicode.h"

typedef struct sym {
    int32_t id;     /* token of the symbol's text, -1 if none */
    uint32_t start; /* byte offset in the word */
    uint32_t len;   /* bytes; 0 once merged into its left neighbour */
    int32_t prev, next;
} sym;

typedef struct cand {
    double cost;    /* lower merges first: BPE rank, SPM -score */
    uint32_t left, right;
    uint32_t size;  /* len(left) + len(right) when pushed */
    int32_t result;
} cand;

#define FLAT_MAX 64

void tok_merge_scratch_free(tok_merge_scratch *s) {
    free(s->sym);
    free(s->heap);
    free(s->enc);
    memset(s, 0, sizeof *s);
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

/* The merge of symbols a, b (adjacent, a first): false when they cannot merge. */
static inline bool pair_cost(const sov_vocab *v, const uint8_t *s, const sym *a, const sym *b,
                             double *cost, int32_t *result) {
    if (v->kind == TOK_BPE) {
        if (a->id < 0 || b->id < 0) return false;
        const tok_merge_slot *m = tok_merge_find(v, a->id, b->id);
        if (!m) return false;
        *cost = m->rank;
        *result = m->result;
        return true;
    }
    sov_token t = tok_find(v, (const char *)s + a->start, (size_t)a->len + b->len);
    if (t < 0) return false;
    *cost = -(double)v->tokens[t].score;
    *result = t;
    return true;
}

static void emit_sym(const sov_vocab *v, const uint8_t *s, const sym *y, tok_ids *out) {
    if (y->id >= 0) {
        tok_ids_push(out, y->id);
        return;
    }
    if (v->kind == TOK_BPE && !v->bpe_raw) return; /* a character outside the byte alphabet: no token */
    for (uint32_t k = 0; k < y->len; k++) {
        sov_token t = v->byte_tok[s[y->start + k]];
        if (t >= 0) tok_ids_push(out, t);
    }
}

static void merge_flat(const sov_vocab *v, const uint8_t *s, sym *y, size_t n, tok_ids *out) {
    double cost[FLAT_MAX];
    int32_t res[FLAT_MAX];
    bool ok[FLAT_MAX];
    for (size_t i = 0; i + 1 < n; i++) ok[i] = pair_cost(v, s, &y[i], &y[i + 1], &cost[i], &res[i]);
    while (n > 1) {
        size_t best = SIZE_MAX;
        for (size_t i = 0; i + 1 < n; i++)
            if (ok[i] && (best == SIZE_MAX || cost[i] < cost[best])) best = i;
        if (best == SIZE_MAX) break;
        y[best].id = res[best];
        y[best].len += y[best + 1].len;
        /* drop symbol best+1 and pair best+1 (pair best is recomputed below) */
        memmove(&y[best + 1], &y[best + 2], (n - best - 2) * sizeof *y);
        if (best + 3 < n) { /* pairs best+2 .. n-2 move down one */
            memmove(&cost[best + 1], &cost[best + 2], (n - best - 3) * sizeof *cost);
            memmove(&res[best + 1], &res[best + 2], (n - best - 3) * sizeof *res);
            memmove(&ok[best + 1], &ok[best + 2], (n - best - 3) * sizeof *ok);
        }
        n--;
        if (best > 0) ok[best - 1] = pair_cost(v, s, &y[best - 1], &y[best], &cost[best - 1], &res[best - 1]);
        if (best + 1 < n) ok[best] = pair_cost(v, s, &y[best], &y[best + 1], &cost[best], &res[best]);
    }
    for (size_t i = 0; i < n; i++) emit_sym(v, s, &y[i], out);
}

static inline bool cand_less(const cand *a, const cand *b) {
    return a->cost < b->cost || (a->cost == b->cost && a->left < b->left);
}

typedef struct heap {
    cand *c;
    size_t n, cap;
    bool oom;
} heap;

static void heap_push(heap *h, cand x) {
    if (h->n == h->cap) {
        size_t cap = h->cap * 2;
        cand *c = realloc(h->c, cap * sizeof *c);
        if (!c) {
            h->oom = true;
            return;
        }
        h->c = c;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&x, &h->c[p])) break;
        h->c[i] = h->c[p];
        i = p;
    }
    h->c[i] = x;
}

static cand heap_pop(heap *h) {
    cand top = h->c[0], x = h->c[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &x;
        if (l < h->n && cand_less(&h->c[l], best)) {
            m = l;
            best = &h->c[l];
        }
        if (r < h->n && cand_less(&h->c[r], best)) m = r;
        if (m == i) break;
        h->c[i] = h->c[m];
        i = m;
    }
    if (h->n) h->c[i] = x;
    return top;
}

static void try_push(const sov_vocab *v, const uint8_t *s, const sym *y, int32_t l, int32_t r, heap *h) {
    if (l < 0 || r < 0) return;
    cand c;
    if (!pair_cost(v, s, &y[l], &y[r], &c.cost, &c.result)) return;
    c.left = (uint32_t)l;
    c.right = (uint32_t)r;
    c.size = y[l].len + y[r].len;
    heap_push(h, c);
}

static bool merge_heap(const sov_vocab *v, const uint8_t *s, sym *y, size_t n, tok_merge_scratch *sc,
                       tok_ids *out) {
    heap h = {.c = sc->heap, .cap = sc->heap_cap};
    if (!grow((void **)&h.c, &h.cap, n, sizeof(cand))) return false;
    for (size_t i = 0; i < n; i++) {
        y[i].prev = (int32_t)i - 1;
        y[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) try_push(v, s, y, (int32_t)i, (int32_t)i + 1, &h);
    while (h.n && !h.oom) {
        cand c = heap_pop(&h);
        sym *a = &y[c.left], *b = &y[c.right];
        if (!a->len || !b->len || a->len + b->len != c.size) continue; /* stale */
        a->len += b->len;
        a->id = c.result;
        b->len = 0;
        a->next = b->next;
        if (b->next >= 0) y[b->next].prev = (int32_t)c.left;
        try_push(v, s, y, a->prev, (int32_t)c.left, &h);
        try_push(v, s, y, (int32_t)c.left, a->next, &h);
    }
    sc->heap = h.c;
    sc->heap_cap = h.cap;
    if (h.oom) return false;
    for (int32_t i = 0; i >= 0; i = y[i].next) emit_sym(v, s, &y[i], out);
    return true;
}

static bool run_merges(const sov_vocab *v, const uint8_t *s, size_t n_sym, tok_merge_scratch *sc, tok_ids *out) {
    sym *y = sc->sym;
    if (n_sym <= FLAT_MAX) {
        merge_flat(v, s, y, n_sym, out);
        return true;
    }
    return merge_heap(v, s, y, n_sym, sc, out);
}

bool tok_bpe_word(const sov_vocab *v, const uint8_t *s, size_t n, tok_merge_scratch *sc, tok_ids *out) {
    if (n == 1 && v->byte_tok[s[0]] >= 0) {
        tok_ids_push(out, v->byte_tok[s[0]]);
        return true;
    }
    if (v->ignore_merges) {
        /* the word in the byte alphabet: each byte becomes a 1- or 2-byte character */
        if (!grow((void **)&sc->enc, &sc->enc_cap, 2 * n, 1)) return false;
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            const uint8_t *e = v->byte_enc[s[i]]; /* length, then the bytes */
            sc->enc[m] = e[1];
            sc->enc[m + 1] = e[2];
            m += e[0];
        }
        sov_token t = tok_find(v, (const char *)sc->enc, m);
        if (t >= 0) {
            tok_ids_push(out, t);
            return true;
        }
    }
    if (!grow(&sc->sym, &sc->sym_cap, n, sizeof(sym))) return false;
    sym *y = sc->sym;
    for (size_t i = 0; i < n; i++) y[i] = (sym){.id = v->byte_tok[s[i]], .start = (uint32_t)i, .len = 1};
    return run_merges(v, s, n, sc, out);
}

bool tok_spm_run(const sov_vocab *v, const uint8_t *s, size_t n, tok_merge_scratch *sc, tok_ids *out) {
    if (!grow(&sc->sym, &sc->sym_cap, n, sizeof(sym))) return false;
    sym *y = sc->sym;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t len = tok_utf8_len(s[i]);
        if (len > n - i) len = n - i;
        y[k++] = (sym){.id = tok_find(v, (const char *)s + i, len), .start = (uint32_t)i, .len = (uint32_t)len};
        i += len;
    }
    return run_merges(v, s, k, sc, out);
}

bool tok_bpe_raw_word(const sov_vocab *v, const uint8_t *s, size_t n, tok_merge_scratch *sc, tok_ids *out) {
    /* Gemma 4 (llama.cpp's fix): a word of newlines only that is a token stays whole */
    size_t k = 0;
    while (k < n && s[k] == '\n') k++;
    if (k == n) {
        sov_token t = tok_find(v, (const char *)s, n);
        if (t >= 0) {
            tok_ids_push(out, t);
            return true;
        }
    }
    return tok_spm_run(v, s, n, sc, out); /* UTF-8 characters, merged by rank (pair_cost) */
}
