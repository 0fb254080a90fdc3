/* The grammar engine against hand-written references: JSON schemas compiled to
 * grammars accept and reject hand-written documents; integer ranges match exactly the
 * integers in range (checked by arithmetic); formats; recursion through $ref;
 * unsupported and malformed schemas fail with a message naming the problem (and every
 * file of tests/grammar/corpus/bad_* fails cleanly, good_* compiles); and the token
 * mask against the scalar reference on real vocabularies: every token the mask allows
 * is accepted when its bytes are fed one by one, every token it forbids is rejected,
 * end-of-generation only in accepting states; random walks through masks end in
 * documents that jansson parses. */
#include "test.h"

#include <dirent.h>
#include <jansson.h>

#include "grammar/grammar.h"
#include "sov.h"

static gram *compile(const char *schema) {
    gram *g = NULL;
    char err[256];
    const sov_status st = gram_from_schema(schema, strlen(schema), NULL, &g, err, sizeof err);
    CHECK_MSG(st == SOV_OK, "%s: %s", schema, err);
    return g;
}

/* The whole string is a document of g. */
static bool matches(gram *g, const char *s) {
    gram_matcher *m = NULL;
    if (gram_matcher_new(g, NULL, &m) != SOV_OK) return false;
    const bool ok = gram_matcher_feed(m, (const uint8_t *)s, strlen(s)) && gram_matcher_accepting(m);
    gram_matcher_free(m);
    return ok;
}

static void expect(gram *g, const char *const *yes, size_t ny, const char *const *no, size_t nn) {
    for (size_t i = 0; i < ny; i++)
        CHECK_MSG(matches(g, yes[i]), "should accept %s", yes[i]);
    for (size_t i = 0; i < nn; i++)
        CHECK_MSG(!matches(g, no[i]), "should reject %s", no[i]);
}

static const char *PERSON =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"maxLength\":5},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":120},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\"]},\"minItems\":1,\"maxItems\":2},"
    "\"ok\":{\"type\":\"boolean\"}},\"required\":[\"name\",\"age\"],\"additionalProperties\":false}";

static void object_schema_accepts_and_rejects(void) {
    gram *g = compile(PERSON);
    if (!g) return;
    static const char *const yes[] = {
        "{\"name\":\"bob\",\"age\":42}",
        "{\"name\": \"bob\", \"age\": 0, \"tags\": [\"a\"], \"ok\": true}",
        "{\"name\":\"\",\"age\":120,\"ok\":false}",
        " {\"name\":\"abcde\",\"age\":7} ",
        "{\"name\":\"\\u00e9\\n\xc3\xa9\",\"age\":1}",
        "{\n    \"name\": \"x\",\n    \"age\": 3,\n    \"tags\": [\"b\", \"a\"]\n}",
    };
    static const char *const no[] = {
        "{\"age\":42,\"name\":\"bob\"}",               /* schema order */
        "{\"name\":\"abcdef\",\"age\":1}",             /* maxLength */
        "{\"name\":\"bob\",\"age\":121}",              /* maximum */
        "{\"name\":\"bob\",\"age\":-1}",               /* minimum */
        "{\"name\":\"bob\",\"age\":042}",              /* leading zero */
        "{\"name\":\"bob\",\"age\":1,\"tags\":[]}",    /* minItems */
        "{\"name\":\"bob\",\"age\":1,\"tags\":[\"a\",\"b\",\"a\"]}", /* maxItems */
        "{\"name\":\"bob\",\"age\":1,\"tags\":[\"c\"]}", /* enum */
        "{\"name\":\"bob\"}",                          /* required */
        "{\"name\":\"bob\",\"age\":1,\"extra\":1}",    /* additionalProperties */
        "{\"name\":\"bob\",\"age\":1,}",
        "{\"name\":\"\\ud800\",\"age\":1}",            /* a lone surrogate escape */
        "{\"name\":\"a\x01\",\"age\":1}",              /* a control character */
        "{\"name\":\"\xc3\",\"age\":1}",               /* broken UTF-8 */
        "{\"name\":\"bob\",\"age\":1}}",
        "{\"name\":\"bob\",\"age\":1,\"ok\":true,\"tags\":[\"a\"]}",
        "{\"name\":\"bob\",\"age\":1}\n\n\n\n\n\n\n\n\n\n\n\n",    /* unbounded whitespace */
        "{\"name\":\"bob\",\"age\":1.5}",
        "\"bob\"",
        "",
    };
    expect(g, yes, SOV_ARRAY_LEN_T(yes), no, SOV_ARRAY_LEN_T(no));
    gram_free(g);
}

