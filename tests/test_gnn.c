/* The four association GNNs (models/gnn/assoc_gnn.h): gradient checks,
 * permutation equivariance, sizes, noise modes, post-processing, misuse,
 * parameter counts and the float32 forward. */
#include <complex.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "assoc_gnn.h"
#include "assoc_wireless.h"
#include "gnn_helpers.h"
#include "sg_test.h"

/* ---- helpers ----------------------------------------------------------------- */

/* out[.., i, ..] = in[.., perm[i], ..] along axis; caller-owned. */
static sg_tensor *permute_axis(const sg_tensor *t, int axis, const int *perm) {
  sg_tensor *out = sg_clone(NULL, t);
  int64_t outer = 1, inner = 1, n = t->shape[axis];
  for (int a = 0; a < axis; a++) outer *= t->shape[a];
  for (int a = axis + 1; a < t->ndim; a++) inner *= t->shape[a];
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < inner; j++)
        sg_set(out, (o * n + i) * inner + j, sg_get(t, (o * n + perm[i]) * inner + j));
  return out;
}

/* Flattened logits followed by flattened A~: one output checks both. */
static sg_tensor *both_outputs(sg_graph *g, assoc_gnn_output o) {
  if (!o.logits || !o.assoc) return NULL;
  sg_tensor *parts[2] = {sg_reshape(g, o.logits, 1, (int64_t[]){-1}),
                         sg_reshape(g, o.assoc, 1, (int64_t[]){-1})};
  return sg_concat(g, 2, parts, 0);
}

typedef struct gnn_ctx {
  const assoc_gnn *model;
  gnn_inputs in;
  assoc_gnn_mode mode;
} gnn_ctx;

/* The check function ignores its inputs array: it holds the model's own
 * parameter tensors and the feature tensors, which gradcheck perturbs in
 * place. The Gumbel noise is fixed, so the function is deterministic. */
static sg_tensor *gnn_fn(sg_graph *g, sg_tensor *const *inputs, int n, void *ctx) {
  (void)inputs, (void)n;
  gnn_ctx *c = ctx;
  return both_outputs(
      g, assoc_gnn_forward(g, c->model, c->in.p, c->in.q, c->in.H, c->mode, NULL, c->in.noise));
}

/* Every parameter plus the three feature tensors, all requiring a gradient. */
static sg_tensor **check_inputs(const assoc_gnn *m, gnn_inputs *in, int *n) {
  int np = sg_params_count(m->params);
  sg_tensor **list = malloc((size_t)(np + 3) * sizeof *list);
  for (int i = 0; i < np; i++) list[i] = sg_params_at(m->params, i);
  list[np] = in->p, list[np + 1] = in->q, list[np + 2] = in->H;
  for (int i = np; i < np + 3; i++) sg_set_requires_grad(list[i], true);
  *n = np + 3;
  return list;
}

/* Element-by-element float64 gradient check of the whole model (every
 * parameter and every input feature, about 1,100 elements, so the random
 * projection mode is not needed) at the tiny width, with the default
 * tolerances (atol 1e-7, rtol 1e-6) and eps 1e-6. The output checked is
 * Ahat and A~ together (A~ alone is blind to a shift of a logit row). */
static void gradcheck_variant(assoc_gnn_variant v, bool concat_inputs) {
  assoc_gnn_config cfg = tiny_config(v);
  cfg.concat_inputs = concat_inputs;
  assoc_gnn *m = assoc_gnn_new(&cfg, 11 + v);
  ck_assert_ptr_nonnull(m);
  sg_rng r;
  sg_rng_seed(&r, 100 + v);
  gnn_ctx ctx = {m, make_inputs(&r, SG_F64, 2, 2, 3, cfg.fe), ASSOC_GNN_TRAIN};
  if (v == ASSOC_GNN_ATTSKGS || v == ASSOC_GNN_SKGS) {
    /* The inputs make the capacity bind (a column above N after T
     * iterations), so the check goes through the capped branch. */
    sg_graph *g = sg_graph_new();
    assoc_gnn_output o =
        assoc_gnn_forward(g, m, ctx.in.p, ctx.in.q, ctx.in.H, ASSOC_GNN_TRAIN, NULL, ctx.in.noise);
    ck_assert_msg(o.sinkhorn.col_excess > 1e-3, "cap not binding: %g", o.sinkhorn.col_excess);
    sg_graph_free(g);
  }
  int n;
  sg_tensor **list = check_inputs(m, &ctx.in, &n);
  sg_gradcheck_result res = sg_gradcheck(gnn_fn, list, n, &ctx, NULL);
  SG_ASSERT_CHECK(res);
  ck_assert_int_eq(res.checked, assoc_gnn_param_count(m) + 2 * 2 + 2 * 3 + 2 * 2 * 3 * cfg.fe);
  free(list);
  free_inputs(&ctx.in);
  assoc_gnn_free(m);
}

