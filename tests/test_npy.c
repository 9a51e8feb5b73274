/* .npy: round trips, files written by NumPy (tests/fixtures, made by
 * tests/make_npy_fixtures.py), refusal of bad files, and atomic writes of
 * .npy and .npz files. Every test works in a fresh mkdtemp directory that
 * teardown removes. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npy_helpers.h"
#include "sg_test.h"

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

/* NumPy's names of the types, as messages and tools print them. */
START_TEST(npy_type_names) {
  const char *want[] = {"float32", "float64", "int32", "int64", "uint8", "bool"};
  for (int type = SG_NPY_F32; type <= SG_NPY_BOOL; type++)
    ck_assert_str_eq(sg_npy_type_name((sg_npy_type)type), want[type]);
  ck_assert_str_eq(sg_npy_type_name((sg_npy_type)(SG_NPY_BOOL + 1)), "unknown");
  ck_assert_str_eq(sg_npy_type_name((sg_npy_type)-1), "unknown");
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
  tcase_add_test(npy, npy_type_names);
  tcase_add_test(npy, npy_bools_are_written_as_zero_or_one);
  tcase_add_test(npy, npy_files_match_numpy_byte_for_byte);
  tcase_add_test(npy, reads_numpy_npy_files);
  tcase_add_test(npy, tensor_load_refuses_integer_files);
  tcase_add_test(npy, refuses_fortran_order_and_big_endian);
  tcase_add_test(npy, refuses_every_truncation_of_an_npy_file);
  tcase_add_test(npy, refuses_bad_magic_version_and_missing_files);
  tcase_add_test(npy, refuses_malformed_headers);
  suite_add_tcase(s, npy);

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
