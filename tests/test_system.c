/* System model: hand-computed SINR/rate, generator statistics and
 * determinism, data-set I/O and validation, model-input features. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assoc_wireless.h"
#include "sg_test.h"

/* ---- the hand-computed 2-BS 2-UE case ----------------------------------------------------
 * N = 2, P_t = 2 W (so P_t/N = 1 W), noise 1 W: couplings are h_mk^T conj(h_ml)/|h_ml|.
 *   h_11 = [2, 0]  h_12 = [1, 1]      (BS 1 to UE 1, UE 2)
 *   h_21 = [0, 1]  h_22 = [0, 3j]     (BS 2)
 * |c|^2 by (m, k, l):  BS1: (1,1)=4 (1,2)=2 (2,1)=1 (2,2)=2
 *                      BS2: (1,1)=1 (1,2)=1 (2,1)=9 (2,2)=9,  c[2,1,2] = -j, c[2,2,1] = 3j. */
static void hand_case(assoc_dataset *ds) {
  ck_assert_int_eq(assoc_dataset_alloc(ds, 1, 2, 2, 2), 0);
  ds->pt_dbm = 30.0 + 10.0 * log10(2.0);
  ds->noise_dbm = 30.0;
  const double re[8] = {2, 0, 1, 1, 0, 1, 0, 0}, im[8] = {0, 0, 0, 0, 0, 0, 0, 3};
  memcpy(ds->H_re, re, sizeof re);
  memcpy(ds->H_im, im, sizeof im);
}

START_TEST(test_hand_gain_and_rate) {
  assoc_dataset ds;
  hand_case(&ds);
  double gain[8], sinr[2];
  assoc_coupling_gain(&ds, 0, gain);
  const double want[8] = {4, 2, 1, 2, 1, 1, 9, 9};
  for (int i = 0; i < 8; i++) ck_assert_double_eq_tol(gain[i], want[i], 1e-12);
  int split[2] = {0, 1}, both1[2] = {0, 0}, swapped[2] = {1, 0}, drop2[2] = {0, -1};
  /* UE1: 4 / (|c[2,1,2]|^2 + 1) = 2; UE2: 9 / (|c[1,2,1]|^2 + 1) = 4.5 */
  ck_assert_double_eq_tol(assoc_rate_int(gain, 2, 2, split, sinr), log2(3.0 * 5.5), 1e-12);
  ck_assert_double_eq_tol(sinr[0], 2.0, 1e-12);
  ck_assert_double_eq_tol(sinr[1], 4.5, 1e-12);
  /* both on BS 1: 4 / (2 + 1) and 2 / (1 + 1) */
  ck_assert_double_eq_tol(assoc_rate_int(gain, 2, 2, both1, sinr), log2(7.0 / 3.0 * 2.0), 1e-12);
  /* swapped: 1 / (2 + 1) and 2 / (9 + 1) */
  ck_assert_double_eq_tol(assoc_rate_int(gain, 2, 2, swapped, sinr), log2(4.0 / 3.0 * 1.2), 1e-12);
  /* a dropped UE gets nothing and interferes with nobody */
  ck_assert_double_eq_tol(assoc_rate_int(gain, 2, 2, drop2, sinr), log2(5.0), 1e-12);
  ck_assert_double_eq(sinr[1], 0.0);
  assoc_dataset_free(&ds);
}
END_TEST

START_TEST(test_hand_fractional) {
  assoc_dataset ds;
  hand_case(&ds);
  double c[16], sinr[2];
  assoc_coupling(&ds, 0, c, c + 8);
  ck_assert_double_eq_tol(c[8 + 5], -1.0, 1e-12); /* c[2,1,2] = -j */
  ck_assert_double_eq_tol(c[8 + 6], 3.0, 1e-12);  /* c[2,2,1] = 3j */
  /* UE1 half on each BS, UE2 on BS 2: s_1 = 0.5*2 + 0.5*1, z_12 = -j;
   * s_2 = 3, z_21 = 0.5*1 + 0.5*3j. */
  const double A[4] = {0.5, 0.5, 0.0, 1.0};
  double r = assoc_rate_frac(c, c + 8, 2, 2, A, sinr);
  ck_assert_double_eq_tol(sinr[0], 2.25 / 2.0, 1e-12);
  ck_assert_double_eq_tol(sinr[1], 9.0 / 3.5, 1e-12);
  ck_assert_double_eq_tol(r, log2(1 + 2.25 / 2.0) + log2(1 + 9.0 / 3.5), 1e-12);
  /* one-hot rows reproduce the integer evaluator, a zero row is a dropped UE */
  const double onehot[4] = {1, 0, 0, 0};
  int assoc[2] = {0, -1};
  double gain[8];
  assoc_coupling_gain(&ds, 0, gain);
  ck_assert_double_eq_tol(assoc_rate_frac(c, c + 8, 2, 2, onehot, NULL),
                          assoc_rate_int(gain, 2, 2, assoc, NULL), 1e-12);
  assoc_dataset_free(&ds);
}
END_TEST

