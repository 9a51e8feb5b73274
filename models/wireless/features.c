/* Model-input features of the association GNNs (assoc_wireless.h): the
 * paper's channel features (real and imaginary parts of the scaled h_mk)
 * and the link features (per-link SNR in dB, the channel direction, and the
 * MRT interference a link receives and causes). */
#include "assoc_wireless.h"

#include <math.h>
#include <string.h>

#include "models_internal.h"

/* ---- model-input features -------------------------------------------------------- */

double assoc_snr_amplitude(const assoc_dataset *ds) {
  double pt_w = pow(10.0, (ds->pt_dbm - 30.0) / 10.0);
  double noise_w = pow(10.0, (ds->noise_dbm - 30.0) / 10.0);
  return sqrt(pt_w / ds->N / noise_w);
}

/* Fixed blocks summed in parallel, then the block sums added in order: the
 * same value for every thread count (an OpenMP reduction is not), and for
 * a file read whole or in parts by the ranks of a job (each sums the
 * blocks that start in its samples). */
enum { SCALE_BLOCK = 4096 };

/* Channel elements per sample, and in the whole file ds is (a part of). */
static int64_t per_sample(const assoc_dataset *ds) {
  return (int64_t)ds->M * ds->K * ds->N;
}
static int64_t file_elements(const assoc_dataset *ds) {
  return assoc_dataset_total(ds) * per_sample(ds);
}

int64_t assoc_feature_blocks(const assoc_dataset *ds) {
  return (file_elements(ds) + SCALE_BLOCK - 1) / SCALE_BLOCK;
}

/* The sum of squares of block b of the file's channel (re and im parts);
 * ds holds it whole (its elements are at file index - part_first E). */
static double block_power(const assoc_dataset *ds, int64_t b) {
  int64_t n = file_elements(ds), skip = ds->part_first * per_sample(ds);
  int64_t end = (b + 1) * SCALE_BLOCK < n ? (b + 1) * SCALE_BLOCK : n;
  const double *re = ds->H_re - skip, *im = ds->H_im - skip;
  double s = 0.0;
  for (int64_t i = b * SCALE_BLOCK; i < end; i++) s += re[i] * re[i] + im[i] * im[i];
  return s;
}

/* The blocks whose first element lies in samples [lo, hi) of the file. */
static void owned_blocks(int64_t lo, int64_t hi, int64_t per, int64_t *b0, int64_t *b1) {
  *b0 = (lo * per + SCALE_BLOCK - 1) / SCALE_BLOCK;
  *b1 = (hi * per + SCALE_BLOCK - 1) / SCALE_BLOCK;
}

void assoc_feature_rows(int64_t lo, int64_t hi, int64_t total, int M, int K, int N, int64_t *first,
                        int64_t *end) {
  int64_t per = (int64_t)M * K * N, n = total * per, b0, b1;
  owned_blocks(lo, hi, per, &b0, &b1);
  *first = lo, *end = hi;
  if (b1 > b0) { /* the last owned block may reach into the samples after hi */
    int64_t last = b1 * SCALE_BLOCK < n ? b1 * SCALE_BLOCK : n;
    int64_t need = (last - 1) / per + 1;
    if (need > *end) *end = need;
  }
}

void assoc_feature_block_sums(const assoc_dataset *ds, int64_t lo, int64_t hi, double *sums) {
  int64_t b0, b1, n_blocks = assoc_feature_blocks(ds);
  owned_blocks(lo, hi, per_sample(ds), &b0, &b1);
  for (int64_t b = 0; b < n_blocks; b++) sums[b] = 0.0;
#pragma omp parallel for schedule(static)
  for (int64_t b = b0; b < b1; b++) sums[b] = block_power(ds, b);
}

/* The scale from the sum of every block's sum. */
static double scale_of_sum(const assoc_dataset *ds, double sum) {
  double rms = sqrt(sum / (2.0 * (double)file_elements(ds))) * assoc_snr_amplitude(ds);
  return rms > 0 ? rms : 1.0;
}

double assoc_feature_scale_of_sums(const assoc_dataset *ds, const double *sums) {
  double sum = 0.0;
  for (int64_t b = 0; b < assoc_feature_blocks(ds); b++) sum += sums[b];
  return scale_of_sum(ds, sum);
}

/* Blocks summed in parallel, their sums added in order; without memory for
 * the partial sums, the same sums on one thread (the same value). A part
 * is taken as a set of its own. */
double assoc_feature_scale(const assoc_dataset *part) {
  assoc_dataset ds = *part;
  ds.part_first = 0, ds.part_total = 0;
  int64_t n_blocks = assoc_feature_blocks(&ds);
  double *partial = sg_malloc((size_t)(n_blocks > 0 ? n_blocks : 1) * sizeof *partial);
  if (partial) {
    assoc_feature_block_sums(&ds, 0, ds.S, partial);
    double scale = assoc_feature_scale_of_sums(&ds, partial);
    sg_mfree(partial);
    return scale;
  }
  double sum = 0.0;
  for (int64_t b = 0; b < n_blocks; b++) sum += block_power(&ds, b);
  return scale_of_sum(&ds, sum);
}

