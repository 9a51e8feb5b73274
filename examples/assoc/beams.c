/* assoc beams: classical beamformers (MRT, ZF, WMMSE) or a trained BFGNN
 * for the associations stored in an .npz of assoc baselines --out or assoc
 * eval --out. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assoc_beam.h"
#include "assoc_train.h"
#include "cli.h"

static const char beams_help[] =
    "usage: assoc beams DATA ASSOC.npz --assoc-key KEY --method mrt|zf|wmmse|bfgnn=CKPT\n"
    "                   --out FILE.npz\n"
    "                   [--threads T] [--json]\n"
    "\n"
    "Designs the beams of every BS for the UEs it serves under the association\n"
    "KEY_assoc (int32 S x K, -1 dropped) of ASSOC.npz (written by assoc baselines\n"
    "--out or assoc eval --out) on the data set DATA, and prints the mean sum-rate\n"
    "and the time per sample (docs/system.md, \"Beamformers for a given\n"
    "association\"). Results do not depend on the threads.\n"
    "\n"
    "  --assoc-key KEY      which association: ES, Assign, AttSKGS_GNN_lb, ...\n"
    "  --method M           mrt (per-stream power P_t/N), zf (intra-cell\n"
    "                       zero-forcing), wmmse, or bfgnn=CKPT (the BFGNN of the\n"
    "                       checkpoint CKPT of assoc train --model bfgnn, batched,\n"
    "                       no gradients); zf, wmmse and bfgnn need every load <= N\n"
    "  --out FILE           write V_re, V_im (float64 S x M x K x N), rate (S),\n"
    "                       iters (int32 S, WMMSE updates), assoc (int32 S x K),\n"
    "                       method (its name as uint8 ASCII) and us_per_sample\n"
    "  --threads T          OpenMP threads (default: OMP_NUM_THREADS or all)\n"
    "  --json               print JSON instead of text\n"
    "  -h, --help           this help\n";

/* --method bfgnn=CKPT, after the classical methods. */
enum { BEAMS_BFGNN = ASSOC_BEAM_METHOD_COUNT };

enum beams_option { BEAMS_KEY = 1000, BEAMS_METHOD };

static const struct option beams_options[] = {
    {"assoc-key", required_argument, NULL, BEAMS_KEY},
    {"method", required_argument, NULL, BEAMS_METHOD},
    ASSOC_OPTION_OUT,
    ASSOC_OPTION_THREADS,
    ASSOC_OPTION_JSON,
    ASSOC_OPTION_HELP,
    {NULL, 0, NULL, 0},
};

typedef struct beams_args {
  const char *data, *assoc_file, *key, *bfgnn; /* bfgnn: its checkpoint */
  int method;
  assoc_common_args common; /* --out, --threads, --json, --help */
} beams_args;

static int beams_option(void *args, int opt, char *v) {
  beams_args *a = args;
  switch (opt) {
  case BEAMS_KEY:
    a->key = v;
    return 0;
  case BEAMS_METHOD:
    if (!strncmp(v, "bfgnn=", 6) && v[6]) return a->bfgnn = v + 6, a->method = BEAMS_BFGNN, 0;
    a->method = assoc_beam_method_parse(v);
    if (a->method >= 0) return 0;
    fprintf(stderr, "assoc beams: unknown method '%s' (mrt, zf, wmmse or bfgnn=CKPT)\n", v);
    return -1;
  default:
    return assoc_common_option("beams", opt, v, &a->common);
  }
}

static int beams_parse(int argc, char **argv, beams_args *a) {
  *a = (beams_args){.method = -1};
  int first = assoc_parse_options("beams", argc, argv, beams_options, beams_option, a);
  if (first < 0) return -1;
  if (a->common.help) return 0;
  const char *missing = first + 2 != argc ? "expected DATA and ASSOC.npz"
                        : !a->key         ? "--assoc-key is required"
                        : a->method < 0   ? "--method is required"
                        : !a->common.out  ? "--out is required"
                                          : NULL;
  if (missing) {
    fprintf(stderr, "assoc beams: %s (see assoc beams --help)\n", missing);
    return -1;
  }
  a->data = argv[first], a->assoc_file = argv[first + 1];
  return 0;
}

