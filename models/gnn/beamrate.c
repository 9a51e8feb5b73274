/* The differentiable sum-rate with beams (docs/models.md "Beams"):
 * couplings of arbitrary complex beams and the per-BS power normalisation,
 * composed from library ops so that autograd provides the gradient. The rate
 * itself is assoc_sum_rate, which takes any couplings.
 *
 * Complex tensors are carried as two real tensors of one shape and dtype:
 * H and V [B, M, K, N] (edge (m, k): BS m, UE k, antenna n), the couplings
 * [B, M, K, K]. assoc_beams_split reads the 2N-real layout of a beam head
 * (real parts then imaginary parts along the last axis). */
#include "assoc_gnn.h"
#include "gnn_internal.h"

#include <math.h>

/* ---- layouts ------------------------------------------------------------------- */

assoc_complex(assoc_beams_split)(sg_graph *g, sg_tensor *o) {
  assoc_complex v = {NULL, NULL};
  if (!o) return v;
  if (o->ndim < 1 || o->shape[o->ndim - 1] < 2 || o->shape[o->ndim - 1] % 2) {
    char so[96];
    sg_op_error(g, "assoc_beams_split", "o %s: need an even last axis of 2N >= 2",
                sg_shape_str(o->ndim, o->shape, so));
    return v;
  }
  int64_t n = o->shape[o->ndim - 1] / 2;
  v.re = sg_slice(g, o, -1, 0, n);
  v.im = sg_slice(g, o, -1, n, 2 * n);
  if (!v.re || !v.im) v.re = v.im = NULL;
  return v;
}

/* ---- couplings ----------------------------------------------------------------- */

static bool pair_valid(const sg_tensor *re, const sg_tensor *im) {
  return re->ndim == 4 && sg_same_shape(re, im) && re->dtype == im->dtype;
}

static bool couplings_valid(sg_graph *g, const sg_tensor *H_re, const sg_tensor *H_im,
                            const sg_tensor *V_re, const sg_tensor *V_im) {
  if (pair_valid(H_re, H_im) && pair_valid(V_re, V_im) && sg_same_shape(H_re, V_re) &&
      H_re->dtype == V_re->dtype)
    return true;
  char s[4][96];
  sg_op_error(g, "assoc_beam_couplings",
              "H %s %s / %s %s and V %s %s / %s %s: need four [B, M, K, N] tensors of one dtype",
              sg_dtype_name(H_re->dtype), sg_shape_str(H_re->ndim, H_re->shape, s[0]),
              sg_dtype_name(H_im->dtype), sg_shape_str(H_im->ndim, H_im->shape, s[1]),
              sg_dtype_name(V_re->dtype), sg_shape_str(V_re->ndim, V_re->shape, s[2]),
              sg_dtype_name(V_im->dtype), sg_shape_str(V_im->ndim, V_im->shape, s[3]));
  return false;
}

/* x [B, M, K, N] @ y [B, M, K, N]^T: sum_n x[b,m,k,n] y[b,m,l,n] at [b,m,k,l]. */
static sg_tensor *dot_pairs(sg_graph *g, sg_tensor *x, sg_tensor *y) {
  return sg_matmul(g, x, y, false, true);
}

assoc_complex(assoc_beam_couplings)(sg_graph *g, sg_tensor *H_re, sg_tensor *H_im, sg_tensor *V_re,
                                    sg_tensor *V_im) {
  assoc_complex c = {NULL, NULL};
  if (!H_re || !H_im || !V_re || !V_im || !couplings_valid(g, H_re, H_im, V_re, V_im)) return c;
  /* h^T v = (hr vr - hi vi) + j (hr vi + hi vr), no conjugate. */
  c.re = sg_sub(g, dot_pairs(g, H_re, V_re), dot_pairs(g, H_im, V_im));
  c.im = sg_add(g, dot_pairs(g, H_re, V_im), dot_pairs(g, H_im, V_re));
  if (!c.re || !c.im) c.re = c.im = NULL;
  return c;
}

