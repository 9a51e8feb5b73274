/* The sinkgrad side of the PyTorch comparison (bench/run, bench/torch_gnn.py).
 *
 * One process per measurement, so that peak resident memory (ru_maxrss) of
 * one configuration never includes another's:
 *   bench_gnn export --out F.npz [config]  weights, inputs, Gumbel noise,
 *       couplings, mu, and the reference results (loss, gradients, loss after
 *       one Adam step, eval-mode A~) for the torch side to check against
 *   bench_gnn train [config]  median time of a training step: forward,
 *       assoc_sum_rate, assoc_loss, backward, Adam
 *   bench_gnn infer [config]  eval-mode forward + row argmax, one sample and
 *       a batch of 256
 *   bench_gnn gemm            the BLAS provider's sgemm GFLOP/s and the
 *       memory read bandwidth
 *   bench_gnn wmmse           WMMSE beams (models/beam) per sample, the
 *       reference of BFGNN's inference (bench_bfgnn.c)
 * --variant bfgnn: export, train and infer of BFGNN (bench_bfgnn.c), with
 * the beam head of --head direct|duality (default direct), and fused: its
 * fused float32 inference (assoc_bfgnn_fused_beams).
 * [config]: --variant attskgs|skgs|bfgnn [--head direct|duality] --d D --h H --batch B [--L 2]
 * [--steps N]
 * [--warmup N] [--reps N] [--threads 2] [--seed S] [--chunk C] (samples per
 * forward in assoc_gnn_predict; default: its own choice) [--anomaly 0|1]
 * (anomaly mode on every graph, for its cost). Every mode prints one
 * JSON object on stdout.
 *
 * The inputs are the paper scenario (M = 2 BSs, N = 4 antennas, K = 8 UEs)
 * from assoc_generate, prepared as the trainer prepares them
 * (assoc_gnn_batch_make); the Gumbel noise is drawn once and given to the
 * forward, so both sides compute exactly the same function. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "sg_config.h"
#include "assoc_train.h"
#include "bench_gemm.h"
#include "bench_gnn.h"

static const double DELTA = 2.0;            /* load margin of the loss (paper) */
static const double MU[M_BS] = {0.25, 0.5}; /* non-zero, so the penalty is compared too */

void usage(void) {
  fprintf(stderr,
          "usage: bench_gnn export|train|infer|fused|gemm|wmmse [--variant attskgs|skgs|bfgnn] "
          "[--head direct|duality] [--d D] "
          "[--h H] [--L L] [--batch B] [--steps N] [--warmup N] [--reps N] "
          "[--threads T] [--seed S] [--chunk C] [--anomaly 0|1] [--out F.npz]\n");
  exit(2);
}

static long parse_int(const char *s, long lo, long hi) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
    fprintf(stderr, "bench_gnn: bad number '%s' (range %ld..%ld)\n", s, lo, hi);
    exit(2);
  }
  return v;
}

