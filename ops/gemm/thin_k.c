/* C = beta C + alpha A B with k <= THIN_K (a Linear on a few input
 * features, an outer product): every C element is k multiply-adds, too
 * few to pay for packing, and BLIS ran such shapes at 1.5-13 GFLOP/s (f32,
 * 4096 x 128 x 8, 2048 x 128 x 1). Here B is gathered as [k, n] on the stack
 * in column chunks, and each row of C is k scaled rows of it summed in
 * order p = 0..k-1, so an element's value does not depend on the thread
 * count. */
#include "gemm_kernels.h"

enum { THIN_CHUNK = 512, THIN_PAR_MIN = 1 << 17 };

#define DEFINE_THIN_K(SFX, T)                                                                      \
  static FP_CONTRACT void gemm_thin_k_##SFX(bool ta, bool tb, int64_t m, int64_t n, int64_t k,     \
                                            T alpha, const T *a, int64_t lda, const T *b,          \
                                            int64_t ldb, T beta, T *c, int64_t ldc) {              \
    T bp[THIN_K * THIN_CHUNK];                                                                     \
    for (int64_t j0 = 0; j0 < n; j0 += THIN_CHUNK) {                                               \
      int64_t nc = min64(THIN_CHUNK, n - j0);                                                      \
      for (int64_t p = 0; p < k; p++)                                                              \
        for (int64_t j = 0; j < nc; j++)                                                           \
          bp[p * nc + j] = tb ? b[(j0 + j) * ldb + p] : b[p * ldb + j0 + j];                       \
      SG_PARALLEL_IF(                                                                              \
          m *nc *k > THIN_PAR_MIN, for (int64_t i = 0; i < m; i++) {                               \
            T acc[THIN_CHUNK], *ci = c + i * ldc + j0;                                             \
            for (int64_t j = 0; j < nc; j++) acc[j] = 0;                                           \
            for (int64_t p = 0; p < k; p++) {                                                      \
              T aip = ta ? a[p * lda + i] : a[i * lda + p];                                        \
              for (int64_t j = 0; j < nc; j++) acc[j] += aip * bp[p * nc + j];                     \
            }                                                                                      \
            if (beta == 0)                                                                         \
              for (int64_t j = 0; j < nc; j++) ci[j] = alpha * acc[j];                             \
            else                                                                                   \
              for (int64_t j = 0; j < nc; j++) ci[j] = beta * ci[j] + alpha * acc[j];              \
          });                                                                                      \
    }                                                                                              \
  }

DEFINE_THIN_K(f32, float)
DEFINE_THIN_K(f64, double)

void sg_gemm_thin_k(sg_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                    const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c,
                    int64_t ldc) {
  if (dt == SG_F32)
    gemm_thin_k_f32(ta, tb, m, n, k, (float)alpha, a, lda, b, ldb, (float)beta, c, ldc);
  else
    gemm_thin_k_f64(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
