/* assoc train --model bfgnn: trains BFGNN (docs/models.md "BFGNN") on the
 * training association mix of a data set and writes its checkpoint. */
#include <omp.h>
#include <stdio.h>

#include "cli.h"
#include "train_bfgnn.h"

/* ES joins the mix when it searches at most this many associations. */
#define BFGNN_ES_MAX_FEASIBLE 1e5

typedef struct bfgnn_progress {
  int epochs;
  double start;
} bfgnn_progress;

static void print_epoch(void *user, int epoch, double rate, double lr) {
  bfgnn_progress *p = user;
  printf("epoch %d/%d: train rate %.4f  lr %.3g  %.1f s\n", epoch, p->epochs, rate, lr,
         omp_get_wtime() - p->start);
  fflush(stdout);
}

static assoc_bfgnn *new_model(const assoc_train_config *c, int N, const assoc_bfgnn_config *beams) {
  assoc_bfgnn_config bc = *beams;
  bc.d = c->d, bc.h = c->h, bc.L = c->L, bc.n_antennas = N, bc.dtype = c->dtype;
  return assoc_bfgnn_new(&bc, c->seed);
}

static int train_and_save(const assoc_train_config *c, const assoc_dataset *ds,
                          const assoc_bfgnn_mix *mix, const assoc_bfgnn_config *beams,
                          const char *out, bool quiet) {
  double scale = c->feature_scale > 0 ? c->feature_scale : assoc_feature_scale(ds);
  assoc_bfgnn *m = new_model(c, ds->N, beams);
  if (!m) return fprintf(stderr, "assoc train: cannot build the model\n"), -1;
  bfgnn_progress prog = {c->epochs, omp_get_wtime()};
  assoc_bfgnn_train_opts o = assoc_bfgnn_train_defaults(scale);
  o.batch = c->batch, o.epochs = c->epochs, o.batches_per_epoch = c->batches_per_epoch;
  o.lr_min = c->lr_min, o.lr_max = c->lr_max, o.t0 = c->t0, o.t_mult = c->t_mult;
  o.seed = c->seed, o.epoch_fn = quiet ? NULL : print_epoch, o.user = &prog;
  double rate = 0;
  sg_io_error err;
  int rc = assoc_bfgnn_train(m, ds, (const int *const *)mix->assocs, mix->n, &o, &rate);
  if (rc == -2)
    fprintf(stderr, "assoc train: BFGNN training diverged (a mini-batch's mean rate is NaN); "
                    "a lower --lr-max may help\n");
  else if (rc)
    fprintf(stderr, "assoc train: BFGNN training failed (see above)\n");
  if (!rc && (rc = assoc_bfgnn_checkpoint_write(out, m, scale, &err)))
    fprintf(stderr, "assoc train: %s\n", err.msg);
  if (!rc && !quiet)
    printf("bfgnn: %d epochs, %lld parameters, last train rate %.4f, %.1f s; wrote %s\n", c->epochs,
           (long long)assoc_bfgnn_param_count(m), rate, omp_get_wtime() - prog.start, out);
  assoc_bfgnn_free(m);
  return rc;
}

int assoc_train_bfgnn(const assoc_train_config *c, const assoc_dataset *ds,
                      const assoc_bfgnn_config *beams, const char *out, bool quiet) {
  if (c->threads) assoc_set_threads(c->threads);
  if (c->batch > ds->S) {
    fprintf(stderr, "assoc train: --batch %lld exceeds the %lld training samples\n",
            (long long)c->batch, (long long)ds->S);
    return ASSOC_EXIT_USAGE;
  }
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
  int rc = train_and_save(c, ds, &mix, beams, out, quiet);
  assoc_bfgnn_mix_free(&mix);
  return rc ? ASSOC_EXIT_FAIL : ASSOC_EXIT_OK;
}
