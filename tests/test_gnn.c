/* Neural-network building blocks (models/nn/sg_nn.h), the four association GNNs,
 * the differentiable sum-rate and the training loss (models/gnn/assoc_gnn.h). */
#include <complex.h>
#include <stdlib.h>
#include <string.h>

#include "assoc_gnn.h"
#include "assoc_wireless.h"
#include "sg_test.h"

/* ---- helpers ----------------------------------------------------------------- */

static int errors_seen;
static void record_error(const char *op, const char *msg, const char *file, int line, void *u) {
  (void)op, (void)msg, (void)file, (void)line, (void)u;
  errors_seen++;
}

/* The tiny float64 configuration of the gradient checks: d 4, h 6, L 2,
 * N 2 (Fe = 4 edge features, capacity 2). */
static assoc_gnn_config tiny_config(assoc_gnn_variant v) {
  return (assoc_gnn_config){.variant = v,
                            .d = 4,
                            .h = 6,
                            .L = 2,
                            .fp = 1,
                            .fq = 1,
                            .fe = 4,
                            .dtype = SG_F64,
                            .tau = 0.8,
                            .sk_iters = 10,
                            .capacity = 2.0};
}

typedef struct gnn_inputs {
  sg_tensor *p, *q, *H, *noise; /* caller-owned */
} gnn_inputs;

/* Random features: BS and UE features distinct per node (so that
 * permutations matter), Gaussian channel features, Gumbel noise. */
static gnn_inputs make_inputs(sg_rng *r, sg_dtype dt, int64_t B, int64_t M, int64_t K, int64_t fe) {
  gnn_inputs in;
  in.p = sg_rand_uniform(NULL, r, dt, 3, (int64_t[]){B, M, 1}, 0.5, 1.5);
  in.q = sg_rand_uniform(NULL, r, dt, 3, (int64_t[]){B, K, 1}, 0.5, 1.5);
  in.H = sg_rand_normal(NULL, r, dt, 4, (int64_t[]){B, M, K, fe}, 0.0, 1.0);
  in.noise = sg_rand_gumbel(NULL, r, dt, 3, (int64_t[]){B, K, M});
  return in;
}

static void free_inputs(gnn_inputs *in) {
  sg_free(in->p);
  sg_free(in->q);
  sg_free(in->H);
  sg_free(in->noise);
}

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

/* ---- parameter registry and layers ----------------------------------------------- */

START_TEST(params_registry) {
  sg_params *p = sg_params_new(SG_F64);
  ck_assert_ptr_nonnull(p);
  sg_tensor *a = sg_params_add(p, "a.weight", 2, (int64_t[]){3, 4});
  sg_tensor *b = sg_params_add(p, "a.bias", 1, (int64_t[]){3});
  sg_tensor *c = sg_params_add(p, "c", 1, (int64_t[]){5});
  ck_assert(a && b && c);
  ck_assert(a->requires_grad && a->owned && a->dtype == SG_F64);
  ck_assert_int_eq(sg_params_count(p), 3);
  ck_assert_int_eq(sg_params_numel(p), 12 + 3 + 5);
  ck_assert_int_eq(sg_params_numel_prefix(p, "a."), 15);
  ck_assert_ptr_eq(sg_params_get(p, "a.bias"), b);
  ck_assert_ptr_null(sg_params_get(p, "a"));
  ck_assert_str_eq(sg_params_name(p, 2), "c");
  ck_assert_ptr_eq(sg_params_tensors(p)[0], a);
  ck_assert_ptr_null(sg_params_at(p, 3));
  for (int64_t i = 0; i < a->numel; i++) ck_assert(sg_get(a, i) == 0.0);

  /* A duplicate name is refused, and the registry is unchanged. */
  errors_seen = 0;
  sg_set_error_handler(record_error, NULL);
  ck_assert_ptr_null(sg_params_add(p, "c", 1, (int64_t[]){2}));
  sg_set_error_handler(NULL, NULL);
  ck_assert_int_eq(errors_seen, 1);
  ck_assert_int_eq(sg_params_count(p), 3);

  /* Copy across dtypes; a registry with other names is refused. */
  sg_params *q = sg_params_new(SG_F32);
  sg_params_add(q, "a.weight", 2, (int64_t[]){3, 4});
  sg_params_add(q, "a.bias", 1, (int64_t[]){3});
  sg_params_add(q, "c", 1, (int64_t[]){5});
  sg_set(c, 4, 2.5);
  ck_assert_int_eq(sg_params_copy(q, p), 0);
  ck_assert(sg_get(sg_params_get(q, "c"), 4) == 2.5);
  sg_params *other = sg_params_new(SG_F32);
  sg_params_add(other, "x", 1, (int64_t[]){3});
  ck_assert_int_eq(sg_params_copy(other, p), -1);
  sg_params_free(other);
  sg_params_free(q);
  sg_params_free(p);
}
END_TEST

