/* The tape, the arena, gradient accumulation, grad mode, error reporting,
 * user-defined ops under the public gradcheck, and thread determinism. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "sg_test.h"

static sg_tensor *leaf(sg_rng *r, int nd, const int64_t *shape) {
  sg_tensor *t = sg_rand_uniform(NULL, r, SG_F64, nd, shape, -1, 1);
  sg_set_requires_grad(t, true);
  return t;
}

/* d/dx of sum(x * x + x) seeded through sg_backward_with: 2x + 1. */
START_TEST(backward_accumulates_until_zeroed) {
  sg_rng r;
  sg_rng_seed(&r, 1);
  sg_tensor *x = leaf(&r, 1, (int64_t[]){5});
  sg_graph *g = sg_graph_new();
  sg_tensor *ones = sg_ones(g, SG_F64, 1, (int64_t[]){5});
  for (int pass = 1; pass <= 2; pass++) {
    sg_tensor *y = sg_add(g, sg_mul(g, x, x), x);
    sg_backward_with(g, y, ones);
    for (int i = 0; i < 5; i++)
      ck_assert_double_eq_tol(sg_get(x->grad, i), pass * (2 * sg_get(x, i) + 1), 1e-15);
  }
  /* Zeroing sets the gradient to none; the next backward reuses the buffer
   * and writes it (not += into stale values). */
  sg_tensor *buffer = x->grad;
  sg_zero_grad(x);
  ck_assert_ptr_null(x->grad);
  sg_zero_grad(x); /* twice is fine */
  sg_backward_with(g, sg_mul(g, x, x), ones);
  ck_assert_ptr_eq(x->grad, buffer);
  for (int i = 0; i < 5; i++) ck_assert_double_eq_tol(sg_get(x->grad, i), 2 * sg_get(x, i), 1e-15);
  sg_graph_free(g);
  sg_free(x);
}
END_TEST

START_TEST(no_grad_mode_records_nothing) {
  sg_rng r;
  sg_rng_seed(&r, 2);
  sg_tensor *x = leaf(&r, 2, (int64_t[]){3, 3});
  sg_graph *g = sg_graph_new();
  ck_assert(sg_set_grad_enabled(g, false));
  sg_tensor *y = sg_exp(g, x);
  ck_assert_int_eq(sg_graph_tape_len(g), 0);
  ck_assert(!y->requires_grad && y->node == NULL);
  sg_set_grad_enabled(g, true);
  y = sg_exp(g, x);
  ck_assert_int_eq(sg_graph_tape_len(g), 1);
  ck_assert(y->requires_grad && y->node != NULL);
  /* Inputs without requires_grad record nothing either. */
  sg_tensor *c = sg_ones(g, SG_F64, 1, (int64_t[]){3});
  sg_tensor *z = sg_exp(g, c);
  ck_assert(!z->requires_grad);
  ck_assert_int_eq(sg_graph_tape_len(g), 1);
  sg_graph_free(g);
  sg_free(x);
}
END_TEST

/* A gradient that reaches a tensor through two paths is summed:
 * d/dx exp(x) * exp(x) = 2 exp(2x). */
START_TEST(shared_subexpression) {
  sg_tensor *x = sg_from_f64(NULL, SG_F64, 1, (int64_t[]){1}, (double[]){0.7});
  sg_set_requires_grad(x, true);
  sg_graph *g = sg_graph_new();
  sg_tensor *e = sg_exp(g, x);
  sg_backward(g, sg_mul(g, e, e));
  ck_assert_double_eq_tol(sg_get(x->grad, 0), 2 * exp(1.4), 1e-14);
  sg_graph_free(g);
  sg_free(x);
}
END_TEST

/* ---- first write versus accumulation ------------------------------------ */

