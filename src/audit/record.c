/* record.c - an audit record's canonical encoding, its digest and its link in the chain
 * (see audit.h and docs/AUDIT.md, which a third party can re-implement from).
 *
 * The encoding is versioned by its tag and length-prefixed throughout, so no two different
 * records encode alike: integers are 8 bytes big-endian two's complement, strings a 4-byte
 * big-endian length and their bytes, in the one fixed order of put_fields. The chain hashes
 * only (prev, digest), so a record left out of an export can still be linked by its digest,
 * and the record number is not hashed: it is the record's place in the chain, fixed by the
 * links, which is what lets the verifier tell a reordering from an edit. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "core/status.h"

static const char RECORD_TAG_V1[] = "sov-audit-record-v1\n";
static const char RECORD_TAG_V2[] = "sov-audit-record-v2\n";
static const char LINK_TAG[] = "sov-audit-link-v1\n";

/* ---- encoding ---- */

typedef struct writer {
    uint8_t *buf;
    size_t cap, len; /* len counts every byte, also those past cap */
} writer;

static void put_bytes(writer *w, const void *p, size_t n) {
    if (w->len < w->cap) memcpy(w->buf + w->len, p, n <= w->cap - w->len ? n : w->cap - w->len);
    w->len += n;
}

static void put_i64(writer *w, int64_t v) {
    uint8_t b[8];
    const uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(u >> (56 - 8 * i));
    put_bytes(w, b, 8);
}

static void put_str(writer *w, const char *s) {
    const size_t n = strlen(s);
    const uint8_t b[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    put_bytes(w, b, 4);
    put_bytes(w, s, n);
}

/* Version 1: the fields in this order (docs/AUDIT.md has the same list); version 2 adds
 * energy_uj and energy_source after them. */
static void put_fields(writer *w, const audit_record *r) {
    put_i64(w, r->time_ms);
    put_str(w, r->node);
    put_str(w, r->tenant);
    put_i64(w, r->key_id);
    put_str(w, r->model);
    put_str(w, r->model_sha256);
    put_str(w, r->model_signer);
    put_str(w, r->endpoint);
    put_i64(w, r->status);
    put_i64(w, r->prompt_tokens);
    put_i64(w, r->completion_tokens);
    put_i64(w, r->cached_tokens);
    put_i64(w, r->latency_ms);
    put_str(w, r->finish_reason);
    put_str(w, r->client);
    put_str(w, r->response_id);
    put_str(w, r->region);
    put_str(w, audit_retention_name(r->retention));
    put_str(w, r->prompt_sha256);
    put_str(w, r->completion_sha256);
    if (r->version >= 2) {
        put_i64(w, r->energy_uj);
        put_str(w, r->energy_source);
    }
}

size_t audit_record_encode(const audit_record *r, uint8_t *buf, size_t cap) {
    writer w = {buf, buf ? cap : 0, 0};
    if (r->version >= 2)
        put_bytes(&w, RECORD_TAG_V2, sizeof RECORD_TAG_V2 - 1);
    else
        put_bytes(&w, RECORD_TAG_V1, sizeof RECORD_TAG_V1 - 1);
    put_fields(&w, r);
    return w.len;
}

/* ---- hashing ---- */

static void sha256(const void *a, size_t na, const void *b, size_t nb, const void *c, size_t nc,
                   uint8_t out[AUDIT_HASH_BYTES]) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    const bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, a, na) &&
                    EVP_DigestUpdate(ctx, b, nb) && EVP_DigestUpdate(ctx, c, nc) &&
                    EVP_DigestFinal_ex(ctx, out, &len) && len == AUDIT_HASH_BYTES;
    EVP_MD_CTX_free(ctx);
    if (!ok) memset(out, 0, AUDIT_HASH_BYTES); /* only when out of memory: never matches a chain */
}

sov_status audit_record_digest(const audit_record *r, uint8_t digest[AUDIT_HASH_BYTES]) {
    if (r->version < AUDIT_VERSION_MIN || r->version > AUDIT_VERSION)
        return sov_fail(SOV_ERR_FORMAT, "audit: record %lld has encoding version %d; this sov knows %d..%d",
                        (long long)r->seq, r->version, AUDIT_VERSION_MIN, AUDIT_VERSION);
    uint8_t small[2048];
    const size_t n = audit_record_encode(r, small, sizeof small);
    if (n > sizeof small) /* cannot happen: every field is bounded by its array */
        return sov_fail(SOV_ERR_FORMAT, "audit: record %lld encodes to %zu bytes", (long long)r->seq, n);
    sha256(small, n, "", 0, "", 0, digest);
    return SOV_OK;
}

void audit_link_hash(const uint8_t prev[AUDIT_HASH_BYTES], const uint8_t digest[AUDIT_HASH_BYTES],
                     uint8_t out[AUDIT_HASH_BYTES]) {
    sha256(LINK_TAG, sizeof LINK_TAG - 1, prev, AUDIT_HASH_BYTES, digest, AUDIT_HASH_BYTES, out);
}