START_TEST(linear_layer_init_and_forward) {
  sg_params *p = sg_params_new(SG_F64);
  sg_rng r;
  sg_rng_seed(&r, 3);
  sg_linear_layer l, nb;
  ck_assert_int_eq(sg_linear_layer_init(&l, p, "lin", 16, 5, true, &r), 0);
  ck_assert_int_eq(sg_linear_layer_init(&nb, p, "nobias", 4, 3, false, &r), 0);
  ck_assert_ptr_eq(sg_params_get(p, "lin.weight"), l.weight);
  ck_assert_ptr_eq(sg_params_get(p, "lin.bias"), l.bias);
  ck_assert_ptr_null(nb.bias);
  ck_assert_int_eq(sg_params_count(p), 3);
  ck_assert_int_eq(l.weight->shape[0], 5);
  ck_assert_int_eq(l.weight->shape[1], 16);
  /* U(-1/sqrt(in), 1/sqrt(in)) for weight and bias, not all equal. */
  double bound = 0.25, lo = 1, hi = -1;
  for (int64_t i = 0; i < l.weight->numel; i++) {
    double w = sg_get(l.weight, i);
    ck_assert(fabs(w) < bound);
    lo = fmin(lo, w), hi = fmax(hi, w);
  }
  ck_assert(hi - lo > bound); /* 80 draws spread over the interval */
  for (int64_t i = 0; i < 5; i++) ck_assert(fabs(sg_get(l.bias, i)) < bound);

  /* Forward on [2, 3, 16] against the explicit sum. */
  sg_graph *g = sg_graph_new();
  sg_tensor *x = sg_rand_normal(g, &r, SG_F64, 3, (int64_t[]){2, 3, 16}, 0, 1);
  sg_tensor *y = sg_linear_layer_forward(g, &l, x);
  ck_assert_int_eq(y->ndim, 3);
  ck_assert_int_eq(y->shape[2], 5);
  for (int64_t row = 0; row < 6; row++)
    for (int64_t o = 0; o < 5; o++) {
      double s = sg_get(l.bias, o);
      for (int64_t i = 0; i < 16; i++) s += sg_get(x, row * 16 + i) * sg_get(l.weight, o * 16 + i);
      ck_assert_double_eq_tol(sg_get(y, row * 5 + o), s, 1e-13);
    }
  sg_graph_free(g);
  sg_params_free(p);
}
END_TEST

/* MLP: names, count, forward against the explicit composition, and the
 * split-first-Linear forward against the materialised concatenation. */
START_TEST(mlp_forward_and_parts) {
  sg_params *p = sg_params_new(SG_F64);
  sg_rng r;
  sg_rng_seed(&r, 4);
  sg_mlp m;
  ck_assert_int_eq(sg_mlp_init(&m, p, "f1", 5, 7, 3, &r), 0);
  const char *names[] = {"f1.0.weight", "f1.0.bias",   "f1.2.weight",
                         "f1.2.bias",   "f1.4.weight", "f1.4.bias"};
  for (int i = 0; i < 6; i++) ck_assert_str_eq(sg_params_name(p, i), names[i]);
  ck_assert_int_eq(sg_params_numel(p), sg_mlp_numel(5, 7, 3));
  ck_assert_int_eq(sg_mlp_numel(5, 7, 3), 5 * 7 + 7 + 7 * 7 + 7 + 7 * 3 + 3);

  sg_graph *g = sg_graph_new();
  sg_tensor *x = sg_rand_normal(g, &r, SG_F64, 2, (int64_t[]){4, 5}, 0, 1);
  sg_tensor *y = sg_mlp_forward(g, &m, x);
  sg_tensor *manual = sg_linear(
      g,
      sg_relu(g, sg_linear(g, sg_relu(g, sg_linear(g, x, m.layer[0].weight, m.layer[0].bias)),
                           m.layer[1].weight, m.layer[1].bias)),
      m.layer[2].weight, m.layer[2].bias);
  for (int64_t i = 0; i < y->numel; i++) ck_assert(sg_get(y, i) == sg_get(manual, i));

  /* Parts [2, 3, 1, 2] and [2, 3, 4, 3] act as their concatenation after
   * expanding the first over axis 2. */
  sg_tensor *a = sg_rand_normal(NULL, &r, SG_F64, 4, (int64_t[]){2, 3, 1, 2}, 0, 1);
  sg_tensor *b = sg_rand_normal(NULL, &r, SG_F64, 4, (int64_t[]){2, 3, 4, 3}, 0, 1);
  sg_tensor *cat_in[2] = {sg_expand(g, a, 4, (int64_t[]){2, 3, 4, 2}), b};
  sg_tensor *ref = sg_mlp_forward(g, &m, sg_concat(g, 2, cat_in, -1));
  sg_tensor *parts[2] = {a, b};
  sg_tensor *split = sg_mlp_forward_parts(g, &m, 2, parts);
  ck_assert(sg_same_shape(ref, split));
  for (int64_t i = 0; i < ref->numel; i++)
    ck_assert_double_eq_tol(sg_get(split, i), sg_get(ref, i), 1e-13);

  /* Widths that do not add up are a reported misuse. */
  errors_seen = 0;
  sg_set_error_handler(record_error, NULL);
  sg_tensor *bad[2] = {a, a};
  ck_assert_ptr_null(sg_mlp_forward_parts(g, &m, 2, bad));
  sg_set_error_handler(NULL, NULL);
  ck_assert_int_eq(errors_seen, 1);
  sg_free(a);
  sg_free(b);
  sg_graph_free(g);
  sg_params_free(p);
}
END_TEST

/* The last two inputs are the parts; the others are the MLP's parameters. */
static sg_tensor *mlp_parts_fn(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  return sg_mlp_forward_parts(g, ctx, 2, in + n - 2);
}

