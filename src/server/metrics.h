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
        const char *route; /* a static string */
        int status;
        uint64_t n;
    } e[HTTP_COUNTS_MAX];
    int n;
} http_counts;

/* Counts one response (route must be a static string). */
void http_count(http_counts *c, const char *route, int status);

/* Per-tenant counters (HTTP thread), labelled by the authenticated tenant's name. */
enum { TENANT_LIMIT_RPM = 0, TENANT_LIMIT_TPM, TENANT_LIMIT_TPD, TENANT_LIMIT_COUNT };

typedef struct tenant_count {
    char name[65];
    uint64_t requests; /* completions that ended (any outcome) */
    uint64_t prompt_tokens, completion_tokens, cached_tokens;
    uint64_t forbidden;                   /* 403: the key may not use the model */
    uint64_t limited[TENANT_LIMIT_COUNT]; /* 429 by limit */
    double energy_j;                      /* joules attributed to its completions */
} tenant_count;

typedef struct tenant_counts {
    tenant_count *e; /* [n], cap grows; bounded by the keys' tenants */
    int n, cap;
    uint64_t auth_failures[7]; /* by tenants_auth reason (index 0 unused) */
} tenant_counts;

/* The counters of a tenant, created on first use; NULL when out of memory. */
tenant_count *tenant_count_get(tenant_counts *c, const char *name);
void tenant_counts_free(tenant_counts *c);

/* The state store's figures (NULL: the server runs without one). */
typedef struct store_figures {
    uint64_t errors, reservations, reserve_calls, reloads, pending, dropped;
    double reserve_seconds;
    bool up;
    int64_t keys;
    bool auth_required;
} store_figures;

/* Appends the whole exposition to out. */
void metrics_write(struct evbuffer *out, const http_counts *c, const sched_stats *st, const tenant_counts *tc,
                   const store_figures *sf);

#endif
