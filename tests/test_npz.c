/* .npz: round trips, archives written by NumPy (tests/fixtures, made by
 * tests/make_npy_fixtures.py) and refusal of damaged archives. Every test
 * works in a fresh mkdtemp directory that teardown removes. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npy_helpers.h"
#include "sg_test.h"

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

/* A whole file's bytes (malloc'd), its length into *len. */
static unsigned char *file_bytes(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  *len = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc(*len ? *len : 1);
  ck_assert_uint_eq(fread(b, 1, *len, f), *len);
  fclose(f);
  return b;
}

static void write_one_member(const char *path, const sg_tensor *t) {
  sg_io_error err = {{0}};
  sg_npz_writer *w = sg_npz_writer_open(path, true, &err);
  ck_assert_msg(w != NULL, "%s", err.msg);
  ck_assert_msg(sg_npz_add_tensor(w, "x", t, &err) == 0, "%s", err.msg);
  ck_assert_msg(sg_npz_writer_close(w, &err) == 0, "%s", err.msg);
}

/* A member of several 1 MiB deflate chunks (deflated on every thread at
 * once): the archive reads back exactly and has the same bytes whether one
 * thread or two wrote it. Half the values are a ramp, so that the chunks
 * compress unevenly. */
START_TEST(npz_multi_chunk_member_same_bytes_on_1_and_2_threads) {
  sg_rng r;
  sg_rng_seed(&r, 7);
  sg_tensor *t = sg_rand_normal(NULL, &r, SG_F64, 1, (int64_t[]){460001}, 0, 1);
  for (int64_t i = 0; i < t->numel; i += 2) sg_f64(t)[i] = (double)(i % 1000);
  int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  write_one_member(tmp("one.npz"), t);
  omp_set_num_threads(2);
  write_one_member(tmp("two.npz"), t);
  omp_set_num_threads(threads);
  size_t n1, n2;
  unsigned char *b1 = file_bytes(tmp("one.npz"), &n1), *b2 = file_bytes(tmp("two.npz"), &n2);
  ck_assert_uint_eq(n1, n2);
  ck_assert_msg(memcmp(b1, b2, n1) == 0, "the archives of 1 and 2 threads differ");
  free(b1), free(b2);
  sg_io_error err = {{0}};
  sg_npz *z = sg_npz_open(tmp("two.npz"), &err);
  ck_assert_msg(z != NULL, "%s", err.msg);
  sg_tensor *back = sg_npz_tensor(z, "x", SG_F64, &err);
  assert_same_tensor(back, t);
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
  /* taking a member's array moves it out: the same values, then gone */
  const sg_array *seen = sg_npz_get(z, "ints");
  int64_t first;
  memcpy(&first, seen->data, sizeof first);
  sg_array taken;
  ck_assert_int_eq(sg_npz_take(z, "ints", &taken), 0);
  ck_assert(taken.type == SG_NPY_I64 && taken.numel == 3 && taken.shape[0] == 3);
  ck_assert_int_eq(((const int64_t *)taken.data)[0], first);
  ck_assert_ptr_null(sg_npz_get(z, "ints"));
  ck_assert_int_eq(sg_npz_take(z, "ints", &taken), -1);
  ck_assert_int_eq(sg_npz_take(z, "nope", &taken), -1);
  sg_npz_close(z); /* frees the other members, not the one taken */
  sg_array_free(&taken);
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

Suite *suite_npz(void) {
  Suite *s = suite_create("npz");
  TCase *npz = tcase_create("npz");
  tcase_add_checked_fixture(npz, make_tmpdir, remove_tmpdir);
  tcase_set_timeout(npz, 60);                     /* the default 4 s is tight on a loaded machine */
  tcase_add_loop_test(npz, npz_round_trip, 0, 2); /* stored, then compressed */
  tcase_add_test(npz, npz_compressed_incompressible_member);
  tcase_add_test(npz, npz_multi_chunk_member_same_bytes_on_1_and_2_threads);
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
  return s;
}
