/* Evaluation of association models and baselines: integer roundings, the
 * metrics of paper Table 1, batched GNN inference with timings, and the
 * ablation report (JSON). See sg_eval.h and docs/ablation.md. */
#include "sg_eval.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sg_train.h"

/* ---- roundings ----------------------------------------------------------------------- */

void sg_round_no_violation(const double *A, int M, int N, int K, sg_assign_work *w, int *assoc) {
  double *weight = sg_assign_work_weights(w);
  for (int i = 0; i < K * M; i++) {
    double l = A[i] > 0 ? log(A[i]) : SG_LOG_FLOOR;
    weight[i] = l > SG_LOG_FLOOR ? l : SG_LOG_FLOOR;
  }
  sg_assign_max_weight(weight, M, N, K, w, assoc);
}

/* ---- metrics ------------------------------------------------------------------------- */

/* Per-sample results, summed afterwards in sample order so that the means do
 * not depend on the thread count. */
typedef struct per_sample {
  double *rate, *rate_lb, *rate_nv;
  int *violated, *dropped;
} per_sample;

static void per_sample_free(per_sample *ps) {
  free(ps->rate), free(ps->rate_lb), free(ps->rate_nv), free(ps->violated), free(ps->dropped);
}

static int per_sample_alloc(per_sample *ps, int64_t S) {
  size_t n = S > 0 ? (size_t)S : 1;
  *ps = (per_sample){malloc(n * sizeof(double)), malloc(n * sizeof(double)),
                     malloc(n * sizeof(double)), malloc(n * sizeof(int)), malloc(n * sizeof(int))};
  if (ps->rate && ps->rate_lb && ps->rate_nv && ps->violated && ps->dropped) return 0;
  per_sample_free(ps);
  return -1;
}

/* Thread-local scratch of one sample's evaluation. */
typedef struct sample_scratch {
  double *gain;
  int *load, *one_hot, *lb, *nv;
  sg_assign_work *assign;
} sample_scratch;

static void scratch_free(sample_scratch *s) {
  free(s->gain), free(s->load), free(s->one_hot), free(s->lb), free(s->nv);
  sg_assign_work_free(s->assign);
}

static int scratch_alloc(sample_scratch *s, int M, int N, int K) {
  *s = (sample_scratch){malloc((size_t)M * K * K * sizeof(double)),
                        malloc((size_t)M * sizeof(int)),
                        malloc((size_t)K * sizeof(int)),
                        malloc((size_t)K * sizeof(int)),
                        malloc((size_t)K * sizeof(int)),
                        sg_assign_work_new(M, N, K)};
  if (s->gain && s->load && s->one_hot && s->lb && s->nv && s->assign) return 0;
  scratch_free(s);
  return -1;
}

static void argmax_rows(const double *A, int M, int K, int *assoc) {
  for (int k = 0; k < K; k++) {
    int best = 0;
    for (int m = 1; m < M; m++)
      if (A[k * M + m] > A[k * M + best]) best = m; /* strict: ties keep the lowest m */
    assoc[k] = best;
  }
}

/* Evaluates sample s of A~ into ps and the optional association outputs. */
static void eval_sample(const sg_dataset *ds, int64_t s, const double *A, sample_scratch *w,
                        per_sample *ps, int *out_1hot, int *out_lb, int *out_nv) {
  int M = ds->M, N = ds->N, K = ds->K;
  const double *As = A + s * K * M;
  sg_coupling_gain(ds, s, w->gain);
  sg_problem p = {M, N, K, w->gain};
  argmax_rows(As, M, K, w->one_hot);
  ps->rate[s] = sg_rate_int(w->gain, M, K, w->one_hot, NULL);
  ps->violated[s] = sg_loads(M, K, w->one_hot, w->load) > N;
  sg_load_balance(&p, w->one_hot, As, w->lb);
  ps->rate_lb[s] = sg_rate_int(w->gain, M, K, w->lb, NULL);
  ps->dropped[s] = 0;
  for (int k = 0; k < K; k++) ps->dropped[s] += w->lb[k] < 0;
  sg_round_no_violation(As, M, N, K, w->assign, w->nv);
  ps->rate_nv[s] = sg_rate_int(w->gain, M, K, w->nv, NULL);
  size_t bytes = (size_t)K * sizeof(int);
  if (out_1hot) memcpy(out_1hot + s * K, w->one_hot, bytes);
  if (out_lb) memcpy(out_lb + s * K, w->lb, bytes);
  if (out_nv) memcpy(out_nv + s * K, w->nv, bytes);
}

