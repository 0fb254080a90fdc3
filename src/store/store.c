/* store.c - the state store (see store.h) in SQL, over the runner in db.h.
 *
 * Schema (version 1; migrations below, applied in one transaction at open; version 3 adds
 * the audit log's audit_records, audit_chain and audit_heads, see MIGRATION_3; version 4
 * the audit records' energy, MIGRATION_4):
 *   sov_schema   (version, applied)            one row per migration applied
 *   tenants      (name, weight, created)
 *   keys         (id, prefix, salt, hash, tenant, models, rpm, tpm, tpd, admin, created,
 *                 last_used, revoked)          salt and hash as lowercase hex text, so both
 *                                              dialects store and compare them alike
 *   keys_version (one, version)                one row, +1 on every key or tenant change
 *   rate_windows (key_id, kind, start, requests, tokens)   kind 'm' (minute) or 'd' (day)
 *   usage_hourly (key_id, hour, requests, prompt_tokens, completion_tokens, cached_tokens)
 * Times are Unix seconds in BIGINT columns.
 *
 * Reservations stay exact under concurrency. SQLite: BEGIN IMMEDIATE takes the database's
 * write lock before the windows are read, so reservations are serial. PostgreSQL (READ
 * COMMITTED, many connections): the key's two window rows are created if missing (INSERT
 * ... ON CONFLICT DO NOTHING waits for a concurrent insert of the same row to finish),
 * then locked with SELECT ... FOR UPDATE in a fixed order (minute, then day), which reads
 * their latest committed counts; the limits are checked on those counts and the rows
 * updated before COMMIT releases them. A refusal rolls the transaction back, so it
 * changes nothing. Every writer locks rows in one global order (windows by key, minute
 * before day, start; then usage by key and hour; then keys), so writers never deadlock.
 *
 * Migrations are serialised between processes: SQLite by BEGIN IMMEDIATE, PostgreSQL by
 * a transaction-scoped advisory lock; inside the lock the version is read again, since
 * another process may have migrated meanwhile. A database that has tables but no
 * sov_schema belongs to someone else: sov refuses it rather than add its tables. */
#include "store/store_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "core/util.h"

/* ---- statements ---- */

#define WINDOW_PAIR "key_id = $1 AND ((kind = 'm' AND start = $2) OR (kind = 'd' AND start = $3))"
/* audit_records' columns in the order store_audit.c binds and reads them */
#define AUDIT_COLUMNS                                                                                        \
    "seq, version, time_ms, node, tenant, key_id, model, model_sha256, model_signer, endpoint, status, "    \
    "prompt_tokens, completion_tokens, cached_tokens, latency_ms, finish_reason, client, response_id, "     \
    "region, retention, prompt_sha256, completion_sha256, prev_hash, hash, prompt_text, completion_text, " \
    "text_expires, energy_uj, energy_source"

