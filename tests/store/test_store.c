/* test_store.c - the state store (src/store/store.h), the same specification run on both
 * implementations: a SQLite file under SOV_TEST_TMP, and a database of its own on the
 * throw-away PostgreSQL cluster of the CTest fixture (tests/store/pgctl.sh; this file says
 * SOV_NEEDS_POSTGRES, so CTest starts the cluster first and gives SOV_PG_URL_FILE). Without
 * that cluster the PostgreSQL part fails: it never skips.
 *
 * Each behaviour gets a fresh store (a new file, or a new database sov_test_<pid>_<n>,
 * dropped at the end). Then the faults each backend has of its own: for SQLite a damaged
 * or foreign file, a read-only file, a lock held by another process; for PostgreSQL a
 * server that is not there, a backend terminated under the store, a row lock held by
 * another session. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/util.h"
#include "store/store.h"
#include "test.h"

#define RUN_ON(fn, b)                                                                                        \
    do {                                                                                                     \
        int before_ = test_failures_;                                                                        \
        fn(b);                                                                                               \
        fprintf(stderr, "%s %s %s\n", test_failures_ == before_ ? "ok  " : "FAIL", (b)->label, #fn);         \
    } while (0)

#define CHECK_ERR(status, want, words)                                                                       \
    do {                                                                                                     \
        sov_status st_ = (status);                                                                           \
        CHECK_MSG(st_ == (want) && strstr(sov_last_error(), (words)) != NULL,                                \
                  "status %s, want %s with \"%s\": %s", sov_strerror(st_), sov_strerror(want), words,        \
                  sov_last_error());                                                                         \
    } while (0)

#define CHECK_OK(status)                                                                                     \
    do {                                                                                                     \
        sov_status st_ = (status);                                                                           \
        CHECK_MSG(st_ == SOV_OK, "%s: %s", sov_strerror(st_), sov_last_error());                             \
    } while (0)

/* One implementation under test. */
typedef struct backend {
    const char *label; /* "sqlite" or "postgresql" */
    store_kind kind;
    PGconn *admin;  /* PostgreSQL: a connection to the fixture's postgres database */
    char host[256]; /* PostgreSQL: socket folder, port and user of the fixture */
    char port[16];
    char user[64];
    int made; /* stores made so far (for unique names) */
} backend;

/* A store made for one test. */
typedef struct tstore {
    char name[700]; /* what store_open takes */
    char db[64];    /* PostgreSQL: the database name */
} tstore;

enum { T0 = 1700000040 }; /* a time at the start of a minute (and 3240 s into its day) */
#define DAY_OF(t) ((t) - (t) % 86400)

/* ---- stores for tests ---- */

static bool pg_admin_exec(const backend *b, const char *sql) {
    PGresult *res = PQexec(b->admin, sql);
    const bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok) fprintf(stderr, "postgresql: %s: %s", sql, PQerrorMessage(b->admin));
    PQclear(res);
    return ok;
}

static void sqlite_remove(const char *path) {
    char side[800];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

/* A new, empty store (not yet opened). */
static void fresh(backend *b, tstore *t) {
    memset(t, 0, sizeof *t);
    const int n = ++b->made;
    if (b->kind == STORE_SQLITE) {
        char file[64];
        snprintf(file, sizeof file, "store_%d_%d.db", (int)getpid(), n);
        test_tmp_path(file, t->name, sizeof t->name);
        sqlite_remove(t->name);
        return;
    }
    char sql[128];
    snprintf(t->db, sizeof t->db, "sov_test_%d_%d", (int)getpid(), n);
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", t->db);
    pg_admin_exec(b, sql);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", t->db);
    CHECK(pg_admin_exec(b, sql));
    snprintf(t->name, sizeof t->name, "postgresql:///%s?host=%s&port=%s&user=%s", t->db, b->host, b->port,
             b->user);
}

static void dispose(backend *b, const tstore *t) {
    if (b->kind == STORE_SQLITE) {
        sqlite_remove(t->name);
        return;
    }
    char sql[128];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", t->db);
    CHECK(pg_admin_exec(b, sql));
}

/* Runs SQL on the store's database behind the store's back. */
static bool raw_exec(const backend *b, const tstore *t, const char *sql) {
    if (b->kind == STORE_SQLITE) {
        sqlite3 *db = NULL;
        int rc = sqlite3_open(t->name, &db);
        if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK) fprintf(stderr, "sqlite: %s: %s\n", sql, sqlite3_errmsg(db));
        sqlite3_close(db);
        return rc == SQLITE_OK;
    }
    PGconn *c = PQconnectdb(t->name);
    PGresult *res = PQexec(c, sql);
    const bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok) fprintf(stderr, "postgresql: %s: %s", sql, PQerrorMessage(c));
    PQclear(res);
    PQfinish(c);
    return ok;
}

static store *open_ok(const tstore *t) {
    store *s = NULL;
    const sov_status st = store_open(t->name, NULL, &s);
    CHECK_MSG(st == SOV_OK && s, "store_open(%s): %s", t->name, sov_last_error());
    return st == SOV_OK ? s : NULL;
}

static store_key make_key(const char *tenant, int64_t rpm, int64_t tpm, int64_t tpd) {
    store_key k;
    memset(&k, 0, sizeof k);
    snprintf(k.prefix, sizeof k.prefix, "sov-%.8s", tenant);
    snprintf(k.tenant, sizeof k.tenant, "%s", tenant);
    snprintf(k.models, sizeof k.models, "tiny,small");
    for (int i = 0; i < STORE_SALT_BYTES; i++)
        k.salt[i] = (uint8_t)(i * 17 + 3);
    for (int i = 0; i < STORE_HASH_BYTES; i++)
        k.hash[i] = (uint8_t)(255 - i * 7);
    k.rpm = rpm;
    k.tpm = tpm;
    k.tpd = tpd;
    k.created = T0 - 1000;
    return k;
}

static int64_t add_key(store *s, const store_key *k) {
    int64_t id = 0;
    CHECK_OK(store_key_add(s, k, &id));
    CHECK(id > 0);
    return id;
}

static int64_t keys_version(store *s) {
    int64_t v = -1;
    CHECK_OK(store_keys_version(s, &v));
    return v;
}

static store_reserve_res reserve(store *s, int64_t key, const store_key *k, int64_t tokens, int64_t now) {
    const store_reserve_req r = {
        .key_id = key, .rpm = k->rpm, .tpm = k->tpm, .tpd = k->tpd, .tokens = tokens, .now = now};
    store_reserve_res res;
    CHECK_OK(store_reserve(s, &r, &res));
    return res;
}

/* ---- schema ---- */

