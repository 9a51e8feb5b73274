/* Baselines: ES is exact (against plain enumeration) and never beaten,
 * load limits hold, LocalSearch never loses, UE permutations permute ES,
 * RandInt is uniform, load balancing and metrics, thread independence. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "assoc_solvers.h"
#include "sg_test.h"

typedef struct config {
  int M, N, K;
} config;

/* Small sizes, including K > M*N (drops) and K < M*N. */
static const config configs[] = {{2, 4, 8}, {2, 2, 6}, {3, 2, 5}, {2, 3, 4}, {3, 1, 4}, {1, 2, 3}};
enum { N_CONFIGS = sizeof configs / sizeof configs[0] };

static assoc_dataset make_data(config c, int64_t S, uint64_t seed) {
  assoc_scenario sc = assoc_scenario_default();
  sc.M = c.M, sc.N = c.N, sc.K = c.K, sc.seed = seed;
  assoc_dataset ds;
  sg_io_error err;
  ck_assert_msg(assoc_generate(&sc, S, &ds, &err) == 0, "%s", err.msg);
  return ds;
}

/* Checks every load <= N and exactly min(K, M*N) UEs served. */
static void assert_feasible(const assoc_problem *p, const int *assoc, const char *who) {
  int load[ASSOC_MAX_BS] = {0}, served = 0;
  for (int k = 0; k < p->K; k++) {
    ck_assert_msg(assoc[k] >= -1 && assoc[k] < p->M, "%s: bad BS %d", who, assoc[k]);
    if (assoc[k] >= 0) load[assoc[k]]++, served++;
  }
  for (int m = 0; m < p->M; m++)
    ck_assert_msg(load[m] <= p->N, "%s: BS %d serves %d > %d", who, m, load[m], p->N);
  ck_assert_msg(served == assoc_served_count(p), "%s: serves %d UEs, expected %d", who, served,
                assoc_served_count(p));
}

START_TEST(test_es_matches_enumeration) {
  for (int c = 0; c < N_CONFIGS; c++) {
    assoc_dataset ds = make_data(configs[c], 40, 100 + c);
    assoc_work *w = assoc_work_new(ds.M, ds.N, ds.K);
    double gain[3 * 8 * 8];
    int es[8], brute[8];
    for (int64_t s = 0; s < ds.S; s++) {
      assoc_coupling_gain(&ds, s, gain);
      assoc_problem p = {ds.M, ds.N, ds.K, gain};
      double r_es = assoc_es(&p, w, es, NULL), r_brute = assoc_es_bruteforce(&p, brute);
      ck_assert_msg(fabs(r_es - r_brute) <= 1e-9 * (1 + r_brute),
                    "config %d sample %lld: ES %.12f, enumeration %.12f", c, (long long)s, r_es,
                    r_brute);
      assert_feasible(&p, es, "ES");
    }
    assoc_work_free(w);
    assoc_dataset_free(&ds);
  }
}
END_TEST

/* ES >= every load-feasible baseline on every sample (and >= MaxSINR when
 * MaxSINR happens to be feasible); all of them feasible. */
START_TEST(test_es_never_beaten) {
  const assoc_method feasible[] = {ASSOC_MAXSINR_CAPPED, ASSOC_RANDINT, ASSOC_DA, ASSOC_ASSIGN,
                                   ASSOC_LOCALSEARCH};
  assoc_baseline_opts o = assoc_baseline_defaults();
  for (int c = 0; c < N_CONFIGS; c++) {
    assoc_dataset ds = make_data(configs[c], 60, 200 + c);
    assoc_work *w = assoc_work_new(ds.M, ds.N, ds.K);
    double gain[3 * 8 * 8];
    int es[8], other[8];
    for (int64_t s = 0; s < ds.S; s++) {
      assoc_coupling_gain(&ds, s, gain);
      assoc_problem p = {ds.M, ds.N, ds.K, gain};
      double r_es = assoc_es(&p, w, es, NULL);
      int load[ASSOC_MAX_BS];
      double r_max = assoc_maxsinr(&p, other); /* uncapped: bounded by ES only when feasible */
      if (assoc_loads(p.M, p.K, other, load) <= p.N && p.K <= p.M * p.N)
        ck_assert_msg(r_max <= r_es + 1e-9, "feasible MaxSINR beats ES");
      for (size_t i = 0; i < sizeof feasible / sizeof feasible[0]; i++) {
        double r = assoc_solve(feasible[i], &p, &o, (uint64_t)s, w, other);
        assert_feasible(&p, other, assoc_method_name(feasible[i]));
        ck_assert_double_eq_tol(r, assoc_rate_int(gain, p.M, p.K, other, NULL), 1e-12);
        ck_assert_msg(r <= r_es + 1e-9, "config %d sample %lld: %s %.12f beats ES %.12f", c,
                      (long long)s, assoc_method_name(feasible[i]), r, r_es);
      }
    }
    assoc_work_free(w);
    assoc_dataset_free(&ds);
  }
}
END_TEST

