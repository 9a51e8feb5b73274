/* Anomaly mode (sg_autograd.h): the first NaN or Inf of a step is reported
 * at the op that made it, in the forward or in the backward, through the
 * error handler; the backward then returns -1. Off, nothing is checked and
 * results do not change. */
#include <string.h>

#include "sg_optim.h"
#include "sg_test.h"

/* A caller-owned tensor of the given values. */
static sg_tensor *tensor_of(sg_dtype dt, int nd, const int64_t *shape, const double *v,
                            bool requires_grad) {
  sg_tensor *t = sg_from_f64(NULL, dt, nd, shape, v);
  sg_set_requires_grad(t, requires_grad);
  return t;
}

static sg_graph *anomaly_graph(void) {
  sg_graph *g = sg_graph_new();
  ck_assert(!sg_graph_set_anomaly(g, true)); /* off until turned on */
  sg_test_capture_errors();
  return g;
}

/* Frees g and restores the default error handler. */
static void end_graph(sg_graph *g) {
  sg_set_error_handler(NULL, NULL);
  sg_graph_free(g);
}

/* log(0) = -inf feeding a product: the report names sg_log (not the
 * product that carries the -inf on), its output and input shapes, the
 * element and the line of the sg_log call; the backward does not run. */
START_TEST(forward_log_of_zero_names_the_log) {
  int64_t shape[2] = {2, 3};
  sg_tensor *x = tensor_of(SG_F32, 2, shape, (double[]){1, 2, 3, 4, 5, 6}, true);
  sg_tensor *c = tensor_of(SG_F32, 2, shape, (double[]){1, 2, 3, 4, 0, 6}, false);
  sg_graph *g = anomaly_graph();
  int line = __LINE__ + 1;
  sg_tensor *l = sg_log(g, c);
  sg_tensor *loss = sg_sum_all(g, sg_mul(g, x, l));
  ck_assert_ptr_nonnull(loss);
  sg_test_expect_report("sg_log", __FILE__, line,
                        (const char *[]){"anomaly mode", "forward", "float32 [2, 3]",
                                         "-inf at element 4", "#0 float32 [2, 3] finite", NULL});
  const sg_anomaly *a = sg_graph_anomaly(g);
  ck_assert_ptr_nonnull(a);
  ck_assert(a->phase == SG_OBSERVE_FORWARD && a->input == -1 && a->index == 4);
  ck_assert_str_eq(a->op, "sg_log");
  ck_assert(isinf(a->value) && a->value < 0);
  ck_assert_int_eq(sg_backward(g, loss), -1);
  ck_assert_ptr_null(x->grad); /* nothing reached the parameter */
  ck_assert_int_eq(sg_test_errors.count, 1);
  /* The next step starts clean. */
  sg_graph_reset(g);
  ck_assert_ptr_null(sg_graph_anomaly(g));
  end_graph(g);
  sg_free(x), sg_free(c);
}
END_TEST

/* A user's model whose weights are too large for float32: exp of the
 * matmul's output overflows (exp(105) > 3.4e38). The report names sg_exp
 * and its input, the matmul's [3, 2] output; the training loop sees
 * sg_backward fail, skips the optimiser, and the weights stay as they
 * were. */
START_TEST(forward_exp_overflow_in_a_user_model_stops_the_step) {
  sg_tensor *x = tensor_of(SG_F32, 2, (int64_t[]){3, 4},
                           (double[]){1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1}, false);
  sg_tensor *W =
      tensor_of(SG_F32, 2, (int64_t[]){4, 2}, (double[]){1, 2, 3, 4, 5, 6, 100, 110}, true);
  float before[8];
  memcpy(before, W->data, sizeof before);
  sg_adam *opt = sg_adam_new(&W, 1, 1e-3);
  sg_graph *g = anomaly_graph();
  int failed_steps = 0;
  for (int step = 0; step < 2; step++) {
    sg_graph_reset(g);
    sg_zero_grad(W);
    sg_tensor *h = sg_matmul(g, x, W, false, false);
    int line = __LINE__ + 1;
    sg_tensor *loss = sg_sum_all(g, sg_log(g, sg_add_scalar(g, sg_exp(g, h), 1)));
    if (sg_backward(g, loss)) { /* the training loop's check */
      failed_steps++;
      sg_test_expect_report("sg_exp", __FILE__, line,
                            (const char *[]){"forward",
                                             "output float32 [3, 2] has inf at element 4",
                                             "#0 float32 [3, 2] finite", NULL});
      sg_test_errors.count = 0;
      continue;
    }
    sg_adam_step(opt);
  }
  ck_assert_int_eq(failed_steps, 2);
  ck_assert(!memcmp(before, W->data, sizeof before));
  sg_adam_free(opt);
  end_graph(g);
  sg_free(x), sg_free(W);
}
END_TEST

