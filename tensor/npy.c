/* .npy and .npz reading and writing.
 *
 * Formats: NumPy's .npy format (magic, version, a Python-dict header, raw
 * row-major data) and .npz, a zip archive of "name.npy" members, stored or
 * raw-deflated, as numpy.savez / numpy.savez_compressed write them.
 *
 * Data is streamed: a .npy file or an archive member is read through a byte
 * source (which may inflate and checksum on the way) straight into the
 * array's buffer, and written through a byte sink (which may deflate and
 * checksum) straight from the caller's buffer, so no second copy of the data
 * is ever held. Files are accessed through plain file descriptors, so every
 * buffer this file uses comes from sg_malloc (zlib's included).
 *
 * Every length read from a file is checked against the bytes that are
 * actually there before it is used. */
#include "sg_tensor.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ZLIB_CONST
#include <zlib.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c copies array payloads as they are and so assumes a little-endian host"
#endif

enum {
  IO_CHUNK = 1 << 16,       /* compressed-data buffer size */
  SYSCALL_MAX = 1 << 30,    /* largest single read/write/zlib call */
  NPY_MAX_HEADER = 1 << 20, /* larger headers are refused as implausible */
  NPY_HEADER_CAP = 512,     /* room for a header we write (at most ~256 bytes) */
  NPY_ALIGN = 64,           /* numpy pads the header so data starts 64-aligned */
  NPY_UNSUPPORTED = 1,      /* well-formed, but a dtype/layout we do not load */
  WHAT_CAP = 400,           /* "path: member 'name.npy'" message prefix */
};

/* ---- errors ------------------------------------------------------------ */

static void vfail(sg_io_error *err, const char *fmt, va_list ap) {
  if (err) vsnprintf(err->msg, sizeof err->msg, fmt, ap);
}

/* Fills err (if any) and returns -1. */
__attribute__((format(printf, 2, 3))) static int fail(sg_io_error *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(err, fmt, ap);
  va_end(ap);
  return -1;
}

/* Fills err (if any) and returns NULL. */
__attribute__((format(printf, 2, 3))) static void *fail_null(sg_io_error *err, const char *fmt,
                                                             ...) {
  va_list ap;
  va_start(ap, fmt);
  vfail(err, fmt, ap);
  va_end(ap);
  return NULL;
}

static int fail_oom(sg_io_error *err, const char *what) {
  return fail(err, "%s: out of memory", what);
}

static char *copy_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *c = sg_malloc(n);
  if (c) memcpy(c, s, n);
  return c;
}

/* ---- little-endian fields ---------------------------------------------- */

static uint16_t get_u16(const uint8_t *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) {
  return get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static uint8_t *put_u16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  return p + 2;
}
static uint8_t *put_u32(uint8_t *p, uint32_t v) {
  put_u16(p, v & 0xFFFF);
  put_u16(p + 2, v >> 16);
  return p + 4;
}

/* ---- dtypes ------------------------------------------------------------ */

typedef struct npy_dtype {
  const char *descr; /* as numpy writes it in the header */
  sg_npy_type type;  /* how the values are held in memory */
  int file_size;     /* bytes per element in the file */
  bool is_signed;
} npy_dtype;

/* The first six are indexed by sg_npy_type and are what we write; the rest
 * are read only and widened losslessly to a type above. */
static const npy_dtype npy_dtypes[] = {
    {"<f4", SG_NPY_F32, 4, true},  {"<f8", SG_NPY_F64, 8, true}, {"<i4", SG_NPY_I32, 4, true},
    {"<i8", SG_NPY_I64, 8, true},  {"|u1", SG_NPY_U8, 1, false}, {"|b1", SG_NPY_BOOL, 1, false},
    {"|i1", SG_NPY_I32, 1, true},  {"<i2", SG_NPY_I32, 2, true}, {"<u2", SG_NPY_I32, 2, false},
    {"<u4", SG_NPY_I64, 4, false},
};

static bool valid_type(sg_npy_type t) {
  return (unsigned)t <= (unsigned)SG_NPY_BOOL;
}

static size_t type_size(sg_npy_type t) {
  static const size_t sizes[] = {4, 8, 4, 8, 1, 1};
  return sizes[t];
}

static const npy_dtype *find_dtype(const char *descr) {
  for (size_t i = 0; i < sizeof npy_dtypes / sizeof npy_dtypes[0]; i++)
    if (strcmp(npy_dtypes[i].descr, descr) == 0) return &npy_dtypes[i];
  return NULL;
}

/* ---- file descriptors -------------------------------------------------- */

static int read_exact_at(int fd, void *buf, size_t n, uint64_t pos, const char *what,
                         sg_io_error *err) {
  uint8_t *p = buf;
  while (n > 0) {
    ssize_t got = pread(fd, p, n < SYSCALL_MAX ? n : SYSCALL_MAX, (off_t)pos);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return fail(err, "%s: read failed: %s", what, strerror(errno));
    if (got == 0) return fail(err, "%s: file ended early (was it changed while reading?)", what);
    p += got, pos += (uint64_t)got, n -= (size_t)got;
  }
  return 0;
}

static int write_all(int fd, const void *buf, size_t n, const char *what, sg_io_error *err) {
  const uint8_t *p = buf;
  while (n > 0) {
    ssize_t put = write(fd, p, n < SYSCALL_MAX ? n : SYSCALL_MAX);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) return fail(err, "%s: write failed: %s", what, strerror(errno));
    p += put, n -= (size_t)put;
  }
  return 0;
}

static int open_input(const char *path, int *fd, uint64_t *size, sg_io_error *err) {
  if (!path) return fail(err, "(null): no file name given");
  *fd = open(path, O_RDONLY | O_CLOEXEC);
  if (*fd < 0) return fail(err, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(*fd);
    return fail(err, "%s: not a regular file", path);
  }
  *size = (uint64_t)st.st_size;
  return 0;
}

static uint32_t crc_update(uint32_t crc, const void *data, size_t n) {
  const uint8_t *p = data;
  while (n > 0) {
    uInt k = n < SYSCALL_MAX ? (uInt)n : SYSCALL_MAX;
    crc = (uint32_t)crc32(crc, p, k);
    p += k, n -= k;
  }
  return crc;
}

/* zlib allocates through the library's hooks like everything else. */
static voidpf zlib_alloc(voidpf opaque, uInt items, uInt size) {
  (void)opaque;
  if (size && items > SIZE_MAX / size) return Z_NULL;
  return sg_malloc((size_t)items * size);
}
static void zlib_free(voidpf opaque, voidpf p) {
  (void)opaque;
  sg_mfree(p);
}

/* ---- atomic output files ------------------------------------------------ */

/* Output goes to "<path>.tmpXXXXXX" beside the target and is renamed over it
 * only once fully written and synced, so readers never see a partial file
 * and a failed write leaves any previous file untouched. */
typedef struct atomic_file {
  int fd;
  char *path;
  char *tmp_path;
} atomic_file;

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
  if (!af->tmp_path) return fail_oom(err, af->path);
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
  return fail(err, "%s: cannot create a temporary file beside it: %s", af->path,
              strerror(open_errno));
}

