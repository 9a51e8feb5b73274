/* The trainer of the association GNNs: the loss of models.md with the dual
 * update of mu, Adam, the warm-restart cosine schedule stepped per
 * mini-batch, checkpoints, and the per-epoch test metrics.
 *
 * Determinism: a run's only random source is t->rng (data order and Gumbel
 * noise, drawn sequentially on the calling thread); the ops are bitwise
 * reproducible for any thread count; so the state after an epoch is a
 * function of the checkpointed state alone, and a resumed run reproduces an
 * uninterrupted one bit for bit. Over several MPI ranks (trainer_dist.c)
 * each rank trains on its block of every mini-batch and the gradients are
 * summed in a fixed order before the step. */
#include "assoc_train.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "models_internal.h"
#include "train_internal.h"

/* The run's generator is seeded apart from the model's initialisation. */
static void seed_run_rng(sg_rng *r, uint64_t seed) {
  sg_rng_seed(r, assoc_stream_seed(seed, UINT64_C(0x747261696e), 0));
}

static int check_data(const assoc_train_config *c, const assoc_dataset *train,
                      const assoc_dataset *test, sg_io_error *err) {
  sg_io_error why;
  if (assoc_train_config_check(c, &why)) return assoc_fail(err, "bad configuration: %s", why.msg);
  if (!train || train->S < 1) return assoc_fail(err, "no training data");
  if (train->M > ASSOC_MAX_BS) return assoc_fail(err, "too many BSs (%d)", train->M);
  if (assoc_dataset_total(train) < c->batch)
    return assoc_fail(err, "the training set has %lld samples, fewer than one mini-batch of %lld",
                      (long long)assoc_dataset_total(train), (long long)c->batch);
  if (test && test->N != train->N)
    return assoc_fail(err, "the test set has N = %d antennas, the training set N = %d", test->N,
                      train->N);
  return 0;
}

/* The supervised loss's targets: ES on every training sample. */
static int solve_labels(assoc_trainer *t, sg_io_error *err) {
  const assoc_dataset *ds = t->train;
  t->labels = sg_malloc((size_t)(ds->S * ds->K) * sizeof *t->labels);
  double *rate = sg_malloc((size_t)ds->S * sizeof *rate), ms;
  int rc = !t->labels || !rate ? assoc_fail(err, "out of memory for the ES targets") : 0;
  assoc_baseline_opts o = assoc_baseline_defaults();
  if (!rc) rc = assoc_run_method(ds, ASSOC_ES, &o, t->labels, rate, &ms, NULL, NULL, err);
  sg_mfree(rate);
  return rc;
}

/* Graph, scratch arrays, the sampler, the feature scale (unless set), and
 * the sizes derived from the data (model, adam, mu and rng are set by the
 * caller). */
static int trainer_setup(assoc_trainer *t, sg_io_error *err) {
  t->M = t->train->M;
  if (t->model) t->net = assoc_gnn_model(t->model), t->capacity = t->model->cfg.capacity;
  t->graph = sg_graph_new();
  size_t m_bytes = (size_t)t->M * sizeof(double);
  t->excess = sg_malloc(m_bytes), t->excess_sum = sg_malloc(m_bytes);
  t->batch_excess = sg_malloc(m_bytes);
  t->assoc = sg_malloc((size_t)(t->cfg.batch * t->train->K) * sizeof *t->assoc);
  if (!t->graph || !t->excess || !t->excess_sum || !t->batch_excess || !t->assoc)
    return assoc_fail(err, "out of memory");
  memset(t->excess, 0, m_bytes);
  if (t->cfg.threads > 0) omp_set_num_threads(t->cfg.threads);
  if (assoc_trainer_dist_setup(t, err) || assoc_sampler_setup(t, err)) return -1;
  if (!(t->feature_scale > 0) && assoc_trainer_compute_scale(t, &t->feature_scale, err)) return -1;
  t->cfg.feature_scale = t->feature_scale;
  return t->cfg.loss == ASSOC_LOSS_ES ? solve_labels(t, err) : 0;
}

