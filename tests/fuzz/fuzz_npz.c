/* Fuzz target: the .npz reader (tensor/io/npz_read.c, zip_dir.c: zip
 * directory, zip64 records, members stored or deflated through deflate.c,
 * CRCs, chunk indexes through npz_chunks.c), then every accessor on each
 * member it returned, then sg_npz_open_rows on the same archive.
 *
 * Input: 9 bytes of parameters, then the archive. Byte 0 picks the members
 * whose rows are read (bit i: every member whose position is i modulo 6;
 * bit 6: also a name that is no member; bit 7: lo and hi as they are,
 * else brought into the members' rows), bytes 1-4 and 5-8 are lo and hi
 * (int32, little-endian). Where sg_npz_open read the archive, the outcome
 * is checked against it: a part must hold exactly the rows of the whole
 * member, the other members must be as they were, and the call must fail
 * (with a message) exactly when its arguments are bad. */
#include "fuzz_common.h"

enum { PARAMS = 9, PICKS = 6 };

typedef struct rows_params {
  uint8_t pick;
  int64_t lo, hi;
} rows_params;

static void use_member(const sg_npz *z, const char *name) {
  const sg_array *a = sg_npz_get(z, name);
  if (a) fuzz_check_array(a, "sg_npz_get");
  sg_io_error err = {{0}};
  sg_tensor *t = sg_npz_tensor(z, name, SG_F64, &err);
  if (t) {
    FUZZ_REQUIRE(a && t->numel == a->numel, "sg_npz_tensor: '%s' is not its member", name);
    fuzz_check_tensor(t, "sg_npz_tensor");
    sg_free(t);
  } else {
    fuzz_expect_message(&err, "sg_npz_tensor");
  }
  err.msg[0] = '\0';
  double v;
  int rc = sg_npz_scalar(z, name, &v, &err);
  FUZZ_REQUIRE(rc == 0 || rc == -1, "sg_npz_scalar returned %d", rc);
  FUZZ_REQUIRE(rc != 0 || (a && a->numel == 1), "sg_npz_scalar: '%s' is not a scalar", name);
  if (rc) fuzz_expect_message(&err, "sg_npz_scalar");
  int64_t rows = sg_npz_rows_total(z, name);
  FUZZ_REQUIRE(rows == (a && a->ndim > 0 ? a->shape[0] : -1),
               "sg_npz_rows_total('%s') = %lld disagrees with the member", name, (long long)rows);
}

static int32_t get_i32(const uint8_t *p) {
  return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                   (uint32_t)p[3] << 24);
}

/* The names whose rows are asked: members of the whole archive when it was
 * read, else names the corpus uses. */
static int pick_names(const sg_npz *whole, uint8_t pick, const char **names) {
  static const char *const guesses[PICKS] = {"a", "big", "x", "w", "f8", "H_re"};
  int n = 0;
  int count = whole ? sg_npz_count(whole) : PICKS;
  for (int i = 0; i < count && n < 63; i++)
    if (pick >> (i % PICKS) & 1) names[n++] = whole ? sg_npz_name(whole, i) : guesses[i];
  if (pick & 0x40) names[n++] = "no such member";
  return n;
}

static bool listed(const sg_npz *z, const char *name) {
  for (int i = 0; i < sg_npz_count(z); i++)
    if (strcmp(sg_npz_name(z, i), name) == 0) return true;
  return false;
}

/* Whether sg_npz_open_rows must accept the request, given the whole read
 * (a name the archive lacks is passed over); brings lo and hi into the
 * rows unless asked for raw values. */
static bool valid_request(const sg_npz *whole, const char **names, int n, rows_params *p) {
  int64_t rows = INT64_MAX;
  bool valid = true;
  for (int i = 0; i < n; i++) {
    const sg_array *a = sg_npz_get(whole, names[i]);
    if (!listed(whole, names[i])) continue;
    if (!a || a->ndim == 0)
      valid = false;
    else if (a->shape[0] < rows)
      rows = a->shape[0];
  }
  if (!(p->pick & 0x80) && rows != INT64_MAX) {
    p->lo = llabs(p->lo) % (rows + 1);
    p->hi = p->lo + llabs(p->hi) % (rows - p->lo + 1);
  }
  return valid && p->lo >= 0 && p->lo <= p->hi && (n == 0 || p->hi <= rows);
}

