/* tok.h - the tokenizer module's internal interface (the public one is in sov.h).
 *
 * A sov_vocab is built from a GGUF file's tokenizer.* metadata. The model loader builds
 * it from the gguf_file it already has open; sov_vocab_load() opens a file itself. The
 * vocabulary keeps pointers into the file's mapping (token texts, merges, the chat
 * template), so the gguf_file must outlive it unless it owns the file. */
#ifndef SOV_TOK_H
#define SOV_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "sov.h"

/* Builds the vocabulary of an open file; when take_file, the vocabulary owns (and
 * closes) f, also when building fails. Errors: SOV_ERR_FORMAT (missing or inconsistent tokenizer.* keys, naming
 * the key), SOV_ERR_UNSUPPORTED (tokenizer.ggml.model other than llama/gpt2/gemma4/t5, or an
 * unknown tokenizer.ggml.pre, naming it), SOV_ERR_NOMEM. */
sov_status tok_vocab_from_gguf(gguf_file *f, bool take_file, sov_vocab **out);

/* tokenizer.chat_template as a view (NULL/0 when absent). */
const char *tok_vocab_chat_template(const sov_vocab *v, size_t *len);

/* The text of a token id as stored in the vocabulary (SentencePiece "▁" and byte-level
 * BPE "Ġ" forms, not decoded); NULL for an id outside the vocabulary. */
const char *tok_vocab_token_text(const sov_vocab *v, sov_token t, size_t *len);

/* The id of a token whose stored text is exactly s, or -1. */
sov_token tok_vocab_find(const sov_vocab *v, const char *s, size_t len);

/* "llama", "gpt2", "gemma4" or "t5" and the pre-tokenizer name ("default" when tokenizer.ggml.pre is
 * absent). */
const char *tok_vocab_model_name(const sov_vocab *v);
const char *tok_vocab_pre_name(const sov_vocab *v);

#endif
