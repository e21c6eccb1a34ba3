/* FFI entry points of the CUDA platform: what touches XLA (device ordinal, stream, device
 * memory) stays here; the backend (src/gpu) sees plain pointers and an allocator.
 *
 * XLA calls each handler once per GPU from that GPU's host thread; the hooks of one call run
 * in order on that thread, so the participant's private state is thread-local. Every hook
 * makes its device current and restores the thread's previous device before returning. */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ffi/dispatch.h"
#include "gpu/gpu.h"

static _Thread_local jaxmg_gpu_part_t tls_part;
static _Thread_local int tls_saved_device;

/* Device memory: XLA's allocator of the call when it offers one; otherwise (jaxlib 0.11's GPU
 * runtime refuses FFI allocations outside its scratch mechanism) a stream-ordered allocation
 * on the call's stream from a memory pool of our own per device, which keeps what it has
 * (release threshold: never) so repeated calls reuse it instead of calling cudaMalloc. The
 * pool is ours alone: the device's default pool, which other libraries share, is untouched. */
enum { MAX_DEVICES = 64, MAX_POOL_PTRS = 8 };
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static cudaMemPool_t pools[MAX_DEVICES];
static _Thread_local void *tls_pool_ptrs[MAX_POOL_PTRS];

static cudaMemPool_t device_pool(int dev) {
  cudaMemPool_t pool = NULL;
  if (dev < 0 || dev >= MAX_DEVICES) return NULL;
  pthread_mutex_lock(&pool_mu);
  if (!pools[dev]) {
    struct cudaMemPoolProps props;
    memset(&props, 0, sizeof props);
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = dev;
    cudaMemPool_t created;
    if (cudaMemPoolCreate(&created, &props) == cudaSuccess) {
      uint64_t keep = UINT64_MAX;
      (void)cudaMemPoolSetAttribute(created, cudaMemPoolAttrReleaseThreshold, &keep);
      /* cuSOLVERMg reads the workspaces of the other GPUs: pool memory is private to its
       * device unless access is granted explicitly (peer access does not cover pools). */
      int count = 0;
      if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
      struct cudaMemAccessDesc acc[MAX_DEVICES];
      int nacc = 0;
      for (int d = 0; d < count && d < MAX_DEVICES; d++) {
        int can = 0;
        if (d == dev || cudaDeviceCanAccessPeer(&can, d, dev) != cudaSuccess || !can) continue;
        memset(&acc[nacc], 0, sizeof acc[nacc]);
        acc[nacc].location.type = cudaMemLocationTypeDevice;
        acc[nacc].location.id = d;
        acc[nacc].flags = cudaMemAccessFlagsProtReadWrite;
        nacc++;
      }
      if (nacc) (void)cudaMemPoolSetAccess(created, acc, (size_t)nacc);
      (void)cudaGetLastError();
      pools[dev] = created;
    }
  }
  pool = pools[dev];
  pthread_mutex_unlock(&pool_mu);
  return pool;
}

static void *xla_alloc(void *ctx, size_t bytes) {
  void *p = jaxmg__ffi_alloc((const XLA_FFI_CallFrame *)ctx, bytes);
  if (p) return p;
  const jaxmg_gpu_part_t *g = &tls_part;
  cudaMemPool_t pool = device_pool(g->device);
  if (!pool) return NULL;
  for (int i = 0; i < MAX_POOL_PTRS; i++) {
    if (tls_pool_ptrs[i]) continue;
    if (cudaMallocFromPoolAsync(&p, bytes, pool, g->stream) != cudaSuccess) {
      (void)cudaGetLastError();
      return NULL;
    }
    tls_pool_ptrs[i] = p;
    return p;
  }
  return NULL;
}

static void xla_free(void *ctx, void *p, size_t bytes) {
  for (int i = 0; i < MAX_POOL_PTRS; i++) {
    if (p && tls_pool_ptrs[i] == p) {
      tls_pool_ptrs[i] = NULL;
      (void)cudaFreeAsync(p, tls_part.stream);
      return;
    }
  }
  jaxmg__ffi_free((const XLA_FFI_CallFrame *)ctx, p, bytes);
}

/* The CUDA ordinal of this call: the device of its stream where the runtime can tell (the
 * buffers live there), else XLA's device ordinal (FFI API >= 0.1, guarded by struct size). */
static jaxmg_status_t device_of(XLA_FFI_CallFrame *f, cudaStream_t s, int *dev,
                                jaxmg_error_t *err) {
#if CUDART_VERSION >= 12080
  jaxmg_error_t e;
  if (!JAXMG_GPU(&e, "jaxmg", cudaStreamGetDevice(s, dev))) return JAXMG_OK;
#else
  (void)s;
#endif
  if (!jaxmg__ffi_device_ordinal(f, dev)) return JAXMG_OK;
  return jaxmg__seterr(err, JAXMG_EUNAVAIL,
                       "jaxmg: cannot tell the CUDA device of this call (neither the stream nor "
                       "XLA's FFI reports it)");
}

