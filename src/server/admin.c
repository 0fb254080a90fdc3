/* admin.c - the admin API under /console/api/ (see admin.h).
 *
 * A request goes: route and method → admin key → (POST) CSRF checks and the body parsed →
 * an admin_req whose tenants_job the store worker runs (the run_* functions below, on the
 * worker thread, with the worker's store: they fill the admin_req's result and touch
 * nothing else) → admin_take answers it on the HTTP thread. While the job is out the
 * connection's close callback is ours, so a client that leaves never gets a reply
 * written into a freed request. */
#include "server/admin.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/auth.h"
#include "core/status.h"
#include "core/util.h"
#include "server/openai.h"
#include "server/web.h"

/* ---- the parsers (pure) ---- */

static bool failf(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool failf(char *err, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return false;
}

/* True when s[0..n) has no control character (C0, DEL, or C1 as UTF-8: C2 80..C2 9F) and
 * no byte of `also` (the JSON parser has already checked it is UTF-8 without NUL). */
static bool printable(const char *s, size_t n, const char *also) {
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || (also && strchr(also, c))) return false;
        if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 && (unsigned char)s[i + 1] <= 0x9f)
            return false;
    }
    return true;
}

static bool parse_limit(const json_t *v, const char *name, int64_t *out, char *err, size_t cap) {
    if (!json_is_integer(v)) return failf(err, cap, "'%s' must be an integer (0: no limit)", name);
    const json_int_t x = json_integer_value(v);
    if (x < 0 || x > 1000000000000LL) return failf(err, cap, "'%s' must be 0..10^12, not %lld", name, (long long)x);
    *out = (int64_t)x;
    return true;
}

static bool parse_models(const json_t *v, char *out, size_t cap_out, char *err, size_t cap) {
    if (!json_is_array(v)) return failf(err, cap, "'models' must be an array of model ids");
    if (json_array_size(v) == 0)
        return failf(err, cap, "'models' is empty: name at least one model, or leave 'models' out for every model");
    size_t len = 0;
    size_t i;
    const json_t *m;
    json_array_foreach(v, i, m) {
        if (!json_is_string(m)) return failf(err, cap, "'models'[%zu] must be a string", i);
        const char *id = json_string_value(m);
        const size_t n = json_string_length(m);
        if (n < 1 || n > 256 || !printable(id, n, ","))
            return failf(err, cap, "'models'[%zu] must be 1..256 bytes without commas or control characters", i);
        if (len + (len ? 1 : 0) + n > STORE_MODELS_MAX || len + 1 + n >= cap_out)
            return failf(err, cap, "'models' is longer than %d bytes in all", STORE_MODELS_MAX);
        if (len) out[len++] = ',';
        memcpy(out + len, id, n);
        len += n;
        out[len] = '\0';
    }
    return true;
}

bool admin_parse_key_create(const char *body, size_t len, admin_key_req *out, char *err, size_t cap) {
    memset(out, 0, sizeof *out);
    if (len > ADMIN_BODY_MAX) return failf(err, cap, "the body is %zu bytes; the limit is %d", len, ADMIN_BODY_MAX);
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!j) return failf(err, cap, "the body is not JSON: %s (line %d, column %d)", je.text, je.line, je.column);
    bool ok = json_is_object(j) || failf(err, cap, "the body must be a JSON object");
    bool tenant = false;
    const char *k;
    json_t *v;
    if (ok) json_object_foreach(j, k, v) {
            if (!strcmp(k, "tenant")) {
                const size_t n = json_string_length(v);
                ok = (json_is_string(v) && n >= 1 && n <= STORE_TENANT_MAX &&
                      printable(json_string_value(v), n, NULL)) ||
                     failf(err, cap, "'tenant' must be a name of 1..%d bytes without control characters",
                           STORE_TENANT_MAX);
                if (ok) memcpy(out->tenant, json_string_value(v), n + 1);
                tenant = ok;
            } else if (!strcmp(k, "models")) {
                ok = json_is_null(v) || parse_models(v, out->models, sizeof out->models, err, cap);
            } else if (!strcmp(k, "rpm")) {
                ok = parse_limit(v, k, &out->rpm, err, cap);
            } else if (!strcmp(k, "tpm")) {
                ok = parse_limit(v, k, &out->tpm, err, cap);
            } else if (!strcmp(k, "tokens_per_day")) {
                ok = parse_limit(v, k, &out->tpd, err, cap);
            } else if (!strcmp(k, "admin")) {
                ok = json_is_boolean(v) || failf(err, cap, "'admin' must be true or false");
                out->admin = json_is_true(v);
            } else {
                ok = failf(err, cap,
                           "unknown member '%.64s': a key takes tenant, models, rpm, tpm, tokens_per_day and admin",
                           k);
            }
            if (!ok) break;
        }
    if (ok && !tenant) ok = failf(err, cap, "'tenant' is required");
    json_decref(j);
    return ok;
}