static options parse_args(int argc, char **argv) {
  options o = {.variant = ASSOC_GNN_ATTSKGS,
               .d = 64,
               .h = 128,
               .L = 2,
               .threads = 2,
               .steps = 25,
               .warmup = 3,
               .reps = 200,
               .batch = 256,
               .seed = 1};
  if (argc < 2) usage();
  o.mode = argv[1];
  for (int i = 2; i < argc; i += 2) {
    if (i + 1 >= argc) usage();
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--variant") && !strcmp(v, "bfgnn")) {
      o.bfgnn = true;
    } else if (!strcmp(k, "--variant")) {
      int var = assoc_gnn_variant_parse(v);
      if (var != ASSOC_GNN_ATTSKGS && var != ASSOC_GNN_SKGS) usage();
      o.variant = (assoc_gnn_variant)var;
    } else if (!strcmp(k, "--head") && (!strcmp(v, "direct") || !strcmp(v, "duality"))) {
      o.head = !strcmp(v, "duality") ? ASSOC_BFGNN_HEAD_DUALITY : ASSOC_BFGNN_HEAD_DIRECT;
    } else if (!strcmp(k, "--d"))
      o.d = (int)parse_int(v, 1, 1 << 14);
    else if (!strcmp(k, "--h"))
      o.h = (int)parse_int(v, 1, 1 << 15);
    else if (!strcmp(k, "--L"))
      o.L = (int)parse_int(v, 1, 16);
    else if (!strcmp(k, "--batch"))
      o.batch = parse_int(v, 1, MAX_SAMPLES);
    else if (!strcmp(k, "--steps"))
      o.steps = (int)parse_int(v, 1, 100000);
    else if (!strcmp(k, "--warmup"))
      o.warmup = (int)parse_int(v, 0, 1000);
    else if (!strcmp(k, "--reps"))
      o.reps = (int)parse_int(v, 1, 1000000);
    else if (!strcmp(k, "--chunk"))
      o.chunk = parse_int(v, 1, INFER_BATCH);
    else if (!strcmp(k, "--threads"))
      o.threads = (int)parse_int(v, 1, 1024);
    else if (!strcmp(k, "--seed"))
      o.seed = (uint64_t)parse_int(v, 0, 1L << 40);
    else if (!strcmp(k, "--out"))
      o.out = v;
    else if (!strcmp(k, "--anomaly")) /* 1: every graph checks for NaN/Inf (sg_autograd.h) */
      sg_set_detect_anomaly(parse_int(v, 0, 1));
    else
      usage();
  }
  if (o.head != ASSOC_BFGNN_HEAD_DIRECT && !o.bfgnn) usage(); /* a head of BFGNN only */
  return o;
}

/* ---- small utilities ------------------------------------------------------------ */

void die(const char *what) {
  fprintf(stderr, "bench_gnn: %s\n", what);
  exit(1);
}

double peak_rss_mib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

double thread_cpu_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

