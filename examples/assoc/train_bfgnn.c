/* assoc train --model bfgnn|jointgnn: trains a beam model (docs/models.md
 * "BFGNN", "JointGNN") and writes its checkpoint. BFGNN trains on the
 * training association mix of the data set, JointGNN on the data alone.
 * Under mpirun every rank runs the same training data-parallel
 * (assoc_beam_dist_hook) and holds the same model; rank 0 alone prints and
 * writes the checkpoint. */
#include <math.h>
#include <omp.h>
#include <stdio.h>

#include "assoc_dist.h"
#include "cli.h"
#include "train_bfgnn.h"

/* ES joins the mix when it searches at most this many associations. */
#define BFGNN_ES_MAX_FEASIBLE 1e5

typedef struct beam_progress {
  int epochs;
  double start;
  assoc_gnn_dist dist; /* the ranks of the job (one process: rank 0 of 1) */
} beam_progress;

/* Of several MPI ranks, rank 0 alone prints and writes files. */
static bool lead(void) {
  return assoc_dist_rank() == 0;
}

/* " x R MPI ranks" on several ranks, else "". */
static const char *ranks_note(char *buf, size_t len) {
  buf[0] = '\0';
  if (assoc_dist_size() > 1) snprintf(buf, len, " x %d MPI ranks", assoc_dist_size());
  return buf;
}

static void print_epoch(void *user, int epoch, double rate, double lr) {
  beam_progress *p = user;
  printf("epoch %d/%d: train rate %.4f  lr %.3g  %.1f s\n", epoch, p->epochs, rate, lr,
         omp_get_wtime() - p->start);
  fflush(stdout);
}

/* The batching, schedule, seed and progress of c for either beam model. */
static assoc_bfgnn_train_opts train_opts(const assoc_train_config *c, double scale, bool quiet,
                                         beam_progress *prog) {
  *prog = (beam_progress){c->epochs, omp_get_wtime(), assoc_beam_dist_hook()};
  assoc_bfgnn_train_opts o = assoc_bfgnn_train_defaults(scale);
  o.batch = c->batch, o.epochs = c->epochs, o.batches_per_epoch = c->batches_per_epoch;
  o.lr_min = c->lr_min, o.lr_max = c->lr_max, o.t0 = c->t0, o.t_mult = c->t_mult;
  o.seed = c->seed, o.epoch_fn = quiet ? NULL : print_epoch, o.user = prog;
  o.dist = &prog->dist;
  return o;
}

/* The checkpoint write's status and, unless quiet, the closing line. */
static int finish(int rc, int write_rc, const sg_io_error *err, const char *model,
                  const assoc_train_config *c, int64_t params, double rate,
                  const beam_progress *prog, const char *out, bool quiet) {
  if (rc == -2) { /* every rank stops at the same step: one message */
    if (lead())
      fprintf(stderr,
              "assoc train: %s training diverged (a mini-batch's mean rate is NaN, or "
              "--detect-anomaly's report above); a lower --lr-max may help\n",
              model);
    return rc;
  }
  if (rc) return fprintf(stderr, "assoc train: %s training failed (see above)\n", model), rc;
  if (write_rc) return fprintf(stderr, "assoc train: %s\n", err->msg), write_rc;
  if (!quiet)
    printf("%s: %d epochs, %lld parameters, last train rate %.4f, %.1f s; wrote %s\n", model,
           c->epochs, (long long)params, rate, omp_get_wtime() - prog->start, out);
  return 0;
}

static int check_batch(const assoc_train_config *c, const assoc_dataset *ds) {
  if (c->threads) assoc_set_threads(c->threads);
  if (c->batch > ds->S) {
    if (lead())
      fprintf(stderr, "assoc train: --batch %lld exceeds the %lld training samples\n",
              (long long)c->batch, (long long)ds->S);
    return -1;
  }
  if (c->batch >= assoc_dist_size()) return 0;
  if (lead())
    fprintf(stderr, "assoc train: a mini-batch of %lld samples cannot be split over %d ranks\n",
            (long long)c->batch, assoc_dist_size());
  return -1;
}

/* ---- BFGNN ---------------------------------------------------------------------- */

