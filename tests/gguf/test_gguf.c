/* The GGUF reader and writer: a file written with every metadata type and several
 * tensor types reads back with the same values, shapes, offsets and bytes. */
#include "test.h"

#include "gguf/gguf.h"
#include "quant/quant.h"

static bool fill(void *user, int index, void *dst, size_t n) {
    (void)user;
    uint8_t *p = dst;
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 7 + (size_t)index);
    return true;
}

static void written_file_reads_back(void) {
    char path[512];
    test_tmp_path("roundtrip.gguf", path, sizeof path);
    gguf_writer *w = gguf_writer_new();
    gguf_set_str(w, "general.architecture", "llama");
    gguf_set_u32(w, "llama.block_count", 22);
    gguf_set_i32(w, "x.i32", -5);
    gguf_set_u64(w, "x.u64", 1ull << 40);
    gguf_set_f32(w, "x.f32", 1e-5f);
    gguf_set_bool(w, "x.bool", true);
    const char *strs[] = {"<unk>", "", "\xe2\x96\x81the", "a\nb"};
    gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, 4);
    float scores[] = {0.0f, -1.5f, 2.25f, 3.0f};
    gguf_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, scores, 4);
    int32_t types[] = {2, 3, 1, 6};
    gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, 4);
    gguf_set_u32(w, "llama.block_count", 23); /* replaces */
    int64_t ne1[] = {64, 3};
    int64_t ne2[] = {256, 2};
    int64_t ne3[] = {7};
    CHECK_EQ(gguf_add_tensor(w, "a", SOV_TYPE_Q4_0, 2, ne1), 0);
    CHECK_EQ(gguf_add_tensor(w, "b", SOV_TYPE_Q6_K, 2, ne2), 1);
    CHECK_EQ(gguf_add_tensor(w, "c", SOV_TYPE_F32, 1, ne3), 2);
    CHECK_EQ(gguf_writer_write(w, path, fill, NULL, NULL, NULL), SOV_OK);
    gguf_writer_free(w);

    gguf_file *f;
    sov_status st = gguf_open(path, &f);
    CHECK_EQ(st, SOV_OK);
    if (st) {
        fprintf(stderr, "%s\n", sov_last_error());
        return;
    }
    CHECK_EQ(f->version, 3);
    CHECK_EQ(f->n_kv, 9);
    CHECK_EQ(f->n_tensors, 3);
    char buf[64];
    CHECK(gguf_get_cstr(f, "general.architecture", buf, sizeof buf));
    CHECK_STREQ(buf, "llama");
    uint32_t u32;
    CHECK(gguf_get_u32(f, "llama.block_count", &u32) && u32 == 23);
    int32_t i32;
    CHECK(gguf_get_i32(f, "x.i32", &i32) && i32 == -5);
    CHECK(!gguf_get_u32(f, "x.i32", &u32)); /* negative does not fit */
    uint64_t u64;
    CHECK(gguf_get_u64(f, "x.u64", &u64) && u64 == (1ull << 40));
    CHECK(!gguf_get_u32(f, "x.u64", &u32));
    float f32;
    CHECK(gguf_get_f32(f, "x.f32", &f32) && f32 == 1e-5f);
    bool b;
    CHECK(gguf_get_bool(f, "x.bool", &b) && b);
    CHECK(!gguf_get_cstr(f, "missing", buf, sizeof buf));
    const gguf_kv *kv = gguf_find(f, "tokenizer.ggml.tokens");
    CHECK(kv && kv->type == GGUF_ARRAY && kv->arr_type == GGUF_STRING && kv->arr_n == 4);
    if (kv) {
        for (int i = 0; i < 4; i++) {
            gguf_str s = gguf_arr_str(kv, (uint64_t)i);
            CHECK(s.len == strlen(strs[i]) && memcmp(s.ptr, strs[i], s.len) == 0);
        }
    }
    kv = gguf_find(f, "tokenizer.ggml.scores");
    CHECK(kv && kv->arr_type == GGUF_F32 && gguf_arr_float(kv, 2) == 2.25);
    kv = gguf_find(f, "tokenizer.ggml.token_type");
    CHECK(kv && gguf_arr_int(kv, 3) == 6);

    const gguf_tensor *a = gguf_find_tensor(f, "a"), *bt = gguf_find_tensor(f, "b"), *c = gguf_find_tensor(f, "c");
    CHECK(a && bt && c && !gguf_find_tensor(f, "d"));
    if (a && bt && c) {
        CHECK_EQ(a->type, SOV_TYPE_Q4_0);
        CHECK_EQ(a->ne[0], 64);
        CHECK_EQ(a->ne[1], 3);
        CHECK_EQ(a->nbytes, 3 * 2 * 18);
        CHECK_EQ(bt->nbytes, 2 * 210);
        CHECK_EQ(c->nbytes, 28);
        CHECK_EQ(a->offset % 32, 0);
        CHECK_EQ(bt->offset % 32, 0);
        CHECK(((const uint8_t *)bt->data)[5] == (uint8_t)(5 * 7 + 1));
        CHECK(((const uint8_t *)c->data)[27] == (uint8_t)(27 * 7 + 2));
        CHECK((const uint8_t *)c->data + c->nbytes <= f->base + f->size);
    }
    gguf_close(f);
}

static void missing_file_is_an_io_error(void) {
    gguf_file *f;
    CHECK_EQ(gguf_open("/nonexistent/x.gguf", &f), SOV_ERR_IO);
    CHECK(strstr(sov_last_error(), "/nonexistent/x.gguf") != NULL);
}

int main(void) {
    RUN(written_file_reads_back);
    RUN(missing_file_is_an_io_error);
    TEST_EXIT();
}
