/* Checkpoints of the beam models, BFGNN and JointGNN, as .npz archives
 * (uncompressed, written atomically by sg_npz_writer: temp file + rename).
 * No optimiser state. One writer and one reader serve both models, each
 * described by a table of its configuration's fields; a new field is one
 * row of its model's table.
 *
 * Members:
 *   <model>_checkpoint_version   int64 scalar: bfgnn_ (2; version 1 had no
 *                                config.head, read as the direct head),
 *                                jointgnn_ (1)
 *   config.<field>               int64 scalars (ints, enums, booleans) and
 *                                float64 scalars (positive reals), per table
 *   feature_scale                float64 scalar (> 0)
 *   param.<name>                 every parameter, in the model's dtype (exact)
 *
 * Reading checks every member's presence, dtype, shape, range and
 * finiteness and that no other member is present; a CRC or size error of
 * the archive (corruption, truncation) is caught by the .npz reader. */
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "assoc_train.h"
#include "models_internal.h"
#include "train_internal.h"

enum { CKPT_NAME_MAX = SG_PARAM_NAME_MAX + 16 };

_Static_assert(sizeof(sg_dtype) == sizeof(int) && sizeof(assoc_beam_norm) == sizeof(int) &&
                   sizeof(assoc_bfgnn_head) == sizeof(int),
               "the config tables store enums as int");

typedef enum field_kind {
  FIELD_INT,      /* int or an enum, as int64, in [lo, hi] */
  FIELD_BOOL,     /* bool, as int64 0 or 1 */
  FIELD_POSITIVE, /* double, as float64, finite and > 0 */
} field_kind;

typedef struct field {
  const char *name; /* the member's name, "config.<field>" */
  field_kind kind;
  int lo, hi;
  size_t offset; /* in the model's configuration struct */
  int since;     /* the first checkpoint version with it; older files leave it 0 */
} field;

