/* MRT couplings, SINR and sum-rate for integer and fractional associations
 * (docs/system.md "Beamforming and rate"). Everything is normalised by the
 * noise: c[m,k,l]/sigma, so SINR_k = |s_k|^2 / (sum_{l != k} |z_kl|^2 + 1). */
#include "assoc_wireless.h"

#include <math.h>

static double norm2(const double *re, const double *im, int N) {
  double s = 0.0;
  for (int n = 0; n < N; n++) s += re[n] * re[n] + im[n] * im[n];
  return s;
}

/* h_mk^T conj(h_ml): (a + ib)(c - id) summed over the antennas. */
static void inner(const double *a_re, const double *a_im, const double *b_re, const double *b_im,
                  int N, double *out_re, double *out_im) {
  double re = 0.0, im = 0.0;
  for (int n = 0; n < N; n++) {
    re += a_re[n] * b_re[n] + a_im[n] * b_im[n];
    im += a_im[n] * b_re[n] - a_re[n] * b_im[n];
  }
  *out_re = re, *out_im = im;
}

/* c[m,k,l]/sigma for every (m, k, l) of sample s: the complex values into
 * c_re/c_im, or (gain not NULL) their squared magnitudes into gain. */
static void couplings(const assoc_dataset *ds, int64_t s, double *c_re, double *c_im,
                      double *gain) {
  int M = ds->M, K = ds->K, N = ds->N;
  double amp = assoc_snr_amplitude(ds);
  const double *H_re = ds->H_re + s * M * K * N, *H_im = ds->H_im + s * M * K * N;
  for (int m = 0; m < M; m++)
    for (int l = 0; l < K; l++) {
      const double *hl_re = H_re + (m * K + l) * N, *hl_im = H_im + (m * K + l) * N;
      double nl = sqrt(norm2(hl_re, hl_im, N));
      double f = nl > 0 ? amp / nl : 0.0; /* a zero channel gets a zero beam */
      for (int k = 0; k < K; k++) {
        double re, im;
        inner(H_re + (m * K + k) * N, H_im + (m * K + k) * N, hl_re, hl_im, N, &re, &im);
        int64_t i = ((int64_t)m * K + k) * K + l;
        if (gain)
          gain[i] = (re * re + im * im) * f * f;
        else
          c_re[i] = re * f, c_im[i] = im * f;
      }
    }
}

void assoc_coupling(const assoc_dataset *ds, int64_t s, double *c_re, double *c_im) {
  couplings(ds, s, c_re, c_im, NULL);
}

void assoc_coupling_gain(const assoc_dataset *ds, int64_t s, double *gain) {
  couplings(ds, s, NULL, NULL, gain);
}

double assoc_rate_int(const double *gain, int M, int K, const int *assoc, double *sinr) {
  (void)M;
  double rate = 0.0;
  for (int k = 0; k < K; k++) {
    double x = 0.0;
    if (assoc[k] >= 0) {
      double interference = 0.0;
      for (int l = 0; l < K; l++)
        if (l != k && assoc[l] >= 0) interference += gain[((int64_t)assoc[l] * K + k) * K + l];
      x = gain[((int64_t)assoc[k] * K + k) * K + k] / (1.0 + interference);
      rate += log2(1.0 + x);
    }
    if (sinr) sinr[k] = x;
  }
  return rate;
}

/* z_kl = sum_m a_lm c[m,k,l]. */
static void mixed_coupling(const double *c_re, const double *c_im, int M, int K, const double *A,
                           int k, int l, double *re, double *im) {
  *re = 0.0, *im = 0.0;
  for (int m = 0; m < M; m++) {
    int64_t i = ((int64_t)m * K + k) * K + l;
    *re += A[l * M + m] * c_re[i];
    *im += A[l * M + m] * c_im[i];
  }
}

double assoc_rate_frac(const double *c_re, const double *c_im, int M, int K, const double *A,
                       double *sinr) {
  double rate = 0.0;
  for (int k = 0; k < K; k++) {
    double interference = 0.0, re, im;
    for (int l = 0; l < K; l++) {
      if (l == k) continue;
      mixed_coupling(c_re, c_im, M, K, A, k, l, &re, &im);
      interference += re * re + im * im;
    }
    mixed_coupling(c_re, c_im, M, K, A, k, k, &re, &im);
    double x = (re * re + im * im) / (1.0 + interference);
    rate += log2(1.0 + x);
    if (sinr) sinr[k] = x;
  }
  return rate;
}

int assoc_loads(int M, int K, const int *assoc, int *load) {
  int worst = 0;
  for (int m = 0; m < M; m++) load[m] = 0;
  for (int k = 0; k < K; k++)
    if (assoc[k] >= 0 && assoc[k] < M) load[assoc[k]]++;
  for (int m = 0; m < M; m++)
    if (load[m] > worst) worst = load[m];
  return worst;
}

/* ---- batched ------------------------------------------------------------------ */

int assoc_dataset_rates(const assoc_dataset *ds, const int *assoc, double *rate) {
  int M = ds->M, K = ds->K, failed = 0;
  size_t n = (size_t)M * K * K;
#pragma omp parallel
  {
    double *gain = sg_malloc(n * sizeof *gain);
    if (!gain) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t s = 0; s < ds->S; s++) {
      if (!gain) continue;
      assoc_coupling_gain(ds, s, gain);
      rate[s] = assoc_rate_int(gain, M, K, assoc + s * K, NULL);
    }
    sg_mfree(gain);
  }
  return failed ? -1 : 0;
}

int assoc_dataset_rates_frac(const assoc_dataset *ds, const double *A, double *rate) {
  int M = ds->M, K = ds->K, failed = 0;
  size_t n = (size_t)M * K * K;
#pragma omp parallel
  {
    double *c = sg_malloc(2 * n * sizeof *c);
    if (!c) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t s = 0; s < ds->S; s++) {
      if (!c) continue;
      assoc_coupling(ds, s, c, c + n);
      rate[s] = assoc_rate_frac(c, c + n, M, K, A + s * K * M, NULL);
    }
    sg_mfree(c);
  }
  return failed ? -1 : 0;
}
