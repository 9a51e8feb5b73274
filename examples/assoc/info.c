/* assoc info: describes a data set. It takes no options, only the data set
 * or --help alone, so it reads argv directly rather than through
 * assoc_parse_options. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char info_help[] =
    "usage: assoc info DATA\n"
    "\n"
    "Prints a data set's sizes, scenario parameters and link statistics.\n";

static void print_info(const char *path, const assoc_dataset *ds) {
  const assoc_scenario *sc = &ds->scenario;
  int64_t links = ds->S * ds->M * ds->K;
  double los = 0, paths = 0, snr_db = 0, amp = assoc_snr_amplitude(ds);
  for (int64_t i = 0; i < links; i++) {
    double h2 = 0;
    for (int n = 0; n < ds->N; n++)
      h2 += ds->H_re[i * ds->N + n] * ds->H_re[i * ds->N + n] +
            ds->H_im[i * ds->N + n] * ds->H_im[i * ds->N + n];
    los += ds->los[i], paths += ds->n_paths[i];
    snr_db += 10.0 * log10(h2 * amp * amp + 1e-300);
  }
  printf("%s: S=%lld samples, M=%d BSs, N=%d antennas, K=%d UEs, seed %llu\n", path,
         (long long)ds->S, ds->M, ds->N, ds->K, (unsigned long long)ds->seed);
  printf("  Pt %.2f dBm per BS, noise %.2f dBm (recorded: %.1f dBm/Hz, %.3g Hz, NF %.1f dB)\n",
         ds->pt_dbm, ds->noise_dbm, sc->noise_dbm_hz, sc->bandwidth_hz, sc->noise_figure_db);
  printf("  area %.1f m, heights BS %.1f m / UE %.1f m, path mean %.2f, outage state %s\n",
         sc->area_m, sc->bs_height_m, sc->ue_height_m, sc->path_mean, sc->outage ? "on" : "off");
  printf("  links: %.1f%% LOS, %.2f paths on average, mean per-stream SNR %.1f dB\n",
         100.0 * los / (double)links, paths / (double)links, snr_db / (double)links);
}

/* ASSOC_EXIT_OK with *help set for --help, or the data set in argv[1]. */
static int info_parse(int argc, char **argv, bool *help) {
  *help = argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
  if (!*help && (argc != 2 || argv[1][0] == '-')) {
    fprintf(stderr, "assoc info: expected one data set (see assoc info --help)\n");
    return ASSOC_EXIT_USAGE;
  }
  return ASSOC_EXIT_OK;
}

int assoc_check_info(int argc, char **argv) {
  bool help;
  return info_parse(argc, argv, &help);
}

int assoc_cmd_info(int argc, char **argv) {
  bool help;
  if (info_parse(argc, argv, &help)) return ASSOC_EXIT_USAGE;
  if (help) return fputs(info_help, stdout), ASSOC_EXIT_OK;
  assoc_dataset ds;
  if (assoc_load_dataset("info", argv[1], &ds)) return ASSOC_EXIT_FAIL;
  print_info(argv[1], &ds);
  assoc_dataset_free(&ds);
  return ASSOC_EXIT_OK;
}