/* ---- power normalisation ------------------------------------------------------- */

static bool normalize_valid(sg_graph *g, const sg_tensor *A, const sg_tensor *V_re,
                            const sg_tensor *V_im, const double *power, assoc_beam_norm mode) {
  bool ok = (mode == ASSOC_BEAM_PROJECT || mode == ASSOC_BEAM_FULL_POWER) && A->ndim == 3 &&
            pair_valid(V_re, V_im) && A->dtype == V_re->dtype && A->shape[0] == V_re->shape[0] &&
            A->shape[1] == V_re->shape[2] && A->shape[2] == V_re->shape[1] && power != NULL;
  for (int64_t m = 0; ok && m < A->shape[2]; m++) ok = power[m] > 0 && isfinite(power[m]);
  if (ok) return true;
  char sa[96], sv[96], si[96];
  sg_op_error(g, "assoc_beam_normalize",
              "A %s %s and V %s %s / %s %s, mode %d: need A [B, K, M], V [B, M, K, N] of one "
              "dtype, M finite powers > 0 and a mode of assoc_beam_norm",
              sg_dtype_name(A->dtype), sg_shape_str(A->ndim, A->shape, sa),
              sg_dtype_name(V_re->dtype), sg_shape_str(V_re->ndim, V_re->shape, sv),
              sg_dtype_name(V_im->dtype), sg_shape_str(V_im->ndim, V_im->shape, si), (int)mode);
  return false;
}

/* ||V_m||_F [B, M, 1, 1] = sqrt(sum_k a_km^2 ||v_mk||^2 + ASSOC_BEAM_NORM_EPS). */
static sg_tensor *bs_norm(sg_graph *g, sg_tensor *A, sg_tensor *V_re, sg_tensor *V_im) {
  int64_t B = A->shape[0], M = A->shape[2];
  sg_tensor *energy = sg_sum(g, sg_add(g, sg_square(g, V_re), sg_square(g, V_im)), -1, false);
  sg_tensor *a2 = sg_square(g, sg_transpose(g, A, 1, 2)); /* [B, M, K] */
  sg_tensor *n2 = sg_sum(g, sg_mul(g, a2, energy), -1, false);
  n2 = sg_add_scalar(g, n2, ASSOC_BEAM_NORM_EPS);
  return sg_reshape(g, sg_sqrt(g, n2), 4, (int64_t[]){B, M, 1, 1});
}

/* sqrt(P_m) as a constant [1, M, 1, 1]. */
static sg_tensor *root_power(sg_graph *g, sg_dtype dt, int64_t M, const double *power) {
  sg_tensor *t = sg_empty(g, dt, 4, (int64_t[]){1, M, 1, 1});
  if (!t) return NULL;
  for (int64_t m = 0; m < M; m++) sg_set(t, m, sqrt(power[m]));
  return t;
}

assoc_complex(assoc_beam_normalize)(sg_graph *g, sg_tensor *A, sg_tensor *V_re, sg_tensor *V_im,
                                    const double *power, assoc_beam_norm mode) {
  assoc_complex v = {NULL, NULL};
  if (!A || !V_re || !V_im || !normalize_valid(g, A, V_re, V_im, power, mode)) return v;
  sg_tensor *norm = bs_norm(g, A, V_re, V_im);
  sg_tensor *rp = root_power(g, A->dtype, A->shape[2], power);
  /* Full power: sqrt(P)/||V||. Projection: sqrt(P)/max(||V||, sqrt(P)) =
   * min(1, sqrt(P)/||V||), the max written sqrt(P) + relu(||V|| - sqrt(P)):
   * exact on both sides, and at the kink relu's zero gradient makes the
   * factor a constant 1 (the inside branch counts). */
  sg_tensor *den =
      mode == ASSOC_BEAM_FULL_POWER ? norm : sg_add(g, rp, sg_relu(g, sg_sub(g, norm, rp)));
  sg_tensor *factor = sg_div(g, rp, den); /* [B, M, 1, 1] */
  v.re = sg_mul(g, V_re, factor);
  v.im = sg_mul(g, V_im, factor);
  if (!v.re || !v.im) v.re = v.im = NULL;
  return v;
}

