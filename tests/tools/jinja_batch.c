/* jinja_batch.c - renders many chat-template jobs in one process for the corpus test
 * (tests/jinja/test_templates.py): reads a JSON array of jobs from stdin, each
 * {"template": PATH, "messages": [...], "tools": [...]|null, "add_generation_prompt": bool,
 *  "bos": S, "eos": S, "vars": {...}, "now": N}, and prints a JSON array of
 * {"ok": true, "out": TEXT} or {"ok": false, "error": MESSAGE}. Compiled templates are
 * reused across jobs with the same path. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sov.h"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = '\0';
        *len = (size_t)n;
    }
    return b;
}

int main(void) {
    json_error_t e;
    json_t *jobs = json_loadf(stdin, 0, &e);
    if (!json_is_array(jobs)) {
        fprintf(stderr, "jinja_batch: bad input: %s\n", e.text);
        return 2;
    }
    json_t *results = json_array();
    char *cur_path = NULL;
    sov_chat_template *t = NULL;
    sov_status compile_st = SOV_OK;
    char compile_err[600] = "";
    size_t i;
    json_t *job;
    json_array_foreach(jobs, i, job) {
        const char *path = json_string_value(json_object_get(job, "template"));
        if (!path) return 2;
        if (!cur_path || strcmp(cur_path, path) != 0) {
            sov_chat_template_free(t);
            t = NULL;
            free(cur_path);
            cur_path = strdup(path);
            size_t len = 0;
            char *src = slurp(path, &len);
            if (!src) return 2;
            compile_st = sov_chat_template_compile(src, len, &t);
            snprintf(compile_err, sizeof compile_err, "%s", sov_last_error());
            free(src);
        }
        json_t *r = json_object();
        if (compile_st) {
            json_object_set_new(r, "ok", json_false());
            json_object_set_new(r, "error", json_string(compile_err));
            json_array_append_new(results, r);
            continue;
        }
        char *msgs = json_dumps(json_object_get(job, "messages"), JSON_ENCODE_ANY);
        json_t *tj = json_object_get(job, "tools");
        char *tools = tj && !json_is_null(tj) ? json_dumps(tj, JSON_ENCODE_ANY) : NULL;
        json_t *vars = json_object_get(job, "vars");
        const char *names[64], *vals[64];
        char *owned[64];
        size_t nv = 0;
        const char *k;
        json_t *v;
        json_object_foreach(vars, k, v) {
            if (nv == 64) break;
            names[nv] = k;
            owned[nv] = json_dumps(v, JSON_ENCODE_ANY);
            vals[nv] = owned[nv];
            nv++;
        }
        const sov_chat_template_vars cv = {.messages_json = msgs,
                                           .tools_json = tools,
                                           .bos_token = json_string_value(json_object_get(job, "bos")),
                                           .eos_token = json_string_value(json_object_get(job, "eos")),
                                           .add_generation_prompt =
                                               json_is_true(json_object_get(job, "add_generation_prompt")),
                                           .extra_names = names,
                                           .extra_json = vals,
                                           .n_extra = nv,
                                           .now = json_integer_value(json_object_get(job, "now"))};
        char *out = NULL;
        size_t len = 0;
        const sov_status st = sov_chat_template_render(t, &cv, &out, &len);
        json_object_set_new(r, "ok", json_boolean(st == SOV_OK));
        if (st == SOV_OK)
            json_object_set_new(r, "out", json_stringn(out, len));
        else
            json_object_set_new(r, "error", json_string(sov_last_error()));
        json_array_append_new(results, r);
        free(out);
        free(msgs);
        free(tools);
        for (size_t m = 0; m < nv; m++)
            free(owned[m]);
    }
    json_dumpf(results, stdout, JSON_ENCODE_ANY);
    json_decref(results);
    json_decref(jobs);
    sov_chat_template_free(t);
    free(cur_path);
    return 0;
}
