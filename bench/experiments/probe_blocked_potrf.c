/* Probe: is potrs's one_device engine better off factoring in two steps? On position 0 the first
 * nloc columns of M (its own shard) are local, so potrf of the leading k x k block and the
 * triangular solve below it could run while the peers' columns arrive, then syrk/herk of the
 * trailing block and potrf of it (docs/benchmarks.md, "Routes measured and not taken"). This
 * times, on one GPU with events (best of 20), for float64 / float32 / complex128 / complex64:
 *   mono       Xpotrf(N) + Xpotrs(N, 1 rhs)              what whole.c runs now
 *   blocked k  Xpotrf(k) + trsm + syrk/herk + Xpotrf(N - k) + Xpotrs(N, 1)
 *   lead k     Xpotrf(k) + trsm alone (what could hide the pull)
 * and checks that blocked and mono solve alike (max |x_b - x_m| / max |x_m|). It also times
 * dgemm / dtrsm / dsyrk at N/2 with cuBLAS's FP64 fixed-point emulation asked for
 * (CUBLAS_FP64_EMULATED_FIXEDPOINT_MATH, CUDA 13), against the plain FP64 ones, with the
 * relative difference of the results, to see whether this GPU offers it.
 *   gcc -std=c11 -O2 bench/experiments/probe_blocked_potrf.c -I/usr/local/cuda/include \
 *       -L/usr/local/cuda/lib64 -lcusolver -lcublas -lcudart -lm -o /tmp/pbp && /tmp/pbp 8192 */
#define _POSIX_C_SOURCE 200809L
#include <cublas_v2.h>
#include <cuComplex.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "probe_util.h"

enum { F32, F64, C128, C64 };
static const char *kname[] = {"float32", "float64", "complex128", "complex64"};
static cudaStream_t s;
static cudaEvent_t e0, e1;
static cusolverDnHandle_t sh;
static cusolverDnParams_t prm;
static cublasHandle_t bh;

static float time_best(void (*setup)(void *), void (*body)(void *), void *ctx) {
  float best = 1e30f;
  for (int r = 0; r < 21; r++) {
    if (setup) setup(ctx);
    CK(cudaEventRecord(e0, s));
    body(ctx);
    CK(cudaEventRecord(e1, s));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    if (r && ms < best) best = ms;
  }
  return best;
}

typedef struct {
  int kind;
  int64_t n, k;
  size_t esz;
  cudaDataType ct;
  void *A0, *A, *B0, *B, *work;
  size_t dws;
  int *info;
} ctx_t;

static void reset(void *p) {
  ctx_t *c = p;
  CK(cudaMemcpyAsync(c->A, c->A0, (size_t)c->n * c->n * c->esz, cudaMemcpyDeviceToDevice, s));
  CK(cudaMemcpyAsync(c->B, c->B0, (size_t)c->n * c->esz, cudaMemcpyDeviceToDevice, s));
}

static char *at(ctx_t *c, int64_t i, int64_t j) {
  return (char *)c->A + ((size_t)j * c->n + i) * c->esz;
}

static void potrf(ctx_t *c, char *a, int64_t m, int *info) {
  CK(cusolverDnXpotrf(sh, prm, CUBLAS_FILL_MODE_LOWER, m, c->ct, a, c->n, c->ct, c->work, c->dws,
                      NULL, 0, info));
}

/* L21 = M21 L11^-H (right, lower, conjugate transpose). */
static void trsm21(ctx_t *c) {
  const int64_t n = c->n, k = c->k;
  const int m = (int)(n - k), kk = (int)k, ld = (int)n;
  const double one = 1.0;
  const float onef = 1.0f;
  const cuDoubleComplex onez = {1.0, 0.0};
  const cuComplex onec = {1.0f, 0.0f};
  if (c->kind == C64)
    CK(cublasCtrsm(bh, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_C,
                   CUBLAS_DIAG_NON_UNIT, m, kk, &onec, (cuComplex *)at(c, 0, 0), ld,
                   (cuComplex *)at(c, k, 0), ld));
  else if (c->kind == F64)
    CK(cublasDtrsm(bh, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T,
                   CUBLAS_DIAG_NON_UNIT, m, kk, &one, (double *)at(c, 0, 0), ld,
                   (double *)at(c, k, 0), ld));
  else if (c->kind == F32)
    CK(cublasStrsm(bh, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T,
                   CUBLAS_DIAG_NON_UNIT, m, kk, &onef, (float *)at(c, 0, 0), ld,
                   (float *)at(c, k, 0), ld));
  else
    CK(cublasZtrsm(bh, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_C,
                   CUBLAS_DIAG_NON_UNIT, m, kk, &onez, (cuDoubleComplex *)at(c, 0, 0), ld,
                   (cuDoubleComplex *)at(c, k, 0), ld));
}

