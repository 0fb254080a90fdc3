/* test_admin.c - the admin API's parsers of outside input (src/server/admin.c): the body
 * of POST /console/api/keys, the audit list's query and the key id in a revoke path —
 * what they accept, exactly, and that every file of the malformed-body corpus
 * (tests/server/corpus_admin, also the seeds of fuzz/fuzz_admin.c) is refused with a
 * one-line message, never a crash or an over-read (the sanitizer build checks that). */
#include <dirent.h>

#include "server/admin.h"
#include "test.h"

static bool parse(const char *body, admin_key_req *k, char *err) {
    return admin_parse_key_create(body, strlen(body), k, err, 300);
}

static void key_bodies_that_parse(void) {
    admin_key_req k;
    char err[300] = "";
    CHECK(parse("{\"tenant\": \"radiology\"}", &k, err));
    CHECK_STREQ(k.tenant, "radiology");
    CHECK_STREQ(k.models, "");
    CHECK(k.rpm == 0 && k.tpm == 0 && k.tpd == 0 && !k.admin);
    CHECK(parse("{\"tenant\":\"한국 병원\",\"models\":[\"llama-3.1-8b\",\"stories260K\"],\"rpm\":600,"
                "\"tpm\":200000,\"tokens_per_day\":5000000,\"admin\":true}",
                &k, err));
    CHECK_STREQ(k.tenant, "한국 병원");
    CHECK_STREQ(k.models, "llama-3.1-8b,stories260K");
    CHECK_EQ(k.rpm, 600);
    CHECK_EQ(k.tpm, 200000);
    CHECK_EQ(k.tpd, 5000000);
    CHECK(k.admin);
    CHECK(parse("{\"tenant\":\"x'); DROP TABLE keys; --\",\"models\":null,\"rpm\":0}", &k, err));
    CHECK_STREQ(k.tenant, "x'); DROP TABLE keys; --");
    char tenant64[80];
    memset(tenant64, 'a', 64);
    tenant64[64] = '\0';
    char body[200];
    snprintf(body, sizeof body, "{\"tenant\":\"%s\",\"tokens_per_day\":1000000000000}", tenant64);
    CHECK(parse(body, &k, err));
    CHECK_EQ(strlen(k.tenant), 64);
    CHECK_EQ(k.tpd, 1000000000000LL);
}

static void key_bodies_refused_with_the_member_named(void) {
    static const struct {
        const char *body, *says;
    } cases[] = {
        {"{}", "'tenant' is required"},
        {"{\"tenant\":\"\"}", "'tenant'"},
        {"{\"tenant\":\"a\",\"rpm\":-1}", "'rpm'"},
        {"{\"tenant\":\"a\",\"tpm\":2.5}", "'tpm' must be an integer"},
        {"{\"tenant\":\"a\",\"tokens_per_day\":1000000000001}", "'tokens_per_day'"},
        {"{\"tenant\":\"a\",\"models\":[]}", "'models' is empty"},
        {"{\"tenant\":\"a\",\"models\":[\"a,b\"]}", "'models'[0]"},
        {"{\"tenant\":\"a\",\"admin\":1}", "'admin'"},
        {"{\"tenant\":\"a\",\"weight\":2}", "unknown member 'weight'"},
        {"{\"tenant\":\"a\",\"tenant\":\"b\"}", "not JSON"},
        {"{\"tenant\":\"a\\u0085\"}", "'tenant'"},
        {"[1]", "must be a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        admin_key_req k;
        char err[300] = "";
        CHECK_MSG(!parse(cases[i].body, &k, err), "%s", cases[i].body);
        CHECK_MSG(strstr(err, cases[i].says) != NULL, "%s: %s", cases[i].body, err);
        CHECK_MSG(!strchr(err, '\n'), "one line: %s", err);
    }
}

static void audit_queries(void) {
    int64_t after;
    int limit;
    char err[300];
    CHECK(admin_parse_audit_query(NULL, &after, &limit, err, sizeof err));
    CHECK(after == -1 && limit == ADMIN_AUDIT_LIMIT_DEFAULT);
    CHECK(admin_parse_audit_query("after=17&limit=5", &after, &limit, err, sizeof err));
    CHECK(after == 17 && limit == 5);
    CHECK(admin_parse_audit_query("limit=200&after=0&", &after, &limit, err, sizeof err));
    CHECK(after == 0 && limit == 200);
    static const char *const bad[] = {"limit=0", "limit=201", "limit=", "after=-1", "after=01", "after=1x",
                                      "after=1&after=2", "x=1", "after", "limit=99999999999999999999",
                                      "after=4611686018427387905"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(!admin_parse_audit_query(bad[i], &after, &limit, err, sizeof err), "%s", bad[i]);
}

static void key_ids(void) {
    int64_t id;
    CHECK(admin_parse_key_id("17", 2, &id) && id == 17);
    CHECK(admin_parse_key_id("17/revoke", 2, &id) && id == 17);
    CHECK(!admin_parse_key_id("0", 1, &id));
    CHECK(!admin_parse_key_id("017", 3, &id));
    CHECK(!admin_parse_key_id("-1", 2, &id));
    CHECK(!admin_parse_key_id("", 0, &id));
    CHECK(!admin_parse_key_id("1a", 2, &id));
    CHECK(!admin_parse_key_id("99999999999999999999", 20, &id));
}

/* Every corpus file is refused with a one-line message (and read exactly sized). */
static void malformed_body_corpus(void) {
    const char *data = getenv("SOV_TEST_DATA");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/server/corpus_admin", data ? data : "../tests");
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
        static char buf[1 << 16];
        const size_t len = fread(buf, 1, sizeof buf, fp);
        fclose(fp);
        char *exact = malloc(len ? len : 1); /* exactly sized, no terminator: ASan sees an over-read */
        if (!exact) continue;
        memcpy(exact, buf, len);
        admin_key_req k;
        char err[300] = "";
        const bool ok = admin_parse_key_create(exact, len, &k, err, sizeof err);
        CHECK_MSG(!ok, "%s was accepted", e->d_name);
        CHECK_MSG(err[0] && !strchr(err, '\n'), "%s: one-line message: %s", e->d_name, err);
        free(exact);
        n++;
    }
    closedir(d);
    CHECK(n >= 25);
}

int main(void) {
    RUN(key_bodies_that_parse);
    RUN(key_bodies_refused_with_the_member_named);
    RUN(audit_queries);
    RUN(key_ids);
    RUN(malformed_body_corpus);
    TEST_EXIT();
}
