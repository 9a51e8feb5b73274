/* Training of the association GNNs and checkpoints (models/train/assoc_train.h):
 * learning beats RandInt, bitwise resume, the seed deciding a run, the dual
 * update, the per-step allocation count, the CSV log and argument checks.
 * Everything runs on tiny generated data sets (M 2, N 2, K 4). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sg_test.h"
#include "assoc_train.h"
#include "train_helpers.h"

/* ---- helpers ----------------------------------------------------------------- */

static double randint_rate(const assoc_dataset *ds) {
  assoc_baseline_opts o = assoc_baseline_defaults();
  o.seed = 99;
  int *assoc = malloc((size_t)(ds->S * ds->K) * sizeof *assoc);
  double *rate = malloc((size_t)ds->S * sizeof *rate), ms, sum = 0;
  sg_io_error err;
  ck_assert_msg(assoc_run_method(ds, ASSOC_RANDINT, &o, assoc, rate, &ms, NULL, NULL, &err) == 0,
                "%s", err.msg);
  for (int64_t s = 0; s < ds->S; s++) sum += rate[s];
  free(assoc), free(rate);
  return sum / (double)ds->S;
}

/* ---- learning ---------------------------------------------------------------- */

/* A short run of SMA-GNN (10 epochs of 8 mini-batches) lifts the test
 * sum-rate of its one-hot association well above the untrained model's and
 * above RandInt's. */
START_TEST(train_beats_randint) {
  assoc_dataset train = make_data(256, 11), test = make_data(256, 12);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_SMA);
  c.t0 = 10;
  sg_io_error err = {{0}};
  assoc_trainer *t = assoc_trainer_new(&c, &train, &test, &err);
  ck_assert_msg(t, "%s", err.msg);
  assoc_metrics before;
  ck_assert(assoc_gnn_evaluate(assoc_trainer_model(t), &test, assoc_trainer_feature_scale(t), 128,
                               0, &before, &err) == 0);
  assoc_epoch_stats st;
  run_epochs(t, 10, &st);
  double randint = randint_rate(&test);
  ck_assert(st.has_test);
  ck_assert_int_eq(st.test.samples, test.S);
  ck_assert_msg(st.test.mean_rate > randint + 1.0 && st.test.mean_rate > before.mean_rate + 1.0,
                "test rate %.4f after training, %.4f before, RandInt %.4f", st.test.mean_rate,
                before.mean_rate, randint);
  ck_assert_int_eq(st.samples, 8 * 32);
  ck_assert_int_eq(st.step, 80);
  assoc_trainer_free(t);
  assoc_dataset_free(&train), assoc_dataset_free(&test);
}
END_TEST

/* ---- resume --------------------------------------------------------------------- */

/* Member by member equality of two checkpoints, except the thread count. */
static void assert_same_checkpoints(const char *a_path, const char *b_path) {
  sg_io_error err = {{0}};
  sg_npz *a = sg_npz_open(a_path, &err), *b = sg_npz_open(b_path, &err);
  ck_assert_msg(a && b, "%s", err.msg);
  ck_assert_int_eq(sg_npz_count(a), sg_npz_count(b));
  for (int i = 0; i < sg_npz_count(a); i++) {
    const char *name = sg_npz_name(a, i);
    if (!strcmp(name, "config.threads")) continue;
    const sg_array *x = sg_npz_get(a, name), *y = sg_npz_get(b, name);
    ck_assert_msg(y, "member %s missing", name);
    ck_assert_int_eq(x->type, y->type);
    ck_assert_int_eq(x->numel, y->numel);
    size_t bytes = (size_t)x->numel * (x->type == SG_NPY_F32 || x->type == SG_NPY_I32 ? 4 : 8);
    ck_assert_msg(memcmp(x->data, y->data, bytes) == 0, "member %s differs", name);
  }
  sg_npz_close(a), sg_npz_close(b);
}

/* 4 epochs straight (1 thread) equal 2 epochs, a checkpoint, and 2 resumed
 * epochs (2 threads): every parameter bit, the Adam state, mu and the
 * generator. AttSKGS-GNN draws Gumbel noise, so the generator matters. */
