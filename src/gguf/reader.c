/* reader.c - the validating GGUF parser.
 *
 * A cursor walks the header; every read checks that the bytes exist before touching
 * them, so a truncated file fails with the name of the field being read and its offset.
 * Counts read from the file are checked against the bytes left before anything is
 * allocated for them (an item needs at least one byte, a string at least its 8-byte
 * length), so a forged count cannot make the parser allocate gigabytes or loop for long.
 * Tensor extents are checked in 64-bit arithmetic that reports overflow. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"
#include "core/util.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

enum { MAX_ARRAY_DEPTH = 8, MAX_NAME_LEN = 65535 };

typedef struct cursor {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
} cursor;

static sov_status truncated(const cursor *c, const char *what, uint64_t need) {
    return sov_fail(SOV_ERR_FORMAT,
                    "gguf: file truncated: %s at offset %" PRIu64 " needs %" PRIu64
                    " bytes but the file has %" PRIu64 " bytes",
                    what, c->pos, need, c->size);
}

static bool has(const cursor *c, uint64_t n) { return n <= c->size - c->pos; }

static sov_status rd(cursor *c, void *dst, uint64_t n, const char *what) {
    if (!has(c, n)) return truncated(c, what, n);
    memcpy(dst, c->base + c->pos, n);
    c->pos += n;
    return SOV_OK;
}

static sov_status rd_u32(cursor *c, uint32_t *v, const char *what) { return rd(c, v, 4, what); }
static sov_status rd_u64(cursor *c, uint64_t *v, const char *what) { return rd(c, v, 8, what); }

/* A string: u64 length + bytes, returned as a view. */
static sov_status rd_str(cursor *c, gguf_str *s, const char *what) {
    uint64_t at = c->pos, len = 0;
    sov_status st = rd_u64(c, &len, what);
    if (st) return st;
    if (!has(c, len)) {
        return sov_fail(SOV_ERR_FORMAT,
                        "gguf: %s at offset %" PRIu64 " has length %" PRIu64
                        ", past the end of the file (%" PRIu64 " bytes)",
                        what, at, len, c->size);
    }
    s->ptr = (const char *)c->base + c->pos;
    s->len = len;
    c->pos += len;
    return SOV_OK;
}

/* A key or tensor name: non-empty, bounded, no NUL inside; copied NUL-terminated. */
static sov_status rd_name(cursor *c, char **out, const char *what) {
    uint64_t at = c->pos;
    gguf_str s;
    sov_status st = rd_str(c, &s, what);
    if (st) return st;
    if (s.len == 0 || s.len > MAX_NAME_LEN || memchr(s.ptr, '\0', s.len)) {
        return sov_fail(SOV_ERR_FORMAT,
                        "gguf: %s at offset %" PRIu64 " is empty, longer than %d bytes or holds a NUL",
                        what, at, MAX_NAME_LEN);
    }
    char *p = malloc(s.len + 1);
    if (!p) return sov_fail(SOV_ERR_NOMEM, "gguf: out of memory reading %s", what);
    memcpy(p, s.ptr, s.len);
    p[s.len] = '\0';
    *out = p;
    return SOV_OK;
}

static int scalar_size(gguf_vtype t) {
    switch (t) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0;
    }
}

const char *gguf_vtype_name(gguf_vtype t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    return (unsigned)t < GGUF_VTYPE_COUNT ? names[t] : "unknown";
}

