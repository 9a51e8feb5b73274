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

static bool bfgnn_config_valid(const assoc_bfgnn_config *c) {
  bool ok = c->n_antennas >= 1 && c->n_antennas <= ASSOC_MAX_ANTENNAS && c->power > 0 &&
            isfinite(c->power) &&
            (c->norm == ASSOC_BEAM_PROJECT || c->norm == ASSOC_BEAM_FULL_POWER);
  if (!ok)
    sg_report_error("assoc_bfgnn_new", __FILE__, __LINE__,
                    "N %d, power %g, norm %d: need 1 <= N <= %d, a finite power > 0 and a mode "
                    "of assoc_beam_norm",
                    c->n_antennas, c->power, (int)c->norm, ASSOC_MAX_ANTENNAS);
  return ok;
}

/* The trunk's configuration: SMA-GNN's MLP edge update on 2N + 1 edge
 * features and one BS and one UE feature. */
static assoc_gnn_config trunk_config(const assoc_bfgnn_config *c) {
  return (assoc_gnn_config){.variant = ASSOC_GNN_SMA,
                            .d = c->d,
                            .h = c->h,
                            .L = c->L,
                            .fp = 1,
                            .fq = 1,
                            .fe = 2 * c->n_antennas + 1,
                            .features = ASSOC_FEATURES_CHANNEL,
                            .dtype = c->dtype,
                            .tau = 1.0,
                            .concat_inputs = c->concat_inputs};
}

assoc_bfgnn *assoc_bfgnn_new(const assoc_bfgnn_config *cfg, uint64_t seed) {
  if (!cfg || !bfgnn_config_valid(cfg)) return NULL;
  assoc_bfgnn *m = sg_malloc(sizeof *m);
  if (!m) return NULL;
  *m = (assoc_bfgnn){.cfg = *cfg};
  assoc_gnn_config tc = trunk_config(cfg);
  sg_rng rng;
  sg_rng_seed(&rng, seed);
  if (assoc_gnn_trunk_new(&m->trunk, &tc, &rng)) {
    sg_mfree(m);
    return NULL;
  }
  if (sg_mlp_init(&m->mlp_v, m->trunk.params, "mlp_v", cfg->d, cfg->h, 2 * cfg->n_antennas, &rng)) {
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
  int64_t B = p->ndim == 3 ? p->shape[0] : 0, M = p->ndim == 3 ? p->shape[1] : 0;
  int64_t K = q->ndim == 3 ? q->shape[1] : 0, N = m->cfg.n_antennas;
  sg_dtype dt = m->cfg.dtype;
  if (B >= 1 && M >= 1 && M <= ASSOC_MAX_BS && K >= 1 &&
      assoc_gnn_shape_is(p, dt, 3, (int64_t[]){B, M, 1}) &&
      assoc_gnn_shape_is(q, dt, 3, (int64_t[]){B, K, 1}) &&
      assoc_gnn_shape_is(X, dt, 4, (int64_t[]){B, M, K, 2 * N}) &&
      assoc_gnn_shape_is(A, dt, 3, (int64_t[]){B, K, M}))
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

assoc_complex(assoc_bfgnn_forward)(sg_graph *g, const assoc_bfgnn *m, sg_tensor *p, sg_tensor *q,
                                   sg_tensor *X, sg_tensor *A) {
  assoc_complex v = {NULL, NULL};
  if (!m || !p || !q || !X || !A || !bfgnn_inputs_valid(g, m, p, q, X, A)) return v;
  sg_tensor *a = assoc_edges(g, A);
  sg_tensor *edge_in[2] = {X, a};
  sg_tensor *e = assoc_gnn_trunk_forward(g, &m->trunk, p, q, sg_concat(g, 2, edge_in, -1));
  /* masked by a: a dropped UE, or a BS not serving k, gets a zero beam */
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
