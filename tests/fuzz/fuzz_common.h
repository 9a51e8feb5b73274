/* What the fuzz targets share: the input as a file in memory, and the
 * checks that a parser's outcome is clean. Each target defines
 * LLVMFuzzerTestOneInput; libFuzzer drives it (tests/fuzz/run), and
 * replay.c feeds it committed inputs in the normal test suite. A check that
 * fails aborts, which both report as a finding. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sinkgrad.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_REQUIRE(cond, ...)                                                                    \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "fuzz check failed (%s:%d): ", __FILE__, __LINE__);                          \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fputc('\n', stderr);                                                                         \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

/* The bytes as a file that the loaders open by name: a memfd (an anonymous
 * file in memory) reached through /proc/self/fd, so the loaders run their
 * own file code (open, fstat, pread) on exactly these bytes, with no disk
 * involved. The same file is reused for every input. */
static inline const char *fuzz_memory_file(const uint8_t *data, size_t size) {
  static int fd = -1;
  static char path[64];
  if (fd < 0) {
    fd = memfd_create("fuzz-input", MFD_CLOEXEC);
    FUZZ_REQUIRE(fd >= 0, "memfd_create failed");
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  FUZZ_REQUIRE(ftruncate(fd, 0) == 0, "ftruncate failed");
  for (size_t done = 0; done < size;) {
    ssize_t put = pwrite(fd, data + done, size - done, (off_t)done);
    FUZZ_REQUIRE(put > 0, "pwrite failed");
    done += (size_t)put;
  }
  return path;
}

/* A clean failure names what is wrong: a message, NUL-terminated. */
static inline void fuzz_expect_message(const sg_io_error *err, const char *call) {
  size_t n = strnlen(err->msg, sizeof err->msg);
  FUZZ_REQUIRE(n > 0 && n < sizeof err->msg, "%s failed without a message", call);
}

/* Reads every byte, so AddressSanitizer checks that the buffer is as large
 * as the loader says; the sum keeps the reads from being optimised away. */
static inline unsigned fuzz_touch(const void *p, size_t n) {
  const volatile uint8_t *b = p;
  unsigned sum = 0;
  for (size_t i = 0; i < n; i++) sum += b[i];
  return sum;
}

static inline size_t fuzz_npy_type_size(sg_npy_type t) {
  return t == SG_NPY_F64 || t == SG_NPY_I64 ? 8 : t == SG_NPY_F32 || t == SG_NPY_I32 ? 4 : 1;
}

/* An array a loader returned: its shape gives its numel and every element
 * is there to read. */
static inline void fuzz_check_array(const sg_array *a, const char *call) {
  FUZZ_REQUIRE(a->ndim >= 0 && a->ndim <= SG_MAX_DIMS, "%s: ndim %d", call, a->ndim);
  int64_t numel = 1;
  for (int i = 0; i < a->ndim; i++) {
    FUZZ_REQUIRE(a->shape[i] >= 0, "%s: negative size", call);
    numel *= a->shape[i];
  }
  FUZZ_REQUIRE(numel == a->numel, "%s: numel %lld, shape gives %lld", call, (long long)a->numel,
               (long long)numel);
  FUZZ_REQUIRE(a->numel == 0 || a->data, "%s: no data", call);
  (void)fuzz_touch(a->data, (size_t)a->numel * fuzz_npy_type_size(a->type));
}

static inline void fuzz_check_tensor(const sg_tensor *t, const char *call) {
  int64_t numel = 1;
  for (int i = 0; i < t->ndim; i++) numel *= t->shape[i];
  FUZZ_REQUIRE(numel == t->numel, "%s: tensor numel does not match its shape", call);
  (void)fuzz_touch(t->data, (size_t)t->numel * sg_dtype_size(t->dtype));
}

#endif
