/* store_audit.c - the audit log in the state store (see store.h; docs/AUDIT.md).
 *
 * Appending is one transaction per batch: lock the chain's head row (SQLite: BEGIN
 * IMMEDIATE already holds the write lock; PostgreSQL: SELECT ... FOR UPDATE, so servers on
 * one database queue up here and build one chain), give each record the next number, link
 * it to the one before (src/audit/record.c computes the hash), insert it, and move the head
 * row to the last. The head row is the lock; the chain itself is in the records.
 *
 * Reading takes what is there and checks only that a row could be a record (lengths, hex):
 * whether it IS what was written is the verifier's job, so a row that fails these checks
 * is returned marked invalid, not refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "store/store_impl.h"

enum {
    COL_PROMPT_TEXT = 24,
    COL_COMPLETION_TEXT = 25,
    COL_TEXT_EXPIRES = 26,
    COL_ENERGY_UJ = 27,
    COL_ENERGY_SOURCE = 28,
    N_COLS = 29
};

/* ---- appending ---- */

static sov_status read_chain(store *s, size_t stmt, int64_t *seq, uint8_t hash[AUDIT_HASH_BYTES]) {
    const sov_status st = db_exec(s->db, stmt, NULL, 0, &s->rows);
    if (st != SOV_OK) return st;
    if (s->rows.n_rows != 1 || !audit_unhex(db_cell(&s->rows, 0, 1), hash, AUDIT_HASH_BYTES))
        return sov_fail(SOV_ERR_FORMAT, "%s: the audit chain's head row is missing or malformed",
                        db_tag(s->db));
    *seq = db_cell_int(&s->rows, 0, 0);
    return SOV_OK;
}

static db_val text_or_null(const char *s) { return s ? db_text(s) : (db_val){.type = DB_NULL}; }

static sov_status insert(store *s, const store_audit_entry *e) {
    const audit_record *r = &e->rec;
    char prev[AUDIT_HEX_LEN + 1], hash[AUDIT_HEX_LEN + 1];
    audit_hex(r->prev, AUDIT_HASH_BYTES, prev);
    audit_hex(r->hash, AUDIT_HASH_BYTES, hash);
    const bool text = e->prompt_text || e->completion_text;
    const db_val args[N_COLS] = {
        db_int(r->seq),
        db_int(r->version),
        db_int(r->time_ms),
        db_text(r->node),
        db_text(r->tenant),
        db_int(r->key_id),
        db_text(r->model),
        db_text(r->model_sha256),
        db_text(r->model_signer),
        db_text(r->endpoint),
        db_int(r->status),
        db_int(r->prompt_tokens),
        db_int(r->completion_tokens),
        db_int(r->cached_tokens),
        db_int(r->latency_ms),
        db_text(r->finish_reason),
        db_text(r->client),
        db_text(r->response_id),
        db_text(r->region),
        db_text(audit_retention_name(r->retention)),
        db_text(r->prompt_sha256),
        db_text(r->completion_sha256),
        db_text(prev),
        db_text(hash),
        text_or_null(e->prompt_text),
        text_or_null(e->completion_text),
        text && e->text_expires > 0 ? db_int(e->text_expires) : (db_val){.type = DB_NULL},
        db_int(r->energy_uj),
        db_text(r->energy_source),
    };
    return db_exec(s->db, Q_AUDIT_INSERT, args, N_COLS, NULL);
}

/* The statements of one append, inside its transaction. */
static sov_status append_tx(store *s, store_audit_entry *e, size_t n) {
    int64_t seq;
    uint8_t hash[AUDIT_HASH_BYTES];
    sov_status st = read_chain(s, Q_AUDIT_LOCK, &seq, hash);
    for (size_t i = 0; st == SOV_OK && i < n; i++) {
        e[i].rec.seq = ++seq;
        st = audit_record_chain(&e[i].rec, hash);
        if (st == SOV_OK) st = insert(s, &e[i]);
        memcpy(hash, e[i].rec.hash, AUDIT_HASH_BYTES);
    }
    if (st != SOV_OK) return st;
    char hex[AUDIT_HEX_LEN + 1];
    audit_hex(hash, AUDIT_HASH_BYTES, hex);
    const db_val args[] = {db_int(seq), db_text(hex)};
    return db_exec(s->db, Q_AUDIT_MOVE, args, 2, NULL);
}

sov_status store_audit_append(store *s, store_audit_entry *e, size_t n) {
    if (n == 0) return SOV_OK;
    sov_status st = db_begin(s->db);
    if (st != SOV_OK) return st;
    st = append_tx(s, e, n);
    return store_tx_end(s, st, true);
}

sov_status store_audit_chain(store *s, int64_t *seq, uint8_t hash[AUDIT_HASH_BYTES]) {
    return read_chain(s, Q_AUDIT_CHAIN, seq, hash);
}

