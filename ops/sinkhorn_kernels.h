/* The capacity Sinkhorn kernels for one element type, included by
 * ops/sinkhorn.c once per type with SK_T (float or double), SK(name)
 * (name##_f32 or name##_f64), SK_VEXP and SK_ABSORB_MIN defined. No include
 * guard: each inclusion instantiates the kernels for one type. */
#ifndef SK_T
#error "ops/sinkhorn_kernels.h is included by ops/sinkhorn.c with SK_T defined"
#endif

/* ---- log-domain pieces (first column step) ----------------------------- */

/* c[m] = LSE_k x_km of one K x M sample. Leaves e_km = exp(x_km - max_k x_km)
 * and sum[m] = sum_k e_km, so the column softmax is e_km / sum[m]. An all
 * -inf column gives c = -inf (e = 0); a NaN propagates. */
static void SK(col_lse)(const SK_T *x, int64_t K, int64_t M, SK_T *c, SK_T *e, SK_T *sum) {
  for (int64_t m = 0; m < M; m++) c[m] = -INFINITY;
  for (int64_t k = 0; k < K; k++)
    for (int64_t m = 0; m < M; m++)
      if (x[k * M + m] > c[m]) c[m] = x[k * M + m];
  for (int64_t m = 0; m < M; m++) {
    if (!isfinite(c[m])) c[m] = 0; /* no finite shift: exp of the raw values */
    sum[m] = 0;
  }
  for (int64_t k = 0; k < K; k++)
    for (int64_t m = 0; m < M; m++) e[k * M + m] = x[k * M + m] - c[m];
  SK_VEXP(e, e, K * M);
  for (int64_t k = 0; k < K; k++)
    for (int64_t m = 0; m < M; m++) sum[m] += e[k * M + m];
  for (int64_t m = 0; m < M; m++) c[m] += log(sum[m]);
}

/* The first column step's shifts max(0, c_m - log cap) (balanced: c_m -
 * log cap); at equality a column is not capped. Shared by forward and
 * backward so both decide alike. */
static void SK(col_shifts)(const SK_T *c, int64_t M, SK_T log_cap, bool balanced, SK_T *shift) {
  for (int64_t m = 0; m < M; m++) {
    SK_T s = c[m] - log_cap;
    shift[m] = s > 0 || balanced ? s : 0;
  }
}

/* ---- the scaling form ---------------------------------------------------- */

/* One sample's iteration state (see the top of the file). */
typedef struct SK(sample) {
  SK_T *G, *a, *b, *U0, *V0, *colsum;
} SK(sample);

static SK(sample) SK(sample_at)(const sk_state *st, SK_T *G, int64_t s) {
  int64_t K = st->rows, M = st->cols;
  return (SK(sample)){.G = G + s * K * M,
                      .a = (SK_T *)st->a + s * K,
                      .b = (SK_T *)st->b + s * M,
                      .U0 = (SK_T *)st->U0 + s * K,
                      .V0 = (SK_T *)st->V0 + s * M,
                      .colsum = (SK_T *)st->colsum + s * M};
}

/* G_km = exp(x0_km - V0_m - U0_k). */
static void SK(kernel)(const SK_T *x0, int64_t K, int64_t M, const SK_T *U0, const SK_T *V0,
                       SK_T *G) {
  for (int64_t k = 0; k < K; k++)
    for (int64_t m = 0; m < M; m++) G[k * M + m] = (x0[k * M + m] - V0[m]) - U0[k];
  SK_VEXP(G, G, K * M);
}

/* The first epoch: the first column step in the log domain on the input,
 * z0 = x0 - shift, kept as the reference V0 = shift, U0_k = max_m z0_km
 * (0 for a row without a finite entry), G = exp(z0 - U0), b = 1.
 * ws: K*M + 2M elements. */
