/* JointGNN on data sets: the evaluation protocol of docs/models.md
 * ("JointGNN"): A_1hot = row argmax of A~, the load violation rate, the
 * load-balanced association (an overloaded BS keeps its N UEs of largest
 * a~) and the rate of the model's own beams re-normalised over the UEs
 * each association serves. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "assoc_beam.h"
#include "assoc_solvers.h"
#include "assoc_train.h"
#include "models_internal.h"

/* Scratch of one batch of B samples (host side). */
typedef struct eval_work {
  double *A;           /* B x K x M: A~ */
  int *one_hot, *lb;   /* B x K */
  double *gain;        /* M x K x K: one sample's */
  double *V_re, *V_im; /* M x K x N: one sample's beams, W^(1/2) */
} eval_work;

static void work_free(eval_work *w) {
  sg_mfree(w->A), sg_mfree(w->one_hot), sg_mfree(w->lb), sg_mfree(w->gain);
  sg_mfree(w->V_re), sg_mfree(w->V_im);
}

static int work_new(const assoc_dataset *ds, int64_t batch, eval_work *w) {
  size_t M = (size_t)ds->M, K = (size_t)ds->K, B = (size_t)batch, MKN = M * K * (size_t)ds->N;
  *w = (eval_work){assoc_zalloc(B * K * M, sizeof(double)), assoc_zalloc(B * K, sizeof(int)),
                   assoc_zalloc(B * K, sizeof(int)),        assoc_zalloc(M * K * K, sizeof(double)),
                   assoc_zalloc(MKN, sizeof(double)),       assoc_zalloc(MKN, sizeof(double))};
  if (w->A && w->one_hot && w->lb && w->gain && w->V_re && w->V_im) return 0;
  work_free(w);
  return -1;
}

/* The one-hot rows of an integer association (B x K, -1: a zero row) as
 * [B, K, M] of dtype dt in g. */
static sg_tensor *assoc_tensor(sg_graph *g, const int *assoc, int64_t B, int K, int M,
                               sg_dtype dt) {
  sg_tensor *A = sg_zeros(g, dt, 3, (int64_t[]){B, K, M});
  for (int64_t i = 0; A && i < B * K; i++)
    if (assoc[i] >= 0) sg_set(A, i * M + assoc[i], 1.0);
  return A;
}

/* The model's raw beams re-normalised per BS over the UEs assoc serves
 * (assoc_beam_normalize with its 0/1 rows), then the float64 rate of each
 * sample (assoc_rate_beams, W^(1/2) units) into rate[s0 .. s0+B). */
static int own_beam_rates(sg_graph *g, const assoc_jointgnn *m, const assoc_dataset *ds,
                          const assoc_jointgnn_output *out, const int *assoc, int64_t s0, int64_t B,
                          eval_work *w, double *rate) {
  double budget[ASSOC_MAX_BS];
  for (int i = 0; i < ds->M; i++) budget[i] = m->cfg.power;
  sg_tensor *A = assoc_tensor(g, assoc, B, ds->K, ds->M, m->cfg.dtype);
  assoc_complex V = A ? assoc_beam_normalize(g, A, out->raw.re, out->raw.im, budget, m->cfg.norm)
                      : (assoc_complex){NULL, NULL};
  if (!V.re) return -1;
  int64_t per = (int64_t)ds->M * ds->K * ds->N;
  for (int64_t b = 0; b < B; b++) {
    assoc_beam_problem p = assoc_beam_problem_at(ds, s0 + b, assoc + b * ds->K);
    double amp = sqrt(p.pt_w); /* model units sqrt(P_t) -> W^(1/2) */
    for (int64_t i = 0; i < per; i++) {
      w->V_re[i] = amp * sg_get(V.re, b * per + i);
      w->V_im[i] = amp * sg_get(V.im, b * per + i);
    }
    rate[b] = assoc_rate_beams(&p, w->V_re, w->V_im, NULL);
  }
  return 0;
}

int assoc_jointgnn_round(const assoc_dataset *ds, int64_t s, const double *A, double *gain,
                         int *one_hot, int *lb) {
  int M = ds->M, K = ds->K, load[ASSOC_MAX_BS];
  assoc_argmax_rows(A, K, M, one_hot);
  assoc_coupling_gain(ds, s, gain);
  assoc_problem p = {M, ds->N, K, gain};
  assoc_load_balance(&p, one_hot, A, lb);
  return assoc_loads(M, K, one_hot, load) > ds->N;
}

/* Row argmax, violation and load balancing of each sample of the batch. */
static void round_batch(const assoc_dataset *ds, int64_t s0, int64_t B, eval_work *w,
                        double *violated, double *dropped) {
  int M = ds->M, K = ds->K;
  for (int64_t b = 0; b < B; b++) {
    *violated += assoc_jointgnn_round(ds, s0 + b, w->A + b * K * M, w->gain, w->one_hot + b * K,
                                      w->lb + b * K);
    for (int k = 0; k < K; k++) *dropped += w->lb[b * K + k] < 0;
  }
}

