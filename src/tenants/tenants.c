/* tenants.c - the server's tenants: key table, reservations and usage through a store
 * worker thread (see tenants.h).
 *
 * Locking: t->mu guards the queues (reservations in and out, settles in, audit records
 * in and out), the pending key table and the stats. The store handle belongs to the worker
 * thread alone; the current key table belongs to the HTTP thread alone.
 *
 * Audit records (docs/AUDIT.md) are group-committed: whatever queued while the last
 * transaction ran goes into the next one, so N requests ending together cost one commit,
 * not N. The worker also signs the chain head (every sign_every records, every
 * sign_interval_s while any are unsigned, at start-up when it finds unsigned records, and
 * at close) and deletes kept text whose time is up. */
#include "tenants/tenants.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "core/util.h"

enum { SETTLE_BATCH = 512, SETTLE_KEEP_MAX = 1 << 16 };

struct tenants {
    tenants_params p;
    char *db, *model_id;
    char describe[256];
    store *st; /* worker thread (and tenants_open before it starts) */
    pthread_t thread;
    bool thread_started;

    /* HTTP thread */
    auth_table *table;

    /* under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    tenants_resv *in_head, *in_tail;
    tenants_resv *done_head, *done_tail;
    store_settle *settles; /* queued by the HTTP thread */
    size_t n_settles, cap_settles;
    auth_table *pending; /* read by the worker, not yet swapped in */
    bool have_pending;
    tenants_stats stats;
    int64_t version; /* keys version of the last table read (worker) */
    tenants_audit *audit_in_head, *audit_in_tail;     /* under mu */
    tenants_audit *audit_done_head, *audit_done_tail; /* under mu */
    tenants_job *job_in_head, *job_in_tail;           /* under mu (admin API) */
    tenants_job *job_done_head, *job_done_tail;       /* under mu */
    char *state_dir;                                  /* a copy of audit.state_dir (or NULL) */

    /* worker: the audit chain as this server last saw it, and what it signed */
    tenants_audit_params audit; /* a copy of p.audit (t->p.audit points here) */
    audit_key *key;             /* the audit log's signing key (NULL: no audit log) */
    int64_t chain_seq, signed_seq;
    uint8_t chain_hash[AUDIT_HASH_BYTES];
    double next_sign, next_expire;
};

static int64_t unix_now(void) { return (int64_t)time(NULL); }

/* Tells the HTTP thread there is something to take (the callback may change: read it
 * under the lock, call it outside). */
static void wake(tenants *t) {
    pthread_mutex_lock(&t->mu);
    void (*fn)(void *) = t->p.notify;
    void *user = t->p.notify_user;
    pthread_mutex_unlock(&t->mu);
    if (fn) fn(user);
}

/* ---- worker ---- */

static void fail_stat(tenants *t, bool ok) {
    pthread_mutex_lock(&t->mu);
    if (!ok) t->stats.store_errors++;
    t->stats.store_ok = ok;
    pthread_mutex_unlock(&t->mu);
}

/* Reads the keys into a new table when the version moved (or `force`). */
static void reload(tenants *t, bool force) {
    int64_t v = 0;
    if (store_keys_version(t->st, &v)) {
        fail_stat(t, false);
        return;
    }
    if (!force && v == t->version) {
        fail_stat(t, true);
        return;
    }
    store_key *keys = NULL;
    size_t n = 0;
    if (store_keys(t->st, &keys, &n)) {
        fail_stat(t, false);
        return;
    }
    auth_table *tab = auth_table_new(keys, n);
    if (!tab) return; /* out of memory: keep the old table, try again next poll */
    t->version = v;
    pthread_mutex_lock(&t->mu);
    auth_table_free(t->pending);
    t->pending = tab;
    t->have_pending = true;
    t->stats.reloads++;
    t->stats.store_ok = true;
    pthread_mutex_unlock(&t->mu);
    wake(t);
}

/* Room under a limit given the refusal's counts (INT64_MAX when unlimited). */
static int64_t room(int64_t limit, int64_t used) { return limit > 0 ? limit - used : INT64_MAX; }

/* A request without max_tokens takes what is left of the minute's and the day's tokens
 * rather than nothing (it then ends with finish_reason "length"): after a refusal by tpm
 * or tpd, ask again for what the refusal's counts leave, down to r->min. */