/* M22 -= L21 L21^H (lower). */
static void syrk22(ctx_t *c) {
  const int64_t n = c->n, k = c->k;
  const int m = (int)(n - k), kk = (int)k, ld = (int)n;
  const double mone = -1.0, one = 1.0;
  const float monef = -1.0f, onef = 1.0f;
  if (c->kind == C64)
    CK(cublasCherk(bh, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, m, kk, &monef,
                   (cuComplex *)at(c, k, 0), ld, &onef, (cuComplex *)at(c, k, k), ld));
  else if (c->kind == F64)
    CK(cublasDsyrk(bh, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, m, kk, &mone,
                   (double *)at(c, k, 0), ld, &one, (double *)at(c, k, k), ld));
  else if (c->kind == F32)
    CK(cublasSsyrk(bh, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, m, kk, &monef,
                   (float *)at(c, k, 0), ld, &onef, (float *)at(c, k, k), ld));
  else
    CK(cublasZherk(bh, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, m, kk, &mone,
                   (cuDoubleComplex *)at(c, k, 0), ld, &one, (cuDoubleComplex *)at(c, k, k), ld));
}

static void solve(ctx_t *c) {
  CK(cusolverDnXpotrs(sh, prm, CUBLAS_FILL_MODE_LOWER, c->n, 1, c->ct, c->A, c->n, c->ct, c->B,
                      c->n, c->info + 2));
}

static void body_mono(void *p) {
  ctx_t *c = p;
  potrf(c, c->A, c->n, c->info);
  solve(c);
}
static void body_lead(void *p) {
  ctx_t *c = p;
  potrf(c, c->A, c->k, c->info);
  trsm21(c);
}
static void body_blocked(void *p) {
  ctx_t *c = p;
  potrf(c, c->A, c->k, c->info);
  trsm21(c);
  syrk22(c);
  potrf(c, at(c, c->k, c->k), c->n - c->k, c->info + 1);
  solve(c);
}
static void body_solve(void *p) { solve(p); }

/* max |x - y| / max |y| over n elements of kind (real parts and imaginary parts alike). */
static double rel_diff(const ctx_t *c, const void *x, const void *y) {
  const int single = c->kind == F32 || c->kind == C64;
  const int64_t m = c->kind == C128 || c->kind == C64 ? 2 * c->n : c->n;
  double num = 0, den = 0;
  for (int64_t i = 0; i < m; i++) {
    double a = single ? ((const float *)x)[i] : ((const double *)x)[i];
    double b = single ? ((const float *)y)[i] : ((const double *)y)[i];
    if (fabs(a - b) > num || isnan(a)) num = isnan(a) ? INFINITY : fabs(a - b);
    if (fabs(b) > den) den = fabs(b);
  }
  return num / den;
}

