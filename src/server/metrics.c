/* metrics.c - the Prometheus text exposition of the server's counters (see metrics.h). */
#include "server/metrics.h"

#include <event2/buffer.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void http_count(http_counts *c, const char *route, int status) {
    for (int i = 0; i < c->n; i++) {
        if (c->e[i].status == status && strcmp(c->e[i].route, route) == 0) {
            c->e[i].n++;
            return;
        }
    }
    if (c->n == HTTP_COUNTS_MAX) return; /* routes are a fixed set: cannot happen */
    c->e[c->n].route = route;
    c->e[c->n].status = status;
    c->e[c->n].n = 1;
    c->n++;
}

static void head(struct evbuffer *o, const char *name, const char *type, const char *help) {
    evbuffer_add_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(struct evbuffer *o, const char *name, const char *type, const char *help, double v) {
    head(o, name, type, help);
    evbuffer_add_printf(o, "%s %.17g\n", name, v);
}

static void hist(struct evbuffer *o, const char *name, const char *help, const sched_hist *h) {
    head(o, name, "histogram", help);
    uint64_t cum = 0;
    for (int i = 0; i < SCHED_HIST_BUCKETS; i++) {
        cum += h->count[i];
        evbuffer_add_printf(o, "%s_bucket{le=\"%g\"} %llu\n", name, sched_hist_bounds[i],
                            (unsigned long long)cum);
    }
    cum += h->count[SCHED_HIST_BUCKETS];
    evbuffer_add_printf(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name,
                        (unsigned long long)cum, name, h->sum, name, (unsigned long long)h->n);
}

tenant_count *tenant_count_get(tenant_counts *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->e[i].name, name) == 0) return &c->e[i];
    if (c->n == c->cap) {
        const int cap = c->cap ? c->cap * 2 : 16;
        tenant_count *p = realloc(c->e, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        c->e = p;
        c->cap = cap;
    }
    tenant_count *t = &c->e[c->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    return t;
}

void tenant_counts_free(tenant_counts *c) {
    free(c->e);
    memset(c, 0, sizeof *c);
}

/* A label value with Prometheus' escapes (backslash, double quote, newline). */
static void label(struct evbuffer *o, const char *v) {
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(o, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(o, "\\n", 2);
        else
            evbuffer_add(o, v, 1);
    }
}

static void tenant_series(struct evbuffer *o, const tenant_counts *tc, const char *name, const char *help,
                          size_t field) {
    head(o, name, "counter", help);
    for (int i = 0; i < tc->n; i++) {
        evbuffer_add_printf(o, "%s{tenant=\"", name);
        label(o, tc->e[i].name);
        evbuffer_add_printf(o, "\"} %llu\n",
                            (unsigned long long)*(const uint64_t *)((const char *)&tc->e[i] + field));
    }
}

/* Energy (docs/ENERGY.md): every series carries source="rapl" or source="estimated". */
static double per_joule(double tokens, double joules) { return joules > 0 ? tokens / joules : 0; }

static void energy_metrics(struct evbuffer *o, const sched_stats *st, const tenant_counts *tc) {
    const char *src = energy_source_name(st->energy_source);
    head(o, "sov_energy_joules_total", "counter",
         "Joules of the engine's steps (source: rapl = measured counters, estimated = CPU time x "
         "--cpu-watts + DRAM bytes).");
    evbuffer_add_printf(o, "sov_energy_joules_total{source=\"%s\"} %.9g\n", src, st->energy_j);
    head(o, "sov_tokens_per_joule", "gauge", "Prompt and generated tokens per joule, since start.");
    evbuffer_add_printf(o, "sov_tokens_per_joule{source=\"%s\"} %.9g\n", src,
                        per_joule((double)st->prompt_tokens + (double)st->generated_tokens, st->energy_j));
    if (!tc) return;
    head(o, "sov_tenant_energy_joules_total", "counter", "Joules attributed to a tenant's completions.");
    for (int i = 0; i < tc->n; i++) {
        evbuffer_add_printf(o, "sov_tenant_energy_joules_total{tenant=\"");
        label(o, tc->e[i].name);
        evbuffer_add_printf(o, "\",source=\"%s\"} %.9g\n", src, tc->e[i].energy_j);
    }
    head(o, "sov_tenant_tokens_per_joule", "gauge", "A tenant's prompt and completion tokens per joule.");
    for (int i = 0; i < tc->n; i++) {
        evbuffer_add_printf(o, "sov_tenant_tokens_per_joule{tenant=\"");
        label(o, tc->e[i].name);
        evbuffer_add_printf(
            o, "\",source=\"%s\"} %.9g\n", src,
            per_joule((double)tc->e[i].prompt_tokens + (double)tc->e[i].completion_tokens, tc->e[i].energy_j));
    }
}

static void tenant_metrics(struct evbuffer *o, const tenant_counts *tc, const store_figures *sf) {
    tenant_series(o, tc, "sov_tenant_requests_total", "Completions ended, by tenant.",
                  offsetof(tenant_count, requests));
    tenant_series(o, tc, "sov_tenant_prompt_tokens_total", "Prompt tokens, by tenant.",
                  offsetof(tenant_count, prompt_tokens));
    tenant_series(o, tc, "sov_tenant_completion_tokens_total", "Generated tokens, by tenant.",
                  offsetof(tenant_count, completion_tokens));
    tenant_series(o, tc, "sov_tenant_cached_tokens_total",
                  "Prompt tokens served from the prefix cache, by tenant.",
                  offsetof(tenant_count, cached_tokens));
    tenant_series(o, tc, "sov_tenant_forbidden_total",
                  "Requests refused (403) because the key may not use the model.",
                  offsetof(tenant_count, forbidden));
    static const char *const limits[TENANT_LIMIT_COUNT] = {"requests_per_minute", "tokens_per_minute",
                                                           "tokens_per_day"};
    head(o, "sov_tenant_rate_limited_total", "counter",
         "Requests refused (429) by a key's limit, by tenant and limit.");
    for (int i = 0; i < tc->n; i++)
        for (int l = 0; l < TENANT_LIMIT_COUNT; l++) {
            evbuffer_add_printf(o, "sov_tenant_rate_limited_total{tenant=\"");
            label(o, tc->e[i].name);
            evbuffer_add_printf(o, "\",limit=\"%s\"} %llu\n", limits[l],
                                (unsigned long long)tc->e[i].limited[l]);
        }
    static const char *const reasons[] = {
        "", "missing", "malformed", "unknown", "revoked", "unbound_certificate", "wrong_certificate"};
    head(o, "sov_auth_failures_total", "counter", "Requests refused (401), by reason.");
    for (int r = 1; r < 7; r++)
        evbuffer_add_printf(o, "sov_auth_failures_total{reason=\"%s\"} %llu\n", reasons[r],
                            (unsigned long long)tc->auth_failures[r]);
    if (!sf) return;
    scalar(o, "sov_auth_required", "gauge", "1 when every /v1 request needs an API key.", sf->auth_required);
    scalar(o, "sov_api_keys", "gauge", "API keys in the state store (revoked ones included).",
           (double)sf->keys);
    scalar(o, "sov_store_up", "gauge", "1 when the last state store call succeeded.", sf->up);
    scalar(o, "sov_store_errors_total", "counter", "Failed state store calls.", (double)sf->errors);
    scalar(o, "sov_store_key_reloads_total", "counter", "Key tables read from the state store.",
           (double)sf->reloads);
    scalar(o, "sov_store_reservations_total", "counter", "Quota reservations made in the state store.",
           (double)sf->reservations);
    scalar(o, "sov_store_reservation_transactions_total", "counter",
           "State store transactions the reservations took (those arriving together share one).",
           (double)sf->reserve_calls);
    scalar(o, "sov_store_reservation_seconds_total", "counter", "Time spent in quota reservations.",
           sf->reserve_seconds);
    scalar(o, "sov_store_usage_pending", "gauge", "Usage records waiting to be written.",
           (double)sf->pending);
    scalar(o, "sov_store_usage_dropped_total", "counter",
           "Usage records lost while the store was unreachable.", (double)sf->dropped);
}

void metrics_write(struct evbuffer *o, const http_counts *c, const sched_stats *st, const tenant_counts *tc,
                   const store_figures *sf) {
    head(o, "sov_requests_total", "counter", "HTTP requests by route and response status.");
    for (int i = 0; i < c->n; i++)
        evbuffer_add_printf(o, "sov_requests_total{route=\"%s\",status=\"%d\"} %llu\n", c->e[i].route,
                            c->e[i].status, (unsigned long long)c->e[i].n);
    static const char *const reasons[] = {"running", "stop", "length", "deadline", "cancelled", "error"};
    head(o, "sov_requests_finished_total", "counter", "Generations ended, by reason.");
    for (int f = SCHED_FINISH_STOP; f <= SCHED_FINISH_ERROR; f++)
        evbuffer_add_printf(o, "sov_requests_finished_total{reason=\"%s\"} %llu\n", reasons[f],
                            (unsigned long long)st->finished[f]);
    scalar(o, "sov_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.",
           (double)st->prompt_tokens);
    scalar(o, "sov_prompt_tokens_cached_total", "counter", "Prompt tokens served from the prefix cache.",
           (double)st->prompt_tokens_cached);
    scalar(o, "sov_generated_tokens_total", "counter", "Tokens generated.", (double)st->generated_tokens);
    scalar(o, "sov_queue_depth", "gauge", "Requests waiting for a sequence.", st->waiting);
    scalar(o, "sov_running_sequences", "gauge", "Sequences being computed.", st->running);
    scalar(o, "sov_parallel_sequences_max", "gauge", "Most sequences computed at once.", st->n_parallel);
    scalar(o, "sov_kv_blocks_total", "gauge", "KV cache blocks in the pool.", st->kv_blocks_total);
    scalar(o, "sov_kv_blocks_used", "gauge", "KV cache blocks in use (sequences or the prefix cache).",
           st->kv_blocks_total - st->kv_blocks_free);
    scalar(o, "sov_kv_blocks_free", "gauge", "KV cache blocks free.", st->kv_blocks_free);
    scalar(o, "sov_kv_block_size_tokens", "gauge", "Positions per KV block.", st->kv_block_size);
    scalar(o, "sov_prefix_cache_blocks", "gauge", "KV blocks held by the prefix cache.",
           st->prefix_cached_blocks);
    scalar(o, "sov_prefix_cache_evictions_total", "counter", "Prefix cache blocks evicted.",
           (double)st->prefix_evictions);
    scalar(o, "sov_preemptions_total", "counter",
           "Requests preempted (recomputed later): for KV space, or for a tenant under its fair share.",
           (double)st->preemptions);
    scalar(o, "sov_fair_preemptions_total", "counter",
           "Requests preempted to give their slot to a tenant under its fair share.",
           (double)st->fair_preemptions);
    scalar(o, "sov_engine_steps_total", "counter", "Engine steps (batched forward passes).",
           (double)st->steps);
    scalar(o, "sov_engine_batch_tokens_total", "counter", "Tokens evaluated in engine steps.",
           (double)st->batch_tokens);
    hist(o, "sov_time_to_first_token_seconds", "Time from arrival to the first generated token.", &st->ttft);
    hist(o, "sov_inter_token_latency_seconds", "Time between consecutive tokens of a request.", &st->itl);
    hist(o, "sov_queue_time_seconds", "Time from arrival to admission.", &st->queue_time);
    if (st->energy_on) energy_metrics(o, st, tc);
    if (tc) tenant_metrics(o, tc, sf);
}
