/* Allocation failure, every allocation in turn (tests/fail_alloc.h): a
 * training step of an association GNN (model, Adam, graph, forward,
 * backward, Adam step), the trainer (a run of one step and its test
 * evaluation), and the loaders (.npy, .npz, rows of an .npz member through
 * its chunk index, data set, GNN checkpoint, BFGNN and JointGNN
 * checkpoints). For every n from 1 to the number of
 * allocations the operation makes, with allocation n failing: no crash,
 * an error return (or success when the failure was one the library works
 * around), a report saying "out of memory" (the error handler's, or the
 * loader's message), every block freed afterwards, and the same operation
 * with memory then gives the results of a run that never failed, bit for
 * bit. */
#include <string.h>
#include <unistd.h>

#include "assoc_train.h"
#include "fail_alloc.h"
#include "sg_test.h"
#include "train_helpers.h"

/* FNV-1a over bytes, folded into h. */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * UINT64_C(0x100000001b3);
  return h;
}
enum { HASH_SEED = 0 };
static uint64_t hash_tensor(uint64_t h, const sg_tensor *t) {
  return hash_bytes(h, t->data, (size_t)t->numel * sg_dtype_size(t->dtype));
}
static uint64_t hash_params(const sg_params *p) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (int i = 0; i < sg_params_count(p); i++) h = hash_tensor(h, sg_params_tensors(p)[i]);
  return h;
}

/* ---- one training step ------------------------------------------------------ */

/* A model, its optimiser and graph, made under whatever allocator is set. */
typedef struct step_state {
  sg_graph *g;
  assoc_gnn *model;
  sg_adam *adam;
} step_state;

static void step_state_free(step_state *s) {
  sg_adam_free(s->adam);
  assoc_gnn_free(s->model);
  sg_graph_free(s->g);
  *s = (step_state){0};
}

/* first_chunk: the arena's (0: the default), see sg_graph_set_first_chunk. */
static int step_state_new(step_state *s, const assoc_dataset *ds, assoc_gnn_variant v,
                          size_t first_chunk) {
  assoc_train_config c = tiny_train_config(v);
  assoc_gnn_config gc = assoc_train_gnn_config(&c, ds->N);
  *s = (step_state){.g = sg_graph_new(), .model = assoc_gnn_new(&gc, 11)};
  if (s->model)
    s->adam =
        sg_adam_new(sg_params_tensors(s->model->params), sg_params_count(s->model->params), 1e-3);
  if (s->g && s->model && s->adam) {
    if (first_chunk) sg_graph_set_first_chunk(s->g, first_chunk);
    return 0;
  }
  step_state_free(s);
  return -1;
}

/* Forward (train mode, Gumbel noise from a copy of rng), the loss, the
 * backward and the Adam step on the first B samples; 0, or -1 when memory
 * ran out (and then the parameters and Adam state are untouched). */
static int train_step(step_state *s, const assoc_dataset *ds, sg_rng rng, double *loss_out) {
  enum { B = 8 };
  sg_graph *g = s->g;
  sg_graph_reset(g);
  sg_params_zero_grad(sg_params_tensors(s->model->params), sg_params_count(s->model->params));
  assoc_gnn_batch in;
  if (assoc_gnn_batch_make(g, ds, NULL, 0, B, 1.0, s->model->cfg.features, SG_F32, true, &in))
    return -1;
  assoc_gnn_output o =
      assoc_gnn_forward(g, s->model, in.p, in.q, in.H, ASSOC_GNN_TRAIN, &rng, NULL);
  sg_tensor *rate = assoc_sum_rate(g, o.assoc, in.c_re, in.c_im, 1.0);
  double mu[2] = {0.5, 0.25}, excess[2];
  sg_tensor *loss = assoc_loss(g, rate, o.assoc, mu, s->model->cfg.capacity, 0.0, excess);
  if (!loss || sg_graph_failed(g)) return -1;
  sg_backward(g, loss);
  if (sg_graph_failed(g)) return -1;
  sg_adam_step(s->adam);
  *loss_out = sg_get(loss, 0);
  return 0;
}

