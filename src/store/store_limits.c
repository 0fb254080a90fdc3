/* store_limits.c - rate-limit windows, usage and clean-up in the state store (see store.h).
 *
 * store_reserve is the per-request call: one transaction of four statements (create the
 * two windows if missing, read them locked, check, charge). The limits are checked in C on
 * counts read under the lock, so the check and the charge cannot be separated by another
 * writer (store.c's header says how each dialect gets the lock). A refusal rolls back.
 *
 * store_settle_batch sorts what it changes into one global order (windows by key, minute
 * before day, start; usage by key and hour; keys by id) before touching a row, so two
 * batches, or a batch and reservations, never wait on each other in a cycle. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "store/store_impl.h"

enum { MINUTE = 60, HOUR = 3600, DAY = 86400 };

static int64_t floor_to(int64_t t, int64_t period) { return t - t % period; }

/* Fills res's counts from rows of (kind, requests, tokens). */
static void windows_from_rows(const db_rows *rows, store_reserve_res *res) {
    res->minute_requests = res->minute_tokens = res->day_tokens = 0;
    for (size_t r = 0; r < rows->n_rows; r++) {
        const char *kind = db_cell(rows, r, 0);
        if (kind && kind[0] == 'm') {
            res->minute_requests = db_cell_int(rows, r, 1);
            res->minute_tokens = db_cell_int(rows, r, 2);
        } else if (kind && kind[0] == 'd') {
            res->day_tokens = db_cell_int(rows, r, 2);
        }
    }
}

/* Which limit, if any, refuses `tokens` more on the counts in res (rpm, then tpm, then
 * tpd; a limit of 0 is none). Written as "count > limit - need" so nothing overflows. */
static store_limit limit_refusing(const store_reserve_req *r, const store_reserve_res *res) {
    if (r->rpm > 0 && res->minute_requests > r->rpm - 1) return STORE_LIMIT_RPM;
    if (r->tpm > 0 && (r->tokens > r->tpm || res->minute_tokens > r->tpm - r->tokens)) return STORE_LIMIT_TPM;
    if (r->tpd > 0 && (r->tokens > r->tpd || res->day_tokens > r->tpd - r->tokens)) return STORE_LIMIT_TPD;
    return STORE_LIMIT_NONE;
}

/* The statements of store_reserve, inside its transaction; *keep: commit (reserved). */
static sov_status reserve_tx(store *s, const store_reserve_req *r, store_reserve_res *res, bool *keep) {
    *keep = false;
    const db_val args[] = {db_int(r->key_id), db_int(res->minute_start), db_int(res->day_start),
                           db_int(r->tokens)};
    sov_status status = db_exec(s->db, Q_WIN_ENSURE, args, 3, NULL);
    if (status == SOV_OK) status = db_exec(s->db, Q_WIN_LOCK, args, 3, &s->rows);
    if (status != SOV_OK) return status;
    if (s->rows.n_rows != 2)
        return sov_fail(SOV_ERR_FORMAT, "%s: key %lld has %zu current windows, not 2", db_tag(s->db),
                        (long long)r->key_id, s->rows.n_rows);
    windows_from_rows(&s->rows, res);
    res->refused = limit_refusing(r, res);
    if (res->refused != STORE_LIMIT_NONE) return SOV_OK;
    status = db_exec(s->db, Q_WIN_CHARGE, args, 4, NULL);
    if (status != SOV_OK) return status;
    res->minute_requests += 1;
    res->minute_tokens += r->tokens;
    res->day_tokens += r->tokens;
    *keep = true;
    return SOV_OK;
}

static sov_status check_reserve(const store_reserve_req *r) {
    if (r->key_id <= 0 || r->tokens < 0 || r->now < 0 || r->rpm < 0 || r->tpm < 0 || r->tpd < 0)
        return sov_fail(SOV_ERR_ARG,
                        "store: reservation for key %lld of %lld tokens at %lld: the key id must be > 0; "
                        "tokens, limits and time must not be negative",
                        (long long)r->key_id, (long long)r->tokens, (long long)r->now);
    return SOV_OK;
}

sov_status store_reserve(store *s, const store_reserve_req *r, store_reserve_res *res) {
    memset(res, 0, sizeof *res);
    sov_status status = check_reserve(r);
    if (status != SOV_OK) return status;
    res->minute_start = floor_to(r->now, MINUTE);
    res->day_start = floor_to(r->now, DAY);
    status = db_begin(s->db);
    if (status != SOV_OK) return status;
    bool keep;
    status = reserve_tx(s, r, res, &keep);
    status = store_tx_end(s, status, keep);
    if (status == SOV_ERR_NOT_FOUND) /* the windows' foreign key */
        return sov_fail(SOV_ERR_NOT_FOUND, "%s: no key with id %lld", db_tag(s->db), (long long)r->key_id);
    return status;
}

/* Batch order: by key (the global lock order; see the top), then arrival. */
typedef struct batch_item {
    int64_t key_id;
    size_t at;
} batch_item;