/* A backward writes an input's gradient (=) when it is the first to reach
 * it, and adds (+=) after that (sg_grad_dest). Each row applies an op to x
 * twice, directly and through a scale, and to the same tensor in two
 * operand slots, so that every converted backward runs in both modes; the
 * float64 gradcheck must agree. Rows: one per op family. */
typedef sg_tensor *(*twice_fn)(sg_graph *g, sg_tensor *x, sg_tensor *v);

static sg_tensor *tw_add(sg_graph *g, sg_tensor *x, sg_tensor *v) {
  return sg_add(g, sg_add(g, x, x), sg_mul(g, v, x)); /* v [1, 4] broadcast */
}
static sg_tensor *tw_sub(sg_graph *g, sg_tensor *x, sg_tensor *v) {
  return sg_sub(g, sg_sub(g, v, x), sg_mul(g, x, x));
}
static sg_tensor *tw_div(sg_graph *g, sg_tensor *x, sg_tensor *v) {
  sg_tensor *d = sg_add_scalar(g, sg_square(g, x), 1.5);
  return sg_add(g, sg_div(g, d, d), sg_div(g, x, sg_add_scalar(g, sg_square(g, v), 1)));
}
static sg_tensor *tw_unary(sg_graph *g, sg_tensor *x, sg_tensor *v) {
  (void)v;
  return sg_add(g, sg_tanh(g, x), sg_exp(g, sg_scale(g, x, 0.5)));
}
static sg_tensor *tw_sum(sg_graph *g, sg_tensor *x, sg_tensor *v) {
  return sg_add(g, sg_sum(g, x, 0, true), sg_mean(g, sg_mul(g, x, v), 1, true));
}
static sg_tensor *tw_sum_all(sg_graph *g, sg_tensor *x, sg_tensor *v) {
  return sg_add(g, sg_mul(g, v, sg_sum_all(g, x)), sg_mean_all(g, sg_square(g, x)));
}
/* Losses of products: sum_all gives the product a uniform gradient, which
 * mul's backward uses directly (same shapes) or writes out (broadcast). */
static sg_tensor *tw_sum_mul(sg_graph *g, sg_tensor *x, sg_tensor *v) {
  sg_tensor *same = sg_sum_all(g, sg_mul(g, x, sg_tanh(g, x)));
  sg_tensor *bcast = sg_mean_all(g, sg_mul(g, x, v));
  return sg_mul(g, v, sg_add(g, same, bcast));
}
static sg_tensor *tw_shape(sg_graph *g, sg_tensor *x, sg_tensor *v) {
  sg_tensor *r = sg_reshape(g, x, 2, (int64_t[]){4, 3});
  return sg_add(g, sg_mul(g, sg_transpose(g, r, 0, 1), v), sg_scale(g, x, 2));
}
static sg_tensor *tw_softmax(sg_graph *g, sg_tensor *x, sg_tensor *v) {
  sg_tensor *a = sg_softmax(g, x, 1), *b = sg_log_softmax(g, sg_scale(g, x, 0.5), 0);
  return sg_add(g, sg_mul(g, a, v), sg_add(g, b, sg_softmax(g, x, 0)));
}
static sg_tensor *tw_layer_norm(sg_graph *g, sg_tensor *x, sg_tensor *v) {
  sg_tensor *vv = sg_reshape(g, v, 1, (int64_t[]){4});
  sg_tensor *y = sg_layer_norm(g, x, vv, vv, 1e-5); /* gain and bias: one tensor */
  return sg_add(g, y, sg_layer_norm(g, sg_scale(g, x, 2), NULL, vv, 1e-5));
}
static sg_tensor *tw_linear(sg_graph *g, sg_tensor *x, sg_tensor *v) {
  sg_tensor *w = sg_mul(g, x, v); /* W [3, 4] from x itself */
  return sg_add(g, sg_linear(g, x, w, NULL), sg_linear(g, sg_scale(g, x, 0.5), x, NULL));
}

