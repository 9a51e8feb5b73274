/* Private to models/: the scratch space of the association solvers. */
#ifndef SG_ASSOC_WORK_H
#define SG_ASSOC_WORK_H

#include "sg_system.h"

typedef struct sg_keyed {
  double key;
  int index;
} sg_keyed;

struct sg_work {
  int M, N, K;
  double *rates;          /* K x M link rates log2(1 + SNR_km) */
  sg_keyed *keys;         /* K x M */
  sg_assign_work *assign; /* Hungarian solver scratch */
  double *mu;
  int *load, *caps;
  long double *egf, *egf_tmp; /* K + 1 each */
  int *da_cur, *da_best, *ls_cur, *ls_try, *starts;
  int *es_order, *es_bs_order, *es_assoc, *es_best;
  double *es_interf; /* (K + 1) x K: interference before each depth */
};

/* Link SNR gain[m,k,k] of problem p. */
static inline double sg_link_snr(const sg_problem *p, int k, int m) {
  return p->gain[((long)m * p->K + k) * p->K + k];
}

/* Sorts n keyed items by decreasing key, ties by increasing index. */
void sg_sort_keyed_desc(sg_keyed *items, int n);

#endif
