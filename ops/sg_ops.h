/* sinkgrad ops. Every op takes the graph first, allocates its output in the
 * graph's arena, and (when a gradient is needed) records itself on the tape.
 * Binary elementwise ops broadcast as NumPy does; both operands must share a
 * dtype. Axes may be negative (counted from the end). Each op is a macro over
 * the function of the same name so that misuse errors name the call site. */
#ifndef SG_OPS_H
#define SG_OPS_H

#include "sg_autograd.h"

/* The shared libraries export what the public headers declare and hide the
 * rest (they are built with -fvisibility=hidden). */
#ifdef __GNUC__
#pragma GCC visibility push(default)
#endif
#ifdef __cplusplus
extern "C" {
#endif

/* ---- elementwise (ops/elementwise.c) ---------------------------------- */
sg_tensor *(sg_add)(sg_graph *g, sg_tensor *a, sg_tensor *b);
sg_tensor *(sg_sub)(sg_graph *g, sg_tensor *a, sg_tensor *b);
sg_tensor *(sg_mul)(sg_graph *g, sg_tensor *a, sg_tensor *b);
sg_tensor *(sg_div)(sg_graph *g, sg_tensor *a, sg_tensor *b);
sg_tensor *(sg_neg)(sg_graph *g, sg_tensor *a);
sg_tensor *(sg_scale)(sg_graph *g, sg_tensor *a, double s);      /* s * a */
sg_tensor *(sg_add_scalar)(sg_graph *g, sg_tensor *a, double s); /* a + s */
sg_tensor *(sg_exp)(sg_graph *g, sg_tensor *a);
sg_tensor *(sg_log)(sg_graph *g, sg_tensor *a);
sg_tensor *(sg_sqrt)(sg_graph *g, sg_tensor *a);
sg_tensor *(sg_square)(sg_graph *g, sg_tensor *a);
sg_tensor *(sg_pow)(sg_graph *g, sg_tensor *a, double p); /* a^p, real exponent */
sg_tensor *(sg_abs)(sg_graph *g, sg_tensor *a);           /* gradient sign(a), 0 at 0 */
sg_tensor *(sg_relu)(sg_graph *g, sg_tensor *a);          /* gradient 0 at 0 */
sg_tensor *(sg_sigmoid)(sg_graph *g, sg_tensor *a);
sg_tensor *(sg_tanh)(sg_graph *g, sg_tensor *a);
#define sg_add(g, ...) (sg_add)(SG_AT(g), __VA_ARGS__)
#define sg_sub(g, ...) (sg_sub)(SG_AT(g), __VA_ARGS__)
#define sg_mul(g, ...) (sg_mul)(SG_AT(g), __VA_ARGS__)
#define sg_div(g, ...) (sg_div)(SG_AT(g), __VA_ARGS__)
#define sg_neg(g, ...) (sg_neg)(SG_AT(g), __VA_ARGS__)
#define sg_scale(g, ...) (sg_scale)(SG_AT(g), __VA_ARGS__)
#define sg_add_scalar(g, ...) (sg_add_scalar)(SG_AT(g), __VA_ARGS__)
#define sg_exp(g, ...) (sg_exp)(SG_AT(g), __VA_ARGS__)
#define sg_log(g, ...) (sg_log)(SG_AT(g), __VA_ARGS__)
#define sg_sqrt(g, ...) (sg_sqrt)(SG_AT(g), __VA_ARGS__)
#define sg_square(g, ...) (sg_square)(SG_AT(g), __VA_ARGS__)
#define sg_pow(g, ...) (sg_pow)(SG_AT(g), __VA_ARGS__)
#define sg_abs(g, ...) (sg_abs)(SG_AT(g), __VA_ARGS__)
#define sg_relu(g, ...) (sg_relu)(SG_AT(g), __VA_ARGS__)
#define sg_sigmoid(g, ...) (sg_sigmoid)(SG_AT(g), __VA_ARGS__)
#define sg_tanh(g, ...) (sg_tanh)(SG_AT(g), __VA_ARGS__)
/* In-place forms for inference, as PyTorch's trailing underscore: a is
 * overwritten and returned (a += b with b broadcasting to a's shape;
 * a = max(a, 0)). Allowed only with gradients off (sg_set_grad_enabled) and
 * on a tensor that no tape records; the caller must know that no recorded
 * backward reads a. They save the output buffer: a forward without
 * gradients then holds one fewer activation. */
sg_tensor *(sg_add_)(sg_graph *g, sg_tensor *a, sg_tensor *b);
sg_tensor *(sg_relu_)(sg_graph *g, sg_tensor *a);
#define sg_add_(g, ...) (sg_add_)(SG_AT(g), __VA_ARGS__)
#define sg_relu_(g, ...) (sg_relu_)(SG_AT(g), __VA_ARGS__)

/* ---- reductions (ops/reduce.c) ----------------------------------------- */
/* Over one axis; keepdim keeps it with size 1. max: the gradient goes to the
 * first maximal element. The *_all forms reduce everything to shape []. */
sg_tensor *(sg_sum)(sg_graph *g, sg_tensor *a, int axis, bool keepdim);
sg_tensor *(sg_mean)(sg_graph *g, sg_tensor *a, int axis, bool keepdim);
sg_tensor *(sg_max)(sg_graph *g, sg_tensor *a, int axis, bool keepdim);
sg_tensor *(sg_logsumexp)(sg_graph *g, sg_tensor *a, int axis, bool keepdim);
sg_tensor *(sg_sum_all)(sg_graph *g, sg_tensor *a);
sg_tensor *(sg_mean_all)(sg_graph *g, sg_tensor *a);
#define sg_sum(g, ...) (sg_sum)(SG_AT(g), __VA_ARGS__)
#define sg_mean(g, ...) (sg_mean)(SG_AT(g), __VA_ARGS__)
#define sg_max(g, ...) (sg_max)(SG_AT(g), __VA_ARGS__)
#define sg_logsumexp(g, ...) (sg_logsumexp)(SG_AT(g), __VA_ARGS__)
#define sg_sum_all(g, ...) (sg_sum_all)(SG_AT(g), __VA_ARGS__)
#define sg_mean_all(g, ...) (sg_mean_all)(SG_AT(g), __VA_ARGS__)

/* ---- matrix products (ops/matmul.c, ops/linear.c) ---------------------- */
/* a [..., m, k] @ b [..., k, n] -> [..., m, n] (with trans_a, a is
 * [..., k, m]; with trans_b, b is [..., n, k]). Batch dims broadcast. */
sg_tensor *(sg_matmul)(sg_graph *g, sg_tensor *a, sg_tensor *b, bool trans_a, bool trans_b);
/* x [..., in] @ W^T + b: W [out, in], b [out] or NULL. */
sg_tensor *(sg_linear)(sg_graph *g, sg_tensor *x, sg_tensor *w, sg_tensor *b);
/* x [..., width] @ W[:, col0 : col0 + width]^T + b: a column block of W
 * [out, in], read in place. The sum of sg_linear_cols over the blocks of
 * [x1, x2, ...] is sg_linear of their concatenation, without the
 * concatenation (and the parts may broadcast against each other). */
sg_tensor *(sg_linear_cols)(sg_graph *g, sg_tensor *x, sg_tensor *w, int64_t col0, sg_tensor *b);
/* ReLU(x @ W^T + b), fused: one GEMM and one pass over the output, and
 * the pre-activation is never stored (the backward masks by the output). */
sg_tensor *(sg_linear_relu)(sg_graph *g, sg_tensor *x, sg_tensor *w, sg_tensor *b);
/* The first Linear of an MLP on the concatenation [x_0, ..., x_{n-1}] along
 * the last axis, without building it: sum_i x_i W[:, block_i]^T + b, where
 * block i is x_i's columns of W [out, in] (the widths add up to in), then
 * ReLU if relu. The parts' leading axes broadcast against each other
 * (NumPy rules): a part repeated along an axis is multiplied once, at its
 * own size, not once per repeat. 1 to 3 parts; b [out] or NULL. */
sg_tensor *(sg_linear_parts)(sg_graph *g, int n, sg_tensor *const *x, sg_tensor *w, sg_tensor *b,
                             bool relu);
#define sg_matmul(g, ...) (sg_matmul)(SG_AT(g), __VA_ARGS__)
#define sg_linear(g, ...) (sg_linear)(SG_AT(g), __VA_ARGS__)
#define sg_linear_relu(g, ...) (sg_linear_relu)(SG_AT(g), __VA_ARGS__)
#define sg_linear_cols(g, ...) (sg_linear_cols)(SG_AT(g), __VA_ARGS__)
#define sg_linear_parts(g, ...) (sg_linear_parts)(SG_AT(g), __VA_ARGS__)
/* ---- linear solve (ops/linalg.c) ---------------------------------------- */
/* X = A^{-1} B for a batch of square systems: A [..., n, n], B [..., n, r]
 * with the same leading axes (no broadcasting), 1 <= n <= SG_SOLVE_MAX_N.
 * LU with partial pivoting, in double for both dtypes. Differentiable in A
 * and B (gB = A^{-T} gX, gA = -gB X^T). A singular matrix (no non-zero
 * pivot, or a NaN) is reported, naming the matrix, and gives NULL. */
#define SG_SOLVE_MAX_N 64
sg_tensor *(sg_solve)(sg_graph *g, sg_tensor *A, sg_tensor *B);
#define sg_solve(g, ...) (sg_solve)(SG_AT(g), __VA_ARGS__)

/* Which matrix-product backend this build uses: "blis", "openblas", "reference". */
const char *sg_blas_name(void);

/* ---- shape ops (ops/shape.c) ------------------------------------------- */
/* reshape: one entry may be -1. permute: perm lists ndim source axes.
 * slice: [start, end) along axis, step 1. expand: broadcast_to. repeat:
 * tiles a (like torch.Tensor.repeat) with reps[i] copies along axis i. */
sg_tensor *(sg_reshape)(sg_graph *g, sg_tensor *a, int ndim, const int64_t *shape);
sg_tensor *(sg_permute)(sg_graph *g, sg_tensor *a, const int *perm);
sg_tensor *(sg_transpose)(sg_graph *g, sg_tensor *a, int axis0, int axis1);
sg_tensor *(sg_concat)(sg_graph *g, int n, sg_tensor *const *ts, int axis);
sg_tensor *(sg_slice)(sg_graph *g, sg_tensor *a, int axis, int64_t start, int64_t end);
sg_tensor *(sg_expand)(sg_graph *g, sg_tensor *a, int ndim, const int64_t *shape);
sg_tensor *(sg_repeat)(sg_graph *g, sg_tensor *a, const int64_t *reps);
#define sg_reshape(g, ...) (sg_reshape)(SG_AT(g), __VA_ARGS__)
#define sg_permute(g, ...) (sg_permute)(SG_AT(g), __VA_ARGS__)
#define sg_transpose(g, ...) (sg_transpose)(SG_AT(g), __VA_ARGS__)
#define sg_concat(g, ...) (sg_concat)(SG_AT(g), __VA_ARGS__)
#define sg_slice(g, ...) (sg_slice)(SG_AT(g), __VA_ARGS__)
#define sg_expand(g, ...) (sg_expand)(SG_AT(g), __VA_ARGS__)
#define sg_repeat(g, ...) (sg_repeat)(SG_AT(g), __VA_ARGS__)

/* ---- non-differentiable ops (ops/select.c) ----------------------------- */
/* These record nothing: their outputs carry no gradient. Indices are stored
 * as exact integers in the input's dtype. where() is differentiable in a and
 * b (not in cond): out = cond != 0 ? a : b, broadcasting all three. */
typedef enum sg_cmp { SG_LT, SG_LE, SG_GT, SG_GE, SG_EQ, SG_NE } sg_cmp;
sg_tensor *(sg_argmax)(sg_graph *g, sg_tensor *a, int axis, bool keepdim);    /* ties: lowest */
sg_tensor *(sg_one_hot)(sg_graph *g, sg_tensor *idx, int64_t n_classes);      /* [..., n] */
sg_tensor *(sg_compare)(sg_graph *g, sg_tensor *a, sg_tensor *b, sg_cmp cmp); /* 1 or 0 */
sg_tensor *(sg_where)(sg_graph *g, sg_tensor *cond, sg_tensor *a, sg_tensor *b);
sg_tensor *(sg_detach)(sg_graph *g, sg_tensor *a); /* same values, no gradient */
#define sg_argmax(g, ...) (sg_argmax)(SG_AT(g), __VA_ARGS__)
#define sg_one_hot(g, ...) (sg_one_hot)(SG_AT(g), __VA_ARGS__)
#define sg_compare(g, ...) (sg_compare)(SG_AT(g), __VA_ARGS__)
#define sg_where(g, ...) (sg_where)(SG_AT(g), __VA_ARGS__)
#define sg_detach(g, ...) (sg_detach)(SG_AT(g), __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#ifdef __GNUC__
#pragma GCC visibility pop
#endif
#endif
