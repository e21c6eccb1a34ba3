/* Probe: where potrs's one_device engine spends its time beyond native JAX at N = 8192 on one
 * GPU (docs/benchmarks.md, "potrs against native at N = 8192"). Times with events, best of 20, float32 and
 * float64: cusolverDnXpotrf against the legacy cusolverDn{S,D}potrf, cusolverDnXpotrs with one
 * right-hand side against two cuBLAS trsm, and the pitched copy of the lower trapezoid that
 * position 0 makes of its own shard (16 strips, as src/gpu/whole.c).
 *   gcc -std=c11 -O2 bench/experiments/probe_potrf.c -I/usr/local/cuda/include \
 *       -L/usr/local/cuda/lib64 -lcusolver -lcublas -lcudart -o /tmp/probe_potrf \
 *       && /tmp/probe_potrf 8192                                                            */
#define _POSIX_C_SOURCE 200809L
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "probe_util.h"

static cudaStream_t s;
static cudaEvent_t e0, e1;

static void fill(void *A, const void *A0, size_t bytes) {
  CK(cudaMemcpyAsync(A, A0, bytes, cudaMemcpyDeviceToDevice, s));
}

#define TIME(label, dbl, setup, body)                                              \
  do {                                                                             \
    float best = 1e30f;                                                            \
    for (int r_ = 0; r_ < 21; r_++) {                                              \
      setup;                                                                       \
      CK(cudaEventRecord(e0, s));                                                  \
      body;                                                                        \
      CK(cudaEventRecord(e1, s));                                                  \
      CK(cudaEventSynchronize(e1));                                                \
      float ms;                                                                    \
      CK(cudaEventElapsedTime(&ms, e0, e1));                                       \
      if (r_ && ms < best) best = ms;                                              \
    }                                                                              \
    printf("{\"probe\": \"potrf\", \"n\": %lld, \"dtype\": \"%s\", \"what\": \"%s\", \"ms\": %.4f}\n", \
           (long long)n, dbl ? "float64" : "float32", label, best);                \
  } while (0)

