/* BFGNN checkpoints as .npz archives (uncompressed, written atomically by
 * sg_npz_writer: temp file + rename). No optimiser state.
 *
 * Members:
 *   bfgnn_checkpoint_version     int64 scalar (2; 1 is read as the direct head)
 *   config.d/h/L/n_antennas/dtype/norm/concat_inputs/head   int64 scalars
 *                                (config.head from version 2 on)
 *   config.power                 float64 scalar
 *   feature_scale                float64 scalar (> 0)
 *   param.<name>                 every parameter, in the model's dtype (exact)
 *
 * Reading checks every member's presence, dtype, shape and finiteness and
 * that no other member is present; a CRC or size error of the archive
 * (corruption, truncation) is caught by the .npz reader. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "assoc_train.h"
#include "models_internal.h"

/* Version 2 added config.head; a version-1 file has the direct head. */
enum { BFGNN_CKPT_VERSION = 2, BFGNN_NAME_MAX = SG_PARAM_NAME_MAX + 16, BFGNN_SCALARS = 11 };

static int write_config(sg_npz_writer *w, const assoc_bfgnn_config *c, double scale,
                        sg_io_error *err) {
  int rc = sg_npz_add_scalar_i64(w, "bfgnn_checkpoint_version", BFGNN_CKPT_VERSION, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "config.d", c->d, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "config.h", c->h, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "config.L", c->L, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "config.n_antennas", c->n_antennas, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "config.dtype", c->dtype, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "config.norm", c->norm, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "config.concat_inputs", c->concat_inputs, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "config.head", c->head, err);
  if (!rc) rc = sg_npz_add_scalar_f64(w, "config.power", c->power, err);
  if (!rc) rc = sg_npz_add_scalar_f64(w, "feature_scale", scale, err);
  return rc;
}

int assoc_bfgnn_checkpoint_write(const char *path, const assoc_bfgnn *m, double feature_scale,
                                 sg_io_error *err) {
  if (!path || !m || !(feature_scale > 0) || !isfinite(feature_scale))
    return assoc_fail(err, "%s: nothing to write (need a model and a feature scale > 0)",
                      path ? path : "(null)");
  sg_npz_writer *w = sg_npz_writer_open(path, false, err);
  if (!w) return -1;
  int rc = write_config(w, &m->cfg, feature_scale, err);
  const sg_params *p = m->trunk.params;
  char name[BFGNN_NAME_MAX];
  for (int i = 0; i < sg_params_count(p) && !rc; i++) {
    snprintf(name, sizeof name, "param.%s", sg_params_name(p, i));
    rc = sg_npz_add_tensor(w, name, sg_params_at(p, i), err);
  }
  if (rc) {
    sg_npz_writer_abort(w);
    return -1;
  }
  return sg_npz_writer_close(w, err);
}

/* ---- reading ------------------------------------------------------------------ */

typedef struct reader {
  const sg_npz *z;
  const char *path;
  sg_io_error *err;
} reader;

/* A member of the given type and shape; NULL after a message otherwise. */
static const sg_array *get(const reader *r, const char *name, sg_npy_type type, int ndim,
                           const int64_t *shape) {
  const sg_array *a = sg_npz_get(r->z, name);
  if (!a) {
    assoc_fail(r->err, "%s: not a BFGNN checkpoint: member '%s' is missing", r->path, name);
    return NULL;
  }
  bool ok = a->type == type && a->ndim == ndim;
  for (int i = 0; ok && i < ndim; i++) ok = a->shape[i] == shape[i];
  if (!ok) {
    char got[96], want[96];
    assoc_fail(r->err, "%s: member '%s' is %s %s, expected %s %s", r->path, name,
               sg_npy_type_name(a->type), sg_shape_str(a->ndim, a->shape, got),
               sg_npy_type_name(type), sg_shape_str(ndim, shape, want));
    return NULL;
  }
  return a;
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

static int read_config(const reader *r, assoc_bfgnn_config *c, double *scale) {
  int version = 0, dtype = 0, norm = 0, concat = 0, head = ASSOC_BFGNN_HEAD_DIRECT;
  if (read_int(r, "bfgnn_checkpoint_version", 1, BFGNN_CKPT_VERSION, &version) ||
      read_int(r, "config.d", 1, 1 << 16, &c->d) || read_int(r, "config.h", 1, 1 << 16, &c->h) ||
      read_int(r, "config.L", 1, 64, &c->L) ||
      read_int(r, "config.n_antennas", 1, ASSOC_MAX_ANTENNAS, &c->n_antennas) ||
      read_int(r, "config.dtype", SG_F32, SG_F64, &dtype) ||
      read_int(r, "config.norm", ASSOC_BEAM_PROJECT, ASSOC_BEAM_FULL_POWER, &norm) ||
      read_int(r, "config.concat_inputs", 0, 1, &concat) ||
      read_positive(r, "config.power", &c->power) || read_positive(r, "feature_scale", scale) ||
      (version >= 2 &&
       read_int(r, "config.head", ASSOC_BFGNN_HEAD_DIRECT, ASSOC_BFGNN_HEAD_DUALITY, &head)))
    return -1;
  c->dtype = (sg_dtype)dtype, c->norm = (assoc_beam_norm)norm, c->concat_inputs = concat;
  c->head = (assoc_bfgnn_head)head;
  return 0;
}

/* Copies member param.<name> into t (same dtype and shape, finite values). */
static int read_param(const reader *r, const char *pname, sg_tensor *t) {
  char name[BFGNN_NAME_MAX];
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

static int read_params(const reader *r, assoc_bfgnn *m) {
  sg_params *p = m->trunk.params;
  for (int i = 0; i < sg_params_count(p); i++)
    if (read_param(r, sg_params_name(p, i), sg_params_at(p, i))) return -1;
  int scalars = BFGNN_SCALARS - (sg_npz_get(r->z, "config.head") ? 0 : 1);
  int expected = scalars + sg_params_count(p), count = sg_npz_count(r->z);
  if (count != expected)
    return assoc_fail(r->err,
                      "%s: %d members, expected %d for this model (%d parameters): an unknown "
                      "member or a checkpoint of a different model",
                      r->path, count, expected, sg_params_count(p));
  return 0;
}

assoc_bfgnn *assoc_bfgnn_checkpoint_read(const char *path, double *feature_scale,
                                         sg_io_error *err) {
  if (!path) return assoc_fail(err, "(null): no checkpoint file given"), NULL;
  sg_npz *z = sg_npz_open(path, err);
  if (!z) return NULL;
  reader r = {.z = z, .path = path, .err = err};
  assoc_bfgnn_config c = {0};
  double scale = 0;
  assoc_bfgnn *m = NULL;
  if (!read_config(&r, &c, &scale)) {
    m = assoc_bfgnn_new(&c, 0); /* initialised, then overwritten */
    if (!m)
      assoc_fail(err, "%s: cannot build the model (bad configuration or out of memory)", path);
    if (m && read_params(&r, m)) assoc_bfgnn_free(m), m = NULL;
  }
  sg_npz_close(z);
  if (m && feature_scale) *feature_scale = scale;
  return m;
}
