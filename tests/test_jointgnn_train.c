/* JointGNN on data sets (models/gnn/jointgnn_train.c, models/train/
 * beam_checkpoint.c, jointgnn_run.c): training raises the rate it
 * maximises, is bitwise deterministic for a seed on 1 and 2 threads (with
 * and without Gumbel noise and the load penalty), the checkpoint round
 * trip is exact, a run resumed from a checkpoint gives the uninterrupted
 * run's weights bit for bit, and the evaluation protocol: the rounding on hand-made
 * A~ (argmax, violations, dropping keeps the largest a~) and the
 * load-balanced own-beam rate against a direct float64 recomputation. */
#include <complex.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assoc_train.h"
#include "sg_test.h"
#include "train_helpers.h"

static assoc_jointgnn *tiny_joint(int d, int h, sg_dtype dt, bool gumbel, uint64_t seed) {
  assoc_jointgnn_config c = assoc_jointgnn_config_paper();
  c.d = d, c.h = h, c.n_antennas = 2, c.dtype = dt, c.gumbel = gumbel, c.tau = 0.8;
  assoc_jointgnn *m = assoc_jointgnn_new(&c, seed);
  ck_assert_ptr_nonnull(m);
  return m;
}

static assoc_jointgnn_eval evaluate(const assoc_jointgnn *m, double scale,
                                    const assoc_dataset *ds) {
  assoc_jointgnn_eval x = {0};
  sg_io_error err = {{0}};
  ck_assert_msg(assoc_jointgnn_evaluate(m, scale, ds, 16, &x, &err) == 0, "%s", err.msg);
  return x;
}

typedef struct epoch_log {
  int n;
  double rate[16];
} epoch_log;

static void log_epoch(void *user, int epoch, double rate, double lr) {
  epoch_log *l = user;
  ck_assert_int_eq(epoch, l->n + 1);
  ck_assert(isfinite(rate) && lr > 0 && l->n < 16);
  l->rate[l->n++] = rate;
}

/* A short run raises the training objective R(A~, V) from the first
 * epoch to the last, and the held-out soft and load-balanced rates above
 * the untrained model's. */
START_TEST(jointgnn_training_raises_rate) {
  assoc_dataset train = make_data(256, 11), test = make_data(64, 12);
  double scale = assoc_feature_scale(&train);
  assoc_jointgnn *m = tiny_joint(16, 32, SG_F32, false, 5);
  assoc_jointgnn_eval before = evaluate(m, scale, &test);
  assoc_jointgnn_train_opts o = assoc_jointgnn_train_defaults(scale);
  epoch_log log = {0};
  o.base.batch = 32, o.base.epochs = 8, o.base.lr_min = 1e-4, o.base.lr_max = 3e-3;
  o.base.t0 = 8, o.base.epoch_fn = log_epoch, o.base.user = &log;
  double last = 0;
  ck_assert_int_eq(assoc_jointgnn_train(m, &train, &o, &last), 0);
  ck_assert_int_eq(log.n, 8);
  ck_assert(last == log.rate[7]);
  assoc_jointgnn_eval after = evaluate(m, scale, &test);
  printf("JointGNN: train rate epoch 1 %.3f -> 8 %.3f; held-out soft %.3f -> %.3f, LB own beams "
         "%.3f -> %.3f, violations %.2f -> %.2f\n",
         log.rate[0], log.rate[7], before.rate_soft, after.rate_soft, before.rate_lb, after.rate_lb,
         before.violation_ratio, after.violation_ratio);
  ck_assert(log.rate[7] > 1.2 * log.rate[0]);
  ck_assert(after.rate_soft > 1.2 * before.rate_soft);
  ck_assert(after.rate_lb > before.rate_lb);
  assoc_jointgnn_free(m);
  assoc_dataset_free(&train), assoc_dataset_free(&test);
}
END_TEST

/* ---- determinism -------------------------------------------------------------------- */

/* Every parameter of a model trained from seed on `threads` threads,
 * concatenated (caller frees). */
