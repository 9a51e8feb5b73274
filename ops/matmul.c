/* Matrix products: the GEMM kernels (BLAS provider or the in-tree
 * reference kernel), batched matmul with broadcast batch dims, and linear.
 *
 * Backward formulas (go = gradient of the output C = op(A) op(B)):
 *   dA = go op(B)^T        (stored as op(B) go^T when A is transposed)
 *   dB = op(A)^T go        (stored as go^T op(A) when B is transposed)
 * each summed over the batch dims where the operand was broadcast.
 *   linear y = x W^T + b:  dx = go W,  dW = go^T x,  db = column sums of go
 * (over all leading rows of x, accumulated straight into the gradients). */
#include <limits.h>
#include <omp.h>
#include <stdatomic.h>

#include "sg_config.h"
#include "sg_gemm.h"
#include "sg_kernel.h"
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

static int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
static int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}
static int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

const char *sg_blas_name(void) {
  return SG_BLAS_NAME;
}

/* ==== reference kernel ====================================================
 * Goto-style blocking: for each KC-deep slab of k, the slab of op(A) is
 * packed into MR-row strips and each NC-wide panel of op(B) into NR-column
 * strips (zero-padded at the edges); a register-blocked MR x NR micro-kernel
 * then runs over every (strip of A, strip of B) pair. Work items are blocks
 * of MC rows, split further along n when there are fewer blocks than
 * threads. Each C element is summed over k in a fixed order (KC slabs in
 * order, sequentially within a slab) by one thread, so results do not
 * depend on the thread count or on MC/NC, only on KC. */

enum { KC = 256, MC = 96, NC = 2048 };
/* Register tile: MR rows of two vectors of the widest width the target has
 * (6 x 2 x 16 floats with AVX-512): 12 accumulators, which fit the 16
 * registers of AVX2/SSE as well as AVX-512's 32. */
#if defined(__AVX512F__)
#define VEC_BYTES 64
#elif defined(__AVX__)
#define VEC_BYTES 32
#else
#define VEC_BYTES 16
#endif
enum { MR = 6, NR_F32 = 2 * VEC_BYTES / 4, NR_F64 = 2 * VEC_BYTES / 8 };

/* ISO C modes leave GCC's -ffp-contract off; the micro-kernel needs its
 * multiply-adds fused (twice the throughput). Clang fuses a*b+c within one
 * expression by default. Contraction never depends on the thread count. */
#if defined(__GNUC__) && !defined(__clang__)
#define FP_CONTRACT __attribute__((optimize("fp-contract=fast")))
#else
#define FP_CONTRACT
#endif
/* Below this many multiply-adds per KC slab the kernel runs on one thread. */
enum { REF_PAR_MIN_FLOPS = 1 << 18 };

static int64_t round_up(int64_t a, int64_t b) {
  return ceil_div(a, b) * b;
}

/* Floats or doubles of packed storage for an m x n x k product. */
static int64_t ref_scratch_elems(int64_t m, int64_t n, int64_t k, int nr) {
  int64_t kc = min64(KC, max64(k, 1));
  return round_up(max64(m, 1), MR) * kc + kc * round_up(min64(max64(n, 1), NC), nr);
}

size_t sg_gemm_reference_scratch_bytes(sg_dtype dt, int64_t m, int64_t n, int64_t k) {
  int nr = dt == SG_F32 ? NR_F32 : NR_F64;
  return (size_t)ref_scratch_elems(m, n, k, nr) * sg_dtype_size(dt);
}

/* C := beta*C (beta 0 clears, so garbage/NaN in C is never read). */
#define SCALE_C(T)                                                                                 \
  do {                                                                                             \
    T *c_ = c;                                                                                     \
    for (int64_t i = 0; i < m; i++)                                                                \
      for (int64_t j = 0; j < n; j++)                                                              \
        c_[i * ldc + j] = beta == 0 ? (T)0 : (T)beta * c_[i * ldc + j];                            \
  } while (0)

/* for (i = 0; i < count; i++) BODY, in parallel when par (SG_PARALLEL_IF:
 * no one-thread team when par is false, which mattered for many tiny
 * products run inside an outer parallel loop). */
#define FOR_MAYBE_PARALLEL(par, i, count, ...)                                                     \
  SG_PARALLEL_IF(par, for (int64_t i = 0; i < (count); i++) __VA_ARGS__)

