/* The `assoc` command-line program: subcommands and shared helpers.
 *
 * To add a subcommand: define
 *   int assoc_cmd_NAME(int argc, char **argv)   (argv[0] is "NAME")
 *   int assoc_check_NAME(int argc, char **argv) (its arguments only)
 * in examples/assoc/NAME.c, declare them below, add a row to the table in
 * commands.c and the file to the executable's sources in examples/meson.build.
 * A subcommand prints its usage for --help (exit 0), and for bad arguments
 * prints a message to stderr and returns ASSOC_EXIT_USAGE. assoc_check_NAME
 * parses and validates the arguments exactly as assoc_cmd_NAME does, without
 * printing the usage or doing the work: ASSOC_EXIT_OK or ASSOC_EXIT_USAGE
 * (tests/fuzz/fuzz_assoc_cli.c feeds it arbitrary argument lists). */
#ifndef ASSOC_CLI_H
#define ASSOC_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "assoc_solvers.h"

/* ASSOC_EXIT_PARTIAL: everything was done and written but an optional
 * part (assoc ablation: the plots, when gnuplot is missing or fails); a
 * command returns it only once its work on every MPI rank is over. */
enum { ASSOC_EXIT_OK = 0, ASSOC_EXIT_FAIL = 1, ASSOC_EXIT_USAGE = 2, ASSOC_EXIT_PARTIAL = 3 };

typedef struct assoc_command {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv);
  int (*check)(int argc, char **argv);
} assoc_command;

#define ASSOC_COMMAND(NAME)                                                                        \
  int assoc_cmd_##NAME(int argc, char **argv);                                                     \
  int assoc_check_##NAME(int argc, char **argv);
ASSOC_COMMAND(gen)
ASSOC_COMMAND(baselines)
ASSOC_COMMAND(info)
ASSOC_COMMAND(train)
ASSOC_COMMAND(eval)
ASSOC_COMMAND(ablation)
ASSOC_COMMAND(params)
ASSOC_COMMAND(diagnose)
ASSOC_COMMAND(beams)
#undef ASSOC_COMMAND

/* The program: argv[1] names the subcommand (commands.c). assoc_main runs
 * it; assoc_check_arguments only parses and validates its arguments
 * (ASSOC_EXIT_OK, or ASSOC_EXIT_USAGE for a bad command line). */
int assoc_main(int argc, char **argv);
int assoc_check_arguments(int argc, char **argv);

/* ---- options ------------------------------------------------------------------------ */

/* Applies one option of a subcommand to its argument struct `args`: `opt`
 * is the option's value in its struct option table ('h' for -h/--help),
 * `value` its argument (NULL for a flag; writable, so lists may be split in
 * place). Returns 0 to go on, ASSOC_OPTIONS_STOP to stop reading options,
 * or -1 after printing a message. */
enum { ASSOC_OPTIONS_STOP = 1 };
typedef int (*assoc_option_fn)(void *args, int opt, char *value);

/* Reads the options of subcommand `cmd` (argv[0] is its name) with
 * getopt_long and `options` (which should map "help" to 'h'; -h is always
 * accepted), calling `apply` for each. Options and operands may be mixed:
 * the operands end up at the end of argv. Returns the index of the first
 * operand, or -1 after printing a message (an unknown option, a missing
 * value, or -1 from `apply`). */
int assoc_parse_options(const char *cmd, int argc, char **argv, const struct option *options,
                        assoc_option_fn apply, void *args);

/* The options several subcommands share: --out FILE, --threads T, --json,
 * --quiet and -h/--help, their codes in a subcommand's struct option table
 * (the subcommand's own codes start at 1000) and their values. */
enum { ASSOC_OPT_OUT = 900, ASSOC_OPT_THREADS, ASSOC_OPT_JSON, ASSOC_OPT_QUIET };
#define ASSOC_OPTION_OUT                                                                           \
  { "out", required_argument, NULL, ASSOC_OPT_OUT }
#define ASSOC_OPTION_THREADS                                                                       \
  { "threads", required_argument, NULL, ASSOC_OPT_THREADS }