START_TEST(test_maxsinr_picks_strongest) {
  assoc_dataset ds = make_data(configs[0], 30, 7);
  double gain[2 * 8 * 8];
  int a[8];
  for (int64_t s = 0; s < ds.S; s++) {
    assoc_coupling_gain(&ds, s, gain);
    assoc_problem p = {ds.M, ds.N, ds.K, gain};
    assoc_maxsinr(&p, a);
    for (int k = 0; k < ds.K; k++)
      for (int m = 0; m < ds.M; m++)
        ck_assert(gain[(a[k] * ds.K + k) * ds.K + k] >= gain[(m * ds.K + k) * ds.K + k]);
  }
  assoc_dataset_free(&ds);
}
END_TEST

START_TEST(test_local_search_never_lowers) {
  for (int c = 0; c < N_CONFIGS; c++) {
    assoc_dataset ds = make_data(configs[c], 40, 300 + c);
    assoc_work *w = assoc_work_new(ds.M, ds.N, ds.K);
    double gain[3 * 8 * 8];
    int start[8], out[8];
    for (int64_t s = 0; s < ds.S; s++) {
      assoc_coupling_gain(&ds, s, gain);
      assoc_problem p = {ds.M, ds.N, ds.K, gain};
      sg_rng rng;
      sg_rng_seed(&rng, 1000 + s);
      double r0 = assoc_randint(&p, &rng, w, start);
      double r1 = assoc_local_search(&p, start, w, out);
      ck_assert_msg(r1 >= r0, "config %d: local search lowered %.9f to %.9f", c, r0, r1);
      assert_feasible(&p, out, "LocalSearch");
      ck_assert_double_eq_tol(r1, assoc_rate_int(gain, p.M, p.K, out, NULL), 1e-12);
    }
    assoc_work_free(w);
    assoc_dataset_free(&ds);
  }
}
END_TEST

/* Relabelling the UEs by pi (new UE k = old UE pi[k]) relabels ES's answer
 * the same way and keeps its rate. */
START_TEST(test_es_permutation) {
  const config c = {3, 2, 6};
  assoc_dataset ds = make_data(c, 30, 77);
  assoc_work *w = assoc_work_new(c.M, c.N, c.K);
  const int pi[6] = {4, 2, 5, 0, 3, 1};
  double gain[3 * 6 * 6], permuted[3 * 6 * 6];
  int a[6], b[6];
  for (int64_t s = 0; s < ds.S; s++) {
    assoc_coupling_gain(&ds, s, gain);
    for (int m = 0; m < c.M; m++)
      for (int k = 0; k < c.K; k++)
        for (int l = 0; l < c.K; l++)
          permuted[(m * c.K + k) * c.K + l] = gain[(m * c.K + pi[k]) * c.K + pi[l]];
    assoc_problem p = {c.M, c.N, c.K, gain}, q = {c.M, c.N, c.K, permuted};
    double ra = assoc_es(&p, w, a, NULL), rb = assoc_es(&q, w, b, NULL);
    ck_assert_double_eq_tol(ra, rb, 1e-9);
    for (int k = 0; k < c.K; k++) ck_assert_int_eq(b[k], a[pi[k]]);
  }
  assoc_work_free(w);
  assoc_dataset_free(&ds);
}
END_TEST

/* K = 3, M = 2, N = 2: the 6 associations without a BS serving all three
 * are equally likely. With a drop bin (K = 3, M = 1, N = 2): the 3 ways
 * to drop one UE are equally likely. */
