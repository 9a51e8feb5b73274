/* BFGNN's side of the PyTorch comparison (bench/run, bench/torch_gnn.py),
 * and its classical reference, WMMSE (models/beam):
 *   bench_gnn export --variant bfgnn --out F.npz [config]  weights, inputs
 *       (p, q, X, the association A, the rate channels G) and the reference
 *       results (loss, gradients and the float64 ones, loss after one Adam
 *       step, eval-mode beams) for the torch side to check against
 *   bench_gnn train --variant bfgnn [config]  a training step: forward
 *       (projection normalisation), assoc_bfgnn_rate, -mean, backward, Adam
 *   bench_gnn infer --variant bfgnn [config]  the beams of one sample and of
 *       a batch of 256, without gradients
 *   bench_gnn fused --variant bfgnn [config]  the same two timings through the
 *       fused float32 inference (assoc_bfgnn_fused_beams): one sample on one
 *       thread (each timing the mean of FUSED_CALLS calls), and the batch of
 *       256 over the threads; the CPU time per sample of the one-sample
 *       calls and of the batch on one thread; and the largest difference of
 *       the batch's beams from the op-by-op forward's
 *   bench_gnn wmmse [--threads T] [--steps N]  WMMSE beams of the same 256
 *       samples and association: one sample at a time on one thread (also
 *       by CPU time), and the batch over T threads (assoc_beams_run)
 * [config] includes --head direct|duality, BFGNN's beam head (assoc_bfgnn_head).
 * The samples are the paper scenario (assoc_generate, M = 2, N = 4, K = 8),
 * the association ES (each sample's exhaustive-search optimum, as the
 * measurements of docs/models.md). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assoc_beam.h"
#include "bench_gnn.h"

enum { WMMSE_PASSES = 3, FUSED_CALLS = 100 };

/* ---- the samples ---------------------------------------------------------------- */

/* The data set of s samples and its ES association (s x K, caller-owned). */
static int *samples_with_es(int64_t s, assoc_dataset *ds) {
  assoc_scenario sc = assoc_scenario_default();
  sg_io_error err;
  if (assoc_generate(&sc, s, ds, &err)) die(err.msg);
  int *assoc = malloc((size_t)(s * ds->K) * sizeof *assoc);
  double *rate = malloc((size_t)s * sizeof *rate), ms;
  if (!assoc || !rate) die("out of memory");
  assoc_baseline_opts bo = assoc_baseline_defaults();
  if (assoc_run_method(ds, ASSOC_ES, &bo, assoc, rate, &ms, NULL, NULL, &err)) die(err.msg);
  free(rate);
  return assoc;
}

/* ---- BFGNN ---------------------------------------------------------------------- */

typedef struct bf_problem {
  assoc_bfgnn *model;
  assoc_dataset ds;
  int *assoc;                          /* ES, S x K */
  assoc_bfgnn_batch train, infer, one; /* owned tensors */
} bf_problem;

static assoc_bfgnn_batch own(const assoc_bfgnn_batch *b) {
  return (assoc_bfgnn_batch){.B = b->B,
                             .p = sg_clone(NULL, b->p),
                             .q = sg_clone(NULL, b->q),
                             .X = sg_clone(NULL, b->X),
                             .A = sg_clone(NULL, b->A),
                             .G_re = sg_clone(NULL, b->G_re),
                             .G_im = sg_clone(NULL, b->G_im)};
}

static void bf_batch_free(assoc_bfgnn_batch *b) {
  sg_free(b->p), sg_free(b->q), sg_free(b->X), sg_free(b->A), sg_free(b->G_re);
  sg_free(b->G_im);
}

/* The first B samples as the trainer prepares them (assoc_bfgnn_batch_make). */
static assoc_bfgnn_batch bf_batch(const bf_problem *pb, int64_t B) {
  sg_graph *g = sg_graph_new();
  assoc_bfgnn_batch in;
  if (!g || assoc_bfgnn_batch_make(g, &pb->ds, pb->assoc, NULL, 0, B, assoc_feature_scale(&pb->ds),
                                   SG_F32, &in))
    die("could not build the BFGNN batch inputs");
  assoc_bfgnn_batch out = own(&in);
  sg_graph_free(g);
  return out;
}

