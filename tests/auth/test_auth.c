/* test_auth.c - API keys (src/auth): the key format and its randomness, the salted hash
 * against Python's hmac (an independent implementation), the Authorization header parser
 * on a malformed-input corpus, and the key table: right key found, revoked key reported,
 * a key with the right prefix and a wrong secret refused, keys sharing a prefix told
 * apart, model lists. */
#include <string.h>

#include "auth/auth.h"
#include "test.h"

static void key_has_the_documented_shape(void) {
    for (int i = 0; i < 200; i++) {
        char key[AUTH_KEY_LEN + 1];
        store_key k = {0};
        CHECK(auth_key_new(key, &k) == SOV_OK);
        CHECK_EQ(strlen(key), 44);
        CHECK(strncmp(key, "sov-", 4) == 0);
        CHECK(auth_key_well_formed(key, strlen(key)));
        CHECK(strlen(k.prefix) == AUTH_PREFIX_LEN && strncmp(k.prefix, key, AUTH_PREFIX_LEN) == 0);
        uint8_t h[STORE_HASH_BYTES];
        CHECK(auth_key_hash(key, strlen(key), k.salt, h) == SOV_OK);
        CHECK(memcmp(h, k.hash, sizeof h) == 0);
    }
    CHECK(!auth_key_well_formed("sov-ABCDEFGHIJKLMNOPQRSTUVWXYZ234567abcdefgh", 44)); /* upper case */
    CHECK(!auth_key_well_formed("sk--abcdefghijklmnopqrstuvwxyz234567abcdefgh", 44));
    CHECK(!auth_key_well_formed("sov-abcdefghijklmnopqrstuvwxyz234567abcdefg", 43));
    CHECK(!auth_key_well_formed("sov-abcdefghijklmnopqrstuvwxyz2345671abcdefg", 44)); /* '1' not base32 */
}

/* 500 keys: all distinct, and every base32 character appears in every position's
 * histogram about equally often (a weak generator or a stuck bit shows here). */
static void keys_are_random(void) {
    enum { N = 500 };
    static char keys[N][AUTH_KEY_LEN + 1];
    int count[32] = {0};
    for (int i = 0; i < N; i++) {
        store_key k = {0};
        CHECK(auth_key_new(keys[i], &k) == SOV_OK);
        for (int c = 4; c < AUTH_KEY_LEN; c++) {
            const char ch = keys[i][c];
            count[ch >= 'a' ? ch - 'a' : 26 + ch - '2']++;
        }
    }
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            CHECK(strcmp(keys[i], keys[j]) != 0);
    const double expect = N * 40.0 / 32; /* 625 per symbol; 5 sigma is about 120 */
    for (int s = 0; s < 32; s++)
        CHECK_MSG(fabs(count[s] - expect) < 150, "symbol %d seen %d times", s, count[s]);
}

static void hash_matches_python_hmac(void) {
    uint8_t salt[STORE_SALT_BYTES], h[STORE_HASH_BYTES];
    for (int i = 0; i < STORE_SALT_BYTES; i++)
        salt[i] = (uint8_t)i;
    const char *key = "sov-abcdefghijklmnopqrstuvwxyz234567abcdefgh";
    CHECK(auth_key_hash(key, strlen(key), salt, h) == SOV_OK);
    /* /usr/bin/python3 -c "import hmac,hashlib; print(hmac.new(bytes(range(16)), b'sov-abc...',
     * hashlib.sha256).hexdigest())" */
    static const char *want = "54b1e7cd2c8aa2f5d128aa92514697cd215b9c936f634fbe26445b002caa4baf";
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", h[i]);
    CHECK_STREQ(hex, want);
    salt[0] ^= 1;
    uint8_t h2[STORE_HASH_BYTES];
    CHECK(auth_key_hash(key, strlen(key), salt, h2) == SOV_OK);
    CHECK(memcmp(h, h2, sizeof h) != 0);
}