START_TEST(train_resume_bitwise) {
  assoc_dataset train = make_data(96, 21);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_ATTSKGS);
  c.batch = 16, c.batches_per_epoch = 3, c.t0 = 1.5, c.t_mu = 1, c.delta = 1.0;
  char p_full[128], p_half[128], p_resumed[128];
  tmp_path(p_full, sizeof p_full, "full.npz");
  tmp_path(p_half, sizeof p_half, "half.npz");
  tmp_path(p_resumed, sizeof p_resumed, "resumed.npz");
  sg_io_error err = {{0}};
  assoc_epoch_stats st;

  assoc_trainer *full = assoc_trainer_new(&c, &train, NULL, &err);
  ck_assert_msg(full, "%s", err.msg);
  run_epochs(full, 4, &st);
  ck_assert_msg(assoc_trainer_save(full, p_full, &err) == 0, "%s", err.msg);

  assoc_trainer *half = assoc_trainer_new(&c, &train, NULL, &err);
  run_epochs(half, 2, &st);
  ck_assert_msg(assoc_trainer_save(half, p_half, &err) == 0, "%s", err.msg);
  assoc_trainer_free(half);

  assoc_train_config override = c;
  override.threads = 2;
  assoc_trainer *resumed = assoc_trainer_resume(p_half, &override, &train, NULL, &err);
  ck_assert_msg(resumed, "%s", err.msg);
  ck_assert_int_eq(assoc_trainer_epoch(resumed), 2);
  ck_assert_int_eq(assoc_trainer_step(resumed), 6);
  run_epochs(resumed, 2, &st);
  ck_assert_int_eq(st.epoch, 4);
  ck_assert_msg(assoc_trainer_save(resumed, p_resumed, &err) == 0, "%s", err.msg);

  const sg_params *pf = assoc_trainer_model(full)->params,
                  *pr = assoc_trainer_model(resumed)->params;
  ck_assert_int_eq(sg_params_count(pf), sg_params_count(pr));
  for (int i = 0; i < sg_params_count(pf); i++) {
    const sg_tensor *a = sg_params_at(pf, i), *b = sg_params_at(pr, i);
    ck_assert_int_eq(a->numel, b->numel);
    ck_assert_msg(memcmp(a->data, b->data, (size_t)a->numel * sizeof(float)) == 0,
                  "parameter %s differs after resume", sg_params_name(pf, i));
  }
  ck_assert_mem_eq(assoc_trainer_mu(full), assoc_trainer_mu(resumed), 2 * sizeof(double));
  ck_assert(assoc_trainer_mu(full)[0] > 0); /* the dual update took part */
  assert_same_checkpoints(p_full, p_resumed);

  assoc_trainer_free(full), assoc_trainer_free(resumed);
  remove(p_full), remove(p_half), remove(p_resumed);
  assoc_dataset_free(&train);
  omp_set_num_threads(omp_get_num_procs());
}
END_TEST

/* ---- seeds ----------------------------------------------------------------------- */

/* The parameters after 2 epochs of AttSKGS-GNN (Gumbel noise, shuffled
 * mini-batches) from seed `seed`, as one array of *numel floats (malloc). */
static float *train_with_seed(const assoc_dataset *train, uint64_t seed, int64_t *numel) {
  assoc_train_config c = tiny_train_config(ASSOC_GNN_ATTSKGS);
  c.batch = 16, c.batches_per_epoch = 2, c.seed = seed;
  sg_io_error err = {{0}};
  assoc_trainer *t = assoc_trainer_new(&c, train, NULL, &err);
  ck_assert_msg(t, "%s", err.msg);
  run_epochs(t, 2, NULL);
  const sg_params *p = assoc_trainer_model(t)->params;
  *numel = 0;
  for (int i = 0; i < sg_params_count(p); i++) *numel += sg_params_at(p, i)->numel;
  float *out = malloc((size_t)*numel * sizeof *out), *at = out;
  for (int i = 0; i < sg_params_count(p); i++) {
    const sg_tensor *x = sg_params_at(p, i);
    memcpy(at, x->data, (size_t)x->numel * sizeof *out);
    at += x->numel;
  }
  assoc_trainer_free(t);
  return out;
}

