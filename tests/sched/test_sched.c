/* test_sched.c - the engine loop (src/sched) on a small synthetic model, without HTTP:
 * greedy output of requests batched together equals each request run alone through
 * sov_decode; the prefix cache serves repeated prompts exactly and counts them; a tiny KV
 * pool forces preemption without changing any output; cancellation frees every block;
 * the queue bound, prompt limits and deadlines hold. Fair scheduling across tenants: a
 * flood from one tenant delays another's request by at most a step or two (FIFO by
 * hundreds), slots split by weight, the prompt budget is shared, fair preemptions leave
 * every output unchanged, and a tenant with nothing queued gets past a full queue. Each
 * fairness test also runs under FIFO and checks that FIFO fails it, so it cannot pass
 * without the fair policy. */
#include <pthread.h>
#include <unistd.h>

#include "core/util.h"
#include "model/synth.h"
#include "sched/sched.h"
#include "test.h"

enum { N_VOCAB = 512, MAX_GEN = 64, MAX_REQ = 16 };

static char g_model_path[512];
static sov_model *g_model;

/* ---- a waiter for the notify callback ---- */

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;
} waiter;

static waiter g_w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static void on_notify(void *user) {
    waiter *w = user;
    pthread_mutex_lock(&w->mu);
    w->pending = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void wait_notify(waiter *w) {
    pthread_mutex_lock(&w->mu);
    while (!w->pending) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        break;
    }
    w->pending = 0;
    pthread_mutex_unlock(&w->mu);
}

/* What one request produced. */
typedef struct result {
    sov_token toks[MAX_GEN];
    int n;
    char text[4096];
    size_t len;
    sched_finish finish;
    int n_cached;
    uint64_t first_step; /* sched_stats.steps when the first token came out */
    bool done;
} result;

/* Called on every pass of collect (for sampling the scheduler while it runs). */
typedef void (*collect_hook)(sched *s, void *user);

/* Collects output until every request in reqs is finished (and releases them), calling
 * hook (when not NULL) on every pass. */
static void collect_with(sched *s, sched_req **reqs, result *res, int n, collect_hook hook, void *user) {
    int left = n;
    const double t_end = sov_now_s() + 300;
    while (left > 0 && sov_now_s() < t_end) {
        wait_notify(&g_w);
        if (hook) hook(s, user);
        sched_req *ready[64];
        const int32_t k = sched_poll(s, ready, 64);
        for (int32_t i = 0; i < k; i++) {
            const int idx = (int)(intptr_t)sched_req_user(ready[i]);
            result *r = &res[idx];
            sched_delta d;
            sched_take(s, ready[i], &d);
            if (d.len && r->len + d.len < sizeof r->text) {
                memcpy(r->text + r->len, d.text, d.len);
                r->len += d.len;
            }
            for (int32_t t = 0; t < d.n_toks && r->n < MAX_GEN; t++)
                r->toks[r->n++] = d.toks[t].id;
            free(d.text);
            free(d.toks);
            r->n_cached = d.n_cached;
            if (d.started) r->first_step = d.first_step;
            if (d.finish != SCHED_RUNNING && !r->done) {
                r->done = true;
                r->finish = d.finish;
                sched_req_release(reqs[idx]);
                left--;
            }
        }
    }
    CHECK_EQ(left, 0);
}

static void collect(sched *s, sched_req **reqs, result *res, int n) {
    collect_with(s, reqs, res, n, NULL, NULL);
}

/* ---- reference: one sequence alone, greedy ---- */

static void reference(const sov_token *prompt, int n, int n_gen, sov_token *out) {
    sov_context_params cp = sov_context_default_params();
    cp.n_ctx = 512;
    cp.n_threads = 1;
    sov_context *ctx = NULL;
    CHECK_EQ(sov_context_new(g_model, &cp, &ctx), SOV_OK);
    sov_seq_id seq;
    CHECK_EQ(sov_seq_new(ctx, &seq), SOV_OK);
    float *logits = malloc(N_VOCAB * sizeof(float));
    sov_token tk[512];
    sov_seq_id sq[512];
    int32_t ps[512];
    uint8_t lg[512];
    for (int i = 0; i < n; i++) {
        tk[i] = prompt[i];
        sq[i] = seq;
        ps[i] = i;
        lg[i] = i == n - 1;
    }
    sov_batch b = {n, tk, sq, ps, lg};
    CHECK_EQ(sov_decode(ctx, &b, logits), SOV_OK);
    for (int g = 0; g < n_gen; g++) {
        sov_token best = 0;
        for (sov_token t = 1; t < N_VOCAB; t++)
            if (logits[t] > logits[best]) best = t;
        out[g] = best;
        tk[0] = best;
        ps[0] = n + g;
        lg[0] = 1;
        sov_batch one = {1, tk, sq, ps, lg};
        CHECK_EQ(sov_decode(ctx, &one, logits), SOV_OK);
    }
    free(logits);
    sov_context_free(ctx);
}