static void SK(first_epoch)(const SK_T *x0, int64_t K, int64_t M, const sk_params *p, SK_T *U0,
                            SK_T *V0, SK_T *G, SK_T *b, SK_T *ws) {
  SK_T *c = ws, *sum = c + M, *e = sum + M;
  SK(col_lse)(x0, K, M, c, e, sum);
  SK(col_shifts)(c, M, (SK_T)p->log_cap, p->balanced, V0);
  for (int64_t k = 0; k < K; k++) {
    SK_T mx = -INFINITY;
    for (int64_t m = 0; m < M; m++)
      if (x0[k * M + m] - V0[m] > mx) mx = x0[k * M + m] - V0[m];
    U0[k] = isfinite(mx) ? mx : 0;
  }
  SK(kernel)(x0, K, M, U0, V0, G);
  for (int64_t m = 0; m < M; m++) b[m] = 1;
}

/* Column step: b_m *= cap / colsum_m on the columns over capacity (every
 * column when balanced); marks them in active (may be NULL). */
/* The smallest |colsum_m / cap - 1| of a column step: how far its capped /
 * uncapped decisions are from the kink of max(0, LSE - log cap). */
static double SK(kink_distance)(const SK_T *colsum, int64_t M, double cap) {
  double d = INFINITY;
  for (int64_t m = 0; m < M; m++) d = fmin(d, fabs((double)colsum[m] / cap - 1));
  return d;
}

static void SK(col_step)(const SK_T *colsum, int64_t M, SK_T cap, bool balanced, SK_T *b,
                         uint8_t *active) {
  for (int64_t m = 0; m < M; m++)
    if (colsum[m] > cap || balanced) {
      b[m] *= cap / colsum[m];
      if (active) active[m] = 1;
    }
}

/* Row step: a_k = r / sum_m G_km b_m. */
static void SK(row_step)(const SK_T *restrict G, int64_t K, int64_t M, const SK_T *restrict b,
                         SK_T r, SK_T *restrict a) {
  for (int64_t k = 0; k < K; k++) {
    SK_T s = 0;
    for (int64_t m = 0; m < M; m++) s += G[k * M + m] * b[m];
    a[k] = r / s;
  }
}

/* Column masses colsum_m = b_m sum_k G_km a_k. */
static void SK(col_sums)(const SK_T *restrict G, int64_t K, int64_t M, const SK_T *restrict a,
                         const SK_T *restrict b, SK_T *restrict colsum) {
  for (int64_t m = 0; m < M; m++) {
    SK_T s = 0;
    for (int64_t k = 0; k < K; k++) s += G[k * M + m] * a[k];
    colsum[m] = s * b[m];
  }
}

/* Starts a new epoch when a column scaling got too small: the scalings move
 * into the reference potentials and G is rebuilt. Returns whether it did. */
static bool SK(maybe_absorb)(const SK_T *x0, int64_t K, int64_t M, SK(sample) * q) {
  bool small = false;
  for (int64_t m = 0; m < M; m++) small |= q->b[m] < SK_ABSORB_MIN;
  if (!small) return false;
  for (int64_t k = 0; k < K; k++) {
    q->U0[k] -= log(q->a[k]);
    q->a[k] = 1;
  }
  SK_T common = INFINITY;
  for (int64_t m = 0; m < M; m++) {
    q->V0[m] -= log(q->b[m]);
    q->b[m] = 1;
    if (q->V0[m] < common) common = q->V0[m];
  }
  /* The iterate only depends on U0_k + V0_m: move the shift common to all
   * columns into the rows. When K r > M c every column is capped each
   * iteration and U0, V0 drift apart by log(K r / M c) per iteration; this
   * keeps them small, so x0 - U0 - V0 does not lose digits to cancellation. */
  for (int64_t m = 0; m < M; m++) q->V0[m] -= common;
  for (int64_t k = 0; k < K; k++) q->U0[k] += common;
  SK(kernel)(x0, K, M, q->U0, q->V0, q->G);
  return true;
}

/* Iteration t of one sample with input x0. Marks capped columns in active
 * (may be NULL); sets *absorbed if a new epoch started. With want_excess,
 * returns the column excess (mass units, >= 0; NaN propagates), else 0. */
