/* assoc train --model bfgnn|jointgnn (train_bfgnn.c). */
#ifndef ASSOC_TRAIN_BFGNN_H
#define ASSOC_TRAIN_BFGNN_H

#include "assoc_train.h"

/* The beam models' options beyond c's: the normalisation, BFGNN's head,
 * and JointGNN's optional load penalty (mu per BS, on from epoch
 * penalty_after + 1; -1: off) with margin delta against the capacity N of
 * ds. */
typedef struct assoc_train_beam_opts {
  assoc_beam_norm norm;
  assoc_bfgnn_head head; /* BFGNN only */
  int penalty_after;
  double penalty_mu, delta;
  const char *resume;   /* JointGNN: continue the run of this checkpoint */
  int checkpoint_every; /* JointGNN: write the run's checkpoint every N epochs and at the end */
} assoc_train_beam_opts;

/* Trains BFGNN with c's d, h, L, dtype, batch, batches_per_epoch, epochs,
 * schedule, seed, threads and feature_scale (0: RMS of ds), b's norm and
 * head, on the training association mix of ds and writes the checkpoint
 * out; an exit status. */
int assoc_train_bfgnn(const assoc_train_config *c, const assoc_dataset *ds,
                      const assoc_train_beam_opts *b, const char *out, bool quiet);

/* The configuration of the JointGNN run of checkpoint path in c's and b's
 * terms (d, h, L, dtype, batch, batches_per_epoch, lr_min, lr_max, t0,
 * t_mult, seed, feature_scale; norm, penalty_after, penalty_mu, delta) and
 * its completed epochs, for comparing a resumed run's options. 0, or -1
 * after a message. */
int assoc_train_jointgnn_saved(const char *path, assoc_train_config *c, assoc_train_beam_opts *b,
                               int *epochs);

/* Trains JointGNN with the same knobs of c as BFGNN, on ds alone (or
 * continues the run of b->resume until c->epochs are complete), and writes
 * the run's checkpoint out (with its state, after every
 * b->checkpoint_every epochs and at the end); an exit status. */
int assoc_train_jointgnn(const assoc_train_config *c, const assoc_dataset *ds,
                         const assoc_train_beam_opts *b, const char *out, bool quiet);

#endif
