/* Fuzz target: the training checkpoints of the association GNNs
 * (models/train/checkpoint.c): the whole state with the optimiser (as
 * resuming reads it), the model alone (as evaluation reads it), and the
 * configuration alone. */
#include "assoc_train.h"
#include "fuzz_common.h"
#include "train_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_memory_file(data, size);
  sg_io_error err = {{0}};
  assoc_checkpoint_state st;
  if (assoc_checkpoint_read(path, true, &st, &err) == 0) {
    FUZZ_REQUIRE(st.model && st.mu && st.data_M >= 1, "assoc_checkpoint_read: incomplete state");
    (void)fuzz_touch(st.mu, (size_t)st.data_M * sizeof *st.mu);
    assoc_checkpoint_state_free(&st);
  } else {
    fuzz_expect_message(&err, "assoc_checkpoint_read");
  }
  err.msg[0] = '\0';
  double scale = 0;
  assoc_gnn *m = assoc_checkpoint_load_model(path, &scale, NULL, &err);
  if (m) {
    FUZZ_REQUIRE(scale > 0, "assoc_checkpoint_load_model: feature scale %g", scale);
    assoc_gnn_free(m);
  } else {
    fuzz_expect_message(&err, "assoc_checkpoint_load_model");
  }
  err.msg[0] = '\0';
  assoc_train_config cfg;
  int epoch = -1;
  if (assoc_checkpoint_read_config(path, &cfg, &epoch, &err) == 0)
    FUZZ_REQUIRE(epoch >= 0 && assoc_train_config_check(&cfg, &err) == 0,
                 "assoc_checkpoint_read_config: epoch %d, configuration: %s", epoch, err.msg);
  else
    fuzz_expect_message(&err, "assoc_checkpoint_read_config");
  return 0;
}
