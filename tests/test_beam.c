/* Beamformers for a given association: the beam sum-rate against the MRT
 * rate of assoc_wireless.h, the Jacobi eigen-solver, WMMSE (monotone, power
 * budget, closed form with one UE, never below its MRT start), ZF (no
 * intra-cell interference, full power, refusals), thread independence. */
#include <complex.h>
#ifndef CMPLX /* glibc defines it for GCC only; clang has the builtin */
#define CMPLX(x, y) __builtin_complex((double)(x), (double)(y))
#endif
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "assoc_beam.h"
#include "assoc_solvers.h"
#include "sg_test.h"

typedef struct config {
  int M, N, K;
} config;

/* Including K > M*N (drops) and K < M*N. */
static const config configs[] = {{2, 4, 8}, {2, 2, 6}, {3, 2, 5}, {1, 3, 2}, {3, 4, 12}};
enum { N_CONFIGS = sizeof configs / sizeof configs[0], MAX_MKN = 3 * 12 * 4 };

static assoc_dataset make_data(config c, int64_t S, uint64_t seed) {
  assoc_scenario sc = assoc_scenario_default();
  sc.M = c.M, sc.N = c.N, sc.K = c.K, sc.seed = seed;
  assoc_dataset ds;
  sg_io_error err;
  ck_assert_msg(assoc_generate(&sc, S, &ds, &err) == 0, "%s", err.msg);
  return ds;
}

static uint64_t next(uint64_t *x) {
  *x = *x * 6364136223846793005ULL + 1442695040888963407ULL;
  return *x >> 33;
}

/* Each UE to a random BS or dropped (about 1 in M+1); with cap, a UE whose
 * BS is full is dropped instead. */
static void random_assoc(int M, int N, int K, int cap, uint64_t *x, int *assoc) {
  int load[8] = {0};
  for (int k = 0; k < K; k++) {
    int m = (int)(next(x) % (uint64_t)(M + 1)) - 1;
    if (m >= 0 && cap && load[m] >= N) m = -1;
    if (m >= 0) load[m]++;
    assoc[k] = m;
  }
}

static double rel(double a, double b) {
  return fabs(a - b) / fmax(1e-300, fmax(fabs(a), fabs(b)));
}

static double bs_power(const assoc_beam_problem *p, const double *V_re, const double *V_im, int m) {
  double s = 0.0;
  for (int i = m * p->K * p->N; i < (m + 1) * p->K * p->N; i++)
    s += V_re[i] * V_re[i] + V_im[i] * V_im[i];
  return s;
}

/* h_mk^T v_ml of the sample's beams. */
static double complex received(const assoc_beam_problem *p, const double *V_re, const double *V_im,
                               int m, int k, int l) {
  double complex s = 0.0;
  for (int n = 0; n < p->N; n++) {
    int64_t h = ((int64_t)m * p->K + k) * p->N + n, v = ((int64_t)m * p->K + l) * p->N + n;
    s += CMPLX(p->H_re[h], p->H_im[h]) * CMPLX(V_re[v], V_im[v]);
  }
  return s;
}

