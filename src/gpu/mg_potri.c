/* CUDA backend: completing the inverse that cuSOLVERMg's potri leaves as a lower triangle.
 *
 * After potri, solver column g of inv(M) (M = P^T conj(A) P) is valid in rows >= g only.
 * Once every participant has put its rows back in the original order, device d's local
 * column c is row i = d*nloc + c of inv(A), where entry j is valid iff dst(j) >= g(d, c).
 * A missing entry (j, c) equals conj(X_s[i, c']) for j = s*nloc + c' (X_s: device s's
 * shard), i.e. blocks of the shards are conjugate transposes of each other:
 *
 *   for local tile column cl of device d (solver tile J = cl*P + d) and each device s, the
 *   solver tiles I = il*P + s < J are il < m with m = cl + (s < d): one contiguous block of
 *   rows [s*nloc, s*nloc + m*T) in the destination, and on device s the rows
 *   [d*nloc + cl*T, +T) of its local columns [0, m*T), all of them valid (solver-lower).
 *
 * So one staged peer copy and one geam per (cl, s) complete everything but the diagonal
 * tiles (I == J), whose upper triangle comes from their own lower triangle (hemm against an
 * identity). Destinations are invalid entries of this device, sources valid entries of the
 * others: no participant reads what another writes in this phase. */
#include <stdlib.h>
#include <string.h>

#include "gpu/gpu.h"

/* C (m x n, ldc) = A^H, A being n x m (lda); C doubles as B with beta = 0 (geam's
 * documented in-place form C = alpha*op(A) + beta*C). */
