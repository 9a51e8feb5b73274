/* assoc ablation: the ablation study of the paper (Table 1, Figures 2b, 3a,
 * 3b, 4a) at a CPU-sized configuration. Trains the four GNN variants on one
 * training set, evaluates them and the baselines on a test set, prints a
 * Table-1-like table beside the paper's numbers, writes ablation.json,
 * table.md, the CSV logs and curves, and plots them with gnuplot. See
 * docs/ablation.md. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "assoc_cli.h"
#include "sg_eval.h"
#include "sg_train.h"

/* Exit status when every result was written but the plots were skipped
 * because gnuplot is missing or failed (never silently). */
enum { ABLATION_EXIT_NO_PLOTS = 3 };
enum { ONEHOT_SAMPLES = 4, MAX_CURVE_POINTS = 64 };

static const char ablation_help[] =
    "usage: assoc ablation [--quick] [--out DIR] [options]\n"
    "\n"
    "Trains AttSKGS-, SKGS-, GS- and SMA-GNN on one generated training set of\n"
    "the paper scenario (M 2, N 4, K 8, 30 dBm), evaluates them and the\n"
    "baselines on a test set, prints a Table-1-like table beside the paper's\n"
    "numbers and writes to DIR: ablation.json, table.md, test.npz, one\n"
    "checkpoint and training log (CSV) per model, curve_k.csv (sum-rate\n"
    "against K, trained on K 8, no retraining), onehot.dat, plots.gp and the\n"
    "PNG plots (gnuplot). Exit status 3: results written, plots skipped.\n"
    "\n"
    "The default run takes about 30 minutes on 2 cores; --quick a few minutes.\n"
    "\n"
    "  --quick                 the small configuration (see docs/ablation.md)\n"
    "  --out DIR               output directory (default ablation-out; created)\n"
    "  --models LIST           comma-separated subset of AttSKGS,SKGS,GS,SMA\n"
    "  --epochs E              training epochs\n"
    "  --batches-per-epoch n   mini-batches per epoch\n"
    "  --batch B               mini-batch size\n"
    "  --d D, --h H, --layers L   model widths and depth\n"
    "  --lr-max X, --lr-min X  cosine-annealing range\n"
    "  --t0 E, --t-mult m      warm-restart period (epochs) and multiplier\n"
    "  --t-mu E                dual update of mu every E epochs\n"
    "  --delta X, --tau X      load margin and Gumbel temperature\n"
    "  --sk-balanced           balanced Sinkhorn (no kink at the cap; see assoc train)\n"
    "  --train-samples S, --val-samples S, --test-samples S, --curve-samples S\n"
    "  --k-max K               largest K of the sum-rate-against-K curve\n"
    "  --seed X                seed of data and models (default 1)\n"
    "  --threads T             OpenMP threads (default: OMP_NUM_THREADS or all)\n"
    "  --no-plots              do not run gnuplot\n"
    "  --quiet                 no progress on stderr\n"
    "  -h, --help              this help\n";

/* ---- configuration ------------------------------------------------------------------ */

typedef struct abl_args {
  const char *out;
  bool quick, no_plots, quiet, help;
  bool use[SG_GNN_VARIANT_COUNT];
  sg_train_config train; /* variant set per model */
  int64_t train_samples, val_samples, test_samples, curve_samples;
  int k_min, k_max, k_step;
  uint64_t seed;
  int threads;
} abl_args;

/* The default (about 30 minutes on 2 cores) and --quick configurations. */
static void set_defaults(abl_args *a, bool quick) {
  sg_train_config *c = &a->train;
  *c = sg_train_config_default(SG_GNN_ATTSKGS);
  c->d = quick ? 32 : 64;
  c->h = quick ? 64 : 128;
  c->L = 2;
  c->batch = 64;
  c->batches_per_epoch = quick ? 20 : 50;
  c->epochs = quick ? 30 : 120;
  c->lr_min = 1e-6, c->lr_max = 1e-3;
  c->t0 = quick ? 10 : 40, c->t_mult = 2; /* periods t0 + 2 t0 = all epochs */
  c->t_mu = quick ? 5 : 20;
  c->eval_batch = 256;
  a->train_samples = quick ? 4000 : 20000;
  a->val_samples = quick ? 200 : 500;
  a->test_samples = quick ? 1000 : 2000;
  a->curve_samples = quick ? 300 : 1000;
  a->k_min = 4, a->k_max = 12, a->k_step = quick ? 2 : 1;
}

enum abl_option {
  AB_QUICK = 1000,
  AB_OUT,
  AB_MODELS,
  AB_EPOCHS,
  AB_BPE,
  AB_BATCH,
  AB_D,
  AB_H,
  AB_LAYERS,
  AB_LR_MAX,
  AB_LR_MIN,
  AB_T0,
  AB_T_MULT,
  AB_T_MU,
  AB_DELTA,
  AB_TAU,
  AB_TRAIN_S,
  AB_VAL_S,
  AB_TEST_S,
  AB_CURVE_S,
  AB_K_MAX,
  AB_SEED,
  AB_THREADS,
  AB_NO_PLOTS,
  AB_QUIET,
  AB_SK_BALANCED,
};