START_TEST(test_mrt_rate_matches_int) {
  double gain[3 * 12 * 12], V_re[MAX_MKN], V_im[MAX_MKN], s1[12], s2[12];
  int assoc[12], checked = 0;
  uint64_t x = 7;
  for (int c = 0; c < N_CONFIGS; c++) {
    assoc_dataset ds = make_data(configs[c], 60, 40 + c);
    for (int64_t s = 0; s < ds.S; s++) {
      random_assoc(ds.M, ds.N, ds.K, 0, &x, assoc); /* MRT accepts any load */
      assoc_beam_problem p = assoc_beam_problem_at(&ds, s, assoc);
      assoc_beam_mrt(&p, V_re, V_im);
      for (int m = 0; m < ds.M; m++) /* no beam at a BS that does not serve the UE */
        for (int k = 0; k < ds.K; k++)
          if (assoc[k] != m)
            for (int n = 0; n < ds.N; n++)
              ck_assert(V_re[(m * ds.K + k) * ds.N + n] == 0 &&
                        V_im[(m * ds.K + k) * ds.N + n] == 0);
      assoc_coupling_gain(&ds, s, gain);
      double want = assoc_rate_int(gain, ds.M, ds.K, assoc, s1);
      double got = assoc_rate_beams(&p, V_re, V_im, s2);
      ck_assert_msg(rel(got, want) <= 1e-12 || fabs(got - want) < 1e-300,
                    "config %d sample %lld: beams %.17g, int %.17g", c, (long long)s, got, want);
      for (int k = 0; k < ds.K; k++) ck_assert(rel(s1[k], s2[k]) <= 1e-12 || s1[k] == s2[k]);
      checked += want > 0;
    }
    assoc_dataset_free(&ds);
  }
  ck_assert_int_gt(checked, 200);
}
END_TEST

START_TEST(test_herm_eig) {
  uint64_t x = 3;
  for (int n = 1; n <= 6; n++) {
    double complex A[36], A0[36], D[36];
    double lambda[6];
    for (int i = 0; i < n; i++)
      for (int j = i; j < n; j++) {
        double re = (double)next(&x) / 2147483648.0 - 0.5,
               im = (double)next(&x) / 2147483648.0 - 0.5;
        A[i * n + j] = i == j ? re : CMPLX(re, im);
        A[j * n + i] = conj(A[i * n + j]);
      }
    memcpy(A0, A, sizeof A);
    assoc_herm_eig(n, (double *)A, lambda, (double *)D);
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++) {
        double complex r = 0.0, u = 0.0; /* (D diag D^H)_ij and (D^H D)_ij */
        for (int q = 0; q < n; q++) {
          r += D[i * n + q] * lambda[q] * conj(D[j * n + q]);
          u += conj(D[q * n + i]) * D[q * n + j];
        }
        ck_assert_msg(cabs(r - A0[i * n + j]) < 1e-13, "n %d: A(%d,%d) off by %g", n, i, j,
                      cabs(r - A0[i * n + j]));
        ck_assert(cabs(u - (i == j ? 1.0 : 0.0)) < 1e-13);
      }
  }
}
END_TEST

/* Full-power MRT (each BS's P_t over its served UEs), built from MRT. */
static double full_power_mrt_rate(const assoc_beam_problem *p, double *V_re, double *V_im) {
  assoc_beam_mrt(p, V_re, V_im);
  for (int m = 0; m < p->M; m++) {
    int load = 0;
    for (int k = 0; k < p->K; k++) load += p->assoc[k] == m;
    double f = load ? sqrt((double)p->N / load) : 0.0;
    for (int i = m * p->K * p->N; i < (m + 1) * p->K * p->N; i++) V_re[i] *= f, V_im[i] *= f;
  }
  return assoc_rate_beams(p, V_re, V_im, NULL);
}

