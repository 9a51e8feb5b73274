/* The subcommands of `assoc` and the dispatch on argv[1]: run one
 * (assoc_main, which main.c calls) or only check its arguments
 * (assoc_check_arguments). */
#include <stdio.h>
#include <string.h>

#include "assoc_dist.h"
#include "cli.h"

#define ROW(NAME, SUMMARY)                                                                         \
  { #NAME, SUMMARY, assoc_cmd_##NAME, assoc_check_##NAME }
static const assoc_command commands[] = {
    ROW(gen, "generate a data set of the wireless scenario (.npz)"),
    ROW(baselines, "run the association baselines on a data set and print their metrics"),
    ROW(beams, "MRT, ZF or WMMSE beams for the associations of an .npz"),
    ROW(info, "describe a data set"),
    ROW(train, "train an association GNN on a data set (checkpoint .npz)"),
    ROW(eval, "evaluate a trained model on a data set (Table 1 metrics)"),
    ROW(ablation, "train the four GNNs and reproduce the paper's ablation study"),
    ROW(params, "print the parameter counts of the four GNNs beside the paper's"),
    ROW(diagnose, "what a trained model does with its inputs, where its gradient goes"),
};
#undef ROW
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static void usage(FILE *f) {
  fprintf(f, "usage: assoc <command> [options]\n\ncommands:\n");
  for (int i = 0; i < N_COMMANDS; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\nRun 'assoc <command> --help' for the options of a command.\n");
}

static bool asks_for_help(const char *arg) {
  return !strcmp(arg, "--help") || !strcmp(arg, "-h") || !strcmp(arg, "help");
}

/* The command argv[1] names, or NULL after a message. */
static const assoc_command *find_command(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return NULL;
  }
  for (int i = 0; i < N_COMMANDS; i++)
    if (!strcmp(argv[1], commands[i].name)) return &commands[i];
  fprintf(stderr, "assoc: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return NULL;
}

/* The library's reports (out of memory: the arena, a tensor, the tape; an
 * anomaly-mode report under assoc train --detect-anomaly; or a misuse,
 * which would be a bug of this program) are printed and the handler
 * returns, instead of the default abort: the failing op returns NULL, the
 * command fails with its own message (the training step, the file that
 * could not be read), and any report turns into a non-zero status even if
 * the command went on. Bad user data never gets this far: the commands
 * check it and say what is wrong. */
static int library_reports;

static void report_library_error(const char *op, const char *msg, const char *file, int line,
                                 void *user) {
  (void)user;
  library_reports++;
  fprintf(stderr, "assoc: %s: %s (called at %s:%d)\n", op, msg, file ? file : "?", line);
}

/* The commands that run over several MPI ranks; the others refuse to. */
static bool distributed(const char *name) {
  return !strcmp(name, "gen") || !strcmp(name, "train") || !strcmp(name, "ablation");
}

/* Runs command c on every rank of the job. A command that fails on a rank
 * of several ends the whole job (its peers could wait forever for it in
 * the next sum). Two statuses are returned as they are: a usage error,
 * which every rank finds alike in the command line (and the options a
 * checkpoint must agree with) before any collective step, so that none
 * waits for another (and no MPI_Abort of every rank at once, which Open
 * MPI 4.1's launcher does not always survive); and ASSOC_EXIT_PARTIAL,
 * which comes after the work of every rank. */
static int run_command(const assoc_command *c, int argc, char **argv) {
  int ranks = assoc_dist_size();
  if (ranks > 1 && !distributed(c->name)) {
    if (assoc_dist_rank() == 0)
      fprintf(stderr,
              "assoc %s: runs on one process, not on %d MPI ranks (only gen, train and "
              "ablation run over MPI)\n",
              c->name, ranks);
    return ASSOC_EXIT_USAGE;
  }
  sg_set_error_handler(report_library_error, NULL);
  int rc = c->run(argc, argv);
  if (rc == ASSOC_EXIT_OK && library_reports > 0) rc = ASSOC_EXIT_FAIL;
  bool alike = rc == ASSOC_EXIT_USAGE || rc == ASSOC_EXIT_PARTIAL;
  if (rc != ASSOC_EXIT_OK && !alike && ranks > 1) {
    fflush(NULL);
    assoc_dist_abort(rc);
  }
  return rc;
}

int assoc_main(int argc, char **argv) {
  if (argc >= 2 && asks_for_help(argv[1])) {
    usage(stdout);
    return ASSOC_EXIT_OK;
  }
  const assoc_command *c = find_command(argc, argv);
  return c ? run_command(c, argc - 1, argv + 1) : ASSOC_EXIT_USAGE;
}

int assoc_check_arguments(int argc, char **argv) {
  if (argc >= 2 && asks_for_help(argv[1])) return ASSOC_EXIT_OK;
  const assoc_command *c = find_command(argc, argv);
  return c ? c->check(argc - 1, argv + 1) : ASSOC_EXIT_USAGE;
}
