/* reply.h - a model's reply split the way the OpenAI API returns it: the answer
 * (`content`), the reasoning (`reasoning_content`) and the tool calls (`tool_calls`).
 *
 * Models write tool calls and reasoning in their own syntax, fixed by training and visible
 * in their chat template; reply_detect() tells which from the template's text, and
 * reply_parse() takes a reply (whole, or the part generated so far) apart:
 *
 *   REPLY_HERMES       <tool_call>{"name": "f", "arguments": {...}}</tool_call>, repeated
 *                      (Hermes 2/3, Qwen2.5, Qwen3, QwQ, SmolLM3, ...)
 *   REPLY_QWEN_XML     <tool_call>\n<function=f>\n<parameter=k>\nv\n</parameter>\n</function>\n
 *                      </tool_call> (Qwen3-Coder, Qwen3.5, Nemotron 3, Step 3.5); a value is
 *                      JSON when it parses as a number, boolean, null, array or object
 *   REPLY_GLM          <tool_call>f\n<arg_key>k</arg_key>\n<arg_value>v</arg_value>...
 *                      </tool_call> (GLM-4.5 and later)
 *   REPLY_LLAMA3       the whole reply one JSON object {"name": "f", "parameters": {...}}
 *                      (optionally after <|python_tag|>, several joined by ';'), or
 *                      <function=f>{...}</function> (Llama 3.1-3.3, functionary v3.1)
 *   REPLY_MISTRAL      [TOOL_CALLS][{"name": "f", "arguments": {...}, "id": "..."}] or
 *                      [TOOL_CALLS]f[ARGS]{...} (Mistral v3 ... v13 tokenizers)
 *   REPLY_DEEPSEEK     <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f
 *                      ```json {...} ```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜> (V3, R1),
 *                      or ...<｜tool▁call▁begin｜>f<｜tool▁sep｜>{...}<｜tool▁call▁end｜>
 *                      (V3.1 and later)
 *   REPLY_HARMONY      gpt-oss's channels: <|channel|>analysis<|message|>... is reasoning,
 *                      final (and commentary without a recipient) is content, a message
 *                      `to=functions.f` is a call with its body as arguments
 *   REPLY_FUNCTIONARY  functionary v3.2: >>>all\ntext, >>>f\n{...}
 *   REPLY_GRANITE      <|tool_call|>[{"name": "f", "arguments": {...}}] (Granite 3.x)
 *   REPLY_KIMI         <|tool_calls_section_begin|><|tool_call_begin|>functions.f:0
 *                      <|tool_call_argument_begin|>{...}<|tool_call_end|>... (Kimi K2)
 *
 * and <think>...</think> at the start of a reply is reasoning (Qwen3, QwQ, DeepSeek R1,
 * GLM), also when the generation prompt already opened it. A tool call whose syntax does
 * not parse (bad JSON, no name) stays in the content as the model wrote it: nothing the
 * model said is dropped.
 *
 * Streaming: reply_parse() of a prefix of the reply (final false) returns only what no
 * continuation can change — text that might be the start of a marker, and a call not yet
 * closed, are held back — so content and reasoning of a prefix are prefixes of those of
 * the whole reply, and its calls the first calls of the whole reply, with the same ids.
 * reply_stream sends the difference each time. */
#ifndef SOV_REPLY_H
#define SOV_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sov.h"

typedef enum reply_format {
    REPLY_PLAIN = 0, /* no tool-call syntax known */
    REPLY_HERMES,
    REPLY_GLM,
    REPLY_LLAMA3,
    REPLY_MISTRAL,
    REPLY_DEEPSEEK,
    REPLY_HARMONY,
    REPLY_FUNCTIONARY,
    REPLY_GRANITE,
    REPLY_KIMI,
    REPLY_QWEN_XML,
    REPLY_FORMAT_COUNT
} reply_format;

/* The name of a format ("hermes", "llama3", ...). */
const char *reply_format_name(reply_format f);

/* What a chat template's source says about the replies of its model: the tool-call format
 * (REPLY_PLAIN when it has none sov knows) and whether it thinks in <think> tags. */
typedef struct reply_style {
    reply_format format;
    bool think_tags;
} reply_style;

reply_style reply_detect(const char *template_src, size_t len);

/* Whether a rendered prompt leaves the model inside <think> (its generation prompt ends
 * with an opened, unclosed <think>, as DeepSeek R1's and some Qwen3 templates do). */
bool reply_prompt_opens_think(const char *prompt, size_t len);

/* The text a model of format f writes around one call of `name` whose arguments are a
 * JSON object: *prefix before the arguments, *suffix after (malloc'd), so that a forced
 * call can be generated under the tool's schema. False (nothing allocated) when the format
 * writes arguments otherwise (XML parameters: Qwen XML, GLM) or has no call syntax. */
bool reply_call_form(reply_format f, const char *name, char **prefix, char **suffix);

typedef struct reply_params {
    reply_format format;  /* REPLY_PLAIN: no tool calls are looked for */
    bool think_tags;      /* <think>...</think> at the start is reasoning */
    bool starts_thinking; /* the prompt opened <think>: the reply starts inside it */
    uint64_t id_seed;     /* tool call ids are call_ + 24 letters and digits derived from it
                             and the call's index (so every parse of a reply agrees) */
    size_t max_calls;     /* calls kept (0: all); further well-formed calls are dropped
                             (OpenAI's parallel_tool_calls: false) */
} reply_params;

typedef struct reply_call {
    char *id;        /* the model's own id where its syntax has one (Mistral, Kimi) */
    char *name;
    char *arguments; /* a JSON object as text */
} reply_call;

typedef struct reply {
    char *content; /* NUL-terminated; never NULL after a successful parse */
    size_t content_len;
    char *reasoning;
    size_t reasoning_len;
    reply_call *calls;
    size_t n_calls;
} reply;

/* Takes text apart. final false: text is what has been generated so far, and only what
 * cannot change is returned. Errors: SOV_ERR_NOMEM. */
sov_status reply_parse(const reply_params *p, const char *text, size_t len, bool final, reply *out);
void reply_free(reply *r);

/* Streaming: the reply grows by pieces; each feed says what is new. */
typedef struct reply_stream {
    reply_params params;
    char *text; /* the reply so far */
    size_t len, cap;
    size_t content_sent, reasoning_sent, calls_sent;
    reply last; /* the parse of the text so far */
} reply_stream;

typedef struct reply_delta {
    const char *content; /* new content (into stream->last), content_len bytes */
    size_t content_len;
    const char *reasoning;
    size_t reasoning_len;
    const reply_call *calls; /* new complete calls, indexes first_call .. first_call + n_calls - 1 */
    size_t n_calls, first_call;
} reply_delta;

void reply_stream_init(reply_stream *s, const reply_params *p);
/* Appends piece (final: nothing more will come) and fills d with what is new; d points
 * into the stream and stays valid until the next feed. Errors: SOV_ERR_NOMEM. */
sov_status reply_stream_feed(reply_stream *s, const char *piece, size_t n, bool final, reply_delta *d);
void reply_stream_free(reply_stream *s);

#endif
