/* The differentiable beam ops (models/gnn/beamrate.c): couplings of
 * arbitrary beams, the sum-rate with beams (assoc_sum_rate on them) and the
 * per-BS power normalisation. Forward values against direct complex loops
 * written here, float64 gradient checks, MRT beams against
 * assoc_mrt_couplings, the gradient at the projection's kink, and float32
 * against float64 at a model's shapes. */
#include <complex.h>
#include <stdlib.h>

#include "assoc_gnn.h"
#include "sg_test.h"

/* ---- inputs and direct references ------------------------------------------------ */

/* Caller-owned float64 tensors: H, V [B, M, K, N] and A [B, K, M]. */
typedef struct beam_set {
  int64_t B, M, K, N;
  sg_tensor *H_re, *H_im, *V_re, *V_im, *A;
} beam_set;

/* Gaussian H and V; A uniform in [0.05, 1] (fractional) or, with integer
 * set, each UE on BS k % M except UE 0 of every sample, dropped. */
static beam_set make_set(sg_rng *r, int64_t B, int64_t M, int64_t K, int64_t N, bool integer) {
  int64_t edge[4] = {B, M, K, N}, a[3] = {B, K, M};
  beam_set s = {.B = B, .M = M, .K = K, .N = N};
  s.H_re = sg_rand_normal(NULL, r, SG_F64, 4, edge, 0, 1);
  s.H_im = sg_rand_normal(NULL, r, SG_F64, 4, edge, 0, 1);
  s.V_re = sg_rand_normal(NULL, r, SG_F64, 4, edge, 0, 1);
  s.V_im = sg_rand_normal(NULL, r, SG_F64, 4, edge, 0, 1);
  s.A = sg_rand_uniform(NULL, r, SG_F64, 3, a, 0.05, 1);
  for (int64_t i = 0; integer && i < B * K * M; i++) {
    int64_t k = i / M % K, m = i % M;
    sg_set(s.A, i, (k > 0 && m == k % M) ? 1.0 : 0.0);
  }
  return s;
}

static void free_set(beam_set *s) {
  sg_free(s->H_re), sg_free(s->H_im), sg_free(s->V_re), sg_free(s->V_im), sg_free(s->A);
}

static double complex cget(const sg_tensor *re, const sg_tensor *im, int64_t i) {
  return sg_get(re, i) + I * sg_get(im, i);
}

static int64_t edge_at(const beam_set *s, int64_t b, int64_t m, int64_t k, int64_t n) {
  return ((b * s->M + m) * s->K + k) * s->N + n;
}

static double a_at(const beam_set *s, int64_t b, int64_t k, int64_t m) {
  return sg_get(s->A, (b * s->K + k) * s->M + m);
}

/* h_mk^T v_ml of sample b, summed by hand. */
static double complex ref_coupling(const beam_set *s, int64_t b, int64_t m, int64_t k, int64_t l) {
  double complex c = 0;
  for (int64_t n = 0; n < s->N; n++)
    c += cget(s->H_re, s->H_im, edge_at(s, b, m, k, n)) *
         cget(s->V_re, s->V_im, edge_at(s, b, m, l, n));
  return c;
}

/* R of sample b from the channels, the beams and A. */
static double ref_rate(const beam_set *s, int64_t b, double noise) {
  double R = 0;
  for (int64_t k = 0; k < s->K; k++) {
    double complex sig = 0;
    double interference = 0;
    for (int64_t m = 0; m < s->M; m++) sig += a_at(s, b, k, m) * ref_coupling(s, b, m, k, k);
    for (int64_t l = 0; l < s->K; l++) {
      if (l == k) continue;
      double complex z = 0;
      for (int64_t m = 0; m < s->M; m++) z += a_at(s, b, l, m) * ref_coupling(s, b, m, k, l);
      interference += creal(z * conj(z));
    }
    R += log2(1 + creal(sig * conj(sig)) / (interference + noise));
  }
  return R;
}

/* sum_k a_km^2 ||v_mk||^2 of BS m's beams re/im (laid out as s's):
 * the power it radiates. */
