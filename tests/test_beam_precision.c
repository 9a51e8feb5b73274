/* Float32 against float64 for the beam models, BFGNN and JointGNN, as
 * tests/test_precision.c does for the association GNNs: the same weights
 * in both dtypes, one batch of the paper scenario at the shapes the models
 * use (B 64, M 2, K 8, N 4), the float64 run replaying the float32 run's
 * ReLU decisions (assoc_precision_compare), and the forward outputs (beams,
 * A~, rate; also of float32 inference, gradients off), the loss and every
 * parameter's gradient compared. */
#include <stdlib.h>

#include "precision_helpers.h"

/* ---- tolerances ----------------------------------------------------------------------- */

/* Float32 rounds each operation by at most u = 2^-24 = 6e-8. A value of
 * the forward has passed through about D = 20 Linear layers (the three of
 * each of the pre-processing MLP, two update layers of an edge MLP fed by
 * node MLPs, the head), each a reduction over n <= 3d or h terms whose
 * error grows like sqrt(n) u (random signs, blocked sums) plus ReLUs and
 * the normalisation; relative errors add along the depth: D sqrt(n) u =
 * 20 * 40 * 6e-8 = 5e-5 at the paper widths (n up to 1536), 2e-5 at d 64
 * (n <= 192). The backward doubles the depth and the gradient of one
 * parameter tensor is a sum over 64 samples and 1024 edges of terms that
 * cancel (the rate of a UE pulls on both BSs' beams), so the per-tensor
 * error is relative to the larger terms it cancelled. Hence, as in
 * tests/test_precision.c: forward outputs (relative L2) and the loss
 * 1e-5, the whole gradient vector 1e-4, each parameter tensor 1e-3 of its
 * own norm plus 1e-5 of the whole vector's. Measured (printed by each
 * case): outputs 1e-7..5e-7, loss <= 8e-7, whole gradient 2e-7..7e-7,
 * every tensor within 0.4% of its allowance; 5 (BFGNN) and 2 (JointGNN)
 * ReLU decisions replayed at the paper widths, none at d 64. */
static const double OUT_RTOL = 1e-5; /* the gradients': precision_helpers.h */

/* ---- inputs ------------------------------------------------------------------------- */

enum { B = 64 };

/* One batch of the paper scenario (M 2, K 8, N 4): BFGNN inputs in float32
 * and their float64 copies. The association is MaxSINR-capped with UE
 * b % K dropped in every fourth sample (zero rows). */
typedef struct batch_pair {
  assoc_dataset ds;
  sg_graph *g;
  assoc_bfgnn_batch in[2]; /* float32, float64 (same values) */
  int *assoc;
} batch_pair;

static sg_tensor *to64(sg_graph *g, const sg_tensor *t) {
  return sg_to_dtype(g, t, SG_F64);
}

static batch_pair make_batch(void) {
  batch_pair bp = {0};
  assoc_scenario sc = assoc_scenario_default();
  sc.seed = 17;
  sg_io_error err;
  ck_assert_msg(assoc_generate(&sc, B, &bp.ds, &err) == 0, "%s", err.msg);
  int K = bp.ds.K;
  bp.assoc = malloc((size_t)(B * K) * sizeof *bp.assoc);
  assoc_baseline_opts o = assoc_baseline_defaults();
  double rate[B], ms;
  ck_assert_msg(assoc_run_method(&bp.ds, ASSOC_MAXSINR_CAPPED, &o, bp.assoc, rate, &ms, NULL, NULL,
                                 &err) == 0,
                "%s", err.msg);
  for (int b = 0; b < B; b += 4) bp.assoc[b * K + b % K] = -1;
  bp.g = sg_graph_new();
  ck_assert_int_eq(assoc_bfgnn_batch_make(bp.g, &bp.ds, bp.assoc, NULL, 0, B,
                                          assoc_feature_scale(&bp.ds), SG_F32, &bp.in[0]),
                   0);
  const assoc_bfgnn_batch *s = &bp.in[0];
  /* The float32 inputs are the float64 ones rounded once (computed in
   * double, docs/design.md "Dtypes"): the data preparation's float32 path. */
  assoc_bfgnn_batch d;
  ck_assert_int_eq(assoc_bfgnn_batch_make(bp.g, &bp.ds, bp.assoc, NULL, 0, B,
                                          assoc_feature_scale(&bp.ds), SG_F64, &d),
                   0);
  const sg_tensor *pairs[][2] = {{s->p, d.p}, {s->q, d.q},       {s->X, d.X},
                                 {s->A, d.A}, {s->G_re, d.G_re}, {s->G_im, d.G_im}};
  for (size_t t = 0; t < sizeof pairs / sizeof *pairs; t++)
    for (int64_t j = 0; j < pairs[t][1]->numel; j++)
      ck_assert_msg(sg_f32(pairs[t][0])[j] == (float)sg_f64(pairs[t][1])[j],
                    "input %zu [%lld]: float32 %.9g, float64 %.17g", t, (long long)j,
                    sg_f32(pairs[t][0])[j], sg_f64(pairs[t][1])[j]);
  bp.in[1] = (assoc_bfgnn_batch){B,
                                 to64(bp.g, s->p),
                                 to64(bp.g, s->q),
                                 to64(bp.g, s->X),
                                 to64(bp.g, s->A),
                                 to64(bp.g, s->G_re),
                                 to64(bp.g, s->G_im)};
  return bp;
}

