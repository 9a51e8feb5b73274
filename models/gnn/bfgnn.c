/* BFGNN (docs/models.md "BFGNN"): beams for a given association from the
 * SMA-GNN trunk (gnn_internal.h) and a beam head, the per-BS power
 * normalisation and the sum-rate with beams of beamrate.c, and the inputs
 * of a batch with a given integer association. */
#include <math.h>
#include <string.h>

#include "assoc_gnn.h"
#include "gnn_internal.h"

/* ---- construction ------------------------------------------------------------- */

assoc_bfgnn_config assoc_bfgnn_config_paper(void) {
  return (assoc_bfgnn_config){.d = 512,
                              .h = 1024,
                              .L = 2,
                              .n_antennas = 4,
                              .dtype = SG_F32,
                              .norm = ASSOC_BEAM_PROJECT,
                              .power = 1.0};
}

_Static_assert(SG_SOLVE_MAX_N / 2 == 32 && ASSOC_MAX_ANTENNAS == 1024,
               "assoc_bfgnn_config_problem states these limits");

const char *assoc_bfgnn_config_problem(const assoc_bfgnn_config *c) {
  bool duality = c->head == ASSOC_BFGNN_HEAD_DUALITY;
  if (c->head != ASSOC_BFGNN_HEAD_DIRECT && !duality) return "head is not one of assoc_bfgnn_head";
  if (c->n_antennas < 1 || c->n_antennas > (duality ? SG_SOLVE_MAX_N / 2 : ASSOC_MAX_ANTENNAS))
    return duality ? "need 1 <= N <= 32 (duality head)" : "need 1 <= N <= 1024 (direct head)";
  if (!(c->power > 0) || !isfinite(c->power)) return "the power must be finite and > 0";
  if (c->norm != ASSOC_BEAM_PROJECT && c->norm != ASSOC_BEAM_FULL_POWER)
    return "norm is not a mode of assoc_beam_norm";
  return NULL;
}

static bool bfgnn_config_valid(const assoc_bfgnn_config *c) {
  const char *why = assoc_bfgnn_config_problem(c);
  if (why)
    sg_report_error("assoc_bfgnn_new", __FILE__, __LINE__, "N %d, power %g, norm %d, head %d: %s",
                    c->n_antennas, c->power, (int)c->norm, (int)c->head, why);
  return !why;
}

assoc_bfgnn *assoc_bfgnn_new(const assoc_bfgnn_config *cfg, uint64_t seed) {
  if (!cfg || !bfgnn_config_valid(cfg)) return NULL;
  assoc_bfgnn *m = sg_malloc(sizeof *m);
  if (!m) return NULL;
  *m = (assoc_bfgnn){.cfg = *cfg};
  /* the edge input: 2N channel features and a_km */
  assoc_gnn_config tc = ASSOC_GNN_BEAM_TRUNK_CONFIG(cfg, 2 * cfg->n_antennas + 1, 1.0);
  int outputs = cfg->head == ASSOC_BFGNN_HEAD_DUALITY ? 2 : 2 * cfg->n_antennas;
  sg_rng rng;
  if (assoc_gnn_beam_trunk_new(&m->trunk, tc, seed, &rng) ||
      sg_mlp_init(&m->mlp_v, m->trunk.params, "mlp_v", cfg->d, cfg->h, outputs, &rng)) {
    assoc_bfgnn_free(m);
    return NULL;
  }
  return m;
}

void assoc_bfgnn_free(assoc_bfgnn *m) {
  if (!m) return;
  assoc_gnn_trunk_free(&m->trunk);
  sg_mfree(m);
}

int64_t assoc_bfgnn_param_count(const assoc_bfgnn *m) {
  return sg_params_numel(m->trunk.params);
}

/* ---- forward ------------------------------------------------------------------ */

static bool bfgnn_inputs_valid(sg_graph *g, const assoc_bfgnn *m, const sg_tensor *p,
                               const sg_tensor *q, const sg_tensor *X, const sg_tensor *A) {
  int64_t N = m->cfg.n_antennas;
  sg_dtype dt = m->cfg.dtype;
  if (assoc_gnn_beam_inputs_are(p, q, X, N, dt) &&
      assoc_gnn_shape_is(A, dt, 3, (int64_t[]){p->shape[0], q->shape[1], p->shape[1]}))
    return true;
  char s[4][96];
  sg_op_error(g, "assoc_bfgnn_forward",
              "p %s %s, q %s, X %s, A %s: need p [B, M, 1], q [B, K, 1], X [B, M, K, %lld], "
              "A [B, K, M] (M <= %d), all %s",
              sg_dtype_name(p->dtype), sg_shape_str(p->ndim, p->shape, s[0]),
              sg_shape_str(q->ndim, q->shape, s[1]), sg_shape_str(X->ndim, X->shape, s[2]),
              sg_shape_str(A->ndim, A->shape, s[3]), (long long)(2 * N), ASSOC_MAX_BS,
              sg_dtype_name(dt));
  return false;
}

