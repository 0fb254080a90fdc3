/* test_tok_wordpiece.c - the BERT WordPiece tokenizer against llama.cpp.
 *
 * tests/tok/expected/bert-bge.txt holds llama.cpp's ids (recorded by record_wordpiece.mjs
 * through node-llama-cpp) for every text of corpus.json plus WordPiece-specific texts, on
 * ../shared/models/vocab/ggml-vocab-bert-bge.gguf (uncased: lower-casing and accent
 * stripping on by default); bert-bge-cased.txt the same on that file with
 * tokenizer.ggml.normalizer.lowercase = false inserted (built here byte for byte as the
 * recorder builds it). Checked: identical ids with and without special-token parsing, and
 * [CLS] ... [SEP] around them with add_special. Plus the normaliser tables on facts from
 * the Unicode standard, and [UNK] for a word no piece sequence spells. */
#include "test.h"

#include "sov.h"
#include "tok/wordpiece.h"

typedef struct ids {
    sov_token v[4096];
    int32_t n;
} ids;

static int hexval(int c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

static size_t unhex(char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i + 1 < n; i += 2) s[k++] = (char)(hexval(s[i]) * 16 + hexval(s[i + 1]));
    return k;
}

static void parse_ids(char *s, ids *out) {
    out->n = 0;
    char *end;
    while (*s && out->n < 4096) {
        long x = strtol(s, &end, 10);
        if (end == s) break;
        out->v[out->n++] = (sov_token)x;
        s = end;
    }
}

static bool same(const sov_token *a, int32_t na, const sov_token *b, int32_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

static void print_ids(const char *label, const sov_token *v, int32_t n) {
    fprintf(stderr, "  %s:", label);
    for (int32_t i = 0; i < n && i < 64; i++) fprintf(stderr, " %d", v[i]);
    fprintf(stderr, "%s\n", n > 64 ? " ..." : "");
}

static int compared;

/* Compares sov on vocab file `path` with tests/tok/expected/<name>.txt. */
static void check_against(const char *path, const char *name) {
    char exp_path[512];
    const char *data = getenv("SOV_TEST_DATA");
    snprintf(exp_path, sizeof exp_path, "%s/tok/expected/%s.txt", data ? data : "tests", name);
    FILE *f = fopen(exp_path, "rb");
    CHECK_MSG(f != NULL, "cannot open %s", exp_path);
    if (!f) return;
    sov_vocab *v = NULL;
    CHECK_MSG(sov_vocab_load(path, &v) == SOV_OK, "%s: %s", name, sov_last_error());
    if (!v) {
        fclose(f);
        return;
    }
    static char line[1 << 16];
    static sov_token got[8192];
    static ids want, want_ns;
    int failures = 0;
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        if (len && line[len - 1] == '\n') line[--len] = '\0';
        if (line[0] == '#') {
            int bos, eos, eot, add_bos, add_eos, n_vocab;
            if (sscanf(line, "# bos %d eos %d eot %d add_bos %d add_eos %d n_vocab %d", &bos, &eos, &eot, &add_bos,
                       &add_eos, &n_vocab) == 6) {
                CHECK_EQ(sov_vocab_size(v), n_vocab);
                CHECK_EQ(sov_vocab_bos(v), bos);
                CHECK_EQ(sov_vocab_eos(v), eos);
            }
            continue;
        }
        char *tab1 = strchr(line, '\t');
        char *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        CHECK(tab1 && tab2);
        if (!tab1 || !tab2) continue;
        *tab1 = *tab2 = '\0';
        size_t n = unhex(line, (size_t)(tab1 - line));
        parse_ids(tab1 + 1, &want);
        parse_ids(tab2 + 1, &want_ns);
        compared++;
        for (int pass = 0; pass < 2; pass++) {
            const ids *w = pass ? &want_ns : &want;
            int32_t k = sov_tokenize(v, line, n, false, pass == 0, got, 8192);
            if (!same(got, k, w->v, w->n) && failures++ < 5) {
                fprintf(stderr, "%s: %s ids differ for \"%.*s\"\n", name, pass ? "plain" : "parse_special", (int)n, line);
                print_ids("sov      ", got, k);
                print_ids("llama.cpp", w->v, w->n);
            }
        }
        /* add_special: [CLS] ids [SEP], whatever add_bos/add_eos say */
        int32_t k = sov_tokenize(v, line, n, true, false, got, 8192);
        CHECK_EQ(k, want_ns.n + 2);
        if (k == want_ns.n + 2) {
            CHECK_EQ(got[0], 101);
            CHECK_EQ(got[k - 1], 102);
            CHECK(same(got + 1, k - 2, want_ns.v, want_ns.n));
        }
    }
    CHECK_MSG(failures == 0, "%s: %d texts differ", name, failures);
    fclose(f);
    sov_vocab_free(v);
}

