/* Sampling: greedy choice, reproducibility per seed (and a pinned sequence, the same on
 * every machine), the truncation sets of top-k, top-p and min-p on hand-made logits
 * (top-p's mass is normalised over what top-k left, as in llama.cpp), penalty
 * arithmetic, its window and its order after the logit bias, logit bias and bans,
 * NaN/inf logits, parameter validation, logprobs, that draws follow the (truncated)
 * softmax, and a 150k vocabulary whose top-p set is ~20k tokens against a full sort. */
#include "test.h"

#include <time.h>

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

static void top_p_mass_is_normalised_over_what_top_k_left(void) {
    const float p8[8] = {0.40f, 0.25f, 0.15f, 0.10f, 0.05f, 0.03f, 0.015f, 0.005f};
    float l[8];
    for (int i = 0; i < 8; i++) l[i] = logf(p8[i]);
    sov_sampler_params p = plain();
    p.top_k = 2;   /* 0.40 / 0.65 = 0.615 of what is left */
    p.top_p = 0.6f; /* the first alone reaches it (over the whole vocabulary it would not) */
    CHECK_EQ(support(p, l, 8), 0x01u);
    /* min-p cuts after top-p and does not renormalise it: min-p 0.3 keeps 3 tokens
     * (0.80 of the mass); top-p 0.75 needs those 3 of the whole; over min-p's survivors
     * two (0.65 / 0.80 = 0.81) would do */
    p = plain();
    p.min_p = 0.3f;
    p.top_p = 0.75f;
    CHECK_EQ(support(p, l, 8), 0x07u);
    p.min_p = 0.5f; /* keeps 0.40 and 0.25 only: the smaller set wins */
    CHECK_EQ(support(p, l, 8), 0x03u);
}

static double chi_square(const int *count, const double *prob, int n, int draws) {
    double chi = 0;
    for (int i = 0; i < n; i++) {
        if (prob[i] == 0) {
            if (count[i]) return INFINITY;
            continue;
        }
        const double e = draws * prob[i];
        chi += (count[i] - e) * (count[i] - e) / e;
    }
    return chi;
}

static void truncated_draws_follow_the_renormalised_softmax(void) {
    /* top-k 3 at temperature 1.5: only the best three, in proportions exp(l / 1.5) */
    const float l[6] = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, 1.5f};
    sov_sampler_params p = plain();
    p.temperature = 1.5f;
    p.top_k = 3;
    p.seed = 7;
    sov_sampler *s = make(p, 6);
    int count[6] = {0};
    const int N = 20000;
    for (int i = 0; i < N; i++) count[draw(s, l, 6)]++;
    double prob[6] = {0}, z = 0;
    const int kept[3] = {4, 5, 0};
    for (int i = 0; i < 3; i++) z += exp(l[kept[i]] / 1.5);
    for (int i = 0; i < 3; i++) prob[kept[i]] = exp(l[kept[i]] / 1.5) / z;
    const double chi = chi_square(count, prob, 6, N);
    CHECK_MSG(chi < 13.8, "chi-square %.2f (2 degrees of freedom, 0.999 quantile 13.8)", chi);
    sov_sampler_free(s);
}

static void same_seed_gives_this_exact_sequence_everywhere(void) {
    /* pinned: the PRNG (xoshiro256** from splitmix64), the draw and the truncation are
     * sov's own code, so these tokens must come out on any CPU, compiler and libc */
    float l[32];
    for (int i = 0; i < 32; i++) l[i] = (float)((i * 7) % 11) * 0.25f;
    sov_sampler_params p = sov_sampler_default_params();
    p.top_k = 20;
    p.seed = 42;
    sov_sampler *s = make(p, 32);
    static const int want[24] = {3, 6, 31, 26, 29, 12, 1, 4, 12, 9, 31, 25, 12, 6, 31, 15, 20, 4, 31, 31, 3, 14, 17, 9};
    char got[256] = "";
    bool same = true;
    for (int i = 0; i < 24; i++) {
        const int t = draw(s, l, 32);
        snprintf(got + strlen(got), sizeof got - strlen(got), "%d, ", t);
        same = same && t == want[i];
    }
    CHECK_MSG(same, "sequence %s", got);
    sov_sampler_free(s);
}