START_TEST(test_zero_channel_zero_beam) {
  assoc_dataset ds;
  hand_case(&ds);
  for (int n = 0; n < 2; n++) ds.H_re[2 + n] = ds.H_im[2 + n] = 0; /* h_12 = 0 */
  double gain[8];
  assoc_coupling_gain(&ds, 0, gain);
  for (int i = 0; i < 8; i++) ck_assert(isfinite(gain[i]));
  ck_assert_double_eq(gain[1], 0.0); /* BS 1's beam for UE 2 is zero */
  ck_assert_double_eq(gain[3], 0.0);
  assoc_dataset_free(&ds);
}
END_TEST

/* ---- generator ------------------------------------------------------------------------ */

static assoc_dataset generate(assoc_scenario sc, int64_t S) {
  assoc_dataset ds;
  sg_io_error err;
  ck_assert_msg(assoc_generate(&sc, S, &ds, &err) == 0, "%s", err.msg);
  return ds;
}

static int same_data(const assoc_dataset *a, const assoc_dataset *b, int64_t S) {
  size_t h = (size_t)S * a->M * a->K * a->N * sizeof(double);
  size_t l = (size_t)S * a->M * a->K;
  return !memcmp(a->H_re, b->H_re, h) && !memcmp(a->H_im, b->H_im, h) &&
         !memcmp(a->ue_pos, b->ue_pos, (size_t)S * a->K * 2 * sizeof(double)) &&
         !memcmp(a->los, b->los, l) && !memcmp(a->pl_db, b->pl_db, l * sizeof(double));
}

START_TEST(test_generator_deterministic) {
  assoc_scenario sc = assoc_scenario_default();
  sc.seed = 42;
  omp_set_num_threads(1);
  assoc_dataset one = generate(sc, 300);
  omp_set_num_threads(2);
  assoc_dataset two = generate(sc, 300), prefix = generate(sc, 100);
  ck_assert_msg(same_data(&one, &two, 300), "thread count changed the data");
  ck_assert_msg(same_data(&one, &prefix, 100), "sample s depends on S");
  sc.seed = 43;
  assoc_dataset other = generate(sc, 100);
  ck_assert_msg(!same_data(&one, &other, 100), "the seed changed nothing");
  assoc_dataset_free(&one), assoc_dataset_free(&two), assoc_dataset_free(&prefix);
  assoc_dataset_free(&other);
}
END_TEST

START_TEST(test_bs_grid) {
  double xy[10];
  assoc_bs_positions(2, 200, xy);
  ck_assert(xy[0] == 50 && xy[1] == 100 && xy[2] == 150 && xy[3] == 100);
  assoc_bs_positions(5, 300, xy); /* 3 columns, 2 rows, row-major */
  ck_assert(xy[0] == 50 && xy[1] == 75 && xy[4] == 250 && xy[6] == 50 && xy[7] == 225);
  assoc_bs_positions(1, 200, xy);
  ck_assert(xy[0] == 100 && xy[1] == 100);
}
END_TEST

static double link_dist(const assoc_dataset *ds, int64_t s, int m, int k) {
  const double *bs = ds->bs_pos + 2 * m, *ue = ds->ue_pos + (s * ds->K + k) * 2;
  double dz = ds->scenario.bs_height_m - ds->scenario.ue_height_m;
  return sqrt(pow(ue[0] - bs[0], 2) + pow(ue[1] - bs[1], 2) + dz * dz);
}