/* ---- fixtures ---- */

static sov_context *new_ctx(int n_seq, int64_t kv_blocks) {
    sov_context_params cp = sov_context_default_params();
    cp.n_ctx = 512;
    cp.n_seq_max = n_seq;
    cp.n_batch = 64;
    cp.n_threads = 2;
    sov_model_info info;
    sov_model_get_info(g_model, &info);
    if (kv_blocks > 0) /* blocks of 16 positions, f16 keys and values */
        cp.kv_cache_bytes = kv_blocks * 16 * info.n_layer * info.n_head_kv * info.head_dim * 2 * 2;
    sov_context *ctx = NULL;
    CHECK_EQ(sov_context_new(g_model, &cp, &ctx), SOV_OK);
    return ctx;
}

static sched *new_sched_policy(sov_context *ctx, int parallel, int max_queue, int n_batch,
                               sched_policy policy) {
    sched_params p = {.policy = policy,
                      .n_parallel = parallel,
                      .n_batch = n_batch,
                      .max_queue = max_queue,
                      .n_ctx = 512,
                      .notify = on_notify,
                      .notify_user = &g_w};
    sched *s = NULL;
    CHECK_EQ(sched_new(ctx, g_model, &p, &s), SOV_OK);
    return s;
}

/* The default policy (zero-initialised parameters, as the server passes them): FAIR. */
static sched *new_sched(sov_context *ctx, int parallel, int max_queue, int n_batch) {
    return new_sched_policy(ctx, parallel, max_queue, n_batch, SCHED_POLICY_FAIR);
}

static sched_req_params greedy(int max_tokens) {
    sched_req_params rp = {
        .sp = sov_sampler_default_params(), .max_tokens = max_tokens, .ignore_eos = true, .top_logprobs = 0};
    rp.sp.temperature = 0;
    return rp;
}

static void make_prompt(sov_token *p, int n, uint64_t seed) {
    test_rng rng = {seed * 0x9e3779b97f4a7c15ull + 1};
    for (int i = 0; i < n; i++)
        p[i] = 3 + (sov_token)(test_rng_next(&rng) % (N_VOCAB - 3));
}

/* ---- tests ---- */

static void concurrent_greedy_equals_alone(void) {
    enum { N = 7 };
    static const int lens[N] = {5, 40, 17, 100, 1, 64, 33};
    sov_token prompts[N][128];
    for (int i = 0; i < N; i++)
        make_prompt(prompts[i], lens[i], (uint64_t)i + 1);
    /* two prompts share a 48-token prefix with prompt 3 */
    memcpy(prompts[5], prompts[3], 48 * sizeof(sov_token));
    sov_context *ctx = new_ctx(4, 0);
    sched *s = new_sched(ctx, 4, 64, 48); /* a small budget: prompts are chunked */
    sched_req *reqs[N];
    result res[N];
    memset(res, 0, sizeof res);
    for (int i = 0; i < N; i++) {
        sched_req_params rp = greedy(24 + i);
        reqs[i] = sched_req_new(prompts[i], lens[i], &rp, (void *)(intptr_t)i);
        CHECK(reqs[i] != NULL);
        CHECK_EQ(sched_submit(s, reqs[i]), SCHED_SUBMITTED);
    }
    collect(s, reqs, res, N);
    for (int i = 0; i < N; i++) {
        sov_token ref[MAX_GEN];
        reference(prompts[i], lens[i], 24 + i, ref);
        CHECK_EQ(res[i].n, 24 + i);
        CHECK_EQ(res[i].finish, SCHED_FINISH_LENGTH);
        int same = 0;
        while (same < res[i].n && res[i].toks[same] == ref[same])
            same++;
        CHECK_MSG(same == 24 + i, "request %d differs from running alone at token %d", i, same);
    }
    sched_stats st;
    sched_get_stats(s, &st);
    CHECK_EQ(st.running, 0);
    CHECK_EQ(st.waiting, 0);
    CHECK(st.steps > 0);
    CHECK_EQ(st.finished[SCHED_FINISH_LENGTH], N);
    sched_free(s);
    CHECK_EQ(sov_kv_blocks_free(ctx), sov_kv_blocks_total(ctx)); /* the cache let go of its blocks */
    sov_context_free(ctx);
}

/* Runs one request to the end and returns its result. */
static result run_one(sched *s, const sov_token *p, int n, const sched_req_params *rp) {
    result res;
    memset(&res, 0, sizeof res);
    sched_req *r = sched_req_new(p, n, rp, (void *)(intptr_t)0);
    CHECK(r != NULL);
    CHECK_EQ(sched_submit(s, r), SCHED_SUBMITTED);
    collect(s, &r, &res, 1);
    return res;
}

