/* Probe: cuSOLVER's float64 syevd (all eigenpairs) on one GPU with the handle's deterministic
 * mode on (the default, what XLA's eigh runs) and off (CUSOLVER_ALLOW_NON_DETERMINISTIC_RESULTS),
 * and the tridiagonal reduction alone (cusolverDnDsytrd) in both modes, to see where the time
 * goes. Decides whether a syevd engine of our own (one cuSOLVER call, non-deterministic mode)
 * can beat XLA's eigh (docs/benchmarks.md, "syevd: cuSOLVER's non-deterministic mode").
 *   gcc -std=c11 -O2 bench/experiments/probe_syevd_modes.c -I/usr/local/cuda/include \
 *       -L/usr/local/cuda/lib64 -lcusolver -lcudart -lm -o /tmp/probe && /tmp/probe 16384 2 */
#define _POSIX_C_SOURCE 200809L
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "probe_util.h"

int main(int argc, char **argv) {
  const int64_t n = argc > 1 ? atoll(argv[1]) : 4096;
  const int reps = argc > 2 ? atoi(argv[2]) : 2;
  const size_t bytes = (size_t)n * (size_t)n * sizeof(double);
  double *h = malloc(bytes);
  /* Symmetric, dense, spread spectrum: a ramp on the diagonal. */
  for (int64_t j = 0; j < n; j++)
    for (int64_t i = 0; i < n; i++) h[j * n + i] = probe_sym(i, j, (double)i / n);
  double *A0, *A, *W, *E, *tau;
  int *info;
  CK(cudaMalloc((void **)&A0, bytes));
  CK(cudaMalloc((void **)&A, bytes));
  CK(cudaMalloc((void **)&W, n * sizeof(double)));
  CK(cudaMalloc((void **)&E, n * sizeof(double)));
  CK(cudaMalloc((void **)&tau, n * sizeof(double)));
  CK(cudaMalloc((void **)&info, sizeof(int)));
  double *Wh = malloc(n * sizeof(double)), *Wdet = malloc(n * sizeof(double));
  CK(cudaMemcpy(A0, h, bytes, cudaMemcpyHostToDevice));
  cusolverDnHandle_t hd;
  cusolverDnParams_t par;
  CK(cusolverDnCreate(&hd));
  CK(cusolverDnCreateParams(&par));
  const cublasFillMode_t lo = CUBLAS_FILL_MODE_LOWER;
  size_t dws = 0, hws = 0;
  int lw = 0;
  CK(cusolverDnXsyevd_bufferSize(hd, par, CUSOLVER_EIG_MODE_VECTOR, lo, n, CUDA_R_64F, A, n,
                                 CUDA_R_64F, W, CUDA_R_64F, &dws, &hws));
  CK(cusolverDnDsytrd_bufferSize(hd, lo, (int)n, A, (int)n, W, E, tau, &lw));
  if ((size_t)lw * sizeof(double) > dws) dws = (size_t)lw * sizeof(double);
  void *dwork, *hwork = malloc(hws ? hws : 1);
  CK(cudaMalloc(&dwork, dws ? dws : 1));
  for (int rep = 0; rep < reps; rep++) {
    /* case 0/1: syevd det/nondet; 2/3: sytrd det/nondet */
    for (int k = 0; k < 4; k++) {
      const int det = k % 2 == 0;
      CK(cusolverDnSetDeterministicMode(hd, det ? CUSOLVER_DETERMINISTIC_RESULTS
                                                : CUSOLVER_ALLOW_NON_DETERMINISTIC_RESULTS));
      CK(cudaMemcpy(A, A0, bytes, cudaMemcpyDeviceToDevice));
      CK(cudaDeviceSynchronize());
      double t0 = probe_now();
      if (k < 2)
        CK(cusolverDnXsyevd(hd, par, CUSOLVER_EIG_MODE_VECTOR, lo, n, CUDA_R_64F, A, n, CUDA_R_64F,
                            W, CUDA_R_64F, dwork, dws, hwork, hws, info));
      else
        CK(cusolverDnDsytrd(hd, lo, (int)n, A, (int)n, W, E, tau, (double *)dwork, lw, info));
      CK(cudaDeviceSynchronize());
      double t = probe_now() - t0;
      int hinfo = 0;
      CK(cudaMemcpy(&hinfo, info, sizeof(int), cudaMemcpyDeviceToHost));
      double err = 0;
      if (k < 2) {
        CK(cudaMemcpy(Wh, W, n * sizeof(double), cudaMemcpyDeviceToHost));
        if (k == 0) memcpy(Wdet, Wh, n * sizeof(double));
        else
          for (int64_t i = 0; i < n; i++) err = fmax(err, fabs(Wh[i] - Wdet[i]));
      }
      printf("{\"probe\": \"syevd_modes\", \"n\": %lld, \"rep\": %d, \"case\": \"%s\", "
             "\"deterministic\": %s, \"seconds\": %.4f, \"info\": %d, \"max_eig_diff_vs_det\": %.2e}\n",
             (long long)n, rep, k < 2 ? "syevd" : "sytrd", det ? "true" : "false", t, hinfo, err);
      fflush(stdout);
    }
  }
  return 0;
}
