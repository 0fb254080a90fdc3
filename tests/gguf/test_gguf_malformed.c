/* The malformed-GGUF corpus: a generator builds a small valid file, then every
 * truncation of it and a list of targeted corruptions (counts, lengths, types, offsets,
 * alignment, duplicates, nesting). Each must fail cleanly with a one-line message naming
 * the field: through gguf_parse() from memory, gguf_open() from a file, and the
 * `sov inspect` command (exit status 1, one line on stderr). The files are left in
 * $SOV_TEST_TMP/gguf_corpus as seeds for the fuzzer (fuzz/fuzz_gguf.c). */
#include "test.h"

#include <sys/wait.h>

#include "gguf/gguf.h"
#include "quant/quant.h"

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void pad_to(buf *b, size_t align) {
    static const uint8_t z[64];
    while (b->n % align) put(b, z, 1);
}
static void set_u32(buf *b, size_t at, uint32_t v) { memcpy(b->p + at, &v, 4); }
static void set_u64(buf *b, size_t at, uint64_t v) { memcpy(b->p + at, &v, 8); }

/* Offsets of the fields of the valid file the corruptions target. */
typedef struct layout {
    size_t version, n_tensors, n_kv;
    size_t key0_len, kv0_type;          /* general.architecture: string */
    size_t kv1_type, kv1_value;         /* general.alignment: u32 */
    size_t kv2_arr_type, kv2_arr_n;     /* tokens: array of strings */
    size_t kv2_item0_len;
    size_t t0_ndims, t0_ne0, t0_type, t0_offset; /* "a": F32 [8] */
    size_t t1_name_len, t1_ne0, t1_ne1, t1_type, t1_offset; /* "b": Q4_0 [32, 2] */
    size_t header_end;
} layout;

static buf valid_file(layout *L) {
    buf b = {0};
    put(&b, "GGUF", 4);
    L->version = b.n;
    put_u32(&b, 3);
    L->n_tensors = b.n;
    put_u64(&b, 2);
    L->n_kv = b.n;
    put_u64(&b, 3);
    L->key0_len = b.n;
    put_str(&b, "general.architecture");
    L->kv0_type = b.n;
    put_u32(&b, GGUF_STRING);
    put_str(&b, "llama");
    put_str(&b, "general.alignment");
    L->kv1_type = b.n;
    put_u32(&b, GGUF_U32);
    L->kv1_value = b.n;
    put_u32(&b, 32);
    put_str(&b, "tokenizer.ggml.tokens");
    put_u32(&b, GGUF_ARRAY);
    L->kv2_arr_type = b.n;
    put_u32(&b, GGUF_STRING);
    L->kv2_arr_n = b.n;
    put_u64(&b, 2);
    L->kv2_item0_len = b.n;
    put_str(&b, "<s>");
    put_str(&b, "</s>");
    /* tensor a: F32 [8] at 0 */
    put_str(&b, "a");
    L->t0_ndims = b.n;
    put_u32(&b, 1);
    L->t0_ne0 = b.n;
    put_u64(&b, 8);
    L->t0_type = b.n;
    put_u32(&b, SOV_TYPE_F32);
    L->t0_offset = b.n;
    put_u64(&b, 0);
    /* tensor b: Q4_0 [32, 2] at 32 */
    L->t1_name_len = b.n;
    put_str(&b, "b");
    put_u32(&b, 2);
    L->t1_ne0 = b.n;
    put_u64(&b, 32);
    L->t1_ne1 = b.n;
    put_u64(&b, 2);
    L->t1_type = b.n;
    put_u32(&b, SOV_TYPE_Q4_0);
    L->t1_offset = b.n;
    put_u64(&b, 32);
    L->header_end = b.n;
    pad_to(&b, 32);
    for (int i = 0; i < 32 + 36; i++) put(&b, "\x11", 1);
    return b;
}

static const char *corpus_dir(void) {
    static char dir[512];
    test_tmp_path("gguf_corpus", dir, sizeof dir);
    mkdir(dir, 0755);
    return dir;
}

/* Runs `sov inspect path`: exit status 1 and exactly one line on stderr. */
static void check_cli(const char *path) {
    const char *bin = getenv("SOV_BIN");
    if (!bin) return;
    char cmd[4096], errf[700];
    test_tmp_path("inspect_err.txt", errf, sizeof errf);
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s' >/dev/null 2>'%s'", bin, path, errf);
    int rc = system(cmd);
    CHECK_MSG(WIFEXITED(rc) && WEXITSTATUS(rc) == 1, "sov inspect %s exited %d", path, rc);
    FILE *f = fopen(errf, "r");
    int lines = 0, ch;
    while (f && (ch = fgetc(f)) != EOF) lines += ch == '\n';
    if (f) fclose(f);
    CHECK_MSG(lines == 1, "sov inspect %s printed %d lines on stderr", path, lines);
}

