/* db_sqlite.c - the SQL runner on a SQLite file (see db.h).
 *
 * Opening: sqlite3_open_v2 (read-write and create, or read-only), a busy timeout, then a
 * first read of sqlite_master, which is where SQLite finds out whether the file is a
 * database at all (opening is lazy). A writable handle then sets
 *   journal_mode=WAL    readers never block the writer nor the writer readers
 *   synchronous=NORMAL  a commit survives a crash of the process (the WAL is written
 *                       before COMMIT returns) but a power loss or OS crash can roll back
 *                       the last commits: the store loses at most a few seconds of
 *                       counting, never its consistency
 *   foreign_keys=ON     windows and usage always belong to a key
 * and, when opened durable (the audit log), synchronous=FULL: the WAL is synced at every
 * commit, so a commit also survives a power loss or OS crash.
 * A read-only WAL database in a folder we cannot write, with no -shm file (no other
 * connection open), cannot be read the normal way (SQLite must create the -shm index);
 * a read-only handle then opens it immutable: a snapshot, right for listing keys.
 *
 * Statements: the table's $N placeholders become SQLite's ?N (a character swap, since
 * our SQL never has a $ elsewhere), each prepared once with SQLITE_PREPARE_PERSISTENT
 * and reset after every use. SQLite's result codes become sov statuses with messages that
 * name the file and the way out (locked, read-only, not a database, corrupted). */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "store/db_impl.h"

typedef struct sqlite_db {
    db base; /* first: a sqlite_db * is a db * */
    sqlite3 *conn;
    char *path;           /* the file as given */
    sqlite3_stmt **cache; /* base.n_stmts prepared statements, NULL until first use */
    sqlite3_stmt *tx[3];  /* BEGIN IMMEDIATE, COMMIT, ROLLBACK (prepared on first use) */
} sqlite_db;

enum { TX_BEGIN, TX_COMMIT, TX_ROLLBACK };
static const char *const TX_SQL[3] = {"BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"};

/* ---- errors ---- */

/* Turns SQLite's result code rc (from doing `what`) into a status and one-line message. */
static sov_status sq_fail(const sqlite_db *d, int rc, const char *what) {
    const char *msg = d->conn ? sqlite3_errmsg(d->conn) : sqlite3_errstr(rc);
    const char *tag = d->base.tag ? d->base.tag : "sqlite";
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return sov_fail(SOV_ERR_IO,
                        "%s is locked by another process (waited %d ms) while %s: try again, or "
                        "stop the process that holds it",
                        tag, d->base.busy_timeout_ms, what);
    case SQLITE_READONLY:
        if (d->base.read_only)
            return sov_fail(SOV_ERR_IO, "%s is opened read-only: cannot write while %s", tag, what);
        return sov_fail(
            SOV_ERR_IO,
            "%s is read-only (%s) while %s: make the file and its folder writable by this user, or "
            "open it read-only",
            tag, msg, what);
    case SQLITE_NOTADB:
        return sov_fail(SOV_ERR_FORMAT,
                        "sqlite: %s is not a sov state database (file is not a database): "
                        "move it away or give another path",
                        d->path);
    case SQLITE_CORRUPT:
        return sov_fail(SOV_ERR_FORMAT,
                        "sqlite: %s is corrupted (%s) while %s: restore it from a backup or "
                        "move it away",
                        d->path, msg, what);
    case SQLITE_NOMEM: return sov_fail(SOV_ERR_NOMEM, "%s: out of memory while %s", tag, what);
    case SQLITE_CANTOPEN: {
        const int e = d->conn ? sqlite3_system_errno(d->conn) : 0;
        return sov_fail(SOV_ERR_IO, "sqlite: cannot open %s (%s%s%s)", d->path, msg, e ? ": " : "",
                        e ? strerror(e) : "");
    }
    case SQLITE_FULL: return sov_fail(SOV_ERR_IO, "%s: the disk is full while %s", tag, what);
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
            return sov_fail(SOV_ERR_NOT_FOUND, "%s: %s refers to a key or tenant that does not exist", tag,
                            what);
        return sov_fail(SOV_ERR_ARG, "%s: %s: %s", tag, what, msg);
    case SQLITE_ERROR: /* SQL that does not fit the schema: the file is not what we expect */
        return sov_fail(SOV_ERR_FORMAT, "%s: %s: %s", tag, what, msg);
    default: return sov_fail(SOV_ERR_IO, "%s: %s: %s", tag, what, msg);
    }
}

/* ---- statements ---- */

