/* Reading .npz archives: a zip file of "name.npy" members, stored or
 * raw-deflated, as numpy.savez / numpy.savez_compressed write them. The whole
 * archive is read and checked (sizes, CRCs) when it is opened. */
#include "io_internal.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- .npz reading: the central directory ------------------------------- */

typedef struct zip_directory {
  uint64_t count, offset, size;
} zip_directory;

static int corrupt(sg_io_error *err, const char *path, const char *problem) {
  return sg_io_fail(err, "%s: corrupt or unsupported zip archive (%s)", path, problem);
}

/* The end record sits at the very end, after a comment of up to 64 KiB:
 * search backwards for a signature whose comment length reaches the end. */
static int find_end_record(int fd, uint64_t file_size, const char *path, uint64_t *end_pos,
                           uint8_t *record, sg_io_error *err) {
  if (file_size < ZIP_END_SIZE)
    return sg_io_fail(err, "%s: not an .npz archive (too short for a zip file)", path);
  size_t tail_len = file_size < ZIP_END_SIZE + 0xFFFF ? (size_t)file_size : ZIP_END_SIZE + 0xFFFF;
  uint8_t *tail = sg_malloc(tail_len);
  if (!tail) return sg_io_fail_oom(err, path);
  if (sg_io_read_exact_at(fd, tail, tail_len, file_size - tail_len, path, err)) {
    sg_mfree(tail);
    return -1;
  }
  int rc = sg_io_fail(err, "%s: not an .npz archive (no zip end-of-directory record)", path);
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
  if (sg_io_read_exact_at(fd, loc, sizeof loc, *end_pos - sizeof loc, path, err)) return -1;
  if (get_u32(loc) != ZIP64_LOCATOR_SIG) return corrupt(err, path, "zip64 locator missing");
  uint64_t rec_pos = get_u64(loc + 8);
  if (get_u32(loc + 4) != 0 || rec_pos > *end_pos - sizeof loc ||
      *end_pos - sizeof loc - rec_pos < sizeof rec)
    return corrupt(err, path, "bad zip64 locator");
  if (sg_io_read_exact_at(fd, rec, sizeof rec, rec_pos, path, err)) return -1;
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
    return sg_io_fail(err, "%s: local header offset is out of range", what);
  if (sg_io_read_exact_at(fd, h, sizeof h, ce->offset, what, err)) return -1;
  if (get_u32(h) != ZIP_LOCAL_SIG) return sg_io_fail(err, "%s: bad local header signature", what);
  size_t name_len = get_u16(h + 26), extra_len = get_u16(h + 28);
  *data_pos = ce->offset + sizeof h + name_len + extra_len;
  if (*data_pos > dir->offset || dir->offset - *data_pos < ce->comp_size)
    return sg_io_fail(err, "%s: data runs into the central directory", what);
  if (get_u16(h + 6) & (ZIP_FLAG_ENCRYPTED | ZIP_FLAG_STRONG_ENCRYPTION))
    return sg_io_fail(err, "%s: is encrypted", what);
  if (name_len != ce->name_len) return sg_io_fail(err, "%s: local header names another file", what);
  uint8_t *name = sg_malloc(name_len);
  if (!name) return sg_io_fail_oom(err, what);
  int rc = sg_io_read_exact_at(fd, name, name_len, ce->offset + sizeof h, what, err);
  if (rc == 0 && memcmp(name, ce->name, name_len) != 0)
    rc = sg_io_fail(err, "%s: local header names another file", what);
  sg_mfree(name);
  return rc;
}