static double SK(iterate)(SK(sample) * q, const SK_T *x0, int64_t K, int64_t M, const sk_params *p,
                          int64_t t, uint8_t *active, bool want_excess, bool *absorbed, SK_T *ws) {
  if (t == 0)
    SK(first_epoch)(x0, K, M, p, q->U0, q->V0, q->G, q->b, ws);
  else
    SK(col_step)(q->colsum, M, (SK_T)p->col_cap, p->balanced, q->b, active);
  SK(row_step)(q->G, K, M, q->b, (SK_T)p->row_mass, q->a);
  *absorbed = SK(maybe_absorb)(x0, K, M, q);
  SK(col_sums)(q->G, K, M, q->a, q->b, q->colsum);
  if (!want_excess) return 0;
  double excess = 0;
  for (int64_t m = 0; m < M; m++) {
    double ex = (double)q->colsum[m] - p->col_cap;
    if (p->balanced) ex = fabs(ex); /* a column below its cap is off too */
    if (ex > excess || isnan(ex)) excess = ex;
  }
  return excess;
}

/* ---- saved records ------------------------------------------------------- */
/* The record of iteration t >= 1 of sample s: {0, a, b} entering it, or
 * {1, U0, V0} when it starts a new epoch (then a = b = 1). */

static SK_T *SK(record)(const sk_block *last, int64_t s, int64_t t, int64_t K, int64_t M) {
  const sk_block *blk = last;
  while (t < blk->first_t) blk = blk->prev;
  return (SK_T *)blk->data + (s * blk->n_slots + (t - blk->first_t)) * (1 + K + M);
}

static void SK(write_record)(SK_T *rec, const SK(sample) * q, int64_t K, int64_t M,
                             bool *new_epoch) {
  rec[0] = *new_epoch ? 1 : 0;
  memcpy(rec + 1, *new_epoch ? q->U0 : q->a, (size_t)K * sizeof *rec);
  memcpy(rec + 1 + K, *new_epoch ? q->V0 : q->b, (size_t)M * sizeof *rec);
  *new_epoch = false;
}

/* ---- forward --------------------------------------------------------------- */

/* A finished sample's output y = x0 - U0_k - V0_m + log a_k + log b_m,
 * written over its kernel G. ws: M elements. */
static void SK(write_output)(const SK(sample) * q, const SK_T *x0, int64_t K, int64_t M, SK_T *ws) {
  SK_T *vb = ws;
  for (int64_t m = 0; m < M; m++) vb[m] = q->V0[m] - log(q->b[m]);
  for (int64_t k = 0; k < K; k++) {
    SK_T ua = q->U0[k] - log(q->a[k]);
    for (int64_t m = 0; m < M; m++) q->G[k * M + m] = (x0[k * M + m] - vb[m]) - ua;
  }
}

/* Runs up to n iterations of sample s (input x0s, kernel in G), first
 * saving each iteration's record into blk when blk is not NULL; writes the
 * sample's output once it has finished. */
static void SK(run_sample)(sk_state *st, const SK_T *x0s, SK_T *G, int64_t s, int64_t n,
                           const sk_block *blk, SK_T *ws) {
  int64_t K = st->rows, M = st->cols;
  SK(sample) q = SK(sample_at)(st, G, s);
  uint8_t *active = st->active + s * M;
  for (int64_t j = 0; j < n && !st->done[s]; j++) {
    int64_t t = st->iters[s];
    if (blk && t >= blk->first_t)
      SK(write_record)(SK(record)(blk, s, t, K, M), &q, K, M, &st->new_epoch[s]);
    /* Active set: columns capped after the first iteration (see the top).
     * Without a tolerance only the last excess is needed (for info). */
    bool want_excess = st->p.tol > 0 || t == st->p.max_iters - 1, absorbed;
    if (t >= 1 && !st->p.balanced) /* balanced: no decision, no kink */
      st->margin[s] = fmin(st->margin[s], SK(kink_distance)(q.colsum, M, st->p.col_cap));
    st->excess[s] =
        SK(iterate)(&q, x0s, K, M, &st->p, t, t >= 1 ? active : NULL, want_excess, &absorbed, ws);
    st->new_epoch[s] |= absorbed;
    st->iters[s]++;
    st->done[s] = st->excess[s] < st->p.tol;
  }
  if (st->done[s] || st->iters[s] == st->p.max_iters) SK(write_output)(&q, x0s, K, M, ws);
}

