/* sched.c - the engine loop (see sched.h for the step). Locking: s->mu guards the inbox,
 * the ready list, the counters and each request's "shared" fields (output buffers,
 * finish, cancel, refs); everything else in a request belongs to the engine thread. The
 * server thread never calls into the context. */
#include "sched/sched.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "sample/sample.h"
#include "sched/prefix.h"

const double sched_hist_bounds[SCHED_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                      0.25,  0.5,    1.0,   2.5,  5.0,   10.0, 30.0};

struct sched_req {
    /* fixed at creation */
    sched_req_params p;              /* stops, bias_tok, bias, tenant point at owned copies */
    char *stop_copy[SCHED_MAX_STOPS];
    sov_token *bias_tok;
    float *bias;
    char *tenant;
    uint64_t root;                   /* prefix-cache root of the tenant */
    void *user;
    int32_t n_prompt;
    double t_arrive;

    /* engine thread only */
    sov_token *toks;                 /* [cap_toks] prompt, then generated tokens */
    int32_t n_toks, cap_toks;        /* toks[n_pos..n_toks) are still to be fed */
    uint64_t *hashes;                /* [cap_hashes] chain hash through each full block of toks */
    int32_t n_hashes, cap_hashes;
    int32_t n_registered;            /* blocks [0, n_registered) offered to the prefix cache */
    sov_seq_id seq;                  /* -1 when it holds no sequence */
    int32_t n_pos;                   /* positions in the KV cache */
    sov_sampler *smp;
    sov_stopper *stopper;
    char utf8[8];                    /* bytes of an incomplete UTF-8 character */
    int32_t n_utf8;
    int32_t n_gen;
    bool admitted_once;
    bool cancel_seen;
    uint64_t admit_order;
    double t_first, t_last;
    int32_t step_n;                  /* tokens in this step's batch */
    int32_t step_row;                /* logits row this step, -1 for none */

    /* shared, under sched.mu */
    char *out;
    size_t out_len, out_cap;
    sched_tok *out_toks;
    int32_t n_out_toks, cap_out_toks;
    int32_t n_cached;                /* prompt tokens served from the prefix cache */
    bool started;
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
    sched_params p;
    int32_t n_vocab, block_size;
    prefix_cache pc;
    pthread_t thread;
    bool thread_started;

    /* engine thread only */
    sched_req **waiting;             /* [cap_waiting] FIFO; index 0 is next */
    int32_t n_waiting, cap_waiting;
    sched_req **running;             /* [n_parallel] in admission order */
    int32_t n_running;
    uint64_t admit_counter;
    float *logits;                   /* [n_parallel][n_vocab] */
    sov_token *b_tok;                /* [n_batch] the step's batch */
    sov_seq_id *b_seq;
    int32_t *b_pos;
    uint8_t *b_logits;
    int32_t *blocks_tmp;             /* [n_ctx / block_size + 1] */

    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sched_req *inbox_head, *inbox_tail;
    sched_req *ready_head, *ready_tail;
    int32_t n_active;                /* submitted, not yet finished */
    bool wake, stop, closed, cancel_all;
    sched_stats st;
};

/* ---- requests ---- */

static void req_free(sched_req *r) {
    for (int i = 0; i < SCHED_MAX_STOPS; i++) free(r->stop_copy[i]);
    free(r->bias_tok);
    free(r->bias);
    free(r->tenant);
    free(r->toks);
    free(r->hashes);
    sov_sampler_free(r->smp);
    sov_stopper_free(r->stopper);
    free(r->out);
    free(r->out_toks);
    free(r);
}