static assoc_trainer *trainer_alloc(const assoc_train_config *c, const assoc_dataset *train,
                                    const assoc_dataset *test) {
  assoc_trainer *t = sg_malloc(sizeof *t);
  if (t) *t = (assoc_trainer){.cfg = *c, .train = train, .test = test};
  return t;
}

assoc_trainer *assoc_trainer_new(const assoc_train_config *cfg, const assoc_dataset *train,
                                 const assoc_dataset *test, sg_io_error *err) {
  if (check_data(cfg, train, test, err)) return NULL;
  assoc_trainer *t = trainer_alloc(cfg, train, test);
  if (!t) return assoc_fail(err, "out of memory"), NULL;
  if (cfg->threads > 0) omp_set_num_threads(cfg->threads); /* before any parallel work */
  t->feature_scale = cfg->feature_scale;                   /* 0: computed by trainer_setup */
  assoc_gnn_config gc = assoc_train_gnn_config(cfg, train->N);
  t->model = assoc_gnn_new(&gc, cfg->seed);
  if (t->model)
    t->adam = sg_adam_new(sg_params_tensors(t->model->params), sg_params_count(t->model->params),
                          cfg->lr_max);
  t->mu = sg_malloc((size_t)train->M * sizeof *t->mu);
  seed_run_rng(&t->rng, cfg->seed);
  if (!t->model || !t->adam || !t->mu) {
    assoc_fail(err, "out of memory (model of %s, d %d, h %d)", assoc_gnn_variant_name(cfg->variant),
               cfg->d, cfg->h);
    assoc_trainer_free(t);
    return NULL;
  }
  for (int m = 0; m < train->M; m++) t->mu[m] = 0.0;
  if (trainer_setup(t, err)) {
    assoc_trainer_free(t);
    return NULL;
  }
  return t;
}

/* A model needs parameters, a forward and a known feature kind. */
static int check_model(const assoc_model *m, sg_io_error *err) {
  if (!m || !m->params || !m->forward)
    return assoc_fail(err, "a model needs parameters and a forward callback");
  if (sg_params_count(m->params) < 1)
    return assoc_fail(err, "%s has no parameters to train", m->name ? m->name : "the model");
  if (m->features < 0 || m->features >= ASSOC_FEATURE_KIND_COUNT)
    return assoc_fail(err, "%s: unknown feature kind %d", m->name ? m->name : "the model",
                      (int)m->features);
  return 0;
}

assoc_trainer *assoc_trainer_new_model(const assoc_train_config *cfg, const assoc_model *model,
                                       const assoc_dataset *train, const assoc_dataset *test,
                                       sg_io_error *err) {
  if (check_model(model, err)) return NULL;
  assoc_train_config c = *cfg;
  c.dtype = model->params->dtype, c.features = model->features; /* the model's, not cfg's */
  if (check_data(&c, train, test, err)) return NULL;
  assoc_trainer *t = trainer_alloc(&c, train, test);
  if (!t) return assoc_fail(err, "out of memory"), NULL;
  if (c.threads > 0) omp_set_num_threads(c.threads);
  t->net = *model, t->capacity = train->N;
  t->feature_scale = c.feature_scale; /* 0: computed by trainer_setup */
  t->adam = sg_adam_new(sg_params_tensors(model->params), sg_params_count(model->params), c.lr_max);
  t->mu = assoc_zalloc((size_t)train->M, sizeof *t->mu);
  seed_run_rng(&t->rng, c.seed);
  if (!t->adam || !t->mu || trainer_setup(t, err)) {
    if (!t->adam || !t->mu) assoc_fail(err, "out of memory");
    assoc_trainer_free(t);
    return NULL;
  }
  return t;
}

/* The data set must be the one the checkpoint was trained on. */
static int check_resume_data(const assoc_checkpoint_state *st, const assoc_dataset *train,
                             const char *path, sg_io_error *err) {
  if (assoc_dataset_total(train) != st->data_S || train->M != st->data_M ||
      train->N != st->data_N || train->K != st->data_K || train->seed != st->data_seed)
    return assoc_fail(
        err,
        "%s: the checkpoint was trained on a data set of S=%lld M=%d N=%d K=%d seed %llu, "
        "this one has S=%lld M=%d N=%d K=%d seed %llu",
        path, (long long)st->data_S, st->data_M, st->data_N, st->data_K,
        (unsigned long long)st->data_seed, (long long)assoc_dataset_total(train), train->M,
        train->N, train->K, (unsigned long long)train->seed);
  return 0;
}

