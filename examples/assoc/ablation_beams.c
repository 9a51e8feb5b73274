/* assoc ablation, the beams (paper Table 1 row 4 and the _BFGNN curves of
 * Fig. 4): trains BFGNN once per run seed on that run's training set and
 * its association mix (assoc_train_bfgnn, as assoc train --model bfgnn
 * does), then rates each model's load-balanced association of the run (and
 * SKGS-GNN+'s no-violation one) and every baseline's on the test set with
 * intra-cell ZF, WMMSE and BFGNN beams, and the curves' ES, MaxSINR and
 * RandInt associations with BFGNN beams. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "ablation.h"
#include "assoc_beam.h"
#include "train_bfgnn.h"

const char *const abl_beam_value_names[BEAM_VALUES] = {
    "rate_mrt", "rate_zf", "rate_wmmse", "wmmse_us", "rate_bfgnn", "bfgnn_us", "rate_own_beams"};

/* The paper's row 4 (load-balanced sum-rate with BFGNN) of a model. */
static double paper_bfgnn(int index) {
  switch (index) {
  case ASSOC_GNN_ATTSKGS:
    return 14.1;
  case ASSOC_GNN_SKGS:
    return 13.5;
  case ASSOC_GNN_GS:
  case ASSOC_GNN_SMA:
    return 13.2;
  case ABL_SM:
    return 6.0;
  default:
    return NAN;
  }
}

/* ---- the rows ---------------------------------------------------------------------------- */

static beam_row *add_row(abl_run *r, const char *name, const char *assoc, bool seeded,
                         double paper) {
  beam_row *b = &r->beam_rows[r->n_beam_rows++];
  snprintf(b->name, sizeof b->name, "%s", name);
  b->assoc = assoc, b->seeded = seeded, b->paper = paper;
  return b;
}

static void bf_paths(abl_run *r) {
  const abl_args *a = r->a;
  for (int j = 0; j < a->seeds; j++) {
    bf_seed *b = &r->bf[j];
    char name[64];
    b->seed = abl_run_seed(a, j);
    if (a->seeds > 1)
      snprintf(name, sizeof name, "bfgnn-seed%llu.npz", (unsigned long long)b->seed);
    else
      snprintf(name, sizeof name, "bfgnn.npz");
    abl_path_in(b->ckpt, sizeof b->ckpt, a->out, name);
  }
}

int abl_beams_init(abl_run *r) {
  int n = r->n_models + 1 + ASSOC_METHOD_COUNT;
  r->beam_rows = calloc((size_t)n, sizeof *r->beam_rows);
  if (!r->a->no_bfgnn) r->bf = calloc((size_t)r->a->seeds, sizeof *r->bf);
  if (!r->beam_rows || (!r->a->no_bfgnn && !r->bf)) {
    fprintf(stderr, "assoc ablation: out of memory\n");
    return -1;
  }
  for (int i = 0; i < r->n_models; i++) {
    const model_run *mr = &r->models[i];
    add_row(r, mr->name, "load-balanced", true, paper_bfgnn(mr->index));
    if (mr->index == ABL_IMPROVED) add_row(r, mr->name, "no-violation", true, NAN);
  }
  for (int m = 0; m < ASSOC_METHOD_COUNT; m++)
    if (r->base_done[m]) add_row(r, assoc_method_name(m), "load-balanced", false, NAN);
  if (r->bf) bf_paths(r);
  return 0;
}

/* ---- rating an association ---------------------------------------------------------------- */

typedef struct beam_ctx {
  const abl_run *r;
  const assoc_dataset *ds;
  double *V_re, *V_im, *rate; /* scratch: S x M x K x N, S */
  const assoc_bfgnn *bf;      /* the run's BFGNN, or NULL */
  double bf_scale;
} beam_ctx;

static double mean_rate(const double *x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += x[i];
  return s / (double)n;
}

/* The mean rate of assoc on c->ds with a classical method (NaN and a note
 * when the method refuses it); *us its time per sample. */
static double rate_classical(beam_ctx *c, const int *assoc, assoc_beam_method m, const char *what,
                             double *us) {
  sg_io_error err;
  if (assoc_beams_run(c->ds, assoc, m, c->V_re, c->V_im, c->rate, NULL, us, &err)) {
    fprintf(stderr, "assoc ablation: %s beams for %s: %s\n", assoc_beam_method_name(m), what,
            err.msg);
    return *us = NAN;
  }
  return mean_rate(c->rate, c->ds->S);
}

