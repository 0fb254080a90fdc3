/* export.c - the audit log as JSON lines (see audit.h; the format is in docs/AUDIT.md).
 *
 * An export is a header line, then one line per record in chain order — the record with
 * its chain fields (prev, hash) and its text when kept, or, for a record a filter left out,
 * a link line with only its prev, digest and hash (enough to carry the chain across it
 * without showing it) — then the signed heads. Each line is one JSON object (jansson); a
 * reader (this parser) takes untrusted text: a bounded line, duplicate keys refused, every
 * field of the right type, range and length, hashes as lowercase hex of the right size. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "core/status.h"

enum { LINE_MAX_BYTES = 64 << 20 }; /* a record with a long kept prompt and completion */

/* ---- writing ---- */

static void set_hex(json_t *o, const char *k, const uint8_t *b, size_t n) {
    char hex[2 * AUDIT_SIG_BYTES + 1];
    audit_hex(b, n, hex);
    json_object_set_new(o, k, json_string(hex));
}

static json_t *record_json(const audit_line *l) {
    const audit_record *r = &l->rec;
    json_t *o = json_pack(
        "{ss sI si sI ss ss sI ss ss ss ss si sI sI sI sI ss ss ss ss ss ss ss}", "type", "record", "seq",
        (json_int_t)r->seq, "v", r->version, "time_ms", (json_int_t)r->time_ms, "node", r->node, "tenant",
        r->tenant, "key_id", (json_int_t)r->key_id, "model", r->model, "model_sha256", r->model_sha256,
        "model_signer", r->model_signer, "endpoint", r->endpoint, "status", r->status, "prompt_tokens",
        (json_int_t)r->prompt_tokens, "completion_tokens", (json_int_t)r->completion_tokens, "cached_tokens",
        (json_int_t)r->cached_tokens, "latency_ms", (json_int_t)r->latency_ms, "finish_reason",
        r->finish_reason, "client", r->client, "response_id", r->response_id, "region", r->region,
        "retention", audit_retention_name(r->retention), "prompt_sha256", r->prompt_sha256,
        "completion_sha256", r->completion_sha256);
    if (!o) return NULL;
    if (r->version >= 2) {
        json_object_set_new(o, "energy_uj", json_integer((json_int_t)r->energy_uj));
        json_object_set_new(o, "energy_source", json_string(r->energy_source));
    }
    set_hex(o, "prev", r->prev, AUDIT_HASH_BYTES);
    set_hex(o, "hash", r->hash, AUDIT_HASH_BYTES);
    if (l->prompt_text) json_object_set_new(o, "prompt", json_string(l->prompt_text));
    if (l->completion_text) json_object_set_new(o, "completion", json_string(l->completion_text));
    return o;
}

static json_t *link_json(const audit_line *l) {
    json_t *o = json_pack("{ss sI}", "type", "link", "seq", (json_int_t)l->rec.seq);
    if (!o) return NULL;
    set_hex(o, "prev", l->rec.prev, AUDIT_HASH_BYTES);
    set_hex(o, "digest", l->digest, AUDIT_HASH_BYTES);
    set_hex(o, "hash", l->rec.hash, AUDIT_HASH_BYTES);
    return o;
}

static json_t *head_json(const audit_head *h) {
    json_t *o = json_pack("{ss sI}", "type", "head", "seq", (json_int_t)h->seq);
    if (!o) return NULL;
    set_hex(o, "hash", h->hash, AUDIT_HASH_BYTES);
    json_object_set_new(o, "time_ms", json_integer(h->time_ms));
    json_object_set_new(o, "key_id", json_string(h->key_id));
    set_hex(o, "signature", h->sig, AUDIT_SIG_BYTES);
    return o;
}

char *audit_line_json(const audit_line *l) {
    json_t *o = NULL;
    switch (l->kind) {
    case AUDIT_LINE_HEADER:
        o = json_pack("{ss ss si sI}", "type", "header", "format", "sov-audit-export", "version",
                      AUDIT_EXPORT_VERSION, "first_seq", (json_int_t)l->first_seq);
        break;
    case AUDIT_LINE_RECORD: o = record_json(l); break;
    case AUDIT_LINE_LINK: o = link_json(l); break;
    case AUDIT_LINE_HEAD: o = head_json(&l->head); break;
    }
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(o);
    return s;
}

/* ---- reading ---- */

typedef struct reader {
    json_t *o;
    const char *type;
    sov_status st; /* the first failure */
} reader;

static json_t *field(reader *rd, const char *k, json_type want) {
    json_t *v = json_object_get(rd->o, k);
    if (rd->st != SOV_OK) return NULL;
    if (!v || json_typeof(v) != want) {
        rd->st = sov_fail(SOV_ERR_FORMAT, "audit export: %s line: \"%s\" is missing or not %s", rd->type, k,
                          want == JSON_STRING ? "a string" : "an integer");
        return NULL;
    }
    return v;
}

