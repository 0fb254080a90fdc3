/* tp.c - tensor parallelism over MPI: start-up, the commands rank 0 sends, the worker
 * loop of the other ranks, and the all-reduce of the forward pass (tp.h, docs/TP.md).
 *
 * Every wait is a non-blocking MPI call polled with MPI_Test: a rank waiting inside a
 * step gives up after SOV_TP_TIMEOUT seconds (default 60) with a clear message, and an
 * idle worker (a server with no requests) polls ever more slowly instead of spinning a
 * core. Built without MPI (SOV_HAVE_MPI undefined), sov_tp_init says so and nothing
 * else here is reachable. */
#include "tp/tp.h"

#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"
#include "core/util.h"
#include "model/context.h"

const char *sov_split_option(sov_split how) {
    return how == SOV_SPLIT_EXPERT ? "--ep" : how == SOV_SPLIT_PIPELINE ? "--pp" : "--tp";
}

sov_status sov_tp_init(int32_t n_ranks, sov_tp **out) { return sov_tp_init_split(n_ranks, SOV_SPLIT_TENSOR, out); }

_Noreturn void tp_fatal(const sov_tp *tp, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "sov: tp rank %d of %d: %s\n", tp ? sov_tp_rank(tp) : 0, tp ? sov_tp_size(tp) : 0, msg);
    fflush(stderr);
    _exit(1);
}

#ifndef SOV_HAVE_MPI

struct sov_tp {
    int unused;
};

sov_status sov_tp_init_split(int32_t n_ranks, sov_split how, sov_tp **out) {
    *out = NULL;
    return sov_fail(SOV_ERR_UNSUPPORTED, "%s %d: this sov was built without MPI; install libopenmpi-dev and "
                    "openmpi-bin (scripts/deps.sh) and rebuild", sov_split_option(how), n_ranks);
}
sov_split sov_tp_split(const sov_tp *tp) { return SOV_SPLIT_TENSOR; }
int32_t sov_tp_rank(const sov_tp *tp) { return 0; }
int32_t sov_tp_size(const sov_tp *tp) { return 1; }
sov_status sov_tp_worker_run(sov_model *model) {
    return sov_fail(SOV_ERR_UNSUPPORTED, "tp: this sov was built without MPI");
}
void sov_tp_free(sov_tp *tp) {}
void tp_send(sov_tp *tp, tp_op op, const int64_t *args, const int32_t *payload, size_t n) {
    tp_fatal(tp, "built without MPI");
}
void tp_send_decode(sov_tp *tp, const sov_batch *b, const uint8_t *embd) { tp_fatal(tp, "built without MPI"); }
int tp_isend(sov_tp *tp, const float *x, size_t n, int peer, int tag) { tp_fatal(tp, "built without MPI"); }
int tp_irecv(sov_tp *tp, float *x, size_t n, int peer, int tag) { tp_fatal(tp, "built without MPI"); }
void tp_p2p_wait(sov_tp *tp, int handle, const char *what) { tp_fatal(tp, "built without MPI"); }
void tp_p2p_poll(sov_tp *tp) {}
float *tp_p2p_room(sov_tp *tp, size_t n) { tp_fatal(tp, "built without MPI"); }
void tp_p2p_wait_all(sov_tp *tp, const char *what) {}
bool tp_context_open(sov_tp *tp) { return true; }
void tp_agree(sov_tp *tp, int64_t v, const char *what) {}
void tp_loaded(sov_tp *tp) {}
void tp_context_closed(sov_tp *tp) {}
void tp_allreduce(sov_tp *tp, float *x, size_t n) { tp_fatal(tp, "built without MPI"); }
void *tp_scratch(sov_tp *tp, int which, size_t bytes) { tp_fatal(tp, "built without MPI"); }
size_t tp_gather_bytes(const sov_tp *tp) { return 0; }
void tp_alltoallv(sov_tp *tp, const float *send, const int *scounts, const int *sdispls, float *recv,
                  const int *rcounts, const int *rdispls, const char *what) {
    tp_fatal(tp, "built without MPI");
}
void tp_allgatherv(sov_tp *tp, float *x, const int *counts, const int *displs, const char *what) {
    tp_fatal(tp, "built without MPI");
}

