/* The model inputs of a batch of data-set samples, and batched eval-mode
 * inference over a data set (assoc_gnn.h). Both training (mini-batches and
 * the per-epoch test metrics) and evaluation build their inputs here. */
#include "assoc_gnn.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "models_internal.h"

/* ---- batch inputs ------------------------------------------------------------------- */

static bool batch_args_valid(const sg_graph *g, const assoc_dataset *ds, const int64_t *idx,
                             int64_t start, int64_t B, double scale) {
  bool ok = g && ds && B >= 1 && scale > 0 && isfinite(scale);
  if (ok && !idx) ok = start >= 0 && start + B <= ds->S;
  for (int64_t b = 0; ok && idx && b < B; b++) ok = idx[b] >= 0 && idx[b] < ds->S;
  if (!ok)
    sg_report_error("assoc_gnn_batch_make", __FILE__, __LINE__,
                    "bad arguments: B %lld, start %lld, scale %g, data set of %lld samples "
                    "(need B >= 1, samples in range, scale > 0, non-NULL graph and data set)",
                    (long long)B, (long long)start, scale, ds ? (long long)ds->S : 0LL);
  return ok;
}

/* H features of the batch, one sample at a time (samples are contiguous in
 * the data set, batches need not be). */
static void fill_features(const assoc_dataset *ds, const int64_t *idx, int64_t start, int64_t B,
                          double scale, assoc_feature_kind kind, sg_tensor *H) {
  int64_t per = (int64_t)ds->M * ds->K * assoc_feature_width(kind, ds->N);
  int64_t work =
      kind != ASSOC_FEATURES_CHANNEL ? B * per * ds->K : B * per; /* link: K per feature */
#pragma omp parallel for if (work > 65536) schedule(static)
  for (int64_t b = 0; b < B; b++) {
    int64_t s = idx ? idx[b] : start + b;
    if (kind != ASSOC_FEATURES_CHANNEL)
      assoc_link_features_fill(ds, s, 1, H, b * per);
    else
      assoc_features_fill(ds, s, 1, scale, H, b * per);
  }
}

/* p and q of the batch, a sample at a time through a small double buffer. */
static void fill_node_features(const assoc_dataset *ds, const int64_t *idx, int64_t start,
                               assoc_feature_kind kind, sg_tensor *p, sg_tensor *q) {
  int64_t B = p->shape[0], per_p = p->shape[1] * p->shape[2], per_q = q->shape[1] * q->shape[2];
  double bp[2 * ASSOC_MAX_BS], bq[2 * ASSOC_MAX_UES];
  for (int64_t b = 0; b < B; b++) {
    assoc_node_features(ds, idx ? idx[b] : start + b, kind, bp, bq);
    for (int64_t i = 0; i < per_p; i++) sg_set(p, b * per_p + i, bp[i]);
    for (int64_t i = 0; i < per_q; i++) sg_set(q, b * per_q + i, bq[i]);
  }
}

/* MRT couplings of the batch; non-contiguous samples are gathered into
 * arena scratch first. */
static int batch_couplings(sg_graph *g, const assoc_dataset *ds, const int64_t *idx, int64_t start,
                           int64_t B, sg_dtype dt, assoc_gnn_batch *out) {
  int64_t per = (int64_t)ds->M * ds->K * ds->N;
  const double *re = ds->H_re + start * per, *im = ds->H_im + start * per;
  if (idx) {
    double *gre = sg_arena_alloc(g, (size_t)(B * per) * sizeof(double));
    double *gim = sg_arena_alloc(g, (size_t)(B * per) * sizeof(double));
    if (!gre || !gim) return -1;
    for (int64_t b = 0; b < B; b++) {
      memcpy(gre + b * per, ds->H_re + idx[b] * per, (size_t)per * sizeof(double));
      memcpy(gim + b * per, ds->H_im + idx[b] * per, (size_t)per * sizeof(double));
    }
    re = gre, im = gim;
  }
  /* powers in mW: only their ratio matters */
  double pt = pow(10.0, ds->pt_dbm / 10.0), noise = pow(10.0, ds->noise_dbm / 10.0);
  return assoc_mrt_couplings(g, re, im, B, ds->M, ds->K, ds->N, pt, noise, dt, &out->c_re,
                             &out->c_im);
}