static bf_problem bf_problem_new(const options *o) {
  bf_problem pb = {0};
  assoc_bfgnn_config c = assoc_bfgnn_config_paper(); /* projection, power 1, float32 */
  c.d = o->d, c.h = o->h, c.L = o->L, c.head = o->head;
  pb.model = assoc_bfgnn_new(&c, o->seed);
  if (!pb.model) die("could not build BFGNN");
  pb.assoc = samples_with_es(o->batch > INFER_BATCH ? o->batch : INFER_BATCH, &pb.ds);
  if (pb.ds.M != M_BS || pb.ds.N != c.n_antennas) die("unexpected scenario sizes");
  pb.train = bf_batch(&pb, o->batch);
  pb.infer = bf_batch(&pb, INFER_BATCH);
  pb.one = bf_batch(&pb, 1);
  return pb;
}

static void bf_problem_free(bf_problem *pb) {
  bf_batch_free(&pb->train), bf_batch_free(&pb->infer), bf_batch_free(&pb->one);
  free(pb->assoc);
  assoc_dataset_free(&pb->ds);
  assoc_bfgnn_free(pb->model);
}

/* -mean_b R_b of model m on batch b (its dtype), recorded on g. */
static sg_tensor *bf_loss(sg_graph *g, const assoc_bfgnn *m, const assoc_bfgnn_batch *b) {
  assoc_complex V = assoc_bfgnn_forward(g, m, b->p, b->q, b->X, b->A);
  sg_tensor *R = assoc_bfgnn_rate(g, b->A, b->G_re, b->G_im, V);
  return R ? sg_neg(g, sg_mean_all(g, R)) : NULL;
}

static sg_tensor *loss_of(sg_graph *g, void *ctx) {
  const bf_problem *pb = ctx;
  sg_graph_reset(g);
  return bf_loss(g, pb->model, &pb->train);
}

/* The beams of a batch, on g (reset first). */
static assoc_complex beams(sg_graph *g, const bf_problem *pb, const assoc_bfgnn_batch *in) {
  sg_graph_reset(g);
  assoc_complex V = assoc_bfgnn_forward(g, pb->model, in->p, in->q, in->X, in->A);
  if (!V.re || !V.im) die("the BFGNN eval forward failed");
  return V;
}

static void infer_of(sg_graph *g, void *ctx, bool batch) {
  const bf_problem *pb = ctx;
  beams(g, pb, batch ? &pb->infer : &pb->one);
}

static bench_model bf_bench_model(bf_problem *pb) {
  bool duality = pb->model->cfg.head == ASSOC_BFGNN_HEAD_DUALITY;
  return (bench_model){.name = duality ? "BFGNN duality" : "BFGNN",
                       .trunk = &pb->model->trunk.cfg,
                       /* the duality head's lambda and w per edge; its solves are not GEMMs */
                       .head_out = duality ? 2.0 : 2.0 * pb->model->cfg.n_antennas,
                       .M = pb->ds.M,
                       .K = pb->ds.K,
                       .N = pb->ds.N,
                       .params = pb->model->trunk.params,
                       .ctx = pb,
                       .loss = loss_of,
                       .infer = infer_of};
}

/* ---- export ------------------------------------------------------------------------ */

static void add_batch(sg_npz_writer *w, const char *prefix, const assoc_bfgnn_batch *b) {
  const char *names[] = {"p", "q", "X", "A", "G_re", "G_im"};
  const sg_tensor *t[] = {b->p, b->q, b->X, b->A, b->G_re, b->G_im};
  for (int i = 0; i < 6; i++) {
    char name[64];
    snprintf(name, sizeof name, "%s/%s", prefix, names[i]);
    add_tensor(w, name, t[i]);
  }
}

/* The float64 loss and gradients of the same weights on the same inputs
 * (the float32 ones, widened): "ref64/...". */
static void export_f64(sg_npz_writer *w, const bf_problem *pb) {
  assoc_bfgnn_config c = pb->model->cfg;
  c.dtype = SG_F64;
  assoc_bfgnn *m = assoc_bfgnn_new(&c, 0);
  if (!m || sg_params_copy(m->trunk.params, pb->model->trunk.params))
    die("could not build the float64 BFGNN");
  sg_graph *g = sg_graph_new();
  const assoc_bfgnn_batch *b = &pb->train;
  assoc_bfgnn_batch b64 = {.B = b->B,
                           .p = sg_to_dtype(g, b->p, SG_F64),
                           .q = sg_to_dtype(g, b->q, SG_F64),
                           .X = sg_to_dtype(g, b->X, SG_F64),
                           .A = sg_to_dtype(g, b->A, SG_F64),
                           .G_re = sg_to_dtype(g, b->G_re, SG_F64),
                           .G_im = sg_to_dtype(g, b->G_im, SG_F64)};
  sg_tensor *loss = bf_loss(g, m, &b64);
  if (!loss) die("the float64 BFGNN forward failed");
  add_scalar(w, "ref64/loss", sg_get(loss, 0));
  sg_backward(g, loss);
  add_params(w, m->trunk.params, "ref64/grad/");
  sg_graph_free(g);
  assoc_bfgnn_free(m);
}

