/* bench_load.c - one model load, timed: what sov_model_load costs with and without the
 * file's SHA-256 (sov_model_params.digest, the hash a signature check needs).
 *
 *   bench_load MODEL.gguf [0|1] [CACHE]   (1: with the digest; default 0; CACHE: the
 *                                         digest cache file, sov_model_params.digest_cache)
 *
 * Prints the load time in milliseconds and, with the digest, the hash and "cached" when it
 * came from the cache. One load per
 * process, so that every run maps the file afresh as sov serve does; bench/startup.sh runs
 * it interleaved with and without the digest, warm and cold. */
#include <stdio.h>
#include <stdlib.h>

#include "core/util.h"
#include "sov.h"

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: bench_load MODEL.gguf [0|1] [DIGEST-CACHE-FILE]\n");
        return 2;
    }
    sov_model_params p = sov_model_default_params();
    p.digest = argc >= 3 && atoi(argv[2]) != 0;
    p.digest_cache = argc == 4 ? argv[3] : NULL;
    const double t0 = sov_now_s();
    sov_model *m = NULL;
    const sov_status st = sov_model_load(argv[1], &p, &m);
    const double ms = (sov_now_s() - t0) * 1e3;
    if (st) {
        fprintf(stderr, "bench_load: %s\n", sov_last_error());
        return 1;
    }
    sov_model_info info;
    sov_model_get_info(m, &info);
    printf("%.0f%s%s%s\n", ms, p.digest ? " " : "", info.sha256, info.sha256_cached ? " cached" : "");
    sov_model_free(m);
    return 0;
}