/* Decodes a fixed-size scalar at p into kv->v. */
static void decode_scalar(gguf_vtype t, const uint8_t *p, gguf_kv *kv) {
    switch (t) {
    case GGUF_U8: kv->v.u = p[0]; break;
    case GGUF_BOOL: kv->v.u = p[0] != 0; break;
    case GGUF_I8: kv->v.i = (int8_t)p[0]; break;
    case GGUF_U16: { uint16_t x; memcpy(&x, p, 2); kv->v.u = x; break; }
    case GGUF_I16: { int16_t x; memcpy(&x, p, 2); kv->v.i = x; break; }
    case GGUF_U32: { uint32_t x; memcpy(&x, p, 4); kv->v.u = x; break; }
    case GGUF_I32: { int32_t x; memcpy(&x, p, 4); kv->v.i = x; break; }
    case GGUF_F32: { float x; memcpy(&x, p, 4); kv->v.f = x; break; }
    case GGUF_U64: { uint64_t x; memcpy(&x, p, 8); kv->v.u = x; break; }
    case GGUF_I64: { int64_t x; memcpy(&x, p, 8); kv->v.i = x; break; }
    case GGUF_F64: { double x; memcpy(&x, p, 8); kv->v.f = x; break; }
    default: break;
    }
}

/* Skips (validating) an array's items; used for nested arrays, whose contents sov does
 * not need but whose extent it must know. */
static sov_status skip_array(cursor *c, const char *key, int depth);

static sov_status skip_value(cursor *c, gguf_vtype t, const char *key, int depth) {
    int sz = scalar_size(t);
    if (sz) {
        if (!has(c, (uint64_t)sz)) return truncated(c, "metadata value", (uint64_t)sz);
        c->pos += (uint64_t)sz;
        return SOV_OK;
    }
    if (t == GGUF_STRING) {
        gguf_str s;
        return rd_str(c, &s, "metadata string");
    }
    if (t == GGUF_ARRAY) return skip_array(c, key, depth + 1);
    return sov_fail(SOV_ERR_FORMAT, "gguf: key '%s' has unknown value type %u at offset %" PRIu64,
                    key, (unsigned)t, c->pos);
}

static sov_status skip_array(cursor *c, const char *key, int depth) {
    if (depth > MAX_ARRAY_DEPTH) {
        return sov_fail(SOV_ERR_FORMAT, "gguf: key '%s' nests arrays deeper than %d at offset %" PRIu64,
                        key, MAX_ARRAY_DEPTH, c->pos);
    }
    uint32_t it = 0;
    uint64_t n = 0;
    sov_status st = rd_u32(c, &it, "array item type");
    if (!st) st = rd_u64(c, &n, "array length");
    if (st) return st;
    if (it >= GGUF_VTYPE_COUNT) {
        return sov_fail(SOV_ERR_FORMAT, "gguf: key '%s' has an array of unknown type %u at offset %" PRIu64,
                        key, it, c->pos - 12);
    }
    int sz = scalar_size((gguf_vtype)it);
    uint64_t min_item = sz ? (uint64_t)sz : (it == GGUF_STRING ? 8 : 12);
    if (n > (c->size - c->pos) / min_item) {
        return sov_fail(SOV_ERR_FORMAT,
                        "gguf: key '%s' array of %" PRIu64 " items at offset %" PRIu64
                        " does not fit in the %" PRIu64 " bytes left",
                        key, n, c->pos - 8, c->size - c->pos);
    }
    if (sz) {
        c->pos += n * (uint64_t)sz;
        return SOV_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        st = skip_value(c, (gguf_vtype)it, key, depth);
        if (st) return st;
    }
    return SOV_OK;
}

