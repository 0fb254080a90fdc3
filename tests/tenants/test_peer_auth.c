/* test_peer_auth.c - keys bound to TLS client certificate subjects: the key table's
 * lookup by subject (src/auth/keytable.c: exact match, newest unrevoked key first,
 * revoked, ambiguous across tenants) and the rules tenants_authenticate_peer applies to a
 * request's Authorization header and verified certificate subject (src/tenants), on a
 * real SQLite store: the certificate alone, a bearer key bound to a certificate, both
 * together, revocation. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
#include "store/store.h"
#include "tenants/tenants.h"
#include "test.h"

static const char *const RAD = "CN=radiology,O=Hospital";

/* ---- the key table ---- */

static store_key row(int64_t id, const char *tenant, const char *subject, int64_t revoked) {
    store_key k = {.id = id, .revoked = revoked};
    char key[AUTH_KEY_LEN + 1];
    CHECK(auth_key_new(key, &k) == SOV_OK);
    snprintf(k.tenant, sizeof k.tenant, "%s", tenant);
    snprintf(k.client_subject, sizeof k.client_subject, "%s", subject);
    return k;
}

static void table_finds_keys_by_subject(void) {
    store_key *rows = calloc(7, sizeof *rows);
    rows[0] = row(1, "radiology", RAD, 0);
    rows[1] = row(2, "radiology", RAD, 0); /* newer: wins */
    rows[2] = row(3, "radiology", RAD, 1700000000);
    rows[3] = row(4, "cardiology", "CN=cardiology,O=Hospital", 1700000000);
    rows[4] = row(5, "a", "CN=shared", 0);
    rows[5] = row(6, "b", "CN=shared", 0);
    rows[6] = row(7, "plain", "", 0);
    auth_table *t = auth_table_new(rows, 7);
    CHECK(t);
    const store_key *k = NULL;
    CHECK(auth_table_lookup_subject(t, RAD, &k) == AUTH_OK && k && k->id == 2);
    CHECK(auth_table_lookup_subject(t, "CN=cardiology,O=Hospital", &k) == AUTH_REVOKED && k && k->id == 4);
    CHECK(auth_table_lookup_subject(t, "CN=shared", &k) == AUTH_AMBIGUOUS);
    /* exact matches only: no case folding, no prefix, no whitespace tolerance */
    CHECK(auth_table_lookup_subject(t, "cn=radiology,o=Hospital", &k) == AUTH_UNKNOWN && !k);
    CHECK(auth_table_lookup_subject(t, "CN=radiology", &k) == AUTH_UNKNOWN);
    CHECK(auth_table_lookup_subject(t, "CN=radiology, O=Hospital", &k) == AUTH_UNKNOWN);
    CHECK(auth_table_lookup_subject(t, "CN=radiology,O=Hospital,C=KR", &k) == AUTH_UNKNOWN);
    /* a key without a subject is never found by one, not even by the empty one */
    CHECK(auth_table_lookup_subject(t, "", &k) == AUTH_UNKNOWN);
    CHECK(auth_table_lookup_subject(t, NULL, &k) == AUTH_UNKNOWN);
    auth_table_free(t);
    CHECK(auth_table_lookup_subject(NULL, RAD, &k) == AUTH_UNKNOWN);
}

/* ---- the rules, through a store ---- */

typedef struct fixture {
    char db[512];
    char rad_key[AUTH_KEY_LEN + 1];  /* radiology, bound to RAD */
    char ops_key[AUTH_KEY_LEN + 1];  /* ops, unbound */
    char rad2_key[AUTH_KEY_LEN + 1]; /* radiology, unbound */
    int64_t rad_id;
} fixture;

static int64_t add_key(store *st, const char *tenant, const char *subject, char key[AUTH_KEY_LEN + 1]) {
    store_key k = {.created = 1};
    snprintf(k.tenant, sizeof k.tenant, "%s", tenant);
    snprintf(k.client_subject, sizeof k.client_subject, "%s", subject);
    CHECK(auth_key_new(key, &k) == SOV_OK);
    int64_t id = 0;
    CHECK(store_key_add(st, &k, &id) == SOV_OK);
    return id;
}

static char *bearer(const char *key, char *buf, size_t cap) {
    snprintf(buf, cap, "Bearer %s", key);
    return buf;
}

static tenants *open_tenants(const char *db) {
    tenants *tn = NULL;
    const tenants_params p = {.db = db, .model_id = "m"};
    CHECK(tenants_open(&p, &tn) == SOV_OK);
    return tn;
}

