/* web.h - the chat page and the operator console that `sov serve` serves itself
 * (docs/WEB.md).
 *
 * The files under web/ are compiled into the binary (cmake/web_embed.cmake writes the
 * web_assets table): each with its URL path, Content-Type, ETag and a gzip variant. This
 * module answers the questions a static reply needs — which asset, may it go gzip'd, does
 * the client already hold it — and builds the console's JSON from the server's counters.
 * It never touches libevent: server.c sends what these functions decide. */
#ifndef SOV_SERVER_WEB_H
#define SOV_SERVER_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sched/sched.h"
#include "server/metrics.h"

typedef struct web_asset {
    const char *path;          /* URL path: "/", "/console", "/assets/chat.js" */
    const char *content_type;  /* with charset for text */
    const char *etag;          /* a strong ETag, quotes included */
    const unsigned char *data; /* [len] the file */
    size_t len;
    const unsigned char *gz; /* [gz_len] the same, gzip -9n */
    size_t gz_len;
} web_asset;

extern const web_asset web_assets[];
extern const size_t web_assets_count;

/* The asset served at path (exact match), or NULL. */
const web_asset *web_find(const char *path);

/* Whether an Accept-Encoding header value (NULL: absent) accepts gzip: a "gzip" or "*"
 * coding with a q-value above 0 ("gzip;q=0" refuses it, and so does "*;q=0" without a
 * gzip entry). Malformed parts are skipped, never read past the string. */
bool web_accepts_gzip(const char *accept_encoding);

/* Whether an If-None-Match header value (NULL: absent) matches etag (quoted): "*", or a
 * comma-separated list of entity tags compared weakly (a W/ prefix is ignored, RFC 9110
 * 13.1.2). */
bool web_etag_matches(const char *if_none_match, const char *etag);

/* The Content-Security-Policy of every page: nothing but this server, no inline script
 * or style, no plugins, no framing. */
extern const char web_csp[];

/* The q-quantile (0..1) of a latency histogram in seconds, interpolated linearly inside
 * its bucket as Prometheus' histogram_quantile does (the first bucket starts at 0; a
 * quantile in the +Inf bucket is the last finite bound). -1 when the histogram is empty. */
double web_hist_quantile(const sched_hist *h, double q);

/* What the console's /console/api/stats shows besides the engine's counters. */
typedef struct web_figures {
    const char *model_id, *model_name, *arch, *weight_type, *sha256, *signer; /* signer NULL: unchecked */
    uint64_t n_params, file_bytes;
    int32_t n_ctx, n_vocab;
    const char *isa; /* the kernel set in use */
    int32_t threads;
    const char *region; /* "" when the policy names none */
    bool sandbox_active, egress_locked;
    const char *sandbox; /* the lockdown's summary, or "off" */
    bool auth_required;  /* keys are needed for /v1 */
    bool admin;          /* the caller holds an admin key: tenants are included */
    double uptime_s;
} web_figures;

/* The console's snapshot as JSON (malloc'd, the caller frees; NULL when out of memory):
 * {"time", "uptime_s", "engine": counters and gauges, "kv", "latency": {"ttft", "itl",
 * "queue"} each with p50/p90/p99 and the raw buckets (the page takes windowed percentiles
 * from bucket deltas), "finished", "http": responses by status, "model", "system",
 * "tenants" (admin only)}. */
char *web_stats_json(const sched_stats *st, const http_counts *hc, const tenant_counts *tc,
                     const web_figures *f);

#endif