static void scalars_numbers_and_unions(void) {
    gram *g = compile("{\"type\":\"number\"}");
    static const char *const ny[] = {"0", "-0", "12", "-0.5e10", "1e+5", "3.25", "1E-07"};
    static const char *const nn[] = {"01", "1.", ".5", "-", "1e", "+1", "1e123", "NaN", "12345678901234567"};
    if (g) expect(g, ny, 3, nn, SOV_ARRAY_LEN_T(nn));
    if (g) expect(g, ny + 3, SOV_ARRAY_LEN_T(ny) - 3, NULL, 0);
    gram_free(g);
    g = compile("{\"anyOf\":[{\"type\":\"null\"},{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}]}");
    static const char *const uy[] = {"null", "\"ab\"", "\"abc\"", "\"\\\"\\\\\""};
    static const char *const un[] = {"\"a\"", "\"abcd\"", "nul", "true", "\"ab"};
    if (g) expect(g, uy, SOV_ARRAY_LEN_T(uy), un, SOV_ARRAY_LEN_T(un));
    gram_free(g);
    g = compile("{\"type\":[\"integer\",\"boolean\"]}");
    static const char *const ty[] = {"-7", "true", "false", "0"};
    static const char *const tn[] = {"1.5", "null", "\"1\""};
    if (g) expect(g, ty, 4, tn, 3);
    gram_free(g);
    g = compile("{\"const\":{\"a\":[1,\"x\"]}}");
    static const char *const cy[] = {"{\"a\":[1,\"x\"]}"};
    static const char *const cn[] = {"{\"a\":[1,\"y\"]}", "{}"};
    if (g) expect(g, cy, 1, cn, 2);
    gram_free(g);
}

static void integer_ranges_are_exact(void) {
    static const long long ranges[][2] = {{-15, 237}, {0, 0}, {1, 9}, {10, 99}, {-100, -7}, {5, 1000}, {-9, 9},
                                          {19, 301}, {0, 120}, {-999, 1001}};
    for (size_t i = 0; i < SOV_ARRAY_LEN_T(ranges); i++) {
        char schema[128];
        snprintf(schema, sizeof schema, "{\"type\":\"integer\",\"minimum\":%lld,\"maximum\":%lld}", ranges[i][0],
                 ranges[i][1]);
        gram *g = compile(schema);
        if (!g) continue;
        int bad = 0;
        for (long long v = -1200; v <= 1200; v++) {
            char s[32];
            snprintf(s, sizeof s, "%lld", v);
            const bool in = v >= ranges[i][0] && v <= ranges[i][1];
            if (matches(g, s) != in && bad++ < 3) CHECK_MSG(false, "%s: %lld", schema, v);
        }
        CHECK_EQ(bad, 0);
        CHECK(!matches(g, "-0"));
        gram_free(g);
    }
    gram *g = compile("{\"type\":\"integer\",\"exclusiveMinimum\":3,\"exclusiveMaximum\":6}");
    static const char *const y[] = {"4", "5"};
    static const char *const n[] = {"3", "6", "0"};
    if (g) expect(g, y, 2, n, 3);
    gram_free(g);
    g = compile("{\"type\":\"integer\",\"minimum\":1}");
    static const char *const y2[] = {"1", "9999999999999999"};
    static const char *const n2[] = {"0", "-1", "01"};
    if (g) expect(g, y2, 2, n2, 3);
    gram_free(g);
}

static void string_formats(void) {
    struct {
        const char *format;
        const char *yes[4], *no[5];
    } f[] = {
        {"date", {"\"2024-02-28\"", "\"1999-12-31\"", "\"0001-04-30\""},
         {"\"2024-02-30\"", "\"2024-13-01\"", "\"2024-04-31\"", "\"0000-01-01\"", "\"2024-00-10\""}},
        {"time", {"\"23:59:59Z\"", "\"12:00:00.123+05:30\"", "\"00:00:00-00:00\""},
         {"\"24:00:00Z\"", "\"12:00:00\"", "\"12:60:00Z\"", "\"12:00:00.Z\"", "\"1:00:00Z\""}},
        {"date-time", {"\"2024-01-31T08:30:00Z\"", "\"2020-06-15T23:59:59.5+01:00\""},
         {"\"2024-01-31 08:30:00Z\"", "\"2024-01-31T08:30:00\"", "\"2024-01-32T08:30:00Z\""}},
        {"uuid", {"\"123e4567-e89b-12d3-a456-426614174000\"", "\"ABCDEF01-2345-6789-abcd-ef0123456789\""},
         {"\"123e4567e89b12d3a456426614174000\"", "\"123e4567-e89b-12d3-a456-42661417400\"", "\"g23e4567-e89b-12d3-a456-426614174000\""}},
        {"email", {"\"a.b+c@example.com\"", "\"x@y.z\""}, {"\"@example.com\"", "\"a@b\"", "\"a b@c.d\"", "\".a@b.c\""}},
    };
    for (size_t i = 0; i < SOV_ARRAY_LEN_T(f); i++) {
        char schema[96];
        snprintf(schema, sizeof schema, "{\"type\":\"string\",\"format\":\"%s\"}", f[i].format);
        gram *g = compile(schema);
        if (!g) continue;
        size_t ny = 0, nn = 0;
        while (ny < 4 && f[i].yes[ny]) ny++;
        while (nn < 5 && f[i].no[nn]) nn++;
        expect(g, f[i].yes, ny, f[i].no, nn);
        gram_free(g);
    }
}