static const struct {
  const char *name;
  twice_fn f;
} twice_rows[] = {
    {"add", tw_add},       {"sub", tw_sub},         {"div", tw_div},
    {"unary", tw_unary},   {"sum", tw_sum},         {"sum_all", tw_sum_all},
    {"reshape", tw_shape}, {"softmax", tw_softmax}, {"layer_norm", tw_layer_norm},
    {"linear", tw_linear}, {"sum_mul", tw_sum_mul},
};

/* ctx: row * 2 + wrap; wrap applies the row to intermediates (scales of
 * the leaves), whose gradients may take over an output's buffer
 * (sg_grad_dest_inplace), instead of to the leaves themselves. */
static sg_tensor *apply_twice(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  int row = *(const int *)ctx / 2;
  bool wrap = *(const int *)ctx % 2;
  sg_tensor *x = wrap ? sg_scale(g, in[0], 0.75) : in[0];
  sg_tensor *v = wrap ? sg_scale(g, in[1], -1.5) : in[1];
  return twice_rows[row].f(g, x, v);
}

START_TEST(first_write_then_accumulate) {
  sg_rng r;
  sg_rng_seed(&r, 11);
  for (int i = 0; i < 2 * (int)(sizeof twice_rows / sizeof twice_rows[0]); i++) {
    sg_tensor *in[2] = {leaf(&r, 2, (int64_t[]){3, 4}), leaf(&r, 2, (int64_t[]){1, 4})};
    sg_gradcheck_result res = sg_gradcheck(apply_twice, in, 2, &i, NULL);
    ck_assert_msg(res.ok, "%s%s: %s", twice_rows[i / 2].name, i % 2 ? " (intermediates)" : "",
                  res.msg);
    sg_free(in[0]);
    sg_free(in[1]);
  }
}
END_TEST

/* ---- error reporting ---------------------------------------------------- */

START_TEST(misuse_names_op_shapes_and_call_site) {
  sg_graph *g = sg_graph_new();
  sg_tensor *a = sg_zeros(g, SG_F32, 2, (int64_t[]){2, 3});
  sg_tensor *b = sg_zeros(g, SG_F32, 1, (int64_t[]){4});
  sg_tensor *d = sg_zeros(g, SG_F64, 2, (int64_t[]){2, 3});
  sg_test_errors = (sg_test_error_log){0};
  sg_test_capture_errors();
  int line = __LINE__ + 1;
  sg_tensor *bad = sg_add(g, a, b);
  ck_assert_ptr_null(bad);
  ck_assert_int_eq(sg_test_errors.count, 1);
  ck_assert_str_eq(sg_test_errors.op, "sg_add");
  ck_assert_msg(strstr(sg_test_errors.msg, "[2, 3]") && strstr(sg_test_errors.msg, "[4]"),
                "message: %s", sg_test_errors.msg);
  ck_assert_msg(strstr(sg_test_errors.file, "test_autograd.c") != NULL, "file: %s",
                sg_test_errors.file);
  ck_assert_int_eq(sg_test_errors.line, line);
  /* dtype mismatch names both dtypes. */
  ck_assert_ptr_null(sg_mul(g, a, d));
  ck_assert_str_eq(sg_test_errors.op, "sg_mul");
  ck_assert_msg(strstr(sg_test_errors.msg, "float32") && strstr(sg_test_errors.msg, "float64"),
                "%s", sg_test_errors.msg);
  /* A NULL from a failed op propagates without a second report. */
  ck_assert_ptr_null(sg_exp(g, bad));
  ck_assert_int_eq(sg_test_errors.count, 2);
  /* backward from a non-scalar is misuse too. */
  sg_tensor *x = sg_zeros(NULL, SG_F64, 1, (int64_t[]){3});
  sg_set_requires_grad(x, true);
  sg_backward(g, sg_exp(g, x));
  ck_assert_str_eq(sg_test_errors.op, "sg_backward");
  sg_set_error_handler(NULL, NULL);
  sg_free(x);
  sg_graph_free(g);
}
END_TEST

