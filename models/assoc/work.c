/* The solvers' scratch space and the helpers every solver shares. */
#include "solver_work.h"

#include <stdlib.h>

#include "models_internal.h"

int assoc_served_count(const assoc_problem *p) {
  long capacity = (long)p->M * p->N;
  return capacity < p->K ? (int)capacity : p->K;
}

/* ---- scratch ---------------------------------------------------------------------- */

static void *alloc_n(size_t count, size_t size, int *failed) {
  void *ptr = assoc_zalloc(count, size);
  if (!ptr) *failed = 1;
  return ptr;
}

assoc_work *assoc_work_new(int M, int N, int K) {
  if (M < 1 || N < 1 || K < 1 || M > ASSOC_MAX_BS || N > ASSOC_MAX_ANTENNAS || K > ASSOC_MAX_UES)
    return NULL;
  assoc_work *w = assoc_zalloc(1, sizeof *w);
  if (!w) return NULL;
  int failed = 0;
  size_t KM = (size_t)K * M;
  w->M = M, w->N = N, w->K = K;
  w->rates = alloc_n(KM, sizeof(double), &failed);
  w->keys = alloc_n(KM, sizeof(assoc_keyed), &failed);
  w->assign = assoc_assign_work_new(M, N, K);
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
    assoc_work_free(w);
    return NULL;
  }
  return w;
}

void assoc_work_free(assoc_work *w) {
  if (!w) return;
  assoc_assign_work_free(w->assign);
  void *blocks[] = {w->rates,    w->keys,        w->mu,       w->load,    w->caps,     w->egf,
                    w->egf_tmp,  w->da_cur,      w->da_best,  w->ls_cur,  w->ls_try,   w->starts,
                    w->es_order, w->es_bs_order, w->es_assoc, w->es_best, w->es_interf};
  for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) sg_mfree(blocks[i]);
  sg_mfree(w);
}

static int cmp_keyed_desc(const void *a, const void *b) {
  const assoc_keyed *x = a, *y = b;
  if (x->key != y->key) return x->key > y->key ? -1 : 1;
  return (x->index > y->index) - (x->index < y->index);
}

void assoc_sort_keyed_desc(assoc_keyed *items, int n) {
  qsort(items, n, sizeof *items, cmp_keyed_desc);
}
