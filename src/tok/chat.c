/* chat.c - chat templates: recognising a model's tokenizer.chat_template by its markers
 * and rendering a conversation the way that family's template does.
 *
 * sov does not interpret Jinja; it recognises the template families in common use and
 * renders them with code, like llama.cpp's built-in renderers: a template is a fact about
 * how a model was trained, and the families are few. Rendering never emits the leading
 * BOS token text: tokenization adds BOS as the vocabulary asks, exactly once.
 *
 * Family detection looks for markers in this order (first match wins):
 *   <|im_start|>                          chatml (Qwen, SmolLM, ...); a default system
 *                                         message written into the template is kept
 *   [SYSTEM_PROMPT]                       mistral-v7
 *   [INST] with the official v1/v3 shape  mistral-v1 / mistral-v3
 *   [INST] otherwise                      llama2 (<<SYS>> when the template has it)
 *   <|assistant|> and <|end|>             phi3
 *   <|user|> and an end-of-text token     zephyr
 *   <start_of_turn>                       gemma
 *   ### Instruction: and <|EOT|>          deepseek
 *   <|start_header_id|>                   llama3 */
#include "tok/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "tok/tok.h"

static const char *const family_names[] = {"chatml", "llama3", "llama2", "llama2-sys", "mistral-v1", "mistral-v3",
                                           "mistral-v7", "phi3", "zephyr", "gemma", "deepseek", NULL};

const char *const *sov_chat_template_names(void) { return family_names; }

static bool has(const char *t, size_t len, const char *needle) {
    const size_t n = strlen(needle);
    if (n > len) return false;
    for (size_t i = 0; i + n <= len; i++)
        if (t[i] == needle[0] && memcmp(t + i, needle, n) == 0) return true;
    return false;
}

const char *chat_detect(const char *t, size_t len) {
    if (!t || len == 0) return NULL;
    if (has(t, len, "<|im_start|>")) return "chatml";
    if (has(t, len, "[SYSTEM_PROMPT]")) return "mistral-v7";
    if (has(t, len, "[INST]")) {
        if (has(t, len, "' [INST] ' + system_message") || has(t, len, "[AVAILABLE_TOOLS]"))
            return has(t, len, " [INST]") ? "mistral-v1" : "mistral-v3";
        return has(t, len, "<<SYS>>") ? "llama2-sys" : "llama2";
    }
    if (has(t, len, "<|assistant|>") && has(t, len, "<|end|>")) return "phi3";
    if (has(t, len, "<|user|>") && (has(t, len, "<|endoftext|>") || has(t, len, "eos_token"))) return "zephyr";
    if (has(t, len, "<start_of_turn>")) return "gemma";
    if (has(t, len, "### Instruction:") && has(t, len, "<|EOT|>")) return "deepseek";
    if (has(t, len, "<|start_header_id|>") && has(t, len, "<|end_header_id|>")) return "llama3";
    return NULL;
}

/* The default system message a chatml template writes when the conversation has none
 * (Qwen2: "You are a helpful assistant"): the text between "<|im_start|>system\n" and
 * "<|im_end|>" inside the template, when the template tests for a missing system
 * message. Copied to buf; false when there is none. */
bool chat_default_system(const char *t, size_t len, char *buf, size_t cap) {
    if (!t || !has(t, len, "!= 'system'")) return false;
    /* the opening, with a real newline (as GGUF files store Qwen2's template) or the
     * two-character escape \n (as Qwen2.5's template source writes it) */
    static const char *const opens[] = {"<|im_start|>system\n", "<|im_start|>system\\n"};
    for (size_t o = 0; o < 2; o++) {
        const size_t n = strlen(opens[o]);
        for (size_t i = 0; i + n <= len; i++) {
            if (memcmp(t + i, opens[o], n) != 0) continue;
            const char *s = t + i + n, *end = NULL;
            for (const char *p = s; p + 10 <= t + len; p++)
                if (memcmp(p, "<|im_end|>", 10) == 0) {
                    end = p;
                    break;
                }
            if (!end || (size_t)(end - s) >= cap) continue;
            bool plain = true; /* a literal, not an expression */
            for (const char *p = s; p < end; p++)
                if (*p == '{' || *p == '}' || *p == '\'' || *p == '"' || *p == '+' || *p == '\\') plain = false;
            if (!plain) continue;
            memcpy(buf, s, (size_t)(end - s));
            buf[end - s] = '\0';
            return true;
        }
    }
    return false;
}

/* ---- rendering ---- */

typedef struct out {
    char *buf;
    int32_t cap;
    int64_t len;
} out;

static void put_n(out *o, const char *s, size_t n) {
    if (o->buf && o->len < o->cap) {
        const int64_t room = o->cap - o->len;
        memcpy(o->buf + o->len, s, (size_t)(n < (size_t)room ? (int64_t)n : room));
    }
    o->len += (int64_t)n;
}
static void put(out *o, const char *s) { put_n(o, s, strlen(s)); }