static void store_migrates_from_empty_and_reopens(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    CHECK(store_schema_version() >= 1);
    CHECK_EQ(store_version(s), store_schema_version());
    CHECK_EQ(store_get_kind(s), b->kind);
    CHECK(strstr(store_describe(s), b->kind == STORE_SQLITE ? "SQLite file" : "PostgreSQL database"));
    store_key k = make_key("acme", 0, 0, 0);
    const int64_t id = add_key(s, &k);
    store_close(s);
    s = open_ok(&t); /* again: nothing to migrate, nothing lost */
    if (!s) return;
    CHECK_EQ(store_version(s), store_schema_version());
    store_key *keys = NULL;
    size_t n = 0;
    CHECK_OK(store_keys(s, &keys, &n));
    CHECK_EQ(n, 1);
    if (n == 1) CHECK_EQ(keys[0].id, id);
    free(keys);
    store_close(s);
    const store_open_params ro = {.read_only = true};
    CHECK_OK(store_open(t.name, &ro, &s));
    if (s) {
        CHECK_EQ(store_version(s), store_schema_version());
        CHECK_ERR(store_key_add(s, &k, &(int64_t){0}), SOV_ERR_IO, "read-only");
        store_close(s);
    }
    dispose(b, &t);
}

static void store_refuses_a_newer_schema_and_unmigrated_read_only(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = NULL;
    const store_open_params ro = {.read_only = true};
    if (b->kind == STORE_POSTGRES) /* an empty database opened read-only: nothing to read */
        CHECK_ERR(store_open(t.name, &ro, &s), SOV_ERR_FORMAT, "older");
    else /* a missing file opened read-only */
        CHECK_ERR(store_open(t.name, &ro, &s), SOV_ERR_IO, "cannot open");
    s = open_ok(&t);
    store_close(s);
    CHECK(raw_exec(b, &t, "INSERT INTO sov_schema (version, applied) VALUES (99, 0)"));
    s = NULL;
    CHECK_ERR(store_open(t.name, NULL, &s), SOV_ERR_FORMAT, "newer");
    CHECK(s == NULL);
    CHECK_ERR(store_open(t.name, &ro, &s), SOV_ERR_FORMAT, "newer");
    CHECK_ERR(store_open("", NULL, &s), SOV_ERR_ARG, "empty");
    dispose(b, &t);
}

typedef struct opener {
    const char *name;
    sov_status status;
    int version;
    char error[256];
} opener;

static void *open_worker(void *arg) {
    opener *o = arg;
    store *s = NULL;
    const store_open_params p = {.busy_timeout_ms = 30000};
    o->status = store_open(o->name, &p, &s);
    snprintf(o->error, sizeof o->error, "%s", sov_last_error());
    if (s) o->version = store_version(s);
    store_close(s);
    return NULL;
}

