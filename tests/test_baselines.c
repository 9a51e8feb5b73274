/* Baselines: ES is exact (against plain enumeration) and never beaten,
 * load limits hold, LocalSearch never loses, UE permutations permute ES,
 * RandInt is uniform, load balancing and metrics, thread independence. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "sg_system.h"
#include "sg_test.h"

typedef struct config {
  int M, N, K;
} config;

/* Small sizes, including K > M*N (drops) and K < M*N. */
static const config configs[] = {{2, 4, 8}, {2, 2, 6}, {3, 2, 5}, {2, 3, 4}, {3, 1, 4}, {1, 2, 3}};
enum { N_CONFIGS = sizeof configs / sizeof configs[0] };

static sg_dataset make_data(config c, int64_t S, uint64_t seed) {
  sg_scenario sc = sg_scenario_default();
  sc.M = c.M, sc.N = c.N, sc.K = c.K, sc.seed = seed;
  sg_dataset ds;
  char msg[256];
  ck_assert_msg(sg_generate(&sc, S, &ds, msg, sizeof msg) == 0, "%s", msg);
  return ds;
}

/* Checks every load <= N and exactly min(K, M*N) UEs served. */
static void assert_feasible(const sg_problem *p, const int *assoc, const char *who) {
  int load[SG_MAX_BS] = {0}, served = 0;
  for (int k = 0; k < p->K; k++) {
    ck_assert_msg(assoc[k] >= -1 && assoc[k] < p->M, "%s: bad BS %d", who, assoc[k]);
    if (assoc[k] >= 0) load[assoc[k]]++, served++;
  }
  for (int m = 0; m < p->M; m++)
    ck_assert_msg(load[m] <= p->N, "%s: BS %d serves %d > %d", who, m, load[m], p->N);
  ck_assert_msg(served == sg_served_count(p), "%s: serves %d UEs, expected %d", who, served,
                sg_served_count(p));
}

START_TEST(test_es_matches_enumeration) {
  for (int c = 0; c < N_CONFIGS; c++) {
    sg_dataset ds = make_data(configs[c], 40, 100 + c);
    sg_work *w = sg_work_new(ds.M, ds.N, ds.K);
    double gain[3 * 8 * 8];
    int es[8], brute[8];
    for (int64_t s = 0; s < ds.S; s++) {
      sg_coupling_gain(&ds, s, gain);
      sg_problem p = {ds.M, ds.N, ds.K, gain};
      double r_es = sg_es(&p, w, es, NULL), r_brute = sg_es_bruteforce(&p, brute);
      ck_assert_msg(fabs(r_es - r_brute) <= 1e-9 * (1 + r_brute),
                    "config %d sample %lld: ES %.12f, enumeration %.12f", c, (long long)s, r_es,
                    r_brute);
      assert_feasible(&p, es, "ES");
    }
    sg_work_free(w);
    sg_dataset_free(&ds);
  }
}
END_TEST

/* ES >= every load-feasible baseline on every sample (and >= MaxSINR when
 * MaxSINR happens to be feasible); all of them feasible. */
START_TEST(test_es_never_beaten) {
  const sg_method feasible[] = {SG_MAXSINR_CAPPED, SG_RANDINT, SG_DA, SG_ASSIGN, SG_LOCALSEARCH};
  sg_baseline_opts o = sg_baseline_defaults();
  for (int c = 0; c < N_CONFIGS; c++) {
    sg_dataset ds = make_data(configs[c], 60, 200 + c);
    sg_work *w = sg_work_new(ds.M, ds.N, ds.K);
    double gain[3 * 8 * 8];
    int es[8], other[8];
    for (int64_t s = 0; s < ds.S; s++) {
      sg_coupling_gain(&ds, s, gain);
      sg_problem p = {ds.M, ds.N, ds.K, gain};
      double r_es = sg_es(&p, w, es, NULL);
      int load[SG_MAX_BS];
      double r_max = sg_maxsinr(&p, other); /* uncapped: bounded by ES only when feasible */
      if (sg_loads(p.M, p.K, other, load) <= p.N && p.K <= p.M * p.N)
        ck_assert_msg(r_max <= r_es + 1e-9, "feasible MaxSINR beats ES");
      for (size_t i = 0; i < sizeof feasible / sizeof feasible[0]; i++) {
        double r = sg_solve(feasible[i], &p, &o, (uint64_t)s, w, other);
        assert_feasible(&p, other, sg_method_name(feasible[i]));
        ck_assert_double_eq_tol(r, sg_rate_int(gain, p.M, p.K, other, NULL), 1e-12);
        ck_assert_msg(r <= r_es + 1e-9, "config %d sample %lld: %s %.12f beats ES %.12f", c,
                      (long long)s, sg_method_name(feasible[i]), r, r_es);
      }
    }
    sg_work_free(w);
    sg_dataset_free(&ds);
  }
}
END_TEST

