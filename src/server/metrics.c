/* metrics.c - the Prometheus text exposition of the server's counters (see metrics.h). */
#include "server/metrics.h"

#include <event2/buffer.h>
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

void metrics_write(struct evbuffer *o, const http_counts *c, const sched_stats *st) {
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
}