static const db_sql QUERIES[Q_COUNT] = {
    /* one statement, so one snapshot: another process's migration is seen whole or not at all */
    [Q_TABLES] = {.sql = "SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sov_schema'), "
                  "(SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%')",
                  .pg = "SELECT (SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() "
                  "AND tablename = 'sov_schema'), "
                  "(SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema())"},
    [Q_MIGRATE_LOCK] = {.sql = "SELECT 1", .pg = "SELECT pg_advisory_xact_lock(7565174)"}, /* 7565174: 'sov' */
    [Q_SCHEMA_VERSION] = {.sql = "SELECT max(version) FROM sov_schema"},
    [Q_SCHEMA_ADD] = {.sql = "INSERT INTO sov_schema (version, applied) VALUES ($1, $2)"},
    [Q_TENANT_ENSURE] = {.sql = "INSERT INTO tenants (name, weight, created) VALUES ($1, 1, $2) "
                         "ON CONFLICT (name) DO NOTHING"},
    [Q_KEY_ADD] = {.sql = "INSERT INTO keys (prefix, salt, hash, tenant, models, rpm, tpm, tpd, admin, created, "
                   "client_subject) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id"},
    [Q_KEYS_BUMP] = {.sql = "UPDATE keys_version SET version = version + 1"},
    [Q_KEYS_VERSION] = {.sql = "SELECT version FROM keys_version"},
    [Q_KEY_REVOKE] = {.sql = "UPDATE keys SET revoked = $2 WHERE id = $1 AND revoked = 0"},
    [Q_KEY_EXISTS] = {.sql = "SELECT 1 FROM keys WHERE id = $1"},
    [Q_KEYS_LIST] =
        {.sql = "SELECT k.id, k.prefix, k.salt, k.hash, k.tenant, k.models, k.rpm, k.tpm, k.tpd, k.admin, "
         "t.weight, k.created, k.last_used, k.revoked, k.client_subject FROM keys k "
         "JOIN tenants t ON t.name = k.tenant "
         "ORDER BY k.id"},
    [Q_TENANT_WEIGHT] = {.sql = "UPDATE tenants SET weight = $2 WHERE name = $1"},
    [Q_WIN_ENSURE] =
        {.sql = "INSERT INTO rate_windows (key_id, kind, start, requests, tokens) "
         "VALUES ($1, 'm', $2, 0, 0), ($1, 'd', $3, 0, 0) ON CONFLICT (key_id, kind, start) DO NOTHING"},
    [Q_WIN_LOCK] = {.sql = "SELECT kind, requests, tokens FROM rate_windows WHERE " WINDOW_PAIR
                    " ORDER BY kind DESC",
                    .pg = "SELECT kind, requests, tokens FROM rate_windows WHERE " WINDOW_PAIR
                    " ORDER BY kind DESC FOR UPDATE"},
    [Q_WIN_CHARGE] =
        {.sql = "UPDATE rate_windows SET requests = requests + 1, tokens = tokens + $4 WHERE " WINDOW_PAIR},
    [Q_WIN_READ] = {.sql = "SELECT kind, requests, tokens FROM rate_windows WHERE " WINDOW_PAIR},
    [Q_WIN_SETTLE] =
        {.sql = "UPDATE rate_windows SET tokens = CASE WHEN tokens + $4 > 0 THEN tokens + $4 ELSE 0 END "
         "WHERE key_id = $1 AND kind = $2 AND start = $3"},
    [Q_USAGE_ADD] =
        {.sql = "INSERT INTO usage_hourly (key_id, hour, requests, prompt_tokens, completion_tokens, "
         "cached_tokens) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key_id, hour) DO UPDATE SET "
         "requests = usage_hourly.requests + excluded.requests, "
         "prompt_tokens = usage_hourly.prompt_tokens + excluded.prompt_tokens, "
         "completion_tokens = usage_hourly.completion_tokens + excluded.completion_tokens, "
         "cached_tokens = usage_hourly.cached_tokens + excluded.cached_tokens"},
    [Q_LAST_USED] = {.sql = "UPDATE keys SET last_used = $2 WHERE id = $1 AND last_used < $2"},
    /* tenant order is byte order on both (PostgreSQL's default collation follows the locale) */
    [Q_USAGE_REPORT] = {.sql = "SELECT k.tenant, k.id, k.prefix, sum(u.requests), sum(u.prompt_tokens), "
                        "sum(u.completion_tokens), sum(u.cached_tokens) FROM usage_hourly u "
                        "JOIN keys k ON k.id = u.key_id WHERE u.hour >= $1 GROUP BY k.tenant, k.id, k.prefix "
                        "ORDER BY k.tenant, k.id",
                        .pg = "SELECT k.tenant, k.id, k.prefix, sum(u.requests), sum(u.prompt_tokens), "
                        "sum(u.completion_tokens), sum(u.cached_tokens) FROM usage_hourly u "
                        "JOIN keys k ON k.id = u.key_id WHERE u.hour >= $1 GROUP BY k.tenant, k.id, k.prefix "
                        "ORDER BY k.tenant COLLATE \"C\", k.id"},
    [Q_GC] = {.sql = "DELETE FROM rate_windows WHERE (kind = 'm' AND start < $1) OR (kind = 'd' AND start < $2)"},
        /* the audit log (store_audit.c): one chain, whose head row every appender locks first */
    [Q_AUDIT_LOCK] = {.sql = "SELECT seq, hash FROM audit_chain WHERE one = 1",
                      .pg = "SELECT seq, hash FROM audit_chain WHERE one = 1 FOR UPDATE"},
    [Q_AUDIT_CHAIN] = {.sql = "SELECT seq, hash FROM audit_chain WHERE one = 1"},
    [Q_AUDIT_MOVE] = {.sql = "UPDATE audit_chain SET seq = $1, hash = $2 WHERE one = 1"},
    [Q_AUDIT_INSERT] = {.sql = "INSERT INTO audit_records (" AUDIT_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, "
                        "$8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, "
                        "$25, $26, $27, $28, $29)"},
    [Q_AUDIT_READ] = {.sql = "SELECT " AUDIT_COLUMNS " FROM audit_records WHERE seq >= $1 ORDER BY seq LIMIT $2"},
    [Q_AUDIT_SINCE] = {.sql = "SELECT min(seq) FROM audit_records WHERE time_ms >= $1"},
    [Q_AUDIT_HEAD_ADD] = {.sql = "INSERT INTO audit_heads (seq, hash, time_ms, key_id, signature) "
                          "VALUES ($1, $2, $3, $4, $5)"},
    [Q_AUDIT_HEADS] = {.sql = "SELECT seq, hash, time_ms, key_id, signature FROM audit_heads WHERE seq >= $1 "
                       "ORDER BY seq, id"},
    [Q_AUDIT_SIGNED] = {.sql = "SELECT max(seq) FROM audit_heads"},
    [Q_AUDIT_EXPIRE] = {.sql = "UPDATE audit_records SET prompt_text = NULL, completion_text = NULL, "
                        "text_expires = NULL WHERE text_expires IS NOT NULL AND text_expires <= $1"},
};

