/* Helpers shared by the GNN test files (test_gnn*.c): an error counter, the
 * tiny float64 configuration of the gradient checks and random inputs. */
#ifndef GNN_HELPERS_H
#define GNN_HELPERS_H

#include "assoc_gnn.h"
#include "sg_test.h"

static int errors_seen;
static inline void record_error(const char *op, const char *msg, const char *file, int line,
                                void *u) {
  (void)op, (void)msg, (void)file, (void)line, (void)u;
  errors_seen++;
}

/* The tiny float64 configuration of the gradient checks: d 4, h 6, L 2,
 * N 2 (Fe = 4 edge features, capacity 2). */
static inline assoc_gnn_config tiny_config(assoc_gnn_variant v) {
  return (assoc_gnn_config){.variant = v,
                            .d = 4,
                            .h = 6,
                            .L = 2,
                            .fp = 1,
                            .fq = 1,
                            .fe = 4,
                            .dtype = SG_F64,
                            .tau = 0.8,
                            .sk_iters = 10,
                            .capacity = 2.0};
}

typedef struct gnn_inputs {
  sg_tensor *p, *q, *H, *noise; /* caller-owned */
} gnn_inputs;

/* Random features: BS and UE features distinct per node (so that
 * permutations matter), Gaussian channel features, Gumbel noise. */
static inline gnn_inputs make_inputs(sg_rng *r, sg_dtype dt, int64_t B, int64_t M, int64_t K,
                                     int64_t fe) {
  gnn_inputs in;
  in.p = sg_rand_uniform(NULL, r, dt, 3, (int64_t[]){B, M, 1}, 0.5, 1.5);
  in.q = sg_rand_uniform(NULL, r, dt, 3, (int64_t[]){B, K, 1}, 0.5, 1.5);
  in.H = sg_rand_normal(NULL, r, dt, 4, (int64_t[]){B, M, K, fe}, 0.0, 1.0);
  in.noise = sg_rand_gumbel(NULL, r, dt, 3, (int64_t[]){B, K, M});
  return in;
}

static inline void free_inputs(gnn_inputs *in) {
  sg_free(in->p);
  sg_free(in->q);
  sg_free(in->H);
  sg_free(in->noise);
}

#endif
