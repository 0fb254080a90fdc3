/* ep.c - expert parallelism over MPI (--ep R, tp.h, docs/SCALE-OUT.md): a mixture-of-experts
 * model's routed experts spread across the ranks, tokens exchanged with MPI_Alltoallv. */
#include "core/status.h"
#include "model/model.h"
#include "tp/tp.h"

sov_status ep_shard_model(struct sov_model *m, int rank, int n_ranks) {
    (void)m, (void)rank;
    return sov_fail(SOV_ERR_UNSUPPORTED, "--ep %d: expert parallelism is not built yet; use --tp or one process",
                    n_ranks);
}
