/* db_impl.h - what the SQL runner's backends (db_sqlite.c, db_pg.c) share with db.c.
 *
 * A backend's handle starts with a struct db (so a pointer to it is a db *), whose ops
 * table db.c calls through; db.c keeps the parts that do not depend on the database:
 * the statement table, the names used in messages and the row buffer. */
#ifndef SOV_STORE_DB_IMPL_H
#define SOV_STORE_DB_IMPL_H

#include "store/db.h"

typedef struct db_ops {
    sov_status (*exec)(db *d, size_t stmt, const db_val *args, size_t n_args, db_rows *out);
    sov_status (*script)(db *d, const char *sql);
    sov_status (*begin)(db *d);
    sov_status (*commit)(db *d);
    void (*rollback)(db *d);
    void (*close)(db *d); /* frees the backend's handle, base included */
} db_ops;

struct db {
    const db_ops *ops;
    db_dialect dialect;
    bool read_only;
    int busy_timeout_ms; /* > 0 */
    const db_sql *stmts; /* the caller's statement table */
    size_t n_stmts;
    char *describe; /* "SQLite file x.db"; malloc'd */
    char *tag;      /* "sqlite: x.db"; malloc'd */
};

/* Fills the shared part of a backend's handle (describe/tag are formatted later with
 * db_set_names). */
void db_base_init(db *d, const db_ops *ops, db_dialect dialect, const db_open_params *p);
/* Sets describe and tag; SOV_ERR_NOMEM when they cannot be allocated. */
sov_status db_set_names(db *d, const char *describe, const char *tag);
void db_base_free(db *d);

/* The SQL of statement `stmt` (or of one script) in the handle's dialect. */
const char *db_sql_text(const db *d, const db_sql *sql);

/* Row building for the backends: start a result with n_cols columns, then push each
 * cell in row-major order (s NULL: SQL NULL). */
void db_rows_start(db_rows *r, size_t n_cols);
sov_status db_rows_push(db_rows *r, const char *s, size_t len);

sov_status db_sqlite_open(const char *path, const db_open_params *p, db **out);
sov_status db_pg_open(const char *url, const db_open_params *p, db **out);

#endif