static void repeated_prompt_hits_prefix_cache_exactly(void) {
    sov_token p[100];
    make_prompt(p, 100, 77);
    sov_context *ctx = new_ctx(2, 0);
    sched *s = new_sched(ctx, 2, 8, 64);
    sched_req_params rp = greedy(20);
    const result first = run_one(s, p, 100, &rp);
    const result second = run_one(s, p, 100, &rp);
    CHECK_EQ(first.n_cached, 0);
    /* the 6 full blocks, then 3 positions of block 6 (which the first request filled with
     * its last 4 prompt tokens and its output): every prompt token but the last */
    CHECK_EQ(second.n_cached, 99);
    sched_stats st;
    sched_get_stats(s, &st);
    CHECK_EQ(st.prompt_tokens, 200);
    CHECK_EQ(st.prompt_tokens_cached, 99);
    CHECK(st.prefix_cached_blocks >= 6);
    sov_token ref[MAX_GEN];
    reference(p, 100, 20, ref);
    CHECK(memcmp(ref, first.toks, 20 * sizeof(sov_token)) == 0);
    CHECK(memcmp(ref, second.toks, 20 * sizeof(sov_token)) == 0);
    /* another tenant never hits it */
    rp.tenant = "other";
    const result third = run_one(s, p, 100, &rp);
    CHECK_EQ(third.n_cached, 0);
    CHECK(memcmp(ref, third.toks, 20 * sizeof(sov_token)) == 0);
    sched_free(s);
    sov_context_free(ctx);
}

static void cached_prefix_gives_same_tokens(void) {
    sov_token a[90], b[90];
    make_prompt(a, 90, 5);
    memcpy(b, a, sizeof a);
    b[85] = (b[85] + 1) % N_VOCAB; /* shares the first 5 blocks and 5 tokens of the 6th */
    sov_context *ctx = new_ctx(2, 0);
    sched *s = new_sched(ctx, 2, 8, 64);
    sched_req_params rp = greedy(16);
    const result ra = run_one(s, a, 90, &rp);
    const result res = run_one(s, b, 90, &rp);
    CHECK_EQ(res.n_cached, 85); /* token granularity: block 5 is shared up to the difference */
    sov_token ref[MAX_GEN];
    reference(b, 90, 16, ref);
    CHECK(memcmp(ref, res.toks, 16 * sizeof(sov_token)) == 0);
    /* b's write into the shared block copied it: a again still gets a's tokens from it */
    const result again = run_one(s, a, 90, &rp);
    CHECK(again.n_cached >= 85);
    CHECK(memcmp(ra.toks, again.toks, 16 * sizeof(sov_token)) == 0);
    reference(a, 90, 16, ref);
    CHECK(memcmp(ref, again.toks, 16 * sizeof(sov_token)) == 0);
    sched_free(s);
    sov_context_free(ctx);
}

static void concurrent_shared_prefix_is_computed_once(void) {
    enum { N = 4, LEN = 200 };
    sov_token p[N][LEN];
    make_prompt(p[0], LEN, 9);
    for (int i = 1; i < N; i++) {
        memcpy(p[i], p[0], sizeof p[0]);
        p[i][LEN - 3] = (sov_token)(10 + i); /* differ in the last block */
    }
    sov_context *ctx = new_ctx(N, 0);
    sched *s = new_sched(ctx, N, 8, 64);
    sched_req *reqs[N];
    result res[N];
    memset(res, 0, sizeof res);
    sched_req_params rp = greedy(8);
    for (int i = 0; i < N; i++) {
        reqs[i] = sched_req_new(p[i], LEN, &rp, (void *)(intptr_t)i);
        CHECK_EQ(sched_submit(s, reqs[i]), SCHED_SUBMITTED);
    }
    collect(s, reqs, res, N);
    sched_stats st;
    sched_get_stats(s, &st);
    /* 12 full blocks (192 tokens) are shared; the first request computes them */
    CHECK_EQ(st.prompt_tokens_cached, (N - 1) * 192);
    CHECK(st.batch_tokens <= LEN + (N - 1) * (LEN - 192) + N * 8);
    for (int i = 0; i < N; i++) {
        sov_token ref[MAX_GEN];
        reference(p[i], LEN, 8, ref);
        CHECK_MSG(memcmp(ref, res[i].toks, 8 * sizeof(sov_token)) == 0, "request %d", i);
    }
    sched_free(s);
    sov_context_free(ctx);
}

