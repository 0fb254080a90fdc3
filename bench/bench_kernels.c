/* bench_kernels.c - speed of every kernel table's dot products on one thread.
 *
 *   bench_kernels [--rows R] [--cols C] [--isa NAME] [--type NAME] [--time SECONDS]
 *
 * For each table compiled in that this CPU has (scalar, avx2, neon, ...) and each weight
 * type it has a vec_dot for, a R x C weight matrix (default 4096 x 4096) times one
 * activation row, as a decode step does it: gemm with one column, 16 rows per call (the
 * engine's tiles; vec_dot, the 1 x 1 tile, is not what decodes). Reported: GB/s of
 * weight bytes read, GFLOP/s (2 R C per product), and both as a ratio to the scalar
 * table on the same type; then the same matrix times 8 activation columns through gemm
 * (a prompt batch), in GFLOP/s and its ratio to scalar.
 *
 * Each figure is the best of repeated runs lasting --time seconds in all (default 0.3)
 * after one warm-up pass; the weight bytes are random with sane block scales (speed does
 * not depend on the values). One thread, so GB/s is what one core pulls: a matrix
 * smaller than the last-level cache (4096 x 4096 q4_0 is 9.4 MB) is read from cache
 * after the warm-up; use --rows 32768 to measure memory instead. Progress goes to
 * stderr, the table to stdout. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

static const sov_type bench_types[] = {SOV_TYPE_F32,  SOV_TYPE_F16,  SOV_TYPE_BF16, SOV_TYPE_Q4_0, SOV_TYPE_Q4_1,
                                       SOV_TYPE_Q5_0, SOV_TYPE_Q5_1, SOV_TYPE_Q8_0, SOV_TYPE_Q4_K, SOV_TYPE_Q5_K,
                                       SOV_TYPE_Q6_K, SOV_TYPE_Q4_0P, SOV_TYPE_Q8_0P};
enum { NT = sizeof bench_types / sizeof bench_types[0], BATCH = 8, MAX_TABLES = 8 };

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}
static float rng_float(void) { return (float)((rng_next() >> 40) * (1.0 / 8388608.0) - 1.0); }

static void die(const char *what) {
    fprintf(stderr, "bench_kernels: %s\n", what);
    exit(1);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory");
    return p;
}

/* One weight row of type t: random bytes, block scales set to small halves. */
static void fill_row(sov_type t, uint8_t *row, int64_t n) {
    const sov_type ft = t == SOV_TYPE_Q4_0P ? SOV_TYPE_Q4_0 : t == SOV_TYPE_Q8_0P ? SOV_TYPE_Q8_0 : t;
    const size_t size = sov_row_size(ft, n);
    if (ft == SOV_TYPE_F32) {
        for (int64_t i = 0; i < n; i++) ((float *)row)[i] = rng_float();
    } else if (ft == SOV_TYPE_F16) {
        for (int64_t i = 0; i < n; i++) ((sov_half *)row)[i] = sov_f32_to_half(rng_float());
    } else if (ft == SOV_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++) ((sov_bf16 *)row)[i] = sov_f32_to_bf16(rng_float());
    } else {
        for (size_t i = 0; i < size; i++) row[i] = (uint8_t)rng_next();
        const sov_type_traits *tr = sov_type_info(ft);
        const int64_t nb = n / tr->block_size;
        const sov_half d = sov_f32_to_half(0.01f);
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *blk = row + (size_t)b * (size_t)tr->type_size;
            /* the first half (and second, for d + m / dmin formats) is the scale, except
             * q6_K's, which is last */
            if (ft == SOV_TYPE_Q6_K) memcpy(blk + offsetof(block_q6_K, d), &d, 2);
            else memcpy(blk, &d, 2);
            if (ft == SOV_TYPE_Q4_1 || ft == SOV_TYPE_Q5_1 || ft == SOV_TYPE_Q4_K || ft == SOV_TYPE_Q5_K)
                memcpy(blk + 2, &d, 2);
        }
    }
    if (ft != t && !sov_repack_row_planar(ft, row, n)) die("out of memory");
}

typedef struct result {
    bool have;
    double gbs, gflops, gemm_gflops;
} result;

typedef struct bench {
    int64_t rows, cols;
    double budget; /* seconds per measurement */
} bench;

/* Best seconds of one pass of fn over the matrix. */
static double best_time(const bench *b, const sov_kernels *k, sov_type t, const uint8_t *W, size_t ldw,
                        const uint8_t *A, size_t lda, int nc, float *y) {
    double best = INFINITY, spent = 0.0;
    for (int pass = 0; pass < 1000 && (pass < 2 || spent < b->budget); pass++) {
        const double t0 = sov_now_s();
        /* 16 rows per call, as the matmul op walks a matrix (decode included: the gemm
         * picks its one-column tiles, several weight streams in flight) */
        for (int64_t r = 0; r < b->rows; r += 16) {
            const int nr = (int)SOV_MIN(16, b->rows - r);
            k->gemm[t](b->cols, W + (size_t)r * ldw, ldw, nr, A, lda, nc, y + r, (size_t)b->rows);
        }
        const double dt = sov_now_s() - t0;
        if (pass > 0) best = SOV_MIN(best, dt); /* pass 0 warms the caches */
        spent += dt;
    }
    return best;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_kernels [--rows R] [--cols C] [--isa NAME] [--type NAME] [--time SECONDS]\n");
    exit(2);
}

