/* Elementwise ops: broadcasting binary arithmetic and unary functions, each
 * with its forward and backward side by side.
 *
 * Backward formulas (go = gradient of the output, y = output):
 *   add: ga += go, gb += go          sub: ga += go, gb -= go
 *   mul: ga += go*b, gb += go*a      div: ga += go/b, gb -= go*y/b
 * summed over the axes where an operand was broadcast. Backward passes run
 * with grad mode off, so they may call the ops themselves for temporaries. */
#include "sg_ops.h"
#include "sg_kernel.h"

/* ---- binary ------------------------------------------------------------ */

typedef enum binop { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV } binop;

/* Columns per parallel work item: tiles let a single long row use both cores. */
enum { TILE = 4096 };

/* One tile of out (op)= EXPR(u, v), with the inner strides of the two
 * operands (1 or 0) fixed per loop so each loop vectorises. */
#define BINARY_INNER(OP, EXPR)                                                                     \
  do {                                                                                             \
    if (sa == 1 && sb == 1)                                                                        \
      for (int64_t j = j0; j < j1; j++) {                                                          \
        T u = xa[j], v = yb[j];                                                                    \
        orow[j] OP(EXPR);                                                                          \
      }                                                                                            \
    else if (sa == 1)                                                                              \
      for (int64_t j = j0; j < j1; j++) {                                                          \
        T u = xa[j], v = yb[0];                                                                    \
        orow[j] OP(EXPR);                                                                          \
      }                                                                                            \
    else if (sb == 1)                                                                              \
      for (int64_t j = j0; j < j1; j++) {                                                          \
        T u = xa[0], v = yb[j];                                                                    \
        orow[j] OP(EXPR);                                                                          \
      }                                                                                            \
    else                                                                                           \
      for (int64_t j = j0; j < j1; j++) {                                                          \
        T u = xa[0], v = yb[0];                                                                    \
        orow[j] OP(EXPR);                                                                          \
      }                                                                                            \
  } while (0)

#define BINARY_SWITCH(OP)                                                                          \
  switch (kind) {                                                                                  \
  case BIN_ADD:                                                                                    \
    BINARY_INNER(OP, u + v);                                                                       \
    break;                                                                                         \
  case BIN_SUB:                                                                                    \
    BINARY_INNER(OP, u - v);                                                                       \
    break;                                                                                         \
  case BIN_MUL:                                                                                    \
    BINARY_INNER(OP, u *v);                                                                        \
    break;                                                                                         \
  case BIN_DIV:                                                                                    \
    BINARY_INNER(OP, u / v);                                                                       \
    break;                                                                                         \
  }

/* out = a (op) b, or with accumulate out += a (op) b (backward passes use
 * that to add a product into a gradient in one pass, without a temporary). */
static void binary_kernel(binop kind, const sg_bcast *p, const sg_tensor *a, const sg_tensor *b,
                          sg_tensor *out, bool accumulate) {
  int64_t tiles_per_row = (p->cols + TILE - 1) / TILE, n_tiles = p->rows * tiles_per_row;
  int64_t sa = p->stride[0][p->ndim - 1], sb = p->stride[1][p->ndim - 1];
  SG_DISPATCH(out->dtype, T, {
    const T *x = a->data, *y = b->data;
    T *o = out->data;
    SG_PARALLEL_IF(
        out->numel > SG_PAR_MIN, for (int64_t t = 0; t < n_tiles; t++) {
          int64_t r = t / tiles_per_row, j0 = (t % tiles_per_row) * TILE;
          int64_t j1 = j0 + TILE < p->cols ? j0 + TILE : p->cols;
          const T *xa = x + sg_bcast_row_offset(p, 0, r), *yb = y + sg_bcast_row_offset(p, 1, r);
          T *orow = o + r * p->cols;
          if (accumulate) {
            BINARY_SWITCH(+=)
          } else {
            BINARY_SWITCH(=)
          }
        });
  });
}

/* grad += x (op) y, where the result has grad's shape when grad was not
 * broadcast in the forward (one fused pass); else through a temporary that
 * is then summed over the broadcast axes. */
