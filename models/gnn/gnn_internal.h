/* Private to models/gnn: the trunk shared by the association GNNs
 * (gnn.c), BFGNN (bfgnn.c) and JointGNN (jointgnn.c): the pre-processing
 * MLPs and the L update layers of docs/models.md, without an output head;
 * and the beam head and rate the two beam models share (beamrate.c). */
#ifndef ASSOC_GNN_INTERNAL_H
#define ASSOC_GNN_INTERNAL_H

#include <stdbool.h>

#include "assoc_gnn.h"

/* Validates cfg, then fills m: cfg, params (owned), layers, and registers
 * and initialises mlp_p, mlp_q, mlp_e and the layers from rng, in that
 * order (m->mlp_out is left zeroed). 0, or -1 after reporting (m's members
 * are then freed). */
int assoc_gnn_trunk_new(assoc_gnn *m, const assoc_gnn_config *cfg, sg_rng *rng);
/* Frees m's parameters and layers (not m). */
void assoc_gnn_trunk_free(assoc_gnn *m);

/* The final edge embeddings e [B, K, M, d] (UE-major) of inputs p
 * [B, M, fp], q [B, K, fq], H [B, M, K, fe] (not validated here). */
sg_tensor *assoc_gnn_trunk_forward(sg_graph *g, const assoc_gnn *m, sg_tensor *p, sg_tensor *q,
                                   sg_tensor *H);

/* t has dtype dt and shape [shape[0], ..., shape[ndim-1]], an entry < 0
 * matching any size. */
bool assoc_gnn_shape_is(const sg_tensor *t, sg_dtype dt, int ndim, const int64_t *shape);

/* ---- the trunk and inputs of the beam models (beamrate.c) ---------------------- */

/* The trunk configuration of a beam model (BFGNN, JointGNN) of configuration
 * c: SMA-GNN's MLP edge update on the channel features, one BS and one UE
 * feature and fe edge features, with c's widths, dtype, concat_inputs and
 * max_params, and temperature tau. A macro because the two models'
 * configurations are distinct types that share these members. */
#define ASSOC_GNN_BEAM_TRUNK_CONFIG(c, edge_features, temperature)                                 \
  ((assoc_gnn_config){.variant = ASSOC_GNN_SMA,                                                    \
                      .d = (c)->d,                                                                 \
                      .h = (c)->h,                                                                 \
                      .L = (c)->L,                                                                 \
                      .fp = 1,                                                                     \
                      .fq = 1,                                                                     \
                      .fe = (edge_features),                                                       \
                      .features = ASSOC_FEATURES_CHANNEL,                                          \
                      .dtype = (c)->dtype,                                                         \
                      .tau = (temperature),                                                        \
                      .concat_inputs = (c)->concat_inputs,                                         \
                      .max_params = (c)->max_params})

/* The trunk of configuration tc in trunk, its parameters drawn from rng
 * seeded with seed (rng then goes on to the model's heads). 0, or -1 after
 * reporting (as assoc_gnn_trunk_new). */
int assoc_gnn_beam_trunk_new(assoc_gnn *trunk, assoc_gnn_config tc, uint64_t seed, sg_rng *rng);

/* p [B, M, 1], q [B, K, 1] and the channel features X [B, M, K, 2N], all of
 * dtype dt, with B, K >= 1 and 1 <= M <= ASSOC_MAX_BS: the inputs every beam
 * model takes (not reported). */
bool assoc_gnn_beam_inputs_are(const sg_tensor *p, const sg_tensor *q, const sg_tensor *X,
                               int64_t N, sg_dtype dt);

/* The raw beams of final edge embeddings e [B, K, M, d]: mlp_v(e) in the
 * 2N-real layout, as [B, M, K, N] real and imaginary parts. */
assoc_complex assoc_gnn_beam_raw(sg_graph *g, const sg_mlp *mlp_v, sg_tensor *e);

/* Beams v, each multiplied by mask [B, M, K, 1] when mask is not NULL, then
 * normalised per BS (assoc_gnn_beam_power). {NULL, NULL} after a reported
 * failure. */
assoc_complex assoc_gnn_beams_mask_power(sg_graph *g, assoc_complex v, sg_tensor *mask,
                                         sg_tensor *A, double power, assoc_beam_norm norm);

