/* Max-weight assignment of UEs to N replicas of each BS: the Hungarian
 * method on a square cost matrix. */
#include "assoc_solvers.h"

#include <math.h>

/* One Hungarian solver on any weights: Assign runs it on link rates, the
 * no-violation rounding of a model's output (models/eval/eval.c) on log A~. */
struct assoc_assign_work {
  int M, N, K, n; /* n = max(K, M*N) */
  double *cost;   /* n x n */
  double *weight; /* K x M scratch for callers (assoc_assign_work_weights) */
  double *u, *v, *minv;
  int *match, *way;
  unsigned char *used;
};

assoc_assign_work *assoc_assign_work_new(int M, int N, int K) {
  if (M < 1 || N < 1 || K < 1 || M > ASSOC_MAX_BS || N > ASSOC_MAX_ANTENNAS || K > ASSOC_MAX_UES)
    return NULL;
  assoc_assign_work *w = sg_malloc(sizeof *w);
  if (!w) return NULL;
  size_t n = (size_t)M * N > (size_t)K ? (size_t)M * N : (size_t)K;
  *w = (assoc_assign_work){.M = M, .N = N, .K = K, .n = (int)n};
  w->cost = sg_malloc(n * n * sizeof *w->cost);
  w->weight = sg_malloc((size_t)K * M * sizeof *w->weight);
  w->u = sg_malloc((n + 1) * sizeof *w->u);
  w->v = sg_malloc((n + 1) * sizeof *w->v);
  w->minv = sg_malloc((n + 1) * sizeof *w->minv);
  w->match = sg_malloc((n + 1) * sizeof *w->match);
  w->way = sg_malloc((n + 1) * sizeof *w->way);
  w->used = sg_malloc(n + 1);
  if (!w->cost || !w->weight || !w->u || !w->v || !w->minv || !w->match || !w->way || !w->used) {
    assoc_assign_work_free(w);
    return NULL;
  }
  return w;
}

double *assoc_assign_work_weights(assoc_assign_work *w) {
  return w->weight;
}

void assoc_assign_work_free(assoc_assign_work *w) {
  if (!w) return;
  void *blocks[] = {w->cost, w->weight, w->u, w->v, w->minv, w->match, w->way, w->used, w};
  for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) sg_mfree(blocks[i]);
}

/* One augmenting-path search of the Hungarian method with potentials u
 * (rows) and v (columns), all 1-based with column 0 the virtual start: adds
 * row `row` to the matching by the cheapest reduced-cost path. */
static void augment_row(assoc_assign_work *w, int row) {
  int n = w->n, *match = w->match, *way = w->way;
  double *u = w->u, *v = w->v, *minv = w->minv;
  match[0] = row;
  int col = 0;
  for (int j = 0; j <= n; j++) minv[j] = INFINITY, w->used[j] = 0;
  do {
    w->used[col] = 1;
    int r = match[col], next = 0;
    double delta = INFINITY;
    for (int j = 1; j <= n; j++) {
      if (w->used[j]) continue;
      double reduced = w->cost[(size_t)(r - 1) * n + (j - 1)] - u[r] - v[j];
      if (reduced < minv[j]) minv[j] = reduced, way[j] = col;
      if (minv[j] < delta) delta = minv[j], next = j;
    }
    for (int j = 0; j <= n; j++) {
      if (w->used[j])
        u[match[j]] += delta, v[j] -= delta;
      else
        minv[j] -= delta;
    }
    col = next;
  } while (match[col] != 0);
  do { /* flip the alternating path back to the start */
    int prev = way[col];
    match[col] = match[prev];
    col = prev;
  } while (col != 0);
}

double assoc_assign_max_weight(const double *weight, int M, int N, int K, assoc_assign_work *w,
                               int *assoc) {
  int n = w->n, slots = M * N;
  /* Rows: UEs (then padding); columns: N replicas of each BS (then padding,
   * where a UE left over when K > M*N is dropped). */
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++)
      w->cost[(size_t)i * n + j] = (i < K && j < slots) ? -weight[i * M + j / N] : 0.0;
  for (int j = 0; j <= n; j++) w->u[j] = w->v[j] = 0.0, w->match[j] = 0, w->way[j] = 0;
  for (int row = 1; row <= n; row++) augment_row(w, row);
  double total = 0.0;
  for (int k = 0; k < K; k++) assoc[k] = -1;
  for (int j = 1; j <= slots; j++) {
    int row = w->match[j] - 1;
    if (row < K) assoc[row] = (j - 1) / N, total += weight[row * M + (j - 1) / N];
  }
  return total;
}
