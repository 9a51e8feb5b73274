/* Fuzz target: the .npy reader (tensor/io/npy.c, npy_header.c), through
 * both entry points: any array (sg_npy_load_array) and a float tensor
 * (sg_npy_load). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_memory_file(data, size);
  sg_io_error err = {{0}};
  sg_array a;
  if (sg_npy_load_array(path, &a, &err) == 0) {
    fuzz_check_array(&a, "sg_npy_load_array");
    sg_array_free(&a);
  } else {
    fuzz_expect_message(&err, "sg_npy_load_array");
  }
  err.msg[0] = '\0';
  sg_tensor *t = sg_npy_load(path, &err);
  if (t) {
    FUZZ_REQUIRE(t->dtype == SG_F32 || t->dtype == SG_F64, "sg_npy_load: dtype %d", t->dtype);
    fuzz_check_tensor(t, "sg_npy_load");
    sg_free(t);
  } else {
    fuzz_expect_message(&err, "sg_npy_load");
  }
  return 0;
}
