/* eval.c - the evaluator: walks the AST with scopes (a frame per for-loop iteration and
 * per macro call, as Jinja scopes them), writes the output, and carries the filters,
 * tests, globals and str/dict/list methods chat templates use. Python's semantics where
 * templates can see them: Undefined renders empty and is falsy, but its attributes, its
 * arithmetic and calling it are errors; filters like selectattr return one-shot
 * generators (always truthy, no length); the immutable sandbox refuses list.append and
 * friends and range() longer than 100000. Every error unwinds with longjmp to
 * jinja_render, which reports "line N: message". */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jinja/jinja.h"

typedef struct frame frame;
struct frame {
    frame *parent;
    bool captured; /* a macro or caller closes over it: never reused */
    size_t n, cap;
    const char **names;
    jv *vals;
};

typedef struct ctx {
    jarena *a;
    jbuf out;
    jmp_buf fail;
    char *err;
    frame *root;
    int depth, calls;
    size_t iterations;
    uint64_t work; /* steps taken (see work()) */
    int64_t now;
    int loop_ctl; /* 1 break, 2 continue */
    int line;     /* of the node being evaluated, for messages */
} ctx;

struct jloop {
    size_t index0, length;
    jlist *items;
    int depth;
};

typedef struct args {
    jv *v;
    size_t n;
    const char **kwn;
    jv *kwv;
    size_t nkw;
} args;

typedef jv (*builtin_fn)(ctx *c, jv self, const args *a);

struct jfunc {
    int kind; /* 0 builtin, 1 macro, 2 caller */
    const char *name;
    builtin_fn fn;
    jv self;
    const jnode *node; /* macro: JN_MACRO; caller: JN_CALLBLOCK */
    frame *closure;
};

/* generators: lists returned by filters that return iterators in Python */
#define GEN_FLAG_SIZE ((size_t)1 << (sizeof(size_t) * 8 - 1))

static _Noreturn void fail(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static _Noreturn void fail(ctx *c, const char *fmt, ...) {
    char msg[JINJA_ERR - 32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, JINJA_ERR, "line %d: %s", c->line, msg);
    longjmp(c->fail, 1);
}

/* Charges units of work: an evaluation step, an element visited, 64 bytes scanned, a name
 * compared. The budget bounds the time of any render, whatever the template repeats. */
static void work(ctx *c, uint64_t units) {
    c->work += units;
    if (c->work > JINJA_MAX_WORK)
        fail(c, "template does more than %llu steps of work", (unsigned long long)JINJA_MAX_WORK);
}

/* A list marked as a generator (truthy, no len, no indexing): we keep generator-ness in
 * a side table of one bit per list, stored in the list's tuple field as 2. */
static bool is_gen(jv v) { return v.t == JV_LIST && v.u.l->tuple == 2; }
static jv mark_gen(jv v) {
    v.u.l->tuple = 2;
    return v;
}
static bool is_tuple(jv v) { return v.t == JV_LIST && v.u.l->tuple == 1; }

static _Noreturn void undefined_error(ctx *c, jv v) {
    if (v.u.uname) fail(c, "%s", v.u.uname);
    fail(c, "value is undefined");
}

static jv undef_named(ctx *c, const char *fmt, const char *a, const char *b) {
    char *m = ja_alloc(c->a, strlen(fmt) + strlen(a) + (b ? strlen(b) : 0) + 1);
    sprintf(m, fmt, a, b ? b : "");
    return jv_undef(m);
}

/* ---- scopes ------------------------------------------------------------------------------ */
static frame *frame_new(ctx *c, frame *parent) {
    frame *f = ja_alloc(c->a, sizeof *f);
    f->parent = parent;
    return f;
}

static void frame_set(ctx *c, frame *f, const char *name, jv v) {
    work(c, f->n);
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->names[i], name) == 0) {
            f->vals[i] = v;
            return;
        }
    if (f->n == f->cap) {
        const size_t cap = f->cap ? f->cap * 2 : 2;
        const char **nn = ja_alloc(c->a, cap * sizeof *nn);
        jv *nv = ja_alloc(c->a, cap * sizeof *nv);
        if (f->n) {
            memcpy(nn, f->names, f->n * sizeof *nn);
            memcpy(nv, f->vals, f->n * sizeof *nv);
        }
        f->names = nn;
        f->vals = nv;
        f->cap = cap;
    }
    f->names[f->n] = name;
    f->vals[f->n++] = v;
}

static bool lookup(ctx *c, frame *f, const char *name, jv *out) {
    for (; f; f = f->parent, work(c, 1))
        for (size_t i = f->n; i-- > 0; work(c, 1))
            if (strcmp(f->names[i], name) == 0) {
                *out = f->vals[i];
                return true;
            }
    return false;
}

/* ---- UTF-8 helpers ------------------------------------------------------------------------ */
static size_t u8_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* byte offset of code point index cp (cp <= count) */
static size_t u8_offset(const char *s, size_t n, size_t cp) {
    size_t i = 0, k = 0;
    while (i < n) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (k == cp) return i;
            k++;
        }
        i++;
    }
    return n;
}

static size_t u8_len_at(const char *s, size_t n, size_t i) {
    size_t j = i + 1;
    while (j < n && ((unsigned char)s[j] & 0xC0) == 0x80)
        j++;
    return j - i;
}

/* ---- conversions -------------------------------------------------------------------------- */
static jv to_str(ctx *c, jv v) {
    if (v.t == JV_STR) return v;
    jbuf b = {.a = c->a, .fail = &c->fail, .err = c->err};
    if (is_gen(v))
        jb_puts(&b, "<generator object>");
    else
        jv_write_str(&b, v);
    return jv_str(c->a, b.p ? b.p : "", b.n);
}

static bool is_num(jv v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }
static double as_f(jv v) { return v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : (double)v.u.b; }
static int64_t as_i(jv v) {
    if (v.t == JV_INT) return v.u.i;
    if (v.t == JV_BOOL) return v.u.b;
    if (v.t != JV_FLOAT || !(v.u.f > -9.2e18 && v.u.f < 9.2e18)) return 0; /* never an out-of-range cast */
    return (int64_t)v.u.f;
}
static bool is_intlike(jv v) { return v.t == JV_INT || v.t == JV_BOOL; }

/* The items iteration yields: list items, dict keys, string characters. */
static jlist *iter_items(ctx *c, jv v, bool strict) {
    work(c, v.t == JV_LIST ? v.u.l->n : v.t == JV_DICT ? v.u.d->n : v.t == JV_STR ? v.u.s->len : 0);
    switch (v.t) {
    case JV_LIST: return v.u.l;
    case JV_DICT: {
        jlist *l = jv_list(c->a).u.l;
        for (size_t i = 0; i < v.u.d->n; i++)
            jl_push(c->a, l, v.u.d->k[i]);
        return l;
    }
    case JV_STR: {
        jlist *l = jv_list(c->a).u.l;
        const jstr *s = v.u.s;
        for (size_t i = 0; i < s->len;) {
            const size_t k = u8_len_at(s->s, s->len, i);
            jl_push(c->a, l, jv_str(c->a, s->s + i, k));
            i += k;
        }
        return l;
    }
    case JV_UNDEF: return jv_list(c->a).u.l;
    default:
        if (!strict) return NULL;
        fail(c, "'%s' object is not iterable", jv_type_name(v));
    }
}

static jlist *new_list(ctx *c) { return jv_list(c->a).u.l; }
static jv list_val(jlist *l) { return (jv){.t = JV_LIST, .u.l = l}; }

static int64_t length_of(ctx *c, jv v) {
    switch (v.t) {
    case JV_STR: return (int64_t)u8_count(v.u.s->s, v.u.s->len);
    case JV_LIST:
        if (is_gen(v)) fail(c, "object of type 'generator' has no len()");
        return (int64_t)v.u.l->n;
    case JV_DICT: return (int64_t)v.u.d->n;
    case JV_UNDEF: return 0;
    default: fail(c, "object of type '%s' has no len()", jv_type_name(v));
    }
}

/* ---- attribute and item access --------------------------------------------------------------- */
static jv getattr_v(ctx *c, jv obj, const char *name);

static jv bound(ctx *c, const char *name, builtin_fn fn, jv self) {
    jfunc *f = ja_alloc(c->a, sizeof *f);
    f->kind = 0;
    f->name = name;
    f->fn = fn;
    f->self = self;
    return (jv){.t = JV_FUNC, .u.fn = f};
}

static jv method_of(ctx *c, jv obj, const char *name);

static jv loop_attr(ctx *c, jloop *l, const char *name) {
    const size_t i = l->index0, n = l->length;
    if (!strcmp(name, "index")) return jv_int((int64_t)i + 1);
    if (!strcmp(name, "index0")) return jv_int((int64_t)i);
    if (!strcmp(name, "revindex")) return jv_int((int64_t)(n - i));
    if (!strcmp(name, "revindex0")) return jv_int((int64_t)(n - i - 1));
    if (!strcmp(name, "first")) return jv_bool(i == 0);
    if (!strcmp(name, "last")) return jv_bool(i + 1 == n);
    if (!strcmp(name, "length")) return jv_int((int64_t)n);
    if (!strcmp(name, "depth")) return jv_int(l->depth);
    if (!strcmp(name, "depth0")) return jv_int(l->depth - 1);
    if (!strcmp(name, "previtem")) return i > 0 ? l->items->v[i - 1] : jv_undef("there is no previous item");
    if (!strcmp(name, "nextitem")) return i + 1 < n ? l->items->v[i + 1] : jv_undef("there is no next item");
    jv self = {.t = JV_LOOP, .u.loop = l};
    return method_of(c, self, name);
}

static jv getattr_v(ctx *c, jv obj, const char *name) {
    jv out;
    switch (obj.t) {
    case JV_UNDEF: undefined_error(c, obj);
    case JV_DICT: {
        work(c, obj.u.d->n);
        jv m = method_of(c, obj, name);
        if (m.t != JV_UNDEF) return m;
        if (jd_gets(obj.u.d, name, &out)) return out;
        return undef_named(c, "'dict object' has no attribute '%s'%s", name, NULL);
    }
    case JV_NS:
        work(c, obj.u.d->n);
        if (jd_gets(obj.u.d, name, &out)) return out;
        return undef_named(c, "'Namespace object' has no attribute '%s'%s", name, NULL);
    case JV_LOOP: return loop_attr(c, obj.u.loop, name);
    default: {
        jv m = method_of(c, obj, name);
        if (m.t != JV_UNDEF) return m;
        char tn[32];
        snprintf(tn, sizeof tn, "%s", jv_type_name(obj));
        return undef_named(c, "'%s object' has no attribute '%s'", tn, name);
    }
    }
}

static jv getitem_v(ctx *c, jv obj, jv key) {
    if (obj.t == JV_UNDEF) undefined_error(c, obj);
    jv out;
    if (obj.t == JV_DICT || obj.t == JV_NS) {
        work(c, obj.u.d->n);
        if (jd_get(obj.u.d, key, &out)) return out;
        if (key.t == JV_STR && obj.t == JV_DICT) {
            jv m = method_of(c, obj, key.u.s->s);
            if (m.t != JV_UNDEF) return m;
        }
        if (key.t == JV_STR) return undef_named(c, "'dict object' has no attribute '%s'%s", key.u.s->s, NULL);
        return jv_undef("'dict object' has no such item");
    }
    if ((obj.t == JV_LIST && !is_gen(obj)) || obj.t == JV_STR) {
        if (is_intlike(key)) {
            int64_t i = as_i(key);
            const int64_t n = length_of(c, obj);
            if (i < 0) i += n;
            if (i < 0 || i >= n) return jv_undef("index out of range");
            if (obj.t == JV_LIST) return obj.u.l->v[i];
            const size_t off = u8_offset(obj.u.s->s, obj.u.s->len, (size_t)i);
            return jv_str(c->a, obj.u.s->s + off, u8_len_at(obj.u.s->s, obj.u.s->len, off));
        }
        if (key.t == JV_STR) return getattr_v(c, obj, key.u.s->s);
        return jv_undef("bad index");
    }
    if (key.t == JV_STR) return getattr_v(c, obj, key.u.s->s);
    if (obj.t == JV_LOOP) return jv_undef("loop has no such item");
    return undef_named(c, "'%s object' has no attribute '%s'", jv_type_name(obj), "?");
}

/* i + step, or end when that overflows (a step near INT64_MAX ends the walk) */
static int64_t advance(int64_t i, int64_t step, int64_t end) {
    int64_t r;
    return __builtin_add_overflow(i, step, &r) ? end : r;
}