static const struct option abl_options[] = {
    {"quick", no_argument, NULL, AB_QUICK},
    {"out", required_argument, NULL, AB_OUT},
    {"models", required_argument, NULL, AB_MODELS},
    {"epochs", required_argument, NULL, AB_EPOCHS},
    {"batches-per-epoch", required_argument, NULL, AB_BPE},
    {"batch", required_argument, NULL, AB_BATCH},
    {"d", required_argument, NULL, AB_D},
    {"h", required_argument, NULL, AB_H},
    {"layers", required_argument, NULL, AB_LAYERS},
    {"lr-max", required_argument, NULL, AB_LR_MAX},
    {"lr-min", required_argument, NULL, AB_LR_MIN},
    {"t0", required_argument, NULL, AB_T0},
    {"t-mult", required_argument, NULL, AB_T_MULT},
    {"t-mu", required_argument, NULL, AB_T_MU},
    {"delta", required_argument, NULL, AB_DELTA},
    {"tau", required_argument, NULL, AB_TAU},
    {"train-samples", required_argument, NULL, AB_TRAIN_S},
    {"val-samples", required_argument, NULL, AB_VAL_S},
    {"test-samples", required_argument, NULL, AB_TEST_S},
    {"curve-samples", required_argument, NULL, AB_CURVE_S},
    {"k-max", required_argument, NULL, AB_K_MAX},
    {"seed", required_argument, NULL, AB_SEED},
    {"threads", required_argument, NULL, AB_THREADS},
    {"no-plots", no_argument, NULL, AB_NO_PLOTS},
    {"sk-balanced", no_argument, NULL, AB_SK_BALANCED},
    {"quiet", no_argument, NULL, AB_QUIET},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int parse_models(char *list, bool *use) {
  for (int v = 0; v < SG_GNN_VARIANT_COUNT; v++) use[v] = false;
  for (char *save, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int v = sg_gnn_variant_parse(tok);
    if (v < 0) {
      fprintf(stderr, "assoc ablation: unknown model '%s' (AttSKGS, SKGS, GS, SMA)\n", tok);
      return -1;
    }
    use[v] = true;
  }
  return 0;
}

static int abl_option_int(abl_args *a, int opt, const char *v) {
  const char *c = "ablation";
  sg_train_config *t = &a->train;
  int k;
  switch (opt) {
  case AB_EPOCHS:
    return assoc_parse_int(c, "epochs", v, 1, 1000000, &t->epochs);
  case AB_BPE:
    return assoc_parse_i64(c, "batches-per-epoch", v, 1, 1 << 30, &t->batches_per_epoch);
  case AB_BATCH:
    return assoc_parse_i64(c, "batch", v, 1, 1 << 20, &t->batch);
  case AB_D:
    return assoc_parse_int(c, "d", v, 1, 1 << 16, &t->d);
  case AB_H:
    return assoc_parse_int(c, "h", v, 1, 1 << 16, &t->h);
  case AB_LAYERS:
    return assoc_parse_int(c, "layers", v, 1, 64, &t->L);
  case AB_T_MULT:
    return assoc_parse_int(c, "t-mult", v, 1, 64, &t->t_mult);
  case AB_T_MU:
    return assoc_parse_int(c, "t-mu", v, 1, 1000000, &t->t_mu);
  case AB_TRAIN_S:
    return assoc_parse_i64(c, "train-samples", v, 1, 100000000, &a->train_samples);
  case AB_VAL_S:
    return assoc_parse_i64(c, "val-samples", v, 1, 100000000, &a->val_samples);
  case AB_TEST_S:
    return assoc_parse_i64(c, "test-samples", v, ONEHOT_SAMPLES, 100000000, &a->test_samples);
  case AB_CURVE_S:
    return assoc_parse_i64(c, "curve-samples", v, 1, 100000000, &a->curve_samples);
  case AB_K_MAX:
    if (assoc_parse_int(c, "k-max", v, a->k_min, 16, &k)) return -1;
    return a->k_max = k, 0;
  case AB_SEED:
    return assoc_parse_u64(c, "seed", v, (UINT64_C(1) << 62), &a->seed);
  case AB_THREADS:
    return assoc_parse_int(c, "threads", v, 1, 4096, &a->threads);
  default:
    return 1; /* not an integer option */
  }
}

static int abl_option(abl_args *a, int opt, char *v) {
  const char *c = "ablation";
  sg_train_config *t = &a->train;
  int rc = abl_option_int(a, opt, v);
  if (rc <= 0) return rc;
  switch (opt) {
  case AB_OUT:
    return a->out = v, 0;
  case AB_MODELS:
    return parse_models(v, a->use);
  case AB_LR_MAX:
    return assoc_parse_double(c, "lr-max", v, 0, 10, &t->lr_max);
  case AB_LR_MIN:
    return assoc_parse_double(c, "lr-min", v, 0, 10, &t->lr_min);
  case AB_T0:
    return assoc_parse_double(c, "t0", v, 1e-3, 1e9, &t->t0);
  case AB_DELTA:
    return assoc_parse_double(c, "delta", v, 0, 1e6, &t->delta);
  case AB_TAU:
    return assoc_parse_double(c, "tau", v, 1e-3, 1e3, &t->tau);
  case AB_NO_PLOTS:
    return a->no_plots = true, 0;
  case AB_SK_BALANCED:
    return a->train.sk_balanced = 1, 0;
  case AB_QUIET:
    return a->quiet = true, 0;
  case 'h':
    return a->help = true, 0;
  default:
    return -1;
  }
}

static int abl_parse(int argc, char **argv, abl_args *a) {
  *a = (abl_args){.out = "ablation-out", .seed = 1};
  for (int v = 0; v < SG_GNN_VARIANT_COUNT; v++) a->use[v] = true;
  /* --quick sets the defaults that later options then override. */
  for (int i = 1; i < argc; i++) a->quick |= !strcmp(argv[i], "--quick");
  set_defaults(a, a->quick);
  optind = 1, opterr = 0;
  for (int opt; (opt = getopt_long(argc, argv, "h", abl_options, NULL)) != -1;) {
    if (opt == '?') return assoc_bad_option("ablation", argv);
    if (opt != AB_QUICK && abl_option(a, opt, optarg)) return -1;
  }
  if (optind != argc) {
    fprintf(stderr, "assoc ablation: unexpected argument '%s' (see --help)\n", argv[optind]);
    return -1;
  }
  a->train.seed = a->seed;
  a->train.threads = a->threads;
  char msg[256];
  if (sg_train_config_check(&a->train, msg, sizeof msg)) {
    fprintf(stderr, "assoc ablation: %s\n", msg);
    return -1;
  }
  return 0;
}

/* ---- state of a run ------------------------------------------------------------------- */

typedef struct model_run {
  sg_gnn_variant variant;
  char key[32]; /* file stem, e.g. "attskgs-gnn" */
  char ckpt[1024], log[1024];
  sg_gnn *model; /* loaded back from the checkpoint */
  double feature_scale;
  double train_seconds, wall_seconds;
  int epochs;
  sg_eval_metrics test;
  double onehot[ONEHOT_SAMPLES][SG_MAX_UES]; /* row argmax of A~ of the first test samples */
} model_run;

typedef struct curve_data {
  int points, methods;
  double x[MAX_CURVE_POINTS];
  const char *names[16];
  double *lb, *nv; /* methods x points */
} curve_data;

typedef struct abl_run {
  const abl_args *a;
  sg_dataset train, val, test;
  model_run models[SG_GNN_VARIANT_COUNT];
  int n_models;
  sg_eval_metrics base[SG_METHOD_COUNT];
  bool base_done[SG_METHOD_COUNT];
  int *es_assoc; /* test set, S x K */
  double *es_rate;
  curve_data curve;
  double seconds_total;
} abl_run;

static void note(const abl_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const abl_args *a, const char *fmt, ...) {
  if (a->quiet) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fflush(stderr);
}

static void path_in(char *buf, size_t len, const char *dir, const char *name) {
  snprintf(buf, len, "%s/%s", dir, name);
}

static int make_dir(const char *dir) {
  if (mkdir(dir, 0777) == 0 || errno == EEXIST) {
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
  }
  fprintf(stderr, "assoc ablation: cannot create the directory %s: %s\n", dir,
          errno ? strerror(errno) : "not a directory");
  return -1;
}

static int generate(const abl_args *a, int K, int64_t S, uint64_t seed, sg_dataset *ds) {
  sg_scenario sc = sg_scenario_default();
  sc.K = K, sc.seed = seed;
  char msg[256];
  if (sg_generate(&sc, S, ds, msg, sizeof msg)) {
    fprintf(stderr, "assoc ablation: generating data: %s\n", msg);
    return -1;
  }
  (void)a;
  return 0;
}

/* Training, validation (per-epoch metrics) and test sets: independent seeds. */
static int make_data(abl_run *r) {
  const abl_args *a = r->a;
  if (generate(a, 8, a->train_samples, a->seed, &r->train) ||
      generate(a, 8, a->val_samples, a->seed + 1, &r->val) ||
      generate(a, 8, a->test_samples, a->seed + 2, &r->test))
    return -1;
  char path[1024];
  sg_io_error err;
  path_in(path, sizeof path, a->out, "test.npz");
  if (sg_dataset_save(&r->test, path, &err)) {
    fprintf(stderr, "assoc ablation: %s\n", err.msg);
    return -1;
  }
  return 0;
}

/* ---- training ----------------------------------------------------------------------- */

typedef struct epoch_ctx {
  const abl_args *a;
  const char *name;
  int every;
} epoch_ctx;

static void on_epoch(void *user, const sg_epoch_stats *st) {
  epoch_ctx *c = user;
  if (st->epoch % c->every && st->epoch != c->a->train.epochs) return;
  note(c->a,
       "  %-12s epoch %4d/%d  loss %8.4f  train rate %6.3f  violations %5.1f%%  "
       "val LB rate %6.3f  val violations %5.1f%%  mu %.3f  (%.1f s)\n",
       c->name, st->epoch, c->a->train.epochs, st->loss, st->train_rate, 100 * st->violation_ratio,
       st->has_test ? st->test.mean_lb_rate : NAN,
       st->has_test ? 100 * st->test.violation_ratio : NAN, st->mu[0], st->seconds);
}

static void model_key(sg_gnn_variant v, char *key, size_t len) {
  snprintf(key, len, "%s", sg_gnn_variant_name(v));
  for (char *p = key; *p; p++)
    if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
}

static int train_one(abl_run *r, model_run *mr) {
  const abl_args *a = r->a;
  sg_train_config c = a->train;
  c.variant = mr->variant;
  epoch_ctx ctx = {a, sg_gnn_variant_name(mr->variant), c.epochs >= 10 ? c.epochs / 10 : 1};
  sg_train_io io = {.out = mr->ckpt, .checkpoint_every = c.epochs, .log = mr->log};
  io.epoch_fn = on_epoch, io.user = &ctx;
  sg_train_result res;
  sg_io_error err;
  double t0 = omp_get_wtime();
  note(a, "training %s (%d epochs of %lld mini-batches of %lld)\n", ctx.name, c.epochs,
       (long long)c.batches_per_epoch, (long long)c.batch);
  if (sg_train_run(&c, &r->train, &r->val, &io, &res, &err)) {
    fprintf(stderr, "assoc ablation: training %s: %s\n", ctx.name, err.msg);
    return -1;
  }
  mr->wall_seconds = omp_get_wtime() - t0;
  mr->train_seconds = res.seconds;
  mr->epochs = res.epochs_done;
  /* Evaluate what was written: the checkpoint, through the loader. */
  mr->model = sg_checkpoint_load_model(mr->ckpt, &mr->feature_scale, NULL, &err);
  if (!mr->model) {
    fprintf(stderr, "assoc ablation: %s\n", err.msg);
    return -1;
  }
  return 0;
}

static int train_all(abl_run *r) {
  for (int v = 0; v < SG_GNN_VARIANT_COUNT; v++) {
    if (!r->a->use[v]) continue;
    model_run *mr = &r->models[r->n_models++];
    mr->variant = (sg_gnn_variant)v;
    model_key(mr->variant, mr->key, sizeof mr->key);
    char name[64];
    snprintf(name, sizeof name, "%s.npz", mr->key);
    path_in(mr->ckpt, sizeof mr->ckpt, r->a->out, name);
    snprintf(name, sizeof name, "train_%s.csv", mr->key);
    path_in(mr->log, sizeof mr->log, r->a->out, name);
    if (train_one(r, mr)) return -1;
  }
  return 0;
}

/* ---- evaluation on the test set -------------------------------------------------------- */

static int run_baselines(abl_run *r) {
  sg_dataset *ds = &r->test;
  size_t SK = (size_t)ds->S * ds->K;
  int *assoc = malloc(SK * sizeof *assoc);
  double *rate = malloc((size_t)ds->S * sizeof *rate);
  r->es_assoc = malloc(SK * sizeof *r->es_assoc);
  r->es_rate = malloc((size_t)ds->S * sizeof *r->es_rate);
  if (!assoc || !rate || !r->es_assoc || !r->es_rate) return free(assoc), free(rate), -1;
  sg_baseline_opts o = sg_baseline_defaults();
  o.seed = ds->seed;
  char msg[256];
  int rc = 0;
  for (int m = 0; m < SG_METHOD_COUNT && !rc; m++) { /* ES first: the reference */
    double ms;
    int *dst = m == SG_ES ? r->es_assoc : assoc;
    double *rdst = m == SG_ES ? r->es_rate : rate;
    rc = sg_run_method(ds, (sg_method)m, &o, dst, rdst, &ms, NULL, NULL, msg, sizeof msg);
    if (!rc) rc = sg_eval_baseline_metrics(ds, dst, r->es_rate, ms, &r->base[m]);
    r->base_done[m] = rc == 0;
  }
  if (rc) fprintf(stderr, "assoc ablation: baselines: %s\n", msg);
  free(assoc), free(rate);
  return rc;
}

static int evaluate_models(abl_run *r) {
  sg_dataset *ds = &r->test;
  double *A = malloc((size_t)ds->S * ds->K * ds->M * sizeof *A);
  if (!A) return -1;
  char msg[512];
  for (int i = 0; i < r->n_models; i++) {
    model_run *mr = &r->models[i];
    sg_eval_opts o = sg_eval_defaults(mr->feature_scale);
    if (sg_eval_model(mr->model, ds, &o, r->es_rate, &mr->test, A, msg, sizeof msg)) {
      fprintf(stderr, "assoc ablation: evaluating %s: %s\n", mr->key, msg);
      free(A);
      return -1;
    }
    for (int s = 0; s < ONEHOT_SAMPLES; s++)
      for (int k = 0; k < ds->K; k++) {
        const double *row = A + ((size_t)s * ds->K + k) * ds->M;
        int best = 0;
        for (int m = 1; m < ds->M; m++)
          if (row[m] > row[best]) best = m;
        mr->onehot[s][k] = best;
      }
  }
  free(A);
  return 0;
}

/* ---- generalisation to other K (Fig. 4a) ---------------------------------------------- */

static const sg_method curve_baselines[] = {SG_ES, SG_LOCALSEARCH, SG_MAXSINR, SG_DA, SG_RANDINT};
enum { N_CURVE_BASELINES = sizeof curve_baselines / sizeof curve_baselines[0] };

/* Baseline rates of one curve point into column p. */
static int curve_point_baselines(abl_run *r, const sg_dataset *ds, int p, double *es_rate) {
  curve_data *c = &r->curve;
  size_t SK = (size_t)ds->S * ds->K;
  int *assoc = malloc(SK * sizeof *assoc);
  double *rate = malloc((size_t)ds->S * sizeof *rate);
  sg_baseline_opts o = sg_baseline_defaults();
  o.seed = ds->seed;
  char msg[256];
  int rc = assoc && rate ? 0 : -1;
  for (int i = 0; i < N_CURVE_BASELINES && !rc; i++) {
    sg_method m = curve_baselines[i];
    sg_eval_metrics x;
    rc = sg_run_method(ds, m, &o, assoc, m == SG_ES ? es_rate : rate, NULL, NULL, NULL, msg,
                       sizeof msg);
    if (!rc) rc = sg_eval_baseline_metrics(ds, assoc, es_rate, 0, &x);
    if (!rc) c->lb[i * c->points + p] = c->nv[i * c->points + p] = x.rate_lb;
  }
  if (rc) fprintf(stderr, "assoc ablation: curve baselines: %s\n", msg);
  free(assoc), free(rate);
  return rc;
}

static int curve_point(abl_run *r, int K, int p) {
  const abl_args *a = r->a;
  curve_data *c = &r->curve;
  sg_dataset ds;
  if (generate(a, K, a->curve_samples, a->seed + 100 + (uint64_t)K, &ds)) return -1;
  double *es = malloc((size_t)ds.S * sizeof *es);
  int rc = es ? curve_point_baselines(r, &ds, p, es) : -1;
  char msg[512];
  for (int i = 0; i < r->n_models && !rc; i++) {
    model_run *mr = &r->models[i];
    sg_eval_opts o = sg_eval_defaults(mr->feature_scale);
    o.latency_samples = 0;
    sg_eval_metrics x;
    rc = sg_eval_model(mr->model, &ds, &o, es, &x, NULL, msg, sizeof msg);
    if (rc) fprintf(stderr, "assoc ablation: %s at K = %d: %s\n", mr->key, K, msg);
    int row = N_CURVE_BASELINES + i;
    if (!rc)
      c->lb[row * c->points + p] = x.rate_lb, c->nv[row * c->points + p] = x.rate_no_violation;
  }
  free(es);
  sg_dataset_free(&ds);
  return rc;
}

static int run_curve(abl_run *r) {
  const abl_args *a = r->a;
  curve_data *c = &r->curve;
  c->points = 0;
  for (int K = a->k_min; K <= a->k_max && c->points < MAX_CURVE_POINTS; K += a->k_step)
    c->x[c->points++] = K;
  c->methods = N_CURVE_BASELINES + r->n_models;
  for (int i = 0; i < N_CURVE_BASELINES; i++) c->names[i] = sg_method_name(curve_baselines[i]);
  for (int i = 0; i < r->n_models; i++)
    c->names[N_CURVE_BASELINES + i] = sg_gnn_variant_name(r->models[i].variant);
  c->lb = calloc((size_t)c->methods * c->points, sizeof *c->lb);
  c->nv = calloc((size_t)c->methods * c->points, sizeof *c->nv);
  if (!c->lb || !c->nv) return -1;
  for (int p = 0; p < c->points; p++) {
    note(a, "sum-rate against K: K = %d\n", (int)c->x[p]);
    if (curve_point(r, (int)c->x[p], p)) return -1;
  }
  return 0;
}

/* ---- the table ------------------------------------------------------------------------ */

static void fmt_num(char *buf, size_t len, const char *fmt, double v) {
  if (isfinite(v))
    snprintf(buf, len, fmt, v);
  else
    snprintf(buf, len, "-");
}

static void fmt_params(char *buf, size_t len, double n) {
  if (!(n > 0))
    snprintf(buf, len, "-");
  else if (n >= 1e6)
    snprintf(buf, len, "%.2fM", n / 1e6);
  else
    snprintf(buf, len, "%.1fk", n / 1e3);
}

static void fmt_time(char *buf, size_t len, double seconds) {
  if (!isfinite(seconds))
    snprintf(buf, len, "-");
  else if (seconds < 120)
    snprintf(buf, len, "%.1f s", seconds);
  else
    snprintf(buf, len, "%.1f min", seconds / 60);
}

/* One table row: ours and the paper's (paper NULL for baselines). */
static void table_row(FILE *f, const char *name, const sg_eval_metrics *x, double train_s,
                      const sg_paper_row *paper) {
  char c[16][32];
  fmt_num(c[0], 32, "%.1f%%", 100 * x->violation_ratio);
  fmt_num(c[1], 32, "%.1f%%", paper ? 100 * paper->violation : NAN);
  fmt_num(c[2], 32, "%.3f", x->rate);
  fmt_num(c[3], 32, "%.2f", paper ? paper->rate : NAN);
  fmt_num(c[4], 32, "%.3f", x->rate_lb);
  fmt_num(c[5], 32, "%.2f", paper ? paper->rate_lb : NAN);
  fmt_num(c[6], 32, "%.3f", x->rate_no_violation);
  fmt_num(c[7], 32, "%.3f", x->ratio_to_es);
  fmt_num(c[8], 32, "%.3f", x->ratio_nv_to_es);
  fmt_num(c[9], 32, "%.1f", x->infer_us);
  fmt_num(c[10], 32, "%.0f", x->latency_us);
  fmt_params(c[11], 32, (double)x->params);
  fmt_params(c[12], 32, paper ? 1e6 * paper->params_m : NAN);
  fmt_time(c[13], 32, train_s);
  fmt_num(c[14], 32, "%.2f h", paper ? paper->train_hours : NAN);
  fprintf(f, "| %s |", name);
  for (int i = 0; i < 15; i++) fprintf(f, " %s |", c[i]);
  fputc('\n', f);
}

static int write_table(FILE *f, void *user) {
  const abl_run *r = user;
  fprintf(f, "| method | violations | paper | sum-rate (with violations) | paper | "
             "load-balanced sum-rate | paper | no-violation rounding | LB / ES | NV / ES | "
             "us / sample (batched) | latency us | params | paper | training | paper (A100) |\n");
  fprintf(f, "|---|");
  for (int i = 0; i < 15; i++) fprintf(f, "---:|");
  fputc('\n', f);
  for (int i = 0; i < r->n_models; i++) {
    const model_run *mr = &r->models[i];
    sg_paper_row p = sg_paper_table1(mr->variant);
    table_row(f, sg_gnn_variant_name(mr->variant), &mr->test, mr->train_seconds, &p);
  }
  for (int m = 0; m < SG_METHOD_COUNT; m++)
    if (r->base_done[m]) table_row(f, sg_method_name(m), &r->base[m], NAN, NULL);
  return ferror(f) ? -1 : 0;
}

/* ---- JSON, CSV and plot data ------------------------------------------------------------ */

static int write_config_json(FILE *f, const abl_run *r, const char *plots) {
  const abl_args *a = r->a;
  const sg_train_config *c = &a->train;
  fprintf(f, "{\"M\": 2, \"N\": 4, \"K\": 8, \"pt_dbm\": 30, \"quick\": %s, ",
          a->quick ? "true" : "false");
  fprintf(f, "\"d\": %d, \"h\": %d, \"L\": %d, \"tau\": %g, \"sk_iters\": %d, ", c->d, c->h, c->L,
          c->tau, c->sk_iters);
  fprintf(f, "\"sk_balanced\": %s, ", c->sk_balanced ? "true" : "false");
  fprintf(f, "\"batch\": %lld, \"batches_per_epoch\": %lld, \"epochs\": %d, ", (long long)c->batch,
          (long long)c->batches_per_epoch, c->epochs);
  fprintf(f, "\"lr_min\": %g, \"lr_max\": %g, \"t0\": %g, \"t_mult\": %d, \"t_mu\": %d, ",
          c->lr_min, c->lr_max, c->t0, c->t_mult, c->t_mu);
  fprintf(f, "\"delta\": %g, \"train_samples\": %lld, \"val_samples\": %lld, ", c->delta,
          (long long)a->train_samples, (long long)a->val_samples);
  fprintf(f, "\"test_samples\": %lld, \"curve_samples\": %lld, \"seed\": %llu, ",
          (long long)a->test_samples, (long long)a->curve_samples, (unsigned long long)a->seed);
  fprintf(f, "\"threads\": %d, \"seconds_total\": %.1f, \"plots\": ", omp_get_max_threads(),
          r->seconds_total);
  sg_json_string(f, plots);
  fputc('}', f);
  return ferror(f) ? -1 : 0;
}

static int write_json(abl_run *r, const char *plots) {
  sg_ablation_entry e[SG_GNN_VARIANT_COUNT + SG_METHOD_COUNT];
  int n = 0;
  for (int i = 0; i < r->n_models; i++) {
    model_run *mr = &r->models[i];
    e[n++] = (sg_ablation_entry){sg_gnn_variant_name(mr->variant), "model", mr->test,
                                 mr->train_seconds, mr->epochs};
  }
  for (int m = 0; m < SG_METHOD_COUNT; m++)
    if (r->base_done[m])
      e[n++] = (sg_ablation_entry){sg_method_name(m), "baseline", r->base[m], NAN, 0};
  char *config = NULL;
  size_t config_len = 0;
  FILE *mem = open_memstream(&config, &config_len);
  if (!mem) return -1;
  write_config_json(mem, r, plots);
  fclose(mem);
  const curve_data *c = &r->curve;
  sg_ablation_curve curve = {"K", c->points, c->methods, c->x, c->names, c->lb, c->nv};
  sg_ablation_report rep = {config, e, n, &curve, 1};
  char path[1024];
  sg_io_error err;
  path_in(path, sizeof path, r->a->out, "ablation.json");
  int rc = sg_ablation_write_json(path, &rep, &err);
  if (rc) fprintf(stderr, "assoc ablation: %s\n", err.msg);
  free(config);
  return rc;
}

static int write_curve_csv(FILE *f, void *user) {
  const curve_data *c = user;
  fprintf(f, "K");
  for (int i = 0; i < c->methods; i++) fprintf(f, ",%s", c->names[i]);
  for (int i = 0; i < c->methods; i++) fprintf(f, ",%s no-violation", c->names[i]);
  fputc('\n', f);
  for (int p = 0; p < c->points; p++) {
    fprintf(f, "%g", c->x[p]);
    for (int i = 0; i < c->methods; i++) fprintf(f, ",%.6f", c->lb[i * c->points + p]);
    for (int i = 0; i < c->methods; i++) fprintf(f, ",%.6f", c->nv[i * c->points + p]);
    fputc('\n', f);
  }
  return ferror(f) ? -1 : 0;
}

/* One M x K 0/1 matrix per (method, sample), models first, then ES; blocks
 * separated by two blank lines (gnuplot `index`). */
static int write_onehot(FILE *f, void *user) {
  const abl_run *r = user;
  int M = r->test.M, K = r->test.K;
  for (int i = 0; i <= r->n_models; i++)
    for (int s = 0; s < ONEHOT_SAMPLES; s++) {
      fprintf(f, "# %s, test sample %d (rows: BSs, columns: UEs)\n",
              i < r->n_models ? sg_gnn_variant_name(r->models[i].variant) : "ES", s);
      for (int m = 0; m < M; m++) {
        for (int k = 0; k < K; k++) {
          int bs = i < r->n_models ? (int)r->models[i].onehot[s][k] : r->es_assoc[s * K + k];
          fprintf(f, "%s%d", k ? " " : "", bs == m);
        }
        fputc('\n', f);
      }
      fputs("\n\n", f);
    }
  return ferror(f) ? -1 : 0;
}

static int write_in_dir(const abl_run *r, const char *name, int (*fn)(FILE *, void *), void *user) {
  char path[1024];
  sg_io_error err;
  path_in(path, sizeof path, r->a->out, name);
  if (sg_write_atomic(path, fn, user, &err)) {
    fprintf(stderr, "assoc ablation: %s\n", err.msg);
    return -1;
  }
  return 0;
}

/* ---- plots (gnuplot) --------------------------------------------------------------------- */

typedef struct plot_ctx {
  const abl_run *r;
  const char *terminal; /* "pngcairo" or "png" */
} plot_ctx;

static void plot_training(FILE *f, const abl_run *r, const char *column, const char *dashed) {
  fputs("plot ", f);
  for (int i = 0; i < r->n_models; i++) {
    const model_run *mr = &r->models[i];
    fprintf(f, "%s'train_%s.csv' using \"epoch\":\"%s\" with lines lw 2 lc %d title '%s'",
            i ? ", \\\n     " : "", mr->key, column, i + 1, sg_gnn_variant_name(mr->variant));
    if (dashed)
      fprintf(f, ", \\\n     '' using \"epoch\":\"%s\" with lines lw 1 dt 2 lc %d notitle", dashed,
              i + 1);
  }
  fputc('\n', f);
}

static void plot_onehot(FILE *f, const abl_run *r) {
  int rows = r->n_models + 1, M = r->test.M, K = r->test.K;
  fprintf(f, "\n# Fig. 3b: one-hot associations (black = 1)\n");
  fprintf(f, "set output 'fig3b_onehot.png'\n");
  fprintf(f, "set datafile separator whitespace\n");
  fprintf(f, "set size 1,1\nunset grid\nunset key\nunset colorbox\nunset xlabel\nunset ylabel\n");
  fprintf(f, "set palette defined (0 'white', 1 'black')\nset cbrange [0:1]\n");
  fprintf(f,
          "set xrange [-0.5:%g]\nset yrange [%g:-0.5]\nset xtics 1 font ',7'\nset ytics 1 "
          "font ',7'\n",
          K - 0.5, M - 0.5);
  fprintf(f,
          "set multiplot layout %d,%d title 'One-hot associations of the first %d test "
          "samples (rows: BS, columns: UE; black = 1)'\n",
          rows, ONEHOT_SAMPLES, ONEHOT_SAMPLES);
  for (int i = 0; i < rows; i++)
    for (int s = 0; s < ONEHOT_SAMPLES; s++) {
      const char *name = i < r->n_models ? sg_gnn_variant_name(r->models[i].variant) : "ES";
      fprintf(f, "set title '%s, sample %d' font ',9'\n", name, s);
      fprintf(f, "plot 'onehot.dat' index %d matrix with image pixels\n", i * ONEHOT_SAMPLES + s);
    }
  fprintf(f, "unset multiplot\nset datafile separator comma\nset autoscale\nset xtics autofreq "
             "font ''\nset ytics autofreq "
             "font ''\nset key\nset grid\n");
}

static void plot_curve(FILE *f, const abl_run *r) {
  const curve_data *c = &r->curve;
  fprintf(f, "\n# Fig. 4a: sum-rate against the number of UEs (trained on K = 8)\n");
  fprintf(f, "set output 'fig4a_rate_vs_k.png'\nset key outside right\n");
  fprintf(f,
          "set title 'Load-balanced sum-rate against K (M 2, N 4; models trained on K 8, "
          "%lld samples per point)'\n",
          (long long)r->a->curve_samples);
  fprintf(f, "set xlabel 'number of UEs K'\nset ylabel 'sum-rate (bps/Hz)'\nset xtics 1\n");
  const char *base_style[N_CURVE_BASELINES] = {
      "lc rgb 'black' lw 2 pt 7", "lc rgb 'gray40' lw 1 pt 6 dt 2",
      "lc rgb 'dark-orange' lw 1 pt 5 dt 3", "lc rgb 'dark-green' lw 1 pt 9 dt 4",
      "lc rgb 'gray60' lw 1 pt 2 dt 5"};
  fputs("plot ", f);
  for (int i = 0; i < c->methods; i++) {
    bool model = i >= N_CURVE_BASELINES;
    char style[64];
    if (model) snprintf(style, sizeof style, "lc %d lw 2 pt %d", i - N_CURVE_BASELINES + 1, 7);
    const char *label = i == 2 ? "MaxSINR (overloads dropped)" : c->names[i];
    fprintf(f, "%s'curve_k.csv' using 1:%d with linespoints %s title '%s%s'",
            i ? ", \\\n     " : "", i + 2, model ? style : base_style[i], label,
            model ? " (LB)" : "");
    if (model)
      fprintf(f,
              ", \\\n     '' using 1:%d with linespoints lc %d lw 1 dt 2 pt 6 title '%s "
              "(no-violation rounding)'",
              c->methods + i + 2, i - N_CURVE_BASELINES + 1, c->names[i]);
  }
  fprintf(f, "\nset xtics autofreq\nset key default\n");
}

static int write_plots_gp(FILE *f, void *user) {
  const plot_ctx *p = user;
  const abl_run *r = p->r;
  fprintf(f, "# Written by 'assoc ablation'; re-run with: cd <this directory> && gnuplot "
             "plots.gp\n");
  fprintf(f, "set terminal %s size 1000,600%s\n", p->terminal,
          strcmp(p->terminal, "pngcairo") ? "" : " font ',11'");
  fprintf(f, "set datafile separator comma\nset grid\nset key top right\n");
  fprintf(f, "\n# Fig. 3a: violation ratio against epoch\nset output 'fig3a_violation.png'\n");
  fprintf(f, "set title 'Load violation ratio of the one-hot association against epoch "
             "(solid: training batches, dashed: validation set)'\n");
  fprintf(f, "set xlabel 'epoch'\nset ylabel 'violation ratio'\nset yrange [0:1]\n");
  fprintf(f, "set key right center\n");
  plot_training(f, r, "violation_ratio", "test_violation_ratio");
  fprintf(f, "\n# Fig. 2b: regularised loss (left) and rates (right) against epoch\n");
  fprintf(f, "set output 'fig2b_loss.png'\nset multiplot layout 1,2\nset key bottom right\n");
  fprintf(f, "set title 'Regularised loss (eq. 3), training batches'\n");
  fprintf(f, "set ylabel 'loss = -R(soft A) + sum_m mu_m ReLU(load_m - (N - delta))'\nset "
             "autoscale y\n");
  plot_training(f, r, "loss", NULL);
  fprintf(f, "set title 'R(soft A), training batches (solid); validation LB rate (dashed)'\n");
  fprintf(f, "set ylabel 'sum-rate (bps/Hz)'\n");
  plot_training(f, r, "train_rate", "test_lb_rate");
  fprintf(f, "unset multiplot\nset key top right\n");
  plot_onehot(f, r);
  plot_curve(f, r);
  return ferror(f) ? -1 : 0;
}

/* Runs gnuplot with args in dir; returns its exit status, 127 when it
 * could not be started. Its output goes to our stderr. */
static int run_gnuplot(const char *dir, const char *arg1, const char *arg2) {
  fflush(stdout), fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return 127;
  if (pid == 0) {
    if (dir && chdir(dir)) _exit(126);
    if (!arg2) { /* a probe: keep it quiet */
      FILE *null = freopen("/dev/null", "w", stderr);
      (void)null;
    }
    execlp("gnuplot", "gnuplot", arg1, arg2, (char *)NULL);
    _exit(127);
  }
  int status;
  if (waitpid(pid, &status, 0) < 0) return 127;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* Writes plots.gp and runs it. Returns a status for the JSON: "written",
 * "skipped: ..." (with a note on stderr). */
static const char *make_plots(const abl_run *r) {
  if (r->a->no_plots) return "not requested (--no-plots)";
  const char *terminal = "pngcairo";
  if (run_gnuplot(NULL, "-e", "set terminal pngcairo") != 0) terminal = "png";
  if (run_gnuplot(NULL, "-e", "set terminal png") != 0 && !strcmp(terminal, "png")) {
    fprintf(stderr,
            "assoc ablation: NOTE: gnuplot (with a png or pngcairo terminal) is not "
            "available: plots SKIPPED. Install Debian's gnuplot-nox and re-run "
            "'gnuplot plots.gp' in %s.\n",
            r->a->out);
    plot_ctx p = {r, "pngcairo"};
    write_in_dir(r, "plots.gp", write_plots_gp, &p);
    return "skipped: gnuplot not found";
  }
  plot_ctx p = {r, terminal};
  if (write_in_dir(r, "plots.gp", write_plots_gp, &p)) return "skipped: cannot write plots.gp";
  int rc = run_gnuplot(r->a->out, "plots.gp", NULL);
  if (rc) {
    fprintf(stderr,
            "assoc ablation: NOTE: gnuplot failed (exit status %d) on %s/plots.gp: plots "
            "SKIPPED\n",
            rc, r->a->out);
    return "skipped: gnuplot failed";
  }
  return "written";
}

/* ---- the command ---------------------------------------------------------------------- */

static void free_run(abl_run *r) {
  for (int i = 0; i < r->n_models; i++) sg_gnn_free(r->models[i].model);
  sg_dataset_free(&r->train), sg_dataset_free(&r->val), sg_dataset_free(&r->test);
  free(r->es_assoc), free(r->es_rate), free(r->curve.lb), free(r->curve.nv);
}

static void print_header(const abl_args *a) {
  const sg_train_config *c = &a->train;
  printf("ablation (%s): M 2, N 4, K 8, 30 dBm; d %d, h %d, L %d, tau %g, T %d%s; %d epochs x %lld "
         "mini-batches of %lld; lr %g..%g, T0 %g, T_mult %d, T_mu %d, delta %g; samples: train "
         "%lld, val %lld, test %lld; seed %llu; %d threads\n\n",
         a->quick ? "--quick" : "default", c->d, c->h, c->L, c->tau, c->sk_iters,
         c->sk_balanced ? " (balanced)" : "", c->epochs, (long long)c->batches_per_epoch,
         (long long)c->batch, c->lr_min, c->lr_max, c->t0, c->t_mult, c->t_mu, c->delta,
         (long long)a->train_samples, (long long)a->val_samples, (long long)a->test_samples,
         (unsigned long long)a->seed, omp_get_max_threads());
}

static void warn_if_loaded(const abl_args *a) {
  double load[1];
  int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
  const char *wait = getenv("OMP_WAIT_POLICY");
  if (getloadavg(load, 1) == 1 && load[0] > cores && omp_get_max_threads() > 1 &&
      !(wait && !strcasecmp(wait, "passive")))
    note(a,
         "assoc ablation: note: load average %.1f on %d cores: other processes share the "
         "cores, so the times reported here will be much longer than on an idle machine\n",
         load[0], cores);
}

static int run_ablation(abl_run *r) {
  const abl_args *a = r->a;
  double t0 = omp_get_wtime();
  if (make_dir(a->out) || make_data(r) || train_all(r)) return -1;
  note(a, "evaluating on %lld test samples\n", (long long)r->test.S);
  if (run_baselines(r) || evaluate_models(r) || run_curve(r)) return -1;
  if (write_in_dir(r, "table.md", write_table, r) ||
      write_in_dir(r, "curve_k.csv", write_curve_csv, &r->curve) ||
      write_in_dir(r, "onehot.dat", write_onehot, r))
    return -1;
  const char *plots = make_plots(r);
  r->seconds_total = omp_get_wtime() - t0;
  if (write_json(r, plots)) return -1;
  print_header(a);
  write_table(stdout, r);
  printf("\nviolations: one-hot (row argmax) overloads some BS; LB: overloaded BSs keep the N UEs "
         "of largest a~ (baselines: strongest links); no-violation rounding: max-weight "
         "assignment on log A~; paper columns: Table 1 (MRT rows; A100 times). Total %.1f min. "
         "Results in %s/ (plots: %s).\n",
         r->seconds_total / 60, a->out, plots);
  return strncmp(plots, "skipped", 7) ? 0 : ABLATION_EXIT_NO_PLOTS;
}

int assoc_cmd_ablation(int argc, char **argv) {
  abl_args a;
  if (abl_parse(argc, argv, &a)) return ASSOC_EXIT_USAGE;
  if (a.help) return fputs(ablation_help, stdout), ASSOC_EXIT_OK;
  if (a.threads) assoc_set_threads(a.threads);
  warn_if_loaded(&a);
  abl_run r = {.a = &a};
  int rc = run_ablation(&r);
  free_run(&r);
  if (rc < 0) return ASSOC_EXIT_FAIL;
  return rc;
}
