/* BFGNN's fused float32 inference (docs/models.md "Fused inference"): the
 * beams of assoc_bfgnn_forward, without a graph, as plain loops over
 * preallocated per-thread scratch.
 *
 * A block holds W samples (lanes). Its activations are feature-major,
 * act[f * R + r], over rows r of one kind, lane fastest:
 *   BS rows   r = m W + s          (R = M W)
 *   UE rows   r = k W + s          (R = K W)
 *   edge rows r = (m K + k) W + s  (R = M K W)
 * (each R rounded up to a multiple of 8, see rows_of)
 * so every Linear is a loop over rows that the compiler vectorises (a
 * single sample's 16 edges are one AVX-512 vector), and a BS or UE row
 * reaches its edges by index arithmetic. Each row's value is computed by
 * the same operations in the same order whatever W and the block's place
 * (no reduction crosses rows of different samples), and the blocks are
 * fixed by B alone, so the beams are bitwise identical for any number of
 * threads. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "assoc_gnn.h"

enum {
  LANES = 16,     /* rows per vector chunk of a Linear */
  BLOCK_MAX = 16, /* samples per block */
};

#define DUALITY_LOG_BOUND 10.0f

/* One Linear's float32 weight [out, in] (row-major) and bias [out]. */
typedef struct fused_linear {
  float *w, *b;
  int in, out;
} fused_linear;

typedef struct fused_mlp {
  fused_linear l[3];
} fused_mlp;

typedef struct fused_layer {
  bool node_update;
  fused_mlp f1, f2, f3, f4, f5;
} fused_layer;

/* Per-thread scratch of one block (sizes in floats, see scratch_size). */
typedef struct fused_scratch {
  float *mem;
  size_t size;
} fused_scratch;

struct assoc_bfgnn_fused {
  assoc_bfgnn_config cfg;
  fused_mlp mlp_p, mlp_q, mlp_e, mlp_v;
  fused_layer *layers; /* [L] */
  float *weights;      /* every w and b above */
  fused_scratch *scratch;
  int n_scratch;
};

/* ---- weights ------------------------------------------------------------------------ */

static size_t mlp_floats(const sg_mlp *m) {
  size_t n = 0;
  for (int i = 0; i < 3; i++) n += (size_t)(m->layer[i].in + 1) * (size_t)m->layer[i].out;
  return n;
}

static void copy_tensor(float *dst, const sg_tensor *t) {
  for (int64_t i = 0; i < t->numel; i++) dst[i] = (float)sg_get(t, i);
}

/* Copies m's weights to *cursor (advanced) in float32. */
static void pack_mlp(fused_mlp *f, const sg_mlp *m, float **cursor) {
  for (int i = 0; i < 3; i++) {
    const sg_linear_layer *l = &m->layer[i];
    f->l[i] = (fused_linear){.w = *cursor, .in = l->in, .out = l->out};
    copy_tensor(f->l[i].w, l->weight);
    f->l[i].b = f->l[i].w + (size_t)l->in * (size_t)l->out;
    copy_tensor(f->l[i].b, l->bias);
    *cursor = f->l[i].b + l->out;
  }
}

/* The MLPs of the model in a fixed order, with their packed copies. */
static int model_mlps(const assoc_bfgnn *m, assoc_bfgnn_fused *f, const sg_mlp **src,
                      fused_mlp **dst) {
  int n = 0;
  const assoc_gnn *t = &m->trunk;
#define ADD(s, d) (src[n] = (s), dst[n] = (d), n++)
  ADD(&t->mlp_p, &f->mlp_p), ADD(&t->mlp_q, &f->mlp_q), ADD(&t->mlp_e, &f->mlp_e);
  ADD(&m->mlp_v, &f->mlp_v);
  for (int l = 0; l < m->cfg.L; l++) {
    const assoc_gnn_layer *ly = &t->layers[l];
    fused_layer *fl = &f->layers[l];
    fl->node_update = ly->node_update;
    if (ly->node_update)
      ADD(&ly->f1, &fl->f1), ADD(&ly->f2, &fl->f2), ADD(&ly->f3, &fl->f3), ADD(&ly->f4, &fl->f4);
    ADD(&ly->f5, &fl->f5);
  }
#undef ADD
  return n;
}

assoc_bfgnn_fused *assoc_bfgnn_fused_new(const assoc_bfgnn *m) {
  if (!m) {
    sg_report_error("assoc_bfgnn_fused_new", __FILE__, __LINE__, "NULL model");
    return NULL;
  }
  int max_mlps = 4 + 5 * m->cfg.L;
  assoc_bfgnn_fused *f = calloc(1, sizeof *f);
  const sg_mlp **src = malloc((size_t)max_mlps * sizeof *src);
  fused_mlp **dst = malloc((size_t)max_mlps * sizeof *dst);
  if (f) f->layers = calloc((size_t)m->cfg.L, sizeof *f->layers);
  size_t total = 0;
  int n = 0;
  if (f && f->layers && src && dst) {
    f->cfg = m->cfg;
    n = model_mlps(m, f, src, dst);
    for (int i = 0; i < n; i++) total += mlp_floats(src[i]);
    f->weights = malloc(total * sizeof(float));
  }
  if (f && f->weights) {
    float *cursor = f->weights;
    for (int i = 0; i < n; i++) pack_mlp(dst[i], src[i], &cursor);
  } else {
    assoc_bfgnn_fused_free(f);
    f = NULL;
  }
  free(src), free(dst);
  return f;
}

