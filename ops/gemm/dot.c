/* A few rows of A (not transposed) times B^T, with k contiguous in both:
 * dot products, computed for a tile of DOT_ROWS rows of A by DOT_COLS rows
 * of B at once (16 vector accumulators), so each vector of A or B loaded
 * from cache feeds several multiply-adds. B is read straight from the
 * caller's matrix: for m this small it dominates the cost, and repacking it
 * (as the blocked kernels do) costs more than the product itself (measured
 * 10x for 1 x 512 x 512). Every element sums its k products in vector lanes
 * in order, the tail in a zero-padded vector, then the lanes in a fixed
 * tree, so its value depends on k alone: not on the tile it was computed in,
 * m, n or the thread count. */
#include "gemm_kernels.h"

enum { DOT_ROWS = 4, DOT_COLS = 4, DOT_BLOCK_COLS = 64 };
/* Products below this many multiply-adds stay on the calling thread. A
 * second thread halves 16 x 128 x 128 (4.8 vs 8.6 us) only while it is
 * spinning; one that has gone to sleep between calls (libgomp's default
 * wait policy) takes longer to wake: single-sample inference at d 64 took
 * 0.27 ms for its first ~100 calls and 0.18 after with forks from 2^16
 * multiply-adds, and a steady 0.19 ms with none. */
enum { SMALL_M_PAR_MIN = 1 << 20 };

#if defined(__AVX512F__)
#include <immintrin.h>
/* The float tile with AVX-512: the same sums as the generic tile, with a
 * masked load for the k tail instead of copies, and the 16 lane sums of a
 * tile row reduced four at a time (shuffles across the four vectors), which
 * costs a third of reducing each vector alone. */
static inline __m512 pair_halves(__m512 u, __m512 v) {
  /* [u.q0+u.q2, u.q1+u.q3, v.q0+v.q2, v.q1+v.q3] in 128-bit quarters */
  return _mm512_add_ps(_mm512_shuffle_f32x4(u, v, _MM_SHUFFLE(1, 0, 1, 0)),
                       _mm512_shuffle_f32x4(u, v, _MM_SHUFFLE(3, 2, 3, 2)));
}

