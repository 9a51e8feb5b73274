#include "sg_test.h"

Suite *suite_select(void) {
  Suite *s = suite_create("select");
  return s;
}
