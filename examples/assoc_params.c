/* assoc params: the trainable parameter count of each association GNN at a
 * configuration (default: the paper's, d 512, h 1024, L 2, N 4), per part,
 * next to the counts the paper reports. Why they differ: docs/ablation.md,
 * "Parameters". */
#include <getopt.h>
#include <stdio.h>

#include "assoc_cli.h"
#include "sg_gnn.h"

static void usage(FILE *f) {
  fprintf(f, "usage: assoc params [--d D] [--h H] [--layers L] [--antennas N]\n\n"
             "Prints the trainable parameter count of AttSKGS-, SKGS-, GS- and SMA-GNN,\n"
             "per part, at the paper configuration unless widths are given, beside the\n"
             "paper's 45.67 M (AttSKGS-GNN) and 53.01 M (MLP-edge models). The weights do\n"
             "not depend on M or K; N enters through the edge features (2N inputs).\n\n"
             "  --d D         embedding width (default 512)\n"
             "  --h H         MLP hidden width (default 1024)\n"
             "  --layers L    update layers (default 2)\n"
             "  --antennas N  antennas per BS (default 4)\n"
             "  -h, --help    this help\n");
}

int assoc_cmd_params(int argc, char **argv) {
  static const struct option opts[] = {
      {"d", required_argument, NULL, 'd'},      {"h", required_argument, NULL, 'H'},
      {"layers", required_argument, NULL, 'L'}, {"antennas", required_argument, NULL, 'N'},
      {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
  int d = 512, h = 1024, layers = 2, antennas = 4, c, bad = 0;
  optind = 1, opterr = 0;
  while (!bad && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'd':
      bad = assoc_parse_int("params", "d", optarg, 1, 8192, &d);
      break;
    case 'H':
      bad = assoc_parse_int("params", "h", optarg, 1, 16384, &h);
      break;
    case 'L':
      bad = assoc_parse_int("params", "layers", optarg, 1, 16, &layers);
      break;
    case 'N':
      bad = assoc_parse_int("params", "antennas", optarg, 1, 1024, &antennas);
      break;
    case 'h':
      usage(stdout);
      return 0;
    default:
      bad = assoc_bad_option("params", argv);
    }
  }
  if (bad) return 2;
  if (optind < argc) {
    fprintf(stderr, "assoc params: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  static const double paper_m[SG_GNN_VARIANT_COUNT] = {45.67, 53.01, 53.01, 53.01};
  for (int v = 0; v < SG_GNN_VARIANT_COUNT; v++) {
    sg_gnn_config cfg = sg_gnn_config_paper((sg_gnn_variant)v);
    cfg.d = d, cfg.h = h, cfg.L = layers, cfg.fe = 2 * antennas, cfg.capacity = antennas;
    sg_gnn *m = sg_gnn_new(&cfg, 1);
    if (!m) {
      fprintf(stderr, "assoc params: cannot build %s (out of memory?)\n",
              sg_gnn_variant_name((sg_gnn_variant)v));
      return 1;
    }
    sg_gnn_print_params(m, stdout);
    printf("  paper (Table 1, its own layers): %.2f M\n\n", paper_m[v]);
    sg_gnn_free(m);
  }
  printf("Layer L's node updates feed nothing and are not built (docs/models.md);\n"
         "with them this definition counts 10.5 M more at the paper widths. See\n"
         "docs/ablation.md, \"Parameters\", for why the paper's counts differ.\n");
  return 0;
}
