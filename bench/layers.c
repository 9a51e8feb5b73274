/* Forward + backward time of each combinatorial layer at the models' shapes,
 * the sinkgrad side of the PyTorch comparison (bench/layers_run runs it next
 * to bench/torch_layers.py, which does the same work in PyTorch).
 *
 * Per case and run: reset the graph, zero the leaf gradients, y = layer(x),
 * loss = sum(w * y) with a fixed w, backward. Float32, 2 threads by default.
 * After 5 warm-up runs, at least --min-runs timed runs, more (up to
 * MAX_RUNS) while under the time budget; the median is reported.
 *
 * Inputs are deterministic formulas that bench/torch_layers.py reproduces
 * (value i of input s: amp * sin(0.37 i + s) + offset, w_i = cos(0.11 i)), so
 * both sides compute the same function: each line also carries the loss and
 * a checksum of the leaf gradients (sum over leaves and elements of
 * grad_i * cos(0.7 i), and of |grad_i|) for the runner to compare.
 *
 * Usage: bench_layers [--threads T] [--min-runs N] [--budget S] [--list] [CASE ...]
 * (CASE: exact case names, as --list prints; none: every case; S: the time
 * budget in seconds, default 0.5)
 * Output, one tab-separated line per case:
 *   case  median_us  runs  loss  grad_dot  grad_abs  cpu_us
 * cpu_us: the median process CPU time of a run (all threads, spinning
 * included); with 1 thread it hardly depends on the machine's load. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sinkgrad.h"

enum { WARMUP = 5, MAX_RUNS = 2001, MAX_LEAVES = 3 };

typedef enum layer_kind {
  SOFTMAX,
  LOG_SOFTMAX,
  GUMBEL,
  LAYER_NORM,
  SINKHORN_UNROLLED,
  SINKHORN_IMPLICIT,
  ATTENTION,
  LOSS_ONLY /* y = x: the cost of the loss sum(w * y) and its backward alone */
} layer_kind;

typedef struct bench_case {
  const char *name;
  layer_kind kind;
  int ndim;
  int64_t shape[4]; /* x (logits, q for attention) */
  int64_t d;        /* attention and LayerNorm width */
} bench_case;

static const bench_case CASES[] = {
    {"softmax/256x8x2", SOFTMAX, 3, {256, 8, 2}, 0},
    {"softmax/256x8x512", SOFTMAX, 3, {256, 8, 512}, 0},
    {"log_softmax/256x8x2", LOG_SOFTMAX, 3, {256, 8, 2}, 0},
    {"log_softmax/256x8x512", LOG_SOFTMAX, 3, {256, 8, 512}, 0},
    {"gumbel_softmax/256x8x2", GUMBEL, 3, {256, 8, 2}, 0},
    {"gumbel_softmax/256x8x512", GUMBEL, 3, {256, 8, 512}, 0},
    {"layer_norm/256x8x64", LAYER_NORM, 3, {256, 8, 64}, 64},
    {"layer_norm/256x8x128", LAYER_NORM, 3, {256, 8, 128}, 128},
    {"layer_norm/256x8x512", LAYER_NORM, 3, {256, 8, 512}, 512},
    {"layer_norm/256x8x2x64", LAYER_NORM, 4, {256, 8, 2, 64}, 64},
    {"layer_norm/256x8x2x128", LAYER_NORM, 4, {256, 8, 2, 128}, 128},
    {"layer_norm/256x8x2x512", LAYER_NORM, 4, {256, 8, 2, 512}, 512},
    {"sinkhorn_unrolled/256x8x2", SINKHORN_UNROLLED, 3, {256, 8, 2}, 0},
    {"sinkhorn_implicit/256x8x2", SINKHORN_IMPLICIT, 3, {256, 8, 2}, 0},
    {"attention/d64", ATTENTION, 4, {256, 8, 1, 64}, 64},
    {"attention/d128", ATTENTION, 4, {256, 8, 1, 128}, 128},
    {"attention/d512", ATTENTION, 4, {256, 8, 1, 512}, 512},
    {"loss_only/256x8x2", LOSS_ONLY, 3, {256, 8, 2}, 0},
    {"loss_only/256x8x64", LOSS_ONLY, 3, {256, 8, 64}, 0},
    {"loss_only/256x8x128", LOSS_ONLY, 3, {256, 8, 128}, 0},
    {"loss_only/256x8x2x64", LOSS_ONLY, 4, {256, 8, 2, 64}, 0},
    {"loss_only/256x8x2x128", LOSS_ONLY, 4, {256, 8, 2, 128}, 0},
    {"loss_only/256x8x512", LOSS_ONLY, 3, {256, 8, 512}, 0},
    {"loss_only/256x8x2x512", LOSS_ONLY, 4, {256, 8, 2, 512}, 0},
};

