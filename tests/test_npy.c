/* .npy / .npz: round trips, files written by NumPy (tests/fixtures, made by
 * tests/make_npy_fixtures.py), refusal of bad files, and atomic writes.
 * Every test works in a fresh mkdtemp directory that teardown removes. */
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

static void make_tmpdir(void) {
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

static void remove_tmpdir(void) {
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

static void write_bytes(const char *path, const void *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
  fclose(f);
}

static int count_dir_entries(const char *dir) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
  closedir(d);
  return n;
}

static bool files_equal(const char *a, const char *b) {
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

static sg_tensor *patterned_tensor(sg_dtype dt, int ndim, const int64_t *shape) {
  sg_tensor *t = sg_empty(NULL, dt, ndim, shape);
  for (int64_t i = 0; i < t->numel; i++) sg_set(t, i, (double)i * 0.375 - 2.0);
  return t;
}

static sg_array patterned_array(sg_npy_type type, int ndim, const int64_t *shape) {
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

static size_t array_bytes(const sg_array *a) {
  static const size_t sizes[] = {4, 8, 4, 8, 1, 1};
  return (size_t)a->numel * sizes[a->type];
}

static void assert_same_array(const sg_array *got, const sg_array *want) {
  ck_assert_int_eq(got->type, want->type);
  ck_assert_int_eq(got->ndim, want->ndim);
  ck_assert_int_eq(got->numel, want->numel);
  for (int i = 0; i < want->ndim; i++) ck_assert_int_eq(got->shape[i], want->shape[i]);
  ck_assert_mem_eq(got->data, want->data, array_bytes(want));
}

static void assert_same_tensor(const sg_tensor *got, const sg_tensor *want) {
  ck_assert_ptr_nonnull(got);
  ck_assert_int_eq(got->dtype, want->dtype);
  ck_assert(sg_same_shape(got, want));
  ck_assert_int_eq(got->numel, want->numel);
  ck_assert_mem_eq(got->data, want->data, (size_t)want->numel * sg_dtype_size(want->dtype));
}

/* ---- .npy round trips --------------------------------------------------- */

START_TEST(npy_tensor_round_trip) {
  for (int dt = SG_F32; dt <= SG_F64; dt++) {
    for (int s = 0; s < N_SHAPES; s++) {
      sg_tensor *t = patterned_tensor((sg_dtype)dt, shape_ndims[s], shapes[s]);
      sg_io_error err = {{0}};
      ck_assert_int_eq(sg_npy_save(tmp("t.npy"), t, &err), 0);
      sg_tensor *back = sg_npy_load(tmp("t.npy"), &err);
      ck_assert_msg(back != NULL, "%s", err.msg);
      assert_same_tensor(back, t);
      sg_free(back);
      sg_free(t);
    }
  }
  ck_assert_int_eq(count_dir_entries(tmpdir), 1); /* no temporary files left behind */
}
END_TEST

START_TEST(npy_array_round_trip_every_type) {
  for (int type = SG_NPY_F32; type <= SG_NPY_BOOL; type++) {
    for (int s = 0; s < N_SHAPES; s++) {
      sg_array a = patterned_array((sg_npy_type)type, shape_ndims[s], shapes[s]), back;
      sg_io_error err = {{0}};
      ck_assert_msg(sg_npy_save_array(tmp("a.npy"), &a, &err) == 0, "%s", err.msg);
      ck_assert_msg(sg_npy_load_array(tmp("a.npy"), &back, &err) == 0, "%s", err.msg);
      assert_same_array(&back, &a);
      sg_array_free(&back);
      sg_array_free(&a);
      ck_assert_ptr_null(a.data);
    }
  }
}
END_TEST

START_TEST(npy_bools_are_written_as_zero_or_one) {
  uint8_t raw[4] = {0, 1, 7, 255};
  sg_array a = {.type = SG_NPY_BOOL, .ndim = 1, .shape = {4}, .numel = 4, .data = raw}, back;
  ck_assert_int_eq(sg_npy_save_array(tmp("b.npy"), &a, NULL), 0);
  size_t len;
  unsigned char *bytes = read_bytes(tmp("b.npy"), &len);
  ck_assert_mem_eq(bytes + len - 4, "\0\1\1\1", 4);
  free(bytes);
  ck_assert_int_eq(sg_npy_load_array(tmp("b.npy"), &back, NULL), 0);
  ck_assert_mem_eq(back.data, "\0\1\1\1", 4);
  sg_array_free(&back);
}
END_TEST

/* Our files are byte-for-byte what numpy.save writes for the same arrays. */
START_TEST(npy_files_match_numpy_byte_for_byte) {
  sg_tensor *f4 = sg_empty(NULL, SG_F32, 2, (int64_t[]){3, 4});
  for (int i = 0; i < 12; i++) sg_set(f4, i, i / 4.0);
  ck_assert_int_eq(sg_npy_save(tmp("f4.npy"), f4, NULL), 0);
  ck_assert(files_equal(tmp("f4.npy"), fixture("numpy_f4.npy")));
  sg_free(f4);

  sg_tensor *d0 = sg_full(NULL, SG_F64, 0, NULL, 2.5);
  ck_assert_int_eq(sg_npy_save(tmp("0d.npy"), d0, NULL), 0);
  ck_assert(files_equal(tmp("0d.npy"), fixture("numpy_0d.npy")));
  sg_free(d0);

  int64_t i8[5];
  for (int i = 0; i < 5; i++) i8[i] = (i - 2) * INT64_C(1000000000000);
  sg_array a = {.type = SG_NPY_I64, .ndim = 1, .shape = {5}, .numel = 5, .data = i8};
  ck_assert_int_eq(sg_npy_save_array(tmp("i8.npy"), &a, NULL), 0);
  ck_assert(files_equal(tmp("i8.npy"), fixture("numpy_i8.npy")));

  uint8_t flags[7];
  for (int i = 0; i < 7; i++) flags[i] = i % 3 == 0;
  sg_array b = {.type = SG_NPY_BOOL, .ndim = 1, .shape = {7}, .numel = 7, .data = flags};
  ck_assert_int_eq(sg_npy_save_array(tmp("bool.npy"), &b, NULL), 0);
  ck_assert(files_equal(tmp("bool.npy"), fixture("numpy_bool.npy")));
}
END_TEST

/* ---- .npy files written by NumPy ---------------------------------------- */

static sg_array load_fixture_array(const char *name) {
  sg_array a;
  sg_io_error err = {{0}};
  ck_assert_msg(sg_npy_load_array(fixture(name), &a, &err) == 0, "%s", err.msg);
  return a;
}

START_TEST(reads_numpy_npy_files) {
  sg_io_error err = {{0}};
  sg_tensor *f4 = sg_npy_load(fixture("numpy_f4.npy"), &err);
  ck_assert_msg(f4 != NULL, "%s", err.msg);
  ck_assert(f4->dtype == SG_F32 && f4->ndim == 2 && f4->shape[0] == 3 && f4->shape[1] == 4);
  for (int i = 0; i < 12; i++) ck_assert_float_eq(sg_f32(f4)[i], i / 4.0f);
  sg_free(f4);

  sg_tensor *f8 = sg_npy_load(fixture("numpy_f8.npy"), &err);
  ck_assert(f8 && f8->dtype == SG_F64 && f8->ndim == 3 && f8->shape[2] == 4);
  for (int i = 0; i < 24; i++) ck_assert_double_eq(sg_f64(f8)[i], i * 0.5 - 3);
  sg_free(f8);

  sg_tensor *d0 = sg_npy_load(fixture("numpy_0d.npy"), &err);
  ck_assert(d0 && d0->ndim == 0 && d0->numel == 1 && sg_f64(d0)[0] == 2.5);
  sg_free(d0);

  sg_tensor *empty = sg_npy_load(fixture("numpy_empty.npy"), &err);
  ck_assert(empty && empty->ndim == 2 && empty->shape[0] == 0 && empty->shape[1] == 3);
  ck_assert_int_eq(empty->numel, 0);
  sg_free(empty);

  sg_tensor *v2 = sg_npy_load(fixture("numpy_v2.npy"), &err); /* format version 2.0 */
  ck_assert_msg(v2 != NULL, "%s", err.msg);
  for (int i = 0; i < 6; i++) ck_assert_float_eq(sg_f32(v2)[i], (float)i);
  sg_free(v2);

  sg_array i8 = load_fixture_array("numpy_i8.npy");
  ck_assert(i8.type == SG_NPY_I64 && i8.ndim == 1 && i8.numel == 5);
  for (int i = 0; i < 5; i++) ck_assert_int_eq(((int64_t *)i8.data)[i], (i - 2) * 1000000000000);
  sg_array_free(&i8);

  sg_array i4 = load_fixture_array("numpy_i4.npy");
  ck_assert(i4.type == SG_NPY_I32 && i4.ndim == 2 && i4.shape[0] == 2 && i4.shape[1] == 3);
  for (int i = 0; i < 6; i++) ck_assert_int_eq(((int32_t *)i4.data)[i], i - 3);
  sg_array_free(&i4);

  sg_array u1 = load_fixture_array("numpy_u1.npy");
  ck_assert(u1.type == SG_NPY_U8 && u1.numel == 6);
  for (int i = 0; i < 6; i++) ck_assert_int_eq(((uint8_t *)u1.data)[i], 250 + i);
  sg_array_free(&u1);

  sg_array b = load_fixture_array("numpy_bool.npy");
  ck_assert(b.type == SG_NPY_BOOL && b.numel == 7);
  for (int i = 0; i < 7; i++) ck_assert_int_eq(((uint8_t *)b.data)[i], i % 3 == 0);
  sg_array_free(&b);
}
END_TEST

START_TEST(tensor_load_refuses_integer_files) {
  sg_io_error err = {{0}};
  ck_assert_ptr_null(sg_npy_load(fixture("numpy_i8.npy"), &err));
  ASSERT_FAILS_WITH(err, "numpy_i8.npy");
  ASSERT_FAILS_WITH(err, "sg_npy_load_array");
}
END_TEST

START_TEST(refuses_fortran_order_and_big_endian) {
  sg_io_error err = {{0}};
  sg_array a;
  ck_assert_int_eq(sg_npy_load_array(fixture("numpy_fortran.npy"), &a, &err), -1);
  ASSERT_FAILS_WITH(err, "numpy_fortran.npy: fortran_order is True");
  ck_assert_ptr_null(a.data);
  ck_assert_ptr_null(sg_npy_load(fixture("numpy_bigendian.npy"), &err));
  ASSERT_FAILS_WITH(err, "numpy_bigendian.npy: unsupported dtype '>f8' (big-endian");
}
END_TEST

/* ---- refusing damaged .npy files ---------------------------------------- */

START_TEST(refuses_every_truncation_of_an_npy_file) {
  size_t len;
  unsigned char *bytes = read_bytes(fixture("numpy_f8.npy"), &len);
  for (size_t cut = 0; cut < len; cut++) {
    write_bytes(tmp("cut.npy"), bytes, cut);
    sg_io_error err = {{0}};
    sg_array a;
    ck_assert_int_eq(sg_npy_load_array(tmp("cut.npy"), &a, &err), -1);
    ASSERT_FAILS_WITH(err, "cut.npy: ");
    ck_assert_ptr_null(sg_npy_load(tmp("cut.npy"), NULL)); /* err may be NULL */
  }
  unsigned char *longer = malloc(len + 1);
  memcpy(longer, bytes, len);
  longer[len] = 0;
  write_bytes(tmp("long.npy"), longer, len + 1);
  sg_io_error err = {{0}};
  ck_assert_ptr_null(sg_npy_load(tmp("long.npy"), &err));
  ASSERT_FAILS_WITH(err, "1 unexpected bytes after the array data");
  free(longer);
  free(bytes);
}
END_TEST

START_TEST(refuses_bad_magic_version_and_missing_files) {
  size_t len;
  unsigned char *bytes = read_bytes(fixture("numpy_f4.npy"), &len);
  sg_io_error err = {{0}};
  bytes[1] = 'M';
  write_bytes(tmp("magic.npy"), bytes, len);
  ck_assert_ptr_null(sg_npy_load(tmp("magic.npy"), &err));
  ASSERT_FAILS_WITH(err, "magic.npy: not a .npy file (bad magic)");
  bytes[1] = 'N';
  bytes[6] = 9;
  write_bytes(tmp("version.npy"), bytes, len);
  ck_assert_ptr_null(sg_npy_load(tmp("version.npy"), &err));
  ASSERT_FAILS_WITH(err, "unsupported .npy format version 9.0");
  free(bytes);
  ck_assert_ptr_null(sg_npy_load(tmp("absent.npy"), &err));
  ASSERT_FAILS_WITH(err, "absent.npy: cannot open");
  ck_assert_ptr_null(sg_npy_load(tmpdir, &err));
  ASSERT_FAILS_WITH(err, "not a regular file");
}
END_TEST

/* Writes a version 1.0 .npy file with the given header text and data. */
static void write_raw_npy(const char *path, const char *header, const void *data, size_t n) {
  size_t hlen = strlen(header);
  unsigned char *buf = malloc(10 + hlen + n + 1);
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (unsigned char)(hlen & 0xFF);
  buf[9] = (unsigned char)(hlen >> 8);
  memcpy(buf + 10, header, hlen);
  if (n) memcpy(buf + 10 + hlen, data, n);
  write_bytes(path, buf, 10 + hlen + n);
  free(buf);
}

START_TEST(refuses_malformed_headers) {
  static const struct {
    const char *header;
    size_t data_bytes;
    const char *expect; /* NULL: must load */
  } cases[] = {
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", 8, NULL},
      {"{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(2,1)}", 8, NULL},
      {"{'descr': '<f4', 'shape': (2,), }", 8, "lacks one of"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8, "unexpected key"},
      {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 8, "duplicate"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", 8, "not the tuple"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", 8, "non-negative integer"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", 8,
       "non-negative integer"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4)}", 8,
       "overflows"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 2)}", 8,
       "7 dimensions"},
      {"{'descr': '<f4", 0, "'descr' is not a dtype string"},
      {"[1, 2]", 0, "expected '{'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", 8, "after '}'"},
      {"{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", 8, "not True or False"},
      {"{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2,)}", 8, "not True or False"},
      {"{'descr': '<U5', 'fortran_order': False, 'shape': (2,)}", 40, "unsupported dtype '<U5'"},
      {"{'descr': '|O', 'fortran_order': False, 'shape': (2,)}", 16, "object arrays"},
      {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", 8, "structured"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", 8, "truncated"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 8, "4 unexpected bytes"},
  };
  const float data[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    write_raw_npy(tmp("h.npy"), cases[i].header, data, cases[i].data_bytes);
    sg_io_error err = {{0}};
    sg_array a;
    int rc = sg_npy_load_array(tmp("h.npy"), &a, &err);
    if (!cases[i].expect) {
      ck_assert_msg(rc == 0, "case %zu: %s", i, err.msg);
      ck_assert_float_eq(((float *)a.data)[1], 2.0f);
      sg_array_free(&a);
      continue;
    }
    ck_assert_msg(rc == -1, "case %zu loaded: %s", i, cases[i].header);
    ck_assert_msg(strstr(err.msg, cases[i].expect) && strstr(err.msg, "h.npy: "),
                  "case %zu: expected \"%s\", got \"%s\"", i, cases[i].expect, err.msg);
  }
  /* a header length pointing past the end of the file */
  write_bytes(tmp("len.npy"), "\x93NUMPY\x01\x00\xff\x7f{}", 12);
  sg_io_error err = {{0}};
  ck_assert_ptr_null(sg_npy_load(tmp("len.npy"), &err));
  ASSERT_FAILS_WITH(err, "header length 32767");
}
END_TEST

