/* matcher.c - following a grammar byte by byte, and the token masks.
 *
 * The matcher is a pushdown automaton with a set of stacks (as llama.cpp's GBNF matcher
 * and Earley-style recognisers without completion): a stack is a position in the
 * element array (always a byte class, the symbol to match next) over a chain of return
 * positions. Stacks are immutable linked lists in an arena (gnode: position + parent),
 * so advancing a stack by a byte copies nothing below its top. After each byte the
 * new tops are closed: a reference expands into its rule's alternatives (pushing the
 * return position, except in tail position), an END pops. The set is deduplicated
 * (equal position and equal chain) and capped at GRAM_MAX_STACKS.
 *
 * The mask: a depth-first walk over the vocabulary trie (gram_vocab, in pre-order with
 * each node's subtree end), with the matcher state of every depth on a stack. A byte
 * no stack accepts skips the subtree, so the bytes shared by many tokens are matched
 * once. Arena space used below a depth is released when the walk comes back up.
 * Masks are cached per state (the key is the state's stacks written out as positions).
 * The committed state's arena is compacted after each token so it never grows. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "grammar/gram_impl.h"

/* ---- the vocabulary trie ---- */

struct gram_vocab {
    int32_t n_vocab;
    int32_t n_nodes;      /* pre-order; node 0 is the root (the empty string) */
    uint8_t *byte;        /* [n_nodes] the byte on the edge into the node */
    uint16_t *depth;      /* [n_nodes] bytes from the root */
    int32_t *end;         /* [n_nodes] one past the node's subtree */
    int32_t *tok_off;     /* [n_nodes] its tokens: toks[tok_off .. tok_off + tok_cnt) */
    int32_t *tok_cnt;
    sov_token *toks;      /* [n_toks] tokens with a piece, sorted by piece */
    uint8_t *pieces;      /* all pieces, back to back */
    int32_t *piece_off;   /* [n_vocab] */
    int32_t *piece_len;   /* [n_vocab] 0: no piece (control token, too long) */
    sov_token *eog;       /* [n_eog] end-of-generation tokens */
    int32_t n_eog;
    int32_t max_depth;
    /* the string fast path: a subtree whose bytes below its root are all "plain" (printable
     * ASCII other than '"' and '\\') holds tokens toks[tok_before[i + 1] .. tok_before[end[i]]) */
    uint8_t *plain_below; /* [n_nodes] every byte below node i is plain */
    int32_t *tok_before;  /* [n_nodes + 1] tokens on nodes before i in pre-order */
};

static inline bool plain_byte(uint8_t b) { return b >= 0x20 && b < 0x7f && b != '"' && b != '\\'; }

