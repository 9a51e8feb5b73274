/* Scaled dot-product attention as one fused op:
 *   S = q k^T / sqrt(d), P = softmax(S) along the keys, out = P v
 * over q [..., Lq, d], k [..., Lk, d], v [..., Lk, dv], batch axes
 * broadcast as NumPy does. Built for many small problems (Lq, Lk of a few,
 * d of 64..512, a large batch): each batch element is computed with direct
 * vectorised loops by one thread, the batch split over threads.
 *
 * Backward, per batch element, with P saved by the forward (go = gradient
 * of out, s = 1/sqrt(d)):
 *   gP_ij = go_i . v_j,  gS_ij = P_ij (gP_ij - sum_j' P_ij' gP_ij')
 *   gq_i += s sum_j gS_ij k_j,  gk_j += s sum_i gS_ij q_i,  gv_j += sum_i P_ij go_i
 * The batch loop runs over groups of G consecutive batch elements, one
 * thread per group. An operand whose gradient rows are each reached from
 * within one group only (not broadcast, or broadcast over trailing batch
 * axes only, like the keys [B, 1, M, d] shared by the K queries of the
 * AttSKGS-GNN) accumulates straight into its gradient, in increasing batch
 * order. Any other broadcast operand writes per-element gradients to arena
 * scratch, summed afterwards per operand element in the same fixed order.
 * Either way the result does not depend on the thread count.
 * Formulas: docs/layers.md. */
#include "sg_kernel.h"
#include "sg_layers.h"

#include <math.h>

enum {
  LANES = 16,     /* independent accumulators in dot products */
  MIN_GROUPS = 16 /* fewer batch groups than this: use scratch, keep the threads busy */
};

#define DEFINE_HELPERS(T, S)                                                                       \
  static T dot_##S(const T *a, const T *b, int64_t n) {                                            \
    T acc[LANES] = {0}, s = 0;                                                                     \
    int64_t i = 0;                                                                                 \
    for (; i + LANES <= n; i += LANES)                                                             \
      for (int l = 0; l < LANES; l++) acc[l] += a[i + l] * b[i + l];                               \
    for (int l = 0; l < LANES; l++) s += acc[l];                                                   \
    for (; i < n; i++) s += a[i] * b[i];                                                           \
    return s;                                                                                      \
  }                                                                                                \
  /* y += a * x */                                                                                 \
  static void axpy_##S(T *restrict y, T a, const T *restrict x, int64_t n) {                       \
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];                                              \
  }                                                                                                \
  /* y = a * x */                                                                                  \
  static void scale_copy_##S(T *restrict y, T a, const T *restrict x, int64_t n) {                 \
    for (int64_t i = 0; i < n; i++) y[i] = a * x[i];                                               \
  }

SG_FOR_BOTH_TYPES(DEFINE_HELPERS)

#define DOT(a, b, n) SG_TYPED(dot, a)(a, b, n)
#define AXPY(y, a, x, n) SG_TYPED(axpy, y)(y, a, x, n)
#define SCALE_COPY(y, a, x, n) SG_TYPED(scale_copy, y)(y, a, x, n)

/* Sizes and the batch broadcast, saved for the backward with P. */
typedef struct attn_plan {
  int64_t Lq, Lk, d, dv, batch;
  double scale;
  int batch_ndim;
  int64_t batch_shape[SG_MAX_DIMS]; /* broadcast batch shape */
  int64_t op_batch[3][SG_MAX_DIMS]; /* q, k, v batch shapes, padded with leading 1s */
  sg_bcast bc;                      /* maps an output batch index to operand batch offsets */
  void *P;                          /* [batch, Lq, Lk] attention weights */
} attn_plan;

/* Batch offset (in matrices) of operand i for output batch element b. */
static int64_t op_batch_index(const attn_plan *pl, int i, int64_t b) {
  int64_t cols = pl->bc.cols;
  return sg_bcast_row_offset(&pl->bc, i, b / cols) + (b % cols) * pl->bc.stride[i][pl->bc.ndim - 1];
}

/* ---- forward ------------------------------------------------------------- */

