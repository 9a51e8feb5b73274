/* assoc gen: generates a data set of the wireless scenario (docs/system.md). */
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "assoc_dist.h"
#include "cli.h"

static const char gen_help[] =
    "usage: assoc gen --samples S --out FILE [options]\n"
    "\n"
    "Generates S samples of the wireless scenario of docs/system.md and writes\n"
    "them as a zlib-compressed .npz (schema in docs/system.md). Sample s depends\n"
    "only on (seed, s): the same for every thread count and every S > s.\n"
    "Under mpirun each rank generates its block of samples and rank 0 writes\n"
    "the file: byte for byte the file one process writes.\n"
    "\n"
    "  --samples S          number of samples (required)\n"
    "  --out FILE           output .npz (required)\n"
    "  --seed X             seed, 0..2^63-1 (default 1)\n"
    "  --bs M               base stations (default 2)\n"
    "  --antennas N         antennas per BS, also the BS load limit (default 4)\n"
    "  --ues K              users (default 8)\n"
    "  --pt-dbm P           transmit power per BS in dBm (default 30)\n"
    "  --area A             side of the square area in m (default 200)\n"
    "  --bs-height H        BS height in m (default 10)\n"
    "  --ue-height H        UE height in m (default 1.5)\n"
    "  --noise-dbm-hz D     noise density in dBm/Hz (default -174)\n"
    "  --bandwidth-hz B     bandwidth in Hz (default 1e9)\n"
    "  --noise-figure-db F  noise figure in dB (default 0)\n"
    "  --path-mean L        Poisson mean of the path count (default 1.8)\n"
    "  --outage             add the outage link state (h = 0)\n"
    "  --threads T          OpenMP threads (default: OMP_NUM_THREADS or all)\n"
    "  --quiet              no progress or summary\n"
    "  -h, --help           this help\n";

enum gen_option {
  GEN_SAMPLES = 1000,
  GEN_SEED,
  GEN_BS,
  GEN_ANTENNAS,
  GEN_UES,
  GEN_PT,
  GEN_AREA,
  GEN_BS_HEIGHT,
  GEN_UE_HEIGHT,
  GEN_NOISE_HZ,
  GEN_BANDWIDTH,
  GEN_NOISE_FIGURE,
  GEN_PATH_MEAN,
  GEN_OUTAGE,
};

static const struct option gen_options[] = {
    {"samples", required_argument, NULL, GEN_SAMPLES},
    ASSOC_OPTION_OUT,
    {"seed", required_argument, NULL, GEN_SEED},
    {"bs", required_argument, NULL, GEN_BS},
    {"antennas", required_argument, NULL, GEN_ANTENNAS},
    {"ues", required_argument, NULL, GEN_UES},
    {"pt-dbm", required_argument, NULL, GEN_PT},
    {"area", required_argument, NULL, GEN_AREA},
    {"bs-height", required_argument, NULL, GEN_BS_HEIGHT},
    {"ue-height", required_argument, NULL, GEN_UE_HEIGHT},
    {"noise-dbm-hz", required_argument, NULL, GEN_NOISE_HZ},
    {"bandwidth-hz", required_argument, NULL, GEN_BANDWIDTH},
    {"noise-figure-db", required_argument, NULL, GEN_NOISE_FIGURE},
    {"path-mean", required_argument, NULL, GEN_PATH_MEAN},
    {"outage", no_argument, NULL, GEN_OUTAGE},
    ASSOC_OPTION_THREADS,
    ASSOC_OPTION_QUIET,
    ASSOC_OPTION_HELP,
    {NULL, 0, NULL, 0},
};

typedef struct gen_args {
  assoc_scenario sc;
  int64_t samples;
  assoc_common_args common; /* --out, --threads, --quiet, --help */
} gen_args;

/* Applies one option (an assoc_option_fn); 0 or -1 (message printed). */
static int gen_option(void *args, int opt, char *v) {
  gen_args *a = args;
  const char *c = "gen";
  assoc_scenario *sc = &a->sc;
  switch (opt) {
  case GEN_SAMPLES:
    return assoc_parse_i64(c, "samples", v, 1, INT64_C(1) << 40, &a->samples);
  case GEN_SEED:
    return assoc_parse_u64(c, "seed", v, (UINT64_C(1) << 63) - 1, &sc->seed);
  case GEN_BS:
    return assoc_parse_int(c, "bs", v, 1, ASSOC_MAX_BS, &sc->M);
  case GEN_ANTENNAS:
    return assoc_parse_int(c, "antennas", v, 1, ASSOC_MAX_ANTENNAS, &sc->N);
  case GEN_UES:
    return assoc_parse_int(c, "ues", v, 1, ASSOC_MAX_UES, &sc->K);
  case GEN_PT:
    return assoc_parse_double(c, "pt-dbm", v, -100, 100, &sc->pt_dbm);
  case GEN_AREA:
    return assoc_parse_double(c, "area", v, 1, 1e6, &sc->area_m);
  case GEN_BS_HEIGHT:
    return assoc_parse_double(c, "bs-height", v, 0, 1e4, &sc->bs_height_m);
  case GEN_UE_HEIGHT:
    return assoc_parse_double(c, "ue-height", v, 0, 1e4, &sc->ue_height_m);
  case GEN_NOISE_HZ:
    return assoc_parse_double(c, "noise-dbm-hz", v, -250, 0, &sc->noise_dbm_hz);
  case GEN_BANDWIDTH:
    return assoc_parse_double(c, "bandwidth-hz", v, 1, 1e12, &sc->bandwidth_hz);
  case GEN_NOISE_FIGURE:
    return assoc_parse_double(c, "noise-figure-db", v, 0, 100, &sc->noise_figure_db);
  case GEN_PATH_MEAN:
    return assoc_parse_double(c, "path-mean", v, 1e-6, 50, &sc->path_mean);
  case GEN_OUTAGE:
    sc->outage = true;
    return 0;
  default:
    return assoc_common_option(c, opt, v, &a->common);
  }
}

