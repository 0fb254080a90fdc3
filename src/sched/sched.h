/* sched.h - the engine loop: iteration-level continuous batching over sov_decode.
 *
 * One engine thread owns the sov_context. Each step it
 *   1. takes newly submitted requests into the waiting queue and drops cancelled or
 *      timed-out ones (their sequence and KV blocks are freed in that step),
 *   2. admits waiting requests while fewer than n_parallel run and the KV pool has room
 *      for their prompt. Under SCHED_POLICY_FAIR (the default) the next request is the
 *      oldest of the tenant that would have the fewest running sequences per unit of
 *      weight after admitting it, so slots are shared in proportion to the tenants'
 *      weights; when every slot is busy (or the pool is full) and that tenant is under
 *      its share while another is over it, the other's newest decoding request is
 *      preempted to make room (a few per step; only moves that leave the split fairer,
 *      so it never ping-pongs). Under SCHED_POLICY_FIFO requests are admitted in
 *      arrival order. Either way a prompt starts from the longest run of its full
 *      blocks already in the prefix cache (sched/prefix.h) and a request whose next
 *      block another request is computing right now waits for it instead of computing
 *      it again,
 *   3. builds one batch: one token for every sequence that is generating, then prompt
 *      chunks (chunked prefill) up to the per-step token budget n_batch, so a long
 *      prompt never stalls the streams; under FAIR the prompt budget is shared between
 *      the tenants with prompts in flight by deficit round robin (quantum in proportion
 *      to weight), so one tenant's long prompts cannot hold another's out of the step,
 *   4. makes room in the KV pool: evicts prefix-cache blocks nobody uses (LRU), and
 *      when that is not enough preempts the most recently admitted request (under FAIR:
 *      of the tenant furthest over its share; its blocks are freed; it goes back to the
 *      front of the queue and is recomputed later, its output so far kept),
 *   5. runs sov_decode, samples a token for every sequence that finished its prompt or
 *      generated, turns tokens into text (UTF-8 safe, stop strings held back) and hands
 *      the new output to the server (notify callback),
 *   6. registers newly completed full blocks in the prefix cache.
 *
 * Embedding requests (sched_req_params.embed) share the same queue, slots, fairness and
 * batches: their tokens are prompt tokens like any other, but they ask the forward pass
 * for final hidden states instead of logits (the LM head runs only for rows that need
 * logits), pool them as the model's pooling type says (model/embed.h) as the chunks come,
 * and end when the last token is in, with the L2-normalised vector in their last delta.
 * They never use or fill the prefix cache (every token's hidden state is needed, and
 * they must leave no KV behind): their sequence is freed when they end.
 *
 * With a single tenant FAIR makes exactly FIFO's choices.
 * The server thread talks to it only through this API (a mutex-protected queue and
 * per-request output buffers); the engine thread never touches the network.
 * Every request has two references: the engine's (dropped when it is done) and the
 * submitter's (sched_req_release). */
#ifndef SOV_SCHED_SCHED_H
#define SOV_SCHED_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "energy/energy.h"
#include "sov.h"

typedef struct sched sched;
typedef struct sched_req sched_req;

enum { SCHED_MAX_TOP_LOGPROBS = 20, SCHED_MAX_STOPS = 16 };

/* How waiting requests are admitted and the step's prompt budget is shared. */
typedef enum sched_policy {
    SCHED_POLICY_FAIR = 0, /* by tenant: slots and prompt budget shared in proportion to
                              weights; a tenant over its share yields a slot to a tenant
                              under it (see sched.c) */
    SCHED_POLICY_FIFO = 1, /* arrival order, whoever sent it (the old behaviour) */
} sched_policy;