static sov_status shrink_and_retry(tenants *t, tenants_resv *r, store_reserve_req *q) {
    sov_status st = SOV_OK;
    for (int tries = 0;
         !st && tries < 2 && (r->res.refused == STORE_LIMIT_TPM || r->res.refused == STORE_LIMIT_TPD);
         tries++) {
        const int64_t left = SOV_MIN(room(r->tpm, r->res.minute_tokens), room(r->tpd, r->res.day_tokens));
        if (left < r->min || left >= q->tokens) break;
        q->tokens = left;
        st = store_reserve(t->st, q, &r->res);
    }
    return st;
}

/* Reserves for every request that arrived together, in one store transaction. */
static void reserve_all(tenants *t, tenants_resv *in) {
    size_t n = 0;
    for (tenants_resv *r = in; r; r = r->next)
        n++;
    store_reserve_req *q = malloc(n * sizeof *q);
    store_reserve_res *res = malloc(n * sizeof *res);
    sov_status *st = malloc(n * sizeof *st);
    const double t0 = sov_now_s();
    const int64_t now = unix_now();
    size_t i = 0;
    for (tenants_resv *r = in; r; r = r->next, i++) {
        r->now = now;
        if (q) q[i] = (store_reserve_req){r->key_id, r->rpm, r->tpm, r->tpd, r->want, now};
    }
    sov_status all = q && res && st ? store_reserve_batch(t->st, q, res, st, n)
                                    : sov_fail(SOV_ERR_NOMEM, "out of memory for %zu reservations", n);
    const char *why = sov_last_error();
    uint64_t calls = 1;
    i = 0;
    for (tenants_resv *r = in; r; r = r->next, i++) {
        r->status = q && res && st ? st[i] : all;
        if (!r->status) {
            r->res = res[i];
            if (r->min < r->want && r->res.refused != STORE_LIMIT_NONE) {
                r->status = shrink_and_retry(t, r, &q[i]);
                calls++;
            }
        }
        r->granted = !r->status && r->res.refused == STORE_LIMIT_NONE ? (q ? q[i].tokens : r->want) : 0;
        if (r->status) snprintf(r->error, sizeof r->error, "%s", r->status == all ? why : sov_last_error());
        if (r->status) all = r->status;
    }
    pthread_mutex_lock(&t->mu);
    t->stats.reservations += n;
    t->stats.reserve_calls += calls;
    t->stats.reserve_seconds += sov_now_s() - t0;
    if (all) t->stats.store_errors++;
    t->stats.store_ok = !all;
    pthread_mutex_unlock(&t->mu);
    free(q);
    free(res);
    free(st);
}

static int by_key_window(const void *a, const void *b) {
    const store_settle *x = a, *y = b;
    if (x->key_id != y->key_id) return x->key_id < y->key_id ? -1 : 1;
    if (x->minute_start != y->minute_start) return x->minute_start < y->minute_start ? -1 : 1;
    if (x->day_start != y->day_start) return x->day_start < y->day_start ? -1 : 1;
    const int64_t hx = x->at / 3600, hy = y->at / 3600;
    return hx < hy ? -1 : hx > hy;
}

/* Sums records of the same key, windows and hour into one (they settle identically), so
 * what waits for an unreachable store stays small. Returns the new count. */
static size_t merge_settles(store_settle *v, size_t n) {
    if (n < 2) return n;
    qsort(v, n, sizeof *v, by_key_window);
    size_t w = 0;
    for (size_t i = 1; i < n; i++) {
        store_settle *a = &v[w];
        const store_settle *b = &v[i];
        if (by_key_window(a, b) == 0) {
            a->reserved += b->reserved;
            a->used += b->used;
            a->at = SOV_MAX(a->at, b->at);
            a->requests += b->requests;
            a->prompt_tokens += b->prompt_tokens;
            a->completion_tokens += b->completion_tokens;
            a->cached_tokens += b->cached_tokens;
        } else {
            v[++w] = *b;
        }
    }
    return w + 1;
}

