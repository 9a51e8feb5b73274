/* Writing .npz archives: a zip file of "name.npy" members, stored or
 * raw-deflated, as numpy.savez / numpy.savez_compressed write them; a
 * deflated member of several chunks carries its chunk index (npz_chunks.c)
 * in its central directory entry. */
#include "io_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct npz_entry {
  char *name; /* with ".npy" */
  uint32_t crc;
  uint64_t size, comp_size, offset;
  uint8_t *extra; /* the central directory's extra field (the chunk index), or NULL */
  size_t extra_len;
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
static uint8_t *put_common_fields(uint8_t *p, const npz_entry *e, int method, size_t extra_len) {
  p = put_u16(p, ZIP_VERSION);
  p = put_u16(p, name_flags(e->name));
  p = put_u16(p, (uint32_t)method);
  p = put_u16(p, 0); /* time 00:00 */
  p = put_u16(p, ZIP_DOS_DATE);
  p = put_u32(p, e->crc);
  p = put_u32(p, (uint32_t)e->comp_size);
  p = put_u32(p, (uint32_t)e->size);
  p = put_u16(p, (uint32_t)strlen(e->name));
  return put_u16(p, (uint32_t)extra_len);
}

static int writer_method(const sg_npz_writer *w) {
  return w->compress ? ZIP_DEFLATED : ZIP_STORED;
}

static int write_local_header(sg_npz_writer *w, const npz_entry *e, const char *what,
                              sg_io_error *err) {
  uint8_t h[ZIP_LOCAL_SIZE];
  put_common_fields(put_u32(h, ZIP_LOCAL_SIG), e, writer_method(w), 0);
  size_t name_len = strlen(e->name);
  if (sg_io_write_all(w->file.fd, h, sizeof h, what, err) ||
      sg_io_write_all(w->file.fd, e->name, name_len, what, err))
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
    return sg_io_fail(err, "%s: write failed: %s", what, put < 0 ? strerror(errno) : "short write");
  return 0;
}

static int write_member_data(sg_npz_writer *w, npz_entry *e, const array_view *v, const char *what,
                             sg_io_error *err) {
  byte_sink sink;
  if (sg_io_sink_open(&sink, w->file.fd, w->compress, what, err)) return -1;
  int rc = sg_io_write_npy(&sink, v, err);
  if (rc == 0) rc = sg_io_sink_finish(&sink, err);
  e->crc = sink.crc;
  e->size = sink.taken;
  e->comp_size = sink.written;
  if (rc == 0 &&
      sg_io_chunk_index_encode(sink.chunks, sink.n_chunks, DEFLATE_CHUNK, &e->extra, &e->extra_len))
    rc = sg_io_fail_oom(err, what);
  sg_io_sink_close(&sink);
  if (rc == 0 && e->comp_size >= ZIP_MAX32)
    rc = sg_io_fail(err, "%s: compressed size exceeds 4 GiB (zip64 is not written)", what);
  w->offset += e->comp_size;
  return rc;
}

