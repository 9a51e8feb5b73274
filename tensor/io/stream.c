/* What the .npy and .npz code shares about files: error messages, whole
 * reads and writes on file descriptors, and output files that appear under
 * their name only once completely written. */
#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- errors ------------------------------------------------------------ */

static void vfail(sg_io_error *err, const char *fmt, va_list ap) {
  if (err) vsnprintf(err->msg, sizeof err->msg, fmt, ap);
}

/* Fills err (if any) and returns -1. */
int sg_io_fail(sg_io_error *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(err, fmt, ap);
  va_end(ap);
  return -1;
}

/* Fills err (if any) and returns NULL. */
void *sg_io_fail_null(sg_io_error *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(err, fmt, ap);
  va_end(ap);
  return NULL;
}

int sg_io_fail_oom(sg_io_error *err, const char *what) {
  return sg_io_fail(err, "%s: out of memory", what);
}

char *sg_io_copy_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *c = sg_malloc(n);
  if (c) memcpy(c, s, n);
  return c;
}

/* ---- file descriptors -------------------------------------------------- */

int sg_io_read_exact_at(int fd, void *buf, size_t n, uint64_t pos, const char *what,
                        sg_io_error *err) {
  uint8_t *p = buf;
  while (n > 0) {
    ssize_t got = pread(fd, p, n < SYSCALL_MAX ? n : SYSCALL_MAX, (off_t)pos);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return sg_io_fail(err, "%s: read failed: %s", what, strerror(errno));
    if (got == 0)
      return sg_io_fail(err, "%s: file ended early (was it changed while reading?)", what);
    p += got, pos += (uint64_t)got, n -= (size_t)got;
  }
  return 0;
}

int sg_io_write_all(int fd, const void *buf, size_t n, const char *what, sg_io_error *err) {
  const uint8_t *p = buf;
  while (n > 0) {
    ssize_t put = write(fd, p, n < SYSCALL_MAX ? n : SYSCALL_MAX);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) return sg_io_fail(err, "%s: write failed: %s", what, strerror(errno));
    p += put, n -= (size_t)put;
  }
  return 0;
}

int sg_io_open_input(const char *path, int *fd, uint64_t *size, sg_io_error *err) {
  if (!path) return sg_io_fail(err, "(null): no file name given");
  *fd = open(path, O_RDONLY | O_CLOEXEC);
  if (*fd < 0) return sg_io_fail(err, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(*fd);
    return sg_io_fail(err, "%s: not a regular file", path);
  }
  *size = (uint64_t)st.st_size;
  return 0;
}

/* ---- atomic output files ------------------------------------------------ */

static uint64_t mix64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/* Like mkstemp, but created with mode 0666 so the umask applies as it would
 * to a file opened normally (mkstemp would force 0600). */
static int open_temp_beside(atomic_file *af, sg_io_error *err) {
  static _Atomic uint64_t counter;
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  size_t cap = strlen(af->path) + sizeof ".tmpXXXXXX";
  af->tmp_path = sg_malloc(cap);
  if (!af->tmp_path) return sg_io_fail_oom(err, af->path);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int open_errno = EEXIST;
  for (int attempt = 0; attempt < 100 && open_errno == EEXIST; attempt++) {
    uint64_t r = mix64((uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 32 ^ (uint64_t)getpid() << 48 ^
                       atomic_fetch_add(&counter, 1) << 20);
    char suffix[7];
    for (int i = 0; i < 6; i++, r /= 36) suffix[i] = alphabet[r % 36];
    suffix[6] = '\0';
    snprintf(af->tmp_path, cap, "%s.tmp%s", af->path, suffix);
    af->fd = open(af->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (af->fd >= 0) return 0;
    open_errno = errno;
  }
  sg_mfree(af->tmp_path);
  af->tmp_path = NULL;
  return sg_io_fail(err, "%s: cannot create a temporary file beside it: %s", af->path,
                    strerror(open_errno));
}

int sg_io_atomic_create(atomic_file *af, const char *path, sg_io_error *err) {
  af->fd = -1;
  af->tmp_path = NULL;
  if (!path) return sg_io_fail(err, "(null): no file name given");
  af->path = sg_io_copy_string(path);
  if (!af->path) return sg_io_fail_oom(err, path);
  if (open_temp_beside(af, err)) {
    sg_mfree(af->path);
    return -1;
  }
  /* Replacing a file keeps its permissions. */
  struct stat st;
  if (stat(af->path, &st) == 0 && S_ISREG(st.st_mode)) (void)fchmod(af->fd, st.st_mode & 07777);
  return 0;
}

static void atomic_release(atomic_file *af) {
  sg_mfree(af->path);
  sg_mfree(af->tmp_path);
  af->path = af->tmp_path = NULL;
}

void sg_io_atomic_discard(atomic_file *af) {
  if (af->fd >= 0) close(af->fd);
  af->fd = -1;
  if (af->tmp_path) unlink(af->tmp_path);
  atomic_release(af);
}

/* Renames the synced and closed temporary file over the target when rc is
 * 0; removes it otherwise. Releases af. */
static int atomic_move_into_place(atomic_file *af, int rc, sg_io_error *err) {
  if (rc == 0 && rename(af->tmp_path, af->path) != 0)
    rc = sg_io_fail(err, "%s: cannot move the temporary file into place: %s", af->path,
                    strerror(errno));
  if (rc != 0) unlink(af->tmp_path);
  atomic_release(af);
  return rc;
}

int sg_io_atomic_commit(atomic_file *af, sg_io_error *err) {
  int rc = 0;
  if (fsync(af->fd) != 0) rc = sg_io_fail(err, "%s: fsync failed: %s", af->path, strerror(errno));
  if (close(af->fd) != 0 && rc == 0)
    rc = sg_io_fail(err, "%s: close failed: %s", af->path, strerror(errno));
  af->fd = -1;
  return atomic_move_into_place(af, rc, err);
}

int sg_io_write_atomic(const char *path, int (*write)(FILE *f, void *user), void *user,
                       sg_io_error *err) {
  atomic_file af;
  if (sg_io_atomic_create(&af, path, err)) return -1;
  FILE *f = fdopen(af.fd, "w");
  if (!f) {
    int e = errno;
    sg_io_atomic_discard(&af);
    return sg_io_fail(err, "%s: cannot write: %s", path, strerror(e));
  }
  errno = 0;
  int rc = write(f, user) ? -1 : 0;
  if (fflush(f) != 0 || ferror(f)) rc = -1;
  if (rc == 0 && fsync(af.fd) != 0) rc = -1;
  int e = errno;
  if (fclose(f) != 0 && rc == 0) rc = -1, e = errno;
  af.fd = -1;
  if (rc) sg_io_fail(err, "%s: cannot write: %s", path, e ? strerror(e) : "write failed");
  return atomic_move_into_place(&af, rc, err);
}
