/* JointGNN (models/gnn/jointgnn.c): float64 gradient checks of the loss
 * through the whole model (softmax and Gumbel-softmax with fixed noise,
 * with and without the load penalty), the rows of A~, the a~^2-weighted
 * per-BS power of the beams, the rate against direct loops, the penalty's
 * switch, the parameter count and misuse. */
#include <complex.h>
#include <stdlib.h>

#include "assoc_gnn.h"
#include "beam_helpers.h"
#include "sg_test.h"

/* ---- tiny inputs ------------------------------------------------------------------ */

enum { TB = 2, TM = 2, TK = 3, TN = 2 };

static assoc_jointgnn_config tiny_config(int L, assoc_beam_norm norm, double power, bool gumbel) {
  return (assoc_jointgnn_config){.d = 4,
                                 .h = 8,
                                 .L = L,
                                 .n_antennas = TN,
                                 .dtype = SG_F64,
                                 .norm = norm,
                                 .power = power,
                                 .gumbel = gumbel,
                                 .tau = 0.7};
}

/* The features, channels and Gumbel noise [B, K, M], from r. */
static beam_inputs make_jg_inputs(sg_rng *r, int64_t B, int64_t M, int64_t K, int64_t N) {
  beam_inputs in = make_beam_inputs(r, B, M, K, N);
  in.noise = sg_rand_gumbel(NULL, r, SG_F64, 3, (int64_t[]){B, K, M});
  return in;
}

/* ---- gradient check ----------------------------------------------------------------- */

typedef struct jg_ctx {
  const assoc_jointgnn *model;
  beam_inputs *in;
  const assoc_jointgnn_penalty *pen;
} jg_ctx;

/* The loss -mean_b R_b(A~, V) (+ the penalty), train mode, fixed noise. */
static sg_tensor *loss_fn(sg_graph *g, sg_tensor *const *inputs, int n, void *ctx) {
  (void)inputs, (void)n;
  jg_ctx *c = ctx;
  beam_inputs *in = c->in;
  assoc_jointgnn_output out =
      assoc_jointgnn_forward(g, c->model, in->p, in->q, in->X, ASSOC_GNN_TRAIN, NULL, in->noise);
  sg_tensor *R = assoc_jointgnn_rate(g, &out, in->G_re, in->G_im);
  return assoc_jointgnn_loss(g, R, &out, c->pen, 5, NULL);
}

/* Every parameter and the features p, q and X, element by element, default
 * tolerances: L 1 and 2, softmax and Gumbel-softmax, projection inside
 * (power 10) and outside (1e-3) the ball, full power, and the penalty on
 * (loads sum_k a~_km against capacity 1 - 0.1). */
START_TEST(gradcheck_jointgnn) {
  const double mu[TM] = {0.3, 0.7};
  const assoc_jointgnn_penalty pen = {.mu = mu, .capacity = 1.0, .delta = 0.1, .start_epoch = 3};
  const struct {
    int L;
    assoc_beam_norm norm;
    double power;
    bool gumbel, penalty;
  } cases[] = {
      {1, ASSOC_BEAM_PROJECT, 10.0, false, false},  {2, ASSOC_BEAM_PROJECT, 1e-3, false, false},
      {2, ASSOC_BEAM_FULL_POWER, 1.0, false, true}, {1, ASSOC_BEAM_PROJECT, 10.0, true, false},
      {2, ASSOC_BEAM_PROJECT, 1e-3, true, true},    {2, ASSOC_BEAM_FULL_POWER, 1.0, true, false}};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    assoc_jointgnn_config cfg =
        tiny_config(cases[c].L, cases[c].norm, cases[c].power, cases[c].gumbel);
    assoc_jointgnn *m = assoc_jointgnn_new(&cfg, 31 + c);
    ck_assert_ptr_nonnull(m);
    sg_rng r;
    sg_rng_seed(&r, 300 + c);
    beam_inputs in = make_jg_inputs(&r, TB, TM, TK, TN);
    jg_ctx ctx = {m, &in, cases[c].penalty ? &pen : NULL};
    gradcheck_params_and_features(m->trunk.params, assoc_jointgnn_param_count(m), &in, loss_fn,
                                  &ctx);
    free_beam_inputs(&in);
    assoc_jointgnn_free(m);
  }
}
END_TEST

/* ---- rows, power ---------------------------------------------------------------------- */

static void check_rows(const beam_inputs *in, const assoc_jointgnn_output *out) {
  for (int64_t row = 0; row < in->B * in->K; row++) {
    double s = 0;
    for (int64_t m = 0; m < in->M; m++) {
      double a = sg_get(out->assoc, row * in->M + m);
      ck_assert(a > 0 && a < 1);
      s += a;
    }
    ck_assert_double_eq_tol(s, 1.0, 1e-12);
  }
}