static void get_int(reader *rd, const char *k, int64_t lo, int64_t hi, int64_t *out) {
    json_t *v = field(rd, k, JSON_INTEGER);
    if (!v) return;
    const json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        rd->st = sov_fail(SOV_ERR_FORMAT, "audit export: %s line: \"%s\" = %lld is out of range %lld..%lld",
                          rd->type, k, (long long)x, (long long)lo, (long long)hi);
        return;
    }
    *out = (int64_t)x;
}

static void get_i32(reader *rd, const char *k, int32_t lo, int32_t hi, int32_t *out) {
    int64_t x = 0;
    get_int(rd, k, lo, hi, &x);
    *out = (int32_t)x;
}

/* A string that fits cap bytes (with its NUL) and has no NUL inside. */
static void get_str(reader *rd, const char *k, char *out, size_t cap) {
    json_t *v = field(rd, k, JSON_STRING);
    if (!v) return;
    const size_t n = json_string_length(v);
    if (n >= cap || strlen(json_string_value(v)) != n) {
        rd->st =
            sov_fail(SOV_ERR_FORMAT, "audit export: %s line: \"%s\" is longer than %zu bytes or holds a NUL",
                     rd->type, k, cap - 1);
        return;
    }
    memcpy(out, json_string_value(v), n + 1);
}

static void get_hex(reader *rd, const char *k, uint8_t *out, size_t n) {
    json_t *v = field(rd, k, JSON_STRING);
    if (v && !audit_unhex(json_string_value(v), out, n))
        rd->st = sov_fail(SOV_ERR_FORMAT, "audit export: %s line: \"%s\" is not %zu bytes in lowercase hex",
                          rd->type, k, n);
}

/* A hash field that is "" or 64 lowercase hex digits. */
static void get_hash_text(reader *rd, const char *k, char *out) {
    uint8_t tmp[AUDIT_HASH_BYTES];
    get_str(rd, k, out, AUDIT_HEX_LEN + 1);
    if (rd->st == SOV_OK && out[0] && !audit_unhex(out, tmp, sizeof tmp))
        rd->st = sov_fail(SOV_ERR_FORMAT,
                          "audit export: record line: \"%s\" is neither empty nor a SHA-256 in hex", k);
}

static char *get_text(reader *rd, const char *k) {
    json_t *v = json_object_get(rd->o, k);
    if (!v || rd->st != SOV_OK) return NULL;
    char *s = NULL;
    if (json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v))
        s = strdup(json_string_value(v));
    if (!s) rd->st = sov_fail(SOV_ERR_FORMAT, "audit export: record line: \"%s\" is not text", k);
    return s;
}

static void read_record(reader *rd, audit_line *l) {
    audit_record *r = &l->rec;
    char retention[16] = "";
    get_int(rd, "seq", 1, INT64_MAX, &r->seq);
    get_i32(rd, "v", 1, 1000, &r->version);
    get_int(rd, "time_ms", 0, INT64_MAX, &r->time_ms);
    get_str(rd, "node", r->node, sizeof r->node);
    get_str(rd, "tenant", r->tenant, sizeof r->tenant);
    get_int(rd, "key_id", 0, INT64_MAX, &r->key_id);
    get_str(rd, "model", r->model, sizeof r->model);
    get_hash_text(rd, "model_sha256", r->model_sha256);
    get_str(rd, "model_signer", r->model_signer, sizeof r->model_signer);
    get_str(rd, "endpoint", r->endpoint, sizeof r->endpoint);
    get_i32(rd, "status", 0, 999, &r->status);
    get_int(rd, "prompt_tokens", 0, INT64_MAX, &r->prompt_tokens);
    get_int(rd, "completion_tokens", 0, INT64_MAX, &r->completion_tokens);
    get_int(rd, "cached_tokens", 0, INT64_MAX, &r->cached_tokens);
    get_int(rd, "latency_ms", 0, INT64_MAX, &r->latency_ms);
    get_str(rd, "finish_reason", r->finish_reason, sizeof r->finish_reason);
    get_str(rd, "client", r->client, sizeof r->client);
    get_str(rd, "response_id", r->response_id, sizeof r->response_id);
    get_str(rd, "region", r->region, sizeof r->region);
    get_str(rd, "retention", retention, sizeof retention);
    get_hash_text(rd, "prompt_sha256", r->prompt_sha256);
    get_hash_text(rd, "completion_sha256", r->completion_sha256);
    if (rd->st == SOV_OK && r->version >= 2) {
        get_int(rd, "energy_uj", 0, INT64_MAX, &r->energy_uj);
        get_str(rd, "energy_source", r->energy_source, sizeof r->energy_source);
    }
    get_hex(rd, "prev", r->prev, AUDIT_HASH_BYTES);
    get_hex(rd, "hash", r->hash, AUDIT_HASH_BYTES);
    if (rd->st == SOV_OK && (r->retention = audit_retention_parse(retention)) < 0)
        rd->st =
            sov_fail(SOV_ERR_FORMAT,
                     "audit export: record line: retention \"%s\" is not hashes, none or full", retention);
    l->prompt_text = get_text(rd, "prompt");
    l->completion_text = get_text(rd, "completion");
}

