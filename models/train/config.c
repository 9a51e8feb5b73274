/* The training configuration: its defaults, its validation and the model
 * configuration it gives on a data set. */
#include "assoc_train.h"

#include <math.h>
#include <stdbool.h>

#include "models_internal.h"
#include "train_internal.h"

static const char *const loss_names[ASSOC_LOSS_COUNT] = {"rate", "es"};

const char *assoc_train_loss_name(assoc_train_loss l) {
  return assoc_enum_name(loss_names, ASSOC_LOSS_COUNT, (int)l);
}

int assoc_train_loss_parse(const char *name) {
  return assoc_enum_parse(loss_names, ASSOC_LOSS_COUNT, name);
}

static const char *const sampler_names[ASSOC_SAMPLER_COUNT] = {"shuffle", "strata"};

const char *assoc_train_sampler_name(assoc_train_sampler s) {
  return assoc_enum_name(sampler_names, ASSOC_SAMPLER_COUNT, (int)s);
}

int assoc_train_sampler_parse(const char *name) {
  return assoc_enum_parse(sampler_names, ASSOC_SAMPLER_COUNT, name);
}

/* The model part comes from the paper configuration of the model itself,
 * so the two defaults cannot drift apart. */
assoc_train_config assoc_train_config_default(assoc_gnn_variant v) {
  assoc_gnn_config m = assoc_gnn_config_paper(v);
  return (assoc_train_config){.variant = v,
                              .d = m.d,
                              .h = m.h,
                              .L = m.L,
                              .tau = m.tau,
                              .sk_iters = m.sk_iters,
                              .dtype = m.dtype,
                              .batch = 32,
                              .batches_per_epoch = 400,
                              .epochs = 1,
                              .lr_min = 1e-8,
                              .lr_max = 5e-5,
                              .t0 = 50,
                              .t_mult = 2,
                              .t_mu = 100,
                              .delta = 2.0,
                              .seed = 1,
                              .threads = 0,
                              .feature_scale = 0.0,
                              .eval_batch = 256};
}

/* The one validation of a training configuration: of the command line's
 * options, of a new run and of every checkpoint read. Every knob is
 * checked, in this order; the first one out of range is reported. */
const char *assoc_train_config_problem(const assoc_train_config *c, const char **knob) {
  const struct {
    const char *knob;
    bool bad;
    const char *why;
  } checks[] = {
      {"variant", c->variant < 0 || c->variant >= ASSOC_GNN_VARIANT_COUNT, "unknown model variant"},
      /* the widths assoc train accepts (and so every checkpoint holds) */
      {"d", c->d < 1 || c->d > 1 << 16, "d and h must be in 1..65536, L in 1..64"},
      {"h", c->h < 1 || c->h > 1 << 16, "d and h must be in 1..65536, L in 1..64"},
      {"L", c->L < 1 || c->L > 64, "d and h must be in 1..65536, L in 1..64"},
      {"tau", !(c->tau > 0) || !isfinite(c->tau), "tau must be a finite number > 0"},
      {"sk_iters", c->sk_iters < 1, "the Sinkhorn iterations must be >= 1"},
      {"dtype", c->dtype != SG_F32 && c->dtype != SG_F64, "dtype must be float32 or float64"},
      {"batch", c->batch < 1, "the batch size must be >= 1"},
      {"batches_per_epoch", c->batches_per_epoch < 0,
       "batches per epoch must be >= 0 (0: a full pass)"},
      {"epochs", c->epochs < 0, "epochs must be >= 0"},
      {"lr_min", !(c->lr_min >= 0) || !(c->lr_min <= c->lr_max),
       "learning rates need 0 <= lr_min <= lr_max, lr_max > 0, finite"},
      {"lr_max", !(c->lr_max > 0) || !isfinite(c->lr_max),
       "learning rates need 0 <= lr_min <= lr_max, lr_max > 0, finite"},
      {"t0", !(c->t0 > 0) || !isfinite(c->t0), "the first period t0 must be a finite number > 0"},
      {"t_mult", c->t_mult < 1, "the period multiplier must be >= 1"},
      {"t_mu", c->t_mu < 1, "the dual-update period t_mu must be >= 1"},
      {"delta", !isfinite(c->delta), "delta must be finite"},
      {"threads", c->threads < 0, "threads must be >= 0"},
      {"feature_scale", !(c->feature_scale >= 0) || !isfinite(c->feature_scale),
       "the feature scale must be finite and >= 0 (0: computed)"},
      {"eval_batch", c->eval_batch < 1, "the evaluation batch size must be >= 1"},
      {"sk_balanced", c->sk_balanced != 0 && c->sk_balanced != 1, "sk_balanced must be 0 or 1"},
      {"features", c->features < 0 || c->features >= ASSOC_FEATURE_KIND_COUNT,
       "unknown feature kind (channel, link or link-nodes)"},
      {"loss", c->loss < 0 || c->loss >= ASSOC_LOSS_COUNT, "unknown loss (rate or es)"},
      {"sampler", c->sampler < 0 || c->sampler >= ASSOC_SAMPLER_COUNT,
       "unknown sampler (shuffle or strata)"},
  };
  for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
    if (checks[i].bad) {
      if (knob) *knob = checks[i].knob;
      return checks[i].why;
    }
  return NULL;
}

int assoc_train_config_check(const assoc_train_config *c, sg_io_error *err) {
  const char *why = c ? assoc_train_config_problem(c, NULL) : "no configuration";
  return why ? assoc_fail(err, "%s", why) : 0;
}

static int node_width(int features, bool bs) {
  int fp, fq;
  assoc_node_feature_widths((assoc_feature_kind)features, &fp, &fq);
  return bs ? fp : fq;
}

assoc_gnn_config assoc_train_gnn_config(const assoc_train_config *c, int N) {
  return (assoc_gnn_config){.variant = c->variant,
                            .d = c->d,
                            .h = c->h,
                            .L = c->L,
                            .fp = node_width(c->features, true),
                            .fq = node_width(c->features, false),
                            .fe = assoc_feature_width((assoc_feature_kind)c->features, N),
                            .features = (assoc_feature_kind)c->features,
                            .dtype = c->dtype,
                            .tau = c->tau,
                            .sk_iters = c->sk_iters,
                            .sk_balanced = c->sk_balanced != 0,
                            .capacity = N,
                            .concat_inputs = false};
}
