/* JointGNN (docs/models.md "JointGNN"): association and beams together from
 * the SMA-GNN trunk (gnn_internal.h) with two edge heads, the association
 * head mlp_a (softmax or Gumbel-softmax over the BSs) and the beam head
 * mlp_v, the per-BS power normalisation weighted by a~_km^2 and the
 * sum-rate with beams of beamrate.c. */
#include <math.h>

#include "assoc_gnn.h"
#include "gnn_internal.h"

/* ---- construction ------------------------------------------------------------- */

assoc_jointgnn_config assoc_jointgnn_config_paper(void) {
  return (assoc_jointgnn_config){.d = 512,
                                 .h = 1024,
                                 .L = 2,
                                 .n_antennas = 4,
                                 .dtype = SG_F32,
                                 .norm = ASSOC_BEAM_PROJECT,
                                 .power = 1.0,
                                 .gumbel = false,
                                 .tau = 1.0};
}

_Static_assert(ASSOC_MAX_ANTENNAS == 1024, "assoc_jointgnn_config_problem states this limit");

const char *assoc_jointgnn_config_problem(const assoc_jointgnn_config *c) {
  if (c->n_antennas < 1 || c->n_antennas > ASSOC_MAX_ANTENNAS) return "N must be in 1..1024";
  if (!(c->power > 0) || !isfinite(c->power)) return "the power must be finite and > 0";
  if (!(c->tau > 0) || !isfinite(c->tau)) return "tau must be finite and > 0";
  if (c->norm != ASSOC_BEAM_PROJECT && c->norm != ASSOC_BEAM_FULL_POWER)
    return "norm is not a mode of assoc_beam_norm";
  return NULL;
}

static bool joint_config_valid(const assoc_jointgnn_config *c) {
  const char *why = assoc_jointgnn_config_problem(c);
  if (why)
    sg_report_error("assoc_jointgnn_new", __FILE__, __LINE__, "N %d, power %g, tau %g, norm %d: %s",
                    c->n_antennas, c->power, c->tau, (int)c->norm, why);
  return !why;
}

assoc_jointgnn *assoc_jointgnn_new(const assoc_jointgnn_config *cfg, uint64_t seed) {
  if (!cfg || !joint_config_valid(cfg)) return NULL;
  assoc_jointgnn *m = sg_malloc(sizeof *m);
  if (!m) return NULL;
  *m = (assoc_jointgnn){.cfg = *cfg};
  /* the edge input: the 2N channel features */
  assoc_gnn_config tc = ASSOC_GNN_BEAM_TRUNK_CONFIG(cfg, 2 * cfg->n_antennas, cfg->tau);
  sg_rng rng;
  if (assoc_gnn_beam_trunk_new(&m->trunk, tc, seed, &rng) ||
      sg_mlp_init(&m->mlp_a, m->trunk.params, "mlp_a", cfg->d, cfg->h, 1, &rng) ||
      sg_mlp_init(&m->mlp_v, m->trunk.params, "mlp_v", cfg->d, cfg->h, 2 * cfg->n_antennas, &rng)) {
    assoc_jointgnn_free(m);
    return NULL;
  }
  return m;
}

void assoc_jointgnn_free(assoc_jointgnn *m) {
  if (!m) return;
  assoc_gnn_trunk_free(&m->trunk);
  sg_mfree(m);
}

int64_t assoc_jointgnn_param_count(const assoc_jointgnn *m) {
  return sg_params_numel(m->trunk.params);
}

/* ---- forward ------------------------------------------------------------------ */

static bool uses_noise(const assoc_jointgnn *m, assoc_gnn_mode mode) {
  return m->cfg.gumbel && mode == ASSOC_GNN_TRAIN;
}

