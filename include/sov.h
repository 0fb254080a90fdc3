/* sov.h - the public API of sov, a sovereign AI inference stack.
 *
 * The flow is one way: text -> tokens (sov_vocab) -> batches (sov_batch) -> logits
 * (sov_context over a sov_model) -> token (sov_sampler) -> text.
 *
 * Conventions (as libuv): every name starts with sov_; handles are opaque; every fallible
 * call returns a sov_status (or, for calls that return a count, a negative sov_status);
 * sov_strerror() names a status and sov_last_error() gives the one-line detail of the
 * calling thread's last failure (which field, which offset, what to do). Memory passed in
 * is always the caller's; memory a sov_*_new/_load returns is freed with its _free. */
#ifndef SOV_H
#define SOV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SOV_VERSION_STRING "0.1.0"

/* ---- status ---------------------------------------------------------------------- */

#define SOV_STATUS_MAP(X)                                                  \
    X(OK, "success")                                                       \
    X(ERR_NOMEM, "out of memory")                                          \
    X(ERR_IO, "input/output error")                                        \
    X(ERR_FORMAT, "malformed input")                                       \
    X(ERR_UNSUPPORTED, "not supported")                                    \
    X(ERR_ARG, "invalid argument")                                         \
    X(ERR_NOT_FOUND, "not found")                                          \
    X(ERR_KV_FULL, "KV cache has no free blocks")                          \
    X(ERR_CONTEXT, "context length exceeded")                              \
    X(ERR_CANCELLED, "cancelled")

typedef enum sov_status {
#define SOV_STATUS_ENUM_(name, text) SOV_##name,
    SOV_STATUS_MAP(SOV_STATUS_ENUM_)
#undef SOV_STATUS_ENUM_
    SOV_STATUS_COUNT
} sov_status;

/* A short fixed name for a status ("malformed input"); never NULL. */
const char *sov_strerror(sov_status status);

/* The detail of the calling thread's most recent failure, one line, e.g.
 * "gguf: tensor 'output.weight' data ends at byte 4096, past the end of the file
 * (3000 bytes)". Empty string when there is none. Valid until the next sov_ call on
 * this thread that fails. */
const char *sov_last_error(void);

/* ---- models ---------------------------------------------------------------------- */

typedef struct sov_model sov_model;
typedef struct sov_vocab sov_vocab;
typedef struct sov_tp sov_tp;

/* Called during long operations with the fraction done, 0..1. */
typedef void (*sov_progress_fn)(float fraction, void *user);

typedef struct sov_model_params {
    sov_progress_fn progress; /* optional load progress */
    void *progress_user;
    bool prefault; /* read every weight page at load time (default false) */
    bool digest;   /* compute the SHA-256 of the whole file while loading (default false);
                      sov_model_info.sha256 then holds it. It runs on a thread of its own,
                      overlapped with the load, and implies prefault */
    const char *digest_cache; /* with digest: a file remembering the SHA-256 of model files
                      by device, inode, size, mtime and ctime (NULL: none). A hit skips
                      hashing; a miss hashes and records the result once the file's ctime
                      is settled (2 s old). See docs/SIGNING.md for what it trusts */
    sov_tp *tp;    /* tensor parallelism (sov_tp_init, docs/TP.md): load only this rank's
                      shard of the weights; NULL: the whole model */
} sov_model_params;

sov_model_params sov_model_default_params(void);

/* Memory-maps a GGUF file and validates it. Weights stay in the mapping where the
 * kernels can use their layout. Errors: SOV_ERR_IO (cannot open/map), SOV_ERR_FORMAT
 * (malformed file), SOV_ERR_UNSUPPORTED (architecture or tensor type), SOV_ERR_NOMEM. */
sov_status sov_model_load(const char *path, const sov_model_params *params, sov_model **out);
void sov_model_free(sov_model *model);

