/* test_hub.c - what `sov pull` parses (src/pull/hub.c): sources, the hub's tree listing,
 * checksum headers, the model file a tag picks, URLs; and every file of the malformed
 * corpus (tests/pull/corpus/) gives a clean answer. */
#include <dirent.h>

#include "pull/pull.h"
#include "test.h"

static const char SHA_A[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

static void source_forms_parse(void) {
    pull_source s;
    CHECK_EQ(pull_source_parse("Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M", &s), SOV_OK);
    CHECK_STREQ(s.repo, "Qwen/Qwen2.5-0.5B-Instruct-GGUF");
    CHECK_STREQ(s.quant, "Q4_K_M");
    CHECK_STREQ(s.path, "");
    CHECK_EQ(pull_source_parse("hf://org/repo/dir/model-Q8_0.gguf", &s), SOV_OK);
    CHECK_STREQ(s.repo, "org/repo");
    CHECK_STREQ(s.path, "dir/model-Q8_0.gguf");
    CHECK_EQ(pull_source_parse("hf://org/repo", &s), SOV_OK);
    CHECK_STREQ(s.path, "");
    CHECK_EQ(pull_source_parse("org/repo", &s), SOV_OK);
    CHECK_STREQ(s.quant, "");
}

static void source_rejects_bad_forms(void) {
    pull_source s;
    const char *bad[] = {"",
                         "repo",
                         "/repo",
                         "org/",
                         "org/repo:",
                         "org/repo:Q4 K",
                         "hf://org/repo/../x.gguf",
                         "hf://org/repo//x.gguf",
                         "hf://org/repo/x.bin",
                         "https://evil/x",
                         "../x/y",
                         "org/..",
                         "org/repo/x.gguf:Q4",
                         "-o/repo",
                         ".../repo",
                         "org/.x",
                         "org/x.",
                         "a..b/c",
                         "a--b/c",
                         "hf://org/repo/a\\b.gguf",
                         "hf://org/repo/a\nb.gguf"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(pull_source_parse(bad[i], &s) == SOV_ERR_ARG, "source '%s' should be refused", bad[i]);
}

static void paths_are_checked(void) {
    CHECK(pull_path_ok("a/b-Q4_K_M.gguf"));
    CHECK(pull_path_ok("v1.0+x@y=z.gguf"));
    CHECK(!pull_path_ok("/abs.gguf"));
    CHECK(!pull_path_ok("a/../b.gguf"));
    CHECK(!pull_path_ok("./b.gguf"));
    CHECK(!pull_path_ok("a//b.gguf"));
    CHECK(!pull_path_ok("a/"));
    CHECK(!pull_path_ok("a b.gguf"));
    CHECK(!pull_path_ok("%2e%2e/x"));
}

static void tree_parses_files_and_lfs(void) {
    char json[2048];
    snprintf(json, sizeof json,
             "[{\"type\":\"directory\",\"path\":\"sub\"},"
             "{\"type\":\"file\",\"path\":\"README.md\",\"size\":10,\"oid\":"
             "\"0123456789012345678901234567890123456789\"},"
             "{\"type\":\"file\",\"path\":\"m-Q4_K_M.gguf\",\"size\":134,\"lfs\":{\"oid\":\"%s\",\"size\":"
             "123456789012}},"
             "{\"type\":\"file\",\"path\":\"../escape.gguf\",\"size\":1}]",
             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    pull_tree t;
    CHECK_EQ(pull_tree_parse(json, strlen(json), &t), SOV_OK);
    CHECK_EQ(t.n, 2); /* the directory and the escaping path are skipped */
    const pull_file *f = pull_tree_find(&t, "m-Q4_K_M.gguf");
    CHECK(f != NULL);
    if (f) {
        CHECK_STREQ(f->sha256, SHA_A); /* lowercased */
        CHECK(f->has_size);
        CHECK_EQ(f->size, 123456789012LL); /* lfs.size, not the pointer's size */
    }
    const pull_file *r = pull_tree_find(&t, "README.md");
    CHECK(r && r->sha256[0] == '\0'); /* a git blob id is not a SHA-256 */
    CHECK(pull_tree_find(&t, "../escape.gguf") == NULL);
    pull_tree_free(&t);
}

static pull_tree tree_of(const char *const *paths, size_t n) {
    pull_tree t = {calloc(n, sizeof(pull_file)), n};
    for (size_t i = 0; i < n; i++)
        t.files[i].path = strdup(paths[i]);
    return t;
}

static const char *pick(const pull_tree *t, const char *q) {
    const pull_file *f = pull_tree_pick(t, q);
    return f ? f->path : "(none)";
}

static void tag_picks_like_llama_cpp(void) {
    const char *paths[] = {"README.md",
                           "mmproj-x-Q4_K_M.gguf",
                           "x-Q4_K_M-00002-of-00003.gguf",
                           "x-Q4_K_M-00001-of-00003.gguf",
                           "x-q8_0.gguf",
                           "x-Q4_K_S.gguf",
                           "x-IQ4_XS.gguf",
                           "x.imatrix.gguf",
                           "big/x-Q4_K.gguf"};
    pull_tree t = tree_of(paths, sizeof paths / sizeof paths[0]);
    CHECK_STREQ(pick(&t, "Q4_K_M"), "x-Q4_K_M-00001-of-00003.gguf"); /* not mmproj, not part 2 */
    CHECK_STREQ(pick(&t, NULL), "x-Q4_K_M-00001-of-00003.gguf");     /* default: Q4_K_M first */
    CHECK_STREQ(pick(&t, "Q8_0"), "x-q8_0.gguf");                    /* case-insensitive */
    CHECK_STREQ(pick(&t, "q4_k"), "big/x-Q4_K.gguf");                /* Q4_K_M/S do not match "Q4_K[.-]" */
    CHECK_STREQ(pick(&t, "IQ1_S"), "(none)");
    pull_tree_free(&t);
    const char *only[] = {"notes.txt", "mmproj-F16.gguf", "model-F16.gguf"};
    t = tree_of(only, 3);
    CHECK_STREQ(pick(&t, NULL), "model-F16.gguf"); /* no Q4_K_M or Q8_0: the first model */
    CHECK_STREQ(pick(&t, "Q4_K_M"), "(none)");     /* a tag given: no fallback */
    pull_tree_free(&t);
}

static void etag_headers(void) {
    char hex[65];
    const char spaced[] = " \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\r\n";
    CHECK(pull_etag_sha256(spaced, strlen(spaced), hex));
    CHECK_STREQ(hex, SHA_A);
    const char w[] = "W/\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"";
    CHECK(pull_etag_sha256(w, strlen(w), hex));
    const char git[] = "\"0123456789012345678901234567890123456789\"";
    CHECK(!pull_etag_sha256(git, strlen(git), hex));
    const char odd[] = "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaag\"";
    CHECK(!pull_etag_sha256(odd, strlen(odd), hex));
    CHECK(!pull_etag_sha256("", 0, hex));
    CHECK(!pull_etag_sha256("\"", 1, hex));
}

static void urls_are_escaped(void) {
    char *u = pull_url("https://hub.example/", "org/repo/resolve/main/a b%.gguf");
    CHECK_STREQ(u, "https://hub.example/org/repo/resolve/main/a%20b%25.gguf");
    free(u);
    u = pull_url("http://127.0.0.1:8000//", "api/models/o/r/tree/main?recursive=true");
    CHECK_STREQ(u, "http://127.0.0.1:8000/api/models/o/r/tree/main?recursive=true");
    free(u);
}

/* every corpus file parses or is SOV_ERR_FORMAT, and the expectations the names carry */
static void malformed_corpus_is_refused_cleanly(void) {
    const char *data = getenv("SOV_TEST_DATA");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/pull/corpus", data ? data : "../tests");
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return;
    int files = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.') continue;
        char path[4096 + 256];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        char buf[65536];
        const size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        pull_tree t;
        const sov_status st = pull_tree_parse(buf, n, &t);
        const bool good =
            strcmp(de->d_name, "good_tree.json") == 0 || strcmp(de->d_name, "no_lfs.json") == 0 ||
            strcmp(de->d_name, "dotdot.json") == 0; /* a NUL (\u0000) makes jansson refuse it all */
        CHECK_MSG(good ? st == SOV_OK : st == SOV_ERR_FORMAT, "%s gave %d", de->d_name, (int)st);
        if (!st) {
            CHECK_MSG(strcmp(de->d_name, "dotdot.json") != 0 || t.n == 0, "dotdot.json kept a path");
            pull_tree_pick(&t, NULL);
            pull_tree_free(&t);
        }
        files++;
    }
    closedir(d);
    CHECK(files >= 10);
}

int main(void) {
    RUN(source_forms_parse);
    RUN(source_rejects_bad_forms);
    RUN(paths_are_checked);
    RUN(tree_parses_files_and_lfs);
    RUN(tag_picks_like_llama_cpp);
    RUN(etag_headers);
    RUN(urls_are_escaped);
    RUN(malformed_corpus_is_refused_cleanly);
    TEST_EXIT();
}