/* Eight processes' worth of first opens at once: one migrates, the others wait and see it. */
static void store_migrates_once_under_concurrent_opens(backend *b) {
    tstore t;
    fresh(b, &t);
    pthread_t th[8];
    opener o[8];
    for (int i = 0; i < 8; i++) {
        o[i] = (opener){.name = t.name};
        CHECK(pthread_create(&th[i], NULL, open_worker, &o[i]) == 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        CHECK_MSG(o[i].status == SOV_OK, "opener %d: %s", i, o[i].error);
        CHECK_EQ(o[i].version, store_schema_version());
    }
    dispose(b, &t);
}

/* ---- keys and tenants ---- */

static void store_adds_lists_and_revokes_keys(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    int64_t v = keys_version(s);
    store_key a = make_key("acme", 60, 1000, 100000), c = make_key("corp", 0, 0, 0);
    a.admin = true;
    snprintf(c.models, sizeof c.models, "%s", "");
    const int64_t id1 = add_key(s, &a), id2 = add_key(s, &c), id3 = add_key(s, &a);
    CHECK(id1 < id2 && id2 < id3);
    CHECK(keys_version(s) > v);
    store_key *keys = NULL;
    size_t n = 0;
    CHECK_OK(store_keys(s, &keys, &n));
    CHECK_EQ(n, 3);
    if (n == 3) {
        CHECK_EQ(keys[0].id, id1);
        CHECK_STREQ(keys[0].prefix, a.prefix);
        CHECK(memcmp(keys[0].salt, a.salt, STORE_SALT_BYTES) == 0);
        CHECK(memcmp(keys[0].hash, a.hash, STORE_HASH_BYTES) == 0);
        CHECK_STREQ(keys[0].tenant, "acme");
        CHECK_STREQ(keys[0].models, "tiny,small");
        CHECK_EQ(keys[0].rpm, 60);
        CHECK_EQ(keys[0].tpm, 1000);
        CHECK_EQ(keys[0].tpd, 100000);
        CHECK(keys[0].admin);
        CHECK_NEAR(keys[0].weight, 1.0, 0);
        CHECK_EQ(keys[0].created, a.created);
        CHECK_EQ(keys[0].last_used, 0);
        CHECK_EQ(keys[0].revoked, 0);
        CHECK_STREQ(keys[1].tenant, "corp");
        CHECK_STREQ(keys[1].models, "");
        CHECK(!keys[1].admin);
        CHECK_EQ(keys[2].id, id3);
    }
    free(keys);

    v = keys_version(s);
    CHECK_ERR(store_key_revoke(s, id3 + 100, T0), SOV_ERR_NOT_FOUND, "no key");
    CHECK_EQ(keys_version(s), v);
    CHECK_OK(store_key_revoke(s, id2, T0));
    const int64_t v2 = keys_version(s);
    CHECK(v2 > v);
    CHECK_OK(store_key_revoke(s, id2, T0 + 50)); /* again: no change */
    CHECK_EQ(keys_version(s), v2);
    CHECK_ERR(store_key_revoke(s, id2, 0), SOV_ERR_ARG, "revocation");
    CHECK_OK(store_keys(s, &keys, &n));
    if (n == 3) {
        CHECK_EQ(keys[0].revoked, 0);
        CHECK_EQ(keys[1].revoked, T0);
    }
    free(keys);
    store_close(s);
    dispose(b, &t);
}

static void store_validates_keys_and_binds_every_value(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    int64_t id = 0;
    store_key k = make_key("ok", 0, 0, 0);
    k.tenant[0] = '\0';
    CHECK_ERR(store_key_add(s, &k, &id), SOV_ERR_ARG, "tenant");
    memset(k.tenant, 'x', STORE_TENANT_MAX); /* 64 bytes: the most */
    k.tenant[STORE_TENANT_MAX] = '\0';
    CHECK_OK(store_key_add(s, &k, &id));
    memset(k.tenant, 'x', sizeof k.tenant); /* no terminator inside the field */
    CHECK_ERR(store_key_add(s, &k, &id), SOV_ERR_ARG, "tenant");
    const char *bad_tenants[] = {"a\nb",     "tab\there", "\x7f",         "caf\xc3",
                                 "\xff\xfe", "\xc0\xaf",  "\xed\xa0\x80", "c1\xc2\x85"};
    for (size_t i = 0; i < SOV_ARRAY_LEN(bad_tenants); i++) {
        k = make_key(bad_tenants[i], 0, 0, 0);
        CHECK_ERR(store_key_add(s, &k, &id), SOV_ERR_ARG, "tenant");
    }
    k = make_key("ok", 0, 0, 0);
    snprintf(k.models, sizeof k.models, "a\rb");
    CHECK_ERR(store_key_add(s, &k, &id), SOV_ERR_ARG, "model");
    k = make_key("ok", -1, 0, 0);
    CHECK_ERR(store_key_add(s, &k, &id), SOV_ERR_ARG, "limits");
    k = make_key("ok", 0, 0, -5);
    CHECK_ERR(store_key_add(s, &k, &id), SOV_ERR_ARG, "limits");

    /* SQL-looking and non-ASCII text round-trips verbatim */
    const char *evil = "x'); DROP TABLE keys; --";
    k = make_key(evil, 0, 0, 0);
    snprintf(k.models, sizeof k.models, "m1', (SELECT 1)); DELETE FROM tenants; --,\"q\"");
    snprintf(k.prefix, sizeof k.prefix, "sov-'\";$1?");
    const int64_t id_evil = add_key(s, &k);
    store_key u = make_key("Zürich-東京-🙂", 0, 0, 0);
    const int64_t id_utf8 = add_key(s, &u);
    store_key *keys = NULL;
    size_t n = 0;
    CHECK_OK(store_keys(s, &keys, &n));
    CHECK_EQ(n, 3);
    for (size_t i = 0; i < n; i++) {
        if (keys[i].id == id_evil) {
            CHECK_STREQ(keys[i].tenant, evil);
            CHECK_STREQ(keys[i].models, k.models);
            CHECK_STREQ(keys[i].prefix, k.prefix);
        }
        if (keys[i].id == id_utf8) CHECK_STREQ(keys[i].tenant, "Zürich-東京-🙂");
    }
    free(keys);
    CHECK_OK(store_tenant_set_weight(s, evil, 3));
    store_close(s);
    dispose(b, &t);
}

static void store_sets_tenant_weights(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    store_key k = make_key("acme", 0, 0, 0);
    add_key(s, &k);
    const int64_t v = keys_version(s);
    CHECK_OK(store_tenant_set_weight(s, "acme", 2.5));
    CHECK(keys_version(s) > v);
    store_key *keys = NULL;
    size_t n = 0;
    CHECK_OK(store_keys(s, &keys, &n));
    if (n == 1) CHECK_NEAR(keys[0].weight, 2.5, 0);
    free(keys);
    CHECK_ERR(store_tenant_set_weight(s, "nobody", 2), SOV_ERR_NOT_FOUND, "no tenant");
    CHECK_ERR(store_tenant_set_weight(s, "acme", 0), SOV_ERR_ARG, "weight");
    CHECK_ERR(store_tenant_set_weight(s, "acme", -1), SOV_ERR_ARG, "weight");
    CHECK_ERR(store_tenant_set_weight(s, "acme", 1000.5), SOV_ERR_ARG, "weight");
    CHECK_ERR(store_tenant_set_weight(s, "acme", NAN), SOV_ERR_ARG, "weight");
    CHECK_OK(store_tenant_set_weight(s, "acme", 1000));
    store_close(s);
    dispose(b, &t);
}

/* ---- reservations ---- */

static void store_reserve_counts_requests_per_minute(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    const store_key k = make_key("acme", 3, 0, 0);
    const int64_t id = add_key(s, &k), v = keys_version(s);
    for (int i = 1; i <= 3; i++) {
        const store_reserve_res r = reserve(s, id, &k, 10, T0 + i);
        CHECK_EQ(r.refused, STORE_LIMIT_NONE);
        CHECK_EQ(r.minute_requests, i);
        CHECK_EQ(r.minute_tokens, 10 * i);
        CHECK_EQ(r.minute_start, T0);
        CHECK_EQ(r.day_start, DAY_OF(T0));
    }
    store_reserve_res r = reserve(s, id, &k, 10, T0 + 59);
    CHECK_EQ(r.refused, STORE_LIMIT_RPM);
    CHECK_EQ(r.minute_requests, 3);
    CHECK_EQ(r.minute_tokens, 30);
    r = reserve(s, id, &k, 10, T0 + 60); /* the next minute */
    CHECK_EQ(r.refused, STORE_LIMIT_NONE);
    CHECK_EQ(r.minute_start, T0 + 60);
    CHECK_EQ(r.minute_requests, 1);
    CHECK_EQ(r.day_tokens, 40);
    CHECK_EQ(keys_version(s), v); /* usage is not a key change */
    store_reserve_res w;
    CHECK_OK(store_windows(s, id, T0 + 30, &w));
    CHECK_EQ(w.minute_requests, 3);
    CHECK_EQ(w.minute_tokens, 30);
    CHECK_EQ(w.day_tokens, 40);
    CHECK_OK(store_windows(s, id, T0 + 600, &w)); /* a minute never used */
    CHECK_EQ(w.minute_requests, 0);
    CHECK_EQ(w.day_tokens, 40);
    const store_reserve_req bad = {.key_id = id, .tokens = -1, .now = T0};
    CHECK_ERR(store_reserve(s, &bad, &w), SOV_ERR_ARG, "negative");
    const store_reserve_req unknown = {.key_id = id + 1000, .tokens = 1, .now = T0};
    CHECK_ERR(store_reserve(s, &unknown, &w), SOV_ERR_NOT_FOUND, "no key");
    store_close(s);
    dispose(b, &t);
}

static void store_reserve_counts_tokens_per_minute(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    const store_key k = make_key("acme", 0, 100, 0);
    const int64_t id = add_key(s, &k);
    CHECK_EQ(reserve(s, id, &k, 60, T0).refused, STORE_LIMIT_NONE);
    store_reserve_res r = reserve(s, id, &k, 50, T0 + 1);
    CHECK_EQ(r.refused, STORE_LIMIT_TPM);
    CHECK_EQ(r.minute_tokens, 60);
    CHECK_EQ(r.minute_requests, 1);
    r = reserve(s, id, &k, 40, T0 + 2); /* exactly the limit */
    CHECK_EQ(r.refused, STORE_LIMIT_NONE);
    CHECK_EQ(r.minute_tokens, 100);
    CHECK_EQ(reserve(s, id, &k, 1, T0 + 3).refused, STORE_LIMIT_TPM);
    CHECK_EQ(reserve(s, id, &k, 0, T0 + 3).refused, STORE_LIMIT_NONE);    /* no tokens still fits */
    CHECK_EQ(reserve(s, id, &k, 101, T0 + 600).refused, STORE_LIMIT_TPM); /* alone over the limit */
    CHECK_EQ(reserve(s, id, &k, 100, T0 + 600).refused, STORE_LIMIT_NONE);
    store_close(s);
    dispose(b, &t);
}

static void store_reserve_is_all_or_nothing_per_day(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    const store_key k = make_key("acme", 10, 1000, 100);
    const int64_t id = add_key(s, &k);
    CHECK_EQ(reserve(s, id, &k, 80, T0).refused, STORE_LIMIT_NONE);
    store_reserve_res r = reserve(s, id, &k, 30, T0 + 120);
    CHECK_EQ(r.refused, STORE_LIMIT_TPD);
    CHECK_EQ(r.day_tokens, 80);
    CHECK_EQ(r.minute_requests, 0);
    store_reserve_res w;
    CHECK_OK(store_windows(s, id, T0 + 120, &w)); /* the refusal left the minute alone */
    CHECK_EQ(w.minute_requests, 0);
    CHECK_EQ(w.minute_tokens, 0);
    CHECK_EQ(w.day_tokens, 80);
    CHECK_OK(store_windows(s, id, T0, &w));
    CHECK_EQ(w.minute_requests, 1);
    CHECK_EQ(w.minute_tokens, 80);
    const int64_t tomorrow = DAY_OF(T0) + 86400 + 5;
    r = reserve(s, id, &k, 30, tomorrow);
    CHECK_EQ(r.refused, STORE_LIMIT_NONE);
    CHECK_EQ(r.day_start, DAY_OF(T0) + 86400);
    CHECK_EQ(r.day_tokens, 30);
    /* several limits refuse: rpm speaks first, then tpm */
    const store_key all = make_key("acme", 1, 10, 10);
    const int64_t id2 = add_key(s, &all);
    CHECK_EQ(reserve(s, id2, &all, 5, T0).refused, STORE_LIMIT_NONE);
    CHECK_EQ(reserve(s, id2, &all, 50, T0).refused, STORE_LIMIT_RPM);
    CHECK_EQ(reserve(s, id2, &all, 50, T0 + 60).refused, STORE_LIMIT_TPM);
    store_close(s);
    dispose(b, &t);
}

/* ---- settling, usage, gc ---- */

static void store_settle_corrects_windows_and_records_usage(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    const store_key k = make_key("acme", 0, 0, 1000);
    const int64_t id = add_key(s, &k), v = keys_version(s);
    const store_reserve_res r = reserve(s, id, &k, 100, T0 + 5);
    store_settle e = {.key_id = id,
                      .minute_start = r.minute_start,
                      .day_start = r.day_start,
                      .reserved = 100,
                      .used = 40,
                      .at = T0 + 9,
                      .requests = 1,
                      .prompt_tokens = 30,
                      .completion_tokens = 10,
                      .cached_tokens = 16};
    CHECK_OK(store_settle_batch(s, &e, 1));
    store_reserve_res w;
    CHECK_OK(store_windows(s, id, T0 + 5, &w));
    CHECK_EQ(w.minute_tokens, 40);
    CHECK_EQ(w.minute_requests, 1);
    CHECK_EQ(w.day_tokens, 40);
    e.reserved = 10; /* used more than reserved: charged more */
    e.used = 25;
    e.at = T0 + 8; /* earlier than the last: last_used stays */
    CHECK_OK(store_settle_batch(s, &e, 1));
    CHECK_OK(store_windows(s, id, T0 + 5, &w));
    CHECK_EQ(w.day_tokens, 55);
    e.reserved = 500; /* more than the windows hold: never below zero */
    e.used = 0;
    e.requests = e.prompt_tokens = e.completion_tokens = e.cached_tokens = 0;
    CHECK_OK(store_settle_batch(s, &e, 1));
    CHECK_OK(store_windows(s, id, T0 + 5, &w));
    CHECK_EQ(w.minute_tokens, 0);
    CHECK_EQ(w.day_tokens, 0);
    CHECK_EQ(w.minute_requests, 1);
    store_settle none = {
        .key_id = id, .reserved = 0, .used = 70, .at = T0 + 7, .requests = 1}; /* no windows */
    CHECK_OK(store_settle_batch(s, &none, 1));
    CHECK_OK(store_windows(s, id, T0 + 5, &w));
    CHECK_EQ(w.day_tokens, 0);

    store_usage_row *u = NULL;
    size_t n = 0;
    CHECK_OK(store_usage(s, 0, &u, &n));
    CHECK_EQ(n, 1);
    if (n == 1) {
        CHECK_STREQ(u[0].tenant, "acme");
        CHECK_EQ(u[0].key_id, id);
        CHECK_STREQ(u[0].prefix, k.prefix);
        CHECK_EQ(u[0].requests, 3);
        CHECK_EQ(u[0].prompt_tokens, 60);
        CHECK_EQ(u[0].completion_tokens, 20);
        CHECK_EQ(u[0].cached_tokens, 32);
    }
    free(u);
    store_key *keys = NULL;
    CHECK_OK(store_keys(s, &keys, &n));
    if (n == 1) CHECK_EQ(keys[0].last_used, T0 + 9);
    free(keys);
    CHECK_EQ(keys_version(s), v);
    store_settle unknown = {.key_id = id + 1000, .at = T0, .requests = 1};
    CHECK_ERR(store_settle_batch(s, &unknown, 1), SOV_ERR_NOT_FOUND, "");
    e.used = -1;
    CHECK_ERR(store_settle_batch(s, &e, 1), SOV_ERR_ARG, "negative");
    CHECK_OK(store_settle_batch(s, NULL, 0));
    store_close(s);
    dispose(b, &t);
}

static void store_usage_groups_by_tenant_and_key_since_an_hour(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    const store_key kb = make_key("beta", 0, 0, 0), ka = make_key("alpha", 0, 0, 0),
                    kz = make_key("Zed", 0, 0, 0);
    const int64_t b1 = add_key(s, &kb), a1 = add_key(s, &ka), a2 = add_key(s, &ka);
    add_key(s, &kz); /* never used: left out */
    const int64_t h1 = T0 - T0 % 3600, h2 = h1 + 3600;
    const store_settle batch[] = {
        {.key_id = b1, .at = h2 + 10, .requests = 1, .prompt_tokens = 5},
        {.key_id = a2, .at = h1 + 10, .requests = 2, .prompt_tokens = 7, .completion_tokens = 3},
        {.key_id = a1, .at = h2 + 20, .requests = 4, .completion_tokens = 9, .cached_tokens = 1},
        {.key_id = a1, .at = h1 + 5, .requests = 1, .prompt_tokens = 1},
        {.key_id = b1, .at = h2 + 30, .requests = 1, .prompt_tokens = 5},
    };
    CHECK_OK(store_settle_batch(s, batch, SOV_ARRAY_LEN(batch)));
    store_usage_row *u = NULL;
    size_t n = 0;
    CHECK_OK(store_usage(s, 0, &u, &n));
    CHECK_EQ(n, 3);
    if (n == 3) {
        CHECK_STREQ(u[0].tenant, "alpha");
        CHECK_EQ(u[0].key_id, a1);
        CHECK_EQ(u[0].requests, 5);
        CHECK_EQ(u[0].prompt_tokens, 1);
        CHECK_EQ(u[0].completion_tokens, 9);
        CHECK_EQ(u[0].cached_tokens, 1);
        CHECK_EQ(u[1].key_id, a2);
        CHECK_EQ(u[1].requests, 2);
        CHECK_STREQ(u[2].tenant, "beta");
        CHECK_EQ(u[2].requests, 2);
        CHECK_EQ(u[2].prompt_tokens, 10);
    }
    free(u);
    CHECK_OK(store_usage(s, h2 + 1800, &u, &n)); /* from the hour that contains it */
    CHECK_EQ(n, 2);
    if (n == 2) {
        CHECK_EQ(u[0].key_id, a1);
        CHECK_EQ(u[0].requests, 4);
        CHECK_EQ(u[1].key_id, b1);
        CHECK_EQ(u[1].requests, 2);
    }
    free(u);
    CHECK_OK(store_usage(s, h2 + 3600, &u, &n));
    CHECK_EQ(n, 0);
    free(u);
    store_close(s);
    dispose(b, &t);
}

static void store_gc_drops_old_windows(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    const store_key k = make_key("acme", 0, 0, 0);
    const int64_t id = add_key(s, &k);
    const int64_t now = T0 + 20 * 86400;
    const int64_t times[] = {now - 9 * 86400, now - 2 * 3600, now - 1800, now};
    for (size_t i = 0; i < SOV_ARRAY_LEN(times); i++)
        reserve(s, id, &k, 10, times[i]);
    CHECK_OK(store_gc(s, now));
    store_reserve_res w;
    CHECK_OK(store_windows(s, id, times[0], &w)); /* day window 9 days old: gone */
    CHECK_EQ(w.day_tokens, 0);
    CHECK_EQ(w.minute_requests, 0);
    CHECK_OK(store_windows(s, id, times[1], &w)); /* minute 2 h old: gone; its day kept */
    CHECK_EQ(w.minute_requests, 0);
    CHECK(w.day_tokens > 0);
    CHECK_OK(store_windows(s, id, times[2], &w)); /* minute 30 min old: kept */
    CHECK_EQ(w.minute_requests, 1);
    CHECK_OK(store_windows(s, id, now, &w));
    CHECK_EQ(w.minute_requests, 1);
    store_close(s);
    dispose(b, &t);
}

/* ---- concurrency ---- */

typedef struct worker {
    const char *name;      /* store to open */
    store_reserve_req req; /* the reservation to repeat */
    int attempts;
    int batch;             /* > 1: store_reserve_batch of this many at a time */
    int reserved, refused; /* outcomes */
    int errors;
    char error[256]; /* the first error */
} worker;

static void *reserve_worker(void *arg) {
    worker *w = arg;
    store *s = NULL;
    const store_open_params p = {.busy_timeout_ms = 30000};
    if (store_open(w->name, &p, &s) != SOV_OK) {
        w->errors = w->attempts;
        snprintf(w->error, sizeof w->error, "%s", sov_last_error());
        return NULL;
    }
    for (int i = 0; i < w->attempts;) {
        enum { MAX_BATCH = 8 };
        store_reserve_req q[MAX_BATCH];
        store_reserve_res res[MAX_BATCH];
        sov_status st[MAX_BATCH];
        const int n = w->batch > 1 ? SOV_MIN(SOV_MIN(w->batch, MAX_BATCH), w->attempts - i) : 1;
        for (int j = 0; j < n; j++)
            q[j] = w->req;
        if (n == 1)
            st[0] = store_reserve(s, &q[0], &res[0]);
        else
            store_reserve_batch(s, q, res, st, (size_t)n);
        for (int j = 0; j < n; j++) {
            if (st[j] != SOV_OK) {
                if (!w->errors++) snprintf(w->error, sizeof w->error, "%s", sov_last_error());
            } else if (res[j].refused == STORE_LIMIT_NONE) {
                w->reserved++;
            } else {
                w->refused++;
            }
        }
        i += n;
    }
    store_close(s);
    return NULL;
}

/* 8 threads, each with its own handle (as 8 processes would), race for one key's limit. */
static void race(backend *b, int64_t rpm, int64_t tpd, int64_t tokens, int attempts, int want) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    const store_key k = make_key("race", rpm, 0, tpd);
    const int64_t id = add_key(s, &k);
    pthread_t th[8];
    worker w[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (worker){
            .name = t.name, .attempts = attempts, .batch = i % 2 ? 1 + i % 5 : 1}; /* half in batches */
        w[i].req = (store_reserve_req){.key_id = id, .rpm = rpm, .tpd = tpd, .tokens = tokens, .now = T0 + 7};
        CHECK(pthread_create(&th[i], NULL, reserve_worker, &w[i]) == 0);
    }
    int reserved = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        CHECK_MSG(w[i].errors == 0, "worker %d: %d errors: %s", i, w[i].errors, w[i].error);
        CHECK_EQ(w[i].reserved + w[i].refused + w[i].errors, attempts);
        reserved += w[i].reserved;
    }
    CHECK_EQ(reserved, want);
    store_reserve_res res;
    CHECK_OK(store_windows(s, id, T0 + 7, &res));
    CHECK_EQ(res.minute_requests, want);
    CHECK_EQ(res.day_tokens, (int64_t)want * tokens);
    store_close(s);
    dispose(b, &t);
}

