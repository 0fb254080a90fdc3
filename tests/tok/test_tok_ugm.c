/* test_tok_ugm.c - SentencePiece Unigram ("t5") on small hand-made vocabularies whose best
 * segmentation is worked out by hand, the normaliser's space rules, and untrusted
 * charsmaps: malformed ones are refused with an error naming the key, corrupted ones
 * (random bytes flipped in a real XLM-RoBERTa charsmap) never make the tokenizer read
 * outside the map (the sanitizer build checks) or return ids outside the vocabulary. */
#include "test.h"

#include "gguf/gguf.h"
#include "sov.h"

#define SP "\xe2\x96\x81" /* "▁" */

enum { NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER = 4 };

typedef struct piece {
    const char *text;
    float score;
    int32_t type;
} piece;

/* ids are positions in this table */
static const piece pieces[] = {
    {"<pad>", 0, CONTROL}, {"</s>", 0, CONTROL}, {"<unk>", 0, UNKNOWN}, {SP, -2.0f, NORMAL},
    {"a", -3.0f, NORMAL},  {"b", -3.0f, NORMAL}, {"ab", -4.0f, NORMAL}, {SP "ab", -5.5f, NORMAL},
    {"c", -3.0f, NORMAL},  {"abc", -9.5f, NORMAL}, {"<sep>", 0, USER},  {SP "a", -4.0f, NORMAL},
};
#define N_PIECES (sizeof pieces / sizeof pieces[0])

/* Writes a t5 vocabulary; charsmap NULL leaves the key out, type GGUF_U8 normally. */
static bool write_vocab(const char *path, const void *charsmap, size_t cm_n, gguf_vtype cm_type, bool prefix,
                        bool extra_ws) {
    const char *texts[N_PIECES];
    float scores[N_PIECES];
    int32_t types[N_PIECES];
    for (size_t i = 0; i < N_PIECES; i++) {
        texts[i] = pieces[i].text;
        scores[i] = pieces[i].score;
        types[i] = pieces[i].type;
    }
    gguf_writer *w = gguf_writer_new();
    gguf_set_str(w, "general.architecture", "bert");
    gguf_set_str(w, "tokenizer.ggml.model", "t5");
    gguf_set_arr_str(w, "tokenizer.ggml.tokens", texts, N_PIECES);
    gguf_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, scores, N_PIECES);
    gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, N_PIECES);
    gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", prefix);
    gguf_set_bool(w, "tokenizer.ggml.remove_extra_whitespaces", extra_ws);
    gguf_set_bool(w, "tokenizer.ggml.add_bos_token", false);
    gguf_set_bool(w, "tokenizer.ggml.add_eos_token", true);
    gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 2);
    gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 1);
    if (charsmap) gguf_set_arr(w, "tokenizer.ggml.precompiled_charsmap", cm_type, charsmap, cm_n / (cm_type == GGUF_I32 ? 4 : 1));
    sov_status st = gguf_writer_write(w, path, NULL, NULL, NULL, NULL);
    gguf_writer_free(w);
    return st == SOV_OK;
}

static sov_vocab *tiny(bool prefix, bool extra_ws) {
    char path[512];
    test_tmp_path("ugm_tiny.gguf", path, sizeof path);
    CHECK(write_vocab(path, NULL, 0, GGUF_U8, prefix, extra_ws));
    sov_vocab *v = NULL;
    CHECK_MSG(sov_vocab_load(path, &v) == SOV_OK, "%s", sov_last_error());
    return v;
}

/* ids of text (no BOS/EOS, specials parsed) as "1 2 3" */
static const char *ids_of(const sov_vocab *v, const char *text) {
    static char buf[512];
    sov_token ids[64];
    int32_t n = sov_tokenize(v, text, strlen(text), false, true, ids, 64);
    size_t at = 0;
    buf[0] = '\0';
    for (int32_t i = 0; i < n && i < 64; i++) at += (size_t)snprintf(buf + at, sizeof buf - at, i ? " %d" : "%d", ids[i]);
    if (n < 0) snprintf(buf, sizeof buf, "error %d", n);
    return buf;
}

static void viterbi_takes_the_best_total_score(void) {
    sov_vocab *v = tiny(true, false);
    if (!v) return;
    /* "▁ab": "▁ab" -5.5 beats "▁a"+"b" -7 and "▁"+"ab" -6 */
    CHECK_STREQ(ids_of(v, "ab"), "7");
    /* "▁abc": "▁ab"+"c" -8.5 beats "▁"+"abc" -11.5 */
    CHECK_STREQ(ids_of(v, "abc"), "7 8");
    /* "▁a▁b": "▁a" -4, "▁" -2, "b" -3 */
    CHECK_STREQ(ids_of(v, "a b"), "11 3 5");
    /* a user-defined piece is cut out first; each side is its own text with its own "▁" */
    CHECK_STREQ(ids_of(v, "a<sep>b"), "11 10 3 5");
    /* EOS appended as the metadata asks */
    sov_token ids[8];
    CHECK_EQ(sov_tokenize(v, "a", 1, true, true, ids, 8), 2);
    CHECK_EQ(ids[1], 1);
    sov_vocab_free(v);
}

