/* Helpers shared by the beam-model test files (test_bfgnn.c,
 * test_jointgnn.c): random float64 inputs, edge indexing, the gradient
 * check over every parameter and the features, per-BS powers and sum-rates
 * by direct loops, and the parameter count of the SMA trunk. */
#ifndef BEAM_HELPERS_H
#define BEAM_HELPERS_H

#include <complex.h>
#include <math.h>
#include <stdlib.h>

#include "assoc_gnn.h"
#include "sg_test.h"

typedef struct beam_inputs {
  int64_t B, M, K, N;
  sg_tensor *p, *q, *X, *G_re, *G_im; /* caller-owned */
  sg_tensor *A;                       /* BFGNN's association [B, K, M], or NULL */
  sg_tensor *noise;                   /* JointGNN's Gumbel sample [B, K, M], or NULL */
  int *assoc;                         /* BFGNN's B x K integer association (-1 dropped), or NULL */
} beam_inputs;

/* Random float64 features p [B, M, 1], q [B, K, 1], X [B, M, K, 2N] and
 * rate channels G [B, M, K, N], drawn from r in this order. */
static inline beam_inputs make_beam_inputs(sg_rng *r, int64_t B, int64_t M, int64_t K, int64_t N) {
  beam_inputs in = {.B = B, .M = M, .K = K, .N = N};
  in.p = sg_rand_uniform(NULL, r, SG_F64, 3, (int64_t[]){B, M, 1}, 0.5, 1.5);
  in.q = sg_rand_uniform(NULL, r, SG_F64, 3, (int64_t[]){B, K, 1}, 0.5, 1.5);
  in.X = sg_rand_normal(NULL, r, SG_F64, 4, (int64_t[]){B, M, K, 2 * N}, 0.0, 1.0);
  in.G_re = sg_rand_normal(NULL, r, SG_F64, 4, (int64_t[]){B, M, K, N}, 0.0, 2.0);
  in.G_im = sg_rand_normal(NULL, r, SG_F64, 4, (int64_t[]){B, M, K, N}, 0.0, 2.0);
  return in;
}

static inline void free_beam_inputs(beam_inputs *in) {
  sg_free(in->p), sg_free(in->q), sg_free(in->X);
  sg_free(in->G_re), sg_free(in->G_im);
  sg_free(in->A), sg_free(in->noise);
  free(in->assoc);
}

/* The index of (b, m, k, n) in a [B, M, K, N] tensor (G, V). */
static inline int64_t edge_at(const beam_inputs *in, int64_t b, int64_t m, int64_t k, int64_t n) {
  return ((b * in->M + m) * in->K + k) * in->N + n;
}

/* sg_gradcheck of loss (with ctx) in every parameter of params and in the
 * features p, q and X of in, element by element, default tolerances; all
 * must be checked: param_count parameters and every feature. */
static inline void gradcheck_params_and_features(sg_params *params, int64_t param_count,
                                                 beam_inputs *in, sg_check_fn loss, void *ctx) {
  int np = sg_params_count(params);
  sg_tensor **list = malloc((size_t)(np + 3) * sizeof *list);
  for (int i = 0; i < np; i++) list[i] = sg_params_at(params, i);
  list[np] = in->p, list[np + 1] = in->q, list[np + 2] = in->X;
  for (int i = np; i < np + 3; i++) sg_set_requires_grad(list[i], true);
  sg_gradcheck_result res = sg_gradcheck(loss, list, np + 3, ctx, NULL);
  SG_ASSERT_CHECK(res);
  ck_assert_int_eq(res.checked, param_count + in->p->numel + in->q->numel + in->X->numel);
  free(list);
}

/* sum_k a_km^2 ||v_mk||^2 of BS m in sample b, for beams V [B, M, K, N] and
 * association weights A [B, K, M] (NULL: every a_km 1). */
static inline double bs_power(const beam_inputs *in, const sg_tensor *A, assoc_complex V, int64_t b,
                              int64_t m) {
  double e = 0;
  for (int64_t k = 0; k < in->K; k++) {
    double a = A ? sg_get(A, (b * in->K + k) * in->M + m) : 1.0, v2 = 0;
    for (int64_t n = 0; n < in->N; n++) {
      int64_t i = edge_at(in, b, m, k, n);
      v2 += pow(sg_get(V.re, i), 2) + pow(sg_get(V.im, i), 2);
    }
    e += a * a * v2;
  }
  return e;
}

/* Every BS's beam power e (bs_power) against its budget P, to 1e-9
 * relative: with the projection e <= P (counting the BSs strictly inside
 * the ball in *inside, the others in *outside), with full power e == P. */
static inline void check_bs_powers(const beam_inputs *in, const sg_tensor *A, assoc_complex V,
                                   assoc_beam_norm norm, double P, int *inside, int *outside) {
  for (int64_t b = 0; b < in->B; b++)
    for (int64_t m = 0; m < in->M; m++) {
      double e = bs_power(in, A, V, b, m);
      if (norm == ASSOC_BEAM_PROJECT) {
        ck_assert_msg(e <= P * (1 + 1e-9), "power %.17g > %g", e, P);
        e < P *(1 - 1e-9) ? (*inside)++ : (*outside)++;
      } else {
        ck_assert_msg(fabs(e - P) <= 1e-9 * P, "power %.17g != %g", e, P);
      }
    }
}

/* The sum-rate (noise 1) of sample b by direct loops, for beams V
 * [B, M, K, N] on in's channels G with association weights A [B, K, M]
 * (BFGNN's 0/1 rows, JointGNN's A~): s_k = sum_m a_km g_mk^T v_mk,
 * z_kl = sum_m a_lm g_mk^T v_ml. A UE with a zero row neither receives nor
 * interferes. */
static inline double ref_sum_rate(const beam_inputs *in, const sg_tensor *A, assoc_complex V,
                                  int64_t b) {
  double R = 0;
  for (int64_t k = 0; k < in->K; k++) {
    double signal = 0, interference = 0;
    for (int64_t l = 0; l < in->K; l++) {
      double complex z = 0;
      for (int64_t m = 0; m < in->M; m++) {
        double a = sg_get(A, (b * in->K + l) * in->M + m);
        for (int64_t n = 0; n < in->N; n++) {
          int64_t gi = edge_at(in, b, m, k, n), vi = edge_at(in, b, m, l, n);
          z += a * (sg_get(in->G_re, gi) + I * sg_get(in->G_im, gi)) *
               (sg_get(V.re, vi) + I * sg_get(V.im, vi));
        }
      }
      double z2 = creal(z * conj(z));
      l == k ? (signal = z2) : (interference += z2);
    }
    R += log2(1 + signal / (interference + 1.0));
  }
  return R;
}

/* MLP(in, out) = (in+1) h + (h+1) h + (h+1) out. */
static inline int64_t count_mlp(int64_t in, int64_t h, int64_t out) {
  return (in + 1) * h + (h + 1) * h + (h + 1) * out;
}

/* The SMA trunk of a beam model: pre-processing (1, 1, fe inputs), L - 1
 * layers with four node MLPs (layer L's would feed nothing and are not
 * built), L MLP edge updates on 3d. */
static inline int64_t count_beam_trunk(int64_t d, int64_t h, int64_t L, int64_t fe) {
  int64_t pre = 2 * count_mlp(1, h, d) + count_mlp(fe, h, d);
  return pre + (L - 1) * 4 * count_mlp(2 * d, h, d) + L * count_mlp(3 * d, h, d);
}

#endif
