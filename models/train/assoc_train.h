/* Training of the association GNNs (docs/models.md "Loss", "Training
 * schedule"): the regularised loss with the dual update of mu, Adam, cosine
 * annealing with warm restarts stepped per mini-batch, seeded mini-batches
 * from an .npz data set, a per-epoch CSV log, and checkpoints (.npz) that
 * resume bitwise: an interrupted and resumed run ends with the same bits as
 * an uninterrupted one.
 *
 * Every random draw of a run (per-epoch data order, Gumbel noise) comes from
 * one generator whose state is part of the checkpoint; parameters are stored
 * exactly (float32 as float32), Adam moments as float64.
 *
 * Typical use:
 *   assoc_train_config c = assoc_train_config_default(ASSOC_GNN_ATTSKGS);
 *   assoc_trainer *t = assoc_trainer_new(&c, &train, &test, &err);  // or _resume
 *   while (assoc_trainer_epoch(t) < c.epochs) {
 *     assoc_epoch_stats st;
 *     if (assoc_trainer_run_epoch(t, &st, NULL, NULL, NULL, &err)) ...;
 *     assoc_trainer_save(t, "model.npz", &err);
 *   }
 *   assoc_trainer_free(t);
 * or the whole loop with logging and checkpointing: assoc_train_run.
 *
 * A model of one's own (assoc_gnn.h, assoc_model: a parameter registry and
 * a forward callback returning A~) trains through the same loop with
 * assoc_trainer_new_model, or assoc_train_run with assoc_train_io.model:
 *   assoc_model net = {.name = "edge MLP", .params = params,
 *                      .features = ASSOC_FEATURES_CHANNEL, .forward = my_forward,
 *                      .ctx = &my_model};
 *   assoc_train_io io = {.model = &net, .epoch_fn = print_epoch};
 *   assoc_train_run(&c, &train, &test, &io, &res, &err);
 *   assoc_model_eval(&net, &test, &eval_opts, es_rate, &metrics, NULL, NULL, &err);
 * (examples/custom_model.c is a complete program.) */
#ifndef ASSOC_TRAIN_H
#define ASSOC_TRAIN_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "assoc_gnn.h"
#include "assoc_solvers.h"

/* The shared libraries export what the public headers declare and hide the
 * rest (they are built with -fvisibility=hidden). */