/* The same with the run's BFGNN. */
static double rate_bfgnn(beam_ctx *c, const assoc_dataset *ds, const int *assoc, const char *what,
                         double *us) {
  sg_io_error err;
  if (assoc_bfgnn_beams_run(c->bf, c->bf_scale, ds, assoc, 256, c->V_re, c->V_im, c->rate, us,
                            &err)) {
    fprintf(stderr, "assoc ablation: BFGNN cannot run on %s: %s\n", what, err.msg);
    return *us = NAN;
  }
  return mean_rate(c->rate, ds->S);
}

/* Row values of assoc on the test set: ZF and WMMSE (classical true), BFGNN. */
static void rate_row(beam_ctx *c, const int *assoc, const char *what, bool classical, double *v) {
  if (classical) {
    double us;
    v[BEAM_ZF] = rate_classical(c, assoc, ASSOC_BEAM_ZF, what, &us);
    v[BEAM_WMMSE] = rate_classical(c, assoc, ASSOC_BEAM_WMMSE, what, &v[BEAM_WMMSE_US]);
  }
  v[BEAM_BFGNN] = v[BEAM_BFGNN_US] = NAN;
  if (c->bf) v[BEAM_BFGNN] = rate_bfgnn(c, c->ds, assoc, what, &v[BEAM_BFGNN_US]);
}

/* The rows of run j, in abl_beams_init's order. */
static void rate_rows(abl_run *r, int j, beam_ctx *c) {
  beam_row *b = r->beam_rows;
  for (int i = 0; i < r->n_models; i++) {
    const model_run *mr = &r->models[i];
    const seed_run *sr = &mr->runs[j];
    for (int nv = 0; nv <= (mr->index == ABL_IMPROVED); nv++, b++) {
      double *v = b->v[j];
      abl_note(r->a, "beams: %s (%s), seed %llu\n", b->name, b->assoc,
               (unsigned long long)sr->seed);
      v[BEAM_MRT] = nv ? sr->test.rate_no_violation : sr->test.rate_lb;
      v[BEAM_OWN] = mr->index == ABL_SM ? sr->sm_own_rate : NAN;
      rate_row(c, nv ? sr->nv_assoc : sr->lb_assoc, b->name, true, v);
      b->n = j + 1;
    }
  }
  for (int m = 0; m < ASSOC_METHOD_COUNT; m++) {
    if (!r->base_done[m]) continue;
    double *v = b->v[j];
    if (j == 0) abl_note(r->a, "beams: %s\n", b->name);
    for (int k = 0; j > 0 && k < BEAM_VALUES; k++) v[k] = b->v[0][k]; /* deterministic */
    v[BEAM_MRT] = r->base[m].rate_lb, v[BEAM_OWN] = NAN;
    rate_row(c, r->base_lb[m], b->name, j == 0, v);
    b->n = j + 1, b++;
  }
}

/* The curves' baseline associations with BFGNN beams, run j. */
static void rate_curves(abl_run *r, int j, beam_ctx *c) {
  for (int ci = 0; ci < ABL_CURVES; ci++) {
    curve_data *cd = &r->curves[ci];
    for (int p = 0; p < cd->points; p++)
      for (int b = 0; b < N_BF_CURVE; b++) {
        char what[96];
        double us;
        snprintf(what, sizeof what, "%s at %s = %g", cd->bf_names[b], cd->parameter, cd->x[p]);
        r->bf[j].curve[ci][b][p] = rate_bfgnn(c, &cd->sets[p], cd->bf_assoc[p][b], what, &us);
      }
  }
}

/* ---- BFGNN ---------------------------------------------------------------------------------- */

/* Trains run j's BFGNN (on every rank; rank 0 writes its checkpoint). */
static int train_bfgnn(abl_run *r, int j, const assoc_dataset *train) {
  const abl_args *a = r->a;
  bf_seed *b = &r->bf[j];
  assoc_train_config c = a->train;
  c.d = a->bf_d, c.h = a->bf_h, c.epochs = a->bf_epochs, c.t0 = a->bf_t0;
  c.seed = b->seed, c.feature_scale = 0;
  abl_note(a,
           "training BFGNN seed %llu (%s head, d %d, h %d, %d epochs of %lld mini-batches of "
           "%lld)\n",
           (unsigned long long)b->seed,
           a->bf_head == ASSOC_BFGNN_HEAD_DUALITY ? "duality" : "direct", c.d, c.h, c.epochs,
           (long long)c.batches_per_epoch, (long long)c.batch);
  double t0 = omp_get_wtime();
  assoc_train_beam_opts bo = {.norm = ASSOC_BEAM_PROJECT, .head = a->bf_head, .penalty_after = -1};
  if (assoc_train_bfgnn(&c, train, &bo, b->ckpt, true) != ASSOC_EXIT_OK) return -1;
  b->train_seconds = omp_get_wtime() - t0;
  return 0;
}