/* ---- user-defined ops under the public gradcheck ------------------------- */

/* cube(x) = x^3, written as a user would: forward, backward, sg_record. */
static void cube_backward(sg_graph *g, sg_node *n) {
  sg_tensor *gx = sg_grad_buf(g, n->in[0]);
  double factor = n->farg[0]; /* 3 is right; the faulty variant uses 2.9 */
  for (int64_t i = 0; i < gx->numel; i++) {
    double x = sg_get(n->in[0], i);
    sg_set(gx, i, sg_get(gx, i) + sg_get(n->out->grad, i) * factor * x * x);
  }
}
static const sg_op cube_op = {"cube", cube_backward};

static sg_tensor *cube(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  sg_tensor *x = in[0], *y = sg_empty(g, x->dtype, x->ndim, x->shape);
  for (int64_t i = 0; i < x->numel; i++) sg_set(y, i, pow(sg_get(x, i), 3));
  sg_node *node = sg_record(g, &cube_op, y, 1, in);
  if (node) node->farg[0] = *(const double *)ctx;
  return y;
}

START_TEST(gradcheck_catches_a_wrong_backward) {
  sg_rng r;
  sg_rng_seed(&r, 3);
  sg_tensor *x = leaf(&r, 2, (int64_t[]){4, 3});
  double right = 3, wrong = 2.9;
  sg_gradcheck_result ok = sg_gradcheck(cube, &x, 1, &right, NULL);
  ck_assert_msg(ok.ok, "%s", ok.msg);
  ck_assert_int_eq(ok.checked, 12);
  sg_gradcheck_result bad = sg_gradcheck(cube, &x, 1, &wrong, NULL);
  ck_assert(!bad.ok);
  ck_assert_int_eq(bad.input, 0);
  ck_assert(bad.index >= 0 && bad.index < 12);
  ck_assert(bad.rel_err > 0.02 && bad.rel_err < 0.04); /* 0.1 / 3 off */
  ck_assert(strstr(bad.msg, "FAILED") != NULL);
  /* The random-projection mode catches it too. */
  sg_gradcheck_opts o = sg_gradcheck_defaults();
  o.projections = 4;
  ck_assert(sg_gradcheck(cube, &x, 1, &right, &o).ok);
  ck_assert(!sg_gradcheck(cube, &x, 1, &wrong, &o).ok);
  sg_free(x);
}
END_TEST

START_TEST(gradcheck_refuses_float32_inputs) {
  sg_tensor *x = sg_zeros(NULL, SG_F32, 1, (int64_t[]){2});
  double right = 3;
  sg_gradcheck_result res = sg_gradcheck(cube, &x, 1, &right, NULL);
  ck_assert(!res.ok && res.checked == 0);
  ck_assert(strstr(res.msg, "float64") != NULL);
  sg_free(x);
}
END_TEST

/* ---- threads ------------------------------------------------------------ */

/* A chain of parallel elementwise ops and a broadcast reduction in the
 * backward, on tensors large enough to be split across threads. */
static void run_chain(int threads, sg_tensor *x, sg_tensor *b, sg_tensor **y_out) {
  omp_set_num_threads(threads);
  sg_zero_grad(x);
  sg_zero_grad(b);
  sg_graph *g = sg_graph_new();
  sg_tensor *h = sg_tanh(g, sg_add(g, sg_mul(g, x, x), b));
  sg_tensor *y = sg_div(g, sg_exp(g, h), sg_add_scalar(g, sg_sigmoid(g, x), 1));
  sg_tensor *w = sg_ones(g, y->dtype, y->ndim, y->shape);
  sg_backward_with(g, y, w);
  *y_out = sg_clone(NULL, y);
  sg_graph_free(g);
}

