/* db_pg.c - the SQL runner on PostgreSQL through libpq (see db.h).
 *
 * Connecting: PQconnectdbParams with expand_dbname, so the name may be any
 * "postgresql://" or "postgres://" URL (query parameters such as ?host=/socket/dir
 * included). Our defaults (connect_timeout from the busy timeout, at least 2 s;
 * application_name=sov; TCP keepalives and tcp_user_timeout) come before the URL so the
 * URL can override them. Once
 * connected, the session gets lock_timeout (the busy timeout), a statement_timeout and an
 * idle_in_transaction_session_timeout, so no call waits forever on another session, and
 * read-only handles get default_transaction_read_only.
 *
 * Statements are prepared on first use as named server-side statements "s<index>" and
 * run with PQexecPrepared, values sent as text. libpq's messages span lines; they are
 * squashed to one.
 *
 * Losing the server: a call that finds the connection broken (server restarted, backend
 * terminated) fails with SOV_ERR_IO and marks the handle; the next call resets the
 * connection (PQreset: same parameters), prepares statements again as they are used, and
 * goes on, so a long-running server recovers when PostgreSQL comes back. A call is never
 * retried behind the caller's back: a lost COMMIT may or may not have happened. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "store/db_impl.h"

typedef struct pg_db {
    db base; /* first: a pg_db * is a db * */
    PGconn *conn;
    bool *prepared; /* base.n_stmts flags: statement i is prepared on this connection */
    bool in_tx;     /* BEGIN sent and not ended: a lost connection must not be reset mid-way */
    bool lost;      /* the connection failed: reset it before the next call */
} pg_db;

/* ---- messages ---- */

/* Copies libpq's (multi-line) message into buf as one line. */
static const char *squash(const char *msg, char *buf, size_t cap) {
    size_t o = 0;
    bool space = false;
    for (const char *c = msg ? msg : ""; *c && o + 1 < cap; c++) {
        if (*c == '\n' || *c == '\r' || *c == '\t' || *c == ' ') {
            space = o > 0;
            continue;
        }
        if (space && o + 2 < cap) buf[o++] = ' ';
        space = false;
        buf[o++] = *c;
    }
    buf[o] = '\0';
    return buf;
}

/* The status for an error with SQLSTATE code (may be NULL). */
static sov_status pg_status_of(const char *code) {
    if (!code || strlen(code) != 5) return SOV_ERR_IO;
    if (strcmp(code, "23503") == 0) return SOV_ERR_NOT_FOUND; /* foreign key violation */
    if (strncmp(code, "22", 2) == 0 || strncmp(code, "23", 2) == 0) return SOV_ERR_ARG; /* bad data */
    if (strncmp(code, "42", 2) == 0) return SOV_ERR_FORMAT; /* SQL that does not fit the schema */
    return SOV_ERR_IO; /* connection, timeouts, locks, resources, read-only, shutdown */
}

/* Reports a failed call (res may be NULL) while doing `what`. */
static sov_status pg_fail(pg_db *d, const PGresult *res, const char *what) {
    char line[400];
    const char *msg = res ? PQresultErrorMessage(res) : "";
    squash(msg && msg[0] ? msg : PQerrorMessage(d->conn), line, sizeof line);
    if (PQstatus(d->conn) != CONNECTION_OK) {
        d->lost = true;
        return sov_fail(SOV_ERR_IO, "%s: connection lost while %s (%s): the next call reconnects",
                        d->base.tag, what, line);
    }
    const char *code = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (code && strcmp(code, "55P03") == 0)
        return sov_fail(SOV_ERR_IO, "%s is locked by another session (waited %d ms) while %s: %s",
                        d->base.tag, d->base.busy_timeout_ms, what, line);
    if (code && strcmp(code, "57P01") == 0) d->lost = true; /* terminated: the socket closes next */
    return sov_fail(pg_status_of(code), "%s: %s: %s", d->base.tag, what, line);
}

/* ---- connection ---- */

static void quiet_notices(void *arg, const char *message) {
    (void)arg;
    (void)message; /* NOTICEs are for people at psql, not for a server's log */
}

/* Per-session settings, sent after every (re)connection. */
static sov_status pg_session(pg_db *d) {
    char sql[400];
    const int t = d->base.busy_timeout_ms;
    snprintf(
        sql, sizeof sql,
        "SET lock_timeout = %d; SET statement_timeout = %d; SET idle_in_transaction_session_timeout = %d; "
        "SET client_min_messages = warning%s",
        t, t + 30000, t + 60000, d->base.read_only ? "; SET default_transaction_read_only = on" : "");
    PGresult *res = PQexec(d->conn, sql);
    const sov_status status =
        PQresultStatus(res) == PGRES_COMMAND_OK ? SOV_OK : pg_fail(d, res, "setting up");
    PQclear(res);
    return status;
}