static int check_member_name(const sg_npz_writer *w, const char *name, const char *path,
                             sg_io_error *err) {
  if (!name) return sg_io_fail(err, "%s: member name is NULL", path);
  if (strlen(name) > 0xFFFF - 4) return sg_io_fail(err, "%s: member name is too long", path);
  for (int i = 0; i < w->count; i++) {
    size_t n = strlen(w->entries[i].name) - 4;
    if (strlen(name) == n && memcmp(w->entries[i].name, name, n) == 0)
      return sg_io_fail(err, "%s: member '%s.npy' was already added", path, name);
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
  if (!w) return sg_io_fail(err, "sg_npz_add: writer is NULL");
  const char *path = w->file.path;
  if (w->failed)
    return sg_io_fail(err, "%s: an earlier member failed to write; the archive cannot be completed",
                      path);
  if (check_member_name(w, name, path, err)) return -1;
  char what[WHAT_CAP];
  snprintf(what, sizeof what, "%s: member '%s.npy'", path, name);
  if (sg_io_check_layout(v, what, err)) return -1;
  if (w->count >= 0xFFFF)
    return sg_io_fail(err, "%s: too many members (zip64 is not written)", what);
  if (sg_io_npy_file_size(v) >= ZIP_MAX32 || w->offset >= ZIP_MAX32)
    return sg_io_fail(err, "%s: archive would exceed 4 GiB (zip64 is not written)", what);
  if (reserve_entry(w, name)) return sg_io_fail_oom(err, what);
  npz_entry *e = &w->entries[w->count];
  e->offset = w->offset;
  if (write_local_header(w, e, what, err) || write_member_data(w, e, v, what, err) ||
      patch_local_header(w, e, what, err)) {
    sg_mfree(e->name);
    sg_mfree(e->extra);
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
    p = put_common_fields(put_u16(p, ZIP_VERSION), e, writer_method(w), e->extra_len);
    p = put_u16(p, 0); /* comment length */
    p = put_u16(p, 0); /* disk */
    p = put_u16(p, 0); /* internal attributes */
    p = put_u32(p, 0); /* external attributes */
    put_u32(p, (uint32_t)e->offset);
    if (sg_io_write_all(w->file.fd, h, sizeof h, path, err) ||
        sg_io_write_all(w->file.fd, e->name, strlen(e->name), path, err) ||
        sg_io_write_all(w->file.fd, e->extra, e->extra_len, path, err))
      return -1;
    w->offset += sizeof h + strlen(e->name) + e->extra_len;
  }
  if (w->offset >= ZIP_MAX32) return sg_io_fail(err, "%s: archive exceeds 4 GiB", path);
  uint8_t end[ZIP_END_SIZE], *p = put_u32(end, ZIP_END_SIG);
  p = put_u32(p, 0); /* this disk, disk with the directory */
  p = put_u16(p, (uint32_t)w->count);
  p = put_u16(p, (uint32_t)w->count);
  p = put_u32(p, (uint32_t)(w->offset - start));
  p = put_u32(p, (uint32_t)start);
  put_u16(p, 0); /* comment length */
  return sg_io_write_all(w->file.fd, end, sizeof end, path, err);
}

static void writer_free(sg_npz_writer *w) {
  for (int i = 0; i < w->count; i++) {
    sg_mfree(w->entries[i].name);
    sg_mfree(w->entries[i].extra);
  }
  sg_mfree(w->entries);
  sg_mfree(w);
}

sg_npz_writer *sg_npz_writer_open(const char *path, bool compress, sg_io_error *err) {
  sg_npz_writer *w = sg_malloc(sizeof *w);
  if (!w) {
    sg_io_fail_oom(err, path ? path : "(null)");
    return NULL;
  }
  memset(w, 0, sizeof *w);
  w->compress = compress;
  if (sg_io_atomic_create(&w->file, path, err)) {
    sg_mfree(w);
    return NULL;
  }
  return w;
}

int sg_npz_add_tensor(sg_npz_writer *w, const char *name, const sg_tensor *t, sg_io_error *err) {
  array_view v;
  if (!w) return sg_io_fail(err, "sg_npz_add_tensor: writer is NULL");
  return sg_io_tensor_view(t, &v, w->file.path, err) ? -1 : npz_add(w, name, &v, err);
}

int sg_npz_add_array(sg_npz_writer *w, const char *name, const sg_array *a, sg_io_error *err) {
  array_view v;
  if (!w) return sg_io_fail(err, "sg_npz_add_array: writer is NULL");
  return sg_io_array_view_of(a, &v, w->file.path, err) ? -1 : npz_add(w, name, &v, err);
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
  if (!w) return sg_io_fail(err, "sg_npz_writer_close: writer is NULL");
  int rc;
  if (w->failed)
    rc = sg_io_fail(err, "%s: not written because a member failed to write", w->file.path);
  else
    rc = write_central_directory(w, err);
  if (rc == 0)
    rc = sg_io_atomic_commit(&w->file, err);
  else
    sg_io_atomic_discard(&w->file);
  writer_free(w);
  return rc;
}

void sg_npz_writer_abort(sg_npz_writer *w) {
  if (!w) return;
  sg_io_atomic_discard(&w->file);
  writer_free(w);
}
