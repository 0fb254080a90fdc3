/* test_tok_metadata.c - tokenizer metadata, good and bad, on small vocabularies written
 * here with the GGUF writer: a SentencePiece one (byte fallback, scores, a control and a
 * user-defined token) and a byte-level BPE one (merges). Each malformed variant must
 * fail cleanly with the right status and a message naming the offending key. */
#include "test.h"

#include "core/util.h"
#include "gguf/gguf.h"
#include "sov.h"
#include "tok/tok.h"

/* ---- a small SentencePiece vocabulary ---- */

#define SPM_MAX 300
static const char *spm_tok[SPM_MAX];
static float spm_score[SPM_MAX];
static int32_t spm_type[SPM_MAX];
static int spm_n;
static char spm_bytes[256][8];

static void spm_add(const char *t, float score, int32_t type) {
    spm_tok[spm_n] = t;
    spm_score[spm_n] = score;
    spm_type[spm_n] = type;
    spm_n++;
}

static void spm_build(void) {
    spm_n = 0;
    spm_add("<unk>", 0, 2);
    spm_add("<s>", 0, 3);
    spm_add("</s>", 0, 3);
    for (int b = 0; b < 256; b++) {
        snprintf(spm_bytes[b], sizeof spm_bytes[b], "<0x%02X>", b);
        spm_add(spm_bytes[b], 0, 6);
    }
    spm_add("\xe2\x96\x81", -1, 1);          /* ▁  259 */
    spm_add("a", -2, 1);                     /* 260 */
    spm_add("b", -2, 1);                     /* 261 */
    spm_add("c", -2, 1);                     /* 262 */
    spm_add("ab", -3, 1);                    /* 263 */
    spm_add("\xe2\x96\x81" "ab", -4, 1);     /* ▁ab 264 */
    spm_add("bc", -1.5f, 1);                 /* 265: beats "ab" in "abc" */
    spm_add("<tool>", 0, 4);                 /* 266 user-defined */
    spm_add("<|im_end|>", 0, 3);             /* 267 control, end of generation */
}

typedef void (*mutate_fn)(gguf_writer *w);

static const char *write_vocab(const char *name, bool bpe, mutate_fn mutate, char *path, size_t cap) {
    gguf_writer *w = gguf_writer_new();
    gguf_set_str(w, "general.architecture", "llama");
    if (!bpe) {
        spm_build();
        gguf_set_str(w, "tokenizer.ggml.model", "llama");
        gguf_set_arr_str(w, "tokenizer.ggml.tokens", spm_tok, (uint64_t)spm_n);
        gguf_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, spm_score, (uint64_t)spm_n);
        gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, spm_type, (uint64_t)spm_n);
        gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
        gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    } else {
        /* the 256 byte-alphabet characters, then merged tokens */
        static char alpha[256][4];
        static const char *toks[300];
        static int32_t types[300];
        int n = 0;
        for (int b = 0; b < 256; b++) {
            uint32_t cp = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE ? (uint32_t)b : 0;
            if (!cp) { /* the shifted ones: U+0100 + index among the non-printable */
                int k = 0;
                for (int c = 0; c < b; c++) k += !((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE);
                cp = 0x100u + (uint32_t)k;
            }
            if (cp < 0x80) {
                alpha[b][0] = (char)cp;
            } else {
                alpha[b][0] = (char)(0xC0 | (cp >> 6));
                alpha[b][1] = (char)(0x80 | (cp & 0x3F));
            }
            toks[n] = alpha[b];
            types[n++] = 1;
        }
        toks[n] = "\xc4\xa0h"; /* "Ġh" 256 */
        types[n++] = 1;
        toks[n] = "\xc4\xa0hi"; /* "Ġhi" 257 */
        types[n++] = 1;
        toks[n] = "<|endoftext|>"; /* 258 */
        types[n++] = 3;
        static const char *merges[] = {"\xc4\xa0 h", "\xc4\xa0h i"};
        gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
        gguf_set_str(w, "tokenizer.ggml.pre", "gpt-2");
        gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n);
        gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, (uint64_t)n);
        gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, 2);
        gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 258);
        gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 258);
    }
    if (mutate) mutate(w);
    test_tmp_path(name, path, cap);
    sov_status st = gguf_writer_write(w, path, NULL, NULL, NULL, NULL);
    gguf_writer_free(w);
    CHECK_MSG(st == SOV_OK, "writing %s: %s", path, sov_last_error());
    return path;
}

