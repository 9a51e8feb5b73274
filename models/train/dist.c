/* Ranks and the fixed-order sum of assoc_dist.h: over MPI when built with
 * it (ASSOC_HAVE_MPI), one-process identities otherwise. */
#include "assoc_dist.h"

#include <stdlib.h>
#include <string.h>

#include "models_internal.h"

void assoc_dist_block(int64_t n, int rank, int size, int64_t *lo, int64_t *hi) {
  /* n*rank fits: n is a sample or element count (< 2^40), size < 2^20 */
  *lo = n * rank / size;
  *hi = n * (rank + 1) / size;
}

#ifndef ASSOC_HAVE_MPI

bool assoc_dist_compiled(void) {
  return false;
}
int assoc_dist_init(int *argc, char ***argv, sg_io_error *err) {
  (void)argc, (void)argv, (void)err;
  return 0;
}
void assoc_dist_finalize(void) {}
_Noreturn void assoc_dist_abort(int code) {
  exit(code);
}
int assoc_dist_rank(void) {
  return 0;
}
int assoc_dist_size(void) {
  return 1;
}
int assoc_dist_sum(void *buf, int64_t n, sg_dtype dt, sg_io_error *err) {
  (void)dt;
  return n < 0 || (n > 0 && !buf) ? assoc_fail(err, "assoc_dist_sum: bad buffer") : 0;
}
int assoc_dist_gather(const void *mine, int64_t bytes, void *all, sg_io_error *err) {
  if (bytes < 0 || (bytes > 0 && (!mine || !all)))
    return assoc_fail(err, "assoc_dist_gather: bad buffer");
  if (bytes > 0 && mine != all) memmove(all, mine, (size_t)bytes);
  return 0;
}

#else

#include <limits.h>
#include <mpi.h>

static bool started; /* by assoc_dist_init: finalize ends it */
static int my_rank, n_ranks = 1;

/* The receive buffer of the sums, kept between calls (a training step sums
 * a buffer of the same size every time: no allocation and no page faults
 * per step); freed by assoc_dist_finalize. */
static char *scratch_buf;
static size_t scratch_size;

static char *scratch(size_t bytes) {
  if (bytes <= scratch_size) return scratch_buf;
  char *grown = sg_realloc(scratch_buf, bytes);
  if (!grown) return NULL;
  scratch_buf = grown, scratch_size = bytes;
  return grown;
}

bool assoc_dist_compiled(void) {
  return true;
}

/* Variables every common launcher sets in its processes: Open MPI's
 * mpirun, PMIx (Open MPI 4+, Slurm), and PMI (MPICH's Hydra, Slurm). */
static bool launched_by_mpi(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    if (getenv(vars[i])) return true;
  return false;
}

int assoc_dist_init(int *argc, char ***argv, sg_io_error *err) {
  int already = 0;
  MPI_Initialized(&already);
  if (!already) {
    /* A plain start stays one process: no MPI runtime to start or wait for. */
    if (!launched_by_mpi()) return 0;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return assoc_fail(err, "MPI_Init failed");
    started = true;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &my_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &n_ranks);
  return 0;
}

void assoc_dist_finalize(void) {
  sg_mfree(scratch_buf);
  scratch_buf = NULL, scratch_size = 0;
  if (started) MPI_Finalize();
  started = false;
  my_rank = 0, n_ranks = 1;
}

_Noreturn void assoc_dist_abort(int code) {
  if (started && n_ranks > 1) MPI_Abort(MPI_COMM_WORLD, code);
  exit(code);
}

int assoc_dist_rank(void) {
  return my_rank;
}
int assoc_dist_size(void) {
  return n_ranks;
}

/* ---- the ring sum ------------------------------------------------------------- */

typedef struct ring {
  char *buf, *tmp;
  size_t elem;
  sg_dtype dt;
  int64_t n;
  int rank, size;
} ring;

static int64_t seg_lo(const ring *r, int j) {
  int64_t lo, hi;
  assoc_dist_block(r->n, j, r->size, &lo, &hi);
  return lo;
}
static int seg_len(const ring *r, int j) {
  return (int)(seg_lo(r, j + 1) - seg_lo(r, j)); /* seg_lo(r, size) = n */
}
static char *seg_ptr(const ring *r, int j) {
  return r->buf + (size_t)seg_lo(r, j) * r->elem;
}
static int mod(int a, int m) {
  return ((a % m) + m) % m;
}