static void tiny_pool_preempts_without_changing_output(void) {
    enum { N = 4 };
    sov_token p[N][60];
    for (int i = 0; i < N; i++)
        make_prompt(p[i], 60, 100 + (uint64_t)i);
    sov_context *ctx = new_ctx(N, 14); /* 14 blocks: one request needs up to 7 */
    sched *s = new_sched(ctx, N, 16, 64);
    sched_req *reqs[N];
    result res[N];
    memset(res, 0, sizeof res);
    sched_req_params rp = greedy(40);
    for (int i = 0; i < N; i++) {
        reqs[i] = sched_req_new(p[i], 60, &rp, (void *)(intptr_t)i);
        CHECK_EQ(sched_submit(s, reqs[i]), SCHED_SUBMITTED);
    }
    collect(s, reqs, res, N);
    sched_stats st;
    sched_get_stats(s, &st);
    for (int i = 0; i < N; i++) {
        sov_token ref[MAX_GEN];
        reference(p[i], 60, 40, ref);
        CHECK_EQ(res[i].n, 40);
        CHECK_MSG(memcmp(ref, res[i].toks, 40 * sizeof(sov_token)) == 0, "request %d", i);
    }
    fprintf(stderr, "  (preemptions: %llu, evictions %llu)\n", (unsigned long long)st.preemptions,
            (unsigned long long)st.prefix_evictions);
    CHECK(st.preemptions + st.prefix_evictions > 0);
    sched_free(s);
    sov_context_free(ctx);
}

static void cancel_frees_sequence_and_blocks(void) {
    sov_token p[40];
    make_prompt(p, 40, 3);
    sov_context *ctx = new_ctx(2, 0);
    sched *s = new_sched(ctx, 2, 8, 64);
    sched_req_params rp = greedy(400);
    sched_req *r = sched_req_new(p, 40, &rp, (void *)(intptr_t)0);
    CHECK_EQ(sched_submit(s, r), SCHED_SUBMITTED);
    /* wait for the first token, then cancel */
    bool started = false, done = false;
    const double t_end = sov_now_s() + 60;
    sched_finish fin = SCHED_RUNNING;
    while (!done && sov_now_s() < t_end) {
        wait_notify(&g_w);
        sched_req *ready[4];
        const int32_t k = sched_poll(s, ready, 4);
        for (int32_t i = 0; i < k; i++) {
            sched_delta d;
            sched_take(s, ready[i], &d);
            free(d.text);
            free(d.toks);
            if (d.started && !started) {
                started = true;
                sched_cancel(s, r);
            }
            if (d.finish != SCHED_RUNNING) {
                done = true;
                fin = d.finish;
                CHECK(d.n_gen < 400);
            }
        }
    }
    CHECK(done);
    CHECK_EQ(fin, SCHED_FINISH_CANCELLED);
    sched_req_release(r);
    sched_stats st;
    sched_get_stats(s, &st);
    /* every block is free or only the prefix cache holds it */
    CHECK_EQ(st.kv_blocks_free + st.prefix_cached_blocks, st.kv_blocks_total);
    CHECK_EQ(sched_active(s), 0);
    sched_free(s);
    sov_context_free(ctx);
}

static void queue_bound_and_limits_refuse(void) {
    sov_token p[600];
    make_prompt(p, 600, 11);
    sov_context *ctx = new_ctx(1, 0);
    sched *s = new_sched(ctx, 1, 2, 64);
    sched_req_params rp = greedy(200);
    sched_req *long_one = sched_req_new(p, 512, &rp, NULL);
    CHECK_EQ(sched_submit(s, long_one), SCHED_TOO_LONG); /* 512 positions leave none to generate */
    sched_req_release(long_one);
    sched_req *reqs[6];
    result res[6];
    memset(res, 0, sizeof res);
    int n_ok = 0, n_full = 0;
    sched_req *ok[6];
    for (int i = 0; i < 6; i++) {
        reqs[i] = sched_req_new(p, 30, &rp, (void *)(intptr_t)n_ok);
        const sched_submit_result sr = sched_submit(s, reqs[i]);
        if (sr == SCHED_SUBMITTED)
            ok[n_ok++] = reqs[i];
        else {
            CHECK_EQ(sr, SCHED_QUEUE_FULL);
            n_full++;
            sched_req_release(reqs[i]);
        }
    }
    CHECK(n_full >= 3); /* one may run, two wait */
    for (int i = 0; i < n_ok; i++)
        sched_cancel(s, ok[i]);
    collect(s, ok, res, n_ok);
    sched_close(s);
    sched_req *late = sched_req_new(p, 30, &rp, NULL);
    CHECK_EQ(sched_submit(s, late), SCHED_CLOSED);
    sched_req_release(late);
    sched_free(s);
    sov_context_free(ctx);
}

static void deadline_ends_request(void) {
    sov_token p[20];
    make_prompt(p, 20, 13);
    sov_context *ctx = new_ctx(1, 0);
    sched *s = new_sched(ctx, 1, 4, 64);
    sched_req_params rp = greedy(490);
    rp.top_logprobs = -1;
    /* already past when the engine first looks at it (the model is too fast for a deadline
     * to land mid-generation reliably; test_http.py does that on a bigger model) */
    rp.deadline = sov_now_s() - 0.001;
    const double t0 = sov_now_s();
    const result res = run_one(s, p, 20, &rp);
    CHECK_EQ(res.finish, SCHED_FINISH_DEADLINE);
    CHECK(sov_now_s() - t0 < 5);
    sched_free(s);
    sov_context_free(ctx);
}

