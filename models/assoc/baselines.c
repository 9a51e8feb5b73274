/* Association baselines of docs/system.md other than ES: MaxSINR (capped and
 * uncapped), RandInt, DA, Assign (Hungarian) and LocalSearch. Every solver
 * except MaxSINR keeps each load <= N and serves min(K, M*N) UEs. */
#include "solver_work.h"

#include <math.h>
#include <string.h>

static void fill_link_rates(const assoc_problem *p, assoc_work *w) {
  for (int k = 0; k < p->K; k++)
    for (int m = 0; m < p->M; m++) w->rates[k * p->M + m] = log2(1.0 + assoc_link_snr(p, k, m));
}

static double rate_of(const assoc_problem *p, const int *assoc) {
  return assoc_rate_int(p->gain, p->M, p->K, assoc, NULL);
}

/* ---- MaxSINR ---------------------------------------------------------------------- */

double assoc_maxsinr(const assoc_problem *p, int *assoc) {
  for (int k = 0; k < p->K; k++) {
    int best = 0;
    for (int m = 1; m < p->M; m++)
      if (assoc_link_snr(p, k, m) > assoc_link_snr(p, k, best)) best = m;
    assoc[k] = best;
  }
  return rate_of(p, assoc);
}

double assoc_maxsinr_capped(const assoc_problem *p, assoc_work *w, int *assoc) {
  int M = p->M, K = p->K;
  for (int i = 0; i < K * M; i++) w->keys[i] = (assoc_keyed){assoc_link_snr(p, i / M, i % M), i};
  assoc_sort_keyed_desc(w->keys, K * M);
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
static long double completions(const int *caps, int bins, int r, assoc_work *w) {
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

double assoc_randint(const assoc_problem *p, sg_rng *rng, assoc_work *w, int *assoc) {
  int M = p->M, K = p->K, bins = M + (K > assoc_served_count(p));
  for (int m = 0; m < M; m++) w->caps[m] = p->N;
  w->caps[M] = K - assoc_served_count(p);
  long double weight[ASSOC_MAX_BS + 1];
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

double assoc_feasible_count(int M, int N, int K) {
  assoc_work *w = assoc_work_new(M, N, K);
  if (!w) return INFINITY;
  assoc_problem p = {M, N, K, NULL};
  for (int m = 0; m < M; m++) w->caps[m] = N;
  w->caps[M] = K - assoc_served_count(&p);
  long double e = completions(w->caps, M + (w->caps[M] > 0), K, w);
  assoc_work_free(w);
  return (double)expl(logl(e) + lgammal(K + 1.0L));
}

/* ---- DA: dual decomposition on the load constraint ---------------------------------- */

/* Moves UEs off overloaded BSs, each time the (UE, BS with room) move that
 * loses the least link rate; drops the weakest UE when no BS has room. */
static void repair(const assoc_problem *p, assoc_work *w, int *assoc) {
  int M = p->M, K = p->K;
  for (;;) {
    assoc_loads(M, K, assoc, w->load);
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

static double utility(const assoc_problem *p, const assoc_work *w, const int *assoc) {
  double u = 0.0;
  for (int k = 0; k < p->K; k++)
    if (assoc[k] >= 0) u += w->rates[k * p->M + assoc[k]];
  return u;
}

double assoc_da(const assoc_problem *p, int iters, double step0, assoc_work *w, int *assoc) {
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
    assoc_loads(M, K, w->da_cur, w->load);
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

/* ---- Assign: Hungarian on N replicas of each BS (models/assoc/assign.c) ------------- */

double assoc_assign(const assoc_problem *p, assoc_work *w, int *assoc) {
  fill_link_rates(p, w);
  assoc_assign_max_weight(w->rates, p->M, p->N, p->K, w->assign, assoc);
  return rate_of(p, assoc);
}

/* ---- LocalSearch -------------------------------------------------------------------- */

/* Best strictly improving neighbour of w->ls_cur (rate *rate) into w->ls_cur:
 * moves of one UE to a BS with room, swaps of two UEs on different BSs (a
 * dropped UE counts as on BS -1). Returns 0 when none improves. */
static int improve_once(const assoc_problem *p, assoc_work *w, double *rate) {
  int M = p->M, K = p->K, *cur = w->ls_cur, *t = w->ls_try;
  int best_k = -1, best_l = -1, best_m = -1;
  double best = *rate;
  assoc_loads(M, K, cur, w->load);
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

double assoc_local_search(const assoc_problem *p, const int *start, assoc_work *w, int *assoc) {
  memcpy(w->ls_cur, start, (size_t)p->K * sizeof *start);
  double rate = rate_of(p, w->ls_cur);
  while (improve_once(p, w, &rate)) {
  }
  memcpy(assoc, w->ls_cur, (size_t)p->K * sizeof *assoc);
  return rate;
}

static int feasible(const assoc_problem *p, const int *assoc, assoc_work *w) {
  int served = 0;
  for (int k = 0; k < p->K; k++) served += assoc[k] >= 0;
  return served == assoc_served_count(p) && assoc_loads(p->M, p->K, assoc, w->load) <= p->N;
}

double assoc_local_search_baseline(const assoc_problem *p, const assoc_baseline_opts *o,
                                   uint64_t index, assoc_work *w, int *assoc) {
  int K = p->K, best = -1, n = 0;
  double best_rate = -INFINITY, rates[5];
  int *s = w->starts;
  sg_rng rng;
  sg_rng_seed(&rng, assoc_stream_seed(o->seed, 1, index));
  rates[n] = assoc_maxsinr(p, s + n * K);
  n += feasible(p, s + n * K, w);
  rates[n] = assoc_maxsinr_capped(p, w, s + n * K), n++;
  rates[n] = assoc_randint(p, &rng, w, s + n * K), n++;
  rates[n] = assoc_da(p, o->da_iters, o->da_step0, w, s + n * K), n++;
  rates[n] = assoc_assign(p, w, s + n * K), n++;
  for (int i = 0; i < n; i++)
    if (rates[i] > best_rate) best_rate = rates[i], best = i;
  return assoc_local_search(p, s + best * K, w, assoc);
}
