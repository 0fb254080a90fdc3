/* parse.c - recursive-descent parser from tokens to the AST, with Jinja's grammar and
 * operator precedence (lowest first): `a if c else b`, or, and, not, comparisons and
 * `in`, + -, ~, * / // %, **, unary - +, then postfix (.attr [item] (call)) and the
 * filter/test chain (| filter, is test). A construct sov does not implement fails here,
 * at load, with its name and line; nesting and node counts are bounded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja/jinja.h"

typedef struct parser {
    jarena *a;
    const jtok *t;
    size_t n, i;
    size_t nodes;
    int depth;
    char *err;
    jmp_buf fail;
} parser;

static _Noreturn void perr(parser *P, int line, const char *fmt, const char *arg) {
    char msg[256];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    snprintf(P->err, JINJA_ERR, "line %d: %s", line, msg);
    longjmp(P->fail, 1);
}

static const jtok *cur(parser *P) { return &P->t[P->i]; }
static const jtok *next(parser *P) { return &P->t[P->i < P->n - 1 ? P->i++ : P->i]; }

static bool is_op(const jtok *t, const char *op) {
    return t->kind == JT_OP && t->len == strlen(op) && memcmp(t->s, op, t->len) == 0;
}
static bool is_name(const jtok *t, const char *name) {
    return t->kind == JT_NAME && t->len == strlen(name) && memcmp(t->s, name, t->len) == 0;
}

static const char *tok_desc(parser *P, const jtok *t) {
    switch (t->kind) {
    case JT_EOF: return "end of template";
    case JT_TEXT: return "text";
    case JT_VAR_BEGIN: return "'{{'";
    case JT_VAR_END: return "'}}'";
    case JT_BLOCK_BEGIN: return "'{%'";
    case JT_BLOCK_END: return "'%}'";
    case JT_STRING: return "string";
    case JT_INT:
    case JT_FLOAT: return "number";
    default: {
        char *s = ja_alloc(P->a, t->len + 3);
        s[0] = '\'';
        memcpy(s + 1, t->s, t->len);
        s[t->len + 1] = '\'';
        return s;
    }
    }
}

static void expect_op(parser *P, const char *op) {
    if (!is_op(cur(P), op)) {
        char msg[64];
        snprintf(msg, sizeof msg, "expected '%s', got %%s", op);
        perr(P, cur(P)->line, msg, tok_desc(P, cur(P)));
    }
    next(P);
}

static const char *expect_name(parser *P) {
    const jtok *t = cur(P);
    if (t->kind != JT_NAME) perr(P, t->line, "expected a name, got %s", tok_desc(P, t));
    next(P);
    return ja_strndup(P->a, t->s, t->len);
}

static jnode *node(parser *P, jnode_kind k, int line) {
    if (++P->nodes > JINJA_MAX_NODES) perr(P, line, "template too large (more than %s AST nodes)", "100000");
    jnode *n = ja_alloc(P->a, sizeof *n);
    n->kind = k;
    n->line = line;
    return n;
}

/* growable arrays of children */
typedef struct kids {
    jnode **v;
    size_t n, cap;
} kids;
static void kpush(parser *P, kids *k, jnode *n) {
    if (k->n == k->cap) {
        const size_t cap = k->cap ? k->cap * 2 : 4;
        jnode **p = ja_alloc(P->a, cap * sizeof *p);
        if (k->n) memcpy(p, k->v, k->n * sizeof *p);
        k->v = p;
        k->cap = cap;
    }
    k->v[k->n++] = n;
}
typedef struct names {
    const char **v;
    size_t n, cap;
} names;
static void npush(parser *P, names *k, const char *s) {
    if (k->n == k->cap) {
        const size_t cap = k->cap ? k->cap * 2 : 4;
        const char **p = ja_alloc(P->a, cap * sizeof *p);
        if (k->n) memcpy(p, k->v, k->n * sizeof *p);
        k->v = p;
        k->cap = cap;
    }
    k->v[k->n++] = s;
}

static void enter(parser *P) {
    if (++P->depth > JINJA_MAX_PARSE_DEPTH)
        perr(P, cur(P)->line, "template nested too deeply (more than %s levels)", "200");
}
static void leave(parser *P) { P->depth--; }

