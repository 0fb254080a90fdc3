/* test_policy.c - the policy file parser (src/policy/policy.c): the example in
 * docs/POLICY.md parses to what the page says, every key's accepted spellings and
 * defaults, and every malformed file of tests/policy/corpus/ fails with its line and a
 * message saying what to write (the same corpus seeds fuzz/fuzz_policy.c). */
#include <dirent.h>
#include <errno.h>

#include "policy/policy.h"
#include "test.h"

static const char *data_dir(void) {
    const char *d = getenv("SOV_TEST_DATA");
    return d ? d : "tests";
}

static sov_status parse(const char *text, sov_policy *p) {
    *p = policy_default();
    return policy_parse(text, strlen(text), "p.toml", p);
}

/* Parses text, expecting a failure whose message starts with "p.toml:LINE: " and holds
 * fragment. */
static void expect_error(const char *text, int line, const char *fragment) {
    sov_policy p = policy_default();
    p.retention_days = 1234; /* must stay untouched on failure */
    const sov_status st = policy_parse(text, strlen(text), "p.toml", &p);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "p.toml:%d: ", line);
    const char *msg = sov_last_error();
    CHECK_MSG(st == SOV_ERR_FORMAT, "'%s' should fail", text);
    CHECK_MSG(strncmp(msg, prefix, strlen(prefix)) == 0 && strstr(msg, fragment),
              "'%s': got '%s', want '%s...%s'", text, msg, prefix, fragment);
    CHECK_MSG(!strchr(msg, '\n'), "one line: '%s'", msg);
    CHECK(p.retention_days == 1234);
}

static void empty_file_is_the_default_policy(void) {
    sov_policy p;
    const sov_policy d = policy_default();
    CHECK_EQ(parse("", &p), SOV_OK);
    CHECK(memcmp(&p, &d, sizeof p) == 0);
    CHECK_EQ(parse("# only a comment\n\n   \t\n", &p), SOV_OK);
    CHECK(memcmp(&p, &d, sizeof p) == 0);
    CHECK_EQ(policy_parse(NULL, 0, NULL, &p), SOV_OK);
    CHECK_EQ(d.retention, POLICY_RETAIN_HASHES);
    CHECK_EQ(d.redact, POLICY_REDACT_ALL);
    CHECK(!d.redact_prompts && !d.allow_egress && !d.require_signed_models && d.region[0] == '\0');
}

/* The first ```toml block of docs/POLICY.md, which the page calls the complete example. */
static void documented_example_parses(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/../docs/POLICY.md", data_dir());
    FILE *f = fopen(path, "rb");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    if (!f) return;
    static char doc[1 << 16];
    const size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    char *start = strstr(doc, "```toml\n");
    char *end = start ? strstr(start + 8, "```") : NULL;
    CHECK_MSG(start && end, "docs/POLICY.md has a ```toml example");
    if (!start || !end) return;
    start += 8;
    sov_policy p;
    const sov_status st = policy_parse(start, (size_t)(end - start), "POLICY.md", &p);
    CHECK_MSG(st == SOV_OK, "%s", sov_last_error());
    CHECK_EQ(p.retention, POLICY_RETAIN_FULL);
    CHECK_EQ(p.retention_days, 30);
    CHECK_STREQ(p.region, "KR-Seoul-1");
    CHECK(p.require_signed_models);
    CHECK(!p.allow_egress);
    CHECK_EQ(p.redact, POLICY_REDACT_ALL);
    CHECK(p.redact_prompts);
}