/* ---- .npz round trips ----------------------------------------------------- */

/* Compression method of the first member, from the central directory. */
static int first_member_method(const char *path) {
  size_t len;
  unsigned char *b = read_bytes(path, &len);
  int method = -1;
  for (size_t i = 0; i + 12 <= len && method < 0; i++)
    if (memcmp(b + i, "PK\x01\x02", 4) == 0) method = b[i + 10] | b[i + 11] << 8;
  free(b);
  return method;
}

static void write_sample_npz(const char *path, bool compress, sg_tensor *const *tensors,
                             const sg_array *arrays) {
  sg_io_error err = {{0}};
  sg_npz_writer *w = sg_npz_writer_open(path, compress, &err);
  ck_assert_msg(w != NULL, "%s", err.msg);
  static const char *tensor_names[] = {"weights", "scalar_t", "empty", "big"};
  static const char *array_names[] = {"f32", "f64", "i32", "i64", "u8", "bool"};
  for (int i = 0; i < 4; i++)
    ck_assert_msg(sg_npz_add_tensor(w, tensor_names[i], tensors[i], &err) == 0, "%s", err.msg);
  for (int i = 0; i < 6; i++)
    ck_assert_msg(sg_npz_add_array(w, array_names[i], &arrays[i], &err) == 0, "%s", err.msg);
  ck_assert_int_eq(sg_npz_add_scalar_f64(w, "lr", 0.125, &err), 0);
  ck_assert_int_eq(sg_npz_add_scalar_i64(w, "step", -7, &err), 0);
  ck_assert_int_eq(sg_npz_add_scalar_i64(w,
                                         "gr\xc3\xb6\xc3\x9f"
                                         "e",
                                         3, &err),
                   0); /* UTF-8 */
  ck_assert_msg(sg_npz_writer_close(w, &err) == 0, "%s", err.msg);
}

