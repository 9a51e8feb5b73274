/* An association model of one's own, trained and evaluated by the library.
 *
 * The model is none of the paper's four GNNs: a per-edge MLP scores each
 * link (BS m, UE k) from that link's features alone, and the library's
 * capacity Sinkhorn layer (with Gumbel noise while training, the head of
 * SKGS-GNN: assoc_gnn_post_process) turns the scores into the soft
 * association A~. The links compete only inside the Sinkhorn: no message
 * passing. It plugs into the library through assoc_model (assoc_gnn.h): a
 * parameter registry and a forward callback returning A~. The library's
 * training loop trains it with the paper's unsupervised loss (sum-rate
 * with the load penalty and the dual update of mu, Adam, cosine warm
 * restarts), and the library's evaluation rounds A~ (row argmax, load
 * balancing, no-violation rounding) and measures it. SKGS-GNN is trained
 * with the same data, schedule and budget through the same loop, and both
 * are printed beside ES and the Assign baseline.
 *
 * Only public headers are used; they are included by bare name, which
 * works in the source tree and installed (pkg-config gives
 * -I<includedir>/sinkgrad).
 *
 *   build/examples/custom_model                 # the small run (seconds)
 *   build/examples/custom_model --full --seeds 3 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assoc_eval.h"
#include "assoc_gnn.h"
#include "assoc_solvers.h"
#include "assoc_train.h"
#include "assoc_wireless.h"
#include "sg_nn.h"
#include "sinkgrad.h"

/* ---- the model --------------------------------------------------------------- */

typedef struct edge_model {
  sg_params *params;
  sg_mlp score;          /* Fe -> hidden -> hidden -> 1 on every link */
  assoc_gnn_config head; /* the Sinkhorn head's knobs (variant SKGS, tau, T, capacity) */
} edge_model;

/* A~ [B, K, M] of the batch: the MLP on H [B, M, K, Fe] (permuted to UE
 * rows), then Gumbel noise (train mode; assoc_model_gumbel draws the whole
 * mini-batch's, so the model also trains over MPI ranks), log-softmax and
 * the capacity Sinkhorn with the capacity of the call (the data set's N). */
static sg_tensor *edge_forward(void *ctx, sg_graph *g, const assoc_gnn_batch *in,
                               const assoc_model_call *call) {
  edge_model *e = ctx;
  int64_t B = in->H->shape[0], M = in->H->shape[1], K = in->H->shape[2];
  sg_tensor *links = sg_permute(g, in->H, (const int[]){0, 2, 1, 3}); /* [B, K, M, Fe] */
  sg_tensor *scores = sg_mlp_forward(g, &e->score, links);            /* [B, K, M, 1] */
  sg_tensor *logits = sg_reshape(g, scores, 3, (int64_t[]){B, K, M});
  e->head.capacity = call->capacity;
  sg_tensor *noise = assoc_model_gumbel(g, call, logits->dtype, B, K, M);
  return assoc_gnn_post_process(g, &e->head, logits, call->mode, call->rng, noise, call->sinkhorn);
}

static int edge_model_init(edge_model *e, int fe, int hidden, uint64_t seed) {
  sg_rng r;
  sg_rng_seed(&r, seed);
  e->params = sg_params_new(SG_F32);
  e->head = assoc_gnn_config_paper(ASSOC_GNN_SKGS); /* tau 1, T 10 */
  return e->params ? sg_mlp_init(&e->score, e->params, "score", fe, hidden, 1, &r) : -1;
}

static assoc_model edge_model_hook(edge_model *e, assoc_feature_kind features) {
  return (assoc_model){.name = "EdgeMLP-Sinkhorn",
                       .params = e->params,
                       .features = features,
                       .forward = edge_forward,
                       .ctx = e,
                       .splits_batches = true};
}

/* ---- options ----------------------------------------------------------------- */

typedef struct options {
  int seeds, threads, hidden;
  int64_t train_samples, test_samples;
  assoc_train_config train; /* the schedule both models get; d, h: SKGS-GNN's widths */
  assoc_feature_kind features;
  int verbose;
} options;

