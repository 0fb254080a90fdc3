/* shard.c - cutting a loaded decoder down to one rank's shard, Megatron-style (tp.h).
 *
 * With R ranks, rank r keeps query heads [r*H/R, (r+1)*H/R) and the KV heads they read,
 * [r*Hkv/R, (r+1)*Hkv/R) (whole groups, so grouped-query attention stays inside a rank),
 * and FFN units [r*F/R, (r+1)*F/R):
 *   Wq, Wk, Wv (+ biases), Wgate, Wup   keep a block of output rows: a view into the
 *                                       mapping, so only those pages are ever read;
 *   Wo, Wdown                           keep the matching block of input columns: copied
 *                                       row by row (the block must start and end on the
 *                                       quantization block boundary);
 *   embedding, norms, q/k norms, LM head are whole on every rank.
 * Each rank's Wo and Wdown products are then partial sums of the full ones, added across
 * the ranks by tp_allreduce (forward.c). Afterwards the hparams describe the shard
 * (H/R, Hkv/R, F/R), so the context sizes its KV cache and buffers to the shard. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "core/status.h"
#include "model/model.h"
#include "quant/quant.h"
#include "tp/tp.h"

/* rows [r0, r0 + n) of w, in place */
static void keep_rows(sov_weight *w, int64_t r0, int64_t n) {
    w->data = (const char *)w->data + (size_t)r0 * w->row_bytes;
    w->n_rows = n;
}

static sov_status check_cols(const sov_weight *w, int64_t c0, int64_t n, int n_ranks) {
    const int bs = sov_type_info(w->type)->block_size;
    if (c0 % bs == 0 && n % bs == 0) return SOV_OK;
    return sov_fail(SOV_ERR_UNSUPPORTED, "tp: %s (%s) cannot be split into %d column ranges of %lld: each must be "
                    "whole blocks of %d values; use fewer ranks", w->name, sov_type_name(w->type), n_ranks,
                    (long long)n, bs);
}

/* columns [c0, c0 + n) of every row of w, copied to *at (which then moves past them) */
static void keep_cols(sov_weight *w, int64_t c0, int64_t n, uint8_t **at) {
    const size_t skip = sov_row_size((sov_type)w->type, c0), bytes = sov_row_size((sov_type)w->type, n);
    for (int64_t r = 0; r < w->n_rows; r++)
        memcpy(*at + (size_t)r * bytes, (const char *)w->data + (size_t)r * w->row_bytes + skip, bytes);
    w->data = *at;
    w->n_cols = n;
    w->row_bytes = bytes;
    *at += ((size_t)w->n_rows * bytes + 63) & ~(size_t)63;
}

sov_status tp_shard_model(sov_model *m, int rank, int R) {
    sov_hparams *hp = &m->hp;
    if (m->enc)
        return sov_fail(SOV_ERR_UNSUPPORTED, "tp: %s is an encoder; --tp splits decoders only (run it as one "
                        "process)", hp->arch_name);
    if (hp->n_expert > 0)
        return sov_fail(SOV_ERR_UNSUPPORTED, "tp: mixture-of-experts models (%d experts) cannot be split with --tp "
                        "yet; run them as one process", hp->n_expert);
    if (hp->n_head % R || hp->n_head_kv % R)
        return sov_fail(SOV_ERR_UNSUPPORTED, "tp: %d query and %d key/value heads cannot be split evenly across %d "
                        "ranks (each needs whole KV heads); choose --tp dividing %d", hp->n_head, hp->n_head_kv, R,
                        hp->n_head_kv);
    if (hp->n_ff % R)
        return sov_fail(SOV_ERR_UNSUPPORTED, "tp: the feed-forward width %d cannot be split evenly across %d ranks",
                        hp->n_ff, R);
    const int64_t D = hp->head_dim, Hs = hp->n_head / R, Hkvs = hp->n_head_kv / R, Fs = hp->n_ff / R;
    sov_status st;
    size_t bytes = 0;
    for (int il = 0; il < hp->n_layer; il++) {
        const sov_layer *L = &m->layers[il];
        if ((st = check_cols(&L->wo, rank * Hs * D, Hs * D, R)) || (st = check_cols(&L->w_down, rank * Fs, Fs, R)))
            return st;
        bytes += ((size_t)L->wo.n_rows * sov_row_size((sov_type)L->wo.type, Hs * D) + 63) & ~(size_t)63;
        bytes += ((size_t)L->w_down.n_rows * sov_row_size((sov_type)L->w_down.type, Fs) + 63) & ~(size_t)63;
    }
    uint8_t *at = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (at == MAP_FAILED) return sov_fail(SOV_ERR_NOMEM, "tp: cannot map %zu bytes for the column shards", bytes);
    m->tp_copy = at;
    m->tp_copy_bytes = bytes;
    for (int il = 0; il < hp->n_layer; il++) {
        sov_layer *L = &m->layers[il];
        keep_rows(&L->wq, rank * Hs * D, Hs * D);
        keep_rows(&L->wk, rank * Hkvs * D, Hkvs * D);
        keep_rows(&L->wv, rank * Hkvs * D, Hkvs * D);
        if (L->bq) L->bq += rank * Hs * D;
        if (L->bk) L->bk += rank * Hkvs * D;
        if (L->bv) L->bv += rank * Hkvs * D;
        keep_cols(&L->wo, rank * Hs * D, Hs * D, &at);
        keep_rows(&L->w_gate, rank * Fs, Fs);
        keep_rows(&L->w_up, rank * Fs, Fs);
        keep_cols(&L->w_down, rank * Fs, Fs, &at);
    }
    hp->n_head = (int32_t)Hs;
    hp->n_head_kv = (int32_t)Hkvs;
    hp->n_ff = (int32_t)Fs;
    return SOV_OK;
}
