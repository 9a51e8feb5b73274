/* The graph: an arena for per-step memory (tensor/arena.c, its first
 * member) and a tape of op nodes, walked in reverse by the backward. */
#include "anomaly.h"
#include "sg_arena.h"
#include "sg_autograd.h"
#include "sg_dispatch.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct sg_graph {
  sg_arena arena; /* first: the tensor layer allocates through it */
  sg_node **tape;
  int64_t tape_len, tape_cap;
  bool grad_enabled;
  sg_observer observer; /* sg_graph_set_observer */
  void *observer_ctx;
  bool anomaly_on;    /* sg_graph_set_anomaly */
  bool anomaly_found; /* anomaly holds the first report since the reset */
  bool in_backward;   /* ops run by backward kernels: their gradients are checked instead */
  sg_anomaly anomaly;
};

static atomic_bool detect_anomaly_default; /* sg_set_detect_anomaly */

sg_graph *sg_graph_new(void) {
  sg_graph *g = sg_malloc(sizeof *g);
  if (!g) {
    sg_report_error("sg_graph_new", NULL, 0, "out of memory for a graph (%zu bytes)", sizeof *g);
    return NULL;
  }
  memset(g, 0, sizeof *g);
  g->grad_enabled = true;
  g->anomaly_on = atomic_load(&detect_anomaly_default);
  return g;
}

void sg_graph_free(sg_graph *g) {
  if (!g) return;
  sg_arena_destroy(&g->arena);
  sg_mfree(g->tape);
  sg_mfree(g);
}

void sg_graph_reset(sg_graph *g) {
  sg_arena_rewind(&g->arena);
  g->tape_len = 0;
  g->anomaly_found = false;
}

bool sg_set_grad_enabled(sg_graph *g, bool on) {
  bool was = g->grad_enabled;
  g->grad_enabled = on;
  return was;
}

bool sg_grad_enabled(const sg_graph *g) {
  return g->grad_enabled;
}
int64_t sg_graph_tape_len(const sg_graph *g) {
  return g->tape_len;
}

void sg_graph_set_observer(sg_graph *g, sg_observer fn, void *ctx) {
  g->observer = fn;
  g->observer_ctx = fn ? ctx : NULL;
}

bool sg_graph_set_anomaly(sg_graph *g, bool on) {
  bool was = g->anomaly_on;
  g->anomaly_on = on;
  return was;
}
bool sg_graph_anomaly_enabled(const sg_graph *g) {
  return g->anomaly_on;
}
const sg_anomaly *sg_graph_anomaly(const sg_graph *g) {
  return g->anomaly_found ? &g->anomaly : NULL;
}
bool sg_set_detect_anomaly(bool on) {
  return atomic_exchange(&detect_anomaly_default, on);
}

void sg_release_after_backward(sg_graph *g, sg_tensor *t) {
  if (!g || !t || t->graph != g) return;
  if (t->node)
    t->release_after_backward = true;
  else if (!g->grad_enabled)
    sg_release(g, t);
  /* else a constant of a recorded op: its backward may read it (x of a
   * Linear whose weight learns), so it stays */
}

/* ---- tape -------------------------------------------------------------- */

/* False (reported, the graph marked failed) when the tape cannot grow: the
 * node is not kept, and sg_backward will not run on this step. */
static bool tape_push(sg_graph *g, sg_node *n) {
  if (g->tape_len == g->tape_cap) {
    int64_t cap = g->tape_cap ? 2 * g->tape_cap : 256;
    sg_node **t = sg_realloc(g->tape, (size_t)cap * sizeof *t);
    if (!t) {
      g->arena.failed = true;
      sg_report_error("sg_record", g->arena.file, g->arena.line,
                      "out of memory growing the tape to %lld nodes", (long long)cap);
      return false;
    }
    g->tape = t;
    g->tape_cap = cap;
  }
  g->tape[g->tape_len++] = n;
  return true;
}

