/* The float32 training gradient of a GNN against the float64 gradient of
 * the same weights and inputs (assoc_gnn_precision_check in assoc_train.h).
 *
 * A float32 and a float64 run of the same ReLU network agree only while
 * every ReLU decides alike. A pre-activation within float32 round-off of
 * zero (measured: 4e-8 against a typical 0.1, one in a million at the
 * medium width) can be cut in float32 and passed in float64; the gradient
 * of that element then differs by its whole size, and in these models the
 * difference is not small against the gradient: the loss is nearly
 * invariant to what both BSs of a UE see alike (its softmax over the BSs),
 * so the gradient of every UE-level quantity is a sum over the BSs that
 * cancels to a few percent, and a one-sided change does not cancel. Both
 * runs are therefore observed (sg_graph_set_observer): the float32 run
 * keeps its outputs that hold exact zeros, and the float64 run replays its
 * decisions (an output zero in one precision and not the other takes the
 * float32 value, before anything reads it). The float64 gradient is then
 * that of the float32 run's piece of the piecewise-smooth function, and
 * the two differ by round-off alone. */
#include "assoc_train.h"

#include <math.h>
#include <string.h>

#include "models_internal.h"

/* The float32 run's outputs, kept for the nodes with exact zeros (the
 * ReLU outputs), and what replaying them in the float64 run did. */
typedef struct kink_log {
  bool replay;   /* false: recording (float32); true: replaying (float64) */
  int64_t nodes; /* op outputs seen in this run */
  int64_t recorded;
  int64_t cap;          /* of the arrays below */
  float **values;       /* [node] the float32 output, or NULL if it had no zero */
  int64_t *numel;       /* [node] */
  int64_t flips;        /* elements zero in one run only, replayed */
  int64_t unreplayable; /* zeros in float64 where float32 kept no values */
  bool mismatch;        /* the runs recorded different ops */
  char first[160];      /* the op, shape and call site of the first flip */
} kink_log;

static bool log_grow(kink_log *z) {
  if (z->nodes < z->cap) return true;
  int64_t cap = z->cap ? 2 * z->cap : 256;
  float **values = sg_realloc(z->values, (size_t)cap * sizeof *values);
  if (values) z->values = values;
  int64_t *numel = sg_realloc(z->numel, (size_t)cap * sizeof *numel);
  if (numel) z->numel = numel;
  if (!values || !numel) return false;
  z->cap = cap;
  return true;
}

/* A copy of a float32 output that holds an exact zero, else NULL. */
static float *values_if_zero(const sg_tensor *t, bool *oom) {
  const float *v = sg_f32(t);
  int64_t n = t->numel, j = 0;
  while (j < n && v[j] != 0) j++;
  if (j == n) return NULL;
  float *copy = sg_malloc((size_t)n * sizeof *copy);
  if (!copy) return *oom = true, NULL;
  memcpy(copy, v, (size_t)n * sizeof *copy);
  return copy;
}

static void record_node(kink_log *z, const sg_node *n) {
  bool oom = false;
  if (!n->out->data || n->out->dtype != SG_F32 || !log_grow(z)) {
    z->mismatch = true;
    return;
  }
  z->values[z->nodes] = values_if_zero(n->out, &oom);
  z->numel[z->nodes] = n->out->numel;
  z->mismatch |= oom;
  z->recorded = ++z->nodes;
}

/* Gives the float64 output the float32 run's decision wherever exactly one
 * of them is zero: the float32 value (0, or a positive value within
 * round-off of the kink) replaces the float64 one, so that the backward,
 * which masks by the output, takes the float32 run's branch. */
static void replay_node(kink_log *z, sg_graph *g, const sg_node *n, int64_t i) {
  if (i >= z->recorded || z->numel[i] != n->out->numel || !sg_f64(n->out)) {
    z->mismatch = true;
    return;
  }
  double *y = sg_f64(n->out);
  const float *v = z->values[i];
  int64_t flips = 0;
  for (int64_t j = 0; j < n->out->numel; j++) {
    if (!v) {
      z->unreplayable += y[j] == 0;
      continue;
    }
    if ((v[j] == 0) != (y[j] == 0)) y[j] = v[j], flips++;
  }
  if (flips && !z->flips) {
    char shape[96];
    snprintf(z->first, sizeof z->first, "%s %s (called at %s:%d)", n->op->name,
             sg_shape_str(n->out->ndim, n->out->shape, shape),
             sg_graph_file(g) ? sg_graph_file(g) : "?", sg_graph_line(g));
  }
  z->flips += flips;
}

static void observe(void *ctx, sg_graph *g, const sg_node *n, sg_observe_phase phase) {
  kink_log *z = ctx;
  if (phase != SG_OBSERVE_FORWARD) return;
  if (z->replay)
    replay_node(z, g, n, z->nodes++);
  else
    record_node(z, n);
}

static void log_free(kink_log *z) {
  for (int64_t i = 0; i < z->recorded; i++) sg_mfree(z->values[i]);
  sg_mfree(z->values);
  sg_mfree(z->numel);
}

/* A tensor in dtype dt: t itself, or a caller-owned copy (*owned set). */
static sg_tensor *in_dtype(const sg_tensor *t, sg_dtype dt, sg_tensor **owned) {
  if (!t || t->dtype == dt) return (sg_tensor *)t;
  return *owned = sg_to_dtype(NULL, t, dt);
}

