/* What the .npy and .npz code shares about files: error messages, whole
 * reads and writes on file descriptors, and output files that appear under
 * their name only once completely written. */
#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <sys/file.h>
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

#define TEMP_ALPHABET "abcdefghijklmnopqrstuvwxyz0123456789"

/* The directory holding path ("." when it has no slash), for the fsync
 * that makes a rename durable. */
static char *parent_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return sg_io_copy_string(".");
  size_t n = slash == path ? 1 : (size_t)(slash - path);
  char *d = sg_malloc(n + 1);
  if (d) memcpy(d, path, n), d[n] = '\0';
  return d;
}

/* Whether name is "<base>.tmpXXXXXX" with the suffix open_temp_beside makes. */
static bool is_temp_of(const char *name, const char *base) {
  size_t n = strlen(base);
  if (strncmp(name, base, n) != 0 || strncmp(name + n, ".tmp", 4) != 0) return false;
  const char *suffix = name + n + 4;
  return strlen(suffix) == 6 && strspn(suffix, TEMP_ALPHABET) == 6;
}

/* Removes the temporary file at tmp if no writer holds it: every writer
 * keeps an exclusive lock on its temporary file until the rename (the
 * kernel drops it when the process dies), so an unlocked one was left by a
 * writer that was killed or crashed. */
static void remove_if_abandoned(const char *tmp) {
  int fd = open(tmp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  struct stat held, named;
  if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &held) == 0 && lstat(tmp, &named) == 0 &&
      S_ISREG(held.st_mode) && held.st_dev == named.st_dev && held.st_ino == named.st_ino)
    unlink(tmp);
  close(fd);
}

/* Cleans up after writers of path that were killed between creating their
 * temporary file and the rename (SIGKILL, a crash, a power cut). */
static void remove_stale_temps(const char *path) {
  char *dir = parent_dir(path);
  const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
  DIR *d = dir ? opendir(dir) : NULL;
  for (struct dirent *e; d && (e = readdir(d));) {
    if (!is_temp_of(e->d_name, base)) continue;
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s/%s", dir, e->d_name) < (int)sizeof tmp)
      remove_if_abandoned(tmp);
  }
  if (d) closedir(d);
  sg_mfree(dir);
}

/* Like mkstemp, but created with mode 0666 so the umask applies as it would
 * to a file opened normally (mkstemp would force 0600). */
static int open_temp_beside(atomic_file *af, sg_io_error *err) {
  static _Atomic uint64_t counter;
  static const char alphabet[] = TEMP_ALPHABET;
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
    if (af->fd >= 0) return (void)flock(af->fd, LOCK_EX | LOCK_NB), 0; /* see remove_stale_temps */
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
  remove_stale_temps(path);
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

int sg_io_sync_dir_of(const char *path, sg_io_error *err) {
  char *dir = parent_dir(path);
  if (!dir) return sg_io_fail_oom(err, path);
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int rc = 0;
  /* Some file systems cannot sync a directory (EINVAL): nothing more to do there. */
  if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL))
    rc = sg_io_fail(err, "%s: written, but syncing its directory %s failed: %s", path, dir,
                    strerror(errno));
  if (fd >= 0) close(fd);
  sg_mfree(dir);
  return rc;
}

/* Test-only: SG_IO_TEST_RENAME_DELAY_MS=N makes every commit wait N ms
 * between the complete temporary file and the rename, so that
 * tests/kill_resume_test.sh can kill a writer inside that window. Unset
 * (the default) it costs one getenv per file written. */
static void test_delay_before_rename(void) {
  const char *ms = getenv("SG_IO_TEST_RENAME_DELAY_MS");
  long n = ms ? strtol(ms, NULL, 10) : 0;
  if (n <= 0) return;
  struct timespec ts = {n / 1000, n % 1000 * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* The data reaches the disk before the rename and the rename before we
 * return, so that after a crash or power cut the name holds either the
 * old file or the whole new one, never an empty or partial one. */
int sg_io_atomic_commit(atomic_file *af, sg_io_error *err) {
  int rc = 0;
  int lock_fd = dup(af->fd); /* keeps the temporary file locked until the rename */
  if (fsync(af->fd) != 0) rc = sg_io_fail(err, "%s: fsync failed: %s", af->path, strerror(errno));
  if (close(af->fd) != 0 && rc == 0)
    rc = sg_io_fail(err, "%s: close failed: %s", af->path, strerror(errno));
  af->fd = -1;
  if (rc == 0) test_delay_before_rename();
  if (rc == 0 && rename(af->tmp_path, af->path) != 0)
    rc = sg_io_fail(err, "%s: cannot move the temporary file into place: %s", af->path,
                    strerror(errno));
  if (rc != 0)
    unlink(af->tmp_path);
  else
    rc = sg_io_sync_dir_of(af->path, err);
  if (lock_fd >= 0) close(lock_fd);
  atomic_release(af);
  return rc;
}

int sg_io_write_file_atomic(const char *path, int (*write)(FILE *f, void *user), void *user,
                            sg_io_error *err) {
  atomic_file af;
  if (sg_io_atomic_create(&af, path, err)) return -1;
  FILE *f = fdopen(af.fd, "w");
  if (!f) {
    sg_io_atomic_discard(&af);
    return sg_io_fail_oom(err, path);
  }
  errno = 0;
  bool wrote = write(f, user) == 0 && fflush(f) == 0 && !ferror(f);
  int saved = errno;
  af.fd = dup(fileno(f)); /* the commit's, after fclose closes the stream's */
  if (fclose(f) != 0 && wrote) wrote = false, saved = errno;
  if (wrote && af.fd >= 0) return sg_io_atomic_commit(&af, err);
  sg_io_atomic_discard(&af);
  return sg_io_fail(err, "%s: cannot write: %s", path, saved ? strerror(saved) : "write failed");
}
