/* Shared helpers for the Check test suite. Each tests/test_<name>.c file
 * defines one Suite constructor, suite_<name>, listed in suites.def. */
#ifndef SG_TEST_H
#define SG_TEST_H

#include <check.h>
#include <math.h>
#include <stdio.h>

#include "sinkgrad.h"

/* Suite *suite_tensor(void); ... one per line of suites.def. */
#define SUITE(name) Suite *suite_##name(void);
#include "suites.def"
#undef SUITE

/* A suite of one TCase per test case, named as the case, each with the
 * given timeout in seconds (0: Check's default). */
typedef struct sg_test_case {
  const char *name;
  const TTest *test;
} sg_test_case;
Suite *sg_test_suite(const char *name, const sg_test_case *cases, size_t n, double timeout);

/* Asserts that a gradcheck/f32 check passed, printing its summary if not. */
#define SG_ASSERT_CHECK(res)                                                                       \
  do {                                                                                             \
    sg_gradcheck_result r_ = (res);                                                                \
    ck_assert_msg(r_.ok, "%s", r_.msg);                                                            \
    ck_assert_msg(r_.checked > 0, "nothing was compared");                                         \
  } while (0)

/* The last API-misuse report, recorded by a handler that returns (so the
 * op returns NULL) instead of aborting. */
typedef struct sg_test_error_log {
  int count;
  char op[64], msg[512], file[256];
  int line;
} sg_test_error_log;
extern sg_test_error_log sg_test_errors;
/* Clears sg_test_errors and installs the recording handler; restore the
 * default with sg_set_error_handler(NULL, NULL). */
void sg_test_capture_errors(void);
/* Asserts exactly one report since the log was cleared, from op, at file and
 * line, whose message contains every fragment (NULL-terminated list). */
void sg_test_expect_report(const char *op, const char *file, int line,
                           const char *const *fragments);
/* CALL (an op called with the recording handler installed) returns NULL and
 * reports OP at this line with every fragment in its message; the op macro's
 * __LINE__ and ours agree because CALL expands on the same line. */
#define SG_EXPECT_MISUSE(CALL, OP, ...)                                                            \
  do {                                                                                             \
    sg_test_errors = (sg_test_error_log){0};                                                       \
    int line_ = __LINE__;                                                                          \
    ck_assert_ptr_null(CALL);                                                                      \
    sg_test_expect_report(OP, __FILE__, line_, (const char *[]){__VA_ARGS__, NULL});               \
  } while (0)

/* Allocations made through the library's hooks since
 * sg_test_count_allocations() installed the counting allocator (restore the
 * default with sg_set_allocator(NULL)). */
extern int64_t sg_test_allocations;
void sg_test_count_allocations(void);

/* Absolute directory of the test fixtures (tests/fixtures), set by meson. */
#ifndef SG_FIXTURE_DIR
#define SG_FIXTURE_DIR "tests/fixtures"
#endif

/* The float64 fixture SG_FIXTURE_DIR/<family>_<name>_<part>.npy (made by a
 * tests/make_*_fixtures.py script); fails the test if it cannot be loaded. */
sg_tensor *sg_test_fixture(const char *family, const char *name, const char *part);

#endif
