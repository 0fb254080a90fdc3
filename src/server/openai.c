/* openai.c - the OpenAI wire format (see openai.h): request parsing and checking with
 * OpenAI's error wording ("Invalid type for 'temperature': expected a number, but got a
 * string instead."), and response, chunk and error JSON. */
#include "server/openai.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"

bool oai_fail(oai_error *err, int status, const char *type, const char *param, const char *code, const char *fmt,
              ...) {
    err->status = status;
    err->type = type;
    err->param = param;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return false;
}

static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "something else";
}

static bool bad_type(oai_error *err, const char *key, const char *want, const json_t *v) {
    return oai_fail(err, 400, "invalid_request_error", key, "invalid_type",
                    "Invalid type for '%s': expected %s, but got %s instead.", key, want, type_name(v));
}

/* The field, or NULL when absent or null. */
static json_t *field(const json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return v && !json_is_null(v) ? v : NULL;
}

static bool get_bool(const json_t *o, const char *key, bool *out, oai_error *err) {
    const json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_boolean(v)) return bad_type(err, key, "a boolean", v);
    *out = json_is_true(v);
    return true;
}

static bool get_number(const json_t *o, const char *key, double lo, double hi, double *out, oai_error *err) {
    const json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_number(v)) return bad_type(err, key, "a number", v);
    const double d = json_number_value(v);
    if (!(d >= lo && d <= hi))
        return oai_fail(err, 400, "invalid_request_error", key, "invalid_value",
                        "Invalid '%s': expected a value between %g and %g, but got %g instead.", key, lo, hi, d);
    *out = d;
    return true;
}

/* Integers; a real with an integral value (3.0) counts. */
static bool get_int(const json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out, bool *given,
                    oai_error *err) {
    const json_t *v = field(o, key);
    if (!v) return true;
    int64_t n;
    if (json_is_integer(v)) {
        n = (int64_t)json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
               fabs(json_real_value(v)) < 9.0e15) {
        n = (int64_t)json_real_value(v);
    } else {
        return bad_type(err, key, "an integer", v);
    }
    if (n < lo || n > hi)
        return oai_fail(err, 400, "invalid_request_error", key, "invalid_value",
                        "Invalid '%s': expected an integer between %lld and %lld, but got %lld instead.", key,
                        (long long)lo, (long long)hi, (long long)n);
    *out = n;
    if (given) *given = true;
    return true;
}

static bool get_string(const json_t *o, const char *key, char **out, oai_error *err) {
    const json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_string(v)) return bad_type(err, key, "a string", v);
    *out = strdup(json_string_value(v));
    return *out ? true : oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
}

/* ---- messages and prompts ---- */

static bool message_content(const json_t *c, size_t idx, char **out, oai_error *err) {
    if (!c || json_is_null(c)) {
        *out = strdup("");
    } else if (json_is_string(c)) {
        *out = strdup(json_string_value(c));
    } else if (json_is_array(c)) {
        /* content parts: the text parts joined */
        size_t total = 0, i;
        json_t *part;
        json_array_foreach(c, i, part) {
            const json_t *type = json_object_get(part, "type");
            const json_t *text = json_object_get(part, "text");
            if (!json_is_object(part) || !json_is_string(type))
                return oai_fail(err, 400, "invalid_request_error", "messages", "invalid_type",
                                "Invalid 'messages[%zu].content[%zu]': expected an object with a 'type'.", idx, i);
            if (strcmp(json_string_value(type), "text") != 0)
                return oai_fail(err, 400, "invalid_request_error", "messages", "unsupported_content",
                                "Invalid 'messages[%zu].content[%zu]': only 'text' content parts are supported, "
                                "not '%s'.",
                                idx, i, json_string_value(type));
            if (!json_is_string(text))
                return oai_fail(err, 400, "invalid_request_error", "messages", "invalid_type",
                                "Invalid 'messages[%zu].content[%zu].text': expected a string.", idx, i);
            total += json_string_length(text);
        }
        *out = malloc(total + 1);
        if (*out) {
            size_t at = 0;
            json_array_foreach(c, i, part) {
                const json_t *text = json_object_get(part, "text");
                memcpy(*out + at, json_string_value(text), json_string_length(text));
                at += json_string_length(text);
            }
            (*out)[at] = '\0';
        }
    } else {
        return oai_fail(err, 400, "invalid_request_error", "messages", "invalid_type",
                        "Invalid type for 'messages[%zu].content': expected a string or an array of content parts, "
                        "but got %s instead.",
                        idx, type_name(c));
    }
    return *out ? true : oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
}

/* A call's arguments for a template: the object a JSON-text argument holds (templates
 * write arguments with tojson or iterate them), else the text as given. */
static json_t *template_arguments(const json_t *a) {
    if (json_is_string(a)) {
        json_t *o = json_loadb(json_string_value(a), json_string_length(a), 0, NULL);
        if (json_is_object(o)) return o;
        json_decref(o);
    }
    return json_deep_copy(a);
}

static bool good_tool_name(const char *s, size_t n) {
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return false;
    return true;
}

/* The messages as a template sees them (Hugging Face's shape): content as text (parts
 * joined), an assistant's tool_calls with arguments as objects, a tool result's
 * tool_call_id, which must answer a call made earlier in the conversation. */