static double ref_power(const beam_set *s, const sg_tensor *re, const sg_tensor *im, int64_t b,
                        int64_t m) {
  double n2 = 0;
  for (int64_t k = 0; k < s->K; k++) {
    double e = 0;
    for (int64_t n = 0; n < s->N; n++) {
      double complex v = cget(re, im, edge_at(s, b, m, k, n));
      e += creal(v * conj(v));
    }
    n2 += a_at(s, b, k, m) * a_at(s, b, k, m) * e;
  }
  return n2;
}

/* ||V_m||_F^2 as the normalisation defines it: the power plus 1e-12. */
static double ref_norm2(const beam_set *s, const sg_tensor *re, const sg_tensor *im, int64_t b,
                        int64_t m) {
  return ref_power(s, re, im, b, m) + 1e-12;
}

/* Scales BS m's beams of sample b so that their norm is ratio sqrt(P). */
static void scale_bs(beam_set *s, int64_t b, int64_t m, double power, double ratio) {
  double f = ratio * sqrt(power / ref_norm2(s, s->V_re, s->V_im, b, m));
  for (int64_t k = 0; k < s->K; k++)
    for (int64_t n = 0; n < s->N; n++) {
      int64_t i = edge_at(s, b, m, k, n);
      sg_set(s->V_re, i, f * sg_get(s->V_re, i));
      sg_set(s->V_im, i, f * sg_get(s->V_im, i));
    }
}

/* Flattened real parts followed by flattened imaginary parts. */
static sg_tensor *flat2(sg_graph *g, assoc_complex c) {
  if (!c.re || !c.im) return NULL;
  sg_tensor *parts[2] = {sg_reshape(g, c.re, 1, (int64_t[]){-1}),
                         sg_reshape(g, c.im, 1, (int64_t[]){-1})};
  return sg_concat(g, 2, parts, 0);
}

/* B, M, K, N: the second has K > M N; K > M everywhere, so that the integer
 * A (UE 0 dropped) leaves no BS without a UE. */
static const int64_t sizes[][4] = {{2, 2, 3, 2}, {2, 2, 5, 2}, {1, 2, 3, 1}};
enum { NSIZES = sizeof sizes / sizeof *sizes };

/* ---- couplings and rate --------------------------------------------------------- */

/* Against the direct loop, on both layouts: separate tensors and the
 * 2N-real beam-head output read by assoc_beams_split. */
START_TEST(couplings_forward) {
  sg_rng r;
  sg_rng_seed(&r, 1);
  for (int z = 0; z < NSIZES; z++) {
    beam_set s = make_set(&r, sizes[z][0], sizes[z][1], sizes[z][2], sizes[z][3], false);
    sg_graph *g = sg_graph_new();
    sg_tensor *parts[2] = {s.V_re, s.V_im};
    assoc_complex v = assoc_beams_split(g, sg_concat(g, 2, parts, 3));
    ck_assert(sg_same_shape(v.re, s.V_re) && sg_same_shape(v.im, s.V_im));
    assoc_complex c[2] = {assoc_beam_couplings(g, s.H_re, s.H_im, s.V_re, s.V_im),
                          assoc_beam_couplings(g, s.H_re, s.H_im, v.re, v.im)};
    for (int t = 0; t < 2; t++) {
      ck_assert_int_eq(c[t].re->ndim, 4);
      ck_assert_int_eq(c[t].re->shape[3], s.K);
      for (int64_t b = 0; b < s.B; b++)
        for (int64_t m = 0; m < s.M; m++)
          for (int64_t k = 0; k < s.K; k++)
            for (int64_t l = 0; l < s.K; l++) {
              double complex want = ref_coupling(&s, b, m, k, l);
              double complex got = cget(c[t].re, c[t].im, ((b * s.M + m) * s.K + k) * s.K + l);
              ck_assert_msg(cabs(got - want) <= 1e-14 * (1 + cabs(want)),
                            "size %d [%lld %lld %lld %lld]", z, (long long)b, (long long)m,
                            (long long)k, (long long)l);
            }
    }
    sg_graph_free(g);
    free_set(&s);
  }
}
END_TEST