static int atomic_create(atomic_file *af, const char *path, sg_io_error *err) {
  af->fd = -1;
  af->tmp_path = NULL;
  if (!path) return fail(err, "(null): no file name given");
  af->path = copy_string(path);
  if (!af->path) return fail_oom(err, path);
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

static void atomic_discard(atomic_file *af) {
  if (af->fd >= 0) close(af->fd);
  af->fd = -1;
  if (af->tmp_path) unlink(af->tmp_path);
  atomic_release(af);
}

static int atomic_commit(atomic_file *af, sg_io_error *err) {
  int rc = 0;
  if (fsync(af->fd) != 0) rc = fail(err, "%s: fsync failed: %s", af->path, strerror(errno));
  if (close(af->fd) != 0 && rc == 0)
    rc = fail(err, "%s: close failed: %s", af->path, strerror(errno));
  af->fd = -1;
  if (rc == 0 && rename(af->tmp_path, af->path) != 0)
    rc = fail(err, "%s: cannot move the temporary file into place: %s", af->path, strerror(errno));
  if (rc != 0) unlink(af->tmp_path);
  atomic_release(af);
  return rc;
}

/* ---- byte sink: plain or deflating, with a running CRC-32 -------------- */

typedef struct byte_sink {
  int fd;
  const char *what;
  bool deflating;
  z_stream zs;
  uint8_t *zbuf;    /* deflate output, IO_CHUNK bytes */
  uint32_t crc;     /* of the bytes given to the sink */
  uint64_t taken;   /* bytes given to the sink */
  uint64_t written; /* bytes written to fd */
} byte_sink;

static int sink_open(byte_sink *s, int fd, bool deflating, const char *what, sg_io_error *err) {
  memset(s, 0, sizeof *s);
  s->fd = fd;
  s->what = what;
  if (!deflating) return 0;
  s->zs.zalloc = zlib_alloc;
  s->zs.zfree = zlib_free;
  s->zbuf = sg_malloc(IO_CHUNK);
  /* windowBits -15: a raw deflate stream, as zip stores it */
  if (!s->zbuf ||
      deflateInit2(&s->zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    sg_mfree(s->zbuf);
    return fail_oom(err, what);
  }
  s->deflating = true;
  return 0;
}

static void sink_close(byte_sink *s) {
  if (!s->deflating) return;
  deflateEnd(&s->zs);
  sg_mfree(s->zbuf);
  s->deflating = false;
}

/* Runs deflate until it wants more input (or, with Z_FINISH, has ended). */
static int sink_deflate(byte_sink *s, int flush, sg_io_error *err) {
  int ret;
  do {
    s->zs.next_out = s->zbuf;
    s->zs.avail_out = IO_CHUNK;
    ret = deflate(&s->zs, flush);
    if (ret == Z_STREAM_ERROR) return fail(err, "%s: deflate failed", s->what);
    size_t have = IO_CHUNK - s->zs.avail_out;
    if (write_all(s->fd, s->zbuf, have, s->what, err)) return -1;
    s->written += have;
  } while (s->zs.avail_out == 0);
  if (flush == Z_FINISH && ret != Z_STREAM_END) return fail(err, "%s: deflate failed", s->what);
  return 0;
}

static int sink_write(byte_sink *s, const void *data, size_t n, sg_io_error *err) {
  s->crc = crc_update(s->crc, data, n);
  s->taken += n;
  if (!s->deflating) {
    s->written += n;
    return write_all(s->fd, data, n, s->what, err);
  }
  const uint8_t *p = data;
  while (n > 0) {
    uInt k = n < SYSCALL_MAX ? (uInt)n : SYSCALL_MAX;
    s->zs.next_in = p;
    s->zs.avail_in = k;
    if (sink_deflate(s, Z_NO_FLUSH, err)) return -1;
    p += k, n -= k;
  }
  return 0;
}

static int sink_finish(byte_sink *s, sg_io_error *err) {
  return s->deflating ? sink_deflate(s, Z_FINISH, err) : 0;
}

/* ---- byte source: plain or inflating, with a running CRC-32 ------------ */

typedef struct byte_source {
  int fd;
  uint64_t pos;      /* next file offset to read */
  uint64_t raw_left; /* file bytes still belonging to this source */
  uint64_t out_left; /* bytes still to deliver */
  bool inflating;
  bool stream_ended;
  z_stream zs;
  uint8_t *inbuf; /* compressed input, IO_CHUNK bytes */
  uint32_t crc;   /* of the bytes delivered */
} byte_source;

static void source_plain(byte_source *s, int fd, uint64_t size) {
  memset(s, 0, sizeof *s);
  s->fd = fd;
  s->raw_left = s->out_left = size;
}

static int source_inflating(byte_source *s, int fd, uint64_t pos, uint64_t compressed,
                            uint64_t size, const char *what, sg_io_error *err) {
  source_plain(s, fd, size);
  s->pos = pos;
  s->raw_left = compressed;
  s->zs.zalloc = zlib_alloc;
  s->zs.zfree = zlib_free;
  s->inbuf = sg_malloc(IO_CHUNK);
  if (!s->inbuf || inflateInit2(&s->zs, -15) != Z_OK) {
    sg_mfree(s->inbuf);
    return fail_oom(err, what);
  }
  s->inflating = true;
  return 0;
}

static void source_close(byte_source *s) {
  if (!s->inflating) return;
  inflateEnd(&s->zs);
  sg_mfree(s->inbuf);
  s->inflating = false;
}

static int inflate_error(byte_source *s, int ret, const char *what, sg_io_error *err) {
  if (ret == Z_MEM_ERROR) return fail_oom(err, what);
  if (ret == Z_BUF_ERROR && s->zs.avail_in == 0 && s->raw_left == 0)
    return fail(err, "%s: compressed data is truncated", what);
  return fail(err, "%s: corrupt compressed data (%s)", what, s->zs.msg ? s->zs.msg : "inflate");
}

/* One inflate call into zs.next_out, refilling the input first if needed. */
static int inflate_step(byte_source *s, const char *what, sg_io_error *err) {
  if (s->zs.avail_in == 0 && s->raw_left > 0) {
    size_t k = s->raw_left < IO_CHUNK ? (size_t)s->raw_left : IO_CHUNK;
    if (read_exact_at(s->fd, s->inbuf, k, s->pos, what, err)) return -1;
    s->pos += k, s->raw_left -= k;
    s->zs.next_in = s->inbuf;
    s->zs.avail_in = (uInt)k;
  }
  int ret = inflate(&s->zs, Z_NO_FLUSH);
  if (ret == Z_STREAM_END)
    s->stream_ended = true;
  else if (ret != Z_OK)
    return inflate_error(s, ret, what, err);
  return 0;
}

static int source_inflate(byte_source *s, uint8_t *dst, size_t n, const char *what,
                          sg_io_error *err) {
  while (n > 0) {
    uInt k = n < SYSCALL_MAX ? (uInt)n : SYSCALL_MAX;
    s->zs.next_out = dst;
    s->zs.avail_out = k;
    while (s->zs.avail_out > 0) {
      if (s->stream_ended) return fail(err, "%s: compressed data ends before its size", what);
      if (inflate_step(s, what, err)) return -1;
    }
    dst += k, n -= k;
  }
  return 0;
}

static int source_read(byte_source *s, void *dst, size_t n, const char *what, sg_io_error *err) {
  if (n > s->out_left) return fail(err, "%s: data is truncated", what);
  if (s->inflating) {
    if (source_inflate(s, dst, n, what, err)) return -1;
  } else {
    if (read_exact_at(s->fd, dst, n, s->pos, what, err)) return -1;
    s->pos += n, s->raw_left -= n;
  }
  s->crc = crc_update(s->crc, dst, n);
  s->out_left -= n;
  return 0;
}

/* Reads and discards the rest (to checksum a member we do not load). */
static int source_skip_rest(byte_source *s, const char *what, sg_io_error *err) {
  uint8_t scratch[4096];
  while (s->out_left > 0) {
    size_t k = s->out_left < sizeof scratch ? (size_t)s->out_left : sizeof scratch;
    if (source_read(s, scratch, k, what, err)) return -1;
  }
  return 0;
}

/* After all declared bytes were delivered: the deflate stream must end
 * exactly there and use exactly the declared compressed bytes. */
static int source_finish(byte_source *s, const char *what, sg_io_error *err) {
  if (!s->inflating) return 0;
  uint8_t extra;
  while (!s->stream_ended) {
    s->zs.next_out = &extra;
    s->zs.avail_out = 1;
    if (inflate_step(s, what, err)) return -1;
    if (s->zs.avail_out == 0) return fail(err, "%s: holds more data than its size", what);
  }
  if (s->zs.avail_in != 0 || s->raw_left != 0)
    return fail(err, "%s: compressed size does not match the compressed data", what);
  return 0;
}

/* ---- .npy header: parsing ---------------------------------------------- */

/* The header is a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * parsed here by a small recursive-descent reader of exactly that subset. */
typedef struct cursor {
  const char *p, *end;
} cursor;

typedef struct header_fields {
  char descr[64];
  bool structured; /* descr was a list: a record dtype, parsing stopped there */
  bool fortran_order;
  int ndim; /* may exceed SG_MAX_DIMS; only the first SG_MAX_DIMS sizes are kept */
  int64_t shape[SG_MAX_DIMS];
  bool seen_descr, seen_order, seen_shape;
} header_fields;

static void skip_space(cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static bool accept(cursor *c, char ch) {
  skip_space(c);
  if (c->p == c->end || *c->p != ch) return false;
  c->p++;
  return true;
}

static bool is_identifier_char(char ch) {
  return ch == '_' || (ch >= '0' && ch <= '9') || ((ch | 32) >= 'a' && (ch | 32) <= 'z');
}

static bool accept_word(cursor *c, const char *word) {
  skip_space(c);
  size_t n = strlen(word);
  if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return false;
  if ((size_t)(c->end - c->p) > n && is_identifier_char(c->p[n]))
    return false; /* "Truer" is not "True" */
  c->p += n;
  return true;
}

/* A quoted string without escapes (dtype strings and keys never need any). */
static bool parse_string(cursor *c, char *out, size_t cap) {
  skip_space(c);
  if (c->p == c->end || (*c->p != '\'' && *c->p != '"')) return false;
  char quote = *c->p++;
  size_t n = 0;
  for (; c->p < c->end && *c->p != quote; c->p++) {
    if (*c->p == '\\' || *c->p == '\n' || n + 1 >= cap) return false;
    out[n++] = *c->p;
  }
  if (c->p == c->end) return false;
  c->p++;
  out[n] = '\0';
  return true;
}

/* A non-negative integer, with Python 2's optional 'L' suffix. */
static bool parse_dim(cursor *c, int64_t *out) {
  skip_space(c);
  if (c->p == c->end || *c->p < '0' || *c->p > '9') return false;
  int64_t v = 0;
  for (; c->p < c->end && *c->p >= '0' && *c->p <= '9'; c->p++) {
    int digit = *c->p - '0';
    if (v > (INT64_MAX - digit) / 10) return false;
    v = v * 10 + digit;
  }
  if (c->p < c->end && *c->p == 'L') c->p++;
  *out = v;
  return true;
}

static const char *parse_shape(cursor *c, header_fields *f) {
  if (!accept(c, '(')) return "'shape' is not a tuple";
  bool trailing_comma = false;
  f->ndim = 0;
  while (!accept(c, ')')) {
    int64_t dim;
    if (!parse_dim(c, &dim)) return "'shape' holds something other than a non-negative integer";
    if (f->ndim < SG_MAX_DIMS) f->shape[f->ndim] = dim;
    f->ndim++; /* bounded by the header length */
    trailing_comma = accept(c, ',');
    if (!trailing_comma) {
      if (!accept(c, ')')) return "expected ',' or ')' in 'shape'";
      break;
    }
  }
  if (f->ndim == 1 && !trailing_comma) return "'shape' is (n), not the tuple (n,)";
  return NULL;
}

static const char *parse_value(cursor *c, const char *key, header_fields *f) {
  if (strcmp(key, "descr") == 0) {
    if (f->seen_descr) return "duplicate key 'descr'";
    f->seen_descr = true;
    skip_space(c);
    if (c->p < c->end && *c->p == '[') {
      f->structured = true;
      return NULL;
    }
    return parse_string(c, f->descr, sizeof f->descr) ? NULL : "'descr' is not a dtype string";
  }
  if (strcmp(key, "fortran_order") == 0) {
    if (f->seen_order) return "duplicate key 'fortran_order'";
    f->seen_order = true;
    if (accept_word(c, "True"))
      f->fortran_order = true;
    else if (!accept_word(c, "False"))
      return "'fortran_order' is not True or False";
    return NULL;
  }
  if (strcmp(key, "shape") == 0) {
    if (f->seen_shape) return "duplicate key 'shape'";
    f->seen_shape = true;
    return parse_shape(c, f);
  }
  return "unexpected key (only 'descr', 'fortran_order' and 'shape' are allowed)";
}

/* Returns NULL on success, else what is wrong. */
static const char *parse_dict(cursor *c, header_fields *f) {
  if (!accept(c, '{')) return "expected '{'";
  while (!accept(c, '}')) {
    char key[32];
    if (!parse_string(c, key, sizeof key)) return "expected a quoted key";
    if (!accept(c, ':')) return "expected ':' after a key";
    const char *problem = parse_value(c, key, f);
    if (problem || f->structured) return problem;
    if (!accept(c, ',')) {
      if (!accept(c, '}')) return "expected ',' or '}'";
      break;
    }
  }
  skip_space(c);
  if (c->p != c->end) return "unexpected text after '}'";
  if (!f->seen_descr || !f->seen_order || !f->seen_shape)
    return "it lacks one of 'descr', 'fortran_order' and 'shape'";
  return NULL;
}

/* ---- .npy header: meaning ---------------------------------------------- */

typedef struct npy_header {
  const npy_dtype *dtype;
  int ndim;
  int64_t shape[SG_MAX_DIMS];
  int64_t numel;
} npy_header;

static int unsupported_dtype(const char *descr, const char *what, sg_io_error *err) {
  if (descr[0] == '>')
    fail(err, "%s: unsupported dtype '%s' (big-endian; only little-endian is read)", what, descr);
  else if (strcmp(descr, "|O") == 0)
    fail(err, "%s: unsupported dtype '|O' (object arrays are not supported)", what);
  else
    fail(err, "%s: unsupported dtype '%s'", what, descr);
  return NPY_UNSUPPORTED;
}

/* Element count with overflow detection; a zero size anywhere gives 0. */
static bool count_elements(int ndim, const int64_t *shape, int64_t *numel) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] == 0) {
      *numel = 0;
      return true;
    }
  }
  for (int i = 0; i < ndim; i++) {
    if (n > INT64_MAX / shape[i]) return false;
    n *= shape[i];
  }
  *numel = n;
  return true;
}