/* ---- migrations ---- */

#define KEY_COLUMNS                                                                                          \
    "prefix TEXT NOT NULL, salt TEXT NOT NULL, hash TEXT NOT NULL, "                                         \
    "tenant TEXT NOT NULL REFERENCES tenants (name), models TEXT NOT NULL, "                                 \
    "rpm BIGINT NOT NULL, tpm BIGINT NOT NULL, tpd BIGINT NOT NULL, admin INTEGER NOT NULL, "                \
    "created BIGINT NOT NULL, last_used BIGINT NOT NULL DEFAULT 0, revoked BIGINT NOT NULL DEFAULT 0)"

/* Version 1: the whole schema. Each step is one statement (PostgreSQL variant where the
 * dialects differ). */
static const db_sql MIGRATION_1[] = {
    {.sql = "CREATE TABLE sov_schema (version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)"},
    {.sql = "CREATE TABLE tenants (name TEXT PRIMARY KEY, weight DOUBLE PRECISION NOT NULL DEFAULT 1, "
            "created BIGINT NOT NULL)"},
    /* the identity column is the one difference: ids are assigned in order and never reused */
    {.sql = "CREATE TABLE keys (id INTEGER PRIMARY KEY AUTOINCREMENT, " KEY_COLUMNS,
     .pg = "CREATE TABLE keys (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, " KEY_COLUMNS},
    {.sql = "CREATE TABLE keys_version (one INTEGER PRIMARY KEY CHECK (one = 1), version BIGINT NOT NULL)"},
    {.sql = "INSERT INTO keys_version (one, version) VALUES (1, 1)"},
    {.sql = "CREATE TABLE rate_windows (key_id BIGINT NOT NULL REFERENCES keys (id), "
            "kind TEXT NOT NULL CHECK (kind IN ('m', 'd')), start BIGINT NOT NULL, "
            "requests BIGINT NOT NULL, tokens BIGINT NOT NULL, PRIMARY KEY (key_id, kind, start))"},
    {.sql = "CREATE TABLE usage_hourly (key_id BIGINT NOT NULL REFERENCES keys (id), hour BIGINT NOT NULL, "
            "requests BIGINT NOT NULL, prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL, "
            "cached_tokens BIGINT NOT NULL, PRIMARY KEY (key_id, hour))"},
    {.sql = "CREATE INDEX usage_hourly_hour ON usage_hourly (hour)"},
};

typedef struct migration {
    int version;
    const db_sql *steps;
    size_t n_steps;
} migration;

#define AUDIT_HEAD_COLUMNS                                                                                   \
    "seq BIGINT NOT NULL, hash TEXT NOT NULL, time_ms BIGINT NOT NULL, key_id TEXT NOT NULL, "               \
    "signature TEXT NOT NULL)"

/* Version 2: a key may stand for a TLS client certificate's subject (mTLS). */
static const db_sql MIGRATION_2[] = {
    {.sql = "ALTER TABLE keys ADD COLUMN client_subject TEXT NOT NULL DEFAULT ''"},
};