#ifdef __GNUC__
#pragma GCC visibility push(default)
#endif
#ifdef __cplusplus
extern "C" {
#endif

/* ---- configuration ------------------------------------------------------------- */

/* What a run minimises. */
typedef enum assoc_train_loss {
  ASSOC_LOSS_RATE, /* the paper's (unsupervised): -mean R(A~) + sum_m mu_m mean ReLU(load excess) */
  ASSOC_LOSS_ES,   /* supervised: the cross-entropy -mean_{b,k} log a~_{k, ES(k)} of A~ against
                      the ES association of each training sample (solved once, at the start) */
  ASSOC_LOSS_COUNT
} assoc_train_loss;

const char *assoc_train_loss_name(assoc_train_loss l); /* "rate", "es" */
int assoc_train_loss_parse(const char *name);          /* any case; -1 if unknown */

/* How mini-batches are drawn from a training set of S samples, B at a time. */
typedef enum assoc_train_sampler {
  /* B positions at a time of a shuffle of all S samples, a new shuffle
   * every epoch (from the run's generator) */
  ASSOC_SAMPLER_SHUFFLE,
  /* the samples cut into B contiguous strata ([S j/B, S (j+1)/B), j < B);
   * slot j of every mini-batch takes the next sample of a shuffle of
   * stratum j (its own generator, from the seed, the epoch and j). An
   * epoch has floor(S/B) mini-batches. Over R ranks, rank r draws only
   * from its strata (those of its block of the batch), so it reads only
   * those samples of the file (assoc_train_rows), with the same batches as
   * one process. */
  ASSOC_SAMPLER_STRATA,
  ASSOC_SAMPLER_COUNT
} assoc_train_sampler;

const char *assoc_train_sampler_name(assoc_train_sampler s); /* "shuffle", "strata" */
int assoc_train_sampler_parse(const char *name);             /* any case; -1 if unknown */
/* The strata sampler's mini-batch b of epoch `epoch` (both from 0) of a run
 * with this seed on S samples: its batch sample indices into samples, slot
 * by slot; what the trainer draws, computed on its own (to check or replay
 * a run). 0, or -1 (bad arguments, out of memory). */
int assoc_train_strata_batch(uint64_t seed, int64_t S, int64_t batch, int epoch, int64_t b,
                             int64_t *samples);

typedef struct assoc_train_config {
  /* model (Fp = Fq = 1, Fe = 2N and capacity N come from the data set) */
  assoc_gnn_variant variant;
  int d, h, L;
  double tau;      /* Gumbel-softmax temperature */
  int sk_iters;    /* Sinkhorn iterations T */
  int sk_balanced; /* 1: balanced Sinkhorn (assoc_gnn_config.sk_balanced), 0: capacity */
  int features;    /* assoc_feature_kind of the edge inputs (default: channel, the paper's) */
  int loss;        /* assoc_train_loss (default: rate, the paper's) */
  sg_dtype dtype;
  /* data */
  int64_t batch;             /* mini-batch size */
  int64_t batches_per_epoch; /* 0: one full pass, floor(S / batch) mini-batches */
  int epochs;                /* train until this many epochs are complete */
  /* optimiser and schedule */
  double lr_min, lr_max; /* cosine annealing between these */
  double t0;             /* first period in epochs */
  int t_mult;            /* period multiplier */
  int t_mu;              /* dual update of mu every t_mu epochs */
  double delta;          /* load margin: penalise sum_k a_km > N - delta */
  uint64_t seed;         /* model initialisation and the run's generator */
  int threads;           /* OpenMP threads; 0: leave the current setting */
  /* features: 0 computes assoc_feature_scale on the training set; the value
   * used is stored in the checkpoint and used again at evaluation */
  double feature_scale;
  int64_t eval_batch; /* mini-batch size of the per-epoch test evaluation */
  int sampler;        /* assoc_train_sampler (default: shuffle) */
} assoc_train_config;

/* Paper schedule (lr 1e-8..5e-5, T0 50, T_mult 2, T_mu 100, delta 2, tau 1,
 * T 10, 400 batches per epoch) at the paper widths d 512, h 1024, L 2;
 * batch 32, 1 epoch, seed 1, float32, eval_batch 256. */
assoc_train_config assoc_train_config_default(assoc_gnn_variant v);
/* 0 when every knob is in range, else -1 with a message. The one
 * validation of a configuration: new runs and checkpoints go through it. */
int assoc_train_config_check(const assoc_train_config *c, sg_io_error *err);
/* The model configuration a training configuration gives on a data set of
 * N antennas (fe = 2N, capacity N). */
assoc_gnn_config assoc_train_gnn_config(const assoc_train_config *c, int N);
/* The samples [*lo, *hi) of a training set of S samples (M, N, K) that rank
 * `rank` of `ranks` must hold to train with c (assoc_dataset_load_part):
 * all S with the shuffle sampler; with the strata sampler the strata of
 * its block of every mini-batch and the few samples after them that the
 * feature scale's blocks reach into. */
void assoc_train_rows(const assoc_train_config *c, int64_t S, int M, int N, int K, int rank,
                      int ranks, int64_t *lo, int64_t *hi);

/* ---- test metrics ------------------------------------------------------------ */

/* Evaluation of a model on a data set (eval mode: no noise; one-hot of the
 * row argmax), in mini-batches of eval_batch with grad mode off: the metrics
 * of assoc_metrics_compute (rate with violations, violation ratio,
 * load-balanced rate with A~ as the score), ms_per_sample the model's mean
 * forward time per sample. limit > 0 uses only the first limit samples.
 * 0, or -1 with a message. */
int assoc_gnn_evaluate(const assoc_gnn *m, const assoc_dataset *ds, double feature_scale,
                       int64_t eval_batch, int64_t limit, assoc_metrics *out, sg_io_error *err);
/* The same for any model (assoc_gnn.h, assoc_model): what the trainer
 * reports per epoch on its test set. */
int assoc_model_test_metrics(const assoc_model *m, const assoc_dataset *ds, double feature_scale,
                             int64_t eval_batch, int64_t limit, assoc_metrics *out,
                             sg_io_error *err);

/* ---- float32 against float64 ------------------------------------------------ */

/* The float32 training gradient of a model against the float64 gradient of
 * the same weights and inputs: the loss of assoc_loss (mu [M], delta)
 * on the sum-rate of the train-mode forward with the Gumbel sample noise32.
 * Kinks decide such a comparison: a ReLU pre-activation within float32
 * round-off of zero may be cut in one precision and passed in the other,
 * and the gradients then differ by far more than round-off in these
 * models (models/train/precision.c says why). The float64 run therefore replays
 * the float32 run's ReLU decisions (relu_flips counts them; the first is
 * named in first_flip) and is the gradient of the same piece. A Sinkhorn
 * column decision within round-off of its cap cannot be replayed
 * (sinkhorn_near_kink), nor a zero in an output float32 had none in;
 * comparable is false then. */
typedef struct assoc_precision_report {
  double loss32, loss64;
  double grad_rel;             /* ||g32 - g64|| / ||g64|| over every parameter */
  int n_params;                /* entries of param_rel, in registration order */
  double *param_rel;           /* the same per parameter tensor (owned) */
  int worst_param;             /* index of the largest param_rel */
  int64_t relu_flips;          /* ReLU decisions replayed */
  int64_t unreplayable;        /* differing zeros that could not be replayed */
  int64_t sinkhorn_near_kink;  /* samples (float32 run) */
  double sinkhorn_kink_margin; /* float32 run; infinite without Sinkhorn */
  bool comparable;
  char first_flip[160];
} assoc_precision_report;

/* The training loss of m on the batch (assoc_loss with mu [M] and delta on
 * the sum-rate of the train-mode forward with the Gumbel sample noise), its
 * gradient left in m's parameters (zeroed first). Inputs of another dtype
 * are converted to m's. observer (may be NULL) watches the graph
 * (sg_graph_set_observer); info (may be NULL) receives the Sinkhorn's. NaN
 * after a failure. */
double assoc_gnn_loss_grad(assoc_gnn *m, const assoc_gnn_batch *in, const sg_tensor *noise,
                           const double *mu, double delta, sg_observer observer, void *ctx,
                           sg_sinkhorn_info *info);

/* m32 (float32) and m64 (float64, same configuration otherwise): m64's
 * weights are set to m32's; afterwards each model's parameters hold its
 * gradient. in32 must carry couplings. 0, or -1 with a message. */
int assoc_gnn_precision_check(assoc_gnn *m32, assoc_gnn *m64, const assoc_gnn_batch *in32,
                              sg_tensor *noise32, const double *mu, double delta,
                              assoc_precision_report *r, sg_io_error *err);
void assoc_precision_report_free(assoc_precision_report *r);

/* The same comparison for any model (BFGNN, JointGNN, a model of one's
 * own): run(ctx, SG_F32, observer, obs_ctx) computes the float32 model's
 * loss on a graph with the observer installed (sg_graph_set_observer) and
 * leaves its gradient in p32's tensors (zeroed first); run(ctx, SG_F64, ...)
 * does the same for the float64 model, whose parameters p64 are first set
 * to p32's values, on the same inputs (the float32 ones converted). Both
 * runs must record the same ops. r as above, without Sinkhorn (no sample
 * near a kink, margin infinite). 0, or -1 with a message. */
typedef double (*assoc_precision_run)(void *ctx, sg_dtype dt, sg_observer observer, void *obs_ctx);
int assoc_precision_compare(assoc_precision_run run, void *ctx, sg_params *p32, sg_params *p64,
                            assoc_precision_report *r, sg_io_error *err);

/* ---- diagnosis (models/train/diagnose.c) ------------------------------------------ */

/* What a checkpoint's model does on a data set and where its training
 * gradient goes. Eval mode on the first `samples` samples: the mean of each
 * UE's largest a~_km (1: one-hot), the fraction of UEs whose largest entry
 * exceeds 0.99, the mean over entries (k, m) of the standard deviation of
 * a~_km across samples (0: the same A~ for every input), and the fraction
 * of UEs whose argmax is their strongest link (largest per-stream SNR).
 * Train mode on the first `batch` samples with Gumbel noise drawn from
 * seed: the L2 norm of the gradient of the rate term (-mean R) and of the
 * load penalty (with the checkpoint's mu and delta), per group of
 * parameters (mlp_e, layers.0.f5, layers.1.wv, mlp_out, ...). */
enum { ASSOC_DIAGNOSIS_MAX_GROUPS = 64 };

typedef struct assoc_diagnosis_opts {
  int64_t samples; /* eval-mode statistics over this many samples (2000) */
  int64_t batch;   /* gradient on this many samples (256) */
  uint64_t seed;   /* of the Gumbel noise (1) */
} assoc_diagnosis_opts;
assoc_diagnosis_opts assoc_diagnosis_defaults(void);

typedef struct assoc_diagnosis {
  int epoch; /* completed epochs of the checkpoint */
  int64_t samples;
  double row_max_mean, row_saturated, assoc_sd, agree_strongest;
  double loss_rate, loss_total; /* mu = 0 and the checkpoint's mu */
  int M;
  double mu[ASSOC_MAX_BS];
  int n_groups;
  struct {
    char name[32];
    double grad_rate, grad_penalty;
  } groups[ASSOC_DIAGNOSIS_MAX_GROUPS];
} assoc_diagnosis;

/* 0, or -1 with a message (unreadable checkpoint, data of another N or M). */
int assoc_diagnose(const char *checkpoint, const assoc_dataset *ds, const assoc_diagnosis_opts *o,
                   assoc_diagnosis *d, sg_io_error *err);

/* ---- the trainer ------------------------------------------------------------------ */

typedef struct assoc_trainer assoc_trainer;

/* Statistics of one epoch. mu has M entries (the value after this epoch's
 * dual update); the arrays are owned by the trainer and valid until the
 * next epoch or assoc_trainer_free. */
typedef struct assoc_epoch_stats {
  int epoch;              /* 1-based number of the epoch just finished */
  int64_t step;           /* optimiser steps since the start of the run */
  int64_t samples;        /* training samples seen in this epoch */
  double loss;            /* mean over the epoch's mini-batches */
  double train_rate;      /* mean R(A~) over the epoch's samples (train mode) */
  double violation_ratio; /* fraction of the epoch's samples whose argmax of A~ overloads a BS */
  double excess_mean;     /* sum over m of the epoch's mean ReLU(sum_k a_km - (N - delta)) */
  const double *excess;   /* that mean per BS [M]: the dual-update term */
  const double *mu;       /* [M] after the dual update (if any) of this epoch */
  bool dual_updated;      /* whether this epoch ended with a dual update */
  /* Fraction of the epoch's samples whose Sinkhorn column decision came
   * within round-off of the cap (sg_sinkhorn_info.near_kink): there the
   * unrolled gradient depends on which side round-off lands. */
  double sinkhorn_near_kink;
  double lr;             /* learning rate of the epoch's last step */
  double seconds;        /* wall time of the epoch's training steps */
  double reduce_seconds; /* of which in the sums across MPI ranks (0 on one process) */
  /* Bytes reserved by the arena of the training graph after the epoch
   * (sg_graph_arena_bytes): constant from the first epoch on, as every
   * step repeats the same allocations. */
  size_t arena_bytes;
  bool has_test;      /* test metrics below are valid (on rank 0 of several: the only one
                         that evaluates) */
  assoc_metrics test; /* on the test set (assoc_gnn_evaluate) */
} assoc_epoch_stats;

/* Called between steps from assoc_trainer_run_epoch (progress display). */
typedef struct assoc_step_info {
  int epoch;              /* 1-based epoch being trained */
  int64_t batch, batches; /* mini-batch number in the epoch (1-based), total */
  int64_t step;           /* global optimiser step */
  double loss, rate;      /* of this mini-batch */
  double violation;       /* fraction of this batch's samples overloading a BS */
  double lr;
  double epoch_seconds; /* elapsed in this epoch */
} assoc_step_info;
typedef void (*assoc_step_fn)(void *user, const assoc_step_info *info);

/* A new run: builds the model (seeded from cfg->seed), Adam, mu = 0, and the
 * generator. train must outlive the trainer; test (may be NULL) likewise,
 * and must have the training set's N. NULL with a message on a bad
 * configuration, a data set too small for one mini-batch, or out of memory. */
assoc_trainer *assoc_trainer_new(const assoc_train_config *cfg, const assoc_dataset *train,
                                 const assoc_dataset *test, sg_io_error *err);
/* Continues a run from a checkpoint: configuration, parameters, Adam state,
 * mu, generator and epoch all come from it; only epochs, threads and
 * eval_batch are taken from override (NULL: from the checkpoint). The data
 * set must have the checkpoint's sizes (S, M, N, K) and seed. NULL with a
 * message when the checkpoint is missing, corrupted, truncated or
 * inconsistent. */
assoc_trainer *assoc_trainer_resume(const char *checkpoint, const assoc_train_config *override,
                                    const assoc_dataset *train, const assoc_dataset *test,
                                    sg_io_error *err);
/* A new run of a model of one's own (assoc_gnn.h, assoc_model) on the
 * same loop: Adam over model->params (at their current values: initialise
 * them first), mu = 0, the generator seeded from cfg->seed (data order,
 * and model->forward's draws from call->rng). Of cfg's model knobs none is
 * used (variant, d, h, L, tau, sk_iters, sk_balanced); dtype and features
 * are the model's (its parameters' dtype, model->features); everything
 * else (loss, delta, t_mu, schedule, batch, epochs, eval_batch, threads,
 * feature_scale) applies as for the GNNs, and must pass
 * assoc_train_config_check. The model (its parameters and ctx) must
 * outlive the trainer, which does not own it. Checkpoints hold the
 * built-in GNNs only: assoc_trainer_save refuses for such a run (write
 * the parameters with sg_npz). NULL with a message as assoc_trainer_new. */
assoc_trainer *assoc_trainer_new_model(const assoc_train_config *cfg, const assoc_model *model,
                                       const assoc_dataset *train, const assoc_dataset *test,
                                       sg_io_error *err);
void assoc_trainer_free(assoc_trainer *t);

/* Trains one epoch (then the dual update when the epoch number is a
 * multiple of t_mu, then the test evaluation when a test set was given).
 * step_fn (may be NULL) is called after every mini-batch. stop (may be
 * NULL) is polled between mini-batches: when it becomes non-zero the epoch
 * is abandoned, the model is left mid-epoch (do not save it; the last
 * checkpoint stays the resume point) and 1 is returned. 0 when the epoch
 * completed, -1 with a message on failure (e.g. a non-finite loss). */
int assoc_trainer_run_epoch(assoc_trainer *t, assoc_epoch_stats *out, assoc_step_fn step_fn,
                            void *user, volatile sig_atomic_t *stop, sg_io_error *err);

/* Writes a checkpoint of the state after the last completed epoch (atomic:
 * temp file + rename). 0 or -1 with a message; refuses after an abandoned
 * epoch. */
int assoc_trainer_save(const assoc_trainer *t, const char *path, sg_io_error *err);

int assoc_trainer_epoch(const assoc_trainer *t);    /* completed epochs */
int64_t assoc_trainer_step(const assoc_trainer *t); /* optimiser steps so far */
const assoc_gnn *assoc_trainer_model(const assoc_trainer *t);
double assoc_trainer_feature_scale(const assoc_trainer *t);
const double *assoc_trainer_mu(const assoc_trainer *t); /* [M] */
/* What the run trains: assoc_gnn_model of the built-in GNN, or the model
 * given to assoc_trainer_new_model (for which assoc_trainer_model is NULL). */
const assoc_model *assoc_trainer_net(const assoc_trainer *t);

/* ---- the whole loop ------------------------------------------------------------ */

typedef struct assoc_train_io {
  const char *out;       /* checkpoint written after every checkpoint_every epochs and at the end */
  int checkpoint_every;  /* 0: 1 */
  const char *log;       /* CSV log, one row per epoch (appended to when resuming), or NULL */
  const char *resume;    /* checkpoint to continue from, or NULL */
  assoc_step_fn step_fn; /* progress, or NULL */
  void (*epoch_fn)(void *user, const assoc_epoch_stats *st); /* after each epoch, or NULL */
  void *user;
  volatile sig_atomic_t *stop; /* see assoc_trainer_run_epoch */
  /* A model of one's own (assoc_trainer_new_model), or NULL: the built-in
   * GNN of cfg->variant. With a model, out and resume must be NULL
   * (checkpoints hold the built-in GNNs). */
  const assoc_model *model;
} assoc_train_io;

typedef struct assoc_train_result {
  int epochs_done;        /* completed epochs (from the start of the run) */
  int epochs_this_call;   /* epochs trained by this call */
  int64_t steps;          /* optimiser steps (from the start of the run) */
  bool interrupted;       /* stop was raised */
  double seconds;         /* wall time of this call's training steps */
  double ms_per_step;     /* mean over this call */
  double reduce_seconds;  /* of seconds, in the sums across MPI ranks */
  int ranks;              /* MPI ranks the run was spread over (1: one process) */
  assoc_epoch_stats last; /* of the last completed epoch (valid if epochs_this_call > 0) */
  double last_mu[ASSOC_MAX_BS];
  int M;
  int64_t params; /* trainable parameter count */
} assoc_train_result;

/* Trains (or resumes) up to cfg->epochs epochs. On resume cfg supplies
 * only epochs, threads and eval_batch. 0, or -1 with a message. Nothing is
 * written before the data and any checkpoint have been validated.
 * Under MPI (assoc_dist.h: every rank calls this with the same arguments)
 * the mini-batches are split over the ranks and their gradients summed in
 * a fixed order before each step, so every rank holds the same model; rank
 * 0 alone writes io->out and io->log and evaluates the test set. A
 * checkpoint of any number of ranks resumes on any number. */
int assoc_train_run(const assoc_train_config *cfg, const assoc_dataset *train,
                    const assoc_dataset *test, const assoc_train_io *io, assoc_train_result *res,
                    sg_io_error *err);

/* ---- checkpoints (models/train/checkpoint.c) --------------------------------- */

/* Loads the trained model of a checkpoint for evaluation: the model (its
 * configuration from the file), the feature scale it was trained with and,
 * when cfg_out is not NULL, the training configuration. NULL with a
 * message when the file is missing, corrupted, truncated or inconsistent
 * (names, shapes, dtypes, non-finite values). */
assoc_gnn *assoc_checkpoint_load_model(const char *path, double *feature_scale,
                                       assoc_train_config *cfg_out, sg_io_error *err);

/* The training configuration and completed epochs of a checkpoint, without
 * building the model (the archive is still read and checked whole). */
int assoc_checkpoint_read_config(const char *path, assoc_train_config *cfg, int *epoch,
                                 sg_io_error *err);

/* ---- BFGNN (models/train/beam_checkpoint.c, bfgnn_run.c) ---------------------- */

/* The beam models' data-parallel hook over the ranks of this MPI job
 * (models/train/beam_dist.c; assoc_dist.h): rank and size of the job and
 * assoc_dist_sum (its fixed order: the same bits on every run of R ranks).
 * Set assoc_bfgnn_train_opts.dist (JointGNN: .base.dist) to it, on every
 * rank, to train over the ranks; on one process it is rank 0 of 1 and
 * trains as without it. */
assoc_gnn_dist assoc_beam_dist_hook(void);

/* Writes the model's configuration, the feature scale and every parameter
 * (exact dtype) to path (.npz, atomically). 0, or -1 with a message. */
int assoc_bfgnn_checkpoint_write(const char *path, const assoc_bfgnn *m, double feature_scale,
                                 sg_io_error *err);
/* The model of a checkpoint and (feature_scale may be NULL) its feature
 * scale. NULL with a message when the file is missing, corrupted,
 * truncated or inconsistent (missing or unknown members, shapes, dtypes,
 * out-of-range or non-finite values). */
assoc_bfgnn *assoc_bfgnn_checkpoint_read(const char *path, double *feature_scale, sg_io_error *err);

/* The training associations of docs/models.md ("BFGNN"): RandInt (with
 * seed), MaxSINR-capped and ES of every sample of ds (S x K arrays), ES only
 * when assoc_feasible_count <= es_max_feasible (else es_skipped). */
typedef struct assoc_bfgnn_mix {
  int *assocs[3];
  const char *names[3];
  int n;
  bool es_skipped;
} assoc_bfgnn_mix;
int assoc_bfgnn_training_mix(const assoc_dataset *ds, uint64_t seed, double es_max_feasible,
                             assoc_bfgnn_mix *x, sg_io_error *err);
void assoc_bfgnn_mix_free(assoc_bfgnn_mix *x);

/* The model's beams for the association assoc (S x K) on every sample of
 * ds, in batches of `batch` without gradients: V_re/V_im (S x M x K x N,
 * the layout and W^(1/2) units of assoc_beam.h, float64 from the model's
 * dtype), rate (S) = assoc_rate_beams of those beams, and the mean time per
 * sample in microseconds of computing the beams (the batch inputs, the
 * forward pass and the copy; not the rates) (may be NULL). A float32
 * model runs the fused inference (assoc_bfgnn_fused_beams), a float64 one
 * the op-by-op forward. 0, or -1 with a message (N of the data differs
 * from the model's, an association out of range or over N). */
int assoc_bfgnn_beams_run(const assoc_bfgnn *m, double feature_scale, const assoc_dataset *ds,
                          const int *assoc, int64_t batch, double *V_re, double *V_im, double *rate,
                          double *us_per_sample, sg_io_error *err);

/* ---- JointGNN (models/train/beam_checkpoint.c, jointgnn_run.c) --------------- */

/* Checkpoints as BFGNN's (the same writer and reader, atomically written):
 * jointgnn_checkpoint_version, config.d/h/L/n_antennas/dtype/norm/
 * concat_inputs/gumbel (int64), config.power/tau and feature_scale
 * (float64), param.<name>. The reader names the file and the member of a
 * missing, damaged, truncated or inconsistent checkpoint (a BFGNN or GNN
 * checkpoint is "not a JointGNN checkpoint"). 0 / the model, or -1 / NULL
 * with a message. */
int assoc_jointgnn_checkpoint_write(const char *path, const assoc_jointgnn *m, double feature_scale,
                                    sg_io_error *err);
assoc_jointgnn *assoc_jointgnn_checkpoint_read(const char *path, double *feature_scale,
                                               sg_io_error *err);
/* A JointGNN checkpoint that also holds the state of its training run,
 * to resume it bit for bit (assoc_jointgnn_train_resume): the members
 * above, run.epoch, run.cursor, run.order (the shuffle), run.rng (the
 * shuffle and noise generators), the schedule of o->base without epochs
 * and callback (run.batch, run.batches_per_epoch, run.t_mult, run.seed,
 * run.lr = [lr_min, lr_max, t0]), the penalty (run.penalty_start, 0 = off,
 * run.penalty = [capacity, delta], run.penalty_mu) and the optimiser
 * (adam.*, as training checkpoints hold it). The feature scale is
 * o->base.feature_scale. assoc_jointgnn_checkpoint_read reads such a file
 * too (and checks the run's members). _read_run fills o (base: the
 * schedule, feature scale, epochs = the completed ones, no callback;
 * penalty.mu pointing into st->penalty_mu) and st (owned: free with
 * assoc_beam_train_state_free), and refuses a checkpoint without a run
 * state. 0 / the model, or -1 / NULL with a message. */
int assoc_jointgnn_checkpoint_write_run(const char *path, const assoc_jointgnn *m,
                                        const assoc_jointgnn_train_opts *o,
                                        const assoc_beam_train_state *st, sg_io_error *err);
assoc_jointgnn *assoc_jointgnn_checkpoint_read_run(const char *path, assoc_jointgnn_train_opts *o,
                                                   assoc_beam_train_state *st, sg_io_error *err);

/* "BFGNN" or "JointGNN" when path is an .npz with that model's checkpoint
 * version member, else NULL (also for an unreadable file): how 'assoc
 * eval' tells the checkpoints apart. */
const char *assoc_beam_checkpoint_model(const char *path);

/* The evaluation protocol of docs/models.md ("JointGNN", the SM column of
 * the paper's Table 1) on every sample of ds, eval mode, `batch` samples
 * per forward, no gradients:
 *   A_1hot = the row argmax of A~ (ties: lowest m);
 *   violation_ratio = the fraction of samples where A_1hot gives some BS
 *     more than N UEs;
 *   lb = A_1hot load-balanced (assoc_load_balance with score A~: an
 *     overloaded BS keeps its N UEs of largest a~, ties by link SNR, the
 *     others are dropped, -1);
 *   rate_lb = the mean sum-rate of the model's own raw beams re-normalised
 *     per BS (cfg.norm, cfg.power) over the UEs lb serves, computed in
 *     float64 by assoc_rate_beams; rate_onehot the same over A_1hot
 *     (violations kept); rate_soft the mean R(A~, V) of the training loss.
 * The pointers are optional outputs (NULL: not wanted), caller-allocated:
 * one_hot, lb (S x K), rate_onehot_s, rate_lb_s (S) and A (S x K x M, A~).
 * lb is the association to hand to BFGNN (assoc_bfgnn_beams_run) for the
 * paper's row 4. 0, or -1 with a message (N of the data differs from the
 * model's, bad arguments, out of memory). */
typedef struct assoc_jointgnn_eval {
  int64_t samples;
  double violation_ratio, rate_soft, rate_onehot, rate_lb;
  double mean_dropped;  /* UEs dropped per sample by the load balancing */
  double us_per_sample; /* wall time of the whole evaluation / S */
  int *one_hot, *lb;
  double *rate_onehot_s, *rate_lb_s, *A;
} assoc_jointgnn_eval;
int assoc_jointgnn_evaluate(const assoc_jointgnn *m, double feature_scale, const assoc_dataset *ds,
                            int64_t batch, assoc_jointgnn_eval *out, sg_io_error *err);

/* The protocol's rounding of one sample s of ds from its A~ (K x M, row
 * k's a~_km at A[k*M + m]): one_hot (K) = the row argmax (ties: lowest m),
 * lb (K) = one_hot load-balanced by a~ (an overloaded BS keeps its N UEs
 * of largest a~, ties by link SNR, then lower k; -1 dropped); gain is
 * scratch of M x K x K doubles. 1 when one_hot gives some BS more than N
 * UEs, else 0. */
int assoc_jointgnn_round(const assoc_dataset *ds, int64_t s, const double *A, double *gain,
                         int *one_hot, int *lb);

#ifdef __cplusplus
}
#endif
#ifdef __GNUC__
#pragma GCC visibility pop
#endif
#endif
