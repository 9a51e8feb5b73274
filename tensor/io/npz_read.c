/* Reading .npz archives: a zip file of "name.npy" members, stored or
 * raw-deflated, as numpy.savez / numpy.savez_compressed write them. The
 * archive is read and checked (sizes, CRCs) when it is opened: every member
 * whole, or some members only in a range of rows (sg_npz_open_rows). A
 * deflated member with a chunk index (npz_chunks.c) is inflated chunk by
 * chunk on all threads, only in the chunks that hold what is read. */
#include "io_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- .npz reading: members ---------------------------------------------- */

typedef struct npz_member {
  char *name;         /* without ".npy" */
  sg_array array;     /* data NULL when unsupported */
  char *unsupported;  /* why the member was not loaded, or NULL */
  int64_t rows_total; /* the file's first-axis length; -1: 0-d or unsupported */
  bool taken;         /* its data was moved out (sg_npz_take) */
} npz_member;

struct sg_npz {
  char *path;
  npz_member *members;
  int count;
};

/* Rows [lo, hi) of the members named (none: every member is read whole). */
typedef struct row_request {
  const char *const *names;
  int n_names;
  int64_t lo, hi;
} row_request;

/* One member being read: where its data is and what of it is wanted. */
typedef struct member_read {
  int fd;
  const central_entry *ce;
  uint64_t data_pos;
  const char *what;
  bool partial; /* rows [lo, hi) only */
  int64_t lo, hi;
} member_read;

enum { NOT_INDEXED = 3 }; /* the member has no usable chunk index: read it as a stream */

/* Opens a source on the member's bytes and reads its .npy header; returns
 * 0, -1 or NPY_UNSUPPORTED. Close src whatever the outcome. */
static int open_member(const member_read *r, byte_source *src, npy_header *h, sg_io_error *err) {
  const central_entry *ce = r->ce;
  if (ce->method == ZIP_DEFLATED) {
    if (sg_io_source_inflating(src, r->fd, r->data_pos, ce->comp_size, ce->size, r->what, err))
      return -1;
  } else {
    sg_io_source_plain(src, r->fd, ce->size);
    src->pos = r->data_pos;
  }
  return sg_io_read_npy_header(src, r->what, h, err);
}

/* The elements [*first, *first + *count) of the data that the read wants;
 * for rows, the rows must be there. */
static int wanted_elements(const member_read *r, const npy_header *h, int64_t *first,
                           int64_t *count, sg_io_error *err) {
  if (!r->partial) {
    *first = 0, *count = h->numel;
    return 0;
  }
  if (h->ndim == 0)
    return sg_io_fail(err, "%s: is 0-d (shape ()), so it has no rows %" PRId64 " to %" PRId64,
                      r->what, r->lo, r->hi);
  if (r->hi > h->shape[0])
    return sg_io_fail(err, "%s: rows [%" PRId64 ", %" PRId64 ") asked, but it has %" PRId64 " rows",
                      r->what, r->lo, r->hi, h->shape[0]);
  int64_t row = h->shape[0] > 0 ? h->numel / h->shape[0] : 0;
  *first = r->lo * row, *count = (r->hi - r->lo) * row;
  return 0;
}

/* The member's array: its shape, but hi - lo rows when read in part. */
static void set_array(npz_member *m, const member_read *r, const npy_header *h, int64_t count,
                      void *data) {
  sg_array *a = &m->array;
  a->type = h->dtype->type;
  a->ndim = h->ndim;
  memset(a->shape, 0, sizeof a->shape);
  memcpy(a->shape, h->shape, sizeof h->shape);
  if (r->partial) a->shape[0] = r->hi - r->lo;
  a->numel = count;
  a->data = data;
}

static void *alloc_elements(const npy_header *h, int64_t count) {
  size_t bytes = (size_t)count * sg_io_type_size(h->dtype->type); /* count <= bytes present */
  return sg_malloc(bytes ? bytes : 1);
}

/* Reads what is left of the member and checks its CRC. */
static int finish_member(const member_read *r, byte_source *src, sg_io_error *err) {
  if (sg_io_source_skip_rest(src, r->what, err) || sg_io_source_finish(src, r->what, err))
    return -1;
  if (src->crc != r->ce->crc)
    return sg_io_fail(err, "%s has CRC mismatch (directory %08x, data %08x)", r->what,
                      (unsigned)r->ce->crc, (unsigned)src->crc);
  return 0;
}

/* A member with a dtype or layout we do not load is still read through
 * (for the CRC) and kept with its reason, so one odd member does not make
 * the whole archive unreadable; asked for its rows, it is an error. */
