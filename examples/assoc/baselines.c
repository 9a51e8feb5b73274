/* assoc baselines: runs the association baselines on a data set and prints
 * their metrics as a table or JSON, optionally writing the associations. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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
  BASE_METHODS = 1000,
  BASE_LIMIT,
  BASE_SEED,
  BASE_DA_ITERS,
  BASE_DA_STEP,
  BASE_ES_MAX,
};

static const struct option base_options[] = {
    ASSOC_OPTION_JSON,
    ASSOC_OPTION_OUT,
    {"methods", required_argument, NULL, BASE_METHODS},
    {"limit", required_argument, NULL, BASE_LIMIT},
    {"seed", required_argument, NULL, BASE_SEED},
    {"da-iters", required_argument, NULL, BASE_DA_ITERS},
    {"da-step", required_argument, NULL, BASE_DA_STEP},
    {"es-max-leaves", required_argument, NULL, BASE_ES_MAX},
    ASSOC_OPTION_THREADS,
    ASSOC_OPTION_QUIET,
    ASSOC_OPTION_HELP,
    {NULL, 0, NULL, 0},
};

typedef struct base_args {
  const char *data;
  bool seed_given;
  bool use[ASSOC_METHOD_COUNT];
  int64_t limit;
  assoc_common_args common; /* --json, --out, --threads, --quiet, --help */
  assoc_baseline_opts opts;
} base_args;

static int parse_methods(char *list, bool *use) {
  for (int m = 0; m < ASSOC_METHOD_COUNT; m++) use[m] = false;
  for (char *save, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int m = assoc_method_parse(tok);
    if (m < 0) {
      fprintf(stderr, "assoc baselines: unknown method '%s' (see assoc baselines --help)\n", tok);
      return -1;
    }
    use[m] = true;
  }
  return 0;
}

static int base_option(void *args, int opt, char *v) {
  base_args *a = args;
  const char *c = "baselines";
  assoc_baseline_opts *o = &a->opts;
  switch (opt) {
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
  default:
    return assoc_common_option(c, opt, v, &a->common);
  }
}

static int base_parse(int argc, char **argv, base_args *a) {
  *a = (base_args){.opts = assoc_baseline_defaults()};
  for (int m = 0; m < ASSOC_METHOD_COUNT; m++) a->use[m] = true;
  int first = assoc_parse_options("baselines", argc, argv, base_options, base_option, a);
  if (first < 0) return -1;
  if (a->common.help) return 0;
  if (first + 1 != argc) {
    fprintf(stderr, "assoc baselines: expected one data set (see assoc baselines --help)\n");
    return -1;
  }
  a->data = argv[first];
  return 0;
}

typedef struct method_run {
  bool done;
  int *assoc, *lb_assoc;
  double *rate, *lb_rate;
  assoc_metrics metrics;
} method_run;

static void free_runs(method_run *runs) {
  for (int m = 0; m < ASSOC_METHOD_COUNT; m++) {
    free(runs[m].assoc), free(runs[m].lb_assoc), free(runs[m].rate), free(runs[m].lb_rate);
  }
}

/* Runs method m; 0, 1 (ES skipped: too large, warned) or -1 (failure, printed). */
static int run_one(const assoc_dataset *ds, assoc_method m, const base_args *a,
                   const double *es_rate, assoc_progress_state *progress, method_run *r) {
  size_t SK = (size_t)ds->S * ds->K;
  r->assoc = malloc(SK * sizeof *r->assoc), r->lb_assoc = malloc(SK * sizeof *r->lb_assoc);
  r->rate = malloc((size_t)ds->S * sizeof *r->rate);
  r->lb_rate = malloc((size_t)ds->S * sizeof *r->lb_rate);
  if (!r->assoc || !r->lb_assoc || !r->rate || !r->lb_rate) {
    fprintf(stderr, "assoc baselines: out of memory\n");
    return -1;
  }
  double ms;
  sg_io_error err;
  if (assoc_run_method(ds, m, &a->opts, r->assoc, r->rate, &ms, assoc_progress, progress, &err)) {
    assoc_progress_clear(progress);
    fprintf(stderr, "assoc baselines: %s: %s%s\n", assoc_method_name(m), err.msg,
            m == ASSOC_ES ? "; skipped (raise --es-max-leaves to force)" : "");
    return m == ASSOC_ES ? 1 : -1;
  }
  const double *reference = m == ASSOC_ES ? r->rate : es_rate;
  if (assoc_metrics_compute(ds, r->assoc, NULL, reference, ms, &r->metrics, r->lb_assoc,
                            r->lb_rate)) {
    fprintf(stderr, "assoc baselines: out of memory\n");
    return -1;
  }
  r->done = true;
  return 0;
}

static int run_all(const assoc_dataset *ds, const base_args *a, method_run *runs) {
  assoc_progress_state progress;
  assoc_progress_init(&progress, !a->common.quiet);
  const double *es_rate = NULL;
  for (int m = 0; m < ASSOC_METHOD_COUNT; m++) {
    if (!a->use[m]) continue;
    int rc = run_one(ds, (assoc_method)m, a, es_rate, &progress, &runs[m]);
    if (rc < 0) return -1;
    if (m == ASSOC_ES && rc == 0) es_rate = runs[m].rate;
  }
  assoc_progress_clear(&progress);
  return 0;
}