START_TEST(test_wmmse_monotone_and_power) {
  double V_re[MAX_MKN], V_im[MAX_MKN], M_re[MAX_MKN], M_im[MAX_MKN];
  double trace[ASSOC_WMMSE_MAX_ITERS + 1];
  int assoc[12], gained = 0, total = 0;
  uint64_t x = 11;
  sg_io_error err;
  assoc_beam_work *w = NULL;
  for (int c = 0; c < N_CONFIGS; c++) {
    assoc_dataset ds = make_data(configs[c], 40, 60 + c);
    w = assoc_beam_work_new(ds.M, ds.N, ds.K);
    for (int64_t s = 0; s < ds.S; s++) {
      random_assoc(ds.M, ds.N, ds.K, 1, &x, assoc);
      assoc_beam_problem p = assoc_beam_problem_at(&ds, s, assoc);
      int iters = -1;
      double r = assoc_beam_wmmse(&p, w, V_re, V_im, trace, &iters, &err);
      ck_assert_msg(iters >= 1 && iters <= ASSOC_WMMSE_MAX_ITERS, "iters %d", iters);
      for (int i = 0; i < iters; i++)
        ck_assert_msg(trace[i + 1] >= trace[i] - 1e-10 * (1 + trace[i]),
                      "config %d sample %lld: rate fell from %.15g to %.15g at %d", c, (long long)s,
                      trace[i], trace[i + 1], i + 1);
      ck_assert(rel(r, trace[iters]) == 0);
      double direct = assoc_rate_beams(&p, V_re, V_im, NULL);
      ck_assert_msg(rel(r, direct) <= 1e-10 || fabs(r - direct) < 1e-12, "%.15g vs %.15g", r,
                    direct);
      double start = full_power_mrt_rate(&p, M_re, M_im);
      ck_assert_msg(rel(trace[0], start) <= 1e-10 || start == 0, "start %.15g, MRT %.15g", trace[0],
                    start);
      ck_assert(r >= start - 1e-10 * (1 + start));
      for (int m = 0; m < ds.M; m++)
        ck_assert_msg(bs_power(&p, V_re, V_im, m) <= p.pt_w * (1 + 1e-9), "BS %d: %.17g > %.17g", m,
                      bs_power(&p, V_re, V_im, m), p.pt_w);
      for (int k = 0; k < ds.K; k++) /* no beam where the UE is not served */
        for (int m = 0; m < ds.M; m++)
          if (assoc[k] != m)
            for (int n = 0; n < ds.N; n++) ck_assert(V_re[(m * ds.K + k) * ds.N + n] == 0);
      gained += r > start * 1.01, total++;
    }
    assoc_beam_work_free(w);
    assoc_dataset_free(&ds);
  }
  ck_assert_msg(gained > total / 2, "WMMSE improved on MRT in only %d of %d", gained, total);
}
END_TEST

/* With every BS full (K = M N, ES), full-power MRT is the system's MRT, so
 * WMMSE (which starts there and never loses) is never below it. */
START_TEST(test_wmmse_above_mrt_full_load) {
  assoc_dataset ds = make_data(configs[0], 150, 5);
  double gain[2 * 8 * 8], V_re[64], V_im[64];
  int assoc[8];
  assoc_work *aw = assoc_work_new(ds.M, ds.N, ds.K);
  assoc_beam_work *w = assoc_beam_work_new(ds.M, ds.N, ds.K);
  sg_io_error err;
  for (int64_t s = 0; s < ds.S; s++) {
    assoc_coupling_gain(&ds, s, gain);
    assoc_problem ap = {ds.M, ds.N, ds.K, gain};
    double mrt = assoc_es(&ap, aw, assoc, NULL);
    assoc_beam_problem p = assoc_beam_problem_at(&ds, s, assoc);
    double r = assoc_beam_wmmse(&p, w, V_re, V_im, NULL, NULL, &err);
    ck_assert_msg(r >= mrt - 1e-10 * mrt, "sample %lld: WMMSE %.15g < MRT %.15g", (long long)s, r,
                  mrt);
  }
  assoc_work_free(aw), assoc_beam_work_free(w);
  assoc_dataset_free(&ds);
}
END_TEST

