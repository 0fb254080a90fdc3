/* tp.c - the --tp option of sov run, bench and serve (docs/TP.md).
 *
 *   mpirun -np R sov run|bench|serve ... --tp R   (or --ep R, or --pp R)
 *
 * Every rank parses the same command line and loads its shard of the model; rank 0 then
 * goes on as without --tp while ranks 1..R-1 apply what rank 0's context does
 * (sov_tp_worker_run) and exit with it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

bool cli_opt_split(int argc, char **argv, int *i, cli_split *s, bool *bad) {
    return cli_opt_int(argc, argv, i, "--tp", &s->tp, bad) || cli_opt_int(argc, argv, i, "--ep", &s->ep, bad) ||
           cli_opt_int(argc, argv, i, "--pp", &s->pp, bad);
}

int cli_tp_start(const char *cmd, const cli_split *s, int argc, char **argv, sov_tp **out) {
    *out = NULL;
    const long n_of[] = {[SOV_SPLIT_TENSOR] = s->tp, [SOV_SPLIT_EXPERT] = s->ep, [SOV_SPLIT_PIPELINE] = s->pp};
    sov_split how = SOV_SPLIT_TENSOR;
    int splits = 0;
    for (int k = 0; k < 3; k++) {
        if (n_of[k] < 0 || n_of[k] > 4096)
            return cli_error(cmd, "%s must be 1..4096", sov_split_option((sov_split)k));
        if (n_of[k] > 1) how = (sov_split)k, splits++;
    }
    if (splits > 1) return cli_error(cmd, "give one of --tp, --ep and --pp, not several");
    const long n = n_of[how];
    if (n <= 1) return 0;
    const sov_status st = sov_tp_init_split((int32_t)n, how, out);
    if (!st) return 0;
    const bool under_mpi = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
    if (st != SOV_ERR_ARG || under_mpi) return cli_status_error(cmd, st);
    /* not started by mpirun: one line, with the whole command that would start it */
    fprintf(stderr, "sov %s: %s %ld needs %ld processes started by MPI; start it as: mpirun -np %ld sov", cmd,
            sov_split_option(how), n, n, n);
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