static void check_sample_npz(const char *path, sg_tensor *const *tensors, const sg_array *arrays) {
  sg_io_error err = {{0}};
  sg_npz *z = sg_npz_open(path, &err);
  ck_assert_msg(z != NULL, "%s", err.msg);
  static const char *names[] = {"weights",
                                "scalar_t",
                                "empty",
                                "big",
                                "f32",
                                "f64",
                                "i32",
                                "i64",
                                "u8",
                                "bool",
                                "lr",
                                "step",
                                "gr\xc3\xb6\xc3\x9f"
                                "e"};
  ck_assert_int_eq(sg_npz_count(z), 13);
  for (int i = 0; i < 13; i++) ck_assert_str_eq(sg_npz_name(z, i), names[i]);
  ck_assert_ptr_null(sg_npz_name(z, 13));
  for (int i = 0; i < 4; i++) {
    sg_tensor *t = sg_npz_tensor(z, names[i], tensors[i]->dtype, &err);
    ck_assert_msg(t != NULL, "%s", err.msg);
    assert_same_tensor(t, tensors[i]);
    sg_free(t);
  }
  for (int i = 0; i < 6; i++) assert_same_array(sg_npz_get(z, names[4 + i]), &arrays[i]);
  double v;
  ck_assert_int_eq(sg_npz_scalar(z, "lr", &v, &err), 0);
  ck_assert_double_eq(v, 0.125);
  ck_assert_int_eq(sg_npz_scalar(z, "step", &v, &err), 0);
  ck_assert_double_eq(v, -7);
  ck_assert_int_eq(sg_npz_get(z, "step")->type, SG_NPY_I64);
  ck_assert_int_eq(sg_npz_get(z, "step")->ndim, 0);
  ck_assert_int_eq(sg_npz_scalar(z,
                                 "gr\xc3\xb6\xc3\x9f"
                                 "e",
                                 &v, &err),
                   0);
  ck_assert_double_eq(v, 3);
  sg_npz_close(z);
}

