/* json.c - JSON in (jansson text to values, object key order kept) and out: `tojson` as
 * Hugging Face defines it, json.dumps(x, ensure_ascii=False, indent=None, separators=None,
 * sort_keys=False), byte for byte (Python's separators, float repr, NaN/Infinity, \uXXXX
 * escapes with surrogate pairs when ensure_ascii). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "jinja/jinja.h"

static jv from_json(jarena *a, const json_t *j, int depth) {
    if (depth > 512) return jv_none();
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        jv d = jv_dict(a);
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            jd_set(a, d.u.d, jv_cstr(a, k), from_json(a, v, depth + 1));
        }
        return d;
    }
    case JSON_ARRAY: {
        jv l = jv_list(a);
        for (size_t i = 0; i < json_array_size(j); i++)
            jl_push(a, l.u.l, from_json(a, json_array_get(j, i), depth + 1));
        return l;
    }
    case JSON_STRING: return jv_str(a, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: return jv_int((int64_t)json_integer_value(j));
    case JSON_REAL: return jv_float(json_real_value(j));
    case JSON_TRUE: return jv_bool(true);
    case JSON_FALSE: return jv_bool(false);
    default: return jv_none();
    }
}

bool jv_from_json_text(jarena *a, const char *text, jv *out, char *err) {
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (!j) {
        snprintf(err, JINJA_ERR, "bad JSON at line %d column %d: %s", e.line, e.column, e.text);
        return false;
    }
    *out = from_json(a, j, 0);
    json_decref(j);
    return true;
}

static unsigned utf8_next(const unsigned char *s, size_t n, size_t *i) {
    const unsigned c = s[*i];
    size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (*i + k > n) k = 1;
    unsigned cp = k == 1 ? c : c & (0x7F >> k);
    for (size_t m = 1; m < k; m++)
        cp = (cp << 6) | (s[*i + m] & 0x3F);
    *i += k;
    return cp;
}

static void write_json_string(jbuf *b, const char *p, size_t n, bool ensure_ascii) {
    jb_put(b, "\"", 1);
    const unsigned char *s = (const unsigned char *)p;
    size_t i = 0;
    while (i < n) {
        const unsigned char c = s[i];
        if (c == '"')
            jb_puts(b, "\\\""), i++;
        else if (c == '\\')
            jb_puts(b, "\\\\"), i++;
        else if (c == '\n')
            jb_puts(b, "\\n"), i++;
        else if (c == '\r')
            jb_puts(b, "\\r"), i++;
        else if (c == '\t')
            jb_puts(b, "\\t"), i++;
        else if (c == '\b')
            jb_puts(b, "\\b"), i++;
        else if (c == '\f')
            jb_puts(b, "\\f"), i++;
        else if (c < 0x20 || (ensure_ascii && c == 0x7f))
            jb_printf(b, "\\u%04x", c), i++;
        else if (c < 0x80 || !ensure_ascii)
            jb_put(b, (const char *)s + i++, 1);
        else {
            unsigned cp = utf8_next(s, n, &i);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                jb_printf(b, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else
                jb_printf(b, "\\u%04x", cp);
        }
    }
    jb_put(b, "\"", 1);
}

typedef struct jopts {
    bool ensure_ascii, sort_keys;
    int indent;
    const char *item_sep, *key_sep;
    char *err;
} jopts;

static void newline(jbuf *b, const jopts *o, int level) {
    jb_put(b, "\n", 1);
    for (int i = 0; i < level * o->indent; i++)
        jb_put(b, " ", 1);
}

static bool dump(jbuf *b, jv v, const jopts *o, int level);

static bool dump_key(jbuf *b, jv k, const jopts *o) {
    switch (k.t) {
    case JV_STR: write_json_string(b, k.u.s->s, k.u.s->len, o->ensure_ascii); return true;
    case JV_INT: jb_printf(b, "\"%lld\"", (long long)k.u.i); return true;
    case JV_BOOL: jb_puts(b, k.u.b ? "\"true\"" : "\"false\""); return true;
    case JV_NONE: jb_puts(b, "\"null\""); return true;
    case JV_FLOAT:
        jb_put(b, "\"", 1);
        jv_write_float(b, k.u.f);
        jb_put(b, "\"", 1);
        return true;
    default:
        snprintf(o->err, JINJA_ERR, "keys must be str, int, float, bool or None, not %s", jv_type_name(k));
        return false;
    }
}

static int key_cmp(jv a, jv b) {
    if (a.t == JV_STR && b.t == JV_STR) {
        const size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
        const int r = memcmp(a.u.s->s, b.u.s->s, n);
        return r ? r : (a.u.s->len > b.u.s->len) - (a.u.s->len < b.u.s->len);
    }
    return 0;
}

static bool dump(jbuf *b, jv v, const jopts *o, int level) {
    if (level > 500) {
        snprintf(o->err, JINJA_ERR, "value nested too deeply for tojson");
        return false;
    }
    switch (v.t) {
    case JV_NONE: jb_puts(b, "null"); return true;
    case JV_BOOL: jb_puts(b, v.u.b ? "true" : "false"); return true;
    case JV_INT: jb_printf(b, "%lld", (long long)v.u.i); return true;
    case JV_FLOAT:
        if (isnan(v.u.f))
            jb_puts(b, "NaN");
        else if (isinf(v.u.f))
            jb_puts(b, v.u.f < 0 ? "-Infinity" : "Infinity");
        else
            jv_write_float(b, v.u.f);
        return true;
    case JV_STR: write_json_string(b, v.u.s->s, v.u.s->len, o->ensure_ascii); return true;
    case JV_LIST: {
        const jlist *l = v.u.l;
        if (l->tuple == 2) {
            snprintf(o->err, JINJA_ERR, "Object of type generator is not JSON serializable");
            return false;
        }
        if (!l->n) {
            jb_puts(b, "[]");
            return true;
        }
        jb_put(b, "[", 1);
        for (size_t i = 0; i < l->n; i++) {
            if (i) jb_puts(b, o->item_sep);
            if (o->indent >= 0) newline(b, o, level + 1);
            if (!dump(b, l->v[i], o, level + 1)) return false;
        }
        if (o->indent >= 0) newline(b, o, level);
        jb_put(b, "]", 1);
        return true;
    }
    case JV_DICT: {
        const jdict *d = v.u.d;
        if (!d->n) {
            jb_puts(b, "{}");
            return true;
        }
        size_t *order = ja_alloc(b->a, d->n * sizeof *order);
        for (size_t i = 0; i < d->n; i++)
            order[i] = i;
        if (o->sort_keys)
            for (size_t i = 1; i < d->n; i++) {
                const size_t x = order[i];
                size_t j = i;
                while (j > 0 && key_cmp(d->k[order[j - 1]], d->k[x]) > 0) {
                    order[j] = order[j - 1];
                    j--;
                }
                order[j] = x;
            }
        jb_put(b, "{", 1);
        for (size_t i = 0; i < d->n; i++) {
            if (i) jb_puts(b, o->item_sep);
            if (o->indent >= 0) newline(b, o, level + 1);
            if (!dump_key(b, d->k[order[i]], o)) return false;
            jb_puts(b, o->key_sep);
            if (!dump(b, d->v[order[i]], o, level + 1)) return false;
        }
        if (o->indent >= 0) newline(b, o, level);
        jb_put(b, "}", 1);
        return true;
    }
    default:
        snprintf(o->err, JINJA_ERR, "Object of type %s is not JSON serializable", jv_type_name(v));
        return false;
    }
}

bool jv_to_json(jbuf *b, jv v, bool ensure_ascii, int indent, const char *item_sep, const char *key_sep,
                bool sort_keys, char *err) {
    const jopts o = {ensure_ascii, sort_keys, indent, item_sep, key_sep, err};
    return dump(b, v, &o, 0);
}