static int cmp_piece(const void *a, const void *b, void *ctx) {
    const gram_vocab *gv = ctx;
    const sov_token x = *(const sov_token *)a, y = *(const sov_token *)b;
    const int32_t lx = gv->piece_len[x], ly = gv->piece_len[y];
    const int c = memcmp(gv->pieces + gv->piece_off[x], gv->pieces + gv->piece_off[y], (size_t)SOV_MIN(lx, ly));
    if (c) return c;
    if (lx != ly) return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

void gram_vocab_free(gram_vocab *gv) {
    if (!gv) return;
    free(gv->byte);
    free(gv->depth);
    free(gv->end);
    free(gv->tok_off);
    free(gv->tok_cnt);
    free(gv->plain_below);
    free(gv->tok_before);
    free(gv->toks);
    free(gv->pieces);
    free(gv->piece_off);
    free(gv->piece_len);
    free(gv->eog);
    free(gv);
}

sov_status gram_vocab_new(const sov_vocab *v, gram_vocab **out) {
    *out = NULL;
    const int32_t V = sov_vocab_size(v);
    gram_vocab *gv = calloc(1, sizeof *gv);
    if (!gv) return sov_fail(SOV_ERR_NOMEM, "grammar: out of memory");
    gv->n_vocab = V;
    gv->piece_off = malloc((size_t)V * sizeof *gv->piece_off);
    gv->piece_len = calloc((size_t)V, sizeof *gv->piece_len);
    gv->toks = malloc((size_t)V * sizeof *gv->toks);
    gv->eog = malloc((size_t)V * sizeof *gv->eog);
    size_t cap = 1 << 16, len = 0;
    gv->pieces = malloc(cap);
    if (!gv->piece_off || !gv->piece_len || !gv->toks || !gv->eog || !gv->pieces) goto oom;
    char buf[GRAM_MAX_TOKEN_BYTES];
    int32_t n_toks = 0;
    for (sov_token t = 0; t < V; t++) {
        if (sov_vocab_is_eog(v, t)) gv->eog[gv->n_eog++] = t;
        const int32_t n = sov_token_to_piece(v, t, false, buf, (int32_t)sizeof buf);
        gv->piece_off[t] = (int32_t)len;
        if (n <= 0 || n > GRAM_MAX_TOKEN_BYTES) continue;
        if (len + (size_t)n > cap) {
            cap *= 2;
            uint8_t *p = realloc(gv->pieces, cap);
            if (!p) goto oom;
            gv->pieces = p;
        }
        memcpy(gv->pieces + len, buf, (size_t)n);
        gv->piece_len[t] = n;
        len += (size_t)n;
        gv->toks[n_toks++] = t;
        if (n > gv->max_depth) gv->max_depth = n;
    }
    qsort_r(gv->toks, (size_t)n_toks, sizeof *gv->toks, cmp_piece, gv);
    const size_t max_nodes = len + 1;
    gv->byte = malloc(max_nodes);
    gv->depth = malloc(max_nodes * sizeof *gv->depth);
    gv->end = malloc(max_nodes * sizeof *gv->end);
    gv->tok_off = malloc(max_nodes * sizeof *gv->tok_off);
    gv->tok_cnt = calloc(max_nodes, sizeof *gv->tok_cnt);
    int32_t path[GRAM_MAX_TOKEN_BYTES + 1];
    if (!gv->byte || !gv->depth || !gv->end || !gv->tok_off || !gv->tok_cnt) goto oom;
    int32_t nn = 1, plen = 1; /* path[0..plen) the nodes from the root to the last piece */
    gv->byte[0] = 0;
    gv->depth[0] = 0;
    gv->tok_off[0] = 0;
    path[0] = 0;
    const uint8_t *prev = NULL;
    int32_t prev_len = 0;
    for (int32_t i = 0; i < n_toks; i++) {
        const sov_token t = gv->toks[i];
        const uint8_t *p = gv->pieces + gv->piece_off[t];
        const int32_t l = gv->piece_len[t];
        int32_t common = 0;
        while (common < l && common < prev_len && prev[common] == p[common])
            common++;
        while (plen - 1 > common) /* leave the subtrees that do not share this prefix */
            gv->end[path[--plen]] = nn;
        for (int32_t d = common + 1; d <= l; d++) {
            gv->byte[nn] = p[d - 1];
            gv->depth[nn] = (uint16_t)d;
            gv->tok_off[nn] = 0;
            path[plen++] = nn++;
        }
        const int32_t node = path[l];
        if (gv->tok_cnt[node]++ == 0) gv->tok_off[node] = i;
        prev = p;
        prev_len = l;
    }
    while (plen > 0)
        gv->end[path[--plen]] = nn;
    gv->n_nodes = nn;
    /* the fast path's tables, from a prefix count of non-plain bytes in pre-order */
    gv->plain_below = malloc((size_t)nn);
    gv->tok_before = malloc(((size_t)nn + 1) * sizeof *gv->tok_before);
    int32_t *nonplain = malloc(((size_t)nn + 1) * sizeof *nonplain);
    if (!gv->plain_below || !gv->tok_before || !nonplain) {
        free(nonplain);
        goto oom;
    }
    nonplain[0] = gv->tok_before[0] = 0;
    for (int32_t i = 0; i < nn; i++) {
        nonplain[i + 1] = nonplain[i] + (i > 0 && !plain_byte(gv->byte[i]));
        gv->tok_before[i + 1] = gv->tok_before[i] + gv->tok_cnt[i];
    }
    for (int32_t i = 0; i < nn; i++)
        gv->plain_below[i] = nonplain[gv->end[i]] - nonplain[i + 1] == 0;
    free(nonplain);
    *out = gv;
    return SOV_OK;
oom:
    gram_vocab_free(gv);
    return sov_fail(SOV_ERR_NOMEM, "grammar: out of memory");
}

int32_t gram_vocab_size(const gram_vocab *gv) { return gv->n_vocab; }

const uint8_t *gram_vocab_piece(const gram_vocab *gv, sov_token t, int32_t *len) {
    if (t < 0 || t >= gv->n_vocab || gv->piece_len[t] == 0) {
        *len = 0;
        return NULL;
    }
    *len = gv->piece_len[t];
    return gv->pieces + gv->piece_off[t];
}

/* ---- matcher state ---- */

typedef struct gnode {
    uint32_t pos;  /* return position (an element index) */
    int32_t up;    /* the node below, -1: the end of the document */
    int32_t depth; /* nodes in the chain, this one included */
    uint32_t cost; /* fewest bytes that finish the document from pos over the chain */
} gnode;

typedef struct gtop {
    uint32_t pos; /* a CLASS element: the next byte must match it */
    int32_t up;   /* where to go when the alternative ends */
} gtop;

typedef struct gstate {
    uint32_t off, cnt; /* its stacks: tops[off .. off + cnt) */
    bool accept;       /* the document may end here */
} gstate;

typedef struct centry {
    uint64_t hash;    /* 0: empty slot */
    uint32_t *key;    /* [klen] */
    uint32_t klen;
    uint32_t *mask;   /* [words] */
    uint32_t max_close; /* the most closing bytes any allowed token leaves */
} centry;

/* The walk's memo tables (open addressing; a slot is live when its gen is the walk's). */
typedef struct islot { /* an interned node */
    uint32_t gen, pos;
    int32_t up, node;
} islot;

typedef struct mslot { /* the closure of continuing at pos over up */
    uint32_t gen, pos;
    int32_t up;
    uint32_t off, cnt; /* its stacks: mtops[off .. off + cnt) */
    bool accept;
    uint32_t close;    /* min_close of that set */
    int32_t id;        /* its index in sets[] */
} mslot;

/* A state of the walk: its stacks in mtops (a memoised closure, shared) or, when bytes
 * matched several stacks, merged in the tops arena. */
typedef struct wstate {
    uint32_t off, cnt;
    bool accept, in_m;
    uint32_t close; /* fewest bytes to finish from here */
    int32_t id;     /* the memoised set it is (index in sets[]), -1: none */
    uint8_t loop;   /* memoised sets: 0 not known, 1 every plain byte leads back to this
                       set (inside a string), 2 not */
} wstate;

struct gram_matcher {
    gram *g;
    const gram_vocab *gv;
    gnode *nodes;
    uint32_t n_nodes, cap_nodes;
    gtop *tops;
    uint32_t n_tops, cap_tops;
    gtop *work; /* closure work list */
    uint32_t cap_work;
    gstate cur;
    bool oom;
    /* the trie walk: per depth, the state and the arena marks after it */
    wstate *wst;
    uint32_t *wnodes, *wtops;
    /* masks */
    int32_t words;
    uint32_t *out;   /* [words] the answer of gram_matcher_mask */
    uint32_t *key;   /* [cap_key] scratch: the current state's key */
    uint32_t cap_key;
    /* during a walk: nodes are interned by (pos, up), so equal stacks are equal
     * indices, and each (pos, up)'s closure is computed once per walk */
    bool walking;
    uint32_t gen;
    islot *intern;
    uint32_t cap_intern, n_intern;
    mslot *memo;
    uint32_t cap_memo, n_memo;
    gtop *mtops;
    uint32_t n_mtops, cap_mtops;
    wstate *sets;   /* [n_sets] the memoised sets of this walk */
    uint32_t n_sets, cap_sets;
    int32_t *dtab;  /* [n_sets * 256] transitions between them: a set id, -1 not known
                       yet (or several stacks matched), -2 dead */
    size_t cap_dtab;
    centry *cache;   /* [cap_cache] open addressing */
    uint32_t cap_cache, n_cache;
    gram_stats st;
};

static inline uint32_t hash2(uint32_t pos, int32_t up) {
    uint32_t h = pos * 0x9E3779B1u ^ ((uint32_t)up + 0x7F4A7C15u) * 0x85EBCA77u;
    return h ^ (h >> 15);
}

/* Doubles an open-addressing table of live slots (gen == m->gen), rehashing them. */
static bool grow_table(gram_matcher *m, void **tab, uint32_t *cap, size_t slot_size) {
    const uint32_t ncap = *cap ? *cap * 2 : 1024;
    uint8_t *nt = calloc(ncap, slot_size);
    if (!nt) return false;
    uint8_t *old = *tab;
    for (uint32_t i = 0; i < *cap; i++) {
        const uint8_t *e = old + (size_t)i * slot_size;
        uint32_t gen, pos;
        int32_t up;
        memcpy(&gen, e, 4);
        memcpy(&pos, e + 4, 4);
        memcpy(&up, e + 8, 4);
        if (gen != m->gen) continue;
        uint32_t j = hash2(pos, up) & (ncap - 1);
        while (((const islot *)(nt + (size_t)j * slot_size))->gen == m->gen)
            j = (j + 1) & (ncap - 1);
        memcpy(nt + (size_t)j * slot_size, e, slot_size);
    }
    free(old);
    *tab = nt;
    *cap = ncap;
    return true;
}

static int32_t new_node_raw(gram_matcher *m, uint32_t pos, int32_t up, int32_t depth);

static int32_t new_node(gram_matcher *m, uint32_t pos, int32_t up, int32_t depth) {
    if (!m->walking) return new_node_raw(m, pos, up, depth);
    if (2 * (m->n_intern + 1) > m->cap_intern &&
        !grow_table(m, (void **)&m->intern, &m->cap_intern, sizeof *m->intern)) {
        m->oom = true;
        return -1;
    }
    uint32_t j = hash2(pos, up) & (m->cap_intern - 1);
    for (; m->intern[j].gen == m->gen; j = (j + 1) & (m->cap_intern - 1))
        if (m->intern[j].pos == pos && m->intern[j].up == up) return m->intern[j].node;
    const int32_t n = new_node_raw(m, pos, up, depth);
    if (n < 0) return -1;
    m->intern[j] = (islot){m->gen, pos, up, n};
    m->n_intern++;
    return n;
}

static int32_t new_node_raw(gram_matcher *m, uint32_t pos, int32_t up, int32_t depth) {
    if (m->n_nodes == m->cap_nodes) {
        const uint32_t cap = m->cap_nodes ? m->cap_nodes * 2 : 256;
        gnode *p = cap > (1u << 28) ? NULL : realloc(m->nodes, (size_t)cap * sizeof *p);
        if (!p) {
            m->oom = true;
            return -1;
        }
        m->nodes = p;
        m->cap_nodes = cap;
    }
    const uint32_t below = up < 0 ? 0 : m->nodes[up].cost, t = m->g->tail[pos];
    m->nodes[m->n_nodes] = (gnode){pos, up, depth, below + t >= GRAM_INF ? GRAM_INF : below + t};
    return (int32_t)m->n_nodes++;
}

static bool chain_eq(const gnode *nodes, int32_t a, int32_t b) {
    while (a != b) {
        if (a < 0 || b < 0 || nodes[a].pos != nodes[b].pos || nodes[a].depth != nodes[b].depth) return false;
        a = nodes[a].up;
        b = nodes[b].up;
    }
    return true;
}

static void add_top(gram_matcher *m, gstate *s, uint32_t pos, int32_t up) {
    for (uint32_t i = s->off; i < m->n_tops; i++)
        if (m->tops[i].pos == pos && chain_eq(m->nodes, m->tops[i].up, up)) return;
    if (m->n_tops - s->off >= GRAM_MAX_STACKS) return; /* an ambiguous grammar's cap: dropping a parse is sound */
    if (m->n_tops == m->cap_tops) {
        const uint32_t cap = m->cap_tops ? m->cap_tops * 2 : 256;
        gtop *p = realloc(m->tops, (size_t)cap * sizeof *p);
        if (!p) {
            m->oom = true;
            return;
        }
        m->tops = p;
        m->cap_tops = cap;
    }
    m->tops[m->n_tops++] = (gtop){pos, up};
}

static bool push_work(gram_matcher *m, uint32_t *nw, uint32_t pos, int32_t up) {
    if (*nw == m->cap_work) {
        const uint32_t cap = m->cap_work ? m->cap_work * 2 : 64;
        gtop *p = realloc(m->work, (size_t)cap * sizeof *p);
        if (!p) {
            m->oom = true;
            return false;
        }
        m->work = p;
        m->cap_work = cap;
    }
    m->work[(*nw)++] = (gtop){pos, up};
    return true;
}

/* Adds to s (the set at the end of tops) every stack that continuing at pos over up
 * leads to, with references expanded and ENDs popped. */
static void closure(gram_matcher *m, uint32_t pos0, int32_t up0, gstate *s) {
    const gram *g = m->g;
    uint32_t nw = 0;
    int32_t budget = 1 << 16; /* expansions; the grammar is not left-recursive, so this
                                 bounds only pathological (exponentially ambiguous) ones */
    if (!push_work(m, &nw, pos0, up0)) return;
    while (nw > 0 && !m->oom) {
        uint32_t pos = m->work[nw - 1].pos;
        int32_t up = m->work[nw - 1].up;
        nw--;
        for (;;) {
            if (--budget < 0) return;
            const gram_elem e = g->elems[pos];
            if (e.kind == GRAM_E_CLASS) {
                add_top(m, s, pos, up);
                break;
            }
            if (e.kind == GRAM_E_END) {
                if (up < 0) {
                    s->accept = true;
                    break;
                }
                pos = m->nodes[up].pos;
                up = m->nodes[up].up;
                continue;
            }
            int32_t c = up; /* a reference: where its alternatives return to */
            if (g->elems[pos + 1].kind != GRAM_E_END) {
                const int32_t depth = (up < 0 ? 0 : m->nodes[up].depth) + 1;
                if (depth > GRAM_MAX_DEPTH) break; /* the recursion bound: this branch is not taken */
                c = new_node(m, pos + 1, up, depth);
                if (c < 0) return;
            }
            const int32_t r = (int32_t)e.arg;
            for (int32_t a = g->rule_first[r + 1] - 1; a >= g->rule_first[r]; a--)
                if (!push_work(m, &nw, (uint32_t)g->alt_start[a], c)) return;
            break;
        }
    }
}

static uint32_t min_close(const gram_matcher *m, const gstate *s);

static bool push_top(gram_matcher *m, gtop t) {
    if (m->n_tops == m->cap_tops) {
        const uint32_t cap = m->cap_tops ? m->cap_tops * 2 : 256;
        gtop *p = realloc(m->tops, (size_t)cap * sizeof *p);
        if (!p) {
            m->oom = true;
            return false;
        }
        m->tops = p;
        m->cap_tops = cap;
    }
    m->tops[m->n_tops++] = t;
    return true;
}

/* The closure of (pos, up), memoised for the walk; NULL when out of memory. */
static const mslot *memo_closure(gram_matcher *m, uint32_t pos, int32_t up) {
    if (2 * (m->n_memo + 1) > m->cap_memo && !grow_table(m, (void **)&m->memo, &m->cap_memo, sizeof *m->memo)) {
        m->oom = true;
        return NULL;
    }
    uint32_t j = hash2(pos, up) & (m->cap_memo - 1);
    for (; m->memo[j].gen == m->gen; j = (j + 1) & (m->cap_memo - 1))
        if (m->memo[j].pos == pos && m->memo[j].up == up) return &m->memo[j];
    const uint32_t start = m->n_tops;
    gstate tmp = {start, 0, false};
    closure(m, pos, up, &tmp); /* may intern nodes, never grows the memo table */
    const uint32_t cnt = m->n_tops - start;
    if (m->n_mtops + cnt > m->cap_mtops) {
        uint32_t cap = m->cap_mtops ? m->cap_mtops : 1024;
        while (cap < m->n_mtops + cnt)
            cap *= 2;
        gtop *p = realloc(m->mtops, (size_t)cap * sizeof *p);
        if (!p) m->oom = true;
        else m->mtops = p, m->cap_mtops = cap;
    }
    if (m->oom) {
        m->n_tops = start;
        return NULL;
    }
    memcpy(m->mtops + m->n_mtops, m->tops + start, (size_t)cnt * sizeof *m->mtops);
    tmp.cnt = cnt;
    if (m->n_sets == m->cap_sets) {
        const uint32_t cap = m->cap_sets ? m->cap_sets * 2 : 256;
        wstate *p = realloc(m->sets, (size_t)cap * sizeof *p);
        int32_t *d = p ? realloc(m->dtab, (size_t)cap * 256 * sizeof *d) : NULL;
        if (p) m->sets = p;
        if (d) m->dtab = d;
        if (!p || !d) {
            m->oom = true;
            m->n_tops = start;
            return NULL;
        }
        m->cap_sets = cap;
    }
    const int32_t id = (int32_t)m->n_sets++;
    for (int b = 0; b < 256; b++)
        m->dtab[(size_t)id * 256 + (size_t)b] = -1;
    const uint32_t close = min_close(m, &tmp);
    m->sets[id] = (wstate){m->n_mtops, cnt, tmp.accept, true, tmp.accept ? 0 : close, id, 0};
    m->memo[j] = (mslot){m->gen, pos, up, m->n_mtops, cnt, tmp.accept, close, id};
    m->n_mtops += cnt;
    m->n_memo++;
    m->n_tops = start;
    return &m->memo[j];
}

/* advance() for the walk: from memoised closures and transitions. A byte that matches
 * one stack leads to that stack's memoised closure (no copy); several are merged into
 * the tops arena, deduplicated by index (interned nodes make equal stacks equal
 * indices; equal but separately built stacks of the committed state may stay
 * duplicated, which costs time, not correctness). */
static wstate walk_advance(gram_matcher *m, const wstate *from, uint8_t c) {
    wstate to = {0, 0, false, true, GRAM_INF, -1, 0};
    int32_t *known = from->id >= 0 ? &m->dtab[(size_t)from->id * 256 + c] : NULL;
    if (known && *known >= 0) return m->sets[*known];
    if (known && *known == -2) return to; /* dead */
    const gram *g = m->g;
    int matched = 0;
    for (uint32_t i = 0; i < from->cnt && !m->oom; i++) {
        const gtop t = (from->in_m ? m->mtops : m->tops)[from->off + i];
        if (!gram_class_has(&g->classes[g->elems[t.pos].arg], c)) continue;
        const mslot *ms = memo_closure(m, t.pos + 1, t.up);
        if (!ms) break;
        if (matched == 0) {
            to = (wstate){ms->off, ms->cnt, ms->accept, true, ms->close, ms->id, 0};
        } else {
            if (matched == 1) { /* a second match: merge from here on in the tops arena */
                const uint32_t off = m->n_tops;
                for (uint32_t k = 0; k < to.cnt; k++)
                    if (!push_top(m, m->mtops[to.off + k])) break;
                to.off = off;
                to.in_m = false;
                to.id = -1;
            }
            to.accept |= ms->accept;
            if (ms->close < to.close) to.close = ms->close;
            const uint32_t off = ms->off, cnt = ms->cnt;
            for (uint32_t k = 0; k < cnt; k++) {
                const gtop x = m->mtops[off + k];
                bool dup = false;
                for (uint32_t q = to.off; q < m->n_tops && !dup; q++)
                    dup = m->tops[q].pos == x.pos && m->tops[q].up == x.up;
                if (!dup && m->n_tops - to.off < GRAM_MAX_STACKS && !push_top(m, x)) break;
            }
            to.cnt = m->n_tops - to.off;
        }
        matched++;
    }
    if (to.accept) to.close = 0;
    if (from->id >= 0 && !m->oom && matched <= 1) /* remember single-set results and dead ends */
        m->dtab[(size_t)from->id * 256 + c] = matched ? to.id : -2;
    return to;
}

/* The state after byte c from `from` (a new set at the end of tops). */
static gstate advance(gram_matcher *m, const gstate *from, uint8_t c) {
    gstate to = {m->n_tops, 0, false};
    const gram *g = m->g;
    for (uint32_t i = 0; i < from->cnt; i++) {
        const gtop t = m->tops[from->off + i];
        if (gram_class_has(&g->classes[g->elems[t.pos].arg], c)) closure(m, t.pos + 1, t.up, &to);
    }
    to.cnt = m->n_tops - to.off;
    return to;
}

static inline bool alive(const gstate *s) { return s->cnt > 0 || s->accept; }

/* The fewest bytes that complete the document from state s (0 when it may end). */
static uint32_t min_close(const gram_matcher *m, const gstate *s) {
    if (s->accept) return 0;
    uint32_t best = GRAM_INF;
    for (uint32_t i = 0; i < s->cnt; i++) {
        const gtop t = m->tops[s->off + i];
        const uint32_t c = m->g->tail[t.pos] + (t.up < 0 ? 0 : m->nodes[t.up].cost);
        if (c < best) best = c;
    }
    return best;
}

/* Keeps only the nodes the current state uses, at the front of the arenas. */
static bool compact(gram_matcher *m) {
    int32_t *map = malloc((size_t)(m->n_nodes ? m->n_nodes : 1) * sizeof *map);
    if (!map) return false;
    for (uint32_t i = 0; i < m->n_nodes; i++)
        map[i] = -1;
    for (uint32_t i = 0; i < m->cur.cnt; i++)
        for (int32_t u = m->tops[m->cur.off + i].up; u >= 0 && map[u] == -1; u = m->nodes[u].up)
            map[u] = 0; /* reachable */
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->n_nodes; i++) { /* a node's parent is older, so already moved */
        if (map[i] == -1) continue;
        gnode x = m->nodes[i];
        if (x.up >= 0) x.up = map[x.up];
        m->nodes[n] = x;
        map[i] = (int32_t)n++;
    }
    for (uint32_t i = 0; i < m->cur.cnt; i++) {
        gtop t = m->tops[m->cur.off + i];
        if (t.up >= 0) t.up = map[t.up];
        m->tops[i] = t;
    }
    free(map);
    m->n_nodes = n;
    m->n_tops = m->cur.cnt;
    m->cur.off = 0;
    return true;
}

