/* A program written against the installed sinkgrad, as a user builds it:
 *   cc consumer.c $(pkg-config --cflags --libs sinkgrad sinkgrad-assoc)
 * It checks that the version macros agree with the library it runs with,
 * takes one gradient with the core API, and computes the MRT sum-rate of a
 * generated scenario two ways with the association API (the beams' rate and
 * the closed-form rate of the association), which must agree.
 * Prints what it computed; exits 1 on the first disagreement. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Both include forms: <sinkgrad/...> and, through -I.../include/sinkgrad,
 * the bare header name the headers use among themselves. */
#include <sinkgrad/assoc_beam.h>
#include <sinkgrad/sinkgrad.h>

#include "assoc_wireless.h"

static int fail(const char *what) {
  fprintf(stderr, "consumer: %s\n", what);
  return 1;
}

static int check_version(void) {
  char composed[64];
  snprintf(composed, sizeof composed, "%d.%d.%d", SG_VERSION_MAJOR, SG_VERSION_MINOR,
           SG_VERSION_PATCH);
  if (strncmp(composed, SG_VERSION_STRING, strlen(composed)) != 0)
    return fail("SG_VERSION_STRING does not start with MAJOR.MINOR.PATCH");
  if (strcmp(sg_version(), SG_VERSION_STRING) != 0)
    return fail("sg_version() differs from SG_VERSION_STRING");
  if (sg_version_number() != SG_VERSION_NUMBER)
    return fail("sg_version_number() differs from SG_VERSION_NUMBER");
  printf("sinkgrad %s (headers %s)\n", sg_version(), SG_VERSION_STRING);
  return 0;
}

/* d/dx sum(x^2) = 2 x. */
static int check_gradient(void) {
  const double values[3] = {0.5, -1.25, 3};
  int64_t shape[1] = {3};
  sg_tensor *x = sg_from_f64(NULL, SG_F64, 1, shape, values);
  sg_set_requires_grad(x, true);
  sg_graph *g = sg_graph_new();
  sg_backward(g, sg_sum_all(g, sg_square(g, x)));
  int status = 0;
  for (int i = 0; i < 3; i++)
    if (x->grad == NULL || sg_get(x->grad, i) != 2 * values[i]) status = 1;
  printf("gradient of sum(x^2) at (0.5, -1.25, 3): (%g, %g, %g)\n", sg_get(x->grad, 0),
         sg_get(x->grad, 1), sg_get(x->grad, 2));
  sg_graph_free(g);
  sg_free(x);
  return status ? fail("the gradient of sum(x^2) is not 2 x") : 0;
}

/* Every UE on its strongest BS; MRT beams; their sum-rate against
 * assoc_rate_int's, which assumes the same per-stream power P_t/N. */
static int check_mrt_rate(void) {
  assoc_scenario sc = assoc_scenario_default();
  assoc_dataset ds;
  sg_io_error err;
  if (assoc_generate(&sc, 1, &ds, &err) != 0) return fail(err.msg);
  int M = ds.M, K = ds.K, N = ds.N;
  double *gain = malloc(sizeof(double) * M * K * K);
  double *V_re = calloc((size_t)M * K * N, sizeof(double));
  double *V_im = calloc((size_t)M * K * N, sizeof(double));
  int *assoc = malloc(sizeof(int) * K);
  if (!gain || !V_re || !V_im || !assoc) return fail("out of memory");
  assoc_coupling_gain(&ds, 0, gain);
  for (int k = 0; k < K; k++) {
    assoc[k] = 0;
    for (int m = 1; m < M; m++)
      if (gain[(m * K + k) * K + k] > gain[(assoc[k] * K + k) * K + k]) assoc[k] = m;
  }
  assoc_beam_problem p = assoc_beam_problem_at(&ds, 0, assoc);
  assoc_beam_mrt(&p, V_re, V_im);
  double beams_rate = assoc_rate_beams(&p, V_re, V_im, NULL);
  double closed_form = assoc_rate_int(gain, M, K, assoc, NULL);
  printf("MRT sum-rate, M=%d N=%d K=%d, strongest-BS association: %.6f bps/Hz (beams), "
         "%.6f (closed form)\n",
         M, N, K, beams_rate, closed_form);
  int ok = beams_rate > 0 && fabs(beams_rate - closed_form) <= 1e-9 * closed_form;
  free(gain);
  free(V_re);
  free(V_im);
  free(assoc);
  assoc_dataset_free(&ds);
  return ok ? 0 : fail("the MRT beams' sum-rate differs from assoc_rate_int's");
}

int main(void) {
  if (check_version() || check_gradient() || check_mrt_rate()) return 1;
  printf("consumer: ok\n");
  return 0;
}