/* A decimal 0..2^62 of n bytes without sign or leading zero (except "0"). */
static bool parse_u62(const char *s, size_t n, int64_t *out) {
    if (n < 1 || n > 19 || (n > 1 && s[0] == '0')) return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > ((int64_t)1 << 62)) return false;
    *out = v;
    return true;
}

bool admin_parse_key_id(const char *s, size_t len, int64_t *id) { return parse_u62(s, len, id) && *id > 0; }

bool admin_parse_audit_query(const char *query, int64_t *after, int *limit, char *err, size_t cap) {
    *after = -1;
    *limit = ADMIN_AUDIT_LIMIT_DEFAULT;
    bool seen_after = false, seen_limit = false;
    const char *p = query ? query : "";
    while (*p) {
        const char *amp = strchr(p, '&');
        const size_t n = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (n == 0) {
            p += amp ? 1 : 0;
            if (!amp) break;
            continue;
        }
        const size_t kn = eq ? (size_t)(eq - p) : n;
        const char *val = eq ? eq + 1 : p + n;
        const size_t vn = eq ? n - kn - 1 : 0;
        int64_t x = 0;
        if (kn == 5 && !memcmp(p, "after", 5)) {
            if (seen_after) return failf(err, cap, "'after' is given twice");
            if (!parse_u62(val, vn, &x)) return failf(err, cap, "'after' must be a record number 0..2^62");
            *after = x;
            seen_after = true;
        } else if (kn == 5 && !memcmp(p, "limit", 5)) {
            if (seen_limit) return failf(err, cap, "'limit' is given twice");
            if (!parse_u62(val, vn, &x) || x < 1 || x > ADMIN_AUDIT_LIMIT_MAX)
                return failf(err, cap, "'limit' must be 1..%d", ADMIN_AUDIT_LIMIT_MAX);
            *limit = (int)x;
            seen_limit = true;
        } else {
            return failf(err, cap, "unknown parameter '%.*s': the audit list takes after and limit",
                         (int)SOV_MIN(kn, (size_t)64), p);
        }
        if (!amp) break;
        p = amp + 1;
    }
    return true;
}

/* ---- requests and jobs ---- */

typedef enum admin_kind { K_KEYS, K_CREATE, K_REVOKE, K_TENANTS, K_AUDIT, K_VERIFY } admin_kind;

typedef struct admin_req {
    tenants_job job; /* job.user, job.arg: this */
    admin *a;
    struct evhttp_request *req; /* NULL once the client left */
    struct evhttp_request *orphan;
    struct evhttp_connection *evcon;
    admin_kind kind;
    const char *route;
    /* in (copied for the worker) */
    admin_key_req create;
    int64_t key_id, after, now;
    int limit;
    /* out (the worker) */
    int status;
    char code[40];
    char err[300];
    json_t *result;
    char secret[AUTH_KEY_LEN + 1];
    struct admin_req *prev, *next; /* out with the worker */
} admin_req;

struct admin {
    admin_env env;
    admin_req *out;     /* jobs with the worker (and the verification, below) */
    bool verifying;     /* a verification thread runs (one at a time) */
    pthread_t verifier; /* it: joined when its request comes back */
};

