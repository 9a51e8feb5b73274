#include "sg_test.h"

Suite *suite_matmul(void) {
  Suite *s = suite_create("matmul");
  return s;
}
