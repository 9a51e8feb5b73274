/* The wireless system model of docs/system.md: scenario generator, data sets
 * (.npz), model-input features, and sum-rate/SINR evaluation.
 *
 * Everything here is plain double-precision C on caller-visible arrays; the
 * differentiable rate used for training is built from the same couplings
 * (assoc_coupling) with the library's ops.
 *
 * Layouts (row-major):
 *   h_mk of sample s: H_re/H_im[((s*M + m)*K + k)*N + n]
 *   coupling c[m,k,l] / sigma: [(m*K + k)*K + l]   (UE k receives BS m's beam for UE l)
 *   integer association: assoc[k] in 0..M-1, or -1 for a dropped UE
 *   fractional association A: [k*M + m] */
#ifndef ASSOC_WIRELESS_H
#define ASSOC_WIRELESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sg_io.h"
#include "sg_tensor.h"

/* The shared libraries export what the public headers declare and hide the
 * rest (they are built with -fvisibility=hidden). */
#ifdef __GNUC__
#pragma GCC visibility push(default)
#endif
#ifdef __cplusplus
extern "C" {
#endif

/* ---- scenario ------------------------------------------------------------ */

/* Every number of the generator. assoc_scenario_default gives the paper
 * scenario: M = 2, N = 4, K = 8, 200 m x 200 m, 30 dBm, -174 dBm/Hz over
 * 1 GHz, noise figure 0 dB, path-count mean 1.8, no outage state, seed 1. */
typedef struct assoc_scenario {
  int M, N, K;
  double area_m;                     /* side of the square area */
  double bs_height_m, ue_height_m;   /* 10 m, 1.5 m */
  double pt_dbm;                     /* per-BS transmit power */
  double noise_dbm_hz, bandwidth_hz; /* -174 dBm/Hz, 1e9 Hz */
  double noise_figure_db;            /* 0 dB */
  double path_mean;                  /* Poisson mean of the path count (1.8) */
  bool outage;                       /* add Akdeniz's outage state (h = 0) */
  uint64_t seed;                     /* < 2^63 so that it round-trips through .npz int64 */
} assoc_scenario;

assoc_scenario assoc_scenario_default(void);
/* Total noise power in dBm: noise_dbm_hz + 10 log10(bandwidth) + noise figure. */
double assoc_scenario_noise_dbm(const assoc_scenario *sc);
/* 0 when every parameter is in range, else -1 with a message. */
int assoc_scenario_check(const assoc_scenario *sc, sg_io_error *err);
/* BS m at the centre of cell m of a ceil(sqrt(M))-column grid; xy is M x 2. */
void assoc_bs_positions(int M, double area_m, double *xy);

/* Size limits (checked by assoc_scenario_check and the loader). */
enum { ASSOC_MAX_BS = 64, ASSOC_MAX_ANTENNAS = 1024, ASSOC_MAX_UES = 512 };

/* ---- data sets ----------------------------------------------------------- */

typedef struct assoc_dataset {
  int64_t S;
  int M, N, K;
  double pt_dbm;    /* per-BS transmit power */
  double noise_dbm; /* total noise power */
  uint64_t seed;
  assoc_scenario scenario; /* generator record; members a file lacks keep defaults */
  double *H_re, *H_im;     /* S x M x K x N */
  double *bs_pos;          /* M x 2 */
  double *ue_pos;          /* S x K x 2 */
  double *pl_db;           /* S x M x K, path loss with shadowing */
  uint8_t *los;            /* S x M x K, 1 = LOS */
  uint8_t *outage;         /* S x M x K, 1 = outage (h = 0) */
  uint8_t *n_paths;        /* S x M x K, 0 in outage */
  /* A part of a file (assoc_dataset_load_part): samples part_first ..
   * part_first+S-1 of its part_total. 0 and 0 for a whole set. */
  int64_t part_first, part_total;
} assoc_dataset;

/* The samples of the data set ds is (a part of): part_total, or S for a
 * whole set. */
int64_t assoc_dataset_total(const assoc_dataset *ds);

/* Allocates zeroed arrays for S samples; 0 or -1 (out of memory). */
int assoc_dataset_alloc(assoc_dataset *ds, int64_t S, int M, int N, int K);
/* The sizes and the default scenario of S samples, with no arrays (all
 * NULL): for a reader that fills them itself. 0, or -1 (bad or
 * overflowing sizes). */
int assoc_dataset_shape(assoc_dataset *ds, int64_t S, int M, int N, int K);
void assoc_dataset_free(assoc_dataset *ds); /* frees the arrays, zeroes the struct */

/* Generates S samples of scenario sc into ds (allocated here). Sample s
 * draws from its own generator seeded from (seed, s), so the result is the
 * same for every thread count and sample s does not depend on S. */
int assoc_generate(const assoc_scenario *sc, int64_t S, assoc_dataset *ds, sg_io_error *err);
/* Samples first .. first+count-1 of that data set (the same bits as those
 * samples of assoc_generate's) into ds (allocated here; ds->S = count):
 * how the ranks of a job generate their shares of one data set. */
int assoc_generate_part(const assoc_scenario *sc, int64_t first, int64_t count, assoc_dataset *ds,
                        sg_io_error *err);
/* ds allocated for S samples of scenario sc (assoc_dataset_alloc) with the
 * scenario's fields and BS positions set and every sample zero. */
int assoc_dataset_for_scenario(const assoc_scenario *sc, int64_t S, assoc_dataset *ds,
                               sg_io_error *err);

/* .npz I/O, schema in docs/system.md. Save compresses (zlib). Load checks
 * every required member's presence, dtype class, shape and finiteness. */
int assoc_dataset_save(const assoc_dataset *ds, const char *path, sg_io_error *err);
int assoc_dataset_load(const char *path, assoc_dataset *ds, sg_io_error *err);
/* The sizes of the data set at path (samples S, and M, N, K) without
 * reading its samples; 0 or -1 with a message. */
int assoc_dataset_peek(const char *path, int64_t *S, int *M, int *N, int *K, sg_io_error *err);
/* Samples lo .. hi-1 of the data set at path into ds (ds->S = hi - lo,
 * part_first = lo, part_total = the file's S), checked as assoc_dataset_load
 * checks a whole set: how a rank of a data-parallel job reads its shard. */
int assoc_dataset_load_part(const char *path, int64_t lo, int64_t hi, assoc_dataset *ds,
                            sg_io_error *err);
/* Checks sizes and that every value is finite; 0 or -1 with a message. */
int assoc_dataset_check(const assoc_dataset *ds, sg_io_error *err);

/* Seed of the generator of sample `index` in stream `stream` (0: scenario,
 * others: baselines), a hash of all three. */
uint64_t assoc_stream_seed(uint64_t seed, uint64_t stream, uint64_t index);

/* ---- model inputs ---------------------------------------------------------- */

/* Per-stream-SNR scaling sqrt(P_t/N)/sigma of the data set. */
double assoc_snr_amplitude(const assoc_dataset *ds);
/* RMS over the data set of the SNR-scaled channel entries (real and
 * imaginary parts): the default normalisation scale of the H features (of
 * a part: over its samples alone). */
double assoc_feature_scale(const assoc_dataset *ds);

/* The feature scale (assoc_feature_scale) of a file read in parts by the
 * ranks of a job, to the same bits as the file read whole: the channel is
 * summed in fixed blocks of the file, each rank sums the blocks that start
 * in its own samples [lo, hi), the ranks add their block sums (every other
 * entry 0, so the order of that sum changes no bit), and the block sums are
 * added in order. assoc_feature_rows gives the samples a rank must hold:
 * [lo, *end), the last block reaching past hi. ds may be a part (its
 * part_first and part_total place it in the file); sums has
 * assoc_feature_blocks(ds) entries. */
int64_t assoc_feature_blocks(const assoc_dataset *ds);
void assoc_feature_rows(int64_t lo, int64_t hi, int64_t total, int M, int K, int N, int64_t *first,
                        int64_t *end);
void assoc_feature_block_sums(const assoc_dataset *ds, int64_t lo, int64_t hi, double *sums);
double assoc_feature_scale_of_sums(const assoc_dataset *ds, const double *sums);

/* H features of samples [start, start+count): count x M x K x 2N, real parts
 * then imaginary parts of h_mk sqrt(P_t/N) / sigma / scale, written from
 * element `at` of out (float32 or float64: the same arithmetic in double,
 * rounded once to out's dtype). */
void assoc_features_fill(const assoc_dataset *ds, int64_t start, int64_t count, double scale,
                         sg_tensor *out, int64_t at);
/* The same into a float32 array out (count x M x K x 2N). */
void assoc_features_fill_f32(const assoc_dataset *ds, int64_t start, int64_t count, double scale,
                             float *out);
/* The same as a new tensor (g NULL: caller-owned) of dtype dt. */
sg_tensor *assoc_features(sg_graph *g, const assoc_dataset *ds, int64_t start, int64_t count,
                          double scale, sg_dtype dt);

/* What the GNNs see of each link (m, k) (docs/system.md, "Model inputs"). */
typedef enum assoc_feature_kind {
  ASSOC_FEATURES_CHANNEL,    /* the paper's: real then imaginary parts of the scaled h_mk (2N) */
  ASSOC_FEATURES_LINK,       /* SNR in dB, direction h_mk/|h_mk| (common phase removed, 2N),
                                log10(1 + MRT interference) received and caused: 2N + 3 */
  ASSOC_FEATURES_LINK_NODES, /* the link features, and node features: per BS its demand (UEs
                                whose strongest link it is), per UE the SNR margin of its best BS
                                over its second best (assoc_node_features_fill) */
  ASSOC_FEATURE_KIND_COUNT
} assoc_feature_kind;

const char *assoc_feature_kind_name(assoc_feature_kind k); /* "channel", "link" */
int assoc_feature_kind_parse(const char *name);            /* any case; -1 if unknown */
int assoc_feature_width(assoc_feature_kind k, int N);      /* features per link */
/* Features per BS (fp) and per UE (fq): 1 and 1 (the paper's constants
 * P_t in dBm / 30 and 1), 2 and 2 for ASSOC_FEATURES_LINK_NODES. */
void assoc_node_feature_widths(assoc_feature_kind k, int *fp, int *fq);
/* The node features of sample s into p (M x fp) and q (K x fq), doubles.
 * Every kind: p[m][0] = P_t in dBm / 30, q[k][0] = 1. LINK_NODES adds
 * p[m][1] = (demand_m - N) / N, demand_m the UEs whose largest |h_mk| is
 * at m (ties: lower m), and replaces q[k][0] by (best - second-best link
 * SNR in dB) / 20 and q[k][1] = (best link SNR dB + 5) / 20. */
void assoc_node_features(const assoc_dataset *ds, int64_t s, assoc_feature_kind k, double *p,
                         double *q);
/* Link features of samples [start, start+count): count x M x K x (2N+3),
 * computed in double and rounded once to out's dtype, written from element
 * `at` of out. Fixed affine maps (no data-set statistics) bring each to
 * about unit scale: (SNR dB + 5) / 20, direction as is, log10(1 + I) - 0.7
 * for the interference received and - 1.4 for the interference caused. */
void assoc_link_features_fill(const assoc_dataset *ds, int64_t start, int64_t count, sg_tensor *out,
                              int64_t at);

/* ---- rate and SINR ------------------------------------------------------- */

/* Couplings c[m,k,l]/sigma of sample s (each array M x K x K). */
void assoc_coupling(const assoc_dataset *ds, int64_t s, double *c_re, double *c_im);
/* Their squared magnitudes |c[m,k,l]|^2 / sigma^2 (M x K x K); the diagonal
 * gain[m,k,k] is the per-stream SNR of link (m, k). */
void assoc_coupling_gain(const assoc_dataset *ds, int64_t s, double *gain);

/* Sum-rate in bps/Hz of an integer association (-1 = dropped) from the gain
 * array; sinr (K, may be NULL) receives each UE's SINR (0 when dropped). */
double assoc_rate_int(const double *gain, int M, int K, const int *assoc, double *sinr);
/* Sum-rate of a fractional association A (K x M) from the complex couplings. */
double assoc_rate_frac(const double *c_re, const double *c_im, int M, int K, const double *A,
                       double *sinr);
/* Batched over the data set (OpenMP): rate[s] for assoc (S x K) or A (S x K x M).
 * 0, or -1 when out of memory. */
int assoc_dataset_rates(const assoc_dataset *ds, const int *assoc, double *rate);
int assoc_dataset_rates_frac(const assoc_dataset *ds, const double *A, double *rate);

/* Loads per BS; returns the largest. */
int assoc_loads(int M, int K, const int *assoc, int *load);

#ifdef __cplusplus
}
#endif
#ifdef __GNUC__
#pragma GCC visibility pop
#endif
#endif