static int interpret_fields(const header_fields *f, npy_header *h, const char *what,
                            sg_io_error *err) {
  if (f->structured) {
    fail(err, "%s: unsupported dtype (structured/record dtypes are not supported)", what);
    return NPY_UNSUPPORTED;
  }
  h->dtype = find_dtype(f->descr);
  if (!h->dtype) return unsupported_dtype(f->descr, what, err);
  if (f->fortran_order) {
    fail(err, "%s: fortran_order is True; only C-order (row-major) arrays are supported", what);
    return NPY_UNSUPPORTED;
  }
  if (f->ndim > SG_MAX_DIMS) {
    fail(err, "%s: %d dimensions; at most %d are supported", what, f->ndim, SG_MAX_DIMS);
    return NPY_UNSUPPORTED;
  }
  h->ndim = f->ndim;
  memcpy(h->shape, f->shape, sizeof h->shape);
  if (!count_elements(h->ndim, h->shape, &h->numel))
    return fail(err, "%s: malformed .npy header (the shape's size overflows)", what);
  return 0;
}

/* The data must fill exactly what is left of the file or member. */
static int check_data_size(const byte_source *s, const npy_header *h, const char *what,
                           sg_io_error *err) {
  uint64_t need = (uint64_t)h->numel, size = (uint64_t)h->dtype->file_size;
  unsigned long long left = s->out_left;
  if (need > UINT64_MAX / size || need * size > left)
    return fail(err, "%s: data is truncated (the shape needs more than the %llu bytes present)",
                what, left);
  if (need * size < left)
    return fail(err, "%s: %llu unexpected bytes after the array data", what,
                left - (unsigned long long)(need * size));
  return 0;
}

static int parse_header_text(const char *text, size_t len, npy_header *h, const char *what,
                             sg_io_error *err) {
  header_fields f;
  memset(&f, 0, sizeof f);
  cursor c = {text, text + len};
  const char *problem = parse_dict(&c, &f);
  if (problem) return fail(err, "%s: malformed .npy header (%s)", what, problem);
  return interpret_fields(&f, h, what, err);
}

