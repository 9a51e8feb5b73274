/* assoc: the wireless user-association tool.
 *
 *   assoc gen --samples S --seed X --out FILE [scenario flags]
 *   assoc baselines DATA [--json] [--out FILE] [--methods LIST] ...
 *   assoc beams DATA ASSOC.npz --assoc-key KEY --method mrt|zf|wmmse --out FILE
 *   assoc info DATA
 *   assoc train | eval | ablation | params ...
 *
 * Subcommands live in a table (commands.c), one file each (see cli.h for
 * adding one). */
#include "cli.h"

int main(int argc, char **argv) {
  return assoc_main(argc, argv);
}