static void usage(FILE *f) {
  fprintf(f, "usage: custom_model [--full] [options]\n"
             "Trains an association model built outside the library (a per-edge MLP and the\n"
             "library's capacity Sinkhorn) and SKGS-GNN with the library's loop and budget, and\n"
             "prints their test metrics beside ES and Assign (M 2, N 4, K 8, 30 dBm).\n"
             "  --full               the larger run: 20000 training / 2000 test samples, 120\n"
             "                       epochs of 50 batches, widths 64/128 (default: 4000 / 1000,\n"
             "                       30 epochs of 20 batches, widths 32/64)\n"
             "  --seeds N            train each model N times, seeds 1..N, each on its own\n"
             "                       training set; mean +- sd (default 1)\n"
             "  --epochs E           epochs (the cosine periods scale with it)\n"
             "  --train S, --test S  sample counts\n"
             "  --hidden H           the edge MLP's hidden width\n"
             "  --gnn-d D, --gnn-h H SKGS-GNN's widths\n"
             "  --features KIND      channel (the paper's, default) or link\n"
             "  --threads T          OpenMP threads (default 1: these small models gain little)\n"
             "  --verbose            a line per epoch\n");
}

static void set_defaults(options *o, int full) {
  assoc_train_config *c = &o->train;
  *c = assoc_train_config_default(ASSOC_GNN_SKGS);
  c->d = full ? 64 : 32, c->h = full ? 128 : 64;
  o->hidden = c->h;
  c->batch = 64, c->batches_per_epoch = full ? 50 : 20, c->epochs = full ? 120 : 30;
  c->lr_min = 1e-6, c->lr_max = 1e-3, c->t_mult = 2;
  c->t0 = c->epochs / 3.0, c->t_mu = full ? 20 : 5; /* periods t0 + 2 t0: the whole run */
  c->eval_batch = 256;
  o->train_samples = full ? 20000 : 4000, o->test_samples = full ? 2000 : 1000;
  o->seeds = 1, o->threads = 1, o->features = ASSOC_FEATURES_CHANNEL;
}

