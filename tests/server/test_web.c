/* test_web.c - the embedded pages' helpers (src/server/web.c): which asset a path names,
 * Accept-Encoding and If-None-Match as RFC 9110 defines them, histogram percentiles
 * against hand-computed values, the console's JSON, and the malformed-header corpus
 * (tests/server/corpus_web, also the fuzz seeds). */
#include <dirent.h>
#include <jansson.h>
#include <time.h>

#include "server/web.h"
#include "test.h"

static void assets_are_served_at_their_paths(void) {
    const web_asset *chat = web_find("/"), *console = web_find("/console"),
                    *css = web_find("/assets/style.css");
    CHECK(chat && console && css);
    if (!chat || !console || !css) return;
    CHECK_STREQ(chat->content_type, "text/html; charset=utf-8");
    CHECK_STREQ(css->content_type, "text/css; charset=utf-8");
    CHECK(chat->len > 0 && chat->data[chat->len] == 0);                     /* NUL after the bytes */
    CHECK(chat->gz_len > 18 && chat->gz[0] == 0x1f && chat->gz[1] == 0x8b); /* gzip magic */
    CHECK(strlen(chat->etag) == 18 && chat->etag[0] == '"' && chat->etag[17] == '"');
    CHECK(strcmp(chat->etag, console->etag) != 0);
    CHECK(web_find("/index.html") == NULL && web_find("/assets/") == NULL && web_find("") == NULL);
    CHECK(web_find("/console/") == NULL && web_find("/CONSOLE") == NULL);
    for (size_t i = 0; i < web_assets_count; i++)
        CHECK(web_find(web_assets[i].path) == &web_assets[i]);
}

static void gzip_only_when_accepted(void) {
    CHECK(web_accepts_gzip("gzip"));
    CHECK(web_accepts_gzip("gzip, deflate, br"));
    CHECK(web_accepts_gzip("br;q=1.0, gzip;q=0.8, *;q=0.1"));
    CHECK(web_accepts_gzip("GZip"));
    CHECK(web_accepts_gzip("*"));
    CHECK(web_accepts_gzip("gzip;q=0.001"));
    CHECK(web_accepts_gzip(" \tgzip ; q=1"));
    CHECK(!web_accepts_gzip(NULL));
    CHECK(!web_accepts_gzip(""));
    CHECK(!web_accepts_gzip("identity"));
    CHECK(!web_accepts_gzip("br, deflate"));
    CHECK(!web_accepts_gzip("gzip;q=0"));
    CHECK(!web_accepts_gzip("gzip;q=0.000"));
    CHECK(!web_accepts_gzip("*;q=0"));
    CHECK(!web_accepts_gzip("gzip;q=0, *")); /* an explicit gzip entry wins over * */
    CHECK(!web_accepts_gzip("x-gzip2"));
    CHECK(!web_accepts_gzip("gzipx"));
    CHECK(!web_accepts_gzip("gzip;q=abc")); /* nonsense q: refused */
}

static void etags_match_weakly(void) {
    const char *tag = "\"0123456789abcdef\"";
    CHECK(web_etag_matches("\"0123456789abcdef\"", tag));
    CHECK(web_etag_matches("W/\"0123456789abcdef\"", tag));
    CHECK(web_etag_matches("\"x\", \"0123456789abcdef\"", tag));
    CHECK(web_etag_matches("\"x\",W/\"0123456789abcdef\"", tag));
    CHECK(web_etag_matches("*", tag));
    CHECK(!web_etag_matches(NULL, tag));
    CHECK(!web_etag_matches("", tag));
    CHECK(!web_etag_matches("\"0123456789abcde\"", tag));
    CHECK(!web_etag_matches("\"0123456789abcdef", tag));
    CHECK(!web_etag_matches("0123456789abcdef", tag)); /* unquoted: not an entity tag */
    CHECK(!web_etag_matches("\"\"", tag));
    CHECK(!web_etag_matches("\"x\", garbage, \"y\"", tag));
}

static void percentiles_interpolate_inside_buckets(void) {
    sched_hist h = {0};
    CHECK(web_hist_quantile(&h, 0.5) < 0);                               /* empty */
    h.count[0] = 2;                                                      /* (0, 0.001] */
    h.count[1] = 2;                                                      /* (0.001, 0.0025] */
    CHECK_NEAR(web_hist_quantile(&h, 0.5), 0.001, 1e-12);                /* rank 2: the end of bucket 0 */
    CHECK_NEAR(web_hist_quantile(&h, 0.25), 0.0005, 1e-12);              /* rank 1: half of bucket 0 */
    CHECK_NEAR(web_hist_quantile(&h, 0.9), 0.001 + 0.0015 * 0.8, 1e-12); /* rank 3.6 */
    CHECK_NEAR(web_hist_quantile(&h, 1.0), 0.0025, 1e-12);
    sched_hist inf = {0};
    inf.count[SCHED_HIST_BUCKETS] = 3; /* all past the last bound */
    CHECK_NEAR(web_hist_quantile(&inf, 0.5), sched_hist_bounds[SCHED_HIST_BUCKETS - 1], 1e-12);
    sched_hist mid = {0};
    mid.count[9] = 10; /* (0.5, 1.0] */
    CHECK_NEAR(web_hist_quantile(&mid, 0.99), 0.5 + 0.5 * 0.99, 1e-12);
}

