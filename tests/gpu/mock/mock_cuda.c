/* A host-memory stand-in for the parts of the CUDA runtime, cuSOLVERMg and cuSOLVERDn that
 * the CUDA backend calls, so its orchestration (rendezvous, plans, permutations, pointer
 * arrays, info mapping, NaN fills, fault paths) runs without a GPU.
 *
 * "Device memory" is host memory, every stream operation runs at once (so ordering bugs
 * between streams cannot show here; the GPU tests cover those), and the cuSOLVERMg routines
 * gather the 1D block-cyclic matrix from the pointer arrays exactly as the descriptors say,
 * call reference LAPACK and scatter the result back the way cuSOLVERMg documents it: potrf
 * touches the lower triangle only, syevd returns W in host memory. potrf and syevd read the
 * lower triangle only and find NaN above it (see poison_upper). cuSOLVERDn's Xpotrf/Xpotrs
 * and Xsyevd (the whole-matrix ops) run reference LAPACK on the matrix as given (lower, lda);
 * the matrix the backend gathers holds the allocator's NaN above the strips it copied.
 *
 * MOCK_POTRF_STATUS=7 in the environment makes a failed potrf report
 * CUSOLVER_STATUS_INTERNAL_ERROR with h_info = 0 (the ambiguous case the backend resolves by
 * scanning the factor's diagonal). MOCK_DN_POTRF_FAIL=1 makes cusolverDnXpotrf fail
 * (CUSOLVER_STATUS_INTERNAL_ERROR) after the matrix was gathered. */
#include <complex.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DISABLE_CUSOLVERMG_DEPRECATED 1
#include <cuda_runtime_api.h>
#include <cusolverDn.h>
#include <cusolverMg.h>

#include "jaxmg_elem.h"

static _Thread_local int cur_dev = 0;

/* ---- runtime ---------------------------------------------------------------------------- */
const char *cudaGetErrorName(cudaError_t e) { return e ? "cudaErrorMock" : "cudaSuccess"; }
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
cudaError_t cudaSetDevice(int d) {
  if (d < 0 || d >= 16) return cudaErrorInvalidDevice;
  cur_dev = d;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int *d) {
  *d = cur_dev;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceCount(int *n) {
  *n = 16;
  return cudaSuccess;
}
cudaError_t cudaDeviceCanAccessPeer(int *can, int a, int b) {
  *can = a != b;
  return cudaSuccess;
}
cudaError_t cudaDeviceEnablePeerAccess(int peer, unsigned int flags) {
  (void)peer, (void)flags;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags) {
  (void)flags;
  *e = malloc(8);
  return *e ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  free(e);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  (void)s;
  return e ? cudaSuccess : cudaErrorInvalidResourceHandle;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  return e ? cudaSuccess : cudaErrorInvalidResourceHandle;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int f) {
  (void)s, (void)f;
  return e ? cudaSuccess : cudaErrorInvalidResourceHandle;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags) {
  (void)flags;
  *s = malloc(8);
  return *s ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  free(s);
  return cudaSuccess;
}
/* The host workspace of the last cusolverDnXsyevd: cuSOLVER may use it until its stream gets
 * past the call, so the mock writes it only when that stream is next synchronized. A caller
 * that frees it first is a use after free (ASan); one that never waits leaves it pending
 * (mock_dn_hwork_left). */
static pthread_mutex_t hwork_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
  cudaStream_t s;
  void *p;
  size_t n;
} hwork_pending;
static void hwork_defer(cudaStream_t s, void *p, size_t n) {
  pthread_mutex_lock(&hwork_mu);
  hwork_pending.s = s;
  hwork_pending.p = p;
  hwork_pending.n = n;
  pthread_mutex_unlock(&hwork_mu);
}
/* 1 if a host workspace was never waited for (and forgets it). */
int mock_dn_hwork_left(void) {
  pthread_mutex_lock(&hwork_mu);
  const int left = hwork_pending.p != NULL;
  hwork_pending.p = NULL;
  pthread_mutex_unlock(&hwork_mu);
  return left;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  pthread_mutex_lock(&hwork_mu);
  if (hwork_pending.p && hwork_pending.s == s) {
    memset(hwork_pending.p, 0x5A, hwork_pending.n);
    hwork_pending.p = NULL;
  }
  pthread_mutex_unlock(&hwork_mu);
  return cudaSuccess;
}

static cudaError_t copy2d(void *dst, size_t dp, const void *src, size_t sp, size_t w, size_t h) {
  if (w > dp || w > sp) return cudaErrorInvalidPitchValue;
  for (size_t r = 0; r < h; r++) memmove((char *)dst + r * dp, (const char *)src + r * sp, w);
  return cudaSuccess;
}
/* Bytes moved by cudaMemcpy2DAsync within one device (the layout permutation's copies): lets
 * the tests check how much the permutation moves. */
