/* threadpool.c - persistent workers with spin-then-sleep waiting.
 *
 * A job is published by storing fn/arg/n and then bumping `gen` (release). Workers
 * watch `gen`: they spin for a while (each spin a pause instruction), then sleep on
 * `cv`. The caller wakes sleepers only when `n_sleeping` says there are some; gen and
 * n_sleeping are sequentially consistent so that a worker going to sleep and a caller
 * publishing a job can never both miss each other (the worker re-checks gen under the
 * mutex the caller takes before broadcasting). Completion is a countdown the caller
 * spins on. */
#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

enum { SPIN_ROUNDS = 1 << 17 }; /* roughly 0.5-5 ms of pause instructions */

/* Busy-waiting for other threads of a job: pause, and every 1024 rounds yield the CPU, so
 * a job still finishes promptly when the machine has more runnable threads than cores. */
static inline void spin_wait_step(unsigned *round) {
    if ((++*round & 1023u) == 0) sched_yield();
    else cpu_relax();
}

typedef struct worker {
    sov_pool *pool;
    int index;
} worker;

struct sov_pool {
    int n_threads;
    pthread_t *threads;
    worker *workers;
    /* current job */
    sov_pool_fn fn;
    void *arg;
    int n_active;
    _Atomic unsigned gen;
    _Atomic int pending;
    _Atomic bool stop;
    /* sleeping */
    _Atomic int n_sleeping;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* barrier inside a job */
    _Atomic int barrier_count;
    _Atomic unsigned barrier_phase;
};

static unsigned wait_for_job(sov_pool *p, unsigned seen) {
    /* yielding now and then lets a thread that shares the cores run at once (the server's
     * HTTP thread, whose write of a streamed token otherwise waited for the scheduler
     * to preempt this spinner: ~4 ms per token) */
    for (unsigned i = 0; i < SPIN_ROUNDS;) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen) return g;
        spin_wait_step(&i);
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->n_sleeping, 1);
    unsigned g;
    while ((g = atomic_load(&p->gen)) == seen) pthread_cond_wait(&p->cv, &p->mu);
    atomic_fetch_sub(&p->n_sleeping, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    sov_pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_job(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        if (w->index < p->n_active) p->fn(p->arg, w->index, p->n_active);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
    return NULL;
}

sov_status sov_pool_new(int n_threads, sov_pool **out) {
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024)
        return sov_fail(SOV_ERR_ARG, "threads: %d is outside 1..1024", n_threads);
    sov_pool *p = calloc(1, sizeof *p);
    if (!p) return sov_fail(SOV_ERR_NOMEM, "threads: out of memory");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads, sizeof *p->threads);
        p->workers = calloc((size_t)n_threads, sizeof *p->workers);
        if (!p->threads || !p->workers) {
            sov_pool_free(p);
            return sov_fail(SOV_ERR_NOMEM, "threads: out of memory");
        }
        for (int i = 1; i < n_threads; i++) {
            p->workers[i] = (worker){p, i};
            if (pthread_create(&p->threads[i], NULL, worker_main, &p->workers[i]) != 0) {
                p->n_threads = i; /* join only those started */
                sov_pool_free(p);
                return sov_fail(SOV_ERR_NOMEM, "threads: cannot start worker thread %d", i);
            }
        }
    }
    *out = p;
    return SOV_OK;
}

void sov_pool_free(sov_pool *p) {
    if (!p) return;
    if (p->n_threads > 1 && p->threads) {
        atomic_store(&p->stop, true);
        pthread_mutex_lock(&p->mu);
        atomic_fetch_add(&p->gen, 1);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p->workers);
    free(p);
}

int sov_pool_size(const sov_pool *p) { return p ? p->n_threads : 1; }

void sov_pool_run(sov_pool *p, sov_pool_fn fn, void *arg, int n) {
    if (!p || p->n_threads == 1 || n == 1) {
        if (p) p->n_active = 1; /* barriers inside fn must not wait for anyone */
        fn(arg, 0, 1);
        return;
    }
    if (n <= 0 || n > p->n_threads) n = p->n_threads;
    p->fn = fn;
    p->arg = arg;
    p->n_active = n;
    atomic_store_explicit(&p->barrier_count, 0, memory_order_relaxed);
    atomic_store(&p->pending, p->n_threads - 1);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: publishes the job */
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, n);
    unsigned round = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) spin_wait_step(&round);
}

void sov_pool_barrier(sov_pool *p) {
    if (!p || p->n_threads == 1 || p->n_active <= 1) return;
    const unsigned phase = atomic_load_explicit(&p->barrier_phase, memory_order_acquire);
    if (atomic_fetch_add_explicit(&p->barrier_count, 1, memory_order_acq_rel) == p->n_active - 1) {
        atomic_store_explicit(&p->barrier_count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->barrier_phase, 1, memory_order_release);
        return;
    }
    unsigned round = 0;
    while (atomic_load_explicit(&p->barrier_phase, memory_order_acquire) == phase) spin_wait_step(&round);
}

int sov_physical_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    /* Count CPUs whose first listed hyperthread sibling is themselves. */
    int cores = 0, cpus = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &set)) continue;
        cpus++;
        char path[128], buf[64] = {0};
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list", cpu);
        FILE *f = fopen(path, "r");
        if (!f) {
            cores++;
            continue;
        }
        if (!fgets(buf, sizeof buf, f)) buf[0] = '\0';
        fclose(f);
        int first = atoi(buf);
        if (first == cpu || !CPU_ISSET(first, &set)) cores++;
    }
    if (cores < 1) cores = cpus > 0 ? cpus : 1;
    return cores;
}
