/* keytable.c - the in-memory table a server authenticates against (see auth.h).
 *
 * The keys are sorted by display prefix; a lookup binary-searches the presented token's
 * prefix and verifies every key sharing it (almost always one) by HMAC in constant time.
 * The table is immutable once built: a server builds a new one when the store changes
 * and swaps it in on its own thread. */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"

struct auth_table {
    store_key *keys; /* [n] sorted by prefix */
    size_t n;
};

static int by_prefix(const void *a, const void *b) {
    return strcmp(((const store_key *)a)->prefix, ((const store_key *)b)->prefix);
}

auth_table *auth_table_new(store_key *keys, size_t n) {
    auth_table *t = calloc(1, sizeof *t);
    if (!t) {
        free(keys);
        return NULL;
    }
    if (n > 1) qsort(keys, n, sizeof *keys, by_prefix);
    t->keys = keys;
    t->n = n;
    return t;
}

void auth_table_free(auth_table *t) {
    if (!t) return;
    OPENSSL_cleanse(t->keys, t->n * sizeof *t->keys);
    free(t->keys);
    free(t);
}

size_t auth_table_size(const auth_table *t) { return t ? t->n : 0; }

/* The first key whose prefix is `prefix`, or n. */
static size_t lower_bound(const auth_table *t, const char *prefix) {
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (strcmp(t->keys[mid].prefix, prefix) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

auth_result auth_table_lookup(const auth_table *t, const char *token, size_t len, const store_key **out) {
    *out = NULL;
    if (!t || !auth_key_well_formed(token, len)) return AUTH_UNKNOWN;
    char prefix[AUTH_PREFIX_LEN + 1];
    memcpy(prefix, token, AUTH_PREFIX_LEN);
    prefix[AUTH_PREFIX_LEN] = '\0';
    for (size_t i = lower_bound(t, prefix); i < t->n && strcmp(t->keys[i].prefix, prefix) == 0; i++) {
        uint8_t h[STORE_HASH_BYTES];
        if (auth_key_hash(token, len, t->keys[i].salt, h)) return AUTH_UNKNOWN;
        if (CRYPTO_memcmp(h, t->keys[i].hash, sizeof h) == 0) {
            *out = &t->keys[i];
            return t->keys[i].revoked ? AUTH_REVOKED : AUTH_OK;
        }
    }
    return AUTH_UNKNOWN;
}
