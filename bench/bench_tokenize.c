/* bench_tokenize.c - tokenizer speed: vocabulary load time and tokenize throughput for
 * each shared vocabulary on a generated ~1 MB mixed corpus (English prose, Korean
 * Hangul, source code, a little Chinese, digits and emoji, in paragraphs).
 *
 *   bench_tokenize [SHARED_MODELS_DIR] [--write-corpus FILE]
 *
 * Load time is the best of 5 sov_vocab_load calls (page cache warm); throughput is the
 * best of 5 sov_tokenize calls over the whole corpus with special-token parsing on. The
 * corpus is deterministic, so --write-corpus gives the same text to other tokenizers
 * (e.g. llama.cpp's llama-tokenize -f FILE) for side-by-side numbers. A second table times
 * the pre-tokenizer split alone (the corpus decoded once, best of 5 splits) for every
 * family, including those no shared vocabulary uses. A vocabulary sov cannot load yet is
 * listed as such. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "sov.h"
#include "tok/tok_impl.h"
#include "tok/unicode.h"

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const char *s) {
    size_t k = strlen(s);
    if (b->n + k + 1 > b->cap) {
        b->cap = (b->n + k + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static const char *const english[] = {
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "a", "model", "token",
    "inference", "sovereign", "machine", "learning", "is", "of", "to", "in", "that", "it's", "we'll",
    "language", "people", "government", "data", "system", "however", "because", "through", "between",
    "understanding", "performance", "memory", "cache", "question", "answer", "Hello", "World", "The",
    "They", "I'm", "don't", "can't", "beautiful", "extraordinary", "quantization", "transformer",
};
static const char *const korean[] = {
    "안녕하세요", "세계", "오늘", "날씨가", "정말", "좋네요", "대한민국의", "수도는", "서울입니다", "한국어",
    "형태소", "분석은", "어렵습니다", "우리는", "인공지능", "모델을", "만들고", "있습니다", "그리고", "데이터",
    "처리", "속도가", "빠릅니다", "사람들이", "함께", "일합니다", "문장", "토큰",
};
static const char *const code[] = {
    "for (int i = 0; i < n; i++) {\n    sum += x[i] * w[i];\n}\n",
    "def forward(self, x):\n    return self.proj(torch.relu(x))\n\n",
    "if (err != NULL) {\n\treturn -1;\n}\n",
    "const auto it = map.find(key); // lookup\n",
    "    let mut v: Vec<u32> = Vec::with_capacity(1024);\n",
    "SELECT id, name FROM users WHERE age >= 18;\n",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); }\n",
    "<div class=\"row\"><span>{{ value }}</span></div>\n",
};
static const char *const misc[] = {
    "中文文本和标点符号。", "数字 1234567890 ", "3.14159 ", "😀👍🏽 ", "2024-05-17 ", "\n\n", "\t", "  ", "— ",
    "(see §3.2) ", "$19.99 ", "100% ", "<|im_end|>", "e.g. ", "日本語 ",
};

#define PICK(a, r) a[(r) % (sizeof a / sizeof a[0])]

static buf make_corpus(size_t target) {
    buf b = {0};
    uint64_t s = 0x9E3779B97F4A7C15ull;
    while (b.n < target) {
        uint64_t kind = rng_next(&s) % 10;
        int words = 20 + (int)(rng_next(&s) % 60);
        if (kind < 5) { /* English paragraph */
            for (int i = 0; i < words; i++) {
                put(&b, PICK(english, rng_next(&s)));
                uint64_t r = rng_next(&s) % 20;
                put(&b, r == 0 ? ", " : r == 1 ? ". " : r == 2 ? PICK(misc, rng_next(&s)) : " ");
            }
            put(&b, "\n\n");
        } else if (kind < 8) { /* Korean paragraph */
            for (int i = 0; i < words; i++) {
                put(&b, PICK(korean, rng_next(&s)));
                uint64_t r = rng_next(&s) % 15;
                put(&b, r == 0 ? ", " : r == 1 ? ". " : r == 2 ? PICK(misc, rng_next(&s)) : " ");
            }
            put(&b, "\n\n");
        } else { /* code */
            for (int i = 0; i < 6; i++) put(&b, PICK(code, rng_next(&s)));
        }
    }
    return b;
}