/* Writes the features into f32 or f64 (whichever is not NULL). */
static void fill_features(const assoc_dataset *ds, int64_t start, int64_t count, double scale,
                          float *f32, double *f64) {
  int N = ds->N;
  int64_t links = count * ds->M * ds->K;
  double f = assoc_snr_amplitude(ds) / scale;
  const double *re = ds->H_re + start * ds->M * ds->K * N;
  const double *im = ds->H_im + start * ds->M * ds->K * N;
  for (int64_t l = 0; l < links; l++)
    for (int n = 0; n < N; n++) {
      double x_re = re[l * N + n] * f, x_im = im[l * N + n] * f;
      int64_t o = l * 2 * N + n;
      if (f32)
        f32[o] = (float)x_re, f32[o + N] = (float)x_im;
      else
        f64[o] = x_re, f64[o + N] = x_im;
    }
}

void assoc_features_fill(const assoc_dataset *ds, int64_t start, int64_t count, double scale,
                         sg_tensor *out, int64_t at) {
  float *f32 = sg_f32(out);
  double *f64 = sg_f64(out);
  fill_features(ds, start, count, scale, f32 ? f32 + at : NULL, f64 ? f64 + at : NULL);
}

void assoc_features_fill_f32(const assoc_dataset *ds, int64_t start, int64_t count, double scale,
                             float *out) {
  fill_features(ds, start, count, scale, out, NULL);
}

sg_tensor *assoc_features(sg_graph *g, const assoc_dataset *ds, int64_t start, int64_t count,
                          double scale, sg_dtype dt) {
  if (start < 0 || count < 1 || start + count > ds->S || !(scale > 0)) return NULL;
  int64_t shape[4] = {count, ds->M, ds->K, 2 * ds->N};
  sg_tensor *t = sg_empty(g, dt, 4, shape);
  if (t) assoc_features_fill(ds, start, count, scale, t, 0);
  return t;
}

/* ---- the link features ------------------------------------------------------------ */

/* Fixed affine maps that bring each link feature to about zero mean and unit
 * spread on the default scenario (docs/system.md, "Model inputs"): measured
 * on 20,000 samples, SNR -6.6 dB mean and 18.5 dB sd, log10(1 + I_in)
 * 0.67 mean 0.97 sd, log10(1 + I_out) 1.44 mean 0.86 sd. Constants, not
 * statistics of a training set, so a model needs nothing besides its
 * weights to run on any data set. */
#define SNR_DB_CENTER (-5.0)
#define SNR_DB_SPREAD 20.0
#define SNR_DB_FLOOR (-100.0) /* a zero channel (outage) */
#define I_IN_CENTER 0.7
#define I_OUT_CENTER 1.4

static const char *const kind_names[ASSOC_FEATURE_KIND_COUNT] = {"channel", "link", "link-nodes"};

const char *assoc_feature_kind_name(assoc_feature_kind k) {
  return assoc_enum_name(kind_names, ASSOC_FEATURE_KIND_COUNT, (int)k);
}

int assoc_feature_kind_parse(const char *name) {
  return assoc_enum_parse(kind_names, ASSOC_FEATURE_KIND_COUNT, name);
}

int assoc_feature_width(assoc_feature_kind k, int N) {
  return k == ASSOC_FEATURES_CHANNEL ? 2 * N : 2 * N + 3;
}

void assoc_node_feature_widths(assoc_feature_kind k, int *fp, int *fq) {
  *fp = *fq = k == ASSOC_FEATURES_LINK_NODES ? 2 : 1;
}

/* h^T conj(g) of two length-N channels split into real and imaginary parts. */
static void inner(const double *h_re, const double *h_im, const double *g_re, const double *g_im,
                  int N, double *re, double *im) {
  *re = 0.0, *im = 0.0;
  for (int n = 0; n < N; n++) {
    *re += h_re[n] * g_re[n] + h_im[n] * g_im[n];
    *im += h_im[n] * g_re[n] - h_re[n] * g_im[n];
  }
}

/* The MRT interference of link (m, k), over the noise: i_in, what UE k
 * receives from BS m's beams for the other UEs; i_out, what BS m's beam for
 * k puts on the other UEs (every UE served by m, beams of power P_t / N). */
static void link_interference(const double *re, const double *im, int K, int N, int k, double gain,
                              double *i_in, double *i_out) {
  const double *hk_re = re + k * N, *hk_im = im + k * N;
  double norm2_k, unused;
  inner(hk_re, hk_im, hk_re, hk_im, N, &norm2_k, &unused);
  *i_in = 0.0, *i_out = 0.0;
  for (int l = 0; l < K; l++) {
    if (l == k) continue;
    double norm2_l, x_re, x_im;
    inner(re + l * N, im + l * N, re + l * N, im + l * N, N, &norm2_l, &unused);
    inner(hk_re, hk_im, re + l * N, im + l * N, N, &x_re, &x_im);
    double overlap = gain * (x_re * x_re + x_im * x_im);
    if (norm2_l > 0) *i_in += overlap / norm2_l;
    if (norm2_k > 0) *i_out += overlap / norm2_k;
  }
}

