/* Sampled decoding (assoc_eval_sampled, models/eval/decode.c): one draw is
 * the no-violation rounding; more draws never lower a sample's rate; every
 * chosen association is feasible and its rate is its true sum-rate; the
 * result does not depend on the thread count. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "assoc_eval.h"
#include "sg_test.h"

static assoc_dataset decode_data(int M, int N, int K, int64_t S, uint64_t seed) {
  assoc_scenario sc = assoc_scenario_default();
  sc.M = M, sc.N = N, sc.K = K, sc.seed = seed;
  assoc_dataset ds;
  sg_io_error err;
  ck_assert_msg(assoc_generate(&sc, S, &ds, &err) == 0, "%s", err.msg);
  return ds;
}

/* Random rows on the simplex, some entries exactly zero. */
static double *random_assoc(const assoc_dataset *ds, uint64_t seed) {
  int64_t rows = ds->S * ds->K;
  double *A = malloc((size_t)(rows * ds->M) * sizeof *A);
  sg_rng r;
  sg_rng_seed(&r, seed);
  for (int64_t i = 0; i < rows; i++) {
    double sum = 0;
    for (int m = 0; m < ds->M; m++) {
      double u = sg_rng_uniform(&r);
      A[i * ds->M + m] = u < 0.1 ? 0.0 : u * u;
      sum += A[i * ds->M + m];
    }
    for (int m = 0; m < ds->M; m++)
      A[i * ds->M + m] = sum > 0 ? A[i * ds->M + m] / sum : 1.0 / ds->M;
  }
  return A;
}

static void check_feasible(const assoc_dataset *ds, const int *assoc, const double *rate) {
  double *gain = malloc((size_t)ds->M * ds->K * ds->K * sizeof *gain);
  int served_expected = ds->K < ds->M * ds->N ? ds->K : ds->M * ds->N;
  for (int64_t s = 0; s < ds->S; s++) {
    int load[8] = {0}, served = 0;
    for (int k = 0; k < ds->K; k++) {
      int m = assoc[s * ds->K + k];
      ck_assert(m >= -1 && m < ds->M);
      if (m >= 0) load[m]++, served++;
    }
    for (int m = 0; m < ds->M; m++) ck_assert_int_le(load[m], ds->N);
    ck_assert_int_eq(served, served_expected);
    assoc_coupling_gain(ds, s, gain);
    ck_assert(rate[s] == assoc_rate_int(gain, ds->M, ds->K, assoc + s * ds->K, NULL));
  }
  free(gain);
}

START_TEST(decode_one_draw_is_rounding) {
  assoc_dataset ds = decode_data(2, 3, 7, 40, 5);
  double *A = random_assoc(&ds, 9), *rate = malloc(40 * sizeof *rate);
  double *nv = malloc(40 * sizeof *nv);
  ck_assert_int_eq(assoc_eval_sampled(&ds, A, 1, 3, rate, NULL, NULL), 0);
  assoc_eval_assocs x = {.rate_nv = nv};
  assoc_eval_metrics m;
  ck_assert_int_eq(assoc_eval_assoc_metrics(&ds, A, NULL, &m, &x), 0);
  ck_assert_mem_eq(rate, nv, 40 * sizeof *rate);
  ck_assert_int_eq(assoc_eval_sampled(&ds, A, 0, 3, rate, NULL, NULL), -1);
  free(A), free(rate), free(nv);
  assoc_dataset_free(&ds);
}
END_TEST

/* The draws of D are the first D of D' > D (same seed): per sample the
 * best of more draws is at least as good, and strictly better somewhere. */
START_TEST(decode_more_draws_never_worse) {
  assoc_dataset ds = decode_data(3, 2, 6, 60, 7);
  double *A = random_assoc(&ds, 11);
  double *r4 = malloc(60 * sizeof *r4), *r16 = malloc(60 * sizeof *r16);
  int *a16 = malloc(60 * 6 * sizeof *a16);
  double us;
  ck_assert_int_eq(assoc_eval_sampled(&ds, A, 4, 21, r4, NULL, NULL), 0);
  ck_assert_int_eq(assoc_eval_sampled(&ds, A, 16, 21, r16, a16, &us), 0);
  int better = 0;
  for (int s = 0; s < 60; s++) ck_assert(r16[s] >= r4[s]), better += r16[s] > r4[s];
  ck_assert_int_gt(better, 0);
  ck_assert(us > 0 && isfinite(us));
  check_feasible(&ds, a16, r16);
  free(A), free(r4), free(r16), free(a16);
  assoc_dataset_free(&ds);
}
END_TEST

/* K > M N drops UEs; the same bits on 1 and 2 threads. */
START_TEST(decode_threads_and_drops) {
  assoc_dataset ds = decode_data(2, 2, 6, 50, 13);
  double *A = random_assoc(&ds, 17);
  double *r1 = malloc(50 * sizeof *r1), *r2 = malloc(50 * sizeof *r2);
  int *a1 = malloc(50 * 6 * sizeof *a1), *a2 = malloc(50 * 6 * sizeof *a2);
  int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  ck_assert_int_eq(assoc_eval_sampled(&ds, A, 8, 5, r1, a1, NULL), 0);
  omp_set_num_threads(2);
  ck_assert_int_eq(assoc_eval_sampled(&ds, A, 8, 5, r2, a2, NULL), 0);
  omp_set_num_threads(threads);
  ck_assert_mem_eq(r1, r2, 50 * sizeof *r1);
  ck_assert_mem_eq(a1, a2, 50 * 6 * sizeof *a1);
  check_feasible(&ds, a1, r1);
  free(A), free(r1), free(r2), free(a1), free(a2);
  assoc_dataset_free(&ds);
}
END_TEST

Suite *suite_eval_decode(void) {
  const sg_test_case cases[] = {
      {"decode_one_draw_is_rounding", decode_one_draw_is_rounding},
      {"decode_more_draws_never_worse", decode_more_draws_never_worse},
      {"decode_threads_and_drops", decode_threads_and_drops},
  };
  return sg_test_suite("eval_decode", cases, sizeof cases / sizeof cases[0], 60);
}