void assoc_bfgnn_fused_free(assoc_bfgnn_fused *f) {
  if (!f) return;
  for (int i = 0; i < f->n_scratch; i++) free(f->scratch[i].mem);
  free(f->scratch);
  free(f->weights);
  free(f->layers);
  free(f);
}

/* ---- kernels over rows ---------------------------------------------------------------- */

/* How a Linear's accumulators start: from its bias, from zero (the bias is
 * added by another part) or from an array init [out][R]. */
typedef struct linear_start {
  bool no_bias;
  const float *init;
} linear_start;

/* Outputs [o0, o0 + OUTS) of a Linear on the `lanes` rows (LANES or
 * HALF, a constant at each call) from r0: OUTS x lanes accumulators stay
 * in registers across the inner product (one load of x per input feature
 * feeds OUTS outputs). */
enum { OUTS = 4, HALF = LANES / 2 };

static inline void linear_chunk(const fused_linear *l, int col, int in, linear_start st,
                                const float *x, int64_t R, int64_t r0, int o0, float *restrict y,
                                bool relu, const int lanes) {
  float acc[OUTS][LANES];
  for (int j = 0; j < OUTS; j++) {
    float b = st.no_bias ? 0.0f : l->b[o0 + j];
    const float *init = st.init ? st.init + (o0 + j) * R + r0 : NULL;
#pragma omp simd
    for (int r = 0; r < lanes; r++) acc[j][r] = init ? init[r] : b;
  }
  const float *w = l->w + (size_t)o0 * (size_t)l->in + col;
  for (int i = 0; i < in; i++) {
    const float *xi = x + i * R + r0;
    for (int j = 0; j < OUTS; j++) {
      float wj = w[j * l->in + i];
#pragma omp simd
      for (int r = 0; r < lanes; r++) acc[j][r] += wj * xi[r];
    }
  }
  for (int j = 0; j < OUTS; j++)
#pragma omp simd
    for (int r = 0; r < lanes; r++)
      y[(o0 + j) * R + r0 + r] = relu && acc[j][r] < 0 ? 0.0f : acc[j][r];
}

/* The same for any rows [r0, r0 + n) and one output o (the remainders). */
static void linear_rest(const fused_linear *l, int col, int in, linear_start st, const float *x,
                        int64_t R, int64_t r0, int64_t n, int o, float *restrict y, bool relu) {
  const float *w = l->w + (size_t)o * (size_t)l->in + col;
  float b = st.no_bias ? 0.0f : l->b[o];
  float *yo = y + o * R + r0;
  for (int64_t r = 0; r < n; r++) yo[r] = st.init ? st.init[o * R + r0 + r] : b;
  for (int i = 0; i < in; i++)
    for (int64_t r = 0; r < n; r++) yo[r] += w[i] * x[i * R + r0 + r];
  if (relu)
    for (int64_t r = 0; r < n; r++) yo[r] = yo[r] < 0 ? 0.0f : yo[r];
}

/* y[o][r] = start[o][r] + sum_i w[o][col + i] x[i][r] over rows [0, R)
 * for i < in, ReLU'd when relu; w's rows are l->in long. Every row goes
 * through the same operations in the same order (the sum over i in
 * order, no contraction into FMA: ISO C mode), whether in a chunk or in
 * the remainder. */
static void linear(const fused_linear *l, int col, int in, linear_start st, const float *x,
                   int64_t R, float *restrict y, bool relu) {
  int64_t full = R / LANES * LANES;
  int outs = l->out / OUTS * OUTS;
  for (int64_t r0 = 0; r0 < full; r0 += LANES) {
    for (int o = 0; o < outs; o += OUTS) linear_chunk(l, col, in, st, x, R, r0, o, y, relu, LANES);
    for (int o = outs; o < l->out; o++) linear_rest(l, col, in, st, x, R, r0, LANES, o, y, relu);
  }
  if (R - full == HALF) { /* rows are padded to whole HALF chunks */
    for (int o = 0; o < outs; o += OUTS) linear_chunk(l, col, in, st, x, R, full, o, y, relu, HALF);
    for (int o = outs; o < l->out; o++) linear_rest(l, col, in, st, x, R, full, HALF, o, y, relu);
  }
}

/* The whole Linear of x (in = l->in features), from its bias. */
static void linear_all(const fused_linear *l, const float *x, int64_t R, float *y, bool relu) {
  linear(l, 0, l->in, (linear_start){0}, x, R, y, relu);
}