long involuntary_switches(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_nivcsw;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double median(const double *v, int n) {
  double *s = malloc((size_t)n * sizeof *s);
  if (!s) die("out of memory");
  memcpy(s, v, (size_t)n * sizeof *s);
  qsort(s, (size_t)n, sizeof *s, cmp_double);
  double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
  free(s);
  return m;
}

void print_ms_array(const char *key, const double *v, int n) {
  printf("\"%s\": [", key);
  for (int i = 0; i < n; i++) printf("%s%.4f", i ? ", " : "", v[i]);
  printf("]");
}

/* ---- GEMM work of a step ------------------------------------------------------- */

/* The forward and the backward (weight gradient always, input gradient
 * when the input needs one: not for the raw features p, q, H). Attention
 * and element-wise work are left out: they are below 1% at every width. */

static void count_linear(flop_count *f, double rows, double in, double out, bool dx) {
  double one = 2.0 * rows * in * out;
  f->fwd += one;
  f->bwd += dx ? 2 * one : one;
}

/* An MLP whose first Linear is split over parts (rows[i] x width[i]), the
 * second running at R rows and the last at R_out (fewer when the messages
 * are averaged before it: sg_mlp_forward_parts_mean). */
static void count_mlp(flop_count *f, int n, const double *rows, const double *width, double R,
                      double R_out, double h, double out, bool dx) {
  for (int i = 0; i < n; i++) count_linear(f, rows[i], width[i], h, dx);
  count_linear(f, R, h, h, true);
  count_linear(f, R_out, h, out, true);
}

flop_count gemm_flops(const assoc_gnn_config *c, double B, double M, double K, double head_out) {
  flop_count f = {0, 0};
  double d = c->d, h = c->h, E = B * K * M, NB = B * M, NU = B * K;
  count_mlp(&f, 1, &NB, (double[]){c->fp}, NB, NB, h, d, false);
  count_mlp(&f, 1, &NU, (double[]){c->fq}, NU, NU, h, d, false);
  count_mlp(&f, 1, &E, (double[]){c->fe}, E, E, h, d, false);
  for (int l = 0; l < c->L; l++) {
    if (l < c->L - 1) { /* node updates f1..f4; f1 and f3 averaged before their last Linear */
      count_mlp(&f, 2, (double[]){NU, E}, (double[]){d, d}, E, NB, h, d, true);
      count_mlp(&f, 2, (double[]){NB, E}, (double[]){d, d}, E, NU, h, d, true);
      count_mlp(&f, 2, (double[]){NB, NB}, (double[]){d, d}, NB, NB, h, d, true);
      count_mlp(&f, 2, (double[]){NU, NU}, (double[]){d, d}, NU, NU, h, d, true);
    }
    if (c->variant == ASSOC_GNN_ATTSKGS) {
      count_linear(&f, NU, d, d, true); /* W_Q */
      count_linear(&f, NB, d, d, true); /* W_K */
      count_linear(&f, E, d, d, true);  /* W_V */
      count_mlp(&f, 2, (double[]){E, NU}, (double[]){d, d}, E, E, h, d, true);
    } else {
      count_mlp(&f, 3, (double[]){E, NB, NU}, (double[]){d, d, d}, E, E, h, d, true);
    }
  }
  count_mlp(&f, 1, &E, &d, E, E, h, head_out, true);
  return f;
}

/* ---- the problem ------------------------------------------------------------------ */

typedef struct problem {
  assoc_gnn *model;
  assoc_dataset ds;
  double feature_scale;
  assoc_gnn_batch train;  /* batch of opt.batch samples with couplings (owned tensors) */
  sg_tensor *noise;       /* Gumbel sample [B, K, M] */
  assoc_gnn_batch infer;  /* INFER_BATCH samples, no couplings */
  assoc_gnn_batch infer1; /* the first sample alone */
  int64_t chunk;          /* of assoc_gnn_predict; 0: its default */
} problem;

static assoc_gnn_config model_config(const options *o) {
  assoc_gnn_config c = assoc_gnn_config_paper(o->variant);
  c.d = o->d;
  c.h = o->h;
  c.L = o->L;
  return c;
}

/* Copies the arena tensors of a batch into caller-owned ones. */
static assoc_gnn_batch own_batch(const assoc_gnn_batch *b) {
  assoc_gnn_batch o = {.B = b->B};
  o.p = sg_clone(NULL, b->p);
  o.q = sg_clone(NULL, b->q);
  o.H = sg_clone(NULL, b->H);
  if (b->c_re) o.c_re = sg_clone(NULL, b->c_re), o.c_im = sg_clone(NULL, b->c_im);
  return o;
}

static assoc_gnn_batch make_batch(const problem *pb, int64_t B, bool couplings) {
  sg_graph *g = sg_graph_new();
  assoc_gnn_batch in, owned;
  if (!g || assoc_gnn_batch_make(g, &pb->ds, NULL, 0, B, pb->feature_scale, ASSOC_FEATURES_CHANNEL,
                                 SG_F32, couplings, &in))
    die("could not build the batch inputs");
  owned = own_batch(&in);
  sg_graph_free(g);
  return owned;
}

static void free_batch(assoc_gnn_batch *b) {
  sg_free(b->p), sg_free(b->q), sg_free(b->H), sg_free(b->c_re), sg_free(b->c_im);
}

static problem problem_new(const options *o) {
  problem pb = {0};
  assoc_gnn_config cfg = model_config(o);
  pb.model = assoc_gnn_new(&cfg, o->seed);
  if (!pb.model) die("could not build the model");
  assoc_scenario sc = assoc_scenario_default();
  int64_t S = o->batch > INFER_BATCH ? o->batch : INFER_BATCH;
  sg_io_error err;
  if (assoc_generate(&sc, S, &pb.ds, &err)) die(err.msg);
  if (pb.ds.M != M_BS || 2 * pb.ds.N != cfg.fe) die("unexpected scenario sizes");
  pb.feature_scale = assoc_feature_scale(&pb.ds);
  pb.chunk = o->chunk;
  pb.train = make_batch(&pb, o->batch, true);
  pb.infer = make_batch(&pb, INFER_BATCH, false);
  pb.infer1 = make_batch(&pb, 1, false);
  sg_rng rng;
  sg_rng_seed(&rng, o->seed + 1000);
  pb.noise = sg_rand_gumbel(NULL, &rng, SG_F32, 3, (int64_t[]){o->batch, pb.ds.K, pb.ds.M});
  return pb;
}

static void problem_free(problem *pb) {
  free_batch(&pb->train), free_batch(&pb->infer), free_batch(&pb->infer1);
  sg_free(pb->noise);
  assoc_dataset_free(&pb->ds);
  assoc_gnn_free(pb->model);
}

/* ---- the measured work -------------------------------------------------------------- */

/* The training loss of the fixed batch, recorded on g (reset first). */
static sg_tensor *train_loss(sg_graph *g, const problem *pb) {
  sg_graph_reset(g);
  const assoc_gnn_batch *in = &pb->train;
  assoc_gnn_output o =
      assoc_gnn_forward(g, pb->model, in->p, in->q, in->H, ASSOC_GNN_TRAIN, NULL, pb->noise);
  sg_tensor *rate = assoc_sum_rate(g, o.assoc, in->c_re, in->c_im, 1.0);
  sg_tensor *loss = assoc_loss(g, rate, o.assoc, MU, pb->model->cfg.capacity, DELTA, NULL);
  if (!loss) die("the training forward failed");
  return loss;
}

static sg_tensor *loss_of(sg_graph *g, void *ctx) {
  return train_loss(g, ctx);
}

/* Eval-mode forward (no noise) through the library's chunked inference,
 * and the row argmax: the association. Returns A~ (caller-owned). */
static sg_tensor *infer(sg_graph *g, const problem *pb, const assoc_gnn_batch *in, int *assoc) {
  sg_tensor *A = assoc_gnn_predict(g, pb->model, in->p, in->q, in->H, pb->chunk);
  if (!A) die("the eval forward failed");
  assoc_argmax(A, assoc);
  return A;
}

/* ---- modes ---------------------------------------------------------------------------- */

static void infer_of(sg_graph *g, void *ctx, bool batch) {
  const problem *pb = ctx;
  int assoc[INFER_BATCH * 64];
  sg_free(infer(g, pb, batch ? &pb->infer : &pb->infer1, assoc));
}

static bench_model bench_model_of(problem *pb) {
  return (bench_model){.name = assoc_gnn_variant_name(pb->model->cfg.variant),
                       .trunk = &pb->model->cfg,
                       .head_out = 1,
                       .M = pb->ds.M,
                       .K = pb->ds.K,
                       .N = pb->ds.N,
                       .params = pb->model->params,
                       .ctx = pb,
                       .loss = loss_of,
                       .infer = infer_of};
}

void add_tensor(sg_npz_writer *w, const char *name, const sg_tensor *t) {
  sg_io_error err;
  if (sg_npz_add_tensor(w, name, t, &err)) die(err.msg);
}

void add_scalar(sg_npz_writer *w, const char *name, double v) {
  sg_io_error err;
  if (sg_npz_add_scalar_f64(w, name, v, &err)) die(err.msg);
}

void add_params(sg_npz_writer *w, sg_params *ps, const char *grad_prefix) {
  for (int i = 0; i < sg_params_count(ps); i++) {
    char name[SG_PARAM_NAME_MAX + 16];
    snprintf(name, sizeof name, "%s%s", grad_prefix ? grad_prefix : "param/",
             sg_params_name(ps, i));
    sg_tensor *p = sg_params_at(ps, i);
    if (!grad_prefix)
      add_tensor(w, name, p);
    else if (p->grad) /* absent: the loss does not reach it */
      add_tensor(w, name, p->grad);
  }
}

static void export_inputs(sg_npz_writer *w, const problem *pb) {
  const assoc_gnn_config *c = &pb->model->cfg;
  add_params(w, pb->model->params, NULL);
  add_tensor(w, "train/p", pb->train.p), add_tensor(w, "train/q", pb->train.q);
  add_tensor(w, "train/H", pb->train.H), add_tensor(w, "train/noise", pb->noise);
  add_tensor(w, "train/c_re", pb->train.c_re), add_tensor(w, "train/c_im", pb->train.c_im);
  add_tensor(w, "infer/p", pb->infer.p), add_tensor(w, "infer/q", pb->infer.q);
  add_tensor(w, "infer/H", pb->infer.H);
  sg_tensor *mu = sg_from_f64(NULL, SG_F64, 1, (int64_t[]){M_BS}, MU);
  add_tensor(w, "cfg/mu", mu);
  sg_free(mu);
  add_scalar(w, "cfg/variant", c->variant == ASSOC_GNN_ATTSKGS ? 0 : 1);
  add_scalar(w, "cfg/d", c->d), add_scalar(w, "cfg/h", c->h), add_scalar(w, "cfg/L", c->L);
  add_scalar(w, "cfg/tau", c->tau), add_scalar(w, "cfg/sk_iters", c->sk_iters);
  add_scalar(w, "cfg/capacity", c->capacity), add_scalar(w, "cfg/delta", DELTA);
  add_scalar(w, "cfg/lr", LR);
}

/* A float64 copy of the model (same weights) and of the training batch. */
static assoc_gnn *model_f64(const problem *pb) {
  assoc_gnn_config c = pb->model->cfg;
  c.dtype = SG_F64;
  assoc_gnn *m = assoc_gnn_new(&c, 0);
  if (!m || sg_params_copy(m->params, pb->model->params)) die("could not build the float64 model");
  return m;
}

/* The float64 loss and gradients of the same weights and inputs
 * ("ref64/..."), and the float32 gradient against the float64 one of the
 * same ReLU decisions (assoc_gnn_precision_check, "prec/..."): the torch side
 * checks the former against its float64 (the same function), the latter
 * is float32's own accuracy. Both at the initial weights. */
static void export_f64(sg_npz_writer *w, const problem *pb, assoc_precision_report *rep) {
  assoc_gnn *m64 = model_f64(pb);
  sg_io_error err;
  const assoc_gnn_batch *in = &pb->train;
  if (assoc_gnn_precision_check(pb->model, m64, in, pb->noise, MU, DELTA, rep, &err)) die(err.msg);
  sg_tensor *rel = sg_from_f64(NULL, SG_F64, 1, (int64_t[]){rep->n_params}, rep->param_rel);
  add_tensor(w, "prec/param_rel", rel);
  sg_free(rel);
  add_scalar(w, "prec/grad_rel", rep->grad_rel);
  add_scalar(w, "prec/relu_flips", (double)rep->relu_flips);
  add_scalar(w, "prec/comparable", rep->comparable);
  /* The pure float64 gradient (no replayed decision). */
  double loss = assoc_gnn_loss_grad(m64, in, pb->noise, MU, DELTA, NULL, NULL, NULL);
  if (!isfinite(loss)) die("the float64 forward failed");
  add_scalar(w, "ref64/loss", loss);
  add_params(w, m64->params, "ref64/grad/");
  assoc_gnn_free(m64);
}

/* The reference results: loss and gradients at the initial weights, the
 * loss after one Adam step, and A~ of the eval forward on the inference
 * batch (at the initial weights, computed first). */
static void export_results(sg_npz_writer *w, const problem *pb) {
  sg_graph *g = sg_graph_new();
  int assoc[INFER_BATCH * 64];
  sg_tensor *assoc_eval = infer(g, pb, &pb->infer, assoc);
  add_tensor(w, "ref/assoc_eval", assoc_eval);
  sg_free(assoc_eval);
  bench_model bm = bench_model_of((problem *)pb);
  bench_export_step(w, g, &bm);
  sg_graph_free(g);
}

sg_npz_writer *export_open(const options *o) {
  if (!o->out) usage();
  sg_io_error err;
  sg_npz_writer *w = sg_npz_writer_open(o->out, false, &err);
  if (!w) die(err.msg);
  return w;
}

void export_close(sg_npz_writer *w) {
  sg_io_error err;
  if (sg_npz_writer_close(w, &err)) die(err.msg);
}

static int run_export(const options *o) {
  sg_npz_writer *w = export_open(o);
  problem pb = problem_new(o);
  export_inputs(w, &pb);
  assoc_precision_report rep;
  export_f64(w, &pb, &rep);
  export_results(w, &pb);
  export_close(w);
  bench_model bm = bench_model_of(&pb);
  bench_print_header(o, &bm);
  printf("\"f32_vs_f64\": {\"grad_rel\": %.4g, \"relu_decisions_replayed\": %lld, "
         "\"comparable\": %s}, ",
         rep.grad_rel, (long long)rep.relu_flips, rep.comparable ? "true" : "false");
  printf("\"out\": \"%s\"}\n", o->out);
  assoc_precision_report_free(&rep);
  problem_free(&pb);
  return 0;
}

static int run_timed(const options *o, bool train) {
  problem pb = problem_new(o);
  bench_model bm = bench_model_of(&pb);
  if (train)
    bench_train(o, &bm);
  else
    bench_infer(o, &bm);
  problem_free(&pb);
  return 0;
}

/* ---- the timings of any model ---------------------------------------------------------- */

double bench_train_step(sg_graph *g, const bench_model *m, sg_adam *adam) {
  sg_params_zero_grad(sg_params_tensors(m->params), sg_params_count(m->params));
  sg_tensor *loss = m->loss(g, m->ctx);
  if (!loss) die("the training forward failed");
  double v = sg_get(loss, 0);
  sg_backward(g, loss);
  sg_adam_step(adam);
  return v;
}

void bench_export_step(sg_npz_writer *w, sg_graph *g, const bench_model *m) {
  sg_params *ps = m->params;
  sg_adam *adam = sg_adam_new(sg_params_tensors(ps), sg_params_count(ps), LR);
  if (!adam) die("out of memory");
  add_scalar(w, "ref/loss", bench_train_step(g, m, adam)); /* grads are still this loss's */
  add_params(w, ps, "grad/");
  add_scalar(w, "ref/loss_after_step", sg_get(m->loss(g, m->ctx), 0));
  sg_adam_free(adam);
}

void bench_print_header(const options *o, const bench_model *m) {
  const assoc_gnn_config *c = m->trunk;
  printf("{\"side\": \"sinkgrad\", \"mode\": \"%s\", \"variant\": \"%s\", \"d\": %d, \"h\": %d, "
         "\"L\": %d, \"batch\": %lld, \"M\": %d, \"K\": %d, \"N\": %d, \"threads\": %d, "
         "\"blas\": \"%s\", \"params\": %lld, ",
         o->mode, m->name, c->d, c->h, c->L, (long long)o->batch, m->M, m->K, m->N,
         omp_get_max_threads(), sg_blas_name(), (long long)sg_params_numel(m->params));
}

int bench_train(const options *o, const bench_model *m) {
  sg_graph *g = sg_graph_new();
  sg_params *ps = m->params;
  sg_adam *adam = sg_adam_new(sg_params_tensors(ps), sg_params_count(ps), LR);
  double *ms = malloc((size_t)o->steps * sizeof *ms), first_loss = 0;
  if (!g || !adam || !ms) die("out of memory");
  long switches = 0;
  for (int i = 0; i < o->warmup + o->steps; i++) {
    if (i == o->warmup) switches = involuntary_switches();
    double t0 = omp_get_wtime(), loss = bench_train_step(g, m, adam);
    if (i == 0) first_loss = loss;
    if (!isfinite(loss)) die("non-finite loss");
    if (i >= o->warmup) ms[i - o->warmup] = 1e3 * (omp_get_wtime() - t0);
  }
  /* Where the arena's bytes go: the forward (values kept for the
   * backward) and the whole step. */
  sg_params_zero_grad(sg_params_tensors(ps), sg_params_count(ps));
  sg_tensor *loss = m->loss(g, m->ctx);
  double fwd_mib = (double)sg_graph_arena_used(g) / 1048576.0;
  sg_backward(g, loss);
  double step_mib = (double)sg_graph_arena_used(g) / 1048576.0;
  flop_count f = gemm_flops(m->trunk, (double)o->batch, m->M, m->K, m->head_out);
  bench_print_header(o, m);
  printf("\"first_loss\": %.9g, \"warmup\": %d, \"steps\": %d, ", first_loss, o->warmup, o->steps);
  printf("\"arena_forward_mib\": %.1f, \"arena_step_mib\": %.1f, ", fwd_mib, step_mib);
  print_ms_array("step_ms", ms, o->steps);
  double med = median(ms, o->steps);
  printf(", \"step_ms_median\": %.4f, \"gemm_gflop_per_step\": %.4f, \"arena_mib\": %.1f, "
         "\"peak_rss_mib\": %.1f, \"involuntary_switches\": %ld}\n",
         med, (f.fwd + f.bwd) / 1e9, (double)sg_graph_arena_bytes(g) / 1048576.0, peak_rss_mib(),
         involuntary_switches() - switches);
  free(ms);
  sg_adam_free(adam);
  sg_graph_free(g);
  return 0;
}

/* Latencies (ms, into ms[0..reps)) of eval forwards of one sample or the
 * batch, after warmup untimed ones. */
static void time_infer(sg_graph *g, const bench_model *m, bool batch, int reps, int warmup,
                       double *ms) {
  for (int i = 0; i < warmup + reps; i++) {
    double t0 = omp_get_wtime();
    m->infer(g, m->ctx, batch);
    if (i >= warmup) ms[i - warmup] = 1e3 * (omp_get_wtime() - t0);
  }
}

int bench_infer(const options *o, const bench_model *m) {
  sg_graph *g = sg_graph_new();
  sg_set_grad_enabled(g, false);
  int batch_reps = o->steps;
  double *single_ms = malloc((size_t)o->reps * sizeof(double));
  double *batch_ms = malloc((size_t)batch_reps * sizeof(double));
  if (!g || !single_ms || !batch_ms) die("out of memory");
  long switches = involuntary_switches();
  time_infer(g, m, false, o->reps, 10, single_ms);
  double rss_single = peak_rss_mib();
  time_infer(g, m, true, batch_reps, 2, batch_ms);
  switches = involuntary_switches() - switches;
  double single = median(single_ms, o->reps), batch = median(batch_ms, batch_reps);
  flop_count f1 = gemm_flops(m->trunk, 1, m->M, m->K, m->head_out),
             fb = gemm_flops(m->trunk, INFER_BATCH, m->M, m->K, m->head_out);
  bench_print_header(o, m);
  print_ms_array("single_ms", single_ms, o->reps);
  printf(", ");
  print_ms_array("batch_ms", batch_ms, batch_reps);
  printf(", \"single_reps\": %d, \"single_ms_median\": %.5f, \"infer_batch\": %d, "
         "\"batch_reps\": %d, \"batch_ms_median\": %.4f, \"batch_per_sample_ms\": %.5f, "
         "\"weight_bytes\": %lld, \"gemm_gflop_single\": %.6f, \"gemm_gflop_batch\": %.4f, "
         "\"peak_rss_mib_single\": %.1f, \"peak_rss_mib\": %.1f, \"involuntary_switches\": %ld}\n",
         o->reps, single, INFER_BATCH, batch_reps, batch, batch / INFER_BATCH,
         (long long)(sg_params_numel(m->params) * 4), f1.fwd / 1e9, fb.fwd / 1e9, rss_single,
         peak_rss_mib(), switches);
  free(single_ms), free(batch_ms);
  sg_graph_free(g);
  return 0;
}

int main(int argc, char **argv) {
  options o = parse_args(argc, argv);
  omp_set_num_threads(o.threads);
  if (!strcmp(o.mode, "wmmse")) return bench_wmmse_run(&o);
  if (o.bfgnn && strcmp(o.mode, "gemm")) return bench_bfgnn_run(&o);
  if (!strcmp(o.mode, "export")) return run_export(&o);
  if (!strcmp(o.mode, "train") || !strcmp(o.mode, "infer"))
    return run_timed(&o, !strcmp(o.mode, "train"));
  if (!strcmp(o.mode, "gemm")) return bench_gemm_run(o.threads);
  usage();
  return 2;
}