/* The seed decides a run: two runs with the same seed end with the same
 * parameter bits, runs with different seeds with different parameters. */
START_TEST(train_seed_determines_run) {
  assoc_dataset train = make_data(64, 41);
  int64_t n1, n2, n3;
  float *a = train_with_seed(&train, 5, &n1), *b = train_with_seed(&train, 5, &n2),
        *c = train_with_seed(&train, 6, &n3);
  ck_assert_int_eq(n1, n2);
  ck_assert_int_eq(n1, n3);
  ck_assert_msg(memcmp(a, b, (size_t)n1 * sizeof *a) == 0, "equal seeds, different parameters");
  int64_t differ = 0;
  for (int64_t i = 0; i < n1; i++) differ += a[i] != c[i];
  ck_assert_msg(differ > n1 / 2, "seeds 5 and 6: only %lld of %lld parameters differ",
                (long long)differ, (long long)n1);
  free(a), free(b), free(c);
  assoc_dataset_free(&train);
}
END_TEST

/* ---- dual update ----------------------------------------------------------------- */

/* delta = N puts the threshold at 0, so ReLU(load) = load and the excess
 * over the BSs adds up to K (every row of A~ sums to 1): mu grows by
 * exactly the epoch's excess every t_mu epochs and stays put otherwise;
 * without violations it stays 0. */
START_TEST(train_dual_update) {
  assoc_dataset train = make_data(64, 51);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_GS);
  c.batches_per_epoch = 2, c.delta = 2.0, c.t_mu = 2;
  sg_io_error err = {{0}};
  assoc_trainer *t = assoc_trainer_new(&c, &train, NULL, &err);
  assoc_epoch_stats st;
  run_epochs(t, 1, &st);
  ck_assert(!st.dual_updated);
  ck_assert(st.mu[0] == 0 && st.mu[1] == 0);
  ck_assert_double_eq_tol(st.excess[0] + st.excess[1], 4.0, 1e-5);
  ck_assert(st.excess[0] > 0 && st.excess[1] > 0);
  run_epochs(t, 1, &st);
  ck_assert(st.dual_updated);
  ck_assert(st.mu[0] == st.excess[0] && st.mu[1] == st.excess[1]);
  double mu0[2] = {st.mu[0], st.mu[1]};
  run_epochs(t, 2, &st);
  ck_assert(st.mu[0] == mu0[0] + st.excess[0] && st.mu[1] == mu0[1] + st.excess[1]);
  ck_assert(st.mu[0] > mu0[0]);
  assoc_trainer_free(t);

  c.delta = -10.0, c.t_mu = 1; /* threshold N + 10 > K: never violated */
  t = assoc_trainer_new(&c, &train, NULL, &err);
  run_epochs(t, 2, &st);
  ck_assert(st.dual_updated);
  ck_assert(st.mu[0] == 0 && st.mu[1] == 0 && st.excess_mean == 0);
  assoc_trainer_free(t);
  assoc_dataset_free(&train);
}
END_TEST

/* ---- memory, stopping, logging, arguments ------------------------------------------- */

/* After the first epoch, a whole training epoch allocates nothing. */
START_TEST(train_epoch_no_allocation) {
  assoc_dataset train = make_data(64, 61);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_ATTSKGS);
  c.batch = 16, c.batches_per_epoch = 3;
  sg_io_error err = {{0}};
  assoc_trainer *t = assoc_trainer_new(&c, &train, NULL, &err);
  run_epochs(t, 1, NULL);
  sg_test_count_allocations();
  run_epochs(t, 2, NULL);
  sg_set_allocator(NULL);
  ck_assert_int_eq(sg_test_allocations, 0);
  assoc_trainer_free(t);
  assoc_dataset_free(&train);
}
END_TEST

static void stop_after_two(void *user, const assoc_step_info *info) {
  if (info->batch == 2) *(volatile sig_atomic_t *)user = 1;
}

/* A raised stop flag abandons the epoch; the half-trained state cannot be
 * saved or trained on. */
