/* Shared helpers for the Check test suite. Each tests/test_*.c file defines
 * one Suite constructor listed in test_main.c. */
#ifndef SG_TEST_H
#define SG_TEST_H

#include <check.h>
#include <math.h>
#include <stdio.h>

#include "sinkgrad.h"

Suite *suite_tensor(void);
Suite *suite_npy(void);
Suite *suite_autograd(void);
Suite *suite_elementwise(void);
Suite *suite_reduce(void);
Suite *suite_matmul(void);
Suite *suite_shape(void);
Suite *suite_select(void);
Suite *suite_layers(void);
Suite *suite_sinkhorn(void);
Suite *suite_system(void);
Suite *suite_baselines(void);
Suite *suite_gnn(void);
Suite *suite_train(void);
Suite *suite_eval(void);

/* Asserts that a gradcheck/f32 check passed, printing its summary if not. */
#define SG_ASSERT_CHECK(res)                                                                       \
  do {                                                                                             \
    sg_gradcheck_result r_ = (res);                                                                \
    ck_assert_msg(r_.ok, "%s", r_.msg);                                                            \
    ck_assert_msg(r_.checked > 0, "nothing was compared");                                         \
  } while (0)

/* Absolute directory of the test fixtures (tests/fixtures), set by meson. */
#ifndef SG_FIXTURE_DIR
#define SG_FIXTURE_DIR "tests/fixtures"
#endif

#endif
