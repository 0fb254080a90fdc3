/* Sampling: greedy choice, reproducibility per seed, the truncation sets of top-k,
 * top-p and min-p on hand-made logits, penalty arithmetic and its window, logit bias,
 * parameter validation, logprobs, and that draws follow the softmax. */
#include "test.h"

#include "sample/sample.h"
#include "sov.h"

static sov_sampler *make(sov_sampler_params p, int32_t n) {
    sov_sampler *s = NULL;
    CHECK_EQ(sov_sampler_new(&p, n, &s), SOV_OK);
    return s;
}

static sov_sampler_params plain(void) {
    sov_sampler_params p = sov_sampler_default_params();
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.temperature = 1.0f;
    return p;
}

static void greedy_picks_the_max_and_lowest_id_on_ties(void) {
    sov_sampler_params p = plain();
    p.temperature = 0.0f;
    sov_sampler *s = make(p, 6);
    float l[6] = {0.1f, 3.0f, -1.0f, 3.0f, 2.9f, 0.0f};
    CHECK_EQ(sov_sampler_sample(s, l), 1);
    float m[6] = {-5, -4, -3, -2, -1, -0.5f};
    CHECK_EQ(sov_sampler_sample(s, m), 5);
    sov_sampler_free(s);
}

static int draw(sov_sampler *s, const float *logits, int n) {
    float tmp[64];
    memcpy(tmp, logits, (size_t)n * sizeof *tmp);
    return sov_sampler_sample(s, tmp);
}

static void same_seed_same_tokens_other_seed_other_tokens(void) {
    float l[16];
    for (int i = 0; i < 16; i++) l[i] = (float)(i % 5);
    sov_sampler_params p = plain();
    p.seed = 1234;
    sov_sampler *a = make(p, 16), *b = make(p, 16);
    p.seed = 99;
    sov_sampler *c = make(p, 16);
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        const int x = draw(a, l, 16), y = draw(b, l, 16), z = draw(c, l, 16);
        CHECK_EQ(x, y);
        differ += x != z;
    }
    CHECK(differ > 50);
    sov_sampler_reset(a);
    sov_sampler_free(b);
    p.seed = 1234;
    b = make(p, 16);
    for (int i = 0; i < 50; i++) CHECK_EQ(draw(a, l, 16), draw(b, l, 16)); /* reset re-seeds */
    sov_sampler_free(a);
    sov_sampler_free(b);
    sov_sampler_free(c);
}

/* the set of tokens a sampler ever draws from l over many draws */
static unsigned support(sov_sampler_params p, const float *l, int n) {
    sov_sampler *s = make(p, n);
    unsigned seen = 0;
    for (int i = 0; i < 3000; i++) seen |= 1u << draw(s, l, n);
    sov_sampler_free(s);
    return seen;
}

static void truncation_keeps_exactly_the_right_sets(void) {
    /* probabilities at temperature 1: softmax of ln(p) = p itself */
    const float p8[8] = {0.40f, 0.25f, 0.15f, 0.10f, 0.05f, 0.03f, 0.015f, 0.005f};
    float l[8];
    for (int i = 0; i < 8; i++) l[i] = logf(p8[i]);
    sov_sampler_params p = plain();
    p.top_k = 3;
    CHECK_EQ(support(p, l, 8), 0x07u);
    p = plain();
    p.top_p = 0.75f; /* 0.40 + 0.25 = 0.65 < 0.75 <= 0.80: three tokens */
    CHECK_EQ(support(p, l, 8), 0x07u);
    p.top_p = 0.40f; /* the first alone reaches it */
    CHECK_EQ(support(p, l, 8), 0x01u);
    p = plain();
    p.min_p = 0.2f; /* >= 0.2 * 0.40 = 0.08: four tokens */
    CHECK_EQ(support(p, l, 8), 0x0Fu);
    p = plain();
    p.top_k = 5;
    p.min_p = 0.3f; /* min-p 0.12 keeps 3 of top-k's 5 */
    CHECK_EQ(support(p, l, 8), 0x07u);
    p = plain();
    CHECK_EQ(support(p, l, 8), 0xFFu); /* nothing truncated */
}

