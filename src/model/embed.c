/* embed.c - embeddings: the pooling types, the pooling itself (embed.h) and sov_embed,
 * which runs whole inputs through sov_decode_embd and pools them.
 *
 * sov_embed keeps up to n_seq_max inputs in flight, each on its own sequence, and packs
 * their next tokens into batches of up to n_batch tokens (a long input continues in the
 * next batch). Only the rows the pooling wants come back from the forward pass, and no
 * logits are asked for, so the LM head never runs. An input's sequence is freed as soon
 * as its last token is in: nothing stays in the KV cache. */
#include "model/embed.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "model/context.h"
#include "model/encoder.h"

const char *sov_pooling_name(int32_t pooling) {
    switch (pooling) {
    case SOV_POOLING_NONE: return "none";
    case SOV_POOLING_MEAN: return "mean";
    case SOV_POOLING_CLS: return "cls";
    case SOV_POOLING_LAST: return "last";
    case SOV_POOLING_RANK: return "rank";
    default: return "unknown";
    }
}

sov_status sov_pooling_check(int32_t pooling) {
    if (pooling == SOV_POOLING_MEAN || pooling == SOV_POOLING_CLS || pooling == SOV_POOLING_LAST)
        return SOV_OK;
    return sov_fail(SOV_ERR_UNSUPPORTED,
                    "embeddings: the model's pooling_type %d (%s) is not supported (mean, cls and last are)",
                    pooling, sov_pooling_name(pooling));
}

bool sov_pooling_wants(int32_t pooling, int32_t pos, int32_t n) {
    switch (pooling) {
    case SOV_POOLING_MEAN: return pos >= 0 && pos < n;
    case SOV_POOLING_CLS: return pos == 0;
    case SOV_POOLING_LAST: return pos == n - 1;
    default: return false;
    }
}

void embed_pool_add(int32_t pooling, double *acc, const float *h, int32_t pos, int32_t n, int32_t E) {
    if (!sov_pooling_wants(pooling, pos, n)) return;
    for (int32_t i = 0; i < E; i++)
        acc[i] += h[i];
}

void embed_pool_finish(const double *acc, int32_t E, float *out) {
    double ss = 0;
    for (int32_t i = 0; i < E; i++)
        ss += acc[i] * acc[i];
    const double inv = ss > 0 ? 1.0 / sqrt(ss) : 0.0;
    for (int32_t i = 0; i < E; i++)
        out[i] = (float)(acc[i] * inv);
}

/* One input in flight. */
typedef struct embed_slot {
    int32_t input; /* index into inputs; -1: free */
    sov_seq_id seq;
    int32_t pos; /* tokens fed so far */
} embed_slot;

typedef struct embed_run {
    sov_context *c;
    int32_t E, pooling;
    embed_slot *slots; /* [n_slots] */
    int32_t n_slots;
    double *acc;    /* [n_slots][E] */
    sov_token *tok; /* [n_batch] the batch */
    sov_seq_id *seq;
    int32_t *pos;
    uint8_t *want;
    int32_t *slot_of; /* [n_batch] the slot of each token */
    float *hidden;    /* [n_batch][E] */
} embed_run;

static void run_free(embed_run *r) {
    for (int32_t i = 0; r->slots && i < r->n_slots; i++)
        if (r->slots[i].input >= 0) sov_seq_free(r->c, r->slots[i].seq);
    free(r->slots);
    free(r->acc);
    free(r->tok);
    free(r->seq);
    free(r->pos);
    free(r->want);
    free(r->slot_of);
    free(r->hidden);
}

