/* bench_attn.c - speed of the tiled attention over the paged KV cache (kernels/attn_tiled.h)
 * on one thread, per kernel table and KV cache type.
 *
 *   bench_attn [--positions N] [--dim D] [--isa NAME] [--time SECONDS]
 *
 * One KV head's cache of N positions (default 4096) in blocks of 16, head size D (default
 * 64), read by rep query heads sharing it (GQA ratios 1, 3, 7 and 8: MHA, SmolLM2, Qwen2.5,
 * TinyLlama/Llama): the work of one (layer, KV head) of a decode step at depth N, and of
 * a prompt's token there with 4 tokens in one pass (kv_attn_run's row ends, as op_attention
 * groups a prompt's tokens). Reported: nanoseconds per cached position and GFLOP/s (scores
 * and values, 4 rep D flops per position). A decode step of a model costs about
 * n_layer x n_head_kv x this x the depth; compare with its weights' time per token
 * (docs/PERFORMANCE.md, "Long contexts"). Best of repeated runs lasting --time seconds
 * (default 0.3); the cache stays in L2/L3 at the default size, as one head's share of it
 * does between the steps that read it. Progress to stderr, the table to stdout. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "kernels/attn_tiled.h"
#include "kernels/kernels.h"

enum { BS = 16, GROUP = 4, MAX_ROWS = 8 * GROUP };

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static float rnd(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (float)((rng_state * 2685821657736338717ULL) >> 40) / (float)(1 << 24) - 0.5f;
}

static size_t row_bytes(sov_kv_type t, int d) {
    const int g = d < 32 ? d : 32;
    switch (t) {
    case SOV_KV_F32: return 4 * (size_t)d;
    case SOV_KV_Q8_0: return (size_t)(d / g) * (2 + (size_t)g);
    case SOV_KV_Q4_0: return (size_t)(d / g) * (2 + (size_t)g / 2);
    default: return 2 * (size_t)d;
    }
}

static const char *type_name(sov_kv_type t) {
    return t == SOV_KV_F32 ? "f32" : t == SOV_KV_Q8_0 ? "q8_0" : t == SOV_KV_Q4_0 ? "q4_0" : "f16";
}

/* ns per position of kv_attn_run over n positions for rows query rows (row ends at the
 * last `tokens` positions when tokens > 1), best of the runs in budget seconds */
static double time_run(const sov_kernels *k, const sov_kv *kv, const int32_t *blocks, int n, const float *q,
                       int rows, int tokens, float *scratch, float *state, float *out, double budget) {
    int32_t ends[MAX_ROWS];
    const int rep = rows / tokens;
    for (int r = 0; r < rows; r++) ends[r] = n - tokens + 1 + r / rep;
    double best = INFINITY, spent = 0;
    for (int round = 0; round < 2 || spent < budget; round++) {
        const double t0 = sov_now_s();
        kv_attn_state_init(state, rows, kv->head_dim);
        kv_attn_run(k, kv, 0, 0, blocks, 0, n, q, rows, tokens > 1 ? ends : NULL, 1.0f / 8.0f, scratch, state);
        kv_attn_merge(state, 1, rows, kv->head_dim, out);
        const double dt = sov_now_s() - t0;
        if (round > 0) best = fmin(best, dt); /* the first one warms the caches */
        spent += dt;
    }
    return best * 1e9 / n;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_attn [--positions N] [--dim D] [--isa NAME] [--kv f16|f32|q8_0|q4_0] [--rep N]\n"
                    "                  [--time SECONDS]\n");
    exit(2);
}

