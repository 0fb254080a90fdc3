/* web.c - static replies and the console's JSON for the embedded pages (see web.h). */
#include "server/web.h"

#include <jansson.h>
#include <string.h>
#include <strings.h>
#include <time.h>

const char web_csp[] = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
                       "frame-ancestors 'none'";

const web_asset *web_find(const char *path) {
    for (size_t i = 0; i < web_assets_count; i++)
        if (strcmp(web_assets[i].path, path) == 0) return &web_assets[i];
    return NULL;
}

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

/* The q-value of one Accept-Encoding element's parameters [p, end): 1 without a q,
 * 0 when q is not a valid qvalue (a refusal is the safe reading of nonsense). */
static double qvalue(const char *p, const char *end) {
    while (p < end) {
        while (p < end && (is_ows(*p) || *p == ';'))
            p++;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            p += 2;
            if (p >= end || (*p != '0' && *p != '1')) return 0;
            double v = *p++ - '0', scale = 0.1;
            if (p < end && *p == '.') {
                p++;
                for (int d = 0; d < 3 && p < end && *p >= '0' && *p <= '9'; d++, p++, scale /= 10)
                    v += (*p - '0') * scale;
            }
            return v > 1 ? 1 : v;
        }
        while (p < end && *p != ';')
            p++;
    }
    return 1;
}

bool web_accepts_gzip(const char *ae) {
    if (!ae) return false;
    double gzip = -1, star = -1;
    for (const char *p = ae; *p;) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        while (p < end && is_ows(*p))
            p++;
        const char *name = p;
        while (p < end && *p != ';' && !is_ows(*p))
            p++;
        const size_t n = (size_t)(p - name);
        if (n == 4 && strncasecmp(name, "gzip", 4) == 0)
            gzip = qvalue(p, end);
        else if (n == 1 && *name == '*')
            star = qvalue(p, end);
        p = *end ? end + 1 : end;
    }
    return gzip >= 0 ? gzip > 0 : star > 0;
}

bool web_etag_matches(const char *inm, const char *etag) {
    if (!inm) return false;
    const size_t elen = strlen(etag);
    for (const char *p = inm; *p;) {
        while (*p == ',' || is_ows(*p))
            p++;
        if (*p == '*') return true;
        if (p[0] == 'W' && p[1] == '/') p += 2;
        if (*p != '"') { /* not an entity tag: skip to the next element */
            while (*p && *p != ',')
                p++;
            continue;
        }
        const char *close = strchr(p + 1, '"');
        if (!close) return false;
        const size_t n = (size_t)(close + 1 - p);
        if (n == elen && memcmp(p, etag, n) == 0) return true;
        p = close + 1;
    }
    return false;
}

double web_hist_quantile(const sched_hist *h, double q) {
    uint64_t total = 0;
    for (int i = 0; i <= SCHED_HIST_BUCKETS; i++)
        total += h->count[i];
    if (total == 0) return -1;
    if (q < 0) q = 0;
    if (q > 1) q = 1;
    const double rank = q * (double)total;
    uint64_t below = 0;
    for (int i = 0; i < SCHED_HIST_BUCKETS; i++) {
        const uint64_t c = h->count[i];
        if (c > 0 && (double)(below + c) >= rank) {
            const double lo = i == 0 ? 0 : sched_hist_bounds[i - 1], hi = sched_hist_bounds[i];
            return lo + (hi - lo) * ((rank - (double)below) / (double)c);
        }
        below += c;
    }
    return sched_hist_bounds[SCHED_HIST_BUCKETS - 1];
}

static json_t *hist_json(const sched_hist *h) {
    json_t *counts = json_array();
    for (int i = 0; i <= SCHED_HIST_BUCKETS; i++)
        json_array_append_new(counts, json_integer((json_int_t)h->count[i]));
    json_t *j = json_pack("{so sf sI}", "counts", counts, "sum", h->sum, "n", (json_int_t)h->n);
    static const struct {
        const char *name;
        double q;
    } qs[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}};
    for (size_t i = 0; j && i < sizeof qs / sizeof qs[0]; i++) {
        const double v = web_hist_quantile(h, qs[i].q);
        json_object_set_new(j, qs[i].name, v < 0 ? json_null() : json_real(v));
    }
    return j;
}

static json_t *bounds_json(void) {
    json_t *a = json_array();
    for (int i = 0; i < SCHED_HIST_BUCKETS; i++)
        json_array_append_new(a, json_real(sched_hist_bounds[i]));
    return a;
}

