/* test_sched_embed.c - embeddings in the engine and the scheduler, without HTTP, on a
 * small synthetic float32 model:
 *   - sov_decode_embd's hidden states are what the LM head multiplies: hidden x output^T
 *     equals sov_decode's logits; a batch asking for hidden states only needs no logits
 *     buffer, and one asking without an output buffer is refused;
 *   - the pooling types (mean, cls, last supported; none, rank refused by name);
 *   - embedding requests through the scheduler (more inputs than slots, 7-token steps so
 *     long inputs are chunked, a greedy generation running among them) give exactly what
 *     sov_embed gives for each input alone, share steps, leave every KV block free, and the
 *     generation's tokens equal its tokens alone;
 *   - an input as long as the context is accepted for embedding (not for generation), one
 *     longer is refused. */
#include <pthread.h>

#include "core/util.h"
#include "model/model.h"
#include "model/synth.h"
#include "quant/quant.h"
#include "sched/sched.h"
#include "test.h"

enum { N_VOCAB = 300, N_CTX = 128, E = 64, N_IN = 10 };

static char g_path[512];
static sov_model *g_model;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_pending;

static void on_notify(void *user) {
    (void)user;
    pthread_mutex_lock(&g_mu);
    g_pending = 1;
    pthread_cond_signal(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void wait_notify(void) {
    pthread_mutex_lock(&g_mu);
    if (!g_pending) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&g_cv, &g_mu, &ts);
    }
    g_pending = 0;
    pthread_mutex_unlock(&g_mu);
}

static sov_context *new_ctx(int n_seq, int n_batch) {
    sov_context_params cp = sov_context_default_params();
    cp.n_ctx = N_CTX;
    cp.n_seq_max = n_seq;
    cp.n_batch = n_batch;
    cp.n_threads = 2;
    cp.kv_type = SOV_KV_F32;
    sov_context *c = NULL;
    CHECK_EQ(sov_context_new(g_model, &cp, &c), SOV_OK);
    return c;
}

static void make_input(sov_token *p, int n, uint64_t seed) {
    test_rng rng = {seed * 0x9e3779b97f4a7c15ull + 1};
    for (int i = 0; i < n; i++)
        p[i] = (sov_token)(test_rng_next(&rng) % N_VOCAB);
}

static void hidden_states_feed_the_lm_head(void) {
    sov_context *c = new_ctx(1, 64);
    sov_seq_id seq;
    CHECK_EQ(sov_seq_new(c, &seq), SOV_OK);
    enum { T = 9 };
    sov_token tok[T];
    sov_seq_id sq[T];
    int32_t pos[T];
    uint8_t want[T];
    make_input(tok, T, 3);
    for (int i = 0; i < T; i++) {
        sq[i] = seq;
        pos[i] = i;
        want[i] = 1;
    }
    static float hidden[T * E], logits[T * N_VOCAB];
    const sov_batch b = {.n_tokens = T, .token = tok, .seq = sq, .pos = pos, .logits = want};
    CHECK_EQ(sov_decode_embd(c, &b, logits, want, hidden), SOV_OK);
    /* output.weight is float32 here: (N_VOCAB, E) rows */
    const sov_weight *w = &g_model->output;
    CHECK_EQ(w->type, SOV_TYPE_F32);
    double worst = 0, scale = 0;
    for (int t = 0; t < T; t++)
        for (int v = 0; v < N_VOCAB; v++) {
            const float *row = (const float *)((const char *)w->data + (size_t)v * w->row_bytes);
            double dot = 0;
            for (int k = 0; k < E; k++)
                dot += (double)hidden[t * E + k] * row[k];
            worst = SOV_MAX(worst, fabs(dot - logits[t * N_VOCAB + v]));
            scale = SOV_MAX(scale, fabs(dot));
        }
    CHECK_MSG(worst <= 1e-5 * scale, "hidden x output^T vs logits: %.3g (scale %.3g)", worst, scale);
    /* hidden states alone: no logits buffer needed; none without an output buffer */
    sov_seq_free(c, seq);
    CHECK_EQ(sov_seq_new(c, &seq), SOV_OK);
    const sov_batch b2 = {.n_tokens = T, .token = tok, .seq = sq, .pos = pos, .logits = NULL};
    static float hidden2[T * E];
    CHECK_EQ(sov_decode_embd(c, &b2, NULL, want, hidden2), SOV_OK);
    CHECK(memcmp(hidden, hidden2, sizeof hidden) == 0);
    sov_seq_free(c, seq);
    CHECK_EQ(sov_seq_new(c, &seq), SOV_OK);
    CHECK_EQ(sov_decode_embd(c, &b2, NULL, want, NULL), SOV_ERR_ARG);
    CHECK_EQ(sov_seq_length(c, seq), 0); /* a refused batch leaves the cache unchanged */
    sov_context_free(c);
}

