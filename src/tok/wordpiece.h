/* wordpiece.h - the BERT WordPiece tokenizer (tokenizer.ggml.model "bert"), inside the
 * tokenizer module: the normaliser's Unicode tables (generated wordpiece_table.c) and the
 * one entry point tokenize.c calls for each text fragment. */
#ifndef SOV_TOK_WORDPIECE_H
#define SOV_TOK_WORDPIECE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

extern const uint32_t tok_lower_map[][2];   /* [tok_lower_map_n] (code point, lowercase) */
extern const size_t tok_lower_map_n;
extern const uint32_t tok_nfd_ranges[][3];  /* [tok_nfd_ranges_n] (first, last, NFD's first) */
extern const size_t tok_nfd_ranges_n;

/* The simple lowercase mapping of cp (cp itself when it has none). */
uint32_t tok_wpm_lower(uint32_t cp);
/* The first code point of cp's canonical decomposition (cp itself when it has none). */
uint32_t tok_wpm_nfd_first(uint32_t cp);

struct sov_vocab;
struct tok_ids;
/* Appends the WordPiece tokens of the text s[0..n) (no special tokens in it) to out;
 * false on allocation failure. */
bool tok_wpm_fragment(const struct sov_vocab *v, const uint8_t *s, size_t n, struct tok_ids *out);

#endif
