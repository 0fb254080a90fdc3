/* server_audit.h - one request's audit record as the server builds it (docs/AUDIT.md).
 *
 * Every /v1 request that gets a response gets a record: begun when the request arrives
 * (time, endpoint, client), filled as it goes (tenant and key once authenticated, the
 * prompt's hash once rendered, the completion's hash as it streams out, tokens and finish
 * reason at the end) and ended with the HTTP status it is answered with, which hands the
 * record to the store worker (tenants_audit_append). The server sends the last byte of the
 * answer only when the worker reports the record committed (server.c).
 *
 * What of the text is kept follows the data policy's retention: "hashes" keeps SHA-256 of
 * the prompt and the completion (the completion hashed as it streams, never held), "none"
 * nothing, "full" the text too, deleted retention_days later. The text handed in is the
 * audit's text (server.c's audit_text: the one place a redactor applies). */
#ifndef SOV_SERVER_SERVER_AUDIT_H
#define SOV_SERVER_SERVER_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit/audit.h"
#include "policy/policy.h"
#include "tenants/tenants.h"

/* What is the same in every record of this server. */
typedef struct srv_audit_cfg {
    const char *node;         /* the server's audit key id */
    const char *model;        /* the served model's id */
    const char *model_sha256; /* its file's SHA-256 (hex) */
    const char *model_signer; /* the key id that signed the model; "" unsigned */
    const sov_policy *policy; /* retention, retention_days, region */
    bool whole_completion;    /* keep the completion whole for audit_text even without retention
                                 "full" (a redactor needs whole text); else it is hashed as it goes */
} srv_audit_cfg;

typedef struct srv_audit {
    tenants_audit *item;      /* the record being filled; NULL: none (no audit, or handed on) */
    double t0;                /* arrival, sov_now_s() */
    bool whole;               /* the completion is kept whole (retention full), not hashed as it goes */
    bool generated;           /* the request reached the engine: it has a completion (maybe empty) */
    audit_hasher *completion; /* the completion's running SHA-256 (retention hashes) */
    char *text;               /* the completion so far (whole) */
    size_t len, cap;
} srv_audit;

/* Starts a record (a failed allocation leaves a->item NULL: the request then fails with
 * 503, it never goes unrecorded). */
void srv_audit_begin(srv_audit *a, const srv_audit_cfg *c, const char *endpoint, const char *client);
/* Moves a record to another owner (from the request's first handler to its hreq). */
void srv_audit_move(srv_audit *to, srv_audit *from);
void srv_audit_key(srv_audit *a, const char *tenant, int64_t key_id);
void srv_audit_response_id(srv_audit *a, const char *id);
/* The prompt's audit text (once). */
void srv_audit_prompt(srv_audit *a, const char *text, size_t len);
/* A piece of the completion's audit text, in order; in whole mode the raw text, which
 * srv_audit_whole_text then hands back for audit_text before it is set. */
void srv_audit_completion(srv_audit *a, const char *text, size_t len);
const char *srv_audit_whole_text(const srv_audit *a, size_t *len);
void srv_audit_set_completion(srv_audit *a, const char *text, size_t len);
/* The engine's end of the request: its counts, and that it has a completion to hash. */
void srv_audit_usage(srv_audit *a, int64_t prompt, int64_t completion, int64_t cached, const char *finish);
/* The joules attributed to the request and their source ("rapl" / "estimated"). */
void srv_audit_energy(srv_audit *a, double joules, const char *source);
/* Ends the record with the status sent and returns it to queue (user: who waits for it),
 * or NULL when there is none. */
tenants_audit *srv_audit_end(srv_audit *a, int status, void *user);
void srv_audit_drop(srv_audit *a);

#endif
