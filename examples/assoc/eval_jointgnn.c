/* assoc eval CKPT DATA on a JointGNN checkpoint: the SM column of the
 * paper's Table 1 (docs/models.md "JointGNN"): violation ratio of the row
 * argmax, the rate of the model's own beams re-normalised over the
 * load-balanced association, and that association for assoc beams. */
#include <stdio.h>
#include <stdlib.h>

#include "assoc_eval.h"
#include "assoc_train.h"
#include "cli.h"
#include "eval_jointgnn.h"

/* The key prefix of the associations in --out (SM_onehot_assoc, ...). */
#define SM_KEY "SM"

static void print_table(const assoc_eval_jointgnn_args *a, const assoc_jointgnn *m, double scale,
                        const assoc_dataset *ds, const assoc_jointgnn_eval *x) {
  const assoc_jointgnn_config *c = &m->cfg;
  printf("model %s: JointGNN (SM), d %d, h %d, L %d, norm %s, %lld parameters, feature scale "
         "%.6g\n",
         a->ckpt, c->d, c->h, c->L, c->norm == ASSOC_BEAM_PROJECT ? "project" : "full",
         (long long)assoc_jointgnn_param_count(m), scale);
  printf("data  %s: S=%lld M=%d N=%d K=%d, Pt %.1f dBm\n\n", a->data, (long long)ds->S, ds->M,
         ds->N, ds->K, ds->pt_dbm);
  printf("  violation ratio (one-hot)          %8.2f%%\n", 100.0 * x->violation_ratio);
  printf("  soft R(A~, V) (training objective) %8.3f bps/Hz\n", x->rate_soft);
  printf("  one-hot, own beams (violations)    %8.3f\n", x->rate_onehot);
  printf("  load-balanced, own beams           %8.3f  (%.2f UEs dropped per sample)\n", x->rate_lb,
         x->mean_dropped);
  printf("  evaluation                         %8.1f us/sample\n", x->us_per_sample);
}

static void print_json(const assoc_eval_jointgnn_args *a, const assoc_jointgnn *m,
                       const assoc_dataset *ds, const assoc_jointgnn_eval *x) {
  printf("{");
  assoc_json_string(stdout, "checkpoint", a->ckpt, ", ");
  assoc_json_string(stdout, "data", a->data, ", ");
  assoc_json_string(stdout, "model", "JointGNN", ", ");
  printf("\"d\": %d, \"h\": %d, \"L\": %d, \"params\": %lld, \"samples\": %lld, \"M\": %d, "
         "\"N\": %d, \"K\": %d, ",
         m->cfg.d, m->cfg.h, m->cfg.L, (long long)assoc_jointgnn_param_count(m), (long long)ds->S,
         ds->M, ds->N, ds->K);
  const struct {
    const char *key;
    double v;
  } f[] = {{"violation_ratio", x->violation_ratio},   {"rate_soft", x->rate_soft},
           {"rate_onehot_own_beams", x->rate_onehot}, {"rate_load_balanced_own_beams", x->rate_lb},
           {"mean_dropped", x->mean_dropped},         {"us_per_sample", x->us_per_sample}};
  size_t n = sizeof f / sizeof *f;
  for (size_t i = 0; i < n; i++)
    assoc_json_number(stdout, f[i].key, f[i].v, i + 1 < n ? ", " : "}\n");
}

/* SM_onehot_*, SM_lb_*, SM_A and samples into w, committed (or discarded). */
static int write_out(sg_npz_writer *w, const assoc_dataset *ds, const assoc_jointgnn_eval *x,
                     sg_io_error *err) {
  int rc = assoc_npz_add_assoc(w, SM_KEY "_onehot", ds, x->one_hot, x->rate_onehot_s, err);
  if (!rc) rc = assoc_npz_add_assoc(w, SM_KEY "_lb", ds, x->lb, x->rate_lb_s, err);
  sg_array A = {.type = SG_NPY_F64,
                .ndim = 3,
                .shape = {ds->S, ds->K, ds->M},
                .numel = ds->S * ds->K * ds->M,
                .data = x->A};
  if (!rc) rc = sg_npz_add_array(w, SM_KEY "_A", &A, err);
  if (!rc) rc = sg_npz_add_scalar_i64(w, "samples", ds->S, err);
  if (!rc) return sg_npz_writer_close(w, err);
  sg_npz_writer_abort(w);
  return -1;
}

static void eval_free(assoc_jointgnn_eval *x) {
  free(x->one_hot), free(x->lb), free(x->rate_onehot_s), free(x->rate_lb_s), free(x->A);
}

/* The per-sample outputs --out needs; 0 or -1 (out of memory). */
static int eval_alloc(const assoc_dataset *ds, assoc_jointgnn_eval *x) {
  size_t S = (size_t)ds->S, SK = S * (size_t)ds->K;
  x->one_hot = malloc(SK * sizeof(int)), x->lb = malloc(SK * sizeof(int));
  x->rate_onehot_s = malloc(S * sizeof(double)), x->rate_lb_s = malloc(S * sizeof(double));
  x->A = malloc(SK * (size_t)ds->M * sizeof(double));
  return x->one_hot && x->lb && x->rate_onehot_s && x->rate_lb_s && x->A ? 0 : -1;
}

static int run(const assoc_eval_jointgnn_args *a, const assoc_jointgnn *m, double scale,
               const assoc_dataset *ds) {
  sg_io_error err;
  sg_npz_writer *w = a->out ? sg_npz_writer_open(a->out, true, &err) : NULL;
  if (a->out && !w) return fprintf(stderr, "assoc eval: --out %s\n", err.msg), -1;
  assoc_jointgnn_eval x = {0};
  int rc = w && eval_alloc(ds, &x) ? -1 : 0;
  if (rc) fprintf(stderr, "assoc eval: out of memory\n");
  if (!rc && (rc = assoc_jointgnn_evaluate(m, scale, ds, a->batch, &x, &err)))
    fprintf(stderr, "assoc eval: %s: %s\n", a->data, err.msg);
  if (!rc) a->json ? print_json(a, m, ds, &x) : print_table(a, m, scale, ds, &x);
  if (w && !rc && (rc = write_out(w, ds, &x, &err)))
    fprintf(stderr, "assoc eval: --out %s\n", err.msg);
  else if (w && rc)
    sg_npz_writer_abort(w);
  eval_free(&x);
  return rc;
}

int assoc_eval_jointgnn(const assoc_eval_jointgnn_args *a) {
  sg_io_error err;
  double scale;
  assoc_jointgnn *m = assoc_jointgnn_checkpoint_read(a->ckpt, &scale, &err);
  if (!m) return fprintf(stderr, "assoc eval: %s\n", err.msg), ASSOC_EXIT_FAIL;
  assoc_dataset ds;
  if (assoc_load_dataset("eval", a->data, &ds)) {
    assoc_jointgnn_free(m);
    return ASSOC_EXIT_FAIL;
  }
  int64_t all = ds.S;
  if (a->limit && a->limit < ds.S) ds.S = a->limit; /* samples are contiguous: a prefix view */
  int rc = run(a, m, scale, &ds);
  ds.S = all;
  assoc_dataset_free(&ds);
  assoc_jointgnn_free(m);
  return rc ? ASSOC_EXIT_FAIL : ASSOC_EXIT_OK;
}