/* The balanced Sinkhorn option (assoc_gnn_config.sk_balanced) at K = 3 < M N
 * = 4 (one slack row) and K = M N = 4, through the whole model; at K = 4
 * every BS ends with its N = 2 UEs' worth of load (the columns of A~ sum to
 * N once converged), at K = 3 none exceeds N. */
START_TEST(gradcheck_gnn_balanced) {
  for (int64_t K = 3; K <= 4; K++) {
    assoc_gnn_config cfg = tiny_config(ASSOC_GNN_SKGS);
    cfg.sk_balanced = true;
    assoc_gnn *m = assoc_gnn_new(&cfg, 21);
    sg_rng r;
    sg_rng_seed(&r, 200 + K);
    gnn_ctx ctx = {m, make_inputs(&r, SG_F64, 2, 2, K, cfg.fe), ASSOC_GNN_TRAIN};
    int n;
    sg_tensor **list = check_inputs(m, &ctx.in, &n);
    SG_ASSERT_CHECK(sg_gradcheck(gnn_fn, list, n, &ctx, NULL));
    cfg.sk_iters = 300;
    assoc_gnn *conv = assoc_gnn_new(&cfg, 21);
    sg_graph *g = sg_graph_new();
    assoc_gnn_output o = assoc_gnn_forward(g, conv, ctx.in.p, ctx.in.q, ctx.in.H, ASSOC_GNN_TRAIN,
                                           NULL, ctx.in.noise);
    for (int64_t b = 0; b < 2; b++)
      for (int64_t mm = 0; mm < 2; mm++) {
        double load = 0;
        for (int64_t k = 0; k < K; k++) load += sg_get(o.assoc, (b * K + k) * 2 + mm);
        if (K == 4) ck_assert_double_eq_tol(load, 2.0, 1e-9);
        ck_assert_double_le(load, 2.0 + 1e-9);
      }
    sg_graph_free(g);
    free(list);
    free_inputs(&ctx.in);
    assoc_gnn_free(m);
    assoc_gnn_free(conv);
  }
}
END_TEST

/* ---- the GNN ------------------------------------------------------------------- */

START_TEST(gradcheck_gnn_attskgs) {
  gradcheck_variant(ASSOC_GNN_ATTSKGS, false);
}
END_TEST
START_TEST(gradcheck_gnn_skgs) {
  gradcheck_variant(ASSOC_GNN_SKGS, false);
}
END_TEST
START_TEST(gradcheck_gnn_gs) {
  gradcheck_variant(ASSOC_GNN_GS, false);
}
END_TEST
START_TEST(gradcheck_gnn_sma) {
  gradcheck_variant(ASSOC_GNN_SMA, false);
}
END_TEST
/* The reference path that materialises every concatenation. */
START_TEST(gradcheck_gnn_concat_path) {
  gradcheck_variant(ASSOC_GNN_ATTSKGS, true);
  gradcheck_variant(ASSOC_GNN_SKGS, true);
}
END_TEST

/* Split first Linear and materialised concatenation: same parameters, same
 * outputs and gradients up to rounding. */