/* Python slice semantics over n elements */
static void slice_indices(ctx *c, int64_t n, jv start, jv stop, jv step, int64_t *s0, int64_t *s1,
                          int64_t *st) {
    *st = 1;
    if (step.t != JV_NONE && step.t != JV_UNDEF) {
        if (!is_intlike(step)) fail(c, "slice indices must be integers or None");
        *st = as_i(step);
        if (*st == 0) fail(c, "slice step cannot be zero");
    }
    const bool neg = *st < 0;
    const int64_t lo = neg ? -1 : 0, hi = neg ? n - 1 : n;
    if (start.t == JV_NONE || start.t == JV_UNDEF)
        *s0 = neg ? hi : lo;
    else {
        if (!is_intlike(start)) fail(c, "slice indices must be integers or None");
        int64_t v = as_i(start);
        if (v < 0)
            v = v + n < lo ? lo : v + n;
        else if (v > hi)
            v = hi;
        *s0 = v;
    }
    if (stop.t == JV_NONE || stop.t == JV_UNDEF)
        *s1 = neg ? lo : hi;
    else {
        if (!is_intlike(stop)) fail(c, "slice indices must be integers or None");
        int64_t v = as_i(stop);
        if (v < 0)
            v = v + n < lo ? lo : v + n;
        else if (v > hi)
            v = hi;
        *s1 = v;
    }
}

static jv slice_v(ctx *c, jv obj, jv start, jv stop, jv step) {
    if (obj.t == JV_UNDEF) undefined_error(c, obj);
    if (obj.t != JV_LIST && obj.t != JV_STR) fail(c, "'%s' object is not subscriptable", jv_type_name(obj));
    if (is_gen(obj)) return jv_undef("generator is not subscriptable");
    const int64_t n = length_of(c, obj);
    int64_t s0, s1, st;
    slice_indices(c, n, start, stop, step, &s0, &s1, &st);
    if (obj.t == JV_LIST) {
        jlist *l = new_list(c);
        l->tuple = obj.u.l->tuple;
        for (int64_t i = s0; st > 0 ? i < s1 : i > s1; i = advance(i, st, s1))
            jl_push(c->a, l, obj.u.l->v[i]);
        return list_val(l);
    }
    const jstr *s = obj.u.s;
    jbuf b = {.a = c->a, .fail = &c->fail, .err = c->err};
    if (st == 1 && s0 < s1) {
        const size_t o0 = u8_offset(s->s, s->len, (size_t)s0), o1 = u8_offset(s->s, s->len, (size_t)s1);
        return jv_str(c->a, s->s + o0, o1 - o0);
    }
    for (int64_t i = s0; st > 0 ? i < s1 : i > s1; i = advance(i, st, s1)) {
        const size_t o = u8_offset(s->s, s->len, (size_t)i);
        jb_put(&b, s->s + o, u8_len_at(s->s, s->len, o));
    }
    return jv_str(c->a, b.p ? b.p : "", b.n);
}

/* ---- operators ------------------------------------------------------------------------------- */
static int compare(ctx *c, jv a, jv b, const char *op) {
    if (is_num(a) && is_num(b)) {
        if (is_intlike(a) && is_intlike(b)) return as_i(a) < as_i(b) ? -1 : as_i(a) > as_i(b);
        const double x = as_f(a), y = as_f(b);
        return x < y ? -1 : x > y;
    }
    if (a.t == JV_STR && b.t == JV_STR) {
        const size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
        const int r = memcmp(a.u.s->s, b.u.s->s, n);
        if (r) return r < 0 ? -1 : 1;
        return a.u.s->len < b.u.s->len ? -1 : a.u.s->len > b.u.s->len;
    }
    if (a.t == JV_LIST && b.t == JV_LIST && !is_gen(a) && !is_gen(b)) {
        for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
            if (jv_equal(a.u.l->v[i], b.u.l->v[i])) continue;
            return compare(c, a.u.l->v[i], b.u.l->v[i], op);
        }
        return a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n;
    }
    if (a.t == JV_UNDEF) undefined_error(c, a);
    if (b.t == JV_UNDEF) undefined_error(c, b);
    fail(c, "'%s' not supported between instances of '%s' and '%s'", op, jv_type_name(a), jv_type_name(b));
}

/* elements (or 64-byte blocks) a comparison may visit */
static uint64_t shallow_size(jv v) {
    return v.t == JV_LIST ? v.u.l->n : v.t == JV_DICT ? v.u.d->n : v.t == JV_STR ? v.u.s->len / 64 : 0;
}

static bool contains(ctx *c, jv hay, jv needle) {
    switch (hay.t) {
    case JV_STR:
        if (needle.t == JV_UNDEF) undefined_error(c, needle);
        if (needle.t != JV_STR)
            fail(c, "'in <string>' requires string as left operand, not %s", jv_type_name(needle));
        work(c, hay.u.s->len / 64 + 1);
        return memmem(hay.u.s->s, hay.u.s->len, needle.u.s->s, needle.u.s->len) != NULL;
    case JV_LIST:
        work(c, hay.u.l->n);
        for (size_t i = 0; i < hay.u.l->n; i++)
            if (jv_equal(hay.u.l->v[i], needle)) return true;
        return false;
    case JV_DICT: {
        jv o;
        work(c, hay.u.d->n);
        return jd_get(hay.u.d, needle, &o);
    }
    case JV_UNDEF: return false;
    default: fail(c, "argument of type '%s' is not iterable", jv_type_name(hay));
    }
}

static int64_t checked(ctx *c, bool overflow, int64_t v) {
    if (overflow) fail(c, "integer overflow");
    return v;
}

static jv f_escape(ctx *c, jv v, const args *a);

/* Python's str % args for the conversions templates use: %s %r %d %i %f %.Nf %x %% */
static jv percent_format(ctx *c, jv fmt, jv argv) {
    jlist one = {.n = 1, .v = &argv};
    const jlist *args_l = is_tuple(argv) ? argv.u.l : &one;
    size_t next = 0;
    jbuf b = {.a = c->a, .fail = &c->fail, .err = c->err};
    const char *p = fmt.u.s->s, *end = p + fmt.u.s->len;
    while (p < end) {
        if (*p != '%') {
            jb_put(&b, p++, 1);
            continue;
        }
        if (++p >= end) fail(c, "incomplete format");
        if (*p == '%') {
            jb_put(&b, "%", 1);
            p++;
            continue;
        }
        char spec[32] = "%";
        size_t k = 1;
        while (p < end && k < 20 && *p && strchr("-+ #0123456789.", *p))
            spec[k++] = *p++;
        if (p >= end) fail(c, "incomplete format");
        const char conv = *p++;
        if (next >= args_l->n) fail(c, "not enough arguments for format string");
        jv v = args_l->v[next++];
        if (conv == 's' || conv == 'r') {
            jbuf t = {.a = c->a, .fail = &c->fail, .err = c->err};
            if (conv == 'r')
                jv_write_repr(&t, v);
            else
                jv_write_str(&t, v);
            spec[k++] = 's';
            spec[k] = '\0';
            jb_printf(&b, spec, t.p ? t.p : "");
        } else if (conv == 'd' || conv == 'i' || conv == 'x' || conv == 'X' || conv == 'o') {
            if (!is_num(v)) fail(c, "%%%c format: a number is required, not %s", conv, jv_type_name(v));
            spec[k++] = 'l';
            spec[k++] = 'l';
            spec[k++] = conv == 'i' ? 'd' : conv;
            spec[k] = '\0';
            jb_printf(&b, spec, (long long)as_i(v));
        } else if (conv == 'f' || conv == 'F' || conv == 'e' || conv == 'E' || conv == 'g' || conv == 'G') {
            if (!is_num(v)) fail(c, "must be real number, not %s", jv_type_name(v));
            spec[k++] = conv;
            spec[k] = '\0';
            jb_printf(&b, spec, as_f(v));
        } else
            fail(c, "unsupported format character '%c'", conv);
    }
    if (next < args_l->n) fail(c, "not all arguments converted during string formatting");
    return jv_str(c->a, b.p ? b.p : "", b.n);
}

static jv repeat(ctx *c, jv seq, int64_t times) {
    if (times < 0) times = 0;
    if ((seq.t == JV_STR ? seq.u.s->len : seq.u.l->n) == 0)
        return seq.t == JV_STR ? jv_str(c->a, "", 0) : list_val(new_list(c));
    if (seq.t == JV_STR) {
        const size_t n = seq.u.s->len;
        if (n && (uint64_t)times > (JINJA_MAX_MEMORY / n)) fail(c, "string repetition too large");
        jbuf b = {.a = c->a, .fail = &c->fail, .err = c->err};
        for (int64_t i = 0; i < times; i++)
            jb_put(&b, seq.u.s->s, n);
        return jv_str(c->a, b.p ? b.p : "", b.n);
    }
    const size_t n = seq.u.l->n;
    if (n && (uint64_t)times > (JINJA_MAX_MEMORY / 16 / n)) fail(c, "list repetition too large");
    jlist *l = new_list(c);
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < n; k++)
            jl_push(c->a, l, seq.u.l->v[k]);
    return list_val(l);
}

static jv binop(ctx *c, int op, jv a, jv b) {
    if (op == OP_CONCAT) {
        jv x = to_str(c, a), y = to_str(c, b);
        jbuf buf = {.a = c->a, .fail = &c->fail, .err = c->err};
        jb_put(&buf, x.u.s->s, x.u.s->len);
        jb_put(&buf, y.u.s->s, y.u.s->len);
        return jv_str(c->a, buf.p ? buf.p : "", buf.n);
    }
    if (a.t == JV_UNDEF) undefined_error(c, a);
    if (b.t == JV_UNDEF) undefined_error(c, b);
    static const char *const names[] = {"", "+", "-", "*", "/", "//", "%", "**"};
    if (op == OP_ADD) {
        if (a.t == JV_STR && b.t == JV_STR) {
            if (!a.safe && !b.safe) return binop(c, OP_CONCAT, a, b);
            /* Markup + str escapes the str (markupsafe) */
            jv r = binop(c, OP_CONCAT, a.safe ? a : f_escape(c, a, NULL), b.safe ? b : f_escape(c, b, NULL));
            r.safe = 1;
            return r;
        }
        if (a.t == JV_LIST && b.t == JV_LIST && !is_gen(a) && !is_gen(b) && a.u.l->tuple == b.u.l->tuple) {
            jlist *l = new_list(c);
            l->tuple = a.u.l->tuple;
            for (size_t i = 0; i < a.u.l->n; i++)
                jl_push(c->a, l, a.u.l->v[i]);
            for (size_t i = 0; i < b.u.l->n; i++)
                jl_push(c->a, l, b.u.l->v[i]);
            return list_val(l);
        }
    }
    if (op == OP_MUL) {
        if ((a.t == JV_STR || (a.t == JV_LIST && !is_gen(a))) && is_intlike(b)) return repeat(c, a, as_i(b));
        if ((b.t == JV_STR || (b.t == JV_LIST && !is_gen(b))) && is_intlike(a)) return repeat(c, b, as_i(a));
    }
    if (!is_num(a) || !is_num(b)) {
        if (op == OP_MOD && a.t == JV_STR) return percent_format(c, a, b);
        fail(c, "unsupported operand type(s) for %s: '%s' and '%s'", names[op], jv_type_name(a),
             jv_type_name(b));
    }
    const bool ints = is_intlike(a) && is_intlike(b);
    if (ints) {
        const int64_t x = as_i(a), y = as_i(b);
        int64_t r;
        switch (op) {
        case OP_ADD:
            if (__builtin_add_overflow(x, y, &r)) fail(c, "integer overflow");
            return jv_int(r);
        case OP_SUB:
            if (__builtin_sub_overflow(x, y, &r)) fail(c, "integer overflow");
            return jv_int(r);
        case OP_MUL:
            if (__builtin_mul_overflow(x, y, &r)) fail(c, "integer overflow");
            return jv_int(r);
        case OP_FLOORDIV:
        case OP_MOD: {
            if (y == 0) fail(c, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) fail(c, "integer overflow");
            int64_t q = x / y, m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) {
                q--;
                m += y;
            }
            return jv_int(op == OP_FLOORDIV ? q : m);
        }
        case OP_POW:
            if (y >= 0) {
                int64_t acc = 1, base = x, e = y;
                while (e) {
                    if (e & 1) checked(c, __builtin_mul_overflow(acc, base, &acc), 0);
                    e >>= 1;
                    if (e) checked(c, __builtin_mul_overflow(base, base, &base), 0);
                }
                return jv_int(acc);
            }
            break;
        default: break;
        }
    }
    const double x = as_f(a), y = as_f(b);
    switch (op) {
    case OP_ADD: return jv_float(x + y);
    case OP_SUB: return jv_float(x - y);
    case OP_MUL: return jv_float(x * y);
    case OP_DIV:
        if (y == 0) fail(c, "division by zero");
        return jv_float(x / y);
    case OP_FLOORDIV:
        if (y == 0) fail(c, "float floor division by zero");
        return jv_float(floor(x / y));
    case OP_MOD: {
        if (y == 0) fail(c, "float modulo");
        double m = fmod(x, y);
        if (m != 0 && ((m < 0) != (y < 0))) m += y;
        return jv_float(m);
    }
    case OP_POW:
        if (x == 0 && y < 0) fail(c, "0.0 cannot be raised to a negative power");
        return jv_float(pow(x, y));
    default: fail(c, "bad operator");
    }
}

