/* fuzz_tokenize.c - libFuzzer target for the tokenizers: any bytes, as text, into each of
 * the six shared vocabularies (SentencePiece and every byte-level BPE pre-tokenizer),
 * with and without BOS/EOS and special-token parsing. Each run must return ids inside
 * the vocabulary, and detokenizing them must work; valid UTF-8 must come back exactly
 * (SentencePiece: unless the text holds its "▁" space mark).
 *
 *   build-fuzz/fuzz/fuzz_tokenize -max_total_time=60 tests/tok/corpus
 * Vocabularies come from $SOV_SHARED_MODELS/vocab (default ../shared/models/vocab). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sov.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {"llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2", "deepseek-llm"};
#define N_VOCABS (sizeof names / sizeof names[0])
static sov_vocab *vocabs[N_VOCABS];

static void load_all(void) {
    const char *dir = getenv("SOV_SHARED_MODELS");
    if (!dir) dir = "../shared/models";
    for (size_t i = 0; i < N_VOCABS; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", dir, names[i]);
        if (sov_vocab_load(path, &vocabs[i]) != SOV_OK) {
            fprintf(stderr, "fuzz_tokenize: cannot load %s: %s\n", path, sov_last_error());
            abort();
        }
    }
}

static bool valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || n - i < len) return false;
        uint32_t cp = len == 1 ? c : (uint32_t)(c & (0x7F >> len));
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!vocabs[0]) load_all();
    if (size > 1 << 16) return 0;
    /* a copy, so that reads past the end stop at ASan's boundary */
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    memcpy(text, data, size);
    const bool utf8 = valid_utf8(data, size);
    for (size_t k = 0; k < N_VOCABS; k++) {
        sov_vocab *v = vocabs[k];
        const bool spm = k < 2;
        for (int mode = 0; mode < 4; mode++) {
            const bool add = mode & 1, special = mode & 2;
            int32_t n = sov_tokenize(v, text, size, add, special, NULL, 0);
            if (n < 0) abort();
            sov_token *ids = malloc(((size_t)n + 1) * sizeof *ids);
            if (!ids) break;
            if (sov_tokenize(v, text, size, add, special, ids, n) != n) abort();
            for (int32_t i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] >= sov_vocab_size(v)) abort();
            int32_t len = sov_detokenize(v, ids, n, special, true, NULL, 0);
            if (len < 0) abort();
            char *back = malloc((size_t)len + 1);
            if (back && sov_detokenize(v, ids, n, special, true, back, len + 1) != len) abort();
            /* (SentencePiece reads a literal "▁" as a space; Phi-3's special tokens, user-
               defined ones included, swallow the white space after them) */
            const bool exact = utf8 && !special && !(spm && memmem(text, size, "\xe2\x96\x81", 3)) &&
                               !(k == 1 && memchr(text, '<', size));
            if (back && exact &&
                ((size_t)len != size || memcmp(back, text, size) != 0))
                abort(); /* the round trip of plain text must be exact */
            free(back);
            free(ids);
        }
    }
    free(text);
    return 0;
}
