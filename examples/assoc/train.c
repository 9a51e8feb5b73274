/* assoc train: trains an association GNN on a data set (models/train/assoc_train.h).
 *
 *   assoc train DATA --model attskgs|skgs|gs|sma --epochs E --out CKPT
 *               [--test DATA2] [--log CSV] [--resume CKPT] [knobs] [--json]
 *   assoc train DATA --model bfgnn --epochs E --out CKPT [knobs] [--norm project|full]
 *   assoc train DATA --model jointgnn --epochs E --out CKPT [knobs] [--norm project|full]
 *               [--penalty-after T [--penalty-mu X] [--delta X]]
 *
 * Progress (a bar with epoch, step, loss, rate, violations, lr and ETA) goes
 * to stderr when it is a terminal; one line per epoch to stdout unless
 * --quiet or --json; --json prints a final summary object. Ctrl-C stops
 * after the current mini-batch, leaving the last epoch's checkpoint as the
 * resume point. */
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "assoc_dist.h"
#include "assoc_train.h"
#include "cli.h"
#include "train_bfgnn.h"

static const char train_help[] =
    "usage: assoc train DATA --model NAME --epochs E --out CKPT [options]\n"
    "\n"
    "Trains an association GNN (docs/models.md) on the data set DATA (.npz from\n"
    "assoc gen): loss -mean R(A~) + sum_m mu_m mean ReLU(load_m - (N - delta)),\n"
    "the dual update of mu every T_mu epochs, Adam, cosine annealing with warm\n"
    "restarts stepped per mini-batch. The checkpoint CKPT (.npz) is written after\n"
    "every epoch (atomically) and holds the model, the feature scale, the Adam\n"
    "state, mu and the generator: --resume continues a run bit for bit.\n"
    "\n"
    "Under mpirun (mpirun -np R assoc train ...) every model trains data-parallel\n"
    "(the GNNs, bfgnn and jointgnn): each rank computes the gradient of its 1/R\n"
    "of every mini-batch, the ranks sum them in a fixed order, and every rank\n"
    "takes the same step: the same model as one process up to float round-off,\n"
    "the same bits on every run of R ranks. Rank 0 alone prints, evaluates\n"
    "--test and writes CKPT and --log; a checkpoint resumes on any number of\n"
    "ranks. --threads is per rank.\n"
    "\n"
    "  --model NAME             attskgs, skgs, gs or sma (required unless --resume),\n"
    "                           or bfgnn: beams for a given association, trained on\n"
    "                           RandInt, MaxSINR-capped and ES associations of DATA\n"
    "                           (-mean R; knobs d, h, L, batch, batches-per-epoch,\n"
    "                           lr, t0, t-mult, seed, dtype, feature-scale, threads),\n"
    "                           or jointgnn: association and beams together (SM-GNN;\n"
    "                           -mean R(A~, V) on DATA, the same knobs as bfgnn, and\n"
    "                           --resume, --checkpoint-every, --delta; evaluate with\n"
    "                           assoc eval)\n"
    "  --norm project|full      bfgnn and jointgnn: per-BS power onto the ball\n"
    "                           (default) or the sphere\n"
    "  --head direct|duality    bfgnn: the beam head outputs the beams (default)\n"
    "                           or the weights and powers of the duality structure\n"
    "                           (beams (I + sum lambda x* x^T)^-1 x*; docs/models.md)\n"
    "  --penalty-after T        jointgnn: add the load penalty of eq. (3),\n"
    "                           mu sum_m mean ReLU(load_m - (N - delta)), from epoch\n"
    "                           T + 1 on (default: never; T = 0: from the start)\n"
    "  --penalty-mu X           jointgnn: its mu, every BS (default 1)\n"
    "  --epochs E               train until E epochs are complete (required)\n"
    "  --out CKPT               checkpoint to write (required)\n"
    "  --test DATA2             data set for the per-epoch test metrics\n"
    "  --log CSV                per-epoch CSV log (when resuming: cut back to the\n"
    "                           checkpoint's epochs, then appended to)\n"
    "  --resume CKPT            continue the run of CKPT (its configuration is kept;\n"
    "                           only --epochs, --threads, --eval-batch may change)\n"
    "  --d D                    embedding width (default 512)\n"
    "  --h H                    MLP hidden width (default 1024)\n"
    "  --L L                    update layers (default 2)\n"
    "  --tau T                  Gumbel-softmax temperature (default 1)\n"
    "  --sk-iters T             Sinkhorn iterations (default 10)\n"
    "  --sk-balanced            balanced Sinkhorn: loads scaled to N at every column\n"
    "                           step, no kink at the cap (default: capacity, models.md)\n"
    "  --features F             inputs: channel (the paper's re/im of h_mk, default),\n"
    "                           link (per link: SNR dB, direction, MRT interference) or\n"
    "                           link-nodes (link, and BS demand, UE SNR margin; system.md)\n"
    "  --loss L                 rate (the paper's unsupervised loss, default) or es\n"
    "                           (cross-entropy to the ES association of each sample)\n"
    "  --batch B                mini-batch size (default 32)\n"
    "  --batches-per-epoch N    mini-batches per epoch, 0 = one full pass (default 400)\n"
    "  --sampler S              shuffle (B samples at a time of a shuffle of all,\n"
    "                           default) or strata (slot j of a batch from the j-th\n"
    "                           of B contiguous strata of the file; under mpirun a\n"
    "                           rank then reads only its strata of DATA)\n"
    "  --lr-max X, --lr-min X   learning-rate range (default 5e-5, 1e-8)\n"
    "  --t0 P                   first cosine period in epochs (default 50)\n"
    "  --t-mult K               period multiplier (default 2)\n"
    "  --t-mu P                 dual update every P epochs (default 100)\n"
    "  --delta X                load margin delta (default 2; jointgnn's penalty 0)\n"
    "  --seed X                 initialisation and data-order seed (default 1)\n"
    "  --dtype T                float32 (default) or float64\n"
    "  --feature-scale X        H feature scale (default: RMS on the training set)\n"
    "  --eval-batch B           test evaluation batch size (default 256)\n"
    "  --checkpoint-every N     write CKPT every N epochs and at the end (default 1)\n"
    "  --threads T              OpenMP threads (default: OMP_NUM_THREADS or all)\n"
    "  --detect-anomaly         check every op's output and every gradient for NaN\n"
    "                           and Inf; stop at the first with its op, shapes and\n"
    "                           call site (docs/design.md \"Anomaly mode\")\n"
    "  --json                   print a JSON summary at the end\n"
    "  --quiet                  no per-epoch lines and no progress bar\n"
    "  -h, --help               this help\n";