START_TEST(gradcheck_mlp_parts) {
  sg_params *p = sg_params_new(SG_F64);
  sg_rng r;
  sg_rng_seed(&r, 5);
  sg_mlp m;
  sg_mlp_init(&m, p, "f", 5, 6, 3, &r);
  sg_tensor *in[8];
  for (int i = 0; i < 6; i++) in[i] = sg_params_at(p, i); /* through the weight slices too */
  in[6] = sg_rand_normal(NULL, &r, SG_F64, 3, (int64_t[]){2, 1, 2}, 0, 1);
  in[7] = sg_rand_normal(NULL, &r, SG_F64, 3, (int64_t[]){2, 4, 3}, 0, 1);
  sg_set_requires_grad(in[6], true);
  sg_set_requires_grad(in[7], true);
  sg_gradcheck_result res = sg_gradcheck(mlp_parts_fn, in, 8, &m, NULL);
  SG_ASSERT_CHECK(res);
  ck_assert_int_eq(res.checked, sg_mlp_numel(5, 6, 3) + 4 + 24);
  sg_free(in[6]);
  sg_free(in[7]);
  sg_params_free(p);
}
END_TEST

/* in[0..3]: the second and third layers' weights and biases; in[4]: x. */
static sg_tensor *mlp_fn(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  return sg_mlp_forward(g, ctx, in[n - 1]);
}

/* A frozen first layer (no gradient): the ReLU after it is not on the tape,
 * yet the next Linear's backward reads it for its weight gradient, so the
 * MLP's memory planning must keep it (an early version released it). */
START_TEST(gradcheck_mlp_frozen_first_layer) {
  sg_params *p = sg_params_new(SG_F64);
  sg_rng r;
  sg_rng_seed(&r, 6);
  sg_mlp m;
  sg_mlp_init(&m, p, "f", 5, 6, 3, &r);
  sg_set_requires_grad(m.layer[0].weight, false);
  sg_set_requires_grad(m.layer[0].bias, false);
  sg_tensor *in[5] = {m.layer[1].weight, m.layer[1].bias, m.layer[2].weight, m.layer[2].bias,
                      sg_rand_normal(NULL, &r, SG_F64, 2, (int64_t[]){4, 5}, 0, 1)};
  SG_ASSERT_CHECK(sg_gradcheck(mlp_fn, in, 5, &m, NULL));
  sg_free(in[4]);
  sg_params_free(p);
}
END_TEST

START_TEST(layernorm_layer) {
  sg_params *p = sg_params_new(SG_F64);
  sg_layernorm_layer ln;
  ck_assert_int_eq(sg_layernorm_layer_init(&ln, p, "ln", 6), 0);
  ck_assert_ptr_eq(sg_params_get(p, "ln.weight"), ln.weight);
  ck_assert_ptr_eq(sg_params_get(p, "ln.bias"), ln.bias);
  ck_assert(ln.eps == 1e-5);
  for (int i = 0; i < 6; i++) {
    ck_assert(sg_get(ln.weight, i) == 1.0);
    ck_assert(sg_get(ln.bias, i) == 0.0);
  }
  sg_graph *g = sg_graph_new();
  sg_rng r;
  sg_rng_seed(&r, 6);
  sg_tensor *x = sg_rand_normal(g, &r, SG_F64, 2, (int64_t[]){3, 6}, 2, 3);
  sg_tensor *y = sg_layernorm_layer_forward(g, &ln, x);
  for (int row = 0; row < 3; row++) {
    double mean = 0, var = 0;
    for (int i = 0; i < 6; i++) mean += sg_get(x, row * 6 + i) / 6;
    for (int i = 0; i < 6; i++) var += pow(sg_get(x, row * 6 + i) - mean, 2) / 6;
    for (int i = 0; i < 6; i++)
      ck_assert_double_eq_tol(sg_get(y, row * 6 + i),
                              (sg_get(x, row * 6 + i) - mean) / sqrt(var + 1e-5), 1e-12);
  }
  sg_graph_free(g);
  sg_params_free(p);
}
END_TEST

/* Reference values from PyTorch (torch.optim.lr_scheduler.
 * CosineAnnealingWarmRestarts), generated once with /usr/bin/python3:
 *   p = torch.nn.Parameter(torch.zeros(1))
 *   opt = torch.optim.SGD([p], lr=lr_max)
 *   s = CosineAnnealingWarmRestarts(opt, T_0=t0, T_mult=t_mult, eta_min=lr_min)
 *   for e in epochs: s.step(e); print(e, "%.17g" % opt.param_groups[0]["lr"])
 * with (50, 2, 1e-8, 5e-5) (the paper's schedule) and (10, 1, 1e-3, 0.1). */
