/* value.c - the interpreter's arena and values: a tagged union (jv) of none, bool, int,
 * float, string, list, ordered dict, namespace, callable and loop, with Python's str() and
 * repr() (what Jinja prints), truthiness and equality. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja/jinja.h"

struct jchunk {
    jchunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

static _Noreturn void arena_exhausted(jarena *a) {
    if (a->err) snprintf(a->err, JINJA_ERR, "template uses more than %zu MiB of memory", a->cap >> 20);
    longjmp(*a->fail, 1);
}

/* n bytes, not zeroed (strings and buffers that are written at once) */
void *ja_alloc_raw(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n > a->cap || a->used + n > a->cap) arena_exhausted(a);
    jchunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        /* chunks grow with the arena (64 KiB up to 4 MiB): few mallocs for big renders */
        size_t cap = a->used / 4 < 65536 ? 65536 : a->used / 4 > (4u << 20) ? (4u << 20) : a->used / 4;
        if (cap < n) cap = n;
        c = malloc(sizeof *c + cap);
        if (!c) arena_exhausted(a);
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    a->used += n;
    return p;
}

void *ja_alloc(jarena *a, size_t n) { return memset(ja_alloc_raw(a, n), 0, n); }

char *ja_strndup(jarena *a, const char *s, size_t n) {
    char *p = ja_alloc_raw(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void ja_free(jarena *a) {
    for (jchunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
    a->used = 0;
}

/* ---- constructors ----------------------------------------------------------------------- */
jv jv_undef(const char *name) { return (jv){.t = JV_UNDEF, .u.uname = name}; }
jv jv_none(void) { return (jv){.t = JV_NONE}; }
jv jv_bool(bool b) { return (jv){.t = JV_BOOL, .u.b = b}; }
jv jv_int(int64_t i) { return (jv){.t = JV_INT, .u.i = i}; }
jv jv_float(double f) { return (jv){.t = JV_FLOAT, .u.f = f}; }

jv jv_str(jarena *a, const char *s, size_t n) {
    jstr *p = ja_alloc_raw(a, sizeof *p + n + 1);
    p->len = n;
    if (n) memcpy(p->s, s, n);
    p->s[n] = '\0';
    return (jv){.t = JV_STR, .u.s = p};
}

jv jv_cstr(jarena *a, const char *s) { return jv_str(a, s, strlen(s)); }

jv jv_list(jarena *a) { return (jv){.t = JV_LIST, .u.l = ja_alloc(a, sizeof(jlist))}; }
jv jv_dict(jarena *a) { return (jv){.t = JV_DICT, .u.d = ja_alloc(a, sizeof(jdict))}; }

void jl_push(jarena *a, jlist *l, jv v) {
    if (l->n == l->cap) {
        const size_t cap = l->cap ? l->cap * 2 : 4;
        jv *p = ja_alloc_raw(a, cap * sizeof *p);
        if (l->n) memcpy(p, l->v, l->n * sizeof *p);
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

static bool key_eq(jv a, jv b) { return jv_equal(a, b); }

void jd_set(jarena *a, jdict *d, jv k, jv v) {
    for (size_t i = 0; i < d->n; i++)
        if (key_eq(d->k[i], k)) {
            d->v[i] = v;
            return;
        }
    if (d->n == d->cap) {
        const size_t cap = d->cap ? d->cap * 2 : 4;
        jv *nk = ja_alloc(a, cap * sizeof *nk), *nv = ja_alloc(a, cap * sizeof *nv);
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof *nk);
            memcpy(nv, d->v, d->n * sizeof *nv);
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = k;
    d->v[d->n++] = v;
}

bool jd_get(const jdict *d, jv k, jv *out) {
    for (size_t i = 0; i < d->n; i++)
        if (key_eq(d->k[i], k)) {
            *out = d->v[i];
            return true;
        }
    return false;
}

bool jd_gets(const jdict *d, const char *k, jv *out) {
    const size_t n = strlen(k);
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == JV_STR && d->k[i].u.s->len == n && memcmp(d->k[i].u.s->s, k, n) == 0) {
            *out = d->v[i];
            return true;
        }
    return false;
}

/* ---- Python semantics -------------------------------------------------------------------- */
bool jv_truthy(jv v) {
    switch (v.t) {
    case JV_UNDEF:
    case JV_NONE: return false;
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0.0;
    case JV_STR: return v.u.s->len != 0;
    case JV_LIST: return v.u.l->tuple == 2 || v.u.l->n != 0; /* generators are always true */
    case JV_DICT: return v.u.d->n != 0;
    default: return true;
    }
}

static bool is_num(jv v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }
static double num(jv v) { return v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : (double)v.u.b; }

bool jv_equal(jv a, jv b) {
    if (is_num(a) && is_num(b)) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT)
            return (a.t == JV_INT ? a.u.i : a.u.b) == (b.t == JV_INT ? b.u.i : b.u.b);
        return num(a) == num(b);
    }
    if (a.t != b.t) {
        if ((a.t == JV_DICT && b.t == JV_NS) || (a.t == JV_NS && b.t == JV_DICT)) return false;
        return false;
    }
    switch (a.t) {
    case JV_UNDEF:
    case JV_NONE: return true;
    case JV_STR: return a.u.s->len == b.u.s->len && memcmp(a.u.s->s, b.u.s->s, a.u.s->len) == 0;
    case JV_LIST:
        if (a.u.l->tuple != b.u.l->tuple || a.u.l->n != b.u.l->n) return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!jv_equal(a.u.l->v[i], b.u.l->v[i])) return false;
        return true;
    case JV_DICT:
        if (a.u.d->n != b.u.d->n) return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            jv o;
            if (!jd_get(b.u.d, a.u.d->k[i], &o) || !jv_equal(a.u.d->v[i], o)) return false;
        }
        return true;
    case JV_NS: return a.u.d == b.u.d;
    case JV_FUNC: return a.u.fn == b.u.fn;
    case JV_LOOP: return a.u.loop == b.u.loop;
    default: return false;
    }
}