/* Returns 0, -1 (bad or unreadable) or NPY_UNSUPPORTED, with err filled. */
static int read_npy_header(byte_source *s, const char *what, npy_header *h, sg_io_error *err) {
  uint8_t pre[12];
  if (s->out_left < 10)
    return fail(err, "%s: too short to be a .npy file (%llu bytes)", what,
                (unsigned long long)s->out_left);
  if (source_read(s, pre, 8, what, err)) return -1;
  if (memcmp(pre, "\x93NUMPY", 6) != 0) return fail(err, "%s: not a .npy file (bad magic)", what);
  int major = pre[6], minor = pre[7];
  if (major < 1 || major > 3 || minor != 0)
    return fail(err, "%s: unsupported .npy format version %d.%d", what, major, minor);
  /* version 1 has a 2-byte header length, versions 2 and 3 a 4-byte one */
  if (source_read(s, pre + 8, major == 1 ? 2 : 4, what, err)) return -1;
  uint32_t len = major == 1 ? get_u16(pre + 8) : get_u32(pre + 8);
  if (len > s->out_left)
    return fail(err, "%s: truncated (header length %u, but only %llu bytes follow)", what,
                (unsigned)len, (unsigned long long)s->out_left);
  if (len > NPY_MAX_HEADER)
    return fail(err, "%s: header length %u is implausibly large", what, (unsigned)len);
  char *text = sg_malloc(len + 1);
  if (!text) return fail_oom(err, what);
  int rc = source_read(s, text, len, what, err);
  if (rc == 0) rc = parse_header_text(text, len, h, what, err);
  sg_mfree(text);
  return rc == 0 ? check_data_size(s, h, what, err) : rc;
}

/* ---- .npy data ---------------------------------------------------------- */

static int64_t decode_integer(const npy_dtype *d, const uint8_t *p) {
  switch (d->file_size) {
  case 1:
    return d->is_signed ? (int64_t)(int8_t)p[0] : (int64_t)p[0];
  case 2:
    return d->is_signed ? (int64_t)(int16_t)get_u16(p) : (int64_t)get_u16(p);
  default:
    return d->is_signed ? (int64_t)(int32_t)get_u32(p) : (int64_t)get_u32(p);
  }
}

/* A narrower integer type in the file is widened chunk by chunk. */
static int read_widened(byte_source *s, const npy_header *h, void *dst, const char *what,
                        sg_io_error *err) {
  const npy_dtype *d = h->dtype;
  uint8_t chunk[4096];
  size_t per_chunk = sizeof chunk / (size_t)d->file_size, count = (size_t)h->numel;
  for (size_t done = 0; done < count;) {
    size_t k = count - done < per_chunk ? count - done : per_chunk;
    if (source_read(s, chunk, k * (size_t)d->file_size, what, err)) return -1;
    for (size_t i = 0; i < k; i++) {
      int64_t v = decode_integer(d, chunk + i * (size_t)d->file_size);
      if (d->type == SG_NPY_I32)
        ((int32_t *)dst)[done + i] = (int32_t)v;
      else
        ((int64_t *)dst)[done + i] = v;
    }
    done += k;
  }
  return 0;
}

static int read_npy_payload(byte_source *s, const npy_header *h, void *dst, const char *what,
                            sg_io_error *err) {
  const npy_dtype *d = h->dtype;
  if ((size_t)d->file_size != type_size(d->type)) return read_widened(s, h, dst, what, err);
  size_t count = (size_t)h->numel;
  if (source_read(s, dst, count * (size_t)d->file_size, what, err)) return -1;
  if (d->type == SG_NPY_BOOL)
    for (size_t i = 0; i < count; i++) ((uint8_t *)dst)[i] = ((uint8_t *)dst)[i] != 0;
  return 0;
}

/* Returns 0, -1 or NPY_UNSUPPORTED; out is untouched unless 0. */
static int read_npy_array(byte_source *s, const char *what, sg_array *out, sg_io_error *err) {
  npy_header h;
  int rc = read_npy_header(s, what, &h, err);
  if (rc != 0) return rc;
  /* numel <= bytes present, so this product cannot overflow */
  void *data = sg_malloc((size_t)h.numel * type_size(h.dtype->type));
  if (!data) return fail_oom(err, what);
  if (read_npy_payload(s, &h, data, what, err)) {
    sg_mfree(data);
    return -1;
  }
  out->type = h.dtype->type;
  out->ndim = h.ndim;
  memset(out->shape, 0, sizeof out->shape);
  memcpy(out->shape, h.shape, sizeof h.shape);
  out->numel = h.numel;
  out->data = data;
  return 0;
}

/* ---- .npy writing ------------------------------------------------------- */

static size_t round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}

/* Fills buf with magic, version, header length and the padded header,
 * byte-for-byte as numpy.save writes them; returns the length. */
static size_t format_npy_header(uint8_t *buf, const char *descr, int ndim, const int64_t *shape) {
  char dict[320];
  int len =
      snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
  for (int i = 0; i < ndim; i++)
    len +=
        snprintf(dict + len, sizeof dict - (size_t)len, i ? ", %lld" : "%lld", (long long)shape[i]);
  len += snprintf(dict + len, sizeof dict - (size_t)len, ndim == 1 ? ",), }" : "), }");
  size_t prefix = 10, total = round_up(prefix + (size_t)len + 1, NPY_ALIGN);
  if (total - prefix > 0xFFFF) { /* needs format 2.0; cannot happen with SG_MAX_DIMS dims */
    prefix = 12;
    total = round_up(prefix + (size_t)len + 1, NPY_ALIGN);
  }
  memcpy(buf, "\x93NUMPY", 6);
  buf[6] = prefix == 10 ? 1 : 2;
  buf[7] = 0;
  if (prefix == 10)
    put_u16(buf + 8, (uint32_t)(total - prefix));
  else
    put_u32(buf + 8, (uint32_t)(total - prefix));
  memcpy(buf + prefix, dict, (size_t)len);
  memset(buf + prefix + len, ' ', total - prefix - (size_t)len - 1);
  buf[total - 1] = '\n';
  return total;
}

/* Bools are written as 0/1 bytes whatever nonzero value the caller used. */
static int write_bools(byte_sink *s, const uint8_t *data, size_t n, sg_io_error *err) {
  uint8_t chunk[4096];
  for (size_t done = 0; done < n;) {
    size_t k = n - done < sizeof chunk ? n - done : sizeof chunk;
    for (size_t i = 0; i < k; i++) chunk[i] = data[done + i] != 0;
    if (sink_write(s, chunk, k, err)) return -1;
    done += k;
  }
  return 0;
}

/* An array as the writers see it: validated by check_layout first. */
typedef struct array_view {
  sg_npy_type type;
  int ndim;
  const int64_t *shape;
  int64_t numel;
  const void *data;
} array_view;

static int check_layout(const array_view *v, const char *what, sg_io_error *err) {
  if (!valid_type(v->type)) return fail(err, "%s: invalid array type %d", what, (int)v->type);
  if (v->ndim < 0 || v->ndim > SG_MAX_DIMS)
    return fail(err, "%s: %d dimensions; at most %d are supported", what, v->ndim, SG_MAX_DIMS);
  int64_t numel;
  for (int i = 0; i < v->ndim; i++)
    if (v->shape[i] < 0) return fail(err, "%s: negative size in the shape", what);
  if (!count_elements(v->ndim, v->shape, &numel) || numel != v->numel)
    return fail(err, "%s: numel %lld does not match the shape", what, (long long)v->numel);
  if ((uint64_t)numel > SIZE_MAX / 8) return fail(err, "%s: array is too large", what);
  if (numel > 0 && !v->data) return fail(err, "%s: array has no data", what);
  return 0;
}

static uint64_t npy_file_size(const array_view *v) {
  uint8_t header[NPY_HEADER_CAP];
  return format_npy_header(header, npy_dtypes[v->type].descr, v->ndim, v->shape) +
         (uint64_t)v->numel * type_size(v->type);
}

static int write_npy(byte_sink *s, const array_view *v, sg_io_error *err) {
  uint8_t header[NPY_HEADER_CAP];
  size_t len = format_npy_header(header, npy_dtypes[v->type].descr, v->ndim, v->shape);
  if (sink_write(s, header, len, err)) return -1;
  size_t bytes = (size_t)v->numel * type_size(v->type);
  if (v->type == SG_NPY_BOOL) return write_bools(s, v->data, bytes, err);
  return bytes ? sink_write(s, v->data, bytes, err) : 0;
}