/* The eval beams of the inference batch at the initial weights, then the
 * loss and gradients, and the loss after one Adam step. */
static void export_results(sg_npz_writer *w, bf_problem *pb) {
  sg_graph *g = sg_graph_new();
  sg_set_grad_enabled(g, false);
  assoc_complex V = beams(g, pb, &pb->infer);
  add_tensor(w, "ref/V_re", V.re), add_tensor(w, "ref/V_im", V.im);
  sg_set_grad_enabled(g, true);
  bench_model bm = bf_bench_model(pb);
  bench_export_step(w, g, &bm);
  sg_graph_free(g);
}

static int bf_export(const options *o) {
  sg_npz_writer *w = export_open(o);
  bf_problem pb = bf_problem_new(o);
  const assoc_bfgnn_config *c = &pb.model->cfg;
  add_params(w, pb.model->trunk.params, NULL);
  add_batch(w, "train", &pb.train);
  add_batch(w, "infer", &pb.infer);
  add_scalar(w, "cfg/bfgnn", 1);
  add_scalar(w, "cfg/d", c->d), add_scalar(w, "cfg/h", c->h), add_scalar(w, "cfg/L", c->L);
  add_scalar(w, "cfg/N", c->n_antennas), add_scalar(w, "cfg/power", c->power);
  add_scalar(w, "cfg/norm_full_power", c->norm == ASSOC_BEAM_FULL_POWER);
  add_scalar(w, "cfg/head_duality", c->head == ASSOC_BFGNN_HEAD_DUALITY);
  add_scalar(w, "cfg/norm_eps", ASSOC_BEAM_NORM_EPS), add_scalar(w, "cfg/lr", LR);
  export_f64(w, &pb);
  export_results(w, &pb);
  export_close(w);
  bench_model bm = bf_bench_model(&pb);
  bench_print_header(o, &bm);
  printf("\"association\": \"ES\", \"out\": \"%s\"}\n", o->out);
  bf_problem_free(&pb);
  return 0;
}

/* ---- fused inference ---------------------------------------------------------------- */

/* float32 copies of a batch's inputs, in the layouts of assoc_bfgnn_fused_inputs. */
typedef struct fused_arrays {
  float *p, *q, *X, *A, *V_re, *V_im;
  assoc_bfgnn_fused_inputs in;
} fused_arrays;

static float *floats(const sg_tensor *t) {
  float *f = malloc((size_t)t->numel * sizeof *f);
  if (!f) die("out of memory");
  for (int64_t i = 0; i < t->numel; i++) f[i] = (float)sg_get(t, i);
  return f;
}

static fused_arrays fused_arrays_of(const bf_problem *pb, const assoc_bfgnn_batch *b) {
  fused_arrays a = {.p = floats(b->p), .q = floats(b->q), .X = floats(b->X), .A = floats(b->A)};
  size_t n = (size_t)(b->B * pb->ds.M * pb->ds.K * pb->ds.N);
  a.V_re = malloc(n * sizeof(float)), a.V_im = malloc(n * sizeof(float));
  if (!a.V_re || !a.V_im) die("out of memory");
  a.in = (assoc_bfgnn_fused_inputs){
      .B = b->B, .M = pb->ds.M, .K = pb->ds.K, .p = a.p, .q = a.q, .X = a.X, .A = a.A};
  return a;
}

static void fused_arrays_free(fused_arrays *a) {
  free(a->p), free(a->q), free(a->X), free(a->A), free(a->V_re), free(a->V_im);
}

/* ms of reps timings (after warmup untimed ones) of `calls` calls each, per call. */
static void time_fused(assoc_bfgnn_fused *f, fused_arrays *a, int reps, int warmup, int calls,
                       double *ms) {
  for (int i = 0; i < warmup + reps; i++) {
    double t0 = omp_get_wtime();
    for (int c = 0; c < calls; c++)
      if (assoc_bfgnn_fused_beams(f, &a->in, a->V_re, a->V_im)) die("the fused inference failed");
    if (i >= warmup) ms[i - warmup] = 1e3 * (omp_get_wtime() - t0) / calls;
  }
}

