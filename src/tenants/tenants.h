/* tenants.h - tenants while serving: who is calling (API keys), what they may use
 * (models), how much (rate limits and quotas), and what they used (usage records).
 *
 *   HTTP thread                               store worker thread
 *   ───────────                               ───────────────────
 *   tenants_authenticate ── key table ◀─────── reload when the store's keys version
 *     (in memory: HMAC + constant-time           changes (polled every 250 ms)
 *      compare, no I/O)
 *   tenants_reserve ───────── queue ─────────▶ store_reserve (one transaction each)
 *   tenants_take_reserved ◀── done list ◀─────   + notify()
 *   tenants_settle ────────── queue ─────────▶ store_settle_batch (grouped, every
 *                                                200 ms; kept and retried while the
 *                                                store is unreachable)
 *   tenants_audit_append ──── queue ─────────▶ store_audit_append (everything queued in
 *   tenants_take_audited ◀─── done list ◀─────   one transaction) + notify(); signs the
 *                                                chain head every N records, every 10 s
 *                                                and at close; deletes expired text
 *
 * The HTTP thread never waits for the database: a request whose key has limits waits for
 * its reservation in the event loop like any other I/O, and a key without limits costs no
 * database round trip at all (its usage is written in the next batch). The key table is
 * replaced, never edited: the HTTP thread swaps in the worker's new table in tenants_poll,
 * and a request copies what it needs from its key (tenants_key), so a reload while it
 * runs changes nothing under it — a revoked key's running stream finishes, its next
 * request is refused. When the store is unreachable, authentication keeps using the last
 * key table read (no key can be changed then either) and requests that need a reservation
 * get 503; usage waits in memory until the store is back. */
#ifndef SOV_TENANTS_TENANTS_H
#define SOV_TENANTS_TENANTS_H

#include <stdbool.h>
#include <stdint.h>

#include "audit/audit.h"
#include "auth/auth.h"
#include "store/store.h"

typedef struct tenants tenants;

/* The audit log (docs/AUDIT.md): the worker appends records in group commits, signs the
 * chain head and deletes expired text. */
typedef struct tenants_audit_params {
    const char *state_dir;   /* holds the key that signs the chain head (audit_key_open:
                                made on first use), opened once the store is (only then:
                                the string need not outlive tenants_open) */
    int64_t sign_every;      /* sign when this many records are unsigned (0: 256) */
    double sign_interval_s;  /* and this often while any are (0: 10) */
    int64_t clock_offset_s;  /* added to the clock that expires kept text (a test hook) */
} tenants_audit_params;

typedef struct tenants_params {
    const char *db;             /* store name: a SQLite path or a postgresql:// URL */
    const char *model_id;       /* the model this server serves (for keys' model lists) */
    void (*notify)(void *user); /* worker thread: reservations done or a new key table */
    void *notify_user;
    double reload_s; /* how often the worker polls for key changes (0: 0.25) */
    const tenants_audit_params *audit; /* NULL: no audit log; else the store is opened
                                          durable (SQLite synchronous=FULL) */
} tenants_params;

/* Opens the store (migrating it), reads the keys, opens the audit key when asked, and
 * starts the worker. Errors as store_open's and audit_key_open's, with sov_last_error()
 * saying what to do. */
sov_status tenants_open(const tenants_params *p, tenants **out);
/* The audit signing key's id; NULL without an audit log. */
const char *tenants_audit_key_id(const tenants *t);
/* Stops the worker after writing out pending usage (trying for up to a few seconds when
 * the store is unreachable, then saying on stderr what was lost). */
void tenants_close(tenants *t);

const char *tenants_store_describe(const tenants *t);
/* Sets (or clears, with NULL) the callback the worker calls when there is something to
 * take; the server sets it once its event loop exists. */
void tenants_set_notify(tenants *t, void (*notify)(void *user), void *user);

/* ---- HTTP thread ---- */

/* Swaps in a key table the worker has read (call on every notify). Returns true when
 * authentication turned on or off with it (the caller may log it). */
bool tenants_poll(tenants *t);
/* True while the store holds at least one key (revoked ones count): every /v1/ request
 * must then present one. */
bool tenants_auth_required(const tenants *t);
size_t tenants_key_count(const tenants *t);

/* What a request keeps of its key (a copy: the table may be replaced while it runs). */
typedef struct tenants_key {
    int64_t id;
    char prefix[STORE_PREFIX_MAX + 1];
    char tenant[STORE_TENANT_MAX + 1];
    int64_t rpm, tpm, tpd;
    double weight;
    bool admin;
    bool model_allowed; /* may use the served model */
} tenants_key;

typedef enum tenants_auth {
    TENANTS_AUTH_OK = 0,
    TENANTS_AUTH_MISSING,   /* no Authorization header */
    TENANTS_AUTH_MALFORMED, /* not "Bearer <token>" */
    TENANTS_AUTH_UNKNOWN,   /* no such key */
    TENANTS_AUTH_REVOKED,
    TENANTS_AUTH_CERT_UNBOUND,  /* no Authorization header, and the client certificate
                                   stands for no key */
    TENANTS_AUTH_CERT_MISMATCH, /* the key is bound to a client certificate the connection
                                   does not carry, or the certificate stands for another
                                   tenant (or, ambiguously, for several) */
    TENANTS_AUTH_COUNT
} tenants_auth;

