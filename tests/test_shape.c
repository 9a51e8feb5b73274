#include "sg_test.h"

Suite *suite_shape(void) {
  Suite *s = suite_create("shape");
  return s;
}