static jnode *parse_expr(parser *P);
static jnode *parse_or(parser *P);
static jnode *parse_unary(parser *P, bool with_filter);
static jnode *parse_primary(parser *P);

/* (args, kw=args) after '(' was seen */
static void parse_args(parser *P, jnode *call) {
    kids args = {0}, kwv = {0};
    names kwn = {0};
    expect_op(P, "(");
    while (!is_op(cur(P), ")")) {
        if (args.n + kwn.n > 0) expect_op(P, ",");
        if (is_op(cur(P), ")")) break; /* trailing comma */
        if (is_op(cur(P), "*") || is_op(cur(P), "**"))
            perr(P, cur(P)->line, "unsupported construct %s (argument unpacking)", tok_desc(P, cur(P)));
        if (cur(P)->kind == JT_NAME && is_op(&P->t[P->i + 1], "=")) {
            npush(P, &kwn, expect_name(P));
            next(P);
            kpush(P, &kwv, parse_expr(P));
        } else {
            if (kwn.n) perr(P, cur(P)->line, "positional argument after a keyword argument%s", NULL);
            kpush(P, &args, parse_expr(P));
        }
    }
    next(P);
    call->kids = args.v;
    call->n_kids = args.n;
    call->kwn = kwn.v;
    call->kwv = kwv.v;
    call->n_kw = kwn.n;
}

static jnode *parse_postfix(parser *P, jnode *n) {
    for (;;) {
        const jtok *t = cur(P);
        if (is_op(t, ".")) {
            next(P);
            const jtok *a = cur(P);
            if (a->kind == JT_NAME) {
                jnode *g = node(P, JN_ATTR, t->line);
                g->a = n;
                g->name = expect_name(P);
                n = g;
            } else if (a->kind == JT_INT) {
                next(P);
                jnode *g = node(P, JN_ITEM, t->line);
                g->a = n;
                g->b = node(P, JN_LIT, t->line);
                g->b->lit = jv_int(a->i);
                n = g;
            } else
                perr(P, a->line, "expected an attribute name after '.', got %s", tok_desc(P, a));
        } else if (is_op(t, "[")) {
            next(P);
            jnode *parts[3] = {NULL, NULL, NULL};
            int k = 0;
            bool slice = false;
            for (;;) {
                if (is_op(cur(P), ":")) {
                    slice = true;
                    if (++k > 2) perr(P, cur(P)->line, "bad slice%s", NULL);
                    next(P);
                    continue;
                }
                if (is_op(cur(P), "]")) break;
                if (parts[k]) perr(P, cur(P)->line, "expected ']', got %s", tok_desc(P, cur(P)));
                parts[k] = parse_expr(P);
                if (is_op(cur(P), ","))
                    perr(P, cur(P)->line, "unsupported construct tuple subscript%s", NULL);
            }
            next(P);
            jnode *g;
            if (slice) {
                g = node(P, JN_SLICE, t->line);
                g->b = parts[0];
                g->c = parts[1];
                g->d = parts[2];
            } else {
                if (!parts[0]) perr(P, t->line, "empty subscript%s", NULL);
                g = node(P, JN_ITEM, t->line);
                g->b = parts[0];
            }
            g->a = n;
            n = g;
        } else if (is_op(t, "(")) {
            jnode *c = node(P, JN_CALL, t->line);
            c->a = n;
            parse_args(P, c);
            n = c;
        } else
            return n;
    }
}

