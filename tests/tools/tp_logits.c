/* tp_logits - test tool: one fixed script of context calls on a model, whole or split
 * with --tp R under mpirun, writing every logit row it asks for, so that
 * tests/mpi/test_tp_greedy.py can compare split runs with the single process.
 *
 *   [mpirun -np R] tp_logits MODEL --out FILE [--tp R | --ep R | --pp R] [--threads N] [--kv-f32]
 *
 * The script exercises every call rank 0 sends to the other ranks: a 40-token prompt in
 * one batch (sequence A), 12 greedy steps, a second sequence B that attaches A's first
 * two KV blocks and continues with A's prompt tokens 32..39 in one batch with A's next
 * step, truncation of A and more greedy steps, a block retained and released, B freed,
 * and a second context. FILE receives float32 rows of n_vocab; stdout the greedy tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sov.h"

static int fail(const char *what, sov_status st) {
    fprintf(stderr, "tp_logits: %s: %s (%s)\n", what, sov_strerror(st), sov_last_error());
    return 1;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

typedef struct run {
    sov_context *ctx;
    int n_vocab;
    float *logits; /* room for 16 rows */
    FILE *out;
} run;

/* decodes n tokens of (seq, pos from at), logits for the flagged ones, written to out */
static sov_status step(run *r, int n, const sov_token *tok, const sov_seq_id *seq, const int32_t *pos,
                       const uint8_t *want) {
    const sov_batch b = {n, tok, seq, pos, want};
    const sov_status st = sov_decode(r->ctx, &b, r->logits);
    if (st) return st;
    int rows = 0;
    for (int i = 0; i < n; i++) rows += want[i] != 0;
    fwrite(r->logits, sizeof(float), (size_t)rows * (size_t)r->n_vocab, r->out);
    return SOV_OK;
}

/* greedy steps on seq from position at, starting from the argmax of the last row */
static sov_status greedy(run *r, sov_seq_id seq, int32_t at, int n) {
    for (int i = 0; i < n; i++) {
        const sov_token t = argmax(r->logits, r->n_vocab);
        printf("%d ", t);
        const uint8_t want = 1;
        const int32_t pos = at + i;
        const sov_status st = step(r, 1, &t, &seq, &pos, &want);
        if (st) return st;
    }
    return SOV_OK;
}