static double mean_of(const double *x, int64_t S) {
  double s = 0.0;
  for (int64_t i = 0; i < S; i++) s += x[i];
  return S > 0 ? s / (double)S : NAN;
}

/* Fills the means of ps (and the ES ratios) into out. */
static void summarise(const sg_dataset *ds, const per_sample *ps, const double *es_rate,
                      sg_eval_metrics *out) {
  int64_t S = ds->S, violated = 0, dropped = 0;
  for (int64_t s = 0; s < S; s++) violated += ps->violated[s], dropped += ps->dropped[s];
  *out = (sg_eval_metrics){.samples = S, .M = ds->M, .N = ds->N, .K = ds->K};
  out->violation_ratio = S > 0 ? (double)violated / (double)S : NAN;
  out->mean_dropped = S > 0 ? (double)dropped / (double)S : NAN;
  out->rate = mean_of(ps->rate, S);
  out->rate_lb = mean_of(ps->rate_lb, S);
  out->rate_no_violation = mean_of(ps->rate_nv, S);
  out->es_rate = es_rate ? mean_of(es_rate, S) : NAN;
  out->ratio_to_es = out->rate_lb / out->es_rate;
  out->ratio_nv_to_es = out->rate_no_violation / out->es_rate;
}

int sg_eval_assoc_metrics(const sg_dataset *ds, const double *A, const double *es_rate,
                          sg_eval_metrics *out, int *assoc_1hot, int *assoc_lb, int *assoc_nv) {
  per_sample ps;
  if (per_sample_alloc(&ps, ds->S)) return -1;
  int failed = 0;
#pragma omp parallel
  {
    sample_scratch w;
    int ok = scratch_alloc(&w, ds->M, ds->N, ds->K) == 0;
    if (!ok) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t s = 0; s < ds->S; s++)
      if (ok) eval_sample(ds, s, A, &w, &ps, assoc_1hot, assoc_lb, assoc_nv);
    if (ok) scratch_free(&w);
  }
  if (!failed) summarise(ds, &ps, es_rate, out);
  per_sample_free(&ps);
  return failed ? -1 : 0;
}

int sg_eval_baseline_metrics(const sg_dataset *ds, const int *assoc, const double *es_rate,
                             double ms_per_sample, sg_eval_metrics *out) {
  sg_metrics m;
  if (sg_metrics_compute(ds, assoc, NULL, es_rate, ms_per_sample, &m, NULL, NULL)) return -1;
  *out = (sg_eval_metrics){.samples = ds->S, .M = ds->M, .N = ds->N, .K = ds->K};
  out->violation_ratio = m.violation_ratio;
  out->rate = m.mean_rate;
  out->rate_lb = m.mean_lb_rate;
  out->rate_no_violation = m.mean_lb_rate;
  out->mean_dropped = m.mean_dropped;
  out->es_rate = es_rate ? mean_of(es_rate, ds->S) : NAN;
  out->ratio_to_es = m.ratio_to_es;
  out->ratio_nv_to_es = m.ratio_to_es;
  out->infer_us = out->latency_us = 1e3 * ms_per_sample;
  out->batch = 1;
  out->threads = omp_get_max_threads();
  return 0;
}

int sg_eval_es_rates(const sg_dataset *ds, double max_leaves, double *rate) {
  if (sg_feasible_count(ds->M, ds->N, ds->K) > max_leaves) return -1;
  size_t SK = (size_t)ds->S * ds->K;
  int *assoc = malloc((SK ? SK : 1) * sizeof *assoc);
  sg_baseline_opts o = sg_baseline_defaults();
  o.es_max_leaves = max_leaves;
  int rc = assoc ? sg_run_method(ds, SG_ES, &o, assoc, rate, NULL, NULL, NULL, NULL, 0) : -1;
  free(assoc);
  return rc;
}

/* ---- model inference -------------------------------------------------------------------- */

sg_eval_opts sg_eval_defaults(double feature_scale) {
  return (sg_eval_opts){.feature_scale = feature_scale, .batch = 256, .latency_samples = 32};
}

