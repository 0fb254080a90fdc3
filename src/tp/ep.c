/* ep.c - expert parallelism over MPI (--ep R, tp.h, docs/TP.md): a mixture-of-experts
 * model's routed experts spread across the ranks, their outputs exchanged with
 * MPI_Alltoallv.
 *
 * With X routed experts per layer and R ranks (R divides X), rank r keeps experts
 * [r*X/R, (r+1)*X/R) of every MoE layer's ffn_{gate,up,down}_exps: a view into the
 * mapping (the 3-D tensors are expert-major), so only those pages are ever read (or
 * repacked). Everything else (embedding, attention, norms, the router, shared experts,
 * the leading dense layers, the LM head) is whole on every rank, and every rank runs it
 * over the whole batch, as under --tp: the hidden states are replicated, so the
 * experts' inputs need no dispatch exchange.
 *
 * In a MoE layer every rank routes all T tokens (the same result everywhere), sorts the
 * T*k (token, expert) pairs by expert as one process does, and computes only the pairs
 * of its own experts (moe.c, steps 3-6). The combine (ep_combine) then needs, for each
 * token, the outputs of its k pairs, which sit on up to k ranks. A small batch (its T*k
 * outputs within tp_gather_bytes, 64 KiB: decode steps) gathers every pair's output on
 * every rank with one MPI_Allgatherv (each rank's pairs are one range of the sorted rows,
 * so they land where one process has them) and every rank combines every token, as one
 * process does: one collective per layer, where latency matters most. Larger batches
 * send fewer bytes in two:
 *
 *   owner(i)    the batch's tokens cut into R contiguous ranges, one per rank
 *   alltoallv   rank p sends rank q the outputs of p's pairs whose token q owns, in
 *               sorted-row order; every rank knows every count from the routing, so no
 *               count exchange precedes it (E floats per pair)
 *   combine     the owner adds its tokens' k outputs, weighted, in each token's own
 *               choice order, exactly as moe.c's step 7 does, and adds that to x
 *   allgatherv  every rank gets the owners' rows of x (E floats per token)
 *
 * Every expert multiplies the same rows in the same order as in one process, and the
 * sums are made in the same order, so the result is bitwise that of one process. */
#include "tp/ep.h"

#include <limits.h>
#include <string.h>

#include "core/status.h"
#include "core/threadpool.h"
#include "core/util.h"
#include "model/model.h"
#include "tp/tp.h"

/* experts [lo, lo + n) of X of a 3-D expert-major tensor, in place */
static void keep_experts(sov_weight *w, int X, int lo, int n) {
    if (!w->data) return; /* a layer without gate experts */
    const int64_t per = w->n_rows / X;
    w->data = (const char *)w->data + (size_t)(lo * per) * w->row_bytes;
    w->n_rows = per * n;
}

sov_status ep_shard_model(struct sov_model *m, int rank, int R) {
    const sov_hparams *hp = &m->hp;
    if (m->enc)
        return sov_fail(SOV_ERR_UNSUPPORTED, "--ep: %s is an encoder; --ep splits decoders with experts (run it as "
                        "one process)", hp->arch_name);
    if (hp->n_expert <= 0)
        return sov_fail(SOV_ERR_UNSUPPORTED, "--ep needs a mixture-of-experts model (%s has no experts); use --tp",
                        hp->arch_name);
    const int X = hp->n_expert;
    if (X % R)
        return sov_fail(SOV_ERR_UNSUPPORTED, "--ep %d: the %d experts of each layer cannot be split evenly across %d "
                        "ranks; choose --ep dividing %d", R, X, R, X);
    const int n = X / R, lo = rank * n;
    for (int il = 0; il < hp->n_layer + hp->n_layer_mtp; il++) {
        sov_layer *L = &m->layers[il];
        if (!L->router.data) continue; /* a dense layer (deepseek2's leading ones) */
        keep_experts(&L->gate_exps, X, lo, n);
        keep_experts(&L->up_exps, X, lo, n);
        keep_experts(&L->down_exps, X, lo, n);
    }
    return SOV_OK;
}