static void unknown_characters_become_one_unk(void) {
    sov_vocab *v = tiny(true, false);
    if (!v) return;
    /* "▁" then x, y, z (no piece): one <unk> for the run, then "a" */
    CHECK_STREQ(ids_of(v, "xyza"), "3 2 4");
    /* a malformed byte is U+FFFD, unknown too */
    CHECK_STREQ(ids_of(v, "a\xff"), "11 2");
    sov_vocab_free(v);
}

static void space_rules_follow_the_metadata(void) {
    sov_vocab *v = tiny(false, false);
    if (v) {
        CHECK_STREQ(ids_of(v, "ab"), "6");         /* no prefix */
        CHECK_STREQ(ids_of(v, "a  b"), "4 3 3 5"); /* every space kept */
        sov_vocab_free(v);
    }
    v = tiny(true, true);
    if (v) {
        /* leading, repeated and trailing spaces dropped: "▁a▁b" */
        CHECK_STREQ(ids_of(v, "  a   b  "), "11 3 5");
        sov_vocab_free(v);
    }
}

static void malformed_charsmap_is_refused(void) {
    char path[512];
    test_tmp_path("ugm_bad.gguf", path, sizeof path);
    struct {
        const char *why;
        uint8_t bytes[16];
        size_t n;
        gguf_vtype type;
    } bad[] = {
        {"too short for its header", {1, 0}, 2, GGUF_U8},
        {"trie size past the end", {0xff, 0, 0, 0, 1, 2, 3, 4}, 8, GGUF_U8},
        {"trie size not a multiple of 4", {3, 0, 0, 0, 1, 2, 3, 0}, 8, GGUF_U8},
        {"replacements not NUL-terminated", {4, 0, 0, 0, 0, 0, 0, 0, 'a', 'b'}, 10, GGUF_U8},
        {"array of i32", {4, 0, 0, 0, 0, 0, 0, 0}, 8, GGUF_I32},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(write_vocab(path, bad[i].bytes, bad[i].n, bad[i].type, true, false));
        sov_vocab *v = NULL;
        sov_status st = sov_vocab_load(path, &v);
        CHECK_MSG(st == SOV_ERR_FORMAT, "%s: loaded (status %d)", bad[i].why, st);
        CHECK_MSG(strstr(sov_last_error(), "precompiled_charsmap") != NULL, "%s: message '%s'", bad[i].why,
                  sov_last_error());
        sov_vocab_free(v);
    }
}

static void corrupted_charsmap_stays_in_bounds(void) {
    char real[512];
    if (!test_shared_model("vocab/ggml-vocab-nomic-bert-moe.gguf", real, sizeof real)) SKIP("shared models not found");
    gguf_file *f;
    CHECK(gguf_open(real, &f) == SOV_OK);
    const gguf_kv *kv = gguf_find(f, "tokenizer.ggml.precompiled_charsmap");
    CHECK(kv != NULL);
    if (!kv) {
        gguf_close(f);
        return;
    }
    const size_t n = kv->arr_n;
    uint8_t *cm = malloc(n);
    char path[512];
    test_tmp_path("ugm_corrupt.gguf", path, sizeof path);
    static const char *const texts[] = {"\xef\xac\x81nance \xe3\x8e\x8f \xe2\x91\xa0 \xef\xbd\xb6\xef\xbe\x80",
                                        "Caf\xc3\xa9 \xea\xb0\x80 abc  x\ty\n", "\xff\xfe a\xcc\x81"};
    test_rng r = {42};
    int loaded = 0;
    for (int it = 0; it < 40; it++) {
        memcpy(cm, kv->arr_data, n);
        uint32_t blob;
        memcpy(&blob, cm, 4);
        for (int k = 0; k < 64; k++) {
            size_t at = 4 + test_rng_next(&r) % (blob ? blob : 1); /* inside the trie */
            cm[at] ^= (uint8_t)(1u << (test_rng_next(&r) % 8));
        }
        if (it % 8 == 7) cm[4 + blob + test_rng_next(&r) % (n - 4 - blob)] = 0xff; /* a replacement byte */
        CHECK(write_vocab(path, cm, n, GGUF_U8, true, true));
        sov_vocab *v = NULL;
        if (sov_vocab_load(path, &v) != SOV_OK) continue;
        loaded++;
        for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
            sov_token ids[256];
            int32_t m = sov_tokenize(v, texts[t], strlen(texts[t]), true, true, ids, 256);
            CHECK(m > 0 && m <= 256);
            for (int32_t i = 0; i < m && i < 256; i++) CHECK(ids[i] >= 0 && ids[i] < sov_vocab_size(v));
        }
        sov_vocab_free(v);
    }
    CHECK(loaded > 0); /* a flipped trie byte is not detectable at load: it must be safe */
    free(cm);
    gguf_close(f);
}

int main(void) {
    RUN(viterbi_takes_the_best_total_score);
    RUN(unknown_characters_become_one_unk);
    RUN(space_rules_follow_the_metadata);
    RUN(malformed_charsmap_is_refused);
    RUN(corrupted_charsmap_stays_in_bounds);
    TEST_EXIT();
}
