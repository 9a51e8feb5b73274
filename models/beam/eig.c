/* Eigen-decomposition of small complex Hermitian matrices by cyclic Jacobi
 * rotations (WMMSE's per-BS power bisection needs A_m = D diag(lambda) D^H;
 * N is a few antennas, so O(N^3) per sweep is cheap and no LAPACK is
 * needed). */
#include <math.h>

#include "beam_internal.h"

static double abs2(double complex z) {
  return creal(z) * creal(z) + cimag(z) * cimag(z);
}

/* A <- U^H A U and D <- D U for the rotation U that zeroes a_pq: with
 * a_pq = r e^{i phi}, E = diag(1, e^{-i phi}) on (p, q) makes it real r,
 * then the real symmetric Jacobi rotation [[c, s], [-s, c]] (Golub and Van
 * Loan, sym.schur2) zeroes it: U = E J. */
static void rotate(int n, double complex *A, double complex *D, int p, int q) {
  double complex apq = A[p * n + q];
  double r = cabs(apq);
  double complex e = conj(apq) / r; /* e^{-i phi} */
  double tau = (creal(A[q * n + q]) - creal(A[p * n + p])) / (2.0 * r);
  double t = (tau >= 0 ? 1.0 : -1.0) / (fabs(tau) + sqrt(1.0 + tau * tau));
  double c = 1.0 / sqrt(1.0 + t * t), s = t * c;
  /* U: column p = (c at p, -s e at q), column q = (s at p, c e at q). */
  double complex upp = c, uqp = -s * e, upq = s, uqq = c * e;
  for (int k = 0; k < n; k++) { /* A <- A U, D <- D U */
    double complex akp = A[k * n + p], akq = A[k * n + q];
    A[k * n + p] = akp * upp + akq * uqp, A[k * n + q] = akp * upq + akq * uqq;
    double complex dkp = D[k * n + p], dkq = D[k * n + q];
    D[k * n + p] = dkp * upp + dkq * uqp, D[k * n + q] = dkp * upq + dkq * uqq;
  }
  for (int k = 0; k < n; k++) { /* A <- U^H A */
    double complex apk = A[p * n + k], aqk = A[q * n + k];
    A[p * n + k] = conj(upp) * apk + conj(uqp) * aqk;
    A[q * n + k] = conj(upq) * apk + conj(uqq) * aqk;
  }
  A[p * n + q] = A[q * n + p] = 0.0;
  A[p * n + p] = creal(A[p * n + p]), A[q * n + q] = creal(A[q * n + q]);
}

int beam_herm_eig(int n, double complex *A, double *lambda, double complex *D) {
  for (int i = 0; i < n * n; i++) D[i] = i % (n + 1) == 0 ? 1.0 : 0.0;
  int sweep = 0;
  for (; sweep < 100; sweep++) {
    double off = 0.0, diag = 0.0;
    for (int i = 0; i < n; i++) {
      diag += abs2(A[i * n + i]);
      for (int j = i + 1; j < n; j++) off += abs2(A[i * n + j]);
    }
    if (off == 0.0) break;
    /* Entries at round-off level of the diagonal are set to zero rather than
     * rotated: rotations leave round-off of that size behind, so a test on
     * their sum alone may never be met. */
    double negligible = 1e-34 * diag;
    for (int p = 0; p < n; p++)
      for (int q = p + 1; q < n; q++) {
        if (abs2(A[p * n + q]) > negligible)
          rotate(n, A, D, p, q);
        else
          A[p * n + q] = A[q * n + p] = 0.0;
      }
  }
  for (int i = 0; i < n; i++) lambda[i] = creal(A[i * n + i]);
  return sweep;
}

int assoc_herm_eig(int n, double *A, double *lambda, double *D) {
  /* C11 6.2.5: a double complex is laid out as double[2] (re, im). */
  return beam_herm_eig(n, (double complex *)A, lambda, (double complex *)D);
}
