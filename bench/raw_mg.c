/* The ceiling of any wrapper: raw cuSOLVERMg on data already in block-cyclic layout.
 *
 * Built as a small shared library on the GPU machine and driven from bench/bench_ops.py
 * through ctypes with the device pointers of JAX arrays (one shard per GPU, mesh order).
 * Setup (handle, grid, descriptors, workspace) is excluded from the timings; each repetition
 * restores the matrix from a backup copy (untimed) and times the solver calls alone with the
 * host clock (cuSOLVERMg calls return when the work is done).
 *
 *   gcc -std=c11 -O2 -shared -fPIC -I$CUDA/include raw_mg.c -o libraw_mg.so \
 *       -L$CUDA/lib64 -lcusolverMg -lcudart
 */
#define _POSIX_C_SOURCE 200809L
#include <cuda_runtime.h>
#include <cusolverMg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { OP_POTRS = 0, OP_POTRI = 1, OP_SYEVD = 2, OP_SYEVD_N = 3 };

#define CK(call)                                                                           \
  do {                                                                                     \
    cudaError_t e_ = (call);                                                               \
    if (e_ != cudaSuccess) {                                                               \
      snprintf(err, (size_t)errlen, "%d %s: %s", __LINE__, #call, cudaGetErrorString(e_)); \
      goto done;                                                                           \
    }                                                                                      \
  } while (0)
#define SK(call)                                                                           \
  do {                                                                                     \
    cusolverStatus_t s_ = (call);                                                          \
    if (s_ != CUSOLVER_STATUS_SUCCESS) {                                                   \
      snprintf(err, (size_t)errlen, "%d %s: cusolver status %d", __LINE__, #call, (int)s_); \
      goto done;                                                                           \
    }                                                                                      \
  } while (0)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const cudaDataType kType[4] = {CUDA_R_32F, CUDA_R_64F, CUDA_C_32F, CUDA_C_64F};
static const size_t kSize[4] = {4, 8, 8, 16};

/* Returns 0 on success; times[r] holds repetition r in seconds, *info the last info. */
int raw_mg_run(int op, int dt, int ndev, const int *devices, void **a, void **a_backup,
               int64_t n, int64_t tile, void *b, void *b_backup, int nrhs, int reps,
               double *times, int *info, char *err, int errlen) {
  int rc = 1;
  cusolverMgHandle_t h = NULL;
  cudaLibMgGrid_t grid = NULL;
  cudaLibMgMatrixDesc_t dA = NULL, dB = NULL;
  void *work[16] = {0}, *bs[16] = {0};
  int devs[16];
  int64_t lwork = 0, l2 = 0;
  const int64_t nloc = n / ndev;
  const size_t abytes = (size_t)nloc * (size_t)n * kSize[dt];
  void *w = NULL;
  err[0] = '\0';
  if (ndev < 1 || ndev > 16 || dt < 0 || dt > 3) {
    snprintf(err, (size_t)errlen, "bad arguments");
    return 1;
  }
  memcpy(devs, devices, sizeof(int) * (size_t)ndev);
  const cudaDataType t = kType[dt];
  const cudaDataType rt = (dt == 0 || dt == 2) ? CUDA_R_32F : CUDA_R_64F;
  const cublasFillMode_t lo = CUBLAS_FILL_MODE_LOWER;
  SK(cusolverMgCreate(&h));
  SK(cusolverMgDeviceSelect(h, ndev, devs));
  SK(cusolverMgCreateDeviceGrid(&grid, 1, ndev, devs, CUDALIBMG_GRID_MAPPING_COL_MAJOR));
  SK(cusolverMgCreateMatrixDesc(&dA, n, n, n, tile, t, grid));
  if (op == OP_POTRS) {
    /* All right-hand sides in one column tile, which lives on the first device. */
    SK(cusolverMgCreateMatrixDesc(&dB, n, nrhs, n, nrhs, t, grid));
    for (int d = 0; d < ndev; d++) bs[d] = b;
  }
  if (op == OP_POTRS || op == OP_POTRI) {
    SK(cusolverMgPotrf_bufferSize(h, lo, (int)n, a, 1, 1, dA, t, &lwork));
    if (op == OP_POTRS)
      SK(cusolverMgPotrs_bufferSize(h, lo, (int)n, nrhs, a, 1, 1, dA, bs, 1, 1, dB, t, &l2));
    else
      SK(cusolverMgPotri_bufferSize(h, lo, (int)n, a, 1, 1, dA, t, &l2));
    if (l2 > lwork) lwork = l2;
  } else {
    w = malloc((size_t)n * 8);
    if (!w) {
      snprintf(err, (size_t)errlen, "host allocation failed");
      goto done;
    }
    SK(cusolverMgSyevd_bufferSize(h, op == OP_SYEVD ? CUSOLVER_EIG_MODE_VECTOR : CUSOLVER_EIG_MODE_NOVECTOR,
                                  lo, (int)n, a, 1, 1, dA, w, rt, t, &lwork));
  }
  for (int d = 0; d < ndev; d++) {
    CK(cudaSetDevice(devs[d]));
    CK(cudaMalloc(&work[d], (size_t)lwork * kSize[dt]));
  }
  for (int r = 0; r < reps; r++) {
    for (int d = 0; d < ndev && a_backup; d++) {
      CK(cudaSetDevice(devs[d]));
      CK(cudaMemcpy(a[d], a_backup[d], abytes, cudaMemcpyDeviceToDevice));
    }
    if (b_backup) {
      CK(cudaSetDevice(devs[0]));
      CK(cudaMemcpy(b, b_backup, (size_t)n * (size_t)nrhs * kSize[dt], cudaMemcpyDeviceToDevice));
    }
    for (int d = 0; d < ndev; d++) {
      CK(cudaSetDevice(devs[d]));
      CK(cudaDeviceSynchronize());
    }
    CK(cudaSetDevice(devs[0]));
    double t0 = now();
    if (op == OP_POTRS || op == OP_POTRI) {
      SK(cusolverMgPotrf(h, lo, (int)n, a, 1, 1, dA, t, work, lwork, info));
      if (*info == 0 && op == OP_POTRS)
        SK(cusolverMgPotrs(h, lo, (int)n, nrhs, a, 1, 1, dA, bs, 1, 1, dB, t, work, lwork, info));
      if (*info == 0 && op == OP_POTRI)
        SK(cusolverMgPotri(h, lo, (int)n, a, 1, 1, dA, t, work, lwork, info));
    } else {
      SK(cusolverMgSyevd(h, op == OP_SYEVD ? CUSOLVER_EIG_MODE_VECTOR : CUSOLVER_EIG_MODE_NOVECTOR,
                         lo, (int)n, a, 1, 1, dA, w, rt, t, work, lwork, info));
    }
    for (int d = 0; d < ndev; d++) {
      CK(cudaSetDevice(devs[d]));
      CK(cudaDeviceSynchronize());
    }
    times[r] = now() - t0;
  }
  rc = 0;
done:
  for (int d = 0; d < ndev; d++) {
    if (work[d]) {
      cudaSetDevice(devs[d]);
      cudaFree(work[d]);
    }
  }
  free(w);
  if (dB) cusolverMgDestroyMatrixDesc(dB);
  if (dA) cusolverMgDestroyMatrixDesc(dA);
  if (grid) cusolverMgDestroyGrid(grid);
  if (h) cusolverMgDestroy(h);
  return rc;
}
