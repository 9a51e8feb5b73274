/* The hook by which the training loop and the evaluation run any
 * association model (assoc_gnn.h, "a model of one's own"): the checked
 * forward, chunked eval-mode prediction, and the built-in GNNs as such a
 * model. */
#include "assoc_gnn.h"

#include <string.h>

/* ---- the built-in GNNs through the hook ------------------------------------------ */

sg_tensor *(assoc_model_gumbel)(sg_graph *g, const assoc_model_call *call, sg_dtype dt, int64_t B,
                                int64_t K, int64_t M) {
  if (!call || call->mode != ASSOC_GNN_TRAIN) return NULL;
  int64_t all = call->batch_rows > 0 ? call->batch_rows : B;
  if (!call->rng || call->rows_lo < 0 || call->rows_lo + B > all) {
    sg_op_error(g, "assoc_model_gumbel",
                "needs the run's generator and rows %lld..%lld within a batch of %lld",
                (long long)call->rows_lo, (long long)(call->rows_lo + B - 1), (long long)all);
    return NULL;
  }
  sg_tensor *noise = sg_rand_gumbel(g, call->rng, dt, 3, (int64_t[]){all, K, M});
  return all == B ? noise : sg_slice(g, noise, 0, call->rows_lo, call->rows_lo + B);
}

static sg_tensor *gnn_forward(void *ctx, sg_graph *g, const assoc_gnn_batch *in,
                              const assoc_model_call *call) {
  const assoc_gnn *m = ctx;
  sg_tensor *noise = NULL;
  if (m->cfg.variant != ASSOC_GNN_SMA && call->mode == ASSOC_GNN_TRAIN)
    noise = assoc_model_gumbel(g, call, m->cfg.dtype, in->q->shape[0], in->q->shape[1],
                               in->p->shape[1]);
  assoc_gnn_output o = assoc_gnn_forward(g, m, in->p, in->q, in->H, call->mode, call->rng, noise);
  if (call->sinkhorn) *call->sinkhorn = o.sinkhorn;
  return o.assoc;
}

static int64_t gnn_eval_chunk(void *ctx, int64_t K, int64_t M) {
  return assoc_gnn_predict_chunk((const assoc_gnn *)ctx, K, M);
}

assoc_model assoc_gnn_model(const assoc_gnn *m) {
  /* ctx is not const in the hook's signature; the callbacks only read it. */
  return (assoc_model){.name = assoc_gnn_variant_name(m->cfg.variant),
                       .params = m->params,
                       .features = m->cfg.features,
                       .forward = gnn_forward,
                       .eval_chunk = gnn_eval_chunk,
                       .ctx = (void *)m,
                       .splits_batches = true};
}

/* ---- the checked forward ---------------------------------------------------------- */

static const char *model_name(const assoc_model *m) {
  return m->name ? m->name : "the model";
}

sg_tensor *(assoc_model_forward)(sg_graph *g, const assoc_model *m, const assoc_gnn_batch *in,
                                 const assoc_model_call *call) {
  if (!m || !m->forward || !m->params || !in || !in->p || !in->q || !call) {
    sg_op_error(g, "assoc_model_forward",
                "needs a model with a forward and parameters, batch inputs and a call");
    return NULL;
  }
  if (call->sinkhorn) *call->sinkhorn = (sg_sinkhorn_info){0};
  int64_t B = in->p->shape[0], M = in->p->shape[1], K = in->q->shape[1];
  const char *file = sg_graph_file(g);
  int line = sg_graph_line(g);
  sg_tensor *A = m->forward(m->ctx, g, in, call);
  sg_graph_at(g, file, line); /* the callback's ops moved the call site */
  if (!A) return NULL;        /* reported by the callback's op */
  int64_t want[3] = {B, K, M};
  bool ok = A->dtype == m->params->dtype && A->ndim == 3;
  for (int a = 0; ok && a < 3; a++) ok = A->shape[a] == want[a];
  if (!ok) {
    char got[96], exp[96];
    sg_op_error(g, "assoc_model_forward", "%s returned A~ %s %s, expected %s %s ([B, K, M])",
                model_name(m), sg_dtype_name(A->dtype), sg_shape_str(A->ndim, A->shape, got),
                sg_dtype_name(m->params->dtype), sg_shape_str(3, want, exp));
    return NULL;
  }
  return A;
}

/* ---- chunked eval-mode prediction -------------------------------------------------- */

/* Samples [start, start+n) of a batch-major tensor, copied into g. */
static sg_tensor *samples_of(sg_graph *g, const sg_tensor *t, int64_t start, int64_t n) {
  int64_t shape[SG_MAX_DIMS];
  memcpy(shape, t->shape, (size_t)t->ndim * sizeof *shape);
  shape[0] = n;
  size_t sample_bytes = (size_t)(t->numel / t->shape[0]) * sg_dtype_size(t->dtype);
  return sg_from_data(g, t->dtype, t->ndim, shape,
                      (const unsigned char *)t->data + (size_t)start * sample_bytes);
}

static bool in_graph(const sg_tensor *t, const sg_graph *g) {
  return t && t->graph == g;
}

sg_tensor *(assoc_model_predict)(sg_graph *g, const assoc_model *m, const assoc_gnn_batch *in,
                                 double capacity, int64_t chunk) {
  if (!m || !in || !in->p || !in->q || !in->H) {
    sg_op_error(g, "assoc_model_predict", "needs a model and batch inputs p, q, H");
    return NULL;
  }
  if (in_graph(in->p, g) || in_graph(in->q, g) || in_graph(in->H, g)) {
    sg_op_error(g, "assoc_model_predict", "the inputs live in the scratch graph, which it resets");
    return NULL;
  }
  int64_t B = in->p->shape[0], M = in->p->shape[1], K = in->q->shape[1];
  if (chunk <= 0) chunk = m->eval_chunk ? m->eval_chunk(m->ctx, K, M) : B;
  if (chunk < 1) chunk = 1;
  sg_dtype dt = m->params ? m->params->dtype : in->p->dtype;
  sg_tensor *out = sg_empty(NULL, dt, 3, (int64_t[]){B, K, M});
  if (!out) {
    sg_op_error(g, "assoc_model_predict", "out of memory for the output [%lld, %lld, %lld]",
                (long long)B, (long long)K, (long long)M);
    return NULL;
  }
  size_t sample_bytes = (size_t)(K * M) * sg_dtype_size(dt);
  assoc_model_call call = {.mode = ASSOC_GNN_EVAL, .capacity = capacity};
  bool was = sg_set_grad_enabled(g, false);
  for (int64_t start = 0; start < B; start += chunk) {
    int64_t n = B - start < chunk ? B - start : chunk;
    sg_graph_reset(g);
    assoc_gnn_batch part = {.B = n,
                            .p = samples_of(g, in->p, start, n),
                            .q = samples_of(g, in->q, start, n),
                            .H = samples_of(g, in->H, start, n)};
    sg_tensor *A = assoc_model_forward(g, m, &part, &call);
    if (!A) {
      sg_free(out);
      out = NULL;
      break;
    }
    memcpy((unsigned char *)out->data + (size_t)start * sample_bytes, A->data,
           (size_t)n * sample_bytes);
  }
  sg_set_grad_enabled(g, was); /* g keeps the last chunk until its next reset */
  return out;
}