/* Authenticates the Authorization header's value (NULL when absent). */
tenants_auth tenants_authenticate(tenants *t, const char *header, tenants_key *out);
/* Authenticates a request by its Authorization header (NULL when absent) and the subject
 * of the TLS client certificate its connection verified (NULL when none; RFC 2253, see
 * server/tls.h). The rules (docs/TLS.md):
 *   - a key with a client_subject is bound to it: presented as a bearer key, it works
 *     only over a connection whose verified certificate has exactly that subject;
 *   - without an Authorization header, the certificate's subject stands for the newest
 *     unrevoked key bound to it (revoked: TENANTS_AUTH_REVOKED; none:
 *     TENANTS_AUTH_CERT_UNBOUND; without a certificate: TENANTS_AUTH_MISSING);
 *   - with both, the bearer key decides, but a certificate that stands for a key must
 *     stand for the same tenant (else TENANTS_AUTH_CERT_MISMATCH).
 * On failure out->prefix names the key concerned, when there is one. */
tenants_auth tenants_authenticate_peer(tenants *t, const char *header, const char *subject, tenants_key *out);
const char *tenants_auth_reason(tenants_auth a); /* "missing", "malformed", ... */

static inline bool tenants_key_limited(const tenants_key *k) {
    return k->rpm > 0 || k->tpm > 0 || k->tpd > 0;
}

/* A reservation in flight: filled by the HTTP thread, owned by the tenants module from
 * tenants_reserve until tenants_take_reserved hands it back. */
typedef struct tenants_resv {
    /* in */
    void *user;
    int64_t key_id, rpm, tpm, tpd;
    int64_t want; /* tokens to reserve (prompt + max_tokens) */
    int64_t min;  /* accept a smaller grant down to this (== want: exactly) */
    /* out */
    sov_status status; /* SOV_OK: res holds the outcome; else the store failed */
    char error[200];
    store_reserve_res res;
    int64_t granted; /* tokens reserved (0 when refused) */
    int64_t now;     /* the time the windows were read at */
    struct tenants_resv *next;
} tenants_resv;

void tenants_reserve(tenants *t, tenants_resv *r);
/* Reservations that are done, at most max. */
int tenants_take_reserved(tenants *t, tenants_resv **out, int max);
/* Records a request's end (copied). */
void tenants_settle(tenants *t, const store_settle *s);

/* An audit record on its way to the store: filled by the HTTP thread, owned by the
 * tenants module from tenants_audit_append until tenants_take_audited hands it back (or,
 * when nobody waits for it, until the worker frees it). */
typedef struct tenants_audit {
    /* in */
    void *user;                          /* handed back when committed; NULL: nobody waits */
    audit_record rec;                    /* the fields (seq, prev, hash: out) */
    char *prompt_text, *completion_text; /* kept text (malloc'd, owned by the item) or NULL */
    int64_t text_expires;                /* Unix seconds; 0: none */
    /* out */
    sov_status status; /* SOV_OK: committed (rec.seq is its number) */
    char error[200];
    struct tenants_audit *next;
} tenants_audit;

/* Queues a record; the worker appends everything queued in one transaction. */
void tenants_audit_append(tenants *t, tenants_audit *a);
/* Records that are committed (or failed), at most max. */
int tenants_take_audited(tenants *t, tenants_audit **out, int max);
void tenants_audit_free(tenants_audit *a);

/* ---- jobs: the admin API's work on the store (server/admin.h) ---- */

/* A piece of work the worker runs with its store handle, for the HTTP thread (which may
 * not touch the store): filled by the HTTP thread, owned by the tenants module from
 * tenants_job_submit until tenants_take_jobs hands it back. On the worker thread, in
 * order: run(j, store); when run set keys_changed, the key table is read again (so a key
 * created or revoked counts from the HTTP thread's next tenants_poll, which the server
 * calls before it answers the job); then, when audit is set, that record is appended in
 * its own transaction (run fills its status first; its commit outcome is in
 * audit->status). Jobs share the worker with reservations, so a job should be short. */
typedef struct tenants_job tenants_job;
struct tenants_job {
    void *user;                                          /* handed back with the job */
    void (*run)(tenants_job *j, store *st, tenants *t);  /* worker thread */
    void *arg;                                           /* run's in and out */
    tenants_audit *audit; /* NULL or a record appended after run (owned by the job) */
    bool keys_changed;    /* out (run): reload the key table before handing back */
    struct tenants_job *next;
};

void tenants_job_submit(tenants *t, tenants_job *j);
/* Jobs that are done, at most max. */
int tenants_take_jobs(tenants *t, tenants_job **out, int max);
/* The store's name as given (a SQLite path or a postgresql:// URL), for a second,
 * read-only connection of the caller's own (a long read that must not hold up the worker). */
const char *tenants_store_name(const tenants *t);
/* The state folder the audit key came from (NULL without an audit log): its audit-*.pub
 * are the public keys a verification trusts. Any thread. */
const char *tenants_state_dir(const tenants *t);

/* ---- counters (any thread) ---- */

typedef struct tenants_stats {
    uint64_t store_errors;    /* failed store calls */
    uint64_t reloads;         /* key tables read */
    uint64_t reservations;    /* requests reserved for (or refused) */
    uint64_t reserve_calls;   /* store transactions they took (grouped: fewer) */
    double reserve_seconds;   /* time spent in them */
    uint64_t settles_pending; /* usage records not yet written */
    uint64_t settles_dropped; /* usage records lost (store unreachable for very long) */
    bool store_ok;            /* the last store call succeeded */
    uint64_t audit_records;   /* audit records committed */
    uint64_t audit_commits;   /* transactions they took (group commits: fewer) */
    uint64_t audit_failed;    /* records the store refused or could not take */
    uint64_t audit_heads;     /* chain heads signed */
    double audit_seconds;     /* time spent appending */
} tenants_stats;

void tenants_get_stats(tenants *t, tenants_stats *out);

#endif