/* The same from a 2N-real output o [B, M, K, 2N] (assoc_beams_split). */
assoc_complex assoc_gnn_beams_finish(sg_graph *g, sg_tensor *o, sg_tensor *mask, sg_tensor *A,
                                     double power, assoc_beam_norm norm);

/* Beams from final edge embeddings e [B, K, M, d]: mlp_v(e) in the 2N-real
 * layout, as [B, M, K, N] real and imaginary parts, each multiplied by mask
 * [B, M, K, 1] when mask is not NULL, then normalised per BS
 * (assoc_beam_normalize) with association weights A [B, K, M] and the same
 * budget `power` at every BS. {NULL, NULL} after a reported failure. */
assoc_complex assoc_gnn_beam_head(sg_graph *g, const sg_mlp *mlp_v, sg_tensor *e, sg_tensor *mask,
                                  sg_tensor *A, double power, assoc_beam_norm norm);

/* assoc_beam_normalize of beams v [B, M, K, N] with association weights A
 * [B, K, M] and the same budget `power` at every BS. */
assoc_complex assoc_gnn_beam_power(sg_graph *g, sg_tensor *A, assoc_complex v, double power,
                                   assoc_beam_norm norm);

/* assoc_sum_rate (noise 1) of A on the couplings of channels G and beams V. */
sg_tensor *assoc_gnn_beam_rate(sg_graph *g, sg_tensor *A, sg_tensor *G_re, sg_tensor *G_im,
                               assoc_complex V);

/* ---- the training loop of the beam models (beam_train.c) ------------------------ */

/* 0 when the model, data set and options are usable (batch <= S, with
 * o->dist a sum, a rank in range and batch >= ranks, ...), else
 * -1 after reporting in fn's name. */
int assoc_gnn_train_check(const char *fn, const void *model, const assoc_dataset *ds,
                          const assoc_bfgnn_train_opts *o);

/* The part of a mini-batch a training step computes: samples idx[lo..hi)
 * of the batch idx[0..B), this rank's block of a data-parallel run (lo 0,
 * hi B on one process), during epoch (1-based). */
typedef struct assoc_gnn_block {
  const int64_t *idx;
  int64_t B, lo, hi;
  int epoch;
} assoc_gnn_block;

/* What a training step builds in g: the block's rates R [hi - lo] and its
 * loss, a mean over the block's samples (NULL members after reporting a
 * failure). */
typedef struct assoc_gnn_step_out {
  sg_tensor *R, *loss;
} assoc_gnn_step_out;

/* The forward pass and loss of a training step on the block b, in g (reset
 * before each step). Random draws of the step (Gumbel noise) are drawn for
 * the whole batch B, so that the generators advance alike on every rank. */
typedef assoc_gnn_step_out (*assoc_gnn_train_step)(void *ctx, sg_graph *g,
                                                   const assoc_gnn_block *b);

/* A fresh state for training on ds: epoch 0, the identity order (shuffled
 * before the first batch), the shuffle generator seeded with seed, the
 * noise generator with noise_seed, and Adam on p at learning rate lr. 0, or
 * -1 when out of memory (st freed). */
int assoc_gnn_train_state_init(assoc_beam_train_state *st, sg_params *p, const assoc_dataset *ds,
                               uint64_t seed, uint64_t noise_seed, double lr);

/* Epochs st->epoch + 1 .. o->epochs of o->batches_per_epoch (0: S /
 * batch) mini-batches of o->batch samples from shuffles of the samples
 * (st->order, drawn from st->shuffle), reshuffled when fewer than batch
 * are left; st->adam's learning rate on o's cosine warm restarts, set
 * before each step; per step the gradients of step's loss (with o->dist:
 * of this rank's block, summed over the ranks) and one Adam step; st->epoch
 * set after each epoch, then o->epoch_fn with its mean rate. last_rate (may
 * be NULL): the last epoch's mean rate. 0; -1 after reporting; -2 when a
 * mini-batch's mean rate is NaN or a step failed (reported) on some rank:
 * no step is taken then. */
int assoc_gnn_train_loop(const assoc_bfgnn_train_opts *o, assoc_beam_train_state *st,
                         assoc_gnn_train_step step, void *ctx, double *last_rate);

#endif
