/* The batched matrix product sg_matmul (broadcast batch dims); the GEMM
 * calls it makes are routed in ops/gemm.
 *
 * Backward formulas (go = gradient of the output C = op(A) op(B)):
 *   dA = go op(B)^T        (stored as op(B) go^T when A is transposed)
 *   dB = op(A)^T go        (stored as go^T op(A) when B is transposed)
 * each summed over the batch dims where the operand was broadcast. */
#include <omp.h>

#include "sg_gemm.h"
#include "sg_kernel.h"
#include "sg_ops.h"

/* ==== batched products =================================================== */

/* Per-matrix multiply-adds at or below which a batch runs as many serial
 * reference-kernel products in parallel over the batch instead of one
 * (threaded) GEMM call after another. Measured on 2 cores, square f32/f64
 * batches, GFLOP/s (serial-parallel vs GEMM loop with BLIS):
 *   8^3: 9 vs 0.1, 16^3: 32 vs 2, 32^3: 93 vs 36, 64^3: 142 vs 131 (f64 70
 *   vs 46), 96^3: 158 vs 184 (f64 78 vs 75), 128^3: 177 vs 182. */
enum { SMALL_GEMM_FLOPS = 64 * 64 * 64 };

/* One operand of a batched product: a contiguous stack of stored matrices
 * (rows x cols each, ld = cols) and, per output batch dim, its stride in
 * elements (0 where the operand is broadcast). */
typedef struct bmat {
  const void *p;
  bool trans;
  int64_t ld;
  int64_t stride[SG_MAX_DIMS];
} bmat;

typedef struct batch_shape {
  int nd;
  int64_t dim[SG_MAX_DIMS];
  int64_t count;
} batch_shape;

/* Batch strides of tensor t (whose last two dims are the matrix) against
 * the output batch shape: 0 where t is missing the dim or has size 1. */
static bmat make_bmat(const sg_tensor *t, const batch_shape *bs, bool trans) {
  bmat o = {.p = t->data, .trans = trans, .ld = t->shape[t->ndim - 1]};
  int64_t s = t->shape[t->ndim - 1] * t->shape[t->ndim - 2];
  int t_nd = t->ndim - 2;
  for (int d = bs->nd - 1; d >= 0; d--) {
    int src = d - (bs->nd - t_nd);
    int64_t size = src >= 0 ? t->shape[src] : 1;
    o.stride[d] = size == 1 ? 0 : s;
    s *= size;
  }
  return o;
}

static int64_t batch_offset(const batch_shape *bs, const int64_t *stride, int64_t t) {
  int64_t off = 0;
  for (int d = bs->nd - 1; d >= 0; d--) {
    off += (t % bs->dim[d]) * stride[d];
    t /= bs->dim[d];
  }
  return off;
}

/* True if the operand is the same matrix for every batch index. */
static bool is_shared(const batch_shape *bs, const bmat *x) {
  for (int d = 0; d < bs->nd; d++)
    if (bs->dim[d] > 1 && x->stride[d] != 0) return false;
  return true;
}

/* True if batch t's matrix starts at t * mat_elems (a plain stack). */
static bool is_stacked(const batch_shape *bs, const bmat *x, int64_t mat_elems) {
  int64_t s = mat_elems;
  for (int d = bs->nd - 1; d >= 0; d--) {
    if (bs->dim[d] > 1 && x->stride[d] != s) return false;
    s *= bs->dim[d];
  }
  return true;
}

/* The batch index whose C block is u (counting over the dims where C is not
 * broadcast) and whose position among the batches sharing that block is v
 * (counting over the dims where it is). */
static int64_t compose_batch(const batch_shape *bs, const int64_t *cstride, int64_t u, int64_t v) {
  int64_t t = 0, place = 1;
  for (int d = bs->nd - 1; d >= 0; d--) {
    int64_t size = bs->dim[d], idx;
    if (cstride[d] == 0 && size > 1) {
      idx = v % size;
      v /= size;
    } else {
      idx = u % size;
      u /= size;
    }
    t += idx * place;
    place *= size;
  }
  return t;
}

/* C[t] = beta*C[t] + op(X[t]) op(Y[t]) for every batch index t, where C may
 * be shared across batch dims (a gradient summed over broadcast dims: beta
 * applies before the first product into each block). Stacks that line up are
 * folded into a single GEMM:
 *   Y shared, X not transposed: rows of all batches form one [nb*m, k] X;
 *   C shared, X transposed, Y not: the batches extend k to nb*k. */