/* The rate with beams through assoc_sum_rate, for fractional and integer A,
 * against the direct loop from h, v and A. */
START_TEST(rate_forward) {
  sg_rng r;
  sg_rng_seed(&r, 2);
  for (int z = 0; z < NSIZES; z++)
    for (int integer = 0; integer < 2; integer++) {
      beam_set s = make_set(&r, sizes[z][0], sizes[z][1], sizes[z][2], sizes[z][3], integer);
      sg_graph *g = sg_graph_new();
      assoc_complex c = assoc_beam_couplings(g, s.H_re, s.H_im, s.V_re, s.V_im);
      sg_tensor *R = assoc_sum_rate(g, s.A, c.re, c.im, 0.3);
      for (int64_t b = 0; b < s.B; b++) {
        double want = ref_rate(&s, b, 0.3);
        ck_assert(want > 0.1);
        ck_assert_msg(fabs(sg_get(R, b) - want) <= 1e-12 * want,
                      "size %d integer %d: %.17g vs %.17g", z, integer, sg_get(R, b), want);
      }
      sg_graph_free(g);
      free_set(&s);
    }
}
END_TEST

static sg_tensor *couplings_fn(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n, (void)ctx;
  return flat2(g, assoc_beam_couplings(g, in[0], in[1], in[2], in[3]));
}

static sg_tensor *rate_fn(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n, (void)ctx;
  assoc_complex c = assoc_beam_couplings(g, in[0], in[1], in[2], in[3]);
  return assoc_sum_rate(g, in[4], c.re, c.im, 0.3);
}

/* Gradients in V (H constant), then in H and V together; the rate in V and
 * A for fractional A and in V for integer A. Default tolerances (atol 1e-7,
 * rtol 1e-6), every element. */
START_TEST(gradcheck_couplings_and_rate) {
  sg_rng r;
  sg_rng_seed(&r, 3);
  for (int z = 0; z < NSIZES; z++)
    for (int integer = 0; integer < 2; integer++) {
      beam_set s = make_set(&r, sizes[z][0], sizes[z][1], sizes[z][2], sizes[z][3], integer);
      sg_tensor *in[5] = {s.H_re, s.H_im, s.V_re, s.V_im, s.A};
      sg_set_requires_grad(s.V_re, true), sg_set_requires_grad(s.V_im, true);
      sg_gradcheck_result res = sg_gradcheck(couplings_fn, in, 4, NULL, NULL);
      SG_ASSERT_CHECK(res);
      ck_assert_int_eq(res.checked, 2 * s.B * s.M * s.K * s.N);
      sg_set_requires_grad(s.A, !integer);
      res = sg_gradcheck(rate_fn, in, 5, NULL, NULL);
      SG_ASSERT_CHECK(res);
      ck_assert_int_eq(res.checked, 2 * s.B * s.M * s.K * s.N + (integer ? 0 : s.B * s.K * s.M));
      sg_set_requires_grad(s.H_re, true), sg_set_requires_grad(s.H_im, true);
      SG_ASSERT_CHECK(sg_gradcheck(couplings_fn, in, 4, NULL, NULL));
      free_set(&s);
    }
}
END_TEST

/* MRT beams v_ml = sqrt(pt/N) conj(h_ml)/|h_ml| / sqrt(noise) (zero for a
 * zero channel) give assoc_mrt_couplings' couplings, so the rate with beams
 * is assoc_sum_rate's MRT rate. Channel-like magnitudes, 30 dBm, -84 dBm. */