static void every_key_and_value(void) {
    sov_policy p;
    CHECK_EQ(parse("retention = \"none\"", &p), SOV_OK);
    CHECK_EQ(p.retention, POLICY_RETAIN_NONE);
    CHECK_EQ(parse("retention = \"hashes\"\n", &p), SOV_OK);
    CHECK_EQ(p.retention, POLICY_RETAIN_HASHES);
    CHECK_EQ(parse("retention = \"full\"\nretention_days = 3650\n", &p), SOV_OK);
    CHECK(p.retention == POLICY_RETAIN_FULL && p.retention_days == 3650);
    CHECK_EQ(parse("retention_days = 1\nretention = \"full\"\n", &p), SOV_OK); /* order is free */
    CHECK_EQ(p.retention_days, 1);
    CHECK_EQ(parse("region = \"eu-west/fra:1.a_b\"", &p), SOV_OK);
    CHECK_STREQ(p.region, "eu-west/fra:1.a_b");
    char r64[100];
    snprintf(r64, sizeof r64, "region = \"%s\"",
             "0123456789012345678901234567890123456789012345678901234567890123");
    CHECK_EQ(parse(r64, &p), SOV_OK);
    CHECK_EQ(strlen(p.region), 64);
    CHECK_EQ(parse("require_signed_models = true\nallow_egress = true\nredact_prompts = true", &p), SOV_OK);
    CHECK(p.require_signed_models && p.allow_egress && p.redact_prompts);
    CHECK_EQ(parse("require_signed_models = false\nallow_egress = false\nredact_prompts = false", &p),
             SOV_OK);
    CHECK(!p.require_signed_models && !p.allow_egress && !p.redact_prompts);
    CHECK_EQ(parse("redact = []", &p), SOV_OK);
    CHECK_EQ(p.redact, 0);
    CHECK_EQ(parse("redact = [\"ip\", \"email\",]", &p), SOV_OK); /* a trailing comma, as TOML */
    CHECK_EQ(p.redact, POLICY_REDACT_IP | POLICY_REDACT_EMAIL);
    CHECK_EQ(parse("redact = [ \"phone\" , \"rrn\" , \"card\" ]", &p), SOV_OK);
    CHECK_EQ(p.redact, POLICY_REDACT_PHONE | POLICY_REDACT_RRN | POLICY_REDACT_CARD);
}

static void layout_is_forgiving_where_toml_is(void) {
    sov_policy p;
    CHECK_EQ(parse("region=\"A\"", &p), SOV_OK); /* no blanks */
    CHECK_STREQ(p.region, "A");
    CHECK_EQ(parse("\t region \t=\t\"B\"\t# the node's label\n", &p), SOV_OK);
    CHECK_STREQ(p.region, "B");
    CHECK_EQ(parse("region = \"C\" # \"D\" = [ a comment may hold anything", &p), SOV_OK);
    CHECK_STREQ(p.region, "C");
    expect_error("region = \"C#1\"", 1, "region may hold only"); /* a # inside a string is not a comment */
    CHECK_EQ(parse("\xEF\xBB\xBFregion = \"D\"\r\nallow_egress = true\r\n", &p), SOV_OK); /* BOM, CRLF */
    CHECK(strcmp(p.region, "D") == 0 && p.allow_egress);
    CHECK_EQ(parse("redact = [\"ip\"] # comment\n# 한국어 주석도 됩니다\n", &p), SOV_OK);
    CHECK_EQ(p.redact, POLICY_REDACT_IP);
    CHECK_EQ(parse("allow_egress = true", &p), SOV_OK); /* no final line break */
    CHECK(p.allow_egress);
}

static void errors_name_the_line_and_the_fix(void) {
    expect_error("region = \"A\"\n\n\nretension = \"full\"\n", 4,
                 "unknown key 'retension' (did you mean 'retention'?)");
    expect_error("colour = \"red\"", 1, "keys: retention, retention_days, region");
    expect_error("region = \"A\"\nregion = \"B\"", 2, "'region' is set twice (first on line 1)");
    expect_error("retention = \"ful\"", 1, "retention must be \"none\", \"hashes\" or \"full\", not \"ful\"");
    expect_error("retention = full", 1, "must be a string in double quotes");
    expect_error("# x\nretention = \"full\"\nregion = \"A\"", 2, "needs retention_days = N");
    expect_error("retention = \"none\"\nretention_days = 3", 2,
                 "retention_days applies only with retention = \"full\"");
    expect_error("retention = \"full\"\nretention_days = 3651", 2, "from 1 to 3650");
    expect_error("retention = \"full\"\nretention_days = 1e3", 2, "whole number of days");
    expect_error("region = \"A\" \"B\"", 1, "unexpected '\"B\"' after the value of 'region'");
    expect_error("region = \"A", 1, "unterminated string");
    expect_error("region = \"\"", 1, "must not be empty");
    expect_error("region = \"A\\\"B\"", 1, "escape sequences");
    expect_error("region = \"A B\"", 1, "region may hold only");
    expect_error("allow_egress = 1", 1, "must be true or false");
    expect_error("allow_egress = truee", 1, "must be true or false");
    expect_error("allow_egress =", 1, "missing value for 'allow_egress'");
    expect_error("redact = [\"email\", \"mail\"]", 1, "unknown redaction kind \"mail\"");
    expect_error("redact = [\"email\"", 1, "must end with ']' on the same line");
    expect_error("[section]", 1, "tables");
    expect_error("a.b = 1", 1, "dotted keys");
    expect_error("region", 1, "expected '=' after 'region'");
    expect_error("x\xff = 1", 1, "is not UTF-8");
}

