/* Neural-network building blocks: parameter registry, Linear, MLP,
 * LayerNorm and the warm-restart cosine schedule (sg_nn.h). */
#include "sg_nn.h"

#include <math.h>
#include <string.h>

/* ---- parameter registry -------------------------------------------------- */

sg_params *sg_params_new(sg_dtype dt) {
  sg_params *p = sg_malloc(sizeof *p);
  if (!p) return NULL;
  *p = (sg_params){.dtype = dt};
  return p;
}

void sg_params_free(sg_params *p) {
  if (!p) return;
  for (int i = 0; i < p->count; i++) sg_free(p->tensors[i]);
  sg_mfree(p->names);
  sg_mfree(p->tensors);
  sg_mfree(p);
}

static bool params_grow(sg_params *p) {
  if (p->count < p->capacity) return true;
  int cap = p->capacity ? 2 * p->capacity : 32;
  void *names = sg_realloc(p->names, (size_t)cap * sizeof *p->names);
  if (!names) return false;
  p->names = names;
  void *tensors = sg_realloc(p->tensors, (size_t)cap * sizeof *p->tensors);
  if (!tensors) return false;
  p->tensors = tensors;
  p->capacity = cap;
  return true;
}

void sg_params_set_limit(sg_params *p, int64_t limit) {
  if (p) p->limit = limit > 0 ? limit : 0;
}

/* Whether a parameter of this shape fits under the limit (overflow-safe). */
static bool within_limit(const sg_params *p, int ndim, const int64_t *shape) {
  if (p->limit == 0) return true;
  int64_t left = p->limit - p->numel, n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] <= 0) return true; /* empty, or a bad shape sg_zeros reports */
    if (n > left / shape[i]) return false;
    n *= shape[i];
  }
  return n <= left;
}

sg_tensor *sg_params_add(sg_params *p, const char *name, int ndim, const int64_t *shape) {
  if (!p || !name) return NULL;
  if (shape && ndim >= 0 && ndim <= SG_MAX_DIMS && !within_limit(p, ndim, shape)) return NULL;
  if (strlen(name) >= SG_PARAM_NAME_MAX) {
    sg_report_error("sg_params_add", __FILE__, __LINE__, "name '%s' longer than %d characters",
                    name, SG_PARAM_NAME_MAX - 1);
    return NULL;
  }
  if (sg_params_get(p, name)) {
    sg_report_error("sg_params_add", __FILE__, __LINE__, "duplicate parameter name '%s'", name);
    return NULL;
  }
  if (!params_grow(p)) return NULL;
  sg_tensor *t = sg_zeros(NULL, p->dtype, ndim, shape);
  if (!t) return NULL;
  sg_set_requires_grad(t, true);
  strcpy(p->names[p->count], name);
  p->tensors[p->count++] = t;
  p->numel += t->numel;
  return t;
}

int sg_params_count(const sg_params *p) {
  return p ? p->count : 0;
}

int64_t sg_params_numel(const sg_params *p) {
  return sg_params_numel_prefix(p, "");
}

int64_t sg_params_numel_prefix(const sg_params *p, const char *prefix) {
  int64_t n = 0;
  size_t len = strlen(prefix);
  for (int i = 0; p && i < p->count; i++)
    if (strncmp(p->names[i], prefix, len) == 0) n += p->tensors[i]->numel;
  return n;
}

sg_tensor *sg_params_get(const sg_params *p, const char *name) {
  for (int i = 0; p && i < p->count; i++)
    if (strcmp(p->names[i], name) == 0) return p->tensors[i];
  return NULL;
}

const char *sg_params_name(const sg_params *p, int i) {
  return p && i >= 0 && i < p->count ? p->names[i] : NULL;
}

sg_tensor *sg_params_at(const sg_params *p, int i) {
  return p && i >= 0 && i < p->count ? p->tensors[i] : NULL;
}

sg_tensor *const *sg_params_tensors(const sg_params *p) {
  return p ? p->tensors : NULL;
}