START_TEST(threads_give_bitwise_identical_results) {
  sg_rng r;
  sg_rng_seed(&r, 4);
  for (int dt = 0; dt < 2; dt++) {
    sg_tensor *x = sg_rand_normal(NULL, &r, (sg_dtype)dt, 2, (int64_t[]){300, 1000}, 0, 1);
    sg_tensor *b = sg_rand_normal(NULL, &r, (sg_dtype)dt, 1, (int64_t[]){1000}, 0, 1);
    sg_set_requires_grad(x, true);
    sg_set_requires_grad(b, true);
    sg_tensor *y1, *y2;
    run_chain(1, x, b, &y1);
    sg_tensor *gx1 = sg_clone(NULL, x->grad), *gb1 = sg_clone(NULL, b->grad);
    run_chain(2, x, b, &y2);
    size_t es = sg_dtype_size((sg_dtype)dt);
    ck_assert_mem_eq(y1->data, y2->data, (size_t)y1->numel * es);
    ck_assert_mem_eq(gx1->data, x->grad->data, (size_t)x->numel * es);
    ck_assert_mem_eq(gb1->data, b->grad->data, (size_t)b->numel * es);
    sg_tensor *all[] = {x, b, y1, y2, gx1, gb1};
    for (int i = 0; i < 6; i++) sg_free(all[i]);
  }
  omp_set_num_threads(omp_get_num_procs());
}
END_TEST

/* ---- the arena: a steady-state training step allocates nothing ---------- */

/* One step of a two-layer MLP regression with Adam, as a user writes it. */
static double mlp_step(sg_graph *g, sg_rng *r, sg_tensor *const *p, sg_adam *opt) {
  sg_graph_reset(g);
  sg_tensor *x = sg_rand_normal(g, r, SG_F32, 2, (int64_t[]){64, 16}, 0, 1);
  sg_tensor *t = sg_rand_normal(g, r, SG_F32, 2, (int64_t[]){64, 4}, 0, 1);
  sg_tensor *h = sg_tanh(g, sg_relu(g, sg_linear(g, x, p[0], p[1])));
  sg_tensor *y = sg_linear(g, h, p[2], p[3]);
  sg_tensor *loss = sg_mean_all(g, sg_square(g, sg_sub(g, y, t)));
  sg_params_zero_grad(p, 4);
  sg_backward(g, loss);
  sg_adam_step(opt);
  return sg_get(loss, 0);
}

START_TEST(steady_state_step_allocates_nothing) {
  sg_rng r;
  sg_rng_seed(&r, 5);
  const int64_t shapes[4][2] = {{32, 16}, {32, 0}, {4, 32}, {4, 0}};
  sg_tensor *p[4];
  for (int i = 0; i < 4; i++) {
    p[i] = sg_rand_uniform(NULL, &r, SG_F32, shapes[i][1] ? 2 : 1, shapes[i], -0.2, 0.2);
    sg_set_requires_grad(p[i], true);
  }
  sg_adam *opt = sg_adam_new(p, 4, 1e-3);
  sg_graph *g = sg_graph_new();
  for (int i = 0; i < 2; i++) mlp_step(g, &r, p, opt); /* warm-up: arena and grads grow */
  sg_test_count_allocations();
  for (int i = 0; i < 5; i++) ck_assert(isfinite(mlp_step(g, &r, p, opt)));
  size_t during_steps = sg_test_allocations;
  /* The hook does see allocations: a new tensor outside the arena counts. */
  sg_tensor *probe = sg_zeros(NULL, SG_F32, 1, (int64_t[]){8});
  size_t after_probe = sg_test_allocations;
  sg_free(probe);
  sg_set_allocator(NULL);
  ck_assert_uint_eq(during_steps, 0);
  ck_assert_uint_gt(after_probe, 0);
  sg_graph_free(g);
  sg_adam_free(opt);
  for (int i = 0; i < 4; i++) sg_free(p[i]);
}
END_TEST

