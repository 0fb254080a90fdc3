/* test_chat_apply.c - sov_chat_template_apply, the call the server and `sov run` make:
 * role/content messages become the template's `messages`, the vocabulary's BOS/EOS texts
 * its bos_token/eos_token, and a leading BOS text is dropped exactly when tokenization
 * will add BOS itself, so the prompt's tokens hold BOS once. Checked by tokenizing. */
#include "sov.h"
#include "test.h"

static const char *TMPL = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}"
                          "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";

/* tokens of text as the server tokenizes prompts (BOS as the vocabulary asks) */
static int32_t count_bos(const sov_vocab *v, const char *text) {
    sov_token toks[512];
    const int32_t n = sov_tokenize(v, text, (int32_t)strlen(text), true, true, toks, 512);
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++)
        k += toks[i] == sov_vocab_bos(v);
    return k;
}

static void bos_appears_once(const char *vocab_file, bool vocab_adds_bos) {
    char path[1024];
    if (!test_shared_model(vocab_file, path, sizeof path)) {
        fprintf(stderr, "skipping %s: not present\n", vocab_file);
        return;
    }
    sov_vocab *v = NULL;
    CHECK_EQ(sov_vocab_load(path, &v), SOV_OK);
    if (!v) return;
    sov_chat_template *t = NULL;
    CHECK_EQ(sov_chat_template_compile(TMPL, strlen(TMPL), &t), SOV_OK);
    const sov_chat_message msgs[] = {{"system", "Be brief."}, {"user", "Hi ünïcödé \"quoted\""}};
    char *out = NULL;
    CHECK_EQ(sov_chat_template_apply(t, v, msgs, 2, true, &out), SOV_OK);
    char bos[64] = "", eos[64] = "";
    int32_t nb = sov_token_to_piece(v, sov_vocab_bos(v), true, bos, sizeof bos - 1);
    int32_t ne = sov_token_to_piece(v, sov_vocab_eos(v), true, eos, sizeof eos - 1);
    bos[nb > 0 ? nb : 0] = '\0';
    eos[ne > 0 ? ne : 0] = '\0';
    char want[512];
    snprintf(want, sizeof want, "%s<system>Be brief.%s<user>Hi ünïcödé \"quoted\"%s<assistant>",
             vocab_adds_bos ? "" : bos, eos, eos);
    CHECK_STREQ(out, want);
    if (out && bos[0]) CHECK_EQ(count_bos(v, out), 1);
    free(out);
    sov_chat_template_free(t);
    sov_vocab_free(v);
}

static void llama_spm_vocab_adds_bos(void) { bos_appears_once("vocab/ggml-vocab-llama-spm.gguf", true); }
static void phi3_vocab(void) { bos_appears_once("vocab/ggml-vocab-phi-3.gguf", true); }

static void vocab_chat_template_is_the_gguf_text(void) {
    char path[1024];
    if (!test_shared_model("vocab/ggml-vocab-qwen2.gguf", path, sizeof path)) return;
    sov_vocab *v = NULL;
    CHECK_EQ(sov_vocab_load(path, &v), SOV_OK);
    size_t len = 0;
    const char *src = sov_vocab_chat_template(v, &len);
    CHECK(src != NULL && len > 0);
    sov_chat_template *t = NULL;
    CHECK_EQ(sov_chat_template_compile(src, len, &t), SOV_OK);
    const sov_chat_message msgs[] = {{"user", "Hello"}};
    char *out = NULL;
    CHECK_EQ(sov_chat_template_apply(t, v, msgs, 1, true, &out), SOV_OK);
    /* Qwen2's template writes its default system message when there is none */
    CHECK_STREQ(
        out, "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
             "<|im_start|>assistant\n");
    free(out);
    sov_chat_template_free(t);
    sov_vocab_free(v);
    CHECK(sov_vocab_chat_template(NULL, &len) == NULL && len == 0);
}

int main(void) {
    RUN(llama_spm_vocab_adds_bos);
    RUN(phi3_vocab);
    RUN(vocab_chat_template_is_the_gguf_text);
    TEST_EXIT();
}
