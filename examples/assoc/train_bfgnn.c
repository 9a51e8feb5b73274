/* assoc train --model bfgnn|jointgnn: trains a beam model (docs/models.md
 * "BFGNN", "JointGNN") and writes its checkpoint. BFGNN trains on the
 * training association mix of the data set, JointGNN on the data alone. */
#include <omp.h>
#include <stdio.h>

#include "cli.h"
#include "train_bfgnn.h"

/* ES joins the mix when it searches at most this many associations. */
#define BFGNN_ES_MAX_FEASIBLE 1e5

typedef struct beam_progress {
  int epochs;
  double start;
} beam_progress;

static void print_epoch(void *user, int epoch, double rate, double lr) {
  beam_progress *p = user;
  printf("epoch %d/%d: train rate %.4f  lr %.3g  %.1f s\n", epoch, p->epochs, rate, lr,
         omp_get_wtime() - p->start);
  fflush(stdout);
}

/* The batching, schedule, seed and progress of c for either beam model. */
static assoc_bfgnn_train_opts train_opts(const assoc_train_config *c, double scale, bool quiet,
                                         beam_progress *prog) {
  *prog = (beam_progress){c->epochs, omp_get_wtime()};
  assoc_bfgnn_train_opts o = assoc_bfgnn_train_defaults(scale);
  o.batch = c->batch, o.epochs = c->epochs, o.batches_per_epoch = c->batches_per_epoch;
  o.lr_min = c->lr_min, o.lr_max = c->lr_max, o.t0 = c->t0, o.t_mult = c->t_mult;
  o.seed = c->seed, o.epoch_fn = quiet ? NULL : print_epoch, o.user = prog;
  return o;
}

/* The checkpoint write's status and, unless quiet, the closing line. */
static int finish(int rc, int write_rc, const sg_io_error *err, const char *model,
                  const assoc_train_config *c, int64_t params, double rate,
                  const beam_progress *prog, const char *out, bool quiet) {
  if (rc) return fprintf(stderr, "assoc train: %s training failed (see above)\n", model), rc;
  if (write_rc) return fprintf(stderr, "assoc train: %s\n", err->msg), write_rc;
  if (!quiet)
    printf("%s: %d epochs, %lld parameters, last train rate %.4f, %.1f s; wrote %s\n", model,
           c->epochs, (long long)params, rate, omp_get_wtime() - prog->start, out);
  return 0;
}

static int check_batch(const assoc_train_config *c, const assoc_dataset *ds) {
  if (c->threads) assoc_set_threads(c->threads);
  if (c->batch <= ds->S) return 0;
  fprintf(stderr, "assoc train: --batch %lld exceeds the %lld training samples\n",
          (long long)c->batch, (long long)ds->S);
  return -1;
}

/* ---- BFGNN ---------------------------------------------------------------------- */

static int bfgnn_train_and_save(const assoc_train_config *c, const assoc_dataset *ds,
                                const assoc_bfgnn_mix *mix, assoc_beam_norm norm, const char *out,
                                bool quiet) {
  double scale = c->feature_scale > 0 ? c->feature_scale : assoc_feature_scale(ds);
  assoc_bfgnn_config bc = assoc_bfgnn_config_paper();
  bc.d = c->d, bc.h = c->h, bc.L = c->L, bc.n_antennas = ds->N, bc.dtype = c->dtype, bc.norm = norm;
  assoc_bfgnn *m = assoc_bfgnn_new(&bc, c->seed);
  if (!m) return fprintf(stderr, "assoc train: cannot build the model\n"), -1;
  beam_progress prog;
  assoc_bfgnn_train_opts o = train_opts(c, scale, quiet, &prog);
  double rate = 0;
  sg_io_error err;
  int rc = assoc_bfgnn_train(m, ds, (const int *const *)mix->assocs, mix->n, &o, &rate);
  int wrc = rc ? 0 : assoc_bfgnn_checkpoint_write(out, m, scale, &err);
  rc = finish(rc, wrc, &err, "bfgnn", c, assoc_bfgnn_param_count(m), rate, &prog, out, quiet);
  assoc_bfgnn_free(m);
  return rc;
}

