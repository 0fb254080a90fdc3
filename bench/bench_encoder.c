/* bench_encoder.c - encoder embeddings throughput (bert, nomic-bert): the lines of a text
 * file, tokenized with the model's vocabulary ([CLS] ... [SEP]), embedded B inputs per
 * sov_embed call (one forward batch of B whole inputs), best of REPS passes over all lines.
 *
 *   bench_encoder MODEL.gguf TEXTS.txt [-b B (1)] [-t THREADS (0: cores)] [-r REPS (3)] [--out F]
 *
 * Prints embeddings/s and tokens/s; --out writes the vectors (float32 [n_lines][E]) so
 * bench/embed_bert.sh can compare them with llama.cpp's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "sov.h"

enum { MAX_LINES = 4096, MAX_TOK = 8192 };

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_encoder MODEL.gguf TEXTS.txt [-b B] [-t THREADS] [-r REPS] [--out F]\n");
        return 2;
    }
    int B = 1, threads = 0, reps = 3;
    const char *out_path = NULL;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-b")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-t")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-r")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--out")) out_path = argv[i + 1];
    }
    if (B < 1 || reps < 1) return 2;
    sov_model *m;
    if (sov_model_load(argv[1], NULL, &m)) {
        fprintf(stderr, "bench_encoder: %s\n", sov_last_error());
        return 1;
    }
    sov_model_info info;
    sov_model_get_info(m, &info);
    FILE *f = fopen(argv[2], "r");
    if (!f) return 1;
    static sov_token *tok[MAX_LINES];
    static int32_t n_tok[MAX_LINES];
    int n = 0, max_len = 0;
    long total = 0;
    char line[65536];
    while (n < MAX_LINES && fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\n");
        tok[n] = malloc(MAX_TOK * sizeof **tok);
        n_tok[n] = sov_tokenize(sov_model_vocab(m), line, len, true, false, tok[n], MAX_TOK);
        if (n_tok[n] < 1 || n_tok[n] > MAX_TOK) return 1;
        if (n_tok[n] > max_len) max_len = n_tok[n];
        total += n_tok[n++];
    }
    fclose(f);
    sov_context_params cp = sov_context_default_params();
    cp.n_threads = threads;
    cp.n_seq_max = B;
    cp.n_batch = B * max_len;
    sov_context *c;
    if (sov_context_new(m, &cp, &c)) {
        fprintf(stderr, "bench_encoder: %s\n", sov_last_error());
        return 1;
    }
    float *vec = malloc((size_t)n * (size_t)info.n_embd * sizeof *vec);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = sov_now_s();
        for (int i = 0; i < n; i += B) {
            const int k = n - i < B ? n - i : B;
            if (sov_embed(c, (const sov_token *const *)tok + i, n_tok + i, k, vec + (size_t)i * info.n_embd)) {
                fprintf(stderr, "bench_encoder: %s\n", sov_last_error());
                return 1;
            }
        }
        const double t = sov_now_s() - t0;
        if (t < best) best = t;
    }
    printf("  %s batch %-3d: %d inputs of %.0f tokens: %8.1f embeddings/s %9.0f tokens/s (best of %d, %d threads)\n",
           info.weight_type, B, n, (double)total / n, n / best, total / best, reps, threads);
    if (out_path) {
        FILE *o = fopen(out_path, "wb");
        if (!o || fwrite(vec, sizeof *vec * (size_t)info.n_embd, (size_t)n, o) != (size_t)n) return 1;
        fclose(o);
    }
    for (int i = 0; i < n; i++) free(tok[i]);
    free(vec);
    sov_context_free(c);
    sov_model_free(m);
    return 0;
}
