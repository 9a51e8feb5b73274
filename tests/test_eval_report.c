/* The ablation's JSON report (models/eval/report.c): the report parsed back
 * by a minimal JSON checker, means and sample standard deviations, and a
 * model's runs (per-seed values, mean, sd) in the JSON. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assoc_eval.h"
#include "sg_test.h"

/* ---- JSON report ------------------------------------------------------------------- */

/* A minimal JSON syntax checker (RFC 8259 values, no duplicate-key check). */
typedef struct json_reader {
  const char *p;
} json_reader;

static void skip_ws(json_reader *r) {
  while (*r->p == ' ' || *r->p == '\n' || *r->p == '\t' || *r->p == '\r') r->p++;
}

static int json_value(json_reader *r);

static int json_str(json_reader *r) {
  if (*r->p != '"') return 0;
  for (r->p++; *r->p != '"'; r->p++) {
    if (!*r->p || (unsigned char)*r->p < 0x20) return 0;
    if (*r->p == '\\') r->p++;
  }
  r->p++;
  return 1;
}

static int json_num(json_reader *r) {
  char *end;
  strtod(r->p, &end);
  if (end == r->p) return 0;
  r->p = end;
  return 1;
}

static int json_seq(json_reader *r, char close, int keyed) {
  r->p++;
  skip_ws(r);
  if (*r->p == close) return r->p++, 1;
  for (;;) {
    skip_ws(r);
    if (keyed) {
      if (!json_str(r)) return 0;
      skip_ws(r);
      if (*r->p++ != ':') return 0;
    }
    if (!json_value(r)) return 0;
    skip_ws(r);
    if (*r->p == close) return r->p++, 1;
    if (*r->p++ != ',') return 0;
  }
}

static int json_value(json_reader *r) {
  skip_ws(r);
  if (*r->p == '{') return json_seq(r, '}', 1);
  if (*r->p == '[') return json_seq(r, ']', 0);
  if (*r->p == '"') return json_str(r);
  for (const char *lit[] = {"null", "true", "false"}, **l = lit; l < lit + 3; l++)
    if (!strncmp(r->p, *l, strlen(*l))) return r->p += strlen(*l), 1;
  return json_num(r);
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  char *buf = calloc(1, 1 << 16);
  fread(buf, 1, (1 << 16) - 1, f);
  fclose(f);
  return buf;
}

