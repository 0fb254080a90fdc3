/* bandwidth.c - the machine's memory read bandwidth, measured: several threads stream
 * through a buffer much larger than the last-level cache and sum it. Decode speed is
 * bounded by how fast the weights can be read, so benchmarks print tokens/s as a share
 * of this ceiling. */
#include "core/bandwidth.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/util.h"

typedef struct bw_job {
    const uint64_t *data;
    size_t n;             /* uint64 words in this thread's slice */
    int passes;
    uint64_t sum;
    pthread_barrier_t *start;
    double seconds;
} bw_job;

#if defined(__x86_64__)
#include <immintrin.h>
/* 256-bit loads where the CPU has them: a scalar loop cannot saturate a modern memory
 * system from one core, so the plain loop would understate the ceiling */
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint64_t *d, size_t n, int passes) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (int p = 0; p < passes; p++)
        for (size_t i = 0; i + 16 <= n; i += 16) {
            a0 = _mm256_xor_si256(a0, _mm256_loadu_si256((const __m256i *)(d + i)));
            a1 = _mm256_xor_si256(a1, _mm256_loadu_si256((const __m256i *)(d + i + 4)));
            a2 = _mm256_xor_si256(a2, _mm256_loadu_si256((const __m256i *)(d + i + 8)));
            a3 = _mm256_xor_si256(a3, _mm256_loadu_si256((const __m256i *)(d + i + 12)));
        }
    a0 = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    return (uint64_t)_mm256_extract_epi64(a0, 0) ^ (uint64_t)_mm256_extract_epi64(a0, 3);
}
#endif

static void *bw_thread(void *arg) {
    bw_job *j = arg;
    pthread_barrier_wait(j->start);
    const double t0 = sov_now_s();
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
        j->sum = read_avx2(j->data, j->n, j->passes);
        j->seconds = sov_now_s() - t0;
        return NULL;
    }
#endif
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (int p = 0; p < j->passes; p++) {
        const uint64_t *d = j->data;
        for (size_t i = 0; i + 8 <= j->n; i += 8) {
            s0 += d[i];
            s1 += d[i + 1];
            s2 += d[i + 2];
            s3 += d[i + 3];
            s4 += d[i + 4];
            s5 += d[i + 5];
            s6 += d[i + 6];
            s7 += d[i + 7];
        }
    }
    j->seconds = sov_now_s() - t0;
    j->sum = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
    return NULL;
}

double sov_measure_read_bandwidth(int threads, size_t bytes) {
    if (threads < 1) threads = 1;
    if (bytes < ((size_t)64 << 20)) bytes = (size_t)64 << 20;
    const size_t words = bytes / 8;
    uint64_t *buf = malloc(words * 8);
    bw_job *jobs = calloc((size_t)threads, sizeof *jobs);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    if (!buf || !jobs || !tid) {
        free(buf);
        free(jobs);
        free(tid);
        return 0.0;
    }
    for (size_t i = 0; i < words; i++) buf[i] = i; /* touch every page */
    double best = 0.0;
    for (int rep = 0; rep < 5; rep++) {
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, (unsigned)threads);
        const size_t per = words / (size_t)threads / 8 * 8;
        for (int t = 0; t < threads; t++) {
            jobs[t] = (bw_job){buf + (size_t)t * per, per, 2, 0, &start, 0.0};
            pthread_create(&tid[t], NULL, bw_thread, &jobs[t]);
        }
        double slowest = 0.0;
        uint64_t sink = 0;
        for (int t = 0; t < threads; t++) {
            pthread_join(tid[t], NULL);
            slowest = SOV_MAX(slowest, jobs[t].seconds);
            sink ^= jobs[t].sum;
        }
        pthread_barrier_destroy(&start);
        const double gbs = slowest > 0 ? (double)(per * 8 * (size_t)threads * 2) / slowest / 1e9 : 0.0;
        if (gbs > best && sink != 1) best = gbs;
    }
    free(buf);
    free(jobs);
    free(tid);
    return best;
}

size_t sov_peak_rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kb = (size_t)strtoull(line + 6, NULL, 10);
    fclose(f);
    return kb * 1024;
}

size_t sov_current_rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = (size_t)strtoull(line + 6, NULL, 10);
    fclose(f);
    return kb * 1024;
}

double sov_measure_read_bandwidth_isolated(int threads, size_t bytes) {
    int fd[2];
    if (pipe(fd) != 0) return 0.0;
    const pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return 0.0;
    }
    if (pid == 0) {
        close(fd[0]);
        const double gbs = sov_measure_read_bandwidth(threads, bytes);
        ssize_t w = write(fd[1], &gbs, sizeof gbs);
        _exit(w == (ssize_t)sizeof gbs ? 0 : 1);
    }
    close(fd[1]);
    double gbs = 0.0;
    if (read(fd[0], &gbs, sizeof gbs) != (ssize_t)sizeof gbs) gbs = 0.0;
    close(fd[0]);
    waitpid(pid, NULL, 0);
    return gbs;
}
