/* Checkpoints of the beam models, BFGNN and JointGNN, as .npz archives
 * (uncompressed, written atomically by sg_npz_writer: temp file + rename).
 * No optimiser state. One writer and one reader serve both models, each
 * described by a table of its configuration's fields; a new field is one
 * row of its model's table.
 *
 * Members:
 *   <model>_checkpoint_version   int64 scalar (1): bfgnn_, jointgnn_
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

enum { CKPT_VERSION = 1, CKPT_NAME_MAX = SG_PARAM_NAME_MAX + 16 };

_Static_assert(sizeof(sg_dtype) == sizeof(int) && sizeof(assoc_beam_norm) == sizeof(int),
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
} field;

#define INT_FIELD(T, f, lo, hi)                                                                    \
  { "config." #f, FIELD_INT, lo, hi, offsetof(T, f) }
#define BOOL_FIELD(T, f)                                                                           \
  { "config." #f, FIELD_BOOL, 0, 1, offsetof(T, f) }
#define POSITIVE_FIELD(T, f)                                                                       \
  { "config." #f, FIELD_POSITIVE, 0, 0, offsetof(T, f) }
#define WIDTH_FIELDS(T)                                                                            \
  INT_FIELD(T, d, 1, 1 << 16), INT_FIELD(T, h, 1, 1 << 16), INT_FIELD(T, L, 1, 64),                \
      INT_FIELD(T, n_antennas, 1, ASSOC_MAX_ANTENNAS), INT_FIELD(T, dtype, SG_F32, SG_F64),        \
      INT_FIELD(T, norm, ASSOC_BEAM_PROJECT, ASSOC_BEAM_FULL_POWER), BOOL_FIELD(T, concat_inputs)

/* A model kind: its name in messages, its version member, its
 * configuration's fields, and how to build, reach and free a model. */
typedef struct model_kind {
  const char *label, *version_key;
  const field *fields;
  int n_fields;
  void *(*build)(const void *cfg); /* initialised from seed 0, then overwritten */
  size_t trunk; /* offsetof the model's assoc_gnn trunk, which owns the parameters */
  void (*destroy)(void *model);
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
  int rc = sg_npz_add_scalar_i64(w, k->version_key, CKPT_VERSION, err);
  for (int i = 0; i < k->n_fields && !rc; i++) rc = write_field(w, &k->fields[i], cfg, err);
  if (!rc) rc = sg_npz_add_scalar_f64(w, "feature_scale", scale, err);
  char name[CKPT_NAME_MAX];
  for (int i = 0; i < sg_params_count(p) && !rc; i++) {
    snprintf(name, sizeof name, "param.%s", sg_params_name(p, i));
    rc = sg_npz_add_tensor(w, name, sg_params_at(p, i), err);
  }
  return rc;
}

static int write_checkpoint(const char *path, const model_kind *k, const void *model,
                            const void *cfg, double scale, sg_io_error *err) {
  if (!path || !model || !(scale > 0) || !isfinite(scale))
    return assoc_fail(err, "%s: nothing to write (need a %s model and a feature scale > 0)",
                      path ? path : "(null)", k->label);
  sg_npz_writer *w = sg_npz_writer_open(path, false, err);
  if (!w) return -1;
  if (!write_members(w, k, cfg, params_of(k, model), scale, err))
    return sg_npz_writer_close(w, err);
  sg_npz_writer_abort(w);
  return -1;
}

/* ---- reading ------------------------------------------------------------------ */

