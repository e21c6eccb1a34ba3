/* Probe: time cusolverDnXsyevd (all eigenpairs) against cusolverDnXsyevdx for the lower and
 * the upper half of the spectrum (with vectors), float64, on one GPU; checks the half
 * results against the full ones. Decides whether splitting an eigendecomposition's vectors
 * over 2 GPUs through syevdx can beat single-GPU syevd (docs/benchmarks.md, "syevd at
 * N = 32768: the routes").
 *   gcc -std=c11 -O2 bench/experiments/probe_syevdx.c -I/usr/local/cuda/include \
 *       -L/usr/local/cuda/lib64 -lcusolver -lcudart -lm -o /tmp/probe && /tmp/probe 16384   */
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
  const size_t bytes = (size_t)n * (size_t)n * sizeof(double);
  double *h = malloc(bytes);
  /* Symmetric, dense, spread spectrum: a ramp on the diagonal. */
  for (int64_t j = 0; j < n; j++)
    for (int64_t i = 0; i < n; i++) h[j * n + i] = probe_sym(i, j, (double)i / n);
  double *A0, *A, *W, *Wh;
  int *info;
  CK(cudaMalloc((void **)&A0, bytes));
  CK(cudaMalloc((void **)&A, bytes));
  CK(cudaMalloc((void **)&W, n * sizeof(double)));
  CK(cudaMalloc((void **)&info, sizeof(int)));
  Wh = malloc(n * sizeof(double));
  double *Wfull = malloc(n * sizeof(double));
  CK(cudaMemcpy(A0, h, bytes, cudaMemcpyHostToDevice));
  cusolverDnHandle_t hd;
  cusolverDnParams_t par;
  CK(cusolverDnCreate(&hd));
  CK(cusolverDnCreateParams(&par));
  const cublasFillMode_t lo = CUBLAS_FILL_MODE_LOWER;
  size_t dws = 0, hws = 0, d2 = 0, h2 = 0;
  int64_t meig = 0;
  double vl = 0, vu = 0;
  CK(cusolverDnXsyevd_bufferSize(hd, par, CUSOLVER_EIG_MODE_VECTOR, lo, n, CUDA_R_64F, A, n,
                                 CUDA_R_64F, W, CUDA_R_64F, &dws, &hws));
  CK(cusolverDnXsyevdx_bufferSize(hd, par, CUSOLVER_EIG_MODE_VECTOR, CUSOLVER_EIG_RANGE_I, lo, n,
                                  CUDA_R_64F, A, n, &vl, &vu, 1, n / 2, &meig, CUDA_R_64F, W,
                                  CUDA_R_64F, &d2, &h2));
  if (d2 > dws) dws = d2;
  if (h2 > hws) hws = h2;
  void *dwork, *hwork = malloc(hws ? hws : 1);
  CK(cudaMalloc(&dwork, dws ? dws : 1));
  for (int rep = 0; rep < 2; rep++) {
    /* 0: syevd all; 1: syevdx [1, n/2]; 2: syevdx [n/2+1, n] */
    for (int k = 0; k < 3; k++) {
      CK(cudaMemcpy(A, A0, bytes, cudaMemcpyDeviceToDevice));
      CK(cudaDeviceSynchronize());
      double t0 = probe_now();
      int64_t il = k == 2 ? n / 2 + 1 : 1, iu = k == 1 ? n / 2 : n;
      if (k == 0)
        CK(cusolverDnXsyevd(hd, par, CUSOLVER_EIG_MODE_VECTOR, lo, n, CUDA_R_64F, A, n, CUDA_R_64F,
                            W, CUDA_R_64F, dwork, dws, hwork, hws, info));
      else
        CK(cusolverDnXsyevdx(hd, par, CUSOLVER_EIG_MODE_VECTOR, CUSOLVER_EIG_RANGE_I, lo, n,
                             CUDA_R_64F, A, n, &vl, &vu, il, iu, &meig, CUDA_R_64F, W, CUDA_R_64F,
                             dwork, dws, hwork, hws, info));
      CK(cudaDeviceSynchronize());
      double t = probe_now() - t0;
      int hinfo = 0;
      CK(cudaMemcpy(&hinfo, info, sizeof(int), cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(Wh, W, n * sizeof(double), cudaMemcpyDeviceToHost));
      double err = 0;
      if (k == 0) memcpy(Wfull, Wh, n * sizeof(double));
      else
        for (int64_t i = 0; i < meig; i++) err = fmax(err, fabs(Wh[i] - Wfull[il - 1 + i]));
      printf("{\"probe\": \"syevdx\", \"n\": %lld, \"rep\": %d, \"case\": \"%s\", \"seconds\": %.4f, "
             "\"info\": %d, \"meig\": %lld, \"max_eig_diff\": %.2e}\n",
             (long long)n, rep, k == 0 ? "syevd_all" : (k == 1 ? "syevdx_lower_half" : "syevdx_upper_half"),
             t, hinfo, (long long)(k ? meig : n), err);
      fflush(stdout);
    }
  }
  return 0;
}