void gram_matcher_clear_cache(gram_matcher *m) {
    for (uint32_t i = 0; i < m->cap_cache; i++) {
        free(m->cache[i].key);
        free(m->cache[i].mask);
        m->cache[i] = (centry){0};
    }
    m->n_cache = 0;
}

void gram_matcher_free(gram_matcher *m) {
    if (!m) return;
    gram_matcher_clear_cache(m);
    free(m->cache);
    free(m->nodes);
    free(m->tops);
    free(m->work);
    free(m->wst);
    free(m->wnodes);
    free(m->wtops);
    free(m->out);
    free(m->key);
    free(m->intern);
    free(m->memo);
    free(m->mtops);
    free(m->sets);
    free(m->dtab);
    gram_free(m->g);
    free(m);
}

sov_status gram_matcher_new(gram *g, const gram_vocab *gv, gram_matcher **out) {
    *out = NULL;
    gram_matcher *m = calloc(1, sizeof *m);
    if (!m) return sov_fail(SOV_ERR_NOMEM, "grammar: out of memory");
    m->g = gram_ref(g);
    m->gv = gv;
    m->words = gv ? (gv->n_vocab + 31) / 32 : 1; /* no vocabulary: bytes only, no masks */
    const size_t levels = gv ? (size_t)gv->max_depth + 1 : 1;
    m->wst = malloc(levels * sizeof *m->wst);
    m->wnodes = malloc(levels * sizeof *m->wnodes);
    m->wtops = malloc(levels * sizeof *m->wtops);
    m->out = malloc((size_t)m->words * sizeof *m->out);
    /* the cache: about 4 MiB of masks, between 16 and 1024 slots, at most half full */
    const size_t mask_bytes = (size_t)m->words * 4;
    uint32_t cap = 16;
    while (cap < 1024 && (size_t)cap * mask_bytes < (8u << 20))
        cap *= 2;
    m->cap_cache = cap;
    m->cache = calloc(cap, sizeof *m->cache);
    if (!m->wst || !m->wnodes || !m->wtops || !m->out || !m->cache) goto oom;
    const int32_t r = g->root;
    for (int32_t a = g->rule_first[r]; a < g->rule_first[r + 1]; a++)
        closure(m, (uint32_t)g->alt_start[a], -1, &m->cur);
    m->cur.cnt = m->n_tops;
    if (m->oom) goto oom;
    *out = m;
    return SOV_OK;
oom:
    gram_matcher_free(m);
    return sov_fail(SOV_ERR_NOMEM, "grammar: out of memory");
}

