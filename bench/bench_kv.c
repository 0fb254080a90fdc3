/* bench_kv.c - what the KV cache's hygiene costs (src/kv/kv.c): zeroing a block when its
 * last reference goes, and a copy on write that carries only the shared positions.
 *
 *   bench_kv [--blocks N] [--time SECONDS]
 *
 * For the shapes of the benchmark models (TinyLlama 1.1B: 22 layers, 4 KV heads of 64;
 * the 134M model: 12 layers, 12 KV heads of 64) in float16 and float32, a pool of N blocks
 * (default 1024: larger than the caches, as a busy server's pool is) is filled, then every
 * block is released (zeroed) and allocated again, round after round for --time seconds
 * (default 0.5). Reported: microseconds per released block, GB/s zeroed, and the time to
 * release a whole 4096-token sequence — which happens once, at the end of a request, on
 * the engine thread between two steps. Compare with `sov bench`'s time per generated token
 * (docs/SANDBOX.md has the figures). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "kv/kv.h"

typedef struct shape {
    const char *name;
    int32_t n_layer, n_head_kv, head_dim;
} shape;

/* Microseconds per kv_release that frees a block (which zeroes it). */
static double release_us(sov_kv *kv, double seconds) {
    int64_t released = 0;
    double spent = 0;
    for (int round = 0; round == 0 || spent < seconds; round++) {
        for (int32_t b = 0; b < kv->n_blocks; b++) { /* a request wrote every block */
            kv->k[(size_t)b * kv->block_bytes] = 1;
            kv->v[(size_t)b * kv->block_bytes] = 1;
        }
        const double t0 = sov_now_s();
        for (int32_t b = 0; b < kv->n_blocks; b++)
            kv_release(kv, b);
        if (round > 0) { /* the first round faults the pages in: a warm-up */
            spent += sov_now_s() - t0;
            released += kv->n_blocks;
        }
        for (int32_t b = 0; b < kv->n_blocks; b++)
            (void)kv_alloc(kv);
    }
    return spent * 1e6 / (double)released;
}

int main(int argc, char **argv) {
    int32_t n_blocks = 1024;
    double seconds = 0.5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--blocks") == 0 && i + 1 < argc)
            n_blocks = atoi(argv[++i]);
        else if (strcmp(argv[i], "--time") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_kv [--blocks N] [--time SECONDS]\n");
            return 2;
        }
    }
    const shape shapes[] = {{"tinyllama-1.1b", 22, 4, 64}, {"llama-134m", 12, 12, 64}};
    printf("%-16s %-4s %12s %10s %12s %22s\n", "shape", "kv", "block bytes", "us/block", "GB/s",
           "4096-token sequence");
    for (size_t s = 0; s < SOV_ARRAY_LEN(shapes); s++) {
        for (int f32 = 0; f32 < 2; f32++) {
            sov_kv kv;
            if (kv_init(&kv, shapes[s].n_layer, shapes[s].n_head_kv, shapes[s].head_dim, 16, n_blocks,
                        f32 ? SOV_KV_F32 : SOV_KV_F16) != SOV_OK) {
                fprintf(stderr, "bench_kv: cannot map the pool\n");
                return 1;
            }
            for (int32_t b = 0; b < n_blocks; b++)
                (void)kv_alloc(&kv);
            const double us = release_us(&kv, seconds);
            const double bytes = 2.0 * (double)kv.block_bytes;
            printf("%-16s %-4s %12.0f %10.1f %12.1f %19.2f ms\n", shapes[s].name, f32 ? "f32" : "f16", bytes,
                   us, bytes / us * 1e-3, us * 4096 / 16 * 1e-3);
            kv_destroy(&kv);
        }
    }
    return 0;
}
