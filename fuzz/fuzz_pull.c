/* fuzz_pull.c - libFuzzer target for what `sov pull` reads from a hub (src/pull/hub.c): the
 * tree listing (JSON), checksum headers, and sources from the command line. Any bytes give
 * SOV_OK or SOV_ERR_FORMAT (tree), a kept path always passes pull_path_ok, a parsed ETag is
 * 64 lowercase hex digits, a parsed source has a safe repository and path.
 * Seeds: tests/pull/corpus/. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pull/pull.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pull_tree t;
    const sov_status s = pull_tree_parse((const char *)data, size, &t);
    if (s != SOV_OK && s != SOV_ERR_FORMAT) abort();
    if (s == SOV_OK) {
        for (size_t i = 0; i < t.n; i++) {
            if (!pull_path_ok(t.files[i].path)) abort();
            const size_t n = strlen(t.files[i].sha256);
            if (n != 0 && n != 64) abort();
        }
        pull_tree_pick(&t, NULL);
        pull_tree_pick(&t, "Q4_K_M");
        pull_tree_free(&t);
    }
    char hex[65];
    if (pull_etag_sha256((const char *)data, size, hex)) {
        for (int i = 0; i < 64; i++)
            if (!isxdigit((unsigned char)hex[i]) || isupper((unsigned char)hex[i])) abort();
    }
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    pull_source src;
    if (pull_source_parse(text, &src) == SOV_OK) {
        const char *slash = strchr(src.repo, '/');
        if (!slash || strstr(src.repo, "..") || !isalnum((unsigned char)src.repo[0]) ||
            !isalnum((unsigned char)slash[1]))
            abort();
        if (src.path[0] && !pull_path_ok(src.path)) abort();
    }
    free(text);
    return 0;
}
