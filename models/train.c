/* Training of the association GNNs: mini-batch inputs, evaluation, the
 * trainer (loss of models.md with the dual update, Adam, warm-restart cosine
 * schedule per mini-batch) and the whole loop with CSV log and checkpoints.
 *
 * Determinism: a run's only random source is t->rng (data order and Gumbel
 * noise, drawn sequentially on the calling thread); the ops are bitwise
 * reproducible for any thread count; so the state after an epoch is a
 * function of the checkpointed state alone, and a resumed run reproduces an
 * uninterrupted one bit for bit. */
#include "sg_train.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int fail(sg_io_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(sg_io_error *err, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* ---- configuration ------------------------------------------------------------- */

/* The model part comes from the paper configuration of the model itself,
 * so the two defaults cannot drift apart. */
sg_train_config sg_train_config_default(sg_gnn_variant v) {
  sg_gnn_config m = sg_gnn_config_paper(v);
  return (sg_train_config){.variant = v,
                           .d = m.d,
                           .h = m.h,
                           .L = m.L,
                           .tau = m.tau,
                           .sk_iters = m.sk_iters,
                           .dtype = m.dtype,
                           .batch = 32,
                           .batches_per_epoch = 400,
                           .epochs = 1,
                           .lr_min = 1e-8,
                           .lr_max = 5e-5,
                           .t0 = 50,
                           .t_mult = 2,
                           .t_mu = 100,
                           .delta = 2.0,
                           .seed = 1,
                           .threads = 0,
                           .feature_scale = 0.0,
                           .eval_batch = 256};
}

static const char *config_problem(const sg_train_config *c) {
  if (c->variant < 0 || c->variant >= SG_GNN_VARIANT_COUNT) return "unknown model variant";
  if (c->d < 1 || c->h < 1 || c->L < 1) return "d, h and L must be >= 1";
  if (!(c->tau > 0) || !isfinite(c->tau)) return "tau must be a finite number > 0";
  if (c->sk_iters < 1) return "the Sinkhorn iterations must be >= 1";
  if (c->dtype != SG_F32 && c->dtype != SG_F64) return "dtype must be float32 or float64";
  if (c->batch < 1) return "the batch size must be >= 1";
  if (c->batches_per_epoch < 0) return "batches per epoch must be >= 0 (0: a full pass)";
  if (c->epochs < 0) return "epochs must be >= 0";
  if (!(c->lr_min >= 0) || !(c->lr_max > 0) || !(c->lr_min <= c->lr_max) || !isfinite(c->lr_max))
    return "learning rates need 0 <= lr_min <= lr_max, lr_max > 0, finite";
  if (!(c->t0 > 0) || !isfinite(c->t0)) return "the first period t0 must be a finite number > 0";
  if (c->t_mult < 1) return "the period multiplier must be >= 1";
  if (c->t_mu < 1) return "the dual-update period t_mu must be >= 1";
  if (!isfinite(c->delta)) return "delta must be finite";
  if (c->threads < 0) return "threads must be >= 0";
  if (!(c->feature_scale >= 0) || !isfinite(c->feature_scale))
    return "the feature scale must be finite and >= 0 (0: computed)";
  if (c->eval_batch < 1) return "the evaluation batch size must be >= 1";
  return NULL;
}

int sg_train_config_check(const sg_train_config *c, char *msg, size_t msg_len) {
  const char *why = c ? config_problem(c) : "no configuration";
  if (why && msg && msg_len) snprintf(msg, msg_len, "%s", why);
  return why ? -1 : 0;
}

sg_gnn_config sg_train_gnn_config(const sg_train_config *c, int N) {
  return (sg_gnn_config){.variant = c->variant,
                         .d = c->d,
                         .h = c->h,
                         .L = c->L,
                         .fp = 1,
                         .fq = 1,
                         .fe = 2 * N,
                         .dtype = c->dtype,
                         .tau = c->tau,
                         .sk_iters = c->sk_iters,
                         .sk_balanced = c->sk_balanced != 0,
                         .capacity = N,
                         .concat_inputs = false};
}