/* Runs bytes from the current state; the final state (or a dead one) in *end. The
 * arenas keep what was added: the caller resets or compacts. */
static bool run(gram_matcher *m, const uint8_t *b, size_t n, gstate *end) {
    gstate s = m->cur;
    for (size_t i = 0; i < n; i++) {
        if (s.cnt == 0) return false;
        s = advance(m, &s, b[i]);
        if (m->oom || !alive(&s)) return false;
    }
    *end = s;
    return true;
}

bool gram_matcher_try(gram_matcher *m, const uint8_t *bytes, size_t n) {
    const uint32_t nn = m->n_nodes, nt = m->n_tops;
    gstate s;
    const bool ok = run(m, bytes, n, &s);
    m->n_nodes = nn;
    m->n_tops = nt;
    m->oom = false;
    return ok;
}

bool gram_matcher_feed(gram_matcher *m, const uint8_t *bytes, size_t n) {
    const uint32_t nn = m->n_nodes, nt = m->n_tops;
    gstate s;
    if (!run(m, bytes, n, &s)) {
        m->n_nodes = nn;
        m->n_tops = nt;
        m->oom = false;
        return false;
    }
    m->cur = s;
    if (!compact(m)) m->oom = true;
    return !m->oom;
}

bool gram_matcher_feed_token(gram_matcher *m, sov_token t) {
    const gram_vocab *gv = m->gv;
    if (!gv) return false;
    for (int32_t i = 0; i < gv->n_eog; i++)
        if (gv->eog[i] == t) return m->cur.accept;
    int32_t len;
    const uint8_t *p = gram_vocab_piece(gv, t, &len);
    return p && gram_matcher_feed(m, p, (size_t)len);
}