__attribute__((format(printf, 3, 4))) static int failf(char *msg, size_t len, const char *fmt,
                                                       ...) {
  if (msg && len) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, len, fmt, ap);
    va_end(ap);
  }
  return -1;
}

int sg_eval_check(const sg_gnn *m, const sg_dataset *ds, char *msg, size_t msg_len) {
  const sg_gnn_config *c = &m->cfg;
  if (c->fe != 2 * ds->N)
    return failf(msg, msg_len,
                 "the model takes %d edge features (N = %d antennas), the data set has N = %d",
                 c->fe, c->fe / 2, ds->N);
  if (c->fp != 1 || c->fq != 1)
    return failf(msg, msg_len, "the model takes node features of widths %d and %d (expected 1, 1)",
                 c->fp, c->fq);
  return 0;
}

/* The two graphs of an evaluation: the batch inputs, and the scratch graph
 * of sg_gnn_predict (which resets it per chunk). */
typedef struct eval_graphs {
  sg_graph *inputs, *scratch;
} eval_graphs;

static void eval_graphs_free(eval_graphs *e) {
  sg_graph_free(e->inputs);
  sg_graph_free(e->scratch);
}

static int eval_graphs_new(eval_graphs *e) {
  e->inputs = sg_graph_new();
  e->scratch = sg_graph_new();
  if (e->inputs && e->scratch) {
    sg_set_grad_enabled(e->inputs, false);
    return 0;
  }
  eval_graphs_free(e);
  *e = (eval_graphs){NULL, NULL};
  return -1;
}

/* Forward of samples [start, start+B) into dst (B x K x M); 0 or -1. */
static int infer_batch(const eval_graphs *e, const sg_gnn *m, const sg_dataset *ds, int64_t start,
                       int64_t B, double scale, double *dst) {
  sg_graph_reset(e->inputs);
  sg_gnn_batch in; /* the training inputs: p = Pt dBm / 30, q = 1, H over the training scale */
  if (sg_gnn_batch_make(e->inputs, ds, NULL, start, B, scale, m->cfg.dtype, false, &in)) return -1;
  sg_tensor *A = sg_gnn_predict(e->scratch, m, in.p, in.q, in.H, 0);
  if (!A) return -1;
  for (int64_t i = 0; i < A->numel; i++) dst[i] = sg_get(A, i);
  sg_free(A);
  return 0;
}

int sg_eval_infer(const sg_gnn *m, const sg_dataset *ds, const sg_eval_opts *o, double *A,
                  double *seconds, char *msg, size_t msg_len) {
  if (sg_eval_check(m, ds, msg, msg_len)) return -1;
  if (!(o->feature_scale > 0) || o->batch < 1)
    return failf(msg, msg_len, "feature scale %g must be > 0 and batch %d >= 1", o->feature_scale,
                 o->batch);
  eval_graphs eg;
  if (eval_graphs_new(&eg)) return failf(msg, msg_len, "out of memory");
  double elapsed = 0.0;
  int rc = 0;
  for (int64_t start = 0; start < ds->S && !rc; start += o->batch) {
    int64_t B = ds->S - start < o->batch ? ds->S - start : o->batch;
    double t0 = omp_get_wtime();
    rc = infer_batch(&eg, m, ds, start, B, o->feature_scale, A + start * ds->K * ds->M);
    elapsed += omp_get_wtime() - t0;
  }
  eval_graphs_free(&eg);
  if (rc) return failf(msg, msg_len, "model forward failed (reported above)");
  if (seconds) *seconds = elapsed;
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median wall time in seconds of single-sample forwards over the first n
 * samples (outputs discarded). NaN if n = 0. */
static double single_sample_latency(const sg_gnn *m, const sg_dataset *ds, double scale, int n) {
  if (n > ds->S) n = (int)ds->S;
  if (n <= 0) return NAN;
  double *t = malloc((size_t)n * sizeof *t), *A = malloc((size_t)ds->K * ds->M * sizeof *A);
  eval_graphs eg = {NULL, NULL};
  double median = NAN;
  int rc = t && A && !eval_graphs_new(&eg) ? 0 : -1;
  for (int i = 0; i < n && !rc; i++) {
    double t0 = omp_get_wtime();
    rc = infer_batch(&eg, m, ds, i, 1, scale, A);
    t[i] = omp_get_wtime() - t0;
  }
  if (!rc) {
    qsort(t, n, sizeof *t, cmp_double);
    median = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
  }
  free(t), free(A);
  eval_graphs_free(&eg);
  return median;
}

int sg_eval_model(const sg_gnn *m, const sg_dataset *ds, const sg_eval_opts *o,
                  const double *es_rate, sg_eval_metrics *out, double *A_out, char *msg,
                  size_t msg_len) {
  size_t SKM = (size_t)ds->S * ds->K * ds->M;
  double *A = A_out ? A_out : malloc((SKM ? SKM : 1) * sizeof *A);
  if (!A) return failf(msg, msg_len, "out of memory");
  double seconds = 0.0;
  int rc = sg_eval_infer(m, ds, o, A, &seconds, msg, msg_len);
  double latency = rc ? NAN : single_sample_latency(m, ds, o->feature_scale, o->latency_samples);
  if (!rc && sg_eval_assoc_metrics(ds, A, es_rate, out, NULL, NULL, NULL))
    rc = failf(msg, msg_len, "out of memory");
  if (!rc) {
    out->infer_us = ds->S > 0 ? 1e6 * seconds / (double)ds->S : NAN;
    out->latency_us = 1e6 * latency;
    out->batch = o->batch;
    out->threads = omp_get_max_threads();
    out->params = sg_gnn_param_count(m);
  }
  if (A != A_out) free(A);
  return rc;
}

/* ---- reports ------------------------------------------------------------------------ */

void sg_json_number(FILE *f, double v) {
  if (isfinite(v))
    fprintf(f, "%.10g", v);
  else
    fputs("null", f);
}

void sg_json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
}

