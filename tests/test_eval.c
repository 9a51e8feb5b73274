/* Evaluation (models/eval/assoc_eval.h): metrics on hand-made associations
 * (violation ratio, load balancing by dropping, the no-violation rounding),
 * the max-weight assignment against enumeration, models evaluated on
 * networks larger than their training size, a model's associations written
 * as .npz (the JSON report: test_eval_report.c). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assoc_eval.h"
#include "sg_test.h"

static assoc_dataset make_data(int M, int N, int K, int64_t S, uint64_t seed, double pt_dbm) {
  assoc_scenario sc = assoc_scenario_default();
  sc.M = M, sc.N = N, sc.K = K, sc.seed = seed, sc.pt_dbm = pt_dbm;
  assoc_dataset ds;
  sg_io_error err;
  ck_assert_msg(assoc_generate(&sc, S, &ds, &err) == 0, "%s", err.msg);
  return ds;
}

/* Loads <= N and exactly min(K, M*N) UEs served. */
static void assert_feasible(int M, int N, int K, const int *assoc, const char *who) {
  int load[ASSOC_MAX_BS] = {0}, served = 0;
  for (int k = 0; k < K; k++) {
    ck_assert_msg(assoc[k] >= -1 && assoc[k] < M, "%s: bad BS %d", who, assoc[k]);
    if (assoc[k] >= 0) load[assoc[k]]++, served++;
  }
  for (int m = 0; m < M; m++)
    ck_assert_msg(load[m] <= N, "%s: BS %d serves %d > %d", who, m, load[m], N);
  int want = K < M * N ? K : M * N;
  ck_assert_msg(served == want, "%s: serves %d UEs, expected %d", who, served, want);
}

/* ---- hand-made metrics --------------------------------------------------------------- */

/* M 2, N 2, K 4, three samples. Rows are A~ (K x M):
 *   sample 0: every UE prefers BS 0 with a~ 0.9, 0.6, 0.8, 0.7 (violates);
 *   sample 1: two UEs on each BS (no violation);
 *   sample 2: three UEs on BS 1 (violates). */
static const double hand_A[3 * 4 * 2] = {
    0.9, 0.1, 0.6, 0.4, 0.8, 0.2, 0.7, 0.3, /* sample 0 */
    0.9, 0.1, 0.2, 0.8, 0.7, 0.3, 0.4, 0.6, /* sample 1 */
    0.3, 0.7, 0.1, 0.9, 0.6, 0.4, 0.2, 0.8, /* sample 2 */
};

START_TEST(test_hand_metrics) {
  assoc_dataset ds = make_data(2, 2, 4, 3, 11, 30.0);
  assoc_eval_metrics x;
  int one_hot[12], lb[12], nv[12];
  ck_assert_int_eq(
      assoc_eval_assoc_metrics(&ds, hand_A, NULL, &x,
                               &(assoc_eval_assocs){.one_hot = one_hot, .lb = lb, .nv = nv}),
      0);
  const int want_1hot[12] = {0, 0, 0, 0, 0, 1, 0, 1, 1, 1, 0, 1};
  for (int i = 0; i < 12; i++) ck_assert_int_eq(one_hot[i], want_1hot[i]);
  ck_assert_double_eq_tol(x.violation_ratio, 2.0 / 3.0, 1e-15);
  /* Sample 0: BS 0 keeps the two largest a~ (UEs 0 and 2); sample 2: BS 1
   * keeps UEs 1 (0.9) and 3 (0.8) and drops UE 0 (0.7). */
  const int want_lb[12] = {0, -1, 0, -1, 0, 1, 0, 1, -1, 1, 0, 1};
  for (int i = 0; i < 12; i++) ck_assert_int_eq(lb[i], want_lb[i]);
  ck_assert_double_eq_tol(x.mean_dropped, 3.0 / 3.0, 1e-15);
  /* The most probable feasible association: sample 0 moves the two UEs with
   * the smallest log-ratio log(a0/a1) (UE 1: 0.405, UE 3: 0.847) to BS 1;
   * sample 2 moves UE 0 (log(0.7/0.3) is the smallest on BS 1) to BS 0. */
  const int want_nv[12] = {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1};
  for (int i = 0; i < 12; i++) ck_assert_int_eq(nv[i], want_nv[i]);
  /* Means of the rates of these associations, computed independently. */
  double gain[2 * 4 * 4], r = 0, r_lb = 0, r_nv = 0;
  for (int s = 0; s < 3; s++) {
    assoc_coupling_gain(&ds, s, gain);
    r += assoc_rate_int(gain, 2, 4, want_1hot + 4 * s, NULL) / 3;
    r_lb += assoc_rate_int(gain, 2, 4, want_lb + 4 * s, NULL) / 3;
    r_nv += assoc_rate_int(gain, 2, 4, want_nv + 4 * s, NULL) / 3;
  }
  ck_assert_double_eq_tol(x.rate, r, 1e-12);
  ck_assert_double_eq_tol(x.rate_lb, r_lb, 1e-12);
  ck_assert_double_eq_tol(x.rate_no_violation, r_nv, 1e-12);
  ck_assert(isnan(x.ratio_to_es));
  assoc_dataset_free(&ds);
}
END_TEST