typedef struct sov_model_info {
    const char *arch;         /* "llama", "qwen2", "qwen3", "mistral" */
    const char *name;         /* general.name, or "" */
    const char *weight_type;  /* most common tensor type by bytes, e.g. "Q4_0" */
    int32_t n_vocab;
    int32_t n_embd;           /* model width */
    int32_t n_layer;
    int32_t n_head;           /* query heads */
    int32_t n_head_kv;        /* key/value heads (grouped-query attention when < n_head) */
    int32_t head_dim;
    int32_t n_ff;             /* feed-forward width */
    int32_t n_ctx_train;      /* context length the model was trained with */
    uint64_t n_params;        /* parameters in all weight tensors */
    uint64_t weight_bytes;    /* bytes of all weight tensors */
    const char *sha256;       /* the file's SHA-256 in lowercase hex when loaded with
                                 digest set, else "" */
    uint64_t file_bytes;      /* size of the file */
    bool sha256_cached;       /* sha256 came from the digest cache, not from hashing */
    int32_t pooling;          /* sov_pooling for embeddings: <arch>.pooling_type as llama.cpp
                                 writes it, SOV_POOLING_MEAN when the file has none */
    bool encoder;             /* an encoder (bert, nomic-bert): embeddings only, no logits;
                                 each input is computed whole, in one batch */
} sov_model_info;

void sov_model_get_info(const sov_model *model, sov_model_info *out);

/* The model's tokenizer; owned by the model. */
const sov_vocab *sov_model_vocab(const sov_model *model);

/* ---- tokenizer ------------------------------------------------------------------- */

typedef int32_t sov_token;

/* Loads only the tokenizer of a GGUF file (a vocabulary-only file, or a full model).
 * Errors: SOV_ERR_IO, SOV_ERR_FORMAT, SOV_ERR_UNSUPPORTED (tokenizer model). */
sov_status sov_vocab_load(const char *path, sov_vocab **out);
void sov_vocab_free(sov_vocab *vocab);

int32_t sov_vocab_size(const sov_vocab *vocab);
sov_token sov_vocab_bos(const sov_vocab *vocab); /* -1 when the vocabulary has none */
sov_token sov_vocab_eos(const sov_vocab *vocab); /* -1 when the vocabulary has none */
/* True for tokens that end a generation (EOS, EOT, <|im_end|>, <|eot_id|>, ...). */
bool sov_vocab_is_eog(const sov_vocab *vocab, sov_token token);
/* True for control tokens (BOS, EOS, <|im_start|>, ...). */
bool sov_vocab_is_control(const sov_vocab *vocab, sov_token token);

/* Splits UTF-8 text into tokens. add_special: add BOS/EOS as the vocabulary's metadata
 * asks (tokenizer.ggml.add_bos_token / add_eos_token). parse_special: text that spells
 * a control token ("<|im_start|>") becomes that token instead of ordinary text.
 * Writes at most cap tokens to out and returns the full count (call again with a
 * larger buffer when it exceeds cap), or a negative sov_status. */
int32_t sov_tokenize(const sov_vocab *vocab, const char *text, size_t len, bool add_special,
                     bool parse_special, sov_token *out, int32_t cap);

/* The bytes of one token (a byte-fallback token gives its single byte, which may be part
 * of a UTF-8 sequence). Control tokens give their text only when special is true.
 * Writes at most cap bytes (no terminator) and returns the full length, or a negative
 * sov_status (SOV_ERR_ARG for an id outside the vocabulary). */
int32_t sov_token_to_piece(const sov_vocab *vocab, sov_token token, bool special, char *buf,
                           int32_t cap);

/* The text of a token sequence, exactly inverting sov_tokenize for any UTF-8 text
 * (the SentencePiece leading space that tokenization added is removed when
 * remove_leading_space is set). Writes at most cap bytes plus a terminator when it
 * fits and returns the full length, or a negative sov_status. */
int32_t sov_detokenize(const sov_vocab *vocab, const sov_token *tokens, int32_t n, bool special,
                       bool remove_leading_space, char *buf, int32_t cap);

/* ---- chat templates -------------------------------------------------------------- */

typedef struct sov_chat_message {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content;
} sov_chat_message;

/* The template family the vocabulary's tokenizer.chat_template belongs to ("chatml",
 * "llama3", "llama2", "mistral", "gemma", "zephyr", ...), or NULL when the file has no
 * template or one sov does not recognise. */
const char *sov_chat_template_detect(const sov_vocab *vocab);

/* Names of the families sov can render, NULL-terminated. */
const char *const *sov_chat_template_names(void);

