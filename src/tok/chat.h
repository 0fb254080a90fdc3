/* chat.h - chat template detection and rendering, testable without a vocabulary. */
#ifndef SOV_TOK_CHAT_H
#define SOV_TOK_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sov.h"

/* What a template needs from the vocabulary and the template text. */
typedef struct chat_context {
    const char *bos_text;       /* e.g. "<s>" (used inside llama2 histories) */
    const char *eos_text;       /* e.g. "</s>" (ends assistant turns) */
    const char *default_system; /* chatml: system message written when none is given */
    const char *zephyr_end;     /* zephyr: end-of-turn text when not the EOS text */
    const char *llama_date;     /* llama3: Llama 3.1+ templates open with a system header
                                   carrying this "Today Date" (NULL: plain llama3) */
} chat_context;

/* The family of a Jinja template text, or NULL. */
const char *chat_detect(const char *tmpl, size_t len);
/* A chatml template's built-in default system message (see chat.c). */
bool chat_default_system(const char *tmpl, size_t len, char *buf, size_t cap);
/* Renders messages in a family's format; as sov_chat_apply. */
int32_t chat_render(const char *family, const chat_context *cx, const sov_chat_message *msgs, size_t n,
                    bool add_generation_prompt, char *buf, int32_t cap);

#endif