static void store_reserve_is_exact_under_concurrency_tpd(backend *b) { race(b, 0, 1000, 7, 30, 1000 / 7); }
static void store_reserve_is_exact_under_concurrency_rpm(backend *b) { race(b, 100, 0, 3, 20, 100); }

typedef struct mixer {
    const char *name; /* store to open */
    int64_t keys[2];  /* the two keys every thread uses */
    int rounds;
    int64_t reserved[2]; /* reservations made per key */
    int errors;
    char error[256]; /* the first error */
} mixer;

/* Reserves 10 tokens on alternating keys and minutes, and settles every four at 4 tokens
 * used, the batch given in reverse order (the store sorts it). */
static void *mix_worker(void *arg) {
    mixer *m = arg;
    store *s = NULL;
    const store_open_params p = {.busy_timeout_ms = 30000};
    if (store_open(m->name, &p, &s) != SOV_OK) {
        m->errors = 1;
        snprintf(m->error, sizeof m->error, "%s", sov_last_error());
        return NULL;
    }
    store_settle batch[4];
    for (int i = 0; i < m->rounds; i++) {
        const int which = i % 2;
        const store_reserve_req req = {.key_id = m->keys[which], .tokens = 10, .now = T0 + (i % 3) * 60};
        store_reserve_res res;
        sov_status st = store_reserve(s, &req, &res);
        if (st == SOV_OK) {
            m->reserved[which]++;
            batch[3 - i % 4] = (store_settle){.key_id = req.key_id,
                                              .minute_start = res.minute_start,
                                              .day_start = res.day_start,
                                              .reserved = 10,
                                              .used = 4,
                                              .at = req.now,
                                              .requests = 1,
                                              .prompt_tokens = 4};
        }
        if (st == SOV_OK && i % 4 == 3) st = store_settle_batch(s, batch, 4);
        if (st != SOV_OK && !m->errors++) snprintf(m->error, sizeof m->error, "%s", sov_last_error());
    }
    store_close(s);
    return NULL;
}

