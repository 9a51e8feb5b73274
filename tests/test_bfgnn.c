/* BFGNN (models/gnn/bfgnn.c): float64 gradient checks of the loss through
 * the whole model, the per-BS power of its beams, dropped UEs, the
 * parameter count, the batch inputs and the rate's units (MRT beams
 * against assoc_mrt_couplings and assoc_rate_int). */
#include <complex.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "assoc_gnn.h"
#include "beam_helpers.h"
#include "sg_test.h"
#include "train_helpers.h"

/* ---- tiny inputs ------------------------------------------------------------------ */

enum { TB = 2, TM = 2, TK = 3, TN = 2 };

static assoc_bfgnn_config tiny_bf_config(int L, assoc_beam_norm norm, double power) {
  return (assoc_bfgnn_config){
      .d = 4, .h = 8, .L = L, .n_antennas = TN, .dtype = SG_F64, .norm = norm, .power = power};
}

/* Random features and channels; UE k of sample b on BS (b + k) % M, except
 * UE 0 of odd samples (dropped). Every BS serves at most ceil(K / M) UEs. */
static beam_inputs make_bf_inputs(sg_rng *r, int64_t B, int64_t M, int64_t K, int64_t N) {
  beam_inputs in = make_beam_inputs(r, B, M, K, N);
  in.A = sg_zeros(NULL, SG_F64, 3, (int64_t[]){B, K, M});
  in.assoc = malloc((size_t)(B * K) * sizeof *in.assoc);
  for (int64_t b = 0; b < B; b++)
    for (int64_t k = 0; k < K; k++) {
      int a = (b % 2 && k == 0) ? -1 : (int)((b + k) % M);
      in.assoc[b * K + k] = a;
      if (a >= 0) sg_set(in.A, (b * K + k) * M + a, 1.0);
    }
  return in;
}

/* ---- gradient check ----------------------------------------------------------------- */

typedef struct bf_ctx {
  const assoc_bfgnn *model;
  beam_inputs *in;
} bf_ctx;

/* The loss -mean_b R_b of the model's beams. */
static sg_tensor *loss_fn(sg_graph *g, sg_tensor *const *inputs, int n, void *ctx) {
  (void)inputs, (void)n;
  bf_ctx *c = ctx;
  beam_inputs *in = c->in;
  assoc_complex V = assoc_bfgnn_forward(g, c->model, in->p, in->q, in->X, in->A);
  sg_tensor *R = assoc_bfgnn_rate(g, in->A, in->G_re, in->G_im, V);
  return R ? sg_neg(g, sg_mean_all(g, R)) : NULL;
}

/* Every parameter and the features p, q and X, element by element, default
 * tolerances; L 1 and 2, the projection with every BS inside (power 10)
 * and outside (power 1e-3) its ball, and full power. */
START_TEST(gradcheck_bfgnn) {
  const struct {
    int L;
    assoc_beam_norm norm;
    double power;
    assoc_bfgnn_head head;
  } cases[] = {{1, ASSOC_BEAM_PROJECT, 10.0, ASSOC_BFGNN_HEAD_DIRECT},
               {2, ASSOC_BEAM_PROJECT, 10.0, ASSOC_BFGNN_HEAD_DIRECT},
               {2, ASSOC_BEAM_PROJECT, 1e-3, ASSOC_BFGNN_HEAD_DIRECT},
               {2, ASSOC_BEAM_FULL_POWER, 1.0, ASSOC_BFGNN_HEAD_DIRECT},
               {1, ASSOC_BEAM_PROJECT, 10.0, ASSOC_BFGNN_HEAD_DUALITY},
               {2, ASSOC_BEAM_PROJECT, 1e-3, ASSOC_BFGNN_HEAD_DUALITY},
               {2, ASSOC_BEAM_FULL_POWER, 1.0, ASSOC_BFGNN_HEAD_DUALITY}};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    assoc_bfgnn_config cfg = tiny_bf_config(cases[c].L, cases[c].norm, cases[c].power);
    cfg.head = cases[c].head;
    assoc_bfgnn *m = assoc_bfgnn_new(&cfg, 21 + c);
    ck_assert_ptr_nonnull(m);
    sg_rng r;
    sg_rng_seed(&r, 200 + c);
    beam_inputs in = make_bf_inputs(&r, TB, TM, TK, TN);
    bf_ctx ctx = {m, &in};
    gradcheck_params_and_features(m->trunk.params, assoc_bfgnn_param_count(m), &in, loss_fn, &ctx);
    free_beam_inputs(&in);
    assoc_bfgnn_free(m);
  }
}
END_TEST