static void bias_is_added_before_the_repeat_penalty(void) {
    sov_sampler_params p = plain();
    p.temperature = 0.0f;
    p.repeat_penalty = 2.0f;
    sov_sampler *s = make(p, 3);
    sov_sampler_accept(s, 1);
    CHECK_EQ(sov_sampler_set_logit_bias(s, 1, 2.0f), SOV_OK);
    float l[3] = {0.0f, 4.0f, 1.0f};
    sov_sampler_sample(s, l);
    CHECK_NEAR(l[1], (4.0 + 2.0) / 2.0, 1e-6); /* not 4 / 2 + 2 */
    /* reset forgets the history but keeps the bias */
    sov_sampler_reset(s);
    float m[3] = {0.0f, 4.0f, 1.0f};
    sov_sampler_sample(s, m);
    CHECK_NEAR(m[1], 6.0, 0);
    sov_sampler_free(s);
    /* repeat_last_n 0: no window, no penalty; a huge window allocates as it fills */
    p.repeat_last_n = 0;
    s = make(p, 3);
    sov_sampler_accept(s, 1);
    float n[3] = {0.0f, 4.0f, 1.0f};
    sov_sampler_sample(s, n);
    CHECK_NEAR(n[1], 4.0, 0);
    sov_sampler_free(s);
    p.repeat_last_n = 1 << 30;
    s = make(p, 3);
    for (int i = 0; i < 300; i++) sov_sampler_accept(s, i % 3);
    float q[3] = {-1.0f, 4.0f, 1.0f};
    sov_sampler_sample(s, q);
    CHECK_NEAR(q[0], -2.0, 0);
    CHECK_NEAR(q[1], 2.0, 0);
    sov_sampler_free(s);
}

static void broken_logits_cannot_poison_the_draw(void) {
    sov_sampler_params p = plain();
    sov_sampler *s = make(p, 4);
    const float nan_row[4] = {NAN, 1.0f, NAN, 1.0f};
    for (int i = 0; i < 200; i++) {
        const int t = draw(s, nan_row, 4);
        CHECK(t == 1 || t == 3);
    }
    const float inf_row[4] = {0.0f, INFINITY, 5.0f, -INFINITY};
    for (int i = 0; i < 50; i++) CHECK_EQ(draw(s, inf_row, 4), 1);
    /* everything banned: the argmax of an all-equal row, token 0 */
    const float none[4] = {-INFINITY, -INFINITY, NAN, -INFINITY};
    CHECK_EQ(draw(s, none, 4), 0);
    sov_sampler_free(s);
    p.temperature = 0.0f;
    s = make(p, 4);
    CHECK_EQ(draw(s, nan_row, 4), 1);
    CHECK_EQ(draw(s, none, 4), 0);
    sov_sampler_free(s);
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
    /* banned tokens are never listed, and a banned choice has -inf; ties: lower id first */
    const float b[5] = {1.0f, -INFINITY, 1.0f, NAN, 0.0f};
    CHECK_EQ(sov_sampler_logprobs(b, 5, 1, 5, ids9, lps9, &chosen), 3);
    CHECK(ids9[0] == 0 && ids9[1] == 2 && ids9[2] == 4);
    CHECK(chosen == -INFINITY);
    const double zb = 2 * exp(1.0) + 1;
    CHECK_NEAR(lps9[1], 1.0 - log(zb), 1e-6);
    CHECK_NEAR(lps9[2], -log(zb), 1e-6);
}

static void logprobs_read_the_adjusted_logits_sample_leaves(void) {
    sov_sampler_params p = plain();
    p.temperature = 0.0f;
    p.frequency_penalty = 1.0f;
    sov_sampler *s = make(p, 3);
    sov_sampler_accept(s, 0);
    CHECK_EQ(sov_sampler_set_logit_bias(s, 2, -INFINITY), SOV_OK);
    float l[3] = {2.0f, 1.5f, 9.0f};
    CHECK_EQ(sov_sampler_sample(s, l), 1); /* 0 penalised to 1.0, 2 banned */
    sov_token ids[3];
    float lps[3], chosen;
    CHECK_EQ(sov_sampler_logprobs(l, 3, 1, 3, ids, lps, &chosen), 2);
    const double z = exp(1.0) + exp(1.5);
    CHECK_NEAR(chosen, 1.5 - log(z), 1e-6);
    CHECK(ids[0] == 1 && ids[1] == 0);
    sov_sampler_free(s);
}

