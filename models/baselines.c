/* Association baselines of docs/system.md other than ES: MaxSINR (capped and
 * uncapped), RandInt, DA, Assign (Hungarian) and LocalSearch. Every solver
 * except MaxSINR keeps each load <= N and serves min(K, M*N) UEs. */
#include "assoc_work.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- names ---------------------------------------------------------------------- */

static const char *const method_names[SG_METHOD_COUNT] = {
    "ES", "MaxSINR", "MaxSINR-capped", "RandInt", "DA", "Assign", "LocalSearch"};
static const char *const method_keys[SG_METHOD_COUNT] = {
    "ES", "MaxSINR", "MaxSINR_capped", "RandInt", "DA", "Assign", "LocalSearch"};

const char *sg_method_name(sg_method m) {
  return (unsigned)m < SG_METHOD_COUNT ? method_names[m] : "?";
}
const char *sg_method_key(sg_method m) {
  return (unsigned)m < SG_METHOD_COUNT ? method_keys[m] : "?";
}

int sg_method_parse(const char *name) {
  for (int m = 0; m < SG_METHOD_COUNT; m++)
    if (!strcasecmp(name, method_names[m]) || !strcasecmp(name, method_keys[m])) return m;
  return -1;
}

sg_baseline_opts sg_baseline_defaults(void) {
  sg_baseline_opts o = {.seed = 1, .da_iters = 100, .da_step0 = 1.0, .es_max_leaves = 1e9};
  return o;
}

int sg_served_count(const sg_problem *p) {
  long capacity = (long)p->M * p->N;
  return capacity < p->K ? (int)capacity : p->K;
}

/* ---- scratch ---------------------------------------------------------------------- */

static void *alloc_n(size_t count, size_t size, int *failed) {
  void *ptr = calloc(count ? count : 1, size);
  if (!ptr) *failed = 1;
  return ptr;
}

sg_work *sg_work_new(int M, int N, int K) {
  if (M < 1 || N < 1 || K < 1 || M > SG_MAX_BS || N > SG_MAX_ANTENNAS || K > SG_MAX_UES)
    return NULL;
  sg_work *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  int failed = 0;
  size_t KM = (size_t)K * M;
  w->M = M, w->N = N, w->K = K;
  w->rates = alloc_n(KM, sizeof(double), &failed);
  w->keys = alloc_n(KM, sizeof(sg_keyed), &failed);
  w->assign = sg_assign_work_new(M, N, K);
  failed |= w->assign == NULL;
  w->mu = alloc_n(M, sizeof(double), &failed);
  w->load = alloc_n(M + 1, sizeof(int), &failed);
  w->caps = alloc_n(M + 1, sizeof(int), &failed);
  w->egf = alloc_n(K + 1, sizeof(long double), &failed);
  w->egf_tmp = alloc_n(K + 1, sizeof(long double), &failed);
  w->da_cur = alloc_n(K, sizeof(int), &failed);
  w->da_best = alloc_n(K, sizeof(int), &failed);
  w->ls_cur = alloc_n(K, sizeof(int), &failed);
  w->ls_try = alloc_n(K, sizeof(int), &failed);
  w->starts = alloc_n(5 * (size_t)K, sizeof(int), &failed);
  w->es_order = alloc_n(K, sizeof(int), &failed);
  w->es_bs_order = alloc_n(KM, sizeof(int), &failed);
  w->es_assoc = alloc_n(K, sizeof(int), &failed);
  w->es_best = alloc_n(K, sizeof(int), &failed);
  w->es_interf = alloc_n((size_t)(K + 1) * K, sizeof(double), &failed);
  if (failed) {
    sg_work_free(w);
    return NULL;
  }
  return w;
}

void sg_work_free(sg_work *w) {
  if (!w) return;
  sg_assign_work_free(w->assign);
  void *blocks[] = {w->rates,    w->keys,        w->mu,       w->load,    w->caps,     w->egf,
                    w->egf_tmp,  w->da_cur,      w->da_best,  w->ls_cur,  w->ls_try,   w->starts,
                    w->es_order, w->es_bs_order, w->es_assoc, w->es_best, w->es_interf};
  for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) free(blocks[i]);
  free(w);
}

static int cmp_keyed_desc(const void *a, const void *b) {
  const sg_keyed *x = a, *y = b;
  if (x->key != y->key) return x->key > y->key ? -1 : 1;
  return (x->index > y->index) - (x->index < y->index);
}

void sg_sort_keyed_desc(sg_keyed *items, int n) {
  qsort(items, n, sizeof *items, cmp_keyed_desc);
}