START_TEST(cosine_warm_restarts) {
  static const double paper[][2] = {
      {0, 5.0000000000000002e-05},       {0.0025, 4.9999999691636547e-05},
      {10.5, 4.4754924534330379e-05},    {25, 2.5005000000000002e-05},
      {49.9975, 1.000030836345318e-08},  {50, 5.0000000000000002e-05},
      {50.0025, 4.9999999922909135e-05}, {75, 4.2679133995757756e-05},
      {149.99, 1.0001233453798842e-08},  {150, 5.0000000000000002e-05},
      {200.5, 4.2539777987142543e-05},   {349, 1.308357112089361e-08},
      {350, 5.0000000000000002e-05},     {700.25, 1.8938944390300119e-06},
  };
  static const double flat[][2] = {
      {0, 0.10000000000000001},  {5, 0.050500000000000003},    {9.75, 0.0011525919802101658},
      {10, 0.10000000000000001}, {15.5, 0.042756493980508591}, {23, 0.079595369988477424},
  };
  sg_cosine_restarts s = {.t0 = 50, .t_mult = 2, .lr_min = 1e-8, .lr_max = 5e-5};
  for (size_t i = 0; i < sizeof paper / sizeof paper[0]; i++)
    ck_assert_msg(fabs(sg_cosine_restarts_lr(&s, paper[i][0]) - paper[i][1]) <= 1e-15 * 5e-5,
                  "epoch %g: %.17g vs %.17g", paper[i][0], sg_cosine_restarts_lr(&s, paper[i][0]),
                  paper[i][1]);
  sg_cosine_restarts t = {.t0 = 10, .t_mult = 1, .lr_min = 1e-3, .lr_max = 0.1};
  for (size_t i = 0; i < sizeof flat / sizeof flat[0]; i++)
    ck_assert_double_eq_tol(sg_cosine_restarts_lr(&t, flat[i][0]), flat[i][1], 1e-15);
  /* Hand values: the middle of the second period (50 + 100/2) is the mean. */
  ck_assert_double_eq_tol(sg_cosine_restarts_lr(&s, 100), (5e-5 + 1e-8) / 2, 1e-18);
}
END_TEST

/* ---- sum-rate ------------------------------------------------------------------- */

/* Direct scalar MRT couplings, complex arithmetic: c[m,k,l] =
 * h_mk^T v_ml / sqrt(noise), v_ml = sqrt(pt/N) conj(h_ml) / |h_ml|. */
static double complex ref_coupling(const double *H_re, const double *H_im, int M, int K, int N,
                                   int64_t b, int m, int k, int l, double pt, double noise) {
  (void)M;
  const int64_t base = ((b * M + m) * K) * N;
  double complex dot = 0;
  double norm2 = 0;
  for (int n = 0; n < N; n++) {
    double complex hk = H_re[base + k * N + n] + I * H_im[base + k * N + n];
    double complex hl = H_re[base + l * N + n] + I * H_im[base + l * N + n];
    dot += hk * conj(hl);
    norm2 += creal(hl * conj(hl));
  }
  if (norm2 == 0) return 0;
  return dot * sqrt(pt / N) / sqrt(norm2) / sqrt(noise);
}

/* Direct scalar sum-rate of one sample: c [M, K, K] complex, A [K, M]. */
static double ref_rate(const double complex *c, const double *A, int M, int K, double noise) {
  double R = 0;
  for (int k = 0; k < K; k++) {
    double complex s = 0;
    for (int m = 0; m < M; m++) s += A[k * M + m] * c[(m * K + k) * K + k];
    double interference = 0;
    for (int l = 0; l < K; l++) {
      if (l == k) continue;
      double complex z = 0;
      for (int m = 0; m < M; m++) z += A[l * M + m] * c[(m * K + k) * K + l];
      interference += cabs(z) * cabs(z);
    }
    R += log2(1 + cabs(s) * cabs(s) / (interference + noise));
  }
  return R;
}

