/* The wireless system model of docs/system.md: scenario generator, data sets
 * (.npz), sum-rate/SINR evaluation, association baselines and metrics.
 *
 * Everything here is plain double-precision C on caller-visible arrays; the
 * differentiable rate used for training is built from the same couplings
 * (sg_coupling) with the library's ops.
 *
 * Layouts (row-major):
 *   h_mk of sample s: H_re/H_im[((s*M + m)*K + k)*N + n]
 *   coupling c[m,k,l] / sigma: [(m*K + k)*K + l]   (UE k receives BS m's beam for UE l)
 *   integer association: assoc[k] in 0..M-1, or -1 for a dropped UE
 *   fractional association A: [k*M + m] */
#ifndef SG_SYSTEM_H
#define SG_SYSTEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sg_io.h"
#include "sg_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- scenario ------------------------------------------------------------ */

/* Every number of the generator. sg_scenario_default gives the paper
 * scenario: M = 2, N = 4, K = 8, 200 m x 200 m, 30 dBm, -174 dBm/Hz over
 * 1 GHz, noise figure 0 dB, path-count mean 1.8, no outage state, seed 1. */
typedef struct sg_scenario {
  int M, N, K;
  double area_m;                     /* side of the square area */
  double bs_height_m, ue_height_m;   /* 10 m, 1.5 m */
  double pt_dbm;                     /* per-BS transmit power */
  double noise_dbm_hz, bandwidth_hz; /* -174 dBm/Hz, 1e9 Hz */
  double noise_figure_db;            /* 0 dB */
  double path_mean;                  /* Poisson mean of the path count (1.8) */
  bool outage;                       /* add Akdeniz's outage state (h = 0) */
  uint64_t seed;                     /* < 2^63 so that it round-trips through .npz int64 */
} sg_scenario;

sg_scenario sg_scenario_default(void);
/* Total noise power in dBm: noise_dbm_hz + 10 log10(bandwidth) + noise figure. */
double sg_scenario_noise_dbm(const sg_scenario *sc);
/* 0 when every parameter is in range, else -1 with a message in msg. */
int sg_scenario_check(const sg_scenario *sc, char *msg, size_t msg_len);
/* BS m at the centre of cell m of a ceil(sqrt(M))-column grid; xy is M x 2. */
void sg_bs_positions(int M, double area_m, double *xy);

/* Size limits (checked by sg_scenario_check and the loader). */
enum { SG_MAX_BS = 64, SG_MAX_ANTENNAS = 1024, SG_MAX_UES = 512 };

/* ---- data sets ----------------------------------------------------------- */

typedef struct sg_dataset {
  int64_t S;
  int M, N, K;
  double pt_dbm;    /* per-BS transmit power */
  double noise_dbm; /* total noise power */
  uint64_t seed;
  sg_scenario scenario; /* generator record; members a file lacks keep defaults */
  double *H_re, *H_im;  /* S x M x K x N */
  double *bs_pos;       /* M x 2 */
  double *ue_pos;       /* S x K x 2 */
  double *pl_db;        /* S x M x K, path loss with shadowing */
  uint8_t *los;         /* S x M x K, 1 = LOS */
  uint8_t *outage;      /* S x M x K, 1 = outage (h = 0) */
  uint8_t *n_paths;     /* S x M x K, 0 in outage */
} sg_dataset;

/* Allocates zeroed arrays for S samples; 0 or -1 (out of memory). */
int sg_dataset_alloc(sg_dataset *ds, int64_t S, int M, int N, int K);
void sg_dataset_free(sg_dataset *ds); /* frees the arrays, zeroes the struct */

/* Generates S samples of scenario sc into ds (allocated here). Sample s
 * draws from its own generator seeded from (seed, s), so the result is the
 * same for every thread count and sample s does not depend on S. */
int sg_generate(const sg_scenario *sc, int64_t S, sg_dataset *ds, char *msg, size_t msg_len);
/* One sample into slot s of an allocated ds whose bs_pos is filled. */
void sg_generate_sample(const sg_scenario *sc, int64_t s, sg_dataset *ds);

/* .npz I/O, schema in docs/system.md. Save compresses (zlib). Load checks
 * every required member's presence, dtype class, shape and finiteness. */
int sg_dataset_save(const sg_dataset *ds, const char *path, sg_io_error *err);
int sg_dataset_load(const char *path, sg_dataset *ds, sg_io_error *err);
/* Checks sizes and that every value is finite; 0 or -1 with a message. */
int sg_dataset_check(const sg_dataset *ds, sg_io_error *err);

