/* The reports of an evaluation: associations as .npz members, JSON values
 * and metrics, atomic file writes, the paper's Table 1 and the ablation
 * report (docs/ablation.md). */
#include "assoc_eval.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models_internal.h"

void assoc_json_write_number(FILE *f, double v) {
  if (isfinite(v))
    fprintf(f, "%.10g", v);
  else
    fputs("null", f);
}

void assoc_json_write_string(FILE *f, const char *s) {
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

/* ---- associations as .npz ----------------------------------------------------------- */

int assoc_npz_add_assoc(sg_npz_writer *w, const char *prefix, const assoc_dataset *ds,
                        const int *assoc, const double *rate, sg_io_error *err) {
  char name[128];
  sg_array a = {.type = SG_NPY_I32, .ndim = 2, .shape = {ds->S, ds->K}, .numel = ds->S * ds->K};
  sg_array r = {.type = SG_NPY_F64, .ndim = 1, .shape = {ds->S}, .numel = ds->S};
  a.data = (void *)assoc, r.data = (void *)rate; /* only read */
  if (snprintf(name, sizeof name, "%s_assoc", prefix) >= (int)sizeof name)
    return assoc_fail(err, "member name too long: %s_assoc", prefix);
  if (sg_npz_add_array(w, name, &a, err)) return -1;
  snprintf(name, sizeof name, "%s_rate", prefix);
  return sg_npz_add_array(w, name, &r, err);
}

int assoc_eval_npz_add(sg_npz_writer *w, const char *key, const assoc_dataset *ds,
                       const assoc_eval_assocs *x, sg_io_error *err) {
  const struct {
    const char *rounding;
    const int *assoc;
    const double *rate;
  } parts[] = {
      {"onehot", x->one_hot, x->rate}, {"lb", x->lb, x->rate_lb}, {"nv", x->nv, x->rate_nv}};
  char prefix[96];
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    snprintf(prefix, sizeof prefix, "%s_%s", key, parts[i].rounding);
    if (assoc_npz_add_assoc(w, prefix, ds, parts[i].assoc, parts[i].rate, err)) return -1;
  }
  return 0;
}

/* ---- JSON ---------------------------------------------------------------------------- */

static void json_field(FILE *f, const char *name, double v, bool last) {
  fprintf(f, "\"%s\": ", name);
  assoc_json_write_number(f, v);
  if (!last) fputs(", ", f);
}

void assoc_eval_metrics_json(FILE *f, const assoc_eval_metrics *x) {
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
  if (x->draws > 1) {
    fprintf(f, "\"draws\": %d, ", x->draws);
    json_field(f, "rate_sampled", x->rate_sampled, false);
    json_field(f, "ratio_sampled_to_es", x->ratio_sampled_to_es, false);
    json_field(f, "decode_us", x->decode_us, false);
  }
  fprintf(f, "\"batch\": %d, \"threads\": %d, \"params\": %lld}", x->batch, x->threads,
          (long long)x->params);
}

/* ---- statistics over runs ---------------------------------------------------------- */

/* Mean and sample sd of n doubles at base, base + stride, ... (bytes). */
static void mean_sd_bytes(const char *base, size_t stride, int n, double *mean, double *sd) {
  double sum = 0, sq = 0, v;
  for (int i = 0; i < n; i++) memcpy(&v, base + (size_t)i * stride, sizeof v), sum += v;
  double m = n > 0 ? sum / n : NAN;
  for (int i = 0; i < n; i++)
    memcpy(&v, base + (size_t)i * stride, sizeof v), sq += (v - m) * (v - m);
  *mean = m;
  if (sd) *sd = n > 1 ? sqrt(sq / (n - 1)) : NAN;
}

void assoc_mean_sd(const double *x, int n, size_t stride, double *mean, double *sd) {
  mean_sd_bytes((const char *)x, stride * sizeof *x, n, mean, sd);
}

#define REAL_METRIC(json, member)                                                                  \
  { json, offsetof(assoc_eval_metrics, member) }
