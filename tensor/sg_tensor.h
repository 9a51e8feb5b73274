/* sinkgrad tensors: dtype, shape, creation, seeded random draws, and (through
 * sg_io.h, included at the end) .npy/.npz I/O.
 *
 * A tensor is row-major and contiguous, float32 or float64, with up to
 * SG_MAX_DIMS dimensions. Tensors made with a NULL graph are owned by the
 * caller (free them with sg_free); tensors made inside a graph live in the
 * graph's arena until sg_graph_reset. */
#ifndef SG_TENSOR_H
#define SG_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The shared libraries export what the public headers declare and hide the
 * rest (they are built with -fvisibility=hidden). */
#ifdef __GNUC__
#pragma GCC visibility push(default)
#endif
#ifdef __cplusplus
extern "C" {
#endif

typedef enum sg_dtype { SG_F32 = 0, SG_F64 = 1 } sg_dtype;

/* SG_MAX_INPUTS: an op's inputs (sg_linear_parts: three parts, W and b). */
enum { SG_MAX_DIMS = 6, SG_MAX_INPUTS = 5 };

typedef struct sg_graph sg_graph;
typedef struct sg_node sg_node;

typedef struct sg_tensor {
  sg_dtype dtype;
  int ndim;
  int64_t shape[SG_MAX_DIMS];
  int64_t numel;
  void *data;             /* NULL once released (sg_release) */
  struct sg_tensor *grad; /* same shape and dtype; NULL until a backward reaches it */
  sg_node *node;          /* the op that produced it; NULL for leaves */
  bool requires_grad;
  bool grad_fresh; /* a backward wrote into grad since the optimiser last looked */
  bool owned;      /* caller-owned (heap); false: lives in a graph arena */
  sg_graph *graph; /* arena owner, NULL when owned */
  /* Internal bookkeeping of autograd's memory planning; not for users. */
  struct sg_tensor *grad_spare; /* a zeroed-out gradient's buffer, kept for reuse */
  bool uniform;                 /* gradients only: data unwritten, every element */
  double uniform_value;         /* is uniform_value (see sg_grad_materialize) */
  bool release_after_backward;  /* see sg_release_after_backward */
} sg_tensor;

/* ---- memory and errors ------------------------------------------------- */

/* Every allocation the library makes goes through these hooks (default:
 * malloc/realloc/free). Tests install a counting hook to prove that a
 * steady-state training step allocates nothing. */
typedef struct sg_allocator {
  void *(*alloc)(size_t size, void *user);
  void *(*realloc)(void *ptr, size_t size, void *user);
  void (*free)(void *ptr, void *user);
  void *user;
} sg_allocator;
void sg_set_allocator(const sg_allocator *a); /* NULL restores the default */
void *sg_malloc(size_t size);
void *sg_realloc(void *ptr, size_t size);
void sg_mfree(void *ptr);

/* API misuse (shape or dtype mismatch, bad axis) is reported to the error
 * handler with the op name, a message naming the shapes, and the caller's
 * file and line; so is a failed allocation of a graph's step ("out of
 * memory", naming what was being allocated: the arena, the tape, a leaf's
 * gradient) or of Adam's state. The default handler prints to stderr and aborts; a
 * handler that returns makes the op return NULL, and ops given NULL return
 * NULL (see sg_graph_failed for what a failed allocation leaves). */
typedef void (*sg_error_handler)(const char *op, const char *msg, const char *file, int line,
                                 void *user);
void sg_set_error_handler(sg_error_handler h, void *user); /* NULL restores default */
void sg_report_error(const char *op, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Formats a shape as "[2, 3, 4]" into buf (size >= 96); returns buf. */
const char *sg_shape_str(int ndim, const int64_t *shape, char *buf);

/* ---- the memory of a graph --------------------------------------------- */
/* A graph (sg_graph_new, autograd/) owns an arena: every tensor, node and
 * scratch buffer of a step comes from it, and sg_graph_reset rewinds it. */
size_t sg_graph_arena_bytes(const sg_graph *g); /* bytes reserved by the arena */
/* Bytes the arena has handed out since the last reset: its high-water mark
 * for this step, since released data (sg_release) is reused before the
 * arena grows. */
size_t sg_graph_arena_used(const sg_graph *g);

/* Whether an allocation for g's step failed since the last sg_graph_reset
 * (the arena's, or a leaf gradient's on the heap). The failure was reported
 * to the error handler; when that handler returns, the failing op returns
 * NULL and so do the ops given its output, sg_backward does nothing (or
 * stops), and the caller must not use the step's results: it skips the
 * optimiser step and resets the graph, which then works as before. */
bool sg_graph_failed(const sg_graph *g);
/* The size of the arena's first chunk in each lane (default 1 MiB; later
 * chunks grow up to 64 times it). A few bytes make nearly every op ask the
 * allocator for memory: for tests that make allocations fail, so that the
 * failure reaches each op rather than only the few that open a chunk. */
void sg_graph_set_first_chunk(sg_graph *g, size_t bytes);

/* Arena allocation, 64-byte aligned, uninitialised; valid until reset;
 * NULL (reported, the graph marked failed) when memory runs out. */
void *sg_arena_alloc(sg_graph *g, size_t bytes);
/* The same for a tensor's values: may reuse released data (sg_release). */
void *sg_arena_alloc_data(sg_graph *g, size_t bytes);
/* Gives back a block of sg_arena_alloc_data (the size asked for) that
 * nothing reads any more: later allocations of the step may reuse it. */
void sg_arena_release_data(sg_graph *g, void *p, size_t bytes);

/* Declares that nothing will read t's values again: its data (NULL from
 * now on) goes back to g for later tensors of this step. For memory
 * planning in model code that knows a tensor is dead: a pre-activation
 * once its ReLU has run (ReLU's backward reads its output), anything in
 * no-grad mode once consumed. Its gradient, if any, still flows. Only
 * for tensors of g's arena; others are left alone. */
void sg_release(sg_graph *g, sg_tensor *t);
/* Whether released data (sg_release, used gradients) is reused (default
 * on). Off, every tensor of a step gets fresh arena memory: results are
 * the same bit for bit, which tests check, so a suspected planning bug can
 * be ruled out by turning it off. Returns the previous setting. */
bool sg_set_memory_reuse(sg_graph *g, bool on);

/* ---- call sites ------------------------------------------------------- */
/* Each public op is a macro that records the caller's __FILE__/__LINE__ in
 * the graph before calling the function of the same name, so misuse errors
 * name the call site: sg_add(g, a, b) expands to (sg_add)(SG_AT(g), a, b). */
sg_graph *sg_graph_at(sg_graph *g, const char *file, int line);
#define SG_AT(g) sg_graph_at((g), __FILE__, __LINE__)
const char *sg_graph_file(const sg_graph *g);
int sg_graph_line(const sg_graph *g);
/* Reports an API misuse in op `op` at the graph's current call site. */
void sg_op_error(const sg_graph *g, const char *op, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- creation ---------------------------------------------------------- */

/* g NULL: heap tensor owned by the caller; else allocated in g's arena.
 * Returns NULL (after reporting) on a bad shape, and when out of memory:
 * reported for the arena (see sg_graph_failed), not for a heap tensor,
 * whose caller handles it as it would malloc's NULL. */
sg_tensor *sg_empty(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape);
sg_tensor *sg_zeros(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape);
sg_tensor *sg_ones(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape);
sg_tensor *sg_full(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape, double value);
/* Copies numel values of type float (SG_F32) or double (SG_F64) from data. */
sg_tensor *sg_from_data(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape, const void *data);
/* Copies values given as doubles, converting to dt. */
sg_tensor *sg_from_f64(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape,
                       const double *data);
sg_tensor *sg_clone(sg_graph *g, const sg_tensor *t);                 /* data only, no grad/tape */
sg_tensor *sg_to_dtype(sg_graph *g, const sg_tensor *t, sg_dtype dt); /* no gradient */
void sg_free(sg_tensor *t); /* owned tensors only; frees grad too; NULL ok */

/* Marks a leaf as a parameter whose gradient is accumulated by backward. */
void sg_set_requires_grad(sg_tensor *t, bool on);
/* Clears t's gradient, as PyTorch's zero_grad(set_to_none=True): t->grad
 * becomes NULL (no gradient: zero) and its buffer is kept, so that the next
 * backward reuses it and writes it instead of adding to zeros. */
void sg_zero_grad(sg_tensor *t);

/* Element access by flat row-major index, converting through double. */
double sg_get(const sg_tensor *t, int64_t i);
void sg_set(sg_tensor *t, int64_t i, double v);
float *sg_f32(const sg_tensor *t);  /* NULL if t is not float32 */
double *sg_f64(const sg_tensor *t); /* NULL if t is not float64 */
size_t sg_dtype_size(sg_dtype dt);
const char *sg_dtype_name(sg_dtype dt);
bool sg_same_shape(const sg_tensor *a, const sg_tensor *b);
/* The flat index of t's first NaN or +-Inf element, or -1 when every
 * element is finite (or t has no data). */
int64_t sg_first_nonfinite(const sg_tensor *t);

/* ---- seeded random draws ---------------------------------------------- */

/* xoshiro256** state. One generator, drawn sequentially, gives the same
 * numbers on every run and every thread count. */
typedef struct sg_rng {
  uint64_t s[4];
} sg_rng;
void sg_rng_seed(sg_rng *r, uint64_t seed);
uint64_t sg_rng_u64(sg_rng *r);
double sg_rng_uniform(sg_rng *r);             /* open interval (0, 1) */
double sg_rng_normal(sg_rng *r);              /* standard normal */
double sg_rng_gumbel(sg_rng *r);              /* -log(-log U), U in (0, 1) */
uint64_t sg_rng_below(sg_rng *r, uint64_t n); /* uniform integer in [0, n) */

sg_tensor *sg_rand_uniform(sg_graph *g, sg_rng *r, sg_dtype dt, int ndim, const int64_t *shape,
                           double lo, double hi);
sg_tensor *sg_rand_normal(sg_graph *g, sg_rng *r, sg_dtype dt, int ndim, const int64_t *shape,
                          double mean, double std);
sg_tensor *sg_rand_gumbel(sg_graph *g, sg_rng *r, sg_dtype dt, int ndim, const int64_t *shape);

#ifdef __cplusplus
}
#endif
#ifdef __GNUC__
#pragma GCC visibility pop
#endif

#endif