static void stop_string_and_eos_end_generation(void) {
    /* first find what greedy produces, then stop on a piece of it */
    sov_token p[12];
    make_prompt(p, 12, 21);
    sov_context *ctx = new_ctx(1, 0);
    sched *s = new_sched(ctx, 1, 4, 64);
    sched_req_params rp = greedy(30);
    const result full = run_one(s, p, 12, &rp);
    CHECK(full.len > 8);
    char stop[4] = {0};
    memcpy(stop, full.text + full.len / 2, 3);
    rp.stops[0] = stop;
    rp.n_stops = 1;
    const result cut = run_one(s, p, 12, &rp);
    CHECK_EQ(cut.finish, SCHED_FINISH_STOP);
    const char *at = memmem(full.text, full.len, stop, 3);
    CHECK(at != NULL);
    CHECK_EQ(cut.len, (size_t)(at - full.text)); /* the text before the stop string, without it */
    CHECK(memcmp(cut.text, full.text, cut.len) == 0);
    /* without ignore_eos, an end-of-generation token ends it with "stop": make the
     * first greedy token one by biasing it up */
    rp.n_stops = 0;
    rp.ignore_eos = false;
    const sov_token eos = sov_vocab_eos(sov_model_vocab(g_model));
    CHECK(eos >= 0);
    const float big = 1000.0f;
    rp.bias_tok = &eos;
    rp.bias = &big;
    rp.n_bias = 1;
    const result eog = run_one(s, p, 12, &rp);
    CHECK_EQ(eog.finish, SCHED_FINISH_STOP);
    CHECK_EQ(eog.len, 0);
    CHECK_EQ(eog.n, 0);
    sched_free(s);
    sov_context_free(ctx);
}

/* ---- fair scheduling across tenants ---- */

static const char *policy_name(sched_policy p) { return p == SCHED_POLICY_FAIR ? "fair" : "fifo"; }

/* Submits prompt p[0..n) as tenant (with weight w); idx is its result slot. */
static sched_req *submit_as(sched *s, const char *tenant, double w, const sov_token *p, int n, int max_tokens,
                            int idx) {
    sched_req_params rp = greedy(max_tokens);
    rp.tenant = tenant;
    rp.weight = w;
    sched_req *r = sched_req_new(p, n, &rp, (void *)(intptr_t)idx);
    CHECK(r != NULL);
    CHECK_EQ(sched_submit(s, r), SCHED_SUBMITTED);
    return r;
}

static uint64_t steps_now(sched *s) {
    sched_stats st;
    sched_get_stats(s, &st);
    return st.steps;
}

/* Waits until n sequences run (as of the last step). */
static void wait_running(sched *s, int n) {
    const double t_end = sov_now_s() + 60;
    sched_stats st;
    do {
        sched_get_stats(s, &st);
        if (st.running >= n) return;
        usleep(200);
    } while (sov_now_s() < t_end);
    CHECK_MSG(false, "%d never ran at once", n);
}

/* The request's greedy tokens equal those of its prompt run alone. */
static void check_alone(const sov_token *p, int n, const result *res, int n_gen, const char *what, int i) {
    sov_token ref[MAX_GEN];
    reference(p, n, n_gen, ref);
    int same = 0;
    while (same < res->n && same < n_gen && res->toks[same] == ref[same])
        same++;
    CHECK_MSG(res->n == n_gen && same == n_gen, "%s request %d: %d tokens, differs from running alone at %d",
              what, i, res->n, same);
}

enum { FLOOD = 64, FLOOD_GEN = 48, FLOOD_PROMPT = 20 };

/* Engine steps from submitting tenant B's request to its first token on 4 slots: on an
 * idle scheduler, or once tenant A's FLOOD requests of FLOOD_GEN tokens fill the slots.
 * Every output is checked against the request run alone. */