/* Writes the worker's settles; on failure they stay for the next try. */
static void flush(tenants *t, store_settle **buf, size_t *n) {
    if (*n == 0) return;
    *n = merge_settles(*buf, *n);
    const sov_status st = store_settle_batch(t->st, *buf, *n);
    fail_stat(t, st != SOV_ERR_IO);
    if (!st) {
        *n = 0;
        return;
    }
    if (st != SOV_ERR_IO) {
        /* not the database being away but these records (a key deleted behind the
         * server's back): retrying cannot help */
        fprintf(stderr, "sov serve: %zu usage records refused by the state store, dropped: %s\n", *n,
                sov_last_error());
        pthread_mutex_lock(&t->mu);
        t->stats.settles_dropped += *n;
        pthread_mutex_unlock(&t->mu);
        *n = 0;
        return;
    }
    if (*n > SETTLE_KEEP_MAX) {
        fprintf(stderr,
                "sov serve: the state store is unreachable and %zu usage records are waiting: dropping "
                "the oldest (%s)\n",
                *n - SETTLE_KEEP_MAX, sov_last_error());
        pthread_mutex_lock(&t->mu);
        t->stats.settles_dropped += *n - SETTLE_KEEP_MAX;
        pthread_mutex_unlock(&t->mu);
        memmove(*buf, *buf + (*n - SETTLE_KEEP_MAX), SETTLE_KEEP_MAX * sizeof **buf);
        *n = SETTLE_KEEP_MAX;
    }
}

/* Moves the queued settles onto the worker's own list (under mu). */
static bool take_settles_locked(tenants *t, store_settle **buf, size_t *n, size_t *cap) {
    if (t->n_settles == 0) return true;
    if (*n + t->n_settles > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *n + t->n_settles)
            c *= 2;
        store_settle *p = realloc(*buf, c * sizeof *p);
        if (!p) return false; /* leave them queued; retried next round */
        *buf = p;
        *cap = c;
    }
    memcpy(*buf + *n, t->settles, t->n_settles * sizeof *t->settles);
    *n += t->n_settles;
    t->n_settles = 0;
    return true;
}

/* ---- audit log ---- */

static int64_t unix_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Appends every queued record in one transaction. */
static void audit_all(tenants *t, tenants_audit *in) {
    size_t n = 0;
    for (tenants_audit *a = in; a; a = a->next)
        n++;
    store_audit_entry *e = calloc(n, sizeof *e);
    size_t i = 0;
    for (tenants_audit *a = in; e && a; a = a->next, i++)
        e[i] = (store_audit_entry){a->rec, a->prompt_text, a->completion_text, a->text_expires};
    const double t0 = sov_now_s();
    const sov_status st = e ? store_audit_append(t->st, e, n)
                            : sov_fail(SOV_ERR_NOMEM, "out of memory for %zu audit records", n);
    const char *why = sov_last_error();
    i = 0;
    for (tenants_audit *a = in; a; a = a->next, i++) {
        a->status = st;
        if (st == SOV_OK) a->rec = e[i].rec;
        if (st != SOV_OK) snprintf(a->error, sizeof a->error, "%s", why);
    }
    if (st == SOV_OK) {
        t->chain_seq = e[n - 1].rec.seq;
        memcpy(t->chain_hash, e[n - 1].rec.hash, AUDIT_HASH_BYTES);
    }
    free(e);
    pthread_mutex_lock(&t->mu);
    if (st == SOV_OK) {
        t->stats.audit_records += n;
    } else {
        t->stats.audit_failed += n;
        t->stats.store_errors++;
    }
    t->stats.audit_commits++;
    t->stats.audit_seconds += sov_now_s() - t0;
    t->stats.store_ok = st == SOV_OK;
    pthread_mutex_unlock(&t->mu);
}

/* Signs the chain head this server last appended (or found) when it is due: `force` at
 * start-up and close, else after sign_every records or sign_interval_s. */
static void audit_sign(tenants *t, bool force) {
    const tenants_audit_params *ap = t->p.audit;
    if (!t->key || t->chain_seq <= t->signed_seq) return;
    const int64_t every = ap->sign_every > 0 ? ap->sign_every : 256;
    const double now = sov_now_s();
    if (!force && t->chain_seq - t->signed_seq < every && now < t->next_sign) return;
    audit_head h;
    sov_status st = audit_head_sign(t->key, t->chain_seq, t->chain_hash, unix_ms(), &h);
    if (st == SOV_OK) st = store_audit_add_head(t->st, &h);
    fail_stat(t, st == SOV_OK);
    if (st != SOV_OK) {
        fprintf(stderr, "sov serve: cannot sign the audit chain head at record %lld (tried again later): "
                        "%s\n",
                (long long)t->chain_seq, sov_last_error());
        t->next_sign = now + 1;
        return;
    }
    t->signed_seq = t->chain_seq;
    t->next_sign = now + (ap->sign_interval_s > 0 ? ap->sign_interval_s : 10);
    pthread_mutex_lock(&t->mu);
    t->stats.audit_heads++;
    pthread_mutex_unlock(&t->mu);
}