/* Reservations and settle batches of 4 threads over two keys and three minutes: no
 * deadlock, no lost update. */
static void store_reserve_and_settle_race_without_deadlock(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    const store_key k = make_key("mix", 0, 0, 0);
    const int64_t keys[2] = {add_key(s, &k), add_key(s, &k)};
    pthread_t th[4];
    mixer m[4];
    for (int i = 0; i < 4; i++) {
        m[i] = (mixer){.name = t.name, .keys = {keys[0], keys[1]}, .rounds = 24};
        CHECK(pthread_create(&th[i], NULL, mix_worker, &m[i]) == 0);
    }
    int64_t reserved[2] = {0, 0};
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_MSG(m[i].errors == 0, "worker %d: %d errors: %s", i, m[i].errors, m[i].error);
        reserved[0] += m[i].reserved[0];
        reserved[1] += m[i].reserved[1];
    }
    for (int j = 0; j < 2; j++) {
        CHECK_EQ(reserved[j], 4 * 12);
        store_reserve_res w;
        CHECK_OK(store_windows(s, keys[j], T0, &w));
        CHECK_EQ(w.day_tokens, reserved[j] * 4); /* every reservation settled at 4 */
    }
    store_usage_row *u = NULL;
    size_t n = 0;
    CHECK_OK(store_usage(s, 0, &u, &n));
    CHECK_EQ(n, 2);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(u[i].requests, 48);
    free(u);
    store_close(s);
    dispose(b, &t);
}