static void draws_follow_the_softmax(void) {
    /* chi-square over 20000 draws from 6 tokens at temperature 0.7; 5 degrees of
     * freedom: 20.5 is the 0.999 quantile, a correct sampler fails once in a thousand
     * seeds and this seed is fixed */
    const float l[6] = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, 1.5f};
    sov_sampler_params p = plain();
    p.temperature = 0.7f;
    p.seed = 42;
    sov_sampler *s = make(p, 6);
    int count[6] = {0};
    const int N = 20000;
    for (int i = 0; i < N; i++) count[draw(s, l, 6)]++;
    double z = 0, chi = 0;
    for (int i = 0; i < 6; i++) z += exp(l[i] / 0.7);
    for (int i = 0; i < 6; i++) {
        const double e = N * exp(l[i] / 0.7) / z;
        chi += (count[i] - e) * (count[i] - e) / e;
    }
    CHECK_MSG(chi < 20.5, "chi-square %.2f", chi);
    sov_sampler_free(s);
}

static void penalties_follow_their_formulas(void) {
    sov_sampler_params p = plain();
    p.temperature = 0.0f;
    p.repeat_penalty = 2.0f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    p.repeat_last_n = 3;
    sov_sampler *s = make(p, 5);
    sov_sampler_accept(s, 1);
    sov_sampler_accept(s, 1);
    sov_sampler_accept(s, 2);
    float l[5] = {1.0f, 4.0f, -2.0f, 0.0f, 0.5f};
    sov_sampler_sample(s, l);
    CHECK_NEAR(l[0], 1.0, 0);
    CHECK_NEAR(l[1], 4.0 / 2 - 2 * 0.5 - 0.25, 1e-6); /* seen twice, positive: divided */
    CHECK_NEAR(l[2], -2.0 * 2 - 0.5 - 0.25, 1e-6);    /* seen once, negative: multiplied */
    CHECK_NEAR(l[3], 0.0, 0);
    /* the window slides: after three more tokens, 1 and 2 are forgotten */
    sov_sampler_accept(s, 3);
    sov_sampler_accept(s, 3);
    sov_sampler_accept(s, 4);
    float m[5] = {1.0f, 4.0f, -2.0f, 0.0f, 0.5f};
    sov_sampler_sample(s, m);
    CHECK(m[1] == 4.0f && m[2] == -2.0f);
    CHECK_NEAR(m[3], 0.0 / 2 - 2 * 0.5 - 0.25, 1e-6);
    CHECK_NEAR(m[4], 0.5 / 2 - 0.5 - 0.25, 1e-6);
    sov_sampler_free(s);
    /* -1: the whole history, past any initial capacity */
    p.repeat_last_n = -1;
    p.repeat_penalty = 1.0f;
    p.presence_penalty = 0.0f;
    p.frequency_penalty = 1.0f;
    s = make(p, 5);
    for (int i = 0; i < 1000; i++) sov_sampler_accept(s, 0);
    float n5[5] = {0, 0, 0, 0, 0};
    sov_sampler_sample(s, n5);
    CHECK_NEAR(n5[0], -1000.0, 0);
    sov_sampler_free(s);
}

static void logit_bias_shifts_and_bans(void) {
    sov_sampler_params p = plain();
    p.temperature = 0.0f;
    sov_sampler *s = make(p, 4);
    CHECK_EQ(sov_sampler_set_logit_bias(s, 2, 10.0f), SOV_OK);
    float l[4] = {5, 1, 0, 3};
    CHECK_EQ(sov_sampler_sample(s, l), 2);
    CHECK_EQ(sov_sampler_set_logit_bias(s, 2, -INFINITY), SOV_OK);
    float m[4] = {5, 1, 100, 3};
    CHECK_EQ(sov_sampler_sample(s, m), 0);
    CHECK_EQ(sov_sampler_set_logit_bias(s, 4, 1.0f), SOV_ERR_ARG);
    CHECK_EQ(sov_sampler_set_logit_bias(s, 0, NAN), SOV_ERR_ARG);
    sov_sampler_free(s);
    /* a banned token is never drawn at any temperature */
    p = plain();
    s = make(p, 4);
    sov_sampler_set_logit_bias(s, 0, -INFINITY);
    float eq[4] = {0, 0, 0, 0};
    for (int i = 0; i < 500; i++) CHECK(draw(s, eq, 4) != 0);
    sov_sampler_free(s);
}

