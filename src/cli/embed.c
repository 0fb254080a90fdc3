/* embed.c - `sov embed`: one embedding per input line, for scripts.
 *
 * Each line of the file (or standard input) is tokenized with the vocabulary's special
 * tokens ([CLS] ... [SEP] for BERT, BOS for decoders) and embedded with the model's
 * pooling, L2-normalised (sov_embed); the output has one JSON array of floats per input
 * line, in order. Lines are embedded in groups (several inputs share each forward batch).
 * A line that does not fit the model's context (or, for an encoder, one batch) is an
 * error naming its line number; nothing is truncated silently. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

enum { GROUP = 64 }; /* lines embedded per sov_embed call */

static void help(FILE *f) {
    fprintf(f,
            "usage: sov embed -m MODEL.gguf [-f FILE] [-o OUT] [--threads N] [--batch N]\n\n"
            "Writes one embedding per input line: a JSON array of floats per line (the model's\n"
            "pooling, L2-normalised). Encoder models (bert, nomic-bert) and decoders alike.\n"
            "  -m, --model FILE   the model\n"
            "  -f, --file FILE    input lines (default: standard input); a final newline is optional\n"
            "  -o, --output FILE  where to write (default: standard output)\n"
            "  --threads N        compute threads (default: physical cores)\n"
            "  --batch N          tokens per forward batch (default 512; an encoder input must fit one)\n");
}

typedef struct group {
    char *line[GROUP];
    sov_token *tok[GROUP];
    int32_t n_tok[GROUP];
    long line_no[GROUP];
    int n;
} group;

static void group_clear(group *g) {
    for (int i = 0; i < g->n; i++) {
        free(g->line[i]);
        free(g->tok[i]);
    }
    g->n = 0;
}

/* Embeds and prints the group's lines; 0 or an exit code after an error message. */
static int flush(sov_context *c, const sov_vocab *v, int32_t E, group *g, float *vec, FILE *out) {
    for (int i = 0; i < g->n; i++) {
        const size_t len = strlen(g->line[i]);
        const int32_t n = sov_tokenize(v, g->line[i], len, true, false, NULL, 0);
        if (n < 0) return cli_status_error("embed", (sov_status)-n);
        if (n == 0) return cli_error("embed", "line %ld gives no tokens", g->line_no[i]);
        g->tok[i] = malloc((size_t)n * sizeof *g->tok[i]);
        if (!g->tok[i]) return cli_error("embed", "out of memory");
        g->n_tok[i] = sov_tokenize(v, g->line[i], len, true, false, g->tok[i], n);
    }
    const sov_token *in[GROUP];
    for (int i = 0; i < g->n; i++) in[i] = g->tok[i];
    sov_status st = sov_embed(c, in, g->n_tok, g->n, vec);
    if (st) {
        /* name the line when one input is at fault */
        for (int i = 0; i < g->n && st != SOV_ERR_NOMEM; i++)
            if (sov_embed(c, in + i, g->n_tok + i, 1, vec) != SOV_OK)
                return cli_error("embed", "line %ld (%d tokens): %s", g->line_no[i], g->n_tok[i], sov_last_error());
        return cli_status_error("embed", st);
    }
    for (int i = 0; i < g->n; i++) {
        fputc('[', out);
        for (int32_t k = 0; k < E; k++) fprintf(out, k ? ",%.9g" : "%.9g", (double)vec[(size_t)i * E + k]);
        fputs("]\n", out);
    }
    group_clear(g);
    return ferror(out) ? cli_error("embed", "cannot write the output") : 0;
}

int cmd_embed(int argc, char **argv) {
    const char *model = NULL, *file = NULL, *output = NULL;
    long threads = 0, batch = 0;
    bool bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        if (cli_flag(argv, &i, "--help") || cli_flag(argv, &i, "-h")) {
            help(stdout);
            return 0;
        } else if (cli_opt_str(argc, argv, &i, "-m", &model, &bad) ||
                   cli_opt_str(argc, argv, &i, "--model", &model, &bad) ||
                   cli_opt_str(argc, argv, &i, "-f", &file, &bad) ||
                   cli_opt_str(argc, argv, &i, "--file", &file, &bad) ||
                   cli_opt_str(argc, argv, &i, "-o", &output, &bad) ||
                   cli_opt_str(argc, argv, &i, "--output", &output, &bad)) {
        } else if (cli_opt_int(argc, argv, &i, "--threads", &threads, &bad)) {
            if (threads < 1 || threads > 1024) return cli_error("embed", "--threads takes 1 to 1024");
        } else if (cli_opt_int(argc, argv, &i, "--batch", &batch, &bad)) {
            if (batch < 1 || batch > 65536) return cli_error("embed", "--batch takes 1 to 65536");
        } else {
            return cli_error("embed", "unknown option '%s'; see sov embed --help", argv[i]);
        }
    }
    if (bad) return 2;
    if (!model) return cli_error("embed", "a model is required (-m MODEL.gguf); see --help");
    FILE *in = file ? fopen(file, "rb") : stdin;
    if (!in) return cli_error("embed", "cannot open %s", file);
    sov_model *m = NULL;
    sov_context *c = NULL;
    FILE *out = NULL;
    float *vec = NULL;
    group g = {.n = 0};
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    sov_status st = sov_model_load(model, NULL, &m);
    if (st) {
        rc = cli_status_error("embed", st);
        goto done;
    }
    sov_model_info info;
    sov_model_get_info(m, &info);
    if ((st = sov_pooling_check(info.pooling))) {
        rc = cli_status_error("embed", st);
        goto done;
    }
    sov_context_params cp = sov_context_default_params();
    cp.n_threads = (int32_t)threads;
    cp.n_batch = (int32_t)batch;
    cp.n_seq_max = 16;
    if ((st = sov_context_new(m, &cp, &c))) {
        rc = cli_status_error("embed", st);
        goto done;
    }
    out = output ? fopen(output, "wb") : stdout;
    vec = malloc((size_t)GROUP * (size_t)info.n_embd * sizeof *vec);
    if (!out || !vec) {
        rc = cli_error("embed", out ? "out of memory" : "cannot write %s", output);
        goto done;
    }
    long line_no = 0;
    ssize_t got;
    while (rc == 0 && (got = getline(&line, &cap, in)) >= 0) {
        line_no++;
        if (got > 0 && line[got - 1] == '\n') line[--got] = '\0';
        if (got > 0 && line[got - 1] == '\r') line[--got] = '\0';
        if ((size_t)got != strlen(line)) {
            rc = cli_error("embed", "line %ld holds a NUL byte", line_no);
            break;
        }
        g.line[g.n] = strdup(line);
        g.tok[g.n] = NULL;
        g.line_no[g.n] = line_no;
        if (!g.line[g.n]) {
            rc = cli_error("embed", "out of memory");
            break;
        }
        if (++g.n == GROUP) rc = flush(c, sov_model_vocab(m), info.n_embd, &g, vec, out);
    }
    if (rc == 0 && ferror(in)) rc = cli_error("embed", "cannot read %s", file ? file : "standard input");
    if (rc == 0 && g.n > 0) rc = flush(c, sov_model_vocab(m), info.n_embd, &g, vec, out);
done:
    group_clear(&g);
    free(line);
    free(vec);
    if (out && out != stdout && fclose(out) != 0 && rc == 0) rc = cli_error("embed", "cannot write %s", output);
    if (out == stdout) fflush(stdout);
    if (in != stdin) fclose(in);
    sov_context_free(c);
    sov_model_free(m);
    return rc;
}