static void read_head(reader *rd, audit_head *h) {
    get_int(rd, "seq", 1, INT64_MAX, &h->seq);
    get_hex(rd, "hash", h->hash, AUDIT_HASH_BYTES);
    get_int(rd, "time_ms", 0, INT64_MAX, &h->time_ms);
    get_str(rd, "key_id", h->key_id, sizeof h->key_id);
    get_hex(rd, "signature", h->sig, AUDIT_SIG_BYTES);
}

static void read_kind(reader *rd, audit_line *l) {
    if (strcmp(rd->type, "record") == 0) {
        l->kind = AUDIT_LINE_RECORD;
        read_record(rd, l);
    } else if (strcmp(rd->type, "link") == 0) {
        l->kind = AUDIT_LINE_LINK;
        get_int(rd, "seq", 1, INT64_MAX, &l->rec.seq);
        get_hex(rd, "prev", l->rec.prev, AUDIT_HASH_BYTES);
        get_hex(rd, "digest", l->digest, AUDIT_HASH_BYTES);
        get_hex(rd, "hash", l->rec.hash, AUDIT_HASH_BYTES);
    } else if (strcmp(rd->type, "head") == 0) {
        l->kind = AUDIT_LINE_HEAD;
        read_head(rd, &l->head);
    } else if (strcmp(rd->type, "header") == 0) {
        char format[32] = "";
        int64_t version = 0;
        l->kind = AUDIT_LINE_HEADER;
        get_str(rd, "format", format, sizeof format);
        get_int(rd, "version", 1, 1000, &version);
        get_int(rd, "first_seq", 1, INT64_MAX, &l->first_seq);
        if (rd->st == SOV_OK && (strcmp(format, "sov-audit-export") != 0 || version != AUDIT_EXPORT_VERSION))
            rd->st = sov_fail(SOV_ERR_FORMAT,
                              "audit export: not a sov audit export of version %d (format \"%s\", "
                              "version %lld)",
                              AUDIT_EXPORT_VERSION, format, (long long)version);
    } else {
        rd->st = sov_fail(SOV_ERR_FORMAT, "audit export: unknown line type \"%.40s\"", rd->type);
    }
}

sov_status audit_line_parse(const char *text, size_t len, audit_line *out) {
    memset(out, 0, sizeof *out);
    if (len > LINE_MAX_BYTES)
        return sov_fail(SOV_ERR_FORMAT, "audit export: a line of %zu bytes is over the limit of %d", len,
                        LINE_MAX_BYTES);
    json_error_t err;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return sov_fail(SOV_ERR_FORMAT, "audit export: not a JSON object (%s at column %d)",
                        o ? "not an object" : err.text, err.column);
    }
    reader rd = {o, "?", SOV_OK};
    json_t *type = json_object_get(o, "type");
    if (!json_is_string(type)) {
        json_decref(o);
        return sov_fail(SOV_ERR_FORMAT, "audit export: a line without a \"type\" string");
    }
    rd.type = json_string_value(type);
    read_kind(&rd, out);
    json_decref(o);
    return rd.st;
}

void audit_line_free(audit_line *l) {
    free(l->prompt_text);
    free(l->completion_text);
    l->prompt_text = l->completion_text = NULL;
}

void audit_line_link(const audit_line *l, audit_link *out) {
    if (l->kind == AUDIT_LINE_RECORD) {
        audit_record_link(&l->rec, l->prompt_text, l->completion_text, out);
        return;
    }
    memset(out, 0, sizeof *out);
    out->seq = l->rec.seq;
    memcpy(out->prev, l->rec.prev, AUDIT_HASH_BYTES);
    memcpy(out->hash, l->rec.hash, AUDIT_HASH_BYTES);
    uint8_t h[AUDIT_HASH_BYTES];
    audit_link_hash(l->rec.prev, l->digest, h);
    out->intact = memcmp(h, l->rec.hash, AUDIT_HASH_BYTES) == 0;
    if (!out->intact)
        snprintf(out->why, sizeof out->why, "its link's hash does not match its prev and digest");
}