START_TEST(npz_round_trip) {
  bool compress = _i == 1;
  sg_tensor *tensors[4] = {
      patterned_tensor(SG_F32, 2, (int64_t[]){3, 4}),
      patterned_tensor(SG_F64, 0, NULL),
      patterned_tensor(SG_F32, 2, (int64_t[]){0, 3}),
      sg_zeros(NULL, SG_F64, 1, (int64_t[]){100000}),
  };
  for (int i = 0; i < 100000; i++) sg_set(tensors[3], i, i % 10);
  sg_array arrays[6];
  for (int t = 0; t < 6; t++) arrays[t] = patterned_array((sg_npy_type)t, 2, (int64_t[]){2, 5});
  const char *path = tmp(compress ? "compressed.npz" : "stored.npz");
  write_sample_npz(path, compress, tensors, arrays);
  check_sample_npz(path, tensors, arrays);
  ck_assert_int_eq(first_member_method(path), compress ? 8 : 0);
  size_t len;
  free(read_bytes(path, &len));
  if (compress)
    ck_assert_uint_lt(len, 100000); /* the 800 kB member really was deflated */
  else
    ck_assert_uint_gt(len, 800000);
  ck_assert_int_eq(count_dir_entries(tmpdir), 1);
  for (int i = 0; i < 4; i++) sg_free(tensors[i]);
  for (int t = 0; t < 6; t++) sg_array_free(&arrays[t]);
}
END_TEST

/* Random doubles barely compress, so reading and writing go through many
 * buffer refills on both sides. */
START_TEST(npz_compressed_incompressible_member) {
  sg_rng r;
  sg_rng_seed(&r, 42);
  sg_tensor *t = sg_rand_normal(NULL, &r, SG_F64, 2, (int64_t[]){500, 400}, 0, 1);
  sg_io_error err = {{0}};
  sg_npz_writer *w = sg_npz_writer_open(tmp("noise.npz"), true, &err);
  ck_assert_int_eq(sg_npz_add_tensor(w, "noise", t, &err), 0);
  ck_assert_int_eq(sg_npz_writer_close(w, &err), 0);
  sg_npz *z = sg_npz_open(tmp("noise.npz"), &err);
  ck_assert_msg(z != NULL, "%s", err.msg);
  sg_tensor *back = sg_npz_tensor(z, "noise", SG_F64, &err);
  assert_same_tensor(back, t);
  sg_tensor *as_f32 = sg_npz_tensor(z, "noise", SG_F32, &err);
  ck_assert_int_eq(as_f32->dtype, SG_F32);
  ck_assert_float_eq(sg_f32(as_f32)[123], (float)sg_f64(t)[123]);
  sg_free(as_f32);
  sg_free(back);
  sg_npz_close(z);
  sg_free(t);
}
END_TEST

START_TEST(npz_tensor_converts_integer_members) {
  int64_t ints[3] = {-5, 0, 1 << 20};
  uint8_t flags[3] = {1, 0, 1};
  sg_array a = {.type = SG_NPY_I64, .ndim = 1, .shape = {3}, .numel = 3, .data = ints};
  sg_array b = {.type = SG_NPY_BOOL, .ndim = 1, .shape = {3}, .numel = 3, .data = flags};
  sg_io_error err = {{0}};
  sg_npz_writer *w = sg_npz_writer_open(tmp("ints.npz"), false, &err);
  ck_assert_int_eq(sg_npz_add_array(w, "ints", &a, &err), 0);
  ck_assert_int_eq(sg_npz_add_array(w, "flags", &b, &err), 0);
  ck_assert_int_eq(sg_npz_writer_close(w, &err), 0);
  sg_npz *z = sg_npz_open(tmp("ints.npz"), &err);
  sg_tensor *f = sg_npz_tensor(z, "ints", SG_F32, &err),
            *g = sg_npz_tensor(z, "flags", SG_F64, &err);
  ck_assert(f && g);
  ck_assert_float_eq(sg_f32(f)[0], -5.0f);
  ck_assert_float_eq(sg_f32(f)[2], 1048576.0f);
  ck_assert_double_eq(sg_f64(g)[0], 1.0);
  ck_assert_double_eq(sg_f64(g)[1], 0.0);
  sg_free(f);
  sg_free(g);

  ck_assert_ptr_null(sg_npz_tensor(z, "nope", SG_F32, &err));
  ASSERT_FAILS_WITH(err, "ints.npz: no member named 'nope'");
  ck_assert_ptr_null(sg_npz_get(z, "nope"));
  double v;
  ck_assert_int_eq(sg_npz_scalar(z, "ints", &v, &err), -1);
  ASSERT_FAILS_WITH(err, "member 'ints' has 3 elements");
  ck_assert_int_eq(sg_npz_scalar(z, "nope", &v, &err), -1);
  sg_npz_close(z);
}
END_TEST

