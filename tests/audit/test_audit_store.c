/* test_audit_store.c - the audit log in the state store (src/store/store_audit.c), the same
 * specification on SQLite and on PostgreSQL (SOV_NEEDS_POSTGRES: CTest starts the
 * throw-away cluster of tests/store/pgctl.sh first and gives its URL in SOV_PG_URL_FILE;
 * without it this test fails, it never skips): records get consecutive numbers and links
 * in one transaction per batch, read back field for field, signed heads are kept, text is
 * deleted when it expires while the chain still verifies, rows changed behind the store's
 * back are read as what they are (marked when no sov could have written them), and four
 * connections appending at once build ONE chain that verifies. */
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <unistd.h>

#include "store/store.h"
#include "test.h"

#define RUN_ON(fn, b)                                                                                        \
    do {                                                                                                     \
        int before_ = test_failures_;                                                                        \
        fn(b);                                                                                               \
        fprintf(stderr, "%s %s %s\n", test_failures_ == before_ ? "ok  " : "FAIL", (b)->label, #fn);         \
    } while (0)

#define CHECK_OK(status)                                                                                     \
    do {                                                                                                     \
        sov_status st_ = (status);                                                                           \
        CHECK_MSG(st_ == SOV_OK, "%s: %s", sov_strerror(st_), sov_last_error());                             \
    } while (0)

typedef struct backend {
    const char *label;
    store_kind kind;
    PGconn *admin;
    char base[600]; /* PostgreSQL: the fixture's URL */
    int made;
} backend;

typedef struct tstore {
    char name[800];
    char db[64];
} tstore;

static void quiet(void *arg, const char *message) {
    (void)arg;
    (void)message;
}

static bool pg_admin(const backend *b, const char *sql) {
    PGresult *res = PQexec(b->admin, sql);
    const bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok) fprintf(stderr, "postgresql: %s: %s", sql, PQerrorMessage(b->admin));
    PQclear(res);
    return ok;
}

static void sqlite_remove(const char *path) {
    char side[900];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

static void fresh(backend *b, tstore *t) {
    memset(t, 0, sizeof *t);
    const int n = ++b->made;
    if (b->kind == STORE_SQLITE) {
        char file[64];
        snprintf(file, sizeof file, "audit_store_%d_%d.db", (int)getpid(), n);
        test_tmp_path(file, t->name, sizeof t->name);
        sqlite_remove(t->name);
        return;
    }
    char sql[160];
    snprintf(t->db, sizeof t->db, "sov_audit_%d_%d", (int)getpid(), n);
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", t->db);
    pg_admin(b, sql);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", t->db);
    CHECK(pg_admin(b, sql));
    /* the fixture's URL with our database in place of "postgres" */
    const char *q = strchr(b->base, '?');
    snprintf(t->name, sizeof t->name, "postgresql:///%s%s", t->db, q ? q : "");
}

static void dispose(backend *b, const tstore *t) {
    if (b->kind == STORE_SQLITE) {
        sqlite_remove(t->name);
        return;
    }
    char sql[160];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", t->db);
    CHECK(pg_admin(b, sql));
}

/* SQL behind the store's back (an insider with the database's credentials). */
static bool raw(const backend *b, const tstore *t, const char *sql) {
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
    const bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok) fprintf(stderr, "postgresql: %s: %s", sql, PQerrorMessage(c));
    PQclear(res);
    PQfinish(c);
    return ok;
}

static store *open_ok(const tstore *t) {
    store *s = NULL;
    const store_open_params p = {.durable = true};
    const sov_status st = store_open(t->name, &p, &s);
    CHECK_MSG(st == SOV_OK, "store_open(%s): %s", t->name, sov_last_error());
    return s;
}