static void batched_gemm(sg_graph *g, sg_dtype dt, const batch_shape *bs, int64_t m, int64_t n,
                         int64_t k, const bmat *x, const bmat *y, void *c, const int64_t *cstride,
                         double beta) {
  int64_t nb = bs->count, esz = (int64_t)sg_dtype_size(dt);
  if (nb == 0 || m == 0 || n == 0) return;
  bmat cm = {.p = c, .ld = n};
  memcpy(cm.stride, cstride, sizeof cm.stride);
  bool c_shared = is_shared(bs, &cm);
  if (nb == 1 ||
      (!x->trans && is_shared(bs, y) && is_stacked(bs, x, m * k) && is_stacked(bs, &cm, m * n))) {
    int64_t rows = nb == 1 ? m : nb * m;
    void *scratch = sg_gemm_scratch(g, dt, x->trans, y->trans, rows, n, k);
    sg_gemm(dt, x->trans, y->trans, rows, n, k, 1, x->p, x->ld, y->p, y->ld, beta, c, n, scratch);
    sg_gemm_scratch_done(g, scratch, dt, x->trans, y->trans, rows, n, k);
    return;
  }
  if (c_shared && x->trans && !y->trans && is_stacked(bs, x, m * k) && is_stacked(bs, y, k * n)) {
    void *scratch = sg_gemm_scratch(g, dt, true, false, m, n, nb * k);
    sg_gemm(dt, true, false, m, n, nb * k, 1, x->p, x->ld, y->p, y->ld, beta, c, n, scratch);
    sg_gemm_scratch_done(g, scratch, dt, true, false, m, n, nb * k);
    return;
  }
  /* The general case: C blocks (u) in parallel when the products are small,
   * each adding its batches (v, the dims where C is broadcast) in order. The
   * large-product loop visits them in the same order, so both give the same
   * bits. */
  int64_t n_blocks = 1;
  for (int d = 0; d < bs->nd; d++)
    if (cstride[d] != 0 || bs->dim[d] == 1) n_blocks *= bs->dim[d];
  int64_t n_red = nb / n_blocks;
  const char *xp = x->p, *yp = y->p;
  char *cp = c;
  if (m * n * k <= SMALL_GEMM_FLOPS) {
    size_t per_thread = (sg_gemm_reference_scratch_bytes(dt, m, n, k) + 63) / 64 * 64;
    size_t scratch_bytes = per_thread * (size_t)omp_get_max_threads();
    char *scratch = sg_arena_alloc_data(g, scratch_bytes);
    if (!scratch) return; /* out of memory: reported, the graph failed */
    SG_PARALLEL_IF(
        nb * m * n * k > SG_PAR_MIN, for (int64_t u = 0; u < n_blocks; u++) {
          char *mine = scratch + per_thread * (size_t)omp_get_thread_num();
          for (int64_t v = 0; v < n_red; v++) {
            int64_t t = compose_batch(bs, cstride, u, v);
            sg_gemm_serial(dt, x->trans, y->trans, m, n, k, 1,
                           xp + batch_offset(bs, x->stride, t) * esz, x->ld,
                           yp + batch_offset(bs, y->stride, t) * esz, y->ld, v == 0 ? beta : 1,
                           cp + batch_offset(bs, cstride, t) * esz, n, mine);
          }
        });
    sg_arena_release_data(g, scratch, scratch_bytes);
    return;
  }
  void *scratch = sg_gemm_scratch(g, dt, x->trans, y->trans, m, n, k);
  for (int64_t u = 0; u < n_blocks; u++)
    for (int64_t v = 0; v < n_red; v++) {
      int64_t t = compose_batch(bs, cstride, u, v);
      sg_gemm(dt, x->trans, y->trans, m, n, k, 1, xp + batch_offset(bs, x->stride, t) * esz, x->ld,
              yp + batch_offset(bs, y->stride, t) * esz, y->ld, v == 0 ? beta : 1,
              cp + batch_offset(bs, cstride, t) * esz, n, scratch);
    }
  sg_gemm_scratch_done(g, scratch, dt, x->trans, y->trans, m, n, k);
}

/* ==== matmul ============================================================= */

typedef struct mm_dims {
  int64_t m, n, k;
  batch_shape bs;
} mm_dims;