static void attn_forward(const sg_tensor *qt, const sg_tensor *kt, const sg_tensor *vt,
                         sg_tensor *ot, const attn_plan *pl) {
  int64_t Lq = pl->Lq, Lk = pl->Lk, d = pl->d, dv = pl->dv, batch = pl->batch;
  int64_t work = batch * Lq * Lk * (d + dv);
  SG_DISPATCH(qt->dtype, T, {
    const T *q = qt->data, *k = kt->data, *v = vt->data;
    T *out = ot->data, *P = pl->P, scale = (T)pl->scale;
    SG_PARALLEL_IF(
        work > SG_PAR_MIN, for (int64_t b = 0; b < batch; b++) {
          const T *qb = q + op_batch_index(pl, 0, b) * Lq * d;
          const T *kb = k + op_batch_index(pl, 1, b) * Lk * d;
          const T *vb = v + op_batch_index(pl, 2, b) * Lk * dv;
          for (int64_t i = 0; i < Lq; i++) {
            T *p = P + (b * Lq + i) * Lk, *o = out + (b * Lq + i) * dv;
            T mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < Lk; j++) {
              p[j] = DOT(qb + i * d, kb + j * d, d) * scale;
              mx = p[j] > mx ? p[j] : mx;
            }
            for (int64_t j = 0; j < Lk; j++) {
              p[j] = exp(p[j] - mx);
              sum += p[j];
            }
            T inv = 1 / sum;
            for (int64_t j = 0; j < Lk; j++) p[j] *= inv;
            SCALE_COPY(o, p[0], vb, dv); /* o = p_0 v_0 + p_1 v_1 + ... */
            for (int64_t j = 1; j < Lk; j++) AXPY(o, p[j], vb + j * dv, dv);
          }
        });
  });
}

/* ---- backward ------------------------------------------------------------ */

/* Where the gradient of one operand goes during the batch loop: its own
 * gradient buffer (direct) or per-batch-element scratch, or nowhere. */
typedef struct grad_target {
  void *base;
  bool direct;
} grad_target;

/* The matrix that batch element b adds its gradient into, or NULL. */
#define TARGET_ROW(T, tg, b, size) ((tg).base ? (T *)(tg).base + (b) * (size) : (T *)NULL)

static void attn_backward_batch(const sg_tensor *qt, const sg_tensor *kt, const sg_tensor *vt,
                                const sg_tensor *got, const attn_plan *pl, const grad_target *tg,
                                int64_t group, void *gs_buf) {
  int64_t Lq = pl->Lq, Lk = pl->Lk, d = pl->d, dv = pl->dv, n_groups = pl->batch / group;
  int64_t work = pl->batch * Lq * Lk * (2 * d + 2 * dv);
  SG_DISPATCH(qt->dtype, T, {
    const T *q = qt->data, *k = kt->data, *v = vt->data, *go = got->data, *P = pl->P;
    T *gS_all = gs_buf, scale = (T)pl->scale;
    SG_PARALLEL_IF(
        work > SG_PAR_MIN, for (int64_t grp = 0; grp < n_groups; grp++) {
          for (int64_t b = grp * group; b < (grp + 1) * group; b++) {
            int64_t iq = op_batch_index(pl, 0, b), ik = op_batch_index(pl, 1, b),
                    iv = op_batch_index(pl, 2, b);
            const T *qb = q + iq * Lq * d, *kb = k + ik * Lk * d, *vb = v + iv * Lk * dv;
            T *gq = TARGET_ROW(T, tg[0], tg[0].direct ? iq : b, Lq * d);
            T *gk = TARGET_ROW(T, tg[1], tg[1].direct ? ik : b, Lk * d);
            T *gv = TARGET_ROW(T, tg[2], tg[2].direct ? iv : b, Lk * dv);
            /* scratch rows start from zero; direct rows accumulate */
            if (gq && !tg[0].direct) memset(gq, 0, (size_t)(Lq * d) * sizeof *gq);
            if (gk && !tg[1].direct) memset(gk, 0, (size_t)(Lk * d) * sizeof *gk);
            if (gv && !tg[2].direct) memset(gv, 0, (size_t)(Lk * dv) * sizeof *gv);
            for (int64_t i = 0; i < Lq; i++) {
              const T *p = P + (b * Lq + i) * Lk, *goi = go + (b * Lq + i) * dv;
              T *gS = gS_all + (b * Lq + i) * Lk, rowdot = 0;
              if (gq || gk) {
                for (int64_t j = 0; j < Lk; j++) {
                  gS[j] = DOT(goi, vb + j * dv, dv);
                  rowdot += p[j] * gS[j];
                }
                for (int64_t j = 0; j < Lk; j++) gS[j] = p[j] * (gS[j] - rowdot) * scale;
              }
              for (int64_t j = 0; j < Lk; j++) {
                if (gq) AXPY(gq + i * d, gS[j], kb + j * d, d);
                if (gk) AXPY(gk + j * d, gS[j], qb + i * d, d);
                if (gv) AXPY(gv + j * dv, p[j], goi, dv);
              }
            }
          }
        });
  });
}