const assoc_eval_real_metric assoc_eval_real_metrics[ASSOC_EVAL_REAL_METRICS] = {
    REAL_METRIC("violation_ratio", violation_ratio),
    REAL_METRIC("rate", rate),
    REAL_METRIC("rate_load_balanced", rate_lb),
    REAL_METRIC("rate_no_violation", rate_no_violation),
    REAL_METRIC("mean_dropped", mean_dropped),
    REAL_METRIC("es_rate", es_rate),
    REAL_METRIC("ratio_to_es", ratio_to_es),
    REAL_METRIC("ratio_no_violation_to_es", ratio_nv_to_es),
    REAL_METRIC("infer_us", infer_us),
    REAL_METRIC("latency_us", latency_us),
    REAL_METRIC("rate_sampled", rate_sampled),
    REAL_METRIC("ratio_sampled_to_es", ratio_sampled_to_es),
    REAL_METRIC("decode_us", decode_us),
};

/* The metrics a run reports: the sampled decoding's only when it ran. */
static int metrics_reported(const assoc_eval_metrics *x) {
  return x->draws > 1 ? ASSOC_EVAL_REAL_METRICS
                      : ASSOC_EVAL_REAL_METRICS - ASSOC_EVAL_SAMPLED_METRICS;
}
#undef REAL_METRIC

static double *metric_at(assoc_eval_metrics *x, int i) {
  return (double *)((char *)x + assoc_eval_real_metrics[i].offset);
}

static double metric_of(const assoc_eval_metrics *x, int i) {
  return *(const double *)((const char *)x + assoc_eval_real_metrics[i].offset);
}

void assoc_eval_metrics_mean_sd(const assoc_eval_metrics *runs, int n, assoc_eval_metrics *mean,
                                assoc_eval_metrics *sd) {
  assoc_eval_metrics m = runs[0], s = runs[0];
  for (int i = 0; i < ASSOC_EVAL_REAL_METRICS; i++)
    mean_sd_bytes((const char *)runs + assoc_eval_real_metrics[i].offset, sizeof *runs, n,
                  metric_at(&m, i), metric_at(&s, i));
  *mean = m;
  if (sd) *sd = s;
}

int assoc_write_atomic(const char *path, int (*write)(FILE *f, void *user), void *user,
                       sg_io_error *err) {
  return sg_io_write_file_atomic(path, write, user, err);
}

assoc_paper_row assoc_paper_table1(assoc_gnn_variant v) {
  /* Paper Table 1 (MRT rows; times on an A100; parameter counts in millions). */
  static const assoc_paper_row rows[ASSOC_GNN_VARIANT_COUNT] = {
      [ASSOC_GNN_ATTSKGS] = {"AttSKGS-GNN", 0.162, 6.54, 6.24, 36.98, 70, 45.67},
      [ASSOC_GNN_SKGS] = {"SKGS-GNN", 0.185, 6.49, 6.01, 31.79, 72, 53.01},
      [ASSOC_GNN_GS] = {"GS-GNN", 0.942, 9.32, 5.92, 28.92, 71, 53.01},
      [ASSOC_GNN_SMA] = {"SMA-GNN", 0.723, 5.92, 6.12, 36.41, 84, 53.01},
  };
  if ((unsigned)v >= ASSOC_GNN_VARIANT_COUNT)
    return (assoc_paper_row){"?", NAN, NAN, NAN, NAN, NAN, NAN};
  return rows[v];
}

static void json_array(FILE *f, const double *x, int n) {
  fputc('[', f);
  for (int i = 0; i < n; i++) {
    if (i) fputs(", ", f);
    assoc_json_write_number(f, x[i]);
  }
  fputc(']', f);
}

