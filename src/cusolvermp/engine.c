/* The distributed engine over cuSOLVERMp (libjaxmg_dist_cuda<major>.so): one rank per GPU,
 * any number of processes and nodes, NCCL underneath. Its own library, loaded only when
 * the engine is asked for, so that jaxmg needs neither cuSOLVERMp nor NCCL otherwise.
 *
 * A group is the set of ranks of one mesh. Python creates it once, collectively
 * (jaxmg_dist_init, called by every process for its own GPUs with the NCCL unique id that
 * rank 0 made and JAX's key-value store spread): an NCCL communicator, a cuSOLVERMp handle
 * and a p x q device grid (column-major: rank = row + col * p) per local GPU, kept until the
 * process exits. The FFI calls then find their rank's context by (group key, device).
 *
 * Operands arrive in the 2D block-cyclic layout already (python/jaxmg/_engines/_grid2d.py
 * moves them there with one all_to_all): each rank's local matrix column-major with leading
 * dimension lld, that is an XLA buffer of shape (local columns, lld). The math is cuSOLVERMp's
 * own, lower triangle, on the call's stream; workspaces come from XLA's allocator. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cusolverMp.h>
#include <nccl.h>

#include "common/ffi_util.h"
#include "gpu/gpu.h"

enum { MAX_CTX = 64 };

typedef struct {
  int used;
  int64_t key; /* the group, chosen by Python */
  int rank, nranks, device, p, q;
  ncclComm_t comm;
  cusolverMpHandle_t h;
  cusolverMpGrid_t grid;
  pthread_mutex_t mu; /* one call at a time per rank */
} dist_ctx_t;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static dist_ctx_t g_ctx[MAX_CTX];

static jaxmg_status_t nccl_check(ncclResult_t r, const char *what, jaxmg_error_t *err) {
  if (r == ncclSuccess) return JAXMG_OK;
  return jaxmg__seterr(err, JAXMG_ELIB, "jaxmg.dist: NCCL %s failed: %s (%d)", what,
                       ncclGetErrorString(r), (int)r);
}

static void put_error(const jaxmg_error_t *e, char *out, size_t len) {
  if (out && len) snprintf(out, len, "%s", e->msg);
}

JAXMG_EXPORT int jaxmg_dist_unique_id(void *out, int len);
/* ncclGetUniqueId into out[len] (len >= NCCL_UNIQUE_ID_BYTES); 0 on success. */
int jaxmg_dist_unique_id(void *out, int len) {
  ncclUniqueId id;
  if (!out || len < (int)sizeof id) return -1;
  if (ncclGetUniqueId(&id) != ncclSuccess) return -2;
  memcpy(out, &id, sizeof id);
  return 0;
}

JAXMG_EXPORT int jaxmg_dist_id_bytes(void);
int jaxmg_dist_id_bytes(void) { return (int)sizeof(ncclUniqueId); }

JAXMG_EXPORT int jaxmg_dist_nccl_version(void);
int jaxmg_dist_nccl_version(void) {
  int v = 0;
  return ncclGetVersion(&v) == ncclSuccess ? v : -1;
}

static dist_ctx_t *find(int64_t key, int device) {
  for (int i = 0; i < MAX_CTX; i++)
    if (g_ctx[i].used && g_ctx[i].key == key && g_ctx[i].device == device) return &g_ctx[i];
  return NULL;
}

JAXMG_EXPORT int jaxmg_dist_init(int64_t key, const void *id, int nranks, int nlocal,
                                 const int *ranks, const int *devices, int p, int q,
                                 char *errbuf, int errlen);
/* Creates group `key` for this process's nlocal GPUs (devices[i] is rank ranks[i] of
 * nranks, on a p x q grid). Collective over every process of the group. 0 on success,
 * else a jaxmg_status_t with the reason in errbuf. Calling it again for an existing
 * (key, device) does nothing for that device. */
