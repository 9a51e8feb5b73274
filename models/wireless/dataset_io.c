/* Data sets as zlib-compressed .npz (schema: docs/system.md "Data set schema").
 * The loader accepts any numeric dtype for each member (numpy may have
 * rewritten a file), checks shapes against M, N, K and that every value is
 * finite, and reports the first problem by member name. */
#include "assoc_wireless.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models_internal.h"

enum { SCHEMA_VERSION = 1 };

/* ---- saving -------------------------------------------------------------------------- */

static sg_array view(sg_npy_type type, int ndim, const int64_t *shape, const void *data) {
  sg_array a = {.type = type, .ndim = ndim, .numel = 1, .data = (void *)data};
  for (int i = 0; i < ndim; i++) a.shape[i] = shape[i], a.numel *= shape[i];
  return a;
}

static int add_arrays(sg_npz_writer *w, const assoc_dataset *ds, sg_io_error *err) {
  int64_t S = ds->S, M = ds->M, K = ds->K, N = ds->N;
  const int64_t h_shape[4] = {S, M, K, N}, link_shape[3] = {S, M, K};
  const int64_t bs_shape[2] = {M, 2}, ue_shape[3] = {S, K, 2};
  struct {
    const char *name;
    sg_array a;
  } members[] = {
      {"H_re", view(SG_NPY_F64, 4, h_shape, ds->H_re)},
      {"H_im", view(SG_NPY_F64, 4, h_shape, ds->H_im)},
      {"bs_pos", view(SG_NPY_F64, 2, bs_shape, ds->bs_pos)},
      {"ue_pos", view(SG_NPY_F64, 3, ue_shape, ds->ue_pos)},
      {"los", view(SG_NPY_BOOL, 3, link_shape, ds->los)},
      {"outage", view(SG_NPY_BOOL, 3, link_shape, ds->outage)},
      {"n_paths", view(SG_NPY_U8, 3, link_shape, ds->n_paths)},
      {"pl_db", view(SG_NPY_F64, 3, link_shape, ds->pl_db)},
  };
  for (size_t i = 0; i < sizeof members / sizeof members[0]; i++)
    if (sg_npz_add_array(w, members[i].name, &members[i].a, err)) return -1;
  return 0;
}

static int add_scalars(sg_npz_writer *w, const assoc_dataset *ds, sg_io_error *err) {
  const assoc_scenario *sc = &ds->scenario;
  struct {
    const char *name;
    int64_t v;
  } ints[] = {{"M", ds->M},
              {"N", ds->N},
              {"K", ds->K},
              {"seed", (int64_t)ds->seed},
              {"outage_state", sc->outage},
              {"schema_version", SCHEMA_VERSION}};
  struct {
    const char *name;
    double v;
  } reals[] = {{"pt_dbm", ds->pt_dbm},
               {"noise_dbm", ds->noise_dbm},
               {"area_m", sc->area_m},
               {"bs_height_m", sc->bs_height_m},
               {"ue_height_m", sc->ue_height_m},
               {"noise_dbm_hz", sc->noise_dbm_hz},
               {"bandwidth_hz", sc->bandwidth_hz},
               {"noise_figure_db", sc->noise_figure_db},
               {"path_mean", sc->path_mean}};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    if (sg_npz_add_scalar_i64(w, ints[i].name, ints[i].v, err)) return -1;
  for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++)
    if (sg_npz_add_scalar_f64(w, reals[i].name, reals[i].v, err)) return -1;
  return 0;
}

int assoc_dataset_save(const assoc_dataset *ds, const char *path, sg_io_error *err) {
  if (assoc_dataset_check(ds, err)) return -1;
  sg_npz_writer *w = sg_npz_writer_open(path, true, err);
  if (!w) return -1;
  if (add_arrays(w, ds, err) || add_scalars(w, ds, err)) {
    sg_npz_writer_abort(w);
    return -1;
  }
  return sg_npz_writer_close(w, err);
}

/* ---- loading ------------------------------------------------------------------------- */

