/* sched.c - the engine loop (see sched.h for the step). Locking: s->mu guards the inbox,
 * the ready list, the counters, the tenant table and each request's "shared" fields
 * (output buffers, finish, cancel, refs); everything else in a request belongs to the
 * engine thread. The server thread never calls into the context.
 *
 * Fair scheduling (SCHED_POLICY_FAIR). The unit is the tenant (sched_req_params.tenant)
 * with a weight w. With r_t running sequences, a tenant's load is r_t / w_t.
 *   - Admission into a free slot takes the oldest admissible request of the tenant
 *     whose load after one more slot, (r_t + 1) / w_t, is lowest (ties: the tenant with
 *     the oldest such request). This is weighted fair queueing over slots: the "+1"
 *     is the tenant's finish tag, so with weights 3:1 and 4 slots the split is 3:1.
 *   - Fair preemption: when that request cannot get a slot (all busy) or room in the
 *     pool, and a running tenant a satisfies (r_b + 1) / w_b <= (r_a - 1) / w_a, one of
 *     a's requests is preempted (its newest decoding one: its full blocks stay in the
 *     prefix cache, so readmission recomputes at most one block) and b's admitted. The
 *     move lowers sum_t r_t^2 / w_t, so it can never be undone by the reverse move and
 *     preemptions stop once the split is as fair as whole slots allow. At most
 *     fair_preempt_max() per step, and never a request admitted in the same step.
 *   - Prompt budget: decode tokens first (one per running sequence: slots are shared
 *     fairly, so that part is too), then, when more than one tenant has prompt tokens
 *     pending, deficit round robin: each gets a quantum of budget * w_t / sum(w), spends
 *     it on its prompts in admission order, carries what it could not spend while it
 *     still has prompt tokens pending, and what nobody could use goes in admission
 *     order (the budget is never left idle).
 *   - Queue bound: a tenant with nothing submitted is accepted even when the queue is
 *     full, so a flood from one tenant cannot lock the others out.
 * With one tenant every rule above reduces to FIFO's. */
#include "sched/sched.h"
#include "grammar/grammar.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "model/embed.h"
#include "sample/sample.h"
#include "sched/prefix.h"

const double sched_hist_bounds[SCHED_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                      0.25,  0.5,    1.0,   2.5,  5.0,   10.0, 30.0};

/* A tenant with submitted requests. It lives from its first request's submission to
 * its last request's end, so the table holds only tenants with work: at most one entry
 * per active request. Created and dropped under mu (the submit side counts requests for
 * the queue bound); the engine fields need no lock because only the engine thread uses
 * them, and an entry cannot be dropped while a request the engine holds points at it. */
typedef struct sched_tenant {
    uint64_t root; /* pc_root(name): compared before the name */
    /* under mu */
    int32_t n_active;                 /* submitted, not yet finished */
    int32_t pub_running, pub_waiting; /* as of the last step (sched_tenant_load) */
    /* engine thread only */
    double weight;            /* > 0, from its latest request (set as the engine
                                 takes it in) */
    int32_t running, waiting; /* its requests in s->running, s->waiting */
    uint64_t scan_mark;       /* admission: the last candidate scan that saw it */
    uint64_t plan_mark;       /* the last plan that shared the prompt budget with it */
    uint64_t commit_mark;     /* the plans_run whose plan set deficit */
    double deficit;           /* DRR: prompt tokens it is owed */
    double deficit_next;      /* what deficit becomes if the current plan runs */
    char name[];              /* fixed */
} sched_tenant;

struct sched_req {
    /* fixed at creation */
    sched_req_params p; /* stops, bias_tok, bias, tenant point at owned copies */
    char *stop_copy[SCHED_MAX_STOPS];
    sov_token *bias_tok;
    float *bias;
    char *tenant;
    uint64_t root; /* prefix-cache root of the tenant */
    void *user;
    int32_t n_prompt;
    double t_arrive;
    sched_tenant *ten; /* set by sched_submit (under mu), then fixed */

    /* engine thread only */
    sov_token *toks;          /* [cap_toks] prompt, then generated tokens */
    int32_t n_toks, cap_toks; /* toks[n_pos..n_toks) are still to be fed */
    uint64_t *hashes;         /* [cap_hashes] chain hash through each full block of toks */
    int32_t n_hashes, cap_hashes;
    int32_t n_registered; /* blocks [0, n_registered) offered to the prefix cache */
    sov_seq_id seq;       /* -1 when it holds no sequence */
    int32_t n_pos;        /* positions in the KV cache */
    sov_sampler *smp;
    sov_stopper *stopper;
    gram_matcher *gm; /* the grammar's state when p.grammar is set */
    char utf8[8]; /* bytes of an incomplete UTF-8 character */
    int32_t n_utf8;
    int32_t n_gen;
    bool admitted_once;
    bool cancel_seen;
    uint64_t admit_order;
    uint64_t defer_epoch; /* FAIR admission: deferred in this admission round */
    double t_first, t_last;
    int32_t step_n;   /* tokens in this step's batch */
    int32_t step_row; /* logits row this step, -1 for none */
    int32_t embd_row; /* embedding requests: its first hidden-state row this step */
    double *acc;      /* embedding requests: (E) the pooled sum so far */
    double step_work; /* energy: FLOPs of its tokens in this step (energy_token_work) */

    /* shared, under sched.mu */
    char *out;
    size_t out_len, out_cap;
    sched_tok *out_toks;
    int32_t n_out_toks, cap_out_toks;
    int32_t n_cached; /* prompt tokens served from the prefix cache */
    bool started;
    uint64_t first_step; /* steps after the one that produced the first token */
    double energy_j;     /* joules attributed so far */
    float *embd; /* embedding requests: (E) the result, once done */
    bool cancel;
    bool in_ready;
    sched_req *ready_next;
    sched_req *inbox_next;
    sched_finish finish;
    char error[160];
    int refs;
};

struct sched {
    sov_context *ctx;
    const sov_vocab *vocab;
    gram_vocab *gv; /* the vocabulary trie for constrained decoding (engine thread; made on
                       first use) */
    sched_params p;
    int32_t n_vocab, block_size;
    int32_t n_embd, pooling; /* the model's width and pooling type (embedding requests) */
    bool whole;              /* an encoder model: every input runs in one step, whole */
    prefix_cache pc;
    pthread_t thread;
    bool thread_started;

    /* engine thread only */
    sched_req **waiting; /* [cap_waiting] FIFO; index 0 is next */
    int32_t n_waiting, cap_waiting;
    sched_req **running; /* [n_parallel] in admission order */
    int32_t n_running;
    uint64_t admit_counter;
    float *logits;    /* [n_parallel][n_vocab] */
    sov_token *b_tok; /* [n_batch] the step's batch */
    sov_seq_id *b_seq;
    int32_t *b_pos;
    uint8_t *b_logits;
    uint8_t *b_embd;  /* [n_batch] the step's rows that want hidden states */
    float *embd_out;  /* [n_batch][n_embd] their hidden states (allocated at the first
                         embedding request) */
    int32_t *blocks_tmp;    /* [n_ctx / block_size + 1] */
    sched_tenant **drr_ten; /* [n_parallel] plan: tenants with prompt tokens pending */
    uint64_t scan_seq;      /* FAIR admission: candidate scans so far */
    uint64_t admit_epoch;   /* FAIR admission: rounds so far */
    uint64_t plan_seq;      /* plans that looked for tenants with prompts so far */
    uint64_t plans_run;     /* steps planned and run so far (commit_plan) */
    bool drr_planned;       /* the current plan shared the prompt budget */
    energy_model em;        /* energy: the model's figures for energy_token_work */
    double *e_work, *e_share; /* [n_parallel] energy: this step's work and joules per request */

    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sched_req *inbox_head, *inbox_tail;
    sched_req *ready_head, *ready_tail;
    int32_t n_active;       /* submitted, not yet finished */
    sched_tenant **tenants; /* [cap_tenants] tenants with active requests */
    int32_t n_tenants, cap_tenants;
    uint64_t pub_step; /* the step of the tenants' pub_ counts */
    bool wake, stop, closed, cancel_all;
    sched_stats st;
};

