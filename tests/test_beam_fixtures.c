/* The beam ops (models/gnn/beamrate.c) against PyTorch: forward values and
 * gradients of assoc_beam_couplings, assoc_beam_normalize (projection and
 * full power), assoc_sum_rate with beams, and the models' chain
 * R(A, couplings(H, normalise(A, V))), in float64, on the fixtures of
 * tests/make_beam_fixtures.py (complex128 arithmetic written from the spec,
 * not from the C code). Cases: small random shapes with fractional and
 * integer A (dropped UEs), every BS exactly on its sphere (the projection's
 * kink, where the gradient is the inside branch's), and the models' shape
 * (B 64, M 2, K 8, N 4). */
#include <unistd.h>

#include "assoc_gnn.h"
#include "sg_test.h"

/* Tolerance, float64: |got - want| <= TOL (|want| + max|want|), max over
 * the compared tensor. The two sides compute the same real numbers in a
 * different order (PyTorch: complex einsum and its own reductions; here
 * real matrix products and sums along other axes), so they differ by
 * round-off alone, u = 2^-53 = 1.1e-16 per operation. The longest chain,
 * the gradient of -mean R through the normalisation, has a few tens of
 * dependent roundings (couplings: N products and sums; norm: K N squares
 * and sums, a square root, a division; rate: M products, K squared moduli
 * and sums, a division, log2; then as many backwards), and its reductions
 * err relative to the sum of their terms' magnitudes, hence the normwise
 * max|want| term (an element that cancels to near zero is as uncertain as
 * the terms it cancelled; where every element is exactly zero, the kink's
 * gradient in A, the check is exact). That bounds the error by about
 * 50 u = 5.5e-15; TOL = 1e-14 (90 u) allows it with a margin. Measured
 * worst case: 6.7e-16 (6 u, the chain at the models' shape). A wrong
 * formula (a transposed coupling, a missing a_km^2, h^H v instead of
 * h^T v, the outside branch's gradient at the kink) changes values at
 * 1e-2 relative and more. */
#define TOL 1e-14

static const char *const SMALL[] = {"s1", "s1i", "s2", "s2i", "kink"};
static const char *const ALL[] = {"s1", "s1i", "s2", "s2i", "kink", "model", "modeli"};
enum { NSMALL = sizeof SMALL / sizeof *SMALL, NALL = sizeof ALL / sizeof *ALL };

static const char *fixture_path(const char *c, const char *name) {
  static char path[512];
  snprintf(path, sizeof path, "%s/beams_%s_%s.npy", SG_FIXTURE_DIR, c, name);
  return path;
}

static sg_tensor *fixture(const char *c, const char *name) {
  sg_io_error err = {{0}};
  sg_tensor *t = sg_npy_load(fixture_path(c, name), &err);
  ck_assert_msg(t != NULL, "cannot load %s: %s", fixture_path(c, name), err.msg);
  ck_assert_int_eq(t->dtype, SG_F64);
  return t;
}

static double worst_seen; /* largest |got - want| / (|want| + max|want|), printed per test */

static void assert_close(const char *c, const char *what, const sg_tensor *got,
                         const sg_tensor *want) {
  ck_assert_msg(got != NULL, "%s %s: missing", c, what);
  ck_assert_msg(got->numel == want->numel, "%s %s: %lld values, expected %lld", c, what,
                (long long)got->numel, (long long)want->numel);
  double scale = 0;
  for (int64_t i = 0; i < want->numel; i++) scale = fmax(scale, fabs(sg_get(want, i)));
  for (int64_t i = 0; i < want->numel; i++) {
    double a = sg_get(got, i), b = sg_get(want, i), err = fabs(a - b);
    double rel = err / (fabs(b) + scale);
    if (rel > worst_seen) worst_seen = rel;
    ck_assert_msg(err <= TOL * (fabs(b) + scale),
                  "%s %s[%lld] = %.17g, PyTorch %.17g (err %.3g, %.3g of the scale)", c, what,
                  (long long)i, a, b, err, rel);
  }
}

/* Compares got with the fixture c_<name>. */
static void check(const char *c, const char *name, const sg_tensor *got) {
  sg_tensor *want = fixture(c, name);
  assert_close(c, name, got, want);
  sg_free(want);
}