static double element(const sg_array *a, int64_t i) {
  const unsigned char *p = a->data;
  switch (a->type) {
  case SG_NPY_F32: {
    float v;
    memcpy(&v, p + 4 * i, 4);
    return v;
  }
  case SG_NPY_F64: {
    double v;
    memcpy(&v, p + 8 * i, 8);
    return v;
  }
  case SG_NPY_I32: {
    int32_t v;
    memcpy(&v, p + 4 * i, 4);
    return v;
  }
  case SG_NPY_I64: {
    int64_t v;
    memcpy(&v, p + 8 * i, 8);
    return (double)v;
  }
  default:
    return p[i];
  }
}

/* Which samples a load reads: rows [first, first + count) of the file's
 * total. The opened archive's per-sample members have `rows` rows, the
 * part's starting at row `at`. */
typedef struct part {
  int64_t first, count, total, rows, at;
} part;

/* Looks up a member and checks its shape (dims < 0 are free and returned). */
/* Whether the archive lists the member, loaded or not (a dtype the reader
 * does not read): an optional member that is there must be readable. */
static bool listed(const sg_npz *z, const char *name) {
  for (int i = 0; i < sg_npz_count(z); i++)
    if (!strcmp(sg_npz_name(z, i), name)) return true;
  return false;
}

static const sg_array *member(const sg_npz *z, const char *name, int ndim, int64_t *shape,
                              sg_io_error *err) {
  const sg_array *a = sg_npz_get(z, name);
  if (!a) {
    if (listed(z, name))
      assoc_fail(err, "member '%s' has a dtype the loader does not read", name);
    else
      assoc_fail(err, "data set has no member '%s'", name);
    return NULL;
  }
  if (a->ndim != ndim) {
    assoc_fail(err, "member '%s' has %d dimensions, expected %d", name, a->ndim, ndim);
    return NULL;
  }
  for (int i = 0; i < ndim; i++)
    if (shape[i] >= 0 && shape[i] != a->shape[i]) {
      char want[96], got[96];
      assoc_fail(err, "member '%s' has shape %s, expected %s", name,
                 sg_shape_str(a->ndim, a->shape, got), sg_shape_str(ndim, shape, want));
      return NULL;
    }
  for (int i = 0; i < ndim; i++) shape[i] = a->shape[i];
  return a;
}

/* The member's values for the part's samples (the whole member when it is
 * not per sample: per_sample false): where they start in a, how many, and
 * the flat index in the file of the first (for messages). */
typedef struct span {
  const sg_array *a;
  int64_t start, n, file_start;
} span;

static int member_span(const sg_npz *z, const char *name, int ndim, const int64_t *shape,
                       const part *pt, bool per_sample, span *out, sg_io_error *err) {
  int64_t s[SG_MAX_DIMS];
  memcpy(s, shape, (size_t)ndim * sizeof *s);
  const sg_array *a = member(z, name, ndim, s, err);
  if (!a) return -1;
  int64_t row = a->numel / (a->shape[0] > 0 ? a->shape[0] : 1);
  *out = per_sample ? (span){a, pt->at * row, pt->count * row, pt->first * row}
                    : (span){a, 0, a->numel, 0};
  return 0;
}

/* The array the span's values go to, in *dst: when the span is the
 * member's whole array and already of the element type dst holds
 * (same_type), the member's own, moved out of z instead of copied (the
 * data set then costs its size once, not twice, while it loads; *adopted
 * true); else a new one of n elements of `size` bytes. */
static int destination(sg_npz *z, const char *name, const span *sp, bool same_type, size_t size,
                       void **dst, bool *adopted, sg_io_error *err) {
  sg_array a;
  *adopted = same_type && sp->start == 0 && sp->n == sp->a->numel && sp->n > 0 &&
             sg_npz_take(z, name, &a) == 0;
  *dst = *adopted ? a.data : sg_malloc((size_t)sp->n * size);
  return *dst ? 0 : assoc_fail(err, "out of memory for member '%s'", name);
}

