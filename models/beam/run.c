/* One sample with any method, and runs over a data set (OpenMP). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "beam_internal.h"
#include "models_internal.h"

int assoc_beam_solve(assoc_beam_method m, const assoc_beam_problem *p, assoc_beam_work *w,
                     double *V_re, double *V_im, double *rate, int *iters, sg_io_error *err) {
  if (iters) *iters = 0;
  switch (m) {
  case ASSOC_BEAM_MRT:
    if (assoc_beam_check(p, 0, err)) return -1;
    assoc_beam_mrt(p, V_re, V_im);
    break;
  case ASSOC_BEAM_ZF:
    if (assoc_beam_zf(p, w, V_re, V_im, err)) return -1;
    break;
  case ASSOC_BEAM_WMMSE:
    *rate = assoc_beam_wmmse(p, w, V_re, V_im, NULL, iters, err);
    return isnan(*rate) ? -1 : 0;
  default:
    return assoc_fail(err, "unknown beamforming method %d", (int)m);
  }
  *rate = assoc_rate_beams(p, V_re, V_im, NULL);
  return 0;
}

/* Range and (ZF, WMMSE) load checks before any work, naming the first bad sample. */
static int check_all(const assoc_dataset *ds, const int *assoc, assoc_beam_method method,
                     sg_io_error *err) {
  sg_io_error e;
  for (int64_t s = 0; s < ds->S; s++) {
    assoc_beam_problem p = assoc_beam_problem_at(ds, s, assoc + s * ds->K);
    if (assoc_beam_check(&p, method != ASSOC_BEAM_MRT, &e))
      return assoc_fail(err, "sample %lld: %s", (long long)s, e.msg);
  }
  return 0;
}

int assoc_beams_run(const assoc_dataset *ds, const int *assoc, assoc_beam_method method,
                    double *V_re, double *V_im, double *rate, int *iters, double *us_per_sample,
                    sg_io_error *err) {
  if ((unsigned)method >= ASSOC_BEAM_METHOD_COUNT)
    return assoc_fail(err, "unknown beamforming method %d", (int)method);
  if (check_all(ds, assoc, method, err)) return -1;
  int64_t MKN = (int64_t)ds->M * ds->K * ds->N, first_bad = ds->S;
  int no_memory = 0;
  double seconds = 0.0;
#pragma omp parallel reduction(+ : seconds)
  {
    assoc_beam_work *w = assoc_beam_work_new(ds->M, ds->N, ds->K);
    if (!w) {
#pragma omp atomic write
      no_memory = 1;
    }
#pragma omp for schedule(dynamic, 16)
    for (int64_t s = 0; s < ds->S; s++) {
      if (!w) continue;
      double t0 = omp_get_wtime();
      assoc_beam_problem p = assoc_beam_problem_at(ds, s, assoc + s * ds->K);
      int it = 0;
      if (assoc_beam_solve(method, &p, w, V_re + s * MKN, V_im + s * MKN, &rate[s], &it, NULL)) {
#pragma omp critical(assoc_beams_first_bad)
        if (s < first_bad) first_bad = s;
      }
      if (iters) iters[s] = it;
      seconds += omp_get_wtime() - t0;
    }
    assoc_beam_work_free(w);
  }
  if (no_memory) return assoc_fail(err, "out of memory");
  if (first_bad < ds->S) { /* rerun the first failure alone for its message */
    sg_io_error e;
    assoc_beam_work *w = assoc_beam_work_new(ds->M, ds->N, ds->K);
    assoc_beam_problem p = assoc_beam_problem_at(ds, first_bad, assoc + first_bad * ds->K);
    double r;
    if (!w) return assoc_fail(err, "out of memory");
    assoc_beam_solve(method, &p, w, V_re + first_bad * MKN, V_im + first_bad * MKN, &r, NULL, &e);
    assoc_beam_work_free(w);
    return assoc_fail(err, "sample %lld: %s", (long long)first_bad, e.msg);
  }
  if (us_per_sample) *us_per_sample = ds->S > 0 ? 1e6 * seconds / (double)ds->S : 0.0;
  return 0;
}
