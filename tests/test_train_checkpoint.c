/* Checkpoints of the association GNN trainer (models/train/assoc_train.h): refusal of damaged and
 * invalid checkpoints, loading a model, and the balanced-Sinkhorn checkpoint format. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sg_test.h"
#include "assoc_train.h"
#include "train_helpers.h"

static unsigned char *read_bytes(const char *path, long *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc((size_t)*size + 1);
  ck_assert_int_eq(fread(buf, 1, (size_t)*size, f), (size_t)*size);
  fclose(f);
  return buf;
}

static void write_bytes(const char *path, const unsigned char *buf, long size) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(fwrite(buf, 1, (size_t)size, f), (size_t)size);
  fclose(f);
}

/* ---- damaged checkpoints -------------------------------------------------------- */

/* Resuming from a damaged checkpoint fails with a message naming it, and
 * neither the existing output checkpoint nor the log is touched. */
static void assert_resume_refused(const char *bad, const assoc_dataset *train, const char *out,
                                  const char *log, const char *what) {
  long before_size, after_size;
  unsigned char *before = read_bytes(out, &before_size);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_GS);
  c.epochs = 3;
  assoc_train_io io = {.out = out, .log = log, .resume = bad};
  sg_io_error err = {{0}};
  ck_assert_msg(assoc_train_run(&c, train, NULL, &io, NULL, &err) == -1, "%s was accepted", what);
  ck_assert_msg(strstr(err.msg, bad) != NULL, "%s: message '%s' does not name the file", what,
                err.msg);
  unsigned char *after = read_bytes(out, &after_size);
  ck_assert_int_eq(before_size, after_size);
  ck_assert_msg(memcmp(before, after, (size_t)before_size) == 0, "%s: output overwritten", what);
  ck_assert_msg(access(log, F_OK) != 0, "%s: the log was created", what);
  double scale;
  ck_assert_ptr_null(assoc_checkpoint_load_model(bad, &scale, NULL, &err));
  free(before), free(after);
}

START_TEST(train_checkpoint_damaged_refused) {
  assoc_dataset train = make_data(64, 31);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_GS);
  c.batches_per_epoch = 1;
  char ck[128], out[128], bad[128], log[128];
  tmp_path(ck, sizeof ck, "good.npz");
  tmp_path(out, sizeof out, "out.npz");
  tmp_path(bad, sizeof bad, "bad.npz");
  tmp_path(log, sizeof log, "log.csv");
  sg_io_error err = {{0}};
  assoc_trainer *t = assoc_trainer_new(&c, &train, NULL, &err);
  run_epochs(t, 1, NULL);
  ck_assert_msg(assoc_trainer_save(t, ck, &err) == 0, "%s", err.msg);
  run_epochs(t, 1, NULL);
  ck_assert_msg(assoc_trainer_save(t, out, &err) == 0, "%s", err.msg); /* the existing output */
  assoc_trainer_free(t);
  long size;
  unsigned char *bytes = read_bytes(ck, &size);
  ck_assert_int_gt(size, 1000);
  /* one flipped byte in the middle (parameter data), and near the end (directory) */
  long spots[2] = {size / 2, size - 30};
  for (int i = 0; i < 2; i++) {
    bytes[spots[i]] ^= 0x5a;
    write_bytes(bad, bytes, size);
    bytes[spots[i]] ^= 0x5a;
    assert_resume_refused(bad, &train, out, log, "a flipped byte");
  }
  write_bytes(bad, bytes, size / 2);
  assert_resume_refused(bad, &train, out, log, "a truncated file");
  write_bytes(bad, bytes, 0);
  assert_resume_refused(bad, &train, out, log, "an empty file");
  remove(bad);
  assert_resume_refused(bad, &train, out, log, "a missing file");
  /* the intact one still resumes */
  assoc_trainer *ok = assoc_trainer_resume(ck, NULL, &train, NULL, &err);
  ck_assert_msg(ok, "%s", err.msg);
  assoc_trainer_free(ok);
  free(bytes);
  remove(ck), remove(out);
  assoc_dataset_free(&train);
}
END_TEST

/* Rewrites checkpoint src into dst member by member, applying one change. */
typedef enum mutation { DROP, TO_F64, NAN_VALUE, RESHAPE, EXTRA, BAD_VALUE } mutation;

