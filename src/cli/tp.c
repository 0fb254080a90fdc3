/* tp.c - the --tp option of sov run, bench and serve (docs/TP.md).
 *
 *   mpirun -np R sov run|bench|serve ... --tp R
 *
 * Every rank parses the same command line and loads its shard of the model; rank 0 then
 * goes on as without --tp while ranks 1..R-1 apply what rank 0's context does
 * (sov_tp_worker_run) and exit with it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

int cli_tp_start(const char *cmd, long n, int argc, char **argv, sov_tp **out) {
    *out = NULL;
    if (n <= 1) return 0;
    const sov_status st = sov_tp_init((int32_t)n, out);
    if (!st) return 0;
    const bool under_mpi = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
    if (st != SOV_ERR_ARG || under_mpi) return cli_status_error(cmd, st);
    /* not started by mpirun: one line, with the whole command that would start it */
    fprintf(stderr, "sov %s: --tp %ld needs %ld processes started by MPI; start it as: mpirun -np %ld sov", cmd, n, n,
            n);
    for (int i = 0; i < argc; i++) fprintf(stderr, " %s", argv[i]);
    fprintf(stderr, "  (as root add --allow-run-as-root)\n");
    return 1;
}

int cli_tp_worker(const char *cmd, sov_model *model, sov_tp *tp) {
    /* mpirun passes SIGTERM and SIGINT to every rank: rank 0 acts on them (sov serve drains
     * its requests) and then ends the others with its last command, so they ignore both */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    const sov_status st = sov_tp_worker_run(model);
    sov_model_free(model);
    sov_tp_free(tp);
    return st ? cli_status_error(cmd, st) : 0;
}
