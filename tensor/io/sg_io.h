/* sinkgrad .npy / .npz I/O: NumPy's file of one array and its zip archive
 * of named arrays, read and written so that NumPy reads and writes the same
 * files. sg_tensor.h includes this header. */
#ifndef SG_IO_H
#define SG_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sg_tensor.h"

/* The shared libraries export what the public headers declare and hide the
 * rest (they are built with -fvisibility=hidden). */
#ifdef __GNUC__
#pragma GCC visibility push(default)
#endif
#ifdef __cplusplus
extern "C" {
#endif

/* Errors from file I/O are returned, never fatal: functions return 0 on
 * success and -1 on failure with a message in err (may be NULL). Writers
 * write a temporary file in the same directory and rename it into place, so
 * a failed write never leaves a half-written file. */
typedef struct sg_io_error {
  char msg[512];
} sg_io_error;

/* Array types a file may hold; tensors are float32/float64, other arrays
 * (integer associations, scalars) are read and written through sg_array. */
typedef enum sg_npy_type {
  SG_NPY_F32,
  SG_NPY_F64,
  SG_NPY_I32,
  SG_NPY_I64,
  SG_NPY_U8,
  SG_NPY_BOOL
} sg_npy_type;

typedef struct sg_array {
  sg_npy_type type;
  int ndim; /* 0 for a scalar */
  int64_t shape[SG_MAX_DIMS];
  int64_t numel;
  void *data; /* little-endian, row-major, owned by the array */
} sg_array;

void sg_array_free(sg_array *a); /* frees data, keeps the struct */
/* "float32", "float64", "int32", "int64", "uint8", "bool"; "unknown" otherwise. */
const char *sg_npy_type_name(sg_npy_type t);

int sg_npy_save(const char *path, const sg_tensor *t, sg_io_error *err);
sg_tensor *sg_npy_load(const char *path, sg_io_error *err); /* owned; f32/f64 files (f4/f8) */
int sg_npy_save_array(const char *path, const sg_array *a, sg_io_error *err);
int sg_npy_load_array(const char *path, sg_array *out, sg_io_error *err);

/* Writing an .npz archive: open, add members, close (commits by rename).
 * compress: deflate through zlib (numpy.savez_compressed) or stored
 * (numpy.savez). sg_npz_writer_abort discards everything. */
typedef struct sg_npz_writer sg_npz_writer;
sg_npz_writer *sg_npz_writer_open(const char *path, bool compress, sg_io_error *err);
int sg_npz_add_tensor(sg_npz_writer *w, const char *name, const sg_tensor *t, sg_io_error *err);
int sg_npz_add_array(sg_npz_writer *w, const char *name, const sg_array *a, sg_io_error *err);
int sg_npz_add_scalar_f64(sg_npz_writer *w, const char *name, double v, sg_io_error *err);
int sg_npz_add_scalar_i64(sg_npz_writer *w, const char *name, int64_t v, sg_io_error *err);
int sg_npz_writer_close(sg_npz_writer *w, sg_io_error *err); /* frees w */
void sg_npz_writer_abort(sg_npz_writer *w);                  /* frees w */

/* Writes the file at path the way the writers above do (temporary file,
 * fsync, rename, directory fsync): write(f, user) fills it and returns 0,
 * or non-zero to give up; path is replaced only when that and every write
 * succeeded, and is left as it was otherwise. */
int sg_io_write_file_atomic(const char *path, int (*write)(FILE *f, void *user), void *user,
                            sg_io_error *err);

/* Syncs the directory holding path (after a rename into place there), so
 * that the new name survives a crash; the writers above do it themselves. */
int sg_io_sync_dir_of(const char *path, sg_io_error *err);

/* Reading: the whole archive is read and checked (CRC, sizes) on open. A
 * deflated member that sinkgrad wrote carries a chunk index (its 1 MiB
 * chunks' compressed lengths and CRCs, in a zip extra field that NumPy and
 * zip tools skip): it is inflated chunk by chunk on all OpenMP threads, each
 * chunk's CRC checked; the bytes are the same for any thread count. */
typedef struct sg_npz sg_npz;
sg_npz *sg_npz_open(const char *path, sg_io_error *err);
/* Opens an archive reading rows [lo, hi) along the first axis of the members
 * named in names (n_names of them; each must have at least one dimension and
 * at least hi rows; lo == hi reads none, which gives shapes and totals
 * cheaply), and every other member whole. Names the archive lacks are
 * passed over (optional members: sg_npz_get says which were there). A member read in part has
 * shape[0] = hi - lo. Members with a chunk index are inflated only in the
 * chunks holding those rows (and the .npy header), on all threads, each
 * chunk's CRC-32 checked; others are inflated in passing (the bytes before
 * lo are skipped, memory is needed for the rows only) and their CRC-32
 * checked at the end. Of a stored (uncompressed) member only the bytes of
 * the rows are read, so no CRC can be checked for a part of it; nor is one
 * for lo == hi without a chunk index (only the header is read). Bad
 * arguments (lo < 0, lo > hi, hi beyond a member's rows, a 0-d member) fail
 * with a message naming the path, the member and the numbers. */
sg_npz *sg_npz_open_rows(const char *path, const char *const *names, int n_names, int64_t lo,
                         int64_t hi, sg_io_error *err);
/* The first-axis length member `name` has in the file (for a member read in
 * part, the file's, not the part's); -1 when there is no such member or it
 * has no dimension. */
int64_t sg_npz_rows_total(const sg_npz *z, const char *name);
void sg_npz_close(sg_npz *z);
int sg_npz_count(const sg_npz *z);
const char *sg_npz_name(const sg_npz *z, int i); /* member name without ".npy" */
/* Returns a borrowed view (valid until sg_npz_close), NULL if missing. */
const sg_array *sg_npz_get(const sg_npz *z, const char *name);
/* Moves member name's array out of z into *out (the caller frees it with
 * sg_array_free): a reader that keeps the data as it is saves a copy. The
 * member is then gone for sg_npz_get. 0, or -1 when there is no such
 * member, it could not be loaded, or it was taken already. */
int sg_npz_take(sg_npz *z, const char *name, sg_array *out);
/* New owned tensor of dtype dt converted from a float or integer member;
 * NULL with a message if missing or not numeric. */
sg_tensor *sg_npz_tensor(const sg_npz *z, const char *name, sg_dtype dt, sg_io_error *err);
/* Scalar (or 1-element) numeric member as double; -1 if missing. */
int sg_npz_scalar(const sg_npz *z, const char *name, double *out, sg_io_error *err);

#ifdef __cplusplus
}
#endif
#ifdef __GNUC__
#pragma GCC visibility pop
#endif
#endif