/* Two steps (the second reads the first's Adam moments): the loss of each
 * and the parameters' hash after them. */
typedef struct step_result {
  double loss[2];
  uint64_t params;
} step_result;

static void two_steps(step_state *s, const assoc_dataset *ds, step_result *r) {
  sg_rng rng;
  sg_rng_seed(&rng, 5);
  for (int i = 0; i < 2; i++) {
    ck_assert_int_eq(train_step(s, ds, rng, &r->loss[i]), 0);
    sg_rng_u64(&rng);
  }
  r->params = hash_params(s->model->params);
}

/* Setup and a step with allocation n failing (and, persistent, every
 * later one), for every n; then two steps on the same objects with memory,
 * as in a run that never failed. */
static void walk_step(const assoc_dataset *ds, assoc_gnn_variant v, size_t first_chunk,
                      bool persistent) {
  fail_alloc fa;
  fail_alloc_capture_errors();
  /* The reference, counting the allocations of setup and two steps. */
  fail_alloc_install(&fa, 0);
  step_state s;
  ck_assert_int_eq(step_state_new(&s, ds, v, first_chunk), 0);
  step_result want;
  two_steps(&s, ds, &want);
  int64_t total = fa.calls;
  step_state_free(&s);
  ck_assert_int_eq(fa.live, 0);
  ck_assert_int_eq(fail_alloc_first.count, 0);
  int64_t step_failures = 0;
  for (int64_t n = 1; n <= total; n++) {
    fail_alloc_install(&fa, n);
    fa.persistent = persistent;
    fail_alloc_capture_errors();
    sg_rng rng;
    sg_rng_seed(&rng, 5);
    double loss;
    bool setup_ok = step_state_new(&s, ds, v, first_chunk) == 0;
    bool step_ok = setup_ok && train_step(&s, ds, rng, &loss) == 0;
    /* The library's failures are reported; the model's constructors
     * (models/) return NULL, which their callers turn into a message. */
    if (setup_ok && !step_ok) fail_alloc_expect_report("a training step", n);
    fa.fail_at = 0; /* from here on memory is there */
    if (setup_ok) {
      step_failures += !step_ok;
      step_result got;
      two_steps(&s, ds, &got);
      ck_assert_msg(got.loss[0] == want.loss[0] && got.loss[1] == want.loss[1] &&
                        got.params == want.params,
                    "allocation %lld failed: the steps after it differ (loss %.9g %.9g, want "
                    "%.9g %.9g)",
                    (long long)n, got.loss[0], got.loss[1], want.loss[0], want.loss[1]);
      step_state_free(&s);
    }
    ck_assert_msg(fa.live == 0, "allocation %lld failed: %lld blocks leaked", (long long)n,
                  (long long)fa.live);
    sg_set_allocator(NULL);
  }
  ck_assert_msg(step_failures > 0, "no allocation of the step itself was made to fail");
  sg_set_error_handler(NULL, NULL);
}

START_TEST(alloc_fail_train_step) {
  assoc_dataset ds = make_data(16, 3);
  walk_step(&ds, ASSOC_GNN_ATTSKGS, 0, false);
  /* Arena chunks of 256 bytes and up: the failure reaches nearly every op
   * of the forward and the backward, once alone, once for good; for good
   * also in the other variants (their Sinkhorn, Gumbel-softmax and
   * attention-free paths). */
  walk_step(&ds, ASSOC_GNN_ATTSKGS, 256, false);
  for (assoc_gnn_variant v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) walk_step(&ds, v, 256, true);
  assoc_dataset_free(&ds);
}
END_TEST

/* ---- the trainer ------------------------------------------------------------- */

/* A trainer of one step per epoch with a test set: the model's hash after
 * one epoch, or 0 with err set. */