/* ---- a case's inputs ------------------------------------------------------------------ */

enum { H_RE, H_IM, V_RE, V_IM, A_IN, NIN };
static const char *const IN_NAMES[NIN] = {"h_re", "h_im", "v_re", "v_im", "a"};

typedef struct beam_case {
  const char *name;
  sg_tensor *in[NIN]; /* each requires a gradient */
  double noise, power[8];
} beam_case;

static beam_case load_case(const char *name) {
  beam_case bc = {.name = name};
  for (int i = 0; i < NIN; i++) {
    bc.in[i] = fixture(name, IN_NAMES[i]);
    sg_set_requires_grad(bc.in[i], true);
  }
  sg_tensor *params = fixture(name, "params");
  int64_t M = bc.in[V_RE]->shape[1];
  ck_assert_int_eq(params->numel, 1 + M);
  ck_assert(M <= 8);
  bc.noise = sg_get(params, 0);
  for (int64_t m = 0; m < M; m++) bc.power[m] = sg_get(params, 1 + m);
  sg_free(params);
  return bc;
}

static void free_case(beam_case *bc) {
  for (int i = 0; i < NIN; i++) sg_free(bc->in[i]);
}

/* Backward from loss (gradients zeroed first), then each input's gradient
 * against the fixture <prefix>_<input> where the fixture has it (an input
 * the op does not read has none). Returns how many were compared. */
static int check_grads(sg_graph *g, beam_case *bc, sg_tensor *loss, const char *prefix) {
  for (int i = 0; i < NIN; i++) sg_zero_grad(bc->in[i]);
  ck_assert_ptr_nonnull(loss);
  sg_backward(g, loss);
  int compared = 0;
  for (int i = 0; i < NIN; i++) {
    char name[64];
    snprintf(name, sizeof name, "%s_%s", prefix, IN_NAMES[i]);
    if (access(fixture_path(bc->name, name), R_OK) != 0) continue;
    check(bc->name, name, bc->in[i]->grad);
    compared++;
  }
  return compared;
}

/* sum(w_re * c.re + w_im * c.im) with the fixture weights <w>_re, <w>_im. */
static sg_tensor *weighted(sg_graph *g, const char *c, const char *w, assoc_complex v) {
  char re[32], im[32];
  snprintf(re, sizeof re, "%s_re", w), snprintf(im, sizeof im, "%s_im", w);
  sg_tensor *own[2] = {fixture(c, re), fixture(c, im)};
  /* arena copies: the backward reads them after the owned ones are freed */
  sg_tensor *w_re = sg_clone(g, own[0]), *w_im = sg_clone(g, own[1]);
  sg_free(own[0]), sg_free(own[1]);
  return sg_add(g, sg_sum_all(g, sg_mul(g, v.re, w_re)), sg_sum_all(g, sg_mul(g, v.im, w_im)));
}

static void check_pair(const char *c, const char *name, assoc_complex v) {
  char re[32], im[32];
  snprintf(re, sizeof re, "%s_re", name), snprintf(im, sizeof im, "%s_im", name);
  check(c, re, v.re), check(c, im, v.im);
}

/* ---- the ops --------------------------------------------------------------------------- */

/* Runs body on each case (a fresh graph per case and mode, modes 0..modes-1)
 * and prints the worst error seen. */
typedef void (*case_body)(beam_case *bc, sg_graph *g, int mode);

static void run_cases(const char *test, const char *const *names, int n, int modes,
                      case_body body) {
  for (int i = 0; i < n; i++) {
    beam_case bc = load_case(names[i]);
    for (int mode = 0; mode < modes; mode++) {
      sg_graph *g = sg_graph_new();
      body(&bc, g, mode);
      sg_graph_free(g);
    }
    free_case(&bc);
  }
  printf("beam fixtures %s: worst error %.3g of the scale (tolerance %.3g)\n", test, worst_seen,
         TOL);
  worst_seen = 0;
}

static assoc_complex case_couplings(sg_graph *g, beam_case *bc, assoc_complex v) {
  return assoc_beam_couplings(g, bc->in[H_RE], bc->in[H_IM], v.re, v.im);
}

