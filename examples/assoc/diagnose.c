/* assoc diagnose CKPT DATA: what a trained model does with its inputs and
 * where its training gradient goes (assoc_diagnose, docs/ablation.md). */
#include <stdio.h>
#include <stdlib.h>

#include "assoc_train.h"
#include "cli.h"

static const char diagnose_help[] =
    "usage: assoc diagnose CHECKPOINT DATA [options]\n"
    "\n"
    "Eval mode on the first samples of DATA: the mean largest entry of each\n"
    "UE's row of A~ (1 = one-hot), the share of rows above 0.99, the mean over\n"
    "entries of the standard deviation of a~_km across samples (0 = A~ ignores\n"
    "the input) and the share of UEs whose argmax is their strongest link.\n"
    "Train mode on one mini-batch: the L2 norm of the gradient of the rate term\n"
    "and of the load penalty (checkpoint's mu and delta) per parameter group.\n"
    "\n"
    "  --samples S   samples of the eval-mode statistics (default 2000)\n"
    "  --batch B     samples of the gradient (default 256)\n"
    "  --seed X      seed of the Gumbel noise (default 1)\n"
    "  --json        print JSON instead of text\n"
    "  --threads T   OpenMP threads (default: OMP_NUM_THREADS or all)\n"
    "  -h, --help    this help\n";

enum { DG_SAMPLES = 1000, DG_BATCH, DG_SEED, DG_JSON, DG_THREADS };

static const struct option diagnose_options[] = {
    {"samples", required_argument, NULL, DG_SAMPLES},
    {"batch", required_argument, NULL, DG_BATCH},
    {"seed", required_argument, NULL, DG_SEED},
    {"json", no_argument, NULL, DG_JSON},
    {"threads", required_argument, NULL, DG_THREADS},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct diagnose_args {
  assoc_diagnosis_opts o;
  bool json, help;
  int threads;
} diagnose_args;

static int diagnose_option(void *args, int opt, char *v) {
  diagnose_args *a = args;
  const char *c = "diagnose";
  switch (opt) {
  case DG_SAMPLES:
    return assoc_parse_i64(c, "samples", v, 1, INT64_C(1) << 40, &a->o.samples);
  case DG_BATCH:
    return assoc_parse_i64(c, "batch", v, 1, INT64_C(1) << 20, &a->o.batch);
  case DG_SEED:
    return assoc_parse_u64(c, "seed", v, UINT64_MAX, &a->o.seed);
  case DG_JSON:
    return a->json = true, 0;
  case DG_THREADS:
    return assoc_parse_threads(c, v, &a->threads);
  case 'h':
    return a->help = true, 0;
  default:
    return -1;
  }
}

static void print_text(const assoc_diagnosis *d) {
  printf("epoch %d, %lld samples\n", d->epoch, (long long)d->samples);
  printf("  mean largest a~ per UE   %.4f\n  rows above 0.99          %.2f%%\n", d->row_max_mean,
         100 * d->row_saturated);
  printf("  sd of a~ across samples  %.4f\n  argmax = strongest link  %.2f%%\n", d->assoc_sd,
         100 * d->agree_strongest);
  printf("  loss: rate term %.6g, with the penalty %.6g; mu", d->loss_rate, d->loss_total);
  for (int m = 0; m < d->M; m++) printf(" %.6g", d->mu[m]);
  printf("\n\n  %-16s %14s %14s\n", "group", "|grad rate|", "|grad penalty|");
  for (int i = 0; i < d->n_groups; i++)
    printf("  %-16s %14.6g %14.6g\n", d->groups[i].name, d->groups[i].grad_rate,
           d->groups[i].grad_penalty);
}

static void print_json(const assoc_diagnosis *d) {
  printf("{\"epoch\": %d, \"samples\": %lld, ", d->epoch, (long long)d->samples);
  assoc_json_number(stdout, "row_max_mean", d->row_max_mean, ", ");
  assoc_json_number(stdout, "row_saturated", d->row_saturated, ", ");
  assoc_json_number(stdout, "assoc_sd", d->assoc_sd, ", ");
  assoc_json_number(stdout, "agree_strongest", d->agree_strongest, ", ");
  assoc_json_number(stdout, "loss_rate", d->loss_rate, ", ");
  assoc_json_number(stdout, "loss_total", d->loss_total, ", \"mu\": [");
  for (int m = 0; m < d->M; m++) printf("%s%.10g", m ? ", " : "", d->mu[m]);
  printf("], \"groups\": [");
  for (int i = 0; i < d->n_groups; i++) {
    printf("%s{", i ? ", " : "");
    assoc_json_string(stdout, "name", d->groups[i].name, ", ");
    assoc_json_number(stdout, "grad_rate", d->groups[i].grad_rate, ", ");
    assoc_json_number(stdout, "grad_penalty", d->groups[i].grad_penalty, "}");
  }
  printf("]}\n");
}

/* The index of the checkpoint operand (the data set follows it), or -1. */
static int diagnose_parse(int argc, char **argv, diagnose_args *a) {
  *a = (diagnose_args){.o = assoc_diagnosis_defaults()};
  int first = assoc_parse_options("diagnose", argc, argv, diagnose_options, diagnose_option, a);
  if (first < 0 || a->help) return first;
  if (first + 2 != argc) {
    fprintf(stderr, "assoc diagnose: expected a checkpoint and a data set (see --help)\n");
    return -1;
  }
  return first;
}

int assoc_check_diagnose(int argc, char **argv) {
  diagnose_args a;
  return diagnose_parse(argc, argv, &a) < 0 ? ASSOC_EXIT_USAGE : ASSOC_EXIT_OK;
}

int assoc_cmd_diagnose(int argc, char **argv) {
  diagnose_args a;
  int first = diagnose_parse(argc, argv, &a);
  if (first < 0) return ASSOC_EXIT_USAGE;
  int start = assoc_command_start("diagnose", a.help, diagnose_help, NULL, a.threads);
  if (start != ASSOC_GO_ON) return start;
  assoc_dataset ds;
  if (assoc_load_dataset("diagnose", argv[first + 1], &ds)) return ASSOC_EXIT_FAIL;
  sg_io_error err;
  assoc_diagnosis d;
  int rc = assoc_diagnose(argv[first], &ds, &a.o, &d, &err);
  if (rc)
    fprintf(stderr, "assoc diagnose: %s\n", err.msg);
  else if (a.json)
    print_json(&d);
  else
    print_text(&d);
  assoc_dataset_free(&ds);
  return rc ? ASSOC_EXIT_FAIL : ASSOC_EXIT_OK;
}
