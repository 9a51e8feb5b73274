#include "sg_test.h"

Suite *suite_sinkhorn(void) {
  Suite *s = suite_create("sinkhorn");
  return s;
}
