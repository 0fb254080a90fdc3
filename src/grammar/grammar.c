/* grammar.c - building a grammar: rules of alternatives of byte classes and rule
 * references, checked and flattened into the form the matcher walks.
 *
 * The compiled form (struct gram, see gram_impl.h) is one array of elements: each
 * alternative is its symbols followed by an END element, so "the position after this
 * symbol" is just the next index. Byte classes are deduplicated into a table of 256-bit
 * sets. gram_build refuses what would make the matcher loop or stall:
 *   - left recursion (a rule reaching itself through references preceded only by
 *     nullable symbols): the matcher's closure would never end;
 *   - unproductive alternatives (that can derive no finite byte string, e.g. a schema
 *     that requires itself): they are dropped, so the matcher never enters a branch it
 *     could not leave; a root with no productive alternative is an error. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "grammar/gram_impl.h"

/* ---- sequences ---- */

static gram_sym *seq_push(gram_seq *q) {
    if (q->oom) return NULL;
    if (q->n == q->cap) {
        if (q->cap >= GRAM_MAX_ELEMS) {
            q->oom = true;
            return NULL;
        }
        const int32_t cap = q->cap ? q->cap * 2 : 16;
        gram_sym *s = realloc(q->s, (size_t)cap * sizeof *s);
        if (!s) {
            q->oom = true;
            return NULL;
        }
        q->s = s;
        q->cap = cap;
    }
    gram_sym *x = &q->s[q->n++];
    memset(x, 0, sizeof *x);
    return x;
}

void gram_seq_range(gram_seq *q, uint8_t lo, uint8_t hi) {
    gram_sym *x = seq_push(q);
    if (!x) return;
    for (unsigned b = lo; b <= hi; b++)
        x->set[b / 32] |= 1u << (b % 32);
}

void gram_seq_byte(gram_seq *q, uint8_t b) { gram_seq_range(q, b, b); }

void gram_seq_set(gram_seq *q, const uint32_t set[8]) {
    gram_sym *x = seq_push(q);
    if (x) memcpy(x->set, set, sizeof x->set);
}

void gram_seq_lit(gram_seq *q, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        gram_seq_byte(q, (uint8_t)s[i]);
}

void gram_seq_ref(gram_seq *q, int32_t rule) {
    gram_sym *x = seq_push(q);
    if (!x) return;
    x->is_ref = true;
    x->rule = rule;
}

void gram_seq_free(gram_seq *q) {
    free(q->s);
    memset(q, 0, sizeof *q);
}

/* ---- the builder ---- */

typedef struct b_alt {
    int32_t rule;
    int32_t n;
    gram_sym *s; /* [n] */
} b_alt;

struct gram_builder {
    int32_t n_rules;
    b_alt *alts;
    int32_t n_alts, cap_alts;
    int64_t n_syms; /* total, for the size limit */
    bool oom;
};

gram_builder *gram_builder_new(void) { return calloc(1, sizeof(gram_builder)); }

void gram_builder_free(gram_builder *b) {
    if (!b) return;
    for (int32_t i = 0; i < b->n_alts; i++)
        free(b->alts[i].s);
    free(b->alts);
    free(b);
}

int32_t gram_rule_new(gram_builder *b) {
    if (b->oom || b->n_rules >= GRAM_MAX_ELEMS) {
        b->oom = true;
        return -1;
    }
    return b->n_rules++;
}