/* Expects the image to be rejected with status st and a message containing want. */
static void expect_reject(const char *name, const buf *b, size_t n, sov_status st, const char *want, bool cli) {
    gguf_file *f = NULL;
    uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan catches any read past it */
    memcpy(copy, b->p, n);
    sov_status got = gguf_parse(copy, n, &f);
    CHECK_MSG(got == st, "%s: status %d (%s), want %d", name, got, sov_last_error(), st);
    CHECK_MSG(f == NULL, "%s: a file was returned", name);
    CHECK_MSG(strchr(sov_last_error(), '\n') == NULL && strlen(sov_last_error()) > 10, "%s: message '%s'", name,
              sov_last_error());
    if (want) CHECK_MSG(strstr(sov_last_error(), want) != NULL, "%s: message '%s' lacks '%s'", name, sov_last_error(), want);
    free(copy);

    char path[700];
    snprintf(path, sizeof path, "%s/%s.gguf", corpus_dir(), name);
    FILE *out = fopen(path, "wb");
    if (out) {
        fwrite(b->p, 1, n, out);
        fclose(out);
    }
    if (n > 0) { /* an empty file is refused before parsing, with its own message */
        got = gguf_open(path, &f);
        CHECK_MSG(got == st, "%s: gguf_open status %d", name, got);
    }
    if (cli) check_cli(path);
}

static void valid_file_parses(void) {
    layout L;
    buf b = valid_file(&L);
    gguf_file *f;
    CHECK_EQ(gguf_parse(b.p, b.n, &f), SOV_OK);
    if (f) {
        CHECK_EQ(f->n_tensors, 2);
        CHECK_EQ(f->data_offset % 32, 0);
        gguf_close(f);
    }
    free(b.p);
}

static void every_truncation_is_rejected(void) {
    layout L;
    buf b = valid_file(&L);
    int cli_samples = 0;
    for (size_t n = 0; n < b.n; n++) {
        char name[64];
        snprintf(name, sizeof name, "truncated_%04zu", n);
        /* every length is checked in memory; a sample also through the command */
        const bool cli = n % 23 == 0 && cli_samples++ < 8;
        expect_reject(name, &b, n, SOV_ERR_FORMAT, NULL, cli);
    }
    free(b.p);
}

typedef void (*mutate_fn)(buf *b, const layout *L);

#define MUT(name, body) static void name(buf *b, const layout *L) { (void)L; body; }
MUT(m_magic, memcpy(b->p, "GGUX", 4))
MUT(m_version1, set_u32(b, L->version, 1))
MUT(m_version9, set_u32(b, L->version, 9))
MUT(m_bigendian, set_u32(b, L->version, 0x03000000u))
MUT(m_n_tensors_huge, set_u64(b, L->n_tensors, 1ull << 62))
MUT(m_n_kv_huge, set_u64(b, L->n_kv, UINT64_MAX))
MUT(m_key_len_huge, set_u64(b, L->key0_len, 1ull << 40))
MUT(m_key_len_zero, set_u64(b, L->key0_len, 0))
MUT(m_value_type_bad, set_u32(b, L->kv0_type, 99))
MUT(m_array_type_bad, set_u32(b, L->kv2_arr_type, 13))
MUT(m_array_n_huge, set_u64(b, L->kv2_arr_n, 1ull << 61))
MUT(m_array_item_len_huge, set_u64(b, L->kv2_item0_len, 1ull << 33))
MUT(m_ndims_zero, set_u32(b, L->t0_ndims, 0))
MUT(m_ndims_five, set_u32(b, L->t0_ndims, 5))
MUT(m_dim_negative, set_u64(b, L->t0_ne0, UINT64_MAX))
MUT(m_dims_overflow, set_u64(b, L->t1_ne0, 1ull << 40); set_u64(b, L->t1_ne1, 1ull << 40))
MUT(m_type_unknown, set_u32(b, L->t0_type, 99))
MUT(m_type_removed, set_u32(b, L->t0_type, 4))
MUT(m_row_not_blocks, set_u64(b, L->t1_ne0, 31))
MUT(m_offset_misaligned, set_u64(b, L->t1_offset, 33))
MUT(m_offset_past_end, set_u64(b, L->t1_offset, 1u << 20))
MUT(m_offset_wraps, set_u64(b, L->t1_offset, UINT64_MAX - 31))
MUT(m_extent_past_end, set_u64(b, L->t1_ne1, 3))
MUT(m_alignment_not_pow2, set_u32(b, L->kv1_value, 48))
MUT(m_alignment_zero, set_u32(b, L->kv1_value, 0))
MUT(m_alignment_type, set_u32(b, L->kv1_type, GGUF_F32))
MUT(m_duplicate_tensor, memcpy(b->p + L->t1_name_len + 8, "a", 1))
MUT(m_key_has_nul, b->p[L->key0_len + 8 + 3] = 0)

