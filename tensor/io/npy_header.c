/* The .npy header: magic, version, header length, then a Python dict
 * literal giving the dtype, the memory order and the shape, padded so the
 * row-major data that follows starts 64-byte aligned. */
#include "io_internal.h"

#include <stdio.h>
#include <string.h>

enum {
  NPY_MAX_HEADER = 1 << 20, /* larger headers are refused as implausible */
  NPY_ALIGN = 64,           /* numpy pads the header so data starts 64-aligned */
};

/* ---- dtypes ------------------------------------------------------------ */

/* The first six are indexed by sg_npy_type and are what we write; the rest
 * are read only and widened losslessly to a type above. */
const char *sg_npy_type_name(sg_npy_type t) {
  static const char *const names[] = {"float32", "float64", "int32", "int64", "uint8", "bool"};
  return t >= SG_NPY_F32 && t <= SG_NPY_BOOL ? names[t] : "unknown";
}

const npy_dtype sg_io_npy_dtypes[] = {
    {"<f4", SG_NPY_F32, 4, true},  {"<f8", SG_NPY_F64, 8, true}, {"<i4", SG_NPY_I32, 4, true},
    {"<i8", SG_NPY_I64, 8, true},  {"|u1", SG_NPY_U8, 1, false}, {"|b1", SG_NPY_BOOL, 1, false},
    {"|i1", SG_NPY_I32, 1, true},  {"<i2", SG_NPY_I32, 2, true}, {"<u2", SG_NPY_I32, 2, false},
    {"<u4", SG_NPY_I64, 4, false},
};

static const npy_dtype *find_dtype(const char *descr) {
  for (size_t i = 0; i < sizeof sg_io_npy_dtypes / sizeof sg_io_npy_dtypes[0]; i++)
    if (strcmp(sg_io_npy_dtypes[i].descr, descr) == 0) return &sg_io_npy_dtypes[i];
  return NULL;
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

static int unsupported_dtype(const char *descr, const char *what, sg_io_error *err) {
  if (descr[0] == '>')
    sg_io_fail(err, "%s: unsupported dtype '%s' (big-endian; only little-endian is read)", what,
               descr);
  else if (strcmp(descr, "|O") == 0)
    sg_io_fail(err, "%s: unsupported dtype '|O' (object arrays are not supported)", what);
  else
    sg_io_fail(err, "%s: unsupported dtype '%s'", what, descr);
  return NPY_UNSUPPORTED;
}

/* Element count with overflow detection; a zero size anywhere gives 0. */
bool sg_io_count_elements(int ndim, const int64_t *shape, int64_t *numel) {
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
    sg_io_fail(err, "%s: unsupported dtype (structured/record dtypes are not supported)", what);
    return NPY_UNSUPPORTED;
  }
  h->dtype = find_dtype(f->descr);
  if (!h->dtype) return unsupported_dtype(f->descr, what, err);
  if (f->fortran_order) {
    sg_io_fail(err, "%s: fortran_order is True; only C-order (row-major) arrays are supported",
               what);
    return NPY_UNSUPPORTED;
  }
  if (f->ndim > SG_MAX_DIMS) {
    sg_io_fail(err, "%s: %d dimensions; at most %d are supported", what, f->ndim, SG_MAX_DIMS);
    return NPY_UNSUPPORTED;
  }
  h->ndim = f->ndim;
  memcpy(h->shape, f->shape, sizeof h->shape);
  if (!sg_io_count_elements(h->ndim, h->shape, &h->numel))
    return sg_io_fail(err, "%s: malformed .npy header (the shape's size overflows)", what);
  return 0;
}

/* The data must fill exactly what is left of the file or member. */
static int check_data_size(const byte_source *s, const npy_header *h, const char *what,
                           sg_io_error *err) {
  uint64_t need = (uint64_t)h->numel, size = (uint64_t)h->dtype->file_size;
  unsigned long long left = s->out_left;
  if (need > UINT64_MAX / size || need * size > left)
    return sg_io_fail(err,
                      "%s: data is truncated (the shape needs more than the %llu bytes present)",
                      what, left);
  if (need * size < left)
    return sg_io_fail(err, "%s: %llu unexpected bytes after the array data", what,
                      left - (unsigned long long)(need * size));
  return 0;
}

static int parse_header_text(const char *text, size_t len, npy_header *h, const char *what,
                             sg_io_error *err) {
  header_fields f;
  memset(&f, 0, sizeof f);
  cursor c = {text, text + len};
  const char *problem = parse_dict(&c, &f);
  if (problem) return sg_io_fail(err, "%s: malformed .npy header (%s)", what, problem);
  return interpret_fields(&f, h, what, err);
}

/* Returns 0, -1 (bad or unreadable) or NPY_UNSUPPORTED, with err filled. */
int sg_io_read_npy_header(byte_source *s, const char *what, npy_header *h, sg_io_error *err) {
  uint8_t pre[12];
  if (s->out_left < 10)
    return sg_io_fail(err, "%s: too short to be a .npy file (%llu bytes)", what,
                      (unsigned long long)s->out_left);
  if (sg_io_source_read(s, pre, 8, what, err)) return -1;
  if (memcmp(pre, "\x93NUMPY", 6) != 0)
    return sg_io_fail(err, "%s: not a .npy file (bad magic)", what);
  int major = pre[6], minor = pre[7];
  if (major < 1 || major > 3 || minor != 0)
    return sg_io_fail(err, "%s: unsupported .npy format version %d.%d", what, major, minor);
  /* version 1 has a 2-byte header length, versions 2 and 3 a 4-byte one */
  if (sg_io_source_read(s, pre + 8, major == 1 ? 2 : 4, what, err)) return -1;
  uint32_t len = major == 1 ? get_u16(pre + 8) : get_u32(pre + 8);
  if (len > s->out_left)
    return sg_io_fail(err, "%s: truncated (header length %u, but only %llu bytes follow)", what,
                      (unsigned)len, (unsigned long long)s->out_left);
  if (len > NPY_MAX_HEADER)
    return sg_io_fail(err, "%s: header length %u is implausibly large", what, (unsigned)len);
  char *text = sg_malloc(len + 1);
  if (!text) return sg_io_fail_oom(err, what);
  int rc = sg_io_source_read(s, text, len, what, err);
  if (rc == 0) rc = parse_header_text(text, len, h, what, err);
  sg_mfree(text);
  return rc == 0 ? check_data_size(s, h, what, err) : rc;
}

/* ---- .npy header: writing ------------------------------------------------ */

static size_t round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}

/* Fills buf with magic, version, header length and the padded header,
 * byte-for-byte as numpy.save writes them; returns the length. */
size_t sg_io_format_npy_header(uint8_t *buf, const char *descr, int ndim, const int64_t *shape) {
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