static void fail_req(admin_req *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail_req(admin_req *r, int status, const char *code, const char *fmt, ...) {
    r->status = status;
    snprintf(r->code, sizeof r->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
}

/* A store failure: 503 (the database away), 400 (a value it refused), 500 otherwise. */
static void store_failed(admin_req *r, sov_status st) {
    const int status = st == SOV_ERR_IO ? 503 : st == SOV_ERR_ARG ? 400 : st == SOV_ERR_NOT_FOUND ? 404 : 500;
    fail_req(r, status, status == 503 ? "store_unavailable" : status == 400 ? "invalid_value" : "store_error", "%s",
             sov_last_error());
}

static json_t *time_or_null(int64_t t) { return t > 0 ? json_integer(t) : json_null(); }

/* A comma-separated model list as an array ("" = every model: null). */
static json_t *models_json(const char *models) {
    if (!models[0]) return json_null();
    json_t *a = json_array();
    for (const char *p = models; a && *p;) {
        const char *c = strchr(p, ',');
        const size_t n = c ? (size_t)(c - p) : strlen(p);
        json_array_append_new(a, json_stringn(p, n));
        p += n + (c ? 1 : 0);
    }
    return a;
}

static json_t *key_json(const store_key *k) {
    json_t *j = json_pack("{sI ss ss so sI sI sI sb sf so so so}", "id", (json_int_t)k->id, "tenant", k->tenant,
                          "prefix", k->prefix, "models", models_json(k->models), "rpm", (json_int_t)k->rpm, "tpm",
                          (json_int_t)k->tpm, "tokens_per_day", (json_int_t)k->tpd, "admin", k->admin, "weight",
                          k->weight, "created", time_or_null(k->created), "last_used", time_or_null(k->last_used),
                          "revoked", time_or_null(k->revoked));
    if (j && k->client_subject[0]) json_object_set_new(j, "client_cert_subject", json_string(k->client_subject));
    return j;
}

/* ---- the jobs (store worker thread) ---- */

static void run_keys(tenants_job *j, store *st, tenants *t) {
    admin_req *r = j->arg;
    store_key *keys = NULL;
    size_t n = 0;
    const sov_status s = store_keys(st, &keys, &n);
    if (s) return store_failed(r, s);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        json_array_append_new(arr, key_json(&keys[i]));
    free(keys);
    r->result = json_pack("{so}", "keys", arr);
    r->status = 200;
}

/* A POST's record takes the worker's outcome: its status, and the key concerned (a new
 * key's id is known only now). tenants.c appends the record after run. */
static void note_outcome(tenants_job *j, const admin_req *r) {
    if (!j->audit) return;
    j->audit->rec.status = r->status;
    if (r->key_id > 0)
        snprintf(j->audit->rec.response_id, sizeof j->audit->rec.response_id, "key-%lld", (long long)r->key_id);
}

static void create_key(tenants_job *j, store *st, admin_req *r) {
    const admin_key_req *c = &r->create;
    store_key k = {.rpm = c->rpm, .tpm = c->tpm, .tpd = c->tpd, .admin = c->admin, .created = r->now};
    memcpy(k.tenant, c->tenant, sizeof k.tenant);
    memcpy(k.models, c->models, sizeof k.models);
    sov_status s = auth_key_new(r->secret, &k);
    int64_t id = 0;
    if (!s) s = store_key_add(st, &k, &id);
    if (s) {
        OPENSSL_cleanse(r->secret, sizeof r->secret);
        return store_failed(r, s);
    }
    j->keys_changed = true;
    k.id = id;
    r->key_id = id;
    r->result = key_json(&k);
    json_object_del(r->result, "weight"); /* the tenant's, which this call did not read */
    r->status = 200;
}

static void run_create(tenants_job *j, store *st, tenants *t) {
    create_key(j, st, j->arg);
    note_outcome(j, j->arg);
}

static void revoke_key(tenants_job *j, store *st, admin_req *r) {
    const sov_status s = store_key_revoke(st, r->key_id, r->now);
    if (s == SOV_ERR_NOT_FOUND)
        return fail_req(r, 404, "key_not_found", "There is no key %lld (see GET /console/api/keys).",
                        (long long)r->key_id);
    if (s) return store_failed(r, s);
    j->keys_changed = true;
    r->result = json_pack("{sI sI}", "id", (json_int_t)r->key_id, "revoked", (json_int_t)r->now);
    r->status = 200;
}

static void run_revoke(tenants_job *j, store *st, tenants *t) {
    revoke_key(j, st, j->arg);
    note_outcome(j, j->arg);
}

/* Per tenant: its keys' limits and current windows, and its usage today. */
static void run_tenants(tenants_job *j, store *st, tenants *t) {
    admin_req *r = j->arg;
    store_key *keys = NULL;
    store_usage_row *use = NULL;
    size_t n = 0, n_use = 0;
    const int64_t day = r->now - r->now % 86400;
    sov_status s = store_keys(st, &keys, &n);
    if (!s) s = store_usage(st, day, &use, &n_use);
    json_t *by = json_object(); /* tenant -> its object, in the order first seen */
    for (size_t i = 0; !s && by && i < n; i++) {
        const store_key *k = &keys[i];
        json_t *ten = json_object_get(by, k->tenant);
        if (!ten) {
            ten = json_pack("{ss sf s[] s{sI sI sI sI}}", "name", k->tenant, "weight", k->weight, "keys", "today",
                            "requests", (json_int_t)0, "prompt_tokens", (json_int_t)0, "completion_tokens",
                            (json_int_t)0, "cached_tokens", (json_int_t)0);
            json_object_set_new(by, k->tenant, ten);
        }
        if (k->revoked) continue;
        store_reserve_res w = {0};
        if ((k->rpm > 0 || k->tpm > 0 || k->tpd > 0) && (s = store_windows(st, k->id, r->now, &w))) break;
        json_array_append_new(
            json_object_get(ten, "keys"),
            json_pack("{sI ss sb sI sI sI sI sI sI}", "id", (json_int_t)k->id, "prefix", k->prefix, "admin",
                      k->admin, "rpm", (json_int_t)k->rpm, "tpm", (json_int_t)k->tpm, "tokens_per_day",
                      (json_int_t)k->tpd, "minute_requests", (json_int_t)w.minute_requests, "minute_tokens",
                      (json_int_t)w.minute_tokens, "day_tokens", (json_int_t)w.day_tokens));
    }
    for (size_t i = 0; !s && by && i < n_use; i++) {
        json_t *today = json_object_get(json_object_get(by, use[i].tenant), "today");
        if (!today) continue;
        const int64_t add[4] = {use[i].requests, use[i].prompt_tokens, use[i].completion_tokens, use[i].cached_tokens};
        static const char *const names[4] = {"requests", "prompt_tokens", "completion_tokens", "cached_tokens"};
        for (int f = 0; f < 4; f++)
            json_object_set_new(today, names[f],
                                json_integer(json_integer_value(json_object_get(today, names[f])) + add[f]));
    }
    free(keys);
    free(use);
    if (s) {
        json_decref(by);
        return store_failed(r, s);
    }
    json_t *arr = json_array();
    const char *name;
    json_t *ten;
    json_object_foreach(by, name, ten) json_array_append(arr, ten);
    json_decref(by);
    r->result = json_pack("{sI sI sI so}", "now", (json_int_t)r->now, "minute_start",
                          (json_int_t)(r->now - r->now % 60), "day_start", (json_int_t)day, "tenants", arr);
    r->status = 200;
}

static json_t *record_json(const store_audit_row *row) {
    const audit_record *x = &row->rec;
    char prev[AUDIT_HEX_LEN + 1], hash[AUDIT_HEX_LEN + 1];
    audit_hex(x->prev, AUDIT_HASH_BYTES, prev);
    audit_hex(x->hash, AUDIT_HASH_BYTES, hash);
    json_t *j = json_pack("{sI si sI ss ss sI ss ss ss si sI sI sI sI ss ss ss ss ss ss ss}", "seq", (json_int_t)x->seq,
                          "v", x->version, "time_ms", (json_int_t)x->time_ms, "node", x->node, "tenant", x->tenant,
                          "key_id", (json_int_t)x->key_id, "model", x->model, "model_sha256", x->model_sha256,
                          "endpoint", x->endpoint, "status", x->status, "prompt_tokens", (json_int_t)x->prompt_tokens,
                          "completion_tokens", (json_int_t)x->completion_tokens, "cached_tokens",
                          (json_int_t)x->cached_tokens, "latency_ms", (json_int_t)x->latency_ms, "finish_reason",
                          x->finish_reason, "client", x->client, "response_id", x->response_id, "region", x->region,
                          "retention", audit_retention_name(x->retention), "prompt_sha256", x->prompt_sha256,
                          "completion_sha256", x->completion_sha256);
    if (!j) return NULL;
    json_object_set_new(j, "model_signer", json_string(x->model_signer));
    json_object_set_new(j, "energy_uj", json_integer(x->energy_uj));
    json_object_set_new(j, "energy_source", json_string(x->energy_source));
    json_object_set_new(j, "prev", json_string(prev));
    json_object_set_new(j, "hash", json_string(hash));
    json_object_set_new(j, "text_kept", json_boolean(row->prompt_text || row->completion_text));
    if (!row->valid) json_object_set_new(j, "invalid", json_string(row->why));
    return j;
}

static void run_audit(tenants_job *j, store *st, tenants *t) {
    admin_req *r = j->arg;
    int64_t last = 0;
    uint8_t head[AUDIT_HASH_BYTES];
    sov_status s = store_audit_chain(st, &last, head);
    if (s) return store_failed(r, s);
    const int64_t from = r->after >= 0 ? r->after + 1 : SOV_MAX(last - r->limit + 1, 1);
    store_audit_row *rows = NULL;
    size_t n = 0;
    if ((s = store_audit_read(st, from, (size_t)r->limit, &rows, &n))) return store_failed(r, s);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        json_t *x = record_json(&rows[i]);
        /* a field no sov wrote may not be UTF-8: jansson refuses it; say so rather than drop it */
        json_array_append_new(arr, x ? x : json_pack("{sI ss}", "seq", (json_int_t)rows[i].rec.seq, "invalid",
                                                     "a field is not UTF-8"));
    }
    store_audit_rows_free(rows, n);
    char hex[AUDIT_HEX_LEN + 1];
    audit_hex(head, AUDIT_HASH_BYTES, hex);
    r->result = json_pack("{sI ss so}", "last_seq", (json_int_t)last, "chain_head", hex, "records", arr);
    r->status = 200;
}

static json_t *problem_json(const audit_problem *p) {
    return json_pack("{sI sI ss ss}", "seq", (json_int_t)p->seq, "seq_end", (json_int_t)p->seq_end, "kind",
                     audit_problem_name(p->kind), "detail", p->detail);
}

/* `sov audit verify --db` without --pub: the state folder's audit-*.pub are trusted. Runs on
 * its own thread with its own read-only connection (verify_main). */
static void verify_with(admin_req *r, store *st, const char *dir) {
    audit_pub *keys = NULL;
    size_t n_keys = 0;
    if (audit_pubs_in_dir(dir, &keys, &n_keys) != SOV_OK) {
        free(keys);
        return fail_req(r, 500, "no_trusted_key", "%s", sov_last_error());
    }
    audit_report rep;
    const double t0 = sov_now_s();
    const sov_status s = store_audit_verify(st, keys, n_keys, &rep); /* store_audit_verify.c */
    const double took = sov_now_s() - t0;
    json_t *ids = json_array();
    for (size_t i = 0; ids && i < n_keys; i++)
        json_array_append_new(ids, json_string(keys[i].id));
    free(keys);
    if (s) {
        json_decref(ids);
        return store_failed(r, s);
    }
    char head[AUDIT_HEX_LEN + 1];
    audit_hex(rep.last_hash, AUDIT_HASH_BYTES, head);
    json_t *probs = json_array();
    for (size_t i = 0; probs && i < rep.n_problems && i < AUDIT_PROBLEMS_KEPT; i++)
        json_array_append_new(probs, problem_json(&rep.problems[i]));
    r->result = json_pack(
        "{sb sI sI sI ss sI sI sI sI sI so so so ss sf}", "ok", rep.n_problems == 0, "records",
        (json_int_t)rep.records, "first_seq", (json_int_t)rep.first_seq, "last_seq", (json_int_t)rep.last_seq,
        "chain_head", head, "heads", (json_int_t)rep.heads, "heads_matched", (json_int_t)rep.heads_matched,
        "signed_through", (json_int_t)rep.signed_through, "unsigned_tail", (json_int_t)rep.unsigned_tail,
        "n_problems", (json_int_t)rep.n_problems, "first_bad", rep.n_problems ? problem_json(&rep.first) : json_null(),
        "problems", probs, "trusted_keys", ids, "trust",
        "the audit-*.pub in this server's state folder: a key from the same machine proves less than a copy "
        "kept elsewhere (sov audit verify --pub)",
        "seconds", took);
    r->status = 200;
}

static void run_nothing(tenants_job *j, store *st, tenants *t) {}

/* The verification's thread: the walk reads the whole log, which must not hold up the
 * store worker (reservations and every /v1 answer's audit commit wait on it: 4000 records
 * take 65-90 ms), so it has a read-only connection of its own. Done, it hands its request
 * to the worker as a job that does nothing, which brings it back to the HTTP thread like
 * any other (admin_take) — the one wake-up path there is. */
static void *verify_main(void *arg) {
    admin_req *r = arg;
    tenants *t = r->a->env.tenants;
    const char *dir = tenants_state_dir(t);
    store *st = NULL;
    const store_open_params p = {.read_only = true};
    if (!dir) {
        fail_req(r, 409, "no_audit_log",
                 "This server writes no audit log (--no-audit), so it has no trusted key to verify with: run "
                 "sov audit verify --db DB --pub FILE.");
    } else if (store_open(tenants_store_name(t), &p, &st) != SOV_OK) {
        fail_req(r, 503, "store_unavailable", "%s", sov_last_error());
    } else {
        verify_with(r, st, dir);
        store_close(st);
    }
    r->job.run = run_nothing;
    tenants_job_submit(t, &r->job);
    return NULL;
}

/* ---- replies (HTTP thread) ---- */

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

static void send_reply(admin *a, struct evhttp_request *req, const char *route, int status, const char *json) {
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "Content-Security-Policy", web_csp);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    struct evbuffer *b = evbuffer_new();
    if (b) evbuffer_add(b, json, strlen(json));
    if (b && evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) { /* the GET's length, no body */
        char n[24];
        snprintf(n, sizeof n, "%zu", evbuffer_get_length(b));
        evhttp_add_header(h, "Content-Length", n);
        evbuffer_drain(b, evbuffer_get_length(b));
    }
    evhttp_send_reply(req, status, reason(status), b);
    if (b) evbuffer_free(b);
    a->env.counted(a->env.srv, route, status);
}

