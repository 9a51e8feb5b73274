/* .npz read in part (sg_npz_open_rows) and through the chunk index: parts
 * equal the rows of the whole member for every dtype, stored and deflated
 * archives, NumPy's files and an index of small chunks written by
 * tests/make_npy_fixtures.py; only the chunks of the rows are inflated; the
 * same bits on 1 and 2 threads; damaged chunks and indexes; bad arguments.
 * Every test works in a fresh mkdtemp directory that teardown removes. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io_internal.h" /* sg_io_indexed_chunks_read */
#include "npy_helpers.h"
#include "sg_test.h"

enum { MIB = 1 << 20, NPY_HEADER = 128 /* the .npy header our writer gives these shapes */ };

/* ---- archives ------------------------------------------------------------- */

static const char *const dtype_names[] = {"f32", "f64", "i32", "i64", "u8", "bool"};
enum { ROWS = 5000, N_TYPED = 6 };
/* Row widths: f64 rows of 130 (5.2 MB, 5 chunks), u8 rows of 700 and
 * bools of 520 (3 chunks each, compressible), the others below a chunk. */
static const int64_t row_width[N_TYPED] = {3, 130, 4, 1, 700, 520};

/* Values that compress unevenly: random bytes, every third one a ramp. */
static sg_array typed_member(sg_npy_type t, int64_t width, uint64_t seed) {
  sg_array a = patterned_array(t, 2, (int64_t[]){ROWS, width});
  sg_rng r;
  sg_rng_seed(&r, seed);
  uint8_t *b = a.data;
  for (size_t i = 0; i < array_bytes(&a); i++)
    if (i % 3 != 0) b[i] = (uint8_t)sg_rng_below(&r, 256);
  if (t == SG_NPY_BOOL)
    for (size_t i = 0; i < array_bytes(&a); i++) b[i] &= 1;
  return a;
}

/* The six dtypes (ROWS rows each), a 0-d member and an empty one. */
static void write_typed_archive(const char *path, bool compress) {
  sg_io_error err = {{0}};
  sg_npz_writer *w = sg_npz_writer_open(path, compress, &err);
  ck_assert_msg(w != NULL, "%s", err.msg);
  for (int t = 0; t < N_TYPED; t++) {
    sg_array a = typed_member((sg_npy_type)t, row_width[t], 100 + (uint64_t)t);
    ck_assert_msg(sg_npz_add_array(w, dtype_names[t], &a, &err) == 0, "%s", err.msg);
    sg_array_free(&a);
  }
  ck_assert_int_eq(sg_npz_add_scalar_f64(w, "scalar", 0.25, &err), 0);
  sg_array empty = {SG_NPY_F32, 2, {0, 3}, 0, NULL};
  ck_assert_msg(sg_npz_add_array(w, "empty", &empty, &err) == 0, "%s", err.msg);
  ck_assert_msg(sg_npz_writer_close(w, &err) == 0, "%s", err.msg);
}

/* One member of random bytes (ROWS x 1000: 5 chunks, stored blocks inside
 * the deflate stream, so a changed byte changes data, not the format). */