static void fill_link_rates(const sg_problem *p, sg_work *w) {
  for (int k = 0; k < p->K; k++)
    for (int m = 0; m < p->M; m++) w->rates[k * p->M + m] = log2(1.0 + sg_link_snr(p, k, m));
}

static double rate_of(const sg_problem *p, const int *assoc) {
  return sg_rate_int(p->gain, p->M, p->K, assoc, NULL);
}

/* ---- MaxSINR ---------------------------------------------------------------------- */

double sg_maxsinr(const sg_problem *p, int *assoc) {
  for (int k = 0; k < p->K; k++) {
    int best = 0;
    for (int m = 1; m < p->M; m++)
      if (sg_link_snr(p, k, m) > sg_link_snr(p, k, best)) best = m;
    assoc[k] = best;
  }
  return rate_of(p, assoc);
}

double sg_maxsinr_capped(const sg_problem *p, sg_work *w, int *assoc) {
  int M = p->M, K = p->K;
  for (int i = 0; i < K * M; i++) w->keys[i] = (sg_keyed){sg_link_snr(p, i / M, i % M), i};
  sg_sort_keyed_desc(w->keys, K * M);
  for (int m = 0; m < M; m++) w->load[m] = 0;
  for (int k = 0; k < K; k++) assoc[k] = -1;
  for (int i = 0; i < K * M; i++) {
    int k = w->keys[i].index / M, m = w->keys[i].index % M;
    if (assoc[k] < 0 && w->load[m] < p->N) assoc[k] = m, w->load[m]++;
  }
  return rate_of(p, assoc);
}

/* ---- RandInt: uniform over the feasible associations ----------------------------------- */

/* Bins: the M BSs with capacities caps[0..M-1] and, when K > M*N, a drop bin
 * caps[M]. Returns [x^r] of prod_b sum_{j <= caps[b]} x^j / j!, which is the
 * number of ways to place r labelled UEs divided by r!. */
static long double completions(const int *caps, int bins, int r, sg_work *w) {
  long double *e = w->egf, *t = w->egf_tmp;
  for (int i = 0; i <= r; i++) e[i] = i == 0;
  for (int b = 0; b < bins; b++) {
    for (int i = 0; i <= r; i++) {
      long double sum = 0, inv_fact = 1;
      for (int j = 0; j <= caps[b] && j <= i; j++) {
        sum += e[i - j] * inv_fact;
        inv_fact /= j + 1;
      }
      t[i] = sum;
    }
    memcpy(e, t, (size_t)(r + 1) * sizeof *e);
  }
  return e[r];
}

double sg_randint(const sg_problem *p, sg_rng *rng, sg_work *w, int *assoc) {
  int M = p->M, K = p->K, bins = M + (K > sg_served_count(p));
  for (int m = 0; m < M; m++) w->caps[m] = p->N;
  w->caps[M] = K - sg_served_count(p);
  long double weight[SG_MAX_BS + 1];
  for (int k = 0; k < K; k++) {
    long double total = 0;
    for (int b = 0; b < bins; b++) {
      weight[b] = 0;
      if (w->caps[b] == 0) continue;
      w->caps[b]--;
      weight[b] = completions(w->caps, bins, K - k - 1, w);
      w->caps[b]++;
      total += weight[b];
    }
    long double u = (long double)sg_rng_uniform(rng) * total;
    int pick = -1;
    for (int b = 0; b < bins; b++) {
      if (weight[b] == 0) continue;
      pick = b; /* the last possible bin absorbs rounding */
      if (u < weight[b]) break;
      u -= weight[b];
    }
    w->caps[pick]--;
    assoc[k] = pick < M ? pick : -1;
  }
  return rate_of(p, assoc);
}

double sg_feasible_count(int M, int N, int K) {
  sg_work *w = sg_work_new(M, N, K);
  if (!w) return INFINITY;
  sg_problem p = {M, N, K, NULL};
  for (int m = 0; m < M; m++) w->caps[m] = N;
  w->caps[M] = K - sg_served_count(&p);
  long double e = completions(w->caps, M + (w->caps[M] > 0), K, w);
  sg_work_free(w);
  return (double)expl(logl(e) + lgammal(K + 1.0L));
}

/* ---- DA: dual decomposition on the load constraint ---------------------------------- */

/* Moves UEs off overloaded BSs, each time the (UE, BS with room) move that
 * loses the least link rate; drops the weakest UE when no BS has room. */