static unsigned char *trained_bytes(const assoc_dataset *ds, bool gumbel, bool penalty,
                                    uint64_t seed, int threads, size_t *n) {
  assoc_jointgnn *m = tiny_joint(8, 16, SG_F32, gumbel, 3);
  double mu[2] = {0.5, 0.5};
  assoc_jointgnn_train_opts o = assoc_jointgnn_train_defaults(assoc_feature_scale(ds));
  o.base.batch = 16, o.base.epochs = 3, o.base.batches_per_epoch = 3, o.base.seed = seed;
  o.base.lr_max = 3e-3;
  if (penalty) o.penalty = (assoc_jointgnn_penalty){mu, 2.0, 0.0, 2};
  omp_set_num_threads(threads);
  ck_assert_int_eq(assoc_jointgnn_train(m, ds, &o, NULL), 0);
  omp_set_num_threads(1);
  const sg_params *p = m->trunk.params;
  *n = 0;
  for (int i = 0; i < sg_params_count(p); i++) *n += (size_t)sg_params_at(p, i)->numel * 4;
  unsigned char *buf = malloc(*n), *at = buf;
  for (int i = 0; i < sg_params_count(p); i++) {
    const sg_tensor *t = sg_params_at(p, i);
    memcpy(at, t->data, (size_t)t->numel * 4), at += t->numel * 4;
  }
  assoc_jointgnn_free(m);
  return buf;
}

START_TEST(jointgnn_training_deterministic) {
  assoc_dataset ds = make_data(64, 21);
  for (int variant = 0; variant < 2; variant++) {
    bool noisy = variant == 1; /* Gumbel-softmax and the penalty from epoch 2 */
    size_t n[4];
    unsigned char *a = trained_bytes(&ds, noisy, noisy, 7, 1, &n[0]);
    unsigned char *b = trained_bytes(&ds, noisy, noisy, 7, 1, &n[1]);
    unsigned char *c = trained_bytes(&ds, noisy, noisy, 7, 2, &n[2]);
    unsigned char *d = trained_bytes(&ds, noisy, noisy, 8, 1, &n[3]);
    ck_assert(n[0] == n[1] && n[0] == n[2] && n[0] == n[3]);
    ck_assert_msg(memcmp(a, b, n[0]) == 0, "variant %d: same seed, different weights", variant);
    ck_assert_msg(memcmp(a, c, n[0]) == 0, "variant %d: 1 and 2 threads differ", variant);
    ck_assert_msg(memcmp(a, d, n[0]) != 0, "variant %d: seeds 7 and 8 agree", variant);
    free(a), free(b), free(c), free(d);
  }
  /* the penalty changes the training from its start epoch on */
  size_t n1, n2;
  unsigned char *plain = trained_bytes(&ds, false, false, 7, 1, &n1);
  unsigned char *pen = trained_bytes(&ds, false, true, 7, 1, &n2);
  ck_assert(n1 == n2 && memcmp(plain, pen, n1) != 0);
  free(plain), free(pen);
  assoc_dataset_free(&ds);
}
END_TEST

/* ---- checkpoint ------------------------------------------------------------------- */

START_TEST(jointgnn_checkpoint_round_trip) {
  assoc_dataset ds = make_data(24, 31);
  double scale = assoc_feature_scale(&ds), scale2 = 0;
  assoc_jointgnn *m = tiny_joint(8, 16, SG_F32, true, 4);
  assoc_jointgnn_train_opts o = assoc_jointgnn_train_defaults(scale);
  o.base.batch = 8, o.base.epochs = 1, o.base.lr_max = 1e-3;
  ck_assert_int_eq(assoc_jointgnn_train(m, &ds, &o, NULL), 0);
  char path[128];
  tmp_path(path, sizeof path, "joint.npz");
  sg_io_error err = {{0}};
  ck_assert_msg(assoc_jointgnn_checkpoint_write(path, m, scale, &err) == 0, "%s", err.msg);
  ck_assert_str_eq(assoc_beam_checkpoint_model(path), "JointGNN");
  assoc_jointgnn *m2 = assoc_jointgnn_checkpoint_read(path, &scale2, &err);
  ck_assert_msg(m2, "%s", err.msg);
  ck_assert(scale2 == scale);
  ck_assert(m2->cfg.d == 8 && m2->cfg.h == 16 && m2->cfg.L == 2 && m2->cfg.n_antennas == 2 &&
            m2->cfg.gumbel && m2->cfg.tau == 0.8 && m2->cfg.power == 1.0 &&
            m2->cfg.norm == ASSOC_BEAM_PROJECT && m2->cfg.dtype == SG_F32);
  const sg_params *p = m->trunk.params, *p2 = m2->trunk.params;
  ck_assert_int_eq(sg_params_count(p), sg_params_count(p2));
  for (int i = 0; i < sg_params_count(p); i++) {
    const sg_tensor *a = sg_params_at(p, i), *b = sg_params_at(p2, i);
    ck_assert_str_eq(sg_params_name(p, i), sg_params_name(p2, i));
    ck_assert(a->numel == b->numel && memcmp(a->data, b->data, (size_t)a->numel * 4) == 0);
  }
  double r1[24], r2[24];
  assoc_jointgnn_eval x = {.rate_lb_s = r1}, y = {.rate_lb_s = r2};
  ck_assert(assoc_jointgnn_evaluate(m, scale, &ds, 16, &x, &err) == 0);
  ck_assert(assoc_jointgnn_evaluate(m2, scale2, &ds, 16, &y, &err) == 0);
  ck_assert(memcmp(r1, r2, sizeof r1) == 0 && x.violation_ratio == y.violation_ratio);
  remove(path);
  assoc_jointgnn_free(m), assoc_jointgnn_free(m2);
  assoc_dataset_free(&ds);
}
END_TEST