/* Loads a variant and expects status st with a message containing key. */
static void expect_fail(const char *name, bool bpe, mutate_fn m, sov_status st, const char *key) {
    char path[512];
    write_vocab(name, bpe, m, path, sizeof path);
    sov_vocab *v = (sov_vocab *)1;
    sov_status got = sov_vocab_load(path, &v);
    CHECK_MSG(got == st, "%s: status %s, wanted %s (%s)", name, sov_strerror(got), sov_strerror(st), sov_last_error());
    CHECK_MSG(strstr(sov_last_error(), key) != NULL, "%s: message '%s' does not name '%s'", name, sov_last_error(), key);
    CHECK(v == NULL);
    if (got == SOV_OK) sov_vocab_free(v);
}

static void no_model(gguf_writer *w) { gguf_set_str(w, "tokenizer.ggml.model", ""); }
static void model_not_string(gguf_writer *w) { gguf_set_u32(w, "tokenizer.ggml.model", 1); }
static void model_rwkv(gguf_writer *w) { gguf_set_str(w, "tokenizer.ggml.model", "rwkv"); }
static void pre_unknown(gguf_writer *w) { gguf_set_str(w, "tokenizer.ggml.pre", "no-such-pre"); }
static void pre_not_string(gguf_writer *w) { gguf_set_bool(w, "tokenizer.ggml.pre", true); }
static void tokens_not_strings(gguf_writer *w) {
    int32_t x[3] = {1, 2, 3};
    gguf_set_arr(w, "tokenizer.ggml.tokens", GGUF_I32, x, 3);
}
static void tokens_not_array(gguf_writer *w) { gguf_set_str(w, "tokenizer.ggml.tokens", "a b c"); }
static void tokens_empty(gguf_writer *w) { gguf_set_arr_str(w, "tokenizer.ggml.tokens", NULL, 0); }
static void scores_short(gguf_writer *w) { gguf_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, spm_score, 10); }
static void scores_strings(gguf_writer *w) { gguf_set_arr_str(w, "tokenizer.ggml.scores", spm_tok, (uint64_t)spm_n); }
static void types_long(gguf_writer *w) {
    static int32_t t[SPM_MAX + 5];
    gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, t, (uint64_t)spm_n + 5);
}
static void types_float(gguf_writer *w) { gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_F32, spm_score, (uint64_t)spm_n); }
static void bos_out_of_range(gguf_writer *w) { gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 100000); }
static void eos_negative(gguf_writer *w) { gguf_set_i32(w, "tokenizer.ggml.eos_token_id", -5); }
static void eos_string(gguf_writer *w) { gguf_set_str(w, "tokenizer.ggml.eos_token_id", "2"); }
static void pad_out_of_range(gguf_writer *w) { gguf_set_u32(w, "tokenizer.ggml.padding_token_id", 4000000000u); }
static void add_bos_u32(gguf_writer *w) { gguf_set_u32(w, "tokenizer.ggml.add_bos_token", 1); }
static void prefix_string(gguf_writer *w) { gguf_set_str(w, "tokenizer.ggml.add_space_prefix", "yes"); }
static void template_u32(gguf_writer *w) { gguf_set_u32(w, "tokenizer.chat_template", 7); }
static void merges_missing(gguf_writer *w) { gguf_set_u32(w, "tokenizer.ggml.merges", 0); }
static void merges_unknown(gguf_writer *w) {
    static const char *m[] = {"\xc4\xa0 h", "\xc4\xa0h zz"};
    gguf_set_arr_str(w, "tokenizer.ggml.merges", m, 2);
}
static void merges_no_space(gguf_writer *w) {
    static const char *m[] = {"\xc4\xa0h"};
    gguf_set_arr_str(w, "tokenizer.ggml.merges", m, 1);
}
static void merges_bad_result(gguf_writer *w) {
    static const char *m[] = {"h i"}; /* "hi" is not a token */
    gguf_set_arr_str(w, "tokenizer.ggml.merges", m, 1);
}
static void merges_not_strings(gguf_writer *w) {
    uint8_t x[2] = {1, 2};
    gguf_set_arr(w, "tokenizer.ggml.merges", GGUF_U8, x, 2);
}

