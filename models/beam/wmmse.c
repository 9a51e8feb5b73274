/* WMMSE for multi-cell MISO with a given association (Shi, Razaviyayn, Luo
 * and He, IEEE TSP 2011), in the noise-normalised channels g_mk of
 * beam_internal.h (sigma^2 = 1), beams in sqrt(W). */
#include <math.h>

#include "beam_internal.h"
#include "models_internal.h"

static double abs2(double complex z) {
  return creal(z) * creal(z) + cimag(z) * cimag(z);
}

/* Receivers u_k = s_k / T_k and weights w_k = 1 + SINR_k (= 1/(1 - u_k^* s_k)
 * computed without the cancellation) of the current beams, with s_k =
 * g_{b(k)k}^H v_k and T_k the total received power plus noise. Returns
 * sum_k log2 w_k, which is the sum-rate of the beams. */
static double receivers(const assoc_beam_problem *p, assoc_beam_work *w) {
  int K = p->K, N = p->N;
  const int *b = p->assoc;
  double rate = 0.0;
  for (int k = 0; k < K; k++) {
    w->u[k] = 0.0, w->wt[k] = 0.0;
    if (b[k] < 0) continue;
    double interference = 0.0;
    double complex s = 0.0;
    for (int l = 0; l < K; l++) {
      if (b[l] < 0) continue;
      double complex z =
          beam_dot(w->g + ((size_t)b[l] * K + k) * N, w->v + ((size_t)b[l] * K + l) * N, N);
      if (l == k)
        s = z;
      else
        interference += abs2(z);
    }
    w->u[k] = s / (abs2(s) + interference + 1.0);
    w->wt[k] = 1.0 + abs2(s) / (interference + 1.0);
    rate += log2(w->wt[k]);
  }
  return rate;
}

/* A_m = sum over served l of w_l |u_l|^2 g_ml g_ml^H into w->A. */
static void build_A(const assoc_beam_problem *p, assoc_beam_work *w, int m) {
  int K = p->K, N = p->N;
  for (int i = 0; i < N * N; i++) w->A[i] = 0.0;
  for (int l = 0; l < K; l++) {
    if (p->assoc[l] < 0) continue;
    double c = w->wt[l] * abs2(w->u[l]);
    const double complex *g = w->g + ((size_t)m * K + l) * N;
    for (int i = 0; i < N; i++)
      for (int j = 0; j < N; j++) w->A[i * N + j] += c * g[i] * conj(g[j]);
  }
}

/* t_n = d_n^H g_mk for the eigenvectors d_n (columns of w->D). */
static void project(const assoc_beam_work *w, const double complex *g, double complex *t) {
  int N = w->N;
  for (int n = 0; n < N; n++) {
    double complex s = 0.0;
    for (int i = 0; i < N; i++) s += conj(w->D[i * N + n]) * g[i];
    t[n] = s;
  }
}

/* P(mu) = sum over kept directions of phi_n / (lambda_n + mu)^2. */
static double power_at(const assoc_beam_work *w, double mu) {
  double s = 0.0;
  for (int n = 0; n < w->N; n++)
    if (w->lambda[n] > 0) s += w->phi[n] / ((w->lambda[n] + mu) * (w->lambda[n] + mu));
  return s;
}

/* The multiplier of BS m's power budget: 0 when the (pseudo-)inverse of A_m
 * meets it, else the feasible end of a bisection of P(mu) = P_t. Directions
 * with lambda_n <= 1e-14 lambda_max are dropped (lambda_n set to 0): every
 * g_mk of a UE with u_k != 0 lies in the range of A_m, so their components
 * there are round-off. */
static double multiplier(const assoc_beam_problem *p, assoc_beam_work *w, int m) {
  int K = p->K, N = p->N;
  double lmax = 0.0, phi_sum = 0.0;
  for (int n = 0; n < N; n++) lmax = fmax(lmax, w->lambda[n]);
  for (int n = 0; n < N; n++) {
    if (!(w->lambda[n] > 1e-14 * lmax)) w->lambda[n] = 0.0;
    w->phi[n] = 0.0;
  }
  for (int i = 0; i < w->n_served[m]; i++) {
    int k = w->served[m * N + i];
    project(w, w->g + ((size_t)m * K + k) * N, w->t);
    double c = w->wt[k] * w->wt[k] * abs2(w->u[k]);
    for (int n = 0; n < N; n++) w->phi[n] += c * abs2(w->t[n]);
  }
  for (int n = 0; n < N; n++) phi_sum += w->lambda[n] > 0 ? w->phi[n] : 0.0;
  if (phi_sum == 0.0 || power_at(w, 0.0) <= p->pt_w) return 0.0;
  double lo = 0.0, hi = sqrt(phi_sum / p->pt_w); /* P(hi) <= phi_sum / hi^2 = P_t */
  for (int it = 0; it < 200 && hi - lo > 1e-13 * hi; it++) {
    double mid = 0.5 * (lo + hi);
    if (power_at(w, mid) <= p->pt_w)
      hi = mid;
    else
      lo = mid;
  }
  return hi;
}

/* v_k = w_k u_k (A_m + mu I)^{-1} g_mk for the UEs k of BS m. */
static void update_cell(const assoc_beam_problem *p, assoc_beam_work *w, int m) {
  int K = p->K, N = p->N;
  build_A(p, w, m);
  beam_herm_eig(N, w->A, w->lambda, w->D);
  double mu = multiplier(p, w, m);
  for (int i = 0; i < w->n_served[m]; i++) {
    int k = w->served[m * N + i];
    double complex *v = w->v + ((size_t)m * K + k) * N;
    project(w, w->g + ((size_t)m * K + k) * N, w->t);
    for (int n = 0; n < N; n++)
      w->t[n] = w->lambda[n] > 0 ? w->wt[k] * w->u[k] * w->t[n] / (w->lambda[n] + mu) : 0.0;
    for (int a = 0; a < N; a++) {
      double complex s = 0.0;
      for (int n = 0; n < N; n++) s += w->D[a * N + n] * w->t[n];
      v[a] = s;
    }
  }
}

double assoc_beam_wmmse(const assoc_beam_problem *p, assoc_beam_work *w, double *V_re, double *V_im,
                        double *trace, int *iters, sg_io_error *err) {
  if (iters) *iters = 0;
  if (assoc_beam_check(p, 1, err)) return NAN;
  beam_load_channels(p, w);
  beam_group(p, w);
  beam_mrt_full(p, w);
  double f = receivers(p, w);
  if (trace) trace[0] = f;
  int it = 0;
  while (it < ASSOC_WMMSE_MAX_ITERS) {
    for (int m = 0; m < p->M; m++) update_cell(p, w, m);
    double f_new = receivers(p, w);
    if (trace) trace[it + 1] = f_new;
    it++;
    int done = fabs(f_new - f) <= ASSOC_WMMSE_TOL * fabs(f);
    f = f_new;
    if (done) break;
  }
  if (iters) *iters = it;
  beam_store(w, w->v, V_re, V_im);
  return f;
}