static int read_f64(sg_npz *z, const char *name, int ndim, const int64_t *shape, const part *pt,
                    bool per_sample, double **dst, sg_io_error *err) {
  span sp;
  bool adopted;
  void *to;
  if (member_span(z, name, ndim, shape, pt, per_sample, &sp, err) ||
      destination(z, name, &sp, sp.a->type == SG_NPY_F64, sizeof **dst, &to, &adopted, err))
    return -1;
  double *d = *dst = to;
  for (int64_t i = 0; i < sp.n; i++) {
    if (!adopted) d[i] = element(sp.a, sp.start + i);
    if (!isfinite(d[i]))
      return assoc_fail(err, "member '%s' has a non-finite value at flat index %lld", name,
                        (long long)(sp.file_start + i));
  }
  return 0;
}

/* The zeros of an optional member the file lacks: n elements of size. */
static int zeros(const char *name, int ndim, const int64_t *shape, size_t size, void **dst,
                 sg_io_error *err) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  *dst = assoc_zalloc((size_t)n, size);
  return *dst ? 0 : assoc_fail(err, "out of memory for member '%s'", name);
}

/* Optional 0/1 (or small count) member; absent: zeros. */
static int read_u8(sg_npz *z, const char *name, int ndim, const int64_t *shape, const part *pt,
                   uint8_t **dst, int max_value, bool required, sg_io_error *err) {
  void *to;
  if (!required && !listed(z, name)) {
    int rc = zeros(name, ndim, shape, 1, &to, err);
    return *dst = to, rc;
  }
  span sp;
  bool adopted, one_byte;
  if (member_span(z, name, ndim, shape, pt, true, &sp, err)) return -1;
  one_byte = sp.a->type == SG_NPY_U8 || sp.a->type == SG_NPY_BOOL;
  if (destination(z, name, &sp, one_byte, 1, &to, &adopted, err)) return -1;
  uint8_t *d = *dst = to;
  for (int64_t i = 0; i < sp.n; i++) {
    double v = adopted ? d[i] : element(sp.a, sp.start + i);
    if (!(v >= 0 && v <= max_value && v == floor(v)))
      return assoc_fail(err, "member '%s' has value %g at flat index %lld (expected 0..%d)", name,
                        v, (long long)(sp.file_start + i), max_value);
    d[i] = (uint8_t)v;
  }
  return 0;
}

static int read_scalar(const sg_npz *z, const char *name, bool required, double *out,
                       sg_io_error *err) {
  if (!required && !listed(z, name)) return 0;
  if (sg_npz_scalar(z, name, out, err))
    return assoc_fail(err, "data set has no scalar '%s'%s", name,
                      listed(z, name) ? " (a member of another dtype or shape)" : "");
  if (!isfinite(*out)) return assoc_fail(err, "scalar '%s' is not finite", name);
  return 0;
}

static int read_size(const sg_npz *z, const char *name, int max, int *out, sg_io_error *err) {
  double v;
  if (read_scalar(z, name, true, &v, err)) return -1;
  if (!(v >= 1 && v <= max && v == floor(v)))
    return assoc_fail(err, "scalar '%s' = %g is not an integer in 1..%d", name, v, max);
  *out = (int)v;
  return 0;
}

static int read_header(const sg_npz *z, assoc_dataset *hdr, sg_io_error *err) {
  double seed;
  assoc_scenario *sc = &hdr->scenario;
  *sc = assoc_scenario_default();
  double outage = 0;
  if (read_size(z, "M", ASSOC_MAX_BS, &hdr->M, err) ||
      read_size(z, "N", ASSOC_MAX_ANTENNAS, &hdr->N, err) ||
      read_size(z, "K", ASSOC_MAX_UES, &hdr->K, err) ||
      read_scalar(z, "pt_dbm", true, &hdr->pt_dbm, err) ||
      read_scalar(z, "noise_dbm", true, &hdr->noise_dbm, err) ||
      read_scalar(z, "seed", true, &seed, err) ||
      read_scalar(z, "area_m", false, &sc->area_m, err) ||
      read_scalar(z, "bs_height_m", false, &sc->bs_height_m, err) ||
      read_scalar(z, "ue_height_m", false, &sc->ue_height_m, err) ||
      read_scalar(z, "noise_dbm_hz", false, &sc->noise_dbm_hz, err) ||
      read_scalar(z, "bandwidth_hz", false, &sc->bandwidth_hz, err) ||
      read_scalar(z, "noise_figure_db", false, &sc->noise_figure_db, err) ||
      read_scalar(z, "path_mean", false, &sc->path_mean, err) ||
      read_scalar(z, "outage_state", false, &outage, err))
    return -1;
  if (!(seed >= 0 && seed < 0x1p63)) return assoc_fail(err, "scalar 'seed' is out of range");
  hdr->seed = (uint64_t)seed;
  sc->M = hdr->M, sc->N = hdr->N, sc->K = hdr->K;
  sc->pt_dbm = hdr->pt_dbm, sc->seed = hdr->seed, sc->outage = outage != 0;
  return 0;
}