static sov_status read_kv(cursor *c, gguf_kv *kv) {
    sov_status st = rd_name(c, &kv->key, "metadata key");
    if (st) return st;
    uint32_t t = 0;
    kv->offset = c->pos;
    if ((st = rd_u32(c, &t, "metadata value type"))) return st;
    if (t >= GGUF_VTYPE_COUNT) {
        return sov_fail(SOV_ERR_FORMAT, "gguf: key '%s' has unknown value type %u at offset %" PRIu64,
                        kv->key, t, kv->offset);
    }
    kv->type = (gguf_vtype)t;
    int sz = scalar_size(kv->type);
    if (sz) {
        if (!has(c, (uint64_t)sz)) return truncated(c, "metadata value", (uint64_t)sz);
        decode_scalar(kv->type, c->base + c->pos, kv);
        c->pos += (uint64_t)sz;
        return SOV_OK;
    }
    if (kv->type == GGUF_STRING) return rd_str(c, &kv->v.s, "metadata string value");

    /* array */
    uint64_t arr_at = c->pos;
    uint32_t it = 0;
    if ((st = rd_u32(c, &it, "array item type"))) return st;
    if ((st = rd_u64(c, &kv->arr_n, "array length"))) return st;
    if (it >= GGUF_VTYPE_COUNT) {
        return sov_fail(SOV_ERR_FORMAT, "gguf: key '%s' has an array of unknown type %u at offset %" PRIu64,
                        kv->key, it, arr_at);
    }
    kv->arr_type = (gguf_vtype)it;
    kv->arr_data = c->base + c->pos;
    int isz = scalar_size(kv->arr_type);
    uint64_t min_item = isz ? (uint64_t)isz : (it == GGUF_STRING ? 8 : 12);
    if (kv->arr_n > (c->size - c->pos) / min_item) {
        return sov_fail(SOV_ERR_FORMAT,
                        "gguf: key '%s' array of %" PRIu64 " items at offset %" PRIu64
                        " does not fit in the %" PRIu64 " bytes left",
                        kv->key, kv->arr_n, arr_at, c->size - c->pos);
    }
    if (isz) {
        c->pos += kv->arr_n * (uint64_t)isz;
        return SOV_OK;
    }
    if (kv->arr_type == GGUF_STRING) {
        kv->arr_strs = malloc(kv->arr_n ? kv->arr_n * sizeof *kv->arr_strs : 1);
        if (!kv->arr_strs) return sov_fail(SOV_ERR_NOMEM, "gguf: out of memory for array '%s'", kv->key);
        for (uint64_t i = 0; i < kv->arr_n; i++) {
            kv->arr_strs[i] = c->base + c->pos;
            gguf_str s;
            if ((st = rd_str(c, &s, "array string item"))) return st;
        }
        return SOV_OK;
    }
    /* nested arrays: validated and skipped */
    for (uint64_t i = 0; i < kv->arr_n; i++)
        if ((st = skip_array(c, kv->key, 1))) return st;
    return SOV_OK;
}

static uint32_t hash_name(const char *s) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* An open-addressing index of n names; each name is a char * found `stride` bytes apart
 * starting at `first`. Fails (naming `what`) on a duplicate name. */
static sov_status build_index(const void *first, size_t stride, uint64_t n, const char *what,
                              uint32_t **slots_out, uint32_t *cap_out) {
    uint32_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    uint32_t *slots = malloc(cap * sizeof *slots);
    if (!slots) return sov_fail(SOV_ERR_NOMEM, "gguf: out of memory for the %s index", what);
    memset(slots, 0xff, cap * sizeof *slots);
    *slots_out = slots;
    *cap_out = cap;
#define NAME_AT(i) (*(char *const *)((const char *)first + (size_t)(i) * stride))
    for (uint32_t i = 0; i < n; i++) {
        uint32_t h = hash_name(NAME_AT(i)) & (cap - 1);
        while (slots[h] != UINT32_MAX) {
            if (strcmp(NAME_AT(slots[h]), NAME_AT(i)) == 0)
                return sov_fail(SOV_ERR_FORMAT, "gguf: %s '%s' appears twice", what, NAME_AT(i));
            h = (h + 1) & (cap - 1);
        }
        slots[h] = i;
    }
#undef NAME_AT
    return SOV_OK;
}

