/* test_reply.c - replies taken apart into content, reasoning and tool calls, for every
 * format in reply.h, written as the models write them (the markers come from their chat
 * templates); malformed calls kept as content; and streaming: fed in pieces of every size
 * (one byte, every split point, random splits), the deltas add up to the whole parse, and
 * nothing sent is ever taken back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply/reply.h"
#include "test.h"

typedef struct want_call {
    const char *name, *args, *id; /* id NULL: generated (call_ + 24) */
} want_call;

typedef struct reply_case {
    const char *what;
    reply_format format;
    bool think, starts_thinking;
    const char *text;
    const char *content, *reasoning;
    want_call calls[3];
} reply_case;

#define DS(x) "<\xef\xbd\x9c" x "\xef\xbd\x9c>"
#define DSB "\xe2\x96\x81"

static const reply_case cases[] = {
    {"plain text", REPLY_PLAIN, false, false, "Hello there.\n", "Hello there.\n", "", {{0}}},
    {"hermes: one call", REPLY_HERMES, false, false,
     "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Seoul\", \"days\": 3}}\n</tool_call>", "", "",
     {{"get_weather", "{\"city\": \"Seoul\", \"days\": 3}", NULL}}},
    {"hermes: text, two parallel calls", REPLY_HERMES, false, false,
     "Let me check both.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n"
     "{\"name\": \"b\", \"arguments\": {\"x\": [1, 2]}}\n</tool_call>",
     "Let me check both.", "", {{"a", "{}", NULL}, {"b", "{\"x\": [1, 2]}", NULL}}},
    {"hermes: arguments as a string, parameters key", REPLY_HERMES, false, false,
     "<tool_call>{\"name\": \"f\", \"parameters\": \"{\\\"q\\\": \\\"\xed\x95\x9c\xea\xb5\xad\\\"}\"}</tool_call>", "", "",
     {{"f", "{\"q\": \"\xed\x95\x9c\xea\xb5\xad\"}", NULL}}},
    {"hermes: bad JSON stays content", REPLY_HERMES, false, false,
     "Sure <tool_call>{\"name\": \"f\", \"arguments\": {oops}}</tool_call> done",
     "Sure <tool_call>{\"name\": \"f\", \"arguments\": {oops}}</tool_call> done", "", {{0}}},
    {"hermes: no name stays content", REPLY_HERMES, false, false, "<tool_call>{\"arguments\": {}}</tool_call>",
     "<tool_call>{\"arguments\": {}}</tool_call>", "", {{0}}},
    {"hermes: unclosed call at the end stays content", REPLY_HERMES, false, false,
     "ok <tool_call>{\"name\": \"f\", \"argu", "ok <tool_call>{\"name\": \"f\", \"argu", "", {{0}}},
    {"qwen3: thinking then a call", REPLY_HERMES, true, false,
     "<think>\nThe user wants weather.\n</think>\n\n<tool_call>\n{\"name\": \"w\", \"arguments\": {\"c\": \"Busan\"}}\n"
     "</tool_call>",
     "", "The user wants weather.", {{"w", "{\"c\": \"Busan\"}", NULL}}},
    {"qwen3: thinking then an answer", REPLY_HERMES, true, false, "<think>\nHmm.\n</think>\n\nThe answer is 4.",
     "The answer is 4.", "Hmm.", {{0}}},
    {"qwen3: empty thinking", REPLY_PLAIN, true, false, "<think>\n\n</think>\n\nHi!", "Hi!", "", {{0}}},
    {"r1: the prompt opened <think>", REPLY_PLAIN, true, true, "Let me see... 2+2=4.\n</think>\n\n**4**", "**4**",
     "Let me see... 2+2=4.", {{0}}},
    {"r1: thinking cut off by the length limit", REPLY_PLAIN, true, true, "Still thinking about", "",
     "Still thinking about", {{0}}},
    {"no think tags in a thinking model's answer", REPLY_PLAIN, true, false, "Plain answer.", "Plain answer.", "",
     {{0}}},
    {"qwen xml: two parameters, one multi-line", REPLY_QWEN_XML, false, false,
     "<tool_call>\n<function=write_file>\n<parameter=path>\n/tmp/a.txt\n</parameter>\n<parameter=text>\nline 1\nline "
     "2\n</parameter>\n<parameter=mode>\n420\n</parameter>\n</function>\n</tool_call>",
     "", "", {{"write_file", "{\"path\": \"/tmp/a.txt\", \"text\": \"line 1\\nline 2\", \"mode\": 420}", NULL}}},
    {"qwen xml: malformed stays content", REPLY_QWEN_XML, false, false,
     "<tool_call>\n<function=f>\n<parameter=x>1</function>\n</tool_call>",
     "<tool_call>\n<function=f>\n<parameter=x>1</function>\n</tool_call>", "", {{0}}},
    {"glm", REPLY_GLM, true, false,
     "<think>plan</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>\xeb\xb6\x80\xec\x82\xb0</arg_"
     "value>\n<arg_key>days</arg_key>\n<arg_value>2</arg_value>\n</tool_call>",
     "", "plan", {{"get_weather", "{\"city\": \"\xeb\xb6\x80\xec\x82\xb0\", \"days\": 2}", NULL}}},
    {"llama 3.1: the whole reply a JSON call", REPLY_LLAMA3, false, false,
     "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Daejeon\"}}", "", "",
     {{"get_weather", "{\"city\": \"Daejeon\"}", NULL}}},
    {"llama 3.1: python_tag and two calls", REPLY_LLAMA3, false, false,
     "<|python_tag|>{\"type\": \"function\", \"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": "
     "{\"k\": true}}",
     "", "", {{"a", "{}", NULL}, {"b", "{\"k\": true}", NULL}}},
    {"llama 3.1: a JSON answer that is no call stays content", REPLY_LLAMA3, false, false, "{\"answer\": 42}",
     "{\"answer\": 42}", "", {{0}}},
    {"llama 3.1: text answer", REPLY_LLAMA3, false, false, "It is sunny.", "It is sunny.", "", {{0}}},
    {"functionary v3.1 <function=...>", REPLY_LLAMA3, false, false,
     "Checking.<function=lookup>{\"id\": 7}</function>", "Checking.", "", {{"lookup", "{\"id\": 7}", NULL}}},
    {"mistral v3: array with ids", REPLY_MISTRAL, false, false,
     "[TOOL_CALLS] [{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}, \"id\": \"aB3dE5gH7\"}, {\"name\": \"neg\", "
     "\"arguments\": {\"a\": 1}, \"id\": \"zZ9yY8xX7\"}]",
     "", "", {{"add", "{\"a\": 1, \"b\": 2}", "aB3dE5gH7"}, {"neg", "{\"a\": 1}", "zZ9yY8xX7"}}},
    {"mistral v11: name[ARGS]{...} twice", REPLY_MISTRAL, false, false,
     "[TOOL_CALLS]get_time[ARGS]{\"tz\": \"Asia/Seoul\"}[TOOL_CALLS]get_date[ARGS]{}", "", "",
     {{"get_time", "{\"tz\": \"Asia/Seoul\"}", NULL}, {"get_date", "{}", NULL}}},
    {"mistral: [CALL_ID]", REPLY_MISTRAL, false, false, "[TOOL_CALLS]f[CALL_ID]abc123XYZ[ARGS]{\"x\": null}", "", "",
     {{"f", "{\"x\": null}", "abc123XYZ"}}},
    {"mistral: garbage after the marker stays content", REPLY_MISTRAL, false, false, "[TOOL_CALLS] hello world",
     "[TOOL_CALLS] hello world", "", {{0}}},
    {"deepseek v3 / r1", REPLY_DEEPSEEK, true, true,
     "I should call it.</think>" DS("tool" DSB "calls" DSB "begin") DS("tool" DSB "call" DSB "begin") "function" DS(
         "tool" DSB "sep") "get_weather\n```json\n{\"location\": \"Tokyo\"}\n```" DS("tool" DSB "call" DSB
                                                                                       "end") DS("tool" DSB "calls" DSB
                                                                                                 "end"),
     "", "I should call it.", {{"get_weather", "{\"location\": \"Tokyo\"}", NULL}}},
    {"deepseek v3.1", REPLY_DEEPSEEK, false, false,
     "Sure." DS("tool" DSB "calls" DSB "begin") DS("tool" DSB "call" DSB "begin") "a" DS("tool" DSB "sep") "{\"x\": 1}" DS(
         "tool" DSB "call" DSB "end") DS("tool" DSB "call" DSB "begin") "b" DS("tool" DSB "sep") "{}" DS("tool" DSB "call" DSB
                                                                                                       "end") DS("tool" DSB
                                                                                                                 "calls" DSB
                                                                                                                 "end"),
     "Sure.", "", {{"a", "{\"x\": 1}", NULL}, {"b", "{}", NULL}}},
    {"gpt-oss: analysis, then a call", REPLY_HARMONY, false, false,
     "<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>commentary "
     "to=functions.get_weather <|constrain|>json<|message|>{\"location\":\"San Francisco\"}<|call|>",
     "", "Need the weather.", {{"get_weather", "{\"location\": \"San Francisco\"}", NULL}}},
    {"gpt-oss: analysis, then the final answer", REPLY_HARMONY, false, false,
     "<|channel|>analysis<|message|>Simple.<|end|><|start|>assistant<|channel|>final<|message|>Hello!<|return|>",
     "Hello!", "Simple.", {{0}}},
    {"gpt-oss: recipient before the channel", REPLY_HARMONY, false, false,
     " to=functions.lookup<|channel|>commentary json<|message|>{\"q\": \"x\"}<|call|>", "", "",
     {{"lookup", "{\"q\": \"x\"}", NULL}}},
    {"functionary v3.2: text then a call", REPLY_FUNCTIONARY, false, false,
     "all\nLet me look.\n>>>search\n{\"q\": \"kimchi\"}", "Let me look.", "", {{"search", "{\"q\": \"kimchi\"}", NULL}}},
    {"functionary v3.2: plain answer", REPLY_FUNCTIONARY, false, false, "all\nJust text.", "Just text.", "", {{0}}},
    {"granite", REPLY_GRANITE, false, false, "<|tool_call|>[{\"name\": \"f\", \"arguments\": {\"n\": 1.5}}]", "", "",
     {{"f", "{\"n\": 1.5}", NULL}}},
    {"kimi k2", REPLY_KIMI, false, false,
     "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": "
     "\"Beijing\"}<|tool_call_end|><|tool_call_begin|>functions.search:1<|tool_call_argument_begin|>{}<|tool_call_end|>"
     "<|tool_calls_section_end|>",
     "", "", {{"get_weather", "{\"city\": \"Beijing\"}", "functions.get_weather:0"}, {"search", "{}", "functions.search:1"}}},
    {"a marker of another format is text", REPLY_HERMES, false, false, "[TOOL_CALLS] not mine",
     "[TOOL_CALLS] not mine", "", {{0}}},
};

