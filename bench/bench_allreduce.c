/* bench_allreduce.c - what tensor parallelism's communication costs over MPI.
 *
 *   mpirun -np R bench_allreduce [--n-embd LIST] [--tokens LIST] [--ops LIST]
 *                                [--budget-ms MS] [--max-reps N]
 *
 * Tensor parallelism (issue 16) sends, per layer and step, one all-reduce of T x n_embd
 * float32 after the attention output projection and one after the FFN down projection, and
 * rank 0 broadcasts each step's batch. For every message of T x n_embd floats (n_embd and
 * T from the comma-separated lists; defaults 288,2048,4096,8192 and 1,8,64,512) it times:
 *
 *   pingpong   rank 0 sends m bytes to rank 1 and gets them back; half the round trip is
 *              the point-to-point time alpha + m / beta that docs/SCALE-OUT.md's model uses
 *   allreduce  MPI_Allreduce in place, MPI_SUM of floats (whatever algorithm MPI picks)
 *   gathersum  what sov's tensor parallelism does for messages up to 64 KB (src/tp/tp.c):
 *              MPI_Iallgather of every rank's partial sums, then each rank adds them in
 *              rank order (the same sum on every rank and every run)
 *   rsag       what it does above 64 KB: a reduce-scatter by hand (MPI_Ialltoallv of the
 *              R chunks, each rank sums its chunk in rank order), then MPI_Iallgatherv
 *   bcast      MPI_Ibcast of m bytes from rank 0 (the step's batch), then a 1-int
 *              MPI_Igather back to rank 0, so that broadcasts cannot overlap
 *
 * A repetition is a barrier, then a batch of operations back to back (as a layer loop
 * issues them; about 50 ms, 8 to 256 of them), each rank timing only the operations, not
 * its preparation of the buffer; the repetition's figure is the slowest rank's mean per
 * operation. Back to back, the barrier's exit skew (up to one link delay) is paid once per
 * batch, not per operation. Repetitions run until --budget-ms (default 300) is spent per
 * size (at least 5 after 2 warm-ups, at most --max-reps, default 2000). Rank 0 prints one
 * tab-separated line per measurement:
 *
 *   op ranks n_embd tokens bytes reps batch median_us min_us
 *
 * and every all-reduced and broadcast result is checked against the exact expected sum
 * (small integers, exact in float32): a wrong result exits 1 with a message, so a broken
 * network is never reported as a fast one. Bad arguments exit 2. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

enum { MAX_LIST = 32 };

typedef struct {
    int n_embd[MAX_LIST], n_n_embd; /* hidden sizes to try */
    int tokens[MAX_LIST], n_tokens; /* tokens per step to try */
    int ops;                        /* bit set of OP_* */
    double budget_s;                /* time spent per (op, size) */
    int max_reps;                   /* cap on repetitions per (op, size) */
} options;

enum { OP_PINGPONG = 1, OP_ALLREDUCE = 2, OP_GATHERSUM = 4, OP_RSAG = 8, OP_BCAST = 16, N_OPS = 5 };
static const char *const op_names[N_OPS] = {"pingpong", "allreduce", "gathersum", "rsag", "bcast"};

/* Parses "a,b,c" of positive ints at most max into out; returns the count or -1. */
static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    while (*s) {
        char *end = NULL;
        const long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || v > max || n == MAX_LIST) return -1;
        out[n++] = (int)v;
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        s = end;
    }
    return n;
}

static int parse_ops(const char *s) {
    int ops = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int i = 0; i < N_OPS; i++)
            if (strcmp(t, op_names[i]) == 0) ops |= 1 << i, found = 1;
        if (!found) return -1;
    }
    return ops;
}

static int parse_options(int argc, char **argv, options *o) {
    static const int def_embd[] = {288, 2048, 4096, 8192}, def_tok[] = {1, 8, 64, 512};
    memcpy(o->n_embd, def_embd, sizeof def_embd);
    o->n_n_embd = 4;
    memcpy(o->tokens, def_tok, sizeof def_tok);
    o->n_tokens = 4;
    o->ops = OP_PINGPONG | OP_ALLREDUCE | OP_GATHERSUM | OP_RSAG | OP_BCAST;
    o->budget_s = 0.3;
    o->max_reps = 2000;
    for (int i = 1; i < argc; i += 2) { /* --name value pairs */
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return -1;
        if (strcmp(argv[i], "--n-embd") == 0)
            o->n_n_embd = parse_list(v, o->n_embd, 65536);
        else if (strcmp(argv[i], "--tokens") == 0)
            o->n_tokens = parse_list(v, o->tokens, 8192);
        else if (strcmp(argv[i], "--ops") == 0)
            o->ops = parse_ops(v);
        else if (strcmp(argv[i], "--budget-ms") == 0)
            o->budget_s = atof(v) / 1000.0;
        else if (strcmp(argv[i], "--max-reps") == 0)
            o->max_reps = atoi(v);
        else
            return -1;
    }
    if (o->n_n_embd <= 0 || o->n_tokens <= 0 || o->ops <= 0 || !(o->budget_s > 0) || o->budget_s > 600 ||
        o->max_reps < 5)
        return -1;
    return 0;
}