/* Renders messages as the prompt text the model was trained on, with the assistant's
 * generation prompt at the end when add_generation_prompt. template_name NULL uses the
 * detected family. Writes at most cap bytes plus a terminator when it fits and returns
 * the full length, or a negative sov_status: SOV_ERR_NOT_FOUND when the template is
 * unknown (sov_last_error says which names exist), SOV_ERR_ARG for a bad role. */
int32_t sov_chat_apply(const sov_vocab *vocab, const char *template_name,
                       const sov_chat_message *messages, size_t n_messages,
                       bool add_generation_prompt, char *buf, int32_t cap);

/* ---- Jinja chat templates (a model's own tokenizer.chat_template) -------------------
 * A Jinja interpreter with Hugging Face's chat-template environment (docs/CHAT-TEMPLATES.md):
 * compile once at load, render per request. Renders are bounded (loop iterations, call
 * depth, memory, output size), so a hostile template fails cleanly. */

typedef struct sov_chat_template sov_chat_template;

/* Compiles Jinja source. SOV_ERR_UNSUPPORTED / SOV_ERR_FORMAT with sov_last_error()
 * "line N: ..." naming the construct when it cannot; *out is freed with
 * sov_chat_template_free. */
sov_status sov_chat_template_compile(const char *source, size_t len, sov_chat_template **out);
void sov_chat_template_free(sov_chat_template *tmpl);
/* The source a template was compiled from (NUL-terminated; len bytes). */
const char *sov_chat_template_source(const sov_chat_template *tmpl, size_t *len);

/* The template's variables. JSON texts are the caller's; NULL leaves a variable as
 * none (tools, documents) or undefined (bos_token, eos_token). */
typedef struct sov_chat_template_vars {
    const char *messages_json;  /* array of {"role", "content", ...} (required) */
    const char *tools_json;     /* array of tool schemas, or NULL */
    const char *bos_token;      /* plain text, e.g. "<s>" */
    const char *eos_token;
    bool add_generation_prompt;
    const char *const *extra_names; /* more variables (enable_thinking, ...): names and */
    const char *const *extra_json;  /* JSON values, n_extra of each */
    size_t n_extra;
    int64_t now;                /* Unix time strftime_now renders (UTC); 0: the clock */
    size_t max_output;          /* bytes; 0: 8 MiB */
} sov_chat_template_vars;

/* Renders the prompt. On SOV_OK *out is a NUL-terminated malloc'd string (free()) of
 * *len bytes. SOV_ERR_ARG for bad JSON, SOV_ERR_FORMAT when the template raises
 * (raise_exception, undefined values, type errors) or passes a limit; sov_last_error()
 * says which, with the template line. */
sov_status sov_chat_template_render(const sov_chat_template *tmpl, const sov_chat_template_vars *vars, char **out,
                                    size_t *len);

/* Renders role/content messages through tmpl with the vocabulary's BOS/EOS texts as
 * bos_token/eos_token, and drops a leading BOS text when the vocabulary adds BOS at
 * tokenization (so the prompt holds it once, as Hugging Face's add_special_tokens=False
 * does). *out is malloc'd (free()); errors as sov_chat_template_render. */
sov_status sov_chat_template_apply(const sov_chat_template *tmpl, const sov_vocab *vocab,
                                   const sov_chat_message *messages, size_t n_messages,
                                   bool add_generation_prompt, char **out);

/* The same with the messages as JSON (Hugging Face's shape: tool_calls, tool_call_id,
 * reasoning_content, ...), the tools array (NULL: none) and more variables as a JSON object
 * (chat_template_kwargs such as {"enable_thinking": false}; NULL: none). */
sov_status sov_chat_template_apply_json(const sov_chat_template *tmpl, const sov_vocab *vocab,
                                        const char *messages_json, const char *tools_json, const char *vars_json,
                                        bool add_generation_prompt, char **out);

/* The vocabulary's tokenizer.chat_template text (not NUL-terminated), NULL when none. */
const char *sov_vocab_chat_template(const sov_vocab *vocab, size_t *len);

/* ---- contexts, sequences and batches --------------------------------------------- */

typedef struct sov_context sov_context;
typedef int32_t sov_seq_id;

/* Element types of cached keys and values. Q8_0 / Q4_0 store each position's head_dim
 * values in groups of 32 (or head_dim when smaller), an f16 scale and 8- or 4-bit values
 * per group: about 0.53x / 0.28x the bytes of F16. */
