/* admin.h - the admin API of `sov serve --db` under /console/api/ (docs/WEB.md, "The admin
 * API"): API keys (list, create, revoke), the tenants' usage against their quotas, the
 * audit log and its verification. The operator console's admin panels are its client.
 *
 *   GET  /console/api/keys                 every key (never the secret)
 *   POST /console/api/keys                 a new key; the secret is in this reply only
 *   POST /console/api/keys/{id}/revoke     revoked; refused from the server's next request
 *   GET  /console/api/tenants              usage this minute / today against rpm, tpm, tpd
 *   GET  /console/api/audit?after=&limit=  audit records (fields and hashes, never text)
 *   GET  /console/api/audit/verify         the walk of `sov audit verify` (store_audit_verify)
 *
 * Every route needs an admin key (401 without a valid key, 403 for a key that is not an
 * admin key), also on a server started with --metrics-open. A POST must carry
 * Content-Type: application/json, which no cross-site HTML form can send, and an Origin,
 * when present, must be this server's: a page on another site cannot make a browser that
 * holds an admin credential (a client certificate) change anything (CSRF).
 *
 * The HTTP thread never touches the store: each request becomes a tenants_job the store
 * worker runs (tenants.h), and is answered when the worker hands it back (admin_take, on
 * the server's wake-up); a verification, which reads the whole log, runs on a thread of
 * its own with a read-only connection instead, one at a time. A key created or revoked makes the worker read the key table
 * again before it hands the job back, and the server swaps that table in before it
 * answers: the request after a revoke's 200 is refused. With the audit log, every POST is
 * recorded — endpoint, status, the admin key's tenant and id, and as response_id the key
 * concerned ("key-17") — and a successful one is answered only after its record is
 * committed. */
#ifndef SOV_SERVER_ADMIN_H
#define SOV_SERVER_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/server_audit.h"
#include "store/store.h"
#include "tenants/tenants.h"

struct evhttp_request;

typedef struct admin admin;

/* What the admin API needs of the server. */
typedef struct admin_env {
    tenants *tenants;           /* NULL: no state store (the routes answer 404) */
    const srv_audit_cfg *audit; /* NULL: no audit log (admin actions go unrecorded) */
    void *srv;
    /* Authenticates req with any key: true with *key filled, else a 401 was sent. */
    bool (*authenticate)(void *srv, struct evhttp_request *req, const char *route, tenants_key *key);
    /* A reply was sent on route with status (for the server's counters). */
    void (*counted)(void *srv, const char *route, int status);
    /* Swaps in a key table the worker read (the server's poll_keys). */
    void (*poll_keys)(void *srv);
} admin_env;

/* NULL when out of memory. env is copied. */
admin *admin_new(const admin_env *env);
/* True when path is an admin route: then it was answered, or will be once its job ends. */
bool admin_handle(admin *a, struct evhttp_request *req, const char *path);
/* Answers the jobs the store worker has finished (call on every wake-up). */
void admin_take(admin *a);
/* True while jobs are out with the store worker. */
bool admin_busy(const admin *a);
/* Waits (up to 10 s) for jobs still with the worker, then frees everything; requests still
 * waiting get no reply (their connections are closed by the server). */
void admin_free(admin *a);

/* ---- the parsers of outside input (pure; fuzz/fuzz_admin.c, tests/server/test_admin.c) ---- */

enum { ADMIN_BODY_MAX = 16 * 1024, ADMIN_AUDIT_LIMIT_MAX = 200, ADMIN_AUDIT_LIMIT_DEFAULT = 50 };

/* A key to create: POST /console/api/keys's body. */
typedef struct admin_key_req {
    char tenant[STORE_TENANT_MAX + 1];
    char models[STORE_MODELS_MAX + 1]; /* comma-separated; "" = every model */
    int64_t rpm, tpm, tpd;             /* 0 = no limit */
    bool admin;
} admin_key_req;

/* Parses {"tenant": "name", "models": ["id", ...], "rpm": N, "tpm": N, "tokens_per_day": N,
 * "admin": bool}: only "tenant" is required; no other member, no duplicate; the tenant 1..64
 * bytes without control characters; model ids 1..256 bytes without commas or control
 * characters, 1024 bytes in all; limits integers 0..10^12. False with a one-line message in
 * err (naming the member) otherwise. */
bool admin_parse_key_create(const char *body, size_t len, admin_key_req *out, char *err, size_t cap);

/* Parses GET /console/api/audit's query (NULL or "" for none): after=SEQ (0..2^62: records
 * after SEQ; absent: the last `limit`), limit=N (1..200, default 50); nothing else. */
bool admin_parse_audit_query(const char *query, int64_t *after, int *limit, char *err, size_t cap);

/* The {id} of "/console/api/keys/{id}/revoke" from the part after "/console/api/keys/":
 * 1..2^62 in decimal without sign or leading zero. */
bool admin_parse_key_id(const char *s, size_t len, int64_t *id);

#endif
