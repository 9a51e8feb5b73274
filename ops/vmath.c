/* exp, log and tanh over arrays through SLEEF's vector functions (1-ulp
 * accuracy, the "u10" variants). The tail goes through the same vector
 * function on a padded copy, so an element's result never depends on where
 * a thread's chunk happens to end. */
#include "sg_kernel.h"

#include <immintrin.h>
#include <sleef.h>

/* sg_v<name>_<SFX>: y = f(x) over n elements of type T, W at a time through
 * the vector function VFN on LOAD / STORE vectors; the tail through VFN on
 * a zero-padded copy. */
#define DEFINE_VMATH_KERNEL(name, SFX, T, W, LOAD, STORE, VFN)                                     \
  void sg_v##name##_##SFX(const T *x, T *y, int64_t n) {                                           \
    int64_t i = 0;                                                                                 \
    for (; i + (W) <= n; i += (W)) STORE(y + i, VFN(LOAD(x + i)));                                 \
    if (i < n) {                                                                                   \
      T pad[W] = {0};                                                                              \
      memcpy(pad, x + i, (size_t)(n - i) * sizeof *pad);                                           \
      STORE(pad, VFN(LOAD(pad)));                                                                  \
      memcpy(y + i, pad, (size_t)(n - i) * sizeof *pad);                                           \
    }                                                                                              \
  }

#if defined(__AVX512F__)
#define DEFINE_VMATH(name)                                                                         \
  DEFINE_VMATH_KERNEL(name, f32, float, 16, _mm512_loadu_ps, _mm512_storeu_ps,                     \
                      Sleef_##name##f16_u10)                                                       \
  DEFINE_VMATH_KERNEL(name, f64, double, 8, _mm512_loadu_pd, _mm512_storeu_pd, Sleef_##name##d8_u10)
#elif defined(__AVX2__)
#define DEFINE_VMATH(name)                                                                         \
  DEFINE_VMATH_KERNEL(name, f32, float, 8, _mm256_loadu_ps, _mm256_storeu_ps,                      \
                      Sleef_##name##f8_u10)                                                        \
  DEFINE_VMATH_KERNEL(name, f64, double, 4, _mm256_loadu_pd, _mm256_storeu_pd, Sleef_##name##d4_u10)
#else
#define DEFINE_VMATH(name)                                                                         \
  void sg_v##name##_f32(const float *x, float *y, int64_t n) {                                     \
    for (int64_t i = 0; i < n; i++) y[i] = Sleef_##name##f_u10(x[i]);                              \
  }                                                                                                \
  void sg_v##name##_f64(const double *x, double *y, int64_t n) {                                   \
    for (int64_t i = 0; i < n; i++) y[i] = Sleef_##name##_u10(x[i]);                               \
  }
#endif

DEFINE_VMATH(exp)
DEFINE_VMATH(log)
DEFINE_VMATH(tanh)
