/* The association GNNs of docs/models.md: pre-processing MLPs, L update
 * layers (node updates and an MLP or attention edge update), the output
 * MLP, and the post-processing (softmax, Gumbel-softmax, capacity Sinkhorn).
 *
 * Internal layouts: BS embeddings b [B, M, d], UE embeddings c [B, K, d],
 * edge embeddings e [B, K, M, d] (UE-major, so the attention over the BSs of
 * one UE and the output [B, K, M] need no permutation of d-wide data). */
#include "assoc_gnn.h"
#include "gnn_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const variant_names[ASSOC_GNN_VARIANT_COUNT] = {"AttSKGS-GNN", "SKGS-GNN",
                                                                   "GS-GNN", "SMA-GNN"};
static const char *const variant_keys[ASSOC_GNN_VARIANT_COUNT] = {"AttSKGS_GNN", "SKGS_GNN",
                                                                  "GS_GNN", "SMA_GNN"};

const char *assoc_gnn_variant_name(assoc_gnn_variant v) {
  return v >= 0 && v < ASSOC_GNN_VARIANT_COUNT ? variant_names[v] : "unknown";
}

const char *assoc_gnn_variant_key(assoc_gnn_variant v) {
  return v >= 0 && v < ASSOC_GNN_VARIANT_COUNT ? variant_keys[v] : "unknown";
}

int assoc_gnn_variant_parse(const char *name) {
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) {
    size_t short_len = strlen(variant_names[v]) - strlen("-GNN");
    if (strcasecmp(name, variant_names[v]) == 0 || strcasecmp(name, variant_keys[v]) == 0 ||
        (strlen(name) == short_len && strncasecmp(name, variant_names[v], short_len) == 0))
      return v;
  }
  return -1;
}

assoc_gnn_config assoc_gnn_config_paper(assoc_gnn_variant v) {
  return (assoc_gnn_config){.variant = v,
                            .d = 512,
                            .h = 1024,
                            .L = 2,
                            .fp = 1,
                            .fq = 1,
                            .fe = 8,
                            .dtype = SG_F32,
                            .tau = 1.0,
                            .sk_iters = 10,
                            .capacity = 4.0};
}

static bool uses_sinkhorn(assoc_gnn_variant v) {
  return v == ASSOC_GNN_ATTSKGS || v == ASSOC_GNN_SKGS;
}

/* ---- construction ------------------------------------------------------------- */

static bool config_valid(const assoc_gnn_config *c) {
  const char *why = NULL;
  if (c->variant < 0 || c->variant >= ASSOC_GNN_VARIANT_COUNT)
    why = "unknown variant";
  else if (c->d < 1 || c->h < 1 || c->L < 1)
    why = "d, h and L must be >= 1";
  else if (c->fp < 1 || c->fq < 1 || c->fe < 1)
    why = "feature widths must be >= 1";
  else if (!(c->tau > 0))
    why = "tau must be > 0";
  else if (uses_sinkhorn(c->variant) && (c->sk_iters < 1 || !(c->capacity > 0)))
    why = "Sinkhorn needs sk_iters >= 1 and capacity > 0";
  if (why)
    sg_report_error("assoc_gnn_new", __FILE__, __LINE__, "%s (d %d h %d L %d tau %g T %d N %g)",
                    why, c->d, c->h, c->L, c->tau, c->sk_iters, c->capacity);
  return !why;
}

