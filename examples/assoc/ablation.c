/* assoc ablation: the ablation study of the paper (Table 1, Figures 2b, 3a,
 * 3b, 4a) at a CPU-sized configuration. Trains the four GNN variants once
 * per seed, evaluates them and the baselines on one test set, prints
 * Table-1-like tables (quality and cost) beside the paper's numbers (means and standard
 * deviations over the seeds), writes ablation.json, table.md, the CSV logs
 * and curves, and plots them with gnuplot. See docs/ablation.md. */
#include <errno.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ablation.h"
#include "assoc_dist.h"

static const char ablation_help[] =
    "usage: assoc ablation [--quick] [--out DIR] [options]\n"
    "\n"
    "Trains AttSKGS-, SKGS-, GS- and SMA-GNN on a generated training set of the\n"
    "paper scenario (M 2, N 4, K 8, 30 dBm), and SKGS-GNN+ (SKGS-GNN on the\n"
    "link-nodes features, trained on the ES associations: assoc train --features\n"
    "link-nodes --loss es) and SM-GNN (JointGNN: association and beams, the\n"
    "paper's SM column; as assoc train --model jointgnn), evaluates them and the\n"
    "baselines on a test set, prints Table-1-like tables (quality, cost) beside the\n"
    "paper's numbers and writes to DIR: ablation.json, table.md, test.npz, one\n"
    "checkpoint and training log (CSV) per model and seed, curve_k.csv, curve_pt.csv\n"
    "and curve_m.csv (sum-rate against K, P_t and M, trained on M 2, K 8, 30 dBm,\n"
    "no retraining), val_baselines.csv, onehot.dat, plots.gp and the PNG plots\n"
    "(gnuplot: Fig. 2a, 2b, 3a, 3b, 4a, 4b, 4c). Exit status 3: results written,\n"
    "plots skipped.\n"
    "\n"
    "Table 1 row 4: with every run seed BFGNN is trained on that run's training\n"
    "set and its association mix (as assoc train --model bfgnn; bfgnn.npz or\n"
    "bfgnn-seed<s>.npz), and the models' load-balanced associations (SKGS-GNN+:\n"
    "also the no-violation one) and the baselines' are rated with intra-cell ZF,\n"
    "WMMSE and BFGNN beams (table.md, third table; ablation.json \"beams\"); the\n"
    "curves gain ES_BFGNN, MaxSINR_BFGNN and RandInt_BFGNN.\n"
    "\n"
    "With --seeds N every model is trained N times, with seeds S .. S+N-1 (S from\n"
    "--seed): each run's training set (generated from seed S for the first run,\n"
    "from 2^62 + s for seed s of the others), initialisation, data order and\n"
    "Gumbel noise follow its seed; the validation, test and curve sets stay those\n"
    "of S, so the baselines are computed once. Model results are the mean and sample\n"
    "standard deviation over the seeds (table: mean ± sd; ablation.json also\n"
    "per seed; plots: mean curves with a mean ± sd band); checkpoints and logs\n"
    "are <model>-seed<s>.npz and train_<model>-seed<s>.csv; onehot.dat comes\n"
    "from the first seed's models.\n"
    "\n"
    "Under mpirun (mpirun -np R assoc ablation ...) every training run is\n"
    "data-parallel over the R ranks, as assoc train's (the GNNs, SM-GNN and\n"
    "BFGNN: the models of one process up to float round-off); rank 0 alone\n"
    "generates the fixed data sets, runs the baselines, evaluates, prints and\n"
    "writes DIR, while the other ranks wait for the next training run.\n"
    "--threads is per rank.\n"
    "\n"
    "On an idle 2-core machine the default run takes about 7 minutes per seed and\n"
    "--quick about 13 seconds per seed without BFGNN and the P_t and M curves;\n"
    "they add about 100 s per default seed on one thread (docs/ablation.md,\n"
    "Timings).\n"
    "\n"
    "  --quick                 the small configuration (see docs/ablation.md)\n"
    "  --out DIR               output directory (default ablation-out; created)\n"
    "  --models LIST           comma-separated subset of AttSKGS,SKGS,GS,SMA,SKGS+,SM\n"
    "                          (SM: SM-GNN, JointGNN; default: all)\n"
    "  --epochs E              training epochs\n"
    "  --batches-per-epoch n   mini-batches per epoch\n"
    "  --batch B               mini-batch size\n"
    "  --d D, --h H, --layers L   model widths and depth\n"
    "  --lr-max X, --lr-min X  cosine-annealing range\n"
    "  --t0 E, --t-mult m      warm-restart period (epochs) and multiplier\n"
    "  --t-mu E                dual update of mu every E epochs\n"
    "  --delta X, --tau X      load margin and Gumbel temperature\n"
    "  --dtype T               float32 (default) or float64: every trained model's\n"
    "                          parameters and arithmetic\n"
    "  --sk-balanced           balanced Sinkhorn (no kink at the cap; see assoc train)\n"
    "  --train-samples S, --val-samples S, --test-samples S, --curve-samples S\n"
    "  --k-max K               largest K of the sum-rate-against-K curve\n"
    "  --pt-min P, --pt-max P, --pt-step P   the P_t values of the sum-rate-against-P_t\n"
    "                          curve, dBm (0..60; default 10..50 step 10, --quick step 20)\n"
    "  --m-max M               largest M of the sum-rate-against-M curve (2..4; default 4,\n"
    "                          --quick 3)\n"
    "  --bfgnn-d D, --bfgnn-h H, --bfgnn-epochs E, --bfgnn-t0 E   BFGNN's widths, epochs\n"
    "                          and first warm-restart period (default 64, 128, 60, 20;\n"
    "                          --quick 32, 64, 15, 5); the rest of its schedule is the\n"
    "                          models'\n"
    "  --bfgnn-head direct|duality   BFGNN's beam head: the weights of the duality\n"
    "                          structure (default; 96-99%% of WMMSE) or the paper's direct\n"
    "                          2N-real beams (about ZF); docs/models.md\n"
    "  --no-bfgnn              no BFGNN (row 4 with MRT, ZF and WMMSE only)\n"
    "  --seed S                base seed: fixed data sets and the first run (default 1)\n"
    "  --seeds N               train every model N times, seeds S .. S+N-1 (1..100;\n"
    "                          default 1)\n"
    "  --draws D               also the models' sampled decoding: best of D draws\n"
    "                          (assoc eval --draws; default 4, 1: off)\n"
    "  --threads T             OpenMP threads (default: OMP_NUM_THREADS or all)\n"
    "  --no-plots              do not run gnuplot\n"
    "  --quiet                 no progress on stderr\n"
    "  -h, --help              this help\n";

