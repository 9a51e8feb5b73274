/* .npy files: NumPy's format for one array (magic, version, a Python-dict
 * header, raw row-major data), and the array data as .npz members hold it. */
#include "io_internal.h"

#include <string.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c copies array payloads as they are and so assumes a little-endian host"
#endif

/* ---- element types ------------------------------------------------------- */

static bool valid_type(sg_npy_type t) {
  return (unsigned)t <= (unsigned)SG_NPY_BOOL;
}

size_t sg_io_type_size(sg_npy_type t) {
  static const size_t sizes[] = {4, 8, 4, 8, 1, 1};
  return sizes[t];
}

/* ---- .npy data ---------------------------------------------------------- */

static int64_t decode_integer(const npy_dtype *d, const uint8_t *p) {
  switch (d->file_size) {
  case 1:
    return d->is_signed ? (int64_t)(int8_t)p[0] : (int64_t)p[0];
  case 2:
    return d->is_signed ? (int64_t)(int16_t)get_u16(p) : (int64_t)get_u16(p);
  default:
    return d->is_signed ? (int64_t)(int32_t)get_u32(p) : (int64_t)get_u32(p);
  }
}

void sg_io_npy_convert(const npy_dtype *d, const uint8_t *src, size_t count, void *dst) {
  size_t size = (size_t)d->file_size;
  if (size == sg_io_type_size(d->type)) {
    if (d->type == SG_NPY_BOOL)
      for (size_t i = 0; i < count; i++) ((uint8_t *)dst)[i] = src[i] != 0;
    else
      memcpy(dst, src, count * size);
    return;
  }
  for (size_t i = 0; i < count; i++) { /* a narrower integer type is widened */
    int64_t v = decode_integer(d, src + i * size);
    if (d->type == SG_NPY_I32)
      ((int32_t *)dst)[i] = (int32_t)v;
    else
      ((int64_t *)dst)[i] = v;
  }
}

/* Elements that need converting are read a buffer at a time. */
static int read_converted(byte_source *s, const npy_dtype *d, size_t count, uint8_t *dst,
                          const char *what, sg_io_error *err) {
  uint8_t chunk[4096];
  size_t per_chunk = sizeof chunk / (size_t)d->file_size, out_size = sg_io_type_size(d->type);
  for (size_t done = 0; done < count;) {
    size_t k = count - done < per_chunk ? count - done : per_chunk;
    if (sg_io_source_read(s, chunk, k * (size_t)d->file_size, what, err)) return -1;
    sg_io_npy_convert(d, chunk, k, dst + done * out_size);
    done += k;
  }
  return 0;
}

int sg_io_read_npy_elements(byte_source *s, const npy_header *h, int64_t first, int64_t count,
                            void *dst, const char *what, sg_io_error *err) {
  const npy_dtype *d = h->dtype;
  if (first > 0 && sg_io_source_skip(s, (uint64_t)first * (uint64_t)d->file_size, what, err))
    return -1;
  size_t n = (size_t)count;
  if ((size_t)d->file_size != sg_io_type_size(d->type))
    return read_converted(s, d, n, dst, what, err);
  if (sg_io_source_read(s, dst, n * (size_t)d->file_size, what, err)) return -1;
  if (d->type == SG_NPY_BOOL)
    for (size_t i = 0; i < n; i++) ((uint8_t *)dst)[i] = ((uint8_t *)dst)[i] != 0;
  return 0;
}

static int read_npy_payload(byte_source *s, const npy_header *h, void *dst, const char *what,
                            sg_io_error *err) {
  return sg_io_read_npy_elements(s, h, 0, h->numel, dst, what, err);
}

/* Returns 0, -1 or NPY_UNSUPPORTED; out is untouched unless 0. */
int sg_io_read_npy_array(byte_source *s, const char *what, sg_array *out, sg_io_error *err) {
  npy_header h;
  int rc = sg_io_read_npy_header(s, what, &h, err);
  if (rc != 0) return rc;
  /* numel <= bytes present, so this product cannot overflow */
  void *data = sg_malloc((size_t)h.numel * sg_io_type_size(h.dtype->type));
  if (!data) return sg_io_fail_oom(err, what);
  if (read_npy_payload(s, &h, data, what, err)) {
    sg_mfree(data);
    return -1;
  }
  out->type = h.dtype->type;
  out->ndim = h.ndim;
  memset(out->shape, 0, sizeof out->shape);
  memcpy(out->shape, h.shape, sizeof h.shape);
  out->numel = h.numel;
  out->data = data;
  return 0;
}

/* ---- .npy writing ------------------------------------------------------- */

/* Bools are written as 0/1 bytes whatever nonzero value the caller used. */
static int write_bools(byte_sink *s, const uint8_t *data, size_t n, sg_io_error *err) {
  uint8_t chunk[4096];
  for (size_t done = 0; done < n;) {
    size_t k = n - done < sizeof chunk ? n - done : sizeof chunk;
    for (size_t i = 0; i < k; i++) chunk[i] = data[done + i] != 0;
    if (sg_io_sink_write(s, chunk, k, err)) return -1;
    done += k;
  }
  return 0;
}