static int cmp_desc(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* mean seconds per call of sample on l (restored each time) */
static double time_sample(sov_sampler *s, const float *l, float *tmp, int V, int reps) {
    const double t0 = seconds();
    for (int i = 0; i < reps; i++) {
        memcpy(tmp, l, (size_t)V * sizeof *tmp);
        sov_sampler_sample(s, tmp);
    }
    return (seconds() - t0) / reps;
}

static void large_vocabulary_top_p_without_top_k_matches_a_full_sort(void) {
    /* logits uniform in [-10, 10): top-p 0.95 needs the best ~3 logit units, ~20k of
     * 150k tokens, so the incremental sort grows through several slices */
    const int V = 150000;
    float *l = malloc((size_t)V * sizeof *l), *tmp = malloc((size_t)V * sizeof *tmp),
          *sorted = malloc((size_t)V * sizeof *sorted);
    test_rng r = {3};
    for (int i = 0; i < V; i++) l[i] = 10.0f * test_rng_float(&r);
    /* the reference: the logit of the last token top-p keeps */
    memcpy(sorted, l, (size_t)V * sizeof *l);
    qsort(sorted, (size_t)V, sizeof *sorted, cmp_desc);
    double z = 0, cum = 0;
    for (int i = 0; i < V; i++) z += exp((double)sorted[i] - sorted[0]);
    int keep = 0;
    while (keep < V && (cum += exp((double)sorted[keep] - sorted[0]) / z) < 0.95) keep++;
    const float cut = sorted[keep];
    sov_sampler_params p = plain();
    p.top_p = 0.95f;
    p.seed = 11;
    sov_sampler *s = make(p, V);
    int below = 0, near_cut = 0;
    for (int i = 0; i < 300; i++) {
        memcpy(tmp, l, (size_t)V * sizeof *tmp);
        const float lt = l[sov_sampler_sample(s, tmp)];
        below += lt < cut;
        near_cut += lt < sorted[keep / 2];
    }
    CHECK_MSG(keep > 10000 && keep < 40000, "top-p set of %d tokens", keep);
    CHECK_EQ(below, 0);
    CHECK(near_cut > 30); /* the far half of the set is drawn from too */
    const double t_top_p = time_sample(s, l, tmp, V, 20);
    sov_sampler_free(s);
    /* the defaults (top-k 40 first) and plain temperature sampling, for the record */
    p = sov_sampler_default_params();
    s = make(p, V);
    const double t_default = time_sample(s, l, tmp, V, 20);
    sov_sampler_free(s);
    p = plain();
    s = make(p, V);
    const double t_plain = time_sample(s, l, tmp, V, 20);
    sov_sampler_free(s);
    fprintf(stderr, "  150k vocabulary, ms per token: defaults %.2f, top-p 0.95 alone (%d kept) %.2f, "
                    "temperature alone %.2f\n", t_default * 1e3, keep, t_top_p * 1e3, t_plain * 1e3);
    /* a peaked row: min-p 0.05 leaves only the spike */
    l[77777] = 50.0f;
    p = sov_sampler_default_params();
    p.seed = 5;
    s = make(p, V);
    memcpy(tmp, l, (size_t)V * sizeof *tmp);
    CHECK_EQ(sov_sampler_sample(s, tmp), 77777);
    sov_sampler_free(s);
    free(l);
    free(tmp);
    free(sorted);
}

int main(void) {
    RUN(greedy_picks_the_max_and_lowest_id_on_ties);
    RUN(same_seed_same_tokens_other_seed_other_tokens);
    RUN(truncation_keeps_exactly_the_right_sets);
    RUN(top_p_mass_is_normalised_over_what_top_k_left);
    RUN(draws_follow_the_softmax);
    RUN(truncated_draws_follow_the_renormalised_softmax);
    RUN(same_seed_gives_this_exact_sequence_everywhere);
    RUN(bias_is_added_before_the_repeat_penalty);
    RUN(broken_logits_cannot_poison_the_draw);
    RUN(penalties_follow_their_formulas);
    RUN(logit_bias_shifts_and_bans);
    RUN(bad_parameters_are_rejected_by_name);
    RUN(logprobs_are_the_log_softmax);
    RUN(logprobs_read_the_adjusted_logits_sample_leaves);
    RUN(large_vocabulary_top_p_without_top_k_matches_a_full_sort);
    TEST_EXIT();
}
