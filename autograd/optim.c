/* Optimisers: Adam, in the parameter's dtype as torch.optim.Adam. */
#include "sg_dispatch.h"
#include "sg_optim.h"

#include <string.h>

/* Out of memory: reported, what was made is freed. */
static sg_adam *adam_oom(sg_adam *o, int n_params) {
  sg_report_error("sg_adam_new", NULL, 0, "out of memory for the state of %d parameters", n_params);
  sg_adam_free(o);
  return NULL;
}

sg_adam *sg_adam_new(sg_tensor *const *params, int n_params, double lr) {
  sg_adam *o = sg_malloc(sizeof *o);
  if (!o) return adam_oom(o, n_params);
  memset(o, 0, sizeof *o);
  o->params = sg_malloc((size_t)n_params * sizeof *o->params);
  o->m = sg_malloc((size_t)n_params * sizeof *o->m);
  o->v = sg_malloc((size_t)n_params * sizeof *o->v);
  o->steps = sg_malloc((size_t)n_params * sizeof *o->steps);
  if (!o->params || !o->m || !o->v || !o->steps) return adam_oom(o, n_params);
  for (int i = 0; i < n_params; i++) {
    o->params[i] = params[i];
    o->m[i] = sg_zeros(NULL, params[i]->dtype, params[i]->ndim, params[i]->shape);
    o->v[i] = sg_zeros(NULL, params[i]->dtype, params[i]->ndim, params[i]->shape);
    o->steps[i] = 0;
    o->n_params = i + 1;
    if (!o->m[i] || !o->v[i]) return adam_oom(o, n_params);
  }
  o->lr = lr;
  o->beta1 = 0.9;
  o->beta2 = 0.999;
  o->eps = 1e-8;
  return o;
}

void sg_adam_free(sg_adam *o) {
  if (!o) return;
  for (int i = 0; o->m && o->v && i < o->n_params; i++) {
    sg_free(o->m[i]);
    sg_free(o->v[i]);
  }
  sg_mfree(o->params);
  sg_mfree(o->m);
  sg_mfree(o->v);
  sg_mfree(o->steps);
  sg_mfree(o);
}

/* One parameter's update, as torch.optim.Adam (non-amsgrad, the
 * single-tensor form) computes it, in the parameter's dtype: the moments
 * are stored in it (float32 moments for a float32 model, half the memory
 * of float64 ones) and the arithmetic follows torch's order in it:
 *   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
 *   p -= (lr / bc1) (m / (sqrt(v) / sqrt(bc2) + eps)).
 * Float32 arithmetic runs twice the lanes of double through the square
 * root and the division, which bound the loop. The settings are copied to
 * locals of type T and the arrays marked restrict so that the loop
 * vectorises (through o-> the compiler must assume m and v alias them). */
#define ADAM_ELEMENT(T)                                                                            \
  do {                                                                                             \
    T gj = wd != 0 ? gd[j] + twd * pd[j] : gd[j];                                                  \
    T mj = tb1 * m[j] + tc1 * gj, vj = tb2 * v[j] + tc2 * gj * gj;                                 \
    m[j] = mj;                                                                                     \
    v[j] = vj;                                                                                     \
    pd[j] -= tstep * (mj / (sqrt(vj) / tsqrt_bc2 + teps));                                         \
  } while (0)

static void adam_update(const sg_adam *o, sg_tensor *p, const sg_tensor *grad, sg_tensor *mt,
                        sg_tensor *vt, int64_t step) {
  const double b1 = o->beta1, b2 = o->beta2, eps = o->eps, wd = o->weight_decay;
  double bc1 = 1 - pow(b1, (double)step), bc2 = 1 - pow(b2, (double)step);
  double step_size = o->lr / bc1, sqrt_bc2 = sqrt(bc2);
  int64_t n = p->numel;
  SG_DISPATCH(p->dtype, T, {
    T *restrict pd = p->data, *restrict m = mt->data, *restrict v = vt->data;
    const T *restrict gd = grad->data;
    const T tb1 = (T)b1, tb2 = (T)b2, tc1 = (T)(1 - b1), tc2 = (T)(1 - b2), twd = (T)wd,
            teps = (T)eps, tstep = (T)step_size, tsqrt_bc2 = (T)sqrt_bc2;
    /* Threads only for large tensors: even an if(false) parallel region
     * costs ~0.3 us, and a model has dozens of small parameters. */
    if (n > 65536) {
      _Pragma("omp parallel for simd schedule(static)") for (int64_t j = 0; j < n; j++)
          ADAM_ELEMENT(T);
    } else {
      _Pragma("omp simd") for (int64_t j = 0; j < n; j++) ADAM_ELEMENT(T);
    }
  });
}

void sg_adam_step(sg_adam *o) {
  for (int i = 0; i < o->n_params; i++) {
    sg_tensor *p = o->params[i];
    if (!p->grad || !p->grad_fresh) continue;
    p->grad_fresh = false;
    adam_update(o, p, p->grad, o->m[i], o->v[i], ++o->steps[i]);
  }
}

/* NULL when grad fits parameter i (same dtype and shape), else why not. */
static const char *grad_mismatch(const sg_tensor *p, const sg_tensor *grad) {
  if (grad->dtype != p->dtype) return "dtype";
  if (grad->ndim != p->ndim) return "shape";
  for (int d = 0; d < p->ndim; d++)
    if (grad->shape[d] != p->shape[d]) return "shape";
  return grad->data ? NULL : "data (released)";
}

static const char *dtype_name(sg_dtype dt) {
  return dt == SG_F32 ? "float32" : "float64";
}

/* Every gradient is checked before any parameter moves: a misuse leaves
 * the optimiser and the parameters as they were. */
static int check_grads(const sg_adam *o, sg_tensor *const *grads, int n, const char *file,
                       int line) {
  if (!grads || n != o->n_params) {
    sg_report_error("sg_adam_step_grads", file, line,
                    "%d gradients given for an optimiser over %d parameters%s", n, o->n_params,
                    grads ? "" : " (grads is NULL)");
    return -1;
  }
  for (int i = 0; i < n; i++) {
    const sg_tensor *p = o->params[i], *g = grads[i];
    const char *what = g ? grad_mismatch(p, g) : NULL;
    if (!what) continue;
    char ps[96], gs[96];
    sg_report_error("sg_adam_step_grads", file, line,
                    "gradient %d does not match parameter %d in %s: parameter %s %s, "
                    "gradient %s %s",
                    i, i, what, dtype_name(p->dtype), sg_shape_str(p->ndim, p->shape, ps),
                    dtype_name(g->dtype), sg_shape_str(g->ndim, g->shape, gs));
    return -1;
  }
  return 0;
}

int(sg_adam_step_grads)(sg_adam *o, sg_tensor *const *grads, int n, const char *file, int line) {
  if (!o) {
    sg_report_error("sg_adam_step_grads", file, line, "NULL optimiser");
    return -1;
  }
  if (check_grads(o, grads, n, file, line)) return -1;
  for (int i = 0; i < n; i++) {
    if (!grads[i]) continue;
    sg_grad_materialize(grads[i]); /* a gradient of the tape may be stored as one value */
    adam_update(o, o->params[i], grads[i], o->m[i], o->v[i], ++o->steps[i]);
  }
  return 0;
}

void sg_params_zero_grad(sg_tensor *const *params, int n_params) {
  for (int i = 0; i < n_params; i++) sg_zero_grad(params[i]);
}