sg_node *sg_record(sg_graph *g, const sg_op *op, sg_tensor *out, int n_in, sg_tensor *const *in) {
  if (g->anomaly_on && !g->anomaly_found && !g->in_backward && out)
    g->anomaly_found = sg_anomaly_check_forward(g, op, out, n_in, in, &g->anomaly);
  if (!g->grad_enabled || !out) return NULL;
  bool needed = false;
  for (int i = 0; i < n_in; i++) needed |= in[i] && in[i]->requires_grad;
  if (!needed) return NULL;
  sg_node *n = sg_arena_alloc(g, sizeof *n);
  if (!n || !tape_push(g, n)) return NULL;
  memset(n, 0, sizeof *n);
  n->op = op;
  n->out = out;
  n->n_in = n_in;
  n->file = sg_graph_file(g);
  n->line = sg_graph_line(g);
  for (int i = 0; i < n_in; i++) n->in[i] = in[i];
  out->requires_grad = true;
  out->node = n;
  out->grad = NULL;
  if (g->observer) g->observer(g->observer_ctx, g, n, SG_OBSERVE_FORWARD);
  return n;
}

/* Gives t a gradient buffer, contents undefined: a leaf's kept buffer (see
 * sg_zero_grad) or a new one. Leaves keep their gradient across steps (it
 * accumulates until sg_zero_grad); intermediates' die with the arena. False
 * (reported, the graph marked failed) when there is no memory for it. */
static bool grad_alloc(sg_graph *g, sg_tensor *t) {
  if (t->grad_spare) {
    t->grad = t->grad_spare;
    t->grad_spare = NULL;
  } else {
    t->grad = sg_empty(t->owned ? NULL : g, t->dtype, t->ndim, t->shape);
  }
  if (t->grad) return true;
  g->arena.failed = true;
  if (t->owned) { /* the arena reported its own failure */
    char b[96];
    sg_report_error("sg_backward", g->arena.file, g->arena.line,
                    "out of memory for the gradient of a %s leaf of shape %s",
                    sg_dtype_name(t->dtype), sg_shape_str(t->ndim, t->shape, b));
  }
  return false;
}

/* Every element of t := v, across the threads for large tensors. */
static void fill(sg_tensor *t, double v) {
  SG_DISPATCH(t->dtype, T, {
    T *d = t->data, x = (T)v;
    int64_t n = t->numel;
    SG_PARALLEL_IF(n > SG_PAR_MIN, for (int64_t i = 0; i < n; i++) d[i] = x;);
  });
}

sg_tensor *sg_grad_buf(sg_graph *g, sg_tensor *t) {
  if (!t || !t->requires_grad) return NULL;
  sg_grad_materialize(t->grad); /* to be added to */
  if (!t->grad) {
    if (!grad_alloc(g, t)) return NULL;
    fill(t->grad, 0);
  }
  t->grad_fresh = true;
  return t->grad;
}

void sg_grad_materialize(sg_tensor *grad) {
  if (!grad || !grad->uniform) return;
  fill(grad, grad->uniform_value);
  grad->uniform = false;
}

sg_tensor *sg_grad_dest_inplace(sg_graph *g, sg_node *n, sg_tensor *t, bool *accumulate) {
  const sg_tensor *go = n->out->grad;
  if (!t || !t->requires_grad || t->grad || t->owned || !go || go->uniform ||
      go->numel != t->numel || go->dtype != t->dtype)
    return sg_grad_dest(g, t, accumulate);
  /* A header with t's shape on go's data (t may be a reshape of out). */
  sg_tensor *h = sg_arena_alloc(g, sizeof *h);
  if (!h) return NULL;
  *h = *go;
  h->ndim = t->ndim;
  memcpy(h->shape, t->shape, sizeof h->shape);
  t->grad = h;
  t->grad_fresh = true;
  *accumulate = false;
  return h;
}

sg_tensor *sg_grad_dest(sg_graph *g, sg_tensor *t, bool *accumulate) {
  if (!t || !t->requires_grad) return NULL;
  *accumulate = t->grad != NULL;
  sg_grad_materialize(t->grad); /* to be added to */
  if (!t->grad && !grad_alloc(g, t)) return NULL;
  t->grad_fresh = true;
  return t->grad;
}

/* After n's backward nothing reads n->out's gradient: it is dropped, as
 * PyTorch frees non-leaf gradients, and its buffer is reused by later
 * tensors unless an input has taken it over (sg_grad_dest_inplace). */
