/* Fuzz target: the command line of `assoc` (examples/assoc: the dispatch on
 * the subcommand, getopt_long through assoc_parse_options, every
 * subcommand's option values and their cross-checks), parsed and validated
 * by assoc_check_arguments without running the work. The input is the
 * argument list, one argument per line (argv[0] "assoc" is added). */
#include "cli.h"
#include "fuzz_common.h"

enum { MAX_ARGS = 64 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *argv[MAX_ARGS + 2] = {"assoc"};
  int argc = 1;
  /* every argument in its own allocation, so AddressSanitizer sees any
   * read past one or any pointer kept into a previous input's arguments */
  for (size_t start = 0; start <= size && argc <= MAX_ARGS;) {
    const uint8_t *nl = memchr(data + start, '\n', size - start);
    size_t len = nl ? (size_t)(nl - data) - start : size - start;
    if (!nl && len == 0 && argc > 1) break; /* a final newline ends the list */
    argv[argc] = malloc(len + 1);
    FUZZ_REQUIRE(argv[argc], "out of memory");
    memcpy(argv[argc], data + start, len);
    argv[argc][len] = '\0';
    argc++;
    start += len + 1;
  }
  argv[argc] = NULL;
  int rc = assoc_check_arguments(argc, argv);
  FUZZ_REQUIRE(rc == ASSOC_EXIT_OK || rc == ASSOC_EXIT_USAGE, "assoc_check_arguments: %d", rc);
  for (int i = 1; i < argc; i++) free(argv[i]);
  return 0;
}
