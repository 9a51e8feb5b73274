/* sinkgrad autograd: the graph (arena + tape), backward, and the interface
 * for defining ops, which user code may use for its own ops.
 *
 * Define-by-run: an op computes its output at once and, when grad mode is on
 * and an input requires a gradient, appends a node to the graph's tape.
 * sg_backward walks the tape in reverse. Every per-step tensor, node and
 * scratch buffer comes from the graph's arena; sg_graph_reset drops them all
 * but keeps the memory, so a steady-state training step allocates nothing. */
#ifndef SG_AUTOGRAD_H
#define SG_AUTOGRAD_H

#include "sg_tensor.h"

/* The shared libraries export what the public headers declare and hide the
 * rest (they are built with -fvisibility=hidden). */
#ifdef __GNUC__
#pragma GCC visibility push(default)
#endif
#ifdef __cplusplus
extern "C" {
#endif

sg_graph *sg_graph_new(void);
void sg_graph_free(sg_graph *g);
/* Forgets the tape and every arena tensor; keeps the arena's memory. */
void sg_graph_reset(sg_graph *g);
/* Grad mode: when off, ops record nothing. Returns the previous setting. */
bool sg_set_grad_enabled(sg_graph *g, bool on);
bool sg_grad_enabled(const sg_graph *g);

/* Declares that after the forward only the backward reads t's values:
 * they are released (as sg_release) once the node that made t has run its
 * backward, when every reader has run. For model code: a ReLU output that
 * the next Linear's backward reads, a layer's embeddings. Without a node
 * (nothing to differentiate) and in no-grad mode they are released now. */
void sg_release_after_backward(sg_graph *g, sg_tensor *t);
int64_t sg_graph_tape_len(const sg_graph *g);

/* ---- observing a graph ------------------------------------------------- */
/* An observer sees every recorded node twice: in the forward, as soon as
 * the op has recorded it (n->out holds its values, sg_graph_file/line its
 * call site), and in the backward, just after n's backward has added into
 * its inputs' gradients (n->out and n->out->grad are still valid). For
 * tools that inspect a computation without changing it: the kink
 * decisions of a ReLU compared between float32 and float64
 * (tests/test_f32_accuracy.c), non-finite values traced to the op that
 * made them. Ops run without grad mode, or with no input that requires a
 * gradient, record no node and are not seen. */
typedef enum sg_observe_phase { SG_OBSERVE_FORWARD, SG_OBSERVE_BACKWARD } sg_observe_phase;
typedef void (*sg_observer)(void *ctx, sg_graph *g, const sg_node *n, sg_observe_phase phase);
/* Sets (fn NULL: removes) g's observer; one per graph. */
void sg_graph_set_observer(sg_graph *g, sg_observer fn, void *ctx);

/* ---- anomaly mode ------------------------------------------------------ */
/* Finds a NaN or Inf where it starts, as PyTorch's detect_anomaly. On, a
 * graph checks the output of every op in the forward (recorded or not,
 * grad mode on or off) and, in the backward, the gradient of every input
 * just after a node's backward wrote it. The first non-finite value is
 * reported through the error handler (sg_set_error_handler) under the op's
 * name at the op's call site: the phase, for the backward which input's
 * gradient, the shape and dtype of the output and of every input, whether
 * the inputs were already non-finite, and the flat index and value of the
 * first bad element. Then the graph keeps the report (sg_graph_anomaly)
 * and checks no more until sg_graph_reset; sg_backward stops there and
 * returns -1, so a training step can skip its optimiser update. The
 * checks read every value once more and change no result; a graph has
 * them off unless turned on here or by sg_set_detect_anomaly. Works
 * beside an observer (sg_graph_set_observer): both see every node. */
/* Every anomaly report's message starts with this, so that a handler can
 * tell it from an API misuse. */
#define SG_ANOMALY_PREFIX "anomaly mode: "
typedef struct sg_anomaly {
  sg_observe_phase phase;
  const char *op;   /* the op's name, e.g. "sg_exp" */
  const char *file; /* its call site (see SG_AT) */
  int line;
  int input;     /* backward: the input whose gradient is bad; forward: -1 */
  int64_t index; /* flat index of the first bad element */
  double value;  /* that element: NaN, +Inf or -Inf */
} sg_anomaly;
/* Turns g's checks on or off; returns the previous setting. */
bool sg_graph_set_anomaly(sg_graph *g, bool on);
bool sg_graph_anomaly_enabled(const sg_graph *g);
/* The first non-finite value found since the last sg_graph_reset, or NULL. */
const sg_anomaly *sg_graph_anomaly(const sg_graph *g);
/* The setting of graphs made from now on by sg_graph_new (default off),
 * for a program that turns the mode on for every graph of a run (assoc
 * train --detect-anomaly). Atomic: any thread may set it. Returns the
 * previous setting. */
bool sg_set_detect_anomaly(bool on);

/* Reverse pass from a tensor with one element: d(loss)/d(loss) = 1. Leaf
 * gradients accumulate into t->grad (allocated once, on the heap) until
 * sg_zero_grad; intermediate gradients live in the arena. Backward
 * consumes the tape (as PyTorch frees the graph): ops recorded afterwards
 * start a new tape, while every tensor stays valid until sg_graph_reset. */
int sg_backward(sg_graph *g, sg_tensor *loss);
/* Vector-Jacobian product: backward from out seeded with grad_out (same
 * shape and dtype as out) instead of 1. Both return 0, or -1 after a
 * reported misuse or when anomaly mode found a non-finite value (in this
 * step's forward: the backward does not run; in the backward: it stops at
 * the node whose gradient is bad). */
int sg_backward_with(sg_graph *g, sg_tensor *out, const sg_tensor *grad_out);

/* ---- defining ops ------------------------------------------------------ */

/* An op's identity: its name and its backward. The backward reads
 * n->out->grad and adds its contribution into the gradient of each input
 * that needs one, through sg_grad_dest or sg_grad_buf (both return NULL
 * for the others). */
typedef struct sg_op {
  const char *name;
  void (*backward)(sg_graph *g, sg_node *n);
} sg_op;

struct sg_node {
  const sg_op *op;
  sg_tensor *out;
  sg_tensor *in[SG_MAX_INPUTS];
  int n_in;
  int64_t iarg[8]; /* op-specific integer attributes (axis, flags, ...) */
  double farg[4];  /* op-specific real attributes (scale, tau, ...) */
  void *saved;     /* op-specific arena data kept for the backward */
  /* Set by the op when its backward handles a uniform n->out->grad
   * (go->uniform: every element is go->uniform_value, data unwritten);
   * otherwise the tape walk writes it out first (sg_grad_materialize). */
  bool takes_uniform_grad;
  const char *file; /* the op's call site (SG_AT), for reports from the backward */
  int line;
};

/* Records op on the tape if grad mode is on and any input requires a
 * gradient; then marks out as requiring one and returns the node, else
 * returns NULL (nothing to save). */
sg_node *sg_record(sg_graph *g, const sg_op *op, sg_tensor *out, int n_in, sg_tensor *const *in);

/* The gradient buffer of t to add into, zeroed when t has no gradient yet
 * (arena for intermediates, heap for leaves), or NULL if t does not require
 * a grad. */
sg_tensor *sg_grad_buf(sg_graph *g, sg_tensor *t);
/* The same buffer without zeroing it: *accumulate is false when t had no
 * gradient yet, and then the caller must write every element (grad = x)
 * instead of adding (grad += x), which saves a zero-fill and a read of the
 * whole buffer. Call it just before writing: with the same tensor in two
 * inputs, the second call sees the first write. */
sg_tensor *sg_grad_dest(sg_graph *g, sg_tensor *t, bool *accumulate);
/* As sg_grad_dest, for an input t of node n whose gradient is computed
 * element by element from n->out->grad (same number of elements, element i
 * from element i): when t is an intermediate with no gradient yet, it takes
 * over n->out->grad's buffer (nothing reads it after n's backward), and the
 * kernel then writes in place; no new buffer, one less array in cache.
 * Only for the last gradient n's backward writes. */
sg_tensor *sg_grad_dest_inplace(sg_graph *g, sg_node *n, sg_tensor *t, bool *accumulate);
/* Writes out a uniform gradient (see sg_node.takes_uniform_grad). A sum's
 * backward gives its input a uniform gradient instead of filling it, as
 * PyTorch's expand does; consumers that can use the value directly skip a
 * write and a read of the whole tensor. No-op on other tensors. */
void sg_grad_materialize(sg_tensor *grad);

/* ---- gradient checking (public API) ----------------------------------- */

/* A function of tensors to check. It builds its output with ops on g from
 * the given inputs and returns it (any shape). */
typedef sg_tensor *(*sg_check_fn)(sg_graph *g, sg_tensor *const *inputs, int n_inputs, void *ctx);

typedef struct sg_gradcheck_opts {
  double eps;      /* central-difference step (default 1e-6) */
  double atol;     /* pass if |analytic - numeric| <= atol + rtol*|numeric| */
  double rtol;     /* defaults: atol 1e-7, rtol 1e-6 */
  int projections; /* 0: every input element; >0: that many random directions */
  uint64_t seed;   /* for the output weighting and projection directions */
} sg_gradcheck_opts;

typedef struct sg_gradcheck_result {
  bool ok;
  int input;     /* input holding the worst element (-1 if none) */
  int64_t index; /* its flat index (or projection number) */
  double analytic, numeric, abs_err, rel_err;
  double worst;    /* largest abs_err / (atol + rtol*|numeric|); ok iff <= 1 */
  int64_t checked; /* number of comparisons made */
  char msg[320];   /* human-readable summary */
} sg_gradcheck_result;

sg_gradcheck_opts sg_gradcheck_defaults(void);

/* Compares autograd with central finite differences in float64. inputs must
 * be float64 caller-owned tensors; those with requires_grad set are checked.
 * The output y is reduced to the scalar sum(w * y) with fixed random weights
 * w, so the whole Jacobian is exercised. opts NULL: defaults. */
sg_gradcheck_result sg_gradcheck(sg_check_fn f, sg_tensor *const *inputs, int n_inputs, void *ctx,
                                 const sg_gradcheck_opts *opts);

/* Runs f on float64 inputs and on their float32 copies and reports the worst
 * |y32 - y64| / (atol + rtol*|y64|) in result.worst (ok iff <= 1). */
sg_gradcheck_result sg_check_f32_forward(sg_check_fn f, sg_tensor *const *inputs, int n_inputs,
                                         void *ctx, double atol, double rtol);

/* The float32 forward and gradient against float64 on the same values:
 * the inputs (caller-owned float64; those with requires_grad get a
 * gradient) are rounded to float32 and both precisions run on the rounded
 * values, so the comparison measures the arithmetic alone. The output and
 * each input's gradient of sum(w * y) (fixed random w) are compared by
 * relative L2 error ||a32 - a64|| / ||a64|| <= rtol; result.worst is the
 * largest error / rtol, result.input the tensor holding it (-1: the
 * output), result.rel_err its error. For hostile inputs (large means,
 * huge logits, long reductions) at the sizes a model uses. */
sg_gradcheck_result sg_check_f32_grad(sg_check_fn f, sg_tensor *const *inputs, int n_inputs,
                                      void *ctx, double rtol);

#ifdef __cplusplus
}
#endif
#ifdef __GNUC__
#pragma GCC visibility pop
#endif
#endif