/* ---- calls ----------------------------------------------------------------------------------- */
static jv arg_at(const args *a, size_t pos, const char *name, jv dflt) {
    for (size_t i = 0; i < a->nkw; i++)
        if (strcmp(a->kwn[i], name) == 0) return a->kwv[i];
    if (pos < a->n) return a->v[pos];
    return dflt;
}

static void exec_body(ctx *c, const jnode *body, frame *f);
static jv eval(ctx *c, const jnode *n, frame *f);

static jv call_macro(ctx *c, const jfunc *fn, const args *a, jv caller) {
    const jnode *m = fn->node;
    if (++c->calls > JINJA_MAX_CALL_DEPTH)
        fail(c, "macro calls nested more than %d deep", JINJA_MAX_CALL_DEPTH);
    frame *f = frame_new(c, fn->closure);
    if (a->n > m->n_kw)
        fail(c, "macro '%s' takes not more than %zu argument(s)", m->name ? m->name : "caller", m->n_kw);
    for (size_t i = 0; i < m->n_kw; i++) {
        jv v = jv_undef(NULL);
        bool given = false;
        if (i < a->n) {
            v = a->v[i];
            given = true;
        }
        for (size_t k = 0; k < a->nkw; k++)
            if (strcmp(a->kwn[k], m->kwn[i]) == 0) {
                v = a->kwv[k];
                given = true;
            }
        if (!given) {
            if (m->kwv[i])
                v = eval(c, m->kwv[i], f);
            else
                v = undef_named(c, "parameter '%s' was not provided%s", m->kwn[i], NULL);
        }
        frame_set(c, f, m->kwn[i], v);
    }
    for (size_t k = 0; k < a->nkw; k++) {
        bool known = strcmp(a->kwn[k], "caller") == 0;
        for (size_t i = 0; i < m->n_kw && !known; i++)
            known = strcmp(a->kwn[k], m->kwn[i]) == 0;
        if (!known)
            fail(c, "macro '%s' takes no keyword argument '%s'", m->name ? m->name : "caller", a->kwn[k]);
    }
    if (caller.t != JV_UNDEF) frame_set(c, f, "caller", caller);
    const size_t mark = c->out.n;
    const int saved_ctl = c->loop_ctl;
    exec_body(c, fn->kind == 1 ? m->a : m->b, f);
    c->loop_ctl = saved_ctl;
    jv s = jv_str(c->a, c->out.p ? c->out.p + mark : "", c->out.n - mark);
    c->out.n = mark;
    if (c->out.p) c->out.p[mark] = '\0';
    c->calls--;
    return s;
}

static jv call_value(ctx *c, jv fnv, const args *a) {
    if (fnv.t == JV_UNDEF) undefined_error(c, fnv);
    if (fnv.t != JV_FUNC) fail(c, "'%s' object is not callable", jv_type_name(fnv));
    const jfunc *fn = fnv.u.fn;
    if (fn->kind == 0) return fn->fn(c, fn->self, a);
    return call_macro(c, fn, a, jv_undef(NULL));
}

/* ---- filters ---------------------------------------------------------------------------------- */
typedef jv (*filter_fn)(ctx *c, jv v, const args *a);

static jv str_of(ctx *c, jv v) { return to_str(c, v); }

static void ascii_case(jstr *s, bool upper) {
    for (size_t i = 0; i < s->len; i++)
        s->s[i] = (char)(upper ? toupper((unsigned char)s->s[i]) : tolower((unsigned char)s->s[i]));
}

static jv str_copy(ctx *c, jv v) {
    jv s = str_of(c, v);
    return jv_str(c->a, s.u.s->s, s.u.s->len);
}

static jv f_upper(ctx *c, jv v, const args *a) {
    (void)a;
    jv s = str_copy(c, v);
    ascii_case((jstr *)s.u.s, true);
    return s;
}
static jv f_lower(ctx *c, jv v, const args *a) {
    (void)a;
    jv s = str_copy(c, v);
    ascii_case((jstr *)s.u.s, false);
    return s;
}
static jv f_capitalize(ctx *c, jv v, const args *a) {
    (void)a;
    jv s = str_copy(c, v);
    jstr *p = (jstr *)s.u.s;
    ascii_case(p, false);
    if (p->len) p->s[0] = (char)toupper((unsigned char)p->s[0]);
    return s;
}

static bool is_space(unsigned char ch) {
    return ch == ' ' || (ch >= 9 && ch <= 13) || (ch >= 0x1c && ch <= 0x1f);
}

/* strip with a character set (NULL: whitespace) */
static jv strip_impl(ctx *c, jv v, jv chars, bool left, bool right) {
    jv s = str_of(c, v);
    const char *p = s.u.s->s;
    size_t b = 0, e = s.u.s->len;
    const bool ws = chars.t == JV_NONE || chars.t == JV_UNDEF;
    if (!ws && chars.t != JV_STR) fail(c, "strip arg must be None or str");
#define IN_SET(ch) (ws ? is_space((unsigned char)(ch)) : memchr(chars.u.s->s, (ch), chars.u.s->len) != NULL)
    if (left)
        while (b < e && IN_SET(p[b]))
            b++;
    if (right)
        while (e > b && IN_SET(p[e - 1]))
            e--;
#undef IN_SET
    return jv_str(c->a, p + b, e - b);
}

static jv f_trim(ctx *c, jv v, const args *a) {
    return strip_impl(c, v, arg_at(a, 0, "chars", jv_none()), true, true);
}

static jv replace_impl(ctx *c, jv v, jv old, jv new_, jv count) {
    jv s = str_of(c, v);
    old = str_of(c, old);
    new_ = str_of(c, new_);
    int64_t max = count.t == JV_INT ? count.u.i : -1;
    jbuf b = {.a = c->a, .fail = &c->fail, .err = c->err};
    const char *p = s.u.s->s;
    const size_t n = s.u.s->len, on = old.u.s->len;
    size_t i = 0;
    if (on == 0) { /* Python inserts new between every character */
        for (size_t k = 0; k <= n;) {
            if (max != 0) {
                jb_put(&b, new_.u.s->s, new_.u.s->len);
                if (max > 0) max--;
            }
            if (k == n) break;
            const size_t l = u8_len_at(p, n, k);
            jb_put(&b, p + k, l);
            k += l;
        }
        return jv_str(c->a, b.p ? b.p : "", b.n);
    }
    work(c, n / 64 + 1);
    while (i < n) {
        const char *hit = max != 0 ? memmem(p + i, n - i, old.u.s->s, on) : NULL;
        if (!hit) {
            jb_put(&b, p + i, n - i);
            break;
        }
        jb_put(&b, p + i, (size_t)(hit - (p + i)));
        jb_put(&b, new_.u.s->s, new_.u.s->len);
        i = (size_t)(hit - p) + on;
        if (max > 0) max--;
    }
    return jv_str(c->a, b.p ? b.p : "", b.n);
}

static jv f_replace(ctx *c, jv v, const args *a) {
    return replace_impl(c, v, arg_at(a, 0, "old", jv_cstr(c->a, "")), arg_at(a, 1, "new", jv_cstr(c->a, "")),
                        arg_at(a, 2, "count", jv_none()));
}

static jv f_length(ctx *c, jv v, const args *a) {
    (void)a;
    return jv_int(length_of(c, v));
}

static jv f_default(ctx *c, jv v, const args *a) {
    jv d = arg_at(a, 0, "default_value", jv_cstr(c->a, ""));
    const bool boolean = jv_truthy(arg_at(a, 1, "boolean", jv_bool(false)));
    if (v.t == JV_UNDEF || (boolean && !jv_truthy(v))) return d;
    return v;
}

static jv f_join(ctx *c, jv v, const args *a) {
    jv sep = str_of(c, arg_at(a, 0, "d", jv_cstr(c->a, "")));
    jv attr = arg_at(a, 1, "attribute", jv_none());
    jlist *l = iter_items(c, v, true);
    jbuf b = {.a = c->a, .fail = &c->fail, .err = c->err};
    for (size_t i = 0; i < l->n; i++) {
        if (i) jb_put(&b, sep.u.s->s, sep.u.s->len);
        jv x = l->v[i];
        if (attr.t != JV_NONE) x = getitem_v(c, x, attr);
        jv_write_str(&b, x);
    }
    return jv_str(c->a, b.p ? b.p : "", b.n);
}

static jv f_first(ctx *c, jv v, const args *a) {
    (void)a;
    jlist *l = iter_items(c, v, true);
    return l->n ? l->v[0] : jv_undef("No first item, sequence was empty.");
}

static jv f_last(ctx *c, jv v, const args *a) {
    (void)a;
    if (is_gen(v)) fail(c, "'generator' object is not reversible");
    jlist *l = iter_items(c, v, true);
    return l->n ? l->v[l->n - 1] : jv_undef("No last item, sequence was empty.");
}

static jv tuple2(ctx *c, jv k, jv v) {
    jlist *t = new_list(c);
    t->tuple = 1;
    jl_push(c->a, t, k);
    jl_push(c->a, t, v);
    return list_val(t);
}

static jv f_items(ctx *c, jv v, const args *a) {
    (void)a;
    jlist *l = new_list(c);
    if (v.t == JV_UNDEF) return mark_gen(list_val(l));
    if (v.t != JV_DICT) fail(c, "Can only get item pairs from a mapping.");
    for (size_t i = 0; i < v.u.d->n; i++)
        jl_push(c->a, l, tuple2(c, v.u.d->k[i], v.u.d->v[i]));
    return mark_gen(list_val(l));
}

static jv f_list(ctx *c, jv v, const args *a) {
    (void)a;
    jlist *src = iter_items(c, v, true), *l = new_list(c);
    for (size_t i = 0; i < src->n; i++)
        jl_push(c->a, l, src->v[i]);
    return list_val(l);
}

static jv f_string(ctx *c, jv v, const args *a) {
    (void)a;
    return str_of(c, v);
}

static jv f_safe(ctx *c, jv v, const args *a) {
    (void)a;
    jv s = str_of(c, v);
    s.safe = 1;
    return s;
}

static bool parse_int_text(const char *s, size_t n, int64_t *out) {
    size_t b = 0, e = n;
    while (b < e && is_space((unsigned char)s[b]))
        b++;
    while (e > b && is_space((unsigned char)s[e - 1]))
        e--;
    if (b == e) return false;
    bool neg = false;
    if (s[b] == '+' || s[b] == '-') neg = s[b++] == '-';
    if (b == e) return false;
    int64_t v = 0;
    bool prev_us = true;
    for (size_t i = b; i < e; i++) {
        if (s[i] == '_' && !prev_us) {
            prev_us = true;
            continue;
        }
        if (s[i] < '0' || s[i] > '9') return false;
        prev_us = false;
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, s[i] - '0', &v)) return false;
    }
    if (prev_us) return false;
    *out = neg ? -v : v;
    return true;
}

static bool parse_float_text(const char *s, double *out) {
    char *end;
    while (is_space((unsigned char)*s))
        s++;
    if (!*s) return false;
    const double d = strtod(s, &end);
    while (is_space((unsigned char)*end))
        end++;
    if (*end) return false;
    *out = d;
    return true;
}

static jv f_int(ctx *c, jv v, const args *a) {
    jv d = arg_at(a, 0, "default", jv_int(0));
    if (is_intlike(v)) return jv_int(as_i(v));
    if (v.t == JV_FLOAT) {
        if (!isfinite(v.u.f) || fabs(v.u.f) > 9.2e18) return d;
        return jv_int((int64_t)v.u.f);
    }
    if (v.t == JV_STR) {
        int64_t i;
        double f;
        if (parse_int_text(v.u.s->s, v.u.s->len, &i)) return jv_int(i);
        if (parse_float_text(v.u.s->s, &f) && isfinite(f) && fabs(f) < 9.2e18) return jv_int((int64_t)f);
    }
    return d;
}

static jv f_float(ctx *c, jv v, const args *a) {
    jv d = arg_at(a, 0, "default", jv_float(0.0));
    (void)c;
    if (is_num(v)) return jv_float(as_f(v));
    double f;
    if (v.t == JV_STR && parse_float_text(v.u.s->s, &f)) return jv_float(f);
    return d;
}