/* ---- reading ---- */

/* Copies a text cell into a fixed field; false (and why) when it does not fit. */
static bool cell_to(const db_rows *rows, size_t r, size_t c, char *out, size_t cap, const char *name,
                    char *why, size_t why_cap) {
    const char *v = db_cell(rows, r, c);
    if (!v) v = "";
    if (strlen(v) >= cap) {
        snprintf(why, why_cap, "its %s is longer than any record can hold", name);
        out[0] = '\0';
        return false;
    }
    memcpy(out, v, strlen(v) + 1);
    return true;
}

static bool hash_cell(const db_rows *rows, size_t r, size_t c, uint8_t out[AUDIT_HASH_BYTES],
                      const char *name, char *why, size_t why_cap) {
    if (audit_unhex(db_cell(rows, r, c), out, AUDIT_HASH_BYTES)) return true;
    snprintf(why, why_cap, "its %s is not a SHA-256 in lowercase hex", name);
    return false;
}

static char *text_cell(const db_rows *rows, size_t r, size_t c, bool *nomem) {
    const char *v = db_cell(rows, r, c);
    if (!v) return NULL;
    char *t = strdup(v);
    if (!t) *nomem = true;
    return t;
}

/* Row r of Q_AUDIT_READ into out (columns as AUDIT_COLUMNS lists them). */
static bool row_from(const db_rows *rows, size_t r, store_audit_row *out) {
    audit_record *a = &out->rec;
    char *why = out->why, retention[16];
    const size_t wc = sizeof out->why;
    a->seq = db_cell_int(rows, r, 0);
    a->version = (int32_t)db_cell_int(rows, r, 1);
    a->time_ms = db_cell_int(rows, r, 2);
    a->key_id = db_cell_int(rows, r, 5);
    a->status = (int32_t)db_cell_int(rows, r, 10);
    a->prompt_tokens = db_cell_int(rows, r, 11);
    a->completion_tokens = db_cell_int(rows, r, 12);
    a->cached_tokens = db_cell_int(rows, r, 13);
    a->latency_ms = db_cell_int(rows, r, 14);
    /* the links first, so that even a row with a bad field can be placed in the chain */
    const bool links = hash_cell(rows, r, 22, a->prev, "prev_hash", why, wc) &&
                       hash_cell(rows, r, 23, a->hash, "hash", why, wc);
    out->valid =
        links && cell_to(rows, r, 3, a->node, sizeof a->node, "node", why, wc) &&
        cell_to(rows, r, 4, a->tenant, sizeof a->tenant, "tenant", why, wc) &&
        cell_to(rows, r, 6, a->model, sizeof a->model, "model", why, wc) &&
        cell_to(rows, r, 7, a->model_sha256, sizeof a->model_sha256, "model_sha256", why, wc) &&
        cell_to(rows, r, 8, a->model_signer, sizeof a->model_signer, "model_signer", why, wc) &&
        cell_to(rows, r, 9, a->endpoint, sizeof a->endpoint, "endpoint", why, wc) &&
        cell_to(rows, r, 15, a->finish_reason, sizeof a->finish_reason, "finish_reason", why, wc) &&
        cell_to(rows, r, 16, a->client, sizeof a->client, "client", why, wc) &&
        cell_to(rows, r, 17, a->response_id, sizeof a->response_id, "response_id", why, wc) &&
        cell_to(rows, r, 18, a->region, sizeof a->region, "region", why, wc) &&
        cell_to(rows, r, 19, retention, sizeof retention, "retention", why, wc) &&
        cell_to(rows, r, 20, a->prompt_sha256, sizeof a->prompt_sha256, "prompt_sha256", why, wc) &&
        cell_to(rows, r, 21, a->completion_sha256, sizeof a->completion_sha256, "completion_sha256", why, wc) &&
        cell_to(rows, r, COL_ENERGY_SOURCE, a->energy_source, sizeof a->energy_source, "energy_source", why, wc);
    a->energy_uj = db_cell_int(rows, r, COL_ENERGY_UJ);
    a->retention = audit_retention_parse(out->valid ? retention : "?");
    if (out->valid && a->retention < 0) {
        out->valid = false;
        snprintf(why, wc, "its retention \"%s\" is not hashes, none or full", retention);
    }
    bool nomem = false;
    out->prompt_text = text_cell(rows, r, COL_PROMPT_TEXT, &nomem);
    out->completion_text = text_cell(rows, r, COL_COMPLETION_TEXT, &nomem);
    out->text_expires = db_cell_int(rows, r, COL_TEXT_EXPIRES);
    return !nomem;
}

