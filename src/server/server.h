/* server.h - the OpenAI-compatible HTTP server: libevent's evhttp on one thread, the
 * engine loop (sched/sched.h) on another.
 *
 *   client ──HTTP──> evhttp thread ──submit──> sched (engine thread) ──> sov_decode
 *          <──SSE───  (JSON, SSE)  <──output── (poll after a pipe wake-up)
 *
 * The HTTP thread parses and checks requests (server/openai.h), renders chat templates,
 * tokenizes and submits; the engine thread does all model work and wakes the HTTP thread
 * through a pipe when output is ready. Endpoints: POST /v1/chat/completions,
 * POST /v1/completions, POST /v1/embeddings, GET /v1/models, /health, /ready, /metrics,
 * and the web chat and console: GET /, /console, /assets/..., /console/api/stats (web.h). */
#ifndef SOV_SERVER_SERVER_H
#define SOV_SERVER_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"
#include "sandbox/sandbox.h"
#include "sched/sched.h"
#include "server/tls.h"
#include "sov.h"
#include "tenants/tenants.h"

typedef struct server_params {
    const char *host;
    int port;                  /* 0: any free port (the chosen one is printed) */
    const char *model_id;      /* the id clients name in "model" and /v1/models lists */
    int32_t n_parallel;        /* sequences generating at once */
    int32_t n_batch;           /* tokens per engine step (prefill chunk budget) */
    int32_t max_queue;         /* requests waiting beyond n_parallel; more get 429 */
    int32_t n_ctx;             /* positions per sequence */
    size_t max_body;           /* largest request body; larger gets 413 */
    double request_timeout_s;  /* per-request deadline from arrival; 0: none */
    double shutdown_timeout_s; /* after SIGTERM, how long running streams may finish */
    int http_timeout_s;        /* idle read/write timeout of a connection */
    const char *ready_file;    /* when set, "host port\n" is written there once listening */
    tenants *tenants;          /* API keys, limits and usage (the caller opens and closes it);
                                  NULL: open to anyone, one default tenant */
    bool metrics_open;         /* /metrics without an admin key even when keys exist */
    sched_policy policy;       /* fair across tenants (default) or FIFO */
    const char *model_sha256;  /* the model file's SHA-256 (hex), for /v1/models and the audit */
    const char *model_signer;  /* id of the trusted key that signed the model (16 hex digits), for
                                  /v1/models and the audit; NULL: not checked (no --trusted-keys) */
    const sov_policy *data_policy; /* the node's data-handling policy (never NULL) */
    tls_ctx *tls;                  /* HTTPS (and mTLS) on the port (the caller makes and frees it);
                                      NULL: plain HTTP */
    const char *audit_node;        /* the audit key's id when tenants write the audit log
                                      (tenants_params.audit); NULL: no audit log */
    const char *node;              /* this replica's name, sent as X-Sov-Node on every answer
                                      (checked by the caller: a header-safe token); NULL: none */
    const sandbox_params *sandbox; /* the lockdown applied once everything is open
                                      (docs/SANDBOX.md); NULL: none */
    const sov_chat_template *chat_template; /* the model's own Jinja template (or the operator's
                                               --chat-template-file), compiled; NULL: the built-in
                                               families of src/tok/chat.c */
    double cpu_watts;        /* energy estimate: W per busy core (<= 0: the default; docs/ENERGY.md) */
    double dram_pj_per_byte; /* energy estimate: DRAM pJ per byte read (<= 0: the default) */
    int64_t kv_bytes_per_pos; /* bytes of one cached position, all layers (0: an F16 cache) */
} server_params;

/* Serves until SIGTERM or SIGINT, then shuts down gracefully: stops accepting, lets
 * running requests finish for up to shutdown_timeout_s, cancels the rest and returns 0.
 * Returns 1 (after a message on stderr) when it cannot start. ctx must have
 * n_seq_max >= n_parallel and n_batch >= the server's n_batch. */
int server_run(const sov_model *model, sov_context *ctx, const server_params *p);

#endif