/* ---- .npz files written by NumPy ----------------------------------------- */

static sg_npz *open_fixture_npz(const char *name) {
  sg_io_error err = {{0}};
  sg_npz *z = sg_npz_open(fixture(name), &err);
  ck_assert_msg(z != NULL, "%s", err.msg);
  return z;
}

static void check_member_a(const sg_npz *z) {
  const sg_array *a = sg_npz_get(z, "a");
  ck_assert(a && a->type == SG_NPY_F32 && a->ndim == 2 && a->shape[0] == 2 && a->shape[1] == 3);
  for (int i = 0; i < 6; i++) ck_assert_float_eq(((float *)a->data)[i], (float)i);
}

START_TEST(reads_numpy_savez) {
  sg_npz *z = open_fixture_npz("numpy_savez.npz");
  static const char *names[] = {"a", "b", "flag", "scalar", "mask"};
  ck_assert_int_eq(sg_npz_count(z), 5);
  for (int i = 0; i < 5; i++) ck_assert_str_eq(sg_npz_name(z, i), names[i]);
  check_member_a(z);
  const sg_array *b = sg_npz_get(z, "b"), *flag = sg_npz_get(z, "flag");
  ck_assert(b && b->type == SG_NPY_I64 && b->numel == 4);
  for (int i = 0; i < 4; i++) ck_assert_int_eq(((int64_t *)b->data)[i], i);
  ck_assert(flag && flag->type == SG_NPY_BOOL && flag->ndim == 0);
  ck_assert_int_eq(*(uint8_t *)flag->data, 1);
  double v;
  ck_assert_int_eq(sg_npz_scalar(z, "scalar", &v, NULL), 0);
  ck_assert_double_eq(v, 1.5);
  const sg_array *mask = sg_npz_get(z, "mask");
  for (int i = 0; i < 5; i++) ck_assert_int_eq(((uint8_t *)mask->data)[i], i % 2 == 0);
  sg_npz_close(z);
}
END_TEST

START_TEST(reads_numpy_savez_compressed) {
  sg_npz *z = open_fixture_npz("numpy_savez_compressed.npz");
  ck_assert_int_eq(sg_npz_count(z), 3);
  check_member_a(z);
  sg_io_error err = {{0}};
  sg_tensor *big = sg_npz_tensor(z, "big", SG_F64, &err);
  ck_assert_msg(big != NULL, "%s", err.msg);
  ck_assert(big->ndim == 1 && big->numel == 30000);
  for (int i = 0; i < 30000; i++) ck_assert_double_eq(sg_f64(big)[i], i * 0.25);
  sg_free(big);
  double count;
  ck_assert_int_eq(sg_npz_scalar(z, "count", &count, &err), 0);
  ck_assert_double_eq(count, 7);
  sg_npz_close(z);
}
END_TEST

/* Local headers whose sizes are 0xFFFFFFFF, the real ones in zip64 extras. */
START_TEST(reads_zip64_local_headers) {
  sg_npz *z = open_fixture_npz("numpy_zip64_local.npz");
  const sg_array *w = sg_npz_get(z, "w"), *n = sg_npz_get(z, "n");
  ck_assert(w && w->type == SG_NPY_F64 && w->numel == 10);
  ck_assert(n && n->type == SG_NPY_I32 && n->numel == 3);
  for (int i = 0; i < 10; i++) ck_assert_double_eq(((double *)w->data)[i], i);
  for (int i = 0; i < 3; i++) ck_assert_int_eq(((int32_t *)n->data)[i], i);
  sg_npz_close(z);
}
END_TEST

START_TEST(widens_narrow_integer_types) {
  sg_npz *z = open_fixture_npz("numpy_narrow_ints.npz");
  const sg_array *i1 = sg_npz_get(z, "i1"), *i2 = sg_npz_get(z, "i2");
  const sg_array *u2 = sg_npz_get(z, "u2"), *u4 = sg_npz_get(z, "u4");
  ck_assert(i1 && i2 && u2 && u4);
  ck_assert(i1->type == SG_NPY_I32 && i2->type == SG_NPY_I32 && u2->type == SG_NPY_I32);
  ck_assert(u4->type == SG_NPY_I64);
  const int32_t want_i1[] = {-128, -1, 0, 127}, want_i2[] = {-32768, -1, 0, 32767};
  const int32_t want_u2[] = {0, 1, 65535};
  const int64_t want_u4[] = {0, 1, 4294967295};
  ck_assert_mem_eq(i1->data, want_i1, sizeof want_i1);
  ck_assert_mem_eq(i2->data, want_i2, sizeof want_i2);
  ck_assert_mem_eq(u2->data, want_u2, sizeof want_u2);
  ck_assert_mem_eq(u4->data, want_u4, sizeof want_u4);
  sg_npz_close(z);
}
END_TEST

/* Members we cannot load do not hide the ones we can. */
START_TEST(keeps_unsupported_members_with_their_reason) {
  sg_npz *z = open_fixture_npz("numpy_mixed.npz");
  ck_assert_int_eq(sg_npz_count(z), 4);
  const sg_array *x = sg_npz_get(z, "x");
  ck_assert(x && x->numel == 3 && ((double *)x->data)[2] == 2.0);
  sg_io_error err = {{0}};
  ck_assert_ptr_null(sg_npz_get(z, "text"));
  ck_assert_ptr_null(sg_npz_tensor(z, "text", SG_F32, &err));
  ASSERT_FAILS_WITH(err, "numpy_mixed.npz: member 'text.npy': unsupported dtype '<U2'");
  ck_assert_ptr_null(sg_npz_tensor(z, "fortran", SG_F32, &err));
  ASSERT_FAILS_WITH(err, "fortran_order is True");
  double v;
  ck_assert_int_eq(sg_npz_scalar(z, "big_endian", &v, &err), -1);
  ASSERT_FAILS_WITH(err, "unsupported dtype '>i4'");
  sg_npz_close(z);
}
END_TEST