assoc_trainer *assoc_trainer_resume(const char *checkpoint, const assoc_train_config *override,
                                    const assoc_dataset *train, const assoc_dataset *test,
                                    sg_io_error *err) {
  if (!train) return assoc_fail(err, "no training data"), NULL;
  assoc_checkpoint_state st;
  if (assoc_checkpoint_read(checkpoint, true, &st, err)) return NULL;
  assoc_train_config c = st.cfg;
  if (override) c.epochs = override->epochs, c.threads = override->threads;
  if (override) c.eval_batch = override->eval_batch;
  if (check_resume_data(&st, train, checkpoint, err) || check_data(&c, train, test, err)) {
    assoc_checkpoint_state_free(&st);
    return NULL;
  }
  assoc_trainer *t = trainer_alloc(&c, train, test);
  if (!t) {
    assoc_checkpoint_state_free(&st);
    return assoc_fail(err, "%s: out of memory resuming the run", checkpoint), NULL;
  }
  t->model = st.model, t->adam = st.adam, t->mu = st.mu;
  t->rng = st.rng, t->epoch = st.epoch, t->step = st.step;
  t->feature_scale = st.feature_scale;
  sg_io_error why;
  if (trainer_setup(t, &why)) {
    assoc_trainer_free(t);
    return assoc_fail(err, "%s: resuming the run: %s", checkpoint, why.msg), NULL;
  }
  return t;
}

void assoc_trainer_free(assoc_trainer *t) {
  if (!t) return;
  sg_adam_free(t->adam);
  assoc_gnn_free(t->model);
  sg_graph_free(t->graph);
  assoc_trainer_dist_free(t);
  sg_mfree(t->mu), sg_mfree(t->excess), sg_mfree(t->excess_sum), sg_mfree(t->batch_excess);
  sg_mfree(t->perm), sg_mfree(t->block), sg_mfree(t->assoc), sg_mfree(t->labels);
  sg_mfree(t);
}

int assoc_trainer_epoch(const assoc_trainer *t) {
  return t->epoch;
}
int64_t assoc_trainer_step(const assoc_trainer *t) {
  return t->step;
}
const assoc_gnn *assoc_trainer_model(const assoc_trainer *t) {
  return t->model;
}
const assoc_model *assoc_trainer_net(const assoc_trainer *t) {
  return &t->net;
}
double assoc_trainer_feature_scale(const assoc_trainer *t) {
  return t->feature_scale;
}
const double *assoc_trainer_mu(const assoc_trainer *t) {
  return t->mu;
}

/* ---- one epoch ------------------------------------------------------------------ */

/* Samples of A [B, K, M] whose row argmax puts more than N UEs on some BS. */
static int64_t count_violations(const sg_tensor *A, int N, int *assoc) {
  int64_t B = A->shape[0], K = A->shape[1], count = 0;
  assoc_argmax(A, assoc);
  for (int64_t b = 0; b < B; b++) {
    int load[ASSOC_MAX_BS] = {0};
    bool over = false;
    for (int64_t k = 0; k < K; k++) over |= ++load[assoc[b * K + k]] > N;
    count += over;
  }
  return count;
}

/* Of this rank's block of the mini-batch (the whole batch on one process). */
typedef struct step_result {
  int64_t shard; /* samples */
  double loss, rate_sum;
  int64_t violations;
  int64_t near_kink; /* samples whose Sinkhorn decisions came within round-off of the kink */
} step_result;

/* -mean over the batch's UEs of log a~_{k, ES(k)}; a UE that ES drops
 * (K > M N) adds nothing. The 1e-12 keeps log finite where the Sinkhorn or
 * the softmax underflows. */