typedef struct reader {
  const sg_npz *z;
  const char *path;
  const model_kind *kind;
  sg_io_error *err;
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

static int read_int(const reader *r, const char *name, int lo, int hi, int *out) {
  const sg_array *a = get(r, name, SG_NPY_I64, 0, NULL);
  if (!a) return -1;
  int64_t v;
  memcpy(&v, a->data, sizeof v);
  if (v < lo || v > hi)
    return assoc_fail(r->err, "%s: member '%s' = %lld is out of range [%d, %d]", r->path, name,
                      (long long)v, lo, hi);
  *out = (int)v;
  return 0;
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

static int read_version(const reader *r) {
  const sg_array *a = sg_npz_get(r->z, r->kind->version_key);
  if (a && a->type == SG_NPY_I64 && a->ndim == 0) {
    int64_t v;
    memcpy(&v, a->data, sizeof v);
    if (v == CKPT_VERSION) return 0;
    return assoc_fail(r->err, "%s: %s checkpoint version %lld; this build reads version %d",
                      r->path, r->kind->label, (long long)v, CKPT_VERSION);
  }
  if (a) return get(r, r->kind->version_key, SG_NPY_I64, 0, NULL) ? 0 : -1;
  bool other = sg_npz_get(r->z, "bfgnn_checkpoint_version") ||
               sg_npz_get(r->z, "jointgnn_checkpoint_version");
  return assoc_fail(r->err, "%s: not a %s checkpoint (no member '%s'%s)", r->path, r->kind->label,
                    r->kind->version_key,
                    other ? "; it is a checkpoint of the other beam model" : "");
}

static int read_config(const reader *r, void *cfg, double *scale) {
  if (read_version(r)) return -1;
  for (int i = 0; i < r->kind->n_fields; i++)
    if (read_field(r, &r->kind->fields[i], cfg)) return -1;
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

static int read_params(const reader *r, sg_params *p) {
  for (int i = 0; i < sg_params_count(p); i++)
    if (read_param(r, sg_params_name(p, i), sg_params_at(p, i))) return -1;
  int expected = r->kind->n_fields + 2 + sg_params_count(p), count = sg_npz_count(r->z);
  if (count != expected)
    return assoc_fail(r->err,
                      "%s: %d members, expected %d for this model (%d parameters): an unknown "
                      "member or a checkpoint of a different model",
                      r->path, count, expected, sg_params_count(p));
  return 0;
}

static void *read_checkpoint(const char *path, const model_kind *k, double *feature_scale,
                             sg_io_error *err) {
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
    m = k->build(&cfg);
    if (!m)
      assoc_fail(err, "%s: cannot build the %s model (bad configuration or out of memory)", path,
                 k->label);
    if (m && read_params(&r, params_of(k, m))) k->destroy(m), m = NULL;
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
#define BEAM_MODEL_KIND(P, LABEL)                                                                  \
  static void *P##_build(const void *cfg) {                                                        \
    return assoc_##P##_new(cfg, 0);                                                                \
  }                                                                                                \
  static void P##_destroy(void *m) {                                                               \
    assoc_##P##_free(m);                                                                           \
  }                                                                                                \
  static const model_kind P##_kind = {.label = LABEL,                                              \
                                      .version_key = #P "_checkpoint_version",                     \
                                      .fields = P##_fields,                                        \
                                      .n_fields = sizeof P##_fields / sizeof *P##_fields,          \
                                      .build = P##_build,                                          \
                                      .trunk = offsetof(assoc_##P, trunk),                         \
                                      .destroy = P##_destroy};                                     \
  int assoc_##P##_checkpoint_write(const char *path, const assoc_##P *m, double feature_scale,     \
                                   sg_io_error *err) {                                             \
    return write_checkpoint(path, &P##_kind, m, m ? &m->cfg : NULL, feature_scale, err);           \
  }                                                                                                \
  assoc_##P *assoc_##P##_checkpoint_read(const char *path, double *feature_scale,                  \
                                         sg_io_error *err) {                                       \
    return read_checkpoint(path, &P##_kind, feature_scale, err);                                   \
  }

static const field bfgnn_fields[] = {
    WIDTH_FIELDS(assoc_bfgnn_config),
    POSITIVE_FIELD(assoc_bfgnn_config, power),
};

BEAM_MODEL_KIND(bfgnn, "BFGNN")

static const field jointgnn_fields[] = {
    WIDTH_FIELDS(assoc_jointgnn_config),
    BOOL_FIELD(assoc_jointgnn_config, gumbel),
    POSITIVE_FIELD(assoc_jointgnn_config, power),
    POSITIVE_FIELD(assoc_jointgnn_config, tau),
};

BEAM_MODEL_KIND(jointgnn, "JointGNN")

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
