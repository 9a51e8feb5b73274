/* The training levers beyond the paper's configuration (assoc_train.h,
 * assoc_wireless.h): the link features, the supervised ES loss, their
 * checkpoints, and the diagnosis of a trained model. Tiny data sets
 * (M 2, N 2, K 4). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "assoc_train.h"
#include "sg_test.h"
#include "train_helpers.h"

/* ---- link features ---------------------------------------------------------------- */

static sg_tensor *link_features(const assoc_dataset *ds) {
  int64_t shape[4] = {ds->S, ds->M, ds->K, 2 * ds->N + 3};
  sg_tensor *f = sg_empty(NULL, SG_F64, 4, shape);
  assoc_link_features_fill(ds, 0, ds->S, f, 0);
  return f;
}

/* SNR and interference features equal their definitions on the coupling
 * gains of rate.c (a separate computation); the direction has unit norm
 * and a real, non-negative first entry. */
START_TEST(link_features_match_gains) {
  assoc_dataset ds = make_data(16, 3);
  int M = ds.M, K = ds.K, N = ds.N, W = 2 * N + 3;
  ck_assert_int_eq(assoc_feature_width(ASSOC_FEATURES_LINK, N), W);
  ck_assert_int_eq(assoc_feature_width(ASSOC_FEATURES_CHANNEL, N), 2 * N);
  sg_tensor *f = link_features(&ds);
  const double *x = sg_f64(f);
  double gain[2 * 4 * 4];
  for (int64_t s = 0; s < ds.S; s++) {
    assoc_coupling_gain(&ds, s, gain);
    for (int m = 0; m < M; m++)
      for (int k = 0; k < K; k++) {
        const double *e = x + ((s * M + m) * K + k) * W;
        double i_in = 0, i_out = 0, norm = 0;
        for (int l = 0; l < K; l++)
          if (l != k) i_in += gain[(m * K + k) * K + l], i_out += gain[(m * K + l) * K + k];
        double snr_db = 10 * log10(gain[(m * K + k) * K + k]);
        ck_assert_double_eq_tol(e[0], (snr_db + 5.0) / 20.0, 1e-12);
        ck_assert_double_eq_tol(e[1 + 2 * N], log10(1 + i_in) - 0.7, 1e-12);
        ck_assert_double_eq_tol(e[2 + 2 * N], log10(1 + i_out) - 1.4, 1e-12);
        for (int n = 0; n < 2 * N; n++) norm += e[1 + n] * e[1 + n];
        ck_assert_double_eq_tol(norm, 1.0, 1e-12);
        ck_assert(e[1] >= 0 && e[1 + N] == 0.0);
      }
  }
  sg_free(f);
  assoc_dataset_free(&ds);
}
END_TEST

/* A phase rotation of one link's channel changes no feature of any link. */
START_TEST(link_features_phase_invariant) {
  assoc_dataset ds = make_data(4, 5);
  sg_tensor *before = link_features(&ds);
  int N = ds.N;
  double c = cos(1.1), s = sin(1.1);
  double *re = ds.H_re + (1 * ds.M * ds.K + 1 * ds.K + 2) * N; /* sample 1, BS 1, UE 2 */
  double *im = ds.H_im + (1 * ds.M * ds.K + 1 * ds.K + 2) * N;
  for (int n = 0; n < N; n++) {
    double r = re[n] * c - im[n] * s, i = re[n] * s + im[n] * c;
    re[n] = r, im[n] = i;
  }
  sg_tensor *after = link_features(&ds);
  for (int64_t i = 0; i < before->numel; i++)
    ck_assert_double_eq_tol(sg_f64(after)[i], sg_f64(before)[i], 1e-12);
  sg_free(before), sg_free(after);
  assoc_dataset_free(&ds);
}
END_TEST

/* The batch inputs of every feature kind hold what the fill functions
 * compute for the chosen samples; the link-nodes demands count every UE
 * once and the SNR margins are >= 0. */