static sov_status read_tensor_info(cursor *c, gguf_tensor *t, uint64_t index) {
    sov_status st = rd_name(c, &t->name, "tensor name");
    if (st) return st;
    uint64_t at = c->pos;
    if ((st = rd_u32(c, &t->n_dims, "tensor dimension count"))) return st;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) {
        return sov_fail(SOV_ERR_FORMAT, "gguf: tensor '%s' has %u dimensions at offset %" PRIu64
                        " (1 to %d allowed)", t->name, t->n_dims, at, GGUF_MAX_DIMS);
    }
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne = 0;
        at = c->pos;
        if ((st = rd_u64(c, &ne, "tensor dimension"))) return st;
        if (ne > (uint64_t)INT64_MAX) {
            return sov_fail(SOV_ERR_FORMAT, "gguf: tensor '%s' dimension %u is %" PRIu64
                            " at offset %" PRIu64 ", too large", t->name, d, ne, at);
        }
        t->ne[d] = (int64_t)ne;
    }
    at = c->pos;
    if ((st = rd_u32(c, &t->type, "tensor type"))) return st;
    const sov_type_traits *tr = sov_type_info(t->type);
    if (!tr || t->type >= SOV_TYPE_COUNT) {
        return sov_fail(SOV_ERR_FORMAT, "gguf: tensor '%s' has unknown type id %u at offset %" PRIu64,
                        t->name, t->type, at);
    }
    if ((st = rd_u64(c, &t->offset, "tensor data offset"))) return st;

    uint64_t n = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        if (!sov_mul_u64(n, (uint64_t)t->ne[d], &n)) {
            return sov_fail(SOV_ERR_FORMAT, "gguf: tensor '%s' element count overflows 64 bits", t->name);
        }
    }
    t->n_elements = n;
    if (t->ne[0] % tr->block_size != 0) {
        return sov_fail(SOV_ERR_FORMAT, "gguf: tensor '%s' of type %s has rows of %" PRId64
                        " values, not a multiple of its block size %d",
                        t->name, tr->name, t->ne[0], tr->block_size);
    }
    uint64_t rows = n / (t->ne[0] ? (uint64_t)t->ne[0] : 1);
    uint64_t row_bytes = (uint64_t)t->ne[0] / (uint64_t)tr->block_size * (uint64_t)tr->type_size;
    if (t->ne[0] == 0) rows = 0;
    if (!sov_mul_u64(rows, row_bytes, &t->nbytes)) {
        return sov_fail(SOV_ERR_FORMAT, "gguf: tensor '%s' byte size overflows 64 bits", t->name);
    }
    (void)index;
    return SOV_OK;
}