static jnode *parse_filter_expr(parser *P, jnode *n) {
    for (;;) {
        const jtok *t = cur(P);
        if (is_op(t, "|")) {
            next(P);
            jnode *f = node(P, JN_FILTER, t->line);
            f->a = n;
            f->name = expect_name(P);
            while (is_op(cur(P), ".")) { /* dotted filter names */
                next(P);
                const char *more = expect_name(P);
                char *full = ja_alloc(P->a, strlen(f->name) + strlen(more) + 2);
                sprintf(full, "%s.%s", f->name, more);
                f->name = full;
            }
            if (is_op(cur(P), "(")) parse_args(P, f);
            n = f;
        } else if (is_name(t, "is")) {
            next(P);
            jnode *f = node(P, JN_TEST, t->line);
            f->a = n;
            if (is_name(cur(P), "not")) {
                next(P);
                f->op = 1;
            }
            const jtok *nm = cur(P);
            if (nm->kind == JT_NAME && (is_name(nm, "none") || is_name(nm, "true") || is_name(nm, "false") ||
                                        is_name(nm, "None") || is_name(nm, "True") || is_name(nm, "False"))) {
                next(P);
                char *lower = ja_strndup(P->a, nm->s, nm->len);
                lower[0] = (char)(lower[0] | 0x20);
                f->name = lower;
            } else
                f->name = expect_name(P);
            while (is_op(cur(P), ".")) {
                next(P);
                (void)expect_name(P);
            }
            const jtok *c = cur(P);
            if (is_op(c, "("))
                parse_args(P, f);
            else if ((c->kind == JT_NAME || c->kind == JT_STRING || c->kind == JT_INT ||
                      c->kind == JT_FLOAT || is_op(c, "(") || is_op(c, "[") || is_op(c, "{")) &&
                     !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
                if (is_name(c, "is")) perr(P, c->line, "You cannot chain multiple tests with is%s", NULL);
                jnode *arg = parse_postfix(P, parse_primary(P));
                f->kids = ja_alloc(P->a, sizeof *f->kids);
                f->kids[0] = arg;
                f->n_kids = 1;
            }
            n = f;
        } else if (is_op(t, "(")) {
            jnode *c = node(P, JN_CALL, t->line);
            c->a = n;
            parse_args(P, c);
            n = c;
        } else
            return n;
    }
}

static jnode *parse_primary(parser *P) {
    const jtok *t = cur(P);
    enter(P);
    jnode *n;
    if (t->kind == JT_NAME) {
        next(P);
        n = node(P, JN_LIT, t->line);
        if (is_name(t, "true") || is_name(t, "True"))
            n->lit = jv_bool(true);
        else if (is_name(t, "false") || is_name(t, "False"))
            n->lit = jv_bool(false);
        else if (is_name(t, "none") || is_name(t, "None"))
            n->lit = jv_none();
        else {
            n->kind = JN_NAME;
            n->name = ja_strndup(P->a, t->s, t->len);
        }
    } else if (t->kind == JT_STRING) {
        /* adjacent strings concatenate */
        size_t total = 0, j = P->i;
        while (P->t[j].kind == JT_STRING)
            total += P->t[j++].len;
        char *s = ja_alloc(P->a, total + 1);
        size_t k = 0;
        while (cur(P)->kind == JT_STRING) {
            memcpy(s + k, cur(P)->s, cur(P)->len);
            k += cur(P)->len;
            next(P);
        }
        n = node(P, JN_LIT, t->line);
        n->lit = jv_str(P->a, s, k);
    } else if (t->kind == JT_INT || t->kind == JT_FLOAT) {
        next(P);
        n = node(P, JN_LIT, t->line);
        n->lit = t->kind == JT_INT ? jv_int(t->i) : jv_float(t->f);
    } else if (is_op(t, "(")) {
        next(P);
        if (is_op(cur(P), ")")) {
            next(P);
            n = node(P, JN_TUPLE, t->line);
        } else {
            jnode *first = parse_expr(P);
            if (is_op(cur(P), ",")) {
                kids k = {0};
                kpush(P, &k, first);
                while (is_op(cur(P), ",")) {
                    next(P);
                    if (is_op(cur(P), ")")) break;
                    kpush(P, &k, parse_expr(P));
                }
                n = node(P, JN_TUPLE, t->line);
                n->kids = k.v;
                n->n_kids = k.n;
            } else
                n = first;
            expect_op(P, ")");
        }
    } else if (is_op(t, "[")) {
        next(P);
        kids k = {0};
        while (!is_op(cur(P), "]")) {
            if (k.n) expect_op(P, ",");
            if (is_op(cur(P), "]")) break;
            kpush(P, &k, parse_expr(P));
        }
        next(P);
        n = node(P, JN_LIST, t->line);
        n->kids = k.v;
        n->n_kids = k.n;
    } else if (is_op(t, "{")) {
        next(P);
        kids keys = {0}, vals = {0};
        while (!is_op(cur(P), "}")) {
            if (keys.n) expect_op(P, ",");
            if (is_op(cur(P), "}")) break;
            kpush(P, &keys, parse_expr(P));
            expect_op(P, ":");
            kpush(P, &vals, parse_expr(P));
        }
        next(P);
        n = node(P, JN_DICT, t->line);
        n->kids = keys.v;
        n->kwv = vals.v;
        n->n_kids = keys.n;
    } else
        perr(P, t->line, "unexpected %s in expression", tok_desc(P, t));
    leave(P);
    return n;
}

