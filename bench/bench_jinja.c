/* bench_jinja.c - chat-template cost: compile time of real templates (the biggest of the
 * corpus) and render time for a short chat and for a long conversation (200 messages of
 * ~500 bytes with tool calls, results and two tools offered), best of -r runs. A render
 * happens once per chat request, before prefill; it should cost microseconds to a few
 * milliseconds.
 *
 *   build/bench/bench_jinja [-r RUNS] [TEMPLATE_DIR]   (default tests/jinja/templates) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sov.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = '\0';
    *len = (size_t)n;
    return b;
}

static const char *TOOLS =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Current weather for a "
    "city.\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"unit\":{\"type\":"
    "\"string\","
    "\"enum\":[\"celsius\",\"fahrenheit\"]}},\"required\":[\"city\"]}}},{\"type\":\"function\",\"function\":"
    "{\"name\":\"search\",\"description\":\"Search the "
    "web.\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"query\":{\"type\":\"string\"}},\"required\":[\"query\"]}}}]";

/* system + n user/assistant turns (every fifth assistant turn a tool call and its result) */
static char *conversation(int n) {
    const char *text =
        "This is a fairly ordinary message of a long support conversation, with some detail about "
        "the customer's contract, the router model, the line tests that were run and what the next "
        "step should be. It goes on for a while so that the rendering has real text to copy around, "
        "as it would in production: roughly five hundred bytes per message in all of this one.";
    size_t cap = (size_t)n * 1200 + 256, at = 0;
    char *b = malloc(cap);
    at +=
        (size_t)snprintf(b + at, cap - at, "[{\"role\":\"system\",\"content\":\"You are a support agent.\"}");
    for (int i = 0; i < n; i++) {
        if (i % 2 == 0)
            at += (size_t)snprintf(b + at, cap - at, ",{\"role\":\"user\",\"content\":\"%d: %s\"}", i, text);
        else if (i % 10 == 5)
            at += (size_t)snprintf(
                b + at, cap - at,
                ",{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"call%05d\","
                "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":"
                "{\"city\":\"Paris\"}}}]},{\"role\":\"tool\",\"tool_call_id\":\"call%05d\","
                "\"name\":\"get_weather\",\"content\":\"21 C, clear\"},{\"role\":\"assistant\","
                "\"content\":\"%d: %s\"}",
                i, i, i, text);
        else
            at += (size_t)snprintf(b + at, cap - at, ",{\"role\":\"assistant\",\"content\":\"%d: %s\"}", i,
                                   text);
    }
    snprintf(b + at, cap - at, "]");
    return b;
}

static double best_render(const sov_chat_template *t, const char *msgs, const char *tools, int runs,
                          size_t *out_len, int *ok) {
    double best = 1e9;
    const char *names[] = {"enable_thinking"}, *vals[] = {"false"};
    const sov_chat_template_vars v = {.messages_json = msgs,
                                      .tools_json = tools,
                                      .bos_token = "<s>",
                                      .eos_token = "</s>",
                                      .add_generation_prompt = true,
                                      .extra_names = names,
                                      .extra_json = vals,
                                      .n_extra = 1,
                                      .now = 1764763200};
    *ok = 1;
    for (int r = 0; r < runs; r++) {
        char *out = NULL;
        const double t0 = now_s();
        const sov_status st = sov_chat_template_render(t, &v, &out, out_len);
        const double dt = now_s() - t0;
        free(out);
        if (st) {
            *ok = 0;
            return dt;
        }
        if (dt < best) best = dt;
    }
    return best;
}

int main(int argc, char **argv) {
    int runs = 20;
    const char *dir = "tests/jinja/templates";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-r") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else
            dir = argv[i];
    }
    static const char *const names[] = {"openai-gpt-oss-120b.jinja",
                                        "Qwen-Qwen3-0.6B.jinja",
                                        "meta-llama-Llama-3.1-8B-Instruct.jinja",
                                        "deepseek-ai-DeepSeek-V3.1.jinja",
                                        "moonshotai-Kimi-K2.jinja",
                                        "mistralai-Mistral-Nemo-Instruct-2407.jinja",
                                        "ibm-granite-granite-3.3-2B-Instruct.jinja",
                                        "google-gemma-2-2b-it.jinja"};
    char *short_chat = conversation(2), *long_chat = conversation(200);
    printf("%-44s %8s %11s %12s %14s %10s\n", "template", "bytes", "compile us", "render 3 us",
           "render 200 us", "prompt KB");
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        size_t len;
        char *src = slurp(path, &len);
        if (!src) {
            fprintf(stderr, "bench_jinja: cannot read %s\n", path);
            continue;
        }
        double cbest = 1e9;
        sov_chat_template *t = NULL;
        for (int r = 0; r < runs; r++) {
            sov_chat_template_free(t);
            const double t0 = now_s();
            if (sov_chat_template_compile(src, len, &t)) break;
            const double dt = now_s() - t0;
            if (dt < cbest) cbest = dt;
        }
        if (!t) {
            printf("%-44s does not compile: %s\n", names[k], sov_last_error());
            free(src);
            continue;
        }
        size_t n_short = 0, n_long = 0;
        int ok_s, ok_l;
        const double ts = best_render(t, short_chat, NULL, runs, &n_short, &ok_s);
        const double tl = best_render(t, long_chat, TOOLS, runs, &n_long, &ok_l);
        char short_s[32], long_s[32];
        snprintf(short_s, sizeof short_s, ok_s ? "%.1f" : "rejected", ts * 1e6);
        snprintf(long_s, sizeof long_s, ok_l ? "%.1f" : "rejected", tl * 1e6);
        printf("%-44s %8zu %11.1f %12s %14s %10.1f\n", names[k], len, cbest * 1e6, short_s, long_s,
               (double)n_long / 1024);
        sov_chat_template_free(t);
        free(src);
    }
    free(short_chat);
    free(long_chat);
    return 0;
}