#else

#include <mpi.h>

struct sov_tp {
    int rank, size;
    sov_split how;      /* what is split across the ranks */
    MPI_Comm comm;      /* a duplicate of MPI_COMM_WORLD that returns errors */
    double timeout_s;   /* longest wait inside a step; 0: none */
    float *gather;      /* (R, n) every rank's partial sums (all-reduce scratch) */
    size_t gather_cap;  /* floats */
    int *counts, *displs; /* [R] the all-reduce's chunk of each rank */
    int *rcounts, *rdispls; /* [R] where each rank's copy of this rank's chunk arrives */
    int32_t *scratch;   /* rank 0: a decode command's payload */
    size_t scratch_cap;
    int contexts;       /* rank 0: contexts open (at most one) */
    size_t gather_max;  /* bytes up to which the all-reduce gathers every partial */
    MPI_Request *p2p;   /* --pp: the point-to-point transfers of this step (tp_isend) */
    int n_p2p, p2p_cap;
    void *scratch_buf[TP_SCRATCH]; /* tp_scratch: the --ep exchange's buffers */
    size_t scratch_bytes[TP_SCRATCH];
    bool stats;         /* SOV_TP_STATS=1: at the end, print the time waited in steps */
    double waited_s;    /* seconds spent in tp_wait inside steps */
    long waits;
    double ep_sent;     /* bytes this rank sent to other ranks in --ep exchanges */
};

/* Up to this many bytes the all-reduce gathers every partial (one collective); above it,
 * each rank sums one chunk (all-to-all) and the chunks are gathered (2(R-1)/R of the
 * bytes instead of R-1 times them). Both add in rank order, so they agree bitwise (the
 * tests set SOV_TP_GATHER_BYTES to force one or the other). */
enum { TP_GATHER_MAX_BYTES = 64 << 10 };

static const char *mpi_error(int rc) {
    static _Thread_local char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "MPI error %d", rc);
    return text;
}

static void nap(long ns) {
    const struct timespec ts = {0, ns};
    nanosleep(&ts, NULL);
}

/* Polls req to completion. in_step: a step is under way, so the other ranks owe an
 * answer within the timeout; otherwise (a worker waiting for its next command) the wait
 * has no end, and slows to a poll every half millisecond. */
static void tp_wait(sov_tp *tp, MPI_Request *req, bool in_step, const char *what) {
    const double t0 = sov_now_s();
    for (long polls = 0;; polls++) {
        int done = 0;
        const int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) tp_fatal(tp, "%s failed: %s (a rank died?); stopping", what, mpi_error(rc));
        if (done) {
            if (in_step) tp->waited_s += sov_now_s() - t0, tp->waits++;
            return;
        }
        if (polls < 1000) continue;
        if (in_step && tp->timeout_s > 0 && sov_now_s() - t0 > tp->timeout_s)
            tp_fatal(tp, "%s: no answer from the other ranks for %.0f s (a rank died or hangs; SOV_TP_TIMEOUT "
                     "sets the limit); stopping", what, tp->timeout_s);
        if (polls < 20000) sched_yield();
        else nap(in_step || polls < 40000 ? 20000 : 500000);
    }
}

static void check(sov_tp *tp, int rc, const char *what) {
    if (rc != MPI_SUCCESS) tp_fatal(tp, "%s failed: %s; stopping", what, mpi_error(rc));
}

static bool launched_by_mpi(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
}

