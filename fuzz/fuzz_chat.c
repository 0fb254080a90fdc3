/* fuzz_chat.c - libFuzzer target for chat template handling: a model file's
 * tokenizer.chat_template is outside input, so detection and the default-system-message
 * scan must cope with any bytes, and rendering with any message text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tok/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *t = malloc(size + 1);
    if (!t) return 0;
    memcpy(t, data, size);
    t[size] = '\0';
    const char *family = chat_detect(t, size);
    char sys[256];
    chat_context cx = {"<s>", "</s>", NULL, NULL, NULL};
    if (chat_default_system(t, size, sys, sizeof sys)) cx.default_system = sys;
    const sov_chat_message m[] = {{"system", t}, {"user", t}, {"assistant", t}};
    char out[512];
    for (const char *const *f = sov_chat_template_names(); *f; f++)
        (void)chat_render(*f, &cx, m, 3, true, out, sizeof out);
    if (family) (void)chat_render(family, &cx, m, 3, size % 2 == 0, NULL, 0);
    free(t);
    return 0;
}
