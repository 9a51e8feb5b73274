/* assoc eval CKPT DATA: the metrics of docs/models.md for a trained model on
 * any data set (other sizes and powers than the training ones included),
 * optionally with the associations behind them as .npz (--out). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval_jointgnn.h"
#include "assoc_eval.h"
#include "assoc_train.h"

static const char eval_help[] =
    "usage: assoc eval CHECKPOINT DATA [options]\n"
    "\n"
    "Evaluates a trained association GNN (a checkpoint of 'assoc train') on a\n"
    "data set of any M and K (same N), with the feature scale it was trained\n"
    "with: violation ratio of the one-hot (row argmax) association, sum-rate\n"
    "with violations, load-balanced sum-rate (overloaded BSs keep the N UEs of\n"
    "largest a~), the no-violation rounding (max-weight assignment on log A~),\n"
    "ratio to ES, inference time per sample and parameter count.\n"
    "\n"
    "On a JointGNN checkpoint (assoc train --model jointgnn) it runs the SM\n"
    "protocol instead (docs/models.md, \"JointGNN\"): violation ratio of the\n"
    "row argmax, the rate of the model's own beams re-normalised over the\n"
    "one-hot and over the load-balanced association (overloaded BSs keep the N\n"
    "UEs of largest a~), and the soft R(A~, V); --out writes SM_onehot_assoc,\n"
    "SM_lb_assoc (int32 S x K, -1 dropped) with their rates SM_onehot_rate,\n"
    "SM_lb_rate, SM_A and samples, so that 'assoc beams DATA FILE --assoc-key\n"
    "SM_lb --method bfgnn=CKPT' gives BFGNN's beams on SM's association. Only\n"
    "--json, --out, --batch, --limit and --threads apply there.\n"
    "\n"
    "  --json               print JSON instead of a table\n"
    "  --out FILE           also write the associations as .npz, in the schema of\n"
    "                       'assoc baselines --out' (docs/system.md). With KEY the\n"
    "                       model's key (AttSKGS_GNN, SKGS_GNN, GS_GNN, SMA_GNN):\n"
    "                       KEY_onehot_assoc (row argmax), KEY_lb_assoc (load-\n"
    "                       balanced) and KEY_nv_assoc (no-violation rounding),\n"
    "                       S x K int32 (BS per UE, -1 dropped), each with its\n"
    "                       sum-rates KEY_onehot_rate, ... (float64, S); KEY_A,\n"
    "                       the model's A~ (float64, S x K x M); ES_assoc and\n"
    "                       ES_rate unless ES is skipped; samples\n"
    "  --draws D            also the sampled decoding: per sample the best, by\n"
    "                       sum-rate, of the no-violation rounding and D - 1\n"
    "                       roundings of log A~ + Gumbel noise (default 1: off)\n"
    "  --draw-seed X        seed of that noise (default 1)\n"
    "  --batch B            samples per batch (default 256; wide models run it\n"
    "                       in smaller chunks to bound memory)\n"
    "  --limit S            use only the first S samples\n"
    "  --latency-samples n  single-sample forwards timed for the latency (default 32)\n"
    "  --no-es              skip ES (no ratio to ES)\n"
    "  --es-max-leaves X    skip ES above X feasible associations per sample (default 1e7)\n"
    "  --threads T          OpenMP threads (default: OMP_NUM_THREADS or all)\n"
    "  -h, --help           this help\n";

enum eval_option {
  EV_BATCH = 1000,
  EV_LIMIT,
  EV_LATENCY,
  EV_NO_ES,
  EV_ES_MAX,
  EV_DRAWS,
  EV_DRAW_SEED,
};

static const struct option eval_options[] = {
    ASSOC_OPTION_JSON,
    ASSOC_OPTION_OUT,
    {"batch", required_argument, NULL, EV_BATCH},
    {"limit", required_argument, NULL, EV_LIMIT},
    {"latency-samples", required_argument, NULL, EV_LATENCY},
    {"no-es", no_argument, NULL, EV_NO_ES},
    {"es-max-leaves", required_argument, NULL, EV_ES_MAX},
    ASSOC_OPTION_THREADS,
    {"draws", required_argument, NULL, EV_DRAWS},
    {"draw-seed", required_argument, NULL, EV_DRAW_SEED},
    ASSOC_OPTION_HELP,
    {NULL, 0, NULL, 0},
};

typedef struct eval_args {
  const char *ckpt, *data;
  bool no_es;
  int batch, latency, draws;
  assoc_common_args common; /* --json, --out, --threads, --help */
  uint64_t draw_seed;
  int64_t limit;
  double es_max;
} eval_args;

