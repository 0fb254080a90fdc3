/* bench_embed.c - embeddings throughput of the engine: a batch of short texts embedded
 * with the LM head skipped (what sov_embed and /v1/embeddings do) and, for comparison,
 * with it run as a completion-style pass would: logits for the last token of each input,
 * and logits for every token (the whole forward pass).
 *
 *   bench_embed MODEL.gguf [-n INPUTS (64)] [-t THREADS (0: cores)] [-r REPS (5)]
 *
 * The inputs are short English sentences (9 to 16 tokens with the Llama vocabulary), all
 * in flight at once (one sequence each) and packed into batches of 512 tokens; mean
 * pooling, L2 norm, sequences freed, as sov_embed. Prints, per mode, the best of REPS
 * runs as inputs/s and tokens/s, and the speed-up of skipping the head. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "model/embed.h"
#include "sov.h"

enum { MAX_IN = 1024, MAX_TOK = 64, N_BATCH = 512 };

static const char *const WORDS[] = {"the",      "network",  "operator", "routes",    "calls",   "through",
                                    "a",        "regional", "switch",   "when",      "traffic", "peaks",
                                    "in",       "Seoul",    "and",      "customers", "report",  "dropped",
                                    "sessions", "on",       "their",    "mobile",    "data",    "plans"};

typedef enum mode { HEAD_SKIPPED, HEAD_LAST, HEAD_ALL } mode;

typedef struct run {
    sov_context *c;
    int n_in, E, V;
    sov_token (*tok)[MAX_TOK];
    int32_t *n_tok;
    sov_token *b_tok;
    sov_seq_id *b_seq;
    int32_t *b_pos, *b_in;
    uint8_t *b_logits, *b_embd;
    float *hidden, *logits;
    double *acc;
    float *out;
} run;

/* All inputs, each on its own sequence, their tokens packed in order into batches. */
static double embed_all(run *r, mode m) {
    const double t0 = sov_now_s();
    sov_seq_id seq[MAX_IN];
    for (int i = 0; i < r->n_in; i++) {
        if (sov_seq_new(r->c, &seq[i])) return -1;
        memset(r->acc + (size_t)i * (size_t)r->E, 0, (size_t)r->E * sizeof *r->acc);
    }
    int in = 0, at = 0;
    while (in < r->n_in) {
        int n = 0;
        for (; in < r->n_in && n < N_BATCH; n++) {
            r->b_tok[n] = r->tok[in][at];
            r->b_seq[n] = seq[in];
            r->b_pos[n] = at;
            r->b_in[n] = in;
            r->b_embd[n] = 1; /* mean pooling wants every token */
            r->b_logits[n] = m == HEAD_ALL || (m == HEAD_LAST && at == r->n_tok[in] - 1);
            if (++at == r->n_tok[in]) {
                in++;
                at = 0;
            }
        }
        const sov_batch b = {
            .n_tokens = n, .token = r->b_tok, .seq = r->b_seq, .pos = r->b_pos, .logits = r->b_logits};
        if (sov_decode_embd(r->c, &b, r->logits, r->b_embd, r->hidden)) return -1;
        for (int k = 0; k < n; k++)
            embed_pool_add(SOV_POOLING_MEAN, r->acc + (size_t)r->b_in[k] * (size_t)r->E,
                           r->hidden + (size_t)k * (size_t)r->E, r->b_pos[k], r->n_tok[r->b_in[k]], r->E);
    }
    for (int i = 0; i < r->n_in; i++) {
        embed_pool_finish(r->acc + (size_t)i * (size_t)r->E, r->E, r->out + (size_t)i * (size_t)r->E);
        sov_seq_free(r->c, seq[i]);
    }
    return sov_now_s() - t0;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    int n_in = 64, threads = 0, reps = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc)
            n_in = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!path)
            path = argv[i];
        else
            path = NULL, i = argc;
    }
    if (!path || n_in < 1 || n_in > MAX_IN || reps < 1) {
        fprintf(stderr, "usage: bench_embed MODEL.gguf [-n INPUTS (1..%d)] [-t THREADS] [-r REPS]\n", MAX_IN);
        return 2;
    }
    sov_model *m;
    if (sov_model_load(path, NULL, &m)) {
        fprintf(stderr, "bench_embed: %s\n", sov_last_error());
        return 1;
    }
    sov_model_info info;
    sov_model_get_info(m, &info);
    sov_context_params cp = sov_context_default_params();
    cp.n_ctx = MAX_TOK;
    cp.n_seq_max = n_in;
    cp.n_batch = N_BATCH;
    cp.n_threads = threads;
    sov_context *c;
    if (sov_context_new(m, &cp, &c)) {
        fprintf(stderr, "bench_embed: %s\n", sov_last_error());
        return 1;
    }
    run r = {.c = c, .n_in = n_in, .E = info.n_embd, .V = info.n_vocab};
    r.tok = malloc((size_t)n_in * sizeof *r.tok);
    r.n_tok = malloc((size_t)n_in * sizeof *r.n_tok);
    r.b_tok = malloc(N_BATCH * sizeof *r.b_tok);
    r.b_seq = malloc(N_BATCH * sizeof *r.b_seq);
    r.b_pos = malloc(N_BATCH * sizeof *r.b_pos);
    r.b_in = malloc(N_BATCH * sizeof *r.b_in);
    r.b_logits = malloc(N_BATCH);
    r.b_embd = malloc(N_BATCH);
    r.hidden = malloc((size_t)N_BATCH * (size_t)r.E * sizeof *r.hidden);
    r.logits = malloc((size_t)N_BATCH * (size_t)r.V * sizeof *r.logits);
    r.acc = malloc((size_t)n_in * (size_t)r.E * sizeof *r.acc);
    r.out = malloc((size_t)n_in * (size_t)r.E * sizeof *r.out);
    if (!r.tok || !r.n_tok || !r.b_tok || !r.b_seq || !r.b_pos || !r.b_in || !r.b_logits || !r.b_embd ||
        !r.hidden || !r.logits || !r.acc || !r.out) {
        fprintf(stderr, "bench_embed: out of memory\n");
        return 1;
    }
    /* short sentences of 8 to 15 words, tokenized with the model's vocabulary */
    long total = 0;
    uint64_t x = 12345;
    for (int i = 0; i < n_in; i++) {
        char text[512] = "";
        const int words = 8 + i % 8;
        for (int w = 0; w < words; w++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            strcat(text, w ? " " : "");
            strcat(text, WORDS[(x >> 33) % SOV_ARRAY_LEN(WORDS)]);
        }
        int32_t n = sov_tokenize(sov_model_vocab(m), text, strlen(text), true, false, r.tok[i], MAX_TOK);
        r.n_tok[i] = n < 1 ? 1 : n > MAX_TOK ? MAX_TOK : n;
        if (n < 1) r.tok[i][0] = 0;
        total += r.n_tok[i];
    }
    static const char *const names[] = {"head skipped", "head on last token", "head on every token"};
    double best[3] = {1e30, 1e30, 1e30};
    for (int rep = 0; rep < reps; rep++)
        for (int k = 0; k < 3; k++) {
            const double t = embed_all(&r, (mode)k);
            if (t < 0) {
                fprintf(stderr, "bench_embed: %s\n", sov_last_error());
                return 1;
            }
            if (t < best[k]) best[k] = t;
        }
    printf("%s: %d inputs, %ld tokens (%.1f per input), E %d, vocab %d, %d threads, best of %d\n", path, n_in,
           total, (double)total / n_in, r.E, r.V, sov_context_threads(c), reps);
    for (int k = 0; k < 3; k++) {
        printf("  %-20s %9.1f inputs/s %10.0f tokens/s %8.2f ms", names[k], n_in / best[k], total / best[k],
               best[k] * 1e3);
        if (k) printf("   skipping the head: x%.2f", best[k] / best[0]);
        printf("\n");
    }
    free(r.tok);
    free(r.n_tok);
    free(r.b_tok);
    free(r.b_seq);
    free(r.b_pos);
    free(r.b_in);
    free(r.b_logits);
    free(r.b_embd);
    free(r.hidden);
    free(r.logits);
    free(r.acc);
    free(r.out);
    sov_context_free(c);
    sov_model_free(m);
    return 0;
}