static void rejects_bad_model_key(void) {
    expect_fail("tm_model_empty.gguf", false, no_model, SOV_ERR_UNSUPPORTED, "tokenizer.ggml.model");
    expect_fail("tm_model_u32.gguf", false, model_not_string, SOV_ERR_FORMAT, "tokenizer.ggml.model");
    expect_fail("tm_model_rwkv.gguf", false, model_rwkv, SOV_ERR_UNSUPPORTED, "rwkv");
}

static void rejects_unknown_pre_tokenizer(void) {
    expect_fail("tm_pre_unknown.gguf", true, pre_unknown, SOV_ERR_UNSUPPORTED, "no-such-pre");
    expect_fail("tm_pre_bool.gguf", true, pre_not_string, SOV_ERR_FORMAT, "tokenizer.ggml.pre");
}

static void rejects_bad_token_arrays(void) {
    expect_fail("tm_tokens_i32.gguf", false, tokens_not_strings, SOV_ERR_FORMAT, "tokenizer.ggml.tokens");
    expect_fail("tm_tokens_str.gguf", false, tokens_not_array, SOV_ERR_FORMAT, "tokenizer.ggml.tokens");
    expect_fail("tm_tokens_empty.gguf", false, tokens_empty, SOV_ERR_FORMAT, "tokenizer.ggml.tokens");
    expect_fail("tm_scores_short.gguf", false, scores_short, SOV_ERR_FORMAT, "tokenizer.ggml.scores");
    expect_fail("tm_scores_str.gguf", false, scores_strings, SOV_ERR_FORMAT, "tokenizer.ggml.scores");
    expect_fail("tm_types_long.gguf", false, types_long, SOV_ERR_FORMAT, "tokenizer.ggml.token_type");
    expect_fail("tm_types_f32.gguf", false, types_float, SOV_ERR_FORMAT, "tokenizer.ggml.token_type");
}

static void rejects_bad_special_ids(void) {
    expect_fail("tm_bos_range.gguf", false, bos_out_of_range, SOV_ERR_FORMAT, "tokenizer.ggml.bos_token_id");
    expect_fail("tm_eos_neg.gguf", false, eos_negative, SOV_ERR_FORMAT, "tokenizer.ggml.eos_token_id");
    expect_fail("tm_eos_str.gguf", false, eos_string, SOV_ERR_FORMAT, "tokenizer.ggml.eos_token_id");
    expect_fail("tm_pad_range.gguf", false, pad_out_of_range, SOV_ERR_FORMAT, "tokenizer.ggml.padding_token_id");
}

static void rejects_ill_typed_flags(void) {
    expect_fail("tm_addbos_u32.gguf", false, add_bos_u32, SOV_ERR_FORMAT, "tokenizer.ggml.add_bos_token");
    expect_fail("tm_prefix_str.gguf", false, prefix_string, SOV_ERR_FORMAT, "tokenizer.ggml.add_space_prefix");
    expect_fail("tm_template_u32.gguf", false, template_u32, SOV_ERR_FORMAT, "tokenizer.chat_template");
}

static void rejects_bad_merges(void) {
    expect_fail("tm_merges_missing.gguf", true, merges_missing, SOV_ERR_FORMAT, "tokenizer.ggml.merges");
    expect_fail("tm_merges_unknown.gguf", true, merges_unknown, SOV_ERR_FORMAT, "tokenizer.ggml.merges[1]");
    expect_fail("tm_merges_nospace.gguf", true, merges_no_space, SOV_ERR_FORMAT, "tokenizer.ggml.merges[0]");
    expect_fail("tm_merges_result.gguf", true, merges_bad_result, SOV_ERR_FORMAT, "tokenizer.ggml.merges[0]");
    expect_fail("tm_merges_u8.gguf", true, merges_not_strings, SOV_ERR_FORMAT, "tokenizer.ggml.merges");
}