/* Layer parameters shared with bench/torch_layers.py. */
static const double GUMBEL_TAU = 0.5, LN_EPS = 1e-5, SK_CAP = 4.0;
enum { SK_ITERS = 10 };

static double clock_s(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now(void) {
  return clock_s(CLOCK_MONOTONIC);
}

static double cpu_now(void) {
  return clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

/* amp * sin(0.37 i + seed) + offset, a caller-owned float32 tensor. */
static sg_tensor *formula_tensor(int ndim, const int64_t *shape, double seed, double amp,
                                 double offset, bool grad) {
  sg_tensor *t = sg_empty(NULL, SG_F32, ndim, shape);
  float *p = sg_f32(t);
  for (int64_t i = 0; i < t->numel; i++)
    p[i] = (float)(amp * sin(0.37 * (double)i + seed) + offset);
  sg_set_requires_grad(t, grad);
  return t;
}

/* The leaves of one case (inputs that get gradients) and its constants. */
typedef struct case_inputs {
  sg_tensor *leaf[MAX_LEAVES];
  int n_leaves;
  sg_tensor *noise; /* Gumbel noise, no gradient */
  sg_tensor *w;     /* loss weights, shaped like the output */
} case_inputs;

static void add_leaf(case_inputs *in, sg_tensor *t) {
  in->leaf[in->n_leaves++] = t;
}

static case_inputs make_inputs(const bench_case *c) {
  case_inputs in = {0};
  int64_t d = c->d, B = c->shape[0], K = c->shape[1];
  switch (c->kind) {
  case SOFTMAX:
  case LOG_SOFTMAX:
  case SINKHORN_UNROLLED:
  case SINKHORN_IMPLICIT:
  case LOSS_ONLY:
    add_leaf(&in, formula_tensor(c->ndim, c->shape, 0.0, 3.0, 0.0, true));
    break;
  case GUMBEL:
    add_leaf(&in, formula_tensor(c->ndim, c->shape, 0.0, 3.0, 0.0, true));
    /* a Gumbel-like spread of values, not a draw: reproducible on both sides */
    in.noise = formula_tensor(c->ndim, c->shape, 1.0, 1.2, 0.5, false);
    break;
  case LAYER_NORM:
    add_leaf(&in, formula_tensor(c->ndim, c->shape, 0.0, 2.0, 0.3, true));
    add_leaf(&in, formula_tensor(1, &d, 2.0, 0.1, 1.0, true));
    add_leaf(&in, formula_tensor(1, &d, 3.0, 0.05, 0.0, true));
    break;
  case ATTENTION: /* q [B, K, 1, d], k [B, 1, 2, d], v [B, K, 2, d] */
    add_leaf(&in, formula_tensor(4, c->shape, 0.0, 1.0, 0.0, true));
    add_leaf(&in, formula_tensor(4, (int64_t[]){B, 1, 2, d}, 1.0, 1.0, 0.0, true));
    add_leaf(&in, formula_tensor(4, (int64_t[]){B, K, 2, d}, 2.0, 1.0, 0.0, true));
    break;
  }
  /* the output has x's shape, except attention's: [B, K, 1, d] = q's */
  sg_tensor *x = in.leaf[0];
  in.w = sg_empty(NULL, SG_F32, x->ndim, x->shape);
  float *w = sg_f32(in.w);
  for (int64_t i = 0; i < in.w->numel; i++) w[i] = (float)cos(0.11 * (double)i);
  return in;
}

static void free_inputs(case_inputs *in) {
  for (int i = 0; i < in->n_leaves; i++) sg_free(in->leaf[i]);
  sg_free(in->noise);
  sg_free(in->w);
}

static sg_tensor *layer_forward(sg_graph *g, const bench_case *c, const case_inputs *in) {
  sg_tensor *const *x = in->leaf;
  switch (c->kind) {
  case SOFTMAX:
    return sg_softmax(g, x[0], -1);
  case LOG_SOFTMAX:
    return sg_log_softmax(g, x[0], -1);
  case GUMBEL:
    return sg_gumbel_softmax(g, x[0], GUMBEL_TAU, -1, false, in->noise, NULL);
  case LAYER_NORM:
    return sg_layer_norm(g, x[0], x[1], x[2], LN_EPS);
  case SINKHORN_UNROLLED:
    return sg_sinkhorn(g, x[0], 1.0, SK_CAP, SK_ITERS, 0.0, SG_SINKHORN_UNROLLED, NULL);
  case SINKHORN_IMPLICIT:
    return sg_sinkhorn(g, x[0], 1.0, SK_CAP, SK_ITERS, 0.0, SG_SINKHORN_IMPLICIT, NULL);
  case ATTENTION:
    return sg_attention(g, x[0], x[1], x[2]);
  case LOSS_ONLY:
    return x[0];
  }
  return NULL;
}

/* One timed unit of work; returns the loss. */
static double run_once(sg_graph *g, const bench_case *c, const case_inputs *in) {
  sg_graph_reset(g);
  for (int i = 0; i < in->n_leaves; i++) sg_zero_grad(in->leaf[i]);
  sg_tensor *y = layer_forward(g, c, in);
  sg_tensor *loss = sg_sum_all(g, sg_mul(g, y, in->w));
  sg_backward(g, loss);
  return sg_get(loss, 0);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* sum of grad_i * cos(0.7 i) and of |grad_i| over every leaf. */
static void grad_checksums(const case_inputs *in, double *dot, double *abs_sum) {
  *dot = *abs_sum = 0;
  for (int l = 0; l < in->n_leaves; l++) {
    const sg_tensor *gr = in->leaf[l]->grad;
    for (int64_t i = 0; gr && i < gr->numel; i++) {
      double v = sg_get(gr, i);
      *dot += v * cos(0.7 * (double)i);
      *abs_sum += fabs(v);
    }
  }
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof v[0], cmp_double);
  return v[n / 2];
}

static void bench(const bench_case *c, int min_runs, double budget) {
  case_inputs in = make_inputs(c);
  sg_graph *g = sg_graph_new();
  static double times[MAX_RUNS], cpu_times[MAX_RUNS];
  double loss = 0;
  for (int i = 0; i < WARMUP; i++) loss = run_once(g, c, &in);
  int runs = 0;
  double start = now();
  while (runs < MAX_RUNS && (runs < min_runs || now() - start < budget)) {
    double t0 = now(), c0 = cpu_now();
    run_once(g, c, &in);
    cpu_times[runs] = cpu_now() - c0;
    times[runs++] = now() - t0;
  }
  double dot, abs_sum;
  grad_checksums(&in, &dot, &abs_sum);
  printf("%s\t%.3f\t%d\t%.9g\t%.9g\t%.9g\t%.3f\n", c->name, 1e6 * median(times, runs), runs, loss,
         dot, abs_sum, 1e6 * median(cpu_times, runs));
  fflush(stdout);
  sg_graph_free(g);
  free_inputs(&in);
}

static void usage(void) {
  fprintf(stderr,
          "usage: bench_layers [--threads T] [--min-runs N] [--budget S] [--list] [CASE ...]\n");
  exit(2);
}

enum { N_CASES = sizeof CASES / sizeof CASES[0] };

static const bench_case *find_case(const char *name) {
  for (int i = 0; i < N_CASES; i++)
    if (strcmp(CASES[i].name, name) == 0) return &CASES[i];
  fprintf(stderr, "bench_layers: no case '%s' (see --list)\n", name);
  exit(2);
}

int main(int argc, char **argv) {
  int threads = 2, min_runs = 51;
  double budget = 0.5;
  const bench_case *chosen[N_CASES];
  int n_chosen = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (strcmp(argv[i], "--min-runs") == 0 && i + 1 < argc)
      min_runs = atoi(argv[++i]);
    else if (strcmp(argv[i], "--budget") == 0 && i + 1 < argc)
      budget = atof(argv[++i]);
    else if (strcmp(argv[i], "--list") == 0) {
      for (int c = 0; c < N_CASES; c++) puts(CASES[c].name);
      return 0;
    } else if (argv[i][0] != '-' && n_chosen < N_CASES)
      chosen[n_chosen++] = find_case(argv[i]);
    else
      usage();
  }
  if (threads < 1 || min_runs < 1 || min_runs > MAX_RUNS || !(budget >= 0)) usage();
  omp_set_num_threads(threads);
  if (n_chosen == 0)
    for (int c = 0; c < N_CASES; c++) chosen[n_chosen++] = &CASES[c];
  for (int c = 0; c < n_chosen; c++) bench(chosen[c], min_runs, budget);
  return 0;
}
