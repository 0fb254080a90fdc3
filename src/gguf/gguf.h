/* gguf.h - reading and writing GGUF files (versions 2 and 3, little-endian).
 *
 * Reading: gguf_open() maps the file read-only and parses the whole header up front:
 * every count, length, offset and tensor extent is checked against the file size with
 * overflow-checked arithmetic, so once it returns SOV_OK every pointer handed out points
 * inside the mapping. Strings are not NUL-terminated in the file: keys and tensor names
 * are copied (NUL-terminated) into the gguf_file; string values and string-array items
 * are handed out as (pointer, length) views into the mapping.
 *
 * Layout of a file (all integers little-endian):
 *   "GGUF" u32 version, u64 n_tensors, u64 n_kv
 *   n_kv x { string key, u32 value_type, value }
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset }
 *   padding to general.alignment (default 32), then the tensor data; each tensor's
 *   offset is relative to the start of the data and a multiple of the alignment.
 *   string = u64 length + bytes; array = u32 item type, u64 count, items. */
#ifndef SOV_GGUF_H
#define SOV_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "sov.h"

typedef enum gguf_vtype {
    GGUF_U8 = 0,
    GGUF_I8 = 1,
    GGUF_U16 = 2,
    GGUF_I16 = 3,
    GGUF_U32 = 4,
    GGUF_I32 = 5,
    GGUF_F32 = 6,
    GGUF_BOOL = 7,
    GGUF_STRING = 8,
    GGUF_ARRAY = 9,
    GGUF_U64 = 10,
    GGUF_I64 = 11,
    GGUF_F64 = 12,
    GGUF_VTYPE_COUNT
} gguf_vtype;

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

typedef struct gguf_str {
    const char *ptr; /* into the mapping; not NUL-terminated */
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    char *key;          /* NUL-terminated copy */
    gguf_vtype type;    /* value type */
    uint64_t offset;    /* file offset of the value (for error messages) */
    /* scalars (type != ARRAY): the decoded value */
    union {
        uint64_t u;     /* unsigned ints and bool */
        int64_t i;      /* signed ints */
        double f;       /* floats */
        gguf_str s;     /* strings */
    } v;
    /* arrays */
    gguf_vtype arr_type;       /* item type */
    uint64_t arr_n;            /* item count */
    const uint8_t *arr_data;   /* first item (fixed-size items are packed) */
    const uint8_t **arr_strs;  /* for string arrays: each item's length prefix */
} gguf_kv;

typedef struct gguf_tensor {
    char *name;                /* NUL-terminated copy */
    uint32_t n_dims;           /* 1..4 */
    int64_t ne[GGUF_MAX_DIMS]; /* elements per dimension, ne[0] innermost; unused = 1 */
    uint32_t type;             /* sov_type id */
    uint64_t offset;           /* relative to the data section */
    uint64_t n_elements;
    uint64_t nbytes;
    const void *data;          /* into the mapping */
} gguf_tensor;

typedef struct gguf_file {
    const uint8_t *base; /* the whole file */
    size_t size;
    bool mapped;         /* base is an mmap (else owned by the caller of gguf_parse) */
    struct stat st;      /* the mapped file's status when it was opened (mapped only) */
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset; /* file offset of the tensor data section */
    uint64_t n_kv;
    gguf_kv *kv;
    uint64_t n_tensors;
    gguf_tensor *tensors;
    uint32_t *kv_hash;     /* open-addressing index of kv by key (UINT32_MAX = empty) */
    uint32_t kv_hash_cap;
    uint32_t *tensor_hash; /* the same for tensors by name */
    uint32_t tensor_hash_cap;
} gguf_file;

/* Maps and parses path. Errors: SOV_ERR_IO, SOV_ERR_FORMAT (with the field and offset in
 * sov_last_error()), SOV_ERR_UNSUPPORTED (version, big-endian), SOV_ERR_NOMEM. */
sov_status gguf_open(const char *path, gguf_file **out);
/* Parses a file image already in memory (which must outlive the result). */
sov_status gguf_parse(const void *data, size_t size, gguf_file **out);
void gguf_close(gguf_file *f);

/* ---- metadata lookup ---- */
const gguf_kv *gguf_find(const gguf_file *f, const char *key);
/* Typed getters: true and *out set when key exists with a compatible type (any integer
 * type whose value fits for the integer getters; any float or integer for get_f32). */
bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
bool gguf_get_i32(const gguf_file *f, const char *key, int32_t *out);
bool gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out);
bool gguf_get_f32(const gguf_file *f, const char *key, float *out);
bool gguf_get_bool(const gguf_file *f, const char *key, bool *out);
bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);
/* Copies a string value NUL-terminated into buf; false if missing, not a string, or
 * too long. */
bool gguf_get_cstr(const gguf_file *f, const char *key, char *buf, size_t cap);
/* Array item access; the caller checks arr_type and bounds (i < arr_n). */
gguf_str gguf_arr_str(const gguf_kv *kv, uint64_t i);
int64_t gguf_arr_int(const gguf_kv *kv, uint64_t i);  /* any integer item type */
double gguf_arr_float(const gguf_kv *kv, uint64_t i); /* float or integer item type */

const char *gguf_vtype_name(gguf_vtype t);
/* The value of kv as a short printable string (arrays summarised). */
void gguf_kv_format(const gguf_kv *kv, char *buf, size_t cap);

/* ---- tensors ---- */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* ---- writing ---- */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
/* Setting a key twice replaces the value. */
void gguf_set_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_set_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_set_u64(gguf_writer *w, const char *key, uint64_t v);
void gguf_set_f32(gguf_writer *w, const char *key, float v);
void gguf_set_bool(gguf_writer *w, const char *key, bool v);
void gguf_set_str(gguf_writer *w, const char *key, const char *v);
void gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n);
/* Array of fixed-size items (type U8..F64 except STRING/ARRAY), copied. */
void gguf_set_arr(gguf_writer *w, const char *key, gguf_vtype type, const void *items, uint64_t n);
/* Copies every key/value of a parsed file (e.g. to keep a model's metadata). */
void gguf_copy_kv(gguf_writer *w, const gguf_file *src);
/* Declares a tensor; data is produced at write time by the fill callback, in order of
 * declaration. ne has n_dims entries. Returns its index. */
int gguf_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                    const int64_t *ne);

/* Writes the file. fill(user, index, dst, nbytes) produces tensor `index`'s bytes
 * (returns false to abort). progress, if set, is told the fraction done. */
typedef bool (*gguf_fill_fn)(void *user, int index, void *dst, size_t nbytes);
sov_status gguf_writer_write(gguf_writer *w, const char *path, gguf_fill_fn fill, void *user,
                             sov_progress_fn progress, void *progress_user);

#endif
