/* Private to models/: what every folder of the association code shares.
 *
 * One error convention: a function that can fail returns 0, or -1 with a
 * message in an sg_io_error (which may be NULL when the caller does not
 * want the message). assoc_fail is the one way to produce that -1. */
#ifndef ASSOC_MODELS_INTERNAL_H
#define ASSOC_MODELS_INTERNAL_H

#include <stddef.h>

#include "sg_io.h"

/* Formats the message into err (when not NULL) and returns -1. */
int assoc_fail(sg_io_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* count * size zeroed bytes from sg_malloc: every allocation of the models
 * goes through the library's allocator, whose hooks count them in the
 * tests. NULL when out of memory or when the size overflows. */
void *assoc_zalloc(size_t count, size_t size);

/* The names of an enum's values: names[i] for 0 <= i < n, else "unknown";
 * and the value of a name (any case), -1 when none matches. */
const char *assoc_enum_name(const char *const *names, int n, int value);
int assoc_enum_parse(const char *const *names, int n, const char *name);

#endif
