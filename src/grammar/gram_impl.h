/* gram_impl.h - the compiled grammar's layout, shared by grammar.c (which builds it) and
 * matcher.c (which walks it). Nothing outside src/grammar/ includes this. */
#ifndef SOV_GRAMMAR_GRAM_IMPL_H
#define SOV_GRAMMAR_GRAM_IMPL_H

#include "grammar/grammar.h"

enum { GRAM_E_END = 0, GRAM_E_CLASS = 1, GRAM_E_REF = 2 };

typedef struct gram_elem {
    uint32_t kind; /* GRAM_E_* */
    uint32_t arg;  /* CLASS: index into classes; REF: rule id */
} gram_elem;

typedef struct gram_class {
    uint32_t w[8]; /* bit b of w[b / 32]: byte b matches */
} gram_class;

struct gram {
    int refs;
    int32_t root;
    int32_t n_rules, n_alts, n_elems, n_classes;
    gram_elem *elems;     /* [n_elems] every alternative's symbols, then an END */
    gram_class *classes;  /* [n_classes] */
    int32_t *alt_start;   /* [n_alts] index into elems of each alternative */
    int32_t *rule_first;  /* [n_rules + 1] rule r's alternatives: alt_start[rule_first[r] ..
                             rule_first[r + 1]) */
    uint32_t *tail;       /* [n_elems] fewest bytes that finish the alternative from this
                             element on (saturating at GRAM_INF): what closing costs */
};

#define GRAM_INF (1u << 30)

static inline bool gram_class_has(const gram_class *c, uint8_t b) { return (c->w[b >> 5] >> (b & 31)) & 1u; }

#endif