static void bearer_header_corpus(void) {
    static const struct {
        const char *in;
        auth_header want;
        const char *token;
    } cases[] = {
        {NULL, AUTH_HEADER_MISSING, NULL},
        {"", AUTH_HEADER_MISSING, NULL},
        {"   \t ", AUTH_HEADER_MISSING, NULL},
        {"Bearer sov-abc", AUTH_HEADER_OK, "sov-abc"},
        {"bearer sov-abc", AUTH_HEADER_OK, "sov-abc"},
        {"BEARER   sov-abc  ", AUTH_HEADER_OK, "sov-abc"},
        {"\tBearer sov-abc\t", AUTH_HEADER_OK, "sov-abc"},
        {"Bearer abc==", AUTH_HEADER_OK, "abc=="},
        {"Bearer", AUTH_HEADER_MALFORMED, NULL},
        {"Bearer ", AUTH_HEADER_MALFORMED, NULL},
        {"Bearersov-abc", AUTH_HEADER_MALFORMED, NULL},
        {"Bearer\tsov-abc", AUTH_HEADER_MALFORMED, NULL},
        {"Basic dXNlcjpwYXNz", AUTH_HEADER_MALFORMED, NULL},
        {"sov-abcdefghijklmnopqrstuvwxyz234567abcdefgh", AUTH_HEADER_MALFORMED, NULL},
        {"Bearer sov-abc def", AUTH_HEADER_MALFORMED, NULL},
        {"Bearer sov-ab\xc3\xa9", AUTH_HEADER_MALFORMED, NULL},
        {"Bearer \xff\xfe", AUTH_HEADER_MALFORMED, NULL},
        {"Bearer =abc", AUTH_HEADER_MALFORMED, NULL},
        {"Bearer ab=c", AUTH_HEADER_MALFORMED, NULL},
        {"Bearer sov-abc'; DROP TABLE keys; --", AUTH_HEADER_MALFORMED, NULL},
        {"Bearer sov-abc\r\nX-Evil: 1", AUTH_HEADER_MALFORMED, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *tok = NULL;
        size_t len = 0;
        const auth_header got = auth_parse_bearer(cases[i].in, &tok, &len);
        CHECK_MSG(got == cases[i].want, "case %zu: %d, want %d", i, got, cases[i].want);
        if (cases[i].token)
            CHECK_MSG(tok && len == strlen(cases[i].token) && memcmp(tok, cases[i].token, len) == 0,
                      "case %zu", i);
    }
    /* 10 KB of garbage, and a token one byte over the limit */
    char *big = malloc(10 * 1024 + 1);
    for (int i = 0; i < 10 * 1024; i++)
        big[i] = (char)(33 + (i * 7919) % 94);
    big[10 * 1024] = '\0';
    const char *tok;
    size_t len;
    CHECK(auth_parse_bearer(big, &tok, &len) == AUTH_HEADER_MALFORMED);
    memcpy(big, "Bearer ", 7);
    memset(big + 7, 'a', AUTH_TOKEN_MAX + 1);
    big[7 + AUTH_TOKEN_MAX + 1] = '\0';
    CHECK(auth_parse_bearer(big, &tok, &len) == AUTH_HEADER_MALFORMED);
    big[7 + AUTH_TOKEN_MAX] = '\0';
    CHECK(auth_parse_bearer(big, &tok, &len) == AUTH_HEADER_OK && len == AUTH_TOKEN_MAX);
    free(big);
}

static void table_finds_the_right_key(void) {
    enum { N = 4 };
    char keys[N][AUTH_KEY_LEN + 1];
    store_key *rows = calloc(N, sizeof *rows);
    for (int i = 0; i < N; i++) {
        CHECK(auth_key_new(keys[i], &rows[i]) == SOV_OK);
        rows[i].id = i + 1;
        snprintf(rows[i].tenant, sizeof rows[i].tenant, "t%d", i);
    }
    rows[2].revoked = 1700000000;
    /* a fourth key forced to share the first one's prefix: both must still be told apart */
    memcpy(keys[3], keys[0], AUTH_PREFIX_LEN);
    CHECK(auth_key_hash(keys[3], AUTH_KEY_LEN, rows[3].salt, rows[3].hash) == SOV_OK);
    memcpy(rows[3].prefix, rows[0].prefix, sizeof rows[0].prefix);
    auth_table *t = auth_table_new(rows, N);
    CHECK(t && auth_table_size(t) == N);
    const store_key *k;
    for (int i = 0; i < N; i++) {
        const auth_result r = auth_table_lookup(t, keys[i], AUTH_KEY_LEN, &k);
        CHECK_MSG(r == (i == 2 ? AUTH_REVOKED : AUTH_OK), "key %d: %d", i, r);
        CHECK(k && k->id == i + 1);
    }
    char wrong[AUTH_KEY_LEN + 1];
    memcpy(wrong, keys[1], sizeof wrong);
    wrong[AUTH_KEY_LEN - 1] = wrong[AUTH_KEY_LEN - 1] == 'a' ? 'b' : 'a'; /* right prefix, wrong secret */
    CHECK(auth_table_lookup(t, wrong, AUTH_KEY_LEN, &k) == AUTH_UNKNOWN && !k);
    CHECK(auth_table_lookup(t, keys[1], AUTH_KEY_LEN - 1, &k) == AUTH_UNKNOWN);
    CHECK(auth_table_lookup(t, "", 0, &k) == AUTH_UNKNOWN);
    CHECK(auth_table_lookup(t, "sk-proj-abc", 11, &k) == AUTH_UNKNOWN);
    auth_table_free(t);
    auth_table *empty = auth_table_new(NULL, 0);
    CHECK(empty && auth_table_size(empty) == 0);
    CHECK(auth_table_lookup(empty, keys[0], AUTH_KEY_LEN, &k) == AUTH_UNKNOWN);
    auth_table_free(empty);
}

static void model_lists(void) {
    store_key k = {0};
    CHECK(auth_key_allows_model(&k, "stories260K"));
    snprintf(k.models, sizeof k.models, "*");
    CHECK(auth_key_allows_model(&k, "anything"));
    snprintf(k.models, sizeof k.models, "llama-3b, stories260K ,qwen");
    CHECK(auth_key_allows_model(&k, "stories260K"));
    CHECK(auth_key_allows_model(&k, "qwen"));
    CHECK(auth_key_allows_model(&k, "llama-3b"));
    CHECK(!auth_key_allows_model(&k, "stories"));
    CHECK(!auth_key_allows_model(&k, "stories260K,qwen"));
    snprintf(k.models, sizeof k.models, "x'); DROP TABLE keys; --");
    CHECK(!auth_key_allows_model(&k, "stories260K"));
    CHECK(auth_key_allows_model(&k, "x'); DROP TABLE keys; --"));
}

int main(void) {
    RUN(key_has_the_documented_shape);
    RUN(keys_are_random);
    RUN(hash_matches_python_hmac);
    RUN(bearer_header_corpus);
    RUN(table_finds_the_right_key);
    RUN(model_lists);
    TEST_EXIT();
}