static void patterns_search_like_ecma_regexes(void) {
    struct {
        const char *pattern; /* as JSON string content */
        const char *yes[5], *no[5];
    } p[] = {
        {"^[A-Z]{2}-\\\\d{3}$", {"\"AB-123\"", "\"ZZ-000\""}, {"\"AB-12\"", "\"ab-123\"", "\"AB-1234\"", "\"xAB-123\""}},
        {"cat|dog", {"\"cat\"", "\"a dog!\"", "\"catdog\"", "\"x\\\"cat\""}, {"\"cow\"", "\"\"", "\"ca t\""}},
        {"^(?:ab)+c?$", {"\"ab\"", "\"ababc\""}, {"\"abc c\"", "\"a\"", "\"c\""}},
        {"^[^0-9]*$", {"\"abc\"", "\"\"", "\"a\\\"b\""}, {"\"a1\"", "\"9\""}},
        {"^a.c$", {"\"abc\"", "\"a c\"", "\"a\\\\c\""}, {"\"ac\"", "\"abbc\""}},
        {"^\\\\w+@x\\\\.org$", {"\"me_2@x.org\""}, {"\"me@xxorg\"", "\"@x.org\""}},
        {"^\\\\$\\\\d+(\\\\.\\\\d{2})?$", {"\"$5\"", "\"$12.50\""}, {"\"$5.5\"", "\"5\""}},
    };
    for (size_t i = 0; i < SOV_ARRAY_LEN_T(p); i++) {
        char schema[256];
        snprintf(schema, sizeof schema, "{\"type\":\"string\",\"pattern\":\"%s\"}", p[i].pattern);
        gram *g = compile(schema);
        if (!g) continue;
        size_t ny = 0, nn = 0;
        while (ny < 5 && p[i].yes[ny]) ny++;
        while (nn < 5 && p[i].no[nn]) nn++;
        expect(g, p[i].yes, ny, p[i].no, nn);
        gram_free(g);
    }
}

static void refs_recurse_and_json_object_is_any_object(void) {
    gram *g = compile("{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
                      "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"v\"]}},"
                      "\"$ref\":\"#/$defs/node\"}");
    static const char *const y[] = {"{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[]},{\"v\":3}]}", "{\"v\":0}"};
    static const char *const n[] = {"{\"v\":1,\"kids\":[{\"kids\":[]}]}", "{\"v\":1,\"kids\":[1]}"};
    if (g) expect(g, y, 2, n, 2);
    gram_free(g);
    g = NULL;
    CHECK_EQ(gram_any_object(NULL, &g), SOV_OK);
    static const char *const oy[] = {"{}", "{\"a\":[1,{\"b\":null}],\"c\":\"x\"}", "{ \"k\" : [ true , false ] }",
                                     "{\"a\":{\"b\":{\"c\":{\"d\":[[[[1]]]]}}}}"};
    static const char *const on[] = {"[]", "{\"a\":}", "{a:1}", "{\"a\":1,}", "\"x\"", "{\"a\" 1}"};
    if (g) expect(g, oy, SOV_ARRAY_LEN_T(oy), on, SOV_ARRAY_LEN_T(on));
    /* the recursion bound: nesting far past GRAM_MAX_DEPTH is refused, not a crash */
    char deep[2 * 400 + 16];
    size_t k = 0;
    deep[k++] = '{';
    memcpy(deep + k, "\"a\":", 4);
    k += 4;
    for (int i = 0; i < 300; i++)
        deep[k++] = '[';
    deep[k] = 0;
    gram_matcher *m = NULL;
    if (g && gram_matcher_new(g, NULL, &m) == SOV_OK) {
        CHECK(!gram_matcher_feed(m, (const uint8_t *)deep, k));
        gram_matcher_free(m);
    }
    gram_free(g);
}