int jaxmg_dist_init(int64_t key, const void *id, int nranks, int nlocal, const int *ranks,
                    const int *devices, int p, int q, char *errbuf, int errlen) {
  jaxmg_error_t err = {JAXMG_OK, ""};
  jaxmg_status_t st = JAXMG_OK;
  ncclUniqueId uid;
  int slot[MAX_CTX];
  if (!id || nranks < 1 || nlocal < 1 || nlocal > MAX_CTX || p < 1 || q < 1 ||
      p * q != nranks) {
    st = jaxmg__seterr(&err, JAXMG_EINVAL, "jaxmg.dist: bad group (%d ranks, %d local, %dx%d)",
                       nranks, nlocal, p, q);
    put_error(&err, errbuf, (size_t)errlen);
    return (int)st;
  }
  memcpy(&uid, id, sizeof uid);
  int prev = -1;
  (void)cudaGetDevice(&prev);
  pthread_mutex_lock(&g_mu);
  int fresh = 0;
  for (int i = 0; i < nlocal && !st; i++) {
    slot[i] = -1;
    if (find(key, devices[i])) continue;
    for (int s = 0; s < MAX_CTX; s++) {
      if (!g_ctx[s].used) {
        slot[i] = s;
        g_ctx[s].used = -1; /* reserved until created */
        break;
      }
    }
    if (slot[i] < 0) st = jaxmg__seterr(&err, JAXMG_ENOMEM, "jaxmg.dist: more than %d ranks", MAX_CTX);
    fresh += slot[i] >= 0;
  }
  /* One process with several GPUs joins for all of them at once. */
  if (!st && fresh) st = nccl_check(ncclGroupStart(), "ncclGroupStart", &err);
  for (int i = 0; i < nlocal && !st && fresh; i++) {
    if (slot[i] < 0) continue;
    dist_ctx_t *c = &g_ctx[slot[i]];
    st = JAXMG_GPU(&err, "dist", cudaSetDevice(devices[i]));
    if (!st)
      st = nccl_check(ncclCommInitRank(&c->comm, nranks, uid, ranks[i]), "ncclCommInitRank", &err);
  }
  if (fresh) {
    jaxmg_error_t e2 = {JAXMG_OK, ""};
    jaxmg_status_t st2 = nccl_check(ncclGroupEnd(), "communicator creation (ncclGroupEnd)", &e2);
    if (!st && st2) {
      st = st2;
      err = e2;
    }
  }
  for (int i = 0; i < nlocal && !st; i++) {
    if (slot[i] < 0) continue;
    dist_ctx_t *c = &g_ctx[slot[i]];
    st = JAXMG_GPU(&err, "dist", cudaSetDevice(devices[i]));
    if (!st) st = JAXMG_GPU(&err, "dist", cusolverMpCreate(&c->h, devices[i], NULL));
    if (!st)
      st = JAXMG_GPU(&err, "dist", cusolverMpCreateDeviceGrid(c->h, &c->grid, c->comm, p, q,
                                                              CUSOLVERMP_GRID_MAPPING_COL_MAJOR));
    if (!st) {
      c->key = key;
      c->rank = ranks[i];
      c->nranks = nranks;
      c->device = devices[i];
      c->p = p;
      c->q = q;
      pthread_mutex_init(&c->mu, NULL);
      c->used = 1;
    }
  }
  if (st) { /* nothing half-made stays: every reserved slot is released */
    for (int i = 0; i < nlocal; i++) {
      if (slot[i] < 0 || g_ctx[slot[i]].used == 1) continue;
      dist_ctx_t *c = &g_ctx[slot[i]];
      if (c->grid) (void)cusolverMpDestroyGrid(c->grid);
      if (c->h) (void)cusolverMpDestroy(c->h);
      if (c->comm) (void)ncclCommAbort(c->comm);
      memset(c, 0, sizeof *c);
    }
  }
  pthread_mutex_unlock(&g_mu);
  if (prev >= 0) (void)cudaSetDevice(prev);
  put_error(&err, errbuf, (size_t)errlen);
  return (int)st;
}

JAXMG_EXPORT int jaxmg_dist_release(void);
/* Releases every group of this process: grids, cuSOLVERMp handles, NCCL communicators (in
 * that order, each on its device). Python calls it at exit, while CUDA is still usable; a
 * call of the engine afterwards needs jaxmg_dist_init again. Returns the number released. */
int jaxmg_dist_release(void) {
  int n = 0, prev = -1;
  (void)cudaGetDevice(&prev);
  pthread_mutex_lock(&g_mu);
  for (int s = 0; s < MAX_CTX; s++) {
    dist_ctx_t *c = &g_ctx[s];
    if (c->used != 1) continue;
    pthread_mutex_lock(&c->mu); /* no call of this rank is running */
    (void)cudaSetDevice(c->device);
    if (c->grid) (void)cusolverMpDestroyGrid(c->grid);
    if (c->h) (void)cusolverMpDestroy(c->h);
    if (c->comm) (void)ncclCommDestroy(c->comm);
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_destroy(&c->mu);
    memset(c, 0, sizeof *c);
    n++;
  }
  pthread_mutex_unlock(&g_mu);
  if (prev >= 0) (void)cudaSetDevice(prev);
  return n;
}

