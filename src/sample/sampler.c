/* sampler.c - choosing the next token from logits.
 *
 * The steps, in llama.cpp's default order:
 *   1. logit bias (OpenAI logit_bias; -inf bans a token)
 *   2. penalties over the last repeat_last_n accepted tokens: repeat (positive logits
 *      divided by it, negative multiplied), frequency (minus count * f), presence (minus p)
 *   3. temperature 0: the argmax (the lowest id on ties), nothing random
 *   4. otherwise truncation on probabilities at temperature 1: top-k, then top-p (the
 *      smallest prefix of the sorted candidates whose mass reaches p), then min-p (drop
 *      tokens less likely than min_p times the most likely), at least one kept
 *   5. softmax of the survivors at the temperature, and a draw from xoshiro256**
 *      seeded with splitmix64(seed): same seed, same logits, same token, everywhere.
 * Steps 1-2 are applied to the caller's logits array in place, so after a call it holds
 * the adjusted logits (sov_sampler_logprobs reads them). Truncation works on a scratch
 * candidate list; top-k uses a partial selection, so a 150k vocabulary is never fully
 * sorted; min-p's threshold is applied first, and without top-p nothing is sorted. */
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
    float *bias;          /* [n_vocab] or NULL when no bias was set */
    sov_token *ring;      /* recent tokens, the penalties' window */
    int32_t ring_cap;     /* repeat_last_n, or growing when -1 (all) */
    int32_t ring_len, ring_head;
    int32_t *count;       /* [n_vocab] occurrences in the window */
    cand *c;              /* [n_vocab] scratch */
    uint64_t s[4];        /* xoshiro256** state */
};