/* ---- power, dropped UEs ------------------------------------------------------------- */

/* Projection: <= P; full power: == P (every BS serves a UE here), to 1e-9
 * relative, for budgets below, near and above the untrained beams' power. */
START_TEST(bfgnn_power) {
  sg_rng r;
  sg_rng_seed(&r, 5);
  beam_inputs in = make_bf_inputs(&r, 4, 2, 3, TN);
  const double budgets[] = {1e-3, 0.05, 1.0, 100.0};
  int inside = 0, outside = 0;
  for (int mode = 0; mode < 2; mode++)
    for (int i = 0; i < 4; i++) {
      assoc_bfgnn_config cfg = tiny_bf_config(2, mode, budgets[i]);
      assoc_bfgnn *m = assoc_bfgnn_new(&cfg, 3);
      sg_graph *g = sg_graph_new();
      assoc_complex V = assoc_bfgnn_forward(g, m, in.p, in.q, in.X, in.A);
      ck_assert_ptr_nonnull(V.re);
      check_bs_powers(&in, NULL, V, mode, budgets[i], &inside, &outside);
      sg_graph_free(g);
      assoc_bfgnn_free(m);
    }
  ck_assert(inside > 0 && outside > 0); /* both branches of the projection seen */
  free_beam_inputs(&in);
}
END_TEST

/* A dropped UE gets a zero beam from every BS and a served UE one from its
 * own BS only; the rate equals the direct loops (ref_sum_rate: the dropped
 * UE neither receives nor interferes). */
START_TEST(bfgnn_dropped_ue) {
  sg_rng r;
  sg_rng_seed(&r, 6);
  beam_inputs in = make_bf_inputs(&r, 4, 2, 3, TN);
  for (int mode = 0; mode < 2; mode++) {
    assoc_bfgnn_config cfg = tiny_bf_config(2, mode, 1.0);
    assoc_bfgnn *m = assoc_bfgnn_new(&cfg, 4);
    sg_graph *g = sg_graph_new();
    assoc_complex V = assoc_bfgnn_forward(g, m, in.p, in.q, in.X, in.A);
    sg_tensor *R = assoc_bfgnn_rate(g, in.A, in.G_re, in.G_im, V);
    ck_assert_ptr_nonnull(R);
    int dropped = 0;
    for (int64_t b = 0; b < in.B; b++) {
      for (int64_t mm = 0; mm < in.M; mm++)
        for (int64_t k = 0; k < in.K; k++) {
          bool zero = in.assoc[b * in.K + k] != mm;
          dropped += zero && mm == 0 && in.assoc[b * in.K + k] < 0;
          for (int64_t n = 0; n < in.N; n++) {
            int64_t i = edge_at(&in, b, mm, k, n);
            bool is_zero = sg_get(V.re, i) == 0.0 && sg_get(V.im, i) == 0.0;
            ck_assert_msg(is_zero == zero, "b %lld m %lld k %lld", (long long)b, (long long)mm,
                          (long long)k);
          }
        }
      double want = ref_sum_rate(&in, in.A, V, b);
      ck_assert(want > 0.1);
      ck_assert_double_eq_tol(sg_get(R, b), want, 1e-12 * want);
    }
    ck_assert_int_eq(dropped, 2);
    sg_graph_free(g);
    assoc_bfgnn_free(m);
  }
  free_beam_inputs(&in);
}
END_TEST

/* ---- the duality head ---------------------------------------------------------------- */

/* x = A^{-1} b for a complex n x n system (A overwritten), by Gaussian
 * elimination with partial pivoting in complex double: a reference written
 * apart from sg_solve's real form. */
static void complex_solve(int n, double complex *A, double complex *b) {
  for (int j = 0; j < n; j++) {
    int p = j;
    for (int i = j + 1; i < n; i++)
      if (cabs(A[i * n + j]) > cabs(A[p * n + j])) p = i;
    for (int c = 0; c < n; c++) {
      double complex t = A[j * n + c];
      A[j * n + c] = A[p * n + c], A[p * n + c] = t;
    }
    double complex t = b[j];
    b[j] = b[p], b[p] = t;
    for (int i = j + 1; i < n; i++) {
      double complex f = A[i * n + j] / A[j * n + j];
      for (int c = j; c < n; c++) A[i * n + c] -= f * A[j * n + c];
      b[i] -= f * b[j];
    }
  }
  for (int i = n - 1; i >= 0; i--) {
    for (int c = i + 1; c < n; c++) b[i] -= A[i * n + c] * b[c];
    b[i] /= A[i * n + i];
  }
}