static void corruptions_are_rejected_naming_the_field(void) {
    static const struct {
        const char *name;
        mutate_fn fn;
        sov_status st;
        const char *want;
    } cases[] = {
        {"bad_magic", m_magic, SOV_ERR_FORMAT, "magic"},
        {"version_1", m_version1, SOV_ERR_UNSUPPORTED, "version 1"},
        {"version_9", m_version9, SOV_ERR_UNSUPPORTED, "version 9"},
        {"big_endian", m_bigendian, SOV_ERR_UNSUPPORTED, "big-endian"},
        {"tensor_count_huge", m_n_tensors_huge, SOV_ERR_FORMAT, "tensor count"},
        {"kv_count_huge", m_n_kv_huge, SOV_ERR_FORMAT, "metadata count"},
        {"key_length_huge", m_key_len_huge, SOV_ERR_FORMAT, "past the end"},
        {"key_length_zero", m_key_len_zero, SOV_ERR_FORMAT, "empty"},
        {"value_type_unknown", m_value_type_bad, SOV_ERR_FORMAT, "unknown value type 99"},
        {"array_type_unknown", m_array_type_bad, SOV_ERR_FORMAT, "unknown type 13"},
        {"array_count_huge", m_array_n_huge, SOV_ERR_FORMAT, "does not fit"},
        {"array_item_length_huge", m_array_item_len_huge, SOV_ERR_FORMAT, "past the end"},
        {"tensor_dims_zero", m_ndims_zero, SOV_ERR_FORMAT, "0 dimensions"},
        {"tensor_dims_five", m_ndims_five, SOV_ERR_FORMAT, "5 dimensions"},
        {"tensor_dim_negative", m_dim_negative, SOV_ERR_FORMAT, "too large"},
        {"tensor_elements_overflow", m_dims_overflow, SOV_ERR_FORMAT, "overflow"},
        {"tensor_type_unknown", m_type_unknown, SOV_ERR_FORMAT, "unknown type id 99"},
        {"tensor_type_removed", m_type_removed, SOV_ERR_FORMAT, "unknown type id 4"},
        {"tensor_row_not_whole_blocks", m_row_not_blocks, SOV_ERR_FORMAT, "block size"},
        {"tensor_offset_misaligned", m_offset_misaligned, SOV_ERR_FORMAT, "alignment"},
        {"tensor_offset_past_end", m_offset_past_end, SOV_ERR_FORMAT, "past the end"},
        {"tensor_offset_wraps", m_offset_wraps, SOV_ERR_FORMAT, "past the end"},
        {"tensor_extent_past_end", m_extent_past_end, SOV_ERR_FORMAT, "past the end"},
        {"alignment_not_power_of_two", m_alignment_not_pow2, SOV_ERR_FORMAT, "power of two"},
        {"alignment_zero", m_alignment_zero, SOV_ERR_FORMAT, "power of two"},
        {"alignment_wrong_type", m_alignment_type, SOV_ERR_FORMAT, "general.alignment"},
        {"tensor_name_duplicate", m_duplicate_tensor, SOV_ERR_FORMAT, "appears twice"},
        {"key_with_nul", m_key_has_nul, SOV_ERR_FORMAT, "NUL"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        layout L;
        buf b = valid_file(&L);
        cases[i].fn(&b, &L);
        expect_reject(cases[i].name, &b, b.n, cases[i].st, cases[i].want, true);
        free(b.p);
    }
}

static void duplicate_key_is_rejected(void) {
    buf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, 0);
    put_u64(&b, 2);
    for (int i = 0; i < 2; i++) {
        put_str(&b, "general.name");
        put_u32(&b, GGUF_U8);
        put(&b, "x", 1);
    }
    expect_reject("key_duplicate", &b, b.n, SOV_ERR_FORMAT, "appears twice", true);
    free(b.p);
}

static void deeply_nested_arrays_are_rejected(void) {
    buf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 2); /* version 2 files parse the same way */
    put_u64(&b, 0);
    put_u64(&b, 1);
    put_str(&b, "nest");
    put_u32(&b, GGUF_ARRAY);
    for (int d = 0; d < 100; d++) {
        put_u32(&b, GGUF_ARRAY);
        put_u64(&b, 1);
    }
    expect_reject("arrays_nested_100_deep", &b, b.n, SOV_ERR_FORMAT, "deeper", true);
    free(b.p);
}

static void nested_arrays_within_the_limit_parse(void) {
    buf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, 0);
    put_u64(&b, 1);
    put_str(&b, "nest");
    put_u32(&b, GGUF_ARRAY);
    put_u32(&b, GGUF_ARRAY);
    put_u64(&b, 2);
    for (int i = 0; i < 2; i++) {
        put_u32(&b, GGUF_I16);
        put_u64(&b, 3);
        put(&b, "\1\0\2\0\3\0", 6);
    }
    gguf_file *f;
    CHECK_EQ(gguf_parse(b.p, b.n, &f), SOV_OK);
    if (f) {
        const gguf_kv *kv = gguf_find(f, "nest");
        CHECK(kv && kv->arr_type == GGUF_ARRAY && kv->arr_n == 2);
        gguf_close(f);
    }
    free(b.p);
}

int main(void) {
    RUN(valid_file_parses);
    RUN(every_truncation_is_rejected);
    RUN(corruptions_are_rejected_naming_the_field);
    RUN(duplicate_key_is_rejected);
    RUN(deeply_nested_arrays_are_rejected);
    RUN(nested_arrays_within_the_limit_parse);
    TEST_EXIT();
}