static void repair(const sg_problem *p, sg_work *w, int *assoc) {
  int M = p->M, K = p->K;
  for (;;) {
    sg_loads(M, K, assoc, w->load);
    int over = -1;
    for (int m = 0; m < M && over < 0; m++)
      if (w->load[m] > p->N) over = m;
    if (over < 0) return;
    int best_k = -1, best_m = -1;
    double best_loss = INFINITY;
    for (int k = 0; k < K; k++) {
      if (assoc[k] != over) continue;
      for (int m = 0; m < M; m++) {
        double loss = w->rates[k * M + over] - w->rates[k * M + m];
        if (w->load[m] < p->N && loss < best_loss) best_loss = loss, best_k = k, best_m = m;
      }
    }
    if (best_k >= 0) {
      assoc[best_k] = best_m;
      continue;
    }
    double weakest = INFINITY;
    for (int k = 0; k < K; k++)
      if (assoc[k] == over && w->rates[k * M + over] < weakest)
        weakest = w->rates[k * M + over], best_k = k;
    assoc[best_k] = -1;
  }
}

static double utility(const sg_problem *p, const sg_work *w, const int *assoc) {
  double u = 0.0;
  for (int k = 0; k < p->K; k++)
    if (assoc[k] >= 0) u += w->rates[k * p->M + assoc[k]];
  return u;
}

double sg_da(const sg_problem *p, int iters, double step0, sg_work *w, int *assoc) {
  int M = p->M, K = p->K;
  fill_link_rates(p, w);
  for (int m = 0; m < M; m++) w->mu[m] = 0.0;
  double best_utility = -INFINITY;
  for (int t = 1; t <= (iters > 0 ? iters : 1); t++) {
    for (int k = 0; k < K; k++) {
      int best = 0;
      for (int m = 1; m < M; m++)
        if (w->rates[k * M + m] - w->mu[m] > w->rates[k * M + best] - w->mu[best]) best = m;
      w->da_cur[k] = best;
    }
    sg_loads(M, K, w->da_cur, w->load);
    for (int m = 0; m < M; m++)
      w->mu[m] = fmax(0.0, w->mu[m] + step0 / sqrt((double)t) * (w->load[m] - p->N));
    repair(p, w, w->da_cur);
    double u = utility(p, w, w->da_cur);
    if (u > best_utility) {
      best_utility = u;
      memcpy(w->da_best, w->da_cur, (size_t)K * sizeof *assoc);
    }
  }
  memcpy(assoc, w->da_best, (size_t)K * sizeof *assoc);
  return rate_of(p, assoc);
}

/* ---- Assign: Hungarian on N replicas of each BS ------------------------------------- */

/* ---- max-weight assignment -------------------------------------------------------------- */

/* One Hungarian solver on any weights: Assign runs it on link rates, the
 * no-violation rounding of a model's output (models/eval.c) on log A~. */
struct sg_assign_work {
  int M, N, K, n; /* n = max(K, M*N) */
  double *cost;   /* n x n */
  double *weight; /* K x M scratch for callers (sg_assign_work_weights) */
  double *u, *v, *minv;
  int *match, *way;
  unsigned char *used;
};

sg_assign_work *sg_assign_work_new(int M, int N, int K) {
  if (M < 1 || N < 1 || K < 1 || M > SG_MAX_BS || N > SG_MAX_ANTENNAS || K > SG_MAX_UES)
    return NULL;
  sg_assign_work *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  size_t n = (size_t)M * N > (size_t)K ? (size_t)M * N : (size_t)K;
  *w = (sg_assign_work){.M = M, .N = N, .K = K, .n = (int)n};
  w->cost = malloc(n * n * sizeof *w->cost);
  w->weight = malloc((size_t)K * M * sizeof *w->weight);
  w->u = malloc((n + 1) * sizeof *w->u);
  w->v = malloc((n + 1) * sizeof *w->v);
  w->minv = malloc((n + 1) * sizeof *w->minv);
  w->match = malloc((n + 1) * sizeof *w->match);
  w->way = malloc((n + 1) * sizeof *w->way);
  w->used = malloc(n + 1);
  if (!w->cost || !w->weight || !w->u || !w->v || !w->minv || !w->match || !w->way || !w->used) {
    sg_assign_work_free(w);
    return NULL;
  }
  return w;
}

double *sg_assign_work_weights(sg_assign_work *w) {
  return w->weight;
}

void sg_assign_work_free(sg_assign_work *w) {
  if (!w) return;
  free(w->cost), free(w->weight), free(w->u), free(w->v), free(w->minv), free(w->match),
      free(w->way);
  free(w->used);
  free(w);
}

/* One augmenting-path search of the Hungarian method with potentials u
 * (rows) and v (columns), all 1-based with column 0 the virtual start: adds
 * row `row` to the matching by the cheapest reduced-cost path. */