/* ---- requests ---- */

static void req_free(sched_req *r) {
    for (int i = 0; i < SCHED_MAX_STOPS; i++)
        free(r->stop_copy[i]);
    free(r->bias_tok);
    free(r->bias);
    free(r->tenant);
    free(r->toks);
    free(r->hashes);
    sov_sampler_free(r->smp);
    sov_stopper_free(r->stopper);
    gram_matcher_free(r->gm);
    gram_free(r->p.grammar);
    free(r->out);
    free(r->out_toks);
    free(r->acc);
    free(r->embd);
    free(r);
}

sched_req *sched_req_new(const sov_token *prompt, int32_t n, const sched_req_params *p, void *user) {
    if (n < 1 || !prompt || !p || (p->max_tokens < 1 && !p->embed) || p->n_stops < 0 || p->n_stops > SCHED_MAX_STOPS ||
        p->n_bias < 0 || p->top_logprobs > SCHED_MAX_TOP_LOGPROBS) {
        sov_fail(SOV_ERR_ARG, "sched: bad request parameters");
        return NULL;
    }
    sched_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->p = *p;
    gram_ref(r->p.grammar);
    r->user = user;
    r->n_prompt = n;
    r->seq = -1;
    r->refs = 1;
    r->t_arrive = sov_now_s();
    bool ok = true;
    for (int32_t i = 0; i < p->n_stops; i++) {
        r->stop_copy[i] = strdup(p->stops[i] ? p->stops[i] : "");
        r->p.stops[i] = r->stop_copy[i];
        ok = ok && r->stop_copy[i];
    }
    if (p->n_bias > 0) {
        r->bias_tok = malloc((size_t)p->n_bias * sizeof *r->bias_tok);
        r->bias = malloc((size_t)p->n_bias * sizeof *r->bias);
        if (r->bias_tok && r->bias) {
            memcpy(r->bias_tok, p->bias_tok, (size_t)p->n_bias * sizeof *r->bias_tok);
            memcpy(r->bias, p->bias, (size_t)p->n_bias * sizeof *r->bias);
        } else {
            ok = false;
        }
    }
    r->p.bias_tok = r->bias_tok;
    r->p.bias = r->bias;
    if (!(p->weight > 0) || !isfinite(p->weight)) r->p.weight = 1; /* also NaN */
    r->tenant = strdup(p->tenant ? p->tenant : "");
    r->p.tenant = r->tenant;
    r->root = r->tenant ? pc_root(r->tenant) : 0;
    r->cap_toks = (int32_t)SOV_MIN((int64_t)n + SOV_MIN(p->max_tokens, 256) + 1, (int64_t)INT32_MAX);
    r->toks = malloc((size_t)r->cap_toks * sizeof *r->toks);
    if (!ok || !r->tenant || !r->toks) {
        req_free(r);
        sov_fail(SOV_ERR_NOMEM, "sched: out of memory for a request");
        return NULL;
    }
    memcpy(r->toks, prompt, (size_t)n * sizeof *prompt);
    r->n_toks = n;
    return r;
}

void *sched_req_user(const sched_req *r) { return r->user; }

void sched_req_limit_tokens(sched_req *r, int32_t max_tokens) {
    if (max_tokens >= 1 && max_tokens < r->p.max_tokens) r->p.max_tokens = max_tokens;
}

/* The submitter's reference; with no scheduler the request was never submitted. */
void sched_req_release(sched_req *r) {
    if (!r) return;
    /* the submitter releases after the final sched_take (or without submitting), so the
     * engine's reference is gone by then; atomic all the same */
    if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) req_free(r);
}

/* ---- tenants (under mu) ---- */

static sched_tenant *tenant_find_locked(const sched *s, uint64_t root, const char *name) {
    for (int32_t i = 0; i < s->n_tenants; i++) {
        sched_tenant *t = s->tenants[i];
        if (t->root == root && strcmp(t->name, name) == 0) return t;
    }
    return NULL;
}