static uint64_t b_steps_to_first_token(sched_policy policy, bool flood, uint64_t *fair_preemptions) {
    sov_token(*pa)[FLOOD_PROMPT] = malloc(FLOOD * sizeof *pa);
    sov_token pb[FLOOD_PROMPT];
    result *res = calloc(FLOOD + 1, sizeof *res);
    sched_req *reqs[FLOOD + 1];
    CHECK(pa && res);
    sov_context *ctx = new_ctx(4, 0);
    sched *s = new_sched_policy(ctx, 4, FLOOD, 64, policy);
    const int n_a = flood ? FLOOD : 0;
    for (int i = 0; i < n_a; i++) {
        make_prompt(pa[i], FLOOD_PROMPT, 1000 + (uint64_t)i);
        reqs[i] = submit_as(s, "A", 1, pa[i], FLOOD_PROMPT, FLOOD_GEN, i);
    }
    if (flood) wait_running(s, 4);
    make_prompt(pb, FLOOD_PROMPT, 999);
    const uint64_t at = steps_now(s);
    reqs[n_a] = submit_as(s, "B", 1, pb, FLOOD_PROMPT, 8, n_a);
    collect(s, reqs, res, n_a + 1);
    check_alone(pb, FLOOD_PROMPT, &res[n_a], 8, "B", 0);
    for (int i = 0; i < n_a; i++)
        check_alone(pa[i], FLOOD_PROMPT, &res[i], FLOOD_GEN, "A", i);
    sched_stats st;
    sched_get_stats(s, &st);
    *fair_preemptions = st.fair_preemptions;
    const uint64_t steps = res[n_a].first_step - at;
    sched_free(s);
    sov_context_free(ctx);
    free(pa);
    free(res);
    return steps;
}

static void flood_does_not_starve_another_tenant(void) {
    uint64_t fp_idle, fp_fair, fp_fifo;
    const uint64_t idle = b_steps_to_first_token(SCHED_POLICY_FAIR, false, &fp_idle);
    const uint64_t fair = b_steps_to_first_token(SCHED_POLICY_FAIR, true, &fp_fair);
    const uint64_t fifo = b_steps_to_first_token(SCHED_POLICY_FIFO, true, &fp_fifo);
    fprintf(stderr,
            "  (B's first token: %llu steps idle; under A's flood %llu with fair (%llu fair preemptions), "
            "%llu with fifo)\n",
            (unsigned long long)idle, (unsigned long long)fair, (unsigned long long)fp_fair,
            (unsigned long long)fifo);
    CHECK_EQ(idle, 1);
    CHECK(fair <= 2 * idle + 1); /* the requirement: within 2x idle plus one step */
    CHECK(fair <= 3);
    CHECK(fp_fair >= 1);
    CHECK_EQ(fp_fifo, 0);
    /* FIFO puts B behind A's 60 queued requests: 15 rounds of 4 running 48 tokens each */
    CHECK(fifo > 600);
}

/* Samples tenants A and B's running counts while both have requests waiting. */
typedef struct split {
    int samples, off;
    int32_t off_a, off_b;     /* the last sample off 3:1 */
    uint64_t a_last, b_first; /* steps of A's last first token and B's first one */
} split;

static void sample_split(sched *s, void *user) {
    split *sp = user;
    int32_t ra, wa, rb, wb;
    const uint64_t step = sched_tenant_load(s, "A", &ra, &wa);
    if (sched_tenant_load(s, "B", &rb, &wb) != step || wa == 0 || wb == 0) return;
    sp->samples++;
    if (ra != 3 || rb != 1) {
        sp->off++;
        sp->off_a = ra;
        sp->off_b = rb;
    }
}

/* Tenants A (weight 3) and B (weight 1) both flood 4 slots; B starts once A fills them. */
static split weighted_split(sched_policy policy) {
    enum { N = 16, LEN = 12, GEN = 24 };
    sov_token p[2 * N][LEN];
    sched_req *reqs[2 * N];
    result res[2 * N];
    memset(res, 0, sizeof res);
    sov_context *ctx = new_ctx(4, 0);
    sched *s = new_sched_policy(ctx, 4, 2 * N, 64, policy);
    for (int i = 0; i < 2 * N; i++) {
        if (i == N) wait_running(s, 4); /* B arrives once A holds every slot */
        make_prompt(p[i], LEN, 300 + (uint64_t)i);
        reqs[i] = submit_as(s, i < N ? "A" : "B", i < N ? 3 : 1, p[i], LEN, GEN, i);
    }
    split sp = {0};
    collect_with(s, reqs, res, 2 * N, sample_split, &sp);
    sp.b_first = UINT64_MAX;
    for (int i = 0; i < 2 * N; i++) {
        check_alone(p[i], LEN, &res[i], GEN, policy_name(policy), i);
        if (i < N) sp.a_last = res[i].first_step > sp.a_last ? res[i].first_step : sp.a_last;
        else sp.b_first = res[i].first_step < sp.b_first ? res[i].first_step : sp.b_first;
    }
    sched_free(s);
    sov_context_free(ctx);
    return sp;
}