static jnode *parse_unary(parser *P, bool with_filter) {
    const jtok *t = cur(P);
    enter(P);
    jnode *n;
    if (is_op(t, "-") || is_op(t, "+")) {
        next(P);
        n = node(P, is_op(t, "-") ? JN_NEG : JN_POS, t->line);
        n->a = parse_unary(P, false);
    } else
        n = parse_primary(P);
    n = parse_postfix(P, n);
    if (with_filter) n = parse_filter_expr(P, n);
    leave(P);
    return n;
}

static jnode *bin(parser *P, int op, jnode *l, jnode *r, int line) {
    jnode *n = node(P, JN_BIN, line);
    n->op = op;
    n->a = l;
    n->b = r;
    return n;
}

static jnode *parse_pow(parser *P) {
    jnode *l = parse_unary(P, true);
    while (is_op(cur(P), "**")) {
        const int line = next(P)->line;
        l = bin(P, OP_POW, l, parse_unary(P, true), line);
    }
    return l;
}

static jnode *parse_math2(parser *P) {
    jnode *l = parse_pow(P);
    for (;;) {
        const jtok *t = cur(P);
        int op = is_op(t, "*")    ? OP_MUL
                 : is_op(t, "/")  ? OP_DIV
                 : is_op(t, "//") ? OP_FLOORDIV
                 : is_op(t, "%")  ? OP_MOD
                                  : 0;
        if (!op) return l;
        next(P);
        l = bin(P, op, l, parse_pow(P), t->line);
    }
}

static jnode *parse_concat(parser *P) {
    jnode *l = parse_math2(P);
    while (is_op(cur(P), "~")) {
        const int line = next(P)->line;
        l = bin(P, OP_CONCAT, l, parse_math2(P), line);
    }
    return l;
}

static jnode *parse_math1(parser *P) {
    jnode *l = parse_concat(P);
    for (;;) {
        const jtok *t = cur(P);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : 0;
        if (!op) return l;
        next(P);
        l = bin(P, op, l, parse_concat(P), t->line);
    }
}

static jnode *parse_compare(parser *P) {
    jnode *l = parse_math1(P);
    jnode *chain = NULL;
    kids ops = {0};
    for (;;) {
        const jtok *t = cur(P);
        int op = is_op(t, "==")     ? OP_EQ
                 : is_op(t, "!=")   ? OP_NE
                 : is_op(t, "<")    ? OP_LT
                 : is_op(t, "<=")   ? OP_LE
                 : is_op(t, ">")    ? OP_GT
                 : is_op(t, ">=")   ? OP_GE
                 : is_name(t, "in") ? OP_IN
                                    : 0;
        if (!op && is_name(t, "not") && is_name(&P->t[P->i + 1], "in")) {
            next(P);
            op = OP_NOTIN;
        }
        if (!op) break;
        next(P);
        jnode *o = node(P, JN_CMP, t->line);
        o->op = op;
        o->a = parse_math1(P);
        kpush(P, &ops, o);
        if (!chain) chain = o;
    }
    if (!ops.n) return l;
    jnode *c = node(P, JN_CMP, l->line);
    c->a = l;
    c->kids = ops.v;
    c->n_kids = ops.n;
    c->op = 0;
    return c;
}

static jnode *parse_not(parser *P) {
    if (is_name(cur(P), "not")) {
        const int line = next(P)->line;
        enter(P);
        jnode *n = node(P, JN_NOT, line);
        n->a = parse_not(P);
        leave(P);
        return n;
    }
    return parse_compare(P);
}

static jnode *parse_and(parser *P) {
    jnode *l = parse_not(P);
    while (is_name(cur(P), "and")) {
        const int line = next(P)->line;
        jnode *n = node(P, JN_AND, line);
        n->a = l;
        n->b = parse_not(P);
        l = n;
    }
    return l;
}