/* A new entry for r's tenant; NULL when out of memory. */
static sched_tenant *tenant_add_locked(sched *s, const sched_req *r) {
    if (s->n_tenants == s->cap_tenants) {
        const int32_t cap = s->cap_tenants ? s->cap_tenants * 2 : 8;
        sched_tenant **p = realloc(s->tenants, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        s->tenants = p;
        s->cap_tenants = cap;
    }
    const size_t n = strlen(r->tenant) + 1;
    sched_tenant *t = calloc(1, sizeof *t + n);
    if (!t) return NULL;
    t->root = r->root;
    memcpy(t->name, r->tenant, n);
    s->tenants[s->n_tenants++] = t;
    return t;
}

/* The end of one of the tenant's requests: the entry goes with its last. */
static void tenant_release_locked(sched *s, sched_tenant *t) {
    if (--t->n_active > 0) return;
    for (int32_t i = 0; i < s->n_tenants; i++) {
        if (s->tenants[i] == t) {
            s->tenants[i] = s->tenants[--s->n_tenants];
            break;
        }
    }
    free(t);
}

/* Snapshot for sched_tenant_load, taken with the batch of a step. */
static void publish_tenants(sched *s) {
    pthread_mutex_lock(&s->mu);
    s->pub_step = s->st.steps + 1;
    for (int32_t i = 0; i < s->n_tenants; i++) {
        sched_tenant *t = s->tenants[i];
        t->pub_running = t->running;
        t->pub_waiting = t->waiting;
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- output (engine thread, under mu) ---- */

static void mark_ready_locked(sched *s, sched_req *r) {
    if (r->in_ready) return;
    r->in_ready = true;
    r->ready_next = NULL;
    if (s->ready_tail)
        s->ready_tail->ready_next = r;
    else
        s->ready_head = r;
    s->ready_tail = r;
}

static bool append_text_locked(sched_req *r, const char *t, size_t n) {
    if (n == 0) return true;
    if (r->out_len + n > r->out_cap) {
        size_t cap = r->out_cap ? r->out_cap : 256;
        while (cap < r->out_len + n)
            cap *= 2;
        char *p = realloc(r->out, cap);
        if (!p) return false;
        r->out = p;
        r->out_cap = cap;
    }
    memcpy(r->out + r->out_len, t, n);
    r->out_len += n;
    return true;
}

static bool append_tok_locked(sched_req *r, const sched_tok *t) {
    if (r->n_out_toks == r->cap_out_toks) {
        const int32_t cap = r->cap_out_toks ? r->cap_out_toks * 2 : 16;
        sched_tok *p = realloc(r->out_toks, (size_t)cap * sizeof *p);
        if (!p) return false;
        r->out_toks = p;
        r->cap_out_toks = cap;
    }
    r->out_toks[r->n_out_toks++] = *t;
    return true;
}

static void hist_add(sched_hist *h, double v) {
    int i = 0;
    while (i < SCHED_HIST_BUCKETS && v > sched_hist_bounds[i])
        i++;
    h->count[i]++;
    h->sum += v;
    h->n++;
}

/* ---- engine: lists ---- */

static void waiting_insert(sched *s, int32_t at, sched_req *r) {
    if (s->n_waiting == s->cap_waiting) {
        const int32_t cap = s->cap_waiting ? s->cap_waiting * 2 : 64;
        sched_req **p = realloc(s->waiting, (size_t)cap * sizeof *p);
        if (!p) abort(); /* a few pointers; the queue bound keeps this small */
        s->waiting = p;
        s->cap_waiting = cap;
    }
    memmove(s->waiting + at + 1, s->waiting + at, (size_t)(s->n_waiting - at) * sizeof *s->waiting);
    s->waiting[at] = r;
    s->n_waiting++;
    r->ten->waiting++;
}

static void waiting_remove(sched *s, int32_t at) {
    s->waiting[at]->ten->waiting--;
    memmove(s->waiting + at, s->waiting + at + 1, (size_t)(s->n_waiting - at - 1) * sizeof *s->waiting);
    s->n_waiting--;
}

static void running_add(sched *s, sched_req *r) {
    s->running[s->n_running++] = r;
    r->ten->running++;
}

static void running_remove(sched *s, sched_req *r) {
    for (int32_t i = 0; i < s->n_running; i++) {
        if (s->running[i] == r) {
            memmove(s->running + i, s->running + i + 1, (size_t)(s->n_running - i - 1) * sizeof *s->running);
            s->n_running--;
            r->ten->running--;
            return;
        }
    }
}

/* Gives the request's sequence back: its blocks return to the pool unless the prefix
 * cache (or another sequence) holds them; its cached chain becomes recently used, head
 * last so the tail is evicted first. */
static void drop_seq(sched *s, sched_req *r) {
    if (r->seq < 0) return;
    pc_touch_chain(&s->pc, r->hashes, r->n_registered);
    sov_seq_free(s->ctx, r->seq);
    r->seq = -1;
    r->n_pos = 0;
    r->n_registered = 0;
}

/* Ends a request (it is in neither list any more): frees its engine state, publishes the
 * finish and drops the engine's reference. */
static void finish_req(sched *s, sched_req *r, sched_finish f, const char *error) {
    drop_seq(s, r);
    sov_sampler_free(r->smp);
    r->smp = NULL;
    sov_stopper_free(r->stopper);
    r->stopper = NULL;
    gram_matcher_free(r->gm);
    r->gm = NULL;
    pthread_mutex_lock(&s->mu);
    r->finish = f;
    if (error) snprintf(r->error, sizeof r->error, "%s", error);
    s->st.finished[f]++;
    s->n_active--;
    tenant_release_locked(s, r->ten);
    r->ten = NULL;
    mark_ready_locked(s, r);
    if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) req_free(r);
    pthread_mutex_unlock(&s->mu);
}

/* Takes r's sequence away and puts r back at the front of the queue, its output kept;
 * its registered blocks stay in the prefix cache, so readmission recomputes little.
 * fair: to give the slot to a tenant under its share (else for room in the pool). */
static void preempt(sched *s, sched_req *r, bool fair) {
    drop_seq(s, r);
    running_remove(s, r);
    waiting_insert(s, 0, r);
    pthread_mutex_lock(&s->mu);
    s->st.preemptions++;
    s->st.fair_preemptions += fair;
    pthread_mutex_unlock(&s->mu);
}

/* ---- engine: prefix hashes ---- */

static bool ensure_hashes(sched *s, sched_req *r, int32_t n_blocks) {
    if (n_blocks > r->cap_hashes) {
        int32_t cap = r->cap_hashes ? r->cap_hashes : 16;
        while (cap < n_blocks)
            cap *= 2;
        uint64_t *p = realloc(r->hashes, (size_t)cap * sizeof *p);
        if (!p) return false;
        r->hashes = p;
        r->cap_hashes = cap;
    }
    const int32_t bs = s->block_size;
    for (int32_t b = r->n_hashes; b < n_blocks; b++)
        r->hashes[b] = pc_chain(b ? r->hashes[b - 1] : r->root, r->toks + (size_t)b * (size_t)bs, bs);
    if (n_blocks > r->n_hashes) r->n_hashes = n_blocks;
    return true;
}

/* Offers the request's newly completed full blocks to the prefix cache. */
static void register_blocks(sched *s, sched_req *r) {
    if (r->p.embed) return; /* leaves no KV behind */
    const int32_t full = r->n_pos / s->block_size;
    if (full <= r->n_registered || !ensure_hashes(s, r, full)) return;
    const int32_t *bt;
    const int32_t nb = sov_seq_blocks(s->ctx, r->seq, &bt);
    for (int32_t b = r->n_registered; b < full && b < nb; b++)
        pc_insert(&s->pc, b ? r->hashes[b - 1] : r->root, r->hashes[b],
                  r->toks + (size_t)b * (size_t)s->block_size, bt[b]);
    r->n_registered = full;
}

/* True when a running request is about to compute block `b` with the same chain hash:
 * waiting for it shares the work instead of repeating it. */
static bool block_in_flight(const sched *s, const sched_req *r, int32_t b) {
    for (int32_t i = 0; i < s->n_running; i++) {
        const sched_req *q = s->running[i];
        if (q->n_hashes > b && q->hashes[b] == r->hashes[b] && q->n_pos < (b + 1) * s->block_size)
            return true;
    }
    return false;
}

/* ---- engine: admission ---- */

static int32_t blocks_for(const sched *s, int32_t n_pos) {
    return (n_pos + s->block_size - 1) / s->block_size;
}

/* n_match full blocks from the prefix cache (in blocks_tmp), then `partial` leading
 * positions of one more cached block (blocks_tmp[n_match]) when partial > 0. */
static sov_status start_req(sched *s, sched_req *r, int32_t n_match, int32_t partial) {
    sov_status st = sov_seq_new(s->ctx, &r->seq);
    const int32_t n_attach = n_match + (partial > 0);
    if (!st && n_attach) st = sov_seq_attach_blocks(s->ctx, r->seq, s->blocks_tmp, n_attach);
    r->n_pos = n_match * s->block_size + partial;
    /* the rest of the partial block is someone else's: forget it (the first write into
     * the shared block copies it) */
    if (!st && partial) st = sov_seq_truncate(s->ctx, r->seq, r->n_pos);
    if (st) return st;
    r->n_registered = n_match;
    if (r->p.embed) { /* (re)started from position 0: the pooled sum starts over */
        if (!r->acc) r->acc = malloc((size_t)s->n_embd * sizeof *r->acc);
        if (!r->acc) st = sov_fail(SOV_ERR_NOMEM, "sched: out of memory for an embedding");
        else memset(r->acc, 0, (size_t)s->n_embd * sizeof *r->acc);
    }
    if (!r->admitted_once) {
        r->admitted_once = true;
        if (!r->p.embed) { /* generation: its sampler and stop strings */
            sov_sampler_params sp = r->p.sp;
            st = sov_sampler_new(&sp, s->n_vocab, &r->smp);
            for (int32_t i = 0; !st && i < r->p.n_bias; i++)
                st = sov_sampler_set_logit_bias(r->smp, r->bias_tok[i], r->bias[i]);
            for (int32_t i = 0; !st && i < r->n_prompt; i++)
                sov_sampler_accept(r->smp, r->toks[i]);
            if (!st) st = sov_stopper_new((const char *const *)r->p.stops, (size_t)r->p.n_stops, &r->stopper);
            if (!st && r->p.grammar) { /* the vocabulary trie is made once, by the first such request */
                if (!s->gv) st = gram_vocab_new(s->vocab, &s->gv);
                if (!st) st = gram_matcher_new(r->p.grammar, s->gv, &r->gm);
            }
        }
        const int32_t cached = SOV_MIN(r->n_pos, r->n_prompt);
        pthread_mutex_lock(&s->mu);
        r->n_cached = cached;
        s->st.prompt_tokens += (uint64_t)r->n_prompt;
        s->st.prompt_tokens_cached += (uint64_t)cached;
        hist_add(&s->st.queue_time, sov_now_s() - r->t_arrive);
        pthread_mutex_unlock(&s->mu);
    }
    r->admit_order = ++s->admit_counter;
    running_add(s, r);
    return st;
}

/* What admitting a waiting request takes (probe). */
typedef struct admit_probe {
    int32_t m;       /* full blocks found in the prefix cache (ids in blocks_tmp[0..m)) */
    int32_t partial; /* leading positions of one more cached block (blocks_tmp[m]); 0: none */
    int32_t need;    /* blocks from the pool: the rest of the prompt and one to grow */
    bool deferred;   /* a running request is computing its next block: wait for that */
} admit_probe;

/* The pool as one round of admissions sees it. */
typedef struct admit_room {
    int32_t reserve;   /* blocks promised: one per running sequence to grow, plus what the
                          requests admitted in this round need */
    int32_t evictable; /* cached blocks nobody uses; -1 until needed */
} admit_room;

/* Looks r's prompt up in the prefix cache (the matched blocks land in blocks_tmp).
 * False when out of memory. */
static bool probe(sched *s, sched_req *r, admit_probe *pr) {
    if (r->p.embed) { /* every hidden state is needed: nothing comes from the cache */
        *pr = (admit_probe){.need = blocks_for(s, r->n_toks) + 1};
        return true;
    }
    const int32_t full = (r->n_toks - 1) / s->block_size; /* blocks before the last token */
    if (!ensure_hashes(s, r, full)) return false;
    pr->m = pc_match(&s->pc, r->root, r->toks, r->hashes, full, s->blocks_tmp);
    pr->partial = 0;
    pr->need = 0;
    pr->deferred = pr->m < full && block_in_flight(s, r, pr->m);
    if (pr->deferred) return true;
    /* then the longest cached run of leading tokens in the next block, at token
     * granularity (a chat history rarely ends on a block boundary); at least the
     * last prompt token is always computed, for its logits */
    if (pr->m < full || (r->n_toks - 1) % s->block_size) {
        const int32_t at = pr->m * s->block_size;
        pr->partial = pc_match_partial(&s->pc, pr->m ? r->hashes[pr->m - 1] : r->root, r->toks + at,
                                       SOV_MIN(s->block_size - 1, r->n_toks - 1 - at), &s->blocks_tmp[pr->m]);
    }
    pr->need = blocks_for(s, r->n_toks) - pr->m + 1;
    return true;
}

/* True when the pool, with `extra` more blocks free, holds what pr needs beside what is
 * promised; the cached blocks pr attaches then stop counting as evictable. */
static bool room_for(sched *s, const admit_probe *pr, admit_room *room, int32_t extra) {
    const int32_t free_now = sov_kv_blocks_free(s->ctx) + extra;
    if (pr->need + room->reserve <= free_now) return true;
    if (room->evictable < 0) room->evictable = pc_evictable(&s->pc);
    int32_t pinned = 0; /* matched blocks only the cache holds stop being evictable */
    for (int32_t k = 0; k < pr->m + (pr->partial > 0); k++)
        pinned += sov_kv_block_refs(s->ctx, s->blocks_tmp[k]) == 1;
    if (pr->need + room->reserve > free_now + room->evictable - pinned) return false;
    room->evictable -= pinned;
    return true;
}

/* Starts waiting[i], probed into pr. */
static void admit_one(sched *s, int32_t i, const admit_probe *pr, admit_room *room) {
    sched_req *r = s->waiting[i];
    waiting_remove(s, i);
    const sov_status st = start_req(s, r, pr->m, pr->partial);
    if (st) {
        running_remove(s, r);
        finish_req(s, r, SCHED_FINISH_ERROR, sov_last_error());
        return;
    }
    room->reserve += pr->need;
}

/* FIFO: arrival order. A request deferred for an in-flight block lets later ones pass;
 * one that does not fit stops admission (the head waits for room). Returns the request
 * left waiting for room, NULL when none. */
static sched_req *admit_fifo(sched *s) {
    admit_room room = {s->n_running, -1};
    for (int32_t i = 0; i < s->n_waiting && s->n_running < s->p.n_parallel;) {
        admit_probe pr;
        if (!probe(s, s->waiting[i], &pr)) return s->waiting[i];
        if (pr.deferred) {
            i++; /* its next block is being computed; later requests may pass */
            continue;
        }
        if (!room_for(s, &pr, &room, 0)) return s->waiting[i];
        admit_one(s, i, &pr, &room);
    }
    return NULL;
}

/* True when tenant t should get the next slot before u: its load after one more slot,
 * (running + 1) / weight, is lower. */
static bool fairer(const sched_tenant *t, const sched_tenant *u) {
    return (t->running + 1) * u->weight < (u->running + 1) * t->weight;
}

/* FAIR: the index in waiting of the next request to consider, -1 for none: the oldest
 * request of the tenant that deserves a slot most (on a tie, the tenant whose request
 * came first), skipping requests found deferred in this round, so that as under FIFO a
 * deferred request lets later ones (here its tenant's) pass. Reads no cache: cheap. */
static int32_t fair_pick(sched *s) {
    const uint64_t scan = ++s->scan_seq;
    int32_t at = -1;
    for (int32_t i = 0; i < s->n_waiting; i++) {
        sched_req *r = s->waiting[i];
        if (r->defer_epoch == s->admit_epoch || r->ten->scan_mark == scan) continue;
        r->ten->scan_mark = scan; /* r is its tenant's oldest candidate */
        if (at < 0 || fairer(r->ten, s->waiting[at]->ten)) at = i;
    }
    return at;
}

/* Fair preemption: a running request whose slot should go to tenant b, NULL when none.
 * Its tenant a has the highest load after giving one up, (running - 1) / weight, and the
 * move must not overshoot: (r_b + 1) / w_b <= (r_a - 1) / w_a. Then a's newest request
 * that is decoding (it loses at most a partial block, and its first token is out),
 * else its newest. Requests admitted in this round (admit_order > since) are kept. */
static sched_req *fair_victim(const sched *s, const sched_tenant *b, uint64_t since) {
    const sched_tenant *a = NULL;
    for (int32_t i = 0; i < s->n_running; i++) {
        const sched_req *q = s->running[i];
        const sched_tenant *t = q->ten;
        if (t == b || q->admit_order > since) continue;
        if (!a || (t->running - 1) * a->weight > (a->running - 1) * t->weight) a = t;
    }
    if (!a || (b->running + 1) * a->weight > (a->running - 1) * b->weight) return NULL;
    sched_req *v = NULL;
    bool v_decoding = false;
    for (int32_t i = 0; i < s->n_running; i++) {
        sched_req *q = s->running[i];
        if (q->ten != a || q->admit_order > since) continue;
        const bool decoding = q->n_gen > 0 && q->n_toks - q->n_pos == 1;
        if (!v || decoding > v_decoding || (decoding == v_decoding && q->admit_order > v->admit_order)) {
            v = q;
            v_decoding = decoding;
        }
    }
    return v;
}

/* Blocks preempting v gives back: those only it holds, and its registered ones only it
 * and the prefix cache hold (evictable after). An estimate (a registered block may be
 * another sequence's copy), used only to skip preemptions that cannot make room. */
static int32_t freed_by_preempt(const sched *s, const sched_req *v) {
    const int32_t *bt;
    const int32_t nb = sov_seq_blocks(s->ctx, v->seq, &bt);
    int32_t n = 0;
    for (int32_t k = 0; k < nb; k++) {
        const int32_t refs = sov_kv_block_refs(s->ctx, bt[k]);
        n += refs == 1 || (refs == 2 && k < v->n_registered);
    }
    return n;
}

/* Few per step: each throws away up to a block of work per victim and makes the victim
 * wait, while a burst of new tenants still gets its slots within a few steps. */
static int32_t fair_preempt_max(const sched *s) { return SOV_MAX(1, s->p.n_parallel / 4); }

/* FAIR: free slots go to the tenant that deserves one most (fair_pick); when it gets no
 * slot or no room, a tenant over its share yields one (fair_victim). A request that does
 * not fit stops admission as under FIFO: the pool is shared, and letting smaller
 * requests pass could starve it; since it belongs to the tenant least served, fair
 * preemption is what unblocks it. The prefix cache is probed only when a slot is free or
 * a victim exists, so with one tenant this makes exactly FIFO's calls. Returns the
 * request left waiting for room, or NULL. */
static sched_req *admit_fair(sched *s) {
    admit_room room = {s->n_running, -1};
    const uint64_t since = s->admit_counter; /* requests admitted before this round */
    const int32_t max_preempt = fair_preempt_max(s);
    int32_t preempted = 0;
    s->admit_epoch++;
    for (;;) {
        const int32_t i = fair_pick(s);
        if (i < 0) return NULL;
        sched_req *r = s->waiting[i];
        const bool slot = s->n_running < s->p.n_parallel;
        sched_req *v = !slot && preempted < max_preempt ? fair_victim(s, r->ten, since) : NULL;
        if (!slot && !v) return NULL;
        admit_probe pr;
        if (!probe(s, r, &pr)) return r;
        if (pr.deferred) {
            r->defer_epoch = s->admit_epoch; /* its next block is being computed */
            continue;
        }
        if (slot && room_for(s, &pr, &room, 0)) {
            admit_one(s, i, &pr, &room);
            continue;
        }
        if (slot) v = preempted < max_preempt ? fair_victim(s, r->ten, since) : NULL;
        admit_room after = {room.reserve - 1, -1}; /* v stops growing */
        if (!v || !room_for(s, &pr, &after, freed_by_preempt(s, v))) return r;
        preempt(s, v, true);
        preempted++;
        room.reserve--;
        room.evictable = -1; /* v's cached blocks became evictable */
    }
}

/* Starts waiting requests; returns the one left waiting for room, NULL when none. */
static sched_req *admit(sched *s) { return s->p.policy == SCHED_POLICY_FIFO ? admit_fifo(s) : admit_fair(s); }

/* ---- engine: one step ---- */

/* Blocks the request's part of the batch takes from the pool. */
static int32_t step_blocks(const sched *s, const sched_req *r) {
    const int32_t *bt;
    const int32_t nb = sov_seq_blocks(s->ctx, r->seq, &bt);
    int32_t need = blocks_for(s, r->n_pos + r->step_n) - nb;
    if (need < 0) need = 0;
    if (r->n_pos % s->block_size && nb > 0 && sov_kv_block_refs(s->ctx, bt[nb - 1]) > 1) need++;
    return need;
}

/* The tenants with prompt tokens pending into drr_ten, marked with plan_seq; returns
 * how many, their weights summed in *sum_w. */
static int32_t prompt_tenants(sched *s, double *sum_w) {
    const uint64_t mark = ++s->plan_seq;
    int32_t n = 0;
    *sum_w = 0;
    for (int32_t i = 0; i < s->n_running; i++) {
        sched_tenant *t = s->running[i]->ten;
        if (s->running[i]->n_toks - s->running[i]->n_pos <= 1 || t->plan_mark == mark) continue;
        t->plan_mark = mark;
        s->drr_ten[n++] = t;
        *sum_w += t->weight;
    }
    return n;
}

/* Feeds tenant t's prompts, in admission order, up to `allow` tokens; returns how many. */
static int32_t feed_tenant(sched *s, const sched_tenant *t, int32_t allow) {
    int32_t used = 0;
    for (int32_t i = 0; i < s->n_running; i++) {
        sched_req *r = s->running[i];
        const int32_t pending = r->n_toks - r->n_pos;
        if (r->ten != t || pending <= 1) continue;
        r->step_n = SOV_MIN(pending, allow - used);
        used += r->step_n;
    }
    return used;
}

/* FAIR: shares the prompt budget between the tenants with prompt tokens pending by
 * deficit round robin. Each is owed a quantum, budget * weight / sum(weights), plus what
 * it was owed and could not take in the step just before (capped at one budget); it
 * takes whole tokens up to that, the most owed first. What is left goes in admission
 * order, so the budget never idles. Returns false, planning nothing, with fewer than two
 * such tenants: then admission order is the same thing. The new deficits are kept in
 * deficit_next until the step runs (fit may plan again; see commit_plan). */
static bool plan_prompts_fair(sched *s, int32_t budget) {
    double sum_w;
    const int32_t n_t = prompt_tenants(s, &sum_w);
    if (n_t < 2 || budget <= 0) return false;
    for (int32_t k = 0; k < n_t; k++) {
        sched_tenant *t = s->drr_ten[k];
        const double owed = t->commit_mark == s->plans_run ? t->deficit : 0;
        t->deficit_next = SOV_MIN(owed + budget * t->weight / sum_w, (double)budget);
        for (int32_t j = k; j > 0 && s->drr_ten[j - 1]->deficit_next < s->drr_ten[j]->deficit_next; j--) {
            sched_tenant *x = s->drr_ten[j];
            s->drr_ten[j] = s->drr_ten[j - 1];
            s->drr_ten[j - 1] = x;
        }
    }
    int32_t left = budget;
    for (int32_t k = 0; k < n_t; k++) {
        sched_tenant *t = s->drr_ten[k];
        const int32_t used = feed_tenant(s, t, SOV_MIN((int32_t)t->deficit_next, left));
        left -= used;
        t->deficit_next -= used;
    }
    for (int32_t i = 0; i < s->n_running && left > 0; i++) {
        sched_req *r = s->running[i];
        const int32_t pending = r->n_toks - r->n_pos;
        if (pending <= 1) continue;
        const int32_t more = SOV_MIN(pending - r->step_n, left);
        r->step_n += more;
        left -= more;
    }
    return true;
}

/* The plan is final (fit is done): the deficits it computed become those of the tenants
 * that still have prompt tokens for later steps (more than the one left for the decode
 * pass). The others are owed nothing: in DRR an emptied queue keeps no credit, or a
 * tenant could save up budget while idle. A deficit carries only into the next step
 * (commit_mark == plans_run). */
static void commit_plan(sched *s) {
    s->plans_run++;
    if (!s->drr_planned) return;
    for (int32_t i = 0; i < s->n_running; i++) {
        const sched_req *r = s->running[i];
        if (r->ten->plan_mark == s->plan_seq && r->n_toks - r->n_pos - r->step_n > 1)
            r->ten->commit_mark = s->plans_run;
    }
    for (int32_t i = 0; i < s->n_running; i++) {
        sched_tenant *t = s->running[i]->ten;
        if (t->commit_mark == s->plans_run) t->deficit = t->deficit_next;
    }
}

/* Plans the batch: decode tokens first, then prompt chunks within the budget. */
static void plan(sched *s) {
    int32_t budget = s->p.n_batch;
    for (int32_t i = 0; i < s->n_running; i++) {
        sched_req *r = s->running[i];
        r->step_n = r->n_toks - r->n_pos == 1 && budget > 0 ? 1 : 0;
        budget -= r->step_n;
    }
    s->drr_planned = !s->whole && s->p.policy == SCHED_POLICY_FAIR && plan_prompts_fair(s, budget);
    if (s->drr_planned) return;
    for (int32_t i = 0; i < s->n_running; i++) {
        sched_req *r = s->running[i];
        const int32_t pending = r->n_toks - r->n_pos;
        if (pending > 1 && budget > 0 && !(s->whole && pending > budget)) { /* encoders: whole inputs */
            r->step_n = SOV_MIN(pending, budget);
            budget -= r->step_n;
        }
    }
}

/* The request to preempt for room in the pool: the most recently admitted one (it has
 * done the least work); under FAIR, of the tenant with the highest load (running /
 * weight), so a tenant under its share keeps its slot. */
static sched_req *kv_victim(const sched *s) {
    const sched_tenant *a = NULL;
    for (int32_t i = 0; s->p.policy == SCHED_POLICY_FAIR && i < s->n_running; i++) {
        const sched_tenant *t = s->running[i]->ten;
        if (!a || t->running * a->weight > a->running * t->weight) a = t;
    }
    sched_req *victim = NULL;
    for (int32_t i = 0; i < s->n_running; i++) {
        sched_req *q = s->running[i];
        if ((!a || q->ten == a) && (!victim || q->admit_order > victim->admit_order)) victim = q;
    }
    return victim;
}

/* Makes the pool hold the planned batch: evict cached blocks, then preempt (kv_victim). */
static void fit(sched *s) {
    for (;;) {
        int32_t need = 0;
        for (int32_t i = 0; i < s->n_running; i++)
            need += step_blocks(s, s->running[i]);
        if (need <= sov_kv_blocks_free(s->ctx)) return;
        pc_evict(&s->pc, need);
        if (need <= sov_kv_blocks_free(s->ctx)) return;
        sched_req *victim = kv_victim(s);
        if (s->n_running == 1) {
            /* alone and still no room: the pool cannot hold this sequence */
            running_remove(s, victim);
            finish_req(s, victim, SCHED_FINISH_LENGTH, NULL);
            return;
        }
        preempt(s, victim, false);
        plan(s);
    }
}

static size_t utf8_complete_prefix(const char *t, size_t n) {
    size_t i = n, back = 0;
    while (i > 0 && back < 4 && ((unsigned char)t[i - 1] & 0xC0) == 0x80) {
        i--;
        back++;
    }
    if (i == 0) return n;
    const unsigned char lead = (unsigned char)t[i - 1];
    const size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return (back + 1 >= need || need == 1) ? n : i - 1;
}

/* Feeds text through the stop strings into the request's output (under mu). Returns
 * false when out of memory; sets *stopped when a stop string completed. */
static bool emit_locked(sched_req *r, const char *t, size_t n, bool *stopped) {
    if (n == 0 || *stopped) return true;
    const char *out = NULL;
    const size_t k = sov_stopper_feed(r->stopper, t, n, &out, stopped);
    return append_text_locked(r, out, k);
}

/* Samples the request's next token from its logits row and publishes the output.
 * Returns true when the request is finished (*fin says why; the caller ends it). */
static bool take_token(sched *s, sched_req *r, float *lg, double now, sched_finish *fin) {
    /* constrained decoding: tokens that would leave the grammar get -inf before any
     * sampling step; end-of-generation only where the document may end */
    bool grammar_ok = true;
    if (r->gm) { /* ...and only tokens after which the document can still be closed in the
                    tokens left (one byte each at worst) */
        const int64_t left = SOV_MIN((int64_t)r->p.max_tokens - r->n_gen, (int64_t)s->p.n_ctx - r->n_toks);
        grammar_ok = gram_matcher_apply(r->gm, lg, !r->p.ignore_eos, left - 1);
    }
    const sov_token t = sov_sampler_sample(r->smp, lg);
    sched_tok lp = {.id = t, .n_top = 0};
    if (r->p.top_logprobs >= 0)
        lp.n_top =
            sov_sampler_logprobs(lg, s->n_vocab, t, r->p.top_logprobs, lp.top_id, lp.top_lp, &lp.logprob);
    sov_sampler_accept(r->smp, t);
    r->n_gen++;
    const bool eog = !r->p.ignore_eos && sov_vocab_is_eog(s->vocab, t);
    if (r->gm && !eog && grammar_ok) grammar_ok = gram_matcher_feed_token(r->gm, t);
    /* the token's bytes after any incomplete character held from before; only whole
     * UTF-8 characters go out (a character is at most 4 bytes, so never hold more) */
    char buf[256 + sizeof r->utf8];
    size_t total = (size_t)r->n_utf8, ready = 0;
    memcpy(buf, r->utf8, total);
    if (!eog) {
        const int32_t len = sov_token_to_piece(s->vocab, t, r->p.render_special, buf + total, 256);
        total += (size_t)(len < 0 ? 0 : SOV_MIN(len, 256));
        ready = utf8_complete_prefix(buf, total);
        if (total - ready > 4) ready = total;
    }
    bool stopped = false, ok;
    pthread_mutex_lock(&s->mu);
    ok = emit_locked(r, buf, ready, &stopped);
    sched_finish f = SCHED_RUNNING;
    if (eog || stopped)
        f = SCHED_FINISH_STOP;
    else if (r->gm && grammar_ok && gram_matcher_complete(r->gm))
        f = SCHED_FINISH_STOP; /* the document is complete: nothing else may follow */
    else if (r->n_gen >= r->p.max_tokens || r->n_toks >= s->p.n_ctx)
        f = SCHED_FINISH_LENGTH;
    if (f != SCHED_RUNNING && !stopped) {
        /* the end: release what the UTF-8 assembly and the stop strings held back */
        ok = ok && emit_locked(r, buf + ready, total - ready, &stopped);
        if (!stopped) {
            const char *out = NULL;
            const size_t k = sov_stopper_flush(r->stopper, &out);
            ok = ok && append_text_locked(r, out, k);
        }
        if (stopped) f = SCHED_FINISH_STOP;
    }
    r->n_utf8 = (int32_t)(total - ready);
    memcpy(r->utf8, buf + ready, (size_t)r->n_utf8);
    if (!eog && r->p.top_logprobs >= 0) ok = ok && append_tok_locked(r, &lp);
    if (!r->started) {
        r->started = true;
        r->first_step = s->st.steps;
        hist_add(&s->st.ttft, now - r->t_arrive);
    } else {
        hist_add(&s->st.itl, now - r->t_last);
    }
    s->st.generated_tokens++;
    mark_ready_locked(s, r);
    pthread_mutex_unlock(&s->mu);
    r->t_last = now;
    if (!ok || !grammar_ok) f = SCHED_FINISH_ERROR;
    if (f != SCHED_RUNNING) {
        *fin = f;
        return true;
    }
    if (r->n_toks == r->cap_toks) {
        const int32_t cap = r->cap_toks > INT32_MAX / 2 ? INT32_MAX : r->cap_toks * 2;
        sov_token *p = realloc(r->toks, (size_t)cap * sizeof *p);
        if (!p) {
            *fin = SCHED_FINISH_ERROR;
            return true;
        }
        r->toks = p;
        r->cap_toks = cap;
    }
    r->toks[r->n_toks++] = t;
    return false;
}

/* Fails the requests of this step's batch (the engine could not run it). */
static void fail_step(sched *s, const char *msg) {
    for (int32_t i = s->n_running - 1; i >= 0; i--) {
        sched_req *r = s->running[i];
        if (r->step_n == 0) continue;
        running_remove(s, r);
        finish_req(s, r, SCHED_FINISH_ERROR, msg);
    }
}

/* An embedding request's rows of this step: pooled into its sum; true when its input is
 * all in (the vector is then published, and the caller ends the request). */
static bool take_hidden(sched *s, sched_req *r, sched_finish *fin) {
    const size_t E = (size_t)s->n_embd;
    int32_t row = r->embd_row;
    for (int32_t k = 0; k < r->step_n; k++) {
        const int32_t at = r->n_pos + k;
        if (!sov_pooling_wants(s->pooling, at, r->n_toks)) continue;
        embed_pool_add(s->pooling, r->acc, s->embd_out + (size_t)row++ * E, at, r->n_toks, s->n_embd);
    }
    if (r->n_pos + r->step_n < r->n_toks) return false;
    float *v = malloc(E * sizeof *v);
    if (v) embed_pool_finish(r->acc, s->n_embd, v);
    pthread_mutex_lock(&s->mu);
    r->embd = v;
    r->started = true;
    pthread_mutex_unlock(&s->mu);
    *fin = v ? SCHED_FINISH_STOP : SCHED_FINISH_ERROR;
    return true;
}

/* The step's joules (the meter, read since just before sov_decode), split into e_share
 * by each running request's work in the step (energy.h states the rule). The estimate's
 * DRAM bytes: every weight once, and each sequence in the batch reads its whole KV cache. */
static double step_energy(sched *s) {
    double kv_pos = 0;
    for (int32_t i = 0; i < s->n_running; i++) {
        const sched_req *r = s->running[i];
        s->e_work[i] = r->step_work;
        if (r->step_n > 0) kv_pos += (double)r->n_pos + r->step_n;
    }
    const double joules = energy_meter_end(s->p.meter, s->em.weight_bytes + kv_pos * s->em.kv_bytes_per_pos);
    energy_split(joules, s->e_work, s->n_running, s->e_share);
    return joules;
}

static void step(sched *s) {
    plan(s);
    fit(s);
    if (s->n_running == 0) return;
    commit_plan(s);
    publish_tenants(s);
    /* assemble the batch; logits rows and hidden-state rows follow batch order */
    int32_t n = 0, rows = 0, embd_rows = 0;
    for (int32_t i = 0; i < s->n_running; i++) {
        sched_req *r = s->running[i];
        r->step_row = -1;
        r->embd_row = embd_rows;
        r->step_work = 0;
        for (int32_t k = 0; k < r->step_n; k++) {
            const int32_t at = r->n_pos + k;
            s->b_tok[n] = r->toks[at];
            s->b_seq[n] = r->seq;
            s->b_pos[n] = at;
            s->b_logits[n] = !r->p.embed && at == r->n_toks - 1;
            s->b_embd[n] = r->p.embed && sov_pooling_wants(s->pooling, at, r->n_toks);
            if (s->b_logits[n]) r->step_row = rows++;
            if (s->p.meter) r->step_work += energy_token_work(&s->em, at, s->b_logits[n]);
            embd_rows += s->b_embd[n];
            n++;
        }
    }
    if (n == 0) return;
    if (embd_rows > 0 && !s->embd_out) {
        s->embd_out = malloc((size_t)s->p.n_batch * (size_t)s->n_embd * sizeof *s->embd_out);
        if (!s->embd_out) {
            fail_step(s, "engine: out of memory for hidden states");
            return;
        }
    }
    const sov_batch b = {n, s->b_tok, s->b_seq, s->b_pos, s->b_logits};
    if (s->p.meter) energy_meter_begin(s->p.meter);
    const sov_status st = sov_decode_embd(s->ctx, &b, s->logits, s->b_embd, s->embd_out);
    if (st) {
        /* should not happen (blocks were reserved); fail this step's requests, not the server */
        char msg[160];
        snprintf(msg, sizeof msg, "engine: %s", sov_last_error());
        fail_step(s, msg);
        return;
    }
    const double now = sov_now_s();
    const double joules = s->p.meter ? step_energy(s) : 0.0;
    pthread_mutex_lock(&s->mu);
    s->st.steps++;
    s->st.batch_tokens += (uint64_t)n;
    if (s->p.meter) {
        s->st.energy_j += joules;
        for (int32_t i = 0; i < s->n_running; i++)
            s->running[i]->energy_j += s->e_share[i];
    }
    pthread_mutex_unlock(&s->mu);
    for (int32_t i = 0; i < s->n_running;) {
        sched_req *r = s->running[i];
        sched_finish f;
        if (r->p.embed && r->step_n > 0 && take_hidden(s, r, &f)) {
            running_remove(s, r);
            finish_req(s, r, f, f == SCHED_FINISH_ERROR ? "engine: out of memory" : NULL);
            continue;
        }
        r->n_pos += r->step_n;
        r->step_n = 0;
        register_blocks(s, r);
        if (r->step_row >= 0 &&
            take_token(s, r, s->logits + (size_t)r->step_row * (size_t)s->n_vocab, now, &f)) {
            running_remove(s, r);
            finish_req(s, r, f,
                       f != SCHED_FINISH_ERROR ? NULL
                       : r->gm               ? "engine: out of memory, or no token can continue the grammar"
                                             : "engine: out of memory");
            continue;
        }
        i++;
    }
}

/* Drops cancelled and timed-out requests (running and waiting). */
static void reap(sched *s, double now) {
    for (int32_t i = 0; i < s->n_running;) {
        sched_req *r = s->running[i];
        if (r->cancel_seen || (r->p.deadline > 0 && now > r->p.deadline)) {
            running_remove(s, r);
            finish_req(s, r, r->cancel_seen ? SCHED_FINISH_CANCELLED : SCHED_FINISH_DEADLINE, NULL);
            continue;
        }
        i++;
    }
    for (int32_t i = 0; i < s->n_waiting;) {
        sched_req *r = s->waiting[i];
        if (r->cancel_seen || (r->p.deadline > 0 && now > r->p.deadline)) {
            waiting_remove(s, i);
            finish_req(s, r, r->cancel_seen ? SCHED_FINISH_CANCELLED : SCHED_FINISH_DEADLINE, NULL);
            continue;
        }
        i++;
    }
}

/* Updates the gauges; true when some request has output waiting. */
static bool publish_gauges(sched *s) {
    pthread_mutex_lock(&s->mu);
    s->st.running = s->n_running;
    s->st.waiting = s->n_active - s->n_running;
    s->st.kv_blocks_free = sov_kv_blocks_free(s->ctx);
    s->st.prefix_cached_blocks = s->pc.n_used;
    s->st.prefix_evictions = s->pc.evictions;
    const bool ready = s->ready_head != NULL;
    pthread_mutex_unlock(&s->mu);
    return ready;
}

static void *engine_main(void *arg) {
    sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stop && !s->wake && !s->inbox_head && s->n_waiting == 0 && s->n_running == 0)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        s->wake = false;
        for (sched_req *r = s->inbox_head; r;) {
            sched_req *next = r->inbox_next;
            r->ten->weight = r->p.weight; /* the tenant's latest word on its weight */
            waiting_insert(s, s->n_waiting, r);
            r = next;
        }
        s->inbox_head = s->inbox_tail = NULL;
        const bool all = s->cancel_all;
        for (int32_t i = 0; i < s->n_running; i++)
            s->running[i]->cancel_seen = s->running[i]->cancel || all;
        for (int32_t i = 0; i < s->n_waiting; i++)
            s->waiting[i]->cancel_seen = s->waiting[i]->cancel || all;
        pthread_mutex_unlock(&s->mu);

        reap(s, sov_now_s());
        sched_req *blocked = admit(s);
        if (s->n_running == 0 && s->n_waiting > 0) {
            /* nothing runs, so every block is free or evictable: the request waiting
             * for room (under FIFO the head) cannot fit at all */
            int32_t at = s->n_waiting - 1;
            while (at > 0 && s->waiting[at] != blocked)
                at--;
            sched_req *r = s->waiting[at];
            waiting_remove(s, at);
            if (r->n_gen > 0)
                finish_req(s, r, SCHED_FINISH_LENGTH, NULL);
            else
                finish_req(s, r, SCHED_FINISH_ERROR, "the prompt does not fit the KV cache");
        }
        if (s->n_running > 0) step(s);
        if (publish_gauges(s) && s->p.notify) s->p.notify(s->p.notify_user);
    }
    /* shutdown: end everything still here */
    while (s->n_running > 0) {
        sched_req *r = s->running[s->n_running - 1];
        s->n_running--;
        r->ten->running--;
        finish_req(s, r, SCHED_FINISH_CANCELLED, NULL);
    }
    pthread_mutex_lock(&s->mu);
    for (sched_req *r = s->inbox_head; r;) {
        sched_req *next = r->inbox_next;
        waiting_insert(s, s->n_waiting, r);
        r = next;
    }
    s->inbox_head = s->inbox_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    while (s->n_waiting > 0) {
        sched_req *r = s->waiting[s->n_waiting - 1];
        waiting_remove(s, s->n_waiting - 1);
        finish_req(s, r, SCHED_FINISH_CANCELLED, NULL);
    }
    if (s->p.notify) s->p.notify(s->p.notify_user);
    return NULL;
}