/* the pre-tokenizer split alone, every family */
static void split_table(const buf *corpus) {
    static const char *const pres[] = {"gpt-2",  "llama3",   "qwen2",  "qwen35",   "deepseek-llm", "deepseek-coder",
                                       "deepseek-v3", "falcon", "tekken", "gpt-4o", "kimi-k2", "bloom",
                                       "superbpe", "smollm", "default"};
    const uint8_t *s = (const uint8_t *)corpus->p;
    const size_t n = corpus->n;
    tok_cpts c = {.cp = malloc((n + 1) * sizeof(uint32_t)), .fl = malloc(n + 1), .off = malloc((n + 1) * sizeof(uint32_t))};
    tok_ends ends = {0}, tmp = {0};
    if (!c.cp || !c.fl || !c.off) abort();
    size_t k = 0;
    for (size_t pos = 0; pos < n; k++) {
        int bad = 0;
        c.off[k] = (uint32_t)pos;
        c.cp[k] = tok_utf8_next(s, n, &pos, &bad);
        c.fl[k] = tok_cpt_flags(c.cp[k]);
    }
    c.n = k;
    c.fl[k] = 0;
    printf("\n%-14s %10s %12s\n", "pre-tokenizer", "split MB/s", "words");
    for (size_t i = 0; i < sizeof pres / sizeof pres[0]; i++) {
        tok_pre pre;
        if (!tok_pre_from_name(pres[i], &pre)) abort();
        double best = 1e9;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = sov_now_s();
            if (!tok_pretokenize(pre, &c, &ends, &tmp)) abort();
            double t = sov_now_s() - t0;
            if (t < best) best = t;
        }
        printf("%-14s %10.1f %12zu\n", pres[i], n / best / 1e6, ends.n);
    }
    free(c.cp);
    free(c.fl);
    free(c.off);
    free(ends.v);
    free(tmp.v);
}

int main(int argc, char **argv) {
    const char *dir = getenv("SOV_SHARED_MODELS");
    const char *write = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--write-corpus") == 0 && i + 1 < argc)
            write = argv[++i];
        else
            dir = argv[i];
    }
    if (!dir) dir = "../shared/models";
    buf corpus = make_corpus(1 << 20);
    if (write) {
        FILE *f = fopen(write, "wb");
        if (!f || fwrite(corpus.p, 1, corpus.n, f) != corpus.n) {
            fprintf(stderr, "cannot write %s\n", write);
            return 1;
        }
        fclose(f);
    }
    static const char *const names[] = {"llama-spm", "llama-bpe",      "qwen2",  "gpt-2",   "phi-3",          "deepseek-llm",
                                        "qwen35",    "deepseek-coder", "falcon", "gemma-4", "nomic-bert-moe", "bert-bge"};
    printf("corpus: %.2f MB (English, Korean, code, mixed)\n", corpus.n / 1e6);
    printf("%-14s %10s %10s %12s %10s\n", "vocab", "load ms", "MB/s", "tokens", "bytes/tok");
    sov_token *ids = malloc(corpus.n * sizeof *ids);
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", dir, names[k]);
        double best_load = 1e9;
        sov_vocab *v = NULL;
        for (int rep = 0; rep < 5; rep++) {
            if (v) sov_vocab_free(v);
            double t0 = sov_now_s();
            if (sov_vocab_load(path, &v) != SOV_OK) break;
            double t = sov_now_s() - t0;
            if (t < best_load) best_load = t;
        }
        if (!v) {
            printf("%-14s not loaded: %s\n", names[k], sov_last_error());
            continue;
        }
        double best = 1e9;
        int32_t n = 0;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = sov_now_s();
            n = sov_tokenize(v, corpus.p, corpus.n, true, true, ids, (int32_t)corpus.n);
            double t = sov_now_s() - t0;
            if (t < best) best = t;
        }
        printf("%-14s %10.1f %10.2f %12d %10.2f\n", names[k], best_load * 1e3, corpus.n / best / 1e6, n,
               (double)corpus.n / n);
        sov_vocab_free(v);
    }
    free(ids);
    split_table(&corpus);
    free(corpus.p);
    return 0;
}
