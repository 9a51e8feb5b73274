/* Float32 against float64 where it is hard: every model variant's training
 * gradient at the bench's three widths, and single ops on hostile inputs
 * (large means with a small spread, logits of 1e4, Sinkhorn with every
 * column at its cap, long reductions). The float64 gradchecks run at tiny
 * shapes; these run at the shapes the models use. */
#include <stdlib.h>

#include "precision_helpers.h"

/* ---- the models' training gradients ------------------------------------------- */

typedef struct width {
  int d, h;
  int64_t batch;
} width;

/* The bench's widths: small and medium at batch 256, the paper's at 32 (its
 * float64 step at 256 samples would take a minute here). */
static const width WIDTHS[] = {{64, 128, 256}, {128, 256, 256}, {512, 1024, 32}};
static const double MU[2] = {0.25, 0.5}; /* non-zero: the load penalty is differentiated too */

static void check_model(assoc_gnn_variant v, const width *w, bool balanced) {
  assoc_gnn_config cfg = assoc_gnn_config_paper(v);
  cfg.d = w->d, cfg.h = w->h, cfg.sk_balanced = balanced;
  assoc_gnn *m32 = assoc_gnn_new(&cfg, 1);
  cfg.dtype = SG_F64;
  assoc_gnn *m64 = assoc_gnn_new(&cfg, 1);
  ck_assert(m32 && m64);
  assoc_scenario sc = assoc_scenario_default();
  assoc_dataset ds;
  sg_io_error err;
  ck_assert_msg(assoc_generate(&sc, w->batch, &ds, &err) == 0, "%s", err.msg);
  sg_graph *g = sg_graph_new();
  assoc_gnn_batch in;
  ck_assert_int_eq(assoc_gnn_batch_make(g, &ds, NULL, 0, w->batch, assoc_feature_scale(&ds),
                                        cfg.features, SG_F32, true, &in),
                   0);
  sg_rng rng;
  sg_rng_seed(&rng, 1001);
  sg_tensor *noise = sg_rand_gumbel(NULL, &rng, SG_F32, 3, (int64_t[]){w->batch, ds.K, ds.M});
  assoc_precision_report r;
  ck_assert_msg(assoc_gnn_precision_check(m32, m64, &in, noise, MU, 2.0, &r, &err) == 0, "%s",
                err.msg);
  const char *name = assoc_gnn_variant_name(v);
  ck_assert_msg(r.comparable,
                "%s d %d: not comparable (%lld unreplayable zeros, %lld samples "
                "with a Sinkhorn decision near its kink, margin %.3g)",
                name, w->d, (long long)r.unreplayable, (long long)r.sinkhorn_near_kink,
                r.sinkhorn_kink_margin);
  ck_assert_msg(fabs(r.loss32 - r.loss64) <= 1e-6 * fabs(r.loss64), "%s d %d: loss %.9g vs %.9g",
                name, w->d, r.loss32, r.loss64);
  char what[96];
  snprintf(what, sizeof what, "%s d %d", name, w->d);
  check_param_grads(&r, m32->params, m64->params, what);
  assoc_precision_report_free(&r);
  sg_free(noise);
  sg_graph_free(g);
  assoc_dataset_free(&ds);
  assoc_gnn_free(m32);
  assoc_gnn_free(m64);
}

START_TEST(model_gradients_small) {
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) check_model(v, &WIDTHS[0], false);
}
END_TEST

START_TEST(model_gradients_medium) {
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) check_model(v, &WIDTHS[1], false);
}
END_TEST

START_TEST(model_gradients_paper) {
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) check_model(v, &WIDTHS[2], false);
}
END_TEST

/* The balanced Sinkhorn option of the two Sinkhorn variants (medium). */
START_TEST(model_gradients_balanced) {
  check_model(ASSOC_GNN_ATTSKGS, &WIDTHS[1], true);
  check_model(ASSOC_GNN_SKGS, &WIDTHS[1], true);
}
END_TEST