static bool vocab_path(char *buf, size_t cap) {
    return test_shared_model("vocab/ggml-vocab-bert-bge.gguf", buf, cap) != NULL;
}

static void bert_bge_matches_llama_cpp(void) {
    char path[512];
    if (!vocab_path(path, sizeof path)) SKIP("shared models not found");
    check_against(path, "bert-bge");
}

/* the recorder's variant: one bool key inserted after the 24-byte header */
static void cased_variant_matches_llama_cpp(void) {
    char path[512], out[512];
    if (!vocab_path(path, sizeof path)) SKIP("shared models not found");
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n);
    CHECK(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    static const char key[] = "tokenizer.ggml.normalizer.lowercase";
    uint64_t kv_count, klen = sizeof key - 1;
    memcpy(&kv_count, buf + 16, 8);
    kv_count++;
    memcpy(buf + 16, &kv_count, 8);
    test_tmp_path("bert-bge-cased.gguf", out, sizeof out);
    FILE *o = fopen(out, "wb");
    CHECK(o != NULL);
    if (o) {
        const uint32_t type = 7; /* bool */
        const uint8_t val = 0;
        fwrite(buf, 1, 24, o);
        fwrite(&klen, 8, 1, o);
        fwrite(key, 1, klen, o);
        fwrite(&type, 4, 1, o);
        fwrite(&val, 1, 1, o);
        fwrite(buf + 24, 1, (size_t)n - 24, o);
        fclose(o);
        check_against(out, "bert-bge-cased");
    }
    free(buf);
}

/* facts from UnicodeData.txt and the Hangul decomposition algorithm */
static void normaliser_tables_hold_unicode_facts(void) {
    CHECK_EQ(tok_wpm_lower('A'), (uint32_t)'a');
    CHECK_EQ(tok_wpm_lower('a'), (uint32_t)'a');
    CHECK_EQ(tok_wpm_lower(0xC9), 0xE9u);     /* É -> é */
    CHECK_EQ(tok_wpm_lower(0x130), 0x69u);    /* İ -> i (simple mapping) */
    CHECK_EQ(tok_wpm_lower(0x3A3), 0x3C3u);   /* Σ -> σ */
    CHECK_EQ(tok_wpm_lower(0x1C5), 0x1C6u);   /* ǅ -> ǆ */
    CHECK_EQ(tok_wpm_lower(0xFF21), 0xFF41u); /* fullwidth A */
    CHECK_EQ(tok_wpm_lower(0x10400), 0x10428u);
    CHECK_EQ(tok_wpm_lower(0xAC00), 0xAC00u);
    CHECK_EQ(tok_wpm_nfd_first(0xE9), (uint32_t)'e');
    CHECK_EQ(tok_wpm_nfd_first(0x1EA0), (uint32_t)'A'); /* Ạ */
    CHECK_EQ(tok_wpm_nfd_first(0x1E69), (uint32_t)'s'); /* ṩ: s + dot below + dot above */
    CHECK_EQ(tok_wpm_nfd_first(0xAC00), 0x1100u);       /* 가 -> ᄀ */
    CHECK_EQ(tok_wpm_nfd_first(0xD7A3), 0x1112u);       /* 힣 -> ᄒ */
    CHECK_EQ(tok_wpm_nfd_first(0xD7A4), 0xD7A4u);       /* past the syllables */
    CHECK_EQ(tok_wpm_nfd_first('e'), (uint32_t)'e');
    CHECK_EQ(tok_wpm_nfd_first(0x4E00), 0x4E00u);
    CHECK_EQ(tok_wpm_nfd_first(0x10FFFF), 0x10FFFFu);
}

static void unspellable_word_is_one_unk(void) {
    char path[512];
    if (!vocab_path(path, sizeof path)) SKIP("shared models not found");
    sov_vocab *v = NULL;
    CHECK(sov_vocab_load(path, &v) == SOV_OK);
    if (!v) return;
    sov_token got[16];
    /* an unassigned code point inside a word: no piece covers it, the whole word is [UNK] */
    const char text[] = "the abc\xf0\x9f\xaf\xbf" "def end";
    int32_t k = sov_tokenize(v, text, strlen(text), true, false, got, 16);
    CHECK_EQ(k, 5);
    if (k == 5) {
        CHECK_EQ(got[0], 101);
        CHECK_EQ(got[2], 100);
        CHECK_EQ(got[4], 102);
    }
    /* empty text: just [CLS] [SEP] */
    CHECK_EQ(sov_tokenize(v, "", 0, true, false, got, 16), 2);
    sov_vocab_free(v);
}

int main(void) {
    RUN(normaliser_tables_hold_unicode_facts);
    RUN(unspellable_word_is_one_unk);
    RUN(bert_bge_matches_llama_cpp);
    RUN(cased_variant_matches_llama_cpp);
    fprintf(stderr, "%d texts compared\n", compared);
    TEST_EXIT();
}