/* The error message of a schema that must fail, or "" when it compiled. */
static const char *refuse(const char *schema, sov_status want) {
    static char err[256];
    gram *g = NULL;
    const sov_status st = gram_from_schema(schema, strlen(schema), NULL, &g, err, sizeof err);
    CHECK_MSG(st == want, "%s: status %d (%s)", schema, (int)st, err);
    CHECK(g == NULL);
    gram_free(g);
    return st ? err : "";
}

static void unsupported_and_malformed_schemas_name_the_problem(void) {
    CHECK(strstr(refuse("{\"type\":\"string\",\"pattern\":\"(?=a)b\"}", SOV_ERR_UNSUPPORTED), "'pattern'"));
    CHECK(strstr(refuse("{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}", SOV_ERR_UNSUPPORTED), "back-reference"));
    CHECK(strstr(refuse("{\"type\":\"string\",\"pattern\":\"(a*)*\"}", SOV_ERR_UNSUPPORTED), "empty"));
    CHECK(strstr(refuse("{\"type\":\"string\",\"pattern\":\"[a-\"}", SOV_ERR_ARG), "'['"));
    CHECK(strstr(refuse("{\"type\":\"string\",\"pattern\":\"a{3,2}\"}", SOV_ERR_ARG), "{n,m}"));
    CHECK(strstr(refuse("{\"not\":{\"type\":\"null\"}}", SOV_ERR_UNSUPPORTED), "'not'"));
    CHECK(strstr(refuse("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\",\"uniqueItems\":true}}}",
                        SOV_ERR_UNSUPPORTED),
                 "#/properties/a"));
    CHECK(strstr(refuse("{\"type\":\"string\",\"format\":\"hostname\"}", SOV_ERR_UNSUPPORTED), "hostname"));
    CHECK(strstr(refuse("{\"$ref\":\"http://example.com/s.json\"}", SOV_ERR_UNSUPPORTED), "$ref"));
    CHECK(strstr(refuse("{\"allOf\":[{\"type\":\"null\"},{\"type\":\"null\"}]}", SOV_ERR_UNSUPPORTED), "allOf"));
    CHECK(strstr(refuse("{\"type\":\"number\",\"multipleOf\":2}", SOV_ERR_UNSUPPORTED), "multipleOf"));
    CHECK(strstr(refuse("{", SOV_ERR_ARG), "not valid JSON"));
    CHECK(strstr(refuse("{\"type\":5}", SOV_ERR_ARG), "'type'"));
    CHECK(strstr(refuse("{\"type\":\"strin\"}", SOV_ERR_ARG), "strin"));
    CHECK(strstr(refuse("{\"type\":\"string\",\"minLength\":-1}", SOV_ERR_ARG), "minLength"));
    CHECK(strstr(refuse("{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", SOV_ERR_ARG), "minItems"));
    CHECK(strstr(refuse("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", SOV_ERR_ARG), "bounds"));
    CHECK(strstr(refuse("{\"enum\":[]}", SOV_ERR_ARG), "enum"));
    CHECK(strstr(refuse("false", SOV_ERR_ARG), "false"));
    CHECK(strstr(refuse("[1]", SOV_ERR_ARG), "schema must be"));
    CHECK(strstr(refuse("{\"$defs\":{\"a\":{\"anyOf\":[{\"$ref\":\"#/$defs/a\"},{\"type\":\"null\"}]}},\"$ref\":\"#/$defs/a\"}",
                        SOV_ERR_ARG),
                 "left-recursive"));
    CHECK(strstr(refuse("{\"$defs\":{\"a\":{\"type\":\"object\",\"properties\":{\"x\":{\"$ref\":\"#/$defs/a\"}},"
                        "\"required\":[\"x\"]}},\"$ref\":\"#/$defs/a\"}",
                        SOV_ERR_ARG),
                 "no finite document"));
    CHECK(strstr(refuse("{\"type\":\"string\",\"maxLength\":100000000}", SOV_ERR_UNSUPPORTED), "maxLength"));
    /* many large bounds: refused by the grammar size limit, not built without end */
    char big[4096];
    size_t n = (size_t)snprintf(big, sizeof big, "{\"type\":\"object\",\"properties\":{");
    for (int i = 0; i < 20; i++)
        n += (size_t)snprintf(big + n, sizeof big - n,
                              "%s\"p%d\":{\"type\":\"array\",\"maxItems\":4096,\"items\":{\"type\":\"string\",\"maxLength\":4096}}",
                              i ? "," : "", i);
    snprintf(big + n, sizeof big - n, "}}");
    CHECK(strstr(refuse(big, SOV_ERR_UNSUPPORTED), "too large"));
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 20);
    *len = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    return buf;
}