static int tensor_view(const sg_tensor *t, array_view *v, const char *what, sg_io_error *err) {
  if (!t) return fail(err, "%s: tensor is NULL", what);
  if (t->dtype != SG_F32 && t->dtype != SG_F64)
    return fail(err, "%s: invalid tensor dtype %d", what, (int)t->dtype);
  *v = (array_view){t->dtype == SG_F32 ? SG_NPY_F32 : SG_NPY_F64, t->ndim, t->shape, t->numel,
                    t->data};
  return 0;
}

static int array_view_of(const sg_array *a, array_view *v, const char *what, sg_io_error *err) {
  if (!a) return fail(err, "%s: array is NULL", what);
  *v = (array_view){a->type, a->ndim, a->shape, a->numel, a->data};
  return 0;
}

static int save_npy_view(const char *path, const array_view *v, sg_io_error *err) {
  atomic_file af;
  if (check_layout(v, path, err) || atomic_create(&af, path, err)) return -1;
  byte_sink sink;
  sink_open(&sink, af.fd, false, af.path, err); /* a plain sink cannot fail to open */
  if (write_npy(&sink, v, err)) {
    atomic_discard(&af);
    return -1;
  }
  return atomic_commit(&af, err);
}

/* ---- .npy public API ----------------------------------------------------- */

void sg_array_free(sg_array *a) {
  if (!a) return;
  sg_mfree(a->data);
  a->data = NULL;
}

int sg_npy_save(const char *path, const sg_tensor *t, sg_io_error *err) {
  array_view v;
  if (!path) return fail(err, "(null): no file name given");
  return tensor_view(t, &v, path, err) ? -1 : save_npy_view(path, &v, err);
}

int sg_npy_save_array(const char *path, const sg_array *a, sg_io_error *err) {
  array_view v;
  if (!path) return fail(err, "(null): no file name given");
  return array_view_of(a, &v, path, err) ? -1 : save_npy_view(path, &v, err);
}

int sg_npy_load_array(const char *path, sg_array *out, sg_io_error *err) {
  if (!out) return fail(err, "%s: output array is NULL", path ? path : "(null)");
  memset(out, 0, sizeof *out);
  int fd;
  uint64_t size;
  if (open_input(path, &fd, &size, err)) return -1;
  byte_source src;
  source_plain(&src, fd, size);
  int rc = read_npy_array(&src, path, out, err);
  close(fd);
  return rc == 0 ? 0 : -1;
}

static sg_tensor *read_tensor(byte_source *src, const char *path, sg_io_error *err) {
  npy_header h;
  if (read_npy_header(src, path, &h, err) != 0) return NULL;
  sg_npy_type type = h.dtype->type;
  if (type != SG_NPY_F32 && type != SG_NPY_F64) {
    fail(err, "%s: dtype '%s' is not float32/float64 (read it with sg_npy_load_array)", path,
         h.dtype->descr);
    return NULL;
  }
  sg_tensor *t = sg_empty(NULL, type == SG_NPY_F32 ? SG_F32 : SG_F64, h.ndim, h.shape);
  if (!t) {
    fail_oom(err, path);
    return NULL;
  }
  if (read_npy_payload(src, &h, t->data, path, err)) {
    sg_free(t);
    return NULL;
  }
  return t;
}

sg_tensor *sg_npy_load(const char *path, sg_io_error *err) {
  int fd;
  uint64_t size;
  if (open_input(path, &fd, &size, err)) return NULL;
  byte_source src;
  source_plain(&src, fd, size);
  sg_tensor *t = read_tensor(&src, path, err);
  close(fd);
  return t;
}

/* ---- zip records ---------------------------------------------------------- */

enum {
  ZIP_LOCAL_SIG = 0x04034b50,
  ZIP_CENTRAL_SIG = 0x02014b50,
  ZIP_END_SIG = 0x06054b50,
  ZIP64_END_SIG = 0x06064b50,
  ZIP64_LOCATOR_SIG = 0x07064b50,
  ZIP_LOCAL_SIZE = 30,
  ZIP_CENTRAL_SIZE = 46,
  ZIP_END_SIZE = 22,
  ZIP64_LOCATOR_SIZE = 20,
  ZIP64_END_SIZE = 56,
  ZIP_STORED = 0,
  ZIP_DEFLATED = 8,
  ZIP_VERSION = 20, /* 2.0: deflate */
  ZIP_FLAG_ENCRYPTED = 1 << 0,
  ZIP_FLAG_STRONG_ENCRYPTION = 1 << 6,
  ZIP_FLAG_UTF8 = 1 << 11,
  ZIP_DOS_DATE = (1 << 5) | 1, /* 1980-01-01: fixed, so archives are reproducible */
  ZIP_EXTRA_ZIP64 = 1,
};
#define ZIP_MAX32 UINT64_C(0xFFFFFFFF)

/* ---- .npz writing --------------------------------------------------------- */

typedef struct npz_entry {
  char *name; /* with ".npy" */
  uint32_t crc;
  uint64_t size, comp_size, offset;
} npz_entry;

struct sg_npz_writer {
  atomic_file file;
  bool compress;
  bool failed;     /* a member was partly written: the archive can only be discarded */
  uint64_t offset; /* bytes written so far */
  npz_entry *entries;
  int count, cap;
};

static uint32_t name_flags(const char *name) {
  for (const unsigned char *p = (const unsigned char *)name; *p; p++)
    if (*p >= 0x80) return ZIP_FLAG_UTF8;
  return 0;
}

/* The fields local and central headers share, from "version needed" on. */
static uint8_t *put_common_fields(uint8_t *p, const npz_entry *e, int method) {
  p = put_u16(p, ZIP_VERSION);
  p = put_u16(p, name_flags(e->name));
  p = put_u16(p, (uint32_t)method);
  p = put_u16(p, 0); /* time 00:00 */
  p = put_u16(p, ZIP_DOS_DATE);
  p = put_u32(p, e->crc);
  p = put_u32(p, (uint32_t)e->comp_size);
  p = put_u32(p, (uint32_t)e->size);
  p = put_u16(p, (uint32_t)strlen(e->name));
  return put_u16(p, 0); /* no extra field */
}

static int writer_method(const sg_npz_writer *w) {
  return w->compress ? ZIP_DEFLATED : ZIP_STORED;
}

static int write_local_header(sg_npz_writer *w, const npz_entry *e, const char *what,
                              sg_io_error *err) {
  uint8_t h[ZIP_LOCAL_SIZE];
  put_common_fields(put_u32(h, ZIP_LOCAL_SIG), e, writer_method(w));
  size_t name_len = strlen(e->name);
  if (write_all(w->file.fd, h, sizeof h, what, err) ||
      write_all(w->file.fd, e->name, name_len, what, err))
    return -1;
  w->offset += sizeof h + name_len;
  return 0;
}

/* CRC and sizes are known only after the data: patch them into the local
 * header (offset 14) rather than use a trailing data descriptor. */
static int patch_local_header(sg_npz_writer *w, const npz_entry *e, const char *what,
                              sg_io_error *err) {
  uint8_t fields[12];
  put_u32(put_u32(put_u32(fields, e->crc), (uint32_t)e->comp_size), (uint32_t)e->size);
  ssize_t put;
  do put = pwrite(w->file.fd, fields, sizeof fields, (off_t)(e->offset + 14));
  while (put < 0 && errno == EINTR);
  if (put != (ssize_t)sizeof fields)
    return fail(err, "%s: write failed: %s", what, put < 0 ? strerror(errno) : "short write");
  return 0;
}

static int write_member_data(sg_npz_writer *w, npz_entry *e, const array_view *v, const char *what,
                             sg_io_error *err) {
  byte_sink sink;
  if (sink_open(&sink, w->file.fd, w->compress, what, err)) return -1;
  int rc = write_npy(&sink, v, err);
  if (rc == 0) rc = sink_finish(&sink, err);
  e->crc = sink.crc;
  e->size = sink.taken;
  e->comp_size = sink.written;
  sink_close(&sink);
  if (rc == 0 && e->comp_size >= ZIP_MAX32)
    rc = fail(err, "%s: compressed size exceeds 4 GiB (zip64 is not written)", what);
  w->offset += e->comp_size;
  return rc;
}

