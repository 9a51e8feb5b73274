/* Data-parallel runs over MPI: the ranks of a job and a sum across them in
 * a fixed order. Built with MPI (meson option mpi) these use Open MPI or
 * any MPI library; without it every function is the one-process identity
 * (rank 0 of 1, the sum leaves the buffer as it is), so callers need no
 * #ifdef.
 *
 * The sum's order is fixed by the buffer's length and the number of ranks
 * alone, never by timing, so a job gives the same bits on every run: the
 * buffer is cut into R segments of n*j/R .. n*(j+1)/R elements, and segment
 * j is summed around the ring starting at rank j,
 *   ((x_j + x_{j+1}) + x_{j+2}) + ... + x_{j-1}   (ranks mod R),
 * then copied to every rank (a ring reduce-scatter and all-gather over
 * MPI_Sendrecv: each rank sends and receives 2 (R-1)/R of the buffer, as a
 * bandwidth-optimal all-reduce does). MPI_Allreduce is not used because the
 * order in which it adds is up to the implementation and may change with
 * the message size, the process placement or the library version. */
#ifndef ASSOC_DIST_H
#define ASSOC_DIST_H

#include <stdbool.h>
#include <stdint.h>

#include "sg_io.h"
#include "sg_tensor.h"

/* The shared libraries export what the public headers declare and hide the
 * rest (they are built with -fvisibility=hidden). */
#ifdef __GNUC__
#pragma GCC visibility push(default)
#endif
#ifdef __cplusplus
extern "C" {
#endif

/* Whether this build can run over MPI. */
bool assoc_dist_compiled(void);

/* Starts MPI when the process was started by an MPI launcher (mpirun,
 * mpiexec, srun: it finds the launcher's environment); otherwise, and
 * without MPI, the run is one process and nothing happens. 0, or -1 with a
 * message. Call once, before any other function here. */
int assoc_dist_init(int *argc, char ***argv, sg_io_error *err);
/* Ends MPI if assoc_dist_init started it. */
void assoc_dist_finalize(void);
/* Ends the whole job at once with exit status code (MPI_Abort): what a rank
 * does on a failure its peers cannot know of, so that none of them waits
 * forever for it. Without MPI (or one rank): exit(code). */
_Noreturn void assoc_dist_abort(int code);

int assoc_dist_rank(void); /* 0 .. size-1; 0 without MPI */
int assoc_dist_size(void); /* ranks in the job; 1 without MPI */

/* The block [*lo, *hi) of n items that rank `rank` of `size` takes:
 * [n*rank/size, n*(rank+1)/size), so blocks follow rank order and their
 * sizes differ by at most one. */
void assoc_dist_block(int64_t n, int rank, int size, int64_t *lo, int64_t *hi);

/* Replaces buf (n elements of dtype dt, the same n and dt on every rank) on
 * every rank with the elementwise sum over the ranks, in the fixed order
 * of the header comment. Collective: every rank must call it. 0, or -1
 * with a message (bad arguments, out of memory). */
int assoc_dist_sum(void *buf, int64_t n, sg_dtype dt, sg_io_error *err);

/* Concatenates every rank's block of bytes (mine, `bytes` long; any length
 * per rank) in rank order into all on rank 0 (all: the sum of the lengths;
 * unused elsewhere, may be NULL). Collective. 0, or -1 with a message. */
int assoc_dist_gather(const void *mine, int64_t bytes, void *all, sg_io_error *err);

#ifdef __cplusplus
}
#endif
#ifdef __GNUC__
#pragma GCC visibility pop
#endif
#endif