START_TEST(mrt_beams_match) {
  enum { B = 3, M = 2, K = 5, N = 3 };
  const double pt = 1.0, noise = 4e-12;
  sg_rng r;
  sg_rng_seed(&r, 4);
  beam_set s = make_set(&r, B, M, K, N, false);
  double h_re[B * M * K * N], h_im[B * M * K * N];
  for (int64_t i = 0; i < B * M * K * N; i++) {
    bool zero = i / N == (1 * M + 1) * K + 2; /* h of sample 1, BS 1, UE 2 */
    sg_set(s.H_re, i, h_re[i] = zero ? 0 : 1e-5 * sg_get(s.H_re, i));
    sg_set(s.H_im, i, h_im[i] = zero ? 0 : 1e-5 * sg_get(s.H_im, i));
  }
  for (int64_t e = 0; e < B * M * K; e++) {
    double norm2 = 0;
    for (int64_t n = 0; n < N; n++)
      norm2 += h_re[e * N + n] * h_re[e * N + n] + h_im[e * N + n] * h_im[e * N + n];
    double f = norm2 > 0 ? sqrt(pt / N / noise / norm2) : 0;
    for (int64_t n = 0; n < N; n++) {
      sg_set(s.V_re, e * N + n, f * h_re[e * N + n]);
      sg_set(s.V_im, e * N + n, -f * h_im[e * N + n]);
    }
  }
  sg_graph *g = sg_graph_new();
  sg_tensor *m_re, *m_im;
  ck_assert_int_eq(assoc_mrt_couplings(g, h_re, h_im, B, M, K, N, pt, noise, SG_F64, &m_re, &m_im),
                   0);
  assoc_complex c = assoc_beam_couplings(g, s.H_re, s.H_im, s.V_re, s.V_im);
  double largest = 0;
  for (int64_t i = 0; i < B * M * K * K; i++) {
    double complex want = cget(m_re, m_im, i);
    largest = fmax(largest, cabs(want));
    ck_assert_msg(cabs(cget(c.re, c.im, i) - want) <= 1e-12 * (1 + cabs(want)), "coupling %lld",
                  (long long)i);
  }
  ck_assert(largest > 1); /* couplings of SNR scale, not all tiny */
  sg_tensor *R = assoc_sum_rate(g, s.A, c.re, c.im, 1.0);
  sg_tensor *R_mrt = assoc_sum_rate(g, s.A, m_re, m_im, 1.0);
  for (int64_t b = 0; b < B; b++) {
    ck_assert(sg_get(R_mrt, b) > 1);
    ck_assert_double_eq_tol(sg_get(R, b), sg_get(R_mrt, b), 1e-12 * sg_get(R_mrt, b));
    ck_assert_double_eq_tol(sg_get(R, b), ref_rate(&s, b, 1.0), 1e-12 * sg_get(R_mrt, b));
  }
  sg_graph_free(g);
  free_set(&s);
}
END_TEST

/* ---- power normalisation -------------------------------------------------------- */

static const double powers[] = {1.5, 1.0, 2.0};

/* Against the direct loop, for both modes, fractional and integer A, with
 * each BS of each sample scaled inside (ratio 0.8) or outside (ratio 2.5)
 * the ball. Projection: an inside BS is unchanged (exactly), an outside
 * one lands on the sphere; full power: every BS on the sphere. The sphere
 * of the radiated power: the output's sum_k a_km^2 ||v_mk||^2 is
 * P n2 / (n2 + 1e-12) (n2 the input's), checked to round-off, so its root
 * is sqrt(P) to a relative 1e-12 / (2 n2) <= 8e-13 here (n2 >= 0.64). */