static void reply_error(admin *a, struct evhttp_request *req, const char *route, int status, const char *code,
                        const char *msg) {
    oai_error e;
    oai_fail(&e, status, status >= 500 ? "server_error" : "invalid_request_error", NULL, code, "%s", msg);
    char *j = oai_error_json(&e);
    send_reply(a, req, route, status, j ? j : "{\"error\":{\"message\":\"out of memory\"}}");
    free(j);
}

/* ---- audit records of admin actions ---- */

static void endpoint_of(const char *path, char *buf, size_t cap) {
    size_t i = 0;
    for (; path[i] && i + 1 < cap; i++)
        buf[i] = path[i] > 0x20 && path[i] < 0x7f ? path[i] : '?';
    buf[i] = '\0';
}

/* A POST's record (NULL without the audit log): who (the key's tenant and id), what
 * (endpoint, and the key concerned as response_id "key-N"), the body's SHA-256 as its
 * prompt, and the status (set again when the worker's outcome is known). */
static tenants_audit *record(admin *a, struct evhttp_request *req, const char *path, const tenants_key *key,
                             int64_t target, const char *body, size_t len, int status) {
    if (!a->env.audit) return NULL;
    char endpoint[AUDIT_TEXT_MAX + 1], client[64] = "", rid[32] = "";
    endpoint_of(path, endpoint, sizeof endpoint);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (evcon) evhttp_connection_get_peer(evcon, &addr, &port);
    snprintf(client, sizeof client, "%s", addr ? addr : "");
    srv_audit au;
    srv_audit_begin(&au, a->env.audit, endpoint, client);
    srv_audit_key(&au, key ? key->tenant : "", key ? key->id : 0);
    if (target > 0) {
        snprintf(rid, sizeof rid, "key-%lld", (long long)target);
        srv_audit_response_id(&au, rid);
    }
    if (body) srv_audit_prompt(&au, body, len);
    return srv_audit_end(&au, status, NULL);
}