static jv f_abs(ctx *c, jv v, const args *a) {
    (void)a;
    if (is_intlike(v)) {
        const int64_t i = as_i(v);
        if (i == INT64_MIN) fail(c, "integer overflow");
        return jv_int(i < 0 ? -i : i);
    }
    if (v.t == JV_FLOAT) return jv_float(fabs(v.u.f));
    fail(c, "bad operand type for abs(): '%s'", jv_type_name(v));
}

static jv f_round(ctx *c, jv v, const args *a) {
    const int64_t prec = as_i(arg_at(a, 0, "precision", jv_int(0)));
    jv method = arg_at(a, 1, "method", jv_cstr(c->a, "common"));
    if (!is_num(v)) fail(c, "type %s doesn't define __round__ method", jv_type_name(v));
    const double x = as_f(v), m = pow(10.0, (double)prec);
    const char *md = method.t == JV_STR ? method.u.s->s : "";
    if (!strcmp(md, "ceil")) return jv_float(ceil(x * m) / m);
    if (!strcmp(md, "floor")) return jv_float(floor(x * m) / m);
    if (strcmp(md, "common")) fail(c, "method must be common, ceil or floor");
    if (is_intlike(v) && prec >= 0) return jv_int(as_i(v)); /* round(int) stays int */
    /* Python's round(): half to even on the decimal value */
    char buf[64];
    snprintf(buf, sizeof buf, "%.*f", prec > 0 ? (int)(prec > 30 ? 30 : prec) : 0, prec >= 0 ? x : x * m);
    double r = strtod(buf, NULL);
    if (prec < 0) r /= m;
    return jv_float(r);
}

/* indent(width=4, first=False, blank=False) */
static jv f_indent(ctx *c, jv v, const args *a) {
    jv w = arg_at(a, 0, "width", jv_int(4));
    const bool first = jv_truthy(arg_at(a, 1, "first", jv_bool(false)));
    const bool blank = jv_truthy(arg_at(a, 2, "blank", jv_bool(false)));
    jbuf ind = {.a = c->a, .fail = &c->fail, .err = c->err};
    if (w.t == JV_STR)
        jb_put(&ind, w.u.s->s, w.u.s->len);
    else {
        const int64_t k = as_i(w);
        if (k > 4096) fail(c, "indent width too large");
        for (int64_t i = 0; i < k; i++)
            jb_put(&ind, " ", 1);
    }
    jv s = str_of(c, v);
    /* split into lines as str.splitlines() on s + "\n" */
    jbuf out = {.a = c->a, .fail = &c->fail, .err = c->err};
    const char *p = s.u.s->s;
    const size_t n = s.u.s->len;
    size_t i = 0, line = 0;
    if (first) jb_put(&out, ind.p, ind.n);
    while (i <= n) {
        size_t e = i;
        while (e < n && p[e] != '\n' && p[e] != '\r' && p[e] != '\v' && p[e] != '\f' &&
               !(p[e] >= 0x1c && p[e] <= 0x1e))
            e++;
        if (e >= n && i == n && line > 0) break; /* the added "\n" ends the last line */
        if (line > 0) {
            jb_put(&out, "\n", 1);
            if (blank || e > i) jb_put(&out, ind.p, ind.n);
        }
        jb_put(&out, p + i, e - i);
        line++;
        if (e >= n) break;
        i = e + ((p[e] == '\r' && e + 1 < n && p[e + 1] == '\n') ? 2 : 1);
    }
    return jv_str(c->a, out.p ? out.p : "", out.n);
}

static jv f_title(ctx *c, jv v, const args *a) {
    (void)a;
    jv s = str_copy(c, v);
    jstr *p = (jstr *)s.u.s;
    bool start = true;
    for (size_t i = 0; i < p->len; i++) {
        const char ch = p->s[i];
        if (ch == '-' || is_space((unsigned char)ch) || ch == '(' || ch == '{' || ch == '[' || ch == '<') {
            start = true;
            continue;
        }
        p->s[i] = (char)(start ? toupper((unsigned char)ch) : tolower((unsigned char)ch));
        start = false;
    }
    return s;
}

/* Jinja's make_attrgetter: "a.0.b" looked up part by part (items, then attributes);
 * dflt (when defined) replaces an undefined part. */
static jv attr_path_d(ctx *c, jv v, jv attr, jv dflt) {
    if (attr.t == JV_INT) {
        v = getitem_v(c, v, attr);
        return v.t == JV_UNDEF && dflt.t != JV_UNDEF ? dflt : v;
    }
    jv s = str_of(c, attr);
    const char *p = s.u.s->s;
    for (;;) {
        const char *dot = strchr(p, '.');
        const size_t n = dot ? (size_t)(dot - p) : strlen(p);
        jv key = jv_str(c->a, p, n);
        int64_t idx;
        if (parse_int_text(p, n, &idx)) key = jv_int(idx);
        v = getitem_v(c, v, key);
        if (v.t == JV_UNDEF && dflt.t != JV_UNDEF) v = dflt;
        if (!dot) return v;
        p = dot + 1;
    }
}

static jv attr_path(ctx *c, jv v, jv attr) { return attr_path_d(c, v, attr, jv_undef(NULL)); }

static bool run_test(ctx *c, const char *name, jv v, const args *a, bool *known);

static jv select_impl(ctx *c, jv v, const args *a, bool attr_mode, bool want) {
    if (!jv_truthy(v)) return mark_gen(list_val(new_list(c))); /* Jinja: `if value:` first */
    jlist *src = iter_items(c, v, true), *l = new_list(c);
    const size_t skip = attr_mode ? 1 : 0;
    if (attr_mode && a->n < 1) fail(c, "selectattr needs an attribute name");
    const char *test = a->n > skip ? NULL : NULL;
    jv testv = a->n > skip ? a->v[skip] : jv_undef(NULL);
    if (testv.t != JV_UNDEF && testv.t != JV_STR) fail(c, "test name must be a string");
    test = testv.t == JV_STR ? testv.u.s->s : NULL;
    args rest = {a->n > skip + 1 ? a->v + skip + 1 : NULL, a->n > skip + 1 ? a->n - skip - 1 : 0, a->kwn,
                 a->kwv, a->nkw};
    for (size_t i = 0; i < src->n; i++) {
        jv x = attr_mode ? attr_path(c, src->v[i], a->v[0]) : src->v[i];
        bool ok;
        if (test) {
            bool known;
            ok = run_test(c, test, x, &rest, &known);
            if (!known) fail(c, "no test named '%s'", test);
        } else
            ok = jv_truthy(x);
        if (ok == want) jl_push(c->a, l, src->v[i]);
    }
    return mark_gen(list_val(l));
}

static jv f_select(ctx *c, jv v, const args *a) { return select_impl(c, v, a, false, true); }
static jv f_reject(ctx *c, jv v, const args *a) { return select_impl(c, v, a, false, false); }
static jv f_selectattr(ctx *c, jv v, const args *a) { return select_impl(c, v, a, true, true); }
static jv f_rejectattr(ctx *c, jv v, const args *a) { return select_impl(c, v, a, true, false); }

static jv apply_filter(ctx *c, const char *name, jv v, const args *a);

static jv f_map(ctx *c, jv v, const args *a) {
    if (!jv_truthy(v)) return mark_gen(list_val(new_list(c)));
    jlist *src = iter_items(c, v, true), *l = new_list(c);
    jv attr = arg_at(a, 99, "attribute", jv_undef(NULL));
    if (attr.t != JV_UNDEF) {
        jv dflt = arg_at(a, 99, "default", jv_undef(NULL));
        if (dflt.t == JV_NONE) dflt = jv_undef(NULL); /* Jinja: default=None means none */
        for (size_t i = 0; i < src->n; i++)
            jl_push(c->a, l, attr_path_d(c, src->v[i], attr, dflt));
        return mark_gen(list_val(l));
    }
    if (a->n < 1 || a->v[0].t != JV_STR) fail(c, "map needs a filter name or attribute=");
    args rest = {a->v + 1, a->n - 1, a->kwn, a->kwv, a->nkw};
    for (size_t i = 0; i < src->n; i++)
        jl_push(c->a, l, apply_filter(c, a->v[0].u.s->s, src->v[i], &rest));
    return mark_gen(list_val(l));
}

static jv f_unique(ctx *c, jv v, const args *a) {
    (void)a;
    jlist *src = iter_items(c, v, true), *l = new_list(c);
    for (size_t i = 0; i < src->n; i++) {
        jv x = src->v[i];
        bool seen = false;
        work(c, l->n);
        for (size_t k = 0; k < l->n && !seen; k++) {
            jv y = l->v[k];
            if (x.t == JV_STR && y.t == JV_STR && x.u.s->len == y.u.s->len) {
                seen = true;
                for (size_t m = 0; m < x.u.s->len && seen; m++)
                    seen = tolower((unsigned char)x.u.s->s[m]) == tolower((unsigned char)y.u.s->s[m]);
            } else
                seen = jv_equal(x, y);
        }
        if (!seen) jl_push(c->a, l, x);
    }
    return mark_gen(list_val(l));
}

static jv f_reverse(ctx *c, jv v, const args *a) {
    (void)a;
    if (v.t == JV_STR) return slice_v(c, v, jv_none(), jv_none(), jv_int(-1));
    jlist *src = iter_items(c, v, true), *l = new_list(c);
    for (size_t i = src->n; i-- > 0;)
        jl_push(c->a, l, src->v[i]);
    return v.t == JV_LIST && !is_gen(v) ? mark_gen(list_val(l)) : list_val(l);
}

typedef struct sort_ctx {
    ctx *c;
    bool cs;
    jv attr;
} sort_ctx;

static jv sort_key(const sort_ctx *s, jv x) {
    if (s->attr.t != JV_UNDEF && s->attr.t != JV_NONE) x = attr_path(s->c, x, s->attr);
    if (!s->cs && x.t == JV_STR) {
        jv y = jv_str(s->c->a, x.u.s->s, x.u.s->len);
        ascii_case((jstr *)y.u.s, false);
        return y;
    }
    return x;
}

/* Stable merge sort (Python's sort is stable) of v by precomputed keys: O(n log n). */
static void stable_sort(const sort_ctx *s, jv *v, size_t n, bool rev) {
    ctx *c = s->c;
    uint64_t lg = 1;
    for (size_t m = n; m > 1; m >>= 1)
        lg++;
    work(c, (uint64_t)n * lg);
    jv *keys = ja_alloc(c->a, (n + 1) * sizeof *keys), *tk = ja_alloc(c->a, (n + 1) * sizeof *tk);
    jv *tv = ja_alloc(c->a, (n + 1) * sizeof *tv);
    for (size_t i = 0; i < n; i++)
        keys[i] = sort_key(s, v[i]);
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            const size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                const int r = compare(c, keys[j], keys[i], "<");
                /* take from the right only when strictly before (after, reversed): stable */
                if (rev ? r > 0 : r < 0)
                    tk[k] = keys[j], tv[k++] = v[j++];
                else
                    tk[k] = keys[i], tv[k++] = v[i++];
            }
            while (i < mid)
                tk[k] = keys[i], tv[k++] = v[i++];
            while (j < hi)
                tk[k] = keys[j], tv[k++] = v[j++];
        }
        memcpy(keys, tk, n * sizeof *keys);
        memcpy(v, tv, n * sizeof *v);
    }
}

static jv f_sort(ctx *c, jv v, const args *a) {
    const bool rev = jv_truthy(arg_at(a, 0, "reverse", jv_bool(false)));
    sort_ctx s = {c, jv_truthy(arg_at(a, 1, "case_sensitive", jv_bool(false))),
                  arg_at(a, 2, "attribute", jv_undef(NULL))};
    jv l = f_list(c, v, a);
    stable_sort(&s, l.u.l->v, l.u.l->n, rev);
    return l;
}

static jv f_dictsort(ctx *c, jv v, const args *a) {
    if (v.t != JV_DICT) fail(c, "dictsort needs a mapping");
    const bool cs = jv_truthy(arg_at(a, 0, "case_sensitive", jv_bool(false)));
    jv by = arg_at(a, 1, "by", jv_cstr(c->a, "key"));
    const bool rev = jv_truthy(arg_at(a, 2, "reverse", jv_bool(false)));
    jlist *l = new_list(c);
    for (size_t i = 0; i < v.u.d->n; i++)
        jl_push(c->a, l, tuple2(c, v.u.d->k[i], v.u.d->v[i]));
    sort_ctx s = {c, cs, jv_int(by.t == JV_STR && !strcmp(by.u.s->s, "value") ? 1 : 0)};
    stable_sort(&s, l->v, l->n, rev);
    return list_val(l);
}

