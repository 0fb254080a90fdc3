/* fuzz_ugm.c - libFuzzer target for the Unigram ("t5") normaliser's untrusted input, the
 * precompiled charsmap (tokenizer.ggml.precompiled_charsmap): the input is a 2-byte
 * length L, L bytes of charsmap, then text. A small t5 vocabulary with that charsmap is
 * written to a temporary file and loaded; loading may fail only with SOV_ERR_FORMAT, and
 * tokenizing the text must stay inside the map (ASan) and return ids in the vocabulary.
 *
 *   build-fuzz/fuzz/fuzz_ugm -max_total_time=60 tests/tok/corpus */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "sov.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const texts[] = {"<pad>", "</s>", "<unk>", "\xe2\x96\x81", "a", "b", "ab", "\xe2\x96\x81" "a", "fi",
                                    "\xe2\x96\x81" "fi", "x"};
#define N_TEXTS (sizeof texts / sizeof texts[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t cm_n = ((size_t)data[0] | (size_t)data[1] << 8) % (size - 1);
    const uint8_t *cm = data + 2, *text = data + 2 + cm_n;
    const size_t text_n = size - 2 - cm_n;
    float scores[N_TEXTS];
    int32_t types[N_TEXTS];
    for (size_t i = 0; i < N_TEXTS; i++) {
        scores[i] = -(float)(i + 1);
        types[i] = i < 2 ? 3 : i == 2 ? 2 : 1;
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_ugm.%d.gguf", (int)getpid());
    gguf_writer *w = gguf_writer_new();
    gguf_set_str(w, "tokenizer.ggml.model", "t5");
    gguf_set_arr_str(w, "tokenizer.ggml.tokens", texts, N_TEXTS);
    gguf_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, scores, N_TEXTS);
    gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, N_TEXTS);
    gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", true);
    gguf_set_bool(w, "tokenizer.ggml.remove_extra_whitespaces", text_n & 1);
    if (cm_n) gguf_set_arr(w, "tokenizer.ggml.precompiled_charsmap", GGUF_U8, cm, cm_n);
    if (gguf_writer_write(w, path, NULL, NULL, NULL, NULL) != SOV_OK) abort();
    gguf_writer_free(w);
    sov_vocab *v = NULL;
    sov_status st = sov_vocab_load(path, &v);
    unlink(path); /* the mapping stays valid */
    if (st != SOV_OK) {
        if (st != SOV_ERR_FORMAT) abort();
        return 0;
    }
    char *t = malloc(text_n ? text_n : 1); /* a copy: reads past the end stop at ASan */
    if (t) {
        memcpy(t, text, text_n);
        int32_t n = sov_tokenize(v, t, text_n, true, true, NULL, 0);
        if (n < 0) abort();
        sov_token *ids = malloc(((size_t)n + 1) * sizeof *ids);
        if (ids && sov_tokenize(v, t, text_n, true, true, ids, n) != n) abort();
        for (int32_t i = 0; ids && i < n; i++)
            if (ids[i] < 0 || ids[i] >= sov_vocab_size(v)) abort();
        free(ids);
        free(t);
    }
    sov_vocab_free(v);
    return 0;
}