/* Four epochs in one run, and two, a checkpoint with the run's state
 * written and read back into a new model, and two more: the same weights
 * bit for bit (Gumbel noise on, the penalty from epoch 3, so that both
 * generators, the shuffle and the penalty carry over). */
START_TEST(jointgnn_resume_bitwise) {
  assoc_dataset ds = make_data(40, 37);
  double mu[2] = {0.7, 0.3};
  assoc_jointgnn_train_opts o = assoc_jointgnn_train_defaults(assoc_feature_scale(&ds));
  o.base.batch = 16, o.base.epochs = 4, o.base.lr_max = 3e-3, o.base.t0 = 3, o.base.seed = 9;
  o.penalty = (assoc_jointgnn_penalty){mu, 2.0, 0.5, 3};
  assoc_jointgnn *whole = tiny_joint(8, 16, SG_F32, true, 1);
  ck_assert_int_eq(assoc_jointgnn_train(whole, &ds, &o, NULL), 0);
  assoc_jointgnn *part = tiny_joint(8, 16, SG_F32, true, 1);
  assoc_beam_train_state st;
  ck_assert_int_eq(assoc_jointgnn_train_start(part, &ds, &o, &st), 0);
  o.base.epochs = 2;
  ck_assert_int_eq(assoc_jointgnn_train_resume(part, &ds, &o, &st, NULL), 0);
  ck_assert_int_eq(st.epoch, 2);
  char path[128], plain[128];
  tmp_path(path, sizeof path, "joint_run.npz");
  tmp_path(plain, sizeof plain, "joint_plain.npz");
  sg_io_error err = {{0}};
  ck_assert_msg(assoc_jointgnn_checkpoint_write_run(path, part, &o, &st, &err) == 0, "%s", err.msg);
  ck_assert(assoc_jointgnn_checkpoint_write(plain, part, o.base.feature_scale, &err) == 0);
  assoc_beam_train_state_free(&st);
  assoc_jointgnn_free(part);
  assoc_jointgnn_train_opts o2;
  assoc_jointgnn *back = assoc_jointgnn_checkpoint_read_run(path, &o2, &st, &err);
  ck_assert_msg(back, "%s", err.msg);
  ck_assert(o2.base.batch == 16 && o2.base.seed == 9 && o2.base.lr_max == 3e-3 && o2.base.t0 == 3 &&
            o2.base.epochs == 2 && o2.base.feature_scale == o.base.feature_scale);
  ck_assert(o2.penalty.mu == st.penalty_mu && o2.penalty.mu[0] == 0.7 &&
            o2.penalty.start_epoch == 3 && o2.penalty.delta == 0.5 && st.epoch == 2);
  o2.base.epochs = 4;
  ck_assert_int_eq(assoc_jointgnn_train_resume(back, &ds, &o2, &st, NULL), 0);
  const sg_params *a = whole->trunk.params, *b = back->trunk.params;
  for (int i = 0; i < sg_params_count(a); i++) {
    const sg_tensor *x = sg_params_at(a, i), *y = sg_params_at(b, i);
    ck_assert_msg(memcmp(x->data, y->data, (size_t)x->numel * 4) == 0, "%s differs",
                  sg_params_name(a, i));
  }
  /* the plain reader takes the run's checkpoint; the run reader refuses a plain one */
  assoc_jointgnn *m = assoc_jointgnn_checkpoint_read(path, NULL, &err);
  ck_assert_msg(m, "%s", err.msg);
  assoc_jointgnn_free(m);
  assoc_beam_train_state st2;
  ck_assert_ptr_null(assoc_jointgnn_checkpoint_read_run(plain, &o2, &st2, &err));
  ck_assert_msg(strstr(err.msg, "no training state"), "%s", err.msg);
  /* another data set's state is refused */
  assoc_dataset other = make_data(24, 38);
  sg_test_capture_errors();
  ck_assert_int_eq(assoc_jointgnn_train_resume(back, &other, &o2, &st, NULL), -1);
  sg_set_error_handler(NULL, NULL);
  assoc_beam_train_state_free(&st);
  assoc_jointgnn_free(whole), assoc_jointgnn_free(back);
  remove(path), remove(plain);
  assoc_dataset_free(&ds), assoc_dataset_free(&other);
}
END_TEST