static void certificate_rules(void) {
    fixture f;
    test_tmp_path("peer_auth.db", f.db, sizeof f.db);
    unlink(f.db);
    store *st = NULL;
    CHECK(store_open(f.db, NULL, &st) == SOV_OK);
    if (!st) return;
    f.rad_id = add_key(st, "radiology", RAD, f.rad_key);
    add_key(st, "ops", "", f.ops_key);
    add_key(st, "radiology", "", f.rad2_key);
    store_close(st);
    tenants *tn = open_tenants(f.db);
    if (!tn) return;
    tenants_key k;
    char h[128];
    /* the certificate alone stands for its key */
    CHECK(tenants_authenticate_peer(tn, NULL, RAD, &k) == TENANTS_AUTH_OK);
    CHECK(k.id == f.rad_id && strcmp(k.tenant, "radiology") == 0 && k.model_allowed);
    CHECK(tenants_authenticate_peer(tn, "", RAD, &k) == TENANTS_AUTH_OK); /* an empty header is no header */
    CHECK(tenants_authenticate_peer(tn, NULL, "CN=cardiology,O=Hospital", &k) == TENANTS_AUTH_CERT_UNBOUND);
    CHECK(tenants_authenticate_peer(tn, NULL, NULL, &k) == TENANTS_AUTH_MISSING);
    CHECK(tenants_authenticate_peer(tn, NULL, "", &k) == TENANTS_AUTH_MISSING);
    /* a bound key as a bearer key needs its certificate */
    CHECK(tenants_authenticate_peer(tn, bearer(f.rad_key, h, sizeof h), RAD, &k) == TENANTS_AUTH_OK);
    CHECK(tenants_authenticate_peer(tn, bearer(f.rad_key, h, sizeof h), NULL, &k) ==
          TENANTS_AUTH_CERT_MISMATCH);
    CHECK(tenants_authenticate_peer(tn, bearer(f.rad_key, h, sizeof h), "CN=cardiology,O=Hospital", &k) ==
          TENANTS_AUTH_CERT_MISMATCH);
    /* ...and the plain check knows nothing of certificates (callers without TLS use the peer form) */
    CHECK(tenants_authenticate(tn, bearer(f.rad_key, h, sizeof h), &k) == TENANTS_AUTH_OK);
    /* an unbound key: anywhere, with an unbound certificate, with its tenant's certificate */
    CHECK(tenants_authenticate_peer(tn, bearer(f.ops_key, h, sizeof h), NULL, &k) == TENANTS_AUTH_OK);
    CHECK(tenants_authenticate_peer(tn, bearer(f.ops_key, h, sizeof h), "CN=cardiology,O=Hospital", &k) ==
          TENANTS_AUTH_OK);
    CHECK(strcmp(k.tenant, "ops") == 0);
    CHECK(tenants_authenticate_peer(tn, bearer(f.rad2_key, h, sizeof h), RAD, &k) == TENANTS_AUTH_OK);
    /* but not with another tenant's certificate */
    CHECK(tenants_authenticate_peer(tn, bearer(f.ops_key, h, sizeof h), RAD, &k) ==
          TENANTS_AUTH_CERT_MISMATCH);
    CHECK(k.tenant[0] == '\0'); /* nothing of a refused key's settings leaks out */
    /* header errors come first */
    CHECK(tenants_authenticate_peer(tn, "Basic abc", RAD, &k) == TENANTS_AUTH_MALFORMED);
    CHECK(tenants_authenticate_peer(tn, "Bearer sov-nope", RAD, &k) == TENANTS_AUTH_UNKNOWN);
    tenants_close(tn);

    /* revoking the bound key revokes the certificate */
    CHECK(store_open(f.db, NULL, &st) == SOV_OK);
    if (!st) return;
    CHECK(store_key_revoke(st, f.rad_id, 2) == SOV_OK);
    store_close(st);
    tn = open_tenants(f.db);
    if (!tn) return;
    CHECK(tenants_authenticate_peer(tn, NULL, RAD, &k) == TENANTS_AUTH_REVOKED && k.id == f.rad_id);
    CHECK(tenants_authenticate_peer(tn, bearer(f.rad2_key, h, sizeof h), RAD, &k) == TENANTS_AUTH_OK);
    tenants_close(tn);
    unlink(f.db);
}

int main(void) {
    RUN(table_finds_keys_by_subject);
    RUN(certificate_rules);
    TEST_EXIT();
}
