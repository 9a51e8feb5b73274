/* The strata sampler (assoc_train.h assoc_train_sampler) and the parts of a
 * data set a rank of a data-parallel job reads (assoc_wireless.h
 * assoc_dataset_load_part, assoc_feature_block_sums; assoc_train.h
 * assoc_train_rows): which samples the trainer's batches hold, that a part
 * equals those rows of the whole file, that the feature scale of a file
 * read in parts has the whole file's bits, resume, and refusals. */
#include <string.h>
#include <unistd.h>

#include "sg_test.h"
#include "train_helpers.h"

/* ---- the batches ---------------------------------------------------------------- */

/* Slot j of every batch comes from stratum j, no sample twice in a pass,
 * the same batches for the same arguments, other ones in another epoch. */
START_TEST(strata_batches_one_per_stratum) {
  enum { S = 203, B = 8, PER_PASS = S / B };
  int64_t batch[B], again[B], later[B];
  static int used[S];
  memset(used, 0, sizeof used);
  bool epochs_differ = false;
  for (int64_t b = 0; b < PER_PASS; b++) {
    ck_assert_int_eq(assoc_train_strata_batch(5, S, B, 0, b, batch), 0);
    ck_assert_int_eq(assoc_train_strata_batch(5, S, B, 0, b, again), 0);
    ck_assert_int_eq(assoc_train_strata_batch(5, S, B, 1, b, later), 0);
    ck_assert(memcmp(batch, again, sizeof batch) == 0);
    epochs_differ |= memcmp(batch, later, sizeof batch) != 0;
    for (int64_t j = 0; j < B; j++) {
      ck_assert_msg(batch[j] >= S * j / B && batch[j] < S * (j + 1) / B,
                    "batch %lld slot %lld: sample %lld is outside its stratum", (long long)b,
                    (long long)j, (long long)batch[j]);
      ck_assert_msg(used[batch[j]]++ == 0, "sample %lld twice in a pass", (long long)batch[j]);
    }
  }
  ck_assert(epochs_differ);
  ck_assert_int_eq(assoc_train_strata_batch(5, S, B, 0, -1, batch), -1);
  ck_assert_int_eq(assoc_train_strata_batch(5, 4, B, 0, 0, batch), -1); /* S < batch */
}
END_TEST

/* The features of every training batch the edge MLP saw. */
typedef struct recorder {
  sg_tensor *seen[64];
  int n;
} recorder;

static void record_batch(void *rec, const sg_tensor *H) {
  recorder *r = rec;
  ck_assert_int_lt(r->n, 64);
  r->seen[r->n++] = sg_clone(NULL, H);
}

/* The trainer's batches under the strata sampler are those of
 * assoc_train_strata_batch, epoch by epoch and into a second pass (more
 * batches per epoch than floor(S/B)): the features it fed the model equal
 * those of the predicted samples bit for bit. */
START_TEST(strata_trainer_draws_predicted_batches) {
  assoc_dataset train = make_data(203, 41);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_SKGS);
  c.batch = 8, c.batches_per_epoch = 30, c.sampler = ASSOC_SAMPLER_STRATA;
  edge_mlp e;
  recorder rec = {0};
  assoc_model net = edge_mlp_new(&e, train.N, 3);
  e.record = record_batch, e.rec = &rec;
  sg_io_error err = {{0}};
  assoc_trainer *t = assoc_trainer_new_model(&c, &net, &train, NULL, &err);
  ck_assert_msg(t, "%s", err.msg);
  run_epochs(t, 2, NULL);
  ck_assert_int_eq(rec.n, 60);
  sg_graph *g = sg_graph_new();
  for (int i = 0; i < rec.n; i++) {
    int64_t idx[8];
    ck_assert_int_eq(assoc_train_strata_batch(c.seed, train.S, 8, i / 30, i % 30, idx), 0);
    sg_graph_reset(g);
    assoc_gnn_batch want;
    ck_assert_int_eq(assoc_gnn_batch_make(g, &train, idx, 0, 8, assoc_trainer_feature_scale(t),
                                          net.features, SG_F32, false, &want),
                     0);
    ck_assert_int_eq(want.H->numel, rec.seen[i]->numel);
    ck_assert_msg(memcmp(want.H->data, rec.seen[i]->data, (size_t)want.H->numel * 4) == 0,
                  "epoch %d batch %d: not the predicted samples", i / 30 + 1, i % 30 + 1);
    sg_free(rec.seen[i]);
  }
  sg_graph_free(g);
  assoc_trainer_free(t);
  sg_params_free(e.params);
  assoc_dataset_free(&train);
}
END_TEST

/* ---- parts of a data set ------------------------------------------------------------ */

