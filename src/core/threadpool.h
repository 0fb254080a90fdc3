/* threadpool.h - a fixed set of worker threads the forward pass reuses for every op.
 *
 * sov_pool_run(pool, fn, arg, n) runs fn(arg, i, n) on threads i = 0..n-1, the caller
 * being thread 0, and returns when all have returned. Idle workers spin briefly on a
 * generation counter (a decode issues hundreds of ops back to back) and then sleep on a
 * condition variable, so an idle server costs no CPU. Inside fn, sov_pool_barrier() waits
 * for all n threads of the job. */
#ifndef SOV_CORE_THREADPOOL_H
#define SOV_CORE_THREADPOOL_H

#include "sov.h"

typedef struct sov_pool sov_pool;
typedef void (*sov_pool_fn)(void *arg, int ith, int nth);

/* n_threads counts the caller; n_threads == 1 creates no thread. */
sov_status sov_pool_new(int n_threads, sov_pool **out);
void sov_pool_free(sov_pool *pool);
int sov_pool_size(const sov_pool *pool);
/* Runs fn on min(n, pool size) threads (n <= 0: all). */
void sov_pool_run(sov_pool *pool, sov_pool_fn fn, void *arg, int n);
/* Waits until all threads of the current job reach it. */
void sov_pool_barrier(sov_pool *pool);

/* Splits [0, n) into nth nearly equal ranges aligned to `align`; thread ith gets
 * [*begin, *end). */
static inline void sov_split_range(long n, long align, int ith, int nth, long *begin, long *end) {
    long units = (n + align - 1) / align;
    long per = units / nth, extra = units % nth;
    long b = ith * per + (ith < extra ? ith : extra);
    long e = b + per + (ith < extra ? 1 : 0);
    b *= align;
    e *= align;
    *begin = b < n ? b : n;
    *end = e < n ? e : n;
}

/* Physical cores this process may run on (hyperthread siblings counted once). */
int sov_physical_cores(void);

#endif
