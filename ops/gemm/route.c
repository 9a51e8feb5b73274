/* Which kernel takes a product, and the calls into the BLAS provider:
 * sg_gemm and sg_gemm_pair route each product by its shape alone (the
 * dot-product tiles for a few rows, the short-k kernel, the reference
 * kernel on one thread or all, BLIS or OpenBLAS), so that a product's
 * result never depends on the thread count; and the GEMM scratch the ops
 * take from the graph's arena. */
#include <limits.h>
#include <omp.h>
#include <stdatomic.h>

#include "sg_config.h"
#include "gemm_kernels.h"
#include "sg_gemm.h"
#include "sg_ops.h"

#if SG_BLAS_BLIS
/* BLIS's native API (see blis_gemm); blis.h is not -Wextra clean. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wtype-limits"
#include <blis.h>
#pragma GCC diagnostic pop
#elif SG_HAVE_CBLAS
#include <cblas.h>
#endif

const char *sg_blas_name(void) {
  return SG_BLAS_NAME;
}

/* ==== shapes for the unpacked kernels ==================================== */

/* Most rows of A that go to the dot-product tiles (dot.c). */
enum { SMALL_M = 32 };

/* Where the dot products beat the packed kernels (f32, AVX-512, us per call
 * on 2 threads, dots vs the route taken before): 2 x 128 x 64 1.3 vs 3.7,
 * 16 x 128 x 64 4.2 vs 5.9, 16 x 128 x 128 4.8 vs 11.4, 16 x 1024 x 1024
 * 173 vs 867 (BLIS packed: ~600). With more rows and a short k the k-loop
 * does not pay for the lane sums: 16 x 128 x 8 3.9 vs 1.1. */
static bool use_small_m_nt(bool ta, bool tb, int64_t m, int64_t k) {
  if (ta || !tb || k <= 0) return false;
  return m <= 4 || (m <= 8 && k >= 32) || (m <= SMALL_M && k >= 64);
}

/* Fewest elements of C for the short-k kernel (thin_k.c): below that (the
 * first Linears of a single sample) the serial reference kernel stays
 * ahead; routing those to the short-k kernel made a d-64 single-sample
 * forward 3 us slower. */
enum { THIN_MIN_OUTPUTS = 4096 };

/* ==== dispatch to the BLAS provider ====================================== */
/* Threads: the provider uses as many threads as OpenMP would
 * (omp_set_num_threads included), never more. Measured on 2 cores, BLIS
 * sgemm 512^3 runs at ~107 GFLOP/s on 1 thread and ~208 on 2 (256 x 1024
 * x 512: 102 and 197), but Debian's BLIS defaults to 1 thread unless
 * BLIS_NUM_THREADS or OMP_NUM_THREADS is set. BLIS-openmp forks from the
 * same libgomp pool as our own loops: no oversubscription.
 *
 * Determinism: results must not depend on the thread count.
 * - BLIS 0.9: its small-matrix ("sup") path computes A B^T (row-major, k
 *   contiguous in both) with dot-product kernels whose edge variants, and
 *   so the summation order of some elements, depend on how the threads
 *   split C: 32% of random float shapes and some double ones (40x53x372)
 *   changed with the thread count. The other transpose combinations (0 of
 *   ~1500 shapes) and the conventional packed path (0 of 1600 shapes, all
 *   combinations) never did. So A B^T runs with sup disabled, which is also
 *   faster than copying B^T (32 x 512 x 512: 127 vs 70 GFLOP/s on 2 threads)
 *   and than sup itself for most shapes (see blis_avoid_sup).
 *   BLIS is called through its typed API (not CBLAS) so that the thread
 *   count and the sup switch are per call (an rntm_t), not global state.
 * - OpenBLAS 0.3.21 (Cooperlake kernels here) splits products so that
 *   results change with its thread count (half of random float shapes, all
 *   transpose combinations, and double ones such as 301x257x613): it runs on
 *   one thread. That costs up to 2x on 2 cores; BLIS is the default. */

#if SG_BLAS_BLIS
/* When to bypass BLIS's sup path: always for A B^T (determinism, above),
 * and for wide C (n >= 512) unless both operands are transposed, where the
 * sup kernels are slow here: measured on a grid m in 16..512, n in 64..1024,
 * k in 64..1024 (2 threads), packed was faster for 20 of 30 wide NN/TN
 * shapes (f32 256 x 1024 x 512: 172 vs 94 GFLOP/s) and slower for 1, while
 * sup won most narrow ones (f32 256^3: 192 vs 132). */
