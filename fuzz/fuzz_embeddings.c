/* fuzz_embeddings.c - libFuzzer target for the /v1/embeddings body parser: a request body
 * is outside input, so oai_embd_parse must turn any bytes into a parsed request whose
 * inputs keep their promises (1..2048 non-empty inputs, token ids inside the vocabulary)
 * or an OpenAI error (4xx/5xx with a message), never a crash, a leak or an out-of-bounds
 * read. A parsed request's response is rendered too (zero vectors), both encodings.
 * Seeds: tests/server/corpus_embeddings/ (the malformed-input corpus of test_embeddings.py). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/embeddings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { N_VOCAB = 512, N_EMBD = 8 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *body = malloc(size ? size : 1); /* exactly len bytes, not NUL-terminated */
    if (!body) return 0;
    memcpy(body, data, size);
    oai_embd_request r;
    oai_error e;
    if (oai_embd_parse(body, size, N_VOCAB, &r, &e)) {
        if (r.n < 1 || r.n > OAI_EMBD_MAX_INPUTS || (!r.texts == !r.toks)) abort();
        for (int32_t i = 0; i < r.n; i++) {
            if (r.texts && (r.text_len[i] == 0 || strlen(r.texts[i]) != r.text_len[i])) abort();
            if (r.toks && r.n_toks[i] < 1) abort();
            for (int32_t k = 0; r.toks && k < r.n_toks[i]; k++)
                if (r.toks[i][k] < 0 || r.toks[i][k] >= N_VOCAB) abort();
        }
        float *v = calloc((size_t)r.n * N_EMBD, sizeof *v);
        char *j = v ? oai_embd_json(r.model, v, r.n, N_EMBD, r.base64, r.n) : NULL;
        free(j);
        free(v);
        oai_embd_request_free(&r);
    } else if (e.status < 400 || e.status > 599 || !e.message[0]) {
        abort(); /* a refusal must be an HTTP error with a message */
    }
    free(body);
    return 0;
}