/* Iterations of the block starting at iteration t0 (see FIRST_BLOCK). */
static int64_t SK(block_len)(int64_t t0, const sk_params *p) {
  int64_t left = p->max_iters - t0;
  if (p->tol <= 0) return left;
  int64_t n = t0 < FIRST_BLOCK ? FIRST_BLOCK : t0; /* doubling: t0 + n = 2 t0 */
  return n < left ? n : left;
}

/* Arena slots for the records of iterations t in [max(t0, 1), t0 + n),
 * linked in front of the previous blocks; NULL if there is no such t. */
static sk_block *SK(new_block)(sg_graph *g, sk_state *st, int64_t t0, int64_t n) {
  int64_t first = t0 > 0 ? t0 : 1;
  if (t0 + n <= first) return NULL;
  sk_block *blk = sg_arena_alloc(g, sizeof *blk);
  if (!blk) return NULL; /* out of memory: the graph failed, nothing is saved */
  blk->prev = st->last;
  blk->first_t = first;
  blk->n_slots = t0 + n - first;
  size_t rec = (size_t)(1 + st->rows + st->cols) * sizeof(SK_T);
  blk->data = sg_arena_alloc(g, (size_t)(st->samples * blk->n_slots) * rec);
  if (!blk->data) return NULL;
  st->last = blk;
  return blk;
}

/* The whole forward, block by block: each block allocates the records it
 * may need, then runs every still-running sample in parallel (one thread
 * per sample, so results do not depend on the thread count). */
static void SK(forward)(sg_graph *g, sk_state *st, const SK_T *x0, SK_T *y, bool save) {
  int64_t S = st->samples, KM = st->rows * st->cols;
  if (S == 0) return;
  size_t per = (size_t)(KM + 2 * st->cols) * sizeof(SK_T);
  char *scratch = thread_scratch(g, &per);
  if (!scratch) return; /* out of memory: reported, the graph failed */
  int64_t running = S;
  for (int64_t t0 = 0, n; t0 < st->p.max_iters && running > 0; t0 += n) {
    n = SK(block_len)(t0, &st->p);
    const sk_block *blk = save ? SK(new_block)(g, st, t0, n) : NULL;
    SG_PARALLEL_IF(
        par_worth(S * KM * n), for (int64_t s = 0; s < S; s++) {
          if (st->done[s]) continue;
          SK_T *ws = (SK_T *)(scratch + per * (size_t)omp_get_thread_num());
          SK(run_sample)(st, x0 + s * KM, y, s, n, blk, ws);
        });
    running = 0;
    for (int64_t s = 0; s < S; s++) running += !st->done[s];
  }
}

/* ---- unrolled backward ------------------------------------------------- */

/* Rebuilds into G, U0, V0 the kernel of the epoch holding iteration t of
 * sample s; returns the iteration that started it (0: the first epoch). */
static int64_t SK(load_epoch)(const sk_state *st, const SK_T *x0, int64_t s, int64_t t, SK_T *G,
                              SK_T *U0, SK_T *V0, SK_T *ws) {
  int64_t K = st->rows, M = st->cols;
  for (; t >= 1; t--) {
    const SK_T *rec = SK(record)(st->last, s, t, K, M);
    if (rec[0] != 0) {
      memcpy(U0, rec + 1, (size_t)K * sizeof *U0);
      memcpy(V0, rec + 1 + K, (size_t)M * sizeof *V0);
      SK(kernel)(x0, K, M, U0, V0, G);
      return t;
    }
  }
  SK_T *b = ws; /* first_epoch sets b = 1, unused here */
  SK(first_epoch)(x0, K, M, &st->p, U0, V0, G, b, ws + M);
  return 0;
}

/* Replaces g (gradient w.r.t. the iterate after iteration t >= 1) by the
 * gradient w.r.t. the iterate before it, whose scalings are a, b.
 * ws: 2M elements. */