int main(int argc, char **argv) {
    int n = 4096, d = 64;
    double budget = 0.3;
    const char *only_isa = NULL, *only_kv = NULL;
    int only_rep = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) usage();
        if (i + 1 >= argc) usage();
        if (!strcmp(argv[i], "--positions")) n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dim")) d = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--isa")) only_isa = argv[++i];
        else if (!strcmp(argv[i], "--time")) budget = atof(argv[++i]);
        else if (!strcmp(argv[i], "--kv")) only_kv = argv[++i];
        else if (!strcmp(argv[i], "--rep")) only_rep = atoi(argv[++i]);
        else usage();
    }
    if (n < GROUP || n > (1 << 20) || d < 16 || d > 256 || d % 16 != 0 || !(budget > 0)) {
        fprintf(stderr, "bench_attn: --positions must be 4..1048576, --dim a multiple of 16 up to 256\n");
        return 2;
    }
    static const int reps[] = {1, 3, 7, 8};
    static const sov_kv_type types[] = {SOV_KV_F16, SOV_KV_F32, SOV_KV_Q8_0, SOV_KV_Q4_0};
    const int nb = (n + BS - 1) / BS;
    int32_t *blocks = malloc((size_t)nb * sizeof *blocks);
    float *q = malloc((size_t)MAX_ROWS * d * sizeof *q), *out = malloc((size_t)MAX_ROWS * d * sizeof *out);
    float *kx = malloc(2 * (size_t)d * sizeof *kx);
    if (!blocks || !q || !out || !kx) return 1;
    for (int i = 0; i < nb; i++) blocks[i] = (int32_t)((i * 7919L) % nb); /* scattered, as a pool's are */
    for (int i = 0; i < MAX_ROWS * d; i++) q[i] = rnd();
    printf("attention, one thread, one KV head: %d cached positions, head %d, blocks of %d "
           "(ns per position; GFLOP/s)\n",
           n, d, BS);
    printf("%-12s %-5s %4s %22s %26s\n", "isa", "kv", "rep", "decode: ns/pos  GFLOP/s", "prompt x4: ns/pos  GFLOP/s");
    for (const char *const *name = sov_kernels_names(); *name; name++) {
        const sov_kernels *k = sov_kernels_by_name(*name);
        if (!k || (only_isa && strcmp(only_isa, *name) != 0)) continue;
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            if (only_kv && strcmp(only_kv, type_name(types[ti])) != 0) continue;
            sov_kv kv;
            memset(&kv, 0, sizeof kv);
            kv.n_layer = 1;
            kv.n_head_kv = 1;
            kv.head_dim = d;
            kv.block_size = BS;
            kv.n_blocks = nb;
            kv.type = kv.v_type = types[ti];
            kv.group = d < 32 ? d : 32;
            kv.k_transposed = types[ti] == SOV_KV_F16 || types[ti] == SOV_KV_F32;
            kv.k_row = kv.v_row = row_bytes(types[ti], d);
            kv.head_bytes = kv.v_head_bytes = (size_t)BS * kv.k_row;
            kv.block_bytes = kv.head_bytes;
            kv.v_block_bytes = kv.v_head_bytes;
            kv.map_bytes = kv.v_map_bytes = kv.block_bytes * (size_t)nb;
            kv.k = calloc(1, kv.map_bytes);
            kv.v = calloc(1, kv.v_map_bytes);
            float *scratch = malloc(kv_attn_scratch_floats(&kv, MAX_ROWS) * sizeof *scratch);
            float *state = malloc(kv_attn_state_floats(MAX_ROWS, d) * sizeof *state);
            if (!kv.k || !kv.v || !scratch || !state) return 1;
            for (int j = 0; j < n; j++) {
                for (int i = 0; i < 2 * d; i++) kx[i] = rnd();
                kv_attn_store(k, &kv, 0, blocks[j / BS], j % BS, 0, kx, kx + d);
            }
            for (size_t ri = 0; ri < sizeof reps / sizeof reps[0]; ri++) {
                const int rep = reps[ri];
                if (only_rep && rep != only_rep) continue;
                fprintf(stderr, "\r%s %s rep %d ...   ", *name, type_name(types[ti]), rep);
                const double dec = time_run(k, &kv, blocks, n, q, rep, 1, scratch, state, out, budget);
                const double pr =
                    time_run(k, &kv, blocks, n, q, rep * GROUP, GROUP, scratch, state, out, budget) / GROUP;
                fprintf(stderr, "\r%40s\r", "");
                printf("%-12s %-5s %4d %14.2f %8.1f %18.2f %8.1f\n", k->isa, type_name(types[ti]), rep, dec,
                       4.0 * rep * d / dec, pr, 4.0 * rep * d / pr);
            }
            free(kv.k);
            free(kv.v);
            free(scratch);
            free(state);
        }
    }
    free(blocks);
    free(q);
    free(out);
    free(kx);
    return 0;
}