/* ---- the FFI calls -------------------------------------------------------------------- */

typedef struct {
  dist_ctx_t *c;
  cudaStream_t stream;
  const XLA_FFI_CallFrame *f;
  const jaxmg_gpu_dtype_t *ty;
  int prev_device;
  int locked; /* c->mu is held */
} call_t;

static jaxmg_status_t enter(XLA_FFI_CallFrame *f, int64_t key, jaxmg_dtype_t dt, call_t *cl,
                            const char *op, jaxmg_error_t *err) {
  void *s = NULL;
  int dev = -1;
  memset(cl, 0, sizeof *cl);
  cl->prev_device = -1;
  jaxmg_status_t st = jaxmg__ffi_stream(f, &s, op, err);
  if (st) return st;
  cl->stream = (cudaStream_t)s;
  cl->f = f;
  if (cudaStreamGetDevice(cl->stream, &dev) != cudaSuccess) {
    (void)cudaGetLastError();
    if (jaxmg__ffi_device_ordinal(f, &dev))
      return jaxmg__seterr(err, JAXMG_EUNAVAIL, "jaxmg.%s: cannot tell the CUDA device", op);
  }
  cl->ty = jaxmg__gpu_dtype(dt);
  pthread_mutex_lock(&g_mu);
  cl->c = find(key, dev);
  pthread_mutex_unlock(&g_mu);
  if (!cl->c) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: device %d has no rank in group %lld "
                         "(jaxmg_dist_init was not called for it)", op, dev, (long long)key);
  }
  if (!cl->ty) return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: unsupported dtype", op);
  (void)cudaGetDevice(&cl->prev_device);
  if ((st = JAXMG_GPU(err, op, cudaSetDevice(dev)))) return st;
  pthread_mutex_lock(&cl->c->mu);
  cl->locked = 1;
  return JAXMG_GPU(err, op, cusolverMpSetStream(cl->c->h, cl->stream));
}

static void leave(call_t *cl) {
  if (cl->locked) pthread_mutex_unlock(&cl->c->mu);
  cl->locked = 0;
  if (cl->prev_device >= 0) (void)cudaSetDevice(cl->prev_device);
}

/* Device workspace from XLA's allocator and host workspace from malloc; released by
 * work_free after the stream has finished with the host part. */
typedef struct {
  void *d, *hw;
  size_t dbytes, hbytes;
} work_t;

static jaxmg_status_t work_get(call_t *cl, work_t *w, size_t dbytes, size_t hbytes,
                               const char *op, jaxmg_error_t *err) {
  char why[200];
  w->dbytes = dbytes ? dbytes : 16;
  w->hbytes = hbytes;
  w->d = jaxmg__ffi_alloc(cl->f, w->dbytes, why, sizeof why);
  if (!w->d) {
    return jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: no %zu bytes of device workspace for "
                         "cuSOLVERMp from XLA's allocator: %s", op, w->dbytes, why);
  }
  if (hbytes && !(w->hw = malloc(hbytes)))
    return jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory (%zu bytes)", op, hbytes);
  return JAXMG_OK;
}

static jaxmg_status_t work_free(call_t *cl, work_t *w, jaxmg_status_t st, jaxmg_error_t *err) {
  st = jaxmg__gpu_free_host_work(w->hw, cl->stream, st, "dist", err);
  if (w->d) jaxmg__ffi_free(cl->f, w->d, w->dbytes);
  return st;
}

static jaxmg_status_t desc(call_t *cl, cusolverMpMatrixDescriptor_t *d, int64_t m, int64_t n,
                           int64_t mb, int64_t nb, int64_t lld, const char *op,
                           jaxmg_error_t *err) {
  return JAXMG_GPU(err, op, cusolverMpCreateMatrixDesc(d, cl->c->grid, cl->ty->ctype, m, n, mb,
                                                       nb, 0, 0, lld));
}