/* Registers "layers.<l>.<part>..." for one update layer; 0 or -1. */
static int layer_init(assoc_gnn_layer *ly, sg_params *p, const assoc_gnn_config *c, int l,
                      sg_rng *rng) {
  char name[SG_PARAM_NAME_MAX];
  int d = c->d, h = c->h, err = 0;
#define NAME(part) (snprintf(name, sizeof name, "layers.%d.%s", l, part), name)
  ly->node_update = l < c->L - 1;
  if (ly->node_update) {
    err |= sg_mlp_init(&ly->f1, p, NAME("f1"), 2 * d, h, d, rng);
    err |= sg_mlp_init(&ly->f2, p, NAME("f2"), 2 * d, h, d, rng);
    err |= sg_mlp_init(&ly->f3, p, NAME("f3"), 2 * d, h, d, rng);
    err |= sg_mlp_init(&ly->f4, p, NAME("f4"), 2 * d, h, d, rng);
  }
  if (c->variant == ASSOC_GNN_ATTSKGS) {
    err |= sg_linear_layer_init(&ly->wq, p, NAME("w_q"), d, d, false, rng);
    err |= sg_linear_layer_init(&ly->wk, p, NAME("w_k"), d, d, false, rng);
    err |= sg_linear_layer_init(&ly->wv, p, NAME("w_v"), d, d, false, rng);
    err |= sg_layernorm_layer_init(&ly->ln, p, NAME("ln"), d);
    err |= sg_mlp_init(&ly->f5, p, NAME("f5"), 2 * d, h, d, rng);
  } else {
    err |= sg_mlp_init(&ly->f5, p, NAME("f5"), 3 * d, h, d, rng);
  }
#undef NAME
  return err ? -1 : 0;
}

/* The pre-processing MLPs and the update layers, in this order. */
static int trunk_init(assoc_gnn *m, sg_rng *rng) {
  const assoc_gnn_config *c = &m->cfg;
  int err = 0;
  err |= sg_mlp_init(&m->mlp_p, m->params, "mlp_p", c->fp, c->h, c->d, rng);
  err |= sg_mlp_init(&m->mlp_q, m->params, "mlp_q", c->fq, c->h, c->d, rng);
  err |= sg_mlp_init(&m->mlp_e, m->params, "mlp_e", c->fe, c->h, c->d, rng);
  for (int l = 0; l < c->L && !err; l++) err |= layer_init(&m->layers[l], m->params, c, l, rng);
  return err ? -1 : 0;
}

int assoc_gnn_trunk_new(assoc_gnn *m, const assoc_gnn_config *cfg, sg_rng *rng) {
  *m = (assoc_gnn){.cfg = *cfg};
  if (!config_valid(cfg)) return -1;
  m->params = sg_params_new(cfg->dtype);
  sg_params_set_limit(m->params, cfg->max_params);
  m->layers = sg_malloc((size_t)cfg->L * sizeof *m->layers);
  if (m->layers) memset(m->layers, 0, (size_t)cfg->L * sizeof *m->layers);
  if (!m->params || !m->layers || trunk_init(m, rng)) {
    assoc_gnn_trunk_free(m);
    return -1;
  }
  return 0;
}

void assoc_gnn_trunk_free(assoc_gnn *m) {
  sg_params_free(m->params);
  sg_mfree(m->layers);
  m->params = NULL, m->layers = NULL;
}

assoc_gnn *assoc_gnn_new(const assoc_gnn_config *cfg, uint64_t seed) {
  if (!cfg || !config_valid(cfg)) return NULL;
  assoc_gnn *m = sg_malloc(sizeof *m);
  if (!m) return NULL;
  sg_rng rng;
  sg_rng_seed(&rng, seed);
  if (assoc_gnn_trunk_new(m, cfg, &rng) ||
      sg_mlp_init(&m->mlp_out, m->params, "mlp_out", cfg->d, cfg->h, 1, &rng)) {
    assoc_gnn_free(m);
    return NULL;
  }
  return m;
}

void assoc_gnn_free(assoc_gnn *m) {
  if (!m) return;
  assoc_gnn_trunk_free(m);
  sg_mfree(m);
}

int64_t assoc_gnn_param_count(const assoc_gnn *m) {
  return sg_params_numel(m->params);
}

void assoc_gnn_print_params(const assoc_gnn *m, FILE *f) {
  const assoc_gnn_config *c = &m->cfg;
  fprintf(f, "%s: d %d, h %d, L %d, Fp %d, Fq %d, Fe %d\n", assoc_gnn_variant_name(c->variant),
          c->d, c->h, c->L, c->fp, c->fq, c->fe);
  int64_t pre = sg_params_numel_prefix(m->params, "mlp_p.") +
                sg_params_numel_prefix(m->params, "mlp_q.") +
                sg_params_numel_prefix(m->params, "mlp_e.");
  fprintf(f, "  pre-processing (mlp_p, mlp_q, mlp_e): %lld\n", (long long)pre);
  for (int l = 0; l < c->L; l++) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "layers.%d.", l);
    fprintf(f, "  layer %d (%s): %lld\n", l + 1,
            m->layers[l].node_update ? "node and edge updates" : "edge update only",
            (long long)sg_params_numel_prefix(m->params, prefix));
  }
  fprintf(f, "  post-processing (mlp_out): %lld\n",
          (long long)sg_params_numel_prefix(m->params, "mlp_out."));
  int64_t total = assoc_gnn_param_count(m);
  fprintf(f, "  trainable parameters: %lld (%.2f M)\n", (long long)total, total / 1e6);
}