static void pooling_types(void) {
    CHECK_EQ(sov_pooling_check(SOV_POOLING_MEAN), SOV_OK);
    CHECK_EQ(sov_pooling_check(SOV_POOLING_CLS), SOV_OK);
    CHECK_EQ(sov_pooling_check(SOV_POOLING_LAST), SOV_OK);
    CHECK_EQ(sov_pooling_check(SOV_POOLING_NONE), SOV_ERR_UNSUPPORTED);
    CHECK(strstr(sov_last_error(), "pooling_type 0 (none) is not supported") != NULL);
    CHECK_EQ(sov_pooling_check(SOV_POOLING_RANK), SOV_ERR_UNSUPPORTED);
    CHECK_EQ(sov_pooling_check(77), SOV_ERR_UNSUPPORTED);
    CHECK_STREQ(sov_pooling_name(77), "unknown");
    CHECK(sov_pooling_wants(SOV_POOLING_MEAN, 3, 5) && !sov_pooling_wants(SOV_POOLING_MEAN, 5, 5));
    CHECK(sov_pooling_wants(SOV_POOLING_CLS, 0, 5) && !sov_pooling_wants(SOV_POOLING_CLS, 1, 5));
    CHECK(sov_pooling_wants(SOV_POOLING_LAST, 4, 5) && !sov_pooling_wants(SOV_POOLING_LAST, 3, 5));
    sov_model_info info;
    sov_model_get_info(g_model, &info);
    CHECK_EQ(info.pooling, SOV_POOLING_MEAN); /* no pooling_type key: mean */
}