static void record(store_audit_entry *e, int i, const char *tenant) {
    memset(e, 0, sizeof *e);
    audit_record *r = &e->rec;
    r->version = AUDIT_VERSION;
    r->time_ms = 1700000000000 + i * 1000;
    snprintf(r->node, sizeof r->node, "0123456789abcdef");
    snprintf(r->tenant, sizeof r->tenant, "%s", tenant);
    r->key_id = i % 4;
    snprintf(r->model, sizeof r->model, "stories260K");
    audit_sha256_hex("m", 1, r->model_sha256);
    snprintf(r->endpoint, sizeof r->endpoint, "/v1/completions");
    r->status = 200;
    r->prompt_tokens = i;
    r->completion_tokens = 2 * i;
    r->cached_tokens = i / 2;
    r->latency_ms = 10 + i;
    snprintf(r->finish_reason, sizeof r->finish_reason, "stop");
    snprintf(r->client, sizeof r->client, "::1");
    snprintf(r->response_id, sizeof r->response_id, "cmpl-%d", i);
    snprintf(r->region, sizeof r->region, "x'); DROP TABLE audit_records; --");
    r->retention = POLICY_RETAIN_HASHES;
    audit_sha256_hex("p", 1, r->prompt_sha256);
    audit_sha256_hex("c", 1, r->completion_sha256);
    r->energy_uj = 1000 * (int64_t)i + 1; /* read back field for field below */
    snprintf(r->energy_source, sizeof r->energy_source, i % 2 ? "rapl" : "estimated");
}

/* Walks the whole stored chain; the report. */
static audit_report verify_all(store *s, const audit_pub *keys, size_t n_keys) {
    audit_head *heads = NULL;
    size_t n_heads = 0;
    audit_claim claim = {.known = true};
    CHECK_OK(store_audit_heads(s, 0, &heads, &n_heads));
    CHECK_OK(store_audit_chain(s, &claim.seq, claim.hash));
    const uint8_t zero[AUDIT_HASH_BYTES] = {0};
    audit_verifier *v = audit_verifier_new(zero, 0, heads, n_heads, keys, n_keys);
    for (int64_t from = 1;;) {
        store_audit_row *rows = NULL;
        size_t n = 0;
        CHECK_OK(store_audit_read(s, from, 97, &rows, &n));
        for (size_t i = 0; i < n; i++) {
            audit_link l;
            store_audit_row_link(&rows[i], &l);
            audit_verifier_push(v, &l);
        }
        if (n) from = rows[n - 1].rec.seq + 1;
        store_audit_rows_free(rows, n);
        if (n < 97) break;
    }
    audit_report r;
    audit_verifier_finish(v, &claim, &r);
    free(heads);
    return r;
}

/* ---- behaviours ---- */

static void appends_number_link_and_read_back(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    CHECK_EQ(store_version(s), store_schema_version());
    int64_t seq = -1;
    uint8_t hash[AUDIT_HASH_BYTES], zero[AUDIT_HASH_BYTES] = {0};
    CHECK_OK(store_audit_chain(s, &seq, hash));
    CHECK(seq == 0 && memcmp(hash, zero, sizeof hash) == 0);
    store_audit_entry e[3];
    for (int i = 0; i < 3; i++)
        record(&e[i], i, i == 1 ? "한국 tenant" : "acme");
    CHECK_OK(store_audit_append(s, e, 3));
    CHECK(e[0].rec.seq == 1 && e[1].rec.seq == 2 && e[2].rec.seq == 3);
    CHECK(memcmp(e[0].rec.prev, zero, sizeof zero) == 0);
    CHECK(memcmp(e[1].rec.prev, e[0].rec.hash, AUDIT_HASH_BYTES) == 0);
    CHECK(memcmp(e[2].rec.prev, e[1].rec.hash, AUDIT_HASH_BYTES) == 0);
    CHECK_OK(store_audit_chain(s, &seq, hash));
    CHECK(seq == 3 && memcmp(hash, e[2].rec.hash, sizeof hash) == 0);
    store_audit_entry more;
    record(&more, 3, "acme");
    CHECK_OK(store_audit_append(s, &more, 1));
    CHECK(more.rec.seq == 4 && memcmp(more.rec.prev, e[2].rec.hash, AUDIT_HASH_BYTES) == 0);
    store_audit_row *rows = NULL;
    size_t n = 0;
    CHECK_OK(store_audit_read(s, 2, 2, &rows, &n));
    CHECK_EQ(n, 2);
    if (n == 2) {
        CHECK(rows[0].valid && rows[1].valid);
        CHECK(memcmp(&rows[0].rec, &e[1].rec, sizeof rows[0].rec) == 0);
        CHECK(memcmp(&rows[1].rec, &e[2].rec, sizeof rows[1].rec) == 0);
        CHECK(!rows[0].prompt_text && !rows[0].completion_text && rows[0].text_expires == 0);
    }
    store_audit_rows_free(rows, n);
    int64_t first = 0;
    CHECK_OK(store_audit_first_since(s, 1700000001500, &first));
    CHECK_EQ(first, 3);
    CHECK_OK(store_audit_first_since(s, 1800000000000, &first));
    CHECK_EQ(first, 0);
    const audit_report r = verify_all(s, NULL, 0);
    CHECK_MSG(r.n_problems == 0 && r.last_seq == 4, "%s", r.first.detail);
    store_close(s);
    dispose(b, &t);
}

