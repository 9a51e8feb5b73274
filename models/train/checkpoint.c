/* Training checkpoints as .npz archives (written uncompressed, atomically
 * by sg_npz_writer: temp file + rename).
 *
 * Members:
 *   checkpoint_version           int64 scalar (4; version 1 stored float64
 *                                moments for float32 models)
 *   config.<knob>                the assoc_train_config, int64 or float64 scalars
 *                                (the seed as the int64 with the same bits)
 *   data.S/M/N/K/seed            the training set the run belongs to
 *   feature_scale, epoch, step   scalars
 *   mu                           float64 [M]
 *   rng                          int64 [4]: the run generator's xoshiro state (bits)
 *   param.<name>                 every parameter, in the model's dtype (exact)
 *   adam.m.<name>, adam.v.<name> Adam moments, in the model's dtype
 *   adam.steps                   int64 [parameters]: per-parameter step counts
 *   adam.beta1/beta2/eps/weight_decay  float64 scalars
 *
 * Reading checks every member's presence, dtype, shape and finiteness and
 * that no unknown member is present; a CRC or size error of the archive
 * (corruption, truncation) is caught by the .npz reader. */
#include "assoc_train.h"

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "models_internal.h"
#include "train_internal.h"

/* Version 3 added config.sk_balanced, version 4 config.features and
 * config.loss, version 5 config.sampler; older files (without them) are
 * read with the paper's choices: the capacity Sinkhorn, channel features,
 * the rate loss, and the shuffle sampler. */
enum { CHECKPOINT_VERSION = 5, OLDEST_VERSION = 2, MEMBER_NAME_MAX = SG_PARAM_NAME_MAX + 16 };

/* ---- the configuration as a table of scalar members ------------------------ */

typedef enum field_kind { FIELD_INT, FIELD_I64, FIELD_U64, FIELD_F64 } field_kind;

/* A knob's member. Reading checks only that the value fits the knob's C
 * type; whether it is in range is for the one validation of a
 * configuration (assoc_train_config_problem). */
typedef struct field {
  const char *name;
  field_kind kind;
  size_t offset;
} field;

#define CFG(member) offsetof(assoc_train_config, member)
static const field config_fields[] = {
    {"config.d", FIELD_INT, CFG(d)},
    {"config.h", FIELD_INT, CFG(h)},
    {"config.L", FIELD_INT, CFG(L)},
    {"config.tau", FIELD_F64, CFG(tau)},
    {"config.sk_iters", FIELD_INT, CFG(sk_iters)},
    {"config.batch", FIELD_I64, CFG(batch)},
    {"config.batches_per_epoch", FIELD_I64, CFG(batches_per_epoch)},
    {"config.epochs", FIELD_INT, CFG(epochs)},
    {"config.lr_min", FIELD_F64, CFG(lr_min)},
    {"config.lr_max", FIELD_F64, CFG(lr_max)},
    {"config.t0", FIELD_F64, CFG(t0)},
    {"config.t_mult", FIELD_INT, CFG(t_mult)},
    {"config.t_mu", FIELD_INT, CFG(t_mu)},
    {"config.delta", FIELD_F64, CFG(delta)},
    {"config.seed", FIELD_U64, CFG(seed)},
    {"config.threads", FIELD_INT, CFG(threads)},
    {"config.feature_scale", FIELD_F64, CFG(feature_scale)},
    {"config.eval_batch", FIELD_I64, CFG(eval_batch)},
};
/* Knobs added after version 2, with the version that added them. */
static const struct {
  field f;
  int64_t since;
} later_fields[] = {
    {{"config.sk_balanced", FIELD_INT, CFG(sk_balanced)}, 3},
    {{"config.features", FIELD_INT, CFG(features)}, 4},
    {{"config.loss", FIELD_INT, CFG(loss)}, 4},
    {{"config.sampler", FIELD_INT, CFG(sampler)}, 5},
};
enum { N_LATER_FIELDS = sizeof later_fields / sizeof later_fields[0] };

/* The knobs of later_fields a file of this version holds. */
static int later_fields_in(int64_t version) {
  int n = 0;
  for (int i = 0; i < N_LATER_FIELDS; i++) n += version >= later_fields[i].since;
  return n;
}
#undef CFG
enum { N_CONFIG_FIELDS = sizeof config_fields / sizeof config_fields[0] };

