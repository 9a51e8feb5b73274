/* The `assoc` command-line program: subcommands and shared helpers.
 *
 * To add a subcommand from another file: define
 *   int assoc_cmd_NAME(int argc, char **argv)   (argv[0] is "NAME")
 * declare it below, add a row to the table in assoc.c and the file to the
 * executable's sources in examples/meson.build. A subcommand prints its
 * usage for --help (exit 0), and for bad arguments prints a message to
 * stderr and returns ASSOC_EXIT_USAGE. */
#ifndef ASSOC_CLI_H
#define ASSOC_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "sg_system.h"

enum { ASSOC_EXIT_OK = 0, ASSOC_EXIT_FAIL = 1, ASSOC_EXIT_USAGE = 2 };

typedef struct assoc_command {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv);
} assoc_command;

int assoc_cmd_gen(int argc, char **argv);
int assoc_cmd_baselines(int argc, char **argv);
int assoc_cmd_info(int argc, char **argv);
int assoc_cmd_train(int argc, char **argv);
int assoc_cmd_eval(int argc, char **argv);
int assoc_cmd_ablation(int argc, char **argv);
int assoc_cmd_params(int argc, char **argv);

/* Strict number parsing for option `opt`: the whole text must be a number in
 * [lo, hi]; otherwise prints "assoc CMD: bad value ... for --opt" and
 * returns -1. */
int assoc_parse_int(const char *cmd, const char *opt, const char *text, long lo, long hi, int *out);
int assoc_parse_i64(const char *cmd, const char *opt, const char *text, int64_t lo, int64_t hi,
                    int64_t *out);
int assoc_parse_u64(const char *cmd, const char *opt, const char *text, uint64_t hi, uint64_t *out);
int assoc_parse_double(const char *cmd, const char *opt, const char *text, double lo, double hi,
                       double *out);
/* Reports the option getopt_long rejected ('?' with opterr = 0); returns -1. */
int assoc_bad_option(const char *cmd, char **argv);
/* Sets the OpenMP thread count (T >= 1). */
void assoc_set_threads(int threads);

/* Progress reporting on stderr, only when stderr is a terminal, `enabled`,
 * and the run has lasted over half a second. Use assoc_progress as an
 * sg_progress_fn with a pointer to an assoc_progress_state. */
typedef struct assoc_progress_state {
  bool enabled;
  bool shown;
  double start;
} assoc_progress_state;
void assoc_progress_init(assoc_progress_state *st, bool enabled);
void assoc_progress(void *state, const char *what, int64_t done, int64_t total);
void assoc_progress_clear(assoc_progress_state *st);

#endif