enum train_option {
  TR_MODEL = 1000,
  TR_EPOCHS,
  TR_OUT,
  TR_TEST,
  TR_LOG,
  TR_RESUME,
  TR_D,
  TR_H,
  TR_L,
  TR_TAU,
  TR_SK_ITERS,
  TR_SK_BALANCED,
  TR_FEATURES,
  TR_LOSS,
  TR_BATCH,
  TR_BPE,
  TR_LR_MAX,
  TR_LR_MIN,
  TR_T0,
  TR_T_MULT,
  TR_T_MU,
  TR_DELTA,
  TR_SEED,
  TR_DTYPE,
  TR_SCALE,
  TR_EVAL_BATCH,
  TR_EVERY,
  TR_THREADS,
  TR_JSON,
  TR_QUIET,
  TR_NORM,
  TR_HEAD,
  TR_PENALTY_AFTER,
  TR_PENALTY_MU,
  TR_DETECT_ANOMALY,
  TR_SAMPLER,
  TR_LAST
};

static const struct option train_options[] = {
    {"model", required_argument, NULL, TR_MODEL},
    {"epochs", required_argument, NULL, TR_EPOCHS},
    {"out", required_argument, NULL, TR_OUT},
    {"test", required_argument, NULL, TR_TEST},
    {"log", required_argument, NULL, TR_LOG},
    {"resume", required_argument, NULL, TR_RESUME},
    {"d", required_argument, NULL, TR_D},
    {"h", required_argument, NULL, TR_H},
    {"L", required_argument, NULL, TR_L},
    {"tau", required_argument, NULL, TR_TAU},
    {"sk-iters", required_argument, NULL, TR_SK_ITERS},
    {"sk-balanced", no_argument, NULL, TR_SK_BALANCED},
    {"features", required_argument, NULL, TR_FEATURES},
    {"loss", required_argument, NULL, TR_LOSS},
    {"batch", required_argument, NULL, TR_BATCH},
    {"batches-per-epoch", required_argument, NULL, TR_BPE},
    {"lr-max", required_argument, NULL, TR_LR_MAX},
    {"lr-min", required_argument, NULL, TR_LR_MIN},
    {"t0", required_argument, NULL, TR_T0},
    {"t-mult", required_argument, NULL, TR_T_MULT},
    {"t-mu", required_argument, NULL, TR_T_MU},
    {"delta", required_argument, NULL, TR_DELTA},
    {"seed", required_argument, NULL, TR_SEED},
    {"dtype", required_argument, NULL, TR_DTYPE},
    {"feature-scale", required_argument, NULL, TR_SCALE},
    {"eval-batch", required_argument, NULL, TR_EVAL_BATCH},
    {"checkpoint-every", required_argument, NULL, TR_EVERY},
    {"threads", required_argument, NULL, TR_THREADS},
    {"json", no_argument, NULL, TR_JSON},
    {"quiet", no_argument, NULL, TR_QUIET},
    {"norm", required_argument, NULL, TR_NORM},
    {"head", required_argument, NULL, TR_HEAD},
    {"penalty-after", required_argument, NULL, TR_PENALTY_AFTER},
    {"penalty-mu", required_argument, NULL, TR_PENALTY_MU},
    {"detect-anomaly", no_argument, NULL, TR_DETECT_ANOMALY},
    {"sampler", required_argument, NULL, TR_SAMPLER},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct train_args {
  assoc_train_config cfg;
  const char *data, *test, *out, *log, *resume;
  int checkpoint_every;
  bool json, quiet, help, model_given, epochs_given, bfgnn, jointgnn;
  assoc_train_beam_opts beam;     /* bfgnn and jointgnn */
  bool given[TR_LAST - TR_MODEL]; /* which options appeared */
} train_args;

static int parse_dtype(const char *v, sg_dtype *out) {
  if (!strcmp(v, "float32") || !strcmp(v, "f32")) return *out = SG_F32, 0;
  if (!strcmp(v, "float64") || !strcmp(v, "f64")) return *out = SG_F64, 0;
  fprintf(stderr, "assoc train: bad value '%s' for --dtype (expected float32 or float64)\n", v);
  return -1;
}

static int parse_model(const char *v, train_args *a) {
  a->bfgnn = !strcasecmp(v, "bfgnn");
  a->jointgnn = !strcasecmp(v, "jointgnn") || !strcasecmp(v, "sm");
  if (a->bfgnn || a->jointgnn) return 0;
  int m = assoc_gnn_variant_parse(v);
  assoc_gnn_variant *out = &a->cfg.variant;
  if (m < 0) {
    fprintf(stderr,
            "assoc train: unknown model '%s' (expected attskgs, skgs, gs, sma, bfgnn or "
            "jointgnn)\n",
            v);
    return -1;
  }
  *out = (assoc_gnn_variant)m;
  return 0;
}

static int parse_head(const char *v, assoc_bfgnn_head *out) {
  if (!strcmp(v, "direct")) return *out = ASSOC_BFGNN_HEAD_DIRECT, 0;
  if (!strcmp(v, "duality")) return *out = ASSOC_BFGNN_HEAD_DUALITY, 0;
  fprintf(stderr, "assoc train: bad value '%s' for --head (expected direct or duality)\n", v);
  return -1;
}

static int parse_norm(const char *v, assoc_beam_norm *out) {
  if (!strcmp(v, "project")) return *out = ASSOC_BEAM_PROJECT, 0;
  if (!strcmp(v, "full")) return *out = ASSOC_BEAM_FULL_POWER, 0;
  fprintf(stderr, "assoc train: bad value '%s' for --norm (expected project or full)\n", v);
  return -1;
}

/* Options of the model and the schedule. */
static int knob_option(train_args *a, int opt, const char *v) {
  const char *c = "train";
  assoc_train_config *k = &a->cfg;
  switch (opt) {
  case TR_D:
    return assoc_parse_int(c, "d", v, 1, 1 << 16, &k->d);
  case TR_H:
    return assoc_parse_int(c, "h", v, 1, 1 << 16, &k->h);
  case TR_L:
    return assoc_parse_int(c, "L", v, 1, 64, &k->L);
  case TR_TAU:
    return assoc_parse_double(c, "tau", v, 1e-6, 1e6, &k->tau);
  case TR_SK_ITERS:
    return assoc_parse_int(c, "sk-iters", v, 1, 100000, &k->sk_iters);
  case TR_SK_BALANCED:
    k->sk_balanced = 1;
    return 0;
  case TR_FEATURES:
    return assoc_parse_features(c, v, &k->features);
  case TR_LOSS:
    return assoc_parse_loss(c, v, &k->loss);
  case TR_SAMPLER:
    return assoc_parse_sampler(c, v, &k->sampler);
  case TR_BATCH:
    return assoc_parse_i64(c, "batch", v, 1, INT64_C(1) << 24, &k->batch);
  case TR_BPE:
    return assoc_parse_i64(c, "batches-per-epoch", v, 0, INT64_C(1) << 40, &k->batches_per_epoch);
  case TR_LR_MAX:
    return assoc_parse_double(c, "lr-max", v, 1e-12, 10, &k->lr_max);
  case TR_LR_MIN:
    return assoc_parse_double(c, "lr-min", v, 0, 10, &k->lr_min);
  case TR_T0:
    return assoc_parse_double(c, "t0", v, 1e-6, 1e9, &k->t0);
  case TR_T_MULT:
    return assoc_parse_int(c, "t-mult", v, 1, 1000, &k->t_mult);
  case TR_T_MU:
    return assoc_parse_int(c, "t-mu", v, 1, 1 << 30, &k->t_mu);
  case TR_DELTA:
    return assoc_parse_double(c, "delta", v, -1e6, 1e6, &k->delta);
  case TR_SEED:
    return assoc_parse_u64(c, "seed", v, UINT64_MAX, &k->seed);
  case TR_DTYPE:
    return parse_dtype(v, &k->dtype);
  case TR_SCALE:
    return assoc_parse_double(c, "feature-scale", v, 1e-300, 1e300, &k->feature_scale);
  default:
    return -1;
  }
}

static int train_option(void *args, int opt, char *v) {
  train_args *a = args;
  const char *c = "train";
  if (opt >= TR_MODEL && opt < TR_LAST) a->given[opt - TR_MODEL] = true;
  switch (opt) {
  case TR_MODEL:
    return parse_model(v, a);
  case TR_EPOCHS:
    return assoc_parse_int(c, "epochs", v, 0, 1 << 30, &a->cfg.epochs);
  case TR_OUT:
    return a->out = v, 0;
  case TR_TEST:
    return a->test = v, 0;
  case TR_LOG:
    return a->log = v, 0;
  case TR_RESUME:
    return a->resume = v, 0;
  case TR_EVAL_BATCH:
    return assoc_parse_i64(c, "eval-batch", v, 1, INT64_C(1) << 24, &a->cfg.eval_batch);
  case TR_EVERY:
    return assoc_parse_int(c, "checkpoint-every", v, 1, 1 << 30, &a->checkpoint_every);
  case TR_THREADS:
    return assoc_parse_threads(c, v, &a->cfg.threads);
  case TR_JSON:
    return a->json = true, 0;
  case TR_QUIET:
    return a->quiet = true, 0;
  case TR_NORM:
    return parse_norm(v, &a->beam.norm);
  case TR_HEAD:
    return parse_head(v, &a->beam.head);
  case TR_PENALTY_AFTER:
    return assoc_parse_int(c, "penalty-after", v, 0, 1 << 30, &a->beam.penalty_after);
  case TR_PENALTY_MU:
    return assoc_parse_double(c, "penalty-mu", v, 0, 1e12, &a->beam.penalty_mu);
  case TR_DETECT_ANOMALY:
    return 0; /* read through given() */
  case 'h':
    return a->help = true, 0;
  default:
    return knob_option(a, opt, v);
  }
}

static bool given(const train_args *a, int opt) {
  return a->given[opt - TR_MODEL];
}

static const char *option_name(int opt) {
  for (const struct option *o = train_options; o->name; o++)
    if (o->val == opt) return o->name;
  return "?";
}

/* The beam models take only the knobs they use (jointgnn also --delta,
 * --resume and --checkpoint-every);
 * --norm is theirs, --head bfgnn's, the penalty options jointgnn's. */
static int check_model_options(const train_args *a) {
  static const int not_beam[] = {TR_TEST,        TR_LOG,      TR_RESUME, TR_TAU,    TR_SK_ITERS,
                                 TR_SK_BALANCED, TR_FEATURES, TR_LOSS,   TR_T_MU,   TR_DELTA,
                                 TR_EVAL_BATCH,  TR_EVERY,    TR_JSON,   TR_SAMPLER};
  static const int jointgnn_only[] = {TR_PENALTY_AFTER, TR_PENALTY_MU};
  const char *model = a->bfgnn ? "bfgnn" : "jointgnn";
  if (!a->bfgnn && !a->jointgnn && given(a, TR_NORM)) {
    fprintf(stderr, "assoc train: --norm applies to --model bfgnn and jointgnn only\n");
    return -1;
  }
  if (!a->bfgnn && given(a, TR_HEAD)) {
    fprintf(stderr, "assoc train: --head applies to --model bfgnn only\n");
    return -1;
  }
  for (size_t i = 0; i < sizeof jointgnn_only / sizeof *jointgnn_only; i++)
    if (!a->jointgnn && given(a, jointgnn_only[i]))
      return fprintf(stderr, "assoc train: --%s applies to --model jointgnn only\n",
                     option_name(jointgnn_only[i])),
             -1;
  for (size_t i = 0; (a->bfgnn || a->jointgnn) && i < sizeof not_beam / sizeof *not_beam; i++) {
    bool joint_ok = not_beam[i] == TR_DELTA || not_beam[i] == TR_RESUME || not_beam[i] == TR_EVERY;
    if (!given(a, not_beam[i]) || (a->jointgnn && joint_ok)) continue;
    fprintf(stderr, "assoc train: --%s does not apply to --model %s\n", option_name(not_beam[i]),
            model);
    return -1;
  }
  return 0;
}

static int train_parse(int argc, char **argv, train_args *a) {
  *a = (train_args){.cfg = assoc_train_config_default(ASSOC_GNN_ATTSKGS),
                    .beam = {.penalty_after = -1, .penalty_mu = 1.0}};
  int first = assoc_parse_options("train", argc, argv, train_options, train_option, a);
  if (first < 0) return -1;
  if (a->help) return 0;
  if (first + 1 != argc) {
    fprintf(stderr, "assoc train: expected one training data set (see assoc train --help)\n");
    return -1;
  }
  a->data = argv[first];
  if (!given(a, TR_EPOCHS) || !a->out || (!given(a, TR_MODEL) && !a->resume)) {
    fprintf(stderr, "assoc train: --epochs, --out and --model (or --resume) are required "
                    "(see assoc train --help)\n");
    return -1;
  }
  const char *beam =
      a->resume && !given(a, TR_MODEL) ? assoc_beam_checkpoint_model(a->resume) : NULL;
  if (beam && !strcmp(beam, "JointGNN")) a->jointgnn = true; /* --resume alone */
  if (check_model_options(a)) return -1;
  a->beam.delta = given(a, TR_DELTA) ? a->cfg.delta : 0.0;
  a->beam.resume = a->resume;
  a->beam.checkpoint_every = a->checkpoint_every > 0 ? a->checkpoint_every : 1;
  sg_io_error err;
  if (assoc_train_config_check(&a->cfg, &err)) {
    fprintf(stderr, "assoc train: %s\n", err.msg);
    return -1;
  }
  return 0;
}

/* ---- resume: explicit options must agree with the checkpoint ------------------------- */

typedef struct knob_view {
  int opt;
  const char *name;
  double given, saved;
} knob_view;

/* A resumed run keeps the checkpoint's configuration; an option that asks
 * for something else is an error rather than silently ignored. */
static int check_resume_options(const train_args *a, const assoc_train_config *s,
                                const assoc_train_beam_opts *sb) {
  const assoc_train_config *g = &a->cfg;
  const assoc_train_beam_opts *gb = &a->beam;
  if (!sb) sb = gb; /* not a beam model: none of its options was given */
  const knob_view knobs[] = {
      {TR_NORM, "norm", gb->norm, sb->norm},
      {TR_PENALTY_AFTER, "penalty-after", gb->penalty_after, sb->penalty_after},
      {TR_PENALTY_MU, "penalty-mu", gb->penalty_mu, sb->penalty_mu},
      {TR_MODEL, "model", g->variant, s->variant},
      {TR_D, "d", g->d, s->d},
      {TR_H, "h", g->h, s->h},
      {TR_L, "L", g->L, s->L},
      {TR_TAU, "tau", g->tau, s->tau},
      {TR_SK_ITERS, "sk-iters", g->sk_iters, s->sk_iters},
      {TR_SK_BALANCED, "sk-balanced", g->sk_balanced, s->sk_balanced},
      {TR_FEATURES, "features", g->features, s->features},
      {TR_LOSS, "loss", g->loss, s->loss},
      {TR_BATCH, "batch", (double)g->batch, (double)s->batch},
      {TR_BPE, "batches-per-epoch", (double)g->batches_per_epoch, (double)s->batches_per_epoch},
      {TR_SAMPLER, "sampler", g->sampler, s->sampler},
      {TR_LR_MAX, "lr-max", g->lr_max, s->lr_max},
      {TR_LR_MIN, "lr-min", g->lr_min, s->lr_min},
      {TR_T0, "t0", g->t0, s->t0},
      {TR_T_MULT, "t-mult", g->t_mult, s->t_mult},
      {TR_T_MU, "t-mu", g->t_mu, s->t_mu},
      {TR_DELTA, "delta", g->delta, s->delta},
      {TR_SEED, "seed", (double)g->seed, (double)s->seed},
      {TR_DTYPE, "dtype", g->dtype, s->dtype},
      {TR_SCALE, "feature-scale", g->feature_scale, s->feature_scale},
  };
  for (size_t i = 0; i < sizeof knobs / sizeof knobs[0]; i++) {
    const knob_view *k = &knobs[i];
    if (!given(a, k->opt) || k->given == k->saved) continue;
    if (k->opt == TR_SEED && g->seed == s->seed) continue;
    fprintf(stderr,
            "assoc train: --%s %.10g differs from the checkpoint's %.10g; a resumed run keeps "
            "its configuration (only --epochs, --threads and --eval-batch may change)\n",
            k->name, k->given, k->saved);
    return -1;
  }
  return 0;
}

/* A resumed JointGNN run keeps its configuration, as a GNN run does. */
static int check_jointgnn_resume(const train_args *a) {
  assoc_train_config saved = a->cfg;
  assoc_train_beam_opts sb = a->beam;
  int done;
  if (assoc_train_jointgnn_saved(a->resume, &saved, &sb, &done)) return ASSOC_EXIT_FAIL;
  return check_resume_options(a, &saved, &sb) ? ASSOC_EXIT_USAGE : ASSOC_EXIT_OK;
}

/* ---- progress ------------------------------------------------------------------------- */

static volatile sig_atomic_t stop_requested;

static void on_interrupt(int sig) {
  (void)sig;
  stop_requested = 1;
}

typedef struct train_progress {
  bool bar, lines; /* progress bar on stderr (a terminal), per-epoch lines on stdout */
  int target_epochs, M;
  int64_t steps_left0; /* steps to go at the start of this call */
  int64_t step0;       /* global step at the start */
  double start, last_draw;
  bool drawn;
} train_progress;

static void format_eta(double seconds, char *buf, size_t n) {
  if (!isfinite(seconds) || seconds < 0) seconds = 0;
  long s = (long)(seconds + 0.5);
  snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
}

static void draw_bar(void *user, const assoc_step_info *i) {
  train_progress *p = user;
  double now = omp_get_wtime();
  if (!p->bar || now - p->last_draw < 0.1) return;
  p->last_draw = now;
  int64_t done = i->step - p->step0;
  double per_step = (now - p->start) / (double)(done > 0 ? done : 1);
  char eta[32];
  format_eta(per_step * (double)(p->steps_left0 - done), eta, sizeof eta);
  fprintf(stderr,
          "\r  epoch %d/%d  step %lld/%lld  loss %.4f  rate %.3f  viol %5.1f%%  lr %.2e  "
          "ETA %s ",
          i->epoch, p->target_epochs, (long long)i->batch, (long long)i->batches, i->loss, i->rate,
          100.0 * i->violation, i->lr, eta);
  fflush(stderr);
  p->drawn = true;
}

static void clear_bar(train_progress *p) {
  if (p->drawn) fprintf(stderr, "\r%110s\r", "");
  p->drawn = false;
}

static void print_epoch(void *user, const assoc_epoch_stats *st) {
  train_progress *p = user;
  clear_bar(p);
  if (!p->lines) return;
  printf("epoch %d/%d: loss %.5f  train rate %.4f  viol %.1f%%", st->epoch, p->target_epochs,
         st->loss, st->train_rate, 100.0 * st->violation_ratio);
  if (st->has_test)
    printf("  test rate %.4f (viol %.1f%%, LB %.4f)", st->test.mean_rate,
           100.0 * st->test.violation_ratio, st->test.mean_lb_rate);
  printf("  mu");
  for (int m = 0; m < p->M; m++) printf(" %.4g", st->mu[m]);
  printf("  lr %.3g  %.2f s\n", st->lr, st->seconds);
  fflush(stdout);
}

/* ---- output ------------------------------------------------------------------------ */

static void print_json(const train_args *a, const assoc_train_config *c, const assoc_dataset *train,
                       const assoc_train_result *r) {
  const assoc_epoch_stats *st = &r->last;
  bool have = r->epochs_this_call > 0, have_test = have && st->has_test;
  printf("{");
  assoc_json_string(stdout, "model", assoc_gnn_variant_name(c->variant), ", ");
  assoc_json_string(stdout, "data", a->data, ", ");
  assoc_json_string(stdout, "test", a->test, ", ");
  assoc_json_string(stdout, "checkpoint", a->out, ", ");
  printf("\"d\": %d, \"h\": %d, \"L\": %d, \"params\": %lld, \"epochs\": %d, "
         "\"epochs_this_run\": %d, \"steps\": %lld, \"interrupted\": %s, ",
         c->d, c->h, c->L, (long long)r->params, r->epochs_done, r->epochs_this_call,
         (long long)r->steps, r->interrupted ? "true" : "false");
  assoc_json_number(stdout, "loss", have ? st->loss : NAN, ", ");
  assoc_json_number(stdout, "train_rate", have ? st->train_rate : NAN, ", ");
  assoc_json_number(stdout, "violation_ratio", have ? st->violation_ratio : NAN, ", ");
  assoc_json_number(stdout, "test_rate", have_test ? st->test.mean_rate : NAN, ", ");
  assoc_json_number(stdout, "test_violation_ratio", have_test ? st->test.violation_ratio : NAN,
                    ", ");
  assoc_json_number(stdout, "test_lb_rate", have_test ? st->test.mean_lb_rate : NAN, ", ");
  printf("\"mu\": [");
  for (int m = 0; have && m < r->M; m++) printf("%s%.10g", m ? ", " : "", r->last_mu[m]);
  printf("], ");
  assoc_json_number(stdout, "lr", have ? st->lr : NAN, ", ");
  assoc_json_number(stdout, "seconds", r->seconds, ", ");
  assoc_json_number(stdout, "ms_per_step", have ? r->ms_per_step : NAN, ", ");
  assoc_json_number(stdout, "reduce_ms_per_step",
                    have ? r->ms_per_step * r->reduce_seconds / fmax(r->seconds, 1e-300) : NAN,
                    ", ");
  assoc_json_string(stdout, "sampler", assoc_train_sampler_name(c->sampler), ", ");
  /* samples in the file, and those rank 0 read of it */
  printf("\"samples\": %lld, \"samples_read\": %lld, ", (long long)assoc_dataset_total(train),
         (long long)train->S);
  printf("\"ranks\": %d, \"threads\": %d}\n", r->ranks, omp_get_max_threads());
}

/* ---- the command ------------------------------------------------------------------- */

/* The GNN's training set: whole, or under several ranks with the strata
 * sampler only the samples this rank draws from (assoc_train_rows). */
static int load_training_set(const train_args *a, assoc_dataset *ds) {
  sg_io_error err;
  assoc_train_config saved;
  const assoc_train_config *c = &a->cfg;
  int done, ranks = assoc_dist_size();
  if (a->resume && !assoc_checkpoint_read_config(a->resume, &saved, &done, &err)) c = &saved;
  /* (an unreadable checkpoint is reported by the run) */
  if (c->sampler != ASSOC_SAMPLER_STRATA || ranks == 1 || c->batch < ranks)
    return assoc_load_dataset("train", a->data,
                              ds); /* a batch too small to split is refused by the trainer */
  int64_t S, lo, hi;
  int M, N, K;
  if (assoc_dataset_peek(a->data, &S, &M, &N, &K, &err)) {
    fprintf(stderr, "assoc train: %s\n", err.msg);
    return -1;
  }
  if (S < c->batch)
    return assoc_load_dataset("train", a->data, ds); /* refused by the trainer with its sizes */
  assoc_train_rows(c, S, M, N, K, assoc_dist_rank(), ranks, &lo, &hi);
  if (!assoc_dataset_load_part(a->data, lo, hi, ds, &err)) return 0;
  fprintf(stderr, "assoc train: %s\n", err.msg);
  return -1;
}

/* Everything after argument parsing; 0, or an exit status. */
static int run(train_args *a, assoc_dataset *train, assoc_dataset *test) {
  sg_io_error err;
  assoc_train_config saved;
  int done = 0;
  if (a->resume) {
    if (assoc_checkpoint_read_config(a->resume, &saved, &done, &err)) {
      fprintf(stderr, "assoc train: %s\n", err.msg);
      return ASSOC_EXIT_FAIL;
    }
    if (check_resume_options(a, &saved, NULL)) return ASSOC_EXIT_USAGE;
  }
  if (a->cfg.threads) assoc_set_threads(a->cfg.threads);
  bool lead = assoc_dist_rank() == 0; /* of several MPI ranks, rank 0 alone prints */
  bool tty = lead && !a->quiet && isatty(STDERR_FILENO);
  train_progress prog = {.bar = tty, .lines = lead && !a->quiet && !a->json};
  prog.target_epochs = a->cfg.epochs, prog.M = train->M;
  assoc_train_io io = {.out = a->out,
                       .checkpoint_every = a->checkpoint_every,
                       .log = a->log,
                       .resume = a->resume,
                       .step_fn = draw_bar,
                       .epoch_fn = print_epoch,
                       .user = &prog,
                       .stop = &stop_requested};
  /* steps left for the ETA: the epochs still to do times the batches per epoch */
  const assoc_train_config *c = a->resume ? &saved : &a->cfg;
  int64_t per_epoch =
      c->batches_per_epoch ? c->batches_per_epoch : assoc_dataset_total(train) / c->batch;
  prog.steps_left0 = (int64_t)(a->cfg.epochs > done ? a->cfg.epochs - done : 0) * per_epoch;
  prog.step0 = (int64_t)done * per_epoch;
  prog.start = prog.last_draw = omp_get_wtime();
  signal(SIGINT, on_interrupt);
  assoc_train_result res;
  int rc = assoc_train_run(&a->cfg, train, test, &io, &res, &err);
  signal(SIGINT, SIG_DFL);
  clear_bar(&prog);
  if (rc) {
    fprintf(stderr, "assoc train: %s\n", err.msg);
    return ASSOC_EXIT_FAIL;
  }
  if (a->json && lead) print_json(a, c, train, &res);
  if (res.interrupted && !lead) return ASSOC_EXIT_FAIL;
  if (res.interrupted) {
    fprintf(stderr,
            "assoc train: interrupted during epoch %d; the checkpoint %s is the resume point "
            "(--resume %s)\n",
            res.epochs_done + 1, a->out, a->out);
    return ASSOC_EXIT_FAIL;
  }
  if (!a->quiet && !a->json && lead) {
    printf("%s: %d epochs, %lld steps, %lld parameters, %.1f ms per step",
           assoc_gnn_variant_name(c->variant), res.epochs_done, (long long)res.steps,
           (long long)res.params, res.ms_per_step);
    if (res.ranks > 1)
      printf(" on %d ranks (%.1f%% of it summing gradients)", res.ranks,
             100.0 * res.reduce_seconds / fmax(res.seconds, 1e-300));
    printf("; wrote %s\n", a->out);
  }
  return ASSOC_EXIT_OK;
}

int assoc_check_train(int argc, char **argv) {
  train_args a;
  return train_parse(argc, argv, &a) ? ASSOC_EXIT_USAGE : ASSOC_EXIT_OK;
}

int assoc_cmd_train(int argc, char **argv) {
  train_args a;
  if (train_parse(argc, argv, &a)) return ASSOC_EXIT_USAGE;
  if (a.help) return fputs(train_help, stdout), ASSOC_EXIT_OK;
  if (assoc_check_output("train", "out", a.out) || assoc_check_output("train", "log", a.log))
    return ASSOC_EXIT_FAIL;
  /* Every graph of the run; assoc_main's handler prints the report. */
  if (given(&a, TR_DETECT_ANOMALY)) sg_set_detect_anomaly(true);
  assoc_dataset train = {0}, test = {0};
  if (a.bfgnn || a.jointgnn ? assoc_load_dataset("train", a.data, &train)
                            : load_training_set(&a, &train))
    return ASSOC_EXIT_FAIL;
  if (a.bfgnn) {
    int status = assoc_train_bfgnn(&a.cfg, &train, &a.beam, a.out, a.quiet);
    assoc_dataset_free(&train);
    return status;
  }
  if (a.jointgnn) {
    int status = a.resume ? check_jointgnn_resume(&a) : ASSOC_EXIT_OK;
    if (!status) status = assoc_train_jointgnn(&a.cfg, &train, &a.beam, a.out, a.quiet);
    assoc_dataset_free(&train);
    return status;
  }
  bool with_test = a.test && assoc_dist_rank() == 0; /* rank 0 alone evaluates */
  if (with_test && assoc_load_dataset("train", a.test, &test)) {
    assoc_dataset_free(&train);
    return ASSOC_EXIT_FAIL;
  }
  int rc = run(&a, &train, with_test ? &test : NULL);
  assoc_dataset_free(&train);
  if (a.test) assoc_dataset_free(&test);
  return rc;
}
