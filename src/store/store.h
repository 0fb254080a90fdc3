/* store.h - sov's state store: tenants, API keys, rate-limit windows and usage.
 *
 * One interface, two implementations of equal standing, chosen by the name given:
 *   "postgresql://..." or "postgres://..."  PostgreSQL through libpq (a real database
 *                                           several `sov serve` processes share)
 *   anything else                           a SQLite file (WAL mode, busy timeout;
 *                                           created when missing)
 * Every statement is prepared with bound parameters (no SQL is ever built from a value),
 * every return code is checked, and every multi-statement change is one transaction.
 * The schema is versioned in code (store.c's migrations) and brought up to date when the
 * store is opened, serialised between processes that open it at once.
 *
 * Limits are fixed windows in UTC: requests and tokens per minute (the window starting at
 * the minute, now - now % 60) and tokens per day (now - now % 86400). A request reserves
 * its estimate (prompt + max_tokens) at admission, atomically against all three limits, so
 * concurrent requests — from one process or from several sharing a database — can never
 * over-spend; on completion it settles (the windows it was charged to are corrected by
 * used - reserved). A process that dies between the two leaves its reservations charged:
 * never over-spent, at worst under-used.
 *
 * A store handle is used by one thread at a time (the CLI's, or the server's store worker).
 * Times are Unix seconds. Every fallible call returns a sov_status with a one-line
 * sov_last_error() naming the store and what to do ("sqlite: /var/lib/sov/state.db is
 * read-only: ...", "postgresql: connection to server ... refused: is it running?"). */
#ifndef SOV_STORE_STORE_H
#define SOV_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit/audit.h"
#include "sov.h"

typedef struct store store;

enum {
    STORE_TENANT_MAX = 64,   /* bytes of a tenant name (UTF-8, no control characters) */
    STORE_MODELS_MAX = 1024, /* bytes of a key's model list */
    STORE_PREFIX_MAX = 24,   /* bytes of a key's display prefix, e.g. "sov-ab12cdef" */
    STORE_SUBJECT_MAX = 255, /* bytes of a TLS client certificate subject a key stands for */
    STORE_SALT_BYTES = 16,
    STORE_HASH_BYTES = 32,
};

typedef enum store_kind { STORE_SQLITE = 0, STORE_POSTGRES = 1 } store_kind;

typedef struct store_open_params {
    bool read_only;      /* never write (no migrations: an out-of-date schema is an error).
                            SQLite: a WAL file in a folder this user cannot write, with
                            no other connection open, is read as a snapshot */
    int busy_timeout_ms; /* SQLite: wait this long for another process's lock
                            (0: 5000); PostgreSQL: lock_timeout and connect timeout */
    bool durable;        /* SQLite: synchronous=FULL, a commit survives a power loss too, not
                            only a crash of the process (the audit log needs it; PostgreSQL
                            commits are durable by default) */
} store_open_params;

/* Opens (and, unless read_only, migrates) the store. p may be NULL (defaults).
 * Errors: SOV_ERR_IO (cannot open, connect or write; locked past the timeout),
 * SOV_ERR_FORMAT (not a database, corrupted, another program's database, a schema newer
 * than this sov knows, or read_only on a schema older than it), SOV_ERR_ARG (an empty
 * name), SOV_ERR_UNSUPPORTED (PostgreSQL older than 10), SOV_ERR_NOMEM.
 * Any call may fail with SOV_ERR_IO when the database cannot be reached; on PostgreSQL
 * the next call reconnects (a failed call is never retried behind the caller's back). */
sov_status store_open(const char *name, const store_open_params *p, store **out);
void store_close(store *s);

store_kind store_get_kind(const store *s);
/* For messages: "SQLite file state.db" / "PostgreSQL database sov on /tmp/pg:5432"
 * (never a password). */
const char *store_describe(const store *s);
/* The schema version the store is at (== store_schema_version() after a writable open). */
int store_version(const store *s);
int store_schema_version(void);

/* ---- tenants and keys ---- */

