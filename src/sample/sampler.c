/* sampler.c - choosing the next token from a row of logits.
 *
 * The chain, in llama.cpp's default order (common/sampling.cpp, llama-sampler.cpp):
 *   1. logit bias (OpenAI logit_bias; -inf bans a token). llama.cpp adds the bias before
 *      the penalties, and so does sov: a repeated token's biased logit is what the
 *      repeat penalty divides.
 *   2. penalties over the last repeat_last_n accepted tokens, once per distinct token:
 *      repeat (a positive logit is divided by it, zero or negative multiplied), then
 *      frequency (minus count * f) and presence (minus p when the token was seen at all)
 *   3. temperature 0: the argmax, the lowest id on ties; the PRNG is not touched
 *   4. otherwise truncation, on probabilities at temperature 1:
 *        top-k  keep the k most likely;
 *        top-p  keep the smallest most-likely-first prefix of what top-k left whose mass
 *               (normalised over what top-k left, as llama.cpp does) reaches p;
 *        min-p  keep tokens at least min_p times as likely as the most likely one.
 *      The most likely token always survives.
 *   5. softmax of the survivors at the temperature and one draw from xoshiro256**,
 *      seeded with splitmix64(seed): the same seed and logits give the same tokens on
 *      any machine (up to the last bit of libm's expf, which would have to put a draw
 *      within a rounding error of a boundary to matter). Weights are single-precision
 *      expf (the cost on 150k candidates), summed in double.
 *
 * Steps 1-2 change the caller's logits array in place, so after a call it holds the
 * adjusted logits that sov_sampler_logprobs reads. A NaN logit is treated as a ban
 * (-inf) and +inf as the largest float, so a broken row cannot poison the softmax. If
 * no token is left with a logit above -inf, the answer is the argmax of an all-equal
 * row: token 0.
 *
 * Cost on a 150k vocabulary: truncation works on a scratch candidate list. top-k is a
 * quickselect (O(V), never a full sort); min-p is a threshold on logits
 * (l >= max + ln min_p) and needs no order; only top-p needs order, and it sorts just
 * as far as the mass reaches p: the best 64 candidates, then 4x more each time
 * (quickselect + sort of each slice), so with top_k 0 a typical peaked distribution
 * sorts a few hundred candidates, not 150k. With top_p 1 nothing is sorted at all: the
 * draw walks the survivors in the (deterministic) order they are in. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "sample/sample.h"

typedef struct cand {
    float logit;
    sov_token id;
} cand;

struct sov_sampler {
    sov_sampler_params p;
    int32_t n_vocab;
    float *bias;        /* [n_vocab] added to the logits, or NULL until a bias is set */
    bool penalize;      /* any penalty is active (else no history is kept) */
    /* the penalty window: the last accepted tokens, oldest at ring[head] */
    sov_token *ring;    /* [ring_cap] */
    int32_t ring_cap;   /* grows by doubling up to the window (repeat_last_n; -1 no limit) */
    int32_t ring_len, ring_head;
    int32_t *count;     /* [n_vocab] occurrences of each token in the window */
    cand *c;            /* [n_vocab] scratch: the candidates of one call */
    float *w;           /* [n_vocab] scratch: their weights exp((l - max) / T) */
    uint64_t s[4];      /* xoshiro256** state */
};

sov_sampler_params sov_sampler_default_params(void) {
    /* llama.cpp's defaults, except the seed: 0 is an ordinary, fixed seed here (sov has
     * no "random seed" value; a caller that wants variety passes its own entropy) */
    return (sov_sampler_params){
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .presence_penalty = 0.0f,
        .frequency_penalty = 0.0f,
        .seed = 0,
    };
}

/* ---- the PRNG: xoshiro256** (Blackman and Vigna), state from splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t s[4]) {
    const uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* uniform in [0, 1) from the top 53 bits */
