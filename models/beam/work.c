/* The beamformers' shared pieces: names, problems, checks, scratch, and the
 * sum-rate of eq. (1) for given beams. */
#include <math.h>

#include "beam_internal.h"
#include "models_internal.h"

static const char *const method_names[] = {"mrt", "zf", "wmmse"};

const char *assoc_beam_method_name(assoc_beam_method m) {
  return assoc_enum_name(method_names, ASSOC_BEAM_METHOD_COUNT, (int)m);
}

int assoc_beam_method_parse(const char *name) {
  return assoc_enum_parse(method_names, ASSOC_BEAM_METHOD_COUNT, name);
}

static double dbm_to_w(double dbm) {
  return pow(10.0, (dbm - 30.0) / 10.0);
}

assoc_beam_problem assoc_beam_problem_at(const assoc_dataset *ds, int64_t s, const int *assoc) {
  int64_t off = s * ds->M * ds->K * ds->N;
  return (assoc_beam_problem){ds->M,
                              ds->N,
                              ds->K,
                              ds->H_re + off,
                              ds->H_im + off,
                              dbm_to_w(ds->pt_dbm),
                              dbm_to_w(ds->noise_dbm),
                              assoc};
}

/* h^T v over the antennas, in the caller's units. */
static void received(const double *h_re, const double *h_im, const double *v_re, const double *v_im,
                     int N, double *re, double *im) {
  double a = 0.0, b = 0.0;
  for (int n = 0; n < N; n++) {
    a += h_re[n] * v_re[n] - h_im[n] * v_im[n];
    b += h_re[n] * v_im[n] + h_im[n] * v_re[n];
  }
  *re = a, *im = b;
}

/* |h_{m k}^T v_{m l}|^2 / sigma^2 with m = assoc[l]. */
static double coupling(const assoc_beam_problem *p, const double *V_re, const double *V_im, int k,
                       int l, double sigma) {
  int N = p->N;
  int64_t hk = ((int64_t)p->assoc[l] * p->K + k) * N, vl = ((int64_t)p->assoc[l] * p->K + l) * N;
  double re, im;
  received(p->H_re + hk, p->H_im + hk, V_re + vl, V_im + vl, N, &re, &im);
  re /= sigma, im /= sigma;
  return re * re + im * im;
}

double assoc_rate_beams(const assoc_beam_problem *p, const double *V_re, const double *V_im,
                        double *sinr) {
  double sigma = sqrt(p->noise_w), rate = 0.0;
  for (int k = 0; k < p->K; k++) {
    double x = 0.0;
    if (p->assoc[k] >= 0) {
      double interference = 0.0;
      for (int l = 0; l < p->K; l++)
        if (l != k && p->assoc[l] >= 0) interference += coupling(p, V_re, V_im, k, l, sigma);
      x = coupling(p, V_re, V_im, k, k, sigma) / (1.0 + interference);
      rate += log2(1.0 + x);
    }
    if (sinr) sinr[k] = x;
  }
  return rate;
}

assoc_beam_work *assoc_beam_work_new(int M, int N, int K) {
  if (M < 1 || N < 1 || K < 1 || M > ASSOC_MAX_BS || N > ASSOC_MAX_ANTENNAS || K > ASSOC_MAX_UES)
    return NULL;
  assoc_beam_work *w = assoc_zalloc(1, sizeof *w);
  if (!w) return NULL;
  size_t MKN = (size_t)M * K * N, NN = (size_t)N * N;
  w->M = M, w->N = N, w->K = K;
  w->g = assoc_zalloc(MKN, sizeof *w->g), w->v = assoc_zalloc(MKN, sizeof *w->v);
  w->u = assoc_zalloc(K, sizeof *w->u), w->wt = assoc_zalloc(K, sizeof *w->wt);
  w->A = assoc_zalloc(NN, sizeof *w->A), w->D = assoc_zalloc(NN, sizeof *w->D);
  w->t = assoc_zalloc(N, sizeof *w->t);
  w->lambda = assoc_zalloc(N, sizeof *w->lambda), w->phi = assoc_zalloc(N, sizeof *w->phi);
  w->served = assoc_zalloc((size_t)M * N, sizeof *w->served);
  w->n_served = assoc_zalloc(M, sizeof *w->n_served);
  if (!w->g || !w->v || !w->u || !w->wt || !w->A || !w->D || !w->t || !w->lambda || !w->phi ||
      !w->served || !w->n_served) {
    assoc_beam_work_free(w);
    return NULL;
  }
  return w;
}