/* A batch decides every request as it would be decided alone, in key then array order,
 * and a bad request (unknown key, negative tokens) fails alone. */
static void store_reserve_batch_decides_each_like_alone(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    const store_key ka = make_key("batch-a", 0, 0, 100), kb = make_key("batch-b", 2, 0, 0);
    const int64_t a = add_key(s, &ka), bk = add_key(s, &kb);
    const store_reserve_req q[] = {
        {.key_id = a, .tpd = 100, .tokens = 40, .now = T0 + 5}, /* reserved */
        {.key_id = bk, .rpm = 2, .tokens = 1, .now = T0 + 5},   /* reserved */
        {.key_id = a, .tpd = 100, .tokens = 40, .now = T0 + 5}, /* reserved: 80 */
        {.key_id = 999999, .tokens = 1, .now = T0 + 5},         /* no such key */
        {.key_id = bk, .rpm = 2, .tokens = 1, .now = T0 + 5},   /* reserved: 2 requests */
        {.key_id = a, .tpd = 100, .tokens = 40, .now = T0 + 5}, /* refused by tpd */
        {.key_id = bk, .rpm = 2, .tokens = 1, .now = T0 + 5},   /* refused by rpm */
        {.key_id = a, .tpd = 100, .tokens = -1, .now = T0 + 5}, /* bad */
        {.key_id = a, .tpd = 100, .tokens = 20, .now = T0 + 5}, /* reserved: 100 */
    };
    enum { N = sizeof q / sizeof q[0] };
    store_reserve_res res[N];
    sov_status st[N];
    CHECK_OK(store_reserve_batch(s, q, res, st, N));
    const sov_status want_st[N] = {SOV_OK, SOV_OK,      SOV_OK, SOV_ERR_NOT_FOUND, SOV_OK, SOV_OK,
                                   SOV_OK, SOV_ERR_ARG, SOV_OK};
    const store_limit want_ref[N] = {STORE_LIMIT_NONE, STORE_LIMIT_NONE, STORE_LIMIT_NONE, 0,
                                     STORE_LIMIT_NONE, STORE_LIMIT_TPD,  STORE_LIMIT_RPM,  0,
                                     STORE_LIMIT_NONE};
    for (int i = 0; i < N; i++) {
        CHECK_MSG(st[i] == want_st[i], "request %d: status %d, want %d", i, st[i], want_st[i]);
        if (st[i] == SOV_OK)
            CHECK_MSG(res[i].refused == want_ref[i], "request %d: refused %d", i, res[i].refused);
    }
    CHECK_EQ(res[8].day_tokens, 100);
    CHECK_EQ(res[6].minute_requests, 2);
    store_reserve_res w;
    CHECK_OK(store_windows(s, a, T0 + 5, &w));
    CHECK_EQ(w.day_tokens, 100);
    CHECK_EQ(w.minute_requests, 3);
    CHECK_OK(store_windows(s, bk, T0 + 5, &w));
    CHECK_EQ(w.minute_requests, 2);
    /* a batch of good requests only: one transaction, the same answers */
    const store_reserve_req q2[] = {{.key_id = bk, .rpm = 2, .tokens = 1, .now = T0 + 65},
                                    {.key_id = bk, .rpm = 2, .tokens = 1, .now = T0 + 65},
                                    {.key_id = bk, .rpm = 2, .tokens = 1, .now = T0 + 65}};
    CHECK_OK(store_reserve_batch(s, q2, res, st, 3));
    CHECK(st[0] == SOV_OK && st[1] == SOV_OK && st[2] == SOV_OK);
    CHECK(res[0].refused == STORE_LIMIT_NONE && res[1].refused == STORE_LIMIT_NONE &&
          res[2].refused == STORE_LIMIT_RPM);
    /* an unknown key inside an otherwise good batch: the transaction is undone and each
     * decided alone */
    const store_reserve_req q3[] = {{.key_id = bk, .rpm = 2, .tokens = 1, .now = T0 + 125},
                                    {.key_id = 999999, .tokens = 1, .now = T0 + 125},
                                    {.key_id = bk, .rpm = 2, .tokens = 1, .now = T0 + 125}};
    CHECK_OK(store_reserve_batch(s, q3, res, st, 3));
    CHECK(st[0] == SOV_OK && st[1] == SOV_ERR_NOT_FOUND && st[2] == SOV_OK);
    CHECK_OK(store_windows(s, bk, T0 + 125, &w));
    CHECK_EQ(w.minute_requests, 2); /* counted once each, not twice */
    store_close(s);
    dispose(b, &t);
}

static void store_reserve_speed(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    const store_key k = make_key("speed", 0, 0, 0);
    const int64_t id = add_key(s, &k);
    reserve(s, id, &k, 1, T0); /* statements prepared, windows made */
    const int n = 500;
    const uint64_t t0 = sov_now_ns();
    for (int i = 0; i < n; i++)
        reserve(s, id, &k, 1, T0 + 1);
    const double us = (double)(sov_now_ns() - t0) / n / 1000.0;
    fprintf(stderr, "%s reserve: %.0f us\n", b->label, us);
    store_close(s);
    dispose(b, &t);
}

/* ---- SQLite faults ---- */

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, n, f) == n);
    if (f) fclose(f);
}

