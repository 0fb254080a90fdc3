/* pp.c - pipeline parallelism over MPI (--pp S, tp.h, docs/TP.md): the layers in S stages,
 * one per rank, micro-batches keeping the stages busy.
 *
 * The control is tensor parallelism's (tp.c): rank 0 runs the program and sends every
 * state change of its context to the other ranks, so each rank's paged-KV bookkeeping is
 * the same; each rank's KV cache holds only its own layers. Rank s keeps the contiguous
 * layers [first, first + n) of the model, balanced by count (L/S each, the remainder to
 * the first stages); m->layers then holds only those, so every per-layer property (RoPE
 * kind, sliding window, dense or MoE FFN, MLA) comes along and the forward pass and the KV
 * cache index them 0..n-1 as if the model had n layers.
 *
 * A decode (forward.c's pp_forward) runs on every rank over the same batch, cut into
 * micro-batches of contiguous tokens: stage 0 embeds a micro-batch, runs its layers and
 * sends the hidden states (T_mb, E) on; stage s receives them from s-1, runs its layers,
 * sends them on; the last stage applies output_norm and the LM head to the rows asking
 * for logits (or hidden states) and sends those to rank 0, whose sov_decode returns when
 * all have arrived. A later micro-batch reaches each stage after the earlier ones, so
 * every token finds its sequence's earlier positions in the stage's cache. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "model/context.h"
#include "model/model.h"
#include "tp/tp.h"

sov_status pp_shard_model(sov_model *m, int rank, int S) {
    sov_hparams *hp = &m->hp;
    if (m->enc)
        return sov_fail(SOV_ERR_UNSUPPORTED, "--pp %d: %s is an encoder; --pp splits decoders only (run it as one "
                        "process)", S, hp->arch_name);
    const int L = hp->n_layer;
    if (S > L)
        return sov_fail(SOV_ERR_UNSUPPORTED, "--pp %d: the model has %d layers, fewer than the stages; give at most "
                        "--pp %d", S, L, L);
    const int base = L / S, extra = L % S;
    const int first = rank * base + SOV_MIN(rank, extra), n = base + (rank < extra);
    /* the stage's layers to the front of the array (which sov_model_free frees as is) */
    memmove(m->layers, m->layers + first, (size_t)n * sizeof *m->layers);
    m->pp_n_layer = L;
    m->pp_first = first;
    hp->n_layer = n;
    hp->n_layer_mtp = 0; /* deepseek2's MTP blocks: a split model runs none (sov_mtp_logits) */
    /* the LM head is the last stage's: elsewhere it is neither read nor repacked */
    if (rank != S - 1) m->output = (sov_weight){.name = m->output.name, .type = m->output.type};
    return SOV_OK;
}

int pp_micro_batch(int T, int S) {
    const char *e = getenv("SOV_PP_MICRO_BATCH");
    if (e && *e && atoi(e) >= 1) return atoi(e);
    const int n = (T + 2 * S - 1) / (2 * S);
    return SOV_MAX(n, (int)PP_MICRO_BATCH_MIN);
}

/* Grows *p to hold n elements of size each (contents not kept). */
static void *room(sov_tp *tp, void *p, size_t *cap, size_t n, size_t each) {
    if (n <= *cap) return p;
    free(p);
    void *q = malloc(n * each);
    if (!q) tp_fatal(tp, "--pp: out of memory for %zu outputs", n);
    *cap = n;
    return q;
}

sov_status pp_last_stage_decode(sov_tp *tp, sov_context *c, const int32_t *payload, int32_t T, pp_outputs *o) {
    const sov_model *m = c->model;
    o->want = room(tp, o->want, &o->want_cap, 2 * (size_t)T, 1);
    size_t n_logits = 0, n_embd = 0;
    for (int32_t i = 0; i < T; i++) {
        o->want[i] = (payload[3 * T + i] & PP_OUT_LOGITS) != 0;
        o->want[T + i] = (payload[3 * T + i] & PP_OUT_EMBD) != 0;
        n_logits += o->want[i];
        n_embd += o->want[T + i];
    }
    o->logits = room(tp, o->logits, &o->logits_cap, SOV_MAX(n_logits, 1) * (size_t)m->hp.n_vocab, sizeof(float));
    o->embd = room(tp, o->embd, &o->embd_cap, SOV_MAX(n_embd, 1) * (size_t)m->hp.n_embd, sizeof(float));
    const sov_batch b = {T, payload, payload + T, payload + 2 * T, o->want};
    return sov_decode_embd(c, &b, o->logits, o->want + T, o->embd);
}

void pp_outputs_free(pp_outputs *o) {
    free(o->want);
    free(o->logits);
    free(o->embd);
    *o = (pp_outputs){0};
}