sov_status store_audit_read(store *s, int64_t from, size_t max, store_audit_row **out, size_t *n) {
    *out = NULL;
    *n = 0;
    const db_val args[] = {db_int(from), db_int((int64_t)SOV_MIN(max, (size_t)INT32_MAX))};
    const sov_status st = db_exec(s->db, Q_AUDIT_READ, args, 2, &s->rows);
    if (st != SOV_OK) return st;
    const size_t count = s->rows.n_rows;
    store_audit_row *rows = calloc(count ? count : 1, sizeof *rows);
    if (!rows) return sov_fail(SOV_ERR_NOMEM, "store: out of memory reading %zu audit records", count);
    for (size_t i = 0; i < count; i++)
        if (!row_from(&s->rows, i, &rows[i])) {
            store_audit_rows_free(rows, i + 1);
            return sov_fail(SOV_ERR_NOMEM, "store: out of memory reading the text of audit record %lld",
                            (long long)rows[i].rec.seq);
        }
    *out = rows;
    *n = count;
    return SOV_OK;
}

void store_audit_rows_free(store_audit_row *rows, size_t n) {
    for (size_t i = 0; rows && i < n; i++) {
        free(rows[i].prompt_text);
        free(rows[i].completion_text);
    }
    free(rows);
}

void store_audit_row_link(const store_audit_row *row, audit_link *out) {
    if (row->valid) {
        audit_record_link(&row->rec, row->prompt_text, row->completion_text, out);
        return;
    }
    memset(out, 0, sizeof *out);
    out->seq = row->rec.seq;
    memcpy(out->prev, row->rec.prev, AUDIT_HASH_BYTES);
    memcpy(out->hash, row->rec.hash, AUDIT_HASH_BYTES);
    snprintf(out->why, sizeof out->why, "%s", row->why);
}

sov_status store_audit_first_since(store *s, int64_t time_ms, int64_t *seq) {
    const db_val args[] = {db_int(time_ms)};
    const sov_status st = db_exec(s->db, Q_AUDIT_SINCE, args, 1, &s->rows);
    *seq = st == SOV_OK && s->rows.n_rows == 1 ? db_cell_int(&s->rows, 0, 0) : 0;
    return st;
}

/* ---- signed heads ---- */

sov_status store_audit_add_head(store *s, const audit_head *h) {
    char hash[AUDIT_HEX_LEN + 1], sig[2 * AUDIT_SIG_BYTES + 1];
    audit_hex(h->hash, AUDIT_HASH_BYTES, hash);
    audit_hex(h->sig, AUDIT_SIG_BYTES, sig);
    const db_val args[] = {db_int(h->seq), db_text(hash), db_int(h->time_ms), db_text(h->key_id),
                           db_text(sig)};
    return db_exec(s->db, Q_AUDIT_HEAD_ADD, args, 5, NULL);
}

sov_status store_audit_heads(store *s, int64_t from, audit_head **out, size_t *n) {
    *out = NULL;
    *n = 0;
    const db_val args[] = {db_int(from)};
    const sov_status st = db_exec(s->db, Q_AUDIT_HEADS, args, 1, &s->rows);
    if (st != SOV_OK) return st;
    const size_t count = s->rows.n_rows;
    audit_head *h = calloc(count ? count : 1, sizeof *h);
    if (!h) return sov_fail(SOV_ERR_NOMEM, "store: out of memory reading %zu signed heads", count);
    for (size_t i = 0; i < count; i++) {
        const char *key = db_cell(&s->rows, i, 3);
        h[i].seq = db_cell_int(&s->rows, i, 0);
        h[i].time_ms = db_cell_int(&s->rows, i, 2);
        /* a malformed head cannot verify: its hash and signature stay zero, and the check
         * reports it as forged */
        (void)audit_unhex(db_cell(&s->rows, i, 1), h[i].hash, AUDIT_HASH_BYTES);
        (void)audit_unhex(db_cell(&s->rows, i, 4), h[i].sig, AUDIT_SIG_BYTES);
        snprintf(h[i].key_id, sizeof h[i].key_id, "%s", key ? key : "");
    }
    *out = h;
    *n = count;
    return SOV_OK;
}

sov_status store_audit_signed_through(store *s, int64_t *seq) {
    const sov_status st = db_exec(s->db, Q_AUDIT_SIGNED, NULL, 0, &s->rows);
    *seq = st == SOV_OK && s->rows.n_rows == 1 ? db_cell_int(&s->rows, 0, 0) : 0;
    return st;
}

/* ---- retention ---- */

sov_status store_audit_expire(store *s, int64_t now, int64_t *cleared) {
    const db_val args[] = {db_int(now)};
    const sov_status st = db_exec(s->db, Q_AUDIT_EXPIRE, args, 1, &s->rows);
    if (cleared) *cleared = st == SOV_OK ? s->rows.changes : 0;
    return st;
}