static void bad_parameters_are_rejected_by_name(void) {
    sov_sampler *s;
    sov_sampler_params p = plain();
    p.temperature = -1.0f;
    CHECK_EQ(sov_sampler_new(&p, 10, &s), SOV_ERR_ARG);
    CHECK(strstr(sov_last_error(), "temperature") != NULL);
    p = plain();
    p.top_p = 0.0f;
    CHECK_EQ(sov_sampler_new(&p, 10, &s), SOV_ERR_ARG);
    CHECK(strstr(sov_last_error(), "top_p") != NULL);
    p = plain();
    p.min_p = 1.5f;
    CHECK_EQ(sov_sampler_new(&p, 10, &s), SOV_ERR_ARG);
    p = plain();
    p.top_k = -2;
    CHECK_EQ(sov_sampler_new(&p, 10, &s), SOV_ERR_ARG);
    p = plain();
    p.repeat_last_n = -5;
    CHECK_EQ(sov_sampler_new(&p, 10, &s), SOV_ERR_ARG);
    p = plain();
    p.frequency_penalty = NAN;
    CHECK_EQ(sov_sampler_new(&p, 10, &s), SOV_ERR_ARG);
    p = plain();
    CHECK_EQ(sov_sampler_new(&p, 0, &s), SOV_ERR_ARG);
}

static void logprobs_are_the_log_softmax(void) {
    const float l[5] = {2.0f, 1.0f, 3.0f, -1.0f, 0.5f};
    double z = 0;
    for (int i = 0; i < 5; i++) z += exp(l[i]);
    sov_token ids[3];
    float lps[3], chosen;
    CHECK_EQ(sov_sampler_logprobs(l, 5, 1, 3, ids, lps, &chosen), 3);
    CHECK_EQ(ids[0], 2);
    CHECK_EQ(ids[1], 0);
    CHECK_EQ(ids[2], 1);
    CHECK_NEAR(lps[0], 3.0 - log(z), 1e-6);
    CHECK_NEAR(lps[2], 1.0 - log(z), 1e-6);
    CHECK_NEAR(chosen, 1.0 - log(z), 1e-6);
    sov_token ids9[9];
    float lps9[9];
    CHECK_EQ(sov_sampler_logprobs(l, 5, 0, 9, ids9, lps9, NULL), 5); /* capped at the vocabulary */
}

static void large_vocabulary_with_top_k(void) {
    const int V = 150000;
    float *l = malloc((size_t)V * sizeof *l);
    test_rng r = {3};
    for (int i = 0; i < V; i++) l[i] = test_rng_float(&r);
    l[77777] = 50.0f;
    sov_sampler_params p = sov_sampler_default_params();
    p.seed = 5;
    sov_sampler *s = make(p, V);
    CHECK_EQ(sov_sampler_sample(s, l), 77777); /* min-p 0.05 leaves only it */
    sov_sampler_free(s);
    free(l);
}

int main(void) {
    RUN(greedy_picks_the_max_and_lowest_id_on_ties);
    RUN(same_seed_same_tokens_other_seed_other_tokens);
    RUN(truncation_keeps_exactly_the_right_sets);
    RUN(draws_follow_the_softmax);
    RUN(penalties_follow_their_formulas);
    RUN(logit_bias_shifts_and_bans);
    RUN(bad_parameters_are_rejected_by_name);
    RUN(logprobs_are_the_log_softmax);
    RUN(large_vocabulary_with_top_k);
    TEST_EXIT();
}