static bool blis_avoid_sup(bool ta, bool tb, int64_t m, int64_t n, bool one_thread) {
  /* k is contiguous in A unless it is transposed, or a single column of
   * A^T (m == 1); likewise in B when transposed or a single column (n == 1):
   * both k-contiguous is the dot-product case (a 1-thread vs 2-thread sweep
   * found TT products with m = 1 differing too). */
  bool a_k_unit = !ta || m == 1, b_k_unit = tb || n == 1;
  /* A^T B with a deep k and a square-ish C (weight gradients, go^T x) on
   * both threads: packed 172-179 vs sup 146-147 GFLOP/s for 256 x 128..256
   * x 4096, 156 vs 149 for 128 x 128 x 4096; sup stays ahead when C has 64
   * rows or columns (187 vs 138). On one thread sup wins (cold caches,
   * 128 x 128 x 4096: 97 vs 81). The choice follows the route (one thread
   * by design), never the runtime thread count. */
  bool weight_grad = ta && !tb && m >= 128 && n >= 128 && !one_thread;
  return (a_k_unit && b_k_unit) || (!tb && n >= 512) || weight_grad;
}

static void blis_gemm(sg_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                      const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c,
                      int64_t ldc, bool one_thread) {
  rntm_t rntm = BLIS_RNTM_INITIALIZER;
  bli_rntm_set_num_threads(one_thread ? 1 : omp_get_max_threads(), &rntm);
  if (blis_avoid_sup(ta, tb, m, n, one_thread)) bli_rntm_disable_l3_sup(&rntm);
  trans_t oa = ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
          ob = tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE;
  /* Row-major storage: row stride ld, column stride 1. BLIS does not write
   * to A or B despite the non-const pointers. */
  if (dt == SG_F32) {
    float al = (float)alpha, be = (float)beta;
    bli_sgemm_ex(oa, ob, m, n, k, &al, (float *)a, lda, 1, (float *)b, ldb, 1, &be, c, ldc, 1, NULL,
                 &rntm);
  } else {
    bli_dgemm_ex(oa, ob, m, n, k, &alpha, (double *)a, lda, 1, (double *)b, ldb, 1, &beta, c, ldc,
                 1, NULL, &rntm);
  }
}
#elif SG_HAVE_CBLAS
static bool fits_blas_int(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc) {
  return max64(max64(max64(m, n), max64(k, lda)), max64(ldb, ldc)) <= INT_MAX;
}