int sg_io_check_layout(const array_view *v, const char *what, sg_io_error *err) {
  if (!valid_type(v->type)) return sg_io_fail(err, "%s: invalid array type %d", what, (int)v->type);
  if (v->ndim < 0 || v->ndim > SG_MAX_DIMS)
    return sg_io_fail(err, "%s: %d dimensions; at most %d are supported", what, v->ndim,
                      SG_MAX_DIMS);
  int64_t numel;
  for (int i = 0; i < v->ndim; i++)
    if (v->shape[i] < 0) return sg_io_fail(err, "%s: negative size in the shape", what);
  if (!sg_io_count_elements(v->ndim, v->shape, &numel) || numel != v->numel)
    return sg_io_fail(err, "%s: numel %lld does not match the shape", what, (long long)v->numel);
  if ((uint64_t)numel > SIZE_MAX / 8) return sg_io_fail(err, "%s: array is too large", what);
  if (numel > 0 && !v->data) return sg_io_fail(err, "%s: array has no data", what);
  return 0;
}

uint64_t sg_io_npy_file_size(const array_view *v) {
  uint8_t header[NPY_HEADER_CAP];
  return sg_io_format_npy_header(header, sg_io_npy_dtypes[v->type].descr, v->ndim, v->shape) +
         (uint64_t)v->numel * sg_io_type_size(v->type);
}

int sg_io_write_npy(byte_sink *s, const array_view *v, sg_io_error *err) {
  uint8_t header[NPY_HEADER_CAP];
  size_t len = sg_io_format_npy_header(header, sg_io_npy_dtypes[v->type].descr, v->ndim, v->shape);
  if (sg_io_sink_write(s, header, len, err)) return -1;
  size_t bytes = (size_t)v->numel * sg_io_type_size(v->type);
  if (v->type == SG_NPY_BOOL) return write_bools(s, v->data, bytes, err);
  return bytes ? sg_io_sink_write(s, v->data, bytes, err) : 0;
}

int sg_io_tensor_view(const sg_tensor *t, array_view *v, const char *what, sg_io_error *err) {
  if (!t) return sg_io_fail(err, "%s: tensor is NULL", what);
  if (t->dtype != SG_F32 && t->dtype != SG_F64)
    return sg_io_fail(err, "%s: invalid tensor dtype %d", what, (int)t->dtype);
  *v = (array_view){t->dtype == SG_F32 ? SG_NPY_F32 : SG_NPY_F64, t->ndim, t->shape, t->numel,
                    t->data};
  return 0;
}

int sg_io_array_view_of(const sg_array *a, array_view *v, const char *what, sg_io_error *err) {
  if (!a) return sg_io_fail(err, "%s: array is NULL", what);
  *v = (array_view){a->type, a->ndim, a->shape, a->numel, a->data};
  return 0;
}

static int save_npy_view(const char *path, const array_view *v, sg_io_error *err) {
  atomic_file af;
  if (sg_io_check_layout(v, path, err) || sg_io_atomic_create(&af, path, err)) return -1;
  byte_sink sink;
  sg_io_sink_open(&sink, af.fd, false, af.path, err); /* a plain sink cannot fail to open */
  if (sg_io_write_npy(&sink, v, err)) {
    sg_io_atomic_discard(&af);
    return -1;
  }
  return sg_io_atomic_commit(&af, err);
}

/* ---- .npy public API ----------------------------------------------------- */

void sg_array_free(sg_array *a) {
  if (!a) return;
  sg_mfree(a->data);
  a->data = NULL;
}

int sg_npy_save(const char *path, const sg_tensor *t, sg_io_error *err) {
  array_view v;
  if (!path) return sg_io_fail(err, "(null): no file name given");
  return sg_io_tensor_view(t, &v, path, err) ? -1 : save_npy_view(path, &v, err);
}

int sg_npy_save_array(const char *path, const sg_array *a, sg_io_error *err) {
  array_view v;
  if (!path) return sg_io_fail(err, "(null): no file name given");
  return sg_io_array_view_of(a, &v, path, err) ? -1 : save_npy_view(path, &v, err);
}

int sg_npy_load_array(const char *path, sg_array *out, sg_io_error *err) {
  if (!out) return sg_io_fail(err, "%s: output array is NULL", path ? path : "(null)");
  memset(out, 0, sizeof *out);
  int fd;
  uint64_t size;
  if (sg_io_open_input(path, &fd, &size, err)) return -1;
  byte_source src;
  sg_io_source_plain(&src, fd, size);
  int rc = sg_io_read_npy_array(&src, path, out, err);
  close(fd);
  return rc == 0 ? 0 : -1;
}

static sg_tensor *read_tensor(byte_source *src, const char *path, sg_io_error *err) {
  npy_header h;
  if (sg_io_read_npy_header(src, path, &h, err) != 0) return NULL;
  sg_npy_type type = h.dtype->type;
  if (type != SG_NPY_F32 && type != SG_NPY_F64) {
    sg_io_fail(err, "%s: dtype '%s' is not float32/float64 (read it with sg_npy_load_array)", path,
               h.dtype->descr);
    return NULL;
  }
  sg_tensor *t = sg_empty(NULL, type == SG_NPY_F32 ? SG_F32 : SG_F64, h.ndim, h.shape);
  if (!t) {
    sg_io_fail_oom(err, path);
    return NULL;
  }
  if (read_npy_payload(src, &h, t->data, path, err)) {
    sg_free(t);
    return NULL;
  }
  return t;
}

sg_tensor *sg_npy_load(const char *path, sg_io_error *err) {
  int fd;
  uint64_t size;
  if (sg_io_open_input(path, &fd, &size, err)) return NULL;
  byte_source src;
  sg_io_source_plain(&src, fd, size);
  sg_tensor *t = read_tensor(&src, path, err);
  close(fd);
  return t;
}
