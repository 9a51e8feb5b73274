/* Learning to sort with Gumbel-Sinkhorn (Mena et al., "Learning latent
 * permutations with Gumbel-Sinkhorn networks", ICLR 2018, section 5.1).
 *
 * A sequence x of n numbers uniform in [0, 1] goes through a small network
 * applied to each number on its own (shared weights): x_i -> 32 ReLU units
 * -> n logits, a row X_i of scores "element i goes to position j". The rows
 * form X [n, n]; the soft permutation is
 *
 *     P = exp(sinkhorn((X + G) / tau))      rows and columns sum to 1
 *
 * (sg_sinkhorn with row mass 1 and column capacity 1 on a square matrix
 * converges to plain doubly stochastic balancing), with Gumbel noise G while
 * training. Position j receives the mixture sum_i P_ij x_i = (P^T x)_j, and
 * the loss is its squared error against the sorted sequence. The network
 * never sees the other numbers of the sequence: it must learn where each
 * value tends to go, and the Sinkhorn layer resolves the conflicts.
 *
 * At test time there is no noise and the hard permutation is the
 * max-weight assignment on X (Hungarian algorithm below); the program prints
 * the fraction of positions holding the right element on held-out sequences
 * and exits 1 when it is below --min-accuracy. Everything is seeded, and the
 * library's results do not depend on the thread count, so a seed gives the
 * same numbers on every run. Explained with the formulas in docs/layers.md,
 * "Worked example: learning to sort". */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sinkgrad.h"

enum { HIDDEN = 32, MAX_N = 64, EXIT_USAGE = 2, REPORT_EVERY = 250 };

typedef struct options {
  int n;              /* sequence length */
  int steps;          /* Adam steps */
  int batch;          /* sequences per step */
  int test;           /* held-out sequences */
  int sinkhorn_iters; /* most Sinkhorn iterations per sample */
  double tol;         /* Sinkhorn stops a sample once its column excess < tol */
  bool unrolled;      /* Sinkhorn gradient: unrolled (else implicit) */
  double tau;         /* temperature */
  double noise;       /* scale of the Gumbel noise while training */
  double lr;          /* Adam learning rate */
  double min_accuracy;
  unsigned long long seed;
  int threads; /* 0: OpenMP's default */
  bool quiet;
} options;

typedef struct model {
  sg_tensor *w1, *b1, *w2, *b2; /* 1 -> HIDDEN -> n */
} model;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the model ------------------------------------------------------------- */

/* PyTorch's nn.Linear initialisation: U(-1/sqrt(in), 1/sqrt(in)). */
static sg_tensor *param(sg_rng *r, int nd, const int64_t *shape, int64_t fan_in) {
  double bound = 1 / sqrt((double)fan_in);
  sg_tensor *t = sg_rand_uniform(NULL, r, SG_F32, nd, shape, -bound, bound);
  sg_set_requires_grad(t, true);
  return t;
}

static model model_new(sg_rng *r, int n) {
  return (model){param(r, 2, (int64_t[]){HIDDEN, 1}, 1), param(r, 1, (int64_t[]){HIDDEN}, 1),
                 param(r, 2, (int64_t[]){n, HIDDEN}, HIDDEN), param(r, 1, (int64_t[]){n}, HIDDEN)};
}

/* x [B, n, 1] -> X [B, n, n]: row i scores the positions for element i. */
static sg_tensor *logits(sg_graph *g, const model *m, sg_tensor *x) {
  sg_tensor *h = sg_relu(g, sg_linear(g, x, m->w1, m->b1));
  return sg_linear(g, h, m->w2, m->b2);
}

/* log P for logits z [B, n, n]: row mass 1, column capacity 1. With as many
 * columns as rows the capacities are tight, so the iteration converges to
 * the doubly stochastic matrix diag(a) exp(z) diag(b). */
