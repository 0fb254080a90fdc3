/* fuzz_gbnf.c - libFuzzer target for the GBNF parser (src/grammar/gbnf.c): the `grammar`
 * request field is outside input, so any bytes must give a grammar or one line of error
 * (with line and column), never a crash, a hang or an out-of-bounds read. A grammar that
 * compiles is fed the input's own bytes and a few fixed texts, and the matcher's answers
 * must be consistent. Seeds: tests/grammar/gbnf/. */
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
    }
    gram_matcher_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size ? size : 1); /* an exact-size copy: a read past it is caught */
    if (!text) return 0;
    memcpy(text, data, size);
    gram *g = NULL;
    char err[256];
    const sov_status st = gram_from_gbnf(text, size, &g, err, sizeof err);
    if (st != SOV_OK) {
        if (g || !memchr(err, 0, sizeof err) || err[0] == 0 || strchr(err, '\n')) abort();
    } else {
        if (!g) abort();
        static const char *const texts[] = {"a", "ab", "{}", "hello world", "\xc3\xa9", "0123"};
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
            exercise(g, (const uint8_t *)texts[i], strlen(texts[i]));
        exercise(g, data, size);
        gram_free(g);
    }
    free(text);
    return 0;
}