START_TEST(gnn_split_matches_concat) {
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) {
    assoc_gnn_config cfg = tiny_config(v);
    assoc_gnn *a = assoc_gnn_new(&cfg, 7);
    cfg.concat_inputs = true;
    assoc_gnn *b = assoc_gnn_new(&cfg, 7);
    ck_assert_int_eq(assoc_gnn_param_count(a), assoc_gnn_param_count(b));
    sg_rng r;
    sg_rng_seed(&r, 8);
    gnn_inputs in = make_inputs(&r, SG_F64, 3, 3, 5, cfg.fe);
    /* Backward consumes the tape: one graph per model. */
    sg_graph *g = sg_graph_new(), *h = sg_graph_new();
    assoc_gnn_output oa =
        assoc_gnn_forward(g, a, in.p, in.q, in.H, ASSOC_GNN_TRAIN, NULL, in.noise);
    assoc_gnn_output ob =
        assoc_gnn_forward(h, b, in.p, in.q, in.H, ASSOC_GNN_TRAIN, NULL, in.noise);
    for (int64_t i = 0; i < oa.assoc->numel; i++) {
      ck_assert_double_eq_tol(sg_get(oa.logits, i), sg_get(ob.logits, i), 1e-12);
      ck_assert_double_eq_tol(sg_get(oa.assoc, i), sg_get(ob.assoc, i), 1e-12);
    }
    sg_backward(g, sg_sum_all(g, sg_mul(g, oa.assoc, in.noise)));
    sg_backward(h, sg_sum_all(h, sg_mul(h, ob.assoc, in.noise)));
    for (int i = 0; i < sg_params_count(a->params); i++) {
      sg_tensor *ga = sg_params_at(a->params, i)->grad, *gb = sg_params_at(b->params, i)->grad;
      ck_assert_str_eq(sg_params_name(a->params, i), sg_params_name(b->params, i));
      ck_assert(ga && gb);
      for (int64_t j = 0; j < ga->numel; j++)
        ck_assert_double_eq_tol(sg_get(ga, j), sg_get(gb, j), 1e-12);
    }
    sg_graph_free(g);
    sg_graph_free(h);
    free_inputs(&in);
    assoc_gnn_free(a);
    assoc_gnn_free(b);
  }
}
END_TEST

/* Compares out (from permuted inputs) with ref permuted along axis. */
static void assert_permuted(const sg_tensor *out, const sg_tensor *ref, int axis, const int *perm,
                            const char *what) {
  sg_tensor *want = permute_axis(ref, axis, perm);
  for (int64_t i = 0; i < out->numel; i++)
    ck_assert_msg(fabs(sg_get(out, i) - sg_get(want, i)) <= 1e-12, "%s %lld: %.17g vs %.17g", what,
                  (long long)i, sg_get(out, i), sg_get(want, i));
  sg_free(want);
}

/* Permuting the UEs of the input permutes the rows of Ahat and A~;
 * permuting the BSs permutes the columns (noise off, and in train mode with
 * the noise permuted alike). */
START_TEST(gnn_permutation_equivariance) {
  enum { B = 2, M = 3, K = 5 };
  const int ue_perm[K] = {3, 0, 4, 2, 1}, bs_perm[M] = {2, 0, 1};
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) {
    assoc_gnn_config cfg = tiny_config(v);
    assoc_gnn *m = assoc_gnn_new(&cfg, 30 + v);
    sg_rng r;
    sg_rng_seed(&r, 31);
    gnn_inputs in = make_inputs(&r, SG_F64, B, M, K, cfg.fe);
    gnn_inputs ue = {in.p, permute_axis(in.q, 1, ue_perm), permute_axis(in.H, 2, ue_perm),
                     permute_axis(in.noise, 1, ue_perm)};
    gnn_inputs bs = {permute_axis(in.p, 1, bs_perm), in.q, permute_axis(in.H, 1, bs_perm),
                     permute_axis(in.noise, 2, bs_perm)};
    sg_graph *g = sg_graph_new();
    for (int mode = ASSOC_GNN_TRAIN; mode <= ASSOC_GNN_EVAL; mode++) {
      assoc_gnn_output o = assoc_gnn_forward(g, m, in.p, in.q, in.H, mode, NULL, in.noise);
      assoc_gnn_output ou = assoc_gnn_forward(g, m, ue.p, ue.q, ue.H, mode, NULL, ue.noise);
      assoc_gnn_output ob = assoc_gnn_forward(g, m, bs.p, bs.q, bs.H, mode, NULL, bs.noise);
      assert_permuted(ou.logits, o.logits, 1, ue_perm, "UE-permuted logits");
      assert_permuted(ou.assoc, o.assoc, 1, ue_perm, "UE-permuted A~");
      assert_permuted(ob.logits, o.logits, 2, bs_perm, "BS-permuted logits");
      assert_permuted(ob.assoc, o.assoc, 2, bs_perm, "BS-permuted A~");
      /* The test is not vacuous: the rows differ. */
      ck_assert(fabs(sg_get(o.logits, 0) - sg_get(o.logits, M)) > 1e-6);
    }
    sg_graph_free(g);
    sg_free(ue.q), sg_free(ue.H), sg_free(ue.noise);
    sg_free(bs.p), sg_free(bs.H), sg_free(bs.noise);
    free_inputs(&in);
    assoc_gnn_free(m);
  }
}
END_TEST

