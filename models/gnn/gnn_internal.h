/* Private to models/gnn: the trunk shared by the association GNNs
 * (gnn.c) and BFGNN (bfgnn.c): the pre-processing MLPs and the L update
 * layers of docs/models.md, without an output head. */
#ifndef ASSOC_GNN_INTERNAL_H
#define ASSOC_GNN_INTERNAL_H

#include "assoc_gnn.h"

/* Validates cfg, then fills m: cfg, params (owned), layers, and registers
 * and initialises mlp_p, mlp_q, mlp_e and the layers from rng, in that
 * order (m->mlp_out is left zeroed). 0, or -1 after reporting (m's members
 * are then freed). */
int assoc_gnn_trunk_new(assoc_gnn *m, const assoc_gnn_config *cfg, sg_rng *rng);
/* Frees m's parameters and layers (not m). */
void assoc_gnn_trunk_free(assoc_gnn *m);

/* The final edge embeddings e [B, K, M, d] (UE-major) of inputs p
 * [B, M, fp], q [B, K, fq], H [B, M, K, fe] (not validated here). */
sg_tensor *assoc_gnn_trunk_forward(sg_graph *g, const assoc_gnn *m, sg_tensor *p, sg_tensor *q,
                                   sg_tensor *H);

#endif