#define INT_FIELD(T, f, lo, hi)                                                                    \
  { "config." #f, FIELD_INT, lo, hi, offsetof(T, f), 1 }
#define INT_FIELD_SINCE(T, f, lo, hi, since)                                                       \
  { "config." #f, FIELD_INT, lo, hi, offsetof(T, f), since }
#define BOOL_FIELD(T, f)                                                                           \
  { "config." #f, FIELD_BOOL, 0, 1, offsetof(T, f), 1 }
#define POSITIVE_FIELD(T, f)                                                                       \
  { "config." #f, FIELD_POSITIVE, 0, 0, offsetof(T, f), 1 }
#define WIDTH_FIELDS(T)                                                                            \
  INT_FIELD(T, d, 1, 1 << 16), INT_FIELD(T, h, 1, 1 << 16), INT_FIELD(T, L, 1, 64),                \
      INT_FIELD(T, n_antennas, 1, ASSOC_MAX_ANTENNAS), INT_FIELD(T, dtype, SG_F32, SG_F64),        \
      INT_FIELD(T, norm, ASSOC_BEAM_PROJECT, ASSOC_BEAM_FULL_POWER), BOOL_FIELD(T, concat_inputs)

/* A model kind: its name in messages, its version member, its
 * configuration's fields, and how to build, reach and free a model. */
typedef struct model_kind {
  const char *label, *version_key;
  int version; /* written; versions 1..version are read */
  const field *fields;
  int n_fields;
  /* initialised from seed 0, then overwritten; with at most max_params
   * parameter values (assoc_gnn_config.max_params) */
  void *(*build)(const void *cfg, int64_t max_params);
  const char *(*problem)(const void *cfg); /* why build would refuse cfg, or NULL */
  size_t trunk; /* offsetof the model's assoc_gnn trunk, which owns the parameters */
  void (*destroy)(void *model);
  bool has_run; /* checkpoints may hold a training run's state (run.*, adam.*) */
} model_kind;

static sg_params *params_of(const model_kind *k, const void *model) {
  return ((const assoc_gnn *)((const char *)model + k->trunk))->params;
}

/* ---- writing ------------------------------------------------------------------ */

static int write_field(sg_npz_writer *w, const field *f, const void *cfg, sg_io_error *err) {
  const char *at = (const char *)cfg + f->offset;
  if (f->kind == FIELD_POSITIVE) {
    double v;
    memcpy(&v, at, sizeof v);
    return sg_npz_add_scalar_f64(w, f->name, v, err);
  }
  int v = 0;
  if (f->kind == FIELD_BOOL)
    v = *(const bool *)at;
  else
    memcpy(&v, at, sizeof v);
  return sg_npz_add_scalar_i64(w, f->name, v, err);
}

static int write_members(sg_npz_writer *w, const model_kind *k, const void *cfg, const sg_params *p,
                         double scale, sg_io_error *err) {
  int rc = sg_npz_add_scalar_i64(w, k->version_key, k->version, err);
  for (int i = 0; i < k->n_fields && !rc; i++) rc = write_field(w, &k->fields[i], cfg, err);
  if (!rc) rc = sg_npz_add_scalar_f64(w, "feature_scale", scale, err);
  char name[CKPT_NAME_MAX];
  for (int i = 0; i < sg_params_count(p) && !rc; i++) {
    snprintf(name, sizeof name, "param.%s", sg_params_name(p, i));
    rc = sg_npz_add_tensor(w, name, sg_params_at(p, i), err);
  }
  return rc;
}

/* A training run's state to write with the model (NULL: none). */
typedef struct run_out {
  const assoc_jointgnn_train_opts *o;
  const assoc_beam_train_state *st;
} run_out;

static int write_run(sg_npz_writer *w, const run_out *run, const sg_params *p, sg_io_error *err);

static int write_checkpoint(const char *path, const model_kind *k, const void *model,
                            const void *cfg, double scale, const run_out *run, sg_io_error *err) {
  if (!path || !model || !(scale > 0) || !isfinite(scale))
    return assoc_fail(err, "%s: nothing to write (need a %s model and a feature scale > 0)",
                      path ? path : "(null)", k->label);
  const sg_params *p = params_of(k, model);
  if (assoc_checkpoint_check_params(p, path, err)) return -1;
  sg_npz_writer *w = sg_npz_writer_open(path, false, err);
  if (!w) return -1;
  int rc = write_members(w, k, cfg, p, scale, err);
  if (!rc && run) rc = write_run(w, run, p, err);
  if (!rc) return sg_npz_writer_close(w, err);
  sg_npz_writer_abort(w);
  return -1;
}

/* ---- reading ------------------------------------------------------------------ */

typedef struct reader {
  const sg_npz *z;
  const char *path;
  const model_kind *kind;
  sg_io_error *err;
  int version; /* the file's, once read */
} reader;

/* A member of the given type and shape; NULL after a message otherwise. */
static const sg_array *get(const reader *r, const char *name, sg_npy_type type, int ndim,
                           const int64_t *shape) {
  const sg_array *a = sg_npz_get(r->z, name);
  if (!a) {
    assoc_fail(r->err, "%s: not a %s checkpoint: member '%s' is missing", r->path, r->kind->label,
               name);
    return NULL;
  }
  return assoc_checkpoint_shaped(a, r->path, name, type, ndim, shape, r->err);
}

static int read_i64(const reader *r, const char *name, int64_t lo, int64_t hi, int64_t *out) {
  const sg_array *a = get(r, name, SG_NPY_I64, 0, NULL);
  return a ? assoc_checkpoint_i64_in(a, r->path, name, lo, hi, out, r->err) : -1;
}

static int read_int(const reader *r, const char *name, int lo, int hi, int *out) {
  int64_t v = 0;
  int rc = read_i64(r, name, lo, hi, &v);
  if (!rc) *out = (int)v; /* in [lo, hi]: fits */
  return rc;
}

static int read_positive(const reader *r, const char *name, double *out) {
  const sg_array *a = get(r, name, SG_NPY_F64, 0, NULL);
  if (!a) return -1;
  memcpy(out, a->data, sizeof *out);
  if (!isfinite(*out) || !(*out > 0))
    return assoc_fail(r->err, "%s: member '%s' = %g is not finite and positive", r->path, name,
                      *out);
  return 0;
}

static int read_field(const reader *r, const field *f, void *cfg) {
  char *at = (char *)cfg + f->offset;
  if (f->kind == FIELD_POSITIVE) return read_positive(r, f->name, (double *)at);
  int v = 0;
  if (read_int(r, f->name, f->lo, f->hi, &v)) return -1;
  if (f->kind == FIELD_BOOL)
    *(bool *)at = v;
  else
    memcpy(at, &v, sizeof v);
  return 0;
}

static int read_version(reader *r) {
  const sg_array *a = sg_npz_get(r->z, r->kind->version_key);
  if (a && a->type == SG_NPY_I64 && a->ndim == 0) {
    int64_t v;
    memcpy(&v, a->data, sizeof v);
    if (v >= 1 && v <= r->kind->version) return r->version = (int)v, 0;
    if (r->kind->version == 1)
      return assoc_fail(r->err, "%s: %s checkpoint version %lld; this build reads version 1",
                        r->path, r->kind->label, (long long)v);
    return assoc_fail(r->err, "%s: %s checkpoint version %lld; this build reads versions 1 to %d",
                      r->path, r->kind->label, (long long)v, r->kind->version);
  }
  if (a) return get(r, r->kind->version_key, SG_NPY_I64, 0, NULL) ? 0 : -1;
  bool other = sg_npz_get(r->z, "bfgnn_checkpoint_version") ||
               sg_npz_get(r->z, "jointgnn_checkpoint_version");
  return assoc_fail(r->err, "%s: not a %s checkpoint (no member '%s'%s)", r->path, r->kind->label,
                    r->kind->version_key,
                    other ? "; it is a checkpoint of the other beam model" : "");
}

/* The fields a file of r's version holds. */
static int fields_in_file(const reader *r) {
  int n = 0;
  for (int i = 0; i < r->kind->n_fields; i++) n += r->kind->fields[i].since <= r->version;
  return n;
}

/* The fields in their ranges, then together as the model's constructor
 * sees them (the duality head's N, say), so that no file reaches it with a
 * configuration it refuses as misuse. */
static int read_config(reader *r, void *cfg, double *scale) {
  if (read_version(r)) return -1;
  for (int i = 0; i < r->kind->n_fields; i++)
    if (r->kind->fields[i].since <= r->version && read_field(r, &r->kind->fields[i], cfg))
      return -1;
  const char *why = r->kind->problem(cfg);
  if (why)
    return assoc_fail(r->err, "%s: the %s configuration in the file is not one it can have: %s",
                      r->path, r->kind->label, why);
  return read_positive(r, "feature_scale", scale);
}

/* Copies member param.<name> into t (same dtype and shape, finite values). */
static int read_param(const reader *r, const char *pname, sg_tensor *t) {
  char name[CKPT_NAME_MAX];
  snprintf(name, sizeof name, "param.%s", pname);
  sg_npy_type type = t->dtype == SG_F32 ? SG_NPY_F32 : SG_NPY_F64;
  const sg_array *a = get(r, name, type, t->ndim, t->shape);
  if (!a) return -1;
  memcpy(t->data, a->data, (size_t)t->numel * sg_dtype_size(t->dtype));
  for (int64_t i = 0; i < t->numel; i++)
    if (!isfinite(sg_get(t, i)))
      return assoc_fail(r->err, "%s: member '%s' is not finite at index %lld", r->path, name,
                        (long long)i);
  return 0;
}

/* The parameters into p; then the member count, with `extra` members read
 * besides the model's (a run's state). */
static int read_params(const reader *r, sg_params *p, int extra) {
  for (int i = 0; i < sg_params_count(p); i++)
    if (read_param(r, sg_params_name(p, i), sg_params_at(p, i))) return -1;
  int expected = fields_in_file(r) + 2 + sg_params_count(p) + extra, count = sg_npz_count(r->z);
  if (count != expected)
    return assoc_fail(r->err,
                      "%s: %d members, expected %d for this model (%d parameters): an unknown "
                      "member or a checkpoint of a different model",
                      r->path, count, expected, sg_params_count(p));
  return 0;
}

/* Where a run's state read back goes (NULL: checked, then dropped). */
typedef struct run_in {
  assoc_jointgnn_train_opts *o;
  assoc_beam_train_state *st;
} run_in;

static int read_run(const reader *r, const sg_params *p, double scale, run_in *run);

/* The run's members (0 without run.epoch, when run is NULL), or -1. */
static int read_run_if_any(const reader *r, const sg_params *p, double scale, run_in *run) {
  bool has = r->kind->has_run && sg_npz_get(r->z, "run.epoch");
  if (!has && run)
    return assoc_fail(r->err, "%s: the %s checkpoint holds no training state to resume from",
                      r->path, r->kind->label);
  if (!has) return 0;
  assoc_jointgnn_train_opts o;
  assoc_beam_train_state st = {0};
  run_in scratch = {&o, &st};
  int n = read_run(r, p, scale, run ? run : &scratch);
  assoc_beam_train_state_free(&st);
  return n;
}

static void *read_checkpoint(const char *path, const model_kind *k, double *feature_scale,
                             run_in *run, sg_io_error *err) {
  if (!path) return assoc_fail(err, "(null): no checkpoint file given"), NULL;
  sg_npz *z = sg_npz_open(path, err);
  if (!z) return NULL;
  reader r = {.z = z, .path = path, .kind = k, .err = err};
  union {
    assoc_bfgnn_config bfgnn;
    assoc_jointgnn_config jointgnn;
  } cfg = {0}; /* of the kind's type, zeroed: fields not in the file keep 0 */
  double scale = 0;
  void *m = NULL;
  if (!read_config(&r, &cfg, &scale)) {
    int64_t max_params = assoc_checkpoint_param_budget(z);
    m = k->build(&cfg, max_params);
    if (!m)
      assoc_fail(err,
                 "%s: cannot build the %s model of its configuration: far more parameters "
                 "than the file holds (%lld values at most), or out of memory",
                 path, k->label, (long long)max_params);
    int extra = m ? read_run_if_any(&r, params_of(k, m), scale, run) : -1;
    if (m && (extra < 0 || read_params(&r, params_of(k, m), extra))) {
      if (run) assoc_beam_train_state_free(run->st);
      k->destroy(m), m = NULL;
    }
  }
  sg_npz_close(z);
  if (m && feature_scale) *feature_scale = scale;
  return m;
}

/* ---- the two models ----------------------------------------------------------- */

/* The kind P_kind of model assoc_P (built by assoc_P_new, freed by
 * assoc_P_free, parameters owned by its trunk) with the fields P_fields,
 * and the public assoc_P_checkpoint_write and assoc_P_checkpoint_read
 * (assoc_train.h). */
#define BEAM_MODEL_KIND(P, LABEL, VERSION, HAS_RUN)                                                \
  static void *P##_build(const void *cfg, int64_t max_params) {                                    \
    assoc_##P##_config limited = *(const assoc_##P##_config *)cfg;                                 \
    limited.max_params = max_params;                                                               \
    return assoc_##P##_new(&limited, 0);                                                           \
  }                                                                                                \
  static const char *P##_problem(const void *cfg) {                                                \
    return assoc_##P##_config_problem(cfg);                                                        \
  }                                                                                                \
  static void P##_destroy(void *m) {                                                               \
    assoc_##P##_free(m);                                                                           \
  }                                                                                                \
  static const model_kind P##_kind = {.label = LABEL,                                              \
                                      .version_key = #P "_checkpoint_version",                     \
                                      .version = VERSION,                                          \
                                      .fields = P##_fields,                                        \
                                      .n_fields = sizeof P##_fields / sizeof *P##_fields,          \
                                      .build = P##_build,                                          \
                                      .problem = P##_problem,                                      \
                                      .trunk = offsetof(assoc_##P, trunk),                         \
                                      .destroy = P##_destroy,                                      \
                                      .has_run = HAS_RUN};                                         \
  int assoc_##P##_checkpoint_write(const char *path, const assoc_##P *m, double feature_scale,     \
                                   sg_io_error *err) {                                             \
    return write_checkpoint(path, &P##_kind, m, m ? &m->cfg : NULL, feature_scale, NULL, err);     \
  }                                                                                                \
  assoc_##P *assoc_##P##_checkpoint_read(const char *path, double *feature_scale,                  \
                                         sg_io_error *err) {                                       \
    return read_checkpoint(path, &P##_kind, feature_scale, NULL, err);                             \
  }

static const field bfgnn_fields[] = {
    WIDTH_FIELDS(assoc_bfgnn_config),
    POSITIVE_FIELD(assoc_bfgnn_config, power),
    INT_FIELD_SINCE(assoc_bfgnn_config, head, ASSOC_BFGNN_HEAD_DIRECT, ASSOC_BFGNN_HEAD_DUALITY, 2),
};

BEAM_MODEL_KIND(bfgnn, "BFGNN", 2, false)

static const field jointgnn_fields[] = {
    WIDTH_FIELDS(assoc_jointgnn_config),
    BOOL_FIELD(assoc_jointgnn_config, gumbel),
    POSITIVE_FIELD(assoc_jointgnn_config, power),
    POSITIVE_FIELD(assoc_jointgnn_config, tau),
};

BEAM_MODEL_KIND(jointgnn, "JointGNN", 1, true)

const char *assoc_beam_checkpoint_model(const char *path) {
  sg_io_error err;
  sg_npz *z = path ? sg_npz_open(path, &err) : NULL;
  const char *model = !z                                         ? NULL
                      : sg_npz_get(z, bfgnn_kind.version_key)    ? bfgnn_kind.label
                      : sg_npz_get(z, jointgnn_kind.version_key) ? jointgnn_kind.label
                                                                 : NULL;
  if (z) sg_npz_close(z);
  return model;
}

/* ---- a training run's state (JointGNN) ------------------------------------------ */

/* run.* scalars and arrays, then the optimiser: RUN_MEMBERS + adam's. */
enum { RUN_MEMBERS = 12 };

static int add_i64s(sg_npz_writer *w, const char *name, const void *v, int64_t n,
                    sg_io_error *err) {
  sg_array a = {.type = SG_NPY_I64, .ndim = 1, .shape = {n}, .numel = n, .data = (void *)v};
  return sg_npz_add_array(w, name, &a, err);
}

static int add_f64s(sg_npz_writer *w, const char *name, const double *v, int64_t n,
                    sg_io_error *err) {
  sg_array a = {.type = SG_NPY_F64, .ndim = 1, .shape = {n}, .numel = n, .data = (void *)v};
  return sg_npz_add_array(w, name, &a, err);
}

static int write_run(sg_npz_writer *w, const run_out *run, const sg_params *p, sg_io_error *err) {
  const assoc_bfgnn_train_opts *b = &run->o->base;
  const assoc_jointgnn_penalty *pen = &run->o->penalty;
  const assoc_beam_train_state *st = run->st;
  int64_t seed, rng[8];
  memcpy(&seed, &b->seed, sizeof seed);
  memcpy(rng, st->shuffle.s, sizeof st->shuffle.s);
  memcpy(rng + 4, st->noise.s, sizeof st->noise.s);
  static const char *const names[] = {
      "run.epoch",  "run.cursor", "run.batch",        "run.batches_per_epoch",
      "run.t_mult", "run.seed",   "run.penalty_start"};
  const int64_t values[] = {st->epoch,
                            st->cursor,
                            b->batch,
                            b->batches_per_epoch,
                            b->t_mult,
                            seed,
                            pen->mu ? pen->start_epoch : 0};
  int rc = 0;
  for (size_t i = 0; i < sizeof values / sizeof *values && !rc; i++)
    rc = sg_npz_add_scalar_i64(w, names[i], values[i], err);
  double lr[3] = {b->lr_min, b->lr_max, b->t0}, pc[2] = {pen->capacity, pen->delta};
  double mu[ASSOC_MAX_BS] = {0};
  for (int m = 0; pen->mu && m < st->M; m++) mu[m] = pen->mu[m];
  if (!rc) rc = add_i64s(w, "run.order", st->order, st->S, err);
  if (!rc) rc = add_i64s(w, "run.rng", rng, 8, err);
  if (!rc) rc = add_f64s(w, "run.lr", lr, 3, err);
  if (!rc) rc = add_f64s(w, "run.penalty", pc, 2, err);
  if (!rc) rc = add_f64s(w, "run.penalty_mu", mu, st->M, err);
  if (!rc) rc = assoc_checkpoint_write_adam(w, p, st->adam, err);
  return rc;
}

/* A float64 or int64 vector member of n0 entries (n0 < 0: any length >= 1,
 * returned in *n). */
static const sg_array *get_vector(const reader *r, const char *name, sg_npy_type type, int64_t n0,
                                  int64_t *n) {
  const sg_array *a = sg_npz_get(r->z, name);
  int64_t len = n0 >= 0 ? n0 : a && a->ndim == 1 && a->shape[0] >= 1 ? a->shape[0] : 1;
  a = get(r, name, type, 1, &len);
  if (a && n) *n = len;
  return a;
}

static int read_finite(const reader *r, const char *name, int64_t n, double *out) {
  const sg_array *a = get_vector(r, name, SG_NPY_F64, n, NULL);
  if (!a) return -1;
  memcpy(out, a->data, (size_t)n * sizeof *out);
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(out[i]))
      return assoc_fail(r->err, "%s: member '%s' is not finite at index %lld", r->path, name,
                        (long long)i);
  return 0;
}

