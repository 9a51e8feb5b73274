/* assoc ablation, the report: the Table-1-like tables, quality and cost (table.md and stdout),
 * ablation.json, curve_k.csv and onehot.dat. */
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "ablation.h"
#include "assoc_dist.h"

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

/* A table cell, and each of the two numbers of a "mean ± sd" cell. */
enum { CELL = 64, PART = 28 };

static void fmt_pm(char *buf, const char *mean, const char *sd) {
  snprintf(buf, CELL, "%s ± %s", mean, sd);
}

/* The values of a table row: one evaluation (sd NULL) or the mean and sd
 * over the seeds. */
typedef struct row_stats {
  const assoc_eval_metrics *x, *sd;
  double train, train_sd;
} row_stats;

static double metric(const assoc_eval_metrics *x, size_t offset) {
  return *(const double *)((const char *)x + offset);
}

#define AT(member) offsetof(assoc_eval_metrics, member)

static void metric_cell(char *buf, const row_stats *s, size_t at, const char *fmt, double scale) {
  char m[PART], sd[PART];
  fmt_num(m, PART, fmt, scale * metric(s->x, at));
  if (!s->sd) {
    snprintf(buf, CELL, "%s", m);
    return;
  }
  fmt_num(sd, PART, fmt, scale * metric(s->sd, at));
  fmt_pm(buf, m, sd);
}

static void time_cell(char *buf, const row_stats *s) {
  char m[PART], sd[PART];
  fmt_num(m, PART, "%.1f", s->train);
  if (!s->sd || !isfinite(s->train)) {
    snprintf(buf, CELL, "%s", m);
    return;
  }
  fmt_num(sd, PART, "%.1f", s->train_sd);
  fmt_pm(buf, m, sd);
}

/* A percentage of ES's rate: the ratio of the means (its sd over the seeds
 * is the rate's sd over ES's rate, which the rate column shows). */
static void es_percent_cell(char *buf, const row_stats *s, size_t at) {
  fmt_num(buf, CELL, "%.1f", 100 * metric(s->x, at));
}

static void print_row(FILE *f, const char *name, char (*cells)[CELL], int n) {
  fprintf(f, "| %s |", name);
  for (int i = 0; i < n; i++) fprintf(f, " %s |", cells[i]);
  fputc('\n', f);
}

static void print_rule(FILE *f, int value_columns) {
  fprintf(f, "|---|");
  for (int i = 0; i < value_columns; i++) fprintf(f, "---:|");
  fputc('\n', f);
}

enum { QUALITY_COLUMNS = 10, COST_COLUMNS = 6 };

/* A row of the quality table: ours beside the paper's (NULL for baselines). */
static void quality_row(FILE *f, const char *name, const row_stats *s,
                        const assoc_paper_row *paper) {
  char c[QUALITY_COLUMNS][CELL];
  metric_cell(c[0], s, AT(violation_ratio), "%.1f", 100);
  fmt_num(c[1], CELL, "%.1f", paper ? 100 * paper->violation : NAN);
  metric_cell(c[2], s, AT(rate), "%.3f", 1);
  fmt_num(c[3], CELL, "%.2f", paper ? paper->rate : NAN);
  metric_cell(c[4], s, AT(rate_lb), "%.3f", 1);
  fmt_num(c[5], CELL, "%.2f", paper ? paper->rate_lb : NAN);
  metric_cell(c[6], s, AT(rate_no_violation), "%.3f", 1);
  es_percent_cell(c[7], s, AT(ratio_to_es));
  es_percent_cell(c[8], s, AT(ratio_nv_to_es));
  if (s->x->draws > 1)
    es_percent_cell(c[9], s, AT(ratio_sampled_to_es));
  else
    fmt_num(c[9], CELL, "%.1f", NAN);
  print_row(f, name, c, QUALITY_COLUMNS);
}

/* A row of the cost table: ours beside the paper's (NULL for baselines). */
static void cost_row(FILE *f, const char *name, const row_stats *s, const assoc_paper_row *paper) {
  char c[COST_COLUMNS][CELL];
  metric_cell(c[0], s, AT(infer_us), "%.1f", 1);
  metric_cell(c[1], s, AT(latency_us), "%.0f", 1);
  fmt_params(c[2], CELL, (double)s->x->params);
  fmt_params(c[3], CELL, paper ? 1e6 * paper->params_m : NAN);
  time_cell(c[4], s);
  fmt_num(c[5], CELL, "%.2f", paper ? paper->train_hours : NAN);
  print_row(f, name, c, COST_COLUMNS);
}

typedef void (*table_row_fn)(FILE *, const char *, const row_stats *, const assoc_paper_row *);

