/* bandwidth.h - measuring the memory read bandwidth and the process's resident memory. */
#ifndef SOV_CORE_BANDWIDTH_H
#define SOV_CORE_BANDWIDTH_H

#include <stddef.h>
#include <stdio.h>

/* Best of five streaming reads of a `bytes` buffer (at least 64 MiB) split over
 * `threads` threads, in GB/s (1e9 bytes); 0 on allocation failure. */
double sov_measure_read_bandwidth(int threads, size_t bytes);

/* The same in a child process, so the buffer never counts in this process's peak RSS. */
double sov_measure_read_bandwidth_isolated(int threads, size_t bytes);

/* Peak and current resident set size of this process, from /proc/self/status (0 when
 * unavailable). */
size_t sov_peak_rss_bytes(void);
size_t sov_current_rss_bytes(void);

#endif
