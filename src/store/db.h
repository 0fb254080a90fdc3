/* db.h - the state store's small SQL runner: one interface over SQLite and PostgreSQL.
 *
 * store.c writes each statement once, with $1-style placeholders, in a table it hands to
 * db_open(); a statement is then run by its index in that table with bound values
 * (db_exec), never built from a value. Where the two dialects differ (identity columns,
 * FOR UPDATE, catalog queries) the table entry carries a PostgreSQL variant. Each handle
 * prepares a statement on first use and keeps it (SQLite: sqlite3_prepare_v3 with
 * SQLITE_PREPARE_PERSISTENT; PostgreSQL: a named server-side statement), so the per-request
 * calls cost one bind and one step, not a parse.
 *
 * Rows come back as text (NULL for SQL NULL) in a db_rows buffer the caller owns and may
 * reuse from call to call (its memory is kept). Every failure is a sov_status with a
 * one-line sov_last_error() that starts with the handle's tag ("sqlite: state.db: ...",
 * "postgresql: database sov on /run/postgresql:5432: ...").
 *
 * Backends live in db_sqlite.c and db_pg.c behind the table of functions in db_impl.h;
 * db.c picks one by the name's form and holds what they share. A handle is used by one
 * thread at a time. */
#ifndef SOV_STORE_DB_H
#define SOV_STORE_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sov.h"

typedef struct db db;

typedef enum db_dialect { DB_SQLITE = 0, DB_POSTGRES = 1 } db_dialect;

/* One SQL statement with $1..$n placeholders; pg replaces it on PostgreSQL when the
 * dialects differ (NULL: the same text serves both). */
typedef struct db_sql {
    const char *sql;
    const char *pg;
} db_sql;

enum { DB_MAX_ARGS = 32 }; /* bound values per statement */

typedef enum db_type { DB_NULL = 0, DB_INT, DB_REAL, DB_TEXT } db_type;

/* A value to bind. */
typedef struct db_val {
    db_type type;
    int64_t i;     /* DB_INT */
    double d;      /* DB_REAL */
    const char *s; /* DB_TEXT: NUL-terminated UTF-8, the caller's */
} db_val;

static inline db_val db_int(int64_t v) { return (db_val){.type = DB_INT, .i = v}; }
static inline db_val db_real(double v) { return (db_val){.type = DB_REAL, .d = v}; }
static inline db_val db_text(const char *s) { return (db_val){.type = DB_TEXT, .s = s}; }

/* The rows a statement returned, as text. Zero-initialise; free with db_rows_free. */
typedef struct db_rows {
    size_t n_rows, n_cols;
    size_t *cell;    /* n_rows * n_cols offsets into text, row-major; SIZE_MAX: SQL NULL */
    size_t n_cells;  /* cells pushed so far */
    size_t cell_cap; /* capacity of cell */
    char *text;      /* every cell's bytes, each NUL-terminated */
    size_t text_len; /* bytes used in text */
    size_t text_cap; /* capacity of text */
    int64_t changes; /* rows inserted, updated or deleted by the statement */
} db_rows;

typedef struct db_open_params {
    bool read_only;      /* SQLite: opened read-only; PostgreSQL: read-only transactions */
    int busy_timeout_ms; /* SQLite busy timeout; PostgreSQL lock_timeout and connect timeout */
    bool durable;        /* SQLite: synchronous=FULL instead of NORMAL */
    const db_sql *stmts; /* the statements db_exec runs by index; must outlive the handle */
    size_t n_stmts;
} db_open_params;

/* "postgresql://..." or "postgres://..." opens PostgreSQL; any other name a SQLite file. */
db_dialect db_dialect_of(const char *name);

/* Opens a connection. Errors: SOV_ERR_IO (cannot open, connect; read-only; locked),
 * SOV_ERR_FORMAT (not a database, corrupted), SOV_ERR_UNSUPPORTED (server too old),
 * SOV_ERR_NOMEM. */
sov_status db_open(const char *name, const db_open_params *p, db **out);
void db_close(db *d);

db_dialect db_get_dialect(const db *d);
/* "SQLite file state.db" / "PostgreSQL database sov on /run/postgresql:5432". */
const char *db_describe(const db *d);
/* The prefix of every message: "sqlite: state.db" / "postgresql: database sov on ...". */
const char *db_tag(const db *d);
bool db_read_only(const db *d);

/* Runs statement `stmt` of the table with n_args bound values; its rows (if out is not
 * NULL) replace out's contents. */
sov_status db_exec(db *d, size_t stmt, const db_val *args, size_t n_args, db_rows *out);
/* Runs SQL without parameters and without caching it (migrations: may hold several
 * statements separated by semicolons). */
sov_status db_script(db *d, const db_sql *sql);

/* A write transaction: SQLite BEGIN IMMEDIATE (takes the write lock now, so the
 * transaction never fails half-way on another writer), PostgreSQL BEGIN (READ COMMITTED;
 * rows are locked where the statements say so). */
sov_status db_begin(db *d);
sov_status db_commit(db *d);
/* Abandons the open transaction, if any; never fails (a lost connection has none left). */
void db_rollback(db *d);

/* The text of a cell; NULL for SQL NULL. */
const char *db_cell(const db_rows *r, size_t row, size_t col);
/* A cell as an integer (SQL NULL or text that is not one: 0). */
int64_t db_cell_int(const db_rows *r, size_t row, size_t col);
double db_cell_real(const db_rows *r, size_t row, size_t col);
void db_rows_free(db_rows *r);

#endif