/* One row per model (mean ± sd over the seeds), then one per baseline. */
static void table_rows(FILE *f, const abl_run *r, table_row_fn row) {
  for (int i = 0; i < r->n_models; i++) {
    const model_run *mr = &r->models[i];
    assoc_paper_row p = abl_paper_row(mr->index);
    row_stats s = {&mr->mean, r->a->seeds > 1 ? &mr->sd : NULL, mr->train_seconds,
                   mr->train_seconds_sd};
    row(f, mr->name, &s, mr->index == ABL_IMPROVED ? NULL : &p);
  }
  for (int m = 0; m < ASSOC_METHOD_COUNT; m++)
    if (r->base_done[m])
      row(f, assoc_method_name(m), &(row_stats){&r->base[m], NULL, NAN, NAN}, NULL);
}

static void write_quality_table(FILE *f, const abl_run *r) {
  fputs("Quality. viol %: samples whose one-hot association (row argmax) overloads a BS.\n"
        "rate, LB rate, NV rate: mean sum-rate in bps/Hz (MRT beams) of that one-hot, the\n"
        "load-balanced (LB) and the no-violation (NV) association. X/ES %: mean rate in percent\n"
        "of ES's (exhaustive search). D draws: the best of D draws from the model (assoc eval\n"
        "--draws). paper: Table 1 (MRT rows).\n\n",
        f);
  fprintf(f,
          "| method | viol %% | paper viol %% | rate | paper rate | LB rate | paper LB rate | "
          "NV rate | LB/ES %% | NV/ES %% | %d draws/ES %% |\n",
          r->a->draws);
  print_rule(f, QUALITY_COLUMNS);
  table_rows(f, r, quality_row);
  fputs("\nLB/ES can exceed 100%: LB drops the UEs above a BS's capacity N (the rest then\n"
        "interfere less), while ES serves every UE within capacity. Different problems: compare\n"
        "LB with LB, and NV (every UE served) with ES.\n\n",
        f);
}

static void write_cost_table(FILE *f, const abl_run *r) {
  long long batch = (long long)r->a->train.eval_batch;
  fprintf(f,
          "Cost, %d threads. infer: inputs + forward pass over the test set in batches of %lld,\n"
          "wall time per sample. latency: median wall time of one single-sample forward pass.\n"
          "Baselines: the solver's time per sample (one at a time, one thread) in both; SM-GNN:\n"
          "its whole protocol per sample in both. train s: wall time of the training steps per\n"
          "seed. paper: Table 1 (times on an A100).\n\n",
          omp_get_max_threads(), batch);
  fprintf(f,
          "| method | infer us/sample (batch %lld) | latency us (1 sample) | params | "
          "paper params | train s | paper train h (A100) |\n",
          batch);
  print_rule(f, COST_COLUMNS);
  table_rows(f, r, cost_row);
  fputc('\n', f);
}

int abl_write_table(FILE *f, void *user) {
  const abl_run *r = user;
  const abl_args *a = r->a;
  if (a->seeds > 1)
    fprintf(
        f,
        "Models: mean ± sample standard deviation over %d seeds (%llu .. %llu), each with\n"
        "its own training set; baselines: one evaluation; all on the same %lld test samples.\n\n",
        a->seeds, (unsigned long long)abl_run_seed(a, 0),
        (unsigned long long)abl_run_seed(a, a->seeds - 1), (long long)r->test.S);
  else
    fprintf(f, "All on the same %lld test samples.\n\n", (long long)r->test.S);
  write_quality_table(f, r);
  write_cost_table(f, r);
  return abl_write_beams_table(f, r);
}

/* ---- JSON, CSV and plot data ------------------------------------------------------------ */

assoc_paper_row abl_paper_row(int index) {
  if (index != ABL_SM) return assoc_paper_table1((assoc_gnn_variant)index);
  return (assoc_paper_row){.name = abl_sm_name,
                           .violation = 0.992,
                           .rate = NAN,
                           .rate_lb = NAN,
                           .train_hours = 47.78,
                           .infer_ms = 85,
                           .params_m = 54.60};
}