/* Released tensor data merges with its free neighbours and with the top of
 * the arena, and a larger free block is split, so a sequence that never
 * holds more than 2 MiB of data at once never takes much more arena. The
 * written patterns show that no two live tensors share bytes. */
START_TEST(released_blocks_merge_and_split) {
  const int64_t n = 1 << 18, two_n = 2 * n; /* float32: 1 MiB, 2 MiB */
  const size_t slack = 64 << 10;            /* tensor records in the other lane */
  sg_graph *g = sg_graph_new();
  /* A first 4 MiB chunk, so that everything below lies in one chunk
   * (blocks of different chunks are never adjacent). */
  sg_empty(g, SG_F32, 1, (int64_t[]){4 * n});
  sg_graph_reset(g);
  sg_tensor *a = sg_full(g, SG_F32, 1, &n, 1), *b = sg_full(g, SG_F32, 1, &n, 2);
  sg_release(g, a); /* a is free below b */
  sg_release(g, b); /* b merges with a and with the top */
  sg_tensor *c = sg_full(g, SG_F32, 1, &two_n, 3);
  ck_assert_uint_le(sg_graph_arena_used(g), (size_t)(2 << 20) + slack);
  sg_tensor *pin = sg_full(g, SG_F32, 1, &n, 4); /* keeps c off the top */
  sg_release(g, c);
  sg_tensor *d = sg_full(g, SG_F32, 1, &n, 5), *e = sg_full(g, SG_F32, 1, &n, 6);
  ck_assert_uint_le(sg_graph_arena_used(g), (size_t)(3 << 20) + slack);
  const sg_tensor *live[3] = {pin, d, e};
  for (int t = 0; t < 3; t++)
    for (int64_t i = 0; i < n; i += 4099) ck_assert_float_eq(sg_f32(live[t])[i], 4 + t);
  sg_graph_free(g);
}
END_TEST

/* sg_adam_step against the formula of torch.optim.Adam, evaluated in
 * double for six steps with changing gradients, with and without weight
 * decay; float32 parameters agree to float32 round-off, float64 ones to
 * double round-off. */
START_TEST(adam_matches_formula) {
  enum { N = 777, STEPS = 6 };
  for (int dt = 0; dt < 2; dt++)
    for (int decay = 0; decay < 2; decay++) {
      sg_rng r;
      sg_rng_seed(&r, 70 + dt);
      int64_t n = N;
      sg_tensor *p = sg_rand_uniform(NULL, &r, (sg_dtype)dt, 1, &n, -1, 1);
      sg_set_requires_grad(p, true);
      sg_adam *opt = sg_adam_new(&p, 1, 0.01);
      opt->weight_decay = decay ? 0.05 : 0;
      double ref[N], start[N], m[N] = {0}, v[N] = {0};
      for (int i = 0; i < N; i++) ref[i] = start[i] = sg_get(p, i);
      sg_graph *g = sg_graph_new();
      for (int step = 1; step <= STEPS; step++) {
        /* loss sum(w * p): gradient w, drawn anew each step */
        sg_tensor *w = sg_rand_normal(g, &r, (sg_dtype)dt, 1, &n, 0, 1 + step);
        sg_zero_grad(p);
        sg_backward(g, sg_sum_all(g, sg_mul(g, w, p)));
        sg_adam_step(opt);
        double bc1 = 1 - pow(0.9, step), bc2 = 1 - pow(0.999, step);
        for (int i = 0; i < N; i++) {
          double gi = sg_get(w, i) + opt->weight_decay * ref[i];
          m[i] = 0.9 * m[i] + 0.1 * gi;
          v[i] = 0.999 * v[i] + 0.001 * gi * gi;
          ref[i] -= 0.01 / bc1 * (m[i] / (sqrt(v[i]) / sqrt(bc2) + 1e-8));
        }
        sg_graph_reset(g);
      }
      double tol = dt == SG_F32 ? 1e-6 : 1e-14, moved = 0;
      for (int i = 0; i < N; i++) {
        ck_assert_double_eq_tol(sg_get(p, i), ref[i], tol);
        moved += fabs(ref[i] - start[i]);
      }
      ck_assert_double_gt(moved, N * 1e-3); /* steps of about lr: not vacuous */
      sg_graph_free(g);
      sg_adam_free(opt);
      sg_free(p);
    }
}
END_TEST