bool gram_matcher_accepting(const gram_matcher *m) { return m->cur.accept; }
bool gram_matcher_complete(const gram_matcher *m) { return m->cur.accept && m->cur.cnt == 0; }

/* ---- masks ---- */

static bool key_push(gram_matcher *m, uint32_t *n, uint32_t w) {
    if (*n == m->cap_key) {
        const uint32_t cap = m->cap_key ? m->cap_key * 2 : 256;
        uint32_t *p = realloc(m->key, (size_t)cap * sizeof *p);
        if (!p) return false;
        m->key = p;
        m->cap_key = cap;
    }
    m->key[(*n)++] = w;
    return true;
}

/* The current state written out: each stack's positions top to bottom, then ~0; then
 * the accept flag. Equal keys, equal futures. */
static bool state_key(gram_matcher *m, uint32_t *klen, uint64_t *hash) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->cur.cnt; i++) {
        const gtop t = m->tops[m->cur.off + i];
        if (!key_push(m, &n, t.pos)) return false;
        for (int32_t u = t.up; u >= 0; u = m->nodes[u].up)
            if (!key_push(m, &n, m->nodes[u].pos)) return false;
        if (!key_push(m, &n, ~0u)) return false;
    }
    if (!key_push(m, &n, m->cur.accept)) return false;
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the words */
    for (uint32_t i = 0; i < n; i++) {
        h ^= m->key[i];
        h *= 1099511628211ull;
    }
    *klen = n;
    *hash = h ? h : 1;
    return true;
}