/* mlp(x) over R rows; t1, t2 hold the hidden layers. */
static void mlp(const fused_mlp *m, const float *x, int64_t R, float *t1, float *t2, float *y) {
  linear_all(&m->l[0], x, R, t1, true);
  linear_all(&m->l[1], t1, R, t2, true);
  linear_all(&m->l[2], t2, R, y, false);
}

/* Row geometry of a block of W samples (see the top of the file): the
 * row counts are padded to whole chunks of HALF = LANES / 2 rows, so that
 * every loop over rows runs on whole vectors; a padded row holds stale values that no
 * real row reads. */
typedef struct rows {
  int M, K, W;
  int64_t RB, RU, RE;
} rows;

static int64_t padded(int64_t n) {
  return (n + HALF - 1) / HALF * HALF;
}

static rows rows_of(int M, int K, int W) {
  return (rows){.M = M,
                .K = K,
                .W = W,
                .RB = padded((int64_t)M * W),
                .RU = padded((int64_t)K * W),
                .RE = padded((int64_t)M * K * W)};
}

/* Features f < F of the edge rows from node rows:
 * y[f][(m K + k) W + s] = bs[f][m W + s] + ue[f][k W + s], either term
 * left out when NULL. BS m's edges (k, s) are the K W rows from m K W,
 * in the order of the UE rows. */
static void edges_from_nodes(const rows *g, const float *bs, const float *ue, int F, float *y) {
  int64_t KW = (int64_t)g->K * g->W;
  for (int f = 0; f < F; f++)
    for (int m = 0; m < g->M; m++) {
      float *yo = y + f * g->RE + m * KW;
      const float *b = bs ? bs + f * g->RB + m * g->W : NULL, *u = ue ? ue + f * g->RU : NULL;
      if (!b) {
        for (int64_t j = 0; j < KW; j++) yo[j] = u[j];
      } else if (g->W == 1) {
        float b0 = b[0];
        if (u)
          for (int64_t j = 0; j < KW; j++) yo[j] = b0 + u[j];
        else
          for (int64_t j = 0; j < KW; j++) yo[j] = b0;
      } else {
        for (int k = 0; k < g->K; k++)
          for (int s = 0; s < g->W; s++) yo[k * g->W + s] = b[s];
        if (u)
          for (int64_t j = 0; j < KW; j++) yo[j] += u[j];
      }
    }
}

/* scale times the sum over UEs (to BS rows, to_bs) or over BSs (to UE
 * rows), in index order, of the edge rows' features f < F of x. */
static void edge_sum(const rows *g, const float *x, int F, bool to_bs, float scale, float *y) {
  int64_t R = to_bs ? g->RB : g->RU, KW = (int64_t)g->K * g->W;
  for (int f = 0; f < F; f++) {
    float *yo = y + f * R;
    for (int64_t r = 0; r < R; r++) yo[r] = 0;
    for (int m = 0; m < g->M; m++) {
      const float *xm = x + f * g->RE + m * KW;
      if (!to_bs)
        for (int64_t j = 0; j < KW; j++) yo[j] += xm[j];
      else if (g->W == 1) { /* in a register, not through memory */
        float sum = yo[m];
        for (int k = 0; k < g->K; k++) sum += xm[k];
        yo[m] = sum;
      } else
        for (int k = 0; k < g->K; k++)
          for (int s = 0; s < g->W; s++) yo[m * g->W + s] += xm[k * g->W + s];
    }
    if (scale != 1.0f)
      for (int64_t r = 0; r < R; r++) yo[r] *= scale;
  }
}

/* ---- the scratch of a block ----------------------------------------------------------- */

typedef struct block_bufs {
  float *pin, *qin;        /* p [RB], q [RU] */
  float *b, *b2, *c, *c2;  /* BS [2d][RB] and UE [2d][RU] embeddings, the second half a message */
  float *e, *t1, *t2, *t3; /* edge rows [wide][RE]: embeddings and work */
  float *xin;              /* edge input [2N + 1][RE]: Re x, Im x, a */
  float *nb1, *nb2;        /* BS work [wide][RB] */
  float *nu1, *nu2;        /* UE work [wide][RU] */
  float *served;           /* [RU]: 1 for a served UE */
  /* The duality head's linear algebra, in float64 (see duality_head):
   * S [N^2][RB], its Cholesky factor [N^2 + N][RB], per edge the terms of
   * S [N^2][RE], the factor [N^2 + N][RE] and u [2N][RE]. */
  double *sys, *fac, *terms, *efac, *u;
} block_bufs;

/* The widest feature count of a work buffer. */
static int64_t wide(const assoc_bfgnn_config *c) {
  int64_t N = c->n_antennas, w = c->h > 2 * c->d ? c->h : 2 * c->d;
  if (w < N * N + N) w = N * N + N;
  return w > 2 * N ? w : 2 * N;
}