/* LOS frequency, path-loss residuals, path counts and E|h|^2 = N 10^(-PL/10). */
START_TEST(test_generator_statistics) {
  assoc_dataset ds = generate(assoc_scenario_default(), 2000);
  double los = 0, p_los = 0, paths = 0, power = 0, resid = 0, resid2 = 0, n_los = 0;
  int64_t links = 0;
  for (int64_t s = 0; s < ds.S; s++)
    for (int m = 0; m < ds.M; m++)
      for (int k = 0; k < ds.K; k++, links++) {
        int64_t i = (s * ds.M + m) * ds.K + k;
        double d = link_dist(&ds, s, m, k), h2 = 0;
        for (int n = 0; n < ds.N; n++)
          h2 += pow(ds.H_re[i * ds.N + n], 2) + pow(ds.H_im[i * ds.N + n], 2);
        los += ds.los[i], p_los += exp(-d / 67.1), paths += ds.n_paths[i];
        power += h2 / (ds.N * pow(10, -ds.pl_db[i] / 10));
        if (ds.los[i]) {
          double r = ds.pl_db[i] - (61.4 + 20 * log10(d));
          resid += r, resid2 += r * r, n_los++;
        }
        ck_assert(ds.n_paths[i] >= 1 && !ds.outage[i]);
      }
  ck_assert_double_eq_tol(los / links, p_los / links, 0.015);
  ck_assert_double_eq_tol(paths / links, 1.8 + exp(-1.8), 0.03);
  ck_assert_double_eq_tol(power / links, 1.0, 0.05);
  ck_assert_double_eq_tol(resid / n_los, 0.0, 0.3);
  ck_assert_double_eq_tol(sqrt(resid2 / n_los), 5.8, 0.3);
  ck_assert_double_eq_tol(ds.noise_dbm, -84.0, 1e-9);
  assoc_dataset_free(&ds);
}
END_TEST

/* A single-path LOS link is g a(theta) with theta the geometric angle. */
START_TEST(test_los_path_angle) {
  assoc_dataset ds = generate(assoc_scenario_default(), 300);
  int checked = 0;
  for (int64_t i = 0; i < ds.S * ds.M * ds.K; i++) {
    if (!ds.los[i] || ds.n_paths[i] != 1) continue;
    int64_t s = i / (ds.M * ds.K);
    int m = (int)(i / ds.K % ds.M), k = (int)(i % ds.K);
    const double *bs = ds.bs_pos + 2 * m, *ue = ds.ue_pos + (s * ds.K + k) * 2;
    double phase = M_PI * sin(atan2(ue[1] - bs[1], ue[0] - bs[0]));
    double a_re = ds.H_re[i * ds.N], a_im = ds.H_im[i * ds.N];
    double b_re = ds.H_re[i * ds.N + 1], b_im = ds.H_im[i * ds.N + 1];
    double q = (a_re * a_re + a_im * a_im); /* h_1 / h_0 = e^{j phase} */
    ck_assert_double_eq_tol((b_re * a_re + b_im * a_im) / q, cos(phase), 1e-9);
    ck_assert_double_eq_tol((b_im * a_re - b_re * a_im) / q, sin(phase), 1e-9);
    checked++;
  }
  ck_assert_int_gt(checked, 20);
  assoc_dataset_free(&ds);
}
END_TEST

START_TEST(test_outage_option) {
  assoc_scenario sc = assoc_scenario_default();
  sc.outage = true;
  sc.area_m = 1000; /* far links are mostly in outage */
  assoc_dataset ds = generate(sc, 200);
  int outages = 0;
  for (int64_t i = 0; i < ds.S * ds.M * ds.K; i++) {
    if (!ds.outage[i]) continue;
    outages++;
    ck_assert(!ds.los[i] && ds.n_paths[i] == 0);
    for (int n = 0; n < ds.N; n++) ck_assert(ds.H_re[i * ds.N + n] == 0);
  }
  ck_assert_int_gt(outages, 100);
  assoc_dataset_free(&ds);
}
END_TEST

START_TEST(test_scenario_check) {
  sg_io_error err;
  assoc_scenario sc = assoc_scenario_default();
  ck_assert_int_eq(assoc_scenario_check(&sc, &err), 0);
  sc.K = 0;
  ck_assert_int_eq(assoc_scenario_check(&sc, &err), -1);
  ck_assert_ptr_nonnull(strstr(err.msg, "UEs"));
  sc = assoc_scenario_default();
  sc.pt_dbm = NAN;
  ck_assert_int_eq(assoc_scenario_check(&sc, &err), -1);
  assoc_dataset ds;
  ck_assert_int_eq(assoc_generate(&sc, 10, &ds, &err), -1);
}
END_TEST

/* ---- features and batched rates -------------------------------------------------------- */