/* ---- model inputs ------------------------------------------------------------- */

static bool batch_args_valid(const sg_graph *g, const sg_dataset *ds, const int64_t *idx,
                             int64_t start, int64_t B, double scale) {
  bool ok = g && ds && B >= 1 && scale > 0 && isfinite(scale);
  if (ok && !idx) ok = start >= 0 && start + B <= ds->S;
  for (int64_t b = 0; ok && idx && b < B; b++) ok = idx[b] >= 0 && idx[b] < ds->S;
  if (!ok)
    sg_report_error("sg_gnn_batch_make", __FILE__, __LINE__,
                    "bad arguments: B %lld, start %lld, scale %g, data set of %lld samples "
                    "(need B >= 1, samples in range, scale > 0, non-NULL graph and data set)",
                    (long long)B, (long long)start, scale, ds ? (long long)ds->S : 0LL);
  return ok;
}

/* H features of the batch, one sample at a time (samples are contiguous in
 * the data set, batches need not be). */
static void fill_features(const sg_dataset *ds, const int64_t *idx, int64_t start, int64_t B,
                          double scale, sg_tensor *H) {
  int64_t per = (int64_t)ds->M * ds->K * 2 * ds->N;
  if (H->dtype == SG_F32) {
    float *out = sg_f32(H);
#pragma omp parallel for if (B * per > 65536) schedule(static)
    for (int64_t b = 0; b < B; b++)
      sg_features_fill(ds, idx ? idx[b] : start + b, 1, scale, out + b * per);
    return;
  }
  /* float64: through a float64 tensor per sample (reference / gradcheck path) */
  double *out = sg_f64(H);
  for (int64_t b = 0; b < B; b++) {
    sg_tensor *one = sg_features(H->graph, ds, idx ? idx[b] : start + b, 1, scale, SG_F64);
    memcpy(out + b * per, sg_f64(one), (size_t)per * sizeof(double));
  }
}

/* MRT couplings of the batch; non-contiguous samples are gathered into
 * arena scratch first. */
static int batch_couplings(sg_graph *g, const sg_dataset *ds, const int64_t *idx, int64_t start,
                           int64_t B, sg_dtype dt, sg_gnn_batch *out) {
  int64_t per = (int64_t)ds->M * ds->K * ds->N;
  const double *re = ds->H_re + start * per, *im = ds->H_im + start * per;
  if (idx) {
    double *gre = sg_arena_alloc(g, (size_t)(B * per) * sizeof(double));
    double *gim = sg_arena_alloc(g, (size_t)(B * per) * sizeof(double));
    if (!gre || !gim) return -1;
    for (int64_t b = 0; b < B; b++) {
      memcpy(gre + b * per, ds->H_re + idx[b] * per, (size_t)per * sizeof(double));
      memcpy(gim + b * per, ds->H_im + idx[b] * per, (size_t)per * sizeof(double));
    }
    re = gre, im = gim;
  }
  /* powers in mW: only their ratio matters */
  double pt = pow(10.0, ds->pt_dbm / 10.0), noise = pow(10.0, ds->noise_dbm / 10.0);
  return sg_mrt_couplings(g, re, im, B, ds->M, ds->K, ds->N, pt, noise, dt, &out->c_re, &out->c_im);
}

