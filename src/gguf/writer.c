/* writer.c - writing GGUF v3 files.
 *
 * Metadata and tensor declarations are collected in memory; gguf_writer_write() then
 * writes the header, pads to the alignment and streams each tensor's bytes from the
 * caller's fill callback, one tensor buffer at a time, so a multi-gigabyte model never
 * needs to be in memory at once. The file is written to PATH.tmp and renamed into place,
 * so a failed write never leaves a half file under the final name. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/status.h"
#include "core/util.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

typedef struct wkv {
    char *key;
    gguf_vtype type;
    gguf_vtype arr_type;
    uint64_t arr_n;
    uint8_t scalar[8];
    char *str;          /* STRING */
    void *items;        /* fixed-size array items */
    char **strs;        /* string array items */
} wkv;

typedef struct wtensor {
    char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset;
} wtensor;

struct gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    bool oom;
};

static int item_size(gguf_vtype t) {
    switch (t) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0;
    }
}

gguf_writer *gguf_writer_new(void) { return calloc(1, sizeof(gguf_writer)); }

static void free_kv(wkv *kv) {
    free(kv->key);
    free(kv->str);
    free(kv->items);
    if (kv->strs)
        for (uint64_t i = 0; i < kv->arr_n; i++) free(kv->strs[i]);
    free(kv->strs);
    memset(kv, 0, sizeof *kv);
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) free_kv(&w->kv[i]);
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

/* The slot for key: an existing one (cleared) or a new one. */
static wkv *slot(gguf_writer *w, const char *key, gguf_vtype type) {
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            char *k = w->kv[i].key;
            w->kv[i].key = NULL;
            free_kv(&w->kv[i]);
            w->kv[i].key = k;
            w->kv[i].type = type;
            return &w->kv[i];
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *p = realloc(w->kv, cap * sizeof *p);
        if (!p) {
            w->oom = true;
            return NULL;
        }
        w->kv = p;
        w->cap_kv = cap;
    }
    wkv *kv = &w->kv[w->n_kv];
    memset(kv, 0, sizeof *kv);
    kv->key = strdup(key);
    if (!kv->key) {
        w->oom = true;
        return NULL;
    }
    kv->type = type;
    w->n_kv++;
    return kv;
}

static void set_scalar(gguf_writer *w, const char *key, gguf_vtype t, const void *v) {
    wkv *kv = slot(w, key, t);
    if (kv) memcpy(kv->scalar, v, (size_t)item_size(t));
}

void gguf_set_u32(gguf_writer *w, const char *key, uint32_t v) { set_scalar(w, key, GGUF_U32, &v); }
void gguf_set_i32(gguf_writer *w, const char *key, int32_t v) { set_scalar(w, key, GGUF_I32, &v); }
void gguf_set_u64(gguf_writer *w, const char *key, uint64_t v) { set_scalar(w, key, GGUF_U64, &v); }
void gguf_set_f32(gguf_writer *w, const char *key, float v) { set_scalar(w, key, GGUF_F32, &v); }
void gguf_set_bool(gguf_writer *w, const char *key, bool v) {
    uint8_t b = v;
    set_scalar(w, key, GGUF_BOOL, &b);
}

void gguf_set_str(gguf_writer *w, const char *key, const char *v) {
    wkv *kv = slot(w, key, GGUF_STRING);
    if (kv && !(kv->str = strdup(v))) w->oom = true;
}

void gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n) {
    wkv *kv = slot(w, key, GGUF_ARRAY);
    if (!kv) return;
    kv->arr_type = GGUF_STRING;
    kv->strs = calloc(n ? n : 1, sizeof *kv->strs);
    if (!kv->strs) {
        w->oom = true;
        return;
    }
    kv->arr_n = n;
    for (uint64_t i = 0; i < n; i++)
        if (!(kv->strs[i] = strdup(v[i]))) w->oom = true;
}

void gguf_set_arr(gguf_writer *w, const char *key, gguf_vtype type, const void *items, uint64_t n) {
    wkv *kv = slot(w, key, GGUF_ARRAY);
    if (!kv) return;
    size_t sz = (size_t)item_size(type) * n;
    kv->arr_type = type;
    kv->items = malloc(sz ? sz : 1);
    if (!kv->items) {
        w->oom = true;
        return;
    }
    kv->arr_n = n;
    memcpy(kv->items, items, sz);
}

void gguf_copy_kv(gguf_writer *w, const gguf_file *src) {
    for (uint64_t i = 0; i < src->n_kv; i++) {
        const gguf_kv *kv = &src->kv[i];
        if (kv->type == GGUF_STRING) {
            char *s = strndup(kv->v.s.ptr, kv->v.s.len);
            if (!s) {
                w->oom = true;
                continue;
            }
            gguf_set_str(w, kv->key, s);
            free(s);
        } else if (kv->type == GGUF_ARRAY && kv->arr_type == GGUF_STRING) {
            char **v = calloc(kv->arr_n ? kv->arr_n : 1, sizeof *v);
            if (!v) {
                w->oom = true;
                continue;
            }
            for (uint64_t j = 0; j < kv->arr_n; j++) {
                gguf_str s = gguf_arr_str(kv, j);
                if (!(v[j] = strndup(s.ptr, s.len))) w->oom = true;
            }
            if (!w->oom) gguf_set_arr_str(w, kv->key, (const char *const *)v, kv->arr_n);
            for (uint64_t j = 0; j < kv->arr_n; j++) free(v[j]);
            free(v);
        } else if (kv->type == GGUF_ARRAY) {
            if (item_size(kv->arr_type)) gguf_set_arr(w, kv->key, kv->arr_type, kv->arr_data, kv->arr_n);
        } else {
            /* scalars: re-encode from the decoded value in the original type */
            uint8_t buf[8] = {0};
            switch (kv->type) {
            case GGUF_F32: { float x = (float)kv->v.f; memcpy(buf, &x, 4); break; }
            case GGUF_F64: memcpy(buf, &kv->v.f, 8); break;
            case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64: memcpy(buf, &kv->v.i, 8); break;
            default: memcpy(buf, &kv->v.u, 8); break;
            }
            set_scalar(w, kv->key, kv->type, buf);
        }
    }
}