static jv f_tojson(ctx *c, jv v, const args *a) {
    const bool ensure_ascii = jv_truthy(arg_at(a, 0, "ensure_ascii", jv_bool(false)));
    jv ind = arg_at(a, 1, "indent", jv_none());
    jv seps = arg_at(a, 2, "separators", jv_none());
    const bool sort_keys = jv_truthy(arg_at(a, 3, "sort_keys", jv_bool(false)));
    int indent = -1;
    if (is_intlike(ind))
        indent = (int)(as_i(ind) < 0 ? 0 : as_i(ind) > 64 ? 64 : as_i(ind));
    else if (ind.t != JV_NONE)
        fail(c, "unsupported construct: tojson indent of type %s", jv_type_name(ind));
    const char *item_sep = indent >= 0 ? "," : ", ", *key_sep = ": ";
    if (seps.t == JV_LIST && seps.u.l->n == 2 && seps.u.l->v[0].t == JV_STR && seps.u.l->v[1].t == JV_STR) {
        item_sep = seps.u.l->v[0].u.s->s;
        key_sep = seps.u.l->v[1].u.s->s;
    } else if (seps.t != JV_NONE)
        fail(c, "tojson separators must be a pair of strings");
    jbuf b = {.a = c->a, .fail = &c->fail, .err = c->err};
    char err[JINJA_ERR];
    if (!jv_to_json(&b, v, ensure_ascii, indent, item_sep, key_sep, sort_keys, err)) fail(c, "%s", err);
    return jv_str(c->a, b.p ? b.p : "", b.n);
}

static jv f_count(ctx *c, jv v, const args *a) { return f_length(c, v, a); }

static jv f_sum(ctx *c, jv v, const args *a) {
    jv attr = arg_at(a, 0, "attribute", jv_undef(NULL));
    jv acc = arg_at(a, 1, "start", jv_int(0));
    jlist *l = iter_items(c, v, true);
    for (size_t i = 0; i < l->n; i++)
        acc = binop(c, OP_ADD, acc, attr.t != JV_UNDEF ? attr_path(c, l->v[i], attr) : l->v[i]);
    return acc;
}

static jv minmax(ctx *c, jv v, const args *a, bool max) {
    jlist *l = iter_items(c, v, true);
    sort_ctx s = {c, jv_truthy(arg_at(a, 0, "case_sensitive", jv_bool(false))),
                  arg_at(a, 1, "attribute", jv_undef(NULL))};
    if (!l->n) return jv_undef("No aggregated item, sequence was empty.");
    jv best = l->v[0];
    for (size_t i = 1; i < l->n; i++) {
        const int r = compare(c, sort_key(&s, l->v[i]), sort_key(&s, best), "<");
        if (max ? r > 0 : r < 0) best = l->v[i];
    }
    return best;
}
static jv f_max(ctx *c, jv v, const args *a) { return minmax(c, v, a, true); }
static jv f_min(ctx *c, jv v, const args *a) { return minmax(c, v, a, false); }

static jv f_escape(ctx *c, jv v, const args *a) {
    (void)a;
    if (v.t == JV_STR && v.safe) return v;
    jv s = str_of(c, v);
    jbuf b = {.a = c->a, .fail = &c->fail, .err = c->err};
    for (size_t i = 0; i < s.u.s->len; i++) {
        const char ch = s.u.s->s[i];
        if (ch == '&')
            jb_puts(&b, "&amp;");
        else if (ch == '<')
            jb_puts(&b, "&lt;");
        else if (ch == '>')
            jb_puts(&b, "&gt;");
        else if (ch == '"')
            jb_puts(&b, "&#34;");
        else if (ch == '\'')
            jb_puts(&b, "&#39;");
        else
            jb_put(&b, &ch, 1);
    }
    jv r = jv_str(c->a, b.p ? b.p : "", b.n);
    r.safe = 1;
    return r;
}

static jv f_format(ctx *c, jv v, const args *a) {
    if (a->nkw) fail(c, "unsupported construct: format filter with keyword arguments");
    jlist *t = new_list(c);
    t->tuple = 1;
    for (size_t i = 0; i < a->n; i++)
        jl_push(c->a, t, a->v[i]);
    return percent_format(c, str_of(c, v), list_val(t));
}

static jv f_wordcount(ctx *c, jv v, const args *a) {
    (void)a;
    jv s = str_of(c, v);
    int64_t k = 0;
    bool in = false;
    for (size_t i = 0; i < s.u.s->len; i++) {
        const unsigned char ch = (unsigned char)s.u.s->s[i];
        const bool w = isalnum(ch) || ch == '_' || ch >= 0x80;
        if (w && !in) k++;
        in = w;
    }
    return jv_int(k);
}

static jv f_batch(ctx *c, jv v, const args *a) {
    const int64_t size = as_i(arg_at(a, 0, "linecount", jv_int(1)));
    jv fill = arg_at(a, 1, "fill_with", jv_none());
    if (size <= 0) fail(c, "batch size must be positive");
    jlist *src = iter_items(c, v, true), *l = new_list(c), *cur = NULL;
    for (size_t i = 0; i < src->n; i++) {
        if (!cur || (int64_t)cur->n == size) {
            cur = new_list(c);
            jl_push(c->a, l, list_val(cur));
        }
        jl_push(c->a, cur, src->v[i]);
    }
    if (cur && fill.t != JV_NONE)
        while ((int64_t)cur->n < size)
            jl_push(c->a, cur, fill);
    return mark_gen(list_val(l));
}

static jv f_center(ctx *c, jv v, const args *a) {
    const int64_t w = as_i(arg_at(a, 0, "width", jv_int(80)));
    jv s = str_of(c, v);
    const int64_t n = (int64_t)u8_count(s.u.s->s, s.u.s->len);
    if (w <= n) return s;
    if (w > 4096) fail(c, "center width too large");
    const int64_t pad = w - n, left = pad / 2 + (pad & w & 1);
    jbuf b = {.a = c->a, .fail = &c->fail, .err = c->err};
    for (int64_t i = 0; i < left; i++)
        jb_put(&b, " ", 1);
    jb_put(&b, s.u.s->s, s.u.s->len);
    for (int64_t i = 0; i < pad - left; i++)
        jb_put(&b, " ", 1);
    return jv_str(c->a, b.p, b.n);
}

static const struct {
    const char *name;
    filter_fn fn;
} filters[] = {
    {"abs", f_abs},
    {"batch", f_batch},
    {"capitalize", f_capitalize},
    {"center", f_center},
    {"count", f_count},
    {"d", f_default},
    {"default", f_default},
    {"dictsort", f_dictsort},
    {"e", f_escape},
    {"escape", f_escape},
    {"first", f_first},
    {"float", f_float},
    {"format", f_format},
    {"indent", f_indent},
    {"int", f_int},
    {"items", f_items},
    {"join", f_join},
    {"last", f_last},
    {"length", f_length},
    {"list", f_list},
    {"lower", f_lower},
    {"map", f_map},
    {"max", f_max},
    {"min", f_min},
    {"reject", f_reject},
    {"rejectattr", f_rejectattr},
    {"replace", f_replace},
    {"reverse", f_reverse},
    {"round", f_round},
    {"safe", f_safe},
    {"select", f_select},
    {"selectattr", f_selectattr},
    {"sort", f_sort},
    {"string", f_string},
    {"sum", f_sum},
    {"title", f_title},
    {"tojson", f_tojson},
    {"trim", f_trim},
    {"unique", f_unique},
    {"upper", f_upper},
    {"wordcount", f_wordcount},
};

static filter_fn find_filter(const char *name) {
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++)
        if (!strcmp(filters[i].name, name)) return filters[i].fn;
    return NULL;
}

static jv apply_filter(ctx *c, const char *name, jv v, const args *a) {
    filter_fn fn = find_filter(name);
    if (!fn) fail(c, "no filter named '%s'", name);
    return fn(c, v, a);
}

/* ---- tests ------------------------------------------------------------------------------------ */
static const char *const test_names[] = {
    "boolean",     "callable", "defined", "divisibleby", "eq",   "equalto",   "==",     "escaped",
    "even",        "false",    "filter",  "float",       "ge",   ">=",        "gt",     ">",
    "greaterthan", "in",       "integer", "iterable",    "le",   "<=",        "lower",  "lt",
    "<",           "lessthan", "mapping", "ne",          "!=",   "none",      "number", "odd",
    "sameas",      "sequence", "string",  "test",        "true", "undefined", "upper",  NULL};

static bool run_test(ctx *c, const char *name, jv v, const args *a, bool *known) {
    *known = true;
    jv x = a->n ? a->v[0] : jv_undef(NULL);
    if (!strcmp(name, "defined")) return v.t != JV_UNDEF;
    if (!strcmp(name, "undefined")) return v.t == JV_UNDEF;
    if (!strcmp(name, "none")) return v.t == JV_NONE;
    if (!strcmp(name, "boolean")) return v.t == JV_BOOL;
    if (!strcmp(name, "true")) return v.t == JV_BOOL && v.u.b;
    if (!strcmp(name, "false")) return v.t == JV_BOOL && !v.u.b;
    if (!strcmp(name, "string")) return v.t == JV_STR;
    if (!strcmp(name, "number")) return is_num(v);
    if (!strcmp(name, "integer")) return v.t == JV_INT;
    if (!strcmp(name, "float")) return v.t == JV_FLOAT;
    if (!strcmp(name, "mapping")) return v.t == JV_DICT;
    if (!strcmp(name, "iterable"))
        return v.t == JV_LIST || v.t == JV_DICT || v.t == JV_STR || v.t == JV_UNDEF;
    if (!strcmp(name, "sequence"))
        return (v.t == JV_LIST && !is_gen(v)) || v.t == JV_DICT || v.t == JV_STR || v.t == JV_UNDEF;
    if (!strcmp(name, "callable")) return v.t == JV_FUNC;
    if (!strcmp(name, "escaped")) return false;
    if (!strcmp(name, "sameas")) {
        if (v.t != x.t) return false;
        if (v.t == JV_NONE || v.t == JV_UNDEF) return true;
        if (v.t == JV_BOOL) return v.u.b == x.u.b;
        if (v.t == JV_LIST) return v.u.l == x.u.l;
        if (v.t == JV_DICT || v.t == JV_NS) return v.u.d == x.u.d;
        return jv_equal(v, x);
    }
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (v.t != JV_STR) return false;
        bool cased = false;
        for (size_t i = 0; i < v.u.s->len; i++) {
            const unsigned char ch = (unsigned char)v.u.s->s[i];
            if (isalpha(ch)) {
                cased = true;
                if (name[0] == 'l' ? isupper(ch) : islower(ch)) return false;
            }
        }
        return cased;
    }
    if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==")) return jv_equal(v, x);
    if (!strcmp(name, "ne") || !strcmp(name, "!=")) return !jv_equal(v, x);
    if (!strcmp(name, "lt") || !strcmp(name, "<") || !strcmp(name, "lessthan"))
        return compare(c, v, x, "<") < 0;
    if (!strcmp(name, "le") || !strcmp(name, "<=")) return compare(c, v, x, "<=") <= 0;
    if (!strcmp(name, "gt") || !strcmp(name, ">") || !strcmp(name, "greaterthan"))
        return compare(c, v, x, ">") > 0;
    if (!strcmp(name, "ge") || !strcmp(name, ">=")) return compare(c, v, x, ">=") >= 0;
    if (!strcmp(name, "in")) return contains(c, x, v);
    if (!strcmp(name, "odd") || !strcmp(name, "even")) {
        if (v.t == JV_UNDEF) undefined_error(c, v);
        if (!is_intlike(v)) fail(c, "odd/even need an integer");
        const bool odd = (as_i(v) % 2) != 0;
        return name[0] == 'o' ? odd : !odd;
    }
    if (!strcmp(name, "divisibleby")) {
        binop(c, OP_MOD, v, x);
        return jv_equal(binop(c, OP_MOD, v, x), jv_int(0));
    }
    if (!strcmp(name, "filter")) return v.t == JV_STR && find_filter(v.u.s->s);
    if (!strcmp(name, "test")) {
        if (v.t != JV_STR) return false;
        for (size_t i = 0; test_names[i]; i++)
            if (!strcmp(test_names[i], v.u.s->s)) return true;
        return false;
    }
    *known = false;
    return false;
}

/* ---- methods of str, dict, list, loop ---------------------------------------------------------- */
static jv m_startswith(ctx *c, jv self, const args *a);

static bool str_has_at(jv s, jv p, size_t at) {
    return p.t == JV_STR && at + p.u.s->len <= s.u.s->len && memcmp(s.u.s->s + at, p.u.s->s, p.u.s->len) == 0;
}