typedef struct sched_params {
    sched_policy policy;
    int32_t n_parallel;         /* most sequences running at once (<= the context's n_seq_max) */
    int32_t n_batch;            /* tokens per step (<= the context's n_batch) */
    int32_t max_queue;          /* most requests waiting; more are refused (429), except under
                                   FAIR a tenant with nothing waiting or running */
    int32_t n_ctx;              /* positions per sequence (the context's n_ctx) */
    void (*notify)(void *user); /* engine thread: some request has new output */
    void *notify_user;
    energy_meter *meter;        /* joules per step, split over the batch's requests by
                                   energy_token_work (energy.h); used by the engine thread
                                   only; NULL: no energy accounting */
    int64_t kv_bytes_per_pos;   /* bytes of one cached position's keys and values, all layers
                                   (estimate of the KV bytes a step reads); 0: an F16 cache */
} sched_params;

/* Starts the engine thread on ctx (which it then owns until sched_free). */
sov_status sched_new(sov_context *ctx, const sov_model *model, const sched_params *p, sched **out);
/* Cancels everything, stops the thread and frees the scheduler (not the context). */
void sched_free(sched *s);

typedef struct sched_req_params {
    sov_sampler_params sp;
    int32_t max_tokens;                 /* most tokens to generate (>= 1) */
    bool ignore_eos;                    /* keep going past end-of-generation tokens */
    int32_t top_logprobs;               /* -1: no logprobs; 0..20: the chosen token's and this many more */
    const char *stops[SCHED_MAX_STOPS]; /* stop strings (copied) */
    int32_t n_stops;
    const sov_token *bias_tok; /* logit bias (copied) */
    const float *bias;
    int32_t n_bias;
    double deadline;    /* sov_now_s() time after which the request ends; 0: none */
    const char *tenant; /* prefix-cache scope and fairness unit (copied); NULL: the
                           default tenant. Never anything the client sent: the server
                           sets it from the authenticated key. */
    double weight;      /* the tenant's weight for fair sharing (<= 0: 1) */
    bool render_special; /* control tokens go out as their text (a reply parser needs
                            markers such as [TOOL_CALLS] or <|channel|>) */
    bool embed;         /* an embedding request: the prompt is the input, nothing is
                           generated (sp, max_tokens, stops, bias and logprobs are unused);
                           the last delta carries the embedding */
    struct gram *grammar; /* constrained decoding (src/grammar): only tokens that keep the
                             output inside this grammar are sampled, and the request stops
                             when the document is complete; referenced, NULL: none */
} sched_req_params;

/* A request for prompt[0..n) (for an embedding request, n may reach n_ctx). user is the
 * submitter's handle (sched_req_user).
 * NULL when out of memory or a parameter is invalid (sov_last_error says which). */
sched_req *sched_req_new(const sov_token *prompt, int32_t n, const sched_req_params *p, void *user);
void *sched_req_user(const sched_req *r);
/* Lowers the request's max_tokens (before it is submitted): a quota granted fewer tokens. */
void sched_req_limit_tokens(sched_req *r, int32_t max_tokens);
/* Drops the submitter's reference (after its last sched_take, or to abandon a request
 * that was never submitted). */
void sched_req_release(sched_req *r);

typedef enum sched_submit_result {
    SCHED_SUBMITTED = 0,
    SCHED_QUEUE_FULL, /* max_queue are waiting (and, under FAIR, this tenant has
                         requests already), or out of memory: try later (429) */
    SCHED_TOO_LONG,   /* the prompt cannot fit the context or the KV pool (400) */
    SCHED_CLOSED,     /* shutting down (503) */
} sched_submit_result;

sched_submit_result sched_submit(sched *s, sched_req *r);
/* Submits n requests of one tenant together, all or none (the inputs of one embeddings
 * request): the queue bound counts them as one submission, so one request of many inputs
 * may take the queue past max_queue by its inputs. */
sched_submit_result sched_submit_all(sched *s, sched_req *const *reqs, int32_t n);
/* Any thread: ends the request within one step, freeing its sequence and blocks. */
void sched_cancel(sched *s, sched_req *r);
/* Refuses new requests from now on (graceful shutdown). */
void sched_close(sched *s);
/* Cancels every request (the end of a graceful shutdown's grace period). */
void sched_cancel_all(sched *s);
/* Requests submitted and not yet done (waiting or running). */
int32_t sched_active(sched *s);

