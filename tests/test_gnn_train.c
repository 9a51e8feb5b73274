/* Training steps of the association GNNs (models/gnn/assoc_gnn.h): no allocation per step, exact
 * memory reuse, the loss goes down, prediction in chunks. */
#include <complex.h>
#include <stdlib.h>
#include <string.h>

#include "assoc_gnn.h"
#include "assoc_wireless.h"
#include "gnn_helpers.h"
#include "sg_test.h"

typedef struct train_batch {
  gnn_inputs in;
  double *H_re, *H_im;
  int64_t B;
  int M, K, N;
} train_batch;

/* A batch of random Rayleigh-like channels; H features are the SNR-scaled
 * channel entries (c/sigma scale), real parts then imaginary parts. */
static train_batch make_batch(sg_rng *r, sg_dtype dt, int64_t B, int M, int K, int N) {
  train_batch tb = {.B = B, .M = M, .K = K, .N = N};
  int64_t n = B * M * K * N;
  tb.H_re = malloc((size_t)n * sizeof(double));
  tb.H_im = malloc((size_t)n * sizeof(double));
  for (int64_t i = 0; i < n; i++) tb.H_re[i] = sg_rng_normal(r), tb.H_im[i] = sg_rng_normal(r);
  tb.in = make_inputs(r, dt, B, M, K, 2 * N);
  for (int64_t i = 0; i < B * M * K; i++)
    for (int j = 0; j < N; j++) {
      sg_set(tb.in.H, i * 2 * N + j, tb.H_re[i * N + j]);
      sg_set(tb.in.H, i * 2 * N + N + j, tb.H_im[i * N + j]);
    }
  return tb;
}

static void free_batch(train_batch *tb) {
  free(tb->H_re);
  free(tb->H_im);
  free_inputs(&tb->in);
}

/* One training step: forward with drawn noise, rate, loss, backward, Adam. */
static double train_step(sg_graph *g, const assoc_gnn *m, sg_adam *opt, const train_batch *tb,
                         sg_rng *rng, const double *mu) {
  sg_graph_reset(g);
  sg_params_zero_grad(sg_params_tensors(m->params), sg_params_count(m->params));
  assoc_gnn_output o =
      assoc_gnn_forward(g, m, tb->in.p, tb->in.q, tb->in.H, ASSOC_GNN_TRAIN, rng, NULL);
  sg_tensor *c_re, *c_im;
  assoc_mrt_couplings(g, tb->H_re, tb->H_im, tb->B, tb->M, tb->K, tb->N, 10.0, 1.0, m->cfg.dtype,
                      &c_re, &c_im);
  sg_tensor *rate = assoc_sum_rate(g, o.assoc, c_re, c_im, 1.0);
  sg_tensor *loss = assoc_loss(g, rate, o.assoc, mu, m->cfg.capacity, 0.5, NULL);
  double value = sg_get(loss, 0);
  sg_backward(g, loss);
  sg_adam_step(opt);
  return value;
}

/* After warm-up, a float32 training step allocates nothing outside the
 * graph arena's retained memory. */
START_TEST(gnn_train_step_no_allocation) {
  assoc_gnn_config cfg = tiny_config(ASSOC_GNN_ATTSKGS);
  cfg.dtype = SG_F32, cfg.d = 16, cfg.h = 32;
  assoc_gnn *m = assoc_gnn_new(&cfg, 80);
  sg_rng r;
  sg_rng_seed(&r, 81);
  train_batch tb = make_batch(&r, SG_F32, 8, 2, 4, 2);
  sg_adam *opt = sg_adam_new(sg_params_tensors(m->params), sg_params_count(m->params), 1e-3);
  sg_graph *g = sg_graph_new();
  const double mu[2] = {0.1, 0.2};
  for (int i = 0; i < 3; i++) train_step(g, m, opt, &tb, &r, mu);
  sg_test_count_allocations();
  for (int i = 0; i < 3; i++) train_step(g, m, opt, &tb, &r, mu);
  sg_set_allocator(NULL);
  ck_assert_int_eq(sg_test_allocations, 0);
  sg_graph_free(g);
  sg_adam_free(opt);
  free_batch(&tb);
  assoc_gnn_free(m);
}
END_TEST