int main(int argc, char **argv) {
    bench b = {4096, 4096, 0.3};
    const char *only_isa = NULL, *only_type = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        if (!strcmp(argv[i], "--rows")) b.rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--cols")) b.cols = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--isa")) only_isa = argv[++i];
        else if (!strcmp(argv[i], "--type")) only_type = argv[++i];
        else if (!strcmp(argv[i], "--time")) b.budget = atof(argv[++i]);
        else usage();
    }
    if (b.rows < 1 || b.cols < 256 || b.cols % 256 != 0) die("--cols must be a multiple of 256, --rows >= 1");

    /* the tables to run: scalar first (the ratios' base), then every available one */
    const sov_kernels *tables[MAX_TABLES];
    int ntab = 0;
    for (const char *const *name = sov_kernels_names(); *name && ntab < MAX_TABLES; name++) {
        const sov_kernels *k = sov_kernels_by_name(*name);
        if (!k) {
            fprintf(stderr, "SKIP %s: this CPU lacks it (or it is not built for this architecture)\n", *name);
            continue;
        }
        if (k == &sov_kernels_scalar || !only_isa || !strcmp(only_isa, k->isa)) tables[ntab++] = k;
    }

    const int64_t R = b.rows, C = b.cols;
    float *x = xmalloc((size_t)(C * BATCH) * sizeof *x);
    for (int64_t i = 0; i < C * BATCH; i++) x[i] = rng_float();
    float *y = xmalloc((size_t)(R * BATCH) * sizeof *y);
    static result res[MAX_TABLES][NT];
    int done = 0;

    printf("kernel speed, one thread, %lld x %lld weights (best of %.2f s per figure; batch = %d columns via gemm)\n",
           (long long)R, (long long)C, b.budget, BATCH);
    printf("%-13s %-6s %9s %9s %9s %14s %9s\n", "isa", "type", "GB/s", "GFLOP/s", "x scalar", "batch GFLOP/s",
           "x scalar");
    for (int ti = 0; ti < NT; ti++) {
        const sov_type t = bench_types[ti];
        if (only_type && strcasecmp(only_type, sov_type_name(t)) != 0) continue;
        const sov_type at = sov_type_info(t)->act_type;
        const size_t ldw = sov_row_size(t, C);
        const size_t lda = at == SOV_TYPE_F32 ? (size_t)C * sizeof(float) : sov_row_size(at, C);
        uint8_t *W = xmalloc(ldw * (size_t)R), *A = xmalloc(lda * BATCH);
        for (int64_t r = 0; r < R; r++) fill_row(t, W + (size_t)r * ldw, C);
        for (int ti2 = 0; ti2 < ntab; ti2++) {
            const sov_kernels *k = tables[ti2];
            if (!k->vec_dot[t] || !k->gemm[t]) continue;
            for (int c = 0; c < BATCH; c++) {
                const float *xc = x + (size_t)c * (size_t)C;
                uint8_t *ac = A + (size_t)c * lda;
                if (at == SOV_TYPE_F32) memcpy(ac, xc, lda);
                else if (at == SOV_TYPE_Q8A) k->quantize_q8a(xc, ac, C);
                else if (at == SOV_TYPE_Q8K) k->quantize_q8k(xc, ac, C);
                else k->quantize_q8p(xc, ac, C);
            }
            fprintf(stderr, "\r[%d/%d] %s %s ...   ", ++done, NT * ntab, k->isa, sov_type_name(t));
            fflush(stderr);
            const double t1 = best_time(&b, k, t, W, ldw, A, lda, 1, y);
            const double tb = best_time(&b, k, t, W, ldw, A, lda, BATCH, y);
            const double flop = 2.0 * (double)R * (double)C;
            res[ti2][ti] = (result){true, (double)ldw * (double)R / t1 * 1e-9, flop / t1 * 1e-9,
                                    flop * BATCH / tb * 1e-9};
            const result *r = &res[ti2][ti], *s = &res[0][ti];
            fprintf(stderr, "\r%-40s\r", "");
            printf("%-13s %-6s %9.2f %9.2f %9.2f %14.2f %9.2f\n", k->isa, sov_type_name(t), r->gbs, r->gflops,
                   s->have ? r->gflops / s->gflops : NAN, r->gemm_gflops,
                   s->have ? r->gemm_gflops / s->gemm_gflops : NAN);
            fflush(stdout);
        }
        free(W);
        free(A);
    }
    free(x);
    free(y);
    return 0;
}