static jv affix(ctx *c, jv self, const args *a, bool start) {
    if (a->n < 1) fail(c, "%s takes at least 1 argument", start ? "startswith" : "endswith");
    jv p = a->v[0];
    jlist one = {.n = 1, .v = &p};
    jlist *opts = p.t == JV_LIST && p.u.l->tuple == 1 ? p.u.l : &one;
    for (size_t i = 0; i < opts->n; i++) {
        jv o = opts->v[i];
        if (o.t != JV_STR)
            fail(c, "%s first arg must be str or a tuple of str, not %s", start ? "startswith" : "endswith",
                 jv_type_name(o));
        const size_t n = self.u.s->len, k = o.u.s->len;
        if (k <= n && str_has_at(self, o, start ? 0 : n - k)) return jv_bool(true);
    }
    return jv_bool(false);
}
static jv m_startswith(ctx *c, jv self, const args *a) { return affix(c, self, a, true); }
static jv m_endswith(ctx *c, jv self, const args *a) { return affix(c, self, a, false); }
static jv m_strip(ctx *c, jv self, const args *a) {
    return strip_impl(c, self, arg_at(a, 0, "chars", jv_none()), true, true);
}
static jv m_lstrip(ctx *c, jv self, const args *a) {
    return strip_impl(c, self, arg_at(a, 0, "chars", jv_none()), true, false);
}
static jv m_rstrip(ctx *c, jv self, const args *a) {
    return strip_impl(c, self, arg_at(a, 0, "chars", jv_none()), false, true);
}
static jv m_upper(ctx *c, jv self, const args *a) { return f_upper(c, self, a); }
static jv m_lower(ctx *c, jv self, const args *a) { return f_lower(c, self, a); }
static jv m_capitalize(ctx *c, jv self, const args *a) { return f_capitalize(c, self, a); }

static jv m_title(ctx *c, jv self, const args *a) {
    (void)a;
    jv s = str_copy(c, self);
    jstr *p = (jstr *)s.u.s;
    bool prev = false;
    for (size_t i = 0; i < p->len; i++) {
        const unsigned char ch = (unsigned char)p->s[i];
        if (isalpha(ch)) {
            p->s[i] = (char)(prev ? tolower(ch) : toupper(ch));
            prev = true;
        } else
            prev = ch >= 0x80 ? prev || ch >= 0xC0 : false;
    }
    return s;
}

static jv m_replace(ctx *c, jv self, const args *a) {
    if (a->n < 2) fail(c, "replace expected at least 2 arguments");
    if (a->v[0].t != JV_STR || a->v[1].t != JV_STR) fail(c, "replace arguments must be str");
    return replace_impl(c, self, a->v[0], a->v[1], a->n > 2 ? a->v[2] : jv_none());
}

/* the cost of comparing a k-byte pattern at every position of n bytes */
static void work_scan(ctx *c, size_t n, size_t k) {
    const double cost = ((double)(n >= k ? n - k + 1 : 0) * (double)(k ? k : 1)) / 64.0 + 1.0;
    work(c, cost > 1e18 ? (uint64_t)1e18 : (uint64_t)cost);
}

static jv split_impl(ctx *c, jv self, const args *a, bool right) {
    jv sep = arg_at(a, 0, "sep", jv_none());
    int64_t max = as_i(arg_at(a, 1, "maxsplit", jv_int(-1)));
    const char *p = self.u.s->s;
    const size_t n = self.u.s->len;
    jlist *l = new_list(c);
    if (sep.t == JV_NONE) {
        /* whitespace runs; right: from the end */
        if (!right) {
            size_t i = 0;
            while (i < n) {
                while (i < n && is_space((unsigned char)p[i]))
                    i++;
                if (i >= n) break;
                if (max == 0) {
                    size_t e = n;
                    while (e > i && is_space((unsigned char)p[e - 1]))
                        e--;
                    jl_push(c->a, l, jv_str(c->a, p + i, e - i));
                    break;
                }
                size_t e = i;
                while (e < n && !is_space((unsigned char)p[e]))
                    e++;
                jl_push(c->a, l, jv_str(c->a, p + i, e - i));
                if (max > 0) max--;
                i = e;
            }
            return list_val(l);
        }
        jlist *rev = new_list(c);
        size_t e = n;
        while (e > 0) {
            while (e > 0 && is_space((unsigned char)p[e - 1]))
                e--;
            if (e == 0) break;
            if (max == 0) {
                size_t b = 0;
                while (b < e && is_space((unsigned char)p[b]))
                    b++;
                jl_push(c->a, rev, jv_str(c->a, p + b, e - b));
                break;
            }
            size_t b = e;
            while (b > 0 && !is_space((unsigned char)p[b - 1]))
                b--;
            jl_push(c->a, rev, jv_str(c->a, p + b, e - b));
            if (max > 0) max--;
            e = b;
        }
        for (size_t i = rev->n; i-- > 0;)
            jl_push(c->a, l, rev->v[i]);
        return list_val(l);
    }
    if (sep.t != JV_STR) fail(c, "must be str or None, not %s", jv_type_name(sep));
    const size_t k = sep.u.s->len;
    if (k == 0) fail(c, "empty separator");
    if (!right) {
        work(c, n / 64 + 1);
        size_t start = 0;
        for (const char *hit; max != 0 && (hit = memmem(p + start, n - start, sep.u.s->s, k));) {
            jl_push(c->a, l, jv_str(c->a, p + start, (size_t)(hit - (p + start))));
            start = (size_t)(hit - p) + k;
            if (max > 0) max--;
        }
        jl_push(c->a, l, jv_str(c->a, p + start, n - start));
        return list_val(l);
    }
    work_scan(c, n, k); /* the right-to-left scan compares at every position */
    jlist *rev = new_list(c);
    size_t end = n, i = n;
    while (i >= k) {
        if (max != 0 && memcmp(p + i - k, sep.u.s->s, k) == 0) {
            jl_push(c->a, rev, jv_str(c->a, p + i, end - i));
            i -= k;
            end = i;
            if (max > 0) max--;
        } else
            i--;
    }
    jl_push(c->a, rev, jv_str(c->a, p, end));
    for (size_t j = rev->n; j-- > 0;)
        jl_push(c->a, l, rev->v[j]);
    return list_val(l);
}
static jv m_split(ctx *c, jv self, const args *a) { return split_impl(c, self, a, false); }
static jv m_rsplit(ctx *c, jv self, const args *a) { return split_impl(c, self, a, true); }

static jv m_splitlines(ctx *c, jv self, const args *a) {
    const bool keep = jv_truthy(arg_at(a, 0, "keepends", jv_bool(false)));
    const char *p = self.u.s->s;
    const size_t n = self.u.s->len;
    jlist *l = new_list(c);
    size_t i = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && p[e] != '\n' && p[e] != '\r' && p[e] != '\v' && p[e] != '\f' &&
               !(p[e] >= 0x1c && p[e] <= 0x1e))
            e++;
        size_t next = e < n ? e + ((p[e] == '\r' && e + 1 < n && p[e + 1] == '\n') ? 2 : 1) : n;
        jl_push(c->a, l, jv_str(c->a, p + i, (keep ? next : e) - i));
        i = next;
    }
    return list_val(l);
}

static int64_t find_impl(ctx *c, jv self, const args *a, bool right) {
    if (a->n < 1 || a->v[0].t != JV_STR) fail(c, "find needs a string");
    jv sub = a->v[0];
    const size_t n = self.u.s->len, k = sub.u.s->len;
    int64_t res = -1;
    if (!right) {
        work(c, n / 64 + 1);
        const char *hit = memmem(self.u.s->s, n, sub.u.s->s, k);
        return hit ? (int64_t)u8_count(self.u.s->s, (size_t)(hit - self.u.s->s)) : -1;
    }
    work_scan(c, n, k);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(self.u.s->s + i, sub.u.s->s, k) == 0) {
            res = (int64_t)i;
            if (!right) break;
        }
    if (res < 0) return -1;
    return (int64_t)u8_count(self.u.s->s, (size_t)res);
}
static jv m_find(ctx *c, jv self, const args *a) { return jv_int(find_impl(c, self, a, false)); }
static jv m_rfind(ctx *c, jv self, const args *a) { return jv_int(find_impl(c, self, a, true)); }

static jv m_count_str(ctx *c, jv self, const args *a) {
    if (a->n < 1 || a->v[0].t != JV_STR) fail(c, "count needs a string");
    const size_t n = self.u.s->len, k = a->v[0].u.s->len;
    if (k == 0) return jv_int((int64_t)u8_count(self.u.s->s, n) + 1);
    int64_t cnt = 0;
    work(c, n / 64 + 1);
    for (const char *p = self.u.s->s, *end = p + n, *hit;
         (hit = memmem(p, (size_t)(end - p), a->v[0].u.s->s, k)); p = hit + k)
        cnt++;
    return jv_int(cnt);
}

static jv m_join(ctx *c, jv self, const args *a) {
    if (a->n < 1) fail(c, "join takes exactly one argument");
    jlist *l = iter_items(c, a->v[0], true);
    jbuf b = {.a = c->a, .fail = &c->fail, .err = c->err};
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].t != JV_STR)
            fail(c, "sequence item %zu: expected str instance, %s found", i, jv_type_name(l->v[i]));
        if (i) jb_put(&b, self.u.s->s, self.u.s->len);
        jb_put(&b, l->v[i].u.s->s, l->v[i].u.s->len);
    }
    return jv_str(c->a, b.p ? b.p : "", b.n);
}

static jv m_isx(ctx *c, jv self, int kind) {
    (void)c;
    if (!self.u.s->len) return jv_bool(false);
    for (size_t i = 0; i < self.u.s->len; i++) {
        const unsigned char ch = (unsigned char)self.u.s->s[i];
        const bool ok = kind == 0   ? isdigit(ch)
                        : kind == 1 ? isalpha(ch)
                        : kind == 2 ? is_space(ch)
                                    : isalnum(ch);
        if (!ok) return jv_bool(false);
    }
    return jv_bool(true);
}
static jv m_isdigit(ctx *c, jv self, const args *a) {
    (void)a;
    return m_isx(c, self, 0);
}
static jv m_isalpha(ctx *c, jv self, const args *a) {
    (void)a;
    return m_isx(c, self, 1);
}
static jv m_isspace(ctx *c, jv self, const args *a) {
    (void)a;
    return m_isx(c, self, 2);
}
static jv m_isalnum(ctx *c, jv self, const args *a) {
    (void)a;
    return m_isx(c, self, 3);
}

/* str.format with {} / {0} / {name} fields */
static jv m_format(ctx *c, jv self, const args *a) {
    const char *p = self.u.s->s;
    const size_t n = self.u.s->len;
    jbuf b = {.a = c->a, .fail = &c->fail, .err = c->err};
    size_t auto_i = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '{' && i + 1 < n && p[i + 1] == '{') {
            jb_put(&b, "{", 1);
            i++;
        } else if (p[i] == '}' && i + 1 < n && p[i + 1] == '}') {
            jb_put(&b, "}", 1);
            i++;
        } else if (p[i] == '{') {
            const char *e = memchr(p + i, '}', n - i);
            if (!e) fail(c, "Single '{' encountered in format string");
            const size_t fl = (size_t)(e - p) - i - 1;
            const char *f = p + i + 1;
            if (memchr(f, ':', fl) || memchr(f, '!', fl))
                fail(c, "unsupported construct: format spec in str.format");
            jv v;
            int64_t idx;
            if (fl == 0) {
                if (auto_i >= a->n) fail(c, "Replacement index %zu out of range", auto_i);
                v = a->v[auto_i++];
            } else if (parse_int_text(f, fl, &idx)) {
                if (idx < 0 || (size_t)idx >= a->n) fail(c, "Replacement index out of range");
                v = a->v[idx];
            } else {
                char *name = ja_strndup(c->a, f, fl);
                bool found = false;
                for (size_t k = 0; k < a->nkw; k++)
                    if (!strcmp(a->kwn[k], name)) {
                        v = a->kwv[k];
                        found = true;
                    }
                if (!found) fail(c, "KeyError: '%s'", name);
            }
            jv_write_str(&b, v);
            i = (size_t)(e - p);
        } else if (p[i] == '}')
            fail(c, "Single '}' encountered in format string");
        else
            jb_put(&b, p + i, 1);
    }
    return jv_str(c->a, b.p ? b.p : "", b.n);
}

