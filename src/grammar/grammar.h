/* grammar.h - constrained decoding: a grammar over bytes, a matcher that follows it, and
 * the set of vocabulary tokens that keep the matcher alive (the logit mask).
 *
 * Three objects:
 *   gram          an immutable compiled grammar (rules of alternatives of byte classes
 *                 and rule references), reference counted, shareable between threads.
 *                 Made by the builder below, by gram_from_schema (a JSON schema, see
 *                 schema.c) or gram_any_object (OpenAI's {"type": "json_object"}).
 *   gram_vocab    the vocabulary as a byte trie, built once per model from the tokens'
 *                 pieces (sov_token_to_piece), read-only afterwards.
 *   gram_matcher  one request's position in the grammar (a set of parse stacks, as a
 *                 pushdown automaton over bytes) plus its cache of token masks per state.
 *                 Single-threaded: the scheduler's engine thread owns it.
 *
 * The mask of a state is the set of tokens whose bytes the matcher can consume from that
 * state, found by walking the trie with the matcher (shared prefixes are checked once;
 * a dead byte prunes its whole subtree). Masks are computed lazily and cached by state,
 * as XGrammar and llguidance do. End-of-generation tokens are allowed only where the
 * document may end (an accepting state); when nothing but the end is possible the mask
 * holds only them.
 *
 * Grammars are never left-recursive (gram_build refuses that), so the matcher's closure
 * terminates; recursion through rules (nested objects, $ref) is bounded by
 * GRAM_MAX_DEPTH open rules per parse stack. */
#ifndef SOV_GRAMMAR_GRAMMAR_H
#define SOV_GRAMMAR_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sov.h"

enum {
    GRAM_MAX_DEPTH = 96,        /* open rule references per parse stack */
    GRAM_MAX_STACKS = 256,      /* parse stacks alive at once (an ambiguous grammar's cap) */
    GRAM_MAX_ELEMS = 1 << 18,   /* elements in a compiled grammar (the server compiles on its
                                   event loop: this bounds that work to tens of ms) */
    GRAM_MAX_TOKEN_BYTES = 256, /* longer token pieces are never allowed */
};

typedef struct gram gram;
typedef struct gram_vocab gram_vocab;
typedef struct gram_matcher gram_matcher;

/* ---- building a grammar ---- */

typedef struct gram_builder gram_builder;

/* One symbol of an alternative: a byte class (256-bit set) or a reference to a rule. */
typedef struct gram_sym {
    bool is_ref;
    int32_t rule;      /* is_ref */
    uint32_t set[8];   /* !is_ref: bit b of set[b / 32] = byte b matches */
} gram_sym;

/* A growing sequence of symbols (one alternative being written). */
typedef struct gram_seq {
    gram_sym *s;
    int32_t n, cap;
    bool oom;
} gram_seq;

void gram_seq_byte(gram_seq *q, uint8_t b);
void gram_seq_range(gram_seq *q, uint8_t lo, uint8_t hi);
void gram_seq_set(gram_seq *q, const uint32_t set[8]);
void gram_seq_lit(gram_seq *q, const char *s, size_t n);
void gram_seq_ref(gram_seq *q, int32_t rule);
void gram_seq_free(gram_seq *q);

gram_builder *gram_builder_new(void);
void gram_builder_free(gram_builder *b);
/* A new rule with no alternatives yet; its id (or -1 when out of memory / too large). */
int32_t gram_rule_new(gram_builder *b);
/* Appends an alternative (q's symbols, copied; q is reset to empty) to rule. */
bool gram_rule_alt(gram_builder *b, int32_t rule, gram_seq *q);
/* Compiles the rules with `root` as the start. Errors: SOV_ERR_ARG for a rule with no
 * alternatives or a left-recursive rule (the message names it), SOV_ERR_NOMEM. The
 * builder stays the caller's. */
sov_status gram_build(gram_builder *b, int32_t root, gram **out);

/* ---- ready-made grammars ---- */

typedef struct gram_opts {
    int32_t ws_max;   /* JSON whitespace between tokens: at most one space, or a newline
                         and up to ws_max spaces (-1: no whitespace at all) */
    bool strict;      /* OpenAI strict mode: additionalProperties false is implied */
} gram_opts;

gram_opts gram_default_opts(void);

/* Compiles a JSON schema (the text of a JSON document) into a grammar of the JSON texts
 * that validate against it. Unsupported keywords fail with SOV_ERR_UNSUPPORTED and a
 * message naming the keyword and its location; a malformed schema with SOV_ERR_ARG.
 * The message is in err (always NUL terminated) as well as sov_last_error. */
sov_status gram_from_schema(const char *schema, size_t len, const gram_opts *o, gram **out, char *err,
                            size_t err_len);
/* The same from a parsed jansson value (json_t *). */
sov_status gram_from_schema_json(const void *schema_json, const gram_opts *o, gram **out, char *err,
                                 size_t err_len);