/* ---- forward ------------------------------------------------------------------ */

/* MLP on the concatenation of parts along the last axis, the parts
 * broadcasting against each other over the leading axes. */
static sg_tensor *mlp_cat(sg_graph *g, const assoc_gnn *m, const sg_mlp *mlp, int n,
                          sg_tensor *const *parts) {
  if (!m->cfg.concat_inputs) return sg_mlp_forward_parts(g, mlp, n, parts);
  /* Reference path: expand every part to the common leading shape, concat. */
  int nd = parts[0]->ndim;
  int64_t shape[SG_MAX_DIMS];
  for (int a = 0; a < nd - 1; a++) {
    shape[a] = 1;
    for (int i = 0; i < n; i++)
      if (parts[i]->shape[a] != 1) shape[a] = parts[i]->shape[a];
  }
  sg_tensor *full[3];
  for (int i = 0; i < n; i++) {
    shape[nd - 1] = parts[i]->shape[nd - 1];
    full[i] = sg_expand(g, parts[i], nd, shape);
  }
  return sg_mlp_forward(g, mlp, sg_concat(g, n, full, -1));
}

typedef struct embeddings {
  sg_tensor *b, *c, *e; /* [B, M, d], [B, K, d], [B, K, M, d] */
} embeddings;

static sg_tensor *reshape4(sg_graph *g, sg_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d) {
  return sg_reshape(g, t, 4, (int64_t[]){a, b, c, d});
}

/* Attention edge update, paper eq. (6)-(8): g_k = LN(sum_m alpha_km V_mk),
 * alpha_k = softmax_m(Q_k . K_m / sqrt(d)), then e_mk <- f5([e_mk, g_k]). */
static sg_tensor *edge_update_attention(sg_graph *g, const assoc_gnn *m, const assoc_gnn_layer *ly,
                                        const embeddings *x, sg_tensor *bv, sg_tensor *cv) {
  sg_tensor *query = sg_linear_layer_forward(g, &ly->wq, cv);   /* [B, K, 1, d] */
  sg_tensor *key = sg_linear_layer_forward(g, &ly->wk, bv);     /* [B, 1, M, d] */
  sg_tensor *value = sg_linear_layer_forward(g, &ly->wv, x->e); /* [B, K, M, d] */
  sg_tensor *att = sg_attention(g, query, key, value);          /* [B, K, 1, d] */
  /* Each tensor is released (memory planning: at once without gradients,
   * else after its backward readers) as soon as its last forward reader
   * has run. */
  sg_tensor *projections[] = {query, key, value};
  for (int i = 0; i < 3; i++) sg_release_after_backward(g, projections[i]);
  sg_tensor *parts[2] = {x->e, sg_layernorm_layer_forward(g, &ly->ln, att)};
  sg_release_after_backward(g, att);
  sg_tensor *e = mlp_cat(g, m, &ly->f5, 2, parts);
  sg_release_after_backward(g, parts[1]);
  return e;
}

/* The mean over an axis of the messages MLP(parts). The split path takes
 * the mean before the MLP's last Linear (sg_mlp_forward_parts_mean), the
 * reference path after it; the messages are dead once averaged (the mean's
 * backward does not read them): released. */
static sg_tensor *mean_message(sg_graph *g, const assoc_gnn *m, const sg_mlp *mlp, int n,
                               sg_tensor *const *parts, int axis) {
  if (!m->cfg.concat_inputs) return sg_mlp_forward_parts_mean(g, mlp, n, parts, axis);
  sg_tensor *messages = mlp_cat(g, m, mlp, n, parts);
  sg_tensor *mean = sg_mean(g, messages, axis, false);
  sg_release(g, messages);
  return mean;
}