static sg_tensor *es_cross_entropy(assoc_trainer *t, const int64_t *idx, sg_tensor *A) {
  sg_graph *g = t->graph;
  int64_t B = A->shape[0], K = A->shape[1], M = A->shape[2];
  sg_tensor *target = sg_zeros(g, A->dtype, 3, A->shape);
  if (!target) return NULL;
  float *t32 = sg_f32(target);
  double *t64 = sg_f64(target);
  for (int64_t b = 0; b < B; b++)
    for (int64_t k = 0; k < K; k++) {
      int m = t->labels[idx[b] * K + k];
      if (m < 0) continue;
      if (t32)
        t32[(b * K + k) * M + m] = 1.0f;
      else
        t64[(b * K + k) * M + m] = 1.0;
    }
  sg_tensor *log_a = sg_log(g, sg_add_scalar(g, A, 1e-12));
  return sg_scale(g, sg_sum_all(g, sg_mul(g, target, log_a)), -1.0 / (double)(B * K));
}

/* Anomaly mode (sg_graph_set_anomaly) found a NaN or Inf in this step and
 * reported the op through the error handler: the step stops before the
 * optimiser, so the parameters stay finite. */
static int anomaly_stop(const assoc_trainer *t, sg_io_error *err) {
  const sg_anomaly *a = sg_graph_anomaly(t->graph);
  return assoc_fail(err,
                    "anomaly mode: a non-finite value in the %s of %s (%s:%d) at epoch %d, step "
                    "%lld; training stopped before the update",
                    a->phase == SG_OBSERVE_FORWARD ? "forward" : "backward", a->op,
                    a->file ? a->file : "?", a->line, t->epoch + 1, (long long)t->step + 1);
}

/* One optimiser step on mini-batch b of the epoch at learning rate lr: on
 * this rank's block of it (r) when the run has several ranks, the
 * gradients and the sums (the whole batch's) summed across them before the
 * step. 1 when some rank asked to stop (no step taken). */
static int train_step(assoc_trainer *t, int64_t b, double lr, bool stop, step_result *r,
                      assoc_step_sums *sums, sg_io_error *err) {
  const assoc_train_config *c = &t->cfg;
  sg_graph *g = t->graph;
  const int64_t *idx = assoc_sampler_next(t, b);
  r->shard = t->block_hi - t->block_lo;
  sg_graph_reset(g);
  sg_params_zero_grad(sg_params_tensors(t->net.params), sg_params_count(t->net.params));
  assoc_gnn_batch in;
  if (assoc_gnn_batch_make(g, t->train, idx, 0, r->shard, t->feature_scale, t->net.features,
                           c->dtype, true, &in))
    return assoc_fail(err, "could not build mini-batch inputs");
  sg_sinkhorn_info info;
  /* over several ranks: this rank's rows of the batch; the random draws are the batch's */
  assoc_model_call call = {.mode = ASSOC_GNN_TRAIN,
                           .rng = &t->rng,
                           .capacity = t->capacity,
                           .sinkhorn = &info,
                           .rows_lo = t->block_lo,
                           .batch_rows = c->batch};
  sg_tensor *A = assoc_model_forward(g, &t->net, &in, &call);
  sg_tensor *rate = assoc_sum_rate(g, A, in.c_re, in.c_im, 1.0);
  sg_tensor *loss = assoc_loss(g, rate, A, t->mu, t->capacity, c->delta, t->batch_excess);
  if (loss && c->loss == ASSOC_LOSS_ES) loss = es_cross_entropy(t, idx, A);
  if (sg_graph_anomaly(g)) return anomaly_stop(t, err);
  if (!loss || sg_graph_failed(g)) /* the cause went to the error handler */
    return assoc_fail(err, "the forward pass failed (out of memory?) at step %lld",
                      (long long)t->step + 1);
  r->loss = sg_get(loss, 0);
  r->rate_sum = 0;
  for (int64_t b = 0; b < r->shard; b++) r->rate_sum += sg_get(rate, b);
  r->violations = count_violations(A, t->train->N, t->assoc);
  r->near_kink = info.near_kink;
  /* On any failure the parameters and Adam state stay as they were. */
  int backward_rc = sg_backward(g, loss);
  if (sg_graph_anomaly(g)) return anomaly_stop(t, err);
  if (sg_graph_failed(g))
    return assoc_fail(err, "out of memory in the backward pass at step %lld",
                      (long long)t->step + 1);
  if (backward_rc)
    return assoc_fail(err, "the backward pass failed at step %lld", (long long)t->step + 1);
  *sums = (assoc_step_sums){r->loss, r->rate_sum, r->violations, stop};
  if (assoc_trainer_reduce_step(t, r->shard, sums, err)) return -1;
  if (!isfinite(sums->loss))
    return assoc_fail(err, "non-finite loss (%g) at epoch %d, step %lld: lower --lr-max?",
                      sums->loss, t->epoch + 1, (long long)t->step + 1);
  if (sums->stop) return 1;
  t->adam->lr = lr;
  sg_adam_step(t->adam);
  t->step++;
  return 0;
}