/* The default and --quick configurations. */
static void set_defaults(abl_args *a, bool quick) {
  assoc_train_config *c = &a->train;
  *c = assoc_train_config_default(ASSOC_GNN_ATTSKGS);
  c->d = quick ? 32 : 64;
  c->h = quick ? 64 : 128;
  c->L = 2;
  c->batch = 64;
  c->batches_per_epoch = quick ? 20 : 50;
  c->epochs = quick ? 30 : 120;
  c->lr_min = 1e-6, c->lr_max = 1e-3;
  c->t0 = quick ? 10 : 40, c->t_mult = 2; /* periods t0 + 2 t0 = all epochs */
  c->t_mu = quick ? 5 : 20;
  c->eval_batch = 256;
  a->train_samples = quick ? 4000 : 20000;
  a->val_samples = quick ? 200 : 500;
  a->test_samples = quick ? 1000 : 2000;
  a->curve_samples = quick ? 300 : 1000;
  a->k_min = 4, a->k_max = 12, a->k_step = quick ? 2 : 1;
  a->pt_min = 10, a->pt_max = 50, a->pt_step = quick ? 20 : 10;
  a->m_max = quick ? 3 : 4;
  a->bf_d = quick ? 32 : 64, a->bf_h = quick ? 64 : 128;
  a->bf_epochs = quick ? 15 : 60, a->bf_t0 = quick ? 5 : 20;
  a->bf_head = ASSOC_BFGNN_HEAD_DUALITY;
}

enum abl_option {
  AB_QUICK = 1000,
  AB_OUT,
  AB_MODELS,
  AB_EPOCHS,
  AB_BPE,
  AB_BATCH,
  AB_D,
  AB_H,
  AB_LAYERS,
  AB_LR_MAX,
  AB_LR_MIN,
  AB_T0,
  AB_T_MULT,
  AB_T_MU,
  AB_DELTA,
  AB_TAU,
  AB_TRAIN_S,
  AB_VAL_S,
  AB_TEST_S,
  AB_CURVE_S,
  AB_K_MAX,
  AB_SEED,
  AB_SEEDS,
  AB_DRAWS,
  AB_THREADS,
  AB_NO_PLOTS,
  AB_QUIET,
  AB_SK_BALANCED,
  AB_PT_MIN,
  AB_PT_MAX,
  AB_PT_STEP,
  AB_M_MAX,
  AB_NO_BFGNN,
  AB_BF_D,
  AB_BF_H,
  AB_BF_EPOCHS,
  AB_BF_T0,
  AB_BF_HEAD,
  AB_DTYPE,
};