START_TEST(test_ablation_json) {
  char dir[] = "/tmp/sg_eval_XXXXXX", path[256], bad[256];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/ablation.json", dir);
  assoc_ablation_entry e[2] = {{.name = "AttSKGS-GNN",
                                .kind = "model",
                                .metrics = {.samples = 10,
                                            .violation_ratio = 0.25,
                                            .rate = 6.5,
                                            .rate_lb = 6.2,
                                            .rate_no_violation = 6.3,
                                            .ratio_to_es = 0.93,
                                            .infer_us = 12.5,
                                            .params = 1234},
                                .train_seconds = 61.0,
                                .epochs = 5},
                               {.name = "MaxSINR \"uncapped\"",
                                .kind = "baseline",
                                .metrics = {.samples = 10, .ratio_to_es = NAN},
                                .train_seconds = NAN}};
  const double x[3] = {4, 8, 12}, lb[6] = {1, 2, 3, 4, 5, 6};
  const char *names[2] = {"AttSKGS-GNN", "ES"};
  assoc_ablation_curve curve = {
      .parameter = "K", .points = 3, .methods = 2, .x = x, .names = names, .rate_lb = lb};
  assoc_ablation_report rep = {"{\"M\": 2, \"N\": 4}", e, 2, &curve, 1, "\"beams\": [{\"x\": 1}]"};
  sg_io_error err;
  ck_assert_msg(assoc_ablation_write_json(path, &rep, &err) == 0, "%s", err.msg);
  char *text = read_file(path);
  json_reader r = {text};
  ck_assert_msg(json_value(&r), "invalid JSON near offset %ld:\n%s", (long)(r.p - text), text);
  skip_ws(&r);
  ck_assert_msg(*r.p == 0, "trailing text after the JSON value");
  const char *keys[] = {"\"violation_ratio\": 0.25",
                        "\"rate\": 6.5",
                        "\"rate_load_balanced\": 6.2",
                        "\"rate_no_violation\": 6.3",
                        "\"ratio_to_es\": 0.93",
                        "\"infer_us\": 12.5",
                        "\"params\": 1234",
                        "\"ratio_to_es\": null",
                        "\"paper_table1\"",
                        "\"rate_load_balanced\": [4, 5, 6]",
                        "\"MaxSINR \\\"uncapped\\\"\"",
                        "\"config\": {\"M\": 2, \"N\": 4}",
                        "}]}],\n  \"beams\": [{\"x\": 1}]}\n"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    ck_assert_msg(strstr(text, keys[i]) != NULL, "missing %s in\n%s", keys[i], text);
  free(text);
  /* A missing directory fails with a message and leaves nothing behind. */
  snprintf(bad, sizeof bad, "%s/missing/ablation.json", dir);
  ck_assert_int_eq(assoc_ablation_write_json(bad, &rep, &err), -1);
  ck_assert(strstr(err.msg, "missing") != NULL);
  ck_assert_int_eq(unlink(path), 0);
  ck_assert_int_eq(rmdir(dir), 0); /* empty: no temporary file left */
}
END_TEST

/* Mean and sample standard deviation; one value is its own mean. */
START_TEST(test_mean_sd) {
  const double x[6] = {1, -5, 2, -5, 4, -5};
  double mean, sd;
  assoc_mean_sd(x, 3, 2, &mean, &sd); /* 1, 2, 4 */
  ck_assert_double_eq_tol(mean, 7.0 / 3, 1e-15);
  ck_assert_double_eq_tol(sd, sqrt(7.0 / 3), 1e-15);
  assoc_mean_sd(x + 1, 3, 2, &mean, &sd);
  ck_assert(mean == -5 && sd == 0);
  const double one = 0.1 + 0.2;
  assoc_mean_sd(&one, 1, 1, &mean, &sd);
  ck_assert(mean == one && isnan(sd));
  assoc_eval_metrics runs[3] = {{.K = 8, .rate = 1, .latency_us = 3, .params = 7},
                                {.K = 8, .rate = 2, .latency_us = 3, .params = 7},
                                {.K = 8, .rate = 4, .latency_us = 3, .params = 7}},
                     m, d;
  assoc_eval_metrics_mean_sd(runs, 3, &m, &d);
  ck_assert_double_eq_tol(m.rate, 7.0 / 3, 1e-15);
  ck_assert_double_eq_tol(d.rate, sqrt(7.0 / 3), 1e-15);
  ck_assert(m.latency_us == 3 && d.latency_us == 0 && m.violation_ratio == 0);
  ck_assert(m.K == 8 && m.params == 7);
}
END_TEST

static int count_str(const char *text, const char *s) {
  int n = 0;
  for (const char *p = text; (p = strstr(p, s)); p += strlen(s)) n++;
  return n;
}

/* A model with three runs: "metrics" holds the means, "per_seed" the runs
 * and "sd" the sample standard deviations; a baseline gets neither, and
 * only the model's curve gets sd arrays. */
START_TEST(test_ablation_json_runs) {
  char dir[] = "/tmp/sg_eval_XXXXXX", path[256], want[128];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/ablation.json", dir);
  const uint64_t seeds[3] = {3, 4, 5};
  const assoc_eval_metrics runs[3] = {{.samples = 10, .violation_ratio = 0.25, .rate = 6},
                                      {.samples = 10, .violation_ratio = 0.5, .rate = 6},
                                      {.samples = 10, .violation_ratio = 1.0, .rate = 6}};
  const double train[3] = {10, 20, 60};
  assoc_ablation_entry e[2] = {
      {.name = "GS-GNN",
       .kind = "model",
       .epochs = 2,
       .n_runs = 3,
       .seeds = seeds,
       .per_seed = runs,
       .per_seed_train_seconds = train},
      {.name = "ES", .kind = "baseline", .metrics = {.samples = 10}, .train_seconds = NAN}};
  const double x[2] = {4, 8}, lb[4] = {1, 2, 3, 4}, sd[4] = {NAN, NAN, 0.5, 0.25};
  const char *names[2] = {"ES", "GS-GNN"};
  const int curve_runs[2] = {0, 3};
  assoc_ablation_curve curve = {"K", 2, 2, x, names, lb, lb, sd, sd, curve_runs};
  assoc_ablation_report rep = {NULL, e, 2, &curve, 1, NULL};
  sg_io_error err;
  ck_assert_msg(assoc_ablation_write_json(path, &rep, &err) == 0, "%s", err.msg);
  char *text = read_file(path);
  json_reader r = {text};
  ck_assert_msg(json_value(&r), "invalid JSON near offset %ld:\n%s", (long)(r.p - text), text);
  double v_sd = sqrt((pow(0.25 - 1.75 / 3, 2) + pow(0.5 - 1.75 / 3, 2) + pow(1 - 1.75 / 3, 2)) / 2);
  snprintf(want, sizeof want, "\"sd\": {\"violation_ratio\": %.10g, \"rate\": 0,", v_sd);
  const char *keys[] = {
      "\"train_seconds\": 30, \"epochs\": 2",
      "\"violation_ratio\": 0.5833333333, \"rate\": 6,",
      "\"seeds\": [3, 4, 5]",
      "\"per_seed\": {\"violation_ratio\": [0.25, 0.5, 1], \"rate\": [6, 6, 6]",
      "\"train_seconds\": [10, 20, 60]}",
      want,
      "\"train_seconds\": 26.45751311}",
      "\"rate_load_balanced_sd\": [0.5, 0.25], \"rate_no_violation_sd\": [0.5, 0.25]"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    ck_assert_msg(strstr(text, keys[i]) != NULL, "missing %s in\n%s", keys[i], text);
  ck_assert_int_eq(count_str(text, "\"per_seed\""), 1);
  ck_assert_int_eq(count_str(text, "\"rate_load_balanced_sd\""), 1);
  free(text);
  ck_assert_int_eq(unlink(path), 0);
  ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

Suite *suite_eval_report(void) {
  const sg_test_case cases[] = {
      {"test_ablation_json", test_ablation_json},
      {"test_mean_sd", test_mean_sd},
      {"test_ablation_json_runs", test_ablation_json_runs},
  };
  return sg_test_suite("eval_report", cases, sizeof cases / sizeof cases[0], 60);
}