static void accumulate_binary(sg_graph *g, binop kind, sg_tensor *grad, bool accumulate,
                              sg_tensor *x, sg_tensor *y) {
  sg_tensor *in[2] = {x, y};
  sg_bcast p;
  sg_bcast_plan(g, "backward", 2, in, &p);
  bool fits = p.out_ndim == grad->ndim;
  for (int d = 0; fits && d < grad->ndim; d++) fits = p.out_shape[d] == grad->shape[d];
  if (fits) {
    binary_kernel(kind, &p, x, y, grad, accumulate);
    return;
  }
  sg_tensor *tmp = sg_empty(g, grad->dtype, p.out_ndim, p.out_shape);
  binary_kernel(kind, &p, x, y, tmp, false);
  sg_accumulate_reduced(grad, tmp, accumulate);
}

static sg_tensor *binary(sg_graph *g, const sg_op *op, binop kind, sg_tensor *a, sg_tensor *b) {
  sg_tensor *in[2] = {a, b};
  sg_bcast p;
  if (!sg_check_same_dtype(g, op->name, 2, in) || !sg_bcast_plan(g, op->name, 2, in, &p))
    return NULL;
  sg_tensor *out = sg_empty(g, a->dtype, p.out_ndim, p.out_shape);
  if (!out) return NULL;
  binary_kernel(kind, &p, a, b, out, false);
  sg_record(g, op, out, 2, in);
  return out;
}

/* Each input's gradient is fetched (sg_grad_dest) just before it is
 * written, so that a + a adds the second contribution to the first. The
 * input written last may take over the output gradient's buffer
 * (sg_grad_dest_inplace): that is in[1] when it has the output's size, else
 * in[0]. */
static int written_last(const sg_node *n) {
  return n->in[1]->numel == n->out->numel ? 1 : 0;
}

static void add_backward(sg_graph *g, sg_node *n) {
  bool acc;
  int last = written_last(n);
  sg_tensor *gf = sg_grad_dest(g, n->in[1 - last], &acc);
  if (gf) sg_accumulate_reduced(gf, n->out->grad, acc);
  sg_tensor *gl = sg_grad_dest_inplace(g, n, n->in[last], &acc);
  if (gl) sg_accumulate_reduced(gl, n->out->grad, acc);
}

static void sub_backward(sg_graph *g, sg_node *n) {
  bool acc;
  if (n->in[1]->requires_grad) {
    sg_tensor *neg = (sg_neg)(g, n->out->grad);
    sg_tensor *gb = sg_grad_dest(g, n->in[1], &acc);
    sg_accumulate_reduced(gb, neg, acc);
  }
  sg_tensor *ga = sg_grad_dest_inplace(g, n, n->in[0], &acc);
  if (ga) sg_accumulate_reduced(ga, n->out->grad, acc);
}

/* grad (=, or += when acc) s * x, all three of one size: the gradient of
 * a * b for a uniform go = s (a loss sum(a * b)), read without a buffer. */
static void scaled_into(sg_tensor *grad, bool acc, double s, const sg_tensor *x) {
  int64_t n = grad->numel;
  SG_DISPATCH(grad->dtype, T, {
    T *gd = grad->data, sv = (T)s;
    const T *xd = x->data;
    SG_PARALLEL_IF(n > SG_PAR_MIN,
                   for (int64_t i = 0; i < n; i++) gd[i] = (acc ? gd[i] : 0) + sv * xd[i];);
  });
}

/* d(a b)/da = go b, d(a b)/db = go a. */
static void mul_backward(sg_graph *g, sg_node *n) {
  bool acc;
  sg_tensor *go = n->out->grad;
  if (go->uniform) {
    bool same = n->in[0]->numel == go->numel && n->in[1]->numel == go->numel;
    if (same) { /* go's buffer is never written or read */
      for (int i = 0; i < 2; i++) {
        sg_tensor *gi = sg_grad_dest(g, n->in[i], &acc);
        if (gi) scaled_into(gi, acc, go->uniform_value, n->in[1 - i]);
      }
      return;
    }
    sg_grad_materialize(go);
  }
  int last = written_last(n), first = 1 - last;
  sg_tensor *gf = sg_grad_dest(g, n->in[first], &acc);
  if (gf) accumulate_binary(g, BIN_MUL, gf, acc, n->out->grad, n->in[last]);
  sg_tensor *gl = sg_grad_dest_inplace(g, n, n->in[last], &acc);
  if (gl) accumulate_binary(g, BIN_MUL, gl, acc, n->out->grad, n->in[first]);
}