/* Memory planning (released data and used gradients reused within a step)
 * changes where tensors live, never what is computed: two training steps
 * and an eval forward of every variant, at sizes where blocks are reused,
 * give the same losses, weights and outputs bit for bit as with reuse off,
 * and reuse does shrink the arena. */
START_TEST(gnn_memory_reuse_is_exact) {
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) {
    assoc_gnn_config cfg = tiny_config(v);
    cfg.dtype = SG_F32, cfg.d = 16, cfg.h = 32;
    assoc_gnn *m[2] = {assoc_gnn_new(&cfg, 60), assoc_gnn_new(&cfg, 60)};
    sg_rng r;
    sg_rng_seed(&r, 61);
    train_batch tb = make_batch(&r, SG_F32, 256, 2, 4, 2); /* 2048 edges: 256 KiB per h-wide */
    const double mu[2] = {0.1, 0.2};
    double loss[2][2];
    size_t used[2];
    sg_tensor *eval[2];
    sg_graph *g[2];
    for (int reuse = 0; reuse < 2; reuse++) {
      sg_adam *opt =
          sg_adam_new(sg_params_tensors(m[reuse]->params), sg_params_count(m[reuse]->params), 1e-2);
      g[reuse] = sg_graph_new();
      sg_set_memory_reuse(g[reuse], reuse);
      sg_rng noise;
      sg_rng_seed(&noise, 62);
      for (int step = 0; step < 2; step++)
        loss[reuse][step] = train_step(g[reuse], m[reuse], opt, &tb, &noise, mu);
      used[reuse] = sg_graph_arena_used(g[reuse]);
      sg_graph_reset(g[reuse]);
      sg_set_grad_enabled(g[reuse], false);
      eval[reuse] = assoc_gnn_forward(g[reuse], m[reuse], tb.in.p, tb.in.q, tb.in.H, ASSOC_GNN_EVAL,
                                      NULL, NULL)
                        .assoc;
      sg_adam_free(opt);
    }
    const char *name = assoc_gnn_variant_name((assoc_gnn_variant)v);
    ck_assert_msg(used[1] < used[0], "%s: reuse did not shrink the arena (%zu vs %zu)", name,
                  used[1], used[0]);
    for (int step = 0; step < 2; step++)
      ck_assert_msg(loss[0][step] == loss[1][step], "%s step %d: loss %.9g vs %.9g", name, step,
                    loss[0][step], loss[1][step]);
    for (int i = 0; i < sg_params_count(m[0]->params); i++) {
      const sg_tensor *a = sg_params_at(m[0]->params, i), *b = sg_params_at(m[1]->params, i);
      ck_assert_msg(memcmp(a->data, b->data, (size_t)a->numel * sizeof(float)) == 0,
                    "%s: %s differs after two steps", name, sg_params_name(m[0]->params, i));
    }
    ck_assert(memcmp(eval[0]->data, eval[1]->data, (size_t)eval[0]->numel * sizeof(float)) == 0);
    for (int reuse = 0; reuse < 2; reuse++) {
      sg_graph_free(g[reuse]);
      assoc_gnn_free(m[reuse]);
    }
    free_batch(&tb);
  }
}
END_TEST

/* Every variant learns on a fixed batch: the loss after 150 Adam steps is
 * clearly below the first. */
START_TEST(gnn_training_reduces_loss) {
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) {
    assoc_gnn_config cfg = tiny_config(v);
    cfg.dtype = SG_F32, cfg.d = 16, cfg.h = 32;
    assoc_gnn *m = assoc_gnn_new(&cfg, 90);
    sg_rng r;
    sg_rng_seed(&r, 91);
    train_batch tb = make_batch(&r, SG_F32, 16, 2, 4, 2);
    sg_adam *opt = sg_adam_new(sg_params_tensors(m->params), sg_params_count(m->params), 3e-3);
    sg_graph *g = sg_graph_new();
    double first = 0, last = 0;
    for (int i = 0; i < 150; i++) {
      double l = train_step(g, m, opt, &tb, &r, NULL);
      if (i < 10) first += l / 10;
      if (i >= 140) last += l / 10;
    }
    ck_assert_msg(last < first - 0.1, "%s: loss %g -> %g", assoc_gnn_variant_name(v), first, last);
    sg_graph_free(g);
    sg_adam_free(opt);
    free_batch(&tb);
    assoc_gnn_free(m);
  }
}
END_TEST