static int check_member_name(const sg_npz_writer *w, const char *name, const char *path,
                             sg_io_error *err) {
  if (!name) return fail(err, "%s: member name is NULL", path);
  if (strlen(name) > 0xFFFF - 4) return fail(err, "%s: member name is too long", path);
  for (int i = 0; i < w->count; i++) {
    size_t n = strlen(w->entries[i].name) - 4;
    if (strlen(name) == n && memcmp(w->entries[i].name, name, n) == 0)
      return fail(err, "%s: member '%s.npy' was already added", path, name);
  }
  return 0;
}

static int reserve_entry(sg_npz_writer *w, const char *name) {
  if (w->count == w->cap) {
    int cap = w->cap ? 2 * w->cap : 16;
    npz_entry *grown = sg_realloc(w->entries, (size_t)cap * sizeof *grown);
    if (!grown) return -1;
    w->entries = grown;
    w->cap = cap;
  }
  npz_entry *e = &w->entries[w->count];
  memset(e, 0, sizeof *e);
  size_t n = strlen(name);
  e->name = sg_malloc(n + 5);
  if (!e->name) return -1;
  memcpy(e->name, name, n);
  memcpy(e->name + n, ".npy", 5);
  return 0;
}

/* Checks everything that can be checked before writing, so that a refused
 * member leaves the archive usable; only an I/O failure mid-member poisons it. */
static int npz_add(sg_npz_writer *w, const char *name, const array_view *v, sg_io_error *err) {
  if (!w) return fail(err, "sg_npz_add: writer is NULL");
  const char *path = w->file.path;
  if (w->failed)
    return fail(err, "%s: an earlier member failed to write; the archive cannot be completed",
                path);
  if (check_member_name(w, name, path, err)) return -1;
  char what[WHAT_CAP];
  snprintf(what, sizeof what, "%s: member '%s.npy'", path, name);
  if (check_layout(v, what, err)) return -1;
  if (w->count >= 0xFFFF) return fail(err, "%s: too many members (zip64 is not written)", what);
  if (npy_file_size(v) >= ZIP_MAX32 || w->offset >= ZIP_MAX32)
    return fail(err, "%s: archive would exceed 4 GiB (zip64 is not written)", what);
  if (reserve_entry(w, name)) return fail_oom(err, what);
  npz_entry *e = &w->entries[w->count];
  e->offset = w->offset;
  if (write_local_header(w, e, what, err) || write_member_data(w, e, v, what, err) ||
      patch_local_header(w, e, what, err)) {
    sg_mfree(e->name);
    w->failed = true;
    return -1;
  }
  w->count++;
  return 0;
}

static int write_central_directory(sg_npz_writer *w, sg_io_error *err) {
  const char *path = w->file.path;
  uint64_t start = w->offset;
  for (int i = 0; i < w->count; i++) {
    const npz_entry *e = &w->entries[i];
    uint8_t h[ZIP_CENTRAL_SIZE], *p = put_u32(h, ZIP_CENTRAL_SIG);
    p = put_common_fields(put_u16(p, ZIP_VERSION), e, writer_method(w));
    p = put_u16(p, 0); /* comment length */
    p = put_u16(p, 0); /* disk */
    p = put_u16(p, 0); /* internal attributes */
    p = put_u32(p, 0); /* external attributes */
    put_u32(p, (uint32_t)e->offset);
    if (write_all(w->file.fd, h, sizeof h, path, err) ||
        write_all(w->file.fd, e->name, strlen(e->name), path, err))
      return -1;
    w->offset += sizeof h + strlen(e->name);
  }
  if (w->offset >= ZIP_MAX32) return fail(err, "%s: archive exceeds 4 GiB", path);
  uint8_t end[ZIP_END_SIZE], *p = put_u32(end, ZIP_END_SIG);
  p = put_u32(p, 0); /* this disk, disk with the directory */
  p = put_u16(p, (uint32_t)w->count);
  p = put_u16(p, (uint32_t)w->count);
  p = put_u32(p, (uint32_t)(w->offset - start));
  p = put_u32(p, (uint32_t)start);
  put_u16(p, 0); /* comment length */
  return write_all(w->file.fd, end, sizeof end, path, err);
}

static void writer_free(sg_npz_writer *w) {
  for (int i = 0; i < w->count; i++) sg_mfree(w->entries[i].name);
  sg_mfree(w->entries);
  sg_mfree(w);
}

sg_npz_writer *sg_npz_writer_open(const char *path, bool compress, sg_io_error *err) {
  sg_npz_writer *w = sg_malloc(sizeof *w);
  if (!w) {
    fail_oom(err, path ? path : "(null)");
    return NULL;
  }
  memset(w, 0, sizeof *w);
  w->compress = compress;
  if (atomic_create(&w->file, path, err)) {
    sg_mfree(w);
    return NULL;
  }
  return w;
}

int sg_npz_add_tensor(sg_npz_writer *w, const char *name, const sg_tensor *t, sg_io_error *err) {
  array_view v;
  if (!w) return fail(err, "sg_npz_add_tensor: writer is NULL");
  return tensor_view(t, &v, w->file.path, err) ? -1 : npz_add(w, name, &v, err);
}

int sg_npz_add_array(sg_npz_writer *w, const char *name, const sg_array *a, sg_io_error *err) {
  array_view v;
  if (!w) return fail(err, "sg_npz_add_array: writer is NULL");
  return array_view_of(a, &v, w->file.path, err) ? -1 : npz_add(w, name, &v, err);
}

int sg_npz_add_scalar_f64(sg_npz_writer *w, const char *name, double v, sg_io_error *err) {
  array_view view = {SG_NPY_F64, 0, NULL, 1, &v};
  return npz_add(w, name, &view, err);
}

int sg_npz_add_scalar_i64(sg_npz_writer *w, const char *name, int64_t v, sg_io_error *err) {
  array_view view = {SG_NPY_I64, 0, NULL, 1, &v};
  return npz_add(w, name, &view, err);
}

int sg_npz_writer_close(sg_npz_writer *w, sg_io_error *err) {
  if (!w) return fail(err, "sg_npz_writer_close: writer is NULL");
  int rc;
  if (w->failed)
    rc = fail(err, "%s: not written because a member failed to write", w->file.path);
  else
    rc = write_central_directory(w, err);
  if (rc == 0)
    rc = atomic_commit(&w->file, err);
  else
    atomic_discard(&w->file);
  writer_free(w);
  return rc;
}

void sg_npz_writer_abort(sg_npz_writer *w) {
  if (!w) return;
  atomic_discard(&w->file);
  writer_free(w);
}

/* ---- .npz reading: the central directory ------------------------------- */

typedef struct zip_directory {
  uint64_t count, offset, size;
} zip_directory;

static int corrupt(sg_io_error *err, const char *path, const char *problem) {
  return fail(err, "%s: corrupt or unsupported zip archive (%s)", path, problem);
}

/* The end record sits at the very end, after a comment of up to 64 KiB:
 * search backwards for a signature whose comment length reaches the end. */
static int find_end_record(int fd, uint64_t file_size, const char *path, uint64_t *end_pos,
                           uint8_t *record, sg_io_error *err) {
  if (file_size < ZIP_END_SIZE)
    return fail(err, "%s: not an .npz archive (too short for a zip file)", path);
  size_t tail_len = file_size < ZIP_END_SIZE + 0xFFFF ? (size_t)file_size : ZIP_END_SIZE + 0xFFFF;
  uint8_t *tail = sg_malloc(tail_len);
  if (!tail) return fail_oom(err, path);
  if (read_exact_at(fd, tail, tail_len, file_size - tail_len, path, err)) {
    sg_mfree(tail);
    return -1;
  }
  int rc = fail(err, "%s: not an .npz archive (no zip end-of-directory record)", path);
  for (size_t i = tail_len - ZIP_END_SIZE + 1; i-- > 0;) {
    if (get_u32(tail + i) == ZIP_END_SIG && i + ZIP_END_SIZE + get_u16(tail + i + 20) == tail_len) {
      memcpy(record, tail + i, ZIP_END_SIZE);
      *end_pos = file_size - tail_len + i;
      rc = 0;
      break;
    }
  }
  sg_mfree(tail);
  return rc;
}