/* ---- the evaluation protocol ---------------------------------------------------------- */

/* Hand-made A~ on M = 2, N = 2, K = 4: the argmax (ties: BS 0), the
 * violation flag, and the load balancing that keeps an overloaded BS's N
 * UEs of largest a~. */
START_TEST(jointgnn_round_hand_made) {
  assoc_dataset ds = make_data(3, 33);
  const double A[3][8] = {
      {0.9, 0.1, 0.6, 0.4, 0.8, 0.2, 0.7, 0.3},       /* all on BS 0: keep UEs 0 and 2 */
      {0.2, 0.8, 0.5, 0.5, 0.3, 0.7, 0.6, 0.4},       /* 1, 0 (tie), 1, 0: feasible */
      {0.45, 0.55, 0.05, 0.95, 0.35, 0.65, 0.9, 0.1}, /* three on BS 1: drop UE 0 */
  };
  const int want_hot[3][4] = {{0, 0, 0, 0}, {1, 0, 1, 0}, {1, 1, 1, 0}};
  const int want_lb[3][4] = {{0, -1, 0, -1}, {1, 0, 1, 0}, {-1, 1, 1, 0}};
  const int want_violated[3] = {1, 0, 1};
  double gain[2 * 4 * 4];
  for (int s = 0; s < 3; s++) {
    int hot[4], lb[4];
    ck_assert_int_eq(assoc_jointgnn_round(&ds, s, A[s], gain, hot, lb), want_violated[s]);
    for (int k = 0; k < 4; k++) {
      ck_assert_msg(hot[k] == want_hot[s][k], "sample %d UE %d: one-hot %d", s, k, hot[k]);
      ck_assert_msg(lb[k] == want_lb[s][k], "sample %d UE %d: lb %d", s, k, lb[k]);
    }
  }
  assoc_dataset_free(&ds);
}
END_TEST

/* The load-balanced own-beam rate of sample b recomputed from the raw
 * beams and the rate channels: per BS v <- v min(1, 1/||V_m||_F) over
 * the UEs lb serves, then SINR with noise 1 (G = h sqrt(P_t)/sigma). */
static double direct_rate(const assoc_bfgnn_batch *bt, const assoc_jointgnn_output *o, int64_t b,
                          const int *lb, int M, int K, int N) {
  double complex v[2][8][4];
  for (int m = 0; m < M; m++) {
    double norm2 = ASSOC_BEAM_NORM_EPS;
    for (int k = 0; k < K; k++)
      for (int n = 0; n < N; n++) {
        int64_t i = ((b * M + m) * K + k) * N + n;
        v[m][k][n] = sg_get(o->raw.re, i) + I * sg_get(o->raw.im, i);
        if (lb[k] == m) norm2 += creal(v[m][k][n] * conj(v[m][k][n]));
      }
    double f = fmin(1.0, 1.0 / sqrt(norm2));
    for (int k = 0; k < K; k++)
      for (int n = 0; n < N; n++) v[m][k][n] *= f;
  }
  double R = 0;
  for (int k = 0; k < K; k++) {
    if (lb[k] < 0) continue;
    double signal = 0, interference = 0;
    for (int l = 0; l < K; l++) {
      if (lb[l] < 0) continue;
      double complex z = 0;
      for (int n = 0; n < N; n++) {
        int64_t i = ((b * M + lb[l]) * K + k) * N + n;
        z += (sg_get(bt->G_re, i) + I * sg_get(bt->G_im, i)) * v[lb[l]][l][n];
      }
      double z2 = creal(z * conj(z));
      l == k ? (signal = z2) : (interference += z2);
    }
    R += log2(1 + signal / (interference + 1.0));
  }
  return R;
}

