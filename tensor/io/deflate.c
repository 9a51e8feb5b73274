/* Byte sinks and sources: the data of a .npy file or an .npz member passes
 * through one of these, plain or through zlib's raw deflate (as zip stores
 * it), while a CRC-32 of the uncompressed bytes is kept for the archive. */
#include "io_internal.h"

#include <omp.h>
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

/* A deflating sink cuts its input into chunks of DEFLATE_CHUNK bytes (the
 * last one shorter) at fixed positions of the member's bytes and deflates
 * each on its own (no window shared with the chunk before) into a piece of
 * one raw deflate stream: every chunk but the last ends with a sync flush
 * (an empty stored block: byte-aligned, not final), the last with the
 * final block, as pigz does. Consecutive chunks are deflated on all the
 * OpenMP threads at once and written in order, so the bytes do not depend
 * on the thread count. A member shorter than a chunk is one deflate stream,
 * as zlib writes it alone. The CRC-32 of each chunk is computed by the
 * thread that deflates it and combined in order; each chunk's compressed
 * length and CRC are kept for the member's chunk index (npz_chunks.c). */
enum { SINK_CHUNK = DEFLATE_CHUNK };

/* Room for a chunk's deflated bytes: zlib's bound and the flush marker. */
static size_t chunk_room(void) {
  return compressBound(SINK_CHUNK) + 64;
}

