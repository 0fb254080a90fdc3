/* quantize.c - `sov quantize IN.gguf OUT.gguf TYPE`: rewrites a model's weight matrices
 * in a smaller type, so users trade quality for speed and memory themselves.
 *
 * Plain types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, F16, BF16) apply to every
 * 2-D weight. The mixes follow the recipe llama.cpp made common, which keeps the tensors
 * that hurt most when squeezed a step higher:
 *   Q4_K_M / Q5_K_M: output.weight Q6_K; attn_v and ffn_down Q6_K in the first and last
 *     eighth of the layers and every third layer between; everything else Q4_K / Q5_K.
 *   Q4_K_S / Q5_K_S: output.weight Q6_K, everything else Q4_K / Q5_K.
 * A row length the chosen k-quant cannot hold (not a multiple of 256) falls back to the
 * nearest 32-block type (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0). Norms, biases and
 * other 1-D tensors stay as they are. Rows are quantized in parallel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "core/threadpool.h"
#include "core/util.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

typedef enum { MIX_NONE, MIX_K_M, MIX_K_S } mix_kind;

typedef struct plan {
    const gguf_file *src;
    uint32_t *type;      /* [n_tensors] output type */
    int n_threads;
    bool failed;
} plan;

static void help(FILE *f) {
    fprintf(f,
            "usage: sov quantize [--allow-requantize] [-t THREADS] IN.gguf OUT.gguf TYPE\n\n"
            "Writes IN's weights in TYPE: Q8_0, Q6_K, Q5_K_M, Q5_K_S, Q5_K, Q5_1, Q5_0, Q4_K_M,\n"
            "Q4_K_S, Q4_K, Q4_1, Q4_0, BF16 or F16 (smaller is faster and less exact). The input\n"
            "should be F32, F16 or BF16; --allow-requantize accepts already quantized input\n"
            "(quality drops twice). Metadata is kept; general.file_type is updated.\n");
}

/* llama.cpp's rule for the layers that get more bits in the _M mixes */
static bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static int layer_of(const char *name) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    return atoi(name + 4);
}

static uint32_t fallback(uint32_t t, int64_t row) {
    const sov_type_traits *tr = sov_type_info(t);
    if (row % tr->block_size == 0) return t;
    if (t == SOV_TYPE_Q4_K) return row % 32 == 0 ? SOV_TYPE_Q5_0 : SOV_TYPE_F16;
    if (t == SOV_TYPE_Q5_K) return row % 32 == 0 ? SOV_TYPE_Q5_1 : SOV_TYPE_F16;
    if (t == SOV_TYPE_Q6_K) return row % 32 == 0 ? SOV_TYPE_Q8_0 : SOV_TYPE_F16;
    return SOV_TYPE_F16;
}

static uint32_t choose(const gguf_tensor *t, uint32_t base, mix_kind mix, int n_layer) {
    if (t->n_dims < 2) return t->type; /* norms, biases, rope factors */
    uint32_t want = base;
    if (mix != MIX_NONE) {
        if (strcmp(t->name, "output.weight") == 0) want = SOV_TYPE_Q6_K;
        else if (mix == MIX_K_M && (strstr(t->name, "attn_v.weight") || strstr(t->name, "ffn_down.weight")) &&
                 more_bits(layer_of(t->name), n_layer))
            want = SOV_TYPE_Q6_K;
    }
    return fallback(want, t->ne[0]);
}

/* llama.cpp's general.file_type numbering */
static uint32_t file_type(uint32_t base, mix_kind mix) {
    if (mix == MIX_K_M) return base == SOV_TYPE_Q4_K ? 15 : 17;
    if (mix == MIX_K_S) return base == SOV_TYPE_Q4_K ? 14 : 16;
    switch (base) {
    case SOV_TYPE_F16: return 1;
    case SOV_TYPE_Q4_0: return 2;
    case SOV_TYPE_Q4_1: return 3;
    case SOV_TYPE_Q8_0: return 7;
    case SOV_TYPE_Q5_0: return 8;
    case SOV_TYPE_Q5_1: return 9;
    case SOV_TYPE_Q4_K: return 15;
    case SOV_TYPE_Q5_K: return 17;
    case SOV_TYPE_Q6_K: return 18;
    case SOV_TYPE_BF16: return 32;
    default: return 0;
    }
}

typedef struct fill_job {
    const gguf_tensor *t;
    uint32_t out_type;
    uint8_t *dst;
    size_t out_row;
    bool ok;
} fill_job;

static void fill_rows(void *arg, int ith, int nth) {
    fill_job *j = arg;
    const gguf_tensor *t = j->t;
    const int64_t n = t->ne[0], rows = (int64_t)(t->n_elements / (uint64_t)(n ? n : 1));
    const size_t in_row = sov_row_size((sov_type)t->type, n);
    float *buf = malloc((size_t)n * sizeof *buf);
    if (!buf) {
        j->ok = false;
        return;
    }
    long b, e;
    sov_split_range(rows, 1, ith, nth, &b, &e);
    for (long r = b; r < e; r++) {
        sov_dequantize_row((sov_type)t->type, (const char *)t->data + (size_t)r * in_row, buf, n);
        if (!sov_quantize_row((sov_type)j->out_type, buf, j->dst + (size_t)r * j->out_row, n)) j->ok = false;
    }
    free(buf);
}

typedef struct writer_ctx {
    const gguf_file *src;
    const uint32_t *types;
    sov_pool *pool;
} writer_ctx;