#ifdef SOV_HAVE_MPI

/* the tokens [*b, *e) of T that rank q combines */
static void owned(int T, int q, int R, long *b, long *e) { sov_split_range(T, 1, q, R, b, e); }

/* Counts floats, or stops: MPI counts are ints. */
static int floats(const sov_tp *tp, long pairs, int64_t E) {
    const int64_t n = (int64_t)pairs * E;
    if (n > INT_MAX) tp_fatal(tp, "--ep: an exchange of %lld floats is too large for MPI; use a smaller batch",
                              (long long)n);
    return (int)n;
}

/* The exchange's bookkeeping, in tp_scratch buffer 0 (tp_scratch(tp, 0, 0) finds it
 * again): counts and displacements [R] each, then the owner of each token (T), then for
 * each sorted row (T*k) of a token this rank owns, its row in the received outputs. */
typedef struct ep_index {
    int *scount, *sdispl, *rcount, *rdispl;
    int32_t *owner, *where;
} ep_index;

static ep_index index_of(sov_tp *tp, int T, int K, bool grow) {
    const int R = sov_tp_size(tp);
    const size_t bytes = (size_t)(4 * R) * sizeof(int) + (size_t)T * (size_t)(1 + K) * sizeof(int32_t);
    int *cnt = tp_scratch(tp, 0, grow ? bytes : 0);
    int32_t *owner = (int32_t *)(cnt + 4 * R);
    return (ep_index){cnt, cnt + R, cnt + 2 * R, cnt + 3 * R, owner, owner + T};
}

/* Thread 0: sends each local pair's output to its token's owner and receives the outputs
 * of this rank's tokens into tp_scratch buffer 2; where[] (ep_index) then places them. */
static void exchange(sov_context *c, int T) {
    sov_tp *tp = c->model->tp;
    const int R = sov_tp_size(tp), me = sov_tp_rank(tp), X = c->model->hp.n_expert;
    const int64_t E = c->model->hp.n_embd;
    const int32_t *start = c->moe_start, *tok = c->moe_tok;
    const ep_index ix = index_of(tp, T, c->model->hp.n_expert_used, true);
    int *scount = ix.scount, *sdispl = ix.sdispl, *rcount = ix.rcount, *rdispl = ix.rdispl;
    int32_t *owner = ix.owner, *where = ix.where;
    for (int q = 0; q < R; q++) {
        long b, e;
        owned(T, q, R, &b, &e);
        for (long i = b; i < e; i++) owner[i] = q;
        scount[q] = rcount[q] = 0;
    }
    /* what this rank sends: its experts' rows, by their token's owner */
    int lo, hi;
    ep_experts(tp, X, &lo, &hi);
    for (int s = start[lo]; s < start[hi]; s++) scount[owner[tok[s]]]++;
    /* what it receives: every rank's rows of the tokens it owns, in sorted-row order */
    long n_recv = 0;
    for (int p = 0; p < R; p++) {
        const int plo = p * (X / R), phi = (p + 1) * (X / R); /* rank p's experts (ep_experts) */
        rdispl[p] = (int)n_recv;
        for (int s = start[plo]; s < start[phi]; s++)
            if (owner[tok[s]] == me) where[s] = (int32_t)n_recv++;
        rcount[p] = (int)n_recv - rdispl[p];
    }
    long n_send = 0;
    for (int q = 0; q < R; q++) {
        sdispl[q] = (int)n_send;
        n_send += scount[q];
    }
    float *send = tp_scratch(tp, 1, (size_t)SOV_MAX(n_send, 1) * (size_t)E * sizeof(float));
    float *in = tp_scratch(tp, 2, (size_t)SOV_MAX(n_recv, 1) * (size_t)E * sizeof(float));
    /* pack, then counts and displacements from rows to floats */
    int *at = tp_scratch(tp, 3, (size_t)R * sizeof *at);
    memcpy(at, sdispl, (size_t)R * sizeof *at);
    for (int s = start[lo]; s < start[hi]; s++)
        memcpy(send + (size_t)at[owner[tok[s]]]++ * (size_t)E, c->moe_x + (size_t)s * (size_t)E,
               (size_t)E * sizeof(float));
    floats(tp, SOV_MAX(n_send, n_recv), E);
    for (int q = 0; q < R; q++) {
        scount[q] *= (int)E, sdispl[q] *= (int)E;
        rcount[q] *= (int)E, rdispl[q] *= (int)E;
    }
    tp_alltoallv(tp, send, scount, sdispl, in, rcount, rdispl, "--ep expert outputs (alltoallv)");
}