int assoc_gnn_batch_make(sg_graph *g, const assoc_dataset *ds, const int64_t *idx, int64_t start,
                         int64_t B, double feature_scale, assoc_feature_kind features, sg_dtype dt,
                         bool couplings, assoc_gnn_batch *out) {
  *out = (assoc_gnn_batch){.B = B};
  if (!batch_args_valid(g, ds, idx, start, B, feature_scale)) return -1;
  int64_t M = ds->M, K = ds->K;
  int fp, fq;
  assoc_node_feature_widths(features, &fp, &fq);
  out->p = sg_empty(g, dt, 3, (int64_t[]){B, M, fp});
  out->q = sg_empty(g, dt, 3, (int64_t[]){B, K, fq});
  out->H = sg_empty(g, dt, 4, (int64_t[]){B, M, K, assoc_feature_width(features, ds->N)});
  if (!out->p || !out->q || !out->H) return -1;
  fill_node_features(ds, idx, start, features, out->p, out->q);
  fill_features(ds, idx, start, B, feature_scale, features, out->H);
  if (couplings && batch_couplings(g, ds, idx, start, B, dt, out)) return -1;
  return 0;
}

int assoc_gnn_check_data(const assoc_gnn *m, const assoc_dataset *ds, sg_io_error *err) {
  const assoc_gnn_config *c = &m->cfg;
  int width = assoc_feature_width(c->features, ds->N), fp, fq;
  assoc_node_feature_widths(c->features, &fp, &fq);
  if (c->fp != fp || c->fq != fq)
    return assoc_fail(err,
                      "the model takes node features of widths %d and %d (%s features: %d, %d)",
                      c->fp, c->fq, assoc_feature_kind_name(c->features), fp, fq);
  if (c->fe != width)
    return assoc_fail(err,
                      "the model takes %d %s features per link, the data set's N = %d antennas "
                      "give %d",
                      c->fe, assoc_feature_kind_name(c->features), ds->N, width);
  return 0;
}

/* ---- batched inference ---------------------------------------------------------------- */

/* The two graphs of an inference: the batch inputs, and the scratch graph
 * of assoc_gnn_predict (which resets it per chunk). */
typedef struct infer_graphs {
  sg_graph *inputs, *scratch;
} infer_graphs;

static void infer_graphs_free(infer_graphs *e) {
  sg_graph_free(e->inputs);
  sg_graph_free(e->scratch);
}

static int infer_graphs_new(infer_graphs *e) {
  e->inputs = sg_graph_new();
  e->scratch = sg_graph_new();
  if (e->inputs && e->scratch) {
    sg_set_grad_enabled(e->inputs, false);
    return 0;
  }
  infer_graphs_free(e);
  *e = (infer_graphs){NULL, NULL};
  return -1;
}

/* A~ of samples [start, start+B) into dst (B x K x M); 0 or -1. */
static int infer_batch(const infer_graphs *e, const assoc_model *m, const assoc_dataset *ds,
                       int64_t start, int64_t B, const assoc_gnn_infer_opts *o, double *dst) {
  sg_graph_reset(e->inputs);
  assoc_gnn_batch in;
  if (assoc_gnn_batch_make(e->inputs, ds, NULL, start, B, o->feature_scale, m->features,
                           m->params->dtype, false, &in))
    return -1;
  sg_tensor *A = assoc_model_predict(e->scratch, m, &in, ds->N, o->chunk);
  if (!A) return -1;
  for (int64_t i = 0; i < A->numel; i++) dst[i] = sg_get(A, i);
  sg_free(A);
  return 0;
}

int assoc_model_infer(const assoc_model *m, const assoc_dataset *ds, int64_t count,
                      const assoc_gnn_infer_opts *o, double *A, double *batch_seconds,
                      double *seconds, sg_io_error *err) {
  if (!m || !m->params || !m->forward)
    return assoc_fail(err, "inference needs a model with parameters and a forward");
  if (!(o->feature_scale > 0) || o->batch < 1)
    return assoc_fail(err, "feature scale %g must be > 0 and batch %lld >= 1", o->feature_scale,
                      (long long)o->batch);
  infer_graphs e;
  if (infer_graphs_new(&e)) return assoc_fail(err, "out of memory");
  int64_t KM = (int64_t)ds->K * ds->M;
  double total = 0.0;
  int rc = 0;
  for (int64_t start = 0, b = 0; start < count && !rc; start += o->batch, b++) {
    int64_t B = count - start < o->batch ? count - start : o->batch;
    double t0 = omp_get_wtime();
    rc = infer_batch(&e, m, ds, start, B, o, A + start * KM);
    double dt = omp_get_wtime() - t0;
    total += dt;
    if (batch_seconds) batch_seconds[b] = dt;
    if (rc)
      assoc_fail(err, "%s: forward failed on samples %lld..%lld (reported above)",
                 m->name ? m->name : "model", (long long)start, (long long)(start + B - 1));
  }
  infer_graphs_free(&e);
  if (seconds) *seconds = total;
  return rc;
}

int assoc_gnn_infer(const assoc_gnn *m, const assoc_dataset *ds, int64_t count,
                    const assoc_gnn_infer_opts *o, double *A, double *batch_seconds,
                    double *seconds, sg_io_error *err) {
  assoc_model net = assoc_gnn_model(m);
  return assoc_model_infer(&net, ds, count, o, A, batch_seconds, seconds, err);
}