static jv m_items(ctx *c, jv self, const args *a) {
    (void)a;
    jlist *l = new_list(c);
    for (size_t i = 0; i < self.u.d->n; i++)
        jl_push(c->a, l, tuple2(c, self.u.d->k[i], self.u.d->v[i]));
    return list_val(l);
}
static jv m_keys(ctx *c, jv self, const args *a) {
    (void)a;
    jlist *l = new_list(c);
    for (size_t i = 0; i < self.u.d->n; i++)
        jl_push(c->a, l, self.u.d->k[i]);
    return list_val(l);
}
static jv m_values(ctx *c, jv self, const args *a) {
    (void)a;
    jlist *l = new_list(c);
    for (size_t i = 0; i < self.u.d->n; i++)
        jl_push(c->a, l, self.u.d->v[i]);
    return list_val(l);
}
static jv m_get(ctx *c, jv self, const args *a) {
    if (a->n < 1) fail(c, "get expected at least 1 argument");
    jv out;
    if (jd_get(self.u.d, a->v[0], &out)) return out;
    return a->n > 1 ? a->v[1] : jv_none();
}
static jv m_copy(ctx *c, jv self, const args *a) {
    (void)a;
    jv d = jv_dict(c->a);
    for (size_t i = 0; i < self.u.d->n; i++)
        jd_set(c->a, d.u.d, self.u.d->k[i], self.u.d->v[i]);
    return d;
}
static jv m_unsafe(ctx *c, jv self, const args *a) {
    (void)a;
    fail(c, "access to a method that modifies a '%s' object is unsafe (immutable sandbox)",
         jv_type_name(self));
}
static jv m_index(ctx *c, jv self, const args *a) {
    if (a->n < 1) fail(c, "index expected 1 argument");
    for (size_t i = 0; i < self.u.l->n; i++)
        if (jv_equal(self.u.l->v[i], a->v[0])) return jv_int((int64_t)i);
    fail(c, "value is not in list");
}
static jv m_count_list(ctx *c, jv self, const args *a) {
    if (a->n < 1) fail(c, "count expected 1 argument");
    int64_t k = 0;
    for (size_t i = 0; i < self.u.l->n; i++)
        k += jv_equal(self.u.l->v[i], a->v[0]);
    return jv_int(k);
}
static jv m_cycle(ctx *c, jv self, const args *a) {
    if (a->n == 0) fail(c, "no items for cycling given");
    return a->v[self.u.loop->index0 % a->n];
}

static jv method_of(ctx *c, jv obj, const char *name) {
    static const struct {
        jtype t;
        const char *name;
        builtin_fn fn;
    } table[] = {
        {JV_STR, "startswith", m_startswith},
        {JV_STR, "endswith", m_endswith},
        {JV_STR, "strip", m_strip},
        {JV_STR, "lstrip", m_lstrip},
        {JV_STR, "rstrip", m_rstrip},
        {JV_STR, "upper", m_upper},
        {JV_STR, "lower", m_lower},
        {JV_STR, "title", m_title},
        {JV_STR, "capitalize", m_capitalize},
        {JV_STR, "replace", m_replace},
        {JV_STR, "split", m_split},
        {JV_STR, "rsplit", m_rsplit},
        {JV_STR, "splitlines", m_splitlines},
        {JV_STR, "find", m_find},
        {JV_STR, "rfind", m_rfind},
        {JV_STR, "count", m_count_str},
        {JV_STR, "join", m_join},
        {JV_STR, "format", m_format},
        {JV_STR, "isdigit", m_isdigit},
        {JV_STR, "isalpha", m_isalpha},
        {JV_STR, "isspace", m_isspace},
        {JV_STR, "isalnum", m_isalnum},
        {JV_DICT, "items", m_items},
        {JV_DICT, "keys", m_keys},
        {JV_DICT, "values", m_values},
        {JV_DICT, "get", m_get},
        {JV_DICT, "copy", m_copy},
        {JV_DICT, "pop", m_unsafe},
        {JV_DICT, "update", m_unsafe},
        {JV_DICT, "clear", m_unsafe},
        {JV_DICT, "setdefault", m_unsafe},
        {JV_DICT, "popitem", m_unsafe},
        {JV_LIST, "append", m_unsafe},
        {JV_LIST, "extend", m_unsafe},
        {JV_LIST, "pop", m_unsafe},
        {JV_LIST, "insert", m_unsafe},
        {JV_LIST, "remove", m_unsafe},
        {JV_LIST, "sort", m_unsafe},
        {JV_LIST, "reverse", m_unsafe},
        {JV_LIST, "clear", m_unsafe},
        {JV_LIST, "index", m_index},
        {JV_LIST, "count", m_count_list},
        {JV_LOOP, "cycle", m_cycle},
    };
    if (is_gen(obj)) return jv_undef("generator has no such attribute");
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].t == obj.t && !strcmp(table[i].name, name))
            return bound(c, table[i].name, table[i].fn, obj);
    return jv_undef(NULL);
}

/* ---- globals ---------------------------------------------------------------------------------- */
static jv g_range(ctx *c, jv self, const args *a) {
    (void)self;
    if (a->nkw) fail(c, "range() takes no keyword arguments");
    for (size_t i = 0; i < a->n; i++)
        if (!is_intlike(a->v[i]))
            fail(c, "'%s' object cannot be interpreted as an integer", jv_type_name(a->v[i]));
    int64_t start = 0, stop, step = 1;
    if (a->n == 1)
        stop = as_i(a->v[0]);
    else if (a->n == 2 || a->n == 3) {
        start = as_i(a->v[0]);
        stop = as_i(a->v[1]);
        if (a->n == 3) step = as_i(a->v[2]);
    } else
        fail(c, "range expected 1 to 3 arguments, got %zu", a->n);
    if (step == 0) fail(c, "range() arg 3 must not be zero");
    const double count = step > 0 ? ceil(((double)stop - (double)start) / (double)step)
                                  : ceil(((double)start - (double)stop) / (double)-step);
    if (count > JINJA_MAX_RANGE)
        fail(c, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).", JINJA_MAX_RANGE);
    jlist *l = new_list(c);
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i = advance(i, step, stop))
        jl_push(c->a, l, jv_int(i));
    return list_val(l);
}

static jv g_dict(ctx *c, jv self, const args *a) {
    (void)self;
    jv d = jv_dict(c->a);
    if (a->n > 1) fail(c, "dict expected at most 1 argument");
    if (a->n == 1) {
        if (a->v[0].t == JV_DICT)
            for (size_t i = 0; i < a->v[0].u.d->n; i++)
                jd_set(c->a, d.u.d, a->v[0].u.d->k[i], a->v[0].u.d->v[i]);
        else
            fail(c, "unsupported construct: dict() of a %s", jv_type_name(a->v[0]));
    }
    for (size_t i = 0; i < a->nkw; i++)
        jd_set(c->a, d.u.d, jv_cstr(c->a, a->kwn[i]), a->kwv[i]);
    return d;
}

static jv g_namespace(ctx *c, jv self, const args *a) {
    jv d = g_dict(c, self, a);
    d.t = JV_NS;
    return d;
}

static jv g_raise(ctx *c, jv self, const args *a) {
    (void)self;
    jv m = a->n ? to_str(c, a->v[0]) : jv_cstr(c->a, "");
    fail(c, "%s", m.u.s->s);
}

static jv g_strftime(ctx *c, jv self, const args *a) {
    (void)self;
    if (a->n < 1 || a->v[0].t != JV_STR) fail(c, "strftime_now needs a format string");
    const time_t t = c->now ? (time_t)c->now : time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[512];
    const size_t n = strftime(buf, sizeof buf, a->v[0].u.s->s, &tm);
    if (n == 0 && a->v[0].u.s->len) fail(c, "strftime_now format gives no or too long text");
    return jv_str(c->a, buf, n);
}

/* ---- expressions -------------------------------------------------------------------------------- */
static void eval_args(ctx *c, const jnode *n, frame *f, args *out, size_t skip_first) {
    (void)skip_first;
    out->n = n->n_kids;
    out->v = n->n_kids ? ja_alloc(c->a, n->n_kids * sizeof(jv)) : NULL;
    for (size_t i = 0; i < n->n_kids; i++)
        out->v[i] = eval(c, n->kids[i], f);
    out->nkw = n->n_kw;
    out->kwn = n->kwn;
    out->kwv = n->n_kw ? ja_alloc(c->a, n->n_kw * sizeof(jv)) : NULL;
    for (size_t i = 0; i < n->n_kw; i++)
        out->kwv[i] = eval(c, n->kwv[i], f);
}

static jv eval_inner(ctx *c, const jnode *n, frame *f) {
    switch (n->kind) {
    case JN_LIT: return n->lit;
    case JN_NAME: {
        jv v;
        if (lookup(c, f, n->name, &v)) return v;
        return undef_named(c, "'%s' is undefined%s", n->name, NULL);
    }
    case JN_ATTR: return getattr_v(c, eval(c, n->a, f), n->name);
    case JN_ITEM: {
        jv o = eval(c, n->a, f);
        return getitem_v(c, o, eval(c, n->b, f));
    }
    case JN_SLICE: {
        jv o = eval(c, n->a, f);
        jv s0 = n->b ? eval(c, n->b, f) : jv_none(), s1 = n->c ? eval(c, n->c, f) : jv_none(),
           st = n->d ? eval(c, n->d, f) : jv_none();
        return slice_v(c, o, s0, s1, st);
    }
    case JN_CALL: {
        jv fn = eval(c, n->a, f);
        args a;
        eval_args(c, n, f, &a, 0);
        c->line = n->line;
        return call_value(c, fn, &a);
    }
    case JN_FILTER: {
        jv v = eval(c, n->a, f);
        args *a = ja_alloc(c->a, sizeof *a); /* in the arena, like everything the result points to */
        eval_args(c, n, f, a, 0);
        c->line = n->line;
        return apply_filter(c, n->name, v, a);
    }
    case JN_TEST: {
        jv v = eval(c, n->a, f);
        args a;
        eval_args(c, n, f, &a, 0);
        c->line = n->line;
        bool known;
        const bool r = run_test(c, n->name, v, &a, &known);
        if (!known) fail(c, "no test named '%s'", n->name);
        return jv_bool(n->op ? !r : r);
    }
    case JN_NEG:
    case JN_POS: {
        jv v = eval(c, n->a, f);
        if (v.t == JV_UNDEF) undefined_error(c, v);
        if (!is_num(v))
            fail(c, "bad operand type for unary %c: '%s'", n->kind == JN_NEG ? '-' : '+', jv_type_name(v));
        if (n->kind == JN_POS) return is_intlike(v) ? jv_int(as_i(v)) : v;
        if (v.t == JV_FLOAT) return jv_float(-v.u.f);
        if (as_i(v) == INT64_MIN) fail(c, "integer overflow");
        return jv_int(-as_i(v));
    }
    case JN_NOT: return jv_bool(!jv_truthy(eval(c, n->a, f)));
    case JN_AND: {
        jv l = eval(c, n->a, f);
        return jv_truthy(l) ? eval(c, n->b, f) : l;
    }
    case JN_OR: {
        jv l = eval(c, n->a, f);
        return jv_truthy(l) ? l : eval(c, n->b, f);
    }
    case JN_BIN: {
        jv l = eval(c, n->a, f), r = eval(c, n->b, f);
        c->line = n->line;
        return binop(c, n->op, l, r);
    }
    case JN_CMP: {
        jv l = eval(c, n->a, f);
        for (size_t i = 0; i < n->n_kids; i++) {
            const jnode *o = n->kids[i];
            jv r = eval(c, o->a, f);
            c->line = o->line;
            bool ok;
            switch (o->op) {
            case OP_EQ:
                work(c, shallow_size(l) + shallow_size(r));
                ok = jv_equal(l, r);
                break;
            case OP_NE:
                work(c, shallow_size(l) + shallow_size(r));
                ok = !jv_equal(l, r);
                break;
            case OP_LT: ok = compare(c, l, r, "<") < 0; break;
            case OP_LE: ok = compare(c, l, r, "<=") <= 0; break;
            case OP_GT: ok = compare(c, l, r, ">") > 0; break;
            case OP_GE: ok = compare(c, l, r, ">=") >= 0; break;
            case OP_IN: ok = contains(c, r, l); break;
            default: ok = !contains(c, r, l); break;
            }
            if (!ok) return jv_bool(false);
            l = r;
        }
        return jv_bool(true);
    }
    case JN_COND: {
        if (jv_truthy(eval(c, n->b, f))) return eval(c, n->a, f);
        return n->c ? eval(c, n->c, f)
                    : jv_undef("the inline if-expression on line evaluated to false and no else section was "
                               "defined.");
    }
    case JN_LIST:
    case JN_TUPLE: {
        jlist *l = new_list(c);
        l->tuple = n->kind == JN_TUPLE;
        for (size_t i = 0; i < n->n_kids; i++)
            jl_push(c->a, l, eval(c, n->kids[i], f));
        return list_val(l);
    }
    case JN_DICT: {
        jv d = jv_dict(c->a);
        for (size_t i = 0; i < n->n_kids; i++) {
            jv k = eval(c, n->kids[i], f);
            if (k.t == JV_LIST && !is_tuple(k)) fail(c, "unhashable type: 'list'");
            if (k.t == JV_DICT) fail(c, "unhashable type: 'dict'");
            jd_set(c->a, d.u.d, k, eval(c, n->kwv[i], f));
        }
        return d;
    }
    default: fail(c, "internal: not an expression");
    }
}