/* Counts the nodes an observer sees in each phase. */
typedef struct seen {
  int forward, backward;
  const char *last_backward_op;
} seen;

static void count_nodes(void *ctx, sg_graph *g, const sg_node *n, sg_observe_phase phase) {
  (void)g;
  seen *s = ctx;
  if (phase == SG_OBSERVE_FORWARD) s->forward++;
  if (phase == SG_OBSERVE_BACKWARD) s->backward++, s->last_backward_op = n->op->name;
}

/* sqrt is finite at 0 but its gradient 1 / (2 sqrt x) is not: the forward
 * passes, the backward names sg_sqrt, its input #0 and the line of the
 * sg_sqrt call (not of sg_backward); the user's observer still sees every
 * node, up to the one that failed. */
START_TEST(backward_sqrt_at_zero_names_the_sqrt) {
  int64_t n3[1] = {3};
  sg_tensor *x = tensor_of(SG_F64, 1, n3, (double[]){1, 0, 4}, true);
  sg_graph *g = anomaly_graph();
  seen s = {0};
  sg_graph_set_observer(g, count_nodes, &s);
  sg_tensor *y = sg_scale(g, x, 2.0);
  int line = __LINE__ + 1;
  sg_tensor *r = sg_sqrt(g, y);
  sg_tensor *loss = sg_sum_all(g, r);
  ck_assert_int_eq(sg_test_errors.count, 0);
  ck_assert_int_eq(s.forward, 3);
  ck_assert_int_eq(sg_backward(g, loss), -1);
  sg_test_expect_report("sg_sqrt", __FILE__, line,
                        (const char *[]){"backward", "gradient of input #0 (float64 [3])",
                                         "inf at element 1", "#0 float64 [3] finite", NULL});
  const sg_anomaly *a = sg_graph_anomaly(g);
  ck_assert(a && a->phase == SG_OBSERVE_BACKWARD && a->input == 0 && a->index == 1);
  ck_assert_int_eq(a->line, line);
  /* sum, then sqrt: the walk stopped before the scale's backward. */
  ck_assert_int_eq(s.backward, 2);
  ck_assert_str_eq(s.last_backward_op, "sg_sqrt");
  ck_assert_ptr_null(x->grad);
  end_graph(g);
  sg_free(x);
}
END_TEST

/* a / b at b = 1e-200 is 1e200, finite in float64, but b's gradient
 * -(go / b) * (a / b) overflows to -inf: the report names input #1 of
 * sg_div (a's gradient 1e200 is finite), and the ops the division's
 * backward runs internally are not reported as forward ops. */
START_TEST(backward_division_names_the_divisor_gradient) {
  sg_tensor *a = tensor_of(SG_F64, 1, (int64_t[]){2}, (double[]){1, 1}, true);
  sg_tensor *b = tensor_of(SG_F64, 1, (int64_t[]){2}, (double[]){1e-200, 1}, true);
  sg_graph *g = anomaly_graph();
  int line = __LINE__ + 1;
  sg_tensor *q = sg_div(g, a, b);
  ck_assert_int_eq(sg_backward(g, sg_sum_all(g, q)), -1);
  sg_test_expect_report("sg_div", __FILE__, line,
                        (const char *[]){"backward", "gradient of input #1 (float64 [2])",
                                         "-inf at element 0", NULL});
  ck_assert_int_eq(sg_graph_anomaly(g)->input, 1);
  end_graph(g);
  sg_free(a), sg_free(b);
}
END_TEST

/* A small model's loss and gradients, with the mode on or off. */
static void model_step(bool anomaly, sg_tensor *W, sg_tensor *x, float *loss_out, float *grad_out) {
  sg_graph *g = sg_graph_new();
  sg_graph_set_anomaly(g, anomaly);
  sg_zero_grad(W);
  sg_tensor *h = sg_tanh(g, sg_matmul(g, x, W, false, false));
  sg_tensor *p = sg_softmax(g, h, 1);
  sg_tensor *loss = sg_neg(g, sg_sum_all(g, sg_log(g, sg_add_scalar(g, p, 1e-6))));
  ck_assert_int_eq(sg_backward(g, loss), 0);
  *loss_out = sg_f32(loss)[0];
  memcpy(grad_out, W->grad->data, (size_t)W->numel * sizeof(float));
  sg_graph_free(g);
}

