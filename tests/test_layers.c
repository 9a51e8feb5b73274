#include "sg_test.h"

Suite *suite_layers(void) {
  Suite *s = suite_create("layers");
  return s;
}