typedef struct store_key {
    int64_t id;                        /* assigned by the store, > 0 */
    char prefix[STORE_PREFIX_MAX + 1]; /* shown instead of the key; not unique */
    uint8_t salt[STORE_SALT_BYTES];    /* random, per key */
    uint8_t hash[STORE_HASH_BYTES];    /* HMAC-SHA256 keyed by salt over the whole key */
    char tenant[STORE_TENANT_MAX + 1];
    char models[STORE_MODELS_MAX + 1];   /* comma-separated model ids; "" = every model */
    int64_t rpm, tpm, tpd;               /* requests/min, tokens/min, tokens/day; 0 = no limit */
    bool admin;                          /* may read /metrics (and, later, manage the node) */
    char client_subject[STORE_SUBJECT_MAX + 1]; /* a TLS client certificate subject that stands
                                                   for this key under mTLS; "" = none */
    double weight;                       /* the tenant's scheduling weight (tenants table) */
    int64_t created, last_used, revoked; /* 0: never used / not revoked */
} store_key;

/* Adds a key (all fields but id, weight, last_used and revoked), creating its tenant with
 * weight 1 when new. Writes the new id. Errors: SOV_ERR_ARG (empty or over-long tenant,
 * control characters in it or in models, negative limits). */
sov_status store_key_add(store *s, const store_key *k, int64_t *id_out);
/* Marks a key revoked at `now`. SOV_ERR_NOT_FOUND for an unknown id; revoking a revoked
 * key again changes nothing and returns SOV_OK. */
sov_status store_key_revoke(store *s, int64_t id, int64_t now);
/* Every key, revoked ones included, in id order, each with its tenant's weight. The
 * caller frees *out with free(). */
sov_status store_keys(store *s, store_key **out, size_t *n);
/* A number that changes whenever any key or tenant is added or changed (not on usage):
 * a server polls it to reload its key table. */
sov_status store_keys_version(store *s, int64_t *out);
/* Sets a tenant's scheduling weight (> 0, <= 1000). SOV_ERR_NOT_FOUND: no such tenant. */
sov_status store_tenant_set_weight(store *s, const char *tenant, double weight);

/* ---- limits ---- */

typedef enum store_limit {
    STORE_LIMIT_NONE = 0,
    STORE_LIMIT_RPM,
    STORE_LIMIT_TPM,
    STORE_LIMIT_TPD
} store_limit;

typedef struct store_reserve_req {
    int64_t key_id;
    int64_t rpm, tpm, tpd; /* the key's limits (0 = none) */
    int64_t tokens;        /* the estimate to reserve (prompt + max_tokens) */
    int64_t now;
} store_reserve_req;

typedef struct store_reserve_res {
    store_limit refused;             /* STORE_LIMIT_NONE: reserved */
    int64_t minute_start, day_start; /* the windows charged (or that refused) */
    /* the windows' counts after the attempt (including this request when reserved) */
    int64_t minute_requests, minute_tokens, day_tokens;
} store_reserve_res;

/* Counts one request and reserves r->tokens in the key's current minute and day windows,
 * all or nothing, when every limit allows it; otherwise changes nothing and says which
 * limit refused (rpm first, then tpm, then tpd). A request whose estimate alone exceeds
 * a limit is refused by it. One transaction. Errors: SOV_ERR_ARG (negative values),
 * SOV_ERR_NOT_FOUND (no such key), SOV_ERR_IO. */
sov_status store_reserve(store *s, const store_reserve_req *r, store_reserve_res *res);

/* Several reservations in one transaction (a server groups those that arrive together):
 * each decided exactly as store_reserve would decide it alone, in the order of key ids
 * (the lock order every writer follows) and then of the array; a refusal does not undo
 * the others. res[i] and st[i] answer r[i] (st[i]: SOV_ERR_ARG, SOV_ERR_NOT_FOUND for that
 * request alone). Returns SOV_ERR_IO (in every st[i] too) when the database failed. */
sov_status store_reserve_batch(store *s, const store_reserve_req *r, store_reserve_res *res, sov_status *st,
                               size_t n);

/* The counts of a key's current windows without changing them. */
sov_status store_windows(store *s, int64_t key_id, int64_t now, store_reserve_res *res);

/* The end of one request (or a sum over several of one key in the same hour). */
typedef struct store_settle {
    int64_t key_id;
    int64_t minute_start, day_start; /* windows the reservation was charged to; 0: none */
    int64_t reserved, used;          /* tokens reserved, tokens used (prompt + completion) */
    int64_t at;                      /* when it ended */
    int64_t requests, prompt_tokens, completion_tokens, cached_tokens; /* usage to record */
} store_settle;

