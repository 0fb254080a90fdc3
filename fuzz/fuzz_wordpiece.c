/* fuzz_wordpiece.c - libFuzzer target for the BERT WordPiece tokenizer (src/tok/wordpiece.c):
 * any bytes, as text, into the bert-bge vocabulary, with and without special-token parsing
 * and [CLS]/[SEP]. Each run must return ids inside the vocabulary, [CLS] first and [SEP]
 * last when asked, no more ids than twice the bytes (+2), and the ids must detokenize.
 *
 *   build-fuzz/fuzz/fuzz_wordpiece -max_total_time=60 tests/tok/corpus
 * The vocabulary comes from $SOV_SHARED_MODELS/vocab (default ../shared/models/vocab). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sov.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sov_vocab *vocab;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!vocab) {
        const char *dir = getenv("SOV_SHARED_MODELS");
        char path[1024];
        snprintf(path, sizeof path, "%s/vocab/ggml-vocab-bert-bge.gguf", dir ? dir : "../shared/models");
        if (sov_vocab_load(path, &vocab) != SOV_OK) {
            fprintf(stderr, "fuzz_wordpiece: cannot load %s: %s\n", path, sov_last_error());
            abort();
        }
    }
    if (size > 1 << 16) return 0;
    const int32_t cap = 2 * (int32_t)size + 8; /* a word of k bytes gives at most k + 1 pieces */
    sov_token *ids = malloc((size_t)cap * sizeof *ids);
    char *back = malloc(size * 8 + 64);
    if (!ids || !back) abort();
    for (int mode = 0; mode < 4; mode++) {
        const bool add = mode & 1, parse = mode & 2;
        const int32_t n = sov_tokenize(vocab, (const char *)data, size, add, parse, ids, cap);
        if (n < 0 || n > cap) abort();
        for (int32_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= sov_vocab_size(vocab)) abort();
        if (add && (n < 2 || ids[0] != 101 || ids[n - 1] != 102)) abort();
        if (sov_detokenize(vocab, ids, n, true, false, back, (int32_t)(size * 8 + 64)) < 0) abort();
    }
    free(ids);
    free(back);
    return 0;
}
