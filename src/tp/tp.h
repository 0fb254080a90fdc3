/* tp.h - tensor parallelism over MPI, internal side (docs/TP.md).
 *
 * "Replicated control, sharded data": rank 0 runs the program; each call that changes
 * its context's state (a context made or freed, a sequence started, truncated or freed,
 * KV blocks attached, retained or released, a batch decoded) is first sent to the other
 * ranks as a command, which they apply to their own context (sov_tp_worker_run). The
 * context's bookkeeping is deterministic, so every rank's paged KV tables stay
 * identical while each holds only its own KV heads. Inside the forward pass the ranks
 * meet twice per layer, in tp_allreduce.
 *
 * Every MPI call returns errors (MPI_ERRORS_RETURN) and is waited on with a deadline: a
 * lost rank stops this process with a one-line message (tp_fatal), never a hang. */
#ifndef SOV_TP_TP_H
#define SOV_TP_TP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sov.h"

typedef enum tp_op {
    TP_OP_END = 1,     /* rank 0 freed the model: workers return */
    TP_OP_CTX_NEW,     /* a: the sov_context_params as given, in args */
    TP_OP_CTX_FREE,
    TP_OP_SEQ_NEW,     /* a: the id rank 0 got */
    TP_OP_SEQ_FREE,    /* a: id */
    TP_OP_SEQ_TRUNCATE,/* a: id, b: n_keep */
    TP_OP_ATTACH,      /* a: id; payload: the blocks */
    TP_OP_RETAIN,      /* a: block */
    TP_OP_RELEASE,     /* a: block */
    TP_OP_DECODE,      /* a: n_tokens; payload: tokens, seqs, positions (3 x a); with --pp
                          also each token's outputs (4 x a: PP_OUT_* bits) */
} tp_op;

enum { TP_ARGS = 7 };

/* True when tp splits the model (more than one rank). */
static inline bool tp_active(const sov_tp *tp) { return tp && sov_tp_size(tp) > 1; }
/* True when tp splits the model's layers tensor-parallel (--tp), the experts (--ep) or
 * the layers into stages (--pp). */
static inline bool tp_splits(const sov_tp *tp, sov_split how) { return tp_active(tp) && sov_tp_split(tp) == how; }
/* True on rank 0 of a split model: the rank whose context calls are sent. */
static inline bool tp_root(const sov_tp *tp) { return tp_active(tp) && sov_tp_rank(tp) == 0; }

/* Every rank, once its shard is loaded: waits (without the step deadline: loading a large
 * model from a slow disk may take minutes) until all have loaded theirs. */
void tp_loaded(sov_tp *tp);
/* Rank 0: sends one command (args: TP_ARGS values; payload: n int32 values, may be 0). */
void tp_send(sov_tp *tp, tp_op op, const int64_t *args, const int32_t *payload, size_t n);
/* Rank 0: sends a batch to decode (its tokens, sequences and positions; with --pp also
 * which tokens want logits and, embd not NULL, which want hidden states: the last stage
 * computes them). */
void tp_send_decode(sov_tp *tp, const sov_batch *b, const uint8_t *embd);
enum { PP_OUT_LOGITS = 1, PP_OUT_EMBD = 2 };
/* Every rank, the same call: stops the job unless v is the same on every rank (what names
 * it in the message), e.g. the KV blocks of a new context, on which every later command
 * relies. */
void tp_agree(sov_tp *tp, int64_t v, const char *what);
/* Rank 0's context count: a split model runs one context at a time (the commands name
 * none). Returns false, with the error set, when one is already open. */
bool tp_context_open(sov_tp *tp);
void tp_context_closed(sov_tp *tp);

/* x (n floats) becomes the sum of every rank's x, added in rank order, so that the
 * result is the same on every rank and from run to run. Called by one thread. */
void tp_allreduce(sov_tp *tp, float *x, size_t n);

/* Point to point (--pp, pp.c): a rank sends a stage's hidden states to the next and the
 * last stage its outputs to rank 0. tp_isend / tp_irecv start moving n floats to / from
 * rank peer under tag (messages of one tag between two ranks arrive in the order sent) and
 * return a handle; the buffer stays untouched until the transfer is waited for. */
int tp_isend(sov_tp *tp, const float *x, size_t n, int peer, int tag);
int tp_irecv(sov_tp *tp, float *x, size_t n, int peer, int tag);
/* A scratch buffer of n floats for transfers (the all-reduce's, unused with --pp), valid
 * until the next call; one thread only. */