static uint64_t trainer_epoch(const assoc_dataset *train, const assoc_dataset *test,
                              sg_io_error *err) {
  assoc_train_config c = tiny_train_config(ASSOC_GNN_SKGS);
  c.batch = 8, c.batches_per_epoch = 1, c.epochs = 1, c.eval_batch = 8;
  assoc_trainer *t = assoc_trainer_new(&c, train, test, err);
  if (!t) return 0;
  assoc_epoch_stats st;
  uint64_t h = 0;
  if (assoc_trainer_run_epoch(t, &st, NULL, NULL, NULL, err) == 0)
    h = hash_params(assoc_trainer_model(t)->params);
  assoc_trainer_free(t);
  return h;
}

START_TEST(alloc_fail_trainer) {
  assoc_dataset train = make_data(16, 4), test = make_data(8, 5);
  fail_alloc fa;
  sg_io_error err = {{0}};
  fail_alloc_capture_errors();
  fail_alloc_install(&fa, 0);
  uint64_t want = trainer_epoch(&train, &test, &err);
  ck_assert_msg(want != 0, "%s", err.msg);
  int64_t total = fa.calls;
  ck_assert_int_eq(fa.live, 0);
  for (int64_t n = 1; n <= total; n++) {
    fail_alloc_install(&fa, n);
    fail_alloc_capture_errors();
    err = (sg_io_error){{0}};
    uint64_t got = trainer_epoch(&train, &test, &err);
    if (!got) {
      ck_assert_msg(strstr(err.msg, "out of memory") || fail_alloc_first.count > 0,
                    "allocation %lld: the trainer failed with \"%s\" and nothing reported",
                    (long long)n, err.msg);
      if (fail_alloc_first.count > 0) fail_alloc_expect_report("the trainer", n);
    } else {
      ck_assert_msg(got == want, "allocation %lld failed and the run went on to another model",
                    (long long)n);
    }
    ck_assert_msg(fa.live == 0, "allocation %lld failed: %lld blocks leaked", (long long)n,
                  (long long)fa.live);
    fail_alloc_install(&fa, 0);
    ck_assert_msg(trainer_epoch(&train, &test, &err) == want,
                  "after allocation %lld failed, a new run differs", (long long)n);
    ck_assert_int_eq(fa.live, 0);
    sg_set_allocator(NULL);
  }
  sg_set_error_handler(NULL, NULL);
  assoc_dataset_free(&train), assoc_dataset_free(&test);
}
END_TEST

/* ---- the loaders ------------------------------------------------------------- */

/* A loader: reads path, hashes what it read into *h, frees it all; 0, or
 * -1 with err set. */
typedef int (*loader_fn)(const char *path, uint64_t *h, sg_io_error *err);

static int load_npy(const char *path, uint64_t *h, sg_io_error *err) {
  sg_tensor *t = sg_npy_load(path, err);
  if (!t) return -1;
  *h = hash_tensor(HASH_SEED, t);
  sg_free(t);
  return 0;
}

static int load_npz(const char *path, uint64_t *h, sg_io_error *err) {
  sg_npz *z = sg_npz_open(path, err);
  if (!z) return -1;
  *h = HASH_SEED;
  int rc = 0;
  for (int i = 0; i < sg_npz_count(z) && !rc; i++) {
    sg_tensor *t = sg_npz_tensor(z, sg_npz_name(z, i), SG_F64, err);
    if (t) *h = hash_tensor(*h, t);
    rc = t ? 0 : -1;
    sg_free(t);
  }
  sg_npz_close(z);
  return rc;
}

/* A member of three deflate chunks through its chunk index: rows of it,
 * then all of it. */
static int load_npz_rows(const char *path, uint64_t *h, sg_io_error *err) {
  const char *name = "x";
  *h = HASH_SEED;
  for (int whole = 0; whole < 2; whole++) {
    sg_npz *z = whole ? sg_npz_open(path, err) : sg_npz_open_rows(path, &name, 1, 100, 230, err);
    if (!z) return -1;
    const sg_array *a = sg_npz_get(z, name);
    *h = hash_bytes(*h, a->data, (size_t)a->numel * sizeof(double));
    sg_npz_close(z);
  }
  return 0;
}

