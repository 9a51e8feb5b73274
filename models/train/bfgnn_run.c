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

/* One batch [s, s + B): the model's beams, scaled by sqrt(P_t) into
 * V_re/V_im (W^(1/2)) at sample offsets, and the rates of those beams;
 * *seconds accumulates the time of the beams (inputs, forward pass, copy),
 * not of the rates. */
static int infer_batch(sg_graph *g, const assoc_bfgnn *m, double scale, const assoc_dataset *ds,
                       const int *assoc, int64_t s, int64_t B, double *V_re, double *V_im,
                       double *rate, double *seconds) {
  double t0 = omp_get_wtime();
  sg_graph_reset(g);
  assoc_bfgnn_batch bt;
  if (assoc_bfgnn_batch_make(g, ds, assoc, NULL, s, B, scale, m->cfg.dtype, &bt)) return -1;
  assoc_complex V = assoc_bfgnn_forward(g, m, bt.p, bt.q, bt.X, bt.A);
  if (!V.re || !V.im) return -1;
  double amp = sqrt(assoc_beam_problem_at(ds, s, assoc + s * ds->K).pt_w); /* sqrt(P_t), W */
  int64_t per = (int64_t)ds->M * ds->K * ds->N;
  for (int64_t i = 0; i < B * per; i++) {
    V_re[s * per + i] = amp * sg_get(V.re, i);
    V_im[s * per + i] = amp * sg_get(V.im, i);
  }
  for (int64_t b = s; b < s + B; b++)
    fit_budget(ds, m->cfg.power * amp * amp, V_re + b * per, V_im + b * per);
  *seconds += omp_get_wtime() - t0;
  for (int64_t b = s; b < s + B; b++) {
    assoc_beam_problem p = assoc_beam_problem_at(ds, b, assoc + b * ds->K);
    rate[b] = assoc_rate_beams(&p, V_re + b * per, V_im + b * per, NULL);
  }
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

int assoc_bfgnn_beams_run(const assoc_bfgnn *m, double feature_scale, const assoc_dataset *ds,
                          const int *assoc, int64_t batch, double *V_re, double *V_im, double *rate,
                          double *us_per_sample, sg_io_error *err) {
  if (!m || !ds || !assoc || batch < 1 || !(feature_scale > 0))
    return assoc_fail(err, "BFGNN beams: bad arguments");
  if (ds->N != m->cfg.n_antennas)
    return assoc_fail(err, "the model has N = %d antennas, the data set N = %d", m->cfg.n_antennas,
                      ds->N);
  if (check_assoc(ds, assoc, err)) return -1;
  sg_graph *g = sg_graph_new();
  if (!g) return assoc_fail(err, "out of memory");
  sg_set_grad_enabled(g, false);
  double t = 0;
  int rc = 0;
  for (int64_t s = 0; s < ds->S && !rc; s += batch) {
    int64_t B = ds->S - s < batch ? ds->S - s : batch;
    rc = infer_batch(g, m, feature_scale, ds, assoc, s, B, V_re, V_im, rate, &t);
  }
  sg_graph_free(g);
  if (rc)
    return assoc_fail(err,
                      "BFGNN beams failed: an association out of range or over a BS's "
                      "load N = %d (see the message above), or out of memory",
                      ds->N);
  if (us_per_sample) *us_per_sample = 1e6 * t / (double)ds->S;
  return 0;
}
