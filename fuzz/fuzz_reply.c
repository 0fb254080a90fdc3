/* fuzz_reply.c - libFuzzer target for reply_parse: a model's output is outside input (a
 * prompt can make a model write anything), so any bytes in any format must parse without a
 * crash or a read past the text, and a stream of them must only ever append: fed in pieces
 * (sizes from the input's first bytes), what it sent is a prefix of the whole parse and the
 * calls are the same. Seeds: tests/reply/seeds/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reply/reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const reply_params p = {.format = (reply_format)(data[0] % REPLY_FORMAT_COUNT),
                            .think_tags = data[0] & 0x40,
                            .starts_thinking = data[0] & 0x80,
                            .id_seed = 1};
    const unsigned step = 1 + data[1] % 16;
    data += 2;
    size -= 2;
    char *text = malloc(size ? size : 1); /* exact size */
    if (!text) return 0;
    memcpy(text, data, size);
    reply whole;
    if (reply_parse(&p, text, size, true, &whole)) abort();
    if (strlen(whole.content) > whole.content_len || whole.content_len > size || whole.reasoning_len > size) abort();
    reply_stream s;
    reply_stream_init(&s, &p);
    size_t cl = 0, rl = 0, calls = 0;
    for (size_t at = 0;;) {
        const size_t n = size - at < step ? size - at : step;
        const bool final = at + n == size;
        reply_delta d;
        if (reply_stream_feed(&s, text + at, n, final, &d)) abort();
        if (cl + d.content_len > whole.content_len ||
            (d.content_len && memcmp(whole.content + cl, d.content, d.content_len)))
            abort();
        if (rl + d.reasoning_len > whole.reasoning_len ||
            (d.reasoning_len && memcmp(whole.reasoning + rl, d.reasoning, d.reasoning_len)))
            abort();
        cl += d.content_len;
        rl += d.reasoning_len;
        for (size_t k = 0; k < d.n_calls; k++) {
            const reply_call *w = &whole.calls[calls + k];
            if (calls + k >= whole.n_calls || strcmp(w->name, d.calls[k].name) ||
                strcmp(w->arguments, d.calls[k].arguments) || strcmp(w->id, d.calls[k].id))
                abort();
        }
        calls += d.n_calls;
        at += n;
        if (final) break;
    }
    if (cl != whole.content_len || rl != whole.reasoning_len || calls != whole.n_calls) abort();
    reply_stream_free(&s);
    reply_free(&whole);
    free(text);
    return 0;
}