static void release_used_grad(sg_graph *g, sg_node *n) {
  sg_tensor *go = n->out->grad;
  if (n->out->owned) return;
  n->out->grad = NULL;
  for (int i = 0; i < n->n_in; i++)
    if (n->in[i] && n->in[i]->grad && n->in[i]->grad->data == go->data) return;
  if (go->graph == g) sg_arena_release_block(&g->arena, go->data, sg_arena_block_bytes(go));
}

/* Anomaly mode: true (after reporting) when n's backward wrote a NaN or
 * Inf into an input's gradient. */
static bool backward_anomaly(sg_graph *g, const sg_node *n) {
  if (!g->anomaly_on || g->anomaly_found) return false;
  g->anomaly_found = sg_anomaly_check_backward(n, &g->anomaly);
  return g->anomaly_found;
}

/* 0, or -1 when anomaly mode stopped the walk at a non-finite gradient. */
static int run_tape(sg_graph *g) {
  bool was = sg_set_grad_enabled(g, false); /* backward kernels record nothing */
  int rc = 0;
  g->in_backward = true;
  for (int64_t i = g->tape_len - 1; i >= 0 && !rc; i--) {
    sg_node *n = g->tape[i];
    if (!n->out->grad) continue;
    if (!n->takes_uniform_grad) sg_grad_materialize(n->out->grad);
    n->op->backward(g, n);
    if (g->arena.failed) { /* an input's gradient is missing: see sg_graph_failed */
      rc = -1;
      break;
    }
    if (g->observer) g->observer(g->observer_ctx, g, n, SG_OBSERVE_BACKWARD);
    if (backward_anomaly(g, n)) rc = -1; /* the step's gradients are unusable */
    release_used_grad(g, n);
    /* every consumer of n->out ran its backward before n */
    if (n->out->release_after_backward) sg_release(g, n->out);
  }
  /* The tape is consumed, as PyTorch frees a graph after backward: a second
   * backward must not push the same gradients through these nodes again.
   * The arena (and so every tensor) stays valid until sg_graph_reset. */
  g->tape_len = 0;
  g->in_backward = false;
  sg_set_grad_enabled(g, was);
  return rc;
}

static bool check_backward_root(sg_graph *g, const sg_tensor *out) {
  if (!out || g->arena.failed) return false; /* the failure was reported */
  if (g->anomaly_found) { /* reported in the forward: nothing sound to differentiate */
    g->tape_len = 0;
    return false;
  }
  if (!out->requires_grad) {
    sg_op_error(g, "sg_backward",
                "the output does not depend on any tensor that requires a gradient");
    return false;
  }
  return true;
}

int sg_backward(sg_graph *g, sg_tensor *loss) {
  if (!check_backward_root(g, loss)) return -1;
  if (loss->numel != 1) {
    char b[96];
    sg_op_error(g, "sg_backward", "loss must have one element, got shape %s",
                sg_shape_str(loss->ndim, loss->shape, b));
    return -1;
  }
  sg_tensor *seed = sg_grad_buf(g, loss);
  if (!seed) return -1;
  sg_set(seed, 0, sg_get(seed, 0) + 1.0);
  return run_tape(g);
}

int sg_backward_with(sg_graph *g, sg_tensor *out, const sg_tensor *grad_out) {
  if (!check_backward_root(g, out) || !grad_out) return -1;
  if (!sg_same_shape(out, grad_out) || out->dtype != grad_out->dtype) {
    char b0[96], b1[96];
    sg_op_error(g, "sg_backward_with", "grad_out %s %s does not match output %s %s",
                sg_dtype_name(grad_out->dtype), sg_shape_str(grad_out->ndim, grad_out->shape, b0),
                sg_dtype_name(out->dtype), sg_shape_str(out->ndim, out->shape, b1));
    return -1;
  }
  sg_tensor *seed = sg_grad_buf(g, out);
  if (!seed) return -1;
  for (int64_t i = 0; i < seed->numel; i++) sg_set(seed, i, sg_get(seed, i) + sg_get(grad_out, i));
  return run_tape(g);
}
