/* fuzz_openai.c - libFuzzer target for the server's request parser: a request body is
 * outside input, so oai_parse must turn any bytes into a parsed request or an OpenAI
 * error (status 4xx/5xx, a message), never a crash, a leak or an out-of-bounds read.
 * The whole input is the body; its length's parity picks the endpoint (chat or text
 * completion), so the seeds stay valid JSON. Seeds: tests/server/corpus/ (the
 * malformed-request corpus of test_http.py). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/openai.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const oai_kind kind = size & 1 ? OAI_CHAT : OAI_COMPLETION;
    /* the server hands oai_parse a buffer of exactly len bytes, not NUL-terminated */
    char *body = malloc(size);
    if (!body) return 0;
    memcpy(body, data, size);
    oai_request r;
    oai_error e;
    if (oai_parse(body, size, kind, 32000, &r, &e)) {
        oai_request_free(&r);
    } else if (e.status < 400 || e.status > 599 || !e.message[0]) {
        abort(); /* a refusal must be an HTTP error with a message */
    }
    free(body);
    return 0;
}
