/* openai.h - the OpenAI wire format: request bodies of /v1/chat/completions and
 * /v1/completions parsed and checked into a plain struct, and the JSON of responses,
 * stream chunks and errors. No I/O and no engine: the parser is a pure function of the
 * body's bytes (fuzzed by fuzz/fuzz_openai.c). JSON is jansson. */
#ifndef SOV_SERVER_OPENAI_H
#define SOV_SERVER_OPENAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reply/reply.h"
#include "sched/sched.h"
#include "sov.h"

typedef enum oai_kind { OAI_CHAT = 0, OAI_COMPLETION = 1 } oai_kind;

enum { OAI_MAX_STOPS = 16, OAI_MAX_STOP_LEN = 256, OAI_MAX_BIAS = 1024, OAI_MAX_MESSAGES = 4096, OAI_MAX_TOOLS = 128 };

typedef enum oai_tool_choice {
    OAI_TOOLS_AUTO = 0, /* the model decides (the default with tools) */
    OAI_TOOLS_NONE,     /* no call: tools are not shown to the model */
    OAI_TOOLS_REQUIRED, /* at least one call */
    OAI_TOOLS_NAMED,    /* a call of tool_choice_name */
} oai_tool_choice;

typedef struct oai_request {
    oai_kind kind;
    char *model;               /* NULL when not given */
    sov_chat_message *msgs;    /* chat: role and content strings owned here */
    size_t n_msgs;
    char *prompt;              /* completion: the prompt text, or NULL when given as tokens */
    sov_token *prompt_toks;    /* completion: a prompt of token ids */
    int32_t n_prompt_toks;
    bool stream, include_usage;
    int64_t max_tokens;        /* -1: not given */
    double temperature, top_p, min_p, presence_penalty, frequency_penalty, repeat_penalty;
    int32_t top_k;
    bool has_seed;
    uint64_t seed;
    char *stops[OAI_MAX_STOPS];
    int32_t n_stops;
    sov_token *bias_tok;       /* logit_bias */
    float *bias;
    int32_t n_bias;
    bool logprobs;             /* chat: logprobs; completion: logprobs given (an integer) */
    int32_t top_logprobs;      /* alternatives per token, 0..20 */
    bool ignore_eos;           /* llama.cpp's extension */
    struct gram *grammar;      /* response_format json_object / json_schema, compiled
                                  (src/grammar; a reference, dropped by oai_request_free) */
    char *user;
    /* chat with tools (or a conversation holding calls and results): what a Jinja template
     * renders. messages_json always holds the messages (roles, content as text, tool_calls
     * with arguments as objects, tool_call_id) */
    char *messages_json;
    char *tools_json;          /* the tools array, NULL when none were given */
    bool has_tool_turns;       /* an assistant tool_calls or a tool message */
    oai_tool_choice tool_choice;
    char *tool_choice_name;    /* OAI_TOOLS_NAMED */
    bool parallel_tool_calls;  /* default true */
    /* more template variables: chat_template_kwargs (vLLM's and llama.cpp's extension, e.g.
     * {"enable_thinking": false}) and reasoning_effort, as a JSON object; NULL: none */
    char *template_vars_json;
} oai_request;

typedef struct oai_error {
    int status;                /* HTTP status */
    const char *type;          /* "invalid_request_error", ... */
    const char *param;         /* the offending field, or NULL */
    const char *code;          /* a machine-readable code, or NULL */
    char message[320];
} oai_error;

/* Parses and checks a request body. n_vocab bounds token ids (logit_bias keys, token
 * prompts). On failure fills err (status 400 and the field) and returns false; out is
 * then empty. oai_request_free frees a parsed request. */
bool oai_parse(const char *body, size_t len, oai_kind kind, int32_t n_vocab, oai_request *out, oai_error *err);
void oai_request_free(oai_request *r);

/* Sets err (printf-style message) and returns false. */
bool oai_fail(oai_error *err, int status, const char *type, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* {"error": {"message", "type", "param", "code"}} as a malloc'd string. */
char *oai_error_json(const oai_error *err);

/* ---- responses ---- */

typedef struct oai_reply {
    oai_kind kind;
    const char *id;            /* "chatcmpl-..." / "cmpl-..." */
    long long created;         /* Unix seconds */
    const char *model;
    const sov_vocab *vocab;    /* token text for logprobs */
    int32_t top_logprobs;      /* -1: no logprobs */
    bool include_usage;        /* streaming: a usage chunk at the end, "usage": null before */
    bool parse;                /* chat: take the text apart (reply.h) into content,
                                  reasoning_content and tool_calls */
    reply_params reply;        /* how, when parse */
} oai_reply;

typedef struct oai_usage {
    int32_t prompt, completion, cached;
    double energy_j;           /* joules attributed to the request (docs/ENERGY.md) */
    const char *energy_source; /* "rapl" or "estimated"; NULL: no energy fields */
} oai_usage;

/* The finish_reason string of a scheduler finish ("stop", "length"), or NULL while running. */
const char *oai_finish_reason(sched_finish f);

/* One stream chunk (the JSON after "data: "). role: the first chat chunk carries the
 * assistant role. text and toks: what is new. finish: NULL before the end. text_offset:
 * completion logprobs' offset of this chunk's first token in the generated text. */
char *oai_chunk_json(const oai_reply *rp, bool role, const char *text, size_t len, const sched_tok *toks,
                     int32_t n_toks, const char *finish, size_t text_offset);
/* The streaming usage chunk (empty choices). */
char *oai_usage_chunk_json(const oai_reply *rp, const oai_usage *u);
/* A chat stream chunk of a parsed reply's new parts (content, reasoning_content, tool
 * calls as OpenAI streams them: index, id, type, name and the whole arguments at once),
 * or NULL when the delta is empty. toks: the tokens behind it (logprobs). */
char *oai_reply_chunk_json(const oai_reply *rp, const reply_delta *d, const sched_tok *toks, int32_t n_toks);
/* The finish_reason of a parsed reply: "tool_calls" when it made calls and stopped. */
const char *oai_reply_finish(const char *finish, size_t n_calls);
/* The whole non-streaming response. With rp->parse the text is taken apart first. */
char *oai_final_json(const oai_reply *rp, const char *text, size_t len, const sched_tok *toks, int32_t n_toks,
                     const char *finish, const oai_usage *u);

/* Text as valid UTF-8: invalid sequences become U+FFFD. Returns a malloc'd string (NUL
 * terminated) and its length in *out_len, or NULL when out of memory. */
char *oai_utf8_clean(const char *s, size_t n, size_t *out_len);

#endif