static int write_config_json(FILE *f, const abl_run *r, const char *plots) {
  const abl_args *a = r->a;
  const assoc_train_config *c = &a->train;
  fprintf(f, "{\"M\": 2, \"N\": 4, \"K\": 8, \"pt_dbm\": 30, \"quick\": %s, ",
          a->quick ? "true" : "false");
  fprintf(f, "\"d\": %d, \"h\": %d, \"L\": %d, \"tau\": %g, \"sk_iters\": %d, ", c->d, c->h, c->L,
          c->tau, c->sk_iters);
  fprintf(f, "\"sk_balanced\": %s, \"dtype\": \"%s\", ", c->sk_balanced ? "true" : "false",
          sg_dtype_name(c->dtype));
  fprintf(f, "\"batch\": %lld, \"batches_per_epoch\": %lld, \"epochs\": %d, ", (long long)c->batch,
          (long long)c->batches_per_epoch, c->epochs);
  fprintf(f, "\"lr_min\": %g, \"lr_max\": %g, \"t0\": %g, \"t_mult\": %d, \"t_mu\": %d, ",
          c->lr_min, c->lr_max, c->t0, c->t_mult, c->t_mu);
  fprintf(f, "\"delta\": %g, \"train_samples\": %lld, \"val_samples\": %lld, ", c->delta,
          (long long)a->train_samples, (long long)a->val_samples);
  fprintf(f, "\"test_samples\": %lld, \"curve_samples\": %lld, \"seed\": %llu, ",
          (long long)a->test_samples, (long long)a->curve_samples, (unsigned long long)a->seed);
  fprintf(f, "\"k_min\": %d, \"k_max\": %d, \"k_step\": %d, ", a->k_min, a->k_max, a->k_step);
  fprintf(f, "\"pt_min\": %d, \"pt_max\": %d, \"pt_step\": %d, \"m_max\": %d, ", a->pt_min,
          a->pt_max, a->pt_step, a->m_max);
  fprintf(f, "\"seeds\": %d, \"train_data_seeds\": [", a->seeds);
  for (int j = 0; j < a->seeds; j++)
    fprintf(f, "%s%llu", j ? ", " : "", (unsigned long long)abl_train_data_seed(a, j));
  fputs("], ", f);
  fprintf(f, "\"threads\": %d, \"ranks\": %d, \"seconds_total\": %.1f, ", omp_get_max_threads(),
          assoc_dist_size(), r->seconds_total);
  fprintf(f, "\"seconds_data\": %.1f, \"seconds_beams\": %.1f, ", r->seconds_data,
          r->seconds_beams);
  assoc_json_string(f, "plots", plots, "}");
  return ferror(f) ? -1 : 0;
}

/* A model's runs, contiguous as assoc_ablation_entry wants them. */
typedef struct entry_runs {
  uint64_t seeds[ABL_MAX_SEEDS];
  assoc_eval_metrics test[ABL_MAX_SEEDS];
  double train_seconds[ABL_MAX_SEEDS];
} entry_runs;

static assoc_ablation_entry model_entry(const model_run *mr, entry_runs *er) {
  for (int j = 0; j < mr->n_runs; j++) {
    er->seeds[j] = mr->runs[j].seed;
    er->test[j] = mr->runs[j].test;
    er->train_seconds[j] = mr->runs[j].train_seconds;
  }
  return (assoc_ablation_entry){.name = mr->name,
                                .kind = "model",
                                .metrics = mr->mean,
                                .train_seconds = mr->train_seconds,
                                .epochs = mr->runs[0].epochs,
                                .n_runs = mr->n_runs,
                                .seeds = er->seeds,
                                .per_seed = er->test,
                                .per_seed_train_seconds = er->train_seconds};
}

static int write_report(const abl_run *r, const assoc_ablation_entry *e, int n, const char *plots) {
  char *config = NULL;
  size_t config_len = 0;
  FILE *mem = open_memstream(&config, &config_len);
  if (!mem) return -1;
  write_config_json(mem, r, plots);
  fclose(mem);
  assoc_ablation_curve curves[ABL_CURVES];
  for (int ci = 0; ci < ABL_CURVES; ci++) {
    const curve_data *c = &r->curves[ci];
    curves[ci] = (assoc_ablation_curve){c->parameter, c->points, c->methods, c->x,     c->names,
                                        c->lb,        c->nv,     c->lb_sd,   c->nv_sd, c->runs};
  }
  char *extra = abl_beams_json(r);
  assoc_ablation_report rep = {config, e, n, curves, ABL_CURVES, extra};
  char path[1024];
  sg_io_error err;
  abl_path_in(path, sizeof path, r->a->out, "ablation.json");
  int rc = extra ? assoc_ablation_write_json(path, &rep, &err) : -1;
  if (rc) fprintf(stderr, "assoc ablation: %s\n", extra ? err.msg : "out of memory");
  free(config), free(extra);
  return rc;
}

int abl_write_json(abl_run *r, const char *plots) {
  assoc_ablation_entry e[ABL_MAX_MODELS + ASSOC_METHOD_COUNT];
  entry_runs *er = malloc(ABL_MAX_MODELS * sizeof *er);
  if (!er) return -1;
  int n = 0;
  for (int i = 0; i < r->n_models; i++) e[n++] = model_entry(&r->models[i], &er[i]);
  for (int m = 0; m < ASSOC_METHOD_COUNT; m++)
    if (r->base_done[m])
      e[n++] = (assoc_ablation_entry){.name = assoc_method_name(m),
                                      .kind = "baseline",
                                      .metrics = r->base[m],
                                      .train_seconds = NAN};
  int rc = write_report(r, e, n, plots);
  free(er);
  return rc;
}