/* A zip64 end record (used when counts or offsets overflow the 32-bit
 * fields) is found through a locator just before the classic end record.
 * *end_pos moves to its start: the directory must end before it. */
static int read_zip64_end(int fd, uint64_t *end_pos, const char *path, zip_directory *dir,
                          sg_io_error *err) {
  uint8_t loc[ZIP64_LOCATOR_SIZE], rec[ZIP64_END_SIZE];
  if (*end_pos < ZIP64_LOCATOR_SIZE) return corrupt(err, path, "zip64 locator missing");
  if (read_exact_at(fd, loc, sizeof loc, *end_pos - sizeof loc, path, err)) return -1;
  if (get_u32(loc) != ZIP64_LOCATOR_SIG) return corrupt(err, path, "zip64 locator missing");
  uint64_t rec_pos = get_u64(loc + 8);
  if (get_u32(loc + 4) != 0 || rec_pos > *end_pos - sizeof loc ||
      *end_pos - sizeof loc - rec_pos < sizeof rec)
    return corrupt(err, path, "bad zip64 locator");
  if (read_exact_at(fd, rec, sizeof rec, rec_pos, path, err)) return -1;
  if (get_u32(rec) != ZIP64_END_SIG) return corrupt(err, path, "bad zip64 end record");
  if (get_u32(rec + 16) != 0 || get_u32(rec + 20) != 0)
    return corrupt(err, path, "multi-disk archive");
  dir->count = get_u64(rec + 32);
  dir->size = get_u64(rec + 40);
  dir->offset = get_u64(rec + 48);
  *end_pos = rec_pos;
  return 0;
}

static int find_directory(int fd, uint64_t file_size, const char *path, zip_directory *dir,
                          sg_io_error *err) {
  uint8_t end[ZIP_END_SIZE] = {0};
  uint64_t end_pos = 0;
  if (find_end_record(fd, file_size, path, &end_pos, end, err)) return -1;
  uint16_t disk = get_u16(end + 4), dir_disk = get_u16(end + 6);
  dir->count = get_u16(end + 10);
  dir->size = get_u32(end + 12);
  dir->offset = get_u32(end + 16);
  if (dir->count == 0xFFFF || dir->size == ZIP_MAX32 || dir->offset == ZIP_MAX32) {
    if (read_zip64_end(fd, &end_pos, path, dir, err)) return -1;
  } else if (disk != 0 || dir_disk != 0) {
    return corrupt(err, path, "multi-disk archive");
  }
  if (dir->size > end_pos || dir->offset > end_pos - dir->size)
    return corrupt(err, path, "central directory lies outside the file");
  if (dir->count > dir->size / ZIP_CENTRAL_SIZE)
    return corrupt(err, path, "central directory is too small for its entry count");
  return 0;
}

typedef struct central_entry {
  const uint8_t *name;
  size_t name_len;
  uint16_t flags, method;
  uint32_t crc;
  uint64_t comp_size, size, offset;
} central_entry;

/* The zip64 extra field holds, in this order, the 64-bit values of just
 * those fields whose 32-bit slots are 0xFFFFFFFF. */
static int apply_zip64_extra(central_entry *e, const uint8_t *extra, size_t len) {
  uint64_t *fields[3] = {&e->size, &e->comp_size, &e->offset};
  if (e->size != ZIP_MAX32 && e->comp_size != ZIP_MAX32 && e->offset != ZIP_MAX32) return 0;
  for (size_t p = 0; len - p >= 4;) {
    size_t id = get_u16(extra + p), n = get_u16(extra + p + 2);
    if (len - p - 4 < n) return -1;
    if (id == ZIP_EXTRA_ZIP64) {
      const uint8_t *f = extra + p + 4;
      for (int k = 0; k < 3; k++) {
        if (*fields[k] != ZIP_MAX32) continue;
        if (n < 8) return -1;
        *fields[k] = get_u64(f);
        f += 8, n -= 8;
      }
      return 0;
    }
    p += 4 + n;
  }
  return -1;
}

static int parse_central_entry(const uint8_t *dir, size_t dir_len, size_t *pos, central_entry *e,
                               const char *path, sg_io_error *err) {
  const uint8_t *h = dir + *pos;
  if (dir_len - *pos < ZIP_CENTRAL_SIZE || get_u32(h) != ZIP_CENTRAL_SIG)
    return corrupt(err, path, "bad central directory entry");
  size_t name_len = get_u16(h + 28), extra_len = get_u16(h + 30), comment_len = get_u16(h + 32);
  if (dir_len - *pos - ZIP_CENTRAL_SIZE < name_len + extra_len + comment_len)
    return corrupt(err, path, "central directory entry runs past the directory");
  e->flags = get_u16(h + 8);
  e->method = get_u16(h + 10);
  e->crc = get_u32(h + 16);
  e->comp_size = get_u32(h + 20);
  e->size = get_u32(h + 24);
  e->offset = get_u32(h + 42);
  e->name = h + ZIP_CENTRAL_SIZE;
  e->name_len = name_len;
  if (apply_zip64_extra(e, e->name + name_len, extra_len))
    return corrupt(err, path, "bad zip64 extra field");
  *pos += ZIP_CENTRAL_SIZE + name_len + extra_len + comment_len;
  return 0;
}

/* ---- .npz reading: members ---------------------------------------------- */

typedef struct npz_member {
  char *name;        /* without ".npy" */
  sg_array array;    /* data NULL when unsupported */
  char *unsupported; /* why the member was not loaded, or NULL */
} npz_member;

struct sg_npz {
  char *path;
  npz_member *members;
  int count;
};

/* Finds where a member's data starts, checking its local header against
 * the directory (the local sizes may be 0xFFFFFFFF or zero: not used). */
static int locate_member_data(int fd, const zip_directory *dir, const central_entry *ce,
                              const char *what, uint64_t *data_pos, sg_io_error *err) {
  uint8_t h[ZIP_LOCAL_SIZE];
  if (ce->offset > dir->offset || dir->offset - ce->offset < sizeof h)
    return fail(err, "%s: local header offset is out of range", what);
  if (read_exact_at(fd, h, sizeof h, ce->offset, what, err)) return -1;
  if (get_u32(h) != ZIP_LOCAL_SIG) return fail(err, "%s: bad local header signature", what);
  size_t name_len = get_u16(h + 26), extra_len = get_u16(h + 28);
  *data_pos = ce->offset + sizeof h + name_len + extra_len;
  if (*data_pos > dir->offset || dir->offset - *data_pos < ce->comp_size)
    return fail(err, "%s: data runs into the central directory", what);
  if (get_u16(h + 6) & (ZIP_FLAG_ENCRYPTED | ZIP_FLAG_STRONG_ENCRYPTION))
    return fail(err, "%s: is encrypted", what);
  if (name_len != ce->name_len) return fail(err, "%s: local header names another file", what);
  uint8_t *name = sg_malloc(name_len);
  if (!name) return fail_oom(err, what);
  int rc = read_exact_at(fd, name, name_len, ce->offset + sizeof h, what, err);
  if (rc == 0 && memcmp(name, ce->name, name_len) != 0)
    rc = fail(err, "%s: local header names another file", what);
  sg_mfree(name);
  return rc;
}

static int check_member_entry(const central_entry *ce, const char *what, sg_io_error *err) {
  if (ce->flags & (ZIP_FLAG_ENCRYPTED | ZIP_FLAG_STRONG_ENCRYPTION))
    return fail(err, "%s: is encrypted", what);
  if (ce->method != ZIP_STORED && ce->method != ZIP_DEFLATED)
    return fail(err, "%s: compression method %u is not supported (only stored and deflate)", what,
                (unsigned)ce->method);
  if (ce->size > ZIP_MAX32 || ce->comp_size > ZIP_MAX32)
    return fail(err, "%s: is larger than 4 GiB, which is not supported", what);
  if (ce->method == ZIP_STORED && ce->size != ce->comp_size)
    return fail(err, "%s: stored member has different sizes", what);
  return 0;
}

/* Streams one member into m, checking its CRC. A member with a dtype or
 * layout we do not load is still read through (for the CRC) and kept with
 * its reason, so one odd member does not make the whole archive unreadable. */