static sg_tensor *log_soft_permutation(sg_graph *g, const options *o, sg_tensor *z,
                                       sg_sinkhorn_info *info) {
  sg_sinkhorn_grad mode = o->unrolled ? SG_SINKHORN_UNROLLED : SG_SINKHORN_IMPLICIT;
  return sg_sinkhorn(g, z, 1, 1, o->sinkhorn_iters, o->tol, mode, info);
}

/* ---- data ------------------------------------------------------------------ */

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* B sequences of n numbers uniform in [0, 1] and the same sequences sorted
 * ascending, both [B, n, 1] (in g's arena, or caller-owned for g NULL). */
static void draw_batch(sg_graph *g, sg_rng *r, int B, int n, sg_tensor **x, sg_tensor **sorted) {
  int64_t shape[3] = {B, n, 1};
  *x = sg_rand_uniform(g, r, SG_F32, 3, shape, 0, 1);
  *sorted = sg_clone(g, *x);
  for (int b = 0; b < B; b++) qsort(sg_f32(*sorted) + (int64_t)b * n, n, sizeof(float), cmp_float);
}

/* ---- training ---------------------------------------------------------------- */

/* One Adam step on a fresh batch; returns the loss and, in *iters, the
 * Sinkhorn iterations run (largest over the batch). */
static double train_step(sg_graph *g, const options *o, const model *m, sg_adam *opt,
                         sg_tensor *const *params, sg_rng *r, int *iters) {
  sg_graph_reset(g); /* drop last step's tensors and tape, keep the memory */
  sg_tensor *x, *sorted;
  draw_batch(g, r, o->batch, o->n, &x, &sorted);
  sg_tensor *X = logits(g, m, x);
  int64_t shape[3] = {o->batch, o->n, o->n};
  sg_tensor *G = sg_scale(g, sg_rand_gumbel(g, r, SG_F32, 3, shape), o->noise);
  sg_tensor *z = sg_scale(g, sg_add(g, X, G), 1 / o->tau);
  sg_sinkhorn_info info;
  sg_tensor *P = sg_exp(g, log_soft_permutation(g, o, z, &info));
  sg_tensor *placed = sg_matmul(g, P, x, true, false); /* (P^T x)_j = sum_i P_ij x_i */
  sg_tensor *loss = sg_mean_all(g, sg_square(g, sg_sub(g, placed, sorted)));
  sg_params_zero_grad(params, 4);
  sg_backward(g, loss);
  sg_adam_step(opt);
  *iters = info.iters;
  return sg_get(loss, 0);
}

/* ---- hard permutation: Hungarian algorithm ------------------------------------ */

/* Max-weight perfect matching of rows to columns of the n x n matrix w
 * (row-major): shortest augmenting paths with dual potentials u, v on the
 * cost -w, O(n^3). Rows are added one at a time; column 0 is a virtual
 * start. Writes assign[i] = column of row i. */
static void hungarian_max(const double *w, int n, int *assign) {
  double u[MAX_N + 1] = {0}, v[MAX_N + 1] = {0}, minv[MAX_N + 1];
  int match[MAX_N + 1] = {0}, way[MAX_N + 1] = {0}; /* match[j]: row (1-based) on column j */
  char used[MAX_N + 1];
  for (int i = 1; i <= n; i++) {
    match[0] = i;
    int j0 = 0;
    for (int j = 0; j <= n; j++) minv[j] = INFINITY, used[j] = 0;
    do { /* grow the shortest path tree until it reaches a free column */
      used[j0] = 1;
      int i0 = match[j0], j1 = 0;
      double delta = INFINITY;
      for (int j = 1; j <= n; j++) {
        if (used[j]) continue;
        double reduced = -w[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
        if (reduced < minv[j]) minv[j] = reduced, way[j] = j0;
        if (minv[j] < delta) delta = minv[j], j1 = j;
      }
      for (int j = 0; j <= n; j++) {
        if (used[j])
          u[match[j]] += delta, v[j] -= delta;
        else
          minv[j] -= delta;
      }
      j0 = j1;
    } while (match[j0] != 0);
    do { /* augment: shift the rows along the path */
      int j1 = way[j0];
      match[j0] = match[j1];
      j0 = j1;
    } while (j0);
  }
  for (int j = 1; j <= n; j++) assign[match[j] - 1] = j - 1;
}

/* ---- evaluation ---------------------------------------------------------------- */

typedef struct accuracy {
  double positions;  /* Hungarian on X: fraction of positions holding the right element */
  double sequences;  /* ... fraction of sequences sorted entirely right */
  double row_argmax; /* fraction of elements whose row of P peaks at the right position */
} accuracy;

/* Rank of element i in the sequence xs (0 = smallest): its correct position. */
static int rank_of(const float *xs, int n, int i) {
  int rank = 0;
  for (int k = 0; k < n; k++) rank += xs[k] < xs[i] || (xs[k] == xs[i] && k < i);
  return rank;
}

static int row_argmax(const float *row, int n) {
  int best = 0;
  for (int j = 1; j < n; j++)
    if (row[j] > row[best]) best = j;
  return best;
}

/* Noise-free evaluation on x [B, n, 1] (no gradient). Sinkhorn only
 * subtracts row and column potentials from X / tau, which shifts every
 * permutation's total score equally, so the Hungarian assignment on X is
 * also the best permutation under the noise-free P. The row argmax of P is
 * reported for comparison: it needs no matching but need not be a
 * permutation (two elements may peak at the same position). */
static accuracy evaluate(sg_graph *g, const options *o, const model *m, sg_tensor *x) {
  int n = o->n;
  sg_graph_reset(g);
  bool was = sg_set_grad_enabled(g, false);
  sg_tensor *X = logits(g, m, x);
  sg_tensor *logP = log_soft_permutation(g, o, sg_scale(g, X, 1 / o->tau), NULL);
  sg_set_grad_enabled(g, was);
  int64_t B = x->shape[0], right = 0, whole = 0, peak_right = 0;
  double w[MAX_N * MAX_N];
  int assign[MAX_N];
  for (int64_t b = 0; b < B; b++) {
    const float *xs = sg_f32(x) + b * n, *Xb = sg_f32(X) + b * n * n;
    const float *logPb = sg_f32(logP) + b * n * n;
    for (int k = 0; k < n * n; k++) w[k] = Xb[k];
    hungarian_max(w, n, assign);
    int ok = 0;
    for (int i = 0; i < n; i++) {
      int rank = rank_of(xs, n, i);
      ok += assign[i] == rank;
      peak_right += row_argmax(logPb + i * n, n) == rank;
    }
    right += ok;
    whole += ok == n;
  }
  double cells = (double)(B * n);
  return (accuracy){right / cells, (double)whole / (double)B, peak_right / cells};
}

/* ---- command line ---------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f, "usage: sort_sinkhorn [--n N] [--steps S] [--batch B] [--test COUNT] [--seed SEED]\n"
             "                     [--iters T] [--tol TOL] [--grad implicit|unrolled]\n"
             "                     [--tau TAU] [--noise SCALE] [--lr LR] [--threads THREADS]\n"
             "                     [--min-accuracy A] [--quiet]\n"
             "Learns to sort N numbers in [0, 1] with a Gumbel-Sinkhorn network and prints\n"
             "the fraction of correctly placed positions on COUNT held-out sequences.\n"
             "Defaults: N 8, S 1000, B 64, COUNT 1000, SEED 1, T 5000, TOL 1e-3, implicit,\n"
             "TAU 1, SCALE 1, LR 0.01, A 0. Exits 1 if the fraction is below A.\n");
}

static int parse_int(const char *opt, const char *text, long lo, long hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno || end == text || *end || v < lo || v > hi) {
    fprintf(stderr, "sort_sinkhorn: bad value '%s' for %s (integer in [%ld, %ld])\n", text, opt, lo,
            hi);
    return -1;
  }
  *out = (int)v;
  return 0;
}

static int parse_double(const char *opt, const char *text, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (errno || end == text || *end || !(v >= lo && v <= hi)) {
    fprintf(stderr, "sort_sinkhorn: bad value '%s' for %s (number in [%g, %g])\n", text, opt, lo,
            hi);
    return -1;
  }
  *out = v;
  return 0;
}

static int parse_seed(const char *text, unsigned long long *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno || end == text || *end || text[0] == '-') {
    fprintf(stderr, "sort_sinkhorn: bad value '%s' for --seed (integer >= 0)\n", text);
    return -1;
  }
  *out = v;
  return 0;
}

static int parse_grad(const char *text, bool *unrolled) {
  if (strcmp(text, "unrolled") && strcmp(text, "implicit")) {
    fprintf(stderr, "sort_sinkhorn: bad value '%s' for --grad (implicit or unrolled)\n", text);
    return -1;
  }
  *unrolled = !strcmp(text, "unrolled");
  return 0;
}

/* Parses one option taking a value; returns 0, or -1 after a message.
 * val NULL: only says whether opt is known (0) or not (-1, reported). */
static int parse_option(const char *opt, const char *val, options *o) {
  static const char *const names[] = {"--n",     "--steps",   "--batch",       "--test", "--seed",
                                      "--iters", "--tol",     "--grad",        "--tau",  "--noise",
                                      "--lr",    "--threads", "--min-accuracy"};
  bool known = false;
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) known = known || !strcmp(opt, names[i]);
  if (!known) {
    fprintf(stderr, "sort_sinkhorn: unknown option %s (try --help)\n", opt);
    return -1;
  }
  if (!val) return 0;
  if (!strcmp(opt, "--n")) return parse_int(opt, val, 2, MAX_N, &o->n);
  if (!strcmp(opt, "--steps")) return parse_int(opt, val, 0, 10000000, &o->steps);
  if (!strcmp(opt, "--batch")) return parse_int(opt, val, 1, 100000, &o->batch);
  if (!strcmp(opt, "--test")) return parse_int(opt, val, 1, 1000000, &o->test);
  if (!strcmp(opt, "--seed")) return parse_seed(val, &o->seed);
  if (!strcmp(opt, "--iters")) return parse_int(opt, val, 1, 1000000, &o->sinkhorn_iters);
  if (!strcmp(opt, "--tol")) return parse_double(opt, val, 0, 1, &o->tol);
  if (!strcmp(opt, "--grad")) return parse_grad(val, &o->unrolled);
  if (!strcmp(opt, "--tau")) return parse_double(opt, val, 1e-3, 1e3, &o->tau);
  if (!strcmp(opt, "--noise")) return parse_double(opt, val, 0, 1e3, &o->noise);
  if (!strcmp(opt, "--lr")) return parse_double(opt, val, 1e-8, 10, &o->lr);
  if (!strcmp(opt, "--threads")) return parse_int(opt, val, 1, 1024, &o->threads);
  return parse_double(opt, val, 0, 1, &o->min_accuracy); /* --min-accuracy */
}

/* Returns 0, 1 after --help, or -1 on a bad argument. */
static int parse_args(int argc, char **argv, options *o) {
  for (int a = 1; a < argc; a++) {
    if (!strcmp(argv[a], "--help")) return usage(stdout), 1;
    if (!strcmp(argv[a], "--quiet")) {
      o->quiet = true;
      continue;
    }
    if (a + 1 >= argc) { /* the last word: an option missing its value, or unknown */
      if (parse_option(argv[a], NULL, o) == 0)
        fprintf(stderr, "sort_sinkhorn: %s needs a value (try --help)\n", argv[a]);
      return -1;
    }
    if (parse_option(argv[a], argv[a + 1], o)) return -1;
    a++;
  }
  return 0;
}

/* ---- main ------------------------------------------------------------------------- */

static void train(const options *o, const model *m, sg_tensor *const *params, sg_graph *g,
                  sg_tensor *test_x) {
  sg_rng rng;
  sg_rng_seed(&rng, o->seed);
  sg_adam *opt = sg_adam_new(params, 4, o->lr);
  double loss_sum = 0;
  int loss_count = 0, iters, iters_max = 0;
  for (int step = 1; step <= o->steps; step++) {
    loss_sum += train_step(g, o, m, opt, params, &rng, &iters);
    loss_count++;
    if (iters > iters_max) iters_max = iters;
    if (!o->quiet && (step % REPORT_EVERY == 0 || step == o->steps)) {
      accuracy acc = evaluate(g, o, m, test_x);
      printf("step %5d  loss %.6f  Sinkhorn iterations <= %4d  held-out accuracy %.4f\n", step,
             loss_sum / loss_count, iters_max, acc.positions);
      loss_sum = 0, loss_count = 0, iters_max = 0;
    }
  }
  sg_adam_free(opt);
}

int main(int argc, char **argv) {
  options o = {.n = 8,
               .steps = 1000,
               .batch = 64,
               .test = 1000,
               .sinkhorn_iters = 5000,
               .tol = 1e-3,
               .unrolled = false,
               .tau = 1,
               .noise = 1,
               .lr = 1e-2,
               .min_accuracy = 0,
               .seed = 1,
               .threads = 0,
               .quiet = false};
  int rc = parse_args(argc, argv, &o);
  if (rc) return rc > 0 ? EXIT_SUCCESS : EXIT_USAGE;
  if (o.threads > 0) omp_set_num_threads(o.threads);

  /* The weights come from the seed, the held-out set from a stream of its
   * own, and each step's batch and noise from a third. */
  sg_rng init_rng, test_rng;
  sg_rng_seed(&init_rng, o.seed ^ 0x1a17ULL);
  sg_rng_seed(&test_rng, o.seed ^ 0x5eed7e57ULL);
  model m = model_new(&init_rng, o.n);
  sg_tensor *params[] = {m.w1, m.b1, m.w2, m.b2};
  sg_tensor *test_x, *test_sorted;
  draw_batch(NULL, &test_rng, o.test, o.n, &test_x, &test_sorted);
  sg_graph *g = sg_graph_new();
  if (!o.quiet)
    printf("sort_sinkhorn: n = %d, MLP 1-%d-%d per element, batch %d, tau %g, noise %g,\n"
           "  Sinkhorn <= %d iterations, tol %g, %s gradient; Adam lr %g; seed %llu; "
           "threads %d\n",
           o.n, HIDDEN, o.n, o.batch, o.tau, o.noise, o.sinkhorn_iters, o.tol,
           o.unrolled ? "unrolled" : "implicit", o.lr, o.seed, omp_get_max_threads());

  double start = now_seconds();
  train(&o, &m, params, g, test_x);
  double seconds = now_seconds() - start;
  accuracy acc = evaluate(g, &o, &m, test_x);
  printf("held-out (%d sequences of %d): %.4f of positions right (Hungarian), %.4f of "
         "sequences sorted entirely, %.4f by row argmax of P; %d steps in %.2f s\n",
         o.test, o.n, acc.positions, acc.sequences, acc.row_argmax, o.steps, seconds);

  sg_graph_free(g);
  for (int i = 0; i < 4; i++) sg_free(params[i]);
  sg_free(test_x);
  sg_free(test_sorted);
  if (acc.positions < o.min_accuracy) {
    fprintf(stderr, "sort_sinkhorn: accuracy %.4f below --min-accuracy %.4f\n", acc.positions,
            o.min_accuracy);
    return EXIT_FAILURE;
  }
  return EXIT_SUCCESS;
}
