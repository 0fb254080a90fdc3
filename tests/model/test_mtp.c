/* test_mtp.c - sov_mtp_logits, deepseek2's multi-token-prediction pass (forward.c), at the
 * C level: its arguments are checked (no such module, row counts, tokens, positions, a
 * model without MTP blocks), it is causal (row i depends on rows 0..i only: changing the
 * last row leaves the others bitwise unchanged, changing the first changes all), and it
 * does not touch the context's sequences or cache (a decode after it gives bitwise the
 * logits of a decode without it). Its values are checked against the NumPy reference by
 * test_deepseek_mtp.py. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "model/synth.h"
#include "sov.h"
#include "test.h"

enum { T = 6, N_BATCH = 8 };

static char g_path[512], g_plain[512];

static void write_models(void) {
    sov_synth_params sp = sov_synth_default_params();
    sp.arch = "deepseek2";
    sp.n_embd = 64;
    sp.n_layer = 2;
    sp.n_head = 2;
    sp.n_ff = 64;
    sp.n_vocab = 300;
    sp.n_lora_q = 32;
    sp.n_lora_kv = 32;
    sp.qk_nope = 32;
    sp.v_head = 32;
    sp.n_rot = 16;
    sp.post_norm = true;
    sp.n_mtp = 2;
    test_tmp_path("test_mtp.gguf", g_path, sizeof g_path);
    CHECK(sov_synth_write(&sp, g_path, NULL, NULL) == SOV_OK);
    sp.n_mtp = 0;
    test_tmp_path("test_mtp_plain.gguf", g_plain, sizeof g_plain);
    CHECK(sov_synth_write(&sp, g_plain, NULL, NULL) == SOV_OK);
}

static sov_context *new_context(sov_model *m) {
    sov_context_params cp = sov_context_default_params();
    cp.n_batch = N_BATCH;
    cp.n_threads = 2;
    sov_context *c = NULL;
    CHECK(sov_context_new(m, &cp, &c) == SOV_OK);
    return c;
}

/* hidden (T, E): deterministic values of the size final hidden states have */
static void fill_hidden(float *h, size_t n) {
    for (size_t i = 0; i < n; i++) h[i] = sinf(0.37f * (float)i) * 1.5f;
}

static void test_arguments(void) {
    sov_model *m = NULL;
    CHECK(sov_model_load(g_path, NULL, &m) == SOV_OK);
    sov_model_info info;
    sov_model_get_info(m, &info);
    CHECK_EQ(info.n_layer, 2); /* the MTP blocks are not counted */
    sov_context *c = new_context(m);
    const size_t E = (size_t)info.n_embd, V = (size_t)info.n_vocab;
    float *h = malloc((N_BATCH + 1) * E * sizeof(float)), *lg = malloc((N_BATCH + 1) * V * sizeof(float));
    int32_t next[N_BATCH + 1], pos[N_BATCH + 1];
    for (int i = 0; i <= N_BATCH; i++) {
        next[i] = 5 + i;
        pos[i] = i;
    }
    fill_hidden(h, (N_BATCH + 1) * E);
    CHECK(sov_mtp_logits(c, 0, h, next, pos, T, lg) == SOV_OK);
    CHECK(sov_mtp_logits(c, 1, h, next, pos, T, lg) == SOV_OK);
    CHECK(sov_mtp_logits(c, 2, h, next, pos, T, lg) == SOV_ERR_ARG); /* two modules: 0 and 1 */
    CHECK(sov_mtp_logits(c, -1, h, next, pos, T, lg) == SOV_ERR_ARG);
    CHECK(sov_mtp_logits(c, 0, h, next, pos, 0, lg) == SOV_ERR_ARG);
    CHECK(sov_mtp_logits(c, 0, h, next, pos, N_BATCH + 1, lg) == SOV_ERR_ARG);
    CHECK(sov_mtp_logits(c, 0, NULL, next, pos, T, lg) == SOV_ERR_ARG);
    CHECK(sov_mtp_logits(c, 0, h, next, pos, T, NULL) == SOV_ERR_ARG);
    next[2] = (int32_t)V;
    CHECK(sov_mtp_logits(c, 0, h, next, pos, T, lg) == SOV_ERR_ARG);
    CHECK(strstr(sov_last_error(), "out of the vocabulary") != NULL);
    next[2] = -1;
    CHECK(sov_mtp_logits(c, 0, h, next, pos, T, lg) == SOV_ERR_ARG);
    next[2] = 7;
    pos[3] = -1;
    CHECK(sov_mtp_logits(c, 0, h, next, pos, T, lg) == SOV_ERR_ARG);
    free(h);
    free(lg);
    sov_context_free(c);
    sov_model_free(m);
    /* a model without MTP blocks */
    CHECK(sov_model_load(g_plain, NULL, &m) == SOV_OK);
    c = new_context(m);
    float hh[64] = {0}, l1[300];
    const int32_t t1 = 5, p1 = 0;
    CHECK(sov_mtp_logits(c, 0, hh, &t1, &p1, 1, l1) == SOV_ERR_ARG);
    CHECK(strstr(sov_last_error(), "no MTP module 0") != NULL);
    sov_context_free(c);
    sov_model_free(m);
}

