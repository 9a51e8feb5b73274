/* Helpers shared by the subcommands of `assoc`: option parsing, strict
 * number parsing, the start of a run, loading a data set, JSON fields and
 * progress display (see cli.h). */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "assoc_eval.h"
#include "assoc_train.h"

int assoc_check_output(const char *cmd, const char *opt, const char *path) {
  if (!path) return 0;
  struct stat st;
  int fd = -1;
  char *probe = NULL;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
    errno = EISDIR;
  } else if ((probe = malloc(strlen(path) + sizeof ".tmpXXXXXX"))) {
    sprintf(probe, "%s.tmpXXXXXX", path);
    fd = mkstemp(probe);
  }
  int reason = errno;
  if (fd >= 0) close(fd), unlink(probe);
  free(probe);
  if (fd >= 0) return 0;
  fprintf(stderr, "assoc %s: cannot write %s (--%s): %s\n", cmd, path, opt, strerror(reason));
  return -1;
}

static int bad_value(const char *cmd, const char *opt, const char *text, const char *range) {
  fprintf(stderr, "assoc %s: bad value '%s' for --%s (expected %s)\n", cmd, text, opt, range);
  return -1;
}

int assoc_parse_i64(const char *cmd, const char *opt, const char *text, int64_t lo, int64_t hi,
                    int64_t *out) {
  char *end, range[96];
  errno = 0;
  long long v = strtoll(text, &end, 10);
  snprintf(range, sizeof range, "an integer in %lld..%lld", (long long)lo, (long long)hi);
  if (errno || end == text || *end || v < lo || v > hi) return bad_value(cmd, opt, text, range);
  *out = v;
  return 0;
}

int assoc_parse_int(const char *cmd, const char *opt, const char *text, long lo, long hi,
                    int *out) {
  int64_t v;
  if (assoc_parse_i64(cmd, opt, text, lo, hi, &v)) return -1;
  *out = (int)v;
  return 0;
}

int assoc_parse_u64(const char *cmd, const char *opt, const char *text, uint64_t hi,
                    uint64_t *out) {
  char *end, range[96];
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  snprintf(range, sizeof range, "an integer in 0..%llu", (unsigned long long)hi);
  if (errno || end == text || *end || text[0] == '-' || v > hi)
    return bad_value(cmd, opt, text, range);
  *out = v;
  return 0;
}

int assoc_parse_double(const char *cmd, const char *opt, const char *text, double lo, double hi,
                       double *out) {
  char *end, range[96];
  errno = 0;
  double v = strtod(text, &end);
  snprintf(range, sizeof range, "a number in [%g, %g]", lo, hi);
  if (errno || end == text || *end || !isfinite(v) || v < lo || v > hi)
    return bad_value(cmd, opt, text, range);
  *out = v;
  return 0;
}

int assoc_parse_features(const char *cmd, const char *text, int *out) {
  int k = assoc_feature_kind_parse(text);
  return k < 0 ? bad_value(cmd, "features", text, "channel, link or link-nodes") : (*out = k, 0);
}

int assoc_parse_loss(const char *cmd, const char *text, int *out) {
  int l = assoc_train_loss_parse(text);
  return l < 0 ? bad_value(cmd, "loss", text, "rate or es") : (*out = l, 0);
}

int assoc_parse_sampler(const char *cmd, const char *text, int *out) {
  int s = assoc_train_sampler_parse(text);
  return s < 0 ? bad_value(cmd, "sampler", text, "shuffle or strata") : (*out = s, 0);
}

int assoc_parse_threads(const char *cmd, const char *text, int *out) {
  return assoc_parse_int(cmd, "threads", text, 1, 4096, out);
}

int assoc_common_option(const char *cmd, int opt, const char *value, assoc_common_args *c) {
  switch (opt) {
  case ASSOC_OPT_OUT:
    c->out = value;
    return 0;
  case ASSOC_OPT_THREADS:
    return assoc_parse_threads(cmd, value, &c->threads);
  case ASSOC_OPT_JSON:
    c->json = true;
    return 0;
  case ASSOC_OPT_QUIET:
    c->quiet = true;
    return 0;
  case 'h':
    c->help = true;
    return 0;
  default:
    return -1;
  }
}

void assoc_set_threads(int threads) {
  omp_set_num_threads(threads);
}

int assoc_command_start(const char *cmd, bool help, const char *help_text, const char *out,
                        int threads) {
  if (help) return fputs(help_text, stdout), ASSOC_EXIT_OK;
  if (assoc_check_output(cmd, "out", out)) return ASSOC_EXIT_FAIL;
  if (threads) assoc_set_threads(threads);
  return ASSOC_GO_ON;
}

int assoc_load_dataset(const char *cmd, const char *path, assoc_dataset *ds) {
  sg_io_error err;
  if (!assoc_dataset_load(path, ds, &err)) return 0;
  fprintf(stderr, "assoc %s: %s\n", cmd, err.msg);
  return -1;
}

/* getopt_long returned '?' (opterr 0): an unknown option or a missing value. */
static int bad_option(const char *cmd, char **argv) {
  fprintf(stderr, "assoc %s: unknown option or missing value: '%s' (see assoc %s --help)\n", cmd,
          optind > 0 ? argv[optind - 1] : "?", cmd);
  return -1;
}

int assoc_parse_options(const char *cmd, int argc, char **argv, const struct option *options,
                        assoc_option_fn apply, void *args) {
  /* Every call starts afresh: optind = 0 (not 1) makes glibc's getopt
   * reset all of its state, including its position inside an argument
   * such as "-hd" where a previous call stopped, which would otherwise
   * point into that call's (perhaps freed) arguments. Messages are ours. */
  optind = 0, opterr = 0;
  for (int opt; (opt = getopt_long(argc, argv, "h", options, NULL)) != -1;) {
    if (opt == '?') return bad_option(cmd, argv);
    int rc = apply(args, opt, optarg);
    if (rc < 0) return -1;
    if (rc == ASSOC_OPTIONS_STOP) break;
  }
  return optind;
}

void assoc_json_number(FILE *f, const char *key, double v, const char *sep) {
  fprintf(f, "\"%s\": ", key);
  assoc_json_write_number(f, v);
  fputs(sep, f);
}

void assoc_json_string(FILE *f, const char *key, const char *s, const char *sep) {
  fprintf(f, "\"%s\": ", key);
  if (s)
    assoc_json_write_string(f, s);
  else
    fputs("null", f);
  fputs(sep, f);
}

void assoc_progress_init(assoc_progress_state *st, bool enabled) {
  st->enabled = enabled && isatty(STDERR_FILENO);
  st->shown = false;
  st->start = omp_get_wtime();
}

void assoc_progress(void *state, const char *what, int64_t done, int64_t total) {
  assoc_progress_state *st = state;
  if (!st || !st->enabled || omp_get_wtime() - st->start < 0.5) return;
  fprintf(stderr, "\r  %-16s %lld/%lld samples (%.0f%%)   ", what, (long long)done,
          (long long)total, 100.0 * (double)done / (double)total);
  st->shown = true;
}

void assoc_progress_clear(assoc_progress_state *st) {
  if (st->shown) fprintf(stderr, "\r%60s\r", "");
  st->shown = false;
}