static int bfgnn_train_and_save(const assoc_train_config *c, const assoc_dataset *ds,
                                const assoc_bfgnn_mix *mix, const assoc_train_beam_opts *b,
                                const char *out, bool quiet) {
  double scale = c->feature_scale > 0 ? c->feature_scale : assoc_feature_scale(ds);
  assoc_bfgnn_config bc = assoc_bfgnn_config_paper();
  bc.d = c->d, bc.h = c->h, bc.L = c->L, bc.n_antennas = ds->N, bc.dtype = c->dtype;
  bc.norm = b->norm, bc.head = b->head;
  assoc_bfgnn *m = assoc_bfgnn_new(&bc, c->seed);
  if (!m) return fprintf(stderr, "assoc train: cannot build the model\n"), -1;
  beam_progress prog;
  assoc_bfgnn_train_opts o = train_opts(c, scale, quiet, &prog);
  double rate = 0;
  sg_io_error err;
  int rc = assoc_bfgnn_train(m, ds, (const int *const *)mix->assocs, mix->n, &o, &rate);
  int wrc = rc || !lead() ? 0 : assoc_bfgnn_checkpoint_write(out, m, scale, &err);
  rc = finish(rc, wrc, &err, "bfgnn", c, assoc_bfgnn_param_count(m), rate, &prog, out, quiet);
  assoc_bfgnn_free(m);
  return rc;
}

int assoc_train_bfgnn(const assoc_train_config *c, const assoc_dataset *ds,
                      const assoc_train_beam_opts *b, const char *out, bool quiet) {
  if (check_batch(c, ds)) return ASSOC_EXIT_USAGE;
  quiet |= !lead();
  assoc_bfgnn_mix mix;
  sg_io_error err;
  if (assoc_bfgnn_training_mix(ds, c->seed, BFGNN_ES_MAX_FEASIBLE, &mix, &err)) {
    fprintf(stderr, "assoc train: training associations: %s\n", err.msg);
    return ASSOC_EXIT_FAIL;
  }
  if (mix.es_skipped && lead())
    fprintf(stderr,
            "assoc train: note: ES left out of the training mix (%.3g feasible "
            "associations per sample > %.0g)\n",
            assoc_feasible_count(ds->M, ds->N, ds->K), BFGNN_ES_MAX_FEASIBLE);
  if (!quiet) {
    char note[48];
    printf("bfgnn training mix:");
    for (int i = 0; i < mix.n; i++) printf(" %s", mix.names[i]);
    printf(" (S=%lld M=%d N=%d K=%d, %d threads%s)\n", (long long)ds->S, ds->M, ds->N, ds->K,
           omp_get_max_threads(), ranks_note(note, sizeof note));
  }
  int rc = bfgnn_train_and_save(c, ds, &mix, b, out, quiet);
  assoc_bfgnn_mix_free(&mix);
  return rc ? ASSOC_EXIT_FAIL : ASSOC_EXIT_OK;
}

/* ---- JointGNN ------------------------------------------------------------------- */

/* The run's checkpoint after every `every` epochs and the last one. */
typedef struct joint_progress {
  beam_progress p;
  bool quiet;
  int every, write_failed, written; /* written: the epoch of the last checkpoint, -1 none */
  const char *out;
  const assoc_jointgnn *m;
  const assoc_jointgnn_train_opts *o;
  const assoc_beam_train_state *st;
} joint_progress;

static void joint_epoch(void *user, int epoch, double rate, double lr) {
  joint_progress *j = user;
  if (!j->quiet) print_epoch(&j->p, epoch, rate, lr);
  if ((epoch % j->every && epoch != j->p.epochs) || j->write_failed || !lead()) return;
  sg_io_error err;
  j->write_failed = assoc_jointgnn_checkpoint_write_run(j->out, j->m, j->o, j->st, &err);
  if (j->write_failed) fprintf(stderr, "assoc train: %s\n", err.msg);
  j->written = epoch;
}