static void free_batch(batch_pair *bp) {
  sg_graph_free(bp->g);
  free(bp->assoc);
  assoc_dataset_free(&bp->ds);
}

/* ---- one run per dtype ---------------------------------------------------------------- */

enum { OUT_RE, OUT_IM, OUT_RATE, OUT_ASSOC, NOUT };
static const char *const OUT_NAMES[NOUT] = {"beams (re)", "beams (im)", "rate", "A~"};

/* What a run needs and keeps: the models and inputs of both dtypes, and
 * each run's forward outputs as caller-owned float64 copies. */
typedef struct beam_run {
  assoc_bfgnn *bf[2];
  assoc_jointgnn *jg[2];
  const batch_pair *bp;
  sg_tensor *noise[2]; /* JointGNN's Gumbel sample, or NULL */
  sg_tensor *out[2][NOUT];
} beam_run;

static const double MU[2] = {0.25, 0.5};

/* The forward of model i (0 float32, 1 float64) on its inputs in g; the
 * outputs (beams, rate, A~ or NULL) as caller-owned float64 copies in out;
 * returns the loss. */
static sg_tensor *model_forward(beam_run *c, int i, sg_graph *g, sg_tensor **out) {
  const assoc_bfgnn_batch *in = &c->bp->in[i];
  sg_tensor *loss, *assoc = NULL, *R;
  assoc_complex V;
  if (c->bf[i]) {
    V = assoc_bfgnn_forward(g, c->bf[i], in->p, in->q, in->X, in->A);
    R = assoc_bfgnn_rate(g, in->A, in->G_re, in->G_im, V);
    loss = sg_neg(g, sg_mean_all(g, R));
  } else {
    assoc_jointgnn_output o = assoc_jointgnn_forward(g, c->jg[i], in->p, in->q, in->X,
                                                     ASSOC_GNN_TRAIN, NULL, c->noise[i]);
    const assoc_jointgnn_penalty pen = {.mu = MU, .capacity = 4, .delta = 0.5, .start_epoch = 1};
    V = o.V, assoc = o.assoc;
    R = assoc_jointgnn_rate(g, &o, in->G_re, in->G_im);
    loss = assoc_jointgnn_loss(g, R, &o, &pen, 1, NULL);
  }
  ck_assert_ptr_nonnull(loss);
  sg_tensor *keep[NOUT] = {V.re, V.im, R, assoc};
  for (int k = 0; k < NOUT; k++) out[k] = keep[k] ? sg_to_dtype(NULL, keep[k], SG_F64) : NULL;
  return loss;
}

/* The loss of BFGNN (-mean R) or JointGNN (-mean R plus the load penalty,
 * on from epoch 1, so its ReLU is differentiated too), gradient left in
 * the parameters, the outputs in c->out[dtype]. */
