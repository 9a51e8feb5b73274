/* BFGNN on data sets (models/train/beam_checkpoint.c, bfgnn_run.c): the
 * checkpoint round trip (bitwise-identical beams), refusal of damaged and
 * inconsistent checkpoints, the training association mix, training with
 * batches per epoch and a progress callback, and the units of the beams of
 * assoc_bfgnn_beams_run (their rates against the model's own). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assoc_beam.h"
#include "assoc_train.h"
#include "sg_test.h"
#include "train_helpers.h"

static assoc_bfgnn *tiny_model(uint64_t seed) {
  assoc_bfgnn_config c = assoc_bfgnn_config_paper();
  c.d = 8, c.h = 16, c.n_antennas = 2;
  assoc_bfgnn *m = assoc_bfgnn_new(&c, seed);
  ck_assert_ptr_nonnull(m);
  return m;
}

typedef struct beams {
  double *V_re, *V_im, *rate;
} beams;

/* UE k of sample s served by BS (s K + k) mod M: every BS serves someone. */
static int *round_robin_assoc(const assoc_dataset *ds) {
  int *assoc = malloc(sizeof(int) * (size_t)(ds->S * ds->K));
  ck_assert_ptr_nonnull(assoc);
  for (int64_t i = 0; i < ds->S * ds->K; i++) assoc[i] = (int)(i % ds->M);
  return assoc;
}

static beams run_beams(const assoc_bfgnn *m, double scale, const assoc_dataset *ds,
                       const int *assoc) {
  size_t n = (size_t)(ds->S * ds->M * ds->K * ds->N);
  beams b = {malloc(n * sizeof(double)), malloc(n * sizeof(double)),
             malloc((size_t)ds->S * sizeof(double))};
  sg_io_error err = {{0}};
  double us;
  ck_assert_msg(assoc_bfgnn_beams_run(m, scale, ds, assoc, 7, b.V_re, b.V_im, b.rate, &us, &err) ==
                    0,
                "%s", err.msg);
  ck_assert(us > 0);
  return b;
}

static void beams_free(beams *b) {
  free(b->V_re), free(b->V_im), free(b->rate);
}