static int check_member_entry(const central_entry *ce, const char *what, sg_io_error *err) {
  if (ce->flags & (ZIP_FLAG_ENCRYPTED | ZIP_FLAG_STRONG_ENCRYPTION))
    return sg_io_fail(err, "%s: is encrypted", what);
  if (ce->method != ZIP_STORED && ce->method != ZIP_DEFLATED)
    return sg_io_fail(err, "%s: compression method %u is not supported (only stored and deflate)",
                      what, (unsigned)ce->method);
  if (ce->size > ZIP_MAX32 || ce->comp_size > ZIP_MAX32)
    return sg_io_fail(err, "%s: is larger than 4 GiB, which is not supported", what);
  if (ce->method == ZIP_STORED && ce->size != ce->comp_size)
    return sg_io_fail(err, "%s: stored member has different sizes", what);
  return 0;
}

/* Streams one member into m, checking its CRC. A member with a dtype or
 * layout we do not load is still read through (for the CRC) and kept with
 * its reason, so one odd member does not make the whole archive unreadable. */
static int read_member_data(byte_source *src, const central_entry *ce, const char *what,
                            npz_member *m, sg_io_error *err) {
  int rc = sg_io_read_npy_array(src, what, &m->array, err);
  if (rc == NPY_UNSUPPORTED) {
    m->unsupported = sg_io_copy_string(err->msg);
    rc = m->unsupported ? sg_io_source_skip_rest(src, what, err) : sg_io_fail_oom(err, what);
  }
  if (rc == 0) rc = sg_io_source_finish(src, what, err);
  if (rc == 0 && src->crc != ce->crc)
    rc = sg_io_fail(err, "%s has CRC mismatch (directory %08x, data %08x)", what, (unsigned)ce->crc,
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
    if (sg_io_source_inflating(&src, fd, data_pos, ce->comp_size, ce->size, what, err)) return -1;
  } else {
    sg_io_source_plain(&src, fd, ce->size);
    src.pos = data_pos;
  }
  sg_io_error local; /* holds the reason for an unsupported member, too */
  int rc = read_member_data(&src, ce, what, m, &local);
  sg_io_source_close(&src);
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
  if (!m->name) return sg_io_fail_oom(err, z->path);
  memcpy(m->name, ce->name, n);
  m->name[n] = '\0';
  for (int i = 0; i < z->count; i++) {
    if (strcmp(z->members[i].name, m->name) == 0) {
      sg_io_fail(err, "%s: two members are named '%s.npy'", z->path, m->name);
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
  if (!z) return sg_io_fail_null(err, "%s: out of memory", path);
  memset(z, 0, sizeof *z);
  z->path = sg_io_copy_string(path);
  z->members = sg_malloc((size_t)count * sizeof *z->members);
  if (!z->path || !z->members) {
    sg_npz_close(z);
    return sg_io_fail_null(err, "%s: out of memory", path);
  }
  return z;
}

static sg_npz *read_archive(int fd, uint64_t size, const char *path, sg_io_error *err) {
  zip_directory dir;
  if (find_directory(fd, size, path, &dir, err)) return NULL;
  uint8_t *cd = sg_malloc((size_t)dir.size); /* bounded by the file size */
  if (!cd) return sg_io_fail_null(err, "%s: out of memory", path);
  sg_npz *z = NULL;
  if (sg_io_read_exact_at(fd, cd, (size_t)dir.size, dir.offset, path, err) == 0)
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
  if (sg_io_open_input(path, &fd, &size, err)) return NULL;
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
  if (!z) return sg_io_fail_null(err, "sg_npz: archive is NULL");
  const npz_member *m = find_member(z, name);
  if (!m) return sg_io_fail_null(err, "%s: no member named '%s'", z->path, name ? name : "(null)");
  if (m->unsupported) return sg_io_fail_null(err, "%s", m->unsupported);
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
    return sg_io_fail_null(err, "%s: member '%s': invalid tensor dtype %d", z->path, name, (int)dt);
  sg_tensor *t = sg_empty(NULL, dt, a->ndim, a->shape);
  if (!t) return sg_io_fail_null(err, "%s: out of memory", z->path);
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
    return sg_io_fail(err, "%s: member '%s' has %lld elements, not one", z->path, name,
                      (long long)a->numel);
  if (out) *out = element_as_double(a, 0);
  return 0;
}