/* Scalar members besides config_fields: version, variant, dtype, data.* (5),
 * feature_scale, epoch, step; and the arrays mu and rng. */
enum { N_OTHER_MEMBERS = 3 + 5 + 3 + 2, N_ADAM_SCALARS = 5 /* steps + 4 hyper-parameters */ };

static int write_field(sg_npz_writer *w, const field *f, const assoc_train_config *c,
                       sg_io_error *err) {
  const char *p = (const char *)c + f->offset;
  switch (f->kind) {
  case FIELD_INT:
    return sg_npz_add_scalar_i64(w, f->name, *(const int *)p, err);
  case FIELD_I64:
    return sg_npz_add_scalar_i64(w, f->name, *(const int64_t *)p, err);
  case FIELD_U64:
    return sg_npz_add_scalar_i64(w, f->name, (int64_t) * (const uint64_t *)p, err);
  default:
    return sg_npz_add_scalar_f64(w, f->name, *(const double *)p, err);
  }
}

/* ---- writing ---------------------------------------------------------------- */

static int write_scalars(sg_npz_writer *w, const assoc_checkpoint_state *st, sg_io_error *err) {
  int rc = sg_npz_add_scalar_i64(w, "checkpoint_version", CHECKPOINT_VERSION, err);
  for (int i = 0; i < N_CONFIG_FIELDS && !rc; i++)
    rc = write_field(w, &config_fields[i], &st->cfg, err);
  for (int i = 0; i < N_LATER_FIELDS && !rc; i++)
    rc = write_field(w, &later_fields[i].f, &st->cfg, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "config.variant", st->cfg.variant, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "config.dtype", st->cfg.dtype, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "data.S", st->data_S, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "data.M", st->data_M, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "data.N", st->data_N, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "data.K", st->data_K, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "data.seed", (int64_t)st->data_seed, err);
  if (!rc) rc = sg_npz_add_scalar_f64(w, "feature_scale", st->feature_scale, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "epoch", st->epoch, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "step", st->step, err);
  return rc;
}

static int write_state_arrays(sg_npz_writer *w, const assoc_checkpoint_state *st,
                              sg_io_error *err) {
  sg_array mu = {
      .type = SG_NPY_F64, .ndim = 1, .shape = {st->data_M}, .numel = st->data_M, .data = st->mu};
  int64_t rng_bits[4];
  for (int i = 0; i < 4; i++) rng_bits[i] = (int64_t)st->rng.s[i];
  sg_array rng = {.type = SG_NPY_I64, .ndim = 1, .shape = {4}, .numel = 4, .data = rng_bits};
  int rc = sg_npz_add_array(w, "mu", &mu, err);
  if (!rc) rc = sg_npz_add_array(w, "rng", &rng, err);
  return rc;
}

static int write_params(sg_npz_writer *w, const sg_params *p, sg_io_error *err) {
  char name[MEMBER_NAME_MAX];
  int rc = 0;
  for (int i = 0; i < sg_params_count(p) && !rc; i++) {
    snprintf(name, sizeof name, "param.%s", sg_params_name(p, i));
    rc = sg_npz_add_tensor(w, name, sg_params_at(p, i), err);
  }
  return rc;
}

int assoc_checkpoint_write_adam(sg_npz_writer *w, const sg_params *p, const sg_adam *a,
                                sg_io_error *err) {
  char name[MEMBER_NAME_MAX];
  int rc = 0;
  for (int i = 0; i < sg_params_count(p) && !rc; i++) {
    snprintf(name, sizeof name, "adam.m.%s", sg_params_name(p, i));
    rc = sg_npz_add_tensor(w, name, a->m[i], err);
    snprintf(name, sizeof name, "adam.v.%s", sg_params_name(p, i));
    if (!rc) rc = sg_npz_add_tensor(w, name, a->v[i], err);
  }
  if (rc) return rc;
  sg_array steps = {.type = SG_NPY_I64,
                    .ndim = 1,
                    .shape = {a->n_params},
                    .numel = a->n_params,
                    .data = a->steps};
  rc = sg_npz_add_array(w, "adam.steps", &steps, err);
  if (!rc) rc = sg_npz_add_scalar_f64(w, "adam.beta1", a->beta1, err);
  if (!rc) rc = sg_npz_add_scalar_f64(w, "adam.beta2", a->beta2, err);
  if (!rc) rc = sg_npz_add_scalar_f64(w, "adam.eps", a->eps, err);
  if (!rc) rc = sg_npz_add_scalar_f64(w, "adam.weight_decay", a->weight_decay, err);
  return rc;
}