static embeddings update_layer(sg_graph *g, const assoc_gnn *m, const assoc_gnn_layer *ly,
                               const embeddings *x) {
  int64_t B = x->e->shape[0], K = x->e->shape[1], M = x->e->shape[2], d = m->cfg.d;
  sg_tensor *bv = reshape4(g, x->b, B, 1, M, d); /* b_m seen from every UE */
  sg_tensor *cv = reshape4(g, x->c, B, K, 1, d); /* c_k seen from every BS */
  embeddings y = {NULL, NULL, NULL}; /* b and c stay NULL in layer L: they feed nothing */
  if (ly->node_update) {
    sg_tensor *to_bs[2] = {cv, x->e}, *to_ue[2] = {bv, x->e};
    sg_tensor *bs_in[2] = {x->b, mean_message(g, m, &ly->f1, 2, to_bs, 1)};
    sg_tensor *ue_in[2] = {x->c, mean_message(g, m, &ly->f3, 2, to_ue, 2)};
    y.b = mlp_cat(g, m, &ly->f2, 2, bs_in);
    y.c = mlp_cat(g, m, &ly->f4, 2, ue_in);
    sg_release_after_backward(g, bs_in[1]);
    sg_release_after_backward(g, ue_in[1]);
  }
  if (m->cfg.variant == ASSOC_GNN_ATTSKGS) {
    y.e = edge_update_attention(g, m, ly, x, bv, cv);
  } else {
    sg_tensor *parts[3] = {x->e, bv, cv};
    y.e = mlp_cat(g, m, &ly->f5, 3, parts);
  }
  /* The layer's inputs have had their last use in the forward (memory
   * planning). */
  sg_tensor *inputs[] = {bv, cv, x->b, x->c, x->e};
  for (int i = 0; i < 5; i++) sg_release_after_backward(g, inputs[i]);
  return y;
}

bool assoc_gnn_shape_is(const sg_tensor *t, sg_dtype dt, int ndim, const int64_t *shape) {
  bool ok = t->ndim == ndim && t->dtype == dt;
  for (int a = 0; ok && a < ndim; a++) ok = shape[a] < 0 || t->shape[a] == shape[a];
  return ok;
}

static bool check_input(sg_graph *g, const char *op, const assoc_gnn *m, const char *what,
                        const sg_tensor *t, int ndim, const int64_t *shape) {
  char got[96], want[96];
  bool ok = assoc_gnn_shape_is(t, m->cfg.dtype, ndim, shape);
  if (!ok) {
    int64_t shown[SG_MAX_DIMS];
    for (int a = 0; a < ndim; a++) shown[a] = shape[a] < 0 ? 0 : shape[a];
    sg_op_error(g, op, "%s is %s %s, expected %s %s (0: any size) for a %s model", what,
                sg_dtype_name(t->dtype), sg_shape_str(t->ndim, t->shape, got),
                sg_dtype_name(m->cfg.dtype), sg_shape_str(ndim, shown, want),
                assoc_gnn_variant_name(m->cfg.variant));
  }
  return ok;
}

/* The inputs of op (assoc_gnn_forward or assoc_gnn_predict) against the model. */
static bool inputs_valid(sg_graph *g, const char *op, const assoc_gnn *m, const sg_tensor *p,
                         const sg_tensor *q, const sg_tensor *H, assoc_gnn_mode mode,
                         const sg_rng *rng, const sg_tensor *noise) {
  const assoc_gnn_config *c = &m->cfg;
  if (!check_input(g, op, m, "p", p, 3, (int64_t[]){-1, -1, c->fp})) return false;
  int64_t B = p->shape[0], M = p->shape[1];
  if (!check_input(g, op, m, "q", q, 3, (int64_t[]){B, -1, c->fq})) return false;
  int64_t K = q->shape[1];
  if (!check_input(g, op, m, "H", H, 4, (int64_t[]){B, M, K, c->fe})) return false;
  if (mode == ASSOC_GNN_TRAIN && c->variant != ASSOC_GNN_SMA) {
    if (noise) return check_input(g, op, m, "noise", noise, 3, (int64_t[]){B, K, M});
    if (!rng) {
      sg_op_error(g, op, "train mode of %s needs Gumbel noise or an rng",
                  assoc_gnn_variant_name(c->variant));
      return false;
    }
  }
  return true;
}