START_TEST(normalize_forward) {
  sg_rng r;
  sg_rng_seed(&r, 5);
  for (int z = 0; z < NSIZES; z++)
    for (int integer = 0; integer < 2; integer++) {
      beam_set s = make_set(&r, sizes[z][0], sizes[z][1], sizes[z][2], sizes[z][3], integer);
      for (int64_t b = 0; b < s.B; b++)
        for (int64_t m = 0; m < s.M; m++) scale_bs(&s, b, m, powers[m], (b + m) % 2 ? 2.5 : 0.8);
      sg_graph *g = sg_graph_new();
      for (int mode = 0; mode < 2; mode++) {
        assoc_complex v = assoc_beam_normalize(g, s.A, s.V_re, s.V_im, powers, mode);
        ck_assert(sg_same_shape(v.re, s.V_re));
        for (int64_t b = 0; b < s.B; b++)
          for (int64_t m = 0; m < s.M; m++) {
            double n2 = ref_power(&s, s.V_re, s.V_im, b, m), root = sqrt(powers[m]);
            double norm = sqrt(n2 + 1e-12);
            bool inside = (b + m) % 2 == 0;
            double f = mode == ASSOC_BEAM_PROJECT ? fmin(1, root / norm) : root / norm;
            for (int64_t i = edge_at(&s, b, m, 0, 0); i < edge_at(&s, b, m + 1, 0, 0); i++) {
              double complex want = f * cget(s.V_re, s.V_im, i), got = cget(v.re, v.im, i);
              ck_assert(cabs(got - want) <= 1e-14 * (1 + cabs(want)));
              if (mode == ASSOC_BEAM_PROJECT && inside) ck_assert(got == cget(s.V_re, s.V_im, i));
            }
            double after = ref_power(&s, v.re, v.im, b, m);
            ck_assert(fabs(after - f * f * n2) <= 1e-14 * after);
            if (mode == ASSOC_BEAM_FULL_POWER || !inside) {
              ck_assert(fabs(after - powers[m] * n2 / (n2 + 1e-12)) <= 1e-14 * after);
              ck_assert_msg(fabs(sqrt(after) - root) <= 1e-12 * root, "mode %d: %.17g vs %.17g",
                            mode, sqrt(after), root);
            } else
              ck_assert_double_eq_tol(sqrt(after), 0.8 * root, 1e-12 * root);
          }
      }
      sg_graph_free(g);
      free_set(&s);
    }
}
END_TEST

typedef struct norm_ctx {
  assoc_beam_norm mode;
} norm_ctx;

static sg_tensor *normalize_fn(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  return flat2(g, assoc_beam_normalize(g, in[0], in[1], in[2], powers, ((norm_ctx *)ctx)->mode));
}

/* Gradients in A and V, both modes, BSs inside and outside the ball (away
 * from the kink: ratios 0.6 and 1.7), fractional and integer A. */
START_TEST(gradcheck_normalize) {
  sg_rng r;
  sg_rng_seed(&r, 6);
  for (int z = 0; z < NSIZES; z++)
    for (int integer = 0; integer < 2; integer++) {
      beam_set s = make_set(&r, sizes[z][0], sizes[z][1], sizes[z][2], sizes[z][3], integer);
      for (int64_t b = 0; b < s.B; b++)
        for (int64_t m = 0; m < s.M; m++) scale_bs(&s, b, m, powers[m], (b + m) % 2 ? 1.7 : 0.6);
      sg_tensor *in[3] = {s.A, s.V_re, s.V_im};
      for (int i = 0; i < 3; i++) sg_set_requires_grad(in[i], true);
      for (int mode = 0; mode < 2; mode++) {
        norm_ctx ctx = {mode};
        sg_gradcheck_result res = sg_gradcheck(normalize_fn, in, 3, &ctx, NULL);
        SG_ASSERT_CHECK(res);
        ck_assert_int_eq(res.checked, s.B * s.K * s.M + 2 * s.B * s.M * s.K * s.N);
      }
      free_set(&s);
    }
}
END_TEST

/* At the kink (||V_m||_F = sqrt(P_m) to the last bit) the projection's
 * gradient is the inside branch's: the identity in V, zero in A. The
 * beams and A are dyadic, so ||V_m||_F^2 is exact up to the added 1e-12,
 * and P = ||V_m||_F^2 rounded has sqrt(P) = ||V_m||_F exactly. */
