/* The arena: per-step memory of a graph (internal to the library).
 *
 * Two lanes, each a list of chunks with a bump pointer: one for tensor data
 * of RELEASE_MIN_BYTES or more, one for everything else (small tensors,
 * tensor and node records). Keeping the small records out of the data lane
 * lets released data merge with its neighbours and with the top of the
 * lane, so the data lane behaves as a stack-like heap. A rewind keeps every
 * chunk, so a step that repeats the previous step's allocations (as a
 * training step does) finds room in the chunks it already has and never
 * calls the allocator.
 *
 * The arena is the first member of a graph (autograd/graph.c), as a ggml
 * context sits below its graphs: the tensor layer allocates from a graph
 * through it without knowing the tape above. It also holds the call site of
 * the op being run (SG_AT), which misuse reports name. */
#ifndef SG_ARENA_H
#define SG_ARENA_H

#include "sg_tensor.h"

enum { SG_ARENA_ALIGN = 64 };

typedef struct sg_arena_chunk {
  struct sg_arena_chunk *next;
  size_t size, used;
  unsigned char *base; /* SG_ARENA_ALIGN-aligned start of the usable bytes */
} sg_arena_chunk;

/* A released tensor's data, free for a later tensor of this step. */
typedef struct sg_arena_block {
  void *p;
  size_t bytes;
} sg_arena_block;

typedef struct sg_arena_lane {
  sg_arena_chunk *first, *current;
  size_t used_below; /* bytes used in the chunks before current */
  int n_chunks;
} sg_arena_lane;

typedef struct sg_arena {
  sg_arena_lane small, data;
  size_t reserved;
  size_t peak_used;     /* high-water mark of the bytes used in both lanes */
  sg_arena_block *free; /* released blocks (sg_release), cleared by a rewind */
  int n_free, cap_free;
  bool no_reuse;      /* sg_set_memory_reuse(g, false) */
  bool failed;        /* an allocation failed since the last rewind (sg_graph_failed) */
  size_t first_chunk; /* sg_graph_set_first_chunk; 0: ARENA_MIN_CHUNK */
  const char *file;   /* call site of the op being run (see SG_AT) */
  int line;
} sg_arena;

/* The arena of a graph: its first member. */
static inline sg_arena *sg_graph_arena(sg_graph *g) {
  return (sg_arena *)g;
}

void sg_arena_rewind(sg_arena *a);  /* forget every allocation, keep the chunks */
void sg_arena_destroy(sg_arena *a); /* give every chunk back */
/* Bytes a tensor's data takes in the arena (its block size). */
size_t sg_arena_block_bytes(const sg_tensor *t);
/* Returns a data block to the free list (see sg_release). */
void sg_arena_release_block(sg_arena *a, void *p, size_t bytes);

#endif