int sg_params_copy(sg_params *dst, const sg_params *src) {
  if (!dst || !src || dst->count != src->count) return -1;
  for (int i = 0; i < src->count; i++)
    if (strcmp(dst->names[i], src->names[i]) != 0 ||
        !sg_same_shape(dst->tensors[i], src->tensors[i]))
      return -1;
  for (int i = 0; i < src->count; i++) {
    const sg_tensor *s = src->tensors[i];
    sg_tensor *d = dst->tensors[i];
    if (s->dtype == d->dtype)
      memcpy(d->data, s->data, (size_t)s->numel * sg_dtype_size(s->dtype));
    else
      for (int64_t j = 0; j < s->numel; j++) sg_set(d, j, sg_get(s, j));
  }
  return 0;
}

/* ---- layers ------------------------------------------------------------------ */

/* "<prefix>.<suffix>" into buf; false if it does not fit. */
static bool join_name(char *buf, const char *prefix, const char *suffix) {
  int n = snprintf(buf, SG_PARAM_NAME_MAX, "%s.%s", prefix, suffix);
  return n > 0 && n < SG_PARAM_NAME_MAX;
}

static void fill_uniform(sg_tensor *t, sg_rng *rng, double bound) {
  for (int64_t i = 0; i < t->numel; i++) sg_set(t, i, -bound + 2.0 * bound * sg_rng_uniform(rng));
}

int sg_linear_layer_init(sg_linear_layer *l, sg_params *p, const char *name, int in, int out,
                         bool bias, sg_rng *rng) {
  char buf[SG_PARAM_NAME_MAX];
  *l = (sg_linear_layer){.in = in, .out = out};
  if (!join_name(buf, name, "weight")) return -1;
  l->weight = sg_params_add(p, buf, 2, (int64_t[]){out, in});
  if (!l->weight) return -1;
  double bound = 1.0 / sqrt((double)in);
  fill_uniform(l->weight, rng, bound);
  if (!bias) return 0;
  if (!join_name(buf, name, "bias")) return -1;
  l->bias = sg_params_add(p, buf, 1, (int64_t[]){out});
  if (!l->bias) return -1;
  fill_uniform(l->bias, rng, bound);
  return 0;
}

sg_tensor *sg_linear_layer_forward(sg_graph *g, const sg_linear_layer *l, sg_tensor *x) {
  return sg_linear(g, x, l->weight, l->bias);
}

int sg_mlp_init(sg_mlp *m, sg_params *p, const char *name, int in, int hidden, int out,
                sg_rng *rng) {
  static const char *const idx[3] = {"0", "2", "4"}; /* nn.Sequential positions */
  const int ins[3] = {in, hidden, hidden}, outs[3] = {hidden, hidden, out};
  char buf[SG_PARAM_NAME_MAX];
  for (int i = 0; i < 3; i++) {
    if (!join_name(buf, name, idx[i])) return -1;
    if (sg_linear_layer_init(&m->layer[i], p, buf, ins[i], outs[i], true, rng)) return -1;
  }
  return 0;
}

/* Memory planning: t, made in this file, has had its last consumer in the
 * forward. Pre-activations are never read again (ReLU's backward reads its
 * output, Linear's its input): released now. ReLU outputs are read by the
 * next Linear's backward: released once that has run (at once in no-grad
 * mode). */
static void consumed(sg_graph *g, sg_tensor *t, bool read_by_backward) {
  if (read_by_backward)
    sg_release_after_backward(g, t);
  else
    sg_release(g, t);
}

/* ReLU(Linear(x)) of one layer, fused (sg_linear_relu). */
static sg_tensor *linear_relu_layer(sg_graph *g, const sg_linear_layer *l, sg_tensor *x) {
  return sg_linear_relu(g, x, l->weight, l->bias);
}

/* The second hidden layer from the first one's activations r1, which
 * only backwards read from then on. */
static sg_tensor *second_hidden(sg_graph *g, const sg_mlp *m, sg_tensor *r1) {
  sg_tensor *r2 = linear_relu_layer(g, &m->layer[1], r1);
  consumed(g, r1, true);
  return r2;
}

