/* A test allocator that fails the n-th allocation, for tests that walk
 * every allocation of an operation: it counts the calls to the alloc and
 * realloc hooks, returns NULL from call number fail_at (0: never), and
 * tracks the blocks live through it, so that after freeing everything a
 * test can assert that nothing leaked (under ASan's leak checker too).
 * Install it with fail_alloc_install before the first allocation of the
 * walk, and restore the default (sg_set_allocator(NULL)) only after the
 * last block it handed out was freed. To see where allocation n comes
 * from, run the test under gdb with FAIL_ALLOC_TRAP=n (and CK_FORK=no):
 * the call that fails as number n traps. */
#ifndef FAIL_ALLOC_H
#define FAIL_ALLOC_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sg_test.h"

typedef struct fail_alloc {
  int64_t calls;   /* alloc and realloc calls so far */
  int64_t fail_at; /* the call that returns NULL; 0: none */
  bool persistent; /* and every later call too (memory gone for good) */
  int64_t failed;  /* calls that returned NULL */
  int64_t live;    /* blocks allocated through the hooks and not yet freed */
} fail_alloc;

static inline bool fail_alloc_now(fail_alloc *f) {
  ++f->calls;
  if (f->fail_at == 0 || f->calls < f->fail_at || (f->calls > f->fail_at && !f->persistent))
    return false;
  const char *trap = getenv("FAIL_ALLOC_TRAP");
  if (trap && atoll(trap) == f->calls) __builtin_trap();
  f->failed++;
  return true;
}

static inline void *fail_alloc_alloc(size_t n, void *user) {
  fail_alloc *f = user;
  if (fail_alloc_now(f)) return NULL;
  void *p = malloc(n);
  f->live += p != NULL;
  return p;
}

static inline void *fail_alloc_realloc(void *p, size_t n, void *user) {
  fail_alloc *f = user;
  if (fail_alloc_now(f)) return NULL; /* p stays valid, as realloc leaves it */
  void *q = realloc(p, n);
  f->live += q && !p;
  return q;
}

static inline void fail_alloc_free(void *p, void *user) {
  fail_alloc *f = user;
  f->live--;
  free(p);
}

/* Installs f, failing call number fail_at (0: none), with fresh counts. */
static inline void fail_alloc_install(fail_alloc *f, int64_t fail_at) {
  *f = (fail_alloc){.fail_at = fail_at};
  sg_allocator a = {fail_alloc_alloc, fail_alloc_realloc, fail_alloc_free, f};
  sg_set_allocator(&a);
}

/* The first report since fail_alloc_capture_errors (later ones may be
 * consequences: a caller's own message), and how many there were. */
typedef struct fail_alloc_report {
  int count;
  char op[64], msg[512];
} fail_alloc_report;
static fail_alloc_report fail_alloc_first;

static inline void fail_alloc_record(const char *op, const char *msg, const char *file, int line,
                                     void *user) {
  (void)file, (void)line, (void)user;
  if (fail_alloc_first.count++ > 0) return;
  snprintf(fail_alloc_first.op, sizeof fail_alloc_first.op, "%s", op ? op : "");
  snprintf(fail_alloc_first.msg, sizeof fail_alloc_first.msg, "%s", msg);
}

/* Installs a handler that records and returns, so that a failed
 * allocation makes the op return NULL; clears the record. */
static inline void fail_alloc_capture_errors(void) {
  fail_alloc_first = (fail_alloc_report){0};
  sg_set_error_handler(fail_alloc_record, NULL);
}

/* Asserts that the first report since the capture names an op and says
 * "out of memory", for the n-th allocation of `what`. */
static inline void fail_alloc_expect_report(const char *what, int64_t n) {
  ck_assert_msg(fail_alloc_first.count > 0, "%s, allocation %lld failed: nothing was reported",
                what, (long long)n);
  ck_assert_msg(fail_alloc_first.op[0] != '\0', "%s, allocation %lld: the report names no op", what,
                (long long)n);
  ck_assert_msg(strstr(fail_alloc_first.msg, "out of memory") != NULL,
                "%s, allocation %lld: the report of %s says \"%s\", not out of memory", what,
                (long long)n, fail_alloc_first.op, fail_alloc_first.msg);
}

#endif