static void SK(iteration_backward)(const SK_T *restrict G, int64_t K, int64_t M,
                                   const SK_T *restrict a, const SK_T *restrict b, SK_T cap,
                                   bool balanced, SK_T *restrict g, SK_T *restrict ws) {
  SK_T *colsum = ws, *bc = colsum + M;
  SK(col_sums)(G, K, M, a, b, colsum);
  memcpy(bc, b, (size_t)M * sizeof *bc);
  SK(col_step)(colsum, M, cap, balanced, bc, NULL);
  /* Row step: g -= p * (row sum of g), p_km = G_km bc_m / sum_m G_km bc_m. */
  for (int64_t k = 0; k < K; k++) {
    SK_T s = 0, gsum = 0;
    for (int64_t m = 0; m < M; m++) {
      s += G[k * M + m] * bc[m];
      gsum += g[k * M + m];
    }
    SK_T c = gsum / s;
    for (int64_t m = 0; m < M; m++) g[k * M + m] -= G[k * M + m] * bc[m] * c;
  }
  /* Column step on capped columns: g -= sigma * (column sum of g), with
   * sigma_km = G_km a_k b_m / colsum_m. */
  for (int64_t m = 0; m < M; m++) {
    if (!(colsum[m] > cap) && !balanced) continue;
    SK_T h = 0;
    for (int64_t k = 0; k < K; k++) h += g[k * M + m];
    h *= b[m] / colsum[m];
    for (int64_t k = 0; k < K; k++) g[k * M + m] -= G[k * M + m] * a[k] * h;
  }
}

/* The same for iteration 0: its row step on the first epoch's G (b = 1),
 * then its log-domain column step recomputed from the input. ws: K*M + 3M. */
static void SK(first_iteration_backward)(const SK_T *x0, const SK_T *G, int64_t K, int64_t M,
                                         const sk_params *p, SK_T *g, SK_T *ws) {
  for (int64_t k = 0; k < K; k++) {
    SK_T s = 0, gsum = 0;
    for (int64_t m = 0; m < M; m++) {
      s += G[k * M + m];
      gsum += g[k * M + m];
    }
    SK_T c = gsum / s;
    for (int64_t m = 0; m < M; m++) g[k * M + m] -= G[k * M + m] * c;
  }
  SK_T *c = ws, *sum = c + M, *shift = sum + M, *e = shift + M;
  SK(col_lse)(x0, K, M, c, e, sum);
  SK(col_shifts)(c, M, (SK_T)p->log_cap, p->balanced, shift);
  for (int64_t m = 0; m < M; m++) {
    if (!(shift[m] > 0) && !p->balanced) continue;
    SK_T h = 0;
    for (int64_t k = 0; k < K; k++) h += g[k * M + m];
    h /= sum[m];
    for (int64_t k = 0; k < K; k++) g[k * M + m] -= e[k * M + m] * h;
  }
}

/* Backward through every iteration sample s ran; g holds its output
 * gradient and receives its input gradient. ws: see unrolled_backward. */
static void SK(sample_backward)(const sk_state *st, const SK_T *x0, int64_t s, SK_T *g, SK_T *ws) {
  int64_t K = st->rows, M = st->cols, KM = K * M;
  SK_T *G = ws, *U0 = G + KM, *V0 = U0 + K, *a = V0 + M, *b = a + K, *tmp = b + M;
  SK_T cap = (SK_T)st->p.col_cap;
  int64_t epoch = SK(load_epoch)(st, x0, s, st->iters[s] - 1, G, U0, V0, tmp);
  for (int64_t t = st->iters[s] - 1; t >= 1; t--) {
    const SK_T *rec = SK(record)(st->last, s, t, K, M);
    for (int64_t k = 0; k < K; k++) a[k] = rec[0] != 0 ? 1 : rec[1 + k];
    for (int64_t m = 0; m < M; m++) b[m] = rec[0] != 0 ? 1 : rec[1 + K + m];
    SK(iteration_backward)(G, K, M, a, b, cap, st->p.balanced, g, tmp);
    if (t == epoch) epoch = SK(load_epoch)(st, x0, s, t - 1, G, U0, V0, tmp);
  }
  SK(first_iteration_backward)(x0, G, K, M, &st->p, g, tmp);
}