/* Seed of the generator of sample `index` in stream `stream` (0: scenario,
 * others: baselines), a hash of all three. */
uint64_t sg_stream_seed(uint64_t seed, uint64_t stream, uint64_t index);

/* ---- model inputs ---------------------------------------------------------- */

/* Per-stream-SNR scaling sqrt(P_t/N)/sigma of the data set. */
double sg_snr_amplitude(const sg_dataset *ds);
/* RMS over the data set of the SNR-scaled channel entries (real and
 * imaginary parts): the default normalisation scale of the H features. */
double sg_feature_scale(const sg_dataset *ds);
/* H features of samples [start, start+count): count x M x K x 2N, real parts
 * then imaginary parts of h_mk sqrt(P_t/N) / sigma / scale. */
void sg_features_fill(const sg_dataset *ds, int64_t start, int64_t count, double scale, float *out);
/* The same as a new tensor (g NULL: caller-owned) of dtype dt. */
sg_tensor *sg_features(sg_graph *g, const sg_dataset *ds, int64_t start, int64_t count,
                       double scale, sg_dtype dt);

/* ---- rate and SINR ------------------------------------------------------- */

/* Couplings c[m,k,l]/sigma of sample s (each array M x K x K). */
void sg_coupling(const sg_dataset *ds, int64_t s, double *c_re, double *c_im);
/* Their squared magnitudes |c[m,k,l]|^2 / sigma^2 (M x K x K); the diagonal
 * gain[m,k,k] is the per-stream SNR of link (m, k). */
void sg_coupling_gain(const sg_dataset *ds, int64_t s, double *gain);

/* Sum-rate in bps/Hz of an integer association (-1 = dropped) from the gain
 * array; sinr (K, may be NULL) receives each UE's SINR (0 when dropped). */
double sg_rate_int(const double *gain, int M, int K, const int *assoc, double *sinr);
/* Sum-rate of a fractional association A (K x M) from the complex couplings. */
double sg_rate_frac(const double *c_re, const double *c_im, int M, int K, const double *A,
                    double *sinr);
/* Batched over the data set (OpenMP): rate[s] for assoc (S x K) or A (S x K x M).
 * 0, or -1 when out of memory. */
int sg_dataset_rates(const sg_dataset *ds, const int *assoc, double *rate);
int sg_dataset_rates_frac(const sg_dataset *ds, const double *A, double *rate);

/* Loads per BS; returns the largest. */
int sg_loads(int M, int K, const int *assoc, int *load);

/* ---- baselines ------------------------------------------------------------ */

/* ---- max-weight assignment (models/baselines.c) ------------------------------- */

/* Scratch of the max-weight assignment for one size; one thread at a time. */
typedef struct sg_assign_work sg_assign_work;
sg_assign_work *sg_assign_work_new(int M, int N, int K); /* NULL: bad size or no memory */
void sg_assign_work_free(sg_assign_work *w);
/* A K x M scratch array of w for the caller's weights. */
double *sg_assign_work_weights(sg_assign_work *w);

/* Max-weight assignment of K UEs to N replicas of each of M BSs (Hungarian
 * algorithm on the max(K, M*N) square cost matrix, zero-padded): maximises
 * sum_k weight[k*M + assoc[k]] over the associations with every load <= N
 * that serve min(K, M*N) UEs; the others get -1. Returns the total weight.
 * The weights must be finite. */
double sg_assign_max_weight(const double *weight, int M, int N, int K, sg_assign_work *w,
                            int *assoc);

typedef enum sg_method {
  SG_ES,
  SG_MAXSINR,
  SG_MAXSINR_CAPPED,
  SG_RANDINT,
  SG_DA,
  SG_ASSIGN,
  SG_LOCALSEARCH,
  SG_METHOD_COUNT
} sg_method;

const char *sg_method_name(sg_method m); /* "ES", "MaxSINR-capped", ... */
const char *sg_method_key(sg_method m);  /* "ES", "MaxSINR_capped", ...: .npz/JSON keys */
int sg_method_parse(const char *name);   /* name or key, any case; -1 if unknown */

/* One sample's problem: the gain array of sg_coupling_gain. */
typedef struct sg_problem {
  int M, N, K;
  const double *gain; /* M x K x K */
} sg_problem;

/* UEs served by every feasible baseline: min(K, M*N). When K > M*N the
 * remaining K - M*N UEs are dropped (-1). */
int sg_served_count(const sg_problem *p);

