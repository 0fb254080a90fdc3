/* fuzz_policy.c - libFuzzer target for the policy file parser: a policy file is outside
 * input (an operator's, but typed by hand), so policy_parse must turn any bytes into a
 * policy or one line of error naming the line, never a crash or an out-of-bounds read;
 * an accepted policy must hold only values the parser promises (region charset and
 * length, retention_days with "full" only, known redaction kinds), and parsing must be a
 * pure function (the same bytes give the same answer). Seeds: tests/policy/corpus/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_policy(const sov_policy *p) {
    const size_t n = strnlen(p->region, sizeof p->region);
    if (n > POLICY_REGION_MAX) abort();
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/-", p->region[i]))
            abort();
    if ((p->retention == POLICY_RETAIN_FULL) != (p->retention_days > 0)) abort();
    if (p->retention_days < 0 || p->retention_days > POLICY_DAYS_MAX) abort();
    if (p->redact & ~(uint32_t)POLICY_REDACT_ALL) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* an exact-size copy, so reading one byte past the text is caught */
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    memcpy(text, data, size);
    sov_policy a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    const sov_status sa = policy_parse(text, size, "f.toml", &a);
    char msg[600];
    strncpy(msg, sov_last_error(), sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    const sov_status sb = policy_parse(text, size, "f.toml", &b);
    if (sa != sb) abort();
    if (sa == SOV_OK) {
        check_policy(&a);
        if (memcmp(&a, &b, sizeof a) != 0) abort();
    } else if (sa != SOV_ERR_FORMAT || strncmp(msg, "f.toml:", 7) != 0 || strchr(msg, '\n') ||
               strcmp(msg, sov_last_error()) != 0) {
        abort(); /* one line, naming the file, the same each time */
    }
    free(text);
    return 0;
}