int gguf_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne) {
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *p = realloc(w->t, cap * sizeof *p);
        if (!p) {
            w->oom = true;
            return -1;
        }
        w->t = p;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) {
        w->oom = true;
        return -1;
    }
    t->type = type;
    t->n_dims = n_dims;
    uint64_t n = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = d < n_dims ? ne[d] : 1;
        n *= (uint64_t)t->ne[d];
    }
    t->nbytes = sov_row_size(type, t->ne[0]) * (n / (uint64_t)(t->ne[0] ? t->ne[0] : 1));
    return (int)w->n_t++;
}

/* ---- serialisation ---- */

typedef struct out {
    FILE *f;
    bool err;
} out;

static void put(out *o, const void *p, size_t n) {
    if (!o->err && n && fwrite(p, 1, n, o->f) != n) o->err = true;
}
static void put_u32(out *o, uint32_t v) { put(o, &v, 4); }
static void put_u64(out *o, uint64_t v) { put(o, &v, 8); }
static void put_str(out *o, const char *s) {
    uint64_t n = strlen(s);
    put_u64(o, n);
    put(o, s, n);
}

sov_status gguf_writer_write(gguf_writer *w, const char *path, gguf_fill_fn fill, void *user,
                             sov_progress_fn progress, void *progress_user) {
    if (w->oom) return sov_fail(SOV_ERR_NOMEM, "gguf: out of memory building '%s'", path);
    const uint64_t align = GGUF_DEFAULT_ALIGNMENT;
    uint64_t off = 0, total = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        sov_align_up_u64(off + w->t[i].nbytes, align, &off);
        total += w->t[i].nbytes;
    }
    char *tmp = malloc(strlen(path) + 8);
    if (!tmp) return sov_fail(SOV_ERR_NOMEM, "gguf: out of memory");
    sprintf(tmp, "%s.tmp", path);
    out o = {fopen(tmp, "wb"), false};
    if (!o.f) {
        sov_status st = sov_fail(SOV_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
        free(tmp);
        return st;
    }
    put(&o, "GGUF", 4);
    put_u32(&o, 3);
    put_u64(&o, w->n_t);
    put_u64(&o, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        const wkv *kv = &w->kv[i];
        put_str(&o, kv->key);
        put_u32(&o, kv->type);
        if (kv->type == GGUF_STRING) {
            put_str(&o, kv->str);
        } else if (kv->type == GGUF_ARRAY) {
            put_u32(&o, kv->arr_type);
            put_u64(&o, kv->arr_n);
            if (kv->arr_type == GGUF_STRING) {
                for (uint64_t j = 0; j < kv->arr_n; j++) put_str(&o, kv->strs[j]);
            } else {
                put(&o, kv->items, (size_t)item_size(kv->arr_type) * kv->arr_n);
            }
        } else {
            put(&o, kv->scalar, (size_t)item_size(kv->type));
        }
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(&o, t->name);
        put_u32(&o, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put_u64(&o, (uint64_t)t->ne[d]);
        put_u32(&o, t->type);
        put_u64(&o, t->offset);
    }
    static const uint8_t zeros[GGUF_DEFAULT_ALIGNMENT];
    long pos = ftell(o.f);
    if (pos < 0) o.err = true;
    uint64_t data_start = 0;
    sov_align_up_u64((uint64_t)(pos < 0 ? 0 : pos), align, &data_start);
    put(&o, zeros, data_start - (uint64_t)(pos < 0 ? 0 : pos));

    sov_status st = SOV_OK;
    uint64_t written = 0, at = 0;
    void *buf = NULL;
    size_t buf_cap = 0;
    for (size_t i = 0; i < w->n_t && !o.err && !st; i++) {
        const wtensor *t = &w->t[i];
        put(&o, zeros, t->offset - at);
        if (t->nbytes > buf_cap) {
            free(buf);
            buf_cap = t->nbytes;
            buf = malloc(buf_cap);
            if (!buf) {
                st = sov_fail(SOV_ERR_NOMEM, "gguf: out of memory for tensor '%s' (%" PRIu64 " bytes)",
                              t->name, t->nbytes);
                break;
            }
        }
        memset(buf, 0, t->nbytes);
        if (fill && !fill(user, (int)i, buf, t->nbytes)) {
            st = sov_fail(SOV_ERR_ARG, "gguf: producing tensor '%s' failed", t->name);
            break;
        }
        put(&o, buf, t->nbytes);
        at = t->offset + t->nbytes;
        written += t->nbytes;
        if (progress && total) progress((float)((double)written / (double)total), progress_user);
    }
    free(buf);
    if (!st && o.err) st = sov_fail(SOV_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
    if (fclose(o.f) != 0 && !st) st = sov_fail(SOV_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
    if (!st && rename(tmp, path) != 0)
        st = sov_fail(SOV_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    if (st) unlink(tmp);
    free(tmp);
    return st;
}