/* The same weights run on other network sizes; each sample's output does
 * not depend on the rest of its batch; A~ has unit row sums. */
START_TEST(gnn_other_sizes) {
  const int sizes[][2] = {{2, 3}, {3, 8}, {1, 4}, {5, 2}, {4, 16}}; /* M, K */
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) {
    assoc_gnn_config cfg = tiny_config(v);
    assoc_gnn *m = assoc_gnn_new(&cfg, 40 + v);
    sg_rng r;
    sg_rng_seed(&r, 41);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      int M = sizes[s][0], K = sizes[s][1];
      gnn_inputs in = make_inputs(&r, SG_F64, 3, M, K, cfg.fe);
      sg_graph *g = sg_graph_new();
      assoc_gnn_output o = assoc_gnn_forward(g, m, in.p, in.q, in.H, ASSOC_GNN_EVAL, NULL, NULL);
      ck_assert(o.logits && o.assoc);
      ck_assert_int_eq(o.assoc->shape[0], 3);
      ck_assert_int_eq(o.assoc->shape[1], K);
      ck_assert_int_eq(o.assoc->shape[2], M);
      for (int64_t row = 0; row < 3 * K; row++) {
        double sum = 0;
        for (int j = 0; j < M; j++) {
          double a = sg_get(o.assoc, row * M + j);
          ck_assert(isfinite(sg_get(o.logits, row * M + j)) && a >= 0 && a <= 1 + 1e-12);
          sum += a;
        }
        ck_assert_double_eq_tol(sum, 1.0, 1e-12);
      }
      /* Sample 0 alone gives the same output as inside the batch. */
      sg_tensor *p1 = sg_slice(g, in.p, 0, 0, 1), *q1 = sg_slice(g, in.q, 0, 0, 1),
                *H1 = sg_slice(g, in.H, 0, 0, 1);
      sg_tensor *keep[3] = {sg_clone(NULL, p1), sg_clone(NULL, q1), sg_clone(NULL, H1)};
      assoc_gnn_output o1 =
          assoc_gnn_forward(g, m, keep[0], keep[1], keep[2], ASSOC_GNN_EVAL, NULL, NULL);
      for (int64_t i = 0; i < o1.assoc->numel; i++)
        ck_assert_double_eq_tol(sg_get(o1.assoc, i), sg_get(o.assoc, i), 1e-12);
      for (int i = 0; i < 3; i++) sg_free(keep[i]);
      sg_graph_free(g);
      free_inputs(&in);
    }
    assoc_gnn_free(m);
  }
}
END_TEST

/* Train mode: noise drawn from the rng is reproducible, and a given noise
 * sample is used as given; eval mode ignores noise. */
START_TEST(gnn_noise_modes) {
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) {
    assoc_gnn_config cfg = tiny_config(v);
    assoc_gnn *m = assoc_gnn_new(&cfg, 50);
    sg_rng r;
    sg_rng_seed(&r, 51);
    gnn_inputs in = make_inputs(&r, SG_F64, 2, 2, 4, cfg.fe);
    sg_graph *g = sg_graph_new();
    sg_rng r1, r2;
    sg_rng_seed(&r1, 9);
    sg_rng_seed(&r2, 9);
    sg_tensor *drawn = sg_rand_gumbel(g, &r2, SG_F64, 3, (int64_t[]){2, 4, 2});
    assoc_gnn_output a = assoc_gnn_forward(g, m, in.p, in.q, in.H, ASSOC_GNN_TRAIN, &r1, NULL);
    assoc_gnn_output b = assoc_gnn_forward(g, m, in.p, in.q, in.H, ASSOC_GNN_TRAIN, NULL, drawn);
    assoc_gnn_output e = assoc_gnn_forward(g, m, in.p, in.q, in.H, ASSOC_GNN_EVAL, NULL, in.noise);
    assoc_gnn_output e0 = assoc_gnn_forward(g, m, in.p, in.q, in.H, ASSOC_GNN_EVAL, NULL, NULL);
    double noisy_diff = 0;
    for (int64_t i = 0; i < a.assoc->numel; i++) {
      ck_assert(sg_get(a.assoc, i) == sg_get(b.assoc, i));
      ck_assert(sg_get(e.assoc, i) == sg_get(e0.assoc, i));
      ck_assert(sg_get(a.logits, i) == sg_get(e.logits, i)); /* noise acts after the logits */
      noisy_diff = fmax(noisy_diff, fabs(sg_get(a.assoc, i) - sg_get(e.assoc, i)));
    }
    if (v == ASSOC_GNN_SMA)
      ck_assert(noisy_diff == 0);
    else
      ck_assert(noisy_diff > 1e-3);
    if (v == ASSOC_GNN_ATTSKGS || v == ASSOC_GNN_SKGS)
      ck_assert_int_eq(a.sinkhorn.iters, cfg.sk_iters);
    sg_graph_free(g);
    free_inputs(&in);
    assoc_gnn_free(m);
  }
}
END_TEST

