/* The beam models' data-parallel hook (assoc_gnn_dist) over MPI: the
 * loop of models/gnn/beam_train.c sums its flat gradient buffer with
 * assoc_dist_sum, whose order is fixed by the buffer's length and the
 * number of ranks alone. */
#include "assoc_dist.h"
#include "assoc_train.h"

static int dist_sum(void *user, void *buf, int64_t n, sg_dtype dt) {
  (void)user;
  sg_io_error err;
  if (!assoc_dist_sum(buf, n, dt, &err)) return 0;
  sg_report_error("assoc_dist_sum", __FILE__, __LINE__, "%s", err.msg);
  return -1;
}

assoc_gnn_dist assoc_beam_dist_hook(void) {
  return (assoc_gnn_dist){.rank = assoc_dist_rank(), .ranks = assoc_dist_size(), .sum = dist_sum};
}