typedef struct curve_file {
  const abl_run *r;
  const curve_data *c;
} curve_file;

/* x (K, pt_dbm or M), the LB rate (mean over the seeds for a model or a
 * _BFGNN method) per method, the NV rate per method; with several seeds
 * then the sds of both of every method after the baselines. */
static int write_curve_csv(FILE *f, void *user) {
  const curve_file *cf = user;
  const curve_data *c = cf->c;
  bool sd = cf->r->a->seeds > 1;
  fprintf(f, "%s", c->parameter);
  for (int i = 0; i < c->methods; i++) fprintf(f, ",%s", c->names[i]);
  for (int i = 0; i < c->methods; i++) fprintf(f, ",%s no-violation", c->names[i]);
  for (int i = N_CURVE_BASELINES; sd && i < c->methods; i++) fprintf(f, ",%s sd", c->names[i]);
  for (int i = N_CURVE_BASELINES; sd && i < c->methods; i++)
    fprintf(f, ",%s no-violation sd", c->names[i]);
  fputc('\n', f);
  for (int p = 0; p < c->points; p++) {
    fprintf(f, "%g", c->x[p]);
    for (int i = 0; i < c->methods; i++) fprintf(f, ",%.6f", c->lb[i * c->points + p]);
    for (int i = 0; i < c->methods; i++) fprintf(f, ",%.6f", c->nv[i * c->points + p]);
    for (int i = N_CURVE_BASELINES; sd && i < c->methods; i++)
      fprintf(f, ",%.6f", c->lb_sd[i * c->points + p]);
    for (int i = N_CURVE_BASELINES; sd && i < c->methods; i++)
      fprintf(f, ",%.6f", c->nv_sd[i * c->points + p]);
    fputc('\n', f);
  }
  return ferror(f) ? -1 : 0;
}

/* A CSV number; empty when not finite (as in the training logs). */
static void csv_number(FILE *f, double v) {
  if (isfinite(v)) fprintf(f, "%.9g", v);
}

/* The per-epoch mean and sd over the seeds of a model's training series. */
static int write_epochs_csv(FILE *f, void *user) {
  const model_run *mr = user;
  fprintf(f, "epoch,seeds");
  for (int k = 0; k < EPOCH_SERIES; k++)
    fprintf(f, ",%s_mean,%s_sd", abl_epoch_series_names[k], abl_epoch_series_names[k]);
  fputc('\n', f);
  for (int e = 0; e < mr->runs[0].epochs; e++) {
    fprintf(f, "%d,%d", e + 1, mr->n_runs);
    for (int k = 0; k < EPOCH_SERIES; k++) {
      size_t at = (size_t)e * EPOCH_SERIES + k;
      fputc(',', f), csv_number(f, mr->epoch_mean[at]);
      fputc(',', f), csv_number(f, mr->epoch_sd[at]);
    }
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
              i < r->n_models ? r->models[i].name : "ES", s);
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

/* Fig. 2a's horizontal lines: the curve baselines' LB rates on the
 * validation set. */
static int write_val_baselines(FILE *f, void *user) {
  const abl_run *r = user;
  fprintf(f, "method,rate_load_balanced\n");
  for (int i = 0; i < N_CURVE_BASELINES; i++)
    fprintf(f, "%s,%.6f\n", assoc_method_name(abl_curve_baselines[i]), r->val_base[i]);
  return ferror(f) ? -1 : 0;
}

int abl_write_in_dir(const abl_run *r, const char *name, int (*fn)(FILE *, void *), void *user) {
  char path[1024];
  sg_io_error err;
  abl_path_in(path, sizeof path, r->a->out, name);
  if (assoc_write_atomic(path, fn, user, &err)) {
    fprintf(stderr, "assoc ablation: %s\n", err.msg);
    return -1;
  }
  return 0;
}

int abl_write_results(abl_run *r) {
  if (abl_write_in_dir(r, "table.md", abl_write_table, r) ||
      abl_write_in_dir(r, "onehot.dat", write_onehot, r) ||
      abl_write_in_dir(r, "val_baselines.csv", write_val_baselines, r))
    return -1;
  for (int ci = 0; ci < ABL_CURVES; ci++) {
    curve_file cf = {r, &r->curves[ci]};
    if (abl_write_in_dir(r, r->curves[ci].file, write_curve_csv, &cf)) return -1;
  }
  for (int i = 0; i < r->n_models && r->a->seeds > 1; i++) {
    char name[64];
    snprintf(name, sizeof name, "train_%s-seeds.csv", r->models[i].key);
    if (abl_write_in_dir(r, name, write_epochs_csv, &r->models[i])) return -1;
  }
  return 0;
}