static jnode *parse_or(parser *P) {
    jnode *l = parse_and(P);
    while (is_name(cur(P), "or")) {
        const int line = next(P)->line;
        jnode *n = node(P, JN_OR, line);
        n->a = l;
        n->b = parse_and(P);
        l = n;
    }
    return l;
}

/* condexpr: or_expr [if or_expr [else expr]] */
static jnode *parse_expr(parser *P) {
    enter(P);
    jnode *l = parse_or(P);
    while (is_name(cur(P), "if")) {
        const int line = next(P)->line;
        jnode *c = node(P, JN_COND, line);
        c->a = l;
        c->b = parse_or(P);
        if (is_name(cur(P), "else")) {
            next(P);
            c->c = parse_expr(P);
        }
        l = c;
    }
    leave(P);
    return l;
}

/* ---- statements ---------------------------------------------------------------------- */

static jnode *parse_body(parser *P, const char *const *ends, const char **which);

static void expect_block_end(parser *P) {
    if (cur(P)->kind != JT_BLOCK_END) perr(P, cur(P)->line, "expected '%%}', got %s", tok_desc(P, cur(P)));
    next(P);
}

static jnode *parse_if(parser *P, int line) {
    jnode *n = node(P, JN_IF, line);
    n->a = parse_expr(P);
    expect_block_end(P);
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    const char *which;
    n->b = parse_body(P, ends, &which);
    if (strcmp(which, "elif") == 0) {
        n->c = node(P, JN_BODY, cur(P)->line);
        n->c->kids = ja_alloc(P->a, sizeof(jnode *));
        n->c->kids[0] = parse_if(P, cur(P)->line);
        n->c->n_kids = 1;
        return n; /* the nested if consumed endif */
    }
    if (strcmp(which, "else") == 0) {
        expect_block_end(P);
        static const char *const end_only[] = {"endif", NULL};
        n->c = parse_body(P, end_only, &which);
    }
    expect_block_end(P);
    return n;
}

static void parse_targets(parser *P, names *t) {
    bool paren = is_op(cur(P), "(");
    if (paren) next(P);
    npush(P, t, expect_name(P));
    while (is_op(cur(P), ",")) {
        next(P);
        if (cur(P)->kind != JT_NAME) break;
        npush(P, t, expect_name(P));
    }
    if (paren) expect_op(P, ")");
}

static jnode *parse_for(parser *P, int line) {
    jnode *n = node(P, JN_FOR, line);
    names t = {0};
    parse_targets(P, &t);
    n->targets = t.v;
    n->n_targets = t.n;
    if (!is_name(cur(P), "in"))
        perr(P, cur(P)->line, "expected 'in' in for loop, got %s", tok_desc(P, cur(P)));
    next(P);
    n->a = parse_or(P); /* no ternary here: `if` starts the loop filter */
    if (is_op(cur(P), ",")) perr(P, cur(P)->line, "unsupported construct implicit tuple in for loop%s", NULL);
    if (is_name(cur(P), "if")) {
        next(P);
        n->b = parse_expr(P);
    }
    if (is_name(cur(P), "recursive"))
        perr(P, cur(P)->line, "unsupported construct 'for ... recursive'%s", NULL);
    expect_block_end(P);
    static const char *const ends[] = {"else", "endfor", NULL};
    const char *which;
    n->c = parse_body(P, ends, &which);
    if (strcmp(which, "else") == 0) {
        expect_block_end(P);
        static const char *const end_only[] = {"endfor", NULL};
        n->d = parse_body(P, end_only, &which);
    }
    expect_block_end(P);
    return n;
}

