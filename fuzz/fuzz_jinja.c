/* fuzz_jinja.c - libFuzzer target for the chat-template interpreter: a model file's
 * tokenizer.chat_template is outside input. The fuzzed bytes are the template source,
 * rendered with a fixed conversation (system, user, assistant with a tool call, tool
 * result) and tools; compile and render must end in output or a one-line error, within
 * the interpreter's limits. Seeds: tests/jinja/corpus and tests/jinja/templates. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sov.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *MSGS =
    "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Weather in Paris?\"},"
    "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"call12345\",\"type\":\"function\","
    "\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"call12345\",\"content\":\"21C\"}]";
static const char *TOOLS =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"w\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sov_chat_template *t = NULL;
    if (sov_chat_template_compile((const char *)data, size, &t) != SOV_OK) return 0;
    const char *names[] = {"enable_thinking"}, *vals[] = {"true"};
    const sov_chat_template_vars v = {.messages_json = MSGS,
                                      .tools_json = size % 2 ? TOOLS : NULL,
                                      .bos_token = "<s>",
                                      .eos_token = "</s>",
                                      .add_generation_prompt = size % 3 != 0,
                                      .extra_names = names,
                                      .extra_json = vals,
                                      .n_extra = 1,
                                      .now = 1764763200,
                                      .max_output = 1 << 20};
    char *out = NULL;
    size_t len = 0;
    if (sov_chat_template_render(t, &v, &out, &len) == SOV_OK && out && strlen(out) > len) abort();
    free(out);
    sov_chat_template_free(t);
    return 0;
}