START_TEST(train_stop_flag) {
  assoc_dataset train = make_data(128, 71);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_SMA);
  char ck[128];
  tmp_path(ck, sizeof ck, "stopped.npz");
  sg_io_error err = {{0}};
  assoc_trainer *t = assoc_trainer_new(&c, &train, NULL, &err);
  volatile sig_atomic_t stop = 0;
  ck_assert_int_eq(assoc_trainer_run_epoch(t, NULL, stop_after_two, (void *)&stop, &stop, &err), 1);
  ck_assert_int_eq(assoc_trainer_step(t), 2);
  ck_assert_int_eq(assoc_trainer_epoch(t), 0);
  ck_assert_int_eq(assoc_trainer_save(t, ck, &err), -1);
  ck_assert_int_ne(access(ck, F_OK), 0);
  stop = 0;
  ck_assert_int_eq(assoc_trainer_run_epoch(t, NULL, NULL, NULL, NULL, &err), -1);
  assoc_trainer_free(t);
  assoc_dataset_free(&train);
}
END_TEST

static int count_char(const char *s, char c) {
  int n = 0;
  for (; *s; s++) n += *s == c;
  return n;
}

/* Lines of a CSV log (the first copied to first); every row must have the
 * header's number of fields. */
static int count_lines(const char *path, char *first, size_t n) {
  FILE *f = fopen(path, "r");
  ck_assert_ptr_nonnull(f);
  char line[1024];
  int lines = 0, commas = 0;
  while (fgets(line, sizeof line, f)) {
    if (lines++ == 0) snprintf(first, n, "%s", line), commas = count_char(line, ',');
    ck_assert_msg(count_char(line, ',') == commas, "row %d has %d fields, the header %d: %s", lines,
                  count_char(line, ',') + 1, commas + 1, line);
  }
  fclose(f);
  return lines;
}

/* The arena_mib column (the last): the same positive value in each of the
 * log's `rows` rows, a training step's allocations being the same. */
static void check_arena_column(const char *path, int rows) {
  FILE *f = fopen(path, "r");
  ck_assert_ptr_nonnull(f);
  char line[1024];
  double first = -1;
  int n = 0;
  ck_assert_ptr_nonnull(fgets(line, sizeof line, f)); /* the header */
  while (fgets(line, sizeof line, f)) {
    double mib = strtod(strrchr(line, ',') + 1, NULL);
    if (n++ == 0) first = mib;
    ck_assert_msg(mib > 0 && mib == first, "row %d: arena_mib %g, the first row %g", n, mib, first);
  }
  fclose(f);
  ck_assert_int_eq(n, rows);
}

/* Rewrites the log at path without its last column (as a log written
 * before the arena_mib column was). */
static void drop_last_column(const char *path) {
  char text[8192], line[1024];
  size_t len = 0;
  FILE *f = fopen(path, "r");
  ck_assert_ptr_nonnull(f);
  while (fgets(line, sizeof line, f)) {
    *strrchr(line, ',') = '\0';
    len += (size_t)snprintf(text + len, sizeof text - len, "%s\n", line);
    ck_assert_uint_lt(len, sizeof text);
  }
  fclose(f);
  f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
}

/* assoc_train_run: a row per epoch, appended to when resuming, and the
 * checkpoint of the last epoch. */
