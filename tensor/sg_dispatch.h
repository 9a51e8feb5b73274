/* Writing a kernel once for both dtypes, and running it on the threads
 * (internal to the library; every layer may use it).
 *
 * - SG_DISPATCH(dt, T, {...}) instantiates the block once for float and
 *   once for double; inside it, T is the element type and <tgmath.h> makes
 *   exp(x) mean expf for float.
 * - SG_FOR_BOTH_TYPES and SG_TYPED: helper functions written once per type
 *   family (see below).
 * - SG_PARALLEL_IF(cond, for (...) {...}) runs the loop across the OpenMP
 *   threads when cond holds. Every output element is written by exactly one
 *   thread in a fixed order, so results do not depend on the thread count. */
#ifndef SG_DISPATCH_H
#define SG_DISPATCH_H

#include <tgmath.h>

#include "sg_tensor.h"

#define SG_DISPATCH(dt, T, ...)                                                                    \
  do {                                                                                             \
    if ((dt) == SG_F32) {                                                                          \
      typedef float T;                                                                             \
      __VA_ARGS__                                                                                  \
    } else {                                                                                       \
      typedef double T;                                                                            \
      __VA_ARGS__                                                                                  \
    }                                                                                              \
  } while (0)

/* Below this many elements a loop runs on one thread: forking costs more. */
enum { SG_PAR_MIN = 1 << 15 };

/* `loop` (a for statement) across the OpenMP threads when cond holds, else
 * on the calling thread alone. Not an if clause: a parallel region with
 * if(false) still sets up a one-thread team, ~0.3 us (measured: ReLU of
 * 2048 floats 0.40 vs 0.08 us), which added up over the ~100 small ops of
 * a single-sample forward. */
#define SG_PARALLEL_IF(cond, ...)                                                                  \
  do {                                                                                             \
    if (cond) {                                                                                    \
      _Pragma("omp parallel for schedule(static)") __VA_ARGS__                                     \
    } else {                                                                                       \
      __VA_ARGS__                                                                                  \
    }                                                                                              \
  } while (0)

/* Helper families that must exist as separate functions per type (vector
 * extensions, SLEEF calls): DEFINE(T, S) written once, instantiated for
 * float (suffix f32) and double (f64) by SG_FOR_BOTH_TYPES(DEFINE); a call
 * SG_TYPED(name, p)(...) picks name_f32 or name_f64 by the element type of
 * the pointer p. */
#define SG_FOR_BOTH_TYPES(DEFINE) DEFINE(float, f32) DEFINE(double, f64)
#define SG_TYPED(name, p)                                                                          \
  _Generic((p), float * : name##_f32, const float * : name##_f32, default : name##_f64)

#endif