/* Makes `dev` current, remembering the thread's device for leave(). */
static jaxmg_status_t enter(int dev, jaxmg_error_t *err) {
  tls_saved_device = -1;
  jaxmg_status_t st = JAXMG_GPU(err, "jaxmg", cudaGetDevice(&tls_saved_device));
  if (st) tls_saved_device = -1;
  return JAXMG_GPU(err, "jaxmg", cudaSetDevice(dev));
}

static void leave(void) {
  jaxmg_error_t ignored;
  if (tls_saved_device >= 0) (void)JAXMG_GPU(&ignored, "jaxmg", cudaSetDevice(tls_saved_device));
}

static jaxmg_status_t cuda_read_ids(XLA_FFI_CallFrame *f, const void *ids, int32_t out[2],
                                    jaxmg_error_t *err) {
  jaxmg_gpu_part_t *g = &tls_part;
  void *stream = NULL;
  memset(g, 0, sizeof *g);
  jaxmg_status_t st = jaxmg__ffi_stream(f, &stream, "jaxmg", err);
  if (st) return st;
  g->stream = (cudaStream_t)stream;
  if ((st = device_of(f, g->stream, &g->device, err))) return st;
  g->mem.alloc = xla_alloc;
  g->mem.free = xla_free;
  g->mem.ctx = f;
  if ((st = enter(g->device, err))) return st;
  /* Eight bytes on the call's own stream, after whatever XLA computed them with. */
  int32_t host[2] = {0, 0};
  st = JAXMG_GPU(err, "jaxmg",
                 cudaMemcpyAsync(host, ids, sizeof host, cudaMemcpyDeviceToHost, g->stream));
  if (!st) st = JAXMG_GPU(err, "jaxmg", cudaStreamSynchronize(g->stream));
  leave();
  out[0] = host[0];
  out[1] = host[1];
  return st;
}

static jaxmg_status_t cuda_prepare(XLA_FFI_CallFrame *f, const jaxmg_task_t *t, jaxmg_part_t *p,
                                   jaxmg_error_t *err) {
  jaxmg_gpu_part_t *g = &tls_part;
  g->mem.ctx = f;
  jaxmg_status_t st = enter(g->device, err);
  if (!st) st = jaxmg__gpu_prepare(t, p, g, err);
  leave();
  return st;
}

static jaxmg_status_t cuda_run(XLA_FFI_CallFrame *f, const jaxmg_task_t *t, jaxmg_error_t *err) {
  jaxmg_gpu_part_t *g = &tls_part;
  g->mem.ctx = f;
  jaxmg_status_t st = enter(g->device, err);
  if (!st) st = jaxmg__gpu_run(t, g, err);
  leave();
  return st;
}

static void cuda_release(XLA_FFI_CallFrame *f, jaxmg_part_t *p) {
  jaxmg_gpu_part_t *g = &tls_part;
  jaxmg_error_t ignored;
  (void)p;
  g->mem.ctx = f;
  if (!enter(g->device, &ignored)) jaxmg__gpu_release(g);
  leave();
  memset(g, 0, sizeof *g);
}

static jaxmg_status_t cuda_copy(XLA_FFI_CallFrame *f, void *dst, const void *src, size_t bytes,
                                jaxmg_error_t *err) {
  jaxmg_gpu_part_t *g = &tls_part;
  (void)f;
  jaxmg_status_t st = enter(g->device, err);
  if (!st)
    st = JAXMG_GPU(err, "jaxmg",
                   cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g->stream));
  leave();
  return st;
}

static const jaxmg_platform_t kCuda = {"CUDA", cuda_read_ids, cuda_copy, cuda_prepare,
                                       cuda_run, cuda_release, NULL, NULL, NULL, NULL, NULL,
                                       NULL, NULL};

#define JAXMG_CUDA_ENTRY(fn, op)                        \
  JAXMG_EXPORT XLA_FFI_Error *fn(XLA_FFI_CallFrame *f); \
  XLA_FFI_Error *fn(XLA_FFI_CallFrame *f) { return jaxmg__ffi_dispatch(f, op, &kCuda); }

JAXMG_CUDA_ENTRY(jaxmg_ffi_potrf_cuda, JAXMG_OP_POTRF)
JAXMG_CUDA_ENTRY(jaxmg_ffi_potrs_cuda, JAXMG_OP_POTRS)
JAXMG_CUDA_ENTRY(jaxmg_ffi_solve_cuda, JAXMG_OP_SOLVE)
JAXMG_CUDA_ENTRY(jaxmg_ffi_potri_cuda, JAXMG_OP_POTRI)
JAXMG_CUDA_ENTRY(jaxmg_ffi_syevd_cuda, JAXMG_OP_SYEVD)
JAXMG_CUDA_ENTRY(jaxmg_ffi_syevd_n_cuda, JAXMG_OP_SYEVD_N)