int assoc_checkpoint_check_params(const sg_params *p, const char *path, sg_io_error *err) {
  for (int i = 0; i < sg_params_count(p); i++) {
    int64_t bad = sg_first_nonfinite(sg_params_at(p, i));
    if (bad >= 0)
      return assoc_fail(err,
                        "%s: not written: parameter '%s' is %g at element %lld (training "
                        "diverged; assoc train --detect-anomaly names the op)",
                        path, sg_params_name(p, i), sg_get(sg_params_at(p, i), bad),
                        (long long)bad);
  }
  return 0;
}

int assoc_checkpoint_write(const char *path, const assoc_checkpoint_state *st, sg_io_error *err) {
  if (!st || !st->model || !st->mu)
    return assoc_fail(err, "%s: nothing to write", path ? path : "(null)");
  if (st->adam && st->adam->n_params != sg_params_count(st->model->params))
    return assoc_fail(err, "%s: the optimiser does not match the model", path);
  if (assoc_checkpoint_check_params(st->model->params, path, err)) return -1;
  sg_npz_writer *w = sg_npz_writer_open(path, false, err);
  if (!w) return -1;
  int rc = write_scalars(w, st, err);
  if (!rc) rc = write_state_arrays(w, st, err);
  if (!rc) rc = write_params(w, st->model->params, err);
  if (!rc && st->adam) rc = assoc_checkpoint_write_adam(w, st->model->params, st->adam, err);
  if (rc) {
    sg_npz_writer_abort(w);
    return -1;
  }
  return sg_npz_writer_close(w, err);
}

/* ---- reading ------------------------------------------------------------------ */

/* The reader's context: the archive and its path for messages. */
typedef struct reader {
  const sg_npz *z;
  const char *path;
  sg_io_error *err;
  int64_t version; /* set by read_config */
} reader;

static const sg_array *member(const reader *r, const char *name) {
  const sg_array *a = sg_npz_get(r->z, name);
  if (!a)
    assoc_fail(r->err, "%s: not a complete training checkpoint: member '%s' is missing", r->path,
               name);
  return a;
}

static const sg_array *scalar_member(const reader *r, const char *name, sg_npy_type type) {
  const sg_array *a = member(r, name);
  if (a && (a->type != type || a->numel != 1 || a->ndim != 0)) {
    assoc_fail(r->err, "%s: member '%s' is a %s array of %lld elements, expected a %s scalar",
               r->path, name, sg_npy_type_name(a->type), (long long)a->numel,
               sg_npy_type_name(type));
    return NULL;
  }
  return a;
}

int assoc_checkpoint_i64_in(const sg_array *a, const char *path, const char *name, int64_t lo,
                            int64_t hi, int64_t *out, sg_io_error *err) {
  memcpy(out, a->data, sizeof *out);
  if (*out >= lo && *out <= hi) return 0;
  return assoc_fail(err, "%s: member '%s' = %lld is out of range [%lld, %lld]", path, name,
                    (long long)*out, (long long)lo, (long long)hi);
}

static int read_i64(const reader *r, const char *name, int64_t lo, int64_t hi, int64_t *out) {
  const sg_array *a = scalar_member(r, name, SG_NPY_I64);
  return a ? assoc_checkpoint_i64_in(a, r->path, name, lo, hi, out, r->err) : -1;
}

static int read_int(const reader *r, const char *name, int64_t lo, int64_t hi, int *out) {
  int64_t v;
  if (read_i64(r, name, lo, hi, &v)) return -1;
  *out = (int)v;
  return 0;
}