/* Post-processing formulas on the model's own logits. */
START_TEST(gnn_post_processing) {
  sg_rng r;
  sg_rng_seed(&r, 61);
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) {
    assoc_gnn_config cfg = tiny_config(v);
    cfg.sk_iters = 3;
    assoc_gnn *m = assoc_gnn_new(&cfg, 60);
    gnn_inputs in = make_inputs(&r, SG_F64, 2, 2, 5, cfg.fe);
    sg_graph *g = sg_graph_new();
    assoc_gnn_output o = assoc_gnn_forward(g, m, in.p, in.q, in.H, ASSOC_GNN_TRAIN, NULL, in.noise);
    enum { K = 5, M = 2 };
    for (int b = 0; b < 2; b++) {
      /* A_GS (or the softmax) row by row. */
      double a[K][M];
      for (int k = 0; k < K; k++) {
        double x[M], mx = -INFINITY, s = 0;
        for (int j = 0; j < M; j++) {
          int64_t i = (b * K + k) * M + j;
          x[j] = sg_get(o.logits, i);
          if (v != ASSOC_GNN_SMA) x[j] = (x[j] + sg_get(in.noise, i)) / cfg.tau;
          mx = fmax(mx, x[j]);
        }
        for (int j = 0; j < M; j++) s += exp(x[j] - mx);
        for (int j = 0; j < M; j++) a[k][j] = exp(x[j] - mx) / s;
      }
      /* Capacity Sinkhorn in the linear domain, T column then row steps. */
      if (v == ASSOC_GNN_ATTSKGS || v == ASSOC_GNN_SKGS)
        for (int t = 0; t < cfg.sk_iters; t++) {
          for (int j = 0; j < M; j++) {
            double col = 0;
            for (int k = 0; k < K; k++) col += a[k][j];
            for (int k = 0; k < K; k++) a[k][j] *= fmin(1.0, cfg.capacity / col);
          }
          for (int k = 0; k < K; k++) {
            double row = a[k][0] + a[k][1];
            for (int j = 0; j < M; j++) a[k][j] /= row;
          }
        }
      for (int k = 0; k < K; k++)
        for (int j = 0; j < M; j++)
          ck_assert_double_eq_tol(sg_get(o.assoc, (b * K + k) * M + j), a[k][j], 1e-12);
    }
    sg_graph_free(g);
    free_inputs(&in);
    assoc_gnn_free(m);
  }
}
END_TEST

START_TEST(gnn_forward_misuse) {
  assoc_gnn_config cfg = tiny_config(ASSOC_GNN_SKGS);
  assoc_gnn *m = assoc_gnn_new(&cfg, 1);
  sg_rng r;
  sg_rng_seed(&r, 2);
  gnn_inputs in = make_inputs(&r, SG_F64, 2, 2, 3, cfg.fe);
  gnn_inputs bad = make_inputs(&r, SG_F64, 2, 2, 3, cfg.fe + 1);
  sg_tensor *p32 = sg_to_dtype(NULL, in.p, SG_F32);
  sg_graph *g = sg_graph_new();
  errors_seen = 0;
  sg_set_error_handler(record_error, NULL);
  ck_assert_ptr_null(assoc_gnn_forward(g, m, in.p, in.q, bad.H, ASSOC_GNN_EVAL, NULL, NULL).assoc);
  ck_assert_ptr_null(assoc_gnn_forward(g, m, p32, in.q, in.H, ASSOC_GNN_EVAL, NULL, NULL).assoc);
  ck_assert_ptr_null(assoc_gnn_forward(g, m, in.p, in.q, in.H, ASSOC_GNN_TRAIN, NULL, NULL).assoc);
  ck_assert_ptr_null(assoc_gnn_forward(g, m, in.q, in.p, in.H, ASSOC_GNN_EVAL, NULL, NULL).assoc);
  assoc_gnn_config wrong = cfg;
  wrong.tau = 0;
  ck_assert_ptr_null(assoc_gnn_new(&wrong, 1));
  sg_set_error_handler(NULL, NULL);
  ck_assert_int_eq(errors_seen, 5);
  sg_free(p32);
  free_inputs(&in);
  free_inputs(&bad);
  sg_graph_free(g);
  assoc_gnn_free(m);
}
END_TEST

