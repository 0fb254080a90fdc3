/* embeddings.c - POST /v1/embeddings's wire format (see embeddings.h), with OpenAI's error
 * wording. The response is written by hand rather than through jansson: it is mostly
 * numbers (2048 inputs of 4096 floats would be 8 M json_t values), each printed with 9
 * significant digits, which is enough to give back the exact float32. */
#include "server/embeddings.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *kind_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static bool bad_input(oai_error *err, const char *fmt, const char *detail, size_t i) {
    char where[64];
    snprintf(where, sizeof where, fmt, i);
    return oai_fail(err, 400, "invalid_request_error", "input", "invalid_value", "Invalid '%s': %s", where,
                    detail);
}

static bool alloc_inputs(oai_embd_request *r, size_t n, bool text, oai_error *err) {
    r->n = (int32_t)n;
    if (text) {
        r->texts = calloc(n, sizeof *r->texts);
        r->text_len = calloc(n, sizeof *r->text_len);
    } else {
        r->toks = calloc(n, sizeof *r->toks);
        r->n_toks = calloc(n, sizeof *r->n_toks);
    }
    if (text ? r->texts && r->text_len : r->toks && r->n_toks) return true;
    return oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
}

/* One input of token ids from array a; name is how errors call it ("input", "input[3]"). */
static bool token_input(const json_t *a, int32_t n_vocab, const char *name, oai_embd_request *r, size_t k,
                        oai_error *err) {
    const size_t n = json_array_size(a);
    if (n == 0)
        return oai_fail(err, 400, "invalid_request_error", "input", "invalid_value",
                        "Invalid '%s': an input must hold at least one token.", name);
    if (n > (size_t)INT32_MAX / 8)
        return oai_fail(err, 400, "invalid_request_error", "input", "invalid_value",
                        "Invalid '%s': too long.", name);
    r->toks[k] = malloc(n * sizeof *r->toks[k]);
    if (!r->toks[k]) return oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *t = json_array_get(a, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= n_vocab)
            return oai_fail(err, 400, "invalid_request_error", "input", "invalid_value",
                            "Invalid '%s[%zu]': expected a token id from 0 to %d, got %s.", name, i,
                            n_vocab - 1, json_is_integer(t) ? "one outside that range" : kind_name(t));
        r->toks[k][i] = (sov_token)json_integer_value(t);
    }
    r->n_toks[k] = (int32_t)n;
    return true;
}

static bool text_input(const json_t *s, oai_embd_request *r, size_t k, oai_error *err) {
    const size_t len = json_string_length(s);
    if (len == 0) return bad_input(err, "input[%zu]", "an input must not be empty.", k);
    r->texts[k] = malloc(len + 1);
    if (!r->texts[k]) return oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    memcpy(r->texts[k], json_string_value(s), len + 1);
    r->text_len[k] = len;
    return true;
}

static bool parse_input(const json_t *in, int32_t n_vocab, oai_embd_request *r, oai_error *err) {
    if (!in || json_is_null(in))
        return oai_fail(err, 400, "invalid_request_error", "input", "missing_required_parameter",
                        "Missing required parameter: 'input'.");
    if (json_is_string(in)) {
        if (!alloc_inputs(r, 1, true, err)) return false;
        if (json_string_length(in) == 0)
            return oai_fail(err, 400, "invalid_request_error", "input", "invalid_value",
                            "Invalid 'input': an input must not be empty.");
        return text_input(in, r, 0, err);
    }
    if (!json_is_array(in))
        return oai_fail(
            err, 400, "invalid_request_error", "input", "invalid_type",
            "Invalid type for 'input': expected a string, an array of strings, an array of token ids "
            "or an array of arrays of token ids, but got %s instead.",
            kind_name(in));
    const size_t n = json_array_size(in);
    if (n == 0)
        return oai_fail(err, 400, "invalid_request_error", "input", "invalid_value",
                        "Invalid 'input': the array must not be empty.");
    const json_t *first = json_array_get(in, 0);
    if (json_is_integer(first)) { /* one input given as token ids */
        if (!alloc_inputs(r, 1, false, err)) return false;
        return token_input(in, n_vocab, "input", r, 0, err);
    }
    if (n > OAI_EMBD_MAX_INPUTS)
        return oai_fail(err, 400, "invalid_request_error", "input", "invalid_value",
                        "Invalid 'input': %zu inputs; at most %d are allowed per request.", n,
                        OAI_EMBD_MAX_INPUTS);
    const bool text = json_is_string(first);
    if (!text && !json_is_array(first))
        return bad_input(err, "input[%zu]", "expected a string, a token id or an array of token ids.", 0);
    if (!alloc_inputs(r, n, text, err)) return false;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(in, i);
        if (text && !json_is_string(v))
            return bad_input(err, "input[%zu]", "expected a string like the other inputs.", i);
        if (!text && !json_is_array(v))
            return bad_input(err, "input[%zu]", "expected an array of token ids like the other inputs.", i);
        char name[48];
        snprintf(name, sizeof name, "input[%zu]", i);
        if (text ? !text_input(v, r, i, err) : !token_input(v, n_vocab, name, r, i, err)) return false;
    }
    return true;
}

