/* Classical beamformers for a given integer association (docs/system.md,
 * "Beamformers for a given association"): MRT, intra-cell zero-forcing and
 * WMMSE, the sum-rate of any beams, and runs over a data set.
 *
 * Layouts (row-major), per sample:
 *   channels h_mk: H_re/H_im[(m*K + k)*N + n] (as in assoc_wireless.h)
 *   beams v_mk (BS m's beam for UE k): V_re/V_im[(m*K + k)*N + n], in
 *     sqrt(W); zero unless assoc[k] == m, so a dropped UE (-1) has none.
 * The received signal is h_mk^T v (no conjugate). Powers are in W: P_t per
 * BS and the noise sigma^2 of the data set. */
#ifndef ASSOC_BEAM_H
#define ASSOC_BEAM_H

#include <stdint.h>

#include "assoc_wireless.h"

/* The shared libraries export what the public headers declare and hide the
 * rest (they are built with -fvisibility=hidden). */
#ifdef __GNUC__
#pragma GCC visibility push(default)
#endif
#ifdef __cplusplus
extern "C" {
#endif

typedef enum assoc_beam_method {
  ASSOC_BEAM_MRT,   /* per-stream power P_t/N, as the rates of assoc_wireless.h */
  ASSOC_BEAM_ZF,    /* intra-cell zero-forcing, full power P_t per BS */
  ASSOC_BEAM_WMMSE, /* Shi et al. 2011 from full-power MRT, P_t per BS */
  ASSOC_BEAM_METHOD_COUNT
} assoc_beam_method;

const char *assoc_beam_method_name(assoc_beam_method m); /* "mrt", "zf", "wmmse" */
int assoc_beam_method_parse(const char *name);           /* any case; -1 if unknown */

/* One sample: channels, powers and the association. */
typedef struct assoc_beam_problem {
  int M, N, K;
  const double *H_re, *H_im; /* M x K x N */
  double pt_w;               /* per-BS power budget P_t, W */
  double noise_w;            /* sigma^2, W */
  const int *assoc;          /* K: BS of each UE, -1 dropped */
} assoc_beam_problem;

/* Sample s of ds with the association assoc (K). */
assoc_beam_problem assoc_beam_problem_at(const assoc_dataset *ds, int64_t s, const int *assoc);

/* Sum-rate (bps/Hz) of eq. (1) for the association and beams:
 * SINR_k = |h_{b(k)k}^T v_{b(k)k}|^2 / (sum_{l != k served} |h_{b(l)k}^T v_{b(l)l}|^2
 * + sigma^2), summed log2(1 + SINR_k) over the served UEs. sinr (K, may be
 * NULL) receives each UE's SINR, 0 when dropped. */
double assoc_rate_beams(const assoc_beam_problem *p, const double *V_re, const double *V_im,
                        double *sinr);

/* Scratch for one size (M, N, K); one thread at a time. NULL: bad size or
 * out of memory. */
typedef struct assoc_beam_work assoc_beam_work;
assoc_beam_work *assoc_beam_work_new(int M, int N, int K);
void assoc_beam_work_free(assoc_beam_work *w);

/* 0 when every assoc[k] is in -1..M-1 and (need_cap) every load <= N; else
 * -1 with a message naming the BS. */
int assoc_beam_check(const assoc_beam_problem *p, int need_cap, sg_io_error *err);

/* MRT: v_mk = sqrt(P_t/N) conj(h_mk)/|h_mk| for k served by m (a zero
 * channel gets a zero beam). Accepts any load. Writes all M x K x N. */
void assoc_beam_mrt(const assoc_beam_problem *p, double *V_re, double *V_im);

/* Intra-cell ZF: at each BS m with served set S_m, W = G (G^H G)^{-1} with
 * G = [conj(h_mk)]_{k in S_m} (N x |S_m|), each column scaled to norm
 * sqrt(P_t/|S_m|). -1 with a message when a load exceeds N or the served
 * channels of a BS are linearly dependent. */
int assoc_beam_zf(const assoc_beam_problem *p, assoc_beam_work *w, double *V_re, double *V_im,
                  sg_io_error *err);

/* WMMSE (docs/system.md): from full-power MRT (each BS's P_t split evenly
 * over its served UEs), at most ASSOC_WMMSE_MAX_ITERS updates, stopping when
 * sum_k log2 w_k (= the sum-rate of the current beams) changes by less than
 * ASSOC_WMMSE_TOL relative. trace (NULL or ASSOC_WMMSE_MAX_ITERS + 1
 * doubles) receives the sum-rate of the start and after each update;
 * *iters (may be NULL) the number of updates; returns the final sum-rate,
 * or NAN with a message when a load exceeds N. */
enum { ASSOC_WMMSE_MAX_ITERS = 100 };
#define ASSOC_WMMSE_TOL 1e-4
double assoc_beam_wmmse(const assoc_beam_problem *p, assoc_beam_work *w, double *V_re, double *V_im,
                        double *trace, int *iters, sg_io_error *err);

/* Eigen-decomposition of an n x n complex Hermitian matrix A (row-major,
 * interleaved re/im pairs, overwritten) by cyclic Jacobi rotations:
 * A = D diag(lambda) D^H with D unitary (columns are eigenvectors, same
 * layout). Unsorted eigenvalues. Returns the sweeps used. */
int assoc_herm_eig(int n, double *A, double *lambda, double *D);

/* Any method on one sample: beams and sum-rate into *rate, WMMSE updates
 * into *iters (0 for MRT and ZF; may be NULL). 0, or -1 with a message. */
int assoc_beam_solve(assoc_beam_method m, const assoc_beam_problem *p, assoc_beam_work *w,
                     double *V_re, double *V_im, double *rate, int *iters, sg_io_error *err);

/* Every sample of ds with its association assoc (S x K), OpenMP over
 * samples, the same results for every thread count. V_re/V_im: S x M x K x N,
 * rate: S, iters: S (may be NULL). *us_per_sample (may be NULL): mean
 * single-sample time in microseconds. -1 with a message when an association
 * is out of range or, for ZF and WMMSE, loads a BS over N (the first such
 * sample is named), when ZF meets dependent channels, or out of memory. */
int assoc_beams_run(const assoc_dataset *ds, const int *assoc, assoc_beam_method method,
                    double *V_re, double *V_im, double *rate, int *iters, double *us_per_sample,
                    sg_io_error *err);

#ifdef __cplusplus
}
#endif
#ifdef __GNUC__
#pragma GCC visibility pop
#endif
#endif