static int read_f64(const reader *r, const char *name, double *out) {
  const sg_array *a = scalar_member(r, name, SG_NPY_F64);
  if (!a) return -1;
  memcpy(out, a->data, sizeof *out);
  if (!isfinite(*out)) return assoc_fail(r->err, "%s: member '%s' is not finite", r->path, name);
  return 0;
}

static int read_field(const reader *r, const field *f, assoc_train_config *c) {
  char *p = (char *)c + f->offset;
  int64_t v;
  switch (f->kind) {
  case FIELD_INT:
    return read_int(r, f->name, INT_MIN, INT_MAX, (int *)p);
  case FIELD_I64:
    return read_i64(r, f->name, INT64_MIN, INT64_MAX, (int64_t *)p);
  case FIELD_U64:
    if (read_i64(r, f->name, INT64_MIN, INT64_MAX, &v)) return -1;
    *(uint64_t *)p = (uint64_t)v;
    return 0;
  default:
    return read_f64(r, f->name, (double *)p);
  }
}

static int read_config(reader *r, assoc_train_config *c) {
  int64_t version;
  int variant, dtype;
  if (read_i64(r, "checkpoint_version", INT64_MIN, INT64_MAX, &version)) return -1;
  if (version < OLDEST_VERSION || version > CHECKPOINT_VERSION)
    return assoc_fail(r->err, "%s: checkpoint version %lld, this program reads versions %d to %d",
                      r->path, (long long)version, OLDEST_VERSION, CHECKPOINT_VERSION);
  r->version = version;
  *c = (assoc_train_config){0};
  for (int i = 0; i < N_CONFIG_FIELDS; i++)
    if (read_field(r, &config_fields[i], c)) return -1;
  for (int i = 0; i < N_LATER_FIELDS; i++)
    if (version >= later_fields[i].since && read_field(r, &later_fields[i].f, c)) return -1;
  if (read_int(r, "config.variant", INT_MIN, INT_MAX, &variant) ||
      read_int(r, "config.dtype", INT_MIN, INT_MAX, &dtype))
    return -1;
  c->variant = (assoc_gnn_variant)variant, c->dtype = (sg_dtype)dtype;
  const char *knob, *why = assoc_train_config_problem(c, &knob);
  if (why)
    return assoc_fail(r->err, "%s: member 'config.%s' is out of range: %s", r->path, knob, why);
  return 0;
}

static int read_run_state(const reader *r, assoc_checkpoint_state *st) {
  int64_t seed;
  if (read_i64(r, "data.S", 1, INT64_MAX, &st->data_S) ||
      read_int(r, "data.M", 1, ASSOC_MAX_BS, &st->data_M) ||
      read_int(r, "data.N", 1, ASSOC_MAX_ANTENNAS, &st->data_N) ||
      read_int(r, "data.K", 1, ASSOC_MAX_UES, &st->data_K) ||
      read_i64(r, "data.seed", INT64_MIN, INT64_MAX, &seed) ||
      read_f64(r, "feature_scale", &st->feature_scale) ||
      read_int(r, "epoch", 0, INT_MAX, &st->epoch) || read_i64(r, "step", 0, INT64_MAX, &st->step))
    return -1;
  st->data_seed = (uint64_t)seed;
  if (!(st->feature_scale > 0))
    return assoc_fail(r->err, "%s: feature_scale %g is not positive", r->path, st->feature_scale);
  return 0;
}

/* A member of the given type and shape; NULL after a message otherwise. */
static const sg_array *shaped_member(const reader *r, const char *name, sg_npy_type type, int ndim,
                                     const int64_t *shape) {
  const sg_array *a = member(r, name);
  return a ? assoc_checkpoint_shaped(a, r->path, name, type, ndim, shape, r->err) : NULL;
}

const sg_array *assoc_checkpoint_shaped(const sg_array *a, const char *path, const char *name,
                                        sg_npy_type type, int ndim, const int64_t *shape,
                                        sg_io_error *err) {
  bool ok = a->type == type && a->ndim == ndim;
  for (int i = 0; ok && i < ndim; i++) ok = a->shape[i] == shape[i];
  if (ok) return a;
  char got[96], want[96];
  assoc_fail(err, "%s: member '%s' is %s %s, expected %s %s", path, name, sg_npy_type_name(a->type),
             sg_shape_str(a->ndim, a->shape, got), sg_npy_type_name(type),
             sg_shape_str(ndim, shape, want));
  return NULL;
}