int sg_gnn_batch_make(sg_graph *g, const sg_dataset *ds, const int64_t *idx, int64_t start,
                      int64_t B, double feature_scale, sg_dtype dt, bool couplings,
                      sg_gnn_batch *out) {
  *out = (sg_gnn_batch){.B = B};
  if (!batch_args_valid(g, ds, idx, start, B, feature_scale)) return -1;
  int64_t M = ds->M, K = ds->K;
  out->p = sg_full(g, dt, 3, (int64_t[]){B, M, 1}, ds->pt_dbm / 30.0);
  out->q = sg_ones(g, dt, 3, (int64_t[]){B, K, 1});
  out->H = sg_empty(g, dt, 4, (int64_t[]){B, M, K, 2 * ds->N});
  if (!out->p || !out->q || !out->H) return -1;
  fill_features(ds, idx, start, B, feature_scale, out->H);
  if (couplings && batch_couplings(g, ds, idx, start, B, dt, out)) return -1;
  return 0;
}

/* ---- evaluation ----------------------------------------------------------------- */

/* A~ of one batch into score (doubles, [B, K, M]) and its argmax into assoc. */
static void store_outputs(const sg_tensor *A, int *assoc, double *score) {
  sg_assoc_argmax(A, assoc);
  for (int64_t i = 0; i < A->numel; i++) score[i] = sg_get(A, i);
}

/* Runs the model in eval mode over the first S samples. */
static int evaluate_batches(const sg_gnn *m, const sg_dataset *ds, double scale, int64_t S,
                            int64_t eval_batch, int *assoc, double *score, double *seconds,
                            sg_io_error *err) {
  sg_graph *g = sg_graph_new();
  if (!g) return fail(err, "out of memory");
  sg_set_grad_enabled(g, false);
  int rc = 0;
  *seconds = 0;
  int64_t K = ds->K, M = ds->M;
  for (int64_t start = 0; start < S && !rc; start += eval_batch) {
    int64_t B = S - start < eval_batch ? S - start : eval_batch;
    sg_graph_reset(g);
    double t0 = omp_get_wtime();
    sg_gnn_batch in;
    sg_gnn_output o = {0};
    if (!sg_gnn_batch_make(g, ds, NULL, start, B, scale, m->cfg.dtype, false, &in))
      o = sg_gnn_forward(g, m, in.p, in.q, in.H, SG_GNN_EVAL, NULL, NULL);
    *seconds += omp_get_wtime() - t0;
    if (!o.assoc)
      rc = fail(err, "model evaluation failed on samples %lld..%lld", (long long)start,
                (long long)(start + B - 1));
    else
      store_outputs(o.assoc, assoc + start * K, score + start * K * M);
  }
  sg_graph_free(g);
  return rc;
}

int sg_gnn_evaluate(const sg_gnn *m, const sg_dataset *ds, double feature_scale, int64_t eval_batch,
                    int64_t limit, sg_metrics *out, sg_io_error *err) {
  if (!m || !ds || !out || eval_batch < 1 || !(feature_scale > 0))
    return fail(err, "sg_gnn_evaluate: bad arguments (need a model, a data set, "
                     "eval_batch >= 1, feature scale > 0)");
  if (2 * ds->N != m->cfg.fe)
    return fail(err, "the data set has N = %d antennas but the model was built for N = %d", ds->N,
                m->cfg.fe / 2);
  int64_t S = limit > 0 && limit < ds->S ? limit : ds->S;
  int *assoc = sg_malloc((size_t)(S * ds->K) * sizeof *assoc);
  double *score = sg_malloc((size_t)(S * ds->K * ds->M) * sizeof *score);
  double seconds = 0;
  int rc = assoc && score ? 0 : fail(err, "out of memory");
  if (!rc) rc = evaluate_batches(m, ds, feature_scale, S, eval_batch, assoc, score, &seconds, err);
  sg_dataset view = *ds;
  view.S = S; /* samples are contiguous: a prefix view */
  if (!rc &&
      sg_metrics_compute(&view, assoc, score, NULL, 1e3 * seconds / (double)S, out, NULL, NULL))
    rc = fail(err, "out of memory");
  sg_mfree(assoc);
  sg_mfree(score);
  return rc;
}

/* ---- the trainer ------------------------------------------------------------------ */