/* Zero entries (underflowed softmax) are floored, not -inf, and the
 * rounding still respects the limit. */
START_TEST(test_rounding_zero_entries) {
  const double A[4 * 2] = {1, 0, 1, 0, 1, 0, 0, 1};
  assoc_assign_work *w = assoc_assign_work_new(2, 2, 4);
  int assoc[4];
  assoc_round_no_violation(A, 2, 2, 4, w, assoc);
  assert_feasible(2, 2, 4, assoc, "rounding");
  ck_assert_int_eq(assoc[3], 1);
  assoc_assign_work_free(w);
}
END_TEST

/* ---- assignment vs enumeration -------------------------------------------------------- */

/* Best total weight over every labelling in {-1..M-1}^K with loads <= N
 * serving min(K, M*N) UEs. */
static double brute_max_weight(const double *wt, int M, int N, int K) {
  int want = K < M * N ? K : M * N, label[12];
  double best = -INFINITY;
  long total = 1;
  for (int k = 0; k < K; k++) total *= M + 1;
  for (long code = 0; code < total; code++) {
    long c = code;
    int load[8] = {0}, served = 0, ok = 1;
    double sum = 0;
    for (int k = 0; k < K; k++, c /= M + 1) {
      label[k] = (int)(c % (M + 1)) - 1;
      if (label[k] < 0) continue;
      served++, sum += wt[k * M + label[k]];
      if (++load[label[k]] > N) ok = 0;
    }
    if (ok && served == want && sum > best) best = sum;
  }
  return best;
}

START_TEST(test_assignment_optimal) {
  /* Includes K > M*N (drops), K < M*N, N = 1 and M = 1. */
  const int sizes[][3] = {{2, 2, 4}, {2, 4, 8}, {3, 1, 5}, {2, 3, 4}, {3, 2, 6}, {1, 2, 4}};
  sg_rng rng;
  sg_rng_seed(&rng, 5);
  for (size_t c = 0; c < sizeof sizes / sizeof sizes[0]; c++) {
    int M = sizes[c][0], N = sizes[c][1], K = sizes[c][2];
    assoc_assign_work *w = assoc_assign_work_new(M, N, K);
    ck_assert_ptr_nonnull(w);
    for (int trial = 0; trial < 40; trial++) {
      double wt[64];
      int assoc[12];
      /* log-probability-like weights (<= 0), half the trials with ties */
      for (int i = 0; i < K * M; i++)
        wt[i] = trial % 2 ? -(double)sg_rng_below(&rng, 4) : log(sg_rng_uniform(&rng));
      double got = assoc_assign_max_weight(wt, M, N, K, w, assoc);
      assert_feasible(M, N, K, assoc, "assignment");
      double check = 0;
      for (int k = 0; k < K; k++)
        if (assoc[k] >= 0) check += wt[k * M + assoc[k]];
      ck_assert_double_eq_tol(got, check, 1e-12);
      double best = brute_max_weight(wt, M, N, K);
      ck_assert_msg(fabs(got - best) <= 1e-12 * (1 + fabs(best)),
                    "size %zu trial %d: assignment %.15g, enumeration %.15g", c, trial, got, best);
    }
    assoc_assign_work_free(w);
  }
}
END_TEST

