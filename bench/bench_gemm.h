/* The gemm mode of bench_gnn (bench/bench_gemm.c). */
#ifndef BENCH_GEMM_H
#define BENCH_GEMM_H

/* Prints one JSON object: per shape, the provider's sgemm and sg_linear
 * GFLOP/s on threads threads, then the read bandwidth. Returns 0. */
int bench_gemm_run(int threads);

#endif