START_TEST(batch_inputs_per_kind) {
  assoc_dataset ds = make_data(8, 29);
  int M = ds.M, K = ds.K, N = ds.N;
  int64_t idx[2] = {6, 2};
  for (int kind = 0; kind < ASSOC_FEATURE_KIND_COUNT; kind++) {
    sg_graph *g = sg_graph_new();
    assoc_gnn_batch in;
    ck_assert_int_eq(assoc_gnn_batch_make(g, &ds, idx, 0, 2, 0.5, kind, SG_F64, false, &in), 0);
    int W = assoc_feature_width(kind, N), fp, fq;
    assoc_node_feature_widths(kind, &fp, &fq);
    ck_assert_int_eq(in.H->shape[3], W);
    ck_assert(in.p->shape[2] == fp && in.q->shape[2] == fq);
    for (int b = 0; b < 2; b++) {
      sg_tensor *one = sg_empty(NULL, SG_F64, 4, (int64_t[]){1, M, K, W});
      if (kind == ASSOC_FEATURES_CHANNEL)
        assoc_features_fill(&ds, idx[b], 1, 0.5, one, 0);
      else
        assoc_link_features_fill(&ds, idx[b], 1, one, 0);
      ck_assert_mem_eq(sg_f64(in.H) + b * one->numel, sg_f64(one), (size_t)one->numel * 8);
      sg_free(one);
      double p[2 * 2], q[2 * 4], demand = 0;
      assoc_node_features(&ds, idx[b], kind, p, q);
      ck_assert_mem_eq(sg_f64(in.p) + b * M * fp, p, (size_t)(M * fp) * 8);
      ck_assert_mem_eq(sg_f64(in.q) + b * K * fq, q, (size_t)(K * fq) * 8);
      for (int m = 0; kind == ASSOC_FEATURES_LINK_NODES && m < M; m++) demand += p[m * fp + 1];
      for (int k = 0; kind == ASSOC_FEATURES_LINK_NODES && k < K; k++) ck_assert(q[k * fq] >= 0);
      if (kind == ASSOC_FEATURES_LINK_NODES) ck_assert_double_eq_tol(demand * N + M * N, K, 1e-12);
    }
    sg_graph_free(g);
  }
  assoc_dataset_free(&ds);
}
END_TEST

/* ---- training with the levers ------------------------------------------------------- */

static double nv_rate(const assoc_trainer *t, const assoc_dataset *test) {
  assoc_metrics x;
  sg_io_error err = {{0}};
  ck_assert_msg(assoc_gnn_evaluate(assoc_trainer_model(t), test, assoc_trainer_feature_scale(t),
                                   128, 0, &x, &err) == 0,
                "%s", err.msg);
  return x.mean_rate;
}

/* SMA-GNN on link features: the model takes 2N + 3 edge inputs and a short
 * run lifts its test sum-rate well above the untrained model's. */
START_TEST(train_link_features_learn) {
  assoc_dataset train = make_data(256, 11), test = make_data(256, 12);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_SMA);
  c.t0 = 10, c.features = ASSOC_FEATURES_LINK;
  sg_io_error err = {{0}};
  assoc_trainer *t = assoc_trainer_new(&c, &train, &test, &err);
  ck_assert_msg(t, "%s", err.msg);
  ck_assert_int_eq(assoc_trainer_model(t)->cfg.fe, 2 * train.N + 3);
  double before = nv_rate(t, &test);
  run_epochs(t, 10, NULL);
  double after = nv_rate(t, &test);
  ck_assert_msg(after > before + 1.0, "test rate %.4f after training, %.4f before", after, before);
  assoc_trainer_free(t);
  assoc_dataset_free(&train), assoc_dataset_free(&test);
}
END_TEST

/* The supervised loss is the cross-entropy to ES: it starts near log M (an
 * untrained model is close to uniform) and training lowers it well below
 * (SKGS-GNN on the link-nodes features, as SKGS-GNN+ of the ablation). */
START_TEST(train_es_loss_learns) {
  assoc_dataset train = make_data(256, 13);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_SKGS);
  c.t0 = 10, c.loss = ASSOC_LOSS_ES, c.features = ASSOC_FEATURES_LINK_NODES;
  sg_io_error err = {{0}};
  assoc_trainer *t = assoc_trainer_new(&c, &train, NULL, &err);
  ck_assert_msg(t, "%s", err.msg);
  assoc_epoch_stats first, last;
  run_epochs(t, 1, &first);
  run_epochs(t, 9, &last);
  ck_assert_msg(first.loss > 0.5 * log(2.0) && first.loss < 2 * log(2.0), "first loss %g",
                first.loss);
  ck_assert_msg(last.loss < 0.7 * first.loss, "loss %g after 10 epochs, %g after 1", last.loss,
                first.loss);
  assoc_trainer_free(t);
  assoc_dataset_free(&train);
}
END_TEST

/* Both levers are part of the checkpoint: a resumed run (ES targets solved
 * again) ends on the same bits as an uninterrupted one, and the loaded
 * configuration names them. */
START_TEST(train_levers_resume_bitwise) {
  assoc_dataset train = make_data(96, 17);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_ATTSKGS);
  c.batch = 16, c.batches_per_epoch = 3;
  c.features = ASSOC_FEATURES_LINK, c.loss = ASSOC_LOSS_ES;
  char p_half[128];
  tmp_path(p_half, sizeof p_half, "levers_half.npz");
  sg_io_error err = {{0}};
  assoc_trainer *full = assoc_trainer_new(&c, &train, NULL, &err);
  ck_assert_msg(full, "%s", err.msg);
  run_epochs(full, 3, NULL);
  assoc_trainer *half = assoc_trainer_new(&c, &train, NULL, &err);
  run_epochs(half, 1, NULL);
  ck_assert_msg(assoc_trainer_save(half, p_half, &err) == 0, "%s", err.msg);
  assoc_trainer_free(half);
  assoc_train_config loaded;
  double scale;
  assoc_gnn *m = assoc_checkpoint_load_model(p_half, &scale, &loaded, &err);
  ck_assert_msg(m, "%s", err.msg);
  ck_assert_int_eq(loaded.features, ASSOC_FEATURES_LINK);
  ck_assert_int_eq(loaded.loss, ASSOC_LOSS_ES);
  ck_assert_int_eq(m->cfg.features, ASSOC_FEATURES_LINK);
  assoc_gnn_free(m);
  assoc_trainer *resumed = assoc_trainer_resume(p_half, NULL, &train, NULL, &err);
  ck_assert_msg(resumed, "%s", err.msg);
  run_epochs(resumed, 2, NULL);
  assert_params_bitwise(assoc_trainer_model(full)->params, assoc_trainer_model(resumed)->params);
  assoc_trainer_free(full), assoc_trainer_free(resumed);
  remove(p_half);
  assoc_dataset_free(&train);
}
END_TEST

