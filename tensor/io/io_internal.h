/* Internal to the .npy/.npz code in tensor/io/ (not installed).
 *
 *   stream.c      error messages; whole reads and writes on file descriptors;
 *                 output files that appear only once complete
 *   deflate.c     byte sinks and sources: plain or through zlib, with a CRC-32
 *   npy_header.c  the .npy header: dtypes, parsing, formatting
 *   npy.c         .npy data, reading and writing whole .npy files
 *   npz_write.c   the zip (.npz) writer
 *   npz_read.c    the zip (.npz) reader
 *
 * Data is streamed: a .npy file or an archive member is read through a byte
 * source (which may inflate and checksum on the way) straight into the
 * array's buffer, and written through a byte sink (which may deflate and
 * checksum) straight from the caller's buffer, so no second copy of the data
 * is ever held. Files are accessed through plain file descriptors, so every
 * buffer this code uses comes from sg_malloc (zlib's included).
 *
 * Every length read from a file is checked against the bytes that are
 * actually there before it is used. Functions returning int give 0 on
 * success and -1 (err filled, if not NULL) on failure.
 *
 * What the files share is visible outside the library too, hence the
 * sg_io_ prefix: it keeps those names in the library's namespace. */
#ifndef SG_IO_INTERNAL_H
#define SG_IO_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ZLIB_CONST
#include <zlib.h>

#include "sg_io.h"

enum {
  IO_CHUNK = 1 << 16,    /* compressed-data buffer size */
  SYSCALL_MAX = 1 << 30, /* largest single read/write/zlib call */
  NPY_HEADER_CAP = 512,  /* room for a header we write (at most ~256 bytes) */
  NPY_UNSUPPORTED = 1,   /* well-formed, but a dtype/layout we do not load */
  WHAT_CAP = 400,        /* "path: member 'name.npy'" message prefix */
};

/* ---- errors (stream.c) ---------------------------------------------------- */

/* Fill err (if any); sg_io_fail returns -1, sg_io_fail_null NULL. */
__attribute__((format(printf, 2, 3))) int sg_io_fail(sg_io_error *err, const char *fmt, ...);
__attribute__((format(printf, 2, 3))) void *sg_io_fail_null(sg_io_error *err, const char *fmt, ...);
int sg_io_fail_oom(sg_io_error *err, const char *what);
char *sg_io_copy_string(const char *s); /* sg_malloc'd; NULL when out of memory */

/* ---- little-endian fields ------------------------------------------------- */