static bool fill(void *user, int index, void *dst, size_t nbytes) {
    writer_ctx *w = user;
    const gguf_tensor *t = &w->src->tensors[index];
    if (w->types[index] == t->type) {
        memcpy(dst, t->data, nbytes);
        return true;
    }
    fill_job job = {t, w->types[index], dst, sov_row_size((sov_type)w->types[index], t->ne[0]), true};
    sov_pool_run(w->pool, fill_rows, &job, 0);
    return job.ok;
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {0};
    int n_pos = 0;
    bool requant = false, bad = false;
    long threads = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (cli_flag(argv, &i, "--help") || cli_flag(argv, &i, "-h")) {
            help(stdout);
            return 0;
        } else if (cli_flag(argv, &i, "--allow-requantize")) {
            requant = true;
        } else if (cli_opt_int(argc, argv, &i, "-t", &threads, &bad)) {
        } else if (argv[i][0] == '-') {
            return cli_error("quantize", "unknown option '%s'; see sov quantize --help", argv[i]);
        } else if (n_pos < 3) {
            pos[n_pos++] = argv[i];
        } else {
            return cli_error("quantize", "too many arguments; see sov quantize --help");
        }
    }
    if (bad) return 2;
    if (n_pos != 3) {
        help(stderr);
        return 2;
    }
    mix_kind mix = MIX_NONE;
    uint32_t base;
    const char *tn = pos[2];
    if (!strcasecmp(tn, "Q4_K_M") || !strcasecmp(tn, "Q5_K_M")) {
        mix = MIX_K_M;
        base = tn[1] == '4' ? SOV_TYPE_Q4_K : SOV_TYPE_Q5_K;
    } else if (!strcasecmp(tn, "Q4_K_S") || !strcasecmp(tn, "Q5_K_S")) {
        mix = MIX_K_S;
        base = tn[1] == '4' ? SOV_TYPE_Q4_K : SOV_TYPE_Q5_K;
    } else {
        const int t = sov_type_from_name(tn);
        const sov_type_traits *tr = t >= 0 ? sov_type_info((uint32_t)t) : NULL;
        if (!tr || !tr->supported || t == SOV_TYPE_F32)
            return cli_error("quantize", "unknown target type '%s'; see sov quantize --help for the list", tn);
        base = (uint32_t)t;
    }

    gguf_file *src;
    sov_status st = gguf_open(pos[0], &src);
    if (st) return cli_status_error("quantize", st);
    int32_t n_layer = 0;
    char arch[32] = "", key[64];
    if (gguf_get_cstr(src, "general.architecture", arch, sizeof arch)) {
        snprintf(key, sizeof key, "%s.block_count", arch);
        gguf_get_i32(src, key, &n_layer);
    }
    uint32_t *types = calloc(src->n_tensors ? src->n_tensors : 1, sizeof *types);
    gguf_writer *w = gguf_writer_new();
    int rc = 0;
    if (!types || !w) {
        rc = cli_error("quantize", "out of memory");
        goto done;
    }
    uint64_t in_bytes = 0, out_bytes = 0, n_elements = 0;
    for (uint64_t i = 0; i < src->n_tensors && !rc; i++) {
        const gguf_tensor *t = &src->tensors[i];
        const sov_type_traits *tr = sov_type_info(t->type);
        types[i] = choose(t, base, mix, n_layer);
        if (types[i] != t->type) {
            const bool float_in = t->type == SOV_TYPE_F32 || t->type == SOV_TYPE_F16 || t->type == SOV_TYPE_BF16;
            if (!tr || !tr->supported)
                rc = cli_error("quantize", "tensor '%s' has type %s, which sov cannot read", t->name, sov_type_name(t->type));
            else if (!float_in && !requant)
                rc = cli_error("quantize", "tensor '%s' is already %s; start from an F32/F16/BF16 file, or pass "
                                           "--allow-requantize", t->name, sov_type_name(t->type));
        }
        gguf_add_tensor(w, t->name, types[i], t->n_dims, t->ne);
        in_bytes += t->nbytes;
        n_elements += t->n_elements;
        out_bytes += sov_row_size((sov_type)types[i], t->ne[0]) * (t->n_elements / (uint64_t)(t->ne[0] ? t->ne[0] : 1));
    }
    if (rc) goto done;
    gguf_copy_kv(w, src);
    gguf_set_u32(w, "general.file_type", file_type(base, mix));
    gguf_set_u32(w, "general.quantization_version", 2);
    sov_pool *pool = NULL;
    if ((st = sov_pool_new((int)(threads > 0 ? threads : sov_physical_cores()), &pool))) {
        rc = cli_status_error("quantize", st);
        goto done;
    }
    writer_ctx ctx = {src, types, pool};
    fprintf(stderr, "quantizing %s (%.1f MiB) to %s\n", pos[0], (double)in_bytes / (1 << 20), tn);
    st = gguf_writer_write(w, pos[1], fill, &ctx, cli_progress, "quantizing");
    sov_pool_free(pool);
    if (st) {
        rc = cli_status_error("quantize", st);
        goto done;
    }
    fprintf(stderr, "wrote %s: %.1f MiB, %.2f bits per weight\n", pos[1], (double)out_bytes / (1 << 20),
            8.0 * (double)out_bytes / (double)SOV_MAX(n_elements, (uint64_t)1));
done:
    gguf_writer_free(w);
    free(types);
    gguf_close(src);
    return rc;
}
