/* C = beta C + alpha A B with k <= THIN_K (a Linear on a few input
 * features, an outer product): every C element is k multiply-adds, too
 * few to pay for packing, and BLIS ran such shapes at 1.5-13 GFLOP/s (f32,
 * 4096 x 128 x 8, 2048 x 128 x 1). Here B is gathered as [k, n] on the stack
 * in column chunks, and each row of C is k scaled rows of it summed in
 * order p = 0..k-1, so an element's value does not depend on the thread
 * count. */
#include "gemm_kernels.h"

enum { THIN_CHUNK = 512, THIN_PAR_MIN = 1 << 17, TILE_VECS = 4 };

/* Row i of C for columns [0, nc) of the chunk: acc_j = sum_p a_ip bp[p][j]
 * in order p = 0..k-1. Tiles of TILE_VECS vectors keep their sums in
 * registers across p (a sum kept in memory made each p wait for the last
 * store); the remaining vectors, then the remaining columns, one at a time.
 * Every column sees the same operations in the same order, so a value does
 * not depend on where its column falls. */
#define DEFINE_THIN_ROW(SFX, T)                                                                    \
  typedef T vec_##SFX __attribute__((vector_size(64)));                                            \
  enum { VL_##SFX = 64 / sizeof(T) };                                                              \
  static inline vec_##SFX load_##SFX(const T *p) {                                                 \
    vec_##SFX v;                                                                                   \
    memcpy(&v, p, sizeof v);                                                                       \
    return v;                                                                                      \
  }                                                                                                \
  static FP_CONTRACT void thin_row_##SFX(const T *ai, int64_t astep, const T *bp, int64_t nc,      \
                                         int64_t k, T *acc) {                                      \
    int64_t j = 0;                                                                                 \
    for (; j + TILE_VECS * VL_##SFX <= nc; j += TILE_VECS * VL_##SFX) {                            \
      vec_##SFX s[TILE_VECS] = {0};                                                                \
      for (int64_t p = 0; p < k; p++) {                                                            \
        T aip = ai[p * astep];                                                                     \
        for (int t = 0; t < TILE_VECS; t++)                                                        \
          s[t] += aip * load_##SFX(bp + p * nc + j + t * VL_##SFX);                                \
      }                                                                                            \
      memcpy(acc + j, s, sizeof s);                                                                \
    }                                                                                              \
    for (; j + VL_##SFX <= nc; j += VL_##SFX) {                                                    \
      vec_##SFX s = {0};                                                                           \
      for (int64_t p = 0; p < k; p++) s += ai[p * astep] * load_##SFX(bp + p * nc + j);            \
      memcpy(acc + j, &s, sizeof s);                                                               \
    }                                                                                              \
    for (; j < nc; j++) {                                                                          \
      T s = 0;                                                                                     \
      for (int64_t p = 0; p < k; p++) s += ai[p * astep] * bp[p * nc + j];                         \
      acc[j] = s;                                                                                  \
    }                                                                                              \
  }

DEFINE_THIN_ROW(f32, float)
DEFINE_THIN_ROW(f64, double)

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
            thin_row_##SFX(ta ? a + i : a + i * lda, ta ? lda : 1, bp, nc, k, acc);                \
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