/* The balanced Sinkhorn on log A_GS [B, K, M] (assoc_gnn_config.sk_balanced):
 * M N - K slack rows of mass 1, uniform over the BSs, fill the capacity
 * when there are fewer UEs, and are dropped again. */
static sg_tensor *balanced_sinkhorn(sg_graph *g, const assoc_gnn_config *c, sg_tensor *x,
                                    sg_sinkhorn_info *info) {
  int64_t B = x->shape[0], K = x->shape[1], M = x->shape[2];
  double slack = (double)M * c->capacity - (double)K;
  if (slack < 0 || slack != floor(slack)) /* over capacity: every column is capped anyway */
    return sg_sinkhorn(g, x, 1.0, c->capacity, c->sk_iters, 0.0, SG_SINKHORN_UNROLLED, info);
  if (slack == 0)
    return sg_sinkhorn_balanced(g, x, 1.0, c->capacity, c->sk_iters, 0.0, SG_SINKHORN_UNROLLED,
                                info);
  sg_tensor *pad = sg_full(g, x->dtype, 3, (int64_t[]){B, (int64_t)slack, M}, -log((double)M));
  sg_tensor *parts[2] = {x, pad};
  sg_tensor *y = sg_sinkhorn_balanced(g, sg_concat(g, 2, parts, 1), 1.0, c->capacity, c->sk_iters,
                                      0.0, SG_SINKHORN_UNROLLED, info);
  return sg_slice(g, y, 1, 0, K);
}

/* Ahat -> A~ (models.md post-processing). */
sg_tensor *(assoc_gnn_post_process)(sg_graph *g, const assoc_gnn_config *c, sg_tensor *logits,
                                    assoc_gnn_mode mode, sg_rng *rng, sg_tensor *noise,
                                    sg_sinkhorn_info *info) {
  if (!c || !logits) return NULL;
  if (c->variant == ASSOC_GNN_SMA) return sg_softmax(g, logits, -1);
  bool noisy = mode == ASSOC_GNN_TRAIN;
  if (noisy && !noise && !rng) {
    sg_op_error(g, "assoc_gnn_post_process", "train mode of %s needs Gumbel noise or an rng",
                assoc_gnn_variant_name(c->variant));
    return NULL;
  }
  /* Drawn here rather than inside the op, so that every variant consumes
   * the generator in the same way. */
  if (noisy && !noise) noise = sg_rand_gumbel(g, rng, logits->dtype, 3, logits->shape);
  switch (c->variant) {
  case ASSOC_GNN_GS:
    if (noisy) return sg_gumbel_softmax(g, logits, c->tau, -1, false, noise, NULL);
    return sg_softmax(g, sg_scale(g, logits, 1.0 / c->tau), -1);
  default: {
    sg_tensor *x = noisy ? sg_add(g, logits, noise) : logits;
    x = sg_log_softmax(g, sg_scale(g, x, 1.0 / c->tau), -1); /* log A_GS */
    /* tol 0: never stop early, so exactly T iterations run (models.md). */
    x = c->sk_balanced
            ? balanced_sinkhorn(g, c, x, info)
            : sg_sinkhorn(g, x, 1.0, c->capacity, c->sk_iters, 0.0, SG_SINKHORN_UNROLLED, info);
    return sg_exp(g, x);
  }
  }
}

sg_tensor *assoc_gnn_trunk_forward(sg_graph *g, const assoc_gnn *m, sg_tensor *p, sg_tensor *q,
                                   sg_tensor *H) {
  embeddings x;
  x.b = sg_mlp_forward(g, &m->mlp_p, p);
  x.c = sg_mlp_forward(g, &m->mlp_q, q);
  /* Edge features to the UE-major layout once, while they are 2N wide. */
  x.e = sg_mlp_forward(g, &m->mlp_e, sg_permute(g, H, (const int[]){0, 2, 1, 3}));
  for (int l = 0; l < m->cfg.L && x.e; l++) /* x.e NULL: an op failed (reported) */
    x = update_layer(g, m, &m->layers[l], &x);
  return x.e;
}