static void paper_json(FILE *f) {
  fputs("\"paper_table1\": [", f);
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) {
    assoc_paper_row r = assoc_paper_table1((assoc_gnn_variant)v);
    fprintf(f, "%s\n    {\"name\": ", v ? "," : "");
    assoc_json_write_string(f, r.name);
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

/* "per_seed": {metric: [run values], ..., "train_seconds": [...]}, "sd":
 * {metric: sd, ...} of an entry with runs. */
static void runs_json(FILE *f, const assoc_ablation_entry *e, const assoc_eval_metrics *sd,
                      double train_sd) {
  fputs(", \"seeds\": [", f);
  for (int r = 0; r < e->n_runs; r++)
    fprintf(f, "%s%llu", r ? ", " : "", (unsigned long long)e->seeds[r]);
  fputs("], \"per_seed\": {", f);
  int n = metrics_reported(&e->per_seed[0]);
  for (int i = 0; i < n; i++) {
    fprintf(f, "\"%s\": [", assoc_eval_real_metrics[i].name);
    for (int r = 0; r < e->n_runs; r++) {
      if (r) fputs(", ", f);
      assoc_json_write_number(f, metric_of(&e->per_seed[r], i));
    }
    fputs("], ", f);
  }
  fputs("\"train_seconds\": ", f);
  json_array(f, e->per_seed_train_seconds, e->n_runs);
  fputs("}, \"sd\": {", f);
  for (int i = 0; i < n; i++)
    json_field(f, assoc_eval_real_metrics[i].name, metric_of(sd, i), false);
  json_field(f, "train_seconds", train_sd, true);
  fputc('}', f);
}

static void entry_json(FILE *f, const assoc_ablation_entry *e) {
  assoc_eval_metrics mean = e->metrics, sd;
  double train_mean = e->train_seconds, train_sd = NAN;
  if (e->n_runs > 0) {
    assoc_eval_metrics_mean_sd(e->per_seed, e->n_runs, &mean, &sd);
    assoc_mean_sd(e->per_seed_train_seconds, e->n_runs, 1, &train_mean, &train_sd);
  }
  fputs("{\"name\": ", f);
  assoc_json_write_string(f, e->name);
  fputs(", \"kind\": ", f);
  assoc_json_write_string(f, e->kind);
  fputs(", ", f);
  json_field(f, "train_seconds", train_mean, false);
  fprintf(f, "\"epochs\": %d, \"metrics\": ", e->epochs);
  assoc_eval_metrics_json(f, &mean);
  if (e->n_runs > 0) runs_json(f, e, &sd, train_sd);
  fputc('}', f);
}

static void curve_sd_json(FILE *f, const assoc_ablation_curve *c, int i) {
  if (!c->runs || c->runs[i] < 1) return;
  if (c->rate_lb_sd) {
    fputs(", \"rate_load_balanced_sd\": ", f);
    json_array(f, c->rate_lb_sd + (size_t)i * c->points, c->points);
  }
  if (c->rate_nv_sd) {
    fputs(", \"rate_no_violation_sd\": ", f);
    json_array(f, c->rate_nv_sd + (size_t)i * c->points, c->points);
  }
}

static void curve_json(FILE *f, const assoc_ablation_curve *c) {
  fputs("{\"parameter\": ", f);
  assoc_json_write_string(f, c->parameter);
  fputs(", \"x\": ", f);
  json_array(f, c->x, c->points);
  fputs(", \"methods\": [", f);
  for (int i = 0; i < c->methods; i++) {
    fprintf(f, "%s\n      {\"name\": ", i ? "," : "");
    assoc_json_write_string(f, c->names[i]);
    fputs(", \"rate_load_balanced\": ", f);
    json_array(f, c->rate_lb + (size_t)i * c->points, c->points);
    if (c->rate_nv) {
      fputs(", \"rate_no_violation\": ", f);
      json_array(f, c->rate_nv + (size_t)i * c->points, c->points);
    }
    curve_sd_json(f, c, i);
    fputc('}', f);
  }
  fputs("]}", f);
}

int assoc_ablation_json(FILE *f, const assoc_ablation_report *r) {
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
  fputs("]", f);
  if (r->extra_json) fprintf(f, ",\n  %s", r->extra_json);
  fputs("}\n", f);
  return ferror(f) ? -1 : 0;
}

static int ablation_json_cb(FILE *f, void *user) {
  return assoc_ablation_json(f, user);
}

int assoc_ablation_write_json(const char *path, const assoc_ablation_report *r, sg_io_error *err) {
  return assoc_write_atomic(path, ablation_json_cb, (void *)r, err);
}