static sov_status parse(gguf_file *f) {
    cursor c = {f->base, f->size, 0};
    uint8_t magic[4];
    sov_status st = rd(&c, magic, 4, "magic");
    if (st) return st;
    if (memcmp(magic, "GGUF", 4) != 0) {
        return sov_fail(SOV_ERR_FORMAT, "gguf: not a GGUF file: bad magic %02x %02x %02x %02x at offset 0",
                        magic[0], magic[1], magic[2], magic[3]);
    }
    if ((st = rd_u32(&c, &f->version, "version"))) return st;
    if (f->version == 1) {
        return sov_fail(SOV_ERR_UNSUPPORTED, "gguf: version 1 files are not supported; "
                        "convert the model again with a current converter");
    }
    if (f->version != 2 && f->version != 3) {
        if ((f->version & 0xffff) == 0 && (f->version >> 24) >= 2 && (f->version >> 24) <= 3)
            return sov_fail(SOV_ERR_UNSUPPORTED, "gguf: big-endian GGUF files are not supported");
        return sov_fail(SOV_ERR_UNSUPPORTED, "gguf: version %u at offset 4 is not supported (2 and 3 are)",
                        f->version);
    }
    if ((st = rd_u64(&c, &f->n_tensors, "tensor count"))) return st;
    if ((st = rd_u64(&c, &f->n_kv, "metadata count"))) return st;
    /* a key/value needs >= 13 bytes (8 len + 1 char + 4 type), a tensor info >= 33 */
    if (f->n_kv > (c.size - c.pos) / 13 || f->n_kv >= UINT32_MAX / 2) {
        return sov_fail(SOV_ERR_FORMAT, "gguf: metadata count %" PRIu64 " at offset 16 cannot fit in a %"
                        PRIu64 "-byte file", f->n_kv, c.size);
    }
    if (f->n_tensors > (c.size - c.pos) / 33 || f->n_tensors >= UINT32_MAX / 2) {
        return sov_fail(SOV_ERR_FORMAT, "gguf: tensor count %" PRIu64 " at offset 8 cannot fit in a %"
                        PRIu64 "-byte file", f->n_tensors, c.size);
    }
    f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors) return sov_fail(SOV_ERR_NOMEM, "gguf: out of memory for the header");

    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        if ((st = read_kv(&c, &f->kv[i]))) return st;
        if (strcmp(f->kv[i].key, "general.alignment") == 0) {
            const gguf_kv *kv = &f->kv[i];
            if (kv->type != GGUF_U32 && kv->type != GGUF_U64 && kv->type != GGUF_I32) {
                return sov_fail(SOV_ERR_FORMAT, "gguf: general.alignment at offset %" PRIu64
                                " has type %s, expected u32", kv->offset, gguf_vtype_name(kv->type));
            }
            uint64_t a = kv->type == GGUF_I32 ? (uint64_t)(kv->v.i < 0 ? 0 : kv->v.i) : kv->v.u;
            if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 20)) {
                return sov_fail(SOV_ERR_FORMAT, "gguf: general.alignment %" PRIu64
                                " at offset %" PRIu64 " is not a power of two up to 1 MiB", a, kv->offset);
            }
            f->alignment = a;
        }
    }
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if ((st = read_tensor_info(&c, &f->tensors[i], i))) return st;

    if (!sov_align_up_u64(c.pos, f->alignment, &f->data_offset) ||
        (f->n_tensors > 0 && f->data_offset > f->size)) {
        return sov_fail(SOV_ERR_FORMAT, "gguf: tensor data section (offset %" PRIu64
                        ") starts past the end of the file (%zu bytes)", f->data_offset, f->size);
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint64_t start, end;
        if (t->offset % f->alignment != 0) {
            return sov_fail(SOV_ERR_FORMAT, "gguf: tensor '%s' data offset %" PRIu64
                            " is not a multiple of the alignment %" PRIu64, t->name, t->offset, f->alignment);
        }
        if (!sov_add_u64(f->data_offset, t->offset, &start) || !sov_add_u64(start, t->nbytes, &end) ||
            end > f->size) {
            return sov_fail(SOV_ERR_FORMAT, "gguf: tensor '%s' data [%" PRIu64 " + %" PRIu64 " bytes)"
                            " extends past the end of the file (%zu bytes)",
                            t->name, f->data_offset + t->offset, t->nbytes, f->size);
        }
        t->data = f->base + start;
    }
    st = build_index(&f->kv[0].key, sizeof *f->kv, f->n_kv, "metadata key", &f->kv_hash, &f->kv_hash_cap);
    if (st) return st;
    return build_index(&f->tensors[0].name, sizeof *f->tensors, f->n_tensors, "tensor name",
                       &f->tensor_hash, &f->tensor_hash_cap);
}

sov_status gguf_parse(const void *data, size_t size, gguf_file **out) {
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) return sov_fail(SOV_ERR_NOMEM, "gguf: out of memory");
    f->base = data;
    f->size = size;
    sov_status st = parse(f);
    if (st) {
        gguf_close(f);
        return st;
    }
    *out = f;
    return SOV_OK;
}