/* Version 3: the audit log (docs/AUDIT.md). A record's number is its place in the one
 * chain; hashes are lowercase hex. The text columns hold what retention "full" keeps until
 * text_expires (NULL otherwise). audit_chain is the chain's head row, which appenders lock
 * (serialising servers that share the database) and move; audit_heads the signed heads. */
static const db_sql MIGRATION_3[] = {
    {.sql = "CREATE TABLE audit_records (seq BIGINT PRIMARY KEY, version INTEGER NOT NULL, "
            "time_ms BIGINT NOT NULL, node TEXT NOT NULL, tenant TEXT NOT NULL, key_id BIGINT NOT NULL, "
            "model TEXT NOT NULL, model_sha256 TEXT NOT NULL, model_signer TEXT NOT NULL, "
            "endpoint TEXT NOT NULL, status INTEGER NOT NULL, prompt_tokens BIGINT NOT NULL, "
            "completion_tokens BIGINT NOT NULL, cached_tokens BIGINT NOT NULL, latency_ms BIGINT NOT NULL, "
            "finish_reason TEXT NOT NULL, client TEXT NOT NULL, response_id TEXT NOT NULL, "
            "region TEXT NOT NULL, retention TEXT NOT NULL, prompt_sha256 TEXT NOT NULL, "
            "completion_sha256 TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL, prompt_text TEXT, "
            "completion_text TEXT, text_expires BIGINT)"},
    {.sql = "CREATE INDEX audit_records_time ON audit_records (time_ms)"},
    {.sql = "CREATE INDEX audit_records_response ON audit_records (response_id)"},
    {.sql = "CREATE INDEX audit_records_expiring ON audit_records (text_expires) "
            "WHERE text_expires IS NOT NULL"},
    {.sql = "CREATE TABLE audit_chain (one INTEGER PRIMARY KEY CHECK (one = 1), seq BIGINT NOT NULL, "
            "hash TEXT NOT NULL)"},
    {.sql = "INSERT INTO audit_chain (one, seq, hash) VALUES (1, 0, "
            "'0000000000000000000000000000000000000000000000000000000000000000')"},
    {.sql = "CREATE TABLE audit_heads (id INTEGER PRIMARY KEY AUTOINCREMENT, " AUDIT_HEAD_COLUMNS,
     .pg = "CREATE TABLE audit_heads (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
           AUDIT_HEAD_COLUMNS},
    {.sql = "CREATE INDEX audit_heads_seq ON audit_heads (seq)"},
};

/* Version 4: audit records of encoding version 2 carry the request's energy (microjoules
 * and "rapl" / "estimated"); older rows keep 0 and "", which their version-1 encoding does
 * not hash, so they verify as before. */
static const db_sql MIGRATION_4[] = {
    {.sql = "ALTER TABLE audit_records ADD COLUMN energy_uj BIGINT NOT NULL DEFAULT 0"},
    {.sql = "ALTER TABLE audit_records ADD COLUMN energy_source TEXT NOT NULL DEFAULT ''"},
};

static const migration MIGRATIONS[] = {
    {1, MIGRATION_1, SOV_ARRAY_LEN(MIGRATION_1)},
    {2, MIGRATION_2, SOV_ARRAY_LEN(MIGRATION_2)},
    {3, MIGRATION_3, SOV_ARRAY_LEN(MIGRATION_3)},
    {4, MIGRATION_4, SOV_ARRAY_LEN(MIGRATION_4)},
};

int store_schema_version(void) { return MIGRATIONS[SOV_ARRAY_LEN(MIGRATIONS) - 1].version; }

sov_status store_tx_end(store *s, sov_status status, bool keep) {
    if (status == SOV_OK && keep) {
        status = db_commit(s->db);
        if (status == SOV_OK) return SOV_OK;
    }
    db_rollback(s->db);
    return status;
}

/* The schema version of the database: 0 when empty; SOV_ERR_FORMAT when it has tables
 * but not ours. */
