/* The chunk index of a deflated .npz member. The writer deflates a member in
 * independent chunks (deflate.c) and records each chunk's compressed length
 * and CRC-32 in an extra field of the member's central directory entry;
 * with it a reader can inflate the chunks on all threads at once, or only
 * the chunks that hold the rows it wants, and check each chunk's CRC. zip
 * tools and NumPy skip the field (an unknown extra field is skipped by
 * every zip reader), so the archive stays an ordinary zip file. */
#include "io_internal.h"

#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* ---- the extra field ---------------------------------------------------- */

int sg_io_chunk_index_encode(const chunk_record *chunks, int64_t n, uint32_t chunk_size,
                             uint8_t **extra, size_t *len) {
  *extra = NULL;
  *len = 0;
  /* The writer writes no zip64 field, so the index is all of the extra
   * field, whose length is 16 bits. */
  if (n < 2 || n > (0xFFFF - 4 - CHUNK_INDEX_HEAD) / CHUNK_INDEX_ENTRY) return 0;
  size_t data_len = CHUNK_INDEX_HEAD + (size_t)n * CHUNK_INDEX_ENTRY;
  uint8_t *p = sg_malloc(4 + data_len);
  if (!p) return -1;
  *extra = p;
  *len = 4 + data_len;
  p = put_u16(p, ZIP_EXTRA_CHUNK_INDEX);
  p = put_u16(p, (uint32_t)data_len);
  *p++ = CHUNK_INDEX_VERSION;
  p = put_u32(p, chunk_size);
  for (int64_t k = 0; k < n; k++) p = put_u32(put_u32(p, chunks[k].comp_len), chunks[k].crc);
  return 0;
}

/* The data of the first extra field with header ID id, or NULL. */
static const uint8_t *find_extra_field(const uint8_t *extra, size_t len, unsigned id,
                                       size_t *field_len) {
  for (size_t p = 0; len - p >= 4;) {
    size_t n = get_u16(extra + p + 2);
    if (len - p - 4 < n) return NULL; /* malformed: the zip64 parser judges the rest */
    if (get_u16(extra + p) == id) {
      *field_len = n;
      return extra + p + 4;
    }
    p += 4 + n;
  }
  return NULL;
}

/* The index's own shape: its version, a usable chunk size, and as many
 * chunks as the member's size needs. */
static bool index_fits_entry(const uint8_t *f, size_t n, uint64_t size, uint64_t *chunk_size,
                             int64_t *count) {
  if (n < CHUNK_INDEX_HEAD || (n - CHUNK_INDEX_HEAD) % CHUNK_INDEX_ENTRY != 0) return false;
  if (f[0] != CHUNK_INDEX_VERSION) return false;
  *chunk_size = get_u32(f + 1);
  *count = (int64_t)((n - CHUNK_INDEX_HEAD) / CHUNK_INDEX_ENTRY);
  if (*chunk_size == 0 || *chunk_size > CHUNK_INDEX_MAX_CHUNK || size == 0) return false;
  return (uint64_t)*count == (size - 1) / *chunk_size + 1;
}

int sg_io_chunk_index_decode(const uint8_t *extra, size_t extra_len, uint64_t size,
                             uint64_t comp_size, uint32_t crc, chunk_index *idx) {
  memset(idx, 0, sizeof *idx);
  size_t n = 0;
  const uint8_t *f = find_extra_field(extra, extra_len, ZIP_EXTRA_CHUNK_INDEX, &n);
  if (!f || !index_fits_entry(f, n, size, &idx->chunk_size, &idx->count)) return 0;
  idx->offset = sg_malloc((size_t)(idx->count + 1) * sizeof *idx->offset);
  idx->crc = sg_malloc((size_t)idx->count * sizeof *idx->crc);
  if (!idx->offset || !idx->crc) {
    sg_io_chunk_index_free(idx);
    return -1;
  }
  const uint8_t *e = f + CHUNK_INDEX_HEAD;
  uint32_t combined = 0;
  idx->offset[0] = 0;
  for (int64_t k = 0; k < idx->count; k++, e += CHUNK_INDEX_ENTRY) {
    uint64_t len = k + 1 < idx->count ? idx->chunk_size : size - (uint64_t)k * idx->chunk_size;
    idx->offset[k + 1] = idx->offset[k] + get_u32(e);
    idx->crc[k] = get_u32(e + 4);
    combined = (uint32_t)crc32_combine(combined, idx->crc[k], (z_off_t)len);
  }
  if (idx->offset[idx->count] != comp_size || combined != crc) {
    sg_io_chunk_index_free(idx);
    return 0;
  }
  return 1;
}

