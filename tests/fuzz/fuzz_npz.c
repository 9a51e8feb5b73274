/* Fuzz target: the .npz reader (tensor/io/npz_read.c: zip directory,
 * zip64 records, members stored or deflated through deflate.c, CRCs), then
 * every accessor on each member it returned. */
#include "fuzz_common.h"

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
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_memory_file(data, size);
  sg_io_error err = {{0}};
  sg_npz *z = sg_npz_open(path, &err);
  if (!z) {
    fuzz_expect_message(&err, "sg_npz_open");
    return 0;
  }
  int n = sg_npz_count(z);
  FUZZ_REQUIRE(n >= 0, "sg_npz_count: %d", n);
  for (int i = 0; i < n; i++) {
    const char *name = sg_npz_name(z, i);
    FUZZ_REQUIRE(name, "sg_npz_name(%d) of %d is NULL", i, n);
    use_member(z, name);
  }
  FUZZ_REQUIRE(!sg_npz_name(z, n), "sg_npz_name past the end");
  sg_npz_close(z);
  return 0;
}
