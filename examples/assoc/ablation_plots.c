/* assoc ablation, the plots: writes plots.gp (Figures 2a, 2b, 3a, 3b, 4a,
 * 4b and 4c of the paper from the CSV logs, val_baselines.csv, the curve
 * CSVs and onehot.dat) and runs gnuplot on it. With several seeds the
 * training and curve plots draw each model's mean with a band of mean ± sd
 * (train_<model>-seeds.csv, the sd columns of the curve CSVs). */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ablation.h"

/* The PNGs plots.gp writes (every one, whatever the models). */
static const char *const plot_pngs[] = {
    "fig3a_violation.png", "fig2b_loss.png",       "fig2a_val_rate.png", "fig3b_onehot.png",
    "fig4a_rate_vs_k.png", "fig4b_rate_vs_pt.png", "fig4c_rate_vs_m.png"};
#define PLOT_PNGS (int)(sizeof plot_pngs / sizeof *plot_pngs)

/* plots.gp's "set output": png with the suffix gnuplot is given, if any. */
static void set_output(FILE *f, const char *png) {
  fprintf(f, "set output '%s'.out_suffix\n", png);
}

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
  fprintf(f, "%s'train_%s-seeds.csv' using \"epoch\":\"%s_mean\" with lines lw 2 lc %d title '%s'",
          next(first), mr->key, column, lc, mr->name);
  if (dashed)
    fprintf(f, "%s'' using \"epoch\":\"%s_mean\" with lines lw 1 dt 2 lc %d notitle", next(first),
            dashed, lc);
}

/* The models' training series; SM-GNN, trained through its hooks, has no
 * log here. `first` false: other elements follow "plot " already. */
static void plot_models(FILE *f, const abl_run *r, const char *column, const char *dashed,
                        bool *first) {
  for (int i = 0; i < r->n_models; i++) {
    if (r->models[i].index == ABL_SM) continue;
    if (r->a->seeds > 1)
      plot_seeds(f, &r->models[i], i + 1, column, dashed, first);
    else
      plot_log(f, &r->models[i], i + 1, column, dashed, first);
  }
}

/* A run of SM-GNN alone has no training log: an empty frame then, since
 * gnuplot refuses an empty plot command. */
static bool has_training_log(const abl_run *r) {
  for (int i = 0; i < r->n_models; i++)
    if (r->models[i].index != ABL_SM) return true;
  return false;
}

/* The training series of every model; with `dashed` (a second series,
 * dashed) two legend entries say which line style is which. */
static void plot_training(FILE *f, const abl_run *r, const char *column, const char *dashed,
                          const char *solid_means, const char *dashed_means) {
  bool first = true;
  if (!has_training_log(r)) {
    fputs("set yrange [0:1]\nplot [0:1] 2 notitle\nset autoscale y\n", f);
    return;
  }
  fputs("plot ", f);
  plot_models(f, r, column, dashed, &first);
  if (dashed)
    fprintf(f,
            "%sNaN with lines lw 2 lc rgb 'gray30' title 'solid: %s', \\\n     NaN with lines "
            "lw 1 dt 2 lc rgb 'gray30' title 'dashed: %s'",
            next(&first), solid_means, dashed_means);
  fputc('\n', f);
}

/* What the lines and bands of the training plots are. */
static const char *seeds_note(const abl_run *r, char *buf, size_t len) {
  if (r->a->seeds > 1)
    snprintf(buf, len, "lines: mean of %d seeds, bands: +/- sd", r->a->seeds);
  else
    snprintf(buf, len, "seed %llu", (unsigned long long)r->a->seed);
  return buf;
}

/* Fig. 2a: the validation LB rate against epoch, the baselines' LB rates on
 * the same set as horizontal lines. */
