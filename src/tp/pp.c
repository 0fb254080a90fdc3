/* pp.c - pipeline parallelism over MPI (--pp S, tp.h, docs/TP.md): the layers in S stages,
 * one per rank, micro-batches keeping the stages busy.
 *
 * The control is tensor parallelism's (tp.c): rank 0 runs the program and sends every
 * state change of its context to the other ranks, so each rank's paged-KV bookkeeping is
 * the same; each rank's KV cache holds only its own layers. Rank s keeps the contiguous
 * layers [first, first + n) of the model, balanced by count (L/S each, the remainder to
 * the last stages: stage 0 also embeds and applies the LM head); m->layers then holds
 * only those, so every per-layer property (RoPE kind, sliding window, dense or MoE FFN,
 * MLA) comes along and the forward pass and the KV cache index them 0..n-1 as if the
 * model had n layers.
 *
 * A decode (forward.c's pp_forward) runs on every rank over the same batch, cut into
 * micro-batches of contiguous tokens: stage 0 embeds a micro-batch, runs its layers and
 * sends the hidden states (T_mb, E) on; stage s receives them from s-1, runs its layers,
 * sends them on; the last stage sends the rows asking for logits or hidden states back
 * to rank 0, which applies output_norm and the LM head to them once all have arrived,
 * as one process does. Back to rank 0 go n_embd floats per such row, not n_vocab: on a
 * slow link the way back is then a stage boundary like the others (docs/SCALE-OUT.md's
 * model), and the many sequences of a server cost n_embd / n_vocab of the bytes (32000-
 * token vocabulary and E = 2048: 8 KB a row instead of 128 KB). A later micro-batch
 * reaches each stage after the earlier ones, so every token finds its sequence's earlier
 * positions in the stage's cache. */
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
    const int base = L / S, extra = L % S; /* the last `extra` stages get one more */
    const int first = rank * base + SOV_MAX(0, rank - (S - extra)), n = base + (rank >= S - extra);
    /* the stage's layers to the front of the array (which sov_model_free frees as is) */
    memmove(m->layers, m->layers + first, (size_t)n * sizeof *m->layers);
    m->pp_n_layer = L;
    m->pp_first = first;
    hp->n_layer = n;
    hp->n_layer_mtp = 0; /* deepseek2's MTP blocks: a split model runs none (sov_mtp_logits) */
    /* the LM head is rank 0's: elsewhere it is neither read nor repacked */
    if (rank != 0) m->output = (sov_weight){.name = m->output.name, .type = m->output.type};
    return SOV_OK;
}

int pp_micro_batch(int T, int S) {
    const char *e = getenv("SOV_PP_MICRO_BATCH");
    if (e && *e && atoi(e) >= 1) return atoi(e);
    const int n = (T + 2 * S - 1) / (2 * S);
    return SOV_MAX(n, (int)PP_MICRO_BATCH_MIN);
}

sov_status pp_last_stage_decode(sov_tp *tp, sov_context *c, const int32_t *payload, int32_t T, pp_outputs *o) {
    if (2 * (size_t)T > o->want_cap) {
        free(o->want);
        if (!(o->want = malloc(2 * (size_t)T))) tp_fatal(tp, "--pp: out of memory for a batch of %d tokens", T);
        o->want_cap = 2 * (size_t)T;
    }
    for (int32_t i = 0; i < T; i++) {
        o->want[i] = (payload[3 * T + i] & PP_OUT_LOGITS) != 0;
        o->want[T + i] = (payload[3 * T + i] & PP_OUT_EMBD) != 0;
    }
    /* the rows wanted go to rank 0 as hidden states (forward.c): nothing is written to
     * the output buffers sov_decode_embd requires for them here */
    float unused = 0;
    const sov_batch b = {T, payload, payload + T, payload + 2 * T, o->want};
    return sov_decode_embd(c, &b, &unused, o->want + T, &unused);
}

void pp_outputs_free(pp_outputs *o) {
    free(o->want);
    *o = (pp_outputs){0};
}
