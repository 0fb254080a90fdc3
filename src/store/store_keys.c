/* store_keys.c - tenants and API keys in the state store (see store.h).
 *
 * Every value is checked before it reaches SQL (sizes, UTF-8, no control characters,
 * limits) and then bound, never spliced into a statement, so a tenant named
 * "x'); DROP TABLE keys; --" is stored as exactly that. Every change to a key or a tenant
 * bumps keys_version in the same transaction, which is how a server notices it must
 * reload its key table. Salt and hash travel as lowercase hex text. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "store/store_impl.h"

/* ---- validation ---- */

/* True when s[0..len) is valid UTF-8 without control characters (C0, DEL, C1). */
static bool clean_utf8(const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < len;) {
        const unsigned c = s[i];
        if (c < 0x20 || c == 0x7f) return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf)
            n = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            n = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 3, cp = c & 0x07;
        else
            return false;
        if (len - i <= n) return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        const uint32_t min = n == 1 ? 0x80 : n == 2 ? 0x800 : 0x10000;
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
            return false; /* overlong, out of range, surrogate, C1 control */
        i += n + 1;
    }
    return true;
}

/* Checks a text of len bytes. */
static sov_status check_text(const char *what, const char *s, size_t len, size_t min, size_t max) {
    if (len < min || len > max)
        return sov_fail(SOV_ERR_ARG, "store: %s is %zu bytes: give %zu to %zu", what, len, min, max);
    if (!clean_utf8(s, len))
        return sov_fail(SOV_ERR_ARG, "store: %s must be UTF-8 without control characters", what);
    return SOV_OK;
}

/* Checks a NUL-terminated text field of a fixed array of cap bytes. */
static sov_status check_field(const char *what, const char *s, size_t cap, size_t min, size_t max) {
    const size_t len = strnlen(s, cap);
    if (len == cap) return sov_fail(SOV_ERR_ARG, "store: %s is not NUL-terminated", what);
    return check_text(what, s, len, min, max);
}

static sov_status check_key(const store_key *k) {
    sov_status status = check_field("tenant name", k->tenant, sizeof k->tenant, 1, STORE_TENANT_MAX);
    if (status == SOV_OK)
        status = check_field("model list", k->models, sizeof k->models, 0, STORE_MODELS_MAX);
    if (status == SOV_OK)
        status = check_field("key prefix", k->prefix, sizeof k->prefix, 0, STORE_PREFIX_MAX);
    if (status == SOV_OK)
        status = check_field("client certificate subject", k->client_subject, sizeof k->client_subject, 0,
                             STORE_SUBJECT_MAX);
    if (status != SOV_OK) return status;
    if (k->rpm < 0 || k->tpm < 0 || k->tpd < 0)
        return sov_fail(SOV_ERR_ARG, "store: limits must be >= 0 (rpm %lld, tpm %lld, tpd %lld)",
                        (long long)k->rpm, (long long)k->tpm, (long long)k->tpd);
    if (k->created < 0)
        return sov_fail(SOV_ERR_ARG, "store: creation time %lld is negative", (long long)k->created);
    return SOV_OK;
}

/* ---- hex ---- */