/* content with leading and trailing whitespace removed (as Jinja's trim) */
static void put_trim(out *o, const char *s) {
    size_t b = 0, e = strlen(s);
    while (b < e && (s[b] == ' ' || s[b] == '\n' || s[b] == '\t' || s[b] == '\r')) b++;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\n' || s[e - 1] == '\t' || s[e - 1] == '\r')) e--;
    put_n(o, s + b, e - b);
}

static bool is_role(const char *r, const char *want) { return strcmp(r, want) == 0; }

int32_t chat_render(const char *family, const chat_context *cx, const sov_chat_message *m, size_t n, bool gen,
                    char *buf, int32_t cap) {
    for (size_t i = 0; i < n; i++) {
        if (!m[i].role || !m[i].content)
            return -(int32_t)sov_fail(SOV_ERR_ARG, "chat: message %zu has no role or no content", i);
        if (!is_role(m[i].role, "system") && !is_role(m[i].role, "user") && !is_role(m[i].role, "assistant"))
            return -(int32_t)sov_fail(SOV_ERR_ARG, "chat: message %zu has role '%s' (system, user or assistant expected)",
                                      i, m[i].role);
    }
    const char *eos = cx && cx->eos_text ? cx->eos_text : "</s>";
    const char *bos = cx && cx->bos_text ? cx->bos_text : "<s>";
    out o = {buf, cap, 0};

    if (!strcmp(family, "chatml")) {
        if (cx && cx->default_system && (n == 0 || !is_role(m[0].role, "system"))) {
            put(&o, "<|im_start|>system\n");
            put(&o, cx->default_system);
            put(&o, "<|im_end|>\n");
        }
        for (size_t i = 0; i < n; i++) {
            put(&o, "<|im_start|>");
            put(&o, m[i].role);
            put(&o, "\n");
            put(&o, m[i].content);
            put(&o, "<|im_end|>\n");
        }
        if (gen) put(&o, "<|im_start|>assistant\n");
    } else if (!strcmp(family, "llama3")) {
        size_t first = 0;
        if (cx && cx->llama_date) {
            /* Llama 3.1+: the system turn always comes first, with the knowledge cut-off
             * and the date, then the (trimmed) system message if there is one */
            put(&o, "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: ");
            put(&o, cx->llama_date);
            put(&o, "\n\n");
            if (n > 0 && is_role(m[0].role, "system")) {
                put_trim(&o, m[0].content);
                first = 1;
            }
            put(&o, "<|eot_id|>");
        }
        for (size_t i = first; i < n; i++) {
            put(&o, "<|start_header_id|>");
            put(&o, m[i].role);
            put(&o, "<|end_header_id|>\n\n");
            put_trim(&o, m[i].content);
            put(&o, "<|eot_id|>");
        }
        if (gen) put(&o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    } else if (!strcmp(family, "llama2") || !strcmp(family, "llama2-sys")) {
        /* [INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST]assistant</s><s>[INST] user [/INST] */
        const bool sys = !strcmp(family, "llama2-sys");
        bool in_turn = true;
        put(&o, "[INST] ");
        for (size_t i = 0; i < n; i++) {
            if (!in_turn) {
                put(&o, bos);
                put(&o, "[INST] ");
                in_turn = true;
            }
            if (is_role(m[i].role, "system")) {
                if (sys) {
                    put(&o, "<<SYS>>\n");
                    put(&o, m[i].content);
                    put(&o, "\n<</SYS>>\n\n");
                } else {
                    put(&o, m[i].content);
                    put(&o, "\n");
                }
            } else if (is_role(m[i].role, "user")) {
                put(&o, m[i].content);
                put(&o, " [/INST]");
            } else {
                put(&o, m[i].content);
                put(&o, eos);
                in_turn = false;
            }
        }
    } else if (!strcmp(family, "mistral-v1") || !strcmp(family, "mistral-v3")) {
        const bool v1 = !strcmp(family, "mistral-v1");
        bool in_turn = false;
        for (size_t i = 0; i < n; i++) {
            if (!in_turn) {
                put(&o, v1 ? " [INST] " : "[INST] ");
                in_turn = true;
            }
            if (is_role(m[i].role, "system")) {
                put(&o, m[i].content);
                put(&o, "\n\n");
            } else if (is_role(m[i].role, "user")) {
                put(&o, m[i].content);
                put(&o, v1 ? " [/INST]" : "[/INST]");
            } else {
                put(&o, " ");
                if (v1) put(&o, m[i].content);
                else put_trim(&o, m[i].content);
                put(&o, eos);
                in_turn = false;
            }
        }
    } else if (!strcmp(family, "mistral-v7")) {
        for (size_t i = 0; i < n; i++) {
            if (is_role(m[i].role, "system")) {
                put(&o, "[SYSTEM_PROMPT] ");
                put(&o, m[i].content);
                put(&o, "[/SYSTEM_PROMPT]");
            } else if (is_role(m[i].role, "user")) {
                put(&o, "[INST] ");
                put(&o, m[i].content);
                put(&o, "[/INST]");
            } else {
                put(&o, " ");
                put(&o, m[i].content);
                put(&o, eos);
            }
        }
    } else if (!strcmp(family, "phi3")) {
        for (size_t i = 0; i < n; i++) {
            put(&o, "<|");
            put(&o, m[i].role);
            put(&o, "|>\n");
            put(&o, m[i].content);
            put(&o, "<|end|>\n");
        }
        if (gen) put(&o, "<|assistant|>\n");
    } else if (!strcmp(family, "zephyr")) {
        const char *end = cx && cx->zephyr_end ? cx->zephyr_end : eos;
        for (size_t i = 0; i < n; i++) {
            put(&o, "<|");
            put(&o, m[i].role);
            put(&o, "|>\n");
            put(&o, m[i].content);
            put(&o, end);
            put(&o, "\n");
        }
        if (gen) put(&o, "<|assistant|>\n");
    } else if (!strcmp(family, "gemma")) {
        /* no system role: system text opens the next user turn */
        const char *pending = NULL;
        for (size_t i = 0; i < n; i++) {
            if (is_role(m[i].role, "system")) {
                pending = m[i].content;
                continue;
            }
            const bool model = is_role(m[i].role, "assistant");
            put(&o, "<start_of_turn>");
            put(&o, model ? "model" : "user");
            put(&o, "\n");
            if (pending && !model) {
                put_trim(&o, pending);
                put(&o, "\n\n");
                pending = NULL;
            }
            put_trim(&o, m[i].content);
            put(&o, "<end_of_turn>\n");
        }
        if (gen) put(&o, "<start_of_turn>model\n");
    } else if (!strcmp(family, "deepseek")) {
        for (size_t i = 0; i < n; i++) {
            if (is_role(m[i].role, "system")) {
                put(&o, m[i].content);
            } else if (is_role(m[i].role, "user")) {
                put(&o, "### Instruction:\n");
                put(&o, m[i].content);
                put(&o, "\n");
            } else {
                put(&o, "### Response:\n");
                put(&o, m[i].content);
                put(&o, "\n<|EOT|>\n");
            }
        }
        if (gen) put(&o, "### Response:\n");
    } else {
        char names[256] = "";
        for (const char *const *p = family_names; *p; p++) {
            strncat(names, *p, sizeof names - strlen(names) - 1);
            if (p[1]) strncat(names, ", ", sizeof names - strlen(names) - 1);
        }
        return -(int32_t)sov_fail(SOV_ERR_NOT_FOUND, "chat: unknown template '%s' (known: %s)", family, names);
    }
    if (o.len > INT32_MAX - 1) return -(int32_t)sov_fail(SOV_ERR_ARG, "chat: conversation too long");
    if (buf && cap > 0) buf[o.len < cap ? o.len : cap - 1] = '\0';
    return (int32_t)o.len;
}

/* ---- the public wrappers ---- */

const char *sov_chat_template_detect(const sov_vocab *v) {
    size_t len;
    const char *t = tok_vocab_chat_template(v, &len);
    return chat_detect(t, len);
}

static const char *token_text(const sov_vocab *v, sov_token id, char *buf, size_t cap) {
    size_t len;
    const char *s = id >= 0 ? tok_vocab_token_text(v, id, &len) : NULL;
    if (!s || len >= cap) return NULL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return buf;
}

int32_t sov_chat_apply(const sov_vocab *v, const char *template_name, const sov_chat_message *messages,
                       size_t n_messages, bool add_generation_prompt, char *buf, int32_t cap) {
    size_t len = 0;
    const char *t = v ? tok_vocab_chat_template(v, &len) : NULL;
    const char *family = template_name ? template_name : chat_detect(t, len);
    if (!family) {
        return -(int32_t)sov_fail(SOV_ERR_NOT_FOUND,
                                  t ? "chat: the model's chat template is not one sov recognises; choose one with "
                                      "--chat-template (chatml, llama3, llama2, mistral-v3, gemma, zephyr, phi3, ...)"
                                    : "chat: the model has no chat template; choose one with --chat-template "
                                      "(chatml, llama3, llama2, mistral-v3, gemma, zephyr, phi3, ...)");
    }
    char sys[512], eos[64], bos[64];
    chat_context cx = {0};
    if (v) {
        cx.eos_text = token_text(v, sov_vocab_eos(v), eos, sizeof eos);
        cx.bos_text = token_text(v, sov_vocab_bos(v), bos, sizeof bos);
    }
    if (t && !strcmp(family, "chatml") && chat_default_system(t, len, sys, sizeof sys)) cx.default_system = sys;
    if (t && !strcmp(family, "zephyr") && has(t, len, "<|endoftext|>")) cx.zephyr_end = "<|endoftext|>";
    char date[32];
    if (t && !strcmp(family, "llama3") && has(t, len, "Cutting Knowledge Date")) {
        /* the template's own default: today's date where it can ask for it, else its constant */
        if (has(t, len, "strftime_now")) {
            const time_t now = time(NULL);
            struct tm tmv;
            gmtime_r(&now, &tmv);
            strftime(date, sizeof date, "%d %b %Y", &tmv);
            cx.llama_date = date;
        } else {
            cx.llama_date = "26 Jul 2024";
        }
    }
    return chat_render(family, &cx, messages, n_messages, add_generation_prompt, buf, cap);
}