/* make_data(S, seed) in memory and saved at a fresh path named name. */
static assoc_dataset saved_data(int64_t S, uint64_t seed, char *path, size_t n, const char *name) {
  assoc_dataset ds = make_data(S, seed);
  tmp_path(path, n, name);
  sg_io_error err = {{0}};
  ck_assert_msg(assoc_dataset_save(&ds, path, &err) == 0, "%s", err.msg);
  return ds;
}

static void assert_rows_equal(const void *part, const void *whole, int64_t first, int64_t rows,
                              size_t row_bytes, const char *what) {
  ck_assert_msg(
      memcmp(part, (const char *)whole + (size_t)first * row_bytes, (size_t)rows * row_bytes) == 0,
      "%s: the part differs from its rows of the whole", what);
}

/* A part holds exactly those samples of the file; the rest of the record
 * (BS positions, scenario) is the file's. */
static void assert_part_of(const assoc_dataset *p, const assoc_dataset *w, int64_t lo, int64_t hi) {
  int64_t links = (int64_t)w->M * w->K, h = links * w->N;
  ck_assert(p->S == hi - lo && p->M == w->M && p->N == w->N && p->K == w->K);
  ck_assert(p->seed == w->seed && p->pt_dbm == w->pt_dbm && p->noise_dbm == w->noise_dbm);
  bool whole = lo == 0 && hi == w->S;
  ck_assert(p->part_first == (whole ? 0 : lo) && p->part_total == (whole ? 0 : w->S));
  ck_assert_int_eq(assoc_dataset_total(p), w->S);
  assert_rows_equal(p->H_re, w->H_re, lo, hi - lo, (size_t)h * 8, "H_re");
  assert_rows_equal(p->H_im, w->H_im, lo, hi - lo, (size_t)h * 8, "H_im");
  assert_rows_equal(p->ue_pos, w->ue_pos, lo, hi - lo, (size_t)w->K * 16, "ue_pos");
  assert_rows_equal(p->pl_db, w->pl_db, lo, hi - lo, (size_t)links * 8, "pl_db");
  assert_rows_equal(p->los, w->los, lo, hi - lo, (size_t)links, "los");
  assert_rows_equal(p->outage, w->outage, lo, hi - lo, (size_t)links, "outage");
  assert_rows_equal(p->n_paths, w->n_paths, lo, hi - lo, (size_t)links, "n_paths");
  assert_rows_equal(p->bs_pos, w->bs_pos, 0, 1, (size_t)w->M * 16, "bs_pos");
}

START_TEST(part_is_the_rows_of_the_file) {
  char path[128];
  assoc_dataset whole = saved_data(97, 42, path, sizeof path, "part.npz");
  sg_io_error err = {{0}};
  int64_t S;
  int M, N, K;
  ck_assert_msg(assoc_dataset_peek(path, &S, &M, &N, &K, &err) == 0, "%s", err.msg);
  ck_assert(S == 97 && M == whole.M && N == whole.N && K == whole.K);
  const int64_t ranges[][2] = {{0, 97}, {0, 1}, {96, 97}, {13, 60}, {1, 96}};
  for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
    assoc_dataset part;
    ck_assert_msg(assoc_dataset_load_part(path, ranges[i][0], ranges[i][1], &part, &err) == 0, "%s",
                  err.msg);
    assert_part_of(&part, &whole, ranges[i][0], ranges[i][1]);
    assoc_dataset_free(&part);
  }
  const int64_t bad[][2] = {{-1, 5}, {5, 5}, {9, 3}, {90, 98}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assoc_dataset part;
    ck_assert(assoc_dataset_load_part(path, bad[i][0], bad[i][1], &part, &err) == -1);
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "samples"), "%s", err.msg);
    ck_assert_ptr_null(part.H_re);
  }
  remove(path);
  assoc_dataset_free(&whole);
}
END_TEST

/* The block sums of R ranks' parts (each over its own samples), added up,
 * give the feature scale of the whole file bit for bit, for R = 1..5, and
 * each rank's rows (assoc_train_rows) hold every block it sums. */
