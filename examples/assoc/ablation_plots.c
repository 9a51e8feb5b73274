/* assoc ablation, the plots: writes plots.gp (Figures 2b, 3a, 3b and 4a of
 * the paper from the CSV logs, curve_k.csv and onehot.dat) and runs gnuplot
 * on it. With several seeds the training and curve plots draw each model's
 * mean with a band of mean ± sd (train_<model>-seeds.csv, the sd columns
 * of curve_k.csv). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ablation.h"

typedef struct plot_ctx {
  const abl_run *r;
  const char *terminal; /* "pngcairo" or "png" */
} plot_ctx;

/* ", \\\n     " between the plot elements after the first. */
static const char *next(bool *first) {
  const char *sep = *first ? "" : ", \\\n     ";
  *first = false;
  return sep;
}

/* One model's training series from its log (one seed). */
static void plot_log(FILE *f, const model_run *mr, int lc, const char *column, const char *dashed,
                     bool *first) {
  fprintf(f, "%s'train_%s.csv' using \"epoch\":\"%s\" with lines lw 2 lc %d title '%s'",
          next(first), mr->key, column, lc, mr->name);
  if (dashed)
    fprintf(f, "%s'' using \"epoch\":\"%s\" with lines lw 1 dt 2 lc %d notitle", next(first),
            dashed, lc);
}

/* A band of mean ± sd of `series` from train_<model>-seeds.csv. */
static void seeds_band(FILE *f, const model_run *mr, int lc, const char *series, double alpha,
                       bool *first) {
  fprintf(f,
          "%s'train_%s-seeds.csv' using \"epoch\":(column(\"%s_mean\")-column(\"%s_sd\")):"
          "(column(\"%s_mean\")+column(\"%s_sd\")) with filledcurves fs transparent solid %.2f "
          "noborder lc %d notitle",
          next(first), mr->key, series, series, series, series, alpha, lc);
}

/* One model's mean training series over the seeds, each with its band. */
static void plot_seeds(FILE *f, const model_run *mr, int lc, const char *column, const char *dashed,
                       bool *first) {
  seeds_band(f, mr, lc, column, 0.25, first);
  if (dashed) seeds_band(f, mr, lc, dashed, 0.12, first);
  fprintf(f,
          "%s'train_%s-seeds.csv' using \"epoch\":\"%s_mean\" with lines lw 2 lc %d title '%s "
          "(mean of %d seeds)'",
          next(first), mr->key, column, lc, mr->name, mr->n_runs);
  if (dashed)
    fprintf(f, "%s'' using \"epoch\":\"%s_mean\" with lines lw 1 dt 2 lc %d notitle", next(first),
            dashed, lc);
}

static void plot_training(FILE *f, const abl_run *r, const char *column, const char *dashed) {
  bool first = true;
  fputs("plot ", f);
  for (int i = 0; i < r->n_models; i++) {
    if (r->a->seeds > 1)
      plot_seeds(f, &r->models[i], i + 1, column, dashed, &first);
    else
      plot_log(f, &r->models[i], i + 1, column, dashed, &first);
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
      const char *name = i < r->n_models ? r->models[i].name : "ES";
      fprintf(f, "set title '%s, sample %d' font ',9'\n", name, s);
      fprintf(f, "plot 'onehot.dat' index %d matrix with image pixels\n", i * ONEHOT_SAMPLES + s);
    }
  fprintf(f, "unset multiplot\nset datafile separator comma\nset autoscale\nset xtics autofreq "
             "font ''\nset ytics autofreq "
             "font ''\nset key\nset grid\n");
}

/* Bands of mean ± sd of model i's LB and NV curves (curve_k.csv columns:
 * K, the methods' LB, their NV, the models' LB sd, the models' NV sd). */
static void curve_bands(FILE *f, const curve_data *c, int i, bool *first) {
  int models = c->methods - N_CURVE_BASELINES, lc = i - N_CURVE_BASELINES + 1;
  int lb = i + 2, nv = c->methods + i + 2;
  int lb_sd = 2 * c->methods + lc + 1, nv_sd = lb_sd + models;
  const int cols[2][2] = {{lb, lb_sd}, {nv, nv_sd}};
  for (int b = 0; b < 2; b++)
    fprintf(f,
            "%s'curve_k.csv' using 1:(column(%d)-column(%d)):(column(%d)+column(%d)) with "
            "filledcurves fs transparent solid %.2f noborder lc %d notitle",
            next(first), cols[b][0], cols[b][1], cols[b][0], cols[b][1], b ? 0.12 : 0.25, lc);
}

static void plot_curve(FILE *f, const abl_run *r) {
  const curve_data *c = &r->curve;
  bool seeds = r->a->seeds > 1, first = true;
  fprintf(f, "\n# Fig. 4a: sum-rate against the number of UEs (trained on K = 8)\n");
  fprintf(f, "set output 'fig4a_rate_vs_k.png'\nset key outside right\n");
  fprintf(f,
          "set title 'Load-balanced sum-rate against K (M 2, N 4; models trained on K 8, "
          "%lld samples per point%s)'\n",
          (long long)r->a->curve_samples, seeds ? "; models: mean +/- sd over the seeds" : "");
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
    if (model && seeds) curve_bands(f, c, i, &first);
    const char *label = i == 2 ? "MaxSINR (overloads dropped)" : c->names[i];
    fprintf(f, "%s'curve_k.csv' using 1:%d with linespoints %s title '%s%s'", next(&first), i + 2,
            model ? style : base_style[i], label, model ? " (LB)" : "");
    if (model)
      fprintf(f,
              "%s'' using 1:%d with linespoints lc %d lw 1 dt 2 pt 6 title '%s "
              "(no-violation rounding)'",
              next(&first), c->methods + i + 2, i - N_CURVE_BASELINES + 1, c->names[i]);
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
  fprintf(f,
          "set title 'Load violation ratio of the one-hot association against epoch "
          "(solid: training batches, dashed: validation set%s)'\n",
          r->a->seeds > 1 ? "; bands: mean +/- sd over the seeds" : "");
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
const char *abl_make_plots(const abl_run *r) {
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
    abl_write_in_dir(r, "plots.gp", write_plots_gp, &p);
    return "skipped: gnuplot not found";
  }
  plot_ctx p = {r, terminal};
  if (abl_write_in_dir(r, "plots.gp", write_plots_gp, &p)) return "skipped: cannot write plots.gp";
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
