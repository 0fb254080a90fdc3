/* api.c - the public face of the interpreter (sov_chat_template_*): compile and render
 * with Hugging Face's variables (messages, tools, documents, add_generation_prompt,
 * bos_token, eos_token, then any extra ones such as enable_thinking). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "jinja/jinja.h"
#include "sov.h"
#include "tok/tok.h"
#include "tok/tok_impl.h"

struct sov_chat_template {
    jinja_template *t;
    char *source; /* the text it was compiled from */
    size_t len;
};

/* Errors are one line: a template's raise_exception() text may hold newlines. */
static void one_line(char *err) {
    for (char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
}

sov_status sov_chat_template_compile(const char *source, size_t len, sov_chat_template **out) {
    *out = NULL;
    if (!source) return sov_fail(SOV_ERR_ARG, "chat template: no source");
    char err[JINJA_ERR];
    jinja_template *t = jinja_compile(source, len, err);
    if (!t) one_line(err);
    if (!t)
        return sov_fail(strstr(err, "unsupported") ? SOV_ERR_UNSUPPORTED : SOV_ERR_FORMAT,
                        "chat template: %s", err);
    sov_chat_template *ct = malloc(sizeof *ct);
    if (!ct) {
        jinja_template_free(t);
        return sov_fail(SOV_ERR_NOMEM, "chat template: out of memory");
    }
    ct->t = t;
    ct->source = malloc(len + 1);
    if (!ct->source) {
        jinja_template_free(t);
        free(ct);
        return sov_fail(SOV_ERR_NOMEM, "chat template: out of memory");
    }
    memcpy(ct->source, source, len);
    ct->source[len] = '\0';
    ct->len = len;
    *out = ct;
    return SOV_OK;
}

const char *sov_chat_template_source(const sov_chat_template *tmpl, size_t *len) {
    if (len) *len = tmpl ? tmpl->len : 0;
    return tmpl ? tmpl->source : NULL;
}

void sov_chat_template_free(sov_chat_template *tmpl) {
    if (!tmpl) return;
    jinja_template_free(tmpl->t);
    free(tmpl->source);
    free(tmpl);
}

/* a string as a JSON text (malloc'd) */
static char *json_quote(const char *s) {
    json_t *j = json_string(s);
    if (!j) return NULL;
    char *r = json_dumps(j, JSON_ENCODE_ANY);
    json_decref(j);
    return r;
}

sov_status sov_chat_template_render(const sov_chat_template *tmpl, const sov_chat_template_vars *v,
                                    char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    if (!tmpl || !v || !v->messages_json) return sov_fail(SOV_ERR_ARG, "chat template: no messages");
    if (v->n_extra > 64) return sov_fail(SOV_ERR_ARG, "chat template: more than 64 extra variables");
    jinja_var vars[6 + 64];
    size_t n = 0;
    char *bos = v->bos_token ? json_quote(v->bos_token) : NULL,
         *eos = v->eos_token ? json_quote(v->eos_token) : NULL;
    if ((v->bos_token && !bos) || (v->eos_token && !eos)) {
        free(bos);
        free(eos);
        return sov_fail(SOV_ERR_ARG, "chat template: BOS/EOS text is not valid UTF-8");
    }
    vars[n++] = (jinja_var){"messages", v->messages_json};
    vars[n++] = (jinja_var){"tools", v->tools_json};
    vars[n++] = (jinja_var){"documents", NULL};
    vars[n++] = (jinja_var){"add_generation_prompt", v->add_generation_prompt ? "true" : "false"};
    if (bos) vars[n++] = (jinja_var){"bos_token", bos};
    if (eos) vars[n++] = (jinja_var){"eos_token", eos};
    for (size_t i = 0; i < v->n_extra; i++)
        vars[n++] = (jinja_var){v->extra_names[i], v->extra_json[i]};
    const jinja_render_opts o = {v->max_output, v->now};
    char err[JINJA_ERR];
    size_t outlen = 0;
    const bool ok = jinja_render(tmpl->t, vars, n, &o, out, &outlen, err);
    free(bos);
    free(eos);
    if (!ok) one_line(err);
    if (!ok)
        return sov_fail(strncmp(err, "variable '", 10) == 0 ? SOV_ERR_ARG : SOV_ERR_FORMAT,
                        "chat template: %s", err);
    if (len) *len = outlen;
    return SOV_OK;
}

const char *sov_vocab_chat_template(const sov_vocab *vocab, size_t *len) {
    size_t n = 0;
    const char *t = vocab ? tok_vocab_chat_template(vocab, &n) : NULL;
    if (len) *len = t ? n : 0;
    return t && n ? t : NULL;
}

/* the text of a token (special pieces included), malloc'd; NULL when none */
static char *piece_text(const sov_vocab *v, sov_token t) {
    if (!v || t < 0) return NULL;
    const int32_t n = sov_token_to_piece(v, t, true, NULL, 0);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    sov_token_to_piece(v, t, true, s, n);
    s[n] = '\0';
    return s;
}

sov_status sov_chat_template_apply(const sov_chat_template *tmpl, const sov_vocab *vocab,
                                   const sov_chat_message *messages, size_t n_messages,
                                   bool add_generation_prompt, char **out) {
    *out = NULL;
    json_t *arr = json_array();
    for (size_t i = 0; i < n_messages && arr; i++) {
        json_t *m = json_object();
        json_t *role = json_string(messages[i].role ? messages[i].role : "");
        json_t *content = json_string(messages[i].content ? messages[i].content : "");
        if (!m || !role || !content) {
            json_decref(m), json_decref(role), json_decref(content), json_decref(arr);
            return sov_fail(SOV_ERR_ARG, "chat template: message %zu is not valid UTF-8", i);
        }
        json_object_set_new(m, "role", role);
        json_object_set_new(m, "content", content);
        json_array_append_new(arr, m);
    }
    char *msgs = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    if (!msgs) return sov_fail(SOV_ERR_NOMEM, "chat template: out of memory");
    const sov_status st = sov_chat_template_apply_json(tmpl, vocab, msgs, NULL, NULL, add_generation_prompt, out);
    free(msgs);
    return st;
}

sov_status sov_chat_template_apply_json(const sov_chat_template *tmpl, const sov_vocab *vocab,
                                        const char *messages_json, const char *tools_json, const char *vars_json,
                                        bool add_generation_prompt, char **out) {
    *out = NULL;
    /* the extra variables: an object's members, each as its JSON text */
    json_t *vars = vars_json ? json_loads(vars_json, 0, NULL) : NULL;
    if (vars_json && !json_is_object(vars)) {
        json_decref(vars);
        return sov_fail(SOV_ERR_ARG, "chat template: the extra variables are not a JSON object");
    }
    const size_t n_extra = vars ? json_object_size(vars) : 0;
    const char **names = calloc(n_extra ? n_extra : 1, sizeof *names);
    char **values = calloc(n_extra ? n_extra : 1, sizeof *values);
    size_t n = 0;
    bool ok = names && values;
    const char *key;
    json_t *val;
    json_object_foreach(vars, key, val) {
        if (!ok) break;
        names[n] = key;
        values[n] = json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY);
        ok = values[n++] != NULL;
    }
    char *bos = piece_text(vocab, vocab ? sov_vocab_bos(vocab) : -1);
    char *eos = piece_text(vocab, vocab ? sov_vocab_eos(vocab) : -1);
    sov_status st = SOV_OK;
    if (!ok) {
        st = sov_fail(SOV_ERR_NOMEM, "chat template: out of memory");
    } else {
        const sov_chat_template_vars v = {.messages_json = messages_json,
                                          .tools_json = tools_json,
                                          .bos_token = bos ? bos : "",
                                          .eos_token = eos ? eos : "",
                                          .add_generation_prompt = add_generation_prompt,
                                          .extra_names = names,
                                          .extra_json = (const char *const *)values,
                                          .n_extra = n};
        size_t len = 0;
        st = sov_chat_template_render(tmpl, &v, out, &len);
        if (!st && vocab && vocab->add_bos && bos && bos[0] && strncmp(*out, bos, strlen(bos)) == 0)
            memmove(*out, *out + strlen(bos), len - strlen(bos) + 1);
    }
    for (size_t i = 0; values && i < n; i++) free(values[i]);
    free(values);
    free(names);
    json_decref(vars);
    free(bos);
    free(eos);
    return st;
}