/* a_km as [B, M, K, 1], the layout of the edge features. */
static sg_tensor *assoc_edges(sg_graph *g, sg_tensor *A) {
  int64_t B = A->shape[0], K = A->shape[1], M = A->shape[2];
  return sg_reshape(g, sg_transpose(g, A, 1, 2), 4, (int64_t[]){B, M, K, 1});
}

/* ---- the duality head ------------------------------------------------------------ */

#define DUALITY_LOG_BOUND 10.0

/* The complex vector conj(x) (x = re + j im, [..., N] each) as the 2N reals
 * [re, -im], and j conj(x) as [im, re]: the two columns of conj(x)'s real
 * form, so that the real form of conj(x) x^T is c1 c1^T + c2 c2^T. */
static void conj_columns(sg_graph *g, sg_tensor *X, int64_t N, sg_tensor **c1, sg_tensor **c2) {
  sg_tensor *re = sg_slice(g, X, -1, 0, N), *im = sg_slice(g, X, -1, N, 2 * N);
  *c1 = sg_concat(g, 2, (sg_tensor *[]){re, sg_neg(g, im)}, -1);
  *c2 = sg_concat(g, 2, (sg_tensor *[]){im, re}, -1);
}

/* S_m = I + sum_l lambda_ml x_ml^* x_ml^T in real form [B, M, 2N, 2N], from
 * the columns c1, c2 [B, M, K, 2N] and lambda [B, M, K, 1]. */
static sg_tensor *duality_matrix(sg_graph *g, sg_tensor *c1, sg_tensor *c2, sg_tensor *lambda) {
  sg_tensor *cols = sg_concat(g, 2, (sg_tensor *[]){c1, c2}, 2);      /* [B, M, 2K, 2N] */
  sg_tensor *w = sg_concat(g, 2, (sg_tensor *[]){lambda, lambda}, 2); /* [B, M, 2K, 1] */
  sg_tensor *S = sg_matmul(g, cols, sg_mul(g, w, cols), true, false); /* [B, M, 2N, 2N] */
  int64_t n = c1->shape[3];
  sg_tensor *I = sg_zeros(g, S->dtype, 2, (int64_t[]){n, n});
  if (!I) return NULL;
  for (int64_t i = 0; i < n; i++) sg_set(I, i * n + i, 1);
  return sg_add(g, S, I);
}

/* exp(c * 10 tanh(o / 10)): weights and powers within e^-10..e^10. With
 * lambda <= e^10 and the scaled channels |x|^2 up to ~1e2, the identity of
 * I + sum lambda x* x^T stays above float32's rounding of the sum (the
 * matrix stays well defined in float32), while the gradient pushes lambda
 * up towards zero forcing at high SNR; the bound on w keeps the per-BS
 * normalisation away from inf / inf. */
static sg_tensor *bounded_exp(sg_graph *g, sg_tensor *o, double c) {
  return sg_exp(
      g, sg_scale(g, sg_tanh(g, sg_scale(g, o, 1.0 / DUALITY_LOG_BOUND)), c * DUALITY_LOG_BOUND));
}

/* The 2N-real beams [B, M, K, 2N] of the duality head (assoc_bfgnn_head)
 * from edge embeddings e [B, K, M, d], features X and association A. */
static sg_tensor *duality_beams(sg_graph *g, const assoc_bfgnn *m, sg_tensor *e, sg_tensor *X,
                                sg_tensor *A) {
  int64_t B = A->shape[0], K = A->shape[1], N = m->cfg.n_antennas;
  sg_tensor *o = sg_permute(g, sg_mlp_forward(g, &m->mlp_v, e), (const int[]){0, 2, 1, 3});
  /* a dropped UE receives nothing, so no BS needs to spare it interference */
  sg_tensor *served = sg_reshape(g, sg_sum(g, A, 2, false), 4, (int64_t[]){B, 1, K, 1});
  sg_tensor *lambda = sg_mul(g, bounded_exp(g, sg_slice(g, o, -1, 0, 1), 1.0), served);
  sg_tensor *power = bounded_exp(g, sg_slice(g, o, -1, 1, 2), 0.5); /* sqrt(w) */
  sg_tensor *c1, *c2;
  conj_columns(g, X, N, &c1, &c2);
  sg_tensor *S = duality_matrix(g, c1, c2, lambda);
  sg_tensor *u = sg_transpose(g, sg_solve(g, S, sg_transpose(g, c1, 2, 3)), 2, 3);
  sg_tensor *norm = sg_sqrt(g, sg_add_scalar(g, sg_sum(g, sg_square(g, u), -1, true), 1e-30));
  return sg_mul(g, sg_div(g, u, norm), power);
}