static void hex_encode(const uint8_t *b, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes exactly n bytes; false when s is not 2n hex digits. */
static bool hex_decode(const char *s, uint8_t *out, size_t n) {
    if (!s || strlen(s) != 2 * n) return false;
    for (size_t i = 0; i < n; i++) {
        const int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

/* ---- keys ---- */

/* The statements of store_key_add, inside its transaction. */
static sov_status key_insert(store *s, const store_key *k, int64_t *id) {
    const db_val tenant[] = {db_text(k->tenant), db_int(k->created)};
    sov_status status = db_exec(s->db, Q_TENANT_ENSURE, tenant, 2, NULL);
    if (status != SOV_OK) return status;
    char salt[2 * STORE_SALT_BYTES + 1], hash[2 * STORE_HASH_BYTES + 1];
    hex_encode(k->salt, STORE_SALT_BYTES, salt);
    hex_encode(k->hash, STORE_HASH_BYTES, hash);
    const db_val key[] = {db_text(k->prefix), db_text(salt),     db_text(hash),  db_text(k->tenant),
                          db_text(k->models), db_int(k->rpm),    db_int(k->tpm), db_int(k->tpd),
                          db_int(k->admin),   db_int(k->created), db_text(k->client_subject)};
    status = db_exec(s->db, Q_KEY_ADD, key, SOV_ARRAY_LEN(key), &s->rows);
    if (status != SOV_OK) return status;
    *id = db_cell_int(&s->rows, 0, 0);
    if (*id <= 0) return sov_fail(SOV_ERR_FORMAT, "%s: the new key got no id", db_tag(s->db));
    return db_exec(s->db, Q_KEYS_BUMP, NULL, 0, NULL);
}

sov_status store_key_add(store *s, const store_key *k, int64_t *id_out) {
    *id_out = 0;
    sov_status status = check_key(k);
    if (status != SOV_OK) return status;
    status = db_begin(s->db);
    if (status != SOV_OK) return status;
    int64_t id = 0;
    status = store_tx_end(s, key_insert(s, k, &id), true);
    if (status == SOV_OK) *id_out = id;
    return status;
}

/* The statements of store_key_revoke, inside its transaction. */
static sov_status key_revoke(store *s, int64_t id, int64_t now) {
    const db_val args[] = {db_int(id), db_int(now)};
    sov_status status = db_exec(s->db, Q_KEY_REVOKE, args, 2, &s->rows);
    if (status != SOV_OK) return status;
    if (s->rows.changes > 0) return db_exec(s->db, Q_KEYS_BUMP, NULL, 0, NULL);
    status = db_exec(s->db, Q_KEY_EXISTS, args, 1, &s->rows); /* revoked already, or no such key? */
    if (status != SOV_OK) return status;
    if (s->rows.n_rows == 0)
        return sov_fail(SOV_ERR_NOT_FOUND, "%s: no key with id %lld", db_tag(s->db), (long long)id);
    return SOV_OK;
}

sov_status store_key_revoke(store *s, int64_t id, int64_t now) {
    if (now <= 0) return sov_fail(SOV_ERR_ARG, "store: revocation time %lld must be > 0", (long long)now);
    const sov_status status = db_begin(s->db);
    if (status != SOV_OK) return status;
    return store_tx_end(s, key_revoke(s, id, now), true);
}

/* Copies a text cell into a fixed field; false when it does not fit. */
static bool copy_cell(char *dst, size_t cap, const char *src) {
    if (!src) src = "";
    const size_t len = strlen(src);
    if (len >= cap) return false;
    memcpy(dst, src, len + 1);
    return true;
}

/* Fills k from row r of Q_KEYS_LIST. */
static sov_status key_from_row(const store *s, size_t r, store_key *k) {
    const db_rows *rows = &s->rows;
    memset(k, 0, sizeof *k);
    k->id = db_cell_int(rows, r, 0);
    if (!copy_cell(k->prefix, sizeof k->prefix, db_cell(rows, r, 1)) ||
        !hex_decode(db_cell(rows, r, 2), k->salt, STORE_SALT_BYTES) ||
        !hex_decode(db_cell(rows, r, 3), k->hash, STORE_HASH_BYTES) ||
        !copy_cell(k->tenant, sizeof k->tenant, db_cell(rows, r, 4)) ||
        !copy_cell(k->models, sizeof k->models, db_cell(rows, r, 5)) ||
        !copy_cell(k->client_subject, sizeof k->client_subject, db_cell(rows, r, 14)))
        return sov_fail(SOV_ERR_FORMAT,
                        "%s: key %lld has a malformed prefix, salt, hash, tenant or model list",
                        db_tag(s->db), (long long)k->id);
    k->rpm = db_cell_int(rows, r, 6);
    k->tpm = db_cell_int(rows, r, 7);
    k->tpd = db_cell_int(rows, r, 8);
    k->admin = db_cell_int(rows, r, 9) != 0;
    k->weight = db_cell_real(rows, r, 10);
    k->created = db_cell_int(rows, r, 11);
    k->last_used = db_cell_int(rows, r, 12);
    k->revoked = db_cell_int(rows, r, 13);
    return SOV_OK;
}

sov_status store_keys(store *s, store_key **out, size_t *n) {
    *out = NULL;
    *n = 0;
    sov_status status = db_exec(s->db, Q_KEYS_LIST, NULL, 0, &s->rows);
    if (status != SOV_OK) return status;
    const size_t count = s->rows.n_rows;
    store_key *keys = calloc(count ? count : 1, sizeof *keys);
    if (!keys) return sov_fail(SOV_ERR_NOMEM, "store: out of memory listing %zu keys", count);
    for (size_t i = 0; i < count && status == SOV_OK; i++)
        status = key_from_row(s, i, &keys[i]);
    if (status != SOV_OK) {
        free(keys);
        return status;
    }
    *out = keys;
    *n = count;
    return SOV_OK;
}

sov_status store_keys_version(store *s, int64_t *out) {
    *out = 0;
    const sov_status status = db_exec(s->db, Q_KEYS_VERSION, NULL, 0, &s->rows);
    if (status != SOV_OK) return status;
    if (s->rows.n_rows != 1)
        return sov_fail(SOV_ERR_FORMAT, "%s: keys_version has %zu rows, not 1", db_tag(s->db),
                        s->rows.n_rows);
    *out = db_cell_int(&s->rows, 0, 0);
    return SOV_OK;
}

/* ---- tenants ---- */

static sov_status tenant_weight(store *s, const char *tenant, double weight) {
    const db_val args[] = {db_text(tenant), db_real(weight)};
    sov_status status = db_exec(s->db, Q_TENANT_WEIGHT, args, 2, &s->rows);
    if (status != SOV_OK) return status;
    if (s->rows.changes == 0)
        return sov_fail(SOV_ERR_NOT_FOUND, "%s: no tenant named '%s'", db_tag(s->db), tenant);
    return db_exec(s->db, Q_KEYS_BUMP, NULL, 0, NULL);
}

sov_status store_tenant_set_weight(store *s, const char *tenant, double weight) {
    if (!tenant) return sov_fail(SOV_ERR_ARG, "store: no tenant name");
    sov_status status = check_text("tenant name", tenant, strlen(tenant), 1, STORE_TENANT_MAX);
    if (status != SOV_OK) return status;
    if (!(weight > 0 && weight <= 1000)) /* also refuses NaN */
        return sov_fail(SOV_ERR_ARG,
                        "store: tenant weight %g is out of range: give more than 0, at most 1000", weight);
    status = db_begin(s->db);
    if (status != SOV_OK) return status;
    return store_tx_end(s, tenant_weight(s, tenant, weight), true);
}