static void run(int64_t n, int dbl) {
  const size_t esz = dbl ? 8 : 4, bytes = (size_t)n * n * esz;
  const cudaDataType ct = dbl ? CUDA_R_64F : CUDA_R_32F;
  char *h = malloc(bytes);
  for (int64_t j = 0; j < n; j++)
    for (int64_t i = 0; i < n; i++) {
      double v = probe_sym(i, j, (double)n);
      if (dbl) ((double *)h)[j * n + i] = v; else ((float *)h)[j * n + i] = (float)v;
    }
  void *A0, *A, *B0, *B, *work;
  int *info;
  CK(cudaMalloc(&A0, bytes)); CK(cudaMalloc(&A, bytes));
  CK(cudaMalloc(&B0, n * esz)); CK(cudaMalloc(&B, n * esz));
  CK(cudaMemcpy(A0, h, bytes, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(B0, h, n * esz, cudaMemcpyHostToDevice));
  CK(cudaMalloc((void **)&info, 2 * sizeof(int)));
  cusolverDnHandle_t sh; cusolverDnParams_t prm; cublasHandle_t bh;
  CK(cusolverDnCreate(&sh)); CK(cusolverDnCreateParams(&prm)); CK(cusolverDnSetStream(sh, s));
  CK(cublasCreate(&bh)); CK(cublasSetStream(bh, s));
  size_t dws = 0, hws = 0; int lw = 0;
  CK(cusolverDnXpotrf_bufferSize(sh, prm, CUBLAS_FILL_MODE_LOWER, n, ct, A, n, ct, &dws, &hws));
  if (dbl) CK(cusolverDnDpotrf_bufferSize(sh, CUBLAS_FILL_MODE_LOWER, (int)n, A, (int)n, &lw));
  else CK(cusolverDnSpotrf_bufferSize(sh, CUBLAS_FILL_MODE_LOWER, (int)n, A, (int)n, &lw));
  size_t wb = dws > (size_t)lw * esz ? dws : (size_t)lw * esz;
  CK(cudaMalloc(&work, wb + 256));
  printf("{\"probe\": \"potrf\", \"n\": %lld, \"dtype\": \"%s\", \"xpotrf_ws\": %zu, \"host_ws\": %zu, \"legacy_ws\": %zu}\n",
         (long long)n, dbl ? "float64" : "float32", dws, hws, (size_t)lw * esz);
  TIME("copy full matrix (cudaMemcpyAsync)", dbl, (void)0, fill(A, A0, bytes));
  TIME("copy lower trapezoid, 16 strips (cudaMemcpy2DAsync)", dbl, (void)0, {
    int64_t hh = (n + 15) / 16;
    for (int64_t i0 = 0; i0 < n; i0 += hh) {
      int64_t i1 = i0 + hh < n ? i0 + hh : n;
      CK(cudaMemcpy2DAsync((char *)A + (i0 * n + i0) * esz, n * esz, (char *)A0 + (i0 * n + i0) * esz,
                           n * esz, (n - i0) * esz, i1 - i0, cudaMemcpyDeviceToDevice, s));
    }
  });
  TIME("Xpotrf", dbl, fill(A, A0, bytes),
       CK(cusolverDnXpotrf(sh, prm, CUBLAS_FILL_MODE_LOWER, n, ct, A, n, ct, work, dws, NULL, 0, info)));
  TIME("legacy potrf", dbl, fill(A, A0, bytes), {
    if (dbl) CK(cusolverDnDpotrf(sh, CUBLAS_FILL_MODE_LOWER, (int)n, A, (int)n, work, lw, info));
    else CK(cusolverDnSpotrf(sh, CUBLAS_FILL_MODE_LOWER, (int)n, A, (int)n, work, lw, info));
  });
  TIME("Xpotrs nrhs=1", dbl, fill(B, B0, n * esz),
       CK(cusolverDnXpotrs(sh, prm, CUBLAS_FILL_MODE_LOWER, n, 1, ct, A, n, ct, B, n, info + 1)));
  TIME("2 x cublas trsm nrhs=1", dbl, fill(B, B0, n * esz), {
    const double one = 1.0; const float onef = 1.0f; int ni = (int)n;
    if (dbl) {
      CK(cublasDtrsm(bh, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT, ni, 1, &one, A, ni, B, ni));
      CK(cublasDtrsm(bh, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, CUBLAS_DIAG_NON_UNIT, ni, 1, &one, A, ni, B, ni));
    } else {
      CK(cublasStrsm(bh, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT, ni, 1, &onef, A, ni, B, ni));
      CK(cublasStrsm(bh, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, CUBLAS_DIAG_NON_UNIT, ni, 1, &onef, A, ni, B, ni));
    }
  });
  TIME("2 x cublas trsv", dbl, fill(B, B0, n * esz), {
    int ni = (int)n;
    if (dbl) {
      CK(cublasDtrsv(bh, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT, ni, A, ni, B, 1));
      CK(cublasDtrsv(bh, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, CUBLAS_DIAG_NON_UNIT, ni, A, ni, B, 1));
    } else {
      CK(cublasStrsv(bh, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT, ni, A, ni, B, 1));
      CK(cublasStrsv(bh, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, CUBLAS_DIAG_NON_UNIT, ni, A, ni, B, 1));
    }
  });
  cudaFree(A0); cudaFree(A); cudaFree(B0); cudaFree(B); cudaFree(work); cudaFree(info);
  cusolverDnDestroyParams(prm); cusolverDnDestroy(sh); cublasDestroy(bh);
  free(h);
}

int main(int argc, char **argv) {
  int64_t n = argc > 1 ? atoll(argv[1]) : 8192;
  CK(cudaStreamCreate(&s)); CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
  run(n, 0);
  run(n, 1);
  return 0;
}