static void corpus_schemas_fail_cleanly_or_compile(void) {
    const char *data = getenv("SOV_TEST_DATA");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/grammar/corpus", data ? data : "tests");
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return;
    int n_bad = 0, n_good = 0;
    for (struct dirent *e; (e = readdir(d));) {
        const bool bad = strncmp(e->d_name, "bad_", 4) == 0, good = strncmp(e->d_name, "good_", 5) == 0;
        if (!bad && !good) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len = 0;
        char *text = read_file(path, &len);
        CHECK(text != NULL);
        if (!text) continue;
        gram *g = NULL;
        char err[256] = "";
        const sov_status st = gram_from_schema(text, len, NULL, &g, err, sizeof err);
        if (bad) {
            CHECK_MSG(st != SOV_OK && g == NULL && err[0] && !strchr(err, '\n'), "%s: %s", e->d_name, err);
            n_bad++;
        } else {
            CHECK_MSG(st == SOV_OK && g, "%s: %s", e->d_name, err);
            n_good++;
        }
        gram_free(g);
        free(text);
    }
    closedir(d);
    CHECK(n_bad >= 10);
    CHECK(n_good >= 3);
}

/* ---- masks against the scalar reference ---- */

/* Every token: mask bit == the matcher accepts its bytes; EOG tokens iff accepting. */
static int check_mask_state(gram_matcher *m, const gram_vocab *gv, const sov_vocab *v) {
    const uint32_t *mask = gram_matcher_mask(m, true);
    CHECK(mask != NULL);
    if (!mask) return 0;
    const int32_t V = gram_vocab_size(gv);
    uint32_t *copy = malloc(((size_t)V + 31) / 32 * 4);
    memcpy(copy, mask, ((size_t)V + 31) / 32 * 4);
    int bad = 0, allowed = 0;
    for (sov_token t = 0; t < V; t++) {
        const bool bit = (copy[t >> 5] >> (t & 31)) & 1u;
        bool want;
        if (sov_vocab_is_eog(v, t)) {
            want = gram_matcher_accepting(m);
        } else {
            int32_t len;
            const uint8_t *p = gram_vocab_piece(gv, t, &len);
            want = p && gram_matcher_try(m, p, (size_t)len);
        }
        allowed += bit;
        if (bit != want && bad++ < 3) CHECK_MSG(false, "token %d: mask %d, scalar %d", (int)t, bit, want);
    }
    CHECK_EQ(bad, 0);
    /* the second time comes from the cache, and is the same */
    gram_stats before, after;
    gram_matcher_stats(m, &before);
    const uint32_t *again = gram_matcher_mask(m, true);
    gram_matcher_stats(m, &after);
    CHECK(again && memcmp(again, copy, ((size_t)V + 31) / 32 * 4) == 0);
    if (!gram_matcher_complete(m)) CHECK_EQ(after.cache_hits, before.cache_hits + 1);
    free(copy);
    return allowed;
}

static void mask_matches_scalar_reference_on(const char *vocab_file, bool all_prefixes) {
    char path[512];
    if (!test_shared_model(vocab_file, path, sizeof path)) SKIP("no %s", vocab_file);
    sov_vocab *v = NULL;
    CHECK_EQ(sov_vocab_load(path, &v), SOV_OK);
    gram_vocab *gv = NULL;
    CHECK_EQ(gram_vocab_new(v, &gv), SOV_OK);
    gram *g = compile(PERSON);
    if (!v || !gv || !g) goto out;
    /* states along a document: the start, after each byte of it (inside keys, strings,
     * numbers, arrays, whitespace) */
    const char *doc = " {\"name\": \"b\\u00e9\", \"age\": 12, \"tags\": [\"a\", \"b\"], \"ok\": true}";
    gram_matcher *m = NULL;
    CHECK_EQ(gram_matcher_new(g, gv, &m), SOV_OK);
    if (!m) goto out;
    int states = 0;
    for (size_t i = 0; i <= strlen(doc); i++) {
        if (all_prefixes || i % 7 == 0 || i == strlen(doc)) {
            const int allowed = check_mask_state(m, gv, v);
            if (i < strlen(doc)) CHECK(allowed > 0);
            states++;
        }
        if (i < strlen(doc)) CHECK(gram_matcher_feed(m, (const uint8_t *)doc + i, 1));
    }
    CHECK(gram_matcher_accepting(m));
    CHECK(states > 5);
    gram_matcher_free(m);
out:
    gram_free(g);
    gram_vocab_free(gv);
    sov_vocab_free(v);
}