/* Off by default, for a new graph and for sg_set_detect_anomaly; finite
 * results are the same bit for bit with the mode on and off; off, a NaN
 * is not looked for. */
START_TEST(off_by_default_and_results_unchanged) {
  sg_graph *g = sg_graph_new();
  ck_assert(!sg_graph_anomaly_enabled(g));
  sg_graph_free(g);
  ck_assert(!sg_set_detect_anomaly(true));
  g = sg_graph_new();
  ck_assert(sg_graph_anomaly_enabled(g));
  sg_graph_free(g);
  ck_assert(sg_set_detect_anomaly(false));
  sg_rng r;
  sg_rng_seed(&r, 5);
  sg_tensor *x = sg_rand_normal(NULL, &r, SG_F32, 2, (int64_t[]){64, 32}, 0, 1);
  sg_tensor *W = sg_rand_normal(NULL, &r, SG_F32, 2, (int64_t[]){32, 16}, 0, 0.3);
  sg_set_requires_grad(W, true);
  float loss_off, loss_on, grad_off[32 * 16], grad_on[32 * 16];
  model_step(false, W, x, &loss_off, grad_off);
  model_step(true, W, x, &loss_on, grad_on);
  ck_assert(!memcmp(&loss_off, &loss_on, sizeof loss_on));
  ck_assert(!memcmp(grad_off, grad_on, sizeof grad_on));
  /* Off: a log of 0 goes by unreported and the backward runs. */
  sg_test_capture_errors();
  g = sg_graph_new();
  sg_tensor *z = sg_zeros(g, SG_F32, 1, (int64_t[]){3});
  ck_assert_int_eq(sg_backward(g, sg_sum_all(g, sg_mul(g, sg_log(g, z), sg_sum_all(g, W)))), 0);
  ck_assert_int_eq(sg_test_errors.count, 0);
  ck_assert_ptr_null(sg_graph_anomaly(g));
  end_graph(g);
  sg_free(x), sg_free(W);
}
END_TEST

/* With the mode on, an observer sees the same nodes as with it off. */
START_TEST(observer_still_called) {
  seen off = {0}, on = {0};
  sg_tensor *x = tensor_of(SG_F64, 1, (int64_t[]){4}, (double[]){0.5, 1, 2, 3}, true);
  for (int mode = 0; mode < 2; mode++) {
    sg_graph *g = sg_graph_new();
    sg_graph_set_anomaly(g, mode == 1);
    sg_graph_set_observer(g, count_nodes, mode ? &on : &off);
    sg_tensor *loss = sg_sum_all(g, sg_exp(g, sg_mul(g, x, x)));
    ck_assert_int_eq(sg_backward(g, loss), 0);
    sg_graph_free(g);
  }
  ck_assert_int_eq(off.forward, 3);
  ck_assert(on.forward == off.forward && on.backward == off.backward && on.backward == 3);
  sg_free(x);
}
END_TEST

/* sg_first_nonfinite: the first bad element of either dtype, past a
 * block boundary, or -1. */
START_TEST(first_nonfinite_finds_the_first) {
  for (int dt = 0; dt < 2; dt++) {
    sg_tensor *t = sg_zeros(NULL, (sg_dtype)dt, 1, (int64_t[]){3000});
    ck_assert_int_eq(sg_first_nonfinite(t), -1);
    sg_set(t, 2500, NAN);
    sg_set(t, 2999, INFINITY);
    ck_assert_int_eq(sg_first_nonfinite(t), 2500);
    sg_set(t, 1024, -INFINITY);
    ck_assert_int_eq(sg_first_nonfinite(t), 1024);
    sg_set(t, 1024, dt == SG_F32 ? 3.0e38 : 1.0e308); /* large but finite */
    ck_assert_int_eq(sg_first_nonfinite(t), 2500);
    sg_free(t);
  }
}
END_TEST

Suite *suite_anomaly(void) {
  const sg_test_case cases[] = {
      {"forward_log_of_zero_names_the_log", forward_log_of_zero_names_the_log},
      {"forward_exp_overflow_in_a_user_model_stops_the_step",
       forward_exp_overflow_in_a_user_model_stops_the_step},
      {"backward_sqrt_at_zero_names_the_sqrt", backward_sqrt_at_zero_names_the_sqrt},
      {"backward_division_names_the_divisor_gradient",
       backward_division_names_the_divisor_gradient},
      {"off_by_default_and_results_unchanged", off_by_default_and_results_unchanged},
      {"observer_still_called", observer_still_called},
      {"first_nonfinite_finds_the_first", first_nonfinite_finds_the_first},
  };
  return sg_test_suite("anomaly", cases, sizeof cases / sizeof *cases, 0);
}