assoc_gnn_output(assoc_gnn_forward)(sg_graph *g, const assoc_gnn *m, sg_tensor *p, sg_tensor *q,
                                    sg_tensor *H, assoc_gnn_mode mode, sg_rng *rng,
                                    sg_tensor *noise) {
  assoc_gnn_output out = {0};
  if (!m || !p || !q || !H || !inputs_valid(g, "assoc_gnn_forward", m, p, q, H, mode, rng, noise))
    return out;
  int64_t B = p->shape[0], M = p->shape[1], K = q->shape[1];
  sg_tensor *e = assoc_gnn_trunk_forward(g, m, p, q, H);
  sg_tensor *scores = sg_mlp_forward(g, &m->mlp_out, e); /* [B, K, M, 1] */
  out.logits = sg_reshape(g, scores, 3, (int64_t[]){B, K, M});
  if (!out.logits) return out;
  sg_release(g, scores);           /* copied; the reshape's backward does not read it */
  sg_release_after_backward(g, e); /* the node embeddings are NULL after layer L */
  out.assoc = assoc_gnn_post_process(g, &m->cfg, out.logits, mode, rng, noise, &out.sinkhorn);
  return out;
}

/* ---- chunked inference ------------------------------------------------------- */

/* Bytes a chunk's widest activation may take (assoc_gnn_predict_chunk). At
 * the paper's width (32 samples a chunk) a 256-sample batch then peaks at
 * ~15 MiB above the weights instead of ~95 MiB, for ~5% more time per
 * sample (the weights are packed for BLIS once per chunk); at d 128 (128
 * samples) ~5% too. Measured with bench_gnn infer --chunk. */
enum { PREDICT_CHUNK_BYTES = 2 << 20 };

int64_t assoc_gnn_predict_chunk(const assoc_gnn *m, int64_t K, int64_t M) {
  int64_t per_sample = K * M * m->cfg.h * (int64_t)sg_dtype_size(m->cfg.dtype);
  int64_t chunk = per_sample > 0 ? PREDICT_CHUNK_BYTES / per_sample : 1;
  return chunk < 1 ? 1 : chunk;
}

sg_tensor *(assoc_gnn_predict)(sg_graph *g, const assoc_gnn *m, const sg_tensor *p,
                               const sg_tensor *q, const sg_tensor *H, int64_t chunk) {
  if (!m || !p || !q || !H ||
      !inputs_valid(g, "assoc_gnn_predict", m, p, q, H, ASSOC_GNN_EVAL, NULL, NULL))
    return NULL;
  if (p->graph == g || q->graph == g || H->graph == g) {
    sg_op_error(g, "assoc_gnn_predict", "the inputs live in the scratch graph, which it resets");
    return NULL;
  }
  assoc_model net = assoc_gnn_model(m);
  /* The inputs are only read: the batch struct holds them as it holds a
   * mini-batch's. */
  assoc_gnn_batch in = {
      .B = p->shape[0], .p = (sg_tensor *)p, .q = (sg_tensor *)q, .H = (sg_tensor *)H};
  return assoc_model_predict(g, &net, &in, m->cfg.capacity, chunk);
}

/* ---- evaluation helpers ------------------------------------------------------ */

sg_tensor *(assoc_one_hot)(sg_graph *g, sg_tensor *A) {
  if (!A) return NULL;
  return sg_one_hot(g, sg_argmax(g, A, -1, false), A->shape[A->ndim - 1]);
}

void assoc_argmax(const sg_tensor *A, int *assoc) {
  int64_t M = A->shape[A->ndim - 1], rows = A->numel / M;
  for (int64_t r = 0; r < rows; r++) {
    int best = 0;
    double best_v = sg_get(A, r * M);
    for (int64_t j = 1; j < M; j++) {
      double v = sg_get(A, r * M + j);
      if (v > best_v) best = (int)j, best_v = v; /* strict: ties keep the lowest m */
    }
    assoc[r] = best;
  }
}

void assoc_argmax_rows(const double *A, int64_t rows, int M, int *assoc) {
  for (int64_t r = 0; r < rows; r++) {
    const double *row = A + r * M;
    int best = 0;
    for (int m = 1; m < M; m++)
      if (row[m] > row[best]) best = m; /* strict: ties keep the lowest m */
    assoc[r] = best;
  }
}