bool gram_rule_alt(gram_builder *b, int32_t rule, gram_seq *q) {
    if (q->oom || rule < 0 || rule >= b->n_rules || b->oom) {
        b->oom = true;
        q->n = 0;
        q->oom = false;
        return false;
    }
    for (int32_t i = 0; i < q->n; i++)
        if (q->s[i].is_ref && (q->s[i].rule < 0 || q->s[i].rule >= b->n_rules)) {
            b->oom = true; /* a reference to a rule that failed to be made */
            q->n = 0;
            return false;
        }
    b->n_syms += q->n + 1;
    if (b->n_syms > GRAM_MAX_ELEMS) {
        b->oom = true;
        q->n = 0;
        return false;
    }
    if (b->n_alts == b->cap_alts) {
        const int32_t cap = b->cap_alts ? b->cap_alts * 2 : 64;
        b_alt *a = realloc(b->alts, (size_t)cap * sizeof *a);
        if (!a) {
            b->oom = true;
            q->n = 0;
            return false;
        }
        b->alts = a;
        b->cap_alts = cap;
    }
    b_alt *a = &b->alts[b->n_alts];
    a->rule = rule;
    a->n = q->n;
    a->s = NULL;
    if (q->n) {
        a->s = malloc((size_t)q->n * sizeof *a->s);
        if (!a->s) {
            b->oom = true;
            q->n = 0;
            return false;
        }
        memcpy(a->s, q->s, (size_t)q->n * sizeof *a->s);
    }
    b->n_alts++;
    q->n = 0;
    return true;
}

/* ---- checks ---- */

/* nullable[r]: r derives the empty string; productive[r]: r derives some finite string.
 * Both least fixpoints over the alternatives. */
static void fixpoints(const gram_builder *b, uint8_t *nullable, uint8_t *productive) {
    for (bool changed = true; changed;) {
        changed = false;
        for (int32_t i = 0; i < b->n_alts; i++) {
            const b_alt *a = &b->alts[i];
            bool nul = true, prod = true;
            for (int32_t k = 0; k < a->n; k++) {
                if (!a->s[k].is_ref) {
                    nul = false;
                } else {
                    nul = nul && nullable[a->s[k].rule];
                    prod = prod && productive[a->s[k].rule];
                }
            }
            if (nul && !nullable[a->rule]) nullable[a->rule] = changed = true;
            if (prod && !productive[a->rule]) productive[a->rule] = changed = true;
        }
    }
}

static bool alt_productive(const b_alt *a, const uint8_t *productive) {
    for (int32_t k = 0; k < a->n; k++)
        if (a->s[k].is_ref && !productive[a->s[k].rule]) return false;
    return true;
}

/* Finds a cycle in the "starts with" graph: r -> s when some productive alternative of r
 * has a reference to s preceded only by nullable references. Iterative DFS; returns a
 * rule on the cycle or -1. */
static int32_t left_recursive(const gram_builder *b, const uint8_t *nullable, const uint8_t *productive,
                              const int32_t *first_alt, const int32_t *order) {
    const int32_t R = b->n_rules;
    uint8_t *color = calloc((size_t)R, 1); /* 0 new, 1 on the path, 2 done */
    int32_t *st_rule = malloc((size_t)R * sizeof *st_rule);
    int32_t *st_alt = malloc((size_t)R * sizeof *st_alt); /* next alternative index (into order) */
    int32_t *st_sym = malloc((size_t)R * sizeof *st_sym); /* next symbol in that alternative */
    int32_t found = -2;
    if (!color || !st_rule || !st_alt || !st_sym) goto done;
    found = -1;
    for (int32_t r0 = 0; r0 < R && found < 0; r0++) {
        if (color[r0]) continue;
        int32_t sp = 0;
        st_rule[0] = r0;
        st_alt[0] = first_alt[r0];
        st_sym[0] = 0;
        color[r0] = 1;
        while (sp >= 0 && found < 0) {
            const int32_t r = st_rule[sp];
            if (st_alt[sp] >= first_alt[r + 1]) {
                color[r] = 2;
                sp--;
                continue;
            }
            const b_alt *a = &b->alts[order[st_alt[sp]]];
            const int32_t k = st_sym[sp];
            if (!alt_productive(a, productive) || k >= a->n || !a->s[k].is_ref ||
                (k > 0 && !nullable[a->s[k - 1].rule])) {
                st_alt[sp]++;
                st_sym[sp] = 0;
                continue;
            }
            st_sym[sp]++;
            const int32_t s = a->s[k].rule;
            if (color[s] == 1) {
                found = s;
            } else if (color[s] == 0) {
                color[s] = 1;
                sp++;
                st_rule[sp] = s;
                st_alt[sp] = first_alt[s];
                st_sym[sp] = 0;
            }
        }
    }
done:
    free(color);
    free(st_rule);
    free(st_alt);
    free(st_sym);
    return found;
}