static bool matmul_dims(sg_graph *g, const sg_tensor *a, const sg_tensor *b, bool ta, bool tb,
                        mm_dims *d) {
  char sa[96], sb[96];
  if (a->ndim < 2 || b->ndim < 2) {
    sg_shape_strs(a, sa, b, sb);
    sg_op_error(g, "sg_matmul", "operands must have at least 2 dims, got a %s and b %s", sa, sb);
    return false;
  }
  const int64_t *as = a->shape + a->ndim - 2, *bsh = b->shape + b->ndim - 2;
  int64_t ka = ta ? as[0] : as[1], kb = tb ? bsh[1] : bsh[0];
  d->m = ta ? as[1] : as[0];
  d->n = tb ? bsh[0] : bsh[1];
  d->k = ka;
  if (ka != kb) {
    sg_shape_strs(a, sa, b, sb);
    sg_op_error(g, "sg_matmul", "inner dimensions do not match: a %s%s has %lld, b %s%s has %lld",
                sa, ta ? " (transposed)" : "", (long long)ka, sb, tb ? " (transposed)" : "",
                (long long)kb);
    return false;
  }
  int na = a->ndim - 2, nb = b->ndim - 2;
  d->bs.nd = na > nb ? na : nb;
  d->bs.count = 1;
  for (int i = 0; i < d->bs.nd; i++) {
    int ia = i - (d->bs.nd - na), ib = i - (d->bs.nd - nb);
    int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
    if (da != db && da != 1 && db != 1) {
      sg_shape_strs(a, sa, b, sb);
      sg_op_error(g, "sg_matmul", "batch dimensions of a %s and b %s do not broadcast", sa, sb);
      return false;
    }
    d->bs.dim[i] = da == 1 ? db : da;
    d->bs.count *= d->bs.dim[i];
  }
  return true;
}

static void contiguous_strides(const batch_shape *bs, int64_t mat, int64_t *stride) {
  for (int d = bs->nd - 1; d >= 0; d--) {
    stride[d] = mat;
    mat *= bs->dim[d];
  }
}

static void matmul_backward(sg_graph *g, sg_node *nd) {
  sg_tensor *a = nd->in[0], *b = nd->in[1], *go = nd->out->grad;
  sg_tensor *ga = sg_grad_buf(g, a), *gb = sg_grad_buf(g, b);
  bool ta = nd->iarg[0], tb = nd->iarg[1];
  const mm_dims *d = nd->saved;
  bmat mg = make_bmat(go, &d->bs, false), ma = make_bmat(a, &d->bs, ta),
       mb = make_bmat(b, &d->bs, tb);
  if (ga) {
    bmat cs = make_bmat(ga, &d->bs, false);
    if (!ta) { /* dA [m, k] = go op(B)^T */
      mb.trans = !tb;
      batched_gemm(g, go->dtype, &d->bs, d->m, d->k, d->n, &mg, &mb, ga->data, cs.stride, 1);
    } else { /* dA [k, m] = op(B) go^T */
      bmat gt = mg;
      gt.trans = true;
      batched_gemm(g, go->dtype, &d->bs, d->k, d->m, d->n, &mb, &gt, ga->data, cs.stride, 1);
    }
    mb.trans = tb;
  }
  if (gb) {
    bmat cs = make_bmat(gb, &d->bs, false);
    if (!tb) { /* dB [k, n] = op(A)^T go */
      ma.trans = !ta;
      batched_gemm(g, go->dtype, &d->bs, d->k, d->n, d->m, &ma, &mg, gb->data, cs.stride, 1);
    } else { /* dB [n, k] = go^T op(A) */
      bmat gt = mg;
      gt.trans = true;
      batched_gemm(g, go->dtype, &d->bs, d->n, d->k, d->m, &gt, &ma, gb->data, cs.stride, 1);
    }
  }
}

static const sg_op matmul_op = {"sg_matmul", matmul_backward};

sg_tensor *(sg_matmul)(sg_graph *g, sg_tensor *a, sg_tensor *b, bool trans_a, bool trans_b) {
  sg_tensor *in[2] = {a, b};
  mm_dims d;
  if (!sg_check_same_dtype(g, "sg_matmul", 2, in) || !matmul_dims(g, a, b, trans_a, trans_b, &d))
    return NULL;
  int64_t shape[SG_MAX_DIMS];
  memcpy(shape, d.bs.dim, (size_t)d.bs.nd * sizeof *shape);
  shape[d.bs.nd] = d.m;
  shape[d.bs.nd + 1] = d.n;
  sg_tensor *out = sg_empty(g, a->dtype, d.bs.nd + 2, shape);
  if (!out) return NULL;
  bmat ma = make_bmat(a, &d.bs, trans_a), mb = make_bmat(b, &d.bs, trans_b);
  int64_t cstride[SG_MAX_DIMS];
  contiguous_strides(&d.bs, d.m * d.n, cstride);
  batched_gemm(g, a->dtype, &d.bs, d.m, d.n, d.k, &ma, &mb, out->data, cstride, 0);
  sg_node *node = sg_record(g, &matmul_op, out, 2, in);
  if (node) {
    node->iarg[0] = trans_a;
    node->iarg[1] = trans_b;
    mm_dims *saved = sg_arena_alloc(g, sizeof *saved);
    if (!saved) return NULL;
    *saved = d;
    node->saved = saved;
  }
  return out;
}