static int read_body(sg_npz *z, const part *pt, assoc_dataset *ds, sg_io_error *err) {
  int64_t S = pt->rows, M = ds->M, K = ds->K, N = ds->N;
  const int64_t h_shape[4] = {S, M, K, N}, link_shape[3] = {S, M, K};
  const int64_t bs_shape[2] = {M, 2}, ue_shape[3] = {S, K, 2};
  if (read_f64(z, "H_re", 4, h_shape, pt, true, &ds->H_re, err) ||
      read_f64(z, "H_im", 4, h_shape, pt, true, &ds->H_im, err) ||
      read_f64(z, "bs_pos", 2, bs_shape, pt, false, &ds->bs_pos, err) ||
      read_f64(z, "ue_pos", 3, ue_shape, pt, true, &ds->ue_pos, err) ||
      read_u8(z, "los", 3, link_shape, pt, &ds->los, 1, true, err) ||
      read_u8(z, "outage", 3, link_shape, pt, &ds->outage, 1, false, err) ||
      read_u8(z, "n_paths", 3, link_shape, pt, &ds->n_paths, 255, false, err))
    return -1;
  if (listed(z, "pl_db")) return read_f64(z, "pl_db", 3, link_shape, pt, true, &ds->pl_db, err);
  void *to;
  int rc = zeros("pl_db", 3, link_shape, sizeof(double), &to, err);
  return ds->pl_db = to, rc;
}

/* The header's sizes and the samples in H_re as opened (at least min). */
static int read_sizes(const sg_npz *z, assoc_dataset *hdr, int64_t *total, int64_t min,
                      sg_io_error *err) {
  int64_t h_shape[4] = {-1, -1, -1, -1};
  if (read_header(z, hdr, err) || !member(z, "H_re", 4, h_shape, err)) return -1;
  if (h_shape[0] < min || h_shape[1] != hdr->M || h_shape[2] != hdr->K || h_shape[3] != hdr->N)
    return assoc_fail(
        err, "member 'H_re' has shape [%lld, %lld, %lld, %lld], expected [S, M=%d, K=%d, N=%d]",
        (long long)h_shape[0], (long long)h_shape[1], (long long)h_shape[2], (long long)h_shape[3],
        hdr->M, hdr->K, hdr->N);
  *total = h_shape[0];
  return 0;
}

/* Prefixes the message with the path. */
static int with_path(const char *path, sg_io_error *err) {
  if (err) {
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%.200s: %.300s", path, err->msg);
    memcpy(err->msg, msg, sizeof msg);
  }
  return -1;
}

/* The members with a row per sample, which a part reads in part. */
static const char *const per_sample[] = {"H_re", "H_im", "ue_pos", "los",
                                         "outage", "n_paths", "pl_db"};
enum { N_PER_SAMPLE = sizeof per_sample / sizeof per_sample[0] };

/* The archive with rows [lo, hi) of the per-sample members (whole: hi < 0),
 * and the samples in the file. */
static sg_npz *open_part(const char *path, int64_t lo, int64_t hi, int64_t *total,
                         sg_io_error *err) {
  sg_npz *z = hi < 0 ? sg_npz_open(path, err)
                     : sg_npz_open_rows(path, per_sample, N_PER_SAMPLE, lo, hi, err);
  if (z) *total = hi < 0 ? -1 : sg_npz_rows_total(z, "H_re");
  return z;
}