static void stats_json_is_complete(void) {
    sched_stats st = {0};
    st.generated_tokens = 1234;
    st.running = 3;
    st.waiting = 2;
    st.kv_blocks_total = 100;
    st.kv_blocks_free = 60;
    st.prefix_cached_blocks = 7;
    st.finished[SCHED_FINISH_CANCELLED] = 4;
    st.ttft.count[2] = 1;
    st.energy_on = true;
    st.energy_j = 12.5;
    st.energy_source = ENERGY_ESTIMATED;
    http_counts hc = {0};
    http_count(&hc, "/v1/completions", 200);
    http_count(&hc, "/v1/chat/completions", 200);
    http_count(&hc, "/v1/completions", 429);
    tenant_counts tc = {0};
    tenant_count *t = tenant_count_get(&tc, "acme \"quoted\"");
    CHECK(t != NULL);
    if (t) {
        t->requests = 9;
        t->energy_j = 0.75;
    }
    web_figures f = {.model_id = "m",
                     .model_name = "",
                     .arch = "llama",
                     .weight_type = "Q4_0",
                     .sha256 = "",
                     .signer = NULL,
                     .isa = "avx2",
                     .threads = 2,
                     .region = "",
                     .sandbox = "off",
                     .admin = false};
    for (int admin = 0; admin < 2; admin++) {
        f.admin = admin;
        char *s = web_stats_json(&st, &hc, &tc, &f);
        CHECK(s != NULL);
        json_error_t err;
        json_t *j = s ? json_loads(s, 0, &err) : NULL;
        CHECK(j != NULL);
        if (j) {
            CHECK_EQ(json_integer_value(json_object_get(json_object_get(j, "engine"), "generated_tokens")),
                     1234);
            CHECK_EQ(json_integer_value(json_object_get(json_object_get(j, "kv"), "used")), 40);
            CHECK_EQ(json_integer_value(json_object_get(json_object_get(j, "http"), "200")), 2);
            CHECK_EQ(json_integer_value(json_object_get(json_object_get(j, "http"), "429")), 1);
            CHECK_EQ(json_integer_value(json_object_get(json_object_get(j, "finished"), "cancelled")), 4);
            CHECK(json_is_null(json_object_get(json_object_get(j, "model"), "signer")));
            /* the wall clock to the millisecond: the console divides by its differences */
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            CHECK_NEAR(json_real_value(json_object_get(j, "time")), (double)now.tv_sec + now.tv_nsec * 1e-9, 0.05);
            const json_t *eng = json_object_get(j, "engine");
            CHECK_NEAR(json_real_value(json_object_get(eng, "energy_joules")), 12.5, 1e-9);
            CHECK_STREQ(json_string_value(json_object_get(eng, "energy_source")), "estimated");
            const json_t *ttft = json_object_get(json_object_get(j, "latency"), "ttft");
            CHECK_NEAR(json_real_value(json_object_get(ttft, "p50")), 0.0025 + 0.0025 * 0.5, 1e-9);
            CHECK(
                json_is_null(json_object_get(json_object_get(json_object_get(j, "latency"), "itl"), "p50")));
            const json_t *ten = json_object_get(j, "tenants");
            CHECK(admin ? json_array_size(ten) == 1 : ten == NULL);
            if (admin && ten) {
                CHECK_STREQ(json_string_value(json_object_get(json_array_get(ten, 0), "name")),
                            "acme \"quoted\"");
                CHECK_NEAR(json_real_value(json_object_get(json_array_get(ten, 0), "energy_joules")), 0.75, 1e-9);
            }
        }
        json_decref(j);
        free(s);
    }
    tenant_counts_free(&tc);
}

/* Every corpus file as both header values: an answer, never a crash or an over-read
 * (the sanitizer build checks the latter). */
static void malformed_headers_corpus(void) {
    const char *data = getenv("SOV_TEST_DATA");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/server/corpus_web", data ? data : "../tests");
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *fp = fopen(path, "rb");
        if (!fp) continue;
        char buf[8192];
        const size_t len = fread(buf, 1, sizeof buf - 1, fp);
        fclose(fp);
        buf[len] = '\0';
        char *exact = malloc(len + 1); /* exactly sized, so ASan sees any over-read */
        if (!exact) continue;
        memcpy(exact, buf, len + 1);
        (void)web_accepts_gzip(exact);
        (void)web_etag_matches(exact, "\"0123456789abcdef\"");
        free(exact);
        n++;
    }
    closedir(d);
    CHECK(n >= 10);
    CHECK(!web_accepts_gzip("gzip;q=0.\xff\xfe"));
    CHECK(!web_etag_matches("W/\"abc", "\"abc\""));
}

int main(void) {
    RUN(assets_are_served_at_their_paths);
    RUN(gzip_only_when_accepted);
    RUN(etags_match_weakly);
    RUN(percentiles_interpolate_inside_buckets);
    RUN(stats_json_is_complete);
    RUN(malformed_headers_corpus);
    TEST_EXIT();
}