static void rewrite(const char *src, const char *dst, const char *target, mutation how) {
  sg_io_error err = {{0}};
  sg_npz *z = sg_npz_open(src, &err);
  ck_assert_msg(z, "%s", err.msg);
  sg_npz_writer *w = sg_npz_writer_open(dst, false, &err);
  for (int i = 0; i < sg_npz_count(z); i++) {
    const char *name = sg_npz_name(z, i);
    sg_array a = *sg_npz_get(z, name);
    if (strcmp(name, target) != 0) {
      ck_assert(sg_npz_add_array(w, name, &a, &err) == 0);
      continue;
    }
    double *wide = NULL;
    switch (how) {
    case DROP:
      continue;
    case TO_F64:
      wide = malloc((size_t)a.numel * sizeof *wide);
      for (int64_t j = 0; j < a.numel; j++) wide[j] = ((const float *)a.data)[j];
      a.type = SG_NPY_F64, a.data = wide;
      break;
    case NAN_VALUE:
      ((float *)a.data)[0] = NAN;
      break;
    case RESHAPE:
      a.ndim = 1, a.shape[0] = a.numel;
      break;
    case EXTRA:
      ck_assert(sg_npz_add_array(w, "param.extra", &a, &err) == 0);
      break;
    case BAD_VALUE: /* an int64 scalar set to -5 */
      *(int64_t *)a.data = -5;
      break;
    }
    ck_assert_msg(sg_npz_add_array(w, name, &a, &err) == 0, "%s", err.msg);
    free(wide);
  }
  ck_assert_msg(sg_npz_writer_close(w, &err) == 0, "%s", err.msg);
  sg_npz_close(z);
}

/* Well-formed archives with a wrong member are refused with a message
 * naming the member. */
START_TEST(train_checkpoint_validation) {
  assoc_dataset train = make_data(64, 32);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_SKGS);
  c.batches_per_epoch = 1;
  char ck[128], bad[128];
  tmp_path(ck, sizeof ck, "valid.npz");
  tmp_path(bad, sizeof bad, "mutated.npz");
  sg_io_error err = {{0}};
  assoc_trainer *t = assoc_trainer_new(&c, &train, NULL, &err);
  run_epochs(t, 1, NULL);
  ck_assert_msg(assoc_trainer_save(t, ck, &err) == 0, "%s", err.msg);
  assoc_trainer_free(t);
  const struct {
    const char *member;
    mutation how;
    const char *expect; /* in the message */
  } cases[] = {
      {"param.mlp_e.0.weight", DROP, "mlp_e.0.weight"},
      {"param.layers.1.f5.2.bias", TO_F64, "layers.1.f5.2.bias"},
      {"param.mlp_out.4.weight", NAN_VALUE, "mlp_out.4.weight"},
      {"param.mlp_q.0.weight", RESHAPE, "mlp_q.0.weight"},
      {"adam.v.mlp_p.2.weight", RESHAPE, "adam.v.mlp_p.2.weight"},
      {"mu", DROP, "mu"},
      {"rng", DROP, "rng"},
      {"mlp_p.0.bias", EXTRA, "unknown member"},
      {"config.d", BAD_VALUE, "config.d"},
      {"epoch", BAD_VALUE, "epoch"},
      {"adam.steps", DROP, "adam.steps"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *target = cases[i].how == EXTRA ? "param.mlp_p.0.bias" : cases[i].member;
    rewrite(ck, bad, target, cases[i].how);
    assoc_trainer *r = assoc_trainer_resume(bad, NULL, &train, NULL, &err);
    ck_assert_msg(!r, "mutation %zu of %s accepted", i, cases[i].member);
    ck_assert_msg(strstr(err.msg, cases[i].expect), "message '%s' lacks '%s'", err.msg,
                  cases[i].expect);
  }
  /* the same archive rewritten unchanged is accepted */
  rewrite(ck, bad, "none", DROP);
  assoc_trainer *r = assoc_trainer_resume(bad, NULL, &train, NULL, &err);
  ck_assert_msg(r, "%s", err.msg);
  assoc_trainer_free(r);
  /* a different data set is refused */
  assoc_dataset other = make_data(64, 33);
  ck_assert_ptr_null(assoc_trainer_resume(ck, NULL, &other, NULL, &err));
  ck_assert_ptr_nonnull(strstr(err.msg, "data set"));
  assoc_dataset_free(&other);
  remove(ck), remove(bad);
  assoc_dataset_free(&train);
}
END_TEST

/* The model of a checkpoint loads for evaluation with its feature scale and
 * configuration, bit for bit. */
START_TEST(train_checkpoint_load_model) {
  assoc_dataset train = make_data(64, 41), test = make_data(32, 42);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_ATTSKGS);
  c.batches_per_epoch = 2, c.feature_scale = 0;
  char ck[128];
  tmp_path(ck, sizeof ck, "model.npz");
  sg_io_error err = {{0}};
  assoc_trainer *t = assoc_trainer_new(&c, &train, NULL, &err);
  run_epochs(t, 1, NULL);
  ck_assert(assoc_trainer_save(t, ck, &err) == 0);
  double scale = 0;
  assoc_train_config cfg;
  assoc_gnn *m = assoc_checkpoint_load_model(ck, &scale, &cfg, &err);
  ck_assert_msg(m, "%s", err.msg);
  ck_assert(scale == assoc_feature_scale(&train));
  ck_assert(scale == assoc_trainer_feature_scale(t));
  ck_assert_int_eq(cfg.variant, ASSOC_GNN_ATTSKGS);
  ck_assert_int_eq(cfg.d, 16);
  ck_assert_int_eq(m->cfg.fe, 4);
  ck_assert(m->cfg.capacity == 2.0);
  const sg_params *a = assoc_trainer_model(t)->params;
  for (int i = 0; i < sg_params_count(a); i++)
    ck_assert_mem_eq(sg_params_at(a, i)->data, sg_params_at(m->params, i)->data,
                     (size_t)sg_params_at(a, i)->numel * sizeof(float));
  assoc_metrics x, y;
  ck_assert(assoc_gnn_evaluate(assoc_trainer_model(t), &test, scale, 16, 0, &x, &err) == 0);
  ck_assert(assoc_gnn_evaluate(m, &test, scale, 32, 0, &y, &err) == 0);
  ck_assert(x.mean_rate == y.mean_rate && x.mean_lb_rate == y.mean_lb_rate);
  assoc_gnn_free(m);
  assoc_trainer_free(t);
  remove(ck);
  assoc_dataset_free(&train), assoc_dataset_free(&test);
}
END_TEST