/* Instantiates the packers, micro-kernel and driver for one element type. */
#define DEFINE_REFERENCE_GEMM(SFX, T, NR)                                                          \
  /* dst: ceil(mc/MR) strips, each kc x MR (row p holds A(i0..i0+MR, p0+p)). */                    \
  static void pack_a_##SFX(bool ta, const T *a, int64_t lda, int64_t i0, int64_t mc, int64_t p0,   \
                           int64_t kc, T *dst) {                                                   \
    for (int64_t r0 = 0; r0 < mc; r0 += MR) {                                                      \
      int64_t rows = min64(MR, mc - r0);                                                           \
      T *d = dst + r0 * kc;                                                                        \
      for (int64_t p = 0; p < kc; p++) {                                                           \
        for (int64_t r = 0; r < rows; r++) {                                                       \
          int64_t i = i0 + r0 + r, q = p0 + p;                                                     \
          d[p * MR + r] = ta ? a[q * lda + i] : a[i * lda + q];                                    \
        }                                                                                          \
        for (int64_t r = rows; r < MR; r++) d[p * MR + r] = 0;                                     \
      }                                                                                            \
    }                                                                                              \
  }                                                                                                \
  /* One NR-column strip: kc x NR, row p holds B(p0+p, j0..j0+NR). */                              \
  static void pack_b_strip_##SFX(bool tb, const T *b, int64_t ldb, int64_t p0, int64_t kc,         \
                                 int64_t j0, int64_t cols, T *d) {                                 \
    if (tb) {                                                                                      \
      /* B^T: read each row of B along k (strided reads across rows would */                       \
      /* hit one cache set when ldb is a power of two). */                                         \
      for (int64_t c = 0; c < cols; c++) {                                                         \
        const T *brow = b + (j0 + c) * ldb + p0;                                                   \
        for (int64_t p = 0; p < kc; p++) d[p * NR + c] = brow[p];                                  \
      }                                                                                            \
    } else {                                                                                       \
      for (int64_t p = 0; p < kc; p++)                                                             \
        for (int64_t c = 0; c < cols; c++) d[p * NR + c] = b[(p0 + p) * ldb + j0 + c];             \
    }                                                                                              \
    for (int64_t p = 0; p < kc; p++)                                                               \
      for (int64_t c = cols; c < NR; c++) d[p * NR + c] = 0;                                       \
  }                                                                                                \
  /* C[0..mr, 0..nr] = beta*C + alpha * (packed A strip x packed B strip), */                      \
  /* accumulated in 2*MR vector registers, k in order for every element. */                        \
  typedef T vec_##SFX __attribute__((vector_size(VEC_BYTES)));                                     \
  static FP_CONTRACT void micro_##SFX(int64_t kc, const T *restrict ap, const T *restrict bp,      \
                                      T *restrict c, int64_t ldc, int64_t mr, int64_t nr, T alpha, \
                                      T beta) {                                                    \
    enum { NV = VEC_BYTES / sizeof(T) };                                                           \
    vec_##SFX lo[MR], hi[MR];                                                                      \
    for (int r = 0; r < MR; r++) lo[r] = hi[r] = (vec_##SFX){0};                                   \
    for (int64_t p = 0; p < kc; p++) {                                                             \
      vec_##SFX b0, b1;                                                                            \
      memcpy(&b0, bp + p * NR, VEC_BYTES);                                                         \
      memcpy(&b1, bp + p * NR + NV, VEC_BYTES);                                                    \
      for (int r = 0; r < MR; r++) {                                                               \
        T av = ap[p * MR + r];                                                                     \
        lo[r] = lo[r] + av * b0;                                                                   \
        hi[r] = hi[r] + av * b1;                                                                   \
      }                                                                                            \
    }                                                                                              \
    T acc[MR][NR];                                                                                 \
    for (int r = 0; r < MR; r++) {                                                                 \
      memcpy(acc[r], &lo[r], VEC_BYTES);                                                           \
      memcpy(acc[r] + NV, &hi[r], VEC_BYTES);                                                      \
    }                                                                                              \
    for (int64_t r = 0; r < mr; r++) {                                                             \
      T *cr = c + r * ldc;                                                                         \
      if (beta == 0)                                                                               \
        for (int64_t j = 0; j < nr; j++) cr[j] = alpha * acc[r][j];                                \
      else                                                                                         \
        for (int64_t j = 0; j < nr; j++) cr[j] = beta * cr[j] + alpha * acc[r][j];                 \
    }                                                                                              \
  }                                                                                                \
  static void gemm_ref_##SFX(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha,           \
                             const T *a, int64_t lda, const T *b, int64_t ldb, T beta, T *c,       \
                             int64_t ldc, T *ap, bool allow_par) {                                 \
    T *bp = ap + round_up(m, MR) * min64(KC, k);                                                   \
    int threads = allow_par ? omp_get_max_threads() : 1;                                           \
    for (int64_t p0 = 0; p0 < k; p0 += KC) {                                                       \
      int64_t kc = min64(KC, k - p0);                                                              \
      T beta_p = p0 == 0 ? beta : 1; /* later slabs add to the first */                            \
      int64_t a_strips = ceil_div(m, MR);                                                          \
      bool par = allow_par && m * n * kc > REF_PAR_MIN_FLOPS;                                      \
      FOR_MAYBE_PARALLEL(par, s, a_strips, {                                                       \
        pack_a_##SFX(ta, a, lda, s *MR, min64(MR, m - s * MR), p0, kc, ap + s * MR * kc);          \
      });                                                                                          \
      for (int64_t j0 = 0; j0 < n; j0 += NC) {                                                     \
        int64_t nc = min64(NC, n - j0), b_strips = ceil_div(nc, NR);                               \
        FOR_MAYBE_PARALLEL(par, s, b_strips, {                                                     \
          pack_b_strip_##SFX(tb, b, ldb, p0, kc, j0 + s * NR, min64(NR, nc - s * NR),              \
                             bp + s * NR * kc);                                                    \
        });                                                                                        \
        /* Work items: MC-row blocks, each split into parts along n if the */                      \
        /* blocks alone cannot keep every thread busy. */                                          \
        int64_t m_blocks = ceil_div(m, MC);                                                        \
        int64_t parts = min64(b_strips, max64(1, ceil_div(2 * threads, m_blocks)));                \
        int64_t strips_per_part = ceil_div(b_strips, parts), items = m_blocks * parts;             \
        FOR_MAYBE_PARALLEL(par, it, items, {                                                       \
          int64_t i0 = (it / parts) * MC, i1 = min64(i0 + MC, m);                                  \
          int64_t s0 = (it % parts) * strips_per_part, s1 = min64(s0 + strips_per_part, b_strips); \
          for (int64_t s = s0; s < s1; s++) {                                                      \
            int64_t jj = s * NR, cols = min64(NR, nc - jj);                                        \
            for (int64_t i = i0; i < i1; i += MR)                                                  \
              micro_##SFX(kc, ap + i * kc, bp + s * NR * kc, c + i * ldc + j0 + jj, ldc,           \
                          min64(MR, m - i), cols, alpha, beta_p);                                  \
          }                                                                                        \
        });                                                                                        \
      }                                                                                            \
    }                                                                                              \
  }

DEFINE_REFERENCE_GEMM(f32, float, NR_F32)
DEFINE_REFERENCE_GEMM(f64, double, NR_F64)

static void gemm_ref(sg_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                     const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c,
                     int64_t ldc, void *scratch, bool allow_par) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0) {
    SG_DISPATCH(dt, T, SCALE_C(T););
    return;
  }
  void *own = NULL;
  if (!scratch) scratch = own = sg_malloc(sg_gemm_reference_scratch_bytes(dt, m, n, k));
  if (dt == SG_F32)
    gemm_ref_f32(ta, tb, m, n, k, (float)alpha, a, lda, b, ldb, (float)beta, c, ldc, scratch,
                 allow_par);
  else
    gemm_ref_f64(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, scratch, allow_par);
  sg_mfree(own);
}

void sg_gemm_reference(sg_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                       const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c,
                       int64_t ldc, void *scratch) {
  gemm_ref(dt, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, scratch, true);
}

void sg_gemm_serial(sg_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                    const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c,
                    int64_t ldc, void *scratch) {
  gemm_ref(dt, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, scratch, false);
}

/* ==== a few rows times B^T ============================================== */

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
enum { SMALL_M = 32, DOT_ROWS = 4, DOT_COLS = 4, DOT_BLOCK_COLS = 64 };
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