/* Deletes kept text whose time is up (every minute). */
static void audit_expire(tenants *t) {
    if (!t->p.audit || sov_now_s() < t->next_expire) return;
    t->next_expire = sov_now_s() + 60;
    int64_t cleared = 0;
    const int64_t now = (int64_t)time(NULL) + t->p.audit->clock_offset_s;
    const sov_status st = store_audit_expire(t->st, now, &cleared);
    fail_stat(t, st == SOV_OK);
    if (st != SOV_OK) t->next_expire = sov_now_s() + 5;
}

/* Where the chain is at start-up; records nobody signed (a server killed before its next
 * head) are signed now. */
static sov_status audit_start(tenants *t) {
    if (!t->p.audit) return SOV_OK;
    t->next_sign = sov_now_s() + (t->p.audit->sign_interval_s > 0 ? t->p.audit->sign_interval_s : 10);
    sov_status st = audit_key_open(t->p.audit->state_dir, &t->key);
    if (st == SOV_OK) st = store_audit_chain(t->st, &t->chain_seq, t->chain_hash);
    if (st == SOV_OK) st = store_audit_signed_through(t->st, &t->signed_seq);
    if (st != SOV_OK) return st;
    audit_sign(t, true);
    audit_expire(t);
    return SOV_OK;
}

static void hand_back_audits(tenants *t, tenants_audit *in) {
    bool any = false;
    for (tenants_audit *a = in; a;) {
        tenants_audit *next = a->next;
        a->next = NULL;
        if (!a->user) {
            if (a->status != SOV_OK)
                fprintf(stderr,
                        "sov serve: the audit record of a request the client left could not be written: %s\n",
                        a->error);
            tenants_audit_free(a);
        } else {
            pthread_mutex_lock(&t->mu);
            if (t->audit_done_tail)
                t->audit_done_tail->next = a;
            else
                t->audit_done_head = a;
            t->audit_done_tail = a;
            pthread_mutex_unlock(&t->mu);
            any = true;
        }
        a = next;
    }
    if (any) wake(t);
}

/* Runs the admin API's jobs (tenants_job), each with its key reload and audit record. */
static void run_jobs(tenants *t, tenants_job *in) {
    bool any = false;
    for (tenants_job *j = in; j;) {
        tenants_job *next = j->next;
        j->next = NULL;
        j->run(j, t->st, t);
        if (j->keys_changed) reload(t, true);
        if (j->audit) {
            j->audit->next = NULL;
            audit_all(t, j->audit);
        }
        pthread_mutex_lock(&t->mu);
        if (t->job_done_tail)
            t->job_done_tail->next = j;
        else
            t->job_done_head = j;
        t->job_done_tail = j;
        pthread_mutex_unlock(&t->mu);
        any = true;
        j = next;
    }
    if (any) wake(t);
}

static void timed_wait_locked(tenants *t, double seconds) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const long ns = ts.tv_nsec + (long)(seconds * 1e9);
    ts.tv_sec += ns / 1000000000L;
    ts.tv_nsec = ns % 1000000000L;
    pthread_cond_timedwait(&t->cv, &t->mu, &ts);
}