static void run(int kind, int64_t n) {
  ctx_t c = {.kind = kind, .n = n};
  c.esz = kind == F32 ? 4 : kind == F64 || kind == C64 ? 8 : 16;
  c.ct = kind == F32 ? CUDA_R_32F : kind == F64 ? CUDA_R_64F : kind == C64 ? CUDA_C_32F : CUDA_C_64F;
  const size_t bytes = (size_t)n * n * c.esz;
  char *h = malloc(bytes);
  for (int64_t j = 0; j < n; j++)
    for (int64_t i = 0; i < n; i++) {
      double v = probe_sym(i, j, (double)n);
      size_t o = (size_t)j * n + i;
      if (kind == F32) ((float *)h)[o] = (float)v;
      else if (kind == F64) ((double *)h)[o] = v;
      else {  /* Hermitian: imaginary part antisymmetric, zero on the diagonal */
        double im = i == j ? 0.0 : (i > j ? 0.25 : -0.25) * probe_sym(i + 7, j + 7, 0.0);
        if (kind == C64) {
          ((float *)h)[2 * o] = (float)v;
          ((float *)h)[2 * o + 1] = (float)im;
        } else {
          ((double *)h)[2 * o] = v;
          ((double *)h)[2 * o + 1] = im;
        }
      }
    }
  CK(cudaMalloc(&c.A0, bytes)); CK(cudaMalloc(&c.A, bytes));
  CK(cudaMalloc(&c.B0, n * c.esz)); CK(cudaMalloc(&c.B, n * c.esz));
  CK(cudaMemcpy(c.A0, h, bytes, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(c.B0, h, n * c.esz, cudaMemcpyHostToDevice));
  CK(cudaMalloc((void **)&c.info, 3 * sizeof(int)));
  size_t hws = 0;
  CK(cusolverDnXpotrf_bufferSize(sh, prm, CUBLAS_FILL_MODE_LOWER, n, c.ct, c.A, n, c.ct, &c.dws,
                                 &hws));
  CK(cudaMalloc(&c.work, c.dws + 256));
  void *xm = malloc(n * c.esz), *xb = malloc(n * c.esz);

  float t = time_best(reset, body_mono, &c);
  CK(cudaMemcpy(xm, c.B, n * c.esz, cudaMemcpyDeviceToHost));
  printf("{\"probe\": \"blocked_potrf\", \"n\": %lld, \"dtype\": \"%s\", \"what\": \"mono\", "
         "\"ms\": %.4f}\n", (long long)n, kname[kind], t);
  c.k = n;
  float ts = time_best(NULL, body_solve, &c);
  printf("{\"probe\": \"blocked_potrf\", \"n\": %lld, \"dtype\": \"%s\", \"what\": \"Xpotrs\", "
         "\"ms\": %.4f}\n", (long long)n, kname[kind], ts);
  const int64_t ks[] = {n / 4, n / 2, 3 * n / 4};
  for (int i = 0; i < 3; i++) {
    c.k = ks[i];
    float tb = time_best(reset, body_blocked, &c);
    int inf[2];
    CK(cudaMemcpy(xb, c.B, n * c.esz, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(inf, c.info, 2 * sizeof(int), cudaMemcpyDeviceToHost));
    float tl = time_best(reset, body_lead, &c);
    printf("{\"probe\": \"blocked_potrf\", \"n\": %lld, \"dtype\": \"%s\", \"k\": %lld, "
           "\"what\": \"blocked\", \"ms\": %.4f, \"lead_ms\": %.4f, \"vs_mono\": %.4f, "
           "\"x_rel_diff\": %.3e, \"info\": [%d, %d]}\n",
           (long long)n, kname[kind], (long long)c.k, tb, tl, tb / t, rel_diff(&c, xb, xm),
           inf[0], inf[1]);
  }
  fflush(stdout);
  cudaFree(c.A0); cudaFree(c.A); cudaFree(c.B0); cudaFree(c.B); cudaFree(c.work);
  cudaFree(c.info);
  free(h); free(xm); free(xb);
}

/* FP64 emulation: gemm, trsm and syrk of m = n/2 with and without the math mode. */
typedef struct { int64_t m; double *X, *Y, *Z; int which; } emu_t;
static void emu_body(void *p) {
  emu_t *e = p;
  const int m = (int)e->m;
  const double one = 1.0, zero = 0.0, mone = -1.0;
  if (e->which == 0)
    CK(cublasDgemm(bh, CUBLAS_OP_N, CUBLAS_OP_T, m, m, m, &one, e->X, m, e->Y, m, &zero, e->Z, m));
  else if (e->which == 1)
    CK(cublasDtrsm(bh, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T,
                   CUBLAS_DIAG_NON_UNIT, m, m, &one, e->X, m, e->Z, m));
  else
    CK(cublasDsyrk(bh, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, m, m, &mone, e->Y, m, &one, e->Z, m));
}
static void emu_reset(void *p) {
  emu_t *e = p;
  CK(cudaMemcpyAsync(e->Z, e->Y, (size_t)e->m * e->m * 8, cudaMemcpyDeviceToDevice, s));
}

static void emulation(int64_t n) {
  emu_t e = {.m = n / 2};
  const int64_t m = e.m;
  const size_t bytes = (size_t)m * m * 8;
  double *h = malloc(bytes), *r0 = malloc(bytes), *r1 = malloc(bytes);
  CK(cudaMalloc((void **)&e.X, bytes)); CK(cudaMalloc((void **)&e.Y, bytes));
  CK(cudaMalloc((void **)&e.Z, bytes));
  /* X: lower triangular, well conditioned (diagonal m); Y: dense in [-0.5, 0.5). */
  for (int64_t j = 0; j < m; j++)
    for (int64_t i = 0; i < m; i++) h[j * m + i] = i >= j ? probe_sym(i, j, (double)m) : 0.0;
  CK(cudaMemcpy(e.X, h, bytes, cudaMemcpyHostToDevice));
  for (int64_t j = 0; j < m; j++)
    for (int64_t i = 0; i < m; i++) h[j * m + i] = probe_sym(i + 3, 2 * j + 1, 0.0);
  CK(cudaMemcpy(e.Y, h, bytes, cudaMemcpyHostToDevice));
  const char *names[] = {"dgemm", "dtrsm", "dsyrk"};
  const double flops[] = {2.0 * m * m * m, 1.0 * m * m * m, 1.0 * m * m * m};
  for (int w = 0; w < 3; w++) {
    e.which = w;
    float t[2];
    for (int mode = 0; mode < 2; mode++) {
      cublasStatus_t st = cublasSetMathMode(bh, mode ? CUBLAS_FP64_EMULATED_FIXEDPOINT_MATH
                                                     : CUBLAS_DEFAULT_MATH);
      if (st) {
        printf("{\"probe\": \"fp64_emulation\", \"what\": \"%s\", \"set_math_mode\": %d}\n",
               names[w], (int)st);
        t[mode] = NAN;
        continue;
      }
      if (mode) CK(cublasSetEmulationStrategy(bh, CUBLAS_EMULATION_STRATEGY_EAGER));
      t[mode] = time_best(emu_reset, emu_body, &e);
      emu_reset(&e);
      emu_body(&e);
      CK(cudaStreamSynchronize(s));
      CK(cudaMemcpy(mode ? r1 : r0, e.Z, bytes, cudaMemcpyDeviceToHost));
    }
    double num = 0, den = 0;
    for (int64_t i = 0; i < m * m; i++) {
      if (fabs(r1[i] - r0[i]) > num) num = fabs(r1[i] - r0[i]);
      if (fabs(r0[i]) > den) den = fabs(r0[i]);
    }
    printf("{\"probe\": \"fp64_emulation\", \"m\": %lld, \"what\": \"%s\", \"fp64_ms\": %.4f, "
           "\"emulated_ms\": %.4f, \"fp64_tflops\": %.2f, \"emulated_tflops\": %.2f, "
           "\"rel_diff\": %.3e}\n",
           (long long)m, names[w], t[0], t[1], flops[w] / t[0] / 1e9, flops[w] / t[1] / 1e9,
           num / den);
    fflush(stdout);
  }
  CK(cublasSetMathMode(bh, CUBLAS_DEFAULT_MATH));
  cudaFree(e.X); cudaFree(e.Y); cudaFree(e.Z);
  free(h); free(r0); free(r1);
}

int main(int argc, char **argv) {
  CK(cudaStreamCreate(&s)); CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
  CK(cusolverDnCreate(&sh)); CK(cusolverDnCreateParams(&prm)); CK(cusolverDnSetStream(sh, s));
  CK(cublasCreate(&bh)); CK(cublasSetStream(bh, s));
  for (int a = 1; a < (argc > 1 ? argc : 2); a++) {
    int64_t n = argc > 1 ? atoll(argv[a]) : 8192;
    run(F64, n);
    run(F32, n);
    run(C128, n);
    run(C64, n);
    if (!getenv("PROBE_NO_EMULATION")) emulation(n);
  }
  cusolverDnDestroyParams(prm); cusolverDnDestroy(sh); cublasDestroy(bh);
  return 0;
}