static void limits_are_enforced(void) {
    static char big[POLICY_MAX_BYTES + 2];
    memset(big, '#', sizeof big);
    sov_policy p;
    CHECK_EQ(policy_parse(big, sizeof big, "big.toml", &p), SOV_ERR_FORMAT);
    CHECK(strstr(sov_last_error(), "big.toml: ") == sov_last_error());
    char line[POLICY_MAX_LINE + 16];
    memset(line, '#', sizeof line);
    line[sizeof line - 1] = '\0';
    expect_error(line, 1, "longer than 1024 bytes");
    line[POLICY_MAX_LINE] = '\0'; /* exactly the limit is fine */
    CHECK_EQ(parse(line, &p), SOV_OK);
    const char nul[] = "region = \"A\"\0x";
    CHECK_EQ(policy_parse(nul, sizeof nul - 1, "n.toml", &p), SOV_ERR_FORMAT);
    CHECK(strstr(sov_last_error(), "n.toml:1: NUL byte"));
}

/* Each corpus file, its line and a fragment of its message. */
static const struct {
    const char *file;
    int line;
    const char *fragment;
} corpus[] = {
    {"bool-capital.toml", 1, "must be true or false"},
    {"bool-number.toml", 1, "must be true or false"},
    {"bool-quoted.toml", 1, "must be true or false (lower case, no quotes)"},
    {"bool-yes.toml", 1, "must be true or false"},
    {"case-key.toml", 1, "unknown key 'Region' (did you mean 'region'?)"},
    {"control-in-string.toml", 1, "control character 0x01"},
    {"crlf-bad-value.toml", 2, "not \"forever\""},
    {"days-float.toml", 2, "whole number of days"},
    {"days-negative.toml", 2, "from 1 to 3650"},
    {"days-quoted.toml", 2, "whole number of days"},
    {"days-too-many.toml", 2, "from 1 to 3650"},
    {"days-with-unit.toml", 2, "not 30d"},
    {"days-without-full.toml", 2, "applies only with retention = \"full\""},
    {"days-without-retention.toml", 1, "retention is not set"},
    {"days-zero.toml", 2, "from 1 to 3650"},
    {"dotted-key.toml", 1, "dotted keys"},
    {"duplicate-key.toml", 3, "set twice (first on line 1)"},
    {"escape-in-string.toml", 1, "escape sequences"},
    {"full-without-days.toml", 2, "needs retention_days"},
    {"json-instead.toml", 1, "expected a key"},
    {"lone-cr.toml", 1, "unexpected"},
    {"long-line.toml", 1, "longer than 1024 bytes"},
    {"missing-equals.toml", 1, "expected '=' after 'region'"},
    {"missing-key.toml", 1, "a key is missing before '='"},
    {"missing-value-comment.toml", 1, "missing value for 'region'"},
    {"missing-value.toml", 1, "missing value for 'region'"},
    {"not-utf8-overlong.toml", 1, "byte 0xc0 at column 14 is not UTF-8"},
    {"not-utf8-surrogate.toml", 1, "not UTF-8"},
    {"not-utf8.toml", 1, "byte 0xe9 at column 4 is not UTF-8"},
    {"nul-byte.toml", 1, "NUL byte at column 22"},
    {"quoted-key.toml", 1, "quoted keys"},
    {"redact-bare-word.toml", 1, "goes in double quotes"},
    {"redact-duplicate-kind.toml", 1, "\"email\" is listed twice"},
    {"redact-garbage-after.toml", 1, "unexpected '[\"card\"]'"},
    {"redact-missing-comma.toml", 1, "expected ',' or ']' after \"email\""},
    {"redact-multiline.toml", 1, "on the same line"},
    {"redact-not-list.toml", 1, "must be a list of kinds"},
    {"redact-unclosed.toml", 1, "on the same line"},
    {"redact-unknown-kind.toml", 1, "unknown redaction kind \"ssn\""},
    {"region-empty.toml", 1, "must not be empty"},
    {"region-korean.toml", 2, "region may hold only"},
    {"region-quote-injection.toml", 1, "escape sequences"},
    {"region-space.toml", 1, "region may hold only"},
    {"region-too-long.toml", 1, "65 bytes; at most 64"},
    {"retention-bad-value.toml", 1, "not \"ful\""},
    {"retention-single-quotes.toml", 1, "needs double quotes"},
    {"retention-unquoted.toml", 1, "must be a string in double quotes"},
    {"table.toml", 1, "tables"},
    {"trailing-garbage-bool.toml", 1, "unexpected 'true'"},
    {"trailing-garbage.toml", 1, "unexpected 'extra'"},
    {"unknown-key-far.toml", 1, "unknown key 'log_level'; keys:"},
    {"unknown-key.toml", 3, "unknown key 'retension' (did you mean 'retention'?)"},
    {"unterminated-string.toml", 1, "unterminated string"},
    {"yaml-instead.toml", 1, "expected '=' after 'region'"},
};