START_TEST(test_features) {
  assoc_dataset ds = generate(assoc_scenario_default(), 50);
  double scale = assoc_feature_scale(&ds), amp = assoc_snr_amplitude(&ds);
  ck_assert(scale > 0 && isfinite(scale));
  ck_assert_double_eq_tol(amp, sqrt(1.0 / 4 / pow(10, -11.4)), 1e-6 * amp);
  sg_tensor *t = assoc_features(NULL, &ds, 10, 5, scale, SG_F64);
  ck_assert_ptr_nonnull(t);
  ck_assert(t->ndim == 4 && t->shape[0] == 5 && t->shape[1] == 2 && t->shape[2] == 8 &&
            t->shape[3] == 8);
  const double *f = sg_f64(t);
  int64_t link = (10 * ds.M + 1) * ds.K + 3; /* sample 10, BS 1, UE 3 */
  int64_t at = ((0 * ds.M + 1) * ds.K + 3) * 2 * ds.N;
  for (int n = 0; n < ds.N; n++) {
    ck_assert_double_eq_tol(f[at + n], ds.H_re[link * ds.N + n] * amp / scale, 1e-12);
    ck_assert_double_eq_tol(f[at + ds.N + n], ds.H_im[link * ds.N + n] * amp / scale, 1e-12);
  }
  double sum2 = 0; /* the scale makes the features unit-RMS over the data set */
  sg_tensor *all = assoc_features(NULL, &ds, 0, ds.S, scale, SG_F32);
  for (int64_t i = 0; i < all->numel; i++) sum2 += sg_get(all, i) * sg_get(all, i);
  ck_assert_double_eq_tol(sum2 / all->numel, 1.0, 1e-4);
  ck_assert_ptr_null(assoc_features(NULL, &ds, 48, 5, scale, SG_F32));
  sg_free(t), sg_free(all);
  assoc_dataset_free(&ds);
}
END_TEST

START_TEST(test_batched_rates) {
  assoc_dataset ds = generate(assoc_scenario_default(), 40);
  int *assoc = malloc(sizeof(int) * ds.S * ds.K);
  double *A = calloc((size_t)(ds.S * ds.K * ds.M), sizeof(double));
  double rate[40], frac[40], gain[2 * 8 * 8];
  for (int64_t i = 0; i < ds.S * ds.K; i++) {
    assoc[i] = (int)(i % 3) - 1; /* -1, 0, 1 */
    if (assoc[i] >= 0) A[i * ds.M + assoc[i]] = 1.0;
  }
  ck_assert_int_eq(assoc_dataset_rates(&ds, assoc, rate), 0);
  ck_assert_int_eq(assoc_dataset_rates_frac(&ds, A, frac), 0);
  for (int64_t s = 0; s < ds.S; s++) {
    assoc_coupling_gain(&ds, s, gain);
    ck_assert_double_eq_tol(rate[s], assoc_rate_int(gain, ds.M, ds.K, assoc + s * ds.K, NULL),
                            1e-12);
    ck_assert_double_eq_tol(frac[s], rate[s], 1e-9 * (1 + rate[s]));
  }
  free(assoc), free(A);
  assoc_dataset_free(&ds);
}
END_TEST

/* ---- .npz I/O ------------------------------------------------------------------------- */

static void temp_path(char *buf, size_t n, const char *tag) {
  snprintf(buf, n, "%s/sg_test_system_%d_%s.npz", P_tmpdir, (int)getpid(), tag);
}

START_TEST(test_save_load_roundtrip) {
  assoc_scenario sc = assoc_scenario_default();
  sc.M = 3, sc.K = 5, sc.N = 2, sc.seed = 9, sc.pt_dbm = 27, sc.outage = true;
  assoc_dataset ds = generate(sc, 30), back;
  char path[256];
  temp_path(path, sizeof path, "rt");
  sg_io_error err;
  ck_assert_msg(assoc_dataset_save(&ds, path, &err) == 0, "%s", err.msg);
  ck_assert_msg(assoc_dataset_load(path, &back, &err) == 0, "%s", err.msg);
  ck_assert(back.S == 30 && back.M == 3 && back.K == 5 && back.N == 2 && back.seed == 9);
  ck_assert(back.pt_dbm == 27 && back.noise_dbm == ds.noise_dbm && back.scenario.outage);
  ck_assert(same_data(&ds, &back, 30));
  ck_assert(!memcmp(ds.outage, back.outage, 30 * 15) && !memcmp(ds.n_paths, back.n_paths, 30 * 15));
  ck_assert(!memcmp(ds.bs_pos, back.bs_pos, 6 * sizeof(double)));
  unlink(path);
  assoc_dataset_free(&ds), assoc_dataset_free(&back);
}
END_TEST

