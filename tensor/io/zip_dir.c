/* The zip container of an .npz: the end record (zip64 too), the central
 * directory's entries, and a member's local header, each checked against
 * the file's size and the directory before it is used. */
#include "io_internal.h"

#include <string.h>

/* ---- the central directory --------------------------------------------- */

int sg_io_zip_corrupt(sg_io_error *err, const char *path, const char *problem) {
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
  if (*end_pos < ZIP64_LOCATOR_SIZE) return sg_io_zip_corrupt(err, path, "zip64 locator missing");
  if (sg_io_read_exact_at(fd, loc, sizeof loc, *end_pos - sizeof loc, path, err)) return -1;
  if (get_u32(loc) != ZIP64_LOCATOR_SIG)
    return sg_io_zip_corrupt(err, path, "zip64 locator missing");
  uint64_t rec_pos = get_u64(loc + 8);
  if (get_u32(loc + 4) != 0 || rec_pos > *end_pos - sizeof loc ||
      *end_pos - sizeof loc - rec_pos < sizeof rec)
    return sg_io_zip_corrupt(err, path, "bad zip64 locator");
  if (sg_io_read_exact_at(fd, rec, sizeof rec, rec_pos, path, err)) return -1;
  if (get_u32(rec) != ZIP64_END_SIG) return sg_io_zip_corrupt(err, path, "bad zip64 end record");
  if (get_u32(rec + 16) != 0 || get_u32(rec + 20) != 0)
    return sg_io_zip_corrupt(err, path, "multi-disk archive");
  dir->count = get_u64(rec + 32);
  dir->size = get_u64(rec + 40);
  dir->offset = get_u64(rec + 48);
  *end_pos = rec_pos;
  return 0;
}

int sg_io_zip_find_directory(int fd, uint64_t file_size, const char *path, zip_directory *dir,
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
    return sg_io_zip_corrupt(err, path, "multi-disk archive");
  }
  if (dir->size > end_pos || dir->offset > end_pos - dir->size)
    return sg_io_zip_corrupt(err, path, "central directory lies outside the file");
  if (dir->count > dir->size / ZIP_CENTRAL_SIZE)
    return sg_io_zip_corrupt(err, path, "central directory is too small for its entry count");
  return 0;
}

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

int sg_io_zip_parse_central_entry(const uint8_t *dir, size_t dir_len, size_t *pos, central_entry *e,
                                  const char *path, sg_io_error *err) {
  const uint8_t *h = dir + *pos;
  if (dir_len - *pos < ZIP_CENTRAL_SIZE || get_u32(h) != ZIP_CENTRAL_SIG)
    return sg_io_zip_corrupt(err, path, "bad central directory entry");
  size_t name_len = get_u16(h + 28), extra_len = get_u16(h + 30), comment_len = get_u16(h + 32);
  if (dir_len - *pos - ZIP_CENTRAL_SIZE < name_len + extra_len + comment_len)
    return sg_io_zip_corrupt(err, path, "central directory entry runs past the directory");
  e->flags = get_u16(h + 8);
  e->method = get_u16(h + 10);
  e->crc = get_u32(h + 16);
  e->comp_size = get_u32(h + 20);
  e->size = get_u32(h + 24);
  e->offset = get_u32(h + 42);
  e->name = h + ZIP_CENTRAL_SIZE;
  e->name_len = name_len;
  e->extra = e->name + name_len;
  e->extra_len = extra_len;
  if (apply_zip64_extra(e, e->name + name_len, extra_len))
    return sg_io_zip_corrupt(err, path, "bad zip64 extra field");
  *pos += ZIP_CENTRAL_SIZE + name_len + extra_len + comment_len;
  return 0;
}

/* ---- a member's local header --------------------------------------------- */

/* Finds where a member's data starts, checking its local header against
 * the directory (the local sizes may be 0xFFFFFFFF or zero: not used). */
int sg_io_zip_locate_data(int fd, const zip_directory *dir, const central_entry *ce,
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

int sg_io_zip_check_entry(const central_entry *ce, const char *what, sg_io_error *err) {
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
