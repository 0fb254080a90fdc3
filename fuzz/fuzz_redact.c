/* fuzz_redact.c - libFuzzer target for the redactor: any bytes (the first picks the
 * kinds) must be redacted without a crash or a read outside the text, and the result must
 * keep the redactor's promises: never longer than twice the input, the same through
 * redact_text, redact_dup and a cut buffer (a prefix), findings ordered, at least 3 bytes,
 * starting on an ASCII byte and (in UTF-8 text) ending on a character boundary, no
 * finding of a kind that was not asked for, and the text between findings copied byte for
 * byte. Seeds: tests/redact/seeds/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redact/redact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool utf8_text(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        const unsigned char b = s[i];
        size_t k = b < 0x80             ? 1
                   : (b & 0xE0) == 0xC0 ? 2
                   : (b & 0xF0) == 0xE0 ? 3
                   : (b & 0xF8) == 0xF0 ? 4
                                        : 0;
        if (!k || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return false;
        i += k;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const uint32_t kinds = data[0] & POLICY_REDACT_ALL;
    const size_t len = size - 1;
    char *in = malloc(len ? len : 1); /* exact size: a read past the text is caught */
    if (!in) return 0;
    memcpy(in, data + 1, len);
    const bool utf8 = utf8_text((const unsigned char *)in, len);
    size_t n;
    redact_counts c = {0};
    char *out = redact_dup(kinds, in, len, &n, &c);
    if (!out) abort();
    if (n > REDACT_MAX_OUT(len) || strlen(out) > n) abort();
    /* rebuild the output from the findings: text between them verbatim */
    char *again = malloc(REDACT_MAX_OUT(len) + 1);
    if (!again) abort();
    size_t pos = 0, at = 0, found = 0;
    redact_span sp;
    while (redact_next(kinds, in, len, pos, &sp)) {
        if (sp.start < pos || sp.end < sp.start + 3 || sp.end > len) abort();
        if (!(kinds & (1u << sp.kind))) abort();
        if ((unsigned char)in[sp.start] >= 0x80) abort();
        if (utf8 && sp.end < len && ((unsigned char)in[sp.end] & 0xC0) == 0x80) abort();
        memcpy(again + at, in + pos, sp.start - pos);
        at += sp.start - pos;
        const char *ph = redact_placeholder(sp.kind);
        memcpy(again + at, ph, strlen(ph));
        at += strlen(ph);
        pos = sp.end;
        found++;
    }
    memcpy(again + at, in + pos, len - pos);
    at += len - pos;
    if (at != n || memcmp(again, out, n) != 0) abort();
    uint64_t sum = 0;
    for (int k = 0; k < REDACT_KIND_COUNT; k++)
        sum += c.n[k];
    if (sum != found || (!kinds && (n != len || memcmp(out, in, len) != 0))) abort();
    char cut[9];
    if (redact_text(kinds, in, len, cut, sizeof cut, NULL) != n || memcmp(cut, out, strlen(cut)) != 0)
        abort();
    free(again);
    free(out);
    free(in);
    return 0;
}