/* Lays the buffers of rows g out from base (NULL: sizes only); the floats
 * needed. Each buffer starts on a 64-byte boundary. */
static size_t block_layout(const assoc_bfgnn_config *c, const rows *g, float *base,
                           block_bufs *bb) {
  int64_t w = wide(c), N = c->n_antennas, d = c->d;
  int64_t sizes[] = {g->RB,         g->RU,         2 * d * g->RB,       2 * d * g->RB,
                     2 * d * g->RU, 2 * d * g->RU, w * g->RE,           w * g->RE,
                     w * g->RE,     w * g->RE,     (2 * N + 1) * g->RE, w * g->RB,
                     w * g->RB,     w * g->RU,     w * g->RU,           g->RU};
  float **slots[] = {&bb->pin, &bb->qin, &bb->b,   &bb->b2,    &bb->c,   &bb->c2,
                     &bb->e,   &bb->t1,  &bb->t2,  &bb->t3,    &bb->xin, &bb->nb1,
                     &bb->nb2, &bb->nu1, &bb->nu2, &bb->served};
  int64_t dsizes[] = {N * N * g->RB, (N * N + N) * g->RB, N * N * g->RE, (N * N + N) * g->RE,
                      2 * N * g->RE};
  double **dslots[] = {&bb->sys, &bb->fac, &bb->terms, &bb->efac, &bb->u};
  size_t total = 0;
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    if (base) *slots[i] = base + total;
    total += (size_t)(sizes[i] + 15) / 16 * 16;
  }
  for (size_t i = 0; i < sizeof dsizes / sizeof *dsizes; i++) {
    if (base) *dslots[i] = (double *)(void *)(base + total);
    total += (size_t)(dsizes[i] + 7) / 8 * 16;
  }
  return total;
}

/* ---- the trunk ----------------------------------------------------------------------- */

/* Block inputs of samples [s0, s0 + W) in the row layouts. */
static void load_inputs(const rows *g, int N, const assoc_bfgnn_fused_inputs *in, int64_t s0,
                        block_bufs *bb) {
  int M = g->M, K = g->K, W = g->W, MK = M * K;
  for (int s = 0; s < W; s++) {
    const float *p = in->p + (s0 + s) * M, *q = in->q + (s0 + s) * K;
    const float *X = in->X + (s0 + s) * MK * 2 * N, *A = in->A + (s0 + s) * MK;
    for (int m = 0; m < M; m++) bb->pin[m * W + s] = p[m];
    for (int k = 0; k < K; k++) bb->qin[k * W + s] = q[k];
    for (int f = 0; f < 2 * N; f++) { /* a transpose: edge e = m K + k */
      float *x = bb->xin + f * g->RE + s;
      for (int e = 0; e < MK; e++) x[e * W] = X[e * 2 * N + f];
    }
    float *a = bb->xin + 2 * N * g->RE + s; /* A is [K, M] */
    for (int m = 0; m < M; m++)
      for (int k = 0; k < K; k++) a[(m * K + k) * W] = A[k * M + m];
  }
}

/* The message MLP f on [node, e] (node the BS rows when from_bs, else the
 * UE rows), averaged over the other kind of node before its last Linear:
 * out [d][R of the other kind]. */
static void mean_message(const rows *g, const fused_mlp *f, int d, const float *node, bool from_bs,
                         const float *e, block_bufs *bb, float *out) {
  int64_t R_in = from_bs ? g->RB : g->RU, R_out = from_bs ? g->RU : g->RB;
  float *pre = from_bs ? bb->nb1 : bb->nu1, *mean = from_bs ? bb->nu2 : bb->nb2;
  linear(&f->l[0], 0, d, (linear_start){0}, node, R_in, pre, false);
  edges_from_nodes(g, from_bs ? pre : NULL, from_bs ? NULL : pre, f->l[0].out, bb->t3);
  linear(&f->l[0], d, d, (linear_start){.init = bb->t3}, e, g->RE, bb->t1, true);
  linear_all(&f->l[1], bb->t1, g->RE, bb->t2, true);
  /* to the UE rows (mean over BSs) for a message from the BSs */
  edge_sum(g, bb->t2, f->l[1].out, !from_bs, 1.0f / (float)(from_bs ? g->M : g->K), mean);
  linear_all(&f->l[2], mean, R_out, out, false);
}

static void swap(float **a, float **b) {
  float *t = *a;
  *a = *b, *b = t;
}

/* One update layer: b, c (node_update) and e (in bb, swapped with the new
 * ones). */