static void *worker_main(void *arg) {
    tenants *t = arg;
    const double reload_s = t->p.reload_s > 0 ? t->p.reload_s : 0.25;
    double next_reload = sov_now_s() + reload_s, next_flush = sov_now_s() + 0.2, next_gc = sov_now_s() + 60;
    store_settle *buf = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (!t->stop && !t->in_head && !t->audit_in_head && !t->job_in_head && t->n_settles < SETTLE_BATCH) {
            const double now = sov_now_s(), next = SOV_MIN(next_reload, next_flush);
            if (now >= next) break;
            timed_wait_locked(t, next - now);
        }
        tenants_resv *in = t->in_head;
        t->in_head = t->in_tail = NULL;
        tenants_audit *audits = t->audit_in_head;
        t->audit_in_head = t->audit_in_tail = NULL;
        tenants_job *jobs = t->job_in_head;
        t->job_in_head = t->job_in_tail = NULL;
        take_settles_locked(t, &buf, &n, &cap);
        const bool stop = t->stop;
        t->stats.settles_pending = n;
        pthread_mutex_unlock(&t->mu);

        bool done = false;
        if (in) reserve_all(t, in);
        for (tenants_resv *r = in; r;) {
            tenants_resv *next = r->next;
            pthread_mutex_lock(&t->mu);
            r->next = NULL;
            if (t->done_tail)
                t->done_tail->next = r;
            else
                t->done_head = r;
            t->done_tail = r;
            pthread_mutex_unlock(&t->mu);
            done = true;
            r = next;
        }
        if (done) wake(t);
        if (audits) {
            audit_all(t, audits);
            hand_back_audits(t, audits);
        }
        if (jobs) run_jobs(t, jobs);
        audit_sign(t, false);
        audit_expire(t);
        const double now = sov_now_s();
        if (now >= next_reload) {
            reload(t, false);
            next_reload = now + reload_s;
        }
        if (n >= SETTLE_BATCH || now >= next_flush || stop) {
            flush(t, &buf, &n);
            next_flush = now + 0.2;
        }
        if (now >= next_gc) {
            fail_stat(t, !store_gc(t->st, unix_now()));
            next_gc = now + 600;
        }
        pthread_mutex_lock(&t->mu);
        t->stats.settles_pending = n + t->n_settles;
        if (stop && !t->in_head && !t->audit_in_head && !t->job_in_head && t->n_settles == 0) break;
    }
    pthread_mutex_unlock(&t->mu);
    audit_sign(t, true); /* the last head: a truncation of what this server wrote shows */
    /* the last usage: more tries for up to 5 s if the store is away, then say what is lost */
    const double give_up = sov_now_s() + 5;
    while (n > 0 && sov_now_s() < give_up) {
        flush(t, &buf, &n);
        if (n) {
            const struct timespec ts = {0, 300 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    if (n)
        fprintf(stderr, "sov serve: %zu usage records could not be written to the state store: %s\n", n,
                sov_last_error());
    free(buf);
    return NULL;
}

/* ---- public ---- */

sov_status tenants_open(const tenants_params *p, tenants **out) {
    *out = NULL;
    if (!p || !p->db || !p->model_id) return sov_fail(SOV_ERR_ARG, "tenants: no store given");
    tenants *t = calloc(1, sizeof *t);
    if (!t) return sov_fail(SOV_ERR_NOMEM, "tenants: out of memory");
    t->p = *p;
    t->db = strdup(p->db);
    t->model_id = strdup(p->model_id);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    if (!t->db || !t->model_id) {
        tenants_close(t);
        return sov_fail(SOV_ERR_NOMEM, "tenants: out of memory");
    }
    t->p.db = t->db;
    t->p.model_id = t->model_id;
    if (p->audit) {
        t->audit = *p->audit;
        t->p.audit = &t->audit;
        if (p->audit->state_dir && !(t->state_dir = strdup(p->audit->state_dir))) {
            tenants_close(t);
            return sov_fail(SOV_ERR_NOMEM, "tenants: out of memory");
        }
    }
    const store_open_params sp = {.durable = p->audit != NULL};
    sov_status st = store_open(t->db, &sp, &t->st);
    if (!st) st = audit_start(t);
    if (st) {
        tenants_close(t);
        return st;
    }
    snprintf(t->describe, sizeof t->describe, "%s", store_describe(t->st));
    reload(t, true);
    if (!t->have_pending) {
        st = sov_fail(SOV_ERR_IO, "%s", sov_last_error());
        tenants_close(t);
        return st;
    }
    tenants_poll(t);
    if (pthread_create(&t->thread, NULL, worker_main, t) != 0) {
        tenants_close(t);
        return sov_fail(SOV_ERR_NOMEM, "tenants: cannot start the store worker thread");
    }
    t->thread_started = true;
    *out = t;
    return SOV_OK;
}

void tenants_close(tenants *t) {
    if (!t) return;
    if (t->thread_started) {
        pthread_mutex_lock(&t->mu);
        t->stop = true;
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->thread, NULL);
    }
    /* reservations nobody took back belong to their submitters; nothing to free here */
    store_close(t->st);
    audit_key_free(t->key);
    auth_table_free(t->table);
    auth_table_free(t->pending);
    free(t->settles);
    free(t->db);
    free(t->model_id);
    free(t->state_dir);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t);
}

