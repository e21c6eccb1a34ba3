/* CUDA backend: the plan cache.
 *
 * A context holds what depends on the device set only (cuSOLVERMg handle, 1 x P grid, peer
 * access); a plan adds what depends on the problem (descriptors, workspace size) for one
 * (device set in mesh order, N, T, dtype, op, nrhs). Both are created on first use under one
 * mutex and kept until the library is unloaded, so repeated calls pay nothing but a lookup;
 * the per-call workspaces come from XLA's allocator, never from cudaMalloc. Every use of a
 * handle is serialised by the context's own mutex (lock order: cache mutex, then context
 * mutex; a thread holding a context mutex never takes the cache mutex). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/gpu.h"

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static jaxmg_mg_ctx_t *g_ctx = NULL;
static jaxmg_mg_plan_t *g_plans = NULL;
static int64_t g_nplans = 0;

void jaxmg__mg_lock(jaxmg_mg_ctx_t *c) { pthread_mutex_lock((pthread_mutex_t *)c->mu); }
void jaxmg__mg_unlock(jaxmg_mg_ctx_t *c) { pthread_mutex_unlock((pthread_mutex_t *)c->mu); }

/* Peer access helps cuSOLVERMg but is never required (see gpu.h); failures are dropped. */
static void enable_peers(const int *devs, int ndev) {
  jaxmg_error_t ignored;
  for (int i = 0; i < ndev; i++) {
    if (JAXMG_GPU(&ignored, "peer", cudaSetDevice(devs[i]))) continue;
    for (int j = 0; j < ndev; j++) jaxmg__gpu_enable_peer(devs[i], devs[j]);
  }
}

static void ctx_free(jaxmg_mg_ctx_t *c) {
  jaxmg_error_t ignored;
  if (!c) return;
  if (c->grid) (void)JAXMG_GPU(&ignored, "release", cusolverMgDestroyGrid(c->grid));
  if (c->handle) (void)JAXMG_GPU(&ignored, "release", cusolverMgDestroy(c->handle));
  if (c->mu) {
    pthread_mutex_destroy((pthread_mutex_t *)c->mu);
    free(c->mu);
  }
  free(c);
}

/* Called with g_mu held. */
static jaxmg_status_t ctx_get(const int *devs, int ndev, const char *op, jaxmg_mg_ctx_t **out,
                              jaxmg_error_t *err) {
  for (jaxmg_mg_ctx_t *c = g_ctx; c; c = c->next) {
    if (c->ndev == ndev && !memcmp(c->devs, devs, (size_t)ndev * sizeof *devs)) {
      *out = c;
      return JAXMG_OK;
    }
  }
  int cur = 0;
  jaxmg_status_t st = JAXMG_GPU(err, op, cudaGetDevice(&cur));
  if (st) return st;
  jaxmg_mg_ctx_t *c = calloc(1, sizeof *c);
  if (!c || !(c->mu = malloc(sizeof(pthread_mutex_t)))) {
    free(c);
    return jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory", op);
  }
  pthread_mutex_init((pthread_mutex_t *)c->mu, NULL);
  c->ndev = ndev;
  memcpy(c->devs, devs, (size_t)ndev * sizeof *devs);
  enable_peers(devs, ndev);
  if ((st = JAXMG_GPU(err, op, cudaSetDevice(devs[0])))) goto fail;
  if ((st = JAXMG_GPU(err, op, cusolverMgCreate(&c->handle)))) goto fail;
  if ((st = JAXMG_GPU(err, op, cusolverMgDeviceSelect(c->handle, ndev, c->devs)))) goto fail;
  if ((st = JAXMG_GPU(err, op,
                      cusolverMgCreateDeviceGrid(&c->grid, 1, ndev, c->devs,
                                                 CUDALIBMG_GRID_MAPPING_COL_MAJOR))))
    goto fail;
  (void)JAXMG_GPU(err, op, cudaSetDevice(cur));
  c->next = g_ctx;
  g_ctx = c;
  *out = c;
  return JAXMG_OK;
fail:
  ctx_free(c);
  {
    jaxmg_error_t ignored;
    (void)JAXMG_GPU(&ignored, op, cudaSetDevice(cur));
  }
  return st;
}