static int read_mu_rng(const reader *r, assoc_checkpoint_state *st) {
  int64_t M = st->data_M, four = 4;
  const sg_array *mu = shaped_member(r, "mu", SG_NPY_F64, 1, &M);
  const sg_array *rng = mu ? shaped_member(r, "rng", SG_NPY_I64, 1, &four) : NULL;
  if (!rng) return -1;
  st->mu = sg_malloc((size_t)M * sizeof *st->mu);
  if (!st->mu) return assoc_fail(r->err, "%s: out of memory", r->path);
  memcpy(st->mu, mu->data, (size_t)M * sizeof *st->mu);
  for (int64_t m = 0; m < M; m++)
    if (!isfinite(st->mu[m]))
      return assoc_fail(r->err, "%s: mu[%lld] is not finite", r->path, (long long)m);
  memcpy(st->rng.s, rng->data, sizeof st->rng.s);
  if (!(st->rng.s[0] | st->rng.s[1] | st->rng.s[2] | st->rng.s[3]))
    return assoc_fail(r->err, "%s: the generator state is all zero", r->path);
  return 0;
}

/* Copies a float member into tensor t (same dtype and shape), checking that
 * every value is finite and, when nonneg, >= 0. */
static int read_tensor(const reader *r, const char *name, sg_tensor *t, bool nonneg) {
  sg_npy_type type = t->dtype == SG_F32 ? SG_NPY_F32 : SG_NPY_F64;
  const sg_array *a = shaped_member(r, name, type, t->ndim, t->shape);
  if (!a) return -1;
  memcpy(t->data, a->data, (size_t)t->numel * sg_dtype_size(t->dtype));
  for (int64_t i = 0; i < t->numel; i++) {
    double v = sg_get(t, i);
    if (!isfinite(v) || (nonneg && v < 0))
      return assoc_fail(r->err, "%s: member '%s' holds %g at index %lld", r->path, name, v,
                        (long long)i);
  }
  return 0;
}

static int read_params(const reader *r, sg_params *p) {
  char name[MEMBER_NAME_MAX];
  for (int i = 0; i < sg_params_count(p); i++) {
    snprintf(name, sizeof name, "param.%s", sg_params_name(p, i));
    if (read_tensor(r, name, sg_params_at(p, i), false)) return -1;
  }
  return 0;
}

static int read_adam(const reader *r, const sg_params *p, sg_adam *a) {
  char name[MEMBER_NAME_MAX];
  int64_t n = a->n_params;
  const sg_array *steps = shaped_member(r, "adam.steps", SG_NPY_I64, 1, &n);
  if (!steps || read_f64(r, "adam.beta1", &a->beta1) || read_f64(r, "adam.beta2", &a->beta2) ||
      read_f64(r, "adam.eps", &a->eps) || read_f64(r, "adam.weight_decay", &a->weight_decay))
    return -1;
  memcpy(a->steps, steps->data, (size_t)n * sizeof *a->steps);
  for (int i = 0; i < a->n_params; i++) {
    if (a->steps[i] < 0) return assoc_fail(r->err, "%s: negative Adam step count", r->path);
    snprintf(name, sizeof name, "adam.m.%s", sg_params_name(p, i));
    if (read_tensor(r, name, a->m[i], false)) return -1;
    snprintf(name, sizeof name, "adam.v.%s", sg_params_name(p, i));
    if (read_tensor(r, name, a->v[i], true)) return -1;
  }
  return 0;
}

/* Every member must be one this reader knows: no extra parameters. */
int assoc_checkpoint_read_adam(const sg_npz *z, const char *path, const sg_params *p, sg_adam *a,
                               sg_io_error *err) {
  reader r = {.z = z, .path = path, .err = err};
  return read_adam(&r, p, a);
}

static int check_member_count(const reader *r, int n_params) {
  bool has_adam = sg_npz_get(r->z, "adam.steps") != NULL;
  int expected = N_CONFIG_FIELDS + later_fields_in(r->version) + N_OTHER_MEMBERS + n_params +
                 (has_adam ? 2 * n_params + N_ADAM_SCALARS : 0);
  int count = sg_npz_count(r->z);
  if (count != expected)
    return assoc_fail(
        r->err,
        "%s: %d members, expected %d for this model (%d parameters%s): an unknown member "
        "or a checkpoint of a different model",
        r->path, count, expected, n_params, has_adam ? " with Adam state" : "");
  return 0;
}