sov_status sov_tp_init_split(int32_t n_ranks, sov_split how, sov_tp **out) {
    *out = NULL;
    const char *opt = sov_split_option(how);
    if (n_ranks < 2 || n_ranks > 4096) return sov_fail(SOV_ERR_ARG, "%s must be 2..4096, not %d", opt, n_ranks);
    if (!launched_by_mpi())
        return sov_fail(SOV_ERR_ARG, "%s %d needs %d processes started by MPI: mpirun -np %d sov ... %s %d", opt,
                        n_ranks, n_ranks, n_ranks, opt, n_ranks);
    const char *ws = getenv("OMPI_COMM_WORLD_SIZE");
    if (ws && atoi(ws) != n_ranks)
        return sov_fail(SOV_ERR_ARG, "%s %d but mpirun started %s processes: use mpirun -np %d", opt, n_ranks, ws,
                        n_ranks);
    int provided = 0, inited = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
        return sov_fail(SOV_ERR_IO, "tp: MPI_Init_thread failed");
    if (!inited && provided < MPI_THREAD_SERIALIZED) {
        MPI_Finalize();
        return sov_fail(SOV_ERR_UNSUPPORTED, "tp: this MPI library cannot be called from several threads "
                        "(MPI_THREAD_SERIALIZED)");
    }
    sov_tp *tp = calloc(1, sizeof *tp);
    if (!tp) return sov_fail(SOV_ERR_NOMEM, "tp: out of memory");
    tp->how = how;
    MPI_Comm_dup(MPI_COMM_WORLD, &tp->comm);
    MPI_Comm_set_errhandler(tp->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(tp->comm, &tp->rank);
    MPI_Comm_size(tp->comm, &tp->size);
    tp->timeout_s = 60;
    const char *to = getenv("SOV_TP_TIMEOUT");
    if (to && *to) tp->timeout_s = atof(to) > 0 ? atof(to) : 0;
    const char *gb = getenv("SOV_TP_GATHER_BYTES");
    tp->gather_max = gb && *gb ? (size_t)strtoull(gb, NULL, 10) : TP_GATHER_MAX_BYTES;
    const char *stats = getenv("SOV_TP_STATS");
    tp->stats = stats && *stats == '1';
    tp->counts = calloc((size_t)tp->size, sizeof *tp->counts);
    tp->displs = calloc((size_t)tp->size, sizeof *tp->displs);
    tp->rcounts = calloc((size_t)tp->size, sizeof *tp->rcounts);
    tp->rdispls = calloc((size_t)tp->size, sizeof *tp->rdispls);
    int *probe = calloc((size_t)tp->size * 2, sizeof *probe);
    if (tp->size != n_ranks || !tp->counts || !tp->displs || !tp->rcounts || !tp->rdispls || !probe) {
        const int size = tp->size;
        free(probe);
        sov_tp_free(tp);
        return size != n_ranks ? sov_fail(SOV_ERR_ARG, "%s %d but MPI started %d processes: use mpirun -np %d",
                                          opt, n_ranks, size, n_ranks)
                               : sov_fail(SOV_ERR_NOMEM, "tp: out of memory");
    }
    /* one message between every pair of ranks now, so that every connection is open
     * before `sov serve` locks new outbound connections away (src/sandbox) */
    MPI_Request req;
    for (int r = 0; r < tp->size; r++) probe[r] = tp->rank;
    check(tp, MPI_Ialltoall(probe, 1, MPI_INT, probe + tp->size, 1, MPI_INT, tp->comm, &req), "tp start-up");
    tp_wait(tp, &req, true, "tp start-up");
    for (int r = 0; r < tp->size; r++)
        if (probe[tp->size + r] != r) tp_fatal(tp, "tp start-up: rank %d answered as %d", r, probe[tp->size + r]);
    free(probe);
    *out = tp;
    return SOV_OK;
}

int32_t sov_tp_rank(const sov_tp *tp) { return tp ? tp->rank : 0; }
sov_split sov_tp_split(const sov_tp *tp) { return tp ? tp->how : SOV_SPLIT_TENSOR; }
int32_t sov_tp_size(const sov_tp *tp) { return tp ? tp->size : 1; }

void tp_loaded(sov_tp *tp) {
    MPI_Request req;
    check(tp, MPI_Ibarrier(tp->comm, &req), "waiting for every rank's model");
    tp_wait(tp, &req, false, "waiting for every rank's model");
}

void sov_tp_free(sov_tp *tp) {
    if (!tp) return;
    if (tp->stats)
        fprintf(stderr, "sov: tp rank %d of %d: %.3f s waited in %ld exchanges and commands; %.0f bytes sent in --ep "
                "exchanges\n", tp->rank, tp->size, tp->waited_s, tp->waits, tp->ep_sent);
    MPI_Comm_free(&tp->comm);
    free(tp->gather);
    free(tp->counts);
    free(tp->displs);
    free(tp->rcounts);
    free(tp->rdispls);
    free(tp->scratch);
    free(tp->p2p);
    for (int i = 0; i < TP_SCRATCH; i++) free(tp->scratch_buf[i]);
    free(tp);
    MPI_Finalize();
}

void tp_agree(sov_tp *tp, int64_t v, const char *what) {
    const int64_t in[2] = {v, -v};
    int64_t out[2];
    MPI_Request req;
    check(tp, MPI_Iallreduce(in, out, 2, MPI_INT64_T, MPI_MAX, tp->comm, &req), what);
    tp_wait(tp, &req, true, what);
    if (out[0] != v || -out[1] != v)
        tp_fatal(tp, "%s: %lld here, %lld to %lld across the ranks: the ranks are out of step", what, (long long)v,
                 (long long)-out[1], (long long)out[0]);
}

bool tp_context_open(sov_tp *tp) {
    if (tp->contexts > 0) {
        sov_fail(SOV_ERR_UNSUPPORTED, "tp: a model split across ranks runs one context at a time");
        return false;
    }
    tp->contexts++;
    return true;
}

void tp_context_closed(sov_tp *tp) { tp->contexts--; }

/* A command: op, the arguments, and the payload's length; then the payload. */
enum { TP_HEADER = TP_ARGS + 2 };

void tp_send(sov_tp *tp, tp_op op, const int64_t *args, const int32_t *payload, size_t n) {
    int64_t h[TP_HEADER] = {op};
    if (args) memcpy(h + 1, args, TP_ARGS * sizeof *args);
    h[TP_HEADER - 1] = (int64_t)n;
    MPI_Request req;
    check(tp, MPI_Ibcast(h, TP_HEADER, MPI_INT64_T, 0, tp->comm, &req), "sending a command");
    tp_wait(tp, &req, true, "sending a command");
    if (n == 0) return;
    check(tp, MPI_Ibcast((void *)payload, (int)n, MPI_INT32_T, 0, tp->comm, &req), "sending a command");
    tp_wait(tp, &req, true, "sending a command");
}

/* Rank 0's decode command: tokens, sequences and positions in one payload; with --pp
 * also each token's outputs (PP_OUT_* bits), whose rows the last stage sends back. */
void tp_send_decode(sov_tp *tp, const sov_batch *b, const uint8_t *embd) {
    const size_t T = (size_t)b->n_tokens, n = (tp->how == SOV_SPLIT_PIPELINE ? 4 : 3) * T;
    if (n > tp->scratch_cap) {
        int32_t *p = realloc(tp->scratch, n * sizeof *p);
        if (!p) tp_fatal(tp, "out of memory for a batch of %zu tokens", T);
        tp->scratch = p;
        tp->scratch_cap = n;
    }
    memcpy(tp->scratch, b->token, T * sizeof *tp->scratch);
    memcpy(tp->scratch + T, b->seq, T * sizeof *tp->scratch);
    memcpy(tp->scratch + 2 * T, b->pos, T * sizeof *tp->scratch);
    for (size_t i = 0; n > 3 * T && i < T; i++)
        tp->scratch[3 * T + i] = (b->logits && b->logits[i] ? PP_OUT_LOGITS : 0) | (embd && embd[i] ? PP_OUT_EMBD : 0);
    const int64_t args[TP_ARGS] = {(int64_t)T};
    tp_send(tp, TP_OP_DECODE, args, tp->scratch, n);
}

/* ---- point to point (--pp) ---- */

static void gather_room(sov_tp *tp, size_t floats);

static int p2p_start(sov_tp *tp, size_t n, const char *what) {
    if (n > INT32_MAX) tp_fatal(tp, "%s: %zu floats in one message", what, n);
    if (tp->n_p2p == tp->p2p_cap) {
        const int cap = tp->p2p_cap ? 2 * tp->p2p_cap : 16;
        MPI_Request *p = realloc(tp->p2p, (size_t)cap * sizeof *p);
        if (!p) tp_fatal(tp, "out of memory for %d transfers", cap);
        tp->p2p = p;
        tp->p2p_cap = cap;
    }
    return tp->n_p2p++;
}

int tp_isend(sov_tp *tp, const float *x, size_t n, int peer, int tag) {
    const int h = p2p_start(tp, n, "pipeline send");
    check(tp, MPI_Isend(x, (int)n, MPI_FLOAT, peer, tag, tp->comm, &tp->p2p[h]), "pipeline send");
    return h;
}

int tp_irecv(sov_tp *tp, float *x, size_t n, int peer, int tag) {
    const int h = p2p_start(tp, n, "pipeline receive");
    check(tp, MPI_Irecv(x, (int)n, MPI_FLOAT, peer, tag, tp->comm, &tp->p2p[h]), "pipeline receive");
    return h;
}

float *tp_p2p_room(sov_tp *tp, size_t n) {
    gather_room(tp, SOV_MAX(n, (size_t)1));
    return tp->gather;
}

void tp_p2p_wait(sov_tp *tp, int h, const char *what) {
    if (h < 0 || h >= tp->n_p2p) tp_fatal(tp, "%s: no transfer %d", what, h);
    tp_wait(tp, &tp->p2p[h], true, what); /* a completed request is MPI_REQUEST_NULL: done at once */
}

void tp_p2p_poll(sov_tp *tp) {
    int done = 0;
    for (int i = 0; i < tp->n_p2p; i++) {
        if (tp->p2p[i] == MPI_REQUEST_NULL) continue;
        check(tp, MPI_Test(&tp->p2p[i], &done, MPI_STATUS_IGNORE), "pipeline transfer");
    }
}

void tp_p2p_wait_all(sov_tp *tp, const char *what) {
    for (int i = 0; i < tp->n_p2p; i++) tp_wait(tp, &tp->p2p[i], true, what);
    tp->n_p2p = 0;
}

static void gather_room(sov_tp *tp, size_t floats) {
    if (floats <= tp->gather_cap) return;
    free(tp->gather);
    tp->gather = malloc(floats * sizeof *tp->gather);
    if (!tp->gather) tp_fatal(tp, "out of memory for the all-reduce (%zu floats)", floats);
    tp->gather_cap = floats;
}

void tp_allreduce(sov_tp *tp, float *x, size_t n) {
    const int R = tp->size;
    MPI_Request req;
    if (n * sizeof(float) <= tp->gather_max || n < (size_t)R) {
        gather_room(tp, (size_t)R * n);
        check(tp, MPI_Iallgather(x, (int)n, MPI_FLOAT, tp->gather, (int)n, MPI_FLOAT, tp->comm, &req), "all-reduce");
        tp_wait(tp, &req, true, "all-reduce");
        for (size_t i = 0; i < n; i++) {
            float s = tp->gather[i];
            for (int r = 1; r < R; r++) s += tp->gather[(size_t)r * n + i];
            x[i] = s;
        }
        return;
    }
    /* rank r sums the chunk [displs[r], displs[r] + counts[r]) of everyone's partials */
    for (int r = 0, at = 0; r < R; r++) {
        tp->counts[r] = (int)(n / (size_t)R + ((size_t)r < n % (size_t)R));
        tp->displs[r] = at;
        at += tp->counts[r];
    }
    const int mine = tp->counts[tp->rank];
    gather_room(tp, (size_t)R * (size_t)mine);
    for (int r = 0; r < R; r++) { /* every rank's copy of my chunk, rank r's at r * mine */
        tp->rcounts[r] = mine;
        tp->rdispls[r] = r * mine;
    }
    check(tp, MPI_Ialltoallv(x, tp->counts, tp->displs, MPI_FLOAT, tp->gather, tp->rcounts, tp->rdispls, MPI_FLOAT,
                             tp->comm, &req), "all-reduce");
    tp_wait(tp, &req, true, "all-reduce");
    float *dst = x + tp->displs[tp->rank];
    for (int i = 0; i < mine; i++) {
        float s = tp->gather[i];
        for (int r = 1; r < R; r++) s += tp->gather[(size_t)r * (size_t)mine + (size_t)i];
        dst[i] = s;
    }
    check(tp, MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, tp->counts, tp->displs, MPI_FLOAT, tp->comm,
                              &req), "all-reduce");
    tp_wait(tp, &req, true, "all-reduce");
}