/* Prepares sql (with $N placeholders) as a persistent statement. */
static sov_status sq_prepare(sqlite_db *d, const char *sql, sqlite3_stmt **out) {
    char *text = strdup(sql);
    if (!text) return sov_fail(SOV_ERR_NOMEM, "%s: out of memory preparing a statement", d->base.tag);
    for (char *c = text; *c; c++)
        if (c[0] == '$' && c[1] >= '0' && c[1] <= '9') c[0] = '?';
    const int rc = sqlite3_prepare_v3(d->conn, text, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
    free(text);
    if (rc != SQLITE_OK) return sq_fail(d, rc, "preparing a statement");
    return SOV_OK;
}

static sov_status sq_bind(sqlite_db *d, sqlite3_stmt *st, const db_val *args, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const int at = (int)i + 1;
        int rc;
        switch (args[i].type) {
        case DB_INT: rc = sqlite3_bind_int64(st, at, args[i].i); break;
        case DB_REAL: rc = sqlite3_bind_double(st, at, args[i].d); break;
        case DB_TEXT: rc = sqlite3_bind_text(st, at, args[i].s, -1, SQLITE_STATIC); break;
        default: rc = sqlite3_bind_null(st, at); break;
        }
        if (rc != SQLITE_OK) return sq_fail(d, rc, "binding a value");
    }
    return SOV_OK;
}

/* Steps st to the end, copying its rows into out (when not NULL). */
static sov_status sq_step_all(sqlite_db *d, sqlite3_stmt *st, db_rows *out, const char *what) {
    const int n_cols = sqlite3_column_count(st);
    if (out) db_rows_start(out, (size_t)n_cols);
    for (;;) {
        const int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) return sq_fail(d, rc, what);
        for (int c = 0; out && c < n_cols; c++) {
            const unsigned char *s = NULL;
            if (sqlite3_column_type(st, c) != SQLITE_NULL) {
                s = sqlite3_column_text(st, c);
                if (!s) return sq_fail(d, SQLITE_NOMEM, what);
            }
            const sov_status status =
                db_rows_push(out, (const char *)s, s ? (size_t)sqlite3_column_bytes(st, c) : 0);
            if (status != SOV_OK) return status;
        }
    }
    if (out) out->changes = sqlite3_stmt_readonly(st) ? 0 : sqlite3_changes64(d->conn);
    return SOV_OK;
}

/* Binds, runs and resets one prepared statement. */
static sov_status sq_run(sqlite_db *d, sqlite3_stmt *st, const db_val *args, size_t n, db_rows *out,
                         const char *what) {
    sov_status status = sq_bind(d, st, args, n);
    if (status == SOV_OK) status = sq_step_all(d, st, out, what);
    sqlite3_reset(st); /* its return repeats the step's error, already reported */
    sqlite3_clear_bindings(st);
    return status;
}

static sov_status sq_exec(db *base, size_t stmt, const db_val *args, size_t n, db_rows *out) {
    sqlite_db *d = (sqlite_db *)base;
    if (!d->cache[stmt]) {
        const sov_status status = sq_prepare(d, db_sql_text(base, &base->stmts[stmt]), &d->cache[stmt]);
        if (status != SOV_OK) return status;
    }
    return sq_run(d, d->cache[stmt], args, n, out, "running a statement");
}

static sov_status sq_script(db *base, const char *sql) {
    sqlite_db *d = (sqlite_db *)base;
    const int rc = sqlite3_exec(d->conn, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? SOV_OK : sq_fail(d, rc, "changing the schema");
}

static sov_status sq_tx(sqlite_db *d, int which, const char *what) {
    if (!d->tx[which]) {
        const sov_status status = sq_prepare(d, TX_SQL[which], &d->tx[which]);
        if (status != SOV_OK) return status;
    }
    return sq_run(d, d->tx[which], NULL, 0, NULL, what);
}

static sov_status sq_begin(db *base) { return sq_tx((sqlite_db *)base, TX_BEGIN, "starting a write"); }
static sov_status sq_commit(db *base) { return sq_tx((sqlite_db *)base, TX_COMMIT, "committing"); }

static void sq_rollback(db *base) {
    sqlite_db *d = (sqlite_db *)base;
    if (sqlite3_get_autocommit(d->conn)) return; /* no transaction open (SQLite may have ended it) */
    (void)sq_tx(d, TX_ROLLBACK, "rolling back"); /* a failure leaves nothing more to do */
}

static void sq_close(db *base) {
    sqlite_db *d = (sqlite_db *)base;
    for (size_t i = 0; d->cache && i < base->n_stmts; i++)
        sqlite3_finalize(d->cache[i]);
    for (int i = 0; i < 3; i++)
        sqlite3_finalize(d->tx[i]);
    sqlite3_close(d->conn); /* every statement is finalized: closes now */
    free(d->cache);
    free(d->path);
    db_base_free(base);
    free(d);
}

static const db_ops SQLITE_OPS = {sq_exec, sq_script, sq_begin, sq_commit, sq_rollback, sq_close};

/* ---- opening ---- */

/* Names the handle "SQLite file PATH<note>" (tag "sqlite: PATH"). */
static sov_status sq_name(sqlite_db *d, const char *note) {
    const size_t len = strlen(d->path) + strlen(note) + 16;
    char *describe = malloc(len), *tag = malloc(len);
    sov_status status = SOV_ERR_NOMEM;
    if (describe && tag) {
        snprintf(describe, len, "SQLite file %s%s", d->path, note);
        snprintf(tag, len, "sqlite: %s", d->path);
        status = db_set_names(&d->base, describe, tag);
    }
    free(describe);
    free(tag);
    return status;
}

/* "file:PATH?immutable=1" with PATH percent-encoded (for a read-only snapshot). */
static char *immutable_uri(const char *path) {
    const size_t n = strlen(path);
    char *uri = malloc(3 * n + 32);
    if (!uri) return NULL;
    char *o = uri + sprintf(uri, "file:");
    for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            strchr("/._-~", *c))
            *o++ = (char)*c;
        else
            o += sprintf(o, "%%%02X", *c);
    }
    strcpy(o, "?immutable=1");
    return uri;
}