/* A store written by a sov before energy accounting (schema 3, records of encoding 1) is
 * migrated at open, and its old records verify in one chain with the new ones. */
static void old_records_verify_after_the_energy_migration(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    store_audit_entry e[4];
    for (int i = 0; i < 4; i++)
        record(&e[i], i, "acme");
    for (int i = 0; i < 2; i++) { /* what the old sov wrote */
        e[i].rec.version = 1;
        e[i].rec.energy_uj = 0;
        e[i].rec.energy_source[0] = '\0';
    }
    CHECK_OK(store_audit_append(s, e, 2));
    store_close(s);
    /* back to schema 3 as the old sov left it */
    CHECK(raw(b, &t, "ALTER TABLE audit_records DROP COLUMN energy_source"));
    CHECK(raw(b, &t, "ALTER TABLE audit_records DROP COLUMN energy_uj"));
    CHECK(raw(b, &t, "DELETE FROM sov_schema WHERE version = 4"));
    s = open_ok(&t);
    if (!s) return;
    CHECK_EQ(store_version(s), 4);
    CHECK_OK(store_audit_append(s, e + 2, 2));
    store_audit_row *rows = NULL;
    size_t n = 0;
    CHECK_OK(store_audit_read(s, 1, 10, &rows, &n));
    CHECK_EQ(n, 4);
    for (size_t i = 0; i < n && n == 4; i++) {
        CHECK(rows[i].valid);
        CHECK_EQ(rows[i].rec.version, i < 2 ? 1 : 2);
        CHECK_EQ(rows[i].rec.energy_uj, i < 2 ? 0 : 1000 * (int64_t)i + 1);
        CHECK_STREQ(rows[i].rec.energy_source, i < 2 ? "" : i % 2 ? "rapl" : "estimated");
    }
    store_audit_rows_free(rows, n);
    const audit_report r = verify_all(s, NULL, 0);
    CHECK_MSG(r.n_problems == 0 && r.last_seq == 4, "%s", r.first.detail);
    /* an edit of a new record's energy is caught */
    store_close(s);
    CHECK(raw(b, &t, "UPDATE audit_records SET energy_uj = 5 WHERE seq = 3"));
    s = open_ok(&t);
    if (!s) return;
    const audit_report r2 = verify_all(s, NULL, 0);
    CHECK_MSG(r2.n_problems > 0 && r2.first.kind == AUDIT_EDITED && r2.first.seq == 3, "%s", r2.first.detail);
    store_close(s);
    dispose(b, &t);
}

static void heads_are_kept_in_order(backend *b, audit_key *key, const audit_pub *pub) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    store_audit_entry e[5];
    for (int i = 0; i < 5; i++)
        record(&e[i], i, "acme");
    CHECK_OK(store_audit_append(s, e, 5));
    int64_t through = -1;
    CHECK_OK(store_audit_signed_through(s, &through));
    CHECK_EQ(through, 0);
    audit_head h2, h5;
    CHECK_OK(audit_head_sign(key, 5, e[4].rec.hash, 1700000005000, &h5));
    CHECK_OK(audit_head_sign(key, 2, e[1].rec.hash, 1700000002000, &h2));
    CHECK_OK(store_audit_add_head(s, &h5));
    CHECK_OK(store_audit_add_head(s, &h2));
    CHECK_OK(store_audit_signed_through(s, &through));
    CHECK_EQ(through, 5);
    audit_head *heads = NULL;
    size_t n = 0;
    CHECK_OK(store_audit_heads(s, 0, &heads, &n));
    CHECK(n == 2 && memcmp(&heads[0], &h2, sizeof h2) == 0 && memcmp(&heads[1], &h5, sizeof h5) == 0);
    free(heads);
    CHECK_OK(store_audit_heads(s, 3, &heads, &n));
    CHECK(n == 1 && heads[0].seq == 5);
    free(heads);
    audit_report r = verify_all(s, pub, 1);
    CHECK_MSG(r.n_problems == 0 && r.heads_matched == 2 && r.signed_through == 5, "%s", r.first.detail);
    /* the tail deleted behind the store's back, the chain row left as it was */
    CHECK(raw(b, &t, "DELETE FROM audit_records WHERE seq >= 4"));
    r = verify_all(s, pub, 1);
    CHECK_MSG(r.n_problems > 0 && r.first.kind == AUDIT_TRUNCATED && r.first.seq == 4, "%s", r.first.detail);
    store_close(s);
    dispose(b, &t);
}