/* Lane sums of v0..v3 in lanes 0, 4, 8 and 12. */
static inline __m512 lane_sums4(__m512 v0, __m512 v1, __m512 v2, __m512 v3) {
  __m512 x = pair_halves(v0, v1), y = pair_halves(v2, v3);
  __m512 z = _mm512_add_ps(_mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(2, 0, 2, 0)),
                           _mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(3, 1, 3, 1)));
  z = _mm512_add_ps(z, _mm512_permute_ps(z, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_add_ps(z, _mm512_permute_ps(z, _MM_SHUFFLE(1, 0, 3, 2)));
}

/* An R x C tile (R * C = 16 accumulators): rows x cols of C, a short tile
 * repeating its first row or column. Instantiated with constants (always
 * inlined) so that the loops unroll and the accumulators stay in
 * registers. */
static inline __attribute__((always_inline)) void
dot_tile_avx512(const int R, const int C, int64_t k, const float *a, int64_t lda, int rows,
                const float *b, int64_t ldb, int cols, float alpha, float beta, float *c,
                int64_t ldc) {
  const float *ar[4], *bc[8];
  for (int r = 0; r < R; r++) ar[r] = a + (r < rows ? r : 0) * lda;
  for (int q = 0; q < C; q++) bc[q] = b + (q < cols ? q : 0) * ldb;
  __m512 acc[4][8];
  for (int r = 0; r < R; r++)
    for (int q = 0; q < C; q++) acc[r][q] = _mm512_setzero_ps();
#define DOT_STEP_AVX512(LOAD)                                                                      \
  do {                                                                                             \
    __m512 av[4], bv[8];                                                                           \
    /* Loaded once into registers (the empty asm): GCC would fold the     */                       \
    /* loads into the multiply-adds, several times each, and the loads,   */                       \
    /* not the FMAs, would bound the loop. */                                                      \
    for (int r = 0; r < R; r++) {                                                                  \
      av[r] = LOAD(ar[r] + p);                                                                     \
      __asm__("" : "+v"(av[r]));                                                                   \
    }                                                                                              \
    for (int q = 0; q < C; q++) {                                                                  \
      bv[q] = LOAD(bc[q] + p);                                                                     \
      __asm__("" : "+v"(bv[q]));                                                                   \
    }                                                                                              \
    for (int r = 0; r < R; r++)                                                                    \
      for (int q = 0; q < C; q++) acc[r][q] = _mm512_fmadd_ps(av[r], bv[q], acc[r][q]);            \
  } while (0)
  int64_t p = 0;
  for (; p + 16 <= k; p += 16) DOT_STEP_AVX512(_mm512_loadu_ps);
  if (p < k) {
    __mmask16 mask = (__mmask16)((1u << (k - p)) - 1);
#define MASKED_LOAD(ptr) _mm512_maskz_loadu_ps(mask, ptr)
    DOT_STEP_AVX512(MASKED_LOAD);
#undef MASKED_LOAD
  }
#undef DOT_STEP_AVX512
  /* Each four sums of a tile row go to C as one (masked) 4-float store:
   * reading them back one by one from memory would stall on store
   * forwarding. */
  const __m512i pick = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  __m128 va = _mm_set1_ps(alpha), vb = _mm_set1_ps(beta);
  for (int q0 = 0; q0 < C && q0 < cols; q0 += 4) {
    int n4 = cols - q0 < 4 ? cols - q0 : 4;
    __mmask8 cmask = (__mmask8)((1u << n4) - 1);
    for (int r = 0; r < rows; r++) {
      __m512 sums = lane_sums4(acc[r][q0], acc[r][q0 + 1], acc[r][q0 + 2], acc[r][q0 + 3]);
      __m128 v = _mm_mul_ps(va, _mm512_castps512_ps128(_mm512_permutexvar_ps(pick, sums)));
      float *cr = c + r * ldc + q0;
      if (beta != 0) v = _mm_add_ps(_mm_mul_ps(vb, _mm_maskz_loadu_ps(cmask, cr)), v);
      _mm_mask_storeu_ps(cr, cmask, v);
    }
  }
}

/* 4 x 4 tiles; 2 x 8 when A has at most two rows, so that no half of the
 * multiply-adds works on a repeated row (2 x 128 x 64: 1.6 -> ~1 us). */
static void dot_tile_avx512_f32(int64_t k, const float *a, int64_t lda, int rows, const float *b,
                                int64_t ldb, int cols, float alpha, float beta, float *c,
                                int64_t ldc) {
  dot_tile_avx512(4, 4, k, a, lda, rows, b, ldb, cols, alpha, beta, c, ldc);
}
static void dot_tile_avx512_2x8_f32(int64_t k, const float *a, int64_t lda, int rows,
                                    const float *b, int64_t ldb, int cols, float alpha, float beta,
                                    float *c, int64_t ldc) {
  dot_tile_avx512(2, 8, k, a, lda, rows, b, ldb, cols, alpha, beta, c, ldc);
}
#define DOT_TILE_f32 dot_tile_avx512_f32
#define DOT_TILE_2X8_f32 dot_tile_avx512_2x8_f32
#define DOT_WIDE_f32 true
#else
#define DOT_TILE_f32 dot_tile_generic_f32
#define DOT_TILE_2X8_f32 dot_tile_generic_f32 /* unused: DOT_WIDE_f32 false */
#define DOT_WIDE_f32 false
#endif
#define DOT_TILE_f64 dot_tile_generic_f64
#define DOT_TILE_2X8_f64 dot_tile_generic_f64 /* unused: DOT_WIDE_f64 false */
#define DOT_WIDE_f64 false

/* acc[r][q] += A row r . B row q over the NV elements at offset p. */
#define DOT_STEP(SFX, ar, bc, p)                                                                   \
  do {                                                                                             \
    dvec_##SFX av_[DOT_ROWS], bv_[DOT_COLS];                                                       \
    for (int r_ = 0; r_ < DOT_ROWS; r_++) memcpy(&av_[r_], (ar)[r_] + (p), VEC_BYTES);             \
    for (int q_ = 0; q_ < DOT_COLS; q_++) memcpy(&bv_[q_], (bc)[q_] + (p), VEC_BYTES);             \
    for (int r_ = 0; r_ < DOT_ROWS; r_++)                                                          \
      for (int q_ = 0; q_ < DOT_COLS; q_++) acc[r_][q_] += av_[r_] * bv_[q_];                      \
  } while (0)

#define DEFINE_DOT_KERNEL(SFX, T)                                                                  \
  typedef T dvec_##SFX __attribute__((vector_size(VEC_BYTES)));                                    \
  typedef T dhalf_##SFX __attribute__((vector_size(VEC_BYTES / 2)));                               \
  /* Sum of the lanes: halve the vector until two lanes are left. */                               \
  static inline T lane_sum_##SFX(dvec_##SFX v) {                                                   \
    enum { NV = VEC_BYTES / sizeof(T) };                                                           \
    dhalf_##SFX lo, hi;                                                                            \
    memcpy(&lo, &v, sizeof lo);                                                                    \
    memcpy(&hi, (const char *)&v + sizeof lo, sizeof hi);                                          \
    lo += hi;                                                                                      \
    T lane[NV / 2];                                                                                \
    memcpy(lane, &lo, sizeof lane);                                                                \
    for (int w = NV / 4; w > 0; w /= 2)                                                            \
      for (int l = 0; l < w; l++) lane[l] += lane[l + w];                                          \
    return lane[0];                                                                                \
  }                                                                                                \
  /* C[0..rows, 0..cols] = beta*C + alpha * A[0..rows] . B[0..cols]; a     */                      \
  /* short tile repeats its first row or column and drops the copies. The  */                      \
  /* k tail is copied into zero-padded vectors and run as one more step.   */                      \
  static FP_CONTRACT __attribute__((unused)) void dot_tile_generic_##SFX(                          \
      int64_t k, const T *a, int64_t lda, int rows, const T *b, int64_t ldb, int cols, T alpha,    \
      T beta, T *c, int64_t ldc) {                                                                 \
    enum { NV = VEC_BYTES / sizeof(T) };                                                           \
    const T *ar[DOT_ROWS], *bc[DOT_COLS];                                                          \
    for (int r = 0; r < DOT_ROWS; r++) ar[r] = a + (r < rows ? r : 0) * lda;                       \
    for (int q = 0; q < DOT_COLS; q++) bc[q] = b + (q < cols ? q : 0) * ldb;                       \
    dvec_##SFX acc[DOT_ROWS][DOT_COLS];                                                            \
    for (int r = 0; r < DOT_ROWS; r++)                                                             \
      for (int q = 0; q < DOT_COLS; q++) acc[r][q] = (dvec_##SFX){0};                              \
    int64_t full = k / NV * NV;                                                                    \
    for (int64_t p = 0; p < full; p += NV) DOT_STEP(SFX, ar, bc, p);                               \
    if (full < k) {                                                                                \
      T ta[DOT_ROWS][NV], tb[DOT_COLS][NV];                                                        \
      const T *tar[DOT_ROWS], *tbc[DOT_COLS];                                                      \
      for (int r = 0; r < DOT_ROWS; r++) {                                                         \
        for (int l = 0; l < NV; l++) ta[r][l] = full + l < k ? ar[r][full + l] : 0;                \
        tar[r] = ta[r];                                                                            \
      }                                                                                            \
      for (int q = 0; q < DOT_COLS; q++) {                                                         \
        for (int l = 0; l < NV; l++) tb[q][l] = full + l < k ? bc[q][full + l] : 0;                \
        tbc[q] = tb[q];                                                                            \
      }                                                                                            \
      DOT_STEP(SFX, tar, tbc, 0);                                                                  \
    }                                                                                              \
    for (int r = 0; r < rows; r++)                                                                 \
      for (int q = 0; q < cols; q++) {                                                             \
        T s = alpha * lane_sum_##SFX(acc[r][q]), *cij = c + r * ldc + q;                           \
        *cij = beta == 0 ? s : beta * *cij + s;                                                    \
      }                                                                                            \
  }                                                                                                \
  static void gemm_small_m_nt_##SFX(int64_t m, int64_t n, int64_t k, T alpha, const T *a,          \
                                    int64_t lda, const T *b, int64_t ldb, T beta, T *c,            \
                                    int64_t ldc) {                                                 \
    int64_t blocks = ceil_div(n, DOT_BLOCK_COLS);                                                  \
    FOR_MAYBE_PARALLEL(m *n *k > SMALL_M_PAR_MIN, blk, blocks, {                                   \
      int64_t j1 = min64(n, (blk + 1) * DOT_BLOCK_COLS);                                           \
      bool wide = m <= 2 && DOT_WIDE_##SFX;                                                        \
      int64_t tr = wide ? 2 : DOT_ROWS, tc = wide ? 8 : DOT_COLS;                                  \
      for (int64_t j = blk * DOT_BLOCK_COLS; j < j1; j += tc)                                      \
        for (int64_t i = 0; i < m; i += tr)                                                        \
          (wide ? DOT_TILE_2X8_##SFX : DOT_TILE_##SFX)(k, a + i * lda, lda, (int)min64(tr, m - i), \
                                                       b + j * ldb, ldb, (int)min64(tc, j1 - j),   \
                                                       alpha, beta, c + i * ldc + j, ldc);         \
    });                                                                                            \
  }

DEFINE_DOT_KERNEL(f32, float)
DEFINE_DOT_KERNEL(f64, double)

void sg_gemm_small_m_nt(sg_dtype dt, int64_t m, int64_t n, int64_t k, double alpha, const void *a,
                        int64_t lda, const void *b, int64_t ldb, double beta, void *c,
                        int64_t ldc) {
  if (dt == SG_F32)
    gemm_small_m_nt_f32(m, n, k, (float)alpha, a, lda, b, ldb, (float)beta, c, ldc);
  else
    gemm_small_m_nt_f64(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