static jaxmg_status_t attrs(XLA_FFI_CallFrame *f, const char *op, int64_t *key, int64_t *n,
                            int64_t *mb, int64_t *nb, jaxmg_error_t *err) {
  jaxmg_status_t st = jaxmg__ffi_attr_i64(f, "group", key, op, err);
  if (!st) st = jaxmg__ffi_attr_i64(f, "n", n, op, err);
  if (!st) st = jaxmg__ffi_attr_i64(f, "mb", mb, op, err);
  if (!st) st = jaxmg__ffi_attr_i64(f, "nb", nb, op, err);
  if (!st && (*n < 1 || *mb < 1 || *nb < 1))
    st = jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: bad n/mb/nb %lld/%lld/%lld", op,
                       (long long)*n, (long long)*mb, (long long)*nb);
  return st;
}

/* lld of a local buffer of shape (local columns, lld). */
static int64_t lld_of(const jaxmg_buf_t *b) { return b->rank == 2 ? b->dims[1] : 1; }

/* The frame of the solves (jaxmg_dist_potrs, jaxmg_dist_getrs): attributes group, n, mb, nb,
 * nrhs, nbb (B's column block: nrhs puts all of B on grid column 0, nb lays an N x N B out
 * like A); operands a (local of A) and b (local of B); results a and x (aliased to them)
 * and info (int32[2]: the factorization's, the solve's). */
typedef struct {
  int64_t key, n, mb, nb, nrhs, nbb;
  jaxmg_buf_t a, b, info;
} solve_frame_t;

static jaxmg_status_t solve_frame(XLA_FFI_CallFrame *f, const char *op, solve_frame_t *fr,
                                  jaxmg_error_t *err) {
  jaxmg_buf_t ra, rx;
  fr->nrhs = 0;
  fr->nbb = 1;
  jaxmg_status_t st = attrs(f, op, &fr->key, &fr->n, &fr->mb, &fr->nb, err);
  if (!st) st = jaxmg__ffi_attr_i64(f, "nrhs", &fr->nrhs, op, err);
  if (!st) st = jaxmg__ffi_attr_i64(f, "nbb", &fr->nbb, op, err);
  if (!st) st = jaxmg__ffi_buffer(f, 0, 0, &fr->a, op, "a", err);
  if (!st) st = jaxmg__ffi_buffer(f, 0, 1, &fr->b, op, "b", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 0, &ra, op, "a (result)", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 1, &rx, op, "x", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 2, &fr->info, op, "info", err);
  if (st) return st;
  if (!fr->a.known || fr->a.rank != 2 || ra.data != fr->a.data || rx.data != fr->b.data ||
      fr->b.dtype != fr->a.dtype || fr->nrhs < 0 || fr->nbb < 1) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: a and b must be local matrices of one "
                         "dtype, the results aliased to them, nrhs >= 0 and nbb >= 1", op);
  }
  return JAXMG_OK;
}

/* The end of every call: its workspaces released, its descriptors destroyed, its rank's
 * lock and device given back. Returns st (or a later failure of the release). */
static jaxmg_status_t finish(call_t *cl, work_t *w, int nw, cusolverMpMatrixDescriptor_t *d,
                             int nd, jaxmg_status_t st, jaxmg_error_t *err) {
  for (int i = 0; i < nw; i++) st = work_free(cl, &w[i], st, err);
  for (int i = 0; i < nd; i++)
    if (d[i]) (void)cusolverMpDestroyMatrixDesc(d[i]);
  leave(cl);
  return st;
}

/* jaxmg_dist_potrs: Potrf + Potrs of a Hermitian positive definite A (lower triangle) on
 * the solve frame; attribute solve = 0 factors only (b and x unused), factor = 0 solves
 * only, with A already holding its Cholesky factor L (info[0] is then 0). */