static sov_status schema_read(store *s, int *version) {
    *version = 0;
    sov_status status = db_exec(s->db, Q_TABLES, NULL, 0, &s->rows);
    if (status != SOV_OK) return status;
    const int64_t ours = db_cell_int(&s->rows, 0, 0), tables = db_cell_int(&s->rows, 0, 1);
    if (ours == 0 && tables == 0) return SOV_OK;
    if (ours == 0) {
        const char *what = db_get_dialect(s->db) == DB_SQLITE ? "a SQLite database" : "a PostgreSQL database";
        return sov_fail(SOV_ERR_FORMAT,
                        "%s is %s but not sov's (it has %lld tables and no sov_schema): give "
                        "sov a file or database of its own",
                        db_tag(s->db), what, (long long)tables);
    }
    status = db_exec(s->db, Q_SCHEMA_VERSION, NULL, 0, &s->rows);
    if (status != SOV_OK) return status;
    const int64_t v = db_cell_int(&s->rows, 0, 0);
    if (v < 0 || v > 1000000)
        return sov_fail(SOV_ERR_FORMAT, "%s: schema version %lld is not one sov wrote", db_tag(s->db),
                        (long long)v);
    *version = (int)v;
    return SOV_OK;
}

static sov_status schema_check(const store *s, int version) {
    if (version > store_schema_version())
        return sov_fail(SOV_ERR_FORMAT,
                        "%s: schema version %d is newer than this sov knows (%d): upgrade sov", db_tag(s->db),
                        version, store_schema_version());
    return SOV_OK;
}

/* Applies the migrations after `from`, inside the caller's transaction. */
static sov_status migrate_from(store *s, int from) {
    for (size_t m = 0; m < SOV_ARRAY_LEN(MIGRATIONS); m++) {
        if (MIGRATIONS[m].version <= from) continue;
        for (size_t i = 0; i < MIGRATIONS[m].n_steps; i++) {
            const sov_status status = db_script(s->db, &MIGRATIONS[m].steps[i]);
            if (status != SOV_OK) return status;
        }
        const db_val args[] = {db_int(MIGRATIONS[m].version), db_int((int64_t)time(NULL))};
        const sov_status status = db_exec(s->db, Q_SCHEMA_ADD, args, 2, NULL);
        if (status != SOV_OK) return status;
    }
    return SOV_OK;
}

/* Brings the schema up to date, or (read-only) checks that it is. */
static sov_status store_migrate(store *s) {
    int v;
    sov_status status = schema_read(s, &v);
    if (status == SOV_OK) status = schema_check(s, v);
    if (status != SOV_OK || v == store_schema_version()) {
        s->version = v;
        return status;
    }
    if (db_read_only(s->db))
        return sov_fail(SOV_ERR_FORMAT,
                        "%s: schema version %d is older than this sov's (%d): open it once "
                        "without read-only to migrate it",
                        db_tag(s->db), v, store_schema_version());
    status = db_begin(s->db);
    if (status != SOV_OK) return status;
    status = db_exec(s->db, Q_MIGRATE_LOCK, NULL, 0, NULL);
    if (status == SOV_OK) status = schema_read(s, &v); /* another process may have migrated */
    if (status == SOV_OK) status = schema_check(s, v);
    if (status == SOV_OK) status = migrate_from(s, v);
    status = store_tx_end(s, status, true);
    if (status == SOV_OK) s->version = store_schema_version();
    return status;
}

/* ---- opening ---- */

sov_status store_open(const char *name, const store_open_params *p, store **out) {
    *out = NULL;
    if (!name || !name[0])
        return sov_fail(SOV_ERR_ARG, "store: empty store name: give a file or a postgresql:// URL");
    const store_open_params defaults = {0};
    if (!p) p = &defaults;
    store *s = calloc(1, sizeof *s);
    if (!s) return sov_fail(SOV_ERR_NOMEM, "store: out of memory opening %s", name);
    const db_open_params dp = {.read_only = p->read_only,
                               .busy_timeout_ms = p->busy_timeout_ms,
                               .durable = p->durable,
                               .stmts = QUERIES,
                               .n_stmts = Q_COUNT};
    sov_status status = db_open(name, &dp, &s->db);
    if (status == SOV_OK) status = store_migrate(s);
    if (status != SOV_OK) {
        store_close(s);
        return status;
    }
    *out = s;
    return SOV_OK;
}

void store_close(store *s) {
    if (!s) return;
    db_close(s->db);
    db_rows_free(&s->rows);
    free(s);
}

store_kind store_get_kind(const store *s) {
    return db_get_dialect(s->db) == DB_POSTGRES ? STORE_POSTGRES : STORE_SQLITE;
}
const char *store_describe(const store *s) { return db_describe(s->db); }
int store_version(const store *s) { return s->version; }