START_TEST(sum_rate_matches_scalar) {
  enum { B = 3, M = 3, K = 4, N = 3 };
  sg_rng r;
  sg_rng_seed(&r, 21);
  double H_re[B * M * K * N], H_im[B * M * K * N], A[B * K * M];
  for (int i = 0; i < B * M * K * N; i++) {
    H_re[i] = 1e-5 * sg_rng_normal(&r); /* channel-like magnitudes */
    H_im[i] = 1e-5 * sg_rng_normal(&r);
  }
  for (int n = 0; n < N; n++)
    H_re[((1 * M + 2) * K + 3) * N + n] = H_im[((1 * M + 2) * K + 3) * N + n] = 0;
  /* Fractional A: sample 0 rows on the simplex, sample 1 arbitrary in
   * [0, 1], sample 2 one-hot with a dropped (zero) row. */
  for (int i = 0; i < B * K * M; i++) A[i] = sg_rng_uniform(&r);
  for (int k = 0; k < K; k++) {
    double s = 0;
    for (int m = 0; m < M; m++) s += A[k * M + m];
    for (int m = 0; m < M; m++) A[k * M + m] /= s;
  }
  for (int k = 0; k < K; k++)
    for (int m = 0; m < M; m++) A[(2 * K + k) * M + m] = (k < 3 && m == k % M) ? 1.0 : 0.0;
  const double pt = 1.0, noise = 4e-12; /* 30 dBm and -84 dBm in W */

  sg_graph *g = sg_graph_new();
  sg_tensor *c_re, *c_im;
  ck_assert_int_eq(assoc_mrt_couplings(g, H_re, H_im, B, M, K, N, pt, noise, SG_F64, &c_re, &c_im),
                   0);
  ck_assert_int_eq(c_re->ndim, 4);
  ck_assert_int_eq(c_re->shape[1], M);
  ck_assert_int_eq(c_re->shape[3], K);
  double complex c[B][M * K * K];
  for (int b = 0; b < B; b++)
    for (int m = 0; m < M; m++)
      for (int k = 0; k < K; k++)
        for (int l = 0; l < K; l++) {
          int64_t i = ((int64_t)(b * M + m) * K + k) * K + l;
          c[b][(m * K + k) * K + l] = ref_coupling(H_re, H_im, M, K, N, b, m, k, l, pt, noise);
          double complex got = sg_get(c_re, i) + I * sg_get(c_im, i);
          ck_assert_msg(cabs(got - c[b][(m * K + k) * K + l]) <=
                            1e-13 * (1 + cabs(c[b][(m * K + k) * K + l])),
                        "coupling %lld", (long long)i);
        }
  /* The zero channel h_{m=2,k=3} of sample 1 gives a zero beam. */
  for (int k = 0; k < K; k++) ck_assert(sg_get(c_re, ((1 * M + 2) * K + k) * K + 3) == 0.0);

  sg_tensor *At = sg_from_f64(g, SG_F64, 3, (int64_t[]){B, K, M}, A);
  sg_tensor *R = assoc_sum_rate(g, At, c_re, c_im, 1.0);
  ck_assert_int_eq(R->ndim, 1);
  ck_assert_int_eq(R->shape[0], B);
  for (int b = 0; b < B; b++) {
    double want = ref_rate(c[b], A + b * K * M, M, K, 1.0);
    ck_assert_msg(fabs(sg_get(R, b) - want) <= 1e-12 * fmax(1, want), "sample %d: %.17g vs %.17g",
                  b, sg_get(R, b), want);
    ck_assert(want > 0.5); /* not a trivially small rate */
    /* The system model's scalar evaluator on the same (noise-normalised)
     * couplings agrees too. */
    double cr[M * K * K], ci[M * K * K];
    for (int i = 0; i < M * K * K; i++) cr[i] = creal(c[b][i]), ci[i] = cimag(c[b][i]);
    ck_assert_double_eq_tol(assoc_rate_frac(cr, ci, M, K, A + b * K * M, NULL), want,
                            1e-12 * fmax(1, want));
  }
  /* Another noise level through the noise argument. */
  sg_tensor *R2 = assoc_sum_rate(g, At, c_re, c_im, 3.5);
  for (int b = 0; b < B; b++)
    ck_assert_double_eq_tol(sg_get(R2, b), ref_rate(c[b], A + b * K * M, M, K, 3.5), 1e-12);

  /* Float32 couplings and rate agree with float64 to float precision. */
  sg_tensor *f_re, *f_im;
  assoc_mrt_couplings(g, H_re, H_im, B, M, K, N, pt, noise, SG_F32, &f_re, &f_im);
  ck_assert(f_re->dtype == SG_F32);
  sg_tensor *R32 = assoc_sum_rate(g, sg_to_dtype(g, At, SG_F32), f_re, f_im, 1.0);
  for (int b = 0; b < B; b++)
    ck_assert_double_eq_tol(sg_get(R32, b), sg_get(R, b), 1e-5 * fmax(1, sg_get(R, b)));
  sg_graph_free(g);
}
END_TEST

typedef struct rate_ctx {
  double noise;
} rate_ctx;

static sg_tensor *rate_fn(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  return assoc_sum_rate(g, in[0], in[1], in[2], ((rate_ctx *)ctx)->noise);
}

START_TEST(gradcheck_sum_rate) {
  sg_rng r;
  sg_rng_seed(&r, 22);
  const int64_t shapes[][3] = {{2, 3, 2}, {1, 2, 3}, {2, 1, 1}}; /* B, K, M */
  for (int s = 0; s < 3; s++) {
    int64_t B = shapes[s][0], K = shapes[s][1], M = shapes[s][2];
    sg_tensor *in[3] = {sg_rand_uniform(NULL, &r, SG_F64, 3, (int64_t[]){B, K, M}, 0.05, 1),
                        sg_rand_normal(NULL, &r, SG_F64, 4, (int64_t[]){B, M, K, K}, 0, 1),
                        sg_rand_normal(NULL, &r, SG_F64, 4, (int64_t[]){B, M, K, K}, 0, 1)};
    for (int i = 0; i < 3; i++) sg_set_requires_grad(in[i], true);
    rate_ctx ctx = {0.7};
    SG_ASSERT_CHECK(sg_gradcheck(rate_fn, in, 3, &ctx, NULL));
    SG_ASSERT_CHECK(sg_check_f32_forward(rate_fn, in, 3, &ctx, 1e-5, 1e-5));
    for (int i = 0; i < 3; i++) sg_free(in[i]);
  }
}
END_TEST

typedef struct loss_ctx {
  const double *mu;
  double capacity, delta;
} loss_ctx;

static sg_tensor *loss_fn(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  loss_ctx *c = ctx;
  return assoc_loss(g, in[0], in[1], c->mu, c->capacity, c->delta, NULL);
}

