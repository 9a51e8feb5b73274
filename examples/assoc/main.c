/* assoc: the wireless user-association tool.
 *
 *   assoc gen --samples S --seed X --out FILE [scenario flags]
 *   assoc baselines DATA [--json] [--out FILE] [--methods LIST] ...
 *   assoc beams DATA ASSOC.npz --assoc-key KEY --method mrt|zf|wmmse --out FILE
 *   assoc info DATA
 *   assoc train | eval | ablation | params ...
 *
 * Subcommands live in a table, one file each (see cli.h for adding one). */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include "sinkgrad.h"

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

/* The library's reports (out of memory: the arena, a tensor, the tape; or
 * a misuse, which would be a bug of this program) are printed and the
 * handler returns, instead of the default abort: the failing op returns
 * NULL, the command fails with its own message (the training step, the
 * file that could not be read), and main turns any report into a non-zero
 * status even if the command went on. Bad user data never gets this far:
 * the commands check it and say what is wrong. */
static int library_reports;

static void report_library_error(const char *op, const char *msg, const char *file, int line,
                                 void *user) {
  (void)user;
  library_reports++;
  fprintf(stderr, "assoc: %s: %s (at %s:%d)\n", op, msg, file ? file : "?", line);
}

static int run_command(const assoc_command *c, int argc, char **argv) {
  sg_set_error_handler(report_library_error, NULL);
  int rc = c->run(argc, argv);
  return rc == ASSOC_EXIT_OK && library_reports > 0 ? ASSOC_EXIT_FAIL : rc;
}

int main(int argc, char **argv) {
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