struct sg_trainer {
  sg_train_config cfg;
  const sg_dataset *train, *test;
  sg_gnn *model;
  sg_adam *adam;
  sg_graph *graph;
  sg_rng rng;
  double feature_scale;
  int M;
  double *mu, *excess, *excess_sum, *batch_excess; /* [M] each */
  int64_t *perm;                                   /* [S]: the data order of the epoch */
  int64_t cursor;                                  /* next unused position in perm */
  int *assoc;                                      /* [batch * K] scratch */
  int64_t batches;                                 /* per epoch */
  int epoch;
  int64_t step;
  bool abandoned; /* an epoch was stopped half-way: the state is not an epoch boundary */
};

/* The run's generator is seeded apart from the model's initialisation. */
static void seed_run_rng(sg_rng *r, uint64_t seed) {
  sg_rng_seed(r, sg_stream_seed(seed, UINT64_C(0x747261696e), 0));
}

static int check_data(const sg_train_config *c, const sg_dataset *train, const sg_dataset *test,
                      sg_io_error *err) {
  char msg[256];
  if (sg_train_config_check(c, msg, sizeof msg)) return fail(err, "bad configuration: %s", msg);
  if (!train || train->S < 1) return fail(err, "no training data");
  if (train->M > SG_MAX_BS) return fail(err, "too many BSs (%d)", train->M);
  if (train->S < c->batch)
    return fail(err, "the training set has %lld samples, fewer than one mini-batch of %lld",
                (long long)train->S, (long long)c->batch);
  if (test && test->N != train->N)
    return fail(err, "the test set has N = %d antennas, the training set N = %d", test->N,
                train->N);
  return 0;
}

/* Graph, scratch arrays, and the sizes derived from the data (model, adam,
 * mu and rng are set by the caller). */
static int trainer_setup(sg_trainer *t, sg_io_error *err) {
  int64_t S = t->train->S;
  t->M = t->train->M;
  t->batches = t->cfg.batches_per_epoch ? t->cfg.batches_per_epoch : S / t->cfg.batch;
  t->graph = sg_graph_new();
  size_t m_bytes = (size_t)t->M * sizeof(double);
  t->excess = sg_malloc(m_bytes), t->excess_sum = sg_malloc(m_bytes);
  t->batch_excess = sg_malloc(m_bytes);
  t->perm = sg_malloc((size_t)S * sizeof *t->perm);
  t->assoc = sg_malloc((size_t)(t->cfg.batch * t->train->K) * sizeof *t->assoc);
  if (!t->graph || !t->excess || !t->excess_sum || !t->batch_excess || !t->perm || !t->assoc)
    return fail(err, "out of memory");
  memset(t->excess, 0, m_bytes);
  if (t->cfg.threads > 0) omp_set_num_threads(t->cfg.threads);
  return 0;
}

static sg_trainer *trainer_alloc(const sg_train_config *c, const sg_dataset *train,
                                 const sg_dataset *test) {
  sg_trainer *t = sg_malloc(sizeof *t);
  if (t) *t = (sg_trainer){.cfg = *c, .train = train, .test = test};
  return t;
}

sg_trainer *sg_trainer_new(const sg_train_config *cfg, const sg_dataset *train,
                           const sg_dataset *test, sg_io_error *err) {
  if (check_data(cfg, train, test, err)) return NULL;
  sg_trainer *t = trainer_alloc(cfg, train, test);
  if (!t) return fail(err, "out of memory"), NULL;
  if (cfg->threads > 0) omp_set_num_threads(cfg->threads); /* before any parallel work */
  t->feature_scale = cfg->feature_scale > 0 ? cfg->feature_scale : sg_feature_scale(train);
  t->cfg.feature_scale = t->feature_scale;
  sg_gnn_config gc = sg_train_gnn_config(cfg, train->N);
  t->model = sg_gnn_new(&gc, cfg->seed);
  if (t->model)
    t->adam = sg_adam_new(sg_params_tensors(t->model->params), sg_params_count(t->model->params),
                          cfg->lr_max);
  t->mu = sg_malloc((size_t)train->M * sizeof *t->mu);
  seed_run_rng(&t->rng, cfg->seed);
  if (!t->model || !t->adam || !t->mu) {
    fail(err, "out of memory (model of %s, d %d, h %d)", sg_gnn_variant_name(cfg->variant), cfg->d,
         cfg->h);
    sg_trainer_free(t);
    return NULL;
  }
  for (int m = 0; m < train->M; m++) t->mu[m] = 0.0;
  if (trainer_setup(t, err)) {
    sg_trainer_free(t);
    return NULL;
  }
  return t;
}