static bool parse_root(const json_t *root, int32_t n_vocab, oai_embd_request *r, oai_error *err) {
    if (!json_is_object(root))
        return oai_fail(err, 400, "invalid_request_error", NULL, "invalid_type",
                        "The request body must be a JSON object, not %s.", kind_name(root));
    const json_t *model = json_object_get(root, "model");
    if (model && !json_is_null(model)) {
        if (!json_is_string(model))
            return oai_fail(err, 400, "invalid_request_error", "model", "invalid_type",
                            "Invalid type for 'model': expected a string, but got %s instead.",
                            kind_name(model));
        r->model = strdup(json_string_value(model));
        if (!r->model) return oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    const json_t *fmt = json_object_get(root, "encoding_format");
    if (fmt && !json_is_null(fmt)) {
        if (!json_is_string(fmt))
            return oai_fail(err, 400, "invalid_request_error", "encoding_format", "invalid_type",
                            "Invalid type for 'encoding_format': expected a string, but got %s instead.",
                            kind_name(fmt));
        const char *f = json_string_value(fmt);
        if (strcmp(f, "base64") == 0)
            r->base64 = true;
        else if (strcmp(f, "float") != 0)
            return oai_fail(err, 400, "invalid_request_error", "encoding_format", "invalid_value",
                            "Invalid value for 'encoding_format': '%.40s' is not supported (float, base64).",
                            f);
    }
    const json_t *dim = json_object_get(root, "dimensions");
    if (dim && !json_is_null(dim)) {
        if (!json_is_integer(dim) || json_integer_value(dim) < 1)
            return oai_fail(err, 400, "invalid_request_error", "dimensions", "invalid_value",
                            "Invalid 'dimensions': expected a positive integer.");
        r->dimensions = json_integer_value(dim);
    }
    return parse_input(json_object_get(root, "input"), n_vocab, r, err);
}

bool oai_embd_parse(const char *body, size_t len, int32_t n_vocab, oai_embd_request *out, oai_error *err) {
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    out->dimensions = -1;
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    if (!root)
        return oai_fail(err, 400, "invalid_request_error", NULL, "invalid_json",
                        "The request body is not valid JSON: %s (line %d, column %d).", je.text, je.line,
                        je.column);
    const bool ok = parse_root(root, n_vocab, out, err);
    json_decref(root);
    if (!ok) {
        if (err->status == 0) oai_fail(err, 400, "invalid_request_error", NULL, NULL, "Invalid request.");
        oai_embd_request_free(out);
    }
    return ok;
}

void oai_embd_request_free(oai_embd_request *r) {
    for (int32_t i = 0; i < r->n; i++) {
        if (r->texts) free(r->texts[i]);
        if (r->toks) free(r->toks[i]);
    }
    free(r->texts);
    free(r->text_len);
    free(r->toks);
    free(r->n_toks);
    free(r->model);
    memset(r, 0, sizeof *r);
    r->dimensions = -1;
}

/* ---- the response ---- */

void oai_base64(const unsigned char *in, size_t n, char *out) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        const uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                           (i + 2 < n ? (uint32_t)in[i + 2] : 0);
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static char *sb_room(sbuf *b, size_t n) {
    if (b->oom) return NULL;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    return b->p + b->len;
}

static void sb_add(sbuf *b, const char *s, size_t n) {
    char *at = sb_room(b, n);
    if (!at) return;
    memcpy(at, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

char *oai_embd_json(const char *model, const float *vecs, int32_t n, int32_t E, bool base64,
                    int64_t prompt_tokens) {
    sbuf b = {0};
    json_t *m = json_string(model ? model : "");
    char *model_json = m ? json_dumps(m, JSON_ENCODE_ANY) : NULL; /* the id, quoted and escaped */
    json_decref(m);
    if (!model_json) return NULL;
    const size_t E_bytes = (size_t)E * 4;
    char *b64 = base64 ? malloc((E_bytes + 2) / 3 * 4 + 1) : NULL;
    unsigned char *raw = base64 ? malloc(E_bytes ? E_bytes : 1) : NULL;
    if (base64 && (!b64 || !raw)) b.oom = true;
    sb_str(&b, "{\"object\":\"list\",\"data\":[");
    char num[80];
    for (int32_t i = 0; i < n && !b.oom; i++) {
        snprintf(num, sizeof num, "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":", i ? "," : "",
                 (int)i);
        sb_str(&b, num);
        const float *v = vecs + (size_t)i * (size_t)E;
        if (base64) { /* little-endian float32, whatever this machine's byte order */
            for (int32_t k = 0; k < E; k++) {
                uint32_t u;
                memcpy(&u, &v[k], 4);
                for (int j = 0; j < 4; j++)
                    raw[(size_t)k * 4 + (size_t)j] = (unsigned char)(u >> (8 * j));
            }
            oai_base64(raw, E_bytes, b64);
            sb_str(&b, "\"");
            sb_str(&b, b64);
            sb_str(&b, "\"}");
            continue;
        }
        sb_str(&b, "[");
        for (int32_t k = 0; k < E; k++) {
            const int len = snprintf(num, sizeof num, "%s%.9g", k ? "," : "", (double)v[k]);
            sb_add(&b, num, (size_t)len);
        }
        sb_str(&b, "]}");
    }
    sb_str(&b, "],\"model\":");
    sb_str(&b, model_json);
    snprintf(num, sizeof num, ",\"usage\":{\"prompt_tokens\":%lld,", (long long)prompt_tokens);
    sb_str(&b, num);
    snprintf(num, sizeof num, "\"total_tokens\":%lld}}", (long long)prompt_tokens);
    sb_str(&b, num);
    free(model_json);
    free(b64);
    free(raw);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
