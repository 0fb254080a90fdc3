/* store_impl.h - what the state store's files share: the handle, the index of every
 * statement (their SQL is in store.c's table, beside the schema) and transaction ending.
 *   store.c         opening, the schema and its migrations, the statement table
 *   store_keys.c    tenants and API keys
 *   store_limits.c  rate-limit windows (reserve, settle), usage, gc
 *   store_audit.c   the audit log (append to the chain, read, signed heads, expiry) */
#ifndef SOV_STORE_STORE_IMPL_H
#define SOV_STORE_STORE_IMPL_H

#include "store/db.h"
#include "store/store.h"

struct store {
    db *db;
    int version;  /* schema version at open */
    db_rows rows; /* result buffer reused by every call (one thread at a time) */
};

enum {
    Q_TABLES,         /* (1 when sov_schema exists, how many tables exist) */
    Q_MIGRATE_LOCK,   /* serialises migrations (SQLite: BEGIN IMMEDIATE already did) */
    Q_SCHEMA_VERSION, /* the highest migration applied */
    Q_SCHEMA_ADD,     /* records a migration */
    Q_TENANT_ENSURE,  /* adds a tenant with weight 1 unless it exists */
    Q_KEY_ADD,        /* inserts a key, returns its id */
    Q_KEYS_BUMP,      /* keys_version + 1 */
    Q_KEYS_VERSION,   /* reads keys_version */
    Q_KEY_REVOKE,     /* revokes a key not yet revoked */
    Q_KEY_EXISTS,     /* one row when the key exists */
    Q_KEYS_LIST,      /* every key with its tenant's weight, by id */
    Q_TENANT_WEIGHT,  /* sets a tenant's weight */
    Q_WIN_ENSURE,     /* creates the key's minute and day windows at zero */
    Q_WIN_LOCK,       /* reads them, locked (PostgreSQL), minute first */
    Q_WIN_CHARGE,     /* adds one request and the estimate to both */
    Q_WIN_READ,       /* reads them without locking */
    Q_WIN_SETTLE,     /* corrects one window's tokens, never below zero */
    Q_USAGE_ADD,      /* adds usage to a key's hourly bucket */
    Q_LAST_USED,      /* raises a key's last_used */
    Q_USAGE_REPORT,   /* usage per key since an hour */
    Q_GC,             /* drops old windows */
    Q_AUDIT_LOCK,     /* reads the audit chain's head row, locked (PostgreSQL) */
    Q_AUDIT_CHAIN,    /* reads it without locking */
    Q_AUDIT_MOVE,     /* moves it to the last record appended */
    Q_AUDIT_INSERT,   /* appends one record */
    Q_AUDIT_READ,     /* records from a number on */
    Q_AUDIT_SINCE,    /* the first record at or after a time */
    Q_AUDIT_HEAD_ADD, /* saves a signed head */
    Q_AUDIT_HEADS,    /* signed heads from a number on */
    Q_AUDIT_SIGNED,   /* the highest number a head covers */
    Q_AUDIT_EXPIRE,   /* deletes expired text */
    Q_COUNT
};

/* Ends the open transaction: commits when status is SOV_OK and keep is set, else rolls
 * back. Returns status, or the commit's failure. */
sov_status store_tx_end(store *s, sov_status status, bool keep);

#endif