/* Samples [lo, hi) of the file (hi < 0: all). */
static int load_rows(const char *path, int64_t lo, int64_t hi, assoc_dataset *ds,
                     sg_io_error *err) {
  memset(ds, 0, sizeof *ds);
  int64_t total;
  sg_npz *z = open_part(path, lo, hi, &total, err);
  if (!z) return -1; /* the message names the file */
  assoc_dataset hdr = {0};
  int64_t rows = 0; /* of the per-sample members as opened */
  int rc = read_sizes(z, &hdr, &rows, 1, err);
  if (hi < 0) total = hi = rows;
  if (!rc && assoc_dataset_shape(ds, hi - lo, hdr.M, hdr.N, hdr.K))
    rc = assoc_fail(err, "%lld samples of M=%d, N=%d, K=%d do not fit in memory",
                    (long long)(hi - lo), hdr.M, hdr.N, hdr.K);
  if (!rc) {
    ds->pt_dbm = hdr.pt_dbm, ds->noise_dbm = hdr.noise_dbm, ds->seed = hdr.seed;
    ds->scenario = hdr.scenario;
    part pt = {.first = lo, .count = hi - lo, .total = total, .rows = rows, .at = 0};
    rc = read_body(z, &pt, ds, err);
    if (hi - lo < total) ds->part_first = lo, ds->part_total = total;
  }
  sg_npz_close(z);
  if (rc) {
    with_path(path, err);
    assoc_dataset_free(ds);
  }
  return rc;
}

int assoc_dataset_load(const char *path, assoc_dataset *ds, sg_io_error *err) {
  return load_rows(path, 0, -1, ds, err);
}

int assoc_dataset_load_part(const char *path, int64_t lo, int64_t hi, assoc_dataset *ds,
                            sg_io_error *err) {
  memset(ds, 0, sizeof *ds);
  int64_t S;
  int M, N, K;
  if (assoc_dataset_peek(path, &S, &M, &N, &K, err)) return -1;
  if (!(lo >= 0 && lo < hi && hi <= S))
    return assoc_fail(err, "%s: samples %lld..%lld asked of a data set of %lld", path,
                      (long long)lo, (long long)hi - 1, (long long)S);
  return load_rows(path, lo, hi, ds, err);
}

/* The sizes from an archive of no sample rows: the headers and scalars. */
int assoc_dataset_peek(const char *path, int64_t *S, int *M, int *N, int *K, sg_io_error *err) {
  sg_npz *z = sg_npz_open_rows(path, per_sample, N_PER_SAMPLE, 0, 0, err);
  if (!z) return -1; /* the message names the file */
  assoc_dataset hdr = {0};
  int64_t rows;
  int rc = read_sizes(z, &hdr, &rows, 0, err);
  *S = sg_npz_rows_total(z, "H_re");
  if (!rc && *S < 1) rc = assoc_fail(err, "member 'H_re' has no samples");
  sg_npz_close(z);
  if (rc) return with_path(path, err);
  *M = hdr.M, *N = hdr.N, *K = hdr.K;
  return 0;
}

int64_t assoc_dataset_total(const assoc_dataset *ds) {
  return ds->part_total > 0 ? ds->part_total : ds->S;
}

/* ---- checking ------------------------------------------------------------------------ */

static int all_finite(const double *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return 0;
  return 1;
}

int assoc_dataset_check(const assoc_dataset *ds, sg_io_error *err) {
  if (ds->S < 1 || ds->M < 1 || ds->M > ASSOC_MAX_BS || ds->N < 1 || ds->N > ASSOC_MAX_ANTENNAS ||
      ds->K < 1 || ds->K > ASSOC_MAX_UES)
    return assoc_fail(err, "bad data-set sizes S=%lld M=%d N=%d K=%d", (long long)ds->S, ds->M,
                      ds->N, ds->K);
  if (!isfinite(ds->pt_dbm) || !isfinite(ds->noise_dbm))
    return assoc_fail(err, "transmit power and noise must be finite");
  int64_t links = ds->S * ds->M * ds->K;
  if (!all_finite(ds->H_re, links * ds->N) || !all_finite(ds->H_im, links * ds->N))
    return assoc_fail(err, "channel has non-finite values");
  if (!all_finite(ds->bs_pos, 2 * ds->M) || !all_finite(ds->ue_pos, 2 * ds->S * ds->K) ||
      !all_finite(ds->pl_db, links))
    return assoc_fail(err, "positions or path losses have non-finite values");
  return 0;
}
