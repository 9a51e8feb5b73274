/* Shared by bench_gnn.c (the association GNNs, the command line) and
 * bench_bfgnn.c (BFGNN and the WMMSE reference): the options and the small
 * utilities of one measurement process. */
#ifndef BENCH_GNN_H
#define BENCH_GNN_H

#include <stdbool.h>
#include <stdint.h>

#include "assoc_train.h"

enum { INFER_BATCH = 256, M_BS = 2, MAX_SAMPLES = 1000 };
static const double LR = 1e-3; /* Adam step of the export check */

typedef struct options {
  const char *mode, *out;
  assoc_gnn_variant variant;
  bool bfgnn;            /* --variant bfgnn: BFGNN (bench_bfgnn.c) instead of variant */
  assoc_bfgnn_head head; /* of BFGNN: --head direct (default) or duality */
  int d, h, L, threads, steps, warmup, reps;
  int64_t batch, chunk;
  uint64_t seed;
} options;

void usage(void);
void die(const char *what);
double peak_rss_mib(void);
/* Times the scheduler took the CPU away from this process (another process
 * wanted it): a busy machine shows here. */
long involuntary_switches(void);
/* CPU time of the calling thread in seconds: for work on one thread, a
 * measure that a loaded machine inflates less than the wall clock. */
double thread_cpu_seconds(void);
/* Median of v[0..n) (v is left in its order). */
double median(const double *v, int n);
void print_ms_array(const char *key, const double *v, int n);
/* The .npz of o->out (usage() without one), and its closing. */
sg_npz_writer *export_open(const options *o);
void export_close(sg_npz_writer *w);
void add_tensor(sg_npz_writer *w, const char *name, const sg_tensor *t);
void add_scalar(sg_npz_writer *w, const char *name, double v);
/* Every parameter of ps as "param/<name>"; with prefix "grad/" etc. (not
 * NULL) the gradients that exist instead, as "<prefix><name>". */
void add_params(sg_npz_writer *w, sg_params *ps, const char *grad_prefix);

/* Multiply-add counts (as flops, 2 per multiply-add) of the Linear layers of
 * a forward and its backward. */
typedef struct flop_count {
  double fwd, bwd;
} flop_count;
/* Of the trunk of c (and AttSKGS's attention) and a head MLP(d, head_out)
 * on the edges of B samples of M BSs and K UEs. */
flop_count gemm_flops(const assoc_gnn_config *c, double B, double M, double K, double head_out);

/* A model under measurement (bench_gnn.c times it). */
typedef struct bench_model {
  const char *name;              /* "AttSKGS-GNN", "BFGNN", ... */
  const assoc_gnn_config *trunk; /* its widths, for the GEMM count */
  double head_out;               /* outputs per edge of the head MLP */
  int M, K, N;
  sg_params *params;
  void *ctx; /* of the callbacks */
  /* The training loss of the fixed batch, recorded on g (reset first);
   * NULL after a reported failure. */
  sg_tensor *(*loss)(sg_graph *g, void *ctx);
  /* One eval-mode forward of one sample (batch false) or INFER_BATCH
   * samples on g, whose gradients are off; the result is dropped. */
  void (*infer)(sg_graph *g, void *ctx, bool batch);
} bench_model;

/* Zero grads, loss, backward, Adam; the loss. */
double bench_train_step(sg_graph *g, const bench_model *m, sg_adam *adam);
/* One Adam step from the current weights: "ref/loss", the gradients
 * ("grad/<name>") and the loss after the step ("ref/loss_after_step"). */
void bench_export_step(sg_npz_writer *w, sg_graph *g, const bench_model *m);
/* The opening members of a mode's JSON object. */
void bench_print_header(const options *o, const bench_model *m);
/* The train and infer modes: time o->steps training steps (after
 * o->warmup), or o->reps single-sample and o->steps batch forwards, and
 * print the JSON object. */
int bench_train(const options *o, const bench_model *m);
int bench_infer(const options *o, const bench_model *m);

/* BFGNN (bench_bfgnn.c): the export, train and infer modes for o->bfgnn,
 * and the wmmse mode. Each prints one JSON object; returns 0. */
int bench_bfgnn_run(const options *o);
int bench_wmmse_run(const options *o);

#endif
