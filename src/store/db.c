/* db.c - the SQL runner's front (see db.h): picks the backend by the name's form,
 * forwards each call through the backend's table of functions, and holds the row buffer
 * both backends fill. */
#include "store/db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "store/db_impl.h"

db_dialect db_dialect_of(const char *name) {
    if (strncmp(name, "postgresql://", 13) == 0 || strncmp(name, "postgres://", 11) == 0) return DB_POSTGRES;
    return DB_SQLITE;
}

sov_status db_open(const char *name, const db_open_params *p, db **out) {
    *out = NULL;
    if (!name || !name[0]) return sov_fail(SOV_ERR_ARG, "store: empty database name");
    if (db_dialect_of(name) == DB_POSTGRES) return db_pg_open(name, p, out);
    return db_sqlite_open(name, p, out);
}

void db_close(db *d) {
    if (d) d->ops->close(d);
}

db_dialect db_get_dialect(const db *d) { return d->dialect; }
const char *db_describe(const db *d) { return d->describe; }
const char *db_tag(const db *d) { return d->tag; }
bool db_read_only(const db *d) { return d->read_only; }

sov_status db_exec(db *d, size_t stmt, const db_val *args, size_t n_args, db_rows *out) {
    if (stmt >= d->n_stmts || n_args > DB_MAX_ARGS)
        return sov_fail(SOV_ERR_ARG, "%s: statement %zu with %zu values is not in the table", d->tag, stmt,
                        n_args);
    return d->ops->exec(d, stmt, args, n_args, out);
}

sov_status db_script(db *d, const db_sql *sql) { return d->ops->script(d, db_sql_text(d, sql)); }
sov_status db_begin(db *d) { return d->ops->begin(d); }
sov_status db_commit(db *d) { return d->ops->commit(d); }
void db_rollback(db *d) { d->ops->rollback(d); }

void db_base_init(db *d, const db_ops *ops, db_dialect dialect, const db_open_params *p) {
    d->ops = ops;
    d->dialect = dialect;
    d->read_only = p->read_only;
    d->busy_timeout_ms = p->busy_timeout_ms > 0 ? p->busy_timeout_ms : 5000;
    d->stmts = p->stmts;
    d->n_stmts = p->n_stmts;
    d->describe = NULL;
    d->tag = NULL;
}

sov_status db_set_names(db *d, const char *describe, const char *tag) {
    free(d->describe);
    free(d->tag);
    d->describe = strdup(describe);
    d->tag = strdup(tag);
    if (!d->describe || !d->tag) return sov_fail(SOV_ERR_NOMEM, "store: out of memory naming %s", describe);
    return SOV_OK;
}

void db_base_free(db *d) {
    free(d->describe);
    free(d->tag);
}

const char *db_sql_text(const db *d, const db_sql *sql) {
    return d->dialect == DB_POSTGRES && sql->pg ? sql->pg : sql->sql;
}

/* ---- rows ---- */

void db_rows_start(db_rows *r, size_t n_cols) {
    r->n_rows = 0;
    r->n_cols = n_cols;
    r->n_cells = 0;
    r->text_len = 0;
    r->changes = 0;
}

/* Grows *buf (of *cap elements of `elt` bytes) to hold at least `need`. */
static bool grow(void **buf, size_t *cap, size_t need, size_t elt) {
    if (need <= *cap) return true;
    size_t n = SOV_MAX(need, *cap * 2), bytes;
    if (n < 64) n = 64;
    if (!sov_mul_size(n, elt, &bytes)) return false;
    void *p = realloc(*buf, bytes);
    if (!p) return false;
    *buf = p;
    *cap = n;
    return true;
}

sov_status db_rows_push(db_rows *r, const char *s, size_t len) {
    if (!grow((void **)&r->cell, &r->cell_cap, r->n_cells + 1, sizeof *r->cell))
        return sov_fail(SOV_ERR_NOMEM, "store: out of memory reading %zu result cells", r->n_cells + 1);
    if (!s) {
        r->cell[r->n_cells++] = SIZE_MAX;
    } else {
        if (len > SIZE_MAX - 1 - r->text_len ||
            !grow((void **)&r->text, &r->text_cap, r->text_len + len + 1, 1))
            return sov_fail(SOV_ERR_NOMEM, "store: out of memory reading a %zu-byte result cell", len);
        memcpy(r->text + r->text_len, s, len);
        r->text[r->text_len + len] = '\0';
        r->cell[r->n_cells++] = r->text_len;
        r->text_len += len + 1;
    }
    if (r->n_cols) r->n_rows = r->n_cells / r->n_cols;
    return SOV_OK;
}

const char *db_cell(const db_rows *r, size_t row, size_t col) {
    if (row >= r->n_rows || col >= r->n_cols) return NULL;
    const size_t off = r->cell[row * r->n_cols + col];
    return off == SIZE_MAX ? NULL : r->text + off;
}

int64_t db_cell_int(const db_rows *r, size_t row, size_t col) {
    const char *s = db_cell(r, row, col);
    return s ? strtoll(s, NULL, 10) : 0;
}

double db_cell_real(const db_rows *r, size_t row, size_t col) {
    const char *s = db_cell(r, row, col);
    return s ? strtod(s, NULL) : 0.0;
}

void db_rows_free(db_rows *r) {
    free(r->cell);
    free(r->text);
    memset(r, 0, sizeof *r);
}