static jv eval(ctx *c, const jnode *n, frame *f) {
    if (++c->depth > 1000) fail(c, "template recursion too deep");
    work(c, 1);
    c->line = n->line;
    jv v = eval_inner(c, n, f);
    c->depth--;
    return v;
}

/* ---- statements --------------------------------------------------------------------------------- */
static void exec_node(ctx *c, const jnode *n, frame *f);

static void exec_body(ctx *c, const jnode *body, frame *f) {
    for (size_t i = 0; i < body->n_kids && !c->loop_ctl; i++)
        exec_node(c, body->kids[i], f);
}

static void assign(ctx *c, frame *f, const jnode *n, jv v) {
    if (n->name) { /* ns.attr */
        jv ns;
        if (!lookup(c, f, n->targets[0], &ns) || ns.t != JV_NS)
            fail(c, "cannot assign attribute on non-namespace object");
        work(c, ns.u.d->n);
        jd_set(c->a, ns.u.d, jv_cstr(c->a, n->name), v);
        return;
    }
    if (n->n_targets == 1) {
        frame_set(c, f, n->targets[0], v);
        return;
    }
    jlist *l = iter_items(c, v, true);
    if (l->n != n->n_targets) fail(c, "cannot unpack %zu values into %zu names", l->n, n->n_targets);
    for (size_t i = 0; i < l->n; i++)
        frame_set(c, f, n->targets[i], l->v[i]);
}

static void exec_for(ctx *c, const jnode *n, frame *f) {
    jv seq = eval(c, n->a, f);
    c->line = n->line;
    jlist *src = iter_items(c, seq, true);
    jlist *items = src;
    if (n->b) { /* loop filter: evaluated with the target bound, before loop indices */
        items = new_list(c);
        frame *tf = NULL;
        for (size_t i = 0; i < src->n; i++) {
            if (++c->iterations > JINJA_MAX_ITERATIONS)
                fail(c, "template runs more than %d loop iterations", JINJA_MAX_ITERATIONS);
            if (!tf || tf->captured)
                tf = frame_new(c, f);
            else
                tf->n = 0;
            jnode tmp = *n;
            tmp.name = NULL;
            assign(c, tf, &tmp, src->v[i]);
            if (jv_truthy(eval(c, n->b, tf))) jl_push(c->a, items, src->v[i]);
        }
    }
    jv outer_loop;
    const bool had_loop = lookup(c, f, "loop", &outer_loop) && outer_loop.t == JV_LOOP;
    jloop *lp = ja_alloc(c->a, sizeof *lp);
    lp->items = items;
    lp->length = items->n;
    lp->depth = 1; /* only recursive loops (unsupported) go deeper */
    (void)had_loop;
    frame *it = NULL;
    for (size_t i = 0; i < items->n; i++) {
        if (++c->iterations > JINJA_MAX_ITERATIONS)
            fail(c, "template runs more than %d loop iterations", JINJA_MAX_ITERATIONS);
        lp->index0 = i;
        /* one frame per iteration, as Jinja scopes them; its memory is reused unless a
         * macro defined in the body closed over it */
        if (!it || it->captured)
            it = frame_new(c, f);
        else
            it->n = 0;
        jnode tmp = *n;
        tmp.name = NULL;
        frame_set(c, it, "loop", (jv){.t = JV_LOOP, .u.loop = lp});
        assign(c, it, &tmp, items->v[i]);
        exec_body(c, n->c, it);
        if (c->loop_ctl == 1) {
            c->loop_ctl = 0;
            break;
        }
        c->loop_ctl = 0;
    }
    if (items->n == 0 && n->d) exec_body(c, n->d, f);
}

static jv capture(ctx *c, const jnode *body, frame *f) {
    const size_t mark = c->out.n;
    exec_body(c, body, f);
    jv s = jv_str(c->a, c->out.p ? c->out.p + mark : "", c->out.n - mark);
    c->out.n = mark;
    if (c->out.p) c->out.p[mark] = '\0';
    return s;
}

/* apply a parsed filter chain whose innermost operand is the placeholder literal */
static jv apply_chain(ctx *c, const jnode *chain, jv v, frame *f) {
    if (chain->kind != JN_FILTER) return v;
    jv inner = apply_chain(c, chain->a, v, f);
    args *a = ja_alloc(c->a, sizeof *a);
    eval_args(c, chain, f, a, 0);
    c->line = chain->line;
    return apply_filter(c, chain->name, inner, a);
}

static void exec_node(ctx *c, const jnode *n, frame *f) {
    if (++c->depth > 1000) fail(c, "template recursion too deep");
    c->line = n->line;
    switch (n->kind) {
    case JN_TEXT: jb_put(&c->out, n->lit.u.s->s, n->lit.u.s->len); break;
    case JN_OUTPUT: {
        jv v = eval(c, n->a, f);
        if (is_gen(v))
            jb_puts(&c->out, "<generator object>");
        else
            jv_write_str(&c->out, v);
        break;
    }
    case JN_BODY: exec_body(c, n, f); break;
    case JN_IF:
        if (jv_truthy(eval(c, n->a, f)))
            exec_body(c, n->b, f);
        else if (n->c)
            exec_body(c, n->c, f);
        break;
    case JN_FOR: exec_for(c, n, f); break;
    case JN_SET: assign(c, f, n, eval(c, n->a, f)); break;
    case JN_SETBLOCK: {
        jv s = capture(c, n->a, f);
        if (n->b) s = apply_chain(c, n->b, s, f);
        frame_set(c, f, n->targets[0], s);
        break;
    }
    case JN_FILTERBLOCK: {
        jv s = capture(c, n->a, f);
        jv r = apply_chain(c, n->b, s, f);
        jv_write_str(&c->out, r);
        break;
    }
    case JN_MACRO: {
        jfunc *fn = ja_alloc(c->a, sizeof *fn);
        fn->kind = 1;
        fn->name = n->name;
        fn->node = n;
        fn->closure = f;
        for (frame *x = f; x; x = x->parent)
            x->captured = true;
        frame_set(c, f, n->name, (jv){.t = JV_FUNC, .u.fn = fn});
        break;
    }
    case JN_CALLBLOCK: {
        jfunc *caller = ja_alloc(c->a, sizeof *caller);
        caller->kind = 2;
        caller->name = "caller";
        caller->node = n;
        caller->closure = f;
        for (frame *x = f; x; x = x->parent)
            x->captured = true;
        const jnode *call = n->a;
        jv fnv = eval(c, call->a, f);
        args a;
        eval_args(c, call, f, &a, 0);
        if (fnv.t != JV_FUNC || fnv.u.fn->kind != 1) fail(c, "{%% call %%} needs a macro");
        jv s = call_macro(c, fnv.u.fn, &a, (jv){.t = JV_FUNC, .u.fn = caller});
        jb_put(&c->out, s.u.s->s, s.u.s->len);
        break;
    }
    case JN_BREAK: c->loop_ctl = 1; break;
    case JN_CONTINUE: c->loop_ctl = 2; break;
    default: fail(c, "internal: not a statement");
    }
    c->depth--;
}

/* ---- compile-time checks and entry points ---------------------------------------------------------- */
/* Unknown filters and tests fail at load, as Jinja's compiler fails them, except inside
 * an if statement or a conditional expression ("soft" frames), where Jinja defers the
 * error to the moment the filter runs; a for loop, macro or block body hardens again. */
static bool check_names(const jnode *n, bool soft, char *err) {
    if (!n) return true;
    if (n->kind == JN_FILTER && !soft && !find_filter(n->name)) {
        snprintf(err, JINJA_ERR, "line %d: unsupported construct: no filter named '%s'", n->line, n->name);
        return false;
    }
    if (n->kind == JN_TEST && !soft) {
        bool ok = false;
        for (size_t i = 0; test_names[i] && !ok; i++)
            ok = !strcmp(test_names[i], n->name);
        if (!ok) {
            snprintf(err, JINJA_ERR, "line %d: unsupported construct: no test named '%s'", n->line, n->name);
            return false;
        }
    }
    const bool here = soft || n->kind == JN_IF || n->kind == JN_COND;
    const bool inner = n->kind == JN_FOR || n->kind == JN_MACRO || n->kind == JN_CALLBLOCK ||
                               n->kind == JN_SETBLOCK || n->kind == JN_FILTERBLOCK
                           ? false
                           : here;
    if (!check_names(n->a, n->kind == JN_FOR ? here : inner, err) || !check_names(n->b, inner, err) ||
        !check_names(n->c, inner, err) || !check_names(n->d, inner, err))
        return false;
    for (size_t i = 0; i < n->n_kids; i++)
        if (!check_names(n->kids[i], inner, err)) return false;
    for (size_t i = 0; i < n->n_kw; i++)
        if (n->kwv && !check_names(n->kwv[i], inner, err)) return false;
    return true;
}

jinja_template *jinja_compile(const char *src, size_t len, char *err) {
    if (len > JINJA_MAX_SOURCE) {
        snprintf(err, JINJA_ERR, "template is %zu bytes, more than the limit of %u", len, JINJA_MAX_SOURCE);
        return NULL;
    }
    jinja_template *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, JINJA_ERR, "out of memory");
        return NULL;
    }
    jmp_buf fail_jb;
    t->arena.cap = 64u << 20;
    t->arena.err = err;
    t->arena.fail = &fail_jb;
    if (setjmp(fail_jb)) {
        free(t->arena.scratch);
        ja_free(&t->arena);
        free(t);
        return NULL;
    }
    jtok *toks = NULL;
    size_t n;
    bool ok = jinja_lex(&t->arena, src, len, &toks, &n, err);
    ok = ok && jinja_parse(&t->arena, toks, n, &t->root, err);
    free(t->arena.scratch);
    t->arena.scratch = NULL;
    if (!ok || !check_names(t->root, false, err)) {
        ja_free(&t->arena);
        free(t);
        return NULL;
    }
    t->arena.fail = NULL;
    t->arena.err = NULL;
    return t;
}

void jinja_template_free(jinja_template *t) {
    if (!t) return;
    ja_free(&t->arena);
    free(t);
}

static void set_global(ctx *c, const char *name, builtin_fn fn) {
    frame_set(c, c->root, name, bound(c, name, fn, jv_none()));
}

bool jinja_render(const jinja_template *t, const jinja_var *vars, size_t n_vars, const jinja_render_opts *o,
                  char **out, size_t *out_len, char *err) {
    jarena arena = {.cap = JINJA_MAX_MEMORY, .err = err};
    ctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, JINJA_ERR, "out of memory");
        return false;
    }
    c->a = &arena;
    c->err = err;
    arena.fail = &c->fail;
    c->out = (jbuf){.a = &arena,
                    .max = o && o->max_output ? o->max_output : JINJA_DEFAULT_MAX_OUTPUT,
                    .fail = &c->fail,
                    .err = err};
    c->now = o ? o->now : 0;
    *out = NULL;
    if (setjmp(c->fail)) {
        if (strncmp(err, "line ", 5) != 0) { /* memory and output limits: say where */
            char tmp[JINJA_ERR];
            snprintf(tmp, sizeof tmp, "line %d: %s", c->line, err);
            memcpy(err, tmp, JINJA_ERR);
        }
        ja_free(&arena);
        free(c);
        return false;
    }
    c->root = frame_new(c, NULL);
    set_global(c, "range", g_range);
    set_global(c, "dict", g_dict);
    set_global(c, "namespace", g_namespace);
    set_global(c, "raise_exception", g_raise);
    set_global(c, "strftime_now", g_strftime);
    for (size_t i = 0; i < n_vars; i++) {
        jv v = jv_none();
        if (vars[i].json && !jv_from_json_text(&arena, vars[i].json, &v, err)) {
            char tmp[JINJA_ERR];
            snprintf(tmp, sizeof tmp, "variable '%s': %s", vars[i].name, err);
            memcpy(err, tmp, JINJA_ERR);
            ja_free(&arena);
            free(c);
            return false;
        }
        frame_set(c, c->root, ja_strndup(&arena, vars[i].name, strlen(vars[i].name)), v);
    }
    frame *top = frame_new(c, c->root);
    exec_body(c, t->root, top);
    char *res = malloc(c->out.n + 1);
    if (!res) {
        snprintf(err, JINJA_ERR, "out of memory");
        ja_free(&arena);
        free(c);
        return false;
    }
    if (c->out.n) memcpy(res, c->out.p, c->out.n);
    res[c->out.n] = '\0';
    *out = res;
    *out_len = c->out.n;
    ja_free(&arena);
    free(c);
    return true;
}