START_TEST(bfgnn_checkpoint_round_trip) {
  assoc_dataset ds = make_data(20, 41);
  sg_io_error err = {{0}};
  assoc_bfgnn_mix mix;
  ck_assert_msg(assoc_bfgnn_training_mix(&ds, 3, 1e6, &mix, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(mix.n, 3);
  ck_assert(!mix.es_skipped);
  ck_assert_str_eq(mix.names[2], "ES");
  assoc_bfgnn *m = tiny_model(9);
  char path[128];
  tmp_path(path, sizeof path, "bfgnn.npz");
  double scale = assoc_feature_scale(&ds), scale2 = 0;
  ck_assert_msg(assoc_bfgnn_checkpoint_write(path, m, scale, &err) == 0, "%s", err.msg);
  assoc_bfgnn *m2 = assoc_bfgnn_checkpoint_read(path, &scale2, &err);
  ck_assert_msg(m2, "%s", err.msg);
  ck_assert(scale2 == scale);
  ck_assert(m2->cfg.d == 8 && m2->cfg.h == 16 && m2->cfg.n_antennas == 2 &&
            m2->cfg.dtype == SG_F32);
  beams a = run_beams(m, scale, &ds, mix.assocs[2]), b = run_beams(m2, scale2, &ds, mix.assocs[2]);
  size_t n = (size_t)(ds.S * ds.M * ds.K * ds.N);
  ck_assert(memcmp(a.V_re, b.V_re, n * sizeof(double)) == 0);
  ck_assert(memcmp(a.V_im, b.V_im, n * sizeof(double)) == 0);
  double mean = 0;
  for (int64_t s = 0; s < ds.S; s++) {
    assoc_beam_problem p = assoc_beam_problem_at(&ds, s, mix.assocs[2] + s * ds.K);
    int64_t off = s * ds.M * ds.K * ds.N;
    double r = assoc_rate_beams(&p, a.V_re + off, a.V_im + off, NULL);
    ck_assert(fabs(r - a.rate[s]) <= 1e-12 * fabs(r));
    mean += a.rate[s] / (double)ds.S;
  }
  /* the same units as the model's own (float32) rate */
  double own = assoc_bfgnn_mean_rate(m, &ds, mix.assocs[2], 0, ds.S, scale);
  ck_assert_msg(fabs(own - mean) <= 1e-4 * mean, "%g vs %g", own, mean);
  beams_free(&a), beams_free(&b);
  assoc_bfgnn_free(m), assoc_bfgnn_free(m2);
  assoc_bfgnn_mix_free(&mix);
  remove(path);
  assoc_dataset_free(&ds);
}
END_TEST

/* Full-power beams of a float32 model, written in float64: every serving
 * BS radiates P_t to float32 round-off and never more than P_t. */
START_TEST(bfgnn_beams_within_budget) {
  assoc_dataset ds = make_data(20, 45);
  int *assoc = round_robin_assoc(&ds);
  assoc_bfgnn_config c = assoc_bfgnn_config_paper();
  c.d = 8, c.h = 16, c.n_antennas = ds.N, c.norm = ASSOC_BEAM_FULL_POWER;
  assoc_bfgnn *m = assoc_bfgnn_new(&c, 12);
  ck_assert_ptr_nonnull(m);
  beams a = run_beams(m, 0.5, &ds, assoc);
  int64_t KN = ds.K * ds.N;
  for (int64_t s = 0; s < ds.S; s++) {
    double pt = assoc_beam_problem_at(&ds, s, assoc + s * ds.K).pt_w;
    for (int64_t bs = 0; bs < ds.M; bs++) {
      double e = 0;
      for (int64_t i = (s * ds.M + bs) * KN; i < (s * ds.M + bs + 1) * KN; i++)
        e += a.V_re[i] * a.V_re[i] + a.V_im[i] * a.V_im[i];
      ck_assert_msg(e <= pt && e >= pt * (1 - 1e-6), "sample %lld BS %lld: %.17g W, P_t %.17g W",
                    (long long)s, (long long)bs, e, pt);
    }
  }
  beams_free(&a);
  assoc_bfgnn_free(m);
  free(assoc);
  assoc_dataset_free(&ds);
}
END_TEST

/* Rewrites src into dst dropping member target, widening it to float64,
 * setting its first value to NaN, adding a copy named "param.extra", or
 * adding 1 to an int64 scalar. */
typedef enum mutation { DROP, TO_F64, NAN_VALUE, EXTRA, BUMP } mutation;

static void rewrite(const char *src, const char *dst, const char *target, mutation how) {
  sg_io_error err = {{0}};
  sg_npz *z = sg_npz_open(src, &err);
  ck_assert_msg(z, "%s", err.msg);
  sg_npz_writer *w = sg_npz_writer_open(dst, false, &err);
  double *wide = NULL;
  int64_t bumped = 0;
  for (int i = 0; i < sg_npz_count(z); i++) {
    const char *name = sg_npz_name(z, i);
    sg_array a = *sg_npz_get(z, name);
    if (!strcmp(name, target) && how == DROP) continue;
    if (!strcmp(name, target) && how == TO_F64) {
      wide = malloc((size_t)a.numel * sizeof *wide);
      for (int64_t j = 0; j < a.numel; j++) wide[j] = ((const float *)a.data)[j];
      a.type = SG_NPY_F64, a.data = wide;
    }
    if (!strcmp(name, target) && how == NAN_VALUE) ((float *)a.data)[0] = NAN;
    if (!strcmp(name, target) && how == BUMP) {
      memcpy(&bumped, a.data, sizeof bumped);
      bumped++, a.data = &bumped;
    }
    if (!strcmp(name, target) && how == EXTRA)
      ck_assert(sg_npz_add_array(w, "param.extra", &a, &err) == 0);
    ck_assert_msg(sg_npz_add_array(w, name, &a, &err) == 0, "%s", err.msg);
  }
  ck_assert_msg(sg_npz_writer_close(w, &err) == 0, "%s", err.msg);
  free(wide);
  sg_npz_close(z);
}

/* The checkpoints of both beam models go through one reader. */
typedef enum beam_model { BFGNN, JOINTGNN } beam_model;

static void assert_refused_as(beam_model k, const char *path, const char *what,
                              const char *needle) {
  sg_io_error err = {{0}};
  double scale = 0;
  if (k == BFGNN)
    ck_assert_msg(!assoc_bfgnn_checkpoint_read(path, &scale, &err), "%s was accepted", what);
  else
    ck_assert_msg(!assoc_jointgnn_checkpoint_read(path, &scale, &err), "%s was accepted", what);
  ck_assert_msg(strstr(err.msg, needle), "%s: message '%s' lacks '%s'", what, err.msg, needle);
}

static void write_bytes(const char *path, const unsigned char *buf, long size) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(fwrite(buf, 1, (size_t)size, f), (size_t)size);
  fclose(f);
}

/* Writes a tiny model of kind k to path, with a NaN in its first
 * parameter when nan_weight (as a diverged run leaves it); the writer's
 * status. */
static int write_tiny_as(beam_model k, const char *path, bool nan_weight, sg_io_error *err) {
  int rc;
  if (k == BFGNN) {
    assoc_bfgnn *m = tiny_model(2);
    if (nan_weight) sg_set(sg_params_at(m->trunk.params, 0), 3, NAN);
    rc = assoc_bfgnn_checkpoint_write(path, m, 0.5, err);
    assoc_bfgnn_free(m);
    return rc;
  }
  assoc_jointgnn_config c = assoc_jointgnn_config_paper();
  c.d = 8, c.h = 16, c.n_antennas = 2;
  assoc_jointgnn *m = assoc_jointgnn_new(&c, 2);
  ck_assert_ptr_nonnull(m);
  if (nan_weight) sg_set(sg_params_at(m->trunk.params, 0), 3, NAN);
  rc = assoc_jointgnn_checkpoint_write(path, m, 0.5, err);
  assoc_jointgnn_free(m);
  return rc;
}

/* A tiny model of kind k written to path. */
static void write_tiny(beam_model k, const char *path) {
  sg_io_error err = {{0}};
  ck_assert_msg(write_tiny_as(k, path, false, &err) == 0, "%s", err.msg);
}

/* The bytes of the file at path (malloc'd) and their count. */
static unsigned char *read_all(const char *path, long *size) {
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  *size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *bytes = malloc((size_t)*size);
  ck_assert_int_eq(fread(bytes, 1, (size_t)*size, f), (size_t)*size);
  fclose(f);
  return bytes;
}

/* A model with a NaN weight is not written: the message names the
 * parameter and the element, and the file keeps the last good checkpoint. */
START_TEST(nan_weights_not_written) {
  for (beam_model k = BFGNN; k <= JOINTGNN; k++) {
    char ck[128];
    tmp_path(ck, sizeof ck, "nan_weights.npz");
    write_tiny(k, ck);
    long size0, size1;
    unsigned char *before = read_all(ck, &size0);
    sg_io_error err = {{0}};
    ck_assert_int_eq(write_tiny_as(k, ck, true, &err), -1);
    ck_assert_msg(strstr(err.msg, "not written: parameter") && strstr(err.msg, "at element 3"),
                  "%s", err.msg);
    unsigned char *after = read_all(ck, &size1);
    ck_assert(size0 == size1 && !memcmp(before, after, (size_t)size0));
    free(before), free(after);
    remove(ck);
  }
}
END_TEST

#define assert_refused(path, what, needle) assert_refused_as(k, path, what, needle)

/* Flipped bytes, truncation, a missing file, missing, mistyped, non-finite
 * and extra members, each named in the message; the intact file loads. */
static void damaged_refused(beam_model k) {
  char ck[128], bad[128];
  tmp_path(ck, sizeof ck, "bf_good.npz");
  tmp_path(bad, sizeof bad, "bf_bad.npz");
  sg_io_error err = {{0}};
  write_tiny(k, ck);
  long size;
  unsigned char *bytes = read_all(ck, &size);
  bytes[size / 2] ^= 0x5a;
  write_bytes(bad, bytes, size);
  assert_refused(bad, "a flipped byte", bad);
  bytes[size / 2] ^= 0x5a;
  write_bytes(bad, bytes, size / 2);
  assert_refused(bad, "a truncated file", bad);
  remove(bad);
  assert_refused(bad, "a missing file", bad);
  rewrite(ck, bad, "feature_scale", DROP);
  assert_refused(bad, "a missing member", "'feature_scale' is missing");
  sg_npz *z = sg_npz_open(ck, &err);
  const char *param = NULL;
  for (int i = 0; i < sg_npz_count(z) && !param; i++)
    if (!strncmp(sg_npz_name(z, i), "param.mlp_v", 11)) param = strdup(sg_npz_name(z, i));
  sg_npz_close(z);
  ck_assert_ptr_nonnull(param);
  rewrite(ck, bad, param, DROP);
  assert_refused(bad, "a missing parameter", "is missing");
  rewrite(ck, bad, param, TO_F64);
  assert_refused(bad, "a float64 parameter", "expected float32");
  rewrite(ck, bad, param, NAN_VALUE);
  assert_refused(bad, "a NaN parameter", "not finite");
  rewrite(ck, bad, param, EXTRA);
  assert_refused(bad, "an extra member", "unknown member");
  rewrite(ck, bad, k == BFGNN ? "bfgnn_checkpoint_version" : "jointgnn_checkpoint_version", BUMP);
  assert_refused(bad, "a later version",
                 k == BFGNN ? "version 3; this build reads versions 1 to 2"
                            : "version 2; this build reads version 1");
  /* the intact one still loads */
  if (k == BFGNN) {
    assoc_bfgnn *ok = assoc_bfgnn_checkpoint_read(ck, NULL, &err);
    ck_assert_msg(ok, "%s", err.msg);
    assoc_bfgnn_free(ok);
  } else {
    assoc_jointgnn *ok = assoc_jointgnn_checkpoint_read(ck, NULL, &err);
    ck_assert_msg(ok, "%s", err.msg);
    assoc_jointgnn_free(ok);
  }
  free((void *)param), free(bytes);
  remove(ck), remove(bad);
}

START_TEST(bfgnn_checkpoint_damaged_refused) {
  damaged_refused(BFGNN);
}
END_TEST

START_TEST(jointgnn_checkpoint_damaged_refused) {
  damaged_refused(JOINTGNN);
  /* each model refuses the other's checkpoint */
  char bf[128], jg[128];
  tmp_path(bf, sizeof bf, "kind_bf.npz");
  tmp_path(jg, sizeof jg, "kind_jg.npz");
  write_tiny(BFGNN, bf), write_tiny(JOINTGNN, jg);
  assert_refused_as(JOINTGNN, bf, "a BFGNN checkpoint", "not a JointGNN checkpoint");
  assert_refused_as(JOINTGNN, bf, "a BFGNN checkpoint", "the other beam model");
  assert_refused_as(BFGNN, jg, "a JointGNN checkpoint", "not a BFGNN checkpoint");
  ck_assert_str_eq(assoc_beam_checkpoint_model(bf), "BFGNN");
  ck_assert_str_eq(assoc_beam_checkpoint_model(jg), "JointGNN");
  ck_assert_ptr_null(assoc_beam_checkpoint_model("no-such-file.npz"));
  /* a run's state is checked by both readers */
  assoc_dataset ds = make_data(8, 44);
  assoc_jointgnn_config c = assoc_jointgnn_config_paper();
  c.d = 8, c.h = 16, c.n_antennas = 2;
  assoc_jointgnn *m = assoc_jointgnn_new(&c, 2);
  assoc_jointgnn_train_opts o = assoc_jointgnn_train_defaults(0.5);
  o.base.batch = 4;
  assoc_beam_train_state st;
  ck_assert_int_eq(assoc_jointgnn_train_start(m, &ds, &o, &st), 0);
  sg_io_error err = {{0}};
  ck_assert_msg(assoc_jointgnn_checkpoint_write_run(jg, m, &o, &st, &err) == 0, "%s", err.msg);
  assoc_beam_train_state_free(&st);
  rewrite(jg, bf, "run.cursor", DROP);
  assert_refused_as(JOINTGNN, bf, "a run without its cursor", "'run.cursor' is missing");
  rewrite(jg, bf, "run.epoch", EXTRA);
  assert_refused_as(JOINTGNN, bf, "a run with an extra member", "unknown member");
  assoc_jointgnn_train_opts o2;
  ck_assert_ptr_null(assoc_jointgnn_checkpoint_read_run(bf, &o2, &st, &err));
  assoc_jointgnn *ok = assoc_jointgnn_checkpoint_read_run(jg, &o2, &st, &err);
  ck_assert_msg(ok, "%s", err.msg);
  ck_assert(st.epoch == 0 && st.S == 8 && o2.base.batch == 4 && !o2.penalty.mu);
  assoc_beam_train_state_free(&st);
  assoc_jointgnn_free(ok), assoc_jointgnn_free(m);
  assoc_dataset_free(&ds);
  remove(bf), remove(jg);
}
END_TEST

/* Copies src to dst with the int64 scalar `name` set to value, and without
 * member `drop` (NULL: none). */
static void rewrite_scalar(const char *src, const char *dst, const char *name, int64_t value,
                           const char *drop) {
  sg_io_error err = {{0}};
  sg_npz *z = sg_npz_open(src, &err);
  ck_assert_msg(z, "%s", err.msg);
  sg_npz_writer *w = sg_npz_writer_open(dst, false, &err);
  for (int i = 0; i < sg_npz_count(z); i++) {
    const char *member = sg_npz_name(z, i);
    if (drop && !strcmp(member, drop)) continue;
    int rc = strcmp(member, name) ? sg_npz_add_array(w, member, sg_npz_get(z, member), &err)
                                  : sg_npz_add_scalar_i64(w, member, value, &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
  }
  ck_assert_msg(sg_npz_writer_close(w, &err) == 0, "%s", err.msg);
  sg_npz_close(z);
}

/* The duality head round-trips (config and beams, bitwise); a version-1
 * file (no config.head) reads as the direct head; a bad head is refused. */
START_TEST(bfgnn_checkpoint_heads) {
  assoc_dataset ds = make_data(6, 43);
  int *assoc = round_robin_assoc(&ds);
  assoc_bfgnn_config c = assoc_bfgnn_config_paper();
  c.d = 8, c.h = 16, c.n_antennas = ds.N, c.head = ASSOC_BFGNN_HEAD_DUALITY;
  assoc_bfgnn *m = assoc_bfgnn_new(&c, 5);
  ck_assert_ptr_nonnull(m);
  char ck[128], old[128];
  tmp_path(ck, sizeof ck, "bf_duality.npz");
  tmp_path(old, sizeof old, "bf_v1.npz");
  sg_io_error err = {{0}};
  ck_assert_msg(assoc_bfgnn_checkpoint_write(ck, m, 0.5, &err) == 0, "%s", err.msg);
  double scale = 0;
  assoc_bfgnn *m2 = assoc_bfgnn_checkpoint_read(ck, &scale, &err);
  ck_assert_msg(m2, "%s", err.msg);
  ck_assert_int_eq(m2->cfg.head, ASSOC_BFGNN_HEAD_DUALITY);
  beams a = run_beams(m, 0.5, &ds, assoc), b = run_beams(m2, scale, &ds, assoc);
  size_t n = (size_t)(ds.S * ds.M * ds.K * ds.N);
  ck_assert(memcmp(a.V_re, b.V_re, n * sizeof(double)) == 0);
  ck_assert(memcmp(a.V_im, b.V_im, n * sizeof(double)) == 0);
  beams_free(&a), beams_free(&b);
  rewrite_scalar(ck, old, "config.head", 5, NULL);
  assert_refused_as(BFGNN, old, "head 5", "config.head");
  assoc_bfgnn *direct = tiny_model(6);
  ck_assert_msg(assoc_bfgnn_checkpoint_write(ck, direct, 0.5, &err) == 0, "%s", err.msg);
  rewrite_scalar(ck, old, "bfgnn_checkpoint_version", 1, "config.head");
  assoc_bfgnn *v1 = assoc_bfgnn_checkpoint_read(old, NULL, &err);
  ck_assert_msg(v1, "%s", err.msg);
  ck_assert_int_eq(v1->cfg.head, ASSOC_BFGNN_HEAD_DIRECT);
  rewrite_scalar(ck, old, "bfgnn_checkpoint_version", 3, NULL);
  assert_refused_as(BFGNN, old, "version 3", "BFGNN checkpoint version 3");
  assoc_bfgnn_free(v1), assoc_bfgnn_free(direct), assoc_bfgnn_free(m2), assoc_bfgnn_free(m);
  free(assoc);
  remove(ck), remove(old);
  assoc_dataset_free(&ds);
}
END_TEST

static void count_epochs(void *user, int epoch, double rate, double lr) {
  int *n = user;
  ck_assert_int_eq(epoch, *n + 1);
  ck_assert(isfinite(rate) && rate > 0 && lr > 0);
  (*n)++;
}

/* Training on the mix with batches per epoch and the callback; the data's
 * N must match the model's for inference; ES is skipped above the limit. */
START_TEST(bfgnn_train_mix_and_n_check) {
  assoc_dataset ds = make_data(40, 43);
  sg_io_error err = {{0}};
  assoc_bfgnn_mix mix;
  ck_assert_msg(assoc_bfgnn_training_mix(&ds, 3, 0.5, &mix, &err) == 0, "%s", err.msg);
  ck_assert(mix.n == 2 && mix.es_skipped);
  assoc_bfgnn *m = tiny_model(4);
  double scale = assoc_feature_scale(&ds);
  assoc_bfgnn_train_opts o = assoc_bfgnn_train_defaults(scale);
  int epochs = 0;
  o.batch = 16, o.epochs = 2, o.batches_per_epoch = 5, o.epoch_fn = count_epochs, o.user = &epochs;
  ck_assert(assoc_bfgnn_train(m, &ds, (const int *const *)mix.assocs, mix.n, &o, NULL) == 0);
  ck_assert_int_eq(epochs, 2);
  assoc_bfgnn_config c = m->cfg;
  c.n_antennas = 3;
  assoc_bfgnn *m3 = assoc_bfgnn_new(&c, 1);
  double v[4096], r[64];
  ck_assert(assoc_bfgnn_beams_run(m3, scale, &ds, mix.assocs[0], 8, v, v, r, NULL, &err) == -1);
  ck_assert_msg(strstr(err.msg, "N = 3"), "%s", err.msg);
  assoc_bfgnn_free(m), assoc_bfgnn_free(m3);
  assoc_bfgnn_mix_free(&mix);
  assoc_dataset_free(&ds);
}
END_TEST

Suite *suite_bfgnn_checkpoint(void) {
  const sg_test_case cases[] = {
      {"bfgnn_checkpoint_round_trip", bfgnn_checkpoint_round_trip},
      {"bfgnn_checkpoint_damaged_refused", bfgnn_checkpoint_damaged_refused},
      {"jointgnn_checkpoint_damaged_refused", jointgnn_checkpoint_damaged_refused},
      {"bfgnn_checkpoint_heads", bfgnn_checkpoint_heads},
      {"nan_weights_not_written", nan_weights_not_written},
      {"bfgnn_beams_within_budget", bfgnn_beams_within_budget},
      {"bfgnn_train_mix_and_n_check", bfgnn_train_mix_and_n_check},
  };
  return sg_test_suite("bfgnn_checkpoint", cases, sizeof cases / sizeof *cases, 300);
}