/* Thread 0: every rank's rows of moe_x (its experts' pair outputs, one contiguous range of
 * the sorted rows) to every rank, in place. */
static void gather_outputs(sov_context *c) {
    sov_tp *tp = c->model->tp;
    const int R = sov_tp_size(tp), X = c->model->hp.n_expert;
    const int64_t E = c->model->hp.n_embd;
    int *cnt = tp_scratch(tp, 3, (size_t)(2 * R) * sizeof *cnt);
    for (int p = 0; p < R; p++) {
        const int plo = p * (X / R), phi = (p + 1) * (X / R); /* rank p's experts (ep_experts) */
        cnt[p] = floats(tp, c->moe_start[phi] - c->moe_start[plo], E);
        cnt[R + p] = floats(tp, c->moe_start[plo], E);
    }
    tp_allgatherv(tp, c->moe_x, cnt, cnt + R, "--ep expert outputs (allgatherv)");
}

bool ep_combine(const op_thread *t, float *x, int T) {
    sov_context *c = t->c;
    sov_tp *tp = c->model->tp;
    const sov_kernels *k = c->k;
    const int R = sov_tp_size(tp), me = sov_tp_rank(tp), K = c->model->hp.n_expert_used;
    const int64_t E = c->model->hp.n_embd;
    /* a small batch: one collective, then every rank combines every token (step 7) */
    if ((size_t)T * (size_t)K * (size_t)E * sizeof(float) <= tp_gather_bytes(tp)) {
        if (t->ith == 0) gather_outputs(c);
        sov_pool_barrier(c->pool);
        return false;
    }
    /* thread 0's exchange; then every thread finds its results in tp's buffers */
    if (t->ith == 0) exchange(c, T);
    sov_pool_barrier(c->pool);
    const float *recv = tp_scratch(tp, 2, 0);
    const int32_t *where = index_of(tp, T, K, false).where;
    /* the owner's combine: moe.c's step 7 for its tokens */
    long tb, te, b, e;
    owned(T, me, R, &tb, &te);
    sov_split_range(te - tb, 1, t->ith, t->nth, &b, &e);
    for (long i = tb + b; i < tb + e; i++) {
        float *acc = c->tmp + i * E;
        memset(acc, 0, (size_t)E * sizeof(float));
        for (int j = 0; j < K; j++)
            k->axpy_f32(acc, c->moe_w[i * K + j], recv + (size_t)where[c->moe_row[i * K + j]] * (size_t)E, E);
        k->add(x + i * E, acc, E);
    }
    sov_pool_barrier(c->pool);
    /* every rank gets every owner's rows */
    if (t->ith == 0) {
        int *cnt = tp_scratch(tp, 3, (size_t)(2 * R) * sizeof *cnt);
        for (int q = 0; q < R; q++) {
            owned(T, q, R, &b, &e);
            cnt[q] = floats(tp, e - b, E);
            cnt[R + q] = floats(tp, b, E);
        }
        tp_allgatherv(tp, x, cnt, cnt + R, "--ep combined rows (allgatherv)");
    }
    sov_pool_barrier(c->pool);
    return true;
}

#else

bool ep_combine(const op_thread *t, float *x, int T) {
    (void)x, (void)T;
    tp_fatal(t->c->model->tp, "built without MPI");
}

#endif