/* Random A~ on a data set: the rounding never overloads, its rate never
 * beats ES (both serve min(K, M*N) UEs), and the metrics are bitwise the
 * same for 1 and 2 threads. */
START_TEST(test_rounding_feasible_and_threads) {
  assoc_dataset ds = make_data(2, 4, 10, 50, 21, 30.0);
  sg_rng rng;
  sg_rng_seed(&rng, 9);
  size_t n = (size_t)ds.S * ds.K * ds.M;
  double *A = malloc(n * sizeof *A), *es = malloc((size_t)ds.S * sizeof *es);
  int *nv = malloc((size_t)ds.S * ds.K * sizeof *nv);
  for (int64_t r = 0; r < ds.S * ds.K; r++) { /* rows summing to 1, sharp or flat */
    double sum = 0;
    for (int m = 0; m < ds.M; m++) sum += A[r * ds.M + m] = pow(sg_rng_uniform(&rng), 4);
    for (int m = 0; m < ds.M; m++) A[r * ds.M + m] /= sum;
  }
  ck_assert_int_eq(assoc_eval_es_rates(&ds, 1e9, es, NULL), 0);
  assoc_eval_metrics x1, x2;
  int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  ck_assert_int_eq(assoc_eval_assoc_metrics(&ds, A, es, &x1, &(assoc_eval_assocs){.nv = nv}), 0);
  omp_set_num_threads(2);
  ck_assert_int_eq(assoc_eval_assoc_metrics(&ds, A, es, &x2, NULL), 0);
  omp_set_num_threads(threads);
  ck_assert_int_eq(memcmp(&x1, &x2, sizeof x1), 0);
  for (int64_t s = 0; s < ds.S; s++) assert_feasible(ds.M, ds.N, ds.K, nv + s * ds.K, "rounding");
  ck_assert_double_eq(x1.violation_ratio, 1.0); /* K 10 > M*N 8: argmax always overloads */
  ck_assert(x1.rate_no_violation <= x1.es_rate + 1e-12);
  ck_assert(x1.ratio_nv_to_es <= 1.0 + 1e-12 && x1.ratio_nv_to_es > 0);
  free(A), free(es), free(nv);
  assoc_dataset_free(&ds);
}
END_TEST

/* Baseline metrics agree with assoc_metrics_compute. */
START_TEST(test_baseline_metrics) {
  assoc_dataset ds = make_data(2, 2, 5, 30, 3, 30.0);
  int *assoc = malloc((size_t)ds.S * ds.K * sizeof *assoc);
  double *rate = malloc((size_t)ds.S * sizeof *rate), *es = malloc((size_t)ds.S * sizeof *es);
  assoc_baseline_opts o = assoc_baseline_defaults();
  ck_assert_int_eq(assoc_run_method(&ds, ASSOC_MAXSINR, &o, assoc, rate, NULL, NULL, NULL, NULL),
                   0);
  ck_assert_int_eq(assoc_eval_es_rates(&ds, 1e9, es, NULL), 0);
  assoc_eval_metrics x;
  assoc_metrics ref;
  ck_assert_int_eq(assoc_eval_baseline_metrics(&ds, assoc, es, 0.5, &x), 0);
  ck_assert_int_eq(assoc_metrics_compute(&ds, assoc, NULL, es, 0.5, &ref, NULL, NULL), 0);
  ck_assert_double_eq(x.rate, ref.mean_rate);
  ck_assert_double_eq(x.violation_ratio, ref.violation_ratio);
  ck_assert_double_eq(x.rate_lb, ref.mean_lb_rate);
  ck_assert_double_eq_tol(x.ratio_to_es, ref.ratio_to_es, 1e-15);
  ck_assert_double_eq_tol(x.infer_us, 500.0, 1e-9);
  ck_assert_int_eq(x.violation_ratio > 0, 1); /* K 5 > M*N 4 */
  free(assoc), free(rate), free(es);
  assoc_dataset_free(&ds);
}
END_TEST