static int load_dataset(const char *path, uint64_t *h, sg_io_error *err) {
  assoc_dataset ds;
  if (assoc_dataset_load(path, &ds, err)) return -1;
  size_t links = (size_t)(ds.S * ds.M * ds.K);
  *h = hash_bytes(HASH_SEED, ds.H_re, links * (size_t)ds.N * sizeof(double));
  *h = hash_bytes(*h, ds.n_paths, links);
  assoc_dataset_free(&ds);
  return 0;
}

/* The GNN checkpoint as a resumed run reads it (model, Adam, mu, rng) and
 * as evaluation does (the model alone). */
static const assoc_dataset *ckpt_data;
static int load_gnn_checkpoint(const char *path, uint64_t *h, sg_io_error *err) {
  assoc_trainer *t = assoc_trainer_resume(path, NULL, ckpt_data, NULL, err);
  if (!t) return -1;
  *h = hash_params(assoc_trainer_model(t)->params);
  assoc_trainer_free(t);
  double scale;
  assoc_gnn *m = assoc_checkpoint_load_model(path, &scale, NULL, err);
  if (!m) return -1;
  *h = hash_params(m->params) ^ *h * 3;
  assoc_gnn_free(m);
  return 0;
}

static int load_bfgnn_checkpoint(const char *path, uint64_t *h, sg_io_error *err) {
  assoc_bfgnn *m = assoc_bfgnn_checkpoint_read(path, NULL, err);
  if (!m) return -1;
  *h = hash_params(m->trunk.params);
  assoc_bfgnn_free(m);
  return 0;
}

static int load_jointgnn_checkpoint(const char *path, uint64_t *h, sg_io_error *err) {
  double scale;
  assoc_jointgnn *m = assoc_jointgnn_checkpoint_read(path, &scale, err);
  if (!m) return -1;
  *h = hash_params(m->trunk.params);
  assoc_jointgnn_free(m);
  return 0;
}

/* Every allocation of load(path) made to fail in turn. */
static void walk_loader(const char *what, loader_fn load, const char *path) {
  fail_alloc fa;
  sg_io_error err = {{0}};
  uint64_t want = 0, got = 0;
  fail_alloc_capture_errors();
  fail_alloc_install(&fa, 0);
  ck_assert_msg(load(path, &want, &err) == 0, "%s: %s", what, err.msg);
  int64_t total = fa.calls, failures = 0;
  ck_assert_int_eq(fa.live, 0);
  ck_assert_int_gt(total, 0);
  for (int64_t n = 1; n <= total; n++) {
    fail_alloc_install(&fa, n);
    fail_alloc_capture_errors();
    err = (sg_io_error){{0}};
    if (load(path, &got, &err) != 0) {
      failures++;
      ck_assert_msg(strstr(err.msg, "out of memory") != NULL && strstr(err.msg, path) != NULL,
                    "%s, allocation %lld failed: the message is \"%s\"", what, (long long)n,
                    err.msg);
    } else {
      ck_assert_msg(got == want, "%s: allocation %lld failed and the load read other values", what,
                    (long long)n);
    }
    ck_assert_msg(fa.live == 0, "%s, allocation %lld failed: %lld blocks leaked", what,
                  (long long)n, (long long)fa.live);
    fail_alloc_install(&fa, 0);
    ck_assert_msg(load(path, &got, &err) == 0 && got == want,
                  "%s: after allocation %lld failed, a load reads other values (%s)", what,
                  (long long)n, err.msg);
    sg_set_allocator(NULL);
  }
  ck_assert_msg(failures > 0, "%s: no failed allocation made the load fail", what);
  sg_set_error_handler(NULL, NULL);
}