static void openblas_gemm(sg_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                          double alpha, const void *a, int64_t lda, const void *b, int64_t ldb,
                          double beta, void *c, int64_t ldc) {
  static atomic_bool single_threaded;
  if (!atomic_exchange(&single_threaded, true)) openblas_set_num_threads(1);
  enum CBLAS_TRANSPOSE oa = ta ? CblasTrans : CblasNoTrans, ob = tb ? CblasTrans : CblasNoTrans;
  if (dt == SG_F32)
    cblas_sgemm(CblasRowMajor, oa, ob, (int)m, (int)n, (int)k, (float)alpha, a, (int)lda, b,
                (int)ldb, (float)beta, c, (int)ldc);
  else
    cblas_dgemm(CblasRowMajor, oa, ob, (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb,
                beta, c, (int)ldc);
}
#endif

#if SG_HAVE_CBLAS
/* The build's provider on one thread, or on every OpenMP thread unless
 * one_thread (OpenBLAS: always one). */
static void provider_gemm(sg_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                          double alpha, const void *a, int64_t lda, const void *b, int64_t ldb,
                          double beta, void *c, int64_t ldc, bool one_thread) {
#if SG_BLAS_BLIS
  blis_gemm(dt, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, one_thread);
#else
  (void)one_thread;
  openblas_gemm(dt, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

static bool fits_provider(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc) {
#if SG_BLAS_BLIS
  (void)m, (void)n, (void)k, (void)lda, (void)ldb, (void)ldc;
  return true;
#else
  return fits_blas_int(m, n, k, lda, ldb, ldc);
#endif
}

/* A^T B with a small C and a deep k: the weight gradients of the small
 * layers (go^T x over thousands of rows). A 128 x 128 C gives BLIS's
 * 2-thread split little to share; each half of k on one thread is faster
 * (f32, 2 threads, GFLOP/s, split vs one call: 128 x 128 x 4096 176 vs
 * 139-157, 128 x 192 x 4096 160 vs 127), and keeps its speed when the
 * machine is busy (125 vs 67-107 measured under load). At 256 x 256 BLIS's
 * own split is ahead (178 vs 170); with a 64-wide C it is a draw. (Measured
 * with packed halves; they now take sup, faster on one thread: see
 * blis_avoid_sup. A Linear backward runs its dW as one half of a pair
 * instead, see sg_gemm_pair.) */
static bool use_split_k(bool ta, bool tb, int64_t m, int64_t n, int64_t k) {
  return ta && !tb && m >= 128 && n >= 128 && m * n <= 192 * 192 && k >= 2048;
}

/* C = (beta C + alpha A1^T B1) + alpha A2^T B2, k split in two halves, the
 * second product into scratch (m x n, or NULL: allocated here): one half
 * per thread, or both in turn on one, summed in that order either way. */
static void gemm_split_k(sg_dtype dt, int64_t m, int64_t n, int64_t k, double alpha, const void *a,
                         int64_t lda, const void *b, int64_t ldb, double beta, void *c, int64_t ldc,
                         void *scratch) {
  size_t esz = sg_dtype_size(dt);
  int64_t k1 = k / 2;
  void *own = NULL;
  if (!scratch && !(scratch = own = sg_gemm_own_scratch((size_t)(m * n) * esz))) return;
  const char *a2 = (const char *)a + (size_t)(k1 * lda) * esz;
  const char *b2 = (const char *)b + (size_t)(k1 * ldb) * esz;
  SG_PARALLEL_IF(
      omp_get_max_threads() >= 2, for (int half = 0; half < 2; half++) {
        if (half == 0)
          provider_gemm(dt, true, false, m, n, k1, alpha, a, lda, b, ldb, beta, c, ldc, true);
        else
          provider_gemm(dt, true, false, m, n, k - k1, alpha, a2, lda, b2, ldb, 0, scratch, n,
                        true);
      });
  SG_DISPATCH(dt, T, {
    T *cd = c;
    const T *sd = scratch;
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) cd[i * ldc + j] += sd[i * n + j];
  });
  sg_mfree(own);
}

/* A B^T with many rows and a small B (a Linear's forward, x W^T): B^T
 * copied into scratch, the product taken as A (B^T), where BLIS's sup path
 * (not allowed for A B^T, see above; its other cases never changed with the
 * thread count) reads A unpacked. In a small-width training step (f32, 2
 * threads, calls of both routes interleaved in one run, GFLOP/s, packed A
 * B^T vs this): 2048 x 128 x 64 147-159 vs 167-175, 4096 x 128 x 64 155-169
 * vs 166-172, 4096 x 64 x 128 166-180 vs 181-198, 4096 x 128 x 128 a draw.
 * At 256 columns it lost (4096 x 256 x 128: 170 vs 138-157 in-step), and
 * for fewer rows the copy does not pay. */
static bool use_b_copied(bool ta, bool tb, int64_t m, int64_t n, int64_t k) {
  return SG_BLAS_BLIS && !ta && tb && m >= 1024 && n >= 16 && n * k <= 128 * 128;
}

static void gemm_b_copied(sg_dtype dt, int64_t m, int64_t n, int64_t k, double alpha, const void *a,
                          int64_t lda, const void *b, int64_t ldb, double beta, void *c,
                          int64_t ldc, void *scratch, bool one_thread) {
  void *own = NULL;
  if (!scratch && !(scratch = own = sg_gemm_own_scratch((size_t)(n * k) * sg_dtype_size(dt))))
    return;
  SG_DISPATCH(dt, T, {
    const T *bd = b;
    T *bt = scratch;
    for (int64_t j = 0; j < n; j++)
      for (int64_t p = 0; p < k; p++) bt[p * n + j] = bd[j * ldb + p];
  });
  provider_gemm(dt, false, false, m, n, k, alpha, a, lda, scratch, n, beta, c, ldc, one_thread);
  sg_mfree(own);
}
#endif

/* Products up to these many multiply-adds run in the reference kernel on the
 * calling thread: a threaded provider call costs more than the product.
 * Measured per call, 2 threads, f32: 16^3 1.3 us through BLIS vs 0.5 us,
 * 32^3 1.6 vs 1.4 us, 48^3 2.3 vs 4.0 us; and for the dot-product shapes
 * BLIS runs packed (blis_avoid_sup: A B^T), 32^3 12.9 vs 1.7 us, 64^3 20.8
 * vs 8.5 us. */
enum { TINY_GEMM_FLOPS = 32 * 32 * 32, TINY_KDOT_GEMM_FLOPS = 64 * 64 * 64 };

typedef enum gemm_route {
  ROUTE_SMALL_M,  /* sg_gemm_small_m_nt */
  ROUTE_THIN_K,   /* sg_gemm_thin_k */
  ROUTE_SERIAL,   /* reference kernel, calling thread only */
  ROUTE_PROVIDER, /* BLIS / OpenBLAS: needs no scratch */
  ROUTE_SPLIT_K,  /* two provider products on one thread each (gemm_split_k) */
  ROUTE_B_COPIED, /* A B^T as A (B^T): a small B transposed into scratch (gemm_b_copied) */
  ROUTE_REFERENCE /* reference kernel, threaded */
} gemm_route;

static gemm_route route_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, int64_t lda,
                             int64_t ldb, int64_t ldc) {
  if (use_small_m_nt(ta, tb, m, k)) return ROUTE_SMALL_M;
  if (k <= THIN_K && m * n >= THIN_MIN_OUTPUTS) return ROUTE_THIN_K;
#if SG_HAVE_CBLAS
  if (use_split_k(ta, tb, m, n, k) && fits_provider(m, n, k, lda, ldb, ldc)) return ROUTE_SPLIT_K;
  if (use_b_copied(ta, tb, m, n, k)) return ROUTE_B_COPIED;
#endif
  int64_t flops = m * n * k;
#if SG_BLAS_BLIS
  bool kdot = (!ta || m == 1) && (tb || n == 1);
  if (flops <= (kdot ? TINY_KDOT_GEMM_FLOPS : TINY_GEMM_FLOPS)) return ROUTE_SERIAL;
  (void)lda, (void)ldb, (void)ldc;
  return ROUTE_PROVIDER;
#elif SG_HAVE_CBLAS
  if (flops <= TINY_GEMM_FLOPS) return ROUTE_SERIAL;
  return fits_blas_int(m, n, k, lda, ldb, ldc) ? ROUTE_PROVIDER : ROUTE_REFERENCE;
#else
  (void)lda, (void)ldb, (void)ldc;
  return flops <= TINY_GEMM_FLOPS ? ROUTE_SERIAL : ROUTE_REFERENCE;
#endif
}

size_t sg_gemm_scratch_bytes(sg_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k) {
  /* Contiguous operands: leading dimensions are the stored row lengths. */
  gemm_route r = route_gemm(ta, tb, m, n, k, ta ? m : k, tb ? k : n, n);
  if (m <= 0 || n <= 0 || k <= 0 || r == ROUTE_SMALL_M || r == ROUTE_THIN_K || r == ROUTE_PROVIDER)
    return 0;
  if (r == ROUTE_SPLIT_K) return (size_t)(m * n) * sg_dtype_size(dt);
  if (r == ROUTE_B_COPIED) return (size_t)(n * k) * sg_dtype_size(dt);
  return sg_gemm_reference_scratch_bytes(dt, m, n, k);
}

/* p by its route; one_thread: on the calling thread alone, never forking
 * (the provider on one thread, a split k as one call). The small-m and
 * short-k routes fork by size whatever one_thread says; pairs never send
 * them here. */
static void gemm_run(const sg_gemm_args *p, bool one_thread) {
  if (p->m <= 0 || p->n <= 0) return;
  switch (route_gemm(p->ta, p->tb, p->m, p->n, p->k, p->lda, p->ldb, p->ldc)) {
  case ROUTE_SMALL_M:
    sg_gemm_small_m_nt(p->dt, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb, p->beta, p->c,
                       p->ldc);
    break;
  case ROUTE_THIN_K:
    sg_gemm_thin_k(p->dt, p->ta, p->tb, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb,
                   p->beta, p->c, p->ldc);
    break;
  case ROUTE_SERIAL:
    sg_gemm_serial(p->dt, p->ta, p->tb, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb,
                   p->beta, p->c, p->ldc, p->scratch);
    break;
#if SG_HAVE_CBLAS
  case ROUTE_SPLIT_K: /* on one thread: one call with the whole k */
    if (one_thread)
      provider_gemm(p->dt, p->ta, p->tb, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb,
                    p->beta, p->c, p->ldc, true);
    else
      gemm_split_k(p->dt, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb, p->beta, p->c,
                   p->ldc, p->scratch);
    break;
  case ROUTE_PROVIDER:
    provider_gemm(p->dt, p->ta, p->tb, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb,
                  p->beta, p->c, p->ldc, one_thread);
    break;
  case ROUTE_B_COPIED:
    gemm_b_copied(p->dt, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb, p->beta, p->c,
                  p->ldc, p->scratch, one_thread);
    break;
#else
  case ROUTE_PROVIDER: /* no provider in this build: never routed here */
  case ROUTE_SPLIT_K:
  case ROUTE_B_COPIED:
#endif
  case ROUTE_REFERENCE:
    (one_thread ? sg_gemm_serial : sg_gemm_reference)(p->dt, p->ta, p->tb, p->m, p->n, p->k,
                                                      p->alpha, p->a, p->lda, p->b, p->ldb, p->beta,
                                                      p->c, p->ldc, p->scratch);
    break;
  }
}

void sg_gemm(sg_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
             const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c,
             int64_t ldc, void *scratch) {
  sg_gemm_args p = {dt, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, scratch};
  gemm_run(&p, false);
}

void sg_gemm_run(const sg_gemm_args *p) {
  gemm_run(p, false);
}

/* ==== two independent products ========================================== */

/* Per-product multiply-adds where a pair runs one product per thread.
 * Below PAIR_MIN the products stay on the calling thread (sg_gemm's tiny
 * route). Above PAIR_MAX each product fills both cores alone: BLIS
 * sequential vs one product per thread, f32, cold caches, GFLOP/s for the
 * two of a Linear backward (dX = go W, dW = go^T x; rows x in x out):
 * 4096x128x128 153 vs 184, 4096x64x128 118 vs 152, 4096x128x256 172 vs 200,
 * 4096x256x256 (2^28) 187 vs 201, 512x1024x1024 (2^29) 204 vs 207, 512 x
 * 512 x 1024 201 vs 199. */
enum { PAIR_MIN = TINY_GEMM_FLOPS, PAIR_MAX = 1 << 28 };

/* Whether a product of the pair runs on its own thread: it must take a
 * route without forks of its own, and the choice depends on the shape
 * alone, so that results never depend on the thread count. */
static bool pairs_well(const sg_gemm_args *p) {
  int64_t flops = p->m * p->n * p->k;
  gemm_route r = route_gemm(p->ta, p->tb, p->m, p->n, p->k, p->lda, p->ldb, p->ldc);
  return flops > PAIR_MIN && flops <= PAIR_MAX && r != ROUTE_SMALL_M && r != ROUTE_THIN_K;
}

void sg_gemm_pair(const sg_gemm_args *p, const sg_gemm_args *q) {
  if (p->m <= 0 || p->n <= 0 || q->m <= 0 || q->n <= 0 || !pairs_well(p) || !pairs_well(q)) {
    sg_gemm_run(p);
    sg_gemm_run(q);
    return;
  }
  SG_PARALLEL_IF(omp_get_max_threads() >= 2,
                 for (int i = 0; i < 2; i++) gemm_run(i == 0 ? p : q, true););
}

/* ==== scratch from the graph's arena ===================================== */

void *sg_gemm_scratch(sg_graph *g, sg_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k) {
  size_t bytes = sg_gemm_scratch_bytes(dt, ta, tb, m, n, k);
  return bytes ? sg_arena_alloc_data(g, bytes) : NULL;
}

void sg_gemm_scratch_done(sg_graph *g, void *scratch, sg_dtype dt, bool ta, bool tb, int64_t m,
                          int64_t n, int64_t k) {
  if (scratch) sg_arena_release_data(g, scratch, sg_gemm_scratch_bytes(dt, ta, tb, m, n, k));
}

void *sg_gemm_args_scratch(sg_graph *g, const sg_gemm_args *p) {
  return sg_gemm_scratch(g, p->dt, p->ta, p->tb, p->m, p->n, p->k);
}

void sg_gemm_args_scratch_done(sg_graph *g, const sg_gemm_args *p) {
  sg_gemm_scratch_done(g, p->scratch, p->dt, p->ta, p->tb, p->m, p->n, p->k);
}
