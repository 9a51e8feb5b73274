/* The whole training loop: epochs, checkpoints every few epochs and a CSV
 * log with one row per epoch. */
#include "assoc_train.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "models_internal.h"
#include "train_internal.h"

/* ---- the whole loop ------------------------------------------------------------ */

static void log_header(FILE *f, int M) {
  fprintf(f, "epoch,step,loss,train_rate,test_rate,violation_ratio");
  for (int m = 0; m < M; m++) fprintf(f, ",mu_%d", m);
  fprintf(f, ",lr,seconds,test_violation_ratio,test_lb_rate,excess,sinkhorn_near_kink\n");
}

static void log_row(FILE *f, const assoc_epoch_stats *st, int M) {
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
  if (!f) return assoc_fail(err, "%s: cannot open the log: %s", path, strerror(errno)), NULL;
  log_header(f, M);
  return f;
}

static bool checkpoint_due(const assoc_train_io *io, int epoch, int last_epoch) {
  int every = io->checkpoint_every > 0 ? io->checkpoint_every : 1;
  return epoch % every == 0 || epoch == last_epoch;
}

static int run_epochs(assoc_trainer *t, const assoc_train_io *io, FILE *log,
                      assoc_train_result *res, sg_io_error *err) {
  int target = t->cfg.epochs;
  while (t->epoch < target) {
    assoc_epoch_stats st;
    int rc = assoc_trainer_run_epoch(t, &st, io->step_fn, io->user, io->stop, err);
    if (rc < 0) return -1;
    if (rc > 0) return res->interrupted = true, 0;
    res->epochs_this_call++;
    res->seconds += st.seconds;
    if (io->out && checkpoint_due(io, t->epoch, target) && assoc_trainer_save(t, io->out, err))
      return -1;
    if (log) log_row(log, &st, t->M);
    if (io->epoch_fn) io->epoch_fn(io->user, &st);
    res->last = st;
    memcpy(res->last_mu, st.mu, (size_t)t->M * sizeof(double));
    res->last.mu = NULL, res->last.excess = NULL; /* point into the trainer */
  }
  return 0;
}

int assoc_train_run(const assoc_train_config *cfg, const assoc_dataset *train,
                    const assoc_dataset *test, const assoc_train_io *io, assoc_train_result *res,
                    sg_io_error *err) {
  assoc_train_io none = {0};
  if (!io) io = &none;
  assoc_train_result local;
  if (!res) res = &local;
  *res = (assoc_train_result){0};
  if (io->model && (io->out || io->resume))
    return assoc_fail(err, "%s: checkpoints (out, resume) hold the built-in GNNs only",
                      io->model->name ? io->model->name : "a model of one's own");
  assoc_trainer *t = io->model    ? assoc_trainer_new_model(cfg, io->model, train, test, err)
                     : io->resume ? assoc_trainer_resume(io->resume, cfg, train, test, err)
                                  : assoc_trainer_new(cfg, train, test, err);
  if (!t) return -1;
  res->M = t->M;
  res->params = sg_params_numel(t->net.params);
  FILE *log = io->log ? open_log(io->log, io->resume != NULL, t->M, err) : NULL;
  int rc = io->log && !log ? -1 : 0;
  if (!rc) rc = run_epochs(t, io, log, res, err);
  /* Nothing to train (already at the target): still write the model out. */
  if (!rc && res->epochs_this_call == 0 && !res->interrupted && io->out)
    rc = assoc_trainer_save(t, io->out, err);
  res->epochs_done = t->epoch;
  res->steps = t->step;
  int64_t steps = (int64_t)res->epochs_this_call * t->batches; /* of the timed epochs */
  res->ms_per_step = steps > 0 ? 1e3 * res->seconds / (double)steps : 0;
  if (log) fclose(log);
  assoc_trainer_free(t);
  return rc;
}