static cublasStatus_t geam_ct(cublasHandle_t h, jaxmg_dtype_t dt, int m, int n, const void *A,
                              int lda, void *C, int ldc) {
  switch (dt) {
    case JAXMG_F32: {
      const float one = 1.0f, zero = 0.0f;
      return cublasSgeam(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, &one, A, lda, &zero, C, ldc, C, ldc);
    }
    case JAXMG_F64: {
      const double one = 1.0, zero = 0.0;
      return cublasDgeam(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, &one, A, lda, &zero, C, ldc, C, ldc);
    }
    case JAXMG_C64: {
      const cuComplex one = {1.0f, 0.0f}, zero = {0.0f, 0.0f};
      return cublasCgeam(h, CUBLAS_OP_C, CUBLAS_OP_N, m, n, &one, A, lda, &zero, C, ldc, C, ldc);
    }
    case JAXMG_C128: {
      const cuDoubleComplex one = {1.0, 0.0}, zero = {0.0, 0.0};
      return cublasZgeam(h, CUBLAS_OP_C, CUBLAS_OP_N, m, n, &one, A, lda, &zero, C, ldc, C, ldc);
    }
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

/* C (n x n, ldc) = A * B with A Hermitian given by its lower triangle (lda). */
static cublasStatus_t hemm_lower(cublasHandle_t h, jaxmg_dtype_t dt, int n, const void *A,
                                 int lda, const void *B, int ldb, void *C, int ldc) {
  const cublasSideMode_t L = CUBLAS_SIDE_LEFT;
  const cublasFillMode_t lo = CUBLAS_FILL_MODE_LOWER;
  switch (dt) {
    case JAXMG_F32: {
      const float one = 1.0f, zero = 0.0f;
      return cublasSsymm(h, L, lo, n, n, &one, A, lda, B, ldb, &zero, C, ldc);
    }
    case JAXMG_F64: {
      const double one = 1.0, zero = 0.0;
      return cublasDsymm(h, L, lo, n, n, &one, A, lda, B, ldb, &zero, C, ldc);
    }
    case JAXMG_C64: {
      const cuComplex one = {1.0f, 0.0f}, zero = {0.0f, 0.0f};
      return cublasChemm(h, L, lo, n, n, &one, A, lda, B, ldb, &zero, C, ldc);
    }
    case JAXMG_C128: {
      const cuDoubleComplex one = {1.0, 0.0}, zero = {0.0, 0.0};
      return cublasZhemm(h, L, lo, n, n, &one, A, lda, B, ldb, &zero, C, ldc);
    }
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

/* T x T identity in device memory, on `s`. */
static jaxmg_status_t identity(jaxmg_gpu_part_t *g, jaxmg_dtype_t dt, int64_t T, const char *op,
                               jaxmg_error_t *err) {
  const jaxmg_dtype_info_t *di = jaxmg__dtype_info(dt);
  const size_t esz = di->size, bytes = (size_t)T * (size_t)T * esz;
  if (g->ident_bytes < bytes) {
    if (g->ident) g->mem.free(g->mem.ctx, g->ident, g->ident_bytes);
    g->ident_bytes = 0;
    if (!(g->ident = g->mem.alloc(g->mem.ctx, bytes))) {
      return jaxmg__seterr(err, JAXMG_ENOMEM,
                           "jaxmg.%s: out of GPU memory on device %d (%zu bytes for the "
                           "inverse's completion)",
                           op, g->device, bytes);
    }
    g->ident_bytes = bytes;
  }
  char *ones = calloc((size_t)T, esz);
  if (!ones) return jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory", op);
  for (int64_t i = 0; i < T; i++) {
    /* The real part comes first in every element type. */
    if (di->real_size == 4) {
      const float one = 1.0f;
      memcpy(ones + (size_t)i * esz, &one, sizeof one);
    } else {
      const double one = 1.0;
      memcpy(ones + (size_t)i * esz, &one, sizeof one);
    }
  }
  jaxmg_status_t st = JAXMG_GPU(err, op, cudaMemsetAsync(g->ident, 0, bytes, g->stream));
  /* The diagonal is a pitched column of stride T + 1; the pageable source is staged before
   * the call returns. */
  if (!st) {
    st = JAXMG_GPU(err, op,
                   cudaMemcpy2DAsync(g->ident, (size_t)(T + 1) * esz, ones, esz, esz, (size_t)T,
                                     cudaMemcpyHostToDevice, g->stream));
  }
  free(ones);
  return st;
}

jaxmg_status_t jaxmg__mg_potri_complete(const jaxmg_task_t *t, jaxmg_gpu_part_t *g,
                                        jaxmg_error_t *err) {
  const char *nm = t->name;
  const jaxmg_layout_t *lay = &t->lay;
  const int d = t->rank, P = (int)lay->ndev;
  const int64_t N = lay->n, T = lay->tile, nloc = lay->nloc, nt = nloc / T;
  const size_t esz = jaxmg_dtype_size(t->dtype), colb = (size_t)N * esz;
  const jaxmg_part_t *me = jaxmg__rv_slot(t->session, d);
  char *a = me->a, *stage = g->stage;
  cublasHandle_t h;
  jaxmg_status_t st;

  if ((st = identity(g, t->dtype, T, nm, err))) return st;
  if ((st = jaxmg__gpu_blas(g->device, &h, nm, err))) return st;
  st = JAXMG_GPU(err, nm, cublasSetStream(h, g->stream));
  for (int64_t cl = 0; cl < nt && !st; cl++) {
    for (int sdev = 0; sdev < P && !st; sdev++) {
      const int64_t m = cl + (sdev < d ? 1 : 0);
      if (m == 0) continue;
      const jaxmg_part_t *src = jaxmg__rv_slot(t->session, sdev);
      /* Rows [d*nloc + cl*T, +T) of device sdev's local columns [0, m*T) -> stage (T x m*T). */
      st = jaxmg__gpu_copy2d(stage, (size_t)T * esz, g->device,
                             (const char *)src->a + (size_t)(d * nloc + cl * T) * esz, colb,
                             src->device, (size_t)T * esz, (size_t)(m * T), g->stream, nm, err);
      /* Its conjugate transpose -> rows [sdev*nloc, +m*T) of local columns [cl*T, +T). */
      if (!st) {
        st = JAXMG_GPU(err, nm,
                       geam_ct(h, t->dtype, (int)(m * T), (int)T, stage, (int)T,
                               a + ((size_t)(cl * T) * (size_t)N + (size_t)(sdev * nloc)) * esz,
                               (int)N));
      }
    }
    if (st) break;
    /* Diagonal tile: rows [d*nloc + cl*T, +T) of local columns [cl*T, +T). */
    char *D = a + ((size_t)(cl * T) * (size_t)N + (size_t)(d * nloc + cl * T)) * esz;
    st = JAXMG_GPU(err, nm,
                   hemm_lower(h, t->dtype, (int)T, D, (int)N, g->ident, (int)T, stage, (int)T));
    if (!st) {
      st = jaxmg__gpu_copy2d(D, colb, g->device, stage, (size_t)T * esz, g->device,
                             (size_t)T * esz, (size_t)T, g->stream, nm, err);
    }
  }
  jaxmg__gpu_blas_unlock(g->device);
  return st;
}