/* ---- single ops on hostile inputs ------------------------------------------------ */

static sg_tensor *normal(sg_rng *r, int ndim, const int64_t *shape, double mean, double sd) {
  sg_tensor *t = sg_rand_normal(NULL, r, SG_F64, ndim, shape, mean, sd);
  sg_set_requires_grad(t, true);
  return t;
}

static void free_all(sg_tensor **t, int n) {
  for (int i = 0; i < n; i++) sg_free(t[i]);
}

static sg_tensor *layer_norm_fn(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n, (void)ctx;
  return sg_layer_norm(g, in[0], in[1], in[2], 1e-5);
}

/* Rows of width d around a large mean: mean / spread up to 1e4, where
 * a float32 mean alone (ulp 1e-3 at 1e4) would shift every row by a tenth
 * of its spread. */
START_TEST(layer_norm_large_mean) {
  static const double cases[][2] = {{100, 1}, {1e3, 1}, {1e4, 1}, {1e4, 0.05}};
  static const int64_t widths[] = {128, 512};
  sg_rng r;
  sg_rng_seed(&r, 11);
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
    for (size_t k = 0; k < 2; k++) {
      int64_t d = widths[k];
      sg_tensor *in[3] = {normal(&r, 2, (int64_t[]){512, d}, cases[c][0], cases[c][1]),
                          normal(&r, 1, &d, 1, 0.1), normal(&r, 1, &d, 0, 0.1)};
      sg_gradcheck_result res = sg_check_f32_grad(layer_norm_fn, in, 3, NULL, 1e-5);
      ck_assert_msg(res.ok, "mean %g sd %g d %lld: %s", cases[c][0], cases[c][1], (long long)d,
                    res.msg);
      free_all(in, 3);
    }
}
END_TEST

typedef sg_tensor *(*axis_op)(sg_graph *, sg_tensor *, int);
static sg_tensor *softmax_at(sg_graph *g, sg_tensor *x, int axis) {
  return sg_softmax(g, x, axis);
}
static sg_tensor *log_softmax_at(sg_graph *g, sg_tensor *x, int axis) {
  return sg_log_softmax(g, x, axis);
}
static sg_tensor *logsumexp_at(sg_graph *g, sg_tensor *x, int axis) {
  return sg_logsumexp(g, x, axis, false);
}

static sg_tensor *axis_fn(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  return (*(axis_op *)ctx)(g, in[0], -1);
}

/* Logits of 1e4 and -1e4 with spreads from 0.1 to 30, over the models'
 * axis of 2 BSs and a 512-wide one. */
START_TEST(softmax_huge_logits) {
  axis_op ops[] = {softmax_at, log_softmax_at, logsumexp_at};
  static const char *names[] = {"softmax", "log_softmax", "logsumexp"};
  static const double cases[][2] = {{1e4, 0.1}, {1e4, 30}, {-1e4, 3}};
  static const int64_t axes[] = {2, 512};
  sg_rng r;
  sg_rng_seed(&r, 12);
  for (int o = 0; o < 3; o++)
    for (int c = 0; c < 3; c++)
      for (int a = 0; a < 2; a++) {
        sg_tensor *x =
            normal(&r, 2, (int64_t[]){4096 / axes[a] * 16, axes[a]}, cases[c][0], cases[c][1]);
        sg_gradcheck_result res = sg_check_f32_grad(axis_fn, &x, 1, &ops[o], 1e-5);
        ck_assert_msg(res.ok, "%s mean %g sd %g axis %lld: %s", names[o], cases[c][0], cases[c][1],
                      (long long)axes[a], res.msg);
        sg_free(x);
      }
}
END_TEST

typedef struct sk_ctx {
  int iters;
  sg_sinkhorn_grad mode;
  sg_sinkhorn_info info;
} sk_ctx;

