/* Chat templates. Renderings are compared byte for byte with what an independent Jinja
 * implementation (npm's @huggingface/jinja, through record_chat.mjs) made of the real
 * templates — Qwen2 and Phi-3 from the vocabulary files in ../shared (these run the full
 * path: detection, default system message, rendering), Qwen2.5, Phi-3.5, Llama 3.1/3.2 and
 * Gemma 2 from their published templates (rendered with the family the test names).
 * Also: detection by markers for every family, errors, and short buffers. */
#include "test.h"

#include "tok/chat.h"
#include "tok/tok.h"

typedef struct expect {
    char family[32], vocab[32], bos[64], eos[64], date[32], sys[256], conv[16];
    int gen;
    char *output;
    size_t output_len;
} expect;

static bool read_expect(const char *path, expect *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    memset(e, 0, sizeof *e);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!strncmp(line, "family ", 7)) snprintf(e->family, sizeof e->family, "%.*s", (int)sizeof e->family - 1, line + 7);
        else if (!strncmp(line, "vocab ", 6)) snprintf(e->vocab, sizeof e->vocab, "%.*s", (int)sizeof e->vocab - 1, line + 6);
        else if (!strncmp(line, "gen ", 4)) e->gen = atoi(line + 4);
        else if (!strncmp(line, "bos ", 4)) snprintf(e->bos, sizeof e->bos, "%.*s", (int)sizeof e->bos - 1, line + 4);
        else if (!strncmp(line, "eos ", 4)) snprintf(e->eos, sizeof e->eos, "%.*s", (int)sizeof e->eos - 1, line + 4);
        else if (!strncmp(line, "date ", 5)) snprintf(e->date, sizeof e->date, "%.*s", (int)sizeof e->date - 1, line + 5);
        else if (!strncmp(line, "conv ", 5)) snprintf(e->conv, sizeof e->conv, "%.*s", (int)sizeof e->conv - 1, line + 5);
        else if (!strncmp(line, "default_system ", 15)) {
            size_t n = strlen(line + 15); /* a JSON string of plain text: strip the quotes */
            snprintf(e->sys, sizeof e->sys, "%.*s", (int)(n >= 2 ? n - 2 : 0), line + 16);
        } else if (!strncmp(line, "output ", 7)) {
            e->output_len = (size_t)atol(line + 7);
            e->output = malloc(e->output_len + 1);
            e->output[fread(e->output, 1, e->output_len, f)] = '\0';
            break;
        }
    }
    fclose(f);
    return e->output != NULL;
}

static const sov_chat_message conv_user[] = {{"user", "Hello! 안녕하세요?"}};
static const sov_chat_message conv_full[] = {{"system", "You are terse.\n"},
                                             {"user", "What is 2+2?"},
                                             {"assistant", " 4. "},
                                             {"user", "And 3+3?"}};
static const sov_chat_message conv_nosys[] = {
    {"user", "Name a color."}, {"assistant", "Blue."}, {"user", "Another?"}};

static void conversation(const char *name, const sov_chat_message **m, size_t *n) {
    if (!strcmp(name, "user")) *m = conv_user, *n = 1;
    else if (!strcmp(name, "full")) *m = conv_full, *n = 4;
    else *m = conv_nosys, *n = 3;
}

static void check_case(const char *file) {
    char path[600];
    snprintf(path, sizeof path, "%s/tok/expected_chat/%s", getenv("SOV_TEST_DATA"), file);
    expect e;
    if (!read_expect(path, &e)) {
        CHECK_MSG(0, "cannot read %s", path);
        return;
    }
    const sov_chat_message *m;
    size_t n;
    conversation(e.conv, &m, &n);
    char out[4096];
    int32_t len;
    if (strcmp(e.vocab, "-") != 0) { /* the full path through a real vocabulary */
        char rel[128], buf[600];
        snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", e.vocab);
        const char *vp = test_shared_model(rel, buf, sizeof buf);
        if (!vp) {
            fprintf(stderr, "  (%s skipped: no shared models)\n", file);
            free(e.output);
            return;
        }
        sov_vocab *v;
        CHECK_EQ(sov_vocab_load(vp, &v), SOV_OK);
        CHECK_STREQ(sov_chat_template_detect(v), e.family);
        len = sov_chat_apply(v, NULL, m, n, e.gen, out, sizeof out);
        sov_vocab_free(v);
    } else {
        chat_context cx = {e.bos, e.eos, e.sys[0] ? e.sys : NULL, NULL, NULL};
        if (!strcmp(e.family, "llama3")) cx.llama_date = e.date;
        len = chat_render(e.family, &cx, m, n, e.gen, out, sizeof out);
    }
    CHECK_MSG(len == (int32_t)e.output_len && memcmp(out, e.output, e.output_len) == 0,
              "%s: rendered %d bytes:\n%s\n--- expected %zu bytes:\n%s", file, len, len > 0 ? out : "", e.output_len,
              e.output);
    free(e.output);
}

static void renderings_equal_the_real_templates(void) {
    static const char *const cases[] = {"qwen2-user.txt",    "qwen2-full.txt",    "qwen2-nogen.txt",
                                        "phi3-user.txt",     "phi3-nosys.txt",    "qwen2.5-full.txt",
                                        "qwen2.5-user.txt",  "phi3.5-full.txt",   "llama3.1-full.txt",
                                        "llama3.1-user.txt", "llama3.2-nosys.txt", "gemma2-nosys.txt"};
    for (size_t i = 0; i < SOV_ARRAY_LEN_T(cases); i++) check_case(cases[i]);
}

