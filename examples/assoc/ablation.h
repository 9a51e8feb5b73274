/* assoc ablation, shared by its parts: ablation.c (options and the
 * command), ablation_data.c (the fixed data sets and the baselines),
 * ablation_run.c (training and evaluating every model with every seed, the
 * means and standard deviations), ablation_report.c (table.md,
 * ablation.json, CSV and plot data) and ablation_plots.c (the gnuplot
 * script and running it). */
#ifndef ASSOC_ABLATION_H
#define ASSOC_ABLATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "assoc_eval.h"
#include "assoc_train.h"

enum { ONEHOT_SAMPLES = 4, MAX_CURVE_POINTS = 64, ABL_MAX_SEEDS = 100 };

/* The models: the paper's four (index = assoc_gnn_variant), at index
 * ABL_IMPROVED SKGS-GNN+: SKGS-GNN on the link-nodes features trained on
 * the ES associations of its training set (abl_improved_config), and at
 * index ABL_SM the slot of the paper's SM column (SM-GNN, JointGNN), which
 * runs only when abl_sm_enable() gave it its training and evaluation. */
enum { ABL_IMPROVED = ASSOC_GNN_VARIANT_COUNT, ABL_SM, ABL_MAX_MODELS };
extern const char *const abl_improved_name; /* "SKGS-GNN+" */
extern const char *const abl_sm_name;       /* "SM-GNN" */
/* Turns a run's configuration into SKGS-GNN+'s. */
void abl_improved_config(assoc_train_config *c);
/* A model's display name, by index. */
const char *abl_model_name(int index);

/* ---- the SM column (JointGNN): a slot, empty unless enabled ------------------------- */

/* What the ablation needs of a model that designs its own beams (SM-GNN,
 * docs/models.md "JointGNN"). With the hooks set (abl_sm_enable, before
 * the command runs) SM-GNN becomes a model of --models (default: on) and
 * gets a row in the main table (its one-hot association's violations and
 * MRT rates), a row in the beams table (its load-balanced association with
 * ZF, WMMSE and BFGNN beams, and its own beams in the column "own beams"),
 * and points on the curves; it is left out of the training plots. */
typedef struct abl_sm_hooks {
  /* Trains with c (c->seed is the run's seed; widths, schedule and threads
   * as the other models) on train, validating on val, and writes the
   * checkpoint ckpt; *train_seconds receives the training time. 0, or -1
   * after printing a message. Under mpirun it runs on every rank (val
   * NULL but on rank 0), which must train together and leave the writing
   * to rank 0 (abl_lead); evaluate runs on rank 0 alone. */
  int (*train)(const assoc_train_config *c, const assoc_dataset *train, const assoc_dataset *val,
               const char *ckpt, double *train_seconds);
  /* Evaluates the checkpoint on ds: out as assoc_eval_model fills it (the
   * rates of its one-hot association with MRT; es_rate may be NULL),
   * lb_assoc (S x K, may be NULL) its one-hot association load-balanced as
   * in docs/models.md (keep the largest a~, -1 dropped), *own_rate (may be
   * NULL) the mean sum-rate of that association with its own beams. 0, or
   * -1 after printing a message. */
  int (*evaluate)(const char *ckpt, const assoc_dataset *ds, const double *es_rate,
                  assoc_eval_metrics *out, int *lb_assoc, double *own_rate);
} abl_sm_hooks;
/* JointGNN's hooks (ablation_sm.c), which assoc ablation enables unless
 * another set was enabled first. */
extern const abl_sm_hooks abl_jointgnn_hooks;
/* Enables the SM-GNN slot with h (copied); both hooks must be set. */
void abl_sm_enable(const abl_sm_hooks *h);
/* The hooks, or NULL while the slot is empty. */
const abl_sm_hooks *abl_sm(void);

/* The training set of run seed s is generated with seed s for the base
 * seed and with ABL_TRAIN_SEED_OFFSET + s for every other seed: a range the
 * fixed sets of the run (base seed + 1, + 2, + 100 + K) never reach. */
#define ABL_TRAIN_SEED_OFFSET (UINT64_C(1) << 62)

/* The generalisation curves (Fig. 4a, 4b, 4c): sum-rate against K (M 2),
 * against P_t (M 2, K 8) and against M (K = M N), all with the models
 * trained on M 2, K 8, 30 dBm. */
enum { CURVE_K, CURVE_PT, CURVE_M, ABL_CURVES };
enum { MAX_CURVE_METHODS = 20 };

/* The baselines of every curve: the curve's first N_CURVE_BASELINES
 * methods, in this order, before the models. The plots style and label
 * them by position. */
enum { N_CURVE_BASELINES = 5 };
extern const assoc_method abl_curve_baselines[N_CURVE_BASELINES];
/* The baselines whose load-balanced associations get BFGNN beams on every
 * curve (ES_BFGNN, MaxSINR_BFGNN, RandInt_BFGNN): the curve's last
 * methods, after the models. */
enum { N_BF_CURVE = 3 };
extern const assoc_method abl_bf_curve_baselines[N_BF_CURVE];

/* ---- configuration ------------------------------------------------------------------ */