static void plot_validation(FILE *f, const abl_run *r) {
  static const char *const style[N_CURVE_BASELINES] = {
      "lc rgb 'black' lw 2", "lc rgb 'gray40' dt 2", "lc rgb 'dark-orange' dt 3",
      "lc rgb 'dark-green' dt 4", "lc rgb 'gray60' dt 5"};
  bool first = true;
  fprintf(f, "\n# Fig. 2a: validation sum-rate against epoch, baselines as lines\n");
  set_output(f, "fig2a_val_rate.png");
  fprintf(f, "set key default\nset key outside right\n");
  char note[96];
  fprintf(f, "set title 'Validation LB sum-rate (MRT, %lld samples; %s)'\n", (long long)r->val.S,
          seeds_note(r, note, sizeof note));
  fprintf(f, "set xlabel 'epoch'\nset ylabel 'sum-rate (bps/Hz)'\nset autoscale y\n");
  fputs("plot ", f);
  plot_models(f, r, "test_lb_rate", NULL, &first);
  if (first) fputs("[1:2] ", f); /* baselines alone: an x range for the lines */
  for (int i = 0; i < N_CURVE_BASELINES; i++)
    fprintf(f, "%s%.6f with lines %s title '%s (validation set)'", next(&first), r->val_base[i],
            style[i], assoc_method_name(abl_curve_baselines[i]));
  fprintf(f, "\nset key default\nset key top right\n");
}