/* A POST refused before it reached the worker: its record goes without waiting. */
static void record_refusal(admin *a, struct evhttp_request *req, const char *path, const tenants_key *key,
                           int64_t target, int status) {
    tenants_audit *x = record(a, req, path, key, target, NULL, 0, status);
    if (x) tenants_audit_append(a->env.tenants, x);
}

/* ---- the job's way out and back ---- */

static void unlink_req(admin_req *r) {
    admin *a = r->a;
    if (r->prev)
        r->prev->next = r->next;
    else
        a->out = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void req_free(admin_req *r) {
    OPENSSL_cleanse(r->secret, sizeof r->secret);
    json_decref(r->result);
    tenants_audit_free(r->job.audit);
    if (r->orphan) evhttp_request_free(r->orphan);
    free(r);
}

static void on_close(struct evhttp_connection *evcon, void *arg) {
    admin_req *r = arg;
    /* a request detached from its connection is ours to free (as in server.c's on_close) */
    if (r->req && !evhttp_request_get_connection(r->req)) r->orphan = r->req;
    r->req = NULL;
    r->evcon = NULL;
}

/* Sends r to the worker (run), or for a verification to its own thread (run NULL). False
 * when that thread cannot start (nothing was sent then). */
static bool submit(admin *a, admin_req *r, void (*run)(tenants_job *, store *, tenants *)) {
    r->a = a;
    r->job.user = r;
    r->job.arg = r;
    r->job.run = run;
    r->now = (int64_t)time(NULL);
    if (!run) {
        if (pthread_create(&a->verifier, NULL, verify_main, r) != 0) return false;
        a->verifying = true;
    }
    r->evcon = evhttp_request_get_connection(r->req);
    if (r->evcon) evhttp_connection_set_closecb(r->evcon, on_close, r);
    r->next = a->out;
    if (a->out) a->out->prev = r;
    a->out = r;
    if (run) tenants_job_submit(a->env.tenants, &r->job);
    return true;
}

static void answer(admin *a, admin_req *r) {
    if (r->evcon) evhttp_connection_set_closecb(r->evcon, NULL, NULL);
    if (!r->req) return; /* the client left */
    const tenants_audit *au = r->job.audit;
    if (r->status == 200 && au && au->status != SOV_OK) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 r->kind == K_CREATE
                     ? "The audit log could not record this, so the new key %lld is withheld (revoke it: it is "
                       "unusable): %s. Try again later."
                     : "Key %lld is revoked, but the audit log could not record it: %s.",
                 (long long)r->key_id, au->error);
        reply_error(a, r->req, r->route, 503, "audit_unavailable", msg);
        return;
    }
    if (r->status != 200) {
        reply_error(a, r->req, r->route, r->status ? r->status : 500, r->code[0] ? r->code : "server_error",
                    r->err[0] ? r->err : "out of memory");
        return;
    }
    if (r->kind == K_CREATE && r->result) json_object_set_new(r->result, "key", json_string(r->secret));
    if (au) json_object_set_new(r->result, "audit_seq", json_integer(au->rec.seq));
    char *body = r->result ? json_dumps(r->result, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (body)
        send_reply(a, r->req, r->route, 200, body);
    else
        reply_error(a, r->req, r->route, 500, "server_error", "out of memory");
    if (body) OPENSSL_cleanse(body, strlen(body));
    free(body);
}

