/* The differentiable sum-rate of a fractional association and the training
 * loss (docs/system.md "Beamforming and rate", docs/models.md "Loss"),
 * composed from library ops so that autograd provides the gradient.
 *
 * With couplings c [B, M, K, K] (c[b,m,k,l]: what UE k receives from BS m's
 * beam for UE l) and A [B, K, M]:
 *   z[b,k,l] = sum_m a[b,l,m] c[b,m,k,l]   (s_k = z_kk)
 *   |z|^2 split by a diagonal mask into the signal |s_k|^2 and, with the
 *   complementary mask, the interference sum_{l != k} |z_kl|^2 (summed
 *   directly rather than as total - signal, which would cancel). */
#include "assoc_gnn.h"

#include <math.h>

/* ---- couplings --------------------------------------------------------------- */

/* Output arrays of one sample, in the tensor's dtype (one pair non-NULL). */
typedef struct coupling_out {
  double *re64, *im64;
  float *re32, *im32;
} coupling_out;

static void store(const coupling_out *o, int64_t i, double re, double im) {
  if (o->re64)
    o->re64[i] = re, o->im64[i] = im;
  else
    o->re32[i] = (float)re, o->im32[i] = (float)im;
}

/* c[m,k,l] of one sample (M x K x K). */
static void sample_couplings(const double *H_re, const double *H_im, int M, int K, int N,
                             double amp, const coupling_out *o) {
  for (int m = 0; m < M; m++)
    for (int l = 0; l < K; l++) {
      const double *lr = H_re + ((int64_t)m * K + l) * N, *li = H_im + ((int64_t)m * K + l) * N;
      double norm2 = 0.0;
      for (int n = 0; n < N; n++) norm2 += lr[n] * lr[n] + li[n] * li[n];
      double f = norm2 > 0 ? amp / sqrt(norm2) : 0.0; /* a zero channel gets a zero beam */
      for (int k = 0; k < K; k++) {
        const double *kr = H_re + ((int64_t)m * K + k) * N, *ki = H_im + ((int64_t)m * K + k) * N;
        double sr = 0.0, si = 0.0; /* h_mk^T conj(h_ml) */
        for (int n = 0; n < N; n++) {
          sr += kr[n] * lr[n] + ki[n] * li[n];
          si += ki[n] * lr[n] - kr[n] * li[n];
        }
        store(o, ((int64_t)m * K + k) * K + l, sr * f, si * f);
      }
    }
}

int assoc_mrt_couplings(sg_graph *g, const double *H_re, const double *H_im, int64_t B, int M,
                        int K, int N, double pt, double noise, sg_dtype dt, sg_tensor **c_re,
                        sg_tensor **c_im) {
  if (!H_re || !H_im || !c_re || !c_im || B < 1 || M < 1 || K < 1 || N < 1 || !(pt >= 0) ||
      !(noise > 0)) {
    sg_report_error("assoc_mrt_couplings", __FILE__, __LINE__,
                    "bad arguments: B %lld M %d K %d N %d pt %g noise %g (need sizes >= 1, "
                    "pt >= 0, noise > 0, non-NULL arrays)",
                    (long long)B, M, K, N, pt, noise);
    return -1;
  }
  int64_t shape[4] = {B, M, K, K}, per = (int64_t)M * K * K;
  *c_re = sg_empty(g, dt, 4, shape);
  *c_im = sg_empty(g, dt, 4, shape);
  if (!*c_re || !*c_im) return -1;
  double amp = sqrt(pt / N / noise);
  sg_tensor *tr = *c_re, *ti = *c_im;
#pragma omp parallel for if (B * per > 4096) schedule(static)
  for (int64_t b = 0; b < B; b++) {
    coupling_out o = {0};
    if (dt == SG_F64)
      o.re64 = sg_f64(tr) + b * per, o.im64 = sg_f64(ti) + b * per;
    else
      o.re32 = sg_f32(tr) + b * per, o.im32 = sg_f32(ti) + b * per;
    const int64_t off = b * (int64_t)M * K * N;
    sample_couplings(H_re + off, H_im + off, M, K, N, amp, &o);
  }
  return 0;
}

/* ---- sum-rate ------------------------------------------------------------------ */

/* [K, K] masks: the identity, or its complement. */
static sg_tensor *diag_mask(sg_graph *g, sg_dtype dt, int64_t K, bool diagonal) {
  sg_tensor *t = sg_empty(g, dt, 2, (int64_t[]){K, K});
  if (!t) return NULL;
  for (int64_t i = 0; i < K * K; i++) sg_set(t, i, ((i / K == i % K) == diagonal) ? 1.0 : 0.0);
  return t;
}