static void rejects_file_without_tokenizer(void) {
    char path[512];
    gguf_writer *w = gguf_writer_new();
    gguf_set_str(w, "general.architecture", "llama");
    test_tmp_path("tm_none.gguf", path, sizeof path);
    CHECK(gguf_writer_write(w, path, NULL, NULL, NULL, NULL) == SOV_OK);
    gguf_writer_free(w);
    sov_vocab *v;
    CHECK(sov_vocab_load(path, &v) == SOV_ERR_FORMAT);
    CHECK(strstr(sov_last_error(), "tokenizer.ggml.model") != NULL);
    CHECK(sov_vocab_load("/nonexistent/vocab.gguf", &v) == SOV_ERR_IO);
}

static int32_t tok(const sov_vocab *v, const char *s, bool add, bool special, sov_token *out) {
    return sov_tokenize(v, s, strlen(s), add, special, out, 64);
}

static void spm_merges_by_score_with_byte_fallback(void) {
    char path[512];
    write_vocab("tm_spm_ok.gguf", false, NULL, path, sizeof path);
    sov_vocab *v;
    CHECK(sov_vocab_load(path, &v) == SOV_OK);
    if (!v) return;
    sov_token t[64];
    /* "ab c" -> "▁ab▁c": ▁ab, ▁, c */
    CHECK_EQ(tok(v, "ab c", false, false, t), 3);
    CHECK_EQ(t[0], 264);
    CHECK_EQ(t[1], 259);
    CHECK_EQ(t[2], 262);
    /* "abc" -> "▁abc": "bc" (score -1.5) merges before "ab" (-3): ▁, a, bc */
    CHECK_EQ(tok(v, "abc", false, false, t), 3);
    CHECK_EQ(t[0], 259);
    CHECK_EQ(t[1], 260);
    CHECK_EQ(t[2], 265);
    /* unknown characters fall back to their bytes: "é" = C3 A9 */
    CHECK_EQ(tok(v, "\xc3\xa9", false, false, t), 3);
    CHECK_EQ(t[1], 3 + 0xC3);
    CHECK_EQ(t[2], 3 + 0xA9);
    /* add_special: BOS by default for SentencePiece, no EOS */
    CHECK_EQ(tok(v, "a", true, false, t), 3);
    CHECK_EQ(t[0], 1);
    /* control text is text unless parse_special; user-defined tokens always match */
    int32_t n = tok(v, "<|im_end|>", false, false, t);
    CHECK(n > 1);
    CHECK_EQ(tok(v, "<|im_end|>", false, true, t), 1);
    CHECK_EQ(t[0], 267);
    CHECK_EQ(tok(v, "<tool>", false, false, t), 1);
    CHECK_EQ(t[0], 266);
    CHECK(sov_vocab_is_eog(v, 267));
    CHECK(sov_vocab_is_eog(v, 2));
    CHECK(!sov_vocab_is_eog(v, 266));
    CHECK(sov_vocab_is_control(v, 1));
    CHECK(!sov_vocab_is_control(v, 264));
    /* pieces: "▁ab" -> " ab", a byte token -> its byte, control only when asked */
    char buf[16];
    CHECK_EQ(sov_token_to_piece(v, 264, false, buf, sizeof buf), 3);
    CHECK(memcmp(buf, " ab", 3) == 0);
    CHECK_EQ(sov_token_to_piece(v, 3 + 0x41, false, buf, sizeof buf), 1);
    CHECK_EQ(buf[0], 'A');
    CHECK_EQ(sov_token_to_piece(v, 1, false, buf, sizeof buf), 0);
    CHECK_EQ(sov_token_to_piece(v, 1, true, buf, sizeof buf), 3);
    CHECK_EQ(sov_token_to_piece(v, 99999, true, buf, sizeof buf), -SOV_ERR_ARG);
    CHECK_EQ(sov_token_to_piece(v, -1, true, buf, sizeof buf), -SOV_ERR_ARG);
    /* a short buffer: the full length comes back */
    CHECK_EQ(sov_token_to_piece(v, 264, false, buf, 1), 3);
    const sov_token ids[] = {1, 264, 259, 262};
    CHECK_EQ(sov_detokenize(v, ids, 4, false, true, buf, sizeof buf), 4);
    CHECK_STREQ(buf, "ab c");
    CHECK_EQ(sov_detokenize(v, ids, 4, true, true, buf, sizeof buf), 7);
    CHECK_STREQ(buf, "<s>ab c");
    CHECK_EQ(sov_detokenize(v, ids, 4, false, false, buf, sizeof buf), 5);
    CHECK_STREQ(buf, " ab c");
    CHECK_EQ(sov_detokenize(v, ids, 4, false, true, buf, 2), 4);
    const sov_token bad[] = {1, 5000};
    CHECK_EQ(sov_detokenize(v, bad, 2, false, true, buf, sizeof buf), -SOV_ERR_ARG);
    /* the count comes back when out is too small */
    CHECK_EQ(sov_tokenize(v, "ab c", 4, false, false, t, 1), 3);
    CHECK_EQ(sov_tokenize(v, "ab c", 4, false, false, NULL, 0), 3);
    CHECK_EQ(sov_tokenize(v, "", 0, false, false, NULL, 0), 0);
    CHECK_EQ(sov_tokenize(v, "", 0, true, false, t, 64), 1);
    CHECK_STREQ(tok_vocab_model_name(v), "llama");
    CHECK_EQ(tok_vocab_find(v, "ab", 2), 263);
    CHECK_EQ(tok_vocab_find(v, "zz", 2), -1);
    sov_vocab_free(v);
}