START_TEST(projection_kink_gradient) {
  const double vr[4] = {1, 0.5, -0.25, 0}, vi[4] = {0.5, 0, 1, -1}, a[2] = {1, 0.5};
  const double w[8] = {0.3, -1.2, 0.7, 2.0, -0.4, 1.1, 0.9, -0.6};
  double n2 = (1 + 0.25 + 0.25) + 0.25 * (0.0625 + 1 + 1) + 1e-12, norm = sqrt(n2);
  double power = norm * norm;
  ck_assert(sqrt(power) == norm);
  sg_graph *g = sg_graph_new();
  int64_t edge[4] = {1, 1, 2, 2};
  sg_tensor *A = sg_from_f64(NULL, SG_F64, 3, (int64_t[]){1, 2, 1}, a);
  sg_tensor *V_re = sg_from_f64(NULL, SG_F64, 4, edge, vr),
            *V_im = sg_from_f64(NULL, SG_F64, 4, edge, vi);
  sg_tensor *W = sg_from_f64(g, SG_F64, 1, (int64_t[]){8}, w);
  sg_set_requires_grad(A, true), sg_set_requires_grad(V_re, true), sg_set_requires_grad(V_im, true);
  sg_tensor *y = flat2(g, assoc_beam_normalize(g, A, V_re, V_im, &power, ASSOC_BEAM_PROJECT));
  for (int i = 0; i < 4; i++) ck_assert(sg_get(y, i) == vr[i] && sg_get(y, 4 + i) == vi[i]);
  sg_backward(g, sg_sum_all(g, sg_mul(g, y, W)));
  for (int i = 0; i < 4; i++)
    ck_assert(sg_get(V_re->grad, i) == w[i] && sg_get(V_im->grad, i) == w[4 + i]);
  for (int k = 0; k < 2; k++) ck_assert(!A->grad || sg_get(A->grad, k) == 0.0);
  /* Just outside (P a little smaller) the gradient in A is not zero. */
  sg_zero_grad(A), sg_zero_grad(V_re), sg_zero_grad(V_im);
  double smaller = 0.99 * power;
  y = flat2(g, assoc_beam_normalize(g, A, V_re, V_im, &smaller, ASSOC_BEAM_PROJECT));
  sg_backward(g, sg_sum_all(g, sg_mul(g, y, W)));
  ck_assert(A->grad && fabs(sg_get(A->grad, 0)) > 1e-3);
  sg_graph_free(g);
  sg_free(A), sg_free(V_re), sg_free(V_im);
}
END_TEST

START_TEST(misuse_reported) {
  sg_rng r;
  sg_rng_seed(&r, 7);
  beam_set s = make_set(&r, 2, 2, 3, 2, false);
  sg_tensor *wrong = sg_rand_normal(NULL, &r, SG_F64, 4, (int64_t[]){2, 2, 4, 2}, 0, 1);
  sg_tensor *odd = sg_rand_normal(NULL, &r, SG_F64, 2, (int64_t[]){3, 5}, 0, 1);
  sg_graph *g = sg_graph_new();
  sg_test_capture_errors();
  SG_EXPECT_MISUSE(assoc_beam_couplings(g, s.H_re, s.H_im, wrong, s.V_im).re,
                   "assoc_beam_couplings", "[2, 2, 4, 2]", "[B, M, K, N]");
  SG_EXPECT_MISUSE(assoc_beam_normalize(g, s.A, wrong, wrong, powers, ASSOC_BEAM_PROJECT).re,
                   "assoc_beam_normalize", "[2, 3, 2]", "[2, 2, 4, 2]");
  double bad[2] = {1, 0};
  SG_EXPECT_MISUSE(assoc_beam_normalize(g, s.A, s.V_re, s.V_im, bad, ASSOC_BEAM_FULL_POWER).im,
                   "assoc_beam_normalize", "powers > 0");
  SG_EXPECT_MISUSE(assoc_beams_split(g, odd).re, "assoc_beams_split", "[3, 5]", "even");
  sg_set_error_handler(NULL, NULL);
  sg_graph_free(g);
  sg_free(wrong), sg_free(odd);
  free_set(&s);
}
END_TEST

/* ---- float32 ---------------------------------------------------------------------- */

typedef struct chain_ctx {
  assoc_beam_norm mode;
  double power[2];
} chain_ctx;

/* The model's path: beam-head output o [B, M, K, 2N] -> beams ->
 * normalisation with A -> couplings -> rate (noise 1). in: o, A, H_re, H_im. */