static void mask_matches_scalar_reference_spm(void) {
    mask_matches_scalar_reference_on("vocab/ggml-vocab-llama-spm.gguf", true);
}
static void mask_matches_scalar_reference_bpe(void) {
    mask_matches_scalar_reference_on("vocab/ggml-vocab-llama-bpe.gguf", false);
}

/* Random walks: draw allowed tokens uniformly until the document is complete or an
 * end token is drawn; the text always parses. */
static void random_walks_through_masks_parse(void) {
    char path[512];
    if (!test_shared_model("vocab/ggml-vocab-llama-spm.gguf", path, sizeof path)) SKIP("no vocab");
    sov_vocab *v = NULL;
    gram_vocab *gv = NULL;
    CHECK_EQ(sov_vocab_load(path, &v), SOV_OK);
    CHECK_EQ(gram_vocab_new(v, &gv), SOV_OK);
    gram *g = compile(PERSON);
    gram *any = NULL;
    CHECK_EQ(gram_any_object(NULL, &any), SOV_OK);
    test_rng rng = {0x5eed};
    int parsed = 0;
    for (int walk = 0; walk < 40 && g && any && gv; walk++) {
        gram_matcher *m = NULL;
        CHECK_EQ(gram_matcher_new(walk % 2 ? any : g, gv, &m), SOV_OK);
        char text[8192];
        size_t len = 0;
        bool ended = false;
        const int32_t V = gram_vocab_size(gv);
        for (int step = 0; step < 600 && !ended; step++) {
            if (gram_matcher_complete(m)) {
                ended = true;
                break;
            }
            const uint32_t *mask = gram_matcher_mask(m, true);
            /* prefer closing after a while, so walks end: pick among allowed tokens,
             * biased towards short ones late in the walk */
            sov_token pick = -1;
            int32_t seen = 0;
            for (sov_token t = 0; t < V; t++) {
                if (!((mask[t >> 5] >> (t & 31)) & 1u)) continue;
                int32_t pl = 0;
                gram_vocab_piece(gv, t, &pl);
                if (step > 200 && pl > 1 && !sov_vocab_is_eog(v, t)) continue;
                if (test_rng_next(&rng) % (uint64_t)(++seen) == 0) pick = t;
            }
            if (pick < 0) { /* only long tokens allowed late: take any allowed */
                for (sov_token t = 0; t < V && pick < 0; t++)
                    if ((mask[t >> 5] >> (t & 31)) & 1u) pick = t;
            }
            CHECK(pick >= 0);
            if (pick < 0) break;
            if (sov_vocab_is_eog(v, pick)) {
                CHECK(gram_matcher_accepting(m));
                ended = true;
                break;
            }
            int32_t pl = 0;
            const uint8_t *p = gram_vocab_piece(gv, pick, &pl);
            CHECK(gram_matcher_feed_token(m, pick));
            if (len + (size_t)pl < sizeof text) memcpy(text + len, p, (size_t)pl), len += (size_t)pl;
        }
        if (ended) {
            json_error_t je;
            json_t *j = json_loadb(text, len, JSON_DECODE_ANY, &je);
            CHECK_MSG(j && json_is_object(j), "%.*s: %s", (int)len, text, je.text);
            parsed += j != NULL;
            if (j && walk % 2 == 0) { /* the person schema: the required keys are there */
                CHECK(json_is_string(json_object_get(j, "name")));
                CHECK(json_is_integer(json_object_get(j, "age")));
            }
            json_decref(j);
        }
        gram_matcher_free(m);
    }
    CHECK(parsed >= 20);
    gram_free(g);
    gram_free(any);
    gram_vocab_free(gv);
    sov_vocab_free(v);
}

/* The length budget: the fewest closing bytes are counted right, and walks that follow
 * the budgeted mask with few tokens left always end in a complete document. */