START_TEST(test_randint_uniform) {
  const config cases[2] = {{2, 2, 3}, {1, 2, 3}};
  const int n_outcomes[2] = {6, 3};
  for (int c = 0; c < 2; c++) {
    double gain[2 * 3 * 3] = {0};
    assoc_problem p = {cases[c].M, cases[c].N, cases[c].K, gain};
    assoc_work *w = assoc_work_new(p.M, p.N, p.K);
    int count[27] = {0}, a[3], draws = 12000;
    sg_rng rng;
    sg_rng_seed(&rng, 5);
    for (int i = 0; i < draws; i++) {
      assoc_randint(&p, &rng, w, a);
      assert_feasible(&p, a, "RandInt");
      count[(a[0] + 1) * 9 + (a[1] + 1) * 3 + (a[2] + 1)]++;
    }
    int seen = 0;
    double expected = (double)draws / n_outcomes[c];
    for (int i = 0; i < 27; i++) {
      if (!count[i]) continue;
      seen++;
      ck_assert_msg(fabs(count[i] - expected) < 5 * sqrt(expected), "outcome %d: %d of %g", i,
                    count[i], expected);
    }
    ck_assert_int_eq(seen, n_outcomes[c]);
    ck_assert_double_eq_tol(assoc_feasible_count(p.M, p.N, p.K), n_outcomes[c], 1e-9);
    assoc_work_free(w);
  }
  ck_assert_double_eq_tol(assoc_feasible_count(3, 4, 12), 34650, 1e-6);
  ck_assert_double_eq_tol(assoc_feasible_count(2, 4, 8), 70, 1e-9);
}
END_TEST

START_TEST(test_load_balance_drops_weakest) {
  /* M = 1, N = 2, K = 4 all on BS 0; SNRs 3, 1, 4, 2: keep UEs 2 and 0. */
  double gain[16] = {0};
  const double snr[4] = {3, 1, 4, 2};
  for (int k = 0; k < 4; k++) gain[k * 4 + k] = snr[k];
  assoc_problem p = {1, 2, 4, gain};
  int all0[4] = {0, 0, 0, 0}, out[4];
  assoc_load_balance(&p, all0, NULL, out);
  ck_assert(out[0] == 0 && out[1] == -1 && out[2] == 0 && out[3] == -1);
  const double score[4] = {0.1, 0.9, 0.2, 0.8}; /* a score overrides the SNR */
  assoc_load_balance(&p, all0, score, out);
  ck_assert(out[0] == -1 && out[1] == 0 && out[2] == -1 && out[3] == 0);
}
END_TEST

START_TEST(test_metrics) {
  assoc_dataset ds = make_data(configs[0], 50, 11);
  int *assoc = calloc((size_t)(ds.S * ds.K), sizeof(int)); /* everyone on BS 0 */
  for (int64_t s = 25; s < 50; s++)
    for (int k = 0; k < ds.K; k++) assoc[s * ds.K + k] = k % 2; /* balanced */
  double es_rate[50], lb_rate[50];
  int *lb = malloc(sizeof(int) * ds.S * ds.K);
  for (int i = 0; i < 50; i++) es_rate[i] = 10.0;
  assoc_metrics m;
  ck_assert_int_eq(assoc_metrics_compute(&ds, assoc, NULL, es_rate, 0.5, &m, lb, lb_rate), 0);
  ck_assert_double_eq_tol(m.violation_ratio, 0.5, 1e-12);
  ck_assert_double_eq_tol(m.mean_dropped, 2.0, 1e-12); /* 4 per violating sample */
  ck_assert_double_eq_tol(m.ratio_to_es, m.mean_lb_rate / 10.0, 1e-12);
  ck_assert_double_eq(m.ms_per_sample, 0.5);
  double rate[50];
  ck_assert_int_eq(assoc_dataset_rates(&ds, lb, rate), 0);
  double mean = 0;
  for (int s = 0; s < 50; s++) {
    mean += rate[s] / 50;
    ck_assert_double_eq(rate[s], lb_rate[s]);
  }
  ck_assert_double_eq_tol(mean, m.mean_lb_rate, 1e-12);
  free(assoc), free(lb);
  assoc_dataset_free(&ds);
}
END_TEST