/* Does every plain byte lead from memoised set id back to itself? (Inside a JSON string
 * without a length bound it does: then every token of plain bytes keeps the state.) */
static bool self_loop(gram_matcher *m, int32_t id) {
    if (m->sets[id].loop == 0) {
        bool loop = true;
        for (unsigned b = 0x20; b < 0x7f && loop && !m->oom; b++) {
            if (!plain_byte((uint8_t)b)) continue;
            const uint32_t nt = m->n_tops;
            const wstate from = m->sets[id];
            const wstate to = walk_advance(m, &from, (uint8_t)b);
            m->n_tops = nt;
            loop = to.id == id;
        }
        m->sets[id].loop = loop && !m->oom ? 1 : 2;
    }
    return m->sets[id].loop == 1;
}

/* The walk: every token whose bytes the current state accepts and after which the
 * document can be finished in at most `budget` bytes, into mask. Returns the most
 * closing bytes any token put in the mask leaves. */
static uint32_t walk(gram_matcher *m, uint32_t *mask, uint32_t budget) {
    const gram_vocab *gv = m->gv;
    const uint32_t nn0 = m->n_nodes, nt0 = m->n_tops;
    memset(mask, 0, (size_t)m->words * sizeof *mask);
    m->wst[0] = (wstate){m->cur.off, m->cur.cnt, m->cur.accept, false, min_close(m, &m->cur), -1, 0};
    m->wtops[0] = nt0;
    m->walking = true;
    if (++m->gen == 0) { /* the generation wrapped: forget every slot */
        if (m->intern) memset(m->intern, 0, (size_t)m->cap_intern * sizeof *m->intern);
        if (m->memo) memset(m->memo, 0, (size_t)m->cap_memo * sizeof *m->memo);
        m->gen = 1;
    }
    m->n_intern = m->n_memo = m->n_mtops = m->n_sets = 0;
    uint64_t visited = 0;
    uint32_t max_close = 0;
    for (int32_t i = 1; i < gv->n_nodes;) {
        const int32_t d = gv->depth[i];
        m->n_tops = m->wtops[d - 1]; /* nodes and memoised sets stay for the whole walk */
        visited++;
        const wstate s = walk_advance(m, &m->wst[d - 1], gv->byte[i]);
        if (m->oom || !(s.cnt > 0 || s.accept)) {
            m->oom = false;
            i = gv->end[i];
            continue;
        }
        const int32_t nt = gv->tok_cnt[i];
        if (nt && s.close <= budget) {
            for (int32_t k = 0; k < nt; k++) {
                const sov_token t = gv->toks[gv->tok_off[i] + k];
                mask[t >> 5] |= 1u << (t & 31);
            }
            if (s.close > max_close) max_close = s.close;
        }
        if (s.cnt == 0) { /* only the end is left: no longer token can match */
            i = gv->end[i];
            continue;
        }
        if (gv->plain_below[i] && s.id >= 0 && self_loop(m, s.id)) {
            /* the fast path: every token below is plain bytes that keep the state s */
            const int32_t lo = gv->tok_before[i + 1], hi = gv->tok_before[gv->end[i]];
            if (lo < hi && s.close <= budget) {
                for (int32_t k = lo; k < hi; k++) {
                    const sov_token t = gv->toks[k];
                    mask[t >> 5] |= 1u << (t & 31);
                }
                if (s.close > max_close) max_close = s.close;
            }
            i = gv->end[i];
            continue;
        }
        m->wst[d] = s;
        m->wtops[d] = m->n_tops;
        i++;
    }
    m->walking = false;
    m->oom = false;
    m->n_nodes = nn0;
    m->n_tops = nt0;
    m->st.trie_nodes += visited;
    return max_close;
}

