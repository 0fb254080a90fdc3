/* test_jinja_limits.c - a chat template comes from a model file, so it is outside input:
 * hostile and malformed templates (deep nesting, huge loops, range(10**9), runaway macro
 * recursion, string bombs, output floods, unterminated tags, unsupported constructs) must
 * end in a one-line error naming the line, never a crash, hang or unbounded memory; and
 * the same API renders good templates exactly. Also runs every file of tests/jinja/corpus
 * (the fuzz seeds): each must compile and render or fail cleanly. */
#include <dirent.h>
#include <time.h>

#include "sov.h"
#include "test.h"

static const char *MSGS =
    "[{\"role\":\"system\",\"content\":\"sys\"},{\"role\":\"user\",\"content\":\"hi\"}]";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* compile + render; returns the status, with the output or the error in buf */
static sov_status run(const char *src, size_t len, char *buf, size_t cap) {
    sov_chat_template *t = NULL;
    sov_status st = sov_chat_template_compile(src, len, &t);
    if (st) {
        snprintf(buf, cap, "%s", sov_last_error());
        return st;
    }
    const sov_chat_template_vars v = {.messages_json = MSGS,
                                      .bos_token = "<s>",
                                      .eos_token = "</s>",
                                      .add_generation_prompt = true,
                                      .now = 1764763200};
    char *out = NULL;
    size_t n = 0;
    st = sov_chat_template_render(t, &v, &out, &n);
    if (st)
        snprintf(buf, cap, "%s", sov_last_error());
    else
        snprintf(buf, cap, "%s", out);
    free(out);
    sov_chat_template_free(t);
    return st;
}

/* the template fails with a one-line message that holds want and names a line */
static void expect_error(const char *name, const char *src, size_t len, const char *want) {
    char msg[1024];
    const double t0 = now_s();
    const sov_status st = run(src, len, msg, sizeof msg);
    const double dt = now_s() - t0;
    CHECK_MSG(st != SOV_OK, "%s: rendered instead of failing", name);
    CHECK_MSG(strstr(msg, want) != NULL, "%s: error '%s' does not say '%s'", name, msg, want);
    CHECK_MSG(strstr(msg, "line ") != NULL || strstr(msg, "bytes") != NULL, "%s: error '%s' names no line",
              name, msg);
    CHECK_MSG(strchr(msg, '\n') == NULL, "%s: error is more than one line", name);
    fprintf(stderr, "  %-22s %6.1f ms  %s\n", name, dt * 1e3, msg);
}

static char *repeat_str(const char *a, size_t times, const char *mid, const char *b) {
    const size_t na = strlen(a), nb = strlen(b), nm = strlen(mid);
    char *s = malloc(na * times + nm + nb * times + 1), *p = s;
    for (size_t i = 0; i < times; i++, p += na)
        memcpy(p, a, na);
    memcpy(p, mid, nm);
    p += nm;
    for (size_t i = 0; i < times; i++, p += nb)
        memcpy(p, b, nb);
    *p = '\0';
    return s;
}

