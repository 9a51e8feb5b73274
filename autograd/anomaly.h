/* Private to autograd: the checks of anomaly mode (anomaly.c), run by the
 * graph (graph.c) on each op's output and each node's gradients. */
#ifndef SG_ANOMALY_H
#define SG_ANOMALY_H

#include "sg_autograd.h"

/* When out holds a NaN or Inf: fills *rec, reports it through the error
 * handler at the graph's call site and returns true. */
bool sg_anomaly_check_forward(const sg_graph *g, const sg_op *op, const sg_tensor *out, int n_in,
                              sg_tensor *const *in, sg_anomaly *rec);
/* When n's backward left a NaN or Inf in the gradient of one of its
 * inputs: fills *rec, reports it at n's call site and returns true. */
bool sg_anomaly_check_backward(const sg_node *n, sg_anomaly *rec);

#endif
