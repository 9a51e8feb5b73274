/* Shared by the GEMM kernels of ops/gemm (not used by the ops): integer
 * helpers, the vector width and fused multiply-adds the kernels are built
 * for, and the unpacked kernels that route.c sends special shapes to. The
 * packed reference kernel is reached through sg_gemm.h. */
#ifndef SG_GEMM_KERNELS_H
#define SG_GEMM_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "sg_kernel.h"

static inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
static inline int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}
static inline int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

/* The widest vector the target has, in bytes: the register tiles of the
 * kernels are a fixed number of these. */
#if defined(__AVX512F__)
#define VEC_BYTES 64
#elif defined(__AVX__)
#define VEC_BYTES 32
#else
#define VEC_BYTES 16
#endif

/* ISO C modes leave GCC's -ffp-contract off; the kernels' inner loops need
 * their multiply-adds fused (twice the throughput). Clang fuses a*b+c within one
 * expression by default. Contraction never depends on the thread count. */
#if defined(__GNUC__) && !defined(__clang__)
#define FP_CONTRACT __attribute__((optimize("fp-contract=fast")))
#else
#define FP_CONTRACT
#endif

/* for (i = 0; i < count; i++) BODY, in parallel when par (SG_PARALLEL_IF:
 * no one-thread team when par is false, which mattered for many tiny
 * products run inside an outer parallel loop). */
#define FOR_MAYBE_PARALLEL(par, i, count, ...)                                                     \
  SG_PARALLEL_IF(par, for (int64_t i = 0; i < (count); i++) __VA_ARGS__)

/* A few rows of A (not transposed) times B^T by direct dot products (dot.c);
 * arguments as for sg_gemm. Forks by size alone. */
void sg_gemm_small_m_nt(sg_dtype dt, int64_t m, int64_t n, int64_t k, double alpha, const void *a,
                        int64_t lda, const void *b, int64_t ldb, double beta, void *c, int64_t ldc);

/* The deepest k the short-k kernel takes (it keeps THIN_K rows of B on the
 * stack). */
enum { THIN_K = 16 };

/* C = beta C + alpha op(A) op(B) for k <= THIN_K, without packing
 * (thin_k.c); arguments as for sg_gemm. Forks by size alone. */
void sg_gemm_thin_k(sg_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                    const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c,
                    int64_t ldc);

/* Scratch a GEMM allocates itself (its caller gave none), or NULL after
 * reporting the failure: the product is then not computed. Under a graph
 * the caller's scratch came from the arena, whose failure marked it. */
static inline void *sg_gemm_own_scratch(size_t bytes) {
  void *p = sg_malloc(bytes);
  if (!p) sg_report_error("sg_gemm", NULL, 0, "out of memory for %zu bytes of scratch", bytes);
  return p;
}

#endif