/* A request back from the worker: the verification's thread has ended (or is ending). */
static void came_back(admin *a, admin_req *r) {
    unlink_req(r);
    if (r->kind == K_VERIFY && a->verifying) {
        pthread_join(a->verifier, NULL);
        a->verifying = false;
    }
}

void admin_take(admin *a) {
    if (!a || !a->env.tenants) return;
    tenants_job *done[32];
    int n;
    bool polled = false;
    while ((n = tenants_take_jobs(a->env.tenants, done, 32)) > 0) {
        if (!polled) { /* a key table read for these jobs is in before they are answered */
            a->env.poll_keys(a->env.srv);
            polled = true;
        }
        for (int i = 0; i < n; i++) {
            admin_req *r = done[i]->user;
            came_back(a, r);
            answer(a, r);
            req_free(r);
        }
    }
}

/* ---- routing ---- */

static const char R_KEYS[] = "/console/api/keys", R_TENANTS[] = "/console/api/tenants",
                  R_AUDIT[] = "/console/api/audit";

/* Is the Content-Type application/json (parameters such as charset allowed)? */
static bool json_content(const char *ct) {
    if (!ct) return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    static const char mt[] = "application/json";
    if (strncasecmp(ct, mt, sizeof mt - 1) != 0) return false;
    const char c = ct[sizeof mt - 1];
    return c == '\0' || c == ';' || c == ' ' || c == '\t';
}

