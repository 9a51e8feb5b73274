/* Fuzz target: the data-set loader with its schema checks
 * (models/wireless/dataset_io.c) on top of the .npz reader. A data set it
 * accepts must pass the same check a data set must pass to be saved, and
 * a part of it (assoc_dataset_load_part, samples picked from the input's
 * size) must hold exactly those samples of the whole. */
#include <string.h>

#include "assoc_wireless.h"
#include "fuzz_common.h"

/* The part [lo, hi) of the accepted set ds read again on its own. */
static void check_part(const char *path, const assoc_dataset *ds, size_t size) {
  int64_t S = ds->S, lo = (int64_t)(size % (size_t)S);
  int64_t hi = lo + 1 + (int64_t)((size / 7) % (size_t)(S - lo));
  sg_io_error err = {{0}};
  assoc_dataset part;
  int rc = assoc_dataset_load_part(path, lo, hi, &part, &err);
  FUZZ_REQUIRE(rc == 0, "a part of an accepted data set was refused: %s", err.msg);
  size_t h = (size_t)ds->M * (size_t)ds->K * (size_t)ds->N, links = (size_t)ds->M * ds->K;
  FUZZ_REQUIRE(part.S == hi - lo && assoc_dataset_total(&part) == S, "part has the wrong sizes");
  FUZZ_REQUIRE(!memcmp(part.H_re, ds->H_re + (size_t)lo * h, (size_t)(hi - lo) * h * 8) &&
                   !memcmp(part.H_im, ds->H_im + (size_t)lo * h, (size_t)(hi - lo) * h * 8) &&
                   !memcmp(part.los, ds->los + (size_t)lo * links, (size_t)(hi - lo) * links) &&
                   !memcmp(part.pl_db, ds->pl_db + (size_t)lo * links,
                           (size_t)(hi - lo) * links * 8),
               "samples %lld..%lld differ from those of the whole set", (long long)lo,
               (long long)hi - 1);
  assoc_dataset_free(&part);
}

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
  check_part(path, &ds, size);
  assoc_dataset_free(&ds);
  return 0;
}