static double run_model(void *ctx, sg_dtype dt, sg_observer observer, void *obs_ctx) {
  beam_run *c = ctx;
  int i = dt == SG_F64;
  sg_params *ps = c->bf[i] ? c->bf[i]->trunk.params : c->jg[i]->trunk.params;
  sg_params_zero_grad(sg_params_tensors(ps), sg_params_count(ps));
  sg_graph *g = sg_graph_new();
  sg_graph_set_observer(g, observer, obs_ctx);
  sg_tensor *loss = model_forward(c, i, g, c->out[i]);
  double v = sg_get(loss, 0);
  sg_backward(g, loss);
  sg_graph_free(g);
  return v;
}

static double rel_l2(const sg_tensor *a, const sg_tensor *b) {
  double num = 0, den = 0;
  for (int64_t j = 0; j < b->numel; j++) {
    double d = sg_get(a, j) - sg_get(b, j);
    num += d * d, den += sg_get(b, j) * sg_get(b, j);
  }
  return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
}

/* Runs the comparison on c (models set) and checks every tolerance. */
static void compare(beam_run *c, sg_params *p32, sg_params *p64, const char *name) {
  assoc_precision_report r;
  sg_io_error err;
  ck_assert_msg(assoc_precision_compare(run_model, c, p32, p64, &r, &err) == 0, "%s", err.msg);
  ck_assert_msg(r.comparable, "%s: not comparable (%lld unreplayable zeros)", name,
                (long long)r.unreplayable);
  double worst_out = 0;
  for (int k = 0; k < NOUT; k++) {
    if (!c->out[1][k]) continue;
    double e = rel_l2(c->out[0][k], c->out[1][k]);
    worst_out = fmax(worst_out, e);
    ck_assert_msg(e <= OUT_RTOL, "%s: %s %.3g from float64", name, OUT_NAMES[k], e);
  }
  /* Inference (gradients off: fused layers, activations released early)
   * in float32 against the float64 training forward. A ReLU that decides
   * differently changes an output by no more than its round-off-sized
   * input, so no replay is needed here. */
  sg_tensor *infer[NOUT];
  sg_graph *g = sg_graph_new();
  sg_set_grad_enabled(g, false);
  model_forward(c, 0, g, infer);
  sg_graph_free(g);
  for (int k = 0; k < NOUT; k++) {
    if (!infer[k]) continue;
    double e = rel_l2(infer[k], c->out[1][k]);
    worst_out = fmax(worst_out, e);
    ck_assert_msg(e <= OUT_RTOL, "%s: inference %s %.3g from float64", name, OUT_NAMES[k], e);
    sg_free(infer[k]);
  }
  double loss_rel = fabs(r.loss32 - r.loss64) / fabs(r.loss64);
  ck_assert_msg(loss_rel <= OUT_RTOL, "%s: loss %.9g vs %.9g", name, r.loss32, r.loss64);
  double worst_param = check_param_grads(&r, p32, p64, name);
  printf("%s: outputs %.3g, loss %.3g, gradient %.3g, worst parameter %.3g of its allowance "
         "(%s), %lld ReLU decisions replayed\n",
         name, worst_out, loss_rel, r.grad_rel, worst_param, sg_params_name(p32, r.worst_param),
         (long long)r.relu_flips);
  assoc_precision_report_free(&r);
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < NOUT; k++) sg_free(c->out[i][k]), c->out[i][k] = NULL;
}

/* ---- the models ------------------------------------------------------------------------ */

static const char *norm_name(assoc_beam_norm norm) {
  return norm == ASSOC_BEAM_PROJECT ? "projection" : "full power";
}

/* compare() of c's float32 and float64 models (BFGNN or JointGNN, the same
 * weights) on a fresh batch, with a fixed Gumbel sample when gumbel; then
 * frees them. */
static void check_models(beam_run *c, const char *name, bool gumbel) {
  ck_assert((c->bf[0] && c->bf[1]) || (c->jg[0] && c->jg[1]));
  batch_pair bp = make_batch();
  c->bp = &bp;
  if (gumbel) {
    sg_rng rng;
    sg_rng_seed(&rng, 1001);
    c->noise[0] = sg_rand_gumbel(NULL, &rng, SG_F32, 3, (int64_t[]){B, bp.ds.K, bp.ds.M});
    c->noise[1] = sg_to_dtype(NULL, c->noise[0], SG_F64);
  }
  sg_params *p[2];
  for (int i = 0; i < 2; i++) p[i] = c->bf[i] ? c->bf[i]->trunk.params : c->jg[i]->trunk.params;
  compare(c, p[0], p[1], name);
  for (int i = 0; i < 2; i++) {
    sg_free(c->noise[i]);
    assoc_bfgnn_free(c->bf[i]), assoc_jointgnn_free(c->jg[i]);
  }
  free_batch(&bp);
}