static void budget_closes_documents_in_time(void) {
    char path[512];
    if (!test_shared_model("vocab/ggml-vocab-llama-spm.gguf", path, sizeof path)) SKIP("no vocab");
    sov_vocab *v = NULL;
    gram_vocab *gv = NULL;
    CHECK_EQ(sov_vocab_load(path, &v), SOV_OK);
    CHECK_EQ(gram_vocab_new(v, &gv), SOV_OK);
    gram *g = compile(PERSON);
    if (!g || !gv) goto out;
    gram_matcher *m = NULL;
    CHECK_EQ(gram_matcher_new(g, gv, &m), SOV_OK);
    CHECK_EQ(gram_matcher_min_close(m), (long long)strlen("{\"name\":\"\",\"age\":0}"));
    CHECK(gram_matcher_feed(m, (const uint8_t *)"{\"name\":\"ab", 11));
    CHECK_EQ(gram_matcher_min_close(m), (long long)strlen("\",\"age\":0}"));
    gram_matcher_free(m);
    test_rng rng = {77};
    const int32_t V = gram_vocab_size(gv);
    for (int walk = 0; walk < 30; walk++) {
        const int total = 20 + walk * 3; /* tokens allowed */
        CHECK_EQ(gram_matcher_new(g, gv, &m), SOV_OK);
        char text[4096];
        size_t len = 0;
        bool done = false;
        for (int n = 0; n < total && !done; n++) {
            const uint32_t *mask = gram_matcher_mask_budget(m, true, total - n - 1);
            sov_token pick = -1;
            int32_t seen = 0;
            for (sov_token t = 0; t < V; t++)
                if (((mask[t >> 5] >> (t & 31)) & 1u) && test_rng_next(&rng) % (uint64_t)(++seen) == 0) pick = t;
            CHECK(pick >= 0);
            if (pick < 0) break;
            if (sov_vocab_is_eog(v, pick)) {
                done = true;
                break;
            }
            int32_t pl = 0;
            const uint8_t *p = gram_vocab_piece(gv, pick, &pl);
            CHECK(gram_matcher_feed_token(m, pick));
            if (len + (size_t)pl < sizeof text) memcpy(text + len, p, (size_t)pl), len += (size_t)pl;
            done = gram_matcher_complete(m);
        }
        CHECK_MSG(gram_matcher_accepting(m), "walk %d: %.*s", walk, (int)len, text);
        json_error_t je;
        json_t *j = json_loadb(text, len, JSON_DECODE_ANY, &je);
        CHECK_MSG(j && json_is_integer(json_object_get(j, "age")), "%.*s", (int)len, text);
        json_decref(j);
        gram_matcher_free(m);
    }
out:
    gram_free(g);
    gram_vocab_free(gv);
    sov_vocab_free(v);
}

/* ---- GBNF ---- */

static gram *gbnf(const char *text) {
    gram *g = NULL;
    char err[256];
    const sov_status st = gram_from_gbnf(text, strlen(text), &g, err, sizeof err);
    CHECK_MSG(st == SOV_OK, "%s: %s", text, err);
    return g;
}