typedef struct abl_args {
  const char *out;
  bool quick, no_plots, quiet, help;
  bool use[ABL_MAX_MODELS];
  assoc_train_config train; /* variant and seed set per run */
  int64_t train_samples, val_samples, test_samples, curve_samples;
  int k_min, k_max, k_step;
  uint64_t seed; /* the base seed: fixed data sets, first run */
  int seeds;     /* runs per model, seeds seed .. seed + seeds - 1 */
  int draws;     /* sampled decoding of the models' test results (assoc eval --draws) */
  int threads;
  int pt_min, pt_max, pt_step; /* dBm, the sum-rate-against-P_t curve */
  int m_max;                   /* largest M of the sum-rate-against-M curve */
  bool no_bfgnn;               /* no BFGNN: no BFGNN column, no _BFGNN curves */
  int bf_d, bf_h, bf_epochs;   /* BFGNN; the rest of its schedule is the models' */
  assoc_bfgnn_head bf_head;    /* BFGNN's beam head (default: duality) */
  double bf_t0;
} abl_args;

/* ---- state of a run ------------------------------------------------------------------- */

/* The per-epoch series of a training run, averaged over the seeds for the
 * training plots (columns of the training log). */
enum {
  EPOCH_LOSS,
  EPOCH_TRAIN_RATE,
  EPOCH_VIOLATION,
  EPOCH_VAL_LB_RATE,
  EPOCH_VAL_VIOLATION,
  EPOCH_SERIES
};
extern const char *const abl_epoch_series_names[EPOCH_SERIES];

/* One model trained with one seed. */
typedef struct seed_run {
  uint64_t seed;
  char ckpt[1024], log[1024];
  double train_seconds, wall_seconds;
  int epochs;
  assoc_eval_metrics test;
  double curve_lb[ABL_CURVES][MAX_CURVE_POINTS], curve_nv[ABL_CURVES][MAX_CURVE_POINTS];
  int *lb_assoc, *nv_assoc; /* test set, S x K, until the beams of the run are rated */
  double sm_own_rate;       /* SM-GNN: its LB association with its own beams */
  double *epoch_series;     /* train.epochs x EPOCH_SERIES, NaN where not logged */
} seed_run;

/* One model over its seeds. */
typedef struct model_run {
  assoc_gnn_variant variant;
  int index;                   /* in abl_args.use: the variant, or ABL_IMPROVED */
  const char *name;            /* abl_model_name(index) */
  char key[32];                /* file stem, e.g. "attskgs-gnn" */
  seed_run *runs;              /* abl_args.seeds */
  int n_runs;                  /* completed runs */
  assoc_eval_metrics mean, sd; /* of the test metrics over the runs */
  double train_seconds, train_seconds_sd;
  double *epoch_mean, *epoch_sd;                /* train.epochs x EPOCH_SERIES */
  double onehot[ONEHOT_SAMPLES][ASSOC_MAX_UES]; /* row argmax of A~, first seed's model */
} model_run;

typedef struct curve_data {
  const char *parameter;         /* JSON name of x: "K", "pt_dbm", "M" */
  const char *file;              /* "curve_k.csv", ... */
  int points, methods, n_models; /* methods: baselines, models, then the _BFGNN ones */
  double x[MAX_CURVE_POINTS];
  const char *names[MAX_CURVE_METHODS];
  char bf_names[N_BF_CURVE][32]; /* "ES_BFGNN", ... */
  double *lb, *nv;               /* methods x points: baselines, then the means over the seeds */
  double *lb_sd, *nv_sd;         /* methods x points: sd over the seeds (NaN for baselines) */
  int runs[MAX_CURVE_METHODS];   /* per method: seeds behind the row (0: a baseline) */
  assoc_dataset sets[MAX_CURVE_POINTS];
  double *es_rate[MAX_CURVE_POINTS];           /* ES rate per sample of each set */
  int *bf_assoc[MAX_CURVE_POINTS][N_BF_CURVE]; /* load-balanced associations for BFGNN */
} curve_data;

/* The values of a row of the beams table (Table 1 row 4): the rates of one
 * association (bps/Hz, means over the test samples) with MRT, ZF, WMMSE,
 * BFGNN and (SM-GNN) the model's own beams, and the times per sample. */
enum {
  BEAM_MRT,
  BEAM_ZF,
  BEAM_WMMSE,
  BEAM_WMMSE_US,
  BEAM_BFGNN,
  BEAM_BFGNN_US,
  BEAM_OWN,
  BEAM_VALUES
};
extern const char *const abl_beam_value_names[BEAM_VALUES];

typedef struct beam_row {
  char name[64];     /* "AttSKGS-GNN", "ES", ... */
  const char *assoc; /* "load-balanced" or "no-violation" */
  bool seeded;       /* the association follows the run's seed (a model's) */
  double paper;      /* the paper's row 4 (BFGNN), NaN where none */
  int n;             /* runs: one per seed */
  double v[ABL_MAX_SEEDS][BEAM_VALUES];
  double mean[BEAM_VALUES], sd[BEAM_VALUES];
} beam_row;