/* The last Linear, on hidden activations r that only its backward reads. */
static sg_tensor *mlp_out(sg_graph *g, const sg_mlp *m, sg_tensor *r) {
  sg_tensor *out = sg_linear_layer_forward(g, &m->layer[2], r);
  consumed(g, r, true);
  return out;
}

sg_tensor *sg_mlp_forward(sg_graph *g, const sg_mlp *m, sg_tensor *x) {
  return mlp_out(g, m, second_hidden(g, m, linear_relu_layer(g, &m->layer[0], x)));
}

/* The first Linear over the parts and its ReLU, one fused op
 * (sg_linear_parts): each part times its column block of W, the broadcast
 * sum, the bias and the ReLU, without storing the pre-activation. */
static sg_tensor *first_layer_parts(sg_graph *g, const sg_mlp *m, int n, sg_tensor *const *parts) {
  const sg_linear_layer *first = &m->layer[0];
  int64_t width = 0;
  for (int i = 0; i < n; i++) {
    if (!parts[i]) return NULL;
    width += parts[i]->shape[parts[i]->ndim - 1];
  }
  if (width != first->in) {
    sg_op_error(g, "sg_mlp_forward_parts", "part widths add up to %lld, the MLP takes %d",
                (long long)width, first->in);
    return NULL;
  }
  return sg_linear_parts(g, n, parts, first->weight, first->bias, true);
}

sg_tensor *sg_mlp_forward_parts(sg_graph *g, const sg_mlp *m, int n, sg_tensor *const *parts) {
  sg_tensor *r1 = first_layer_parts(g, m, n, parts);
  return r1 ? mlp_out(g, m, second_hidden(g, m, r1)) : NULL;
}

sg_tensor *sg_mlp_forward_parts_mean(sg_graph *g, const sg_mlp *m, int n, sg_tensor *const *parts,
                                     int axis) {
  sg_tensor *r1 = first_layer_parts(g, m, n, parts);
  if (!r1) return NULL;
  sg_tensor *r2 = second_hidden(g, m, r1);
  sg_tensor *mean = sg_mean(g, r2, axis, false);
  consumed(g, r2, true); /* the Linear+ReLU backward reads it, the mean's does not */
  return mlp_out(g, m, mean);
}

int64_t sg_mlp_numel(int64_t in, int64_t hidden, int64_t out) {
  return (in + 1) * hidden + (hidden + 1) * hidden + (hidden + 1) * out;
}

int sg_layernorm_layer_init(sg_layernorm_layer *l, sg_params *p, const char *name, int width) {
  char buf[SG_PARAM_NAME_MAX];
  *l = (sg_layernorm_layer){.width = width, .eps = 1e-5};
  if (!join_name(buf, name, "weight")) return -1;
  l->weight = sg_params_add(p, buf, 1, (int64_t[]){width});
  if (!l->weight) return -1;
  for (int64_t i = 0; i < width; i++) sg_set(l->weight, i, 1.0);
  if (!join_name(buf, name, "bias")) return -1;
  l->bias = sg_params_add(p, buf, 1, (int64_t[]){width}); /* zeroed */
  return l->bias ? 0 : -1;
}

sg_tensor *sg_layernorm_layer_forward(sg_graph *g, const sg_layernorm_layer *l, sg_tensor *x) {
  return sg_layer_norm(g, x, l->weight, l->bias, l->eps);
}

/* ---- learning-rate schedule ------------------------------------------------ */

double sg_cosine_restarts_lr(const sg_cosine_restarts *s, double epoch) {
  /* Walk the periods instead of PyTorch's closed form with a logarithm:
   * the same period boundaries, without rounding at exact boundaries. */
  double start = 0.0, period = s->t0;
  if (epoch < 0) epoch = 0;
  if (s->t_mult <= 1) {
    start = floor(epoch / period) * period;
  } else {
    while (epoch >= start + period) {
      start += period;
      period *= s->t_mult;
    }
  }
  double t_cur = epoch - start;
  return s->lr_min + (s->lr_max - s->lr_min) * (1.0 + cos(M_PI * t_cur / period)) / 2.0;
}