const char *tenants_store_describe(const tenants *t) { return t->describe; }

const char *tenants_audit_key_id(const tenants *t) { return t->key ? audit_key_id(t->key) : NULL; }

void tenants_set_notify(tenants *t, void (*notify)(void *user), void *user) {
    pthread_mutex_lock(&t->mu);
    t->p.notify = notify;
    t->p.notify_user = user;
    pthread_mutex_unlock(&t->mu);
}

bool tenants_poll(tenants *t) {
    pthread_mutex_lock(&t->mu);
    auth_table *tab = t->have_pending ? t->pending : NULL;
    t->pending = NULL;
    t->have_pending = false;
    pthread_mutex_unlock(&t->mu);
    if (!tab) return false;
    const bool before = tenants_auth_required(t);
    auth_table_free(t->table);
    t->table = tab;
    return before != tenants_auth_required(t);
}

bool tenants_auth_required(const tenants *t) { return auth_table_size(t->table) > 0; }

size_t tenants_key_count(const tenants *t) { return auth_table_size(t->table); }

const char *tenants_auth_reason(tenants_auth a) {
    static const char *const names[] = {
        "ok", "missing", "malformed", "unknown", "revoked", "unbound_certificate", "wrong_certificate"};
    return (unsigned)a < SOV_ARRAY_LEN(names) ? names[a] : "unknown";
}

/* What a request keeps of its key k (see tenants_key). */
static void key_copy(const tenants *t, const store_key *k, tenants_key *out) {
    snprintf(out->tenant, sizeof out->tenant, "%s", k->tenant);
    out->rpm = k->rpm;
    out->tpm = k->tpm;
    out->tpd = k->tpd;
    out->weight = k->weight > 0 ? k->weight : 1;
    out->admin = k->admin;
    out->model_allowed = auth_key_allows_model(k, t->model_id);
}

/* The bearer key of an Authorization header; *k is set from AUTH_OK and AUTH_REVOKED. */
static tenants_auth bearer_key(tenants *t, const char *header, const store_key **k, tenants_key *out) {
    const char *tok;
    size_t len;
    const auth_header h = auth_parse_bearer(header, &tok, &len);
    if (h == AUTH_HEADER_MISSING) return TENANTS_AUTH_MISSING;
    if (h != AUTH_HEADER_OK) return TENANTS_AUTH_MALFORMED;
    const auth_result r = auth_table_lookup(t->table, tok, len, k);
    if (r == AUTH_UNKNOWN) return TENANTS_AUTH_UNKNOWN;
    out->id = (*k)->id;
    snprintf(out->prefix, sizeof out->prefix, "%s", (*k)->prefix);
    return r == AUTH_REVOKED ? TENANTS_AUTH_REVOKED : TENANTS_AUTH_OK;
}

tenants_auth tenants_authenticate(tenants *t, const char *header, tenants_key *out) {
    memset(out, 0, sizeof *out);
    const store_key *k = NULL;
    const tenants_auth a = bearer_key(t, header, &k, out);
    if (a == TENANTS_AUTH_OK) key_copy(t, k, out);
    return a;
}

tenants_auth tenants_authenticate_peer(tenants *t, const char *header, const char *subject,
                                       tenants_key *out) {
    memset(out, 0, sizeof *out);
    if (subject && !subject[0]) subject = NULL;
    const store_key *k = NULL, *c = NULL;
    tenants_auth a = bearer_key(t, header, &k, out);
    const auth_result r = subject ? auth_table_lookup_subject(t->table, subject, &c) : AUTH_UNKNOWN;
    if (a == TENANTS_AUTH_MISSING && subject) { /* the certificate alone */
        if (r == AUTH_UNKNOWN) return TENANTS_AUTH_CERT_UNBOUND;
        if (r == AUTH_AMBIGUOUS) return TENANTS_AUTH_CERT_MISMATCH;
        out->id = c->id;
        snprintf(out->prefix, sizeof out->prefix, "%s", c->prefix);
        k = c;
        a = r == AUTH_REVOKED ? TENANTS_AUTH_REVOKED : TENANTS_AUTH_OK;
    } else if (a == TENANTS_AUTH_OK) {
        /* a bound key needs its certificate; a certificate that names a tenant, the same one */
        if (k->client_subject[0] && (!subject || strcmp(k->client_subject, subject) != 0))
            return TENANTS_AUTH_CERT_MISMATCH;
        if (r == AUTH_AMBIGUOUS || (r == AUTH_OK && strcmp(c->tenant, k->tenant) != 0))
            return TENANTS_AUTH_CERT_MISMATCH;
    }
    if (a == TENANTS_AUTH_OK) key_copy(t, k, out);
    return a;
}