/* The largest |fused - op-by-op| over the batch's beams (both float32). */
static double fused_vs_ops(const bf_problem *pb, const fused_arrays *a) {
  sg_graph *g = sg_graph_new();
  sg_set_grad_enabled(g, false);
  assoc_complex V = beams(g, pb, &pb->infer);
  double worst = 0;
  for (int64_t i = 0; i < V.re->numel; i++) {
    worst = fmax(worst, fabs(sg_get(V.re, i) - a->V_re[i]));
    worst = fmax(worst, fabs(sg_get(V.im, i) - a->V_im[i]));
  }
  sg_graph_free(g);
  return worst;
}

static int bf_fused(const options *o, bf_problem *pb) {
  assoc_bfgnn_fused *f = assoc_bfgnn_fused_new(pb->model);
  fused_arrays one = fused_arrays_of(pb, &pb->one), batch = fused_arrays_of(pb, &pb->infer);
  double *single_ms = malloc((size_t)o->reps * sizeof(double));
  double *batch_ms = malloc((size_t)o->steps * sizeof(double));
  double *batch1_all = malloc((size_t)o->steps * sizeof(double));
  if (!f || !single_ms || !batch_ms || !batch1_all) die("out of memory");
  long switches = involuntary_switches();
  omp_set_num_threads(1);
  double c0 = thread_cpu_seconds();
  time_fused(f, &one, o->reps, 10, FUSED_CALLS, single_ms);
  double single_cpu = (thread_cpu_seconds() - c0) / ((o->reps + 10) * FUSED_CALLS);
  double c1 = thread_cpu_seconds(); /* the batch on this one thread too, by CPU time */
  time_fused(f, &batch, o->steps, 2, 1, batch1_all);
  double batch1_cpu = (thread_cpu_seconds() - c1) / ((o->steps + 2) * INFER_BATCH);
  omp_set_num_threads(o->threads);
  time_fused(f, &batch, o->steps, 2, 1, batch_ms);
  switches = involuntary_switches() - switches;
  double diff = fused_vs_ops(pb, &batch);
  bench_model bm = bf_bench_model(pb);
  bm.name = "BFGNN duality fused";
  if (pb->model->cfg.head != ASSOC_BFGNN_HEAD_DUALITY) bm.name = "BFGNN fused";
  bench_print_header(o, &bm);
  print_ms_array("single_ms", single_ms, o->reps);
  printf(", ");
  print_ms_array("batch_ms", batch_ms, o->steps);
  printf(", \"single_threads\": 1, \"single_calls_per_timing\": %d, \"single_ms_median\": %.6f, "
         "\"infer_batch\": %d, \"batch_ms_median\": %.5f, \"batch_per_sample_ms\": %.6f, "
         "\"single_cpu_ms\": %.6f, \"batch_1thread_cpu_per_sample_ms\": %.6f, "
         "\"max_abs_vs_ops\": %.3g, \"peak_rss_mib\": %.1f, \"involuntary_switches\": %ld}\n",
         FUSED_CALLS, median(single_ms, o->reps), INFER_BATCH, median(batch_ms, o->steps),
         median(batch_ms, o->steps) / INFER_BATCH, 1e3 * single_cpu, 1e3 * batch1_cpu, diff,
         peak_rss_mib(), switches);
  free(single_ms), free(batch_ms), free(batch1_all);
  fused_arrays_free(&one), fused_arrays_free(&batch);
  assoc_bfgnn_fused_free(f);
  return 0;
}

int bench_bfgnn_run(const options *o) {
  if (!strcmp(o->mode, "export")) return bf_export(o);
  if (!strcmp(o->mode, "fused")) {
    bf_problem pb = bf_problem_new(o);
    bf_fused(o, &pb);
    bf_problem_free(&pb);
    return 0;
  }
  bool train = !strcmp(o->mode, "train");
  if (!train && strcmp(o->mode, "infer")) usage();
  bf_problem pb = bf_problem_new(o);
  bench_model bm = bf_bench_model(&pb);
  if (train)
    bench_train(o, &bm);
  else
    bench_infer(o, &bm);
  bf_problem_free(&pb);
  return 0;
}

/* ---- WMMSE ------------------------------------------------------------------------- */

/* ms per sample of WMMSE_PASSES passes over the samples one at a time on
 * this thread (pass_ms: the mean of each pass), and the updates and rate
 * of the samples. */