START_TEST(alloc_fail_loaders) {
  char npy[128], npz[128], rows[128], data[128], ck[128], bf[128], jg[128];
  tmp_path(npy, sizeof npy, "a.npy"), tmp_path(npz, sizeof npz, "a.npz");
  tmp_path(rows, sizeof rows, "rows.npz");
  tmp_path(data, sizeof data, "data.npz"), tmp_path(ck, sizeof ck, "ck.npz");
  tmp_path(bf, sizeof bf, "bf.npz"), tmp_path(jg, sizeof jg, "jg.npz");
  sg_io_error err = {{0}};
  sg_rng r;
  sg_rng_seed(&r, 1);
  sg_tensor *t = sg_rand_normal(NULL, &r, SG_F32, 2, (int64_t[]){3, 5}, 0, 1);
  ck_assert_msg(sg_npy_save(npy, t, &err) == 0, "%s", err.msg);
  sg_npz_writer *w = sg_npz_writer_open(npz, true, &err);
  ck_assert_ptr_nonnull(w);
  ck_assert(!sg_npz_add_tensor(w, "x", t, &err) && !sg_npz_add_scalar_f64(w, "s", 2.5, &err));
  ck_assert_msg(sg_npz_writer_close(w, &err) == 0, "%s", err.msg);
  sg_free(t);
  t = sg_rand_normal(NULL, &r, SG_F64, 2, (int64_t[]){300, 1000}, 0, 1); /* 2.4 MB */
  w = sg_npz_writer_open(rows, true, &err);
  ck_assert(w && !sg_npz_add_tensor(w, "x", t, &err) && !sg_npz_writer_close(w, &err));
  sg_free(t);
  assoc_dataset ds = make_data(16, 6);
  ck_assert_msg(assoc_dataset_save(&ds, data, &err) == 0, "%s", err.msg);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_SKGS);
  c.batch = 8, c.batches_per_epoch = 1, c.epochs = 1;
  assoc_train_io io = {.out = ck};
  ck_assert_msg(assoc_train_run(&c, &ds, NULL, &io, NULL, &err) == 0, "%s", err.msg);
  assoc_bfgnn_config bc = assoc_bfgnn_config_paper();
  bc.d = 8, bc.h = 16, bc.n_antennas = 2;
  assoc_bfgnn *bm = assoc_bfgnn_new(&bc, 2);
  ck_assert_msg(bm && assoc_bfgnn_checkpoint_write(bf, bm, 0.5, &err) == 0, "%s", err.msg);
  assoc_bfgnn_free(bm);
  assoc_jointgnn_config jc = assoc_jointgnn_config_paper();
  jc.d = 8, jc.h = 16, jc.n_antennas = 2;
  assoc_jointgnn *jm = assoc_jointgnn_new(&jc, 3);
  ck_assert_msg(jm && assoc_jointgnn_checkpoint_write(jg, jm, 0.5, &err) == 0, "%s", err.msg);
  assoc_jointgnn_free(jm);

  walk_loader(".npy", load_npy, npy);
  walk_loader(".npz", load_npz, npz);
  walk_loader(".npz rows, chunk index", load_npz_rows, rows);
  walk_loader("data set", load_dataset, data);
  ckpt_data = &ds;
  walk_loader("GNN checkpoint", load_gnn_checkpoint, ck);
  walk_loader("BFGNN checkpoint", load_bfgnn_checkpoint, bf);
  walk_loader("JointGNN checkpoint", load_jointgnn_checkpoint, jg);
  assoc_dataset_free(&ds);
  remove(npy), remove(npz), remove(rows), remove(data), remove(ck), remove(bf), remove(jg);
}
END_TEST

Suite *suite_alloc_fail(void) {
  const sg_test_case cases[] = {
      {"alloc_fail_train_step", alloc_fail_train_step},
      {"alloc_fail_trainer", alloc_fail_trainer},
      {"alloc_fail_loaders", alloc_fail_loaders},
  };
  return sg_test_suite("alloc_fail", cases, sizeof cases / sizeof cases[0], 600);
}