/* run.order: a permutation of 0..S-1 into st (allocated). */
static int read_order(const reader *r, assoc_beam_train_state *st) {
  const sg_array *a = get_vector(r, "run.order", SG_NPY_I64, -1, &st->S);
  if (!a) return -1;
  st->order = sg_malloc((size_t)st->S * sizeof *st->order);
  unsigned char *seen = assoc_zalloc((size_t)st->S, 1);
  int rc = st->order && seen ? 0 : assoc_fail(r->err, "%s: out of memory", r->path);
  if (!rc) memcpy(st->order, a->data, (size_t)st->S * sizeof *st->order);
  for (int64_t i = 0; i < st->S && !rc; i++) {
    int64_t v = st->order[i];
    if (v < 0 || v >= st->S || seen[v]++)
      rc = assoc_fail(r->err, "%s: member 'run.order' is not a permutation of 0..%lld", r->path,
                      (long long)(st->S - 1));
  }
  sg_mfree(seen);
  return rc;
}

static int read_rngs(const reader *r, assoc_beam_train_state *st) {
  const sg_array *a = get_vector(r, "run.rng", SG_NPY_I64, 8, NULL);
  if (!a) return -1;
  memcpy(st->shuffle.s, a->data, sizeof st->shuffle.s);
  memcpy(st->noise.s, (const char *)a->data + sizeof st->shuffle.s, sizeof st->noise.s);
  const uint64_t *x = st->shuffle.s, *y = st->noise.s;
  if ((x[0] | x[1] | x[2] | x[3]) && (y[0] | y[1] | y[2] | y[3])) return 0;
  return assoc_fail(r->err, "%s: member 'run.rng' holds an all-zero generator state", r->path);
}