static jaxmg_status_t potrs(XLA_FFI_CallFrame *f, jaxmg_error_t *err) {
  const char *op = "potrs";
  solve_frame_t fr;
  int64_t solve = 1, factor = 1;
  call_t cl;
  work_t w = {0};
  cusolverMpMatrixDescriptor_t d[2] = {NULL, NULL};
  jaxmg_status_t st = solve_frame(f, op, &fr, err);
  if (!st) st = jaxmg__ffi_attr_i64(f, "solve", &solve, op, err);
  if (!st) st = jaxmg__ffi_attr_i64(f, "factor", &factor, op, err);
  if (!st && !solve && !factor)
    st = jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: nothing to do (solve = factor = 0)", op);
  if (st) return st;
  if ((st = enter(f, fr.key, fr.a.dtype, &cl, op, err))) return finish(&cl, &w, 0, d, 0, st, err);
  const cublasFillMode_t lo = CUBLAS_FILL_MODE_LOWER;
  const cudaDataType ct = cl.ty->ctype;
  const int64_t n = fr.n, nrhs = fr.nrhs;
  void *a = fr.a.data, *b = fr.b.data;
  int *info = fr.info.data;
  size_t d1 = 0, h1 = 0, d2 = 0, h2 = 0;
  st = desc(&cl, &d[0], n, n, fr.mb, fr.nb, lld_of(&fr.a), op, err);
  if (!st && solve) st = desc(&cl, &d[1], n, nrhs, fr.mb, fr.nbb, lld_of(&fr.b), op, err);
  if (!st && factor)
    st = JAXMG_GPU(err, op, cusolverMpPotrf_bufferSize(cl.c->h, lo, n, a, 1, 1, d[0], ct, &d1,
                                                        &h1));
  if (!st && solve)
    st = JAXMG_GPU(err, op, cusolverMpPotrs_bufferSize(cl.c->h, lo, n, nrhs, a, 1, 1, d[0], b, 1,
                                                        1, d[1], ct, &d2, &h2));
  if (!st) st = work_get(&cl, &w, d1 > d2 ? d1 : d2, h1 > h2 ? h1 : h2, op, err);
  if (!st && factor)
    st = JAXMG_GPU(err, op, cusolverMpPotrf(cl.c->h, lo, n, a, 1, 1, d[0], ct, w.d, w.dbytes,
                                            w.hw, w.hbytes, info));
  else if (!st)
    st = JAXMG_GPU(err, op, cudaMemsetAsync(info, 0, sizeof(int), cl.stream));
  /* After a failed factorization x is unspecified: Python replaces it by NaN from info. */
  if (!st && solve)
    st = JAXMG_GPU(err, op, cusolverMpPotrs(cl.c->h, lo, n, nrhs, a, 1, 1, d[0], b, 1, 1, d[1],
                                            ct, w.d, w.dbytes, w.hw, w.hbytes, info + 1));
  return finish(&cl, &w, 1, d, 2, st, err);
}

/* jaxmg_dist_getrs: Getrf + Getrs of a general A on the solve frame (info[0]: the first
 * exactly zero pivot of U). Row pivots live in device workspace (LOCr(N) + mb entries,
 * ScaLAPACK's IPIV) for the call only. */
static jaxmg_status_t getrs(XLA_FFI_CallFrame *f, jaxmg_error_t *err) {
  const char *op = "solve";
  solve_frame_t fr;
  call_t cl;
  work_t w[2] = {{0}, {0}}; /* the solver's, the pivots */
  cusolverMpMatrixDescriptor_t d[2] = {NULL, NULL};
  jaxmg_status_t st = solve_frame(f, op, &fr, err);
  if (!st && fr.nrhs < 1)
    st = jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: no right-hand side", op);
  if (st) return st;
  if ((st = enter(f, fr.key, fr.a.dtype, &cl, op, err))) return finish(&cl, w, 0, d, 0, st, err);
  const cudaDataType ct = cl.ty->ctype;
  const int64_t n = fr.n, nrhs = fr.nrhs;
  void *a = fr.a.data, *b = fr.b.data;
  int *info = fr.info.data;
  size_t d1 = 0, h1 = 0, d2 = 0, h2 = 0;
  st = work_get(&cl, &w[1], (size_t)(lld_of(&fr.a) + fr.mb) * sizeof(int64_t), 0, op, err);
  int64_t *ipiv = w[1].d;
  if (!st) st = desc(&cl, &d[0], n, n, fr.mb, fr.nb, lld_of(&fr.a), op, err);
  if (!st) st = desc(&cl, &d[1], n, nrhs, fr.mb, fr.nbb, lld_of(&fr.b), op, err);
  if (!st)
    st = JAXMG_GPU(err, op, cusolverMpGetrf_bufferSize(cl.c->h, n, n, a, 1, 1, d[0], ipiv, ct,
                                                        &d1, &h1));
  if (!st)
    st = JAXMG_GPU(err, op, cusolverMpGetrs_bufferSize(cl.c->h, CUBLAS_OP_N, n, nrhs, a, 1, 1,
                                                        d[0], ipiv, b, 1, 1, d[1], ct, &d2, &h2));
  if (!st) st = work_get(&cl, &w[0], d1 > d2 ? d1 : d2, h1 > h2 ? h1 : h2, op, err);
  if (!st)
    st = JAXMG_GPU(err, op, cusolverMpGetrf(cl.c->h, n, n, a, 1, 1, d[0], ipiv, ct, w[0].d,
                                            w[0].dbytes, w[0].hw, w[0].hbytes, info));
  if (!st)
    st = JAXMG_GPU(err, op, cusolverMpGetrs(cl.c->h, CUBLAS_OP_N, n, nrhs, a, 1, 1, d[0], ipiv, b,
                                            1, 1, d[1], ct, w[0].d, w[0].dbytes, w[0].hw,
                                            w[0].hbytes, info + 1));
  return finish(&cl, w, 2, d, 2, st, err);
}