START_TEST(assoc_loss_value_and_gradient) {
  enum { B = 2, K = 4, M = 2 };
  /* Column sums: sample 0 (3.0, 1.0), sample 1 (1.6, 2.4); threshold
   * N - delta = 2 - 0.5 = 1.5, so the excesses are (1.5, 0) and (0.1, 0.9). */
  const double A[B * K * M] = {1,   0,   1,   0,   0.5, 0.5, 0.5, 0.5,
                               0.4, 0.6, 0.4, 0.6, 0.4, 0.6, 0.4, 0.6};
  const double rate[B] = {3.0, 5.0}, mu[M] = {0.25, 2.0};
  sg_graph *g = sg_graph_new();
  sg_tensor *At = sg_from_f64(g, SG_F64, 3, (int64_t[]){B, K, M}, A);
  sg_tensor *Rt = sg_from_f64(g, SG_F64, 1, (int64_t[]){B}, rate);
  double viol[M];
  sg_tensor *loss = assoc_loss(g, Rt, At, mu, 2.0, 0.5, viol);
  ck_assert_int_eq(loss->ndim, 0);
  ck_assert_double_eq_tol(viol[0], (1.5 + 0.1) / 2, 1e-15);
  ck_assert_double_eq_tol(viol[1], (0.0 + 0.9) / 2, 1e-15);
  ck_assert_double_eq_tol(sg_get(loss, 0), -4.0 + 0.25 * 0.8 + 2.0 * 0.45, 1e-15);
  ck_assert(sg_get(assoc_loss(g, Rt, At, NULL, 2.0, 0.5, NULL), 0) == -4.0);
  sg_graph_free(g);

  /* Gradient in rate and A, on random inputs away from the ReLU kink. */
  sg_rng r;
  sg_rng_seed(&r, 23);
  sg_tensor *in[2] = {sg_rand_normal(NULL, &r, SG_F64, 1, (int64_t[]){3}, 4, 1),
                      sg_rand_uniform(NULL, &r, SG_F64, 3, (int64_t[]){3, 5, 2}, 0, 1)};
  sg_set_requires_grad(in[0], true);
  sg_set_requires_grad(in[1], true);
  loss_ctx ctx = {mu, 2.0, 0.5};
  SG_ASSERT_CHECK(sg_gradcheck(loss_fn, in, 2, &ctx, NULL));
  sg_free(in[0]);
  sg_free(in[1]);
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

/* ---- training steps ------------------------------------------------------------ */

typedef struct train_batch {
  gnn_inputs in;
  double *H_re, *H_im;
  int64_t B;
  int M, K, N;
} train_batch;

/* A batch of random Rayleigh-like channels; H features are the SNR-scaled
 * channel entries (c/sigma scale), real parts then imaginary parts. */
static train_batch make_batch(sg_rng *r, sg_dtype dt, int64_t B, int M, int K, int N) {
  train_batch tb = {.B = B, .M = M, .K = K, .N = N};
  int64_t n = B * M * K * N;
  tb.H_re = malloc((size_t)n * sizeof(double));
  tb.H_im = malloc((size_t)n * sizeof(double));
  for (int64_t i = 0; i < n; i++) tb.H_re[i] = sg_rng_normal(r), tb.H_im[i] = sg_rng_normal(r);
  tb.in = make_inputs(r, dt, B, M, K, 2 * N);
  for (int64_t i = 0; i < B * M * K; i++)
    for (int j = 0; j < N; j++) {
      sg_set(tb.in.H, i * 2 * N + j, tb.H_re[i * N + j]);
      sg_set(tb.in.H, i * 2 * N + N + j, tb.H_im[i * N + j]);
    }
  return tb;
}

static void free_batch(train_batch *tb) {
  free(tb->H_re);
  free(tb->H_im);
  free_inputs(&tb->in);
}

/* One training step: forward with drawn noise, rate, loss, backward, Adam. */
static double train_step(sg_graph *g, const assoc_gnn *m, sg_adam *opt, const train_batch *tb,
                         sg_rng *rng, const double *mu) {
  sg_graph_reset(g);
  sg_params_zero_grad(sg_params_tensors(m->params), sg_params_count(m->params));
  assoc_gnn_output o =
      assoc_gnn_forward(g, m, tb->in.p, tb->in.q, tb->in.H, ASSOC_GNN_TRAIN, rng, NULL);
  sg_tensor *c_re, *c_im;
  assoc_mrt_couplings(g, tb->H_re, tb->H_im, tb->B, tb->M, tb->K, tb->N, 10.0, 1.0, m->cfg.dtype,
                      &c_re, &c_im);
  sg_tensor *rate = assoc_sum_rate(g, o.assoc, c_re, c_im, 1.0);
  sg_tensor *loss = assoc_loss(g, rate, o.assoc, mu, m->cfg.capacity, 0.5, NULL);
  double value = sg_get(loss, 0);
  sg_backward(g, loss);
  sg_adam_step(opt);
  return value;
}

/* After warm-up, a float32 training step allocates nothing outside the
 * graph arena's retained memory. */
START_TEST(gnn_train_step_no_allocation) {
  assoc_gnn_config cfg = tiny_config(ASSOC_GNN_ATTSKGS);
  cfg.dtype = SG_F32, cfg.d = 16, cfg.h = 32;
  assoc_gnn *m = assoc_gnn_new(&cfg, 80);
  sg_rng r;
  sg_rng_seed(&r, 81);
  train_batch tb = make_batch(&r, SG_F32, 8, 2, 4, 2);
  sg_adam *opt = sg_adam_new(sg_params_tensors(m->params), sg_params_count(m->params), 1e-3);
  sg_graph *g = sg_graph_new();
  const double mu[2] = {0.1, 0.2};
  for (int i = 0; i < 3; i++) train_step(g, m, opt, &tb, &r, mu);
  sg_test_count_allocations();
  for (int i = 0; i < 3; i++) train_step(g, m, opt, &tb, &r, mu);
  sg_set_allocator(NULL);
  ck_assert_int_eq(sg_test_allocations, 0);
  sg_graph_free(g);
  sg_adam_free(opt);
  free_batch(&tb);
  assoc_gnn_free(m);
}
END_TEST

/* Memory planning (released data and used gradients reused within a step)
 * changes where tensors live, never what is computed: two training steps
 * and an eval forward of every variant, at sizes where blocks are reused,
 * give the same losses, weights and outputs bit for bit as with reuse off,
 * and reuse does shrink the arena. */
START_TEST(gnn_memory_reuse_is_exact) {
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) {
    assoc_gnn_config cfg = tiny_config(v);
    cfg.dtype = SG_F32, cfg.d = 16, cfg.h = 32;
    assoc_gnn *m[2] = {assoc_gnn_new(&cfg, 60), assoc_gnn_new(&cfg, 60)};
    sg_rng r;
    sg_rng_seed(&r, 61);
    train_batch tb = make_batch(&r, SG_F32, 256, 2, 4, 2); /* 2048 edges: 256 KiB per h-wide */
    const double mu[2] = {0.1, 0.2};
    double loss[2][2];
    size_t used[2];
    sg_tensor *eval[2];
    sg_graph *g[2];
    for (int reuse = 0; reuse < 2; reuse++) {
      sg_adam *opt =
          sg_adam_new(sg_params_tensors(m[reuse]->params), sg_params_count(m[reuse]->params), 1e-2);
      g[reuse] = sg_graph_new();
      sg_set_memory_reuse(g[reuse], reuse);
      sg_rng noise;
      sg_rng_seed(&noise, 62);
      for (int step = 0; step < 2; step++)
        loss[reuse][step] = train_step(g[reuse], m[reuse], opt, &tb, &noise, mu);
      used[reuse] = sg_graph_arena_used(g[reuse]);
      sg_graph_reset(g[reuse]);
      sg_set_grad_enabled(g[reuse], false);
      eval[reuse] = assoc_gnn_forward(g[reuse], m[reuse], tb.in.p, tb.in.q, tb.in.H, ASSOC_GNN_EVAL,
                                      NULL, NULL)
                        .assoc;
      sg_adam_free(opt);
    }
    const char *name = assoc_gnn_variant_name((assoc_gnn_variant)v);
    ck_assert_msg(used[1] < used[0], "%s: reuse did not shrink the arena (%zu vs %zu)", name,
                  used[1], used[0]);
    for (int step = 0; step < 2; step++)
      ck_assert_msg(loss[0][step] == loss[1][step], "%s step %d: loss %.9g vs %.9g", name, step,
                    loss[0][step], loss[1][step]);
    for (int i = 0; i < sg_params_count(m[0]->params); i++) {
      const sg_tensor *a = sg_params_at(m[0]->params, i), *b = sg_params_at(m[1]->params, i);
      ck_assert_msg(memcmp(a->data, b->data, (size_t)a->numel * sizeof(float)) == 0,
                    "%s: %s differs after two steps", name, sg_params_name(m[0]->params, i));
    }
    ck_assert(memcmp(eval[0]->data, eval[1]->data, (size_t)eval[0]->numel * sizeof(float)) == 0);
    for (int reuse = 0; reuse < 2; reuse++) {
      sg_graph_free(g[reuse]);
      assoc_gnn_free(m[reuse]);
    }
    free_batch(&tb);
  }
}
END_TEST