/* ---- public ---- */

sov_status sched_new(sov_context *ctx, const sov_model *model, const sched_params *p, sched **out) {
    *out = NULL;
    if (!ctx || !model || !p || p->n_parallel < 1 || p->n_batch < 1 || p->max_queue < 0 || p->n_ctx < 2)
        return sov_fail(SOV_ERR_ARG, "sched: bad parameters");
    sched *s = calloc(1, sizeof *s);
    if (!s) return sov_fail(SOV_ERR_NOMEM, "sched: out of memory");
    s->ctx = ctx;
    s->vocab = sov_model_vocab(model);
    s->p = *p;
    if (s->p.n_batch < s->p.n_parallel) s->p.n_batch = s->p.n_parallel; /* every stream advances each step */
    sov_model_info info;
    sov_model_get_info(model, &info);
    s->n_vocab = info.n_vocab;
    s->n_embd = info.n_embd;
    s->pooling = info.pooling;
    s->whole = info.encoder;
    s->block_size = sov_kv_block_size(ctx);
    energy_model_init(&s->em, &info, (double)s->p.kv_bytes_per_pos);
    s->st.energy_on = s->p.meter != NULL;
    s->st.energy_source = s->p.meter ? s->p.meter->source : ENERGY_ESTIMATED;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    sov_status st = pc_init(&s->pc, ctx);
    const size_t nb = (size_t)s->p.n_batch;
    s->running = calloc((size_t)s->p.n_parallel, sizeof *s->running);
    s->logits = malloc((size_t)s->p.n_parallel * (size_t)s->n_vocab * sizeof *s->logits);
    s->b_tok = malloc(nb * sizeof *s->b_tok);
    s->b_seq = malloc(nb * sizeof *s->b_seq);
    s->b_pos = malloc(nb * sizeof *s->b_pos);
    s->b_logits = malloc(nb);
    s->b_embd = malloc(nb);
    s->blocks_tmp = malloc(((size_t)p->n_ctx / (size_t)s->block_size + 2) * sizeof *s->blocks_tmp);
    s->drr_ten = malloc((size_t)s->p.n_parallel * sizeof *s->drr_ten);
    s->e_work = malloc((size_t)s->p.n_parallel * sizeof *s->e_work);
    s->e_share = malloc((size_t)s->p.n_parallel * sizeof *s->e_share);
    if (!st && (!s->running || !s->logits || !s->b_tok || !s->b_seq || !s->b_pos || !s->b_logits || !s->b_embd ||
                !s->blocks_tmp || !s->drr_ten || !s->e_work || !s->e_share))
        st = sov_fail(SOV_ERR_NOMEM, "sched: out of memory for a batch of %d tokens", s->p.n_batch);
    s->st.n_parallel = s->p.n_parallel;
    s->st.kv_blocks_total = sov_kv_blocks_total(ctx);
    s->st.kv_blocks_free = sov_kv_blocks_free(ctx);
    s->st.kv_block_size = s->block_size;
    if (!st && pthread_create(&s->thread, NULL, engine_main, s) != 0)
        st = sov_fail(SOV_ERR_NOMEM, "sched: cannot start the engine thread");
    if (st) {
        sched_free(s);
        return st;
    }
    s->thread_started = true;
    *out = s;
    return SOV_OK;
}

