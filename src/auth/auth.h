/* auth.h - API keys: their format, generation, hashing, the Authorization header, and
 * the in-memory table a server authenticates against.
 *
 * A key is "sov-" followed by 40 lowercase base32 characters (200 random bits from
 * getrandom(2)); its first 12 characters ("sov-ab12cdef") are its display prefix, kept in
 * the clear so a key can be named in lists and logs without revealing it. The store keeps,
 * per key, a random 16-byte salt and HMAC-SHA256(salt, key) — never the key. A lookup
 * finds the candidates by prefix and compares the HMAC of the presented key with each
 * stored one in constant time (CRYPTO_memcmp), so neither the key nor how much of it
 * matched leaks through timing. Hashing is OpenSSL's libcrypto (Debian libssl-dev). */
#ifndef SOV_AUTH_AUTH_H
#define SOV_AUTH_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sov.h"
#include "store/store.h"

enum {
    AUTH_KEY_CHARS = 40,               /* base32 characters after "sov-" */
    AUTH_KEY_LEN = 4 + AUTH_KEY_CHARS, /* whole key */
    AUTH_PREFIX_LEN = 12,              /* "sov-" + 8 characters */
    AUTH_TOKEN_MAX = 512,              /* longest bearer token looked at (longer: malformed) */
};

/* Fills buf with n bytes from the kernel's CSPRNG (getrandom, retried on EINTR).
 * SOV_ERR_IO when the kernel refuses. */
sov_status auth_random(void *buf, size_t n);

/* A new key (AUTH_KEY_LEN characters and a terminator) with its display prefix, salt and
 * hash filled into k (prefix, salt, hash; nothing else is touched). */
sov_status auth_key_new(char key[AUTH_KEY_LEN + 1], store_key *k);

/* True when s[0..n) has the shape of a sov key (prefix and alphabet). */
bool auth_key_well_formed(const char *s, size_t n);

/* HMAC-SHA256 keyed by salt over key[0..n). */
sov_status auth_key_hash(const char *key, size_t n, const uint8_t salt[STORE_SALT_BYTES],
                         uint8_t out[STORE_HASH_BYTES]);

/* ---- the Authorization header ---- */

typedef enum auth_header {
    AUTH_HEADER_OK = 0,    /* *token points into value, *len bytes */
    AUTH_HEADER_MISSING,   /* no header (value NULL) or an empty one */
    AUTH_HEADER_MALFORMED, /* not "Bearer <token68>", too long, or non-ASCII */
} auth_header;

/* Parses "Bearer <token>" (scheme case-insensitive, one or more spaces, surrounding
 * spaces and tabs ignored; the token is RFC 7235 token68 of at most AUTH_TOKEN_MAX
 * bytes). A pure function of its input (fuzzed: fuzz/fuzz_auth.c). */
auth_header auth_parse_bearer(const char *value, const char **token, size_t *len);

/* ---- the key table ---- */

typedef struct auth_table auth_table;

typedef enum auth_result {
    AUTH_OK = 0,
    AUTH_UNKNOWN,   /* no key has this prefix and hash (or not a sov key) */
    AUTH_REVOKED,   /* the key exists and was revoked */
    AUTH_AMBIGUOUS, /* by subject: unrevoked keys of different tenants carry it */
} auth_result;

/* A table over keys[0..n), taking ownership of the array (freed by auth_table_free, or
 * here on failure). NULL when out of memory. */
auth_table *auth_table_new(store_key *keys, size_t n);
void auth_table_free(auth_table *t);
/* Keys in the table, revoked ones included. */
size_t auth_table_size(const auth_table *t);
/* The key presented as token[0..len): AUTH_OK with *out pointing into the table (valid
 * until it is freed). */
auth_result auth_table_lookup(const auth_table *t, const char *token, size_t len, const store_key **out);
/* The key a verified TLS client certificate's subject stands for: the keys whose
 * client_subject equals it byte for byte. AUTH_OK: the newest unrevoked one (a tenant may
 * bind a new key before revoking the old); AUTH_REVOKED: all are revoked (*out: the
 * newest); AUTH_AMBIGUOUS: unrevoked keys of different tenants carry it (refused: a
 * certificate stands for one tenant); AUTH_UNKNOWN: none, or subject is empty. */
auth_result auth_table_lookup_subject(const auth_table *t, const char *subject, const store_key **out);

/* True when the key may use the model `id` (its list is empty, "*", or names id). */
bool auth_key_allows_model(const store_key *k, const char *id);

#endif