START_TEST(feature_scale_of_parts_is_the_files) {
  /* 16 channel values per sample: a block of 4096 spans 256 samples, so
   * the ranks' blocks reach past their strata */
  char path[128];
  assoc_dataset whole = saved_data(1000, 43, path, sizeof path, "scale.npz");
  sg_io_error err = {{0}};
  double want = assoc_feature_scale(&whole);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_SKGS);
  c.batch = 8, c.sampler = ASSOC_SAMPLER_STRATA;
  int64_t n = assoc_feature_blocks(&whole);
  double *total = calloc((size_t)n, sizeof *total), *sums = malloc((size_t)n * sizeof *sums);
  for (int R = 1; R <= 5; R++) {
    memset(total, 0, (size_t)n * sizeof *total);
    for (int r = 0; r < R; r++) {
      int64_t lo, hi, a = (int64_t)c.batch * r / R, b = (int64_t)c.batch * (r + 1) / R;
      assoc_train_rows(&c, whole.S, whole.M, whole.N, whole.K, r, R, &lo, &hi);
      int64_t own_lo = whole.S * a / c.batch, own_hi = whole.S * b / c.batch;
      ck_assert(R == 1 ? lo == 0 && hi == whole.S : lo == own_lo && hi >= own_hi);
      assoc_dataset part;
      ck_assert_msg(assoc_dataset_load_part(path, lo, hi, &part, &err) == 0, "%s", err.msg);
      ck_assert_int_eq(assoc_feature_blocks(&part), n);
      assoc_feature_block_sums(&part, own_lo, own_hi, sums);
      for (int64_t k = 0; k < n; k++) total[k] += sums[k];
      assoc_dataset_free(&part);
    }
    double got = assoc_feature_scale_of_sums(&whole, total);
    ck_assert_msg(got == want, "%d parts: scale %.17g, the whole file's %.17g", R, got, want);
  }
  free(total), free(sums);
  remove(path);
  assoc_dataset_free(&whole);
}
END_TEST

/* ---- the trainer with parts, resume, and refusals ---------------------------------- */

/* A part trains only with the strata sampler, and only when it holds the
 * samples this rank draws from (on one process: all of them). */
START_TEST(part_refused_where_it_cannot_serve) {
  char path[128];
  assoc_dataset whole = saved_data(64, 44, path, sizeof path, "refuse.npz");
  sg_io_error err = {{0}};
  assoc_dataset part;
  ck_assert_msg(assoc_dataset_load_part(path, 8, 64, &part, &err) == 0, "%s", err.msg);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_SKGS);
  c.batch = 8;
  ck_assert_ptr_null(assoc_trainer_new(&c, &part, NULL, &err));
  ck_assert_msg(strstr(err.msg, "samples 8..63 of 64") && strstr(err.msg, "strata"), "%s", err.msg);
  c.sampler = ASSOC_SAMPLER_STRATA;
  ck_assert_ptr_null(assoc_trainer_new(&c, &part, NULL, &err));
  ck_assert_msg(strstr(err.msg, "draws from samples 0..63, but holds 8..63"), "%s", err.msg);
  c.sampler = 7;
  ck_assert_ptr_null(assoc_trainer_new(&c, &whole, NULL, &err));
  ck_assert_msg(strstr(err.msg, "unknown sampler"), "%s", err.msg);
  remove(path);
  assoc_dataset_free(&part), assoc_dataset_free(&whole);
}
END_TEST

/* A strata run stopped after an epoch and resumed from its checkpoint ends
 * with the parameters of an uninterrupted run; the checkpoint keeps the
 * sampler. */
START_TEST(strata_resume_same_bits) {
  assoc_dataset train = make_data(96, 45);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_SKGS);
  c.batch = 8, c.sampler = ASSOC_SAMPLER_STRATA;
  char ck[128], full[128];
  tmp_path(ck, sizeof ck, "strata_half.npz");
  tmp_path(full, sizeof full, "strata_full.npz");
  sg_io_error err = {{0}};
  assoc_trainer *t = assoc_trainer_new(&c, &train, NULL, &err);
  ck_assert_msg(t, "%s", err.msg);
  run_epochs(t, 1, NULL);
  ck_assert_msg(assoc_trainer_save(t, ck, &err) == 0, "%s", err.msg);
  run_epochs(t, 1, NULL);
  ck_assert_msg(assoc_trainer_save(t, full, &err) == 0, "%s", err.msg);
  assoc_trainer *r = assoc_trainer_resume(ck, NULL, &train, NULL, &err);
  ck_assert_msg(r, "%s", err.msg);
  run_epochs(r, 1, NULL);
  assert_params_bitwise(assoc_trainer_model(t)->params, assoc_trainer_model(r)->params);
  assoc_train_config saved;
  assoc_gnn *m = assoc_checkpoint_load_model(full, NULL, &saved, &err);
  ck_assert_msg(m, "%s", err.msg);
  ck_assert_int_eq(saved.sampler, ASSOC_SAMPLER_STRATA);
  assoc_gnn_free(m);
  assoc_trainer_free(t), assoc_trainer_free(r);
  remove(ck), remove(full);
  assoc_dataset_free(&train);
}
END_TEST

Suite *suite_train_sampler(void) {
  Suite *s = suite_create("train_sampler");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, strata_batches_one_per_stratum);
  tcase_add_test(tc, strata_trainer_draws_predicted_batches);
  tcase_add_test(tc, part_is_the_rows_of_the_file);
  tcase_add_test(tc, feature_scale_of_parts_is_the_files);
  tcase_add_test(tc, part_refused_where_it_cannot_serve);
  tcase_add_test(tc, strata_resume_same_bits);
  suite_add_tcase(s, tc);
  return s;
}