static void json_field(FILE *f, const char *name, double v, bool last) {
  fprintf(f, "\"%s\": ", name);
  sg_json_number(f, v);
  if (!last) fputs(", ", f);
}

void sg_eval_metrics_json(FILE *f, const sg_eval_metrics *x) {
  fprintf(f, "{\"samples\": %lld, \"M\": %d, \"N\": %d, \"K\": %d, ", (long long)x->samples, x->M,
          x->N, x->K);
  json_field(f, "violation_ratio", x->violation_ratio, false);
  json_field(f, "rate", x->rate, false);
  json_field(f, "rate_load_balanced", x->rate_lb, false);
  json_field(f, "rate_no_violation", x->rate_no_violation, false);
  json_field(f, "mean_dropped", x->mean_dropped, false);
  json_field(f, "es_rate", x->es_rate, false);
  json_field(f, "ratio_to_es", x->ratio_to_es, false);
  json_field(f, "ratio_no_violation_to_es", x->ratio_nv_to_es, false);
  json_field(f, "infer_us", x->infer_us, false);
  json_field(f, "latency_us", x->latency_us, false);
  fprintf(f, "\"batch\": %d, \"threads\": %d, \"params\": %lld}", x->batch, x->threads,
          (long long)x->params);
}

int sg_write_atomic(const char *path, int (*write)(FILE *f, void *user), void *user,
                    sg_io_error *err) {
  size_t len = strlen(path) + sizeof ".tmpXXXXXX";
  char *tmp = malloc(len);
  if (!tmp) {
    if (err) snprintf(err->msg, sizeof err->msg, "%s: out of memory", path);
    return -1;
  }
  snprintf(tmp, len, "%s.tmpXXXXXX", path);
  int fd = mkstemp(tmp);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  int rc = f ? write(f, user) : -1;
  if (f) {
    if (fflush(f) || ferror(f) || fsync(fileno(f))) rc = -1;
    if (fclose(f)) rc = -1;
  } else if (fd >= 0) {
    close(fd);
  }
  int saved = errno;
  if (!rc && rename(tmp, path)) rc = -1, saved = errno;
  if (rc && fd >= 0) unlink(tmp);
  if (rc && err)
    snprintf(err->msg, sizeof err->msg, "%s: cannot write: %s", path,
             saved ? strerror(saved) : "write failed");
  free(tmp);
  return rc;
}