/* ---- shared by the beam models (gnn_internal.h) ---------------------------------- */

int assoc_gnn_beam_trunk_new(assoc_gnn *trunk, assoc_gnn_config tc, uint64_t seed, sg_rng *rng) {
  sg_rng_seed(rng, seed);
  return assoc_gnn_trunk_new(trunk, &tc, rng);
}

bool assoc_gnn_beam_inputs_are(const sg_tensor *p, const sg_tensor *q, const sg_tensor *X,
                               int64_t N, sg_dtype dt) {
  int64_t B = p->ndim == 3 ? p->shape[0] : 0, M = p->ndim == 3 ? p->shape[1] : 0;
  int64_t K = q->ndim == 3 ? q->shape[1] : 0;
  return B >= 1 && M >= 1 && M <= ASSOC_MAX_BS && K >= 1 &&
         assoc_gnn_shape_is(p, dt, 3, (int64_t[]){B, M, 1}) &&
         assoc_gnn_shape_is(q, dt, 3, (int64_t[]){B, K, 1}) &&
         assoc_gnn_shape_is(X, dt, 4, (int64_t[]){B, M, K, 2 * N});
}

assoc_complex assoc_gnn_beam_raw(sg_graph *g, const sg_mlp *mlp_v, sg_tensor *e) {
  sg_tensor *o = sg_mlp_forward(g, mlp_v, e); /* [B, K, M, 2N] */
  return assoc_beams_split(g, sg_permute(g, o, (const int[]){0, 2, 1, 3}));
}

assoc_complex assoc_gnn_beam_head(sg_graph *g, const sg_mlp *mlp_v, sg_tensor *e, sg_tensor *mask,
                                  sg_tensor *A, double power, assoc_beam_norm norm) {
  return assoc_gnn_beams_mask_power(g, assoc_gnn_beam_raw(g, mlp_v, e), mask, A, power, norm);
}

assoc_complex assoc_gnn_beams_finish(sg_graph *g, sg_tensor *o, sg_tensor *mask, sg_tensor *A,
                                     double power, assoc_beam_norm norm) {
  return assoc_gnn_beams_mask_power(g, assoc_beams_split(g, o), mask, A, power, norm);
}

assoc_complex assoc_gnn_beams_mask_power(sg_graph *g, assoc_complex v, sg_tensor *mask,
                                         sg_tensor *A, double power, assoc_beam_norm norm) {
  if (!v.re) return v;
  if (mask) v.re = sg_mul(g, v.re, mask), v.im = sg_mul(g, v.im, mask);
  return assoc_gnn_beam_power(g, A, v, power, norm);
}

assoc_complex assoc_gnn_beam_power(sg_graph *g, sg_tensor *A, assoc_complex v, double power,
                                   assoc_beam_norm norm) {
  if (!A || !v.re || !v.im) return (assoc_complex){NULL, NULL};
  double budget[ASSOC_MAX_BS];
  for (int64_t i = 0; i < A->shape[A->ndim - 1] && i < ASSOC_MAX_BS; i++) budget[i] = power;
  return assoc_beam_normalize(g, A, v.re, v.im, budget, norm);
}

sg_tensor *assoc_gnn_beam_rate(sg_graph *g, sg_tensor *A, sg_tensor *G_re, sg_tensor *G_im,
                               assoc_complex V) {
  assoc_complex c = assoc_beam_couplings(g, G_re, G_im, V.re, V.im);
  return c.re ? assoc_sum_rate(g, A, c.re, c.im, 1.0) : NULL;
}