static void scheduler_embeddings_equal_alone(void) {
    static sov_token in[N_IN][N_CTX];
    int32_t n[N_IN];
    const sov_token *ptr[N_IN];
    for (int i = 0; i < N_IN; i++) {
        n[i] = 1 + (i * 13) % 40;
        make_input(in[i], n[i], 100 + (uint64_t)i);
        ptr[i] = in[i];
    }
    /* each alone, through sov_embed */
    static float want[N_IN * E];
    sov_context *c1 = new_ctx(1, 512);
    for (int i = 0; i < N_IN; i++)
        CHECK_EQ(sov_embed(c1, &ptr[i], &n[i], 1, want + i * E), SOV_OK);
    sov_token gen_prompt[12];
    make_input(gen_prompt, 12, 999);
    sov_context_free(c1);

    /* together through the scheduler: 4 slots, 7-token steps */
    sov_context *c = new_ctx(4, 64);
    sched_params p = {.n_parallel = 4, .n_batch = 7, .max_queue = 64, .n_ctx = N_CTX, .notify = on_notify};
    sched *s = NULL;
    CHECK_EQ(sched_new(c, g_model, &p, &s), SOV_OK);
    sched_req *reqs[N_IN + 1];
    sched_req_params ep = {.embed = true};
    for (int i = 0; i < N_IN; i++)
        reqs[i] = sched_req_new(in[i], n[i], &ep, (void *)(intptr_t)i);
    sched_req_params gp = {
        .sp = sov_sampler_default_params(), .max_tokens = 16, .ignore_eos = true, .top_logprobs = -1};
    gp.sp.temperature = 0;
    reqs[N_IN] = sched_req_new(gen_prompt, 12, &gp, (void *)(intptr_t)N_IN);
    CHECK_EQ(sched_submit(s, reqs[N_IN]), SCHED_SUBMITTED);
    CHECK_EQ(sched_submit_all(s, reqs, N_IN), SCHED_SUBMITTED);
    static float got[N_IN * E];
    int left = N_IN + 1;
    bool ok[N_IN + 1] = {false};
    const double t_end = sov_now_s() + 120;
    while (left > 0 && sov_now_s() < t_end) {
        wait_notify();
        sched_req *ready[32];
        const int32_t k = sched_poll(s, ready, 32);
        for (int32_t j = 0; j < k; j++) {
            const int idx = (int)(intptr_t)sched_req_user(ready[j]);
            sched_delta d;
            sched_take(s, ready[j], &d);
            free(d.text);
            free(d.toks);
            if (d.finish == SCHED_RUNNING) continue;
            if (idx < N_IN) {
                ok[idx] = d.finish == SCHED_FINISH_STOP && d.embd && d.n_embd == E && d.n_prompt == n[idx];
                if (d.embd) memcpy(got + idx * E, d.embd, sizeof(float) * E);
            } else {
                ok[idx] = d.finish == SCHED_FINISH_LENGTH && d.n_gen == 16;
            }
            free(d.embd);
            sched_req_release(ready[j]);
            left--;
        }
    }
    CHECK_EQ(left, 0);
    for (int i = 0; i <= N_IN; i++)
        CHECK_MSG(ok[i], "request %d", i);
    double worst = 0;
    for (int i = 0; i < N_IN * E; i++)
        worst = SOV_MAX(worst, fabs(got[i] - want[i]));
    CHECK_MSG(worst <= 1e-6, "scheduler vs alone: %.3g", worst);
    sched_stats st;
    sched_get_stats(s, &st);
    int32_t total = 12;
    for (int i = 0; i < N_IN; i++)
        total += n[i];
    /* every token computed once (nothing from a cache, nothing again), in full steps: the
     * inputs share batches with each other and the generation (alone, each input's chunks
     * and each generated token would take steps of their own: 54) */
    CHECK_EQ(st.batch_tokens, (uint64_t)total + 15);
    CHECK_MSG(st.steps <= (st.batch_tokens + 6) / 7 + 1, "%llu steps for %llu tokens",
              (unsigned long long)st.steps, (unsigned long long)st.batch_tokens);
    CHECK_EQ(st.generated_tokens, 16);
    CHECK_EQ(st.prompt_tokens, (uint64_t)total);
    /* the generation's full blocks may stay in the prefix cache; the embeddings' never */
    CHECK_EQ(st.kv_blocks_free + st.prefix_cached_blocks, st.kv_blocks_total);
    sched_free(s);
    sov_context_free(c);
}

static void generation_tokens_equal_alone(void) {
    /* the generation among the embeddings: its tokens, through the same path again with its
     * token output collected */
    sov_token gen_prompt[12];
    make_input(gen_prompt, 12, 999);
    sov_context *c = new_ctx(4, 64);
    sched_params p = {.n_parallel = 4, .n_batch = 7, .max_queue = 64, .n_ctx = N_CTX, .notify = on_notify};
    sched *s = NULL;
    CHECK_EQ(sched_new(c, g_model, &p, &s), SOV_OK);
    sched_req_params gp = {
        .sp = sov_sampler_default_params(), .max_tokens = 16, .ignore_eos = true, .top_logprobs = 0};
    gp.sp.temperature = 0;
    sched_req_params ep = {.embed = true};
    static sov_token in[3][40];
    sched_req *e[3];
    for (int i = 0; i < 3; i++) {
        make_input(in[i], 40, 7 + (uint64_t)i);
        e[i] = sched_req_new(in[i], 40, &ep, (void *)(intptr_t)(i + 1));
    }
    sched_req *g = sched_req_new(gen_prompt, 12, &gp, (void *)0);
    CHECK_EQ(sched_submit_all(s, e, 3), SCHED_SUBMITTED);
    CHECK_EQ(sched_submit(s, g), SCHED_SUBMITTED);
    sov_token mixed[16];
    int n_mixed = 0, left = 4;
    const double t_end = sov_now_s() + 120;
    while (left > 0 && sov_now_s() < t_end) {
        wait_notify();
        sched_req *ready[8];
        const int32_t k = sched_poll(s, ready, 8);
        for (int32_t j = 0; j < k; j++) {
            sched_delta d;
            sched_take(s, ready[j], &d);
            for (int32_t t = 0; t < d.n_toks && n_mixed < 16; t++)
                mixed[n_mixed++] = d.toks[t].id;
            free(d.text);
            free(d.toks);
            free(d.embd);
            if (d.finish == SCHED_RUNNING) continue;
            sched_req_release(ready[j]);
            left--;
        }
    }
    CHECK_EQ(left, 0);
    sched_free(s);
    sov_context_free(c);
    /* alone: the same scheduler, the generation by itself */
    c = new_ctx(4, 64);
    CHECK_EQ(sched_new(c, g_model, &p, &s), SOV_OK);
    g = sched_req_new(gen_prompt, 12, &gp, (void *)0);
    CHECK_EQ(sched_submit(s, g), SCHED_SUBMITTED);
    sov_token alone[16];
    int n_alone = 0;
    left = 1;
    while (left > 0 && sov_now_s() < t_end) {
        wait_notify();
        sched_req *ready[8];
        const int32_t k = sched_poll(s, ready, 8);
        for (int32_t j = 0; j < k; j++) {
            sched_delta d;
            sched_take(s, ready[j], &d);
            for (int32_t t = 0; t < d.n_toks && n_alone < 16; t++)
                alone[n_alone++] = d.toks[t].id;
            free(d.text);
            free(d.toks);
            if (d.finish == SCHED_RUNNING) continue;
            sched_req_release(ready[j]);
            left--;
        }
    }
    CHECK_EQ(n_mixed, 16);
    CHECK_EQ(n_alone, 16);
    CHECK(memcmp(mixed, alone, sizeof mixed) == 0);
    sched_free(s);
    sov_context_free(c);
}

