/* Neural-network building blocks (models/nn/sg_nn.h): the parameter registry, linear, MLP and
 * LayerNorm layers, the cosine schedule; the differentiable sum-rate and the training loss
 * (models/gnn/assoc_gnn.h). */
#include <complex.h>
#include <stdlib.h>
#include <string.h>

#include "assoc_gnn.h"
#include "assoc_wireless.h"
#include "gnn_helpers.h"
#include "sg_test.h"

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

/* A limit refuses, before allocating, the parameter that would exceed it
 * (even one whose size overflows), and a model whose configuration needs
 * more parameters than its limit is not built. */
START_TEST(params_limit) {
  sg_params *p = sg_params_new(SG_F32);
  sg_params_set_limit(p, 20);
  ck_assert_ptr_nonnull(sg_params_add(p, "w", 2, (int64_t[]){3, 4}));
  ck_assert_ptr_null(sg_params_add(p, "big", 2, (int64_t[]){3, 3})); /* 12 + 9 > 20 */
  ck_assert_ptr_null(sg_params_add(p, "huge", 2, (int64_t[]){INT64_MAX / 2, 4}));
  ck_assert_ptr_nonnull(sg_params_add(p, "b", 1, (int64_t[]){8})); /* 12 + 8 = 20 */
  ck_assert_int_eq(sg_params_count(p), 2);
  ck_assert_int_eq(sg_params_numel(p), 20);
  sg_params_free(p);

  assoc_gnn_config c = assoc_gnn_config_paper(ASSOC_GNN_GS);
  c.d = 4, c.h = 8, c.L = 1;
  assoc_gnn *m = assoc_gnn_new(&c, 1);
  ck_assert_ptr_nonnull(m);
  int64_t n = assoc_gnn_param_count(m);
  assoc_gnn_free(m);
  c.max_params = n; /* exactly enough */
  m = assoc_gnn_new(&c, 1);
  ck_assert_ptr_nonnull(m);
  ck_assert_int_eq(assoc_gnn_param_count(m), n);
  assoc_gnn_free(m);
  c.max_params = n - 1;
  ck_assert_ptr_null(assoc_gnn_new(&c, 1));
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

Suite *suite_gnn_nn(void) {
  const sg_test_case cases[] = {
      {"params_registry", params_registry},
      {"params_limit", params_limit},
      {"linear_layer_init_and_forward", linear_layer_init_and_forward},
      {"mlp_forward_and_parts", mlp_forward_and_parts},
      {"gradcheck_mlp_parts", gradcheck_mlp_parts},
      {"gradcheck_mlp_frozen_first_layer", gradcheck_mlp_frozen_first_layer},
      {"layernorm_layer", layernorm_layer},
      {"cosine_warm_restarts", cosine_warm_restarts},
      {"sum_rate_matches_scalar", sum_rate_matches_scalar},
      {"gradcheck_sum_rate", gradcheck_sum_rate},
      {"assoc_loss_value_and_gradient", assoc_loss_value_and_gradient},
  };
  return sg_test_suite("gnn_nn", cases, sizeof cases / sizeof cases[0], 60);
}