static int eval_option(void *args, int opt, char *v) {
  eval_args *a = args;
  const char *c = "eval";
  switch (opt) {
  case EV_BATCH:
    return assoc_parse_int(c, "batch", v, 1, 1 << 20, &a->batch);
  case EV_LIMIT:
    return assoc_parse_i64(c, "limit", v, 1, INT64_MAX, &a->limit);
  case EV_LATENCY:
    return assoc_parse_int(c, "latency-samples", v, 0, 100000, &a->latency);
  case EV_NO_ES:
    a->no_es = true;
    return 0;
  case EV_ES_MAX:
    return assoc_parse_double(c, "es-max-leaves", v, 1, 1e18, &a->es_max);
  case EV_DRAWS:
    return assoc_parse_int(c, "draws", v, 1, 1 << 20, &a->draws);
  case EV_DRAW_SEED:
    return assoc_parse_u64(c, "draw-seed", v, UINT64_MAX, &a->draw_seed);
  default:
    return assoc_common_option(c, opt, v, &a->common);
  }
}

static int eval_parse(int argc, char **argv, eval_args *a) {
  *a = (eval_args){.batch = 256, .latency = 32, .es_max = 1e7, .draws = 1, .draw_seed = 1};
  int first = assoc_parse_options("eval", argc, argv, eval_options, eval_option, a);
  if (first < 0) return -1;
  if (a->common.help) return 0;
  if (first + 2 != argc) {
    fprintf(stderr, "assoc eval: expected a checkpoint and a data set (see assoc eval --help)\n");
    return -1;
  }
  a->ckpt = argv[first], a->data = argv[first + 1];
  return 0;
}

static void print_table(const eval_args *a, const assoc_gnn *m, double scale,
                        const assoc_dataset *ds, const assoc_eval_metrics *x) {
  const assoc_gnn_config *c = &m->cfg;
  printf("model %s: %s, d %d, h %d, L %d, tau %g, T %d, %lld parameters, feature scale %.6g\n",
         a->ckpt, assoc_gnn_variant_name(c->variant), c->d, c->h, c->L, c->tau, c->sk_iters,
         (long long)x->params, scale);
  printf("data  %s: S=%lld M=%d N=%d K=%d, Pt %.1f dBm\n\n", a->data, (long long)ds->S, ds->M,
         ds->N, ds->K, ds->pt_dbm);
  printf("  violation ratio (one-hot)      %8.2f%%\n", 100.0 * x->violation_ratio);
  printf("  sum-rate with violations       %8.3f bps/Hz\n", x->rate);
  printf("  load-balanced sum-rate         %8.3f  (%.2f UEs dropped per sample)\n", x->rate_lb,
         x->mean_dropped);
  printf("  no-violation rounding          %8.3f  (max-weight assignment on log A~)\n",
         x->rate_no_violation);
  if (isfinite(x->es_rate))
    printf("  ES                             %8.3f  ratio to ES: LB %.3f, no-violation %.3f\n",
           x->es_rate, x->ratio_to_es, x->ratio_nv_to_es);
  else
    printf("  ES                                    -  (skipped)\n");
  if (x->draws > 1)
    printf("  sampled decoding, %4d draws    %8.3f  ratio to ES %.3f; %.1f us/sample, 1 thread\n",
           x->draws, x->rate_sampled, x->ratio_sampled_to_es, x->decode_us);
  printf("  inference                      %8.1f us/sample (batch %d, %d threads)\n", x->infer_us,
         x->batch, x->threads);
  printf("  single-sample latency          %8.1f us (median)\n", x->latency_us);
}

static void print_json(const eval_args *a, const assoc_gnn *m, double scale,
                       const assoc_eval_metrics *x) {
  const assoc_gnn_config *c = &m->cfg;
  printf("{");
  assoc_json_string(stdout, "checkpoint", a->ckpt, ", ");
  assoc_json_string(stdout, "data", a->data, ", ");
  assoc_json_string(stdout, "model", assoc_gnn_variant_name(c->variant), ", ");
  printf("\"d\": %d, \"h\": %d, \"L\": %d, ", c->d, c->h, c->L);
  assoc_json_number(stdout, "feature_scale", scale, ", ");
  printf("\"metrics\": ");
  assoc_eval_metrics_json(stdout, x);
  printf("}\n");
}