void sg_io_chunk_index_free(chunk_index *idx) {
  sg_mfree(idx->offset);
  sg_mfree(idx->crc);
  idx->offset = NULL;
  idx->crc = NULL;
}

/* ---- inflating chunks on all threads ------------------------------------ */

/* One thread's inflater, its buffer for a chunk that cannot go straight to
 * the destination, and the first failure it met. */
typedef struct chunk_lane {
  byte_source src;
  uint8_t *scratch;
  int64_t failed_at; /* position in the job's chunk list; INT64_MAX: none */
  sg_io_error err;
} chunk_lane;

static _Atomic int64_t chunks_read;

int64_t sg_io_indexed_chunks_read(void) {
  return atomic_load(&chunks_read);
}

static uint64_t chunk_start(const chunk_job *job, int64_t k) {
  return (uint64_t)k * job->idx->chunk_size;
}

static uint64_t chunk_len(const chunk_job *job, int64_t k) {
  uint64_t start = chunk_start(job, k);
  return job->size - start < job->idx->chunk_size ? job->size - start : job->idx->chunk_size;
}

bool sg_io_chunks_fit(const chunk_job *job) {
  uint64_t elem = (uint64_t)job->dtype->file_size;
  return job->header_end % elem == 0 && job->idx->chunk_size % elem == 0;
}

static bool overlaps(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1) {
  return a0 < b1 && b0 < a1;
}

/* The chunks that hold the header or bytes [from, to), in order, into list. */
static int64_t needed_chunks(const chunk_job *job, int64_t *list) {
  int64_t n = 0;
  for (int64_t k = 0; k < job->idx->count; k++) {
    uint64_t c0 = chunk_start(job, k), c1 = c0 + chunk_len(job, k);
    if (overlaps(c0, c1, 0, job->header_end) || overlaps(c0, c1, job->from, job->to)) list[n++] = k;
  }
  return n;
}

/* Lanes for up to want threads, opened on this thread; fewer when memory
 * is short (none: out of memory). */
static int open_lanes(const chunk_job *job, chunk_lane *lanes, int want) {
  size_t scratch = (size_t)(job->size < job->idx->chunk_size ? job->size : job->idx->chunk_size);
  int n = 0;
  for (; n < want; n++) {
    chunk_lane *l = &lanes[n];
    memset(l, 0, sizeof *l);
    l->failed_at = INT64_MAX;
    l->scratch = sg_malloc(scratch);
    if (!l->scratch) break;
    if (sg_io_source_lane_open(&l->src, job->fd, job->what, NULL)) {
      sg_mfree(l->scratch);
      break;
    }
  }
  return n;
}

static void close_lanes(chunk_lane *lanes, int n) {
  for (int i = 0; i < n; i++) {
    sg_io_source_close(&lanes[i].src);
    sg_mfree(lanes[i].scratch);
  }
}

/* Moves the part of chunk k (inflated at out) that lies in [from, to) into
 * the destination, converted; a chunk inflated in place is only fixed up. */
static void deliver(const chunk_job *job, int64_t k, uint8_t *out, bool in_place) {
  uint64_t c0 = chunk_start(job, k), c1 = c0 + chunk_len(job, k);
  uint64_t a = c0 > job->from ? c0 : job->from, b = c1 < job->to ? c1 : job->to;
  if (a >= b) return;
  size_t elem = (size_t)job->dtype->file_size, first = (size_t)((a - job->from) / elem);
  uint8_t *dst = (uint8_t *)job->dst + first * sg_io_type_size(job->dtype->type);
  if (!in_place)
    sg_io_npy_convert(job->dtype, out + (a - c0), (size_t)((b - a) / elem), dst);
  else if (job->dtype->type == SG_NPY_BOOL)
    for (uint64_t i = 0; i < b - a; i++) dst[i] = dst[i] != 0;
}

