#include "sg_test.h"

Suite *suite_autograd(void) {
  Suite *s = suite_create("autograd");
  return s;
}
