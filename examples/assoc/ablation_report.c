/* assoc ablation, the report: the Table-1-like table (table.md and stdout),
 * ablation.json, curve_k.csv and onehot.dat. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "ablation.h"

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
static void table_row(FILE *f, const char *name, const assoc_eval_metrics *x, double train_s,
                      const assoc_paper_row *paper) {
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

int abl_write_table(FILE *f, void *user) {
  const abl_run *r = user;
  fprintf(f, "| method | violations | paper | sum-rate (with violations) | paper | "
             "load-balanced sum-rate | paper | no-violation rounding | LB / ES | NV / ES | "
             "us / sample (batched) | latency us | params | paper | training | paper (A100) |\n");
  fprintf(f, "|---|");
  for (int i = 0; i < 15; i++) fprintf(f, "---:|");
  fputc('\n', f);
  for (int i = 0; i < r->n_models; i++) {
    const model_run *mr = &r->models[i];
    assoc_paper_row p = assoc_paper_table1(mr->variant);
    table_row(f, assoc_gnn_variant_name(mr->variant), &mr->test, mr->train_seconds, &p);
  }
  for (int m = 0; m < ASSOC_METHOD_COUNT; m++)
    if (r->base_done[m]) table_row(f, assoc_method_name(m), &r->base[m], NAN, NULL);
  return ferror(f) ? -1 : 0;
}

/* ---- JSON, CSV and plot data ------------------------------------------------------------ */

static int write_config_json(FILE *f, const abl_run *r, const char *plots) {
  const abl_args *a = r->a;
  const assoc_train_config *c = &a->train;
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
  fprintf(f, "\"threads\": %d, \"seconds_total\": %.1f, ", omp_get_max_threads(), r->seconds_total);
  assoc_json_string(f, "plots", plots, "}");
  return ferror(f) ? -1 : 0;
}

int abl_write_json(abl_run *r, const char *plots) {
  assoc_ablation_entry e[ASSOC_GNN_VARIANT_COUNT + ASSOC_METHOD_COUNT];
  int n = 0;
  for (int i = 0; i < r->n_models; i++) {
    model_run *mr = &r->models[i];
    e[n++] = (assoc_ablation_entry){assoc_gnn_variant_name(mr->variant), "model", mr->test,
                                    mr->train_seconds, mr->epochs};
  }
  for (int m = 0; m < ASSOC_METHOD_COUNT; m++)
    if (r->base_done[m])
      e[n++] = (assoc_ablation_entry){assoc_method_name(m), "baseline", r->base[m], NAN, 0};
  char *config = NULL;
  size_t config_len = 0;
  FILE *mem = open_memstream(&config, &config_len);
  if (!mem) return -1;
  write_config_json(mem, r, plots);
  fclose(mem);
  const curve_data *c = &r->curve;
  assoc_ablation_curve curve = {"K", c->points, c->methods, c->x, c->names, c->lb, c->nv};
  assoc_ablation_report rep = {config, e, n, &curve, 1};
  char path[1024];
  sg_io_error err;
  abl_path_in(path, sizeof path, r->a->out, "ablation.json");
  int rc = assoc_ablation_write_json(path, &rep, &err);
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
              i < r->n_models ? assoc_gnn_variant_name(r->models[i].variant) : "ES", s);
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
      abl_write_in_dir(r, "curve_k.csv", write_curve_csv, &r->curve) ||
      abl_write_in_dir(r, "onehot.dat", write_onehot, r))
    return -1;
  return 0;
}