typedef enum sov_kv_type {
    SOV_KV_DEFAULT = 0, /* keys: F16; values: the keys' type */
    SOV_KV_F16 = 1,
    SOV_KV_F32 = 2,
    SOV_KV_Q8_0 = 3,
    SOV_KV_Q4_0 = 4,
} sov_kv_type;

typedef struct sov_context_params {
    int32_t n_ctx;          /* most positions one sequence may hold; 0: the model's
                               training context, at most 4096 */
    int32_t n_seq_max;      /* most sequences alive at once (default 1) */
    int32_t n_batch;        /* most tokens in one sov_decode call (default 512) */
    int64_t kv_cache_bytes; /* KV pool size; 0: room for n_seq_max full sequences */
    int32_t n_threads;      /* 0: one per physical core */
    sov_kv_type kv_type;    /* element type of cached keys (DEFAULT: F16) */
    sov_kv_type kv_type_v;  /* element type of cached values (DEFAULT: as kv_type) */
} sov_context_params;

sov_context_params sov_context_default_params(void);

/* A context runs a model: it owns the paged KV cache, the per-batch activations and the
 * worker threads. The model must outlive it. */
sov_status sov_context_new(const sov_model *model, const sov_context_params *params,
                           sov_context **out);
void sov_context_free(sov_context *ctx);

/* Starts an empty sequence. Errors: SOV_ERR_KV_FULL when n_seq_max are alive. */
sov_status sov_seq_new(sov_context *ctx, sov_seq_id *out);
/* Ends a sequence and returns its KV blocks to the pool. */
void sov_seq_free(sov_context *ctx, sov_seq_id seq);
/* Number of positions the sequence holds in the cache, or -1 for an unknown id. */
int32_t sov_seq_length(const sov_context *ctx, sov_seq_id seq);
/* Forgets positions >= n_keep (for example to re-generate). */
sov_status sov_seq_truncate(sov_context *ctx, sov_seq_id seq, int32_t n_keep);

/* Paged KV blocks, for schedulers that share prompt prefixes between sequences. The
 * cache is a pool of blocks of sov_kv_block_size() positions; a sequence's block table
 * lists the blocks holding its positions in order. Blocks are reference counted: a
 * block stays allocated while any sequence or holder (a prefix cache) retains it, and a
 * shared block is never written (sov_decode copies a shared partial block first). */
int32_t sov_kv_block_size(const sov_context *ctx);
int32_t sov_kv_blocks_total(const sov_context *ctx);
int32_t sov_kv_blocks_free(const sov_context *ctx);
/* The sequence's block table: *blocks is valid until the sequence next changes.
 * Returns the number of blocks, or -1 for an unknown sequence. */
int32_t sov_seq_blocks(const sov_context *ctx, sov_seq_id seq, const int32_t **blocks);
/* Makes an empty sequence start with n full blocks (retaining each), so that it holds
 * n * block_size positions without computing them. Errors: SOV_ERR_ARG (unknown or
 * non-empty sequence, bad block id, or more than n_ctx positions). */
sov_status sov_seq_attach_blocks(sov_context *ctx, sov_seq_id seq, const int32_t *blocks, int32_t n);
/* Holds or drops an extra reference to a block (e.g. a prefix cache's). */
void sov_kv_block_retain(sov_context *ctx, int32_t block);
void sov_kv_block_release(sov_context *ctx, int32_t block);
/* References to a block (0 = free). */
int32_t sov_kv_block_refs(const sov_context *ctx, int32_t block);

/* Several tokens, of one or several sequences, evaluated in one pass. The tokens of one
 * sequence must appear in order of position and continue that sequence exactly
 * (the first has position sov_seq_length()). */
typedef struct sov_batch {
    int32_t n_tokens;
    const sov_token *token;  /* [n_tokens] token ids */
    const sov_seq_id *seq;   /* [n_tokens] sequence of each token */
    const int32_t *pos;      /* [n_tokens] position of each token in its sequence */
    const uint8_t *logits;   /* [n_tokens] nonzero: return this token's logits */
} sov_batch;