/* A checkpoint of link features refuses data of another N by name. */
START_TEST(link_features_other_n_refused) {
  assoc_dataset train = make_data(64, 19);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_SMA);
  c.features = ASSOC_FEATURES_LINK;
  sg_io_error err = {{0}};
  assoc_trainer *t = assoc_trainer_new(&c, &train, NULL, &err);
  ck_assert_msg(t, "%s", err.msg);
  assoc_scenario sc = assoc_scenario_default();
  sc.M = 2, sc.N = 3, sc.K = 4;
  assoc_dataset other;
  ck_assert(assoc_generate(&sc, 8, &other, &err) == 0);
  ck_assert_int_eq(assoc_gnn_check_data(assoc_trainer_model(t), &other, &err), -1);
  ck_assert_msg(strstr(err.msg, "link") && strstr(err.msg, "N = 3"), "%s", err.msg);
  assoc_trainer_free(t);
  assoc_dataset_free(&train), assoc_dataset_free(&other);
}
END_TEST

/* ---- diagnosis -------------------------------------------------------------------- */

/* With mu = 0 the penalty has no gradient anywhere; after epochs with the
 * dual update (mu > 0, a threshold every sample exceeds) it has one at the
 * output. The statistics stay in their ranges and the rate gradient
 * reaches the output MLP. */
START_TEST(diagnose_penalty_split) {
  assoc_dataset train = make_data(128, 23);
  assoc_train_config c = tiny_train_config(ASSOC_GNN_SKGS);
  c.batches_per_epoch = 2, c.t_mu = 1, c.delta = 2.0; /* threshold 0: always exceeded */
  char path[128];
  tmp_path(path, sizeof path, "diagnose.npz");
  sg_io_error err = {{0}};
  assoc_trainer *t = assoc_trainer_new(&c, &train, NULL, &err);
  ck_assert_msg(t, "%s", err.msg);
  ck_assert_msg(assoc_trainer_save(t, path, &err) == 0, "%s", err.msg);
  assoc_diagnosis_opts o = assoc_diagnosis_defaults();
  o.samples = 64, o.batch = 32;
  assoc_diagnosis d;
  ck_assert_msg(assoc_diagnose(path, &train, &o, &d, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(d.epoch, 0);
  ck_assert(d.n_groups >= 4 && !strcmp(d.groups[d.n_groups - 1].name, "mlp_out"));
  for (int i = 0; i < d.n_groups; i++) ck_assert(d.groups[i].grad_penalty == 0.0);
  ck_assert(d.groups[d.n_groups - 1].grad_rate > 0);
  ck_assert(d.row_max_mean >= 0.5 && d.row_max_mean <= 1.0);
  ck_assert(d.agree_strongest >= 0 && d.agree_strongest <= 1 && d.assoc_sd > 0);
  run_epochs(t, 2, NULL);
  ck_assert(assoc_trainer_mu(t)[0] > 0);
  ck_assert_msg(assoc_trainer_save(t, path, &err) == 0, "%s", err.msg);
  ck_assert_msg(assoc_diagnose(path, &train, &o, &d, &err) == 0, "%s", err.msg);
  ck_assert(d.mu[0] == assoc_trainer_mu(t)[0] && d.epoch == 2);
  ck_assert(d.groups[d.n_groups - 1].grad_penalty > 0);
  ck_assert(d.loss_total > d.loss_rate);
  assoc_trainer_free(t);
  remove(path);
  assoc_dataset_free(&train);
}
END_TEST

Suite *suite_train_levers(void) {
  const sg_test_case cases[] = {
      {"link_features_match_gains", link_features_match_gains},
      {"link_features_phase_invariant", link_features_phase_invariant},
      {"link_features_other_n_refused", link_features_other_n_refused},
      {"batch_inputs_per_kind", batch_inputs_per_kind},
      {"train_link_features_learn", train_link_features_learn},
      {"train_es_loss_learns", train_es_loss_learns},
      {"train_levers_resume_bitwise", train_levers_resume_bitwise},
      {"diagnose_penalty_split", diagnose_penalty_split},
  };
  return sg_test_suite("train_levers", cases, sizeof cases / sizeof cases[0], 120);
}
