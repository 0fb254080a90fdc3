/* server_audit.c - building one request's audit record (see server_audit.h). */
#include "server/server_audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "core/util.h"
#include "server/openai.h"

static int64_t unix_ms(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Copies s into a field of cap bytes as valid UTF-8 (a model's file name, a region given on
 * the command line may not be: both stores need text), cut at a character boundary when
 * too long. */
static void put(char *dst, size_t cap, const char *s) {
    size_t n = 0;
    char *clean = s ? oai_utf8_clean(s, strlen(s), &n) : NULL;
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)clean[n] & 0xC0) == 0x80)
            n--;
    }
    if (n) memcpy(dst, clean, n);
    dst[n] = '\0';
    free(clean);
}

void srv_audit_begin(srv_audit *a, const srv_audit_cfg *c, const char *endpoint, const char *client) {
    memset(a, 0, sizeof *a);
    a->t0 = sov_now_s();
    a->item = calloc(1, sizeof *a->item);
    if (!a->item) return;
    audit_record *r = &a->item->rec;
    r->version = AUDIT_VERSION;
    r->time_ms = unix_ms();
    put(r->node, sizeof r->node, c->node);
    put(r->model, sizeof r->model, c->model);
    put(r->model_sha256, sizeof r->model_sha256, c->model_sha256);
    put(r->model_signer, sizeof r->model_signer, c->model_signer);
    put(r->endpoint, sizeof r->endpoint, endpoint);
    put(r->client, sizeof r->client, client);
    put(r->region, sizeof r->region, c->policy->region);
    r->retention = c->policy->retention;
    if (r->retention == POLICY_RETAIN_FULL && c->policy->retention_days > 0)
        a->item->text_expires = r->time_ms / 1000 + (int64_t)c->policy->retention_days * 86400;
    a->whole =
        r->retention == POLICY_RETAIN_FULL || (c->whole_completion && r->retention == POLICY_RETAIN_HASHES);
    if (r->retention == POLICY_RETAIN_HASHES && !a->whole) a->completion = audit_hasher_new();
}

void srv_audit_move(srv_audit *to, srv_audit *from) {
    *to = *from;
    memset(from, 0, sizeof *from);
}

void srv_audit_key(srv_audit *a, const char *tenant, int64_t key_id) {
    if (!a->item) return;
    put(a->item->rec.tenant, sizeof a->item->rec.tenant, tenant);
    a->item->rec.key_id = key_id;
}

void srv_audit_response_id(srv_audit *a, const char *id) {
    if (a->item) put(a->item->rec.response_id, sizeof a->item->rec.response_id, id);
}

void srv_audit_prompt(srv_audit *a, const char *text, size_t len) {
    if (!a->item || a->item->rec.retention == POLICY_RETAIN_NONE) return;
    audit_sha256_hex(text, len, a->item->rec.prompt_sha256);
    if (a->item->rec.retention != POLICY_RETAIN_FULL) return;
    free(a->item->prompt_text);
    a->item->prompt_text = strndup(text, len);
    if (!a->item->prompt_text) a->item->rec.prompt_sha256[0] = '\0'; /* kept as "no prompt" */
}

void srv_audit_completion(srv_audit *a, const char *text, size_t len) {
    if (!a->item || !len) return;
    if (a->completion) audit_hasher_add(a->completion, text, len);
    if (!a->whole) return;
    if (a->len + len + 1 > a->cap) {
        size_t cap = a->cap ? a->cap : 1024;
        while (cap < a->len + len + 1)
            cap *= 2;
        char *p = realloc(a->text, cap);
        if (!p) return; /* the kept text ends here; its hash is of what was kept */
        a->text = p;
        a->cap = cap;
    }
    memcpy(a->text + a->len, text, len);
    a->len += len;
    a->text[a->len] = '\0';
}

const char *srv_audit_whole_text(const srv_audit *a, size_t *len) {
    *len = a->len;
    return a->text ? a->text : "";
}

void srv_audit_set_completion(srv_audit *a, const char *text, size_t len) {
    if (!a->item || a->item->rec.retention == POLICY_RETAIN_NONE) return;
    audit_sha256_hex(text, len, a->item->rec.completion_sha256);
    if (a->item->rec.retention != POLICY_RETAIN_FULL) return;
    free(a->item->completion_text);
    a->item->completion_text = strndup(text, len);
    if (!a->item->completion_text) a->item->rec.completion_sha256[0] = '\0';
}

void srv_audit_usage(srv_audit *a, int64_t prompt, int64_t completion, int64_t cached, const char *finish) {
    if (!a->item) return;
    a->generated = true;
    audit_record *r = &a->item->rec;
    r->prompt_tokens = prompt;
    r->completion_tokens = completion;
    r->cached_tokens = cached;
    put(r->finish_reason, sizeof r->finish_reason, finish);
}

void srv_audit_energy(srv_audit *a, double joules, const char *source) {
    if (!a->item) return;
    audit_record *r = &a->item->rec;
    r->energy_uj = joules > 0 && joules < 9e12 ? (int64_t)(joules * 1e6 + 0.5) : 0;
    put(r->energy_source, sizeof r->energy_source, source);
}

tenants_audit *srv_audit_end(srv_audit *a, int status, void *user) {
    tenants_audit *item = a->item;
    if (!item) return NULL;
    item->rec.status = status;
    item->rec.latency_ms = (int64_t)((sov_now_s() - a->t0) * 1000 + 0.5);
    item->user = user;
    if (a->completion && a->generated) {
        audit_hasher_end(a->completion, item->rec.completion_sha256);
        a->completion = NULL;
    }
    if (!item->prompt_text && !item->completion_text) item->text_expires = 0;
    a->item = NULL;
    srv_audit_drop(a);
    return item;
}

void srv_audit_drop(srv_audit *a) {
    tenants_audit_free(a->item);
    audit_hasher_free(a->completion);
    free(a->text);
    memset(a, 0, sizeof *a);
}