/* ---- flattening ---- */

static int32_t class_id(gram *g, const uint32_t set[8], int32_t *cap) {
    /* linear search over the last few and a small hash would do; grammars have few
     * distinct classes, so a scan of all of them is fine */
    for (int32_t i = 0; i < g->n_classes; i++)
        if (memcmp(g->classes[i].w, set, sizeof g->classes[i].w) == 0) return i;
    if (g->n_classes == *cap) {
        const int32_t c = *cap ? *cap * 2 : 32;
        gram_class *p = realloc(g->classes, (size_t)c * sizeof *p);
        if (!p) return -1;
        g->classes = p;
        *cap = c;
    }
    memcpy(g->classes[g->n_classes].w, set, sizeof g->classes[0].w);
    return g->n_classes++;
}

static uint32_t sat_add(uint32_t a, uint32_t b) { return a + b >= GRAM_INF ? GRAM_INF : a + b; }

/* tail[e]: the fewest bytes from element e to the end of its alternative, from each
 * rule's shortest derivation (a fixpoint: every rule left is productive, so it ends). */
static bool min_tails(gram *g) {
    uint32_t *minlen = malloc((size_t)(g->n_rules ? g->n_rules : 1) * sizeof *minlen);
    g->tail = malloc((size_t)(g->n_elems ? g->n_elems : 1) * sizeof *g->tail);
    if (!minlen || !g->tail) {
        free(minlen);
        return false;
    }
    for (int32_t r = 0; r < g->n_rules; r++)
        minlen[r] = GRAM_INF;
    for (bool changed = true; changed;) {
        changed = false;
        for (int32_t r = 0; r < g->n_rules; r++)
            for (int32_t a = g->rule_first[r]; a < g->rule_first[r + 1]; a++) {
                uint32_t len = 0;
                for (int32_t e = g->alt_start[a]; g->elems[e].kind != GRAM_E_END; e++)
                    len = sat_add(len, g->elems[e].kind == GRAM_E_CLASS ? 1 : minlen[g->elems[e].arg]);
                if (len < minlen[r]) minlen[r] = len, changed = true;
            }
    }
    for (int32_t a = 0; a < g->n_alts; a++) {
        int32_t end = g->alt_start[a];
        while (g->elems[end].kind != GRAM_E_END)
            end++;
        g->tail[end] = 0;
        for (int32_t e = end - 1; e >= g->alt_start[a]; e--)
            g->tail[e] = sat_add(g->tail[e + 1], g->elems[e].kind == GRAM_E_CLASS ? 1 : minlen[g->elems[e].arg]);
    }
    free(minlen);
    return true;
}

static void gram_destroy(gram *g) {
    if (!g) return;
    free(g->elems);
    free(g->classes);
    free(g->alt_start);
    free(g->rule_first);
    free(g->tail);
    free(g);
}