sov_sampler_params sov_sampler_default_params(void) {
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

/* uniform in [0, 1) with 53 random bits */
static double next_unit(uint64_t s[4]) { return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

static void seed_rng(sov_sampler *sp) {
    uint64_t x = sp->p.seed;
    for (int i = 0; i < 4; i++) sp->s[i] = splitmix64(&x);
}

sov_status sov_sampler_new(const sov_sampler_params *params, int32_t n_vocab, sov_sampler **out) {
    *out = NULL;
    const sov_sampler_params p = params ? *params : sov_sampler_default_params();
    if (n_vocab < 1) return sov_fail(SOV_ERR_ARG, "sampler: vocabulary size %d", n_vocab);
    if (!(p.temperature >= 0.0f) || !isfinite(p.temperature))
        return sov_fail(SOV_ERR_ARG, "sampler: temperature %g must be 0 or more", (double)p.temperature);
    if (p.top_k < 0) return sov_fail(SOV_ERR_ARG, "sampler: top_k %d must be 0 (off) or more", p.top_k);
    if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
        return sov_fail(SOV_ERR_ARG, "sampler: top_p %g must be in (0, 1]", (double)p.top_p);
    if (!(p.min_p >= 0.0f && p.min_p <= 1.0f))
        return sov_fail(SOV_ERR_ARG, "sampler: min_p %g must be in [0, 1]", (double)p.min_p);
    if (!(p.repeat_penalty > 0.0f) || !isfinite(p.repeat_penalty))
        return sov_fail(SOV_ERR_ARG, "sampler: repeat_penalty %g must be positive", (double)p.repeat_penalty);
    if (p.repeat_last_n < -1) return sov_fail(SOV_ERR_ARG, "sampler: repeat_last_n %d must be -1 or more", p.repeat_last_n);
    if (!isfinite(p.presence_penalty) || !isfinite(p.frequency_penalty) || fabsf(p.presence_penalty) > 100.0f ||
        fabsf(p.frequency_penalty) > 100.0f)
        return sov_fail(SOV_ERR_ARG, "sampler: presence and frequency penalties must be within [-100, 100]");
    sov_sampler *sp = calloc(1, sizeof *sp);
    if (!sp) return sov_fail(SOV_ERR_NOMEM, "sampler: out of memory");
    sp->p = p;
    sp->n_vocab = n_vocab;
    sp->ring_cap = p.repeat_last_n == -1 ? 256 : p.repeat_last_n;
    sp->count = calloc((size_t)n_vocab, sizeof *sp->count);
    sp->c = malloc((size_t)n_vocab * sizeof *sp->c);
    sp->ring = malloc((size_t)(sp->ring_cap > 0 ? sp->ring_cap : 1) * sizeof *sp->ring);
    if (!sp->count || !sp->c || !sp->ring) {
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
    free(sp);
}

sov_status sov_sampler_set_logit_bias(sov_sampler *sp, sov_token token, float bias) {
    if (token < 0 || token >= sp->n_vocab)
        return sov_fail(SOV_ERR_ARG, "sampler: logit bias for token %d outside the vocabulary (0..%d)", token,
                        sp->n_vocab - 1);
    if (isnan(bias) || bias == INFINITY) return sov_fail(SOV_ERR_ARG, "sampler: logit bias must be a number or -inf");
    if (!sp->bias && !(sp->bias = calloc((size_t)sp->n_vocab, sizeof *sp->bias)))
        return sov_fail(SOV_ERR_NOMEM, "sampler: out of memory");
    sp->bias[token] = bias;
    return SOV_OK;
}

void sov_sampler_accept(sov_sampler *sp, sov_token t) {
    if (t < 0 || t >= sp->n_vocab) return;
    if (sp->p.repeat_last_n == 0) return;
    if (sp->p.repeat_last_n == -1 && sp->ring_len == sp->ring_cap) { /* all history: grow */
        sov_token *r = realloc(sp->ring, (size_t)sp->ring_cap * 2 * sizeof *r);
        if (!r) return;
        /* unroll the ring so that it starts at 0 */
        sov_token *tmp = malloc((size_t)sp->ring_len * sizeof *tmp);
        if (!tmp) {
            sp->ring = r;
            return;
        }
        for (int32_t i = 0; i < sp->ring_len; i++) tmp[i] = r[(sp->ring_head + i) % sp->ring_cap];
        memcpy(r, tmp, (size_t)sp->ring_len * sizeof *tmp);
        free(tmp);
        sp->ring = r;
        sp->ring_head = 0;
        sp->ring_cap *= 2;
    }
    if (sp->ring_len == sp->ring_cap) { /* window full: the oldest leaves */
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

/* Steps 1 and 2, on the caller's logits. */
static void adjust(sov_sampler *sp, float *logits) {
    if (sp->bias)
        for (int32_t i = 0; i < sp->n_vocab; i++) logits[i] += sp->bias[i];
    const sov_sampler_params *p = &sp->p;
    if (p->repeat_penalty == 1.0f && p->frequency_penalty == 0.0f && p->presence_penalty == 0.0f) return;
    /* each distinct token of the window once: mark by negating its count while applying */
    for (int32_t i = 0; i < sp->ring_len; i++) {
        const sov_token t = sp->ring[(sp->ring_head + i) % sp->ring_cap];
        const int32_t n = sp->count[t];
        if (n <= 0) continue; /* already done */
        float l = logits[t];
        if (p->repeat_penalty != 1.0f) l = l > 0.0f ? l / p->repeat_penalty : l * p->repeat_penalty;
        l -= (float)n * p->frequency_penalty + p->presence_penalty;
        logits[t] = l;
        sp->count[t] = -n;
    }
    for (int32_t i = 0; i < sp->ring_len; i++) {
        const sov_token t = sp->ring[(sp->ring_head + i) % sp->ring_cap];
        if (sp->count[t] < 0) sp->count[t] = -sp->count[t];
    }
}

static int cmp_cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static inline bool before(const cand *a, const cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

/* Moves the k best candidates (by logit, then id) to the front (unordered). */
static void select_top(cand *c, int32_t n, int32_t k) {
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const cand pivot = c[lo + (hi - lo) / 2];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (before(&c[i], &pivot)) i++;
            while (before(&pivot, &c[j])) j--;
            if (i <= j) {
                const cand t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

sov_token sov_sampler_sample(sov_sampler *sp, float *logits) {
    adjust(sp, logits);
    const int32_t V = sp->n_vocab;
    const sov_sampler_params *p = &sp->p;
    if (p->temperature <= 0.0f) {
        int32_t best = 0;
        for (int32_t i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    cand *c = sp->c;
    float max = -INFINITY;
    for (int32_t i = 0; i < V; i++) max = logits[i] > max ? logits[i] : max;
    if (max == -INFINITY) return 0; /* everything banned: nothing sensible to do */
    /* min-p threshold in logit space: p_i >= min_p * p_max  <=>  l_i >= max + log(min_p) */
    const float floor_l = p->min_p > 0.0f ? max + logf(p->min_p) : -INFINITY;
    int32_t n = 0;
    for (int32_t i = 0; i < V; i++)
        if (logits[i] >= floor_l && logits[i] > -INFINITY) c[n++] = (cand){logits[i], i};
    /* top-k; then the survivors sorted (needed by top-p, and for a stable draw order) */
    if (p->top_k > 0 && p->top_k < n) {
        select_top(c, n, p->top_k);
        n = p->top_k;
    }
    /* top-p needs the survivors in order; without it the draw walks them as they are
     * (no sort of a whole vocabulary per token when top_k is off) */
    if (p->top_p < 1.0f || p->top_k > 0) qsort(c, (size_t)n, sizeof *c, cmp_cand_desc);
    /* top-p on probabilities at temperature 1 */
    if (p->top_p < 1.0f) {
        double z = 0.0;
        for (int32_t i = 0; i < n; i++) z += exp((double)(c[i].logit - max));
        double cum = 0.0;
        for (int32_t i = 0; i < n; i++) {
            cum += exp((double)(c[i].logit - max)) / z;
            if (cum >= p->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    /* softmax at the temperature and a draw */
    double z = 0.0;
    for (int32_t i = 0; i < n; i++) z += exp((double)(c[i].logit - max) / p->temperature);
    const double u = next_unit(sp->s) * z;
    double cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cum += exp((double)(c[i].logit - max) / p->temperature);
        if (u < cum) return c[i].id;
    }
    return c[n - 1].id;
}

int32_t sov_sampler_logprobs(const float *logits, int32_t n_vocab, sov_token chosen, int32_t top_n,
                             sov_token *top_ids, float *top_logprobs, float *chosen_logprob) {
    float max = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++) max = logits[i] > max ? logits[i] : max;
    double z = 0.0;
    for (int32_t i = 0; i < n_vocab; i++) z += exp((double)(logits[i] - max));
    const double lz = log(z) + (double)max;
    if (chosen_logprob) {
        *chosen_logprob = chosen >= 0 && chosen < n_vocab ? (float)((double)logits[chosen] - lz) : -INFINITY;
    }
    if (top_n > n_vocab) top_n = n_vocab;
    if (top_n <= 0) return 0;
    /* insertion into a small sorted list: top_n is at most ~20 */
    int32_t k = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        const float l = logits[i];
        if (k == top_n && l <= logits[top_ids[k - 1]]) continue;
        int32_t j = k < top_n ? k++ : k - 1;
        while (j > 0 && logits[top_ids[j - 1]] < l) {
            top_ids[j] = top_ids[j - 1];
            j--;
        }
        top_ids[j] = i;
    }
    for (int32_t i = 0; i < k; i++) top_logprobs[i] = (float)((double)logits[top_ids[i]] - lz);
    return k;
}