static void update_layer(const rows *g, const fused_layer *ly, int d, block_bufs *bb) {
  if (ly->node_update) {
    mean_message(g, &ly->f1, d, bb->c, false, bb->e, bb, bb->b + d * g->RB);
    mean_message(g, &ly->f3, d, bb->b, true, bb->e, bb, bb->c + d * g->RU);
    mlp(&ly->f2, bb->b, g->RB, bb->nb1, bb->nb2, bb->b2);
    mlp(&ly->f4, bb->c, g->RU, bb->nu1, bb->nu2, bb->c2);
  }
  /* f5([e, b_m, c_k]): the node parts once per node, then per edge */
  const fused_mlp *f = &ly->f5;
  linear(&f->l[0], d, d, (linear_start){0}, bb->b, g->RB, bb->nb1, false);
  linear(&f->l[0], 2 * d, d, (linear_start){.no_bias = true}, bb->c, g->RU, bb->nu1, false);
  edges_from_nodes(g, bb->nb1, bb->nu1, f->l[0].out, bb->t3);
  linear(&f->l[0], 0, d, (linear_start){.init = bb->t3}, bb->e, g->RE, bb->t1, true);
  linear_all(&f->l[1], bb->t1, g->RE, bb->t2, true);
  linear_all(&f->l[2], bb->t2, g->RE, bb->t3, false);
  swap(&bb->e, &bb->t3);
  if (ly->node_update) swap(&bb->b, &bb->b2), swap(&bb->c, &bb->c2);
}

static void trunk(const assoc_bfgnn_fused *f, const rows *g, block_bufs *bb) {
  mlp(&f->mlp_p, bb->pin, g->RB, bb->nb1, bb->nb2, bb->b);
  mlp(&f->mlp_q, bb->qin, g->RU, bb->nu1, bb->nu2, bb->c);
  mlp(&f->mlp_e, bb->xin, g->RE, bb->t1, bb->t2, bb->e);
  for (int l = 0; l < f->cfg.L; l++) update_layer(g, &f->layers[l], f->cfg.d, bb);
}

/* ---- the heads ------------------------------------------------------------------------ */

/* exp and expm1 in float32 from one reduction x = n ln 2 + r, |r| <=
 * ln 2 / 2, for |x| <= 80: expm1(r) by its Taylor series to r^7 (relative
 * error below 2e-8 on that range), then 2^n (1 + expm1(r)) or 2^n
 * expm1(r) + (2^n - 1). Branch-free, so a loop of them vectorises (libm's
 * expf and tanhf are calls per value). */
static inline float expm1_reduced(float x, float *two_n) {
  x = x < -80.0f ? -80.0f : x > 80.0f ? 80.0f : x;
  const float shifter = 0x1.8p23f; /* adding it rounds to an integer */
  float n = (x * 1.44269504f + shifter) - shifter;
  float r = (x - n * 0.693359375f) + n * 2.12194440e-4f; /* ln 2 in two parts */
  int32_t bits = ((int32_t)n + 127) << 23;
  memcpy(two_n, &bits, sizeof bits);
  return r + r * r *
                 (0.5f +
                  r * (1.0f / 6 +
                       r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040))))));
}

static inline float exp_f32(float x) {
  float two_n, p = expm1_reduced(x, &two_n);
  return two_n + two_n * p;
}

/* tanh(y) = expm1(2y) / (expm1(2y) + 2): no cancellation near 0. */
static inline float tanh_f32(float y) {
  float two_n, p = expm1_reduced(2.0f * y, &two_n);
  float e = two_n * p + (two_n - 1.0f);
  return e / (e + 2.0f);
}

/* exp(c * 10 tanh(o / 10)) (bfgnn.c's bounded_exp) in place over n values. */
static void bounded_exp(float *o, int64_t n, float c) {
  for (int64_t r = 0; r < n; r++)
    o[r] = exp_f32(c * DUALITY_LOG_BOUND * tanh_f32(o[r] / DUALITY_LOG_BOUND));
}

/* Slot of entry (i, j) of an N x N Hermitian matrix or of its lower
 * Cholesky factor: the real part of (i >= j) at i N + j, the imaginary
 * part of (i > j) at j N + i (the upper triangle's slot). */
#define RE_AT(i, j) ((i)*N + (j))
#define IM_AT(i, j) ((j)*N + (i))

/* Per edge, lambda conj(x_i) x_j for i >= j into terms [N^2][RE] (slots
 * as RE_AT / IM_AT), lambda in lam [RE]. */
static void duality_terms(int N, int64_t RE, const float *xin, const float *lam, double *terms) {
  const float *xr = xin, *xi = xin + N * RE;
  for (int i = 0; i < N; i++)
    for (int j = 0; j <= i; j++) {
      double *pr = terms + RE_AT(i, j) * RE, *pi = terms + IM_AT(i, j) * RE;
      const float *ar = xr + i * RE, *ai = xi + i * RE, *br = xr + j * RE, *bi = xi + j * RE;
      for (int64_t r = 0; r < RE; r++)
        pr[r] = (double)lam[r] * ((double)ar[r] * br[r] + (double)ai[r] * bi[r]);
      if (i > j)
        for (int64_t r = 0; r < RE; r++)
          pi[r] = (double)lam[r] * ((double)ar[r] * bi[r] - (double)ai[r] * br[r]);
    }
}

