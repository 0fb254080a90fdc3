/* tok_split.c - prints how a byte-level BPE pre-tokenizer splits text, for the regex test
 * (tests/tok/test_tok_pretok_regex.py): `tok_split NAME` reads lines of hex-encoded UTF-8
 * from stdin and writes, per line, the words as hex separated by spaces (an empty line for
 * empty text). NAME is a tokenizer.ggml.pre name; an unknown one exits 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/tok_impl.h"
#include "tok/unicode.h"

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int main(int argc, char **argv) {
    tok_pre pre;
    if (argc != 2 || !tok_pre_from_name(argv[1], &pre)) {
        fprintf(stderr, "usage: tok_split PRE-TOKENIZER-NAME < hex lines (unknown name '%s')\n", argc > 1 ? argv[1] : "");
        return 2;
    }
    size_t cap = 1 << 20;
    char *line = malloc(cap);
    uint8_t *text = malloc(cap / 2 + 1);
    tok_cpts c = {.cp = malloc(cap * sizeof(uint32_t)), .fl = malloc(cap + 1), .off = malloc((cap + 1) * sizeof(uint32_t))};
    tok_ends ends = {0}, tmp = {0};
    if (!line || !text || !c.cp || !c.fl || !c.off) return 1;
    while (fgets(line, (int)cap, stdin)) {
        size_t n = 0;
        for (size_t i = 0; hexval(line[i]) >= 0 && hexval(line[i + 1]) >= 0; i += 2)
            text[n++] = (uint8_t)(hexval(line[i]) * 16 + hexval(line[i + 1]));
        size_t k = 0;
        for (size_t pos = 0; pos < n; k++) {
            int bad = 0;
            c.off[k] = (uint32_t)pos;
            c.cp[k] = tok_utf8_next(text, n, &pos, &bad);
            c.fl[k] = tok_cpt_flags(c.cp[k]);
        }
        c.n = k;
        c.off[k] = (uint32_t)n;
        c.fl[k] = 0;
        if (!tok_pretokenize(pre, &c, &ends, &tmp)) return 1;
        uint32_t start = 0;
        for (size_t i = 0; i < ends.n; i++) {
            if (i) putchar(' ');
            for (uint32_t b = c.off[start]; b < c.off[ends.v[i]]; b++) printf("%02x", text[b]);
            start = ends.v[i];
        }
        putchar('\n');
    }
    free(line);
    free(text);
    free(c.cp);
    free(c.fl);
    free(c.off);
    free(ends.v);
    free(tmp.v);
    return 0;
}