static void sqlite_refuses_damaged_and_foreign_files(backend *b) {
    tstore t;
    store *s = NULL;
    fresh(b, &t);
    uint8_t junk[8192];
    test_rng rng = {0x5eed};
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)test_rng_next(&rng);
    write_file(t.name, junk, sizeof junk);
    CHECK_ERR(store_open(t.name, NULL, &s), SOV_ERR_FORMAT,
              "is not a sov state database (file is not a database)");
    CHECK(s == NULL);
    write_file(t.name, "hello, world\n", 13);
    CHECK_ERR(store_open(t.name, NULL, &s), SOV_ERR_FORMAT, "not a database");
    dispose(b, &t);

    /* a real store, truncated in the middle of a page */
    fresh(b, &t);
    s = open_ok(&t);
    if (!s) return;
    for (int i = 0; i < 300; i++) {
        store_key k = make_key("tenant-with-a-longer-name", i, i, i);
        snprintf(k.tenant, sizeof k.tenant, "tenant-%04d-with-a-longer-name", i);
        add_key(s, &k);
    }
    store_close(s);
    struct stat st;
    CHECK(stat(t.name, &st) == 0 && st.st_size > 4 * 4096);
    CHECK(truncate(t.name, st.st_size / 2 + 1000) == 0);
    s = NULL;
    sov_status status = store_open(t.name, NULL, &s);
    if (status == SOV_OK) { /* SQLite may find the damage only where it reads */
        store_key *keys = NULL;
        size_t n = 0;
        status = store_keys(s, &keys, &n);
        free(keys);
        store_close(s);
    }
    CHECK_ERR(status, SOV_ERR_FORMAT, "corrupted");
    dispose(b, &t);

    /* someone else's database: refused, and left as it was */
    fresh(b, &t);
    CHECK(raw_exec(b, &t, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"));
    CHECK_ERR(store_open(t.name, NULL, &s), SOV_ERR_FORMAT, "is a SQLite database but not sov's");
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    CHECK(sqlite3_open(t.name, &db) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &q, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0) == 1);
    sqlite3_finalize(q);
    sqlite3_close(db);
    dispose(b, &t);
}

/* In a child that cannot write the file (as nobody when we are root, since root ignores
 * permissions): a writable open fails naming read-only, a read-only open reads. Returns
 * the child's failures as its exit status. */
static int read_only_child(const char *path) {
    if (getuid() == 0 && (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)) {
        fprintf(stderr, "cannot become nobody: %s\n", strerror(errno));
        return 1;
    }
    int bad = 0;
    store *s = NULL;
    sov_status st = store_open(path, NULL, &s);
    if (st != SOV_ERR_IO || !strstr(sov_last_error(), "read-only") || !strstr(sov_last_error(), path)) {
        fprintf(stderr, "writable open: %s: %s\n", sov_strerror(st), sov_last_error());
        bad |= 2;
    }
    const store_open_params ro = {.read_only = true};
    st = store_open(path, &ro, &s);
    if (st != SOV_OK) {
        fprintf(stderr, "read-only open: %s\n", sov_last_error());
        return bad | 4;
    }
    store_key *keys = NULL;
    size_t n = 0;
    if (store_keys(s, &keys, &n) != SOV_OK || n != 1 || strcmp(keys[0].tenant, "acme") != 0) {
        fprintf(stderr, "read-only keys: %zu: %s\n", n, sov_last_error());
        bad |= 8;
    }
    free(keys);
    const store_key k = make_key("acme", 0, 0, 0);
    int64_t id;
    if (store_key_add(s, &k, &id) != SOV_ERR_IO || !strstr(sov_last_error(), "read-only")) {
        fprintf(stderr, "read-only add: %s\n", sov_last_error());
        bad |= 16;
    }
    store_close(s);
    return bad;
}

static void sqlite_read_only_file(backend *b) {
    char dir[] = "/tmp/sov-ro.XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    CHECK(chmod(dir, 0755) == 0); /* nobody may enter, not write */
    snprintf(path, sizeof path, "%s/state.db", dir);
    tstore t = {0};
    snprintf(t.name, sizeof t.name, "%s", path);
    store *s = open_ok(&t);
    if (!s) return;
    const store_key k = make_key("acme", 0, 0, 0);
    add_key(s, &k);
    store_close(s);
    CHECK(chmod(path, 0444) == 0);
    if (getuid() != 0) CHECK(chmod(dir, 0555) == 0);
    fflush(NULL);
    const pid_t pid = fork();
    if (pid == 0) _exit(read_only_child(path));
    int ws = 0;
    CHECK(pid > 0 && waitpid(pid, &ws, 0) == pid);
    CHECK_MSG(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "read-only child failed: %d",
              WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
    chmod(dir, 0755);
    sqlite_remove(path);
    CHECK(rmdir(dir) == 0);
    (void)b;
}

static void sqlite_waits_for_a_lock_then_says_locked(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    const store_key k = make_key("acme", 0, 0, 0);
    const int64_t id = add_key(s, &k);
    store_close(s);
    sqlite3 *other = NULL;
    CHECK(sqlite3_open(t.name, &other) == SQLITE_OK);
    CHECK(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL) == SQLITE_OK);
    const store_open_params p = {.busy_timeout_ms = 200};
    CHECK_OK(store_open(t.name, &p, &s)); /* WAL: reading goes on beside a writer */
    if (s) {
        const uint64_t t0 = sov_now_ns();
        int64_t id2;
        CHECK_ERR(store_key_add(s, &k, &id2), SOV_ERR_IO, "is locked by another process (waited 200 ms)");
        const double waited = (double)(sov_now_ns() - t0) * 1e-9;
        CHECK_MSG(waited >= 0.15 && waited < 5, "waited %.3f s", waited);
        store_reserve_res r;
        const store_reserve_req req = {.key_id = id, .tokens = 1, .now = T0};
        CHECK_ERR(store_reserve(s, &req, &r), SOV_ERR_IO, "locked");
        CHECK(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
        CHECK_OK(store_reserve(s, &req, &r));
        CHECK_OK(store_key_add(s, &k, &id2));
        store_close(s);
    }
    sqlite3_close(other);
    dispose(b, &t);

    /* a new file another process holds exclusively (rollback journal): even opening waits */
    fresh(b, &t);
    CHECK(sqlite3_open(t.name, &other) == SQLITE_OK);
    CHECK(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL) == SQLITE_OK);
    s = NULL;
    CHECK_ERR(store_open(t.name, &p, &s), SOV_ERR_IO, "locked");
    CHECK(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(other);
    s = open_ok(&t);
    store_close(s);
    dispose(b, &t);
}

/* ---- PostgreSQL faults ---- */

static void postgres_down_at_open_fails_fast(backend *b) {
    char url[256];
    snprintf(url, sizeof url, "postgresql:///sov?host=/tmp/sov-no-server-%d&port=5432&user=postgres",
             (int)getpid());
    store *s = NULL;
    const uint64_t t0 = sov_now_ns();
    CHECK_ERR(store_open(url, NULL, &s), SOV_ERR_IO, "cannot connect");
    const double took = (double)(sov_now_ns() - t0) * 1e-9;
    CHECK_MSG(took < 5, "took %.1f s", took);
    CHECK(s == NULL);
    CHECK(strchr(sov_last_error(), '\n') == NULL);
    (void)b;
}

/* Terminates the backends serving database db (the store's), as a restart would. */
static int terminate_backends(backend *b, const char *db) {
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = '%s' "
             "AND pid <> pg_backend_pid()",
             db);
    PGresult *res = PQexec(b->admin, sql);
    const int n = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : -1;
    if (n < 0) fprintf(stderr, "terminate: %s", PQerrorMessage(b->admin));
    PQclear(res);
    return n;
}