/* S = I + the sum over each BS's edges of terms (F = N^2 slots), into
 * sys [F][RB]. */
static void bs_matrices(const rows *g, int N, const double *terms, double *sys) {
  for (int f = 0; f < N * N; f++) {
    double *y = sys + f * g->RB;
    for (int m = 0; m < g->M; m++) {
      double *ym = y + m * g->W, one = f % (N + 1) == 0 ? 1.0 : 0.0; /* the diagonal */
      const double *t = terms + f * g->RE + (int64_t)m * g->K * g->W;
      if (g->W == 1) { /* in a register, not through memory */
        double sum = one;
        for (int k = 0; k < g->K; k++) sum += t[k];
        ym[0] = sum;
        continue;
      }
      for (int s = 0; s < g->W; s++) ym[s] = one;
      for (int k = 0; k < g->K; k++)
        for (int s = 0; s < g->W; s++) ym[s] += t[k * g->W + s];
    }
  }
}

/* Each BS row's F values of fac [F][RB] copied to its edge rows: efac
 * [F][RE]. */
static void factor_to_edges(const rows *g, int F, const double *fac, double *efac) {
  int64_t KW = (int64_t)g->K * g->W;
  for (int f = 0; f < F; f++)
    for (int m = 0; m < g->M; m++) {
      double *y = efac + f * g->RE + m * KW;
      const double *x = fac + f * g->RB + m * g->W;
      if (g->W == 1)
        for (int64_t j = 0; j < KW; j++) y[j] = x[0];
      else
        for (int k = 0; k < g->K; k++)
          for (int s = 0; s < g->W; s++) y[k * g->W + s] = x[s];
    }
}

/* Each loop below runs over the rows r innermost, on separate arrays, so
 * that it vectorises. */

/* The Cholesky factor S = L L^H of every BS row's matrix sys [N^2][R]
 * (Hermitian positive definite, its eigenvalues >= 1): L into fac with the
 * reciprocal of its diagonal in fac's last N slots. */
static void cholesky(int N, int64_t R, const double *sys, double *fac) {
  double *L = fac, *inv = fac + N * N * R;
  for (int j = 0; j < N; j++) {
    double *ljj = L + RE_AT(j, j) * R, *ij = inv + j * R;
    const double *sjj = sys + RE_AT(j, j) * R;
    for (int64_t r = 0; r < R; r++) ljj[r] = sjj[r];
    for (int p = 0; p < j; p++) {
      const double *a = L + RE_AT(j, p) * R, *b = L + IM_AT(j, p) * R;
      for (int64_t r = 0; r < R; r++) ljj[r] -= a[r] * a[r] + b[r] * b[r];
    }
    for (int64_t r = 0; r < R; r++) ljj[r] = sqrt(ljj[r]), ij[r] = 1.0 / ljj[r];
    for (int i = j + 1; i < N; i++) {
      double *zr = L + RE_AT(i, j) * R, *zi = L + IM_AT(i, j) * R;
      const double *sr = sys + RE_AT(i, j) * R, *si = sys + IM_AT(i, j) * R;
      for (int64_t r = 0; r < R; r++) zr[r] = sr[r], zi[r] = si[r];
      for (int p = 0; p < j; p++) { /* L_ip conj(L_jp) */
        const double *a = L + RE_AT(i, p) * R, *b = L + IM_AT(i, p) * R;
        const double *c = L + RE_AT(j, p) * R, *d = L + IM_AT(j, p) * R;
        for (int64_t r = 0; r < R; r++)
          zr[r] -= a[r] * c[r] + b[r] * d[r], zi[r] -= b[r] * c[r] - a[r] * d[r];
      }
      for (int64_t r = 0; r < R; r++) zr[r] *= ij[r], zi[r] *= ij[r];
    }
  }
}

/* y_i -= l_ip y_p (conj_l: conj(l_ip)) over RE rows, complex. */
static void sub_product(int64_t RE, const double *lr, const double *li, bool conj_l,
                        const double *pr, const double *pi, double *yr, double *yi) {
  double sign = conj_l ? -1.0 : 1.0;
  for (int64_t r = 0; r < RE; r++) {
    double b = sign * li[r];
    yr[r] -= lr[r] * pr[r] - b * pi[r];
    yi[r] -= lr[r] * pi[r] + b * pr[r];
  }
}

/* u = S^{-1} conj(x) per edge from the factor expanded to the edge rows
 * (L [N^2 + N][RE]) and x (xin): u [2N][RE] (real parts, then imaginary). */
