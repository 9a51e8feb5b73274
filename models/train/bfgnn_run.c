/* BFGNN on data sets: the training association mix (RandInt, MaxSINR-capped
 * and, when small enough, ES) and batched inference of the beams of an
 * association in the layout and units of assoc_beam.h. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "assoc_beam.h"
#include "assoc_train.h"
#include "models_internal.h"

void assoc_bfgnn_mix_free(assoc_bfgnn_mix *x) {
  for (int i = 0; i < x->n; i++) sg_mfree(x->assocs[i]);
  *x = (assoc_bfgnn_mix){0};
}

int assoc_bfgnn_training_mix(const assoc_dataset *ds, uint64_t seed, double es_max_feasible,
                             assoc_bfgnn_mix *x, sg_io_error *err) {
  *x = (assoc_bfgnn_mix){0};
  x->es_skipped = assoc_feasible_count(ds->M, ds->N, ds->K) > es_max_feasible;
  const assoc_method methods[] = {ASSOC_RANDINT, ASSOC_MAXSINR_CAPPED, ASSOC_ES};
  int n = x->es_skipped ? 2 : 3;
  assoc_baseline_opts o = assoc_baseline_defaults();
  o.seed = seed;
  double *rate = sg_malloc((size_t)ds->S * sizeof *rate), ms;
  int rc = rate ? 0 : assoc_fail(err, "out of memory for the training associations");
  for (int i = 0; i < n && !rc; i++) {
    x->assocs[i] = sg_malloc((size_t)(ds->S * ds->K) * sizeof(int));
    x->names[i] = assoc_method_name(methods[i]);
    x->n = i + 1;
    rc = x->assocs[i] ? 0 : assoc_fail(err, "out of memory for the training associations");
    if (!rc) rc = assoc_run_method(ds, methods[i], &o, x->assocs[i], rate, &ms, NULL, NULL, err);
  }
  sg_mfree(rate);
  if (rc) assoc_bfgnn_mix_free(x);
  return rc;
}

/* Scales each BS's beams of one sample (M x K x N) onto its budget (W)
 * when they exceed it. The model normalises in its own dtype: a float32
 * model's beams meet the budget only to float32 round-off (measured: up to
 * 2e-7 above it), and the written float64 beams must meet it exactly. */
static void fit_budget(const assoc_dataset *ds, double budget, double *V_re, double *V_im) {
  int64_t KN = (int64_t)ds->K * ds->N;
  for (int m = 0; m < ds->M; m++) {
    double *re = V_re + m * KN, *im = V_im + m * KN, e = 0;
    for (int64_t i = 0; i < KN; i++) e += re[i] * re[i] + im[i] * im[i];
    if (!(e > budget)) continue;
    double f = sqrt(budget / e) * (1 - 0x1p-52); /* the product rounds below the budget */
    for (int64_t i = 0; i < KN; i++) re[i] *= f, im[i] *= f;
  }
}

/* sqrt(P_t) in W^(1/2) of sample s (the same for every sample of a data set). */
static double root_pt(const assoc_dataset *ds, const int *assoc, int64_t s) {
  return sqrt(assoc_beam_problem_at(ds, s, assoc + s * ds->K).pt_w);
}

/* Each BS of samples [s, s + B) within its budget m->cfg.power P_t. */
static void fit_batch(const assoc_bfgnn *m, const assoc_dataset *ds, double amp, int64_t s,
                      int64_t B, double *V_re, double *V_im) {
  int64_t per = (int64_t)ds->M * ds->K * ds->N;
  for (int64_t b = s; b < s + B; b++)
    fit_budget(ds, m->cfg.power * amp * amp, V_re + b * per, V_im + b * per);
}

/* float32 inputs and beams of one batch of the fused inference. */
typedef struct fused_batch {
  float *p, *q, *X, *A, *V_re, *V_im;
} fused_batch;

static void fused_batch_free(fused_batch *fb) {
  float *all[] = {fb->p, fb->q, fb->X, fb->A, fb->V_re, fb->V_im};
  for (int i = 0; i < 6; i++) sg_mfree(all[i]);
}

static int fused_batch_new(const assoc_dataset *ds, int64_t B, fused_batch *fb) {
  int64_t MK = (int64_t)ds->M * ds->K, per = MK * ds->N;
  int64_t sizes[] = {B * ds->M, B * ds->K, 2 * B * per, B * MK, B * per, B * per};
  float **all[] = {&fb->p, &fb->q, &fb->X, &fb->A, &fb->V_re, &fb->V_im};
  int rc = 0;
  for (int i = 0; i < 6; i++) {
    *all[i] = sg_malloc((size_t)sizes[i] * sizeof(float));
    if (!*all[i]) rc = -1;
  }
  return rc;
}

/* The model's inputs of samples [s, s + B) (as assoc_bfgnn_batch_make's). */
static void fused_inputs(const assoc_dataset *ds, const int *assoc, int64_t s, int64_t B,
                         double scale, fused_batch *fb) {
  int M = ds->M, K = ds->K;
  double bp[ASSOC_MAX_BS], bq[ASSOC_MAX_UES];
  for (int64_t b = 0; b < B; b++) {
    assoc_node_features(ds, s + b, ASSOC_FEATURES_CHANNEL, bp, bq);
    for (int m = 0; m < M; m++) fb->p[b * M + m] = (float)bp[m];
    for (int k = 0; k < K; k++) {
      fb->q[b * K + k] = (float)bq[k];
      for (int m = 0; m < M; m++) fb->A[(b * K + k) * M + m] = assoc[(s + b) * K + k] == m;
    }
  }
  assoc_features_fill_f32(ds, s, B, scale, fb->X);
}