static const struct option abl_options[] = {
    {"quick", no_argument, NULL, AB_QUICK},
    {"out", required_argument, NULL, AB_OUT},
    {"models", required_argument, NULL, AB_MODELS},
    {"epochs", required_argument, NULL, AB_EPOCHS},
    {"batches-per-epoch", required_argument, NULL, AB_BPE},
    {"batch", required_argument, NULL, AB_BATCH},
    {"d", required_argument, NULL, AB_D},
    {"h", required_argument, NULL, AB_H},
    {"layers", required_argument, NULL, AB_LAYERS},
    {"lr-max", required_argument, NULL, AB_LR_MAX},
    {"lr-min", required_argument, NULL, AB_LR_MIN},
    {"t0", required_argument, NULL, AB_T0},
    {"t-mult", required_argument, NULL, AB_T_MULT},
    {"t-mu", required_argument, NULL, AB_T_MU},
    {"delta", required_argument, NULL, AB_DELTA},
    {"tau", required_argument, NULL, AB_TAU},
    {"train-samples", required_argument, NULL, AB_TRAIN_S},
    {"val-samples", required_argument, NULL, AB_VAL_S},
    {"test-samples", required_argument, NULL, AB_TEST_S},
    {"curve-samples", required_argument, NULL, AB_CURVE_S},
    {"k-max", required_argument, NULL, AB_K_MAX},
    {"seed", required_argument, NULL, AB_SEED},
    {"seeds", required_argument, NULL, AB_SEEDS},
    {"draws", required_argument, NULL, AB_DRAWS},
    {"threads", required_argument, NULL, AB_THREADS},
    {"no-plots", no_argument, NULL, AB_NO_PLOTS},
    {"sk-balanced", no_argument, NULL, AB_SK_BALANCED},
    {"quiet", no_argument, NULL, AB_QUIET},
    {"pt-min", required_argument, NULL, AB_PT_MIN},
    {"pt-max", required_argument, NULL, AB_PT_MAX},
    {"pt-step", required_argument, NULL, AB_PT_STEP},
    {"m-max", required_argument, NULL, AB_M_MAX},
    {"no-bfgnn", no_argument, NULL, AB_NO_BFGNN},
    {"bfgnn-d", required_argument, NULL, AB_BF_D},
    {"bfgnn-h", required_argument, NULL, AB_BF_H},
    {"bfgnn-epochs", required_argument, NULL, AB_BF_EPOCHS},
    {"bfgnn-t0", required_argument, NULL, AB_BF_T0},
    {"bfgnn-head", required_argument, NULL, AB_BF_HEAD},
    {"dtype", required_argument, NULL, AB_DTYPE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

const char *const abl_improved_name = "SKGS-GNN+";
const char *const abl_sm_name = "SM-GNN";

void abl_improved_config(assoc_train_config *c) {
  c->variant = ASSOC_GNN_SKGS;
  c->features = ASSOC_FEATURES_LINK_NODES;
  c->loss = ASSOC_LOSS_ES;
}

const char *abl_model_name(int index) {
  if (index == ABL_SM) return abl_sm_name;
  return index == ABL_IMPROVED ? abl_improved_name : assoc_gnn_variant_name(index);
}

static abl_sm_hooks sm_hooks;
static bool sm_enabled;

void abl_sm_enable(const abl_sm_hooks *h) {
  sm_hooks = *h;
  sm_enabled = h->train && h->evaluate;
}

const abl_sm_hooks *abl_sm(void) {
  return sm_enabled ? &sm_hooks : NULL;
}

static int model_index(const char *tok) {
  if (!strcasecmp(tok, "SKGS+") || !strcasecmp(tok, abl_improved_name)) return ABL_IMPROVED;
  if (!strcasecmp(tok, "SM") || !strcasecmp(tok, abl_sm_name)) return ABL_SM;
  return assoc_gnn_variant_parse(tok);
}

static int parse_models(char *list, bool *use) {
  for (int v = 0; v < ABL_MAX_MODELS; v++) use[v] = false;
  for (char *save, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int v = model_index(tok);
    if (v < 0) {
      fprintf(stderr, "assoc ablation: unknown model '%s' (AttSKGS, SKGS, GS, SMA, SKGS+, SM)\n",
              tok);
      return -1;
    }
    if (v == ABL_SM && !abl_sm()) {
      fprintf(stderr, "assoc ablation: SM-GNN (JointGNN) is not available in this build\n");
      return -1;
    }
    use[v] = true;
  }
  return 0;
}

static int abl_option_int(abl_args *a, int opt, const char *v) {
  const char *c = "ablation";
  assoc_train_config *t = &a->train;
  int k;
  switch (opt) {
  case AB_EPOCHS:
    return assoc_parse_int(c, "epochs", v, 1, 1000000, &t->epochs);
  case AB_BPE:
    return assoc_parse_i64(c, "batches-per-epoch", v, 1, 1 << 30, &t->batches_per_epoch);
  case AB_BATCH:
    return assoc_parse_i64(c, "batch", v, 1, 1 << 20, &t->batch);
  case AB_D:
    return assoc_parse_int(c, "d", v, 1, 1 << 16, &t->d);
  case AB_H:
    return assoc_parse_int(c, "h", v, 1, 1 << 16, &t->h);
  case AB_LAYERS:
    return assoc_parse_int(c, "layers", v, 1, 64, &t->L);
  case AB_T_MULT:
    return assoc_parse_int(c, "t-mult", v, 1, 64, &t->t_mult);
  case AB_T_MU:
    return assoc_parse_int(c, "t-mu", v, 1, 1000000, &t->t_mu);
  case AB_TRAIN_S:
    return assoc_parse_i64(c, "train-samples", v, 1, 100000000, &a->train_samples);
  case AB_VAL_S:
    return assoc_parse_i64(c, "val-samples", v, 1, 100000000, &a->val_samples);
  case AB_TEST_S:
    return assoc_parse_i64(c, "test-samples", v, ONEHOT_SAMPLES, 100000000, &a->test_samples);
  case AB_CURVE_S:
    return assoc_parse_i64(c, "curve-samples", v, 1, 100000000, &a->curve_samples);
  case AB_K_MAX:
    if (assoc_parse_int(c, "k-max", v, a->k_min, 16, &k)) return -1;
    return a->k_max = k, 0;
  case AB_SEED:
    return assoc_parse_u64(c, "seed", v, (UINT64_C(1) << 62), &a->seed);
  case AB_SEEDS:
    return assoc_parse_int(c, "seeds", v, 1, ABL_MAX_SEEDS, &a->seeds);
  case AB_DRAWS:
    return assoc_parse_int(c, "draws", v, 1, 1 << 16, &a->draws);
  case AB_THREADS:
    return assoc_parse_threads(c, v, &a->threads);
  case AB_PT_MIN:
    return assoc_parse_int(c, "pt-min", v, 0, 60, &a->pt_min);
  case AB_PT_MAX:
    return assoc_parse_int(c, "pt-max", v, 0, 60, &a->pt_max);
  case AB_PT_STEP:
    return assoc_parse_int(c, "pt-step", v, 1, 60, &a->pt_step);
  case AB_M_MAX:
    return assoc_parse_int(c, "m-max", v, 2, 4, &a->m_max);
  case AB_BF_D:
    return assoc_parse_int(c, "bfgnn-d", v, 1, 1 << 16, &a->bf_d);
  case AB_BF_H:
    return assoc_parse_int(c, "bfgnn-h", v, 1, 1 << 16, &a->bf_h);
  case AB_BF_EPOCHS:
    return assoc_parse_int(c, "bfgnn-epochs", v, 1, 1000000, &a->bf_epochs);
  default:
    return 1; /* not an integer option */
  }
}

static int abl_option(void *args, int opt, char *v) {
  abl_args *a = args;
  const char *c = "ablation";
  assoc_train_config *t = &a->train;
  int rc = abl_option_int(a, opt, v);
  if (rc <= 0) return rc;
  switch (opt) {
  case AB_QUICK: /* already applied by abl_parse, before the other options */
    return 0;
  case AB_OUT:
    return a->out = v, 0;
  case AB_MODELS:
    return parse_models(v, a->use);
  case AB_LR_MAX:
    return assoc_parse_double(c, "lr-max", v, 0, 10, &t->lr_max);
  case AB_LR_MIN:
    return assoc_parse_double(c, "lr-min", v, 0, 10, &t->lr_min);
  case AB_T0:
    return assoc_parse_double(c, "t0", v, 1e-3, 1e9, &t->t0);
  case AB_DELTA:
    return assoc_parse_double(c, "delta", v, 0, 1e6, &t->delta);
  case AB_TAU:
    return assoc_parse_double(c, "tau", v, 1e-3, 1e3, &t->tau);
  case AB_NO_PLOTS:
    return a->no_plots = true, 0;
  case AB_NO_BFGNN:
    return a->no_bfgnn = true, 0;
  case AB_BF_HEAD:
    if (!strcmp(v, "direct")) return a->bf_head = ASSOC_BFGNN_HEAD_DIRECT, 0;
    if (!strcmp(v, "duality")) return a->bf_head = ASSOC_BFGNN_HEAD_DUALITY, 0;
    fprintf(stderr,
            "assoc ablation: bad value '%s' for --bfgnn-head (expected direct or duality)\n", v);
    return -1;
  case AB_BF_T0:
    return assoc_parse_double(c, "bfgnn-t0", v, 1e-3, 1e9, &a->bf_t0);
  case AB_DTYPE:
    if (!strcmp(v, "float32")) return t->dtype = SG_F32, 0;
    if (!strcmp(v, "float64")) return t->dtype = SG_F64, 0;
    fprintf(stderr, "assoc ablation: bad value '%s' for --dtype (expected float32 or float64)\n",
            v);
    return -1;
  case AB_SK_BALANCED:
    return a->train.sk_balanced = 1, 0;
  case AB_QUIET:
    return a->quiet = true, 0;
  case 'h':
    return a->help = true, 0;
  default:
    return -1;
  }
}

static int abl_parse(int argc, char **argv, abl_args *a) {
  *a = (abl_args){.out = "ablation-out", .seed = 1, .seeds = 1, .draws = 4};
  for (int v = 0; v < ABL_MAX_MODELS; v++) a->use[v] = v != ABL_SM || abl_sm();
  /* --quick sets the defaults that later options then override. */
  for (int i = 1; i < argc; i++) a->quick |= !strcmp(argv[i], "--quick");
  set_defaults(a, a->quick);
  int first = assoc_parse_options("ablation", argc, argv, abl_options, abl_option, a);
  if (first < 0) return -1;
  if (first != argc) {
    fprintf(stderr, "assoc ablation: unexpected argument '%s' (see --help)\n", argv[first]);
    return -1;
  }
  if (a->seeds > 1 && a->seed + (uint64_t)a->seeds - 1 >= ABL_TRAIN_SEED_OFFSET) {
    fprintf(stderr, "assoc ablation: --seed + --seeds - 1 must be below 2^62\n");
    return -1;
  }
  if (a->pt_min > a->pt_max) {
    fprintf(stderr, "assoc ablation: --pt-min must not exceed --pt-max\n");
    return -1;
  }
  a->train.seed = a->seed;
  a->train.threads = a->threads;
  sg_io_error err;
  if (assoc_train_config_check(&a->train, &err)) {
    fprintf(stderr, "assoc ablation: %s\n", err.msg);
    return -1;
  }
  return 0;
}

/* ---- shared by the parts ---------------------------------------------------------------- */

bool abl_lead(void) {
  return assoc_dist_rank() == 0;
}

uint64_t abl_run_seed(const abl_args *a, int r) {
  return a->seed + (uint64_t)r;
}

uint64_t abl_train_data_seed(const abl_args *a, int r) {
  return r == 0 ? a->seed : ABL_TRAIN_SEED_OFFSET + abl_run_seed(a, r);
}

void abl_note(const abl_args *a, const char *fmt, ...) {
  if (a->quiet) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fflush(stderr);
}

void abl_path_in(char *buf, size_t len, const char *dir, const char *name) {
  snprintf(buf, len, "%s/%s", dir, name);
}

/* Creates the output directory (if new) and checks that it takes files. */
static int make_dir(const char *dir) {
  if (mkdir(dir, 0777) == 0 || errno == EEXIST) {
    struct stat st;
    char probe[1024];
    abl_path_in(probe, sizeof probe, dir, "ablation.json");
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
      return assoc_check_output("ablation", "out", probe);
  }
  fprintf(stderr, "assoc ablation: cannot create the directory %s: %s\n", dir,
          errno ? strerror(errno) : "not a directory");
  return -1;
}

/* ---- the command ---------------------------------------------------------------------- */

static void free_run(abl_run *r) {
  abl_free_models(r);
  abl_free_data(r);
}

static void print_header(const abl_args *a) {
  const assoc_train_config *c = &a->train;
  char seeds[96] = "", ranks[48] = "";
  if (assoc_dist_size() > 1)
    snprintf(ranks, sizeof ranks, " x %d MPI ranks (training)", assoc_dist_size());
  if (a->seeds > 1)
    snprintf(seeds, sizeof seeds, " .. %llu (%d runs per model; table: mean ± sd)",
             (unsigned long long)abl_run_seed(a, a->seeds - 1), a->seeds);
  printf(
      "ablation (%s): M 2, N 4, K 8, 30 dBm; d %d, h %d, L %d%s, tau %g, T %d%s; %d epochs x %lld "
      "mini-batches of %lld; lr %g..%g, T0 %g, T_mult %d, T_mu %d, delta %g; samples: train "
      "%lld, val %lld, test %lld; seed %llu%s; %d threads%s\n\n",
      a->quick ? "--quick" : "default", c->d, c->h, c->L, c->dtype == SG_F64 ? ", float64" : "",
      c->tau, c->sk_iters, c->sk_balanced ? " (balanced)" : "", c->epochs,
      (long long)c->batches_per_epoch, (long long)c->batch, c->lr_min, c->lr_max, c->t0, c->t_mult,
      c->t_mu, c->delta, (long long)a->train_samples, (long long)a->val_samples,
      (long long)a->test_samples, (unsigned long long)a->seed, seeds, omp_get_max_threads(), ranks);
}

static void warn_if_loaded(const abl_args *a) {
  double load[1];
  int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
  const char *wait = getenv("OMP_WAIT_POLICY");
  if (getloadavg(load, 1) == 1 && load[0] > cores && omp_get_max_threads() > 1 &&
      !(wait && !strcasecmp(wait, "passive")))
    abl_note(a,
             "assoc ablation: note: load average %.1f on %d cores: other processes share the "
             "cores, so the times reported here will be much longer than on an idle machine\n",
             load[0], cores);
}

static int run_ablation(abl_run *r) {
  const abl_args *a = r->a;
  if (!abl_lead()) return abl_train_models(r); /* the training runs alone */
  double t0 = omp_get_wtime();
  if (make_dir(a->out) || abl_prepare(r)) return -1;
  r->seconds_data = omp_get_wtime() - t0;
  if (abl_train_models(r) || abl_write_results(r)) return -1;
  const char *plots = abl_make_plots(r);
  r->seconds_total = omp_get_wtime() - t0;
  if (abl_write_json(r, plots)) return -1;
  print_header(a);
  abl_write_table(stdout, r);
  printf("\nTotal %.1f min. Results in %s/ (plots: %s).\n", r->seconds_total / 60, a->out, plots);
  /* every result was written but the plots (gnuplot missing or failed): never silently */
  return strncmp(plots, "skipped", 7) ? 0 : ASSOC_EXIT_PARTIAL;
}

/* The SM-GNN slot holds JointGNN unless a caller (the slot's test)
 * enabled other hooks first; before the options are parsed. */
static int parse_with_slots(int argc, char **argv, abl_args *a) {
  if (!abl_sm()) abl_sm_enable(&abl_jointgnn_hooks);
  return abl_parse(argc, argv, a);
}

int assoc_check_ablation(int argc, char **argv) {
  abl_args a;
  return parse_with_slots(argc, argv, &a) ? ASSOC_EXIT_USAGE : ASSOC_EXIT_OK;
}

int assoc_cmd_ablation(int argc, char **argv) {
  abl_args a;
  if (parse_with_slots(argc, argv, &a)) return ASSOC_EXIT_USAGE;
  int start = assoc_command_start("ablation", a.help, ablation_help, NULL, a.threads);
  if (start != ASSOC_GO_ON) return start;
  a.quiet |= !abl_lead();
  warn_if_loaded(&a);
  abl_run r = {.a = &a};
  int rc = run_ablation(&r);
  free_run(&r);
  if (rc < 0) return ASSOC_EXIT_FAIL;
  return rc;
}
