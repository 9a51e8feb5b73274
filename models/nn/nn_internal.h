/* Private to models/: the gradients of a list of parameters as one flat
 * buffer, what data-parallel training sums across its ranks in one call
 * per step (models/train/trainer_dist.c for the association GNNs,
 * models/gnn/beam_train.c for BFGNN and JointGNN). Layout: the gradient of
 * every parameter in list order, then `tail` scalars (a step's loss, rate,
 * ...), all in the parameters' dtype. */
#ifndef SG_NN_INTERNAL_H
#define SG_NN_INTERNAL_H

#include <stdint.h>

#include "sinkgrad.h"

/* Elements of the buffer of params[0..n) and tail scalars; -1 (and *bad,
 * the first parameter that is not of dtype dt) when the dtypes differ. */
int64_t sg_grads_flat_size(sg_tensor *const *params, int n, sg_dtype dt, int tail, int *bad);

/* Fills flat: each parameter's fresh gradient (one a backward wrote since
 * the optimiser's last step) times share, rounded once to dt, zeros for a
 * parameter without one; then tail[0..n_tail). */
void sg_grads_flat_pack(sg_tensor *const *params, int n, sg_dtype dt, double share,
                        const double *tail, int n_tail, void *flat);

/* The reverse: flat's gradients into the parameters that have a fresh one
 * (the others keep none), and its last n_tail scalars into tail. */
void sg_grads_flat_unpack(sg_tensor *const *params, int n, sg_dtype dt, const void *flat,
                          double *tail, int n_tail);

#endif