static void print_table(const assoc_dataset *ds, const base_args *a, const method_run *runs) {
  printf("data %s: S=%lld M=%d N=%d K=%d, Pt %.1f dBm, noise %.1f dBm, %d threads\n\n", a->data,
         (long long)ds->S, ds->M, ds->N, ds->K, ds->pt_dbm, ds->noise_dbm, omp_get_max_threads());
  printf("%-15s %9s %11s %12s %10s %12s %11s\n", "method", "sum-rate", "violations", "LB sum-rate",
         "dropped", "ratio to ES", "ms/sample");
  for (int m = 0; m < ASSOC_METHOD_COUNT; m++) {
    if (!runs[m].done) continue;
    const assoc_metrics *x = &runs[m].metrics;
    char ratio[32] = "-";
    if (isfinite(x->ratio_to_es)) snprintf(ratio, sizeof ratio, "%.3f", x->ratio_to_es);
    printf("%-15s %9.3f %10.1f%% %12.3f %10.2f %12s %11.4f\n", assoc_method_name(m), x->mean_rate,
           100.0 * x->violation_ratio, x->mean_lb_rate, x->mean_dropped, ratio, x->ms_per_sample);
  }
  printf("\nsum-rate: mean R (bps/Hz) of the association as produced; LB: after dropping the\n"
         "UEs over the load limit N (weakest links first); dropped: UEs per sample.\n");
}

static void print_json(const assoc_dataset *ds, const base_args *a, const method_run *runs) {
  printf("{");
  assoc_json_string(stdout, "data", a->data, ", ");
  printf("\"samples\": %lld, \"M\": %d, \"N\": %d, \"K\": %d, ", (long long)ds->S, ds->M, ds->N,
         ds->K);
  assoc_json_number(stdout, "pt_dbm", ds->pt_dbm, ", ");
  assoc_json_number(stdout, "noise_dbm", ds->noise_dbm, ", ");
  printf("\"threads\": %d, \"methods\": [", omp_get_max_threads());
  const char *sep = "";
  for (int m = 0; m < ASSOC_METHOD_COUNT; m++) {
    if (!runs[m].done) continue;
    const assoc_metrics *x = &runs[m].metrics;
    printf("%s\n  {", sep);
    assoc_json_string(stdout, "name", assoc_method_name(m), ", ");
    assoc_json_string(stdout, "key", assoc_method_key(m), ", ");
    assoc_json_number(stdout, "mean_rate", x->mean_rate, ", ");
    assoc_json_number(stdout, "violation_ratio", x->violation_ratio, ", ");
    assoc_json_number(stdout, "mean_lb_rate", x->mean_lb_rate, ", ");
    assoc_json_number(stdout, "mean_dropped", x->mean_dropped, ", ");
    assoc_json_number(stdout, "ratio_to_es", x->ratio_to_es, ", ");
    assoc_json_number(stdout, "ms_per_sample", x->ms_per_sample, "}");
    sep = ",";
  }
  printf("\n]}\n");
}

static int add_method(sg_npz_writer *w, const assoc_dataset *ds, assoc_method m,
                      const method_run *r, sg_io_error *err) {
  char name[64];
  const char *key = assoc_method_key(m);
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
  int n_parts = m == ASSOC_MAXSINR ? 4 : 2;
  for (int i = 0; i < n_parts; i++) {
    snprintf(name, sizeof name, "%s_%s", key, parts[i].suffix);
    parts[i].a.data = parts[i].data;
    if (sg_npz_add_array(w, name, &parts[i].a, err)) return -1;
  }
  snprintf(name, sizeof name, "%s_ms_per_sample", key);
  return sg_npz_add_scalar_f64(w, name, r->metrics.ms_per_sample, err);
}

static int write_results(const assoc_dataset *ds, const base_args *a, const method_run *runs) {
  sg_io_error err;
  sg_npz_writer *w = sg_npz_writer_open(a->common.out, true, &err);
  int rc = w ? 0 : -1;
  for (int m = 0; m < ASSOC_METHOD_COUNT && !rc; m++)
    if (runs[m].done) rc = add_method(w, ds, (assoc_method)m, &runs[m], &err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "samples", ds->S, &err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "randint_seed", (int64_t)a->opts.seed, &err);
  if (!rc)
    rc = sg_npz_writer_close(w, &err);
  else if (w)
    sg_npz_writer_abort(w);
  if (rc) fprintf(stderr, "assoc baselines: %s\n", err.msg);
  return rc;
}

int assoc_check_baselines(int argc, char **argv) {
  base_args a;
  return base_parse(argc, argv, &a) ? ASSOC_EXIT_USAGE : ASSOC_EXIT_OK;
}

int assoc_cmd_baselines(int argc, char **argv) {
  base_args a;
  if (base_parse(argc, argv, &a)) return ASSOC_EXIT_USAGE;
  int start = assoc_command_start("baselines", a.common.help, baselines_help, a.common.out,
                                  a.common.threads);
  if (start != ASSOC_GO_ON) return start;
  assoc_dataset ds;
  if (assoc_load_dataset("baselines", a.data, &ds)) return ASSOC_EXIT_FAIL;
  int64_t all_samples = ds.S;
  if (a.limit && a.limit < ds.S) ds.S = a.limit; /* samples are contiguous: a prefix view */
  if (!a.seed_given) a.opts.seed = ds.seed;
  method_run runs[ASSOC_METHOD_COUNT] = {0};
  int rc = run_all(&ds, &a, runs);
  if (!rc) (a.common.json ? print_json : print_table)(&ds, &a, runs);
  if (!rc && a.common.out) rc = write_results(&ds, &a, runs);
  free_runs(runs);
  ds.S = all_samples;
  assoc_dataset_free(&ds);
  return rc ? ASSOC_EXIT_FAIL : ASSOC_EXIT_OK;
}
