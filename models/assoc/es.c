/* ES: the exact optimum of problem (P) by depth-first branch and bound.
 *
 * UEs are assigned one at a time (strongest first), each to a BS with room
 * or, when K > M*N and drops remain, to nobody. Every link gain is >= 0, so
 * assigning more UEs can only add interference; hence at any node
 *   assigned UE k:    rate_k <= log2(1 + SNR_{a_k,k} / (1 + I_k))
 *   unassigned UE k:  rate_k <= log2(1 + max_{m with room} SNR_mk / (1 + I_k))
 * with I_k the interference from the UEs assigned so far, and the sum of these
 * is a valid upper bound on every completion. A subtree is cut only when its
 * bound is <= the best complete association found, so the result is the
 * optimum (a tie keeps the first found). The incumbent starts at LocalSearch
 * from Assign. */
#include "solver_work.h"

#include <math.h>
#include <string.h>

#include "models_internal.h"

enum { UNASSIGNED = -2, DROPPED = -1, TERMS_PER_LOG = 16 };

typedef struct es_search {
  const assoc_problem *p;
  assoc_work *w;
  int drops_left;
  double best;
  assoc_es_stats stats;
} es_search;

/* Largest SNR of UE k over the BSs with room (0 when none has room). */
static double best_open_snr(const es_search *e, int k) {
  const assoc_problem *p = e->p;
  const int *bs = e->w->es_bs_order + k * p->M;
  for (int i = 0; i < p->M; i++)
    if (e->w->load[bs[i]] < p->N) return assoc_link_snr(p, k, bs[i]);
  return 0.0;
}

/* Upper bound on the sum-rate of every completion of the node at `depth`;
 * the exact sum-rate at a leaf. Products of up to 16 factors (1 + SINR) per
 * logarithm keep it cheap without overflow. */
static double bound(const es_search *e, int depth) {
  const assoc_problem *p = e->p;
  const int *assoc = e->w->es_assoc;
  const double *interference = e->w->es_interf + (size_t)depth * p->K;
  double total = 0.0, product = 1.0;
  int terms = 0;
  for (int k = 0; k < p->K; k++) {
    if (assoc[k] == DROPPED) continue;
    double snr = assoc[k] >= 0 ? assoc_link_snr(p, k, assoc[k]) : best_open_snr(e, k);
    product *= 1.0 + snr / (1.0 + interference[k]);
    if (++terms == TERMS_PER_LOG) total += log2(product), product = 1.0, terms = 0;
  }
  return total + log2(product);
}

static void visit(es_search *e, int depth);

/* Assigns UE j (the one at `depth`) to m (or drops it, m < 0) and recurses. */
static void branch(es_search *e, int depth, int j, int m) {
  const assoc_problem *p = e->p;
  assoc_work *w = e->w;
  int K = p->K;
  const double *now = w->es_interf + (size_t)depth * K;
  double *next = w->es_interf + (size_t)(depth + 1) * K;
  if (m >= 0) {
    const double *from_j = p->gain + (size_t)m * K * K + j; /* [(m*K + k)*K + j] */
    for (int k = 0; k < K; k++) next[k] = now[k] + (k != j ? from_j[(size_t)k * K] : 0.0);
    w->load[m]++;
  } else {
    memcpy(next, now, (size_t)K * sizeof *next);
    e->drops_left--;
  }
  w->es_assoc[j] = m >= 0 ? m : DROPPED;
  visit(e, depth + 1);
  w->es_assoc[j] = UNASSIGNED;
  if (m >= 0)
    w->load[m]--;
  else
    e->drops_left++;
}

static void visit(es_search *e, int depth) {
  const assoc_problem *p = e->p;
  assoc_work *w = e->w;
  e->stats.nodes++;
  double ub = bound(e, depth);
  if (depth == p->K) {
    e->stats.leaves++;
    if (ub > e->best) {
      e->best = ub;
      memcpy(w->es_best, w->es_assoc, (size_t)p->K * sizeof *w->es_best);
    }
    return;
  }
  if (ub <= e->best) return;
  int j = w->es_order[depth];
  for (int i = 0; i < p->M; i++) {
    int m = w->es_bs_order[j * p->M + i];
    if (w->load[m] < p->N) branch(e, depth, j, m);
  }
  if (e->drops_left > 0) branch(e, depth, j, -1);
}

/* UEs by decreasing best SNR; each UE's BSs by decreasing SNR. */
static void order_search(const assoc_problem *p, assoc_work *w) {
  int M = p->M, K = p->K;
  for (int k = 0; k < K; k++) {
    for (int m = 0; m < M; m++) w->keys[m] = (assoc_keyed){assoc_link_snr(p, k, m), m};
    assoc_sort_keyed_desc(w->keys, M);
    for (int m = 0; m < M; m++) w->es_bs_order[k * M + m] = w->keys[m].index;
  }
  for (int k = 0; k < K; k++)
    w->keys[k] = (assoc_keyed){assoc_link_snr(p, k, w->es_bs_order[k * M]), k};
  assoc_sort_keyed_desc(w->keys, K);
  for (int k = 0; k < K; k++) w->es_order[k] = w->keys[k].index;
}

double assoc_es(const assoc_problem *p, assoc_work *w, int *assoc, assoc_es_stats *stats) {
  int K = p->K;
  es_search e = {.p = p, .w = w, .drops_left = K - assoc_served_count(p)};
  assoc_assign(p, w, w->es_best);
  memcpy(w->es_assoc, w->es_best, (size_t)K * sizeof *assoc);
  assoc_local_search(p, w->es_assoc, w, w->es_best);
  e.best = assoc_rate_int(p->gain, p->M, K, w->es_best, NULL);
  order_search(p, w);
  for (int k = 0; k < K; k++) w->es_assoc[k] = UNASSIGNED, w->es_interf[k] = 0.0;
  for (int m = 0; m < p->M; m++) w->load[m] = 0;
  visit(&e, 0);
  memcpy(assoc, w->es_best, (size_t)K * sizeof *assoc);
  if (stats) *stats = e.stats;
  return assoc_rate_int(p->gain, p->M, K, assoc, NULL);
}

/* ---- plain enumeration (reference for the tests) -------------------------------------- */

/* Advances the base-(M+1) counter choice[] (digit M = dropped); 0 at the end. */
static int next_choice(int *choice, int K, int M) {
  for (int k = 0; k < K; k++) {
    if (++choice[k] <= M) return 1;
    choice[k] = 0;
  }
  return 0;
}

double assoc_es_bruteforce(const assoc_problem *p, int *assoc) {
  int M = p->M, K = p->K, target = assoc_served_count(p);
  int *choice = assoc_zalloc((size_t)K, sizeof *choice), *a = assoc_zalloc((size_t)K, sizeof *a);
  int *load = assoc_zalloc((size_t)M, sizeof *load);
  double best = -INFINITY;
  if (!choice || !a || !load) {
    sg_mfree(choice), sg_mfree(a), sg_mfree(load);
    return NAN;
  }
  do {
    int served = 0;
    for (int k = 0; k < K; k++) a[k] = choice[k] < M ? choice[k] : -1, served += choice[k] < M;
    if (served != target || assoc_loads(M, K, a, load) > p->N) continue;
    double r = assoc_rate_int(p->gain, M, K, a, NULL);
    if (r > best) best = r, memcpy(assoc, a, (size_t)K * sizeof *a);
  } while (next_choice(choice, K, M));
  sg_mfree(choice), sg_mfree(a), sg_mfree(load);
  return best;
}
