/* fuzz_schema.c - libFuzzer target for the JSON schema compiler (src/grammar/schema.c):
 * a response_format schema is outside input, so any bytes must give a grammar or one
 * line of error, never a crash, a hang or an out-of-bounds read. A schema that compiles
 * is then exercised: the matcher is fed the input's own bytes (from the grammar's
 * start) and a few fixed JSON texts, and its answers must be consistent (try agrees
 * with feed; an accepting state has a zero closing cost; a complete one accepts).
 * Seeds: tests/grammar/corpus/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void exercise(gram *g, const uint8_t *bytes, size_t n) {
    gram_matcher *m = NULL;
    if (gram_matcher_new(g, NULL, &m) != SOV_OK) return;
    for (size_t i = 0; i < n && i < 4096; i++) {
        const bool ok = gram_matcher_try(m, bytes + i, 1);
        if (gram_matcher_feed(m, bytes + i, 1) != ok) abort();
        if (!ok) break;
        if (gram_matcher_accepting(m) && gram_matcher_min_close(m) != 0) abort();
        if (gram_matcher_complete(m) && !gram_matcher_accepting(m)) abort();
    }
    gram_matcher_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size ? size : 1); /* an exact-size copy: a read past it is caught */
    if (!text) return 0;
    memcpy(text, data, size);
    gram *g = NULL;
    char err[256];
    const sov_status st = gram_from_schema(text, size, NULL, &g, err, sizeof err);
    if (st != SOV_OK) {
        if (g || !memchr(err, 0, sizeof err) || err[0] == 0 || strchr(err, '\n')) abort();
    } else {
        if (!g) abort();
        static const char *const texts[] = {"{}", "{\"a\":1}", "[1,2]", "\"x\"", "null", "{\"a\":[{\"b\":\"c\"}]}", "-1.5e3"};
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
            exercise(g, (const uint8_t *)texts[i], strlen(texts[i]));
        exercise(g, data, size);
        gram_free(g);
    }
    free(text);
    return 0;
}