sov_status gguf_open(const char *path, gguf_file **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sov_fail(SOV_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return sov_fail(SOV_ERR_IO, "'%s' is not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size == 0) {
        close(fd);
        return sov_fail(SOV_ERR_FORMAT, "gguf: '%s' is empty", path);
    }
    /* private: pages a model repacks in place become its own copies; the file never changes */
    void *base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (base == MAP_FAILED) return sov_fail(SOV_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
    sov_status s = gguf_parse(base, size, out);
    if (s) {
        munmap(base, size);
        return s;
    }
    (*out)->mapped = true;
    (*out)->st = st;
    return SOV_OK;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    for (uint64_t i = 0; f->kv && i < f->n_kv; i++) {
        free(f->kv[i].key);
        free(f->kv[i].arr_strs);
    }
    for (uint64_t i = 0; f->tensors && i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->kv);
    free(f->tensors);
    free(f->tensor_hash);
    free(f->kv_hash);
    if (f->mapped) munmap((void *)f->base, f->size);
    free(f);
}

/* ---- lookup ---- */

const gguf_kv *gguf_find(const gguf_file *f, const char *key) {
    if (!f->kv_hash) return NULL;
    uint32_t h = hash_name(key) & (f->kv_hash_cap - 1);
    while (f->kv_hash[h] != UINT32_MAX) {
        const gguf_kv *kv = &f->kv[f->kv_hash[h]];
        if (strcmp(kv->key, key) == 0) return kv;
        h = (h + 1) & (f->kv_hash_cap - 1);
    }
    return NULL;
}

static bool is_uint(gguf_vtype t) { return t == GGUF_U8 || t == GGUF_U16 || t == GGUF_U32 || t == GGUF_U64; }
static bool is_sint(gguf_vtype t) { return t == GGUF_I8 || t == GGUF_I16 || t == GGUF_I32 || t == GGUF_I64; }

/* Any integer value as a signed 128-bit-safe pair: returns false if not an integer. */
static bool kv_int(const gguf_kv *kv, int64_t *sv, uint64_t *uv, bool *neg) {
    if (!kv) return false;
    if (is_uint(kv->type) || kv->type == GGUF_BOOL) {
        *uv = kv->v.u;
        *neg = false;
        *sv = kv->v.u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)kv->v.u;
        return true;
    }
    if (is_sint(kv->type)) {
        *sv = kv->v.i;
        *neg = kv->v.i < 0;
        *uv = *neg ? 0 : (uint64_t)kv->v.i;
        return true;
    }
    return false;
}

bool gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out) {
    int64_t s;
    uint64_t u;
    bool neg;
    if (!kv_int(gguf_find(f, key), &s, &u, &neg) || neg) return false;
    *out = u;
    return true;
}

bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out) {
    uint64_t u;
    if (!gguf_get_u64(f, key, &u) || u > UINT32_MAX) return false;
    *out = (uint32_t)u;
    return true;
}

bool gguf_get_i32(const gguf_file *f, const char *key, int32_t *out) {
    int64_t s;
    uint64_t u;
    bool neg;
    if (!kv_int(gguf_find(f, key), &s, &u, &neg)) return false;
    if (s < INT32_MIN || s > INT32_MAX) return false;
    *out = (int32_t)s;
    return true;
}

bool gguf_get_f32(const gguf_file *f, const char *key, float *out) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return false;
    if (kv->type == GGUF_F32 || kv->type == GGUF_F64) {
        *out = (float)kv->v.f;
        return true;
    }
    int64_t s;
    uint64_t u;
    bool neg;
    if (!kv_int(kv, &s, &u, &neg)) return false;
    *out = (float)s;
    return true;
}

bool gguf_get_bool(const gguf_file *f, const char *key, bool *out) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return false;
    if (kv->type == GGUF_BOOL || is_uint(kv->type)) {
        *out = kv->v.u != 0;
        return true;
    }
    if (is_sint(kv->type)) {
        *out = kv->v.i != 0;
        return true;
    }
    return false;
}

bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv || kv->type != GGUF_STRING) return false;
    *out = kv->v.s;
    return true;
}

bool gguf_get_cstr(const gguf_file *f, const char *key, char *buf, size_t cap) {
    gguf_str s;
    if (!gguf_get_str(f, key, &s) || s.len >= cap) return false;
    memcpy(buf, s.ptr, s.len);
    buf[s.len] = '\0';
    return true;
}

gguf_str gguf_arr_str(const gguf_kv *kv, uint64_t i) {
    gguf_str s;
    const uint8_t *p = kv->arr_strs[i];
    memcpy(&s.len, p, 8);
    s.ptr = (const char *)p + 8;
    return s;
}