/* Number of consecutive output batch elements that share each gradient row
 * of operand op when it is broadcast over trailing batch axes only (1 if it
 * is not broadcast), or 0 if it is broadcast over an axis followed by one
 * it is not broadcast over. */
static int64_t trailing_group(const attn_plan *pl, int op) {
  const int64_t *shape = pl->op_batch[op], *out = pl->batch_shape;
  int64_t group = 1;
  bool in_suffix = true;
  for (int dd = pl->batch_ndim - 1; dd >= 0; dd--) {
    if (out[dd] == 1) continue;
    if (shape[dd] == 1 && !in_suffix) return 0;
    if (shape[dd] == 1) group *= out[dd];
    in_suffix = in_suffix && shape[dd] == 1;
  }
  return group;
}

/* grad[e] += sum of scratch[b] over the output batch elements b that map to
 * operand batch element e (in increasing b), each a matrix of size values. */
static void reduce_batch(sg_tensor *grad, const void *scratch, const attn_plan *pl, int op,
                         int64_t size) {
  int nb = pl->batch_ndim;
  const int64_t *shape = pl->op_batch[op], *out = pl->batch_shape;
  int64_t ostride[SG_MAX_DIMS], n_op = 1, n_red = 1, st = 1;
  for (int dd = nb - 1; dd >= 0; dd--) {
    ostride[dd] = st;
    st *= out[dd];
  }
  for (int dd = 0; dd < nb; dd++) {
    n_op *= shape[dd];
    if (shape[dd] != out[dd]) n_red *= out[dd];
  }
  int64_t work = n_op * n_red * size;
  SG_DISPATCH(grad->dtype, T, {
    const T *src = scratch;
    T *gd = grad->data;
    SG_PARALLEL_IF(
        work > SG_PAR_MIN, for (int64_t e = 0; e < n_op; e++) {
          /* output batch index of e's first image, from e's coordinates */
          int64_t base = 0, rem = e;
          for (int dd = nb - 1; dd >= 0; dd--) {
            if (shape[dd] == out[dd]) base += (rem % shape[dd]) * ostride[dd];
            rem /= shape[dd];
          }
          T *dst = gd + e * size;
          for (int64_t r = 0; r < n_red; r++) {
            int64_t off = 0, rr = r;
            for (int dd = nb - 1; dd >= 0; dd--) {
              if (shape[dd] == out[dd]) continue;
              off += (rr % out[dd]) * ostride[dd];
              rr /= out[dd];
            }
            const T *s = src + (base + off) * size;
            for (int64_t j = 0; j < size; j++) dst[j] += s[j];
          }
        });
  });
}

static void attention_backward(sg_graph *g, sg_node *n) {
  const attn_plan *pl = n->saved;
  if (pl->batch == 0) return;
  sg_tensor *grads[3];
  grad_target tg[3];
  int64_t sizes[3] = {pl->Lq * pl->d, pl->Lk * pl->d, pl->Lk * pl->dv}, group = 1;
  /* the group size that lets every groupable broadcast operand be direct */
  for (int i = 0; i < 3; i++) {
    grads[i] = sg_grad_buf(g, n->in[i]);
    int64_t gi = grads[i] ? trailing_group(pl, i) : 1;
    if (gi > group) group = gi;
  }
  if (pl->batch / group < MIN_GROUPS) group = 1;
  size_t esz = sg_dtype_size(n->out->dtype);
  for (int i = 0; i < 3; i++) {
    int64_t gi = trailing_group(pl, i);
    tg[i].direct = gi == 1 || (gi > 1 && group % gi == 0);
    tg[i].base = !grads[i]      ? NULL
                 : tg[i].direct ? grads[i]->data
                                : sg_arena_alloc(g, (size_t)(pl->batch * sizes[i]) * esz);
  }
  /* q, k, v may be one tensor: direct targets then share a buffer, which is
   * safe (one thread per group); scratch targets stay separate. */
  void *gs = sg_arena_alloc(g, (size_t)(pl->batch * pl->Lq * pl->Lk) * esz);
  for (int i = 0; i < 3; i++)
    if (grads[i] && !tg[i].base) return; /* out of memory: reported, the graph failed */
  if (!gs) return;
  attn_backward_batch(n->in[0], n->in[1], n->in[2], n->out->grad, pl, tg, group, gs);
  for (int i = 0; i < 3; i++)
    if (grads[i] && !tg[i].direct) reduce_batch(grads[i], tg[i].base, pl, i, sizes[i]);
}