/* Every variant learns on a fixed batch: the loss after 150 Adam steps is
 * clearly below the first. */
START_TEST(gnn_training_reduces_loss) {
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) {
    assoc_gnn_config cfg = tiny_config(v);
    cfg.dtype = SG_F32, cfg.d = 16, cfg.h = 32;
    assoc_gnn *m = assoc_gnn_new(&cfg, 90);
    sg_rng r;
    sg_rng_seed(&r, 91);
    train_batch tb = make_batch(&r, SG_F32, 16, 2, 4, 2);
    sg_adam *opt = sg_adam_new(sg_params_tensors(m->params), sg_params_count(m->params), 3e-3);
    sg_graph *g = sg_graph_new();
    double first = 0, last = 0;
    for (int i = 0; i < 150; i++) {
      double l = train_step(g, m, opt, &tb, &r, NULL);
      if (i < 10) first += l / 10;
      if (i >= 140) last += l / 10;
    }
    ck_assert_msg(last < first - 0.1, "%s: loss %g -> %g", assoc_gnn_variant_name(v), first, last);
    sg_graph_free(g);
    sg_adam_free(opt);
    free_batch(&tb);
    assoc_gnn_free(m);
  }
}
END_TEST

/* assoc_gnn_predict: chunks of any size give the whole-batch eval forward,
 * the working memory follows the chunk, misuse is reported. */
