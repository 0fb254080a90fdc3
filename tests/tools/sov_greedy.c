/* sov_greedy - test tool: greedy generation from prompt token ids, printing for every
 * step the chosen id and the three best candidates with their logits, so a test can
 * tell a real divergence from a near-tie.
 *
 *   sov_greedy MODEL --tokens 1,2,3 -n N
 * prints N lines: "id  cand1:logit cand2:logit cand3:logit" (cand1 == id). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sov.h"

int main(int argc, char **argv) {
    const char *path = NULL, *toks = NULL;
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc) toks = argv[++i];
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) n = atoi(argv[++i]);
        else path = argv[i];
    }
    if (!path || !toks || n <= 0) {
        fprintf(stderr, "usage: sov_greedy MODEL --tokens 1,2,3 -n N\n");
        return 2;
    }
    sov_model *m;
    sov_status st = sov_model_load(path, NULL, &m);
    if (st) {
        fprintf(stderr, "sov_greedy: %s\n", sov_last_error());
        return 1;
    }
    sov_model_info info;
    sov_model_get_info(m, &info);
    sov_context_params cp = sov_context_default_params();
    sov_context *c;
    sov_seq_id s;
    if (sov_context_new(m, &cp, &c) || sov_seq_new(c, &s)) {
        fprintf(stderr, "sov_greedy: %s\n", sov_last_error());
        return 1;
    }
    static sov_token ids[8192];
    static int32_t pos[8192];
    static sov_seq_id seq[8192];
    static uint8_t want[8192];
    int np = 0;
    for (char *p = (char *)toks; *p && np < 4096;) {
        ids[np++] = (sov_token)strtol(p, &p, 10);
        if (*p == ',') p++;
    }
    float *lg = malloc((size_t)info.n_vocab * sizeof *lg);
    for (int i = 0; i < np; i++) {
        pos[i] = i;
        seq[i] = s;
        want[i] = i == np - 1;
    }
    sov_batch b = {np, ids, seq, pos, want};
    int rc = 0;
    for (int step = 0; step < n && !rc; step++) {
        if ((st = sov_decode(c, &b, lg))) {
            fprintf(stderr, "sov_greedy: %s\n", sov_last_error());
            rc = 1;
            break;
        }
        int top[3] = {-1, -1, -1};
        for (int i = 0; i < info.n_vocab; i++) {
            for (int k = 0; k < 3; k++) {
                if (top[k] < 0 || lg[i] > lg[top[k]]) {
                    for (int j = 2; j > k; j--) top[j] = top[j - 1];
                    top[k] = i;
                    break;
                }
            }
        }
        printf("%d", top[0]);
        for (int k = 0; k < 3; k++) printf(" %d:%.6f", top[k], (double)lg[top[k]]);
        printf("\n");
        ids[np] = top[0];
        pos[np] = np;
        seq[np] = s;
        want[np] = 1;
        b = (sov_batch){1, &ids[np], &seq[np], &pos[np], &want[np]};
        np++;
    }
    free(lg);
    sov_context_free(c);
    sov_model_free(m);
    return rc;
}