/* jaxmg_dist_syevd: operand a (local of A); results a (scratch, aliased), v (local of the
 * eigenvectors, same layout), w (N eigenvalues, real type, on every rank), info (int32[1]).
 * Attribute vectors = 0: eigenvalues only (v untouched). */
static jaxmg_status_t syevd(XLA_FFI_CallFrame *f, jaxmg_error_t *err) {
  const char *op = "syevd";
  int64_t key, n, mb, nb, vectors = 1;
  jaxmg_buf_t a, ra, v, w8, info;
  call_t cl;
  work_t w = {0};
  cusolverMpMatrixDescriptor_t da = NULL, dq = NULL;
  jaxmg_status_t st = attrs(f, op, &key, &n, &mb, &nb, err);
  if (!st) st = jaxmg__ffi_attr_i64(f, "vectors", &vectors, op, err);
  if (!st) st = jaxmg__ffi_buffer(f, 0, 0, &a, op, "a", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 0, &ra, op, "a (result)", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 1, &v, op, "v", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 2, &w8, op, "w", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 3, &info, op, "info", err);
  if (st) return st;
  if (!a.known || a.rank != 2 || ra.data != a.data || v.dtype != a.dtype ||
      v.rank != 2 || v.dims[0] != a.dims[0] || v.dims[1] != a.dims[1] || w8.rank != 1 ||
      w8.dims[0] != n) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: a, v (local matrices of one shape) "
                         "and w[%lld] expected, a aliased", op, (long long)n);
  }
  if ((st = enter(f, key, a.dtype, &cl, op, err))) return finish(&cl, &w, 0, NULL, 0, st, err);
  char compz[2] = {vectors ? 'V' : 'N', 0};
  const cudaDataType ct = cl.ty->ctype;
  size_t db = 0, hb = 0;
  st = desc(&cl, &da, n, n, mb, nb, lld_of(&a), op, err);
  if (!st) st = desc(&cl, &dq, n, n, mb, nb, lld_of(&v), op, err);
  if (!st)
    st = JAXMG_GPU(err, op, cusolverMpSyevd_bufferSize(cl.c->h, compz, CUBLAS_FILL_MODE_LOWER, n,
                                                        a.data, 1, 1, da, w8.data, v.data, 1, 1,
                                                        dq, ct, &db, &hb));
  if (!st) st = work_get(&cl, &w, db, hb, op, err);
  if (!st)
    st = JAXMG_GPU(err, op, cusolverMpSyevd(cl.c->h, compz, CUBLAS_FILL_MODE_LOWER, n, a.data, 1,
                                            1, da, w8.data, v.data, 1, 1, dq, ct, w.d, w.dbytes,
                                            w.hw, w.hbytes, (int *)info.data));
  cusolverMpMatrixDescriptor_t d[2] = {da, dq};
  return finish(&cl, &w, 1, d, 2, st, err);
}

/* jaxmg_dist_sygvd: A z = λ B z (type 1), B Hermitian positive definite. Operands a, b
 * (local matrices of one layout); results a, b (scratch, aliased), z (local eigenvectors,
 * B-orthonormal), w (N eigenvalues, real type, on every rank), info (int32[1]: N + k when
 * B's leading minor of order k is not positive definite). Attribute vectors as in syevd. */