sov_status audit_record_chain(audit_record *r, const uint8_t prev[AUDIT_HASH_BYTES]) {
    uint8_t d[AUDIT_HASH_BYTES];
    const sov_status st = audit_record_digest(r, d);
    if (st != SOV_OK) return st;
    memcpy(r->prev, prev, AUDIT_HASH_BYTES);
    audit_link_hash(r->prev, d, r->hash);
    return SOV_OK;
}

/* ---- checking a stored record ---- */

static bool text_matches(const char *text, const char *hex) {
    char h[AUDIT_HEX_LEN + 1];
    audit_sha256_hex(text, strlen(text), h);
    return strcmp(h, hex) == 0;
}

/* Text kept beside the record must be text the record's retention keeps, and hash to the
 * record's hash of it (the chain covers the hashes; the hashes cover the text). */
static bool text_ok(const audit_record *r, const char *text, const char *hex, const char *what,
                    audit_link *out) {
    if (!text) return true;
    if (r->retention != POLICY_RETAIN_FULL) {
        snprintf(out->why, sizeof out->why, "it keeps %s text although its retention is \"%s\"", what,
                 audit_retention_name(r->retention));
        return false;
    }
    if (!text_matches(text, hex)) {
        snprintf(out->why, sizeof out->why, "its %s text does not match its %s_sha256", what, what);
        return false;
    }
    return true;
}

void audit_record_link(const audit_record *r, const char *prompt_text, const char *completion_text,
                       audit_link *out) {
    memset(out, 0, sizeof *out);
    out->seq = r->seq;
    memcpy(out->prev, r->prev, AUDIT_HASH_BYTES);
    memcpy(out->hash, r->hash, AUDIT_HASH_BYTES);
    uint8_t d[AUDIT_HASH_BYTES], h[AUDIT_HASH_BYTES];
    if (audit_record_digest(r, d) != SOV_OK) {
        snprintf(out->why, sizeof out->why, "its encoding version %d is unknown", r->version);
        return;
    }
    audit_link_hash(r->prev, d, h);
    if (memcmp(h, r->hash, AUDIT_HASH_BYTES) != 0) {
        snprintf(out->why, sizeof out->why, "its fields do not match its hash");
        return;
    }
    out->intact = text_ok(r, prompt_text, r->prompt_sha256, "prompt", out) &&
                  text_ok(r, completion_text, r->completion_sha256, "completion", out);
}

/* ---- names and hex ---- */

const char *audit_retention_name(int32_t retention) {
    switch (retention) {
    case POLICY_RETAIN_HASHES: return "hashes";
    case POLICY_RETAIN_NONE: return "none";
    case POLICY_RETAIN_FULL: return "full";
    default: return "?";
    }
}

int32_t audit_retention_parse(const char *name) {
    if (strcmp(name, "hashes") == 0) return POLICY_RETAIN_HASHES;
    if (strcmp(name, "none") == 0) return POLICY_RETAIN_NONE;
    if (strcmp(name, "full") == 0) return POLICY_RETAIN_FULL;
    return -1;
}

void audit_hex(const uint8_t *bytes, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1; /* lowercase only: one spelling per value */
}

bool audit_unhex(const char *hex, uint8_t *out, size_t n) {
    if (!hex || strlen(hex) != 2 * n) return false;
    for (size_t i = 0; i < n; i++) {
        const int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

void audit_sha256_hex(const void *data, size_t len, char out[AUDIT_HEX_LEN + 1]) {
    uint8_t d[AUDIT_HASH_BYTES];
    sha256(data, len, "", 0, "", 0, d);
    audit_hex(d, AUDIT_HASH_BYTES, out);
}

/* ---- incremental ---- */

struct audit_hasher {
    EVP_MD_CTX *ctx;
};

audit_hasher *audit_hasher_new(void) {
    audit_hasher *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || !EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL)) {
        audit_hasher_free(h);
        return NULL;
    }
    return h;
}

void audit_hasher_add(audit_hasher *h, const void *data, size_t len) {
    if (len) (void)EVP_DigestUpdate(h->ctx, data, len); /* cannot fail for SHA-256 in memory */
}

void audit_hasher_end(audit_hasher *h, char out[AUDIT_HEX_LEN + 1]) {
    uint8_t d[AUDIT_HASH_BYTES];
    unsigned int len = 0;
    if (!EVP_DigestFinal_ex(h->ctx, d, &len) || len != AUDIT_HASH_BYTES) memset(d, 0, sizeof d);
    audit_hex(d, AUDIT_HASH_BYTES, out);
    audit_hasher_free(h);
}

void audit_hasher_free(audit_hasher *h) {
    if (!h) return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}
