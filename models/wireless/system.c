/* Scenario generator of docs/system.md: geometry, LOS/NLOS(/outage) link
 * state, 28 GHz path loss with shadowing, multipath ULA channels, and the
 * data-set container. The model-input features are in features.c. */
#include "assoc_wireless.h"

#include <math.h>
#include <string.h>

#include "models_internal.h"

/* Akdeniz et al. 2014, 28 GHz. */
#define LOS_DECAY_M 67.1
#define OUTAGE_DECAY_M 30.0
#define OUTAGE_OFFSET 5.2
static const double pl_alpha[2] = {72.0, 61.4}; /* [NLOS, LOS] */
static const double pl_beta[2] = {2.92, 2.0};
static const double pl_sigma[2] = {8.7, 5.8};

enum { MAX_PATHS = 255 };

assoc_scenario assoc_scenario_default(void) {
  assoc_scenario sc = {
      .M = 2,
      .N = 4,
      .K = 8,
      .area_m = 200.0,
      .bs_height_m = 10.0,
      .ue_height_m = 1.5,
      .pt_dbm = 30.0,
      .noise_dbm_hz = -174.0,
      .bandwidth_hz = 1e9,
      .noise_figure_db = 0.0,
      .path_mean = 1.8,
      .outage = false,
      .seed = 1,
  };
  return sc;
}

double assoc_scenario_noise_dbm(const assoc_scenario *sc) {
  return sc->noise_dbm_hz + 10.0 * log10(sc->bandwidth_hz) + sc->noise_figure_db;
}

static bool in_range(double x, double lo, double hi) {
  return isfinite(x) && x >= lo && x <= hi;
}

int assoc_scenario_check(const assoc_scenario *sc, sg_io_error *err) {
  if (sc->M < 1 || sc->M > ASSOC_MAX_BS) return assoc_fail(err, "number of BSs must be in 1..64");
  if (sc->N < 1 || sc->N > ASSOC_MAX_ANTENNAS)
    return assoc_fail(err, "antennas per BS must be in 1..1024");
  if (sc->K < 1 || sc->K > ASSOC_MAX_UES) return assoc_fail(err, "number of UEs must be in 1..512");
  if (!in_range(sc->area_m, 1.0, 1e6)) return assoc_fail(err, "area side must be in [1, 1e6] m");
  if (!in_range(sc->bs_height_m, 0.0, 1e4) || !in_range(sc->ue_height_m, 0.0, 1e4))
    return assoc_fail(err, "heights must be in [0, 1e4] m");
  if (!in_range(sc->pt_dbm, -100.0, 100.0))
    return assoc_fail(err, "transmit power must be in [-100, 100] dBm");
  if (!in_range(sc->noise_dbm_hz, -250.0, 0.0))
    return assoc_fail(err, "noise density must be in [-250, 0] dBm/Hz");
  if (!in_range(sc->bandwidth_hz, 1.0, 1e12))
    return assoc_fail(err, "bandwidth must be in [1, 1e12] Hz");
  if (!in_range(sc->noise_figure_db, 0.0, 100.0))
    return assoc_fail(err, "noise figure must be in [0, 100] dB");
  if (!in_range(sc->path_mean, 1e-6, 50.0))
    return assoc_fail(err, "path-count mean must be in (0, 50]");
  if (sc->seed >= (UINT64_C(1) << 63)) return assoc_fail(err, "seed must be below 2^63");
  return 0;
}

void assoc_bs_positions(int M, double area_m, double *xy) {
  int cols = 1;
  while (cols * cols < M) cols++;
  int rows = (M + cols - 1) / cols;
  double w = area_m / cols, h = area_m / rows;
  for (int i = 0; i < M; i++) {
    xy[2 * i] = (i % cols + 0.5) * w;
    xy[2 * i + 1] = (i / cols + 0.5) * h;
  }
}

