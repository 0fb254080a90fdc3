/* metrics.h - /metrics in Prometheus text format: HTTP requests by route and status
 * (counted on the HTTP thread) and the engine's counters, gauges and latency histograms
 * (a sched_stats snapshot). */
#ifndef SOV_SERVER_METRICS_H
#define SOV_SERVER_METRICS_H

#include <stdint.h>

#include "sched/sched.h"

struct evbuffer;

enum { HTTP_COUNTS_MAX = 96 };

typedef struct http_counts {
    struct {
        const char *route;   /* a static string */
        int status;
        uint64_t n;
    } e[HTTP_COUNTS_MAX];
    int n;
} http_counts;

/* Counts one response (route must be a static string). */
void http_count(http_counts *c, const char *route, int status);

/* Appends the whole exposition to out. */
void metrics_write(struct evbuffer *out, const http_counts *c, const sched_stats *st);

#endif