/* The data set must be the one the checkpoint was trained on. */
static int check_resume_data(const sg_checkpoint_state *st, const sg_dataset *train,
                             const char *path, sg_io_error *err) {
  if (train->S != st->data_S || train->M != st->data_M || train->N != st->data_N ||
      train->K != st->data_K || train->seed != st->data_seed)
    return fail(err,
                "%s: the checkpoint was trained on a data set of S=%lld M=%d N=%d K=%d seed %llu, "
                "this one has S=%lld M=%d N=%d K=%d seed %llu",
                path, (long long)st->data_S, st->data_M, st->data_N, st->data_K,
                (unsigned long long)st->data_seed, (long long)train->S, train->M, train->N,
                train->K, (unsigned long long)train->seed);
  return 0;
}

sg_trainer *sg_trainer_resume(const char *checkpoint, const sg_train_config *override,
                              const sg_dataset *train, const sg_dataset *test, sg_io_error *err) {
  if (!train) return fail(err, "no training data"), NULL;
  sg_checkpoint_state st;
  if (sg_checkpoint_read(checkpoint, true, &st, err)) return NULL;
  sg_train_config c = st.cfg;
  if (override) c.epochs = override->epochs, c.threads = override->threads;
  if (override) c.eval_batch = override->eval_batch;
  if (check_resume_data(&st, train, checkpoint, err) || check_data(&c, train, test, err)) {
    sg_checkpoint_state_free(&st);
    return NULL;
  }
  sg_trainer *t = trainer_alloc(&c, train, test);
  if (!t) {
    sg_checkpoint_state_free(&st);
    return fail(err, "out of memory"), NULL;
  }
  t->model = st.model, t->adam = st.adam, t->mu = st.mu;
  t->rng = st.rng, t->epoch = st.epoch, t->step = st.step;
  t->feature_scale = st.feature_scale;
  if (trainer_setup(t, err)) {
    sg_trainer_free(t);
    return NULL;
  }
  return t;
}

void sg_trainer_free(sg_trainer *t) {
  if (!t) return;
  sg_adam_free(t->adam);
  sg_gnn_free(t->model);
  sg_graph_free(t->graph);
  sg_mfree(t->mu), sg_mfree(t->excess), sg_mfree(t->excess_sum), sg_mfree(t->batch_excess);
  sg_mfree(t->perm), sg_mfree(t->assoc);
  sg_mfree(t);
}

int sg_trainer_epoch(const sg_trainer *t) {
  return t->epoch;
}
int64_t sg_trainer_step(const sg_trainer *t) {
  return t->step;
}
const sg_gnn *sg_trainer_model(const sg_trainer *t) {
  return t->model;
}
const sg_train_config *sg_trainer_config(const sg_trainer *t) {
  return &t->cfg;
}
double sg_trainer_feature_scale(const sg_trainer *t) {
  return t->feature_scale;
}
const double *sg_trainer_mu(const sg_trainer *t) {
  return t->mu;
}
double *sg_trainer_mu_mut(sg_trainer *t) {
  return t->mu;
}
int sg_trainer_batches_per_epoch(const sg_trainer *t) {
  return (int)t->batches;
}