sov_status gram_build(gram_builder *b, int32_t root, gram **out) {
    *out = NULL;
    if (b->oom) return sov_fail(SOV_ERR_NOMEM, "grammar: out of memory or too large (over %d elements)", GRAM_MAX_ELEMS);
    if (root < 0 || root >= b->n_rules) return sov_fail(SOV_ERR_ARG, "grammar: no root rule");
    const int32_t R = b->n_rules;
    sov_status st = SOV_OK;
    uint8_t *nullable = calloc((size_t)R, 1), *productive = calloc((size_t)R, 1);
    int32_t *first_alt = calloc((size_t)R + 1, sizeof *first_alt);
    int32_t *order = malloc(((size_t)b->n_alts + 1) * sizeof *order);
    int32_t *fill = calloc((size_t)R + 1, sizeof *fill);
    gram *g = calloc(1, sizeof *g);
    if (!nullable || !productive || !first_alt || !order || !fill || !g) {
        st = sov_fail(SOV_ERR_NOMEM, "grammar: out of memory");
        goto out;
    }
    /* alternatives grouped by rule, in the order they were added */
    for (int32_t i = 0; i < b->n_alts; i++)
        first_alt[b->alts[i].rule + 1]++;
    for (int32_t r = 0; r < R; r++)
        first_alt[r + 1] += first_alt[r];
    for (int32_t i = 0; i < b->n_alts; i++) {
        const int32_t r = b->alts[i].rule;
        order[first_alt[r] + fill[r]++] = i;
    }
    for (int32_t r = 0; r < R; r++)
        if (first_alt[r] == first_alt[r + 1]) {
            st = sov_fail(SOV_ERR_ARG, "grammar: rule %d has no alternatives", (int)r);
            goto out;
        }
    fixpoints(b, nullable, productive);
    if (!productive[root]) {
        st = sov_fail(SOV_ERR_ARG, "grammar: no finite document matches (every branch recurses forever)");
        goto out;
    }
    const int32_t lr = left_recursive(b, nullable, productive, first_alt, order);
    if (lr == -2) {
        st = sov_fail(SOV_ERR_NOMEM, "grammar: out of memory");
        goto out;
    }
    if (lr >= 0) {
        st = sov_fail(SOV_ERR_ARG, "grammar: rule %d is left-recursive (it can reach itself without consuming input)",
                      (int)lr);
        goto out;
    }
    /* flatten: productive alternatives only (an unproductive rule keeps none and is
     * never referenced by a productive alternative) */
    g->refs = 1;
    g->n_rules = R;
    g->root = root;
    g->rule_first = calloc((size_t)R + 1, sizeof *g->rule_first);
    g->alt_start = malloc(((size_t)b->n_alts + 1) * sizeof *g->alt_start);
    g->elems = malloc(((size_t)b->n_syms + 1) * sizeof *g->elems);
    if (!g->rule_first || !g->alt_start || !g->elems) {
        st = sov_fail(SOV_ERR_NOMEM, "grammar: out of memory");
        goto out;
    }
    int32_t class_cap = 0, na = 0, ne = 0;
    for (int32_t r = 0; r < R; r++) {
        g->rule_first[r] = na;
        for (int32_t j = first_alt[r]; j < first_alt[r + 1]; j++) {
            const b_alt *a = &b->alts[order[j]];
            if (!alt_productive(a, productive)) continue;
            g->alt_start[na++] = ne;
            for (int32_t k = 0; k < a->n; k++) {
                if (a->s[k].is_ref) {
                    g->elems[ne++] = (gram_elem){GRAM_E_REF, (uint32_t)a->s[k].rule};
                } else {
                    const int32_t c = class_id(g, a->s[k].set, &class_cap);
                    if (c < 0) {
                        st = sov_fail(SOV_ERR_NOMEM, "grammar: out of memory");
                        goto out;
                    }
                    g->elems[ne++] = (gram_elem){GRAM_E_CLASS, (uint32_t)c};
                }
            }
            g->elems[ne++] = (gram_elem){GRAM_E_END, 0};
        }
    }
    g->rule_first[R] = na;
    g->n_alts = na;
    g->n_elems = ne;
    if (!min_tails(g)) {
        st = sov_fail(SOV_ERR_NOMEM, "grammar: out of memory");
        goto out;
    }
    *out = g;
    g = NULL;
out:
    gram_destroy(g);
    free(nullable);
    free(productive);
    free(first_alt);
    free(order);
    free(fill);
    return st;
}

gram *gram_ref(gram *g) {
    if (g) __atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
    return g;
}

void gram_free(gram *g) {
    if (g && __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) == 0) gram_destroy(g);
}

int32_t gram_n_rules(const gram *g) { return g->n_rules; }
int32_t gram_n_elems(const gram *g) { return g->n_elems; }
