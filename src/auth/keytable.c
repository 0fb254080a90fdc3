/* keytable.c - the in-memory table a server authenticates against (see auth.h).
 *
 * The keys are sorted by display prefix; a lookup binary-searches the presented token's
 * prefix and verifies every key sharing it (almost always one) by HMAC in constant time.
 * Keys bound to a TLS client certificate subject are also indexed by it (sorted by
 * subject, newest first), for requests that authenticate by certificate alone.
 * The table is immutable once built: a server builds a new one when the store changes
 * and swaps it in on its own thread. */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"

struct auth_table {
    store_key *keys; /* [n] sorted by prefix */
    size_t n;
    const store_key **bound; /* [n_bound] keys with a client_subject, by subject, newest first */
    size_t n_bound;
};

static int by_prefix(const void *a, const void *b) {
    return strcmp(((const store_key *)a)->prefix, ((const store_key *)b)->prefix);
}

static int by_subject(const void *a, const void *b) {
    const store_key *x = *(const store_key *const *)a, *y = *(const store_key *const *)b;
    const int c = strcmp(x->client_subject, y->client_subject);
    return c ? c : (x->id > y->id ? -1 : x->id < y->id);
}

/* The index of the keys bound to a certificate subject; false when out of memory. */
static bool index_subjects(auth_table *t) {
    for (size_t i = 0; i < t->n; i++)
        t->n_bound += t->keys[i].client_subject[0] != '\0';
    if (!t->n_bound) return true;
    t->bound = malloc(t->n_bound * sizeof *t->bound);
    if (!t->bound) return false;
    size_t j = 0;
    for (size_t i = 0; i < t->n; i++)
        if (t->keys[i].client_subject[0]) t->bound[j++] = &t->keys[i];
    qsort(t->bound, t->n_bound, sizeof *t->bound, by_subject);
    return true;
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
    if (!index_subjects(t)) {
        auth_table_free(t);
        return NULL;
    }
    return t;
}

void auth_table_free(auth_table *t) {
    if (!t) return;
    OPENSSL_cleanse(t->keys, t->n * sizeof *t->keys);
    free(t->keys);
    free(t->bound);
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

auth_result auth_table_lookup_subject(const auth_table *t, const char *subject, const store_key **out) {
    *out = NULL;
    if (!t || !subject || !subject[0]) return AUTH_UNKNOWN;
    size_t lo = 0, hi = t->n_bound; /* the first key bound to subject */
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (strcmp(t->bound[mid]->client_subject, subject) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    const store_key *active = NULL, *revoked = NULL;
    for (size_t i = lo; i < t->n_bound && strcmp(t->bound[i]->client_subject, subject) == 0; i++) {
        const store_key *k = t->bound[i]; /* newest first */
        if (k->revoked) {
            if (!revoked) revoked = k;
        } else if (!active) {
            active = k;
        } else if (strcmp(active->tenant, k->tenant) != 0) {
            return AUTH_AMBIGUOUS;
        }
    }
    *out = active ? active : revoked;
    return active ? AUTH_OK : revoked ? AUTH_REVOKED : AUTH_UNKNOWN;
}
