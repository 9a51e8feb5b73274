/* Private to models/beam/: the scratch of one size and the helpers the
 * beamformers share. Channels are kept conjugated and noise-normalised,
 * g_mk = conj(h_mk) / sigma, so that h_mk^T v / sigma = g_mk^H v and the
 * noise power is 1; beams stay in sqrt(W). */
#ifndef ASSOC_BEAM_INTERNAL_H
#define ASSOC_BEAM_INTERNAL_H

#include <complex.h>

#include "assoc_beam.h"

/* glibc's <complex.h> defines the C11 CMPLX only for GCC; clang has the
 * same builtin. */
#ifndef CMPLX
#define CMPLX(x, y) __builtin_complex((double)(x), (double)(y))
#endif

struct assoc_beam_work {
  int M, N, K;
  double complex *g;    /* M x K x N: conj(h_mk) / sigma */
  double complex *v;    /* M x K x N: current beams */
  double complex *u;    /* K: WMMSE receivers */
  double *wt;           /* K: WMMSE weights */
  double complex *A;    /* N x N */
  double complex *D;    /* N x N */
  double complex *t;    /* N */
  double *lambda, *phi; /* N */
  int *served;          /* M x N: served UEs of each BS, in increasing order */
  int *n_served;        /* M */
};

/* Fills w->g from the problem's channels. */
void beam_load_channels(const assoc_beam_problem *p, assoc_beam_work *w);
/* Fills w->served / w->n_served (loads must be <= N: assoc_beam_check). */
void beam_group(const assoc_beam_problem *p, assoc_beam_work *w);
/* Full-power MRT into w->v: each BS's P_t split evenly over its served
 * UEs (w->served must be filled). */
void beam_mrt_full(const assoc_beam_problem *p, assoc_beam_work *w);
/* Writes the complex beams v (M x K x N) to V_re/V_im. */
void beam_store(const assoc_beam_work *w, const double complex *v, double *V_re, double *V_im);
/* sum_n conj(a_n) b_n. */
double complex beam_dot(const double complex *a, const double complex *b, int N);
/* Sum-rate of beams v on the normalised channels w->g; sinr (K) may be NULL. */
double beam_rate(const assoc_beam_work *w, const int *assoc, const double complex *v, double *sinr);
/* Jacobi eigen-decomposition on complex storage (see assoc_herm_eig). */
int beam_herm_eig(int n, double complex *A, double *lambda, double complex *D);

#endif