static void finish_epoch(assoc_trainer *t, assoc_epoch_stats *out, int64_t samples) {
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

/* The epoch's statistics and excess sums of every rank, summed (in
 * float64, the fixed order of assoc_dist_sum); nothing on one process. */
static int sum_epoch_over_ranks(assoc_trainer *t, double *loss_sum, double *rate_sum,
                                int64_t *violations, int64_t *near_kink, sg_io_error *err) {
  if (t->ranks == 1) return 0;
  double sums[4 + ASSOC_MAX_BS] = {*loss_sum, *rate_sum, (double)*violations, (double)*near_kink};
  memcpy(sums + 4, t->excess_sum, (size_t)t->M * sizeof *sums);
  if (assoc_trainer_reduce_epoch(t, sums, 4 + t->M, err)) return -1;
  *loss_sum = sums[0], *rate_sum = sums[1];
  *violations = (int64_t)sums[2], *near_kink = (int64_t)sums[3];
  memcpy(t->excess_sum, sums + 4, (size_t)t->M * sizeof *sums);
  return 0;
}

int assoc_trainer_run_epoch(assoc_trainer *t, assoc_epoch_stats *out, assoc_step_fn step_fn,
                            void *user, volatile sig_atomic_t *stop, sg_io_error *err) {
  if (t->abandoned)
    return assoc_fail(err,
                      "the trainer's last epoch was stopped half-way; resume from a checkpoint");
  const assoc_train_config *c = &t->cfg;
  sg_cosine_restarts sched = {c->t0, c->t_mult, c->lr_min, c->lr_max};
  assoc_epoch_stats st = {0};
  double loss_sum = 0, rate_sum = 0, start = omp_get_wtime();
  int64_t violations = 0, near_kink = 0;
  for (int m = 0; m < t->M; m++) t->excess_sum[m] = 0;
  t->reduce_seconds = 0;
  assoc_sampler_start_epoch(t);
  for (int64_t b = 0; b < t->batches; b++) {
    /* several ranks stop together: the request travels with the step's sums */
    bool stop_now = stop && *stop;
    if (stop_now && t->ranks == 1) return t->abandoned = true, 1;
    st.lr = sg_cosine_restarts_lr(&sched, t->epoch + (double)b / (double)t->batches);
    step_result r = {0};
    assoc_step_sums sums;
    int rc = train_step(t, b, st.lr, stop_now, &r, &sums, err);
    if (rc) return t->abandoned = true, rc > 0 ? 1 : -1;
    /* this rank's share; summed across the ranks at the end of the epoch */
    loss_sum += r.loss * ((double)r.shard / (double)c->batch);
    rate_sum += r.rate_sum, violations += r.violations, near_kink += r.near_kink;
    for (int m = 0; m < t->M; m++) t->excess_sum[m] += t->batch_excess[m] * (double)r.shard;
    if (step_fn) {
      assoc_step_info info = {t->epoch + 1,
                              b + 1,
                              t->batches,
                              t->step,
                              sums.loss,
                              sums.rate_sum / (double)c->batch,
                              (double)sums.violations / (double)c->batch,
                              st.lr,
                              omp_get_wtime() - start};
      step_fn(user, &info);
    }
  }
  if (sum_epoch_over_ranks(t, &loss_sum, &rate_sum, &violations, &near_kink, err))
    return t->abandoned = true, -1;
  int64_t samples = t->batches * c->batch;
  st.seconds = omp_get_wtime() - start;
  st.reduce_seconds = t->reduce_seconds;
  st.loss = loss_sum / (double)t->batches;
  st.train_rate = rate_sum / (double)samples;
  st.violation_ratio = (double)violations / (double)samples;
  st.sinkhorn_near_kink = (double)near_kink / (double)samples;
  st.arena_bytes = sg_graph_arena_bytes(t->graph);
  finish_epoch(t, &st, samples);
  if (t->test && t->rank == 0) { /* rank 0 alone reports */
    if (assoc_model_test_metrics(&t->net, t->test, t->feature_scale, c->eval_batch, 0, &st.test,
                                 err))
      return -1;
    st.has_test = true;
  }
  if (out) *out = st;
  return 0;
}

int assoc_trainer_save(const assoc_trainer *t, const char *path, sg_io_error *err) {
  if (!t->model)
    return assoc_fail(err,
                      "%s: not written: checkpoints hold the built-in GNNs; save the parameters "
                      "of %s with sg_npz",
                      path, t->net.name ? t->net.name : "a model of one's own");
  if (t->abandoned)
    return assoc_fail(err, "%s: not written: the trainer stopped in the middle of an epoch", path);
  assoc_checkpoint_state st = {.cfg = t->cfg,
                               .gnn = t->model->cfg,
                               .data_S = t->total,
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
  return assoc_checkpoint_write(path, &st, err);
}

/* ---- test metrics ------------------------------------------------------------------ */

int assoc_model_test_metrics(const assoc_model *m, const assoc_dataset *ds, double feature_scale,
                             int64_t eval_batch, int64_t limit, assoc_metrics *out,
                             sg_io_error *err) {
  if (!m || !ds || !out || eval_batch < 1 || !(feature_scale > 0))
    return assoc_fail(err, "test metrics: bad arguments (need a model, a data set, "
                           "eval_batch >= 1, feature scale > 0)");
  int64_t S = limit > 0 && limit < ds->S ? limit : ds->S;
  int *assoc = sg_malloc((size_t)(S * ds->K) * sizeof *assoc);
  double *score = sg_malloc((size_t)(S * ds->K * ds->M) * sizeof *score);
  /* One forward per mini-batch (chunk = batch), as the test metrics of
   * every run so far were computed. */
  assoc_gnn_infer_opts o = {
      .feature_scale = feature_scale, .batch = eval_batch, .chunk = eval_batch};
  double seconds = 0;
  int rc = assoc && score ? 0 : assoc_fail(err, "out of memory");
  if (!rc) rc = assoc_model_infer(m, ds, S, &o, score, NULL, &seconds, err);
  if (!rc) assoc_argmax_rows(score, S * ds->K, ds->M, assoc);
  assoc_dataset view = *ds;
  view.S = S; /* samples are contiguous: a prefix view */
  if (!rc &&
      assoc_metrics_compute(&view, assoc, score, NULL, 1e3 * seconds / (double)S, out, NULL, NULL))
    rc = assoc_fail(err, "out of memory");
  sg_mfree(assoc);
  sg_mfree(score);
  return rc;
}

int assoc_gnn_evaluate(const assoc_gnn *m, const assoc_dataset *ds, double feature_scale,
                       int64_t eval_batch, int64_t limit, assoc_metrics *out, sg_io_error *err) {
  if (!m || !ds)
    return assoc_fail(err, "assoc_gnn_evaluate: bad arguments (need a model, a data set, "
                           "eval_batch >= 1, feature scale > 0)");
  if (assoc_gnn_check_data(m, ds, err)) return -1;
  assoc_model net = assoc_gnn_model(m);
  return assoc_model_test_metrics(&net, ds, feature_scale, eval_batch, limit, out, err);
}