static void malformed_corpus_fails_with_line_and_message(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/policy/corpus", data_dir());
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "cannot open %s", dir);
    if (!d) return;
    int files = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        files++;
        int idx = -1;
        for (size_t i = 0; i < SOV_ARRAY_LEN_T(corpus); i++)
            if (strcmp(corpus[i].file, e->d_name) == 0) idx = (int)i;
        CHECK_MSG(idx >= 0, "corpus file %s has no expected message in test_policy.c", e->d_name);
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        sov_policy p = policy_default();
        const sov_status st = policy_load(path, &p);
        CHECK_MSG(st == SOV_ERR_FORMAT, "%s should be refused", e->d_name);
        if (idx < 0) continue;
        char prefix[1500];
        snprintf(prefix, sizeof prefix, "%s:%d: ", path, corpus[idx].line);
        const char *msg = sov_last_error();
        CHECK_MSG(strncmp(msg, prefix, strlen(prefix)) == 0 && strstr(msg, corpus[idx].fragment),
                  "%s: got '%s', want line %d and '%s'", e->d_name, msg, corpus[idx].line,
                  corpus[idx].fragment);
        CHECK_MSG(!strchr(msg, '\n') && strlen(msg) < 400, "%s: one short line: '%s'", e->d_name, msg);
    }
    closedir(d);
    CHECK_EQ(files, (int)SOV_ARRAY_LEN_T(corpus));
}

static void load_reports_file_problems(void) {
    sov_policy p;
    CHECK_EQ(policy_load("/nonexistent/policy.toml", &p), SOV_ERR_IO);
    CHECK(strstr(sov_last_error(), "/nonexistent/policy.toml") && strstr(sov_last_error(), "No such file"));
    CHECK_EQ(policy_load("/", &p), SOV_ERR_IO); /* a directory */
    char path[512];
    test_tmp_path("policy_big.toml", path, sizeof path);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    for (int i = 0; i < POLICY_MAX_BYTES / 8 + 1; i++)
        fputs("# ......", f);
    fclose(f);
    CHECK_EQ(policy_load(path, &p), SOV_ERR_IO);
    CHECK(strstr(sov_last_error(), "larger than"));
    test_tmp_path("policy_ok.toml", path, sizeof path);
    f = fopen(path, "wb");
    if (!f) return;
    fputs("region = \"KR-Busan-2\"\nredact = [\"email\"]\n", f);
    fclose(f);
    CHECK_EQ(policy_load(path, &p), SOV_OK);
    CHECK(strcmp(p.region, "KR-Busan-2") == 0 && p.redact == POLICY_REDACT_EMAIL);
}

static void names_and_summary(void) {
    CHECK_STREQ(policy_retention_name(POLICY_RETAIN_NONE), "none");
    CHECK_STREQ(policy_retention_name(POLICY_RETAIN_FULL), "full");
    CHECK_STREQ(policy_redact_name(POLICY_REDACT_RRN), "rrn");
    CHECK(policy_redact_name(POLICY_REDACT_RRN | POLICY_REDACT_IP) == NULL);
    sov_policy p = policy_default();
    char buf[256];
    CHECK_STREQ(
        policy_describe(&p, buf, sizeof buf),
        "retention hashes, region (none), redact email,phone,rrn,card,ip (stored text; prompts as sent), "
        "unsigned models allowed, egress locked");
    CHECK_EQ(parse("retention = \"full\"\nretention_days = 7\nregion = \"KR-1\"\nredact = []\nredact_prompts "
                   "= true\n"
                   "require_signed_models = true\nallow_egress = true",
                   &p),
             SOV_OK);
    CHECK_STREQ(policy_describe(&p, buf, sizeof buf), "retention full for 7 days, region KR-1, redact "
                                                      "nothing (prompts too), signed models required, egress "
                                                      "allowed");
    char small[8];
    policy_describe(&p, small, sizeof small); /* cut, never overrun */
    CHECK_EQ(strlen(small), 7);
}

int main(void) {
    RUN(empty_file_is_the_default_policy);
    RUN(documented_example_parses);
    RUN(every_key_and_value);
    RUN(layout_is_forgiving_where_toml_is);
    RUN(errors_name_the_line_and_the_fix);
    RUN(limits_are_enforced);
    RUN(malformed_corpus_fails_with_line_and_message);
    RUN(load_reports_file_problems);
    RUN(names_and_summary);
    TEST_EXIT();
}