static bool messages_json(const json_t *m, oai_request *r, oai_error *err) {
    json_t *out = json_array(), *ids = json_object();
    bool ok = out && ids;
    for (size_t i = 0; ok && i < r->n_msgs; i++) {
        const json_t *msg = json_array_get(m, i);
        json_t *o = json_object();
        const char *role = r->msgs[i].role;
        json_object_set_new(o, "role", json_string(role));
        const json_t *calls = json_object_get(msg, "tool_calls");
        const bool null_content = !json_object_get(msg, "content") || json_is_null(json_object_get(msg, "content"));
        if (calls && !json_is_null(calls)) {
            if (strcmp(role, "assistant") != 0 || !json_is_array(calls) || json_array_size(calls) == 0) {
                ok = oai_fail(err, 400, "invalid_request_error", "messages", "invalid_value",
                              "Invalid 'messages[%zu].tool_calls': a non-empty array, on an assistant message.", i);
                json_decref(o);
                break;
            }
            json_t *tc = json_array();
            for (size_t k = 0; ok && k < json_array_size(calls); k++) {
                const json_t *c = json_array_get(calls, k), *fn = json_object_get(c, "function");
                const json_t *id = json_object_get(c, "id"), *name = json_object_get(fn, "name");
                const json_t *args = json_object_get(fn, "arguments");
                if (!json_is_string(id) || !json_is_string(name) || !(json_is_string(args) || json_is_object(args))) {
                    ok = oai_fail(err, 400, "invalid_request_error", "messages", "invalid_value",
                                  "Invalid 'messages[%zu].tool_calls[%zu]': needs an 'id' and a 'function' with a "
                                  "'name' and 'arguments'.",
                                  i, k);
                    break;
                }
                json_t *f = json_object(), *call = json_object();
                json_object_set_new(f, "name", json_deep_copy(name));
                json_object_set_new(f, "arguments", template_arguments(args));
                json_object_set_new(call, "id", json_deep_copy(id));
                json_object_set_new(call, "type", json_string("function"));
                json_object_set_new(call, "function", f);
                json_array_append_new(tc, call);
                json_object_set_new(ids, json_string_value(id), json_true());
            }
            json_object_set_new(o, "tool_calls", tc);
            r->has_tool_turns = true;
        }
        if (!ok) {
            json_decref(o);
            break;
        }
        json_object_set_new(o, "content",
                            null_content && strcmp(role, "assistant") == 0 && calls && !json_is_null(calls) ? json_null()
                                                                                     : json_string(r->msgs[i].content));
        const json_t *reasoning = json_object_get(msg, "reasoning_content");
        if (json_is_string(reasoning)) json_object_set_new(o, "reasoning_content", json_deep_copy(reasoning));
        if (strcmp(role, "tool") == 0) {
            const json_t *id = json_object_get(msg, "tool_call_id");
            if (!json_is_string(id)) {
                ok = oai_fail(err, 400, "invalid_request_error", "messages", "missing_required_parameter",
                              "Missing required parameter: 'messages[%zu].tool_call_id'.", i);
            } else if (!json_object_get(ids, json_string_value(id))) {
                ok = oai_fail(err, 400, "invalid_request_error", "messages", "invalid_value",
                              "Invalid 'messages[%zu].tool_call_id': '%.64s' answers no earlier tool call.", i,
                              json_string_value(id));
            } else {
                json_object_set_new(o, "tool_call_id", json_deep_copy(id));
                const json_t *name = json_object_get(msg, "name");
                if (json_is_string(name)) json_object_set_new(o, "name", json_deep_copy(name));
            }
            r->has_tool_turns = true;
        }
        json_array_append_new(out, o);
    }
    if (ok) {
        r->messages_json = json_dumps(out, JSON_COMPACT);
        if (!r->messages_json) ok = oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    json_decref(out);
    json_decref(ids);
    return ok;
}

/* tools, tool_choice and parallel_tool_calls. */
static bool parse_tools(const json_t *root, oai_kind kind, oai_request *r, oai_error *err) {
    const json_t *tools = field(root, "tools");
    const json_t *choice = field(root, "tool_choice");
    if (kind != OAI_CHAT) {
        if ((tools && !(json_is_array(tools) && json_array_size(tools) == 0)) || choice)
            return oai_fail(err, 400, "invalid_request_error", tools ? "tools" : "tool_choice", "unsupported_parameter",
                            "'tools' are for /v1/chat/completions.");
        return true;
    }
    r->parallel_tool_calls = true;
    if (!get_bool(root, "parallel_tool_calls", &r->parallel_tool_calls, err)) return false;
    if (tools && !json_is_array(tools)) return bad_type(err, "tools", "an array", tools);
    const size_t n = tools ? json_array_size(tools) : 0;
    if (n > OAI_MAX_TOOLS)
        return oai_fail(err, 400, "invalid_request_error", "tools", "array_above_max_length",
                        "Invalid 'tools': at most %d tools.", OAI_MAX_TOOLS);
    for (size_t i = 0; i < n; i++) {
        const json_t *t = json_array_get(tools, i), *type = json_object_get(t, "type");
        const json_t *fn = json_object_get(t, "function"), *name = json_object_get(fn, "name");
        const json_t *params = json_object_get(fn, "parameters"), *desc = json_object_get(fn, "description");
        if (!json_is_object(t) || !json_is_string(type) || strcmp(json_string_value(type), "function") != 0 ||
            !json_is_object(fn))
            return oai_fail(err, 400, "invalid_request_error", "tools", "invalid_value",
                            "Invalid 'tools[%zu]': expected {\"type\": \"function\", \"function\": {...}}.", i);
        if (!json_is_string(name) || !good_tool_name(json_string_value(name), json_string_length(name)))
            return oai_fail(err, 400, "invalid_request_error", "tools", "invalid_value",
                            "Invalid 'tools[%zu].function.name': 1 to 64 letters, digits, '_', '-' or '.'.", i);
        if ((params && !json_is_object(params)) || (desc && !json_is_string(desc)))
            return oai_fail(err, 400, "invalid_request_error", "tools", "invalid_type",
                            "Invalid 'tools[%zu].function': 'parameters' must be an object (a JSON schema) and "
                            "'description' a string.",
                            i);
        for (size_t k = 0; k < i; k++)
            if (json_equal(json_object_get(json_object_get(json_array_get(tools, k), "function"), "name"), name))
                return oai_fail(err, 400, "invalid_request_error", "tools", "invalid_value",
                                "Invalid 'tools': the name '%s' is used twice.", json_string_value(name));
    }
    if (n) {
        r->tools_json = json_dumps(tools, JSON_COMPACT);
        if (!r->tools_json) return oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (!choice || json_is_null(choice)) return true;
    if (json_is_string(choice)) {
        const char *c = json_string_value(choice);
        if (strcmp(c, "auto") == 0) r->tool_choice = OAI_TOOLS_AUTO;
        else if (strcmp(c, "none") == 0) r->tool_choice = OAI_TOOLS_NONE;
        else if (strcmp(c, "required") == 0) r->tool_choice = OAI_TOOLS_REQUIRED;
        else
            return oai_fail(err, 400, "invalid_request_error", "tool_choice", "invalid_value",
                            "Invalid 'tool_choice': 'none', 'auto', 'required' or {\"type\": \"function\", "
                            "\"function\": {\"name\": ...}}.");
    } else {
        const json_t *name = json_object_get(json_object_get(choice, "function"), "name");
        if (!json_is_object(choice) || !json_is_string(name))
            return oai_fail(err, 400, "invalid_request_error", "tool_choice", "invalid_value",
                            "Invalid 'tool_choice': 'none', 'auto', 'required' or {\"type\": \"function\", "
                            "\"function\": {\"name\": ...}}.");
        bool known = false;
        for (size_t i = 0; i < n; i++)
            known = known || json_equal(json_object_get(json_object_get(json_array_get(tools, i), "function"), "name"),
                                        name);
        if (!known)
            return oai_fail(err, 400, "invalid_request_error", "tool_choice", "invalid_value",
                            "Invalid 'tool_choice': no tool is named '%.64s'.", json_string_value(name));
        r->tool_choice = OAI_TOOLS_NAMED;
        r->tool_choice_name = strdup(json_string_value(name));
        if (!r->tool_choice_name) return oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    if ((r->tool_choice == OAI_TOOLS_REQUIRED) && n == 0)
        return oai_fail(err, 400, "invalid_request_error", "tool_choice", "invalid_value",
                        "Invalid 'tool_choice': 'required' needs 'tools'.");
    return true;
}

/* chat_template_kwargs and reasoning_effort: variables for the template. */
static bool parse_template_vars(const json_t *root, oai_kind kind, oai_request *r, oai_error *err) {
    const json_t *kw = field(root, "chat_template_kwargs"), *effort = field(root, "reasoning_effort");
    if (!kw && !effort) return true;
    if (kind != OAI_CHAT)
        return oai_fail(err, 400, "invalid_request_error", kw ? "chat_template_kwargs" : "reasoning_effort",
                        "unsupported_parameter", "'%s' is for /v1/chat/completions.",
                        kw ? "chat_template_kwargs" : "reasoning_effort");
    if (kw && !json_is_object(kw)) return bad_type(err, "chat_template_kwargs", "an object", kw);
    if (kw && json_object_size(kw) > 32)
        return oai_fail(err, 400, "invalid_request_error", "chat_template_kwargs", "invalid_value",
                        "Invalid 'chat_template_kwargs': at most 32 variables.");
    static const char *const reserved[] = {"messages", "tools", "bos_token", "eos_token", "add_generation_prompt",
                                           "raise_exception", "strftime_now", "namespace", "range", "dict"};
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)kw, key, v) {
        bool ok = key[0] && strlen(key) <= 64 && !(key[0] >= '0' && key[0] <= '9');
        for (const char *c = key; ok && *c; c++)
            ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_';
        for (size_t i = 0; ok && i < sizeof reserved / sizeof reserved[0]; i++) ok = strcmp(key, reserved[i]) != 0;
        if (!ok)
            return oai_fail(err, 400, "invalid_request_error", "chat_template_kwargs", "invalid_value",
                            "Invalid 'chat_template_kwargs': '%.64s' is not a variable a request may set.", key);
        (void)v;
    }
    if (effort && (!json_is_string(effort) || (strcmp(json_string_value(effort), "low") != 0 &&
                                               strcmp(json_string_value(effort), "medium") != 0 &&
                                               strcmp(json_string_value(effort), "high") != 0)))
        return oai_fail(err, 400, "invalid_request_error", "reasoning_effort", "invalid_value",
                        "Invalid 'reasoning_effort': 'low', 'medium' or 'high'.");
    json_t *vars = kw ? json_deep_copy(kw) : json_object();
    if (vars && effort) json_object_set_new(vars, "reasoning_effort", json_deep_copy(effort));
    r->template_vars_json = vars ? json_dumps(vars, JSON_COMPACT) : NULL;
    json_decref(vars);
    return r->template_vars_json ? true : oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
}

static bool parse_messages(const json_t *root, oai_request *r, oai_error *err) {
    const json_t *m = json_object_get(root, "messages");
    if (!m || json_is_null(m))
        return oai_fail(err, 400, "invalid_request_error", "messages", "missing_required_parameter",
                        "Missing required parameter: 'messages'.");
    if (!json_is_array(m)) return bad_type(err, "messages", "an array", m);
    const size_t n = json_array_size(m);
    if (n == 0)
        return oai_fail(err, 400, "invalid_request_error", "messages", "empty_array",
                        "Invalid 'messages': empty array. Expected an array with minimum length 1.");
    if (n > OAI_MAX_MESSAGES)
        return oai_fail(err, 400, "invalid_request_error", "messages", "array_above_max_length",
                        "Invalid 'messages': at most %d messages.", OAI_MAX_MESSAGES);
    r->msgs = calloc(n, sizeof *r->msgs);
    if (!r->msgs) return oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *msg = json_array_get(m, i);
        if (!json_is_object(msg))
            return oai_fail(err, 400, "invalid_request_error", "messages", "invalid_type",
                            "Invalid type for 'messages[%zu]': expected an object, but got %s instead.", i,
                            type_name(msg));
        const json_t *role = json_object_get(msg, "role");
        if (!json_is_string(role))
            return oai_fail(err, 400, "invalid_request_error", "messages", "missing_required_parameter",
                            "Missing required parameter: 'messages[%zu].role'.", i);
        const char *rs = json_string_value(role);
        const char *mapped = strcmp(rs, "developer") == 0 ? "system" : rs;
        if (strcmp(mapped, "system") != 0 && strcmp(mapped, "user") != 0 && strcmp(mapped, "assistant") != 0 &&
            strcmp(mapped, "tool") != 0)
            return oai_fail(err, 400, "invalid_request_error", "messages", "invalid_value",
                            "Invalid value for 'messages[%zu].role': '%.40s' is not supported (system, developer, "
                            "user, assistant, tool).",
                            i, rs);
        char *content = NULL;
        if (!message_content(json_object_get(msg, "content"), i, &content, err)) return false;
        r->msgs[r->n_msgs].role = mapped[0] == 's'   ? "system"
                                  : mapped[0] == 'u' ? "user"
                                  : mapped[0] == 't' ? "tool"
                                                     : "assistant";
        r->msgs[r->n_msgs].content = content;
        r->n_msgs++;
    }
    return messages_json(m, r, err);
}

