/* assoc: the wireless user-association tool.
 *
 *   assoc gen --samples S --seed X --out FILE [scenario flags]
 *   assoc baselines DATA [--json] [--out FILE] [--methods LIST] ...
 *   assoc beams DATA ASSOC.npz --assoc-key KEY --method mrt|zf|wmmse --out FILE
 *   assoc info DATA
 *   assoc train | eval | ablation | params ...
 *
 * Subcommands live in a table (commands.c), one file each (see cli.h for
 * adding one). Under mpirun (a build with MPI) gen, train (every model)
 * and ablation (its training runs) run data-parallel over the ranks; the
 * other commands run on one process. */
#include <stdio.h>

#include "assoc_dist.h"
#include "cli.h"

int main(int argc, char **argv) {
  sg_io_error err;
  if (assoc_dist_init(&argc, &argv, &err)) {
    fprintf(stderr, "assoc: %s\n", err.msg);
    return ASSOC_EXIT_FAIL;
  }
  int rc = assoc_main(argc, argv);
  assoc_dist_finalize();
  return rc;
}