/* Copies checkpoint src to dst as a version-2 file: without
 * config.sk_balanced, which version 3 added. */
/* src rewritten as a checkpoint of an older version: without the members
 * added since (config.sk_balanced in 3, config.features and config.loss in
 * 4, config.sampler in 5). */
static void rewrite_as_version(const char *src, const char *dst, int version) {
  sg_io_error err;
  sg_npz *z = sg_npz_open(src, &err);
  ck_assert_msg(z, "%s", err.msg);
  sg_npz_writer *w = sg_npz_writer_open(dst, false, &err);
  ck_assert_msg(w, "%s", err.msg);
  for (int i = 0; i < sg_npz_count(z); i++) {
    const char *name = sg_npz_name(z, i);
    if ((version < 3 && !strcmp(name, "config.sk_balanced")) ||
        (version < 4 && (!strcmp(name, "config.features") || !strcmp(name, "config.loss"))) ||
        (version < 5 && !strcmp(name, "config.sampler")))
      continue;
    if (!strcmp(name, "checkpoint_version"))
      ck_assert_int_eq(sg_npz_add_scalar_i64(w, name, version, &err), 0);
    else
      ck_assert_int_eq(sg_npz_add_array(w, name, sg_npz_get(z, name), &err), 0);
  }
  ck_assert_int_eq(sg_npz_writer_close(w, &err), 0);
  sg_npz_close(z);
}

/* The balanced-Sinkhorn setting (and the sampler) is kept in the
 * checkpoint; a version-2 checkpoint (before the setting existed) reads as
 * the capacity Sinkhorn, one before version 5 with the shuffle sampler. */
START_TEST(train_checkpoint_sk_balanced) {
  assoc_dataset train = make_data(64, 43);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_SKGS);
  c.batches_per_epoch = 1, c.sk_balanced = 1, c.sampler = ASSOC_SAMPLER_STRATA;
  char ck[128], v2[128];
  tmp_path(ck, sizeof ck, "balanced.npz");
  tmp_path(v2, sizeof v2, "balanced_v2.npz");
  sg_io_error err = {{0}};
  assoc_trainer *t = assoc_trainer_new(&c, &train, NULL, &err);
  ck_assert(assoc_trainer_model(t)->cfg.sk_balanced);
  run_epochs(t, 1, NULL);
  ck_assert(assoc_trainer_save(t, ck, &err) == 0);
  assoc_train_config cfg;
  assoc_gnn *m = assoc_checkpoint_load_model(ck, NULL, &cfg, &err);
  ck_assert_msg(m, "%s", err.msg);
  ck_assert(cfg.sk_balanced == 1 && m->cfg.sk_balanced && cfg.sampler == ASSOC_SAMPLER_STRATA);
  assoc_gnn_free(m);
  rewrite_as_version(ck, v2, 2);
  m = assoc_checkpoint_load_model(v2, NULL, &cfg, &err);
  ck_assert_msg(m, "%s", err.msg);
  ck_assert(cfg.sk_balanced == 0 && !m->cfg.sk_balanced);
  assoc_gnn_free(m);
  rewrite_as_version(ck, v2, 3); /* keeps the setting; reads as channel features, rate loss */
  m = assoc_checkpoint_load_model(v2, NULL, &cfg, &err);
  ck_assert_msg(m, "%s", err.msg);
  ck_assert(cfg.sk_balanced == 1 && cfg.features == ASSOC_FEATURES_CHANNEL);
  ck_assert(cfg.loss == ASSOC_LOSS_RATE && cfg.sampler == ASSOC_SAMPLER_SHUFFLE);
  assoc_gnn_free(m);
  assoc_trainer_free(t);
  remove(ck), remove(v2);
  assoc_dataset_free(&train);
}
END_TEST

Suite *suite_train_checkpoint(void) {
  const sg_test_case cases[] = {
      {"train_checkpoint_damaged_refused", train_checkpoint_damaged_refused},
      {"train_checkpoint_validation", train_checkpoint_validation},
      {"train_checkpoint_load_model", train_checkpoint_load_model},
      {"train_checkpoint_sk_balanced", train_checkpoint_sk_balanced},
  };
  return sg_test_suite("train_checkpoint", cases, sizeof cases / sizeof cases[0], 120);
}
