/* Elementwise ops: broadcasting binary arithmetic and unary functions.
 *
 * Each op is one row of a table (BINARY_OPS, UNARY_OPS) holding its forward
 * and its derivative side by side; the enum, the kernels' switch cases, the
 * sg_op records and the public functions are generated from the rows, so an
 * op is added or changed in one place. Backward passes run with grad mode
 * off, so they may call the ops themselves for temporaries. */
#include "sg_ops.h"
#include "sg_kernel.h"

/* ---- binary ------------------------------------------------------------ */

/* One row per binary op: name, forward (u, v: elements of a and b), its
 * backward function (written out below: each picks the order in which the
 * two gradients are written and which buffer it reuses), and whether that
 * backward reads a uniform output gradient (the loss sum(a * b)) without
 * writing it out. Each gradient is summed over the axes where its operand
 * was broadcast; go is the output's gradient and y the output. */
// clang-format off
#define BINARY_OPS(X)                                                                           \
  /* name  forward  backward      uniform go    d/da     d/db        */                         \
  X(add,   u + v,   add_backward, false)     /* go,      go          */                         \
  X(sub,   u - v,   sub_backward, false)     /* go,      -go         */                         \
  X(mul,   u * v,   mul_backward, true)      /* go * b,  go * a      */                         \
  X(div,   u / v,   div_backward, false)     /* go / b,  -go * y / b */
// clang-format on

#define BINARY_ENUM(name, ...) BIN_##name,
typedef enum binop { BINARY_OPS(BINARY_ENUM) } binop;

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

/* The kernel's cases: out = EXPR, or out += EXPR when accumulating (two
 * lists, since a nested macro cannot pass the operator down). */
#define BINARY_CASE_SET(name, EXPR, ...)                                                           \
  case BIN_##name:                                                                                 \
    BINARY_INNER(=, EXPR);                                                                         \
    break;
#define BINARY_CASE_ADD(name, EXPR, ...)                                                           \
  case BIN_##name:                                                                                 \
    BINARY_INNER(+=, EXPR);                                                                        \
    break;

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
            switch (kind) { BINARY_OPS(BINARY_CASE_ADD) }
          } else {
            switch (kind) { BINARY_OPS(BINARY_CASE_SET) }
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
  if (!tmp) return; /* out of memory: reported, the graph failed */
  binary_kernel(kind, &p, x, y, tmp, false);
  sg_accumulate_reduced(grad, tmp, accumulate);
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
  if (gf) accumulate_binary(g, BIN_mul, gf, acc, n->out->grad, n->in[last]);
  sg_tensor *gl = sg_grad_dest_inplace(g, n, n->in[last], &acc);
  if (gl) accumulate_binary(g, BIN_mul, gl, acc, n->out->grad, n->in[first]);
}

static void div_backward(sg_graph *g, sg_node *n) {
  bool acc;
  sg_tensor *ga = sg_grad_dest(g, n->in[0], &acc);
  if (ga) accumulate_binary(g, BIN_div, ga, acc, n->out->grad, n->in[1]);
  if (n->in[1]->requires_grad) {
    sg_tensor *go_over_b = (sg_div)(g, n->out->grad, n->in[1]);
    sg_tensor *contrib = (sg_neg)(g, (sg_mul)(g, go_over_b, n->out));
    sg_tensor *gb = sg_grad_dest(g, n->in[1], &acc);
    sg_accumulate_reduced(gb, contrib, acc);
  }
}

#define BINARY_RECORD(name, expr, backward, ...) [BIN_##name] = {"sg_" #name, backward},
static const sg_op binary_ops[] = {BINARY_OPS(BINARY_RECORD)};

