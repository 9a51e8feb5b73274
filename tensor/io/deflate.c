/* Byte sinks and sources: the data of a .npy file or an .npz member passes
 * through one of these, plain or through zlib's raw deflate (as zip stores
 * it), while a CRC-32 of the uncompressed bytes is kept for the archive. */
#include "io_internal.h"

#include <string.h>

/* ---- zlib ----------------------------------------------------------------- */

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

/* ---- byte sink: plain or deflating, with a running CRC-32 -------------- */

int sg_io_sink_open(byte_sink *s, int fd, bool deflating, const char *what, sg_io_error *err) {
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
    return sg_io_fail_oom(err, what);
  }
  s->deflating = true;
  return 0;
}

void sg_io_sink_close(byte_sink *s) {
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
    if (ret == Z_STREAM_ERROR) return sg_io_fail(err, "%s: deflate failed", s->what);
    size_t have = IO_CHUNK - s->zs.avail_out;
    if (sg_io_write_all(s->fd, s->zbuf, have, s->what, err)) return -1;
    s->written += have;
  } while (s->zs.avail_out == 0);
  if (flush == Z_FINISH && ret != Z_STREAM_END)
    return sg_io_fail(err, "%s: deflate failed", s->what);
  return 0;
}

int sg_io_sink_write(byte_sink *s, const void *data, size_t n, sg_io_error *err) {
  s->crc = crc_update(s->crc, data, n);
  s->taken += n;
  if (!s->deflating) {
    s->written += n;
    return sg_io_write_all(s->fd, data, n, s->what, err);
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

int sg_io_sink_finish(byte_sink *s, sg_io_error *err) {
  return s->deflating ? sink_deflate(s, Z_FINISH, err) : 0;
}

/* ---- byte source: plain or inflating, with a running CRC-32 ------------ */

void sg_io_source_plain(byte_source *s, int fd, uint64_t size) {
  memset(s, 0, sizeof *s);
  s->fd = fd;
  s->raw_left = s->out_left = size;
}

int sg_io_source_inflating(byte_source *s, int fd, uint64_t pos, uint64_t compressed, uint64_t size,
                           const char *what, sg_io_error *err) {
  sg_io_source_plain(s, fd, size);
  s->pos = pos;
  s->raw_left = compressed;
  s->zs.zalloc = zlib_alloc;
  s->zs.zfree = zlib_free;
  s->inbuf = sg_malloc(IO_CHUNK);
  if (!s->inbuf || inflateInit2(&s->zs, -15) != Z_OK) {
    sg_mfree(s->inbuf);
    return sg_io_fail_oom(err, what);
  }
  s->inflating = true;
  return 0;
}

void sg_io_source_close(byte_source *s) {
  if (!s->inflating) return;
  inflateEnd(&s->zs);
  sg_mfree(s->inbuf);
  s->inflating = false;
}

static int inflate_error(byte_source *s, int ret, const char *what, sg_io_error *err) {
  if (ret == Z_MEM_ERROR) return sg_io_fail_oom(err, what);
  if (ret == Z_BUF_ERROR && s->zs.avail_in == 0 && s->raw_left == 0)
    return sg_io_fail(err, "%s: compressed data is truncated", what);
  return sg_io_fail(err, "%s: corrupt compressed data (%s)", what,
                    s->zs.msg ? s->zs.msg : "inflate");
}

/* One inflate call into zs.next_out, refilling the input first if needed. */
static int inflate_step(byte_source *s, const char *what, sg_io_error *err) {
  if (s->zs.avail_in == 0 && s->raw_left > 0) {
    size_t k = s->raw_left < IO_CHUNK ? (size_t)s->raw_left : IO_CHUNK;
    if (sg_io_read_exact_at(s->fd, s->inbuf, k, s->pos, what, err)) return -1;
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
      if (s->stream_ended) return sg_io_fail(err, "%s: compressed data ends before its size", what);
      if (inflate_step(s, what, err)) return -1;
    }
    dst += k, n -= k;
  }
  return 0;
}

int sg_io_source_read(byte_source *s, void *dst, size_t n, const char *what, sg_io_error *err) {
  if (n > s->out_left) return sg_io_fail(err, "%s: data is truncated", what);
  if (s->inflating) {
    if (source_inflate(s, dst, n, what, err)) return -1;
  } else {
    if (sg_io_read_exact_at(s->fd, dst, n, s->pos, what, err)) return -1;
    s->pos += n, s->raw_left -= n;
  }
  s->crc = crc_update(s->crc, dst, n);
  s->out_left -= n;
  return 0;
}

/* Reads and discards the rest (to checksum a member we do not load). */
int sg_io_source_skip_rest(byte_source *s, const char *what, sg_io_error *err) {
  uint8_t scratch[4096];
  while (s->out_left > 0) {
    size_t k = s->out_left < sizeof scratch ? (size_t)s->out_left : sizeof scratch;
    if (sg_io_source_read(s, scratch, k, what, err)) return -1;
  }
  return 0;
}

/* After all declared bytes were delivered: the deflate stream must end
 * exactly there and use exactly the declared compressed bytes. */
int sg_io_source_finish(byte_source *s, const char *what, sg_io_error *err) {
  if (!s->inflating) return 0;
  uint8_t extra;
  while (!s->stream_ended) {
    s->zs.next_out = &extra;
    s->zs.avail_out = 1;
    if (inflate_step(s, what, err)) return -1;
    if (s->zs.avail_out == 0) return sg_io_fail(err, "%s: holds more data than its size", what);
  }
  if (s->zs.avail_in != 0 || s->raw_left != 0)
    return sg_io_fail(err, "%s: compressed size does not match the compressed data", what);
  return 0;
}