START_TEST(test_maxsinr_picks_strongest) {
  sg_dataset ds = make_data(configs[0], 30, 7);
  double gain[2 * 8 * 8];
  int a[8];
  for (int64_t s = 0; s < ds.S; s++) {
    sg_coupling_gain(&ds, s, gain);
    sg_problem p = {ds.M, ds.N, ds.K, gain};
    sg_maxsinr(&p, a);
    for (int k = 0; k < ds.K; k++)
      for (int m = 0; m < ds.M; m++)
        ck_assert(gain[(a[k] * ds.K + k) * ds.K + k] >= gain[(m * ds.K + k) * ds.K + k]);
  }
  sg_dataset_free(&ds);
}
END_TEST

START_TEST(test_local_search_never_lowers) {
  for (int c = 0; c < N_CONFIGS; c++) {
    sg_dataset ds = make_data(configs[c], 40, 300 + c);
    sg_work *w = sg_work_new(ds.M, ds.N, ds.K);
    double gain[3 * 8 * 8];
    int start[8], out[8];
    for (int64_t s = 0; s < ds.S; s++) {
      sg_coupling_gain(&ds, s, gain);
      sg_problem p = {ds.M, ds.N, ds.K, gain};
      sg_rng rng;
      sg_rng_seed(&rng, 1000 + s);
      double r0 = sg_randint(&p, &rng, w, start);
      double r1 = sg_local_search(&p, start, w, out);
      ck_assert_msg(r1 >= r0, "config %d: local search lowered %.9f to %.9f", c, r0, r1);
      assert_feasible(&p, out, "LocalSearch");
      ck_assert_double_eq_tol(r1, sg_rate_int(gain, p.M, p.K, out, NULL), 1e-12);
    }
    sg_work_free(w);
    sg_dataset_free(&ds);
  }
}
END_TEST

/* Relabelling the UEs by pi (new UE k = old UE pi[k]) relabels ES's answer
 * the same way and keeps its rate. */
START_TEST(test_es_permutation) {
  const config c = {3, 2, 6};
  sg_dataset ds = make_data(c, 30, 77);
  sg_work *w = sg_work_new(c.M, c.N, c.K);
  const int pi[6] = {4, 2, 5, 0, 3, 1};
  double gain[3 * 6 * 6], permuted[3 * 6 * 6];
  int a[6], b[6];
  for (int64_t s = 0; s < ds.S; s++) {
    sg_coupling_gain(&ds, s, gain);
    for (int m = 0; m < c.M; m++)
      for (int k = 0; k < c.K; k++)
        for (int l = 0; l < c.K; l++)
          permuted[(m * c.K + k) * c.K + l] = gain[(m * c.K + pi[k]) * c.K + pi[l]];
    sg_problem p = {c.M, c.N, c.K, gain}, q = {c.M, c.N, c.K, permuted};
    double ra = sg_es(&p, w, a, NULL), rb = sg_es(&q, w, b, NULL);
    ck_assert_double_eq_tol(ra, rb, 1e-9);
    for (int k = 0; k < c.K; k++) ck_assert_int_eq(b[k], a[pi[k]]);
  }
  sg_work_free(w);
  sg_dataset_free(&ds);
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
    sg_problem p = {cases[c].M, cases[c].N, cases[c].K, gain};
    sg_work *w = sg_work_new(p.M, p.N, p.K);
    int count[27] = {0}, a[3], draws = 12000;
    sg_rng rng;
    sg_rng_seed(&rng, 5);
    for (int i = 0; i < draws; i++) {
      sg_randint(&p, &rng, w, a);
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
    ck_assert_double_eq_tol(sg_feasible_count(p.M, p.N, p.K), n_outcomes[c], 1e-9);
    sg_work_free(w);
  }
  ck_assert_double_eq_tol(sg_feasible_count(3, 4, 12), 34650, 1e-6);
  ck_assert_double_eq_tol(sg_feasible_count(2, 4, 8), 70, 1e-9);
}
END_TEST

START_TEST(test_load_balance_drops_weakest) {
  /* M = 1, N = 2, K = 4 all on BS 0; SNRs 3, 1, 4, 2: keep UEs 2 and 0. */
  double gain[16] = {0};
  const double snr[4] = {3, 1, 4, 2};
  for (int k = 0; k < 4; k++) gain[k * 4 + k] = snr[k];
  sg_problem p = {1, 2, 4, gain};
  int all0[4] = {0, 0, 0, 0}, out[4];
  sg_load_balance(&p, all0, NULL, out);
  ck_assert(out[0] == 0 && out[1] == -1 && out[2] == 0 && out[3] == -1);
  const double score[4] = {0.1, 0.9, 0.2, 0.8}; /* a score overrides the SNR */
  sg_load_balance(&p, all0, score, out);
  ck_assert(out[0] == -1 && out[1] == 0 && out[2] == -1 && out[3] == 0);
}
END_TEST

