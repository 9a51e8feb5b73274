/* exp, log and tanh over arrays through SLEEF's vector functions (1-ulp
 * accuracy, the "u10" variants). The tail goes through the same vector
 * function on a padded copy, so an element's result never depends on where
 * a thread's chunk happens to end. */
#include "sg_kernel.h"

#include <immintrin.h>
#include <sleef.h>

#if defined(__AVX512F__)
#define VF_WIDTH 16
#define VD_WIDTH 8
#define DEFINE_VMATH(name)                                                                         \
  void sg_v##name##_f32(const float *x, float *y, int64_t n) {                                     \
    int64_t i = 0;                                                                                 \
    for (; i + VF_WIDTH <= n; i += VF_WIDTH)                                                       \
      _mm512_storeu_ps(y + i, Sleef_##name##f16_u10(_mm512_loadu_ps(x + i)));                      \
    if (i < n) {                                                                                   \
      float pad[VF_WIDTH] = {0};                                                                   \
      memcpy(pad, x + i, (size_t)(n - i) * sizeof *pad);                                           \
      _mm512_storeu_ps(pad, Sleef_##name##f16_u10(_mm512_loadu_ps(pad)));                          \
      memcpy(y + i, pad, (size_t)(n - i) * sizeof *pad);                                           \
    }                                                                                              \
  }                                                                                                \
  void sg_v##name##_f64(const double *x, double *y, int64_t n) {                                   \
    int64_t i = 0;                                                                                 \
    for (; i + VD_WIDTH <= n; i += VD_WIDTH)                                                       \
      _mm512_storeu_pd(y + i, Sleef_##name##d8_u10(_mm512_loadu_pd(x + i)));                       \
    if (i < n) {                                                                                   \
      double pad[VD_WIDTH] = {0};                                                                  \
      memcpy(pad, x + i, (size_t)(n - i) * sizeof *pad);                                           \
      _mm512_storeu_pd(pad, Sleef_##name##d8_u10(_mm512_loadu_pd(pad)));                           \
      memcpy(y + i, pad, (size_t)(n - i) * sizeof *pad);                                           \
    }                                                                                              \
  }
#elif defined(__AVX2__)
#define VF_WIDTH 8
#define VD_WIDTH 4
#define DEFINE_VMATH(name)                                                                         \
  void sg_v##name##_f32(const float *x, float *y, int64_t n) {                                     \
    int64_t i = 0;                                                                                 \
    for (; i + VF_WIDTH <= n; i += VF_WIDTH)                                                       \
      _mm256_storeu_ps(y + i, Sleef_##name##f8_u10(_mm256_loadu_ps(x + i)));                       \
    if (i < n) {                                                                                   \
      float pad[VF_WIDTH] = {0};                                                                   \
      memcpy(pad, x + i, (size_t)(n - i) * sizeof *pad);                                           \
      _mm256_storeu_ps(pad, Sleef_##name##f8_u10(_mm256_loadu_ps(pad)));                           \
      memcpy(y + i, pad, (size_t)(n - i) * sizeof *pad);                                           \
    }                                                                                              \
  }                                                                                                \
  void sg_v##name##_f64(const double *x, double *y, int64_t n) {                                   \
    int64_t i = 0;                                                                                 \
    for (; i + VD_WIDTH <= n; i += VD_WIDTH)                                                       \
      _mm256_storeu_pd(y + i, Sleef_##name##d4_u10(_mm256_loadu_pd(x + i)));                       \
    if (i < n) {                                                                                   \
      double pad[VD_WIDTH] = {0};                                                                  \
      memcpy(pad, x + i, (size_t)(n - i) * sizeof *pad);                                           \
      _mm256_storeu_pd(pad, Sleef_##name##d4_u10(_mm256_loadu_pd(pad)));                           \
      memcpy(y + i, pad, (size_t)(n - i) * sizeof *pad);                                           \
    }                                                                                              \
  }
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
