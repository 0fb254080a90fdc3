/* bench.c - `sov bench`: prompt processing and generation speed, as llama-bench measures
 * them, plus load time, peak memory, bytes of weights read per generated token and the
 * machine's measured read bandwidth, so that every generation figure is also a share of
 * the bandwidth ceiling (decode reads every weight once per token).
 *
 *   pp<N>: one sequence, N prompt tokens in one sov_decode call (logits for the last).
 *   tg<N>: one sequence from an empty cache, N decode steps of one token.
 * Each is run once to warm up, then -r times; mean and standard deviation of tokens/s.
 * Energy (docs/ENERGY.md): joules per token of each, from the RAPL counters when readable,
 * else estimated (CPU time x --cpu-watts + DRAM bytes x pJ/byte), with the source beside
 * every figure. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/bandwidth.h"
#include "core/threadpool.h"
#include "core/util.h"
#include "energy/energy.h"
#include "model/model.h"

enum { MAX_THREAD_COUNTS = 16 };

static void help(FILE *f) {
    fprintf(f,
            "usage: sov bench -m MODEL.gguf [-p 512] [-n 128] [-t 1,2] [-r 5] [--json]\n\n"
            "Measures prompt processing (pp: N prompt tokens in one batch) and generation (tg:\n"
            "N tokens one at a time) in tokens/s, mean +- stddev over -r repeats after a\n"
            "warm-up, per thread count; with load time, peak RSS, bytes of weights read per\n"
            "generated token, and the machine's read bandwidth measured here, so tg is also\n"
            "shown as a percentage of the bandwidth ceiling.\n\n"
            "  -m, --model FILE   GGUF model\n"
            "  -p N               prompt tokens (default 512; 0 skips pp)\n"
            "  -n N               generated tokens (default 128; 0 skips tg)\n"
            "  -t LIST            thread counts, comma separated (default: physical cores)\n"
            "  -r N               repeats (default 5)\n"
            "  --json             one JSON object per line per measurement (instead of the table)\n"
            "  --json-file PATH   also append those JSON lines to PATH (with the table)\n"
            "  --no-bandwidth     skip the bandwidth measurement\n"
            "  --cpu-watts W      energy estimate: watts of one busy core (default 10; docs/ENERGY.md)\n"
            "  --dram-pj-per-byte PJ  energy estimate: DRAM energy per byte read (default 100)\n\n"
            "J/tok is joules per token: measured (rapl) where the powercap counters are readable,\n"
            "else estimated from CPU time and bytes read, and labelled so.\n");
}

typedef struct stats {
    double mean, sd;
} stats;

static stats summarise(const double *v, int n) {
    stats s = {0, 0};
    for (int i = 0; i < n; i++) s.mean += v[i];
    s.mean /= n;
    for (int i = 0; i < n; i++) s.sd += (v[i] - s.mean) * (v[i] - s.mean);
    s.sd = n > 1 ? sqrt(s.sd / (n - 1)) : 0.0;
    return s;
}

/* tokens/s of one pp run (n tokens in one batch) */
static double run_pp(sov_context *ctx, int n, int32_t n_vocab, float *logits, uint64_t *rng) {
    sov_seq_id s;
    if (sov_seq_new(ctx, &s)) return 0;
    sov_token *t = malloc((size_t)n * sizeof *t);
    sov_seq_id *q = malloc((size_t)n * sizeof *q);
    int32_t *p = malloc((size_t)n * sizeof *p);
    uint8_t *l = calloc((size_t)n, 1);
    double rate = 0;
    if (t && q && p && l) {
        for (int i = 0; i < n; i++) {
            *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
            t[i] = (sov_token)((*rng >> 33) % (uint64_t)n_vocab);
            q[i] = s;
            p[i] = i;
        }
        l[n - 1] = 1;
        const sov_batch b = {n, t, q, p, l};
        const double t0 = sov_now_s();
        if (sov_decode(ctx, &b, logits) == SOV_OK) rate = n / (sov_now_s() - t0);
    }
    free(t);
    free(q);
    free(p);
    free(l);
    sov_seq_free(ctx, s);
    return rate;
}

static double run_tg(sov_context *ctx, int n, int32_t n_vocab, float *logits, uint64_t *rng) {
    sov_seq_id s;
    if (sov_seq_new(ctx, &s)) return 0;
    const double t0 = sov_now_s();
    for (int i = 0; i < n; i++) {
        *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
        sov_token tok = (sov_token)((*rng >> 33) % (uint64_t)n_vocab);
        int32_t pos = i;
        uint8_t want = 1;
        const sov_batch b = {1, &tok, &s, &pos, &want};
        if (sov_decode(ctx, &b, logits) != SOV_OK) {
            sov_seq_free(ctx, s);
            return 0;
        }
    }
    const double rate = n / (sov_now_s() - t0);
    sov_seq_free(ctx, s);
    return rate;
}

