/* sov_embed - test tool: embeds token sequences with sov_embed and writes the vectors, so
 * script tests can compare them with the NumPy reference.
 *
 *   sov_embed MODEL --seq 1,2,3 [--seq 4,5 ...] [--batch N] [--seqs N] [--ctx N]
 *             [--threads N] [--kv-f32] --out FILE
 *
 * FILE receives float32 [n_seq][n_embd]. --batch (tokens per decode call) and --seqs
 * (sequences in flight) change how the inputs are packed, never the result. On stdout:
 * "pooling P kv_free F kv_total T" after the run (every block must be free again). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sov.h"

enum { MAX_SEQS = 64, MAX_TOKS = 4096 };

static int fail(const char *what, sov_status st) {
    fprintf(stderr, "sov_embed: %s: %s (%s)\n", what, sov_strerror(st), sov_last_error());
    return 1;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *out_path = NULL;
    static sov_token toks[MAX_SEQS][MAX_TOKS];
    int32_t n_tok[MAX_SEQS] = {0};
    int n_seq = 0;
    sov_context_params cp = sov_context_default_params();
    cp.n_seq_max = 4;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seq") && i + 1 < argc && n_seq < MAX_SEQS) {
            for (char *p = argv[++i]; *p && n_tok[n_seq] < MAX_TOKS;) {
                toks[n_seq][n_tok[n_seq]++] = (sov_token)strtol(p, &p, 10);
                if (*p == ',') p++;
            }
            n_seq++;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out_path = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            cp.n_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            cp.n_batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seqs") && i + 1 < argc)
            cp.n_seq_max = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ctx") && i + 1 < argc)
            cp.n_ctx = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--kv-f32"))
            cp.kv_type = SOV_KV_F32;
        else if (!model_path)
            model_path = argv[i];
        else {
            fprintf(stderr, "sov_embed: bad argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!model_path || !out_path || n_seq == 0) {
        fprintf(stderr, "usage: sov_embed MODEL --seq 1,2,3 [--seq ...] --out FILE\n");
        return 2;
    }
    sov_model *m;
    sov_status st = sov_model_load(model_path, NULL, &m);
    if (st) return fail("load", st);
    sov_model_info info;
    sov_model_get_info(m, &info);
    sov_context *c;
    if ((st = sov_context_new(m, &cp, &c))) return fail("context", st);
    const sov_token *in[MAX_SEQS];
    for (int s = 0; s < n_seq; s++)
        in[s] = toks[s];
    float *out = malloc((size_t)n_seq * (size_t)info.n_embd * sizeof *out);
    if (!out) return fail("alloc", SOV_ERR_NOMEM);
    int rc = 0;
    if ((st = sov_embed(c, in, n_tok, n_seq, out))) {
        rc = fail("embed", st);
    } else {
        FILE *f = fopen(out_path, "wb");
        if (!f || fwrite(out, sizeof *out * (size_t)info.n_embd, (size_t)n_seq, f) != (size_t)n_seq) rc = 1;
        if (f && fclose(f) != 0) rc = 1;
        printf("pooling %s kv_free %d kv_total %d\n", sov_pooling_name(info.pooling), sov_kv_blocks_free(c),
               sov_kv_blocks_total(c));
    }
    free(out);
    sov_context_free(c);
    sov_model_free(m);
    return rc;
}