/* The cached mask of the current state (computed on a miss), or NULL when out of memory. */
static const centry *cached_mask(gram_matcher *m) {
    uint32_t klen;
    uint64_t h;
    if (!state_key(m, &klen, &h)) return NULL;
    const uint32_t cap = m->cap_cache;
    uint32_t i = (uint32_t)h & (cap - 1);
    for (; m->cache[i].hash; i = (i + 1) & (cap - 1)) {
        const centry *e = &m->cache[i];
        if (e->hash == h && e->klen == klen && memcmp(e->key, m->key, (size_t)klen * 4) == 0) {
            m->st.cache_hits++;
            return e;
        }
    }
    if (m->n_cache >= cap / 2) { /* full: start over (states of one document rarely recur
                                    far apart) */
        gram_matcher_clear_cache(m);
        i = (uint32_t)h & (cap - 1);
    }
    centry e = {h, malloc((size_t)klen * 4), klen, malloc((size_t)m->words * 4), 0};
    if (!e.key || !e.mask) {
        free(e.key);
        free(e.mask);
        return NULL;
    }
    memcpy(e.key, m->key, (size_t)klen * 4);
    e.max_close = walk(m, e.mask, GRAM_INF);
    m->cache[i] = e;
    m->n_cache++;
    return &m->cache[i];
}