static bool token_array(const json_t *a, int32_t n_vocab, oai_request *r, oai_error *err) {
    const size_t n = json_array_size(a);
    if (n > (size_t)INT32_MAX / 8)
        return oai_fail(err, 400, "invalid_request_error", "prompt", "invalid_value", "Invalid 'prompt': too long.");
    r->prompt_toks = malloc((n ? n : 1) * sizeof *r->prompt_toks);
    if (!r->prompt_toks) return oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *t = json_array_get(a, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= n_vocab)
            return oai_fail(err, 400, "invalid_request_error", "prompt", "invalid_value",
                            "Invalid 'prompt[%zu]': expected a token id from 0 to %d.", i, n_vocab - 1);
        r->prompt_toks[i] = (sov_token)json_integer_value(t);
    }
    r->n_prompt_toks = (int32_t)n;
    return true;
}

static bool parse_prompt(const json_t *root, int32_t n_vocab, oai_request *r, oai_error *err) {
    const json_t *p = json_object_get(root, "prompt");
    if (!p || json_is_null(p))
        return oai_fail(err, 400, "invalid_request_error", "prompt", "missing_required_parameter",
                        "Missing required parameter: 'prompt'.");
    if (json_is_string(p)) {
        r->prompt = strdup(json_string_value(p));
        return r->prompt ? true : oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (!json_is_array(p)) return bad_type(err, "prompt", "a string or an array", p);
    if (json_array_size(p) == 0)
        return oai_fail(err, 400, "invalid_request_error", "prompt", "empty_array", "Invalid 'prompt': empty array.");
    const json_t *first = json_array_get(p, 0);
    if (json_is_integer(first)) return token_array(p, n_vocab, r, err);
    if (json_array_size(p) > 1)
        return oai_fail(err, 400, "invalid_request_error", "prompt", "unsupported_value",
                        "Invalid 'prompt': only one prompt per request is supported (got %zu).", json_array_size(p));
    if (json_is_string(first)) {
        r->prompt = strdup(json_string_value(first));
        return r->prompt ? true : oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (json_is_array(first)) return token_array(first, n_vocab, r, err);
    return bad_type(err, "prompt", "a string, an array of strings or an array of token ids", first);
}

static bool parse_stop(const json_t *root, oai_request *r, oai_error *err) {
    const json_t *s = field(root, "stop");
    if (!s) return true;
    if (json_is_string(s)) {
        if (json_string_length(s) == 0) return true;
        if (json_string_length(s) > OAI_MAX_STOP_LEN)
            return oai_fail(err, 400, "invalid_request_error", "stop", "invalid_value",
                            "Invalid 'stop': a stop sequence is at most %d bytes.", OAI_MAX_STOP_LEN);
        r->stops[r->n_stops] = strdup(json_string_value(s));
        return r->stops[r->n_stops++] ? true : oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (!json_is_array(s)) return bad_type(err, "stop", "a string or an array of strings", s);
    if (json_array_size(s) > OAI_MAX_STOPS)
        return oai_fail(err, 400, "invalid_request_error", "stop", "array_above_max_length",
                        "Invalid 'stop': at most %d stop sequences.", OAI_MAX_STOPS);
    size_t i;
    json_t *v;
    json_array_foreach(s, i, v) {
        if (!json_is_string(v)) return bad_type(err, "stop", "an array of strings", v);
        if (json_string_length(v) > OAI_MAX_STOP_LEN)
            return oai_fail(err, 400, "invalid_request_error", "stop", "invalid_value",
                            "Invalid 'stop': a stop sequence is at most %d bytes.", OAI_MAX_STOP_LEN);
        if (json_string_length(v) == 0) continue;
        r->stops[r->n_stops] = strdup(json_string_value(v));
        if (!r->stops[r->n_stops++]) return oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    return true;
}

static bool parse_bias(const json_t *root, int32_t n_vocab, oai_request *r, oai_error *err) {
    const json_t *b = field(root, "logit_bias");
    if (!b) return true;
    if (!json_is_object(b)) return bad_type(err, "logit_bias", "an object", b);
    const size_t n = json_object_size(b);
    if (n > OAI_MAX_BIAS)
        return oai_fail(err, 400, "invalid_request_error", "logit_bias", "invalid_value",
                        "Invalid 'logit_bias': at most %d entries.", OAI_MAX_BIAS);
    if (n == 0) return true;
    r->bias_tok = malloc(n * sizeof *r->bias_tok);
    r->bias = malloc(n * sizeof *r->bias);
    if (!r->bias_tok || !r->bias) return oai_fail(err, 500, "server_error", NULL, NULL, "out of memory");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)b, key, v) {
        char *end = NULL;
        const long id = strtol(key, &end, 10);
        if (!key[0] || *end || id < 0 || id >= n_vocab)
            return oai_fail(err, 400, "invalid_request_error", "logit_bias", "invalid_value",
                            "Invalid 'logit_bias': key '%.40s' is not a token id from 0 to %d.", key, n_vocab - 1);
        if (!json_is_number(v)) return bad_type(err, "logit_bias", "numbers as values", v);
        const double d = json_number_value(v);
        if (!(d >= -100 && d <= 100))
            return oai_fail(err, 400, "invalid_request_error", "logit_bias", "invalid_value",
                            "Invalid 'logit_bias': bias %g for token %ld is outside -100..100.", d, id);
        r->bias_tok[r->n_bias] = (sov_token)id;
        r->bias[r->n_bias] = d <= -100 ? -INFINITY : (float)d; /* -100 bans the token, as OpenAI */
        r->n_bias++;
    }
    return true;
}

/* Fields sov does not implement: rejected clearly instead of silently ignored. */
static bool reject_unsupported(const json_t *root, oai_kind kind, oai_error *err) {
    int64_t n = 1;
    if (!get_int(root, "n", 1, INT32_MAX, &n, NULL, err)) return false;
    if (n != 1)
        return oai_fail(err, 400, "invalid_request_error", "n", "unsupported_value",
                        "Invalid 'n': only n=1 is supported (got %lld).", (long long)n);
    if (field(root, "functions"))
        return oai_fail(err, 400, "invalid_request_error", "functions", "unsupported_parameter",
                        "'functions' are not supported by this server.");
    if (kind == OAI_COMPLETION) {
        bool echo = false;
        if (!get_bool(root, "echo", &echo, err)) return false;
        if (echo)
            return oai_fail(err, 400, "invalid_request_error", "echo", "unsupported_value",
                            "'echo' is not supported by this server.");
        int64_t best_of = 1;
        if (!get_int(root, "best_of", 1, INT32_MAX, &best_of, NULL, err)) return false;
        if (best_of != 1)
            return oai_fail(err, 400, "invalid_request_error", "best_of", "unsupported_value",
                            "Invalid 'best_of': only 1 is supported.");
        const json_t *suffix = field(root, "suffix");
        if (suffix && (!json_is_string(suffix) || json_string_length(suffix) > 0))
            return oai_fail(err, 400, "invalid_request_error", "suffix", "unsupported_parameter",
                            "'suffix' is not supported by this server.");
    }
    return true;
}

/* response_format: "text", "json_object" (any JSON object) or "json_schema" (the
 * output validates against json_schema.schema), compiled here to a grammar
 * (src/grammar) that the scheduler decodes under. */
static bool parse_response_format(const json_t *root, oai_request *r, oai_error *err) {
    const json_t *rf = field(root, "response_format"), *gbnf = field(root, "grammar");
    if (gbnf) { /* llama.cpp's extension: a GBNF grammar */
        if (!json_is_string(gbnf)) return bad_type(err, "grammar", "a string (GBNF)", gbnf);
        const json_t *t = json_is_object(rf) ? json_object_get(rf, "type") : NULL;
        if (rf && !(json_is_string(t) && strcmp(json_string_value(t), "text") == 0))
            return oai_fail(err, 400, "invalid_request_error", "grammar", "invalid_value",
                            "'grammar' and 'response_format' cannot be used together.");
        char msg[256];
        const sov_status st = gram_from_gbnf(json_string_value(gbnf), json_string_length(gbnf), &r->grammar, msg,
                                             sizeof msg);
        if (st == SOV_OK) return true;
        if (st == SOV_ERR_NOMEM) return oai_fail(err, 500, "server_error", "grammar", NULL, "Out of memory.");
        return oai_fail(err, 400, "invalid_request_error", "grammar", "invalid_value", "Invalid 'grammar': %s.", msg);
    }
    if (!rf) return true;
    const json_t *t = json_is_object(rf) ? json_object_get(rf, "type") : NULL;
    const char *type = json_is_string(t) ? json_string_value(t) : "";
    if (strcmp(type, "text") == 0) return true;
    gram_opts o = gram_default_opts();
    if (strcmp(type, "json_object") == 0) {
        if (gram_any_object(&o, &r->grammar) == SOV_OK) return true;
        return oai_fail(err, 500, "server_error", "response_format", NULL, "Out of memory.");
    }
    if (strcmp(type, "json_schema") != 0)
        return oai_fail(err, 400, "invalid_request_error", "response_format", "unsupported_value",
                        "Invalid 'response_format': 'type' must be \"text\", \"json_object\" or \"json_schema\".");
    const json_t *js = json_object_get(rf, "json_schema");
    if (!json_is_object(js))
        return oai_fail(err, 400, "invalid_request_error", "response_format.json_schema", "invalid_type",
                        "Invalid 'response_format.json_schema': expected an object with 'name' and 'schema'.");
    const json_t *name = json_object_get(js, "name"), *strict = json_object_get(js, "strict");
    if (name && !json_is_string(name))
        return bad_type(err, "response_format.json_schema.name", "a string", name);
    if (strict && !json_is_boolean(strict) && !json_is_null(strict))
        return bad_type(err, "response_format.json_schema.strict", "a boolean", strict);
    o.strict = json_is_true(strict);
    const json_t *schema = json_object_get(js, "schema");
    if (!schema)
        return oai_fail(err, 400, "invalid_request_error", "response_format.json_schema.schema", "missing_required_parameter",
                        "Missing required parameter: 'response_format.json_schema.schema'.");
    char msg[256];
    const sov_status st = gram_from_schema_json(schema, &o, &r->grammar, msg, sizeof msg);
    if (st == SOV_OK) return true;
    if (st == SOV_ERR_NOMEM) return oai_fail(err, 500, "server_error", "response_format", NULL, "Out of memory.");
    return oai_fail(err, 400, "invalid_request_error", "response_format.json_schema.schema",
                    st == SOV_ERR_UNSUPPORTED ? "unsupported_value" : "invalid_value",
                    "Invalid schema for response_format: %s.", msg);
}

static bool parse_root(const json_t *root, oai_kind kind, int32_t n_vocab, oai_request *r, oai_error *err) {
    if (!json_is_object(root))
        return oai_fail(err, 400, "invalid_request_error", NULL, "invalid_type",
                        "The request body must be a JSON object, not %s.", type_name(root));
    if (!get_string(root, "model", &r->model, err)) return false;
    if (kind == OAI_CHAT ? !parse_messages(root, r, err) : !parse_prompt(root, n_vocab, r, err)) return false;
    if (!reject_unsupported(root, kind, err)) return false;
    if (!parse_response_format(root, r, err)) return false;
    if (!parse_tools(root, kind, r, err)) return false;
    if (!parse_template_vars(root, kind, r, err)) return false;
    if (!get_bool(root, "stream", &r->stream, err)) return false;
    const json_t *so = field(root, "stream_options");
    if (so) {
        if (!json_is_object(so)) return bad_type(err, "stream_options", "an object", so);
        if (!get_bool(so, "include_usage", &r->include_usage, err)) return false;
    }
    const int64_t max_gen = INT32_MAX / 2;
    if (!get_int(root, "max_tokens", 1, max_gen, &r->max_tokens, NULL, err)) return false;
    if (!get_int(root, "max_completion_tokens", 1, max_gen, &r->max_tokens, NULL, err)) return false;
    if (!get_number(root, "temperature", 0, 2, &r->temperature, err)) return false;
    if (!get_number(root, "top_p", 0, 1, &r->top_p, err)) return false;
    if (!get_number(root, "min_p", 0, 1, &r->min_p, err)) return false;
    if (!get_number(root, "presence_penalty", -2, 2, &r->presence_penalty, err)) return false;
    if (!get_number(root, "frequency_penalty", -2, 2, &r->frequency_penalty, err)) return false;
    if (!get_number(root, "repeat_penalty", 0.01, 100, &r->repeat_penalty, err)) return false;
    int64_t top_k = 0, seed = 0;
    if (!get_int(root, "top_k", 0, 1 << 24, &top_k, NULL, err)) return false;
    r->top_k = (int32_t)top_k;
    if (!get_int(root, "seed", INT64_MIN, INT64_MAX, &seed, &r->has_seed, err)) return false;
    r->seed = (uint64_t)seed;
    if (!parse_stop(root, r, err)) return false;
    if (!parse_bias(root, n_vocab, r, err)) return false;
    if (!get_bool(root, "ignore_eos", &r->ignore_eos, err)) return false;
    if (!get_string(root, "user", &r->user, err)) return false;
    if (kind == OAI_CHAT) {
        if (!get_bool(root, "logprobs", &r->logprobs, err)) return false;
        int64_t top = -1;
        bool given = false;
        if (!get_int(root, "top_logprobs", 0, SCHED_MAX_TOP_LOGPROBS, &top, &given, err)) return false;
        if (given && !r->logprobs)
            return oai_fail(err, 400, "invalid_request_error", "top_logprobs", "invalid_value",
                            "Invalid 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.");
        r->top_logprobs = given ? (int32_t)top : 0;
    } else {
        int64_t lp = 0;
        if (!get_int(root, "logprobs", 0, SCHED_MAX_TOP_LOGPROBS, &lp, &r->logprobs, err)) return false;
        r->top_logprobs = (int32_t)lp;
    }
    return true;
}

bool oai_parse(const char *body, size_t len, oai_kind kind, int32_t n_vocab, oai_request *out, oai_error *err) {
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    out->kind = kind;
    out->max_tokens = -1;
    out->temperature = 1.0;
    out->top_p = 1.0;
    out->repeat_penalty = 1.0;
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    if (!root) {
        oai_fail(err, 400, "invalid_request_error", NULL, "invalid_json",
                 "The request body is not valid JSON: %s (line %d, column %d).", je.text, je.line, je.column);
        return false;
    }
    const bool ok = parse_root(root, kind, n_vocab, out, err);
    json_decref(root);
    if (!ok) {
        if (err->status == 0) oai_fail(err, 400, "invalid_request_error", NULL, NULL, "Invalid request.");
        oai_request_free(out);
    }
    return ok;
}

void oai_request_free(oai_request *r) {
    free(r->model);
    for (size_t i = 0; i < r->n_msgs; i++) free((char *)r->msgs[i].content);
    free(r->msgs);
    free(r->prompt);
    free(r->prompt_toks);
    for (int32_t i = 0; i < r->n_stops; i++) free(r->stops[i]);
    free(r->bias_tok);
    free(r->bias);
    free(r->user);
    free(r->messages_json);
    free(r->tools_json);
    free(r->tool_choice_name);
    free(r->template_vars_json);
    gram_free(r->grammar);
    const oai_kind kind = r->kind;
    memset(r, 0, sizeof *r);
    r->kind = kind;
}

/* ---- JSON out ---- */

static char *dump(json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

char *oai_error_json(const oai_error *err) {
    json_t *e = json_object();
    json_object_set_new(e, "message", json_string(err->message[0] ? err->message : "error"));
    json_object_set_new(e, "type", json_string(err->type ? err->type : "invalid_request_error"));
    json_object_set_new(e, "param", err->param ? json_string(err->param) : json_null());
    json_object_set_new(e, "code", err->code ? json_string(err->code) : json_null());
    json_t *o = json_object();
    json_object_set_new(o, "error", e);
    char *s = dump(o);
    if (!s) s = strdup("{\"error\":{\"message\":\"error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
    if (!s) abort(); /* cannot even say so */
    return s;
}

char *oai_utf8_clean(const char *s, size_t n, size_t *out_len) {
    char *o = malloc(n * 3 + 1); /* each bad byte may become 3 */
    if (!o) return NULL;
    size_t j = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        const unsigned char c = u[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) ok = (u[i + k] & 0xC0) == 0x80;
        if (ok && len > 1) {
            /* no overlong forms, surrogates or code points past U+10FFFF */
            uint32_t cp = c & (0x7Fu >> len);
            for (size_t k = 1; k < len; k++) cp = (cp << 6) | (u[i + k] & 0x3F);
            ok = !((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
                   (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF);
        }
        if (ok && c != 0) {
            memcpy(o + j, s + i, len);
            j += len;
            i += len;
        } else {
            memcpy(o + j, "\xEF\xBF\xBD", 3);
            j += 3;
            i++;
        }
    }
    o[j] = '\0';
    *out_len = j;
    return o;
}

static json_t *clean_string(const char *s, size_t n) {
    size_t len;
    char *c = oai_utf8_clean(s, n, &len);
    json_t *v = c ? json_stringn(c, len) : NULL;
    free(c);
    return v ? v : json_string("");
}

static double finite_lp(float lp) { return isfinite(lp) ? (double)lp : -9999.0; }

/* A token's text and bytes. */
static json_t *token_text(const sov_vocab *v, sov_token t, json_t **bytes_out) {
    char piece[256];
    int32_t n = sov_token_to_piece(v, t, false, piece, sizeof piece);
    n = n < 0 ? 0 : n > (int32_t)sizeof piece ? (int32_t)sizeof piece : n;
    if (bytes_out) {
        json_t *b = json_array();
        for (int32_t i = 0; i < n; i++) json_array_append_new(b, json_integer((unsigned char)piece[i]));
        *bytes_out = b;
    }
    return clean_string(piece, (size_t)n);
}

static json_t *chat_logprobs(const oai_reply *rp, const sched_tok *toks, int32_t n) {
    json_t *content = json_array();
    for (int32_t i = 0; i < n; i++) {
        json_t *item = json_object(), *bytes = NULL;
        json_object_set_new(item, "token", token_text(rp->vocab, toks[i].id, &bytes));
        json_object_set_new(item, "logprob", json_real(finite_lp(toks[i].logprob)));
        json_object_set_new(item, "bytes", bytes);
        json_t *top = json_array();
        for (int32_t k = 0; k < toks[i].n_top && k < rp->top_logprobs; k++) {
            json_t *alt = json_object(), *ab = NULL;
            json_object_set_new(alt, "token", token_text(rp->vocab, toks[i].top_id[k], &ab));
            json_object_set_new(alt, "logprob", json_real(finite_lp(toks[i].top_lp[k])));
            json_object_set_new(alt, "bytes", ab);
            json_array_append_new(top, alt);
        }
        json_object_set_new(item, "top_logprobs", top);
        json_array_append_new(content, item);
    }
    json_t *o = json_object();
    json_object_set_new(o, "content", content);
    return o;
}

static json_t *completion_logprobs(const oai_reply *rp, const sched_tok *toks, int32_t n, size_t text_offset) {
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t off = text_offset;
    for (int32_t i = 0; i < n; i++) {
        char piece[256];
        int32_t len = sov_token_to_piece(rp->vocab, toks[i].id, false, piece, sizeof piece);
        len = len < 0 ? 0 : len > (int32_t)sizeof piece ? (int32_t)sizeof piece : len;
        json_array_append_new(tokens, clean_string(piece, (size_t)len));
        json_array_append_new(lps, json_real(finite_lp(toks[i].logprob)));
        json_t *top = json_object();
        for (int32_t k = 0; k < toks[i].n_top && k < rp->top_logprobs; k++) {
            json_t *name = token_text(rp->vocab, toks[i].top_id[k], NULL);
            if (!json_object_get(top, json_string_value(name)))
                json_object_set_new(top, json_string_value(name), json_real(finite_lp(toks[i].top_lp[k])));
            json_decref(name);
        }
        json_array_append_new(tops, top);
        json_array_append_new(offs, json_integer((json_int_t)off));
        off += (size_t)len;
    }
    json_t *o = json_object();
    json_object_set_new(o, "tokens", tokens);
    json_object_set_new(o, "token_logprobs", lps);
    json_object_set_new(o, "top_logprobs", tops);
    json_object_set_new(o, "text_offset", offs);
    return o;
}

static json_t *envelope(const oai_reply *rp, bool chunk) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(rp->id));
    json_object_set_new(o, "object", json_string(rp->kind == OAI_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                                                      : "text_completion"));
    json_object_set_new(o, "created", json_integer(rp->created));
    json_object_set_new(o, "model", json_string(rp->model));
    json_object_set_new(o, "system_fingerprint", json_string("sov-" SOV_VERSION_STRING));
    return o;
}

static json_t *usage_json(const oai_usage *u) {
    json_t *o = json_object();
    json_object_set_new(o, "prompt_tokens", json_integer(u->prompt));
    json_object_set_new(o, "completion_tokens", json_integer(u->completion));
    json_object_set_new(o, "total_tokens", json_integer((json_int_t)u->prompt + u->completion));
    json_t *d = json_object();
    json_object_set_new(d, "cached_tokens", json_integer(u->cached));
    json_object_set_new(o, "prompt_tokens_details", d);
    if (u->energy_source) { /* sov's extension: what the request cost, and how that is known */
        json_object_set_new(o, "energy_joules", json_real(u->energy_j));
        json_object_set_new(o, "energy_source", json_string(u->energy_source));
    }
    return o;
}

const char *oai_finish_reason(sched_finish f) {
    switch (f) {
    case SCHED_RUNNING: return NULL;
    case SCHED_FINISH_STOP: return "stop";
    case SCHED_FINISH_LENGTH:
    case SCHED_FINISH_DEADLINE:
    case SCHED_FINISH_CANCELLED:
    case SCHED_FINISH_ERROR: return "length";
    }
    return "length";
}

char *oai_chunk_json(const oai_reply *rp, bool role, const char *text, size_t len, const sched_tok *toks,
                     int32_t n_toks, const char *finish, size_t text_offset) {
    json_t *o = envelope(rp, true);
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(0));
    const bool lp = rp->top_logprobs >= 0 && n_toks > 0;
    if (rp->kind == OAI_CHAT) {
        json_t *delta = json_object();
        if (role) json_object_set_new(delta, "role", json_string("assistant"));
        if (role || len > 0) json_object_set_new(delta, "content", clean_string(text ? text : "", len));
        json_object_set_new(choice, "delta", delta);
        json_object_set_new(choice, "logprobs", lp ? chat_logprobs(rp, toks, n_toks) : json_null());
    } else {
        json_object_set_new(choice, "text", clean_string(text ? text : "", len));
        json_object_set_new(choice, "logprobs", lp ? completion_logprobs(rp, toks, n_toks, text_offset) : json_null());
    }
    json_object_set_new(choice, "finish_reason", finish ? json_string(finish) : json_null());
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_object_set_new(o, "choices", choices);
    if (rp->include_usage) json_object_set_new(o, "usage", json_null());
    return dump(o);
}

static json_t *tool_call_json(const reply_call *c, size_t index, bool streamed) {
    json_t *fn = json_object(), *o = json_object();
    json_object_set_new(fn, "name", json_string(c->name));
    json_object_set_new(fn, "arguments", clean_string(c->arguments, strlen(c->arguments)));
    if (streamed) json_object_set_new(o, "index", json_integer((json_int_t)index));
    json_object_set_new(o, "id", clean_string(c->id, strlen(c->id)));
    json_object_set_new(o, "type", json_string("function"));
    json_object_set_new(o, "function", fn);
    return o;
}

const char *oai_reply_finish(const char *finish, size_t n_calls) {
    return finish && n_calls && strcmp(finish, "stop") == 0 ? "tool_calls" : finish;
}

char *oai_reply_chunk_json(const oai_reply *rp, const reply_delta *d, const sched_tok *toks, int32_t n_toks) {
    if (!d->content_len && !d->reasoning_len && !d->n_calls && !n_toks) return NULL;
    json_t *o = envelope(rp, true);
    json_t *choice = json_object(), *delta = json_object();
    json_object_set_new(choice, "index", json_integer(0));
    if (d->content_len) json_object_set_new(delta, "content", clean_string(d->content, d->content_len));
    if (d->reasoning_len)
        json_object_set_new(delta, "reasoning_content", clean_string(d->reasoning, d->reasoning_len));
    if (d->n_calls) {
        json_t *calls = json_array();
        for (size_t i = 0; i < d->n_calls; i++)
            json_array_append_new(calls, tool_call_json(&d->calls[i], d->first_call + i, true));
        json_object_set_new(delta, "tool_calls", calls);
    }
    json_object_set_new(choice, "delta", delta);
    const bool lp = rp->top_logprobs >= 0 && n_toks > 0;
    json_object_set_new(choice, "logprobs", lp ? chat_logprobs(rp, toks, n_toks) : json_null());
    json_object_set_new(choice, "finish_reason", json_null());
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_object_set_new(o, "choices", choices);
    if (rp->include_usage) json_object_set_new(o, "usage", json_null());
    return dump(o);
}

char *oai_usage_chunk_json(const oai_reply *rp, const oai_usage *u) {
    json_t *o = envelope(rp, true);
    json_object_set_new(o, "choices", json_array());
    json_object_set_new(o, "usage", usage_json(u));
    return dump(o);
}

char *oai_final_json(const oai_reply *rp, const char *text, size_t len, const sched_tok *toks, int32_t n_toks,
                     const char *finish, const oai_usage *u) {
    json_t *o = envelope(rp, false);
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(0));
    const bool lp = rp->top_logprobs >= 0;
    reply parsed = {0};
    const bool parse = rp->kind == OAI_CHAT && rp->parse && reply_parse(&rp->reply, text ? text : "", len, true, &parsed) == SOV_OK;
    if (rp->kind == OAI_CHAT) {
        json_t *msg = json_object();
        json_object_set_new(msg, "role", json_string("assistant"));
        if (!parse) {
            json_object_set_new(msg, "content", clean_string(text ? text : "", len));
        } else {
            /* OpenAI: content null when the answer is only tool calls */
            json_object_set_new(msg, "content", parsed.content_len || !parsed.n_calls
                                                    ? clean_string(parsed.content, parsed.content_len)
                                                    : json_null());
            if (parsed.reasoning_len)
                json_object_set_new(msg, "reasoning_content", clean_string(parsed.reasoning, parsed.reasoning_len));
            if (parsed.n_calls) {
                json_t *calls = json_array();
                for (size_t i = 0; i < parsed.n_calls; i++)
                    json_array_append_new(calls, tool_call_json(&parsed.calls[i], i, false));
                json_object_set_new(msg, "tool_calls", calls);
                finish = oai_reply_finish(finish ? finish : "stop", parsed.n_calls);
            }
        }
        json_object_set_new(msg, "refusal", json_null());
        json_object_set_new(choice, "message", msg);
        json_object_set_new(choice, "logprobs", lp ? chat_logprobs(rp, toks, n_toks) : json_null());
    } else {
        json_object_set_new(choice, "text", clean_string(text ? text : "", len));
        json_object_set_new(choice, "logprobs", lp ? completion_logprobs(rp, toks, n_toks, 0) : json_null());
    }
    json_object_set_new(choice, "finish_reason", json_string(finish ? finish : "stop"));
    reply_free(&parsed);
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_object_set_new(o, "choices", choices);
    json_object_set_new(o, "usage", usage_json(u));
    return dump(o);
}