/* One batch [s, s + B) of a float32 model by the fused inference. */
static int infer_batch_fused(assoc_bfgnn_fused *f, const assoc_bfgnn *m, double scale,
                             const assoc_dataset *ds, const int *assoc, int64_t s, int64_t B,
                             fused_batch *fb, double *V_re, double *V_im) {
  fused_inputs(ds, assoc, s, B, scale, fb);
  assoc_bfgnn_fused_inputs in = {
      .B = B, .M = ds->M, .K = ds->K, .p = fb->p, .q = fb->q, .X = fb->X, .A = fb->A};
  if (assoc_bfgnn_fused_beams(f, &in, fb->V_re, fb->V_im)) return -1;
  double amp = root_pt(ds, assoc, s);
  int64_t n = B * ds->M * ds->K * ds->N, at = s * ds->M * ds->K * ds->N;
  for (int64_t i = 0; i < n; i++)
    V_re[at + i] = amp * (double)fb->V_re[i], V_im[at + i] = amp * (double)fb->V_im[i];
  fit_batch(m, ds, amp, s, B, V_re, V_im);
  return 0;
}

/* One batch [s, s + B) of a float64 model by the op-by-op forward. */
static int infer_batch_ops(sg_graph *g, const assoc_bfgnn *m, double scale, const assoc_dataset *ds,
                           const int *assoc, int64_t s, int64_t B, double *V_re, double *V_im) {
  sg_graph_reset(g);
  assoc_bfgnn_batch bt;
  if (assoc_bfgnn_batch_make(g, ds, assoc, NULL, s, B, scale, m->cfg.dtype, &bt)) return -1;
  assoc_complex V = assoc_bfgnn_forward(g, m, bt.p, bt.q, bt.X, bt.A);
  if (!V.re || !V.im) return -1;
  double amp = root_pt(ds, assoc, s);
  int64_t n = B * ds->M * ds->K * ds->N, at = s * ds->M * ds->K * ds->N;
  for (int64_t i = 0; i < n; i++)
    V_re[at + i] = amp * sg_get(V.re, i), V_im[at + i] = amp * sg_get(V.im, i);
  fit_batch(m, ds, amp, s, B, V_re, V_im);
  return 0;
}

/* Every association in range with every load <= N, or a message naming
 * the first sample that is not. */
static int check_assoc(const assoc_dataset *ds, const int *assoc, sg_io_error *err) {
  sg_io_error e;
  for (int64_t s = 0; s < ds->S; s++) {
    assoc_beam_problem p = assoc_beam_problem_at(ds, s, assoc + s * ds->K);
    if (assoc_beam_check(&p, 1, &e)) return assoc_fail(err, "sample %lld: %s", (long long)s, e.msg);
  }
  return 0;
}

/* The beams of every sample in batches; *seconds: their time (inputs,
 * forward pass, copy). */
static int infer_all(const assoc_bfgnn *m, double scale, const assoc_dataset *ds, const int *assoc,
                     int64_t batch, double *V_re, double *V_im, double *seconds) {
  bool fused = m->cfg.dtype == SG_F32;
  int64_t cap = batch < ds->S ? batch : ds->S;
  fused_batch fb = {0};
  assoc_bfgnn_fused *f = fused ? assoc_bfgnn_fused_new(m) : NULL;
  sg_graph *g = fused ? NULL : sg_graph_new();
  int rc = (fused ? !f || fused_batch_new(ds, cap, &fb) : !g) ? -1 : 0;
  if (g) sg_set_grad_enabled(g, false);
  for (int64_t s = 0; s < ds->S && !rc; s += batch) {
    int64_t B = ds->S - s < batch ? ds->S - s : batch;
    double t0 = omp_get_wtime();
    rc = fused ? infer_batch_fused(f, m, scale, ds, assoc, s, B, &fb, V_re, V_im)
               : infer_batch_ops(g, m, scale, ds, assoc, s, B, V_re, V_im);
    *seconds += omp_get_wtime() - t0;
  }
  fused_batch_free(&fb);
  assoc_bfgnn_fused_free(f);
  sg_graph_free(g);
  return rc;
}

int assoc_bfgnn_beams_run(const assoc_bfgnn *m, double feature_scale, const assoc_dataset *ds,
                          const int *assoc, int64_t batch, double *V_re, double *V_im, double *rate,
                          double *us_per_sample, sg_io_error *err) {
  if (!m || !ds || !assoc || batch < 1 || !(feature_scale > 0))
    return assoc_fail(err, "BFGNN beams: bad arguments");
  if (ds->N != m->cfg.n_antennas)
    return assoc_fail(err, "the model has N = %d antennas, the data set N = %d", m->cfg.n_antennas,
                      ds->N);
  if (check_assoc(ds, assoc, err)) return -1;
  double t = 0;
  if (infer_all(m, feature_scale, ds, assoc, batch, V_re, V_im, &t))
    return assoc_fail(err,
                      "BFGNN beams failed: an association out of range or over a BS's "
                      "load N = %d (see the message above), or out of memory",
                      ds->N);
  int64_t per = (int64_t)ds->M * ds->K * ds->N;
  for (int64_t s = 0; s < ds->S; s++) {
    assoc_beam_problem p = assoc_beam_problem_at(ds, s, assoc + s * ds->K);
    rate[s] = assoc_rate_beams(&p, V_re + s * per, V_im + s * per, NULL);
  }
  if (us_per_sample) *us_per_sample = 1e6 * t / (double)ds->S;
  return 0;
}