/* Fills x with rank r's contribution: element i is (r + 1) * (1 + i % 7). */
static void fill(float *x, size_t n, int r) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((r + 1) * (int)(1 + i % 7));
}

/* 1 when x holds the sum over all ranks of fill(): (1 + i % 7) * R (R + 1) / 2. */
static int check_sum(const float *x, size_t n, int ranks) {
    for (size_t i = 0; i < n; i++)
        if (x[i] != (float)((int)(1 + i % 7) * ranks * (ranks + 1) / 2)) return 0;
    return 1;
}

/* Rank r's share of n floats in the reduce-scatter: counts[r] floats from displs[r]. */
static void chunks(size_t n, int ranks, int *counts, int *displs) {
    for (int r = 0, at = 0; r < ranks; r++) {
        counts[r] = (int)(n / (size_t)ranks + ((size_t)r < n % (size_t)ranks));
        displs[r] = at;
        at += counts[r];
    }
}

/* Completes req: a few polls, then polls between naps of 10 us. A rank that sleeps leaves
 * its core to the other ranks and to the emulated wire (this box has fewer cores than
 * ranks plus wire), and bench/netns.sh -r runs the ranks at real-time priority, where a
 * spinning rank would starve the machine. */
static void wait_req(MPI_Request *req) {
    const struct timespec nap = {0, 10000};
    for (int polls = 0;; polls++) {
        int done = 0;
        MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (done) return;
        if (polls >= 20) nanosleep(&nap, NULL);
    }
}

/* One operation on n floats x (all: R x n scratch, cnt: 4 x R ints); its result is left in x. */
static void op_once(int op, float *x, float *all, size_t n, int rank, int ranks, int *cnt) {
    const size_t bytes = n * sizeof(float);
    int *displs = cnt + ranks, *rcnt = cnt + 2 * ranks, *rdispls = cnt + 3 * ranks;
    MPI_Request req;
    switch (op) {
    case OP_PINGPONG:
        if (rank == 0) {
            MPI_Isend(x, (int)bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD, &req);
            wait_req(&req);
            MPI_Irecv(x, (int)bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD, &req);
            wait_req(&req);
        } else if (rank == 1) {
            MPI_Irecv(x, (int)bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD, &req);
            wait_req(&req);
            MPI_Isend(x, (int)bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD, &req);
            wait_req(&req);
        }
        break;
    case OP_ALLREDUCE: MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); break;
    case OP_GATHERSUM:
        MPI_Iallgather(x, (int)n, MPI_FLOAT, all, (int)n, MPI_FLOAT, MPI_COMM_WORLD, &req);
        wait_req(&req);
        for (size_t i = 0; i < n; i++) {
            float s = all[i]; /* rank order: the same sum on every rank */
            for (int r = 1; r < ranks; r++)
                s += all[(size_t)r * n + i];
            x[i] = s;
        }
        break;
    case OP_RSAG: {
        MPI_Ialltoallv(x, cnt, displs, MPI_FLOAT, all, rcnt, rdispls, MPI_FLOAT, MPI_COMM_WORLD, &req);
        wait_req(&req);
        const size_t mine = (size_t)cnt[rank];
        float *dst = x + displs[rank];
        for (size_t i = 0; i < mine; i++) {
            float s = all[i];
            for (int r = 1; r < ranks; r++)
                s += all[(size_t)r * mine + i];
            dst[i] = s;
        }
        MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, cnt, displs, MPI_FLOAT, MPI_COMM_WORLD, &req);
        wait_req(&req);
        break;
    }
    case OP_BCAST: { /* the broadcast, then a 1-int gather: broadcasts cannot overlap */
        int one = 1, *got = (int *)all;
        MPI_Ibcast(x, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD, &req);
        wait_req(&req);
        MPI_Igather(&one, 1, MPI_INT, got, 1, MPI_INT, 0, MPI_COMM_WORLD, &req);
        wait_req(&req);
        break;
    }
    }
}

/* Sets x to what rank contributes to op. */
static void prepare(int op, float *x, size_t n, int rank, int ranks) {
    if (op == OP_BCAST)
        fill(x, n, rank == 0 ? ranks * (ranks + 1) / 2 - 1 : 0);
    else if (op != OP_PINGPONG)
        fill(x, n, rank);
}

/* k operations back to back after one barrier, as a layer loop issues them; returns the
 * slowest rank's mean seconds per operation (its own preparation of x not counted), or -1
 * when a rank's result is not the exact sum. Back to back, a rank that left the barrier
 * late costs the batch once, not each operation. */
