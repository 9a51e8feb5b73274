/* Private to models/assoc: the scratch space of the association solvers
 * and the helpers they share. */
#ifndef ASSOC_SOLVER_WORK_H
#define ASSOC_SOLVER_WORK_H

#include "assoc_solvers.h"

typedef struct assoc_keyed {
  double key;
  int index;
} assoc_keyed;

struct assoc_work {
  int M, N, K;
  double *rates;             /* K x M link rates log2(1 + SNR_km) */
  assoc_keyed *keys;         /* K x M */
  assoc_assign_work *assign; /* Hungarian solver scratch */
  double *mu;
  int *load, *caps;
  long double *egf, *egf_tmp; /* K + 1 each */
  int *da_cur, *da_best, *ls_cur, *ls_try, *starts;
  int *es_order, *es_bs_order, *es_assoc, *es_best;
  double *es_interf; /* (K + 1) x K: interference before each depth */
};

/* Link SNR gain[m,k,k] of problem p. */
static inline double assoc_link_snr(const assoc_problem *p, int k, int m) {
  return p->gain[((long)m * p->K + k) * p->K + k];
}

/* Sorts n keyed items by decreasing key, ties by increasing index. */
void assoc_sort_keyed_desc(assoc_keyed *items, int n);

#endif