static void families_are_detected_by_their_markers(void) {
    static const struct {
        const char *tmpl, *family;
    } cases[] = {
        {"{{'<|im_start|>' + message['role']}}", "chatml"},
        {"{{ '<|start_header_id|>' + role + '<|end_header_id|>' }}", "llama3"},
        {"{{ bos_token + '[INST] <<SYS>>\\n' }}", "llama2-sys"},
        {"{{ '[INST] ' + content + ' [/INST]' }}", "llama2"},
        {"{{ ' [INST] ' + system_message }}[AVAILABLE_TOOLS]", "mistral-v1"},
        {"{{ '[INST]' }}[AVAILABLE_TOOLS]", "mistral-v3"},
        {"[SYSTEM_PROMPT]{{ system }}[/SYSTEM_PROMPT][INST]", "mistral-v7"},
        {"{{'<|user|>\\n' + content + '<|end|>\\n<|assistant|>\\n'}}", "phi3"},
        {"{{ '<|user|>\\n' + content + eos_token }}", "zephyr"},
        {"{{ '<start_of_turn>' + role }}", "gemma"},
        {"### Instruction:\\n{{content}}<|EOT|>", "deepseek"},
        {"{{ message.content }}", NULL},
        {"", NULL},
    };
    for (size_t i = 0; i < SOV_ARRAY_LEN_T(cases); i++) {
        const char *got = chat_detect(cases[i].tmpl, strlen(cases[i].tmpl));
        CHECK_MSG((got == NULL && cases[i].family == NULL) ||
                      (got && cases[i].family && !strcmp(got, cases[i].family)),
                  "'%s' detected as %s", cases[i].tmpl, got ? got : "(none)");
    }
}

static void every_family_renders_every_role(void) {
    for (const char *const *f = sov_chat_template_names(); *f; f++) {
        char out[2048];
        const int32_t n = chat_render(*f, NULL, conv_full, 4, true, out, sizeof out);
        CHECK_MSG(n > 0 && strstr(out, "What is 2+2?") && strstr(out, "And 3+3?") && strstr(out, "4."),
                  "family %s: %s", *f, n > 0 ? out : sov_last_error());
    }
    /* a few exact shapes the families are known for */
    char out[512];
    chat_render("gemma", NULL, conv_full, 4, true, out, sizeof out);
    CHECK_STREQ(out, "<start_of_turn>user\nYou are terse.\n\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4."
                     "<end_of_turn>\n<start_of_turn>user\nAnd 3+3?<end_of_turn>\n<start_of_turn>model\n");
    chat_render("llama2-sys", NULL, conv_full, 4, false, out, sizeof out);
    CHECK_STREQ(out, "[INST] <<SYS>>\nYou are terse.\n\n<</SYS>>\n\nWhat is 2+2? [/INST] 4. </s><s>[INST] And 3+3? [/INST]");
    chat_render("zephyr", NULL, conv_user, 1, true, out, sizeof out);
    CHECK_STREQ(out, "<|user|>\nHello! 안녕하세요?</s>\n<|assistant|>\n");
}

static void errors_and_short_buffers(void) {
    const sov_chat_message bad[] = {{"robot", "hi"}};
    CHECK_EQ(chat_render("chatml", NULL, bad, 1, true, NULL, 0), -(int32_t)SOV_ERR_ARG);
    CHECK(strstr(sov_last_error(), "robot") != NULL);
    CHECK_EQ(chat_render("nonesuch", NULL, conv_user, 1, true, NULL, 0), -(int32_t)SOV_ERR_NOT_FOUND);
    CHECK(strstr(sov_last_error(), "chatml") != NULL); /* lists the known names */
    char small[8];
    const int32_t full = chat_render("chatml", NULL, conv_user, 1, true, NULL, 0);
    CHECK(full > 8);
    CHECK_EQ(chat_render("chatml", NULL, conv_user, 1, true, small, sizeof small), full);
    CHECK(small[7] == '\0' && !strncmp(small, "<|im_st", 7));
}

static void vocabulary_without_template_asks_for_one(void) {
    char buf[600];
    const char *vp = test_shared_model("vocab/ggml-vocab-llama-spm.gguf", buf, sizeof buf);
    if (!vp) return;
    sov_vocab *v;
    CHECK_EQ(sov_vocab_load(vp, &v), SOV_OK);
    CHECK(sov_chat_template_detect(v) == NULL);
    CHECK_EQ(sov_chat_apply(v, NULL, conv_user, 1, true, NULL, 0), -(int32_t)SOV_ERR_NOT_FOUND);
    CHECK(strstr(sov_last_error(), "--chat-template") != NULL);
    char out[256];
    CHECK(sov_chat_apply(v, "llama2", conv_user, 1, true, out, sizeof out) > 0); /* the override */
    CHECK_STREQ(out, "[INST] Hello! 안녕하세요? [/INST]");
    sov_vocab_free(v);
}

int main(void) {
    RUN(renderings_equal_the_real_templates);
    RUN(families_are_detected_by_their_markers);
    RUN(every_family_renders_every_role);
    RUN(errors_and_short_buffers);
    RUN(vocabulary_without_template_asks_for_one);
    TEST_EXIT();
}