int64_t gguf_arr_int(const gguf_kv *kv, uint64_t i) {
    gguf_kv tmp = {0};
    int sz = scalar_size(kv->arr_type);
    decode_scalar(kv->arr_type, kv->arr_data + i * (uint64_t)sz, &tmp);
    if (is_sint(kv->arr_type)) return tmp.v.i;
    if (kv->arr_type == GGUF_F32 || kv->arr_type == GGUF_F64) return (int64_t)tmp.v.f;
    return (int64_t)tmp.v.u;
}

double gguf_arr_float(const gguf_kv *kv, uint64_t i) {
    gguf_kv tmp = {0};
    int sz = scalar_size(kv->arr_type);
    decode_scalar(kv->arr_type, kv->arr_data + i * (uint64_t)sz, &tmp);
    if (kv->arr_type == GGUF_F32 || kv->arr_type == GGUF_F64) return tmp.v.f;
    if (is_sint(kv->arr_type)) return (double)tmp.v.i;
    return (double)tmp.v.u;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    if (!f->tensor_hash) return NULL;
    uint32_t h = hash_name(name) & (f->tensor_hash_cap - 1);
    while (f->tensor_hash[h] != UINT32_MAX) {
        const gguf_tensor *t = &f->tensors[f->tensor_hash[h]];
        if (strcmp(t->name, name) == 0) return t;
        h = (h + 1) & (f->tensor_hash_cap - 1);
    }
    return NULL;
}

/* Appends printable text of a string view, escaping control bytes, truncating to fit. */
static size_t put_escaped(char *buf, size_t cap, size_t at, const char *s, uint64_t len) {
    for (uint64_t i = 0; i < len && at + 5 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\n') { buf[at++] = '\\'; buf[at++] = 'n'; }
        else if (ch < 0x20 || ch == 0x7f) at += (size_t)snprintf(buf + at, cap - at, "\\x%02x", ch);
        else buf[at++] = (char)ch;
    }
    if (at < cap) buf[at] = '\0';
    return at;
}

void gguf_kv_format(const gguf_kv *kv, char *buf, size_t cap) {
    if (cap == 0) return;
    buf[0] = '\0';
    switch (kv->type) {
    case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_U64:
        snprintf(buf, cap, "%" PRIu64, kv->v.u);
        break;
    case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64:
        snprintf(buf, cap, "%" PRId64, kv->v.i);
        break;
    case GGUF_F32: case GGUF_F64:
        snprintf(buf, cap, "%g", kv->v.f);
        break;
    case GGUF_BOOL:
        snprintf(buf, cap, "%s", kv->v.u ? "true" : "false");
        break;
    case GGUF_STRING: {
        size_t at = put_escaped(buf, cap, 0, kv->v.s.ptr, kv->v.s.len > 200 ? 200 : kv->v.s.len);
        if (kv->v.s.len > 200 && at + 4 < cap) strcpy(buf + at, "...");
        break;
    }
    case GGUF_ARRAY: {
        size_t at = (size_t)snprintf(buf, cap, "[%s x %" PRIu64 "]", gguf_vtype_name(kv->arr_type), kv->arr_n);
        for (uint64_t i = 0; i < kv->arr_n && i < 4 && at + 16 < cap; i++) {
            at += (size_t)snprintf(buf + at, cap - at, i ? ", " : " ");
            if (kv->arr_type == GGUF_STRING) {
                gguf_str s = gguf_arr_str(kv, i);
                buf[at++] = '\'';
                at = put_escaped(buf, cap - 2, at, s.ptr, s.len > 24 ? 24 : s.len);
                buf[at++] = '\'';
                buf[at] = '\0';
            } else if (kv->arr_type == GGUF_F32 || kv->arr_type == GGUF_F64) {
                at += (size_t)snprintf(buf + at, cap - at, "%g", gguf_arr_float(kv, i));
            } else if (kv->arr_type != GGUF_ARRAY) {
                at += (size_t)snprintf(buf + at, cap - at, "%" PRId64, gguf_arr_int(kv, i));
            }
        }
        if (kv->arr_n > 4 && at + 5 < cap) strcpy(buf + at, ", ...");
        break;
    }
    default:
        break;
    }
}