static int keep_unsupported(const member_read *r, byte_source *src, npz_member *m,
                            sg_io_error *err) {
  if (r->partial) {
    size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof err->msg - n, " (rows %" PRId64 " to %" PRId64 " were asked)",
             r->lo, r->hi);
    return -1;
  }
  m->unsupported = sg_io_copy_string(err->msg);
  return m->unsupported ? finish_member(r, src, err) : sg_io_fail_oom(err, r->what);
}

/* Reads the member as one stream. Its CRC is checked when all of it is
 * read, and when rows of a deflated member are (inflated in passing), or
 * always with verify; not for rows of a stored member (only their bytes are
 * read) nor for no rows (only the header is). */
static int read_streamed(const member_read *r, bool verify, npz_member *m, sg_io_error *err) {
  byte_source src;
  npy_header h;
  int64_t first = 0, count = 0;
  void *data = NULL;
  int rc = open_member(r, &src, &h, err);
  if (rc == NPY_UNSUPPORTED) rc = keep_unsupported(r, &src, m, err);
  if (rc == 0 && !m->unsupported) {
    m->rows_total = h.ndim > 0 ? h.shape[0] : -1;
    rc = wanted_elements(r, &h, &first, &count, err);
    if (rc == 0 && !(data = alloc_elements(&h, count))) rc = sg_io_fail_oom(err, r->what);
    if (rc == 0) rc = sg_io_read_npy_elements(&src, &h, first, count, data, r->what, err);
    bool whole_crc = !r->partial || (src.inflating && (r->lo < r->hi || verify));
    if (rc == 0 && whole_crc) rc = finish_member(r, &src, err);
    if (rc == 0)
      set_array(m, r, &h, count, data);
    else
      sg_mfree(data);
  }
  sg_io_source_close(&src);
  return rc;
}

/* Reads the member through its chunk index; NOT_INDEXED when it has none
 * that serves (then nothing was kept), CHUNK_FAILED when a chunk disagrees
 * with the index. Every chunk read has its CRC checked. */
static int read_indexed(const member_read *r, const chunk_index *idx, npz_member *m,
                        sg_io_error *err) {
  byte_source src;
  npy_header h;
  int rc = open_member(r, &src, &h, err);
  uint64_t header_end = r->ce->size - src.out_left;
  sg_io_source_close(&src);
  if (rc) return NOT_INDEXED; /* a stream reads the same header and says what is wrong */
  int64_t first = 0, count = 0;
  if (wanted_elements(r, &h, &first, &count, err)) return -1;
  uint64_t elem = (uint64_t)h.dtype->file_size, from = header_end + (uint64_t)first * elem;
  chunk_job job = {r->fd,   r->data_pos, r->ce->size, idx,
                   h.dtype, header_end,  from,        from + (uint64_t)count * elem,
                   NULL,    r->what};
  if (!sg_io_chunks_fit(&job)) return NOT_INDEXED;
  if (!(job.dst = alloc_elements(&h, count))) return sg_io_fail_oom(err, r->what);
  rc = sg_io_inflate_chunks(&job, err);
  if (rc) {
    sg_mfree(job.dst);
    return rc;
  }
  m->rows_total = h.ndim > 0 ? h.shape[0] : -1;
  set_array(m, r, &h, count, job.dst);
  return 0;
}

static int read_with_index(const member_read *r, npz_member *m, sg_io_error *err) {
  if (r->ce->method != ZIP_DEFLATED) return NOT_INDEXED;
  chunk_index idx;
  int found = sg_io_chunk_index_decode(r->ce->extra, r->ce->extra_len, r->ce->size,
                                       r->ce->comp_size, r->ce->crc, &idx);
  if (found <= 0) return found < 0 ? sg_io_fail_oom(err, r->what) : NOT_INDEXED;
  int rc = read_indexed(r, &idx, m, err);
  sg_io_chunk_index_free(&idx);
  return rc;
}

/* A chunk that disagrees with a consistent index means damaged data or an
 * index that is wrong in a way its checks cannot see: the member is read
 * again as a stream, checked by its CRC, which decides. If that fails too,
 * the chunk's message is the one reported (it says where the damage is). */
static int read_member_data(const member_read *r, npz_member *m, sg_io_error *err) {
  int rc = read_with_index(r, m, err);
  if (rc == NOT_INDEXED) return read_streamed(r, false, m, err);
  if (rc != CHUNK_FAILED) return rc;
  sg_io_error chunk_err = *err;
  rc = read_streamed(r, true, m, err);
  if (rc) *err = chunk_err;
  return rc;
}

static bool asks_rows_of(const row_request *req, const char *name) {
  for (int i = 0; req && i < req->n_names; i++)
    if (strcmp(req->names[i], name) == 0) return true;
  return false;
}

