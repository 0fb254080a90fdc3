/* fuzz_web.c - libFuzzer target for the request headers the embedded pages read
 * (src/server/web.c): any bytes as an Accept-Encoding or If-None-Match value must give
 * an answer, never a crash or a read past the value. Seeds: tests/server/corpus_web. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/web.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *value = malloc(size + 1);
    if (!value) return 0;
    memcpy(value, data, size);
    value[size] = '\0'; /* header values never hold a NUL: libevent ends them there */
    (void)web_accepts_gzip(value);
    if (web_etag_matches(value, "\"0123456789abcdef\"") && !strstr(value, "0123456789abcdef") &&
        !strchr(value, '*'))
        abort(); /* a match needs the tag or a wildcard */
    free(value);
    return 0;
}