/* ---- per-sample streams ---------------------------------------------------- */

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t assoc_stream_seed(uint64_t seed, uint64_t stream, uint64_t index) {
  uint64_t h = mix64(seed + 0x9e3779b97f4a7c15ULL);
  h = mix64(h ^ (stream * 0xd1b54a32d192ed03ULL + 0x632be59bd9b4e019ULL));
  return mix64(h ^ (index + 0x8cb92ba72f3d8dd7ULL));
}

/* ---- data-set container -------------------------------------------------------- */

int assoc_dataset_shape(assoc_dataset *ds, int64_t S, int M, int N, int K) {
  memset(ds, 0, sizeof *ds);
  if (S < 1 || M < 1 || N < 1 || K < 1) return -1;
  int64_t links = S * M * K;
  if (links / S != (int64_t)M * K || links > INT64_MAX / N) return -1;
  ds->S = S, ds->M = M, ds->N = N, ds->K = K;
  ds->scenario = assoc_scenario_default();
  return 0;
}

int assoc_dataset_alloc(assoc_dataset *ds, int64_t S, int M, int N, int K) {
  if (assoc_dataset_shape(ds, S, M, N, K)) return -1;
  int64_t links = S * M * K;
  ds->H_re = assoc_zalloc((size_t)(links * N), sizeof(double));
  ds->H_im = assoc_zalloc((size_t)(links * N), sizeof(double));
  ds->bs_pos = assoc_zalloc((size_t)(2 * (int64_t)M), sizeof(double));
  ds->ue_pos = assoc_zalloc((size_t)(2 * S * K), sizeof(double));
  ds->pl_db = assoc_zalloc((size_t)links, sizeof(double));
  ds->los = assoc_zalloc((size_t)links, 1);
  ds->outage = assoc_zalloc((size_t)links, 1);
  ds->n_paths = assoc_zalloc((size_t)links, 1);
  if (!ds->H_re || !ds->H_im || !ds->bs_pos || !ds->ue_pos || !ds->pl_db || !ds->los ||
      !ds->outage || !ds->n_paths) {
    assoc_dataset_free(ds);
    return -1;
  }
  return 0;
}

void assoc_dataset_free(assoc_dataset *ds) {
  if (!ds) return;
  sg_mfree(ds->H_re);
  sg_mfree(ds->H_im);
  sg_mfree(ds->bs_pos);
  sg_mfree(ds->ue_pos);
  sg_mfree(ds->pl_db);
  sg_mfree(ds->los);
  sg_mfree(ds->outage);
  sg_mfree(ds->n_paths);
  memset(ds, 0, sizeof *ds);
}

/* ---- channel of one link ------------------------------------------------------- */

static int poisson(sg_rng *r, double mean) {
  double limit = exp(-mean), p = 1.0;
  int k = 0;
  do {
    p *= sg_rng_uniform(r);
    k++;
  } while (p > limit && k <= MAX_PATHS);
  return k - 1;
}

typedef struct link_geometry {
  double dist_m;    /* 3-D distance */
  double angle_rad; /* atan2(y_ue - y_bs, x_ue - x_bs) */
} link_geometry;

static link_geometry geometry(const assoc_scenario *sc, const double *bs, const double *ue) {
  double dx = ue[0] - bs[0], dy = ue[1] - bs[1], dz = sc->bs_height_m - sc->ue_height_m;
  link_geometry g = {sqrt(dx * dx + dy * dy + dz * dz), atan2(dy, dx)};
  return g;
}

/* Adds one path gain * a(theta) / sqrt(L) to h (N entries). */
static void add_path(int N, double g_re, double g_im, double theta, double *h_re, double *h_im) {
  double w_re = cos(M_PI * sin(theta)), w_im = sin(M_PI * sin(theta));
  double a_re = g_re, a_im = g_im; /* g * w^n, n = 0 */
  for (int n = 0; n < N; n++) {
    h_re[n] += a_re;
    h_im[n] += a_im;
    double t = a_re * w_re - a_im * w_im;
    a_im = a_re * w_im + a_im * w_re;
    a_re = t;
  }
}