static void bpe_merges_by_rank(void) {
    char path[512];
    write_vocab("tm_bpe_ok.gguf", true, NULL, path, sizeof path);
    sov_vocab *v;
    CHECK(sov_vocab_load(path, &v) == SOV_OK);
    if (!v) return;
    sov_token t[64];
    CHECK_EQ(tok(v, " hi", false, false, t), 1);
    CHECK_EQ(t[0], 257);
    CHECK_EQ(tok(v, "x hi", false, false, t), 2);
    CHECK_EQ(t[0], 'x');
    CHECK_EQ(t[1], 257);
    /* no BOS for "gpt-2" by default */
    CHECK_EQ(tok(v, " hi", true, false, t), 1);
    CHECK_STREQ(tok_vocab_pre_name(v), "gpt-2");
    char buf[16];
    CHECK_EQ(sov_token_to_piece(v, 257, false, buf, sizeof buf), 3);
    CHECK(memcmp(buf, " hi", 3) == 0);
    CHECK(sov_vocab_is_eog(v, 258));
    sov_vocab_free(v);
}

static void model_loader_keeps_its_file(void) {
    char path[512];
    write_vocab("tm_bpe_file.gguf", true, NULL, path, sizeof path);
    gguf_file *f;
    CHECK(gguf_open(path, &f) == SOV_OK);
    sov_vocab *v;
    CHECK(tok_vocab_from_gguf(f, false, &v) == SOV_OK);
    sov_vocab_free(v);
    CHECK(gguf_find(f, "tokenizer.ggml.model") != NULL); /* still open */
    gguf_close(f);
}

int main(void) {
    RUN(rejects_bad_model_key);
    RUN(rejects_unknown_pre_tokenizer);
    RUN(rejects_bad_token_arrays);
    RUN(rejects_bad_special_ids);
    RUN(rejects_ill_typed_flags);
    RUN(rejects_bad_merges);
    RUN(rejects_file_without_tokenizer);
    RUN(spm_merges_by_score_with_byte_fallback);
    RUN(bpe_merges_by_rank);
    RUN(model_loader_keeps_its_file);
    TEST_EXIT();
}