static jaxmg_status_t sygvd(XLA_FFI_CallFrame *f, jaxmg_error_t *err) {
  const char *op = "eigh";
  int64_t key, n, mb, nb, vectors = 1;
  jaxmg_buf_t a, b, ra, rb, z, w8, info;
  call_t cl;
  work_t w = {0};
  cusolverMpMatrixDescriptor_t da = NULL, db = NULL, dz = NULL;
  jaxmg_status_t st = attrs(f, op, &key, &n, &mb, &nb, err);
  if (!st) st = jaxmg__ffi_attr_i64(f, "vectors", &vectors, op, err);
  if (!st) st = jaxmg__ffi_buffer(f, 0, 0, &a, op, "a", err);
  if (!st) st = jaxmg__ffi_buffer(f, 0, 1, &b, op, "b", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 0, &ra, op, "a (result)", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 1, &rb, op, "b (result)", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 2, &z, op, "z", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 3, &w8, op, "w", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 4, &info, op, "info", err);
  if (st) return st;
  if (!a.known || a.rank != 2 || ra.data != a.data || rb.data != b.data || b.dtype != a.dtype ||
      z.dtype != a.dtype || b.rank != 2 || z.rank != 2 || b.dims[0] != a.dims[0] ||
      b.dims[1] != a.dims[1] || z.dims[0] != a.dims[0] || z.dims[1] != a.dims[1] ||
      w8.rank != 1 || w8.dims[0] != n) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: a, b, z (local matrices of one shape) "
                         "and w[%lld] expected, a and b aliased", op, (long long)n);
  }
  if ((st = enter(f, key, a.dtype, &cl, op, err))) return finish(&cl, &w, 0, NULL, 0, st, err);
  const cusolverEigMode_t jobz = vectors ? CUSOLVER_EIG_MODE_VECTOR : CUSOLVER_EIG_MODE_NOVECTOR;
  const cudaDataType ct = cl.ty->ctype;
  const cublasFillMode_t lo = CUBLAS_FILL_MODE_LOWER;
  size_t dbytes = 0, hbytes = 0;
  st = desc(&cl, &da, n, n, mb, nb, lld_of(&a), op, err);
  if (!st) st = desc(&cl, &db, n, n, mb, nb, lld_of(&b), op, err);
  if (!st) st = desc(&cl, &dz, n, n, mb, nb, lld_of(&z), op, err);
  if (!st)
    st = JAXMG_GPU(err, op, cusolverMpSygvd_bufferSize(cl.c->h, CUSOLVER_EIG_TYPE_1, jobz, lo, n,
                                                        1, 1, da, 1, 1, db, 1, 1, dz, ct, &dbytes,
                                                        &hbytes));
  if (!st) st = work_get(&cl, &w, dbytes, hbytes, op, err);
  if (!st)
    st = JAXMG_GPU(err, op, cusolverMpSygvd(cl.c->h, CUSOLVER_EIG_TYPE_1, jobz, lo, n, a.data, 1,
                                            1, da, b.data, 1, 1, db, w8.data, z.data, 1, 1, dz,
                                            ct, w.d, w.dbytes, w.hw, w.hbytes, (int *)info.data));
  cusolverMpMatrixDescriptor_t d[3] = {da, db, dz};
  return finish(&cl, &w, 1, d, 3, st, err);
}

/* jaxmg_dist_qr: A = Q R of an m x n A, m >= n (Geqrf, then Orgqr). Attributes group, m,
 * n, mb, nb. Operand a (local matrix, shape (local columns, lld)); results a (aliased: Q's
 * local blocks), r (the local blocks of A after Geqrf, whose part on and above the diagonal
 * of the first n rows is R), info (int32[1]). tau, one scalar per local column, lives in
 * the device workspace for the call. */