static jnode *parse_set(parser *P, int line) {
    jnode *n = node(P, JN_SET, line);
    names t = {0};
    const char *first = expect_name(P);
    if (is_op(cur(P), ".")) { /* namespace attribute */
        next(P);
        npush(P, &t, first);
        n->name = expect_name(P);
    } else {
        npush(P, &t, first);
        while (is_op(cur(P), ",")) {
            next(P);
            npush(P, &t, expect_name(P));
        }
    }
    n->targets = t.v;
    n->n_targets = t.n;
    if (is_op(cur(P), "=")) {
        next(P);
        n->a = parse_expr(P);
        if (is_op(cur(P), ",")) { /* implicit tuple */
            jnode *tu = node(P, JN_TUPLE, line);
            kids k = {0};
            kpush(P, &k, n->a);
            while (is_op(cur(P), ",")) {
                next(P);
                kpush(P, &k, parse_expr(P));
            }
            tu->kids = k.v;
            tu->n_kids = k.n;
            n->a = tu;
        }
        expect_block_end(P);
        return n;
    }
    /* block set: {% set x %}...{% endset %}, optionally {% set x | filter %} */
    n->kind = JN_SETBLOCK;
    if (n->name || t.n != 1) perr(P, line, "unsupported construct block set of %s", "an attribute or tuple");
    jnode *filt = NULL;
    if (is_op(cur(P), "|")) {
        jnode *dummy = node(P, JN_LIT, line);
        dummy->lit = jv_undef(NULL);
        filt = parse_filter_expr(P, dummy);
    }
    expect_block_end(P);
    static const char *const ends[] = {"endset", NULL};
    const char *which;
    n->a = parse_body(P, ends, &which);
    n->b = filt;
    expect_block_end(P);
    return n;
}

static void parse_params(parser *P, jnode *n) {
    names pn = {0};
    kids pd = {0};
    if (is_op(cur(P), "(")) {
        next(P);
        while (!is_op(cur(P), ")")) {
            if (pn.n) expect_op(P, ",");
            if (is_op(cur(P), ")")) break;
            npush(P, &pn, expect_name(P));
            if (is_op(cur(P), "=")) {
                next(P);
                kpush(P, &pd, parse_expr(P));
            } else {
                if (pd.n && pd.v[pd.n - 1])
                    perr(P, cur(P)->line, "non-default parameter after a default one%s", NULL);
                kpush(P, &pd, NULL);
            }
        }
        next(P);
    }
    n->kwn = pn.v;
    n->kwv = pd.v;
    n->n_kw = pn.n;
}

static jnode *parse_macro(parser *P, int line) {
    jnode *n = node(P, JN_MACRO, line);
    n->name = expect_name(P);
    if (!is_op(cur(P), "("))
        perr(P, cur(P)->line, "expected '(' after the macro name, got %s", tok_desc(P, cur(P)));
    parse_params(P, n);
    expect_block_end(P);
    static const char *const ends[] = {"endmacro", NULL};
    const char *which;
    n->a = parse_body(P, ends, &which);
    if (cur(P)->kind == JT_NAME) next(P); /* {% endmacro name %} */
    expect_block_end(P);
    return n;
}

static jnode *parse_callblock(parser *P, int line) {
    jnode *n = node(P, JN_CALLBLOCK, line);
    parse_params(P, n); /* the caller's parameters */
    n->a = parse_expr(P);
    if (n->a->kind != JN_CALL) perr(P, line, "expected a macro call after 'call'%s", NULL);
    expect_block_end(P);
    static const char *const ends[] = {"endcall", NULL};
    const char *which;
    n->b = parse_body(P, ends, &which);
    expect_block_end(P);
    return n;
}

static jnode *parse_filterblock(parser *P, int line) {
    jnode *n = node(P, JN_FILTERBLOCK, line);
    jnode *dummy = node(P, JN_LIT, line);
    dummy->lit = jv_undef(NULL);
    /* {% filter upper %}: the first filter has no leading '|' */
    jnode *f = node(P, JN_FILTER, line);
    f->a = dummy;
    f->name = expect_name(P);
    if (is_op(cur(P), "(")) parse_args(P, f);
    n->b = parse_filter_expr(P, f);
    expect_block_end(P);
    static const char *const ends[] = {"endfilter", NULL};
    const char *which;
    n->a = parse_body(P, ends, &which);
    expect_block_end(P);
    return n;
}