static double complex feature(const beam_inputs *in, int64_t b, int64_t m, int64_t k, int64_t n) {
  int64_t e = ((b * in->M + m) * in->K + k) * 2 * in->N;
  return sg_get(in->X, e + n) + I * sg_get(in->X, e + in->N + n);
}

/* The unit-norm duality beam of UE k at BS m with every weight lambda = 1:
 * u = (I + sum_{l served} conj(x_ml) x_ml^T)^{-1} conj(x_mk), u / |u|. */
static void ref_duality_beam(const beam_inputs *in, int64_t b, int64_t m, int64_t k,
                             double complex *u) {
  int N = (int)in->N;
  double complex S[16 * 16];
  ck_assert(N <= 16);
  for (int r = 0; r < N; r++) {
    for (int c = 0; c < N; c++) {
      S[r * N + c] = r == c;
      for (int64_t l = 0; l < in->K; l++)
        if (in->assoc[b * in->K + l] >= 0)
          S[r * N + c] += conj(feature(in, b, m, l, r)) * feature(in, b, m, l, c);
    }
    u[r] = conj(feature(in, b, m, k, r));
  }
  complex_solve(N, S, u);
  double norm = 0;
  for (int r = 0; r < N; r++) norm += creal(u[r] * conj(u[r]));
  for (int r = 0; r < N; r++) u[r] /= sqrt(norm);
}

/* With the head's last layer zeroed (lambda = w = 1) and a budget above the
 * served count (the projection leaves the beams as they are), every served
 * beam is the reference's unit-norm duality beam, to 1e-12; others are 0. */
START_TEST(bfgnn_duality_beams_match_reference) {
  sg_rng r;
  sg_rng_seed(&r, 31);
  beam_inputs in = make_bf_inputs(&r, 3, 2, 4, 3);
  assoc_bfgnn_config cfg = tiny_bf_config(2, ASSOC_BEAM_PROJECT, 100.0);
  cfg.head = ASSOC_BFGNN_HEAD_DUALITY, cfg.n_antennas = 3;
  assoc_bfgnn *m = assoc_bfgnn_new(&cfg, 8);
  ck_assert_ptr_nonnull(m);
  for (int i = 0; i < 2; i++) {
    sg_tensor *t = sg_params_get(m->trunk.params, i ? "mlp_v.4.bias" : "mlp_v.4.weight");
    ck_assert_ptr_nonnull(t);
    for (int64_t e = 0; e < t->numel; e++) sg_set(t, e, 0);
  }
  sg_graph *g = sg_graph_new();
  assoc_complex V = assoc_bfgnn_forward(g, m, in.p, in.q, in.X, in.A);
  ck_assert_ptr_nonnull(V.re);
  double complex u[16];
  for (int64_t b = 0; b < in.B; b++)
    for (int64_t mm = 0; mm < in.M; mm++)
      for (int64_t k = 0; k < in.K; k++) {
        bool served = in.assoc[b * in.K + k] == mm;
        if (served) ref_duality_beam(&in, b, mm, k, u);
        for (int64_t n = 0; n < in.N; n++) {
          int64_t i = edge_at(&in, b, mm, k, n);
          double complex want = served ? u[n] : 0, got = sg_get(V.re, i) + I * sg_get(V.im, i);
          ck_assert_msg(cabs(got - want) <= 1e-12, "b %lld m %lld k %lld n %lld: %g%+gi vs %g%+gi",
                        (long long)b, (long long)mm, (long long)k, (long long)n, creal(got),
                        cimag(got), creal(want), cimag(want));
        }
      }
  sg_graph_free(g);
  assoc_bfgnn_free(m);
  free_beam_inputs(&in);
}
END_TEST

/* ---- parameter count, misuse -------------------------------------------------------- */

/* The trunk on 2N + 1 edge inputs (count_beam_trunk), the head MLP(d, 2N)
 * (duality head: MLP(d, 2)). */
static int64_t expected_bf_count(const assoc_bfgnn_config *c) {
  int64_t d = c->d, h = c->h, N = c->n_antennas;
  return count_beam_trunk(d, h, c->L, 2 * N + 1) +
         count_mlp(d, h, c->head == ASSOC_BFGNN_HEAD_DUALITY ? 2 : 2 * N);
}

