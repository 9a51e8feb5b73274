/* Run under mpirun: the beam models' data-parallel training through the
 * library's hook (assoc_beam_dist_hook) against the same training on one
 * process, which every rank also runs by itself, without the hook:
 *   - JointGNN, float64, with Gumbel-softmax (the noise of the whole batch
 *     drawn on every rank, each rank using its rows) and the load penalty
 *     from epoch 2: the parameters and every epoch's mean rate to 1e-9, and
 *     the run's state (shuffle, cursor, both generators) bit for bit;
 *   - BFGNN, float64, duality head, on its training association mix: the
 *     parameters to 1e-9;
 *   - JointGNN, float32, twice over the ranks: the same bits;
 *   - a mini-batch smaller than the number of ranks: refused on every rank.
 * A batch of 10 splits unevenly over 3 and 4 ranks. Exit 0 when everything
 * holds on this rank, 1 otherwise (with a message naming the rank). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assoc_dist.h"
#include "assoc_train.h"

enum { EPOCHS = 3, BATCH = 10 };

static int rank, failures, reports;

static void fail(const char *what, double got, double bound) {
  fprintf(stderr, "rank %d of %d: %s: %.3g (bound %.3g)\n", rank, assoc_dist_size(), what, got,
          bound);
  failures++;
}

static void count_report(const char *op, const char *msg, const char *file, int line, void *user) {
  (void)op, (void)msg, (void)file, (void)line, (void)user;
  reports++;
}

/* ||a - b|| / ||a|| over every parameter of two registries of one model. */
static double params_difference(const sg_params *a, const sg_params *b) {
  double d2 = 0, a2 = 0;
  for (int i = 0; i < sg_params_count(a); i++) {
    const sg_tensor *x = sg_params_at(a, i), *y = sg_params_at(b, i);
    for (int64_t j = 0; j < x->numel; j++) {
      double u = sg_get(x, j), v = sg_get(y, j);
      d2 += (u - v) * (u - v), a2 += u * u;
    }
  }
  return sqrt(d2 / a2);
}

static bool params_bitwise(const sg_params *a, const sg_params *b) {
  for (int i = 0; i < sg_params_count(a); i++) {
    const sg_tensor *x = sg_params_at(a, i), *y = sg_params_at(b, i);
    if (memcmp(x->data, y->data, (size_t)x->numel * (x->dtype == SG_F32 ? 4 : 8))) return false;
  }
  return true;
}

typedef struct epoch_rates {
  double rate[EPOCHS];
} epoch_rates;

static void record_rate(void *user, int epoch, double rate, double lr) {
  (void)lr;
  ((epoch_rates *)user)->rate[epoch - 1] = rate;
}

/* ---- JointGNN ------------------------------------------------------------------------ */

typedef struct joint_run {
  assoc_jointgnn *m;
  assoc_beam_train_state st;
  epoch_rates rates;
} joint_run;

static int joint_train(const assoc_dataset *ds, sg_dtype dt, const assoc_gnn_dist *dist,
                       joint_run *run) {
  static const double mu[ASSOC_MAX_BS] = {0.5, 2.0, 1.0, 1.0};
  assoc_jointgnn_config c = assoc_jointgnn_config_paper();
  c.d = 8, c.h = 16, c.L = 1, c.n_antennas = ds->N, c.dtype = dt, c.gumbel = true, c.tau = 0.7;
  assoc_jointgnn_train_opts o = assoc_jointgnn_train_defaults(assoc_feature_scale(ds));
  o.base.batch = BATCH, o.base.epochs = EPOCHS, o.base.batches_per_epoch = 3;
  o.base.lr_max = 1e-3, o.base.t0 = 2, o.base.seed = 9, o.base.dist = dist;
  o.base.epoch_fn = record_rate, o.base.user = &run->rates;
  o.penalty = (assoc_jointgnn_penalty){.mu = mu, .capacity = ds->N, .delta = 1, .start_epoch = 2};
  *run = (joint_run){.m = assoc_jointgnn_new(&c, 5)};
  if (!run->m || assoc_jointgnn_train_start(run->m, ds, &o, &run->st)) return -1;
  return assoc_jointgnn_train_resume(run->m, ds, &o, &run->st, NULL);
}

static void joint_free(joint_run *run) {
  assoc_beam_train_state_free(&run->st);
  assoc_jointgnn_free(run->m);
}

static bool same_state(const assoc_beam_train_state *a, const assoc_beam_train_state *b) {
  return a->epoch == b->epoch && a->cursor == b->cursor &&
         !memcmp(a->order, b->order, (size_t)a->S * sizeof *a->order) &&
         !memcmp(&a->shuffle, &b->shuffle, sizeof a->shuffle) &&
         !memcmp(&a->noise, &b->noise, sizeof a->noise);
}