/* The keys K of the members K_assoc, listed on stderr. */
static void list_keys(const sg_npz *z) {
  const char *sep = "";
  fprintf(stderr, "available keys:");
  for (int i = 0; i < sg_npz_count(z); i++) {
    const char *name = sg_npz_name(z, i);
    size_t n = strlen(name);
    if (n > 6 && !strcmp(name + n - 6, "_assoc"))
      fprintf(stderr, "%s %.*s", sep, (int)(n - 6), name), sep = ",";
  }
  fprintf(stderr, "%s\n", *sep ? "" : " none");
}

/* Reads KEY_assoc (int32 or int64, S x K of the data set) into a new array. */
static int *read_assoc(const beams_args *a, const assoc_dataset *ds) {
  sg_io_error err;
  sg_npz *z = sg_npz_open(a->assoc_file, &err);
  if (!z) return fprintf(stderr, "assoc beams: %s\n", err.msg), NULL;
  char name[256];
  snprintf(name, sizeof name, "%s_assoc", a->key);
  const sg_array *x = sg_npz_get(z, name);
  int *assoc = NULL;
  if (!x) {
    fprintf(stderr, "assoc beams: %s has no member %s; ", a->assoc_file, name);
    list_keys(z);
  } else if (x->type != SG_NPY_I32 && x->type != SG_NPY_I64) {
    fprintf(stderr, "assoc beams: %s in %s is not an integer array\n", name, a->assoc_file);
  } else if (x->ndim != 2 || x->shape[0] != ds->S || x->shape[1] != ds->K) {
    fprintf(stderr, "assoc beams: %s in %s has shape (%lld, %lld), the data set needs (%lld, %d)\n",
            name, a->assoc_file, (long long)x->shape[0], (long long)(x->ndim > 1 ? x->shape[1] : 0),
            (long long)ds->S, ds->K);
  } else if (!(assoc = malloc((size_t)x->numel * sizeof *assoc))) {
    fprintf(stderr, "assoc beams: out of memory\n");
  } else {
    for (int64_t i = 0; i < x->numel; i++)
      assoc[i] = x->type == SG_NPY_I32 ? ((const int32_t *)x->data)[i]
                                       : (int)((const int64_t *)x->data)[i];
  }
  sg_npz_close(z);
  return assoc;
}

static const char *method_name(int method) {
  return method == BEAMS_BFGNN ? "bfgnn" : assoc_beam_method_name(method);
}

typedef struct beams_result {
  double *V_re, *V_im, *rate, us_per_sample, mean_rate, mean_iters;
  int *iters;
} beams_result;

static int write_out(const beams_args *a, const assoc_dataset *ds, const int *assoc,
                     const beams_result *r) {
  sg_io_error err;
  const char *method = method_name(a->method);
  int64_t S = ds->S;
  sg_array V = {.type = SG_NPY_F64, .ndim = 4, .shape = {S, ds->M, ds->K, ds->N}};
  V.numel = S * ds->M * ds->K * ds->N;
  sg_array arrays[] = {
      V,
      V,
      {.type = SG_NPY_F64, .ndim = 1, .shape = {S}, .numel = S, .data = r->rate},
      {.type = SG_NPY_I32, .ndim = 1, .shape = {S}, .numel = S, .data = r->iters},
      {.type = SG_NPY_I32,
       .ndim = 2,
       .shape = {S, ds->K},
       .numel = S * ds->K,
       .data = (void *)assoc},
      {.type = SG_NPY_U8,
       .ndim = 1,
       .shape = {(int64_t)strlen(method)},
       .numel = (int64_t)strlen(method),
       .data = (void *)method},
  };
  arrays[0].data = r->V_re, arrays[1].data = r->V_im;
  const char *names[] = {"V_re", "V_im", "rate", "iters", "assoc", "method"};
  sg_npz_writer *w = sg_npz_writer_open(a->common.out, true, &err);
  int rc = w ? 0 : -1;
  for (int i = 0; i < 6 && !rc; i++) rc = sg_npz_add_array(w, names[i], &arrays[i], &err);
  if (!rc) rc = sg_npz_add_scalar_f64(w, "us_per_sample", r->us_per_sample, &err);
  if (!rc)
    rc = sg_npz_writer_close(w, &err);
  else if (w)
    sg_npz_writer_abort(w);
  if (rc) fprintf(stderr, "assoc beams: %s\n", err.msg);
  return rc;
}

