/* The thread pool: every thread of a job runs, barriers order phases, jobs issued back to
 * back and after the workers fell asleep all complete, and ranges split evenly. */
#include "test.h"

#include <stdatomic.h>
#include <time.h>

#include "core/threadpool.h"

typedef struct job {
    sov_pool *pool;
    _Atomic int ran;
    int phase1[64];
    int phase2_sum[64];
} job;

static void two_phase(void *arg, int ith, int nth) {
    job *j = arg;
    atomic_fetch_add(&j->ran, 1);
    j->phase1[ith] = ith + 1;
    sov_pool_barrier(j->pool);
    /* after the barrier every thread sees every phase-1 write */
    int s = 0;
    for (int i = 0; i < nth; i++) s += j->phase1[i];
    j->phase2_sum[ith] = s;
}

static void every_thread_runs_and_barriers_order_phases(void) {
    sov_pool *p;
    CHECK_EQ(sov_pool_new(4, &p), SOV_OK);
    CHECK_EQ(sov_pool_size(p), 4);
    for (int rep = 0; rep < 2000; rep++) {
        job j = {.pool = p};
        const int n = 1 + rep % 4;
        sov_pool_run(p, two_phase, &j, n);
        CHECK_EQ(atomic_load(&j.ran), n);
        for (int i = 0; i < n; i++) CHECK_EQ(j.phase2_sum[i], n * (n + 1) / 2);
    }
    sov_pool_free(p);
}

static void sleeping_workers_wake_for_new_jobs(void) {
    sov_pool *p;
    CHECK_EQ(sov_pool_new(3, &p), SOV_OK);
    for (int rep = 0; rep < 3; rep++) {
        struct timespec ts = {0, 30 * 1000 * 1000}; /* long enough for the spin to end */
        nanosleep(&ts, NULL);
        job j = {.pool = p};
        sov_pool_run(p, two_phase, &j, 0);
        CHECK_EQ(atomic_load(&j.ran), 3);
    }
    sov_pool_free(p);
}

static void single_thread_pool_runs_inline(void) {
    sov_pool *p;
    CHECK_EQ(sov_pool_new(1, &p), SOV_OK);
    job j = {.pool = p};
    sov_pool_run(p, two_phase, &j, 0);
    CHECK_EQ(atomic_load(&j.ran), 1);
    CHECK_EQ(j.phase2_sum[0], 1);
    sov_pool_free(p);
    CHECK_EQ(sov_pool_new(0, &p), SOV_ERR_ARG);
}

static void split_range_covers_everything_once(void) {
    for (long n = 0; n < 100; n += 7)
        for (int nth = 1; nth <= 5; nth++) {
            long covered = 0, prev_end = 0;
            for (int i = 0; i < nth; i++) {
                long b, e;
                sov_split_range(n, 4, i, nth, &b, &e);
                CHECK(b == prev_end);
                CHECK(e >= b && e <= n);
                CHECK(b % 4 == 0 || b == n);
                covered += e - b;
                prev_end = e;
            }
            CHECK_EQ(covered, n);
        }
}

int main(void) {
    RUN(every_thread_runs_and_barriers_order_phases);
    RUN(sleeping_workers_wake_for_new_jobs);
    RUN(single_thread_pool_runs_inline);
    RUN(split_range_covers_everything_once);
    CHECK(sov_physical_cores() >= 1);
    TEST_EXIT();
}