static void wmmse_single(const assoc_dataset *ds, const int *assoc, double *pass_ms,
                         double *sample_ms, double *iters, double *rate) {
  int64_t per = (int64_t)ds->M * ds->K * ds->N;
  double *V_re = malloc((size_t)per * sizeof(double)), *V_im = malloc((size_t)per * sizeof(double));
  assoc_beam_work *work = assoc_beam_work_new(ds->M, ds->N, ds->K);
  if (!V_re || !V_im || !work) die("out of memory");
  *iters = *rate = 0;
  for (int pass = 0; pass < WMMSE_PASSES; pass++) {
    double sum = 0;
    for (int64_t s = 0; s < ds->S; s++) {
      assoc_beam_problem p = assoc_beam_problem_at(ds, s, assoc + s * ds->K);
      sg_io_error err;
      double r, t0 = omp_get_wtime();
      int it;
      if (assoc_beam_solve(ASSOC_BEAM_WMMSE, &p, work, V_re, V_im, &r, &it, &err)) die(err.msg);
      double ms = 1e3 * (omp_get_wtime() - t0);
      sum += ms;
      sample_ms[pass * ds->S + s] = ms;
      if (pass == 0) *iters += it, *rate += r;
    }
    pass_ms[pass] = sum / (double)ds->S;
  }
  *iters /= (double)ds->S, *rate /= (double)ds->S;
  assoc_beam_work_free(work);
  free(V_re), free(V_im);
}

int bench_wmmse_run(const options *o) {
  assoc_dataset ds;
  int *assoc = samples_with_es(INFER_BATCH, &ds);
  int64_t S = ds.S, per = (int64_t)ds.M * ds.K * ds.N;
  double pass_ms[WMMSE_PASSES], iters, rate;
  double *sample_ms = malloc((size_t)(WMMSE_PASSES * S) * sizeof(double));
  double *batch_ms = malloc((size_t)o->steps * sizeof(double));
  double *V_re = malloc((size_t)(S * per) * sizeof(double));
  double *V_im = malloc((size_t)(S * per) * sizeof(double)), *rates = malloc((size_t)S * 8);
  if (!sample_ms || !batch_ms || !V_re || !V_im || !rates) die("out of memory");
  long switches = involuntary_switches();
  int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  double c0 = thread_cpu_seconds();
  wmmse_single(&ds, assoc, pass_ms, sample_ms, &iters, &rate);
  double single_cpu = (thread_cpu_seconds() - c0) / (double)(WMMSE_PASSES * S);
  omp_set_num_threads(threads);
  sg_io_error err;
  for (int i = 0; i < o->steps + 1; i++) { /* the first one untimed */
    double t0 = omp_get_wtime();
    if (assoc_beams_run(&ds, assoc, ASSOC_BEAM_WMMSE, V_re, V_im, rates, NULL, NULL, &err))
      die(err.msg);
    if (i > 0) batch_ms[i - 1] = 1e3 * (omp_get_wtime() - t0);
  }
  switches = involuntary_switches() - switches;
  double batch = median(batch_ms, o->steps);
  printf("{\"side\": \"sinkgrad\", \"mode\": \"wmmse\", \"samples\": %lld, \"M\": %d, \"K\": %d, "
         "\"N\": %d, \"association\": \"ES\", \"threads\": %d, \"single_threads\": 1, ",
         (long long)S, ds.M, ds.K, ds.N, omp_get_max_threads());
  print_ms_array("single_pass_mean_ms", pass_ms, WMMSE_PASSES);
  printf(", \"single_ms_mean\": %.5f, \"single_ms_median\": %.5f, ", median(pass_ms, WMMSE_PASSES),
         median(sample_ms, (int)(WMMSE_PASSES * S)));
  print_ms_array("batch_ms", batch_ms, o->steps);
  printf(", \"batch_ms_median\": %.4f, \"batch_per_sample_ms\": %.5f, \"iters_mean\": %.2f, "
         "\"rate_mean\": %.4f, \"single_cpu_ms\": %.5f, \"peak_rss_mib\": %.1f, "
         "\"involuntary_switches\": %ld}\n",
         batch, batch / (double)S, iters, rate, 1e3 * single_cpu, peak_rss_mib(), switches);
  free(sample_ms), free(batch_ms), free(V_re), free(V_im), free(rates), free(assoc);
  assoc_dataset_free(&ds);
  return 0;
}