static void print_result(const beams_args *a, const assoc_dataset *ds, const beams_result *r) {
  const char *method = method_name(a->method);
  if (!a->common.json) {
    printf("%s beams for %s on %s: S=%lld M=%d N=%d K=%d, %d threads\n", method, a->key, a->data,
           (long long)ds->S, ds->M, ds->N, ds->K, omp_get_max_threads());
    printf("mean sum-rate %.4f bps/Hz, %.2f us/sample", r->mean_rate, r->us_per_sample);
    if (a->method == ASSOC_BEAM_WMMSE) printf(", %.1f iterations/sample", r->mean_iters);
    printf("\n");
    return;
  }
  printf("{");
  assoc_json_string(stdout, "data", a->data, ", ");
  assoc_json_string(stdout, "assoc_file", a->assoc_file, ", ");
  assoc_json_string(stdout, "key", a->key, ", ");
  assoc_json_string(stdout, "method", method, ", ");
  printf("\"samples\": %lld, \"M\": %d, \"N\": %d, \"K\": %d, \"threads\": %d, ", (long long)ds->S,
         ds->M, ds->N, ds->K, omp_get_max_threads());
  assoc_json_number(stdout, "mean_rate", r->mean_rate, ", ");
  assoc_json_number(stdout, "mean_iters", r->mean_iters, ", ");
  assoc_json_number(stdout, "us_per_sample", r->us_per_sample, "}\n");
}

/* The beams of the BFGNN of a->bfgnn (iterations 0). */
static int bfgnn_run(const beams_args *a, const assoc_dataset *ds, const int *assoc,
                     beams_result *r, sg_io_error *err) {
  double scale;
  assoc_bfgnn *m = assoc_bfgnn_checkpoint_read(a->bfgnn, &scale, err);
  if (!m) return -1;
  int rc = assoc_bfgnn_beams_run(m, scale, ds, assoc, 256, r->V_re, r->V_im, r->rate,
                                 &r->us_per_sample, err);
  for (int64_t s = 0; s < ds->S; s++) r->iters[s] = 0;
  assoc_bfgnn_free(m);
  return rc;
}

static int run(const beams_args *a, const assoc_dataset *ds, const int *assoc) {
  size_t n = (size_t)ds->S * ds->M * ds->K * ds->N;
  beams_result r = {.V_re = malloc(n * sizeof(double)), .V_im = malloc(n * sizeof(double))};
  r.rate = malloc((size_t)ds->S * sizeof *r.rate), r.iters = malloc((size_t)ds->S * sizeof(int));
  sg_io_error err;
  int rc = -1;
  if (!r.V_re || !r.V_im || !r.rate || !r.iters) {
    fprintf(stderr, "assoc beams: out of memory\n");
  } else if (a->method == BEAMS_BFGNN ? bfgnn_run(a, ds, assoc, &r, &err)
                                      : assoc_beams_run(ds, assoc, a->method, r.V_re, r.V_im,
                                                        r.rate, r.iters, &r.us_per_sample, &err)) {
    fprintf(stderr, "assoc beams: %s association %s: %s\n", a->key, a->assoc_file, err.msg);
  } else {
    for (int64_t s = 0; s < ds->S; s++) r.mean_rate += r.rate[s], r.mean_iters += r.iters[s];
    r.mean_rate /= (double)ds->S, r.mean_iters /= (double)ds->S;
    rc = write_out(a, ds, assoc, &r);
    if (!rc) print_result(a, ds, &r);
  }
  free(r.V_re), free(r.V_im), free(r.rate), free(r.iters);
  return rc;
}

int assoc_check_beams(int argc, char **argv) {
  beams_args a;
  return beams_parse(argc, argv, &a) ? ASSOC_EXIT_USAGE : ASSOC_EXIT_OK;
}

int assoc_cmd_beams(int argc, char **argv) {
  beams_args a;
  if (beams_parse(argc, argv, &a)) return ASSOC_EXIT_USAGE;
  int start =
      assoc_command_start("beams", a.common.help, beams_help, a.common.out, a.common.threads);
  if (start != ASSOC_GO_ON) return start;
  assoc_dataset ds;
  if (assoc_load_dataset("beams", a.data, &ds)) return ASSOC_EXIT_FAIL;
  int *assoc = read_assoc(&a, &ds);
  int rc = assoc ? run(&a, &ds, assoc) : -1;
  free(assoc);
  assoc_dataset_free(&ds);
  return rc ? ASSOC_EXIT_FAIL : ASSOC_EXIT_OK;
}