/* The schedule (o->base, epochs = the completed ones, no callback). */
static int read_schedule(const reader *r, double scale, int epoch, assoc_bfgnn_train_opts *b,
                         int64_t S) {
  int64_t batch, bpe, t_mult, seed;
  double lr[3];
  if (read_i64(r, "run.batch", 1, S, &batch) ||
      read_i64(r, "run.batches_per_epoch", 0, INT64_MAX, &bpe) ||
      read_i64(r, "run.t_mult", 1, 1000, &t_mult) ||
      read_i64(r, "run.seed", INT64_MIN, INT64_MAX, &seed) || read_finite(r, "run.lr", 3, lr))
    return -1;
  if (!(lr[0] >= 0 && lr[1] > 0 && lr[2] > 0))
    return assoc_fail(r->err,
                      "%s: member 'run.lr' = [%g, %g, %g]: need lr_min >= 0, lr_max > 0 "
                      "and t0 > 0",
                      r->path, lr[0], lr[1], lr[2]);
  *b = assoc_bfgnn_train_defaults(scale);
  b->batch = batch, b->batches_per_epoch = bpe, b->t_mult = (int)t_mult, b->epochs = epoch;
  memcpy(&b->seed, &seed, sizeof seed);
  b->lr_min = lr[0], b->lr_max = lr[1], b->t0 = lr[2];
  return 0;
}