/* ---- refusing damaged .npz files ------------------------------------------ */

static size_t find_bytes(const unsigned char *hay, size_t len, const char *needle, size_t from) {
  size_t n = strlen(needle);
  for (size_t i = from; i + n <= len; i++)
    if (memcmp(hay + i, needle, n) == 0) return i;
  ck_abort_msg("\"%s\" not found", needle);
  return 0;
}

START_TEST(refuses_crc_mismatch) {
  size_t len;
  unsigned char *bytes = read_bytes(fixture("numpy_savez.npz"), &len);
  /* last data byte of member b: just before the next local header */
  size_t b_header = find_bytes(bytes, len, "b.npy", 0);
  size_t next = find_bytes(bytes, len, "PK\x03\x04", b_header);
  bytes[next - 1] ^= 0x01;
  write_bytes(tmp("crc.npz"), bytes, len);
  sg_io_error err = {{0}};
  ck_assert_ptr_null(sg_npz_open(tmp("crc.npz"), &err));
  ASSERT_FAILS_WITH(err, "crc.npz: member 'b.npy' has CRC mismatch");
  free(bytes);

  bytes = read_bytes(fixture("numpy_savez_compressed.npz"), &len);
  size_t big = find_bytes(bytes, len, "big.npy", 0);
  bytes[big + 5000] ^= 0x10; /* inside the deflate stream */
  write_bytes(tmp("deflate.npz"), bytes, len);
  ck_assert_ptr_null(sg_npz_open(tmp("deflate.npz"), &err));
  ASSERT_FAILS_WITH(err, "deflate.npz: member 'big.npy'");
  free(bytes);
}
END_TEST

static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void set_le32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* A deflate stream followed by junk inside the member's compressed size:
 * the data and CRC are intact, only the sizes disagree. */
START_TEST(refuses_junk_after_a_deflate_stream) {
  sg_io_error err = {{0}};
  sg_npz_writer *w = sg_npz_writer_open(tmp("one.npz"), true, &err);
  ck_assert_int_eq(sg_npz_add_scalar_f64(w, "x", 1.5, &err), 0);
  ck_assert_int_eq(sg_npz_writer_close(w, &err), 0);
  size_t len;
  unsigned char *b = read_bytes(tmp("one.npz"), &len);
  size_t central = find_bytes(b, len, "PK\x01\x02", 0), end = len - 22;
  unsigned char *out = malloc(len + 4);
  memcpy(out, b, central);
  memcpy(out + central, "junk", 4);
  memcpy(out + central + 4, b + central, len - central);
  set_le32(out + 18, le32(out + 18) + 4);                             /* local compressed size */
  set_le32(out + central + 4 + 20, le32(out + central + 4 + 20) + 4); /* central one */
  set_le32(out + end + 4 + 16, le32(out + end + 4 + 16) + 4);         /* directory offset */
  write_bytes(tmp("junk.npz"), out, len + 4);
  ck_assert_ptr_null(sg_npz_open(tmp("junk.npz"), &err));
  ASSERT_FAILS_WITH(err, "junk.npz: member 'x.npy': compressed size does not match");
  free(out);
  free(b);
}
END_TEST

/* Every prefix is refused, and no single corrupted byte crashes the reader
 * (most are refused; a few, e.g. in timestamps, are harmless). */
static void damage_every_byte(const char *name) {
  size_t len;
  unsigned char *bytes = read_bytes(fixture(name), &len);
  for (size_t cut = 0; cut < len; cut++) {
    write_bytes(tmp("cut.npz"), bytes, cut);
    sg_io_error err = {{0}};
    ck_assert_ptr_null(sg_npz_open(tmp("cut.npz"), &err));
    ASSERT_FAILS_WITH(err, "cut.npz");
  }
  int refused = 0;
  for (size_t i = 0; i < len; i++) {
    bytes[i] ^= 0xA5;
    write_bytes(tmp("flip.npz"), bytes, len);
    bytes[i] ^= 0xA5;
    sg_io_error err = {{0}};
    sg_npz *z = sg_npz_open(tmp("flip.npz"), &err);
    if (!z) {
      refused++;
      ASSERT_FAILS_WITH(err, "flip.npz");
    }
    for (int m = 0; m < sg_npz_count(z); m++) {
      sg_tensor *t = sg_npz_tensor(z, sg_npz_name(z, m), SG_F64, NULL);
      sg_free(t);
    }
    sg_npz_close(z);
  }
  ck_assert_int_gt(refused, (int)len / 2);
  free(bytes);
}

START_TEST(survives_every_truncation_and_corrupt_byte) {
  damage_every_byte("numpy_zip64_local.npz");
  damage_every_byte("numpy_mixed.npz");
}
END_TEST

START_TEST(refuses_files_that_are_not_archives) {
  sg_io_error err = {{0}};
  ck_assert_ptr_null(sg_npz_open(fixture("numpy_f8.npy"), &err));
  ASSERT_FAILS_WITH(err, "numpy_f8.npy: not an .npz archive");
  ck_assert_ptr_null(sg_npz_open(tmp("absent.npz"), &err));
  ASSERT_FAILS_WITH(err, "absent.npz: cannot open");
  write_bytes(tmp("tiny.npz"), "PK", 2);
  ck_assert_ptr_null(sg_npz_open(tmp("tiny.npz"), NULL));
}
END_TEST

/* ---- failed writes leave nothing behind ----------------------------------- */

static void write_old_file(const char *path) {
  write_bytes(path, "old contents", 12);
}

static void assert_old_file(const char *path) {
  size_t len;
  unsigned char *b = read_bytes(path, &len);
  ck_assert_uint_eq(len, 12);
  ck_assert_mem_eq(b, "old contents", 12);
  free(b);
}

