/* The version the library was built as (sg_version.h is generated from the
 * meson project version). */
#include "sg_version.h"

const char *sg_version(void) {
  return SG_VERSION_STRING;
}

int sg_version_number(void) {
  return SG_VERSION_NUMBER;
}
