/* Runs every suite, or the one named by the CK_RUN_SUITE environment
 * variable (meson registers one test per suite that way). */
#include <stdlib.h>
#include <string.h>

#include "sg_test.h"

sg_test_error_log sg_test_errors;

static void record_error(const char *op, const char *msg, const char *file, int line, void *u) {
  (void)u;
  sg_test_errors.count++;
  snprintf(sg_test_errors.op, sizeof sg_test_errors.op, "%s", op);
  snprintf(sg_test_errors.msg, sizeof sg_test_errors.msg, "%s", msg);
  snprintf(sg_test_errors.file, sizeof sg_test_errors.file, "%s", file ? file : "");
  sg_test_errors.line = line;
}

void sg_test_capture_errors(void) {
  sg_test_errors = (sg_test_error_log){0};
  sg_set_error_handler(record_error, NULL);
}

void sg_test_expect_report(const char *op, const char *file, int line,
                           const char *const *fragments) {
  ck_assert_int_eq(sg_test_errors.count, 1);
  ck_assert_str_eq(sg_test_errors.op, op);
  ck_assert_str_eq(sg_test_errors.file, file);
  ck_assert_int_eq(sg_test_errors.line, line);
  for (int i = 0; fragments[i]; i++)
    ck_assert_msg(strstr(sg_test_errors.msg, fragments[i]) != NULL, "'%s' not in message: %s",
                  fragments[i], sg_test_errors.msg);
}

Suite *sg_test_suite(const char *name, const sg_test_case *cases, size_t n, double timeout) {
  Suite *s = suite_create(name);
  for (size_t i = 0; i < n; i++) {
    TCase *tc = tcase_create(cases[i].name);
    if (timeout > 0) tcase_set_timeout(tc, timeout);
    tcase_add_test(tc, cases[i].test);
    suite_add_tcase(s, tc);
  }
  return s;
}

int64_t sg_test_allocations;

static void *count_alloc(size_t n, void *u) {
  (void)u;
  sg_test_allocations++;
  return malloc(n);
}
static void *count_realloc(void *p, size_t n, void *u) {
  (void)u;
  sg_test_allocations++;
  return realloc(p, n);
}
static void count_free(void *p, void *u) {
  (void)u;
  free(p);
}

void sg_test_count_allocations(void) {
  static const sg_allocator counting = {count_alloc, count_realloc, count_free, NULL};
  sg_test_allocations = 0;
  sg_set_allocator(&counting);
}

/* suite_tensor, suite_npy, ...: every line of suites.def. */
#define SUITE(name) suite_##name,
sg_tensor *sg_test_fixture(const char *family, const char *name, const char *part) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s_%s_%s.npy", SG_FIXTURE_DIR, family, name, part);
  sg_io_error err = {{0}};
  sg_tensor *t = sg_npy_load(path, &err);
  ck_assert_msg(t != NULL, "cannot load %s: %s", path, err.msg);
  ck_assert_int_eq(t->dtype, SG_F64);
  return t;
}

static Suite *(*const suites[])(void) = {
#include "suites.def"
};
#undef SUITE

int main(void) {
  SRunner *sr = srunner_create(NULL);
  for (size_t i = 0; i < sizeof suites / sizeof suites[0]; i++) srunner_add_suite(sr, suites[i]());
  srunner_run_all(sr, CK_VERBOSE);
  int failed = srunner_ntests_failed(sr), ran = srunner_ntests_run(sr);
  srunner_free(sr);
  /* A CK_RUN_SUITE that matches no suite runs nothing and would pass: a
   * suite_create name that differs from its line in suites.def. */
  if (ran == 0) {
    const char *name = getenv("CK_RUN_SUITE");
    fprintf(stderr, "no test ran: no suite_create(\"%s\")\n", name ? name : "");
    return EXIT_FAILURE;
  }
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