START_TEST(test_wmmse_single_ue_closed_form) {
  assoc_dataset ds = make_data((config){1, 4, 1}, 30, 9);
  double V_re[4], V_im[4];
  int assoc[1] = {0};
  assoc_beam_work *w = assoc_beam_work_new(1, 4, 1);
  sg_io_error err;
  for (int64_t s = 0; s < ds.S; s++) {
    assoc_beam_problem p = assoc_beam_problem_at(&ds, s, assoc);
    double h2 = 0.0;
    for (int n = 0; n < 4; n++) h2 += p.H_re[n] * p.H_re[n] + p.H_im[n] * p.H_im[n];
    double want = log2(1.0 + p.pt_w * h2 / p.noise_w);
    double r = assoc_beam_wmmse(&p, w, V_re, V_im, NULL, NULL, &err);
    ck_assert_msg(rel(r, want) <= 1e-12, "sample %lld: %.17g, closed form %.17g", (long long)s, r,
                  want);
    ck_assert(rel(bs_power(&p, V_re, V_im, 0), p.pt_w) <= 1e-12);
  }
  assoc_beam_work_free(w);
  assoc_dataset_free(&ds);
}
END_TEST

START_TEST(test_zf) {
  double V_re[MAX_MKN], V_im[MAX_MKN];
  int assoc[12];
  uint64_t x = 5;
  sg_io_error err;
  for (int c = 0; c < N_CONFIGS; c++) {
    assoc_dataset ds = make_data(configs[c], 40, 80 + c);
    assoc_beam_work *w = assoc_beam_work_new(ds.M, ds.N, ds.K);
    for (int64_t s = 0; s < ds.S; s++) {
      random_assoc(ds.M, ds.N, ds.K, 1, &x, assoc);
      assoc_beam_problem p = assoc_beam_problem_at(&ds, s, assoc);
      ck_assert_msg(assoc_beam_zf(&p, w, V_re, V_im, &err) == 0, "%s", err.msg);
      for (int m = 0; m < ds.M; m++) {
        int load = 0;
        for (int k = 0; k < ds.K; k++) load += assoc[k] == m;
        double want = load ? p.pt_w : 0.0;
        ck_assert(fabs(bs_power(&p, V_re, V_im, m) - want) <= 1e-12 * p.pt_w);
        for (int k = 0; k < ds.K; k++)
          for (int l = 0; l < ds.K; l++) {
            if (assoc[k] != m || assoc[l] != m) continue;
            double leak = cabs(received(&p, V_re, V_im, m, k, l));
            double scale = cabs(received(&p, V_re, V_im, m, l, l));
            if (k == l)
              ck_assert(scale > 0);
            else
              ck_assert_msg(leak < 1e-9 * scale, "leak %g, signal %g", leak, scale);
          }
      }
    }
    assoc_beam_work_free(w);
    assoc_dataset_free(&ds);
  }
}
END_TEST

START_TEST(test_refusals) {
  assoc_dataset ds = make_data(configs[1], 4, 3); /* M 2, N 2, K 6 */
  double V_re[24], V_im[24];
  int over[6] = {0, 0, 0, 1, -1, -1}, bad[6] = {0, 2, 1, -1, -1, -1};
  assoc_beam_work *w = assoc_beam_work_new(ds.M, ds.N, ds.K);
  sg_io_error err;
  assoc_beam_problem p = assoc_beam_problem_at(&ds, 0, over);
  ck_assert_int_eq(assoc_beam_zf(&p, w, V_re, V_im, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "BS 0 serves 3"));
  ck_assert(isnan(assoc_beam_wmmse(&p, w, V_re, V_im, NULL, NULL, &err)));
  p.assoc = bad;
  ck_assert_int_eq(assoc_beam_zf(&p, w, V_re, V_im, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "BS 2"));
  /* two UEs of BS 0 with the same channel: ZF has no solution */
  int pair[6] = {0, 0, -1, -1, -1, -1};
  double H_re[24], H_im[24];
  memcpy(H_re, p.H_re, sizeof H_re), memcpy(H_im, p.H_im, sizeof H_im);
  for (int n = 0; n < 2; n++) H_re[2 + n] = H_re[n], H_im[2 + n] = H_im[n];
  p.H_re = H_re, p.H_im = H_im, p.assoc = pair;
  ck_assert_int_eq(assoc_beam_zf(&p, w, V_re, V_im, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "dependent"));
  /* a batched run names the first overloaded sample */
  int *all = malloc(sizeof(int) * 4 * 6);
  double *VR = malloc(sizeof(double) * 4 * 24), *VI = malloc(sizeof(double) * 4 * 24), rate[4];
  for (int i = 0; i < 24; i++) all[i] = i % 6 < 4 ? (i % 6) / 2 : -1;
  memcpy(all + 12, over, sizeof over);
  ck_assert_int_eq(assoc_beams_run(&ds, all, ASSOC_BEAM_WMMSE, VR, VI, rate, NULL, NULL, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "sample 2"));
  ck_assert_int_eq(assoc_beams_run(&ds, all, ASSOC_BEAM_MRT, VR, VI, rate, NULL, NULL, &err), 0);
  ck_assert_int_eq(assoc_beam_method_parse("WMMSE"), ASSOC_BEAM_WMMSE);
  ck_assert_int_eq(assoc_beam_method_parse("mmse"), -1);
  ck_assert_str_eq(assoc_beam_method_name(ASSOC_BEAM_ZF), "zf");
  free(all), free(VR), free(VI);
  assoc_beam_work_free(w);
  assoc_dataset_free(&ds);
}
END_TEST