static inline uint16_t get_u16(const uint8_t *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get_u64(const uint8_t *p) {
  return get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static inline uint8_t *put_u16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  return p + 2;
}
static inline uint8_t *put_u32(uint8_t *p, uint32_t v) {
  put_u16(p, v & 0xFFFF);
  put_u16(p + 2, v >> 16);
  return p + 4;
}

/* ---- file descriptors (stream.c) ------------------------------------------ */

int sg_io_read_exact_at(int fd, void *buf, size_t n, uint64_t pos, const char *what,
                        sg_io_error *err);
int sg_io_write_all(int fd, const void *buf, size_t n, const char *what, sg_io_error *err);
/* Opens a regular file for reading and gives its size. */
int sg_io_open_input(const char *path, int *fd, uint64_t *size, sg_io_error *err);

/* ---- atomic output files (stream.c) --------------------------------------- */

/* Output goes to "<path>.tmpXXXXXX" beside the target and is renamed over it
 * only once fully written and synced, so readers never see a partial file
 * and a failed write leaves any previous file untouched. */
typedef struct atomic_file {
  int fd;
  char *path;
  char *tmp_path;
} atomic_file;

int sg_io_atomic_create(atomic_file *af, const char *path, sg_io_error *err);
void sg_io_atomic_discard(atomic_file *af);
int sg_io_atomic_commit(atomic_file *af, sg_io_error *err); /* discards on failure */

/* ---- byte sink: plain or deflating, with a running CRC-32 (deflate.c) ----- */

/* One compressor of a deflating sink: a z_stream and its output buffer
 * (deflate.c; one per thread that deflates chunks of a member at once). */
typedef struct sink_lane {
  z_stream zs;
  uint8_t *out;
} sink_lane;

typedef struct byte_sink {
  int fd;
  const char *what;
  bool deflating;
  uint8_t *pend;    /* deflating: bytes of the current chunk not yet deflated */
  size_t pend_len;  /* < the chunk size */
  sink_lane *lanes; /* [max_lanes], the first n_lanes open */
  int n_lanes, max_lanes;
  uint32_t crc;     /* of the bytes given to the sink */
  uint64_t taken;   /* bytes given to the sink */
  uint64_t written; /* bytes written to fd */
} byte_sink;

int sg_io_sink_open(byte_sink *s, int fd, bool deflating, const char *what, sg_io_error *err);
void sg_io_sink_close(byte_sink *s);
int sg_io_sink_write(byte_sink *s, const void *data, size_t n, sg_io_error *err);
int sg_io_sink_finish(byte_sink *s, sg_io_error *err); /* ends the deflate stream */

/* ---- byte source: plain or inflating, with a running CRC-32 (deflate.c) --- */

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

/* Delivers the first size bytes of fd (set s->pos to start elsewhere). */
void sg_io_source_plain(byte_source *s, int fd, uint64_t size);
/* Delivers size bytes inflated from the compressed bytes at pos. */
int sg_io_source_inflating(byte_source *s, int fd, uint64_t pos, uint64_t compressed, uint64_t size,
                           const char *what, sg_io_error *err);
void sg_io_source_close(byte_source *s);
int sg_io_source_read(byte_source *s, void *dst, size_t n, const char *what, sg_io_error *err);
int sg_io_source_skip_rest(byte_source *s, const char *what, sg_io_error *err);
int sg_io_source_finish(byte_source *s, const char *what, sg_io_error *err);

/* ---- .npy header (npy_header.c) ------------------------------------------- */

typedef struct npy_dtype {
  const char *descr; /* as numpy writes it in the header */
  sg_npy_type type;  /* how the values are held in memory */
  int file_size;     /* bytes per element in the file */
  bool is_signed;
} npy_dtype;

/* Indexed by sg_npy_type for the types we write; more follow that are read only. */
extern const npy_dtype sg_io_npy_dtypes[];

typedef struct npy_header {
  const npy_dtype *dtype;
  int ndim;
  int64_t shape[SG_MAX_DIMS];
  int64_t numel;
} npy_header;

/* Element count with overflow detection (false); a zero size anywhere gives 0. */
bool sg_io_count_elements(int ndim, const int64_t *shape, int64_t *numel);
/* Returns 0, -1 (bad or unreadable) or NPY_UNSUPPORTED, with err filled. */
int sg_io_read_npy_header(byte_source *s, const char *what, npy_header *h, sg_io_error *err);
/* Fills buf (NPY_HEADER_CAP bytes) as numpy.save would; returns the length. */
size_t sg_io_format_npy_header(uint8_t *buf, const char *descr, int ndim, const int64_t *shape);

/* ---- .npy data (npy.c) ---------------------------------------------------- */

/* An array as the writers see it: validated by sg_io_check_layout first. */
typedef struct array_view {
  sg_npy_type type;
  int ndim;
  const int64_t *shape;
  int64_t numel;
  const void *data;
} array_view;

int sg_io_tensor_view(const sg_tensor *t, array_view *v, const char *what, sg_io_error *err);
int sg_io_array_view_of(const sg_array *a, array_view *v, const char *what, sg_io_error *err);
int sg_io_check_layout(const array_view *v, const char *what, sg_io_error *err);
uint64_t sg_io_npy_file_size(const array_view *v);
int sg_io_write_npy(byte_sink *s, const array_view *v, sg_io_error *err);
/* Returns 0, -1 or NPY_UNSUPPORTED; out is untouched unless 0. */
int sg_io_read_npy_array(byte_source *s, const char *what, sg_array *out, sg_io_error *err);

/* ---- zip records (npz_write.c, npz_read.c) -------------------------------- */

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

#endif