START_TEST(train_run_log) {
  assoc_dataset train = make_data(64, 81), test = make_data(32, 82);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_GS);
  c.batches_per_epoch = 1, c.epochs = 3;
  char ck[128], log[128], header[1024];
  tmp_path(ck, sizeof ck, "run.npz");
  tmp_path(log, sizeof log, "run.csv");
  assoc_train_io io = {.out = ck, .log = log};
  assoc_train_result res;
  sg_io_error err = {{0}};
  ck_assert_msg(assoc_train_run(&c, &train, &test, &io, &res, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(res.epochs_done, 3);
  ck_assert_int_eq(res.epochs_this_call, 3);
  ck_assert_int_eq(res.steps, 3);
  ck_assert(res.last.has_test && res.last.test.mean_rate > 0);
  ck_assert_int_eq(count_lines(log, header, sizeof header), 4);
  ck_assert_str_eq(header, "epoch,step,loss,train_rate,test_rate,violation_ratio,mu_0,mu_1,lr,"
                           "seconds,test_violation_ratio,test_lb_rate,excess,sinkhorn_near_kink,"
                           "arena_mib\n");
  c.epochs = 5;
  io.resume = ck;
  ck_assert_msg(assoc_train_run(&c, &train, &test, &io, &res, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(res.epochs_done, 5);
  ck_assert_int_eq(res.epochs_this_call, 2);
  ck_assert_int_eq(count_lines(log, header, sizeof header), 6);
  /* without a test set the test columns are empty, not missing */
  c.epochs = 6;
  ck_assert_msg(assoc_train_run(&c, &train, NULL, &io, &res, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(count_lines(log, header, sizeof header), 7);
  check_arena_column(log, 6);
  double scale;
  assoc_train_config saved;
  assoc_gnn *m = assoc_checkpoint_load_model(ck, &scale, &saved, &err);
  ck_assert_ptr_nonnull(m);
  ck_assert_int_eq(saved.epochs, 6);
  assoc_gnn_free(m);
  /* a log begun without the arena_mib column is continued without it */
  drop_last_column(log);
  c.epochs = 7;
  ck_assert_msg(assoc_train_run(&c, &train, NULL, &io, &res, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(count_lines(log, header, sizeof header), 8);
  ck_assert_ptr_null(strstr(header, "arena_mib"));
  remove(ck), remove(log);
  assoc_dataset_free(&train), assoc_dataset_free(&test);
}
END_TEST

/* Bad configurations and data are refused with a message. */
START_TEST(train_refusals) {
  assoc_dataset train = make_data(40, 91);
  sg_io_error err = {{0}};
  assoc_train_config c = tiny_train_config(ASSOC_GNN_GS);
  c.d = 0;
  ck_assert_ptr_null(assoc_trainer_new(&c, &train, NULL, &err));
  ck_assert_ptr_nonnull(strstr(err.msg, "d and h must be in 1..65536"));
  c = tiny_train_config(ASSOC_GNN_GS);
  c.h = (1 << 16) + 1; /* wider than assoc train accepts */
  ck_assert_ptr_null(assoc_trainer_new(&c, &train, NULL, &err));
  ck_assert_ptr_nonnull(strstr(err.msg, "d and h must be in 1..65536"));
  c = tiny_train_config(ASSOC_GNN_GS);
  c.batch = 41;
  ck_assert_ptr_null(assoc_trainer_new(&c, &train, NULL, &err));
  ck_assert_ptr_nonnull(strstr(err.msg, "fewer than one mini-batch"));
  c = tiny_train_config(ASSOC_GNN_GS);
  c.lr_min = 1.0, c.lr_max = 0.1;
  ck_assert_int_eq(assoc_train_config_check(&c, &err), -1);
  c = tiny_train_config(ASSOC_GNN_GS);
  assoc_scenario sc = assoc_scenario_default();
  sc.N = 3, sc.K = 4;
  assoc_dataset other_n;
  ck_assert(assoc_generate(&sc, 8, &other_n, &err) == 0);
  ck_assert_ptr_null(assoc_trainer_new(&c, &train, &other_n, &err));
  ck_assert_ptr_nonnull(strstr(err.msg, "antennas"));
  assoc_dataset_free(&other_n);
  assoc_dataset_free(&train);
}
END_TEST

/* ---- suite ----------------------------------------------------------------------- */

Suite *suite_train(void) {
  const sg_test_case cases[] = {
      {"train_beats_randint", train_beats_randint},
      {"train_resume_bitwise", train_resume_bitwise},
      {"train_seed_determines_run", train_seed_determines_run},
      {"train_dual_update", train_dual_update},
      {"train_epoch_no_allocation", train_epoch_no_allocation},
      {"train_stop_flag", train_stop_flag},
      {"train_run_log", train_run_log},
      {"train_refusals", train_refusals},
  };
  return sg_test_suite("train", cases, sizeof cases / sizeof cases[0], 120);
}