typedef struct sg_baseline_opts {
  uint64_t seed;        /* RandInt streams: sample s uses sg_stream_seed(seed, 1, s) */
  int da_iters;         /* 100 */
  double da_step0;      /* 1.0 (bps/Hz per unit of overload) */
  double es_max_leaves; /* refuse ES above this many feasible associations (1e9) */
} sg_baseline_opts;
sg_baseline_opts sg_baseline_defaults(void);

/* Scratch for one problem size, used by one thread at a time. */
typedef struct sg_work sg_work;
sg_work *sg_work_new(int M, int N, int K); /* NULL when out of memory */
void sg_work_free(sg_work *w);

/* Each solver writes assoc (K) and, except MaxSINR, respects every load <= N
 * and serves exactly sg_served_count UEs. They return the sum-rate. */
typedef struct sg_es_stats {
  int64_t nodes, leaves; /* search-tree nodes expanded, complete associations evaluated */
} sg_es_stats;
double sg_es(const sg_problem *p, sg_work *w, int *assoc, sg_es_stats *stats);
/* Plain enumeration of every feasible association (tests; small sizes). */
double sg_es_bruteforce(const sg_problem *p, int *assoc);
/* Number of feasible associations ES searches (as a double; may be huge). */
double sg_feasible_count(int M, int N, int K);
double sg_maxsinr(const sg_problem *p, int *assoc);
double sg_maxsinr_capped(const sg_problem *p, sg_work *w, int *assoc);
double sg_randint(const sg_problem *p, sg_rng *rng, sg_work *w, int *assoc);
double sg_da(const sg_problem *p, int iters, double step0, sg_work *w, int *assoc);
double sg_assign(const sg_problem *p, sg_work *w, int *assoc);
/* Local search from `start` (feasible): best-improving single moves and
 * pairwise swaps on the true sum-rate until none raises it. */
double sg_local_search(const sg_problem *p, const int *start, sg_work *w, int *assoc);
/* LocalSearch as a baseline: starts from the best of MaxSINR (if feasible),
 * MaxSINR-capped, RandInt, DA and Assign. */
double sg_local_search_baseline(const sg_problem *p, const sg_baseline_opts *o, uint64_t index,
                                sg_work *w, int *assoc);
/* Any method on one problem; `index` selects RandInt's stream. */
double sg_solve(sg_method m, const sg_problem *p, const sg_baseline_opts *o, uint64_t index,
                sg_work *w, int *assoc);

/* ---- batched runs and metrics ----------------------------------------------- */

/* Called from the calling thread between chunks of samples. */
typedef void (*sg_progress_fn)(void *user, const char *what, int64_t done, int64_t total);

/* Runs method m on every sample (OpenMP over samples; the result does not
 * depend on the thread count). assoc: S x K, rate: S (R of assoc, with
 * violations). *ms_per_sample: mean single-sample latency (gain + solve).
 * 0, or -1 with a message (out of memory, ES too large). */
int sg_run_method(const sg_dataset *ds, sg_method m, const sg_baseline_opts *o, int *assoc,
                  double *rate, double *ms_per_sample, sg_progress_fn progress, void *user,
                  char *msg, size_t msg_len);

/* Load balancing of models.md (K <= SG_MAX_UES): at each BS with more than N UEs keep the N
 * with the largest score[k*M + m] (score NULL: all equal), ties broken by the
 * larger link SNR gain[m,k,k], then the lower k; the others are dropped. */
void sg_load_balance(const sg_problem *p, const int *assoc, const double *score, int *out);

typedef struct sg_metrics {
  int64_t samples;
  double mean_rate;       /* R(A) with violations */
  double violation_ratio; /* fraction of samples with some load > N */
  double mean_lb_rate;    /* R after load balancing */
  double mean_dropped;    /* UEs dropped per sample in the load-balanced association */
  double ratio_to_es;     /* mean_lb_rate / mean ES rate; NaN without ES */
  double ms_per_sample;
} sg_metrics;

/* Metrics of associations assoc (S x K). score: S x K x M or NULL (see
 * sg_load_balance). es_rate: S or NULL. lb_assoc/lb_rate (S x K, S) receive
 * the load-balanced associations and rates when not NULL. 0 or -1 (memory). */
int sg_metrics_compute(const sg_dataset *ds, const int *assoc, const double *score,
                       const double *es_rate, double ms_per_sample, sg_metrics *out, int *lb_assoc,
                       double *lb_rate);

#ifdef __cplusplus
}
#endif
#endif
