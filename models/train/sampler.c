/* The trainer's mini-batches (assoc_train_sampler): which samples make up
 * this rank's block of every mini-batch.
 *
 * shuffle: B positions at a time of a Fisher-Yates shuffle of all S
 * samples, drawn lazily from the run's generator; every rank draws the
 * whole batch (so the generator advances alike) and takes its block.
 *
 * strata: slot j of the batch always comes from stratum j, samples
 * [S j/B, S (j+1)/B) of the file; each pass over the strata shuffles each
 * of them with a generator of its own, seeded from (seed, epoch, pass, j).
 * A rank needs only its own strata, so it may hold only those samples (a
 * part of the file: assoc_dataset_load_part), and the batches are those
 * of one process, whatever the number of ranks. The run's generator is
 * left to the Gumbel noise. */
#include <string.h>

#include "assoc_dist.h"
#include "models_internal.h"
#include "train_internal.h"

enum { STRATA_STREAM = 0x737472617461 }; /* "strata" */

/* Samples [*lo, *hi) of the file that slots [a, b) of every batch draw from. */
static void strata_rows(const assoc_trainer *t, int64_t a, int64_t b, int64_t *lo, int64_t *hi) {
  int64_t S = t->total, B = t->cfg.batch;
  *lo = S * a / B, *hi = S * b / B;
}

void assoc_train_rows(const assoc_train_config *c, int64_t S, int M, int N, int K, int rank,
                      int ranks, int64_t *lo, int64_t *hi) {
  if (c->sampler != ASSOC_SAMPLER_STRATA || ranks <= 1) {
    *lo = 0, *hi = S;
    return;
  }
  int64_t a, b;
  assoc_dist_block(c->batch, rank, ranks, &a, &b);
  assoc_feature_rows(S * a / c->batch, S * b / c->batch, S, M, K, N, lo, hi);
}

int assoc_sampler_setup(assoc_trainer *t, sg_io_error *err) {
  const assoc_dataset *ds = t->train;
  int64_t B = t->cfg.batch, lo, hi;
  t->total = assoc_dataset_total(ds), t->first = ds->part_first;
  assoc_dist_block(B, t->rank, t->ranks, &t->block_lo, &t->block_hi);
  bool strata = t->cfg.sampler == ASSOC_SAMPLER_STRATA;
  if (!strata && ds->part_total > 0)
    return assoc_fail(err,
                      "samples %lld..%lld of %lld: a part of a data set trains only with the "
                      "strata sampler",
                      (long long)t->first, (long long)(t->first + ds->S - 1), (long long)t->total);
  strata_rows(t, t->block_lo, t->block_hi, &lo, &hi);
  if (strata && (lo < t->first || hi > t->first + ds->S))
    return assoc_fail(err, "rank %d draws from samples %lld..%lld, but holds %lld..%lld", t->rank,
                      (long long)lo, (long long)hi - 1, (long long)t->first,
                      (long long)(t->first + ds->S - 1));
  t->batches = t->cfg.batches_per_epoch ? t->cfg.batches_per_epoch : t->total / B;
  t->perm = sg_malloc((size_t)ds->S * sizeof *t->perm);
  t->block = sg_malloc((size_t)B * sizeof *t->block);
  return t->perm && t->block ? 0 : assoc_fail(err, "out of memory for the sampler");
}

void assoc_sampler_start_epoch(assoc_trainer *t) {
  for (int64_t i = 0; i < t->train->S; i++) t->perm[i] = i;
  t->cursor = 0;
}

/* shuffle: the next B positions of the shuffle; a new pass starts when
 * fewer than B samples are left. */
static const int64_t *next_shuffled(assoc_trainer *t) {
  int64_t S = t->train->S, B = t->cfg.batch;
  if (t->cursor + B > S) assoc_sampler_start_epoch(t);
  for (int64_t i = t->cursor; i < t->cursor + B; i++) {
    int64_t j = i + (int64_t)sg_rng_below(&t->rng, (uint64_t)(S - i));
    int64_t tmp = t->perm[i];
    t->perm[i] = t->perm[j], t->perm[j] = tmp;
  }
  t->cursor += B;
  return t->perm + t->cursor - B + t->block_lo;
}

/* The pass'th shuffle in epoch `epoch` of stratum j, samples [lo, lo + n)
 * of the file, into p as indices from `base` on (sample s is s - base). */
static void shuffle_stratum(uint64_t seed, int epoch, int64_t pass, int64_t j, int64_t lo,
                            int64_t n, int64_t base, int64_t *p) {
  uint64_t s = assoc_stream_seed(seed, STRATA_STREAM, (uint64_t)epoch);
  s = assoc_stream_seed(s, STRATA_STREAM, (uint64_t)pass);
  sg_rng r;
  sg_rng_seed(&r, assoc_stream_seed(s, STRATA_STREAM, (uint64_t)j));
  for (int64_t i = 0; i < n; i++) p[i] = lo - base + i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t k = (int64_t)sg_rng_below(&r, (uint64_t)i + 1), tmp = p[i];
    p[i] = p[k], p[k] = tmp;
  }
}

/* strata: a new shuffle of each of this rank's strata, the pass'th of the
 * epoch (perm holds stratum j at its rows' offset in this rank's part). */
static void shuffle_strata(assoc_trainer *t, int64_t pass) {
  for (int64_t j = t->block_lo; j < t->block_hi; j++) {
    int64_t lo, hi;
    strata_rows(t, j, j + 1, &lo, &hi);
    shuffle_stratum(t->cfg.seed, t->epoch, pass, j, lo, hi - lo, t->first,
                    t->perm + (lo - t->first));
  }
}

int assoc_train_strata_batch(uint64_t seed, int64_t S, int64_t batch, int epoch, int64_t b,
                             int64_t *samples) {
  if (S < batch || batch < 1 || epoch < 0 || b < 0 || !samples) return -1;
  int64_t per_pass = S / batch, n = S / batch + 1;
  int64_t *p = sg_malloc((size_t)n * sizeof *p);
  if (!p) return -1;
  for (int64_t j = 0; j < batch; j++) {
    int64_t lo = S * j / batch, hi = S * (j + 1) / batch;
    shuffle_stratum(seed, epoch, b / per_pass, j, lo, hi - lo, 0, p);
    samples[j] = p[b % per_pass];
  }
  sg_mfree(p);
  return 0;
}

/* strata: batch b of the epoch takes position b mod floor(S/B) of the
 * shuffles of pass b / floor(S/B). */
static const int64_t *next_stratified(assoc_trainer *t, int64_t b) {
  int64_t per_pass = t->total / t->cfg.batch, q = b % per_pass;
  if (q == 0) shuffle_strata(t, b / per_pass);
  for (int64_t j = t->block_lo; j < t->block_hi; j++) {
    int64_t lo, hi;
    strata_rows(t, j, j + 1, &lo, &hi);
    t->block[j - t->block_lo] = t->perm[lo - t->first + q];
  }
  return t->block;
}

const int64_t *assoc_sampler_next(assoc_trainer *t, int64_t b) {
  return t->cfg.sampler == ASSOC_SAMPLER_STRATA ? next_stratified(t, b) : next_shuffled(t);
}
