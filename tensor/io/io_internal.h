/* Internal to the .npy/.npz code in tensor/io/ (not installed).
 *
 *   stream.c      error messages; whole reads and writes on file descriptors;
 *                 output files that appear only once complete
 *   deflate.c     byte sinks and sources: plain or through zlib, with a CRC-32
 *   npy_header.c  the .npy header: dtypes, parsing, formatting
 *   npy.c         .npy data, reading and writing whole .npy files
 *   npz_write.c   the zip (.npz) writer
 *   zip_dir.c     the zip container as the reader sees it: end record,
 *                 central directory, local headers
 *   npz_read.c    the zip (.npz) reader, whole members or rows of them
 *   npz_chunks.c  the chunk index of a deflated member: its encoding in a
 *                 zip extra field, and inflating its chunks on all threads
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
  /* A deflating sink cuts a member into chunks of DEFLATE_CHUNK bytes (see
   * deflate.c); the chunk index of npz_chunks.c records them. */
  DEFLATE_CHUNK = 1 << 20,
  CHUNK_FAILED = 2, /* a chunk disagrees with its member's chunk index */
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

/* A deflated chunk: its compressed length and the CRC-32 of its bytes. */
typedef struct chunk_record {
  uint32_t comp_len, crc;
} chunk_record;

typedef struct byte_sink {
  int fd;
  const char *what;
  bool deflating;
  chunk_record *chunks; /* deflating: one per chunk written, in order */
  int64_t n_chunks, chunks_cap;
  uint8_t *pend;    /* deflating: bytes of the current chunk not yet deflated */
  size_t pend_len;  /* < the chunk size */
  sink_lane *lanes; /* [max_lanes], the first n_lanes open */
  int n_lanes, max_lanes;
  uint32_t crc;     /* of the bytes given to the sink */
  uint64_t taken;   /* bytes given to the sink */
  uint64_t written; /* bytes written to fd */
} byte_sink;

int sg_io_sink_open(byte_sink *s, int fd, bool deflating, const char *what, sg_io_error *err);
void sg_io_sink_close(byte_sink *s); /* frees chunks unless the caller took them (NULL) */
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
/* Passes over n bytes: a plain source just moves on (its CRC then no longer
 * covers the data), an inflating one inflates and checksums them. */
int sg_io_source_skip(byte_source *s, uint64_t n, const char *what, sg_io_error *err);
int sg_io_source_skip_rest(byte_source *s, const char *what, sg_io_error *err);
int sg_io_source_finish(byte_source *s, const char *what, sg_io_error *err);

/* An inflating source for one thread of a parallel read (npz_chunks.c):
 * everything it needs, zlib's window included, is allocated here on the
 * calling thread, since the allocation hooks need not be thread-safe; it
 * is then aimed at one independent piece of deflate data after another. */
int sg_io_source_lane_open(byte_source *s, int fd, const char *what, sg_io_error *err);
/* Delivers size bytes inflated from the compressed bytes at pos, which
 * start a deflate block with no reference to data before them. */
int sg_io_source_aim(byte_source *s, uint64_t pos, uint64_t compressed, uint64_t size);
/* Like sg_io_source_finish for a piece that ends at a sync flush (an empty
 * stored block, byte-aligned, not the final block) instead of the stream's end. */
int sg_io_source_finish_flush(byte_source *s, const char *what, sg_io_error *err);

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
/* The bytes per element an array of type t holds in memory. */
size_t sg_io_type_size(sg_npy_type t);
/* After the header: reads elements [first, first + count) of the data (the
 * source at the data's start) into dst, converted to h->dtype->type. */
int sg_io_read_npy_elements(byte_source *s, const npy_header *h, int64_t first, int64_t count,
                            void *dst, const char *what, sg_io_error *err);
/* Converts count elements as the file holds them (dtype d) at src into dst,
 * as memory holds them (d->type): widened, bools made 0/1. */
void sg_io_npy_convert(const npy_dtype *d, const uint8_t *src, size_t count, void *dst);

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

/* ---- the zip container, read (zip_dir.c) ------------------------------------ */

typedef struct zip_directory {
  uint64_t count, offset, size;
} zip_directory;

typedef struct central_entry {
  const uint8_t *name;
  size_t name_len;
  const uint8_t *extra;
  size_t extra_len;
  uint16_t flags, method;
  uint32_t crc;
  uint64_t comp_size, size, offset;
} central_entry;