static jaxmg_status_t qr(XLA_FFI_CallFrame *f, jaxmg_error_t *err) {
  const char *op = "qr";
  int64_t key, m = 0, n, mb, nb;
  jaxmg_buf_t a, ra, r, info;
  call_t cl;
  work_t w = {0};
  cusolverMpMatrixDescriptor_t da = NULL;
  jaxmg_status_t st = attrs(f, op, &key, &n, &mb, &nb, err);
  if (!st) st = jaxmg__ffi_attr_i64(f, "m", &m, op, err);
  if (!st) st = jaxmg__ffi_buffer(f, 0, 0, &a, op, "a", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 0, &ra, op, "q", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 1, &r, op, "r", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 2, &info, op, "info", err);
  if (st) return st;
  if (!a.known || a.rank != 2 || ra.data != a.data || r.dtype != a.dtype || r.rank != 2 ||
      r.dims[0] != a.dims[0] || r.dims[1] != a.dims[1] || m < n) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: a and r (local matrices of one shape, "
                         "q aliased to a) and m >= n expected", op);
  }
  if ((st = enter(f, key, a.dtype, &cl, op, err))) return finish(&cl, &w, 0, NULL, 0, st, err);
  const cudaDataType ct = cl.ty->ctype;
  const size_t esz = jaxmg__dtype_info(a.dtype)->size;
  const size_t tau_bytes = (size_t)(a.dims[0] > 0 ? a.dims[0] : 1) * esz;
  size_t d1 = 0, h1 = 0, d2 = 0, h2 = 0;
  st = desc(&cl, &da, m, n, mb, nb, lld_of(&a), op, err);
  if (!st)
    st = JAXMG_GPU(err, op, cusolverMpGeqrf_bufferSize(cl.c->h, m, n, a.data, 1, 1, da, ct, &d1,
                                                        &h1));
  /* The query gets any device pointer for tau: the sizes depend on the shapes only. */
  if (!st)
    st = JAXMG_GPU(err, op, cusolverMpOrgqr_bufferSize(cl.c->h, m, n, n, a.data, 1, 1, da,
                                                        a.data, ct, &d2, &h2));
  const size_t solver = ((d1 > d2 ? d1 : d2) + 255) / 256 * 256;
  if (!st) st = work_get(&cl, &w, solver + tau_bytes, h1 > h2 ? h1 : h2, op, err);
  void *tau = (char *)w.d + solver;
  if (!st)
    st = JAXMG_GPU(err, op, cusolverMpGeqrf(cl.c->h, m, n, a.data, 1, 1, da, tau, ct, w.d,
                                            solver, w.hw, w.hbytes, (int *)info.data));
  if (!st)
    st = JAXMG_GPU(err, op, cudaMemcpyAsync(r.data, a.data,
                                            (size_t)a.dims[0] * (size_t)a.dims[1] * esz,
                                            cudaMemcpyDeviceToDevice, cl.stream));
  if (!st)
    st = JAXMG_GPU(err, op, cusolverMpOrgqr(cl.c->h, m, n, n, a.data, 1, 1, da, tau, ct, w.d,
                                            solver, w.hw, w.hbytes, (int *)info.data));
  return finish(&cl, &w, 1, &da, 1, st, err);
}

static XLA_FFI_Error *handle(XLA_FFI_CallFrame *f,
                             jaxmg_status_t (*fn)(XLA_FFI_CallFrame *, jaxmg_error_t *)) {
  if (!jaxmg__ffi_executes(f)) return NULL;
  jaxmg_error_t err = {JAXMG_OK, ""};
  return fn(f, &err) ? jaxmg__ffi_error(f->api, &err) : NULL;
}

JAXMG_EXPORT XLA_FFI_Error *jaxmg_ffi_dist_potrs_cuda(XLA_FFI_CallFrame *f);
XLA_FFI_Error *jaxmg_ffi_dist_potrs_cuda(XLA_FFI_CallFrame *f) { return handle(f, potrs); }

JAXMG_EXPORT XLA_FFI_Error *jaxmg_ffi_dist_syevd_cuda(XLA_FFI_CallFrame *f);
XLA_FFI_Error *jaxmg_ffi_dist_syevd_cuda(XLA_FFI_CallFrame *f) { return handle(f, syevd); }

JAXMG_EXPORT XLA_FFI_Error *jaxmg_ffi_dist_getrs_cuda(XLA_FFI_CallFrame *f);
XLA_FFI_Error *jaxmg_ffi_dist_getrs_cuda(XLA_FFI_CallFrame *f) { return handle(f, getrs); }

JAXMG_EXPORT XLA_FFI_Error *jaxmg_ffi_dist_sygvd_cuda(XLA_FFI_CallFrame *f);
XLA_FFI_Error *jaxmg_ffi_dist_sygvd_cuda(XLA_FFI_CallFrame *f) { return handle(f, sygvd); }

JAXMG_EXPORT XLA_FFI_Error *jaxmg_ffi_dist_qr_cuda(XLA_FFI_CallFrame *f);
XLA_FFI_Error *jaxmg_ffi_dist_qr_cuda(XLA_FFI_CallFrame *f) { return handle(f, qr); }

JAXMG_EXPORT const char *jaxmg_ffi_targets(void);
const char *jaxmg_ffi_targets(void) {
  return "jaxmg_dist_potrs,jaxmg_dist_getrs,jaxmg_dist_syevd,jaxmg_dist_sygvd,jaxmg_dist_qr";
}