static size_t n_want(const reply_case *c) {
    size_t n = 0;
    while (n < 3 && c->calls[n].name) n++;
    return n;
}

static reply_params params_of(const reply_case *c) {
    return (reply_params){.format = c->format, .think_tags = c->think, .starts_thinking = c->starts_thinking,
                          .id_seed = 12345};
}

static bool good_id(const char *id) {
    if (strlen(id) != 29 || strncmp(id, "call_", 5) != 0) return false;
    for (int i = 5; i < 29; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') || (id[i] >= '0' && id[i] <= '9')))
            return false;
    return true;
}

static void test_whole_replies(void) {
    for (size_t i = 0; i < SOV_ARRAY_LEN_T(cases); i++) {
        const reply_case *c = &cases[i];
        const reply_params p = params_of(c);
        reply r;
        CHECK_EQ(reply_parse(&p, c->text, strlen(c->text), true, &r), SOV_OK);
        CHECK_MSG(strcmp(r.content, c->content) == 0, "%s: content \"%s\", want \"%s\"", c->what, r.content, c->content);
        CHECK_MSG(strcmp(r.reasoning, c->reasoning) == 0, "%s: reasoning \"%s\", want \"%s\"", c->what, r.reasoning,
                  c->reasoning);
        CHECK_MSG(r.n_calls == n_want(c), "%s: %zu calls, want %zu", c->what, r.n_calls, n_want(c));
        for (size_t k = 0; k < r.n_calls && k < n_want(c); k++) {
            CHECK_MSG(strcmp(r.calls[k].name, c->calls[k].name) == 0, "%s: call %zu name %s", c->what, k,
                      r.calls[k].name);
            CHECK_MSG(strcmp(r.calls[k].arguments, c->calls[k].args) == 0, "%s: call %zu arguments %s, want %s",
                      c->what, k, r.calls[k].arguments, c->calls[k].args);
            if (c->calls[k].id) CHECK_STREQ(r.calls[k].id, c->calls[k].id);
            else CHECK_MSG(good_id(r.calls[k].id), "%s: id %s", c->what, r.calls[k].id);
        }
        /* ids differ between calls and are the same at every parse */
        if (r.n_calls == 2) CHECK(strcmp(r.calls[0].id, r.calls[1].id) != 0);
        reply again;
        CHECK_EQ(reply_parse(&p, c->text, strlen(c->text), true, &again), SOV_OK);
        for (size_t k = 0; k < r.n_calls && k < again.n_calls; k++) CHECK_STREQ(r.calls[k].id, again.calls[k].id);
        reply_free(&again);
        reply_free(&r);
    }
}

/* Feeds text in the given piece sizes; checks that deltas add up to the whole parse. */
static bool stream_matches(const reply_case *c, const size_t *cuts, size_t n_cuts) {
    const reply_params p = params_of(c);
    reply whole;
    if (reply_parse(&p, c->text, strlen(c->text), true, &whole)) return false;
    reply_stream s;
    reply_stream_init(&s, &p);
    char content[4096] = "", reasoning[4096] = "";
    size_t cl = 0, rl = 0, calls = 0, at = 0;
    bool ok = true;
    const size_t len = strlen(c->text);
    for (size_t i = 0; i <= n_cuts && ok; i++) {
        const size_t to = i < n_cuts ? cuts[i] : len;
        reply_delta d;
        if (reply_stream_feed(&s, c->text + at, to - at, i == n_cuts, &d)) ok = false;
        at = to;
        if (!ok) break;
        if (cl + d.content_len >= sizeof content || rl + d.reasoning_len >= sizeof reasoning) ok = false;
        if (!ok) break;
        if (d.content_len) memcpy(content + cl, d.content, d.content_len);
        cl += d.content_len;
        if (d.reasoning_len) memcpy(reasoning + rl, d.reasoning, d.reasoning_len);
        rl += d.reasoning_len;
        if (d.n_calls) {
            ok = d.first_call == calls;
            for (size_t k = 0; ok && k < d.n_calls; k++) {
                const reply_call *w = &whole.calls[calls + k];
                ok = calls + k < whole.n_calls && !strcmp(d.calls[k].name, w->name) &&
                     !strcmp(d.calls[k].arguments, w->arguments) && !strcmp(d.calls[k].id, w->id);
            }
            calls += d.n_calls;
        }
        /* what was sent is a prefix of the whole: never taken back */
        ok = ok && cl <= whole.content_len && !memcmp(content, whole.content, cl) && rl <= whole.reasoning_len &&
             !memcmp(reasoning, whole.reasoning, rl);
    }
    ok = ok && cl == whole.content_len && rl == whole.reasoning_len && calls == whole.n_calls;
    if (!ok)
        fprintf(stderr, "  stream of \"%s\" (%zu pieces): content \"%.*s\" reasoning \"%.*s\" calls %zu\n", c->what,
                n_cuts + 1, (int)cl, content, (int)rl, reasoning, calls);
    reply_stream_free(&s);
    reply_free(&whole);
    return ok;
}

static void test_streaming(void) {
    size_t cuts[4096];
    unsigned seed = 1;
    for (size_t i = 0; i < SOV_ARRAY_LEN_T(cases); i++) {
        const reply_case *c = &cases[i];
        const size_t len = strlen(c->text);
        /* one byte at a time */
        for (size_t k = 0; k + 1 < len; k++) cuts[k] = k + 1;
        CHECK_MSG(stream_matches(c, cuts, len ? len - 1 : 0), "%s: bytewise", c->what);
        /* two pieces, at every point */
        bool all = true;
        for (size_t k = 0; k <= len; k++) {
            cuts[0] = k;
            all = all && stream_matches(c, cuts, 1);
        }
        CHECK_MSG(all, "%s: every split in two", c->what);
        /* random pieces */
        for (int round = 0; round < 20; round++) {
            size_t n = 0, at = 0;
            while (at < len) {
                seed = seed * 1103515245u + 12345u;
                at += 1 + (seed >> 16) % 7;
                if (at < len) cuts[n++] = at;
            }
            CHECK_MSG(stream_matches(c, cuts, n), "%s: random pieces (round %d)", c->what, round);
        }
    }
}

static void test_detect(void) {
    static const struct {
        const char *tmpl;
        reply_format f;
        bool think;
    } d[] = {
        {"{{'<|im_start|>'}}{% if tools %}<tool_call>\n{\"name\": ...}</tool_call>{% endif %}", REPLY_HERMES, false},
        {"<tool_call>{% if x %}<think>{% endif %}", REPLY_HERMES, true},
        {"<tool_call>\n<function=x>\n<parameter=y>", REPLY_QWEN_XML, false},
        {"<tool_call>{{ name }}<arg_key>{{k}}</arg_key>", REPLY_GLM, false},
        {"[INST]{% if tools %}[AVAILABLE_TOOLS]...[TOOL_CALLS]{% endif %}", REPLY_MISTRAL, false},
        {"<|start_header_id|>ipython<|end_header_id|>{% if tools %}", REPLY_LLAMA3, false},
        {"<|start|>assistant<|channel|>final<|message|><think>", REPLY_HARMONY, false},
        {">>>all\n", REPLY_FUNCTIONARY, false},
        {"<|tool_call|>", REPLY_GRANITE, false},
        {"<|tool_calls_section_begin|>", REPLY_KIMI, false},
        {DS("tool" DSB "calls" DSB "begin") "</think>", REPLY_DEEPSEEK, true},
        {"<|im_start|>user\n{{ content }}<|im_end|>", REPLY_PLAIN, false},
    };
    for (size_t i = 0; i < SOV_ARRAY_LEN_T(d); i++) {
        const reply_style s = reply_detect(d[i].tmpl, strlen(d[i].tmpl));
        CHECK_MSG(s.format == d[i].f, "template %zu: %s, want %s", i, reply_format_name(s.format),
                  reply_format_name(d[i].f));
        CHECK_EQ(s.think_tags, d[i].think);
    }
    CHECK(reply_prompt_opens_think("<|Assistant|><think>\n", 21));
    CHECK(!reply_prompt_opens_think("<think>\n\n</think>\n\n", 19));
    CHECK(!reply_prompt_opens_think("", 0));
}

/* Bytes that are no reply at all: never a crash, and content keeps every byte of text
 * outside recognised calls. */
static void test_garbage(void) {
    unsigned seed = 7;
    static const char *const atoms[] = {"<tool_call>", "</tool_call>", "[TOOL_CALLS]", "[ARGS]", "{", "}", "\"",
                                        "<think>", "</think>", "<|channel|>", "<|message|>", "<|end|>", " to=functions.",
                                        ">>>", "\n", "a", "<function=", "</function>", "<parameter=", "[", "]", ":"};
    char text[512];
    for (int round = 0; round < 3000; round++) {
        size_t n = 0;
        while (n < 400) {
            seed = seed * 1103515245u + 12345u;
            const char *a = atoms[(seed >> 16) % SOV_ARRAY_LEN_T(atoms)];
            const size_t k = strlen(a);
            memcpy(text + n, a, k);
            n += k;
            if ((seed >> 8) % 13 == 0) break;
        }
        for (int f = 0; f < REPLY_FORMAT_COUNT; f++) {
            const reply_params p = {.format = (reply_format)f, .think_tags = round % 2, .starts_thinking = round % 3 == 0};
            reply r;
            CHECK_EQ(reply_parse(&p, text, n, true, &r), SOV_OK);
            CHECK(r.content_len <= n && r.reasoning_len <= n && strlen(r.content) == r.content_len);
            reply_free(&r);
            reply_parse(&p, text, n, false, &r);
            reply_free(&r);
        }
    }
}

/* parallel_tool_calls false: the first call is kept, the others dropped (not content). */
static void test_max_calls(void) {
    const char *t = "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n<tool_call>{\"name\": \"b\", "
                    "\"arguments\": {}}</tool_call>";
    const reply_params p = {.format = REPLY_HERMES, .max_calls = 1};
    reply r;
    CHECK_EQ(reply_parse(&p, t, strlen(t), true, &r), SOV_OK);
    CHECK(r.n_calls == 1 && !strcmp(r.calls[0].name, "a") && r.content_len == 0);
    reply_free(&r);
}

/* A forced call's text (reply_call_form around schema-valid arguments) parses back as that
 * call and nothing else, in every format that has a form. */
static void test_call_forms(void) {
    int forms = 0;
    for (int f = 0; f < REPLY_FORMAT_COUNT; f++) {
        char *pre, *post;
        if (!reply_call_form((reply_format)f, "get_weather", &pre, &post)) continue;
        forms++;
        char text[512];
        snprintf(text, sizeof text, "%s{\"city\": \"Seoul\", \"n\": [1, 2]}%s", pre, post);
        const reply_params p = {.format = (reply_format)f, .id_seed = 3};
        reply r;
        CHECK_EQ(reply_parse(&p, text, strlen(text), true, &r), SOV_OK);
        CHECK_MSG(r.n_calls == 1 && !strcmp(r.calls[0].name, "get_weather") &&
                      !strcmp(r.calls[0].arguments, "{\"city\": \"Seoul\", \"n\": [1, 2]}") && r.content_len == 0,
                  "%s: the forced call's text \"%s\" gives %zu calls, content \"%s\"", reply_format_name((reply_format)f),
                  text, r.n_calls, r.content);
        reply_free(&r);
        free(pre);
        free(post);
    }
    CHECK_EQ(forms, 8);
    char *pre = NULL, *post = NULL;
    CHECK(!reply_call_form(REPLY_QWEN_XML, "f", &pre, &post) && !pre && !post);
    CHECK(!reply_call_form(REPLY_PLAIN, "f", &pre, &post));
}

/* Detection on real chat templates (the corpus of tests/jinja/templates). */
static void test_detect_real_templates(void) {
    static const struct {
        const char *file;
        reply_format f;
        bool think;
    } t[] = {
        {"Qwen-Qwen2.5-7B-Instruct.jinja", REPLY_HERMES, false},
        {"Qwen-Qwen3-0.6B.jinja", REPLY_HERMES, true},
        {"Qwen-QwQ-32B.jinja", REPLY_HERMES, true},
        {"Qwen3.5-4B.jinja", REPLY_QWEN_XML, true},
        {"Qwen3-Coder.jinja", REPLY_QWEN_XML, false},
        {"GLM-4.6.jinja", REPLY_GLM, true},
        {"meta-llama-Llama-3.1-8B-Instruct.jinja", REPLY_LLAMA3, false},
        {"meta-llama-Llama-3.3-70B-Instruct.jinja", REPLY_LLAMA3, false},
        {"meetkai-functionary-medium-v3.1.jinja", REPLY_LLAMA3, false},
        {"meetkai-functionary-medium-v3.2.jinja", REPLY_FUNCTIONARY, false},
        {"mistralai-Mistral-Nemo-Instruct-2407.jinja", REPLY_MISTRAL, false},
        {"Mistral-Small-3.2-24B-Instruct-2506.jinja", REPLY_MISTRAL, false},
        {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", REPLY_DEEPSEEK, true},
        {"deepseek-ai-DeepSeek-V3.1.jinja", REPLY_DEEPSEEK, true},
        {"openai-gpt-oss-120b.jinja", REPLY_HARMONY, false},
        {"ibm-granite-granite-3.3-2B-Instruct.jinja", REPLY_GRANITE, true},
        {"moonshotai-Kimi-K2.jinja", REPLY_KIMI, false},
        {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", REPLY_HERMES, false},
        {"google-gemma-2-2b-it.jinja", REPLY_PLAIN, false},
    };
    const char *dir = getenv("SOV_TEST_DATA");
    char path[1024];
    size_t found = 0;
    for (size_t i = 0; i < SOV_ARRAY_LEN_T(t); i++) {
        snprintf(path, sizeof path, "%s/jinja/templates/%s", dir ? dir : "tests", t[i].file);
        FILE *f = fopen(path, "rb");
        if (!f) {
            CHECK_MSG(false, "missing template %s", path);
            continue;
        }
        static char buf[1 << 20];
        const size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        found++;
        const reply_style st = reply_detect(buf, n);
        CHECK_MSG(st.format == t[i].f && st.think_tags == t[i].think, "%s: %s%s, want %s%s", t[i].file,
                  reply_format_name(st.format), st.think_tags ? "+think" : "", reply_format_name(t[i].f),
                  t[i].think ? "+think" : "");
    }
    CHECK_EQ(found, SOV_ARRAY_LEN_T(t));
}

int main(void) {
    RUN(test_whole_replies);
    RUN(test_streaming);
    RUN(test_detect);
    RUN(test_garbage);
    RUN(test_call_forms);
    RUN(test_max_calls);
    RUN(test_detect_real_templates);
    TEST_EXIT();
}