/* Responses by status over all routes (the console's errors-by-status chart). */
static json_t *http_json(const http_counts *hc) {
    json_t *j = json_object();
    for (int i = 0; j && i < hc->n; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", hc->e[i].status);
        const json_t *old = json_object_get(j, k);
        const json_int_t n = (old ? json_integer_value(old) : 0) + (json_int_t)hc->e[i].n;
        json_object_set_new(j, k, json_integer(n));
    }
    return j;
}

static json_t *tenants_json(const tenant_counts *tc) {
    json_t *a = json_array();
    for (int i = 0; a && i < tc->n; i++) {
        const tenant_count *t = &tc->e[i];
        json_array_append_new(
            a, json_pack("{ss sI sI sI sI sI sf s{sI sI sI}}", "name", t->name, "requests",
                         (json_int_t)t->requests, "prompt_tokens", (json_int_t)t->prompt_tokens,
                         "completion_tokens", (json_int_t)t->completion_tokens, "cached_tokens",
                         (json_int_t)t->cached_tokens, "forbidden", (json_int_t)t->forbidden, "energy_joules",
                         t->energy_j, "limited",
                         "requests_per_minute", (json_int_t)t->limited[TENANT_LIMIT_RPM], "tokens_per_minute",
                         (json_int_t)t->limited[TENANT_LIMIT_TPM], "tokens_per_day",
                         (json_int_t)t->limited[TENANT_LIMIT_TPD]));
    }
    return a;
}

char *web_stats_json(const sched_stats *st, const http_counts *hc, const tenant_counts *tc,
                     const web_figures *f) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    static const char *const reasons[] = {"running", "stop", "length", "deadline", "cancelled", "error"};
    json_t *finished = json_object();
    for (int r = SCHED_FINISH_STOP; r <= SCHED_FINISH_ERROR; r++)
        json_object_set_new(finished, reasons[r], json_integer((json_int_t)st->finished[r]));
    json_t *j = json_pack(
        "{sf sf s{sI sI sI si si si sI sI sI sI} s{si si si si si} s{so so so so} so so "
        "s{ss ss ss ss ss so sI sI si si} s{ss si ss sb sb ss sb}}",
        "time", (double)now.tv_sec + now.tv_nsec * 1e-9, "uptime_s", f->uptime_s, "engine",
        "generated_tokens", (json_int_t)st->generated_tokens, "prompt_tokens", (json_int_t)st->prompt_tokens,
        "prompt_tokens_cached", (json_int_t)st->prompt_tokens_cached, "running", st->running, "waiting",
        st->waiting, "n_parallel", st->n_parallel, "steps", (json_int_t)st->steps, "batch_tokens",
        (json_int_t)st->batch_tokens, "preemptions", (json_int_t)st->preemptions, "prefix_evictions",
        (json_int_t)st->prefix_evictions, "kv", "total", st->kv_blocks_total, "free", st->kv_blocks_free,
        "used", st->kv_blocks_total - st->kv_blocks_free, "cached", st->prefix_cached_blocks, "block_size",
        st->kv_block_size, "latency", "bounds", bounds_json(), "ttft", hist_json(&st->ttft), "itl",
        hist_json(&st->itl), "queue", hist_json(&st->queue_time), "finished", finished, "http", http_json(hc),
        "model", "id", f->model_id, "name", f->model_name, "arch", f->arch, "weight_type", f->weight_type,
        "sha256", f->sha256, "signer", f->signer ? json_string(f->signer) : json_null(), "n_params",
        (json_int_t)f->n_params, "file_bytes", (json_int_t)f->file_bytes, "n_ctx", f->n_ctx, "n_vocab",
        f->n_vocab, "system", "isa", f->isa, "threads", f->threads, "region", f->region, "sandbox_active",
        f->sandbox_active, "egress_locked", f->egress_locked, "sandbox", f->sandbox, "auth_required",
        f->auth_required);
    if (!j) return NULL;
    if (st->energy_on) { /* joules of every engine step since start, and where they come from */
        json_t *eng = json_object_get(j, "engine");
        json_object_set_new(eng, "energy_joules", json_real(st->energy_j));
        json_object_set_new(eng, "energy_source", json_string(energy_source_name(st->energy_source)));
    }
    json_object_set_new(j, "admin", json_boolean(f->admin));
    if (f->admin && tc) json_object_set_new(j, "tenants", tenants_json(tc));
    /* 13 significant digits: "time" (10 digits of epoch seconds) keeps its milliseconds,
     * which the console's rates divide by */
    char *out = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(13));
    json_decref(j);
    return out;
}
