/* sov_mtp - test tool: runs a deepseek2 model's multi-token-prediction module over a
 * sequence, so that a script test can compare its logits with the NumPy reference.
 *
 *   sov_mtp MODEL --seq t0,t1,...,tT [--depth D] [--threads N] --out FILE [--hidden FILE2]
 *
 * Decodes t0..t(T-1) in one call, asking for every row's final hidden state; then
 * sov_mtp_logits(depth D) over those T hidden states with the next tokens t1..tT at
 * positions 0..T-1. FILE receives float32 [T][n_vocab] (row i predicts t(i+2)); FILE2,
 * when given, float32 [T][n_embd], the hidden states. Exit 1 with one line on an error
 * (e.g. a model without MTP blocks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "sov.h"

enum { MAX_TOKS = 4096 };

static int fail(const char *what, sov_status st) {
    fprintf(stderr, "sov_mtp: %s: %s (%s)\n", what, sov_strerror(st), sov_last_error());
    return 1;
}

static int write_floats(const char *path, const float *v, size_t n) {
    FILE *f = fopen(path, "wb");
    const bool ok = f && fwrite(v, sizeof *v, n, f) == n;
    if (f && fclose(f) != 0) return 1;
    if (!ok) fprintf(stderr, "sov_mtp: cannot write %s\n", path);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *out_path = NULL, *hidden_path = NULL;
    static sov_token toks[MAX_TOKS];
    int n = 0, depth = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seq") && i + 1 < argc) {
            for (char *p = argv[++i]; *p && n < MAX_TOKS;) {
                toks[n++] = (sov_token)strtol(p, &p, 10);
                if (*p == ',') p++;
            }
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) out_path = argv[++i];
        else if (!strcmp(argv[i], "--hidden") && i + 1 < argc) hidden_path = argv[++i];
        else if (!strcmp(argv[i], "--depth") && i + 1 < argc) depth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!model_path) model_path = argv[i];
        else {
            fprintf(stderr, "sov_mtp: bad argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!model_path || !out_path || n < 2) {
        fprintf(stderr, "usage: sov_mtp MODEL --seq t0,t1,... (2 tokens or more) [--depth D] --out FILE\n");
        return 2;
    }
    const int T = n - 1;
    sov_model *m;
    sov_status st = sov_model_load(model_path, NULL, &m);
    if (st) return fail("load", st);
    sov_model_info info;
    sov_model_get_info(m, &info);
    const size_t V = (size_t)info.n_vocab, E = (size_t)info.n_embd;
    sov_context_params cp = sov_context_default_params();
    cp.n_threads = threads;
    cp.n_batch = T > 512 ? T : 512;
    sov_context *ctx = NULL;
    if ((st = sov_context_new(m, &cp, &ctx))) return fail("context", st);
    sov_seq_id seq;
    if ((st = sov_seq_new(ctx, &seq))) return fail("seq", st);
    sov_seq_id *bs = malloc((size_t)T * sizeof *bs);
    int32_t *pos = malloc((size_t)T * sizeof *pos);
    uint8_t *want = malloc((size_t)T);
    float *hidden = malloc((size_t)T * E * sizeof(float));
    float *logits = malloc((size_t)T * V * sizeof(float));
    int rc = 1;
    if (!bs || !pos || !want || !hidden || !logits) {
        fprintf(stderr, "sov_mtp: out of memory\n");
        goto done;
    }
    for (int i = 0; i < T; i++) {
        bs[i] = seq;
        pos[i] = i;
        want[i] = 1;
    }
    const sov_batch b = {.n_tokens = T, .token = toks, .seq = bs, .pos = pos, .logits = NULL};
    if ((st = sov_decode_embd(ctx, &b, NULL, want, hidden))) {
        rc = fail("decode", st);
        goto done;
    }
    if ((st = sov_mtp_logits(ctx, depth, hidden, toks + 1, pos, T, logits))) {
        rc = fail("mtp", st);
        goto done;
    }
    rc = write_floats(out_path, logits, (size_t)T * V);
    if (!rc && hidden_path) rc = write_floats(hidden_path, hidden, (size_t)T * E);
done:
    free(bs);
    free(pos);
    free(want);
    free(hidden);
    free(logits);
    sov_context_free(ctx);
    sov_model_free(m);
    return rc;
}