/* ---- models on other network sizes ----------------------------------------------------- */

static assoc_gnn_config small_config(assoc_gnn_variant v, sg_dtype dt) {
  assoc_gnn_config c = assoc_gnn_config_paper(v);
  c.d = 8, c.h = 16, c.L = 2, c.dtype = dt;
  return c;
}

/* Trained on M 2, K 8 (N 4): a random model of each variant runs on more UEs,
 * more BSs and another power, with finite metrics in range. */
START_TEST(test_model_larger_networks) {
  const struct {
    int M, K;
    double pt;
  } nets[] = {{2, 12, 30.0}, {3, 12, 30.0}, {4, 16, 40.0}, {2, 4, 20.0}};
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) {
    assoc_gnn_config c = small_config((assoc_gnn_variant)v, SG_F32);
    assoc_gnn *m = assoc_gnn_new(&c, 40 + v);
    ck_assert_ptr_nonnull(m);
    for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++) {
      assoc_dataset ds = make_data(nets[i].M, 4, nets[i].K, 24, 70 + i, nets[i].pt);
      assoc_eval_opts o = assoc_eval_defaults(3.0);
      o.batch = 10, o.latency_samples = 3;
      double *es = NULL;
      if (nets[i].M * nets[i].K <= 36) {
        es = malloc((size_t)ds.S * sizeof *es);
        ck_assert_int_eq(assoc_eval_es_rates(&ds, 1e9, es, NULL), 0);
      }
      assoc_eval_metrics x;
      sg_io_error err;
      ck_assert_msg(assoc_eval_model(m, &ds, &o, es, &x, NULL, NULL, &err) == 0, "%s", err.msg);
      ck_assert_int_eq(x.samples, 24);
      ck_assert_int_eq(x.K, nets[i].K);
      ck_assert(x.violation_ratio >= 0 && x.violation_ratio <= 1);
      ck_assert(isfinite(x.rate) && x.rate >= 0 && isfinite(x.rate_lb) && x.rate_lb >= 0);
      ck_assert(isfinite(x.rate_no_violation) && x.rate_no_violation > 0);
      ck_assert(isfinite(x.infer_us) && x.infer_us > 0 && isfinite(x.latency_us));
      ck_assert_int_eq(x.params, assoc_gnn_param_count(m));
      if (es) ck_assert(x.rate_no_violation <= x.es_rate + 1e-9);
      if (nets[i].K > nets[i].M * 4) ck_assert_double_eq(x.violation_ratio, 1.0);
      free(es);
      assoc_dataset_free(&ds);
    }
    assoc_gnn_free(m);
  }
}
END_TEST

/* Batched inference equals single-sample inference (float64), and a data
 * set with another N is refused with a message. */
START_TEST(test_infer_batch_invariant) {
  assoc_gnn_config c = small_config(ASSOC_GNN_ATTSKGS, SG_F64);
  assoc_gnn *m = assoc_gnn_new(&c, 3);
  assoc_dataset ds = make_data(3, 4, 9, 13, 8, 30.0);
  size_t n = (size_t)ds.S * ds.K * ds.M;
  double *A1 = malloc(n * sizeof *A1), *A5 = malloc(n * sizeof *A5);
  assoc_eval_opts o = assoc_eval_defaults(2.5);
  sg_io_error err;
  o.batch = 1;
  ck_assert_int_eq(assoc_eval_infer(m, &ds, &o, A1, NULL, &err), 0);
  o.batch = 5;
  ck_assert_int_eq(assoc_eval_infer(m, &ds, &o, A5, NULL, &err), 0);
  for (size_t i = 0; i < n; i++) ck_assert_double_eq_tol(A1[i], A5[i], 1e-12);
  for (int64_t r = 0; r < ds.S * ds.K; r++) { /* rows of A~ sum to 1 */
    double sum = 0;
    for (int j = 0; j < ds.M; j++) sum += A5[r * ds.M + j];
    ck_assert_double_eq_tol(sum, 1.0, 1e-12);
  }
  assoc_dataset other = make_data(2, 2, 4, 2, 1, 30.0);
  ck_assert_int_eq(assoc_eval_infer(m, &other, &o, A5, NULL, &err), -1);
  ck_assert_msg(strstr(err.msg, "N = 2") != NULL, "%s", err.msg);
  assoc_dataset_free(&other);
  free(A1), free(A5);
  assoc_dataset_free(&ds);
  assoc_gnn_free(m);
}
END_TEST