/* Evaluates the batch and appends its keys and values to the sequences' caches. For each
 * token with logits set, in batch order, writes n_vocab floats to logits_out.
 * Errors (the cache is left unchanged): SOV_ERR_ARG (bad token, sequence or position,
 * or more than n_batch tokens), SOV_ERR_CONTEXT (a sequence would pass n_ctx),
 * SOV_ERR_KV_FULL (not enough free KV blocks). */
sov_status sov_decode(sov_context *ctx, const sov_batch *batch, float *logits_out);

/* As sov_decode, and also returns hidden states: for each token with embd[i] nonzero
 * (embd: n_tokens flags, may be NULL), in batch order, writes n_embd floats to embd_out:
 * the token's last hidden state after the final norm, before the LM head. The LM head
 * runs only for the tokens with logits set, so a batch that wants no logits skips it.
 * Errors as sov_decode, and SOV_ERR_ARG when embd asks for rows but embd_out is NULL. */
sov_status sov_decode_embd(sov_context *ctx, const sov_batch *batch, float *logits_out, const uint8_t *embd,
                           float *embd_out);

/* Which kernel set the context runs ("scalar", "avx2", "avx512", "avx512_vnni",
 * "neon", "neon_dotprod"), chosen from the CPU or forced with SOV_ISA. */
const char *sov_context_isa(const sov_context *ctx);
int32_t sov_context_threads(const sov_context *ctx);

/* Keeps the model's weights, the KV cache and the activation buffers in RAM, never in swap
 * (mlock2 with MLOCK_ONFAULT: each page from its first use). Errors: SOV_ERR_NOMEM when
 * RLIMIT_MEMLOCK is too low (sov_last_error() names it, the size needed and how to raise
 * it; nothing stays locked), SOV_ERR_IO. */
sov_status sov_context_lock_memory(sov_context *ctx);

/* ---- embeddings ------------------------------------------------------------------ */

/* How the hidden states of an input's tokens become one vector (llama.cpp's numbering
 * of <arch>.pooling_type). Embeddings support MEAN, CLS (the first token) and LAST. */
typedef enum sov_pooling {
    SOV_POOLING_NONE = 0, /* one vector per token: not an embedding of the input */
    SOV_POOLING_MEAN = 1, /* the mean over every token of the input (the default) */
    SOV_POOLING_CLS = 2,  /* the first token's */
    SOV_POOLING_LAST = 3, /* the last token's (decoder embedding models) */
    SOV_POOLING_RANK = 4, /* a reranker's classification head */
} sov_pooling;

/* "mean", "cls", "last", "none", "rank", or "unknown". */
const char *sov_pooling_name(int32_t pooling);

/* SOV_OK when sov_embed can pool this way; SOV_ERR_UNSUPPORTED (sov_last_error names the
 * type and the ones supported) otherwise. */
sov_status sov_pooling_check(int32_t pooling);

/* Whether pooling an input of n tokens needs the hidden state of the token at pos. */
bool sov_pooling_wants(int32_t pooling, int32_t pos, int32_t n);

/* The embedding of each input with the model's pooling, L2-normalised: out receives
 * n_inputs rows of n_embd floats (the caller's buffer). Inputs run together through
 * sov_decode_embd on free sequences of ctx (at least one must be free), packed into
 * batches of up to n_batch tokens, without the LM head; every sequence it starts is freed
 * before it returns, so it leaves no KV behind. This is the engine's whole-input entry
 * point: an encoder model (non-causal attention over the input) plugs in here.
 * Errors: SOV_ERR_UNSUPPORTED (pooling type), SOV_ERR_ARG (an empty input, a token
 * outside the vocabulary), SOV_ERR_CONTEXT (an input longer than n_ctx), SOV_ERR_KV_FULL
 * (no free sequence or blocks), SOV_ERR_NOMEM. */
sov_status sov_embed(sov_context *ctx, const sov_token *const *inputs, const int32_t *n_tokens, int32_t n_inputs,
                     float *out);

/* ---- sampling -------------------------------------------------------------------- */

typedef struct sov_sampler sov_sampler;

typedef struct sov_sampler_params {
    float temperature;       /* 0: greedy (argmax) */
    int32_t top_k;           /* 0: off */
    float top_p;             /* 1: off */
    float min_p;             /* 0: off */
    float repeat_penalty;    /* 1: off; divides positive logits of recent tokens */
    int32_t repeat_last_n;   /* window of recent tokens the penalties look at; -1: all */
    float presence_penalty;  /* 0: off; subtracted once from tokens seen */
    float frequency_penalty; /* 0: off; subtracted per occurrence */
    uint64_t seed;           /* same seed, same logits: same tokens */
} sov_sampler_params;