static void test_causal_and_apart(void) {
    sov_model *m = NULL;
    CHECK(sov_model_load(g_path, NULL, &m) == SOV_OK);
    sov_model_info info;
    sov_model_get_info(m, &info);
    const size_t E = (size_t)info.n_embd, V = (size_t)info.n_vocab;
    sov_context *c = new_context(m);
    float *h = malloc(T * E * sizeof(float)), *a = malloc(T * V * sizeof(float)), *b = malloc(T * V * sizeof(float));
    int32_t next[T], pos[T];
    for (int i = 0; i < T; i++) {
        next[i] = 11 + 13 * i;
        pos[i] = i;
    }
    fill_hidden(h, T * E);
    CHECK(sov_mtp_logits(c, 0, h, next, pos, T, a) == SOV_OK);
    bool finite = true;
    for (size_t i = 0; i < T * V; i++) finite &= isfinite(a[i]);
    CHECK(finite);
    /* the last row's token and hidden state changed: the rows before it are unchanged */
    next[T - 1] = 250;
    for (size_t j = 0; j < E; j++) h[(T - 1) * E + j] *= -1.0f;
    CHECK(sov_mtp_logits(c, 0, h, next, pos, T, b) == SOV_OK);
    CHECK(memcmp(a, b, (T - 1) * V * sizeof(float)) == 0);
    CHECK(memcmp(a + (T - 1) * V, b + (T - 1) * V, V * sizeof(float)) != 0);
    /* the first row's token changed: every row attends to it */
    next[0] = 123;
    CHECK(sov_mtp_logits(c, 0, h, next, pos, T, a) == SOV_OK);
    for (int i = 0; i < T; i++) CHECK_MSG(memcmp(a + i * V, b + i * V, V * sizeof(float)) != 0, "row %d", i);
    /* the context's sequences are untouched: a decode after MTP calls equals one without */
    float *l1 = malloc(T * V * sizeof(float)), *l2 = malloc(T * V * sizeof(float));
    sov_token toks[T];
    sov_seq_id sq[T];
    uint8_t want[T];
    float *out[2] = {l1, l2};
    for (int run = 0; run < 2; run++) {
        sov_context *cc = new_context(m);
        sov_seq_id s;
        CHECK(sov_seq_new(cc, &s) == SOV_OK);
        if (run == 1) CHECK(sov_mtp_logits(cc, 1, h, next, pos, T, a) == SOV_OK);
        for (int i = 0; i < T; i++) {
            toks[i] = 3 + 7 * i;
            sq[i] = s;
            want[i] = 1;
        }
        const sov_batch bt = {.n_tokens = T, .token = toks, .seq = sq, .pos = pos, .logits = want};
        CHECK(sov_decode(cc, &bt, out[run]) == SOV_OK);
        sov_context_free(cc);
    }
    CHECK(memcmp(l1, l2, T * V * sizeof(float)) == 0);
    free(l1);
    free(l2);
    free(h);
    free(a);
    free(b);
    sov_context_free(c);
    sov_model_free(m);
}

int main(void) {
    write_models();
    RUN(test_arguments);
    RUN(test_causal_and_apart);
    remove(g_path);
    remove(g_plain);
    TEST_EXIT();
}