void sched_free(sched *s) {
    if (!s) return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    pc_destroy(&s->pc);
    /* requests still on the ready list belong to their submitters */
    free(s->waiting);
    free(s->running);
    free(s->logits);
    free(s->e_work);
    free(s->e_share);
    gram_vocab_free(s->gv);
    free(s->b_tok);
    free(s->b_seq);
    free(s->b_pos);
    free(s->b_logits);
    free(s->b_embd);
    free(s->embd_out);
    free(s->blocks_tmp);
    free(s->drr_ten);
    for (int32_t i = 0; i < s->n_tenants; i++)
        free(s->tenants[i]); /* none once the thread ended */
    free(s->tenants);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

sched_submit_result sched_submit(sched *s, sched_req *r) { return sched_submit_all(s, &r, 1); }

sched_submit_result sched_submit_all(sched *s, sched_req *const *reqs, int32_t n) {
    if (n < 1) return SCHED_QUEUE_FULL;
    for (int32_t i = 0; i < n; i++) {
        const sched_req *r = reqs[i];
        /* a generation needs room for one more token; an embedding may fill the context */
        if (r->n_prompt > s->p.n_ctx - !r->p.embed || blocks_for(s, r->n_prompt) + 1 > sov_kv_blocks_total(s->ctx))
            return SCHED_TOO_LONG;
        if (s->whole && r->n_prompt > s->p.n_batch) return SCHED_TOO_LONG; /* never fits one step */
        if (i > 0 && (r->root != reqs[0]->root || strcmp(r->tenant, reqs[0]->tenant) != 0))
            return SCHED_QUEUE_FULL; /* one tenant per call (not a client's doing: a bug) */
    }
    pthread_mutex_lock(&s->mu);
    sched_submit_result res = SCHED_SUBMITTED;
    sched_tenant *t = tenant_find_locked(s, reqs[0]->root, reqs[0]->tenant);
    /* waiting beyond the slots; under FAIR a tenant with nothing submitted is let in
     * anyway, so one tenant's flood cannot lock the others out (at most one such
     * submission per tenant). A group counts as one submission here: the inputs of one
     * embeddings request go in together or not at all. */
    const bool full =
        s->n_active >= s->p.n_parallel + s->p.max_queue && (t || s->p.policy == SCHED_POLICY_FIFO);
    if (s->closed || s->stop)
        res = SCHED_CLOSED;
    else if (full)
        res = SCHED_QUEUE_FULL;
    else if (!t && !(t = tenant_add_locked(s, reqs[0])))
        res = SCHED_QUEUE_FULL; /* out of memory: later */
    for (int32_t i = 0; res == SCHED_SUBMITTED && i < n; i++) {
        sched_req *r = reqs[i];
        r->ten = t;
        t->n_active++;
        __atomic_add_fetch(&r->refs, 1, __ATOMIC_ACQ_REL); /* the engine's */
        r->inbox_next = NULL;
        if (s->inbox_tail)
            s->inbox_tail->inbox_next = r;
        else
            s->inbox_head = r;
        s->inbox_tail = r;
        s->n_active++;
    }
    if (res == SCHED_SUBMITTED) {
        s->st.waiting = s->n_active - s->st.running;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return res;
}

void sched_cancel(sched *s, sched_req *r) {
    pthread_mutex_lock(&s->mu);
    r->cancel = true;
    s->wake = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void sched_close(sched *s) {
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    pthread_mutex_unlock(&s->mu);
}

void sched_cancel_all(sched *s) {
    pthread_mutex_lock(&s->mu);
    s->cancel_all = true;
    s->closed = true;
    s->wake = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int32_t sched_active(sched *s) {
    pthread_mutex_lock(&s->mu);
    const int32_t n = s->n_active;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int32_t sched_poll(sched *s, sched_req **out, int32_t max) {
    pthread_mutex_lock(&s->mu);
    int32_t n = 0;
    while (n < max && s->ready_head) {
        sched_req *r = s->ready_head;
        s->ready_head = r->ready_next;
        if (!s->ready_head) s->ready_tail = NULL;
        r->in_ready = false;
        out[n++] = r;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

void sched_take(sched *s, sched_req *r, sched_delta *d) {
    memset(d, 0, sizeof *d);
    pthread_mutex_lock(&s->mu);
    d->text = r->out;
    d->len = r->out_len;
    r->out = NULL;
    r->out_len = r->out_cap = 0;
    d->toks = r->out_toks;
    d->n_toks = r->n_out_toks;
    r->out_toks = NULL;
    r->n_out_toks = r->cap_out_toks = 0;
    d->n_prompt = r->n_prompt;
    d->n_cached = r->n_cached;
    d->n_gen = r->n_gen;
    d->started = r->started;
    d->first_step = r->first_step;
    d->energy_j = r->energy_j;
    d->finish = r->finish;
    memcpy(d->error, r->error, sizeof d->error);
    d->embd = r->embd;
    d->n_embd = r->embd ? s->n_embd : 0;
    r->embd = NULL;
    if (d->finish != SCHED_RUNNING && r->in_ready) {
        /* the submitter is about to release it: it must not stay on the ready list */
        sched_req **link = &s->ready_head, *prev = NULL;
        while (*link != r) {
            prev = *link;
            link = &(*link)->ready_next;
        }
        *link = r->ready_next;
        if (s->ready_tail == r) s->ready_tail = prev;
        r->in_ready = false;
    }
    pthread_mutex_unlock(&s->mu);
}

void sched_get_stats(sched *s, sched_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->waiting = s->n_active - s->st.running;
    pthread_mutex_unlock(&s->mu);
}

uint64_t sched_tenant_load(sched *s, const char *tenant, int32_t *running, int32_t *waiting) {
    if (!tenant) tenant = "";
    const uint64_t root = pc_root(tenant);
    pthread_mutex_lock(&s->mu);
    const sched_tenant *t = tenant_find_locked(s, root, tenant);
    *running = t ? t->pub_running : 0;
    *waiting = t ? t->pub_waiting : 0;
    const uint64_t step = s->pub_step;
    pthread_mutex_unlock(&s->mu);
    return step;
}