/* Segment j += the partial sum received (received first: the ring's order). */
static void add_received(const ring *r, int j) {
  int len = seg_len(r, j);
  if (r->dt == SG_F32) {
    float *d = (float *)seg_ptr(r, j);
    const float *s = (const float *)r->tmp;
    for (int i = 0; i < len; i++) d[i] = s[i] + d[i];
  } else {
    double *d = (double *)seg_ptr(r, j);
    const double *s = (const double *)r->tmp;
    for (int i = 0; i < len; i++) d[i] = s[i] + d[i];
  }
}

/* Step s of the reduce-scatter: send segment rank - s to the right, take
 * segment rank - s - 1 from the left and add this rank's share to it. After
 * R - 1 steps rank j - 1 holds the whole sum of segment j. */
static void reduce_scatter(const ring *r, MPI_Datatype type) {
  int right = mod(r->rank + 1, r->size), left = mod(r->rank - 1, r->size);
  for (int s = 0; s < r->size - 1; s++) {
    int out = mod(r->rank - s, r->size), in = mod(r->rank - s - 1, r->size);
    MPI_Sendrecv(seg_ptr(r, out), seg_len(r, out), type, right, 0, r->tmp, seg_len(r, in), type,
                 left, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    add_received(r, in);
  }
}

/* Step s of the all-gather: pass the finished segment rank + 1 - s on. */
static void all_gather(const ring *r, MPI_Datatype type) {
  int right = mod(r->rank + 1, r->size), left = mod(r->rank - 1, r->size);
  for (int s = 0; s < r->size - 1; s++) {
    int out = mod(r->rank + 1 - s, r->size), in = mod(r->rank - s, r->size);
    MPI_Sendrecv(seg_ptr(r, out), seg_len(r, out), type, right, 1, seg_ptr(r, in), seg_len(r, in),
                 type, left, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  }
}

int assoc_dist_sum(void *buf, int64_t n, sg_dtype dt, sg_io_error *err) {
  if (n < 0 || (n > 0 && !buf) || (dt != SG_F32 && dt != SG_F64))
    return assoc_fail(err, "assoc_dist_sum: bad buffer (n = %lld)", (long long)n);
  if (n_ranks == 1) return 0;
  ring r = {
      .buf = buf, .elem = dt == SG_F32 ? 4 : 8, .dt = dt, .n = n, .rank = my_rank, .size = n_ranks};
  if (n / n_ranks + 1 > INT_MAX)
    return assoc_fail(err, "assoc_dist_sum: %lld elements over %d ranks exceed MPI's counts",
                      (long long)n, n_ranks);
  r.tmp = scratch(((size_t)(n / n_ranks) + 1) * r.elem);
  if (!r.tmp) return assoc_fail(err, "assoc_dist_sum: out of memory");
  MPI_Datatype type = dt == SG_F32 ? MPI_FLOAT : MPI_DOUBLE;
  reduce_scatter(&r, type);
  all_gather(&r, type);
  return 0;
}

/* ---- gather to rank 0 ----------------------------------------------------------- */

enum { GATHER_PIECE = 1 << 30 }; /* bytes per message: MPI counts are int */

static void send_bytes(const char *p, int64_t bytes) {
  MPI_Send(&bytes, 1, MPI_INT64_T, 0, 2, MPI_COMM_WORLD);
  for (int64_t at = 0; at < bytes; at += GATHER_PIECE) {
    int len = (int)(bytes - at < GATHER_PIECE ? bytes - at : GATHER_PIECE);
    MPI_Send(p + at, len, MPI_BYTE, 0, 3, MPI_COMM_WORLD);
  }
}

static int64_t receive_bytes(char *p, int from) {
  int64_t bytes;
  MPI_Recv(&bytes, 1, MPI_INT64_T, from, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  for (int64_t at = 0; at < bytes; at += GATHER_PIECE) {
    int len = (int)(bytes - at < GATHER_PIECE ? bytes - at : GATHER_PIECE);
    MPI_Recv(p + at, len, MPI_BYTE, from, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  }
  return bytes;
}

int assoc_dist_gather(const void *mine, int64_t bytes, void *all, sg_io_error *err) {
  if (bytes < 0 || (bytes > 0 && !mine) || (my_rank == 0 && bytes > 0 && !all))
    return assoc_fail(err, "assoc_dist_gather: bad buffer");
  if (my_rank != 0) {
    send_bytes(mine, bytes);
    return 0;
  }
  char *at = all;
  if (bytes > 0 && mine != all) memmove(at, mine, (size_t)bytes);
  at += bytes;
  for (int r = 1; r < n_ranks; r++) at += receive_bytes(at, r);
  return 0;
}

#endif
