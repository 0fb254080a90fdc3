/* chat_template.c - the chat template `sov serve` and `sov run` use: the operator's
 * --chat-template-file, else the model's own tokenizer.chat_template, compiled by the
 * Jinja interpreter (src/jinja); the built-in families of src/tok/chat.c remain the
 * fallback for files without a template, or with one the interpreter cannot load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 14, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        if (f != stdin) fclose(f);
        return NULL;
    }
    for (size_t got = 1; got > 0;) {
        if (n == cap) {
            char *b = cap < (4u << 20) ? realloc(buf, cap *= 2) : NULL;
            if (!b) {
                free(buf);
                if (f != stdin) fclose(f);
                return NULL;
            }
            buf = b;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    }
    fclose(f);
    *len = n;
    return buf;
}

int cli_chat_template_load(const char *cmd, const char *file, const sov_vocab *vocab,
                           sov_chat_template **out) {
    *out = NULL;
    if (file) {
        size_t len = 0;
        char *src = read_text(file, &len);
        if (!src) return cli_error(cmd, "cannot read the chat template file %s", file);
        const sov_status st = sov_chat_template_compile(src, len, out);
        free(src);
        if (st) return cli_error(cmd, "%s: %s", file, sov_last_error());
        fprintf(stderr, "sov %s: chat template from %s\n", cmd, file);
        return 0;
    }
    size_t len = 0;
    const char *src = sov_vocab_chat_template(vocab, &len);
    if (!src) return 0;
    if (sov_chat_template_compile(src, len, out)) {
        const char *family = sov_chat_template_detect(vocab);
        fprintf(stderr,
                "sov %s: warning: the model's chat template cannot be loaded (%s); using the built-in "
                "'%s' family instead\n",
                cmd, sov_last_error(), family ? family : "chatml");
        return 0;
    }
    fprintf(stderr, "sov %s: chat template: the model's own (tokenizer.chat_template, %zu bytes)\n", cmd,
            len);
    return 0;
}