static int by_key_then_arrival(const void *a, const void *b) {
    const batch_item *x = a, *y = b;
    if (x->key_id != y->key_id) return x->key_id < y->key_id ? -1 : 1;
    return x->at < y->at ? -1 : x->at > y->at;
}

sov_status store_reserve_batch(store *s, const store_reserve_req *r, store_reserve_res *res, sov_status *st,
                               size_t n) {
    if (n == 0) return SOV_OK;
    bool valid = true;
    for (size_t i = 0; i < n; i++) {
        memset(&res[i], 0, sizeof res[i]);
        res[i].minute_start = floor_to(r[i].now, MINUTE);
        res[i].day_start = floor_to(r[i].now, DAY);
        st[i] = check_reserve(&r[i]);
        valid = valid && st[i] == SOV_OK;
    }
    batch_item *order = n > 1 && valid ? malloc(n * sizeof *order) : NULL;
    if (order) {
        for (size_t i = 0; i < n; i++)
            order[i] = (batch_item){r[i].key_id, i};
        qsort(order, n, sizeof *order, by_key_then_arrival);
        /* a refusal writes nothing but the windows' rows (which any later reservation
         * would create the same), so one transaction holds refusals and reservations */
        sov_status status = db_begin(s->db);
        for (size_t k = 0; status == SOV_OK && k < n; k++) {
            bool keep;
            status = reserve_tx(s, &r[order[k].at], &res[order[k].at], &keep);
        }
        free(order);
        status = store_tx_end(s, status, true);
        if (status == SOV_OK || status == SOV_ERR_IO) { /* done, or the database is away for all */
            for (size_t i = 0; i < n; i++)
                st[i] = status;
            return status;
        }
        /* one request is bad (an unknown key): decide each on its own below */
    }
    for (size_t i = 0; i < n; i++) {
        if (st[i] != SOV_OK) continue;
        st[i] = store_reserve(s, &r[i], &res[i]);
        if (st[i] == SOV_ERR_IO) return SOV_ERR_IO;
    }
    return SOV_OK;
}

sov_status store_windows(store *s, int64_t key_id, int64_t now, store_reserve_res *res) {
    memset(res, 0, sizeof *res);
    if (now < 0) return sov_fail(SOV_ERR_ARG, "store: time %lld is negative", (long long)now);
    res->minute_start = floor_to(now, MINUTE);
    res->day_start = floor_to(now, DAY);
    const db_val args[] = {db_int(key_id), db_int(res->minute_start), db_int(res->day_start)};
    const sov_status status = db_exec(s->db, Q_WIN_READ, args, 3, &s->rows);
    if (status != SOV_OK) return status;
    windows_from_rows(&s->rows, res);
    return SOV_OK;
}

/* ---- settling ---- */

/* One window correction. */
typedef struct win_fix {
    int64_t key_id;
    int kind; /* 0: minute, 1: day (the lock order) */
    int64_t start;
    int64_t delta; /* used - reserved */
} win_fix;

static int cmp_i64(int64_t a, int64_t b) { return (a > b) - (a < b); }

static int cmp_win_fix(const void *pa, const void *pb) {
    const win_fix *a = pa, *b = pb;
    int c = cmp_i64(a->key_id, b->key_id);
    if (!c) c = (a->kind > b->kind) - (a->kind < b->kind);
    return c ? c : cmp_i64(a->start, b->start);
}

/* Settles in the (key, hour) order usage rows are locked in. */
static int cmp_settle(const void *pa, const void *pb) {
    const store_settle *a = pa, *b = pb;
    const int c = cmp_i64(a->key_id, b->key_id);
    return c ? c : cmp_i64(floor_to(a->at, HOUR), floor_to(b->at, HOUR));
}

static sov_status check_settle(const store_settle *e) {
    if (e->key_id <= 0 || e->minute_start < 0 || e->day_start < 0 || e->reserved < 0 || e->used < 0 ||
        e->at < 0 || e->requests < 0 || e->prompt_tokens < 0 || e->completion_tokens < 0 ||
        e->cached_tokens < 0)
        return sov_fail(SOV_ERR_ARG,
                        "store: settlement for key %lld: ids, counts and times must not be negative",
                        (long long)e->key_id);
    return SOV_OK;
}

/* The window corrections of the batch, sorted; *n_out of them. */
static sov_status window_fixes(const store_settle *v, size_t n, win_fix **out, size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    size_t bytes;
    if (!sov_mul_size(n, 2 * sizeof(win_fix), &bytes))
        return sov_fail(SOV_ERR_ARG, "store: settle batch too large");
    win_fix *f = malloc(bytes ? bytes : 1);
    if (!f) return sov_fail(SOV_ERR_NOMEM, "store: out of memory settling %zu requests", n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const int64_t delta = v[i].used - v[i].reserved;
        if (delta == 0) continue;
        if (v[i].minute_start > 0) f[k++] = (win_fix){v[i].key_id, 0, v[i].minute_start, delta};
        if (v[i].day_start > 0) f[k++] = (win_fix){v[i].key_id, 1, v[i].day_start, delta};
    }
    qsort(f, k, sizeof *f, cmp_win_fix);
    *out = f;
    *n_out = k;
    return SOV_OK;
}