START_TEST(failed_writes_leave_existing_files_untouched) {
  sg_tensor *t = patterned_tensor(SG_F32, 1, (int64_t[]){4});
  sg_io_error err = {{0}};
  ck_assert_int_eq(sg_npy_save(tmp("missing_dir/x.npy"), t, &err), -1);
  ASSERT_FAILS_WITH(err, "missing_dir/x.npy: cannot create a temporary file");
  ck_assert_ptr_null(sg_npz_writer_open(tmp("missing_dir/x.npz"), true, &err));
  ASSERT_FAILS_WITH(err, "missing_dir/x.npz");

  write_old_file(tmp("data.npz"));
  sg_npz_writer *w = sg_npz_writer_open(tmp("data.npz"), true, &err);
  ck_assert_int_eq(sg_npz_add_tensor(w, "t", t, &err), 0);
  ck_assert_int_eq(count_dir_entries(tmpdir), 2); /* data.npz and the temporary file */
  sg_npz_writer_abort(w);
  assert_old_file(tmp("data.npz"));
  ck_assert_int_eq(count_dir_entries(tmpdir), 1);

  /* an inconsistent array is refused before anything is written */
  write_old_file(tmp("x.npy"));
  sg_array bad = {.type = SG_NPY_F32, .ndim = 1, .shape = {4}, .numel = 5, .data = t->data};
  ck_assert_int_eq(sg_npy_save_array(tmp("x.npy"), &bad, &err), -1);
  ASSERT_FAILS_WITH(err, "x.npy: numel 5 does not match the shape");
  assert_old_file(tmp("x.npy"));

  /* the target is a directory: rename fails, the temporary file goes */
  ck_assert_int_eq(mkdir(tmp("adir"), 0755), 0);
  ck_assert_int_eq(sg_npy_save(tmp("adir"), t, &err), -1);
  ASSERT_FAILS_WITH(err, "cannot move the temporary file into place");
  ck_assert_int_eq(count_dir_entries(tmpdir), 3); /* data.npz, x.npy, adir */
  sg_free(t);
}
END_TEST

/* A refused member (bad name, duplicate, bad array) leaves the archive
 * usable; the members added before and after it are all there. */
START_TEST(refused_members_do_not_spoil_the_archive) {
  sg_io_error err = {{0}};
  sg_npz_writer *w = sg_npz_writer_open(tmp("ok.npz"), false, &err);
  ck_assert_int_eq(sg_npz_add_scalar_f64(w, "a", 1, &err), 0);
  ck_assert_int_eq(sg_npz_add_scalar_f64(w, "a", 2, &err), -1);
  ASSERT_FAILS_WITH(err, "ok.npz: member 'a.npy' was already added");
  ck_assert_int_eq(sg_npz_add_tensor(w, "t", NULL, &err), -1);
  ck_assert_int_eq(sg_npz_add_array(w, NULL, NULL, &err), -1);
  sg_array bad = {.type = (sg_npy_type)99, .ndim = 0, .numel = 1};
  ck_assert_int_eq(sg_npz_add_array(w, "bad", &bad, &err), -1);
  ASSERT_FAILS_WITH(err, "invalid array type 99");
  ck_assert_int_eq(sg_npz_add_scalar_i64(w, "b", 2, &err), 0);
  ck_assert_int_eq(sg_npz_writer_close(w, &err), 0);
  sg_npz *z = sg_npz_open(tmp("ok.npz"), &err);
  ck_assert_int_eq(sg_npz_count(z), 2);
  sg_npz_close(z);

  ck_assert_int_eq(sg_npz_writer_close(NULL, &err), -1);
  sg_npz_writer_abort(NULL);
  ck_assert_int_eq(sg_npz_add_scalar_f64(NULL, "x", 1, NULL), -1);
  ck_assert_int_eq(sg_npz_count(NULL), 0);
  sg_npz_close(NULL);
  sg_array_free(NULL);
}
END_TEST

/* A write error mid-member (here: the file size limit) fails the whole
 * archive; the old file stays and the temporary file is removed. No Check
 * assertion runs while the limit is set: Check logs to a file of its own. */
START_TEST(io_error_mid_write_keeps_the_old_file) {
  write_old_file(tmp("big.npz"));
  write_old_file(tmp("big.npy"));
  sg_tensor *t = sg_zeros(NULL, SG_F64, 1, (int64_t[]){100000});
  struct rlimit old, small = {.rlim_cur = 65536};
  ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
  small.rlim_max = old.rlim_max;
  signal(SIGXFSZ, SIG_IGN); /* make the write fail with EFBIG instead of a signal */
  sg_io_error npy_err = {{0}}, add_err = {{0}}, next_err = {{0}}, close_err = {{0}};
  int limited = setrlimit(RLIMIT_FSIZE, &small);
  int npy_rc = sg_npy_save(tmp("big.npy"), t, &npy_err);
  sg_npz_writer *w = sg_npz_writer_open(tmp("big.npz"), false, NULL);
  int add_rc = sg_npz_add_tensor(w, "t", t, &add_err);
  int next_rc = sg_npz_add_scalar_f64(w, "small", 1, &next_err);
  int close_rc = sg_npz_writer_close(w, &close_err);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, SIG_DFL);

  ck_assert_int_eq(limited, 0);
  ck_assert_int_eq(npy_rc, -1);
  ASSERT_FAILS_WITH(npy_err, "big.npy: write failed");
  ck_assert_int_eq(add_rc, -1);
  ASSERT_FAILS_WITH(add_err, "big.npz: member 't.npy': write failed");
  ck_assert_int_eq(next_rc, -1);
  ASSERT_FAILS_WITH(next_err, "an earlier member failed");
  ck_assert_int_eq(close_rc, -1);
  ASSERT_FAILS_WITH(close_err, "big.npz: not written");
  assert_old_file(tmp("big.npz"));
  assert_old_file(tmp("big.npy"));
  ck_assert_int_eq(count_dir_entries(tmpdir), 2);
  sg_free(t);
}
END_TEST