static pthread_mutex_t bytes_mu = PTHREAD_MUTEX_INITIALIZER;
int64_t mock_d2d_2d_bytes = 0;
cudaError_t cudaMemcpy2DAsync(void *dst, size_t dp, const void *src, size_t sp, size_t w,
                              size_t h, enum cudaMemcpyKind k, cudaStream_t s) {
  (void)s;
  if (k == cudaMemcpyDeviceToDevice) {
    pthread_mutex_lock(&bytes_mu);
    mock_d2d_2d_bytes += (int64_t)(w * h);
    pthread_mutex_unlock(&bytes_mu);
  }
  return copy2d(dst, dp, src, sp, w, h);
}
cudaError_t cudaMemcpy2D(void *dst, size_t dp, const void *src, size_t sp, size_t w, size_t h,
                         enum cudaMemcpyKind k) {
  (void)k;
  return copy2d(dst, dp, src, sp, w, h);
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind k,
                            cudaStream_t s) {
  (void)k, (void)s;
  memmove(dst, src, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpyPeerAsync(void *dst, int dd, const void *src, int sd, size_t n,
                                cudaStream_t s) {
  (void)dd, (void)sd, (void)s;
  memmove(dst, src, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpy3DPeerAsync(const struct cudaMemcpy3DPeerParms *p, cudaStream_t s) {
  (void)s;
  if (p->extent.depth != 1 || p->srcDevice == p->dstDevice) return cudaErrorInvalidValue;
  return copy2d(p->dstPtr.ptr, p->dstPtr.pitch, p->srcPtr.ptr, p->srcPtr.pitch, p->extent.width,
                p->extent.height);
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s) {
  (void)s;
  memset(p, v, n);
  return cudaSuccess;
}

/* ---- dtype of a CUDA data type (element access: tests/include/jaxmg_elem.h) -------------------------- */
static jaxmg_dtype_t of_cuda(cudaDataType d) {
  return d == CUDA_R_32F   ? JAXMG_F32
         : d == CUDA_R_64F ? JAXMG_F64
         : d == CUDA_C_32F ? JAXMG_C64
                           : JAXMG_C128;
}

/* ---- cuSOLVERMg -------------------------------------------------------------------------- */
struct cusolverMgContext {
  int ndev, devs[16];
};
typedef struct {
  int ndev, devs[16];
} grid_t;
typedef struct {
  int64_t m, n, mb, nb;
  cudaDataType t;
  grid_t *g;
} desc_t;

cusolverStatus_t cusolverMgCreate(cusolverMgHandle_t *h) {
  *h = calloc(1, sizeof **h);
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverMgDestroy(cusolverMgHandle_t h) {
  free(h);
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverMgDeviceSelect(cusolverMgHandle_t h, int n, int devs[]) {
  if (n < 1 || n > 16) return CUSOLVER_STATUS_INVALID_VALUE;
  h->ndev = n;
  memcpy(h->devs, devs, sizeof(int) * (size_t)n);
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverMgCreateDeviceGrid(cudaLibMgGrid_t *grid, int32_t rows, int32_t cols,
                                            const int32_t devs[], cusolverMgGridMapping_t m) {
  if (rows != 1 || m != CUDALIBMG_GRID_MAPPING_COL_MAJOR) return CUSOLVER_STATUS_INVALID_VALUE;
  grid_t *g = calloc(1, sizeof *g);
  g->ndev = cols;
  memcpy(g->devs, devs, sizeof(int) * (size_t)cols);
  *grid = g;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverMgDestroyGrid(cudaLibMgGrid_t g) {
  free(g);
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverMgCreateMatrixDesc(cudaLibMgMatrixDesc_t *d, int64_t m, int64_t n,
                                            int64_t mb, int64_t nb, cudaDataType t,
                                            const cudaLibMgGrid_t g) {
  desc_t *x = calloc(1, sizeof *x);
  *x = (desc_t){m, n, mb, nb, t, (grid_t *)g};
  *d = x;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverMgDestroyMatrixDesc(cudaLibMgMatrixDesc_t d) {
  free(d);
  return CUSOLVER_STATUS_SUCCESS;
}

/* Global column j of a block-cyclic matrix: device position, local column. */
static char *col_ptr(const desc_t *d, void **arr, int64_t j) {
  int64_t t = j / d->nb, p = t % d->g->ndev, lc = (t / d->g->ndev) * d->nb + j % d->nb;
  return (char *)arr[p] + (size_t)lc * (size_t)d->m * jaxmg_dtype_size(of_cuda(d->t));
}
static void gather(const desc_t *d, void **arr, void *full) {
  size_t cb = (size_t)d->m * jaxmg_dtype_size(of_cuda(d->t));
  for (int64_t j = 0; j < d->n; j++) memcpy((char *)full + (size_t)j * cb, col_ptr(d, arr, j), cb);
}
static void scatter(const desc_t *d, void **arr, const void *full) {
  size_t cb = (size_t)d->m * jaxmg_dtype_size(of_cuda(d->t));
  for (int64_t j = 0; j < d->n; j++)
    memcpy(col_ptr(d, arr, j), (const char *)full + (size_t)j * cb, cb);
}

/* The routines called with uplo = lower (potrf, syevd) read only the lower triangle of M, and
 * the layout permutation only moves that part. To prove nothing else depends on the strict
 * upper triangle, it is overwritten with NaN in the gathered matrix and in the distributed
 * one before the solver runs: a reader of it (the solver, the diagonal scan, a later solve,
 * the outputs) would turn results into NaN. */
static void poison_upper(const desc_t *d, void **arr, void *full) {
  jaxmg_dtype_t t = of_cuda(d->t);
  for (int64_t j = 0; j < d->n; j++)
    for (int64_t i = 0; i < j && i < d->m; i++)
      elem_store(t, full, (size_t)i + (size_t)j * (size_t)d->m, NAN);
  scatter(d, arr, full);
}

/* Reference LAPACK, Fortran symbols. */
#define LP(x) x##_
void spotrf_(const char *, const int *, void *, const int *, int *);
void dpotrf_(const char *, const int *, void *, const int *, int *);
void cpotrf_(const char *, const int *, void *, const int *, int *);
void zpotrf_(const char *, const int *, void *, const int *, int *);
void spotrs_(const char *, const int *, const int *, const void *, const int *, void *,
             const int *, int *);
void dpotrs_(const char *, const int *, const int *, const void *, const int *, void *,
             const int *, int *);
void cpotrs_(const char *, const int *, const int *, const void *, const int *, void *,
             const int *, int *);
void zpotrs_(const char *, const int *, const int *, const void *, const int *, void *,
             const int *, int *);
void ssyevd_(const char *, const char *, const int *, void *, const int *, void *, void *,
             const int *, int *, const int *, int *);
void dsyevd_(const char *, const char *, const int *, void *, const int *, void *, void *,
             const int *, int *, const int *, int *);
void cheevd_(const char *, const char *, const int *, void *, const int *, void *, void *,
             const int *, void *, const int *, int *, const int *, int *);
void zheevd_(const char *, const char *, const int *, void *, const int *, void *, void *,
             const int *, void *, const int *, int *, const int *, int *);

static pthread_mutex_t mg_mu = PTHREAD_MUTEX_INITIALIZER; /* reference LAPACK is reentrant,
                                                            but the counters below are not */
int mock_potrf_calls = 0;

static int check_arrays(cusolverMgHandle_t h, const desc_t *d, void **arr) {
  if (!h || !d || !arr || d->g->ndev != h->ndev) return 0;
  for (int p = 0; p < d->g->ndev; p++)
    if (!arr[p] || d->g->devs[p] != h->devs[p]) return 0;
  return 1;
}

#define BUFSZ(name, ...)                                             \
  cusolverStatus_t name(__VA_ARGS__, int64_t *lwork) {               \
    *lwork = 64;                                                     \
    return CUSOLVER_STATUS_SUCCESS;                                  \
  }
BUFSZ(cusolverMgPotrf_bufferSize, cusolverMgHandle_t h, cublasFillMode_t u, int n, void *A[],
      int ia, int ja, cudaLibMgMatrixDesc_t d, cudaDataType t)
BUFSZ(cusolverMgPotrs_bufferSize, cusolverMgHandle_t h, cublasFillMode_t u, int n, int nrhs,
      void *A[], int ia, int ja, cudaLibMgMatrixDesc_t da, void *B[], int ib, int jb,
      cudaLibMgMatrixDesc_t db, cudaDataType t)
BUFSZ(cusolverMgSyevd_bufferSize, cusolverMgHandle_t h, cusolverEigMode_t jobz,
      cublasFillMode_t u, int n, void *A[], int ia, int ja, cudaLibMgMatrixDesc_t d, void *W,
      cudaDataType wt, cudaDataType t)

static int work_ok(void *work[], int64_t lwork, int ndev) {
  if (lwork < 64) return 0;
  for (int p = 0; p < ndev; p++)
    if (!work[p]) return 0;
  return 1;
}

/* The arguments every square-matrix routine checks alike (lower triangle, whole matrix). */
static int square_ok(cusolverMgHandle_t h, cublasFillMode_t u, int n, void *A[], int ia, int ja,
                     const desc_t *d, cudaDataType ct, void *work[], int64_t lwork) {
  return u == CUBLAS_FILL_MODE_LOWER && ia == 1 && ja == 1 && n == d->n && ct == d->t &&
         check_arrays(h, d, A) && work_ok(work, lwork, h->ndev);
}

/* The whole distributed matrix of d, column-major in new host memory (the caller frees). */
static void *gathered(const desc_t *d, void *A[], jaxmg_dtype_t t) {
  void *full = malloc((size_t)d->m * (size_t)d->n * jaxmg_dtype_size(t));
  gather(d, A, full);
  return full;
}

cusolverStatus_t cusolverMgPotrf(cusolverMgHandle_t h, cublasFillMode_t u, int n, void *A[],
                                 int ia, int ja, cudaLibMgMatrixDesc_t dd, cudaDataType ct,
                                 void *work[], int64_t lwork, int *info) {
  const desc_t *d = dd;
  if (!square_ok(h, u, n, A, ia, ja, d, ct, work, lwork)) return CUSOLVER_STATUS_INVALID_VALUE;
  jaxmg_dtype_t t = of_cuda(ct);
  void *full = gathered(d, A, t);
  poison_upper(d, A, full);
  int lda = n, linfo = 0;
  switch (t) {
    case JAXMG_F32: spotrf_("L", &n, full, &lda, &linfo); break;
    case JAXMG_F64: dpotrf_("L", &n, full, &lda, &linfo); break;
    case JAXMG_C64: cpotrf_("L", &n, full, &lda, &linfo); break;
    case JAXMG_C128: zpotrf_("L", &n, full, &lda, &linfo); break;
  }
  scatter(d, A, full);
  free(full);
  pthread_mutex_lock(&mg_mu);
  mock_potrf_calls++;
  pthread_mutex_unlock(&mg_mu);
  const char *mode = getenv("MOCK_POTRF_STATUS");
  if (linfo > 0 && mode && atoi(mode) == 7) {
    *info = 0;
    return CUSOLVER_STATUS_INTERNAL_ERROR;
  }
  *info = linfo;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverMgPotrs(cusolverMgHandle_t h, cublasFillMode_t u, int n, int nrhs,
                                 void *A[], int ia, int ja, cudaLibMgMatrixDesc_t da, void *B[],
                                 int ib, int jb, cudaLibMgMatrixDesc_t db, cudaDataType ct,
                                 void *work[], int64_t lwork, int *info) {
  const desc_t *d = da, *e = db;
  if (u != CUBLAS_FILL_MODE_LOWER || ia != 1 || ja != 1 || ib != 1 || jb != 1 || n != d->n ||
      e->m != n || e->n != nrhs || e->g != d->g || ct != d->t || !check_arrays(h, d, A) ||
      !check_arrays(h, e, B) || !work_ok(work, lwork, h->ndev))
    return CUSOLVER_STATUS_INVALID_VALUE;
  jaxmg_dtype_t t = of_cuda(ct);
  void *fa = gathered(d, A, t);
  void *fb = gathered(e, B, t);
  int lda = n, linfo = 0;
  switch (t) {
    case JAXMG_F32: spotrs_("L", &n, &nrhs, fa, &lda, fb, &lda, &linfo); break;
    case JAXMG_F64: dpotrs_("L", &n, &nrhs, fa, &lda, fb, &lda, &linfo); break;
    case JAXMG_C64: cpotrs_("L", &n, &nrhs, fa, &lda, fb, &lda, &linfo); break;
    case JAXMG_C128: zpotrs_("L", &n, &nrhs, fa, &lda, fb, &lda, &linfo); break;
  }
  scatter(e, B, fb);
  free(fa);
  free(fb);
  *info = linfo;
  return CUSOLVER_STATUS_SUCCESS;
}

/* The LU routines, as cuSOLVERMg documents them: IPIV distributed like the columns of A
 * (one int per local column on each device), 1-based pivots of P A = L U. */
void sgetrf_(const int *, const int *, void *, const int *, int *, int *);
void dgetrf_(const int *, const int *, void *, const int *, int *, int *);
void cgetrf_(const int *, const int *, void *, const int *, int *, int *);
void zgetrf_(const int *, const int *, void *, const int *, int *, int *);
void sgetrs_(const char *, const int *, const int *, const void *, const int *, const int *,
             void *, const int *, int *);
void dgetrs_(const char *, const int *, const int *, const void *, const int *, const int *,
             void *, const int *, int *);
void cgetrs_(const char *, const int *, const int *, const void *, const int *, const int *,
             void *, const int *, int *);
void zgetrs_(const char *, const int *, const int *, const void *, const int *, const int *,
             void *, const int *, int *);

BUFSZ(cusolverMgGetrf_bufferSize, cusolverMgHandle_t h, int m, int n, void *A[], int ia, int ja,
      cudaLibMgMatrixDesc_t d, int *ipiv[], cudaDataType t)
BUFSZ(cusolverMgGetrs_bufferSize, cusolverMgHandle_t h, cublasOperation_t op, int n, int nrhs,
      void *A[], int ia, int ja, cudaLibMgMatrixDesc_t da, int *ipiv[], void *B[], int ib,
      int jb, cudaLibMgMatrixDesc_t db, cudaDataType t)

static int *ipiv_at(const desc_t *d, int *ipiv[], int64_t j) {
  int64_t t = j / d->nb, p = t % d->g->ndev, lc = (t / d->g->ndev) * d->nb + j % d->nb;
  return ipiv[p] + lc;
}

int mock_getrf_calls = 0;

cusolverStatus_t cusolverMgGetrf(cusolverMgHandle_t h, int m, int n, void *A[], int ia, int ja,
                                 cudaLibMgMatrixDesc_t dd, int *ipiv[], cudaDataType ct,
                                 void *work[], int64_t lwork, int *info) {
  const desc_t *d = dd;
  if (m != n || !square_ok(h, CUBLAS_FILL_MODE_LOWER, n, A, ia, ja, d, ct, work, lwork) || !ipiv)
    return CUSOLVER_STATUS_INVALID_VALUE;
  for (int p = 0; p < h->ndev; p++)
    if (!ipiv[p]) return CUSOLVER_STATUS_INVALID_VALUE;
  jaxmg_dtype_t t = of_cuda(ct);
  void *full = gathered(d, A, t);
  int *piv = malloc((size_t)(n > 0 ? n : 1) * sizeof *piv);
  int lda = n, linfo = 0;
  switch (t) {
    case JAXMG_F32: sgetrf_(&n, &n, full, &lda, piv, &linfo); break;
    case JAXMG_F64: dgetrf_(&n, &n, full, &lda, piv, &linfo); break;
    case JAXMG_C64: cgetrf_(&n, &n, full, &lda, piv, &linfo); break;
    case JAXMG_C128: zgetrf_(&n, &n, full, &lda, piv, &linfo); break;
  }
  scatter(d, A, full);
  for (int64_t j = 0; j < n; j++) *ipiv_at(d, ipiv, j) = piv[j];
  free(piv);
  free(full);
  pthread_mutex_lock(&mg_mu);
  mock_getrf_calls++;
  pthread_mutex_unlock(&mg_mu);
  *info = linfo;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverMgGetrs(cusolverMgHandle_t h, cublasOperation_t op, int n, int nrhs,
                                 void *A[], int ia, int ja, cudaLibMgMatrixDesc_t da, int *ipiv[],
                                 void *B[], int ib, int jb, cudaLibMgMatrixDesc_t db,
                                 cudaDataType ct, void *work[], int64_t lwork, int *info) {
  const desc_t *d = da, *e = db;
  if (op != CUBLAS_OP_N || ia != 1 || ja != 1 || ib != 1 || jb != 1 || n != d->n || e->m != n ||
      e->n != nrhs || e->g != d->g || ct != d->t || !check_arrays(h, d, A) ||
      !check_arrays(h, e, B) || !work_ok(work, lwork, h->ndev) || !ipiv)
    return CUSOLVER_STATUS_INVALID_VALUE;
  jaxmg_dtype_t t = of_cuda(ct);
  void *fa = gathered(d, A, t);
  void *fb = gathered(e, B, t);
  int *piv = malloc((size_t)(n > 0 ? n : 1) * sizeof *piv);
  for (int64_t j = 0; j < n; j++) piv[j] = *ipiv_at(d, ipiv, j);
  int lda = n, linfo = 0;
  switch (t) {
    case JAXMG_F32: sgetrs_("N", &n, &nrhs, fa, &lda, piv, fb, &lda, &linfo); break;
    case JAXMG_F64: dgetrs_("N", &n, &nrhs, fa, &lda, piv, fb, &lda, &linfo); break;
    case JAXMG_C64: cgetrs_("N", &n, &nrhs, fa, &lda, piv, fb, &lda, &linfo); break;
    case JAXMG_C128: zgetrs_("N", &n, &nrhs, fa, &lda, piv, fb, &lda, &linfo); break;
  }
  scatter(e, B, fb);
  free(piv);
  free(fa);
  free(fb);
  *info = linfo;
  return CUSOLVER_STATUS_SUCCESS;
}

/* Reference LAPACK ?syevd/?heevd on the lower triangle of the column-major n x n matrix at A
 * (ld lda): eigenvalues to W, with `vectors` the eigenvectors over A. Returns info. Also the
 * tests' reference (their eigenvalues, the info of a matrix LAPACK fails on). */
int mock_lapack_evd(jaxmg_dtype_t t, int vectors, int n, void *A, int lda, void *W) {
  const char *jz = vectors ? "V" : "N";
  int linfo = 0, lw = -1, lrw = -1, liw = -1, iwq = 0;
  double wq[2] = {0, 0}, rwq = 0;
  switch (t) {
    case JAXMG_F32: ssyevd_(jz, "L", &n, A, &lda, W, wq, &lw, &iwq, &liw, &linfo); break;
    case JAXMG_F64: dsyevd_(jz, "L", &n, A, &lda, W, wq, &lw, &iwq, &liw, &linfo); break;
    case JAXMG_C64: cheevd_(jz, "L", &n, A, &lda, W, wq, &lw, &rwq, &lrw, &iwq, &liw, &linfo); break;
    case JAXMG_C128: zheevd_(jz, "L", &n, A, &lda, W, wq, &lw, &rwq, &lrw, &iwq, &liw, &linfo); break;
  }
  double lwd = (t == JAXMG_F32 || t == JAXMG_C64) ? (double)((float *)wq)[0] : wq[0];
  double lrwd = (t == JAXMG_F32 || t == JAXMG_C64) ? (double)((float *)&rwq)[0] : rwq;
  lw = (int)lwd + 1;
  lrw = (int)lrwd + 1;
  liw = iwq + 1;
  void *wk = malloc((size_t)lw * jaxmg_dtype_size(t)), *rw = malloc((size_t)lrw * 8);
  int *iw = malloc((size_t)liw * sizeof(int));
  switch (t) {
    case JAXMG_F32: ssyevd_(jz, "L", &n, A, &lda, W, wk, &lw, iw, &liw, &linfo); break;
    case JAXMG_F64: dsyevd_(jz, "L", &n, A, &lda, W, wk, &lw, iw, &liw, &linfo); break;
    case JAXMG_C64: cheevd_(jz, "L", &n, A, &lda, W, wk, &lw, rw, &lrw, iw, &liw, &linfo); break;
    case JAXMG_C128: zheevd_(jz, "L", &n, A, &lda, W, wk, &lw, rw, &lrw, iw, &liw, &linfo); break;
  }
  free(wk);
  free(rw);
  free(iw);
  return linfo;
}

cusolverStatus_t cusolverMgSyevd(cusolverMgHandle_t h, cusolverEigMode_t jobz,
                                 cublasFillMode_t u, int n, void *A[], int ia, int ja,
                                 cudaLibMgMatrixDesc_t dd, void *W, cudaDataType wt,
                                 cudaDataType ct, void *work[], int64_t lwork, int *info) {
  const desc_t *d = dd;
  if (!square_ok(h, u, n, A, ia, ja, d, ct, work, lwork) || !W || d->nb > 1024)
    return CUSOLVER_STATUS_INVALID_VALUE;
  jaxmg_dtype_t t = of_cuda(ct);
  if (wt != ((t == JAXMG_F32 || t == JAXMG_C64) ? CUDA_R_32F : CUDA_R_64F))
    return CUSOLVER_STATUS_INVALID_VALUE;
  void *full = gathered(d, A, t);
  poison_upper(d, A, full);
  const int linfo = mock_lapack_evd(t, jobz == CUSOLVER_EIG_MODE_VECTOR, n, full, n, W);
  if (jobz == CUSOLVER_EIG_MODE_VECTOR) scatter(d, A, full);
  free(full);
  *info = linfo;
  return CUSOLVER_STATUS_SUCCESS;
}

/* ---- cuSOLVERDn (the whole-matrix ops) ----------------------------------------------------- */
struct cusolverDnContext {
  int dev;
  cusolverDeterministicMode_t mode;
  cudaStream_t stream;
};
struct cusolverDnParams {
  int unused;
};
cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t *h) {
  *h = calloc(1, sizeof **h);
  (*h)->dev = cur_dev;
  (*h)->mode = CUSOLVER_DETERMINISTIC_RESULTS;
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t h) {
  free(h);
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnCreateParams(cusolverDnParams_t *p) {
  *p = calloc(1, sizeof **p);
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnDestroyParams(cusolverDnParams_t p) {
  free(p);
  return CUSOLVER_STATUS_SUCCESS;
}
cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t h, cudaStream_t s) {
  if (h->dev != cur_dev) return CUSOLVER_STATUS_INVALID_VALUE;
  h->stream = s;
  return CUSOLVER_STATUS_SUCCESS;
}

enum { DN_WORK = 1024 }; /* device bytes potrf asks for */
int mock_dn_potrf_calls = 0, mock_dn_potrf_dev = -1;

/* The arguments potrf and potrs check alike: the handle's device is current, lower triangle,
 * one data type, a leading dimension that holds n, n in LAPACK's range. */
static int dn_ok(cusolverDnHandle_t h, cusolverDnParams_t p, cublasFillMode_t u, int64_t n,
                 cudaDataType ta, int64_t lda, cudaDataType tc) {
  return h && p && h->dev == cur_dev && u == CUBLAS_FILL_MODE_LOWER && ta == tc && n >= 0 &&
         n <= INT32_MAX && lda >= (n > 1 ? n : 1) && lda <= INT32_MAX &&
         (ta == CUDA_R_32F || ta == CUDA_R_64F || ta == CUDA_C_32F || ta == CUDA_C_64F);
}

cusolverStatus_t cusolverDnXpotrf_bufferSize(cusolverDnHandle_t h, cusolverDnParams_t p,
                                             cublasFillMode_t u, int64_t n, cudaDataType ta,
                                             const void *A, int64_t lda, cudaDataType tc,
                                             size_t *dbytes, size_t *hbytes) {
  (void)A;
  if (!dn_ok(h, p, u, n, ta, lda, tc)) return CUSOLVER_STATUS_INVALID_VALUE;
  *dbytes = DN_WORK;
  *hbytes = 0;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXpotrf(cusolverDnHandle_t h, cusolverDnParams_t p, cublasFillMode_t u,
                                  int64_t n, cudaDataType ta, void *A, int64_t lda,
                                  cudaDataType tc, void *dwork, size_t dbytes, void *hwork,
                                  size_t hbytes, int *info) {
  if (!dn_ok(h, p, u, n, ta, lda, tc) || !A || !info || !dwork || dbytes < DN_WORK ||
      (hbytes && !hwork))
    return CUSOLVER_STATUS_INVALID_VALUE;
  const char *fail = getenv("MOCK_DN_POTRF_FAIL");
  if (fail && atoi(fail)) return CUSOLVER_STATUS_INTERNAL_ERROR;
  int nn = (int)n, ld = (int)lda, linfo = 0;
  switch (of_cuda(ta)) {
    case JAXMG_F32: spotrf_("L", &nn, A, &ld, &linfo); break;
    case JAXMG_F64: dpotrf_("L", &nn, A, &ld, &linfo); break;
    case JAXMG_C64: cpotrf_("L", &nn, A, &ld, &linfo); break;
    case JAXMG_C128: zpotrf_("L", &nn, A, &ld, &linfo); break;
  }
  pthread_mutex_lock(&mg_mu);
  mock_dn_potrf_calls++;
  mock_dn_potrf_dev = cur_dev;
  pthread_mutex_unlock(&mg_mu);
  *info = linfo;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXpotrs(cusolverDnHandle_t h, cusolverDnParams_t p, cublasFillMode_t u,
                                  int64_t n, int64_t nrhs, cudaDataType ta, const void *A,
                                  int64_t lda, cudaDataType tb, void *B, int64_t ldb, int *info) {
  if (!dn_ok(h, p, u, n, ta, lda, tb) || !A || !B || !info || nrhs < 0 || nrhs > INT32_MAX ||
      ldb < (n > 1 ? n : 1) || ldb > INT32_MAX)
    return CUSOLVER_STATUS_INVALID_VALUE;
  int nn = (int)n, k = (int)nrhs, la = (int)lda, lb = (int)ldb, linfo = 0;
  switch (of_cuda(ta)) {
    case JAXMG_F32: spotrs_("L", &nn, &k, A, &la, B, &lb, &linfo); break;
    case JAXMG_F64: dpotrs_("L", &nn, &k, A, &la, B, &lb, &linfo); break;
    case JAXMG_C64: cpotrs_("L", &nn, &k, A, &la, B, &lb, &linfo); break;
    case JAXMG_C128: zpotrs_("L", &nn, &k, A, &la, B, &lb, &linfo); break;
  }
  *info = linfo;
  return CUSOLVER_STATUS_SUCCESS;
}

/* syevd (JAXMG_OP_SYEVD_WHOLE, _N_WHOLE): reference LAPACK on the matrix as given. With
 * vectors it asks for host workspace too, so that both of whole.c's paths run, the one that
 * keeps the workspace alive until the stream is done included (see hwork_defer). The
 * deterministic mode the handle had at the last call is recorded for the tests.
 * MOCK_DN_SYEVD_INFO=k reports info = k (an eigensolver that did not converge);
 * MOCK_DN_SYEVD_FAIL=1 fails the call. */
enum { DN_HWORK = 256 };
int mock_dn_syevd_calls = 0, mock_dn_syevd_dev = -1, mock_dn_syevd_mode = 0;

cusolverStatus_t cusolverDnSetDeterministicMode(cusolverDnHandle_t h,
                                                cusolverDeterministicMode_t mode) {
  if (!h || h->dev != cur_dev || (mode != CUSOLVER_DETERMINISTIC_RESULTS &&
                                  mode != CUSOLVER_ALLOW_NON_DETERMINISTIC_RESULTS))
    return CUSOLVER_STATUS_INVALID_VALUE;
  h->mode = mode;
  return CUSOLVER_STATUS_SUCCESS;
}

static int evd_ok(cusolverDnHandle_t h, cusolverDnParams_t p, cusolverEigMode_t jobz,
                  cublasFillMode_t u, int64_t n, cudaDataType ta, int64_t lda, cudaDataType tw,
                  cudaDataType tc) {
  const cudaDataType real = (ta == CUDA_R_32F || ta == CUDA_C_32F) ? CUDA_R_32F : CUDA_R_64F;
  return dn_ok(h, p, u, n, ta, lda, tc) && tw == real &&
         (jobz == CUSOLVER_EIG_MODE_VECTOR || jobz == CUSOLVER_EIG_MODE_NOVECTOR);
}

cusolverStatus_t cusolverDnXsyevd_bufferSize(cusolverDnHandle_t h, cusolverDnParams_t p,
                                             cusolverEigMode_t jobz, cublasFillMode_t u,
                                             int64_t n, cudaDataType ta, const void *A,
                                             int64_t lda, cudaDataType tw, const void *W,
                                             cudaDataType tc, size_t *dbytes, size_t *hbytes) {
  (void)A, (void)W;
  if (!evd_ok(h, p, jobz, u, n, ta, lda, tw, tc)) return CUSOLVER_STATUS_INVALID_VALUE;
  *dbytes = DN_WORK;
  *hbytes = jobz == CUSOLVER_EIG_MODE_VECTOR ? DN_HWORK : 0;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXsyevd(cusolverDnHandle_t h, cusolverDnParams_t p,
                                  cusolverEigMode_t jobz, cublasFillMode_t u, int64_t n,
                                  cudaDataType ta, void *A, int64_t lda, cudaDataType tw, void *W,
                                  cudaDataType tc, void *dwork, size_t dbytes, void *hwork,
                                  size_t hbytes, int *info) {
  if (!evd_ok(h, p, jobz, u, n, ta, lda, tw, tc) || !A || !W || !info || !dwork ||
      dbytes < DN_WORK || (hbytes && !hwork) ||
      hbytes < (jobz == CUSOLVER_EIG_MODE_VECTOR ? DN_HWORK : 0))
    return CUSOLVER_STATUS_INVALID_VALUE;
  const char *fail = getenv("MOCK_DN_SYEVD_FAIL");
  if (fail && atoi(fail)) return CUSOLVER_STATUS_INTERNAL_ERROR;
  if (hbytes) hwork_defer(h->stream, hwork, hbytes);
  const int linfo = mock_lapack_evd(of_cuda(ta), jobz == CUSOLVER_EIG_MODE_VECTOR, (int)n, A,
                                    (int)lda, W);
  pthread_mutex_lock(&mg_mu);
  mock_dn_syevd_calls++;
  mock_dn_syevd_dev = cur_dev;
  mock_dn_syevd_mode = (int)h->mode;
  pthread_mutex_unlock(&mg_mu);
  const char *forced = getenv("MOCK_DN_SYEVD_INFO");
  *info = forced && atoi(forced) ? atoi(forced) : linfo;
  return CUSOLVER_STATUS_SUCCESS;
}

/* Xsyevdx, range I: every eigenpair by reference LAPACK, then eigenpairs il..iu moved to the
 * front (W and the first iu - il + 1 columns of A), as cuSOLVER returns them. */
static int evdx_ok(cusolverEigRange_t range, int64_t n, int64_t il, int64_t iu) {
  return range == CUSOLVER_EIG_RANGE_I && 1 <= il && il <= iu && iu <= n;
}

cusolverStatus_t cusolverDnXsyevdx_bufferSize(cusolverDnHandle_t h, cusolverDnParams_t p,
                                              cusolverEigMode_t jobz, cusolverEigRange_t range,
                                              cublasFillMode_t u, int64_t n, cudaDataType ta,
                                              const void *A, int64_t lda, void *vl, void *vu,
                                              int64_t il, int64_t iu, int64_t *meig,
                                              cudaDataType tw, const void *W, cudaDataType tc,
                                              size_t *dbytes, size_t *hbytes) {
  (void)A, (void)W, (void)vl, (void)vu, (void)meig;
  if (!evd_ok(h, p, jobz, u, n, ta, lda, tw, tc) || !evdx_ok(range, n, il, iu))
    return CUSOLVER_STATUS_INVALID_VALUE;
  *dbytes = DN_WORK;
  *hbytes = 0;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXsyevdx(cusolverDnHandle_t h, cusolverDnParams_t p,
                                   cusolverEigMode_t jobz, cusolverEigRange_t range,
                                   cublasFillMode_t u, int64_t n, cudaDataType ta, void *A,
                                   int64_t lda, void *vl, void *vu, int64_t il, int64_t iu,
                                   int64_t *meig, cudaDataType tw, void *W, cudaDataType tc,
                                   void *dwork, size_t dbytes, void *hwork, size_t hbytes,
                                   int *info) {
  (void)vl, (void)vu, (void)hwork, (void)hbytes;
  if (!evd_ok(h, p, jobz, u, n, ta, lda, tw, tc) || !evdx_ok(range, n, il, iu) || !A || !W ||
      !meig || !info || !dwork || dbytes < DN_WORK)
    return CUSOLVER_STATUS_INVALID_VALUE;
  const int vectors = jobz == CUSOLVER_EIG_MODE_VECTOR;
  const int linfo = mock_lapack_evd(of_cuda(ta), 1, (int)n, A, (int)lda, W);
  const size_t rsz = (tw == CUDA_R_32F) ? 4 : 8;
  const size_t esz = (ta == CUDA_R_32F) ? 4 : (ta == CUDA_C_64F) ? 16 : 8;
  const int64_t k = iu - il + 1;
  memmove(W, (char *)W + (size_t)(il - 1) * rsz, (size_t)k * rsz);
  if (vectors)
    memmove(A, (char *)A + (size_t)(il - 1) * (size_t)lda * esz, (size_t)k * (size_t)lda * esz);
  *meig = k;
  *info = linfo;
  return CUSOLVER_STATUS_SUCCESS;
}