static jnode *parse_statement(parser *P) {
    const jtok *t = cur(P);
    if (t->kind != JT_NAME) perr(P, t->line, "expected a statement name after '{%%', got %s", tok_desc(P, t));
    const int line = t->line;
    enter(P);
    jnode *n;
    if (is_name(t, "if")) {
        next(P);
        n = parse_if(P, line);
    } else if (is_name(t, "for")) {
        next(P);
        n = parse_for(P, line);
    } else if (is_name(t, "set")) {
        next(P);
        n = parse_set(P, line);
    } else if (is_name(t, "macro")) {
        next(P);
        n = parse_macro(P, line);
    } else if (is_name(t, "call")) {
        next(P);
        n = parse_callblock(P, line);
    } else if (is_name(t, "filter")) {
        next(P);
        n = parse_filterblock(P, line);
    } else if (is_name(t, "break") || is_name(t, "continue")) {
        next(P);
        n = node(P, is_name(t, "break") ? JN_BREAK : JN_CONTINUE, line);
        expect_block_end(P);
    } else if (is_name(t, "generation")) { /* HF's AssistantTracker: renders its body */
        next(P);
        expect_block_end(P);
        static const char *const ends[] = {"endgeneration", NULL};
        const char *which;
        n = parse_body(P, ends, &which);
        expect_block_end(P);
    } else {
        const char *nm = tok_desc(P, t);
        char msg[160];
        snprintf(msg, sizeof msg, "unsupported construct '{%% %.*s %%}'", (int)t->len, t->s);
        (void)nm;
        perr(P, line, "%s", msg);
    }
    leave(P);
    return n;
}

/* Statements until a block tag whose name is in ends (its name left in *which, the tag's
 * remaining tokens left to the caller) or, when ends is NULL, the end of the template. */
static jnode *parse_body(parser *P, const char *const *ends, const char **which) {
    jnode *body = node(P, JN_BODY, cur(P)->line);
    kids k = {0};
    for (;;) {
        const jtok *t = cur(P);
        if (t->kind == JT_EOF) {
            if (ends) {
                char msg[96];
                snprintf(msg, sizeof msg, "unexpected end of template, expected '{%% %s %%}'",
                         ends[0][0] == 'e' && ends[1] == NULL ? ends[0] : ends[0]);
                for (size_t e = 0; ends[e]; e++)
                    if (strncmp(ends[e], "end", 3) == 0)
                        snprintf(msg, sizeof msg, "unexpected end of template, missing '{%% %s %%}'",
                                 ends[e]);
                perr(P, t->line, "%s", msg);
            }
            break;
        }
        if (t->kind == JT_TEXT) {
            next(P);
            jnode *n = node(P, JN_TEXT, t->line);
            n->lit = jv_str(P->a, t->s, t->len);
            kpush(P, &k, n);
        } else if (t->kind == JT_VAR_BEGIN) {
            next(P);
            jnode *n = node(P, JN_OUTPUT, t->line);
            n->a = parse_expr(P);
            if (cur(P)->kind != JT_VAR_END)
                perr(P, cur(P)->line, "expected '}}', got %s", tok_desc(P, cur(P)));
            next(P);
            kpush(P, &k, n);
        } else if (t->kind == JT_BLOCK_BEGIN) {
            const jtok *nm = &P->t[P->i + 1];
            bool end = false;
            for (size_t e = 0; ends && ends[e]; e++)
                if (is_name(nm, ends[e])) {
                    *which = ends[e];
                    end = true;
                }
            if (end) {
                P->i += 2;
                break;
            }
            if (nm->kind == JT_NAME &&
                (nm->len >= 3 && memcmp(nm->s, "end", 3) == 0 ? true
                                                              : is_name(nm, "elif") || is_name(nm, "else"))) {
                char msg[160];
                snprintf(msg, sizeof msg, "unexpected '{%% %.*s %%}'%s", (int)nm->len, nm->s,
                         ends ? "" : " (no block is open)");
                perr(P, nm->line, "%s", msg);
            }
            next(P);
            kpush(P, &k, parse_statement(P));
        } else
            perr(P, t->line, "unexpected %s", tok_desc(P, t));
    }
    body->kids = k.v;
    body->n_kids = k.n;
    return body;
}

bool jinja_parse(jarena *a, const jtok *toks, size_t n, jnode **out, char *err) {
    parser P = {.a = a, .t = toks, .n = n, .err = err};
    jmp_buf *saved = a->fail;
    if (setjmp(P.fail)) {
        a->fail = saved;
        return false;
    }
    a->fail = &P.fail;
    *out = parse_body(&P, NULL, NULL);
    a->fail = saved;
    return true;
}