/* ---- one epoch ------------------------------------------------------------------ */

static void reset_order(sg_trainer *t) {
  for (int64_t i = 0; i < t->train->S; i++) t->perm[i] = i;
  t->cursor = 0;
}

/* The next mini-batch: the next B positions of a Fisher-Yates shuffle drawn
 * lazily from the run's generator; a new pass starts when fewer than B
 * samples are left. */
static const int64_t *next_batch(sg_trainer *t) {
  int64_t S = t->train->S, B = t->cfg.batch;
  if (t->cursor + B > S) reset_order(t);
  for (int64_t i = t->cursor; i < t->cursor + B; i++) {
    int64_t j = i + (int64_t)sg_rng_below(&t->rng, (uint64_t)(S - i));
    int64_t tmp = t->perm[i];
    t->perm[i] = t->perm[j], t->perm[j] = tmp;
  }
  t->cursor += B;
  return t->perm + t->cursor - B;
}

/* Samples of A [B, K, M] whose row argmax puts more than N UEs on some BS. */
static int64_t count_violations(const sg_tensor *A, int N, int *assoc) {
  int64_t B = A->shape[0], K = A->shape[1], count = 0;
  sg_assoc_argmax(A, assoc);
  for (int64_t b = 0; b < B; b++) {
    int load[SG_MAX_BS] = {0};
    bool over = false;
    for (int64_t k = 0; k < K; k++) over |= ++load[assoc[b * K + k]] > N;
    count += over;
  }
  return count;
}

typedef struct step_result {
  double loss, rate_sum;
  int64_t violations;
  int64_t near_kink; /* samples whose Sinkhorn decisions came within round-off of the kink */
} step_result;

/* One optimiser step on the next mini-batch at learning rate lr. */
static int train_step(sg_trainer *t, double lr, step_result *r, sg_io_error *err) {
  const sg_train_config *c = &t->cfg;
  sg_graph *g = t->graph;
  const int64_t *idx = next_batch(t);
  sg_graph_reset(g);
  sg_params_zero_grad(sg_params_tensors(t->model->params), sg_params_count(t->model->params));
  sg_gnn_batch in;
  if (sg_gnn_batch_make(g, t->train, idx, 0, c->batch, t->feature_scale, c->dtype, true, &in))
    return fail(err, "could not build mini-batch inputs");
  sg_gnn_output o = sg_gnn_forward(g, t->model, in.p, in.q, in.H, SG_GNN_TRAIN, &t->rng, NULL);
  sg_tensor *rate = sg_sum_rate(g, o.assoc, in.c_re, in.c_im, 1.0);
  sg_tensor *loss =
      sg_assoc_loss(g, rate, o.assoc, t->mu, t->model->cfg.capacity, c->delta, t->batch_excess);
  if (!loss) return fail(err, "the forward pass failed at step %lld", (long long)t->step + 1);
  r->loss = sg_get(loss, 0);
  if (!isfinite(r->loss))
    return fail(err, "non-finite loss (%g) at epoch %d, step %lld: lower --lr-max?", r->loss,
                t->epoch + 1, (long long)t->step + 1);
  r->rate_sum = 0;
  for (int64_t b = 0; b < c->batch; b++) r->rate_sum += sg_get(rate, b);
  r->violations = count_violations(o.assoc, t->train->N, t->assoc);
  r->near_kink = o.sinkhorn.near_kink;
  sg_backward(g, loss);
  t->adam->lr = lr;
  sg_adam_step(t->adam);
  t->step++;
  return 0;
}

static void finish_epoch(sg_trainer *t, sg_epoch_stats *out, int64_t samples) {
  t->epoch++;
  out->excess_mean = 0;
  for (int m = 0; m < t->M; m++) {
    t->excess[m] = t->excess_sum[m] / (double)samples;
    out->excess_mean += t->excess[m];
  }
  out->dual_updated = t->epoch % t->cfg.t_mu == 0; /* paper eq. (9) */
  if (out->dual_updated)
    for (int m = 0; m < t->M; m++) t->mu[m] += t->excess[m];
  out->epoch = t->epoch, out->step = t->step, out->samples = samples;
  out->excess = t->excess, out->mu = t->mu;
}