float *tp_p2p_room(sov_tp *tp, size_t n);
/* Waits for one transfer, with the step deadline (a lost rank ends the process). */
void tp_p2p_wait(sov_tp *tp, int handle, const char *what);
/* Lets the transfers under way progress, without waiting (between two layers). */
void tp_p2p_poll(sov_tp *tp);
/* Waits for every transfer under way; the handles are then spent. */
void tp_p2p_wait_all(sov_tp *tp, const char *what);

/* --ep's exchanges (ep.c), called by one thread between two barriers of the forward job,
 * counts and displacements in floats, one per rank; a lost rank: tp_fatal. */
enum { TP_SCRATCH = 4 };
/* Buffer `which` (0..TP_SCRATCH-1) of at least `bytes`, kept with tp (freed by sov_tp_free);
 * its contents are lost when it grows. Out of memory: tp_fatal. */
void *tp_scratch(sov_tp *tp, int which, size_t bytes);
/* MPI_Alltoallv of floats: send[sdispls[q] ..] (scounts[q]) to rank q, and from every
 * rank p rcounts[p] floats into recv + rdispls[p]. */
void tp_alltoallv(sov_tp *tp, const float *send, const int *scounts, const int *sdispls, float *recv,
                  const int *rcounts, const int *rdispls, const char *what);
/* MPI_Allgatherv in place: rank q's x[displs[q] .. + counts[q]) to every rank. */
void tp_allgatherv(sov_tp *tp, float *x, const int *counts, const int *displs, const char *what);
/* Bytes up to which an exchange gathers everything on every rank in one collective rather
 * than two with less traffic (64 KiB; SOV_TP_GATHER_BYTES sets it, for tp_allreduce too). */
size_t tp_gather_bytes(const sov_tp *tp);
/* --ep: the routed experts [*lo, *hi) of X this rank holds (ep.c); all of them unless the
 * experts are split. */
static inline void ep_experts(const sov_tp *tp, int X, int *lo, int *hi) {
    const bool split = tp_splits(tp, SOV_SPLIT_EXPERT);
    const int r = split ? sov_tp_rank(tp) : 0, R = split ? sov_tp_size(tp) : 1;
    *lo = r * (X / R);
    *hi = (r + 1) * (X / R);
}

/* Cuts a loaded decoder down to rank's shard (shard.c): whole query and KV heads, FFN
 * rows; the model's hparams then describe the shard. Errors: SOV_ERR_UNSUPPORTED
 * (encoders, experts, heads or FFN width not divisible by the ranks, a column split off
 * the quantization block boundary), SOV_ERR_NOMEM. */
struct sov_model;
sov_status tp_shard_model(struct sov_model *m, int rank, int n_ranks);
/* --ep (ep.c): keeps rank's share of every MoE layer's routed experts. Errors:
 * SOV_ERR_UNSUPPORTED (a model without routed experts, experts not divisible by the ranks). */
sov_status ep_shard_model(struct sov_model *m, int rank, int n_ranks);
/* --pp (pp.c): keeps rank's stage, a contiguous range of the layers (m->layers then
 * holds only them, hp.n_layer counts them, m->pp_n_layer the whole model's); only rank 0
 * keeps the LM head (it applies it to the last stage's hidden states). Errors: SOV_ERR_UNSUPPORTED (fewer layers than stages,
 * encoders). */
sov_status pp_shard_model(struct sov_model *m, int rank, int n_ranks);
/* --pp: the tokens of one micro-batch of a batch of T tokens over S stages:
 * SOV_PP_MICRO_BATCH when set (>= 1), else max(ceil(T / 2S), PP_MICRO_BATCH_MIN). */
enum { PP_MICRO_BATCH_MIN = 16 };
int pp_micro_batch(int T, int S);
/* --pp, the last stage's worker: which tokens of a batch want outputs. */
typedef struct pp_outputs {
    uint8_t *want;    /* (2, T) which tokens want logits, which hidden states */
    size_t want_cap;
} pp_outputs;
/* Decodes a decode command's batch (payload: tokens, sequences, positions, PP_OUT_* bits;
 * T each) on the last stage, which sends the final hidden states of the tokens wanting
 * outputs to rank 0 (forward.c). */
sov_status pp_last_stage_decode(sov_tp *tp, sov_context *c, const int32_t *payload, int32_t T,
                                pp_outputs *o);
void pp_outputs_free(pp_outputs *o);

/* Prints "sov: tp rank R: <message>" and ends the process with status 1 (mpirun then ends
 * the others). */
_Noreturn void tp_fatal(const sov_tp *tp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