assoc_complex(assoc_bfgnn_forward)(sg_graph *g, const assoc_bfgnn *m, sg_tensor *p, sg_tensor *q,
                                   sg_tensor *X, sg_tensor *A) {
  assoc_complex v = {NULL, NULL};
  if (!m || !p || !q || !X || !A || !bfgnn_inputs_valid(g, m, p, q, X, A)) return v;
  sg_tensor *a = assoc_edges(g, A);
  sg_tensor *edge_in[2] = {X, a};
  sg_tensor *e = assoc_gnn_trunk_forward(g, &m->trunk, p, q, sg_concat(g, 2, edge_in, -1));
  /* masked by a: a dropped UE, or a BS not serving k, gets a zero beam */
  if (m->cfg.head == ASSOC_BFGNN_HEAD_DUALITY)
    v = assoc_gnn_beams_finish(g, duality_beams(g, m, e, X, A), a, A, m->cfg.power, m->cfg.norm);
  else
    v = assoc_gnn_beam_head(g, &m->mlp_v, e, a, A, m->cfg.power, m->cfg.norm);
  sg_release_after_backward(g, e);
  return v;
}

sg_tensor *(assoc_bfgnn_rate)(sg_graph *g, sg_tensor *A, sg_tensor *G_re, sg_tensor *G_im,
                              assoc_complex V) {
  if (!A || !G_re || !G_im || !V.re || !V.im) return NULL;
  return assoc_gnn_beam_rate(g, A, G_re, G_im, V);
}

/* ---- batch inputs ------------------------------------------------------------- */

/* Entries in -1..M-1 and at most N UEs per BS, for the batch's samples. */
static bool assoc_feasible(const assoc_dataset *ds, const int *assoc, const int64_t *idx,
                           int64_t start, int64_t B) {
  for (int64_t b = 0; b < B; b++) {
    int64_t s = idx ? idx[b] : start + b;
    if (s < 0 || s >= ds->S) return true; /* reported by assoc_gnn_batch_make */
    int load[ASSOC_MAX_BS] = {0};
    for (int k = 0; k < ds->K; k++) {
      int a = assoc[s * ds->K + k];
      if (a < -1 || a >= ds->M || (a >= 0 && ++load[a] > ds->N)) {
        sg_report_error("assoc_bfgnn_batch_make", __FILE__, __LINE__,
                        "sample %lld UE %d: BS %d is out of range or over its load N = %d",
                        (long long)s, k, a, ds->N);
        return false;
      }
    }
  }
  return true;
}

/* A and G of the batch (p, q and X are made already). */
static void fill_assoc_and_channels(const assoc_dataset *ds, const int *assoc, const int64_t *idx,
                                    int64_t start, assoc_bfgnn_batch *out) {
  int64_t per = (int64_t)ds->M * ds->K * ds->N, KM = (int64_t)ds->K * ds->M;
  double amp = assoc_snr_amplitude(ds) * sqrt((double)ds->N); /* sqrt(P_t) / sigma */
  for (int64_t b = 0; b < out->B; b++) {
    int64_t s = idx ? idx[b] : start + b;
    for (int64_t i = 0; i < per; i++) {
      sg_set(out->G_re, b * per + i, amp * ds->H_re[s * per + i]);
      sg_set(out->G_im, b * per + i, amp * ds->H_im[s * per + i]);
    }
    for (int64_t i = 0; assoc && i < KM; i++)
      sg_set(out->A, b * KM + i, assoc[s * ds->K + i / ds->M] == i % ds->M ? 1.0 : 0.0);
  }
}

int assoc_bfgnn_batch_make(sg_graph *g, const assoc_dataset *ds, const int *assoc,
                           const int64_t *idx, int64_t start, int64_t B, double feature_scale,
                           sg_dtype dt, assoc_bfgnn_batch *out) {
  *out = (assoc_bfgnn_batch){.B = B};
  if (!ds || (assoc && !assoc_feasible(ds, assoc, idx, start, B))) {
    if (!ds) sg_report_error("assoc_bfgnn_batch_make", __FILE__, __LINE__, "NULL data set");
    return -1;
  }
  assoc_gnn_batch in;
  if (assoc_gnn_batch_make(g, ds, idx, start, B, feature_scale, ASSOC_FEATURES_CHANNEL, dt, false,
                           &in))
    return -1;
  int64_t M = ds->M, K = ds->K, N = ds->N;
  out->p = in.p, out->q = in.q, out->X = in.H;
  if (assoc) out->A = sg_empty(g, dt, 3, (int64_t[]){B, K, M});
  out->G_re = sg_empty(g, dt, 4, (int64_t[]){B, M, K, N});
  out->G_im = sg_empty(g, dt, 4, (int64_t[]){B, M, K, N});
  if ((assoc && !out->A) || !out->G_re || !out->G_im) return -1;
  fill_assoc_and_channels(ds, assoc, idx, start, out);
  return 0;
}