static void plot_onehot(FILE *f, const abl_run *r) {
  int rows = r->n_models + 1, M = r->test.M, K = r->test.K;
  fprintf(f, "\n# Fig. 3b: one-hot associations (black = 1)\n");
  set_output(f, "fig3b_onehot.png");
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

/* Bands of mean ± sd of method i's LB curve and (nv) NV curve (curve CSV
 * columns: x, the methods' LB, their NV, the LB sds and the NV sds of the
 * methods after the baselines). */
static void curve_bands(FILE *f, const curve_data *c, int i, bool nv, bool *first) {
  int seeded = c->methods - N_CURVE_BASELINES, lc = i - N_CURVE_BASELINES + 1;
  int lb_col = i + 2, nv_col = c->methods + i + 2;
  int lb_sd = 2 * c->methods + lc + 1, nv_sd = lb_sd + seeded;
  const int cols[2][2] = {{lb_col, lb_sd}, {nv_col, nv_sd}};
  for (int b = 0; b <= (int)nv; b++)
    fprintf(f,
            "%s'%s' using 1:(column(%d)-column(%d)):(column(%d)+column(%d)) with "
            "filledcurves fs transparent solid %.2f noborder lc %d notitle",
            next(first), c->file, cols[b][0], cols[b][1], cols[b][0], cols[b][1], b ? 0.12 : 0.25,
            lc);
}

/* Per curve: the figure, the output file and the x axis. */
static const char *const curve_fig[ABL_CURVES] = {"4a", "4b", "4c"};
static const char *const *const curve_png = plot_pngs + 4;
static const char *const curve_symbol[ABL_CURVES] = {"K", "P_t", "M"};
static const char *const curve_xlabel[ABL_CURVES] = {
    "number of UEs K (M 2, N 4)", "transmit power P_t per BS (dBm; M 2, N 4, K 8)",
    "number of BSs M (K = M N, N 4)"};

/* One method of a curve: a baseline, a model (LB, and NV dashed) or a
 * baseline with BFGNN beams (dotted). */
static void curve_method(FILE *f, const curve_data *c, int i, bool seeds, bool *first) {
  static const char *const base_style[N_CURVE_BASELINES] = {
      "lc rgb 'black' lw 2 pt 7", "lc rgb 'gray40' lw 1 pt 6 dt 2",
      "lc rgb 'dark-orange' lw 1 pt 5 dt 3", "lc rgb 'dark-green' lw 1 pt 9 dt 4",
      "lc rgb 'gray60' lw 1 pt 2 dt 5"};
  int lc = i - N_CURVE_BASELINES + 1;
  if (i < N_CURVE_BASELINES) {
    const char *label = i == 2 ? "MaxSINR (overloads dropped)" : c->names[i];
    fprintf(f, "%s'%s' using 1:%d with linespoints %s title '%s (MRT)'", next(first), c->file,
            i + 2, base_style[i], label);
    return;
  }
  bool model = i < N_CURVE_BASELINES + c->n_models;
  if (seeds) curve_bands(f, c, i, model, first);
  fprintf(f, "%s'%s' using 1:%d with linespoints lc %d lw 2 pt %d %s title '%s%s' noenhanced",
          next(first), c->file, i + 2, lc, model ? 7 : 13, model ? "" : "dt 3", c->names[i],
          model ? " (LB, MRT)" : " (BFGNN beams)");
  if (model)
    fprintf(f,
            "%s'' using 1:%d with linespoints lc %d lw 1 dt 2 pt 6 title '%s "
            "(no-violation rounding, MRT)'",
            next(first), c->methods + i + 2, lc, c->names[i]);
}

static void plot_curve(FILE *f, const abl_run *r, int ci) {
  const curve_data *c = &r->curves[ci];
  bool seeds = r->a->seeds > 1, first = true;
  fprintf(f, "\n# Fig. %s: sum-rate against %s (trained on M 2, K 8, 30 dBm)\n", curve_fig[ci],
          c->parameter);
  set_output(f, curve_png[ci]);
  fprintf(f, "set key outside right\n");
  fprintf(f, "set title 'Sum-rate against %s (trained: M 2, K 8, 30 dBm; %lld samples/point%s)'\n",
          curve_symbol[ci], (long long)r->a->curve_samples, seeds ? "; bands: +/- sd" : "");
  fprintf(f, "set xlabel '%s'\nset ylabel 'sum-rate (bps/Hz)'\nset xtics %s\n", curve_xlabel[ci],
          ci == CURVE_PT ? "autofreq" : "1");
  fputs("plot ", f);
  for (int i = 0; i < c->methods; i++) curve_method(f, c, i, seeds, &first);
  fprintf(f, "\nset xtics autofreq\nset key default\n");
}

static int write_plots_gp(FILE *f, void *user) {
  const plot_ctx *p = user;
  const abl_run *r = p->r;
  fprintf(f, "# Written by 'assoc ablation'; re-run with: cd <this directory> && gnuplot "
             "plots.gp\n");
  /* assoc ablation itself has gnuplot write the plots under temporary names
   * (out_suffix) and renames them once each is complete. */
  fprintf(f, "if (!exists('out_suffix')) out_suffix = ''\n");
  fprintf(f, "set terminal %s size 1000,600%s\n", p->terminal,
          strcmp(p->terminal, "pngcairo") ? "" : " font ',11'");
  fprintf(f, "set datafile separator comma\nset grid\nset key top right\n");
  char note[96];
  seeds_note(r, note, sizeof note);
  fprintf(f, "\n# Fig. 3a: violation ratio against epoch\n");
  set_output(f, "fig3a_violation.png");
  fprintf(f, "set title 'Violation ratio of the one-hot association against epoch (%s)'\n", note);
  fprintf(f, "set xlabel 'epoch'\nset ylabel 'violation ratio'\nset yrange [0:1]\n");
  fprintf(f, "set key outside right top\n");
  plot_training(f, r, "violation_ratio", "test_violation_ratio", "training batches",
                "validation set");
  fprintf(f, "\n# Fig. 2b: regularised loss (left) and R(soft A) (right) against epoch, on the "
             "training batches\n# (the validation LB rate is Fig. 2a)\n");
  set_output(f, "fig2b_loss.png");
  fprintf(f,
          "set multiplot layout 1,2 title 'Training batches against epoch (%s; validation LB "
          "rate: Fig. 2a)'\n",
          note);
  /* Empty corners: the loss climbs with mu (top left free), the rate
   * rises from its first epochs (bottom right free). */
  fprintf(f, "set key inside left top\nset title 'Regularised loss (eq. 3)'\n");
  fprintf(f, "set ylabel 'loss = -R(soft A) + sum_m mu_m ReLU(load_m - (N - delta))'\nset "
             "autoscale y\n");
  plot_training(f, r, "loss", NULL, NULL, NULL);
  fprintf(f,
          "set key inside right bottom\nset title 'R(soft A): sum-rate of the soft association'\n");
  fprintf(f, "set ylabel 'sum-rate (bps/Hz)'\n");
  plot_training(f, r, "train_rate", NULL, NULL, NULL);
  fprintf(f, "unset multiplot\nset key default\nset key top right\n");
  plot_validation(f, r);
  plot_onehot(f, r);
  for (int ci = 0; ci < ABL_CURVES; ci++) plot_curve(f, r, ci);
  return ferror(f) ? -1 : 0;
}

/* Runs gnuplot with the arguments args (NULL-terminated) in dir; returns
 * its exit status, 127 when it could not be started. Its output goes to
 * our stderr, but for the probes (dir NULL). */
static int run_gnuplot(const char *dir, char *const args[]) {
  fflush(stdout), fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return 127;
  if (pid == 0) {
    if (dir && chdir(dir)) _exit(126);
    if (!dir) {
      FILE *null = freopen("/dev/null", "w", stderr);
      (void)null;
    }
    execvp("gnuplot", args);
    _exit(127);
  }
  int status;
  if (waitpid(pid, &status, 0) < 0) return 127;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static bool has_terminal(const char *name) {
  char set[64];
  snprintf(set, sizeof set, "set terminal %s", name);
  return run_gnuplot(NULL, (char *[]){"gnuplot", "-e", set, NULL}) == 0;
}

/* Whether the file at path is a whole PNG (its signature, and its IEND
 * chunk at the end: gnuplot exits 0 even when a write failed), synced to
 * the disk. */
static bool png_complete(const char *path) {
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  static const unsigned char iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
  unsigned char head[8], tail[12];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  bool ok = fd >= 0 && fstat(fd, &st) == 0 && st.st_size >= 20 && pread(fd, head, 8, 0) == 8 &&
            pread(fd, tail, 12, st.st_size - 12) == 12 && !memcmp(head, sig, 8) &&
            !memcmp(tail, iend, 12) && fsync(fd) == 0;
  if (fd >= 0) close(fd);
  return ok;
}

/* Where gnuplot writes PNG i: its name plus suffix in out. */
static void temp_png(char *buf, size_t len, const char *out, int i, const char *suffix) {
  char name[256];
  snprintf(name, sizeof name, "%s%s", plot_pngs[i], suffix);
  abl_path_in(buf, len, out, name);
}

static void remove_temp_pngs(const char *out, const char *suffix) {
  char path[1024];
  for (int i = 0; i < PLOT_PNGS; i++) {
    temp_png(path, sizeof path, out, i, suffix);
    unlink(path);
  }
}

/* The PNGs gnuplot wrote under their names plus suffix, moved to their
 * names when every one is complete; otherwise removed, with the previous
 * plots left as they were and a note naming the first incomplete one. */
static const char *install_pngs(const char *out, const char *suffix) {
  char tmp[1024], path[1024];
  int bad = 0;
  for (; bad < PLOT_PNGS; bad++) {
    temp_png(tmp, sizeof tmp, out, bad, suffix);
    if (!png_complete(tmp)) break;
  }
  for (int i = 0; i < PLOT_PNGS && bad == PLOT_PNGS; i++) {
    temp_png(tmp, sizeof tmp, out, i, suffix);
    abl_path_in(path, sizeof path, out, plot_pngs[i]);
    if (rename(tmp, path)) bad = i;
  }
  sg_io_error err;
  if (bad == PLOT_PNGS && !sg_io_sync_dir_of(path, &err)) return "written";
  remove_temp_pngs(out, suffix);
  abl_path_in(path, sizeof path, out, plot_pngs[bad < PLOT_PNGS ? bad : 0]);
  fprintf(
      stderr,
      "assoc ablation: NOTE: %s: %s: plots SKIPPED (the previous plots, if any, are kept)\n", path,
      bad < PLOT_PNGS ? "gnuplot did not write it completely (a full disk or a file size limit?)"
                      : err.msg);
  return "skipped: cannot write the plots";
}

/* Writes plots.gp and runs it. Returns a status for the JSON: "written",
 * "skipped: ..." (with a note on stderr). */
const char *abl_make_plots(const abl_run *r) {
  if (r->a->no_plots) return "not requested (--no-plots)";
  const char *terminal = "pngcairo";
  if (!has_terminal("pngcairo")) terminal = "png";
  if (!has_terminal("png") && !strcmp(terminal, "png")) {
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
  char suffix[32], set_suffix[64];
  snprintf(suffix, sizeof suffix, ".tmp%06x", (unsigned)getpid() & 0xffffffu);
  snprintf(set_suffix, sizeof set_suffix, "out_suffix = '%s'", suffix);
  int rc = run_gnuplot(r->a->out, (char *[]){"gnuplot", "-e", set_suffix, "plots.gp", NULL});
  if (rc == 0) return install_pngs(r->a->out, suffix);
  remove_temp_pngs(r->a->out, suffix);
  fprintf(stderr,
          "assoc ablation: NOTE: gnuplot failed (exit status %d) on %s/plots.gp: plots "
          "SKIPPED\n",
          rc, r->a->out);
  return "skipped: gnuplot failed";
}