static sg_tensor *sinkhorn_fn(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  sk_ctx *c = ctx;
  return sg_sinkhorn(g, in[0], 1.0, 4.0, c->iters, 0.0, c->mode, &c->info);
}

/* K = M N (8 UEs on 2 BSs of capacity 4): at the fixed point every column
 * sits exactly at its cap. The implicit gradient does not depend on which
 * side of the cap round-off puts a column; the unrolled one does, so it is
 * compared only where the float32 run decided no column within round-off
 * of the cap (sg_sinkhorn_info.near_kink), and the test asserts that such
 * samples exist at 50 iterations (the hazard it describes). */
START_TEST(sinkhorn_at_capacity) {
  sg_rng r;
  sg_rng_seed(&r, 13);
  sg_tensor *x = normal(&r, 3, (int64_t[]){256, 8, 2}, 0, 2);
  sk_ctx implicit = {50, SG_SINKHORN_IMPLICIT, {0}};
  sg_gradcheck_result res = sg_check_f32_grad(sinkhorn_fn, &x, 1, &implicit, 1e-5);
  ck_assert_msg(res.ok, "implicit, 50 iterations: %s", res.msg);
  sk_ctx unrolled = {10, SG_SINKHORN_UNROLLED, {0}};
  res = sg_check_f32_grad(sinkhorn_fn, &x, 1, &unrolled, 1e-5);
  ck_assert_int_eq(unrolled.info.near_kink, 0);
  ck_assert_msg(res.ok, "unrolled, 10 iterations: %s", res.msg);
  unrolled.iters = 50;
  sg_check_f32_grad(sinkhorn_fn, &x, 1, &unrolled, 1e-5);
  ck_assert_msg(unrolled.info.near_kink > 0, "margin %.3g", unrolled.info.kink_margin);
  sg_free(x);
}
END_TEST

static sg_tensor *sum_all_fn(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n, (void)ctx;
  return sg_sum_all(g, in[0]);
}
static sg_tensor *mean_rows_fn(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n, (void)ctx;
  return sg_mean(g, in[0], 0, false);
}
static sg_tensor *mean_cols_fn(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n, (void)ctx;
  return sg_mean(g, in[0], 1, false);
}

/* Sums of 4M elements with a mean far above their spread: a running float32
 * sum would lose 1e-4 of it. */
START_TEST(long_reductions) {
  sg_check_fn fns[] = {sum_all_fn, mean_rows_fn, mean_cols_fn};
  static const char *names[] = {"sum_all", "mean over 1M rows", "mean over 1M columns"};
  static const int64_t shapes[][2] = {{2048, 2048}, {1 << 20, 4}, {4, 1 << 20}};
  sg_rng r;
  sg_rng_seed(&r, 14);
  for (int f = 0; f < 3; f++) {
    sg_tensor *x = normal(&r, 2, shapes[f], 1, 0.1);
    sg_gradcheck_result res = sg_check_f32_grad(fns[f], &x, 1, NULL, 1e-6);
    ck_assert_msg(res.ok, "%s: %s", names[f], res.msg);
    sg_free(x);
  }
}
END_TEST

Suite *suite_precision(void) {
  Suite *s = suite_create("precision");
  TCase *ops = tcase_create("ops");
  tcase_set_timeout(ops, 300);
  tcase_add_test(ops, layer_norm_large_mean);
  tcase_add_test(ops, softmax_huge_logits);
  tcase_add_test(ops, sinkhorn_at_capacity);
  tcase_add_test(ops, long_reductions);
  suite_add_tcase(s, ops);
  TCase *models = tcase_create("models");
  tcase_set_timeout(models, 900);
  tcase_add_test(models, model_gradients_small);
  tcase_add_test(models, model_gradients_medium);
  tcase_add_test(models, model_gradients_paper);
  tcase_add_test(models, model_gradients_balanced);
  suite_add_tcase(s, models);
  return s;
}