static int read_member(int fd, const zip_directory *dir, const central_entry *ce, const char *path,
                       const row_request *req, npz_member *m, sg_io_error *err) {
  char what[WHAT_CAP];
  snprintf(what, sizeof what, "%s: member '%.*s'", path, (int)ce->name_len, (const char *)ce->name);
  member_read r = {fd, ce, 0, what, asks_rows_of(req, m->name), 0, 0};
  if (r.partial) r.lo = req->lo, r.hi = req->hi;
  if (sg_io_zip_check_entry(ce, what, err) ||
      sg_io_zip_locate_data(fd, dir, ce, what, &r.data_pos, err))
    return -1;
  sg_io_error local; /* holds the reason for an unsupported member, too */
  m->rows_total = -1;
  int rc = read_member_data(&r, m, &local);
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
  if (memchr(ce->name, 0, n))
    return sg_io_zip_corrupt(err, z->path, "member name contains a NUL byte");
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
static int load_members(int fd, const zip_directory *dir, const uint8_t *cd, const row_request *req,
                        sg_npz *z, sg_io_error *err) {
  size_t pos = 0;
  for (uint64_t i = 0; i < dir->count; i++) {
    central_entry ce;
    if (sg_io_zip_parse_central_entry(cd, (size_t)dir->size, &pos, &ce, z->path, err)) return -1;
    if (!is_npy_name(&ce)) continue;
    npz_member *m = &z->members[z->count];
    memset(m, 0, sizeof *m);
    if (set_member_name(z, m, &ce, err)) return -1;
    if (read_member(fd, dir, &ce, z->path, req, m, err)) {
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

static sg_npz *read_archive(int fd, uint64_t size, const char *path, const row_request *req,
                            sg_io_error *err) {
  zip_directory dir;
  if (sg_io_zip_find_directory(fd, size, path, &dir, err)) return NULL;
  uint8_t *cd = sg_malloc((size_t)dir.size); /* bounded by the file size */
  if (!cd) return sg_io_fail_null(err, "%s: out of memory", path);
  sg_npz *z = NULL;
  if (sg_io_read_exact_at(fd, cd, (size_t)dir.size, dir.offset, path, err) == 0)
    z = npz_new(path, dir.count, err);
  if (z && load_members(fd, &dir, cd, req, z, err)) {
    sg_npz_close(z);
    z = NULL;
  }
  sg_mfree(cd);
  return z;
}

/* ---- .npz reading: public API -------------------------------------------- */

static sg_npz *open_archive(const char *path, const row_request *req, sg_io_error *err) {
  int fd;
  uint64_t size;
  if (sg_io_open_input(path, &fd, &size, err)) return NULL;
  sg_npz *z = read_archive(fd, size, path, req, err);
  close(fd);
  return z;
}

sg_npz *sg_npz_open(const char *path, sg_io_error *err) {
  return open_archive(path, NULL, err);
}

static int check_row_request(const char *path, const row_request *req, sg_io_error *err) {
  const char *p = path ? path : "(null)";
  if (req->n_names < 0 || (req->n_names > 0 && !req->names))
    return sg_io_fail(err, "%s: sg_npz_open_rows: %d names at %p", p, req->n_names,
                      (const void *)req->names);
  for (int i = 0; i < req->n_names; i++)
    if (!req->names[i]) return sg_io_fail(err, "%s: sg_npz_open_rows: names[%d] is NULL", p, i);
  const char *first = req->n_names > 0 ? req->names[0] : "";
  if (req->lo < 0 || req->lo > req->hi)
    return sg_io_fail(err,
                      "%s: rows [%" PRId64 ", %" PRId64 ") of '%s'%s are not a range (need 0 <= "
                      "lo <= hi)",
                      p, req->lo, req->hi, first, req->n_names > 1 ? " and the others" : "");
  return 0;
}

sg_npz *sg_npz_open_rows(const char *path, const char *const *names, int n_names, int64_t lo,
                         int64_t hi, sg_io_error *err) {
  row_request req = {names, n_names, lo, hi};
  if (check_row_request(path, &req, err)) return NULL;
  return open_archive(path, &req, err);
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

int64_t sg_npz_rows_total(const sg_npz *z, const char *name) {
  const npz_member *m = find_member(z, name);
  return m ? m->rows_total : -1;
}

const sg_array *sg_npz_get(const sg_npz *z, const char *name) {
  const npz_member *m = find_member(z, name);
  return m && !m->unsupported && !m->taken ? &m->array : NULL;
}

int sg_npz_take(sg_npz *z, const char *name, sg_array *out) {
  npz_member *m = (npz_member *)find_member(z, name);
  if (!m || m->unsupported || m->taken || !out) return -1;
  *out = m->array;
  m->array.data = NULL, m->taken = true;
  return 0;
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