/* Two optimisers over equal copies of the same parameters, one stepped by
 * sg_adam_step on backward gradients, the other by sg_adam_step_grads on
 * copies of those gradients (a NULL entry for the parameter no loss
 * reaches): parameters and moments agree bit for bit after every step, in
 * both dtypes and with weight decay. */
static sg_tensor *copy_leaf(const sg_tensor *t) {
  sg_tensor *c = sg_clone(NULL, t);
  sg_set_requires_grad(c, true);
  return c;
}

static void assert_bitwise(const sg_tensor *a, const sg_tensor *b, const char *what) {
  size_t bytes = (size_t)a->numel * sg_dtype_size(a->dtype);
  ck_assert_msg(a->numel == b->numel && memcmp(a->data, b->data, bytes) == 0, "%s differs", what);
}

START_TEST(adam_step_grads_matches_adam_step) {
  for (int dt = 0; dt < 2; dt++) {
    sg_rng r;
    sg_rng_seed(&r, 90 + dt);
    sg_tensor *p[3] = {sg_rand_uniform(NULL, &r, (sg_dtype)dt, 2, (int64_t[]){7, 5}, -1, 1),
                       sg_rand_uniform(NULL, &r, (sg_dtype)dt, 1, (int64_t[]){5}, -1, 1),
                       sg_rand_uniform(NULL, &r, (sg_dtype)dt, 1, (int64_t[]){3}, -1, 1)};
    sg_tensor *q[3];
    for (int i = 0; i < 3; i++) sg_set_requires_grad(p[i], true), q[i] = copy_leaf(p[i]);
    sg_adam *a = sg_adam_new(p, 3, 0.02), *b = sg_adam_new(q, 3, 0.02);
    a->weight_decay = b->weight_decay = 0.01;
    sg_graph *g = sg_graph_new();
    for (int step = 0; step < 4; step++) {
      /* loss sum(tanh(x p0 + p1)); p2 is not used: no gradient */
      sg_tensor *x = sg_rand_normal(g, &r, (sg_dtype)dt, 2, (int64_t[]){4, 7}, 0, 1);
      sg_params_zero_grad(p, 3);
      sg_backward(g,
                  sg_sum_all(g, sg_tanh(g, sg_add(g, sg_matmul(g, x, p[0], false, false), p[1]))));
      sg_tensor *grads[3] = {sg_clone(g, p[0]->grad), sg_clone(g, p[1]->grad), NULL};
      sg_adam_step(a);
      ck_assert_int_eq(sg_adam_step_grads(b, grads, 3), 0);
      for (int i = 0; i < 3; i++) {
        assert_bitwise(p[i], q[i], "parameter");
        assert_bitwise(a->m[i], b->m[i], "first moment");
        assert_bitwise(a->v[i], b->v[i], "second moment");
        ck_assert_int_eq(a->steps[i], b->steps[i]);
      }
      sg_graph_reset(g);
    }
    ck_assert_int_eq(b->steps[0], 4);
    ck_assert_int_eq(b->steps[2], 0); /* NULL: untouched */
    sg_graph_free(g);
    sg_adam_free(a), sg_adam_free(b);
    for (int i = 0; i < 3; i++) sg_free(p[i]), sg_free(q[i]);
  }
}
END_TEST

/* A gradient of the wrong shape or dtype, or the wrong count, is reported
 * (op, parameter index, both shapes, call site) and nothing moves. */