START_TEST(assoc_eval_helpers) {
  const double A[2 * 3 * 3] = {0.2, 0.5, 0.5, 0.7, 0.7, 0.1, 0.1, 0.2, 0.9,
                               0.0, 0.0, 0.0, 0.3, 0.1, 0.6, 0.5, 0.4, 0.1};
  const int want[6] = {1, 0, 2, 0, 2, 0};
  sg_graph *g = sg_graph_new();
  for (int dt = SG_F32; dt <= SG_F64; dt++) {
    sg_tensor *t = sg_from_f64(g, dt, 3, (int64_t[]){2, 3, 3}, A);
    int assoc[6];
    assoc_argmax(t, assoc);
    sg_tensor *oh = assoc_one_hot(g, t);
    ck_assert(sg_same_shape(oh, t));
    for (int k = 0; k < 6; k++) {
      ck_assert_int_eq(assoc[k], want[k]);
      for (int m = 0; m < 3; m++) ck_assert(sg_get(oh, k * 3 + m) == (m == want[k] ? 1.0 : 0.0));
    }
  }
  ck_assert_int_eq(assoc_gnn_variant_parse("attskgs-gnn"), ASSOC_GNN_ATTSKGS);
  ck_assert_int_eq(assoc_gnn_variant_parse("SMA"), ASSOC_GNN_SMA);
  ck_assert_int_eq(assoc_gnn_variant_parse("GS-GNN"), ASSOC_GNN_GS);
  ck_assert_int_eq(assoc_gnn_variant_parse("SK"), -1);
  ck_assert_str_eq(assoc_gnn_variant_name(ASSOC_GNN_SKGS), "SKGS-GNN");
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) { /* keys: identifiers that parse back */
    const char *key = assoc_gnn_variant_key((assoc_gnn_variant)v);
    ck_assert_int_eq(assoc_gnn_variant_parse(key), v);
    for (const char *p = key; *p; p++)
      ck_assert_msg(isalnum((unsigned char)*p) || *p == '_', "%s", key);
  }
  sg_graph_free(g);
}
END_TEST

/* Independent count: MLP(in, out) = (in+1) h + (h+1) h + (h+1) out. */
static int64_t count_mlp(int64_t in, int64_t h, int64_t out) {
  return in * h + h + h * h + h + h * out + out;
}

static int64_t expected_count(const assoc_gnn_config *c, bool dead_node_updates) {
  int64_t d = c->d, h = c->h;
  int64_t pre = count_mlp(c->fp, h, d) + count_mlp(c->fq, h, d) + count_mlp(c->fe, h, d);
  int64_t nodes = 4 * count_mlp(2 * d, h, d);
  int64_t edge = c->variant == ASSOC_GNN_ATTSKGS ? 3 * d * d + 2 * d + count_mlp(2 * d, h, d)
                                                 : count_mlp(3 * d, h, d);
  int64_t node_layers = dead_node_updates ? c->L : c->L - 1;
  return pre + node_layers * nodes + c->L * edge + count_mlp(d, h, 1);
}

