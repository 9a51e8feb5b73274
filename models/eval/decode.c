/* Sampled decoding of a fractional association (assoc_eval.h): the best, by
 * the true sum-rate, of the no-violation rounding of A~ and of roundings of
 * A~ perturbed with Gumbel noise, i.e. of draws from the model's
 * distribution over feasible associations. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "assoc_eval.h"
#include "models_internal.h"

/* Scratch of one thread. */
typedef struct decode_scratch {
  double *gain, *logits;
  int *cand;
  assoc_assign_work *assign;
} decode_scratch;

static void scratch_free(decode_scratch *s) {
  sg_mfree(s->gain), sg_mfree(s->logits), sg_mfree(s->cand);
  assoc_assign_work_free(s->assign);
}

static int scratch_alloc(decode_scratch *s, int M, int N, int K) {
  *s = (decode_scratch){sg_malloc((size_t)M * K * K * sizeof(double)),
                        sg_malloc((size_t)K * M * sizeof(double)),
                        sg_malloc((size_t)K * sizeof(int)), assoc_assign_work_new(M, N, K)};
  if (s->gain && s->logits && s->cand && s->assign) return 0;
  scratch_free(s);
  return -1;
}

/* Sample s: the best of the draws; returns its rate, its association in best. */
static double decode_sample(const assoc_dataset *ds, int64_t s, const double *A, int draws,
                            uint64_t seed, decode_scratch *w, int *best) {
  int M = ds->M, N = ds->N, K = ds->K;
  const double *As = A + s * K * M;
  sg_rng r;
  sg_rng_seed(&r, assoc_stream_seed(seed, 2, (uint64_t)s));
  assoc_coupling_gain(ds, s, w->gain);
  for (int i = 0; i < K * M; i++)
    w->logits[i] = As[i] > 0 ? fmax(log(As[i]), ASSOC_LOG_FLOOR) : ASSOC_LOG_FLOOR;
  double best_rate = -INFINITY;
  for (int d = 0; d < draws; d++) {
    /* draw 0 is the plain rounding; the others add Gumbel noise to log a~ */
    double *weight = assoc_assign_work_weights(w->assign);
    for (int i = 0; i < K * M; i++) weight[i] = w->logits[i] + (d ? sg_rng_gumbel(&r) : 0.0);
    assoc_assign_max_weight(weight, M, N, K, w->assign, w->cand);
    double rate = assoc_rate_int(w->gain, M, K, w->cand, NULL);
    if (rate > best_rate) best_rate = rate, memcpy(best, w->cand, (size_t)K * sizeof *best);
  }
  return best_rate;
}

int assoc_eval_sampled(const assoc_dataset *ds, const double *A, int draws, uint64_t seed,
                       double *rate, int *assoc, double *us_per_sample) {
  if (draws < 1) return -1;
  int failed = 0;
  double busy = 0.0;
#pragma omp parallel reduction(+ : busy)
  {
    decode_scratch w;
    int *own = sg_malloc((size_t)ds->K * sizeof *own);
    int ok = scratch_alloc(&w, ds->M, ds->N, ds->K) == 0 && own;
    if (!ok) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t s = 0; s < ds->S; s++) {
      if (!ok) continue;
      double t0 = omp_get_wtime();
      int *dst = assoc ? assoc + s * ds->K : own;
      rate[s] = decode_sample(ds, s, A, draws, seed, &w, dst);
      busy += omp_get_wtime() - t0;
    }
    if (ok) scratch_free(&w);
    sg_mfree(own);
  }
  if (us_per_sample) *us_per_sample = ds->S > 0 ? 1e6 * busy / (double)ds->S : NAN;
  return failed ? -1 : 0;
}