static sg_tensor *chain_fn(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  chain_ctx *c = ctx;
  assoc_complex v = assoc_beams_split(g, in[0]);
  v = assoc_beam_normalize(g, in[1], v.re, v.im, c->power, c->mode);
  assoc_complex cp = assoc_beam_couplings(g, in[2], in[3], v.re, v.im);
  return assoc_sum_rate(g, in[1], cp.re, cp.im, 1.0);
}

/* B 64, M 2, K 8, N 4: channels h/sqrt(noise) with link gains spread over
 * 40 dB, A with rows on the simplex, beams N(0, 1); BS 0 (P 1) outside its
 * ball, BS 1 (P 30) inside it in most samples. The float32 output and
 * gradients of every input against float64 on the same (rounded) values,
 * relative L2 error <= 1e-6 (round-off gives about 2e-7); also the
 * couplings alone. */
START_TEST(float32_matches_float64) {
  enum { B = 64, M = 2, K = 8, N = 4 };
  sg_rng r;
  sg_rng_seed(&r, 8);
  beam_set s = make_set(&r, B, M, K, N, false);
  for (int64_t e = 0; e < B * M * K; e++) {
    double gain = pow(10, -1.5 + 2 * sg_rng_uniform(&r));
    for (int64_t n = 0; n < N; n++) {
      sg_set(s.H_re, e * N + n, gain * sg_get(s.H_re, e * N + n));
      sg_set(s.H_im, e * N + n, gain * sg_get(s.H_im, e * N + n));
    }
  }
  for (int64_t row = 0; row < B * K; row++) {
    double sum = sg_get(s.A, row * M) + sg_get(s.A, row * M + 1);
    for (int64_t m = 0; m < M; m++) sg_set(s.A, row * M + m, sg_get(s.A, row * M + m) / sum);
  }
  sg_graph *g = sg_graph_new();
  sg_tensor *parts[2] = {s.V_re, s.V_im};
  sg_tensor *o = sg_clone(NULL, sg_concat(g, 2, parts, 3));
  sg_graph_free(g);
  chain_ctx ctx = {ASSOC_BEAM_PROJECT, {1.0, 30.0}};
  int inside = 0;
  for (int64_t b = 0; b < B; b++)
    for (int64_t m = 0; m < M; m++) {
      double ratio = sqrt(ref_norm2(&s, s.V_re, s.V_im, b, m) / ctx.power[m]);
      ck_assert(fabs(ratio - 1) > 1e-3); /* both precisions on one side of the kink */
      inside += ratio < 1;
    }
  ck_assert(inside > B / 4 && inside < B);
  sg_tensor *in[4] = {o, s.A, s.H_re, s.H_im};
  sg_set_requires_grad(o, true), sg_set_requires_grad(s.A, true);
  for (int mode = 0; mode < 2; mode++) {
    ctx.mode = mode;
    sg_gradcheck_result res = sg_check_f32_grad(chain_fn, in, 4, &ctx, 1e-6);
    ck_assert_msg(res.ok, "mode %d: %s", mode, res.msg);
  }
  sg_tensor *cin[4] = {s.H_re, s.H_im, s.V_re, s.V_im};
  sg_set_requires_grad(s.V_re, true), sg_set_requires_grad(s.V_im, true);
  sg_gradcheck_result res = sg_check_f32_grad(couplings_fn, cin, 4, NULL, 1e-6);
  ck_assert_msg(res.ok, "couplings: %s", res.msg);
  sg_free(o);
  free_set(&s);
}
END_TEST

Suite *suite_beam_ops(void) {
  const sg_test_case cases[] = {
      {"couplings_forward", couplings_forward},
      {"rate_forward", rate_forward},
      {"gradcheck_couplings_and_rate", gradcheck_couplings_and_rate},
      {"mrt_beams_match", mrt_beams_match},
      {"normalize_forward", normalize_forward},
      {"gradcheck_normalize", gradcheck_normalize},
      {"projection_kink_gradient", projection_kink_gradient},
      {"misuse_reported", misuse_reported},
      {"float32_matches_float64", float32_matches_float64},
  };
  return sg_test_suite("beam_ops", cases, sizeof cases / sizeof *cases, 300);
}