START_TEST(gnn_param_count_paper) {
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) {
    assoc_gnn_config cfg = assoc_gnn_config_paper(v);
    assoc_gnn *m = assoc_gnn_new(&cfg, 1);
    ck_assert_ptr_nonnull(m);
    int64_t n = assoc_gnn_param_count(m);
    ck_assert_int_eq(n, expected_count(&cfg, false));
    assoc_gnn_print_params(m, stdout);
    /* models.md's PyTorch rendering (layer L's node updates built):
     * 34.13 M (attention) and 33.60 M (MLP edge), about 10.5 M more. */
    double torch_m = expected_count(&cfg, true) / 1e6;
    ck_assert_double_eq_tol(torch_m, v == ASSOC_GNN_ATTSKGS ? 34.13 : 33.60, 0.005);
    ck_assert_double_eq_tol(torch_m - n / 1e6, 10.5, 0.05);
    printf("  models.md PyTorch rendering: %.2f M; paper: %s\n", torch_m,
           v == ASSOC_GNN_ATTSKGS ? "45.67 M" : "53.01 M");
    assoc_gnn_free(m);
  }
  /* Small configurations too, including L = 1 (no node update at all). */
  for (int L = 1; L <= 3; L++) {
    assoc_gnn_config cfg = tiny_config(ASSOC_GNN_ATTSKGS);
    cfg.L = L;
    assoc_gnn *m = assoc_gnn_new(&cfg, 1);
    ck_assert_int_eq(assoc_gnn_param_count(m), expected_count(&cfg, false));
    char last[64];
    snprintf(last, sizeof last, "layers.%d.f1.0.weight", L - 1);
    ck_assert_ptr_null(sg_params_get(m->params, last)); /* layer L: no node update */
    if (L > 1) ck_assert_ptr_nonnull(sg_params_get(m->params, "layers.0.f4.4.bias"));
    ck_assert_ptr_nonnull(sg_params_get(m->params, "layers.0.w_q.weight"));
    assoc_gnn_free(m);
  }
}
END_TEST

/* float32 forward of a model against the float64 forward of the same
 * weights. */
START_TEST(gnn_f32_forward) {
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) {
    assoc_gnn_config cfg = tiny_config(v);
    cfg.d = 16, cfg.h = 32;
    assoc_gnn *m64 = assoc_gnn_new(&cfg, 70);
    cfg.dtype = SG_F32;
    assoc_gnn *m32 = assoc_gnn_new(&cfg, 71);
    ck_assert_int_eq(sg_params_copy(m32->params, m64->params), 0);
    sg_rng r;
    sg_rng_seed(&r, 72);
    gnn_inputs in = make_inputs(&r, SG_F64, 4, 2, 8, cfg.fe);
    gnn_inputs in32 = {sg_to_dtype(NULL, in.p, SG_F32), sg_to_dtype(NULL, in.q, SG_F32),
                       sg_to_dtype(NULL, in.H, SG_F32), sg_to_dtype(NULL, in.noise, SG_F32)};
    sg_graph *g = sg_graph_new();
    assoc_gnn_output a =
        assoc_gnn_forward(g, m64, in.p, in.q, in.H, ASSOC_GNN_TRAIN, NULL, in.noise);
    assoc_gnn_output b =
        assoc_gnn_forward(g, m32, in32.p, in32.q, in32.H, ASSOC_GNN_TRAIN, NULL, in32.noise);
    ck_assert(b.assoc->dtype == SG_F32);
    for (int64_t i = 0; i < a.assoc->numel; i++) {
      ck_assert_double_eq_tol(sg_get(b.logits, i), sg_get(a.logits, i),
                              1e-5 * (1 + fabs(sg_get(a.logits, i))));
      ck_assert_double_eq_tol(sg_get(b.assoc, i), sg_get(a.assoc, i), 1e-5);
    }
    sg_graph_free(g);
    free_inputs(&in);
    free_inputs(&in32);
    assoc_gnn_free(m64);
    assoc_gnn_free(m32);
  }
}
END_TEST

Suite *suite_gnn(void) {
  const sg_test_case cases[] = {
      {"gradcheck_gnn_attskgs", gradcheck_gnn_attskgs},
      {"gradcheck_gnn_skgs", gradcheck_gnn_skgs},
      {"gradcheck_gnn_gs", gradcheck_gnn_gs},
      {"gradcheck_gnn_sma", gradcheck_gnn_sma},
      {"gradcheck_gnn_concat_path", gradcheck_gnn_concat_path},
      {"gradcheck_gnn_balanced", gradcheck_gnn_balanced},
      {"gnn_split_matches_concat", gnn_split_matches_concat},
      {"gnn_permutation_equivariance", gnn_permutation_equivariance},
      {"gnn_other_sizes", gnn_other_sizes},
      {"gnn_noise_modes", gnn_noise_modes},
      {"gnn_post_processing", gnn_post_processing},
      {"gnn_forward_misuse", gnn_forward_misuse},
      {"assoc_eval_helpers", assoc_eval_helpers},
      {"gnn_param_count_paper", gnn_param_count_paper},
      {"gnn_f32_forward", gnn_f32_forward},
  };
  return sg_test_suite("gnn", cases, sizeof cases / sizeof cases[0], 60);
}
