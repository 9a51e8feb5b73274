/* Fuzz target: the checkpoints of the beam models
 * (models/train/beam_checkpoint.c): which model a file holds, a BFGNN, a
 * JointGNN, and a JointGNN with its training run's state. */
#include "assoc_train.h"
#include "fuzz_common.h"

static void read_jointgnn_run(const char *path) {
  sg_io_error err = {{0}};
  assoc_jointgnn_train_opts o;
  assoc_beam_train_state st;
  assoc_jointgnn *j = assoc_jointgnn_checkpoint_read_run(path, &o, &st, &err);
  if (!j) {
    fuzz_expect_message(&err, "assoc_jointgnn_checkpoint_read_run");
    return;
  }
  FUZZ_REQUIRE(st.order && st.adam && st.S >= 1 && st.cursor >= 0 && st.cursor <= st.S,
               "assoc_jointgnn_checkpoint_read_run: incomplete state");
  for (int64_t i = 0; i < st.S; i++)
    FUZZ_REQUIRE(st.order[i] >= 0 && st.order[i] < st.S, "run.order[%lld] out of range",
                 (long long)i);
  FUZZ_REQUIRE(o.base.batch >= 1 && o.base.batch <= st.S, "run.batch %lld of %lld samples",
               (long long)o.base.batch, (long long)st.S);
  assoc_beam_train_state_free(&st);
  assoc_jointgnn_free(j);
}

/* Which model the file holds decides which reader must accept it; each
 * read parses the archive again, so only the reader of that model runs
 * (BFGNN's on a file of neither, to exercise its refusals). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_memory_file(data, size);
  const char *kind = assoc_beam_checkpoint_model(path);
  FUZZ_REQUIRE(!kind || !strcmp(kind, "BFGNN") || !strcmp(kind, "JointGNN"), "model '%s'", kind);
  sg_io_error err = {{0}};
  double scale = 0;
  if (kind && !strcmp(kind, "JointGNN")) {
    assoc_jointgnn *j = assoc_jointgnn_checkpoint_read(path, &scale, &err);
    if (!j) return fuzz_expect_message(&err, "assoc_jointgnn_checkpoint_read"), 0;
    FUZZ_REQUIRE(scale > 0, "assoc_jointgnn_checkpoint_read: feature scale %g", scale);
    assoc_jointgnn_free(j);
    read_jointgnn_run(path);
    return 0;
  }
  assoc_bfgnn *b = assoc_bfgnn_checkpoint_read(path, &scale, &err);
  if (!b) return fuzz_expect_message(&err, "assoc_bfgnn_checkpoint_read"), 0;
  FUZZ_REQUIRE(kind && scale > 0, "BFGNN read from a file of no model, feature scale %g", scale);
  assoc_bfgnn_free(b);
  return 0;
}