static assoc_complex case_beams(beam_case *bc) {
  return (assoc_complex){bc->in[V_RE], bc->in[V_IM]};
}

static assoc_complex case_normalize(sg_graph *g, beam_case *bc, int mode) {
  return assoc_beam_normalize(g, bc->in[A_IN], bc->in[V_RE], bc->in[V_IM], bc->power, mode);
}

/* "<prefix><mode><suffix>": a fixture name of one mode (rotating buffers). */
static const char *mode_name(const char *prefix, int mode, const char *suffix) {
  static char bufs[2][32];
  static int next;
  char *b = bufs[next++ % 2];
  snprintf(b, 32, "%s%d%s", prefix, mode, suffix);
  return b;
}

/* c[b,m,k,l] = h_mk^T v_ml and its gradient in H and V. */
static void couplings_body(beam_case *bc, sg_graph *g, int mode) {
  (void)mode;
  assoc_complex c = case_couplings(g, bc, case_beams(bc));
  check_pair(bc->name, "c", c);
  ck_assert_int_eq(check_grads(g, bc, weighted(g, bc->name, "wc", c), "gc"), 4);
}

START_TEST(fixtures_couplings) {
  run_cases("couplings", SMALL, NSMALL, 1, couplings_body);
}
END_TEST

/* Both modes, their gradients in A and V; BSs inside and outside the ball,
 * integer A with dropped UEs, and (kink) every BS exactly on its sphere. */
static void normalize_body(beam_case *bc, sg_graph *g, int mode) {
  assoc_complex v = case_normalize(g, bc, mode);
  check_pair(bc->name, mode_name("n", mode, ""), v);
  ck_assert_int_eq(check_grads(g, bc, weighted(g, bc->name, "wn", v), mode_name("gn", mode, "")),
                   3);
}

START_TEST(fixtures_normalize) {
  run_cases("normalize", SMALL, NSMALL, 2, normalize_body);
}
END_TEST

/* assoc_sum_rate on the couplings of the (unnormalised) beams, fractional
 * and integer A; gradient of sum(w R) in H, V and A. */
static void rate_body(beam_case *bc, sg_graph *g, int mode) {
  (void)mode;
  assoc_complex c = case_couplings(g, bc, case_beams(bc));
  sg_tensor *R = assoc_sum_rate(g, bc->in[A_IN], c.re, c.im, bc->noise);
  check(bc->name, "r", R);
  sg_tensor *w = fixture(bc->name, "wr");
  ck_assert_int_eq(check_grads(g, bc, sg_sum_all(g, sg_mul(g, R, w)), "gr"), 5);
  sg_free(w);
}

START_TEST(fixtures_rate) {
  run_cases("rate", SMALL, NSMALL, 1, rate_body);
}
END_TEST

/* The models' path, both modes: V -> normalise(A) -> couplings with H ->
 * rate, loss -mean_b R_b; every case, the models' shape included (there
 * the fixtures hold no gradient in H). */
static void chain_body(beam_case *bc, sg_graph *g, int mode) {
  assoc_complex v = case_normalize(g, bc, mode);
  assoc_complex c = case_couplings(g, bc, v);
  sg_tensor *R = assoc_sum_rate(g, bc->in[A_IN], c.re, c.im, bc->noise);
  check_pair(bc->name, mode_name("x", mode, ""), v);
  check(bc->name, mode_name("x", mode, "_r"), R);
  int n = check_grads(g, bc, sg_neg(g, sg_mean_all(g, R)), mode_name("gx", mode, ""));
  ck_assert_int_eq(n, bc->in[A_IN]->shape[0] == 64 ? 3 : 5);
}

START_TEST(fixtures_chain) {
  run_cases("chain", ALL, NALL, 2, chain_body);
}
END_TEST

Suite *suite_beam_fixtures(void) {
  const sg_test_case cases[] = {
      {"fixtures_couplings", fixtures_couplings},
      {"fixtures_normalize", fixtures_normalize},
      {"fixtures_rate", fixtures_rate},
      {"fixtures_chain", fixtures_chain},
  };
  return sg_test_suite("beam_fixtures", cases, sizeof cases / sizeof *cases, 60);
}