static int read_member_data(byte_source *src, const central_entry *ce, const char *what,
                            npz_member *m, sg_io_error *err) {
  int rc = read_npy_array(src, what, &m->array, err);
  if (rc == NPY_UNSUPPORTED) {
    m->unsupported = copy_string(err->msg);
    rc = m->unsupported ? source_skip_rest(src, what, err) : fail_oom(err, what);
  }
  if (rc == 0) rc = source_finish(src, what, err);
  if (rc == 0 && src->crc != ce->crc)
    rc = fail(err, "%s has CRC mismatch (directory %08x, data %08x)", what, (unsigned)ce->crc,
              (unsigned)src->crc);
  return rc;
}

static int read_member(int fd, const zip_directory *dir, const central_entry *ce, const char *path,
                       npz_member *m, sg_io_error *err) {
  char what[WHAT_CAP];
  snprintf(what, sizeof what, "%s: member '%.*s'", path, (int)ce->name_len, (const char *)ce->name);
  uint64_t data_pos = 0;
  if (check_member_entry(ce, what, err) || locate_member_data(fd, dir, ce, what, &data_pos, err))
    return -1;
  byte_source src;
  if (ce->method == ZIP_DEFLATED) {
    if (source_inflating(&src, fd, data_pos, ce->comp_size, ce->size, what, err)) return -1;
  } else {
    source_plain(&src, fd, ce->size);
    src.pos = data_pos;
  }
  sg_io_error local; /* holds the reason for an unsupported member, too */
  int rc = read_member_data(&src, ce, what, m, &local);
  source_close(&src);
  if (rc) {
    if (err) *err = local;
    sg_array_free(&m->array);
    sg_mfree(m->unsupported);
    m->unsupported = NULL;
  }
  return rc;
}

static bool is_npy_name(const central_entry *ce) {
  return ce->name_len >= 4 && memcmp(ce->name + ce->name_len - 4, ".npy", 4) == 0;
}

static int set_member_name(const sg_npz *z, npz_member *m, const central_entry *ce,
                           sg_io_error *err) {
  size_t n = ce->name_len - 4;
  if (memchr(ce->name, 0, n)) return corrupt(err, z->path, "member name contains a NUL byte");
  m->name = sg_malloc(n + 1);
  if (!m->name) return fail_oom(err, z->path);
  memcpy(m->name, ce->name, n);
  m->name[n] = '\0';
  for (int i = 0; i < z->count; i++) {
    if (strcmp(z->members[i].name, m->name) == 0) {
      fail(err, "%s: two members are named '%s.npy'", z->path, m->name);
      sg_mfree(m->name);
      return -1;
    }
  }
  return 0;
}

/* Members not named *.npy (numpy never writes any) are skipped. */
static int load_members(int fd, const zip_directory *dir, const uint8_t *cd, sg_npz *z,
                        sg_io_error *err) {
  size_t pos = 0;
  for (uint64_t i = 0; i < dir->count; i++) {
    central_entry ce;
    if (parse_central_entry(cd, (size_t)dir->size, &pos, &ce, z->path, err)) return -1;
    if (!is_npy_name(&ce)) continue;
    npz_member *m = &z->members[z->count];
    memset(m, 0, sizeof *m);
    if (set_member_name(z, m, &ce, err)) return -1;
    if (read_member(fd, dir, &ce, z->path, m, err)) {
      sg_mfree(m->name);
      return -1;
    }
    z->count++;
  }
  return 0;
}

static sg_npz *npz_new(const char *path, uint64_t count, sg_io_error *err) {
  sg_npz *z = sg_malloc(sizeof *z);
  if (!z) return fail_null(err, "%s: out of memory", path);
  memset(z, 0, sizeof *z);
  z->path = copy_string(path);
  z->members = sg_malloc((size_t)count * sizeof *z->members);
  if (!z->path || !z->members) {
    sg_npz_close(z);
    return fail_null(err, "%s: out of memory", path);
  }
  return z;
}

static sg_npz *read_archive(int fd, uint64_t size, const char *path, sg_io_error *err) {
  zip_directory dir;
  if (find_directory(fd, size, path, &dir, err)) return NULL;
  uint8_t *cd = sg_malloc((size_t)dir.size); /* bounded by the file size */
  if (!cd) return fail_null(err, "%s: out of memory", path);
  sg_npz *z = NULL;
  if (read_exact_at(fd, cd, (size_t)dir.size, dir.offset, path, err) == 0)
    z = npz_new(path, dir.count, err);
  if (z && load_members(fd, &dir, cd, z, err)) {
    sg_npz_close(z);
    z = NULL;
  }
  sg_mfree(cd);
  return z;
}

/* ---- .npz reading: public API -------------------------------------------- */

sg_npz *sg_npz_open(const char *path, sg_io_error *err) {
  int fd;
  uint64_t size;
  if (open_input(path, &fd, &size, err)) return NULL;
  sg_npz *z = read_archive(fd, size, path, err);
  close(fd);
  return z;
}

void sg_npz_close(sg_npz *z) {
  if (!z) return;
  for (int i = 0; i < z->count; i++) {
    sg_mfree(z->members[i].name);
    sg_mfree(z->members[i].unsupported);
    sg_array_free(&z->members[i].array);
  }
  sg_mfree(z->members);
  sg_mfree(z->path);
  sg_mfree(z);
}

int sg_npz_count(const sg_npz *z) {
  return z ? z->count : 0;
}

const char *sg_npz_name(const sg_npz *z, int i) {
  return z && i >= 0 && i < z->count ? z->members[i].name : NULL;
}

static const npz_member *find_member(const sg_npz *z, const char *name) {
  for (int i = 0; z && name && i < z->count; i++)
    if (strcmp(z->members[i].name, name) == 0) return &z->members[i];
  return NULL;
}

const sg_array *sg_npz_get(const sg_npz *z, const char *name) {
  const npz_member *m = find_member(z, name);
  return m && !m->unsupported ? &m->array : NULL;
}

/* The member, or NULL with a message saying why it cannot be used. */
static const sg_array *usable_member(const sg_npz *z, const char *name, sg_io_error *err) {
  if (!z) return fail_null(err, "sg_npz: archive is NULL");
  const npz_member *m = find_member(z, name);
  if (!m) return fail_null(err, "%s: no member named '%s'", z->path, name ? name : "(null)");
  if (m->unsupported) return fail_null(err, "%s", m->unsupported);
  return &m->array;
}

static double element_as_double(const sg_array *a, int64_t i) {
  switch (a->type) {
  case SG_NPY_F32:
    return ((const float *)a->data)[i];
  case SG_NPY_F64:
    return ((const double *)a->data)[i];
  case SG_NPY_I32:
    return ((const int32_t *)a->data)[i];
  case SG_NPY_I64:
    return (double)((const int64_t *)a->data)[i];
  default: /* SG_NPY_U8, SG_NPY_BOOL */
    return ((const uint8_t *)a->data)[i];
  }
}

sg_tensor *sg_npz_tensor(const sg_npz *z, const char *name, sg_dtype dt, sg_io_error *err) {
  const sg_array *a = usable_member(z, name, err);
  if (!a) return NULL;
  if (dt != SG_F32 && dt != SG_F64)
    return fail_null(err, "%s: member '%s': invalid tensor dtype %d", z->path, name, (int)dt);
  sg_tensor *t = sg_empty(NULL, dt, a->ndim, a->shape);
  if (!t) return fail_null(err, "%s: out of memory", z->path);
  if ((a->type == SG_NPY_F32 && dt == SG_F32) || (a->type == SG_NPY_F64 && dt == SG_F64))
    memcpy(t->data, a->data, (size_t)a->numel * sg_dtype_size(dt));
  else
    for (int64_t i = 0; i < a->numel; i++) sg_set(t, i, element_as_double(a, i));
  return t;
}

int sg_npz_scalar(const sg_npz *z, const char *name, double *out, sg_io_error *err) {
  const sg_array *a = usable_member(z, name, err);
  if (!a) return -1;
  if (a->numel != 1)
    return fail(err, "%s: member '%s' has %lld elements, not one", z->path, name,
                (long long)a->numel);
  if (out) *out = element_as_double(a, 0);
  return 0;
}