/* assoc_jointgnn_evaluate on a float64 model: its A~ is the forward's, its
 * one-hot and load-balanced associations are assoc_jointgnn_round's, the
 * violation ratio counts the overloaded one-hots, and each sample's LB
 * rate equals the direct recomputation from the model's raw beams. */
START_TEST(jointgnn_evaluate_protocol) {
  enum { S = 12, M = 2, K = 4, N = 2 };
  assoc_dataset ds = make_data(S, 35);
  double scale = assoc_feature_scale(&ds);
  assoc_jointgnn *m = tiny_joint(8, 16, SG_F64, false, 6);
  int hot[S * K], lb[S * K];
  double A[S * K * M], r1[S], rl[S];
  assoc_jointgnn_eval x = {.one_hot = hot, .lb = lb, .rate_onehot_s = r1, .rate_lb_s = rl, .A = A};
  sg_io_error err = {{0}};
  ck_assert_msg(assoc_jointgnn_evaluate(m, scale, &ds, 5, &x, &err) == 0, "%s", err.msg);
  sg_graph *g = sg_graph_new();
  assoc_bfgnn_batch bt;
  ck_assert(assoc_bfgnn_batch_make(g, &ds, NULL, NULL, 0, S, scale, SG_F64, &bt) == 0);
  ck_assert_ptr_null(bt.A);
  assoc_jointgnn_output o =
      assoc_jointgnn_forward(g, m, bt.p, bt.q, bt.X, ASSOC_GNN_EVAL, NULL, NULL);
  double gain[M * K * K], violated = 0, sum_lb = 0;
  for (int64_t s = 0; s < S; s++) {
    for (int i = 0; i < K * M; i++)
      ck_assert_double_eq_tol(A[s * K * M + i], sg_get(o.assoc, s * K * M + i), 1e-12);
    int h2[K], l2[K];
    violated += assoc_jointgnn_round(&ds, s, A + s * K * M, gain, h2, l2);
    ck_assert(memcmp(h2, hot + s * K, sizeof h2) == 0 && memcmp(l2, lb + s * K, sizeof l2) == 0);
    int load[M] = {0};
    for (int k = 0; k < K; k++)
      if (lb[s * K + k] >= 0) load[lb[s * K + k]]++; /* -1: dropped */
    ck_assert(load[0] <= N && load[1] <= N);
    double want = direct_rate(&bt, &o, s, lb + s * K, M, K, N);
    ck_assert_msg(fabs(rl[s] - want) <= 1e-9 * want, "sample %lld: %.12g vs %.12g", (long long)s,
                  rl[s], want);
    sum_lb += want;
  }
  ck_assert(x.samples == S && x.violation_ratio == violated / S);
  ck_assert(violated > 0); /* an untrained model overloads a BS in some sample */
  ck_assert_double_eq_tol(x.rate_lb, sum_lb / S, 1e-9 * x.rate_lb);
  sg_graph_free(g);
  assoc_jointgnn_free(m);
  assoc_dataset_free(&ds);
}
END_TEST

Suite *suite_jointgnn_train(void) {
  const sg_test_case cases[] = {
      {"jointgnn_training_raises_rate", jointgnn_training_raises_rate},
      {"jointgnn_training_deterministic", jointgnn_training_deterministic},
      {"jointgnn_checkpoint_round_trip", jointgnn_checkpoint_round_trip},
      {"jointgnn_resume_bitwise", jointgnn_resume_bitwise},
      {"jointgnn_round_hand_made", jointgnn_round_hand_made},
      {"jointgnn_evaluate_protocol", jointgnn_evaluate_protocol},
  };
  return sg_test_suite("jointgnn_train", cases, sizeof cases / sizeof *cases, 300);
}