/* ---- the associations (--out) ------------------------------------------------------ */

/* What --out writes: the model's three roundings and the ES optimum (NULL
 * when ES is skipped), each with its per-sample rates. */
typedef struct eval_results {
  assoc_eval_assocs model;
  double *A; /* A~ (S x K x M) */
  int *es_assoc;
  double *es_rate;
} eval_results;

static void results_free(eval_results *r) {
  assoc_eval_assocs *x = &r->model;
  free(x->one_hot), free(x->lb), free(x->nv), free(x->rate), free(x->rate_lb), free(x->rate_nv);
  free(r->es_assoc), free(r->es_rate), free(r->A);
}

/* Allocates the model's associations and rates (S x K, S). 0 or -1. */
static int results_alloc_model(const assoc_dataset *ds, eval_results *r) {
  size_t S = ds->S > 0 ? (size_t)ds->S : 1, SK = S * (size_t)ds->K;
  r->model = (assoc_eval_assocs){malloc(SK * sizeof(int)),   malloc(SK * sizeof(int)),
                                 malloc(SK * sizeof(int)),   malloc(S * sizeof(double)),
                                 malloc(S * sizeof(double)), malloc(S * sizeof(double))};
  r->A = malloc(SK * (size_t)ds->M * sizeof(double));
  const assoc_eval_assocs *x = &r->model;
  return x->one_hot && x->lb && x->nv && x->rate && x->rate_lb && x->rate_nv && r->A ? 0 : -1;
}

/* Adds every result to w and commits it (or discards it on a failure). */
static int write_results(sg_npz_writer *w, const assoc_gnn *m, const assoc_dataset *ds,
                         const eval_results *r, sg_io_error *err) {
  const char *key = assoc_gnn_variant_key(m->cfg.variant);
  int rc = assoc_eval_npz_add(w, key, ds, &r->model, err);
  char name[64];
  snprintf(name, sizeof name, "%s_A", key);
  sg_array A = {.type = SG_NPY_F64,
                .ndim = 3,
                .shape = {ds->S, ds->K, ds->M},
                .numel = ds->S * ds->K * ds->M,
                .data = r->A};
  if (!rc) rc = sg_npz_add_array(w, name, &A, err);
  if (!rc && r->es_assoc)
    rc = assoc_npz_add_assoc(w, assoc_method_key(ASSOC_ES), ds, r->es_assoc, r->es_rate, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "samples", ds->S, err);
  if (!rc) return sg_npz_writer_close(w, err);
  sg_npz_writer_abort(w);
  return -1;
}

/* ---- the evaluation --------------------------------------------------------------- */

/* ES rates (and, when assoc is true, associations) of ds into r (NULL when
 * skipped, with a note). 0 or -1. */
static int es_reference(const eval_args *a, const assoc_dataset *ds, bool assoc, eval_results *r) {
  if (a->no_es) return 0;
  if (assoc_feasible_count(ds->M, ds->N, ds->K) > a->es_max) {
    fprintf(stderr,
            "assoc eval: note: ES skipped (%.3g feasible associations per sample > "
            "--es-max-leaves %.3g)\n",
            assoc_feasible_count(ds->M, ds->N, ds->K), a->es_max);
    return 0;
  }
  size_t S = ds->S > 0 ? (size_t)ds->S : 1;
  r->es_rate = malloc(S * sizeof *r->es_rate);
  if (assoc) r->es_assoc = malloc(S * ds->K * sizeof *r->es_assoc);
  if (!r->es_rate || (assoc && !r->es_assoc) ||
      assoc_eval_es_rates(ds, a->es_max, r->es_rate, r->es_assoc)) {
    fprintf(stderr, "assoc eval: ES failed (out of memory)\n");
    return -1;
  }
  return 0;
}

/* Opens --out before the evaluation (a bad path fails at once), or sets *w
 * to NULL without --out. 0 or -1 (printed). */
static int open_out(const eval_args *a, sg_npz_writer **w) {
  sg_io_error err;
  *w = NULL;
  if (!a->common.out) return 0;
  *w = sg_npz_writer_open(a->common.out, true, &err);
  if (*w) return 0;
  fprintf(stderr, "assoc eval: --out %s\n", err.msg);
  return -1;
}