static double run_batch(int op, int k, float *x, float *all, size_t n, int rank, int ranks, int *cnt) {
    if (op == OP_RSAG) {
        int *displs = cnt + ranks, *rcnt = cnt + 2 * ranks, *rdispls = cnt + 3 * ranks;
        chunks(n, ranks, cnt, displs);
        for (int r = 0; r < ranks; r++)
            rcnt[r] = cnt[rank], rdispls[r] = r * cnt[rank];
    }
    int ok = 1;
    double t = 0, slowest = 0;
    MPI_Barrier(MPI_COMM_WORLD);
    for (int i = 0; i < k; i++) {
        prepare(op, x, n, rank, ranks);
        const double t0 = MPI_Wtime();
        op_once(op, x, all, n, rank, ranks, cnt);
        t += MPI_Wtime() - t0;
        if (op != OP_PINGPONG && !check_sum(x, n, ranks)) ok = 0;
    }
    int all_ok = 0;
    t /= k;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return all_ok ? slowest : -1;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Times op on n floats; rank 0 prints its line. Returns 0, or -1 on a wrong result. */
static int measure(const options *o, int op_bit, int n_embd, int tokens, float *x, float *all, double *times,
                   int *cnt, int rank, int ranks) {
    const size_t n = (size_t)n_embd * (size_t)tokens;
    int reps = 0;
    double spent = 0, warm = 0;
    for (int i = 0; i < 2; i++) /* warm-up: connections, buffers */
        if ((warm = run_batch(op_bit, 1, x, all, n, rank, ranks, cnt)) < 0) return -1;
    /* batches of about 50 ms, at least 8 operations: the barrier's skew is amortised */
    int k = warm > 0 ? (int)(0.05 / warm) + 1 : 256;
    k = k < 8 ? 8 : k > 256 ? 256 : k;
    MPI_Bcast(&k, 1, MPI_INT, 0, MPI_COMM_WORLD);
    while (reps < o->max_reps) {
        const double t = run_batch(op_bit, k, x, all, n, rank, ranks, cnt);
        if (t < 0) return -1;
        times[reps++] = t;
        spent += t * k;
        int go = spent < o->budget_s || reps < 5; /* every rank takes rank 0's decision */
        MPI_Bcast(&go, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (!go) break;
    }
    qsort(times, (size_t)reps, sizeof *times, cmp_double);
    if (rank == 0) {
        const char *name = op_names[__builtin_ctz((unsigned)op_bit)];
        printf("%s\t%d\t%d\t%d\t%zu\t%d\t%d\t%.2f\t%.2f\n", name, ranks, n_embd, tokens, n * sizeof(float),
               reps, k, times[reps / 2] * 1e6, times[0] * 1e6);
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* naps of 10 us, not 60 */
    int rank = 0, ranks = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    options o;
    if (parse_options(argc, argv, &o) != 0) {
        if (rank == 0)
            fprintf(stderr, "usage: mpirun -np R bench_allreduce [--n-embd LIST] [--tokens LIST] "
                            "[--ops pingpong,allreduce,gathersum,rsag,bcast] [--budget-ms MS] "
                            "[--max-reps N]\n");
        MPI_Finalize();
        return 2;
    }
    if (ranks < 2) {
        if (rank == 0) fprintf(stderr, "bench_allreduce: needs at least 2 ranks (mpirun -np 2)\n");
        MPI_Finalize();
        return 2;
    }
    size_t max_n = 0;
    for (int e = 0; e < o.n_n_embd; e++)
        for (int t = 0; t < o.n_tokens; t++)
            if ((size_t)o.n_embd[e] * (size_t)o.tokens[t] > max_n)
                max_n = (size_t)o.n_embd[e] * (size_t)o.tokens[t];
    float *x = malloc(max_n * sizeof *x);
    float *all = malloc(max_n * (size_t)ranks * sizeof *all);
    double *times = malloc((size_t)o.max_reps * sizeof *times);
    int *cnt = malloc(4 * (size_t)ranks * sizeof *cnt); /* counts, displs, rcounts, rdispls */
    int status = 0;
    if (!x || !all || !times || !cnt) {
        fprintf(stderr, "bench_allreduce: out of memory for %zu floats\n", max_n);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (rank == 0) printf("op\tranks\tn_embd\ttokens\tbytes\treps\tbatch\tmedian_us\tmin_us\n");
    for (int b = 0; b < N_OPS && status == 0; b++) {
        if (!(o.ops & (1 << b))) continue;
        for (int e = 0; e < o.n_n_embd && status == 0; e++)
            for (int t = 0; t < o.n_tokens && status == 0; t++)
                if (measure(&o, 1 << b, o.n_embd[e], o.tokens[t], x, all, times, cnt, rank, ranks) != 0) {
                    if (rank == 0)
                        fprintf(stderr, "bench_allreduce: %s of %d x %d floats gave a wrong sum\n",
                                op_names[b], o.tokens[t], o.n_embd[e]);
                    status = 1;
                }
    }
    free(x);
    free(all);
    free(times);
    free(cnt);
    MPI_Finalize();
    return status;
}
