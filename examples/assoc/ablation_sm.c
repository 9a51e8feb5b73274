/* The SM column of assoc ablation: JointGNN (SM-GNN, docs/models.md
 * "JointGNN") in the slot of ablation.h (abl_sm_hooks). It trains as
 * assoc train --model jointgnn does, with the run's widths, schedule, seed
 * and threads (pure sum-rate loss, projection normalisation), and is
 * evaluated by the protocol of assoc_jointgnn_evaluate: the one-hot
 * association's violations and MRT rates as the other models', its
 * load-balanced association (the largest a~ kept) for the beams table,
 * and that association's rate with the model's own beams. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "ablation.h"
#include "train_bfgnn.h"

enum { SM_EVAL_BATCH = 256 };

static int sm_train(const assoc_train_config *c, const assoc_dataset *train,
                    const assoc_dataset *val, const char *ckpt, double *train_seconds) {
  (void)val;
  assoc_train_beam_opts b = {.norm = ASSOC_BEAM_PROJECT,
                             .head = ASSOC_BFGNN_HEAD_DIRECT,
                             .penalty_after = -1,
                             .penalty_mu = 1.0,
                             .checkpoint_every = c->epochs};
  double t0 = omp_get_wtime();
  int rc = assoc_train_jointgnn(c, train, &b, ckpt, true);
  *train_seconds = omp_get_wtime() - t0;
  return rc == ASSOC_EXIT_OK ? 0 : -1;
}

/* The protocol's outputs on ds: A~ (S x K x M) into A, lb, the own-beam
 * rate, the time per sample. */
static int sm_run(const char *ckpt, const assoc_dataset *ds, double *A, int *lb,
                  assoc_jointgnn_eval *ev, int64_t *params) {
  sg_io_error err;
  double scale = 0;
  assoc_jointgnn *m = assoc_jointgnn_checkpoint_read(ckpt, &scale, &err);
  if (!m) return fprintf(stderr, "assoc ablation: SM-GNN: %s\n", err.msg), -1;
  *ev = (assoc_jointgnn_eval){.lb = lb, .A = A};
  int rc = assoc_jointgnn_evaluate(m, scale, ds, SM_EVAL_BATCH, ev, &err);
  if (rc) fprintf(stderr, "assoc ablation: SM-GNN: %s\n", err.msg);
  *params = assoc_jointgnn_param_count(m);
  assoc_jointgnn_free(m);
  return rc;
}

static int sm_evaluate(const char *ckpt, const assoc_dataset *ds, const double *es_rate,
                       assoc_eval_metrics *out, int *lb_assoc, double *own_rate) {
  double *A = malloc(sizeof(double) * (size_t)(ds->S * ds->K * ds->M));
  if (!A) return fprintf(stderr, "assoc ablation: SM-GNN: out of memory\n"), -1;
  assoc_jointgnn_eval ev;
  int64_t params = 0;
  int rc = sm_run(ckpt, ds, A, lb_assoc, &ev, &params);
  if (!rc && assoc_eval_assoc_metrics(ds, A, es_rate, out, NULL)) {
    fprintf(stderr, "assoc ablation: SM-GNN: out of memory\n");
    rc = -1;
  }
  if (!rc) {
    out->params = params;
    out->infer_us = out->latency_us = ev.us_per_sample; /* the whole protocol, per sample */
    out->batch = SM_EVAL_BATCH, out->threads = omp_get_max_threads();
    if (own_rate) *own_rate = ev.rate_lb;
  }
  free(A);
  return rc;
}

const abl_sm_hooks abl_jointgnn_hooks = {.train = sm_train, .evaluate = sm_evaluate};