static void gemm_small_m_nt(sg_dtype dt, int64_t m, int64_t n, int64_t k, double alpha,
                            const void *a, int64_t lda, const void *b, int64_t ldb, double beta,
                            void *c, int64_t ldc) {
  if (dt == SG_F32)
    gemm_small_m_nt_f32(m, n, k, (float)alpha, a, lda, b, ldb, (float)beta, c, ldc);
  else
    gemm_small_m_nt_f64(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* Where the dot products beat the packed kernels (f32, AVX-512, us per call
 * on 2 threads, dots vs the route taken before): 2 x 128 x 64 1.3 vs 3.7,
 * 16 x 128 x 64 4.2 vs 5.9, 16 x 128 x 128 4.8 vs 11.4, 16 x 1024 x 1024
 * 173 vs 867 (BLIS packed: ~600). With more rows and a short k the k-loop
 * does not pay for the lane sums: 16 x 128 x 8 3.9 vs 1.1. */
static bool use_small_m_nt(bool ta, bool tb, int64_t m, int64_t k) {
  if (ta || !tb || k <= 0) return false;
  return m <= 4 || (m <= 8 && k >= 32) || (m <= SMALL_M && k >= 64);
}

/* ==== products with a short k ============================================ */

/* C = beta C + alpha A B with k <= THIN_K (a Linear on a few input
 * features, an outer product): every C element is k multiply-adds, too
 * few to pay for packing, and BLIS ran such shapes at 1.5-13 GFLOP/s (f32,
 * 4096 x 128 x 8, 2048 x 128 x 1). Here B is gathered as [k, n] on the stack
 * in column chunks, and each row of C is k scaled rows of it summed in
 * order p = 0..k-1, so an element's value does not depend on the thread
 * count. Below THIN_MIN_OUTPUTS elements of C (the first Linears of a
 * single sample) the serial reference kernel stays ahead: routing those
 * here made a d-64 single-sample forward 3 us slower. */
enum { THIN_K = 16, THIN_CHUNK = 512, THIN_PAR_MIN = 1 << 17, THIN_MIN_OUTPUTS = 4096 };

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

static void gemm_thin_k(sg_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                        double alpha, const void *a, int64_t lda, const void *b, int64_t ldb,
                        double beta, void *c, int64_t ldc) {
  if (dt == SG_F32)
    gemm_thin_k_f32(ta, tb, m, n, k, (float)alpha, a, lda, b, ldb, (float)beta, c, ldc);
  else
    gemm_thin_k_f64(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

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
  if (!scratch) scratch = own = sg_malloc((size_t)(m * n) * esz);
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
  if (!scratch) scratch = own = sg_malloc((size_t)(n * k) * sg_dtype_size(dt));
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
  ROUTE_SMALL_M,  /* gemm_small_m_nt */
  ROUTE_THIN_K,   /* gemm_thin_k */
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
    gemm_small_m_nt(p->dt, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb, p->beta, p->c,
                    p->ldc);
    break;
  case ROUTE_THIN_K:
    gemm_thin_k(p->dt, p->ta, p->tb, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb,
                p->beta, p->c, p->ldc);
    break;
  case ROUTE_SERIAL:
    gemm_ref(p->dt, p->ta, p->tb, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb, p->beta,
             p->c, p->ldc, p->scratch, false);
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
    gemm_ref(p->dt, p->ta, p->tb, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb, p->beta,
             p->c, p->ldc, p->scratch, !one_thread);
    break;
  }
}

void sg_gemm(sg_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
             const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c,
             int64_t ldc, void *scratch) {
  sg_gemm_args p = {dt, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, scratch};
  gemm_run(&p, false);
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

static void gemm_args(const sg_gemm_args *p) {
  gemm_run(p, false);
}

void sg_gemm_pair(const sg_gemm_args *p, const sg_gemm_args *q) {
  if (p->m <= 0 || p->n <= 0 || q->m <= 0 || q->n <= 0 || !pairs_well(p) || !pairs_well(q)) {
    gemm_args(p);
    gemm_args(q);
    return;
  }
  SG_PARALLEL_IF(omp_get_max_threads() >= 2,
                 for (int i = 0; i < 2; i++) gemm_run(i == 0 ? p : q, true););
}

/* ==== batched products =================================================== */

/* Per-matrix multiply-adds at or below which a batch runs as many serial
 * reference-kernel products in parallel over the batch instead of one
 * (threaded) GEMM call after another. Measured on 2 cores, square f32/f64
 * batches, GFLOP/s (serial-parallel vs GEMM loop with BLIS):
 *   8^3: 9 vs 0.1, 16^3: 32 vs 2, 32^3: 93 vs 36, 64^3: 142 vs 131 (f64 70
 *   vs 46), 96^3: 158 vs 184 (f64 78 vs 75), 128^3: 177 vs 182. */
enum { SMALL_GEMM_FLOPS = 64 * 64 * 64 };

/* One operand of a batched product: a contiguous stack of stored matrices
 * (rows x cols each, ld = cols) and, per output batch dim, its stride in
 * elements (0 where the operand is broadcast). */
typedef struct bmat {
  const void *p;
  bool trans;
  int64_t ld;
  int64_t stride[SG_MAX_DIMS];
} bmat;

typedef struct batch_shape {
  int nd;
  int64_t dim[SG_MAX_DIMS];
  int64_t count;
} batch_shape;

/* Batch strides of tensor t (whose last two dims are the matrix) against
 * the output batch shape: 0 where t is missing the dim or has size 1. */
static bmat make_bmat(const sg_tensor *t, const batch_shape *bs, bool trans) {
  bmat o = {.p = t->data, .trans = trans, .ld = t->shape[t->ndim - 1]};
  int64_t s = t->shape[t->ndim - 1] * t->shape[t->ndim - 2];
  int t_nd = t->ndim - 2;
  for (int d = bs->nd - 1; d >= 0; d--) {
    int src = d - (bs->nd - t_nd);
    int64_t size = src >= 0 ? t->shape[src] : 1;
    o.stride[d] = size == 1 ? 0 : s;
    s *= size;
  }
  return o;
}

static int64_t batch_offset(const batch_shape *bs, const int64_t *stride, int64_t t) {
  int64_t off = 0;
  for (int d = bs->nd - 1; d >= 0; d--) {
    off += (t % bs->dim[d]) * stride[d];
    t /= bs->dim[d];
  }
  return off;
}

/* True if the operand is the same matrix for every batch index. */
static bool is_shared(const batch_shape *bs, const bmat *x) {
  for (int d = 0; d < bs->nd; d++)
    if (bs->dim[d] > 1 && x->stride[d] != 0) return false;
  return true;
}

/* True if batch t's matrix starts at t * mat_elems (a plain stack). */
static bool is_stacked(const batch_shape *bs, const bmat *x, int64_t mat_elems) {
  int64_t s = mat_elems;
  for (int d = bs->nd - 1; d >= 0; d--) {
    if (bs->dim[d] > 1 && x->stride[d] != s) return false;
    s *= bs->dim[d];
  }
  return true;
}

static void *gemm_scratch(sg_graph *g, sg_dtype dt, bool ta, bool tb, int64_t m, int64_t n,
                          int64_t k) {
  size_t bytes = sg_gemm_scratch_bytes(dt, ta, tb, m, n, k);
  return bytes ? sg_arena_alloc_data(g, bytes) : NULL;
}

/* Gives a product's scratch back once the product is done (the reference
 * kernel's packed panels are a fixed size per call: kept, they would add up
 * over a forward's many products). */
static void gemm_scratch_done(sg_graph *g, void *scratch, sg_dtype dt, bool ta, bool tb, int64_t m,
                              int64_t n, int64_t k) {
  if (scratch) sg_arena_release_data(g, scratch, sg_gemm_scratch_bytes(dt, ta, tb, m, n, k));
}

static void *args_scratch(sg_graph *g, const sg_gemm_args *p) {
  return gemm_scratch(g, p->dt, p->ta, p->tb, p->m, p->n, p->k);
}

static void args_scratch_done(sg_graph *g, const sg_gemm_args *p) {
  gemm_scratch_done(g, p->scratch, p->dt, p->ta, p->tb, p->m, p->n, p->k);
}

/* The batch index whose C block is u (counting over the dims where C is not
 * broadcast) and whose position among the batches sharing that block is v
 * (counting over the dims where it is). */
static int64_t compose_batch(const batch_shape *bs, const int64_t *cstride, int64_t u, int64_t v) {
  int64_t t = 0, place = 1;
  for (int d = bs->nd - 1; d >= 0; d--) {
    int64_t size = bs->dim[d], idx;
    if (cstride[d] == 0 && size > 1) {
      idx = v % size;
      v /= size;
    } else {
      idx = u % size;
      u /= size;
    }
    t += idx * place;
    place *= size;
  }
  return t;
}

/* C[t] = beta*C[t] + op(X[t]) op(Y[t]) for every batch index t, where C may
 * be shared across batch dims (a gradient summed over broadcast dims: beta
 * applies before the first product into each block). Stacks that line up are
 * folded into a single GEMM:
 *   Y shared, X not transposed: rows of all batches form one [nb*m, k] X;
 *   C shared, X transposed, Y not: the batches extend k to nb*k. */
static void batched_gemm(sg_graph *g, sg_dtype dt, const batch_shape *bs, int64_t m, int64_t n,
                         int64_t k, const bmat *x, const bmat *y, void *c, const int64_t *cstride,
                         double beta) {
  int64_t nb = bs->count, esz = (int64_t)sg_dtype_size(dt);
  if (nb == 0 || m == 0 || n == 0) return;
  bmat cm = {.p = c, .ld = n};
  memcpy(cm.stride, cstride, sizeof cm.stride);
  bool c_shared = is_shared(bs, &cm);
  if (nb == 1 ||
      (!x->trans && is_shared(bs, y) && is_stacked(bs, x, m * k) && is_stacked(bs, &cm, m * n))) {
    int64_t rows = nb == 1 ? m : nb * m;
    void *scratch = gemm_scratch(g, dt, x->trans, y->trans, rows, n, k);
    sg_gemm(dt, x->trans, y->trans, rows, n, k, 1, x->p, x->ld, y->p, y->ld, beta, c, n, scratch);
    gemm_scratch_done(g, scratch, dt, x->trans, y->trans, rows, n, k);
    return;
  }
  if (c_shared && x->trans && !y->trans && is_stacked(bs, x, m * k) && is_stacked(bs, y, k * n)) {
    void *scratch = gemm_scratch(g, dt, true, false, m, n, nb * k);
    sg_gemm(dt, true, false, m, n, nb * k, 1, x->p, x->ld, y->p, y->ld, beta, c, n, scratch);
    gemm_scratch_done(g, scratch, dt, true, false, m, n, nb * k);
    return;
  }
  /* The general case: C blocks (u) in parallel when the products are small,
   * each adding its batches (v, the dims where C is broadcast) in order. The
   * large-product loop visits them in the same order, so both give the same
   * bits. */
  int64_t n_blocks = 1;
  for (int d = 0; d < bs->nd; d++)
    if (cstride[d] != 0 || bs->dim[d] == 1) n_blocks *= bs->dim[d];
  int64_t n_red = nb / n_blocks;
  const char *xp = x->p, *yp = y->p;
  char *cp = c;
  if (m * n * k <= SMALL_GEMM_FLOPS) {
    size_t per_thread = (sg_gemm_reference_scratch_bytes(dt, m, n, k) + 63) / 64 * 64;
    size_t scratch_bytes = per_thread * (size_t)omp_get_max_threads();
    char *scratch = sg_arena_alloc_data(g, scratch_bytes);
    SG_PARALLEL_IF(
        nb * m * n * k > SG_PAR_MIN, for (int64_t u = 0; u < n_blocks; u++) {
          char *mine = scratch + per_thread * (size_t)omp_get_thread_num();
          for (int64_t v = 0; v < n_red; v++) {
            int64_t t = compose_batch(bs, cstride, u, v);
            sg_gemm_serial(dt, x->trans, y->trans, m, n, k, 1,
                           xp + batch_offset(bs, x->stride, t) * esz, x->ld,
                           yp + batch_offset(bs, y->stride, t) * esz, y->ld, v == 0 ? beta : 1,
                           cp + batch_offset(bs, cstride, t) * esz, n, mine);
          }
        });
    sg_arena_release_data(g, scratch, scratch_bytes);
    return;
  }
  void *scratch = gemm_scratch(g, dt, x->trans, y->trans, m, n, k);
  for (int64_t u = 0; u < n_blocks; u++)
    for (int64_t v = 0; v < n_red; v++) {
      int64_t t = compose_batch(bs, cstride, u, v);
      sg_gemm(dt, x->trans, y->trans, m, n, k, 1, xp + batch_offset(bs, x->stride, t) * esz, x->ld,
              yp + batch_offset(bs, y->stride, t) * esz, y->ld, v == 0 ? beta : 1,
              cp + batch_offset(bs, cstride, t) * esz, n, scratch);
    }
  gemm_scratch_done(g, scratch, dt, x->trans, y->trans, m, n, k);
}

/* ==== matmul ============================================================= */

typedef struct mm_dims {
  int64_t m, n, k;
  batch_shape bs;
} mm_dims;

/* Formats the shapes of a and b; called on error paths only, since it
 * costs more than a small product's bookkeeping. */
static void shape_strs(const sg_tensor *a, char *sa, const sg_tensor *b, char *sb) {
  sg_shape_str(a->ndim, a->shape, sa);
  if (b) sg_shape_str(b->ndim, b->shape, sb);
}

static bool matmul_dims(sg_graph *g, const sg_tensor *a, const sg_tensor *b, bool ta, bool tb,
                        mm_dims *d) {
  char sa[96], sb[96];
  if (a->ndim < 2 || b->ndim < 2) {
    shape_strs(a, sa, b, sb);
    sg_op_error(g, "sg_matmul", "operands must have at least 2 dims, got a %s and b %s", sa, sb);
    return false;
  }
  const int64_t *as = a->shape + a->ndim - 2, *bsh = b->shape + b->ndim - 2;
  int64_t ka = ta ? as[0] : as[1], kb = tb ? bsh[1] : bsh[0];
  d->m = ta ? as[1] : as[0];
  d->n = tb ? bsh[0] : bsh[1];
  d->k = ka;
  if (ka != kb) {
    shape_strs(a, sa, b, sb);
    sg_op_error(g, "sg_matmul", "inner dimensions do not match: a %s%s has %lld, b %s%s has %lld",
                sa, ta ? " (transposed)" : "", (long long)ka, sb, tb ? " (transposed)" : "",
                (long long)kb);
    return false;
  }
  int na = a->ndim - 2, nb = b->ndim - 2;
  d->bs.nd = na > nb ? na : nb;
  d->bs.count = 1;
  for (int i = 0; i < d->bs.nd; i++) {
    int ia = i - (d->bs.nd - na), ib = i - (d->bs.nd - nb);
    int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
    if (da != db && da != 1 && db != 1) {
      shape_strs(a, sa, b, sb);
      sg_op_error(g, "sg_matmul", "batch dimensions of a %s and b %s do not broadcast", sa, sb);
      return false;
    }
    d->bs.dim[i] = da == 1 ? db : da;
    d->bs.count *= d->bs.dim[i];
  }
  return true;
}

static void contiguous_strides(const batch_shape *bs, int64_t mat, int64_t *stride) {
  for (int d = bs->nd - 1; d >= 0; d--) {
    stride[d] = mat;
    mat *= bs->dim[d];
  }
}

static void matmul_backward(sg_graph *g, sg_node *nd) {
  sg_tensor *a = nd->in[0], *b = nd->in[1], *go = nd->out->grad;
  sg_tensor *ga = sg_grad_buf(g, a), *gb = sg_grad_buf(g, b);
  bool ta = nd->iarg[0], tb = nd->iarg[1];
  const mm_dims *d = nd->saved;
  bmat mg = make_bmat(go, &d->bs, false), ma = make_bmat(a, &d->bs, ta),
       mb = make_bmat(b, &d->bs, tb);
  if (ga) {
    bmat cs = make_bmat(ga, &d->bs, false);
    if (!ta) { /* dA [m, k] = go op(B)^T */
      mb.trans = !tb;
      batched_gemm(g, go->dtype, &d->bs, d->m, d->k, d->n, &mg, &mb, ga->data, cs.stride, 1);
    } else { /* dA [k, m] = op(B) go^T */
      bmat gt = mg;
      gt.trans = true;
      batched_gemm(g, go->dtype, &d->bs, d->k, d->m, d->n, &mb, &gt, ga->data, cs.stride, 1);
    }
    mb.trans = tb;
  }
  if (gb) {
    bmat cs = make_bmat(gb, &d->bs, false);
    if (!tb) { /* dB [k, n] = op(A)^T go */
      ma.trans = !ta;
      batched_gemm(g, go->dtype, &d->bs, d->k, d->n, d->m, &ma, &mg, gb->data, cs.stride, 1);
    } else { /* dB [n, k] = go^T op(A) */
      bmat gt = mg;
      gt.trans = true;
      batched_gemm(g, go->dtype, &d->bs, d->n, d->k, d->m, &gt, &ma, gb->data, cs.stride, 1);
    }
  }
}

static const sg_op matmul_op = {"sg_matmul", matmul_backward};

sg_tensor *(sg_matmul)(sg_graph *g, sg_tensor *a, sg_tensor *b, bool trans_a, bool trans_b) {
  sg_tensor *in[2] = {a, b};
  mm_dims d;
  if (!sg_check_same_dtype(g, "sg_matmul", 2, in) || !matmul_dims(g, a, b, trans_a, trans_b, &d))
    return NULL;
  int64_t shape[SG_MAX_DIMS];
  memcpy(shape, d.bs.dim, (size_t)d.bs.nd * sizeof *shape);
  shape[d.bs.nd] = d.m;
  shape[d.bs.nd + 1] = d.n;
  sg_tensor *out = sg_empty(g, a->dtype, d.bs.nd + 2, shape);
  if (!out) return NULL;
  bmat ma = make_bmat(a, &d.bs, trans_a), mb = make_bmat(b, &d.bs, trans_b);
  int64_t cstride[SG_MAX_DIMS];
  contiguous_strides(&d.bs, d.m * d.n, cstride);
  batched_gemm(g, a->dtype, &d.bs, d.m, d.n, d.k, &ma, &mb, out->data, cstride, 0);
  sg_node *node = sg_record(g, &matmul_op, out, 2, in);
  if (node) {
    node->iarg[0] = trans_a;
    node->iarg[1] = trans_b;
    mm_dims *saved = sg_arena_alloc(g, sizeof *saved);
    *saved = d;
    node->saved = saved;
  }
  return out;
}

/* ==== linear ============================================================= */

enum { BIAS_TILE = 256 };

/* gb[j] += sum over rows of go[r, j] (= if !acc), rows added in order;
 * columns are split among threads in fixed tiles. */
static void bias_grad(sg_tensor *gb, bool acc, const sg_tensor *go, int64_t rows, int64_t cols) {
  int64_t tiles = ceil_div(cols, BIAS_TILE);
  SG_DISPATCH(gb->dtype, T, {
    T *gbd = gb->data;
    const T *g = go->data;
    SG_PARALLEL_IF(
        rows * cols > SG_PAR_MIN, for (int64_t t = 0; t < tiles; t++) {
          int64_t j0 = t * BIAS_TILE, j1 = min64(j0 + BIAS_TILE, cols);
          if (!acc)
            for (int64_t j = j0; j < j1; j++) gbd[j] = 0;
          for (int64_t r = 0; r < rows; r++)
            for (int64_t j = j0; j < j1; j++) gbd[j] += g[r * cols + j];
        });
  });
}

/* The gradient buffer of W's column block [col0, col0 + width): a block
 * narrower than W writes only its columns, so W's gradient must then start
 * from zeros and the block adds to it. */
static sg_tensor *weight_grad_dest(sg_graph *g, sg_tensor *w, int64_t width, bool *acc) {
  *acc = true;
  return width == w->shape[1] ? sg_grad_dest(g, w, acc) : sg_grad_buf(g, w);
}

/* The two products of a Linear block's backward, with go [rows, out] the
 * gradient of x [rows, width] W[:, col0 : col0 + width]^T (W [out, in]):
 * dx += go W[:, block] and dW[:, block] += go^T x (= when not
 * accumulating), as one pair when both are wanted. gw: W's gradient buffer
 * fetched already (acc_w: add to it), or NULL; w_late: W is x itself, so
 * its gradient is fetched after dx is written and the second contribution
 * adds to the first. */
static void block_backward(sg_graph *g, const sg_tensor *go, sg_tensor *x, sg_tensor *w,
                           int64_t rows, int64_t col0, sg_tensor *gw, bool acc_w, bool w_late) {
  int64_t in = w->shape[1], out = w->shape[0], width = x->shape[x->ndim - 1];
  sg_dtype dt = go->dtype;
  size_t col_bytes = (size_t)col0 * sg_dtype_size(dt);
  bool acc_x = true;
  sg_tensor *gx = sg_grad_dest(g, x, &acc_x);
  sg_gemm_args dx = {.dt = dt,
                     .m = rows,
                     .n = width,
                     .k = out,
                     .alpha = 1,
                     .a = go->data,
                     .lda = out,
                     .b = (char *)w->data + col_bytes,
                     .ldb = in,
                     .beta = acc_x,
                     .c = gx ? gx->data : NULL,
                     .ldc = width};
  sg_gemm_args dw = {.dt = dt,
                     .ta = true,
                     .m = out,
                     .n = width,
                     .k = rows,
                     .alpha = 1,
                     .a = go->data,
                     .lda = out,
                     .b = x->data,
                     .ldb = width,
                     .ldc = in};
  if (gx && gw) {
    dw.beta = acc_w;
    dw.c = (char *)gw->data + col_bytes;
    dx.scratch = args_scratch(g, &dx);
    dw.scratch = args_scratch(g, &dw);
    sg_gemm_pair(&dx, &dw);
    args_scratch_done(g, &dw);
    args_scratch_done(g, &dx);
    return;
  }
  if (gx) {
    dx.scratch = args_scratch(g, &dx);
    gemm_args(&dx);
    args_scratch_done(g, &dx);
  }
  if (w_late) gw = weight_grad_dest(g, w, width, &acc_w);
  if (gw) {
    dw.beta = acc_w;
    dw.c = (char *)gw->data + col_bytes;
    dw.scratch = args_scratch(g, &dw);
    gemm_args(&dw);
    args_scratch_done(g, &dw);
  }
}

/* Weights are W[:, col0 : col0 + width] of W [out, in]: row stride in. */
static void linear_backward(sg_graph *g, sg_node *nd) {
  sg_tensor *x = nd->in[0], *w = nd->in[1], *go = nd->out->grad;
  int64_t rows = nd->iarg[0], col0 = nd->iarg[1], width = x->shape[x->ndim - 1];
  bool acc_w = true;
  sg_tensor *gw = x != w ? weight_grad_dest(g, w, width, &acc_w) : NULL;
  block_backward(g, go, x, w, rows, col0, gw, acc_w, x == w);
  bool acc_b = true;
  sg_tensor *gbias = sg_grad_dest(g, nd->in[2], &acc_b);
  if (gbias) bias_grad(gbias, acc_b, go, rows, w->shape[0]);
}

static const sg_op linear_op = {"sg_linear", linear_backward};
static const sg_op linear_cols_op = {"sg_linear_cols", linear_backward};

/* b [out] for W [out, in], or NULL; else reported under op's name. */
static bool bias_fits(sg_graph *g, const char *op, const sg_tensor *b, const sg_tensor *w) {
  if (!b || (b->ndim == 1 && b->shape[0] == w->shape[0])) return true;
  char sb[96], sw[96];
  shape_strs(b, sb, w, sw);
  sg_op_error(g, op, "bias %s must be [out] for W %s", sb, sw);
  return false;
}

/* x [..., width] against columns col0.. of W [out, in] (all of them for
 * sg_linear: col0 0, width in); bias [out] or NULL. */
static bool linear_check(sg_graph *g, const sg_op *kind, const sg_tensor *x, const sg_tensor *w,
                         int64_t col0, const sg_tensor *b) {
  char sx[96], sw[96];
  const char *op = kind->name;
  bool whole = kind != &linear_cols_op;
  if (x->ndim < 1 || w->ndim != 2 ||
      (whole ? x->shape[x->ndim - 1] != w->shape[1]
             : col0 < 0 || col0 > w->shape[1] || x->shape[x->ndim - 1] > w->shape[1] - col0)) {
    shape_strs(x, sx, w, sw);
    if (whole)
      sg_op_error(g, op, "x %s must be [..., in] and W %s [out, in] with the same in", sx, sw);
    else
      sg_op_error(g, op, "x %s must be [..., width] with columns %lld..%lld inside W %s [out, in]",
                  sx, (long long)col0, (long long)(col0 + x->shape[x->ndim - 1]), sw);
    return false;
  }
  return bias_fits(g, op, b, w);
}

/* y = max(y + b, 0) over the rows of y [rows, cols] (b NULL: max(y, 0)):
 * the epilogue of sg_linear_relu, one pass in place. */
static void bias_relu(sg_tensor *y, const sg_tensor *b, int64_t rows, int64_t cols) {
  SG_DISPATCH(y->dtype, T, {
    T *yd = y->data;
    const T *bd = b ? b->data : NULL;
    SG_PARALLEL_IF(
        y->numel > SG_PAR_MIN, for (int64_t r = 0; r < rows; r++) {
          T *row = yd + r * cols;
          if (bd)
            for (int64_t j = 0; j < cols; j++) {
              T v = row[j] + bd[j];
              row[j] = v > 0 ? v : 0;
            }
          else
            for (int64_t j = 0; j < cols; j++) row[j] = row[j] > 0 ? row[j] : 0;
        });
  });
}

/* go = 0 where the ReLU output y is not positive, in place: the gradient
 * of the pre-activation (no one else reads this node's output gradient). */
static void mask_inactive(sg_tensor *go, const sg_tensor *y) {
  int64_t n = go->numel;
  SG_DISPATCH(go->dtype, T, {
    T *gd = go->data;
    const T *yd = y->data;
    SG_PARALLEL_IF(n > SG_PAR_MIN, for (int64_t i = 0; i < n; i++) gd[i] = yd[i] > 0 ? gd[i] : 0;);
  });
}

static void linear_relu_backward(sg_graph *g, sg_node *nd) {
  mask_inactive(nd->out->grad, nd->out);
  linear_backward(g, nd);
}

static const sg_op linear_relu_op = {"sg_linear_relu", linear_relu_backward};

static sg_tensor *linear(sg_graph *g, const sg_op *op, sg_tensor *x, sg_tensor *w, int64_t col0,
                         sg_tensor *b) {
  sg_tensor *in[3] = {x, w, b};
  if (!sg_check_same_dtype(g, op->name, b ? 3 : 2, in) || !linear_check(g, op, x, w, col0, b))
    return NULL;
  int64_t n_in = w->shape[1], width = x->shape[x->ndim - 1], n_out = w->shape[0];
  int64_t shape[SG_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[x->ndim - 1] = n_out;
  sg_tensor *y = sg_empty(g, x->dtype, x->ndim, shape);
  if (!y) return NULL;
  /* Leading dims fold into rows: one [rows, width] x [width, out] GEMM. */
  int64_t rows = 1;
  for (int d = 0; d < x->ndim - 1; d++) rows *= x->shape[d];
  bool relu = op == &linear_relu_op, bias_first = b && !relu;
  if (bias_first) { /* the GEMM adds its product to the broadcast bias */
    SG_DISPATCH(x->dtype, T, {
      T *yd = y->data;
      const T *bd = b->data;
      SG_PARALLEL_IF(y->numel > SG_PAR_MIN, for (int64_t r = 0; r < rows; r++) memcpy(
                                                yd + r * n_out, bd, (size_t)n_out * sizeof(T)););
    });
  }
  const char *w_block = (const char *)w->data + (size_t)col0 * sg_dtype_size(w->dtype);
  void *scratch = gemm_scratch(g, x->dtype, false, true, rows, n_out, width);
  sg_gemm(x->dtype, false, true, rows, n_out, width, 1, x->data, width, w_block, n_in,
          bias_first ? 1 : 0, y->data, n_out, scratch);
  gemm_scratch_done(g, scratch, x->dtype, false, true, rows, n_out, width);
  if (relu) bias_relu(y, b, rows, n_out);
  sg_node *node = sg_record(g, op, y, 3, in);
  if (node) {
    node->iarg[0] = rows;
    node->iarg[1] = col0;
  }
  return y;
}

sg_tensor *(sg_linear)(sg_graph *g, sg_tensor *x, sg_tensor *w, sg_tensor *b) {
  return linear(g, &linear_op, x, w, 0, b);
}

sg_tensor *(sg_linear_cols)(sg_graph *g, sg_tensor *x, sg_tensor *w, int64_t col0, sg_tensor *b) {
  return linear(g, &linear_cols_op, x, w, col0, b);
}

sg_tensor *(sg_linear_relu)(sg_graph *g, sg_tensor *x, sg_tensor *w, sg_tensor *b) {
  return linear(g, &linear_relu_op, x, w, 0, b);
}

/* ==== the first Linear of an MLP on concatenated parts ================== */

/* How the parts of sg_linear_parts lie against the output [lead..., out]:
 * part i is x_i [lead_i..., width_i] times the column block [col0_i,
 * col0_i + width_i) of W; its leading axes, right-aligned against the
 * output's, broadcast (row stride 0) where they are 1. */
typedef struct parts_layout {
  int n, nd; /* parts; leading axes of the output */
  int64_t lead[SG_MAX_DIMS], rows;
  int64_t stride[SG_MAX_INPUTS][SG_MAX_DIMS]; /* in rows of part i */
  int64_t part_rows[SG_MAX_INPUTS], col0[SG_MAX_INPUTS], width[SG_MAX_INPUTS];
} parts_layout;

/* Whether the leading axes (all but the last, right-aligned) of a and b
 * broadcast against each other. */
static bool leading_axes_broadcast(const sg_tensor *a, const sg_tensor *b) {
  for (int k = 2; k <= a->ndim && k <= b->ndim; k++) {
    int64_t sa = a->shape[a->ndim - k], sb = b->shape[b->ndim - k];
    if (sa != 1 && sb != 1 && sa != sb) return false;
  }
  return true;
}

/* The output's rows, and each part's rows and row strides along the
 * output's leading axes (0 where it repeats). */
static void parts_rows(parts_layout *pl, sg_tensor *const *x) {
  pl->rows = 1;
  for (int d = 0; d < pl->nd; d++) pl->rows *= pl->lead[d];
  for (int i = 0; i < pl->n; i++) {
    int off = pl->nd - (x[i]->ndim - 1);
    int64_t s = 1;
    for (int d = pl->nd - 1; d >= 0; d--) {
      int64_t size = d >= off ? x[i]->shape[d - off] : 1;
      pl->stride[i][d] = size == 1 ? 0 : s;
      s *= size;
    }
    pl->part_rows[i] = s;
  }
}

/* Fills pl from the parts' shapes, or reports why they do not fit W. */
static bool parts_layout_make(sg_graph *g, int n, sg_tensor *const *x, const sg_tensor *w,
                              parts_layout *pl) {
  *pl = (parts_layout){.n = n};
  int64_t in = 0;
  for (int i = 0; i < n; i++) {
    pl->nd = x[i]->ndim - 1 > pl->nd ? x[i]->ndim - 1 : pl->nd;
    pl->col0[i] = in;
    pl->width[i] = x[i]->shape[x[i]->ndim - 1];
    in += pl->width[i];
  }
  for (int d = 0; d < pl->nd; d++) pl->lead[d] = 1;
  for (int i = 0; i < n; i++) /* the output takes each axis's non-1 size */
    for (int d = 0; d < x[i]->ndim - 1; d++)
      if (x[i]->shape[d] != 1) pl->lead[pl->nd - (x[i]->ndim - 1) + d] = x[i]->shape[d];
  char s1[96], s2[96];
  if (in != w->shape[1]) {
    shape_strs(x[0], s1, w, s2);
    sg_op_error(g, "sg_linear_parts",
                "the parts' widths (first part %s) add up to %lld, W %s has %lld columns", s1,
                (long long)in, s2, (long long)w->shape[1]);
    return false;
  }
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (!leading_axes_broadcast(x[i], x[j])) {
        shape_strs(x[i], s1, x[j], s2);
        sg_op_error(g, "sg_linear_parts",
                    "part %d %s and part %d %s do not broadcast over their leading axes", i, s1, j,
                    s2);
        return false;
      }
  parts_rows(pl, x);
  return true;
}

/* The row of part i that output row r reads. */
static int64_t part_row(const parts_layout *pl, int i, int64_t r) {
  int64_t row = 0;
  for (int d = pl->nd - 1; d >= 0; d--) {
    row += (r % pl->lead[d]) * pl->stride[i][d];
    r /= pl->lead[d];
  }
  return row;
}

/* A part repeated along no axis: its rows are the output's. */
static bool part_is_full(const parts_layout *pl, int i) {
  return pl->part_rows[i] == pl->rows;
}

/* y[r] = b + the products prod[i] [part_rows_i, out] of every part but
 * `skip`, each at the row output row r reads, added in part order. */
static void fill_broadcast_sum(sg_tensor *y, const sg_tensor *b, sg_tensor *const *prod,
                               const parts_layout *pl, int skip) {
  int64_t out = y->shape[y->ndim - 1];
  SG_DISPATCH(y->dtype, T, {
    T *yd = y->data;
    const T *bd = b ? b->data : NULL;
    SG_PARALLEL_IF(
        y->numel > SG_PAR_MIN, for (int64_t r = 0; r < pl->rows; r++) {
          T *row = yd + r * out;
          for (int64_t j = 0; j < out; j++) row[j] = bd ? bd[j] : 0;
          for (int i = 0; i < pl->n; i++) {
            if (i == skip) continue;
            const T *p = (const T *)prod[i]->data + part_row(pl, i, r) * out;
            for (int64_t j = 0; j < out; j++) row[j] += p[j];
          }
        });
  });
}

static void linear_parts_backward(sg_graph *g, sg_node *nd);
static const sg_op linear_parts_op = {"sg_linear_parts", linear_parts_backward};

/* Part i's share of the output gradient go: go itself for a full part,
 * else go summed over the axes where the part repeats (arena scratch). */
static sg_tensor *part_grad(sg_graph *g, const parts_layout *pl, int i, const sg_tensor *x,
                            sg_tensor *go) {
  if (part_is_full(pl, i)) return go;
  int64_t shape[SG_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[x->ndim - 1] = go->shape[go->ndim - 1];
  sg_tensor *gi = sg_empty(g, go->dtype, x->ndim, shape);
  sg_accumulate_reduced(gi, go, false);
  return gi;
}

/* Inputs: the n parts, W, b (or NULL); iarg: n, relu. W's gradient is
 * fetched once for all blocks (they are disjoint and cover W) unless W is
 * also a part: then, as in linear_backward, after that part's dx. */
static void linear_parts_backward(sg_graph *g, sg_node *nd) {
  int n = (int)nd->iarg[0];
  sg_tensor *w = nd->in[n], *b = nd->in[n + 1], *go = nd->out->grad;
  if (nd->iarg[1]) mask_inactive(go, nd->out);
  parts_layout pl;
  parts_layout_make(g, n, nd->in, w, &pl);
  bool w_is_part = false;
  for (int i = 0; i < n; i++) w_is_part |= nd->in[i] == w;
  bool acc_w = true;
  sg_tensor *gw = w_is_part ? NULL : sg_grad_dest(g, w, &acc_w);
  for (int i = 0; i < n; i++) {
    sg_tensor *gi = part_grad(g, &pl, i, nd->in[i], go);
    block_backward(g, gi, nd->in[i], w, pl.part_rows[i], pl.col0[i], gw, acc_w, w_is_part);
    if (i == 0) {
      bool acc_b = true;
      sg_tensor *gb = sg_grad_dest(g, b, &acc_b);
      if (gb) bias_grad(gb, acc_b, gi, pl.part_rows[0], w->shape[0]);
    }
    if (gi != go) sg_release(g, gi);
  }
}

/* W [out, in], parts of at least one axis, bias [out] or NULL. */
static bool parts_check(sg_graph *g, int n, sg_tensor *const *x, const sg_tensor *w,
                        const sg_tensor *b) {
  char s1[96], s2[96];
  const char *op = linear_parts_op.name;
  for (int i = 0; i < n; i++)
    if (x[i]->ndim < 1 || w->ndim != 2) {
      shape_strs(x[i], s1, w, s2);
      sg_op_error(g, op, "part %d %s must be [..., width] and W %s [out, in]", i, s1, s2);
      return false;
    }
  return bias_fits(g, op, b, w);
}

/* Part i's product x_i W[:, block_i]^T, [part_rows_i, out] (beta 1: added
 * to what c holds). */
static void part_product(sg_graph *g, const parts_layout *pl, int i, const sg_tensor *x,
                         const sg_tensor *w, void *c, double beta) {
  size_t col_bytes = (size_t)pl->col0[i] * sg_dtype_size(w->dtype);
  sg_gemm_args p = {.dt = w->dtype,
                    .tb = true,
                    .m = pl->part_rows[i],
                    .n = w->shape[0],
                    .k = pl->width[i],
                    .alpha = 1,
                    .a = x->data,
                    .lda = pl->width[i],
                    .b = (const char *)w->data + col_bytes,
                    .ldb = w->shape[1],
                    .beta = beta,
                    .c = c,
                    .ldc = w->shape[0]};
  p.scratch = args_scratch(g, &p);
  gemm_args(&p);
  args_scratch_done(g, &p);
}

/* The broadcast parts' products go to scratch and are summed with the
 * bias into y in one pass; the first full part's GEMM then adds itself to
 * y (beta 1), so the largest product is never stored apart. */
sg_tensor *(sg_linear_parts)(sg_graph *g, int n, sg_tensor *const *x, sg_tensor *w, sg_tensor *b,
                             bool relu) {
  const char *op = linear_parts_op.name;
  if (n < 1 || n > SG_MAX_INPUTS - 2) {
    sg_op_error(g, op, "takes 1 to %d parts, got %d", SG_MAX_INPUTS - 2, n);
    return NULL;
  }
  sg_tensor *in[SG_MAX_INPUTS];
  for (int i = 0; i < n; i++) in[i] = x[i];
  in[n] = w;
  in[n + 1] = b;
  parts_layout pl;
  if (!sg_check_same_dtype(g, op, b ? n + 2 : n + 1, in) || !parts_check(g, n, x, w, b) ||
      !parts_layout_make(g, n, x, w, &pl))
    return NULL;
  int64_t out = w->shape[0], shape[SG_MAX_DIMS];
  memcpy(shape, pl.lead, sizeof shape);
  shape[pl.nd] = out;
  sg_tensor *y = sg_empty(g, w->dtype, pl.nd + 1, shape);
  if (!y) return NULL;
  int full = -1;
  for (int i = 0; i < n && full < 0; i++)
    if (part_is_full(&pl, i)) full = i;
  sg_tensor *prod[SG_MAX_INPUTS] = {NULL};
  for (int i = 0; i < n; i++) {
    if (i == full) continue;
    prod[i] = sg_empty(g, w->dtype, 2, (int64_t[]){pl.part_rows[i], out});
    part_product(g, &pl, i, x[i], w, prod[i]->data, 0);
  }
  fill_broadcast_sum(y, b, prod, &pl, full);
  for (int i = n - 1; i >= 0; i--)
    if (prod[i]) sg_release(g, prod[i]);
  if (full >= 0) part_product(g, &pl, full, x[full], w, y->data, 1);
  if (relu) bias_relu(y, NULL, pl.rows, out);
  sg_node *node = sg_record(g, &linear_parts_op, y, n + 2, in);
  if (node) {
    node->iarg[0] = n;
    node->iarg[1] = relu;
  }
  return y;
}
