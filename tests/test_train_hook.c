/* The hook for a model of one's own (assoc_gnn.h assoc_model, assoc_train.h
 * assoc_trainer_new_model, assoc_eval.h assoc_model_eval): a built-in GNN
 * through the hook trains bit for bit as the built-in path, a per-edge MLP
 * of the test's own learns, and misuse is refused with a message. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assoc_eval.h"
#include "sg_test.h"
#include "train_helpers.h"

/* ---- the built-in GNN through the hook -------------------------------------------- */

/* SKGS-GNN (Gumbel noise from the run's generator, Sinkhorn) trained two
 * epochs by assoc_trainer_new and by assoc_trainer_new_model on
 * assoc_gnn_model of the same initial model: the same parameters, losses and
 * test metrics bit for bit. */
START_TEST(hook_gnn_same_bits) {
  assoc_dataset train = make_data(128, 31), test = make_data(64, 32);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_SKGS);
  sg_io_error err = {{0}};
  assoc_trainer *builtin = assoc_trainer_new(&c, &train, &test, &err);
  ck_assert_msg(builtin, "%s", err.msg);
  assoc_gnn_config gc = assoc_train_gnn_config(&c, train.N);
  assoc_gnn *m = assoc_gnn_new(&gc, c.seed);
  assoc_model net = assoc_gnn_model(m);
  assoc_trainer *hooked = assoc_trainer_new_model(&c, &net, &train, &test, &err);
  ck_assert_msg(hooked, "%s", err.msg);
  ck_assert_ptr_null(assoc_trainer_model(hooked));
  ck_assert_ptr_eq(assoc_trainer_net(hooked)->params, m->params);
  assoc_epoch_stats a, b;
  for (int e = 0; e < 2; e++) {
    run_epochs(builtin, 1, &a);
    run_epochs(hooked, 1, &b);
    ck_assert(a.loss == b.loss && a.train_rate == b.train_rate);
    ck_assert(a.test.mean_rate == b.test.mean_rate && a.test.mean_lb_rate == b.test.mean_lb_rate);
    ck_assert(a.sinkhorn_near_kink == b.sinkhorn_near_kink);
  }
  assert_params_bitwise(assoc_trainer_model(builtin)->params, m->params);
  /* Full evaluation: assoc_model_eval of the hook = assoc_eval_model. */
  assoc_eval_opts o = assoc_eval_defaults(assoc_trainer_feature_scale(builtin));
  o.latency_samples = 0;
  assoc_eval_metrics x, y;
  ck_assert_int_eq(assoc_eval_model(m, &test, &o, NULL, &x, NULL, NULL, &err), 0);
  ck_assert_int_eq(assoc_model_eval(&net, &test, &o, NULL, &y, NULL, NULL, &err), 0);
  ck_assert(x.rate == y.rate && x.rate_lb == y.rate_lb &&
            x.rate_no_violation == y.rate_no_violation);
  ck_assert(x.violation_ratio == y.violation_ratio && x.params == y.params);
  assoc_trainer_free(builtin), assoc_trainer_free(hooked);
  assoc_gnn_free(m);
  assoc_dataset_free(&train), assoc_dataset_free(&test);
}
END_TEST

/* ---- a model of one's own -------------------------------------------------------- */

/* The edge MLP trained 8 epochs by assoc_train_run: its test rate (row
 * argmax) rises above the untrained model's, the per-epoch log and result
 * are filled, and the full evaluation runs on it. */
static void count_epoch(void *user, const assoc_epoch_stats *st) {
  ck_assert(st->has_test && isfinite(st->test.mean_rate));
  ++*(int *)user;
}