static void hostile_templates_fail_cleanly(void) {
    char *parens = repeat_str("(", 20000, "1", ")");
    char *wrapped = malloc(strlen(parens) + 8);
    sprintf(wrapped, "{{ %s }}", parens);
    expect_error("deep parentheses", wrapped, strlen(wrapped), "nested too deeply");
    char *ifs = repeat_str("{% if true %}", 5000, "x", "{% endif %}");
    expect_error("deep if blocks", ifs, strlen(ifs), "nested too deeply");
    char *nots = repeat_str("not ", 50000, "x", "");
    char *wn = malloc(strlen(nots) + 8);
    sprintf(wn, "{{ %s }}", nots);
    expect_error("deep not chain", wn, strlen(wn), "nested too deeply");
    char *many = repeat_str("{{ 1 }}", 120000, "", "");
    expect_error("AST too large", many, strlen(many), "AST nodes");
    char *huge = repeat_str("x", (1u << 20) + 1, "", "");
    expect_error("source too large", huge, strlen(huge), "bytes");
    free(parens), free(wrapped), free(ifs), free(nots), free(wn), free(many), free(huge);

    static const struct {
        const char *name, *src, *want;
    } cases[] = {
        {"range(10**9)", "{% for i in range(10**9) %}x{% endfor %}", "MAX_RANGE"},
        {"nested big loops",
         "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
         "loop iterations"},
        {"macro recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nested more than"},
        {"caller recursion", "{% macro f() %}{% call f() %}x{% endcall %}{% endmacro %}{{ f() }}",
         "nested more than"},
        {"string times 10**9", "{{ 'abc' * 1000000000 }}", "too large"},
        {"list times 10**9", "{{ [1, 2] * 1000000000 }}", "too large"},
        {"string doubling",
         "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
         "{% endfor %}{{ ns.s|length }}",
         "memory"},
        {"output flood",
         "{% for i in range(100000) %}{% for j in range(10) %}{{ 'y' * 1000 }}{% endfor %}{% endfor %}",
         "output"},
        {"integer overflow", "{{ 2 ** 100000 }}", "overflow"},
        {"quadratic membership",
         "{% set l = range(100000)|list %}{% for i in range(100000) %}{% if -1 in l %}{% endif %}{% endfor "
         "%}",
         "steps of work"},
        {"rescanning a big string",
         "{% set s = 'a' * 10000000 %}{% for i in range(100000) %}{% if 'b' in s %}{% endif %}{% endfor %}",
         "steps of work"},
        {"worst-case rsplit", "{% set s = 'a' * 4000000 %}{{ s.rsplit('a' * 2000000 + 'b') }}",
         "steps of work"},
        {"quadratic unique", "{{ range(100000)|unique|list|length }}", "steps of work"},
        {"unterminated {{", "hello {{ messages", "missing '}}'"},
        {"unterminated {%", "{% if true", "missing '%}'"},
        {"unterminated comment", "a {# b", "comment"},
        {"unterminated if", "{% if true %}x", "endif"},
        {"unterminated for", "{% for m in messages %}x", "endfor"},
        {"unterminated string", "{{ 'abc }}", "unterminated string"},
        {"unterminated raw", "{% raw %}abc", "raw"},
        {"stray endif", "x{% endif %}", "endif"},
        {"include", "{% include 'other.jinja' %}", "unsupported construct '{% include %}'"},
        {"extends", "{% extends 'base' %}", "unsupported construct '{% extends %}'"},
        {"recursive loop", "{% for m in messages recursive %}{% endfor %}", "recursive"},
        {"unknown filter", "{{ messages|shuffle }}", "no filter named 'shuffle'"},
        {"unknown test", "{% if x is prime %}{% endif %}", "no test named 'prime'"},
        {"raise_exception", "{{ raise_exception('Conversation roles must alternate') }}",
         "roles must alternate"},
        {"multi-line raise", "{{ raise_exception('first\\nsecond') }}", "first second"},
        {"undefined attribute", "{{ nothing.here }}", "'nothing' is undefined"},
        {"list.append (sandbox)", "{% set l = [] %}{{ l.append(1) }}", "unsafe"},
        {"bad character", "{{ 1 @ 2 }}", "unexpected character"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_error(cases[i].name, cases[i].src, strlen(cases[i].src), cases[i].want);
}

static void good_templates_render_exactly(void) {
    char out[1024];
    const char *chatml =
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    CHECK_EQ(run(chatml, strlen(chatml), out, sizeof out), SOV_OK);
    CHECK_STREQ(out,
                "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    const char *vars =
        "{{ bos_token }}{{ eos_token }}{{ tools is none }}{{ documents is none }}{{ nope is defined }}"
        "{{ strftime_now('%d %b %Y') }}";
    CHECK_EQ(run(vars, strlen(vars), out, sizeof out), SOV_OK);
    CHECK_STREQ(out, "<s></s>TrueTrueFalse03 Dec 2025");
    /* the limits leave room for real work: 50000 iterations, 64 nested calls */
    const char *busy = "{% set ns = namespace(n=0) %}{% for i in range(50000) %}{% set ns.n = ns.n + i %}{% "
                       "endfor %}{{ ns.n }}";
    CHECK_EQ(run(busy, strlen(busy), out, sizeof out), SOV_OK);
    CHECK_STREQ(out, "1249975000");
    const char *big =
        "{{ ('' * 10000000000)|length }}/{{ ([] * 10000000000)|length }}/"
        "{{ (range(100000)|list|sort(reverse=true))[0] }}/{{ ('ab' * 100000).split('b')|length }}";
    CHECK_EQ(run(big, strlen(big), out, sizeof out), SOV_OK);
    CHECK_STREQ(out, "0/0/99999/100001");
    const char *deep =
        "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% else %}bottom{% endif %}{% endmacro %}{{ f(60) }}";
    CHECK_EQ(run(deep, strlen(deep), out, sizeof out), SOV_OK);
    CHECK_STREQ(out, "bottom");
}

static void bad_variables_are_argument_errors(void) {
    sov_chat_template *t = NULL;
    CHECK_EQ(sov_chat_template_compile("{{ messages }}", 14, &t), SOV_OK);
    char *out = NULL;
    size_t n = 0;
    sov_chat_template_vars v = {.messages_json = "[{\"role\": \"user\", "};
    CHECK_EQ(sov_chat_template_render(t, &v, &out, &n), SOV_ERR_ARG);
    CHECK(strstr(sov_last_error(), "messages") != NULL);
    CHECK(out == NULL);
    v.messages_json = NULL;
    CHECK_EQ(sov_chat_template_render(t, &v, &out, &n), SOV_ERR_ARG);
    const char *names[] = {"enable_thinking"}, *vals[] = {"tru"};
    v = (sov_chat_template_vars){
        .messages_json = "[]", .extra_names = names, .extra_json = vals, .n_extra = 1};
    CHECK_EQ(sov_chat_template_render(t, &v, &out, &n), SOV_ERR_ARG);
    CHECK(strstr(sov_last_error(), "enable_thinking") != NULL);
    sov_chat_template_free(t);
    CHECK_EQ(sov_chat_template_compile(NULL, 0, &t), SOV_ERR_ARG);
}

/* every seed of the fuzz corpus: compiles and renders, or fails with one line */
static void corpus_files_never_crash(void) {
    const char *data = getenv("SOV_TEST_DATA");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/jinja/corpus", data ? data : "../tests");
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "no corpus folder %s", dir);
    if (!d) return;
    int files = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        char *buf = malloc(1 << 21);
        const size_t n = fread(buf, 1, (1 << 21) - 1, f);
        fclose(f);
        char msg[4096];
        const sov_status st = run(buf, n, msg, sizeof msg);
        if (st) CHECK_MSG(strchr(msg, '\n') == NULL && msg[0], "%s: error not one line: %s", e->d_name, msg);
        free(buf);
        files++;
    }
    closedir(d);
    CHECK(files >= 5);
}

int main(void) {
    RUN(hostile_templates_fail_cleanly);
    RUN(good_templates_render_exactly);
    RUN(bad_variables_are_argument_errors);
    RUN(corpus_files_never_crash);
    TEST_EXIT();
}
