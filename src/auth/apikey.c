/* apikey.c - API key generation, hashing and the Authorization header (see auth.h). */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>
#include <sys/random.h>

#include "auth/auth.h"
#include "core/status.h"

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

sov_status auth_random(void *buf, size_t n) {
    unsigned char *p = buf;
    while (n > 0) {
        const ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return sov_fail(SOV_ERR_IO, "getrandom: %s", strerror(errno));
        }
        p += got;
        n -= (size_t)got;
    }
    return SOV_OK;
}

sov_status auth_key_hash(const char *key, size_t n, const uint8_t salt[STORE_SALT_BYTES],
                         uint8_t out[STORE_HASH_BYTES]) {
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), salt, STORE_SALT_BYTES, (const unsigned char *)key, n, out, &len) ||
        len != STORE_HASH_BYTES)
        return sov_fail(SOV_ERR_NOMEM, "auth: HMAC-SHA256 failed");
    return SOV_OK;
}

sov_status auth_key_new(char key[AUTH_KEY_LEN + 1], store_key *k) {
    uint8_t r[AUTH_KEY_CHARS]; /* one byte per character: 5 of its bits are used */
    sov_status st = auth_random(r, sizeof r);
    if (!st) st = auth_random(k->salt, sizeof k->salt);
    if (st) return st;
    memcpy(key, "sov-", 4);
    for (int i = 0; i < AUTH_KEY_CHARS; i++)
        key[4 + i] = b32[r[i] & 31];
    key[AUTH_KEY_LEN] = '\0';
    OPENSSL_cleanse(r, sizeof r);
    memcpy(k->prefix, key, AUTH_PREFIX_LEN);
    k->prefix[AUTH_PREFIX_LEN] = '\0';
    return auth_key_hash(key, AUTH_KEY_LEN, k->salt, k->hash);
}

bool auth_key_well_formed(const char *s, size_t n) {
    if (n != AUTH_KEY_LEN || memcmp(s, "sov-", 4) != 0) return false;
    for (size_t i = 4; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '2' && s[i] <= '7'))) return false;
    return true;
}

/* RFC 7235 token68: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/", then "=" padding. */
static bool token68(const char *t, size_t n) {
    size_t i = 0;
    while (i < n) {
        const unsigned char c = (unsigned char)t[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '.' || c == '_' || c == '~' || c == '+' || c == '/'))
            break;
        i++;
    }
    if (i == 0) return false;
    while (i < n && t[i] == '=')
        i++;
    return i == n;
}

static bool blank(char c) { return c == ' ' || c == '\t'; }

auth_header auth_parse_bearer(const char *value, const char **token, size_t *len) {
    *token = NULL;
    *len = 0;
    if (!value) return AUTH_HEADER_MISSING;
    size_t a = 0, b = strlen(value);
    while (a < b && blank(value[a]))
        a++;
    while (b > a && blank(value[b - 1]))
        b--;
    if (a == b) return AUTH_HEADER_MISSING;
    if (b - a < 7 || strncasecmp(value + a, "bearer", 6) != 0 || value[a + 6] != ' ')
        return AUTH_HEADER_MALFORMED;
    a += 6;
    while (a < b && value[a] == ' ')
        a++;
    if (a == b || b - a > AUTH_TOKEN_MAX || !token68(value + a, b - a)) return AUTH_HEADER_MALFORMED;
    *token = value + a;
    *len = b - a;
    return AUTH_HEADER_OK;
}

bool auth_key_allows_model(const store_key *k, const char *id) {
    const char *p = k->models;
    while (*p == ' ')
        p++;
    if (!*p) return true;
    const size_t want = strlen(id);
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n > 0 && p[n - 1] == ' ')
            n--;
        if ((n == 1 && p[0] == '*') || (n == want && memcmp(p, id, n) == 0)) return true;
        if (!end) break;
        p = end + 1;
        while (*p == ' ')
            p++;
    }
    return false;
}
