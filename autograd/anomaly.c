/* Anomaly mode (sg_autograd.h): the first NaN or Inf of a step, traced to
 * the op whose output, or whose backward's gradient, holds it. */
#include "anomaly.h"

#include <stdio.h>

/* "float32 [2, 3] finite" for each input, ", "-separated, into buf. */
static void describe_inputs(int n_in, sg_tensor *const *in, char *buf, size_t size) {
  size_t pos = 0;
  buf[0] = '\0';
  for (int i = 0; i < n_in && pos < size; i++) {
    char shape[96];
    const sg_tensor *t = in[i];
    if (!t) {
      pos += (size_t)snprintf(buf + pos, size - pos, "%s#%d none", i ? ", " : "", i);
      continue;
    }
    int64_t bad = sg_first_nonfinite(t);
    const char *state = !t->data ? "released" : bad < 0 ? "finite" : "already non-finite";
    pos += (size_t)snprintf(buf + pos, size - pos, "%s#%d %s %s %s", i ? ", " : "", i,
                            sg_dtype_name(t->dtype), sg_shape_str(t->ndim, t->shape, shape), state);
  }
}

bool sg_anomaly_check_forward(const sg_graph *g, const sg_op *op, const sg_tensor *out, int n_in,
                              sg_tensor *const *in, sg_anomaly *rec) {
  int64_t bad = sg_first_nonfinite(out);
  if (bad < 0) return false;
  *rec = (sg_anomaly){SG_OBSERVE_FORWARD, op->name, sg_graph_file(g), sg_graph_line(g), -1, bad,
                      sg_get(out, bad)};
  char shape[96], inputs[320];
  describe_inputs(n_in, in, inputs, sizeof inputs);
  sg_report_error(rec->op, rec->file, rec->line,
                  SG_ANOMALY_PREFIX
                  "non-finite value in the forward: output %s %s has %g at element "
                  "%lld; inputs: %s",
                  sg_dtype_name(out->dtype), sg_shape_str(out->ndim, out->shape, shape), rec->value,
                  (long long)bad, inputs);
  return true;
}

/* The first non-finite element of a gradient (a uniform one: element 0). */
static int64_t grad_first_nonfinite(const sg_tensor *grad, double *value) {
  if (grad->uniform) {
    *value = grad->uniform_value;
    return grad->uniform_value - grad->uniform_value != 0 ? 0 : -1;
  }
  int64_t bad = sg_first_nonfinite(grad);
  if (bad >= 0) *value = sg_get(grad, bad);
  return bad;
}

bool sg_anomaly_check_backward(const sg_node *n, sg_anomaly *rec) {
  for (int i = 0; i < n->n_in; i++) {
    const sg_tensor *t = n->in[i];
    if (!t || !t->requires_grad || !t->grad) continue;
    double value = 0;
    int64_t bad = grad_first_nonfinite(t->grad, &value);
    if (bad < 0) continue;
    *rec = (sg_anomaly){SG_OBSERVE_BACKWARD, n->op->name, n->file, n->line, i, bad, value};
    char shape[96], inputs[320];
    describe_inputs(n->n_in, n->in, inputs, sizeof inputs);
    sg_report_error(rec->op, rec->file, rec->line,
                    SG_ANOMALY_PREFIX "non-finite value in the backward: the gradient of input #%d "
                                      "(%s %s) has %g at element %lld; inputs: %s",
                    i, sg_dtype_name(t->dtype), sg_shape_str(t->ndim, t->shape, shape), value,
                    (long long)bad, inputs);
    return true;
  }
  return false;
}