/* Rows of A~ sum to 1 (softmax; Gumbel in train mode with noise and with
 * the rng; Gumbel in eval mode). Projection: weighted power <= P; full
 * power: == P, to 1e-9 relative, for budgets below, near and above the
 * untrained beams' power. */
START_TEST(jointgnn_rows_and_power) {
  sg_rng r;
  sg_rng_seed(&r, 5);
  beam_inputs in = make_jg_inputs(&r, 4, 3, 5, TN);
  const double budgets[] = {1e-4, 0.01, 1.0, 100.0};
  int inside = 0, outside = 0;
  for (int variant = 0; variant < 4; variant++)
    for (int mode = 0; mode < 2; mode++)
      for (int i = 0; i < 4; i++) {
        assoc_jointgnn_config cfg = tiny_config(2, mode, budgets[i], variant > 0);
        assoc_jointgnn *m = assoc_jointgnn_new(&cfg, 3);
        sg_graph *g = sg_graph_new();
        assoc_gnn_mode am = variant == 3 ? ASSOC_GNN_EVAL : ASSOC_GNN_TRAIN;
        assoc_jointgnn_output out =
            assoc_jointgnn_forward(g, m, in.p, in.q, in.X, am, &r, variant == 1 ? in.noise : NULL);
        ck_assert_ptr_nonnull(out.V.re);
        check_rows(&in, &out);
        check_bs_powers(&in, out.assoc, out.V, mode, budgets[i], &inside, &outside);
        sg_graph_free(g);
        assoc_jointgnn_free(m);
      }
  ck_assert(inside > 0 && outside > 0); /* both branches of the projection seen */
  free_beam_inputs(&in);
}
END_TEST

/* ---- rate, penalty -------------------------------------------------------------------- */

/* The rate equals the direct loops; every beam is non-zero (no hard a_km);
 * the loss is -mean R without a penalty, before epoch T and with mu NULL,
 * and -mean R + sum_m mu_m violation_m from epoch T on. */
START_TEST(jointgnn_rate_and_penalty) {
  sg_rng r;
  sg_rng_seed(&r, 6);
  beam_inputs in = make_jg_inputs(&r, 3, 2, 4, TN);
  assoc_jointgnn_config cfg = tiny_config(2, ASSOC_BEAM_PROJECT, 1.0, false);
  assoc_jointgnn *m = assoc_jointgnn_new(&cfg, 4);
  sg_graph *g = sg_graph_new();
  assoc_jointgnn_output out =
      assoc_jointgnn_forward(g, m, in.p, in.q, in.X, ASSOC_GNN_EVAL, NULL, NULL);
  sg_tensor *R = assoc_jointgnn_rate(g, &out, in.G_re, in.G_im);
  ck_assert_ptr_nonnull(R);
  double mean = 0;
  for (int64_t b = 0; b < in.B; b++) {
    double want = ref_sum_rate(&in, out.assoc, out.V, b);
    ck_assert(want > 0.01);
    ck_assert_double_eq_tol(sg_get(R, b), want, 1e-12 * want);
    mean += want / (double)in.B;
  }
  for (int64_t i = 0; i < out.V.re->numel; i++)
    ck_assert(sg_get(out.V.re, i) != 0.0 || sg_get(out.V.im, i) != 0.0);
  const double mu[2] = {0.5, 2.0};
  assoc_jointgnn_penalty pen = {.mu = mu, .capacity = 1.5, .delta = 0.2, .start_epoch = 4};
  double viol[2] = {-1, -1};
  double plain = sg_get(assoc_jointgnn_loss(g, R, &out, NULL, 9, NULL), 0);
  double before = sg_get(assoc_jointgnn_loss(g, R, &out, &pen, 3, NULL), 0);
  double after = sg_get(assoc_jointgnn_loss(g, R, &out, &pen, 4, viol), 0);
  ck_assert_double_eq_tol(plain, -mean, 1e-12 * mean);
  ck_assert(before == plain);
  ck_assert(viol[0] > 0 && viol[1] >= 0); /* loads 2 on average against 1.3 */
  ck_assert_double_eq_tol(after, plain + mu[0] * viol[0] + mu[1] * viol[1], 1e-12 * mean);
  pen.mu = NULL;
  ck_assert(sg_get(assoc_jointgnn_loss(g, R, &out, &pen, 9, NULL), 0) == plain);
  sg_graph_free(g);
  assoc_jointgnn_free(m);
  free_beam_inputs(&in);
}
END_TEST

