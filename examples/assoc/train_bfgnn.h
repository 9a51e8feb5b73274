/* assoc train --model bfgnn (train_bfgnn.c). */
#ifndef ASSOC_TRAIN_BFGNN_H
#define ASSOC_TRAIN_BFGNN_H

#include "assoc_train.h"

/* Trains BFGNN with c's d, h, L, dtype, batch, batches_per_epoch, epochs,
 * schedule, seed, threads and feature_scale (0: RMS of ds), and the rest of
 * its configuration (norm, head, power) from beams, on the training
 * association mix of ds and writes the checkpoint out; an exit status. */
int assoc_train_bfgnn(const assoc_train_config *c, const assoc_dataset *ds,
                      const assoc_bfgnn_config *beams, const char *out, bool quiet);

#endif