static void expired_text_is_deleted_and_the_chain_holds(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    store_audit_entry e[3];
    const char *prompts[] = {"Once upon a time", "안녕하세요, it's \"quoted\"", "third"};
    for (int i = 0; i < 3; i++) {
        record(&e[i], i, "acme");
        e[i].rec.retention = POLICY_RETAIN_FULL;
        audit_sha256_hex(prompts[i], strlen(prompts[i]), e[i].rec.prompt_sha256);
        audit_sha256_hex("done", 4, e[i].rec.completion_sha256);
        e[i].prompt_text = prompts[i];
        e[i].completion_text = "done";
        e[i].text_expires = 1000 + 100 * i; /* 1000, 1100, 1200 */
    }
    CHECK_OK(store_audit_append(s, e, 3));
    store_audit_row *rows = NULL;
    size_t n = 0;
    CHECK_OK(store_audit_read(s, 1, 10, &rows, &n));
    CHECK(n == 3 && rows[1].prompt_text && strcmp(rows[1].prompt_text, prompts[1]) == 0);
    CHECK(n == 3 && rows[2].completion_text && strcmp(rows[2].completion_text, "done") == 0 &&
          rows[2].text_expires == 1200);
    store_audit_rows_free(rows, n);
    int64_t cleared = -1;
    CHECK_OK(store_audit_expire(s, 999, &cleared));
    CHECK_EQ(cleared, 0);
    CHECK_OK(store_audit_expire(s, 1100, &cleared));
    CHECK_EQ(cleared, 2);
    CHECK_OK(store_audit_read(s, 1, 10, &rows, &n));
    CHECK(n == 3 && !rows[0].prompt_text && !rows[0].completion_text && rows[0].text_expires == 0);
    CHECK(n == 3 && !rows[1].prompt_text && rows[2].prompt_text && strcmp(rows[2].prompt_text, "third") == 0);
    CHECK(n == 3 && strcmp(rows[0].rec.prompt_sha256, e[0].rec.prompt_sha256) == 0);
    store_audit_rows_free(rows, n);
    audit_report r = verify_all(s, NULL, 0);
    CHECK_MSG(r.n_problems == 0 && r.records == 3, "%s", r.first.detail);
    /* kept text edited behind the store's back */
    CHECK(raw(b, &t, "UPDATE audit_records SET prompt_text = 'fourth' WHERE seq = 3"));
    r = verify_all(s, NULL, 0);
    CHECK_MSG(r.n_problems == 1 && r.first.kind == AUDIT_EDITED && r.first.seq == 3, "%s", r.first.detail);
    store_close(s);
    dispose(b, &t);
}

static void malformed_rows_are_read_and_marked(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t);
    if (!s) return;
    store_audit_entry e[4];
    for (int i = 0; i < 4; i++)
        record(&e[i], i, "acme");
    CHECK_OK(store_audit_append(s, e, 4));
    char sql[300];
    snprintf(sql, sizeof sql, "UPDATE audit_records SET tenant = '%0100d' WHERE seq = 2", 7);
    CHECK(raw(b, &t, sql));
    CHECK(raw(b, &t, "UPDATE audit_records SET completion_sha256 = 'not hex' WHERE seq = 3"));
    CHECK(raw(b, &t, "UPDATE audit_records SET retention = 'forever' WHERE seq = 4"));
    store_audit_row *rows = NULL;
    size_t n = 0;
    CHECK_OK(store_audit_read(s, 1, 10, &rows, &n));
    CHECK(n == 4 && rows[0].valid && !rows[1].valid && strstr(rows[1].why, "tenant"));
    CHECK(n == 4 && rows[2].valid); /* read as it is: the hash check catches it */
    CHECK(n == 4 && !rows[3].valid && strstr(rows[3].why, "retention"));
    /* the links are still read, so the walk places them */
    CHECK(n == 4 && memcmp(rows[1].rec.hash, e[1].rec.hash, AUDIT_HASH_BYTES) == 0);
    store_audit_rows_free(rows, n);
    const audit_report r = verify_all(s, NULL, 0);
    CHECK_MSG(r.n_problems == 3 && r.first.kind == AUDIT_EDITED && r.first.seq == 2, "%zu: %s", r.n_problems,
              r.first.detail);
    store_close(s);
    dispose(b, &t);
}