START_TEST(hook_custom_model_learns) {
  assoc_dataset train = make_data(256, 41), test = make_data(128, 42);
  edge_mlp e;
  assoc_model net = edge_mlp_new(&e, train.N, 5);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_SMA);
  c.epochs = 8, c.t0 = 8, c.lr_max = 1e-2;
  sg_io_error err = {{0}};
  double scale = assoc_feature_scale(&train);
  assoc_metrics before;
  ck_assert_msg(assoc_model_test_metrics(&net, &test, scale, 64, 0, &before, &err) == 0, "%s",
                err.msg);
  int epochs = 0;
  assoc_train_io io = {.model = &net, .epoch_fn = count_epoch, .user = &epochs};
  assoc_train_result res;
  ck_assert_msg(assoc_train_run(&c, &train, &test, &io, &res, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(epochs, 8);
  ck_assert_int_eq(res.epochs_done, 8);
  ck_assert_int_eq(res.params, sg_params_numel(e.params));
  ck_assert_msg(res.last.test.mean_rate > before.mean_rate + 0.5,
                "test rate %.4f after training, %.4f before", res.last.test.mean_rate,
                before.mean_rate);
  assoc_eval_opts o = assoc_eval_defaults(scale);
  o.latency_samples = 4;
  assoc_eval_metrics x;
  ck_assert_msg(assoc_model_eval(&net, &test, &o, NULL, &x, NULL, NULL, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(x.samples, test.S);
  ck_assert_int_eq(x.params, sg_params_numel(e.params));
  ck_assert(x.rate_no_violation > 0 && x.rate_lb > 0 && x.infer_us > 0 && x.latency_us > 0);
  sg_params_free(e.params);
  assoc_dataset_free(&train), assoc_dataset_free(&test);
}
END_TEST

/* A forward of the wrong shape is reported (op, model, shapes) and fails
 * the epoch; checkpoints and a model without parameters are refused. */
START_TEST(hook_refusals) {
  assoc_dataset train = make_data(64, 51);
  edge_mlp e;
  assoc_model net = edge_mlp_new(&e, train.N, 6);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_SMA);
  sg_io_error err = {{0}};
  assoc_trainer *t = assoc_trainer_new_model(&c, &net, &train, NULL, &err);
  ck_assert_msg(t, "%s", err.msg);
  ck_assert_int_eq(assoc_trainer_save(t, "never_written.npz", &err), -1);
  ck_assert_msg(strstr(err.msg, "built-in GNNs"), "%s", err.msg);
  e.wrong_shape = true;
  sg_test_errors = (sg_test_error_log){0};
  sg_test_capture_errors();
  ck_assert_int_eq(assoc_trainer_run_epoch(t, NULL, NULL, NULL, NULL, &err), -1);
  sg_set_error_handler(NULL, NULL);
  ck_assert_int_eq(sg_test_errors.count, 1);
  ck_assert_str_eq(sg_test_errors.op, "assoc_model_forward");
  ck_assert_msg(strstr(sg_test_errors.msg, "edge MLP") &&
                    strstr(sg_test_errors.msg, "[32, 2, 4]") &&
                    strstr(sg_test_errors.msg, "[32, 4, 2]"),
                "%s", sg_test_errors.msg);
  assoc_trainer_free(t);
  e.wrong_shape = false;
  assoc_train_io io = {.model = &net, .out = "never_written.npz"};
  ck_assert_int_eq(assoc_train_run(&c, &train, NULL, &io, NULL, &err), -1);
  ck_assert_msg(strstr(err.msg, "edge MLP") && strstr(err.msg, "built-in"), "%s", err.msg);
  ck_assert_int_eq(access("never_written.npz", F_OK), -1);
  assoc_model empty = net;
  empty.params = NULL;
  ck_assert_ptr_null(assoc_trainer_new_model(&c, &empty, &train, NULL, &err));
  ck_assert_msg(strstr(err.msg, "parameters"), "%s", err.msg);
  sg_params_free(e.params);
  assoc_dataset_free(&train);
}
END_TEST

Suite *suite_train_hook(void) {
  const sg_test_case cases[] = {
      {"hook_gnn_same_bits", hook_gnn_same_bits},
      {"hook_custom_model_learns", hook_custom_model_learns},
      {"hook_refusals", hook_refusals},
  };
  return sg_test_suite("train_hook", cases, sizeof cases / sizeof cases[0], 120);
}