static void div_backward(sg_graph *g, sg_node *n) {
  bool acc;
  sg_tensor *ga = sg_grad_dest(g, n->in[0], &acc);
  if (ga) accumulate_binary(g, BIN_DIV, ga, acc, n->out->grad, n->in[1]);
  if (n->in[1]->requires_grad) {
    sg_tensor *go_over_b = (sg_div)(g, n->out->grad, n->in[1]);
    sg_tensor *contrib = (sg_neg)(g, (sg_mul)(g, go_over_b, n->out));
    sg_tensor *gb = sg_grad_dest(g, n->in[1], &acc);
    sg_accumulate_reduced(gb, contrib, acc);
  }
}

static const sg_op add_op = {"sg_add", add_backward};
static const sg_op sub_op = {"sg_sub", sub_backward};
static const sg_op mul_op = {"sg_mul", mul_backward};
static const sg_op div_op = {"sg_div", div_backward};

sg_tensor *(sg_add)(sg_graph *g, sg_tensor *a, sg_tensor *b) {
  return binary(g, &add_op, BIN_ADD, a, b);
}
sg_tensor *(sg_sub)(sg_graph *g, sg_tensor *a, sg_tensor *b) {
  return binary(g, &sub_op, BIN_SUB, a, b);
}
sg_tensor *(sg_mul)(sg_graph *g, sg_tensor *a, sg_tensor *b) {
  sg_tensor *out = binary(g, &mul_op, BIN_MUL, a, b);
  if (out && out->node) out->node->takes_uniform_grad = true; /* mul_backward */
  return out;
}
sg_tensor *(sg_div)(sg_graph *g, sg_tensor *a, sg_tensor *b) {
  return binary(g, &div_op, BIN_DIV, a, b);
}

/* In-place forms (no gradient): see sg_ops.h. They have loops of their own
 * with one written pointer: the general kernels' output may alias an input,
 * and a compiler that cannot rule that out at run time falls back to
 * scalar code exactly when it does. */

/* a += b, b broadcast to a's shape by plan p. */
static void add_in_place(const sg_bcast *p, sg_tensor *a, const sg_tensor *b) {
  int64_t sb = p->stride[1][p->ndim - 1], cols = p->cols;
  SG_DISPATCH(a->dtype, T, {
    T *o = a->data;
    const T *y = b->data;
    SG_PARALLEL_IF(
        a->numel > SG_PAR_MIN, for (int64_t r = 0; r < p->rows; r++) {
          T *orow = o + r * cols;
          const T *yb = y + sg_bcast_row_offset(p, 1, r);
          if (sb == 1)
            for (int64_t j = 0; j < cols; j++) orow[j] += yb[j];
          else
            for (int64_t j = 0; j < cols; j++) orow[j] += yb[0];
        });
  });
}

static void relu_in_place(sg_tensor *a) {
  int64_t n = a->numel;
  SG_DISPATCH(a->dtype, T, {
    T *x = a->data;
    SG_PARALLEL_IF(n > SG_PAR_MIN, for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : 0;);
  });
}

static bool inplace_allowed(sg_graph *g, const char *op, const sg_tensor *a) {
  const char *why = NULL;
  if (sg_grad_enabled(g))
    why = "gradients are on (sg_set_grad_enabled(g, false) first)";
  else if (a->node || a->requires_grad)
    why = "the tensor is recorded on a tape or requires a gradient";
  else if (!a->data)
    why = "the tensor was released";
  if (why) {
    char s[96];
    sg_op_error(g, op, "cannot overwrite %s: %s", sg_shape_str(a->ndim, a->shape, s), why);
  }
  return !why;
}

sg_tensor *(sg_add_)(sg_graph *g, sg_tensor *a, sg_tensor *b) {
  sg_tensor *in[2] = {a, b};
  sg_bcast p;
  if (!a || !b || !inplace_allowed(g, "sg_add_", a) || !sg_check_same_dtype(g, "sg_add_", 2, in) ||
      !sg_bcast_plan(g, "sg_add_", 2, in, &p))
    return NULL;
  bool fits = p.out_ndim == a->ndim;
  for (int d = 0; fits && d < a->ndim; d++) fits = p.out_shape[d] == a->shape[d];
  if (!fits) {
    char sa[96], sb[96];
    sg_op_error(g, "sg_add_", "b %s would broadcast a %s to a larger shape; a keeps its shape",
                sg_shape_str(b->ndim, b->shape, sb), sg_shape_str(a->ndim, a->shape, sa));
    return NULL;
  }
  add_in_place(&p, a, b);
  return a;
}

