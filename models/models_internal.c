/* The helpers shared by every folder of the association code. */
#include "models_internal.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int assoc_fail(sg_io_error *err, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return -1;
}

const char *assoc_enum_name(const char *const *names, int n, int value) {
  return value >= 0 && value < n ? names[value] : "unknown";
}

int assoc_enum_parse(const char *const *names, int n, const char *name) {
  for (int i = 0; name && i < n; i++)
    if (!strcasecmp(name, names[i])) return i;
  return -1;
}

void *assoc_zalloc(size_t count, size_t size) {
  if (size && count > SIZE_MAX / size) return NULL;
  void *p = sg_malloc(count * size);
  if (p) memset(p, 0, count * size);
  return p;
}
