/* The whole training loop: epochs, checkpoints every few epochs and a CSV
 * log with one row per epoch. */
#include "assoc_train.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "assoc_dist.h"
#include "models_internal.h"
#include "train_internal.h"

/* ---- the whole loop ------------------------------------------------------------ */

static bool checkpoint_due(const assoc_train_io *io, int epoch, int last_epoch) {
  int every = io->checkpoint_every > 0 ? io->checkpoint_every : 1;
  return epoch % every == 0 || epoch == last_epoch;
}

/* Each epoch's log row goes out before its checkpoint: a kill between the
 * two leaves a row that the resumed run drops (assoc_log_open) and writes
 * again, never a checkpointed epoch without its row. */
static int run_epochs(assoc_trainer *t, const assoc_train_io *io, assoc_train_log *log,
                      assoc_train_result *res, sg_io_error *err) {
  int target = t->cfg.epochs;
  while (t->epoch < target) {
    assoc_epoch_stats st;
    int rc = assoc_trainer_run_epoch(t, &st, io->step_fn, io->user, io->stop, err);
    if (rc < 0) return -1;
    if (rc > 0) return res->interrupted = true, 0;
    res->epochs_this_call++;
    res->seconds += st.seconds;
    res->reduce_seconds += st.reduce_seconds;
    if (log && assoc_log_row(log, &st, err)) return -1;
    if (io->out && checkpoint_due(io, t->epoch, target) && assoc_trainer_save(t, io->out, err)) {
      if (log) assoc_log_take_back(log); /* the log stays where the checkpoint is */
      return -1;
    }
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
  /* Of several MPI ranks (one model on each, the same bits), rank 0 alone
   * writes the checkpoint and the log. */
  assoc_train_io writer = *io;
  if (assoc_dist_rank() != 0) writer.out = NULL, writer.log = NULL;
  io = &writer;
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
  res->ranks = t->ranks;
  res->params = sg_params_numel(t->net.params);
  assoc_train_log log_file, *log = io->log ? &log_file : NULL;
  int rc = log ? assoc_log_open(log, io->log, io->resume ? t->epoch : -1, t->M, err) : 0;
  if (!rc) rc = run_epochs(t, io, log, res, err);
  /* Nothing to train (already at the target): still write the model out. */
  if (!rc && res->epochs_this_call == 0 && !res->interrupted && io->out)
    rc = assoc_trainer_save(t, io->out, err);
  res->epochs_done = t->epoch;
  res->steps = t->step;
  int64_t steps = (int64_t)res->epochs_this_call * t->batches; /* of the timed epochs */
  res->ms_per_step = steps > 0 ? 1e3 * res->seconds / (double)steps : 0;
  if (log && log->fd >= 0) {
    sg_io_error close_err;
    if (assoc_log_close(log, &close_err) && !rc) rc = -1, *err = close_err;
  }
  assoc_trainer_free(t);
  return rc;
}