/* h / |h| turned so that its first entry is real and >= 0: the common phase
 * of a channel carries nothing about the association. */
static void direction(const double *h_re, const double *h_im, int N, double *f) {
  double norm2, unused;
  inner(h_re, h_im, h_re, h_im, N, &norm2, &unused);
  double norm = sqrt(norm2), a0 = hypot(h_re[0], h_im[0]);
  double rot_re = a0 > 0 ? h_re[0] / a0 : 1.0, rot_im = a0 > 0 ? -h_im[0] / a0 : 0.0;
  for (int n = 0; n < N; n++) {
    double u_re = norm > 0 ? h_re[n] / norm : 0.0, u_im = norm > 0 ? h_im[n] / norm : 0.0;
    f[n] = u_re * rot_re - u_im * rot_im;
    f[N + n] = u_re * rot_im + u_im * rot_re;
  }
  f[0] = norm > 0 ? a0 / norm : 0.0, f[N] = 0.0; /* exactly, not up to round-off */
}

/* The 2N + 3 features of link (m, k) of sample s. */
static void link_features(const assoc_dataset *ds, int64_t s, int m, int k, double *f) {
  int K = ds->K, N = ds->N;
  const double *re = ds->H_re + (s * ds->M + m) * K * N, *im = ds->H_im + (s * ds->M + m) * K * N;
  double amp = assoc_snr_amplitude(ds), gain = amp * amp; /* P_t / N / sigma^2 */
  double norm2, unused, i_in, i_out;
  inner(re + k * N, im + k * N, re + k * N, im + k * N, N, &norm2, &unused);
  double snr = gain * norm2;
  double snr_db = snr > 0 ? fmax(10.0 * log10(snr), SNR_DB_FLOOR) : SNR_DB_FLOOR;
  f[0] = (snr_db - SNR_DB_CENTER) / SNR_DB_SPREAD;
  direction(re + k * N, im + k * N, N, f + 1);
  link_interference(re, im, K, N, k, gain, &i_in, &i_out);
  f[1 + 2 * N] = log10(1.0 + i_in) - I_IN_CENTER;
  f[2 + 2 * N] = log10(1.0 + i_out) - I_OUT_CENTER;
}

void assoc_link_features_fill(const assoc_dataset *ds, int64_t start, int64_t count, sg_tensor *out,
                              int64_t at) {
  int width = 2 * ds->N + 3;
  float *f32 = sg_f32(out);
  double *f64 = sg_f64(out), f[2 * ASSOC_MAX_ANTENNAS + 3];
  for (int64_t s = 0; s < count; s++)
    for (int m = 0; m < ds->M; m++)
      for (int k = 0; k < ds->K; k++) {
        int64_t o = at + ((s * ds->M + m) * ds->K + k) * width;
        link_features(ds, start + s, m, k, f);
        for (int i = 0; i < width; i++)
          if (f64)
            f64[o + i] = f[i];
          else
            f32[o + i] = (float)f[i];
      }
}

/* ---- node features ------------------------------------------------------------------ */

static double link_snr_db(const assoc_dataset *ds, int64_t s, int m, int k) {
  int N = ds->N;
  const double *re = ds->H_re + ((s * ds->M + m) * ds->K + k) * N;
  const double *im = ds->H_im + ((s * ds->M + m) * ds->K + k) * N;
  double norm2, unused, amp = assoc_snr_amplitude(ds);
  inner(re, im, re, im, N, &norm2, &unused);
  double snr = amp * amp * norm2;
  return snr > 0 ? fmax(10.0 * log10(snr), SNR_DB_FLOOR) : SNR_DB_FLOOR;
}

void assoc_node_features(const assoc_dataset *ds, int64_t s, assoc_feature_kind k, double *p,
                         double *q) {
  int M = ds->M, K = ds->K, fp, fq;
  assoc_node_feature_widths(k, &fp, &fq);
  for (int m = 0; m < M; m++) p[m * fp] = ds->pt_dbm / 30.0;
  for (int u = 0; u < K; u++) q[u * fq] = 1.0;
  if (k != ASSOC_FEATURES_LINK_NODES) return;
  for (int m = 0; m < M; m++) p[m * fp + 1] = -1.0; /* (0 - N) / N, raised below */
  for (int u = 0; u < K; u++) {
    int best = 0;
    double first = link_snr_db(ds, s, 0, u), second = SNR_DB_FLOOR;
    for (int m = 1; m < M; m++) {
      double x = link_snr_db(ds, s, m, u);
      if (x > first)
        second = first, first = x, best = m;
      else if (x > second)
        second = x;
    }
    p[best * fp + 1] += 1.0 / ds->N;
    q[u * fq] = M > 1 ? (first - second) / SNR_DB_SPREAD : 0.0;
    q[u * fq + 1] = (first - SNR_DB_CENTER) / SNR_DB_SPREAD;
  }
}