int64_t assoc_checkpoint_param_budget(const sg_npz *z) {
  int64_t n = 0; /* bounded by the file's size */
  for (int i = 0; i < sg_npz_count(z); i++) {
    const char *name = sg_npz_name(z, i);
    const sg_array *a = strncmp(name, "param.", 6) == 0 ? sg_npz_get(z, name) : NULL;
    if (a) n += a->numel;
  }
  return n > 0 ? 2 * n : 1; /* 0 would mean no limit */
}

static int read_model(const reader *r, bool with_adam, assoc_checkpoint_state *st) {
  st->gnn = assoc_train_gnn_config(&st->cfg, st->data_N);
  assoc_gnn_config limited = st->gnn;
  limited.max_params = assoc_checkpoint_param_budget(r->z);
  st->model = assoc_gnn_new(&limited, 0); /* initialised, then overwritten */
  if (!st->model)
    return assoc_fail(r->err,
                      "%s: cannot build the model of its configuration (d %d, h %d, L %d): "
                      "far more parameters than the file holds (%lld values at most), or out "
                      "of memory",
                      r->path, st->cfg.d, st->cfg.h, st->cfg.L, (long long)limited.max_params);
  sg_params *p = st->model->params;
  if (read_params(r, p)) return -1;
  if (with_adam) {
    st->adam = sg_adam_new(sg_params_tensors(p), sg_params_count(p), st->cfg.lr_max);
    if (!st->adam) return assoc_fail(r->err, "%s: out of memory", r->path);
    if (read_adam(r, p, st->adam)) return -1;
  }
  /* last, so that a missing or malformed member is named above */
  return check_member_count(r, sg_params_count(p));
}

void assoc_checkpoint_state_free(assoc_checkpoint_state *st) {
  if (!st) return;
  sg_adam_free(st->adam);
  assoc_gnn_free(st->model);
  sg_mfree(st->mu);
  st->adam = NULL, st->model = NULL, st->mu = NULL;
}

int assoc_checkpoint_read(const char *path, bool with_adam, assoc_checkpoint_state *st,
                          sg_io_error *err) {
  *st = (assoc_checkpoint_state){0};
  if (!path) return assoc_fail(err, "(null): no checkpoint file given");
  sg_npz *z = sg_npz_open(path, err);
  if (!z) return -1;
  reader r = {.z = z, .path = path, .err = err};
  int rc = read_config(&r, &st->cfg);
  if (!rc) rc = read_run_state(&r, st);
  if (!rc) rc = read_mu_rng(&r, st);
  if (!rc) rc = read_model(&r, with_adam, st);
  sg_npz_close(z);
  if (rc) assoc_checkpoint_state_free(st);
  return rc;
}

assoc_gnn *assoc_checkpoint_load_model(const char *path, double *feature_scale,
                                       assoc_train_config *cfg_out, sg_io_error *err) {
  assoc_checkpoint_state st;
  if (assoc_checkpoint_read(path, false, &st, err)) return NULL;
  if (feature_scale) *feature_scale = st.feature_scale;
  if (cfg_out) *cfg_out = st.cfg;
  assoc_gnn *m = st.model;
  st.model = NULL;
  assoc_checkpoint_state_free(&st);
  return m;
}

int assoc_checkpoint_read_config(const char *path, assoc_train_config *cfg, int *epoch,
                                 sg_io_error *err) {
  if (!path) return assoc_fail(err, "(null): no checkpoint file given");
  sg_npz *z = sg_npz_open(path, err);
  if (!z) return -1;
  reader r = {.z = z, .path = path, .err = err};
  assoc_checkpoint_state st = {0};
  int rc = read_config(&r, &st.cfg);
  if (!rc) rc = read_run_state(&r, &st);
  sg_npz_close(z);
  if (!rc && cfg) *cfg = st.cfg;
  if (!rc && epoch) *epoch = st.epoch;
  return rc;
}