START_TEST(bfgnn_param_count) {
  for (int L = 1; L <= 3; L++)
    for (int N = 1; N <= 4; N += 3) {
      assoc_bfgnn_config cfg = tiny_bf_config(L, ASSOC_BEAM_PROJECT, 1.0);
      cfg.n_antennas = N, cfg.d = 6, cfg.h = 10, cfg.head = (assoc_bfgnn_head)(L == 2);
      assoc_bfgnn *m = assoc_bfgnn_new(&cfg, 1);
      ck_assert_ptr_nonnull(m);
      ck_assert_int_eq(assoc_bfgnn_param_count(m), expected_bf_count(&cfg));
      ck_assert_ptr_nonnull(sg_params_get(m->trunk.params, "mlp_v.4.bias"));
      ck_assert_ptr_null(sg_params_get(m->trunk.params, "mlp_out.0.weight"));
      assoc_bfgnn_free(m);
    }
  assoc_bfgnn_config paper = assoc_bfgnn_config_paper();
  assoc_bfgnn *m = assoc_bfgnn_new(&paper, 1);
  ck_assert_ptr_nonnull(m);
  ck_assert_int_eq(assoc_bfgnn_param_count(m), expected_bf_count(&paper));
  printf("BFGNN paper widths: %lld parameters\n", (long long)assoc_bfgnn_param_count(m));
  assoc_bfgnn_free(m);
}
END_TEST

START_TEST(bfgnn_misuse) {
  sg_rng r;
  sg_rng_seed(&r, 7);
  beam_inputs in = make_bf_inputs(&r, TB, TM, TK, TN);
  assoc_bfgnn_config cfg = tiny_bf_config(1, ASSOC_BEAM_PROJECT, 1.0);
  assoc_bfgnn *m = assoc_bfgnn_new(&cfg, 1);
  sg_graph *g = sg_graph_new();
  sg_test_capture_errors();
  SG_EXPECT_MISUSE(assoc_bfgnn_forward(g, m, in.p, in.q, in.G_re, in.A).re, "assoc_bfgnn_forward",
                   "X [2, 2, 3, 2]", "[B, M, K, 4]");
  cfg.power = 0;
  ck_assert_ptr_null(assoc_bfgnn_new(&cfg, 1));
  ck_assert_str_eq(sg_test_errors.op, "assoc_bfgnn_new");
  /* the duality head solves 2N x 2N systems: N <= SG_SOLVE_MAX_N / 2 */
  cfg.power = 1, cfg.head = ASSOC_BFGNN_HEAD_DUALITY, cfg.n_antennas = SG_SOLVE_MAX_N / 2 + 1;
  sg_test_errors = (sg_test_error_log){0};
  ck_assert_ptr_null(assoc_bfgnn_new(&cfg, 1));
  ck_assert_msg(strstr(sg_test_errors.msg, "N <= 32 (duality head)"), "%s", sg_test_errors.msg);
  cfg.head = (assoc_bfgnn_head)7, cfg.n_antennas = 2;
  ck_assert_ptr_null(assoc_bfgnn_new(&cfg, 1));
  sg_set_error_handler(NULL, NULL);
  sg_graph_free(g);
  assoc_bfgnn_free(m);
  free_beam_inputs(&in);
}
END_TEST

/* ---- batch inputs and units ---------------------------------------------------------- */

/* On a generated data set: the batch's A and features, then MRT beams
 * sqrt(1/N) conj(g)/|g| (per-stream power P_t/N) on the rate channels G:
 * assoc_bfgnn_rate equals assoc_sum_rate on assoc_mrt_couplings (noise 1)
 * and assoc_rate_int of the integer association, in bps/Hz. An overloaded
 * association is refused. */
