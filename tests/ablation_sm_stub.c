/* `assoc ablation` with the SM-GNN slot enabled by a stand-in for JointGNN
 * (tests/ablation_sm_test.sh): "training" writes a small file at the
 * checkpoint path; "evaluation" returns MaxSINR-capped's association as the
 * model's one-hot (feasible, so it is also its load-balanced association)
 * with its MRT metrics and, as its own beams, the intra-cell ZF rate of
 * that association. Everything the slot promises can then be checked
 * against the baselines: the SM-GNN rows must equal MaxSINR-capped's. */
#include <stdio.h>
#include <stdlib.h>

#include "ablation.h"
#include "assoc_beam.h"

static int stub_train(const assoc_train_config *c, const assoc_dataset *train,
                      const assoc_dataset *val, const char *ckpt, double *train_seconds) {
  (void)train, (void)val;
  FILE *f = fopen(ckpt, "w");
  if (!f) return perror(ckpt), -1;
  fprintf(f, "SM-GNN stand-in, seed %llu\n", (unsigned long long)c->seed);
  *train_seconds = 0;
  return fclose(f) ? -1 : 0;
}

/* The mean ZF rate of assoc on ds. */
static double zf_rate(const assoc_dataset *ds, const int *assoc) {
  size_t n = (size_t)ds->S * ds->M * ds->K * ds->N;
  double *re = malloc(n * sizeof *re), *im = malloc(n * sizeof *im);
  double *rate = malloc((size_t)ds->S * sizeof *rate), mean = 0;
  sg_io_error err;
  if (!re || !im || !rate ||
      assoc_beams_run(ds, assoc, ASSOC_BEAM_ZF, re, im, rate, NULL, NULL, &err))
    mean = -1;
  for (int64_t s = 0; mean >= 0 && s < ds->S; s++) mean += rate[s] / (double)ds->S;
  free(re), free(im), free(rate);
  return mean;
}

static int stub_evaluate(const char *ckpt, const assoc_dataset *ds, const double *es_rate,
                         assoc_eval_metrics *out, int *lb_assoc, double *own_rate) {
  (void)ckpt;
  size_t SK = (size_t)ds->S * ds->K;
  int *assoc = malloc(SK * sizeof *assoc);
  double *rate = malloc((size_t)ds->S * sizeof *rate);
  assoc_baseline_opts o = assoc_baseline_defaults();
  o.seed = ds->seed;
  sg_io_error err;
  int rc = assoc && rate ? 0 : -1;
  if (!rc) rc = assoc_run_method(ds, ASSOC_MAXSINR_CAPPED, &o, assoc, rate, NULL, NULL, NULL, &err);
  if (!rc) rc = assoc_eval_baseline_metrics(ds, assoc, es_rate, 0, out);
  if (!rc) out->params = 123;
  for (size_t i = 0; !rc && lb_assoc && i < SK; i++) lb_assoc[i] = assoc[i];
  if (!rc && own_rate && (*own_rate = zf_rate(ds, assoc)) < 0) rc = -1;
  if (rc) fprintf(stderr, "SM-GNN stand-in: evaluation failed\n");
  free(assoc), free(rate);
  return rc;
}

int main(int argc, char **argv) {
  abl_sm_enable(&(abl_sm_hooks){.train = stub_train, .evaluate = stub_evaluate});
  if (argc < 2) return fprintf(stderr, "usage: %s ablation [options]\n", argv[0]), 2;
  return assoc_cmd_ablation(argc - 1, argv + 1); /* as assoc: argv[0] is "ablation" */
}
