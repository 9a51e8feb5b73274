/* Seeded random draws: xoshiro256** seeded through splitmix64. Tensors are
 * filled sequentially from one generator, so a seed gives the same values on
 * every run and for every thread count. */
#include "sg_tensor.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

void sg_rng_seed(sg_rng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

uint64_t sg_rng_u64(sg_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

/* 53 random bits at the centre of their cell: never exactly 0 or 1, so
 * log(U) and log(-log U) are always finite. */
double sg_rng_uniform(sg_rng *r) {
  return ((double)(sg_rng_u64(r) >> 11) + 0.5) * 0x1.0p-53;
}

/* Box-Muller, one value per call (no cached spare, so the state is just s). */
double sg_rng_normal(sg_rng *r) {
  double u1 = sg_rng_uniform(r), u2 = sg_rng_uniform(r);
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double sg_rng_gumbel(sg_rng *r) {
  return -log(-log(sg_rng_uniform(r)));
}

/* Lemire's nearly-divisionless method would be faster; rejection keeps it
 * obviously unbiased. */
uint64_t sg_rng_below(sg_rng *r, uint64_t n) {
  if (n <= 1) return 0;
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = sg_rng_u64(r);
  while (x >= limit);
  return x % n;
}

typedef double (*draw_fn)(sg_rng *r, double a, double b);

static double draw_uniform(sg_rng *r, double lo, double hi) {
  return lo + (hi - lo) * sg_rng_uniform(r);
}
static double draw_normal(sg_rng *r, double mean, double std) {
  return mean + std * sg_rng_normal(r);
}
static double draw_gumbel(sg_rng *r, double a, double b) {
  (void)a, (void)b;
  return sg_rng_gumbel(r);
}

static sg_tensor *fill(sg_graph *g, sg_rng *r, sg_dtype dt, int ndim, const int64_t *shape,
                       draw_fn draw, double a, double b) {
  sg_tensor *t = sg_empty(g, dt, ndim, shape);
  if (!t) return NULL;
  for (int64_t i = 0; i < t->numel; i++) sg_set(t, i, draw(r, a, b));
  return t;
}

sg_tensor *sg_rand_uniform(sg_graph *g, sg_rng *r, sg_dtype dt, int ndim, const int64_t *shape,
                           double lo, double hi) {
  return fill(g, r, dt, ndim, shape, draw_uniform, lo, hi);
}

sg_tensor *sg_rand_normal(sg_graph *g, sg_rng *r, sg_dtype dt, int ndim, const int64_t *shape,
                          double mean, double std) {
  return fill(g, r, dt, ndim, shape, draw_normal, mean, std);
}

sg_tensor *sg_rand_gumbel(sg_graph *g, sg_rng *r, sg_dtype dt, int ndim, const int64_t *shape) {
  return fill(g, r, dt, ndim, shape, draw_gumbel, 0, 0);
}