/* Run j's BFGNN, read back from its checkpoint. */
static assoc_bfgnn *read_bfgnn(abl_run *r, int j, double *scale) {
  bf_seed *b = &r->bf[j];
  sg_io_error err;
  assoc_bfgnn *m = assoc_bfgnn_checkpoint_read(b->ckpt, scale, &err);
  if (!m) fprintf(stderr, "assoc ablation: %s\n", err.msg);
  if (m) b->params = assoc_bfgnn_param_count(m);
  return m;
}

static void free_ctx(beam_ctx *c) {
  free(c->V_re), free(c->V_im), free(c->rate);
}

/* Scratch for the largest data set: the test set or a curve point. */
static int alloc_ctx(const abl_run *r, beam_ctx *c) {
  size_t n = (size_t)r->test.S * r->test.M * r->test.K * r->test.N, s = (size_t)r->test.S;
  for (int ci = 0; ci < ABL_CURVES; ci++)
    for (int p = 0; p < r->curves[ci].points; p++) {
      const assoc_dataset *d = &r->curves[ci].sets[p];
      size_t m = (size_t)d->S * d->M * d->K * d->N;
      n = m > n ? m : n, s = (size_t)d->S > s ? (size_t)d->S : s;
    }
  c->V_re = malloc(n * sizeof *c->V_re), c->V_im = malloc(n * sizeof *c->V_im);
  c->rate = malloc(s * sizeof *c->rate);
  if (c->V_re && c->V_im && c->rate) return 0;
  fprintf(stderr, "assoc ablation: out of memory\n");
  return free_ctx(c), -1;
}

static void free_run_assocs(abl_run *r, int j) {
  for (int i = 0; i < r->n_models; i++) {
    seed_run *sr = &r->models[i].runs[j];
    free(sr->lb_assoc), free(sr->nv_assoc);
    sr->lb_assoc = sr->nv_assoc = NULL;
  }
}

int abl_beams_seed(abl_run *r, int j, const assoc_dataset *train) {
  double t0 = omp_get_wtime();
  if (r->bf && train_bfgnn(r, j, train)) return -1;
  if (!abl_lead()) return 0; /* rank 0 alone rates the beams */
  beam_ctx c = {.r = r, .ds = &r->test};
  assoc_bfgnn *bf = NULL;
  if (r->bf && !(bf = read_bfgnn(r, j, &c.bf_scale))) return -1;
  c.bf = bf;
  int rc = alloc_ctx(r, &c);
  if (!rc) rate_rows(r, j, &c);
  if (!rc && bf) rate_curves(r, j, &c);
  free_ctx(&c);
  assoc_bfgnn_free(bf);
  free_run_assocs(r, j);
  r->seconds_beams += omp_get_wtime() - t0;
  return rc;
}

/* ---- means and sds -------------------------------------------------------------------------- */

static void summarise_bf_curves(abl_run *r) {
  double x[ABL_MAX_SEEDS];
  for (int ci = 0; ci < ABL_CURVES; ci++) {
    curve_data *c = &r->curves[ci];
    for (int b = 0; b < N_BF_CURVE; b++)
      for (int p = 0; p < c->points; p++) {
        for (int j = 0; j < r->a->seeds; j++) x[j] = r->bf[j].curve[ci][b][p];
        size_t at = (size_t)(N_CURVE_BASELINES + c->n_models + b) * c->points + p;
        assoc_mean_sd(x, r->a->seeds, 1, &c->lb[at], &c->lb_sd[at]);
        c->nv[at] = c->lb[at], c->nv_sd[at] = c->lb_sd[at];
      }
  }
}

void abl_beams_summarise(abl_run *r) {
  for (int i = 0; i < r->n_beam_rows; i++) {
    beam_row *b = &r->beam_rows[i];
    for (int k = 0; k < BEAM_VALUES; k++)
      assoc_mean_sd(&b->v[0][k], b->n, BEAM_VALUES, &b->mean[k], &b->sd[k]);
  }
  if (r->bf) summarise_bf_curves(r);
}

void abl_beams_free(abl_run *r) {
  free(r->beam_rows), free(r->bf);
  r->beam_rows = NULL, r->bf = NULL;
}