/* Sums over the samples, divided by S at the end. */
typedef struct eval_sums {
  double soft, onehot, lb, violated, dropped;
} eval_sums;

static void copy_out(const assoc_dataset *ds, int64_t s0, int64_t B, const eval_work *w,
                     const double *r1, const double *rl, assoc_jointgnn_eval *out, eval_sums *t) {
  size_t K = (size_t)ds->K, KM = K * (size_t)ds->M;
  for (int64_t b = 0; b < B; b++) t->onehot += r1[b], t->lb += rl[b];
  if (out->one_hot) memcpy(out->one_hot + s0 * K, w->one_hot, (size_t)B * K * sizeof(int));
  if (out->lb) memcpy(out->lb + s0 * K, w->lb, (size_t)B * K * sizeof(int));
  if (out->rate_onehot_s) memcpy(out->rate_onehot_s + s0, r1, (size_t)B * sizeof(double));
  if (out->rate_lb_s) memcpy(out->rate_lb_s + s0, rl, (size_t)B * sizeof(double));
  if (out->A) memcpy(out->A + s0 * KM, w->A, (size_t)B * KM * sizeof(double));
}

/* One batch [s0, s0 + B): forward, soft rate, roundings, own-beam rates. */
static int eval_batch(sg_graph *g, const assoc_jointgnn *m, double scale, const assoc_dataset *ds,
                      int64_t s0, int64_t B, eval_work *w, double *r1, double *rl,
                      assoc_jointgnn_eval *out, eval_sums *t) {
  sg_graph_reset(g);
  assoc_bfgnn_batch bt;
  if (assoc_bfgnn_batch_make(g, ds, NULL, NULL, s0, B, scale, m->cfg.dtype, &bt)) return -1;
  assoc_jointgnn_output o =
      assoc_jointgnn_forward(g, m, bt.p, bt.q, bt.X, ASSOC_GNN_EVAL, NULL, NULL);
  sg_tensor *R = assoc_jointgnn_rate(g, &o, bt.G_re, bt.G_im);
  if (!R) return -1;
  for (int64_t b = 0; b < B; b++) t->soft += sg_get(R, b);
  for (int64_t i = 0; i < o.assoc->numel; i++) w->A[i] = sg_get(o.assoc, i);
  round_batch(ds, s0, B, w, &t->violated, &t->dropped);
  if (own_beam_rates(g, m, ds, &o, w->one_hot, s0, B, w, r1) ||
      own_beam_rates(g, m, ds, &o, w->lb, s0, B, w, rl))
    return -1;
  copy_out(ds, s0, B, w, r1, rl, out, t);
  return 0;
}

static int eval_all(const assoc_jointgnn *m, double scale, const assoc_dataset *ds, int64_t batch,
                    eval_work *w, double *rates, assoc_jointgnn_eval *out, eval_sums *t) {
  sg_graph *g = sg_graph_new();
  if (!g) return -1;
  sg_set_grad_enabled(g, false);
  int rc = 0;
  for (int64_t s = 0; s < ds->S && !rc; s += batch) {
    int64_t B = ds->S - s < batch ? ds->S - s : batch;
    rc = eval_batch(g, m, scale, ds, s, B, w, rates, rates + batch, out, t);
  }
  sg_graph_free(g);
  return rc;
}

int assoc_jointgnn_evaluate(const assoc_jointgnn *m, double feature_scale, const assoc_dataset *ds,
                            int64_t batch, assoc_jointgnn_eval *out, sg_io_error *err) {
  if (!m || !ds || !out || batch < 1 || !(feature_scale > 0) || ds->S < 1)
    return assoc_fail(err, "JointGNN evaluation: bad arguments (need a model, a data set of >= 1 "
                           "samples, batch >= 1 and a feature scale > 0)");
  if (ds->N != m->cfg.n_antennas)
    return assoc_fail(err, "the model has N = %d antennas, the data set N = %d", m->cfg.n_antennas,
                      ds->N);
  eval_work w;
  double *rates = assoc_zalloc(2 * (size_t)batch, sizeof *rates);
  if (!rates || work_new(ds, batch, &w)) return sg_mfree(rates), assoc_fail(err, "out of memory");
  eval_sums t = {0};
  double t0 = omp_get_wtime();
  int rc = eval_all(m, feature_scale, ds, batch, &w, rates, out, &t);
  double seconds = omp_get_wtime() - t0, S = (double)ds->S;
  work_free(&w), sg_mfree(rates);
  if (rc) return assoc_fail(err, "JointGNN evaluation failed (see the message above)");
  out->samples = ds->S, out->violation_ratio = t.violated / S, out->rate_soft = t.soft / S;
  out->rate_onehot = t.onehot / S, out->rate_lb = t.lb / S, out->mean_dropped = t.dropped / S;
  out->us_per_sample = 1e6 * seconds / S;
  return 0;
}