static int lane_open(sink_lane *l) {
  memset(l, 0, sizeof *l);
  l->zs.zalloc = zlib_alloc;
  l->zs.zfree = zlib_free;
  l->out = sg_malloc(chunk_room());
  /* windowBits -15: a raw deflate stream, as zip stores it */
  if (!l->out ||
      deflateInit2(&l->zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    sg_mfree(l->out);
    l->out = NULL;
    return -1;
  }
  return 0;
}

static void lane_close(sink_lane *l) {
  deflateEnd(&l->zs);
  sg_mfree(l->out);
}

int sg_io_sink_open(byte_sink *s, int fd, bool deflating, const char *what, sg_io_error *err) {
  memset(s, 0, sizeof *s);
  s->fd = fd;
  s->what = what;
  if (!deflating) return 0;
  /* Allocated here, on the calling thread, as every buffer is: the
   * allocation hooks need not be thread-safe. Lanes beyond the first open
   * when a whole chunk arrives. */
  s->max_lanes = omp_get_max_threads();
  s->pend = sg_malloc(SINK_CHUNK);
  s->lanes = sg_malloc((size_t)s->max_lanes * sizeof *s->lanes);
  if (!s->pend || !s->lanes || lane_open(&s->lanes[0])) {
    sg_mfree(s->pend);
    sg_mfree(s->lanes);
    return sg_io_fail_oom(err, what);
  }
  s->n_lanes = 1;
  s->deflating = true;
  return 0;
}

void sg_io_sink_close(byte_sink *s) {
  sg_mfree(s->chunks);
  s->chunks = NULL;
  if (!s->deflating) return;
  for (int i = 0; i < s->n_lanes; i++) lane_close(&s->lanes[i]);
  sg_mfree(s->lanes);
  sg_mfree(s->pend);
  s->deflating = false;
}

/* Deflates n bytes at in as one chunk into l->out; its length into *len. */
static int deflate_chunk(sink_lane *l, const uint8_t *in, size_t n, bool last, size_t *len) {
  if (deflateReset(&l->zs) != Z_OK) return -1;
  size_t room = chunk_room();
  l->zs.next_in = in;
  l->zs.avail_in = (uInt)n;
  l->zs.next_out = l->out;
  l->zs.avail_out = (uInt)room;
  int ret = deflate(&l->zs, last ? Z_FINISH : Z_SYNC_FLUSH);
  *len = room - l->zs.avail_out;
  /* a flush is complete when deflate leaves output room unused */
  if (last) return ret == Z_STREAM_END ? 0 : -1;
  return ret == Z_OK && l->zs.avail_in == 0 && l->zs.avail_out > 0 ? 0 : -1;
}

/* Room for count more chunk records, made on the calling thread before
 * the chunks are deflated (emit_chunk may run on another thread). */
static int reserve_chunk_records(byte_sink *s, int64_t count, sg_io_error *err) {
  if (s->n_chunks + count <= s->chunks_cap) return 0;
  int64_t cap = s->chunks_cap ? 2 * s->chunks_cap : 16;
  if (cap < s->n_chunks + count) cap = s->n_chunks + count;
  chunk_record *grown = sg_realloc(s->chunks, (size_t)cap * sizeof *grown);
  if (!grown) return sg_io_fail_oom(err, s->what);
  s->chunks = grown;
  s->chunks_cap = cap;
  return 0;
}

/* Appends a deflated chunk (n input bytes of CRC crc) to the member. */
static int emit_chunk(byte_sink *s, const uint8_t *out, size_t len, uint32_t crc, size_t n,
                      sg_io_error *err) {
  if (sg_io_write_all(s->fd, out, len, s->what, err)) return -1;
  s->written += len;
  s->crc = (uint32_t)crc32_combine(s->crc, crc, (z_off_t)n);
  s->chunks[s->n_chunks++] = (chunk_record){(uint32_t)len, crc};
  return 0;
}

static int compress_one(byte_sink *s, const uint8_t *in, size_t n, bool last, sg_io_error *err) {
  if (reserve_chunk_records(s, 1, err)) return -1;
  size_t len;
  if (deflate_chunk(&s->lanes[0], in, n, last, &len))
    return sg_io_fail(err, "%s: deflate failed", s->what);
  return emit_chunk(s, s->lanes[0].out, len, crc_update(0, in, n), n, err);
}

/* One lane per thread, opened on this thread; fewer when memory is short. */
static void open_lanes(byte_sink *s) {
  while (s->n_lanes < s->max_lanes && !lane_open(&s->lanes[s->n_lanes])) s->n_lanes++;
}

/* count whole chunks from p, deflated on n_lanes threads, written in order. */
static int compress_chunks(byte_sink *s, const uint8_t *p, int64_t count, sg_io_error *err) {
  if (count == 1 || s->max_lanes == 1) {
    for (int64_t i = 0; i < count; i++)
      if (compress_one(s, p + i * SINK_CHUNK, SINK_CHUNK, false, err)) return -1;
    return 0;
  }
  if (reserve_chunk_records(s, count, err)) return -1;
  open_lanes(s);
  int failed = 0; /* 1: deflate, 2: the write (err filled) */
#pragma omp parallel for ordered schedule(static, 1) num_threads(s->n_lanes)
  for (int64_t i = 0; i < count; i++) {
    sink_lane *l = &s->lanes[omp_get_thread_num()];
    const uint8_t *in = p + i * SINK_CHUNK;
    size_t len = 0;
    int bad = deflate_chunk(l, in, SINK_CHUNK, false, &len);
    uint32_t crc = crc_update(0, in, SINK_CHUNK);
#pragma omp ordered
    {
      if (!failed && bad) failed = 1;
      if (!failed && emit_chunk(s, l->out, len, crc, SINK_CHUNK, err)) failed = 2;
    }
  }
  if (failed == 1) return sg_io_fail(err, "%s: deflate failed", s->what);
  return failed ? -1 : 0;
}

int sg_io_sink_write(byte_sink *s, const void *data, size_t n, sg_io_error *err) {
  s->taken += n;
  if (!s->deflating) {
    s->crc = crc_update(s->crc, data, n);
    s->written += n;
    return sg_io_write_all(s->fd, data, n, s->what, err);
  }
  const uint8_t *p = data;
  if (s->pend_len > 0) { /* complete the pending chunk first */
    size_t k = n < SINK_CHUNK - s->pend_len ? n : SINK_CHUNK - s->pend_len;
    memcpy(s->pend + s->pend_len, p, k);
    s->pend_len += k, p += k, n -= k;
    if (s->pend_len < SINK_CHUNK) return 0;
    s->pend_len = 0;
    if (compress_one(s, s->pend, SINK_CHUNK, false, err)) return -1;
  }
  int64_t whole = (int64_t)(n / SINK_CHUNK);
  if (whole > 0 && compress_chunks(s, p, whole, err)) return -1;
  p += (size_t)whole * SINK_CHUNK, n -= (size_t)whole * SINK_CHUNK;
  if (n > 0) memcpy(s->pend, p, n);
  s->pend_len = n;
  return 0;
}

int sg_io_sink_finish(byte_sink *s, sg_io_error *err) {
  if (!s->deflating) return 0;
  size_t n = s->pend_len;
  s->pend_len = 0;
  return compress_one(s, s->pend, n, true, err);
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

int sg_io_source_skip(byte_source *s, uint64_t n, const char *what, sg_io_error *err) {
  if (n > s->out_left) return sg_io_fail(err, "%s: data is truncated", what);
  if (!s->inflating) {
    s->pos += n, s->raw_left -= n, s->out_left -= n;
    return 0;
  }
  uint8_t scratch[16384];
  while (n > 0) {
    size_t k = n < sizeof scratch ? (size_t)n : sizeof scratch;
    if (sg_io_source_read(s, scratch, k, what, err)) return -1;
    n -= k;
  }
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

/* ---- inflating sources of a parallel read --------------------------------- */

int sg_io_source_lane_open(byte_source *s, int fd, const char *what, sg_io_error *err) {
  if (sg_io_source_inflating(s, fd, 0, 0, 0, what, err)) return -1;
  /* zlib allocates its window in the first inflate call that produces
   * output and keeps it through inflateReset: inflate one byte here (the
   * raw deflate stream of a zero byte), so that no worker thread allocates. */
  static const uint8_t one_zero_byte[] = {0x63, 0x00, 0x00};
  uint8_t out;
  s->zs.next_in = one_zero_byte;
  s->zs.avail_in = sizeof one_zero_byte;
  s->zs.next_out = &out;
  s->zs.avail_out = 1;
  if (inflate(&s->zs, Z_NO_FLUSH) != Z_STREAM_END || s->zs.avail_out != 0) {
    sg_io_source_close(s);
    return sg_io_fail_oom(err, what);
  }
  return 0;
}

int sg_io_source_aim(byte_source *s, uint64_t pos, uint64_t compressed, uint64_t size) {
  if (inflateReset(&s->zs) != Z_OK) return -1;
  s->zs.avail_in = 0;
  s->pos = pos;
  s->raw_left = compressed;
  s->out_left = size;
  s->stream_ended = false;
  s->crc = 0;
  return 0;
}

/* zlib's data_type after inflate: unused bits of the last input byte (low
 * 6 bits), +64 inside the final block, +128 between blocks. */
enum { ZS_LAST_BLOCK = 64, ZS_BETWEEN_BLOCKS = 128, ZS_UNUSED_BITS = 63 };

int sg_io_source_finish_flush(byte_source *s, const char *what, sg_io_error *err) {
  uint8_t extra;
  while (s->zs.avail_in > 0 || s->raw_left > 0) { /* the flush's empty stored block */
    s->zs.next_out = &extra;
    s->zs.avail_out = 1;
    if (inflate_step(s, what, err)) return -1;
    if (s->zs.avail_out == 0) return sg_io_fail(err, "%s: holds more data than its size", what);
    if (s->stream_ended) return sg_io_fail(err, "%s: ends the deflate stream early", what);
  }
  int state = s->zs.data_type;
  if (!(state & ZS_BETWEEN_BLOCKS) || (state & (ZS_LAST_BLOCK | ZS_UNUSED_BITS)))
    return sg_io_fail(err, "%s: does not end at a flush point", what);
  return 0;
}