START_TEST(bfgnn_batch_and_mrt_units) {
  enum { S = 6 };
  assoc_dataset ds = make_data(S, 3); /* M 2, N 2, K 4 */
  int M = ds.M, K = ds.K, N = ds.N;
  int *assoc = malloc((size_t)(S * K) * sizeof *assoc);
  double *gain = malloc((size_t)(M * K * K) * sizeof *gain);
  for (int s = 0; s < S; s++) { /* greedy strongest BS with room; UE 3 of odd samples dropped */
    assoc_coupling_gain(&ds, s, gain);
    int load[2] = {0, 0};
    for (int k = 0; k < K; k++) {
      int best = gain[(0 * K + k) * K + k] >= gain[(1 * K + k) * K + k] ? 0 : 1;
      if (load[best] == N) best = 1 - best;
      assoc[s * K + k] = (s % 2 && k == 3) ? -1 : best;
      if (assoc[s * K + k] >= 0) load[best]++;
    }
  }
  const int64_t idx[3] = {5, 0, 3};
  double scale = assoc_feature_scale(&ds);
  sg_graph *g = sg_graph_new();
  assoc_bfgnn_batch bt;
  ck_assert_int_eq(assoc_bfgnn_batch_make(g, &ds, assoc, idx, 0, 3, scale, SG_F64, &bt), 0);
  assoc_gnn_batch ref;
  ck_assert_int_eq(
      assoc_gnn_batch_make(g, &ds, idx, 0, 3, scale, ASSOC_FEATURES_CHANNEL, SG_F64, true, &ref),
      0);
  for (int64_t i = 0; i < ref.H->numel; i++) ck_assert(sg_get(bt.X, i) == sg_get(ref.H, i));
  for (int64_t i = 0; i < bt.A->numel; i++) {
    int64_t b = i / (K * M), k = i / M % K, m = i % M;
    ck_assert(sg_get(bt.A, i) == (assoc[idx[b] * K + k] == m ? 1.0 : 0.0));
  }
  /* MRT beams on G. */
  sg_tensor *V_re = sg_zeros(g, SG_F64, 4, bt.G_re->shape);
  sg_tensor *V_im = sg_zeros(g, SG_F64, 4, bt.G_re->shape);
  for (int64_t e = 0; e < bt.G_re->numel / N; e++) {
    double n2 = 0;
    for (int n = 0; n < N; n++)
      n2 += pow(sg_get(bt.G_re, e * N + n), 2) + pow(sg_get(bt.G_im, e * N + n), 2);
    double f = n2 > 0 ? sqrt(1.0 / N / n2) : 0;
    for (int n = 0; n < N; n++) {
      sg_set(V_re, e * N + n, f * sg_get(bt.G_re, e * N + n));
      sg_set(V_im, e * N + n, -f * sg_get(bt.G_im, e * N + n));
    }
  }
  sg_tensor *R = assoc_bfgnn_rate(g, bt.A, bt.G_re, bt.G_im, (assoc_complex){V_re, V_im});
  sg_tensor *R_mrt = assoc_sum_rate(g, bt.A, ref.c_re, ref.c_im, 1.0);
  for (int b = 0; b < 3; b++) {
    assoc_coupling_gain(&ds, idx[b], gain);
    double want = assoc_rate_int(gain, M, K, assoc + idx[b] * K, NULL);
    ck_assert(want > 0.5);
    ck_assert_double_eq_tol(sg_get(R, b), sg_get(R_mrt, b), 1e-10 * want);
    ck_assert_double_eq_tol(sg_get(R, b), want, 1e-10 * want);
  }
  /* Overloaded: three UEs on BS 0 with N = 2. */
  for (int k = 0; k < 3; k++) assoc[k] = 0;
  sg_test_capture_errors();
  ck_assert_int_eq(assoc_bfgnn_batch_make(g, &ds, assoc, NULL, 0, 2, scale, SG_F64, &bt), -1);
  sg_set_error_handler(NULL, NULL);
  free(gain), free(assoc);
  sg_graph_free(g);
  assoc_dataset_free(&ds);
}
END_TEST

/* ---- training ------------------------------------------------------------------------ */

/* A load-feasible association of every sample: UE k (in order) goes to
 * its strongest BS (shift 0) or the next one after it (shift 1), else to
 * any BS with room (load < N), else is dropped. */
static int *greedy_assoc(const assoc_dataset *ds, int shift) {
  int M = ds->M, K = ds->K;
  int *assoc = malloc((size_t)(ds->S * K) * sizeof *assoc);
  double *gain = malloc((size_t)(M * K * K) * sizeof *gain);
  for (int64_t s = 0; s < ds->S; s++) {
    assoc_coupling_gain(ds, s, gain);
    int load[ASSOC_MAX_BS] = {0};
    for (int k = 0; k < K; k++) {
      int best = 0;
      for (int m = 1; m < M; m++)
        if (gain[(m * K + k) * K + k] > gain[(best * K + k) * K + k]) best = m;
      int a = -1;
      for (int i = 0; i < M && a < 0; i++)
        if (load[(best + shift + i) % M] < ds->N) a = (best + shift + i) % M;
      assoc[s * K + k] = a;
      if (a >= 0) load[a]++;
    }
  }
  free(gain);
  return assoc;
}

/* A short run (d 16, h 32, 512 samples, 6 epochs) raises the held-out rate
 * of the model's beams well above the untrained model's, and compares it
 * with MRT's on the same associations (printed). */