/* A new model and run of c and b on ds, or the run of b->resume. */
static assoc_jointgnn *joint_setup(const assoc_train_config *c, const assoc_dataset *ds,
                                   const assoc_train_beam_opts *b, assoc_jointgnn_train_opts *o,
                                   assoc_beam_train_state *st, beam_progress *prog, double *mu) {
  sg_io_error err;
  if (b->resume) {
    assoc_jointgnn *m = assoc_jointgnn_checkpoint_read_run(b->resume, o, st, &err);
    if (!m) return fprintf(stderr, "assoc train: %s\n", err.msg), NULL;
    *prog = (beam_progress){c->epochs, omp_get_wtime(), assoc_beam_dist_hook()};
    o->base.epochs = c->epochs, o->base.dist = &prog->dist;
    return m;
  }
  assoc_jointgnn_config jc = assoc_jointgnn_config_paper();
  jc.d = c->d, jc.h = c->h, jc.L = c->L, jc.n_antennas = ds->N, jc.dtype = c->dtype;
  jc.norm = b->norm;
  assoc_jointgnn *m = assoc_jointgnn_new(&jc, c->seed);
  if (!m) return fprintf(stderr, "assoc train: cannot build the model\n"), NULL;
  for (int i = 0; i < ASSOC_MAX_BS; i++) mu[i] = b->penalty_mu;
  double scale = c->feature_scale > 0 ? c->feature_scale : assoc_feature_scale(ds);
  *o = (assoc_jointgnn_train_opts){.base = train_opts(c, scale, true, prog),
                                   .penalty = {.mu = b->penalty_after >= 0 ? mu : NULL,
                                               .capacity = ds->N,
                                               .delta = b->delta,
                                               .start_epoch = b->penalty_after + 1}};
  if (!assoc_jointgnn_train_start(m, ds, o, st)) return m;
  assoc_jointgnn_free(m);
  return NULL;
}

int assoc_train_jointgnn(const assoc_train_config *c, const assoc_dataset *ds,
                         const assoc_train_beam_opts *b, const char *out, bool quiet) {
  if (check_batch(c, ds)) return ASSOC_EXIT_USAGE;
  quiet |= !lead();
  assoc_jointgnn_train_opts o;
  assoc_beam_train_state st;
  double mu[ASSOC_MAX_BS];
  joint_progress jp = {
      .quiet = quiet, .every = b->checkpoint_every, .written = -1, .out = out, .o = &o, .st = &st};
  assoc_jointgnn *m = joint_setup(c, ds, b, &o, &st, &jp.p, mu);
  if (!m) return ASSOC_EXIT_FAIL;
  jp.m = m, o.base.epoch_fn = joint_epoch, o.base.user = &jp;
  char note[48];
  if (!quiet)
    printf("jointgnn: S=%lld M=%d N=%d K=%d, %d threads%s, loss -mean R(A~, V)%s, epoch %d of "
           "%d\n",
           (long long)ds->S, ds->M, ds->N, ds->K, omp_get_max_threads(),
           ranks_note(note, sizeof note), o.penalty.mu ? " + load penalty" : "", st.epoch,
           c->epochs);
  double rate = NAN;
  int rc = assoc_jointgnn_train_resume(m, ds, &o, &st, &rate);
  sg_io_error err;
  snprintf(err.msg, sizeof err.msg, "%s: the checkpoint was not written (see above)", out);
  int wrc = rc ? 0 : jp.write_failed ? -1 : 0;
  if (!rc && !wrc && jp.written != st.epoch && lead()) /* no epoch left to train */
    wrc = assoc_jointgnn_checkpoint_write_run(out, m, &o, &st, &err);
  rc = finish(rc, wrc, &err, "jointgnn", c, assoc_jointgnn_param_count(m), rate, &jp.p, out, quiet);
  assoc_beam_train_state_free(&st);
  assoc_jointgnn_free(m);
  return rc ? ASSOC_EXIT_FAIL : ASSOC_EXIT_OK;
}

int assoc_train_jointgnn_saved(const char *path, assoc_train_config *c, assoc_train_beam_opts *b,
                               int *epochs) {
  assoc_jointgnn_train_opts o;
  assoc_beam_train_state st;
  sg_io_error err;
  assoc_jointgnn *m = assoc_jointgnn_checkpoint_read_run(path, &o, &st, &err);
  if (!m) return fprintf(stderr, "assoc train: %s\n", err.msg), -1;
  const assoc_bfgnn_train_opts *s = &o.base;
  c->d = m->cfg.d, c->h = m->cfg.h, c->L = m->cfg.L, c->dtype = m->cfg.dtype;
  c->batch = s->batch, c->batches_per_epoch = s->batches_per_epoch, c->lr_min = s->lr_min;
  c->lr_max = s->lr_max, c->t0 = s->t0, c->t_mult = s->t_mult, c->seed = s->seed;
  c->feature_scale = s->feature_scale, c->delta = o.penalty.delta;
  b->norm = m->cfg.norm, b->penalty_after = o.penalty.mu ? o.penalty.start_epoch - 1 : -1;
  b->penalty_mu = o.penalty.mu ? o.penalty.mu[0] : b->penalty_mu;
  *epochs = st.epoch;
  assoc_beam_train_state_free(&st);
  assoc_jointgnn_free(m);
  return 0;
}