/* BFGNN of one run seed. */
typedef struct bf_seed {
  uint64_t seed;
  char ckpt[1024];
  double train_seconds;
  int64_t params;
  double curve[ABL_CURVES][N_BF_CURVE][MAX_CURVE_POINTS]; /* mean rates; NaN: not run */
} bf_seed;

typedef struct abl_run {
  const abl_args *a;
  assoc_dataset val, test;
  model_run models[ABL_MAX_MODELS];
  int n_models;
  assoc_eval_metrics base[ASSOC_METHOD_COUNT];
  bool base_done[ASSOC_METHOD_COUNT];
  int *es_assoc; /* test set, S x K */
  double *es_rate;
  int *base_lb[ASSOC_METHOD_COUNT];   /* load-balanced baseline associations, S x K */
  double val_base[N_CURVE_BASELINES]; /* LB rates on the validation set (Fig. 2a) */
  curve_data curves[ABL_CURVES];
  bf_seed *bf;         /* a->seeds, NULL with --no-bfgnn */
  beam_row *beam_rows; /* models (SKGS-GNN+ twice: LB and NV), then the baselines */
  int n_beam_rows;
  double seconds_total;
  double seconds_data;  /* the fixed data sets and every baseline on them (abl_prepare) */
  double seconds_beams; /* BFGNN training and the beams of every run (abl_beams_seed) */
} abl_run;

/* ---- ablation.c ---------------------------------------------------------------------- */

/* Under mpirun every rank runs the study's training runs together, each
 * data-parallel over the ranks (assoc train's); rank 0, the lead, alone
 * makes the fixed data sets, evaluates, prints, writes files and plots.
 * True on one process. */
bool abl_lead(void);

/* Progress on stderr unless --quiet. */
void abl_note(const abl_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* buf = dir/name. */
void abl_path_in(char *buf, size_t len, const char *dir, const char *name);

/* The seed of run r (0-based) and the seed of its training set. */
uint64_t abl_run_seed(const abl_args *a, int r);
uint64_t abl_train_data_seed(const abl_args *a, int r);

/* ---- ablation_data.c ------------------------------------------------------------------ */

/* Generates S samples with M BSs, K UEs and P_t pt_dbm, otherwise the paper
 * scenario; 0 or -1 (printed). */
int abl_generate(int M, int K, double pt_dbm, int64_t S, uint64_t seed, assoc_dataset *ds);
/* The fixed data sets (validation, test, written to test.npz, and the
 * curve's), the baselines on the test set and on every curve point; 0 or
 * -1 (message printed). */
int abl_prepare(abl_run *r);
void abl_free_data(abl_run *r);

/* ---- ablation_run.c ------------------------------------------------------------------- */

/* Trains every model of --models with every seed, evaluates each on the
 * test set and the curve sets, and summarises them over the seeds; 0 or -1
 * (message printed). */
int abl_train_models(abl_run *r);
void abl_free_models(abl_run *r);

/* ---- ablation_beams.c ------------------------------------------------------------------ */

/* The rows of the beams table and the BFGNN runs (after the models are
 * initialised); 0 or -1. */
int abl_beams_init(abl_run *r);
/* Run j: trains BFGNN on the training set (as assoc train --model bfgnn)
 * and rates every association of run j and the baselines' with ZF, WMMSE
 * and BFGNN beams, and the curves' baseline associations with BFGNN beams;
 * frees the run's associations. 0 or -1 (message printed). */
int abl_beams_seed(abl_run *r, int j, const assoc_dataset *train);
/* Means and sds over the seeds of the beams table and the _BFGNN curves. */
void abl_beams_summarise(abl_run *r);
void abl_beams_free(abl_run *r);

/* ---- ablation_beams_report.c ----------------------------------------------------------- */

/* The beams table (Markdown) and its JSON members ("bfgnn", "beams",
 * "validation_baselines"), as one string for assoc_ablation_report. */
int abl_write_beams_table(FILE *f, const abl_run *r);
char *abl_beams_json(const abl_run *r);

/* ---- ablation_report.c ------------------------------------------------------------------ */

/* The paper's Table 1 column of a model (SM-GNN: the SM column). */
assoc_paper_row abl_paper_row(int index);

/* Writes fn's output to the file `name` in the output directory, atomically;
 * 0 or -1 (message printed). */
int abl_write_in_dir(const abl_run *r, const char *name, int (*fn)(FILE *, void *), void *user);
/* The Table-1-like table in Markdown (`user` is the abl_run). */
int abl_write_table(FILE *f, void *user);
/* table.md, curve_k.csv, onehot.dat and, with several seeds, the
 * per-epoch means and sds train_<model>-seeds.csv; 0 or -1 (message
 * printed). */
int abl_write_results(abl_run *r);
/* ablation.json, with `plots` (what became of the plots) in its config. */
int abl_write_json(abl_run *r, const char *plots);

/* ---- ablation_plots.c ------------------------------------------------------------------- */

/* Writes plots.gp and runs gnuplot on it. Returns what became of the plots:
 * "written", "not requested (--no-plots)" or "skipped: ..." (with a note on
 * stderr). */
const char *abl_make_plots(const abl_run *r);

#endif