static void plan_free(jaxmg_mg_plan_t *p) {
  jaxmg_error_t ignored;
  if (!p) return;
  if (p->b_last && p->b_last != p->b)
    (void)JAXMG_GPU(&ignored, "release", cusolverMgDestroyMatrixDesc(p->b_last));
  if (p->b) (void)JAXMG_GPU(&ignored, "release", cusolverMgDestroyMatrixDesc(p->b));
  if (p->a) (void)JAXMG_GPU(&ignored, "release", cusolverMgDestroyMatrixDesc(p->a));
  free(p);
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Workspace sizes of every routine the op calls. Called with the context mutex held. */
static jaxmg_status_t query_lwork(jaxmg_mg_plan_t *p, void **a, void **b, const char *op,
                                  jaxmg_error_t *err) {
  const jaxmg_gpu_dtype_t *ty = jaxmg__gpu_dtype(p->dtype);
  cusolverMgHandle_t h = p->ctx->handle;
  const int n = (int)p->n;
  const cublasFillMode_t lo = CUBLAS_FILL_MODE_LOWER;
  int64_t lw = 0, best = 0;
  jaxmg_status_t st = JAXMG_OK;
  const int factor = jaxmg__op_has(p->op, JAXMG_OPF_FACTOR);
  const int lu = jaxmg__op_has(p->op, JAXMG_OPF_LU);
  const int solve = jaxmg__op_has(p->op, JAXMG_OPF_B) && p->nrhs > 0;
  /* The queries want the pivot arrays, which live in each call's workspace: any device
   * pointers of the grid stand in for them (the sizes depend on the shapes only). */
  int *ipiv[JAXMG_MG_MAX_DEVICES];
  for (int r = 0; r < p->ctx->ndev; r++) ipiv[r] = (int *)a[r];
  if (factor) {
    if ((st = JAXMG_GPU(err, op,
                        cusolverMgPotrf_bufferSize(h, lo, n, a, 1, 1, p->a, ty->ctype, &lw))))
      return st;
    best = max64(best, lw);
  }
  if (lu) {
    if ((st = JAXMG_GPU(err, op,
                        cusolverMgGetrf_bufferSize(h, n, n, a, 1, 1, p->a, ipiv, ty->ctype, &lw))))
      return st;
    best = max64(best, lw);
  }
  for (int k = 0; solve && k < 1 + (p->b_last != p->b); k++) {
    const int nc = k ? p->last : p->chunk;
    cudaLibMgMatrixDesc_t db = k ? p->b_last : p->b;
    st = lu ? JAXMG_GPU(err, op,
                        cusolverMgGetrs_bufferSize(h, CUBLAS_OP_N, n, nc, a, 1, 1, p->a, ipiv, b,
                                                   1, 1, db, ty->ctype, &lw))
            : JAXMG_GPU(err, op,
                        cusolverMgPotrs_bufferSize(h, lo, n, nc, a, 1, 1, p->a, b, 1, 1, db,
                                                   ty->ctype, &lw));
    if (st) return st;
    best = max64(best, lw);
  }
  if (jaxmg__op_has(p->op, JAXMG_OPF_W)) {
    /* W is a host array; the query gets a real one in case it looks at it. */
    void *w = malloc((size_t)p->n * jaxmg__dtype_info(p->dtype)->real_size);
    if (!w) return jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory", op);
    st = JAXMG_GPU(err, op,
                   cusolverMgSyevd_bufferSize(
                       h, jaxmg__op_has(p->op, JAXMG_OPF_VECTORS) ? CUSOLVER_EIG_MODE_VECTOR
                                                                  : CUSOLVER_EIG_MODE_NOVECTOR,
                       lo, n, a, 1, 1, p->a, w, ty->rtype, ty->ctype, &lw));
    free(w);
    if (st) return st;
    best = max64(best, lw);
  }
  /* The pivots follow the solver's workspace: one int per local column, rounded up to
   * whole elements so the workspace stays one array of the element type. */
  p->ipiv_at = best;
  if (lu) {
    const int64_t esz = (int64_t)jaxmg__dtype_info(p->dtype)->size;
    const int64_t cols = p->n / p->ctx->ndev;
    best += (cols * (int64_t)sizeof(int) + esz - 1) / esz;
  }
  p->lwork = best;
  return JAXMG_OK;
}

jaxmg_status_t jaxmg__mg_plan(const int *devs, int ndev, jaxmg_op_t op, jaxmg_dtype_t dt,
                              int64_t n, int64_t tile, int64_t nrhs, void **a, void **b,
                              const char *opname, jaxmg_mg_plan_t **out, jaxmg_error_t *err) {
  const jaxmg_gpu_dtype_t *ty = jaxmg__gpu_dtype(dt);
  if (!ty) return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: unsupported dtype", opname);
  if (!jaxmg__op_has(op, JAXMG_OPF_B)) nrhs = 0;
  jaxmg_status_t st = JAXMG_OK;
  jaxmg_mg_plan_t *p = NULL;
  jaxmg_mg_ctx_t *c = NULL;
  pthread_mutex_lock(&g_mu);
  if ((st = ctx_get(devs, ndev, opname, &c, err))) goto out;
  for (p = g_plans; p; p = p->next) {
    if (p->ctx == c && p->op == op && p->dtype == dt && p->n == n && p->tile == tile &&
        p->nrhs == nrhs)
      goto out;
  }
  if (!(p = calloc(1, sizeof *p))) {
    st = jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory", opname);
    goto out;
  }
  p->ctx = c;
  p->op = op;
  p->dtype = dt;
  p->n = n;
  p->tile = tile;
  p->nrhs = nrhs;
  if ((st = JAXMG_GPU(err, opname,
                      cusolverMgCreateMatrixDesc(&p->a, n, n, n, tile, ty->ctype, c->grid))))
    goto fail;
  if (nrhs > 0) {
    /* One column tile per call: colblock = columns, so the tile lives on grid position 0. */
    p->chunk = (int)(nrhs < JAXMG_MG_RHS_CHUNK ? nrhs : JAXMG_MG_RHS_CHUNK);
    p->last = (int)(nrhs - ((nrhs - 1) / p->chunk) * p->chunk);
    if ((st = JAXMG_GPU(err, opname,
                        cusolverMgCreateMatrixDesc(&p->b, n, p->chunk, n, p->chunk, ty->ctype,
                                                   c->grid))))
      goto fail;
    p->b_last = p->b;
    if (p->last != p->chunk &&
        (st = JAXMG_GPU(err, opname,
                        cusolverMgCreateMatrixDesc(&p->b_last, n, p->last, n, p->last, ty->ctype,
                                                   c->grid))))
      goto fail;
  }
  jaxmg__mg_lock(c);
  st = query_lwork(p, a, b, opname, err);
  jaxmg__mg_unlock(c);
  if (st) goto fail;
  p->next = g_plans;
  g_plans = p;
  g_nplans++;
  goto out;
fail:
  plan_free(p);
  p = NULL;
out:
  pthread_mutex_unlock(&g_mu);
  *out = p;
  return st;
}

int64_t jaxmg_cuda_plan_count(void) {
  pthread_mutex_lock(&g_mu);
  int64_t n = g_nplans;
  pthread_mutex_unlock(&g_mu);
  return n;
}

/* At unload (process exit for a library loaded by Python): release handles while the CUDA
 * runtime is still usable; if it is already shutting down, leave them to the process exit. */
__attribute__((destructor)) static void release_all(void) {
  jaxmg_error_t ignored;
  int n = 0;
  if (JAXMG_GPU(&ignored, "release", cudaGetDeviceCount(&n))) return;
  pthread_mutex_lock(&g_mu);
  while (g_plans) {
    jaxmg_mg_plan_t *p = g_plans;
    g_plans = p->next;
    plan_free(p);
  }
  g_nplans = 0;
  while (g_ctx) {
    jaxmg_mg_ctx_t *c = g_ctx;
    g_ctx = c->next;
    ctx_free(c);
  }
  pthread_mutex_unlock(&g_mu);
}