static void cholesky_solve(int N, int64_t RE, const double *L, const float *xin, double *u) {
  const double *inv = L + N * N * RE;
  double *ur = u, *ui = u + N * RE;
  for (int i = 0; i < N; i++) { /* L y = conj(x) */
    double *yr = ur + i * RE, *yi = ui + i * RE;
    const float *xr = xin + i * RE, *xi = xin + (N + i) * RE;
    for (int64_t r = 0; r < RE; r++) yr[r] = xr[r], yi[r] = -xi[r];
    for (int p = 0; p < i; p++)
      sub_product(RE, L + RE_AT(i, p) * RE, L + IM_AT(i, p) * RE, false, ur + p * RE, ui + p * RE,
                  yr, yi);
    for (int64_t r = 0; r < RE; r++) yr[r] *= inv[i * RE + r], yi[r] *= inv[i * RE + r];
  }
  for (int i = N - 1; i >= 0; i--) { /* L^H u = y */
    double *zr = ur + i * RE, *zi = ui + i * RE;
    for (int p = i + 1; p < N; p++)
      sub_product(RE, L + RE_AT(p, i) * RE, L + IM_AT(p, i) * RE, true, ur + p * RE, ui + p * RE,
                  zr, zi);
    for (int64_t r = 0; r < RE; r++) zr[r] *= inv[i * RE + r], zi[r] *= inv[i * RE + r];
  }
}

/* The duality head's unnormalised, masked beams v [2N][RE] into t1, from
 * mlp_v's output o [2][RE] in t3. S = I + sum lambda x^* x^T is formed,
 * factored and solved in float64: with lambda up to e^10 and |x|^2 up to
 * ~1e2 its entries reach ~1e7, where float32's rounding of the sum (~1)
 * is as large as the identity that keeps S positive definite (a float32
 * Cholesky then met negative pivots on trained models). */
static void duality_head(const rows *g, int N, block_bufs *bb) {
  int64_t RE = g->RE;
  float *lam = bb->t3, *sw = bb->t3 + RE, *a = bb->xin + 2 * N * RE;
  /* a dropped UE receives nothing: no BS needs to spare it interference */
  edge_sum(g, a, 1, false, 1.0f, bb->served);
  bounded_exp(lam, RE, 1.0f);
  bounded_exp(sw, RE, 0.5f); /* sqrt(w) */
  for (int m = 0; m < g->M; m++)
    for (int k = 0; k < g->K; k++)
      for (int s = 0; s < g->W; s++) lam[(m * g->K + k) * g->W + s] *= bb->served[k * g->W + s];
  duality_terms(N, RE, bb->xin, lam, bb->terms);
  bs_matrices(g, N, bb->terms, bb->sys);
  cholesky(N, g->RB, bb->sys, bb->fac);
  factor_to_edges(g, N * N + N, bb->fac, bb->efac);
  cholesky_solve(N, RE, bb->efac, bb->xin, bb->u);
  const double *u = bb->u;
  double *scale = bb->terms; /* free again: [RE] */
  for (int64_t r = 0; r < RE; r++) scale[r] = 1e-30;
  for (int f = 0; f < 2 * N; f++)
    for (int64_t r = 0; r < RE; r++) scale[r] += u[f * RE + r] * u[f * RE + r];
  for (int64_t r = 0; r < RE; r++) scale[r] = (double)sw[r] * a[r] / sqrt(scale[r]);
  for (int f = 0; f < 2 * N; f++)
    for (int64_t r = 0; r < RE; r++) bb->t1[f * RE + r] = (float)(u[f * RE + r] * scale[r]);
}

/* The direct head's masked beams: v = o a into t1. */
static void direct_head(const rows *g, int N, block_bufs *bb) {
  int64_t RE = g->RE;
  const float *a = bb->xin + 2 * N * RE;
  for (int f = 0; f < 2 * N; f++)
    for (int64_t r = 0; r < RE; r++) bb->t1[f * RE + r] = bb->t3[f * RE + r] * a[r];
}

#undef RE_AT
#undef IM_AT

/* The per-BS factor of assoc_beam_normalize for the beams v [2N][RE] in
 * t1 (a in {0, 1} so a^2 = a): into nb1 [RB]. */
static void power_factor(const assoc_bfgnn_config *c, const rows *g, block_bufs *bb) {
  int64_t RE = g->RE, N = c->n_antennas;
  const float *v = bb->t1, *a = bb->xin + 2 * N * RE;
  float *energy = bb->t2, rp = (float)sqrt(c->power);
  for (int64_t r = 0; r < RE; r++) energy[r] = 0;
  for (int f = 0; f < 2 * N; f++)
    for (int64_t r = 0; r < RE; r++) energy[r] += v[f * RE + r] * v[f * RE + r];
  for (int64_t r = 0; r < RE; r++) energy[r] *= a[r] * a[r];
  edge_sum(g, energy, 1, true, 1.0f, bb->nb1);
  for (int64_t r = 0; r < g->RB; r++) {
    float norm = sqrtf(bb->nb1[r] + (float)ASSOC_BEAM_NORM_EPS);
    float den = c->norm == ASSOC_BEAM_FULL_POWER ? norm : rp + (norm > rp ? norm - rp : 0.0f);
    bb->nb1[r] = rp / den;
  }
}