/* ---- unary ------------------------------------------------------------- */
/* Each unary op is one row of this table: its forward y = f(x, s) and its
 * derivative dy/dx written in terms of x, y and the scalar argument s. */

typedef enum unop {
  UN_NEG,
  UN_SCALE,
  UN_ADD_SCALAR,
  UN_EXP,
  UN_LOG,
  UN_SQRT,
  UN_SQUARE,
  UN_POW,
  UN_ABS,
  UN_RELU,
  UN_SIGMOID,
  UN_TANH
} unop;

#define SIGMOID(x) ((x) >= 0 ? 1 / (1 + exp(-(x))) : exp(x) / (1 + exp(x)))

#define UNARY_FORWARD_LOOP(EXPR)                                                                   \
  SG_PARALLEL_IF(                                                                                  \
      cnt > SG_PAR_MIN, for (int64_t i = 0; i < cnt; i++) {                                        \
        T xv = x[i];                                                                               \
        y[i] = (EXPR);                                                                             \
      });

#define UNARY_BACKWARD_LOOP(DERIV)                                                                 \
  SG_PARALLEL_IF(                                                                                  \
      cnt > SG_PAR_MIN,                                                                            \
      for (int64_t i = 0; i < cnt; i++) { gx[i] = (acc ? gx[i] : 0) + go[i] * (DERIV); });

/* exp, log and tanh use SLEEF's vector functions, split into fixed chunks. */
#define VMATH_CHUNKED(FN32, FN64)                                                                  \
  SG_PARALLEL_IF(                                                                                  \
      cnt > SG_PAR_MIN, for (int64_t c = 0; c < cnt; c += TILE) {                                  \
        int64_t len = cnt - c < TILE ? cnt - c : TILE;                                             \
        if (sizeof(T) == sizeof(float))                                                            \
          FN32((const float *)x + c, (float *)y + c, len);                                         \
        else                                                                                       \
          FN64((const double *)x + c, (double *)y + c, len);                                       \
      });

static void unary_forward(unop kind, const sg_tensor *a, sg_tensor *out, double s) {
  int64_t cnt = a->numel;
  SG_DISPATCH(a->dtype, T, {
    const T *x = a->data;
    T *y = out->data;
    T ts = (T)s;
    (void)ts;
    switch (kind) {
    case UN_NEG:
      UNARY_FORWARD_LOOP(-xv);
      break;
    case UN_SCALE:
      UNARY_FORWARD_LOOP(ts * xv);
      break;
    case UN_ADD_SCALAR:
      UNARY_FORWARD_LOOP(xv + ts);
      break;
    case UN_EXP:
      VMATH_CHUNKED(sg_vexp_f32, sg_vexp_f64);
      break;
    case UN_LOG:
      VMATH_CHUNKED(sg_vlog_f32, sg_vlog_f64);
      break;
    case UN_SQRT:
      UNARY_FORWARD_LOOP(sqrt(xv));
      break;
    case UN_SQUARE:
      UNARY_FORWARD_LOOP(xv * xv);
      break;
    case UN_POW:
      UNARY_FORWARD_LOOP(pow(xv, ts));
      break;
    case UN_ABS:
      UNARY_FORWARD_LOOP(fabs(xv));
      break;
    case UN_RELU:
      UNARY_FORWARD_LOOP(xv > 0 ? xv : 0);
      break;
    case UN_SIGMOID:
      UNARY_FORWARD_LOOP(SIGMOID(xv));
      break;
    case UN_TANH:
      VMATH_CHUNKED(sg_vtanh_f32, sg_vtanh_f64);
      break;
    }
  });
}