/* The model of the paper configuration with these settings, seed 1 (the
 * same weights in both dtypes). */
static assoc_bfgnn *new_bfgnn(int d, int h, assoc_beam_norm norm, assoc_bfgnn_head head,
                              sg_dtype dt) {
  assoc_bfgnn_config cfg = assoc_bfgnn_config_paper();
  cfg.d = d, cfg.h = h, cfg.norm = norm, cfg.head = head, cfg.dtype = dt;
  return assoc_bfgnn_new(&cfg, 1);
}

static assoc_jointgnn *new_jointgnn(int d, int h, assoc_beam_norm norm, bool gumbel, sg_dtype dt) {
  assoc_jointgnn_config cfg = assoc_jointgnn_config_paper();
  cfg.d = d, cfg.h = h, cfg.norm = norm, cfg.gumbel = gumbel, cfg.dtype = dt;
  return assoc_jointgnn_new(&cfg, 1);
}

static void check_bfgnn(int d, int h, assoc_beam_norm norm, assoc_bfgnn_head head) {
  beam_run c = {.bf = {new_bfgnn(d, h, norm, head, SG_F32), new_bfgnn(d, h, norm, head, SG_F64)}};
  char name[96];
  snprintf(name, sizeof name, "BFGNN d %d h %d %s, %s head", d, h, norm_name(norm),
           head == ASSOC_BFGNN_HEAD_DUALITY ? "duality" : "direct");
  check_models(&c, name, false);
}

static void check_jointgnn(int d, int h, assoc_beam_norm norm, bool gumbel) {
  beam_run c = {
      .jg = {new_jointgnn(d, h, norm, gumbel, SG_F32), new_jointgnn(d, h, norm, gumbel, SG_F64)}};
  char name[96];
  snprintf(name, sizeof name, "JointGNN d %d h %d %s %s", d, h, norm_name(norm),
           gumbel ? "Gumbel-softmax" : "softmax");
  check_models(&c, name, gumbel);
}

/* The training widths d 64, h 128: both normalisations; BFGNN's duality
 * head also at its own training width d 16, h 32 (its 2N x 2N solves run
 * in double for both dtypes, from float32 and float64 matrices); JointGNN
 * with softmax and with Gumbel-softmax (fixed noise). */
START_TEST(bfgnn_small) {
  check_bfgnn(64, 128, ASSOC_BEAM_PROJECT, ASSOC_BFGNN_HEAD_DIRECT);
  check_bfgnn(64, 128, ASSOC_BEAM_FULL_POWER, ASSOC_BFGNN_HEAD_DIRECT);
  check_bfgnn(64, 128, ASSOC_BEAM_PROJECT, ASSOC_BFGNN_HEAD_DUALITY);
  check_bfgnn(16, 32, ASSOC_BEAM_FULL_POWER, ASSOC_BFGNN_HEAD_DUALITY);
}
END_TEST

START_TEST(jointgnn_small) {
  check_jointgnn(64, 128, ASSOC_BEAM_PROJECT, false);
  check_jointgnn(64, 128, ASSOC_BEAM_FULL_POWER, false);
  check_jointgnn(64, 128, ASSOC_BEAM_PROJECT, true);
}
END_TEST

/* The paper widths d 512, h 1024, defaults (projection, softmax). */
START_TEST(bfgnn_paper) {
  check_bfgnn(512, 1024, ASSOC_BEAM_PROJECT, ASSOC_BFGNN_HEAD_DIRECT);
}
END_TEST

START_TEST(jointgnn_paper) {
  check_jointgnn(512, 1024, ASSOC_BEAM_PROJECT, false);
}
END_TEST

Suite *suite_beam_precision(void) {
  const sg_test_case cases[] = {
      {"bfgnn_small", bfgnn_small},
      {"jointgnn_small", jointgnn_small},
      {"bfgnn_paper", bfgnn_paper},
      {"jointgnn_paper", jointgnn_paper},
  };
  return sg_test_suite("beam_precision", cases, sizeof cases / sizeof *cases, 300);
}