double assoc_gnn_loss_grad(assoc_gnn *m, const assoc_gnn_batch *in, const sg_tensor *noise,
                           const double *mu, double delta, sg_observer observer, void *ctx,
                           sg_sinkhorn_info *info) {
  sg_dtype dt = m->cfg.dtype;
  sg_tensor *own[6] = {NULL}, *t[6];
  const sg_tensor *src[6] = {in->p, in->q, in->H, in->c_re, in->c_im, noise};
  for (int i = 0; i < 6; i++) t[i] = in_dtype(src[i], dt, &own[i]);
  double v = NAN;
  sg_graph *g = sg_graph_new();
  if (g) {
    sg_params *ps = m->params;
    sg_params_zero_grad(sg_params_tensors(ps), sg_params_count(ps));
    sg_graph_set_observer(g, observer, ctx);
    assoc_gnn_output o = assoc_gnn_forward(g, m, t[0], t[1], t[2], ASSOC_GNN_TRAIN, NULL, t[5]);
    sg_tensor *rate = o.assoc ? assoc_sum_rate(g, o.assoc, t[3], t[4], 1.0) : NULL;
    sg_tensor *loss = rate ? assoc_loss(g, rate, o.assoc, mu, m->cfg.capacity, delta, NULL) : NULL;
    if (loss) v = sg_get(loss, 0), sg_backward(g, loss);
    if (info) *info = o.sinkhorn;
    sg_graph_free(g);
  }
  for (int i = 0; i < 6; i++) sg_free(own[i]);
  return v;
}

/* Relative L2 distances per parameter tensor and over the whole vector. */
static void compare_grads(const sg_params *p32, const sg_params *p64, assoc_precision_report *r) {
  double num = 0, den = 0;
  r->worst_param = -1;
  for (int i = 0; i < r->n_params; i++) {
    const sg_tensor *a = sg_params_at(p32, i), *b = sg_params_at(p64, i);
    double n1 = 0, d1 = 0;
    for (int64_t j = 0; a->grad && b->grad && j < a->numel; j++) {
      double x = sg_get(a->grad, j), y = sg_get(b->grad, j);
      n1 += (x - y) * (x - y), d1 += y * y;
    }
    num += n1, den += d1;
    r->param_rel[i] = d1 > 0 ? sqrt(n1 / d1) : (n1 > 0 ? INFINITY : 0);
    if (r->worst_param < 0 || r->param_rel[i] > r->param_rel[r->worst_param]) r->worst_param = i;
  }
  r->grad_rel = den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
}

int assoc_precision_compare(assoc_precision_run run, void *ctx, sg_params *p32, sg_params *p64,
                            assoc_precision_report *r, sg_io_error *err) {
  *r = (assoc_precision_report){.sinkhorn_kink_margin = INFINITY};
  if (sg_params_copy(p64, p32))
    return assoc_fail(err, "assoc_precision_compare: the two models differ in shape");
  r->n_params = sg_params_count(p32);
  r->param_rel = assoc_zalloc((size_t)r->n_params, sizeof *r->param_rel);
  kink_log z = {0};
  r->loss32 = run(ctx, SG_F32, observe, &z);
  int64_t nodes32 = z.nodes;
  z.replay = true, z.nodes = 0;
  r->loss64 = run(ctx, SG_F64, observe, &z);
  bool ok = r->param_rel && isfinite(r->loss64) && isfinite(r->loss32) && !z.mismatch &&
            z.nodes == nodes32;
  if (ok) compare_grads(p32, p64, r);
  r->relu_flips = z.flips;
  r->unreplayable = z.unreplayable;
  r->comparable = ok && z.unreplayable == 0;
  snprintf(r->first_flip, sizeof r->first_flip, "%s", z.first);
  log_free(&z);
  if (!ok) {
    assoc_precision_report_free(r);
    return assoc_fail(
        err, "assoc_precision_compare: the float32 and float64 runs did not record the same ops");
  }
  return 0;
}

/* The association GNN's run for assoc_precision_compare. */
typedef struct gnn_run {
  assoc_gnn *m[2]; /* float32, float64 */
  const assoc_gnn_batch *in32;
  const sg_tensor *noise32;
  const double *mu;
  double delta;
  sg_sinkhorn_info info[2];
} gnn_run;

static double gnn_loss_grad(void *ctx, sg_dtype dt, sg_observer observer, void *obs_ctx) {
  gnn_run *c = ctx;
  int i = dt == SG_F64;
  return assoc_gnn_loss_grad(c->m[i], c->in32, c->noise32, c->mu, c->delta, observer, obs_ctx,
                             &c->info[i]);
}

int assoc_gnn_precision_check(assoc_gnn *m32, assoc_gnn *m64, const assoc_gnn_batch *in32,
                              sg_tensor *noise32, const double *mu, double delta,
                              assoc_precision_report *r, sg_io_error *err) {
  *r = (assoc_precision_report){0};
  if (m32->cfg.dtype != SG_F32 || m64->cfg.dtype != SG_F64 || !in32->c_re || !noise32)
    return assoc_fail(err, "assoc_gnn_precision_check: needs a float32 and a float64 model, "
                           "couplings and a Gumbel sample");
  gnn_run c = {{m32, m64}, in32, noise32, mu, delta, {{0}}};
  if (assoc_precision_compare(gnn_loss_grad, &c, m32->params, m64->params, r, err)) return -1;
  if (m32->cfg.variant == ASSOC_GNN_ATTSKGS || m32->cfg.variant == ASSOC_GNN_SKGS) {
    r->sinkhorn_near_kink = c.info[0].near_kink;
    r->sinkhorn_kink_margin = c.info[0].kink_margin;
    r->comparable &= r->sinkhorn_near_kink == 0;
  }
  return 0;
}

void assoc_precision_report_free(assoc_precision_report *r) {
  sg_mfree(r->param_rel);
  r->param_rel = NULL;
}