int assoc_train_bfgnn(const assoc_train_config *c, const assoc_dataset *ds, assoc_beam_norm norm,
                      const char *out, bool quiet) {
  if (check_batch(c, ds)) return ASSOC_EXIT_USAGE;
  assoc_bfgnn_mix mix;
  sg_io_error err;
  if (assoc_bfgnn_training_mix(ds, c->seed, BFGNN_ES_MAX_FEASIBLE, &mix, &err)) {
    fprintf(stderr, "assoc train: training associations: %s\n", err.msg);
    return ASSOC_EXIT_FAIL;
  }
  if (mix.es_skipped)
    fprintf(stderr,
            "assoc train: note: ES left out of the training mix (%.3g feasible "
            "associations per sample > %.0g)\n",
            assoc_feasible_count(ds->M, ds->N, ds->K), BFGNN_ES_MAX_FEASIBLE);
  if (!quiet) {
    printf("bfgnn training mix:");
    for (int i = 0; i < mix.n; i++) printf(" %s", mix.names[i]);
    printf(" (S=%lld M=%d N=%d K=%d, %d threads)\n", (long long)ds->S, ds->M, ds->N, ds->K,
           omp_get_max_threads());
  }
  int rc = bfgnn_train_and_save(c, ds, &mix, norm, out, quiet);
  assoc_bfgnn_mix_free(&mix);
  return rc ? ASSOC_EXIT_FAIL : ASSOC_EXIT_OK;
}

/* ---- JointGNN ------------------------------------------------------------------- */

int assoc_train_jointgnn(const assoc_train_config *c, const assoc_dataset *ds,
                         const assoc_train_beam_opts *b, const char *out, bool quiet) {
  if (check_batch(c, ds)) return ASSOC_EXIT_USAGE;
  double scale = c->feature_scale > 0 ? c->feature_scale : assoc_feature_scale(ds);
  assoc_jointgnn_config jc = assoc_jointgnn_config_paper();
  jc.d = c->d, jc.h = c->h, jc.L = c->L, jc.n_antennas = ds->N, jc.dtype = c->dtype;
  jc.norm = b->norm;
  assoc_jointgnn *m = assoc_jointgnn_new(&jc, c->seed);
  if (!m) return fprintf(stderr, "assoc train: cannot build the model\n"), ASSOC_EXIT_FAIL;
  double mu[ASSOC_MAX_BS];
  for (int i = 0; i < ASSOC_MAX_BS; i++) mu[i] = b->penalty_mu;
  assoc_jointgnn_train_opts o = {.penalty = {.mu = b->penalty_after >= 0 ? mu : NULL,
                                             .capacity = ds->N,
                                             .delta = b->delta,
                                             .start_epoch = b->penalty_after + 1}};
  beam_progress prog;
  o.base = train_opts(c, scale, quiet, &prog);
  if (!quiet)
    printf("jointgnn: S=%lld M=%d N=%d K=%d, %d threads, loss -mean R(A~, V)%s\n", (long long)ds->S,
           ds->M, ds->N, ds->K, omp_get_max_threads(),
           o.penalty.mu ? " + load penalty after epoch T" : "");
  double rate = 0;
  sg_io_error err;
  int rc = assoc_jointgnn_train(m, ds, &o, &rate);
  int wrc = rc ? 0 : assoc_jointgnn_checkpoint_write(out, m, scale, &err);
  rc = finish(rc, wrc, &err, "jointgnn", c, assoc_jointgnn_param_count(m), rate, &prog, out, quiet);
  assoc_jointgnn_free(m);
  return rc ? ASSOC_EXIT_FAIL : ASSOC_EXIT_OK;
}