sched_req *sched_req_new(const sov_token *prompt, int32_t n, const sched_req_params *p, void *user) {
    if (n < 1 || !prompt || !p || p->max_tokens < 1 || p->n_stops < 0 || p->n_stops > SCHED_MAX_STOPS ||
        p->n_bias < 0 || p->top_logprobs > SCHED_MAX_TOP_LOGPROBS) {
        sov_fail(SOV_ERR_ARG, "sched: bad request parameters");
        return NULL;
    }
    sched_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->p = *p;
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

/* ---- output (engine thread, under mu) ---- */

static void mark_ready_locked(sched *s, sched_req *r) {
    if (r->in_ready) return;
    r->in_ready = true;
    r->ready_next = NULL;
    if (s->ready_tail) s->ready_tail->ready_next = r;
    else s->ready_head = r;
    s->ready_tail = r;
}

static bool append_text_locked(sched_req *r, const char *t, size_t n) {
    if (n == 0) return true;
    if (r->out_len + n > r->out_cap) {
        size_t cap = r->out_cap ? r->out_cap : 256;
        while (cap < r->out_len + n) cap *= 2;
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
    while (i < SCHED_HIST_BUCKETS && v > sched_hist_bounds[i]) i++;
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
}

static void waiting_remove(sched *s, int32_t at) {
    memmove(s->waiting + at, s->waiting + at + 1, (size_t)(s->n_waiting - at - 1) * sizeof *s->waiting);
    s->n_waiting--;
}

static void running_remove(sched *s, sched_req *r) {
    for (int32_t i = 0; i < s->n_running; i++) {
        if (s->running[i] == r) {
            memmove(s->running + i, s->running + i + 1, (size_t)(s->n_running - i - 1) * sizeof *s->running);
            s->n_running--;
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
    pthread_mutex_lock(&s->mu);
    r->finish = f;
    if (error) snprintf(r->error, sizeof r->error, "%s", error);
    s->st.finished[f]++;
    s->n_active--;
    mark_ready_locked(s, r);
    if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) req_free(r);
    pthread_mutex_unlock(&s->mu);
}

/* ---- engine: prefix hashes ---- */

static bool ensure_hashes(sched *s, sched_req *r, int32_t n_blocks) {
    if (n_blocks > r->cap_hashes) {
        int32_t cap = r->cap_hashes ? r->cap_hashes : 16;
        while (cap < n_blocks) cap *= 2;
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
    const int32_t full = r->n_pos / s->block_size;
    if (full <= r->n_registered || !ensure_hashes(s, r, full)) return;
    const int32_t *bt;
    const int32_t nb = sov_seq_blocks(s->ctx, r->seq, &bt);
    for (int32_t b = r->n_registered; b < full && b < nb; b++)
        pc_insert(&s->pc, b ? r->hashes[b - 1] : r->root, r->hashes[b], r->toks + (size_t)b * (size_t)s->block_size,
                  bt[b]);
    r->n_registered = full;
}

/* True when a running request is about to compute block `b` with the same chain hash:
 * waiting for it shares the work instead of repeating it. */
static bool block_in_flight(const sched *s, const sched_req *r, int32_t b) {
    for (int32_t i = 0; i < s->n_running; i++) {
        const sched_req *q = s->running[i];
        if (q->n_hashes > b && q->hashes[b] == r->hashes[b] && q->n_pos < (b + 1) * s->block_size) return true;
    }
    return false;
}

/* ---- engine: admission ---- */

static int32_t blocks_for(const sched *s, int32_t n_pos) { return (n_pos + s->block_size - 1) / s->block_size; }

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
    if (!r->admitted_once) {
        r->admitted_once = true;
        sov_sampler_params sp = r->p.sp;
        st = sov_sampler_new(&sp, s->n_vocab, &r->smp);
        for (int32_t i = 0; !st && i < r->p.n_bias; i++) st = sov_sampler_set_logit_bias(r->smp, r->bias_tok[i], r->bias[i]);
        for (int32_t i = 0; !st && i < r->n_prompt; i++) sov_sampler_accept(r->smp, r->toks[i]);
        if (!st) st = sov_stopper_new((const char *const *)r->p.stops, (size_t)r->p.n_stops, &r->stopper);
        const int32_t cached = SOV_MIN(r->n_pos, r->n_prompt);
        pthread_mutex_lock(&s->mu);
        r->n_cached = cached;
        s->st.prompt_tokens += (uint64_t)r->n_prompt;
        s->st.prompt_tokens_cached += (uint64_t)cached;
        hist_add(&s->st.queue_time, sov_now_s() - r->t_arrive);
        pthread_mutex_unlock(&s->mu);
    }
    r->admit_order = ++s->admit_counter;
    s->running[s->n_running++] = r;
    return st;
}

static void admit(sched *s) {
    int32_t reserve = s->n_running; /* room for every running sequence to grow a block */
    int32_t evictable = -1;         /* computed when needed */
    for (int32_t i = 0; i < s->n_waiting && s->n_running < s->p.n_parallel;) {
        sched_req *r = s->waiting[i];
        const int32_t full = (r->n_toks - 1) / s->block_size; /* blocks before the last token */
        if (!ensure_hashes(s, r, full)) break;
        const int32_t m = pc_match(&s->pc, r->root, r->toks, r->hashes, full, s->blocks_tmp);
        if (m < full && block_in_flight(s, r, m)) {
            i++; /* deferred: its next block is being computed; later requests may pass */
            continue;
        }
        /* then the longest cached run of leading tokens in the next block, at token
         * granularity (a chat history rarely ends on a block boundary); at least the
         * last prompt token is always computed, for its logits */
        int32_t partial = 0;
        if (m < full || (r->n_toks - 1) % s->block_size) {
            const int32_t at = m * s->block_size;
            partial = pc_match_partial(&s->pc, m ? r->hashes[m - 1] : r->root, r->toks + at,
                                       SOV_MIN(s->block_size - 1, r->n_toks - 1 - at), &s->blocks_tmp[m]);
        }
        const int32_t need = blocks_for(s, r->n_toks) - m + 1;
        const int32_t free_now = sov_kv_blocks_free(s->ctx);
        if (need + reserve > free_now) {
            if (evictable < 0) evictable = pc_evictable(&s->pc);
            int32_t pinned = 0; /* matched blocks only the cache holds stop being evictable */
            for (int32_t k = 0; k < m + (partial > 0); k++) pinned += sov_kv_block_refs(s->ctx, s->blocks_tmp[k]) == 1;
            if (need + reserve > free_now + evictable - pinned) break; /* FIFO: the head waits for room */
            evictable -= pinned;
        }
        waiting_remove(s, i);
        const sov_status st = start_req(s, r, m, partial);
        if (st) {
            running_remove(s, r);
            finish_req(s, r, SCHED_FINISH_ERROR, sov_last_error());
            continue;
        }
        reserve += need;
    }
}

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

static void preempt(sched *s, sched_req *r) {
    drop_seq(s, r);
    running_remove(s, r);
    waiting_insert(s, 0, r);
    pthread_mutex_lock(&s->mu);
    s->st.preemptions++;
    pthread_mutex_unlock(&s->mu);
}

/* Plans the batch: decode tokens first, then prompt chunks within the budget. */
static void plan(sched *s) {
    int32_t budget = s->p.n_batch;
    for (int32_t i = 0; i < s->n_running; i++) {
        sched_req *r = s->running[i];
        r->step_n = r->n_toks - r->n_pos == 1 && budget > 0 ? 1 : 0;
        budget -= r->step_n;
    }
    for (int32_t i = 0; i < s->n_running; i++) {
        sched_req *r = s->running[i];
        const int32_t pending = r->n_toks - r->n_pos;
        if (pending > 1 && budget > 0) {
            r->step_n = SOV_MIN(pending, budget);
            budget -= r->step_n;
        }
    }
}

/* Makes the pool hold the planned batch: evict cached blocks, then preempt the most
 * recently admitted requests. */
static void fit(sched *s) {
    for (;;) {
        int32_t need = 0;
        for (int32_t i = 0; i < s->n_running; i++) need += step_blocks(s, s->running[i]);
        if (need <= sov_kv_blocks_free(s->ctx)) return;
        pc_evict(&s->pc, need);
        if (need <= sov_kv_blocks_free(s->ctx)) return;
        sched_req *victim = NULL;
        for (int32_t i = 0; i < s->n_running; i++)
            if (!victim || s->running[i]->admit_order > victim->admit_order) victim = s->running[i];
        if (s->n_running == 1) {
            /* alone and still no room: the pool cannot hold this sequence */
            running_remove(s, victim);
            finish_req(s, victim, SCHED_FINISH_LENGTH, NULL);
            return;
        }
        preempt(s, victim);
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
    const sov_token t = sov_sampler_sample(r->smp, lg);
    sched_tok lp = {.id = t, .n_top = 0};
    if (r->p.top_logprobs >= 0)
        lp.n_top = sov_sampler_logprobs(lg, s->n_vocab, t, r->p.top_logprobs, lp.top_id, lp.top_lp, &lp.logprob);
    sov_sampler_accept(r->smp, t);
    r->n_gen++;
    const bool eog = !r->p.ignore_eos && sov_vocab_is_eog(s->vocab, t);
    /* the token's bytes after any incomplete character held from before; only whole
     * UTF-8 characters go out (a character is at most 4 bytes, so never hold more) */
    char buf[256 + sizeof r->utf8];
    size_t total = (size_t)r->n_utf8, ready = 0;
    memcpy(buf, r->utf8, total);
    if (!eog) {
        const int32_t len = sov_token_to_piece(s->vocab, t, false, buf + total, 256);
        total += (size_t)(len < 0 ? 0 : SOV_MIN(len, 256));
        ready = utf8_complete_prefix(buf, total);
        if (total - ready > 4) ready = total;
    }
    bool stopped = false, ok;
    pthread_mutex_lock(&s->mu);
    ok = emit_locked(r, buf, ready, &stopped);
    sched_finish f = SCHED_RUNNING;
    if (eog || stopped) f = SCHED_FINISH_STOP;
    else if (r->n_gen >= r->p.max_tokens || r->n_toks >= s->p.n_ctx) f = SCHED_FINISH_LENGTH;
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
        hist_add(&s->st.ttft, now - r->t_arrive);
    } else {
        hist_add(&s->st.itl, now - r->t_last);
    }
    s->st.generated_tokens++;
    mark_ready_locked(s, r);
    pthread_mutex_unlock(&s->mu);
    r->t_last = now;
    if (!ok) f = SCHED_FINISH_ERROR;
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

static void step(sched *s) {
    plan(s);
    fit(s);
    if (s->n_running == 0) return;
    /* assemble the batch; logits rows follow batch order */
    int32_t n = 0, rows = 0;
    for (int32_t i = 0; i < s->n_running; i++) {
        sched_req *r = s->running[i];
        r->step_row = -1;
        for (int32_t k = 0; k < r->step_n; k++) {
            const int32_t at = r->n_pos + k;
            s->b_tok[n] = r->toks[at];
            s->b_seq[n] = r->seq;
            s->b_pos[n] = at;
            s->b_logits[n] = at == r->n_toks - 1;
            if (s->b_logits[n]) r->step_row = rows++;
            n++;
        }
    }
    if (n == 0) return;
    const sov_batch b = {n, s->b_tok, s->b_seq, s->b_pos, s->b_logits};
    const sov_status st = sov_decode(s->ctx, &b, s->logits);
    if (st) {
        /* should not happen (blocks were reserved); fail this step's requests, not the server */
        char msg[160];
        snprintf(msg, sizeof msg, "engine: %s", sov_last_error());
        for (int32_t i = s->n_running - 1; i >= 0; i--) {
            sched_req *r = s->running[i];
            if (r->step_n == 0) continue;
            running_remove(s, r);
            finish_req(s, r, SCHED_FINISH_ERROR, msg);
        }
        return;
    }
    const double now = sov_now_s();
    pthread_mutex_lock(&s->mu);
    s->st.steps++;
    s->st.batch_tokens += (uint64_t)n;
    pthread_mutex_unlock(&s->mu);
    for (int32_t i = 0; i < s->n_running;) {
        sched_req *r = s->running[i];
        r->n_pos += r->step_n;
        r->step_n = 0;
        register_blocks(s, r);
        sched_finish f;
        if (r->step_row >= 0 && take_token(s, r, s->logits + (size_t)r->step_row * (size_t)s->n_vocab, now, &f)) {
            running_remove(s, r);
            finish_req(s, r, f, f == SCHED_FINISH_ERROR ? "engine: out of memory" : NULL);
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
            waiting_insert(s, s->n_waiting, r);
            r = next;
        }
        s->inbox_head = s->inbox_tail = NULL;
        const bool all = s->cancel_all;
        for (int32_t i = 0; i < s->n_running; i++) s->running[i]->cancel_seen = s->running[i]->cancel || all;
        for (int32_t i = 0; i < s->n_waiting; i++) s->waiting[i]->cancel_seen = s->waiting[i]->cancel || all;
        pthread_mutex_unlock(&s->mu);

        reap(s, sov_now_s());
        admit(s);
        if (s->n_running == 0 && s->n_waiting > 0) {
            /* nothing runs, so every block is free or evictable: the head cannot fit at all */
            sched_req *r = s->waiting[0];
            waiting_remove(s, 0);
            if (r->n_gen > 0) finish_req(s, r, SCHED_FINISH_LENGTH, NULL);
            else finish_req(s, r, SCHED_FINISH_ERROR, "the prompt does not fit the KV cache");
        }
        if (s->n_running > 0) step(s);
        if (publish_gauges(s) && s->p.notify) s->p.notify(s->p.notify_user);
    }
    /* shutdown: end everything still here */
    while (s->n_running > 0) {
        sched_req *r = s->running[s->n_running - 1];
        s->n_running--;
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
        s->n_waiting--;
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
    s->block_size = sov_kv_block_size(ctx);
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
    s->blocks_tmp = malloc(((size_t)p->n_ctx / (size_t)s->block_size + 2) * sizeof *s->blocks_tmp);
    if (!st && (!s->running || !s->logits || !s->b_tok || !s->b_seq || !s->b_pos || !s->b_logits || !s->blocks_tmp))
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
    free(s->b_tok);
    free(s->b_seq);
    free(s->b_pos);
    free(s->b_logits);
    free(s->blocks_tmp);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

sched_submit_result sched_submit(sched *s, sched_req *r) {
    if (r->n_prompt >= s->p.n_ctx || blocks_for(s, r->n_prompt) + 1 > sov_kv_blocks_total(s->ctx))
        return SCHED_TOO_LONG;
    pthread_mutex_lock(&s->mu);
    sched_submit_result res = SCHED_SUBMITTED;
    if (s->closed || s->stop) res = SCHED_CLOSED;
    else if (s->n_active >= s->p.n_parallel + s->p.max_queue) res = SCHED_QUEUE_FULL; /* waiting beyond the slots */
    if (res == SCHED_SUBMITTED) {
        __atomic_add_fetch(&r->refs, 1, __ATOMIC_ACQ_REL); /* the engine's */
        r->inbox_next = NULL;
        if (s->inbox_tail) s->inbox_tail->inbox_next = r;
        else s->inbox_head = r;
        s->inbox_tail = r;
        s->n_active++;
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
    d->finish = r->finish;
    memcpy(d->error, r->error, sizeof d->error);
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
