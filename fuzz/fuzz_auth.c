/* fuzz_auth.c - libFuzzer target for the Authorization header parser and the key table
 * lookup behind it: any bytes as the header's value must give a status, never a crash,
 * and a token it accepts must lie inside the value and be looked up safely. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static auth_table *table;
    if (!table) { /* one real key, so lookups reach the HMAC path */
        store_key *k = calloc(1, sizeof *k);
        char key[AUTH_KEY_LEN + 1];
        if (!k || auth_key_new(key, k)) abort();
        table = auth_table_new(k, 1);
    }
    char *value = malloc(size + 1);
    if (!value) return 0;
    memcpy(value, data, size);
    value[size] = '\0'; /* HTTP header values never hold a NUL: libevent ends them there */
    const char *tok;
    size_t len;
    if (auth_parse_bearer(value, &tok, &len) == AUTH_HEADER_OK) {
        if (tok < value || tok + len > value + strlen(value) || len == 0 || len > AUTH_TOKEN_MAX) abort();
        const store_key *k;
        (void)auth_table_lookup(table, tok, len, &k);
    }
    free(value);
    return 0;
}