void tenants_reserve(tenants *t, tenants_resv *r) {
    r->next = NULL;
    r->status = SOV_OK;
    r->granted = 0;
    r->error[0] = '\0';
    memset(&r->res, 0, sizeof r->res);
    pthread_mutex_lock(&t->mu);
    if (t->in_tail)
        t->in_tail->next = r;
    else
        t->in_head = r;
    t->in_tail = r;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

int tenants_take_reserved(tenants *t, tenants_resv **out, int max) {
    int n = 0;
    pthread_mutex_lock(&t->mu);
    while (n < max && t->done_head) {
        tenants_resv *r = t->done_head;
        t->done_head = r->next;
        if (!t->done_head) t->done_tail = NULL;
        r->next = NULL;
        out[n++] = r;
    }
    pthread_mutex_unlock(&t->mu);
    return n;
}

void tenants_settle(tenants *t, const store_settle *s) {
    pthread_mutex_lock(&t->mu);
    /* the worker is behind (the store is away): records of the same key, windows and hour
     * settle identically, so fold them before growing the queue */
    if (t->n_settles == t->cap_settles && t->n_settles >= SETTLE_BATCH)
        t->n_settles = merge_settles(t->settles, t->n_settles);
    if (t->n_settles == t->cap_settles) {
        const size_t cap = t->cap_settles ? t->cap_settles * 2 : 256;
        store_settle *p = cap <= SETTLE_KEEP_MAX ? realloc(t->settles, cap * sizeof *p) : NULL;
        if (!p) {
            t->stats.settles_dropped++;
            pthread_mutex_unlock(&t->mu);
            return;
        }
        t->settles = p;
        t->cap_settles = cap;
    }
    t->settles[t->n_settles++] = *s;
    if (t->n_settles >= SETTLE_BATCH) pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

void tenants_audit_append(tenants *t, tenants_audit *a) {
    a->next = NULL;
    a->status = SOV_OK;
    a->error[0] = '\0';
    pthread_mutex_lock(&t->mu);
    if (t->audit_in_tail)
        t->audit_in_tail->next = a;
    else
        t->audit_in_head = a;
    t->audit_in_tail = a;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

int tenants_take_audited(tenants *t, tenants_audit **out, int max) {
    int n = 0;
    pthread_mutex_lock(&t->mu);
    while (n < max && t->audit_done_head) {
        tenants_audit *a = t->audit_done_head;
        t->audit_done_head = a->next;
        if (!t->audit_done_head) t->audit_done_tail = NULL;
        a->next = NULL;
        out[n++] = a;
    }
    pthread_mutex_unlock(&t->mu);
    return n;
}

void tenants_audit_free(tenants_audit *a) {
    if (!a) return;
    free(a->prompt_text);
    free(a->completion_text);
    free(a);
}

void tenants_job_submit(tenants *t, tenants_job *j) {
    j->next = NULL;
    pthread_mutex_lock(&t->mu);
    if (t->job_in_tail)
        t->job_in_tail->next = j;
    else
        t->job_in_head = j;
    t->job_in_tail = j;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

int tenants_take_jobs(tenants *t, tenants_job **out, int max) {
    int n = 0;
    pthread_mutex_lock(&t->mu);
    while (n < max && t->job_done_head) {
        tenants_job *j = t->job_done_head;
        t->job_done_head = j->next;
        if (!t->job_done_head) t->job_done_tail = NULL;
        j->next = NULL;
        out[n++] = j;
    }
    pthread_mutex_unlock(&t->mu);
    return n;
}

const char *tenants_state_dir(const tenants *t) { return t->state_dir; }

const char *tenants_store_name(const tenants *t) { return t->db; }

void tenants_get_stats(tenants *t, tenants_stats *out) {
    pthread_mutex_lock(&t->mu);
    *out = t->stats;
    pthread_mutex_unlock(&t->mu);
}