/* Writes a minimal data set by hand, with one member altered by `mode`. */
static void write_broken(const char *path, int mode) {
  sg_io_error err;
  sg_npz_writer *w = sg_npz_writer_open(path, true, &err);
  ck_assert_ptr_nonnull(w);
  double h[2 * 1 * 2 * 1] = {1e-5, 2e-5, 3e-5, mode == 1 ? NAN : 4e-5};
  int64_t hs[4] = {2, 1, 2, mode == 2 ? 2 : 1};
  sg_array H = {.type = SG_NPY_F64, .ndim = 4, .numel = 4, .data = h};
  memcpy(H.shape, hs, sizeof hs);
  if (mode == 2) H.shape[3] = 1, H.shape[2] = 1, H.shape[0] = 4; /* wrong K */
  double bs[2] = {0, 0}, ue[8] = {0};
  sg_array B = {.type = SG_NPY_F64, .ndim = 2, .shape = {1, 2}, .numel = 2, .data = bs};
  sg_array U = {.type = SG_NPY_F64, .ndim = 3, .shape = {2, 2, 2}, .numel = 8, .data = ue};
  unsigned char los[4] = {0, 1, 0, mode == 3 ? 7 : 1};
  sg_array L = {.type = SG_NPY_U8, .ndim = 3, .shape = {2, 1, 2}, .numel = 4, .data = los};
  ck_assert_int_eq(sg_npz_add_array(w, "H_re", &H, &err), 0);
  ck_assert_int_eq(sg_npz_add_array(w, "H_im", &H, &err), 0);
  ck_assert_int_eq(sg_npz_add_array(w, "bs_pos", &B, &err), 0);
  ck_assert_int_eq(sg_npz_add_array(w, "ue_pos", &U, &err), 0);
  if (mode != 4) ck_assert_int_eq(sg_npz_add_array(w, "los", &L, &err), 0);
  ck_assert_int_eq(sg_npz_add_scalar_i64(w, "M", 1, &err), 0);
  ck_assert_int_eq(sg_npz_add_scalar_i64(w, "N", 1, &err), 0);
  ck_assert_int_eq(sg_npz_add_scalar_i64(w, "K", mode == 5 ? -3 : 2, &err), 0);
  ck_assert_int_eq(sg_npz_add_scalar_f64(w, "pt_dbm", 30, &err), 0);
  ck_assert_int_eq(sg_npz_add_scalar_f64(w, "noise_dbm", -84, &err), 0);
  ck_assert_int_eq(sg_npz_add_scalar_i64(w, "seed", 3, &err), 0);
  ck_assert_int_eq(sg_npz_writer_close(w, &err), 0);
}

START_TEST(test_load_rejects_bad_files) {
  const char *expect[] = {NULL, "non-finite", "H_re", "los", "los", "'K'"};
  char path[256];
  for (int mode = 0; mode < 6; mode++) {
    temp_path(path, sizeof path, "bad");
    write_broken(path, mode);
    assoc_dataset ds;
    sg_io_error err = {{0}};
    int rc = assoc_dataset_load(path, &ds, &err);
    if (mode == 0) {
      ck_assert_msg(rc == 0, "%s", err.msg);
      ck_assert(ds.S == 2 && ds.K == 2 && ds.n_paths[0] == 0); /* optional members absent */
      assoc_dataset_free(&ds);
    } else {
      ck_assert_msg(rc == -1, "mode %d accepted", mode);
      ck_assert_msg(strstr(err.msg, expect[mode]), "mode %d: '%s'", mode, err.msg);
    }
    unlink(path);
  }
  assoc_dataset ds;
  sg_io_error err;
  ck_assert_int_eq(assoc_dataset_load("/nonexistent/x.npz", &ds, &err), -1);
}
END_TEST

Suite *suite_system(void) {
  Suite *s = suite_create("system");
  TCase *tc = tcase_create("system");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_hand_gain_and_rate);
  tcase_add_test(tc, test_hand_fractional);
  tcase_add_test(tc, test_zero_channel_zero_beam);
  tcase_add_test(tc, test_generator_deterministic);
  tcase_add_test(tc, test_bs_grid);
  tcase_add_test(tc, test_generator_statistics);
  tcase_add_test(tc, test_los_path_angle);
  tcase_add_test(tc, test_outage_option);
  tcase_add_test(tc, test_scenario_check);
  tcase_add_test(tc, test_features);
  tcase_add_test(tc, test_batched_rates);
  tcase_add_test(tc, test_save_load_roundtrip);
  tcase_add_test(tc, test_load_rejects_bad_files);
  suite_add_tcase(s, tc);
  return s;
}