static void weights_split_slots(void) {
    const split fair = weighted_split(SCHED_POLICY_FAIR);
    const split fifo = weighted_split(SCHED_POLICY_FIFO);
    fprintf(stderr,
            "  (samples with both waiting: fair %d, %d off 3:1; fifo %d, %d off 3:1; B's first token at step %llu"
            " fair, %llu fifo, A's last first token at %llu, %llu)\n",
            fair.samples, fair.off, fifo.samples, fifo.off, (unsigned long long)fair.b_first,
            (unsigned long long)fifo.b_first, (unsigned long long)fair.a_last, (unsigned long long)fifo.a_last);
    CHECK(fair.samples >= 5);
    CHECK_MSG(fair.off == 0, "running A:B was %d:%d", fair.off_a, fair.off_b);
    CHECK(fair.b_first < fair.a_last); /* fair: B ran while A's flood still waited */
    /* FIFO runs A's whole flood first. Judged by steps, not by samples: the collector
     * samples only when it gets a core, and on a loaded 2-core machine it once got none
     * while both tenants waited under FIFO (0 samples in a CI run) */
    CHECK(fifo.b_first > fifo.a_last);
    CHECK(fifo.samples == 0 || fifo.off > 0);
}

/* Steps from submitting tenant B's 64-token prompt to its first token, submitted right
 * after tenant A's three 450-token prompts, at 32 tokens per step. */
static uint64_t b_prompt_beside_long_prompts(sched_policy policy) {
    enum { NA = 3, LA = 450, LB = 64, GEN = 4 };
    sov_token pa[NA][LA], pb[LB];
    sched_req *reqs[NA + 1];
    result res[NA + 1];
    memset(res, 0, sizeof res);
    sov_context *ctx = new_ctx(4, 0);
    sched *s = new_sched_policy(ctx, 4, 8, 32, policy);
    for (int i = 0; i < NA; i++) {
        make_prompt(pa[i], LA, 500 + (uint64_t)i);
        reqs[i] = submit_as(s, "A", 1, pa[i], LA, GEN, i);
    }
    make_prompt(pb, LB, 600);
    const uint64_t at = steps_now(s);
    reqs[NA] = submit_as(s, "B", 1, pb, LB, GEN, NA);
    collect(s, reqs, res, NA + 1);
    for (int i = 0; i < NA; i++)
        check_alone(pa[i], LA, &res[i], GEN, policy_name(policy), i);
    check_alone(pb, LB, &res[NA], GEN, policy_name(policy), NA);
    const uint64_t steps = res[NA].first_step - at;
    sched_free(s);
    sov_context_free(ctx);
    return steps;
}

static void prompt_budget_shared_across_tenants(void) {
    const uint64_t fair = b_prompt_beside_long_prompts(SCHED_POLICY_FAIR);
    const uint64_t fifo = b_prompt_beside_long_prompts(SCHED_POLICY_FIFO);
    fprintf(stderr,
            "  (B's 64-token prompt beside A's 3 x 450: first token after %llu steps fair, %llu fifo)\n",
            (unsigned long long)fair, (unsigned long long)fifo);
    CHECK(fair <= 5);  /* half of the 32-token budget: 4 steps, and the step under way */
    CHECK(fifo >= 30); /* after A's 1350 prompt tokens */
}

/* Tenant A fills the slots, then B (3 requests) and C (1, weight 2) arrive: fair
 * preemptions (and, in a small pool, preemptions for room) change no output. */
static void fair_preemption_keeps_outputs(int64_t kv_blocks) {
    enum { NA = 8, NB = 3, N = NA + NB + 1, GEN = 30 };
    static const int lens[N] = {5, 40, 60, 17, 100, 33, 64, 9, 50, 70, 21, 45};
    sov_token p[N][128];
    for (int i = 0; i < N; i++)
        make_prompt(p[i], lens[i], 40 + (uint64_t)i);
    memcpy(p[4], p[2], 48 * sizeof(sov_token));       /* A's requests share a prefix */
    memcpy(p[NA + 1], p[NA], 48 * sizeof(sov_token)); /* so do B's */
    sov_context *ctx = new_ctx(4, kv_blocks);
    sched *s = new_sched(ctx, 4, 32, 48);
    sched_req *reqs[N];
    result res[N];
    memset(res, 0, sizeof res);
    for (int i = 0; i < NA; i++)
        reqs[i] = submit_as(s, "A", 1, p[i], lens[i], GEN, i);
    wait_running(s, kv_blocks ? 2 : 4); /* a small pool may not hold 4 of A's at once */
    for (int i = NA; i < N; i++)
        reqs[i] = submit_as(s, i < N - 1 ? "B" : "C", i < N - 1 ? 1 : 2, p[i], lens[i], GEN, i);
    collect(s, reqs, res, N);
    for (int i = 0; i < N; i++)
        check_alone(p[i], lens[i], &res[i], GEN, "", i);
    sched_stats st;
    sched_get_stats(s, &st);
    fprintf(stderr, "  (%lld KV blocks: %llu fair preemptions, %llu preemptions, %llu evictions)\n",
            (long long)kv_blocks, (unsigned long long)st.fair_preemptions, (unsigned long long)st.preemptions,
            (unsigned long long)st.prefix_evictions);
    CHECK(st.fair_preemptions >= (kv_blocks ? 1 : 2)); /* B and C each take one of A's 4 */
    CHECK(st.preemptions > st.fair_preemptions || !kv_blocks);
    sched_free(s);
    CHECK_EQ(sov_kv_blocks_free(ctx), sov_kv_blocks_total(ctx));
    sov_context_free(ctx);
}

