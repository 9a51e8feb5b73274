/* Private to models/train: what its files share and users do not need. */
#ifndef ASSOC_TRAIN_INTERNAL_H
#define ASSOC_TRAIN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "assoc_train.h"

/* ---- configuration (config.c) ----------------------------------------------------- */

/* Why c fails assoc_train_config_check, or NULL when it passes; *knob (when
 * knob is not NULL) receives the name of the first knob out of range, as in
 * the checkpoint's "config.<knob>" members. */
const char *assoc_train_config_problem(const assoc_train_config *c, const char **knob);

/* ---- the CSV log (train_log.c) ------------------------------------------------- */

typedef struct assoc_train_log {
  int fd; /* opened for appending */
  const char *path;
  int M;
  int64_t last_row_at; /* offset of the last row appended, -1 none */
  bool arena_column;   /* the header ends in arena_mib (a log begun before it has none) */
} assoc_train_log;

/* Opens the log at path: a new one (header only) when resumed_epoch < 0 or
 * the file has no whole header, else the existing one cut back to the rows
 * of epochs up to resumed_epoch (the checkpoint's). */
int assoc_log_open(assoc_train_log *log, const char *path, int resumed_epoch, int M,
                   sg_io_error *err);
/* Appends the row of st, or leaves the log as it was and fails. */
int assoc_log_row(assoc_train_log *log, const assoc_epoch_stats *st, sg_io_error *err);
/* Cuts the last row appended back off (its epoch's checkpoint failed). */
void assoc_log_take_back(assoc_train_log *log);
int assoc_log_close(assoc_train_log *log, sg_io_error *err);

/* ---- checkpoints (checkpoint.c) ------------------------------------------------- */

/* Everything a checkpoint holds. Writing borrows every pointer; reading
 * allocates model, adam (when requested) and mu, owned by the caller
 * (assoc_checkpoint_state_free). */
typedef struct assoc_checkpoint_state {
  assoc_train_config cfg;
  assoc_gnn_config gnn;
  int64_t data_S; /* training set the run belongs to */
  int data_M, data_N, data_K;
  uint64_t data_seed;
  double feature_scale;
  int epoch;    /* completed epochs */
  int64_t step; /* optimiser steps */
  double *mu;   /* [data_M] */
  sg_rng rng;
  assoc_gnn *model;
  sg_adam *adam; /* NULL: not written / not read */
} assoc_checkpoint_state;

int assoc_checkpoint_write(const char *path, const assoc_checkpoint_state *st, sg_io_error *err);
/* 0 when every parameter of p is finite; else -1 with a message naming the
 * checkpoint at path (not written), the parameter and the element. Every
 * checkpoint writer calls it before opening the file, so a diverged run
 * never replaces a good checkpoint with NaN weights. */
int assoc_checkpoint_check_params(const sg_params *p, const char *path, sg_io_error *err);

/* a (member `name` of the checkpoint at path) when it has the given type
 * and shape; else NULL with a message naming the file, the member, and
 * both types and shapes. a must not be NULL. */
/* The most parameter values a model built from the configuration of the
 * checkpoint z may have (assoc_gnn_config.max_params): twice the values of
 * its param.* members. A whole file's model has exactly those; the slack
 * lets the reader build the model of a file that lacks a few and name
 * them, while widths that no parameters back are refused before anything
 * is allocated (the model stays within a small multiple of the file). */
/* The value of a (an int64 scalar member `name` of the checkpoint at path)
 * into out; -1 with a message naming both when it is outside [lo, hi]. */
int64_t assoc_checkpoint_param_budget(const sg_npz *z);
int assoc_checkpoint_i64_in(const sg_array *a, const char *path, const char *name, int64_t lo,
                            int64_t hi, int64_t *out, sg_io_error *err);

/* The optimiser's members: adam.m.<name> and adam.v.<name> of every
 * parameter of p, adam.steps, adam.beta1/beta2/eps/weight_decay
 * (ASSOC_ADAM_MEMBERS of them); the reader checks shapes, dtypes and
 * finite values (v >= 0) into a, an sg_adam over p. 0, or -1 with a
 * message naming path and the member. */
#define ASSOC_ADAM_MEMBERS(n_params) (2 * (n_params) + 5)
int assoc_checkpoint_write_adam(sg_npz_writer *w, const sg_params *p, const sg_adam *a,
                                sg_io_error *err);
int assoc_checkpoint_read_adam(const sg_npz *z, const char *path, const sg_params *p, sg_adam *a,
                               sg_io_error *err);