static void gbnf_grammars_accept_and_reject(void) {
    /* a small JSON-ish grammar written for this test, with comments, groups, classes,
     * negation, escapes, repetition counts and a rule continued after '|' */
    gram *g = gbnf("# key/value lists\n"
                   "root   ::= \"{\" ws ( pair ( \",\" ws pair )* )? \"}\"\n"
                   "pair   ::= key ws \":\" ws value   # one pair\n"
                   "key    ::= [a-z_] [a-z0-9_]{0,7}\n"
                   "value  ::= str | num | \"true\" |\n"
                   "           \"false\"\n"
                   "str    ::= \"\\\"\" [^\"\\\\\\x00-\\x1f]* \"\\\"\"\n"
                   "num    ::= \"-\"? [0-9]+\n"
                   "ws     ::= [ \\t\\n]?\n");
    static const char *const y[] = {"{}", "{a:1}", "{ab_1: \"x y\", b:-20,c:true}", "{k:\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}",
                                     "{x:false}"};
    static const char *const n[] = {"{A:1}", "{a:}", "{a:1,}", "{abcdefghi:1}", "{a:\"\x01\"}", "{a:\"\xc3\"}",
                                    "{a:\"\xed\xa0\x80\"}", "{a:1}x", "{a:tru}", "{a:\"x\\\"}"};
    if (g) expect(g, y, SOV_ARRAY_LEN_T(y), n, SOV_ARRAY_LEN_T(n));
    gram_free(g);
    /* every code point of a class, as UTF-8, and nothing around it (spans crossing
     * encoding lengths, surrogates left out) */
    g = gbnf("root ::= [\\u0370-\\u03FF\\x41-\\x43\\U0001F600-\\U0001F64F\\u07F0-\\u0810]\n");
    if (g) {
        int bad = 0;
        for (uint32_t cp = 1; cp < 0x20000; cp++) {
            if (cp >= 0xD800 && cp <= 0xDFFF) continue;
            char s[5] = {0};
            if (cp < 0x80) s[0] = (char)cp;
            else if (cp < 0x800) s[0] = (char)(0xC0 | (cp >> 6)), s[1] = (char)(0x80 | (cp & 0x3F));
            else if (cp < 0x10000)
                s[0] = (char)(0xE0 | (cp >> 12)), s[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), s[2] = (char)(0x80 | (cp & 0x3F));
            else
                s[0] = (char)(0xF0 | (cp >> 18)), s[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
                s[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), s[3] = (char)(0x80 | (cp & 0x3F));
            const bool in = (cp >= 0x370 && cp <= 0x3FF) || (cp >= 0x41 && cp <= 0x43) ||
                            (cp >= 0x1F600 && cp <= 0x1F64F) || (cp >= 0x7F0 && cp <= 0x810);
            if (matches(g, s) != in && bad++ < 3) CHECK_MSG(false, "U+%04X", (unsigned)cp);
        }
        CHECK_EQ(bad, 0);
    }
    gram_free(g);
    g = gbnf("root ::= [^a-y]\n");
    static const char *const ny[] = {"z", "\xc3\xa9", "\xf4\x8f\xbf\xbf", "\n"};
    static const char *const nn[] = {"a", "m", "\xed\xa0\x80", "\xf4\x90\x80\x80", "zz"};
    if (g) expect(g, ny, 4, nn, 5);
    gram_free(g);
}

static const char *refuse_gbnf(const char *text) {
    static char err[256];
    gram *g = NULL;
    const sov_status st = gram_from_gbnf(text, strlen(text), &g, err, sizeof err);
    CHECK_MSG(st != SOV_OK && g == NULL && err[0] && !strchr(err, '\n'), "%s: %s", text, err);
    gram_free(g);
    return err;
}

static void gbnf_errors_name_line_and_problem(void) {
    CHECK(strstr(refuse_gbnf("root ::= foo\n"), "'foo'"));
    CHECK(strstr(refuse_gbnf("rot ::= \"a\"\n"), "root"));
    CHECK(strstr(refuse_gbnf("root ::= \"a\n"), "unclosed"));
    CHECK(strstr(refuse_gbnf("root ::= \"a\"\nx ::= [b\n"), "unclosed '['"));
    CHECK(strstr(refuse_gbnf("root ::= \"a\"\nx ::= @\n"), "line 2 column 7"));
    CHECK(strstr(refuse_gbnf("root ::= (\"a\"\n"), "'('"));
    CHECK(strstr(refuse_gbnf("root ::= \"a\"{3,1}\n"), "{m,n}"));
    CHECK(strstr(refuse_gbnf("root ::= \"\\q\"\n"), "escape"));
    CHECK(strstr(refuse_gbnf("root ::= root \"a\" | \"b\"\n"), "left-recursive"));
    CHECK(strstr(refuse_gbnf("root ::= \"a\"\nroot ::= \"b\"\n"), "twice"));
    CHECK(strstr(refuse_gbnf("root \"a\"\n"), "::="));
    CHECK(strstr(refuse_gbnf("root ::= \"a\" )\n"), "')'"));
}

static void gbnf_corpus_fails_cleanly_or_compiles(void) {
    const char *data = getenv("SOV_TEST_DATA");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/grammar/gbnf", data ? data : "tests");
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return;
    int n_bad = 0, n_good = 0;
    for (struct dirent *e; (e = readdir(d));) {
        const bool bad = strncmp(e->d_name, "bad_", 4) == 0, good = strncmp(e->d_name, "good_", 5) == 0;
        if (!bad && !good) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len = 0;
        char *text = read_file(path, &len);
        if (!text) continue;
        gram *g = NULL;
        char err[256] = "";
        const sov_status st = gram_from_gbnf(text, len, &g, err, sizeof err);
        if (bad) CHECK_MSG(st != SOV_OK && !g && err[0] && !strchr(err, '\n'), "%s: %s", e->d_name, err);
        else CHECK_MSG(st == SOV_OK && g, "%s: %s", e->d_name, err);
        n_bad += bad;
        n_good += good;
        gram_free(g);
        free(text);
    }
    closedir(d);
    CHECK(n_bad >= 10 && n_good >= 3);
}

int main(void) {
    RUN(object_schema_accepts_and_rejects);
    RUN(scalars_numbers_and_unions);
    RUN(integer_ranges_are_exact);
    RUN(string_formats);
    RUN(patterns_search_like_ecma_regexes);
    RUN(refs_recurse_and_json_object_is_any_object);
    RUN(unsupported_and_malformed_schemas_name_the_problem);
    RUN(corpus_schemas_fail_cleanly_or_compile);
    RUN(mask_matches_scalar_reference_spm);
    RUN(mask_matches_scalar_reference_bpe);
    RUN(random_walks_through_masks_parse);
    RUN(budget_closes_documents_in_time);
    RUN(gbnf_grammars_accept_and_reject);
    RUN(gbnf_errors_name_line_and_problem);
    RUN(gbnf_corpus_fails_cleanly_or_compiles);
    TEST_EXIT();
}
