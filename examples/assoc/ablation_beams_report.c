/* assoc ablation, the report of the beams (Table 1 row 4): its Markdown
 * table and its members of ablation.json ("bfgnn", "beams",
 * "validation_baselines"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ablation.h"

/* BFGNN's head in the table's note and the JSON. */
static const char *bf_head_name(const abl_args *a) {
  return a->bf_head == ASSOC_BFGNN_HEAD_DUALITY ? "duality" : "direct";
}

/* ---- the table ------------------------------------------------------------------------ */

/* "mean ± sd", or "mean" (sd false or not finite), or "-". */
static void cell(FILE *f, const char *fmt, double mean, double sd, bool with_sd) {
  fputc(' ', f);
  if (!isfinite(mean)) {
    fputs("- |", f);
    return;
  }
  fprintf(f, fmt, mean);
  if (with_sd && isfinite(sd)) fputs(" ± ", f), fprintf(f, fmt, sd);
  fputs(" |", f);
}

static void beam_table_row(FILE *f, const beam_row *b, bool own) {
  bool lb = b->assoc[0] == 'l', sd = b->seeded;
  fprintf(f, "| %s, %s |", b->name, lb ? "LB" : "NV");
  cell(f, "%.3f", b->mean[BEAM_MRT], b->sd[BEAM_MRT], sd);
  cell(f, "%.3f", b->mean[BEAM_ZF], b->sd[BEAM_ZF], sd);
  cell(f, "%.3f", b->mean[BEAM_WMMSE], b->sd[BEAM_WMMSE], sd);
  cell(f, "%.0f", b->mean[BEAM_WMMSE_US], NAN, false);
  cell(f, "%.3f", b->mean[BEAM_BFGNN], b->sd[BEAM_BFGNN], true);
  cell(f, "%.3f", b->mean[BEAM_BFGNN] / b->mean[BEAM_WMMSE], NAN, false);
  cell(f, "%.1f", b->mean[BEAM_BFGNN_US], NAN, false);
  if (own) cell(f, "%.3f", b->mean[BEAM_OWN], b->sd[BEAM_OWN], sd);
  cell(f, "%.1f", b->paper, NAN, false);
  fputc('\n', f);
}

int abl_write_beams_table(FILE *f, const abl_run *r) {
  const abl_args *a = r->a;
  bool own = abl_sm() && a->use[ABL_SM];
  fprintf(f,
          "Table 1 row 4: the load-balanced (LB) associations, and SKGS-GNN+'s no-violation\n"
          "(NV) one, with MRT, intra-cell ZF, WMMSE and BFGNN beams on the %lld test samples:\n"
          "mean sum-rate in bps/Hz. BFGNN: ",
          (long long)r->test.S);
  if (r->bf)
    fprintf(f, "%s head, d %d, h %d, %d epochs, one per seed", bf_head_name(a), a->bf_d, a->bf_h,
            a->bf_epochs);
  else
    fprintf(f, "not trained (--no-bfgnn)");
  fprintf(f, ".\nModels: mean ± sd over the seeds; baselines: ZF and WMMSE once, BFGNN over its "
             "seeds.\nTimes: wall time per sample (WMMSE: one sample at a time; BFGNN: batches "
             "of 256).\n\n");
  fprintf(f,
          "| association | MRT | ZF | WMMSE | WMMSE us/sample | BFGNN | BFGNN / WMMSE | "
          "BFGNN us/sample |%s paper BFGNN |\n",
          own ? " own beams |" : "");
  fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---:|%s---:|\n", own ? "---:|" : "");
  for (int i = 0; i < r->n_beam_rows; i++) beam_table_row(f, &r->beam_rows[i], own);
  return ferror(f) ? -1 : 0;
}

/* ---- JSON ----------------------------------------------------------------------------- */

static void json_values(FILE *f, const double *v) {
  for (int k = 0; k < BEAM_VALUES; k++) {
    fprintf(f, "%s\"%s\": ", k ? ", " : "", abl_beam_value_names[k]);
    assoc_json_write_number(f, v[k]);
  }
}

static void beam_row_json(FILE *f, const beam_row *b) {
  fputs("{\"name\": ", f);
  assoc_json_write_string(f, b->name);
  fprintf(f, ", \"association\": \"%s\", \"source\": \"%s\", \"paper_bfgnn\": ", b->assoc,
          b->seeded ? "model" : "baseline");
  assoc_json_write_number(f, b->paper);
  fprintf(f, ", \"runs\": %d, \"metrics\": {", b->n);
  json_values(f, b->mean);
  fputs("}, \"per_seed\": {", f);
  for (int k = 0; k < BEAM_VALUES; k++) {
    fprintf(f, "%s\"%s\": [", k ? ", " : "", abl_beam_value_names[k]);
    for (int j = 0; j < b->n; j++) {
      if (j) fputs(", ", f);
      assoc_json_write_number(f, b->v[j][k]);
    }
    fputc(']', f);
  }
  fputs("}, \"sd\": {", f);
  json_values(f, b->sd);
  fputs("}}", f);
}

static void bfgnn_json(FILE *f, const abl_run *r) {
  const abl_args *a = r->a;
  const assoc_train_config *c = &a->train;
  fprintf(f, "\"bfgnn\": {\"enabled\": %s, \"d\": %d, \"h\": %d, \"L\": %d, \"epochs\": %d, ",
          r->bf ? "true" : "false", a->bf_d, a->bf_h, c->L, a->bf_epochs);
  fprintf(f, "\"batch\": %lld, \"batches_per_epoch\": %lld, \"lr_min\": %g, \"lr_max\": %g, ",
          (long long)c->batch, (long long)c->batches_per_epoch, c->lr_min, c->lr_max);
  fprintf(f, "\"t0\": %g, \"t_mult\": %d, \"norm\": \"project\", \"head\": \"%s\", \"seeds\": [",
          a->bf_t0, c->t_mult, bf_head_name(a));
  for (int j = 0; r->bf && j < a->seeds; j++)
    fprintf(f, "%s%llu", j ? ", " : "", (unsigned long long)r->bf[j].seed);
  fputs("], \"params\": ", f);
  assoc_json_write_number(f, r->bf ? (double)r->bf[0].params : NAN);
  fputs(", \"train_seconds\": [", f);
  for (int j = 0; r->bf && j < a->seeds; j++) {
    if (j) fputs(", ", f);
    assoc_json_write_number(f, r->bf[j].train_seconds);
  }
  fputs("]}", f);
}

char *abl_beams_json(const abl_run *r) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return NULL;
  bfgnn_json(f, r);
  fputs(",\n  \"beams\": [", f);
  for (int i = 0; i < r->n_beam_rows; i++) {
    fputs(i ? ",\n    " : "\n    ", f);
    beam_row_json(f, &r->beam_rows[i]);
  }
  fputs("],\n  \"validation_baselines\": {", f);
  for (int i = 0; i < N_CURVE_BASELINES; i++) {
    fprintf(f, "%s\"%s\": ", i ? ", " : "", assoc_method_name(abl_curve_baselines[i]));
    assoc_json_write_number(f, r->val_base[i]);
  }
  fputc('}', f);
  bool bad = ferror(f);
  fclose(f);
  if (bad) free(buf);
  return bad ? NULL : buf;
}
