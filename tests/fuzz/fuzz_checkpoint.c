/* Fuzz target: the training checkpoints of the association GNNs
 * (models/train/checkpoint.c): the whole state with the optimiser (as
 * resuming reads it), the model alone (as evaluation reads it) and the
 * configuration alone. A file whose whole state reads must read the other
 * two ways as well. Each read parses the archive again, so the other two
 * run only where their outcome is not already known: on success (they must
 * succeed too) and, for the model alone, when the optimiser's members are
 * what failed (reading the configuration alone runs the same code as the
 * first steps of the whole read). */
#include "assoc_train.h"
#include "fuzz_common.h"
#include "train_internal.h"

static void read_model(const char *path, bool must_succeed) {
  sg_io_error err = {{0}};
  double scale = 0;
  assoc_gnn *m = assoc_checkpoint_load_model(path, &scale, NULL, &err);
  FUZZ_REQUIRE(m || !must_succeed, "assoc_checkpoint_load_model: %s", err.msg);
  if (m) {
    FUZZ_REQUIRE(scale > 0, "assoc_checkpoint_load_model: feature scale %g", scale);
    assoc_gnn_free(m);
  } else {
    fuzz_expect_message(&err, "assoc_checkpoint_load_model");
  }
}

/* Called on a file whose whole state read: its configuration reads too. */
static void read_config(const char *path) {
  sg_io_error err = {{0}};
  assoc_train_config cfg;
  int epoch = -1;
  int rc = assoc_checkpoint_read_config(path, &cfg, &epoch, &err);
  FUZZ_REQUIRE(rc == 0, "assoc_checkpoint_read_config: %s", err.msg);
  FUZZ_REQUIRE(epoch >= 0 && assoc_train_config_check(&cfg, &err) == 0,
               "assoc_checkpoint_read_config: epoch %d, configuration: %s", epoch, err.msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_memory_file(data, size);
  sg_io_error err = {{0}};
  assoc_checkpoint_state st;
  if (assoc_checkpoint_read(path, true, &st, &err) == 0) {
    FUZZ_REQUIRE(st.model && st.mu && st.adam && st.data_M >= 1,
                 "assoc_checkpoint_read: incomplete state");
    (void)fuzz_touch(st.mu, (size_t)st.data_M * sizeof *st.mu);
    assoc_checkpoint_state_free(&st);
    read_model(path, true);
    read_config(path);
    return 0;
  }
  fuzz_expect_message(&err, "assoc_checkpoint_read");
  /* without the optimiser's members the model alone may still read; the
   * configuration alone is read by the same code that failed here */
  if (strstr(err.msg, "adam") || strstr(err.msg, "Adam")) read_model(path, false);
  return 0;
}
