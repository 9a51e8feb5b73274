/* assoc: the wireless user-association tool.
 *
 *   assoc gen --samples S --seed X --out FILE [scenario flags]
 *   assoc baselines DATA [--json] [--out FILE] [--methods LIST] ...
 *   assoc beams DATA ASSOC.npz --assoc-key KEY --method mrt|zf|wmmse --out FILE
 *   assoc info DATA
 *   assoc train | eval | ablation | params ...
 *
 * Subcommands live in a table, one file each (see cli.h for adding one).
 * Under mpirun (a build with MPI) gen and train run data-parallel over the
 * ranks; the other commands run on one process. */
#include "assoc_dist.h"
#include "cli.h"

#include <stdio.h>
#include <string.h>

/* The commands that run over several ranks; the others refuse to. */
static bool distributed(const char *name) {
  return !strcmp(name, "gen") || !strcmp(name, "train");
}

/* Runs command c on every rank of the job. A command that fails on a rank
 * of several ends the whole job (its peers could wait forever for it). */
static int run_command(const assoc_command *c, int argc, char **argv) {
  int ranks = assoc_dist_size();
  if (ranks > 1 && !distributed(c->name)) {
    if (assoc_dist_rank() == 0)
      fprintf(stderr,
              "assoc %s: runs on one process, not on %d MPI ranks (only gen and train "
              "run over MPI)\n",
              c->name, ranks);
    return ASSOC_EXIT_USAGE;
  }
  int rc = c->run(argc, argv);
  if (rc != ASSOC_EXIT_OK && ranks > 1) {
    fflush(NULL);
    assoc_dist_abort(rc);
  }
  return rc;
}

static const assoc_command commands[] = {
    {"gen", "generate a data set of the wireless scenario (.npz)", assoc_cmd_gen},
    {"baselines", "run the association baselines on a data set and print their metrics",
     assoc_cmd_baselines},
    {"beams", "MRT, ZF or WMMSE beams for the associations of an .npz", assoc_cmd_beams},
    {"info", "describe a data set", assoc_cmd_info},
    {"train", "train an association GNN on a data set (checkpoint .npz)", assoc_cmd_train},
    {"eval", "evaluate a trained model on a data set (Table 1 metrics)", assoc_cmd_eval},
    {"ablation", "train the four GNNs and reproduce the paper's ablation study",
     assoc_cmd_ablation},
    {"params", "print the parameter counts of the four GNNs beside the paper's", assoc_cmd_params},
    {"diagnose", "what a trained model does with its inputs, where its gradient goes",
     assoc_cmd_diagnose},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static void usage(FILE *f) {
  fprintf(f, "usage: assoc <command> [options]\n\ncommands:\n");
  for (int i = 0; i < N_COMMANDS; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\nRun 'assoc <command> --help' for the options of a command.\n");
}

static int dispatch(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return ASSOC_EXIT_USAGE;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return ASSOC_EXIT_OK;
  }
  for (int i = 0; i < N_COMMANDS; i++)
    if (!strcmp(argv[1], commands[i].name)) return run_command(&commands[i], argc - 1, argv + 1);
  fprintf(stderr, "assoc: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return ASSOC_EXIT_USAGE;
}

int main(int argc, char **argv) {
  sg_io_error err;
  if (assoc_dist_init(&argc, &argv, &err)) {
    fprintf(stderr, "assoc: %s\n", err.msg);
    return ASSOC_EXIT_FAIL;
  }
  int rc = dispatch(argc, argv);
  assoc_dist_finalize();
  return rc;
}
