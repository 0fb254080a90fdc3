/* embeddings.h - the OpenAI wire format of POST /v1/embeddings: the request body parsed
 * and checked into a plain struct, and the response's JSON (float arrays, or base64 of
 * little-endian float32 as OpenAI sends with encoding_format "base64"). No I/O and no
 * engine: the parser is a pure function of the body's bytes (fuzzed by
 * fuzz/fuzz_embeddings.c); server.c tokenizes, submits and pools. */
#ifndef SOV_SERVER_EMBEDDINGS_H
#define SOV_SERVER_EMBEDDINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/openai.h"
#include "sov.h"

enum { OAI_EMBD_MAX_INPUTS = 2048 }; /* OpenAI's own cap on inputs per request */

typedef struct oai_embd_request {
    char *model;        /* NULL when not given */
    int32_t n;          /* inputs, 1..OAI_EMBD_MAX_INPUTS */
    char **texts;       /* [n] NUL-terminated, non-empty; NULL when the inputs are token ids */
    size_t *text_len;   /* [n] */
    sov_token **toks;   /* [n] token ids (each in the vocabulary, at least one); NULL for texts */
    int32_t *n_toks;    /* [n] */
    bool base64;        /* encoding_format "base64" (default "float") */
    int64_t dimensions; /* -1: not given */
} oai_embd_request;

/* Parses and checks a body: "input" as a string, an array of strings, an array of token
 * ids (one input) or an array of arrays of token ids, each non-empty and ids below
 * n_vocab; "model"; "encoding_format" "float" or "base64"; "dimensions" a positive integer
 * (whether it is supported is the server's call); "user" and unknown fields ignored. On
 * failure fills err (400 and the field) and returns false; out is then empty. */
bool oai_embd_parse(const char *body, size_t len, int32_t n_vocab, oai_embd_request *out, oai_error *err);
void oai_embd_request_free(oai_embd_request *r);

/* The response: {"object":"list","data":[{"object":"embedding","index":i,"embedding":...}],
 * "model":model,"usage":{"prompt_tokens","total_tokens"}}, vecs holding n rows of E floats
 * (finite). A malloc'd string, or NULL when out of memory. */
char *oai_embd_json(const char *model, const float *vecs, int32_t n, int32_t E, bool base64,
                    int64_t prompt_tokens);

/* Standard base64 (with padding) of n bytes into out (4 * ceil(n / 3) bytes + NUL). */
void oai_base64(const unsigned char *in, size_t n, char *out);

#endif