/* ---- a model's associations as .npz (assoc eval --out) ------------------------------- */

/* Member <prefix><suffix> of z: type t, shape (S, K) or (S) when K = 0. */
static const void *npz_member(const sg_npz *z, const char *prefix, const char *suffix,
                              sg_npy_type t, int64_t S, int64_t K) {
  char name[96];
  snprintf(name, sizeof name, "%s%s", prefix, suffix);
  const sg_array *a = sg_npz_get(z, name);
  ck_assert_msg(a != NULL, "missing %s", name);
  ck_assert_msg(a->type == t && a->ndim == (K ? 2 : 1) && a->shape[0] == S &&
                    (!K || a->shape[1] == K),
                "%s: wrong type or shape", name);
  return a->data;
}

/* Every rate equals R of its association recomputed from ds (1e-12
 * relative); returns their mean. Loads never exceed N where nv_like is 0 or
 * 1; nv_like 1 also asks for exactly min(K, M*N) UEs served. */
static double check_rates(const assoc_dataset *ds, const int *assoc, const double *rate,
                          int nv_like, const char *who) {
  int M = ds->M, K = ds->K, load[ASSOC_MAX_BS];
  double *gain = malloc((size_t)M * K * K * sizeof *gain), mean = 0;
  for (int64_t s = 0; s < ds->S; s++) {
    assoc_coupling_gain(ds, s, gain);
    double want = assoc_rate_int(gain, M, K, assoc + s * K, NULL);
    ck_assert_msg(fabs(rate[s] - want) <= 1e-12 * fabs(want), "%s sample %lld: %.17g vs %.17g", who,
                  (long long)s, rate[s], want);
    if (nv_like == 1) assert_feasible(M, ds->N, K, assoc + s * K, who);
    if (nv_like == 0) ck_assert_msg(assoc_loads(M, K, assoc + s * K, load) <= ds->N, "%s", who);
    mean += rate[s] / (double)ds->S;
  }
  free(gain);
  return mean;
}

/* The associations of one evaluation, written and read back. */
static void check_written(const assoc_dataset *ds, const char *path, const double *A,
                          const assoc_eval_metrics *x) {
  sg_io_error err;
  sg_npz *z = sg_npz_open(path, &err);
  ck_assert_msg(z != NULL, "%s", err.msg);
  int64_t S = ds->S, K = ds->K;
  const char *key = assoc_gnn_variant_key(ASSOC_GNN_ATTSKGS);
  char p[64];
  const int *oh = npz_member(z, key, "_onehot_assoc", SG_NPY_I32, S, K);
  snprintf(p, sizeof p, "%s_onehot", key);
  double r = check_rates(ds, oh, npz_member(z, p, "_rate", SG_NPY_F64, S, 0), -1, p);
  ck_assert_double_eq_tol(r, x->rate, 1e-12 * r);
  int *argmax = malloc((size_t)S * K * sizeof *argmax);
  assoc_argmax_rows(A, S * K, ds->M, argmax);
  ck_assert_int_eq(memcmp(oh, argmax, (size_t)S * K * sizeof *oh), 0);
  const int *lb = npz_member(z, key, "_lb_assoc", SG_NPY_I32, S, K);
  snprintf(p, sizeof p, "%s_lb", key);
  r = check_rates(ds, lb, npz_member(z, p, "_rate", SG_NPY_F64, S, 0), 0, p);
  ck_assert_double_eq_tol(r, x->rate_lb, 1e-12 * r);
  for (int64_t i = 0; i < S * K; i++) ck_assert(lb[i] == -1 || lb[i] == oh[i]);
  const int *nv = npz_member(z, key, "_nv_assoc", SG_NPY_I32, S, K);
  snprintf(p, sizeof p, "%s_nv", key);
  const double *nv_rate = npz_member(z, p, "_rate", SG_NPY_F64, S, 0);
  r = check_rates(ds, nv, nv_rate, 1, p);
  ck_assert_double_eq_tol(r, x->rate_no_violation, 1e-12 * r);
  const int *es = npz_member(z, "ES", "_assoc", SG_NPY_I32, S, K);
  const double *es_rate = npz_member(z, "ES", "_rate", SG_NPY_F64, S, 0);
  check_rates(ds, es, es_rate, 1, "ES");
  for (int64_t s = 0; s < S; s++) ck_assert(nv_rate[s] <= es_rate[s] * (1 + 1e-12));
  free(argmax);
  sg_npz_close(z);
}