/* Settles a batch in one transaction: windows corrected by used - reserved (never below
 * zero), usage added to the key's hourly bucket, last_used raised to `at`. Rows are
 * applied in a fixed order (key, window) so concurrent batches cannot deadlock.
 * Errors: SOV_ERR_ARG (negative values), SOV_ERR_NOT_FOUND (a key that does not exist:
 * nothing of the batch is applied), SOV_ERR_IO. */
sov_status store_settle_batch(store *s, const store_settle *v, size_t n);

/* ---- usage ---- */

typedef struct store_usage_row {
    char tenant[STORE_TENANT_MAX + 1];
    int64_t key_id;
    char prefix[STORE_PREFIX_MAX + 1];
    int64_t requests, prompt_tokens, completion_tokens, cached_tokens;
} store_usage_row;

/* Usage per key from the hour containing `since` (0: all), ordered by tenant then key id;
 * keys without usage in the period are left out. The caller frees *out. */
sov_status store_usage(store *s, int64_t since, store_usage_row **out, size_t *n);

/* Drops windows that can no longer matter (minute windows that started over an hour
 * before now, day windows that started over eight days before now). */
sov_status store_gc(store *s, int64_t now);

/* ---- audit log (src/audit/audit.h; docs/AUDIT.md) ---- */

/* A record to append, with the text its retention keeps (NULL: none) and when that text
 * is to be deleted (Unix seconds; 0: never set). */
typedef struct store_audit_entry {
    audit_record rec; /* in: the fields; out: seq, prev and hash */
    const char *prompt_text, *completion_text;
    int64_t text_expires;
} store_audit_entry;

/* Appends the records, in array order, at the end of the one chain in one transaction:
 * the chain's head row is locked (PostgreSQL: SELECT ... FOR UPDATE, so servers sharing a
 * database append one after another to ONE chain; SQLite: BEGIN IMMEDIATE), each record
 * gets the next number and is linked to the one before, and the head row moves to the
 * last. Nothing is written when any fails. Errors: SOV_ERR_IO, SOV_ERR_FORMAT (a record's
 * encoding version unknown). */
sov_status store_audit_append(store *s, store_audit_entry *e, size_t n);

/* The chain's head row: the number and hash of the last record appended (0 and zeros
 * when the log is empty). */
sov_status store_audit_chain(store *s, int64_t *seq, uint8_t hash[AUDIT_HASH_BYTES]);

/* A stored record as read back. A row no sov could have written (a field too long for
 * its record, a hash that is not hex) comes back with valid false and why set: the
 * verifier reports it as edited. */
typedef struct store_audit_row {
    audit_record rec;
    char *prompt_text, *completion_text; /* NULL: no text kept (or deleted at expiry) */
    int64_t text_expires;                /* 0: none */
    bool valid;
    char why[120];
} store_audit_row;

/* Up to max records with seq >= from, in seq order. The caller frees with
 * store_audit_rows_free. */
sov_status store_audit_read(store *s, int64_t from, size_t max, store_audit_row **out, size_t *n);
void store_audit_rows_free(store_audit_row *rows, size_t n);
/* What the verification walk takes of a row (an invalid row is a record edited). */
void store_audit_row_link(const store_audit_row *row, audit_link *out);
/* The number of the first record that arrived at or after time_ms (0: none). */
sov_status store_audit_first_since(store *s, int64_t time_ms, int64_t *seq);

/* Saves a signed head; reads the heads with seq >= from in seq order (the caller frees
 * *out); the highest seq any head covers (0: none). */
sov_status store_audit_add_head(store *s, const audit_head *h);
sov_status store_audit_heads(store *s, int64_t from, audit_head **out, size_t *n);
sov_status store_audit_signed_through(store *s, int64_t *seq);

/* Walks the whole chain through the verifier (src/audit/verify.c) against the signed
 * heads and the trusted keys, and fills *out (store_audit_verify.c). SOV_OK means the walk
 * ran (its verdict is in *out), else the store failed (SOV_ERR_IO, SOV_ERR_NOMEM). */
sov_status store_audit_verify(store *s, const audit_pub *keys, size_t n_keys, audit_report *out);

/* Deletes the text of records whose text_expires <= now (their hashes stay, so the chain
 * still verifies); *cleared (may be NULL) counts them. */
sov_status store_audit_expire(store *s, int64_t now, int64_t *cleared);

#endif