/* assoc_gnn_predict: chunks of any size give the whole-batch eval forward,
 * the working memory follows the chunk, misuse is reported. */
START_TEST(gnn_predict_in_chunks) {
  sg_rng r;
  sg_rng_seed(&r, 61);
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) {
    assoc_gnn_config cfg = tiny_config(v);
    assoc_gnn *m = assoc_gnn_new(&cfg, 60 + v);
    gnn_inputs in = make_inputs(&r, SG_F64, 7, 2, 5, cfg.fe);
    sg_graph *g = sg_graph_new(), *scratch = sg_graph_new();
    sg_set_grad_enabled(g, false);
    sg_tensor *ref = assoc_gnn_forward(g, m, in.p, in.q, in.H, ASSOC_GNN_EVAL, NULL, NULL).assoc;
    const int64_t chunks[] = {1, 3, 7, 100, 0};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
      sg_tensor *A = assoc_gnn_predict(scratch, m, in.p, in.q, in.H, chunks[c]);
      ck_assert_ptr_nonnull(A);
      ck_assert_int_eq(A->ndim, 3);
      ck_assert_int_eq(A->numel, ref->numel);
      for (int64_t i = 0; i < A->numel; i++)
        ck_assert_double_eq_tol(sg_get(A, i), sg_get(ref, i), 1e-13);
      sg_free(A);
    }
    ck_assert(sg_grad_enabled(scratch)); /* restored */
    sg_graph_free(g);
    sg_graph_free(scratch);
    free_inputs(&in);
    assoc_gnn_free(m);
  }
  /* Working memory: a float32 model whose hidden activations take 16 KiB
   * per sample; 8-sample chunks need far less arena than 64. */
  assoc_gnn_config cfg = assoc_gnn_config_paper(ASSOC_GNN_ATTSKGS);
  cfg.d = 64, cfg.h = 256;
  assoc_gnn *m = assoc_gnn_new(&cfg, 62);
  gnn_inputs in = make_inputs(&r, SG_F32, 64, 2, 8, cfg.fe);
  sg_graph *scratch = sg_graph_new();
  size_t used[2];
  const int64_t sizes[2] = {8, 64};
  for (int i = 0; i < 2; i++) {
    sg_free(assoc_gnn_predict(scratch, m, in.p, in.q, in.H, sizes[i]));
    used[i] = sg_graph_arena_used(scratch);
  }
  ck_assert_uint_lt(4 * used[0], used[1]);
  ck_assert_int_eq(assoc_gnn_predict_chunk(m, 8, 2), (2 << 20) / (8 * 2 * 256 * 4));
  /* Misuse: inputs in the scratch graph (it is reset), a wrong shape. */
  sg_test_capture_errors();
  sg_tensor *p_in_scratch = sg_clone(scratch, in.p);
  SG_EXPECT_MISUSE(assoc_gnn_predict(scratch, m, p_in_scratch, in.q, in.H, 0), "assoc_gnn_predict",
                   "scratch graph");
  SG_EXPECT_MISUSE(assoc_gnn_predict(scratch, m, in.q, in.p, in.H, 0), "assoc_gnn_predict", "H is",
                   "[64, 2, 8, 8]");
  sg_set_error_handler(NULL, NULL);
  sg_graph_free(scratch);
  free_inputs(&in);
  assoc_gnn_free(m);
}
Suite *suite_gnn_train(void) {
  const sg_test_case cases[] = {
      {"gnn_predict_in_chunks", gnn_predict_in_chunks},
      {"gnn_train_step_no_allocation", gnn_train_step_no_allocation},
      {"gnn_memory_reuse_is_exact", gnn_memory_reuse_is_exact},
      {"gnn_training_reduces_loss", gnn_training_reduces_loss},
  };
  return sg_test_suite("gnn_train", cases, sizeof cases / sizeof cases[0], 60);
}
