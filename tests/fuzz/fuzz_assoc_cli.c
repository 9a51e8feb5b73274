/* Fuzz target: the command line of `assoc` (examples/assoc: the dispatch on
 * the subcommand, getopt_long through assoc_parse_options, every
 * subcommand's option values and their cross-checks), parsed and validated
 * by assoc_check_arguments without running the work. The input is the
 * argument list, one argument per line (argv[0] "assoc" is added).
 *
 * Each list is parsed twice, from two copies that both stay allocated
 * until the end: the second parse must give what the first gave, so any
 * state a parse leaves behind for the next (getopt's position in an
 * argument, say) shows up deterministically, and not only when freed
 * memory happens to be reused. */
#include "cli.h"
#include "fuzz_common.h"

enum { MAX_ARGS = 64 };

typedef struct arg_list {
  int argc;
  char *argv[MAX_ARGS + 2];
} arg_list;

/* Every argument in its own allocation, so AddressSanitizer sees a read
 * past one. */
static void split_lines(const uint8_t *data, size_t size, arg_list *l) {
  l->argv[0] = "assoc";
  l->argc = 1;
  for (size_t start = 0; start <= size && l->argc <= MAX_ARGS;) {
    const uint8_t *nl = memchr(data + start, '\n', size - start);
    size_t len = nl ? (size_t)(nl - data) - start : size - start;
    if (!nl && len == 0 && l->argc > 1) break; /* a final newline ends the list */
    char *arg = malloc(len + 1);
    FUZZ_REQUIRE(arg, "out of memory");
    memcpy(arg, data + start, len);
    arg[len] = '\0';
    l->argv[l->argc++] = arg;
    start += len + 1;
  }
  l->argv[l->argc] = NULL;
}

static void free_list(arg_list *l) {
  for (int i = 1; i < l->argc; i++) free(l->argv[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  arg_list first, again;
  split_lines(data, size, &first);
  split_lines(data, size, &again);
  int rc = assoc_check_arguments(first.argc, first.argv);
  FUZZ_REQUIRE(rc == ASSOC_EXIT_OK || rc == ASSOC_EXIT_USAGE, "assoc_check_arguments: %d", rc);
  int rc_again = assoc_check_arguments(again.argc, again.argv);
  FUZZ_REQUIRE(rc_again == rc, "the same arguments parsed again give %d, first %d", rc_again, rc);
  free_list(&first);
  free_list(&again);
  return 0;
}