static void unary_backward(sg_graph *g, sg_node *n) {
  bool acc;
  sg_tensor *ga = sg_grad_dest_inplace(g, n, n->in[0], &acc);
  if (!ga) return;
  unop kind = (unop)n->iarg[0];
  int64_t cnt = ga->numel;
  SG_DISPATCH(ga->dtype, T, {
    const T *x = n->in[0]->data, *y = n->out->data, *go = n->out->grad->data;
    T *gx = ga->data;
    T ts = (T)n->farg[0];
    switch (kind) {
    case UN_NEG:
      UNARY_BACKWARD_LOOP(-1);
      break;
    case UN_SCALE:
      UNARY_BACKWARD_LOOP(ts);
      break;
    case UN_ADD_SCALAR:
      UNARY_BACKWARD_LOOP(1);
      break;
    case UN_EXP:
      UNARY_BACKWARD_LOOP(y[i]);
      break;
    case UN_LOG:
      UNARY_BACKWARD_LOOP(1 / x[i]);
      break;
    case UN_SQRT:
      UNARY_BACKWARD_LOOP(1 / (2 * y[i]));
      break;
    case UN_SQUARE:
      UNARY_BACKWARD_LOOP(2 * x[i]);
      break;
    case UN_POW:
      UNARY_BACKWARD_LOOP(ts * pow(x[i], ts - 1));
      break;
    case UN_ABS:
      UNARY_BACKWARD_LOOP(x[i] > 0 ? 1 : (x[i] < 0 ? -1 : 0));
      break;
    case UN_RELU:
      UNARY_BACKWARD_LOOP(y[i] > 0 ? 1 : 0); /* y > 0 iff x > 0: x may be released */
      break;
    case UN_SIGMOID:
      UNARY_BACKWARD_LOOP(y[i] * (1 - y[i]));
      break;
    case UN_TANH:
      UNARY_BACKWARD_LOOP(1 - y[i] * y[i]);
      break;
    }
  });
}

static const sg_op unary_ops[] = {
    [UN_NEG] = {"sg_neg", unary_backward},
    [UN_SCALE] = {"sg_scale", unary_backward},
    [UN_ADD_SCALAR] = {"sg_add_scalar", unary_backward},
    [UN_EXP] = {"sg_exp", unary_backward},
    [UN_LOG] = {"sg_log", unary_backward},
    [UN_SQRT] = {"sg_sqrt", unary_backward},
    [UN_SQUARE] = {"sg_square", unary_backward},
    [UN_POW] = {"sg_pow", unary_backward},
    [UN_ABS] = {"sg_abs", unary_backward},
    [UN_RELU] = {"sg_relu", unary_backward},
    [UN_SIGMOID] = {"sg_sigmoid", unary_backward},
    [UN_TANH] = {"sg_tanh", unary_backward},
};

static sg_tensor *unary(sg_graph *g, unop kind, sg_tensor *a, double s) {
  if (!a) return NULL;
  sg_tensor *out = sg_empty(g, a->dtype, a->ndim, a->shape);
  if (!out) return NULL;
  unary_forward(kind, a, out, s);
  sg_node *n = sg_record(g, &unary_ops[kind], out, 1, &a);
  if (n) {
    n->iarg[0] = kind;
    n->farg[0] = s;
  }
  return out;
}

sg_tensor *(sg_neg)(sg_graph *g, sg_tensor *a) {
  return unary(g, UN_NEG, a, 0);
}
sg_tensor *(sg_scale)(sg_graph *g, sg_tensor *a, double s) {
  return unary(g, UN_SCALE, a, s);
}
sg_tensor *(sg_add_scalar)(sg_graph *g, sg_tensor *a, double s) {
  return unary(g, UN_ADD_SCALAR, a, s);
}
sg_tensor *(sg_exp)(sg_graph *g, sg_tensor *a) {
  return unary(g, UN_EXP, a, 0);
}
sg_tensor *(sg_log)(sg_graph *g, sg_tensor *a) {
  return unary(g, UN_LOG, a, 0);
}
sg_tensor *(sg_sqrt)(sg_graph *g, sg_tensor *a) {
  return unary(g, UN_SQRT, a, 0);
}
sg_tensor *(sg_square)(sg_graph *g, sg_tensor *a) {
  return unary(g, UN_SQUARE, a, 0);
}
sg_tensor *(sg_pow)(sg_graph *g, sg_tensor *a, double p) {
  return unary(g, UN_POW, a, p);
}
sg_tensor *(sg_abs)(sg_graph *g, sg_tensor *a) {
  return unary(g, UN_ABS, a, 0);
}
sg_tensor *(sg_relu)(sg_graph *g, sg_tensor *a) {
  return unary(g, UN_RELU, a, 0);
}
sg_tensor *(sg_relu_)(sg_graph *g, sg_tensor *a) {
  if (!a || !inplace_allowed(g, "sg_relu_", a)) return NULL;
  relu_in_place(a);
  return a;
}
sg_tensor *(sg_sigmoid)(sg_graph *g, sg_tensor *a) {
  return unary(g, UN_SIGMOID, a, 0);
}
sg_tensor *(sg_tanh)(sg_graph *g, sg_tensor *a) {
  return unary(g, UN_TANH, a, 0);
}