START_TEST(bfgnn_training_raises_rate) {
  assoc_dataset train = make_data(512, 11), test = make_data(128, 12);
  double scale = assoc_feature_scale(&train);
  int *mix[2] = {greedy_assoc(&train, 0), greedy_assoc(&train, 1)};
  int *held = greedy_assoc(&test, 0);
  assoc_bfgnn_config cfg = tiny_bf_config(2, ASSOC_BEAM_PROJECT, 1.0);
  cfg.d = 16, cfg.h = 32;
  assoc_bfgnn *m = assoc_bfgnn_new(&cfg, 5);
  double before = assoc_bfgnn_mean_rate(m, &test, held, 0, test.S, scale);
  assoc_bfgnn_train_opts o = assoc_bfgnn_train_defaults(scale);
  o.batch = 32, o.epochs = 6, o.lr_min = 1e-4, o.lr_max = 3e-3, o.t0 = 6;
  double train_rate = 0;
  ck_assert_int_eq(assoc_bfgnn_train(m, &train, (const int *const *)mix, 2, &o, &train_rate), 0);
  double after = assoc_bfgnn_mean_rate(m, &test, held, 0, test.S, scale);
  double *gain = malloc((size_t)(test.M * test.K * test.K) * sizeof *gain), mrt = 0;
  for (int64_t s = 0; s < test.S; s++) {
    assoc_coupling_gain(&test, s, gain);
    mrt += assoc_rate_int(gain, test.M, test.K, held + s * test.K, NULL) / (double)test.S;
  }
  printf("BFGNN held-out rate: untrained %.3f, trained %.3f (training %.3f), MRT %.3f bps/Hz\n",
         before, after, train_rate, mrt);
  ck_assert(isfinite(after) && after > 1.5 * before && after > before + 0.5);
  free(gain), free(mix[0]), free(mix[1]), free(held);
  assoc_bfgnn_free(m);
  assoc_dataset_free(&train), assoc_dataset_free(&test);
}
END_TEST

/* ---- fused float32 inference (bfgnn_infer.c) ------------------------------------------- */

/* The float32 values of t (any dtype), caller-owned. */
static float *floats_of(const sg_tensor *t) {
  float *f = malloc((size_t)t->numel * sizeof *f);
  for (int64_t i = 0; i < t->numel; i++) f[i] = (float)sg_get(t, i);
  return f;
}

typedef struct fused_case {
  int d, h, L;
  assoc_bfgnn_head head;
  assoc_beam_norm norm;
} fused_case;

/* A float32 model of c at the paper's shapes (M 2, K 8, N 4), its inputs
 * (float32 values) and the float32 inputs as arrays. */
typedef struct fused_setup {
  assoc_bfgnn *m;
  beam_inputs in;
  float *p, *q, *X, *A;
  assoc_bfgnn_fused_inputs fin;
} fused_setup;

static fused_setup fused_setup_new(const fused_case *c, int64_t B, uint64_t seed) {
  fused_setup st = {0};
  assoc_bfgnn_config cfg = assoc_bfgnn_config_paper();
  cfg.d = c->d, cfg.h = c->h, cfg.L = c->L, cfg.head = c->head, cfg.norm = c->norm;
  st.m = assoc_bfgnn_new(&cfg, seed);
  ck_assert_ptr_nonnull(st.m);
  sg_rng r;
  sg_rng_seed(&r, seed + 100);
  st.in = make_bf_inputs(&r, B, 2, 8, 4); /* BS loads of 4 = N */
  st.p = floats_of(st.in.p), st.q = floats_of(st.in.q), st.X = floats_of(st.in.X);
  st.A = floats_of(st.in.A);
  /* the float64 inputs hold exactly the float32 values */
  sg_tensor *t[] = {st.in.p, st.in.q, st.in.X};
  float *f[] = {st.p, st.q, st.X};
  for (int i = 0; i < 3; i++)
    for (int64_t j = 0; j < t[i]->numel; j++) sg_set(t[i], j, f[i][j]);
  st.fin = (assoc_bfgnn_fused_inputs){
      .B = B, .M = 2, .K = 8, .p = st.p, .q = st.q, .X = st.X, .A = st.A};
  return st;
}

static void fused_setup_free(fused_setup *st) {
  free(st->p), free(st->q), free(st->X), free(st->A);
  free_beam_inputs(&st->in);
  assoc_bfgnn_free(st->m);
}

