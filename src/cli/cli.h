/* cli.h - the sov command's subcommands and the helpers they share. */
#ifndef SOV_CLI_H
#define SOV_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sov.h"

int cmd_run(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_gen_model(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_embed(int argc, char **argv);

/* Prints "sov <cmd>: <message>" and, when status is set, sov_last_error(). Returns 1. */
int cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cli_status_error(const char *cmd, sov_status st);

/* Option parsing helpers: true when argv[*i] is name (or, for the value forms, name=V or
 * name V, advancing *i); a missing or bad value prints an error and sets *bad. */
bool cli_flag(char **argv, int *i, const char *name);
bool cli_opt_str(int argc, char **argv, int *i, const char *name, const char **out, bool *bad);
bool cli_opt_int(int argc, char **argv, int *i, const char *name, long *out, bool *bad);
bool cli_opt_float(int argc, char **argv, int *i, const char *name, double *out, bool *bad);
/* The KV cache type options of run, serve and bench: --kv-type T (keys and values),
 * -ctk / --cache-type-k T, -ctv / --cache-type-v T (as llama.cpp), --kv-f32 (= --kv-type
 * f32); T is f16, f32, q8_0 or q4_0. */
bool cli_opt_kv_type(int argc, char **argv, int *i, sov_kv_type *k, sov_kv_type *v, bool *bad);
#define CLI_KV_TYPE_HELP                                                                           \
    "  --kv-type T             KV cache type: f16 (default), q8_0, q4_0 or f32\n"                 \
    "  -ctk, -ctv T            the keys' / the values' type alone (--cache-type-k/-v)\n"          \
    "  --kv-f32                the same as --kv-type f32\n"
/* Bytes one position takes in the KV cache of every layer with these types
 * (DEFAULT resolved as sov_context_new does), 0 when the head size cannot hold them. */
int64_t cli_kv_bytes_per_pos(const sov_model_info *info, sov_kv_type k, sov_kv_type v);
/* A warning on stderr when n_ctx passes the model's training context (RoPE positions
 * the model never saw; a file whose metadata has YaRN or linear scaling states the
 * extended length as its training context already). */
void cli_warn_ctx(const char *cmd, const sov_model_info *info, int64_t n_ctx);

/* A progress bar on stderr when it is a terminal, else a few percentage lines. */
void cli_progress(float fraction, void *label);

/* A time given on the command line (--since): a UTC date or time (2026-12-03,
 * 2026-12-03T10:00[:00][Z]), @UNIXTIME, or a duration back from now (30m, 24h, 7d).
 * Unix seconds, or -1 when it is none of these. */
int64_t cli_parse_time(const char *v, int64_t now);

/* The file in the state folder that remembers model files' SHA-256 between starts. */
#define CLI_DIGEST_CACHE_FILE "model-digests"

/* The folder of the server's state (the audit signing key; the one folder the sandbox lets
 * it write): `given`, else the SQLite file's folder, else $HOME/.local/state/sov (with
 * PostgreSQL or no store). Returns buf, or NULL when it would need HOME and there is none. */
const char *cli_state_dir(const char *db, const char *given, char *buf, size_t cap);

/* --tp R, --ep R, --pp S (cli/tp.c, docs/TP.md, docs/SCALE-OUT.md): how many MPI ranks
 * split the model, and how. cli_opt_split takes any of the three options. cli_tp_start
 * checks that at most one is above 1, starts MPI when one is (*out stays NULL otherwise)
 * and returns 0, or 1 after printing why not (and, when not started by mpirun, the mpirun
 * command line to use). Ranks > 0 hand their loaded model to cli_tp_worker, which follows
 * rank 0 until it frees its model, frees model and tp, and returns the exit status. */
typedef struct cli_split {
    long tp, ep, pp;
} cli_split;
bool cli_opt_split(int argc, char **argv, int *i, cli_split *s, bool *bad);
int cli_tp_start(const char *cmd, const cli_split *s, int argc, char **argv, sov_tp **out);
int cli_tp_worker(const char *cmd, sov_model *model, sov_tp *tp);
#define CLI_TP_HELP                                                                                \
    "  --tp R                  tensor parallel over R MPI ranks: start with mpirun -np R (docs/TP.md)\n" \
    "  --ep R                  expert parallel (MoE models): the routed experts over R MPI ranks\n"     \
    "  --pp S                  pipeline parallel: the layers in S stages, one MPI rank each\n"

/* Signed models (cli/model.c, docs/SIGNING.md): with --trusted-keys DIR, a loader checks the
 * model's signature file, key, size and name before loading it (fills *rec), and the
 * SHA-256 computed while loading after. Each returns 0, or 1 after printing
 * "sov CMD: model refused: <why>". */
struct sign_record;
int cli_signed_before_load(const char *cmd, const char *trusted_dir, const char *model,
                           struct sign_record *rec);
int cli_signed_after_load(const char *cmd, const struct sign_record *rec, const char *model,
                          const sov_model_info *info);

/* The chat template a command renders with (cli/chat_template.c): FILE when given (a file
 * that does not compile is an error: returns 1 after printing it), else the vocabulary's
 * tokenizer.chat_template (one that does not compile is a warning and *out stays NULL: the
 * built-in family is used). Says on stderr which it is. */
int cli_chat_template_load(const char *cmd, const char *file, const sov_vocab *vocab, sov_chat_template **out);

/* Path of the built-in demo model, generated on first use (random weights). */
int cli_demo_model_path(char *buf, size_t cap);

#endif
