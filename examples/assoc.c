/* assoc: the wireless user-association tool.
 *
 *   assoc gen --samples S --seed X --out FILE [scenario flags]
 *   assoc baselines DATA [--json] [--out FILE] [--methods LIST] ...
 *   assoc info DATA
 *
 * Subcommands live in a table (see assoc_cli.h for adding one). */
#include "assoc_cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const assoc_command commands[] = {
    {"gen", "generate a data set of the wireless scenario (.npz)", assoc_cmd_gen},
    {"baselines", "run the association baselines on a data set and print their metrics",
     assoc_cmd_baselines},
    {"info", "describe a data set", assoc_cmd_info},
    {"train", "train an association GNN on a data set (checkpoint .npz)", assoc_cmd_train},
    {"eval", "evaluate a trained model on a data set (Table 1 metrics)", assoc_cmd_eval},
    {"ablation", "train the four GNNs and reproduce the paper's ablation study",
     assoc_cmd_ablation},
    {"params", "print the parameter counts of the four GNNs beside the paper's", assoc_cmd_params},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

/* ---- shared helpers ------------------------------------------------------------------ */

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

void assoc_set_threads(int threads) {
  omp_set_num_threads(threads);
}

/* getopt_long returned '?' (opterr 0): an unknown option or a missing value. */
int assoc_bad_option(const char *cmd, char **argv) {
  fprintf(stderr, "assoc %s: unknown option or missing value: '%s' (see assoc %s --help)\n", cmd,
          optind > 0 ? argv[optind - 1] : "?", cmd);
  return -1;
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

/* ---- assoc gen ----------------------------------------------------------------------- */

static const char gen_help[] =
    "usage: assoc gen --samples S --out FILE [options]\n"
    "\n"
    "Generates S samples of the wireless scenario of docs/system.md and writes\n"
    "them as a zlib-compressed .npz (schema in docs/system.md). Sample s depends\n"
    "only on (seed, s): the same for every thread count and every S > s.\n"
    "\n"
    "  --samples S          number of samples (required)\n"
    "  --out FILE           output .npz (required)\n"
    "  --seed X             seed, 0..2^63-1 (default 1)\n"
    "  --bs M               base stations (default 2)\n"
    "  --antennas N         antennas per BS, also the BS load limit (default 4)\n"
    "  --ues K              users (default 8)\n"
    "  --pt-dbm P           transmit power per BS in dBm (default 30)\n"
    "  --area A             side of the square area in m (default 200)\n"
    "  --bs-height H        BS height in m (default 10)\n"
    "  --ue-height H        UE height in m (default 1.5)\n"
    "  --noise-dbm-hz D     noise density in dBm/Hz (default -174)\n"
    "  --bandwidth-hz B     bandwidth in Hz (default 1e9)\n"
    "  --noise-figure-db F  noise figure in dB (default 0)\n"
    "  --path-mean L        Poisson mean of the path count (default 1.8)\n"
    "  --outage             add the outage link state (h = 0)\n"
    "  --threads T          OpenMP threads (default: OMP_NUM_THREADS or all)\n"
    "  --quiet              no progress or summary\n"
    "  -h, --help           this help\n";

enum gen_option {
  GEN_SAMPLES = 1000,
  GEN_OUT,
  GEN_SEED,
  GEN_BS,
  GEN_ANTENNAS,
  GEN_UES,
  GEN_PT,
  GEN_AREA,
  GEN_BS_HEIGHT,
  GEN_UE_HEIGHT,
  GEN_NOISE_HZ,
  GEN_BANDWIDTH,
  GEN_NOISE_FIGURE,
  GEN_PATH_MEAN,
  GEN_OUTAGE,
  GEN_THREADS,
  GEN_QUIET,
};

static const struct option gen_options[] = {
    {"samples", required_argument, NULL, GEN_SAMPLES},
    {"out", required_argument, NULL, GEN_OUT},
    {"seed", required_argument, NULL, GEN_SEED},
    {"bs", required_argument, NULL, GEN_BS},
    {"antennas", required_argument, NULL, GEN_ANTENNAS},
    {"ues", required_argument, NULL, GEN_UES},
    {"pt-dbm", required_argument, NULL, GEN_PT},
    {"area", required_argument, NULL, GEN_AREA},
    {"bs-height", required_argument, NULL, GEN_BS_HEIGHT},
    {"ue-height", required_argument, NULL, GEN_UE_HEIGHT},
    {"noise-dbm-hz", required_argument, NULL, GEN_NOISE_HZ},
    {"bandwidth-hz", required_argument, NULL, GEN_BANDWIDTH},
    {"noise-figure-db", required_argument, NULL, GEN_NOISE_FIGURE},
    {"path-mean", required_argument, NULL, GEN_PATH_MEAN},
    {"outage", no_argument, NULL, GEN_OUTAGE},
    {"threads", required_argument, NULL, GEN_THREADS},
    {"quiet", no_argument, NULL, GEN_QUIET},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct gen_args {
  sg_scenario sc;
  int64_t samples;
  const char *out;
  int threads;
  bool quiet, help;
} gen_args;

/* Applies one option; 0 or -1 (message printed). */
static int gen_option(gen_args *a, int opt, const char *v) {
  const char *c = "gen";
  sg_scenario *sc = &a->sc;
  switch (opt) {
  case GEN_SAMPLES:
    return assoc_parse_i64(c, "samples", v, 1, INT64_C(1) << 40, &a->samples);
  case GEN_OUT:
    a->out = v;
    return 0;
  case GEN_SEED:
    return assoc_parse_u64(c, "seed", v, (UINT64_C(1) << 63) - 1, &sc->seed);
  case GEN_BS:
    return assoc_parse_int(c, "bs", v, 1, SG_MAX_BS, &sc->M);
  case GEN_ANTENNAS:
    return assoc_parse_int(c, "antennas", v, 1, SG_MAX_ANTENNAS, &sc->N);
  case GEN_UES:
    return assoc_parse_int(c, "ues", v, 1, SG_MAX_UES, &sc->K);
  case GEN_PT:
    return assoc_parse_double(c, "pt-dbm", v, -100, 100, &sc->pt_dbm);
  case GEN_AREA:
    return assoc_parse_double(c, "area", v, 1, 1e6, &sc->area_m);
  case GEN_BS_HEIGHT:
    return assoc_parse_double(c, "bs-height", v, 0, 1e4, &sc->bs_height_m);
  case GEN_UE_HEIGHT:
    return assoc_parse_double(c, "ue-height", v, 0, 1e4, &sc->ue_height_m);
  case GEN_NOISE_HZ:
    return assoc_parse_double(c, "noise-dbm-hz", v, -250, 0, &sc->noise_dbm_hz);
  case GEN_BANDWIDTH:
    return assoc_parse_double(c, "bandwidth-hz", v, 1, 1e12, &sc->bandwidth_hz);
  case GEN_NOISE_FIGURE:
    return assoc_parse_double(c, "noise-figure-db", v, 0, 100, &sc->noise_figure_db);
  case GEN_PATH_MEAN:
    return assoc_parse_double(c, "path-mean", v, 1e-6, 50, &sc->path_mean);
  case GEN_OUTAGE:
    sc->outage = true;
    return 0;
  case GEN_THREADS:
    return assoc_parse_int(c, "threads", v, 1, 4096, &a->threads);
  case GEN_QUIET:
    a->quiet = true;
    return 0;
  case 'h':
    a->help = true;
    return 0;
  default:
    return -1;
  }
}

static int gen_parse(int argc, char **argv, gen_args *a) {
  *a = (gen_args){.sc = sg_scenario_default()};
  optind = 1, opterr = 0;
  for (int opt; (opt = getopt_long(argc, argv, "h", gen_options, NULL)) != -1;) {
    if (opt == '?') return assoc_bad_option("gen", argv);
    if (gen_option(a, opt, optarg)) return -1;
  }
  if (a->help) return 0;
  if (optind < argc) {
    fprintf(stderr, "assoc gen: unexpected argument '%s'\n", argv[optind]);
    return -1;
  }
  if (!a->samples || !a->out) {
    fprintf(stderr, "assoc gen: --samples and --out are required (see assoc gen --help)\n");
    return -1;
  }
  char msg[256];
  if (sg_scenario_check(&a->sc, msg, sizeof msg)) {
    fprintf(stderr, "assoc gen: %s\n", msg);
    return -1;
  }
  return 0;
}

int assoc_cmd_gen(int argc, char **argv) {
  gen_args a;
  if (gen_parse(argc, argv, &a)) return ASSOC_EXIT_USAGE;
  if (a.help) return fputs(gen_help, stdout), ASSOC_EXIT_OK;
  if (a.threads) assoc_set_threads(a.threads);
  bool tty = !a.quiet && isatty(STDERR_FILENO);
  double t0 = omp_get_wtime();
  sg_dataset ds;
  char msg[256];
  if (sg_generate(&a.sc, a.samples, &ds, msg, sizeof msg)) {
    fprintf(stderr, "assoc gen: %s\n", msg);
    return ASSOC_EXIT_FAIL;
  }
  double t1 = omp_get_wtime();
  if (tty) fprintf(stderr, "  writing %s ...", a.out);
  sg_io_error err;
  int rc = sg_dataset_save(&ds, a.out, &err);
  if (tty) fprintf(stderr, "\r%60s\r", "");
  double t2 = omp_get_wtime();
  sg_dataset_free(&ds);
  if (rc) {
    fprintf(stderr, "assoc gen: %s\n", err.msg);
    return ASSOC_EXIT_FAIL;
  }
  if (!a.quiet)
    printf("wrote %s: %lld samples, M=%d N=%d K=%d, seed %llu (generate %.2f s, write %.2f s)\n",
           a.out, (long long)a.samples, a.sc.M, a.sc.N, a.sc.K, (unsigned long long)a.sc.seed,
           t1 - t0, t2 - t1);
  return ASSOC_EXIT_OK;
}

/* ---- assoc baselines ------------------------------------------------------------------- */

static const char baselines_help[] =
    "usage: assoc baselines DATA [options]\n"
    "\n"
    "Runs the association baselines (docs/system.md) on every sample of the data\n"
    "set DATA and prints, per method: mean sum-rate (with load violations), the\n"
    "violation ratio, the load-balanced sum-rate (UEs over the limit dropped, as in\n"
    "models.md), dropped UEs per sample, the ratio of the load-balanced sum-rate to\n"
    "ES, and the mean single-sample time. Results do not depend on the threads.\n"
    "\n"
    "  --json               print JSON instead of the table\n"
    "  --out FILE           write <method>_assoc (S x K int32, BS per UE, -1 dropped)\n"
    "                       and <method>_rate (S) for every method as .npz; for\n"
    "                       MaxSINR also MaxSINR_lb_assoc and MaxSINR_lb_rate\n"
    "  --methods LIST       comma-separated subset of ES, MaxSINR, MaxSINR-capped,\n"
    "                       RandInt, DA, Assign, LocalSearch (default: all)\n"
    "  --limit S            use only the first S samples\n"
    "  --seed X             RandInt seed (default: the data set's seed)\n"
    "  --da-iters T         DA iterations (default 100)\n"
    "  --da-step S          DA step size step0 (default 1.0)\n"
    "  --es-max-leaves L    skip ES when it would search more associations per\n"
    "                       sample (default 1e9)\n"
    "  --threads T          OpenMP threads (default: OMP_NUM_THREADS or all)\n"
    "  --quiet              no progress display\n"
    "  -h, --help           this help\n";

enum base_option {
  BASE_JSON = 1000,
  BASE_OUT,
  BASE_METHODS,
  BASE_LIMIT,
  BASE_SEED,
  BASE_DA_ITERS,
  BASE_DA_STEP,
  BASE_ES_MAX,
  BASE_THREADS,
  BASE_QUIET,
};

static const struct option base_options[] = {
    {"json", no_argument, NULL, BASE_JSON},
    {"out", required_argument, NULL, BASE_OUT},
    {"methods", required_argument, NULL, BASE_METHODS},
    {"limit", required_argument, NULL, BASE_LIMIT},
    {"seed", required_argument, NULL, BASE_SEED},
    {"da-iters", required_argument, NULL, BASE_DA_ITERS},
    {"da-step", required_argument, NULL, BASE_DA_STEP},
    {"es-max-leaves", required_argument, NULL, BASE_ES_MAX},
    {"threads", required_argument, NULL, BASE_THREADS},
    {"quiet", no_argument, NULL, BASE_QUIET},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct base_args {
  const char *data, *out;
  bool json, quiet, help, seed_given;
  bool use[SG_METHOD_COUNT];
  int64_t limit;
  int threads;
  sg_baseline_opts opts;
} base_args;

static int parse_methods(char *list, bool *use) {
  for (int m = 0; m < SG_METHOD_COUNT; m++) use[m] = false;
  for (char *save, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int m = sg_method_parse(tok);
    if (m < 0) {
      fprintf(stderr, "assoc baselines: unknown method '%s' (see assoc baselines --help)\n", tok);
      return -1;
    }
    use[m] = true;
  }
  return 0;
}

static int base_option(base_args *a, int opt, char *v) {
  const char *c = "baselines";
  sg_baseline_opts *o = &a->opts;
  switch (opt) {
  case BASE_JSON:
    a->json = true;
    return 0;
  case BASE_OUT:
    a->out = v;
    return 0;
  case BASE_METHODS:
    return parse_methods(v, a->use);
  case BASE_LIMIT:
    return assoc_parse_i64(c, "limit", v, 1, INT64_MAX, &a->limit);
  case BASE_SEED:
    a->seed_given = true;
    return assoc_parse_u64(c, "seed", v, UINT64_MAX, &o->seed);
  case BASE_DA_ITERS:
    return assoc_parse_int(c, "da-iters", v, 1, 1000000, &o->da_iters);
  case BASE_DA_STEP:
    return assoc_parse_double(c, "da-step", v, 1e-9, 1e9, &o->da_step0);
  case BASE_ES_MAX:
    return assoc_parse_double(c, "es-max-leaves", v, 1, 1e18, &o->es_max_leaves);
  case BASE_THREADS:
    return assoc_parse_int(c, "threads", v, 1, 4096, &a->threads);
  case BASE_QUIET:
    a->quiet = true;
    return 0;
  case 'h':
    a->help = true;
    return 0;
  default:
    return -1;
  }
}

static int base_parse(int argc, char **argv, base_args *a) {
  *a = (base_args){.opts = sg_baseline_defaults()};
  for (int m = 0; m < SG_METHOD_COUNT; m++) a->use[m] = true;
  optind = 1, opterr = 0;
  for (int opt; (opt = getopt_long(argc, argv, "h", base_options, NULL)) != -1;) {
    if (opt == '?') return assoc_bad_option("baselines", argv);
    if (base_option(a, opt, optarg)) return -1;
  }
  if (a->help) return 0;
  if (optind + 1 != argc) {
    fprintf(stderr, "assoc baselines: expected one data set (see assoc baselines --help)\n");
    return -1;
  }
  a->data = argv[optind];
  return 0;
}

typedef struct method_run {
  bool done;
  int *assoc, *lb_assoc;
  double *rate, *lb_rate;
  sg_metrics metrics;
} method_run;

static void free_runs(method_run *runs) {
  for (int m = 0; m < SG_METHOD_COUNT; m++) {
    free(runs[m].assoc), free(runs[m].lb_assoc), free(runs[m].rate), free(runs[m].lb_rate);
  }
}

/* Runs method m; 0, 1 (ES skipped: too large, warned) or -1 (failure, printed). */
static int run_one(const sg_dataset *ds, sg_method m, const base_args *a, const double *es_rate,
                   assoc_progress_state *progress, method_run *r) {
  size_t SK = (size_t)ds->S * ds->K;
  r->assoc = malloc(SK * sizeof *r->assoc), r->lb_assoc = malloc(SK * sizeof *r->lb_assoc);
  r->rate = malloc((size_t)ds->S * sizeof *r->rate);
  r->lb_rate = malloc((size_t)ds->S * sizeof *r->lb_rate);
  if (!r->assoc || !r->lb_assoc || !r->rate || !r->lb_rate) {
    fprintf(stderr, "assoc baselines: out of memory\n");
    return -1;
  }
  double ms;
  char msg[256];
  if (sg_run_method(ds, m, &a->opts, r->assoc, r->rate, &ms, assoc_progress, progress, msg,
                    sizeof msg)) {
    assoc_progress_clear(progress);
    fprintf(stderr, "assoc baselines: %s: %s%s\n", sg_method_name(m), msg,
            m == SG_ES ? "; skipped (raise --es-max-leaves to force)" : "");
    return m == SG_ES ? 1 : -1;
  }
  const double *reference = m == SG_ES ? r->rate : es_rate;
  if (sg_metrics_compute(ds, r->assoc, NULL, reference, ms, &r->metrics, r->lb_assoc, r->lb_rate)) {
    fprintf(stderr, "assoc baselines: out of memory\n");
    return -1;
  }
  r->done = true;
  return 0;
}

static int run_all(const sg_dataset *ds, const base_args *a, method_run *runs) {
  assoc_progress_state progress;
  assoc_progress_init(&progress, !a->quiet);
  const double *es_rate = NULL;
  for (int m = 0; m < SG_METHOD_COUNT; m++) {
    if (!a->use[m]) continue;
    int rc = run_one(ds, (sg_method)m, a, es_rate, &progress, &runs[m]);
    if (rc < 0) return -1;
    if (m == SG_ES && rc == 0) es_rate = runs[m].rate;
  }
  assoc_progress_clear(&progress);
  return 0;
}

static void print_table(const sg_dataset *ds, const base_args *a, const method_run *runs) {
  printf("data %s: S=%lld M=%d N=%d K=%d, Pt %.1f dBm, noise %.1f dBm, %d threads\n\n", a->data,
         (long long)ds->S, ds->M, ds->N, ds->K, ds->pt_dbm, ds->noise_dbm, omp_get_max_threads());
  printf("%-15s %9s %11s %12s %10s %12s %11s\n", "method", "sum-rate", "violations", "LB sum-rate",
         "dropped", "ratio to ES", "ms/sample");
  for (int m = 0; m < SG_METHOD_COUNT; m++) {
    if (!runs[m].done) continue;
    const sg_metrics *x = &runs[m].metrics;
    char ratio[32] = "-";
    if (isfinite(x->ratio_to_es)) snprintf(ratio, sizeof ratio, "%.3f", x->ratio_to_es);
    printf("%-15s %9.3f %10.1f%% %12.3f %10.2f %12s %11.4f\n", sg_method_name(m), x->mean_rate,
           100.0 * x->violation_ratio, x->mean_lb_rate, x->mean_dropped, ratio, x->ms_per_sample);
  }
  printf("\nsum-rate: mean R (bps/Hz) of the association as produced; LB: after dropping the\n"
         "UEs over the load limit N (weakest links first); dropped: UEs per sample.\n");
}

static void json_string(const char *s) {
  putchar('"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      printf("\\%c", c);
    else if (c < 0x20)
      printf("\\u%04x", c);
    else
      putchar(c);
  }
  putchar('"');
}

static void json_number(const char *name, double v, const char *sep) {
  if (isfinite(v))
    printf("\"%s\": %.10g%s", name, v, sep);
  else
    printf("\"%s\": null%s", name, sep);
}

static void print_json(const sg_dataset *ds, const base_args *a, const method_run *runs) {
  printf("{\"data\": ");
  json_string(a->data);
  printf(", \"samples\": %lld, \"M\": %d, \"N\": %d, \"K\": %d, ", (long long)ds->S, ds->M, ds->N,
         ds->K);
  json_number("pt_dbm", ds->pt_dbm, ", ");
  json_number("noise_dbm", ds->noise_dbm, ", ");
  printf("\"threads\": %d, \"methods\": [", omp_get_max_threads());
  const char *sep = "";
  for (int m = 0; m < SG_METHOD_COUNT; m++) {
    if (!runs[m].done) continue;
    const sg_metrics *x = &runs[m].metrics;
    printf("%s\n  {\"name\": \"%s\", \"key\": \"%s\", ", sep, sg_method_name(m), sg_method_key(m));
    json_number("mean_rate", x->mean_rate, ", ");
    json_number("violation_ratio", x->violation_ratio, ", ");
    json_number("mean_lb_rate", x->mean_lb_rate, ", ");
    json_number("mean_dropped", x->mean_dropped, ", ");
    json_number("ratio_to_es", x->ratio_to_es, ", ");
    json_number("ms_per_sample", x->ms_per_sample, "}");
    sep = ",";
  }
  printf("\n]}\n");
}

static int add_method(sg_npz_writer *w, const sg_dataset *ds, sg_method m, const method_run *r,
                      sg_io_error *err) {
  char name[64];
  const char *key = sg_method_key(m);
  sg_array assoc = {.type = SG_NPY_I32, .ndim = 2, .shape = {ds->S, ds->K}, .numel = ds->S * ds->K};
  sg_array rate = {.type = SG_NPY_F64, .ndim = 1, .shape = {ds->S}, .numel = ds->S};
  struct {
    const char *suffix;
    sg_array a;
    void *data;
  } parts[] = {{"assoc", assoc, r->assoc},
               {"rate", rate, r->rate},
               {"lb_assoc", assoc, r->lb_assoc},
               {"lb_rate", rate, r->lb_rate}};
  int n_parts = m == SG_MAXSINR ? 4 : 2;
  for (int i = 0; i < n_parts; i++) {
    snprintf(name, sizeof name, "%s_%s", key, parts[i].suffix);
    parts[i].a.data = parts[i].data;
    if (sg_npz_add_array(w, name, &parts[i].a, err)) return -1;
  }
  snprintf(name, sizeof name, "%s_ms_per_sample", key);
  return sg_npz_add_scalar_f64(w, name, r->metrics.ms_per_sample, err);
}

static int write_results(const sg_dataset *ds, const base_args *a, const method_run *runs) {
  sg_io_error err;
  sg_npz_writer *w = sg_npz_writer_open(a->out, true, &err);
  int rc = w ? 0 : -1;
  for (int m = 0; m < SG_METHOD_COUNT && !rc; m++)
    if (runs[m].done) rc = add_method(w, ds, (sg_method)m, &runs[m], &err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "samples", ds->S, &err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "randint_seed", (int64_t)a->opts.seed, &err);
  if (!rc)
    rc = sg_npz_writer_close(w, &err);
  else if (w)
    sg_npz_writer_abort(w);
  if (rc) fprintf(stderr, "assoc baselines: %s\n", err.msg);
  return rc;
}

int assoc_cmd_baselines(int argc, char **argv) {
  base_args a;
  if (base_parse(argc, argv, &a)) return ASSOC_EXIT_USAGE;
  if (a.help) return fputs(baselines_help, stdout), ASSOC_EXIT_OK;
  if (a.threads) assoc_set_threads(a.threads);
  sg_dataset ds;
  sg_io_error err;
  if (sg_dataset_load(a.data, &ds, &err)) {
    fprintf(stderr, "assoc baselines: %s\n", err.msg);
    return ASSOC_EXIT_FAIL;
  }
  int64_t all_samples = ds.S;
  if (a.limit && a.limit < ds.S) ds.S = a.limit; /* samples are contiguous: a prefix view */
  if (!a.seed_given) a.opts.seed = ds.seed;
  method_run runs[SG_METHOD_COUNT] = {0};
  int rc = run_all(&ds, &a, runs);
  if (!rc) (a.json ? print_json : print_table)(&ds, &a, runs);
  if (!rc && a.out) rc = write_results(&ds, &a, runs);
  free_runs(runs);
  ds.S = all_samples;
  sg_dataset_free(&ds);
  return rc ? ASSOC_EXIT_FAIL : ASSOC_EXIT_OK;
}

/* ---- assoc info ------------------------------------------------------------------------ */

static const char info_help[] =
    "usage: assoc info DATA\n"
    "\n"
    "Prints a data set's sizes, scenario parameters and link statistics.\n";

static void print_info(const char *path, const sg_dataset *ds) {
  const sg_scenario *sc = &ds->scenario;
  int64_t links = ds->S * ds->M * ds->K;
  double los = 0, paths = 0, snr_db = 0, amp = sg_snr_amplitude(ds);
  for (int64_t i = 0; i < links; i++) {
    double h2 = 0;
    for (int n = 0; n < ds->N; n++)
      h2 += ds->H_re[i * ds->N + n] * ds->H_re[i * ds->N + n] +
            ds->H_im[i * ds->N + n] * ds->H_im[i * ds->N + n];
    los += ds->los[i], paths += ds->n_paths[i];
    snr_db += 10.0 * log10(h2 * amp * amp + 1e-300);
  }
  printf("%s: S=%lld samples, M=%d BSs, N=%d antennas, K=%d UEs, seed %llu\n", path,
         (long long)ds->S, ds->M, ds->N, ds->K, (unsigned long long)ds->seed);
  printf("  Pt %.2f dBm per BS, noise %.2f dBm (recorded: %.1f dBm/Hz, %.3g Hz, NF %.1f dB)\n",
         ds->pt_dbm, ds->noise_dbm, sc->noise_dbm_hz, sc->bandwidth_hz, sc->noise_figure_db);
  printf("  area %.1f m, heights BS %.1f m / UE %.1f m, path mean %.2f, outage state %s\n",
         sc->area_m, sc->bs_height_m, sc->ue_height_m, sc->path_mean, sc->outage ? "on" : "off");
  printf("  links: %.1f%% LOS, %.2f paths on average, mean per-stream SNR %.1f dB\n",
         100.0 * los / (double)links, paths / (double)links, snr_db / (double)links);
}

int assoc_cmd_info(int argc, char **argv) {
  if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
    return fputs(info_help, stdout), ASSOC_EXIT_OK;
  if (argc != 2 || argv[1][0] == '-') {
    fprintf(stderr, "assoc info: expected one data set (see assoc info --help)\n");
    return ASSOC_EXIT_USAGE;
  }
  sg_dataset ds;
  sg_io_error err;
  if (sg_dataset_load(argv[1], &ds, &err)) {
    fprintf(stderr, "assoc info: %s\n", err.msg);
    return ASSOC_EXIT_FAIL;
  }
  print_info(argv[1], &ds);
  sg_dataset_free(&ds);
  return ASSOC_EXIT_OK;
}

/* ---- top level ----------------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f, "usage: assoc <command> [options]\n\ncommands:\n");
  for (int i = 0; i < N_COMMANDS; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\nRun 'assoc <command> --help' for the options of a command.\n");
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
    if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "assoc: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return ASSOC_EXIT_USAGE;
}
