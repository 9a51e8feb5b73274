/* MRT and intra-cell zero-forcing beams. */
#include <math.h>
#include <string.h>

#include "beam_internal.h"
#include "models_internal.h"

void assoc_beam_mrt(const assoc_beam_problem *p, double *V_re, double *V_im) {
  int N = p->N;
  size_t MKN = (size_t)p->M * p->K * N;
  memset(V_re, 0, MKN * sizeof *V_re), memset(V_im, 0, MKN * sizeof *V_im);
  double amp = sqrt(p->pt_w / N);
  for (int k = 0; k < p->K; k++) {
    if (p->assoc[k] < 0) continue;
    size_t o = ((size_t)p->assoc[k] * p->K + k) * N;
    double norm2 = 0.0;
    for (int n = 0; n < N; n++)
      norm2 += p->H_re[o + n] * p->H_re[o + n] + p->H_im[o + n] * p->H_im[o + n];
    double f = norm2 > 0 ? amp / sqrt(norm2) : 0.0; /* a zero channel gets a zero beam */
    for (int n = 0; n < N; n++) V_re[o + n] = f * p->H_re[o + n], V_im[o + n] = -f * p->H_im[o + n];
  }
}

void beam_mrt_full(const assoc_beam_problem *p, assoc_beam_work *w) {
  int N = p->N, K = p->K;
  memset(w->v, 0, (size_t)p->M * K * N * sizeof *w->v);
  for (int m = 0; m < p->M; m++)
    for (int i = 0; i < w->n_served[m]; i++) {
      int k = w->served[m * N + i];
      size_t o = ((size_t)m * K + k) * N;
      double norm = sqrt(creal(beam_dot(w->g + o, w->g + o, N)));
      double f = norm > 0 ? sqrt(p->pt_w / w->n_served[m]) / norm : 0.0;
      for (int n = 0; n < N; n++) w->v[o + n] = f * w->g[o + n];
    }
}

/* Cholesky factor L (lower, in place) of the n x n Hermitian gram; -1 when
 * a pivot falls below 1e-13 of its diagonal entry (dependent columns). */
static int cholesky(double complex *a, int n) {
  for (int j = 0; j < n; j++) {
    double d = creal(a[j * n + j]), diag = d;
    for (int k = 0; k < j; k++) d -= creal(a[j * n + k] * conj(a[j * n + k]));
    if (!(d > 1e-13 * diag)) return -1;
    double ljj = sqrt(d);
    a[j * n + j] = ljj;
    for (int i = j + 1; i < n; i++) {
      double complex s = a[i * n + j];
      for (int k = 0; k < j; k++) s -= a[i * n + k] * conj(a[j * n + k]);
      a[i * n + j] = s / ljj;
    }
  }
  return 0;
}

/* x = (L L^H)^{-1} e_l, in place in x (n). */
static void cholesky_unit_solve(const double complex *L, int n, int l, double complex *x) {
  for (int i = 0; i < n; i++) {
    double complex s = i == l ? 1.0 : 0.0;
    for (int k = 0; k < i; k++) s -= L[i * n + k] * x[k];
    x[i] = s / L[i * n + i];
  }
  for (int i = n - 1; i >= 0; i--) {
    double complex s = x[i];
    for (int k = i + 1; k < n; k++) s -= conj(L[k * n + i]) * x[k];
    x[i] = s / L[i * n + i];
  }
}

/* The ZF beams of BS m into w->v; -1 when its channels are dependent. */
static int zf_cell(const assoc_beam_problem *p, assoc_beam_work *w, int m) {
  int N = p->N, K = p->K, n = w->n_served[m];
  const int *S = w->served + m * N;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++)
      w->A[i * n + j] =
          beam_dot(w->g + ((size_t)m * K + S[i]) * N, w->g + ((size_t)m * K + S[j]) * N, N);
  if (cholesky(w->A, n)) return -1;
  for (int l = 0; l < n; l++) {
    double complex *v = w->v + ((size_t)m * K + S[l]) * N;
    cholesky_unit_solve(w->A, n, l, w->t);
    for (int a = 0; a < N; a++) v[a] = 0.0;
    for (int j = 0; j < n; j++) {
      const double complex *g = w->g + ((size_t)m * K + S[j]) * N;
      for (int a = 0; a < N; a++) v[a] += g[a] * w->t[j];
    }
    double f = sqrt(p->pt_w / n / creal(beam_dot(v, v, N)));
    for (int a = 0; a < N; a++) v[a] *= f;
  }
  return 0;
}

int assoc_beam_zf(const assoc_beam_problem *p, assoc_beam_work *w, double *V_re, double *V_im,
                  sg_io_error *err) {
  if (assoc_beam_check(p, 1, err)) return -1;
  beam_load_channels(p, w);
  beam_group(p, w);
  memset(w->v, 0, (size_t)p->M * p->K * p->N * sizeof *w->v);
  for (int m = 0; m < p->M; m++)
    if (zf_cell(p, w, m))
      return assoc_fail(err, "BS %d: the channels of its %d UEs are linearly dependent", m,
                        w->n_served[m]);
  beam_store(w, w->v, V_re, V_im);
  return 0;
}