static void context_limits(void) {
    sov_context *c = new_ctx(2, 64);
    sched_params p = {.n_parallel = 2, .n_batch = 64, .max_queue = 4, .n_ctx = N_CTX, .notify = on_notify};
    sched *s = NULL;
    CHECK_EQ(sched_new(c, g_model, &p, &s), SOV_OK);
    static sov_token in[N_CTX + 1];
    make_input(in, N_CTX + 1, 5);
    sched_req_params ep = {.embed = true};
    sched_req_params gp = {.sp = sov_sampler_default_params(), .max_tokens = 1, .top_logprobs = -1};
    sched_req *full = sched_req_new(in, N_CTX, &ep, NULL);
    sched_req *over = sched_req_new(in, N_CTX + 1, &ep, NULL);
    sched_req *gen = sched_req_new(in, N_CTX, &gp, NULL);
    CHECK_EQ(sched_submit(s, over), SCHED_TOO_LONG);
    CHECK_EQ(sched_submit(s, gen), SCHED_TOO_LONG);
    CHECK_EQ(sched_submit(s, full), SCHED_SUBMITTED);
    bool done = false;
    const double t_end = sov_now_s() + 60;
    while (!done && sov_now_s() < t_end) {
        wait_notify();
        sched_req *ready[4];
        const int32_t k = sched_poll(s, ready, 4);
        for (int32_t j = 0; j < k; j++) {
            sched_delta d;
            sched_take(s, ready[j], &d);
            if (d.finish != SCHED_RUNNING) {
                CHECK_EQ(d.finish, SCHED_FINISH_STOP);
                CHECK(d.embd != NULL);
                done = true;
            }
            free(d.text);
            free(d.toks);
            free(d.embd);
        }
    }
    CHECK(done);
    sched_req_release(full);
    sched_req_release(over);
    sched_req_release(gen);
    CHECK_EQ(sov_kv_blocks_free(c), sov_kv_blocks_total(c));
    sched_free(s);
    sov_context_free(c);
}

int main(void) {
    sov_synth_params sp = sov_synth_default_params();
    sp.n_embd = E;
    sp.n_layer = 2;
    sp.n_head = 4;
    sp.n_head_kv = 2;
    sp.n_ff = 128;
    sp.n_vocab = N_VOCAB;
    sp.n_ctx = 256;
    sp.seed = 9;
    test_tmp_path("sched_embed_model.gguf", g_path, sizeof g_path);
    if (sov_synth_write(&sp, g_path, NULL, NULL) != SOV_OK ||
        sov_model_load(g_path, NULL, &g_model) != SOV_OK) {
        fprintf(stderr, "cannot write or load the model: %s\n", sov_last_error());
        return 1;
    }
    RUN(hidden_states_feed_the_lm_head);
    RUN(pooling_types);
    RUN(scheduler_embeddings_equal_alone);
    RUN(generation_tokens_equal_alone);
    RUN(context_limits);
    sov_model_free(g_model);
    TEST_EXIT();
}