static int parse_options(int argc, char **argv, options *o) {
  int full = 0;
  for (int i = 1; i < argc; i++) full |= !strcmp(argv[i], "--full");
  set_defaults(o, full);
  static const struct option opts[] = {{"full", no_argument, NULL, 'F'},
                                       {"seeds", required_argument, NULL, 's'},
                                       {"epochs", required_argument, NULL, 'e'},
                                       {"train", required_argument, NULL, 'n'},
                                       {"test", required_argument, NULL, 't'},
                                       {"hidden", required_argument, NULL, 'H'},
                                       {"gnn-d", required_argument, NULL, 'd'},
                                       {"gnn-h", required_argument, NULL, 'h'},
                                       {"features", required_argument, NULL, 'f'},
                                       {"threads", required_argument, NULL, 'T'},
                                       {"verbose", no_argument, NULL, 'v'},
                                       {"help", no_argument, NULL, '?'},
                                       {NULL, 0, NULL, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (ch) {
    case 'F':
      break;
    case 's':
      o->seeds = atoi(optarg);
      break;
    case 'e':
      o->train.epochs = atoi(optarg);
      o->train.t0 = o->train.epochs / 3.0;
      break;
    case 'n':
      o->train_samples = atoll(optarg);
      break;
    case 't':
      o->test_samples = atoll(optarg);
      break;
    case 'H':
      o->hidden = atoi(optarg);
      break;
    case 'd':
      o->train.d = atoi(optarg);
      break;
    case 'h':
      o->train.h = atoi(optarg);
      break;
    case 'f':
      o->features = (assoc_feature_kind)assoc_feature_kind_parse(optarg);
      break;
    case 'T':
      o->threads = atoi(optarg);
      break;
    case 'v':
      o->verbose = 1;
      break;
    default:
      usage(stderr);
      return -1;
    }
  }
  o->train.threads = o->threads;
  o->train.features = o->features;
  if (optind < argc || o->seeds < 1 || o->seeds > 32 || o->hidden < 1 || o->threads < 1 ||
      o->train.epochs < 1 || o->train_samples < o->train.batch || o->test_samples < 1 ||
      (int)o->features < 0 || o->features == ASSOC_FEATURES_LINK_NODES) {
    fprintf(stderr, "custom_model: bad arguments (see --help)\n");
    return -1;
  }
  o->train.t0 = o->train.t0 < 1 ? 1 : o->train.t0;
  return 0;
}

/* ---- training and evaluation -------------------------------------------------- */

static void print_epoch(void *user, const assoc_epoch_stats *st) {
  printf("  %-16s epoch %3d  loss %8.4f  train rate %6.3f  test rate %6.3f  violations %5.1f%%\n",
         (const char *)user, st->epoch, st->loss, st->train_rate, st->test.mean_rate,
         100 * st->test.violation_ratio);
}

/* Trains model (NULL: SKGS-GNN of o->train) through the library's loop and
 * evaluates the result on test: metrics into x, training time into
 * *seconds. 0, or -1 after printing the error. */
static int train_and_eval(const options *o, const assoc_model *model, uint64_t seed,
                          const assoc_dataset *train, const assoc_dataset *test,
                          const double *es_rate, assoc_eval_metrics *x, double *seconds) {
  assoc_train_config c = o->train;
  c.seed = seed;
  sg_io_error err = {{0}};
  assoc_trainer *t = model ? assoc_trainer_new_model(&c, model, train, test, &err)
                           : assoc_trainer_new(&c, train, test, &err);
  const char *name = model ? model->name : assoc_gnn_variant_name(c.variant);
  int rc = t ? 0 : -1;
  *seconds = 0;
  while (!rc && assoc_trainer_epoch(t) < c.epochs) {
    assoc_epoch_stats st;
    rc = assoc_trainer_run_epoch(t, &st, NULL, NULL, NULL, &err);
    if (!rc && o->verbose) print_epoch((void *)name, &st);
    *seconds += rc ? 0 : st.seconds;
  }
  if (!rc) {
    assoc_eval_opts eo = assoc_eval_defaults(assoc_trainer_feature_scale(t));
    rc = assoc_model_eval(assoc_trainer_net(t), test, &eo, es_rate, x, NULL, NULL, &err);
  }
  if (rc) fprintf(stderr, "custom_model: %s: %s\n", name, err.msg);
  assoc_trainer_free(t);
  return rc;
}

static int generate(int64_t S, uint64_t seed, assoc_dataset *ds) {
  assoc_scenario sc = assoc_scenario_default(); /* M 2, N 4, K 8, 30 dBm */
  sc.seed = seed;
  sg_io_error err = {{0}};
  if (!assoc_generate(&sc, S, ds, &err)) return 0;
  fprintf(stderr, "custom_model: %s\n", err.msg);
  return -1;
}

enum { METHOD_ES, METHOD_ASSIGN, METHOD_GNN, METHOD_CUSTOM, METHODS };

typedef struct results {
  assoc_eval_metrics runs[2][32]; /* [model][seed] */
  double train_s[2][32];
  assoc_eval_metrics baseline[2]; /* ES, Assign */
} results;

/* Both models on seeds 1..o->seeds, each seed with its own training set. */
static int train_models(const options *o, const assoc_dataset *test, const double *es_rate,
                        results *r) {
  for (int s = 0; s < o->seeds; s++) {
    assoc_dataset train;
    if (generate(o->train_samples, 1000 + (uint64_t)s, &train)) return -1;
    edge_model e;
    int fe = assoc_feature_width(o->features, train.N);
    int rc = edge_model_init(&e, fe, o->hidden, 1 + (uint64_t)s) ? -1 : 0;
    assoc_model net = edge_model_hook(&e, o->features);
    if (!rc)
      rc = train_and_eval(o, NULL, 1 + (uint64_t)s, &train, test, es_rate, &r->runs[0][s],
                          &r->train_s[0][s]);
    if (!rc)
      rc = train_and_eval(o, &net, 1 + (uint64_t)s, &train, test, es_rate, &r->runs[1][s],
                          &r->train_s[1][s]);
    sg_params_free(e.params);
    assoc_dataset_free(&train);
    if (rc) return -1;
  }
  return 0;
}

/* ES and Assign on the test set. */
static int run_baselines(const assoc_dataset *test, double *es_rate, results *r) {
  int *assoc = malloc((size_t)(test->S * test->K) * sizeof *assoc);
  double *rate = malloc((size_t)test->S * sizeof *rate), ms[2];
  assoc_baseline_opts bo = assoc_baseline_defaults();
  sg_io_error err = {{0}};
  const assoc_method methods[2] = {ASSOC_ES, ASSOC_ASSIGN};
  int rc = assoc && rate ? 0 : -1;
  for (int i = 0; i < 2 && !rc; i++) {
    rc = assoc_run_method(test, methods[i], &bo, assoc, i ? rate : es_rate, &ms[i], NULL, NULL,
                          &err);
    if (!rc) rc = assoc_eval_baseline_metrics(test, assoc, es_rate, ms[i], &r->baseline[i]);
  }
  if (rc) fprintf(stderr, "custom_model: baselines: %s\n", err.msg);
  free(assoc), free(rate);
  return rc;
}

/* ---- the table ----------------------------------------------------------------- */

/* "mean" or, over several seeds, "mean ± sd", both with fmt (a percentage
 * when unit is "%": scaled by 100). */
static void cell(double mean, double sd, int seeds, int decimals, const char *unit) {
  double scale = strcmp(unit, "%") ? 1 : 100;
  char buf[48];
  int n = snprintf(buf, sizeof buf, "%.*f%s", decimals, scale * mean, unit);
  if (seeds > 1 && n > 0)
    snprintf(buf + n, sizeof buf - (size_t)n, " ± %.*f%s", decimals, scale * sd, unit);
  printf(" %16s", buf);
}

static void print_row(const char *name, const assoc_eval_metrics *m, const assoc_eval_metrics *sd,
                      int seeds, double train_s) {
  char params[24] = "-";
  if (m->params > 0) snprintf(params, sizeof params, "%lld", (long long)m->params);
  printf("%-18s %8s", name, params);
  if (!sd) seeds = 1;
  cell(m->violation_ratio, sd ? sd->violation_ratio : 0, seeds, 1, "%");
  cell(m->rate, sd ? sd->rate : 0, seeds, 3, "");
  cell(m->rate_lb, sd ? sd->rate_lb : 0, seeds, 3, "");
  cell(m->rate_no_violation, sd ? sd->rate_no_violation : 0, seeds, 3, "");
  cell(m->ratio_nv_to_es, sd ? sd->ratio_nv_to_es : 0, seeds, 3, "");
  printf(" %9.1f", m->infer_us);
  if (isfinite(train_s))
    printf(" %9.1f\n", train_s);
  else
    printf(" %9s\n", "-");
}

static double mean_of(const double *x, int n) {
  double s = 0;
  for (int i = 0; i < n; i++) s += x[i];
  return s / n;
}

static void print_table(const options *o, const results *r, assoc_eval_metrics mean[2],
                        assoc_eval_metrics sd[2]) {
  printf("%-18s %8s %16s %16s %16s %16s %16s %9s %9s\n", "method", "params", "violations",
         "rate(viol)", "rate_lb", "rate_nv", "nv/es", "infer_us", "train_s");
  print_row("ES", &r->baseline[0], NULL, 1, NAN);
  print_row("Assign", &r->baseline[1], NULL, 1, NAN);
  const char *names[2] = {"SKGS-GNN", "EdgeMLP-Sinkhorn"};
  for (int i = 0; i < 2; i++) {
    assoc_eval_metrics_mean_sd(r->runs[i], o->seeds, &mean[i], &sd[i]);
    print_row(names[i], &mean[i], &sd[i], o->seeds, mean_of(r->train_s[i], o->seeds));
  }
}

/* The custom model against the others on the no-violation rounding (the
 * rate of an association that never overloads a BS), with the spread over
 * seeds: a difference within it is no win. */
static void print_verdict(const options *o, const results *r, const assoc_eval_metrics mean[2],
                          const assoc_eval_metrics sd[2]) {
  double custom = mean[1].rate_no_violation, es = r->baseline[0].rate_no_violation;
  printf("no-violation rounding: EdgeMLP-Sinkhorn %.3f bps/Hz (%.3f of ES); minus SKGS-GNN "
         "%+.3f, minus Assign %+.3f",
         custom, custom / es, custom - mean[0].rate_no_violation,
         custom - r->baseline[1].rate_no_violation);
  if (o->seeds > 1)
    printf(" (sd over seeds: EdgeMLP-Sinkhorn %.3f, SKGS-GNN %.3f)", sd[1].rate_no_violation,
           sd[0].rate_no_violation);
  printf("\n");
}

int main(int argc, char **argv) {
  options o = {0};
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help")) return usage(stdout), 0;
  if (parse_options(argc, argv, &o)) return 2;
  assoc_dataset test;
  if (generate(o.test_samples, 77, &test)) return 1;
  printf("custom_model: M %d, N %d, K %d, %.0f dBm; %lld training / %lld test samples; %d epochs "
         "of %lld batches of %lld; %s features; seeds 1..%d; %d threads\n",
         test.M, test.N, test.K, test.pt_dbm, (long long)o.train_samples, (long long)test.S,
         o.train.epochs, (long long)o.train.batches_per_epoch, (long long)o.train.batch,
         assoc_feature_kind_name(o.features), o.seeds, o.threads);
  results *r = calloc(1, sizeof *r);
  double *es_rate = malloc((size_t)test.S * sizeof *es_rate);
  int rc = r && es_rate ? 0 : 1;
  /* The models first: their trainer sets the thread count the baselines
   * then run with. ES rates are needed by the evaluation: solved first. */
  if (!rc) rc = assoc_eval_es_rates(&test, 1e7, es_rate, NULL) ? 1 : 0;
  if (!rc) rc = train_models(&o, &test, es_rate, r) ? 1 : 0;
  if (!rc) rc = run_baselines(&test, es_rate, r) ? 1 : 0;
  if (!rc) {
    assoc_eval_metrics mean[2], sd[2];
    print_table(&o, r, mean, sd);
    print_verdict(&o, r, mean, sd);
  }
  free(r), free(es_rate);
  assoc_dataset_free(&test);
  return rc;
}