static double next_unit(uint64_t s[4]) { return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

static void seed_rng(sov_sampler *sp) {
    uint64_t x = sp->p.seed;
    for (int i = 0; i < 4; i++) sp->s[i] = splitmix64(&x);
}

/* ---- life cycle ---- */

static sov_status check_params(const sov_sampler_params *p, int32_t n_vocab) {
    if (n_vocab < 1) return sov_fail(SOV_ERR_ARG, "sampler: vocabulary size %d must be positive", n_vocab);
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return sov_fail(SOV_ERR_ARG, "sampler: temperature %g must be 0 (greedy) or more", (double)p->temperature);
    if (p->top_k < 0) return sov_fail(SOV_ERR_ARG, "sampler: top_k %d must be 0 (off) or more", (int)p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return sov_fail(SOV_ERR_ARG, "sampler: top_p %g must be in (0, 1] (1 is off)", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return sov_fail(SOV_ERR_ARG, "sampler: min_p %g must be in [0, 1] (0 is off)", (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || !isfinite(p->repeat_penalty))
        return sov_fail(SOV_ERR_ARG, "sampler: repeat_penalty %g must be positive (1 is off)",
                        (double)p->repeat_penalty);
    if (p->repeat_last_n < -1)
        return sov_fail(SOV_ERR_ARG, "sampler: repeat_last_n %d must be -1 (all) or more", (int)p->repeat_last_n);
    if (!isfinite(p->presence_penalty))
        return sov_fail(SOV_ERR_ARG, "sampler: presence_penalty %g must be a finite number",
                        (double)p->presence_penalty);
    if (!isfinite(p->frequency_penalty))
        return sov_fail(SOV_ERR_ARG, "sampler: frequency_penalty %g must be a finite number",
                        (double)p->frequency_penalty);
    return SOV_OK;
}

sov_status sov_sampler_new(const sov_sampler_params *params, int32_t n_vocab, sov_sampler **out) {
    if (!out) return sov_fail(SOV_ERR_ARG, "sampler: no output pointer");
    *out = NULL;
    const sov_sampler_params p = params ? *params : sov_sampler_default_params();
    const sov_status st = check_params(&p, n_vocab);
    if (st) return st;
    sov_sampler *sp = calloc(1, sizeof *sp);
    if (!sp) return sov_fail(SOV_ERR_NOMEM, "sampler: out of memory");
    sp->p = p;
    sp->n_vocab = n_vocab;
    sp->penalize = p.repeat_last_n != 0 &&
                   (p.repeat_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f);
    sp->c = malloc((size_t)n_vocab * sizeof *sp->c);
    sp->w = malloc((size_t)n_vocab * sizeof *sp->w);
    bool ok = sp->c && sp->w;
    if (ok && sp->penalize) {
        sp->ring_cap = p.repeat_last_n > 0 && p.repeat_last_n < 64 ? p.repeat_last_n : 64;
        sp->ring = malloc((size_t)sp->ring_cap * sizeof *sp->ring);
        sp->count = calloc((size_t)n_vocab, sizeof *sp->count);
        ok = sp->ring && sp->count;
    }
    if (!ok) {
        sov_sampler_free(sp);
        return sov_fail(SOV_ERR_NOMEM, "sampler: out of memory");
    }
    seed_rng(sp);
    *out = sp;
    return SOV_OK;
}

void sov_sampler_free(sov_sampler *sp) {
    if (!sp) return;
    free(sp->bias);
    free(sp->ring);
    free(sp->count);
    free(sp->c);
    free(sp->w);
    free(sp);
}

sov_status sov_sampler_set_logit_bias(sov_sampler *sp, sov_token token, float bias) {
    if (token < 0 || token >= sp->n_vocab)
        return sov_fail(SOV_ERR_ARG, "sampler: logit bias for token %d outside the vocabulary (0..%d)", (int)token,
                        (int)sp->n_vocab - 1);
    if (isnan(bias) || bias == INFINITY)
        return sov_fail(SOV_ERR_ARG, "sampler: logit bias %g for token %d must be a number or -inf", (double)bias,
                        (int)token);
    if (!sp->bias && !(sp->bias = calloc((size_t)sp->n_vocab, sizeof *sp->bias)))
        return sov_fail(SOV_ERR_NOMEM, "sampler: out of memory");
    sp->bias[token] = bias;
    return SOV_OK;
}

/* ---- the penalty window ---- */

/* Doubles the ring (up to the window) with its tokens unrolled to start at 0. */
static bool grow_ring(sov_sampler *sp) {
    const int32_t limit = sp->p.repeat_last_n; /* -1: none */
    if (limit > 0 && sp->ring_cap >= limit) return false;
    int64_t cap = (int64_t)sp->ring_cap * 2;
    if (limit > 0 && cap > limit) cap = limit;
    if (cap > INT32_MAX) return false;
    sov_token *r = malloc((size_t)cap * sizeof *r);
    if (!r) return false; /* keep sliding within what we have */
    for (int32_t i = 0; i < sp->ring_len; i++) r[i] = sp->ring[(sp->ring_head + i) % sp->ring_cap];
    free(sp->ring);
    sp->ring = r;
    sp->ring_cap = (int32_t)cap;
    sp->ring_head = 0;
    return true;
}

void sov_sampler_accept(sov_sampler *sp, sov_token t) {
    if (!sp->penalize || t < 0 || t >= sp->n_vocab) return;
    if (sp->ring_len == sp->ring_cap && !grow_ring(sp)) { /* window full: the oldest leaves */
        sp->count[sp->ring[sp->ring_head]]--;
        sp->ring[sp->ring_head] = t;
        sp->ring_head = (sp->ring_head + 1) % sp->ring_cap;
    } else {
        sp->ring[(sp->ring_head + sp->ring_len) % sp->ring_cap] = t;
        sp->ring_len++;
    }
    sp->count[t]++;
}

void sov_sampler_reset(sov_sampler *sp) {
    for (int32_t i = 0; i < sp->ring_len; i++) sp->count[sp->ring[(sp->ring_head + i) % sp->ring_cap]] = 0;
    sp->ring_len = sp->ring_head = 0;
    seed_rng(sp);
}

/* ---- steps 1 and 2, on the caller's logits ---- */

static void adjust(sov_sampler *sp, float *l) {
    const int32_t V = sp->n_vocab;
    for (int32_t i = 0; i < V; i++) {
        float x = l[i];
        if (sp->bias) x += sp->bias[i];
        if (isnan(x)) x = -INFINITY;
        else if (x == INFINITY) x = 3.40282347e38f; /* FLT_MAX */
        l[i] = x;
    }
    if (!sp->penalize) return;
    const sov_sampler_params *p = &sp->p;
    /* once per distinct token of the window: its count is negated while done */
    for (int32_t i = 0; i < sp->ring_len; i++) {
        const sov_token t = sp->ring[(sp->ring_head + i) % sp->ring_cap];
        const int32_t n = sp->count[t];
        if (n <= 0) continue;
        float x = l[t];
        x = x > 0.0f ? x / p->repeat_penalty : x * p->repeat_penalty;
        x -= (float)n * p->frequency_penalty + p->presence_penalty;
        l[t] = isnan(x) ? -INFINITY : x; /* -inf - (-f) stays -inf; inf - inf cannot happen */
        sp->count[t] = -n;
    }
    for (int32_t i = 0; i < sp->ring_len; i++) {
        const sov_token t = sp->ring[(sp->ring_head + i) % sp->ring_cap];
        if (sp->count[t] < 0) sp->count[t] = -sp->count[t];
    }
}

/* ---- ordering candidates ---- */

/* The candidate order: larger logit first, lower id first among equals (a total order,
 * so any correct sort or selection gives the same result everywhere). */
static inline bool before(const cand *a, const cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    return before(x, y) ? -1 : before(y, x) ? 1 : 0;
}

static inline void swap_cand(cand *a, cand *b) {
    const cand t = *a;
    *a = *b;
    *b = t;
}

/* Moves the k first candidates in the order to c[0..k) (in no particular order).
 * Quickselect with a median-of-three pivot; after 64 rounds (a pathological input) the
 * remaining range is sorted instead, so the worst case is O(n log n). */
static void select_top(cand *c, int32_t n, int32_t k) {
    if (k <= 0 || k >= n) return;
    int32_t lo = 0, hi = n - 1;
    for (int rounds = 0; lo < hi; rounds++) {
        if (rounds == 64) {
            qsort(c + lo, (size_t)(hi - lo + 1), sizeof *c, cmp_cand);
            return;
        }
        const int32_t mid = lo + (hi - lo) / 2;
        if (before(&c[mid], &c[lo])) swap_cand(&c[mid], &c[lo]);
        if (before(&c[hi], &c[lo])) swap_cand(&c[hi], &c[lo]);
        if (before(&c[hi], &c[mid])) swap_cand(&c[hi], &c[mid]);
        const cand pivot = c[mid];
        int32_t i = lo, j = hi;
        while (i <= j) { /* Hoare partition: [lo, j] before-or-equal, [i, hi] after-or-equal */
            while (before(&c[i], &pivot)) i++;
            while (before(&pivot, &c[j])) j--;
            if (i <= j) swap_cand(&c[i++], &c[j--]);
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else return; /* k-1 sits between the halves: equal to the pivot, in place */
    }
}

/* Moves the candidates with logit >= floor to the front; returns how many. */
static int32_t partition_floor(cand *c, int32_t n, float floor) {
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++)
        if (c[i].logit >= floor) swap_cand(&c[m++], &c[i]);
    return m;
}

/* top-p over c[0..n): the length of the smallest best-first prefix whose mass, out of
 * z = sum of exp(l - max) over all n, reaches p. Only c[0..m) (the min-p survivors,
 * which come first in the order) are examined, so the answer is at most m. Sorts c
 * only as far as it walks. */
static int32_t top_p_cut(cand *c, int32_t m, float max, double z, double p) {
    const double need = p * z;
    double cum = 0.0;
    int32_t sorted = 0;
    for (int32_t i = 0; i < m; i++) {
        if (i == sorted) { /* sort the next slice: 64 first, then 4x the sorted prefix */
            int32_t upto = sorted == 0 ? 64 : (sorted > m / 4 ? m : sorted * 4);
            if (upto > m) upto = m;
            select_top(c + sorted, m - sorted, upto - sorted);
            qsort(c + sorted, (size_t)(upto - sorted), sizeof *c, cmp_cand);
            sorted = upto;
        }
        cum += expf(c[i].logit - max);
        if (cum >= need) return i + 1;
    }
    return m;
}

/* ---- the sampler ---- */

static sov_token argmax(const float *l, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (l[i] > l[best]) best = i;
    return best;
}

sov_token sov_sampler_sample(sov_sampler *sp, float *logits) {
    adjust(sp, logits);
    const int32_t V = sp->n_vocab;
    const sov_sampler_params *p = &sp->p;
    if (p->temperature == 0.0f) return argmax(logits, V);

    /* the candidates: every token not banned */
    cand *c = sp->c;
    float max = -INFINITY;
    int32_t n = 0;
    for (int32_t i = 0; i < V; i++) {
        if (logits[i] == -INFINITY) continue;
        c[n++] = (cand){logits[i], i};
        if (logits[i] > max) max = logits[i];
    }
    if (n <= 1) return n == 1 ? c[0].id : 0;

    /* top-k (the max survives any k >= 1) */
    if (p->top_k > 0 && p->top_k < n) {
        select_top(c, n, p->top_k);
        n = p->top_k;
    }
    /* min-p as a threshold: p_i >= min_p * p_max  <=>  l_i >= max + ln(min_p) */
    const int32_t m = p->min_p > 0.0f ? partition_floor(c, n, max + logf(p->min_p)) : n;
    /* top-p, normalised over what top-k left (min-p does not change that mass) */
    if (p->top_p < 1.0f) {
        double z = 0.0;
        for (int32_t i = 0; i < n; i++) z += expf(c[i].logit - max);
        n = top_p_cut(c, m, max, z, (double)p->top_p);
    } else {
        n = m;
    }

    /* softmax at the temperature and a draw */
    float *w = sp->w;
    double z = 0.0;
    for (int32_t i = 0; i < n; i++) {
        w[i] = expf((c[i].logit - max) / p->temperature);
        z += w[i];
    }
    const double u = next_unit(sp->s) * z;
    double cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cum += w[i];
        if (u < cum) return c[i].id;
    }
    /* u within rounding of z: the last candidate with any weight */
    for (int32_t i = n - 1; i > 0; i--)
        if (w[i] > 0.0f) return c[i].id;
    return c[0].id;
}

/* ---- OpenAI logprobs ---- */

int32_t sov_sampler_logprobs(const float *logits, int32_t n_vocab, sov_token chosen, int32_t top_n,
                             sov_token *top_ids, float *top_logprobs, float *chosen_logprob) {
    /* log p_i = l_i - (max + ln sum exp(l_j - max)); NaN counts as -inf */
    float max = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++)
        if (logits[i] > max) max = logits[i];
    double lz = -INFINITY;
    if (max > -INFINITY) {
        double z = 0.0;
        for (int32_t i = 0; i < n_vocab; i++)
            if (logits[i] > -INFINITY) z += exp((double)logits[i] - (double)max);
        lz = log(z) + (double)max;
    }
    if (chosen_logprob) {
        const bool ok = chosen >= 0 && chosen < n_vocab && logits[chosen] > -INFINITY;
        *chosen_logprob = ok ? (float)((double)logits[chosen] - lz) : -INFINITY;
    }
    if (top_n > n_vocab) top_n = n_vocab;
    if (top_n <= 0 || !top_ids) return 0;
    /* a sorted list of the best top_n (OpenAI allows at most 20): insertion, most
     * likely first, lower id first among equals */
    int32_t k = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        const float l = logits[i];
        if (!(l > -INFINITY)) continue;
        if (k == top_n && !(l > logits[top_ids[k - 1]])) continue;
        int32_t j = k < top_n ? k++ : k - 1;
        while (j > 0 && logits[top_ids[j - 1]] < l) {
            top_ids[j] = top_ids[j - 1];
            j--;
        }
        top_ids[j] = i;
    }
    if (top_logprobs)
        for (int32_t i = 0; i < k; i++) top_logprobs[i] = (float)((double)logits[top_ids[i]] - lz);
    return k;
}