static void SK(unrolled_backward)(sg_graph *g, const sk_state *st, const SK_T *x0, const SK_T *gy,
                                  SK_T *gx) {
  int64_t S = st->samples, K = st->rows, M = st->cols, KM = K * M;
  /* g, then G, U0, V0, a, b and the kernels' scratch (K*M + 3M or more). */
  size_t per = (size_t)(3 * KM + 3 * K + 6 * M) * sizeof(SK_T);
  char *scratch = thread_scratch(g, &per);
  if (!scratch) return; /* out of memory: reported, the graph failed */
  int64_t work = 0;
  for (int64_t s = 0; s < S; s++) work += st->iters[s] * KM;
  SG_PARALLEL_IF(
      par_worth(work), for (int64_t s = 0; s < S; s++) {
        SK_T *gs = (SK_T *)(scratch + per * (size_t)omp_get_thread_num());
        memcpy(gs, gy + s * KM, (size_t)KM * sizeof *gs);
        SK(sample_backward)(st, x0 + s * KM, s, gs, gs + KM);
        for (int64_t i = 0; i < KM; i++) gx[s * KM + i] += gs[i];
      });
}

/* ---- implicit backward ------------------------------------------------- */

/* Solves the symmetric positive semi-definite system A x = b of size n in
 * place by Cholesky (A's lower triangle is overwritten). A pivot that is
 * not above tiny * (its original diagonal) marks a redundant equation: its
 * unknown is set to 0 (consistent systems only). */
static void SK(psd_solve)(double *A, double *b, int64_t n, double tiny) {
  for (int64_t j = 0; j < n; j++) {
    double d = A[j * n + j], diag = d;
    for (int64_t q = 0; q < j; q++) d -= A[j * n + q] * A[j * n + q];
    bool skip = !(d > tiny * diag);
    A[j * n + j] = skip ? 0 : sqrt(d);
    for (int64_t i = j + 1; i < n; i++) {
      double v = A[i * n + j];
      for (int64_t q = 0; q < j; q++) v -= A[i * n + q] * A[j * n + q];
      A[i * n + j] = skip ? 0 : v / A[j * n + j];
    }
  }
  for (int64_t i = 0; i < n; i++) { /* L w = b */
    double v = b[i];
    for (int64_t q = 0; q < i; q++) v -= A[i * n + q] * b[q];
    b[i] = A[i * n + i] > 0 ? v / A[i * n + i] : 0;
  }
  for (int64_t i = n - 1; i >= 0; i--) { /* L^T x = w */
    double v = b[i];
    for (int64_t q = i + 1; q < n; q++) v -= A[q * n + i] * b[q];
    b[i] = A[i * n + i] > 0 ? v / A[i * n + i] : 0;
  }
}

/* Which columns carry an unknown beta: the active ones (all of them when
 * K r >= M c, see sk_state.all_tight), minus the last active one when every
 * column with mass is active (the gauge). */
static void SK(unknowns)(const uint8_t *active, bool all_tight, const double *C, int64_t M,
                         uint8_t *unknown) {
  bool all_massive_active = true;
  int64_t last = -1;
  for (int64_t m = 0; m < M; m++) {
    unknown[m] = all_tight || active[m];
    if (unknown[m]) last = m;
    if (!unknown[m] && C[m] > 0) all_massive_active = false;
  }
  if (all_massive_active && last >= 0) unknown[last] = 0;
}

