/* fuzz_digest_cache.c - libFuzzer target for the model digest cache's reader: the file
 * sits in the state folder and could be damaged (a crash mid-write on a file system
 * without ordered data, an operator's editor), so any bytes must give a miss or a
 * well-formed digest, never a crash or a read past the text. The key looked up is taken
 * from the first line of a well-formed entry when there is one, so hits are exercised too.
 * Seeds: a few cache files in tests/model/digest-cache-corpus/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/digest_cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size ? size : 1); /* exact size: a read past the end is caught */
    if (!text) return 0;
    memcpy(text, data, size);
    digest_key k = {.dev = 2049, .ino = 12, .size = 4096, .mtime_ns = 1, .ctime_ns = 2};
    /* a key from the text itself, when its second line parses as one */
    const char *nl = memchr(text, '\n', size);
    if (nl) {
        char line[128];
        const size_t n = (size_t)(text + size - (nl + 1)) < sizeof line - 1 ? (size_t)(text + size - (nl + 1))
                                                                             : sizeof line - 1;
        memcpy(line, nl + 1, n);
        line[n] = '\0';
        unsigned long long dev, ino, sz;
        long long mt, ct;
        if (sscanf(line, "%llu %llu %llu %lld %lld", &dev, &ino, &sz, &mt, &ct) == 5)
            k = (digest_key){.dev = dev, .ino = ino, .size = sz, .mtime_ns = mt, .ctime_ns = ct};
    }
    char hex[65];
    memset(hex, 'x', sizeof hex);
    if (digest_cache_find(text, size, &k, hex)) {
        if (strlen(hex) != 64) abort();
        for (int i = 0; i < 64; i++)
            if (!strchr("0123456789abcdef", hex[i])) abort();
    }
    free(text);
    return 0;
}