int sg_trainer_run_epoch(sg_trainer *t, sg_epoch_stats *out, sg_step_fn step_fn, void *user,
                         volatile sig_atomic_t *stop, sg_io_error *err) {
  if (t->abandoned)
    return fail(err, "the trainer's last epoch was stopped half-way; resume from a checkpoint");
  const sg_train_config *c = &t->cfg;
  sg_cosine_restarts sched = {c->t0, c->t_mult, c->lr_min, c->lr_max};
  sg_epoch_stats st = {0};
  double loss_sum = 0, rate_sum = 0, start = omp_get_wtime();
  int64_t violations = 0, near_kink = 0;
  for (int m = 0; m < t->M; m++) t->excess_sum[m] = 0;
  reset_order(t);
  for (int64_t b = 0; b < t->batches; b++) {
    if (stop && *stop) return t->abandoned = true, 1;
    st.lr = sg_cosine_restarts_lr(&sched, t->epoch + (double)b / (double)t->batches);
    step_result r = {0};
    if (train_step(t, st.lr, &r, err)) return t->abandoned = true, -1;
    loss_sum += r.loss, rate_sum += r.rate_sum, violations += r.violations;
    near_kink += r.near_kink;
    for (int m = 0; m < t->M; m++) t->excess_sum[m] += t->batch_excess[m] * (double)c->batch;
    if (step_fn) {
      sg_step_info info = {t->epoch + 1,
                           b + 1,
                           t->batches,
                           t->step,
                           r.loss,
                           r.rate_sum / (double)c->batch,
                           (double)r.violations / (double)c->batch,
                           st.lr,
                           omp_get_wtime() - start};
      step_fn(user, &info);
    }
  }
  int64_t samples = t->batches * c->batch;
  st.seconds = omp_get_wtime() - start;
  st.loss = loss_sum / (double)t->batches;
  st.train_rate = rate_sum / (double)samples;
  st.violation_ratio = (double)violations / (double)samples;
  st.sinkhorn_near_kink = (double)near_kink / (double)samples;
  finish_epoch(t, &st, samples);
  if (t->test) {
    if (sg_gnn_evaluate(t->model, t->test, t->feature_scale, c->eval_batch, 0, &st.test, err))
      return -1;
    st.has_test = true;
  }
  if (out) *out = st;
  return 0;
}

int sg_trainer_save(const sg_trainer *t, const char *path, sg_io_error *err) {
  if (t->abandoned)
    return fail(err, "%s: not written: the trainer stopped in the middle of an epoch", path);
  sg_checkpoint_state st = {.cfg = t->cfg,
                            .gnn = t->model->cfg,
                            .data_S = t->train->S,
                            .data_M = t->train->M,
                            .data_N = t->train->N,
                            .data_K = t->train->K,
                            .data_seed = t->train->seed,
                            .feature_scale = t->feature_scale,
                            .epoch = t->epoch,
                            .step = t->step,
                            .mu = t->mu,
                            .rng = t->rng,
                            .model = t->model,
                            .adam = t->adam};
  return sg_checkpoint_write(path, &st, err);
}

/* ---- the whole loop ------------------------------------------------------------ */

static void log_header(FILE *f, int M) {
  fprintf(f, "epoch,step,loss,train_rate,test_rate,violation_ratio");
  for (int m = 0; m < M; m++) fprintf(f, ",mu_%d", m);
  fprintf(f, ",lr,seconds,test_violation_ratio,test_lb_rate,excess,sinkhorn_near_kink\n");
}

