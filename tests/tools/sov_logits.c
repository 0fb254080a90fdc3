/* sov_logits - test tool: evaluates token sequences with sov and writes every token's
 * logits, so script tests can compare them with the NumPy reference and across ways of
 * batching.
 *
 *   sov_logits MODEL --seq 1,2,3 [--seq 4,5 ...] [--mode alone|batch|steps|mixed]
 *              [--kv-f32 | --kv-type f16|f32|q8_0|q4_0] [--ctx N] [--threads N] [--batch N]
 *              --out FILE
 *
 * FILE receives float32 [sum of sequence lengths][n_vocab], sequences in order.
 * Modes: alone = each sequence in its own context, whole prompt in one decode call;
 * batch = all sequences in one decode call; steps = one token per call, sequences
 * round-robin (every call holds one token of each live sequence); mixed = chunks of 3
 * tokens of each sequence per call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sov.h"

enum { MAX_SEQS = 16, MAX_TOKS = 8192 };

static int fail(const char *what, sov_status st) {
    fprintf(stderr, "sov_logits: %s: %s (%s)\n", what, sov_strerror(st), sov_last_error());
    return 1;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *out_path = NULL, *mode = "alone";
    static sov_token toks[MAX_SEQS][MAX_TOKS];
    int n_tok[MAX_SEQS] = {0}, n_seq = 0, threads = 0, n_batch = 512, n_ctx = 0;
    sov_kv_type kv_type = SOV_KV_F16;
    static const char *const kv_names[] = {"f16", "f32", "q8_0", "q4_0"};
    static const sov_kv_type kv_types[] = {SOV_KV_F16, SOV_KV_F32, SOV_KV_Q8_0, SOV_KV_Q4_0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seq") && i + 1 < argc && n_seq < MAX_SEQS) {
            for (char *p = argv[++i]; *p && n_tok[n_seq] < MAX_TOKS;) {
                toks[n_seq][n_tok[n_seq]++] = (sov_token)strtol(p, &p, 10);
                if (*p == ',') p++;
            }
            n_seq++;
        } else if (!strcmp(argv[i], "--mode") && i + 1 < argc) mode = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out_path = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) n_batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ctx") && i + 1 < argc) n_ctx = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--kv-f32")) kv_type = SOV_KV_F32;
        else if (!strcmp(argv[i], "--kv-type") && i + 1 < argc) {
            const char *t = argv[++i];
            int found = -1;
            for (int k = 0; k < 4; k++)
                if (!strcmp(t, kv_names[k])) found = k;
            if (found < 0) {
                fprintf(stderr, "sov_logits: unknown --kv-type '%s'\n", t);
                return 2;
            }
            kv_type = kv_types[found];
        }
        else if (!model_path) model_path = argv[i];
        else {
            fprintf(stderr, "sov_logits: bad argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!model_path || !out_path || n_seq == 0) {
        fprintf(stderr, "usage: sov_logits MODEL --seq 1,2,3 [--seq ...] [--mode M] --out FILE\n");
        return 2;
    }
    sov_model *m;
    sov_status st = sov_model_load(model_path, NULL, &m);
    if (st) return fail("load", st);
    sov_model_info info;
    sov_model_get_info(m, &info);
    const size_t V = (size_t)info.n_vocab;
    int total = 0, offset[MAX_SEQS];
    for (int s = 0; s < n_seq; s++) {
        offset[s] = total;
        total += n_tok[s];
    }
    float *all = calloc((size_t)total * V, sizeof(float));
    float *lg = malloc((size_t)total * V * sizeof(float));
    sov_token *bt = malloc((size_t)total * sizeof *bt);
    sov_seq_id *bs = malloc((size_t)total * sizeof *bs);
    int32_t *bp = malloc((size_t)total * sizeof *bp);
    uint8_t *bl = malloc((size_t)total);
    int *src_seq = malloc((size_t)total * sizeof(int)), *src_pos = malloc((size_t)total * sizeof(int));

    sov_context_params cp = sov_context_default_params();
    cp.n_threads = threads;
    cp.n_batch = n_batch > total ? n_batch : total;
    cp.n_seq_max = n_seq;
    cp.kv_type = kv_type;
    cp.n_ctx = n_ctx;
    sov_context *ctx = NULL;
    const bool alone = !strcmp(mode, "alone");
    sov_seq_id ids[MAX_SEQS];
    int done[MAX_SEQS] = {0};
    int rc = 0;
    for (int round = 0; round < (alone ? n_seq : 1) && !rc; round++) {
        sov_context_free(ctx);
        ctx = NULL;
        if ((st = sov_context_new(m, &cp, &ctx))) return fail("context", st);
        for (int s = 0; s < n_seq; s++)
            if ((st = sov_seq_new(ctx, &ids[s]))) return fail("seq", st);
        for (;;) {
            /* build the next batch */
            int n = 0;
            for (int s = 0; s < n_seq; s++) {
                if (alone && s != round) continue;
                int take = n_tok[s] - done[s];
                if (!strcmp(mode, "steps")) take = take > 0 ? 1 : 0;
                else if (!strcmp(mode, "mixed")) take = take > 3 ? 3 : take;
                for (int k = 0; k < take; k++, n++) {
                    bt[n] = toks[s][done[s] + k];
                    bs[n] = ids[s];
                    bp[n] = done[s] + k;
                    bl[n] = 1;
                    src_seq[n] = s;
                    src_pos[n] = done[s] + k;
                }
                done[s] += take;
            }
            if (n == 0) break;
            const sov_batch b = {n, bt, bs, bp, bl};
            if ((st = sov_decode(ctx, &b, lg))) {
                rc = fail("decode", st);
                break;
            }
            for (int k = 0; k < n; k++)
                memcpy(all + (size_t)(offset[src_seq[k]] + src_pos[k]) * V, lg + (size_t)k * V, V * sizeof(float));
        }
    }
    if (!rc) {
        FILE *f = fopen(out_path, "wb");
        if (!f || fwrite(all, sizeof(float), (size_t)total * V, f) != (size_t)total * V) rc = 1;
        if (f) fclose(f);
        fprintf(stderr, "sov_logits: %d tokens, isa %s, %d threads\n", total, sov_context_isa(ctx),
                sov_context_threads(ctx));
    }
    sov_context_free(ctx);
    sov_model_free(m);
    free(all);
    free(lg);
    free(bt);
    free(bs);
    free(bp);
    free(bl);
    free(src_seq);
    free(src_pos);
    return rc;
}
