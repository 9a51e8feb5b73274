/* Round trip of one cache line between two CPUs, over time: a thread pinned
 * to CPU 0 and one pinned to CPU 1 bounce a counter; every 100 ms the median
 * round trip of that window is printed ("seconds median_ns trips"). On a
 * virtual machine the host may place the two virtual CPUs close together or
 * far apart, and move them; this shows which, and when (docs/ablation.md,
 * "Timings": the main job's training on 2 threads follows it).
 *
 *   build/bench/core_pingpong SECONDS */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { MAX_TRIPS = 1 << 20 }; /* more than 100 ms of the fastest trips */

static _Alignas(64) atomic_long ball; /* odd: sent by CPU 0, even: returned */
static atomic_int done;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* CPU 1: returns every odd value as the next even one. */
static void *echo(void *arg) {
  (void)arg;
  pin(1); /* unpinned when CPU 1 is not ours: still answers */
  while (!atomic_load(&done)) {
    long b = atomic_load_explicit(&ball, memory_order_acquire);
    if (b & 1) atomic_store_explicit(&ball, b + 1, memory_order_release);
  }
  return NULL;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Round trips for 100 ms (at most MAX_TRIPS) into rt; their number. */
static int window(double *rt, long *b) {
  int n = 0;
  for (double start = now(); now() - start < 0.1 && n < MAX_TRIPS; n++) {
    double s = now();
    atomic_store_explicit(&ball, ++*b, memory_order_release);
    while (atomic_load_explicit(&ball, memory_order_acquire) != *b + 1) {
    }
    ++*b;
    rt[n] = now() - s;
  }
  return n;
}

int main(int argc, char **argv) {
  double seconds = argc == 2 ? atof(argv[1]) : 0;
  if (!(seconds > 0)) {
    fprintf(stderr, "usage: core_pingpong SECONDS\n");
    return 2;
  }
  pthread_t t;
  if (pin(0) || pthread_create(&t, NULL, echo, NULL)) {
    fprintf(stderr, "core_pingpong: needs CPUs 0 and 1\n");
    return 1;
  }
  static double rt[MAX_TRIPS];
  long b = 0;
  for (double t0 = now(), w = t0; w - t0 < seconds; w = now()) {
    int n = window(rt, &b);
    qsort(rt, (size_t)n, sizeof *rt, by_value);
    printf("%.1f %.0f %d\n", w - t0, 1e9 * rt[n / 2], n);
    fflush(stdout);
  }
  atomic_store(&done, 1);
  pthread_join(t, NULL);
  return 0;
}
