/* Helpers shared by the trainer test files (test_train.c,
 * test_train_checkpoint.c): tiny data sets and configurations, scratch paths,
 * and running epochs. */
#ifndef TRAIN_HELPERS_H
#define TRAIN_HELPERS_H

#include <stdio.h>
#include <stdlib.h>

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

static inline void run_epochs(assoc_trainer *t, int epochs, assoc_epoch_stats *last) {
  sg_io_error err = {{0}};
  for (int e = 0; e < epochs; e++)
    ck_assert_msg(assoc_trainer_run_epoch(t, last, NULL, NULL, NULL, &err) == 0, "%s", err.msg);
}

#endif