START_TEST(test_run_thread_independent) {
  assoc_dataset ds = make_data(configs[0], 200, 17);
  assoc_baseline_opts o = assoc_baseline_defaults();
  size_t n = (size_t)ds.S * ds.M * ds.K * ds.N;
  int *assoc = malloc(sizeof(int) * ds.S * ds.K), it1[200], it2[200];
  double *V[4], r1[200], r2[200], ms, us;
  for (int i = 0; i < 4; i++) V[i] = malloc(n * sizeof(double));
  sg_io_error err;
  ck_assert_int_eq(assoc_run_method(&ds, ASSOC_ASSIGN, &o, assoc, r1, &ms, NULL, NULL, &err), 0);
  for (int m = 0; m < ASSOC_BEAM_METHOD_COUNT; m++) {
    omp_set_num_threads(1);
    ck_assert_int_eq(assoc_beams_run(&ds, assoc, m, V[0], V[1], r1, it1, &us, &err), 0);
    omp_set_num_threads(2);
    ck_assert_int_eq(assoc_beams_run(&ds, assoc, m, V[2], V[3], r2, it2, &us, &err), 0);
    ck_assert_msg(!memcmp(V[0], V[2], n * sizeof(double)) &&
                      !memcmp(V[1], V[3], n * sizeof(double)),
                  "%s beams depend on the threads", assoc_beam_method_name(m));
    ck_assert(!memcmp(r1, r2, sizeof r1) && !memcmp(it1, it2, sizeof it1));
    ck_assert(us > 0);
    for (int64_t s = 0; s < ds.S; s++) { /* the batched rate is the rate of the beams */
      assoc_beam_problem p = assoc_beam_problem_at(&ds, s, assoc + s * ds.K);
      int64_t o = s * ds.M * ds.K * ds.N;
      ck_assert(rel(r1[s], assoc_rate_beams(&p, V[0] + o, V[1] + o, NULL)) <= 1e-10);
    }
  }
  for (int i = 0; i < 4; i++) free(V[i]);
  free(assoc);
  assoc_dataset_free(&ds);
}
END_TEST

Suite *suite_beam(void) {
  Suite *s = suite_create("beam");
  TCase *tc = tcase_create("beam");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_mrt_rate_matches_int);
  tcase_add_test(tc, test_herm_eig);
  tcase_add_test(tc, test_wmmse_monotone_and_power);
  tcase_add_test(tc, test_wmmse_above_mrt_full_load);
  tcase_add_test(tc, test_wmmse_single_ue_closed_form);
  tcase_add_test(tc, test_zf);
  tcase_add_test(tc, test_refusals);
  tcase_add_test(tc, test_run_thread_independent);
  suite_add_tcase(s, tc);
  return s;
}