static void fair_preemptions_keep_greedy_outputs(void) {
    fair_preemption_keeps_outputs(0);
    fair_preemption_keeps_outputs(16); /* a request needs up to 9: preemptions for room too */
}

/* Submits a long request of tenant; keeps it in keep[] when accepted. */
static sched_submit_result try_submit(sched *s, const char *tenant, const sov_token *p, sched_req **keep,
                                      int *n_keep) {
    sched_req_params rp = greedy(400);
    rp.tenant = tenant;
    sched_req *r = sched_req_new(p, 30, &rp, (void *)(intptr_t)*n_keep);
    CHECK(r != NULL);
    const sched_submit_result sr = sched_submit(s, r);
    if (sr == SCHED_SUBMITTED)
        keep[(*n_keep)++] = r;
    else
        sched_req_release(r);
    return sr;
}

static void queue_full_still_takes_a_new_tenant(void) {
    sov_token p[30];
    make_prompt(p, 30, 17);
    for (int k = 0; k < 2; k++) {
        const sched_policy policy = k == 0 ? SCHED_POLICY_FAIR : SCHED_POLICY_FIFO;
        sov_context *ctx = new_ctx(1, 0);
        sched *s = new_sched_policy(ctx, 1, 2, 64, policy); /* 1 running + 2 waiting */
        sched_req *keep[8];
        result res[8];
        memset(res, 0, sizeof res);
        int n = 0;
        for (int i = 0; i < 3; i++)
            CHECK_EQ(try_submit(s, "A", p, keep, &n), SCHED_SUBMITTED);
        CHECK_EQ(try_submit(s, "A", p, keep, &n), SCHED_QUEUE_FULL);
        /* B has nothing queued: under FAIR it gets in, once */
        CHECK_EQ(try_submit(s, "B", p, keep, &n),
                 policy == SCHED_POLICY_FAIR ? SCHED_SUBMITTED : SCHED_QUEUE_FULL);
        CHECK_EQ(try_submit(s, "A", p, keep, &n), SCHED_QUEUE_FULL);
        CHECK_EQ(try_submit(s, "B", p, keep, &n), SCHED_QUEUE_FULL);
        CHECK_EQ(try_submit(s, NULL, p, keep, &n),
                 policy == SCHED_POLICY_FAIR ? SCHED_SUBMITTED : SCHED_QUEUE_FULL);
        CHECK_EQ(n, policy == SCHED_POLICY_FAIR ? 5 : 3);
        for (int i = 0; i < n; i++)
            sched_cancel(s, keep[i]);
        collect(s, keep, res, n);
        /* every tenant entry went with its last request: a returning tenant starts afresh */
        int32_t run, wait;
        sched_tenant_load(s, "A", &run, &wait);
        CHECK_EQ(run + wait, 0);
        CHECK_EQ(sched_active(s), 0);
        sched_free(s);
        sov_context_free(ctx);
    }
}

int main(void) {
    sov_synth_params sp = sov_synth_default_params();
    sp.n_embd = 128;
    sp.n_layer = 2;
    sp.n_head = 4;
    sp.n_head_kv = 2;
    sp.n_ff = 256;
    sp.n_vocab = N_VOCAB;
    sp.n_ctx = 512;
    sp.seed = 42;
    test_tmp_path("sched_model.gguf", g_model_path, sizeof g_model_path);
    if (sov_synth_write(&sp, g_model_path, NULL, NULL) != SOV_OK) {
        fprintf(stderr, "cannot write the model: %s\n", sov_last_error());
        return 1;
    }
    if (sov_model_load(g_model_path, NULL, &g_model) != SOV_OK) {
        fprintf(stderr, "cannot load the model: %s\n", sov_last_error());
        return 1;
    }
    RUN(concurrent_greedy_equals_alone);
    RUN(repeated_prompt_hits_prefix_cache_exactly);
    RUN(cached_prefix_gives_same_tokens);
    RUN(concurrent_shared_prefix_is_computed_once);
    RUN(tiny_pool_preempts_without_changing_output);
    RUN(cancel_frees_sequence_and_blocks);
    RUN(queue_bound_and_limits_refuse);
    RUN(deadline_ends_request);
    RUN(stop_string_and_eos_end_generation);
    RUN(flood_does_not_starve_another_tenant);
    RUN(weights_split_slots);
    RUN(prompt_budget_shared_across_tenants);
    RUN(fair_preemptions_keep_greedy_outputs);
    RUN(queue_full_still_takes_a_new_tenant);
    sov_model_free(g_model);
    TEST_EXIT();
}