static sov_status sq_connect(sqlite_db *d, const char *name, int flags) {
    if (d->conn) sqlite3_close(d->conn);
    d->conn = NULL;
    const int rc = sqlite3_open_v2(name, &d->conn, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) return sq_fail(d, rc, "opening");
    sqlite3_extended_result_codes(d->conn, 1);
    sqlite3_busy_timeout(d->conn, d->base.busy_timeout_ms);
    return SOV_OK;
}

/* The first read: where a file that is not a database, or a damaged one, shows. */
static int sq_probe(sqlite_db *d) {
    return sqlite3_exec(d->conn, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
}

static sov_status sq_open_read_only(sqlite_db *d) {
    sov_status status = sq_connect(d, d->path, SQLITE_OPEN_READONLY);
    if (status != SOV_OK) return status;
    int rc = sq_probe(d);
    if (rc == SQLITE_READONLY_CANTINIT || rc == SQLITE_READONLY_DIRECTORY) { /* WAL, no -shm: a snapshot */
        char *uri = immutable_uri(d->path);
        if (!uri) return sov_fail(SOV_ERR_NOMEM, "sqlite: out of memory opening %s", d->path);
        status = sq_connect(d, uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI);
        free(uri);
        if (status == SOV_OK) status = sq_name(d, " (a read-only snapshot)");
        if (status != SOV_OK) return status;
        rc = sq_probe(d);
    }
    return rc == SQLITE_OK ? SOV_OK : sq_fail(d, rc, "reading");
}

static sov_status sq_open_writable(sqlite_db *d) {
    sov_status status = sq_connect(d, d->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (status != SOV_OK) return status;
    /* SQLite quietly falls back to read-only when the file is not writable */
    if (sqlite3_db_readonly(d->conn, "main") == 1)
        return sov_fail(SOV_ERR_IO,
                        "sqlite: %s is read-only (no write permission for this user): make it and its "
                        "folder writable, or open it read-only",
                        d->path);
    int rc = sq_probe(d);
    if (rc != SQLITE_OK) return sq_fail(d, rc, "reading");
    rc = sqlite3_exec(d->conn, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON",
                      NULL, NULL, NULL);
    return rc == SQLITE_OK ? SOV_OK : sq_fail(d, rc, "setting WAL mode");
}

/* synchronous=FULL: every commit synced to disk before it returns. */
static sov_status sq_durable(sqlite_db *d) {
    const int rc = sqlite3_exec(d->conn, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    return rc == SQLITE_OK ? SOV_OK : sq_fail(d, rc, "setting synchronous=FULL");
}

sov_status db_sqlite_open(const char *path, const db_open_params *p, db **out) {
    *out = NULL;
    sqlite_db *d = calloc(1, sizeof *d);
    if (!d) return sov_fail(SOV_ERR_NOMEM, "sqlite: out of memory opening %s", path);
    db_base_init(&d->base, &SQLITE_OPS, DB_SQLITE, p);
    d->path = strdup(path);
    d->cache = calloc(p->n_stmts ? p->n_stmts : 1, sizeof *d->cache);
    sov_status status = d->path && d->cache ? sq_name(d, "") : SOV_ERR_NOMEM;
    if (status != SOV_OK) {
        sq_close(&d->base);
        return sov_fail(SOV_ERR_NOMEM, "sqlite: out of memory opening %s", path);
    }
    status = p->read_only ? sq_open_read_only(d) : sq_open_writable(d);
    if (status == SOV_OK && p->durable && !p->read_only) status = sq_durable(d);
    if (status != SOV_OK) {
        sq_close(&d->base);
        return status;
    }
    *out = &d->base;
    return SOV_OK;
}