const uint32_t *gram_matcher_mask_budget(gram_matcher *m, bool allow_eog, int64_t budget) {
    if (!m->gv) return NULL;
    m->st.masks++;
    if (m->cur.cnt == 0) {
        memset(m->out, 0, (size_t)m->words * sizeof *m->out);
    } else {
        const centry *c = cached_mask(m);
        if (!c) return NULL;
        const uint32_t b = budget < 0 || budget >= GRAM_INF ? GRAM_INF : (uint32_t)budget;
        bool any = false;
        if (c->max_close > b) { /* some token would leave more to close than the budget:
                                   walk again with the budget (not cached) */
            m->st.budget_walks++;
            walk(m, m->out, b);
            for (int32_t w = 0; w < m->words && !any; w++)
                any = m->out[w] != 0;
        }
        /* nothing fits (the budget was too small from the start): the plain mask */
        if (!any) memcpy(m->out, c->mask, (size_t)m->words * sizeof *m->out);
    }
    if (allow_eog && m->cur.accept)
        for (int32_t i = 0; i < m->gv->n_eog; i++)
            m->out[m->gv->eog[i] >> 5] |= 1u << (m->gv->eog[i] & 31);
    return m->out;
}

const uint32_t *gram_matcher_mask(gram_matcher *m, bool allow_eog) {
    return gram_matcher_mask_budget(m, allow_eog, -1);
}

uint32_t gram_matcher_min_close(const gram_matcher *m) { return min_close(m, &m->cur); }

bool gram_matcher_apply(gram_matcher *m, float *logits, bool allow_eog, int64_t budget) {
    const uint32_t *mask = gram_matcher_mask_budget(m, allow_eog, budget);
    if (!mask) return false;
    const int32_t V = m->gv->n_vocab;
    for (int32_t w = 0; w < m->words; w++) {
        const uint32_t bits = mask[w];
        if (bits == ~0u) continue;
        const int32_t base = w * 32, top = SOV_MIN(base + 32, V);
        for (int32_t t = base; t < top; t++)
            if (!((bits >> (t - base)) & 1u)) logits[t] = -INFINITY;
    }
    return true;
}

void gram_matcher_stats(const gram_matcher *m, gram_stats *out) { *out = m->st; }
