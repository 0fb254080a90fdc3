/* pp.c - pipeline parallelism over MPI (--pp S, tp.h, docs/SCALE-OUT.md): the layers in S
 * stages, one per rank, micro-batches keeping the stages busy. */
#include "core/status.h"
#include "model/model.h"
#include "tp/tp.h"

sov_status pp_shard_model(struct sov_model *m, int rank, int n_ranks) {
    (void)m, (void)rank;
    return sov_fail(SOV_ERR_UNSUPPORTED, "--pp %d: pipeline parallelism is not built yet; use --tp or one process",
                    n_ranks);
}