const sg_array *assoc_checkpoint_shaped(const sg_array *a, const char *path, const char *name,
                                        sg_npy_type type, int ndim, const int64_t *shape,
                                        sg_io_error *err);
/* Reads and validates every member; on failure nothing is allocated. */
int assoc_checkpoint_read(const char *path, bool with_adam, assoc_checkpoint_state *st,
                          sg_io_error *err);
void assoc_checkpoint_state_free(assoc_checkpoint_state *st);

/* ---- the trainer's state (trainer.c, used by the loop in run.c) ------------------ */

struct assoc_trainer {
  assoc_train_config cfg;
  const assoc_dataset *train, *test;
  assoc_gnn *model; /* the built-in GNN (owned), or NULL for a model of one's own */
  assoc_model net;  /* what the steps and the test metrics run: model's, or the caller's */
  double capacity;  /* N of the load constraint */
  sg_adam *adam;
  sg_graph *graph;
  sg_rng rng;
  double feature_scale;
  int M;
  double *mu, *excess, *excess_sum, *batch_excess; /* [M] each */
  /* the sampler (sampler.c) */
  int64_t total, first;       /* samples in the file; the first the training set holds */
  int64_t *perm;              /* [S]: shuffle: the data order; strata: the shuffles of the strata */
  int64_t cursor;             /* shuffle: next unused position in perm */
  int64_t *block;             /* [batch]: strata: this rank's block of the batch */
  int64_t block_lo, block_hi; /* this rank's slots of every mini-batch (all on one process) */
  int *assoc;                 /* [batch * K] scratch */
  int *labels;     /* [S * K] the ES association of each training sample (loss es), else NULL */
  int64_t batches; /* per epoch */
  int epoch;
  int64_t step;
  bool abandoned; /* an epoch was stopped half-way: the state is not an epoch boundary */
  /* data-parallel runs (trainer_dist.c) */
  int rank, ranks;       /* of the job; 0 and 1 on one process */
  void *flat;            /* [flat_n] in the model's dtype: gradients and a step's sums */
  int64_t flat_n;        /* NULL / 0 on one process */
  double reduce_seconds; /* wall time in the sums across ranks since the epoch started */
};

/* ---- mini-batches (sampler.c) ---------------------------------------------------- */

/* Checks that the training set holds the samples this rank draws from,
 * sets the batches per epoch and allocates the sampler's arrays (after
 * assoc_trainer_dist_setup). 0, or -1 with a message. */
int assoc_sampler_setup(assoc_trainer *t, sg_io_error *err);
void assoc_sampler_start_epoch(assoc_trainer *t);
/* The training set's indices of this rank's block of mini-batch b of the
 * epoch (block_hi - block_lo of them); batches come in order b = 0, 1, ... */
const int64_t *assoc_sampler_next(assoc_trainer *t, int64_t b);

/* ---- data-parallel training (trainer_dist.c) ----------------------------------- */

/* What a step sums across the ranks besides the gradients: in, this rank's
 * loss (the mean over its block), rate sum and violations of its block and
 * its stop request; out, the whole batch's loss, rate sum and violations
 * and whether any rank asked to stop. */
typedef struct assoc_step_sums {
  double loss, rate_sum;
  int64_t violations;
  bool stop;
} assoc_step_sums;

/* Rank, size and the gradient buffer (none on one process); refuses a
 * batch smaller than the number of ranks and, on several ranks, a model of
 * one's own (its random draws need not split by sample). */
int assoc_trainer_dist_setup(assoc_trainer *t, sg_io_error *err);
void assoc_trainer_dist_free(assoc_trainer *t);
/* The feature scale of the whole training set into *scale, the same bits
 * whether this rank holds the set whole or only the part it draws from
 * (after assoc_sampler_setup; collective over the ranks for a part). */
int assoc_trainer_compute_scale(assoc_trainer *t, double *scale, sg_io_error *err);
/* Several ranks: every parameter's gradient becomes the sum over ranks of
 * (shard / batch) times the rank's, the one-process gradient of the batch;
 * s as above. A no-op on one process. Collective. */
int assoc_trainer_reduce_step(assoc_trainer *t, int64_t shard, assoc_step_sums *s,
                              sg_io_error *err);
/* sums[n] (float64) summed over the ranks: the epoch's statistics. */
int assoc_trainer_reduce_epoch(assoc_trainer *t, double *sums, int n, sg_io_error *err);

#endif