/* Makes sure the connection is usable: after a loss, resets it (outside a transaction). */
static sov_status pg_ready(pg_db *d) {
    if (!d->lost && PQstatus(d->conn) == CONNECTION_OK) return SOV_OK;
    if (d->in_tx)
        return sov_fail(SOV_ERR_IO, "%s: connection lost inside a transaction: roll back first", d->base.tag);
    PQreset(d->conn);
    if (PQstatus(d->conn) != CONNECTION_OK) {
        char line[400];
        return sov_fail(SOV_ERR_IO, "%s: cannot reconnect (%s): is the server running?", d->base.tag,
                        squash(PQerrorMessage(d->conn), line, sizeof line));
    }
    d->lost = false;
    memset(d->prepared, 0, d->base.n_stmts * sizeof *d->prepared);
    return pg_session(d);
}

/* ---- statements ---- */

static sov_status pg_prepare(pg_db *d, size_t stmt, const char *name) {
    PGresult *res = PQprepare(d->conn, name, db_sql_text(&d->base, &d->base.stmts[stmt]), 0, NULL);
    const sov_status status =
        PQresultStatus(res) == PGRES_COMMAND_OK ? SOV_OK : pg_fail(d, res, "preparing a statement");
    PQclear(res);
    if (status == SOV_OK) d->prepared[stmt] = true;
    return status;
}

/* Copies a result's rows into out. */
static sov_status pg_rows(const PGresult *res, db_rows *out) {
    const int n_rows = PQntuples(res), n_cols = PQnfields(res);
    db_rows_start(out, (size_t)n_cols);
    for (int r = 0; r < n_rows; r++)
        for (int c = 0; c < n_cols; c++) {
            const bool null = PQgetisnull(res, r, c);
            const sov_status status = db_rows_push(out, null ? NULL : PQgetvalue(res, r, c),
                                                   null ? 0 : (size_t)PQgetlength(res, r, c));
            if (status != SOV_OK) return status;
        }
    const bool query =
        strncmp(PQcmdStatus((PGresult *)res), "SELECT", 6) == 0; /* its count is of rows read */
    out->changes = query ? 0 : strtoll(PQcmdTuples((PGresult *)res), NULL, 10);
    return SOV_OK;
}

static sov_status pg_exec(db *base, size_t stmt, const db_val *args, size_t n, db_rows *out) {
    pg_db *d = (pg_db *)base;
    sov_status status = pg_ready(d);
    if (status != SOV_OK) return status;
    char name[32], num[DB_MAX_ARGS][32];
    const char *values[DB_MAX_ARGS];
    snprintf(name, sizeof name, "s%zu", stmt);
    if (!d->prepared[stmt] && (status = pg_prepare(d, stmt, name)) != SOV_OK) return status;
    for (size_t i = 0; i < n; i++) {
        switch (args[i].type) {
        case DB_INT:
            snprintf(num[i], sizeof num[i], "%lld", (long long)args[i].i);
            values[i] = num[i];
            break;
        case DB_REAL:
            snprintf(num[i], sizeof num[i], "%.17g", args[i].d);
            values[i] = num[i];
            break;
        case DB_TEXT: values[i] = args[i].s; break;
        default: values[i] = NULL; break;
        }
    }
    PGresult *res = PQexecPrepared(d->conn, name, (int)n, values, NULL, NULL, 0);
    const ExecStatusType rs = PQresultStatus(res);
    if (rs == PGRES_TUPLES_OK || rs == PGRES_COMMAND_OK)
        status = out ? pg_rows(res, out) : SOV_OK;
    else
        status = pg_fail(d, res, "running a statement");
    PQclear(res);
    return status;
}

/* Runs SQL without parameters (scripts, transaction control). */
static sov_status pg_simple(pg_db *d, const char *sql, const char *what) {
    PGresult *res = PQexec(d->conn, sql);
    const sov_status status =
        PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK
            ? SOV_OK
            : pg_fail(d, res, what);
    PQclear(res);
    return status;
}

static sov_status pg_script(db *base, const char *sql) {
    pg_db *d = (pg_db *)base;
    const sov_status status = pg_ready(d);
    return status != SOV_OK ? status : pg_simple(d, sql, "changing the schema");
}