START_TEST(replacing_a_file_keeps_its_permissions) {
  write_old_file(tmp("p.npy"));
  ck_assert_int_eq(chmod(tmp("p.npy"), 0640), 0);
  sg_tensor *t = sg_zeros(NULL, SG_F32, 1, (int64_t[]){3});
  ck_assert_int_eq(sg_npy_save(tmp("p.npy"), t, NULL), 0);
  struct stat st;
  ck_assert_int_eq(stat(tmp("p.npy"), &st), 0);
  ck_assert_int_eq(st.st_mode & 0777, 0640);
  sg_free(t);
}
END_TEST

/* ---- allocation ---------------------------------------------------------- */

/* Counts live blocks; fails every allocation from fail_at on. */
static long live_blocks, allocations, fail_at = -1;
static void *counting_alloc(size_t n, void *u) {
  (void)u;
  if (fail_at >= 0 && allocations >= fail_at) return NULL;
  allocations++;
  live_blocks++;
  return malloc(n);
}
static void *counting_realloc(void *p, size_t n, void *u) {
  (void)u;
  if (fail_at >= 0 && allocations >= fail_at) return NULL;
  allocations++;
  if (!p) live_blocks++;
  return realloc(p, n);
}
static void counting_free(void *p, void *u) {
  (void)u;
  live_blocks--;
  free(p);
}
static const sg_allocator counting = {counting_alloc, counting_realloc, counting_free, NULL};

static int write_and_read_back(void) {
  sg_tensor *t = sg_zeros(NULL, SG_F32, 2, (int64_t[]){300, 300});
  if (!t) return -1;
  sg_io_error err = {{0}};
  sg_npz_writer *w = sg_npz_writer_open(tmp("alloc.npz"), true, &err);
  int rc = w ? 0 : -1;
  if (w && (sg_npz_add_tensor(w, "t", t, &err) || sg_npz_add_scalar_i64(w, "n", 1, &err))) rc = -1;
  if (w && rc)
    sg_npz_writer_abort(w);
  else if (w)
    rc = sg_npz_writer_close(w, &err);
  sg_free(t);
  if (rc) {
    ck_assert_msg(err.msg[0] != '\0', "failure without a message");
    return rc;
  }
  sg_npz *z = sg_npz_open(tmp("alloc.npz"), &err);
  if (!z) {
    ck_assert_msg(strstr(err.msg, "out of memory"), "%s", err.msg);
    return -1;
  }
  sg_tensor *back = sg_npz_tensor(z, "t", SG_F64, &err);
  sg_npz_close(z);
  rc = back ? 0 : -1;
  sg_free(back);
  return rc;
}

START_TEST(allocates_only_through_the_hooks_and_survives_failures) {
  sg_set_allocator(&counting);
  ck_assert_int_eq(write_and_read_back(), 0);
  ck_assert_int_gt(allocations, 5); /* zlib's state came through the hooks too */
  ck_assert_int_eq(live_blocks, 0);
  long needed = allocations;
  for (fail_at = 0; fail_at < needed; fail_at++) {
    allocations = live_blocks = 0;
    ck_assert_int_eq(write_and_read_back(), -1);
    ck_assert_msg(live_blocks == 0, "leak after failing allocation %ld", fail_at);
    ck_assert_int_eq(count_dir_entries(tmpdir), 1); /* alloc.npz from the first run only */
  }
  sg_set_allocator(NULL);
}
END_TEST

Suite *suite_npy(void) {
  Suite *s = suite_create("npy");
  TCase *npy = tcase_create("npy");
  tcase_add_checked_fixture(npy, make_tmpdir, remove_tmpdir);
  tcase_set_timeout(npy, 60); /* the default 4 s is tight on a loaded machine */
  tcase_add_test(npy, npy_tensor_round_trip);
  tcase_add_test(npy, npy_array_round_trip_every_type);
  tcase_add_test(npy, npy_bools_are_written_as_zero_or_one);
  tcase_add_test(npy, npy_files_match_numpy_byte_for_byte);
  tcase_add_test(npy, reads_numpy_npy_files);
  tcase_add_test(npy, tensor_load_refuses_integer_files);
  tcase_add_test(npy, refuses_fortran_order_and_big_endian);
  tcase_add_test(npy, refuses_every_truncation_of_an_npy_file);
  tcase_add_test(npy, refuses_bad_magic_version_and_missing_files);
  tcase_add_test(npy, refuses_malformed_headers);
  suite_add_tcase(s, npy);

  TCase *npz = tcase_create("npz");
  tcase_add_checked_fixture(npz, make_tmpdir, remove_tmpdir);
  tcase_set_timeout(npz, 60);                     /* the default 4 s is tight on a loaded machine */
  tcase_add_loop_test(npz, npz_round_trip, 0, 2); /* stored, then compressed */
  tcase_add_test(npz, npz_compressed_incompressible_member);
  tcase_add_test(npz, npz_tensor_converts_integer_members);
  tcase_add_test(npz, reads_numpy_savez);
  tcase_add_test(npz, reads_numpy_savez_compressed);
  tcase_add_test(npz, reads_zip64_local_headers);
  tcase_add_test(npz, widens_narrow_integer_types);
  tcase_add_test(npz, keeps_unsupported_members_with_their_reason);
  tcase_add_test(npz, refuses_crc_mismatch);
  tcase_add_test(npz, refuses_junk_after_a_deflate_stream);
  tcase_add_test(npz, survives_every_truncation_and_corrupt_byte);
  tcase_add_test(npz, refuses_files_that_are_not_archives);
  suite_add_tcase(s, npz);

  TCase *writes = tcase_create("atomic_writes");
  tcase_add_checked_fixture(writes, make_tmpdir, remove_tmpdir);
  tcase_set_timeout(writes, 60); /* the default 4 s is tight on a loaded machine */
  tcase_add_test(writes, failed_writes_leave_existing_files_untouched);
  tcase_add_test(writes, refused_members_do_not_spoil_the_archive);
  tcase_add_test(writes, io_error_mid_write_keeps_the_old_file);
  tcase_add_test(writes, replacing_a_file_keeps_its_permissions);
  tcase_add_test(writes, allocates_only_through_the_hooks_and_survives_failures);
  suite_add_tcase(s, writes);
  return s;
}