static bool joint_inputs_valid(sg_graph *g, const assoc_jointgnn *m, const sg_tensor *p,
                               const sg_tensor *q, const sg_tensor *X, assoc_gnn_mode mode,
                               const sg_rng *rng, const sg_tensor *noise) {
  int64_t B = p->ndim == 3 ? p->shape[0] : 0, M = p->ndim == 3 ? p->shape[1] : 0;
  int64_t K = q->ndim == 3 ? q->shape[1] : 0, N = m->cfg.n_antennas;
  sg_dtype dt = m->cfg.dtype;
  if (!assoc_gnn_beam_inputs_are(p, q, X, N, dt)) {
    char s[3][96];
    sg_op_error(g, "assoc_jointgnn_forward",
                "p %s %s, q %s, X %s: need p [B, M, 1], q [B, K, 1], X [B, M, K, %lld] "
                "(M <= %d), all %s",
                sg_dtype_name(p->dtype), sg_shape_str(p->ndim, p->shape, s[0]),
                sg_shape_str(q->ndim, q->shape, s[1]), sg_shape_str(X->ndim, X->shape, s[2]),
                (long long)(2 * N), ASSOC_MAX_BS, sg_dtype_name(dt));
    return false;
  }
  if (!uses_noise(m, mode)) return true;
  if (noise ? assoc_gnn_shape_is(noise, dt, 3, (int64_t[]){B, K, M}) : rng != NULL) return true;
  char sn[96];
  sg_op_error(g, "assoc_jointgnn_forward",
              "train mode with Gumbel-softmax: noise %s, rng %s: need noise [B, K, M] = "
              "[%lld, %lld, %lld] of %s or an rng",
              noise ? sg_shape_str(noise->ndim, noise->shape, sn) : "NULL", rng ? "set" : "NULL",
              (long long)B, (long long)K, (long long)M, sg_dtype_name(dt));
  return false;
}

/* Ahat -> A~: softmax, or Gumbel-softmax (noise in train mode, softmax of
 * Ahat / tau in eval mode). */
static sg_tensor *association(sg_graph *g, const assoc_jointgnn *m, sg_tensor *logits,
                              assoc_gnn_mode mode, sg_rng *rng, sg_tensor *noise) {
  const assoc_jointgnn_config *c = &m->cfg;
  if (!c->gumbel) return sg_softmax(g, logits, -1);
  if (!uses_noise(m, mode)) return sg_softmax(g, sg_scale(g, logits, 1.0 / c->tau), -1);
  if (!noise) noise = sg_rand_gumbel(g, rng, c->dtype, 3, logits->shape);
  return sg_gumbel_softmax(g, logits, c->tau, -1, false, noise, NULL);
}

assoc_jointgnn_output(assoc_jointgnn_forward)(sg_graph *g, const assoc_jointgnn *m, sg_tensor *p,
                                              sg_tensor *q, sg_tensor *X, assoc_gnn_mode mode,
                                              sg_rng *rng, sg_tensor *noise) {
  assoc_jointgnn_output out = {0};
  if (!m || !p || !q || !X || !joint_inputs_valid(g, m, p, q, X, mode, rng, noise)) return out;
  int64_t B = p->shape[0], M = p->shape[1], K = q->shape[1];
  sg_tensor *e = assoc_gnn_trunk_forward(g, &m->trunk, p, q, X); /* [B, K, M, d] */
  sg_tensor *scores = sg_mlp_forward(g, &m->mlp_a, e);           /* [B, K, M, 1] */
  out.logits = sg_reshape(g, scores, 3, (int64_t[]){B, K, M});
  if (!out.logits) return (assoc_jointgnn_output){0};
  sg_release(g, scores); /* copied; the reshape's backward does not read it */
  out.assoc = association(g, m, out.logits, mode, rng, noise);
  if (!out.assoc) return (assoc_jointgnn_output){0};
  out.raw = assoc_gnn_beam_raw(g, &m->mlp_v, e);
  sg_release_after_backward(g, e);
  out.V = assoc_gnn_beam_power(g, out.assoc, out.raw, m->cfg.power, m->cfg.norm);
  if (!out.V.re) return (assoc_jointgnn_output){0};
  return out;
}

/* ---- rate and loss ------------------------------------------------------------ */

sg_tensor *(assoc_jointgnn_rate)(sg_graph *g, const assoc_jointgnn_output *out, sg_tensor *G_re,
                                 sg_tensor *G_im) {
  if (!out || !out->assoc || !out->V.re || !out->V.im || !G_re || !G_im) return NULL;
  return assoc_gnn_beam_rate(g, out->assoc, G_re, G_im, out->V);
}

sg_tensor *(assoc_jointgnn_loss)(sg_graph *g, sg_tensor *rate, const assoc_jointgnn_output *out,
                                 const assoc_jointgnn_penalty *pen, int epoch, double *violation) {
  if (!rate || !out || !out->assoc) return NULL;
  if (!pen) return assoc_loss(g, rate, out->assoc, NULL, 1.0, 0.0, NULL);
  const double *mu = epoch >= pen->start_epoch ? pen->mu : NULL;
  return assoc_loss(g, rate, out->assoc, mu, pen->capacity, pen->delta, violation);
}
