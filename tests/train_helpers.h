/* Helpers shared by the trainer test files (test_train*.c): tiny data
 * sets and configurations, scratch paths, running epochs, and a model of
 * the tests' own for the training hook. */
#ifndef TRAIN_HELPERS_H
#define TRAIN_HELPERS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assoc_train.h"
#include "sg_test.h"

static inline assoc_dataset make_data(int64_t S, uint64_t seed) {
  assoc_scenario sc = assoc_scenario_default();
  sc.M = 2, sc.N = 2, sc.K = 4, sc.seed = seed;
  assoc_dataset ds;
  sg_io_error err;
  ck_assert_msg(assoc_generate(&sc, S, &ds, &err) == 0, "%s", err.msg);
  return ds;
}

/* A small, fast configuration. */
static inline assoc_train_config tiny_train_config(assoc_gnn_variant v) {
  assoc_train_config c = assoc_train_config_default(v);
  c.d = 16, c.h = 32, c.L = 2;
  c.batch = 32, c.batches_per_epoch = 0;
  c.lr_max = 3e-3, c.lr_min = 1e-5, c.t0 = 4, c.t_mult = 2;
  c.t_mu = 1, c.delta = 0.0;
  c.seed = 7, c.threads = 1, c.eval_batch = 128;
  return c;
}

/* A fresh path in the working directory (removed first). */
static inline const char *tmp_path(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "test_train_%ld_%s", (long)getpid(), name);
  remove(buf);
  return buf;
}

/* Every parameter of a and b, bit for bit. */
static inline void assert_params_bitwise(const sg_params *a, const sg_params *b) {
  ck_assert_int_eq(sg_params_count(a), sg_params_count(b));
  for (int i = 0; i < sg_params_count(a); i++) {
    const sg_tensor *x = sg_params_at(a, i), *y = sg_params_at(b, i);
    ck_assert_msg(memcmp(x->data, y->data, (size_t)x->numel * sg_dtype_size(x->dtype)) == 0,
                  "parameter %s differs", sg_params_name(a, i));
  }
}

static inline void run_epochs(assoc_trainer *t, int epochs, assoc_epoch_stats *last) {
  sg_io_error err = {{0}};
  for (int e = 0; e < epochs; e++)
    ck_assert_msg(assoc_trainer_run_epoch(t, last, NULL, NULL, NULL, &err) == 0, "%s", err.msg);
}

/* ---- a model of the tests' own: an MLP on each link's features, softmax ---- */

typedef struct edge_mlp {
  sg_params *params;
  sg_mlp mlp;
  bool wrong_shape; /* return [B, M, K] instead of [B, K, M] (misuse) */
  /* optional: called with the batch's features at every training forward */
  void (*record)(void *rec, const sg_tensor *H);
  void *rec;
} edge_mlp;

static inline sg_tensor *edge_mlp_forward(void *ctx, sg_graph *g, const assoc_gnn_batch *in,
                                          const assoc_model_call *call) {
  const edge_mlp *e = ctx;
  if (e->record && call->mode == ASSOC_GNN_TRAIN) e->record(e->rec, in->H);
  int64_t B = in->H->shape[0], M = in->H->shape[1], K = in->H->shape[2];
  sg_tensor *H = e->wrong_shape ? in->H : sg_permute(g, in->H, (const int[]){0, 2, 1, 3});
  sg_tensor *s = sg_mlp_forward(g, &e->mlp, H); /* [B, K, M, 1] */
  int64_t shape[3] = {B, K, M};
  if (e->wrong_shape) shape[1] = M, shape[2] = K;
  return sg_softmax(g, sg_reshape(g, s, 3, shape), -1);
}

static inline assoc_model edge_mlp_new(edge_mlp *e, int N, uint64_t seed) {
  sg_rng r;
  sg_rng_seed(&r, seed);
  *e = (edge_mlp){.params = sg_params_new(SG_F32)};
  ck_assert_int_eq(sg_mlp_init(&e->mlp, e->params, "edge", 2 * N, 32, 1, &r), 0);
  return (assoc_model){.name = "edge MLP",
                       .params = e->params,
                       .features = ASSOC_FEATURES_CHANNEL,
                       .forward = edge_mlp_forward,
                       .ctx = e};
}

#endif
