/* pull.c - `sov pull SOURCE [-o DIR]`: a GGUF model from a Hugging Face-compatible hub into
 * the models folder, resumable and checked (src/pull/pull.h), with a progress bar showing
 * rate and time left on stderr. The one sov command that touches the network: `sov serve`
 * never does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "pull/pull.h"

static void help(FILE *f) {
    fprintf(f, "usage: sov pull SOURCE [-o DIR] [--endpoint URL] [--sha256 HEX] [--retries N]\n\n"
               "Downloads a GGUF model from a Hugging Face-compatible hub (the public hub, or an\n"
               "in-country mirror) into DIR, checks its SHA-256 against the hub's, then moves it in.\n\n"
               "SOURCE:\n"
               "  hf://ORG/REPO/FILE.gguf   that file of the repository\n"
               "  ORG/REPO:QUANT            the repository's model file tagged QUANT (e.g. Q4_K_M)\n"
               "  ORG/REPO                  its Q4_K_M model, else Q8_0, else the first GGUF\n\n"
               "  -o, --output DIR     the models folder (default: models); the transfer is written to\n"
               "                       DIR/" PULL_PARTIAL_DIR "/ and renamed only once its checksum matches\n"
               "  --endpoint URL       the hub (default: $HF_ENDPOINT, else " PULL_DEFAULT_ENDPOINT ")\n"
               "  --sha256 HEX         the expected SHA-256, when the hub states none\n"
               "  --retries N          resume a dropped transfer N times (default 5); a run that still\n"
               "                       fails keeps the partial file and the next run resumes it\n"
               "  --timeout S          give up on a transfer stalled S seconds (default 60)\n\n"
               "HF_TOKEN, when set, is sent as a bearer token (gated or private repositories).\n"
               "Prints the model's path on stdout. Exit 0, 1 on failure (no such repository or file,\n"
               "checksum mismatch, network), 2 on a usage error.\n");
}

typedef struct bar {
    const char *name;
    bool tty;
    double last_print;
    int last_decile;
} bar;

static void human(double b, char *buf, size_t cap) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024.0 && i < 4)
        b /= 1024.0, i++;
    snprintf(buf, cap, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

static void on_progress(void *user, uint64_t have, uint64_t total, uint64_t got_now, double seconds) {
    bar *b = user;
    const bool done = total && have >= total;
    if (b->tty ? (seconds - b->last_print < 0.2 && !done) : false) return;
    const double rate = seconds > 0 ? (double)got_now / seconds : 0;
    const int pct = total ? (int)((double)have * 100.0 / (double)total) : -1;
    if (!b->tty) { /* a log: a line per tenth */
        const int decile = pct < 0 ? (int)(seconds / 10) : pct / 10;
        if (decile == b->last_decile) return;
        b->last_decile = decile;
    }
    b->last_print = seconds;
    char hv[32], tv[32], rv[32], eta[32] = "--:--";
    human((double)have, hv, sizeof hv);
    human((double)total, tv, sizeof tv);
    human(rate, rv, sizeof rv);
    if (total && rate > 0) {
        const long s = (long)((double)(total - (have < total ? have : total)) / rate);
        snprintf(eta, sizeof eta, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    }
    if (b->tty) {
        const int fill = pct < 0 ? 0 : pct / 4;
        fprintf(stderr, "\r%s [%.*s%*s] %3d%% %s / %s  %s/s  ETA %s   ", b->name, fill,
                "=========================", 25 - fill, "", pct < 0 ? 0 : pct, hv, total ? tv : "?", rv, eta);
        if (done) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s: %d%% %s / %s, %s/s, ETA %s\n", b->name, pct < 0 ? 0 : pct, hv, total ? tv : "?",
                rv, eta);
    }
    fflush(stderr);
}

int cmd_pull(int argc, char **argv) {
    const char *source = NULL, *dir = "models", *endpoint = getenv("HF_ENDPOINT"), *sha = NULL;
    long retries = 5, timeout = 60;
    bool bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        if (cli_flag(argv, &i, "--help") || cli_flag(argv, &i, "-h")) {
            help(stdout);
            return 0;
        } else if (cli_opt_str(argc, argv, &i, "-o", &dir, &bad) ||
                   cli_opt_str(argc, argv, &i, "--output", &dir, &bad) ||
                   cli_opt_str(argc, argv, &i, "--endpoint", &endpoint, &bad) ||
                   cli_opt_str(argc, argv, &i, "--sha256", &sha, &bad) ||
                   cli_opt_int(argc, argv, &i, "--retries", &retries, &bad) ||
                   cli_opt_int(argc, argv, &i, "--timeout", &timeout, &bad)) {
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "sov pull: unknown option '%s'; see sov pull --help\n", argv[i]);
            return 2;
        } else if (!source) {
            source = argv[i];
        } else {
            fprintf(stderr, "sov pull: one SOURCE at a time: unexpected '%s'\n", argv[i]);
            return 2;
        }
    }
    if (bad) return 2;
    if (!source) {
        help(stderr);
        return 2;
    }
    if (retries < 0 || retries > 1000 || timeout < 1 || timeout > 86400) {
        fprintf(stderr, "sov pull: --retries is 0..1000 and --timeout 1..86400 seconds\n");
        return 2;
    }
    pull_source src;
    if (pull_source_parse(source, &src)) {
        fprintf(stderr, "sov pull: %s\n", sov_last_error());
        return 2;
    }
    bar b = {.name = source, .tty = isatty(STDERR_FILENO), .last_print = -1, .last_decile = -1};
    const pull_opts o = {.endpoint = endpoint,
                         .token = getenv("HF_TOKEN"),
                         .sha256 = sha,
                         .retries = (int)retries,
                         .timeout_s = timeout,
                         .progress = on_progress,
                         .progress_user = &b};
    pull_result r;
    const sov_status st = pull_model(&src, dir, &o, &r);
    if (st) return cli_status_error("pull", st);
    fprintf(stderr, "sov pull: %s: %llu bytes, sha256 %s verified%s\n", r.path, (unsigned long long)r.size,
            r.sha256, r.already ? " (already present)" : "");
    printf("%s\n", r.path);
    return 0;
}