static sov_status pg_begin(db *base) {
    pg_db *d = (pg_db *)base;
    sov_status status = pg_ready(d);
    if (status == SOV_OK) status = pg_simple(d, "BEGIN", "starting a transaction");
    d->in_tx = status == SOV_OK;
    return status;
}

static sov_status pg_commit(db *base) {
    pg_db *d = (pg_db *)base;
    const sov_status status = pg_simple(d, "COMMIT", "committing");
    if (status == SOV_OK) d->in_tx = false; /* else the caller rolls back */
    return status;
}

static void pg_rollback(db *base) {
    pg_db *d = (pg_db *)base;
    if (d->in_tx && PQstatus(d->conn) == CONNECTION_OK) {
        PGresult *res = PQexec(d->conn, "ROLLBACK"); /* a failure leaves nothing more to do */
        PQclear(res);
    }
    d->in_tx = false;
}

static void pg_close(db *base) {
    pg_db *d = (pg_db *)base;
    PQfinish(d->conn);
    free(d->prepared);
    db_base_free(base);
    free(d);
}

static const db_ops PG_OPS = {pg_exec, pg_script, pg_begin, pg_commit, pg_rollback, pg_close};

/* ---- opening ---- */

static const char *or_unknown(const char *s) { return s && s[0] ? s : "?"; }

/* Names the handle from the connection (database, host or socket folder, port; never the
 * password). */
static sov_status pg_name(pg_db *d) {
    char describe[512], tag[512];
    snprintf(describe, sizeof describe, "PostgreSQL database %s on %s:%s", or_unknown(PQdb(d->conn)),
             or_unknown(PQhost(d->conn)), or_unknown(PQport(d->conn)));
    snprintf(tag, sizeof tag, "postgresql: database %s on %s:%s", or_unknown(PQdb(d->conn)),
             or_unknown(PQhost(d->conn)), or_unknown(PQport(d->conn)));
    return db_set_names(&d->base, describe, tag);
}

static sov_status pg_connect(pg_db *d, const char *url) {
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d",
             d->base.busy_timeout_ms < 2000 ? 2 : (d->base.busy_timeout_ms + 999) / 1000);
    /* over TCP, a server that vanishes without a word is noticed in about a minute */
    const char *const keys[] = {"connect_timeout",
                                "application_name",
                                "keepalives_idle",
                                "keepalives_interval",
                                "keepalives_count",
                                "tcp_user_timeout",
                                "dbname",
                                "client_encoding",
                                NULL};
    const char *const values[] = {timeout, "sov", "30", "10", "3", "60000", url, "UTF8", NULL};
    d->conn = PQconnectdbParams(keys, values, 1);
    if (!d->conn) return sov_fail(SOV_ERR_NOMEM, "postgresql: out of memory connecting");
    PQsetNoticeProcessor(d->conn, quiet_notices, NULL);
    sov_status status = pg_name(d);
    if (status != SOV_OK) return status;
    if (PQstatus(d->conn) != CONNECTION_OK) {
        char line[400];
        return sov_fail(SOV_ERR_IO, "postgresql: cannot connect to database %s on %s:%s (%s)",
                        or_unknown(PQdb(d->conn)), or_unknown(PQhost(d->conn)), or_unknown(PQport(d->conn)),
                        squash(PQerrorMessage(d->conn), line, sizeof line));
    }
    if (PQserverVersion(d->conn) < 100000) /* identity columns, ON CONFLICT */
        return sov_fail(SOV_ERR_UNSUPPORTED, "%s: PostgreSQL %d is too old: sov needs 10 or newer",
                        d->base.tag, PQserverVersion(d->conn) / 10000);
    return pg_session(d);
}

sov_status db_pg_open(const char *url, const db_open_params *p, db **out) {
    *out = NULL;
    pg_db *d = calloc(1, sizeof *d);
    if (!d) return sov_fail(SOV_ERR_NOMEM, "postgresql: out of memory connecting");
    db_base_init(&d->base, &PG_OPS, DB_POSTGRES, p);
    d->prepared = calloc(p->n_stmts ? p->n_stmts : 1, sizeof *d->prepared);
    sov_status status =
        d->prepared ? pg_connect(d, url) : sov_fail(SOV_ERR_NOMEM, "postgresql: out of memory connecting");
    if (status != SOV_OK) {
        pg_close(&d->base);
        return status;
    }
    *out = &d->base;
    return SOV_OK;
}
