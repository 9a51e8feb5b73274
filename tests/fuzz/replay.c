/* Replays committed inputs through a fuzz target's LLVMFuzzerTestOneInput,
 * built with the normal compiler and no libFuzzer: every file in the
 * directories given (a missing directory holds none), in name order. The
 * target's own checks abort on an unclean outcome, so a crash, a failed
 * check or a sanitizer report fails the test. At least one input must be
 * found, so a misplaced corpus cannot pass as an empty one. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno)), -1;
  size_t cap = 1 << 16, n = 0;
  uint8_t *buf = malloc(cap);
  for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
    n += got;
    if (n == cap) {
      uint8_t *bigger = realloc(buf, cap *= 2);
      if (!bigger) free(buf);
      buf = bigger;
    }
  }
  fclose(f);
  if (!buf) return fprintf(stderr, "replay: out of memory for %s\n", path), -1;
  LLVMFuzzerTestOneInput(buf, n);
  free(buf);
  return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_input(const struct dirent *e) {
  return e->d_name[0] != '.';
}

/* The number of inputs replayed, or -1. */
static int replay_dir(const char *dir) {
  struct dirent **names;
  int n = scandir(dir, &names, is_input, by_name);
  if (n < 0 && errno == ENOENT) return 0;
  if (n < 0) return fprintf(stderr, "replay: cannot read %s: %s\n", dir, strerror(errno)), -1;
  int rc = 0;
  for (int i = 0; i < n; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
    if (rc == 0 && replay_file(path)) rc = -1;
    free(names[i]);
  }
  free(names);
  return rc ? -1 : n;
}

int main(int argc, char **argv) {
  int total = 0;
  for (int i = 1; i < argc; i++) {
    int n = replay_dir(argv[i]);
    if (n < 0) return 1;
    printf("%s: %d inputs\n", argv[i], n);
    total += n;
  }
  if (total == 0) return fprintf(stderr, "replay: no inputs found\n"), 1;
  printf("replayed %d inputs: no crash, every failure a clean error\n", total);
  return 0;
}