static void SK(fixed_point_backward)(const SK_T *y, double *go, int64_t K, int64_t M,
                                     const uint8_t *active, bool all_tight, double *w) {
  double *P = w, *R = P + K * M, *a = R + K, *C = a + K, *b = C + M, *A = b + M;
  uint8_t *unknown = (uint8_t *)(A + M * M);
  for (int64_t i = 0; i < K * M; i++) P[i] = (double)y[i];
  sg_vexp_f64(P, P, K * M);
  for (int64_t m = 0; m < M; m++) C[m] = b[m] = 0;
  for (int64_t k = 0; k < K; k++) {
    R[k] = a[k] = 0;
    for (int64_t m = 0; m < M; m++) {
      double pv = P[k * M + m], gv = go[k * M + m];
      R[k] += pv, a[k] += gv, C[m] += pv, b[m] += gv;
    }
  }
  SK(unknowns)(active, all_tight, C, M, unknown);
  /* Schur complement on beta: (diag C - P^T diag(1/R) P) beta = b - P^T (a/R),
   * with identity rows for the columns without an unknown (beta = 0). */
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < M; j++) A[i * M + j] = i == j ? (unknown[i] ? C[i] : 1) : 0;
  for (int64_t i = 0; i < M; i++) b[i] = unknown[i] ? b[i] : 0;
  for (int64_t k = 0; k < K; k++) {
    const double *pk = P + k * M;
    for (int64_t i = 0; i < M; i++) {
      if (!unknown[i]) continue;
      b[i] -= pk[i] * a[k] / R[k];
      for (int64_t j = 0; j < M; j++)
        if (unknown[j]) A[i * M + j] -= pk[i] * pk[j] / R[k];
    }
  }
  SK(psd_solve)(A, b, M, 1e-12);
  const double *beta = b;
  for (int64_t k = 0; k < K; k++) {
    const double *pk = P + k * M;
    double alpha = a[k];
    for (int64_t m = 0; m < M; m++) alpha -= pk[m] * beta[m];
    alpha /= R[k];
    for (int64_t m = 0; m < M; m++) go[k * M + m] -= pk[m] * (alpha + beta[m]);
  }
}

/* Backward through the first column step, recomputed from the input x0
 * with the forward's code: go -= softmax_k(x0) * (column sum of go) on the
 * columns it capped. tw: scratch of K*M + 3M elements of SK_T. */
static void SK(first_col_step_backward)(const SK_T *x0, double *go, int64_t K, int64_t M,
                                        const sk_params *p, SK_T *tw) {
  SK_T *e = tw, *c = e + K * M, *sum = c + M, *shift = sum + M;
  SK(col_lse)(x0, K, M, c, e, sum);
  SK(col_shifts)(c, M, (SK_T)p->log_cap, p->balanced, shift);
  for (int64_t m = 0; m < M; m++) {
    if (!(shift[m] > 0) && !p->balanced) continue;
    double h = 0;
    for (int64_t k = 0; k < K; k++) h += go[k * M + m];
    h /= (double)sum[m];
    for (int64_t k = 0; k < K; k++) go[k * M + m] -= (double)e[k * M + m] * h;
  }
}

static void SK(implicit_backward)(sg_graph *g, const sk_state *st, const SK_T *x0, const SK_T *y,
                                  const SK_T *gy, SK_T *gx) {
  int64_t S = st->samples, K = st->rows, M = st->cols, KM = K * M;
  /* go (K*M doubles), then fixed_point_backward's and
   * first_col_step_backward's scratch. */
  size_t doubles = (size_t)(2 * KM + 2 * K + 2 * M + M * M) * sizeof(double) + (size_t)M;
  doubles = (doubles + 63) / 64 * 64;
  size_t per = doubles + (size_t)(KM + 4 * M) * sizeof(SK_T);
  char *scratch = thread_scratch(g, &per);
  if (!scratch) return; /* out of memory: reported, the graph failed */
  SG_PARALLEL_IF(
      par_worth(S * KM * (M + 4)), for (int64_t s = 0; s < S; s++) {
        char *ws = scratch + per * (size_t)omp_get_thread_num();
        double *go = (double *)ws, *w = go + KM;
        SK_T *tw = (SK_T *)(ws + doubles);
        for (int64_t i = 0; i < KM; i++) go[i] = (double)gy[s * KM + i];
        SK(fixed_point_backward)(y + s * KM, go, K, M, st->active + s * M, st->all_tight, w);
        SK(first_col_step_backward)(x0 + s * KM, go, K, M, &st->p, tw);
        for (int64_t i = 0; i < KM; i++) gx[s * KM + i] += (SK_T)go[i];
      });
}
