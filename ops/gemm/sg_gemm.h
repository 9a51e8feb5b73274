/* Internal matrix-product kernels (not installed), for the ops that take
 * matrix products (ops/matmul.c, ops/linear.c) and the tests.
 *
 * C = alpha * op(A) op(B) + beta * C on row-major matrices, where op(A) is
 * m x k (A itself is k x m when trans_a) and op(B) is k x n (B is n x k when
 * trans_b); lda, ldb, ldc are row strides in elements. a, b and c point to
 * float (SG_F32) or double (SG_F64). beta == 0 never reads C, so C may hold
 * garbage (NaN) then.
 *
 * sg_gemm uses the build's BLAS provider when there is one (BLIS through
 * its native API, OpenBLAS through CBLAS), else the reference kernel; a few
 * rows times B^T go through direct dot products in every build, and A^T B
 * with a small C and a deep k through two provider calls on half of k each.
 * sg_gemm_reference is the in-tree, cache-blocked kernel, compiled in every
 * build (tests compare the two). Both may use every OpenMP thread: never
 * call them inside a parallel region. Results never depend on the number of
 * threads (route.c explains what that takes from each provider).
 *
 * scratch: sg_gemm_scratch_bytes(...) bytes for the reference kernel's
 * packed panels or the split-k partial product (0 when the provider takes
 * the product alone; ops pass arena memory), or NULL to let the kernel
 * allocate and free it itself. */
#ifndef SG_GEMM_H
#define SG_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sg_tensor.h"

size_t sg_gemm_scratch_bytes(sg_dtype dt, bool trans_a, bool trans_b, int64_t m, int64_t n,
                             int64_t k);

void sg_gemm(sg_dtype dt, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
             const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c,
             int64_t ldc, void *scratch);

void sg_gemm_reference(sg_dtype dt, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                       double alpha, const void *a, int64_t lda, const void *b, int64_t ldb,
                       double beta, void *c, int64_t ldc, void *scratch);

/* The arguments of one sg_gemm call. */
typedef struct sg_gemm_args {
  sg_dtype dt;
  bool ta, tb;
  int64_t m, n, k;
  double alpha;
  const void *a;
  int64_t lda;
  const void *b;
  int64_t ldb;
  double beta;
  void *c;
  int64_t ldc;
  void *scratch; /* as for sg_gemm */
} sg_gemm_args;

/* sg_gemm with its arguments in one struct. */
void sg_gemm_run(const sg_gemm_args *p);

/* Two independent products (p's C must not overlap q's operands or C):
 * mid-sized pairs run one product per thread, each on one thread (the two
 * products of a Linear backward have equal work; one per core beats each
 * split across both); others run one after the other through sg_gemm. The
 * choice depends on the shapes alone, so results do not depend on the
 * thread count. */
void sg_gemm_pair(const sg_gemm_args *p, const sg_gemm_args *q);

/* Bytes the reference kernel needs for these sizes. */
size_t sg_gemm_reference_scratch_bytes(sg_dtype dt, int64_t m, int64_t n, int64_t k);

/* The reference kernel on the calling thread only (it never forks): safe
 * inside a parallel region, where the ops run many small products at once,
 * one per thread, each with its own scratch. */
void sg_gemm_serial(sg_dtype dt, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                    double alpha, const void *a, int64_t lda, const void *b, int64_t ldb,
                    double beta, void *c, int64_t ldc, void *scratch);

/* Scratch for one sg_gemm call from g's arena (sg_gemm_scratch_bytes; NULL
 * when the product takes none), and its release once the product is done:
 * the reference kernel's packed panels are a fixed size per call, so kept
 * they would add up over a forward's many products. The _args forms take
 * the sizes from p; sg_gemm_args_scratch_done releases p->scratch. */
void *sg_gemm_scratch(sg_graph *g, sg_dtype dt, bool trans_a, bool trans_b, int64_t m, int64_t n,
                      int64_t k);
void sg_gemm_scratch_done(sg_graph *g, void *scratch, sg_dtype dt, bool trans_a, bool trans_b,
                          int64_t m, int64_t n, int64_t k);
void *sg_gemm_args_scratch(sg_graph *g, const sg_gemm_args *p);
void sg_gemm_args_scratch_done(sg_graph *g, const sg_gemm_args *p);

#endif