/* Batched runs give the same associations for 1 and 2 threads. */
START_TEST(test_run_method_thread_independent) {
  assoc_dataset ds = make_data(configs[1], 300, 21);
  assoc_baseline_opts o = assoc_baseline_defaults();
  size_t n = (size_t)ds.S * ds.K;
  int *a1 = malloc(n * sizeof *a1), *a2 = malloc(n * sizeof *a2);
  double *r1 = malloc(ds.S * sizeof *r1), *r2 = malloc(ds.S * sizeof *r2), ms;
  sg_io_error err;
  for (int m = 0; m < ASSOC_METHOD_COUNT; m++) {
    omp_set_num_threads(1);
    ck_assert_int_eq(assoc_run_method(&ds, m, &o, a1, r1, &ms, NULL, NULL, &err), 0);
    omp_set_num_threads(2);
    ck_assert_int_eq(assoc_run_method(&ds, m, &o, a2, r2, &ms, NULL, NULL, &err), 0);
    ck_assert_msg(!memcmp(a1, a2, n * sizeof *a1), "%s depends on threads", assoc_method_name(m));
    ck_assert(ms >= 0);
  }
  o.es_max_leaves = 10; /* ES refuses sizes over the limit */
  ck_assert_int_eq(assoc_run_method(&ds, ASSOC_ES, &o, a1, r1, &ms, NULL, NULL, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "ES would search"));
  free(a1), free(a2), free(r1), free(r2);
  assoc_dataset_free(&ds);
}
END_TEST

/* The system.md sanity figures on the default scenario. */
START_TEST(test_default_scenario_levels) {
  assoc_dataset ds = make_data(configs[0], 400, 1);
  assoc_baseline_opts o = assoc_baseline_defaults();
  double mean[ASSOC_METHOD_COUNT];
  int *a = malloc(sizeof(int) * ds.S * ds.K);
  double *r = malloc(sizeof(double) * ds.S);
  for (int m = 0; m < ASSOC_METHOD_COUNT; m++) {
    ck_assert_int_eq(assoc_run_method(&ds, m, &o, a, r, NULL, NULL, NULL, NULL), 0);
    mean[m] = 0;
    for (int s = 0; s < ds.S; s++) mean[m] += r[s] / ds.S;
  }
  ck_assert(mean[ASSOC_ES] > 6.2 && mean[ASSOC_ES] < 7.0);
  ck_assert(mean[ASSOC_MAXSINR] > 5.5 && mean[ASSOC_MAXSINR] < 6.5);
  ck_assert(mean[ASSOC_RANDINT] > 3.0 && mean[ASSOC_RANDINT] < 3.6);
  ck_assert(mean[ASSOC_LOCALSEARCH] >= mean[ASSOC_ASSIGN] &&
            mean[ASSOC_LOCALSEARCH] <= mean[ASSOC_ES]);
  free(a), free(r);
  assoc_dataset_free(&ds);
}
END_TEST

START_TEST(test_method_names) {
  for (int m = 0; m < ASSOC_METHOD_COUNT; m++) {
    ck_assert_int_eq(assoc_method_parse(assoc_method_name(m)), m);
    ck_assert_int_eq(assoc_method_parse(assoc_method_key(m)), m);
  }
  ck_assert_int_eq(assoc_method_parse("maxsinr-capped"), ASSOC_MAXSINR_CAPPED);
  ck_assert_int_eq(assoc_method_parse("nope"), -1);
}
END_TEST

Suite *suite_baselines(void) {
  Suite *s = suite_create("baselines");
  TCase *tc = tcase_create("baselines");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_es_matches_enumeration);
  tcase_add_test(tc, test_es_never_beaten);
  tcase_add_test(tc, test_maxsinr_picks_strongest);
  tcase_add_test(tc, test_local_search_never_lowers);
  tcase_add_test(tc, test_es_permutation);
  tcase_add_test(tc, test_randint_uniform);
  tcase_add_test(tc, test_load_balance_drops_weakest);
  tcase_add_test(tc, test_metrics);
  tcase_add_test(tc, test_run_method_thread_independent);
  tcase_add_test(tc, test_default_scenario_levels);
  tcase_add_test(tc, test_method_names);
  suite_add_tcase(s, tc);
  return s;
}