#define ASSOC_OPTION_JSON                                                                          \
  { "json", no_argument, NULL, ASSOC_OPT_JSON }
#define ASSOC_OPTION_QUIET                                                                         \
  { "quiet", no_argument, NULL, ASSOC_OPT_QUIET }
#define ASSOC_OPTION_HELP                                                                          \
  { "help", no_argument, NULL, 'h' }
typedef struct assoc_common_args {
  const char *out; /* NULL when not given */
  int threads;     /* 0 when not given */
  bool json, quiet, help;
} assoc_common_args;

/* Applies shared option opt (value: its argument) of subcommand cmd to c:
 * 0, or -1 after printing a bad value, or for an option that is not one of
 * them. */
int assoc_common_option(const char *cmd, int opt, const char *value, assoc_common_args *c);

/* Strict number parsing for option `opt`: the whole text must be a number in
 * [lo, hi]; otherwise prints "assoc CMD: bad value ... for --opt" and
 * returns -1. */
int assoc_parse_int(const char *cmd, const char *opt, const char *text, long lo, long hi, int *out);
int assoc_parse_i64(const char *cmd, const char *opt, const char *text, int64_t lo, int64_t hi,
                    int64_t *out);
int assoc_parse_u64(const char *cmd, const char *opt, const char *text, uint64_t hi, uint64_t *out);
int assoc_parse_double(const char *cmd, const char *opt, const char *text, double lo, double hi,
                       double *out);
/* --features channel|link and --loss rate|es of train and ablation. */
int assoc_parse_features(const char *cmd, const char *text, int *out);
int assoc_parse_loss(const char *cmd, const char *text, int *out);
int assoc_parse_sampler(const char *cmd, const char *text, int *out);
/* --threads T of every subcommand: T in 1..4096. */
int assoc_parse_threads(const char *cmd, const char *text, int *out);
/* Sets the OpenMP thread count (T >= 1). */
void assoc_set_threads(int threads);

/* ---- the start of a run ------------------------------------------------------------- */

/* What a subcommand does first once its options are read: with help,
 * prints help_text to stdout and returns ASSOC_EXIT_OK; else checks that
 * `out` (--out, NULL when not given) can be written (assoc_check_output:
 * ASSOC_EXIT_FAIL), sets the thread count when threads > 0 and returns
 * ASSOC_GO_ON. */
enum { ASSOC_GO_ON = -1 };
int assoc_command_start(const char *cmd, bool help, const char *help_text, const char *out,
                        int threads);

/* Loads the data set at path into ds: 0, or -1 after printing
 * "assoc CMD: reason". */
int assoc_load_dataset(const char *cmd, const char *path, assoc_dataset *ds);

/* ---- output files ------------------------------------------------------------------- */

/* Checks, before any work, that command `cmd` can write the file `path`
 * given with option --opt: its directory exists and takes a new file (a
 * probe file beside path, removed at once) and path is not a directory.
 * Otherwise prints "assoc CMD: cannot write PATH (--OPT): reason" and
 * returns -1. A NULL path (option not given) passes. */
int assoc_check_output(const char *cmd, const char *opt, const char *path);

/* ---- JSON output -------------------------------------------------------------------- */

/* `"key": value` and then `sep` (e.g. ", " or "}"). Numbers are written
 * with assoc_json_write_number (10 significant digits, null when not finite),
 * strings with assoc_json_write_string (escaped); a NULL string is null. */
void assoc_json_number(FILE *f, const char *key, double v, const char *sep);
void assoc_json_string(FILE *f, const char *key, const char *s, const char *sep);

/* ---- progress ----------------------------------------------------------------------- */

/* Progress reporting on stderr, only when stderr is a terminal, `enabled`,
 * and the run has lasted over half a second. Use assoc_progress as an
 * assoc_progress_fn with a pointer to an assoc_progress_state. */
typedef struct assoc_progress_state {
  bool enabled;
  bool shown;
  double start;
} assoc_progress_state;
void assoc_progress_init(assoc_progress_state *st, bool enabled);
void assoc_progress(void *state, const char *what, int64_t done, int64_t total);
void assoc_progress_clear(assoc_progress_state *st);

#endif