/* The op-by-op beams of st's weights in dtype dt, as float64 arrays. */
static void op_beams(const fused_setup *st, sg_dtype dt, double *re, double *im) {
  assoc_bfgnn_config c = st->m->cfg;
  c.dtype = dt;
  assoc_bfgnn *m = assoc_bfgnn_new(&c, 0);
  ck_assert_ptr_nonnull(m);
  ck_assert_int_eq(sg_params_copy(m->trunk.params, st->m->trunk.params), 0);
  sg_graph *g = sg_graph_new();
  sg_set_grad_enabled(g, false);
  const beam_inputs *in = &st->in;
  assoc_complex V = assoc_bfgnn_forward(g, m, sg_to_dtype(g, in->p, dt), sg_to_dtype(g, in->q, dt),
                                        sg_to_dtype(g, in->X, dt), sg_to_dtype(g, in->A, dt));
  ck_assert_ptr_nonnull(V.re);
  for (int64_t i = 0; i < V.re->numel; i++) re[i] = sg_get(V.re, i), im[i] = sg_get(V.im, i);
  sg_graph_free(g);
  assoc_bfgnn_free(m);
}

/* max_i |x_i - ref_i| over the beams. */
static double max_diff(int64_t n, const double *re, const double *im, const double *ref_re,
                       const double *ref_im) {
  double e = 0;
  for (int64_t i = 0; i < n; i++) {
    e = fmax(e, fabs(re[i] - ref_re[i]));
    e = fmax(e, fabs(im[i] - ref_im[i]));
  }
  return e;
}

/* The fused beams of st on `threads` threads into float32 arrays. */
static void fused_beams(const fused_setup *st, int threads, float *re, float *im) {
  int was = omp_get_max_threads();
  omp_set_num_threads(threads);
  assoc_bfgnn_fused *f = assoc_bfgnn_fused_new(st->m);
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(assoc_bfgnn_fused_beams(f, &st->fin, re, im), 0);
  assoc_bfgnn_fused_free(f);
  omp_set_num_threads(was);
}

/* The fused float32 beams against the op-by-op float64 forward of the same
 * weights and inputs. The yardstick is the op-by-op float32 forward: both
 * float32 paths round every operation of the same function to float32
 * (unit round-off 6e-8), in different orders (split Linears, the mean
 * before or after the last Linear, Cholesky instead of LU), so each lies
 * within some multiple of 6e-8 times the function's condition of float64;
 * the fused path must be no further than 4 times the op-by-op float32
 * error (measured: 5e-8 to 1.7e-7 on beams of norm up to 1, 0.3-0.45
 * times it with the duality head, whose solve runs in float64, and 2.7-3.1
 * times with the direct head), with a floor of 8 round-offs of the beams'
 * scale (1) for a case where that error is itself tiny. B = 70: four full
 * blocks and a short one. */
START_TEST(bfgnn_fused_matches_forward) {
  const fused_case cases[] = {
      {8, 16, 1, ASSOC_BFGNN_HEAD_DUALITY, ASSOC_BEAM_PROJECT},
      {8, 16, 2, ASSOC_BFGNN_HEAD_DUALITY, ASSOC_BEAM_FULL_POWER},
      {16, 32, 2, ASSOC_BFGNN_HEAD_DUALITY, ASSOC_BEAM_PROJECT},
      {64, 128, 2, ASSOC_BFGNN_HEAD_DUALITY, ASSOC_BEAM_PROJECT},
      {16, 32, 1, ASSOC_BFGNN_HEAD_DIRECT, ASSOC_BEAM_PROJECT},
      {64, 128, 2, ASSOC_BFGNN_HEAD_DIRECT, ASSOC_BEAM_FULL_POWER},
  };
  const int64_t B = 70, n = B * 2 * 8 * 4;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const fused_case *c = &cases[i];
    fused_setup st = fused_setup_new(c, B, 40 + i);
    double *v[6];
    for (int j = 0; j < 6; j++) v[j] = malloc((size_t)n * sizeof(double));
    float *fre = malloc((size_t)n * sizeof(float)), *fim = malloc((size_t)n * sizeof(float));
    op_beams(&st, SG_F64, v[0], v[1]);
    op_beams(&st, SG_F32, v[2], v[3]);
    fused_beams(&st, 2, fre, fim);
    for (int64_t j = 0; j < n; j++) v[4][j] = fre[j], v[5][j] = fim[j];
    double op32 = max_diff(n, v[2], v[3], v[0], v[1]);
    double fused = max_diff(n, v[4], v[5], v[0], v[1]);
    double tol = fmax(4 * op32, 8 * 0x1p-24);
    ck_assert_msg(fused <= tol, "d %d h %d L %d head %d: fused %.3g, op-by-op float32 %.3g", c->d,
                  c->h, c->L, (int)c->head, fused, op32);
    for (int j = 0; j < 6; j++) free(v[j]);
    free(fre), free(fim);
    fused_setup_free(&st);
  }
}
END_TEST

/* The fused beams are bitwise the same on 1 and 2 threads, and a sample's
 * beams do not depend on its batch: the one-sample call gives the bits of
 * that sample in a block of 16. */