static bool asked(const char **names, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(names[i], name) == 0) return true;
  return false;
}

/* Every member of the part: rows [lo, hi) of the whole one when asked,
 * else the whole one. */
static void compare_part(const sg_npz *part, const sg_npz *whole, const char **names, int n,
                         const rows_params *p) {
  FUZZ_REQUIRE(sg_npz_count(part) == sg_npz_count(whole), "a part has other members");
  for (int i = 0; i < sg_npz_count(whole); i++) {
    const char *name = sg_npz_name(whole, i);
    const sg_array *w = sg_npz_get(whole, name), *a = sg_npz_get(part, name);
    FUZZ_REQUIRE(!w == !a, "member '%s' read in one open only", name);
    if (!w) continue;
    fuzz_check_array(a, "sg_npz_open_rows");
    size_t size = fuzz_npy_type_size(w->type);
    int64_t row = w->ndim > 0 && w->shape[0] > 0 ? w->numel / w->shape[0] : 0, first = 0;
    int64_t count = w->numel;
    if (asked(names, n, name)) {
      FUZZ_REQUIRE(a->shape[0] == p->hi - p->lo, "'%s': %lld rows, not hi - lo", name,
                   (long long)a->shape[0]);
      first = p->lo * row, count = (p->hi - p->lo) * row;
    }
    FUZZ_REQUIRE(a->type == w->type && a->numel == count, "'%s': another array", name);
    FUZZ_REQUIRE(
        memcmp(a->data, (const uint8_t *)w->data + (size_t)first * size, (size_t)count * size) == 0,
        "'%s': rows [%lld, %lld) differ from the whole member's", name, (long long)p->lo,
        (long long)p->hi);
  }
}

static void read_rows(const char *path, const sg_npz *whole, rows_params p) {
  const char *names[64];
  int n = pick_names(whole, p.pick, names);
  bool valid = whole && valid_request(whole, names, n, &p);
  sg_io_error err = {{0}};
  sg_npz *part = sg_npz_open_rows(path, names, n, p.lo, p.hi, &err);
  if (part) {
    for (int i = 0; i < sg_npz_count(part); i++) {
      const sg_array *a = sg_npz_get(part, sg_npz_name(part, i));
      if (a) fuzz_check_array(a, "sg_npz_open_rows");
    }
  } else {
    fuzz_expect_message(&err, "sg_npz_open_rows");
  }
  if (whole) {
    FUZZ_REQUIRE(!part == !valid, "sg_npz_open_rows %s a request that is %s: %s",
                 part ? "accepted" : "refused", valid ? "valid" : "bad", err.msg);
    if (part) compare_part(part, whole, names, n, &p);
  }
  sg_npz_close(part);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < PARAMS) return 0;
  rows_params p = {data[0], get_i32(data + 1), get_i32(data + 5)};
  const char *path = fuzz_memory_file(data + PARAMS, size - PARAMS);
  sg_io_error err = {{0}};
  sg_npz *z = sg_npz_open(path, &err);
  if (!z) fuzz_expect_message(&err, "sg_npz_open");
  int n = sg_npz_count(z);
  FUZZ_REQUIRE(n >= 0, "sg_npz_count: %d", n);
  for (int i = 0; i < n; i++) {
    const char *name = sg_npz_name(z, i);
    FUZZ_REQUIRE(name, "sg_npz_name(%d) of %d is NULL", i, n);
    use_member(z, name);
  }
  FUZZ_REQUIRE(!z || !sg_npz_name(z, n), "sg_npz_name past the end");
  read_rows(path, z, p);
  sg_npz_close(z);
  return 0;
}