static bool rate_inputs_valid(sg_graph *g, const sg_tensor *A, const sg_tensor *c_re,
                              const sg_tensor *c_im, double noise) {
  char sa[96], sr[96], si[96];
  if (A->ndim == 3 && c_re->ndim == 4 && sg_same_shape(c_re, c_im) && A->dtype == c_re->dtype &&
      A->dtype == c_im->dtype && c_re->shape[0] == A->shape[0] && c_re->shape[1] == A->shape[2] &&
      c_re->shape[2] == A->shape[1] && c_re->shape[3] == A->shape[1] && noise > 0)
    return true;
  sg_op_error(g, "assoc_sum_rate",
              "A %s %s and couplings %s %s / %s %s with noise %g: need A [B, K, M], couplings "
              "[B, M, K, K] of one dtype and noise > 0",
              sg_dtype_name(A->dtype), sg_shape_str(A->ndim, A->shape, sa),
              sg_dtype_name(c_re->dtype), sg_shape_str(c_re->ndim, c_re->shape, sr),
              sg_dtype_name(c_im->dtype), sg_shape_str(c_im->ndim, c_im->shape, si), noise);
  return false;
}

sg_tensor *(assoc_sum_rate)(sg_graph *g, sg_tensor *A, sg_tensor *c_re, sg_tensor *c_im,
                            double noise) {
  if (!A || !c_re || !c_im || !rate_inputs_valid(g, A, c_re, c_im, noise)) return NULL;
  int64_t B = A->shape[0], K = A->shape[1], M = A->shape[2];
  /* a[b,l,m] placed at [b, m, 1, l]: broadcast over the receiving UE k. */
  sg_tensor *a = sg_reshape(g, sg_transpose(g, A, 1, 2), 4, (int64_t[]){B, M, 1, K});
  sg_tensor *z_re = sg_sum(g, sg_mul(g, c_re, a), 1, false); /* [B, K, K] */
  sg_tensor *z_im = sg_sum(g, sg_mul(g, c_im, a), 1, false);
  sg_tensor *power = sg_add(g, sg_square(g, z_re), sg_square(g, z_im));
  sg_tensor *signal = sg_sum(g, sg_mul(g, power, diag_mask(g, A->dtype, K, true)), -1, false);
  sg_tensor *interference =
      sg_sum(g, sg_mul(g, power, diag_mask(g, A->dtype, K, false)), -1, false);
  sg_tensor *sinr = sg_div(g, signal, sg_add_scalar(g, interference, noise)); /* [B, K] */
  sg_tensor *nats = sg_sum(g, sg_log(g, sg_add_scalar(g, sinr, 1.0)), -1, false);
  return sg_scale(g, nats, 1.0 / log(2.0));
}

/* ---- loss ------------------------------------------------------------------------ */

sg_tensor *(assoc_loss)(sg_graph *g, sg_tensor *rate, sg_tensor *A, const double *mu,
                        double capacity, double delta, double *violation) {
  if (!rate || !A) return NULL;
  if (rate->ndim != 1 || A->ndim != 3 || rate->shape[0] != A->shape[0] || rate->dtype != A->dtype) {
    char sr[96], sa[96];
    sg_op_error(g, "assoc_loss", "rate %s %s and A %s %s: need rate [B] and A [B, K, M]",
                sg_dtype_name(rate->dtype), sg_shape_str(rate->ndim, rate->shape, sr),
                sg_dtype_name(A->dtype), sg_shape_str(A->ndim, A->shape, sa));
    return NULL;
  }
  int64_t M = A->shape[2];
  sg_tensor *load = sg_sum(g, A, 1, false); /* [B, M] */
  sg_tensor *excess = sg_relu(g, sg_add_scalar(g, load, -(capacity - delta)));
  sg_tensor *mean_excess = sg_mean(g, excess, 0, false); /* [M] */
  sg_tensor *mu_t = sg_zeros(g, A->dtype, 1, (int64_t[]){M});
  if (!mean_excess || !mu_t) return NULL;
  for (int64_t m = 0; m < M; m++) {
    if (mu) sg_set(mu_t, m, mu[m]);
    if (violation) violation[m] = sg_get(mean_excess, m);
  }
  sg_tensor *penalty = sg_sum_all(g, sg_mul(g, mean_excess, mu_t));
  return sg_sub(g, penalty, sg_mean_all(g, rate));
}