/* Inflates chunk k and checks it against the index; 0, or -1 with err. */
static int read_chunk(const chunk_job *job, chunk_lane *l, int64_t k, sg_io_error *err) {
  const chunk_index *idx = job->idx;
  uint64_t c0 = chunk_start(job, k), len = chunk_len(job, k);
  char what[WHAT_CAP + 96];
  snprintf(what, sizeof what, "%s: chunk %lld of %lld (bytes %llu-%llu)", job->what,
           (long long)k + 1, (long long)idx->count, (unsigned long long)c0,
           (unsigned long long)(c0 + len - 1));
  /* straight into the destination when the chunk lies inside it as it is */
  bool in_place = c0 >= job->from && c0 + len <= job->to &&
                  (size_t)job->dtype->file_size == sg_io_type_size(job->dtype->type);
  uint8_t *out = in_place ? (uint8_t *)job->dst + (c0 - job->from) : l->scratch;
  byte_source *s = &l->src;
  if (sg_io_source_aim(s, job->data_pos + idx->offset[k], idx->offset[k + 1] - idx->offset[k], len))
    return sg_io_fail(err, "%s: inflateReset failed", what);
  if (sg_io_source_read(s, out, (size_t)len, what, err)) return -1;
  int rc = k + 1 == idx->count ? sg_io_source_finish(s, what, err)
                               : sg_io_source_finish_flush(s, what, err);
  if (rc) return -1;
  if (s->crc != idx->crc[k])
    return sg_io_fail(err, "%s has CRC mismatch (index %08x, data %08x)", what,
                      (unsigned)idx->crc[k], (unsigned)s->crc);
  deliver(job, k, out, in_place);
  atomic_fetch_add(&chunks_read, 1);
  return 0;
}

/* Runs list[0..n) on n_lanes threads. Every chunk before the first failing
 * one is read whatever the schedule, so the failure reported (the lowest)
 * does not depend on the thread count. */
static int64_t run_chunks(const chunk_job *job, chunk_lane *lanes, int n_lanes, const int64_t *list,
                          int64_t n) {
  int64_t first_failed = INT64_MAX;
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_lanes)
  for (int64_t i = 0; i < n; i++) {
    int64_t known;
#pragma omp atomic read
    known = first_failed;
    if (i > known) continue;
    chunk_lane *l = &lanes[omp_get_thread_num()];
    sg_io_error err;
    if (read_chunk(job, l, list[i], &err) == 0) continue;
    if (i < l->failed_at) l->failed_at = i, l->err = err;
#pragma omp critical(sg_io_first_failed_chunk)
    if (i < first_failed) {
#pragma omp atomic write
      first_failed = i;
    }
  }
  return first_failed;
}

int sg_io_inflate_chunks(const chunk_job *job, sg_io_error *err) {
  int64_t *list = sg_malloc((size_t)job->idx->count * sizeof *list);
  int threads = omp_get_max_threads();
  chunk_lane *lanes = sg_malloc((size_t)threads * sizeof *lanes);
  if (!list || !lanes) {
    sg_mfree(list);
    sg_mfree(lanes);
    return sg_io_fail_oom(err, job->what);
  }
  int64_t n = needed_chunks(job, list);
  int n_lanes = open_lanes(job, lanes, n < threads ? (int)(n > 0 ? n : 1) : threads);
  int rc = n_lanes > 0 ? 0 : sg_io_fail_oom(err, job->what);
  if (rc == 0) {
    int64_t first_failed = run_chunks(job, lanes, n_lanes, list, n);
    for (int i = 0; i < n_lanes && first_failed != INT64_MAX; i++)
      if (lanes[i].failed_at == first_failed) {
        if (err) *err = lanes[i].err;
        rc = CHUNK_FAILED;
      }
  }
  close_lanes(lanes, n_lanes);
  sg_mfree(lanes);
  sg_mfree(list);
  return rc;
}