START_TEST(bfgnn_fused_threads_and_batches) {
  for (int head = 0; head < 2; head++) {
    fused_case c = {8, 16, 2, head ? ASSOC_BFGNN_HEAD_DUALITY : ASSOC_BFGNN_HEAD_DIRECT,
                    ASSOC_BEAM_PROJECT};
    const int64_t B = 67, n = B * 64;
    fused_setup st = fused_setup_new(&c, B, 7);
    float *v[4];
    for (int j = 0; j < 4; j++) v[j] = malloc((size_t)n * sizeof(float));
    fused_beams(&st, 1, v[0], v[1]);
    fused_beams(&st, 2, v[2], v[3]);
    ck_assert(memcmp(v[0], v[2], (size_t)n * sizeof(float)) == 0);
    ck_assert(memcmp(v[1], v[3], (size_t)n * sizeof(float)) == 0);
    const int64_t b = 20; /* one sample alone */
    assoc_bfgnn_fused_inputs one = {.B = 1,
                                    .M = 2,
                                    .K = 8,
                                    .p = st.p + b * 2,
                                    .q = st.q + b * 8,
                                    .X = st.X + b * 128,
                                    .A = st.A + b * 16};
    assoc_bfgnn_fused *f = assoc_bfgnn_fused_new(st.m);
    ck_assert_int_eq(assoc_bfgnn_fused_beams(f, &one, v[2], v[3]), 0);
    ck_assert(memcmp(v[2], v[0] + b * 64, 64 * sizeof(float)) == 0);
    ck_assert(memcmp(v[3], v[1] + b * 64, 64 * sizeof(float)) == 0);
    assoc_bfgnn_fused_free(f);
    for (int j = 0; j < 4; j++) free(v[j]);
    fused_setup_free(&st);
  }
}
END_TEST

/* The fused inference refuses a NULL model and inputs it cannot run,
 * naming itself and the sizes. */
START_TEST(bfgnn_fused_misuse) {
  fused_case c = {4, 8, 1, ASSOC_BFGNN_HEAD_DUALITY, ASSOC_BEAM_PROJECT};
  fused_setup st = fused_setup_new(&c, 2, 3);
  assoc_bfgnn_fused *f = assoc_bfgnn_fused_new(st.m);
  ck_assert_ptr_nonnull(f);
  float re[128], im[128];
  sg_test_capture_errors();
  ck_assert_ptr_null(assoc_bfgnn_fused_new(NULL));
  ck_assert_str_eq(sg_test_errors.op, "assoc_bfgnn_fused_new");
  assoc_bfgnn_fused_inputs bad = st.fin;
  bad.B = 0;
  ck_assert_int_eq(assoc_bfgnn_fused_beams(f, &bad, re, im), -1);
  ck_assert_str_eq(sg_test_errors.op, "assoc_bfgnn_fused_beams");
  ck_assert_msg(strstr(sg_test_errors.msg, "B 0, M 2, K 8"), "%s", sg_test_errors.msg);
  bad = st.fin, bad.X = NULL;
  ck_assert_int_eq(assoc_bfgnn_fused_beams(f, &bad, re, im), -1);
  ck_assert_int_eq(assoc_bfgnn_fused_beams(f, &st.fin, NULL, im), -1);
  sg_set_error_handler(NULL, NULL);
  ck_assert_int_eq(assoc_bfgnn_fused_beams(f, &st.fin, re, im), 0);
  assoc_bfgnn_fused_free(f);
  fused_setup_free(&st);
}
END_TEST

Suite *suite_bfgnn(void) {
  const sg_test_case cases[] = {
      {"gradcheck_bfgnn", gradcheck_bfgnn},
      {"bfgnn_power", bfgnn_power},
      {"bfgnn_dropped_ue", bfgnn_dropped_ue},
      {"bfgnn_duality_beams_match_reference", bfgnn_duality_beams_match_reference},
      {"bfgnn_param_count", bfgnn_param_count},
      {"bfgnn_misuse", bfgnn_misuse},
      {"bfgnn_batch_and_mrt_units", bfgnn_batch_and_mrt_units},
      {"bfgnn_training_raises_rate", bfgnn_training_raises_rate},
      {"bfgnn_fused_matches_forward", bfgnn_fused_matches_forward},
      {"bfgnn_fused_threads_and_batches", bfgnn_fused_threads_and_batches},
      {"bfgnn_fused_misuse", bfgnn_fused_misuse},
  };
  return sg_test_suite("bfgnn", cases, sizeof cases / sizeof *cases, 300);
}