static int read_penalty(const reader *r, assoc_jointgnn_train_opts *o, assoc_beam_train_state *st) {
  int64_t M;
  double pc[2];
  int start;
  if (read_int(r, "run.penalty_start", 0, INT_MAX, &start) ||
      read_finite(r, "run.penalty", 2, pc) || !get_vector(r, "run.penalty_mu", SG_NPY_F64, -1, &M))
    return -1;
  if (M > ASSOC_MAX_BS)
    return assoc_fail(r->err, "%s: member 'run.penalty_mu' has %lld entries, at most %d BSs",
                      r->path, (long long)M, ASSOC_MAX_BS);
  st->M = (int)M;
  if (read_finite(r, "run.penalty_mu", M, st->penalty_mu)) return -1;
  o->penalty = (assoc_jointgnn_penalty){start ? st->penalty_mu : NULL, pc[0], pc[1], start};
  return 0;
}

static int read_run(const reader *r, const sg_params *p, double scale, run_in *run) {
  assoc_beam_train_state *st = run->st;
  *st = (assoc_beam_train_state){0};
  int epoch;
  int64_t cursor;
  if (read_int(r, "run.epoch", 0, INT_MAX, &epoch) || read_order(r, st) ||
      read_i64(r, "run.cursor", 0, st->S, &cursor) || read_rngs(r, st) ||
      read_schedule(r, scale, epoch, &run->o->base, st->S) || read_penalty(r, run->o, st))
    return -1;
  st->epoch = epoch, st->cursor = cursor;
  st->adam = sg_adam_new(sg_params_tensors(p), sg_params_count(p), run->o->base.lr_max);
  if (!st->adam) return assoc_fail(r->err, "%s: out of memory", r->path);
  if (assoc_checkpoint_read_adam(r->z, r->path, p, st->adam, r->err)) return -1;
  return RUN_MEMBERS + ASSOC_ADAM_MEMBERS(sg_params_count(p));
}

int assoc_jointgnn_checkpoint_write_run(const char *path, const assoc_jointgnn *m,
                                        const assoc_jointgnn_train_opts *o,
                                        const assoc_beam_train_state *st, sg_io_error *err) {
  if (!o || !st || !st->order || !st->adam || !m ||
      st->adam->n_params != sg_params_count(m->trunk.params))
    return assoc_fail(err, "%s: no training state to write, or one of another model",
                      path ? path : "(null)");
  run_out run = {o, st};
  return write_checkpoint(path, &jointgnn_kind, m, &m->cfg, o->base.feature_scale, &run, err);
}

assoc_jointgnn *assoc_jointgnn_checkpoint_read_run(const char *path, assoc_jointgnn_train_opts *o,
                                                   assoc_beam_train_state *st, sg_io_error *err) {
  *st = (assoc_beam_train_state){0};
  run_in run = {o, st};
  return read_checkpoint(path, &jointgnn_kind, NULL, &run, err);
}