static sov_status settle_windows(store *s, const win_fix *f, size_t n) {
    sov_status status = SOV_OK;
    for (size_t i = 0; i < n && status == SOV_OK; i++) {
        const db_val args[] = {db_int(f[i].key_id), db_text(f[i].kind ? "d" : "m"), db_int(f[i].start),
                               db_int(f[i].delta)};
        status = db_exec(s->db, Q_WIN_SETTLE, args, 4, NULL); /* a window gc'd meanwhile: nothing to fix */
    }
    return status;
}

/* Usage and last_used of the sorted batch (keys' rows last, by id). */
static sov_status settle_usage(store *s, const store_settle *v, size_t n) {
    sov_status status = SOV_OK;
    for (size_t i = 0; i < n && status == SOV_OK; i++) {
        if (!v[i].requests && !v[i].prompt_tokens && !v[i].completion_tokens && !v[i].cached_tokens) continue;
        const db_val args[] = {
            db_int(v[i].key_id),        db_int(floor_to(v[i].at, HOUR)), db_int(v[i].requests),
            db_int(v[i].prompt_tokens), db_int(v[i].completion_tokens),  db_int(v[i].cached_tokens)};
        status = db_exec(s->db, Q_USAGE_ADD, args, 6, NULL);
    }
    int64_t latest = 0; /* of the key's entries so far */
    for (size_t i = 0; i < n && status == SOV_OK; i++) {
        latest = SOV_MAX(latest, v[i].at);
        if (i + 1 < n && v[i + 1].key_id == v[i].key_id) continue; /* one update per key */
        const db_val args[] = {db_int(v[i].key_id), db_int(latest)};
        status = db_exec(s->db, Q_LAST_USED, args, 2, NULL);
        latest = 0;
    }
    return status;
}

sov_status store_settle_batch(store *s, const store_settle *v, size_t n) {
    if (n == 0) return SOV_OK;
    if (!v) return sov_fail(SOV_ERR_ARG, "store: no settlements given");
    for (size_t i = 0; i < n; i++) {
        const sov_status status = check_settle(&v[i]);
        if (status != SOV_OK) return status;
    }
    size_t bytes, n_fix;
    win_fix *fix;
    if (!sov_mul_size(n, sizeof *v, &bytes)) return sov_fail(SOV_ERR_ARG, "store: settle batch too large");
    store_settle *sorted = malloc(bytes);
    if (!sorted) return sov_fail(SOV_ERR_NOMEM, "store: out of memory settling %zu requests", n);
    memcpy(sorted, v, bytes);
    qsort(sorted, n, sizeof *sorted, cmp_settle);
    sov_status status = window_fixes(v, n, &fix, &n_fix);
    if (status == SOV_OK) status = db_begin(s->db);
    if (status == SOV_OK) {
        status = settle_windows(s, fix, n_fix);
        if (status == SOV_OK) status = settle_usage(s, sorted, n);
        status = store_tx_end(s, status, true);
    }
    free(fix);
    free(sorted);
    return status;
}

/* ---- usage and clean-up ---- */

/* Fills row r of Q_USAGE_REPORT into u. */
static bool usage_from_row(const db_rows *rows, size_t r, store_usage_row *u) {
    memset(u, 0, sizeof *u);
    const char *tenant = db_cell(rows, r, 0), *prefix = db_cell(rows, r, 2);
    if (!tenant || !prefix || strlen(tenant) > STORE_TENANT_MAX || strlen(prefix) > STORE_PREFIX_MAX)
        return false;
    strcpy(u->tenant, tenant);
    strcpy(u->prefix, prefix);
    u->key_id = db_cell_int(rows, r, 1);
    u->requests = db_cell_int(rows, r, 3);
    u->prompt_tokens = db_cell_int(rows, r, 4);
    u->completion_tokens = db_cell_int(rows, r, 5);
    u->cached_tokens = db_cell_int(rows, r, 6);
    return true;
}

sov_status store_usage(store *s, int64_t since, store_usage_row **out, size_t *n) {
    *out = NULL;
    *n = 0;
    const db_val args[] = {db_int(since > 0 ? floor_to(since, HOUR) : 0)};
    const sov_status status = db_exec(s->db, Q_USAGE_REPORT, args, 1, &s->rows);
    if (status != SOV_OK) return status;
    const size_t count = s->rows.n_rows;
    store_usage_row *rows = calloc(count ? count : 1, sizeof *rows);
    if (!rows) return sov_fail(SOV_ERR_NOMEM, "store: out of memory reading usage of %zu keys", count);
    for (size_t i = 0; i < count; i++)
        if (!usage_from_row(&s->rows, i, &rows[i])) {
            free(rows);
            return sov_fail(SOV_ERR_FORMAT, "%s: usage row %zu has a malformed tenant or prefix",
                            db_tag(s->db), i);
        }
    *out = rows;
    *n = count;
    return SOV_OK;
}

sov_status store_gc(store *s, int64_t now) {
    const db_val args[] = {db_int(now - HOUR), db_int(now - 8 * (int64_t)DAY)};
    return db_exec(s->db, Q_GC, args, 2, NULL);
}