/* ---- the exchanges of expert parallelism (ep.c) ---- */

size_t tp_gather_bytes(const sov_tp *tp) { return tp->gather_max; }

void *tp_scratch(sov_tp *tp, int which, size_t bytes) {
    which = which < 0 ? 0 : which >= TP_SCRATCH ? TP_SCRATCH - 1 : which; /* callers pass constants */
    if (bytes <= tp->scratch_bytes[which]) return tp->scratch_buf[which];
    free(tp->scratch_buf[which]);
    tp->scratch_buf[which] = malloc(bytes);
    if (!tp->scratch_buf[which]) tp_fatal(tp, "out of memory for %zu bytes of exchange buffers", bytes);
    tp->scratch_bytes[which] = bytes;
    return tp->scratch_buf[which];
}

void tp_alltoallv(sov_tp *tp, const float *send, const int *scounts, const int *sdispls, float *recv,
                  const int *rcounts, const int *rdispls, const char *what) {
    MPI_Request req;
    for (int q = 0; q < tp->size; q++) tp->ep_sent += q == tp->rank ? 0.0 : (double)scounts[q] * sizeof(float);
    check(tp, MPI_Ialltoallv(send, scounts, sdispls, MPI_FLOAT, recv, rcounts, rdispls, MPI_FLOAT, tp->comm, &req),
          what);
    tp_wait(tp, &req, true, what);
}