typedef struct appender {
    const tstore *t;
    int id;
    int done;
} appender;

static void *append_worker(void *arg) {
    appender *a = arg;
    store *s = NULL;
    const store_open_params p = {.busy_timeout_ms = 20000};
    if (store_open(a->t->name, &p, &s) != SOV_OK) return NULL;
    for (int k = 0; k < 40; k++) {
        store_audit_entry e[3];
        char tenant[16];
        snprintf(tenant, sizeof tenant, "w%d", a->id);
        for (int i = 0; i < 3; i++)
            record(&e[i], a->id * 1000 + k * 3 + i, tenant);
        if (store_audit_append(s, e, 3) != SOV_OK) {
            fprintf(stderr, "appender %d: %s\n", a->id, sov_last_error());
            break;
        }
        a->done += 3;
    }
    store_close(s);
    return NULL;
}

static void concurrent_appenders_build_one_chain(backend *b) {
    tstore t;
    fresh(b, &t);
    store *s = open_ok(&t); /* migrates before the threads race */
    if (!s) return;
    pthread_t th[4];
    appender a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (appender){&t, i, 0};
        pthread_create(&th[i], NULL, append_worker, &a[i]);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += a[i].done;
    }
    CHECK_EQ(total, 480);
    const audit_report r = verify_all(s, NULL, 0);
    CHECK_MSG(r.n_problems == 0, "%s", r.first.detail);
    CHECK_EQ(r.records, 480);
    CHECK_EQ(r.last_seq, 480);
    store_close(s);
    dispose(b, &t);
}

static void run_all(backend *b, audit_key *key, const audit_pub *pub) {
    RUN_ON(appends_number_link_and_read_back, b);
    RUN_ON(old_records_verify_after_the_energy_migration, b);
    int before = test_failures_;
    heads_are_kept_in_order(b, key, pub);
    fprintf(stderr, "%s %s heads_are_kept_in_order\n", test_failures_ == before ? "ok  " : "FAIL", b->label);
    RUN_ON(expired_text_is_deleted_and_the_chain_holds, b);
    RUN_ON(malformed_rows_are_read_and_marked, b);
    RUN_ON(concurrent_appenders_build_one_chain, b);
}

static bool postgres_setup(backend *b) {
    const char *file = getenv("SOV_PG_URL_FILE");
    FILE *f = file ? fopen(file, "r") : NULL;
    if (f) {
        if (!fgets(b->base, sizeof b->base, f)) b->base[0] = '\0';
        fclose(f);
        b->base[strcspn(b->base, "\r\n")] = '\0';
    }
    CHECK_MSG(b->base[0],
              "no PostgreSQL URL in SOV_PG_URL_FILE=%s: run through ctest (fixture store/pg_start)",
              file ? file : "(unset)");
    if (!b->base[0]) return false;
    b->admin = PQconnectdb(b->base);
    PQsetNoticeProcessor(b->admin, quiet, NULL);
    CHECK_MSG(PQstatus(b->admin) == CONNECTION_OK, "cannot reach %s: %s", b->base, PQerrorMessage(b->admin));
    return PQstatus(b->admin) == CONNECTION_OK;
}

int main(void) {
    /* SOV_NEEDS_POSTGRES */
    char dir[512], path[700];
    test_tmp_path("audit_store_key", dir, sizeof dir);
    audit_key *key = NULL;
    CHECK(audit_key_open(dir, &key) == SOV_OK);
    snprintf(path, sizeof path, "%s/%s", dir, AUDIT_PUB_FILE);
    audit_pub pub;
    CHECK(audit_pub_load(path, &pub) == SOV_OK);
    if (!key) TEST_EXIT();
    backend sq = {.label = "sqlite", .kind = STORE_SQLITE};
    run_all(&sq, key, &pub);
    backend pg = {.label = "postgresql", .kind = STORE_POSTGRES};
    if (postgres_setup(&pg)) run_all(&pg, key, &pub);
    PQfinish(pg.admin);
    audit_key_free(key);
    TEST_EXIT();
}