/* The beams of samples [s0, s0 + W) into out. */
static void block_forward(const assoc_bfgnn_fused *f, const rows *g, block_bufs *bb,
                          const assoc_bfgnn_fused_inputs *in, int64_t s0, float *V_re,
                          float *V_im) {
  int N = f->cfg.n_antennas, M = g->M, K = g->K, W = g->W;
  load_inputs(g, N, in, s0, bb);
  trunk(f, g, bb);
  mlp(&f->mlp_v, bb->e, g->RE, bb->t1, bb->t2, bb->t3);
  if (f->cfg.head == ASSOC_BFGNN_HEAD_DUALITY)
    duality_head(g, N, bb);
  else
    direct_head(g, N, bb);
  power_factor(&f->cfg, g, bb);
  for (int m = 0; m < M; m++)
    for (int k = 0; k < K; k++)
      for (int s = 0; s < W; s++) {
        int64_t r = (m * K + k) * W + s, o = (((s0 + s) * M + m) * K + k) * N;
        float fm = bb->nb1[m * W + s];
        for (int n = 0; n < N; n++) {
          V_re[o + n] = bb->t1[n * g->RE + r] * fm;
          V_im[o + n] = bb->t1[(N + n) * g->RE + r] * fm;
        }
      }
}

/* ---- batches --------------------------------------------------------------------------- */

/* Scratch for `threads` blocks of `floats` each; 0 or -1. */
static int ensure_scratch(assoc_bfgnn_fused *f, int threads, size_t floats) {
  if (threads > f->n_scratch) {
    fused_scratch *s = realloc(f->scratch, (size_t)threads * sizeof *s);
    if (!s) return -1;
    for (int i = f->n_scratch; i < threads; i++) s[i] = (fused_scratch){0};
    f->scratch = s, f->n_scratch = threads;
  }
  for (int i = 0; i < threads; i++) {
    if (f->scratch[i].size >= floats) continue;
    free(f->scratch[i].mem);
    /* zeroed: no row is read before it is written, but a stale NaN never
     * costs a slow path either */
    f->scratch[i].mem = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
    f->scratch[i].size = f->scratch[i].mem ? floats : 0;
    if (!f->scratch[i].mem) return -1;
    memset(f->scratch[i].mem, 0, floats * sizeof(float));
  }
  return 0;
}

static bool inputs_valid(const assoc_bfgnn_fused *f, const assoc_bfgnn_fused_inputs *in,
                         const float *V_re, const float *V_im) {
  bool ok = f && in && in->B >= 1 && in->M >= 1 && in->M <= ASSOC_MAX_BS && in->K >= 1 && in->p &&
            in->q && in->X && in->A && V_re && V_im;
  if (!ok)
    sg_report_error("assoc_bfgnn_fused_beams", __FILE__, __LINE__,
                    "B %lld, M %d, K %d: need a model, B >= 1, 1 <= M <= %d, K >= 1 and every "
                    "input and output array",
                    in ? (long long)in->B : 0LL, in ? in->M : 0, in ? in->K : 0, ASSOC_MAX_BS);
  return ok;
}

/* Block i (of W samples, the last one perhaps fewer) in thread tid's scratch. */
static void run_block(const assoc_bfgnn_fused *f, const assoc_bfgnn_fused_inputs *in, int W,
                      int64_t i, int tid, float *V_re, float *V_im) {
  int64_t s0 = i * W;
  rows g = rows_of(in->M, in->K, in->B - s0 < W ? (int)(in->B - s0) : W);
  block_bufs bb;
  block_layout(&f->cfg, &g, f->scratch[tid].mem, &bb);
  block_forward(f, &g, &bb, in, s0, V_re, V_im);
}

int assoc_bfgnn_fused_beams(assoc_bfgnn_fused *f, const assoc_bfgnn_fused_inputs *in, float *V_re,
                            float *V_im) {
  if (!inputs_valid(f, in, V_re, V_im)) return -1;
  int W = in->B < BLOCK_MAX ? (int)in->B : BLOCK_MAX;
  int64_t blocks = (in->B + W - 1) / W;
  int threads = omp_get_max_threads();
  if (threads > blocks) threads = (int)blocks;
  rows full = rows_of(in->M, in->K, W);
  if (ensure_scratch(f, threads, block_layout(&f->cfg, &full, NULL, &(block_bufs){0}))) {
    sg_report_error("assoc_bfgnn_fused_beams", __FILE__, __LINE__, "out of memory");
    return -1;
  }
  /* Fixed blocks of W samples (the last may be shorter): each sample's
   * beams do not depend on the thread that computes them. One thread runs
   * them without starting a parallel region. */
  if (threads == 1)
    for (int64_t i = 0; i < blocks; i++) run_block(f, in, W, i, 0, V_re, V_im);
  else
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < blocks; i++) run_block(f, in, W, i, omp_get_thread_num(), V_re, V_im);
  return 0;
}