/* A fresh small model on networks with drops (K > M*N) and without: the
 * associations assoc_eval_model returns, written with assoc_eval_npz_add and
 * read back, respect the loads and carry their recomputed rates. */
START_TEST(test_model_assocs_npz) {
  const int nets[][2] = {{2, 10}, {3, 7}}; /* M, K; N 4 */
  assoc_gnn_config c = small_config(ASSOC_GNN_ATTSKGS, SG_F32);
  assoc_gnn *m = assoc_gnn_new(&c, 17);
  char dir[] = "/tmp/sg_eval_XXXXXX", path[256];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/assoc.npz", dir);
  for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++) {
    assoc_dataset ds = make_data(nets[i][0], 4, nets[i][1], 16, 90 + i, 30.0);
    size_t S = (size_t)ds.S, SK = S * ds.K;
    int *ints = malloc(4 * SK * sizeof *ints);
    double *rates = malloc(4 * S * sizeof *rates), *A = malloc(SK * ds.M * sizeof *A);
    assoc_eval_assocs got = {ints, ints + SK, ints + 2 * SK, rates, rates + S, rates + 2 * S};
    ck_assert_int_eq(assoc_eval_es_rates(&ds, 1e9, rates + 3 * S, ints + 3 * SK), 0);
    assoc_eval_opts o = assoc_eval_defaults(3.0);
    o.batch = 5, o.latency_samples = 0;
    assoc_eval_metrics x;
    sg_io_error err;
    ck_assert_msg(assoc_eval_model(m, &ds, &o, rates + 3 * S, &x, A, &got, &err) == 0, "%s",
                  err.msg);
    sg_npz_writer *w = sg_npz_writer_open(path, true, &err);
    ck_assert_msg(w && !assoc_eval_npz_add(w, assoc_gnn_variant_key(c.variant), &ds, &got, &err),
                  "%s", err.msg);
    ck_assert_int_eq(assoc_npz_add_assoc(w, "ES", &ds, ints + 3 * SK, rates + 3 * S, &err), 0);
    ck_assert_msg(sg_npz_writer_close(w, &err) == 0, "%s", err.msg);
    check_written(&ds, path, A, &x);
    free(ints), free(rates), free(A);
    assoc_dataset_free(&ds);
  }
  ck_assert_int_eq(unlink(path), 0);
  ck_assert_int_eq(rmdir(dir), 0); /* nothing else left: no temporary file */
  assoc_gnn_free(m);
}
END_TEST

Suite *suite_eval(void) {
  Suite *s = suite_create("eval");
  TCase *tc = tcase_create("eval");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_hand_metrics);
  tcase_add_test(tc, test_rounding_zero_entries);
  tcase_add_test(tc, test_assignment_optimal);
  tcase_add_test(tc, test_rounding_feasible_and_threads);
  tcase_add_test(tc, test_baseline_metrics);
  tcase_add_test(tc, test_model_larger_networks);
  tcase_add_test(tc, test_infer_batch_invariant);
  tcase_add_test(tc, test_model_assocs_npz);
  suite_add_tcase(s, tc);
  return s;
}
