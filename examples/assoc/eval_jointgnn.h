/* assoc eval on a JointGNN checkpoint (eval_jointgnn.c). */
#ifndef ASSOC_EVAL_JOINTGNN_H
#define ASSOC_EVAL_JOINTGNN_H

#include <stdbool.h>
#include <stdint.h>

typedef struct assoc_eval_jointgnn_args {
  const char *ckpt, *data, *out; /* out: NULL or the .npz of the associations */
  bool json;
  int batch;     /* samples per forward */
  int64_t limit; /* 0: every sample */
} assoc_eval_jointgnn_args;

/* The evaluation protocol of assoc_jointgnn_evaluate on the data set,
 * printed as a table or JSON, and (out) the associations SM_onehot and
 * SM_lb (int32 S x K, -1 dropped, with their own-beam rates), SM_A and
 * samples; an exit status. */
int assoc_eval_jointgnn(const assoc_eval_jointgnn_args *a);

#endif