static void augment_row(sg_assign_work *w, int row) {
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

double sg_assign_max_weight(const double *weight, int M, int N, int K, sg_assign_work *w,
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

double sg_assign(const sg_problem *p, sg_work *w, int *assoc) {
  fill_link_rates(p, w);
  sg_assign_max_weight(w->rates, p->M, p->N, p->K, w->assign, assoc);
  return rate_of(p, assoc);
}

/* ---- LocalSearch -------------------------------------------------------------------- */

/* Best strictly improving neighbour of w->ls_cur (rate *rate) into w->ls_cur:
 * moves of one UE to a BS with room, swaps of two UEs on different BSs (a
 * dropped UE counts as on BS -1). Returns 0 when none improves. */
static int improve_once(const sg_problem *p, sg_work *w, double *rate) {
  int M = p->M, K = p->K, *cur = w->ls_cur, *t = w->ls_try;
  int best_k = -1, best_l = -1, best_m = -1;
  double best = *rate;
  sg_loads(M, K, cur, w->load);
  memcpy(t, cur, (size_t)K * sizeof *t);
  for (int k = 0; k < K; k++) {
    if (cur[k] < 0) continue;
    for (int m = 0; m < M; m++) {
      if (m == cur[k] || w->load[m] >= p->N) continue;
      t[k] = m;
      double r = rate_of(p, t);
      if (r > best) best = r, best_k = k, best_l = -1, best_m = m;
    }
    t[k] = cur[k];
  }
  for (int k = 0; k < K; k++)
    for (int l = k + 1; l < K; l++) {
      if (cur[k] == cur[l]) continue;
      t[k] = cur[l], t[l] = cur[k];
      double r = rate_of(p, t);
      if (r > best) best = r, best_k = k, best_l = l, best_m = -1;
      t[k] = cur[k], t[l] = cur[l];
    }
  if (best_k < 0) return 0;
  if (best_l < 0)
    cur[best_k] = best_m;
  else {
    int a = cur[best_k];
    cur[best_k] = cur[best_l], cur[best_l] = a;
  }
  *rate = best;
  return 1;
}

double sg_local_search(const sg_problem *p, const int *start, sg_work *w, int *assoc) {
  memcpy(w->ls_cur, start, (size_t)p->K * sizeof *start);
  double rate = rate_of(p, w->ls_cur);
  while (improve_once(p, w, &rate)) {
  }
  memcpy(assoc, w->ls_cur, (size_t)p->K * sizeof *assoc);
  return rate;
}

static int feasible(const sg_problem *p, const int *assoc, sg_work *w) {
  int served = 0;
  for (int k = 0; k < p->K; k++) served += assoc[k] >= 0;
  return served == sg_served_count(p) && sg_loads(p->M, p->K, assoc, w->load) <= p->N;
}

double sg_local_search_baseline(const sg_problem *p, const sg_baseline_opts *o, uint64_t index,
                                sg_work *w, int *assoc) {
  int K = p->K, best = -1, n = 0;
  double best_rate = -INFINITY, rates[5];
  int *s = w->starts;
  sg_rng rng;
  sg_rng_seed(&rng, sg_stream_seed(o->seed, 1, index));
  rates[n] = sg_maxsinr(p, s + n * K);
  n += feasible(p, s + n * K, w);
  rates[n] = sg_maxsinr_capped(p, w, s + n * K), n++;
  rates[n] = sg_randint(p, &rng, w, s + n * K), n++;
  rates[n] = sg_da(p, o->da_iters, o->da_step0, w, s + n * K), n++;
  rates[n] = sg_assign(p, w, s + n * K), n++;
  for (int i = 0; i < n; i++)
    if (rates[i] > best_rate) best_rate = rates[i], best = i;
  return sg_local_search(p, s + best * K, w, assoc);
}

/* ---- dispatch ------------------------------------------------------------------------ */

double sg_solve(sg_method m, const sg_problem *p, const sg_baseline_opts *o, uint64_t index,
                sg_work *w, int *assoc) {
  sg_rng rng;
  switch (m) {
  case SG_ES:
    return sg_es(p, w, assoc, NULL);
  case SG_MAXSINR:
    return sg_maxsinr(p, assoc);
  case SG_MAXSINR_CAPPED:
    return sg_maxsinr_capped(p, w, assoc);
  case SG_RANDINT:
    sg_rng_seed(&rng, sg_stream_seed(o->seed, 1, index));
    return sg_randint(p, &rng, w, assoc);
  case SG_DA:
    return sg_da(p, o->da_iters, o->da_step0, w, assoc);
  case SG_ASSIGN:
    return sg_assign(p, w, assoc);
  case SG_LOCALSEARCH:
    return sg_local_search_baseline(p, o, index, w, assoc);
  default:
    return NAN;
  }
}