static void json_str(FILE *f, const char *s) {
    putc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putc('\\', f);
        if ((unsigned char)*s >= 0x20) putc(*s, f);
    }
    putc('"', f);
}

int cmd_bench(int argc, char **argv) {
    const char *path = NULL, *tlist = NULL, *json_path = NULL;
    long n_pp = 512, n_tg = 128, reps = 5;
    bool json = false, bandwidth = true, bad = false;
    energy_params ep = {0, 0};
    for (int i = 1; i < argc && !bad; i++) {
        if (cli_flag(argv, &i, "--help") || cli_flag(argv, &i, "-h")) {
            help(stdout);
            return 0;
        } else if (cli_opt_str(argc, argv, &i, "-m", &path, &bad) || cli_opt_str(argc, argv, &i, "--model", &path, &bad)) {
        } else if (cli_opt_int(argc, argv, &i, "-p", &n_pp, &bad) || cli_opt_int(argc, argv, &i, "-n", &n_tg, &bad) ||
                   cli_opt_int(argc, argv, &i, "-r", &reps, &bad)) {
        } else if (cli_opt_str(argc, argv, &i, "-t", &tlist, &bad)) {
        } else if (cli_opt_float(argc, argv, &i, "--cpu-watts", &ep.cpu_watts, &bad) ||
                   cli_opt_float(argc, argv, &i, "--dram-pj-per-byte", &ep.dram_pj_per_byte, &bad)) {
        } else if (cli_opt_str(argc, argv, &i, "--json-file", &json_path, &bad)) {
        } else if (cli_flag(argv, &i, "--json")) json = true;
        else if (cli_flag(argv, &i, "--no-bandwidth")) bandwidth = false;
        else return cli_error("bench", "unknown option '%s'; see sov bench --help", argv[i]);
    }
    if (bad) return 2;
    if (!path) return cli_error("bench", "a model is required (-m MODEL.gguf); see --help");
    if (n_pp < 0 || n_tg < 0 || n_pp > 65536 || n_tg > 65536 || reps < 1 || reps > 1000)
        return cli_error("bench", "-p and -n must be 0..65536 and -r 1..1000");
    if (ep.cpu_watts < 0 || ep.cpu_watts > 10000 || ep.dram_pj_per_byte < 0 || ep.dram_pj_per_byte > 1e6)
        return cli_error("bench", "--cpu-watts must be 0..10000 and --dram-pj-per-byte 0..1000000");
    int threads[MAX_THREAD_COUNTS], n_threads = 0;
    if (tlist) {
        for (const char *p = tlist; *p && n_threads < MAX_THREAD_COUNTS;) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 1 || v > 1024) return cli_error("bench", "-t wants thread counts like 1,2 (got '%s')", tlist);
            threads[n_threads++] = (int)v;
            p = *end == ',' ? end + 1 : end;
            if (*end && *end != ',') return cli_error("bench", "-t wants thread counts like 1,2 (got '%s')", tlist);
        }
    } else {
        threads[n_threads++] = sov_physical_cores();
    }

    const double t_load = sov_now_s();
    sov_model *model;
    sov_model_params mp = sov_model_default_params();
    mp.prefault = true; /* load time includes reading every weight page */
    mp.progress = cli_progress;
    mp.progress_user = "loading";
    sov_status st = sov_model_load(path, &mp, &model);
    if (st) return cli_status_error("bench", st);
    const double load_s = sov_now_s() - t_load;
    sov_model_info info;
    sov_model_get_info(model, &info);
    const uint64_t bpt = sov_model_bytes_per_token(model);
    energy_meter meter;
    energy_meter_init(&meter, &ep, false);
    energy_model em;
    energy_model_init(&em, &info, 2);
    float *logits = malloc((size_t)info.n_vocab * sizeof(float));
    if (!logits) {
        sov_model_free(model);
        return cli_error("bench", "out of memory");
    }
    if (!json) {
        printf("model: %s | %s %s | %.1fM params | %.2f GiB | %.1f MB of weights per token | load %.2f s\n", path,
               info.arch, info.weight_type, (double)info.n_params / 1e6, (double)info.weight_bytes / (1 << 30),
               (double)bpt / 1e6, load_s);
        printf("| %-8s | %7s | %-11s | %18s | %9s | %9s | %-20s |\n", "test", "threads", "isa", "tokens/s", "bw GB/s",
               "% of bw", "J/tok");
        printf("|----------|---------|-------------|--------------------|-----------|-----------|----------------------|\n");
    }
    FILE *jf = json ? stdout : NULL;
    if (json_path && !(jf = fopen(json_path, "a"))) {
        free(logits);
        sov_model_free(model);
        return cli_error("bench", "cannot open '%s' for --json-file: %s", json_path, strerror(errno));
    }
    uint64_t rng = 42;
    int rc = 0;
    for (int ti = 0; ti < n_threads && !rc; ti++) {
        double bw = 0;
        if (bandwidth) {
            fprintf(stderr, "measuring memory bandwidth with %d threads...\n", threads[ti]);
            bw = sov_measure_read_bandwidth_isolated(threads[ti], (size_t)1 << 30);
        }
        sov_context_params cp = sov_context_default_params();
        cp.n_threads = threads[ti];
        cp.n_batch = (int32_t)SOV_MAX(n_pp, 1);
        cp.n_ctx = (int32_t)SOV_MAX(n_pp, n_tg) + 16;
        sov_context *ctx;
        if ((st = sov_context_new(model, &cp, &ctx))) {
            rc = cli_status_error("bench", st);
            break;
        }
        for (int kind = 0; kind < 2; kind++) {
            const long n = kind == 0 ? n_pp : n_tg;
            if (n == 0) continue;
            double v[1000], joules = 0;
            /* what one run reads from DRAM (the estimate): pp reads the weights once and
             * each position's keys and values about once; tg reads the weights per token and
             * the cache so far */
            const double run_bytes = kind == 0 ? (double)bpt + (double)n * em.kv_bytes_per_pos
                                               : (double)n * (double)bpt + (double)n * (n + 1) / 2 * em.kv_bytes_per_pos;
            for (int r = -1; r < reps; r++) {
                fprintf(stderr, "\r%s%ld t=%d: run %d/%ld   ", kind == 0 ? "pp" : "tg", n, threads[ti], r + 1, reps);
                energy_meter_begin(&meter);
                const double rate = kind == 0 ? run_pp(ctx, (int)n, info.n_vocab, logits, &rng)
                                              : run_tg(ctx, (int)n, info.n_vocab, logits, &rng);
                const double j = energy_meter_end(&meter, run_bytes);
                if (r >= 0) {
                    v[r] = rate;
                    joules += j;
                }
            }
            const double j_per_tok = joules / ((double)reps * (double)n);
            const char *esrc = energy_source_name(meter.source);
            fprintf(stderr, "\r%40s\r", "");
            const stats s = summarise(v, (int)reps);
            /* tg's ceiling: every weight byte read once per token at the measured bandwidth */
            const double pct = kind == 1 && bw > 0 ? 100.0 * s.mean * (double)bpt / (bw * 1e9) : 0.0;
            char test[32];
            snprintf(test, sizeof test, "%s%ld", kind == 0 ? "pp" : "tg", n);
            if (jf) {
                fprintf(jf, "{\"test\": \"%s\", \"threads\": %d, \"tokens_per_s\": %.3f, \"stddev\": %.3f, \"isa\": ",
                        test, threads[ti], s.mean, s.sd);
                json_str(jf, sov_context_isa(ctx));
                fprintf(jf, ", \"model\": ");
                json_str(jf, path);
                fprintf(jf, ", \"arch\": \"%s\", \"type\": \"%s\", \"params\": %" PRIu64 ", \"model_bytes\": %" PRIu64
                       ", \"bytes_per_token\": %" PRIu64 ", \"load_s\": %.3f, \"peak_rss_bytes\": %zu, "
                       "\"bandwidth_gbs\": %.2f, \"bandwidth_pct\": %.1f, \"repeats\": %ld, "
                       "\"joules_per_token\": %.6g, \"energy_source\": \"%s\"}\n",
                       info.arch, info.weight_type, info.n_params, info.weight_bytes, bpt, load_s, sov_peak_rss_bytes(),
                       bw, pct, reps, j_per_tok, esrc);
                fflush(jf);
            }
            if (!json) {
                char rate[40], pcts[16], jpt[40];
                snprintf(rate, sizeof rate, "%.2f ± %.2f", s.mean, s.sd);
                snprintf(pcts, sizeof pcts, kind == 1 && bw > 0 ? "%.1f%%" : "-", pct);
                snprintf(jpt, sizeof jpt, "%.3g %s", j_per_tok, esrc);
                printf("| %-8s | %7d | %-11s | %18s | %9.1f | %9s | %-20s |\n", test, threads[ti], sov_context_isa(ctx), rate,
                       bw, pcts, jpt);
            }
            fflush(stdout);
        }
        sov_context_free(ctx);
    }
    if (!json) {
        printf("peak RSS %.1f MiB\n", (double)sov_peak_rss_bytes() / (1 << 20));
        if (meter.source == ENERGY_ESTIMATED)
            printf("J/tok estimated: no readable RAPL counters; CPU time x %.3g W per busy core + %.3g pJ per DRAM "
                   "byte (docs/ENERGY.md)\n",
                   meter.p.cpu_watts, meter.p.dram_pj_per_byte);
    }
    energy_meter_close(&meter);
    if (jf && jf != stdout) fclose(jf);
    free(logits);
    sov_model_free(model);
    return rc;
}