/* ES, the model's metrics and (with w) the associations into r. 0 or -1 (printed). */
static int evaluate(const eval_args *a, const assoc_gnn *m, double scale, const assoc_dataset *ds,
                    sg_npz_writer *w, eval_results *r, assoc_eval_metrics *x) {
  if (es_reference(a, ds, w != NULL, r)) return -1;
  if (w && results_alloc_model(ds, r)) {
    fprintf(stderr, "assoc eval: out of memory\n");
    return -1;
  }
  assoc_eval_opts o = assoc_eval_defaults(scale);
  o.batch = a->batch, o.latency_samples = a->latency;
  o.draws = a->draws, o.draw_seed = a->draw_seed;
  sg_io_error err;
  if (!assoc_eval_model(m, ds, &o, r->es_rate, x, r->A, w ? &r->model : NULL, &err)) return 0;
  fprintf(stderr, "assoc eval: %s\n", err.msg);
  return -1;
}

static int run_eval(const eval_args *a, const assoc_gnn *m, double scale, const assoc_dataset *ds) {
  sg_io_error err;
  if (assoc_eval_check(m, ds, &err)) {
    fprintf(stderr, "assoc eval: %s: %s\n", a->data, err.msg);
    return ASSOC_EXIT_FAIL;
  }
  sg_npz_writer *w;
  if (open_out(a, &w)) return ASSOC_EXIT_FAIL;
  eval_results r = {0};
  assoc_eval_metrics x;
  int rc = evaluate(a, m, scale, ds, w, &r, &x);
  if (!rc && a->common.json)
    print_json(a, m, scale, &x);
  else if (!rc)
    print_table(a, m, scale, ds, &x);
  if (w && !rc && write_results(w, m, ds, &r, &err)) {
    fprintf(stderr, "assoc eval: --out %s\n", err.msg);
    rc = -1;
  } else if (w && rc) {
    sg_npz_writer_abort(w);
  }
  results_free(&r);
  return rc ? ASSOC_EXIT_FAIL : ASSOC_EXIT_OK;
}

int assoc_check_eval(int argc, char **argv) {
  eval_args a;
  return eval_parse(argc, argv, &a) ? ASSOC_EXIT_USAGE : ASSOC_EXIT_OK;
}

int assoc_cmd_eval(int argc, char **argv) {
  eval_args a;
  if (eval_parse(argc, argv, &a)) return ASSOC_EXIT_USAGE;
  int start = assoc_command_start("eval", a.common.help, eval_help, a.common.out, a.common.threads);
  if (start != ASSOC_GO_ON) return start;
  const char *beam_model = assoc_beam_checkpoint_model(a.ckpt);
  if (beam_model && !strcmp(beam_model, "BFGNN"))
    return fprintf(stderr,
                   "assoc eval: %s is a BFGNN checkpoint: it designs beams for a given "
                   "association (assoc beams DATA ASSOC.npz --method bfgnn=%s)\n",
                   a.ckpt, a.ckpt),
           ASSOC_EXIT_FAIL;
  if (beam_model) {
    if (a.draws != 1)
      return fprintf(stderr, "assoc eval: --draws does not apply to a JointGNN checkpoint\n"),
             ASSOC_EXIT_USAGE;
    assoc_eval_jointgnn_args j = {a.ckpt, a.data, a.common.out, a.common.json, a.batch, a.limit};
    return assoc_eval_jointgnn(&j);
  }
  sg_io_error err;
  double scale;
  assoc_gnn *m = assoc_checkpoint_load_model(a.ckpt, &scale, NULL, &err);
  if (!m) {
    fprintf(stderr, "assoc eval: %s\n", err.msg);
    return ASSOC_EXIT_FAIL;
  }
  assoc_dataset ds;
  if (assoc_load_dataset("eval", a.data, &ds)) {
    assoc_gnn_free(m);
    return ASSOC_EXIT_FAIL;
  }
  int64_t all = ds.S;
  if (a.limit && a.limit < ds.S) ds.S = a.limit; /* samples are contiguous: a prefix view */
  int rc = run_eval(&a, m, scale, &ds);
  ds.S = all;
  assoc_dataset_free(&ds);
  assoc_gnn_free(m);
  return rc;
}