sov_status sov_embed(sov_context *c, const sov_token *const *inputs, const int32_t *n_tokens,
                     int32_t n_inputs, float *out) {
    const sov_hparams *hp = &c->model->hp;
    sov_status st = sov_pooling_check(hp->pooling);
    if (st) return st;
    if (n_inputs < 0 || (n_inputs > 0 && (!inputs || !n_tokens || !out)))
        return sov_fail(SOV_ERR_ARG, "embed: bad arguments");
    for (int32_t i = 0; i < n_inputs; i++) {
        if (n_tokens[i] < 1 || !inputs[i]) return sov_fail(SOV_ERR_ARG, "embed: input %d is empty", i);
        if (n_tokens[i] > c->p.n_ctx)
            return sov_fail(SOV_ERR_CONTEXT, "embed: input %d has %d tokens; the context holds %d", i,
                            n_tokens[i], c->p.n_ctx);
    }
    if (c->model->enc) return encoder_embed(c, inputs, n_tokens, n_inputs, out);
    const int32_t T = c->p.n_batch, E = hp->n_embd;
    embed_run r = {.c = c, .E = E, .pooling = hp->pooling};
    r.n_slots = c->p.n_seq_max < n_inputs ? c->p.n_seq_max : n_inputs;
    r.slots = malloc((size_t)(r.n_slots ? r.n_slots : 1) * sizeof *r.slots);
    r.acc = calloc((size_t)(r.n_slots ? r.n_slots : 1) * (size_t)E, sizeof *r.acc);
    r.tok = malloc((size_t)T * sizeof *r.tok);
    r.seq = malloc((size_t)T * sizeof *r.seq);
    r.pos = malloc((size_t)T * sizeof *r.pos);
    r.want = malloc((size_t)T);
    r.slot_of = malloc((size_t)T * sizeof *r.slot_of);
    r.hidden = malloc((size_t)T * (size_t)E * sizeof *r.hidden);
    if (!r.slots || !r.acc || !r.tok || !r.seq || !r.pos || !r.want || !r.slot_of || !r.hidden) {
        r.n_slots = 0;
        run_free(&r);
        return sov_fail(SOV_ERR_NOMEM, "embed: out of memory");
    }
    for (int32_t k = 0; k < r.n_slots; k++)
        r.slots[k].input = -1;

    int32_t next = 0, done = 0;
    while (done < n_inputs) {
        /* fill free slots with the next inputs */
        for (int32_t k = 0; k < r.n_slots && next < n_inputs; k++) {
            if (r.slots[k].input >= 0) continue;
            if ((st = sov_seq_new(c, &r.slots[k].seq))) break;
            r.slots[k].input = next++;
            r.slots[k].pos = 0;
            memset(r.acc + (size_t)k * (size_t)E, 0, (size_t)E * sizeof *r.acc);
        }
        int32_t active = 0;
        for (int32_t k = 0; k < r.n_slots; k++)
            active += r.slots[k].input >= 0;
        if (active == 0) break; /* st: not even one free sequence */
        st = SOV_OK;
        /* the batch: each slot's next tokens, in slot order, up to n_batch */
        int32_t n = 0;
        for (int32_t k = 0; k < r.n_slots && n < T; k++) {
            embed_slot *sl = &r.slots[k];
            if (sl->input < 0) continue;
            const int32_t len = n_tokens[sl->input];
            for (int32_t p = sl->pos; p < len && n < T; p++, n++) {
                r.tok[n] = inputs[sl->input][p];
                r.seq[n] = sl->seq;
                r.pos[n] = p;
                r.want[n] = sov_pooling_wants(r.pooling, p, len);
                r.slot_of[n] = k;
            }
        }
        const sov_batch b = {.n_tokens = n, .token = r.tok, .seq = r.seq, .pos = r.pos, .logits = NULL};
        if ((st = sov_decode_embd(c, &b, NULL, r.want, r.hidden))) break;
        int32_t row = 0;
        for (int32_t i = 0; i < n; i++) {
            embed_slot *sl = &r.slots[r.slot_of[i]];
            if (r.want[i])
                embed_pool_add(r.pooling, r.acc + (size_t)r.slot_of[i] * (size_t)E,
                               r.hidden + (size_t)row++ * (size_t)E, r.pos[i], n_tokens[sl->input], E);
            sl->pos = r.pos[i] + 1;
        }
        for (int32_t k = 0; k < r.n_slots; k++) {
            embed_slot *sl = &r.slots[k];
            if (sl->input < 0 || sl->pos < n_tokens[sl->input]) continue;
            embed_pool_finish(r.acc + (size_t)k * (size_t)E, E, out + (size_t)sl->input * (size_t)E);
            sov_seq_free(c, sl->seq);
            sl->input = -1;
            done++;
        }
    }
    run_free(&r);
    return st;
}