static const sg_op attention_op = {"sg_attention", attention_backward};

/* ---- validation and plan ------------------------------------------------- */

static bool attn_shapes_ok(sg_graph *g, sg_tensor *const *in) {
  char b0[96], b1[96], b2[96];
  const sg_tensor *q = in[0], *k = in[1], *v = in[2];
  const char *why = NULL;
  if (q->ndim < 2 || k->ndim < 2 || v->ndim < 2)
    why = "q, k and v need at least two axes";
  else if (q->shape[q->ndim - 1] != k->shape[k->ndim - 1])
    why = "q and k must share the last axis (d)";
  else if (k->shape[k->ndim - 2] != v->shape[v->ndim - 2])
    why = "k and v must share the key axis (Lk)";
  else if (k->shape[k->ndim - 2] == 0 || q->shape[q->ndim - 1] == 0)
    why = "attention needs at least one key and d > 0";
  if (why)
    sg_op_error(g, "sg_attention", "%s: q %s, k %s, v %s", why, sg_shape_str(q->ndim, q->shape, b0),
                sg_shape_str(k->ndim, k->shape, b1), sg_shape_str(v->ndim, v->shape, b2));
  return !why;
}

/* Broadcasts the batch shapes (all but the last two axes) into pl. */
static bool attn_batch_plan(sg_graph *g, sg_tensor *const *in, attn_plan *pl) {
  int nb = 0, ndims[3];
  for (int i = 0; i < 3; i++) nb = in[i]->ndim - 2 > nb ? in[i]->ndim - 2 : nb;
  bool ok = true;
  for (int i = 0; i < 3; i++) {
    int own = in[i]->ndim - 2;
    ndims[i] = nb;
    for (int dd = 0; dd < nb; dd++)
      pl->op_batch[i][dd] = dd < nb - own ? 1 : in[i]->shape[dd - (nb - own)];
  }
  pl->batch = 1;
  for (int dd = 0; dd < nb; dd++) {
    int64_t s = 1;
    for (int i = 0; i < 3; i++) {
      int64_t si = pl->op_batch[i][dd];
      if (si == 1) continue;
      if (s != 1 && s != si) ok = false;
      s = si;
    }
    pl->batch_shape[dd] = s;
    pl->batch *= s;
  }
  pl->batch_ndim = nb;
  if (ok)
    ok = sg_bcast_plan_shapes(3, ndims, (const int64_t(*)[SG_MAX_DIMS])pl->op_batch, nb,
                              pl->batch_shape, &pl->bc);
  if (!ok) {
    char b0[96], b1[96], b2[96];
    sg_op_error(g, "sg_attention", "batch axes of q %s, k %s, v %s do not broadcast",
                sg_shape_str(in[0]->ndim, in[0]->shape, b0),
                sg_shape_str(in[1]->ndim, in[1]->shape, b1),
                sg_shape_str(in[2]->ndim, in[2]->shape, b2));
  }
  return ok;
}

sg_tensor *(sg_attention)(sg_graph *g, sg_tensor *q, sg_tensor *k, sg_tensor *v) {
  sg_tensor *in[3] = {q, k, v};
  if (!sg_check_same_dtype(g, "sg_attention", 3, in) || !attn_shapes_ok(g, in)) return NULL;
  attn_plan *pl = sg_arena_alloc(g, sizeof *pl);
  if (!pl || !attn_batch_plan(g, in, pl)) return NULL;
  pl->Lq = q->shape[q->ndim - 2];
  pl->d = q->shape[q->ndim - 1];
  pl->Lk = k->shape[k->ndim - 2];
  pl->dv = v->shape[v->ndim - 1];
  pl->scale = 1.0 / sqrt((double)pl->d);
  int64_t oshape[SG_MAX_DIMS];
  for (int dd = 0; dd < pl->batch_ndim; dd++) oshape[dd] = pl->batch_shape[dd];
  oshape[pl->batch_ndim] = pl->Lq;
  oshape[pl->batch_ndim + 1] = pl->dv;
  sg_tensor *out = sg_empty(g, q->dtype, pl->batch_ndim + 2, oshape);
  if (!out) return NULL;
  pl->P = sg_arena_alloc(g, (size_t)(pl->batch * pl->Lq * pl->Lk) * sg_dtype_size(q->dtype));
  if (!pl->P) return NULL;
  attn_forward(q, k, v, out, pl);
  sg_node *n = sg_record(g, &attention_op, out, 3, in);
  if (n) n->saved = pl;
  return out;
}