static void postgres_reconnects_after_losing_its_backend(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    const store_key k = make_key("acme", 0, 0, 0);
    const int64_t id = add_key(s, &k);
    reserve(s, id, &k, 1, T0);
    CHECK_EQ(terminate_backends(b, t.db), 1);
    store_key *keys = NULL;
    size_t n = 0;
    CHECK_ERR(store_keys(s, &keys, &n), SOV_ERR_IO, "connection");
    CHECK(strchr(sov_last_error(), '\n') == NULL);
    CHECK_OK(store_keys(s, &keys, &n)); /* reconnected */
    CHECK_EQ(n, 1);
    free(keys);
    store_reserve_res r = reserve(s, id, &k, 1, T0); /* statements prepared again */
    CHECK_EQ(r.minute_requests, 2);
    CHECK_EQ(terminate_backends(b, t.db), 1); /* lost in the middle of a reservation */
    const store_reserve_req req = {.key_id = id, .tokens = 1, .now = T0};
    CHECK_ERR(store_reserve(s, &req, &r), SOV_ERR_IO, "connection");
    CHECK_OK(store_reserve(s, &req, &r));
    CHECK_EQ(r.minute_requests, 3);
    store_close(s);
    dispose(b, &t);
}

static void postgres_waits_for_a_row_lock_then_says_locked(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = NULL;
    const store_open_params p = {.busy_timeout_ms = 200};
    CHECK_OK(store_open(t.name, &p, &s));
    if (!s) return;
    const store_key k = make_key("acme", 0, 0, 0);
    const int64_t id = add_key(s, &k);
    reserve(s, id, &k, 1, T0);
    PGconn *other = PQconnectdb(t.name);
    PGresult *res = PQexec(other, "BEGIN; SELECT * FROM rate_windows FOR UPDATE");
    CHECK(PQresultStatus(res) == PGRES_TUPLES_OK);
    PQclear(res);
    const store_reserve_req req = {.key_id = id, .tokens = 1, .now = T0};
    store_reserve_res r;
    const uint64_t t0 = sov_now_ns();
    CHECK_ERR(store_reserve(s, &req, &r), SOV_ERR_IO, "locked by another session (waited 200 ms)");
    const double waited = (double)(sov_now_ns() - t0) * 1e-9;
    CHECK_MSG(waited >= 0.15 && waited < 5, "waited %.3f s", waited);
    res = PQexec(other, "COMMIT");
    PQclear(res);
    PQfinish(other);
    CHECK_OK(store_reserve(s, &req, &r));
    CHECK_EQ(r.minute_requests, 2);
    store_close(s);
    dispose(b, &t);
}

/* ---- main ---- */

static void run_common(backend *b) {
    RUN_ON(store_migrates_from_empty_and_reopens, b);
    RUN_ON(store_refuses_a_newer_schema_and_unmigrated_read_only, b);
    RUN_ON(store_migrates_once_under_concurrent_opens, b);
    RUN_ON(store_adds_lists_and_revokes_keys, b);
    RUN_ON(store_validates_keys_and_binds_every_value, b);
    RUN_ON(store_sets_tenant_weights, b);
    RUN_ON(store_reserve_counts_requests_per_minute, b);
    RUN_ON(store_reserve_counts_tokens_per_minute, b);
    RUN_ON(store_reserve_is_all_or_nothing_per_day, b);
    RUN_ON(store_settle_corrects_windows_and_records_usage, b);
    RUN_ON(store_usage_groups_by_tenant_and_key_since_an_hour, b);
    RUN_ON(store_gc_drops_old_windows, b);
    RUN_ON(store_reserve_is_exact_under_concurrency_tpd, b);
    RUN_ON(store_reserve_is_exact_under_concurrency_rpm, b);
    RUN_ON(store_reserve_and_settle_race_without_deadlock, b);
    RUN_ON(store_reserve_batch_decides_each_like_alone, b);
    RUN_ON(store_reserve_speed, b);
}

static void quiet(void *arg, const char *message) {
    (void)arg;
    (void)message; /* "database ... does not exist, skipping" */
}

/* Connects to the fixture's cluster; false (after a failed check) when there is none. */
static bool postgres_setup(backend *b) {
    const char *file = getenv("SOV_PG_URL_FILE");
    char url[600] = "";
    FILE *f = file ? fopen(file, "r") : NULL;
    if (f) {
        if (!fgets(url, sizeof url, f)) url[0] = '\0';
        fclose(f);
        url[strcspn(url, "\r\n")] = '\0';
    }
    CHECK_MSG(url[0],
              "no PostgreSQL URL in SOV_PG_URL_FILE=%s: run through ctest, whose fixture store/pg_start "
              "starts a cluster (tests/store/pgctl.sh start DIR)",
              file ? file : "(unset)");
    if (!url[0]) return false;
    b->admin = PQconnectdb(url);
    PQsetNoticeProcessor(b->admin, quiet, NULL);
    CHECK_MSG(PQstatus(b->admin) == CONNECTION_OK, "cannot reach the test cluster at %s: %s", url,
              PQerrorMessage(b->admin));
    if (PQstatus(b->admin) != CONNECTION_OK) return false;
    PQconninfoOption *opts = PQconninfoParse(url, NULL);
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!o->val) continue;
        if (strcmp(o->keyword, "host") == 0) snprintf(b->host, sizeof b->host, "%s", o->val);
        if (strcmp(o->keyword, "port") == 0) snprintf(b->port, sizeof b->port, "%s", o->val);
        if (strcmp(o->keyword, "user") == 0) snprintf(b->user, sizeof b->user, "%s", o->val);
    }
    PQconninfoFree(opts);
    if (!b->port[0]) snprintf(b->port, sizeof b->port, "5432");
    if (!b->user[0]) snprintf(b->user, sizeof b->user, "postgres");
    return true;
}

int main(void) {
    backend sq = {.label = "sqlite", .kind = STORE_SQLITE};
    run_common(&sq);
    RUN_ON(sqlite_refuses_damaged_and_foreign_files, &sq);
    RUN_ON(sqlite_read_only_file, &sq);
    RUN_ON(sqlite_waits_for_a_lock_then_says_locked, &sq);

    backend pg = {.label = "postgresql", .kind = STORE_POSTGRES};
    if (postgres_setup(&pg)) {
        run_common(&pg);
        RUN_ON(postgres_down_at_open_fails_fast, &pg);
        RUN_ON(postgres_reconnects_after_losing_its_backend, &pg);
        RUN_ON(postgres_waits_for_a_row_lock_then_says_locked, &pg);
    }
    PQfinish(pg.admin);
    TEST_EXIT();
}
