/* inspect.c - `sov inspect MODEL`: metadata and a tensor summary by type and size. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: sov inspect [--tensors] MODEL.gguf\n\n"
            "Prints the file's GGUF version, every metadata key with its type and value\n"
            "(long strings and arrays shortened), and the tensors summarised by type:\n"
            "count, parameters and bytes. --tensors lists every tensor too.\n");
}

static void human_bytes(uint64_t n, char *buf, size_t cap) {
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, cap, u ? "%.2f %s" : "%.0f %s", v, unit[u]);
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    bool list = false;
    for (int i = 1; i < argc; i++) {
        if (cli_flag(argv, &i, "--help") || cli_flag(argv, &i, "-h")) {
            help(stdout);
            return 0;
        } else if (cli_flag(argv, &i, "--tensors")) {
            list = true;
        } else if (argv[i][0] == '-' && strcmp(argv[i], "-m") != 0) {
            return cli_error("inspect", "unknown option '%s'; see sov inspect --help", argv[i]);
        } else if (strcmp(argv[i], "-m") == 0) {
            if (++i >= argc) return cli_error("inspect", "-m needs a file");
            path = argv[i];
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        help(stderr);
        return 2;
    }
    gguf_file *f;
    sov_status st = gguf_open(path, &f);
    if (st) return cli_status_error("inspect", st);

    char hb[32];
    human_bytes(f->size, hb, sizeof hb);
    printf("file:       %s (%s)\n", path, hb);
    printf("format:     GGUF v%u, alignment %" PRIu64 ", %" PRIu64 " metadata keys, %" PRIu64 " tensors\n",
           f->version, f->alignment, f->n_kv, f->n_tensors);
    printf("\nmetadata:\n");
    char val[512];
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        gguf_kv_format(kv, val, sizeof val);
        printf("  %-44s %-7s %s\n", kv->key, gguf_vtype_name(kv->type), val);
    }

    uint64_t count[SOV_TYPE_COUNT] = {0}, params[SOV_TYPE_COUNT] = {0}, bytes[SOV_TYPE_COUNT] = {0};
    uint64_t tp = 0, tb = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        count[t->type]++;
        params[t->type] += t->n_elements;
        bytes[t->type] += t->nbytes;
        tp += t->n_elements;
        tb += t->nbytes;
    }
    if (f->n_tensors) {
        printf("\ntensors by type:\n  %-8s %6s %16s %14s %s\n", "type", "count", "parameters", "bytes", "");
        for (int t = 0; t < SOV_TYPE_COUNT; t++) {
            if (!count[t]) continue;
            human_bytes(bytes[t], hb, sizeof hb);
            const sov_type_traits *tr = sov_type_info((uint32_t)t);
            printf("  %-8s %6" PRIu64 " %16" PRIu64 " %14s%s\n", sov_type_name((uint32_t)t), count[t], params[t], hb,
                   tr && tr->supported ? "" : "  (not supported by sov)");
        }
        human_bytes(tb, hb, sizeof hb);
        printf("  %-8s %6" PRIu64 " %16" PRIu64 " %14s\n", "total", f->n_tensors, tp, hb);
    }
    if (list) {
        printf("\ntensors:\n");
        for (uint64_t i = 0; i < f->n_tensors; i++) {
            const gguf_tensor *t = &f->tensors[i];
            char shape[96];
            int n = snprintf(shape, sizeof shape, "%" PRId64, t->ne[0]);
            for (uint32_t d = 1; d < t->n_dims; d++)
                n += snprintf(shape + n, sizeof shape - (size_t)n, " x %" PRId64, t->ne[d]);
            printf("  %-40s %-6s %-24s offset %" PRIu64 "\n", t->name, sov_type_name(t->type), shape,
                   f->data_offset + t->offset);
        }
    }
    gguf_close(f);
    return 0;
}
