/* test_tok_robust.c - the tokenizers on input nobody should send: malformed UTF-8 (same
 * ids as llama.cpp), random bytes (no crash, ids in range), random valid UTF-8 (exact
 * round trip), and long degenerate runs (no quadratic blow-up). */
#include "test.h"

#include <time.h>

#include "core/util.h"
#include "sov.h"

static const char *const names[] = {"llama-spm", "phi-3",          "llama-bpe", "qwen2",  "gpt-2",
                                    "deepseek-llm", "qwen35", "deepseek-coder", "falcon", "gemma-4", "nomic-bert-moe"};
enum { K_FALCON = 8, K_GEMMA4 = 9, K_UGM = 10 };
/* random inputs per vocabulary: fewer for the later ones, which the fuzz target covers too */
#define ITERS(k) ((k) < 6 ? 1500 : 300)

/* llama.cpp's ids (llama-tokenize --ids --no-bos, built from the same commit as the
 * node-llama-cpp reference) for this malformed text: a stray 0xFF, a truncated 2-byte
 * and 3-byte sequence, an overlong NUL, a UTF-16 surrogate, 0xF8, lone continuation
 * bytes. (A sequence above U+10FFFF is left out: llama.cpp aborts on it.) */
static const char bad_text[] = "ab\xff" "cd\xc3 x\xe2\x82 \xc0\x80z\xed\xa0\x80q\xf8" "e\x80\x80 \xe2\x82";
static const char *const bad_expected[] = {
    "633 258 102 103 198 921 229 133 229 153 132 195 131 29920 240 163 131 29939 251 104 131 131 29871 229 133",
    "633 258 102 103 198 921 229 133 229 153 132 195 131 29920 240 163 131 29939 251 104 131 131 29871 229 133",
    "370 5809 4484 5809 865 10178 220 188 89 169 64319 80 5809 68 10178 220 10178",
    "370 5691 4385 5691 856 9973 220 188 89 169 63219 80 5691 68 9973 220 9973",
    "397 4210 10210 4210 2124 6353 220 188 89 169 254 222 80 4210 68 6353 220 6353",
    "356 10003 2253 10003 1376 16211 207 175 89 167 241 209 80 10003 68 16211 207 16211",
    "370 5691 4385 5691 856 9973 220 188 89 169 63219 80 5691 68 9973 220 9973",
    "356 10006 2243 10006 1371 16258 207 175 89 167 241 209 80 10006 68 16258 207 16258",
    "366 13112 133 9890 13112 133 1859 13112 133 13112 133 204 186 101 179 238 206 92 13112 133 80 13112 133 13112 133 "
    "54751 133 13112 133",
    "596 238479 2692 238479 1123 38914 236743 238 236802 475 398 366 236809 238479 236744 38914 236743 38914",
    "1563 3 71574 3 1022 3 6 3 169 3 864 3 13 3 6 3",
};

static sov_vocab *load(const char *name) {
    char rel[128], path[512];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    if (!test_shared_model(rel, path, sizeof path)) SKIP("shared models not found");
    sov_vocab *v = NULL;
    CHECK_MSG(sov_vocab_load(path, &v) == SOV_OK, "%s: %s", name, sov_last_error());
    return v;
}

static void malformed_utf8_tokenizes_like_llama_cpp(void) {
    for (size_t k = 0; k < SOV_ARRAY_LEN(names); k++) {
        sov_vocab *v = load(names[k]);
        if (!v) continue;
        sov_token got[128];
        int32_t n = sov_tokenize(v, bad_text, sizeof bad_text - 1, false, false, got, 128);
        char line[1024] = "";
        size_t at = 0;
        for (int32_t i = 0; i < n && at < sizeof line - 16; i++)
            at += (size_t)snprintf(line + at, sizeof line - at, i ? " %d" : "%d", got[i]);
        CHECK_MSG(strcmp(line, bad_expected[k]) == 0, "%s: got %s", names[k], line);
        /* and past U+10FFFF: no crash, replaced like any malformed byte */
        static const char above[] = "x\xf4\x90\x80\x80y\xf7\xbf\xbf\xbf";
        CHECK(sov_tokenize(v, above, sizeof above - 1, true, true, got, 128) > 0);
        sov_vocab_free(v);
    }
}

static void random_bytes_never_break(void) {
    static const char *const pieces[] = {"<|im_end|>", "<s>", "</s>", "<|endoftext|>", "<|eot_id|>", " ", "\n",
                                         "\xe2\x96\x81", "\xc4\xa0", "'s", "123", "\xea\xb0\x80", "\xf0\x9f\x98\x80"};
    test_rng r = {0x1234567};
    char text[512], back[8192];
    sov_token ids[2048];
    for (size_t k = 0; k < SOV_ARRAY_LEN(names); k++) {
        sov_vocab *v = load(names[k]);
        if (!v) continue;
        const int32_t nv = sov_vocab_size(v);
        for (int it = 0; it < ITERS(k); it++) {
            size_t n = 0, want = test_rng_next(&r) % 200;
            while (n < want) {
                uint64_t x = test_rng_next(&r);
                if (x % 4 == 0) {
                    const char *p = pieces[(x >> 8) % SOV_ARRAY_LEN(pieces)];
                    size_t l = strlen(p);
                    if (n + l > sizeof text) break;
                    memcpy(text + n, p, l);
                    n += l;
                } else {
                    text[n++] = (char)(x >> 16);
                }
            }
            for (int mode = 0; mode < 4; mode++) {
                int32_t m = sov_tokenize(v, text, n, mode & 1, mode & 2, ids, 2048);
                CHECK(m >= 0 && m <= 2048);
                bool in_range = true;
                for (int32_t i = 0; i < m && i < 2048; i++) in_range &= ids[i] >= 0 && ids[i] < nv;
                CHECK(in_range);
                int32_t b = sov_detokenize(v, ids, m, mode & 2, true, back, sizeof back);
                CHECK(b >= 0);
            }
        }
        sov_vocab_free(v);
    }
}