START_TEST(gnn_predict_in_chunks) {
  sg_rng r;
  sg_rng_seed(&r, 61);
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) {
    assoc_gnn_config cfg = tiny_config(v);
    assoc_gnn *m = assoc_gnn_new(&cfg, 60 + v);
    gnn_inputs in = make_inputs(&r, SG_F64, 7, 2, 5, cfg.fe);
    sg_graph *g = sg_graph_new(), *scratch = sg_graph_new();
    sg_set_grad_enabled(g, false);
    sg_tensor *ref = assoc_gnn_forward(g, m, in.p, in.q, in.H, ASSOC_GNN_EVAL, NULL, NULL).assoc;
    const int64_t chunks[] = {1, 3, 7, 100, 0};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
      sg_tensor *A = assoc_gnn_predict(scratch, m, in.p, in.q, in.H, chunks[c]);
      ck_assert_ptr_nonnull(A);
      ck_assert_int_eq(A->ndim, 3);
      ck_assert_int_eq(A->numel, ref->numel);
      for (int64_t i = 0; i < A->numel; i++)
        ck_assert_double_eq_tol(sg_get(A, i), sg_get(ref, i), 1e-13);
      sg_free(A);
    }
    ck_assert(sg_grad_enabled(scratch)); /* restored */
    sg_graph_free(g);
    sg_graph_free(scratch);
    free_inputs(&in);
    assoc_gnn_free(m);
  }
  /* Working memory: a float32 model whose hidden activations take 16 KiB
   * per sample; 8-sample chunks need far less arena than 64. */
  assoc_gnn_config cfg = assoc_gnn_config_paper(ASSOC_GNN_ATTSKGS);
  cfg.d = 64, cfg.h = 256;
  assoc_gnn *m = assoc_gnn_new(&cfg, 62);
  gnn_inputs in = make_inputs(&r, SG_F32, 64, 2, 8, cfg.fe);
  sg_graph *scratch = sg_graph_new();
  size_t used[2];
  const int64_t sizes[2] = {8, 64};
  for (int i = 0; i < 2; i++) {
    sg_free(assoc_gnn_predict(scratch, m, in.p, in.q, in.H, sizes[i]));
    used[i] = sg_graph_arena_used(scratch);
  }
  ck_assert_uint_lt(4 * used[0], used[1]);
  ck_assert_int_eq(assoc_gnn_predict_chunk(m, 8, 2), (2 << 20) / (8 * 2 * 256 * 4));
  /* Misuse: inputs in the scratch graph (it is reset), a wrong shape. */
  sg_test_capture_errors();
  sg_tensor *p_in_scratch = sg_clone(scratch, in.p);
  SG_EXPECT_MISUSE(assoc_gnn_predict(scratch, m, p_in_scratch, in.q, in.H, 0), "assoc_gnn_predict",
                   "scratch graph");
  SG_EXPECT_MISUSE(assoc_gnn_predict(scratch, m, in.q, in.p, in.H, 0), "assoc_gnn_predict", "H is",
                   "[64, 2, 8, 8]");
  sg_set_error_handler(NULL, NULL);
  sg_graph_free(scratch);
  free_inputs(&in);
  assoc_gnn_free(m);
}
END_TEST

Suite *suite_gnn(void) {
  Suite *s = suite_create("gnn");
  struct {
    const char *name;
    const TTest *test;
  } cases[] = {
      {"params_registry", params_registry},
      {"linear_layer_init_and_forward", linear_layer_init_and_forward},
      {"mlp_forward_and_parts", mlp_forward_and_parts},
      {"gradcheck_mlp_parts", gradcheck_mlp_parts},
      {"gradcheck_mlp_frozen_first_layer", gradcheck_mlp_frozen_first_layer},
      {"layernorm_layer", layernorm_layer},
      {"cosine_warm_restarts", cosine_warm_restarts},
      {"sum_rate_matches_scalar", sum_rate_matches_scalar},
      {"gradcheck_sum_rate", gradcheck_sum_rate},
      {"assoc_loss_value_and_gradient", assoc_loss_value_and_gradient},
      {"gradcheck_gnn_attskgs", gradcheck_gnn_attskgs},
      {"gradcheck_gnn_skgs", gradcheck_gnn_skgs},
      {"gradcheck_gnn_gs", gradcheck_gnn_gs},
      {"gradcheck_gnn_sma", gradcheck_gnn_sma},
      {"gradcheck_gnn_concat_path", gradcheck_gnn_concat_path},
      {"gradcheck_gnn_balanced", gradcheck_gnn_balanced},
      {"gnn_split_matches_concat", gnn_split_matches_concat},
      {"gnn_permutation_equivariance", gnn_permutation_equivariance},
      {"gnn_other_sizes", gnn_other_sizes},
      {"gnn_predict_in_chunks", gnn_predict_in_chunks},
      {"gnn_noise_modes", gnn_noise_modes},
      {"gnn_post_processing", gnn_post_processing},
      {"gnn_forward_misuse", gnn_forward_misuse},
      {"assoc_eval_helpers", assoc_eval_helpers},
      {"gnn_param_count_paper", gnn_param_count_paper},
      {"gnn_f32_forward", gnn_f32_forward},
      {"gnn_train_step_no_allocation", gnn_train_step_no_allocation},
      {"gnn_memory_reuse_is_exact", gnn_memory_reuse_is_exact},
      {"gnn_training_reduces_loss", gnn_training_reduces_loss},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    TCase *tc = tcase_create(cases[i].name);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, cases[i].test);
    suite_add_tcase(s, tc);
  }
  return s;
}