typedef enum sched_finish {
    SCHED_RUNNING = 0,
    SCHED_FINISH_STOP,      /* end-of-generation token or a stop string */
    SCHED_FINISH_LENGTH,    /* max_tokens, the context, or the KV pool */
    SCHED_FINISH_DEADLINE,  /* the request's deadline passed */
    SCHED_FINISH_CANCELLED, /* cancelled (client gone, shutdown) */
    SCHED_FINISH_ERROR,     /* the engine failed (message in sched_delta.error) */
} sched_finish;

typedef struct sched_tok {
    sov_token id;
    float logprob;
    int32_t n_top;
    sov_token top_id[SCHED_MAX_TOP_LOGPROBS];
    float top_lp[SCHED_MAX_TOP_LOGPROBS];
} sched_tok;

/* What a request produced since the last sched_take. */
typedef struct sched_delta {
    char *text; /* new text (UTF-8 as produced; caller frees), may be NULL */
    size_t len;
    sched_tok *toks; /* new tokens with logprobs (when asked; caller frees) */
    int32_t n_toks;
    int32_t n_prompt;    /* prompt tokens */
    int32_t n_cached;    /* prompt tokens served from the prefix cache */
    int32_t n_gen;       /* tokens generated so far */
    bool started;        /* the first token has been produced */
    uint64_t first_step; /* sched_stats.steps after the step that produced the first
                            token (0 before): time to first token in engine steps */
    sched_finish finish; /* SCHED_RUNNING until the request is done */
    char error[160];
    double energy_j;     /* joules attributed to the request so far (sched_params.meter;
                            0 without one); its source is sched_stats.energy_source */
    float *embd;         /* embedding requests, at SCHED_FINISH_STOP: the L2-normalised
                            embedding, n_embd floats (caller frees); else NULL */
    int32_t n_embd;
} sched_delta;

/* Requests with new output since their last sched_take, at most max (server thread). */
int32_t sched_poll(sched *s, sched_req **out, int32_t max);
/* Moves a request's new output to d (the caller frees d->text and d->toks). */
void sched_take(sched *s, sched_req *r, sched_delta *d);

/* ---- statistics for /metrics ---- */

enum { SCHED_HIST_BUCKETS = 14 };
extern const double sched_hist_bounds[SCHED_HIST_BUCKETS]; /* seconds, upper bounds */

typedef struct sched_hist {
    uint64_t count[SCHED_HIST_BUCKETS + 1]; /* the last is +Inf */
    double sum;
    uint64_t n;
} sched_hist;

typedef struct sched_stats {
    int32_t waiting, running, n_parallel;
    int32_t kv_blocks_total, kv_blocks_free, kv_block_size;
    int32_t prefix_cached_blocks;
    uint64_t prompt_tokens, prompt_tokens_cached, generated_tokens;
    uint64_t steps, batch_tokens, preemptions, prefix_evictions;
    uint64_t fair_preemptions; /* of the preemptions, those that gave a slot to a tenant
                                  under its share (the rest made room in the KV pool) */
    uint64_t finished[SCHED_FINISH_ERROR + 1];
    sched_hist ttft, itl, queue_time;
    double energy_j;              /* joules of every step (sched_params.meter); the requests'
                                     shares sum to it */
    energy_source energy_source;  /* where energy_j comes from */
    bool energy_on;               /* a meter is set */
} sched_stats;

void sched_get_stats(sched *s, sched_stats *out);

/* A tenant's requests running and waiting in the engine as of the last step's batch
 * (0 and 0 for a tenant with none; NULL: the default tenant). For tests and per-tenant
 * gauges. Returns the step the counts were taken in (sched_stats.steps counts it once
 * it has run): counts from two calls belong to the same step when these are equal. */
uint64_t sched_tenant_load(sched *s, const char *tenant, int32_t *running, int32_t *waiting);

#endif