void assoc_beam_work_free(assoc_beam_work *w) {
  if (!w) return;
  sg_mfree(w->g), sg_mfree(w->v), sg_mfree(w->u), sg_mfree(w->wt), sg_mfree(w->A);
  sg_mfree(w->D), sg_mfree(w->t), sg_mfree(w->lambda), sg_mfree(w->phi);
  sg_mfree(w->served), sg_mfree(w->n_served), sg_mfree(w);
}

int assoc_beam_check(const assoc_beam_problem *p, int need_cap, sg_io_error *err) {
  int load[ASSOC_MAX_BS] = {0};
  for (int k = 0; k < p->K; k++) {
    if (p->assoc[k] < -1 || p->assoc[k] >= p->M)
      return assoc_fail(err, "UE %d is associated with BS %d, outside -1..%d", k, p->assoc[k],
                        p->M - 1);
    if (p->assoc[k] >= 0) load[p->assoc[k]]++;
  }
  for (int m = 0; m < p->M && need_cap; m++)
    if (load[m] > p->N)
      return assoc_fail(err, "BS %d serves %d UEs, more than its N = %d antennas", m, load[m],
                        p->N);
  return 0;
}

void beam_load_channels(const assoc_beam_problem *p, assoc_beam_work *w) {
  double f = 1.0 / sqrt(p->noise_w);
  size_t MKN = (size_t)p->M * p->K * p->N;
  for (size_t i = 0; i < MKN; i++) w->g[i] = f * CMPLX(p->H_re[i], -p->H_im[i]);
}

void beam_group(const assoc_beam_problem *p, assoc_beam_work *w) {
  for (int m = 0; m < p->M; m++) w->n_served[m] = 0;
  for (int k = 0; k < p->K; k++) {
    int m = p->assoc[k];
    if (m >= 0) w->served[m * p->N + w->n_served[m]++] = k;
  }
}

void beam_store(const assoc_beam_work *w, const double complex *v, double *V_re, double *V_im) {
  size_t MKN = (size_t)w->M * w->K * w->N;
  for (size_t i = 0; i < MKN; i++) V_re[i] = creal(v[i]), V_im[i] = cimag(v[i]);
}

double complex beam_dot(const double complex *a, const double complex *b, int N) {
  double complex s = 0.0;
  for (int n = 0; n < N; n++) s += conj(a[n]) * b[n];
  return s;
}

static double abs2(double complex z) {
  return creal(z) * creal(z) + cimag(z) * cimag(z);
}

double beam_rate(const assoc_beam_work *w, const int *assoc, const double complex *v,
                 double *sinr) {
  int K = w->K, N = w->N;
  double rate = 0.0;
  for (int k = 0; k < K; k++) {
    double x = 0.0;
    if (assoc[k] >= 0) {
      double interference = 0.0, signal = 0.0;
      for (int l = 0; l < K; l++) {
        if (assoc[l] < 0) continue;
        size_t gk = ((size_t)assoc[l] * K + k) * N, vl = ((size_t)assoc[l] * K + l) * N;
        double c = abs2(beam_dot(w->g + gk, v + vl, N));
        if (l == k)
          signal = c;
        else
          interference += c;
      }
      x = signal / (1.0 + interference);
      rate += log2(1.0 + x);
    }
    if (sinr) sinr[k] = x;
  }
  return rate;
}