static sg_tensor *binary(sg_graph *g, binop kind, bool uniform_go, sg_tensor *a, sg_tensor *b) {
  const sg_op *op = &binary_ops[kind];
  sg_tensor *in[2] = {a, b};
  sg_bcast p;
  if (!sg_check_same_dtype(g, op->name, 2, in) || !sg_bcast_plan(g, op->name, 2, in, &p))
    return NULL;
  sg_tensor *out = sg_empty(g, a->dtype, p.out_ndim, p.out_shape);
  if (!out) return NULL;
  binary_kernel(kind, &p, a, b, out, false);
  sg_node *n = sg_record(g, op, out, 2, in);
  if (n) n->takes_uniform_grad = uniform_go;
  return out;
}

/* sg_add, sg_sub, sg_mul, sg_div. */
// clang-format off
#define BINARY_PUBLIC(name, expr, backward, uniform_go)                                            \
  sg_tensor *(sg_##name)(sg_graph *g, sg_tensor *a, sg_tensor *b) {                                \
    return binary(g, BIN_##name, uniform_go, a, b);                                                \
  }
// clang-format on
BINARY_OPS(BINARY_PUBLIC)

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

sg_tensor *(sg_relu_)(sg_graph *g, sg_tensor *a) {
  if (!a || !inplace_allowed(g, "sg_relu_", a)) return NULL;
  relu_in_place(a);
  return a;
}

/* ---- unary ------------------------------------------------------------- */

/* One row per unary op: name, whether the public function takes a scalar s
 * (ARG) or not (NO_ARG), the forward y and the derivative dy/dx. Both are
 * expressions in an input element x, its output element y and s, all of
 * the tensor's element type T (<tgmath.h> makes exp(x) expf for float).
 * - MAP(e): y = e, element by element. SLEEF(f): y from the SLEEF vector
 *   routines f_f32 and f_f64 (ops/vmath.c), a whole chunk per call.
 * - OF_X(e), OF_Y(e): dy/dx = e, which reads only x, or only y: the other
 *   may be released before the backward runs (models release a ReLU's
 *   input once the ReLU has run). CONST(e): e reads neither. */
// clang-format off
#define UNARY_OPS(X)                                                                               \
  /* name       scalar  forward y              derivative dy/dx                   */               \
  X(neg,        NO_ARG, MAP(-x),               CONST(-1))                                          \
  X(scale,      ARG,    MAP(s * x),            CONST(s))                                           \
  X(add_scalar, ARG,    MAP(x + s),            CONST(1))                                           \
  X(exp,        NO_ARG, SLEEF(sg_vexp),        OF_Y(y))                                            \
  X(log,        NO_ARG, SLEEF(sg_vlog),        OF_X(1 / x))                                        \
  X(sqrt,       NO_ARG, MAP(sqrt(x)),          OF_Y(1 / (2 * y)))                                  \
  X(square,     NO_ARG, MAP(x * x),            OF_X(2 * x))                                        \
  X(pow,        ARG,    MAP(pow(x, s)),        OF_X(s * pow(x, s - 1)))                            \
  X(abs,        NO_ARG, MAP(fabs(x)),          OF_X(x > 0 ? 1 : (x < 0 ? -1 : 0)))                 \
  X(relu,       NO_ARG, MAP(x > 0 ? x : 0),    OF_Y(y > 0 ? 1 : 0))                                \
  X(sigmoid,    NO_ARG, MAP(SIGMOID(x)),       OF_Y(y * (1 - y)))                                  \
  X(tanh,       NO_ARG, SLEEF(sg_vtanh),       OF_Y(1 - y * y))
// clang-format on

/* exp of a non-positive argument only: exp(-x) would overflow for a large
 * negative x. */
#define SIGMOID(x) ((x) >= 0 ? 1 / (1 + exp(-(x))) : exp(x) / (1 + exp(x)))

#define UNARY_ENUM(name, ...) UN_##name,
typedef enum unop { UNARY_OPS(UNARY_ENUM) } unop;

/* The forward cases, in unary_forward's scope: xd, yd (input and output
 * data), cnt elements, s the scalar. */
#define MAP(EXPR)                                                                                  \
  SG_PARALLEL_IF(                                                                                  \
      cnt > SG_PAR_MIN, for (int64_t i = 0; i < cnt; i++) {                                        \
        const T x = xd[i];                                                                         \
        yd[i] = (EXPR);                                                                            \
      });

/* SLEEF's vector routines, split into fixed chunks for the threads. */
#define SLEEF(FN)                                                                                  \
  SG_PARALLEL_IF(                                                                                  \
      cnt > SG_PAR_MIN, for (int64_t c = 0; c < cnt; c += TILE) {                                  \
        int64_t len = cnt - c < TILE ? cnt - c : TILE;                                             \
        if (sizeof(T) == sizeof(float))                                                            \
          FN##_f32((const float *)xd + c, (float *)yd + c, len);                                   \
        else                                                                                       \
          FN##_f64((const double *)xd + c, (double *)yd + c, len);                                 \
      });

#define UNARY_FORWARD_CASE(name, arg, FORWARD, ...)                                                \
  case UN_##name:                                                                                  \
    FORWARD                                                                                        \
    break;

static void unary_forward(unop kind, const sg_tensor *a, sg_tensor *out, double arg) {
  int64_t cnt = a->numel;
  SG_DISPATCH(a->dtype, T, {
    const T *xd = a->data;
    T *yd = out->data;
    const T s = (T)arg;
    (void)s;
    switch (kind) { UNARY_OPS(UNARY_FORWARD_CASE) }
  });
}

/* The backward cases, in unary_backward's scope: gx (=, or += when acc)
 * go * dy/dx, with LOAD reading the one operand the derivative names (the
 * other may have been released). */
#define BACKWARD_LOOP(LOAD, DERIV)                                                                 \
  SG_PARALLEL_IF(                                                                                  \
      cnt > SG_PAR_MIN, for (int64_t i = 0; i < cnt; i++) {                                        \
        LOAD;                                                                                      \
        gx[i] = (acc ? gx[i] : 0) + go[i] * (DERIV);                                               \
      });
#define OF_X(DERIV) BACKWARD_LOOP(const T x = xd[i], DERIV)
#define OF_Y(DERIV) BACKWARD_LOOP(const T y = yd[i], DERIV)
#define CONST(DERIV) BACKWARD_LOOP((void)0, DERIV)

#define UNARY_BACKWARD_CASE(name, arg, forward, DERIVATIVE)                                        \
  case UN_##name:                                                                                  \
    DERIVATIVE                                                                                     \
    break;

static void unary_backward(sg_graph *g, sg_node *n) {
  bool acc;
  sg_tensor *ga = sg_grad_dest_inplace(g, n, n->in[0], &acc);
  if (!ga) return;
  unop kind = (unop)n->iarg[0];
  int64_t cnt = ga->numel;
  SG_DISPATCH(ga->dtype, T, {
    const T *xd = n->in[0]->data, *yd = n->out->data, *go = n->out->grad->data;
    T *gx = ga->data;
    const T s = (T)n->farg[0];
    (void)s;
    switch (kind) { UNARY_OPS(UNARY_BACKWARD_CASE) }
  });
}

#define UNARY_RECORD(name, ...) [UN_##name] = {"sg_" #name, unary_backward},
static const sg_op unary_ops[] = {UNARY_OPS(UNARY_RECORD)};

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

/* sg_neg(g, a), sg_exp(g, a), ...; sg_scale(g, a, s), sg_pow(g, a, s), ... */
// clang-format off
#define UNARY_PUBLIC(name, arg, ...) UNARY_PUBLIC_##arg(name)
#define UNARY_PUBLIC_NO_ARG(name)                                                                  \
  sg_tensor *(sg_##name)(sg_graph *g, sg_tensor *a) {                                              \
    return unary(g, UN_##name, a, 0);                                                              \
  }
#define UNARY_PUBLIC_ARG(name)                                                                     \
  sg_tensor *(sg_##name)(sg_graph *g, sg_tensor *a, double s) {                                    \
    return unary(g, UN_##name, a, s);                                                              \
  }
// clang-format on
UNARY_OPS(UNARY_PUBLIC)
