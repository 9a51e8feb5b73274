/* Run on one process and under mpirun: trains a model of one's own through
 * the training hook (assoc_model: a per-link MLP, Gumbel noise from
 * assoc_model_gumbel, the capacity Sinkhorn) in float64 for a few epochs
 * and prints, on rank 0, one line per parameter: its name, sum and sum of
 * squares (%.17g). tests/mpi_train_test.sh compares the lines of 1, 2 and
 * 4 ranks with those of one process.
 *
 *   mpi_hook_check [--no-split]
 *
 * --no-split leaves assoc_model.splits_batches false: over several ranks
 * the trainer must refuse the model (exit 1 with the message). */
#include <stdio.h>
#include <string.h>

#include "assoc_dist.h"
#include "assoc_train.h"

typedef struct link_model {
  sg_params *params;
  sg_mlp score;
  assoc_gnn_config head;
} link_model;

static sg_tensor *link_forward(void *ctx, sg_graph *g, const assoc_gnn_batch *in,
                               const assoc_model_call *call) {
  link_model *e = ctx;
  int64_t B = in->H->shape[0], M = in->H->shape[1], K = in->H->shape[2];
  sg_tensor *links = sg_permute(g, in->H, (const int[]){0, 2, 1, 3});
  sg_tensor *logits = sg_reshape(g, sg_mlp_forward(g, &e->score, links), 3, (int64_t[]){B, K, M});
  e->head.capacity = call->capacity;
  sg_tensor *noise = assoc_model_gumbel(g, call, SG_F64, B, K, M);
  return assoc_gnn_post_process(g, &e->head, logits, call->mode, call->rng, noise, call->sinkhorn);
}

static int train(bool split, sg_io_error *err) {
  assoc_scenario sc = assoc_scenario_default();
  sc.M = 2, sc.N = 2, sc.K = 4, sc.seed = 9;
  assoc_dataset ds;
  if (assoc_generate(&sc, 96, &ds, err)) return -1;
  link_model e = {.params = sg_params_new(SG_F64), .head = assoc_gnn_config_paper(ASSOC_GNN_SKGS)};
  e.head.dtype = SG_F64;
  sg_rng r;
  sg_rng_seed(&r, 3);
  if (!e.params || sg_mlp_init(&e.score, e.params, "score", 2 * sc.N, 16, 1, &r))
    return assoc_dataset_free(&ds), snprintf(err->msg, sizeof err->msg, "out of memory"), -1;
  assoc_model net = {.name = "link MLP",
                     .params = e.params,
                     .features = ASSOC_FEATURES_CHANNEL,
                     .forward = link_forward,
                     .ctx = &e,
                     .splits_batches = split};
  assoc_train_config c = assoc_train_config_default(ASSOC_GNN_SKGS);
  c.batch = 8, c.batches_per_epoch = 0, c.epochs = 3, c.lr_max = 3e-3, c.lr_min = 1e-5;
  c.t0 = 4, c.t_mu = 1, c.seed = 7, c.threads = 1;
  assoc_train_io io = {.model = &net};
  int rc = assoc_train_run(&c, &ds, NULL, &io, NULL, err);
  for (int i = 0; !rc && assoc_dist_rank() == 0 && i < sg_params_count(e.params); i++) {
    const sg_tensor *p = sg_params_at(e.params, i);
    double s = 0, s2 = 0;
    for (int64_t j = 0; j < p->numel; j++) s += sg_get(p, j), s2 += sg_get(p, j) * sg_get(p, j);
    printf("%s %.17g %.17g\n", sg_params_name(e.params, i), s, s2);
  }
  sg_params_free(e.params);
  assoc_dataset_free(&ds);
  return rc;
}

int main(int argc, char **argv) {
  sg_io_error err = {{0}};
  if (assoc_dist_init(&argc, &argv, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
  bool split = !(argc > 1 && !strcmp(argv[1], "--no-split"));
  int rc = train(split, &err);
  if (rc) fprintf(stderr, "mpi_hook_check: rank %d: %s\n", assoc_dist_rank(), err.msg);
  assoc_dist_finalize();
  return rc ? 1 : 0;
}