/* ---- parameter count, misuse -------------------------------------------------------- */

/* The trunk on 2N edge inputs (count_beam_trunk), the heads MLP(d, 1)
 * and MLP(d, 2N). */
static int64_t expected_count(const assoc_jointgnn_config *c) {
  int64_t d = c->d, h = c->h, N = c->n_antennas;
  return count_beam_trunk(d, h, c->L, 2 * N) + count_mlp(d, h, 1) + count_mlp(d, h, 2 * N);
}

START_TEST(jointgnn_param_count) {
  for (int L = 1; L <= 3; L++)
    for (int N = 1; N <= 4; N += 3) {
      assoc_jointgnn_config cfg = tiny_config(L, ASSOC_BEAM_PROJECT, 1.0, L == 2);
      cfg.n_antennas = N, cfg.d = 6, cfg.h = 10;
      assoc_jointgnn *m = assoc_jointgnn_new(&cfg, 1);
      ck_assert_ptr_nonnull(m);
      ck_assert_int_eq(assoc_jointgnn_param_count(m), expected_count(&cfg));
      ck_assert_ptr_nonnull(sg_params_get(m->trunk.params, "mlp_a.4.bias"));
      ck_assert_ptr_nonnull(sg_params_get(m->trunk.params, "mlp_v.4.bias"));
      ck_assert_ptr_null(sg_params_get(m->trunk.params, "mlp_out.0.weight"));
      assoc_jointgnn_free(m);
    }
  assoc_jointgnn_config paper = assoc_jointgnn_config_paper();
  assoc_jointgnn *m = assoc_jointgnn_new(&paper, 1);
  ck_assert_ptr_nonnull(m);
  int64_t n = assoc_jointgnn_param_count(m);
  int64_t dead = 4 * count_mlp(2 * paper.d, paper.h, paper.d); /* layer L's node updates */
  ck_assert_int_eq(n, expected_count(&paper));
  ck_assert_int_eq(n + dead, 35184137); /* the spec's rendering builds them */
  printf("JointGNN paper widths: %lld parameters (+ %lld of layer L's unbuilt node updates = "
         "%lld, the spec's rendering 35,184,137; the paper 54.60 M)\n",
         (long long)n, (long long)dead, (long long)(n + dead));
  assoc_jointgnn_free(m);
}
END_TEST

START_TEST(jointgnn_misuse) {
  sg_rng r;
  sg_rng_seed(&r, 7);
  beam_inputs in = make_jg_inputs(&r, TB, TM, TK, TN);
  assoc_jointgnn_config cfg = tiny_config(1, ASSOC_BEAM_PROJECT, 1.0, true);
  assoc_jointgnn *m = assoc_jointgnn_new(&cfg, 1);
  sg_graph *g = sg_graph_new();
  sg_test_capture_errors();
  sg_tensor *bad = in.G_re; /* [B, M, K, N], not [B, M, K, 2N] */
  const assoc_gnn_mode ev = ASSOC_GNN_EVAL, tr = ASSOC_GNN_TRAIN;
  SG_EXPECT_MISUSE(assoc_jointgnn_forward(g, m, in.p, in.q, bad, ev, NULL, NULL).assoc,
                   "assoc_jointgnn_forward", "X [2, 2, 3, 2]", "[B, M, K, 4]");
  SG_EXPECT_MISUSE(assoc_jointgnn_forward(g, m, in.p, in.q, in.X, tr, NULL, NULL).assoc,
                   "assoc_jointgnn_forward", "Gumbel", "an rng");
  cfg.tau = 0;
  ck_assert_ptr_null(assoc_jointgnn_new(&cfg, 1));
  cfg.tau = 1, cfg.power = -1;
  ck_assert_ptr_null(assoc_jointgnn_new(&cfg, 1));
  sg_set_error_handler(NULL, NULL);
  sg_graph_free(g);
  assoc_jointgnn_free(m);
  free_beam_inputs(&in);
}
END_TEST

Suite *suite_jointgnn(void) {
  const sg_test_case cases[] = {
      {"gradcheck_jointgnn", gradcheck_jointgnn},
      {"jointgnn_rows_and_power", jointgnn_rows_and_power},
      {"jointgnn_rate_and_penalty", jointgnn_rate_and_penalty},
      {"jointgnn_param_count", jointgnn_param_count},
      {"jointgnn_misuse", jointgnn_misuse},
  };
  return sg_test_suite("jointgnn", cases, sizeof cases / sizeof *cases, 300);
}