static void write_noise_archive(const char *path) {
  sg_io_error err = {{0}};
  sg_npz_writer *w = sg_npz_writer_open(path, true, &err);
  ck_assert_msg(w != NULL, "%s", err.msg);
  sg_array a = {SG_NPY_U8, 2, {ROWS, 1000}, ROWS * 1000, sg_malloc(ROWS * 1000)};
  sg_rng r;
  sg_rng_seed(&r, 9);
  for (int64_t i = 0; i < a.numel; i++) ((uint8_t *)a.data)[i] = (uint8_t)sg_rng_below(&r, 256);
  ck_assert_msg(sg_npz_add_array(w, "noise", &a, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(sg_npz_add_scalar_i64(w, "n", 7, &err), 0);
  ck_assert_msg(sg_npz_writer_close(w, &err) == 0, "%s", err.msg);
  sg_array_free(&a);
}

static sg_npz *open_whole(const char *path) {
  sg_io_error err = {{0}};
  sg_npz *z = sg_npz_open(path, &err);
  ck_assert_msg(z != NULL, "%s", err.msg);
  return z;
}

static sg_npz *open_rows(const char *path, const char *const *names, int n, int64_t lo,
                         int64_t hi) {
  sg_io_error err = {{0}};
  sg_npz *z = sg_npz_open_rows(path, names, n, lo, hi, &err);
  ck_assert_msg(z != NULL, "rows [%lld, %lld): %s", (long long)lo, (long long)hi, err.msg);
  return z;
}

/* ---- comparing a part with the whole -------------------------------------- */

static void assert_rows_of(const sg_array *part, const sg_array *whole, int64_t lo, int64_t hi,
                           const char *name) {
  ck_assert_msg(part && whole, "member '%s' missing", name);
  ck_assert_int_eq(part->type, whole->type);
  ck_assert_int_eq(part->ndim, whole->ndim);
  ck_assert_int_eq(part->shape[0], hi - lo);
  for (int d = 1; d < whole->ndim; d++) ck_assert_int_eq(part->shape[d], whole->shape[d]);
  int64_t row = whole->shape[0] ? whole->numel / whole->shape[0] : 0;
  ck_assert_int_eq(part->numel, (hi - lo) * row);
  size_t size = sg_io_type_size(whole->type);
  ck_assert_msg(memcmp(part->data, (const uint8_t *)whole->data + (size_t)(lo * row) * size,
                       (size_t)part->numel * size) == 0,
                "member '%s' rows [%lld, %lld) differ from the whole member's", name, (long long)lo,
                (long long)hi);
}

/* Rows [lo, hi) of the named members against the whole archive; the other
 * members are whole. */
static void check_part(const char *path, const sg_npz *whole, const char *const *names, int n,
                       int64_t lo, int64_t hi) {
  sg_npz *part = open_rows(path, names, n, lo, hi);
  ck_assert_int_eq(sg_npz_count(part), sg_npz_count(whole));
  for (int i = 0; i < sg_npz_count(whole); i++) {
    const char *name = sg_npz_name(whole, i);
    ck_assert_str_eq(sg_npz_name(part, i), name);
    const sg_array *w = sg_npz_get(whole, name), *p = sg_npz_get(part, name);
    ck_assert_int_eq(sg_npz_rows_total(part, name), w->ndim ? w->shape[0] : -1);
    bool asked = false;
    for (int k = 0; k < n; k++) asked |= strcmp(names[k], name) == 0;
    if (asked)
      assert_rows_of(p, w, lo, hi, name);
    else
      assert_same_array(p, w);
  }
  sg_npz_close(part);
}

/* The row holding member byte b (rows of row_bytes after the header). */
static int64_t row_at_byte(int64_t b, int64_t row_bytes) {
  return (b - NPY_HEADER) / row_bytes;
}

/* Ranges at the edges: none, the first and last rows, all, and around
 * every chunk boundary of every member. */
static int typed_ranges(int64_t (*ranges)[2]) {
  int n = 0;
  int64_t fixed[][2] = {{0, 0}, {0, 1}, {ROWS - 1, ROWS}, {ROWS, ROWS}, {0, ROWS}, {1234, 2345}};
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
    ranges[n][0] = fixed[i][0], ranges[n++][1] = fixed[i][1];
  for (int t = 0; t < N_TYPED; t++) {
    int64_t row_bytes = row_width[t] * (int64_t)sg_io_type_size((sg_npy_type)t);
    for (int64_t b = MIB; b < NPY_HEADER + ROWS * row_bytes; b += MIB) {
      int64_t r = row_at_byte(b, row_bytes);
      int64_t around[][2] = {{r, r + 1}, {r - 1, r + 2}, {0, r + 1}, {r + 1, ROWS}};
      for (int k = 0; k < 4; k++) ranges[n][0] = around[k][0], ranges[n++][1] = around[k][1];
    }
  }
  return n;
}

START_TEST(parts_equal_the_rows_of_the_whole_member) {
  bool compress = _i == 1;
  const char *path = tmp(compress ? "deflated.npz" : "stored.npz");
  write_typed_archive(path, compress);
  sg_npz *whole = open_whole(path);
  int64_t ranges[64][2];
  int n = typed_ranges(ranges);
  ck_assert_int_gt(n, 30);
  const char *names[] = {"f32", "f64", "i32", "i64", "u8", "bool", "empty"};
  for (int i = 0; i < n; i++) check_part(path, whole, names, N_TYPED, ranges[i][0], ranges[i][1]);
  /* the empty member has no rows beyond 0: asked alone, [0, 0) */
  check_part(path, whole, names + N_TYPED, 1, 0, 0);
  sg_npz_close(whole);
}
END_TEST

/* Our writer indexes a deflated member of several chunks; whole reads go
 * through every chunk, a part only through the chunks of its rows and the
 * header's; a stored archive has no index. */
START_TEST(only_the_chunks_of_the_rows_are_inflated) {
  write_noise_archive(tmp("noise.npz"));
  int64_t before = sg_io_indexed_chunks_read();
  sg_npz *whole = open_whole(tmp("noise.npz"));
  ck_assert_int_eq(sg_io_indexed_chunks_read() - before, 5);
  const char *name = "noise";
  int64_t r = row_at_byte(2 * MIB + 1000, 1000); /* inside chunk 3 of 5 */
  before = sg_io_indexed_chunks_read();
  check_part(tmp("noise.npz"), whole, &name, 1, r, r + 1);
  ck_assert_int_eq(sg_io_indexed_chunks_read() - before, 2); /* the header's and the row's */
  before = sg_io_indexed_chunks_read();
  check_part(tmp("noise.npz"), whole, &name, 1, 17, 17);
  ck_assert_int_eq(sg_io_indexed_chunks_read() - before, 1);
  sg_npz_close(whole);

  write_typed_archive(tmp("stored.npz"), false);
  before = sg_io_indexed_chunks_read();
  sg_npz_close(open_whole(tmp("stored.npz")));
  ck_assert_int_eq(sg_io_indexed_chunks_read() - before, 0);
}
END_TEST

START_TEST(same_bits_on_1_and_2_threads) {
  write_typed_archive(tmp("a.npz"), true);
  const char *names[] = {"f32", "f64", "i32", "i64", "u8", "bool"};
  int threads = omp_get_max_threads();
  sg_npz *z[2][2];
  for (int t = 0; t < 2; t++) {
    omp_set_num_threads(t + 1);
    int64_t before = sg_io_indexed_chunks_read();
    z[t][0] = open_whole(tmp("a.npz"));
    z[t][1] = open_rows(tmp("a.npz"), names, N_TYPED, 1000, 4100);
    ck_assert_int_gt(sg_io_indexed_chunks_read() - before, 10);
  }
  omp_set_num_threads(threads);
  for (int k = 0; k < 2; k++) {
    for (int i = 0; i < sg_npz_count(z[0][k]); i++) {
      const char *name = sg_npz_name(z[0][k], i);
      assert_same_array(sg_npz_get(z[1][k], name), sg_npz_get(z[0][k], name));
    }
    sg_npz_close(z[0][k]);
    sg_npz_close(z[1][k]);
  }
}
END_TEST

/* ---- damage ------------------------------------------------------------- */

/* Where a member lies in an archive we wrote (no archive comment). */
typedef struct member_place {
  size_t data;  /* file offset of its compressed data */
  size_t index; /* file offset of its chunk index's data (the version byte); 0: none */
  int64_t chunks;
} member_place;

static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static unsigned le16(const unsigned char *p) {
  return (unsigned)p[0] | (unsigned)p[1] << 8;
}
static void set_le32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static member_place find_member(const unsigned char *b, size_t len, const char *name) {
  member_place m = {0, 0, 0};
  size_t pos = le32(b + len - 22 + 16), count = le16(b + len - 22 + 10), n = strlen(name);
  for (size_t i = 0; i < count; i++) {
    const unsigned char *h = b + pos;
    size_t name_len = le16(h + 28), extra_len = le16(h + 30);
    if (name_len == n + 4 && memcmp(h + 46, name, n) == 0) {
      size_t local = le32(h + 42);
      m.data = local + 30 + le16(b + local + 26) + le16(b + local + 28);
      const unsigned char *x = h + 46 + name_len;
      if (extra_len > 0 && le16(x) == 0x6773) {
        m.index = (size_t)(x + 4 - b);
        m.chunks = (le16(x + 2) - 5) / 8;
      }
      return m;
    }
    pos += 46 + name_len + extra_len + le16(h + 32);
  }
  ck_abort_msg("no member '%s'", name);
  return m;
}

/* File offset of chunk k's (0-based) compressed bytes, and their length. */
static size_t chunk_at(const unsigned char *b, member_place m, int64_t k, size_t *len) {
  size_t at = m.data;
  for (int64_t j = 0; j < k; j++) at += le32(b + m.index + 5 + 8 * j);
  *len = le32(b + m.index + 5 + 8 * k);
  return at;
}

/* The noise archive written and read whole (*whole), and its bytes
 * (free them) with where its member lies, for a test to damage. */
static unsigned char *noise_bytes(sg_npz **whole, size_t *len, member_place *m) {
  write_noise_archive(tmp("noise.npz"));
  *whole = open_whole(tmp("noise.npz"));
  unsigned char *b = read_bytes(tmp("noise.npz"), len);
  *m = find_member(b, *len, "noise");
  ck_assert_int_eq(m->chunks, 5);
  return b;
}

static void expect_refusal(const char *path, const char *const *names, int n, int64_t lo,
                           int64_t hi, const char *text) {
  sg_io_error err = {{0}};
  sg_npz *z = n ? sg_npz_open_rows(path, names, n, lo, hi, &err) : sg_npz_open(path, &err);
  ck_assert_msg(z == NULL, "rows [%lld, %lld) of %s were read", (long long)lo, (long long)hi, path);
  ASSERT_FAILS_WITH(err, text);
  ASSERT_FAILS_WITH(err, path);
}

/* A byte changed inside chunk 4 of 5: the whole read and a part that holds
 * it say which member and chunk; parts elsewhere read, only their chunks. */
START_TEST(a_damaged_chunk_is_named) {
  sg_npz *whole;
  size_t len, chunk_len;
  member_place m;
  unsigned char *b = noise_bytes(&whole, &len, &m);
  b[chunk_at(b, m, 3, &chunk_len) + 500000] ^= 0x40;
  write_bytes(tmp("bad.npz"), b, len);
  free(b);
  const char *name = "noise";
  const char *msg = "bad.npz: member 'noise.npy': chunk 4 of 5 (bytes 3145728-4194303) has CRC "
                    "mismatch (index ";
  expect_refusal(tmp("bad.npz"), NULL, 0, 0, 0, msg);
  int64_t in_chunk_4 = row_at_byte(3 * MIB + 600000, 1000);
  expect_refusal(tmp("bad.npz"), &name, 1, in_chunk_4, in_chunk_4 + 1, msg);
  int threads = omp_get_max_threads();
  omp_set_num_threads(2); /* the lowest failing chunk is reported on any thread count */
  expect_refusal(tmp("bad.npz"), &name, 1, 0, ROWS, msg);
  omp_set_num_threads(threads);
  check_part(tmp("bad.npz"), whole, &name, 1, 0, row_at_byte(3 * MIB, 1000));
  check_part(tmp("bad.npz"), whole, &name, 1, row_at_byte(4 * MIB, 1000) + 1, ROWS);
  sg_npz_close(whole);
}
END_TEST

/* An index that disagrees with its entry (a CRC, the version, the chunk
 * size, a length) is ignored: the member reads as a stream, correctly. */
START_TEST(an_index_that_disagrees_with_its_entry_is_ignored) {
  sg_npz *whole;
  size_t len;
  member_place m;
  unsigned char *b = noise_bytes(&whole, &len, &m);
  size_t fields[] = {m.index + 5 + 8 * 2 + 4, m.index, m.index + 1 + 2, m.index + 5 + 8 * 4};
  const char *what[] = {"a chunk's CRC", "the version", "the chunk size", "the last length"};
  const char *name = "noise";
  for (int f = 0; f < 4; f++) {
    b[fields[f]] ^= 0x01;
    write_bytes(tmp("idx.npz"), b, len);
    b[fields[f]] ^= 0x01;
    int64_t before = sg_io_indexed_chunks_read();
    sg_npz *z = open_whole(tmp("idx.npz"));
    assert_same_array(sg_npz_get(z, "noise"), sg_npz_get(whole, "noise"));
    sg_npz_close(z);
    check_part(tmp("idx.npz"), whole, &name, 1, 2500, 2600);
    ck_assert_msg(sg_io_indexed_chunks_read() == before, "an index with %s changed was used",
                  what[f]);
  }
  free(b);
  sg_npz_close(whole);
}
END_TEST

/* Chunk lengths that keep their sum (2 bytes moved from chunk 3 to chunk 2)
 * pass the index's checks but not the chunks': the member is read again as
 * a stream, whose CRC shows the data intact. */
START_TEST(a_wrong_index_that_passes_its_checks_falls_back_to_the_stream) {
  sg_npz *whole;
  size_t len;
  member_place m;
  unsigned char *b = noise_bytes(&whole, &len, &m);
  unsigned char *len2 = b + m.index + 5 + 8 * 1, *len3 = b + m.index + 5 + 8 * 2;
  set_le32(len2, le32(len2) + 2);
  set_le32(len3, le32(len3) - 2);
  write_bytes(tmp("moved.npz"), b, len);
  free(b);
  sg_npz *z = open_whole(tmp("moved.npz"));
  assert_same_array(sg_npz_get(z, "noise"), sg_npz_get(whole, "noise"));
  sg_npz_close(z);
  const char *name = "noise";
  int64_t in_first = row_at_byte(MIB / 2, 1000), in_third = row_at_byte(2 * MIB + 1000, 1000);
  int64_t before = sg_io_indexed_chunks_read();
  check_part(tmp("moved.npz"), whole, &name, 1, in_first, in_first + 3);
  ck_assert_int_eq(sg_io_indexed_chunks_read() - before, 1); /* the first chunk is intact */
  check_part(tmp("moved.npz"), whole, &name, 1, in_third, in_third + 3);
  sg_npz_close(whole);
}
END_TEST

/* A stored member read in part: only the rows' bytes are read, so damage
 * elsewhere does not stop it (nor can a CRC be checked); the whole read is
 * refused. */
START_TEST(stored_parts_read_only_their_bytes) {
  write_typed_archive(tmp("stored.npz"), false);
  sg_npz *whole = open_whole(tmp("stored.npz"));
  size_t len;
  unsigned char *b = read_bytes(tmp("stored.npz"), &len);
  member_place m = find_member(b, len, "f64");
  b[m.data + NPY_HEADER + 4000 * 130 * 8 + 3] ^= 0x10; /* in row 4000 */
  write_bytes(tmp("bad.npz"), b, len);
  free(b);
  expect_refusal(tmp("bad.npz"), NULL, 0, 0, 0, "bad.npz: member 'f64.npy' has CRC mismatch");
  const char *name = "f64";
  check_part(tmp("bad.npz"), whole, &name, 1, 0, 4000);
  check_part(tmp("bad.npz"), whole, &name, 1, 4001, ROWS);
  sg_npz_close(whole);
}
END_TEST

/* ---- files written by NumPy and by the fixture script -------------------- */

/* Every member of at least one dimension, over ranges [lo, hi): every one
 * for a few rows, about 10 x 8 spread over many (the last row included). */
static void check_every_member(const char *path) {
  sg_npz *whole = open_whole(path);
  int checked = 0;
  for (int i = 0; i < sg_npz_count(whole); i++) {
    const char *name = sg_npz_name(whole, i);
    const sg_array *a = sg_npz_get(whole, name);
    if (!a || a->ndim == 0) continue;
    int64_t rows = a->shape[0], lo_step = rows / 10 + 1, hi_step = rows / 8 + 1;
    for (int64_t lo = 0; lo <= rows; lo += lo < rows && lo + lo_step > rows ? rows - lo : lo_step)
      for (int64_t hi = lo; hi <= rows;
           hi += hi < rows && hi + hi_step > rows ? rows - hi : hi_step)
        check_part(path, whole, &name, 1, lo, hi), checked++;
  }
  ck_assert_int_gt(checked, 10);
  sg_npz_close(whole);
}

START_TEST(parts_of_numpy_files) {
  check_every_member(fixture("numpy_savez.npz"));
  check_every_member(fixture("numpy_narrow_ints.npz"));
  check_every_member(fixture("numpy_zip64_local.npz"));
  check_every_member(fixture("numpy_savez_compressed.npz"));
}
END_TEST

/* Chunks of 1000 bytes: the header shares the first chunk, rows straddle
 * chunks, a narrow integer type is widened, bools, a one-chunk index. */
START_TEST(parts_through_an_index_of_small_chunks) {
  const char *path = fixture("indexed_small_chunks.npz");
  int64_t before = sg_io_indexed_chunks_read();
  sg_npz_close(open_whole(path));
  ck_assert_int_eq(sg_io_indexed_chunks_read() - before, 17 + 4 + 3 + 2 + 1 + 1);
  check_every_member(path);
  sg_npz *z = open_whole(path);
  const sg_array *i2 = sg_npz_get(z, "i2"), *b1 = sg_npz_get(z, "b1");
  ck_assert(i2->type == SG_NPY_I32 && b1->type == SG_NPY_BOOL);
  for (int i = 0; i < 1500; i++) ck_assert_int_eq(((int32_t *)i2->data)[i], i * 20 - 15000);
  for (int i = 0; i < 2000; i++) ck_assert_int_eq(((uint8_t *)b1->data)[i], i % 3 == 1);
  sg_npz_close(z);
}
END_TEST

/* A deflated member without an index is inflated in passing: its CRC is
 * checked after the rows, so damage after them is found; no rows read only
 * the header. */
START_TEST(streamed_parts_check_the_crc_at_the_end) {
  size_t len;
  unsigned char *b = read_bytes(fixture("numpy_savez_compressed.npz"), &len);
  member_place m = find_member(b, len, "big");
  b[m.data + 30000] ^= 0x10; /* late in the deflate stream */
  write_bytes(tmp("late.npz"), b, len);
  free(b);
  const char *name = "big";
  expect_refusal(tmp("late.npz"), &name, 1, 0, 10, "late.npz: member 'big.npy'");
  sg_npz *z = open_rows(tmp("late.npz"), &name, 1, 5, 5);
  ck_assert_int_eq(sg_npz_rows_total(z, "big"), 30000);
  ck_assert_int_eq(sg_npz_get(z, "big")->numel, 0);
  sg_npz_close(z);
}
END_TEST

/* ---- arguments -------------------------------------------------------------- */

START_TEST(bad_arguments_are_refused_with_the_numbers) {
  write_typed_archive(tmp("a.npz"), true);
  const char *path = tmp("a.npz");
  const char *f64 = "f64", *two[] = {"f64", "scalar"}, *nope[] = {"f64", "nope"};
  expect_refusal(path, &f64, 1, 5, 3, "rows [5, 3) of 'f64' are not a range (need 0 <= lo <= hi)");
  expect_refusal(path, &f64, 1, -1, 3, "rows [-1, 3) of 'f64'");
  expect_refusal(path, &f64, 1, 10, ROWS + 1,
                 "a.npz: member 'f64.npy': rows [10, 5001) asked, but it has 5000 rows");
  expect_refusal(path, two, 2, 0, 1,
                 "a.npz: member 'scalar.npy': is 0-d (shape ()), so it has no "
                 "rows 0 to 1");
  expect_refusal(path, NULL, 1, 0, 1, "sg_npz_open_rows: 1 names at");
  const char *null_name[] = {"f64", NULL};
  expect_refusal(path, null_name, 2, 0, 1, "sg_npz_open_rows: names[1] is NULL");
  expect_refusal(path, &f64, -1, 0, 1, "sg_npz_open_rows: -1 names");
  const char *text = "text";
  expect_refusal(fixture("numpy_mixed.npz"), &text, 1, 0, 1,
                 "member 'text.npy': unsupported dtype '<U2' (rows 0 to 1 were asked)");
  sg_io_error err = {{0}};
  ck_assert_ptr_null(sg_npz_open_rows(NULL, &f64, 1, 0, 1, &err));
  ASSERT_FAILS_WITH(err, "(null)");
  sg_npz *z = open_rows(path, &f64, 1, 0, 0);
  ck_assert_int_eq(sg_npz_rows_total(z, "f64"), ROWS);
  ck_assert_int_eq(sg_npz_rows_total(z, "u8"), ROWS);
  ck_assert_int_eq(sg_npz_rows_total(z, "empty"), 0);
  ck_assert_int_eq(sg_npz_rows_total(z, "scalar"), -1);
  ck_assert_int_eq(sg_npz_rows_total(z, "nope"), -1);
  ck_assert_int_eq(sg_npz_rows_total(z, NULL), -1);
  ck_assert_int_eq(sg_npz_rows_total(NULL, "f64"), -1);
  const sg_array *a = sg_npz_get(z, "f64");
  ck_assert(a && a->shape[0] == 0 && a->shape[1] == 130 && a->numel == 0);
  sg_npz_close(z);
  /* a name the archive lacks is passed over (an optional member) */
  z = open_rows(path, nope, 2, 3, 5);
  a = sg_npz_get(z, "f64");
  ck_assert(a && a->shape[0] == 2 && !sg_npz_get(z, "nope"));
  sg_npz_close(z);
}
END_TEST

/* The index is an extra field of at most 65,535 bytes: 8,190 chunks fit,
 * 8,191 do not (then none is written), and one chunk needs none. */
START_TEST(an_index_is_written_only_when_it_fits) {
  static chunk_record chunks[8191];
  for (int k = 0; k < 8191; k++) chunks[k] = (chunk_record){(uint32_t)(1000 + k), (uint32_t)k};
  uint8_t *extra;
  size_t len;
  ck_assert_int_eq(sg_io_chunk_index_encode(chunks, 8190, MIB, &extra, &len), 0);
  ck_assert_ptr_nonnull(extra);
  ck_assert_uint_eq(len, 4 + 5 + 8 * 8190);
  ck_assert_uint_le(len, 0xFFFF);
  ck_assert(le16(extra) == 0x6773 && le16(extra + 2) == len - 4 && extra[4] == 1);
  ck_assert(le32(extra + 5) == MIB && le32(extra + 9 + 8 * 8189) == 1000 + 8189);
  ck_assert_uint_eq(le32(extra + 9 + 8 * 8189 + 4), 8189);
  sg_mfree(extra);
  for (int n = 0; n < 3; n++) {
    int64_t count = n == 0 ? 8191 : n; /* too many, one, then two */
    ck_assert_int_eq(sg_io_chunk_index_encode(chunks, count, MIB, &extra, &len), 0);
    ck_assert_msg((extra != NULL) == (count == 2), "%lld chunks", (long long)count);
    sg_mfree(extra);
  }
}
END_TEST

/* ---- threads and memory ---------------------------------------------------- */

static int64_t allocations_in_parallel;

static void *counting_alloc(size_t n, void *user) {
  (void)user;
  if (omp_in_parallel()) allocations_in_parallel++;
  return malloc(n);
}
static void *counting_realloc(void *p, size_t n, void *user) {
  (void)user;
  if (omp_in_parallel()) allocations_in_parallel++;
  return realloc(p, n);
}
static void plain_free(void *p, void *user) {
  (void)user;
  free(p);
}

/* The allocation hooks need not be thread-safe: everything a parallel read
 * needs (zlib's windows included) is allocated before its threads start. */
START_TEST(no_allocation_on_the_threads) {
  write_noise_archive(tmp("noise.npz"));
  int threads = omp_get_max_threads();
  omp_set_num_threads(2);
  sg_allocator a = {counting_alloc, counting_realloc, plain_free, NULL};
  allocations_in_parallel = 0;
  sg_set_allocator(&a);
  int64_t before = sg_io_indexed_chunks_read();
  sg_npz *z = sg_npz_open(tmp("noise.npz"), NULL);
  sg_npz_close(z);
  sg_set_allocator(NULL);
  omp_set_num_threads(threads);
  ck_assert_ptr_nonnull(z);
  ck_assert_int_eq(sg_io_indexed_chunks_read() - before, 5);
  ck_assert_int_eq(allocations_in_parallel, 0);
}
END_TEST

Suite *suite_npz_rows(void) {
  Suite *s = suite_create("npz_rows");
  TCase *tc = tcase_create("npz_rows");
  tcase_add_checked_fixture(tc, make_tmpdir, remove_tmpdir);
  tcase_set_timeout(tc, 300);
  tcase_add_loop_test(tc, parts_equal_the_rows_of_the_whole_member, 0, 2); /* stored, deflated */
  tcase_add_test(tc, only_the_chunks_of_the_rows_are_inflated);
  tcase_add_test(tc, same_bits_on_1_and_2_threads);
  tcase_add_test(tc, a_damaged_chunk_is_named);
  tcase_add_test(tc, an_index_that_disagrees_with_its_entry_is_ignored);
  tcase_add_test(tc, a_wrong_index_that_passes_its_checks_falls_back_to_the_stream);
  tcase_add_test(tc, stored_parts_read_only_their_bytes);
  tcase_add_test(tc, parts_of_numpy_files);
  tcase_add_test(tc, parts_through_an_index_of_small_chunks);
  tcase_add_test(tc, streamed_parts_check_the_crc_at_the_end);
  tcase_add_test(tc, bad_arguments_are_refused_with_the_numbers);
  tcase_add_test(tc, an_index_is_written_only_when_it_fits);
  tcase_add_test(tc, no_allocation_on_the_threads);
  suite_add_tcase(s, tc);
  return s;
}
