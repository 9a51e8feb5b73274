/* The four association GNNs of docs/models.md (AttSKGS-GNN, SKGS-GNN,
 * GS-GNN, SMA-GNN), their inputs from a data set and batched inference
 * over one, their evaluation helpers, and the differentiable sum-rate and
 * loss they train on.
 *
 * Layouts: p [B, M, Fp] BS features, q [B, K, Fq] UE features, H [B, M, K, Fe]
 * edge features (Fe = 2N: real parts then imaginary parts of h_mk). Outputs
 * are [B, K, M] (UE rows, BS columns). The weights fix d, h, L, Fp, Fq and
 * Fe only: the same model runs on any M and K. */
#ifndef ASSOC_GNN_H
#define ASSOC_GNN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "assoc_wireless.h"
#include "sg_nn.h"

/* The shared libraries export what the public headers declare and hide the
 * rest (they are built with -fvisibility=hidden). */
#ifdef __GNUC__
#pragma GCC visibility push(default)
#endif
#ifdef __cplusplus
extern "C" {
#endif

/* ---- the model ------------------------------------------------------------ */

typedef enum assoc_gnn_variant {
  ASSOC_GNN_ATTSKGS, /* attention edge update, Gumbel-softmax, capacity Sinkhorn */
  ASSOC_GNN_SKGS,    /* MLP edge update, Gumbel-softmax, capacity Sinkhorn */
  ASSOC_GNN_GS,      /* MLP edge update, Gumbel-softmax */
  ASSOC_GNN_SMA,     /* MLP edge update, softmax */
  ASSOC_GNN_VARIANT_COUNT
} assoc_gnn_variant;

const char *assoc_gnn_variant_name(assoc_gnn_variant v); /* "AttSKGS-GNN", ... */
/* "AttSKGS_GNN", ...: the name as an identifier, for .npz/JSON keys (as
 * assoc_method_key spells the baselines). */
const char *assoc_gnn_variant_key(assoc_gnn_variant v);
/* "AttSKGS-GNN", "AttSKGS_GNN" or "AttSKGS" (any case); -1 if unknown. */
int assoc_gnn_variant_parse(const char *name);

typedef struct assoc_gnn_config {
  assoc_gnn_variant variant;
  int d, h, L;                 /* embedding width, MLP hidden width, update layers (>= 1) */
  int fp, fq, fe;              /* input widths: BS, UE, edge features (assoc_feature_width) */
  assoc_feature_kind features; /* what H holds (the paper's: ASSOC_FEATURES_CHANNEL) */
  sg_dtype dtype;              /* of the parameters and of every input */
  double tau;                  /* Gumbel-softmax temperature */
  int sk_iters;                /* Sinkhorn iterations T (exactly T are run) */
  /* Balanced Sinkhorn (sg_sinkhorn_balanced) instead of the capacity one:
   * every column step scales each BS's load to N, so the map has no kink
   * where a load meets its cap; K < M N UEs get M N - K slack rows (uniform
   * over the BSs, dropped afterwards), K > M N keeps the capacity step
   * (every column is over its cap there). Off by default (models.md). */
  bool sk_balanced;
  double capacity;    /* Sinkhorn column cap: the N of the load constraint */
  bool concat_inputs; /* materialise every feature concatenation (reference path);
                         default false: split first Linear, same parameters */
  /* > 0: building fails (NULL) instead of allocating more parameter scalars
   * than this (sg_params_set_limit); checkpoint readers pass what the file
   * holds. 0 (default): no limit. */
  int64_t max_params;
} assoc_gnn_config;

/* The paper configuration: d 512, h 1024, L 2, Fp = Fq = 1, Fe = 8 (N = 4),
 * float32, tau 1, T 10, capacity 4. */
assoc_gnn_config assoc_gnn_config_paper(assoc_gnn_variant v);

typedef struct assoc_gnn_layer {
  bool node_update; /* false in layer L: its f1..f4 would feed nothing */
  sg_mlp f1, f2, f3,
      f4;    /* BS update f2([b, mean_k f1([c, e])]), UE update f4([c, mean_m f3([b, e])]) */
  sg_mlp f5; /* edge update: MLP(3d, d) on [e, b, c] or MLP(2d, d) on [e, g] */
  sg_linear_layer wq, wk, wv; /* attention projections (AttSKGS only), no bias */
  sg_layernorm_layer ln;      /* on the attention output (AttSKGS only) */
} assoc_gnn_layer;

typedef struct assoc_gnn {
  assoc_gnn_config cfg;
  sg_params *params; /* owned; names "mlp_p.0.weight", "layers.1.f5.4.bias", ... */
  sg_mlp mlp_p, mlp_q, mlp_e, mlp_out;
  assoc_gnn_layer *layers; /* cfg.L entries */
} assoc_gnn;

/* Builds and initialises a model (PyTorch's default Linear initialisation,
 * LayerNorm gain 1 bias 0) from one generator seeded with seed. NULL (after
 * reporting) on a bad configuration or when out of memory. */
assoc_gnn *assoc_gnn_new(const assoc_gnn_config *cfg, uint64_t seed);
void assoc_gnn_free(assoc_gnn *m);

/* Trainable parameter count (every registered scalar). */
int64_t assoc_gnn_param_count(const assoc_gnn *m);
/* Prints the count per part (pre-processing, each layer, post-processing)
 * and the total to f. */
void assoc_gnn_print_params(const assoc_gnn *m, FILE *f);

typedef enum assoc_gnn_mode {
  ASSOC_GNN_TRAIN, /* Gumbel noise on (GS, SKGS, AttSKGS) */
  ASSOC_GNN_EVAL   /* noise off (G = 0) */
} assoc_gnn_mode;

typedef struct assoc_gnn_output {
  sg_tensor *logits; /* Ahat [B, K, M] */
  sg_tensor *assoc;  /* A~ [B, K, M]: softmax, Gumbel-softmax, or Gumbel-softmax + Sinkhorn */
  sg_sinkhorn_info sinkhorn; /* of the Sinkhorn variants; zeroed otherwise */
} assoc_gnn_output;

/* The forward pass. In train mode the Gumbel sample is noise [B, K, M] when
 * given (no gradient; makes the function deterministic), else drawn from
 * rng; eval mode ignores both. Returns NULL members after reporting a
 * misuse (shapes, dtypes). */
assoc_gnn_output(assoc_gnn_forward)(sg_graph *g, const assoc_gnn *m, sg_tensor *p, sg_tensor *q,
                                    sg_tensor *H, assoc_gnn_mode mode, sg_rng *rng,
                                    sg_tensor *noise);
#define assoc_gnn_forward(g, ...) (assoc_gnn_forward)(SG_AT(g), __VA_ARGS__)

/* Eval-mode A~ [B, K, M] of a batch, computed a chunk of samples at a time
 * on the scratch graph g (reset before each chunk, gradients off during the
 * call), so that the working memory follows the chunk, not the batch: at
 * the paper's width a 256-sample batch in one forward holds ~95 MiB of
 * activations, 32-sample chunks ~15 MiB. The inputs are not tensors of g.
 * chunk <= 0 picks assoc_gnn_predict_chunk. Each sample's result does not
 * depend on the chunk size up to float round-off (GEMM blocking). g keeps the last chunk's
 * tensors (sg_graph_arena_used: one chunk's high-water mark) until reset.
 * Returns a caller-owned tensor (sg_free), or NULL after reporting a
 * misuse. */
sg_tensor *(assoc_gnn_predict)(sg_graph *g, const assoc_gnn *m, const sg_tensor *p,
                               const sg_tensor *q, const sg_tensor *H, int64_t chunk);
#define assoc_gnn_predict(g, ...) (assoc_gnn_predict)(SG_AT(g), __VA_ARGS__)
/* The default chunk: as many samples as keep a chunk's widest activation
 * (K*M edges times h) within 2 MiB; at least 1. */
int64_t assoc_gnn_predict_chunk(const assoc_gnn *m, int64_t K, int64_t M);

/* ---- model inputs (models/gnn/inputs.c) ------------------------------------------ */

/* The inputs of a mini-batch, all in g's arena (no heap allocation):
 * p [B, M, 1] = Pt in dBm / 30, q [B, K, 1] = 1, H [B, M, K, Fe] the edge
 * features of kind `features`: the scaled channel (assoc_features_fill with
 * feature_scale; Fe = 2N) or the link features (assoc_link_features_fill;
 * Fe = 2N + 3; feature_scale unused), and, when
 * couplings is set, the MRT couplings c_re/c_im [B, M, K, K] (divided by the
 * noise amplitude: use assoc_sum_rate with noise 1). The samples are idx[0..B)
 * or, with idx NULL, start..start+B-1. 0, or -1 after reporting. */
typedef struct assoc_gnn_batch {
  int64_t B;
  sg_tensor *p, *q, *H;
  sg_tensor *c_re, *c_im; /* NULL unless requested */
} assoc_gnn_batch;

int assoc_gnn_batch_make(sg_graph *g, const assoc_dataset *ds, const int64_t *idx, int64_t start,
                         int64_t B, double feature_scale, assoc_feature_kind features, sg_dtype dt,
                         bool couplings, assoc_gnn_batch *out);

/* 0 when the data set's links give the model's edge-feature width (the
 * model's feature kind on N antennas), else -1 with a message. */
int assoc_gnn_check_data(const assoc_gnn *m, const assoc_dataset *ds, sg_io_error *err);

/* Eval-mode A~ of the first count samples of ds, as doubles into A
 * (count x K x M): the inputs of `batch` samples at a time (features over
 * feature_scale), each batch through assoc_gnn_predict in chunks of `chunk`
 * samples (0: assoc_gnn_predict_chunk). The wall time of each batch (inputs,
 * forward and copy) goes to batch_seconds (one entry per batch) and their
 * sum to *seconds, either may be NULL. 0, or -1 with a message. */
typedef struct assoc_gnn_infer_opts {
  double feature_scale; /* the scale the model was trained with (> 0) */
  int64_t batch;        /* samples per batch of inputs (>= 1) */
  int64_t chunk;        /* samples per forward within a batch; 0: the default */
} assoc_gnn_infer_opts;

int assoc_gnn_infer(const assoc_gnn *m, const assoc_dataset *ds, int64_t count,
                    const assoc_gnn_infer_opts *o, double *A, double *batch_seconds,
                    double *seconds, sg_io_error *err);

/* ---- a model of one's own: the hook of training and evaluation (models/gnn/model.c) --- */

/* Any association model the library's training loop (assoc_train.h:
 * assoc_trainer_new_model, assoc_train_run with assoc_train_io.model) and
 * evaluation (assoc_eval.h: assoc_model_eval) can run: a registry of
 * trainable parameters and a forward callback from the batch inputs to the
 * soft association A~. The four GNNs run through the same hook
 * (assoc_gnn_model), so the loss, the dual update of mu, the schedule, the
 * data order and the metrics are the same code for both.
 *
 * The callback returns A~ [B, K, M] (UE rows, BS columns, of the
 * parameters' dtype), not logits: the loss (sum-rate with load penalty, or
 * the ES cross-entropy) and every rounding read A~, and the model chooses
 * its normalisation. Rows should be non-negative and sum to at most 1 (a
 * row summing to less serves the UE partly). To normalise the paper's way,
 * compute logits [B, K, M] and pass them to assoc_gnn_post_process (softmax,
 * Gumbel-softmax, or Gumbel-softmax + capacity Sinkhorn). */

/* What a forward is asked for. */
typedef struct assoc_model_call {
  assoc_gnn_mode mode;        /* TRAIN: noise on (if any), gradients recorded; EVAL: deterministic,
                                 the graph's grad mode off */
  sg_rng *rng;                /* TRAIN: the run's generator (Gumbel noise, dropout); EVAL: NULL */
  double capacity;            /* N: the most UEs a BS may serve (the Sinkhorn column cap) */
  sg_sinkhorn_info *sinkhorn; /* a Sinkhorn layer may report here (assoc_gnn_post_process
                                 does); zeroed before the call, may be left so */
  /* TRAIN over several MPI ranks: the batch is rows [rows_lo, rows_lo + B)
   * of a mini-batch of batch_rows samples. A model that draws random
   * numbers draws them for all batch_rows (as one process does, so the
   * generator advances alike on every rank) and keeps its rows:
   * assoc_model_gumbel does this for Gumbel noise. batch_rows 0: the batch
   * is the whole mini-batch. */
  int64_t rows_lo, batch_rows;
} assoc_model_call;

/* in: the batch inputs of assoc_gnn_batch_make in the model's dtype and
 * feature kind (p [B, M, Fp], q [B, K, Fq], H [B, M, K, Fe]; the couplings
 * are for the loss, NULL in eval mode). Returns A~ [B, K, M] in g, or NULL
 * after reporting a failure. The call must consume the same random draws
 * for the same inputs (runs are reproducible bit for bit). */
typedef sg_tensor *(*assoc_model_forward_fn)(void *ctx, sg_graph *g, const assoc_gnn_batch *in,
                                             const assoc_model_call *call);

typedef struct assoc_model {
  const char *name;            /* in messages and reports */
  sg_params *params;           /* the trainable parameters (Adam's); their dtype is the inputs' */
  assoc_feature_kind features; /* which edge features the batches carry (assoc_feature_width) */
  assoc_model_forward_fn forward;
  /* Optional: samples per eval-mode forward on K UEs and M BSs, to bound
   * inference memory; NULL: a whole batch at a time. */
  int64_t (*eval_chunk)(void *ctx, int64_t K, int64_t M);
  void *ctx; /* passed to forward and eval_chunk */
  /* The forward honours call->rows_lo and batch_rows (it draws no random
   * numbers, or draws them as assoc_model_call says): what a model needs to
   * train over several MPI ranks, where each rank runs a block of the batch. */
  bool splits_batches;
} assoc_model;

/* The Gumbel noise of a forward's B rows, in dtype dt: in TRAIN mode the
 * noise of the whole mini-batch ([batch_rows or B, K, M], drawn from
 * call->rng as one forward of it would draw it), rows rows_lo .. rows_lo+B-1;
 * NULL in EVAL mode. What assoc_gnn_post_process takes as noise. */
sg_tensor *(assoc_model_gumbel)(sg_graph *g, const assoc_model_call *call, sg_dtype dt, int64_t B,
                                int64_t K, int64_t M);
#define assoc_model_gumbel(g, ...) (assoc_model_gumbel)(SG_AT(g), __VA_ARGS__)

/* A built-in GNN through the hook (valid while m lives): the forward is
 * assoc_gnn_forward (the Gumbel sample from assoc_model_gumbel; the model's
 * own capacity, not call->capacity), eval_chunk assoc_gnn_predict_chunk;
 * it splits batches. */
assoc_model assoc_gnn_model(const assoc_gnn *m);

/* m->forward on in with the output checked: A~ [B, K, M] (B, M from in->p,
 * K from in->q) of the parameters' dtype; else NULL after reporting the
 * model's name, the shapes and the call site. */
sg_tensor *(assoc_model_forward)(sg_graph *g, const assoc_model *m, const assoc_gnn_batch *in,
                                 const assoc_model_call *call);
#define assoc_model_forward(g, ...) (assoc_model_forward)(SG_AT(g), __VA_ARGS__)

/* assoc_gnn_predict for any model: eval-mode A~ of a batch (inputs not in
 * g), a chunk of samples at a time on the scratch graph g (chunk <= 0:
 * m->eval_chunk, else the whole batch). A caller-owned tensor, or NULL
 * after reporting. */
sg_tensor *(assoc_model_predict)(sg_graph *g, const assoc_model *m, const assoc_gnn_batch *in,
                                 double capacity, int64_t chunk);
#define assoc_model_predict(g, ...) (assoc_model_predict)(SG_AT(g), __VA_ARGS__)

/* assoc_gnn_infer for any model (the same batches, timings and chunks).
 * 0, or -1 with a message. */
int assoc_model_infer(const assoc_model *m, const assoc_dataset *ds, int64_t count,
                      const assoc_gnn_infer_opts *o, double *A, double *batch_seconds,
                      double *seconds, sg_io_error *err);

/* The post-processing of the four GNNs (docs/models.md) on logits Ahat
 * [B, K, M], for a model of one's own: of c only variant, tau, sk_iters,
 * sk_balanced and capacity are read.
 *   SMA:            softmax over the BSs;
 *   GS:             Gumbel-softmax (train mode), softmax(Ahat / tau) (eval);
 *   SKGS, AttSKGS:  log-softmax((Ahat + G) / tau), then sk_iters capacity
 *                   Sinkhorn iterations (rows sum to 1, columns to at most
 *                   capacity), exponentiated.
 * In train mode the Gumbel sample G is noise [B, K, M] when given, else
 * drawn from rng. info (may be NULL) receives the Sinkhorn's report.
 * Differentiable in logits; NULL after reporting a misuse. */
sg_tensor *(assoc_gnn_post_process)(sg_graph *g, const assoc_gnn_config *c, sg_tensor *logits,
                                    assoc_gnn_mode mode, sg_rng *rng, sg_tensor *noise,
                                    sg_sinkhorn_info *info);
#define assoc_gnn_post_process(g, ...) (assoc_gnn_post_process)(SG_AT(g), __VA_ARGS__)

/* ---- evaluation helpers ------------------------------------------------------ */

/* One-hot of each row's argmax (ties: lowest m) of A [B, K, M]; no gradient. */
sg_tensor *(assoc_one_hot)(sg_graph *g, sg_tensor *A);
#define assoc_one_hot(g, ...) (assoc_one_hot)(SG_AT(g), __VA_ARGS__)
/* The integer association: assoc[b*K + k] = argmax_m A[b, k, m] (ties:
 * lowest m), for a [B, K, M] tensor of any dtype. */
void assoc_argmax(const sg_tensor *A, int *assoc);
/* The same for A~ as doubles: `rows` rows of M entries (a [B, K, M] array
 * has B*K rows). */
void assoc_argmax_rows(const double *A, int64_t rows, int M, int *assoc);

/* ---- differentiable sum-rate (models/gnn/sumrate.c) -------------------------------- */

/* MRT couplings c[m,k,l] = h_mk^T v_ml with v_ml = sqrt(pt/N) conj(h_ml)/|h_ml|
 * (a zero channel gives a zero beam), divided by sqrt(noise) so that the
 * sum-rate is then evaluated with noise power 1. H_re/H_im: [B, M, K, N]
 * row-major float64; pt: per-BS transmit power, noise: noise power (same
 * linear unit). Writes c_re, c_im [B, M, K, K] of dtype dt (in g's arena, or
 * caller-owned when g is NULL), without gradient. 0, or -1 after reporting. */
int assoc_mrt_couplings(sg_graph *g, const double *H_re, const double *H_im, int64_t B, int M,
                        int K, int N, double pt, double noise, sg_dtype dt, sg_tensor **c_re,
                        sg_tensor **c_im);

/* R [B] = sum_k log2(1 + SINR_k) of a fractional association A [B, K, M]:
 * s_k = sum_m a_km c[m,k,k], z_kl = sum_m a_lm c[m,k,l],
 * SINR_k = |s_k|^2 / (sum_{l != k} |z_kl|^2 + noise). Differentiable in A
 * (and in the couplings); built from library ops. */
sg_tensor *(assoc_sum_rate)(sg_graph *g, sg_tensor *A, sg_tensor *c_re, sg_tensor *c_im,
                            double noise);
#define assoc_sum_rate(g, ...) (assoc_sum_rate)(SG_AT(g), __VA_ARGS__)

/* The training loss of models.md (paper eq. (3)), a scalar:
 *   -mean_b rate_b + sum_m mu_m mean_b ReLU(sum_k a_km - (capacity - delta)).
 * rate [B] (from assoc_sum_rate), A [B, K, M], mu [M] (NULL: all zero).
 * violation (M, may be NULL) receives mean_b ReLU(...) per BS, the term of
 * the dual update (paper eq. (9)). */
sg_tensor *(assoc_loss)(sg_graph *g, sg_tensor *rate, sg_tensor *A, const double *mu,
                        double capacity, double delta, double *violation);
#define assoc_loss(g, ...) (assoc_loss)(SG_AT(g), __VA_ARGS__)

/* ---- differentiable sum-rate with beams (models/gnn/beamrate.c) -------------------- */

/* A complex tensor as two real tensors of one shape and dtype. Beams V and
 * channels H are [B, M, K, N] (v_mk, h_mk: BS m, UE k, antenna n), as the
 * data set's H_re/H_im; couplings are [B, M, K, K]. An op that fails
 * returns both members NULL (after reporting). */
typedef struct assoc_complex {
  sg_tensor *re, *im;
} assoc_complex;

/* The beams of a beam head's 2N-real output o [..., 2N]: re = o[..., 0:N],
 * im = o[..., N:2N] (the ordering of the H features). Differentiable. */
assoc_complex(assoc_beams_split)(sg_graph *g, sg_tensor *o);
#define assoc_beams_split(g, ...) (assoc_beams_split)(SG_AT(g), __VA_ARGS__)

/* Couplings of arbitrary beams: c[b,m,k,l] = h_mk^T v_ml = sum_n
 * h[b,m,k,n] v[b,m,l,n] (no conjugate), [B, M, K, K]: what UE k receives
 * from BS m's beam for UE l. H (usually without gradient) and V of one
 * shape [B, M, K, N] and dtype. Differentiable in V (and in H). The rate of
 * an association A [B, K, M] with these beams is
 * assoc_sum_rate(g, A, c.re, c.im, noise): that function takes any couplings
 * (s_k = sum_m a_km c[m,k,k], z_kl = sum_m a_lm c[m,k,l]). */
assoc_complex(assoc_beam_couplings)(sg_graph *g, sg_tensor *H_re, sg_tensor *H_im, sg_tensor *V_re,
                                    sg_tensor *V_im);
#define assoc_beam_couplings(g, ...) (assoc_beam_couplings)(SG_AT(g), __VA_ARGS__)

/* The per-BS power normalisation of docs/models.md, with the norm
 *   ||V_m||_F^2 = sum_k a_km^2 ||v_mk||^2 + ASSOC_BEAM_NORM_EPS
 * (A [B, K, M], fractional or integer):
 *   ASSOC_BEAM_PROJECT:    V_m <- V_m min(1, sqrt(P_m) / ||V_m||_F)  (onto the ball)
 *   ASSOC_BEAM_FULL_POWER: V_m <- V_m sqrt(P_m) / ||V_m||_F          (onto the sphere)
 * power: P_m for each of the M BSs (> 0, in the beams' squared unit).
 * Differentiable in V and in A. At the kink of the projection (||V_m||_F =
 * sqrt(P_m) exactly) the gradient is that of the inside branch: the factor
 * counts as the constant 1, as sg_relu's gradient is 0 at 0. */
#define ASSOC_BEAM_NORM_EPS 1e-12
typedef enum assoc_beam_norm { ASSOC_BEAM_PROJECT, ASSOC_BEAM_FULL_POWER } assoc_beam_norm;
assoc_complex(assoc_beam_normalize)(sg_graph *g, sg_tensor *A, sg_tensor *V_re, sg_tensor *V_im,
                                    const double *power, assoc_beam_norm mode);
#define assoc_beam_normalize(g, ...) (assoc_beam_normalize)(SG_AT(g), __VA_ARGS__)

/* ---- BFGNN: beams for a given association (models/gnn/bfgnn.c) -------------------- */

/* The beamforming GNN of docs/models.md ("BFGNN"): the MLP-edge trunk of
 * SMA-GNN on the edge input [Re h_mk/s, Im h_mk/s, a_km] (Fe = 2N + 1),
 * p = Pt dBm / 30, q = 1, and the beam head mlp_v (d -> 2N) on the final
 * edge embeddings. The beams of an association A [B, K, M] (0/1 rows; a
 * dropped UE's row is zero; no gradient):
 *   o = mlp_v(e) [B, M, K, 2N] -> v_mk = o[0:N] + j o[N:2N] -> a_km v_mk
 *   -> per-BS normalisation (assoc_beam_normalize, P_m = power) -> V.
 * Units: beams are in units of sqrt(P_t) (power 1 is the BS's full budget
 * P_t), the rate channels G = h sqrt(P_t) / sigma (assoc_bfgnn_batch), so
 * that assoc_bfgnn_rate is in bps/Hz with noise power 1. MRT beams
 * sqrt(1/N) conj(g)/|g| then give assoc_mrt_couplings' couplings. */
/* The beam head of BFGNN (docs/models.md "BFGNN", "duality head"):
 *   ASSOC_BFGNN_HEAD_DIRECT:  mlp_v (d -> 2N) gives the beam's 2N reals;
 *   ASSOC_BFGNN_HEAD_DUALITY: mlp_v (d -> 2) gives per edge a weight
 *     lambda_mk = exp(10 tanh(o_mk0 / 10)) (0 for a dropped UE) and a power
 *     w_mk = exp(10 tanh(o_mk1 / 10)); BS m's beam for UE k is
 *       u_mk = (I + sum_l lambda_ml x_ml^* x_ml^T)^{-1} x_mk^*,
 *       v_mk = sqrt(w_mk) u_mk / |u_mk|
 *     (x_mk the scaled channel of the features X; sg_solve on the 2N x 2N
 *     real form), the structure of the optimal multi-cell MISO beams
 *     (uplink-downlink duality), then masked and normalised per BS as the
 *     direct head's. N <= SG_SOLVE_MAX_N / 2. */
typedef enum assoc_bfgnn_head {
  ASSOC_BFGNN_HEAD_DIRECT,
  ASSOC_BFGNN_HEAD_DUALITY
} assoc_bfgnn_head;

typedef struct assoc_bfgnn_config {
  int d, h, L;           /* embedding width, MLP hidden width, update layers (>= 1) */
  int n_antennas;        /* N: the direct head's 2N outputs, the edge input's 2N + 1 */
  sg_dtype dtype;        /* of the parameters and of every input */
  assoc_beam_norm norm;  /* ASSOC_BEAM_PROJECT (default) or ASSOC_BEAM_FULL_POWER */
  double power;          /* P_m of every BS, in units of P_t (default 1) */
  bool concat_inputs;    /* as assoc_gnn_config.concat_inputs */
  assoc_bfgnn_head head; /* ASSOC_BFGNN_HEAD_DIRECT (default) or ASSOC_BFGNN_HEAD_DUALITY */
  int64_t max_params;    /* as assoc_gnn_config.max_params */
} assoc_bfgnn_config;

/* The paper widths (d 512, h 1024, L 2), N = 4, float32, projection, power 1,
 * the direct head. */
assoc_bfgnn_config assoc_bfgnn_config_paper(void);

typedef struct assoc_bfgnn {
  assoc_bfgnn_config cfg;
  /* The SMA-GNN trunk (variant SMA, fp = fq = 1, fe = 2N + 1). It owns the
   * parameters (trunk.params: "mlp_p...", "layers...", "mlp_v..."); its
   * mlp_out is not built. */
  assoc_gnn trunk;
  sg_mlp mlp_v; /* "mlp_v": MLP(d, 2N) */
} assoc_bfgnn;

/* Builds and initialises a model (as assoc_gnn_new) from seed; NULL after
 * reporting a bad configuration or when out of memory. */
assoc_bfgnn *assoc_bfgnn_new(const assoc_bfgnn_config *cfg, uint64_t seed);
/* Why assoc_bfgnn_new would refuse the head's settings of cfg (N, power,
 * norm, head), or NULL: how a reader refuses a file's configuration with a
 * message instead of a report. The trunk's widths are checked apart. */
const char *assoc_bfgnn_config_problem(const assoc_bfgnn_config *cfg);
void assoc_bfgnn_free(assoc_bfgnn *m);
int64_t assoc_bfgnn_param_count(const assoc_bfgnn *m);

/* The beams V [B, M, K, N] of p [B, M, 1], q [B, K, 1], the scaled channel
 * features X [B, M, K, 2N] and the association A [B, K, M] (all of the
 * model's dtype). Differentiable in the parameters and in p, q, X. Both
 * members NULL after reporting a misuse. */
assoc_complex(assoc_bfgnn_forward)(sg_graph *g, const assoc_bfgnn *m, sg_tensor *p, sg_tensor *q,
                                   sg_tensor *X, sg_tensor *A);
#define assoc_bfgnn_forward(g, ...) (assoc_bfgnn_forward)(SG_AT(g), __VA_ARGS__)

/* R [B] (bps/Hz) of A with beams V on the rate channels G [B, M, K, N]:
 * assoc_sum_rate(A, assoc_beam_couplings(G, V), noise 1). */
sg_tensor *(assoc_bfgnn_rate)(sg_graph *g, sg_tensor *A, sg_tensor *G_re, sg_tensor *G_im,
                              assoc_complex V);
#define assoc_bfgnn_rate(g, ...) (assoc_bfgnn_rate)(SG_AT(g), __VA_ARGS__)

/* The inputs of a mini-batch with a given integer association, in g's
 * arena: p, q and X as assoc_gnn_batch_make's channel features (X = h
 * sqrt(P_t/N) / sigma / feature_scale), A [B, K, M] the one-hot rows of
 * assoc (a zero row for -1), and the rate channels G = h sqrt(P_t) / sigma.
 * assoc holds ds->S x K entries (assoc[s*K + k] in -1..M-1, each BS
 * serving at most N UEs); sample b of the batch is idx[b] or start + b.
 * assoc NULL (JointGNN, which makes its own association): A is NULL.
 * 0, or -1 after reporting. */
typedef struct assoc_bfgnn_batch {
  int64_t B;
  sg_tensor *p, *q, *X;   /* [B, M, 1], [B, K, 1], [B, M, K, 2N] */
  sg_tensor *A;           /* [B, K, M] */
  sg_tensor *G_re, *G_im; /* [B, M, K, N] */
} assoc_bfgnn_batch;

int assoc_bfgnn_batch_make(sg_graph *g, const assoc_dataset *ds, const int *assoc,
                           const int64_t *idx, int64_t start, int64_t B, double feature_scale,
                           sg_dtype dt, assoc_bfgnn_batch *out);

/* Fused float32 inference (models/gnn/bfgnn_infer.c): the beams of
 * assoc_bfgnn_forward for any d, h, L and either head, without a graph,
 * from a float32 copy of the weights taken by assoc_bfgnn_fused_new (a
 * later change to the model's parameters needs a new copy). The samples
 * run in fixed blocks of up to 16 over the OpenMP threads, each thread in
 * its own preallocated scratch (kept between calls), so the beams are
 * bitwise identical for any thread count. One caller at a time per
 * object. Inputs are float32 arrays in the layouts of the tensors of
 * assoc_bfgnn_forward: p [B, M], q [B, K], X [B, M, K, 2N] and A [B, K, M]
 * (0/1 rows of a load-feasible association); beams V_re, V_im
 * [B, M, K, N] in units of sqrt(P_t). */
typedef struct assoc_bfgnn_fused assoc_bfgnn_fused;
typedef struct assoc_bfgnn_fused_inputs {
  int64_t B;
  int M, K;
  const float *p, *q, *X, *A;
} assoc_bfgnn_fused_inputs;
/* NULL after reporting a NULL model, or when out of memory. */
assoc_bfgnn_fused *assoc_bfgnn_fused_new(const assoc_bfgnn *m);
void assoc_bfgnn_fused_free(assoc_bfgnn_fused *f);
/* 0, or -1 after reporting bad inputs or a lack of memory. */
int assoc_bfgnn_fused_beams(assoc_bfgnn_fused *f, const assoc_bfgnn_fused_inputs *in, float *V_re,
                            float *V_im);

/* Data-parallel training of the beam models over R processes ("ranks")
 * that each make the same training call with the same arguments
 * (docs/design.md "Data-parallel training"; models/train wires this to
 * MPI: assoc_beam_dist_hook in assoc_train.h). Every rank draws every
 * mini-batch, shuffle and Gumbel sample of the whole batch (the generators
 * advance alike on every rank) and computes the gradient of its block of
 * the batch, samples B*rank/R .. B*(rank+1)/R (as assoc_dist_block), scaled
 * by the block's share of the batch; one call of sum per step adds those
 * gradients and the step's rate across the ranks, and every rank takes the
 * same Adam step: the model of one process up to round-off. */
typedef struct assoc_gnn_dist {
  int rank, ranks; /* 0 <= rank < ranks */
  /* Replaces buf (n elements of dtype dt, the same n on every rank) on
   * every rank with its sum over the ranks, in an order that does not
   * depend on timing. Collective. 0, or -1 after reporting. */
  int (*sum)(void *user, void *buf, int64_t n, sg_dtype dt);
  void *user;
} assoc_gnn_dist;

/* Training (models/gnn/bfgnn_train.c, the loop of beam_train.c): epochs
 * of shuffled mini-batches of ds's samples, Adam on -mean R(A, V), the
 * learning rate on cosine warm restarts (sg_cosine_restarts, stepped per
 * mini-batch). Sample s trains
 * with assocs[w_s] (each an S x K array as assoc_bfgnn_batch_make's), w_s
 * drawn once from seed: a fixed per-sample mix of, e.g., RandInt,
 * MaxSINR-capped and ES associations. last_rate (may be NULL) receives the
 * last epoch's mean training rate. 0; -1 after reporting; -2 when a
 * mini-batch's mean rate is NaN (training diverged; nothing is reported). */
typedef struct assoc_bfgnn_train_opts {
  double feature_scale;  /* s of the X features (> 0) */
  int64_t batch;         /* samples per mini-batch (<= S) */
  int epochs;            /* each of S / batch mini-batches */
  double lr_min, lr_max; /* the schedule's range */
  double t0;             /* first period, epochs */
  int t_mult;            /* period multiplier */
  uint64_t seed;         /* the mix and the shuffles */
  /* mini-batches per epoch; 0: S / batch, one pass. The batches walk
   * through a shuffle of the samples, reshuffled when fewer than batch
   * samples are left. */
  int64_t batches_per_epoch;
  /* called after each epoch (1-based) with its mean training rate and the
   * last learning rate; may be NULL */
  void (*epoch_fn)(void *user, int epoch, double rate, double lr);
  void *user;
  /* NULL (or ranks 1): one process; else this rank of a data-parallel run
   * (batch >= ranks), the same weights on every rank after every step */
  const assoc_gnn_dist *dist;
} assoc_bfgnn_train_opts;

/* Batch 64, 1 epoch of one pass, the paper's schedule (1e-8 to 5e-5, t0 50,
 * x2), seed 1, no callback. */
assoc_bfgnn_train_opts assoc_bfgnn_train_defaults(double feature_scale);
int assoc_bfgnn_train(assoc_bfgnn *m, const assoc_dataset *ds, const int *const *assocs,
                      int n_assoc, const assoc_bfgnn_train_opts *o, double *last_rate);
/* Mean over samples [start, start+count) of the rate (bps/Hz) of the
 * model's beams for the association assoc (S x K); NAN after reporting. */
double assoc_bfgnn_mean_rate(const assoc_bfgnn *m, const assoc_dataset *ds, const int *assoc,
                             int64_t start, int64_t count, double feature_scale);

/* The state of a beam model's training between epochs: what a run needs
 * to continue bit for bit (assoc_jointgnn_train_resume). Owns order and
 * adam (assoc_beam_train_state_free). */
typedef struct assoc_beam_train_state {
  int epoch;                       /* epochs completed */
  int M;                           /* BSs of the training data */
  int64_t S;                       /* samples of the training data */
  int64_t cursor;                  /* next unused position in order */
  int64_t *order;                  /* [S] the current shuffle of the samples */
  sg_rng shuffle;                  /* the shuffles' generator */
  sg_rng noise;                    /* the Gumbel noise's generator (JointGNN with gumbel) */
  sg_adam *adam;                   /* the optimiser over the model's parameters */
  double penalty_mu[ASSOC_MAX_BS]; /* storage for a run's penalty mu read back */
} assoc_beam_train_state;
void assoc_beam_train_state_free(assoc_beam_train_state *st);

/* ---- JointGNN: association and beams together (models/gnn/jointgnn.c) ------------- */

/* The joint association and beamforming GNN of docs/models.md ("JointGNN",
 * SM-GNN): the MLP-edge trunk of SMA-GNN on the channel features only
 * (Fe = 2N, no a_km), p = Pt dBm / 30, q = 1, and two heads on the final
 * edge embeddings e_mk: mlp_a (d -> 1) gives Ahat and mlp_v (d -> 2N) the
 * raw beams. Then
 *   A~ = softmax_m(Ahat)            (SM; gumbel off, or gumbel on in eval mode
 *                                    with softmax_m(Ahat / tau))
 *   A~ = softmax_m((Ahat + G)/tau)  (gumbel on, train mode)
 *   v_mk = o_mk[0:N] + j o_mk[N:2N] -> assoc_beam_normalize(A~, v, P_m = power)
 * The beams are not multiplied by a_km: the per-BS norm weighs them by
 * a~_km^2 and the rate by A~ (assoc_jointgnn_rate). Units as BFGNN's. */
typedef struct assoc_jointgnn_config {
  int d, h, L;          /* embedding width, MLP hidden width, update layers (>= 1) */
  int n_antennas;       /* N: the edge input's and the beam head's 2N */
  sg_dtype dtype;       /* of the parameters and of every input */
  assoc_beam_norm norm; /* ASSOC_BEAM_PROJECT (default) or ASSOC_BEAM_FULL_POWER */
  double power;         /* P_m of every BS, in units of P_t (default 1) */
  bool gumbel;          /* Gumbel-softmax association (GS variant); default softmax */
  double tau;           /* Gumbel-softmax temperature (> 0; used when gumbel is on) */
  bool concat_inputs;   /* as assoc_gnn_config.concat_inputs */
  int64_t max_params;   /* as assoc_gnn_config.max_params */
} assoc_jointgnn_config;

/* The paper widths (d 512, h 1024, L 2), N = 4, float32, projection, power
 * 1, softmax (gumbel off, tau 1). */
assoc_jointgnn_config assoc_jointgnn_config_paper(void);

typedef struct assoc_jointgnn {
  assoc_jointgnn_config cfg;
  /* The SMA-GNN trunk (fp = fq = 1, fe = 2N). It owns the parameters
   * ("mlp_p...", "layers...", "mlp_a...", "mlp_v..."); its mlp_out is not
   * built. */
  assoc_gnn trunk;
  sg_mlp mlp_a; /* "mlp_a": MLP(d, 1), the association head */
  sg_mlp mlp_v; /* "mlp_v": MLP(d, 2N), the beam head */
} assoc_jointgnn;

assoc_jointgnn *assoc_jointgnn_new(const assoc_jointgnn_config *cfg, uint64_t seed);
/* As assoc_bfgnn_config_problem: N, power, tau, norm. */
const char *assoc_jointgnn_config_problem(const assoc_jointgnn_config *cfg);
void assoc_jointgnn_free(assoc_jointgnn *m);
int64_t assoc_jointgnn_param_count(const assoc_jointgnn *m);

typedef struct assoc_jointgnn_output {
  sg_tensor *logits; /* Ahat [B, K, M] */
  sg_tensor *assoc;  /* A~ [B, K, M], rows summing to 1 */
  assoc_complex V;   /* beams [B, M, K, N], normalised per BS with A~ */
  assoc_complex raw; /* the beam head's v [B, M, K, N] before the normalisation */
} assoc_jointgnn_output;

/* The forward pass on p [B, M, 1], q [B, K, 1] and the channel features X
 * [B, M, K, 2N] (all of the model's dtype). With gumbel on, train mode
 * uses the Gumbel sample noise [B, K, M] when given (no gradient), else
 * draws it from rng; eval mode and gumbel off ignore both. Differentiable
 * in the parameters and in p, q, X. NULL members after reporting a misuse. */
assoc_jointgnn_output(assoc_jointgnn_forward)(sg_graph *g, const assoc_jointgnn *m, sg_tensor *p,
                                              sg_tensor *q, sg_tensor *X, assoc_gnn_mode mode,
                                              sg_rng *rng, sg_tensor *noise);
#define assoc_jointgnn_forward(g, ...) (assoc_jointgnn_forward)(SG_AT(g), __VA_ARGS__)

/* R [B] (bps/Hz) of the output on the rate channels G [B, M, K, N]:
 * assoc_sum_rate(A~, assoc_beam_couplings(G, V), noise 1). */
sg_tensor *(assoc_jointgnn_rate)(sg_graph *g, const assoc_jointgnn_output *out, sg_tensor *G_re,
                                 sg_tensor *G_im);
#define assoc_jointgnn_rate(g, ...) (assoc_jointgnn_rate)(SG_AT(g), __VA_ARGS__)

/* The optional load penalty of paper eq. (3) (off by default): from epoch
 * start_epoch on (1-based), sum_m mu_m mean_b ReLU(sum_k a~_km - (capacity
 * - delta)) is added to the loss. */
typedef struct assoc_jointgnn_penalty {
  const double *mu; /* M multipliers; NULL: no penalty */
  double capacity;  /* N of the load constraint */
  double delta;     /* the margin */
  int start_epoch;  /* the epoch T from which the term is on */
} assoc_jointgnn_penalty;

/* The loss -mean_b R_b (rate from assoc_jointgnn_rate), plus the penalty
 * when pen is given, pen->mu is set and epoch >= pen->start_epoch (through
 * assoc_loss). violation (M, may be NULL) receives mean_b ReLU(...) per BS
 * whenever pen is given. NULL after reporting a misuse. */
sg_tensor *(assoc_jointgnn_loss)(sg_graph *g, sg_tensor *rate, const assoc_jointgnn_output *out,
                                 const assoc_jointgnn_penalty *pen, int epoch, double *violation);
#define assoc_jointgnn_loss(g, ...) (assoc_jointgnn_loss)(SG_AT(g), __VA_ARGS__)

/* Training (models/gnn/jointgnn_train.c): Adam on -mean R(A~, V) of the
 * train-mode forward (Gumbel noise drawn from a stream of seed when
 * cfg.gumbel is on), with base's mini-batches, schedule, seed semantics
 * (the same shuffles as assoc_bfgnn_train for a seed) and callback. The
 * loss is the pure sum rate unless penalty.mu is set: then the eq. (3) term
 * of assoc_jointgnn_loss is added from epoch penalty.start_epoch on.
 * Deterministic: the same seed gives the same weights bit for bit, on any
 * thread count. last_rate (may be NULL): the last epoch's mean training
 * rate R(A~, V). 0; -1 after reporting; -2 when a mini-batch's mean rate is
 * NaN (training diverged; nothing is reported). */
typedef struct assoc_jointgnn_train_opts {
  assoc_bfgnn_train_opts base;    /* feature scale, batching, schedule, seed, callback */
  assoc_jointgnn_penalty penalty; /* mu NULL (the default): off */
} assoc_jointgnn_train_opts;

/* base = assoc_bfgnn_train_defaults(feature_scale), penalty off. */
assoc_jointgnn_train_opts assoc_jointgnn_train_defaults(double feature_scale);
int assoc_jointgnn_train(assoc_jointgnn *m, const assoc_dataset *ds,
                         const assoc_jointgnn_train_opts *o, double *last_rate);

/* The same run in parts: _start gives the fresh state of a run of o on ds
 * (epoch 0, the generators seeded from o's seed, a new Adam), _resume
 * trains from st->epoch until o->base.epochs are complete, updating st
 * after each epoch (before o's epoch_fn, which may therefore save it with
 * assoc_jointgnn_checkpoint_write_run). Any split of the epochs over
 * _resume calls, with st saved and read back in between, gives the
 * weights of one uninterrupted run bit for bit. 0, or -1 after reporting
 * (_resume: a state of another data set or model). */
int assoc_jointgnn_train_start(const assoc_jointgnn *m, const assoc_dataset *ds,
                               const assoc_jointgnn_train_opts *o, assoc_beam_train_state *st);
int assoc_jointgnn_train_resume(assoc_jointgnn *m, const assoc_dataset *ds,
                                const assoc_jointgnn_train_opts *o, assoc_beam_train_state *st,
                                double *last_rate);

#ifdef __cplusplus
}
#endif
#ifdef __GNUC__
#pragma GCC visibility pop
#endif
#endif