const char *jv_type_name(jv v) {
    static const char *const names[] = {"Undefined", "NoneType", "bool",      "int",      "float",      "str",
                                        "list",      "dict",     "Namespace", "function", "LoopContext"};
    if (v.t == JV_LIST && v.u.l->tuple == 1) return "tuple";
    if (v.t == JV_LIST && v.u.l->tuple == 2) return "generator";
    return names[v.t];
}

/* ---- buffers and printing ------------------------------------------------------------------ */
void jb_put(jbuf *b, const char *s, size_t n) {
    if (n == 0) return;
    if (b->max && b->n + n > b->max) {
        if (b->err) snprintf(b->err, JINJA_ERR, "template output exceeds the limit of %zu bytes", b->max);
        longjmp(*b->fail, 1);
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = ja_alloc_raw(b->a, cap);
        if (b->n) memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void jb_puts(jbuf *b, const char *s) { jb_put(b, s, strlen(s)); }

void jb_printf(jbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    const int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof tmp)
        jb_put(b, tmp, (size_t)n);
    else if (n > 0) {
        char *big = ja_alloc(b->a, (size_t)n + 1);
        vsnprintf(big, (size_t)n + 1, fmt, ap2);
        jb_put(b, big, (size_t)n);
    }
    va_end(ap2);
}

/* repr(float): the shortest text that reads back the same, in Python's layout (1.0, 1e+16,
 * 1.5e-05, inf, nan). */
void jv_write_float(jbuf *b, double f) {
    if (isnan(f)) return jb_puts(b, "nan");
    if (isinf(f)) return jb_puts(b, f < 0 ? "-inf" : "inf");
    char digits[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(digits, sizeof digits, "%.*e", prec - 1, f);
        if (strtod(digits, NULL) == f) break;
    }
    /* digits is d[.ddd]e±XX; take mantissa digits and exponent */
    char mant[24];
    size_t nm = 0;
    const char *p = digits;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    for (; *p && *p != 'e'; p++)
        if (*p != '.') mant[nm++] = *p;
    mant[nm] = '\0';
    const int exp = atoi(p + 1);
    while (nm > 1 && mant[nm - 1] == '0')
        mant[--nm] = '\0';
    if (neg) jb_put(b, "-", 1);
    if (exp < -4 || exp >= 16) {
        jb_put(b, mant, 1);
        if (nm > 1) {
            jb_put(b, ".", 1);
            jb_put(b, mant + 1, nm - 1);
        }
        jb_printf(b, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else if (exp < 0) {
        jb_puts(b, "0.");
        for (int i = 0; i < -exp - 1; i++)
            jb_put(b, "0", 1);
        jb_put(b, mant, nm);
    } else {
        const size_t ip = (size_t)exp + 1;
        if (nm <= ip) {
            jb_put(b, mant, nm);
            for (size_t i = nm; i < ip; i++)
                jb_put(b, "0", 1);
            jb_puts(b, ".0");
        } else {
            jb_put(b, mant, ip);
            jb_put(b, ".", 1);
            jb_put(b, mant + ip, nm - ip);
        }
    }
}

/* Python's repr of a str: single quotes unless the text has ' and no ". */
static void write_str_repr(jbuf *b, const jstr *s) {
    const bool sq = memchr(s->s, '\'', s->len) != NULL, dq = memchr(s->s, '"', s->len) != NULL;
    const char q = sq && !dq ? '"' : '\'';
    jb_put(b, &q, 1);
    for (size_t i = 0; i < s->len; i++) {
        const unsigned char c = (unsigned char)s->s[i];
        if (c == (unsigned char)q || c == '\\') {
            jb_put(b, "\\", 1);
            jb_put(b, (const char *)&c, 1);
        } else if (c == '\n')
            jb_puts(b, "\\n");
        else if (c == '\r')
            jb_puts(b, "\\r");
        else if (c == '\t')
            jb_puts(b, "\\t");
        else if (c < 0x20 || c == 0x7f)
            jb_printf(b, "\\x%02x", c);
        else
            jb_put(b, (const char *)&c, 1);
    }
    jb_put(b, &q, 1);
}

void jv_write_repr(jbuf *b, jv v) {
    switch (v.t) {
    case JV_STR: write_str_repr(b, v.u.s); return;
    case JV_LIST: {
        const jlist *l = v.u.l;
        const bool tu = l->tuple == 1;
        if (l->tuple == 2) {
            jb_puts(b, "<generator object>");
            return;
        }
        jb_puts(b, tu ? "(" : "[");
        for (size_t i = 0; i < l->n; i++) {
            if (i) jb_puts(b, ", ");
            jv_write_repr(b, l->v[i]);
        }
        if (tu && l->n == 1) jb_puts(b, ",");
        jb_puts(b, tu ? ")" : "]");
        return;
    }
    case JV_DICT: {
        const jdict *d = v.u.d;
        jb_puts(b, "{");
        for (size_t i = 0; i < d->n; i++) {
            if (i) jb_puts(b, ", ");
            jv_write_repr(b, d->k[i]);
            jb_puts(b, ": ");
            jv_write_repr(b, d->v[i]);
        }
        jb_puts(b, "}");
        return;
    }
    case JV_UNDEF: jb_puts(b, "Undefined"); return;
    default: jv_write_str(b, v);
    }
}

void jv_write_str(jbuf *b, jv v) {
    switch (v.t) {
    case JV_UNDEF: return;
    case JV_NONE: jb_puts(b, "None"); return;
    case JV_BOOL: jb_puts(b, v.u.b ? "True" : "False"); return;
    case JV_INT: jb_printf(b, "%lld", (long long)v.u.i); return;
    case JV_FLOAT: jv_write_float(b, v.u.f); return;
    case JV_STR: jb_put(b, v.u.s->s, v.u.s->len); return;
    case JV_LIST:
    case JV_DICT: jv_write_repr(b, v); return;
    case JV_NS: jb_puts(b, "<Namespace ...>"); return;
    case JV_FUNC: jb_puts(b, "<function>"); return;
    case JV_LOOP: jb_puts(b, "<LoopContext>"); return;
    }
}