static void check_jointgnn(const assoc_dataset *ds, const assoc_gnn_dist *dist) {
  joint_run one, over;
  if (joint_train(ds, SG_F64, NULL, &one) || joint_train(ds, SG_F64, dist, &over)) {
    fail("JointGNN float64 training failed", 1, 0);
  } else {
    double d = params_difference(one.m->trunk.params, over.m->trunk.params);
    if (!(d <= 1e-9)) fail("JointGNN float64 parameters against one process", d, 1e-9);
    for (int e = 0; e < EPOCHS; e++) {
      double r = fabs(one.rates.rate[e] - over.rates.rate[e]) / fabs(one.rates.rate[e]);
      if (!(r <= 1e-9)) fail("JointGNN float64 epoch rate against one process", r, 1e-9);
    }
    if (!same_state(&one.st, &over.st)) fail("JointGNN run state differs from one process", 1, 0);
  }
  joint_free(&one), joint_free(&over);
  joint_run a, b;
  if (joint_train(ds, SG_F32, dist, &a) || joint_train(ds, SG_F32, dist, &b))
    fail("JointGNN float32 training failed", 1, 0);
  else if (!params_bitwise(a.m->trunk.params, b.m->trunk.params))
    fail("two float32 JointGNN runs over the ranks differ", 1, 0);
  joint_free(&a), joint_free(&b);
}

/* ---- BFGNN --------------------------------------------------------------------------- */

static assoc_bfgnn *bfgnn_train(const assoc_dataset *ds, const assoc_bfgnn_mix *mix,
                                const assoc_gnn_dist *dist) {
  assoc_bfgnn_config c = assoc_bfgnn_config_paper();
  c.d = 8, c.h = 16, c.L = 1, c.n_antennas = ds->N, c.dtype = SG_F64;
  c.head = ASSOC_BFGNN_HEAD_DUALITY;
  assoc_bfgnn *m = assoc_bfgnn_new(&c, 6);
  assoc_bfgnn_train_opts o = assoc_bfgnn_train_defaults(assoc_feature_scale(ds));
  o.batch = BATCH, o.epochs = EPOCHS, o.batches_per_epoch = 3, o.lr_max = 1e-3, o.t0 = 2;
  o.dist = dist;
  if (m && !assoc_bfgnn_train(m, ds, (const int *const *)mix->assocs, mix->n, &o, NULL)) return m;
  assoc_bfgnn_free(m);
  return NULL;
}

static void check_bfgnn(const assoc_dataset *ds, const assoc_gnn_dist *dist) {
  assoc_bfgnn_mix mix;
  sg_io_error err;
  if (assoc_bfgnn_training_mix(ds, 2, 1e5, &mix, &err)) {
    fprintf(stderr, "rank %d: %s\n", rank, err.msg);
    failures++;
    return;
  }
  assoc_bfgnn *one = bfgnn_train(ds, &mix, NULL), *over = bfgnn_train(ds, &mix, dist);
  if (!one || !over) {
    fail("BFGNN float64 training failed", 1, 0);
  } else {
    double d = params_difference(one->trunk.params, over->trunk.params);
    if (!(d <= 1e-9)) fail("BFGNN float64 parameters against one process", d, 1e-9);
  }
  assoc_bfgnn_free(one), assoc_bfgnn_free(over);
  assoc_bfgnn_mix_free(&mix);
}

/* ---- refusal ------------------------------------------------------------------------- */

/* A batch of R - 1 samples over R ranks: -1 after a report, on every rank. */
static void check_refusal(const assoc_dataset *ds, const assoc_gnn_dist *dist) {
  if (dist->ranks < 2) return;
  assoc_jointgnn_config c = assoc_jointgnn_config_paper();
  c.d = 4, c.h = 4, c.L = 1, c.n_antennas = ds->N, c.dtype = SG_F64;
  assoc_jointgnn *m = assoc_jointgnn_new(&c, 1);
  assoc_jointgnn_train_opts o = assoc_jointgnn_train_defaults(assoc_feature_scale(ds));
  o.base.batch = dist->ranks - 1, o.base.dist = dist;
  int before = reports;
  if (!m || assoc_jointgnn_train(m, ds, &o, NULL) != -1 || reports != before + 1)
    fail("a batch smaller than the rank count was not refused with one report", reports - before,
         1);
  assoc_jointgnn_free(m);
}

int main(int argc, char **argv) {
  sg_io_error err;
  if (assoc_dist_init(&argc, &argv, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
  rank = assoc_dist_rank();
  int size = assoc_dist_size();
  sg_set_error_handler(count_report, NULL);
  assoc_scenario sc = assoc_scenario_default();
  sc.seed = 3;
  assoc_dataset ds;
  if (assoc_generate(&sc, 40, &ds, &err)) {
    fprintf(stderr, "rank %d: %s\n", rank, err.msg);
    assoc_dist_abort(1);
  }
  assoc_gnn_dist dist = assoc_beam_dist_hook();
  check_jointgnn(&ds, &dist);
  check_bfgnn(&ds, &dist);
  if (reports) fail("library reports during training", reports, 0);
  check_refusal(&ds, &dist);
  assoc_dataset_free(&ds);
  /* a rank that failed must not leave the others waiting in a sum */
  if (failures && size > 1) assoc_dist_abort(1);
  assoc_dist_finalize();
  if (!failures) printf("mpi_beam_check: rank %d of %d: all passed\n", rank, size);
  return failures ? 1 : 0;
}