void tp_allgatherv(sov_tp *tp, float *x, const int *counts, const int *displs, const char *what) {
    MPI_Request req;
    tp->ep_sent += (double)counts[tp->rank] * sizeof(float) * (double)(tp->size - 1);
    check(tp, MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, counts, displs, MPI_FLOAT, tp->comm, &req), what);
    tp_wait(tp, &req, true, what);
}

/* ---- the worker loop ---- */

static sov_context *need_ctx(const sov_tp *tp, sov_context *c, tp_op op) {
    if (!c) tp_fatal(tp, "command %d arrived with no context open: the ranks are out of step", op);
    return c;
}

sov_status sov_tp_worker_run(sov_model *m) {
    sov_tp *tp = m->tp;
    if (!tp_active(tp) || tp->rank == 0)
        return sov_fail(SOV_ERR_ARG, "tp: sov_tp_worker_run is for ranks > 0 of a model loaded with tp");
    sov_context *c = NULL;
    int32_t *payload = NULL;
    size_t cap = 0;
    pp_outputs outs = {0}; /* --pp, the last stage: which tokens want outputs */
    for (;;) {
        int64_t h[TP_HEADER];
        MPI_Request req;
        check(tp, MPI_Ibcast(h, TP_HEADER, MPI_INT64_T, 0, tp->comm, &req), "receiving a command");
        tp_wait(tp, &req, false, "receiving a command");
        const tp_op op = (tp_op)h[0];
        const int64_t *a = h + 1, n = h[TP_HEADER - 1];
        if (n < 0 || n > (int64_t)1 << 28) tp_fatal(tp, "a command with %lld values", (long long)n);
        if (n > 0) {
            if ((size_t)n > cap) {
                free(payload);
                if (!(payload = malloc((size_t)n * sizeof *payload))) tp_fatal(tp, "out of memory for a command");
                cap = (size_t)n;
            }
            check(tp, MPI_Ibcast(payload, (int)n, MPI_INT32_T, 0, tp->comm, &req), "receiving a command");
            tp_wait(tp, &req, true, "receiving a command");
        }
        sov_status st = SOV_OK;
        switch (op) {
        case TP_OP_END:
            sov_context_free(c);
            free(payload);
            pp_outputs_free(&outs);
            return SOV_OK;
        case TP_OP_CTX_NEW: {
            if (c) tp_fatal(tp, "a second context: the ranks are out of step");
            const sov_context_params p = {.n_ctx = (int32_t)a[0],
                                          .n_seq_max = (int32_t)a[1],
                                          .n_batch = (int32_t)a[2],
                                          .kv_cache_bytes = a[3],
                                          .n_threads = (int32_t)a[4],
                                          .kv_type = (sov_kv_type)a[5],
                                          .kv_type_v = (sov_kv_type)a[6]};
            st = sov_context_new(m, &p, &c);
            if (!st) tp_agree(tp, c->kv.n_blocks, "the KV blocks of a new context");
            break;
        }
        case TP_OP_CTX_FREE:
            sov_context_free(need_ctx(tp, c, op));
            c = NULL;
            break;
        case TP_OP_SEQ_NEW: {
            sov_seq_id id = -1;
            st = sov_seq_new(need_ctx(tp, c, op), &id);
            if (!st && id != a[0]) tp_fatal(tp, "sequence %d here is %lld on rank 0: out of step", id, (long long)a[0]);
            break;
        }
        case TP_OP_SEQ_FREE:
            sov_seq_free(need_ctx(tp, c, op), (sov_seq_id)a[0]);
            break;
        case TP_OP_SEQ_TRUNCATE:
            st = sov_seq_truncate(need_ctx(tp, c, op), (sov_seq_id)a[0], (int32_t)a[1]);
            break;
        case TP_OP_ATTACH:
            st = sov_seq_attach_blocks(need_ctx(tp, c, op), (sov_seq_id)a[0], payload, (int32_t)n);
            break;
        case TP_OP_RETAIN:
            sov_kv_block_retain(need_ctx(tp, c, op), (int32_t)a[0]);
            break;
        case TP_OP_RELEASE:
            sov_kv_block_release(need_ctx(tp, c, op), (int32_t)a[0]);
            break;
        case TP_OP_DECODE: {
            const int32_t T = (int32_t)a[0];
            const int64_t per = tp->how == SOV_SPLIT_PIPELINE ? 4 : 3;
            if (T < 1 || per * (int64_t)T != n)
                tp_fatal(tp, "a decode command of %d tokens with %lld values", T, (long long)n);
            if (tp->how == SOV_SPLIT_PIPELINE && tp->rank == tp->size - 1) {
                st = pp_last_stage_decode(tp, need_ctx(tp, c, op), payload, T, &outs);
                break;
            }
            const sov_batch b = {T, payload, payload + T, payload + 2 * T, NULL};
            st = sov_decode(need_ctx(tp, c, op), &b, NULL);
            break;
        }
        default:
            tp_fatal(tp, "unknown command %d: the ranks are out of step", (int)op);
        }
        /* rank 0 sends only what succeeded there; the same call on the same state must
         * succeed here too */
        if (st) tp_fatal(tp, "command %d failed here but not on rank 0: %s", (int)op, sov_last_error());
    }
}

#endif
