/* The in-tree reference GEMM kernel, compiled in every build: the product
 * of builds without a BLAS provider, of tiny products in every build (on
 * the calling thread), and what the tests compare the provider against.
 *
 * Goto-style blocking: for each KC-deep slab of k, the slab of op(A) is
 * packed into MR-row strips and each NC-wide panel of op(B) into NR-column
 * strips (zero-padded at the edges); a register-blocked MR x NR micro-kernel
 * then runs over every (strip of A, strip of B) pair. Work items are blocks
 * of MC rows, split further along n when there are fewer blocks than
 * threads. Each C element is summed over k in a fixed order (KC slabs in
 * order, sequentially within a slab) by one thread, so results do not
 * depend on the thread count or on MC/NC, only on KC. */
#include <omp.h>

#include "gemm_kernels.h"
#include "sg_gemm.h"

enum { KC = 256, MC = 96, NC = 2048 };
/* Register tile: MR rows of two vectors of the widest width the target has
 * (6 x 2 x 16 floats with AVX-512): 12 accumulators, which fit the 16
 * registers of AVX2/SSE as well as AVX-512's 32. */
enum { MR = 6, NR_F32 = 2 * VEC_BYTES / 4, NR_F64 = 2 * VEC_BYTES / 8 };
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
  if (!scratch &&
      !(scratch = own = sg_gemm_own_scratch(sg_gemm_reference_scratch_bytes(dt, m, n, k))))
    return;
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