static int gen_parse(int argc, char **argv, gen_args *a) {
  *a = (gen_args){.sc = assoc_scenario_default()};
  int first = assoc_parse_options("gen", argc, argv, gen_options, gen_option, a);
  if (first < 0) return -1;
  if (a->common.help) return 0;
  if (first < argc) {
    fprintf(stderr, "assoc gen: unexpected argument '%s'\n", argv[first]);
    return -1;
  }
  if (!a->samples || !a->common.out) {
    fprintf(stderr, "assoc gen: --samples and --out are required (see assoc gen --help)\n");
    return -1;
  }
  sg_io_error err;
  if (assoc_scenario_check(&a->sc, &err)) {
    fprintf(stderr, "assoc gen: %s\n", err.msg);
    return -1;
  }
  return 0;
}

int assoc_check_gen(int argc, char **argv) {
  gen_args a;
  return gen_parse(argc, argv, &a) ? ASSOC_EXIT_USAGE : ASSOC_EXIT_OK;
}

/* The per-sample arrays of a data set, sample-major: a block of samples
 * of each is one contiguous run of bytes. */
static int gather_samples(const assoc_dataset *mine, assoc_dataset *all, sg_io_error *err) {
  int64_t links = (int64_t)mine->M * mine->K, n = mine->S;
  struct {
    const void *mine;
    void *all;
    int64_t bytes;
  } arrays[] = {
      {mine->H_re, all->H_re, n * links * mine->N * 8},
      {mine->H_im, all->H_im, n * links * mine->N * 8},
      {mine->ue_pos, all->ue_pos, n * mine->K * 2 * 8},
      {mine->pl_db, all->pl_db, n * links * 8},
      {mine->los, all->los, n * links},
      {mine->outage, all->outage, n * links},
      {mine->n_paths, all->n_paths, n * links},
  };
  for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
    if (assoc_dist_gather(arrays[i].mine, arrays[i].bytes, arrays[i].all, err)) return -1;
  return 0;
}

/* Every rank generates its block of the samples (sample s depends on
 * (seed, s) alone, so the blocks are those of the one-process set); rank 0
 * gathers them in rank order. ds is the whole set on rank 0, empty elsewhere. */
static int generate(const gen_args *a, assoc_dataset *ds, sg_io_error *err) {
  int ranks = assoc_dist_size(), rank = assoc_dist_rank();
  memset(ds, 0, sizeof *ds);
  if (ranks == 1) return assoc_generate(&a->sc, a->samples, ds, err);
  if (a->samples < ranks) {
    snprintf(err->msg, sizeof err->msg, "--samples %lld is fewer than the %d ranks",
             (long long)a->samples, ranks);
    return -1;
  }
  int64_t lo, hi;
  assoc_dist_block(a->samples, rank, ranks, &lo, &hi);
  assoc_dataset mine;
  if (assoc_generate_part(&a->sc, lo, hi - lo, &mine, err)) return -1;
  int rc = rank == 0 ? assoc_dataset_for_scenario(&a->sc, a->samples, ds, err) : 0;
  if (!rc) rc = gather_samples(&mine, ds, err);
  assoc_dataset_free(&mine);
  return rc;
}

int assoc_cmd_gen(int argc, char **argv) {
  gen_args a;
  if (gen_parse(argc, argv, &a)) return ASSOC_EXIT_USAGE;
  int start = assoc_command_start("gen", a.common.help, gen_help, a.common.out, a.common.threads);
  if (start != ASSOC_GO_ON) return start;
  bool writer = assoc_dist_rank() == 0;
  bool tty = writer && !a.common.quiet && isatty(STDERR_FILENO);
  double t0 = omp_get_wtime();
  assoc_dataset ds;
  sg_io_error err;
  if (generate(&a, &ds, &err)) {
    fprintf(stderr, "assoc gen: %s\n", err.msg);
    assoc_dataset_free(&ds);
    return ASSOC_EXIT_FAIL;
  }
  double t1 = omp_get_wtime();
  if (tty) fprintf(stderr, "  writing %s ...", a.common.out);
  int rc = writer ? assoc_dataset_save(&ds, a.common.out, &err) : 0;
  if (tty) fprintf(stderr, "\r%60s\r", "");
  double t2 = omp_get_wtime();
  assoc_dataset_free(&ds);
  if (rc) {
    fprintf(stderr, "assoc gen: %s\n", err.msg);
    return ASSOC_EXIT_FAIL;
  }
  if (!a.common.quiet && writer)
    printf("wrote %s: %lld samples, M=%d N=%d K=%d, seed %llu (generate %.2f s, write %.2f s)\n",
           a.common.out, (long long)a.samples, a.sc.M, a.sc.N, a.sc.K,
           (unsigned long long)a.sc.seed, t1 - t0, t2 - t1);
  return ASSOC_EXIT_OK;
}
