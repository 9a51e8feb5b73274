/* Data-parallel training: the trainer's side of assoc_dist.h.
 *
 * Every rank holds the whole model, draws the same mini-batch and the same
 * Gumbel noise from the run's generator (the generator advances alike on
 * every rank, so they never diverge), and computes the gradient of its
 * block of the batch (assoc_dist_block: samples B*r/R .. B*(r+1)/R). The
 * loss is a mean over the batch, so rank r's gradient is scaled by its
 * share b_r / B before the sum: sum_r (b_r/B) grad mean_{shard r} =
 * grad mean_{batch}, the one-process gradient up to round-off. One sum
 * (assoc_dist_sum, a fixed order) per step carries every gradient and the
 * step's loss, rate, violation count and stop flag; every rank then takes
 * the same Adam step. The epoch's statistics (and with them the excess
 * that updates mu) are summed in float64 at the end of the epoch. With one
 * rank none of this runs. */
#include <omp.h>

#include "assoc_dist.h"
#include "models_internal.h"
#include "nn_internal.h"
#include "train_internal.h"

enum { STEP_TAIL = 4 }; /* loss, rate sum, violations, stop: after the gradients */

static sg_params *trainer_params(const assoc_trainer *t) {
  return t->net.params;
}

static size_t elem_size(const assoc_trainer *t) {
  return t->cfg.dtype == SG_F32 ? 4 : 8;
}

int assoc_trainer_dist_setup(assoc_trainer *t, sg_io_error *err) {
  t->rank = assoc_dist_rank(), t->ranks = assoc_dist_size();
  if (t->ranks == 1) return 0;
  /* a model's random draws must split by sample (assoc_model_call) */
  if (!t->net.splits_batches)
    return assoc_fail(err,
                      "%s trains on one process, not on %d MPI ranks: its forward does not "
                      "split batches (assoc_model.splits_batches)",
                      t->net.name ? t->net.name : "the model", t->ranks);
  if (t->cfg.batch < t->ranks)
    return assoc_fail(err, "a mini-batch of %lld samples cannot be split over %d ranks",
                      (long long)t->cfg.batch, t->ranks);
  sg_tensor *const *p = sg_params_tensors(trainer_params(t));
  int bad, n = sg_params_count(trainer_params(t));
  int64_t total = sg_grads_flat_size(p, n, t->cfg.dtype, STEP_TAIL, &bad);
  if (total < 0)
    return assoc_fail(err, "parameter %d is %s, the model %s", bad, sg_dtype_name(p[bad]->dtype),
                      sg_dtype_name(t->cfg.dtype));
  t->flat_n = total;
  t->flat = sg_malloc((size_t)total * elem_size(t));
  return t->flat ? 0 : assoc_fail(err, "out of memory for the gradient buffer");
}

void assoc_trainer_dist_free(assoc_trainer *t) {
  sg_mfree(t->flat);
  t->flat = NULL;
}

/* The feature scale of the whole training set, to the same bits whether
 * every rank holds it whole or only its part (models_internal.h). */
int assoc_trainer_compute_scale(assoc_trainer *t, double *scale, sg_io_error *err) {
  const assoc_dataset *ds = t->train;
  if (ds->part_total == 0) return *scale = assoc_feature_scale(ds), 0;
  int64_t n = assoc_feature_blocks(ds), lo, hi;
  double *sums = sg_malloc((size_t)n * sizeof *sums);
  if (!sums)
    return assoc_fail(err, "out of memory for the feature scale's %lld block sums", (long long)n);
  /* this rank's own samples: those of its strata */
  lo = t->total * t->block_lo / t->cfg.batch, hi = t->total * t->block_hi / t->cfg.batch;
  assoc_feature_block_sums(ds, lo, hi, sums);
  int rc = assoc_dist_sum(sums, n, SG_F64, err);
  if (!rc) *scale = assoc_feature_scale_of_sums(ds, sums);
  sg_mfree(sums);
  return rc;
}

int assoc_trainer_reduce_step(assoc_trainer *t, int64_t shard, assoc_step_sums *s,
                              sg_io_error *err) {
  if (t->ranks == 1) return 0;
  double start = omp_get_wtime(), share = (double)shard / (double)t->cfg.batch;
  double tail[STEP_TAIL] = {s->loss * share, s->rate_sum, (double)s->violations, s->stop};
  sg_tensor *const *p = sg_params_tensors(trainer_params(t));
  int n = sg_params_count(trainer_params(t));
  sg_grads_flat_pack(p, n, t->cfg.dtype, share, tail, STEP_TAIL, t->flat);
  if (assoc_dist_sum(t->flat, t->flat_n, t->cfg.dtype, err)) return -1;
  sg_grads_flat_unpack(p, n, t->cfg.dtype, t->flat, tail, STEP_TAIL);
  s->loss = tail[0], s->rate_sum = tail[1], s->violations = (int64_t)tail[2];
  s->stop = tail[3] > 0;
  t->reduce_seconds += omp_get_wtime() - start;
  return 0;
}

int assoc_trainer_reduce_epoch(assoc_trainer *t, double *sums, int n, sg_io_error *err) {
  if (t->ranks == 1) return 0;
  double start = omp_get_wtime();
  int rc = assoc_dist_sum(sums, n, SG_F64, err);
  t->reduce_seconds += omp_get_wtime() - start;
  return rc;
}