sov_sampler_params sov_sampler_default_params(void);

/* Errors: SOV_ERR_ARG for out-of-range parameters (negative temperature, top_p outside
 * (0, 1], ...), SOV_ERR_NOMEM. */
sov_status sov_sampler_new(const sov_sampler_params *params, int32_t n_vocab, sov_sampler **out);
void sov_sampler_free(sov_sampler *sampler);
/* Adds bias to a token's logit before sampling (OpenAI logit_bias); -INFINITY bans it. */
sov_status sov_sampler_set_logit_bias(sov_sampler *sampler, sov_token token, float bias);
/* Chooses the next token from n_vocab logits (the array is used as scratch and changed). */
sov_token sov_sampler_sample(sov_sampler *sampler, float *logits);
/* Records a token as part of the history the penalties look at (prompt tokens too). */
void sov_sampler_accept(sov_sampler *sampler, sov_token token);
void sov_sampler_reset(sov_sampler *sampler);

/* Stop strings: feed generated text as it comes; the stopper returns how many bytes of
 * what it holds are safe to show (a possible stop string prefix is held back) and says
 * when a stop string completed. */
typedef struct sov_stopper sov_stopper;
sov_status sov_stopper_new(const char *const *stops, size_t n_stops, sov_stopper **out);
void sov_stopper_free(sov_stopper *stopper);
/* Appends text. Sets *stopped when a stop string is now complete; the text before it is
 * then all that is released. Returns the bytes released to *out (owned by the stopper,
 * valid until the next call), to be shown to the user. */
size_t sov_stopper_feed(sov_stopper *stopper, const char *text, size_t len, const char **out,
                        bool *stopped);
/* At the end of generation: releases whatever is still held. */
size_t sov_stopper_flush(sov_stopper *stopper, const char **out);

/* ---- tensor parallelism over MPI (docs/TP.md) ------------------------------------- */

/* One model across n_ranks processes started by `mpirun -np n_ranks`: each rank loads
 * its shard of the weights (sov_model_params.tp) and holds its share of the KV cache.
 * Rank 0 runs the program as usual; every state-changing call on its context is sent to
 * the other ranks, which run sov_tp_worker_run. Initialises MPI. Errors:
 * SOV_ERR_UNSUPPORTED (a build without MPI), SOV_ERR_ARG (not started by mpirun, or a
 * world of another size; sov_last_error() gives the command to use), SOV_ERR_IO. */
sov_status sov_tp_init(int32_t n_ranks, sov_tp **out);
/* How a model is split across the ranks: tensor parallel (--tp: every layer's heads and
 * FFN units, docs/TP.md), expert parallel (--ep: a mixture-of-experts model's routed
 * experts, tokens exchanged with MPI_Alltoallv), pipeline parallel (--pp: the layers, in
 * stages, docs/SCALE-OUT.md). */
typedef enum sov_split { SOV_SPLIT_TENSOR = 0, SOV_SPLIT_EXPERT, SOV_SPLIT_PIPELINE } sov_split;
/* sov_tp_init for any split (sov_tp_init is SOV_SPLIT_TENSOR). */
sov_status sov_tp_init_split(int32_t n_ranks, sov_split how, sov_tp **out);
sov_split sov_tp_split(const sov_tp *tp);
/* The option that asks for a split: "--tp", "--ep" or "--pp". */
const char *sov_split_option(sov_split how);
/* This process's rank, 0..n_ranks-1, and n_ranks. */
int32_t sov_tp_rank(const sov_tp *tp);
int32_t sov_tp_size(const sov_tp *tp);
/* Ranks > 0: applies what rank 0 sends to the model loaded with this tp (contexts,
 * sequences, KV blocks, batches) until rank 0 frees the model. Errors: SOV_ERR_IO when
 * the ranks lose each other. */
sov_status sov_tp_worker_run(sov_model *model);
/* Finalises MPI (after every model loaded with it is freed). NULL is a no-op. */
void sov_tp_free(sov_tp *tp);

#ifdef __cplusplus
}
#endif

#endif