/* No Origin (not a browser, or a same-origin GET), or this server's own. */
static bool same_origin(struct evhttp_request *req) {
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *origin = evhttp_find_header(in, "Origin"), *host = evhttp_find_header(in, "Host");
    if (!origin) return true;
    if (!host) return false;
    const char *rest = !strncmp(origin, "http://", 7) ? origin + 7 : !strncmp(origin, "https://", 8) ? origin + 8 : NULL;
    return rest && strcasecmp(rest, host) == 0;
}

bool admin_handle(admin *a, struct evhttp_request *req, const char *path) {
    static const char base[] = "/console/api/";
    if (strncmp(path, base, sizeof base - 1) != 0) return false;
    const char *rest = path + sizeof base - 1;
    admin_kind kind;
    int64_t id = 0;
    const char *route;
    bool post;
    if (!strcmp(rest, "keys")) {
        const enum evhttp_cmd_type m = evhttp_request_get_command(req);
        kind = m == EVHTTP_REQ_POST ? K_CREATE : K_KEYS;
        route = R_KEYS;
        post = kind == K_CREATE;
    } else if (!strncmp(rest, "keys/", 5) && strlen(rest) > 12 && !strcmp(rest + strlen(rest) - 7, "/revoke")) {
        if (!admin_parse_key_id(rest + 5, strlen(rest) - 12, &id)) return false;
        kind = K_REVOKE;
        route = R_KEYS;
        post = true;
    } else if (!strcmp(rest, "tenants")) {
        kind = K_TENANTS;
        route = R_TENANTS;
        post = false;
    } else if (!strcmp(rest, "audit")) {
        kind = K_AUDIT;
        route = R_AUDIT;
        post = false;
    } else if (!strcmp(rest, "audit/verify")) {
        kind = K_VERIFY;
        route = R_AUDIT;
        post = false;
    } else {
        return false;
    }
    const enum evhttp_cmd_type m = evhttp_request_get_command(req);
    const bool get = m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD;
    if (post ? m != EVHTTP_REQ_POST : !get) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", kind == K_KEYS ? "GET, POST" : post ? "POST" : "GET");
        reply_error(a, req, route, 405, "method_not_allowed", post ? "Use POST." : "Use GET.");
        return true;
    }
    tenants *t = a->env.tenants;
    if (!t) {
        reply_error(a, req, route, 404, "no_state_store",
                    "The admin API needs a state store: start sov serve with --db.");
        return true;
    }
    if (!tenants_auth_required(t)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer realm=\"sov\"");
        reply_error(a, req, route, 401, "missing_api_key",
                    "The state store holds no API key yet, so there is no admin key: create the first one with "
                    "sov keys create --db DB --tenant NAME --admin.");
        return true;
    }
    tenants_key key = {0};
    if (!a->env.authenticate(a->env.srv, req, route, &key)) { /* a 401 was sent */
        if (post) record_refusal(a, req, path, &key, id, 401);
        return true;
    }
    if (!key.admin) {
        reply_error(a, req, route, 403, "admin_key_required",
                    "This endpoint needs an admin key (sov keys create --admin).");
        if (post) record_refusal(a, req, path, &key, id, 403);
        return true;
    }
    admin_req *r = calloc(1, sizeof *r);
    if (!r) {
        reply_error(a, req, route, 500, "server_error", "out of memory");
        return true;
    }
    r->req = req;
    r->kind = kind;
    r->route = route;
    r->key_id = id;
    char err[300];
    int status = 0;
    const char *code = NULL;
    const char *body = NULL;
    size_t len = 0;
    if (post) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        len = evbuffer_get_length(in);
        if (!json_content(evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type"))) {
            status = 415, code = "unsupported_media_type";
            snprintf(err, sizeof err, "Send the body as Content-Type: application/json.");
        } else if (!same_origin(req)) {
            status = 403, code = "cross_origin";
            snprintf(err, sizeof err, "A request from another origin cannot change this server.");
        } else if (len > ADMIN_BODY_MAX) {
            status = 413, code = "request_too_large";
            snprintf(err, sizeof err, "The body is %zu bytes; the limit is %d.", len, ADMIN_BODY_MAX);
        } else {
            body = len ? (const char *)evbuffer_pullup(in, (ev_ssize_t)len) : "";
            if (kind == K_CREATE && !admin_parse_key_create(body, len, &r->create, err, sizeof err))
                status = 400, code = "invalid_request";
            if (kind == K_REVOKE && len && (len != 2 || memcmp(body, "{}", 2))) {
                status = 400, code = "invalid_request";
                snprintf(err, sizeof err, "A revoke takes no body (or {}).");
            }
        }
    } else if (kind == K_AUDIT) {
        const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
        if (!admin_parse_audit_query(uri ? evhttp_uri_get_query(uri) : NULL, &r->after, &r->limit, err, sizeof err))
            status = 400, code = "invalid_request";
    }
    if (status) {
        reply_error(a, req, route, status, code, err);
        if (post) record_refusal(a, req, path, &key, id, status);
        free(r);
        return true;
    }
    if (kind == K_VERIFY && a->verifying) {
        reply_error(a, req, route, 409, "verify_running", "A verification is running; try again when it ends.");
        free(r);
        return true;
    }
    if (post) r->job.audit = record(a, req, path, &key, id, body, len, 200);
    static void (*const runs[])(tenants_job *, store *, tenants *) = {
        [K_KEYS] = run_keys,       [K_CREATE] = run_create, [K_REVOKE] = run_revoke,
        [K_TENANTS] = run_tenants, [K_AUDIT] = run_audit,   [K_VERIFY] = NULL};
    if (!submit(a, r, runs[kind])) {
        reply_error(a, req, route, 503, "server_error", "Cannot start the verification thread.");
        free(r);
    }
    return true;
}

/* ---- life ---- */

admin *admin_new(const admin_env *env) {
    admin *a = calloc(1, sizeof *a);
    if (a) a->env = *env;
    return a;
}

bool admin_busy(const admin *a) { return a && a->out; }

void admin_free(admin *a) {
    if (!a) return;
    /* a verification still running is waited for: its thread uses the tenants module */
    for (int i = 0; a->out && (i < 1000 || a->verifying); i++) {
        tenants_job *done[32];
        const int n = tenants_take_jobs(a->env.tenants, done, 32);
        for (int k = 0; k < n; k++) {
            admin_req *r = done[k]->user;
            came_back(a, r);
            if (r->evcon) evhttp_connection_set_closecb(r->evcon, NULL, NULL);
            req_free(r);
        }
        if (a->out && n == 0) {
            const struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    /* the worker never answered (a store hung for 10 s): it still points at these */
    for (admin_req *r = a->out; r; r = r->next)
        if (r->evcon) evhttp_connection_set_closecb(r->evcon, NULL, NULL);
    free(a);
}