/* A grammar in llama.cpp's GBNF notation (src/grammar/gbnf.c): the start rule is
 * `root`. Errors (SOV_ERR_ARG, SOV_ERR_UNSUPPORTED for limits) give line and column in err. */
sov_status gram_from_gbnf(const char *text, size_t len, gram **out, char *err, size_t err_len);
/* A forced tool call: one of the forms, each its literal prefix (the model's call syntax
 * and the tool's name), a JSON text valid under the tool's parameters schema (a json_t *;
 * NULL: any object), and its literal suffix. Errors as gram_from_schema, located at
 * #/tools/<tool_index>/function/parameters. */
typedef struct gram_call_form {
    const char *prefix;
    const void *schema;
    const char *suffix;
    size_t tool_index;
} gram_call_form;

sov_status gram_from_call_forms(const gram_call_form *forms, size_t n, const gram_opts *o, gram **out, char *err,
                                size_t err_len);
/* Any JSON object ({"type": "json_object"}). */
sov_status gram_any_object(const gram_opts *o, gram **out);

gram *gram_ref(gram *g);
void gram_free(gram *g); /* drops one reference */
int32_t gram_n_rules(const gram *g);
int32_t gram_n_elems(const gram *g);

/* ---- the vocabulary trie ---- */

/* Builds the trie of v's tokens (their sov_token_to_piece bytes, special=false). Tokens
 * with empty pieces (control tokens) are never allowed by a mask, except the
 * end-of-generation ones in accepting states. */
sov_status gram_vocab_new(const sov_vocab *v, gram_vocab **out);
void gram_vocab_free(gram_vocab *gv);
int32_t gram_vocab_size(const gram_vocab *gv);
/* The bytes of token t as the trie holds them (NULL for an empty or too long piece). */
const uint8_t *gram_vocab_piece(const gram_vocab *gv, sov_token t, int32_t *len);

/* ---- the matcher ---- */

/* A matcher at the start of g (which it references). gv may be NULL for a matcher of
 * bytes only (gram_matcher_mask and _feed_token then fail). */
sov_status gram_matcher_new(gram *g, const gram_vocab *gv, gram_matcher **out);
void gram_matcher_free(gram_matcher *m);

/* Would the matcher accept these bytes from its current state (state unchanged)? The
 * scalar reference for the mask: no trie, no cache. */
bool gram_matcher_try(gram_matcher *m, const uint8_t *bytes, size_t n);
/* Consumes bytes; false (and nothing consumed) when they leave the grammar. */
bool gram_matcher_feed(gram_matcher *m, const uint8_t *bytes, size_t n);
/* Consumes token t's bytes (an end-of-generation token: true when accepting). */
bool gram_matcher_feed_token(gram_matcher *m, sov_token t);
/* The document may end here. */
bool gram_matcher_accepting(const gram_matcher *m);
/* The document must end here: accepting and no byte can follow. */
bool gram_matcher_complete(const gram_matcher *m);

/* The tokens allowed now, as a bitset of gram_vocab_size bits (bit t of word t / 32),
 * owned by the matcher and valid until its next call. allow_eog: end-of-generation
 * tokens are set in accepting states. NULL when out of memory. */
const uint32_t *gram_matcher_mask(gram_matcher *m, bool allow_eog);
/* The mask under a length budget: only tokens after which the document can still be
 * completed in at most `budget` more bytes (budget < 0: none). A caller that passes the
 * tokens it has left minus one never runs out before the document is complete, as long
 * as it had enough to begin with (gram_matcher_min_close) and the vocabulary has the
 * single-byte tokens of the shortest completion (byte-fallback and byte-level
 * vocabularies do). When no token fits, the plain mask. Cached like the plain mask
 * unless some allowed token leaves more than the budget, then walked afresh. */
const uint32_t *gram_matcher_mask_budget(gram_matcher *m, bool allow_eog, int64_t budget);
/* The fewest bytes that complete the document from here (0: it may end now). */
uint32_t gram_matcher_min_close(const gram_matcher *m);
/* Sets logits[t] = -inf for every token gram_matcher_mask_budget forbids. False when out
 * of memory. */
bool gram_matcher_apply(gram_matcher *m, float *logits, bool allow_eog, int64_t budget);

typedef struct gram_stats {
    uint64_t masks;        /* gram_matcher_mask calls */
    uint64_t cache_hits;   /* of those, answered from the cache */
    uint64_t trie_nodes;   /* trie nodes visited by the misses */
    uint64_t budget_walks; /* masks walked afresh because of the length budget */
} gram_stats;
void gram_matcher_stats(const gram_matcher *m, gram_stats *out);
/* Drops the cached masks (benchmarks measure the cold path with it). */
void gram_matcher_clear_cache(gram_matcher *m);

#endif