/* Draws link (m, k): state, path loss, paths; writes h and the record. */
static void draw_link(const assoc_scenario *sc, sg_rng *r, link_geometry g, int64_t link,
                      assoc_dataset *ds) {
  int N = ds->N;
  double *h_re = ds->H_re + link * N, *h_im = ds->H_im + link * N;
  double p_out = sc->outage ? fmax(0.0, 1.0 - exp(-g.dist_m / OUTAGE_DECAY_M + OUTAGE_OFFSET)) : 0;
  double p_los = (1.0 - p_out) * exp(-g.dist_m / LOS_DECAY_M);
  double u = sg_rng_uniform(r);
  int los = u >= p_out && u < p_out + p_los;
  double pl =
      pl_alpha[los] + 10.0 * pl_beta[los] * log10(g.dist_m) + pl_sigma[los] * sg_rng_normal(r);
  ds->los[link] = (uint8_t)los;
  ds->pl_db[link] = pl;
  ds->outage[link] = u < p_out;
  ds->n_paths[link] = 0;
  memset(h_re, 0, N * sizeof *h_re);
  memset(h_im, 0, N * sizeof *h_im);
  if (u < p_out) return;
  int L = poisson(r, sc->path_mean);
  if (L < 1) L = 1;
  ds->n_paths[link] = (uint8_t)L;
  double amp = sqrt(pow(10.0, -pl / 10.0) / 2.0 / L); /* CN(0, 10^(-PL/10)), then 1/sqrt(L) */
  for (int i = 0; i < L; i++) {
    double g_re = amp * sg_rng_normal(r), g_im = amp * sg_rng_normal(r);
    double theta = (los && i == 0) ? g.angle_rad : M_PI * (sg_rng_uniform(r) - 0.5);
    add_path(N, g_re, g_im, theta, h_re, h_im);
  }
}

/* Sample s into slot `slot` of an allocated ds whose bs_pos is filled. */
static void generate_sample(const assoc_scenario *sc, int64_t s, int64_t slot, assoc_dataset *ds) {
  sg_rng r;
  sg_rng_seed(&r, assoc_stream_seed(sc->seed, 0, (uint64_t)s));
  int M = ds->M, K = ds->K;
  double *ue = ds->ue_pos + slot * K * 2;
  for (int k = 0; k < 2 * K; k++) ue[k] = sc->area_m * sg_rng_uniform(&r);
  for (int m = 0; m < M; m++)
    for (int k = 0; k < K; k++) {
      link_geometry g = geometry(sc, ds->bs_pos + 2 * m, ue + 2 * k);
      draw_link(sc, &r, g, (slot * M + m) * K + k, ds);
    }
}

int assoc_dataset_for_scenario(const assoc_scenario *sc, int64_t S, assoc_dataset *ds,
                               sg_io_error *err) {
  memset(ds, 0, sizeof *ds);
  if (assoc_scenario_check(sc, err)) return -1;
  if (S < 1) return assoc_fail(err, "number of samples must be at least 1");
  if (assoc_dataset_alloc(ds, S, sc->M, sc->N, sc->K))
    return assoc_fail(err, "out of memory for the data set");
  ds->pt_dbm = sc->pt_dbm;
  ds->noise_dbm = assoc_scenario_noise_dbm(sc);
  ds->seed = sc->seed;
  ds->scenario = *sc;
  assoc_bs_positions(sc->M, sc->area_m, ds->bs_pos);
  return 0;
}

int assoc_generate_part(const assoc_scenario *sc, int64_t first, int64_t count, assoc_dataset *ds,
                        sg_io_error *err) {
  if (first < 0) return memset(ds, 0, sizeof *ds), assoc_fail(err, "negative first sample");
  if (assoc_dataset_for_scenario(sc, count, ds, err)) return -1;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; i++) generate_sample(sc, first + i, i, ds);
  return 0;
}

int assoc_generate(const assoc_scenario *sc, int64_t S, assoc_dataset *ds, sg_io_error *err) {
  return assoc_generate_part(sc, 0, S, ds, err);
}
