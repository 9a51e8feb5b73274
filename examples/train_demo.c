/* The main job for now: a two-layer network learns y = sin(3 x1) * x2 from
 * samples, trained with Adam in float32, printing the loss as it falls.
 * Everything is seeded: the output is the same on every run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "sinkgrad.h"

enum { IN = 2, HIDDEN = 64, BATCH = 256, STEPS = 600 };

typedef struct mlp {
  sg_tensor *w1, *b1, *w2, *b2;
} mlp;

/* PyTorch's nn.Linear initialisation: U(-1/sqrt(in), 1/sqrt(in)). */
static sg_tensor *param(sg_rng *r, int nd, const int64_t *shape, int64_t fan_in) {
  double bound = 1 / sqrt((double)fan_in);
  sg_tensor *t = sg_rand_uniform(NULL, r, SG_F32, nd, shape, -bound, bound);
  sg_set_requires_grad(t, true);
  return t;
}

static sg_tensor *forward(sg_graph *g, const mlp *m, sg_tensor *x) {
  sg_tensor *h = sg_relu(g, sg_linear(g, x, m->w1, m->b1));
  return sg_linear(g, h, m->w2, m->b2);
}

/* A fresh batch: x uniform in [-1, 1]^2, target sin(3 x1) * x2. */
static void draw_batch(sg_graph *g, sg_rng *r, sg_tensor **x, sg_tensor **y) {
  *x = sg_rand_uniform(g, r, SG_F32, 2, (int64_t[]){BATCH, IN}, -1, 1);
  *y = sg_empty(g, SG_F32, 2, (int64_t[]){BATCH, 1});
  const float *xd = sg_f32(*x);
  for (int i = 0; i < BATCH; i++) sg_f32(*y)[i] = sinf(3 * xd[2 * i]) * xd[2 * i + 1];
}

int main(void) {
  sg_rng rng;
  sg_rng_seed(&rng, 2026);
  mlp m = {param(&rng, 2, (int64_t[]){HIDDEN, IN}, IN), param(&rng, 1, (int64_t[]){HIDDEN}, IN),
           param(&rng, 2, (int64_t[]){1, HIDDEN}, HIDDEN), param(&rng, 1, (int64_t[]){1}, HIDDEN)};
  sg_tensor *params[] = {m.w1, m.b1, m.w2, m.b2};
  sg_adam *opt = sg_adam_new(params, 4, 1e-2);
  sg_graph *g = sg_graph_new();
  printf("sinkgrad demo: MLP %d-%d-1 learns sin(3 x1) * x2 (float32, Adam, %s matmul)\n", IN,
         HIDDEN, sg_blas_name());
  double first = 0, last = 0;
  for (int step = 1; step <= STEPS; step++) {
    sg_graph_reset(g);
    sg_tensor *x, *y;
    draw_batch(g, &rng, &x, &y);
    sg_tensor *loss = sg_mean_all(g, sg_square(g, sg_sub(g, forward(g, &m, x), y)));
    sg_params_zero_grad(params, 4);
    sg_backward(g, loss);
    sg_adam_step(opt);
    last = sg_get(loss, 0);
    if (step == 1) first = last;
    if (step == 1 || step % 50 == 0) printf("step %4d  loss %.6f\n", step, last);
  }
  printf("loss fell from %.4f to %.4f (%.1fx)\n", first, last, first / last);
  sg_graph_free(g);
  sg_adam_free(opt);
  for (int i = 0; i < 4; i++) sg_free(params[i]);
  return last < first ? EXIT_SUCCESS : EXIT_FAILURE;
}