static void log_row(FILE *f, const sg_epoch_stats *st, int M) {
  fprintf(f, "%d,%lld,%.9g,%.9g,", st->epoch, (long long)st->step, st->loss, st->train_rate);
  if (st->has_test) fprintf(f, "%.9g", st->test.mean_rate);
  fprintf(f, ",%.9g", st->violation_ratio);
  for (int m = 0; m < M; m++) fprintf(f, ",%.9g", st->mu[m]);
  fprintf(f, ",%.9g,%.4f,", st->lr, st->seconds);
  /* without a test set the two test columns stay empty */
  if (st->has_test)
    fprintf(f, "%.9g,%.9g", st->test.violation_ratio, st->test.mean_lb_rate);
  else
    fputc(',', f);
  fprintf(f, ",%.9g,%.9g\n", st->excess_mean, st->sinkhorn_near_kink);
  fflush(f);
}

/* A resumed run appends to an existing non-empty log; otherwise it starts one. */
static FILE *open_log(const char *path, bool resuming, int M, sg_io_error *err) {
  FILE *f = NULL;
  if (resuming && (f = fopen(path, "a")) && ftell(f) > 0) return f;
  if (f) fclose(f);
  f = fopen(path, "w");
  if (!f) return fail(err, "%s: cannot open the log: %s", path, strerror(errno)), NULL;
  log_header(f, M);
  return f;
}

static bool checkpoint_due(const sg_train_io *io, int epoch, int last_epoch) {
  int every = io->checkpoint_every > 0 ? io->checkpoint_every : 1;
  return epoch % every == 0 || epoch == last_epoch;
}

static int run_epochs(sg_trainer *t, const sg_train_io *io, FILE *log, sg_train_result *res,
                      sg_io_error *err) {
  int target = t->cfg.epochs;
  while (t->epoch < target) {
    sg_epoch_stats st;
    int rc = sg_trainer_run_epoch(t, &st, io->step_fn, io->user, io->stop, err);
    if (rc < 0) return -1;
    if (rc > 0) return res->interrupted = true, 0;
    res->epochs_this_call++;
    res->seconds += st.seconds;
    if (io->out && checkpoint_due(io, t->epoch, target) && sg_trainer_save(t, io->out, err))
      return -1;
    if (log) log_row(log, &st, t->M);
    if (io->epoch_fn) io->epoch_fn(io->user, &st);
    res->last = st;
    memcpy(res->last_mu, st.mu, (size_t)t->M * sizeof(double));
    res->last.mu = NULL, res->last.excess = NULL; /* point into the trainer */
  }
  return 0;
}

int sg_train_run(const sg_train_config *cfg, const sg_dataset *train, const sg_dataset *test,
                 const sg_train_io *io, sg_train_result *res, sg_io_error *err) {
  sg_train_io none = {0};
  if (!io) io = &none;
  sg_train_result local;
  if (!res) res = &local;
  *res = (sg_train_result){0};
  sg_trainer *t = io->resume ? sg_trainer_resume(io->resume, cfg, train, test, err)
                             : sg_trainer_new(cfg, train, test, err);
  if (!t) return -1;
  res->M = t->M;
  res->params = sg_gnn_param_count(t->model);
  FILE *log = io->log ? open_log(io->log, io->resume != NULL, t->M, err) : NULL;
  int rc = io->log && !log ? -1 : 0;
  if (!rc) rc = run_epochs(t, io, log, res, err);
  /* Nothing to train (already at the target): still write the model out. */
  if (!rc && res->epochs_this_call == 0 && !res->interrupted && io->out)
    rc = sg_trainer_save(t, io->out, err);
  res->epochs_done = t->epoch;
  res->steps = t->step;
  int64_t steps = (int64_t)res->epochs_this_call * t->batches; /* of the timed epochs */
  res->ms_per_step = steps > 0 ? 1e3 * res->seconds / (double)steps : 0;
  if (log) fclose(log);
  sg_trainer_free(t);
  return rc;
}