sg_paper_row sg_paper_table1(sg_gnn_variant v) {
  /* Paper Table 1 (MRT rows; times on an A100; parameter counts in millions). */
  static const sg_paper_row rows[SG_GNN_VARIANT_COUNT] = {
      [SG_GNN_ATTSKGS] = {"AttSKGS-GNN", 0.162, 6.54, 6.24, 36.98, 70, 45.67},
      [SG_GNN_SKGS] = {"SKGS-GNN", 0.185, 6.49, 6.01, 31.79, 72, 53.01},
      [SG_GNN_GS] = {"GS-GNN", 0.942, 9.32, 5.92, 28.92, 71, 53.01},
      [SG_GNN_SMA] = {"SMA-GNN", 0.723, 5.92, 6.12, 36.41, 84, 53.01},
  };
  if ((unsigned)v >= SG_GNN_VARIANT_COUNT) return (sg_paper_row){"?", NAN, NAN, NAN, NAN, NAN, NAN};
  return rows[v];
}

static void json_array(FILE *f, const double *x, int n) {
  fputc('[', f);
  for (int i = 0; i < n; i++) {
    if (i) fputs(", ", f);
    sg_json_number(f, x[i]);
  }
  fputc(']', f);
}

static void paper_json(FILE *f) {
  fputs("\"paper_table1\": [", f);
  for (int v = 0; v < SG_GNN_VARIANT_COUNT; v++) {
    sg_paper_row r = sg_paper_table1((sg_gnn_variant)v);
    fprintf(f, "%s\n    {\"name\": ", v ? "," : "");
    sg_json_string(f, r.name);
    fputs(", ", f);
    json_field(f, "violation_ratio", r.violation, false);
    json_field(f, "rate", r.rate, false);
    json_field(f, "rate_load_balanced", r.rate_lb, false);
    json_field(f, "train_hours", r.train_hours, false);
    json_field(f, "infer_ms", r.infer_ms, false);
    json_field(f, "params_millions", r.params_m, true);
    fputc('}', f);
  }
  fputs("]", f);
}

static void entry_json(FILE *f, const sg_ablation_entry *e) {
  fputs("{\"name\": ", f);
  sg_json_string(f, e->name);
  fputs(", \"kind\": ", f);
  sg_json_string(f, e->kind);
  fputs(", ", f);
  json_field(f, "train_seconds", e->train_seconds, false);
  fprintf(f, "\"epochs\": %d, \"metrics\": ", e->epochs);
  sg_eval_metrics_json(f, &e->metrics);
  fputc('}', f);
}

static void curve_json(FILE *f, const sg_ablation_curve *c) {
  fputs("{\"parameter\": ", f);
  sg_json_string(f, c->parameter);
  fputs(", \"x\": ", f);
  json_array(f, c->x, c->points);
  fputs(", \"methods\": [", f);
  for (int i = 0; i < c->methods; i++) {
    fprintf(f, "%s\n      {\"name\": ", i ? "," : "");
    sg_json_string(f, c->names[i]);
    fputs(", \"rate_load_balanced\": ", f);
    json_array(f, c->rate_lb + (size_t)i * c->points, c->points);
    if (c->rate_nv) {
      fputs(", \"rate_no_violation\": ", f);
      json_array(f, c->rate_nv + (size_t)i * c->points, c->points);
    }
    fputc('}', f);
  }
  fputs("]}", f);
}

int sg_ablation_json(FILE *f, const sg_ablation_report *r) {
  fputs("{\"schema\": \"sinkgrad-ablation-1\",\n  \"config\": ", f);
  fputs(r->config_json ? r->config_json : "{}", f);
  fputs(",\n  ", f);
  paper_json(f);
  fputs(",\n  \"methods\": [", f);
  for (int i = 0; i < r->n_entries; i++) {
    fputs(i ? ",\n    " : "\n    ", f);
    entry_json(f, &r->entries[i]);
  }
  fputs("],\n  \"curves\": [", f);
  for (int i = 0; i < r->n_curves; i++) {
    fputs(i ? ",\n    " : "\n    ", f);
    curve_json(f, &r->curves[i]);
  }
  fputs("]}\n", f);
  return ferror(f) ? -1 : 0;
}

static int ablation_json_cb(FILE *f, void *user) {
  return sg_ablation_json(f, user);
}

int sg_ablation_write_json(const char *path, const sg_ablation_report *r, sg_io_error *err) {
  return sg_write_atomic(path, ablation_json_cb, (void *)r, err);
}