START_TEST(test_metrics) {
  sg_dataset ds = make_data(configs[0], 50, 11);
  int *assoc = calloc((size_t)(ds.S * ds.K), sizeof(int)); /* everyone on BS 0 */
  for (int64_t s = 25; s < 50; s++)
    for (int k = 0; k < ds.K; k++) assoc[s * ds.K + k] = k % 2; /* balanced */
  double es_rate[50], lb_rate[50];
  int *lb = malloc(sizeof(int) * ds.S * ds.K);
  for (int i = 0; i < 50; i++) es_rate[i] = 10.0;
  sg_metrics m;
  ck_assert_int_eq(sg_metrics_compute(&ds, assoc, NULL, es_rate, 0.5, &m, lb, lb_rate), 0);
  ck_assert_double_eq_tol(m.violation_ratio, 0.5, 1e-12);
  ck_assert_double_eq_tol(m.mean_dropped, 2.0, 1e-12); /* 4 per violating sample */
  ck_assert_double_eq_tol(m.ratio_to_es, m.mean_lb_rate / 10.0, 1e-12);
  ck_assert_double_eq(m.ms_per_sample, 0.5);
  double rate[50];
  ck_assert_int_eq(sg_dataset_rates(&ds, lb, rate), 0);
  double mean = 0;
  for (int s = 0; s < 50; s++) {
    mean += rate[s] / 50;
    ck_assert_double_eq(rate[s], lb_rate[s]);
  }
  ck_assert_double_eq_tol(mean, m.mean_lb_rate, 1e-12);
  free(assoc), free(lb);
  sg_dataset_free(&ds);
}
END_TEST

/* Batched runs give the same associations for 1 and 2 threads. */
START_TEST(test_run_method_thread_independent) {
  sg_dataset ds = make_data(configs[1], 300, 21);
  sg_baseline_opts o = sg_baseline_defaults();
  size_t n = (size_t)ds.S * ds.K;
  int *a1 = malloc(n * sizeof *a1), *a2 = malloc(n * sizeof *a2);
  double *r1 = malloc(ds.S * sizeof *r1), *r2 = malloc(ds.S * sizeof *r2), ms;
  char msg[256];
  for (int m = 0; m < SG_METHOD_COUNT; m++) {
    omp_set_num_threads(1);
    ck_assert_int_eq(sg_run_method(&ds, m, &o, a1, r1, &ms, NULL, NULL, msg, sizeof msg), 0);
    omp_set_num_threads(2);
    ck_assert_int_eq(sg_run_method(&ds, m, &o, a2, r2, &ms, NULL, NULL, msg, sizeof msg), 0);
    ck_assert_msg(!memcmp(a1, a2, n * sizeof *a1), "%s depends on threads", sg_method_name(m));
    ck_assert(ms >= 0);
  }
  o.es_max_leaves = 10; /* ES refuses sizes over the limit */
  ck_assert_int_eq(sg_run_method(&ds, SG_ES, &o, a1, r1, &ms, NULL, NULL, msg, sizeof msg), -1);
  ck_assert_ptr_nonnull(strstr(msg, "ES would search"));
  free(a1), free(a2), free(r1), free(r2);
  sg_dataset_free(&ds);
}
END_TEST

/* The system.md sanity figures on the default scenario. */
START_TEST(test_default_scenario_levels) {
  sg_dataset ds = make_data(configs[0], 400, 1);
  sg_baseline_opts o = sg_baseline_defaults();
  double mean[SG_METHOD_COUNT];
  int *a = malloc(sizeof(int) * ds.S * ds.K);
  double *r = malloc(sizeof(double) * ds.S);
  for (int m = 0; m < SG_METHOD_COUNT; m++) {
    ck_assert_int_eq(sg_run_method(&ds, m, &o, a, r, NULL, NULL, NULL, NULL, 0), 0);
    mean[m] = 0;
    for (int s = 0; s < ds.S; s++) mean[m] += r[s] / ds.S;
  }
  ck_assert(mean[SG_ES] > 6.2 && mean[SG_ES] < 7.0);
  ck_assert(mean[SG_MAXSINR] > 5.5 && mean[SG_MAXSINR] < 6.5);
  ck_assert(mean[SG_RANDINT] > 3.0 && mean[SG_RANDINT] < 3.6);
  ck_assert(mean[SG_LOCALSEARCH] >= mean[SG_ASSIGN] && mean[SG_LOCALSEARCH] <= mean[SG_ES]);
  free(a), free(r);
  sg_dataset_free(&ds);
}
END_TEST

START_TEST(test_method_names) {
  for (int m = 0; m < SG_METHOD_COUNT; m++) {
    ck_assert_int_eq(sg_method_parse(sg_method_name(m)), m);
    ck_assert_int_eq(sg_method_parse(sg_method_key(m)), m);
  }
  ck_assert_int_eq(sg_method_parse("maxsinr-capped"), SG_MAXSINR_CAPPED);
  ck_assert_int_eq(sg_method_parse("nope"), -1);
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