/* "path: corrupt or unsupported zip archive (problem)"; returns -1. */
int sg_io_zip_corrupt(sg_io_error *err, const char *path, const char *problem);
/* Finds the central directory through the end record (and zip64's). */
int sg_io_zip_find_directory(int fd, uint64_t file_size, const char *path, zip_directory *dir,
                             sg_io_error *err);
/* Parses the entry at *pos of the directory's bytes and moves *pos past it. */
int sg_io_zip_parse_central_entry(const uint8_t *dir, size_t dir_len, size_t *pos, central_entry *e,
                                  const char *path, sg_io_error *err);
/* The entry is one we read: not encrypted, stored or deflated, < 4 GiB. */
int sg_io_zip_check_entry(const central_entry *ce, const char *what, sg_io_error *err);
/* Where the member's data starts, its local header checked against the entry. */
int sg_io_zip_locate_data(int fd, const zip_directory *dir, const central_entry *ce,
                          const char *what, uint64_t *data_pos, sg_io_error *err);

/* ---- chunk index (npz_chunks.c) ------------------------------------------- */

/* The chunk index of a deflated member, in an extra field of its central
 * directory entry: header ID 0x6773 ("sg"), then a version byte (1), the
 * chunk size (u32) and per chunk its compressed length and the CRC-32 of
 * its bytes (u32 each). docs/design.md, ".npz members: the chunk index,
 * and reading rows", has the rules. */
enum {
  ZIP_EXTRA_CHUNK_INDEX = 0x6773,
  CHUNK_INDEX_VERSION = 1,
  CHUNK_INDEX_HEAD = 5,            /* version byte, chunk size */
  CHUNK_INDEX_ENTRY = 8,           /* compressed length, CRC-32 */
  CHUNK_INDEX_MAX_CHUNK = 1 << 26, /* larger chunk sizes are not used (memory per thread) */
};

/* The extra field for the chunks of a member (sg_malloc'd, *len bytes), or
 * *extra = NULL when the member has a single chunk (nothing to index) or the
 * index would not fit an extra field; -1 only when out of memory. */
int sg_io_chunk_index_encode(const chunk_record *chunks, int64_t n, uint32_t chunk_size,
                             uint8_t **extra, size_t *len);

typedef struct chunk_index {
  uint64_t chunk_size;
  int64_t count;
  uint64_t *offset; /* [count + 1]: chunk k is bytes [offset[k], offset[k+1]) of the data */
  uint32_t *crc;    /* [count]: of each chunk's uncompressed bytes */
} chunk_index;

/* Finds the chunk index among a central directory entry's extra fields and
 * checks it against the entry (chunk count from the uncompressed size, the
 * compressed lengths summing to the compressed size, the CRCs combining to
 * the member's CRC). Returns 1 with idx filled (sg_io_chunk_index_free it)
 * when there is a consistent one, 0 when there is none or it disagrees (the
 * member is then read as a stream), -1 when out of memory. */
int sg_io_chunk_index_decode(const uint8_t *extra, size_t extra_len, uint64_t size,
                             uint64_t comp_size, uint32_t crc, chunk_index *idx);
void sg_io_chunk_index_free(chunk_index *idx);

/* What to inflate of an indexed member: its bytes [from, to) are delivered
 * into dst, converted from dtype (the .npy data, element-aligned in the
 * member and in every chunk); the chunks holding bytes [0, header_end) (the
 * .npy header, read before) are inflated and checked too. */
typedef struct chunk_job {
  int fd;
  uint64_t data_pos; /* file offset of the member's compressed data */
  uint64_t size;     /* the member's uncompressed size */
  const chunk_index *idx;
  const npy_dtype *dtype;
  uint64_t header_end, from, to;
  void *dst;
  const char *what;
} chunk_job;

/* Whether job's elements lie whole inside chunks, so the index can serve it. */
bool sg_io_chunks_fit(const chunk_job *job);
/* Inflates the chunks that hold the job's bytes on all OpenMP threads,
 * checking each chunk's CRC-32. Returns 0, -1 (out of memory) or
 * CHUNK_FAILED (a chunk does not inflate to its bytes and CRC: err names the
 * first such chunk, whatever the thread count). */
int sg_io_inflate_chunks(const chunk_job *job, sg_io_error *err);
/* Chunks inflated through a chunk index so far in this process (the tests
 * check with it that a read used the index). */
int64_t sg_io_indexed_chunks_read(void);

#endif