/* random valid UTF-8 from a mix of scripts round-trips exactly */
static void random_text_round_trips(void) {
    static const uint32_t ranges[][2] = {{0x20, 0x7E}, {0x09, 0x0D}, {0xA0, 0x24F}, {0x370, 0x3FF}, {0x400, 0x4FF},
                                         {0x600, 0x6FF}, {0x900, 0x97F}, {0x2000, 0x206F}, {0x3000, 0x30FF},
                                         {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0xFF00, 0xFFEF}, {0x1F300, 0x1F64F},
                                         {0x10000, 0x10FFFF}};
    test_rng r = {42};
    char text[1024], back[4096];
    sov_token ids[2048];
    for (size_t k = 0; k < SOV_ARRAY_LEN(names); k++) {
        sov_vocab *v = load(names[k]);
        if (!v) continue;
        const bool spm = k < 2 || k == K_GEMMA4;
        /* Unigram normalises; Falcon has no token for some control bytes */
        if (k == K_UGM || k == K_FALCON) {
            sov_vocab_free(v);
            continue;
        }
        int bad = 0;
        for (int it = 0; it < ITERS(k); it++) {
            size_t n = 0, want = test_rng_next(&r) % 300;
            while (n + 4 < want) {
                uint64_t x = test_rng_next(&r);
                const uint32_t *rg = ranges[x % SOV_ARRAY_LEN(ranges)];
                uint32_t cp = rg[0] + (uint32_t)((x >> 16) % (rg[1] - rg[0] + 1));
                if ((cp >= 0xD800 && cp <= 0xDFFF) || (spm && cp == 0x2581)) continue;
                if (cp < 0x80) {
                    text[n++] = (char)cp;
                } else if (cp < 0x800) {
                    text[n++] = (char)(0xC0 | (cp >> 6));
                    text[n++] = (char)(0x80 | (cp & 0x3F));
                } else if (cp < 0x10000) {
                    text[n++] = (char)(0xE0 | (cp >> 12));
                    text[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                    text[n++] = (char)(0x80 | (cp & 0x3F));
                } else {
                    text[n++] = (char)(0xF0 | (cp >> 18));
                    text[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                    text[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                    text[n++] = (char)(0x80 | (cp & 0x3F));
                }
            }
            int32_t m = sov_tokenize(v, text, n, true, false, ids, 2048);
            int32_t b = sov_detokenize(v, ids, m, false, true, back, sizeof back);
            if ((b != (int32_t)n || memcmp(back, text, n) != 0) && bad++ < 3)
                fprintf(stderr, "%s: \"%.*s\" came back as \"%.*s\"\n", names[k], (int)n, text, b > 0 ? b : 0, back);
        }
        CHECK_MSG(bad == 0, "%s: %d texts did not round-trip", names[k], bad);
        sov_vocab_free(v);
    }
}

/* CPU time of this process: tokenizing is single-threaded, and unlike wall time it does
 * not grow when the machine is shared */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void long_runs_stay_fast(void) {
    const size_t n = 300000;
    char *text = malloc(n), *back = malloc(n + 16);
    sov_token *ids = malloc((n + 8) * sizeof *ids);
    static const char fills[] = {'a', '7', ' ', '\n', '!'};
    for (size_t k = 0; k < SOV_ARRAY_LEN(names); k++) {
        sov_vocab *v = load(names[k]);
        if (!v) continue;
        for (size_t f = 0; f < sizeof fills; f++) {
            memset(text, fills[f], n);
            /* linear, not quadratic: ten times the text may take about ten times as long,
             * far from the hundred times a quadratic pass would (a ratio within one run,
             * so a loaded machine does not fail it) */
            double t_tenth = 1e9, t = 1e9;
            int32_t m = 0;
            for (int rep = 0; rep < 3; rep++) { /* the best of three: a busy machine only adds time */
                double t0 = cpu_s();
                (void)sov_tokenize(v, text, n / 10, false, false, ids, (int32_t)n + 8);
                t_tenth = SOV_MIN(t_tenth, cpu_s() - t0);
                t0 = cpu_s();
                m = sov_tokenize(v, text, n, false, false, ids, (int32_t)n + 8);
                t = SOV_MIN(t, cpu_s() - t0);
            }
            CHECK_MSG(t < 40 * t_tenth + 0.2, "%s: %zu x '%c' took %.3f s, a tenth of it %.3f s", names[k], n,
                      fills[f], t, t_tenth);
            CHECK(m > 0 || k == K_UGM); /* Unigram: extra white space goes, all of it here */
            int32_t b = sov_detokenize(v, ids, m, false, true, back, (int32_t)n + 16);
            if (k != K_UGM) /* Unigram drops the extra spaces, as its metadata asks */
                CHECK_MSG(b == (int32_t)n && memcmp(back, text, n) == 0, "%s: run of '%c' did not round-trip", names[k],
                          fills[f]);
        }
        sov_vocab_free(v);
    }
    free(text);
    free(back);
    free(ids);
}

int main(void) {
    RUN(malformed_utf8_tokenizes_like_llama_cpp);
    RUN(random_bytes_never_break);
    RUN(random_text_round_trips);
    RUN(long_runs_stay_fast);
    TEST_EXIT();
}
