/* Fuzz target: the data-set loader with its schema checks
 * (models/wireless/dataset_io.c) on top of the .npz reader. A data set it
 * accepts must pass the same check a data set must pass to be saved. */
#include "assoc_wireless.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_memory_file(data, size);
  sg_io_error err = {{0}};
  assoc_dataset ds;
  if (assoc_dataset_load(path, &ds, &err)) {
    fuzz_expect_message(&err, "assoc_dataset_load");
    return 0;
  }
  int rc = assoc_dataset_check(&ds, &err);
  FUZZ_REQUIRE(rc == 0, "assoc_dataset_load accepted a data set that fails its check: %s", err.msg);
  size_t links = (size_t)ds.S * (size_t)ds.M * (size_t)ds.K;
  (void)fuzz_touch(ds.los, links);
  (void)fuzz_touch(ds.outage, links);
  (void)fuzz_touch(ds.n_paths, links);
  assoc_dataset_free(&ds);
  return 0;
}