static sov_status script(run *r) {
    enum { P = 40 };
    sov_token prompt[P];
    sov_seq_id seq[P];
    int32_t pos[P];
    uint8_t want[P];
    for (int i = 0; i < P; i++) {
        prompt[i] = (sov_token)(1 + (i * 37 + 11) % (r->n_vocab - 1));
        seq[i] = 0;
        pos[i] = i;
        want[i] = i == P - 1;
    }
    sov_seq_id a, b;
    sov_status st;
    if ((st = sov_seq_new(r->ctx, &a)) || (st = step(r, P, prompt, seq, pos, want))) return st;
    if ((st = greedy(r, a, P, 12))) return st;
    /* B shares A's first two blocks, then catches up in one batch with A's next step */
    const int32_t *blocks;
    if (sov_seq_blocks(r->ctx, a, &blocks) < 2) return SOV_ERR_ARG;
    const int32_t shared[2] = {blocks[0], blocks[1]};
    if ((st = sov_seq_new(r->ctx, &b)) || (st = sov_seq_attach_blocks(r->ctx, b, shared, 2))) return st;
    const int32_t bs = sov_kv_block_size(r->ctx), nb = P - 2 * bs;
    sov_token t2[P];
    sov_seq_id s2[P];
    int32_t p2[P];
    uint8_t w2[P];
    const sov_token next = argmax(r->logits, r->n_vocab);
    for (int i = 0; i < nb; i++) {
        t2[i] = prompt[2 * bs + i];
        s2[i] = b;
        p2[i] = 2 * bs + i;
        w2[i] = i == nb - 1;
    }
    t2[nb] = next;
    s2[nb] = a;
    p2[nb] = P + 12;
    w2[nb] = 1;
    if ((st = step(r, nb + 1, t2, s2, p2, w2))) return st;
    printf("| ");
    /* A back to 20 positions, regenerated; a block held and dropped; B freed */
    if ((st = sov_seq_truncate(r->ctx, a, 20))) return st;
    const uint8_t one = 1;
    const int32_t p20 = 20;
    if ((st = step(r, 1, &prompt[20], &a, &p20, &one))) return st;
    if ((st = greedy(r, a, 21, 8))) return st;
    sov_kv_block_retain(r->ctx, shared[0]);
    sov_seq_free(r->ctx, b);
    sov_kv_block_release(r->ctx, shared[0]);
    printf("| ");
    return SOV_OK;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *out_path = NULL;
    int tp_n = 1, threads = 1;
    sov_split how = SOV_SPLIT_TENSOR;
    sov_kv_type kv = SOV_KV_F16;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out_path = argv[++i];
        else if (!strcmp(argv[i], "--tp") && i + 1 < argc) tp_n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pp") && i + 1 < argc) tp_n = atoi(argv[++i]), how = SOV_SPLIT_PIPELINE;
        else if (!strcmp(argv[i], "--ep") && i + 1 < argc) tp_n = atoi(argv[++i]), how = SOV_SPLIT_EXPERT;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--kv-f32")) kv = SOV_KV_F32;
        else if (!model_path) model_path = argv[i];
        else {
            fprintf(stderr, "tp_logits: bad argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!model_path || !out_path) {
        fprintf(stderr, "usage: tp_logits MODEL --out FILE [--tp R | --ep R | --pp R] [--threads N] [--kv-f32]\n");
        return 2;
    }
    sov_tp *tp = NULL;
    sov_status st;
    if (tp_n > 1 && (st = sov_tp_init_split(tp_n, how, &tp))) return fail("tp", st);
    sov_model_params mp = sov_model_default_params();
    mp.tp = tp;
    sov_model *m;
    if ((st = sov_model_load(model_path, &mp, &m))) {
        sov_tp_free(tp);
        return fail("load", st);
    }
    if (sov_tp_rank(tp) > 0) {
        st = sov_tp_worker_run(m);
        sov_model_free(m);
        sov_tp_free(tp);
        return st ? fail("worker", st) : 0;
    }
    sov_model_info info;
    sov_model_get_info(m, &info);
    run r = {.n_vocab = info.n_vocab};
    r.logits = malloc((size_t)info.n_vocab * 16 * sizeof(float));
    r.out = fopen(out_path, "wb");
    sov_context_params cp = sov_context_default_params();
    cp.n_ctx = 256;
    cp.n_seq_max = 2;
    cp.n_batch = 64;
    cp.n_threads = threads;
    cp.kv_type = kv;
    int rc = 0;
    if (!r.logits || !r.out) rc = fail("out", SOV_ERR_IO);
    else if ((st = sov_context_new(m, &cp, &r.ctx))) rc = fail("context", st);
    else if ((st = script(&r))) rc = fail("script", st);
    if (!rc) {
        /* a second context: made and used after the first is gone */
        sov_context_free(r.ctx);
        r.ctx = NULL;
        cp.n_ctx = 64;
        cp.n_seq_max = 1;
        sov_seq_id s;
        const sov_token t[3] = {1, 2, 3};
        const sov_seq_id q[3] = {0, 0, 0};
        const int32_t p[3] = {0, 1, 2};
        const uint8_t w[3] = {0, 0, 1};
        if ((st = sov_context_new(m, &cp, &r.ctx)) || (st = sov_seq_new(r.ctx, &s)) || (st = step(&r, 3, t, q, p, w)))
            rc = fail("second context", st);
        else printf("%d\n", argmax(r.logits, r.n_vocab));
    }
    sov_context_free(r.ctx);
    if (r.out) fclose(r.out);
    free(r.logits);
    sov_model_free(m);
    sov_tp_free(tp);
    return rc;
}
