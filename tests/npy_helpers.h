/* Helpers shared by the .npy and .npz test files (test_npy.c, test_npz.c): a
 * fresh scratch directory per test, file helpers and patterned values. */
#ifndef NPY_HELPERS_H
#define NPY_HELPERS_H

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sg_test.h"

/* ---- scratch directory and file helpers ---------------------------------- */

static char tmpdir[64];

static inline void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/sg_npy_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
      remove_tree(p);
    else
      unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

static inline void remove_tmpdir(void) {
  remove_tree(tmpdir);
}

/* Path of name inside the scratch directory (a few rotating buffers). */
static const char *tmp(const char *name) {
  static char bufs[4][256];
  static int next;
  char *b = bufs[next++ % 4];
  snprintf(b, 256, "%s/%s", tmpdir, name);
  return b;
}

static const char *fixture(const char *name) {
  static char bufs[2][512];
  static int next;
  char *b = bufs[next++ % 2];
  snprintf(b, 512, "%s/%s", SG_FIXTURE_DIR, name);
  return b;
}

static unsigned char *read_bytes(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  *len = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc(*len + 1);
  ck_assert_uint_eq(fread(buf, 1, *len, f), *len);
  fclose(f);
  return buf;
}

static inline void write_bytes(const char *path, const void *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
  fclose(f);
}

static inline int count_dir_entries(const char *dir) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
  closedir(d);
  return n;
}

static inline bool files_equal(const char *a, const char *b) {
  size_t na, nb;
  unsigned char *x = read_bytes(a, &na), *y = read_bytes(b, &nb);
  bool same = na == nb && memcmp(x, y, na) == 0;
  free(x);
  free(y);
  return same;
}

#define ASSERT_FAILS_WITH(err, text)                                                               \
  ck_assert_msg(strstr((err).msg, (text)) != NULL, "expected \"%s\" in the message \"%s\"",        \
                (text), (err).msg)

/* ---- values ------------------------------------------------------------- */

static const int64_t shapes[][SG_MAX_DIMS] = {{0}, {0}, {5}, {2, 3}, {2, 0, 3}, {1, 2, 3, 1, 2, 2}};
static const int shape_ndims[] = {0, 1, 1, 2, 3, 6};
enum { N_SHAPES = 6 };

static inline sg_tensor *patterned_tensor(sg_dtype dt, int ndim, const int64_t *shape) {
  sg_tensor *t = sg_empty(NULL, dt, ndim, shape);
  for (int64_t i = 0; i < t->numel; i++) sg_set(t, i, (double)i * 0.375 - 2.0);
  return t;
}

static inline sg_array patterned_array(sg_npy_type type, int ndim, const int64_t *shape) {
  static const size_t sizes[] = {4, 8, 4, 8, 1, 1};
  sg_array a = {.type = type, .ndim = ndim, .numel = 1};
  for (int i = 0; i < ndim; i++) a.numel *= (a.shape[i] = shape[i]);
  a.data = sg_malloc((size_t)a.numel * sizes[type]);
  for (int64_t i = 0; i < a.numel; i++) {
    switch (type) {
    case SG_NPY_F32:
      ((float *)a.data)[i] = (float)i * -1.25f;
      break;
    case SG_NPY_F64:
      ((double *)a.data)[i] = (double)i / 3.0;
      break;
    case SG_NPY_I32:
      ((int32_t *)a.data)[i] = i == 0 ? INT32_MIN : (int32_t)(i * 7 - 20);
      break;
    case SG_NPY_I64:
      ((int64_t *)a.data)[i] = i == 0 ? INT64_MIN : i == 1 ? INT64_MAX : -i;
      break;
    case SG_NPY_U8:
      ((uint8_t *)a.data)[i] = (uint8_t)(250 + i);
      break;
    case SG_NPY_BOOL:
      ((uint8_t *)a.data)[i] = i % 3 == 1;
      break;
    }
  }
  return a;
}

static inline size_t array_bytes(const sg_array *a) {
  static const size_t sizes[] = {4, 8, 4, 8, 1, 1};
  return (size_t)a->numel * sizes[a->type];
}

static inline void assert_same_array(const sg_array *got, const sg_array *want) {
  ck_assert_int_eq(got->type, want->type);
  ck_assert_int_eq(got->ndim, want->ndim);
  ck_assert_int_eq(got->numel, want->numel);
  for (int i = 0; i < want->ndim; i++) ck_assert_int_eq(got->shape[i], want->shape[i]);
  ck_assert_mem_eq(got->data, want->data, array_bytes(want));
}

static inline void assert_same_tensor(const sg_tensor *got, const sg_tensor *want) {
  ck_assert_ptr_nonnull(got);
  ck_assert_int_eq(got->dtype, want->dtype);
  ck_assert(sg_same_shape(got, want));
  ck_assert_int_eq(got->numel, want->numel);
  ck_assert_mem_eq(got->data, want->data, (size_t)want->numel * sg_dtype_size(want->dtype));
}

#endif