START_TEST(adam_step_grads_reports_mismatch) {
  sg_rng r;
  sg_rng_seed(&r, 95);
  sg_tensor *p[2] = {sg_rand_uniform(NULL, &r, SG_F32, 2, (int64_t[]){2, 3}, -1, 1),
                     sg_rand_uniform(NULL, &r, SG_F32, 1, (int64_t[]){3}, -1, 1)};
  for (int i = 0; i < 2; i++) sg_set_requires_grad(p[i], true);
  sg_tensor *before = sg_clone(NULL, p[0]);
  sg_adam *opt = sg_adam_new(p, 2, 0.1);
  sg_tensor *good = sg_ones(NULL, SG_F32, 2, (int64_t[]){2, 3});
  sg_tensor *wrong_shape = sg_ones(NULL, SG_F32, 1, (int64_t[]){4});
  sg_tensor *wrong_dtype = sg_ones(NULL, SG_F64, 1, (int64_t[]){3});
  sg_test_errors = (sg_test_error_log){0};
  sg_test_capture_errors();
  int line = __LINE__ + 1;
  ck_assert_int_eq(sg_adam_step_grads(opt, ((sg_tensor *[]){good, wrong_shape}), 2), -1);
  ck_assert_int_eq(sg_test_errors.count, 1);
  ck_assert_str_eq(sg_test_errors.op, "sg_adam_step_grads");
  ck_assert_msg(strstr(sg_test_errors.msg, "parameter 1") && strstr(sg_test_errors.msg, "[3]") &&
                    strstr(sg_test_errors.msg, "[4]"),
                "message: %s", sg_test_errors.msg);
  ck_assert_msg(strstr(sg_test_errors.file, "test_autograd.c") != NULL, "file: %s",
                sg_test_errors.file);
  ck_assert_int_eq(sg_test_errors.line, line);
  ck_assert_int_eq(sg_adam_step_grads(opt, ((sg_tensor *[]){good, wrong_dtype}), 2), -1);
  ck_assert_msg(strstr(sg_test_errors.msg, "float32") && strstr(sg_test_errors.msg, "float64"),
                "message: %s", sg_test_errors.msg);
  ck_assert_int_eq(sg_adam_step_grads(opt, ((sg_tensor *[]){good}), 1), -1);
  ck_assert_msg(strstr(sg_test_errors.msg, "1 gradients") && strstr(sg_test_errors.msg, "2 param"),
                "message: %s", sg_test_errors.msg);
  ck_assert_int_eq(sg_test_errors.count, 3);
  sg_set_error_handler(NULL, NULL);
  assert_bitwise(p[0], before, "parameter after a refused step"); /* the good one did not move */
  ck_assert_int_eq(opt->steps[0], 0);
  sg_adam_free(opt);
  sg_free(good), sg_free(wrong_shape), sg_free(wrong_dtype), sg_free(before);
  for (int i = 0; i < 2; i++) sg_free(p[i]);
}
END_TEST

Suite *suite_autograd(void) {
  Suite *s = suite_create("autograd");
  TCase *tc = tcase_create("autograd");
  tcase_add_test(tc, backward_accumulates_until_zeroed);
  tcase_add_test(tc, no_grad_mode_records_nothing);
  tcase_add_test(tc, shared_subexpression);
  tcase_add_test(tc, first_write_then_accumulate);
  tcase_add_test(tc, misuse_names_op_shapes_and_call_site);
  tcase_add_test(tc, gradcheck_catches_a_wrong_backward);
  tcase_add_test(tc, gradcheck_refuses_float32_inputs);
  tcase_add_test(tc, threads_give_bitwise_identical_results);
  tcase_add_test(tc, steady_state_step_allocates_nothing);
  tcase_add_test(tc, released_blocks_merge_and_split);
  tcase_add_test(tc, adam_matches_formula);
  tcase_add_test(tc, adam_step_grads_matches_adam_step);
  tcase_add_test(tc, adam_step_grads_reports_mismatch);
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);
  return s;
}
